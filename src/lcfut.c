/*
** lcfut.c: the cfut module: luaopen_cfut, executors and their methods, the
** helpers (monotonic, thread_name, getpid, kill, cpu_count, dumps, loads)
** and what a host calls at the end of the script.  Futures and waiting are
** in lfuture.c; the Lua side (error classes, map) in lua/cfut/, built in
** (src/embed.sh).
*/
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"

#include "cfut.h"
#include "errors.h"
#include "lbar.h"
#include "lcfut.h"
#include "lloop.h"
#include "luaparts.h"
#include "marshal.h"
#include "sys.h"
#include "ppool.h"
#include "tpool.h"

#define WORKERKEY "cfut.worker"       /* registry: this is a worker state */
#define NAMEKEY   "cfut.thread_name"
#define MAX_WORKERS 4096

typedef struct ExBox {
  Executor *ex;               /* one reference, dropped by __gc */
} ExBox;

const char *cfut_strerror (int code) {
  switch (code) {
#define CFUT_STRERROR(name, val, msg) case val: return msg;
    CFUT_ERRNO_MAP(CFUT_STRERROR)
#undef CFUT_STRERROR
    default: return "unknown error";
  }
}

/* {======================================================================
** Scratch buffers
** ======================================================================= */

#define SCRATCH_KEEP (1u << 20)   /* larger buffers are not kept */

static _Thread_local MBuf scratch;
static _Thread_local int scratch_busy;

MBuf *cfut_scratch (void) {
  MBuf *b;
  if (scratch_busy) {
    b = malloc(sizeof *b);
    if (b == NULL) return NULL;
    mbuf_init(b);
    return b;
  }
  scratch_busy = 1;
  scratch.len = 0;
  return &scratch;
}

void cfut_freescratch (void) {
  mbuf_free(&scratch);
  scratch_busy = 0;
}

void cfut_unscratch (MBuf *b) {
  if (b == NULL) return;
  if (b != &scratch) {
    mbuf_free(b);
    free(b);
    return;
  }
  if (b->cap > SCRATCH_KEEP) mbuf_free(b);
  b->len = 0;
  scratch_busy = 0;
}

/* }====================================================================== */

/* {======================================================================
** Executor handles
** ======================================================================= */

/* The handle at i when it is one; like checkbox in lfuture.c, the
** metatable is upvalue 1 of every method and metamethod of a handle. */
static ExBox *checkbox (lua_State *L, int i) {
  void *p = lua_touserdata(L, i);
  if (p != NULL && lua_getmetatable(L, i)) {
    int ok = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
    if (ok) return (ExBox *)p;
  }
  return (ExBox *)luaL_checkudata(L, i, CFUT_EXECUTOR);
}

static Executor *checkex (lua_State *L, int i) {
  ExBox *b = checkbox(L, i);
  if (b->ex == NULL) luaL_argerror(L, i, "executor handle is closed");
  return b->ex;
}

Executor *cfut_toexecutor (lua_State *L, int idx) {
  ExBox *b = (ExBox *)luaL_testudata(L, idx, CFUT_EXECUTOR);
  return b != NULL ? b->ex : NULL;
}

/* Drop a handle's reference to ex. */
static void dropex (Executor *ex) {
  /* The last handle anywhere: like shutdown(false). */
  if (atomic_fetch_sub(&ex->handles, 1) == 1) ex->ops->shutdown(ex, 0, 0);
  ex_release(ex);
}

static int newexbox (lua_State *L) {
  ExBox *b = (ExBox *)lua_newuserdatauv(L, sizeof *b, 0);
  b->ex = NULL;
  luaL_setmetatable(L, CFUT_EXECUTOR);
  return 1;
}

void cfut_pushexecutor (lua_State *L, Executor *ex) {
  atomic_fetch_add(&ex->handles, 1);
  lua_pushcfunction(L, newexbox);
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) {  /* out of memory: drop ex */
    dropex(ex);
    lua_error(L);
  }
  ((ExBox *)lua_touserdata(L, -1))->ex = ex;
}

static int e_gc (lua_State *L) {
  ExBox *b = checkbox(L, 1);
  Executor *ex = b->ex;
  if (ex == NULL) return 0;
  b->ex = NULL;
  dropex(ex);
  return 0;
}

/* Handles inside messages: all the marshaller knows of futures and
** executors is these operations (marshal.h, MarshalHandles). */

