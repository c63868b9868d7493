/*
** tpool.c: the thread-pool executor.
**
** DESIGN: one FIFO queue of futures (each carrying its task message) under
** p->lock, and up to max_workers threads, each owning one lua_State for its
** whole life.  Threads start on demand: submit starts one when fewer
** workers are waiting for work than there are queued tasks.  A worker that
** finds the queue empty spins briefly before it sleeps, and submit signals
** only sleeping workers, so a busy pool neither sleeps nor wakes per task.
** No lock is held while Lua runs.  Shutdown sets a flag, wakes everyone and
** (with wait) joins every thread; a thread is joined by exactly one caller,
** the one that claimed it.
**
** Lock order: p->lock -> future lock -> waiter lock.
**
** INVARIANTS: p->q holds the futures not taken yet, one reference each,
** under p->lock: submit appends at its tail, a worker pops its head (take,
** or ready for a new worker's first task) and lets go of it once run, and
** takeall empties it (shutdown with cancel_futures, Ctrl-C, a broken pool,
** a submit that no worker could start for).  p->nqueued moves with q.n,
** under p->lock; spinning workers read it without the lock, as a hint they
** check again under it.  p->nidle counts the workers waiting for work, and
** each worker moves only its own share (w->idle, owner only): up when take
** finds the queue empty or when its outcome is ready (waiting), down when
** take returns.  Submit starts threads while nqueued > nidle.  p->nsleep
** counts the workers asleep on p->cond, moved by the sleeper under p->lock,
** so submit wakes at most that many.  p->nthreads and p->workers only grow
** (until destroy); p->stopping and a worker's started, exited and claimed
** go from 0 to 1 once; a worker is joined by the one caller that claimed
** it, which then sets joined.
*/
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"

#include "errors.h"
#include "marshal.h"
#include "sys.h"
#include "tpool.h"
#include "wire.h"
#include "worker.h"

#define BROKEN_MSG \
  "A thread initializer failed, the thread pool is not usable anymore"
/* Spin of an idle worker before it sleeps (seconds). */
#define IDLE_SPIN 50e-6

typedef struct TPool TPool;


typedef struct Worker {
  pthread_t tid;              /* set before the thread runs its loop */
  TPool *pool;
  int index;
  atomic_int busy;            /* running a task: Ctrl-C signals it */
  atomic_int stopreq;         /* its task is to stop (tp_stop): the
                                 thread's stop flag (fut_set_stopflag) */
  atomic_int exited;          /* its loop is over: join will not block */
  int idle;                   /* counted in pool->nidle; owner thread */
  int started;                /* has its state (and first task): lock */
  int claimed, joined;        /* guarded by pool->lock */
  struct Worker *next;        /* guarded by pool->lock */
} Worker;

struct TPool {
  Executor base;
  SysMutex lock;
  SysCond cond;               /* idle workers wait here for work */
  SysCond joincond;           /* a claimed worker was joined */
  SysCond startcond;          /* a new worker is ready */
  FutQueue q;                  /* guarded by lock */
  atomic_int nqueued;         /* q.n, written under lock, read by spinners */
  int nthreads;               /* guarded by lock */
  atomic_int nidle;           /* waiting for work (spinning, asleep, or
                                 about to publish an outcome) */
  int nsleep;                 /* asleep on cond; guarded by lock */
  int shutdown;               /* guarded by lock */
  atomic_int stopping;        /* shutdown or broken, for spinners */
  atomic_int stopall;         /* the script's error end (tp_stopall): a
                                 task that starts from now on is stopped */
  Worker *workers;            /* guarded by lock */
  ExitWatch *watch;           /* notified when a worker exits; lock */
  /* set at creation, read-only after: */
  int max_workers;
  double timeout;             /* task_timeout, or 0 */
  char *init;
  size_t initlen;
  char *prefix, *path, *cpath;
};

static atomic_int pool_count;             /* names ThreadPoolExecutor-<n> */
static _Thread_local TPool *current_pool; /* the pool this thread serves */
static _Thread_local Worker *current_worker;

