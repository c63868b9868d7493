/*
** worker.c: a worker's Lua state and the running of tasks in it.
** Runs only on the worker's own thread (or process); never raises out.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "errors.h"
#include "heap.h"
#include "lbar.h"
#include "lcfut.h"
#include "marshal.h"
#include "worker.h"

#define NAMEKEY "cfut.thread_name"

/* The state the current thread is running a task in (for Ctrl-C).  Signal
** handlers read it (worker_sigint), so its model is initial-exec: in a
** module dlopen'ed by lua5.4, the default model reads it through
** __tls_get_addr, which allocates the module's TLS block on a thread's
** first access (malloc in a handler can deadlock).  Initial-exec puts it
** in the static TLS block that every thread has from its start (8 of the
** bytes glibc keeps for modules loaded later). */
static _Thread_local lua_State *running_L
  __attribute__((tls_model("initial-exec")));

/* print: the whole line is written with one call, so lines of concurrent
** tasks never mix, nor with a progress line of the main script. */
static int w_print (lua_State *L) {
  int i, n = lua_gettop(L);
  luaL_Buffer b;
  size_t len;
  const char *s;
  luaL_buffinit(L, &b);
  for (i = 1; i <= n; i++) {
    if (i > 1) luaL_addchar(&b, '\t');
    luaL_tolstring(L, i, NULL);
    luaL_addvalue(&b);
  }
  luaL_addchar(&b, '\n');
  luaL_pushresult(&b);
  s = lua_tolstring(L, -1, &len);
  cfut_barwrite(stdout, s, len);
  return 0;
}

/* os.exit inside a task ends the task, not the process. */
static int w_exit (lua_State *L) {
  int code;
  if (lua_isboolean(L, 1)) code = lua_toboolean(L, 1) ? 0 : 1;
  else code = (int)luaL_optinteger(L, 1, 0);
  return luaL_error(L, "os.exit(%d) called in a worker: the task ends here "
                       "(workers do not end the process)", code);
}

static void stop (lua_State *L, lua_Debug *ar);

/*
** Coroutines.  Hooks belong to each coroutine, and the stop hook goes on
** running_L: so running_L is the coroutine that runs now, not the task's
** main thread.  coroutine.resume and the functions coroutine.wrap makes
** set it for the time the coroutine runs, and put back the one before
** (also when it raises), hooking that one too if a stop came meanwhile.
** They call the library's own functions, so nothing else changes.
*/
static int resumein (lua_State *L, lua_State *co, int fn) {
  lua_State *prev = running_L;
  int st, n = lua_gettop(L) - fn;
  running_L = co;
  if (fut_stopping() && co != NULL) lua_sethook(co, stop, LUA_MASKCOUNT, 1);
  st = lua_pcall(L, n, LUA_MULTRET, 0);
  running_L = prev;
  if (prev != NULL && fut_stopping()) lua_sethook(prev, stop, LUA_MASKCOUNT, 1);
  else if (prev != NULL && fut_interrupted())
    lua_sethook(prev, stop, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
  if (st != LUA_OK) return lua_error(L);
  return lua_gettop(L) - fn + 1;
}

/* coroutine.resume(co, ...): the library's (upvalue 1). */
static int w_resume (lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  return resumein(L, co, 1);
}

/* A function made by coroutine.wrap: the library's (upvalue 1) for the
** coroutine at upvalue 2. */
static int w_wrapped (lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  return resumein(L, lua_tothread(L, lua_upvalueindex(2)), 1);
}

/* coroutine.wrap(f): the library's (upvalue 1) makes the function; its
** upvalue 1 is the coroutine (lcorolib.c's auxwrap). */
static int w_wrap (lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  if (lua_getupvalue(L, -1, 1) == NULL || !lua_isthread(L, -1)) {
    lua_settop(L, 1);           /* not what it was: leave it as it is */
    return 1;
  }
  lua_pushcclosure(L, w_wrapped, 2);
  return 1;
}

/* Put the wrappers in the coroutine table (at the top). */
static void wrapcoroutines (lua_State *L) {
  lua_getfield(L, -1, "resume");
  lua_pushcclosure(L, w_resume, 1);
  lua_setfield(L, -2, "resume");
  lua_getfield(L, -1, "wrap");
  lua_pushcclosure(L, w_wrap, 1);
  lua_setfield(L, -2, "wrap");
}

/* Set up the fresh state: libraries, cfut, print, os.exit.  Protected. */
static int setup (lua_State *L) {
  const char *path = lua_touserdata(L, 1);
  const char *cpath = lua_touserdata(L, 2);
  const char *name = lua_touserdata(L, 3);
  luaL_openlibs(L);
  /* Task data is young and short-lived: generational mode spends less on
  ** it than incremental sweeps over the worker's long-lived state. */
  lua_gc(L, LUA_GCGEN, 0, 0);
  cfut_openworker(L, path, cpath);
  lua_pushcfunction(L, w_print);
  lua_setglobal(L, "print");
  lua_getglobal(L, "os");
  lua_pushcfunction(L, w_exit);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);
  lua_getglobal(L, "coroutine");
  wrapcoroutines(L);
  lua_pop(L, 1);
  lua_pushstring(L, name);
  lua_setfield(L, LUA_REGISTRYINDEX, NAMEKEY);
  return 0;
}

