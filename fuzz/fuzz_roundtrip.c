/*
** fuzz_roundtrip.c: the structure-aware property decode(encode(v)) == v.
** The fuzz bytes are a small program that builds a Lua value in state A:
** nil, booleans, integers (math.mininteger and friends), floats (-0.0,
** NaNs, infinities, integral floats), short and long strings with NULs,
** nested tables with metatables, shared references and cycles, Lua
** functions with upvalues (some shared between closures, some the
** globals), and named values (modules, module functions).  It is
** encoded with the list of every table and function made, decoded into
** state B (or into A itself), and compared: the i-th object made maps to
** the i-th object decoded, one to one, and every pair agrees in type,
** math.type, bits, contents, metatable and upvalues (shared upvalues
** shared alike).  Any difference aborts.
*/
#include <math.h>

#include "errors.h"
#include "fuzz.h"

#define MAXOBJ   64       /* tables and functions made, about (a function
                             adds its closures after its arguments) */
#define OBJCAP   (2 * MAXOBJ)
#define MAXNODE  600      /* values made */
#define MAXDEPTH 12       /* nesting of the generator */
#define MAXMAP   (OBJCAP + 16)
#define MAXUPS   (OBJCAP * 4)
#define BIG      ((size_t)1 << 20)

typedef struct Gen {
  const uint8_t *p, *end;
  lua_State *L;
  int objs;               /* A: array of the objects made */
  int nobj, nodes;
} Gen;

/* Lua code of the functions made: each chunk returns new closures. */
static const char *const templates[] = {
  "return function () return 42 end",                   /* no upvalue */
  "return function () return math.pi end",              /* _ENV */
  "local a, b = ... return function () return a, b end",
  ("local c = ... return function () return c end, "
   "function (x) c = x end"),                             /* one shared */
  "local a = ... return function () return a, string.rep end",
};
#define NTEMPLATES (int)(sizeof templates / sizeof templates[0])

/* Named values: the encoder writes them by name, the receiver has its
** own.  Lua code that pushes each. */
static const char *const named[] = {
  "return _G", "return string", "return math", "return table",
  "return math.floor", "return string.rep", "return print",
  "return utf8", "return table.concat"
};
#define NNAMED (int)(sizeof named / sizeof named[0])

static unsigned byte (Gen *g) {
  return g->p < g->end ? *g->p++ : 0;
}

static uint64_t word (Gen *g) {
  uint64_t v = 0;
  int i;
  for (i = 0; i < 8; i++) v |= (uint64_t)byte(g) << (8 * i);
  return v;
}

static void pushfloatbits (lua_State *L, uint64_t u) {
  lua_Number x;
  memcpy(&x, &u, sizeof x);
  lua_pushnumber(L, x);
}

static void specialint (Gen *g) {
  static const lua_Integer v[] = {
    0, 1, -1, 2, 127, 128, 255, 256, 65535, 1LL << 53, (1LL << 53) + 1,
    LUA_MININTEGER, LUA_MAXINTEGER, LUA_MININTEGER + 1, -(1LL << 31)
  };
  lua_pushinteger(g->L, v[byte(g) % (sizeof v / sizeof v[0])]);
}

static void specialfloat (Gen *g) {
  static const uint64_t bits[] = {
    0x0000000000000000ULL,    /* 0.0 */
    0x8000000000000000ULL,    /* -0.0 */
    0x7ff8000000000000ULL,    /* NaN */
    0xfff8000000000001ULL,    /* -NaN with a payload */
    0x7ff0000000000001ULL,    /* signalling NaN */
    0x7ff0000000000000ULL,    /* inf */
    0xfff0000000000000ULL,    /* -inf */
    0x3ff0000000000000ULL,    /* 1.0: integral float */
    0x43e0000000000000ULL,    /* 2^63 */
    0xc3e0000000000000ULL,    /* -2^63: math.mininteger as a float */
    0x0000000000000001ULL,    /* smallest denormal */
    0x7fefffffffffffffULL,    /* largest double */
    0x3fe0000000000000ULL     /* 0.5 */
  };
  pushfloatbits(g->L, bits[byte(g) % (sizeof bits / sizeof bits[0])]);
}

