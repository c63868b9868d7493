/*
** marshal.c: Lua values -> bytes, the encoding side of cfut's one wire
** format (docs/wire.md; the decoder is unmarshal.c).  The encoder walks
** the values depth first and numbers tables and Lua functions, so that
** shared ones and cycles arrive shared.  It never raises: it returns
** CFUT_E* codes.  Its few Lua allocations (the module-name table, the
** dumps of functions) run protected, so a memory error is CFUT_ENOMEM too.
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
#include "globals.h"
#include "marshal.h"
#include "mnames.h"
#include "seenmap.h"
#include "wire.h"
#include "wpath.h"
#include "bigmem.h"
#include "encoder.h"


/* Registry keys (only their addresses matter) */
static char DUMPS;      /* Lua function -> its dump (TRAILER) */


/*
** {======================================================
** Buffers and wire primitives
** =======================================================
*/

void mbuf_init (MBuf *b) {
  b->data = NULL;
  b->len = b->cap = 0;
}

int mbuf_reserve (MBuf *b, size_t extra) {
  size_t need, cap;
  char *p;
  if (extra <= b->cap - b->len) return 0;
  if (extra > SIZE_MAX - b->len) return CFUT_ENOMEM;
  need = b->len + extra;
  cap = (b->cap > 0) ? b->cap : 64;
  while (cap < need)
    cap = (cap > SIZE_MAX / 2) ? need : cap * 2;
  p = realloc(b->data, cap);
  if (p == NULL) return CFUT_ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

int mbuf_add (MBuf *b, const void *p, size_t n) {
  if (mbuf_reserve(b, n) != 0) return CFUT_ENOMEM;
  if (n > 0) memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

void mbuf_free (MBuf *b) {
  free(b->data);
  mbuf_init(b);
}

char *mbuf_steal (MBuf *b, size_t *len) {
  char *data = b->data;
  if (len != NULL) *len = b->len;
  mbuf_init(b);
  return data;
}





/* A tag and a fixed 8-byte little-endian word. */
static int putword (MBuf *b, int tag, uint64_t v) {
  unsigned char *p = enc_room(b, 9);
  if (p == NULL) return CFUT_ENOMEM;
  p[0] = (unsigned char)tag;
  put64(p + 1, v);
  b->len += 9;
  return 0;
}

/* A tag (none if < 0), a varint length and the bytes. */
static int putstr (MBuf *b, int tag, const char *s, size_t len) {
  unsigned char *p;
  size_t n = 0;
  if (len > SIZE_MAX - 16 || (p = enc_room(b, len + 1 + MAXVARINT)) == NULL)
    return CFUT_ENOMEM;
  if (tag >= 0) p[n++] = (unsigned char)tag;
  n += putvarint(p + n, len);
  memcpy(p + n, s, len);
  b->len += n + len;
  return 0;
}

/* }====================================================== */


/*
** {======================================================
** Encoder
** =======================================================
*/

/* The first RDEPTH levels are walked here, recursively (the fastest way,
** and ordinary values never go further); deeper tables and functions are
** frames of a stack in heap memory (mdeep.c). */


int enc_unsendable (Enc *e, int code, const char *desc) {
  snprintf(e->desc, sizeof(e->desc), "%s", desc);
  return code;
}

/* The sender's globals table (fetched once per call). */
static const void *globals (Enc *e) {
  if (e->globals == NULL) {
    lua_rawgeti(e->L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    e->globals = lua_topointer(e->L, -1);
    lua_pop(e->L, 1);
  }
  return e->globals;
}

/* Number the table or Lua function at idx, as its decoder will; if it has
** a number already, write a reference to it instead and return 1. */
static int seen (Enc *e, const void *p, int *rc) {
  lua_Integer ref = pmap_claim(&e->seen, p, e->nrefs + 1);
  if (ref == 0) {
    e->nrefs++;
    return 0;
  }
  if (ref < 0) {
    *rc = CFUT_ENOMEM;
    return 1;
  }
  *rc = enc_putvar(e->b, T_REF, (uint64_t)ref);
  return 1;
}


/* One level deeper in the recursive walk, keeping the Lua stack roomy. */
static int enter (Enc *e) {
  if ((e->rdepth & 3) == 0 && !lua_checkstack(e->L, STACKSTEP))
    return CFUT_ENOMEM;
  e->rdepth++;
  return 0;
}


/* ---- tables ---- */

/* Write the two element counts into the placeholder bytes at 'at'+1,
** moving the contents if they need more than one byte each. */
int enc_patchcounts (Enc *e, size_t at, uint64_t narr, uint64_t nhash) {
  size_t extra = (size_t)(varintlen(narr) + varintlen(nhash) - 2);
  unsigned char *p;
  if (extra > 0) {
    if (enc_room(e->b, extra) == NULL) return CFUT_ENOMEM;
    p = (unsigned char *)e->b->data + at + 1;
    memmove(p + 2 + extra, p + 2, e->b->len - (at + 3));
    e->b->len += extra;
  }
  p = (unsigned char *)e->b->data + at + 1;
  p += putvarint(p, narr);
  putvarint(p, nhash);
  return 0;
}

/* A string key: numbered like a table, so that a key met again (the
** fields of many records) is a short reference, and the receiver does not
** intern it again. */
int enc_key (Enc *e, int k) {
  size_t len;
  const char *s = lua_tolstring(e->L, k, &len);
  lua_Integer ref;
  if ((ref = pmap_claim(&e->seen, s, e->nrefs + 1)) != 0)
    return ref < 0 ? CFUT_ENOMEM : enc_putvar(e->b, T_REF, (uint64_t)ref);
  e->nrefs++;
  return putstr(e->b, T_KSTR, s, len);
}

/* Encode one entry of a traversal (key at k, value at k+1): the run of
** keys 1, 2, 3... that starts the traversal is the array part. */
static int encentry (Enc *e, int k, uint64_t *narr, uint64_t *nhash) {
  lua_State *L = e->L;
  int rc;
  if (*nhash == 0 && lua_isinteger(L, k)
      && lua_tointeger(L, k) == (lua_Integer)*narr + 1) {
    (*narr)++;
  }
  else {
    (*nhash)++;
    rc = (lua_type(L, k) == LUA_TSTRING) ? enc_key(e, k) : enc_value(e, k);
    if (rc != 0) {
      wpath_add(&e->path, 'k', NULL, 0, NULL);
      return rc;
    }
  }
  if ((rc = enc_value(e, k + 1)) != 0) wpath_add(&e->path, 'f', e->L, k, NULL);
  return rc;
}

/* Metatable of the table at idx, or nil. */
static int encmeta (Enc *e, int idx) {
  int rc;
  if (!lua_getmetatable(e->L, idx)) return enc_puttag(e->b, T_NIL);
  rc = enc_value(e, lua_gettop(e->L));
  lua_pop(e->L, 1);
  if (rc != 0) wpath_add(&e->path, 'm', NULL, 0, NULL);
  return rc;
}

/* A table met for the first time: tag, counts, entries, metatable;
** recursively for the first RDEPTH levels (the fast walk of ordinary
** values), with frames past. */
static int newtable (Enc *e, int idx) {
  lua_State *L = e->L;
  size_t at = e->b->len;
  uint64_t narr = 0, nhash = 0;
  int rc, k;
  if ((rc = enc_putvar(e->b, T_TABLE, 0)) != 0 || (rc = enc_puttag(e->b, 0)) != 0)
    return rc;
  if (e->rdepth >= RDEPTH) return enc_deeptable(e, idx, at);
  if ((rc = enter(e)) != 0) return rc;
  k = lua_gettop(L) + 1;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    rc = encentry(e, k, &narr, &nhash);
    lua_pop(L, 1);
    if (rc != 0) {
      lua_pop(L, 1);
      goto out;
    }
  }
  if ((rc = enc_patchcounts(e, at, narr, nhash)) == 0) rc = encmeta(e, idx);
out:
  e->rdepth--;
  return rc;
}

/* Write the name of the value at idx (address p): 0, 1 if it has none,
** or CFUT_ENOMEM. */
static int encname (Enc *e, int idx, const void *p) {
  const char *s;
  size_t len;
  int rc = names_find(e->L, &e->names, idx, p, &s, &len);
  return rc != 0 ? rc : mbuf_add(e->b, s, len);
}

static int enctable (Enc *e, int idx) {
  const void *p = lua_topointer(e->L, idx);
  int rc;
  if (p == globals(e)) return mbuf_add(e->b, GNAME, sizeof(GNAME));
  if ((rc = encname(e, idx, p)) != 1 || seen(e, p, &rc)) return rc;
  return newtable(e, idx);
}


/* ---- functions ---- */

static atomic_ullong fncounter;
static uint64_t fnsalt;
static pthread_once_t saltonce = PTHREAD_ONCE_INIT;

/* A per-process random offset for function ids, so ids from different
** processes do not meet in one receiver's cache. */
static void initsalt (void) {
  struct timespec ts;
  uint64_t x;
  clock_gettime(CLOCK_REALTIME, &ts);
  x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30)
      ^ ((uint64_t)getpid() << 16) ^ (uint64_t)(uintptr_t)&ts;
  x += 0x9e3779b97f4a7c15ULL;   /* splitmix64 finaliser */
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  fnsalt = x ^ (x >> 31);
}

static uint64_t newid (void) {
  pthread_once(&saltonce, initsalt);
  return fnsalt + atomic_fetch_add(&fncounter, 1) + 1;
}



typedef struct Dump {
  luaL_Buffer b;
  int init;
  uint64_t hash;
} Dump;

/* lua_dump's writer: the buffer box goes above the function. */
static int writer (lua_State *L, const void *p, size_t size, void *ud) {
  Dump *d = (Dump *)ud;
  if (!d->init) {
    d->init = 1;
    luaL_buffinit(L, &d->b);
  }
  d->hash = fnv(d->hash, p, size);
  luaL_addlstring(&d->b, (const char *)p, size);
  return 0;
}

/* (fn, dumps): dump fn, store DUMPS[fn] = "bytecode id hash nups" and
** return it. */
static int pdump (lua_State *L) {
  lua_Debug ar;
  Dump d;
  unsigned char tail[TRAILER];
  lua_settop(L, 2);
  lua_pushvalue(L, 1);
  lua_getinfo(L, ">u", &ar);    /* pops the function */
  tail[16] = ar.nups;
  d.hash = fnv(FNVSEED, &tail[16], 1);
  d.init = 0;
  lua_pushvalue(L, 1);          /* lua_dump takes it from the top */
  lua_dump(L, writer, &d, 0);   /* with debug info: file:line survive */
  writer(L, "", 0, &d);         /* (starts the buffer if nothing came) */
  put64(tail, newid());
  put64(tail + 8, d.hash);
  luaL_addlstring(&d.b, (const char *)tail, TRAILER);
  luaL_pushresult(&d.b);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, -2);
  lua_rawset(L, 2);
  return 1;
}

