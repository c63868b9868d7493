/*
** lloop.h: cfut inside an event loop (lloop.c) as the other files see it.
*/
#ifndef CFUT_LLOOP_H
#define CFUT_LLOOP_H

#include "lua.h"
#include "future.h"

/* Add futures.fileno to the module at m; push the table of C functions for
** lua/cfut/loop.lua. */
void cfut_openloop (lua_State *L, int m);
/* A new handle for f in L: once L has called fileno(), f's end makes the
** descriptor readable.  Raises on lack of memory. */
void cfut_loopwatch (lua_State *L, Future *f);
/* futures.poll(): empty the descriptor (before the callbacks run), then
** resume the awaits whose time ran out (after); returns how many. */
void cfut_loopdrain (lua_State *L);
int cfut_loopexpire (lua_State *L);

#endif
