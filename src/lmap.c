/*
** lmap.c: the batch behind Executor:map when every item is known up front.
** Each item is encoded once and all futures are queued with one submit (one
** lock, one wake-up); the iterator walks a plain array of futures, so no
** Lua handle is made per item.  With chunksize k > 1 (given, or chosen by
** autochunk for a long input), one future carries k items: its task is
** cfut._runchunk (below, sent by name) calling the function on each item
** under the tasks' message handler, so the iterator still raises an
** item's error at its own position, with its traceback.  (With
** buffersize, map runs in Lua on submit: see lua/cfut/iter.lua.)
**
** Unordered (w != NULL): each future has a CALLBACK listener on the
** private waiter w, whose notifications also wake the state's waiter; the
** futures w hands over go, as indices, into the FIFO done[dhead .. dtail)
** (queued[i] marks those that went), and each call takes the first one.
** There fs[i] is set to NULL when future i is taken, 'next' stays 0 until
** the map ends and 'left' counts the futures not taken.
**
** INVARIANTS: a MapBatch belongs to the state that made it; workers see
** only its futures, through references of their own.  fs[next .. n) are
** the futures not taken yet (unordered: the non-NULL ones), one
** reference each (fs[0 .. next) are never read again); 'next' moves up by
** one when the iterator has taken a future's values (an item, or the
** answers of a chunk), and to n when the map ends (endmap cancels and lets go of the rest).  'item' counts the
** positions delivered or raised.  'state' says what the next call does:
**   MB_WAIT   wait for fs[next] (the next item, or the next chunk), or
**             unordered for any future not taken;
**   MB_CHUNK  deliver item 'at' (< size) of the chunk taken last: its
**             answers are in user value 1 and offs[0 .. nok] are checked
**             offsets into them; item nok, when it is < size, raised (its
**             {error, traceback} in user value 2);
**   MB_ENDED  every item delivered, or the map raised: calls end it.
** A call sets MB_ENDED before anything that may raise and the next state
** only once it delivers, so whatever it raises (an item's error, a
** timeout, Ctrl-C, a memory error) ends the map, as a Python generator
** ends once it has raised.  A number from a worker (a chunk's offsets and
** error index) is checked in checkchunk before it is used; one that does
** not fit breaks the pool (ops->fail).
*/
#include <stdint.h>
#include <stdio.h>
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

/* Most values one item may give (a Lua stack holds no more). */
#define MAXVALUES LUAI_MAXSTACK

typedef enum MapState { MB_WAIT, MB_CHUNK, MB_ENDED } MapState;

typedef struct MapBatch {
  MapState state;
  Executor *ex;               /* one reference, for ops->fail */
  Future **fs;                /* malloc'ed */
  int n;                      /* how many were made */
  int next;                   /* the next future to take */
  double deadline;            /* -1: none */
  int chunk;                  /* items per future (1: plain) */
  lua_Integer nitems, item;   /* items in all, positions done */
  int at, nok, size;          /* MB_CHUNK: the next item in the chunk,
                                 how many have values, how many in all */
  lua_Integer base;           /* MB_CHUNK: the position before the chunk's
                                 first item */
  int one;                    /* MB_CHUNK: one value per item, out[1 ..
                                 size] (the answer had no offsets) */
  Future *stop;               /* thread pool chunks: cancelled when the
                                 map ends, so running chunks stop (NULL:
                                 none); one reference */
  /* unordered: */
  Waiter *w;                  /* queue of the futures done (NULL: ordered) */
  unsigned taken;             /* how many w handed over (its sequence
                                 number counts the notifications) */
  int left;                   /* futures not taken yet */
  int *done, dhead, dtail;    /* indices done, in order, not taken yet */
  char *queued;               /* queued[i]: i is (or was) in 'done' */
  struct FutIdx *byaddr;      /* futures sorted by address, for lookup */
  lua_Integer offs[];         /* chunked: chunk + 1 offsets */
} MapBatch;

typedef struct FutIdx {
  Future *f;
  int i;
} FutIdx;

/* End the map: cancel and let go of every future not taken. */
static void endmap (MapBatch *m) {
  m->state = MB_ENDED;
  if (m->stop != NULL) fut_cancel(m->stop);
  for (; m->next < m->n; m->next++) {
    Future *f = m->fs[m->next];
    if (f == NULL) continue;            /* unordered: taken */
    if (m->w != NULL) fut_unlisten(f, m->w, FUT_LISTEN_CALLBACK);
    fut_cancel(f);
    fut_release(f);
    m->fs[m->next] = NULL;
  }
}

