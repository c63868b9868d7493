/*
** undeep.c: the reader's walk past RDEPTH levels (unmarshal.h): the
** containers being read are frames of a stack in C memory instead of
** levels of C recursion, so nesting is bounded by memory alone.  The
** first WINDOW frames keep their container on the Lua stack under their
** children; deeper ones hang theirs in its place (a table element, a
** field's value, an upvalue) as soon as it is made, let it go and take it
** back by its number when the child is done; a key waits on the stack for
** its value, a metatable is set once complete.  So the Lua stack stays
** small at any depth.  The grammar's checks are unmarshal.c's.
*/

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "bigmem.h"
#include "errors.h"
#include "unmarshal.h"

#define WINDOW        256   /* frames whose container stays on the stack */

static int tablestep (Dec *d, DFrame *f);
static int funcstep (Dec *d, DFrame *f);

/* ---- the frame stack ---- */

/* Decoding, the frames past the first SMALLFRAMES are C memory that a
** box holds (a userdata in its slot, whose __gc frees it): a Lua memory
** error in the middle of a decoding leaks nothing.  The block is a
** bigmem.h one: from 2 MiB up its pages are huge, so a million levels
** (48 MB) fault in a few dozen times, not twelve thousand. */
typedef struct FrameBox { DFrame *fr; size_t size; } FrameBox;

static int boxgc (lua_State *L) {
  FrameBox *b = (FrameBox *)lua_touserdata(L, 1);
  big_free(b->fr, b->size);
  b->fr = NULL;
  return 0;
}

