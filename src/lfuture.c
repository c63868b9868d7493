/*
** lfuture.c: the Lua side of futures: the Future handle and its methods,
** done-callbacks, and the waiting functions futures.wait, as_completed,
** poll and sleep.
**
** A handle is a userdata holding one reference to the C Future; each state
** keeps at most one handle per future (a weak cache), so user fields and
** identity survive a round trip through a worker.  Callbacks live in the
** state that added them (registry table CALLBACKS, keyed by the Future
** pointer) and run only on that state's thread, when it waits or polls.
*/
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "errors.h"
#include "cfut.h"
#include "lbar.h"
#include "lcfut.h"
#include "lloop.h"
#include "marshal.h"
#include "sys.h"
#include "worker.h"

#define CALLBACKS "cfut.callbacks"    /* F -> {handle, fn1, fn2, ...} */
#define FUTCACHE  "cfut.futcache"     /* F -> handle (weak values) */
/* Registry keys looked up for every task are addresses, not names: a
** name is hashed and compared (strcmp) at each lua_getfield. */
static const char waiterkey = 'w';    /* this state's Waiter */
static const char futmtkey = 'm';     /* the handles' metatable */
#define LASTERR   "cfut.lasterr"      /* {err, traceback} last re-raised */
#define ASCOMP    "cfut.as_completed"

typedef struct FutBox {
  Future *f;                  /* one reference, dropped by __gc */
} FutBox;

/* The handle at i when it is one: what luaL_checkudata does, but the
** metatable is compared with upvalue 1 of the running C function (every
** method and metamethod of a handle holds it there) instead of being
** looked up by name in the registry, a fifth of W1's work in the main
** state (docs/bench.md).  A function without that upvalue falls back on
** luaL_checkudata, which also raises the error. */
static FutBox *checkbox (lua_State *L, int i) {
  void *p = lua_touserdata(L, i);
  if (p != NULL && lua_getmetatable(L, i)) {
    int ok = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
    if (ok) return (FutBox *)p;
  }
  return (FutBox *)luaL_checkudata(L, i, CFUT_FUTURE);
}

static Future *checkfut (lua_State *L, int i) {
  FutBox *b = checkbox(L, i);
  /* NULL once __gc ran: a script can call it (getmetatable(f).__gc). */
  if (b->f == NULL) luaL_argerror(L, i, "future handle is closed");
  return b->f;
}

/* {======================================================================
** Handles and the per-state waiter
** ======================================================================= */

/*
** A handle is a few bytes of the state, but holds a C future (its struct,
** task message and outcome) that the state's collector cannot see.  With
** futures made by the million, garbage handles then piled up between
** cycles: the process grew from 21 to 110 MB over 2 million tasks.  So
** each handle counts HIDDEN bytes more as debt of the collector, HIDDENKB
** at a time (unless the script stopped the collector).
*/
#define HIDDEN    128
#define HIDDENKB  16

static _Thread_local size_t hidden;

static void hiddendebt (lua_State *L) {
  hidden += HIDDEN;
  if (hidden < HIDDENKB * 1024) return;
  hidden = 0;
  if (lua_gc(L, LUA_GCISRUNNING) == 1) lua_gc(L, LUA_GCSTEP, HIDDENKB);
}

/* Push a new handle for f (consuming one reference), not cached. */
static int newfutbox (lua_State *L) {
  lua_newuserdatauv(L, sizeof(FutBox), 1);
  return 1;
}

void cfut_pushnewfuture (lua_State *L, Future *f) {
  lua_pushcfunction(L, newfutbox);
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) {  /* out of memory: drop f */
    fut_release(f);
    lua_error(L);
  }
  ((FutBox *)lua_touserdata(L, -1))->f = f;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &futmtkey);
  lua_setmetatable(L, -2);
  hiddendebt(L);
  cfut_loopwatch(L, f);       /* an event loop waits on fileno() */
}

static void cacheput (lua_State *L, int idx, Future *f) {
  idx = lua_absindex(L, idx);
  lua_getfield(L, LUA_REGISTRYINDEX, FUTCACHE);
  lua_pushvalue(L, idx);
  lua_rawsetp(L, -2, f);
  lua_pop(L, 1);
}

Future *cfut_tofuture (lua_State *L, int idx) {
  FutBox *b = (FutBox *)luaL_testudata(L, idx, CFUT_FUTURE);
  if (b == NULL || b->f == NULL) return NULL;
  cacheput(L, idx, b->f);     /* it may come back: keep its identity */
  return b->f;
}

void cfut_pushfuture (lua_State *L, Future *f) {
  lua_getfield(L, LUA_REGISTRYINDEX, FUTCACHE);
  /* A handle closed by a hand-called __gc stays cached (weak values only
  ** go when it is collected), and a new future may have the address of
  ** its dead one: only a live handle of f itself is f's. */
  if (lua_rawgetp(L, -1, f) == LUA_TUSERDATA &&
      ((FutBox *)lua_touserdata(L, -1))->f == f) {
    lua_remove(L, -2);
    fut_release(f);           /* the cached handle has its own */
    return;
  }
  lua_pop(L, 2);
  cfut_pushnewfuture(L, f);
  cacheput(L, -1, f);
}

static int waiter_gc (lua_State *L) {
  Waiter **pw = (Waiter **)lua_touserdata(L, 1);
  if (*pw != NULL) waiter_release(*pw);
  *pw = NULL;
  return 0;
}

