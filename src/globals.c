/*
** globals.c: the globals that travel with a task (globals.h).
**
** Sender: the names a function reads come from its bytecode, as lua_dump
** writes it (the binary chunk format of Lua 5.4: ldump.c), read here by a
** bounds-checked reader of our own: every GETTABUP whose table is an
** upvalue named _ENV and whose key is a constant string, in the function
** and in each nested prototype.  They are cached per function object in
** a table keyed by the hash of the dump (which the encoder has already
** computed), so a function sent again, or another closure of the same
** prototype, costs a table lookup.
**
** Receiver: globals_install copies the message's globals into the
** worker's own globals where it lacks them; a registry table remembers
** which value each installed copy was, so that the next message's copy
** replaces an old copy but never a value the worker has of its own (the
** standard library, what an initializer or a task set).
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "errors.h"
#include "globals.h"

/* Registry keys (only their addresses matter) */
static char GNAMES;     /* bytecode hash -> array of its global names */
static char COPIES;     /* worker: global name -> the copy installed */


/*
** {======================================================
** Reading a binary chunk (Lua 5.4, lua_dump with debug info)
** =======================================================
*/

/* lopcodes.h, Lua 5.4: iABC is op:7 A:8 k:1 B:8 C:8, iABx op:7 A:8
** Bx:17, iAx op:7 Ax:25 */
#define OP_LOADK      3
#define OP_LOADKX     4
#define OP_GETUPVAL   9
#define OP_GETTABUP   11
#define OP_GETTABLE   12
#define OP_EXTRAARG   81
#define GETOP(i)      ((i) & 0x7f)
#define GETA(i)       (((i) >> 7) & 0xff)
#define GETB(i)       (((i) >> 16) & 0xff)
#define GETC(i)       (((i) >> 24) & 0xff)
#define GETBX(i)      ((i) >> 15)
#define GETAX(i)      ((i) >> 7)
#define MAXNEST       256     /* prototypes nested (the parser allows 200) */

/* Constant tags (lobject.h: type | variant << 4) */
#define VNIL 0x00
#define VFALSE 0x01
#define VTRUE 0x11
#define VNUMINT 0x03
#define VNUMFLT 0x13
#define VSHRSTR 0x04
#define VLNGSTR 0x14

typedef struct Rd {
  const unsigned char *p, *end;
  int bad;            /* bytes it cannot read */
  int nomem;          /* (and bad) a malloc failed */
} Rd;

/* A name some prototype reads from upvalue 'root' of the dumped function
** (a GETTABUP whose upvalue chain leads there). */
typedef struct Read {
  const char *s;
  size_t n;
  int root;
} Read;

typedef struct Scan {
  Read *v;            /* what the code reads, in the order found */
  size_t len, cap;
} Scan;

static void skip (Rd *r, size_t n) {
  if (r->bad || n > (size_t)(r->end - r->p)) r->bad = 1;
  else r->p += n;
}

/* ldump.c's dumpSize: 7 bits a byte, most significant first, the last
** byte marked with 0x80. */
static size_t getsize (Rd *r) {
  size_t x = 0;
  int b;
  do {
    if (r->bad || r->p >= r->end || x > (SIZE_MAX >> 7)) {
      r->bad = 1;
      return 0;
    }
    b = *r->p++;
    x = (x << 7) | (size_t)(b & 0x7f);
  } while (!(b & 0x80));
  return x;
}

/* A string: its bytes (NULL for a NULL string) and length. */
static const char *getstring (Rd *r, size_t *len) {
  size_t size = getsize(r);
  const char *s = (const char *)r->p;
  *len = 0;
  if (r->bad || size == 0) return NULL;
  *len = size - 1;
  skip(r, size - 1);
  return r->bad ? NULL : s;
}

static int getbyte (Rd *r) {
  if (r->bad || r->p >= r->end) {
    r->bad = 1;
    return 0;
  }
  return *r->p++;
}

