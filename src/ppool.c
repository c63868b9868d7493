/*
** ppool.c: the process-pool executor (parent side).
**
** DESIGN: futures queue under p->lock as in the thread pool.  One manager
** thread per pool owns the worker processes: it moves queued futures to
** workers (several frames per write when the queue is long), reads results
** in bulk, finishes futures, starts workers on demand and replaces those
** that reached max_tasks_per_child.  Workers are fresh programs started with
** posix_spawn (exec, never a bare fork of this threaded process): the
** running interpreter (/proc/self/exe, cfut or lua5.4) with
** `-e "require('cfut')._procworker(<our pid>)"`, its socket at fd 3 and
** no other descriptor than 0, 1 and 2.  A worker that
** dies, or sends a frame that does not check out, breaks the pool: every
** pending and running future fails with BrokenProcessPool, the other
** workers are killed and reaped, later submits raise.  Results in order:
** a worker answers its tasks in the order it got them.
**
** Lock order: p->lock -> future lock -> waiter lock.  The manager never
** holds p->lock while it writes, reads or waits.
*/
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "errors.h"
#include "marshal.h"
#include "ppool.h"
#include "sys.h"

extern char **environ;

#define BROKEN_MSG "A process in the process pool was terminated abruptly " \
                   "while the future was running or pending."
#define INITFAIL_MSG "A process initializer failed, the process pool is " \
                     "not usable anymore"
#define SPAWN_MSG "No worker process could be started, the process pool " \
                  "is not usable anymore"
#define NOMEM_MSG SPAWN_MSG " (not enough memory)"
#define MAXFLY 64             /* tasks sent ahead to one worker, at most */
#define SENDAHEAD 16          /* queued tasks per worker before any is sent
                                 ahead to a busy worker */
#define WORKER_FD 3
#define WORKER_CHUNK "require('cfut')._procworker(%ld)"
/* A stopped task whose worker has not answered after this long (stuck in
** C code) has its worker killed and replaced (seconds). */
#define STOP_GRACE 0.5

typedef struct PPool PPool;

typedef struct PWorker {
  struct PWorker *next;       /* guarded by pool lock */
  PPool *pool;
  /* the manager's own: */
  pid_t pid;
  int reaped;                 /* waited for: 'pid' may name another process
                                 now; never signal it (signalworker) */
  int fd;
  long sent;                  /* tasks sent */
  Future **fly;               /* sent, not answered, in order */
  uint64_t *flyid;
  int flyhead, nfly, capfly;  /* fly[flyhead .. nfly) */
  unsigned char *in;          /* bytes read, not parsed yet */
  size_t inlen, incap;
  MBuf out;                   /* whole frames to write */
  size_t outpos;
  int ready;                  /* its 'R' came: its stop handler is set */
  int killed;                 /* killed by a stop: its end breaks nothing */
  int killwait;               /* it is to answer killid by killat */
  uint64_t killid;            /* a stopped task it is running */
  double killat;              /* kill it then unless killid is answered */
  uint64_t *stopids;          /* stopped tasks behind its first: armed */
  int nstopids, capstopids;   /* (killwait) when they come first */
} PWorker;


struct PPool {
  Executor base;
  SysMutex lock;
  FutQueue q;                  /* guarded by lock */
  int shutdown;               /* guarded by lock */
  int interrupt;              /* guarded by lock: send SIGINT to workers */
  int started;                /* manager started; guarded by lock */
  atomic_int done;            /* manager finished */
  int joined;                 /* guarded by lock */
  pthread_t manager;
  PWorker *workers;           /* list guarded by lock, see PWorker */
  ExitWatch *watch;           /* guarded by lock */
  int wake[2];                /* pipe: anything -> manager */
  /* the manager's own: */
  int nworkers;
  uint64_t nextid;
  /* futures to stop (pp_stop), one reference each; guarded by stoplock,
  ** which is taken under a future's lock and takes none */
  SysMutex stoplock;
  Future **stops;
  int nstops, capstops;
  int stopall;                /* guarded by lock: stop every running task */
  /* set at creation, read-only after: */
  int max_workers;
  long max_tasks;
  char trerr[200];            /* why tr->start failed (manager's) */
  double timeout;             /* task_timeout, or 0 */
  char *init;
  size_t initlen;
  char *exe;
  char **envp;                /* environ + the workers' LUA_* settings */
  const PPTransport *tr;      /* MPI workers (ppool.h), or NULL */
  void *trctx;
  const char *cls;            /* the class of its Broken... errors */
};

/* {======================================================================
** Futures
** ======================================================================= */

static void failfuture (PPool *p, Future *f, const char *msg) {
  ex_failfuture(f, p->cls, msg);
}

/* Settle a list from takeall: cancel (msg NULL) or BrokenProcessPool. */
static void settlelist (PPool *p, Future *f, const char *msg) {
  fq_settle(f, msg ? p->cls : NULL, msg);
}

static Future *takeall (PPool *p) {
  return fq_takeall(&p->q);
}

/* Wake the manager (caller holds p->lock: the pipe closes with the
** manager). */
static void wakeup (PPool *p) {
  char c = 1;
  ssize_t r;
  if (p->wake[1] < 0) return;
  do r = write(p->wake[1], &c, 1); while (r < 0 && errno == EINTR);
}

/* The manager is gone (joined, or never started): close its pipe so a
** pool that is shut down holds no file descriptor. */
static void closewake (PPool *p) {
  sys_lock(&p->lock);
  if (p->wake[0] >= 0) {
    close(p->wake[0]);
    close(p->wake[1]);
    p->wake[0] = p->wake[1] = -1;
  }
  sys_unlock(&p->lock);
}

/* }====================================================================== */

/* {======================================================================
** Workers
** ======================================================================= */

