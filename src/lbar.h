/*
** lbar.h: the progress line (lbar.c) as the other files see it.
*/
#ifndef CFUT_LBAR_H
#define CFUT_LBAR_H

#include <stdio.h>

#include "lua.h"

/* Push the bar's function table for lua/cfut/progress.lua. */
void cfut_openbar (lua_State *L);
/* Push the Lua part's newbar(p, total) or wrap(inner, p, total). */
void cfut_pushbarfunc (lua_State *L, const char *name);
/* Draw L's waiting bar, if any; returns the deadline to wake at for the
** next redraw (the given one when L has no bar waiting). */
double cfut_barslice (lua_State *L, double deadline);
/* Erase the line shown, if any (before the script runs again). */
void cfut_barhide (void);
/* Write s[0..len) to f, keeping it off the line shown (any thread). */
void cfut_barwrite (FILE *f, const char *s, size_t len);

#endif
