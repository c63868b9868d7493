/*
** ppool.h: the process-pool executor, and the frames its parent and worker
** processes exchange over a Unix socket (docs/wire.md, "Process frames").
**
** A frame is: u64 length (of what follows, little-endian), u8 type, body.
**   parent -> worker   'I' init:  marshalled initializer + initargs (or
**                                 nothing)
**                      'T' task:  u64 id, marshalled function + arguments
**   worker -> parent   'R' ready (the initializer ran)
**                      'F' init failed: the error text
**                      'r' result: u64 id, u8 failed, u32 traceback length,
**                                 traceback, marshalled outcome
** The parent closes its end to make a worker exit.
*/
#ifndef CFUT_PPOOL_H
#define CFUT_PPOOL_H

#include <stddef.h>
#include <stdint.h>
#include "executor.h"
#include "wire.h"            /* put64, get64 */

#define PP_HEADER 9                     /* length + type */
#define PP_MAXFRAME ((uint64_t)1 << 40) /* larger is malformed */

typedef struct PPoolConfig {
  int max_workers;
  long max_tasks;             /* per worker process; 0 = no limit */
  char *init;                 /* marshalled initializer, or NULL */
  size_t initlen;
  const char *path, *cpath;   /* package.path / cpath for the workers */
} PPoolConfig;

/* A new pool with one reference, registered in the executor list; takes
** ownership of cfg->init.  NULL with *err set on failure. */
Executor *ppool_new (PPoolConfig *cfg, const char **err);

#endif