/* Append a frame header for 'bodylen' bytes of type t. */
static int frame (MBuf *b, int t, size_t bodylen) {
  unsigned char h[PP_HEADER];
  put64(h, (uint64_t)bodylen + 1);
  h[8] = (unsigned char)t;
  return mbuf_add(b, h, sizeof h);
}

static int sendinit (PPool *p, PWorker *w) {
  if (frame(&w->out, 'I', p->initlen) != 0) return CFUT_ENOMEM;
  return p->initlen ? mbuf_add(&w->out, p->init, p->initlen) : 0;
}

/* fd at 'fd' moved above 3 so that dup2 onto 3 really happens. */
static int highfd (int fd) {
  int nfd;
  if (fd > WORKER_FD) return fd;
  nfd = fcntl(fd, F_DUPFD_CLOEXEC, WORKER_FD + 1);
  close(fd);
  return nfd;
}

/* Start the worker program with childfd as its fd 3.  It gets fds 0, 1, 2
** and 3 and nothing else: a descriptor of ours without close-on-exec (an
** io.popen pipe, an io.open file) would stay open as long as the worker
** lives, and a reader waiting for its end of file would wait as long. */
static pid_t spawn (PPool *p, int childfd) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t none, defaults;
  char chunk[sizeof WORKER_CHUNK + 24];
  char *argv[4];
  pid_t pid;
  int r;
  snprintf(chunk, sizeof chunk, WORKER_CHUNK, (long)getpid());
  argv[0] = p->exe;
  argv[1] = (char *)"-e";
  argv[2] = chunk;
  argv[3] = NULL;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGURG);
  posix_spawn_file_actions_init(&fa);
  if (posix_spawn_file_actions_adddup2(&fa, childfd, WORKER_FD) != 0 ||
      posix_spawn_file_actions_addclosefrom_np(&fa, WORKER_FD + 1) != 0) {
    posix_spawn_file_actions_destroy(&fa);
    return -1;
  }
  posix_spawnattr_init(&attr);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
                                  POSIX_SPAWN_SETSIGDEF);
  r = posix_spawn(&pid, p->exe, &fa, &attr, argv, p->envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  return r == 0 ? pid : -1;
}

/* Start one worker process; NULL if it cannot be started (*nomem set
** when for lack of memory). */
static PWorker *startworker (PPool *p, int *nomem) {
  PWorker *w = calloc(1, sizeof *w);
  int sv[2];
  *nomem = 1;
  if (w == NULL) return NULL;
  mbuf_init(&w->out);
  w->pool = p;
  if (sendinit(p, w) != 0) {  /* first: the worker waits for it */
    mbuf_free(&w->out);
    free(w);
    return NULL;
  }
  *nomem = 0;
  if (p->tr != NULL) {        /* an MPI worker, behind a relayed stream */
    int id;
    if (p->tr->start(p->trctx, &w->fd, &id, p->trerr, sizeof p->trerr) != 0) {
      mbuf_free(&w->out);
      free(w);
      return NULL;
    }
    w->pid = (pid_t)id;
    goto started;
  }
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    mbuf_free(&w->out);
    free(w);
    return NULL;
  }
  sv[1] = highfd(sv[1]);
  if (sv[1] < 0 || (w->pid = spawn(p, sv[1])) < 0) {
    close(sv[0]);
    if (sv[1] >= 0) close(sv[1]);
    mbuf_free(&w->out);
    free(w);
    return NULL;
  }
  close(sv[1]);
  w->fd = sv[0];
 started:
  fcntl(w->fd, F_SETFL, fcntl(w->fd, F_GETFL) | O_NONBLOCK);
  sys_lock(&p->lock);
  w->next = p->workers;
  p->workers = w;
  sys_unlock(&p->lock);
  p->nworkers++;
  return w;
}

/* Send w signal sig, unless w was reaped: its pid may be another
** process's by now.  Every signal to a worker goes through here. */
static void signalworker (PPool *p, PWorker *w, int sig) {
  if (w->reaped) return;
  if (p->tr != NULL) p->tr->signal(p->trctx, (int)w->pid, sig);
  else kill(w->pid, sig);
}

/* Wait for w to end (with 'block'), or see whether it has.  1: reaped
** (*status set when by this call); 0: still running; -1: it cannot be
** waited for (ECHILD: reaped by someone else, so taken as reaped). */
static int reapworker (PPool *p, PWorker *w, int block, int *status) {
  if (p->tr != NULL && !w->reaped) {
    *status = 0;
    w->reaped = p->tr->reap(p->trctx, (int)w->pid, block);
    return w->reaped;
  }
  while (!w->reaped) {
    pid_t r = waitpid(w->pid, status, block ? 0 : WNOHANG);
    if (r == w->pid) w->reaped = 1;
    else if (r == 0) return 0;
    else if (errno != EINTR) {
      if (errno == ECHILD) w->reaped = 1;
      return -1;
    }
  }
  return 1;
}

/* Close w's socket (it exits at EOF), reap it, free it.  With 'kill',
** kill it first.  Its futures must be settled already. */
static void endworker (PPool *p, PWorker *w, int kill_it) {
  PWorker **pw;
  int status;
  sys_lock(&p->lock);
  for (pw = &p->workers; *pw != NULL; pw = &(*pw)->next)
    if (*pw == w) { *pw = w->next; break; }
  sys_unlock(&p->lock);
  if (kill_it) signalworker(p, w, SIGKILL);
  close(w->fd);
  reapworker(p, w, 1, &status);
  p->nworkers--;
  free(w->fly);
  free(w->flyid);
  free(w->stopids);
  free(w->in);
  mbuf_free(&w->out);
  free(w);
}

static int inflight (PWorker *w) {
  return w->nfly - w->flyhead;
}

