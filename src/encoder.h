/*
** encoder.h: what the writer's two walks share (marshal.c: the recursive
** walk of the first RDEPTH levels and the rest of the encoder; mdeep.c:
** the frames past them; mglobals.c: the globals after the values).
** Private to them.
*/
#ifndef CFUT_ENCODER_H
#define CFUT_ENCODER_H

#include <stddef.h>
#include <stdint.h>

#include "lua.h"

#include "errors.h"
#include "marshal.h"
#include "mnames.h"
#include "seenmap.h"
#include "wire.h"
#include "wpath.h"

#define SMALLFRAMES   16    /* frames inside Enc (no malloc when shallow) */

enum { F_TABLE, F_FUNC };
enum { S_NEXT, S_VALUE, S_DONE };   /* a table's next step */

typedef struct Frame {
  union {
    struct { size_t at; uint64_t narr, nhash; } t;  /* tag offset, counts */
    struct { lua_Integer ref; int nups, i; } f;     /* number, upvalues */
  } u;
  unsigned char kind, step;
  char seg;     /* a failure in the value being written is in this step of
                   the path: 'f' field, 'k' key, 'm' metatable, 'u' upvalue */
  uint32_t tails;     /* ancestors closed early, whose place it took
                         (mdeep.c): a nil metatable each to write after it,
                         and a ghost each */
} Frame;

/* The path step of an ancestor that closed early (mdeep.c): the field
** that led to the next one. */
typedef struct Ghost {
  WKey key;
} Ghost;

typedef struct Enc {
  lua_State *L;
  MBuf *b;
  int flags;
  PMap seen;          /* object -> number, upvalue id -> where */
  Names names;        /* value -> wire bytes of its module name */
  int dumps;          /* slot: the registry's DUMPS table */
  int spill;          /* slot: the list of spill chunks (nil until needed) */
  int chunk;          /* slot: the current chunk */
  size_t nchunks, chunkno;  /* chunks made; the current one's index */
  int lvl0;           /* slot of frame 0's container */
  lua_Integer nrefs;  /* tables and functions numbered so far */
  int nhandles;       /* handles written (referenced after success) */
  int rebuilt;        /* names rebuilt after a C function was not found */
  const void *globals;      /* the sender's globals table */
  int gslot;          /* slot: the globals to copy, pending (or nil) */
  int gpending;       /* that slot holds a table */
  int garg;           /* the value being encoded (its argument number) */
  int rdepth;         /* levels of the recursive walk (RDEPTH at most) */
  Frame *fr;          /* the frames past them: 'small' or malloc'ed */
  size_t depth, cap;
  int walking;        /* the frames are being walked (deepwalk) */
  size_t tailat;      /* depth whose frame the next one may replace (0:
                         none) */
  Ghost *gh;          /* the ghosts of the frames, in order */
  size_t ngh, ghcap;
  WPath path;         /* the failure path (written only when encoding
                         fails) */
  char desc[64];
  Frame small[SMALLFRAMES];
} Enc;

/* Room for n more bytes in b: where to write them, or NULL. */
static inline unsigned char *enc_room (MBuf *b, size_t n) {
  if (n > b->cap - b->len && mbuf_reserve(b, n) != 0) return NULL;
  return (unsigned char *)b->data + b->len;
}

static inline int enc_puttag (MBuf *b, int tag) {
  unsigned char *p = enc_room(b, 1);
  if (p == NULL) return CFUT_ENOMEM;
  *p = (unsigned char)tag;
  b->len++;
  return 0;
}

/* A tag (none if < 0) and a varint. */
static inline int enc_putvar (MBuf *b, int tag, uint64_t v) {
  unsigned char *p = enc_room(b, 1 + MAXVARINT);
  size_t n = 0;
  if (p == NULL) return CFUT_ENOMEM;
  if (tag >= 0) p[n++] = (unsigned char)tag;
  b->len += n + putvarint(p + n, v);
  return 0;
}

/* ---- marshal.c ---- */

/* Encode the value at idx (a table or function past RDEPTH levels: its
** frame opened, walked by the loop that opened the first). */
int enc_value (Enc *e, int idx);
/* A string key at k, numbered like a table. */
int enc_key (Enc *e, int k);
/* Write a table's two counts into the placeholder bytes at 'at'+1. */
int enc_patchcounts (Enc *e, size_t at, uint64_t narr, uint64_t nhash);
/* Upvalue i (its value on top, its name 'name') of the function at f,
** numbered 'ref'. */
int enc_upvalue (Enc *e, int f, lua_Integer ref, int i, const char *name);
/* Fail with 'code', the value described as 'desc'. */
int enc_unsendable (Enc *e, int code, const char *desc);

/* ---- mglobals.c ---- */

/* After the values: the table of the globals that functions among them
** read (docs/wire.md, "Globals").  On failure *argno is the value that
** brought the global.  1 when no global had a value (nothing written). */
int enc_globals (Enc *e, int *argno);

/* ---- mdeep.c ---- */

/* A table (its tag and placeholder counts at 'at') or a Lua function (its
** bytecode written, numbered 'ref', with nups > 0 upvalues) past RDEPTH
** levels: a frame writes the rest, at once when it is the first frame;
** on a failure the frames add their steps to the path and close. */
int enc_deeptable (Enc *e, int idx, size_t at);
int enc_deepfunction (Enc *e, int idx, lua_Integer ref, int nups);

#endif