Waiter *cfut_waiter (lua_State *L) {
  Waiter **pw;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &waiterkey) == LUA_TUSERDATA) {
    Waiter *w = *(Waiter **)lua_touserdata(L, -1);
    lua_pop(L, 1);
    return w;
  }
  lua_pop(L, 1);
  pw = (Waiter **)lua_newuserdatauv(L, sizeof *pw, 0);
  *pw = NULL;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, waiter_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  if ((*pw = waiter_new()) == NULL) luaL_error(L, "not enough memory");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &waiterkey);
  return *pw;
}

/* }====================================================================== */

/* {======================================================================
** Errors and descriptions
** ======================================================================= */

void cfut_pusherror (lua_State *L, const char *cls, const char *msg) {
  int top = lua_gettop(L);
  if (lua_getfield(L, LUA_REGISTRYINDEX, "cfut.module") == LUA_TTABLE &&
      lua_getfield(L, -1, cls) == LUA_TTABLE) {
    lua_pushstring(L, msg);
    lua_call(L, 1, 1);          /* futures[cls](msg) */
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
    return;
  }
  lua_settop(L, top);
  lua_pushfstring(L, "%s: %s", cls, msg);
}

int cfut_error (lua_State *L, const char *cls, const char *msg) {
  cfut_pusherror(L, cls, msg);
  return lua_error(L);
}

/* The class name of an error value: e.name of a cfut error (a table whose
** metatable has a string 'name'), else its Lua type. */
static const char *errortype (lua_State *L, int i) {
  const char *name = luaL_typename(L, i);
  if (lua_type(L, i) == LUA_TTABLE && lua_getmetatable(L, i)) {
    if (lua_getfield(L, -1, "name") == LUA_TSTRING) {
      name = lua_tostring(L, -1);
      lua_pop(L, 2);
      lua_pushstring(L, name);
      lua_replace(L, i);        /* keep the string alive */
      return lua_tostring(L, i);
    }
    lua_pop(L, 2);
  }
  return name;
}

/* What the outcome of a finished future is: "returned integer", ... */
static void pushoutcome (lua_State *L, Future *f) {
  const char *data, *tb, *what;
  size_t len;
  char err[128];
  int top = lua_gettop(L);
  int failed = fut_outcome(f, &data, &len, &tb);
  int n = (failed && len == 0) ? 0
          : marshal_decode(L, data, len, fut_flags(f), NULL, err,
                           sizeof err);
  if (n < 0) what = "?";
  else if (n == 0) what = failed ? "string" : "nil";
  else if (failed) what = errortype(L, top + 1);
  else if (lua_type(L, top + 1) == LUA_TNUMBER)
    what = lua_isinteger(L, top + 1) ? "integer" : "float";
  else what = luaL_typename(L, top + 1);
  lua_pushfstring(L, "%s %s", failed ? "raised" : "returned", what);
  lua_insert(L, top + 1);
  lua_settop(L, top + 1);
}

static void pushdesc (lua_State *L, Future *f) {
  static const char *const names[] = {"pending", "running", "cancelled"};
  int st = fut_state(f);
  if (st == FUT_FINISHED) {
    pushoutcome(L, f);
    lua_pushfstring(L, "<Future at %p state=finished %s>", (void *)f,
                    lua_tostring(L, -1));
    lua_remove(L, -2);
  }
  else lua_pushfstring(L, "<Future at %p state=%s>", (void *)f, names[st]);
}

static int f_tostring (lua_State *L) {
  pushdesc(L, checkfut(L, 1));
  return 1;
}

/* }====================================================================== */

/* {======================================================================
** Done-callbacks
** ======================================================================= */

static int cbhandler (lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_isstring(L, -1))
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)",
                            luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Write a callback's error (the traceback at 2) for the handle at 1. */
static int report (lua_State *L) {
  FutBox *b = (FutBox *)lua_touserdata(L, 1);
  if (b->f != NULL) pushdesc(L, b->f);
  else lua_pushliteral(L, "<Future (closed handle)>");
  fprintf(stderr, "cfut: exception calling callback for %s\n%s\n",
          lua_tostring(L, -1), lua_tostring(L, 2));
  fflush(stderr);
  return 0;
}

/* Call fn (at -1) with the handle at index h; report an error on stderr.
** Never raises: the report is protected too (describing the future may
** run out of memory), so a wait that runs callbacks cannot be unwound by
** them. */
static void callone (lua_State *L, int h) {
  lua_pushcfunction(L, cbhandler);
  lua_insert(L, -2);
  lua_pushvalue(L, h);
  cfut_barhide();             /* what it prints must not land on a bar */
  if (lua_pcall(L, 1, 0, -3) != LUA_OK) {
    const char *tb = lua_tostring(L, -1);   /* a string: no allocation */
    lua_pushcfunction(L, report);
    lua_pushvalue(L, h);
    lua_pushvalue(L, -3);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
      fprintf(stderr, "cfut: exception calling callback for a future\n%s\n",
              tb != NULL ? tb : "(no message: not enough memory)");
      fflush(stderr);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);  /* handler */
}

/*
** Entries in the CALLBACKS tables of all states of the process.  While
** there are none, fire() has nothing to look up: every result() used to
** pay a registry lookup for callbacks that were never added (about 5 %
** of W1's main thread).  Counted up before an entry is made and down
** after one is removed, it is never below the entries there are; an
** entry dropped uncounted (a state closed with callbacks pending) only
** keeps the lookups on.
*/
static atomic_size_t cbentries;

static void cbgone (void) {
  size_t n = atomic_load_explicit(&cbentries, memory_order_relaxed);
  while (n > 0 && !atomic_compare_exchange_weak(&cbentries, &n, n - 1)) {}
}

