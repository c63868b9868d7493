/*
** unmarshal.c: bytes -> Lua values, the decoding side of cfut's one wire
** format (docs/wire.md; the encoder is marshal.c).  Every tag, length and
** reference is checked before it is trusted.  Never raises: returns
** CFUT_EBADMSG (a Lua memory error is the one exception).
*/

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"

#include "cfut.h"
#include "errors.h"
#include "executor.h"
#include "future.h"
#include "lcfut.h"
#include "marshal.h"
#include "wire.h"

#define MAXLOADS      4096  /* the receiver's closure cache is emptied beyond */
#define MAXPREALLOC   (1 << 24)   /* cap on lua_createtable size hints */

/* Registry keys (only their addresses matter) */
static char LOADS;      /* id -> loaded closure */
static char LOADCOUNT;  /* key inside LOADS: how many closures it holds */


/*
** {======================================================
** Decoder
** =======================================================
*/

typedef struct Dec {
  lua_State *L;
  const unsigned char *start, *p, *end;
  int flags;
  int depth;
  int refs;           /* slot: the only object numbered, or a table
                         number -> table, function or key string */
  int loads;          /* slot: the registry's LOADS table */
  lua_Integer nrefs;
  char *err;
  size_t errlen;
  int rc;             /* pdecode's answer */
  uint64_t n;         /* idem: values decoded */
  int check;          /* walking for marshal_check: no handle allowed */
} Dec;

static int decvalue (Dec *d);

/* Say what is wrong (and where, unless 'at' is NULL): CFUT_EBADMSG. */
static int fail (Dec *d, const unsigned char *at, const char *fmt, ...) {
  va_list ap;
  size_t n;
  if (d->errlen == 0) return CFUT_EBADMSG;
  va_start(ap, fmt);
  vsnprintf(d->err, d->errlen, fmt, ap);
  va_end(ap);
  n = strlen(d->err);
  if (at != NULL)
    snprintf(d->err + n, d->errlen - n, " at byte %zu",
             (size_t)(at - d->start));
  return CFUT_EBADMSG;
}

static size_t rem (Dec *d) {
  return (size_t)(d->end - d->p);
}

static int need (Dec *d, size_t n) {
  return (rem(d) >= n) ? 0 : fail(d, d->p, "truncated message");
}

static int getvarint (Dec *d, uint64_t *v) {
  const unsigned char *p = d->p;
  uint64_t x = 0;
  int i;
  for (i = 0; i < MAXVARINT; i++) {
    unsigned c;
    if (p + i >= d->end) return fail(d, p, "truncated message");
    c = p[i];
    if (i == MAXVARINT - 1 && c > 1) return fail(d, p, "bad varint");
    x |= (uint64_t)(c & 0x7f) << (7 * i);
    if (!(c & 0x80)) {
      d->p = p + i + 1;
      *v = x;
      return 0;
    }
  }
  return fail(d, p, "bad varint");
}

/* A length, then that many bytes (which must be there). */
static int getbytes (Dec *d, const char **s, size_t *len) {
  const unsigned char *at = d->p;
  uint64_t n;
  int rc = getvarint(d, &n);
  if (rc != 0) return rc;
  if (n > rem(d)) return fail(d, at, "truncated message (length %llu)",
                              (unsigned long long)n);
  *s = (const char *)d->p;
  *len = (size_t)n;
  d->p += n;
  return 0;
}

static lua_Integer u2i (uint64_t u) {
  lua_Integer i;
  memcpy(&i, &u, sizeof(i));
  return i;
}

static int decenter (Dec *d, const unsigned char *at) {
  if (d->depth >= MAXDEPTH)
    return fail(d, at, "nesting deeper than 200 levels");
  if ((d->depth & 3) == 0 && !lua_checkstack(d->L, STACKSTEP))
    return fail(d, at, "Lua stack overflow");
  d->depth++;
  return 0;
}

/* Number the object on top (the encoder numbered it at the same point). */
static void addref (Dec *d) {
  lua_State *L = d->L;
  if (d->nrefs == 1) {    /* a second one: now the slot needs a table */
    lua_createtable(L, 16, 0);
    lua_pushvalue(L, d->refs);
    lua_rawseti(L, -2, 1);
    lua_replace(L, d->refs);
  }
  lua_pushvalue(L, -1);
  if (d->nrefs == 0) lua_replace(L, d->refs);   /* the first one alone */
  else lua_rawseti(L, d->refs, d->nrefs + 1);
  d->nrefs++;
}

