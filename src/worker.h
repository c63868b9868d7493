/*
** worker.h: a worker's Lua state and the running of one task in it.  The
** same code serves thread workers and (later) process workers.  Never
** raises: failures are reported through return codes and futures.
*/
#ifndef CFUT_WORKER_H
#define CFUT_WORKER_H

#include <stddef.h>
#include "lua.h"
#include "future.h"

/* A fresh state with the standard libraries, cfut preloaded, the given
** package.path/cpath, whole-line print and a task-ending os.exit; 'name'
** is what futures.thread_name() returns there.  NULL when it cannot be
** made: *err is then a malloc'ed message saying why (the module's Lua files
** not found, say), or NULL when memory ran out; else *err is NULL. */
lua_State *worker_newstate (const char *path, const char *cpath,
                            const char *name, char **err);

/* The message for a failed worker_newstate: its *err, or the one for
** memory when that is NULL. */
const char *worker_nostate (const char *err);

/* Run the task whose marshalled function and arguments are msg[0..len)
** and finish f with its outcome (results, or error value and traceback).
** 'before', if given, is called with 'ud' once the outcome is ready, just
** before it is published (a pool counts the worker as waiting from then).
** Returns 1 when the task moved a lot of data (its message or outcome was
** big): its garbage is then worth collecting once the worker is idle. */
int worker_run (lua_State *L, Future *f, const char *msg, size_t len,
                int flags, void (*before) (void *ud), void *ud);

/* Collect the garbage a big task left (worker_run said so), while nobody
** waits on this worker. */
void worker_tidy (lua_State *L);

/*
** Run an initializer message (function and arguments).  Returns 0, or -1
** with a malloc'ed description of the failure in *errmsg.
*/
int worker_init (lua_State *L, const char *msg, size_t len, int flags,
                 char **errmsg);

/* Close a worker's state and free what its thread kept for it. */
void worker_close (lua_State *L);

/* The message handler tasks run under: returns {error, traceback}. */
int worker_msghandler (lua_State *L);

/* Run the done-callbacks due in this worker state (added by its tasks). */
void worker_poll (lua_State *L);

/* Ctrl-C inside a worker thread: make the Lua code running on this thread
** raise "interrupted!" soon (async-signal-safe; uses the calling thread's
** current state, set by worker_run). */
void worker_sigint (void);

/* A function the hook that worker_sigint sets calls first, at the running
** task's next Lua instruction (on the worker's own thread, outside any C
** function of the task): a process worker sends the answers it holds
** there when a stop asks it to (pworker.c).  Set once, before tasks run. */
void worker_sethookfn (void (*fn) (void));

/* What a stopped task raises (in the worker; its future is settled by the
** stop, so nobody sees it but the task's own pcalls). */
#define WORKER_STOPPED "the task was stopped"

#endif
