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
** slab whose slots are all free again goes back where it came from, but
** for the last KEEPEMPTY of them, which wait for the next burst.
** Bigger blocks go to big_alloc (bigmem.h): malloc, but for blocks of
** megabytes (the array of a million-entry table, a long string), which
** are mapped as huge pages.  A state is used by one thread at a time,
** so none of this takes a lock.
**
** Where slabs come from: the first LIBSLABS live ones from the C library,
** so that a small state stays small; past them, a heap that grows takes
** segments of SEGSLABS slabs, 2 MiB mapped as a huge page (bigmem.h).  A
** million-table message is 130 MB of slabs: 4 KiB pages cost 33 000
** faults to fill them and a munmap (a TLB shootdown on every core) per
** slab freed; segments cost 65 faults and one munmap per 2 MiB.  A
** segment goes back when its last slab is free (one empty segment is
** kept for the next burst); one live slab keeps its whole segment, the
** price of the huge page.
*/

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"

#include "bigmem.h"
#include "heap.h"

#define QUANT      16
#define MAXSMALL   256
#define NCLASS     (MAXSMALL / QUANT)
#define SLABSIZE   ((size_t)64 * 1024)
#define KEEPEMPTY  8
#define LIBSLABS   32           /* live slabs from the C library at most */
#define SEGSIZE    BIG_ALIGN
#define SEGSLABS   ((unsigned)(SEGSIZE / SLABSIZE))

struct Seg;

typedef struct Slab {
  struct Slab *next, *prev;   /* in the class's list (or the empty list) */
  void *free;                 /* freed slots, linked through their first word */
  char *bump, *end;           /* the never-used slots */
  unsigned used;              /* slots handed out */
  unsigned size;              /* slot size */
  int listed;                 /* in the class's list */
  struct Seg *seg;            /* its segment (NULL: from the C library) */
} Slab;

/* A segment: SEGSLABS slabs, handed out in order, then those given back
** (linked through their 'next'). */
typedef struct Seg {
  struct Seg *next, *prev;    /* in the heap's list of segments */
  char *base;
  Slab *free;                 /* slabs given back */
  unsigned nfree;             /* how many */
  unsigned bumped;            /* slabs handed out from 'base' so far */
} Seg;

#define FIRSTSLOT  ((sizeof(Slab) + 63) & ~(size_t)63)

typedef struct Heap {
  struct Heap *next, *prev;   /* in the list of live heaps */
  Slab *avail[NCLASS];        /* slabs with a free slot, by class */
  Slab *empty;                /* slabs kept for later, all slots free */
  int nempty;
  unsigned nlib;              /* live slabs from the C library */
  Seg *segs;                  /* segments with a slab to hand out first */
  Seg *spareseg;              /* an empty segment kept (unlisted) */
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

/* ---- segments ---- */

static void unlink_seg (Heap *h, Seg *g) {
  if (g->prev != NULL) g->prev->next = g->next;
  else h->segs = g->next;
  if (g->next != NULL) g->next->prev = g->prev;
  g->next = g->prev = NULL;
}

static void push_seg (Heap *h, Seg *g) {
  g->prev = NULL;
  g->next = h->segs;
  if (h->segs != NULL) h->segs->prev = g;
  h->segs = g;
}

static void unmapseg (Seg *g) {
  big_free(g->base, SEGSIZE);
  free(g);
}

/* A slab from a segment: the first listed one's, else the kept or a new
** segment's (NULL: no memory; the caller falls back to the C library).
** Only the listed segments have a slab to hand out. */
static Slab *segslab (Heap *h) {
  Seg *g = h->segs;
  Slab *s;
  if (g == NULL) {
    if ((g = h->spareseg) != NULL) h->spareseg = NULL;
    else {
      if ((g = (Seg *)malloc(sizeof(*g))) == NULL) return NULL;
      if ((g->base = big_alloc(SEGSIZE, 0)) == NULL
          || ((uintptr_t)g->base & (SLABSIZE - 1)) != 0) {
        if (g->base != NULL) big_free(g->base, SEGSIZE);
        free(g);
        return NULL;
      }
      g->free = NULL;
      g->nfree = g->bumped = 0;
    }
    push_seg(h, g);
  }
  if (g->free != NULL) {
    s = g->free;
    g->free = s->next;
    g->nfree--;
  }
  else s = (Slab *)(g->base + (size_t)g->bumped++ * SLABSIZE);
  if (g->free == NULL && g->bumped == SEGSLABS) unlink_seg(h, g);
  s->seg = g;
  return s;
}

/* Give back a slab: to its segment, which goes when all its slabs are
** back (or is kept, when the heap keeps none), or to the C library. */
static void dropslab (Heap *h, Slab *s) {
  Seg *g = s->seg;
  if (g == NULL) {
    h->nlib--;
    free(s);
    return;
  }
  if (g->free == NULL && g->bumped == SEGSLABS) push_seg(h, g);
  s->next = g->free;
  g->free = s;
  if (++g->nfree < g->bumped) return;
  unlink_seg(h, g);               /* all back: an empty segment */
  if (h->spareseg == NULL) {
    g->free = NULL;
    g->nfree = g->bumped = 0;
    h->spareseg = g;
  }
  else unmapseg(g);
}

/* A slab for slots of 'size' bytes, listed in its class: a kept one or a
** new one (NULL when out of memory). */
static Slab *newslab (Heap *h, unsigned size) {
  Slab *s = h->empty;
  if (s != NULL) {
    unlink_slab(&h->empty, s);
    h->nempty--;
  }
  else if (h->nlib < LIBSLABS || (s = segslab(h)) == NULL) {
    void *p;
    if (posix_memalign(&p, SLABSIZE, SLABSIZE) != 0) return NULL;
    s = (Slab *)p;
    s->seg = NULL;
    h->nlib++;
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
    else dropslab(h, s);
  }
}

/* Every slab goes back (the state is closed, so all are free: a closed
** state frees its objects). */
static void freeslabs (Heap *h) {
  int c;
  Slab *s, *next;
  for (c = 0; c < NCLASS; c++) {
    for (s = h->avail[c]; s != NULL; s = next) {
      next = s->next;
      dropslab(h, s);
    }
  }
  for (s = h->empty; s != NULL; s = next) {
    next = s->next;
    dropslab(h, s);
  }
  if (h->spareseg != NULL) unmapseg(h->spareseg);
  h->spareseg = NULL;
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
    if (osize > MAXSMALL) big_free(ptr, osize);
    else if (ptr != NULL) smallfree(h, ptr);
    return NULL;
  }
  if (osize > MAXSMALL && nsize > MAXSMALL) {
    p = big_resize(ptr, osize, nsize);
    /* (big_resize keeps a shrinking block where its size still says
    ** where it came from; where it cannot, Lua gets the failure) */
    return (p == NULL && nsize <= osize && big_samekind(osize, nsize))
           ? ptr : p;
  }
  if (osize > 0 && nsize <= MAXSMALL
      && (osize + QUANT - 1) / QUANT == (nsize + QUANT - 1) / QUANT)
    return ptr;                 /* the same class */
  p = (nsize <= MAXSMALL) ? smallalloc(h, nsize) : big_alloc(nsize, 0);
  if (p == NULL)     /* a small block keeps its slot, else Lua its block */
    return (osize > 0 && osize <= MAXSMALL && nsize <= osize) ? ptr : NULL;
  if (ptr != NULL) {
    memcpy(p, ptr, osize < nsize ? osize : nsize);
    if (osize > MAXSMALL) big_free(ptr, osize);
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
