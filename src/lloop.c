/*
** lloop.c: cfut inside an event loop (luv, cqueues, copas):
** futures.fileno(), the descriptor such a loop waits on, and what
** futures.poll() and futures.await() need from C.  futures.await itself
** is Lua (lua/cfut/loop.lua).
**
** DESIGN: fileno() gives the state's waiter an eventfd that every
** notification writes to (future.c), and returns an epoll descriptor that
** holds that eventfd and a timerfd: one descriptor for the loop, readable
** when a future this state listens to finishes (a done-callback, an
** await, or any handle made after fileno() was called) or when the
** earliest await timeout is due.  Everything here runs on the state's own
** thread; only the eventfd is written by other threads, and the waiter
** owns it (it is closed when the last notifier let go of the waiter).
*/
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"

#include "errors.h"
#include "lcfut.h"
#include "lloop.h"
#include "sys.h"

#define LOOPKEY "cfut.loop"           /* registry: this state's Loop */
#define LOOPLIB "cfut.looplib"        /* registry: C functions + expire */

typedef struct Loop {
  int ep;                     /* the epoll descriptor fileno() returns */
  int tf;                     /* timerfd for await timeouts */
  int ev;                     /* the waiter's eventfd (the waiter owns it) */
  int counted;                /* counted in 'loops' until closed */
} Loop;

static _Thread_local int loops;   /* states of this thread with a Loop */

static int loop_gc (lua_State *L) {
  Loop *lp = (Loop *)lua_touserdata(L, 1);
  if (lp->ep >= 0) close(lp->ep);
  if (lp->tf >= 0) close(lp->tf);
  lp->ep = lp->tf = -1;
  if (lp->counted) loops--;
  lp->counted = 0;
  return 0;
}

/* This state's Loop, or NULL before fileno() was called. */
static Loop *getloop (lua_State *L) {
  Loop *lp;
  if (loops == 0) return NULL;
  lua_getfield(L, LUA_REGISTRYINDEX, LOOPKEY);
  lp = (Loop *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return (lp != NULL && lp->ep >= 0) ? lp : NULL;
}

static int watch (int ep, int fd) {
  struct epoll_event e;
  memset(&e, 0, sizeof e);
  e.events = EPOLLIN;
  e.data.fd = fd;
  return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
}

/* Make the descriptors of a new Loop (the userdata at the top). */
static const char *openloop (Loop *lp, Waiter *w) {
  if ((lp->ep = epoll_create1(EPOLL_CLOEXEC)) < 0) return "epoll_create1";
  lp->tf = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (lp->tf < 0) return "timerfd_create";
  if ((lp->ev = waiter_fd(w)) < 0) {
    int ev = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (ev < 0) return "eventfd";
    if (waiter_setfd(w, ev) != 0) close(ev);
    lp->ev = waiter_fd(w);
  }
  if (watch(lp->ep, lp->ev) != 0 || watch(lp->ep, lp->tf) != 0)
    return "epoll_ctl";
  return NULL;
}

/* futures.fileno(): the descriptor an event loop waits on (the same one
** each time in a state). */
static int m_fileno (lua_State *L) {
  Loop *lp = getloop(L);
  const char *failed;
  if (lp != NULL) {
    lua_pushinteger(L, lp->ep);
    return 1;
  }
  lp = (Loop *)lua_newuserdatauv(L, sizeof *lp, 0);
  lp->ep = lp->tf = lp->ev = -1;
  lp->counted = 0;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, loop_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lp->counted = 1;            /* loop_gc takes it back */
  loops++;
  if ((failed = openloop(lp, cfut_waiter(L))) != NULL) {
    int e = errno;
    loop_gc(L);
    return luaL_error(L, "fileno: %s failed: %s", failed, strerror(e));
  }
  lua_setfield(L, LUA_REGISTRYINDEX, LOOPKEY);
  lua_pushinteger(L, lp->ep);
  return 1;
}

void cfut_loopwatch (lua_State *L, Future *f) {
  if (getloop(L) == NULL) return;
  if (fut_listen(f, cfut_waiter(L), FUT_LISTEN_WAKE) == CFUT_ENOMEM)
    luaL_error(L, "not enough memory");
}

/* Empty the eventfd and the timerfd. */
static void drain (Loop *lp) {
  uint64_t n;
  ssize_t r;
  do r = read(lp->ev, &n, sizeof n); while (r < 0 && errno == EINTR);
  do r = read(lp->tf, &n, sizeof n); while (r < 0 && errno == EINTR);
}

void cfut_loopdrain (lua_State *L) {
  Loop *lp = getloop(L);
  if (lp != NULL) drain(lp);
}

int cfut_loopexpire (lua_State *L) {
  int n;
  if (getloop(L) == NULL) return 0;
  /* Awaits whose time ran out (the Lua part knows them). */
  lua_getfield(L, LUA_REGISTRYINDEX, LOOPLIB);
  lua_getfield(L, -1, "expire");
  lua_remove(L, -2);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  lua_call(L, 0, 1);
  n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return n;
}

/* _arm(deadline or nil): the timerfd fires at 'deadline' (monotonic
** seconds), or never. */
static int l_arm (lua_State *L) {
  Loop *lp = getloop(L);
  struct itimerspec its;
  memset(&its, 0, sizeof its);
  if (lp == NULL) return 0;
  if (!lua_isnoneornil(L, 1)) {
    double t = luaL_checknumber(L, 1);
    if (t <= 0) t = 1e-9;     /* 0 would disarm it */
    its.it_value.tv_sec = (time_t)t;
    its.it_value.tv_nsec = (long)((t - (double)(time_t)t) * 1e9);
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
      its.it_value.tv_nsec = 1;
  }
  if (timerfd_settime(lp->tf, TFD_TIMER_ABSTIME, &its, NULL) != 0)
    return luaL_error(L, "timerfd_settime failed: %s", strerror(errno));
  return 0;
}

/* _isfuture(v): is v a future handle? */
static int l_isfuture (lua_State *L) {
  lua_pushboolean(L, cfut_tofuture(L, 1) != NULL);
  return 1;
}

static const luaL_Reg looplib[] = {
  {"arm", l_arm},
  {"isfuture", l_isfuture},
  {NULL, NULL}
};

/* Add fileno to the module at m and push the table of C functions for
** lua/cfut/loop.lua (which adds 'expire' to it). */
void cfut_openloop (lua_State *L, int m) {
  lua_pushcfunction(L, m_fileno);
  lua_setfield(L, m, "fileno");
  luaL_newlib(L, looplib);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, LOOPLIB);
}