/* (): the DUMPS table (weak keys: it never keeps a function). */
static int pdumps (lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &DUMPS) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 8);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &DUMPS);
  }
  return 1;
}

/* Push the cached dump of the Lua function at idx, made now if there is
** none.  The Lua allocations run protected: a memory error becomes
** CFUT_ENOMEM (and nothing is pushed). */
static int pushdump (Enc *e, int idx) {
  lua_State *L = e->L;
  if (lua_isnil(L, e->dumps)) {
    /* Made once per state: look it up unprotected first (a raw get of a
    ** light userdata key allocates nothing); a protected call costs
    ** about 400 instructions, a tenth of a W1 submit. */
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &DUMPS) != LUA_TTABLE) {
      lua_pop(L, 1);
      lua_pushcfunction(L, pdumps);
      if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
        lua_pop(L, 1);
        return CFUT_ENOMEM;
      }
    }
    lua_replace(L, e->dumps);
  }
  lua_pushvalue(L, idx);
  if (lua_rawget(L, e->dumps) == LUA_TSTRING) return 0;
  lua_pop(L, 1);
  lua_pushcfunction(L, pdump);
  lua_pushvalue(L, idx);
  lua_pushvalue(L, e->dumps);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
    lua_pop(L, 1);
    return CFUT_ENOMEM;
  }
  return 0;
}