/* {======================================================================
** Queue
** ======================================================================= */

/* Unlink the whole queue (caller holds p->lock); returns its head. */
static Future *takeall (TPool *p) {
  atomic_store(&p->nqueued, 0);
  return fq_takeall(&p->q);
}

/* Break the pool: later submits fail, queued futures fail. */
static void breakpool (TPool *p, const char *msg) {
  Future *q;
  sys_lock(&p->lock);
  msg = ex_setbroken(&p->base, "BrokenThreadPool", msg);
  atomic_store(&p->stopping, 1);
  q = takeall(p);
  sys_cond_broadcast(&p->cond);
  sys_unlock(&p->lock);
  fq_settle(q, "BrokenThreadPool", msg);
}

/* Unlink the oldest task (caller holds p->lock, queue not empty). */
static Future *pop (TPool *p) {
  atomic_fetch_sub(&p->nqueued, 1);
  return fq_pop(&p->q);
}

/* Wait for a task; NULL when the pool is over (shut down and drained, or
** broken).  w->idle says whether w is counted in p->nidle already. */
static Future *take (TPool *p, Worker *w) {
  Future *f;
  int i;
  sys_lock(&p->lock);
  while (p->q.head == NULL) {
    double end;
    if (p->shutdown || atomic_load(&p->base.broken)) break;
    if (!w->idle) {
      atomic_fetch_add(&p->nidle, 1);
      w->idle = 1;
    }
    sys_unlock(&p->lock);
    end = sys_now() + IDLE_SPIN;
    /* Yield rather than pause: with more threads than cores, the thread
    ** that would give us work may be waiting for our core. */
    for (i = 1; atomic_load_explicit(&p->nqueued, memory_order_relaxed) == 0
                && !atomic_load_explicit(&p->stopping, memory_order_relaxed);
         i++) {
      if ((i & 7) == 0 && sys_now() >= end) break;
      sched_yield();
    }
    sys_lock(&p->lock);
    if (p->q.head == NULL && !p->shutdown && !atomic_load(&p->base.broken)) {
      p->nsleep++;
      sys_cond_wait(&p->cond, &p->lock);
      p->nsleep--;
    }
  }
  if (w->idle) {
    atomic_fetch_sub(&p->nidle, 1);
    w->idle = 0;
  }
  f = p->q.head != NULL ? pop(p) : NULL;
  sys_unlock(&p->lock);
  return f;
}

/* }====================================================================== */

/* {======================================================================
** Workers
** ======================================================================= */

/* The outcome is ready: from now on w counts as waiting for work, so a
** submit made after the result is seen does not start another worker. */
static void waiting (void *ud) {
  Worker *w = (Worker *)ud;
  atomic_fetch_add(&w->pool->nidle, 1);
  w->idle = 1;
}

/* f's stopper (fut_stop, under f's lock): the worker's stop flag, then
** SIGURG, whose handler hooks the running Lua code (worker_sigint); a wait
** in the task sees the flag.  A task in C code stops when it is back in
** Lua.  The flag is cleared once the task is over, after its future is
** settled (which takes f's lock too): a stop for it never reaches the
** next task. */
static void tp_stop (void *ud, Future *f, int why) {
  Worker *w = (Worker *)ud;
  (void)f; (void)why;
  atomic_store(&w->stopreq, 1);
  if (!atomic_load(&w->exited)) pthread_kill(w->tid, SIGURG);
}