#define NOSTATE "cannot create a Lua state for a worker"

/* NOSTATE ": why" in a malloc'ed string (NULL when out of memory). */
static char *nostate (const char *why) {
  size_t n = strlen(NOSTATE) + strlen(why) + 3;
  char *s = malloc(n);
  if (s != NULL) snprintf(s, n, "%s: %s", NOSTATE, why);
  return s;
}

lua_State *worker_newstate (const char *path, const char *cpath,
                            const char *name, char **err) {
  lua_State *L = heap_newstate();
  *err = NULL;
  if (L == NULL) return NULL;
  lua_pushcfunction(L, setup);
  lua_pushlightuserdata(L, (void *)path);
  lua_pushlightuserdata(L, (void *)cpath);
  lua_pushlightuserdata(L, (void *)name);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
    /* Not only memory: the module's Lua files may not be found, say. */
    const char *why = lua_tostring(L, -1);
    *err = nostate(why != NULL ? why : "(error object is not a string)");
    heap_close(L);
    return NULL;
  }
  return L;
}

const char *worker_nostate (const char *err) {
  return err != NULL ? err : NOSTATE " (not enough memory)";
}

/* Message handler: keep the error value and put the traceback beside it,
** as {err, traceback}. */
int worker_msghandler (lua_State *L) {
  const char *msg;
  if (lua_isnil(L, 1)) {
    lua_pushliteral(L, "(error object is a nil value)");
    lua_replace(L, 1);
  }
  if (lua_type(L, 1) == LUA_TSTRING)
    msg = lua_tostring(L, 1);
  else if (luaL_callmeta(L, 1, "__tostring") &&
           lua_type(L, -1) == LUA_TSTRING)
    msg = lua_tostring(L, -1);
  else if (lua_type(L, 1) == LUA_TNUMBER)
    msg = luaL_tolstring(L, 1, NULL);
  else
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, -2);  /* the traceback */
  lua_rawseti(L, -2, 2);
  return 1;
}

/* Encode n values at base into b; on failure to encode, the outcome is the
** encoder's message as an error (and 'failed' is set). */
static void encode (lua_State *L, MBuf *b, int flags, int *failed, int base,
                    int n) {
  char err[256];
  int r = marshal_encode(L, base, n, flags & MARSHAL_LOCAL,
                         *failed ? "error value" : "result", 1, b, err,
                         sizeof err);
  if (r == 0) return;
  lua_pushfstring(L, "cannot send %s from a worker",
                  r == CFUT_ENOMEM ? "the outcome (not enough memory)" : err);
  *failed = 1;
  b->len = 0;
  if (marshal_encode(L, -1, 1, flags & MARSHAL_LOCAL, "error value", 1, b, err,
                     sizeof err) != 0)
    b->len = 0;
  lua_pop(L, 1);
}

/* Hand the outcome over to f: small ones are copied into the future, larger
** ones (and failures with a traceback) get their own buffer. */
typedef struct Publish {
  void (*before) (void *ud);
  void *ud;
  int flags;                  /* marshal flags of the outcome */
  int told;                   /* 'before' was called */
} Publish;