/* Give f (running now) to w. */
static int sendtask (PPool *p, PWorker *w, Future *f) {
  FutTask *t = fut_task(f);
  unsigned char id[8];
  if (w->nfly == w->capfly) {
    int ncap = w->capfly ? 2 * w->capfly : 16;
    Future **nf;
    uint64_t *ni;
    if (w->flyhead > 0) {     /* make room at the front first */
      int n = inflight(w);
      memmove(w->fly, w->fly + w->flyhead, (size_t)n * sizeof *w->fly);
      memmove(w->flyid, w->flyid + w->flyhead, (size_t)n * sizeof *w->flyid);
      w->flyhead = 0;
      w->nfly = n;
    }
    else {
      nf = realloc(w->fly, (size_t)ncap * sizeof *nf);
      if (nf == NULL) return CFUT_ENOMEM;
      w->fly = nf;
      ni = realloc(w->flyid, (size_t)ncap * sizeof *ni);
      if (ni == NULL) return CFUT_ENOMEM;
      w->flyid = ni;
      w->capfly = ncap;
    }
  }
  put64(id, p->nextid);
  /* The whole frame or nothing: a part of one would be read as the start
  ** of the frames after it. */
  if (mbuf_reserve(&w->out, PP_HEADER + 8 + t->len) != 0) return CFUT_ENOMEM;
  (void)frame(&w->out, 'T', 8 + t->len);
  (void)mbuf_add(&w->out, id, 8);
  (void)mbuf_add(&w->out, t->msg, t->len);
  /* The message stays with f until it is answered: if w is killed to stop
  ** another task, f goes to the next worker (resend). */
  if (p->timeout > 0 && w->ready) (void)ex_timeout_watch(f, p->timeout);
  w->fly[w->nfly] = f;
  w->flyid[w->nfly++] = p->nextid++;
  w->sent++;
  return 0;
}

/* }====================================================================== */

/* {======================================================================
** Stopping running tasks
** =======================================================================
** f:cancel{force = true} and the watchdog call pp_stop under f's lock: it
** only queues f for the manager, which owns the workers.  The manager
** (passstops) sends the worker running f PP_STOPSIG with f's task id (the
** worker stops that task, or skips it when it gets there) and gives it
** STOP_GRACE to answer; a worker that does not (a task stuck in C code) is
** killed (killworkers), and its end replaces it rather than breaking the
** pool (replace): the tasks it had not started go to another worker.
*/

static void pp_stop (void *ud, Future *f, int why) {
  PPool *p = (PPool *)ud;
  char c = 1;
  ssize_t r;
  (void)why;
  sys_lock(&p->stoplock);
  if (p->nstops == p->capstops) {
    int ncap = p->capstops ? 2 * p->capstops : 8;
    Future **ns = realloc(p->stops, (size_t)ncap * sizeof *ns);
    if (ns != NULL) { p->stops = ns; p->capstops = ncap; }
  }
  if (p->nstops < p->capstops) {     /* else: no memory, it runs on */
    fut_retain(f);
    p->stops[p->nstops++] = f;
  }
  sys_unlock(&p->stoplock);
  /* The manager runs (f is one of its running futures): its pipe is open. */
  do r = write(p->wake[1], &c, 1); while (r < 0 && errno == EINTR);
}

/* w is to answer its task 'id' (its first) within 'grace' seconds, or
** be killed (killworkers). */
static void armkill (PWorker *w, uint64_t id, double grace) {
  if (w->killwait) return;    /* armed for its first already */
  w->killwait = 1;
  w->killid = id;
  w->killat = sys_now() + grace;
}

/*
** Ask w to stop its task 'id' (at fly[i]).  Only the task it runs, its
** first (flyhead), may cost it its life: killing it for a task sent
** ahead would kill (and run again elsewhere) the task before it, which
** nobody stopped.  So a stop for a task behind the first is noted in
** stopids, and armed when that task comes first (headstopped).  A worker
** of ours also gets the signal at once: it skips the task when it gets
** there, or stops it if it runs it already (this manager has not read
** the answers before it yet).
*/
static void stoptask (PWorker *w, int i, uint64_t id) {
  union sigval v;
  if (w->killed || w->reaped) return;
  /* No handler yet: it has started nothing, its tasks go elsewhere. */
  if (!w->ready) {
    signalworker(w->pool, w, SIGKILL);
    w->killed = 1;
    return;
  }
  if (i != w->flyhead) {
    if (w->nstopids == w->capstopids) {
      int ncap = w->capstopids ? 2 * w->capstopids : 8;
      uint64_t *ns = realloc(w->stopids, (size_t)ncap * sizeof *ns);
      if (ns != NULL) { w->stopids = ns; w->capstopids = ncap; }
    }
    if (w->nstopids < w->capstopids)     /* else: no memory, it may run */
      w->stopids[w->nstopids++] = id;
  }
  /* An MPI worker, whose relay carries no signal value: killed once the
  ** stopped task is its first; the manager replaces it.  Until then a
  ** plain PP_STOPSIG makes it send each answer at once (pworker.c), so
  ** that the manager sees when the stopped task comes first. */
  if (w->pool->tr != NULL) {
    if (i == w->flyhead) {
      signalworker(w->pool, w, SIGKILL);
      w->killed = 1;
    }
    else signalworker(w->pool, w, PP_STOPSIG);
    return;
  }
  v.sival_ptr = (void *)(uintptr_t)id;
  sigqueue(w->pid, PP_STOPSIG, v);
  if (i == w->flyhead) armkill(w, id, STOP_GRACE);
}

/* w's first task changed: if it was stopped while it waited behind
** another, w is to answer it as a stopped task is (an MPI worker, which
** cannot skip it, is killed at once). */
static void headstopped (PWorker *w) {
  int k;
  if (w->nstopids == 0 || inflight(w) == 0) return;
  for (k = 0; k < w->nstopids; k++)
    if (w->stopids[k] == w->flyid[w->flyhead]) {
      w->stopids[k] = w->stopids[--w->nstopids];
      armkill(w, w->flyid[w->flyhead],
              w->pool->tr != NULL ? 0 : STOP_GRACE);
      return;
    }
}