static void pushstring (Gen *g, int longone) {
  char buf[40 + 220 + 256];
  size_t n, i;
  if (longone) {           /* 40 .. 40 + 219 + 255 bytes of one byte */
    n = 40 + 2 * (size_t)byte(g) % 220;
    n += byte(g);
    memset(buf, (int)byte(g), n);
  }
  else {
    n = byte(g) % 48;
    for (i = 0; i < n; i++) buf[i] = (char)byte(g);
  }
  lua_pushlstring(g->L, buf, n);
}

/* Number the object on top: the generator may refer to it from now on
** (a cycle, when it is still being filled). */
static void addobj (Gen *g) {
  fz_assert(g->nobj < OBJCAP);
  lua_pushvalue(g->L, -1);
  lua_rawseti(g->L, g->objs, ++g->nobj);
}

static void genvalue (Gen *g, int depth);

/* A value that can be a table key: never nil nor NaN. */
static void genkey (Gen *g, int depth) {
  lua_State *L = g->L;
  genvalue(g, depth);
  if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TNUMBER
                           && lua_tonumber(L, -1) != lua_tonumber(L, -1))) {
    lua_pop(L, 1);
    lua_pushinteger(L, (lua_Integer)byte(g) - 64);
  }
}

static void gentable (Gen *g, int depth) {
  lua_State *L = g->L;
  unsigned narr = byte(g) % 9, nhash = byte(g) % 9, i, how;
  int t;
  lua_createtable(L, (int)narr, (int)nhash);
  t = lua_gettop(L);
  addobj(g);
  for (i = 1; i <= narr; i++) {
    genvalue(g, depth + 1);
    lua_rawseti(L, t, (lua_Integer)i);
  }
  for (i = 0; i < nhash; i++) {
    genkey(g, depth + 1);
    genvalue(g, depth + 1);
    lua_rawset(L, t);
  }
  how = byte(g) % 8;
  if (how == 1 && g->nobj > 0) {      /* a table made before, or this one */
    lua_rawgeti(L, g->objs, 1 + byte(g) % g->nobj);
    if (lua_istable(L, -1)) lua_setmetatable(L, t);
    else lua_pop(L, 1);
  }
  else if (how == 2 && depth < MAXDEPTH && g->nobj < MAXOBJ) {
    gentable(g, depth + 1);
    lua_setmetatable(L, t);
  }
  else if (how == 3) {                /* a named table */
    fz_assert(luaL_dostring(L, "return string") == LUA_OK);
    lua_setmetatable(L, t);
  }
}

/* A chain of tables nested 'n' deep, each holding the next. */
static void genchain (Gen *g, unsigned n) {
  lua_State *L = g->L;
  lua_newtable(L);
  addobj(g);
  lua_pushvalue(L, -1);
  while (n-- > 0 && g->nobj < MAXOBJ) {
    lua_newtable(L);
    addobj(g);
    lua_pushvalue(L, -1);
    lua_rawseti(L, -3, 1);
    lua_remove(L, -2);
  }
  lua_pop(L, 1);
}

static void genfunction (Gen *g, int depth) {
  lua_State *L = g->L;
  int k = (int)(byte(g) % NTEMPLATES), nargs = 0, nres, i, top;
  top = lua_gettop(L);
  fz_assert(luaL_loadstring(L, templates[k]) == LUA_OK);
  if (k == 2 || k == 3 || k == 4) {
    nargs = (k == 2) ? 2 : 1;
    for (i = 0; i < nargs; i++) genvalue(g, depth + 1);
  }
  fz_assert(lua_pcall(L, nargs, LUA_MULTRET, 0) == LUA_OK);
  nres = lua_gettop(L) - top;
  if (nres == 1) {
    addobj(g);
    return;
  }
  /* two closures over one local: the value is { f, g } */
  lua_createtable(L, nres, 0);
  addobj(g);
  lua_insert(L, top + 1);
  for (i = nres; i >= 1; i--) {
    lua_pushvalue(L, -1);
    addobj(g);
    lua_pop(L, 1);
    lua_rawseti(L, top + 1, i);
  }
}