/* Write tag, id, hash, upvalue count and bytecode of the Lua function at
** idx (dumped once per function object). */
static int encproto (Enc *e, int idx, int *nups) {
  lua_State *L = e->L;
  const char *s;
  size_t len, n;
  unsigned char *p;
  int rc;
  if ((rc = pushdump(e, idx)) != 0) return rc;
  s = lua_tolstring(L, -1, &len);
  len -= TRAILER;
  *nups = (unsigned char)s[len + 16];
  if ((p = enc_room(e->b, len + 1 + TRAILER + MAXVARINT)) == NULL) {
    lua_pop(L, 1);
    return CFUT_ENOMEM;
  }
  p[0] = T_FUNC;
  memcpy(p + 1, s + len, TRAILER);
  n = 1 + TRAILER + (size_t)putvarint(p + 1 + TRAILER, len);
  memcpy(p + n, s, len);
  e->b->len += n + len;
  lua_pop(L, 1);
  return 0;
}

/* The function at f reads its globals from the table at env (its _ENV):
** note the names, to be copied after the values (enc_globals, mglobals.c). */
static int noteglobals (Enc *e, int f, int env) {
  lua_State *L = e->L;
  size_t len;
  const char *dump;
  int rc;
  lua_pushvalue(L, f);
  if (lua_rawget(L, e->dumps) != LUA_TSTRING) {   /* (encproto made it) */
    lua_pop(L, 1);
    return 0;
  }
  dump = lua_tolstring(L, -1, &len);
  len -= TRAILER;             /* then id, hash (of nups and bytecode) */
  rc = globals_note(L, dump, len,
                    get64((const unsigned char *)dump + len + 8), env,
                    e->gslot, e->garg);
  lua_pop(L, 1);
  e->gpending = !lua_isnil(L, e->gslot);
  return rc;
}

