/*
** mglobals.c: the globals that travel with a task (docs/wire.md,
** "Globals"; API.md §3).  While the values are written, each Lua function
** whose bytecode reads globals notes its names (marshal.c, noteglobals);
** after the values, enc_globals writes one table of those names and the
** sender's values for them, each name once, by the marshaller's rules.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "encoder.h"
#include "globals.h"


/* Is the value at v (named 'name' in the sender's globals) one every
** worker has under that name by itself?  A C function whose wire name is
** _G.name (print, pairs...), or a standard library module that is the
** global of its own name (string, math...): then it need not travel. */
static int ownname (Enc *e, int v, const char *name, size_t n) {
  static const char *const std[] = { "coroutine", "debug", "io", "math",
    "os", "package", "string", "table", "utf8", NULL };
  lua_State *L = e->L;
  const char *s;
  size_t len;
  int i;
  if (!(lua_iscfunction(L, v) || lua_istable(L, v)) || n > 100
      || names_find(L, &e->names, v, lua_topointer(L, v), &s, &len))
    return 0;
  if (s[0] == T_FIELD)
    return len == 4 + n && s[1] == 2 && s[2] == '_' && s[3] == 'G'
           && (size_t)(unsigned char)s[4] == n && memcmp(s + 5, name, n) == 0;
  if (len != 2 + n || (size_t)(unsigned char)s[1] != n
      || memcmp(s + 2, name, n) != 0)
    return 0;
  for (i = 0; std[i] != NULL; i++)
    if (strlen(std[i]) == n && memcmp(std[i], name, n) == 0) return 1;
  return 0;
}

/* The names written so far (each once a message), an open-addressing
** set: a task may read thousands of globals, and a list made each
** message quadratic.  The strings stay alive in the pending list. */
typedef struct Written {
  struct WName { const char *s; size_t n; } *t;
  size_t len, mask;
} Written;

static size_t slotof (const Written *w, const char *s, size_t n) {
  size_t i = (size_t)fnv(FNVSEED, s, n) & w->mask;
  while (w->t[i].s != NULL
         && (w->t[i].n != n || (w->t[i].s != s && memcmp(w->t[i].s, s, n))))
    i = (i + 1) & w->mask;
  return i;
}

/* Add s[0..n) if it is not there yet: 1 if added, 0 if there, or
** CFUT_ENOMEM.  The set stays at most half full. */
static int newname (Written *w, const char *s, size_t n) {
  size_t i;
  if (2 * (w->len + 1) > (w->t == NULL ? 0 : w->mask + 1)) {
    Written g = { NULL, 0, w->t == NULL ? 15 : 2 * w->mask + 1 };
    if ((g.t = calloc(g.mask + 1, sizeof(*g.t))) == NULL) return CFUT_ENOMEM;
    for (i = 0; w->t != NULL && i <= w->mask; i++)
      if (w->t[i].s != NULL) g.t[slotof(&g, w->t[i].s, w->t[i].n)] = w->t[i];
    g.len = w->len;
    free(w->t);
    *w = g;
  }
  i = slotof(w, s, n);
  if (w->t[i].s != NULL) return 0;
  w->t[i].s = s;
  w->t[i].n = n;
  w->len++;
  return 1;
}

/* One global (name at k, the env to read it from at k-1): its value,
** unless it has none (nil is not sent) or every receiver has it by that
** name.  *count counts the entries written. */
static int encglobal (Enc *e, int k, uint64_t *count) {
  lua_State *L = e->L;
  size_t n;
  const char *name = lua_tolstring(L, k, &n);
  int rc, v = k + 1;
  rc = globals_fetch(L, k - 1, k);
  if (rc == 0 && !lua_isnil(L, v) && !ownname(e, v, name, n)) {
    (*count)++;
    if ((rc = enc_key(e, k)) == 0) rc = enc_value(e, v);
    if (rc != 0) wpath_add(&e->path, 'g', NULL, 0, name);
  }
  lua_pop(L, 1);
  return rc;
}

/* The names of one pending function (its names array at k, env at k+1),
** those not written yet. */
static int encnames (Enc *e, int k, Written *w, uint64_t *count) {
  lua_State *L = e->L;
  lua_Integer j, nn = (lua_Integer)lua_rawlen(L, k);
  int rc = 0;
  for (j = 1; rc == 0 && j <= nn; j++) {
    size_t len;
    const char *s;
    lua_rawgeti(L, k, j);
    s = lua_tolstring(L, -1, &len);
    if ((rc = newname(w, s, len)) == 1) rc = encglobal(e, k + 2, count);
    lua_pop(L, 1);
  }
  return rc;
}

/* The table of the globals (name -> value), while there are any: the
** values' own functions add theirs to the list as they are written. */
int enc_globals (Enc *e, int *argno) {
  lua_State *L = e->L;
  size_t at = e->b->len;
  uint64_t count = 0;
  lua_Integer i;
  Written w;
  int rc, k = lua_gettop(L) + 1;
  memset(&w, 0, sizeof(w));
  e->nrefs++;               /* numbered, as the decoder numbers a table */
  if ((rc = enc_putvar(e->b, T_TABLE, 0)) != 0 || (rc = enc_puttag(e->b, 0)) != 0)
    goto out;
  for (i = 1; rc == 0 && i <= (lua_Integer)lua_rawlen(L, e->gslot); i += 3) {
    lua_rawgeti(L, e->gslot, i);          /* names, */
    lua_rawgeti(L, e->gslot, i + 1);      /* where to read them, */
    lua_rawgeti(L, e->gslot, i + 2);      /* the value that brought them */
    e->garg = *argno = (int)lua_tointeger(L, k + 2);
    lua_pop(L, 1);
    rc = encnames(e, k, &w, &count);
    lua_pop(L, 2);
  }
  if (rc == 0 && count == 0) {            /* all nil: no table at all */
    e->b->len = at;
    e->nrefs--;
    rc = 1;
  }
  else if (rc == 0 && (rc = enc_patchcounts(e, at, 0, count)) == 0)
    rc = enc_puttag(e->b, T_NIL);             /* its metatable */
out:
  free(w.t);
  return rc;
}