static void genvalue (Gen *g, int depth) {
  lua_State *L = g->L;
  unsigned op = byte(g) % 16;
  if (++g->nodes > MAXNODE || !lua_checkstack(L, 8)) op = 0;
  if ((op >= 9 && op <= 13) && (depth >= MAXDEPTH || g->nobj > MAXOBJ - 4))
    op = 7;
  switch (op) {
    case 0: lua_pushnil(L); break;
    case 1: lua_pushboolean(L, 0); break;
    case 2: lua_pushboolean(L, 1); break;
    case 3: lua_pushinteger(L, (lua_Integer)word(g)); break;
    case 4: specialint(g); break;
    case 5: pushfloatbits(L, word(g)); break;
    case 6: specialfloat(g); break;
    case 7: pushstring(g, 0); break;
    case 8: pushstring(g, 1); break;
    case 9: case 10: gentable(g, depth); break;
    case 11: genfunction(g, depth); break;
    case 12:
      if (g->nobj > 0) lua_rawgeti(L, g->objs, 1 + byte(g) % g->nobj);
      else lua_pushnil(L);
      break;
    case 13: genchain(g, byte(g) % 40); break;
    case 14:
      fz_assert(luaL_dostring(L, named[byte(g) % NNAMED]) == LUA_OK);
      break;
    default: lua_pushinteger(L, (lua_Integer)byte(g) - 128); break;
  }
}


/* ---- comparing ---- */

typedef struct Map {
  const void *a[MAXMAP], *b[MAXMAP];
  int n;
  const void *ua[MAXUPS], *ub[MAXUPS];    /* upvalue ids */
  int nu;
} Map;

/* Pair a with b (objects): each side may pair with one only. */
static void pair (const void **as, const void **bs, int *n, int max,
                  const void *a, const void *b) {
  int i;
  for (i = 0; i < *n; i++) {
    fz_assert((as[i] == a) == (bs[i] == b));
    if (as[i] == a) return;
  }
  fz_assert(*n < max);
  as[*n] = a;
  bs[*n] = b;
  (*n)++;
}

static const void *mapped (Map *m, const void *a) {
  int i;
  for (i = 0; i < m->n; i++) if (m->a[i] == a) return m->b[i];
  fz_fail("an object reached is neither made nor named", __FILE__, __LINE__);
  return NULL;
}

/* The value at A[ia] and the one at B[ib] agree. */
static void same (Map *m, lua_State *A, int ia, lua_State *B, int ib) {
  int t = lua_type(A, ia);
  fz_assert(lua_type(B, ib) == t);
  switch (t) {
    case LUA_TNIL: break;
    case LUA_TBOOLEAN:
      fz_assert(lua_toboolean(A, ia) == lua_toboolean(B, ib));
      break;
    case LUA_TNUMBER:
      fz_assert(lua_isinteger(A, ia) == lua_isinteger(B, ib));
      if (lua_isinteger(A, ia))
        fz_assert(lua_tointeger(A, ia) == lua_tointeger(B, ib));
      else {
        lua_Number x = lua_tonumber(A, ia), y = lua_tonumber(B, ib);
        fz_assert(memcmp(&x, &y, sizeof x) == 0);
      }
      break;
    case LUA_TSTRING: {
      size_t la, lb;
      const char *sa = lua_tolstring(A, ia, &la);
      const char *sb = lua_tolstring(B, ib, &lb);
      fz_assert(la == lb && memcmp(sa, sb, la) == 0);
      break;
    }
    case LUA_TTABLE: case LUA_TFUNCTION:
      fz_assert(mapped(m, lua_topointer(A, ia)) == lua_topointer(B, ib));
      break;
    default: fz_fail("unexpected type", __FILE__, __LINE__);
  }
}