/* Run f if it is not cancelled (running = fut_set_running's answer). */
static void runone (Worker *w, lua_State *L, Future *f, int running) {
  FutTask *t = fut_task(f);
  /* Handles a task got (its own pool, say) stay alive as garbage in L, and
  ** a pool that one of its idle workers keeps alive never shuts down:
  ** collect them once the task is over. */
  int big = t->len > 3 && ((unsigned char)t->msg[3] & WIRE_HANDLES);
  if (running == 1) {
    TPool *p = w->pool;
    int timed = p->timeout > 0 && ex_timeout_watch(f, p->timeout) == 0;
    atomic_store(&w->busy, 1);
    /* tp_stopall sets stopall, then looks for busy workers; we set busy,
    ** then look at stopall (both seq_cst): a task taken just before the
    ** error end, not yet busy when it looked, is stopped here. */
    if (atomic_load(&p->stopall)) atomic_store(&w->stopreq, 1);
    big |= worker_run(L, f, t->msg, t->len, MARSHAL_LOCAL, waiting, w);
    atomic_store(&w->busy, 0);
    if (timed) ex_timeout_unwatch(f);
    atomic_store(&w->stopreq, 0);
  }
  fut_droptask(f);
  fut_release(f);
  worker_poll(L);
  if (big) worker_tidy(L);    /* published already: nobody waits on it */
}

/* Tell the submit that started w that w is ready; with 'first', take the
** oldest task first, so that what submit's caller does next (cancel it,
** say) finds it running, as with Python's threads. */
static void ready (TPool *p, Worker *w, lua_State *L, int first) {
  Future *f = NULL;
  int running = 0;
  sys_lock(&p->lock);
  if (first && p->q.head != NULL && !atomic_load(&p->base.broken)) {
    f = pop(p);
    running = fut_set_running_by(f, tp_stop, w);
  }
  w->started = 1;
  sys_cond_broadcast(&p->startcond);
  sys_unlock(&p->lock);
  if (f != NULL) runone(w, L, f, running);
}

static void runtasks (TPool *p, Worker *w, lua_State *L) {
  Future *f;
  while ((f = take(p, w)) != NULL)
    runone(w, L, f, fut_set_running_by(f, tp_stop, w));
}

/* Mark w exited and tell those who wait for it. */
static void exited (TPool *p, Worker *w) {
  ExitWatch *x;
  sys_lock(&p->lock);
  atomic_store(&w->exited, 1);
  x = p->watch;
  p->watch = NULL;
  sys_unlock(&p->lock);
  ex_unwatch(x, 1);
}

static void *workermain (void *arg) {
  Worker *w = arg;
  TPool *p = w->pool;
  size_t namelen = strlen(p->prefix) + 16;
  char *name = malloc(namelen);   /* the prefix may be of any length */
  lua_State *L = NULL;
  char *why = NULL;
  current_pool = p;
  current_worker = w;
  fut_set_stopflag(&w->stopreq);
  if (name != NULL) {
    snprintf(name, namelen, "%s_%d", p->prefix, w->index);
    sys_thread_setname(name);
    L = worker_newstate(p->path, p->cpath, name, &why);
    free(name);
  }
  if (L == NULL) {
    breakpool(p, worker_nostate(why));
    free(why);
    ready(p, w, NULL, 0);
  }
  else {
    char *err = NULL;
    /* No user code runs before ready(): submit cannot wait on it long. */
    ready(p, w, L, p->init == NULL);
    if (p->init != NULL &&
        worker_init(L, p->init, p->initlen, MARSHAL_LOCAL, &err) != 0) {
      fprintf(stderr, "cfut: exception in initializer:\n%s\n",
              err ? err : "(no message)");
      fflush(stderr);
      breakpool(p, BROKEN_MSG);
    }
    else runtasks(p, w, L);
    free(err);
    worker_poll(L);
  }
  worker_close(L);
  fut_set_stopflag(NULL);
  exited(p, w);
  return NULL;
}

/* Start one more worker and wait until it is ready (caller holds p->lock,
** which the wait releases).  0, CFUT_ENOMEM or CFUT_ETHREAD. */
static int startworker (TPool *p) {
  Worker *w = calloc(1, sizeof *w);
  if (w == NULL) return CFUT_ENOMEM;
  w->pool = p;
  w->index = p->nthreads;
  if (sys_thread_start(&w->tid, workermain, w) != 0) {
    free(w);
    return CFUT_ETHREAD;
  }
  w->next = p->workers;
  p->workers = w;
  p->nthreads++;
  while (!w->started) sys_cond_wait(&p->startcond, &p->lock);
  return 0;
}