/* Push object number i (1 <= i <= nrefs). */
static void pushref (Dec *d, uint64_t i) {
  if (d->nrefs == 1) lua_pushvalue(d->L, d->refs);
  else lua_rawgeti(d->L, d->refs, (lua_Integer)i);
}

static int decref (Dec *d, const unsigned char *at) {
  uint64_t i;
  int rc = getvarint(d, &i);
  if (rc != 0) return rc;
  if (i < 1 || i > (uint64_t)d->nrefs)
    return fail(d, at, "bad reference #%llu", (unsigned long long)i);
  pushref(d, i);
  return 0;
}


/* ---- tables ---- */

/* One hash entry for the table at t. */
static int decpair (Dec *d, int t) {
  lua_State *L = d->L;
  const unsigned char *at = d->p;
  lua_Number x;
  int rc;
  if (rem(d) > 0 && *at == T_NIL) return fail(d, at, "nil table key");
  if ((rc = decvalue(d)) != 0) return rc;
  if (*at == T_FLOAT) {
    x = lua_tonumber(L, -1);
    if (x != x) return fail(d, at, "NaN table key");
  }
  at = d->p;
  if (rem(d) > 0 && *at == T_NIL) return fail(d, at, "nil table value");
  if ((rc = decvalue(d)) != 0) return rc;
  lua_rawset(L, t);
  return 0;
}

static int decmeta (Dec *d, int t) {
  const unsigned char *at = d->p;
  int rc;
  if (rem(d) > 0 && *at == T_NIL) {
    d->p++;
    return 0;
  }
  if ((rc = decvalue(d)) != 0) return rc;
  if (!lua_istable(d->L, -1)) return fail(d, at, "metatable is not a table");
  lua_setmetatable(d->L, t);
  return 0;
}

static int dectable (Dec *d, const unsigned char *at) {
  lua_State *L = d->L;
  uint64_t narr, nhash, i;
  int rc, t;
  if ((rc = getvarint(d, &narr)) != 0 || (rc = getvarint(d, &nhash)) != 0)
    return rc;
  /* every element takes a byte at least, every pair two, the metatable 1 */
  if (narr >= rem(d) || nhash > (rem(d) - narr - 1) / 2)
    return fail(d, at, "%s", (rem(d) == 0) ? "truncated message"
                                          : "table size exceeds the message");
  if ((rc = decenter(d, at)) != 0) return rc;
  lua_createtable(L, (int)(narr < MAXPREALLOC ? narr : MAXPREALLOC),
                  (int)(nhash < MAXPREALLOC ? nhash : MAXPREALLOC));
  t = lua_gettop(L);
  addref(d);
  for (i = 1; i <= narr && rc == 0; i++) {
    if ((rc = decvalue(d)) == 0) lua_rawseti(L, t, (lua_Integer)i);
  }
  for (i = 0; i < nhash && rc == 0; i++) rc = decpair(d, t);
  if (rc == 0) rc = decmeta(d, t);
  d->depth--;
  return rc;
}


/* ---- modules ---- */

static int callrequire (Dec *d, const unsigned char *at, const char *name,
                        size_t len) {
  lua_State *L = d->L;
  int n = (len > 60) ? 60 : (int)len;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  lua_pushliteral(L, "require");
  lua_rawget(L, -2);
  lua_remove(L, -2);
  if (!lua_isfunction(L, -1))
    return fail(d, at, "cannot load module '%.*s' (no 'require')", n, name);
  lua_pushlstring(L, name, len);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    return fail(d, NULL, "cannot load module '%.*s': %s", n, name,
                msg ? msg : "(error object is not a string)");
  }
  return 0;
}