/* The constants: where each string constant starts (kp[i] NULL for
** other kinds), read again by getstring when one is needed. */
static void constants (Rd *r, const unsigned char **kp, size_t sizek) {
  size_t i, len;
  for (i = 0; i < sizek && !r->bad; i++) {
    int tt = getbyte(r);
    kp[i] = NULL;
    switch (tt) {
      case VNIL: case VFALSE: case VTRUE: break;
      case VNUMINT: case VNUMFLT: skip(r, 8); break;
      case VSHRSTR: case VLNGSTR:
        kp[i] = r->p;
        (void)getstring(r, &len);
        break;
      default: r->bad = 1;
    }
  }
}

/* The debug part: skip to the upvalue names; return their count and where
** they start. */
static size_t debuginfo (Rd *r, const unsigned char **names) {
  size_t i, n, len;
  skip(r, getsize(r));                    /* lineinfo */
  n = getsize(r);                         /* abslineinfo */
  for (i = 0; i < n && !r->bad; i++) {
    (void)getsize(r);
    (void)getsize(r);
  }
  n = getsize(r);                         /* locvars */
  for (i = 0; i < n && !r->bad; i++) {
    (void)getstring(r, &len);
    (void)getsize(r);
    (void)getsize(r);
  }
  n = getsize(r);                         /* upvalue names */
  *names = r->p;
  for (i = 0; i < n && !r->bad; i++) (void)getstring(r, &len);
  return n;
}

/* Is upvalue b named _ENV?  (names: as debuginfo found them) */
static int isenv (const unsigned char *names, size_t nnames, const
                  unsigned char *end, unsigned b) {
  Rd r;
  size_t i, len = 0;
  const char *s = NULL;
  if (b >= nnames) return 0;
  r.p = names; r.end = end; r.bad = r.nomem = 0;
  for (i = 0; i <= b; i++) s = getstring(&r, &len);
  return s != NULL && len == 4 && memcmp(s, "_ENV", 4) == 0;
}

static void addread (Rd *r, Scan *sc, const char *s, size_t n, int root) {
  if (sc->len == sc->cap) {
    size_t cap = sc->cap ? 2 * sc->cap : 16;
    Read *v = realloc(sc->v, cap * sizeof(*v));
    if (v == NULL) {
      r->bad = r->nomem = 1;
      return;
    }
    sc->v = v;
    sc->cap = cap;
  }
  sc->v[sc->len].s = s;
  sc->v[sc->len].n = n;
  sc->v[sc->len++].root = root;
}

static uint32_t instr (const unsigned char *code, size_t i) {
  uint32_t ins;
  memcpy(&ins, code + 4 * i, 4);
  return ins;
}

/* Note the string constant k (if it is one) as read from root upvalue. */
static void keyread (Rd *r, Scan *sc, const unsigned char **kp,
                     size_t sizek, size_t k, int root) {
  if (k < sizek && kp[k] != NULL) {
    Rd kr;
    size_t len;
    const char *s;
    kr.p = kp[k]; kr.end = r->end; kr.bad = kr.nomem = 0;
    if ((s = getstring(&kr, &len)) != NULL) addread(r, sc, s, len, root);
  }
}

/*
** Note the global reads in code[0..n): an upvalue that leads to an
** upvalue of the dumped function (roots[b] >= 0) indexed with a constant
** string; whether that one is its _ENV is known only once its names are
** read.  Two forms: GETTABUP for a key among the first 256 constants;
** past those, lcode.c's luaK_indexed puts _ENV and the key in registers:
** GETUPVAL ra; LOADK rk (or LOADKX rk; EXTRAARG); GETTABLE _ ra rk, one
** after the other (a function with a big table of string literals before
** its first call of a global helper).
*/
static void scancode (Rd *r, Scan *sc, const unsigned char *code, size_t n,
                      const unsigned char **kp, size_t sizek,
                      const int *roots, size_t nups) {
  size_t i;
  for (i = 0; i < n && !r->bad; i++) {
    uint32_t ins = instr(code, i), up, ld;
    size_t k, back;
    if (GETOP(ins) == OP_GETTABUP) {
      unsigned b = GETB(ins);
      if (b < nups && roots[b] >= 0)
        keyread(r, sc, kp, sizek, GETC(ins), roots[b]);
      continue;
    }
    if (GETOP(ins) != OP_GETTABLE || i < 2) continue;
    ld = instr(code, i - 1);
    if (GETOP(ld) == OP_LOADK) {
      k = GETBX(ld);
      back = 2;
    }
    else if (GETOP(ld) == OP_EXTRAARG && i >= 3
             && GETOP(instr(code, i - 2)) == OP_LOADKX) {
      k = GETAX(ld);
      ld = instr(code, i - 2);
      back = 3;
    }
    else continue;
    up = instr(code, i - back);
    if (GETOP(up) != OP_GETUPVAL || GETA(up) != GETB(ins)
        || GETA(ld) != GETC(ins) || GETB(up) >= nups || roots[GETB(up)] < 0)
      continue;
    keyread(r, sc, kp, sizek, k, roots[GETB(up)]);
  }
}