static int tohandle (lua_State *L, int idx, int local, void **h,
                     const char **why) {
  Future *f;
  Executor *ex;
  if ((f = cfut_tofuture(L, idx)) != NULL) {
    *h = f;
    if (!local) *why = "future: futures cannot cross to another process";
    return MARSHAL_FUTURE;
  }
  if ((ex = cfut_toexecutor(L, idx)) != NULL) {
    *h = ex;
    if (!local || !ex->local)
      *why = "executor: executors cannot cross to another process";
    return MARSHAL_EXECUTOR;
  }
  return 0;
}

/* A message holding an executor counts as one of its handles, as a Lua
** handle does: a queued task that carries its pool keeps it open. */
static void retainhandle (int kind, void *h) {
  if (kind == MARSHAL_FUTURE) fut_retain((Future *)h);
  else {
    atomic_fetch_add(&((Executor *)h)->handles, 1);
    ex_retain((Executor *)h);
  }
}

static void releasehandle (int kind, void *h) {
  if (kind == MARSHAL_FUTURE) fut_release((Future *)h);
  else dropex((Executor *)h);
}

static void pushhandle (lua_State *L, int kind, void *h) {
  if (kind == MARSHAL_FUTURE) {
    fut_retain((Future *)h);
    cfut_pushfuture(L, (Future *)h);
  }
  else {
    ex_retain((Executor *)h);
    cfut_pushexecutor(L, (Executor *)h);
  }
}

static const MarshalHandles handleops = {
  tohandle, pushhandle, retainhandle, releasehandle
};

static int e_tostring (lua_State *L) {
  Executor *ex = checkex(L, 1);
  lua_pushfstring(L, "<%s at %p>", ex->ops->name, (void *)ex);
  return 1;
}

int cfut_exflags (Executor *ex) {
  return (ex->local ? MARSHAL_LOCAL : 0) | MARSHAL_GLOBALS;
}

Future *cfut_newtask (Executor *ex, MBuf *b) {
  Future *f;
  if (b->cap > SCRATCH_KEEP) {  /* the scratch would be freed: adopt it */
    if ((f = fut_adopt_task(b->data, b->len)) != NULL) mbuf_steal(b, NULL);
  }
  else f = fut_new_task(b->data, b->len);
  /* What comes back from another process: no handles.  Code is accepted:
  ** the worker is this program, started by cfut from the same binary (the
  ** parent checks the bytes, marshal_check, before any decoding). */
  if (f != NULL && !ex->local) fut_set_flags(f, 0);
  return f;
}

/* Raise the error a refused submit deserves. */
int cfut_submiterror (lua_State *L, Executor *ex, int r) {
  if (r == CFUT_ESHUTDOWN)
    return cfut_error(L, "ShutdownError", cfut_strerror(r));
  if (r == CFUT_EBROKEN)
    return cfut_error(L, ex->broken_cls, ex->broken_msg ? ex->broken_msg
                                                        : cfut_strerror(r));
  return luaL_error(L, "%s", cfut_strerror(r));
}

static int senderror (lua_State *L, int r, const char *err) {
  if (r == CFUT_ENOMEM) return luaL_error(L, "not enough memory");
  return luaL_error(L, "cannot send %s to a worker", err);
}

/* ex:submit(fn, ...) */
static int e_submit (lua_State *L) {
  Executor *ex = checkex(L, 1);
  char err[256];
  MBuf *b;
  Future *f = NULL;
  int r;
  luaL_argexpected(L, cfut_iscallable(L, 2), 2, "function");
  if ((b = cfut_scratch()) == NULL) return luaL_error(L, "not enough memory");
  r = marshal_encode(L, 2, lua_gettop(L) - 1, cfut_exflags(ex), "argument", 1,
                     b, err, sizeof err);
  if (r == 0 && (f = cfut_newtask(ex, b)) == NULL) {
    marshal_discard(b->data, b->len);
    r = CFUT_ENOMEM;
  }
  cfut_unscratch(b);
  if (r != 0) return senderror(L, r, err);
  if ((r = ex->ops->submit(ex, &f, 1)) != 0) {
    fut_release(f);
    return cfut_submiterror(L, ex, r);
  }
  cfut_pushnewfuture(L, f);
  return 1;
}

static int alldown (void *ud) {
  void **a = (void **)ud;
  Executor *ex = (Executor *)a[0];
  int n = ex->ops->alive(ex, (Waiter *)a[1]);
  if (n < 0) luaL_error((lua_State *)a[2], "not enough memory");
  return n == 0;
}