static void tell (Publish *pub) {
  if (pub->before != NULL && !pub->told) pub->before(pub->ud);
  pub->told = 1;
}

static void finish (lua_State *L, Future *f, int failed, int base, int n,
                    const char *tb, Publish *pub) {
  MBuf *b;
  char *data, *t;
  size_t len;
  if (fut_stopping()) {       /* stopped: settled by the stopper, or here */
    tell(pub);
    fut_stop(f, FUT_STOP_CANCEL, NULL, 0);
    return;
  }
  b = cfut_scratch();
  if (b != NULL) encode(L, b, pub->flags, &failed, base, n);
  tell(pub);
  if (b == NULL) {
    fut_finish(f, 1, NULL, 0, NULL);
    return;
  }
  if (b->len <= FUT_INLINE && tb == NULL) {
    if (fut_finish_small(f, failed, b->data, b->len) != 0)
      marshal_discard(b->data, b->len);
    cfut_unscratch(b);
    return;
  }
  t = tb != NULL ? strdup(tb) : NULL;
  data = mbuf_steal(b, &len);
  cfut_unscratch(b);
  if (fut_finish(f, failed, data, len, t) != 0) {
    marshal_discard(data, len);
    free(data);
    free(t);
  }
}

/* A table (or userdata) with __call: a task too, as in the caller. */
static int callable (lua_State *L, int i) {
  if (luaL_getmetafield(L, i, "__call") == LUA_TNIL) return 0;
  lua_pop(L, 1);
  return 1;
}

/* Decode and call; leaves results (or {err, tb}) above 'base'. */
static int call (lua_State *L, const char *msg, size_t len, int flags,
                 int base) {
  char err[256];
  int n;
  lua_pushcfunction(L, worker_msghandler);
  /* (a task: it may bring globals) */
  n = marshal_decode(L, msg, len, flags | MARSHAL_GLOBALS, "argument", err,
                     sizeof err);
  if (n < 1) {
    if (n == 0) lua_pushliteral(L, "empty task message");
    else lua_pushfstring(L, "cannot receive the task: %s", err);
    lua_createtable(L, 2, 0);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
    return LUA_ERRRUN;
  }
  if (!lua_isfunction(L, base + 2) && !callable(L, base + 2)) {
    lua_settop(L, base + 1);
    lua_createtable(L, 2, 0);
    lua_pushliteral(L, "the task is not a function");
    lua_rawseti(L, -2, 1);
    return LUA_ERRRUN;
  }
  return lua_pcall(L, n - 1, LUA_MULTRET, base + 1);
}

typedef struct Run {
  Future *f;
  const char *msg;
  size_t len;
  Publish pub;
} Run;

/* Run the task and hand its outcome over, protected: a memory error in
** decoding or encoding (outside the task's own pcall) ends here too. */
static int prun (lua_State *L) {
  Run *run = (Run *)lua_touserdata(L, 1);
  int r;
  lua_settop(L, 0);
  r = call(L, run->msg, run->len, run->pub.flags, 0);
  if (r == LUA_OK)
    finish(L, run->f, 0, 2, lua_gettop(L) - 1, NULL, &run->pub);
  else {
    const char *tb = NULL;
    /* The handler's {err, traceback}; a memory error or an error in the
    ** handler leaves a bare message instead. */
    if (lua_istable(L, -1)) {
      lua_rawgeti(L, -1, 2);
      tb = lua_tostring(L, -1);
      lua_rawgeti(L, -2, 1);
    }
    finish(L, run->f, 1, lua_gettop(L), 1, tb, &run->pub);
  }
  return 0;
}

/* Messages from this size on make a task "big" (worker_run). */
#define BIGTASK (1u << 20)

