/*
** heap.c: a lua_Alloc per state (see heap.h).
**
** Lua tells its allocator the old size of every block it frees or
** resizes, so blocks need no header: a block of up to MAXSMALL bytes is
** a slot of a size class (multiples of QUANT), taken from a slab of
** SLABSIZE bytes that holds one class only.  Slabs are aligned to their
** size, so the slab of a block is its address rounded down.  A slab
** hands out never-used slots in order, then the slots freed to it (last
** freed, first reused).  Slabs with a free slot are listed per class; a
** slab whose slots are all free again goes back to the C library, but
** for the last KEEPEMPTY of them, which wait for the next burst.
** Bigger blocks go to malloc.  A state is used by one thread at a time,
** so none of this takes a lock.
*/

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"

#include "heap.h"

#define QUANT      16
#define MAXSMALL   256
#define NCLASS     (MAXSMALL / QUANT)
#define SLABSIZE   ((size_t)64 * 1024)
#define KEEPEMPTY  8

typedef struct Slab {
  struct Slab *next, *prev;   /* in the class's list (or the empty list) */
  void *free;                 /* freed slots, linked through their first word */
  char *bump, *end;           /* the never-used slots */
  unsigned used;              /* slots handed out */
  unsigned size;              /* slot size */
  int listed;                 /* in the class's list */
} Slab;

#define FIRSTSLOT  ((sizeof(Slab) + 63) & ~(size_t)63)

typedef struct Heap {
  struct Heap *next, *prev;   /* in the list of live heaps */
  Slab *avail[NCLASS];        /* slabs with a free slot, by class */
  Slab *empty;                /* slabs kept for later, all slots free */
  int nempty;
  int system;                 /* 1: the C library's allocator */
  int warnon, warncont;       /* the warning function's state */
} Heap;


/* {======================================================
** Slabs
** ======================================================= */

static void unlink_slab (Slab **list, Slab *s) {
  if (s->prev != NULL) s->prev->next = s->next;
  else *list = s->next;
  if (s->next != NULL) s->next->prev = s->prev;
  s->next = s->prev = NULL;
}

static void push_slab (Slab **list, Slab *s) {
  s->prev = NULL;
  s->next = *list;
  if (*list != NULL) (*list)->prev = s;
  *list = s;
}

/* A slab for slots of 'size' bytes, listed in its class: a kept one or a
** new one (NULL when out of memory). */
static Slab *newslab (Heap *h, unsigned size) {
  Slab *s = h->empty;
  if (s != NULL) {
    unlink_slab(&h->empty, s);
    h->nempty--;
  }
  else {
    void *p;
    if (posix_memalign(&p, SLABSIZE, SLABSIZE) != 0) return NULL;
    s = (Slab *)p;
  }
  s->free = NULL;
  s->bump = (char *)s + FIRSTSLOT;
  s->end = (char *)s + SLABSIZE;
  s->used = 0;
  s->size = size;
  s->listed = 1;
  push_slab(&h->avail[size / QUANT - 1], s);
  return s;
}

static void *smallalloc (Heap *h, size_t nsize) {
  unsigned c = (unsigned)((nsize + QUANT - 1) / QUANT) - 1;
  Slab *s = h->avail[c];
  void *p;
  if (s == NULL && (s = newslab(h, (c + 1) * QUANT)) == NULL) return NULL;
  if (s->free != NULL) {
    p = s->free;
    s->free = *(void **)p;
  }
  else {
    p = s->bump;
    s->bump += s->size;
  }
  s->used++;
  if (s->free == NULL && s->bump + s->size > s->end) {   /* full */
    unlink_slab(&h->avail[c], s);
    s->listed = 0;
  }
  return p;
}

static void smallfree (Heap *h, void *p) {
  Slab *s = (Slab *)((uintptr_t)p & ~(uintptr_t)(SLABSIZE - 1));
  Slab **list = &h->avail[s->size / QUANT - 1];
  *(void **)p = s->free;
  s->free = p;
  if (!s->listed) {
    push_slab(list, s);
    s->listed = 1;
  }
  if (--s->used == 0) {
    unlink_slab(list, s);
    s->listed = 0;
    if (h->nempty < KEEPEMPTY) {
      push_slab(&h->empty, s);
      h->nempty++;
    }
    else free(s);
  }
}

/* Every slab goes back to the C library (the state is closed). */
static void freeslabs (Heap *h) {
  int c;
  Slab *s, *next;
  for (c = 0; c < NCLASS; c++) {
    for (s = h->avail[c]; s != NULL; s = next) {
      next = s->next;
      free(s);
    }
  }
  for (s = h->empty; s != NULL; s = next) {
    next = s->next;
    free(s);
  }
}

/* }====================================================== */


/* {======================================================
** The lua_Alloc functions
** ======================================================= */