/* Shut ex down; with wait, wait for its workers in an interruptible wait
** that runs this state's callbacks, then join them. */
static void shutdown (lua_State *L, Executor *ex, int wait, int cancel) {
  void *a[3];
  ex->ops->shutdown(ex, 0, cancel);
  if (!wait) return;
  a[0] = ex;
  a[1] = cfut_waiter(L);
  a[2] = L;
  cfut_waituntil(L, alldown, a, -1);
  ex->ops->shutdown(ex, 1, 0);
}

static int getflag (lua_State *L, int t, const char *k, int def) {
  int r = def;
  int ty = lua_getfield(L, t, k);
  if (ty == LUA_TBOOLEAN) r = lua_toboolean(L, -1);
  else if (ty != LUA_TNIL)
    luaL_argerror(L, 2, lua_pushfstring(L, "field '%s' must be a boolean", k));
  lua_pop(L, 1);
  return r;
}

/* ex:shutdown([wait [, cancel_futures]]) or ex:shutdown{wait=, ...} */
static int e_shutdown (lua_State *L) {
  Executor *ex = checkex(L, 1);
  int wait, cancel;
  if (lua_istable(L, 2)) {
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2)
                                                     : "";
      lua_pop(L, 1);
      if (strcmp(k, "wait") != 0 && strcmp(k, "cancel_futures") != 0)
        luaL_argerror(L, 2, lua_pushfstring(L, "unknown option '%s'",
                                            luaL_tolstring(L, -1, NULL)));
    }
    wait = getflag(L, 2, "wait", 1);
    cancel = getflag(L, 2, "cancel_futures", 0);
  }
  else {
    wait = lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2);
    cancel = lua_toboolean(L, 3);
  }
  shutdown(L, ex, wait, cancel);
  return 0;
}

static int e_close (lua_State *L) {
  shutdown(L, checkex(L, 1), 1, 0);
  return 0;
}

/* }====================================================================== */

/* {======================================================================
** futures.thread_pool and futures.process_pool
** ======================================================================= */

static int default_workers (void) {
  int n = sys_cpu_count() + 4;
  return n < 32 ? n : 32;
}

/* max_workers from the value at idx; 'field' names it in the message. */
static int checkmax (lua_State *L, int idx, const char *field) {
  int isint;
  lua_Integer n = lua_tointegerx(L, idx, &isint);
  const char *what = field ? "field 'max_workers'" : "max_workers";
  if (!isint || n < 1)
    luaL_argerror(L, 1, lua_pushfstring(L, "%s must be a positive integer",
                                        what));
  if (n > MAX_WORKERS)
    luaL_argerror(L, 1, lua_pushfstring(L, "%s must be at most %d", what,
                                        MAX_WORKERS));
  return (int)n;
}

/* Encode initializer and initargs of the options table at 1. */
static void encodeinit (lua_State *L, int flags, char **init,
                        size_t *initlen) {
  MBuf b;
  char err[256];
  int base = lua_gettop(L), n = 1, r;
  lua_getfield(L, 1, "initializer");
  if (lua_isnil(L, -1)) {
    lua_settop(L, base);
    return;
  }
  if (!cfut_iscallable(L, -1))
    luaL_argerror(L, 1, "field 'initializer' must be a function");
  if (lua_getfield(L, 1, "initargs") != LUA_TNIL) {
    lua_Integer i, len;
    luaL_argcheck(L, lua_istable(L, -1), 1, "field 'initargs' must be a table");
    if (lua_getfield(L, -1, "n") == LUA_TNUMBER) {
      int isint;
      len = lua_tointegerx(L, -1, &isint);
      luaL_argcheck(L, isint && len >= 0, 1,
                    "field 'initargs.n' must be a non-negative integer");
    }
    else len = (lua_Integer)luaL_len(L, -2);
    lua_pop(L, 1);
    luaL_argcheck(L, len >= 0 && len < (1 << 20) &&
                     lua_checkstack(L, (int)len + 1),
                  1, "field 'initargs' has too many values");
    for (i = 1; i <= len; i++) lua_geti(L, base + 2, i);
    lua_remove(L, base + 2);
    n += (int)len;
  }
  else lua_pop(L, 1);
  mbuf_init(&b);
  r = marshal_encode(L, base + 1, n, flags | MARSHAL_GLOBALS,
                     "initializer value", 1,
                     &b, err, sizeof err);
  if (r != 0) {
    mbuf_free(&b);
    senderror(L, r, err);
  }
  *init = mbuf_steal(&b, initlen);
  lua_settop(L, base);
}