int worker_run (lua_State *L, Future *f, const char *msg, size_t len,
                int flags, void (*before) (void *ud), void *ud) {
  int base = lua_gettop(L);
  const char *data, *tb;
  size_t outlen = 0;
  Run run;
  run.f = f;
  run.msg = msg;
  run.len = len;
  run.pub.before = before;
  run.pub.ud = ud;
  run.pub.flags = flags;
  run.pub.told = 0;
  running_L = L;
  /* A stop that came before the task started (its signal found no state
  ** to hook) takes effect at its first instruction. */
  if (fut_stopping()) lua_sethook(L, stop, LUA_MASKCOUNT, 1);
  lua_pushcfunction(L, prun);
  lua_pushlightuserdata(L, &run);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    const char *why = lua_tostring(L, -1);
    char *t;
    if (fut_stopping()) {
      lua_sethook(L, NULL, 0, 0);
      tell(&run.pub);
      fut_stop(f, FUT_STOP_CANCEL, NULL, 0);
      goto over;
    }
    t = strdup(why ? why : "not enough memory");
    tell(&run.pub);
    /* It may be finished already (Ctrl-C's hook fired after finish). */
    if (fut_finish(f, 1, NULL, 0, t) != 0) free(t);
  }
over:
  running_L = NULL;
  lua_sethook(L, NULL, 0, 0);
  lua_settop(L, base);
  if (fut_isdone(fut_state(f))) fut_outcome(f, &data, &outlen, &tb);
  return len >= BIGTASK || outlen >= BIGTASK;
}

void worker_tidy (lua_State *L) {
  lua_gc(L, LUA_GCCOLLECT);
}

typedef struct Init {
  const char *msg;
  size_t len;
  int flags;
  char *err;                  /* malloc'ed description of a failure */
} Init;

/* Run the initializer, protected: memory errors outside its own pcall
** end here too.  Returns true if it failed. */
static int pinit (lua_State *L) {
  Init *in = (Init *)lua_touserdata(L, 1);
  int r;
  lua_settop(L, 0);
  r = call(L, in->msg, in->len, in->flags, 0);
  if (r != LUA_OK) {
    if (lua_type(L, -1) == LUA_TTABLE) {  /* else a memory error */
      lua_rawgeti(L, -1, 2);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_rawgeti(L, -1, 1);
      }
    }
    in->err = strdup(luaL_tolstring(L, -1, NULL));
  }
  lua_pushboolean(L, r != LUA_OK);
  return 1;
}

int worker_init (lua_State *L, const char *msg, size_t len, int flags,
                 char **errmsg) {
  int base = lua_gettop(L), failed;
  Init in;
  in.msg = msg;
  in.len = len;
  in.flags = flags;
  in.err = NULL;
  lua_pushcfunction(L, pinit);
  lua_pushlightuserdata(L, &in);
  failed = lua_pcall(L, 1, 1, 0) != LUA_OK || lua_toboolean(L, -1);
  if (failed && in.err == NULL) in.err = strdup("not enough memory");
  lua_settop(L, base);
  *errmsg = in.err;
  return failed ? -1 : 0;
}

void worker_close (lua_State *L) {
  if (L != NULL) heap_close(L);
  cfut_freescratch();
  marshal_freespare();
}

void worker_poll (lua_State *L) {
  cfut_runcallbacks(L);
}

/*
** The hook that stops Lua code.  A stop (fut_stopping: f:cancel{force},
** task_timeout, the script's error end) raises at every Lua instruction
** until the task is over: a pcall in the task that catches it raises again
** at its next instruction, so no code of the task goes on after a stop.
** A count hook only, so that it never fires inside the message handler (a
** C function).  A Ctrl-C raises "interrupted!" once, as before; a signal
** that came for a task already over finds neither and does nothing.
*/
static void (*hookfn) (void);  /* worker_sethookfn */

void worker_sethookfn (void (*fn) (void)) {
  hookfn = fn;
}

static void stop (lua_State *L, lua_Debug *ar) {
  (void)ar;
  if (hookfn != NULL) hookfn();
  if (fut_stopping()) {
    lua_sethook(L, stop, LUA_MASKCOUNT, 1);
    luaL_error(L, WORKER_STOPPED);
  }
  lua_sethook(L, NULL, 0, 0);
  if (fut_interrupted()) luaL_error(L, "interrupted!");
}

void worker_sigint (void) {
  lua_State *L = running_L;
  if (L != NULL) {
    if (fut_stopping()) lua_sethook(L, stop, LUA_MASKCOUNT, 1);
    else lua_sethook(L, stop, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
  }
}
