/*
** marshal.h: Lua values <-> bytes, the one wire format of cfut (see
** docs/wire.md).  Uses the Lua API but never raises on bad input or an
** unsendable value: it returns a CFUT_E* code and writes the details in a
** caller's buffer.  (Only a Lua memory error can escape marshal_decode,
** as from any Lua allocation; marshal_encode returns CFUT_ENOMEM instead,
** so that its caller can free the buffer.)
*/
#ifndef CFUT_MARSHAL_H
#define CFUT_MARSHAL_H

#include <stddef.h>
#include "lua.h"

/* A growable malloc'ed byte buffer. */
typedef struct MBuf {
  char *data;
  size_t len, cap;
} MBuf;

void mbuf_init (MBuf *b);
int mbuf_reserve (MBuf *b, size_t extra);   /* 0 or CFUT_ENOMEM */
int mbuf_add (MBuf *b, const void *p, size_t n);
void mbuf_free (MBuf *b);
/* Hand the bytes over: returns data (caller frees), b is left empty. */
char *mbuf_steal (MBuf *b, size_t *len);

/* Flags */
#define MARSHAL_LOCAL 1   /* same process: futures and executors cross as
                             handles to the same object */
#define MARSHAL_NOCODE 2  /* decoding: refuse functions (bytecode from
                             another process is never loaded) */

/*
** Append the 'n' values at L[first], L[first+1]... to 'out'.
** 'what' names them in messages ("argument", "result", "error value") and
** 'argbase' is the number of the first one.  On failure returns CFUT_ESEND,
** CFUT_EDEPTH or CFUT_ENOMEM, 'out' is back to its length before the call,
** and 'err' says what and where, e.g.
**   argument #2 (field 'conn': userdata FILE*)
** The stack is left as it was.
*/
int marshal_encode (lua_State *L, int first, int n, int flags,
                    const char *what, int argbase, MBuf *out,
                    char *err, size_t errlen);

/*
** Push the values encoded in data[0..len).  Returns how many (>= 0), or
** CFUT_EBADMSG with 'err' set and nothing pushed.  Every length, tag and
** reference is checked; handles are accepted only with MARSHAL_LOCAL.
** Each decoded handle takes a reference of its own: the message keeps
** the references it holds (it may be decoded again) until its owner lets
** it go with marshal_discard.
*/
int marshal_decode (lua_State *L, const char *data, size_t len, int flags,
                    char *err, size_t errlen);

/* Check the structure of a message from another process without Lua
** (tags, lengths, nesting; no handle allowed): 0, or CFUT_EBADMSG with err
** set.  Decoding checks the rest (references, bytecode). */
int marshal_check (const char *data, size_t len, char *err, size_t errlen);

/* Release the handle references held by a LOCAL message, before it is
** freed (whether it was decoded or not). */
void marshal_discard (const char *data, size_t len);

/* Encode one error object of the class futures[cls] with message 'msg', as
** C code that has no Lua state at hand must (a broken pool).  0 or ENOMEM. */
int marshal_error (MBuf *out, const char *cls, const char *msg);

/* Forget the sender's cache of module names (after package.loaded changes
** under it; the encoder also notices new modules by itself). */
void marshal_resetnames (lua_State *L);

#endif