static int mb_gc (lua_State *L) {
  MapBatch *m = (MapBatch *)luaL_checkudata(L, 1, MAPBATCH);
  endmap(m);                  /* like Python's generator being closed */
  free(m->fs);
  free(m->done);
  free(m->queued);
  free(m->byaddr);
  m->fs = NULL;
  m->done = NULL;
  m->queued = NULL;
  m->byaddr = NULL;
  m->n = m->next = 0;
  if (m->w != NULL) waiter_release(m->w);
  m->w = NULL;
  if (m->stop != NULL) fut_release(m->stop);
  m->stop = NULL;
  if (m->ex != NULL) ex_release(m->ex);
  m->ex = NULL;
  return 0;
}

static int mb_tostring (lua_State *L) {
  lua_pushfstring(L, "<map iterator at %p>", lua_touserdata(L, 1));
  return 1;
}

/* Wait for f = fs[next].  On a timeout or a cancel, end the map and raise
** TimeoutError or CancelledError, as Python's iterator does; when f
** failed, cancel the futures after it (the map raises its error). */
static void waitnext (lua_State *L, MapBatch *m, Future *f) {
  const char *d, *tb;
  size_t len;
  int i;
  if (!cfut_waitfuture(L, f, m->deadline)) {
    endmap(m);
    cfut_error(L, "TimeoutError", "");
  }
  if (fut_state(f) == FUT_CANCELLED) {
    endmap(m);
    cfut_error(L, "CancelledError", "");
  }
  if (fut_outcome(f, &d, &len, &tb))
    for (i = m->next + 1; i < m->n; i++) fut_cancel(m->fs[i]);
}

/* Plain: the next item's position and values (or its error). */
static int nextplain (lua_State *L, MapBatch *m) {
  Future *f = m->fs[m->next];
  int n;
  waitnext(L, m, f);
  lua_settop(L, 0);
  lua_pushinteger(L, ++m->item);
  n = cfut_pushresult(L, f);  /* raises an item's error: the map ends */
  m->next++;
  fut_release(f);
  if (m->next < m->n) m->state = MB_WAIT;
  return n + 1;
}

/* Is there a future left to take? */
static int more (MapBatch *m) {
  return m->w != NULL ? m->left > 0 : m->next < m->n;
}

/* {======================================================================
** Chunks
** ======================================================================= */

/*
** Check the answers of a chunk of 'count' items at 2 .. top (out, offs
** [, e, {error, traceback}], see m_runchunk) and take its offsets into
** m->offs.  Returns NULL, or what is wrong.
*/
static const char *checkchunk (lua_State *L, MapBatch *m, int count) {
  int nres = lua_gettop(L) - 1, j;
  lua_Integer e;
  m->one = (nres == 2 && lua_isboolean(L, 3) && !lua_toboolean(L, 3));
  if (m->one && lua_istable(L, 2)) {        /* out, false */
    m->nok = count;
    return NULL;
  }
  if ((nres != 2 && nres != 4) || !lua_istable(L, 2) || !lua_istable(L, 3))
    return "answer is not out, offs [, index, error]";
  m->nok = count;
  if (nres == 4) {
    if (!lua_isinteger(L, 4) || (e = lua_tointeger(L, 4)) < 1 || e > count)
      return "error index is not one of its items";
    if (!lua_istable(L, 5))
      return "error is not {error, traceback}";
    lua_rawgeti(L, 5, 2);
    j = lua_type(L, -1);
    lua_pop(L, 1);
    if (j != LUA_TNIL && j != LUA_TSTRING)
      return "error is not {error, traceback}";
    m->nok = (int)e - 1;
  }
  for (j = 0; j <= m->nok; j++) {
    int isint = (lua_rawgeti(L, 3, j + 1), lua_isinteger(L, -1));
    lua_Integer o = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (!isint || (j == 0 ? o != 1
                          : o < m->offs[j - 1]
                            || o - m->offs[j - 1] > MAXVALUES))
      return "offsets do not fit its items";
    m->offs[j] = o;
  }
  return NULL;
}