/* Push require(name): package.loaded[name] when there, else a protected
** call of the receiver's require.  "_G" is the receiver's globals. */
static int pushmodule (Dec *d, const unsigned char *at, const char *name,
                       size_t len) {
  lua_State *L = d->L;
  if (len == 2 && name[0] == '_' && name[1] == 'G') {
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    return 0;
  }
  if (lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE) == LUA_TTABLE) {
    lua_pushlstring(L, name, len);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    if (lua_toboolean(L, -1)) return 0;
  }
  lua_pop(L, 1);
  return callrequire(d, at, name, len);
}

static int decmodule (Dec *d, const unsigned char *at) {
  const char *name;
  size_t len;
  int rc = getbytes(d, &name, &len);
  return (rc != 0) ? rc : pushmodule(d, at, name, len);
}

static int decfield (Dec *d, const unsigned char *at) {
  lua_State *L = d->L;
  const char *mod, *field;
  size_t mlen, flen;
  int rc, m, f;
  if ((rc = getbytes(d, &mod, &mlen)) != 0
      || (rc = getbytes(d, &field, &flen)) != 0
      || (rc = pushmodule(d, at, mod, mlen)) != 0)
    return rc;
  m = (mlen > 60) ? 60 : (int)mlen;
  f = (flen > 60) ? 60 : (int)flen;
  if (!lua_istable(L, -1))
    return fail(d, at, "module '%.*s' is not a table", m, mod);
  lua_pushlstring(L, field, flen);
  lua_rawget(L, -2);
  lua_remove(L, -2);
  if (lua_isnil(L, -1))
    return fail(d, at, "module '%.*s' has no field '%.*s'", m, mod, f, field);
  return 0;
}


/* ---- functions ---- */

/* How many upvalues the closure at idx has (without reading them: a
** damaged chunk may disagree with its closure). */
static int nupvalues (lua_State *L, int idx) {
  lua_Debug ar;
  lua_pushvalue(L, idx);
  lua_getinfo(L, ">u", &ar);
  return ar.nups;
}

/* The LOADS table in its slot. */
static void loadloads (Dec *d) {
  lua_State *L = d->L;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &LOADS) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 16);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &LOADS);
  }
  lua_replace(L, d->loads);
}

/* Remember the closure on top under 'id', emptying a full cache first. */
static void cacheclosure (Dec *d, lua_Integer id) {
  lua_State *L = d->L;
  lua_Integer n;
  lua_rawgetp(L, d->loads, &LOADCOUNT);
  n = lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (n >= MAXLOADS) {
    lua_createtable(L, 0, 16);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &LOADS);
    lua_replace(L, d->loads);
    n = 0;
  }
  lua_pushvalue(L, -1);
  lua_rawseti(L, d->loads, id);
  lua_pushinteger(L, n + 1);
  lua_rawsetp(L, d->loads, &LOADCOUNT);
}

/* Push the closure for bytecode 'code': the cached one when it has no
** upvalue but the globals (it is then the same closure every time), else
** a newly loaded one with 'nups' upvalues. */
static int pushclosure (Dec *d, const unsigned char *at, const char *code,
                        size_t len, int nups) {
  lua_State *L = d->L;
  uint64_t id = get64(at + 1), hash = get64(at + 9);
  unsigned char nups8 = (unsigned char)nups;
  int cacheable = (nups == 0 || (nups == 1 && rem(d) >= sizeof(GNAME)
                                 && memcmp(d->p, GNAME, sizeof(GNAME)) == 0));
  if (cacheable) {
    if (lua_isnil(L, d->loads)) loadloads(d);
    if (lua_rawgeti(L, d->loads, u2i(id)) == LUA_TFUNCTION) return 0;
    lua_pop(L, 1);
  }
  if (fnv(fnv(FNVSEED, &nups8, 1), code, len) != hash)
    return fail(d, at, "damaged function bytecode");
  if (luaL_loadbufferx(L, code, len, "=(marshalled)", "b") != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    return fail(d, at, "bad function (%.80s)", msg ? msg : "?");
  }
  if (nupvalues(L, -1) != nups)
    return fail(d, at, "function upvalue count does not match");
  if (cacheable) cacheclosure(d, u2i(id));
  return 0;
}

