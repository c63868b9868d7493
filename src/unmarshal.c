/*
** unmarshal.c: the one reader of cfut's wire format (docs/wire.md; the
** writer is marshal.c).  One walker of the grammar serves every reader:
**   - decoding (d->L set): the values are built in L;
**   - checking a message from another process without Lua
**     (marshal_check);
**   - taking or dropping the references of the handles in a message of
**     this process (wire_walkhandles, marshal_discard).
** Tags, lengths, counts, references, depth and the other limits are read
** and checked by the same code in every mode; what needs Lua (building
** values, resolving module names, loading bytecode) is done only when
** decoding.  So a message the check accepts is one the decoder accepts,
** unless a name it carries is missing from the receiving state or is not
** what its place needs, or the state has no room for it (d->receiver
** tells those failures apart).  The first RDEPTH levels are walked here,
** recursively; deeper ones are frames of a stack in heap memory
** (undeep.c), checked by the same helpers.
** Never raises: returns CFUT_EBADMSG (a Lua memory error is the one
** exception).
*/

#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "errors.h"
#include "globals.h"
#include "marshal.h"
#include "wire.h"
#include "wpath.h"
#include "unmarshal.h"

#define MAXLOADS      4096  /* the receiver's closure cache is emptied beyond */
#define MAXPREALLOC   (1 << 24)   /* cap on lua_createtable size hints */

/* Registry keys (only their addresses matter) */
static char LOADS;      /* id -> loaded closure */
static char LOADCOUNT;  /* key inside LOADS: how many closures it holds */

/* What the binding registered (marshal_sethandles). */
static _Atomic(const MarshalHandles *) handleops;

void marshal_sethandles (const MarshalHandles *ops) {
  atomic_store(&handleops, ops);
}

const MarshalHandles *wire_handleops (void) {
  return atomic_load_explicit(&handleops, memory_order_relaxed);
}


/*
** {======================================================
** The walker
** =======================================================
*/


