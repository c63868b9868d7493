/*
** seenmap.c: growing the encoder's map of seen objects, and the big map
** each thread keeps for its next big encoding (seenmap.h).
*/
#include <stdlib.h>
#include <string.h>

#include "bigmem.h"
#include "seenmap.h"

/* Maps from 2^SPAREMIN up to 2^SPAREMAX entries are kept by the thread
** for its next encoding that grows that far: a big message then costs no
** fresh pages and no rehashing of maps past 2^SPAREMIN (8 MiB at most).
** Smaller encodings keep to small maps, which stay in the cache. */
#define SPAREMIN 12
#define SPAREMAX 19

static _Thread_local PEnt *spare;
static _Thread_local unsigned sparebits, sparegen;

void pmap_freespare (void) {
  big_free(spare, sizeof(PEnt) << sparebits);
  spare = NULL;
  sparebits = 0;
}

/* A map of 2^bits entries or more for a new generation: the spare if it
** is big enough, else fresh memory (NULL when there is none). */
static PEnt *pmapget (unsigned *bits, unsigned *gen) {
  PEnt *e;
  if (spare != NULL && *bits >= SPAREMIN && sparebits >= *bits) {
    e = spare;
    spare = NULL;
    *bits = sparebits;
    if (++sparegen > GENMASK) {   /* generations wrapped: really empty it */
      memset(e, 0, sizeof(PEnt) << sparebits);
      sparegen = 1;
    }
    *gen = sparegen;
    return e;
  }
  *gen = 1;
  if (*bits >= sizeof(size_t) * 8 - 5) return NULL;
  return (PEnt *)big_alloc(sizeof(PEnt) << *bits, 1);
}

/* Give back a map: kept as the spare if it is the biggest keepable. */
static void pmapput (PEnt *e, unsigned bits, unsigned gen) {
  if (bits >= SPAREMIN && bits <= SPAREMAX
      && (spare == NULL || bits >= sparebits)) {
    big_free(spare, sizeof(PEnt) << sparebits);
    spare = e;
    sparebits = bits;
    if (gen > sparegen) sparegen = gen;
  }
  else big_free(e, sizeof(PEnt) << bits);
}

int pmap_grow (PMap *m) {
  size_t cap = (size_t)1 << m->bits, i;
  unsigned oldbits = m->bits, oldgen = m->gen, bits = m->bits + 1, gen;
  PEnt *old = m->e, *ne = pmapget(&bits, &gen);
  if (ne == NULL) return -1;
  m->e = ne;
  m->bits = bits;
  m->gen = gen;
  for (i = 0; i < cap; i++) {
    if (old[i].k != NULL && (old[i].vg & GENMASK) == oldgen) {
      PEnt *slot = pmap_find(m, old[i].k);
      slot->k = old[i].k;
      slot->vg = (old[i].vg & ~(uint64_t)GENMASK) | gen;
    }
  }
  if (old != m->small) pmapput(old, oldbits, oldgen);
  return 0;
}

void pmap_free (PMap *m) {
  if (m->e != m->small) {
    pmapput(m->e, m->bits, m->gen);
    m->e = m->small;
  }
}