/* A chunk's answer that does not check out: break the pool and raise. */
static void badchunk (lua_State *L, MapBatch *m, const char *why) {
  char msg[160];
  snprintf(msg, sizeof msg, "malformed message from a worker: map chunk %s",
           why);
  endmap(m);
  if (m->ex->ops->fail != NULL) {
    m->ex->ops->fail(m->ex, msg);
    cfut_submiterror(L, m->ex, CFUT_EBROKEN);   /* the message that stands */
  }
  luaL_error(L, "%s", msg);
}

/* Take chunk i, done (waited for and checked by the caller): keep its
** checked answers (or raise the error of its task, which failed as a
** whole), then let go of its future. */
static void loadchunk (lua_State *L, MapBatch *m, int i) {
  Future *f = m->fs[i];
  lua_Integer first = (lua_Integer)i * m->chunk;
  int count = (int)(m->nitems - first < m->chunk ? m->nitems - first
                                                 : m->chunk);
  const char *bad;
  lua_settop(L, 1);
  cfut_pushresult(L, f);
  if ((bad = checkchunk(L, m, count)) != NULL) badchunk(L, m, bad);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, 1, 1);               /* out */
  if (m->nok < count) {
    lua_pushvalue(L, 5);
    lua_setiuservalue(L, 1, 2);             /* {error, traceback} */
  }
  m->at = 0;
  m->size = count;
  m->base = first;
  if (m->w != NULL) {
    m->fs[i] = NULL;
    m->left--;
  }
  else m->next++;
  fut_release(f);
}

/* Chunked: item 'at' of the chunk taken: its position and values, or the
** error it raised. */
static int nextitem (lua_State *L, MapBatch *m) {
  int j = m->at++, n;
  lua_Integer from, to;
  lua_settop(L, 1);
  m->item++;
  if (j == m->nok) {                        /* this item raised */
    endmap(m);
    lua_getiuservalue(L, 1, 2);             /* {error, traceback} */
    lua_rawgeti(L, -1, 2);
    lua_rawgeti(L, -2, 1);
    return cfut_raisetask(L, lua_tostring(L, -2));
  }
  if (m->one) from = j + 1, to = j + 2;
  else from = m->offs[j], to = m->offs[j + 1];   /* out[from .. to - 1] */
  n = (int)(to - from);                     /* at most MAXVALUES */
  lua_getiuservalue(L, 1, 1);               /* 2: out */
  lua_pushinteger(L, m->base + j + 1);
  luaL_checkstack(L, n, "too many results");
  for (; from < to; from++) lua_rawgeti(L, 2, from);
  if (m->at < m->size) m->state = MB_CHUNK;   /* values, or its error */
  else if (more(m)) m->state = MB_WAIT;
  return n + 1;
}

/* }====================================================================== */

/* {======================================================================
** Unordered: the futures in the order they finish
** ======================================================================= */

static int cmpaddr (const void *a, const void *b) {
  uintptr_t x = (uintptr_t)((const FutIdx *)a)->f;
  uintptr_t y = (uintptr_t)((const FutIdx *)b)->f;
  return (x > y) - (x < y);
}

/* The index of future f in fs, or -1. */
static int indexof (MapBatch *m, Future *f) {
  FutIdx key, *r;
  key.f = f;
  r = (FutIdx *)bsearch(&key, m->byaddr, (size_t)m->n, sizeof key, cmpaddr);
  return r != NULL ? r->i : -1;
}

static void queuedone (MapBatch *m, int i) {
  if (i < 0 || m->queued[i]) return;
  m->queued[i] = 1;
  m->done[m->dtail++] = i;
}

/*
** cfut_waituntil's predicate: move the futures w handed over to 'done';
** 1 when one is there.  A notification whose entry was dropped for lack
** of memory (future.c's notify) still counted in w's sequence number:
** then every future is looked at, so none is waited for forever.
*/
static int anydone (void *ud) {
  MapBatch *m = (MapBatch *)ud;
  unsigned seq = waiter_seq(m->w);
  Future **list;
  int k, nl = waiter_take_ready(m->w, &list);
  for (k = 0; k < nl; k++) {
    queuedone(m, indexof(m, list[k]));
    fut_release(list[k]);
  }
  free(list);
  m->taken += (unsigned)nl;
  if ((int)(seq - m->taken) > 0) {
    for (k = 0; k < m->n; k++)
      if (m->fs[k] != NULL && fut_isdone(fut_state(m->fs[k])))
        queuedone(m, k);
    m->taken = seq;
  }
  return m->dhead < m->dtail;
}

