/*
** tpool.h: the thread-pool executor: OS threads, one Lua state each.
*/
#ifndef CFUT_TPOOL_H
#define CFUT_TPOOL_H

#include <stddef.h>
#include "executor.h"

typedef struct TPoolConfig {
  int max_workers;
  double timeout;         /* task_timeout in seconds, or 0 for none */
  char *init;             /* marshalled initializer + initargs, or NULL */
  size_t initlen;
  const char *prefix;     /* thread_name_prefix, or NULL for the default */
  const char *path, *cpath;   /* package.path / cpath for the workers */
} TPoolConfig;

/* A new pool with one reference, registered in the executor list; takes
** ownership of cfg->init.  NULL when out of memory. */
Executor *tpool_new (TPoolConfig *cfg);

/* Install the signal handler that interrupts Lua code in worker threads
** (once per process). */
void tpool_initsignals (void);

#endif