/* Upvalue i of the function at f: a value, or a join with an upvalue of
** a function decoded before. */
static int decupvalue (Dec *d, int f, int i) {
  lua_State *L = d->L;
  const unsigned char *at = d->p;
  uint64_t ref;
  int rc, n;
  if (rem(d) > 0 && *d->p == T_UPREF) {
    d->p++;
    if ((rc = getvarint(d, &ref)) != 0 || (rc = need(d, 1)) != 0) return rc;
    n = *d->p++;
    if (ref < 1 || ref > (uint64_t)d->nrefs)
      return fail(d, at, "bad upvalue reference");
    pushref(d, ref);
    if (!lua_isfunction(L, -1) || lua_iscfunction(L, -1) || n < 1
        || n > nupvalues(L, -1))
      return fail(d, at, "bad upvalue reference");
    lua_upvaluejoin(L, f, i, -1, n);
    lua_pop(L, 1);
    return 0;
  }
  if ((rc = decvalue(d)) != 0) return rc;
  if (lua_setupvalue(L, f, i) == NULL)
    return fail(d, at, "function has fewer upvalues than the message");
  return 0;
}

static int decfunction (Dec *d, const unsigned char *at) {
  const char *code;
  size_t len;
  int rc, i, f, nups;
  if (d->flags & MARSHAL_NOCODE)
    return fail(d, NULL, "functions from another process are not accepted");
  if ((rc = need(d, TRAILER)) != 0) return rc;
  nups = d->p[TRAILER - 1];
  d->p += TRAILER;
  if ((rc = getbytes(d, &code, &len)) != 0) return rc;
  if ((rc = decenter(d, at)) != 0) return rc;
  if ((rc = pushclosure(d, at, code, len, nups)) == 0) {
    f = lua_gettop(d->L);
    addref(d);
    for (i = 1; i <= nups && rc == 0; i++) rc = decupvalue(d, f, i);
  }
  d->depth--;
  return rc;
}


/* ---- other values ---- */

static int dechandle (Dec *d, const unsigned char *at, int tag) {
  void *h;
  int rc;
  if (!(d->flags & MARSHAL_LOCAL))
    return fail(d, at, "%s handle in a message from another process",
                (tag == T_FUTURE) ? "future" : "executor");
  if ((rc = need(d, 8)) != 0) return rc;
  h = (void *)(uintptr_t)get64(d->p);
  d->p += 8;
  /* The message keeps its own reference (it may be decoded again, and its
  ** owner lets it go with marshal_discard): the handle gets a new one. */
  if (tag == T_FUTURE) {
    fut_retain((Future *)h);
    cfut_pushfuture(d->L, (Future *)h);
  }
  else {
    ex_retain((Executor *)h);
    cfut_pushexecutor(d->L, (Executor *)h);
  }
  return 0;
}

static int decword (Dec *d, int tag) {
  uint64_t u;
  lua_Number x;
  int rc = need(d, 8);
  if (rc != 0) return rc;
  u = get64(d->p);
  d->p += 8;
  if (tag == T_INT) lua_pushinteger(d->L, u2i(u));
  else {
    memcpy(&x, &u, sizeof(x));
    lua_pushnumber(d->L, x);
  }
  return 0;
}

static int decvalue (Dec *d) {
  const unsigned char *at = d->p;
  const char *s;
  size_t len;
  int rc, tag;
  if (d->p >= d->end) return fail(d, at, "truncated message");
  switch (tag = *d->p++) {
    case T_NIL: lua_pushnil(d->L); return 0;
    case T_FALSE: lua_pushboolean(d->L, 0); return 0;
    case T_TRUE: lua_pushboolean(d->L, 1); return 0;
    case T_INT: case T_FLOAT: return decword(d, tag);
    case T_STR: case T_KSTR:
      if ((rc = getbytes(d, &s, &len)) != 0) return rc;
      lua_pushlstring(d->L, s, len);
      if (tag == T_KSTR) addref(d);
      return 0;
    case T_TABLE: return dectable(d, at);
    case T_REF: return decref(d, at);
    case T_FUNC: return decfunction(d, at);
    case T_MODULE: return decmodule(d, at);
    case T_FIELD: return decfield(d, at);
    case T_FUTURE: case T_EXECUTOR: return dechandle(d, at, tag);
    default: return fail(d, at, "bad tag 0x%02x", (unsigned)tag);
  }
}

