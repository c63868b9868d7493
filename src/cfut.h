/*
** cfut.h: the public header of cfut, a concurrent.futures for Lua 5.4.
** A host (such as the `cfut` program) includes it to open the module and
** to hand it the events only a host sees: Ctrl-C and the end of the script.
*/
#ifndef CFUT_H
#define CFUT_H

#include "lua.h"

#define CFUT_VERSION_MAJOR 0
#define CFUT_VERSION_MINOR 1
#define CFUT_VERSION_PATCH 0
#define CFUT_VERSION "cfut 0.1.0"

#define CFUT_MODNAME "cfut"

/* The module's opener, for `require "cfut"` or package.preload. */
int luaopen_cfut (lua_State *L);

/*
** Tell cfut that the user pressed Ctrl-C.  Async-signal-safe: it only sets
** a flag.  Waits in every state notice it within a few milliseconds, raise
** "interrupted!", cancel queued tasks and interrupt running Lua tasks.
*/
void cfut_interrupt (void);

/* Clear the flag set by cfut_interrupt (a REPL does so before each line). */
void cfut_clear_interrupt (void);

/*
** End of the script: shut every open executor down with wait = true and
** run the done-callbacks still pending for state L.  Runs Lua code; call it
** protected.  Loaded by the stock lua5.4, the module does the same when the
** state closes.
*/
int cfut_atexit (lua_State *L);

/*
** Tell cfut that the script ended with an uncaught error, before
** cfut_atexit: it then no longer waits for runaway tasks: queued tasks are
** cancelled and running ones stopped (as f:cancel{force = true}), and it
** waits at most 1.5 s for the workers to end.
*/
void cfut_scriptfailed (void);

/*
** If the value at index idx is the error that Future:result() last re-raised
** in L, push the worker's traceback string and return 1; else push nothing
** and return 0.  Does not raise.
*/
int cfut_pushtaskerror (lua_State *L, int idx);

#endif