/* Push CALLBACKS and its entry for f: 1 if there is one, else 0 (nil
** pushed).  An entry whose handle was closed by a hand-called __gc is
** dropped: its future may be gone, and f only shares its address. */
static int cbentry (lua_State *L, Future *f) {
  lua_getfield(L, LUA_REGISTRYINDEX, CALLBACKS);
  if (lua_rawgetp(L, -1, f) != LUA_TTABLE) return 0;
  lua_rawgeti(L, -1, 1);
  if (((FutBox *)lua_touserdata(L, -1))->f == f) {
    lua_pop(L, 1);
    return 1;
  }
  lua_pop(L, 2);
  lua_pushnil(L);
  lua_rawsetp(L, -2, f);
  cbgone();
  lua_pushnil(L);
  return 0;
}

/* Run (and forget) the callbacks this state holds for f; returns how
** many ran. */
static int fire (lua_State *L, Future *f) {
  int i, n, h;
  if (atomic_load_explicit(&cbentries, memory_order_relaxed) == 0) return 0;
  if (!cbentry(L, f)) {
    lua_pop(L, 2);
    return 0;
  }
  lua_pushnil(L);
  lua_rawsetp(L, -3, f);      /* forget them before they run */
  cbgone();
  lua_remove(L, -2);
  n = (int)lua_rawlen(L, -1);
  lua_rawgeti(L, -1, 1);      /* the handle */
  h = lua_gettop(L);
  for (i = 2; i <= n; i++) {
    lua_rawgeti(L, h - 1, i);
    callone(L, h);
  }
  lua_pop(L, 2);
  return n - 1;
}

int cfut_runcallbacks (lua_State *L) {
  Waiter *w;
  Future **list;
  int i, n, total = 0;
  /* At lua_close the waiter may be finalized already: nothing is due. */
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &waiterkey) != LUA_TUSERDATA ||
      (w = *(Waiter **)lua_touserdata(L, -1)) == NULL) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pop(L, 1);
  while ((n = waiter_take_ready(w, &list)) > 0) {
    for (i = 0; i < n; i++) {
      total += fire(L, list[i]);
      fut_release(list[i]);
    }
    free(list);
  }
  return total;
}

int cfut_iscallable (lua_State *L, int i) {
  if (lua_isfunction(L, i)) return 1;
  if (luaL_getmetafield(L, i, "__call") != LUA_TNIL) {
    lua_pop(L, 1);
    return 1;
  }
  return 0;
}

static int f_add_done_callback (lua_State *L) {
  Future *f = checkfut(L, 1);
  int r;
  luaL_argexpected(L, cfut_iscallable(L, 2), 2, "function");
  lua_settop(L, 2);
  if (fut_isdone(fut_state(f))) {
    /* Those added before, still due here (this state has not waited
    ** since f finished), run first: callbacks run in the order added. */
    fire(L, f);
    callone(L, 1);
    return 0;
  }
  if (cbentry(L, f)) {
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    return 0;
  }
  lua_pop(L, 1);
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, 2);
  atomic_fetch_add(&cbentries, 1);  /* before the entry: never too low */
  lua_rawsetp(L, -2, f);
  r = fut_listen(f, cfut_waiter(L), FUT_LISTEN_CALLBACK);
  if (r == CFUT_ENOMEM) return luaL_error(L, "not enough memory");
  if (r == 1) fire(L, f);     /* it finished meanwhile */
  return 0;
}

/* }====================================================================== */

/* {======================================================================
** Waiting
** ======================================================================= */

static atomic_int interrupt_done;   /* executors told of this Ctrl-C */

int cfut_raiseinterrupt (lua_State *L) {
  /* A stopped task: its wait ends, nothing else is interrupted. */
  if (fut_stopping()) return luaL_error(L, WORKER_STOPPED);
  if (!atomic_exchange(&interrupt_done, 1)) ex_interrupt_all();
  return luaL_error(L, "interrupted!");
}

void cfut_clear_interrupt (void) {
  fut_set_interrupt(0);
  atomic_store(&interrupt_done, 0);
}

void cfut_interrupt (void) {
  fut_set_interrupt(1);
}

double cfut_deadline (lua_State *L, int i) {
  lua_Number t;
  if (lua_isnoneornil(L, i)) return -1;
  t = luaL_checknumber(L, i);
  luaL_argcheck(L, t == t, i, "timeout must be a number, not NaN");
  if (t < 0) t = 0;
  if (t > 1e9) return -1;     /* about 30 years: forever */
  return sys_now() + t;
}

/*
** cfut_waituntil without raising for Ctrl-C: returns CFUT_EINTR instead,
** so that a caller that registered listeners removes them before it
** raises (else each interrupted wait left one on a pending future).
** Raises only what 'pred' raises: callbacks never do (callone).  w is
** this state's waiter.
*/
static int waitfor (lua_State *L, Waiter *w, int (*pred) (void *ud),
                    void *ud, double deadline) {
  for (;;) {
    unsigned seq;
    double until;
    int r;
    /* Ctrl-C first: a task it stopped must not be reported instead. */
    if (fut_interrupted() || fut_stopping()) return CFUT_EINTR;
    cfut_runcallbacks(L);
    seq = waiter_seq(w);
    if (pred(ud)) return 1;
    until = cfut_barslice(L, deadline);   /* a progress line to redraw */
    r = waiter_wait(w, seq, until);
    if (r == CFUT_ETIMEDOUT && until != deadline) continue;
    if (r == CFUT_ETIMEDOUT) {
      cfut_runcallbacks(L);
      return pred(ud);
    }
    if (r == CFUT_EINTR) return CFUT_EINTR;
  }
}