/* The script's error end (pp_stopall): stop every running task. */
static void stopeverything (PPool *p) {
  PWorker *w;
  int on, i;
  sys_lock(&p->lock);
  on = p->stopall;
  p->stopall = 0;
  sys_unlock(&p->lock);
  if (!on) return;
  for (w = p->workers; w != NULL; w = w->next)
    for (i = w->flyhead; i < w->nfly; i++)
      fut_stop(w->fly[i], FUT_STOP_CANCEL, NULL, 0);   /* -> pp_stop */
}

/* Pass the stops that pp_stop queued on to the workers. */
static void passstops (PPool *p) {
  Future **list;
  int n, k;
  stopeverything(p);
  sys_lock(&p->stoplock);
  list = p->stops;
  n = p->nstops;
  p->stops = NULL;
  p->nstops = p->capstops = 0;
  sys_unlock(&p->stoplock);
  for (k = 0; k < n; k++) {
    PWorker *w;
    int i, found = 0;
    for (w = p->workers; w != NULL && !found; w = w->next)
      for (i = w->flyhead; i < w->nfly; i++)
        if (w->fly[i] == list[k]) {
          stoptask(w, i, w->flyid[i]);
          found = 1;
          break;
        }
    fut_release(list[k]);
  }
  free(list);
}

static int replace (PPool *p, PWorker *w);

/* Kill pid's descendants, deepest first (what a stuck task started:
** os.execute's shell and its command would outlive the worker and hold
** the pipes it shares with us).  Read from /proc: best effort. */
static void killtree (pid_t pid, int depth) {
  char path[64], buf[4096];
  FILE *fp;
  size_t n;
  char *s, *end;
  if (depth > 8) return;
  snprintf(path, sizeof path, "/proc/%ld/task/%ld/children", (long)pid,
           (long)pid);
  if ((fp = fopen(path, "re")) == NULL) return;
  n = fread(buf, 1, sizeof buf - 1, fp);
  fclose(fp);
  buf[n] = '\0';
  for (s = buf; *s != '\0'; s = end) {
    long child = strtol(s, &end, 10);
    if (end == s) break;
    if (child > 0) {
      kill((pid_t)child, SIGSTOP);    /* no new children meanwhile */
      killtree((pid_t)child, depth + 1);
      kill((pid_t)child, SIGKILL);
    }
  }
}

/* Kill and replace the workers whose stopped task did not stop in time
** (and those killed before they were ready).  Returns the milliseconds
** until the next such deadline (for poll), at most 1000, or -1 with *err
** set when no worker could replace one. */
static int killworkers (PPool *p, int *err) {
  PWorker *w;
  double now = sys_now(), next = now + 1;
  int replaced = 0;
again:
  for (w = p->workers; w != NULL; w = w->next) {
    if (!w->killed && w->killwait && now >= w->killat) {
      if (!w->reaped && p->tr == NULL) {   /* a pid of ours */
        kill(w->pid, SIGSTOP);
        killtree(w->pid, 0);
      }
      signalworker(p, w, SIGKILL);
      w->killed = 1;
    }
    if (w->killed) {
      /* No need to wait for its socket's end: a child of the task may
      ** hold it open. */
      if ((*err = replace(p, w)) != 0) return -1;
      replaced = 1;
      goto again;             /* the list changed */
    }
    if (w->killwait && w->killat < next) next = w->killat;
  }
  /* After a replacement, no wait: the next round gives out the queue. */
  return replaced ? 0 : (int)((next - now) * 1000) + 1;
}

/* }====================================================================== */

/* {======================================================================
** The manager
** ======================================================================= */

/* Break the pool with msg: every future fails, every worker is killed. */
static void breakpool (PPool *p, const char *msg) {
  PWorker *w;
  Future *q;
  sys_lock(&p->lock);
  msg = ex_setbroken(&p->base, p->cls, msg);
  q = takeall(p);
  sys_unlock(&p->lock);
  settlelist(p, q, msg);
  while ((w = p->workers) != NULL) {
    int i;
    for (i = w->flyhead; i < w->nfly; i++) {
      failfuture(p, w->fly[i], msg);
      fut_release(w->fly[i]);
    }
    w->flyhead = w->nfly = 0;
    endworker(p, w, 1);
  }
}

/* The least busy worker that may take one more task under 'target'. */
static PWorker *pick (PPool *p, int target) {
  PWorker *w, *best = NULL;
  for (w = p->workers; w != NULL; w = w->next) {
    if (w->killed) continue;
    if (p->max_tasks > 0 && w->sent >= p->max_tasks) continue;
    if (inflight(w) >= target) continue;
    if (best == NULL || inflight(w) < inflight(best)) best = w;
  }
  return best;
}

static int busyall (PPool *p) {
  PWorker *w;
  for (w = p->workers; w != NULL; w = w->next)
    if (inflight(w) == 0 && !w->killed &&
        (p->max_tasks == 0 || w->sent < p->max_tasks))
      return 0;
  return 1;
}