/* Say what is wrong (and where, unless 'at' is NULL): CFUT_EBADMSG. */
int dec_fail (Dec *d, const unsigned char *at, const char *fmt, ...) {
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

/* After a failure of the receiving state (decoding), a step of the path
** to it, from the innermost out: a field (its key at L[k]), an element
** (number i, k = 0), the key, the metatable, upvalue i of the closure at
** L[k]. */
static void pathstep (Dec *d, int kind, int k, uint64_t i) {
  lua_State *L = d->L;
  char text[32];
  const char *name = NULL;
  if (L == NULL || !d->receiver) return;
  if (kind == 'f' && k == 0) {
    WStep *g = wpath_next(&d->path, 0);
    g->kind = 'f';
    snprintf(g->text, sizeof(g->text), "[%llu]", (unsigned long long)i);
    return;
  }
  if (kind == 'u' && lua_checkstack(L, 2)
      && (name = lua_getupvalue(L, k, (int)i)) != NULL)
    lua_pop(L, 1);
  if (kind == 'u' && (name == NULL || name[0] == '\0' || name[0] == '(')) {
    snprintf(text, sizeof(text), "#%d", (int)i);
    name = text;
  }
  wpath_add(&d->path, kind, L, k, name);
}

static int need (Dec *d, size_t n) {
  return (dec_rem(d) >= n) ? 0 : dec_fail(d, d->p, "truncated message");
}

static int getvarint (Dec *d, uint64_t *v) {
  const unsigned char *p = d->p;
  uint64_t x = 0;
  int i;
  for (i = 0; i < MAXVARINT; i++) {
    unsigned c;
    if (p + i >= d->end) return dec_fail(d, p, "truncated message");
    c = p[i];
    if (i == MAXVARINT - 1 && c > 1) return dec_fail(d, p, "bad varint");
    x |= (uint64_t)(c & 0x7f) << (7 * i);
    if (!(c & 0x80)) {
      d->p = p + i + 1;
      *v = x;
      return 0;
    }
  }
  return dec_fail(d, p, "bad varint");
}

/* A length, then that many bytes (which must be there). */
static int getbytes (Dec *d, const char **s, size_t *len) {
  const unsigned char *at = d->p;
  uint64_t n;
  int rc = getvarint(d, &n);
  if (rc != 0) return rc;
  if (n > dec_rem(d)) return dec_fail(d, at, "truncated message (length %llu)",
                              (unsigned long long)n);
  *s = (const char *)d->p;
  *len = (size_t)n;
  d->p += n;
  return 0;
}

static int isnanbits (uint64_t u) {
  return (u & 0x7ff0000000000000ULL) == 0x7ff0000000000000ULL
         && (u & 0x000fffffffffffffULL) != 0;
}

/* Checking: note the kind of object number nrefs+1. */
static int notekind (Dec *d, unsigned kind) {
  if ((size_t)d->nrefs >= d->kcap) {
    size_t cap = 2 * d->kcap;
    uint16_t *k = d->kheap ? realloc(d->kinds, cap * sizeof(*k))
                           : malloc(cap * sizeof(*k));
    if (k == NULL) return dec_fail(d, NULL, "not enough memory");
    if (!d->kheap) memcpy(k, d->kinds, d->kcap * sizeof(*k));
    d->kinds = k;
    d->kcap = cap;
    d->kheap = 1;
  }
  d->kinds[d->nrefs] = (uint16_t)kind;
  return 0;
}

/* Number the object just met (the encoder numbered it at the same point):
** decoding, the object on top of the stack. */
int dec_addref (Dec *d, unsigned kind) {
  lua_State *L = d->L;
  if (L == NULL) {
    if (d->walk == W_CHECK && notekind(d, kind) != 0) return CFUT_EBADMSG;
  }
  else if (d->nrefs == 0) {   /* the first one alone */
    lua_pushvalue(L, -1);
    lua_replace(L, d->refs);
  }
  else {
    if (d->nrefs == 1) {      /* a second one: now the slot needs a table */
      lua_createtable(L, 16, 0);
      lua_pushvalue(L, d->refs);
      lua_rawseti(L, -2, 1);
      lua_replace(L, d->refs);
    }
    lua_pushvalue(L, -1);
    lua_rawseti(L, d->refs, d->nrefs + 1);
  }
  d->nrefs++;
  return 0;
}

/* Push object number i (1 <= i <= nrefs). */
void dec_pushref (Dec *d, uint64_t i) {
  if (d->nrefs == 1) lua_pushvalue(d->L, d->refs);
  else lua_rawgeti(d->L, d->refs, (lua_Integer)i);
}

static int decref (Dec *d, const unsigned char *at) {
  uint64_t i;
  int rc = getvarint(d, &i);
  if (rc != 0) return rc;
  if (i < 1 || i > (uint64_t)d->nrefs)
    return dec_fail(d, at, "bad reference #%llu", (unsigned long long)i);
  if (d->L != NULL) dec_pushref(d, i);
  return 0;
}



/* ---- tables ---- */

/* Walking: could the value that starts at 'at' (read already) be a
** table?  Names are the receiver's business: decoding checks them. */
static int maybetable (Dec *d, const unsigned char *at) {
  uint64_t i;
  switch (*at) {
    case T_TABLE: case T_MODULE: case T_FIELD: return 1;
    case T_REF:
      if (d->walk != W_CHECK) return 1;
      i = dec_rereadvarint(at + 1) - 1;
      return d->kinds[i] == K_TABLE;
    default: return 0;
  }
}

/* Is the value on top, decoded from the bytes at 'at', nil or NaN?  Only
** a name can make one: the bytes of nil and NaN are refused before. */
static int badkey (lua_State *L, const unsigned char *at) {
  lua_Number x;
  if (*at != T_MODULE && *at != T_FIELD) return 0;
  if (lua_isnil(L, -1)) return 1;
  if (lua_type(L, -1) != LUA_TNUMBER) return 0;
  x = lua_tonumber(L, -1);
  return x != x;
}

/* A size hint for lua_createtable.  An honest message holds at least a
** byte per entry of all its tables together, so the hints are drawn from
** a budget of its length: nested tables that each claim the rest of the
** message cannot make the decoder allocate its square. */
uint64_t dec_hint (Dec *d, uint64_t n) {
  if (n > d->hints) n = d->hints;
  if (n > MAXPREALLOC) n = MAXPREALLOC;
  d->hints -= n;
  return n;
}

/* The checks of a table's contents, the same in both walks (recursive
** and with frames).  Bytes that can never start a key (before it): */
int dec_keybytes (Dec *d, const unsigned char *at) {
  if (dec_rem(d) > 0 && *at == T_NIL) return dec_fail(d, at, "nil table key");
  if (dec_rem(d) > 8 && *at == T_FLOAT && isnanbits(get64(at + 1)))
    return dec_fail(d, at, "NaN table key");
  return 0;
}

/* The key just read from 'at' (decoding: on top): a name may make a nil
** or NaN. */
int dec_keyvalue (Dec *d, const unsigned char *at) {
  if (d->L != NULL && badkey(d->L, at)) {
    d->receiver = 1;
    return dec_fail(d, at, "%s table key", lua_isnil(d->L, -1) ? "nil" : "NaN");
  }
  return 0;
}

int dec_valuebytes (Dec *d, const unsigned char *at) {
  return (dec_rem(d) > 0 && *at == T_NIL)
         ? dec_fail(d, at, "nil table value") : 0;
}

/* Before a metatable: 1 when it is nil (read), else 0 or a failure for a
** function (refused before reading it, so never loaded). */
int dec_metabytes (Dec *d, const unsigned char *at, int *rc) {
  *rc = 0;
  if (dec_rem(d) > 0 && *at == T_NIL) {
    d->p++;
    return 1;
  }
  if (dec_rem(d) > 0 && *at == T_FUNC) {
    *rc = dec_fail(d, at, "metatable is not a table");
    return 1;
  }
  return 0;
}

/* The metatable just read from 'at' (decoding: on top). */
int dec_metavalue (Dec *d, const unsigned char *at) {
  if (d->L == NULL ? !maybetable(d, at) : !lua_istable(d->L, -1)) {
    d->receiver = (*at == T_MODULE || *at == T_FIELD);
    return dec_fail(d, at, "metatable is not a table");
  }
  return 0;
}

/* One level deeper in the recursive walk, which keeps the Lua stack
** roomy (the walk with frames keeps its own). */
static int enter (Dec *d, const unsigned char *at) {
  if (d->L != NULL && (d->rdepth & 3) == 0
      && !lua_checkstack(d->L, STACKSTEP)) {
    d->receiver = 1;
    return dec_fail(d, at, "Lua stack overflow");
  }
  d->rdepth++;
  return 0;
}

/* One hash entry for the table at t (the recursive walk). */
static int decpair (Dec *d, int t) {
  const unsigned char *at = d->p;
  int rc;
  if ((rc = dec_keybytes(d, at)) != 0) return rc;
  if ((rc = dec_value(d, L_NONE)) != 0 || (rc = dec_keyvalue(d, at)) != 0) {
    pathstep(d, 'k', 0, 0);
    return rc;
  }
  at = d->p;
  if ((rc = dec_valuebytes(d, at)) != 0) return rc;
  if ((rc = dec_value(d, L_NONE)) != 0) {
    pathstep(d, 'f', t + 1, 0);     /* (the key, above the table) */
    return rc;
  }
  if (d->L != NULL) lua_rawset(d->L, t);
  return 0;
}

static int decmeta (Dec *d, int t) {
  const unsigned char *at = d->p;
  int rc;
  if (dec_metabytes(d, at, &rc)) return rc;
  if ((rc = dec_value(d, L_NONE)) != 0 || (rc = dec_metavalue(d, at)) != 0) {
    pathstep(d, 'm', 0, 0);
    return rc;
  }
  if (d->L != NULL) lua_setmetatable(d->L, t);
  return 0;
}

/* A table: its counts, then its contents, recursively for the first
** RDEPTH levels (the fast walk of ordinary values), with frames past. */
static int dectable (Dec *d, const unsigned char *at, int link) {
  lua_State *L = d->L;
  uint64_t narr, nhash, i;
  int rc, t = 0;
  if ((rc = getvarint(d, &narr)) != 0 || (rc = getvarint(d, &nhash)) != 0)
    return rc;
  /* every element takes a byte at least, every pair two, the metatable 1 */
  if (narr >= dec_rem(d) || nhash > (dec_rem(d) - narr - 1) / 2)
    return dec_fail(d, at, "%s", (dec_rem(d) == 0) ? "truncated message"
                                          : "table size exceeds the message");
  if (d->rdepth >= RDEPTH) return dec_deeptable(d, at, link, narr, nhash);
  if ((rc = enter(d, at)) != 0) return rc;
  if (L != NULL) {
    lua_createtable(L, (int)dec_hint(d, narr), (int)dec_hint(d, nhash));
    t = lua_gettop(L);
  }
  rc = dec_addref(d, K_TABLE);
  for (i = 1; i <= narr && rc == 0; i++) {
    if ((rc = dec_value(d, L_NONE)) != 0) pathstep(d, 'f', 0, i);
    else if (L != NULL) lua_rawseti(L, t, (lua_Integer)i);
  }
  for (i = 0; i < nhash && rc == 0; i++) rc = decpair(d, t);
  if (rc == 0) rc = decmeta(d, t);
  d->rdepth--;
  return rc;
}

/* ---- modules (decoding only: the receiver's names) ---- */

static int callrequire (Dec *d, const unsigned char *at, const char *name,
                        size_t len) {
  lua_State *L = d->L;
  int n = (len > 60) ? 60 : (int)len;
  d->receiver = 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  lua_pushliteral(L, "require");
  lua_rawget(L, -2);
  lua_remove(L, -2);
  if (!lua_isfunction(L, -1))
    return dec_fail(d, at, "cannot load module '%.*s' (no 'require')", n, name);
  lua_pushlstring(L, name, len);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    return dec_fail(d, NULL, "cannot load module '%.*s': %s", n, name,
                msg ? msg : "(error object is not a string)");
  }
  d->receiver = 0;
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
  if (rc != 0 || d->L == NULL) return rc;
  return pushmodule(d, at, name, len);
}