int cfut_waituntil (lua_State *L, int (*pred) (void *ud), void *ud,
                    double deadline) {
  int r = waitfor(L, cfut_waiter(L), pred, ud, deadline);
  if (r == CFUT_EINTR) cfut_raiseinterrupt(L);
  return r;
}

static int isdone (void *ud) {
  return fut_isdone(fut_state((Future *)ud));
}

/* Wait for one future; 1 when done, 0 on timeout. */
static int waitone (lua_State *L, Future *f, double deadline) {
  Waiter *w;
  int r;
  if (fut_interrupted() || fut_stopping()) cfut_raiseinterrupt(L);
  if (fut_isdone(fut_state(f))) {
    cfut_runcallbacks(L);
    fire(L, f);
    return 1;
  }
  w = cfut_waiter(L);
  r = fut_listen(f, w, FUT_LISTEN_WAIT);
  if (r == CFUT_ENOMEM) return luaL_error(L, "not enough memory");
  if (r == 0) {
    r = waitfor(L, w, isdone, f, deadline);
    fut_unlisten(f, w, FUT_LISTEN_WAIT);
    if (r == CFUT_EINTR) cfut_raiseinterrupt(L);
  }
  /* Its callbacks here are due: run them even if the wake-up that queues
  ** them is still on its way. */
  if (r) fire(L, f);
  return r;
}

/* Wait for f or raise TimeoutError / CancelledError. */
static void waitresult (lua_State *L, Future *f) {
  if (!waitone(L, f, cfut_deadline(L, 2)))
    cfut_error(L, "TimeoutError", "");
  if (fut_state(f) == FUT_CANCELLED)
    cfut_error(L, "CancelledError", "");
}

/* Push the values of f's outcome; returns how many, and 'failed'. */
static int pushvalues (lua_State *L, Future *f, int *failed) {
  const char *data, *tb;
  size_t len;
  char err[256];
  int n;
  *failed = fut_outcome(f, &data, &len, &tb);
  /* a failure without data: its error value could not be made */
  n = (*failed && len == 0) ? 0
      : marshal_decode(L, data, len, fut_flags(f),
                       *failed ? "error value" : "result", err, sizeof err);
  if (n < 0) luaL_error(L, "cannot receive the outcome of a task: %s", err);
  if (*failed && n == 0) {
    /* only a lack of memory loses it */
    lua_pushliteral(L, "the task failed (its error value was lost: "
                       "not enough memory)");
    n = 1;
  }
  return n;
}

int cfut_raisetask (lua_State *L, const char *tb) {
  lua_createtable(L, 2, 0);         /* remember it for the host */
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, 1);
  if (tb != NULL) {
    lua_pushstring(L, tb);
    lua_rawseti(L, -2, 2);
  }
  lua_setfield(L, LUA_REGISTRYINDEX, LASTERR);
  return lua_error(L);
}

int cfut_pushresult (lua_State *L, Future *f) {
  int n, failed;
  n = pushvalues(L, f, &failed);
  if (failed) {
    const char *data, *tb;
    size_t len;
    fut_outcome(f, &data, &len, &tb);
    lua_settop(L, lua_gettop(L) - n + 1);   /* keep the error value */
    return cfut_raisetask(L, tb);
  }
  return n;
}

int cfut_waitfuture (lua_State *L, Future *f, double deadline) {
  return waitone(L, f, deadline);
}

static int f_result (lua_State *L) {
  Future *f = checkfut(L, 1);
  waitresult(L, f);
  lua_settop(L, 1);
  return cfut_pushresult(L, f);
}

static int f_exception (lua_State *L) {
  Future *f = checkfut(L, 1);
  int failed;
  const char *data, *tb;
  size_t len;
  waitresult(L, f);
  lua_settop(L, 1);
  pushvalues(L, f, &failed);
  if (!failed) {
    lua_pushnil(L);   /* success: one explicit nil, as Python's None */
    return 1;
  }
  lua_settop(L, 2);
  fut_outcome(f, &data, &len, &tb);
  if (tb != NULL) lua_pushstring(L, tb);
  else lua_pushnil(L);
  return 2;
}

int cfut_pushtaskerror (lua_State *L, int idx) {
  int top = lua_gettop(L);
  idx = lua_absindex(L, idx);
  if (lua_getfield(L, LUA_REGISTRYINDEX, LASTERR) == LUA_TTABLE) {
    lua_rawgeti(L, -1, 1);
    if (lua_rawequal(L, -1, idx) && lua_rawgeti(L, -2, 2) == LUA_TSTRING) {
      lua_replace(L, top + 1);
      lua_settop(L, top + 1);
      return 1;
    }
  }
  lua_settop(L, top);
  return 0;
}

/* }====================================================================== */

/* {======================================================================
** Future methods
** ======================================================================= */

static int f_done (lua_State *L) {
  lua_pushboolean(L, fut_isdone(fut_state(checkfut(L, 1))));
  return 1;
}

static int f_running (lua_State *L) {
  lua_pushboolean(L, fut_state(checkfut(L, 1)) == FUT_RUNNING);
  return 1;
}

static int f_cancelled (lua_State *L) {
  lua_pushboolean(L, fut_state(checkfut(L, 1)) == FUT_CANCELLED);
  return 1;
}

