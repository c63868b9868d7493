/*
** lmap.c: the batch behind Executor:map when every item is known up front.
** Each item is encoded once and all futures are queued with one submit (one
** lock, one wake-up); the iterator walks a plain array of futures, so no
** Lua handle is made per item.  For a process pool with chunksize k > 1,
** one future carries k items: its task is cfut._runchunk (below, sent by
** name) calling the function on each item under the tasks' message
** handler, so the iterator still raises an item's error at its own
** position, with its traceback.  (With
** buffersize, map runs in Lua on submit: see lua/cfut/iter.lua.)
*/
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "errors.h"
#include "lcfut.h"
#include "marshal.h"
#include "sys.h"
#include "worker.h"

#define MAPBATCH "cfut.MapIterator"

typedef struct MapBatch {
  Future **fs;                /* one reference each; malloc'ed */
  int n;                      /* how many were made */
  int next;                   /* index of the next to deliver */
  double deadline;            /* -1: none */
  int chunk;                  /* items per future (1: plain) */
  lua_Integer nitems, item;   /* chunked: items in all, next item */
  int cur;                    /* chunked: the future whose answers are in
                                 the user values, -1 none */
  lua_Integer *offs;          /* chunked: its offsets; malloc'ed */
  lua_Integer failed;         /* chunked: its failed item, 0 none */
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
  free(m->offs);
  m->offs = NULL;
  return 0;
}

static int mb_tostring (lua_State *L) {
  lua_pushfstring(L, "<map iterator at %p>", lua_touserdata(L, 1));
  return 1;
}

/* Wait for future c, or raise TimeoutError/CancelledError (cancelling
** the rest as Python's iterator does). */
static Future *waitchunk (lua_State *L, MapBatch *m, int c) {
  Future *f = m->fs[c];
  const char *d, *tb;
  size_t len;
  if (!cfut_waitfuture(L, f, m->deadline)) {
    droprest(m, c);
    cfut_error(L, "TimeoutError", "");
  }
  if (fut_state(f) == FUT_CANCELLED) {
    droprest(m, c);
    cfut_error(L, "CancelledError", "");
  }
  if (fut_outcome(f, &d, &len, &tb)) droprest(m, c + 1);
  return f;
}

/* Take the answers of chunk c (out, offs [, index, {error, traceback}],
** see m_runchunk): out goes to user value 1, the offsets to m->offs. */
static void loadchunk (lua_State *L, MapBatch *m, int c) {
  Future *f = waitchunk(L, m, c);
  lua_Integer j, count = m->chunk;
  if (c == m->n - 1) count = m->nitems - (lua_Integer)c * m->chunk;
  lua_settop(L, 1);
  if (cfut_pushresult(L, f) < 2 || !lua_istable(L, 2) || !lua_istable(L, 3))
    luaL_error(L, "map: a chunk came back malformed");
  m->failed = lua_isinteger(L, 4) ? lua_tointeger(L, 4) : 0;
  if (m->failed != 0) {
    if (m->failed < 1 || m->failed > count || !lua_istable(L, 5))
      luaL_error(L, "map: a chunk came back malformed");
    lua_pushvalue(L, 5);
    lua_setiuservalue(L, 1, 2);             /* {error, traceback} */
  }
  else m->failed = count + 1;
  if (m->offs == NULL &&
      (m->offs = malloc((size_t)(m->chunk + 1) * sizeof *m->offs)) == NULL)
    luaL_error(L, "not enough memory");
  for (j = 1; j <= m->failed && j <= count + 1; j++) {
    lua_Integer o = (lua_rawgeti(L, 3, j), lua_tointeger(L, -1));
    lua_pop(L, 1);
    if (o < 1 || (j > 1 && o < m->offs[j - 2]))
      luaL_error(L, "map: a chunk came back malformed");
    m->offs[j - 1] = o;
  }
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, 1, 1);
  m->fs[c] = NULL;
  m->cur = c;
  fut_release(f);
}