/* Move queued futures to workers, starting workers on demand.  Returns 0
** or an error code (the pool is then to be broken). */
static int dispatch (PPool *p) {
  for (;;) {
    Future *f;
    PWorker *w;
    int target, nq, total = 0, nomem;
    sys_lock(&p->lock);
    nq = p->q.n;
    sys_unlock(&p->lock);
    if (nq == 0) return 0;
    if (busyall(p) && p->nworkers < p->max_workers) {
      if (startworker(p, &nomem) == NULL && p->nworkers == 0)
        return nomem ? CFUT_ENOMEM : CFUT_ETHREAD;
    }
    for (w = p->workers; w != NULL; w = w->next) total += inflight(w);
    /* A task sent to a worker is running and can no longer be cancelled,
    ** so a busy worker gets more only when the queue is long: then many go
    ** per worker, in fewer and larger writes. */
    target = 1;
    /* With task_timeout, none is sent ahead: a task's time counts from
    ** when it is sent to an idle worker. */
    if (p->timeout <= 0 && nq >= SENDAHEAD * (p->nworkers ? p->nworkers : 1)) {
      target = (nq + total) / (p->nworkers ? p->nworkers : 1);
      if (target > MAXFLY) target = MAXFLY;
    }
    if ((w = pick(p, target)) == NULL) return 0;
    sys_lock(&p->lock);
    f = fq_pop(&p->q);
    sys_unlock(&p->lock);
    if (f == NULL) return 0;
    if (fut_set_running_by(f, pp_stop, p) != 1) { /* cancelled meanwhile */
      fut_droptask(f);
      fut_release(f);
      continue;
    }
    if (sendtask(p, w, f) != 0) {
      failfuture(p, f, "not enough memory to send the task");
      fut_release(f);
    }
  }
}

/* Write what is pending to w; 0, or -1 when w is gone. */
static int flush (PWorker *w) {
  while (w->outpos < w->out.len) {
    ssize_t n = send(w->fd, w->out.data + w->outpos, w->out.len - w->outpos,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return -1;
    }
    w->outpos += (size_t)n;
  }
  w->out.len = w->outpos = 0;
  return 0;
}

int ppool_frame (const unsigned char *buf, size_t have, uint64_t *flen) {
  *flen = 0;
  if (have < PP_HEADER) return 0;
  *flen = get64(buf);
  if (*flen == 0 || *flen > PP_MAXFRAME) return -1;
  return (have - 8 >= *flen) ? 1 : 0;
}

const char *ppool_result (const unsigned char *b, size_t len, PPResult *r) {
  if (len < 13) return "unexpected result frame";
  r->id = get64(b);
  r->failed = b[8];
  r->tblen = (uint32_t)(b[9] | b[10] << 8 | b[11] << 16
                        | (uint32_t)b[12] << 24);
  if (b[8] > 1 || r->tblen > len - 13)
    return "result frame does not match its task";
  r->tb = b + 13;
  r->data = b + 13 + r->tblen;
  r->dlen = len - 13 - r->tblen;
  return NULL;
}

/* Handle one complete frame from w: 0, or -1 with 'why' set. */
static int onframe (PWorker *w, int type, const unsigned char *b,
                    size_t len, char *why, size_t whylen) {
  if (type == 'R') {
    int i;
    if (len != 0) return (snprintf(why, whylen, "bad ready frame"), -1);
    w->ready = 1;
    if (w->pool->timeout > 0)      /* its tasks start running now */
      for (i = w->flyhead; i < w->nfly; i++)
        (void)ex_timeout_watch(w->fly[i], w->pool->timeout);
    return 0;
  }
  if (type == 'F') {
    fprintf(stderr, "cfut: exception in initializer:\n%.*s\n", (int)len,
            (const char *)b);
    fflush(stderr);
    snprintf(why, whylen, "%s", INITFAIL_MSG);
    return -1;
  }
  if (type == 'r') {
    PPResult r;
    const char *bad;
    char *tb = NULL, *data = NULL;
    int failed;
    Future *f;
    if (inflight(w) == 0) bad = "unexpected result frame";
    else if ((bad = ppool_result(b, len, &r)) == NULL
             && r.id != w->flyid[w->flyhead])
      bad = "result frame does not match its task";
    if (bad != NULL) {
      snprintf(why, whylen, "%s", bad);
      return -1;
    }
    /* (a failure may come without its error value: the worker lacked
    ** the memory for it) */
    if (!(r.failed == 1 && r.dlen == 0) &&
        marshal_check((const char *)r.data, r.dlen, why, whylen) != 0)
      return -1;
    if (w->killwait && r.id == w->killid) w->killwait = 0;  /* it stopped */
    f = w->fly[w->flyhead++];
    if (w->pool->timeout > 0) ex_timeout_unwatch(f);
    if (r.tblen > 0 && (tb = malloc(r.tblen + 1)) != NULL) {
      memcpy(tb, r.tb, r.tblen);
      tb[r.tblen] = '\0';
    }
    failed = r.failed;
    len = r.dlen;
    if (len > 0 && (data = malloc(len)) != NULL)
      memcpy(data, r.data, len);
    else if (len > 0) {       /* out of memory: the outcome is lost */
      failed = 1;
      len = 0;
    }
    if (fut_finish(f, failed, data, len, tb) != 0) {
      free(data);
      free(tb);
    }
    fut_droptask(f);
    fut_release(f);
    if (w->flyhead == w->nfly) w->flyhead = w->nfly = 0;
    headstopped(w);
    return 0;
  }
  snprintf(why, whylen, "bad frame type 0x%02x", (unsigned)type);
  return -1;
}

