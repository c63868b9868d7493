/*
** wpath.h: the path to a value that cannot cross, as the encoder and the
** decoder name it in their errors: "result #1 (field 'a.b[3]', upvalue
** 'f': userdata FILE*)".  Steps are added from the innermost out, as a
** failure returns through the walk; a long path keeps its first and last
** WPATH_KEEP steps, so the message stays bounded at any depth.
*/
#ifndef CFUT_WPATH_H
#define CFUT_WPATH_H

#include <stddef.h>

#include "lua.h"

#define WPATH_TEXT    40    /* bytes of one step */
#define WPATH_KEEP    6     /* steps kept at each end of a long path */

typedef struct WStep {
  char kind;              /* 'f' field, 'k' key, 'm' metatable, 'u' upvalue,
                             'g' global */
  char text[WPATH_TEXT];  /* ".name", "[3]"... or an upvalue's name */
} WStep;

typedef struct WPath {
  size_t n;               /* steps added */
  WStep step[2 * WPATH_KEEP];   /* the first added, then a ring of the
                                   last */
} WPath;

static inline void wpath_init (WPath *p) {
  p->n = 0;
}

/* Where the next step goes (its kind and text to fill), or NULL when a
** path of 'total' steps in all will not show it (cut from the middle):
** the caller skips making its text.  Counts the step either way. */
WStep *wpath_next (WPath *p, size_t total);

/* Add a step: 'f' takes the key at L[k] (a field), the others 'text' (an
** upvalue's or a global's name, or nothing). */
void wpath_add (WPath *p, int kind, lua_State *L, int k, const char *text);

/* The key at L[k] as a field step's text: ".name", "[3]", "[\"a b\"]",
** "[table]". */
void wpath_keytext (lua_State *L, int k, char *buf);

/* A key kept without Lua (a string by its bytes, which its table keeps
** alive): the encoder's frames that closed early keep theirs so (mdeep.c).
** Only strings, numbers and booleans. */
typedef struct WKey {
  union { const char *s; lua_Integer i; lua_Number n; int b; } v;
  size_t len;             /* a string's */
  unsigned char type;     /* LUA_TSTRING, LUA_TNUMBER, LUA_TBOOLEAN */
  unsigned char isint;
} WKey;

/* Keep the key at L[k] (a string, number or boolean): 0, or -1 for other
** types. */
int wpath_keep (lua_State *L, int k, WKey *key);

/* A kept key as a field step's text, as wpath_keytext writes it. */
void wpath_keeptext (const WKey *key, char *buf);

/* err = "what #argno (path: desc)", or "what #argno (desc)". */
void wpath_format (const WPath *p, const char *what, int argno,
                   const char *desc, char *err, size_t errlen);

#endif