/* Upvalue i (its value on top, its name 'name') of the function at f,
** numbered 'ref'.  The defining chunk's _ENV (whatever table it is: a
** test runner gives each file its own) becomes the receiver's globals.
** Upvalues shared with a function written before become references. */
int enc_upvalue (Enc *e, int f, lua_Integer ref, int i,
                       const char *name) {
  lua_State *L = e->L;
  int v = lua_gettop(L);
  lua_Integer where;
  void *id;
  if (strcmp(name, "_ENV") == 0 ||
      (lua_type(L, v) == LUA_TTABLE && lua_topointer(L, v) == globals(e))) {
    int rc;
    if ((e->flags & MARSHAL_GLOBALS) && strcmp(name, "_ENV") == 0
        && lua_type(L, v) == LUA_TTABLE && (rc = noteglobals(e, f, v)) != 0)
      return rc;
    return mbuf_add(e->b, GNAME, sizeof(GNAME));
  }
  id = lua_upvalueid(L, f, i);
  if ((where = pmap_claim(&e->seen, id, ref * 256 + i)) != 0) {
    unsigned char *p = enc_room(e->b, 2 + MAXVARINT);
    if (where < 0) return CFUT_ENOMEM;
    if (p == NULL) return CFUT_ENOMEM;
    p[0] = T_UPREF;
    p += 1 + putvarint(p + 1, (uint64_t)(where >> 8));
    *p++ = (unsigned char)(where & 0xff);
    e->b->len = (size_t)(p - (unsigned char *)e->b->data);
    return 0;
  }
  return enc_value(e, v);
}

/* A C function travels as the name a loaded module holds it under. */
static int enccfunction (Enc *e, int idx) {
  const void *p = lua_topointer(e->L, idx);
  int rc = encname(e, idx, p);
  if (rc == 1 && !e->rebuilt) {    /* maybe a module loaded since */
    e->rebuilt = 1;
    if ((rc = names_load(e->L, &e->names, 1)) != 0) return rc;
    rc = encname(e, idx, p);
  }
  if (rc == 1)
    return enc_unsendable(e, CFUT_ESEND,
                          "C function that no loaded module holds");
  return rc;
}