static void checkoptions (lua_State *L, const char *const known[]) {
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    int i;
    lua_pop(L, 1);
    for (i = 0; known[i]; i++)
      if (lua_type(L, -1) == LUA_TSTRING &&
          strcmp(lua_tostring(L, -1), known[i]) == 0) break;
    if (known[i] == NULL)
      luaL_argerror(L, 1, lua_pushfstring(L, "unknown option '%s'",
                                          luaL_tolstring(L, -1, NULL)));
  }
}

/* package[k] for the workers, or NULL when it is not a string (or
** `package` is not a table): they then keep their own default.  The
** string is kept alive in the registry; the stack is left as it was. */
static const char *pkgfield (lua_State *L, const char *k) {
  const char *s = NULL;
  if (lua_getglobal(L, "package") == LUA_TTABLE) {
    if (lua_getfield(L, -1, k) == LUA_TSTRING) s = lua_tostring(L, -1);
    else {
      lua_pop(L, 1);
      lua_pushnil(L);
    }
    lua_setfield(L, LUA_REGISTRYINDEX,
                 k[0] == 'p' ? "cfut.path" : "cfut.cpath");
  }
  lua_pop(L, 1);
  return s;
}

/* Read the argument at 1 of a pool constructor (n, an options table with
** the names in 'known', or nothing) into *max (which keeps its default
** when none is given).  Leaves only the argument on the stack. */
static void poolargs (lua_State *L, const char *const known[], int *max) {
  if (lua_istable(L, 1)) {
    checkoptions(L, known);
    if (lua_getfield(L, 1, "max_workers") != LUA_TNIL)
      *max = checkmax(L, -1, "max_workers");
  }
  else if (!lua_isnoneornil(L, 1)) {
    luaL_argexpected(L, lua_type(L, 1) == LUA_TNUMBER, 1,
                     "max_workers or options table");
    *max = checkmax(L, 1, NULL);
  }
  lua_settop(L, 1);
}

/* The task_timeout option of the table at 1 (seconds), or 0 for none. */
static double tasktimeout (lua_State *L) {
  lua_Number t;
  if (!lua_istable(L, 1) || lua_getfield(L, 1, "task_timeout") == LUA_TNIL) {
    lua_settop(L, 1);
    return 0;
  }
  luaL_argcheck(L, lua_type(L, -1) == LUA_TNUMBER, 1,
                "field 'task_timeout' must be a number");
  t = lua_tonumber(L, -1);
  luaL_argcheck(L, t > 0 && t <= 1e9, 1,
                "field 'task_timeout' must be a positive number of seconds");
  lua_settop(L, 1);
  return (double)t;
}

/* Push the handle of a new pool, or raise why it could not be made (its
** initializer message is then freed). */
static int pushpool (lua_State *L, Executor *ex, char *init, size_t initlen,
                     const char *why) {
  if (ex == NULL) {
    if (init != NULL) {
      marshal_discard(init, initlen);
      free(init);
    }
    return luaL_error(L, "cannot make a pool: %s", why);
  }
  cfut_pushexecutor(L, ex);
  return 1;
}

/* futures.thread_pool([n or opts]) */
static int m_thread_pool (lua_State *L) {
  static const char *const known[] = {
    "max_workers", "initializer", "initargs", "thread_name_prefix",
    "task_timeout", NULL
  };
  TPoolConfig cfg;
  Executor *ex;
  memset(&cfg, 0, sizeof cfg);
  cfg.max_workers = default_workers();
  ex_reap();
  poolargs(L, known, &cfg.max_workers);
  cfg.timeout = tasktimeout(L);
  if (lua_istable(L, 1) &&
      lua_getfield(L, 1, "thread_name_prefix") != LUA_TNIL) {
    luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING, 1,
                  "field 'thread_name_prefix' must be a string");
    cfg.prefix = lua_tostring(L, -1);   /* stays on the stack */
  }
  cfg.path = pkgfield(L, "path");
  cfg.cpath = pkgfield(L, "cpath");
  if (lua_istable(L, 1))
    encodeinit(L, MARSHAL_LOCAL, &cfg.init, &cfg.initlen);
  ex = tpool_new(&cfg);        /* first: it takes cfg.init on success */
  /* task_timeout times tasks: map then sends one item per task (lmap.c) */
  if (ex != NULL) ex->pertask = cfg.timeout > 0;
  return pushpool(L, ex, cfg.init, cfg.initlen, "not enough memory");
}

