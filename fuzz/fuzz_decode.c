/*
** fuzz_decode.c: bytes from a worker process, fed to the decoder as the
** parent of a process pool feeds them: marshal_check on the frame's
** message, then marshal_decode with code allowed (flags 0) when the
** result is read; and as futures.loads decodes any string, without the
** check: with MARSHAL_NOCODE, and with code allowed (allow_code).
** Errors are fine; crashes, leaks and sanitizer reports are not.
** Properties:
**   - a failed decode pushes nothing and says why;
**   - whatever the decoder accepts, marshal_check accepts too (else the
**     parent would break a pool over a good message);
**   - what the decoder accepts without code, it accepts with code;
**   - decoded values encode again, and that message decodes to as many
**     values.
*/
#include "fuzz.h"

static lua_State *L;

static void reencode (int n, int flags) {
  MBuf b;
  FzDecode z;
  char err[256];
  int top = lua_gettop(L), rc;
  mbuf_init(&b);
  rc = marshal_encode(L, top - n + 1, n, 0, "value", 1, &b, err, sizeof err);
  fz_assert(lua_gettop(L) == top);
  if (rc != 0) {
    /* a decoded value may be a module's field that cannot travel (a
    ** FILE* of io, say): then the encoder says so */
    fz_assert(err[0] != '\0');
    return;
  }
  fz_assert(marshal_check(b.data, b.len, err, sizeof err) == 0);
  fz_assert(fz_decode(L, &z, b.data, b.len, flags) == n);
  lua_settop(L, top);
  mbuf_free(&b);
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  FzDecode z;
  char err[256];
  int checked, n, code;
  if (L == NULL) L = fz_newstate();
  err[0] = 'x';
  checked = marshal_check((const char *)data, size, err, sizeof err);
  fz_assert(checked == 0 ? err[0] == '\0' : err[0] != '\0');
  n = fz_decode(L, &z, data, size, MARSHAL_NOCODE);
  if (n >= 0) {
    fz_assert(checked == 0);
    reencode(n, MARSHAL_NOCODE);
  }
  lua_settop(L, 0);
  code = fz_decode(L, &z, data, size, 0);
  if (n >= 0) fz_assert(code == n);
  if (code >= 0) {
    fz_assert(checked == 0);
    reencode(code, 0);
  }
  lua_settop(L, 0);
  return 0;
}
