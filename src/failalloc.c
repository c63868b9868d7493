/*
** failalloc.c: a process-wide allocation counter that makes the n-th
** allocation fail (only in the test build: -DCFUT_FAILALLOC, see
** failalloc.h and docs/failalloc.md).
**
** Environment, read when counting starts:
**   CFUT_FAILAT=n      the n-th counted allocation fails (unset or 0: none)
**   CFUT_FAILMODE=     "once": only that one fails; "all" (default): it and
**                      every later one fail, until counting stops
**   CFUT_FAILIN=       "host" (default): counting is started and stopped by
**                      the script (cfut._failalloc); "worker": only process
**                      workers count, from the start of their task loop
** Counted: every malloc/calloc/realloc/strdup of our C code and every
** growing lua_Alloc call of the states we create, in every thread.  Frees
** and shrinking reallocations never fail and are not counted.  At exit a
** process that counted writes one line to stderr:
**   failalloc: pid <pid> counted <c>, failing allocation <n> reached|missed
** and the failing allocation itself writes "failalloc: pid <pid> reached
** <n>" when it happens (a process worker may be killed before its exit).
*/
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"

#include "failalloc.h"

#ifdef CFUT_FAILALLOC

/* Here the names mean libc's and lauxlib's own functions. */
#undef malloc
#undef calloc
#undef realloc
#undef strdup

static atomic_long counted;   /* allocations counted so far */
static atomic_int counting;   /* 1 between start and stop */
static atomic_int reached;    /* the failing allocation was reached */
static long failat;           /* set before counting starts */
static int failonce;
static int started;           /* counting was started once: report */

/* Count one allocation; true if it is to fail. */
static int fails (void) {
  long n;
  if (!atomic_load_explicit(&counting, memory_order_acquire)) return 0;
  n = atomic_fetch_add(&counted, 1) + 1;
  if (failat <= 0 || n < failat || (failonce && n > failat)) return 0;
  if (n == failat) {          /* now: a worker may be killed before exit */
    char msg[80];
    int k = snprintf(msg, sizeof msg, "failalloc: pid %ld reached %ld\n",
                     (long)getpid(), n);
    if (k > 0 && write(2, msg, (size_t)k) < 0) k = 0;
  }
  atomic_store(&reached, 1);
  return 1;
}

void *fa_malloc (size_t n) {
  return fails() ? NULL : malloc(n);
}

void *fa_calloc (size_t n, size_t size) {
  return fails() ? NULL : calloc(n, size);
}

void *fa_realloc (void *p, size_t n) {
  return fails() ? NULL : realloc(p, n);
}

char *fa_strdup (const char *s) {
  return fails() ? NULL : strdup(s);
}

static void report (void) {
  fprintf(stderr, "failalloc: pid %ld counted %ld, failing allocation %ld "
          "%s\n", (long)getpid(), atomic_load(&counted), failat,
          atomic_load(&reached) ? "reached" : "missed");
}

static void start (void) {
  const char *s = getenv("CFUT_FAILAT");
  const char *m = getenv("CFUT_FAILMODE");
  failat = s != NULL ? atol(s) : 0;
  failonce = m != NULL && strcmp(m, "once") == 0;
  if (!started) atexit(report);
  started = 1;
  atomic_store_explicit(&counting, 1, memory_order_release);
}

static int isworkerrun (void) {
  const char *w = getenv("CFUT_FAILIN");
  return w != NULL && strcmp(w, "worker") == 0;
}

void fa_startworker (void) {
  if (isworkerrun()) start();
}

/* cfut._failalloc(fn, ...): call fn(...) protected with counting on
** (unless this run fails process workers only), then stop counting.
** Returns whether the failing allocation was reached, the count, then what
** pcall would (true and fn's results, or false and the error). */
int fa_lcontrol (lua_State *L) {
  int n = lua_gettop(L), status;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_checkstack(L, 8, NULL);
  if (!isworkerrun()) start();
  status = lua_pcall(L, n - 1, LUA_MULTRET, 0);
  atomic_store(&counting, 0);
  luaL_checkstack(L, 3, NULL);
  lua_pushboolean(L, atomic_load(&reached));
  lua_pushinteger(L, atomic_load(&counted));
  lua_pushboolean(L, status == LUA_OK);
  lua_rotate(L, 1, 3);
  return lua_gettop(L);
}

#else

typedef int fa_unused;        /* ISO C: a translation unit is not empty */

#endif
