/*
** bigmem.c: big scratch blocks in huge pages (bigmem.h).
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bigmem.h"

/* The C library serves every block in builds whose checks must see them
** (ASan, TSan, the failing allocator, which hooks malloc). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) \
    || defined(CFUT_FAILALLOC)
#define ONLYLIBC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define ONLYLIBC 1
#endif
#endif
#ifndef ONLYLIBC
#define ONLYLIBC 0
#endif

static int mapped (size_t n) {
  return !ONLYLIBC && n >= BIG_MIN;
}

/* The mapped length of a block of n bytes: whole huge pages. */
static size_t maplen (size_t n) {
  return (n + BIG_ALIGN - 1) & ~(BIG_ALIGN - 1);
}

/* A fresh mapping of maplen(n) bytes at a huge-page boundary (zeroed, as
** every fresh mapping is), or NULL.  Over-map by one alignment and give
** back the ends: older kernels align only small mappings. */
static void *mapbig (size_t n) {
  size_t len = maplen(n), head;
  char *p;
  if (len < n || len > SIZE_MAX - BIG_ALIGN) return NULL;
  p = mmap(NULL, len + BIG_ALIGN, PROT_READ | PROT_WRITE,
           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  head = (BIG_ALIGN - ((uintptr_t)p & (BIG_ALIGN - 1))) & (BIG_ALIGN - 1);
  if (head > 0) munmap(p, head);
  if (BIG_ALIGN - head > 0) munmap(p + head + len, BIG_ALIGN - head);
  p += head;
#ifdef MADV_HUGEPAGE
  madvise(p, len, MADV_HUGEPAGE);     /* (a refusal leaves small pages) */
#endif
  return p;
}

void *big_alloc (size_t n, int zero) {
  if (mapped(n)) return mapbig(n);
  return zero ? calloc(1, n > 0 ? n : 1) : malloc(n > 0 ? n : 1);
}

void big_free (void *p, size_t n) {
  if (p == NULL) return;
  if (mapped(n)) munmap(p, maplen(n));
  else free(p);
}

int big_samekind (size_t oldn, size_t n) {
  return mapped(oldn) == mapped(n);
}

void *big_resize (void *p, size_t oldn, size_t n) {
  void *q;
  if (p == NULL) return big_alloc(n, 0);
  if (!mapped(oldn) && !mapped(n)) return realloc(p, n > 0 ? n : 1);
  if (mapped(oldn) && mapped(n) && maplen(n) <= maplen(oldn)) {
    if (maplen(n) < maplen(oldn))   /* give back the tail's huge pages */
      munmap((char *)p + maplen(n), maplen(oldn) - maplen(n));
    return p;
  }
  if ((q = big_alloc(n, 0)) == NULL) return NULL;
  memcpy(q, p, oldn < n ? oldn : n);
  big_free(p, oldn);
  return q;
}
