/*
** executor.h: the interface both executors offer (thread pool now, process
** pool behind the same operations), and the process-wide list of executors
** that the end of the script shuts down.  Knows nothing about Lua.
*/
#ifndef CFUT_EXECUTOR_H
#define CFUT_EXECUTOR_H

#include <stdatomic.h>
#include "future.h"

typedef struct Executor Executor;

typedef struct ExecutorOps {
  const char *name;           /* "ThreadPoolExecutor" */
  /* Queue the n futures (each carries its payload in fut_task()); the
  ** executor takes its own reference to each.  Returns 0, CFUT_ESHUTDOWN,
  ** CFUT_EBROKEN, CFUT_ETHREAD or CFUT_ENOMEM (then nothing is queued). */
  int (*submit) (Executor *ex, Future **fs, int n);
  /* Stop accepting work; with cancel_futures cancel what is queued; with
  ** wait, return only when every worker has exited.  Idempotent. */
  void (*shutdown) (Executor *ex, int wait, int cancel_futures);
  /* Ctrl-C: cancel what is queued, interrupt running tasks. */
  void (*interrupt) (Executor *ex);
  /* How many workers have not exited yet, not counting the calling
  ** thread; when some have not and w is given, w is notified when the
  ** next one exits (-1: some have not, but out of memory to watch them). */
  int (*alive) (Executor *ex, Waiter *w);
  /* Shut down and every worker already gone: join what is left without
  ** blocking and return 1; else return 0. */
  int (*reap) (Executor *ex);
  void (*destroy) (Executor *ex);    /* refcount reached 0 */
  /* Break the pool with msg, as when it finds a malformed message itself:
  ** for an answer whose content only the caller can check (a map chunk's
  ** offsets).  Pending futures fail, later submits raise; if it is broken
  ** already, the first message stands.  NULL where no such answer comes
  ** (a thread pool: map sends it no chunks). */
  void (*fail) (Executor *ex, const char *msg);
  /* The script ended with an uncaught error: cancel what is queued and
  ** stop every running task (as f:cancel{force = true} does).  NULL: the
  ** Ctrl-C interrupt serves instead. */
  void (*stopall) (Executor *ex);
} ExecutorOps;

struct Executor {
  const ExecutorOps *ops;     /* set at creation, read-only after */
  atomic_int refs;
  atomic_int handles;         /* Lua handles, in any state: when the last
                                 one is collected, shutdown(false) */
  int local;                  /* may cross between states as a handle */
  int pertask;                /* each task counts (max_tasks_per_child)
                                 or is timed (task_timeout):
                                 map puts one item per task unless asked;
                                 set before the handle is pushed */
  Executor *gnext;            /* guarded by the global list lock */
  /* Why submit fails on a broken pool: class name and message, set once
  ** under the executor's lock before 'broken' is stored (release). */
  atomic_int broken;
  const char *broken_cls;
  char *broken_msg;
};

/* A FIFO of futures, linked through their tasks (fut_task(f)->next); both
** executors keep their queue in one, under their own lock. */
typedef struct FutQueue {
  Future *head, *tail;
  int n;
} FutQueue;

/* Append fs[0..n), taking a reference to each. */
void fq_push (FutQueue *q, Future **fs, int n);
/* The oldest future (its reference passes to the caller), or NULL. */
Future *fq_pop (FutQueue *q);
/* Unlink everything: the list's head. */
Future *fq_takeall (FutQueue *q);
/* Settle a list from fq_takeall and let it go: cancel each future (cls
** NULL) or fail it with the library error futures[cls](msg). */
void fq_settle (Future *list, const char *cls, const char *msg);
/* Fail f with futures[cls](msg), no Lua state needed. */
void ex_failfuture (Future *f, const char *cls, const char *msg);

/* Waiters to notify once, when a worker (or a pool's manager) exits: what
** ops->alive registers.  The list lives in the executor, under its lock. */
typedef struct ExitWatch {
  Waiter *w;                  /* one reference */
  struct ExitWatch *next;
} ExitWatch;

/* Add w to *list unless it is there (caller holds the executor's lock).
** 0, or CFUT_ENOMEM. */
int ex_watch (ExitWatch **list, Waiter *w);
/* Notify (if 'notify') and let go of every waiter of a list taken out of
** the executor. */
void ex_unwatch (ExitWatch *list, int notify);

/* Mark ex broken with class cls and message msg, once (caller holds the
** executor's lock).  Returns the message that stands (the first one). */
const char *ex_setbroken (Executor *ex, const char *cls, const char *msg);

void ex_init (Executor *ex, const ExecutorOps *ops, int local);
void ex_retain (Executor *ex);
void ex_release (Executor *ex);

/* The global list holds one reference to every executor not yet shut down
** with wait (so the script's end can find it). */
void ex_register (Executor *ex);
void ex_unregister (Executor *ex);
/* Shut every registered executor down with wait = true. */
void ex_shutdown_all (void);
/* The registered executors, each retained: *out is malloc'ed. */
int ex_list (Executor ***out);
/* Drop from the list the executors whose workers are all gone (a pool
** collected after shutdown(false)); never blocks. */
void ex_reap (void);
/* Ctrl-C for every registered executor. */
void ex_interrupt_all (void);
/* The script's error end for every registered executor (ops->stopall). */
void ex_stop_all (void);

/*
** task_timeout: one process-wide watchdog thread, started on first use.
** ex_timeout_watch asks it to stop f (fut_stop with FUT_STOP_TIMEOUT and
** TimeoutError "task ran longer than <seconds> s") once 'seconds' have
** passed, unless ex_timeout_unwatch came first; the executor calls both
** around the running of the task.  0, or CFUT_ENOMEM (then f runs without
** a limit).  ex_timeout_join ends the thread (the module is about to be
** unloaded); a later watch starts it again.
*/
int ex_timeout_watch (Future *f, double seconds);
void ex_timeout_unwatch (Future *f);
void ex_timeout_join (void);
/* The message of a task_timeout, in buf. */
void ex_timeout_msg (char *buf, size_t size, double seconds);

#endif