static void function (Rd *r, Scan *sc, int nest, const int *proots,
                      size_t npups, const unsigned char **topnames,
                      size_t *ntopnames);

/* The nested prototypes (their parent's upvalue roots: proots). */
static void protos (Rd *r, Scan *sc, int nest, const int *proots,
                    size_t npups) {
  size_t i, n = getsize(r);
  for (i = 0; i < n && !r->bad; i++)
    function(r, sc, nest + 1, proots, npups, NULL, NULL);
}

/*
** One prototype (ldump.c's dumpFunction).  Its upvalue j is, in the
** dumped function (nest 0), that function's upvalue j; in a nested one,
** the dumped function's upvalue roots[j] when it comes from the parent's
** upvalues (instack 0), or none (-1) when it is a local of the parent: a
** `local _ENV = {...}` in the task makes the names a nested function
** reads there no globals.  The dumped function's upvalue names come last:
** *topnames (nest 0 only).
*/
static void function (Rd *r, Scan *sc, int nest, const int *proots,
                      size_t npups, const unsigned char **topnames,
                      size_t *ntopnames) {
  const unsigned char *code, *names;
  const unsigned char **kp;
  size_t len, ncode, sizek, nups, j;
  int *roots;
  if (nest > MAXNEST) {
    r->bad = 1;
    return;
  }
  (void)getstring(r, &len);               /* source */
  (void)getsize(r);                       /* linedefined */
  (void)getsize(r);                       /* lastlinedefined */
  skip(r, 3);                             /* numparams, is_vararg, stack */
  ncode = getsize(r);
  code = r->p;
  if (ncode > (size_t)(r->end - r->p) / 4) r->bad = 1;
  skip(r, 4 * ncode);
  sizek = getsize(r);
  if (r->bad || sizek > (size_t)(r->end - r->p)) {
    r->bad = 1;
    return;
  }
  if ((kp = malloc((sizek > 0 ? sizek : 1) * sizeof(*kp))) == NULL) {
    r->bad = r->nomem = 1;
    return;
  }
  constants(r, kp, sizek);
  nups = getsize(r);                      /* upvalues: instack, idx, kind */
  if (r->bad || nups > (size_t)(r->end - r->p) / 3
      || (roots = malloc((nups > 0 ? nups : 1) * sizeof(*roots))) == NULL) {
    if (!r->bad) r->nomem = 1;
    r->bad = 1;
    free(kp);
    return;
  }
  for (j = 0; j < nups; j++) {
    int instack = getbyte(r), idx = getbyte(r);
    (void)getbyte(r);
    if (nest == 0) roots[j] = (int)j;
    else roots[j] = (!instack && (size_t)idx < npups) ? proots[idx] : -1;
  }
  protos(r, sc, nest, roots, nups);
  len = debuginfo(r, &names);
  if (topnames != NULL) {
    *topnames = names;
    *ntopnames = len;
  }
  if (!r->bad) scancode(r, sc, code, ncode, kp, sizek, roots, nups);
  free(roots);
  free(kp);
}

/* ldump.c's dumpHeader, for this build of Lua. */
static int header (Rd *r) {
  static const char sig[] = "\x1bLua\x54\x00\x19\x93\r\n\x1a\n";
  lua_Integer i = 0x5678;
  lua_Number x = 370.5;
  if ((size_t)(r->end - r->p) < 12 + 3 + 16 + 1
      || memcmp(r->p, sig, 12) != 0 || r->p[12] != 4
      || r->p[13] != sizeof(lua_Integer) || r->p[14] != sizeof(lua_Number)
      || memcmp(r->p + 15, &i, 8) != 0 || memcmp(r->p + 23, &x, 8) != 0)
    return -1;
  r->p += 31 + 1;                         /* and the upvalue count */
  return 0;
}