/* encodeinit for mpi_pool, protected: the options table at 1 -> a full
** userdata holding an MBuf, or nil when there is no initializer. */
static int mpi_encodeinit (lua_State *L) {
  char *init = NULL;
  size_t initlen = 0;
  MBuf *b;
  encodeinit(L, 0, &init, &initlen);
  if (init == NULL) return 0;
  b = (MBuf *)lua_newuserdatauv(L, sizeof *b, 0);
  b->data = init;
  b->len = b->cap = initlen;
  return 1;
}

/* futures.process_pool([n or opts]) */
static int m_process_pool (lua_State *L) {
  static const char *const known[] = {
    "max_workers", "initializer", "initargs", "max_tasks_per_child",
    "task_timeout", NULL
  };
  PPoolConfig cfg;
  Executor *ex;
  const char *why = NULL;
  memset(&cfg, 0, sizeof cfg);
  cfg.max_workers = sys_cpu_count();
  ex_reap();
  poolargs(L, known, &cfg.max_workers);
  cfg.timeout = tasktimeout(L);
  if (lua_istable(L, 1) &&
      lua_getfield(L, 1, "max_tasks_per_child") != LUA_TNIL) {
    int isint;
    lua_Integer n = lua_tointegerx(L, -1, &isint);
    luaL_argcheck(L, isint && n >= 1, 1,
                  "field 'max_tasks_per_child' must be a positive integer");
    cfg.max_tasks = (long)n;
  }
  cfg.path = pkgfield(L, "path");
  cfg.cpath = pkgfield(L, "cpath");
  if (lua_istable(L, 1)) encodeinit(L, 0, &cfg.init, &cfg.initlen);
  ex = ppool_new(&cfg, &why);   /* first: it sets why, takes cfg.init */
  /* one item per task for map (lmap.c) when tasks are counted or timed */
  if (ex != NULL) ex->pertask = cfg.max_tasks > 0 || cfg.timeout > 0;
  return pushpool(L, ex, cfg.init, cfg.initlen, why);
}

/* futures.mpi_pool([n or opts]): the process pool's executor with MPI
** workers.  The MPI side lives in the module cfut.mpi (cfut/mpi.so, built
** by `make mpi`), so that this module needs no MPI: its _open gives the
** transport (ppool.h) and its state for this pool. */
static int m_mpi_pool (lua_State *L) {
  static const char *const known[] = {
    "max_workers", "initializer", "initargs", "max_tasks_per_child",
    "task_timeout", "hosts", "mpi_info", "wdir", "env", NULL
  };
  PPoolConfig cfg;
  Executor *ex;
  const char *why = NULL;
  int given;
  memset(&cfg, 0, sizeof cfg);
  cfg.max_workers = -1;
  ex_reap();
  poolargs(L, known, &cfg.max_workers);
  cfg.timeout = tasktimeout(L);
  if (lua_istable(L, 1) &&
      lua_getfield(L, 1, "max_tasks_per_child") != LUA_TNIL)
    luaL_argerror(L, 1, "field 'max_tasks_per_child' is not offered by "
                  "mpi_pool (its workers are not replaced)");
  lua_settop(L, 1);
  given = cfg.max_workers;
  cfg.path = pkgfield(L, "path");
  cfg.cpath = pkgfield(L, "cpath");
  /* cfut.mpi._open(opts, max_workers or nil, path, cpath) ->
  **   transport, state, max_workers */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cfut.mpi");
  if (!lua_isfunction(L, -2) || lua_pcall(L, 1, 1, 0) != LUA_OK)
    return luaL_error(L, "futures.mpi_pool needs cfut's MPI module "
      "(cfut/mpi.so), which could not be loaded: build it with `make mpi`, "
      "which installs Open MPI (apt-get install openmpi-bin libopenmpi-dev) "
      "(%s)", lua_isstring(L, -1) ? lua_tostring(L, -1) : "require failed");
  if (lua_getfield(L, -1, "_open") != LUA_TFUNCTION)
    return luaL_error(L, "module cfut.mpi has no _open");
  lua_pushvalue(L, 1);
  if (given > 0) lua_pushinteger(L, given);
  else lua_pushnil(L);
  if (cfg.path) lua_pushstring(L, cfg.path);
  else lua_pushnil(L);
  if (cfg.cpath) lua_pushstring(L, cfg.cpath);
  else lua_pushnil(L);
  lua_call(L, 4, 3);          /* raises its own argument errors */
  cfg.tr = (const PPTransport *)lua_touserdata(L, -3);
  cfg.trctx = lua_touserdata(L, -2);
  cfg.max_workers = (int)lua_tointeger(L, -1);
  if (cfg.tr == NULL || cfg.trctx == NULL || cfg.max_workers < 1)
    return luaL_error(L, "module cfut.mpi gave no transport");
  lua_settop(L, 1);
  if (lua_istable(L, 1)) {
    /* (encodeinit raises: the transport state must not leak then) */
    lua_pushcfunction(L, mpi_encodeinit);
    lua_pushvalue(L, 1);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
      cfg.tr->close(cfg.trctx);
      return lua_error(L);
    }
    if (!lua_isnil(L, -1)) {
      MBuf *b = (MBuf *)lua_touserdata(L, -1);
      cfg.initlen = b->len;
      cfg.init = mbuf_steal(b, &cfg.initlen);
    }
    lua_settop(L, 1);
  }
  ex = ppool_new(&cfg, &why);   /* takes cfg.init and cfg.tr on success */
  if (ex == NULL && cfg.tr != NULL) cfg.tr->close(cfg.trctx);
  if (ex != NULL) ex->pertask = cfg.timeout > 0;   /* as process_pool */
  return pushpool(L, ex, cfg.init, cfg.initlen, why);
}

