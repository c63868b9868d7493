/*
** lmap.c: the batch behind Executor:map when every item is known up front.
** Each item is encoded once and all futures are queued with one submit (one
** lock, one wake-up); the iterator walks a plain array of futures, so no
** Lua handle is made per item.  (With buffersize, map runs in Lua on
** submit: see lua/cfut/iter.lua.)
*/
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "errors.h"
#include "lcfut.h"
#include "marshal.h"
#include "sys.h"

#define MAPBATCH "cfut.MapIterator"

typedef struct MapBatch {
  Future **fs;                /* one reference each; malloc'ed */
  int n;                      /* how many were made */
  int next;                   /* index of the next to deliver */
  double deadline;            /* -1: none */
} MapBatch;

/* Cancel and let go of every future from index 'from' on. */
static void droprest (MapBatch *m, int from) {
  int i;
  for (i = from; i < m->n; i++) {
    if (m->fs[i] == NULL) continue;
    fut_cancel(m->fs[i]);
    fut_release(m->fs[i]);
    m->fs[i] = NULL;
  }
}

static int mb_gc (lua_State *L) {
  MapBatch *m = (MapBatch *)luaL_checkudata(L, 1, MAPBATCH);
  if (m->fs == NULL) return 0;
  droprest(m, 0);             /* like Python's generator being closed */
  free(m->fs);
  m->fs = NULL;
  return 0;
}

static int mb_tostring (lua_State *L) {
  lua_pushfstring(L, "<map iterator at %p>", lua_touserdata(L, 1));
  return 1;
}

/* for i, ... in iterator: the next position and its values.  A future
** stays in the array until its values are out, so an error raised on the
** way leaves it to __gc. */
static int mb_call (lua_State *L) {
  MapBatch *m = (MapBatch *)luaL_checkudata(L, 1, MAPBATCH);
  const char *d, *tb;
  size_t len;
  Future *f;
  int i = m->next, n;
  if (m->fs == NULL || i >= m->n || (f = m->fs[i]) == NULL) return 0;
  if (!cfut_waitfuture(L, f, m->deadline)) {
    droprest(m, i);           /* as Python: what is left is cancelled */
    return cfut_error(L, "TimeoutError", "");
  }
  m->next = i + 1;
  lua_settop(L, 0);
  lua_pushinteger(L, i + 1);
  if (fut_state(f) == FUT_CANCELLED) {
    droprest(m, i);
    return cfut_error(L, "CancelledError", "");
  }
  if (fut_outcome(f, &d, &len, &tb)) droprest(m, i + 1);
  n = cfut_pushresult(L, f);
  m->fs[i] = NULL;
  fut_release(f);
  return n + 1;
}

/* Encode item i (1-based) of the k sequence tables at 'first'... with fn at
** 2; return the new future. */
static Future *newitem (lua_State *L, Executor *ex, int first, int k,
                        lua_Integer i, int *err, char *msg, size_t msglen) {
  MBuf *b = cfut_scratch();
  Future *f = NULL;
  int j, top = lua_gettop(L);
  if (b == NULL) {
    *err = CFUT_ENOMEM;
    return NULL;
  }
  lua_pushvalue(L, 2);
  for (j = 0; j < k; j++) lua_geti(L, first + j, i);
  *err = marshal_encode(L, top + 1, k + 1, cfut_exflags(ex), "argument", 1,
                        b, msg, msglen);
  if (*err == 0 && (f = cfut_newtask(ex, b)) == NULL) {
    marshal_discard(b->data, b->len);
    *err = CFUT_ENOMEM;
  }
  cfut_unscratch(b);
  lua_settop(L, top);
  return f;
}

/* ex:_mapsubmit(fn, timeout, n, t1, ..., tk): queue fn(t1[i], ..., tk[i])
** for i = 1..n, return the iterator. */
static int m_mapsubmit (lua_State *L) {
  Executor *ex = cfut_toexecutor(L, 1);
  double deadline = cfut_deadline(L, 3);
  lua_Integer i, n = luaL_checkinteger(L, 4);
  int k = lua_gettop(L) - 4, err = 0, r;
  char msg[256];
  MapBatch *m;
  luaL_argcheck(L, ex != NULL, 1, "executor expected");
  luaL_argcheck(L, n >= 0 && n < (1 << 28), 4, "too many items");
  luaL_checkstack(L, k + 8, "too many iterables");
  m = (MapBatch *)lua_newuserdatauv(L, sizeof *m, 0);
  memset(m, 0, sizeof *m);
  luaL_setmetatable(L, MAPBATCH);
  m->deadline = deadline;
  m->fs = calloc((size_t)(n ? n : 1), sizeof(Future *));
  if (m->fs == NULL) return luaL_error(L, "not enough memory");
  for (i = 1; i <= n; i++) {
    if ((m->fs[i - 1] = newitem(L, ex, 5, k, i, &err, msg, sizeof msg))
        == NULL)
      break;
    m->n = (int)i;
  }
  if (err != 0) {
    if (err == CFUT_ENOMEM) return luaL_error(L, "not enough memory");
    return luaL_error(L, "cannot send %s to a worker", msg);
  }
  if (m->n > 0 && (r = ex->ops->submit(ex, m->fs, m->n)) != 0)
    return cfut_submiterror(L, ex, r);
  return 1;
}

void cfut_openmap (lua_State *L) {
  if (luaL_newmetatable(L, MAPBATCH)) {
    lua_pushcfunction(L, mb_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, mb_call);
    lua_setfield(L, -2, "__call");
    lua_pushcfunction(L, mb_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, m_mapsubmit);
  lua_setfield(L, -2, "_mapsubmit");
}