int globals_scan (const char *dump, size_t len,
                  void (*fn) (void *ud, const char *s, size_t n), void *ud) {
  Rd r;
  Scan sc;
  const unsigned char *names = NULL;
  size_t nnames = 0, i;
  r.p = (const unsigned char *)dump;
  r.end = r.p + len;
  r.bad = r.nomem = 0;
  memset(&sc, 0, sizeof(sc));
  if (header(&r) != 0) return -1;
  function(&r, &sc, 0, NULL, 0, &names, &nnames);
  for (i = 0; i < sc.len && !r.bad; i++)  /* reads of the _ENV upvalue */
    if (isenv(names, nnames, r.end, (unsigned)sc.v[i].root))
      fn(ud, sc.v[i].s, sc.v[i].n);
  free(sc.v);
  return r.nomem ? -2 : r.bad ? -1 : 0;
}

/* }====================================================== */


/*
** {======================================================
** Sender: the names, cached; the pending list of a message
** =======================================================
*/

/* The names one scan found (pointers into the dump). */
typedef struct Found {
  struct { const char *s; size_t n; } *v;
  size_t len, cap;
  int nomem;
} Found;

static void found (void *ud, const char *s, size_t n) {
  Found *f = (Found *)ud;
  if (f->nomem) return;
  if (f->len == f->cap) {
    size_t cap = f->cap ? 2 * f->cap : 16;
    void *v = realloc(f->v, cap * sizeof(*f->v));
    if (v == NULL) {
      f->nomem = 1;
      return;
    }
    f->v = v;
    f->cap = cap;
  }
  f->v[f->len].s = s;
  f->v[f->len++].n = n;
}

#define MAXPROTOS 4096    /* cached functions' names: emptied when full */

/* (hash, len, found): GNAMES[hash] = the names (an array, each once),
** with the dump's length at [0]; returns it. */
static int pcache (lua_State *L) {
  Found *f = (Found *)lua_touserdata(L, 3);
  size_t i;
  lua_Integer n = 0, count;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &GNAMES) != LUA_TTABLE
      || (lua_getfield(L, -1, "count"), lua_tointeger(L, -1)) >= MAXPROTOS) {
    lua_settop(L, 3);
    lua_createtable(L, 0, 64);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &GNAMES);
    lua_pushinteger(L, 0);
  }
  count = lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_createtable(L, (int)f->len, 1);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, 0);
  lua_createtable(L, 0, (int)f->len);     /* (the set, to drop repeats) */
  for (i = 0; i < f->len; i++) {
    lua_pushlstring(L, f->v[i].s, f->v[i].n);
    if (lua_rawget(L, -2) == LUA_TNIL) {
      lua_pop(L, 1);
      lua_pushlstring(L, f->v[i].s, f->v[i].n);
      lua_pushvalue(L, -1);
      lua_rawseti(L, -4, ++n);
      lua_pushboolean(L, 1);
      lua_rawset(L, -3);
    }
    else lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_pushvalue(L, -1);
  lua_rawseti(L, -3, lua_tointeger(L, 1));
  lua_pushinteger(L, count + 1);
  lua_setfield(L, -3, "count");
  return 1;
}

/* (pending or nil, names, env, argno): append the three to the pending
** list; returns it (a new one for nil). */
static int pappend (lua_State *L) {
  lua_Integer top;
  if (lua_isnil(L, 1)) {
    lua_createtable(L, 6, 0);             /* room for two functions */
    lua_replace(L, 1);
  }
  top = (lua_Integer)lua_rawlen(L, 1);
  lua_pushvalue(L, 2);
  lua_rawseti(L, 1, top + 1);             /* the names, */
  lua_pushvalue(L, 3);
  lua_rawseti(L, 1, top + 2);             /* where to read them, */
  lua_pushvalue(L, 4);
  lua_rawseti(L, 1, top + 3);             /* the value that brought them */
  lua_settop(L, 1);
  return 1;
}

