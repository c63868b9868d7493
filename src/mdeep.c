/*
** mdeep.c: the writer's walk past RDEPTH levels (encoder.h).  Nesting is
** bounded by memory alone, never by the C stack: past the recursive
** levels (marshal.c), the containers being written (a table: its entries,
** then its metatable; a Lua function: its upvalues) are the frames of a
** stack in C memory.  Each frame has three Lua stack slots: the
** container, its current key (lua_next's) and the value being written.
** The first WINDOW frames keep theirs; deeper ones all use the slots of
** frame WINDOW, and a frame that opens a child there moves its values to
** spill chunks (Lua tables of CHUNK frames, made by protected calls),
** taking them back when the child is done.  So the Lua stack stays small
** at any depth.
**
** A table whose last entry opens a frame, and which has no metatable, has
** nothing left to write after that child but its nil metatable: the
** child takes its frame's place (a tail call), owing that nil byte, and
** the path step that led to it is kept as a ghost (a key kept without
** Lua, for the error path).  A linked list {next = {next = ...}} of a
** million nodes then opens one frame, not a million, and spills nothing:
** spilling cost 48 bytes of Lua memory a level.
*/

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "bigmem.h"
#include "encoder.h"

#define WINDOW        256   /* frames with Lua stack slots of their own */
#define CHUNK         1024  /* frames a spill chunk holds */

/* ---- the frame stack ---- */

/* The Lua stack slot of frame d's container (its key and value follow). */
static int slot (const Enc *e, size_t d) {
  return e->lvl0 + 3 * (int)(d < WINDOW ? d : WINDOW);
}

/* (list, n): chunk n of the spill list, made if new, and the list, made
** if nil (Lua memory: called protected). */
static int pchunk (lua_State *L) {
  lua_Integer n = lua_tointeger(L, 2);
  if (lua_isnil(L, 1)) {
    lua_newtable(L);
    lua_replace(L, 1);
  }
  lua_createtable(L, 3 * CHUNK, 0);
  lua_pushvalue(L, -1);
  lua_rawseti(L, 1, n);
  lua_pushvalue(L, 1);
  return 2;
}

/* Make the spill chunk of frame d (>= WINDOW) the current one, made when
** new: the index before frame d's first entry in it, or -1 when there is
** no memory.  A chunk's array part is allocated whole when it is made, so
** writing into it allocates nothing: it cannot raise nor run the
** collector. */
static lua_Integer spillat (Enc *e, size_t d) {
  lua_State *L = e->L;
  size_t k = d - WINDOW, c = k / CHUNK;
  if (c != e->chunkno) {
    if (c < e->nchunks) lua_rawgeti(L, e->spill, (lua_Integer)c + 1);
    else {
      lua_pushcfunction(L, pchunk);
      lua_pushvalue(L, e->spill);
      lua_pushinteger(L, (lua_Integer)c + 1);
      if (lua_pcall(L, 2, 2, 0) != LUA_OK) {
        lua_pop(L, 1);
        return -1;
      }
      lua_replace(L, e->spill);
      e->nchunks = c + 1;
    }
    lua_replace(L, e->chunk);
    e->chunkno = c;
  }
  return 3 * (lua_Integer)(k % CHUNK);
}

/* How many of frame d's slots it needs when its child closes: the
** container, a table's key (for lua_next) and, after a key, the value. */
static int keepslots (const Enc *e, size_t d) {
  const Frame *p = &e->fr[d];
  if (p->kind != F_TABLE) return 1;
  return (p->step == S_VALUE) ? 3 : 2;
}