static int decfield (Dec *d, const unsigned char *at) {
  lua_State *L = d->L;
  const char *mod, *field;
  size_t mlen, flen;
  int rc, m, f;
  if ((rc = getbytes(d, &mod, &mlen)) != 0
      || (rc = getbytes(d, &field, &flen)) != 0 || L == NULL
      || (rc = pushmodule(d, at, mod, mlen)) != 0)
    return rc;
  m = (mlen > 60) ? 60 : (int)mlen;
  f = (flen > 60) ? 60 : (int)flen;
  d->receiver = 1;
  if (!lua_istable(L, -1))
    return dec_fail(d, at, "module '%.*s' is not a table", m, mod);
  lua_pushlstring(L, field, flen);
  lua_rawget(L, -2);
  lua_remove(L, -2);
  if (lua_isnil(L, -1))
    return dec_fail(d, at, "module '%.*s' has no field '%.*s'", m, mod, f,
                    field);
  d->receiver = 0;
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
  int cacheable = (nups == 0 || (nups == 1 && dec_rem(d) >= sizeof(GNAME)
                                 && memcmp(d->p, GNAME, sizeof(GNAME)) == 0));
  if (cacheable) {
    if (lua_isnil(L, d->loads)) loadloads(d);
    if (lua_rawgeti(L, d->loads, dec_u2i(id)) == LUA_TFUNCTION) return 0;
    lua_pop(L, 1);
  }
  /* (the bytecode is the receiver's to judge: a check without Lua walks
  ** past it) */
  d->receiver = 1;
  if (fnv(fnv(FNVSEED, &nups8, 1), code, len) != hash)
    return dec_fail(d, at, "damaged function bytecode");
  if (luaL_loadbufferx(L, code, len, "=(marshalled)", "b") != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    return dec_fail(d, at, "bad function (%.80s)", msg ? msg : "?");
  }
  if (nupvalues(L, -1) != nups)
    return dec_fail(d, at, "function upvalue count does not match");
  if (cacheable) cacheclosure(d, dec_u2i(id));
  d->receiver = 0;
  return 0;
}