/* }====================================================================== */

/* {======================================================================
** Executor operations
** ======================================================================= */

static int tp_submit (Executor *ex, Future **fs, int n) {
  TPool *p = (TPool *)ex;
  int k, r = CFUT_ETHREAD;
  sys_lock(&p->lock);
  if (p->shutdown || atomic_load(&ex->broken)) {
    r = atomic_load(&ex->broken) ? CFUT_EBROKEN : CFUT_ESHUTDOWN;
    sys_unlock(&p->lock);
    return r;
  }
  fq_push(&p->q, fs, n);
  atomic_fetch_add(&p->nqueued, n);
  while (atomic_load(&p->nqueued) > atomic_load(&p->nidle) &&
         p->nthreads < p->max_workers && !p->shutdown) {
    if ((r = startworker(p)) != 0) break;
  }
  if (p->nthreads == 0) {     /* not one worker could start: undo */
    Future *q = takeall(p);
    sys_unlock(&p->lock);
    fq_settle(q, NULL, NULL);
    return r;                 /* why the last one could not */
  }
  k = n < p->nsleep ? n : p->nsleep;
  if (k == 1) sys_cond_signal(&p->cond);
  else if (k > 1) sys_cond_broadcast(&p->cond);
  sys_unlock(&p->lock);
  return 0;
}

/* Join every worker that no one else has claimed, then wait for those
** that others are joining.  Not from a worker of p itself. */
static void joinall (TPool *p) {
  Worker *w;
  int again = 1;
  while (again) {
    Worker *mine = NULL;
    again = 0;
    sys_lock(&p->lock);
    for (w = p->workers; w != NULL; w = w->next) {
      if (!w->claimed) { w->claimed = 1; mine = w; again = 1; break; }
    }
    sys_unlock(&p->lock);
    if (mine != NULL) {
      sys_thread_join(mine->tid);
      sys_lock(&p->lock);
      mine->joined = 1;
      sys_cond_broadcast(&p->joincond);
      sys_unlock(&p->lock);
    }
  }
  sys_lock(&p->lock);
  for (w = p->workers; w != NULL; w = w->next)
    while (!w->joined) sys_cond_wait(&p->joincond, &p->lock);
  sys_unlock(&p->lock);
}

static void tp_shutdown (Executor *ex, int wait, int cancel_futures) {
  TPool *p = (TPool *)ex;
  Future *q = NULL;
  sys_lock(&p->lock);
  p->shutdown = 1;
  atomic_store(&p->stopping, 1);
  if (cancel_futures) q = takeall(p);
  sys_cond_broadcast(&p->cond);
  sys_unlock(&p->lock);
  fq_settle(q, NULL, NULL);
  /* A worker cannot wait for itself: from inside, wait = false. */
  if (wait && current_pool != p) joinall(p);
}

static void tp_interrupt (Executor *ex) {
  TPool *p = (TPool *)ex;
  Future *q;
  Worker *w;
  sys_lock(&p->lock);
  q = takeall(p);
  for (w = p->workers; w != NULL; w = w->next) {
    if (atomic_load(&w->busy) && !atomic_load(&w->exited))
      pthread_kill(w->tid, SIGURG);
  }
  sys_unlock(&p->lock);
  fq_settle(q, NULL, NULL);
}

/* The script's error end: cancel what is queued, stop every running
** task (its future ends cancelled: worker.c, finish). */
static void tp_stopall (Executor *ex) {
  TPool *p = (TPool *)ex;
  Future *q;
  Worker *w;
  sys_lock(&p->lock);
  atomic_store(&p->stopall, 1);
  q = takeall(p);
  for (w = p->workers; w != NULL; w = w->next) {
    if (atomic_load(&w->busy) && !atomic_load(&w->exited)) {
      atomic_store(&w->stopreq, 1);
      pthread_kill(w->tid, SIGURG);
    }
  }
  sys_unlock(&p->lock);
  fq_settle(q, NULL, NULL);
}