/* Take a future that is done (waiting for one until the deadline): its
** index.  Raises as waitnext does; a failed one cancels all the others. */
static int takeany (lua_State *L, MapBatch *m) {
  const char *d, *tb;
  size_t len;
  int i, j;
  if (m->dhead == m->dtail && !cfut_waituntil(L, anydone, m, m->deadline)) {
    endmap(m);
    cfut_error(L, "TimeoutError", "");
  }
  i = m->done[m->dhead++];
  if (fut_state(m->fs[i]) == FUT_CANCELLED) {
    endmap(m);
    cfut_error(L, "CancelledError", "");
  }
  if (fut_outcome(m->fs[i], &d, &len, &tb))
    for (j = 0; j < m->n; j++)
      if (j != i && m->fs[j] != NULL) fut_cancel(m->fs[j]);
  return i;
}

/* Plain, unordered: a finished item's position and values (or its
** error: fs[i] is still held then, for endmap). */
static int nextany (lua_State *L, MapBatch *m) {
  int i = takeany(L, m), n;
  Future *f = m->fs[i];
  lua_settop(L, 0);
  lua_pushinteger(L, (lua_Integer)i + 1);
  n = cfut_pushresult(L, f);
  m->fs[i] = NULL;
  m->left--;
  fut_release(f);
  if (m->left > 0) m->state = MB_WAIT;
  return n + 1;
}

/* Set m up to hand its futures over as they finish: listeners on a
** private waiter whose notifications also wake this state's.  Before
** the submit, so no future is done yet. */
static void setunordered (lua_State *L, MapBatch *m) {
  size_t n = (size_t)m->n;
  int i;
  m->done = (int *)malloc(n * sizeof *m->done);
  m->queued = (char *)calloc(n, 1);
  m->byaddr = (FutIdx *)malloc(n * sizeof *m->byaddr);
  if (m->done == NULL || m->queued == NULL || m->byaddr == NULL ||
      (m->w = waiter_new()) == NULL)
    luaL_error(L, "not enough memory");
  waiter_setparent(m->w, cfut_waiter(L));
  for (i = 0; i < m->n; i++) {
    m->byaddr[i].f = m->fs[i];
    m->byaddr[i].i = i;
  }
  qsort(m->byaddr, n, sizeof *m->byaddr, cmpaddr);
  m->left = m->n;
  for (i = 0; i < m->n; i++) {
    int r = fut_listen(m->fs[i], m->w, FUT_LISTEN_CALLBACK);
    if (r == CFUT_ENOMEM) luaL_error(L, "not enough memory");
    if (r == 1) queuedone(m, i);
  }
}

/* }====================================================================== */

/* The batch at index 1, checked against the metatable in upvalue 1:
** what luaL_checkudata does, without its look-up of the metatable by name
** in the registry (a fifth of the main state's work per item in W2). */
static MapBatch *tobatch (lua_State *L) {
  MapBatch *m = (MapBatch *)lua_touserdata(L, 1);
  if (m != NULL && lua_getmetatable(L, 1)) {
    int ok = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
    if (ok) return m;
  }
  return (MapBatch *)luaL_checkudata(L, 1, MAPBATCH);   /* raises */
}