/* Push onto B the counterpart of the key at A[ia]; 'bvals' holds B's
** objects in the order of m. */
static void pushkey (Map *m, lua_State *A, int ia, lua_State *B, int bvals) {
  size_t len;
  const char *s;
  int i;
  switch (lua_type(A, ia)) {
    case LUA_TBOOLEAN: lua_pushboolean(B, lua_toboolean(A, ia)); return;
    case LUA_TNUMBER:
      if (lua_isinteger(A, ia)) lua_pushinteger(B, lua_tointeger(A, ia));
      else lua_pushnumber(B, lua_tonumber(A, ia));
      return;
    case LUA_TSTRING:
      s = lua_tolstring(A, ia, &len);
      lua_pushlstring(B, s, len);
      return;
    default:
      for (i = 0; i < m->n; i++)
        if (m->a[i] == lua_topointer(A, ia)) {
          lua_rawgeti(B, bvals, i + 1);
          return;
        }
      fz_fail("a key is neither made nor named", __FILE__, __LINE__);
  }
}

static void sametable (Map *m, lua_State *A, int ta, lua_State *B, int tb,
                       int bvals) {
  int na = 0, nb = 0, hasa, hasb, ia;
  /* A and B may be one state: indices are absolute, and what is pushed
  ** on B is popped before what was pushed on A */
  lua_pushnil(A);
  while (lua_next(A, ta) != 0) {
    na++;
    ia = lua_gettop(A);
    pushkey(m, A, ia - 1, B, bvals);
    lua_rawget(B, tb);
    same(m, A, ia, B, lua_gettop(B));
    lua_pop(B, 1);
    lua_pop(A, 1);
  }
  lua_pushnil(B);
  while (lua_next(B, tb) != 0) {
    nb++;
    lua_pop(B, 1);
  }
  fz_assert(na == nb);
  hasa = lua_getmetatable(A, ta);
  ia = lua_gettop(A);
  hasb = lua_getmetatable(B, tb);
  fz_assert(hasa == hasb);
  if (hasa) {
    same(m, A, ia, B, lua_gettop(B));
    lua_pop(A, 1);
    lua_pop(B, 1);
  }
}

static int isglobals (lua_State *L, int idx) {
  int r;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  r = lua_rawequal(L, idx, -1);
  lua_pop(L, 1);
  return r;
}

static void samefunction (Map *m, lua_State *A, int fa, lua_State *B,
                          int fb) {
  int i;
  fz_assert(!lua_iscfunction(A, fa) && !lua_iscfunction(B, fb));
  for (i = 1; ; i++) {
    const char *na = lua_getupvalue(A, fa, i);
    int ia = lua_gettop(A);
    const char *nb = lua_getupvalue(B, fb, i);
    fz_assert((na == NULL) == (nb == NULL));
    if (na == NULL) break;
    fz_assert(strcmp(na, nb) == 0);
    same(m, A, ia, B, lua_gettop(B));
    /* An upvalue holding the globals travels as the name "_G", not as a
    ** shared upvalue (docs/wire.md): each closure gets the receiver's
    ** globals in an upvalue of its own.  Every other upvalue shared by
    ** closures of the message is shared alike after it. */
    lua_pop(B, 1);
    if (!isglobals(A, ia))
      pair(m->ua, m->ub, &m->nu, MAXUPS, lua_upvalueid(A, fa, i),
           lua_upvalueid(B, fb, i));
    lua_pop(A, 1);
  }
}