/* Open the frame of the container at idx in the place of the top frame,
** which tablestep found done but for its nil metatable: its step becomes
** a ghost, and the new frame owes one nil more. */
static int takeplace (Enc *e, int idx, int kind) {
  lua_State *L = e->L;
  Frame *f = &e->fr[e->depth - 1];
  int c = slot(e, e->depth - 1);
  e->tailat = 0;
  if (e->ngh == e->ghcap) {
    size_t cap = (e->ghcap > 0) ? 2 * e->ghcap : 64;
    Ghost *gh = (cap > SIZE_MAX / sizeof(*gh)) ? NULL
                : big_resize(e->gh, e->ghcap * sizeof(*gh), cap * sizeof(*gh));
    if (gh == NULL) return CFUT_ENOMEM;
    e->gh = gh;
    e->ghcap = cap;
  }
  wpath_keep(L, c + 1, &e->gh[e->ngh++].key);   /* (a kept kind: tablestep) */
  lua_copy(L, idx, c);
  lua_settop(L, c);
  lua_pushnil(L);             /* the key slot */
  f->kind = (unsigned char)kind;
  f->step = S_NEXT;
  f->seg = 0;
  f->tails++;
  return 0;
}

/* Open a frame for the table or Lua function at idx, its container a copy
** on top.  Past WINDOW, the parent's slots go to a spill chunk first. */
static int pushframe (Enc *e, int idx, int kind) {
  lua_State *L = e->L;
  Frame *f;
  if (e->tailat != 0 && e->tailat == e->depth) return takeplace(e, idx, kind);
  if (e->depth == e->cap) {
    size_t cap = 2 * e->cap;
    Frame *fr = (cap > SIZE_MAX / sizeof(*fr)) ? NULL
                : (e->fr == e->small) ? big_alloc(cap * sizeof(*fr), 0)
                : big_resize(e->fr, e->cap * sizeof(*fr), cap * sizeof(*fr));
    if (fr == NULL) return CFUT_ENOMEM;
    if (e->fr == e->small) memcpy(fr, e->small, sizeof(e->small));
    e->fr = fr;
    e->cap = cap;
  }
  /* (3 slots a frame, every 4 frames room for 4 more and the leaf work) */
  if ((e->depth & 3) == 0 && !lua_checkstack(L, 4 * 3 + STACKSTEP))
    return CFUT_ENOMEM;
  if (e->depth == 0) e->lvl0 = lua_gettop(L) + 1;
  lua_pushvalue(L, idx);
  if (e->depth > WINDOW) {    /* the parent's slots are the child's */
    int c = slot(e, e->depth), j;
    lua_Integer at = spillat(e, e->depth - 1);
    if (at < 0) {
      lua_pop(L, 1);
      return CFUT_ENOMEM;
    }
    for (j = 0; j < keepslots(e, e->depth - 1); j++) {
      lua_pushvalue(L, c + j);
      lua_rawseti(L, e->chunk, at + j + 1);
    }
    lua_copy(L, -1, c);
    lua_settop(L, c);
  }
  lua_pushnil(L);             /* the key slot */
  f = &e->fr[e->depth++];
  f->kind = (unsigned char)kind;
  f->step = S_NEXT;
  f->seg = 0;
  f->tails = 0;
  return 0;
}

/* Close the top frame, and drop the parent's value slot too unless the
** parent needs it (a table whose key was just written: its value is next).
** The parent's slots come back from a spill chunk when they were
** there. */
static int popframe (Enc *e) {
  lua_State *L = e->L;
  uint32_t tails = e->fr[e->depth - 1].tails;
  size_t d;
  int c, j, keep = 3;
  if (tails > 0) {            /* the ancestors' nil metatables */
    unsigned char *p = enc_room(e->b, tails);
    if (p == NULL) return CFUT_ENOMEM;
    memset(p, T_NIL, tails);
    e->b->len += tails;
    e->ngh -= tails;
  }
  d = --e->depth;
  c = slot(e, d);
  if (d > 0 && !(e->fr[d - 1].kind == F_TABLE
                 && e->fr[d - 1].step == S_VALUE))
    keep = 2;
  if (d > WINDOW) {
    int n = keepslots(e, d - 1);
    lua_Integer at;
    lua_settop(L, c - 1);
    at = spillat(e, d - 1);     /* (the chunk exists: never -1) */
    for (j = 1; j <= n; j++) lua_rawgeti(L, e->chunk, at + j);
    if (n < keep) lua_pushnil(L);     /* a function's empty key slot */
  }
  else lua_settop(L, c - 4 + keep);
  return 0;
}