/* for i, ... in iterator: the next position and its values. */
static int mb_call (lua_State *L) {
  MapBatch *m = tobatch(L);
  MapState s = m->state;
  m->state = MB_ENDED;        /* unless this call delivers */
  switch (s) {
    case MB_WAIT:
      if (m->w != NULL) {
        if (m->chunk == 1) return nextany(L, m);
        loadchunk(L, m, takeany(L, m));
      }
      else if (m->chunk == 1) return nextplain(L, m);
      else {
        waitnext(L, m, m->fs[m->next]);
        loadchunk(L, m, m->next);
      }
      return nextitem(L, m);
    case MB_CHUNK:
      return nextitem(L, m);
    case MB_ENDED:
      break;
  }
  endmap(m);                  /* what a raise left (a Ctrl-C) */
  return 0;
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

/* Task for item i (1-based): fn(t1[i], ..., tk[i]), the tables at 8... */
static Future *newitem (lua_State *L, Executor *ex, int k, lua_Integer i,
                        int *err, char *msg, size_t msglen) {
  int j, base = lua_gettop(L) + 1;
  lua_pushvalue(L, 2);
  for (j = 0; j < k; j++) lua_geti(L, 8 + j, i);
  return newtask(L, ex, base, err, msg, msglen);
}

/* Task for items first..last: runner(fn, k, flat [, stop]) where flat
** holds the k arguments of each item one after another and stop, the
** handle at index 'stop' (0: none), tells a running chunk to stop. */
static Future *newchunk (lua_State *L, Executor *ex, int k,
                         lua_Integer first, lua_Integer last, int stop,
                         int *err, char *msg, size_t msglen) {
  int j, base = lua_gettop(L) + 1;
  lua_Integer i, at = 0;
  lua_pushvalue(L, 7);        /* the runner */
  lua_pushvalue(L, 2);
  lua_pushinteger(L, k);
  lua_createtable(L, (int)((last - first + 1) * k), 1);
  for (i = first; i <= last; i++)
    for (j = 0; j < k; j++) {
      lua_geti(L, 8 + j, i);
      lua_rawseti(L, -2, ++at);
    }
  lua_pushinteger(L, at);
  lua_setfield(L, -2, "n");
  if (stop != 0) lua_pushvalue(L, stop);
  return newtask(L, ex, base, err, msg, msglen);
}

/*
** How many items one task of a map carries when the call gives no
** chunksize: one while the input is short, so that a few slow items still
** run side by side; from AUTOCHUNK_FROM items on, about n /
** AUTOCHUNK_TASKS (at most AUTOCHUNK_MAX), which leaves at least
** AUTOCHUNK_TASKS tasks to spread over the workers.  One per task too on
** a pool where each task counts (max_tasks_per_child).
*/
#define AUTOCHUNK_FROM  4096
#define AUTOCHUNK_TASKS 256
#define AUTOCHUNK_MAX   1024

static lua_Integer autochunk (Executor *ex, lua_Integer n) {
  lua_Integer k;
  if (ex->pertask || n < AUTOCHUNK_FROM) return 1;
  k = n / AUTOCHUNK_TASKS;
  return k < AUTOCHUNK_MAX ? k : AUTOCHUNK_MAX;
}

/* ex:_mapsubmit(fn, timeout, n, chunksize, unordered, runner, t1, ...,
** tk): queue fn(t1[i], ..., tk[i]) for i = 1..n (chunksize items per
** task; 0: autochunk's choice), return the iterator. */
static int m_mapsubmit (lua_State *L) {
  Executor *ex = cfut_toexecutor(L, 1);
  double deadline = cfut_deadline(L, 3);
  lua_Integer i, n = luaL_checkinteger(L, 4);
  lua_Integer chunk = luaL_checkinteger(L, 5);
  int unordered = lua_toboolean(L, 6);
  int k = lua_gettop(L) - 7, err = 0, r, nf;
  char msg[256];
  MapBatch *m;
  luaL_argcheck(L, ex != NULL, 1, "executor expected");
  luaL_argcheck(L, n >= 0 && n < (1 << 28), 4, "too many items");
  luaL_argcheck(L, chunk >= 0 && chunk < (1 << 28), 5, "bad chunksize");
  luaL_checkstack(L, k + 16, "too many iterables");
  if (chunk == 0) chunk = autochunk(ex, n);
  if (n == 0) chunk = 1;
  else if (chunk > n) chunk = n;        /* one chunk holds them all */
  nf = (int)((n + chunk - 1) / chunk);
  m = (MapBatch *)lua_newuserdatauv(L, sizeof *m + (chunk > 1 ?
                      (size_t)(chunk + 1) * sizeof m->offs[0] : 0), 2);
  memset(m, 0, sizeof *m);
  m->state = MB_ENDED;
  luaL_setmetatable(L, MAPBATCH);
  m->deadline = deadline;
  m->chunk = (int)chunk;
  m->nitems = n;
  m->ex = ex;
  ex_retain(ex);
  m->fs = calloc((size_t)(nf ? nf : 1), sizeof(Future *));
  if (m->fs == NULL) return luaL_error(L, "not enough memory");
  if (ex->local && chunk > 1) {         /* a handle crosses between states */
    if ((m->stop = fut_new()) == NULL)
      return luaL_error(L, "not enough memory");
    fut_retain(m->stop);
    cfut_pushfuture(L, m->stop);        /* 9 + k */
  }
  for (i = 0; i < nf; i++) {
    Future *f = (chunk == 1)
      ? newitem(L, ex, k, i + 1, &err, msg, sizeof msg)
      : newchunk(L, ex, k, i * chunk + 1,
                 (i + 1) * chunk < n ? (i + 1) * chunk : n,
                 m->stop != NULL ? 9 + k : 0, &err, msg, sizeof msg);
    if ((m->fs[i] = f) == NULL) break;
    m->n = (int)i + 1;
  }
  if (err != 0) {
    if (err == CFUT_ENOMEM) return luaL_error(L, "not enough memory");
    return luaL_error(L, "cannot send %s to a worker", msg);
  }
  if (unordered && m->n > 0) setunordered(L, m);
  if (m->n > 0 && (r = ex->ops->submit(ex, m->fs, m->n)) != 0)
    return cfut_submiterror(L, ex, r);
  if (m->n > 0) m->state = MB_WAIT;
  lua_pushvalue(L, 8 + k);    /* the iterator, above the tables */
  return 1;
}

/* The offsets of items 1 .. i, each of which gave one value, into a new
** table at index 6 (m_runchunk). */
static void makeoffs (lua_State *L, lua_Integer i, lua_Integer count) {
  lua_Integer j;
  lua_createtable(L, (int)count + 1, 0);
  for (j = 1; j <= i; j++) {
    lua_pushinteger(L, j);
    lua_rawseti(L, -2, j);
  }
  lua_replace(L, 6);
}

/*
** cfut._runchunk(fn, k, flat [, stop]): runs in a worker (a process, or
** a thread of a thread pool), the items of one chunk of a map.  'flat'
** holds the k arguments of each item one after another.  'stop' (thread
** pools) is a future the map cancels when it ends: then no further item
** starts, and the answer, which nobody reads any more, stops short (its
** handle stays on the stack, so its reference lasts as long as the run).
** Each call runs under the tasks' message handler so an error stays with
** its item.  Answers without a table per item: every value one after
** another in 'out', item i's being out[offs[i] .. offs[i + 1] - 1];
** 'offs' is false when every item gave exactly one value (item i's is
** out[i]: the usual case, which then makes no offsets at all).  On an
** error, also the item's index and {error, traceback} (the items after it
** are not run: map raises there).  The parent believes none of it before
** checkchunk.
*/
static int m_runchunk (lua_State *L) {
  lua_Integer k = luaL_checkinteger(L, 2), n, count, i, j, nv = 0;
  int one = 1;                /* every item so far gave one value */
  Future *stop;
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_argcheck(L, k >= 1, 2, "bad item width");
  lua_settop(L, 4);
  stop = cfut_tofuture(L, 4);               /* 4: stop, or not a future */
  n = (lua_getfield(L, 3, "n") == LUA_TNUMBER) ? lua_tointeger(L, -1) : 0;
  count = n / k;
  lua_settop(L, 4);
  lua_createtable(L, (int)count, 0);        /* 5: out */
  lua_pushboolean(L, 0);                    /* 6: offs, made when needed */
  lua_pushcfunction(L, worker_msghandler);  /* 7 */
  luaL_checkstack(L, (int)k + 2, "too many arguments");
  for (i = 1; i <= count; i++) {
    int top = lua_gettop(L), nres;
    if (stop != NULL && fut_isdone(fut_state(stop))) break;
    if (!one) {
      lua_pushinteger(L, nv + 1);
      lua_rawseti(L, 6, i);
    }
    lua_pushvalue(L, 1);
    for (j = 1; j <= k; j++) lua_rawgeti(L, 3, (i - 1) * k + j);
    if (lua_pcall(L, (int)k, LUA_MULTRET, 7) != LUA_OK) {
      if (!lua_istable(L, -1)) {            /* a memory error: no handler */
        lua_createtable(L, 1, 0);
        lua_insert(L, -2);
        lua_rawseti(L, -2, 1);
      }
      if (one) makeoffs(L, i, count);
      lua_pushvalue(L, 5);
      lua_pushvalue(L, 6);
      lua_pushinteger(L, i);
      lua_rotate(L, -4, -1);                /* the {err, tb} last */
      return 4;
    }
    nres = lua_gettop(L) - top;
    if (one && nres != 1) {
      makeoffs(L, i, count);
      one = 0;
    }
    for (j = nres; j >= 1; j--) lua_rawseti(L, 5, nv + j);
    nv += nres;
  }
  if (!one) {
    lua_pushinteger(L, nv + 1);
    lua_rawseti(L, 6, count + 1);
  }
  lua_settop(L, 6);
  return 2;
}

void cfut_openmap (lua_State *L) {
  if (luaL_newmetatable(L, MAPBATCH)) {
    lua_pushcfunction(L, mb_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, mb_call, 1);
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
