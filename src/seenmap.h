/*
** seenmap.h: the encoder's map of the objects it has met (tables, Lua
** functions, upvalue ids, string keys) and their numbers: an
** open-addressing hash on their addresses, inside the map while it is
** small, then in C memory.  The objects stay alive meanwhile: the values
** being sent reach them.  The map allocates no Lua memory (growing must
** not let the collector step in the middle of an encoding, which would
** then pay a big decode's whole debt), and the encoder never raises, so
** it needs no Lua object to free it on an error.
**
** An entry is live when its generation is the map's: a big map is kept
** by the thread for its next big encoding (the 'spare'), and a new
** generation empties it without writing a byte.
**
** The lookup is inline (the encoder's hot path); growing and giving the
** memory back are in seenmap.c.
*/
#ifndef CFUT_SEENMAP_H
#define CFUT_SEENMAP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct PEnt {
  const void *k;      /* NULL: free */
  uint64_t vg;        /* number << GENBITS | generation */
} PEnt;

#define GENBITS 16
#define GENMASK ((1u << GENBITS) - 1)

#define SMALLBITS 4

typedef struct PMap {
  PEnt *e;
  unsigned bits;      /* capacity 1 << bits, at most half full */
  unsigned gen;       /* live entries' generation, never 0 */
  size_t n;
  PEnt small[1 << SMALLBITS];
} PMap;

/* Double the capacity (or take the kept spare, bigger still): 0, or -1
** when there is no memory. */
int pmap_grow (PMap *m);
/* Let the map's memory go (the end of an encoding). */
void pmap_free (PMap *m);
/* Free this thread's kept map (a thread that ends). */
void pmap_freespare (void);

static inline void pmap_init (PMap *m) {
  m->e = m->small;
  m->bits = SMALLBITS;
  m->n = 0;
  m->gen = 1;
}

/* Objects allocated one after another share a cache line of the map
** (sending walks them in about that order): each 256 bytes of address
** space (four 64-byte slots of a slab of the Lua heap, the size class of
** a table) maps to a line of four entries, and the lines are scattered by
** a multiplicative hash.  (Mapping the addresses straight lets the
** regular strides of several slabs pile up into long probe runs; so did
** runs of 4096 slots per 64 KiB, which overlapped at the slabs' stride:
** 15 to 30 probes a lookup while a 100k-record map grew, and 0.2 to 5.7
** after, as the layout fell.  The lines make it 0.2 to 0.9, from 10k to
** 1M records.) */
static inline size_t pmap_hash (const void *k, unsigned bits) {
  uint64_t p = (uint64_t)(uintptr_t)k;
  uint64_t line = ((p >> 8) * 0x9e3779b97f4a7c15ULL) >> (66 - bits);
  return (size_t)((line << 2) | ((p >> 6) & 3));
}

static inline PEnt *pmap_find (PMap *m, const void *k) {
  size_t mask = ((size_t)1 << m->bits) - 1, i = pmap_hash(k, m->bits);
  while (m->e[i].k != NULL && (m->e[i].vg & GENMASK) == m->gen
         && m->e[i].k != k)
    i = (i + 1) & mask;
  return &m->e[i];
}

/* The number stored for k; when there is none, store v and return 0;
** -1 when the map cannot grow. */
static inline int64_t pmap_claim (PMap *m, const void *k, int64_t v) {
  PEnt *slot;
  if (m->n == 0 && m->e == m->small) memset(m->small, 0, sizeof(m->small));
  if ((m->n + 1) * 2 > ((size_t)1 << m->bits) && pmap_grow(m) != 0)
    return -1;
  slot = pmap_find(m, k);
  if (slot->k != NULL && (slot->vg & GENMASK) == m->gen)
    return (int64_t)(slot->vg >> GENBITS);
  slot->k = k;
  slot->vg = ((uint64_t)v << GENBITS) | m->gen;
  m->n++;
  return 0;
}

#endif
