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

/*
** Where a pool's workers come from when they are not local processes
** started here: the MPI pool (src/mpi.c, built into cfut/mpi.so) gives
** one of these, and the pool is the same executor with its workers
** behind sockets that the transport relays (docs/mpi.md).  Its functions
** are called by the pool's manager thread only; none blocks for long
** (reap with 'block' waits at most a few seconds).
*/
typedef struct PPTransport {
  const char *exname;         /* "MPIPoolExecutor" */
  const char *brokencls;      /* "BrokenMPIPool" */
  /* A new worker: *fd is the pool's end of its stream, *id names it in
  ** the other calls.  -1 with err set when none can be started. */
  int (*start) (void *ctx, int *fd, int *id, char *err, size_t errlen);
  void (*signal) (void *ctx, int id, int sig);
  /* Has worker id ended (its stream closed, its process gone)?  1 when it
  ** has (its id is free again), 0 not yet; with 'block', wait for it. */
  int (*reap) (void *ctx, int id, int block);
  void (*close) (void *ctx);  /* the pool is gone */
} PPTransport;

typedef struct PPoolConfig {
  int max_workers;
  const PPTransport *tr;      /* NULL: local worker processes */
  void *trctx;                /* tr's, passed to each call; the pool takes
                                 it (tr->close) */
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