/* Chunked: the next item, from the answers of its chunk. */
static int mb_callchunk (lua_State *L, MapBatch *m) {
  lua_Integer i = m->item, j, from, to;
  int c = (int)(i / m->chunk);
  if (i >= m->nitems || c >= m->n) return 0;
  if (m->cur != c) loadchunk(L, m, c);
  m->item = i + 1;
  j = i % m->chunk + 1;
  lua_settop(L, 1);
  if (j == m->failed) {                     /* this item raised */
    droprest(m, c + 1);
    m->item = m->nitems;
    lua_getiuservalue(L, 1, 2);             /* {err, traceback} */
    lua_rawgeti(L, -1, 2);
    lua_rawgeti(L, -2, 1);
    return cfut_raisetask(L, lua_tostring(L, -2));
  }
  from = m->offs[j - 1];
  to = m->offs[j] - 1;
  lua_getiuservalue(L, 1, 1);               /* 2: out */
  lua_pushinteger(L, i + 1);
  luaL_checkstack(L, (int)(to - from + 1), "too many results");
  for (j = from; j <= to; j++) lua_rawgeti(L, 2, j);
  return (int)(to - from + 2);
}

/* for i, ... in iterator: the next position and its values.  A future
** stays in the array until its values are out, so an error raised on the
** way leaves it to __gc. */
static int mb_call (lua_State *L) {
  MapBatch *m = (MapBatch *)luaL_checkudata(L, 1, MAPBATCH);
  Future *f;
  int i = m->next, n;
  if (m->fs == NULL) return 0;
  if (m->chunk > 1) return mb_callchunk(L, m);
  if (i >= m->n || m->fs[i] == NULL) return 0;
  f = waitchunk(L, m, i);     /* as Python: what is left is cancelled */
  m->next = i + 1;
  lua_settop(L, 0);
  lua_pushinteger(L, i + 1);
  n = cfut_pushresult(L, f);
  m->fs[i] = NULL;
  fut_release(f);
  return n + 1;
}

/* A task of the values from 'base' to the top (popped). */
static Future *newtask (lua_State *L, Executor *ex, int base, int *err,
                        char *msg, size_t msglen) {
  MBuf *b = cfut_scratch();
  Future *f = NULL;
  if (b == NULL) *err = CFUT_ENOMEM;
  else {
    *err = marshal_encode(L, base, lua_gettop(L) - base + 1, cfut_exflags(ex),
                          "argument", 1, b, msg, msglen);
    if (*err == 0 && (f = cfut_newtask(ex, b)) == NULL) {
      marshal_discard(b->data, b->len);
      *err = CFUT_ENOMEM;
    }
    cfut_unscratch(b);
  }
  lua_settop(L, base - 1);
  return f;
}

/* Task for item i (1-based): fn(t1[i], ..., tk[i]), the tables at 7... */
static Future *newitem (lua_State *L, Executor *ex, int k, lua_Integer i,
                        int *err, char *msg, size_t msglen) {
  int j, base = lua_gettop(L) + 1;
  lua_pushvalue(L, 2);
  for (j = 0; j < k; j++) lua_geti(L, 7 + j, i);
  return newtask(L, ex, base, err, msg, msglen);
}

/* Task for items first..last: runner(fn, k, flat) where flat holds the k
** arguments of each item one after another. */
static Future *newchunk (lua_State *L, Executor *ex, int k,
                         lua_Integer first, lua_Integer last, int *err,
                         char *msg, size_t msglen) {
  int j, base = lua_gettop(L) + 1;
  lua_Integer i, at = 0;
  lua_pushvalue(L, 6);        /* the runner */
  lua_pushvalue(L, 2);
  lua_pushinteger(L, k);
  lua_createtable(L, (int)((last - first + 1) * k), 1);
  for (i = first; i <= last; i++)
    for (j = 0; j < k; j++) {
      lua_geti(L, 7 + j, i);
      lua_rawseti(L, -2, ++at);
    }
  lua_pushinteger(L, at);
  lua_setfield(L, -2, "n");
  return newtask(L, ex, base, err, msg, msglen);
}

