/*
** fuzz_check.c: marshal_check and the decoder are one walker of the wire
** grammar (src/unmarshal.c); on the same bytes they must agree.  The
** seeds include messages of several MiB and nesting past every limit
** (tables, metatables, functions through their upvalues, values).
** Properties:
**   - wire_check with MARSHAL_NOCODE accepts exactly the messages the
**     decoder with MARSHAL_NOCODE decodes, but for those whose decoding
**     fails on the receiving state (a module or field it lacks, a named
**     value of the wrong kind, no room on its stack), which the decoder
**     then says;
**   - when both refuse the bytes themselves, they say the same words;
**   - marshal_check (what the parent of a process pool runs: it walks
**     functions without loading them) accepts whatever they accept, and
**     refuses only what the decoder refuses whatever its flags: when it
**     refuses, the check with MARSHAL_NOCODE refuses too, with the same
**     words unless that one stopped at a function first;
**   - with code allowed (how the parent decodes a worker's result),
**     marshal_check and the decoder agree the same way: the decoder
**     accepts only what the check accepts, and when the bytes are bad
**     (not the bytecode, which only the decoder loads, nor the state)
**     both say the same words.
** Nesting has no limit but memory: the seeds nest 200 000 deep.
*/
#include "fuzz.h"
#include "wire.h"

static lua_State *L;

typedef struct FzWire {
  const char *data;
  size_t len;
  int n, receiver, flags;
  char err[256];
} FzWire;

static int pwiredecode (lua_State *S) {
  FzWire *z = (FzWire *)lua_touserdata(S, 1);
  lua_settop(S, 0);
  z->n = wire_decode(S, z->data, z->len, z->flags, NULL, z->err,
                     sizeof z->err, &z->receiver);
  return z->n < 0 ? 0 : z->n;
}

/* Decode with 'flags', protected (a memory error is all it may raise). */
static void wiredecode (FzWire *z, const uint8_t *data, size_t size,
                        int flags) {
  z->data = (const char *)data;
  z->len = size;
  z->flags = flags;
  z->n = -1;
  z->receiver = 0;
  z->err[0] = '\0';
  lua_pushcfunction(L, pwiredecode);
  lua_pushlightuserdata(L, z);
  if (lua_pcall(L, 1, LUA_MULTRET, 0) != LUA_OK) {
    fprintf(stderr, "decoder raised: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_settop(L, 0);
}

static int mentions_function (const char *err) {
  return strstr(err, "functions from another process") != NULL;
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  FzWire z;
  char cerr[256], aerr[256];
  int checked, anycode;
  if (L == NULL) L = fz_newstate();
  checked = wire_check((const char *)data, size, MARSHAL_NOCODE, cerr,
                       sizeof cerr);
  fz_assert(checked == 0 ? cerr[0] == '\0' : cerr[0] != '\0');
  anycode = marshal_check((const char *)data, size, aerr, sizeof aerr);
  wiredecode(&z, data, size, MARSHAL_NOCODE);
  if (z.n >= 0) {                         /* decoded: both checks agree */
    fz_assert(checked == 0);
    fz_assert(anycode == 0);
  }
  else if (!z.receiver) {                 /* the bytes are bad: same words */
    fz_assert(checked != 0);
    if (strcmp(cerr, z.err) != 0) {
      fprintf(stderr, "check: %s\ndecode: %s\n", cerr, z.err);
      fz_assert(!"check and decoder disagree on why");
    }
  }
  else if (checked != 0) {                /* the state failed first... */
    fz_assert(z.err[0] != '\0');          /* (and said why) */
  }
  if (anycode != 0) {                     /* code allowed refuses less */
    fz_assert(checked != 0);
    fz_assert(strcmp(aerr, cerr) == 0 || mentions_function(cerr));
  }
  if (checked == 0) fz_assert(anycode == 0);
  wiredecode(&z, data, size, 0);          /* code allowed */
  if (z.n >= 0) fz_assert(anycode == 0);
  else if (!z.receiver) {
    fz_assert(anycode != 0);
    if (strcmp(aerr, z.err) != 0) {
      fprintf(stderr, "check: %s\ndecode: %s\n", aerr, z.err);
      fz_assert(!"check and decoder with code disagree on why");
    }
  }
  return 0;
}
