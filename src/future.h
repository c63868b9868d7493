/*
** future.h: the C side of a future and of a waiting state.
** Knows nothing about Lua: outcomes are marshalled bytes (marshal.h).
**
** A Future is shared by the Lua handles that point to it (in any state), by
** the executor queue and by the worker running it: it is refcounted.
** A Waiter belongs to one Lua state (main or worker); futures notify it when
** they finish, and queue for it the futures whose done-callbacks it holds.
*/
#ifndef CFUT_FUTURE_H
#define CFUT_FUTURE_H

#include <stdatomic.h>
#include <stddef.h>

typedef struct Future Future;
typedef struct Waiter Waiter;

/* What the executor running a future does to stop its task: called with
** the future's lock held, so it must not block nor take a lock that is
** taken before a future's (an executor's own lock); it only asks the
** worker to stop.  'why' is FUT_STOP_CANCEL or FUT_STOP_TIMEOUT. */
typedef void (*FutStopper) (void *ud, Future *f, int why);

enum {
  FUT_PENDING = 0,
  FUT_RUNNING = 1,
  FUT_CANCELLED = 2,
  FUT_FINISHED = 3
};

/* ---- futures ---- */

/* A new pending future with one reference, or NULL when out of memory. */
Future *fut_new (void);
/* The same, carrying a copy of the task message msg[0..len) in the same
** allocation (one malloc per task, freed by the thread that made it). */
Future *fut_new_task (const char *msg, size_t len);
/* The same, taking over 'msg' (malloc'ed; freed with the task) instead of
** copying it. */
Future *fut_adopt_task (char *msg, size_t len);
void fut_retain (Future *f);
void fut_release (Future *f);

/* Current state; never blocks (an acquire load). */
int fut_state (Future *f);
/* The state, read under f's lock: a stop in progress (fut_stop, which
** calls the stopper before it settles f) is over by then. */
int fut_state_sync (Future *f);
static inline int fut_isdone (int state) { return state >= FUT_CANCELLED; }

/* PENDING -> RUNNING: returns 1.  Already cancelled: returns 0 (the caller
** must drop the work).  Running or finished: returns CFUT_ESTATE. */
int fut_set_running (Future *f);

/* fut_set_running that also registers f's stopper (fut_set_stopper) in
** the same step. */
int fut_set_running_by (Future *f, FutStopper fn, void *ud);

/* Cancel a pending future: 1 if it is cancelled (now or before), 0 if it is
** running or finished. */
int fut_cancel (Future *f);

/*
** Finish a pending or running future with an outcome: 'data'/'len' are
** marshalled values (the results, or the one error value when 'failed'),
** 'tb' the worker's traceback or NULL.  Takes ownership of data and tb
** (malloc'ed) on success.  Returns CFUT_ESTATE, owning nothing, if the future
** is already cancelled or finished.
*/
int fut_finish (Future *f, int failed, char *data, size_t len, char *tb);
/* The same for an outcome to be decoded with marshal flags 'flags'
** rather than the future's own: set_result stores values of this process
** (LOCAL) in a future of any executor. */
int fut_finish_as (Future *f, int flags, int failed, char *data, size_t len,
                   char *tb);

/* Outcomes up to this size are copied into the future itself. */
#define FUT_INLINE 64

/* fut_finish for a small outcome without traceback: copies data
** (len <= FUT_INLINE), the caller keeps its buffer. */
int fut_finish_small (Future *f, int failed, const char *data, size_t len);

/* The outcome of a finished future (valid while a reference is held):
** returns 'failed'; data, len and tb (may be NULL) are set. */
int fut_outcome (Future *f, const char **data, size_t *len, const char **tb);

/* Opaque tag the executor may attach (the task payload lives in the
** future while it is queued); guarded by the executor's own lock. */
typedef struct FutTask {
  char *msg;          /* marshalled function and arguments */
  size_t len;
  Future *next;       /* executor queue link */
} FutTask;
FutTask *fut_task (Future *f);

/* How the task and the outcome are to be decoded (marshal flags), set by
** the executor before the future is shared: handles only from the same
** process.  fut_new gives FUT_FLAGS_LOCAL.  Once the future is done,
** fut_flags gives the outcome's (fut_finish_as may have set others). */
#define FUT_FLAGS_LOCAL 1     /* = MARSHAL_LOCAL */
void fut_set_flags (Future *f, int flags);
int fut_flags (Future *f);