/* A[objs] and B[objs] list the objects in the same order; B[vb] is what
** decoded from A[va]. */
static void compare (lua_State *A, int objs, int va, lua_State *B,
                     int bobjs, int vb, int nobj) {
  Map m;
  int i, ia, bvals, top = lua_gettop(B);
  m.n = m.nu = 0;
  lua_createtable(B, MAXMAP, 0);
  bvals = lua_gettop(B);
  fz_assert(lua_rawlen(B, bobjs) == (size_t)nobj);
  for (i = 1; i <= nobj; i++) {
    lua_rawgeti(A, objs, i);
    ia = lua_gettop(A);
    lua_rawgeti(B, bobjs, i);
    fz_assert(lua_type(A, ia) == lua_type(B, -1));
    pair(m.a, m.b, &m.n, MAXMAP, lua_topointer(A, ia), lua_topointer(B, -1));
    if (m.n == i) lua_rawseti(B, bvals, m.n);
    else lua_pop(B, 1);
    lua_pop(A, 1);
  }
  fz_assert(m.n == nobj);      /* the objects made are all different */
  for (i = 0; i < NNAMED; i++) {
    fz_assert(luaL_dostring(A, named[i]) == LUA_OK);
    ia = lua_gettop(A);
    fz_assert(luaL_dostring(B, named[i]) == LUA_OK);
    pair(m.a, m.b, &m.n, MAXMAP, lua_topointer(A, ia), lua_topointer(B, -1));
    if (m.n == nobj + i + 1) lua_rawseti(B, bvals, m.n);
    else lua_pop(B, 1);
    lua_pop(A, 1);
  }
  for (i = 1; i <= nobj; i++) {
    lua_rawgeti(A, objs, i);
    ia = lua_gettop(A);
    lua_rawgeti(B, bobjs, i);
    if (lua_istable(A, ia)) sametable(&m, A, ia, B, lua_gettop(B), bvals);
    else samefunction(&m, A, ia, B, lua_gettop(B));
    lua_pop(A, 1);
    lua_pop(B, 1);
  }
  same(&m, A, va, B, vb);
  lua_settop(B, top);
}




int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  Gen g;
  MBuf b;
  FzDecode z;
  lua_State *SA, *SB, *B;
  char err[256];
  int rc, base, nval;
  if (size < 1) return 0;
  SA = fz_newstate();
  SB = fz_newstate();
  B = (data[0] & 1) ? SA : SB;     /* decode into another state, or A */
  g.p = data + 1;
  g.end = data + size;
  g.L = SA;
  g.nobj = g.nodes = 0;
  lua_newtable(SA);
  g.objs = lua_gettop(SA);
  genvalue(&g, 0);
  fz_assert(lua_gettop(SA) == g.objs + 1);
  /* one message: v, the list of objects, and one time in eight a string
  ** of 1 MiB (a message that big is decoded with the collector stopped) */
  lua_pushvalue(SA, g.objs);
  nval = 2;
  if ((data[0] & 14) == 14) {
    char *s = malloc(BIG);
    fz_assert(s != NULL);
    memset(s, data[0], BIG);
    lua_pushlstring(SA, s, BIG);
    free(s);
    nval = 3;
  }
  mbuf_init(&b);
  rc = marshal_encode(SA, g.objs + 1, nval, 0, "value", 1, &b, err,
                      sizeof err);
  fz_assert(lua_gettop(SA) == g.objs + nval);
  lua_settop(SA, g.objs + 1);
  /* everything made travels (nesting has no limit but memory) */
  if (rc != 0) fz_fail(err, __FILE__, __LINE__);
  if (rc == 0) {
    base = lua_gettop(B);
    fz_assert(marshal_check(b.data, b.len, err, sizeof err) == 0);
    fz_assert(fz_decode(B, &z, b.data, b.len, 0) == nval);
    if (nval == 3) {
      size_t len;
      const char *s = lua_tolstring(B, base + 3, &len);
      fz_assert(s != NULL && len == BIG && s[0] == (char)data[0]
                && s[BIG - 1] == (char)data[0]);
      fz_assert(lua_gc(B, LUA_GCISRUNNING));
    }
    compare(SA, g.objs, g.objs + 1, B, base + 2, base + 1, g.nobj);
    lua_settop(B, base);
  }
  mbuf_free(&b);
  /* New states for every input: all the memory an input takes is given
  ** back before the next, so libFuzzer's leak check stays cheap and
  ** precise (a persistent state keeps caches that grow). */
  lua_close(SA);
  lua_close(SB);
  return 0;
}