/* Upvalue i of the function at fn (decoding), its bytes at 'at': when
** they are a join with an upvalue of a function decoded before, make it
** and return 1; else 0 (a value follows), or a failure. */
int dec_upref (Dec *d, int fn, int i, const unsigned char *at,
                     int *rc) {
  lua_State *L = d->L;
  uint64_t ref;
  int n;
  *rc = 0;
  if (dec_rem(d) == 0 || *at != T_UPREF) return 0;
  d->p++;
  if ((*rc = getvarint(d, &ref)) != 0 || (*rc = need(d, 1)) != 0) return 1;
  n = *d->p++;
  if (ref < 1 || ref > (uint64_t)d->nrefs || n < 1
      || (d->walk == W_CHECK && (d->kinds[ref - 1] >= K_KSTR
                                 || d->kinds[ref - 1] < (unsigned)n))) {
    *rc = dec_fail(d, at, "bad upvalue reference");
    return 1;
  }
  if (L == NULL) return 1;
  dec_pushref(d, ref);
  if (!lua_isfunction(L, -1) || lua_iscfunction(L, -1)
      || n > nupvalues(L, -1)) {
    d->receiver = 1;      /* (a closure from the cache) */
    *rc = dec_fail(d, at, "bad upvalue reference");
    return 1;
  }
  lua_upvaluejoin(L, fn, i, -1, n);
  lua_pop(L, 1);
  return 1;
}