static int tp_alive (Executor *ex, Waiter *wt) {
  TPool *p = (TPool *)ex;
  Worker *w;
  int n = 0;
  sys_lock(&p->lock);
  for (w = p->workers; w != NULL; w = w->next)
    if (!atomic_load(&w->exited) && w != current_worker) n++;
  if (n > 0 && wt != NULL && ex_watch(&p->watch, wt) != 0) n = -1;
  sys_unlock(&p->lock);
  return n;
}

static int tp_reap (Executor *ex) {
  TPool *p = (TPool *)ex;
  Worker *w;
  int done = 1;
  sys_lock(&p->lock);
  if (!p->shutdown) done = 0;
  for (w = p->workers; done && w != NULL; w = w->next)
    if (w->claimed || !atomic_load(&w->exited)) done = 0;
  for (w = p->workers; done && w != NULL; w = w->next) w->claimed = 1;
  sys_unlock(&p->lock);
  if (!done) return 0;
  for (w = p->workers; w != NULL; w = w->next) {
    sys_thread_join(w->tid);    /* exited: returns at once */
    sys_lock(&p->lock);
    w->joined = 1;
    sys_unlock(&p->lock);
  }
  return 1;
}

static void tp_destroy (Executor *ex) {
  TPool *p = (TPool *)ex;
  Worker *w, *next;
  fq_settle(takeall(p), NULL, NULL);
  ex_unwatch(p->watch, 0);
  for (w = p->workers; w != NULL; w = next) {
    next = w->next;
    free(w);
  }
  if (p->init) {
    marshal_discard(p->init, p->initlen);
    free(p->init);
  }
  free(p->prefix);
  free(p->path);
  free(p->cpath);
  free(ex->broken_msg);
  sys_cond_destroy(&p->cond);
  sys_cond_destroy(&p->joincond);
  sys_cond_destroy(&p->startcond);
  sys_mutex_destroy(&p->lock);
  free(p);
}

static const ExecutorOps tpool_ops = {
  "ThreadPoolExecutor", tp_submit, tp_shutdown, tp_interrupt, tp_alive,
  tp_reap, tp_destroy, NULL, tp_stopall
};

/* }====================================================================== */

static char *dupornull (const char *s) {
  return s ? strdup(s) : NULL;
}

Executor *tpool_new (TPoolConfig *cfg) {
  TPool *p = calloc(1, sizeof *p);
  char prefix[64];
  if (p == NULL) return NULL;
  ex_init(&p->base, &tpool_ops, 1);
  sys_mutex_init(&p->lock);
  sys_cond_init(&p->cond);
  sys_cond_init(&p->joincond);
  sys_cond_init(&p->startcond);
  p->max_workers = cfg->max_workers;
  p->timeout = cfg->timeout;
  if (cfg->prefix == NULL) {
    snprintf(prefix, sizeof prefix, "ThreadPoolExecutor-%d",
             atomic_fetch_add(&pool_count, 1));
    p->prefix = strdup(prefix);
  }
  else p->prefix = strdup(cfg->prefix);
  p->path = dupornull(cfg->path);
  p->cpath = dupornull(cfg->cpath);
  p->init = cfg->init;
  p->initlen = cfg->initlen;
  cfg->init = NULL;
  if (p->prefix == NULL || (cfg->path && !p->path) ||
      (cfg->cpath && !p->cpath)) {
    tp_destroy(&p->base);
    return NULL;
  }
  ex_register(&p->base);
  return &p->base;
}

static void onsignal (int sig) {
  (void)sig;
  worker_sigint();
}

void tpool_initsignals (void) {
  static atomic_int done;
  struct sigaction sa;
  if (atomic_exchange(&done, 1)) return;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = onsignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGURG, &sa, NULL);
}
