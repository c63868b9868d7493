/*
** lcfut.h: what the binding offers the other Lua-aware files (marshal.c,
** the worker loop): Lua handles for futures and executors, and the error
** class constructor.
*/
#ifndef CFUT_LCFUT_H
#define CFUT_LCFUT_H

#include "lua.h"
#include "future.h"
#include "executor.h"

struct MBuf;                  /* marshal.h */

#define CFUT_FUTURE   "cfut.Future"
#define CFUT_EXECUTOR "cfut.Executor"

/* The Future behind the handle at idx, or NULL if it is not one. */
Future *cfut_tofuture (lua_State *L, int idx);
/* Push this state's handle for f (the same userdata each time); consumes
** one reference of f. */
void cfut_pushfuture (lua_State *L, Future *f);

/* Push a handle for a future no state has seen yet (consumes a ref). */
void cfut_pushnewfuture (lua_State *L, Future *f);

/* Is the value at i a function or callable through __call? */
int cfut_iscallable (lua_State *L, int i);

Executor *cfut_toexecutor (lua_State *L, int idx);
/* Push a handle for ex; consumes one reference of ex. */
void cfut_pushexecutor (lua_State *L, Executor *ex);

/* Push a new error object futures[cls] with message msg (pushes a plain
** string "cls: msg" if the module's classes are not loaded). */
void cfut_pusherror (lua_State *L, const char *cls, const char *msg);

/* This state's Waiter (created on first use). */
Waiter *cfut_waiter (lua_State *L);

/* Run the done-callbacks due in L (protected; errors go to stderr).
** Returns how many ran. */
int cfut_runcallbacks (lua_State *L);

/* Deadline (sys_now seconds, -1 = none) from the optional timeout at
** index i; raises an argument error for NaN. */
double cfut_deadline (lua_State *L, int i);

/*
** Wait in L until pred(ud) is true or the deadline passes, running this
** state's callbacks as they come due.  Returns 1 when pred holds, 0 on
** timeout; raises "interrupted!" on Ctrl-C.  'pred' is called with the
** waiter's sequence number already sampled, so no wake-up is lost, and
** must arrange for its futures to notify L's waiter (cfut_watch).
*/
int cfut_waituntil (lua_State *L, int (*pred) (void *ud), void *ud,
                    double deadline);

/* Wait for f in L (callbacks run, Ctrl-C raises): 1 when done, 0 on
** timeout. */
int cfut_waitfuture (lua_State *L, Future *f, double deadline);

/* Push the values of finished future f, or raise its error value as
** Future:result() does.  Returns how many values. */
int cfut_pushresult (lua_State *L, Future *f);

/* Marshal flags for values sent to ex's workers. */
int cfut_exflags (Executor *ex);
/* A future carrying the task message in b, set up for ex's kind. */
Future *cfut_newtask (Executor *ex, struct MBuf *b);

/* pworker.c: futures._procworker, the main loop of a worker process. */
void cfut_openprocworker (lua_State *L);

/* Raise the error a refused submit deserves (ShutdownError, Broken...). */
int cfut_submiterror (lua_State *L, Executor *ex, int r);

/* Raise the value on top as a task's error with its worker traceback tb
** (or NULL), remembered for the host as Future:result() does. */
int cfut_raisetask (lua_State *L, const char *tb);

/* lmap.c: ex:_mapsubmit, the batch behind Executor:map. */
void cfut_openmap (lua_State *L);

/* Raise "interrupted!" in L after telling every executor (once per
** Ctrl-C) to cancel queued tasks and interrupt running ones. */
int cfut_raiseinterrupt (lua_State *L);

/* Raise a library error futures[cls](msg). */
int cfut_error (lua_State *L, const char *cls, const char *msg);

/* lfuture.c: the Future metatable and the waiting functions of the
** module (future, wait, as_completed, poll, sleep) go into the table on
** top of the stack. */
void cfut_openfutures (lua_State *L);

/* A per-thread buffer to encode into, so the hot path does not grow a
** new buffer per message.  Returns an empty buffer; give it back with
** cfut_unscratch (which empties it).  A nested use (a finalizer that
** submits while a message is being encoded) gets a private buffer. */
struct MBuf *cfut_scratch (void);
void cfut_unscratch (struct MBuf *b);
/* Free this thread's scratch buffer (a worker thread that ends). */
void cfut_freescratch (void);

/* Open the module in a worker's fresh state (package.preload and the
** cfut table), with the main script's package.path and cpath. */
void cfut_openworker (lua_State *L, const char *path, const char *cpath);

#endif
