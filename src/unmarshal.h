/*
** unmarshal.h: what the reader's two walks share (unmarshal.c: the
** recursive walk of the first RDEPTH levels, the grammar's checks, the
** public functions; undeep.c: the frames past them).  Private to them.
*/
#ifndef CFUT_UNMARSHAL_H
#define CFUT_UNMARSHAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lua.h"

#include "wire.h"
#include "wpath.h"

/* What a walk without Lua does with the handles it meets. */
enum { W_DECODE, W_CHECK, W_RETAIN, W_RELEASE };

/* Nesting is bounded by memory alone: the first RDEPTH levels are walked
** recursively (unmarshal.c), deeper ones are frames of a stack in C
** memory (undeep.c), which grows only with the levels the bytes hold. */
#define SMALLFRAMES   16    /* frames inside Dec (no malloc when shallow) */

enum { F_TABLE, F_FUNC };
/* a table frame's next step */
enum { S_ARRAY, S_KEY, S_VALUE, S_META, S_DONE };
/* where a container hangs: nowhere yet (a value of the message), an
** element, a field's value, an upvalue, a key, a metatable */
enum { L_NONE, L_ELEM, L_FIELD, L_UPVAL, L_KEY, L_META };

typedef struct DFrame {
  uint64_t i;         /* table: the element or pair being read (from 1);
                         function: the upvalue */
  uint64_t narr, nhash;     /* table: counts; function: narr = upvalues */
  lua_Integer ref;    /* its number */
  const unsigned char *key;   /* table: where the pair's key starts */
  unsigned char kind, step, link;   /* F_*, S_*, L_* */
} DFrame;

typedef struct Dec {
  lua_State *L;       /* NULL: a walk without Lua */
  const unsigned char *start, *p, *end;
  int flags;
  int walk;           /* W_*: what this walk is for */
  int refs;           /* decoding: slot of the only object numbered, or a
                         table number -> table, function or key string */
  int loads;          /* decoding: slot of the registry's LOADS table */
  int frslot;         /* decoding: slot of the frames' box (or nil) */
  uint64_t hints;     /* decoding: table entries left to preallocate */
  lua_Integer nrefs;  /* objects numbered so far */
  uint16_t *kinds;    /* checking: what each numbered object is (K_*) */
  size_t kcap;        /* entries at 'kinds' */
  int kheap;          /* 'kinds' was malloc'ed */
  DFrame *fr;         /* the frames: 'small', or malloc'ed (decoding:
                         held by the box in frslot too) */
  size_t depth, cap;  /* frames open, and room for */
  int rdepth;         /* levels of the recursive walk (RDEPTH at most) */
  char *err;
  size_t errlen;
  int receiver;       /* the failure comes from the receiving state (a
                         name it lacks, code it refuses, no room on its
                         stack or in its memory), not from the grammar */
  int rc;             /* pdecode's answer */
  uint64_t n;         /* idem: values decoded */
  int argno;          /* the value being read (from 1; 0: the globals) */
  DFrame small[SMALLFRAMES];
  WPath path;         /* decoding, a failure of the receiving state: the
                         path to the value it could not make */
} Dec;

/* What a numbered object is, for a check without Lua: a metatable must
** be a table, an upref must name a function and one of its upvalues.  A
** function's kind is its number of upvalues. */
#define K_KSTR  0x100
#define K_TABLE 0x101

static inline size_t dec_rem (Dec *d) {
  return (size_t)(d->end - d->p);
}

/* A varint read once already (so known to be well formed). */
static inline uint64_t dec_rereadvarint (const unsigned char *p) {
  uint64_t x = 0;
  int i = 0;
  do x |= (uint64_t)(p[i] & 0x7f) << (7 * i); while (p[i++] & 0x80);
  return x;
}

static inline lua_Integer dec_u2i (uint64_t u) {
  lua_Integer i;
  memcpy(&i, &u, sizeof(i));
  return i;
}

/* ---- unmarshal.c ---- */

/* Say what is wrong (and where, unless 'at' is NULL): CFUT_EBADMSG. */
int dec_fail (Dec *d, const unsigned char *at, const char *fmt, ...);
/* One value: a leaf (decoding: pushed), or a container, walked whole
** when recursive, or its frame opened ('link': where it hangs). */
int dec_value (Dec *d, int link);
/* Number the object just met (decoding: the one on top). */
int dec_addref (Dec *d, unsigned kind);
/* Push object number i (1 <= i <= nrefs). */
void dec_pushref (Dec *d, uint64_t i);
/* A size hint for lua_createtable, from the message's budget. */
uint64_t dec_hint (Dec *d, uint64_t n);
/* The grammar's checks of a table's contents, the same in both walks:
** bytes that cannot start a key; the key just read from 'at' (a name may
** make nil or NaN); bytes that cannot start a value; before a metatable
** (1 when nil, read, or refused: *rc); the metatable just read. */
int dec_keybytes (Dec *d, const unsigned char *at);
int dec_keyvalue (Dec *d, const unsigned char *at);
int dec_valuebytes (Dec *d, const unsigned char *at);
int dec_metabytes (Dec *d, const unsigned char *at, int *rc);
int dec_metavalue (Dec *d, const unsigned char *at);
/* Upvalue i of the function at fn, its bytes at 'at': 1 when they are a
** join, made (or failed: *rc), else 0 (a value follows); and setting the
** value read from 'at' (on top). */
int dec_upref (Dec *d, int fn, int i, const unsigned char *at, int *rc);
int dec_setupvalue (Dec *d, int fn, int i, const unsigned char *at);

/* ---- undeep.c ---- */

/* A table (counts read) or a Lua function (made, numbered) past RDEPTH
** levels: a frame for its contents, walked at once when it is the first
** frame. */
int dec_deeptable (Dec *d, const unsigned char *at, int link,
                   uint64_t narr, uint64_t nhash);
int dec_deepfunction (Dec *d, const unsigned char *at, int link, int nups);
/* Free the frames' memory (the end of a walk). */
void dec_freeframes (Dec *d);

#endif