/* cancel's options table at 2: 1 for force = true.  Unknown names and
** wrong types are argument errors, as in the constructors. */
static int forceopt (lua_State *L) {
  int force = 0;
  if (lua_isnoneornil(L, 2)) return 0;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, 2) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING || strcmp(lua_tostring(L, -2),
                                                   "force") != 0) {
      const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2)
                                                    : luaL_typename(L, -2);
      return luaL_argerror(L, 2, lua_pushfstring(L, "unknown option '%s'",
                                                 k));
    }
    if (!lua_isboolean(L, -1))
      return luaL_argerror(L, 2, lua_pushfstring(L,
                           "field 'force' must be a boolean, not %s",
                           luaL_typename(L, -1)));
    force = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  return force;
}

static int f_cancel (lua_State *L) {
  Future *f = checkfut(L, 1);
  /* force: a running task is stopped too; true only when it was pending
  ** or running (a cancelled one stays as it is: false). */
  int r = forceopt(L) ? fut_stop(f, FUT_STOP_CANCEL, NULL, 0) : fut_cancel(f);
  if (r) fire(L, f);
  lua_pushboolean(L, r);
  return 1;
}

static int invalidstate (lua_State *L, Future *f) {
  static const char *const names[] = {"PENDING", "RUNNING", "CANCELLED",
                                      "FINISHED"};
  int st = fut_state(f);
  pushdesc(L, f);
  lua_pushfstring(L, "%s: %s",
                  st >= FUT_PENDING && st <= FUT_FINISHED ? names[st] : "?",
                  lua_tostring(L, -1));
  return cfut_error(L, "InvalidStateError", lua_tostring(L, -1));
}

/* Finish a hand-made future with the values from index 2 up. */
static int settle (lua_State *L, int failed) {
  Future *f = checkfut(L, 1);
  MBuf b;
  char err[256];
  size_t len;
  char *data;
  int n = lua_gettop(L) - 1, r;
  if (failed) {
    luaL_checkany(L, 2);
    n = 1;
  }
  if (fut_isdone(fut_state(f))) return invalidstate(L, f);
  mbuf_init(&b);
  r = marshal_encode(L, 2, n, MARSHAL_LOCAL, "argument", 1, &b, err,
                     sizeof err);
  if (r != 0) mbuf_free(&b);
  if (r == CFUT_ENOMEM) return luaL_error(L, "not enough memory");
  if (r != 0) return luaL_error(L, "cannot store %s in a future", err);
  data = mbuf_steal(&b, &len);
  /* values of this process, whatever the future's executor */
  if (fut_finish_as(f, FUT_FLAGS_LOCAL, failed, data, len, NULL) != 0) {
    marshal_discard(data, len);
    free(data);
    return invalidstate(L, f);
  }
  fire(L, f);
  return 0;
}

static int f_set_result (lua_State *L) {
  return settle(L, 0);
}

static int f_set_exception (lua_State *L) {
  return settle(L, 1);
}

static int f_set_running_or_notify_cancel (lua_State *L) {
  Future *f = checkfut(L, 1);
  int r = fut_set_running(f);
  if (r < 0) return invalidstate(L, f);
  lua_pushboolean(L, r);
  return 1;
}

static int f_gc (lua_State *L) {
  FutBox *b = checkbox(L, 1);
  if (b->f != NULL) fut_release(b->f);
  b->f = NULL;
  return 0;
}

/* Methods first (upvalue 2), then the handle's own fields. */
static int f_index (lua_State *L) {
  checkfut(L, 1);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(2)) != LUA_TNIL) return 1;
  if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) return 0;
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

static int f_newindex (lua_State *L) {
  checkfut(L, 1);
  if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 1);
  }
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_rawset(L, -3);
  return 0;
}

static int m_future (lua_State *L) {
  Future *f = fut_new();
  if (f == NULL) return luaL_error(L, "not enough memory");
  cfut_pushnewfuture(L, f);
  return 1;
}

/* }====================================================================== */

/* {======================================================================
** futures.wait, as_completed, poll, sleep
** ======================================================================= */

#define MAXLIST (1 << 26)             /* futures in one wait */

typedef struct FutList {
  Future **fs;                /* not owned: the handles keep them alive */
  int n;
  int mode;                   /* 0 first completed, 1 first exception,
                                 2 all completed */
  int isset;                  /* fs was a set {[f] = true}: answer sets */
} FutList;

static int failedfut (Future *f) {
  const char *d, *tb;
  size_t len;
  return fut_state(f) == FUT_FINISHED && fut_outcome(f, &d, &len, &tb);
}

static int listready (void *ud) {
  FutList *l = (FutList *)ud;
  int i, ndone = 0;
  for (i = 0; i < l->n; i++) {
    if (!fut_isdone(fut_state(l->fs[i]))) continue;
    ndone++;
    if (l->mode == 0) return 1;
    if (l->mode == 1 && failedfut(l->fs[i])) return 1;
  }
  return ndone == l->n;
}

/* The future of handle h (an index), or NULL when h is no open handle. */
static Future *tofut (lua_State *L, int h) {
  FutBox *b = (FutBox *)luaL_testudata(L, h, CFUT_FUTURE);
  return b != NULL ? b->f : NULL;
}

/* Raise the argument error 'fmt' for the table at 1: its first %s is
** the key at k, its second the type of the value at v (v = 0: none). */
static int badkey (lua_State *L, const char *fmt, int k, int v) {
  const char *key, *type = v ? luaL_typename(L, v) : "";
  k = lua_absindex(L, k);
  key = lua_type(L, k) == LUA_TSTRING
    ? lua_pushfstring(L, "'%s'", lua_tostring(L, k))
    : luaL_tolstring(L, k, NULL);
  return luaL_argerror(L, 1, lua_pushfstring(L, fmt, key, type));
}

