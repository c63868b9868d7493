/*
** wire.h: what the encoder (marshal.c) and the decoder (unmarshal.c)
** share: the tags and limits of the wire format (docs/wire.md) and its
** byte helpers (which the process frames of ppool.h use too).
*/
#ifndef CFUT_WIRE_H
#define CFUT_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "lua.h"

_Static_assert(sizeof(lua_Integer) == 8 && sizeof(lua_Number) == 8,
               "the wire format carries 64-bit integers and doubles");

#define WIRE_VERSION  1
#define WIRE_HANDLES  0x80  /* or'ed into the version byte: the message
                               holds handles (LOCAL only) */
#define WIRE_GLOBALS  0x40  /* idem: a table of globals follows the
                               values (MARSHAL_GLOBALS only) */
#define MAGIC         "\x1b" "CF"   /* then the version byte */
#define MAXVARINT     10
#define RDEPTH        100   /* tables/functions nested in one another that
                               the walkers take recursively (the C stack
                               holds that many levels at most); deeper
                               ones are frames of a stack in heap memory */
#define STACKSTEP     32    /* Lua stack reserved every 4 recursive levels
                               (3 slots a level at most, plus room for leaf
                               work); the frames reserve their own */
#define FNVSEED       0xcbf29ce484222325ULL
#define TRAILER       17    /* id(8) hash(8) nups(1) of a function */

enum {
  T_NIL = 0, T_FALSE, T_TRUE, T_INT, T_FLOAT, T_STR, T_TABLE, T_REF,
  T_FUNC, T_UPREF, T_MODULE, T_FIELD, T_FUTURE, T_EXECUTOR, T_KSTR
};

/* The sender's globals travel as the module "_G". */
static const char GNAME[] = { T_MODULE, 2, '_', 'G' };

static inline void put64 (unsigned char *p, uint64_t v) {
  int i;
  for (i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint64_t get64 (const unsigned char *p) {
  uint64_t v = 0;
  int i;
  for (i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static inline int putvarint (unsigned char *p, uint64_t v) {
  int n = 0;
  while (v >= 0x80) {
    p[n++] = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (unsigned char)v;
  return n;
}

static inline int varintlen (uint64_t v) {
  int n = 1;
  while (v >= 0x80) { v >>= 7; n++; }
  return n;
}

/* FNV-1a: guards bytecode against corruption on the way (Lua does not
** verify bytecode, and a damaged chunk can crash it). */
static inline uint64_t fnv (uint64_t h, const void *p, size_t n) {
  const unsigned char *c = (const unsigned char *)p;
  while (n-- > 0) h = (h ^ *c++) * 0x100000001b3ULL;
  return h;
}

/* Take (retain) or drop one reference per handle in a message
** (unmarshal.c). */
void wire_walkhandles (const char *data, size_t len, int retain);

/* The handle operations the binding registered (NULL before). */
struct MarshalHandles;
const struct MarshalHandles *wire_handleops (void);

/* marshal_check, refusing functions as a decoder with MARSHAL_NOCODE
** does when 'flags' has it (marshal_check itself walks them: a worker's
** answer that holds one fails at result(), not the whole pool). */
int wire_check (const char *data, size_t len, int flags, char *err,
                size_t errlen);

/* marshal_decode, also telling (*receiver) whether a failure comes from
** the receiving state rather than the grammar: a module or field it
** lacks, a named value that is not what its place needs, code it refuses,
** no room on its Lua stack.  Only such a failure can follow a wire_check
** with the same flags that accepted the bytes (fuzz/fuzz_check.c).  With
** code allowed, the bytecode too is the receiver's to judge (the check
** walks past it): damaged or refused bytecode is such a failure. */
int wire_decode (lua_State *L, const char *data, size_t len, int flags,
                 const char *what, char *err, size_t errlen, int *receiver);

#endif
