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

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include "executor.h"
#include "wire.h"            /* put64, get64 */

/* Parent -> worker: stop the task whose id is the signal's value (a
** realtime signal: one per task, none lost, sent with sigqueue). */
#define PP_STOPSIG (SIGRTMIN + 4)

#define PP_HEADER 9                     /* length + type */
#define PP_MAXFRAME ((uint64_t)1 << 40) /* larger is malformed */

typedef struct PPoolConfig {
  int max_workers;
  long max_tasks;             /* per worker process; 0 = no limit */
  double timeout;             /* task_timeout in seconds, or 0 */
  char *init;                 /* marshalled initializer, or NULL */
  size_t initlen;
  const char *path, *cpath;   /* package.path / cpath for the workers */
} PPoolConfig;

/*
** The frame at buf[0 .. have): 1 when it is all there (its type is buf[8],
** its body the *flen - 1 bytes at buf + PP_HEADER, its whole size
** 8 + *flen), 0 when more bytes are needed (*flen is its length once the
** header is there, else 0), -1 when its length is malformed.  Both sides
** of a pool cut frames with it.
*/
int ppool_frame (const unsigned char *buf, size_t have, uint64_t *flen);

/* The parts of the body of a result frame ('r'). */
typedef struct PPResult {
  uint64_t id;
  int failed;
  const unsigned char *tb, *data;    /* traceback, marshalled outcome */
  size_t tblen, dlen;
} PPResult;

/* Split a result frame's body of 'len' bytes: NULL, or what is wrong. */
const char *ppool_result (const unsigned char *b, size_t len, PPResult *r);

/* A new pool with one reference, registered in the executor list; takes
** ownership of cfg->init.  NULL with *err set on failure. */
Executor *ppool_new (PPoolConfig *cfg, const char **err);

#endif