/* The box in its slot, made when there is none. */
static FrameBox *framebox (Dec *d) {
  lua_State *L = d->L;
  FrameBox *b;
  if (!lua_isnil(L, d->frslot))
    return (FrameBox *)lua_touserdata(L, d->frslot);
  b = (FrameBox *)lua_newuserdatauv(L, sizeof(*b), 0);
  b->fr = NULL;
  b->size = 0;
  if (luaL_newmetatable(L, "cfut.framebox")) {
    lua_pushcfunction(L, boxgc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  lua_replace(L, d->frslot);
  return b;
}

/* Twice the room for frames.  Every level takes bytes of the message, so
** more frames than bytes would be a broken walker. */
static int growframes (Dec *d, const unsigned char *at) {
  size_t cap = 2 * d->cap;
  FrameBox *b = (d->L != NULL) ? framebox(d) : NULL;
  DFrame *fr;
  if (d->depth >= (size_t)(d->end - d->start))
    return dec_fail(d, at, "nesting exceeds the message");
  fr = (cap > SIZE_MAX / sizeof(*fr)) ? NULL
       : (d->fr == d->small) ? big_alloc(cap * sizeof(*fr), 0)
       : big_resize(d->fr, d->cap * sizeof(*fr), cap * sizeof(*fr));
  if (fr == NULL) {
    d->receiver = 1;
    return dec_fail(d, at, "not enough memory for the nesting");
  }
  if (d->fr == d->small) memcpy(fr, d->fr, d->depth * sizeof(*fr));
  d->fr = fr;
  d->cap = cap;
  if (b != NULL) {
    b->fr = fr;
    b->size = cap * sizeof(*fr);
  }
  return 0;
}

/* Open a frame for the container just made (decoding: on top), which
** hangs as 'link' says; 'at' is where it starts.  Out of the window, the
** child takes its parent's place on the Lua stack. */
static int openframe (Dec *d, const unsigned char *at, int kind, int link,
                      lua_Integer ref) {
  lua_State *L = d->L;
  DFrame *f;
  int rc;
  if (d->depth == d->cap && (rc = growframes(d, at)) != 0) return rc;
  if (L != NULL && d->depth > WINDOW) {  /* the parent leaves the stack */
    DFrame *p = &d->fr[d->depth - 1];
    switch (link) {
      case L_ELEM:                  /* [t, child] */
        lua_pushvalue(L, -1);
        lua_rawseti(L, -3, (lua_Integer)p->i);
        break;
      case L_FIELD:                 /* [t, key, child] */
        lua_rotate(L, -2, 1);
        lua_pushvalue(L, -2);
        lua_rawset(L, -4);
        break;
      case L_UPVAL:                 /* [f, child] */
        lua_pushvalue(L, -1);
        if (lua_setupvalue(L, -3, (int)p->i) == NULL) {
          lua_pop(L, 1);
          d->receiver = 1;    /* (a closure from the cache) */
          return dec_fail(d, at,
                          "function has fewer upvalues than the message");
        }
        break;
      default: break;               /* L_KEY, L_META: when complete */
    }
    lua_replace(L, -2);
  }
  if (L != NULL && (d->depth & 7) == 0 && !lua_checkstack(L, 8 + STACKSTEP)) {
    d->receiver = 1;
    return dec_fail(d, at, "Lua stack overflow");
  }
  f = &d->fr[d->depth++];
  f->kind = (unsigned char)kind;
  f->step = S_ARRAY;
  f->link = (unsigned char)link;
  f->ref = ref;
  f->i = 0;
  return 0;
}

/* Close the top frame, its container on top: it stays there as a value of
** the message, or goes to its parent (under it on the stack, with the key
** of a field): as an element, a field's value, an upvalue, the pending
** key, the metatable.  Past the window, the parent comes back (by its
** number) under it, and the child hangs in its place already. */
static int closeframe (Dec *d) {
  lua_State *L = d->L;
  int link = d->fr[--d->depth].link;
  DFrame *p;
  if (L == NULL || d->depth == 0) return 0;
  p = &d->fr[d->depth - 1];
  if (d->depth > WINDOW) {
    dec_pushref(d, (uint64_t)p->ref);
    lua_insert(L, -2);
    if (link == L_META) lua_setmetatable(L, -2);
    else if (link != L_KEY) lua_pop(L, 1);
    return 0;
  }
  switch (link) {
    case L_ELEM: lua_rawseti(L, -2, (lua_Integer)p->i); break;
    case L_FIELD: lua_rawset(L, -3); break;
    case L_UPVAL:
      if (lua_setupvalue(L, -2, (int)p->i) == NULL) {
        lua_pop(L, 1);
        d->receiver = 1;    /* (a closure from the cache) */
        return dec_fail(d, NULL,
                        "function has fewer upvalues than the message");
      }
      break;
    case L_META: lua_setmetatable(L, -2); break;
    default: break;         /* L_KEY: the pending key */
  }
  return 0;
}


/* Walk the frames open to their end (the container the first one holds
** is then on top). */
static int drain (Dec *d) {
  int rc = 0;
  while (rc == 0 && d->depth > 0) {
    DFrame *f = &d->fr[d->depth - 1];
    rc = (f->kind == F_TABLE) ? tablestep(d, f) : funcstep(d, f);
  }
  return rc;
}

/* The key whose bytes start at 'at' (read already), as a field step's
** text. */
static void keytext (Dec *d, const unsigned char *at, char *buf) {
  lua_State *L = d->L;
  uint64_t n;
  lua_Number x;
  strcpy(buf, "[?]");
  if (!lua_checkstack(L, 1)) return;
  switch (*at) {
    case T_STR: case T_KSTR:
      n = dec_rereadvarint(at + 1);
      lua_pushlstring(L, (const char *)at + 1 + varintlen(n), (size_t)n);
      break;
    case T_REF: dec_pushref(d, dec_rereadvarint(at + 1)); break;
    case T_INT: lua_pushinteger(L, dec_u2i(get64(at + 1))); break;
    case T_FLOAT:
      n = get64(at + 1);
      memcpy(&x, &n, sizeof(x));
      lua_pushnumber(L, x);
      break;
    case T_TRUE: case T_FALSE: lua_pushboolean(L, *at == T_TRUE); break;
    default: return;
  }
  wpath_keytext(L, -1, buf);
  lua_pop(L, 1);
}

/* After a failure of the receiving state in the frames: the steps of the
** path that they hold, innermost first (only those a message shows). */
__attribute__((noinline))
static void framepath (Dec *d) {
  size_t k, end = d->path.n + d->depth;
  for (k = d->depth; k-- > 0;) {
    DFrame *f = &d->fr[k];
    WStep *g = wpath_next(&d->path, end);
    if (g == NULL) continue;    /* (cut from the middle) */
    g->kind = 'f';
    g->text[0] = '\0';
    if (f->kind == F_FUNC) {
      g->kind = 'u';
      snprintf(g->text, WPATH_TEXT, "#%d", (int)f->i);
    }
    else if (f->step == S_ARRAY)
      snprintf(g->text, WPATH_TEXT, "[%llu]", (unsigned long long)f->i);
    else if (f->step == S_VALUE) g->kind = 'k';
    else if (f->step == S_DONE) g->kind = 'm';
    else keytext(d, f->key, g->text);
  }
}

/* After a frame opened: the first one walks them all now (a later one is
** walked by the loop that opened it). */
static int deepwalk (Dec *d) {
  int rc;
  if (d->depth > 1) return 0;
  if ((rc = drain(d)) != 0 && d->L != NULL && d->receiver) framepath(d);
  return rc;
}

/* A table past RDEPTH levels: a frame for its contents (walked at once
** when it is the first frame). */
int dec_deeptable (Dec *d, const unsigned char *at, int link,
                      uint64_t narr, uint64_t nhash) {
  int rc;
  if (d->L != NULL)
    lua_createtable(d->L, (int)dec_hint(d, narr), (int)dec_hint(d, nhash));
  if ((rc = dec_addref(d, K_TABLE)) != 0
      || (rc = openframe(d, at, F_TABLE, link, d->nrefs)) != 0)
    return rc;
  d->fr[d->depth - 1].narr = narr;
  d->fr[d->depth - 1].nhash = nhash;
  return deepwalk(d);
}

/* The next steps of the table frame f (its container on top, under the
** pending key in S_VALUE): elements, pairs, metatable, close.  Returns
** when a child frame opens (the walk resumes here when it closes), or at
** the end. */
static int tablestep (Dec *d, DFrame *f) {
  lua_State *L = d->L;
  size_t depth = d->depth;
  const unsigned char *at;
  int rc, t = 0;
  if (L != NULL) t = lua_gettop(L) - (f->step == S_VALUE);
  switch (f->step) {
    case S_ARRAY:
      while (f->i < f->narr) {
        f->i++;
        if ((rc = dec_value(d, L_ELEM)) != 0 || d->depth != depth) return rc;
        if (L != NULL) lua_rawseti(L, t, (lua_Integer)f->i);
      }
      f->step = S_KEY;
      f->i = 0;
      /* FALLTHROUGH */
    case S_KEY: case S_VALUE:
      for (;;) {
        if (f->step == S_KEY) {
          if (f->i == f->nhash) break;
          at = d->p;
          if ((rc = dec_keybytes(d, at)) != 0) return rc;
          f->key = at;
          f->i++;
          f->step = S_VALUE;
          if ((rc = dec_value(d, L_KEY)) != 0 || d->depth != depth) return rc;
          if ((rc = dec_keyvalue(d, at)) != 0) return rc;
        }
        /* S_VALUE: the key on top */
        at = d->p;
        if ((rc = dec_valuebytes(d, at)) != 0) return rc;
        f->step = S_KEY;
        if ((rc = dec_value(d, L_FIELD)) != 0 || d->depth != depth) return rc;
        if (L != NULL) lua_rawset(L, t);
      }
      /* FALLTHROUGH */
    case S_META:
      at = d->p;
      f->step = S_DONE;
      if (dec_metabytes(d, at, &rc)) return rc != 0 ? rc : closeframe(d);
      if ((rc = dec_value(d, L_META)) != 0 || d->depth != depth) return rc;
      if ((rc = dec_metavalue(d, at)) != 0) return rc;
      if (L != NULL) lua_setmetatable(L, t);
      return closeframe(d);
    default:
      return closeframe(d);
  }
}


/* The next steps of the function frame f (the closure on top): each
** upvalue a value, or a join with an upvalue of a function decoded
** before; then close.  Returns when a child frame opens (the walk
** resumes here when it closes), or at the end. */
static int funcstep (Dec *d, DFrame *f) {
  size_t depth = d->depth;
  const unsigned char *at;
  int rc, fn = d->L != NULL ? lua_gettop(d->L) : 0;
  while (f->i < f->narr) {
    int i = (int)++f->i;
    at = d->p;
    if (dec_upref(d, fn, i, at, &rc)) {
      if (rc != 0) return rc;
      continue;
    }
    if ((rc = dec_value(d, L_UPVAL)) != 0 || d->depth != depth) return rc;
    if ((rc = dec_setupvalue(d, fn, i, at)) != 0) return rc;
  }
  return closeframe(d);
}

int dec_deepfunction (Dec *d, const unsigned char *at, int link, int nups) {
  int rc = openframe(d, at, F_FUNC, link, d->nrefs);
  if (rc != 0) return rc;
  d->fr[d->depth - 1].narr = (uint64_t)nups;
  return deepwalk(d);
}

void dec_freeframes (Dec *d) {
  if (d->fr == d->small) return;
  big_free(d->fr, d->cap * sizeof(*d->fr));
  if (d->L != NULL) ((FrameBox *)lua_touserdata(d->L, d->frslot))->fr = NULL;
  d->fr = d->small;
}