/* Push value j (0: the container, 1: the key) of frame d. */
static void pushfromframe (Enc *e, size_t d, int j) {
  if (d < WINDOW || d == e->depth - 1) lua_pushvalue(e->L, slot(e, d) + j);
  else lua_rawgeti(e->L, e->chunk, spillat(e, d) + j + 1);
}

/* Path step g of frame d: the one into the value it is writing. */
static void stepof (Enc *e, size_t d, WStep *g) {
  lua_State *L = e->L;
  Frame *f = &e->fr[d];
  const char *name;
  g->kind = f->seg;
  g->text[0] = '\0';
  if (f->seg == 'f') {
    pushfromframe(e, d, 1);
    wpath_keytext(L, lua_gettop(L), g->text);
    lua_pop(L, 1);
  }
  else if (f->seg == 'u') {
    pushfromframe(e, d, 0);
    name = lua_getupvalue(L, -1, f->u.f.i);
    if (name != NULL) lua_pop(L, 1);
    lua_pop(L, 1);
    if (name == NULL || name[0] == '\0' || name[0] == '(')
      snprintf(g->text, WPATH_TEXT, "#%d", f->u.f.i);
    else snprintf(g->text, WPATH_TEXT, "%s", name);
  }
}

/* After a failure in the frames: the steps of the path to it that they
** hold, innermost first (only those that wpath_format() shows: a long
** path is cut in the middle); a frame's ghosts follow its own step. */
__attribute__((noinline))     /* (off the path of a value that is sent) */
static void tracepath (Enc *e) {
  size_t d, end = e->path.n + e->depth + e->ngh, gi = e->ngh;
  for (d = e->depth; d-- > 0;) {
    WStep *g = wpath_next(&e->path, end);
    uint32_t t;
    if (g != NULL) stepof(e, d, g);   /* (NULL: cut from the middle) */
    for (t = 0; t < e->fr[d].tails; t++) {
      gi--;
      if ((g = wpath_next(&e->path, end)) == NULL) continue;
      g->kind = 'f';
      wpath_keeptext(&e->gh[gi].key, g->text);
    }
  }
}

static int tablestep (Enc *e, Frame *f, int c);
static int funcstep (Enc *e, Frame *f, int c);

/* Walk the frames open above depth d0 to their end. */
static int drain (Enc *e, size_t d0) {
  int rc = 0;
  while (rc == 0 && e->depth > d0) {
    Frame *f = &e->fr[e->depth - 1];
    int c = slot(e, e->depth - 1);
    rc = (f->kind == F_TABLE) ? tablestep(e, f, c) : funcstep(e, f, c);
  }
  return rc;
}

/* After a frame opened past RDEPTH levels: the first one walks them all
** now (a later one is walked by the loop that opened it).  On a failure,
** the path is read off the frames, which then close: the recursive levels
** above add their steps as they return. */
static int deepwalk (Enc *e) {
  int rc;
  if (e->walking) return 0;
  e->walking = 1;
  rc = drain(e, 0);
  e->walking = 0;
  if (rc != 0) {
    if (rc == CFUT_ESEND) tracepath(e);
    e->depth = e->ngh = 0;
    lua_settop(e->L, e->lvl0 - 1);
  }
  return rc;
}

/* A table past RDEPTH levels (its tag at 'at'): a frame writes the
** entries, patches the counts, then writes the metatable. */
int enc_deeptable (Enc *e, int idx, size_t at) {
  Frame *f;
  int rc = pushframe(e, idx, F_TABLE);
  if (rc != 0) return rc;
  f = &e->fr[e->depth - 1];
  f->u.t.at = at;
  f->u.t.narr = f->u.t.nhash = 0;
  return deepwalk(e);
}

