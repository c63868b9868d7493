/*
** mnames.c: the sender's names of values (docs/wire.md, "Modules and C
** functions"): a loaded module travels as its name, a C function or a
** table held by a loaded module as the module's name and its field.  The
** name table (value -> wire bytes) lives in the registry, with weak keys
** and a filter of a bit per address, so that the many values that have no
** name are turned away without a table lookup.
*/
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "errors.h"
#include "mnames.h"
#include "wire.h"

/* Registry key (only its address matters) */
static char NAMES;      /* module or field -> its wire bytes */

/* Push the wire bytes naming package.loaded[L[mod]] (or its field L[f]). */
static void pushname (lua_State *L, int mod, int f) {
  luaL_Buffer b;
  unsigned char v[MAXVARINT];
  size_t len;
  const char *s;
  luaL_buffinit(L, &b);
  luaL_addchar(&b, (char)(f ? T_FIELD : T_MODULE));
  s = lua_tolstring(L, mod, &len);
  luaL_addlstring(&b, (const char *)v, (size_t)putvarint(v, len));
  luaL_addlstring(&b, s, len);
  if (f) {
    s = lua_tolstring(L, f, &len);
    luaL_addlstring(&b, (const char *)v, (size_t)putvarint(v, len));
    luaL_addlstring(&b, s, len);
  }
  luaL_pushresult(&b);
}

/* Name the string-keyed fields of module L[mod+1] (called L[mod]) that
** have no name yet: C functions, and tables unless the module is _G. */
static void addfields (lua_State *L, int names, int mod, int isg) {
  lua_pushnil(L);
  while (lua_next(L, mod + 1) != 0) {
    int k = lua_gettop(L) - 1, v = k + 1;
    if (lua_type(L, k) == LUA_TSTRING
        && (lua_iscfunction(L, v) || (!isg && lua_istable(L, v)))) {
      lua_pushvalue(L, v);
      if (lua_rawget(L, names) == LUA_TNIL) {
        lua_pushvalue(L, v);
        pushname(L, mod, k);
        lua_rawset(L, names);
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
}

/* One pass over package.loaded (at 'loaded'): pass 0 names the fields of
** modules other than _G, pass 1 those of _G not named yet, pass 2 the
** modules themselves (a module's own name wins over any field name). */
static void namepass (lua_State *L, int names, int loaded, int pass) {
  lua_pushnil(L);
  while (lua_next(L, loaded) != 0) {
    int k = lua_gettop(L) - 1, v = k + 1;
    if (lua_type(L, k) == LUA_TSTRING) {
      size_t len;
      const char *s = lua_tolstring(L, k, &len);
      int isg = (len == 2 && s[0] == '_' && s[1] == 'G');
      if (pass == 2 && (lua_istable(L, v) || lua_iscfunction(L, v))) {
        lua_pushvalue(L, v);
        pushname(L, k, 0);
        lua_rawset(L, names);
      }
      else if (pass < 2 && isg == pass && lua_istable(L, v))
        addfields(L, names, k, isg);
    }
    lua_pop(L, 1);
  }
}

/* Entries in package.loaded (-1 without it). */
static lua_Integer countloaded (lua_State *L) {
  lua_Integer n = 0;
  if (lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE) != LUA_TTABLE) {
    lua_pop(L, 1);
    return -1;
  }
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    lua_pop(L, 1);
    n++;
  }
  lua_pop(L, 1);
  return n;
}

#define FILTERBITS 8192

static size_t fbit (const void *p) {
  return (size_t)(((uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ULL) >> 51);
}

/* names[1]: a bit per named value, so that most values (which have no
** name) are turned away without a Lua table lookup. */
static void buildfilter (lua_State *L, int names) {
  unsigned char *f = (unsigned char *)lua_newuserdatauv(L, FILTERBITS / 8, 0);
  memset(f, 0, FILTERBITS / 8);
  lua_pushnil(L);
  while (lua_next(L, names) != 0) {
    if (!lua_isinteger(L, -2)) {
      size_t bit = fbit(lua_topointer(L, -2));
      f[bit >> 3] |= (unsigned char)(1u << (bit & 7));
    }
    lua_pop(L, 1);
  }
  lua_rawseti(L, names, 1);
}

/* Build the name table from package.loaded, store it, push it. */
static void buildnames (lua_State *L, lua_Integer count) {
  int names;
  lua_createtable(L, 0, 64);
  names = lua_gettop(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, names);
  if (lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE) == LUA_TTABLE) {
    namepass(L, names, names + 1, 0);
    namepass(L, names, names + 1, 1);
    namepass(L, names, names + 1, 2);
  }
  lua_pop(L, 1);
  buildfilter(L, names);
  lua_pushinteger(L, count);
  lua_rawseti(L, names, 0);   /* remember what it was built from */
  lua_pushvalue(L, names);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &NAMES);
}

/* (force): the cached name table while package.loaded keeps its size,
** else a new one (always a new one with 'force'). */
static int pnames (lua_State *L) {
  int force = lua_toboolean(L, 1);
  lua_Integer count = countloaded(L);
  if (!force && lua_rawgetp(L, LUA_REGISTRYINDEX, &NAMES) == LUA_TTABLE) {
    int same = (lua_rawgeti(L, -1, 0) == LUA_TNUMBER
                && lua_tointeger(L, -1) == count);
    lua_pop(L, 1);
    if (same) return 1;
  }
  buildnames(L, count);
  return 1;
}

/* Put the name table in its slot; run protected, so that a memory error
** becomes CFUT_ENOMEM (the encoder never raises). */
int names_load (lua_State *L, Names *n, int force) {
  lua_pushcfunction(L, pnames);
  lua_pushboolean(L, force);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    lua_pop(L, 1);
    return CFUT_ENOMEM;
  }
  lua_replace(L, n->slot);
  lua_rawgeti(L, n->slot, 1);
  n->filter = (const unsigned char *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return 0;
}

int names_find (lua_State *L, Names *n, int idx, const void *p,
                const char **s, size_t *len) {
  size_t bit = fbit(p);
  int rc, t;
  if (n->filter == NULL && (rc = names_load(L, n, 0)) != 0) return rc;
  if (!(n->filter[bit >> 3] & (1u << (bit & 7)))) return 1;
  lua_pushvalue(L, idx);
  t = lua_rawget(L, n->slot);
  /* (the name table holds the string: it stays valid once popped) */
  if (t == LUA_TSTRING) *s = lua_tolstring(L, -1, len);
  lua_pop(L, 1);
  return t == LUA_TSTRING ? 0 : 1;
}

void names_reset (lua_State *L) {
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &NAMES);
}