/* The value of upvalue i just read from 'at' (on top) into the function
** at fn. */
int dec_setupvalue (Dec *d, int fn, int i, const unsigned char *at) {
  if (d->L != NULL && lua_setupvalue(d->L, fn, i) == NULL) {
    d->receiver = 1;        /* (a closure from the cache) */
    return dec_fail(d, at, "function has fewer upvalues than the message");
  }
  return 0;
}

/* A Lua function: its bytecode, then its upvalues, recursively for the
** first RDEPTH levels, with a frame past (none when it has none: it is
** complete). */
static int decfunction (Dec *d, const unsigned char *at, int link) {
  const char *code;
  size_t len;
  int rc, nups, i, fn = 0, deep = (d->rdepth >= RDEPTH);
  if (d->flags & MARSHAL_NOCODE) {
    d->receiver = 1;
    return dec_fail(d, NULL,
                    "functions from another process are not accepted");
  }
  if ((rc = need(d, TRAILER)) != 0) return rc;
  nups = d->p[TRAILER - 1];
  d->p += TRAILER;
  if ((rc = getbytes(d, &code, &len)) != 0) return rc;
  if (!deep && (rc = enter(d, at)) != 0) return rc;
  if (d->L != NULL && (rc = pushclosure(d, at, code, len, nups)) == 0)
    fn = lua_gettop(d->L);
  if (rc == 0) rc = dec_addref(d, (unsigned)nups);
  if (deep)
    return (rc != 0 || nups == 0) ? rc : dec_deepfunction(d, at, link, nups);
  for (i = 1; i <= nups && rc == 0; i++) {
    const unsigned char *v = d->p;
    if (!dec_upref(d, fn, i, v, &rc) && (rc = dec_value(d, L_NONE)) == 0)
      rc = dec_setupvalue(d, fn, i, v);
    if (rc != 0) pathstep(d, 'u', fn, (uint64_t)i);
  }
  d->rdepth--;
  return rc;
}

/* ---- other values ---- */

/* A future or an executor: decoding gives it a reference of its own (the
** message keeps its own: it may be decoded again, and its owner lets it
** go with marshal_discard); a handle walk takes or drops the message's. */
static int dechandle (Dec *d, const unsigned char *at, int tag) {
  const MarshalHandles *ops = wire_handleops();
  int kind = (tag == T_FUTURE) ? MARSHAL_FUTURE : MARSHAL_EXECUTOR;
  void *h;
  int rc;
  if (!(d->flags & MARSHAL_LOCAL) || ops == NULL)
    return dec_fail(d, at, "%s handle in a message from another process",
                (tag == T_FUTURE) ? "future" : "executor");
  if ((rc = need(d, 8)) != 0) return rc;
  h = (void *)(uintptr_t)get64(d->p);
  d->p += 8;
  if (d->L != NULL) ops->push(d->L, kind, h);
  else if (d->walk == W_RETAIN) ops->retain(kind, h);
  else if (d->walk == W_RELEASE) ops->release(kind, h);
  return 0;
}

static int decword (Dec *d, int tag) {
  uint64_t u;
  lua_Number x;
  int rc = need(d, 8);
  if (rc != 0) return rc;
  u = get64(d->p);
  d->p += 8;
  if (d->L == NULL) return 0;
  if (tag == T_INT) lua_pushinteger(d->L, dec_u2i(u));
  else {
    memcpy(&x, &u, sizeof(x));
    lua_pushnumber(d->L, x);
  }
  return 0;
}