/* Let go of the task message (after it ran, or was dropped). */
void fut_droptask (Future *f);

/* How a message held by a future (task payload, outcome) is let go before
** it is freed: marshal_discard, set once by the binding at load time. */
void fut_set_discard (void (*hook) (const char *data, size_t len));

/* ---- stopping a running task (f:cancel{force = true}, task_timeout) ---- */

/* Why a running task is stopped. */
enum { FUT_STOP_CANCEL = 1, FUT_STOP_TIMEOUT = 2 };


/* The executor running f registers how to stop it (once f is RUNNING),
** and clears it (fn NULL) once the task is over, before it lets go of f:
** from then on no stop reaches its worker for f. */
void fut_set_stopper (Future *f, FutStopper fn, void *ud);

/*
** Stop f: a pending future is cancelled (as fut_cancel); a running one has
** its stopper called and is settled at once: cancelled (FUT_STOP_CANCEL),
** or failed with the marshalled error data[0..len) (FUT_STOP_TIMEOUT; f
** takes data over on success).  Returns 1 when f was pending or running
** (now settled), 0 when it was done already (nothing changes, data stays
** the caller's).  A running future without a stopper (a hand-made one) is
** settled all the same.
*/
int fut_stop (Future *f, int why, char *data, size_t len);

/* The stop flag of the task running on the calling thread: set by a
** worker to its own flag while it serves tasks (NULL elsewhere).  While it
** is non-zero, waits (waiter_wait) return CFUT_EINTR at once. */
void fut_set_stopflag (atomic_int *flag);
/* The calling thread's task was asked to stop. */
int fut_stopping (void);

/* ---- listeners ---- */

/* WAKE: like WAIT, but left in place until the future finishes (what
** makes an event loop's descriptor readable for a handle, lloop.c). */
enum { FUT_LISTEN_WAIT = 1, FUT_LISTEN_CALLBACK = 2, FUT_LISTEN_WAKE = 4 };

/*
** Ask future f to notify waiter w when it finishes or is cancelled; with
** FUT_LISTEN_CALLBACK it also queues itself on w's ready list.  Returns 1 if
** f is done already (nothing registered), 0 if registered, CFUT_ENOMEM.
** A WAIT listener must be removed with fut_unlisten; a CALLBACK listener
** goes away when it fires.
*/
int fut_listen (Future *f, Waiter *w, int kind);
void fut_unlisten (Future *f, Waiter *w, int kind);

/* ---- waiters ---- */

Waiter *waiter_new (void);
void waiter_retain (Waiter *w);
void waiter_release (Waiter *w);

/* A number that changes each time a future notifies w. */
unsigned waiter_seq (Waiter *w);

/*
** Wait until w's sequence number differs from 'seq', the Ctrl-C flag
** (fut_set_interrupt) is set, or 'deadline' (sys_now seconds, <0 = none)
** passes.  Spins briefly before sleeping.  Returns 0 when notified,
** CFUT_ETIMEDOUT, or CFUT_EINTR.
*/
int waiter_wait (Waiter *w, unsigned seq, double deadline);

/* Wake w's owner (bump its sequence number) from any thread. */
void waiter_notify (Waiter *w);

/* Take the futures whose callbacks are due (each holds one reference the
** caller must release).  Returns how many, stores an array the caller frees. */
int waiter_take_ready (Waiter *w, Future ***list);

/* Make every notification of w also wake 'parent' (as waiter_notify):
** a private queue of CALLBACK listeners (an unordered map's) whose owner
** waits on its state's waiter.  Call once, before w is shared. */
void waiter_setparent (Waiter *w, Waiter *parent);

/* Give w an eventfd that every later notification writes 1 to (for an
** event loop to poll); w closes it when it is freed.  Returns CFUT_ESTATE
** (taking nothing) if w has one already. */
int waiter_setfd (Waiter *w, int fd);
/* w's eventfd, or -1. */
int waiter_fd (Waiter *w);

/* The process-wide Ctrl-C flag (cfut_interrupt sets it). */
void fut_set_interrupt (int on);
int fut_interrupted (void);

#endif