/* Read what w sent and handle its complete frames.  Returns 0, 1 at EOF,
** or -1 with 'why' set (a malformed frame; -2: no memory to read it). */
static int readworker (PWorker *w, char *why, size_t whylen) {
  size_t pos = 0;
  uint64_t flen;
  int eof = 0, r;
  for (;;) {
    ssize_t n;
    if (w->incap - w->inlen < 65536) {
      size_t ncap = w->incap ? 2 * w->incap : 131072;
      unsigned char *nb = realloc(w->in, ncap);
      if (nb == NULL) {
        snprintf(why, whylen, "not enough memory to read a result");
        return -2;
      }
      w->in = nb;
      w->incap = ncap;
    }
    n = recv(w->fd, w->in + w->inlen, w->incap - w->inlen, MSG_DONTWAIT);
    if (n > 0) { w->inlen += (size_t)n; continue; }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) eof = 1;
    break;
  }
  while ((r = ppool_frame(w->in + pos, w->inlen - pos, &flen)) == 1) {
    if (onframe(w, w->in[pos + 8], w->in + pos + PP_HEADER,
                (size_t)(flen - 1), why, whylen) != 0)
      return -1;
    pos += 8 + (size_t)flen;
  }
  if (r < 0) {
    snprintf(why, whylen, "bad frame length %llu", (unsigned long long)flen);
    return -1;
  }
  memmove(w->in, w->in + pos, w->inlen - pos);
  w->inlen -= pos;
  if (eof && w->inlen > 0 && w->killed) w->inlen = 0;  /* cut by us */
  if (eof && w->inlen > 0) {
    snprintf(why, whylen, "truncated frame");
    return -1;
  }
  return eof;
}

/* Retire the workers that took their max_tasks_per_child tasks and have
** answered them all. */
static void retire (PPool *p) {
  PWorker *w, *next;
  if (p->max_tasks == 0) return;
  for (w = p->workers; w != NULL; w = next) {
    next = w->next;
    if (w->sent >= p->max_tasks && inflight(w) == 0 && w->outpos == w->out.len)
      endworker(p, w, 0);
  }
}

/* Everything shut down and answered? */
static int finished (PPool *p) {
  PWorker *w;
  int r;
  sys_lock(&p->lock);
  r = p->shutdown && p->q.n == 0;
  sys_unlock(&p->lock);
  for (w = p->workers; r && w != NULL; w = w->next)
    if (inflight(w) > 0) r = 0;
  return r;
}

/* Ctrl-C in the parent: pass it on to every worker. */
static void passinterrupt (PPool *p) {
  PWorker *w;
  int on;
  sys_lock(&p->lock);
  on = p->interrupt;
  p->interrupt = 0;
  sys_unlock(&p->lock);
  if (on)
    for (w = p->workers; w != NULL; w = w->next) signalworker(p, w, SIGINT);
}

/*
** A worker whose socket closed: if it died of SIGPIPE, it wrote to a pipe
** with no reader, most likely the stdout it shares with this process.  A
** thread worker's write would have ended the whole process with SIGPIPE
** (quietly, as `cfut script | head -1` expects): end it the same way,
** unless this process ignores SIGPIPE.  Waits at most 0.2 s for the
** worker to end.
*/
static void passsigpipe (PPool *p, PWorker *w) {
  int i, r, status = 0;
  if (p->tr != NULL) return;  /* not our child: its status is not ours */
  for (i = 0; i < 200; i++) {
    if ((r = reapworker(p, w, 0, &status)) == 1) {
      if (WIFSIGNALED(status) && WTERMSIG(status) == SIGPIPE)
        kill(getpid(), SIGPIPE);
      return;
    }
    if (r < 0) return;
    sys_sleep(0.001);
  }
}

/* w, killed by a stop, is gone: let go of what it had and send the tasks
** it had not started to a new worker.  0, or an error code (the pool is
** then to be broken). */
static int replace (PPool *p, PWorker *w) {
  Future **again = NULL;
  PWorker *nw;
  int n = 0, i, total = inflight(w), nomem;
  /* What it answered before it died stands: a task it finished (after
  ** the stopped one, just before the kill) must not run again elsewhere.
  ** A worker of ours is reaped first (it was sent SIGKILL), so all it
  ** wrote is in its socket by then; an MPI worker's answers that are
  ** there are taken too.  A malformed rest is dropped with the worker. */
  if (total > 0) {
    char why[160];
    int status;
    if (p->tr == NULL) (void)reapworker(p, w, 1, &status);
    (void)readworker(w, why, sizeof why);
    total = inflight(w);
  }
  if (total > 0 && (again = malloc((size_t)total * sizeof *again)) == NULL)
    return CFUT_ENOMEM;
  for (i = w->flyhead; i < w->nfly; i++) {
    Future *f = w->fly[i];
    if (p->timeout > 0) ex_timeout_unwatch(f);
    /* the stopped one(s): settled, or being settled by their stop */
    if (fut_isdone(fut_state_sync(f))) {
      fut_droptask(f);
      fut_release(f);
    }
    else again[n++] = f;
  }
  w->flyhead = w->nfly = 0;
  endworker(p, w, 0);
  if (n > 0) {
    if ((nw = startworker(p, &nomem)) == NULL) {
      for (i = 0; i < n; i++) {
        failfuture(p, again[i], nomem ? NOMEM_MSG : SPAWN_MSG);
        fut_release(again[i]);
      }
      free(again);
      return nomem ? CFUT_ENOMEM : CFUT_ETHREAD;
    }
    for (i = 0; i < n; i++) {
      if (sendtask(p, nw, again[i]) != 0) {
        failfuture(p, again[i], "not enough memory to send the task");
        fut_release(again[i]);
      }
    }
  }
  free(again);
  return 0;
}

