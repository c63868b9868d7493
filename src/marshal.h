/*
** marshal.h: Lua values <-> bytes, the one wire format of cfut (see
** docs/wire.md).  Uses the Lua API but never raises on bad input or an
** unsendable value: it returns a CFUT_E* code and writes the details in a
** caller's buffer.  The encoder never raises at all; from the decoder a
** Lua memory error can escape, as from any Lua allocation (callers run it
** where that is acceptable).
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

/*
** Handles: the binding's objects (futures, executors) that cross between
** states of one process as their address (docs/wire.md, "Handles").  The
** marshaller knows them only through these operations, which the binding
** registers once (marshal_sethandles) before any message holds one.  Each
** may run on any thread.
*/
enum { MARSHAL_FUTURE = 1, MARSHAL_EXECUTOR = 2 };

typedef struct MarshalHandles {
  /* Is the value at idx a handle?  0 if not; else its kind, with *h its
  ** object, or with *why saying why it cannot be sent in this message
  ** ('local': the message stays in this process). */
  int (*tohandle) (lua_State *L, int idx, int local, void **h,
                   const char **why);
  /* Push a handle for h, with a reference of its own. */
  void (*push) (lua_State *L, int kind, void *h);
  /* Take or drop the reference a message holds: a handle inside a message
  ** counts as a handle (an executor lives on while a queued task holds
  ** it). */
  void (*retain) (int kind, void *h);
  void (*release) (int kind, void *h);
} MarshalHandles;

void marshal_sethandles (const MarshalHandles *ops);

/* Flags */
#define MARSHAL_LOCAL 1   /* same process: futures and executors cross as
                             handles to the same object */
#define MARSHAL_NOCODE 2  /* decoding: refuse functions (futures.loads
                             without allow_code; a worker's results are
                             decoded with code allowed: the worker is this
                             program) */
#define MARSHAL_GLOBALS 4 /* a task for a worker: encoding copies the
                             globals its functions read (after the
                             values); decoding installs them in this
                             state where it lacks them (globals.h) */

/*
** Append the 'n' values at L[first], L[first+1]... to 'out'.
** 'what' names them in messages ("argument", "result", "error value") and
** 'argbase' is the number of the first one.  Nesting has no limit but
** memory (the walk keeps its stack in heap memory, and a few slots of the
** Lua stack whatever the depth).  On failure returns CFUT_ESEND or
** CFUT_ENOMEM, 'out' is back to its length before the call, and 'err'
** says what and where, e.g.
**   argument #2 (field 'conn': userdata FILE*)
** (a long path keeps its first and last steps: "field 'a.b...y.z'").
** The stack is left as it was.
*/
int marshal_encode (lua_State *L, int first, int n, int flags,
                    const char *what, int argbase, MBuf *out,
                    char *err, size_t errlen);

/*
** Push the values encoded in data[0..len).  Returns how many (>= 0), or
** CFUT_EBADMSG with 'err' set and nothing pushed.  Every length, tag and
** reference is checked; handles are accepted only with MARSHAL_LOCAL.
** Nesting has no limit but the message's size: the walk's stack is heap
** memory that grows with the levels the bytes hold.
** Each decoded handle takes a reference of its own: the message keeps
** the references it holds (it may be decoded again) until its owner lets
** it go with marshal_discard.
** When the receiving state cannot make a value (a module or field it
** lacks, code it refuses...) inside another, 'err' names its path as the
** encoder does, 'what' (NULL: "value") naming the values:
**   result #1 (field 'a.b': cannot load module 'm': ...)
*/
int marshal_decode (lua_State *L, const char *data, size_t len, int flags,
                    const char *what, char *err, size_t errlen);

/* Free this thread's kept map of seen objects (a thread that ends). */
void marshal_freespare (void);

/* Check a message from another process without Lua, as the decoder
** reads it without MARSHAL_LOCAL and with MARSHAL_NOCODE (the same walker:
** tags, lengths, counts, references, nesting): 0, or CFUT_EBADMSG with
** err set to what the decoder would say.  What only the receiving state
** can tell (that the modules and fields it names exist, and are tables
** where tables are needed) is left to decoding. */
int marshal_check (const char *data, size_t len, char *err, size_t errlen);

/* Release the handle references held by a LOCAL message, before it is
** freed (whether it was decoded or not): through the registered release,
** so dropping the last reference to an executor shuts it down as
** dropping its last Lua handle does. */
void marshal_discard (const char *data, size_t len);

/* Encode one error object of the class futures[cls] with message 'msg', as
** C code that has no Lua state at hand must (a broken pool).  0 or ENOMEM. */
int marshal_error (MBuf *out, const char *cls, const char *msg);

/* Forget the sender's cache of module names (after package.loaded changes
** under it; the encoder also notices new modules by itself). */
void marshal_resetnames (lua_State *L);

#endif