static int encupvalues (Enc *e, int f, lua_Integer ref, int nups) {
  int i, rc = 0;
  for (i = 1; i <= nups && rc == 0; i++) {
    const char *name = lua_getupvalue(e->L, f, i);
    if (name == NULL) return enc_unsendable(e, CFUT_ESEND, "bad upvalue");
    if ((rc = enc_upvalue(e, f, ref, i, name)) != 0) {
      char num[16];
      if (name[0] == '\0' || name[0] == '(') {
        snprintf(num, sizeof(num), "#%d", i);
        name = num;
      }
      wpath_add(&e->path, 'u', NULL, 0, name);
    }
    lua_pop(e->L, 1);
  }
  return rc;
}

/* A Lua function: its bytecode (encproto), then its upvalues,
** recursively for the first RDEPTH levels, with a frame past. */
static int encfunction (Enc *e, int idx) {
  lua_Integer ref;
  int rc, nups;
  if (lua_iscfunction(e->L, idx)) return enccfunction(e, idx);
  if (seen(e, lua_topointer(e->L, idx), &rc)) return rc;
  ref = e->nrefs;
  if ((rc = encproto(e, idx, &nups)) != 0 || nups == 0) return rc;
  if (e->rdepth < RDEPTH) {
    if ((rc = enter(e)) != 0) return rc;
    rc = encupvalues(e, idx, ref, nups);
    e->rdepth--;
    return rc;
  }
  return enc_deepfunction(e, idx, ref, nups);
}


/* ---- other values ---- */

/* A handle (through the binding's operations), or a userdata that cannot
** be sent. */
static int encuserdata (Enc *e, int idx) {
  lua_State *L = e->L;
  const MarshalHandles *ops = wire_handleops();
  const char *why = NULL;
  void *h;
  char desc[64];
  int t, kind;
  if (ops != NULL && (kind = ops->tohandle(L, idx, e->flags & MARSHAL_LOCAL,
                                          &h, &why)) != 0) {
    if (why != NULL) return enc_unsendable(e, CFUT_ESEND, why);
    e->nhandles++;
    return putword(e->b, kind == MARSHAL_FUTURE ? T_FUTURE : T_EXECUTOR,
                   (uint64_t)(uintptr_t)h);
  }
  t = luaL_getmetafield(L, idx, "__name");
  if (t == LUA_TSTRING)
    snprintf(desc, sizeof(desc), "userdata %.40s", lua_tostring(L, -1));
  else
    snprintf(desc, sizeof(desc), "userdata");
  if (t != LUA_TNIL) lua_pop(L, 1);
  return enc_unsendable(e, CFUT_ESEND, desc);
}

static int encnumber (Enc *e, int idx) {
  lua_Number x;
  uint64_t u;
  if (lua_isinteger(e->L, idx))
    return putword(e->b, T_INT, (uint64_t)lua_tointeger(e->L, idx));
  x = lua_tonumber(e->L, idx);
  memcpy(&u, &x, sizeof(u));    /* exact bits: nan, inf, -0.0 */
  return putword(e->b, T_FLOAT, u);
}

int enc_value (Enc *e, int idx) {
  lua_State *L = e->L;
  size_t len;
  const char *s;
  switch (lua_type(L, idx)) {
    case LUA_TNIL: return enc_puttag(e->b, T_NIL);
    case LUA_TBOOLEAN:
      return enc_puttag(e->b, lua_toboolean(L, idx) ? T_TRUE : T_FALSE);
    case LUA_TNUMBER: return encnumber(e, idx);
    case LUA_TSTRING:
      s = lua_tolstring(L, idx, &len);
      return putstr(e->b, T_STR, s, len);
    case LUA_TTABLE: return enctable(e, idx);
    case LUA_TFUNCTION: return encfunction(e, idx);
    case LUA_TUSERDATA: return encuserdata(e, idx);
    case LUA_TLIGHTUSERDATA:
      return enc_unsendable(e, CFUT_ESEND, "light userdata");
    default: return enc_unsendable(e, CFUT_ESEND, "coroutine");
  }
}


/* }====================================================== */


