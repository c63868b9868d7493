/*
** luaparts.h: the module's Lua parts (the files in lua/cfut/), compiled in as
** byte arrays by src/embed.sh at build time, so that every state (the
** main one, thread and process workers) loads them without package.path.
*/
#ifndef LUAPARTS_H
#define LUAPARTS_H

#include <stddef.h>

typedef struct LuaPart {
  const char *name;        /* "cfut.errors" */
  const char *chunkname;   /* "=cfut/errors.lua" */
  const char *code;        /* the file's bytes */
  size_t len;
} LuaPart;

/* Ends with an entry whose name is NULL. */
extern const LuaPart cfut_luaparts[];

#endif
