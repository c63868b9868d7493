/*
** fuzz.h: what the libFuzzer targets share (see README.md): a Lua state
** that decodes as the parent of a process pool does, and a protected
** call of the decoder.
*/
#ifndef CFUT_FUZZ_H
#define CFUT_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "marshal.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* Stop the run: libFuzzer reports the input that got here. */
#define fz_assert(c) ((c) ? (void)0 : fz_fail(#c, __FILE__, __LINE__))

static inline void fz_fail (const char *what, const char *file, int line) {
  fprintf(stderr, "%s:%d: property failed: %s\n", file, line, what);
  abort();
}

/* A state with the standard libraries whose require never reaches the
** file system: a message naming any module gets package.loaded[name] or
** a clean "module not found" (the parent's require would search its
** paths; what is found there is the parent's own code, not the fuzzer's
** business). */
static inline lua_State *fz_newstate (void) {
  lua_State *L = luaL_newstate();
  fz_assert(L != NULL);
  luaL_openlibs(L);
  fz_assert(luaL_dostring(L,
    "package.path = '' package.cpath = ''\n"
    "package.searchers = { package.searchers[1] }") == LUA_OK);
  return L;
}

typedef struct FzDecode {
  const char *data;
  size_t len;
  int flags, n;
  char err[256];
} FzDecode;

static inline int fz_pdecode (lua_State *L) {
  FzDecode *z = (FzDecode *)lua_touserdata(L, 1);
  lua_settop(L, 0);
  z->n = marshal_decode(L, z->data, z->len, z->flags, NULL, z->err,
                        sizeof z->err);
  return z->n < 0 ? 0 : z->n;
}

/* Decode data[0..len) onto L's stack, protected (a memory error is the
** one thing the decoder may raise).  The value count, or -1 with z->err
** set, which must then say something. */
static inline int fz_decode (lua_State *L, FzDecode *z, const void *data,
                             size_t len, int flags) {
  int top = lua_gettop(L);
  z->data = (const char *)data;
  z->len = len;
  z->flags = flags;
  z->n = -1;
  z->err[0] = '\0';
  lua_pushcfunction(L, fz_pdecode);
  lua_pushlightuserdata(L, z);
  if (lua_pcall(L, 1, LUA_MULTRET, 0) != LUA_OK) {
    fprintf(stderr, "decoder raised: %s\n", lua_tostring(L, -1));
    abort();
  }
  if (z->n < 0) {
    fz_assert(lua_gettop(L) == top);
    fz_assert(z->err[0] != '\0');
    return -1;
  }
  fz_assert(lua_gettop(L) == top + z->n);
  return z->n;
}

#endif