/* }====================================================================== */

/* {======================================================================
** Helpers
** ======================================================================= */

static int m_monotonic (lua_State *L) {
  lua_pushnumber(L, sys_now());
  return 1;
}

static int m_thread_name (lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, NAMEKEY) != LUA_TSTRING)
    lua_pushliteral(L, "MainThread");
  return 1;
}

static int m_getpid (lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

static int m_cpu_count (lua_State *L) {
  lua_pushinteger(L, sys_cpu_count());
  return 1;
}

static const struct { const char *name; int sig; } signames[] = {
  {"SIGHUP", SIGHUP}, {"SIGINT", SIGINT}, {"SIGQUIT", SIGQUIT},
  {"SIGILL", SIGILL}, {"SIGTRAP", SIGTRAP}, {"SIGABRT", SIGABRT},
  {"SIGBUS", SIGBUS}, {"SIGFPE", SIGFPE}, {"SIGKILL", SIGKILL},
  {"SIGUSR1", SIGUSR1}, {"SIGSEGV", SIGSEGV}, {"SIGUSR2", SIGUSR2},
  {"SIGPIPE", SIGPIPE}, {"SIGALRM", SIGALRM}, {"SIGTERM", SIGTERM},
  {"SIGCHLD", SIGCHLD}, {"SIGCONT", SIGCONT}, {"SIGSTOP", SIGSTOP},
  {"SIGTSTP", SIGTSTP}, {"SIGTTIN", SIGTTIN}, {"SIGTTOU", SIGTTOU},
  {"SIGURG", SIGURG}, {"SIGXCPU", SIGXCPU}, {"SIGXFSZ", SIGXFSZ},
  {"SIGVTALRM", SIGVTALRM}, {"SIGPROF", SIGPROF}, {"SIGWINCH", SIGWINCH},
  {"SIGIO", SIGIO}, {"SIGSYS", SIGSYS}, {NULL, 0}
};

static int checksignal (lua_State *L, int i) {
  const char *name;
  int k;
  if (lua_type(L, i) == LUA_TNUMBER) {
    lua_Integer s = luaL_checkinteger(L, i);
    luaL_argcheck(L, s >= 0 && s <= 64, i, "invalid signal number");
    return (int)s;
  }
  name = luaL_checkstring(L, i);
  for (k = 0; signames[k].name; k++) {
    if (strcmp(name, signames[k].name) == 0 ||
        strcmp(name, signames[k].name + 3) == 0)
      return signames[k].sig;
  }
  return luaL_argerror(L, i, lua_pushfstring(L, "unknown signal '%s'", name));
}

/* futures.kill(pid, sig): true, or nil, message, errno */
static int m_kill (lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  int sig = checksignal(L, 2);
  /* A cast would turn 2^32 into 0 (this process group) or -1 (all). */
  luaL_argcheck(L, pid == (pid_t)pid, 1, "pid out of range");
  /* 0, -1 and -pgid name many processes: kill(-1, 9) would end every
  ** process of the user. */
  if (pid <= 0)
    luaL_argerror(L, 1, lua_pushfstring(L, "pid must name one process "
                  "(a positive integer), got %I", pid));
  return luaL_fileresult(L, kill((pid_t)pid, sig) == 0, NULL);
}

static int pushbuf (lua_State *L) {
  MBuf *b = (MBuf *)lua_touserdata(L, 1);
  lua_pushlstring(L, b->data, b->len);
  return 1;
}

/* futures.dumps(...): the values in the wire format (no handles). */
static int m_dumps (lua_State *L) {
  MBuf b;
  char err[256];
  int r;
  mbuf_init(&b);
  r = marshal_encode(L, 1, lua_gettop(L), 0, "argument", 1, &b, err,
                     sizeof err);
  if (r != 0) mbuf_free(&b);
  if (r == CFUT_ENOMEM) return luaL_error(L, "not enough memory");
  if (r != 0) return luaL_error(L, "cannot dump %s", err);
  lua_pushcfunction(L, pushbuf);      /* protected: b is freed anyway */
  lua_pushlightuserdata(L, &b);
  r = lua_pcall(L, 1, 1, 0);
  mbuf_free(&b);
  return r == LUA_OK ? 1 : lua_error(L);
}

/* futures.loads(s [, allow_code]) */
static int m_loads (lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  int flags = lua_toboolean(L, 2) ? 0 : MARSHAL_NOCODE;
  char err[256];
  int n;
  lua_settop(L, 1);
  n = marshal_decode(L, s, len, flags, NULL, err, sizeof err);
  if (n < 0) return luaL_error(L, "cannot load: %s", err);
  return n;
}

/* }====================================================================== */

/* {======================================================================
** Module
** ======================================================================= */

/* The end of the script: every open executor shut down with wait, then
** the callbacks still due. */
static atomic_int script_failed;     /* cfut_scriptfailed was called */

void cfut_scriptfailed (void) {
  atomic_store(&script_failed, 1);
}

int cfut_atexit (lua_State *L) {
  Executor **arr;
  int i, n;
  int failed = atomic_load(&script_failed);
  if (fut_interrupted() || failed) {
    /* Ctrl-C: cancel and interrupt, then give workers a moment.  An
    ** uncaught error: cancel and stop (a process worker stuck in C code
    ** is killed after half a second), and give them a little longer. */
    double end = sys_now() + (failed ? 1.5 : 0.8);
    if (failed) ex_stop_all();
    else ex_interrupt_all();
    n = ex_list(&arr);
    for (i = 0; i < n; i++) {
      arr[i]->ops->shutdown(arr[i], 0, 1);
      while (arr[i]->ops->alive(arr[i], NULL) > 0 && sys_now() < end)
        sys_sleep(0.002);
      if (arr[i]->ops->alive(arr[i], NULL) == 0) {
        arr[i]->ops->shutdown(arr[i], 1, 0);
        ex_unregister(arr[i]);
      }
      ex_release(arr[i]);
    }
    free(arr);
    return 0;
  }
  while ((n = ex_list(&arr)) > 0) {
    for (i = 0; i < n; i++) {
      shutdown(L, arr[i], 1, 0);
      ex_unregister(arr[i]);
      ex_release(arr[i]);
    }
    free(arr);
  }
  cfut_runcallbacks(L);
  return 0;
}

static int runcallbacks (lua_State *L) {
  lua_pushinteger(L, cfut_runcallbacks(L));
  return 1;
}

/* __gc of the registry sentinel of a main state (the stock lua5.4 closing
** its state): join every worker before the library can be unloaded. */
static int sentinel_gc (lua_State *L) {
  ex_shutdown_all();
  lua_pushcfunction(L, runcallbacks);
  lua_pcall(L, 0, 0, 0);
  return 0;
}

void cfut_openworker (lua_State *L, const char *path, const char *cpath) {
  lua_pushboolean(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, WORKERKEY);
  lua_getglobal(L, "package");
  if (path) {
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
  }
  if (cpath) {
    lua_pushstring(L, cpath);
    lua_setfield(L, -2, "cpath");
  }
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_cfut);
  lua_setfield(L, -2, CFUT_MODNAME);
  lua_pop(L, 2);
  /* Open it now: handles that arrive need its metatables and caches. */
  luaL_requiref(L, CFUT_MODNAME, luaopen_cfut, 0);
  lua_pop(L, 1);
}