/* Whether table frame f (slots at c) is done after the value at c+2, a
** table or a function (which may open a frame): it is the last entry,
** there is no metatable, and its key can be kept as a ghost. */
static int lastentry (Enc *e, Frame *f, int c) {
  lua_State *L = e->L;
  int t = lua_type(L, c + 2), k = lua_type(L, c + 1);
  if ((t != LUA_TTABLE && t != LUA_TFUNCTION) || f->tails == UINT32_MAX
      || (k != LUA_TSTRING && k != LUA_TNUMBER && k != LUA_TBOOLEAN))
    return 0;
  lua_pushvalue(L, c + 1);
  if (lua_next(L, c)) {           /* another entry follows */
    lua_pop(L, 2);
    return 0;
  }
  if (lua_getmetatable(L, c)) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

/* The next steps of the table frame f, its slots at c (the container,
** the key, and after a key written the value): its entries, then the
** metatable, then close.  Returns when a child frame opens for a key or
** a value (the walk resumes here when it closes), or at the end. */
static int tablestep (Enc *e, Frame *f, int c) {
  lua_State *L = e->L;
  size_t d = e->depth;
  uint32_t tails;
  int rc = 0;
  if (f->step == S_DONE) return popframe(e);
  if (f->step == S_VALUE) goto value;
  while (lua_next(L, c)) {        /* key at c+1, value at c+2 */
    if (f->u.t.nhash == 0 && lua_isinteger(L, c + 1)
        && lua_tointeger(L, c + 1) == (lua_Integer)f->u.t.narr + 1)
      f->u.t.narr++;
    else {
      f->u.t.nhash++;
      f->seg = 'k';
      if (lua_type(L, c + 1) == LUA_TSTRING) {
        if ((rc = enc_key(e, c + 1)) != 0) return rc;
      }
      else {
        f->step = S_VALUE;
        if ((rc = enc_value(e, c + 1)) != 0 || e->depth != d) return rc;
      }
    }
  value:
    f->step = S_NEXT;
    f->seg = 'f';
    tails = f->tails;
    if (lastentry(e, f, c) && (rc = enc_patchcounts(e, f->u.t.at,
                                  f->u.t.narr, f->u.t.nhash)) == 0)
      e->tailat = d;              /* a frame it opens takes f's place */
    if (rc == 0) rc = enc_value(e, c + 2);
    e->tailat = 0;
    if (rc != 0 || e->depth != d || f->tails != tails) return rc;
    lua_settop(L, c + 1);
  }
  /* the traversal is over: [table] */
  if ((rc = enc_patchcounts(e, f->u.t.at, f->u.t.narr, f->u.t.nhash)) != 0)
    return rc;
  if (!lua_getmetatable(L, c)) {
    if ((rc = enc_puttag(e->b, T_NIL)) != 0) return rc;
    return popframe(e);
  }
  lua_pushvalue(L, -1);           /* [table, mt, mt] */
  f->step = S_DONE;
  f->seg = 'm';
  if ((rc = enc_value(e, c + 2)) != 0 || e->depth != d) return rc;
  return popframe(e);
}

/* The next steps of the function frame f, its slots at c: its upvalues,
** then close.  Returns when a child frame opens for an upvalue (the walk
** resumes here when it closes), or at the end. */
static int funcstep (Enc *e, Frame *f, int c) {
  lua_State *L = e->L;
  const char *name;
  size_t d = e->depth;
  int i, rc;
  while (f->u.f.i < f->u.f.nups) {
    i = ++f->u.f.i;
    f->seg = 'u';
    if ((name = lua_getupvalue(L, c, i)) == NULL) {   /* value at c+2 */
      lua_pushnil(L);
      return enc_unsendable(e, CFUT_ESEND, "bad upvalue");
    }
    rc = enc_upvalue(e, c, f->u.f.ref, i, name);
    if (rc != 0 || e->depth != d) return rc;
    lua_settop(L, c + 1);
  }
  return popframe(e);
}

int enc_deepfunction (Enc *e, int idx, lua_Integer ref, int nups) {
  Frame *f;
  int rc = pushframe(e, idx, F_FUNC);
  if (rc != 0) return rc;
  f = &e->fr[e->depth - 1];
  f->u.f.ref = ref;
  f->u.f.nups = nups;
  f->u.f.i = 0;
  return deepwalk(e);
}
