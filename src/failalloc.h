/*
** failalloc.h: the allocation hook of the failing-allocator test build
** (make failalloc; docs/failalloc.md).  Only that build includes this
** header: it compiles every file with -DCFUT_FAILALLOC and
** -include src/failalloc.h, so that malloc, calloc, realloc and strdup go
** through failalloc.c, which can make the n-th allocation fail (Lua states
** allocate with realloc in this build: see heap.c).  Every other build calls libc and lauxlib directly: the hook costs
** nothing there.
*/
#ifndef CFUT_FAILALLOC_H
#define CFUT_FAILALLOC_H

#ifdef CFUT_FAILALLOC
#include <stdlib.h>
#include <string.h>

struct lua_State;

void *fa_malloc (size_t n);
void *fa_calloc (size_t n, size_t size);
void *fa_realloc (void *p, size_t n);
char *fa_strdup (const char *s);

/* Start counting in a process worker (pworker.c), when the run asks for it
** (CFUT_FAILIN=worker). */
void fa_startworker (void);

/* cfut._failalloc(on): the scenario scripts' switch (see failalloc.c). */
int fa_lcontrol (struct lua_State *L);

#undef strdup
#define malloc(n)       fa_malloc(n)
#define calloc(n, s)    fa_calloc(n, s)
#define realloc(p, n)   fa_realloc(p, n)
#define strdup(s)       fa_strdup(s)

#endif

#endif