/* A plain table (no metatable) used as a sequence of n futures must have
** no other keys. */
static void onlyseq (lua_State *L, lua_Integer n) {
  if (lua_getmetatable(L, 1)) {
    lua_pop(L, 1);
    return;
  }
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    lua_Integer i;
    int isint;
    lua_pop(L, 1);
    i = lua_tointegerx(L, -1, &isint);
    if (!(lua_type(L, -1) == LUA_TNUMBER && isint && i >= 1 && i <= n))
      badkey(L, "unexpected key %s in a sequence of futures%s", -1, 0);
  }
}

/* Collect the futures of the set at index 1 ({[f] = true, ...}) into the
** handles table at -2 and the list at -1. */
static FutList *checkset (lua_State *L) {
  FutList *l;
  int k = 0, n = 0;
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    lua_pop(L, 1);
    n++;
  }
  l = (FutList *)lua_newuserdatauv(L, sizeof *l + (size_t)n * sizeof(Future *),
                                   0);
  l->fs = (Future **)(l + 1);
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    Future *f = tofut(L, -2);
    if (f == NULL) badkey(L, "future expected as key %s, got %s", -2, -2);
    if (!(lua_type(L, -1) == LUA_TBOOLEAN && lua_toboolean(L, -1)))
      badkey(L, "value true expected at key %s, got %s", -2, -1);
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_rawseti(L, -4, ++k);            /* handles[k] = h */
    l->fs[k - 1] = f;
  }
  l->n = k;
  l->isset = 1;
  return l;
}

/* Collect the distinct futures of the sequence or set at index 1 into a
** list (kept in a userdata at the top) and their handles into a table at
** the top - 1.  Returns the list. */
static FutList *checklist (lua_State *L) {
  lua_Integer i, n;
  FutList *l;
  int k = 0;
  luaL_checktype(L, 1, LUA_TTABLE);
  n = luaL_len(L, 1);         /* __len may return anything */
  luaL_argcheck(L, n >= 0 && n <= MAXLIST, 1, "length out of range");
  if (n == 0) {               /* a set, or empty */
    lua_pushnil(L);
    if (lua_next(L, 1)) {
      lua_pop(L, 2);
      lua_newtable(L);
      return checkset(L);
    }
  }
  onlyseq(L, n);
  lua_createtable(L, (int)n, 0);        /* distinct handles */
  lua_createtable(L, 0, (int)n);        /* seen set */
  l = (FutList *)lua_newuserdatauv(L, sizeof *l + (size_t)n * sizeof(Future *),
                                   0);
  l->fs = (Future **)(l + 1);
  for (i = 1; i <= n; i++) {
    FutBox *b;
    lua_geti(L, 1, i);
    b = (FutBox *)luaL_testudata(L, -1, CFUT_FUTURE);
    if (b == NULL || b->f == NULL)
      luaL_argerror(L, 1, lua_pushfstring(L, "future expected at index %d, "
                    "got %s", (int)i, luaL_typename(L, -1)));
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -4) == LUA_TNIL) {
      lua_pop(L, 1);
      lua_pushvalue(L, -1);
      lua_pushboolean(L, 1);
      lua_rawset(L, -5);                /* seen[h] = true */
      lua_rawseti(L, -4, ++k);          /* handles[k] = h */
      l->fs[k - 1] = b->f;
    }
    else lua_pop(L, 2);
  }
  l->n = k;
  l->isset = 0;
  lua_remove(L, -2);                    /* seen set */
  return l;
}

static void listenall (lua_State *L, FutList *l, int on) {
  Waiter *w = cfut_waiter(L);
  int i;
  for (i = 0; i < l->n; i++) {
    if (on) {
      if (fut_listen(l->fs[i], w, FUT_LISTEN_WAIT) == CFUT_ENOMEM) {
        while (i-- > 0) fut_unlisten(l->fs[i], w, FUT_LISTEN_WAIT);
        luaL_error(L, "not enough memory");
      }
    }
    else fut_unlisten(l->fs[i], w, FUT_LISTEN_WAIT);
  }
}

/* Push the progress option of the options table at index i of wait or
** as_completed ({progress = p}); nil when there is none. */
static void pushprogress (lua_State *L, int i) {
  int t;
  if (lua_isnoneornil(L, i)) {
    lua_pushnil(L);
    return;
  }
  luaL_checktype(L, i, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, i)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING ||
        strcmp(lua_tostring(L, -1), "progress") != 0)
      luaL_argerror(L, i, lua_pushfstring(L, "unknown option '%s'",
                                          luaL_tolstring(L, -1, NULL)));
  }
  t = lua_getfield(L, i, "progress");
  luaL_argcheck(L, t == LUA_TNIL || t == LUA_TBOOLEAN ||
                   cfut_iscallable(L, -1), i,
                "field 'progress' must be a boolean or a function");
}

typedef struct BarWait {
  FutList *l;
  lua_State *L;
  int bar;                    /* stack index of the bar */
} BarWait;

/* listready, telling the bar how many are done.  Counted after the
** readiness is decided (futures only ever become done), so that the last
** count the bar gets is at least what made the wait end: all of them for
** ALL_COMPLETED. */
static int barready (void *ud) {
  BarWait *b = (BarWait *)ud;
  int i, ndone = 0, ready = listready(b->l);
  for (i = 0; i < b->l->n; i++) ndone += fut_isdone(fut_state(b->l->fs[i]));
  lua_getfield(b->L, b->bar, "update");
  lua_pushvalue(b->L, b->bar);
  lua_pushinteger(b->L, ndone);
  lua_call(b->L, 2, 0);
  return ready;
}