/*
** {======================================================
** Public functions
** =======================================================
*/

int marshal_encode (lua_State *L, int first, int n, int flags,
                    const char *what, int argbase, MBuf *out,
                    char *err, size_t errlen) {
  Enc e;
  size_t start = out->len;
  int fresh = (out->data == NULL);
  int base = lua_gettop(L), i, rc = 0, gl = 0;
  unsigned char head[4 + MAXVARINT];
  first = lua_absindex(L, first);
  if (!lua_checkstack(L, 4 + 4 + STACKSTEP)) rc = CFUT_ENOMEM;
  memcpy(head, MAGIC, 3);
  head[3] = WIRE_VERSION;
  if (rc == 0)
    rc = mbuf_add(out, head, 4 + (size_t)putvarint(head + 4, (uint64_t)n));
  if (rc != 0) {
    if (errlen > 0) snprintf(err, errlen, "not enough memory");
    return rc;
  }
  e.L = L; e.b = out; e.flags = flags;
  lua_pushnil(L); lua_pushnil(L);     /* the five slots */
  lua_pushnil(L); lua_pushnil(L); lua_pushnil(L);
  e.names.slot = base + 1; e.names.filter = NULL; e.dumps = base + 2;
  e.spill = base + 3; e.chunk = base + 4; e.gslot = base + 5;
  e.gpending = 0; e.lvl0 = 0; e.rdepth = 0;
  e.nchunks = 0; e.chunkno = (size_t)-1;
  pmap_init(&e.seen);
  e.nrefs = 0; e.nhandles = 0; e.rebuilt = 0;
  e.globals = NULL; wpath_init(&e.path);
  e.fr = e.small; e.cap = SMALLFRAMES; e.depth = 0;
  e.walking = 0; e.tailat = 0; e.gh = NULL; e.ngh = e.ghcap = 0;
  for (i = 0; i < n && rc == 0; i++) {
    e.garg = i + 1;
    rc = enc_value(&e, first + i);
  }
  if (rc == 0 && e.gpending) {              /* globals to copy */
    gl = 1;
    if ((rc = enc_globals(&e, &i)) == 1) gl = rc = 0;
  }
  if (e.fr != e.small) big_free(e.fr, e.cap * sizeof(*e.fr));
  if (e.gh != NULL) big_free(e.gh, e.ghcap * sizeof(*e.gh));
  pmap_free(&e.seen);
  lua_settop(L, base);
  if (rc != 0) {
    if (fresh) mbuf_free(out);    /* exactly as it was: nothing to free */
    else out->len = start;
    if (rc == CFUT_ENOMEM) snprintf(err, errlen, "not enough memory");
    else wpath_format(&e.path, what, argbase + i - 1, e.desc, err, errlen);
    return rc;
  }
  if (gl) out->data[start + 3] |= (char)WIRE_GLOBALS;
  if (e.nhandles > 0) {       /* mark it, so that discard needs no walk */
    out->data[start + 3] |= (char)WIRE_HANDLES;
    wire_walkhandles(out->data + start, out->len - start, 1);
  }
  return 0;
}

int marshal_error (MBuf *out, const char *cls, const char *msg) {
  static const char head[] = { '\x1b', 'C', 'F', WIRE_VERSION, 1,
                               T_TABLE, 0, 2 };
  size_t start = out->len;
  const char *mod = CFUT_MODNAME;
  if (msg == NULL) msg = "";
  if (mbuf_add(out, head, sizeof(head)) != 0
      || putstr(out, T_STR, "name", 4) != 0
      || putstr(out, T_STR, cls, strlen(cls)) != 0
      || putstr(out, T_STR, "message", 7) != 0
      || putstr(out, T_STR, msg, strlen(msg)) != 0
      || putstr(out, T_FIELD, mod, strlen(mod)) != 0
      || putstr(out, -1, cls, strlen(cls)) != 0) {
    out->len = start;
    return CFUT_ENOMEM;
  }
  return 0;
}

void marshal_resetnames (lua_State *L) {
  names_reset(L);
}

void marshal_freespare (void) {
  pmap_freespare();
}

/* }====================================================== */