/* Push the cached names of the function whose dump is dump[0..len)
** with this hash, scanning the dump if they are not known yet.  0 or
** CFUT_ENOMEM (nothing pushed). */
static int pushnames (lua_State *L, const char *dump, size_t len,
                      lua_Integer hash) {
  Found fd;
  int st;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &GNAMES) == LUA_TTABLE) {
    if (lua_rawgeti(L, -1, hash) == LUA_TTABLE) {
      int same = (lua_rawgeti(L, -1, 0) == LUA_TNUMBER
                  && lua_tointeger(L, -1) == (lua_Integer)len);
      lua_pop(L, 1);
      if (same) {
        lua_remove(L, -2);
        return 0;
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  memset(&fd, 0, sizeof(fd));
  if ((st = globals_scan(dump, len, found, &fd)) == -2) fd.nomem = 1;
  else if (st != 0) fd.len = 0;         /* a format it cannot read */
  if (fd.nomem) {
    free(fd.v);
    return CFUT_ENOMEM;
  }
  lua_pushcfunction(L, pcache);
  lua_pushinteger(L, hash);
  lua_pushinteger(L, (lua_Integer)len);
  lua_pushlightuserdata(L, &fd);
  st = lua_pcall(L, 3, 1, 0);
  free(fd.v);
  if (st != LUA_OK) {
    lua_pop(L, 1);
    return CFUT_ENOMEM;
  }
  return 0;
}

int globals_note (lua_State *L, const char *dump, size_t len,
                  uint64_t hash, int env, int pending, int argno) {
  int rc, st;
  if (!lua_checkstack(L, 8)) return CFUT_ENOMEM;
  env = lua_absindex(L, env);
  pending = lua_absindex(L, pending);
  if ((rc = pushnames(L, dump, len, (lua_Integer)hash)) != 0) return rc;
  if (lua_rawlen(L, -1) == 0) {           /* it reads no globals */
    lua_pop(L, 1);
    return 0;
  }
  lua_pushcfunction(L, pappend);
  lua_pushvalue(L, pending);
  lua_pushvalue(L, -3);
  lua_pushvalue(L, env);
  lua_pushinteger(L, argno);
  st = lua_pcall(L, 4, 1, 0);
  if (st == LUA_OK) lua_replace(L, pending);
  else lua_pop(L, 1);
  lua_pop(L, 1);                          /* the names */
  return st == LUA_OK ? 0 : CFUT_ENOMEM;
}

/* (env, name): env[name], through its metamethods. */
static int pget (lua_State *L) {
  lua_gettable(L, 1);
  return 1;
}

int globals_fetch (lua_State *L, int env, int name) {
  int st;
  env = lua_absindex(L, env);
  name = lua_absindex(L, name);
  lua_pushvalue(L, name);
  if (lua_rawget(L, env) != LUA_TNIL || !lua_getmetatable(L, env))
    return 0;                             /* (a plain _G: no call) */
  lua_pop(L, 2);
  lua_pushcfunction(L, pget);
  lua_pushvalue(L, env);
  lua_pushvalue(L, name);
  if ((st = lua_pcall(L, 2, 1, 0)) == LUA_OK) return 0;
  lua_pop(L, 1);
  lua_pushnil(L);                         /* it fails to read: not sent */
  return st == LUA_ERRMEM ? CFUT_ENOMEM : 0;
}

/* }====================================================== */


/*
** {======================================================
** Receiver
** =======================================================
*/

void globals_install (lua_State *L, int t) {
  int g, copies;
  t = lua_absindex(L, t);
  luaL_checkstack(L, 6, NULL);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  g = lua_gettop(L);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &COPIES) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &COPIES);
  }
  copies = g + 1;
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {           /* key at -2, copy at -1 */
    if (lua_type(L, -2) == LUA_TSTRING) {
      int own;
      lua_pushvalue(L, -2);
      if (lua_rawget(L, g) == LUA_TNIL) own = 0;
      else {
        lua_pushvalue(L, -3);
        lua_rawget(L, copies);            /* the copy it was, if any */
        own = lua_isnil(L, -1) || !lua_rawequal(L, -1, -2);
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
      if (!own) {
        lua_pushvalue(L, -2);
        lua_pushvalue(L, -2);
        lua_rawset(L, g);
        lua_pushvalue(L, -2);
        lua_pushvalue(L, -2);
        lua_rawset(L, copies);
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
}

/* }====================================================== */
