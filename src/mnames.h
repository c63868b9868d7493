/*
** mnames.h: the names the encoder gives loaded modules, and the C
** functions and tables they hold (mnames.c).
*/
#ifndef CFUT_MNAMES_H
#define CFUT_MNAMES_H

#include <stddef.h>
#include "lua.h"

typedef struct Names {
  int slot;                   /* stack slot of the name table */
  const unsigned char *filter;  /* its filter; NULL until loaded */
} Names;

/* Put the name table in n->slot: the cached one while package.loaded
** keeps its size, else (always, with 'force') a new one.  0, or
** CFUT_ENOMEM. */
int names_load (lua_State *L, Names *n, int force);

/* The wire bytes naming the value at idx (address p), in *s and *len
** (valid while the name table is in its slot): 0, 1 if it has no name,
** or CFUT_ENOMEM. */
int names_find (lua_State *L, Names *n, int idx, const void *p,
                const char **s, size_t *len);

/* Forget the name table (marshal_resetnames). */
void names_reset (lua_State *L);

#endif