static int decstring (Dec *d, int tag) {
  const char *s;
  size_t len;
  int rc = getbytes(d, &s, &len);
  if (rc != 0) return rc;
  if (d->L != NULL) lua_pushlstring(d->L, s, len);
  return (tag == T_KSTR) ? dec_addref(d, K_KSTR) : 0;
}

/* One value: a leaf (decoding: pushed), or a container made and its frame
** opened ('link': where it hangs). */
int dec_value (Dec *d, int link) {
  lua_State *L = d->L;
  const unsigned char *at = d->p;
  int tag;
  if (d->p >= d->end) return dec_fail(d, at, "truncated message");
  switch (tag = *d->p++) {
    case T_NIL: if (L) lua_pushnil(L); return 0;
    case T_FALSE: if (L) lua_pushboolean(L, 0); return 0;
    case T_TRUE: if (L) lua_pushboolean(L, 1); return 0;
    case T_INT: case T_FLOAT: return decword(d, tag);
    case T_STR: case T_KSTR: return decstring(d, tag);
    case T_TABLE: return dectable(d, at, link);
    case T_REF: return decref(d, at);
    case T_FUNC: return decfunction(d, at, link);
    case T_MODULE: return decmodule(d, at);
    case T_FIELD: return decfield(d, at);
    case T_FUTURE: case T_EXECUTOR: return dechandle(d, at, tag);
    default: return dec_fail(d, at, "bad tag 0x%02x", (unsigned)tag);
  }
}

/* One value of the message, whole: the frames it opens, walked to the
** end. */
static inline int walkvalue (Dec *d) {
  return dec_value(d, L_NONE);
}

/* Magic, version and value count. */
static int decheader (Dec *d, uint64_t *n) {
  int rc;
  if (dec_rem(d) < 4) return dec_fail(d, d->end, "truncated message");
  if (memcmp(d->p, MAGIC, 3) != 0)
    return dec_fail(d, NULL, "not a cfut message (bad magic)");
  if ((d->p[3] & ~(WIRE_HANDLES | WIRE_GLOBALS)) != WIRE_VERSION)
    return dec_fail(d, NULL, "unsupported wire version %u", (unsigned)d->p[3]);
  if ((d->p[3] & WIRE_HANDLES) && !(d->flags & MARSHAL_LOCAL))
    return dec_fail(d, NULL, "handles in a message from another process");
  if ((d->p[3] & WIRE_GLOBALS) && !(d->flags & MARSHAL_GLOBALS))
    return dec_fail(d, NULL, "globals in a message that is not a task");
  d->p += 4;
  if ((rc = getvarint(d, n)) != 0) return rc;
  if (*n > dec_rem(d) || *n > INT_MAX / 2)
    return dec_fail(d, d->start + 4, "value count exceeds the message");
  if (d->L != NULL && !lua_checkstack(d->L, (int)*n + 8)) {
    d->receiver = 1;
    return dec_fail(d, d->start + 4, "too many values for the Lua stack");
  }
  return 0;
}

/* The header, the values (and the table of globals the header
** announces: one more value on the stack) and nothing after them. */
static int walkall (Dec *d, uint64_t *n) {
  uint64_t i;
  int rc = decheader(d, n);
  for (i = 0; i < *n && rc == 0; i++) {
    d->argno = (int)i + 1;
    rc = walkvalue(d);
  }
  if (rc == 0 && (d->start[3] & WIRE_GLOBALS)) {
    d->argno = 0;
    if (d->p >= d->end || *d->p != T_TABLE)
      rc = dec_fail(d, d->p, "the globals are not a table");
    else rc = walkvalue(d);
  }
  if (rc == 0 && d->p != d->end)
    rc = dec_fail(d, d->p, "trailing bytes after the last value");
  dec_freeframes(d);
  return rc;
}