static const luaL_Reg ex_meth[] = {
  {"submit", e_submit},
  {"shutdown", e_shutdown},
  {NULL, NULL}
};

static const luaL_Reg ex_metameth[] = {
  {"__gc", e_gc},
  {"__close", e_close},
  {"__tostring", e_tostring},
  {"__index", NULL},
  {NULL, NULL}
};

static const luaL_Reg funcs[] = {
  {"thread_pool", m_thread_pool},
  {"process_pool", m_process_pool},
  {"mpi_pool", m_mpi_pool},
  {"monotonic", m_monotonic},
  {"thread_name", m_thread_name},
  {"getpid", m_getpid},
  {"kill", m_kill},
  {"cpu_count", m_cpu_count},
  {"dumps", m_dumps},
  {"loads", m_loads},
#ifdef CFUT_FAILALLOC
  {"_failalloc", fa_lcontrol},        /* the failing-allocator build */
#endif
  {NULL, NULL}
};

/* Run part(M, ...) for the built-in Lua part 'name' of the module (never
** through package.path, which is the user's): the 'nargs' values above M
** are passed along. */
static void luapart (lua_State *L, const char *name, int m, int nargs) {
  int i, top = lua_gettop(L);
  const LuaPart *p = cfut_luaparts;
  while (p->name != NULL && strcmp(p->name, name) != 0) p++;
  if (p->name == NULL)
    luaL_error(L, "Lua part '%s' of cfut is not built in", name);
  if (luaL_loadbufferx(L, p->code, p->len, p->chunkname, "t") != LUA_OK)
    lua_error(L);
  lua_call(L, 0, 1);
  lua_pushvalue(L, m);
  for (i = 0; i < nargs; i++) lua_pushvalue(L, top - nargs + 1 + i);
  lua_call(L, 1 + nargs, 0);
  lua_settop(L, top - nargs);
}