/*
** A shrink may fail: Lua 5.4 no longer assumes it cannot (5.3 did).  Where
** it shrinks, it either can raise a memory error anyway (a table's rehash,
** the parser's final vectors) or keeps the old block (the collector's
** string table and stacks).  Still, most shrinks keep the block rather
** than fail: a small block in a bigger slot is fine, since a slot is freed
** by its slab's size, not by the size Lua passes.  Only a big block
** becoming small needs a slot, as Lua frees it as a small one later.
*/
static void *heapalloc (void *ud, void *ptr, size_t osize, size_t nsize) {
  Heap *h = (Heap *)ud;
  void *p;
  if (ptr == NULL) osize = 0;   /* (osize is then a type tag) */
  if (nsize == 0) {
    if (osize > MAXSMALL) free(ptr);
    else if (ptr != NULL) smallfree(h, ptr);
    return NULL;
  }
  if (osize > MAXSMALL && nsize > MAXSMALL) {
    p = realloc(ptr, nsize);
    return (p == NULL && nsize <= osize) ? ptr : p;
  }
  if (osize > 0 && nsize <= MAXSMALL
      && (osize + QUANT - 1) / QUANT == (nsize + QUANT - 1) / QUANT)
    return ptr;                 /* the same class */
  p = (nsize <= MAXSMALL) ? smallalloc(h, nsize) : malloc(nsize);
  if (p == NULL)     /* a small block keeps its slot, else Lua its block */
    return (osize > 0 && osize <= MAXSMALL && nsize <= osize) ? ptr : NULL;
  if (ptr != NULL) {
    memcpy(p, ptr, osize < nsize ? osize : nsize);
    if (osize > MAXSMALL) free(ptr);
    else smallfree(h, ptr);
  }
  return p;
}

static void *sysalloc (void *ud, void *ptr, size_t osize, size_t nsize) {
  void *p;
  (void)ud;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  p = realloc(ptr, nsize);
  if (p == NULL && ptr != NULL && nsize <= osize)
    return ptr;         /* a shrink never fails: keep the bigger block */
  return p;
}

/* }====================================================== */


/* {======================================================
** States
** ======================================================= */

static int panicf (lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "cfut: unprotected error in a Lua state (%s)\n",
          msg != NULL ? msg : "error object is not a string");
  fflush(stderr);
  return 0;   /* Lua aborts */
}

/* Warnings as lua.c's (lauxlib's warnf): off until "@on", back off with
** "@off"; a message in pieces ('tocont') is one line.  A control message
** is a whole message starting with '@' (a piece of one is text, and an
** unknown control is ignored); 'warncont' is set only while warnings are
** on, so while off every last piece is checked, as lauxlib does. */
static void warnf (void *ud, const char *msg, int tocont) {
  Heap *h = (Heap *)ud;
  if (!h->warncont && !tocont && msg[0] == '@') {
    if (strcmp(msg, "@on") == 0) h->warnon = 1;
    else if (strcmp(msg, "@off") == 0) h->warnon = 0;
    return;
  }
  if (!h->warnon) return;
  if (!h->warncont) fputs("Lua warning: ", stderr);
  fputs(msg, stderr);
  if (!tocont) fputc('\n', stderr);
  fflush(stderr);
  h->warncont = tocont;
}

/* The C library's allocator: in sanitizer builds always (ASan checks only
** what it allocates; TSan delivers signals in the calls it intercepts, and
** a loop of Lua code may make no other), else on request. */
static int usesystem (void) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) \
    || defined(CFUT_SYSALLOC)
  return 1;
#else
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
  return 1;
#endif
#endif
  const char *v = getenv("CFUT_SYSALLOC");
  return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
#endif
}

/* Every live heap is listed, so that one whose state was closed by other
** means than heap_close (os.exit(code, true) in the host) stays reachable
** until the process ends, rather than lost. */
static pthread_mutex_t heaplock = PTHREAD_MUTEX_INITIALIZER;
static Heap *heaps;

static void listheap (Heap *h, int add) {
  pthread_mutex_lock(&heaplock);
  if (add) {
    h->prev = NULL;
    h->next = heaps;
    if (heaps != NULL) heaps->prev = h;
    heaps = h;
  }
  else {
    if (h->prev != NULL) h->prev->next = h->next;
    else heaps = h->next;
    if (h->next != NULL) h->next->prev = h->prev;
  }
  pthread_mutex_unlock(&heaplock);
}

lua_State *heap_newstate (void) {
  Heap *h = (Heap *)calloc(1, sizeof(Heap));
  lua_State *L;
  if (h == NULL) return NULL;
  h->system = usesystem();
  L = lua_newstate(h->system ? sysalloc : heapalloc, h);
  if (L == NULL) {
    freeslabs(h);
    free(h);
    return NULL;
  }
  listheap(h, 1);
  lua_atpanic(L, panicf);
  lua_setwarnf(L, warnf, h);
  return L;
}

void heap_close (lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  lua_close(L);
  listheap((Heap *)ud, 0);
  freeslabs((Heap *)ud);
  free(ud);
}

/* }====================================================== */