static void initdec (Dec *d, lua_State *L, const char *data, size_t len,
                     int flags, int walk, char *err, size_t errlen) {
  memset(d, 0, offsetof(Dec, small));   /* (the frames need no zeros) */
  d->L = L;
  d->start = d->p = (const unsigned char *)data;
  d->end = d->start + len;
  d->flags = flags;
  d->walk = walk;
  d->hints = len;
  d->fr = d->small;
  d->cap = SMALLFRAMES;
  d->err = err;
  d->errlen = err != NULL ? errlen : 0;
  if (d->errlen > 0) err[0] = '\0';
  wpath_init(&d->path);
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
  int rc;
  d->refs = base + 1; d->loads = base + 2; d->frslot = base + 3;
  if (!lua_checkstack(L, 3 + 8 + STACKSTEP)) {
    d->receiver = 1;
    return dec_fail(d, NULL, "Lua stack overflow");
  }
  lua_pushnil(L);   /* the three slots */
  lua_pushnil(L);
  lua_pushnil(L);
  if ((rc = walkall(d, n)) != 0) {
    lua_settop(L, base);
    return rc;
  }
  lua_rotate(L, base + 1, -3);   /* the slots above the values */
  lua_pop(L, 3);
  return 0;
}

/* decodeall run protected, for a big message decoded with the collector
** stopped (so that a memory error cannot leave it stopped). */
static int pdecode (lua_State *L) {
  Dec *d = (Dec *)lua_touserdata(L, 1);
  lua_settop(L, 0);
  d->rc = decodeall(d, 0, &d->n);
  return d->rc == 0 ? lua_gettop(L) : 0;    /* (and the globals) */
}

/* Messages this large are decoded with the collector stopped: it would
** otherwise walk the growing result again and again (about a sixth of the
** time of a 100 000-record table). */
#define BIGMESSAGE (1u << 20)

int wire_decode (lua_State *L, const char *data, size_t len, int flags,
                 const char *what, char *err, size_t errlen, int *receiver) {
  Dec d;
  uint64_t n = 0;
  int base = lua_gettop(L), rc;
  initdec(&d, L, data, len, flags, W_DECODE, err, errlen);
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
  if (receiver != NULL) *receiver = (rc != 0 && d.receiver);
  if (rc != 0 && d.path.n > 0 && d.argno > 0 && d.errlen > 0) {
    char msg[256];     /* the path, as the sending side names it (and the
                          first line of the failure, in its parentheses) */
    size_t m = strcspn(err, "\n");
    while (m > 0 && err[m - 1] == ':') m--;
    snprintf(msg, sizeof(msg), "%.*s", (int)m, err);
    wpath_format(&d.path, what, d.argno, msg, err, errlen);
  }
  if (rc != 0) return CFUT_EBADMSG;
  if ((unsigned char)data[3] & WIRE_GLOBALS) {   /* (checked: a table) */
    globals_install(L, -1);
    lua_pop(L, 1);
  }
  return lua_gettop(L) - base;
}

int marshal_decode (lua_State *L, const char *data, size_t len, int flags,
                    const char *what, char *err, size_t errlen) {
  return wire_decode(L, data, len, flags, what, err, errlen, NULL);
}

int wire_check (const char *data, size_t len, int flags, char *err,
                size_t errlen) {
  Dec d;
  uint64_t n;
  uint16_t kinds[64];
  int rc;
  initdec(&d, NULL, data, len, flags & (MARSHAL_NOCODE | MARSHAL_GLOBALS),
          W_CHECK, err,
          errlen);
  d.kinds = kinds;
  d.kcap = sizeof(kinds) / sizeof(kinds[0]);
  rc = walkall(&d, &n);
  if (d.kheap) free(d.kinds);
  return rc;
}

int marshal_check (const char *data, size_t len, char *err, size_t errlen) {
  return wire_check(data, len, 0, err, errlen);
}

/* Take (retain) or drop one reference per handle in a message of this
** process; stops quietly where the bytes stop making sense. */
void wire_walkhandles (const char *data, size_t len, int retain) {
  Dec d;
  uint64_t n;
  /* Only a message marked as holding handles has any to walk. */
  if (len < 4 || ((unsigned char)data[3] & ~WIRE_GLOBALS)
                  != (WIRE_VERSION | WIRE_HANDLES))
    return;
  initdec(&d, NULL, data, len, MARSHAL_LOCAL | MARSHAL_GLOBALS,
          retain ? W_RETAIN : W_RELEASE, NULL, 0);
  (void)walkall(&d, &n);
}

void marshal_discard (const char *data, size_t len) {
  wire_walkhandles(data, len, 0);
}

/* }====================================================== */
