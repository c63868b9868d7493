/*
** heap.h: the memory of the Lua states cfut creates (the host's main
** state, every worker's state).  Lua objects are small and a collection
** frees them by the hundred thousand; a heap of its own per state serves
** them from size-class slabs without locks, and keeps them apart from the
** C side's allocations (futures, buffers), which come and go in another
** rhythm.  Sanitizer builds, and CFUT_SYSALLOC=1 in the environment, use
** the C library's allocator instead, so that their checks (and valgrind's)
** see every object.
*/
#ifndef CFUT_HEAP_H
#define CFUT_HEAP_H

#include "lua.h"

/* A new state on a heap of its own (or on the C library's allocator), with
** a panic function and a warning function (off until "@on") as
** luaL_newstate gives; NULL when out of memory. */
lua_State *heap_newstate (void);

/* Close a state made by heap_newstate and free its heap. */
void heap_close (lua_State *L);

#endif