/* Magic, version and value count. */
static int decheader (Dec *d, uint64_t *n) {
  int rc;
  if (rem(d) < 4) return fail(d, d->end, "truncated message");
  if (memcmp(d->p, MAGIC, 3) != 0)
    return fail(d, NULL, "not a cfut message (bad magic)");
  if ((d->p[3] & ~WIRE_HANDLES) != WIRE_VERSION)
    return fail(d, NULL, "unsupported wire version %u", (unsigned)d->p[3]);
  if ((d->p[3] & WIRE_HANDLES) && !(d->flags & MARSHAL_LOCAL))
    return fail(d, NULL, "handles in a message from another process");
  d->p += 4;
  if ((rc = getvarint(d, n)) != 0) return rc;
  if (*n > rem(d) || *n > INT_MAX / 2)
    return fail(d, d->start + 4, "value count exceeds the message");
  if (!lua_checkstack(d->L, (int)*n + 8))
    return fail(d, d->start + 4, "too many values for the Lua stack");
  return 0;
}

/* }====================================================== */


/*
** {======================================================
** Walking a message without Lua (handle references)
** =======================================================
*/

/* The walker reads with the decoder's checked primitives (d->errlen is 0:
** no message) and keeps 'retain' in d->flags. */
static int wvalue (Dec *d);

static int wskip (Dec *d) {
  const char *s;
  size_t len;
  return getbytes(d, &s, &len);
}

static int wtable (Dec *d) {
  uint64_t narr, nhash, i;
  if (getvarint(d, &narr) || getvarint(d, &nhash) || ++d->depth > MAXDEPTH)
    return -1;
  for (i = 0; i < narr; i++) if (wvalue(d)) return -1;
  for (i = 0; i < nhash; i++) if (wvalue(d) || wvalue(d)) return -1;
  d->depth--;
  return wvalue(d);   /* the metatable */
}

static int wfunction (Dec *d) {
  uint64_t v;
  int nups;
  if (need(d, TRAILER) || ++d->depth > MAXDEPTH) return -1;
  nups = d->p[TRAILER - 1];
  d->p += TRAILER;
  if (wskip(d)) return -1;
  for (; nups > 0; nups--) {
    if (rem(d) > 0 && *d->p == T_UPREF) {
      d->p++;
      if (getvarint(d, &v) || need(d, 1)) return -1;
      d->p++;
    }
    else if (wvalue(d)) return -1;
  }
  d->depth--;
  return 0;
}

static int whandle (Dec *d, int tag) {
  void *h;
  if (d->check) return fail(d, d->p - 1, "handle in a message from another "
                                          "process");
  if (need(d, 8)) return -1;
  h = (void *)(uintptr_t)get64(d->p);
  d->p += 8;
  if (tag == T_FUTURE) {
    if (d->flags) fut_retain((Future *)h);
    else fut_release((Future *)h);
  }
  else {
    if (d->flags) ex_retain((Executor *)h);
    else ex_release((Executor *)h);
  }
  return 0;
}

static int wvalue (Dec *d) {
  uint64_t v;
  int tag;
  if (need(d, 1)) return -1;
  switch (tag = *d->p++) {
    case T_NIL: case T_FALSE: case T_TRUE: return 0;
    case T_INT: case T_FLOAT:
      if (need(d, 8)) return -1;
      d->p += 8;
      return 0;
    case T_STR: case T_MODULE: case T_KSTR: return wskip(d);
    case T_FIELD: return wskip(d) ? -1 : wskip(d);
    case T_REF: return getvarint(d, &v);
    case T_TABLE: return wtable(d);
    case T_FUNC: return wfunction(d);
    case T_FUTURE: case T_EXECUTOR: return whandle(d, tag);
    default: return fail(d, d->p - 1, "bad tag 0x%02x", (unsigned)tag);
  }
}