/* One round: dispatch, write, wait for something, read.  Returns 0 to go
** on, 1 when the pool is done. */
static int step (PPool *p, struct pollfd *fds, PWorker **ws) {
  PWorker *w;
  char why[160];
  int n = 1, i, r, ms;
  if (atomic_load(&p->base.broken)) {       /* pp_fail: its message stands */
    breakpool(p, BROKEN_MSG);
    return 1;
  }
  passinterrupt(p);
  passstops(p);
  if ((r = dispatch(p)) != 0) {
    if (r != CFUT_ENOMEM && p->trerr[0] != '\0') {
      char msg[sizeof p->trerr + 100];
      snprintf(msg, sizeof msg, "%s: %s", SPAWN_MSG, p->trerr);
      breakpool(p, msg);
    }
    else breakpool(p, r == CFUT_ENOMEM ? NOMEM_MSG : SPAWN_MSG);
    return 1;
  }
  retire(p);
  if ((ms = killworkers(p, &r)) < 0) {
    breakpool(p, r == CFUT_ENOMEM ? NOMEM_MSG : SPAWN_MSG);
    return 1;
  }
  if (finished(p)) return 1;
  fds[0].fd = p->wake[0];
  fds[0].events = POLLIN;
  for (w = p->workers; w != NULL; w = w->next) {
    if (flush(w) != 0) {
      breakpool(p, BROKEN_MSG);
      return 1;
    }
    fds[n].fd = w->fd;
    fds[n].events = POLLIN | (w->outpos < w->out.len ? POLLOUT : 0);
    ws[n++] = w;
  }
  while ((r = poll(fds, (nfds_t)n, ms)) < 0 && errno == EINTR) {}
  if (fds[0].revents & POLLIN) {
    char buf[256];
    while (read(p->wake[0], buf, sizeof buf) > 0) {}
  }
  for (i = 1; i < n; i++) {
    if (fds[i].revents == 0) continue;
    r = readworker(ws[i], why, sizeof why);
    if (r < 0) {
      char msg[300];
      if (r == -1 && strcmp(why, INITFAIL_MSG) != 0)
        snprintf(msg, sizeof msg, "malformed message from worker %d: %s",
                 (int)ws[i]->pid, why);
      else snprintf(msg, sizeof msg, "%s", why);
      breakpool(p, msg);
      return 1;
    }
    if (r == 1 && ws[i]->killed) continue;    /* replaced next round */
    if (r == 1) {             /* EOF: the worker is gone */
      passsigpipe(p, ws[i]);
      breakpool(p, BROKEN_MSG);
      return 1;
    }
  }
  return 0;
}

static void *manager (void *arg) {
  PPool *p = arg;
  struct pollfd *fds = malloc((size_t)(p->max_workers + 1) * sizeof *fds);
  PWorker **ws = malloc((size_t)(p->max_workers + 1) * sizeof *ws);
  ExitWatch *x;
  sys_thread_setname("cfut-manager");
  if (fds == NULL || ws == NULL) breakpool(p, "not enough memory");
  else while (step(p, fds, ws) == 0) {}
  while (p->workers != NULL) endworker(p, p->workers, 0);
  if (p->tr != NULL) {        /* no more workers: the spares end now */
    p->tr->close(p->trctx);
    p->trctx = NULL;
  }
  free(fds);
  free(ws);
  sys_lock(&p->lock);
  atomic_store(&p->done, 1);
  x = p->watch;
  p->watch = NULL;
  sys_unlock(&p->lock);
  ex_unwatch(x, 1);
  return NULL;
}

/* }====================================================================== */

/* {======================================================================
** Executor operations
** ======================================================================= */

static int pp_submit (Executor *ex, Future **fs, int n) {
  PPool *p = (PPool *)ex;
  sys_lock(&p->lock);
  if (p->shutdown || atomic_load(&ex->broken)) {
    int r = atomic_load(&ex->broken) ? CFUT_EBROKEN : CFUT_ESHUTDOWN;
    sys_unlock(&p->lock);
    return r;
  }
  if (!p->started) {
    if (sys_thread_start(&p->manager, manager, p) != 0) {
      sys_unlock(&p->lock);
      return CFUT_ETHREAD;
    }
    p->started = 1;
  }
  fq_push(&p->q, fs, n);
  wakeup(p);
  sys_unlock(&p->lock);
  return 0;
}

static void pp_shutdown (Executor *ex, int wait, int cancel_futures) {
  PPool *p = (PPool *)ex;
  Future *q = NULL;
  int join = 0, idle;
  sys_lock(&p->lock);
  p->shutdown = 1;
  if (cancel_futures) q = takeall(p);
  if (wait && p->started && !p->joined) {
    p->joined = 1;
    join = 1;
  }
  idle = !p->started;
  wakeup(p);
  sys_unlock(&p->lock);
  settlelist(p, q, NULL);
  if (join) sys_thread_join(p->manager);
  if (join || idle) closewake(p);
}

static void pp_interrupt (Executor *ex) {
  PPool *p = (PPool *)ex;
  Future *q;
  sys_lock(&p->lock);
  q = takeall(p);
  p->interrupt = 1;
  wakeup(p);
  sys_unlock(&p->lock);
  settlelist(p, q, NULL);
}

/* The script's error end: cancel what is queued; the manager stops what
** runs (stopeverything). */
static void pp_stopall (Executor *ex) {
  PPool *p = (PPool *)ex;
  Future *q;
  sys_lock(&p->lock);
  q = takeall(p);
  p->stopall = 1;
  wakeup(p);
  sys_unlock(&p->lock);
  settlelist(p, q, NULL);
}

static int pp_alive (Executor *ex, Waiter *wt) {
  PPool *p = (PPool *)ex;
  int alive;
  sys_lock(&p->lock);
  alive = p->started && !atomic_load(&p->done);
  if (alive && wt != NULL && ex_watch(&p->watch, wt) != 0) alive = -1;
  sys_unlock(&p->lock);
  return alive;
}

static int pp_reap (Executor *ex) {
  PPool *p = (PPool *)ex;
  int join = 0, r;
  sys_lock(&p->lock);
  r = p->shutdown && (!p->started || atomic_load(&p->done));
  if (r && p->started && !p->joined) {
    p->joined = 1;
    join = 1;
  }
  sys_unlock(&p->lock);
  if (join) sys_thread_join(p->manager);
  if (r) closewake(p);
  return r;
}