int luaopen_cfut (lua_State *L) {
  int m;
  tpool_initsignals();
  fut_set_discard(marshal_discard);
  marshal_sethandles(&handleops);
  marshal_resetnames(L);    /* a reloaded module has new tables */
  luaL_newlib(L, funcs);
  m = lua_gettop(L);
  cfut_openfutures(L);
  cfut_openmap(L);
  cfut_openprocworker(L);
  lua_pushliteral(L, CFUT_VERSION);
  lua_setfield(L, m, "_VERSION");
  lua_pushliteral(L, "FIRST_COMPLETED");
  lua_setfield(L, m, "FIRST_COMPLETED");
  lua_pushliteral(L, "FIRST_EXCEPTION");
  lua_setfield(L, m, "FIRST_EXCEPTION");
  lua_pushliteral(L, "ALL_COMPLETED");
  lua_setfield(L, m, "ALL_COMPLETED");
  lua_pushvalue(L, m);
  lua_setfield(L, LUA_REGISTRYINDEX, "cfut.module");
  luaL_newmetatable(L, CFUT_EXECUTOR);
  lua_pushvalue(L, -1);               /* upvalue 1 of each: for checkbox */
  luaL_setfuncs(L, ex_metameth, 1);
  luaL_newlibtable(L, ex_meth);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, ex_meth, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "__index");
  lua_remove(L, -2);                  /* methods table on top */
  luapart(L, "cfut.errors", m, 0);
  cfut_openbar(L);
  lua_pushvalue(L, -1);
  luapart(L, "cfut.progress", m, 1);  /* gets the bar's C functions */
  luapart(L, "cfut.iter", m, 2);      /* the executor methods, the bars */
  cfut_openloop(L, m);
  luapart(L, "cfut.loop", m, 1);      /* gets the loop's C functions */
  cfut_waiter(L);     /* before the sentinel: finalized after it */
  if (lua_getfield(L, LUA_REGISTRYINDEX, WORKERKEY) == LUA_TNIL &&
      lua_getfield(L, LUA_REGISTRYINDEX, "cfut.sentinel") == LUA_TNIL) {
    lua_newuserdatauv(L, 1, 0);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, sentinel_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, "cfut.sentinel");
  }
  lua_settop(L, m);
  return 1;
}

/* }====================================================================== */