int marshal_check (const char *data, size_t len, char *err, size_t errlen) {
  Dec d;
  uint64_t n;
  memset(&d, 0, sizeof(d));
  d.start = d.p = (const unsigned char *)data;
  d.end = d.start + len;
  d.check = 1;
  d.err = err;
  d.errlen = errlen;
  if (errlen > 0) err[0] = '\0';
  if (len < 4 || memcmp(data, MAGIC, 3) != 0 ||
      (unsigned char)data[3] != WIRE_VERSION) {
    if (errlen > 0) snprintf(err, errlen, "not a cfut message (bad header)");
    return CFUT_EBADMSG;
  }
  d.p += 4;
  if (getvarint(&d, &n) != 0) return CFUT_EBADMSG;
  while (n-- > 0)
    if (wvalue(&d) != 0) {
      if (errlen > 0 && err[0] == '\0')
        snprintf(err, errlen, "malformed value at byte %ld",
                 (long)(d.p - d.start));
      return CFUT_EBADMSG;
    }
  if (d.p != d.end) {
    if (errlen > 0)
      snprintf(err, errlen, "trailing bytes after the last value");
    return CFUT_EBADMSG;
  }
  return 0;
}

/* Take (retain) or drop one reference per handle in a message; stops
** quietly where the bytes stop making sense. */
void wire_walkhandles (const char *data, size_t len, int retain) {
  Dec d;
  uint64_t n;
  memset(&d, 0, sizeof(d));
  d.start = d.p = (const unsigned char *)data;
  d.end = d.start + len;
  d.flags = retain;
  /* Only a message marked as holding handles has any to walk. */
  if (len < 4 || memcmp(data, MAGIC, 3) != 0 ||
      (unsigned char)data[3] != (WIRE_VERSION | WIRE_HANDLES))
    return;
  d.p += 4;
  if (getvarint(&d, &n) != 0) return;
  while (n-- > 0 && wvalue(&d) == 0) {}
}

/* }====================================================== */


/*
** {======================================================
** Public functions
** =======================================================
*/

/* Decode the whole message onto the stack of d->L above 'base': the
** values, or nothing and an error code. */
static int decodeall (Dec *d, int base, uint64_t *n) {
  lua_State *L = d->L;
  uint64_t i;
  int rc;
  d->refs = base + 1; d->loads = base + 2;
  if ((rc = decheader(d, n)) == 0) {
    lua_pushnil(L);   /* the two slots */
    lua_pushnil(L);
    for (i = 0; i < *n && rc == 0; i++) rc = decvalue(d);
    if (rc == 0 && d->p != d->end)
      rc = fail(d, d->p, "trailing bytes after the last value");
  }
  if (rc != 0) {
    lua_settop(L, base);
    return rc;
  }
  lua_rotate(L, base + 1, -2);   /* the slots above the values */
  lua_pop(L, 2);
  return 0;
}

/* decodeall run protected, for a big message decoded with the collector
** stopped (so that a memory error cannot leave it stopped). */
static int pdecode (lua_State *L) {
  Dec *d = (Dec *)lua_touserdata(L, 1);
  lua_settop(L, 0);
  d->rc = decodeall(d, 0, &d->n);
  return d->rc == 0 ? (int)d->n : 0;
}

/* Messages this large are decoded with the collector stopped: it would
** otherwise walk the growing result again and again (about a sixth of the
** time of a 100 000-record table). */
#define BIGMESSAGE (1u << 20)

int marshal_decode (lua_State *L, const char *data, size_t len, int flags,
                    char *err, size_t errlen) {
  Dec d;
  uint64_t n = 0;
  int base = lua_gettop(L), rc;
  d.L = L;
  d.start = d.p = (const unsigned char *)data;
  d.end = d.start + len;
  d.flags = flags; d.depth = 0;
  d.nrefs = 0;
  d.err = err; d.errlen = errlen;
  if (len >= BIGMESSAGE && lua_gc(L, LUA_GCISRUNNING)) {
    int st;
    lua_gc(L, LUA_GCSTOP);
    lua_pushcfunction(L, pdecode);
    lua_pushlightuserdata(L, &d);
    st = lua_pcall(L, 1, LUA_MULTRET, 0);
    lua_gc(L, LUA_GCRESTART);
    if (st != LUA_OK) return lua_error(L);   /* a memory error, as ever */
    rc = d.rc;
  }
  else rc = decodeall(&d, base, &n);
  if (rc != 0) return CFUT_EBADMSG;
  return lua_gettop(L) - base;
}

void marshal_discard (const char *data, size_t len) {
  wire_walkhandles(data, len, 0);
}

/* }====================================================== */
