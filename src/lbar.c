/*
** lbar.c: the progress line of map, as_completed and wait (progress =
** true), drawn on stderr, and the print of thread workers that must not
** mix with it.  The drawing itself (what the line says, when it is due)
** is Lua, in lua/cfut/progress.lua; this file holds the one line shown,
** writes it, and tells the waits when to redraw it.
**
** DESIGN: a line is shown only while the main state waits inside one of
** those calls (cfut_waituntil asks cfut_barslice to draw it and to wake
** at least 10 times a second to redraw it); it is erased before control
** goes back to the script (the loop body, a done-callback), so what the
** script prints never lands on it.  Thread workers print through
** cfut_barwrite, which erases the line, writes theirs and draws it again.
** Lines printed by process workers go straight to the terminal and are
** not covered (docs/design.md).
**
** Lock order: barlock is taken alone.
*/
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"

#include "lbar.h"
#include "lcfut.h"
#include "sys.h"

#define BARKEY "cfut.bar"             /* registry: the bar shown, or nil */
#define BARLIB "cfut.barlib"          /* registry: C functions + newbar */
#define SLICE 0.1                     /* redraws at most 10 times a second */

static SysMutex barlock = PTHREAD_MUTEX_INITIALIZER;
static char *shown;           /* the line on the terminal; guarded by
                                 barlock, NULL when none is shown */
static atomic_int visible;    /* shown != NULL, readable without the lock */
static _Thread_local int active;  /* this thread's state has a bar waiting */

/* Erase the line shown (barlock held). */
static void erase (void) {
  if (shown == NULL) return;
  fputs("\r\033[K", stderr);
  fflush(stderr);
  free(shown);
  shown = NULL;
  atomic_store(&visible, 0);
}

void cfut_barhide (void) {
  if (!atomic_load(&visible)) return;
  sys_lock(&barlock);
  erase();
  sys_unlock(&barlock);
}

void cfut_barwrite (FILE *f, const char *s, size_t len) {
  sys_lock(&barlock);
  if (shown != NULL) {
    fputs("\r\033[K", stderr);
    fflush(stderr);
    fwrite(s, 1, len, f);
    fflush(f);
    fputs(shown, stderr);
    fflush(stderr);
  }
  else fwrite(s, 1, len, f);
  sys_unlock(&barlock);
}

/* Called by cfut_waituntil before it blocks: draw the bar of this state,
** if it has one waiting, and return the deadline the wait should wake at
** to redraw it (the given one when there is no bar). */
double cfut_barslice (lua_State *L, double deadline) {
  double next;
  if (!active) return deadline;
  if (lua_getfield(L, LUA_REGISTRYINDEX, BARKEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    return deadline;
  }
  lua_getfield(L, -1, "draw");
  lua_insert(L, -2);
  lua_call(L, 1, 0);          /* bar:draw() */
  next = sys_now() + SLICE;
  return (deadline < 0 || next < deadline) ? next : deadline;
}

/* _show(line): put 'line' on stderr in place of the one shown. */
static int b_show (lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  char *copy = malloc(len + 1);
  if (copy == NULL) return luaL_error(L, "not enough memory");
  memcpy(copy, s, len + 1);
  sys_lock(&barlock);
  /* Write over the old line, then clear what is left of it: no flicker. */
  fprintf(stderr, "\r%s\033[K", copy);
  fflush(stderr);
  free(shown);
  shown = copy;
  atomic_store(&visible, 1);
  sys_unlock(&barlock);
  return 0;
}

static int b_hide (lua_State *L) {
  (void)L;
  cfut_barhide();
  return 0;
}

/* _activate(bar or nil): the bar the waits of this state draw. */
static int b_activate (lua_State *L) {
  lua_settop(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, BARKEY);
  active = !lua_isnil(L, 1);
  return 0;
}

/* _current(): the bar the waits draw now, or nil. */
static int b_current (lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, BARKEY);
  return 1;
}

/* _terminal(): the width of stderr's terminal, or nil when stderr is not
** a terminal. */
static int b_terminal (lua_State *L) {
  struct winsize ws;
  if (!isatty(2)) return 0;
  if (ioctl(2, TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0) ws.ws_col = 80;
  lua_pushinteger(L, ws.ws_col);
  return 1;
}

static int b_monotonic (lua_State *L) {
  lua_pushnumber(L, sys_now());
  return 1;
}

static const luaL_Reg barfuncs[] = {
  {"show", b_show},
  {"hide", b_hide},
  {"activate", b_activate},
  {"current", b_current},
  {"terminal", b_terminal},
  {"monotonic", b_monotonic},
  {NULL, NULL}
};

/* Push the table of the bar's C functions, the argument of the Lua part
** lua/cfut/progress.lua (which adds 'newbar' and 'wrap' to it). */
void cfut_openbar (lua_State *L) {
  luaL_newlib(L, barfuncs);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, BARLIB);
}

/* Push barlib[name] (newbar or wrap). */
void cfut_pushbarfunc (lua_State *L, const char *name) {
  lua_getfield(L, LUA_REGISTRYINDEX, BARLIB);
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
}