/* A chunk of map came back malformed: fail what is queued now, and let
** the manager (which owns the workers) fail the rest and kill them. */
static void pp_fail (Executor *ex, const char *msg) {
  PPool *p = (PPool *)ex;
  Future *q;
  sys_lock(&p->lock);
  msg = ex_setbroken(ex, p->cls, msg);
  q = takeall(p);
  wakeup(p);
  sys_unlock(&p->lock);
  settlelist(p, q, msg);
}

static void pp_destroy (Executor *ex) {
  PPool *p = (PPool *)ex;
  char **e;
  int i;
  settlelist(p, takeall(p), NULL);
  ex_unwatch(p->watch, 0);
  if (p->tr != NULL && p->trctx != NULL) p->tr->close(p->trctx);
  if (p->init) {
    marshal_discard(p->init, p->initlen);
    free(p->init);
  }
  for (e = p->envp; e != NULL && *e != NULL; e++)
    if (strncmp(*e, "LUA_", 4) == 0 && strstr(*e, "_5_4=")) free(*e);
  free(p->envp);
  free(p->exe);
  free(ex->broken_msg);
  if (p->wake[0] >= 0) {
    close(p->wake[0]);
    close(p->wake[1]);
  }
  for (i = 0; i < p->nstops; i++) fut_release(p->stops[i]);
  free(p->stops);
  sys_mutex_destroy(&p->stoplock);
  sys_mutex_destroy(&p->lock);
  free(p);
}

static const ExecutorOps ppool_ops = {
  "ProcessPoolExecutor", pp_submit, pp_shutdown, pp_interrupt, pp_alive,
  pp_reap, pp_destroy, pp_fail, pp_stopall
};

/* The same pool with MPI workers (tostring says which it is). */
static const ExecutorOps mpool_ops = {
  "MPIPoolExecutor", pp_submit, pp_shutdown, pp_interrupt, pp_alive,
  pp_reap, pp_destroy, pp_fail, pp_stopall
};

/* }====================================================================== */

/* NAME=value, malloc'ed. */
static char *envvar (const char *name, const char *value) {
  size_t n = strlen(name), m = strlen(value);
  char *s = malloc(n + m + 2);
  if (s == NULL) return NULL;
  memcpy(s, name, n);
  s[n] = '=';
  memcpy(s + n + 1, value, m + 1);
  return s;
}

/* The workers' environment: ours, with package.path and cpath as
** LUA_PATH_5_4 / LUA_CPATH_5_4 (a NULL one keeps our variable, if any:
** the worker then has the default path, as we had) and LUA_INIT_5_4
** emptied (the worker program must not run the user's init code).  Every
** LUA_*_5_4 entry is a copy of ours (ppool_destroy frees them). */
static char **workerenv (const char *path, const char *cpath) {
  size_t n = 0, k = 0, mine;
  char **env, **e;
  if (path == NULL) path = getenv("LUA_PATH_5_4");
  if (cpath == NULL) cpath = getenv("LUA_CPATH_5_4");
  for (e = environ; *e != NULL; e++) n++;
  if ((env = calloc(n + 4, sizeof *env)) == NULL) return NULL;
  for (e = environ; *e != NULL; e++) {
    if (strncmp(*e, "LUA_PATH_5_4=", 13) == 0 ||
        strncmp(*e, "LUA_CPATH_5_4=", 14) == 0 ||
        strncmp(*e, "LUA_INIT_5_4=", 13) == 0) continue;
    env[k++] = *e;
  }
  mine = k;
  env[k++] = envvar("LUA_INIT_5_4", "");
  if (env[k - 1] != NULL && path != NULL)
    env[k++] = envvar("LUA_PATH_5_4", path);
  if (env[k - 1] != NULL && cpath != NULL)
    env[k++] = envvar("LUA_CPATH_5_4", cpath);
  env[k] = NULL;
  if (env[k - 1] == NULL) {
    while (k-- > mine) free(env[k]);
    free(env);
    return NULL;
  }
  return env;
}

Executor *ppool_new (PPoolConfig *cfg, const char **err) {
  PPool *p = calloc(1, sizeof *p);
  char exe[4096];
  ssize_t n;
  *err = "not enough memory";
  if (p == NULL) return NULL;
  ex_init(&p->base, cfg->tr ? &mpool_ops : &ppool_ops, 0);
  p->cls = cfg->tr ? cfg->tr->brokencls : "BrokenProcessPool";
  sys_mutex_init(&p->lock);
  p->max_workers = cfg->max_workers;
  p->max_tasks = cfg->max_tasks;
  p->timeout = cfg->timeout;
  sys_mutex_init(&p->stoplock);
  p->wake[0] = p->wake[1] = -1;
  n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    p->exe = strdup(exe);
  }
  p->envp = workerenv(cfg->path, cfg->cpath);
  if (pipe2(p->wake, O_CLOEXEC | O_NONBLOCK) != 0) *err = strerror(errno);
  else if (n <= 0) *err = "cannot find the running program (/proc/self/exe)";
  if (p->wake[0] < 0 || p->exe == NULL || p->envp == NULL) {
    free(p->exe);
    if (p->envp) {
      char **e;
      for (e = p->envp; *e; e++)
        if (strncmp(*e, "LUA_", 4) == 0 && strstr(*e, "_5_4=")) free(*e);
      free(p->envp);
    }
    if (p->wake[0] >= 0) { close(p->wake[0]); close(p->wake[1]); }
    sys_mutex_destroy(&p->lock);
    sys_mutex_destroy(&p->stoplock);
    free(p);
    return NULL;
  }
  p->init = cfg->init;
  p->initlen = cfg->initlen;
  cfg->init = NULL;
  p->tr = cfg->tr;            /* taken: pp_destroy closes it */
  p->trctx = cfg->trctx;
  cfg->tr = NULL;
  ex_register(&p->base);
  *err = NULL;
  return &p->base;
}