/* Call bar:name() for the bar at index i. */
static void barcall (lua_State *L, int i, const char *name) {
  lua_getfield(L, i, name);
  lua_pushvalue(L, i);
  lua_call(L, 1, 0);
}

/* Protected: the wait of futures.wait with a progress bar (list, bar,
** deadline). */
static int pwait (lua_State *L) {
  BarWait b;
  b.l = (FutList *)lua_touserdata(L, 1);
  b.L = L;
  b.bar = 2;
  barcall(L, 2, "waiting");
  listenall(L, b.l, 1);
  cfut_waituntil(L, barready, &b, lua_tonumber(L, 3));
  return 0;
}

/* futures.wait's wait with progress option p (at 2), the list at 4. */
static void barwait (lua_State *L, FutList *l, double deadline) {
  int r;
  cfut_pushbarfunc(L, "newbar");
  lua_pushvalue(L, 2);
  lua_pushinteger(L, l->n);
  lua_call(L, 2, 1);                    /* 5: the bar */
  lua_pushcfunction(L, pwait);
  lua_pushlightuserdata(L, l);
  lua_pushvalue(L, 5);
  lua_pushnumber(L, deadline);
  r = lua_pcall(L, 3, 0, 0);
  listenall(L, l, 0);
  barcall(L, 5, "close");               /* erased, even on error */
  if (r != LUA_OK) lua_error(L);
  lua_settop(L, 4);
}

/* futures.wait(fs [, timeout [, return_when [, {progress = p}]]]) */
static int m_wait (lua_State *L) {
  static const char *const modes[] = {
    "FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED", NULL
  };
  double deadline = cfut_deadline(L, 2);
  int mode = luaL_checkoption(L, 3, "ALL_COMPLETED", modes);
  FutList *l;
  int i, nd = 0, nn = 0;
  pushprogress(L, 4);
  lua_replace(L, 2);
  lua_settop(L, 2);                     /* 1: fs, 2: progress */
  l = checklist(L);                     /* 3: handles, 4: list */
  l->mode = mode;
  if (lua_toboolean(L, 2)) barwait(L, l, deadline);
  else if (!listready(l)) {
    listenall(L, l, 1);
    i = waitfor(L, cfut_waiter(L), listready, l, deadline);
    listenall(L, l, 0);
    if (i == CFUT_EINTR) cfut_raiseinterrupt(L);
  }
  else cfut_runcallbacks(L);
  lua_createtable(L, l->isset ? 0 : l->n, l->isset ? l->n : 0); /* done */
  lua_createtable(L, 0, 0);             /* not done */
  for (i = 0; i < l->n; i++) {
    int done = fut_isdone(fut_state(l->fs[i]));
    int t = done ? -3 : -2;
    if (done) fire(L, l->fs[i]);
    lua_rawgeti(L, 3, i + 1);
    if (l->isset) {
      lua_pushboolean(L, 1);
      lua_rawset(L, t - 1);             /* set[h] = true */
    }
    else lua_rawseti(L, t, done ? ++nd : ++nn);
  }
  return 2;
}

typedef struct AsComp {
  FutList l;
  char *yielded;
  int left;                   /* not yet yielded */
  int listening;
  Waiter *w;
  double deadline;
} AsComp;

static int anyready (void *ud) {
  AsComp *a = (AsComp *)ud;
  int i;
  for (i = 0; i < a->l.n; i++)
    if (!a->yielded[i] && fut_isdone(fut_state(a->l.fs[i]))) return 1;
  return 0;
}

static void ac_stop (AsComp *a) {
  int i;
  for (i = 0; i < a->l.n; i++) {
    if (a->listening) fut_unlisten(a->l.fs[i], a->w, FUT_LISTEN_WAIT);
    fut_release(a->l.fs[i]);
  }
  if (a->w) waiter_release(a->w);
  a->w = NULL;
  free(a->l.fs);
  a->l.fs = NULL;
  a->l.n = 0;
  a->listening = 0;
}

static int ac_gc (lua_State *L) {
  ac_stop((AsComp *)luaL_checkudata(L, 1, ASCOMP));
  return 0;
}

static int ac_next (lua_State *L) {
  AsComp *a = (AsComp *)luaL_checkudata(L, lua_upvalueindex(1), ASCOMP);
  int i;
  for (;;) {
    for (i = 0; i < a->l.n; i++) {
      if (!a->yielded[i] && fut_isdone(fut_state(a->l.fs[i]))) {
        a->yielded[i] = 1;
        a->left--;
        fire(L, a->l.fs[i]);
        lua_getiuservalue(L, lua_upvalueindex(1), 1);
        lua_rawgeti(L, -1, i + 1);
        return 1;
      }
    }
    if (a->left == 0) {
      ac_stop(a);
      return 0;
    }
    if (!a->listening) {
      /* A listener lost for lack of memory would wait past its future. */
      for (i = 0; i < a->l.n; i++) {
        if (fut_listen(a->l.fs[i], a->w, FUT_LISTEN_WAIT) == CFUT_ENOMEM) {
          while (i-- > 0) fut_unlisten(a->l.fs[i], a->w, FUT_LISTEN_WAIT);
          return luaL_error(L, "not enough memory");
        }
      }
      a->listening = 1;
    }
    if (!cfut_waituntil(L, anyready, a, a->deadline)) {
      lua_pushfstring(L, "%d (of %d) futures unfinished", a->left, a->l.n);
      return cfut_error(L, "TimeoutError", lua_tostring(L, -1));
    }
  }
}

