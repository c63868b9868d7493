/*
** globals.h: the globals that travel with a task (docs/design.md,
** "Globals that travel"; docs/wire.md, "Globals").  The sender learns
** from a function's bytecode which global names it reads; the encoder
** (marshal.c) copies the values of those names after the message's
** values; the receiving worker installs the ones its state lacks.
*/
#ifndef CFUT_GLOBALS_H
#define CFUT_GLOBALS_H

#include <stddef.h>
#include <stdint.h>
#include "lua.h"

/*
** Note the global names a Lua function reads, its bytecode being
** dump[0..len) (as lua_dump writes it) with FNV hash 'hash', with the
** table at env as the place to read them from and 'argno' as the value
** that brought it.  The names are computed once per prototype: cached by
** hash (and length), for at most 4096 prototypes at a time.
** A function that reads some appends three entries to the pending list
** in slot 'pending' (created there if the slot is nil): the array of its
** names, env and argno.  Never raises: 0 or CFUT_ENOMEM.
*/
int globals_note (lua_State *L, const char *dump, size_t len,
                  uint64_t hash, int env, int pending, int argno);

/*
** Push the value of the string at 'name' in the table at env, as the
** function reads it: raw, or through env's metamethods when it has a
** metatable and no such key (a test runner's environment), in a
** protected call (a failing __index reads as nil).  Never raises: 0, or
** CFUT_ENOMEM (nil pushed).
*/
int globals_fetch (lua_State *L, int env, int name);

/*
** Install the globals of the table at t (name -> value) in this state's
** globals: a name the state has of its own is left alone; a missing
** one, or one that still holds the copy an earlier message installed,
** gets the new copy.  May raise a Lua memory error.
*/
void globals_install (lua_State *L, int t);

/*
** The global names the bytecode dump[0..len) reads (GETTABUP on an
** upvalue named _ENV with a constant string key), in this function and
** its nested prototypes: calls fn(ud, name, namelen) for each (repeats
** included).  Returns 0, -1 for bytes it cannot read (a format it does
** not know: no names), or -2 when it lacked memory.  Pure C.
*/
int globals_scan (const char *dump, size_t len,
                  void (*fn) (void *ud, const char *s, size_t n), void *ud);

#endif