/* ex:_mapsubmit(fn, timeout, n, chunksize, runner, t1, ..., tk): queue
** fn(t1[i], ..., tk[i]) for i = 1..n (chunksize items per task on a
** process pool), return the iterator. */
static int m_mapsubmit (lua_State *L) {
  Executor *ex = cfut_toexecutor(L, 1);
  double deadline = cfut_deadline(L, 3);
  lua_Integer i, n = luaL_checkinteger(L, 4);
  lua_Integer chunk = luaL_checkinteger(L, 5);
  int k = lua_gettop(L) - 6, err = 0, r, nf;
  char msg[256];
  MapBatch *m;
  luaL_argcheck(L, ex != NULL, 1, "executor expected");
  luaL_argcheck(L, n >= 0 && n < (1 << 28), 4, "too many items");
  luaL_argcheck(L, chunk >= 1 && chunk < (1 << 28), 5, "bad chunksize");
  luaL_checkstack(L, k + 16, "too many iterables");
  if (ex->local || n == 0) chunk = 1;   /* threads share memory: no gain */
  nf = (int)((n + chunk - 1) / chunk);
  m = (MapBatch *)lua_newuserdatauv(L, sizeof *m, 2);
  memset(m, 0, sizeof *m);
  luaL_setmetatable(L, MAPBATCH);
  m->deadline = deadline;
  m->chunk = (int)chunk;
  m->nitems = n;
  m->cur = -1;
  m->fs = calloc((size_t)(nf ? nf : 1), sizeof(Future *));
  if (m->fs == NULL) return luaL_error(L, "not enough memory");
  for (i = 0; i < nf; i++) {
    Future *f = (chunk == 1)
      ? newitem(L, ex, k, i + 1, &err, msg, sizeof msg)
      : newchunk(L, ex, k, i * chunk + 1,
                 (i + 1) * chunk < n ? (i + 1) * chunk : n, &err, msg,
                 sizeof msg);
    if ((m->fs[i] = f) == NULL) break;
    m->n = (int)i + 1;
  }
  if (err != 0) {
    if (err == CFUT_ENOMEM) return luaL_error(L, "not enough memory");
    return luaL_error(L, "cannot send %s to a worker", msg);
  }
  if (m->n > 0 && (r = ex->ops->submit(ex, m->fs, m->n)) != 0)
    return cfut_submiterror(L, ex, r);
  lua_pushvalue(L, 7 + k);    /* the iterator, above the tables */
  return 1;
}

/*
** cfut._runchunk(fn, k, flat): runs in a worker process, the items of one
** chunk of a map.  'flat' holds the k arguments of each item one after
** another.  Each call runs under the tasks' message handler so an error
** stays with its item.  Answers without a table per item: every value one
** after another in 'out', item i's being out[offs[i] .. offs[i + 1] - 1];
** on an error, also the item's index and {error, traceback} (the items
** after it are not run: map raises there).
*/
static int m_runchunk (lua_State *L) {
  lua_Integer k = luaL_checkinteger(L, 2), n, count, i, j, nv = 0;
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_argcheck(L, k >= 1, 2, "bad item width");
  lua_settop(L, 3);
  n = (lua_getfield(L, 3, "n") == LUA_TNUMBER) ? lua_tointeger(L, -1) : 0;
  count = n / k;
  lua_settop(L, 3);
  lua_createtable(L, (int)count, 0);        /* 4: out */
  lua_createtable(L, (int)count + 1, 0);    /* 5: offs */
  lua_pushcfunction(L, worker_msghandler);  /* 6 */
  luaL_checkstack(L, (int)k + 2, "too many arguments");
  for (i = 1; i <= count; i++) {
    int top = lua_gettop(L), nres;
    lua_pushinteger(L, nv + 1);
    lua_rawseti(L, 5, i);
    lua_pushvalue(L, 1);
    for (j = 1; j <= k; j++) lua_rawgeti(L, 3, (i - 1) * k + j);
    if (lua_pcall(L, (int)k, LUA_MULTRET, 6) != LUA_OK) {
      if (!lua_istable(L, -1)) {            /* a memory error: no handler */
        lua_createtable(L, 1, 0);
        lua_insert(L, -2);
        lua_rawseti(L, -2, 1);
      }
      lua_pushvalue(L, 4);
      lua_pushvalue(L, 5);
      lua_pushinteger(L, i);
      lua_rotate(L, -4, -1);                /* the {err, tb} last */
      return 4;
    }
    nres = lua_gettop(L) - top;
    for (j = nres; j >= 1; j--) lua_rawseti(L, 4, nv + j);
    nv += nres;
  }
  lua_pushinteger(L, nv + 1);
  lua_rawseti(L, 5, count + 1);
  lua_settop(L, 5);
  return 2;
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
  lua_pushcfunction(L, m_runchunk);
  lua_setfield(L, -2, "_runchunk");
}