static int ac_tostring (lua_State *L) {
  lua_pushfstring(L, "<as_completed iterator at %p>", lua_touserdata(L, 1));
  return 1;
}

/* futures.as_completed(fs [, timeout [, {progress = p}]]) */
static int m_as_completed (lua_State *L) {
  double deadline = cfut_deadline(L, 2);
  FutList *l;
  AsComp *a;
  int i;
  pushprogress(L, 3);
  lua_replace(L, 2);
  lua_settop(L, 2);                     /* 1: fs, 2: progress */
  l = checklist(L);                     /* 3: handles, 4: list */
  a = (AsComp *)lua_newuserdatauv(L, sizeof *a + (size_t)l->n, 1);
  memset(a, 0, sizeof *a);
  luaL_setmetatable(L, ASCOMP);
  a->yielded = (char *)(a + 1);
  memset(a->yielded, 0, (size_t)l->n);
  a->deadline = deadline;
  a->w = cfut_waiter(L);
  waiter_retain(a->w);
  a->l.fs = malloc((size_t)(l->n ? l->n : 1) * sizeof(Future *));
  if (a->l.fs == NULL) return luaL_error(L, "not enough memory");
  for (i = 0; i < l->n; i++) {
    a->l.fs[i] = l->fs[i];
    fut_retain(l->fs[i]);
  }
  a->l.n = a->left = l->n;
  lua_pushvalue(L, 3);
  lua_setiuservalue(L, -2, 1);          /* keep the handles */
  lua_pushcclosure(L, ac_next, 1);
  if (!lua_toboolean(L, 2)) return 1;
  /* With progress: iterator, nil, nil, the bar as the loop's closing
  ** value (a loop left by break erases it). */
  cfut_pushbarfunc(L, "wrap");
  lua_insert(L, -2);
  lua_pushvalue(L, 2);
  lua_pushinteger(L, l->n);
  lua_call(L, 3, 2);
  lua_pushnil(L);
  lua_pushnil(L);
  lua_rotate(L, -3, -1);                /* iter, nil, nil, bar */
  return 4;
}

static int m_poll (lua_State *L) {
  int n;
  cfut_loopdrain(L);          /* fileno() is readable again only later */
  n = cfut_runcallbacks(L);
  lua_pushinteger(L, n + cfut_loopexpire(L));
  return 1;
}

static int never (void *ud) {
  (void)ud;
  return 0;
}

static int m_sleep (lua_State *L) {
  lua_Number t = luaL_checknumber(L, 1);
  luaL_argcheck(L, t == t, 1, "sleep length must not be NaN");
  luaL_argcheck(L, t >= 0, 1, "sleep length must be non-negative");
  cfut_waituntil(L, never, NULL, t > 1e9 ? -1 : sys_now() + t);
  return 0;
}

/* }====================================================================== */

static const luaL_Reg fut_meth[] = {
  {"result", f_result},
  {"exception", f_exception},
  {"done", f_done},
  {"running", f_running},
  {"cancelled", f_cancelled},
  {"cancel", f_cancel},
  {"add_done_callback", f_add_done_callback},
  {"set_result", f_set_result},
  {"set_exception", f_set_exception},
  {"set_running_or_notify_cancel", f_set_running_or_notify_cancel},
  {NULL, NULL}
};

static const luaL_Reg fut_metameth[] = {
  {"__tostring", f_tostring},
  {"__gc", f_gc},
  {"__newindex", f_newindex},
  {"__index", NULL},          /* set below */
  {NULL, NULL}
};

static const luaL_Reg funcs[] = {
  {"future", m_future},
  {"wait", m_wait},
  {"as_completed", m_as_completed},
  {"poll", m_poll},
  {"sleep", m_sleep},
  {NULL, NULL}
};

static void weaktable (lua_State *L, const char *key, const char *mode) {
  lua_newtable(L);
  if (mode != NULL) {
    lua_createtable(L, 0, 1);
    lua_pushstring(L, mode);
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
  }
  lua_setfield(L, LUA_REGISTRYINDEX, key);
}

void cfut_openfutures (lua_State *L) {
  luaL_setfuncs(L, funcs, 0);
  if (luaL_newmetatable(L, CFUT_FUTURE)) {
    /* Every method and metamethod gets the metatable as upvalue 1, for
    ** checkbox; __index the methods as upvalue 2. */
    lua_pushvalue(L, -1);
    luaL_setfuncs(L, fut_metameth, 1);
    lua_pushvalue(L, -1);                 /* mt, mt */
    luaL_newlibtable(L, fut_meth);        /* mt, mt, methods */
    lua_pushvalue(L, -3);
    luaL_setfuncs(L, fut_meth, 1);
    lua_pushcclosure(L, f_index, 2);
    lua_setfield(L, -2, "__index");
  }
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &futmtkey);
  lua_pop(L, 1);
  if (luaL_newmetatable(L, ASCOMP)) {
    lua_pushcfunction(L, ac_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, ac_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  if (lua_getfield(L, LUA_REGISTRYINDEX, FUTCACHE) != LUA_TTABLE)
    weaktable(L, FUTCACHE, "v");
  lua_pop(L, 1);
  if (lua_getfield(L, LUA_REGISTRYINDEX, CALLBACKS) != LUA_TTABLE)
    weaktable(L, CALLBACKS, NULL);
  lua_pop(L, 1);
}
