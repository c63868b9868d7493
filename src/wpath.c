/*
** wpath.c: naming the path to a value that cannot cross (wpath.h).
*/

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "wpath.h"

static WStep *slotof (WPath *p, size_t n) {
  return &p->step[n < WPATH_KEEP ? n
                  : WPATH_KEEP + (n - WPATH_KEEP) % WPATH_KEEP];
}

WStep *wpath_next (WPath *p, size_t total) {
  size_t n = p->n++;
  if (n >= WPATH_KEEP && n + WPATH_KEEP < total) return NULL;
  return slotof(p, n);
}

static int isident (const char *s, size_t len) {
  size_t i;
  if (len == 0 || len > WPATH_TEXT - 2 || (s[0] >= '0' && s[0] <= '9'))
    return 0;
  for (i = 0; i < len; i++) {
    char c = s[i];
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
          || (c >= '0' && c <= '9')))
      return 0;
  }
  return 1;
}

/* A string key as a path step: ["a b"], escaped and cut short. */
static void quotedstep (const char *s, size_t len, char *buf) {
  size_t i, n = 0;
  buf[n++] = '[';
  buf[n++] = '"';
  for (i = 0; i < len && n < WPATH_TEXT - 10; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\')
      n += (size_t)sprintf(buf + n, "\\%c", c);
    else if (c < 32 || c >= 127)
      n += (size_t)sprintf(buf + n, "\\%u", c);
    else
      buf[n++] = (char)c;
  }
  if (i < len) n += (size_t)sprintf(buf + n, "...");
  strcpy(buf + n, "\"]");
}

int wpath_keep (lua_State *L, int k, WKey *key) {
  key->type = (unsigned char)lua_type(L, k);
  key->isint = 0;
  switch (key->type) {
    case LUA_TSTRING:
      key->v.s = lua_tolstring(L, k, &key->len);
      return 0;
    case LUA_TNUMBER:
      if ((key->isint = (unsigned char)lua_isinteger(L, k)))
        key->v.i = lua_tointeger(L, k);
      else key->v.n = lua_tonumber(L, k);
      return 0;
    case LUA_TBOOLEAN:
      key->v.b = lua_toboolean(L, k);
      return 0;
    default:
      return -1;
  }
}

void wpath_keeptext (const WKey *key, char *buf) {
  switch (key->type) {
    case LUA_TSTRING:
      if (isident(key->v.s, key->len))
        snprintf(buf, WPATH_TEXT, ".%s", key->v.s);
      else quotedstep(key->v.s, key->len, buf);
      break;
    case LUA_TNUMBER:
      if (key->isint)
        snprintf(buf, WPATH_TEXT, "[" LUA_INTEGER_FMT "]", key->v.i);
      else snprintf(buf, WPATH_TEXT, "[%.14g]", (double)key->v.n);
      break;
    default:
      snprintf(buf, WPATH_TEXT, "[%s]", key->v.b ? "true" : "false");
  }
}

void wpath_keytext (lua_State *L, int k, char *buf) {
  WKey key;
  if (wpath_keep(L, k, &key) == 0) wpath_keeptext(&key, buf);
  else snprintf(buf, WPATH_TEXT, "[%s]", luaL_typename(L, k));
}

void wpath_add (WPath *p, int kind, lua_State *L, int k, const char *text) {
  WStep *g = slotof(p, p->n++);
  g->kind = (char)kind;
  if (kind == 'f') wpath_keytext(L, k, g->text);
  else snprintf(g->text, WPATH_TEXT, "%s", text ? text : "");
}

typedef struct Str { char *p; size_t size, len; } Str;

static void addf (Str *s, const char *fmt, ...) {
  va_list ap;
  int n;
  if (s->len + 1 >= s->size) return;
  va_start(ap, fmt);
  n = vsnprintf(s->p + s->len, s->size - s->len, fmt, ap);
  va_end(ap);
  if (n > 0)
    s->len = (s->len + (size_t)n < s->size) ? s->len + (size_t)n : s->size - 1;
}

/* Write one step; consecutive field steps form one 'a.b[3]'. */
static void addstep (Str *s, const WStep *g, int *infield, int *first,
                     int *dots) {
  const char *t = g->text;
  if (g->kind == 'f') {
    if (!*infield) addf(s, "%sfield '", *first ? "" : ", ");
    if ((!*infield || *dots) && t[0] == '.') t++;
    addf(s, "%s", t);
    *infield = 1;
  }
  else {
    if (*infield) addf(s, "'");
    addf(s, "%s", *first ? "" : ", ");
    if (g->kind == 'k') addf(s, "key");
    else if (g->kind == 'm') addf(s, "metatable");
    else if (g->kind == 'g') addf(s, "global '%s'", t);
    else addf(s, "upvalue '%s'", t);
    *infield = 0;
  }
  *first = *dots = 0;
}

void wpath_format (const WPath *p, const char *what, int argno,
                   const char *desc, char *err, size_t errlen) {
  Str s;
  size_t n;
  int infield = 0, first = 1, dots = 0;
  int cut = (p->n > 2 * WPATH_KEEP);
  if (err == NULL || errlen == 0) return;
  s.p = err; s.size = errlen; s.len = 0;
  err[0] = '\0';
  addf(&s, "%s #%d (", what ? what : "value", argno);
  for (n = p->n; n-- > 0;) {      /* from the outermost step in */
    if (cut && n >= WPATH_KEEP && n < p->n - WPATH_KEEP) {
      if (n == p->n - WPATH_KEEP - 1) {
        addf(&s, infield ? "..." : ", ...");
        dots = 1;
      }
      continue;
    }
    addstep(&s, slotof((WPath *)p, n), &infield, &first, &dots);
  }
  if (infield) addf(&s, "'");
  addf(&s, "%s%s)", first ? "" : ": ", desc);
}
