/*
** mpi.c: the module cfut.mpi (cfut/mpi.so, built by `make mpi` with
** Open MPI's mpicc): the MPI side of futures.mpi_pool (docs/mpi.md).
**
** DESIGN.  An MPI pool is the process pool of ppool.c with a transport
** (PPTransport, ppool.h): each worker is a stream (a socketpair) whose far
** end this module relays over MPI to a worker process, where the same
** relay hands the bytes to the process pool's own worker loop
** (cfut._procworker on fd 3).  So frames, the answer checker, chunked map,
** breaking the pool and every guarantee are the process pool's, and the
** bytes from a worker are checked by the same code.
**
** All MPI calls of a process are made by one thread, the relay (so
** MPI_THREAD_FUNNELED is all it asks for).  Other threads talk to it
** through commands under mu (start a worker, signal one, free a pool).
** Idle, the relay does not spin: after work it probes for 2 ms (yielding
** the core between probes), then sleeps in ppoll on its sockets with a
** timeout that grows from 20 us to 2 ms (mpi4py's back-off), and probes
** MPI between naps; any activity resets the nap.
**
** Roles: a process that loads the module outside mpiexec is a singleton
** and spawns its workers (MPI_Comm_spawn); a spawned worker serves its
** parent once and exits; under mpiexec, rank 0 runs the script and the
** other ranks serve rank 0's pools one session at a time until rank 0
** tells them to exit (at its exit).
**
** Messages between relays (one communicator, ordered per pair):
**   TAG_DATA  bytes of the stream          TAG_EOF   the stream ended
**   TAG_HELLO worker -> pool: "pid host"   TAG_SIG   pool -> worker: int
**   TAG_OPEN  rank 0 -> static rank: a new session starts
**   TAG_EXIT  rank 0 -> static rank: exit the process
** A worker whose process is on this host is watched by pid every 100 ms:
** one that died (SIGKILL) has its stream closed, and the pool breaks with
** BrokenMPIPool.  Open MPI ends the dead worker's spawn group itself (its
** other members die too) and keeps the parent alive.
*/
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include "lua.h"
#include "lauxlib.h"

#include "ppool.h"

enum { TAG_DATA = 1, TAG_EOF, TAG_HELLO, TAG_SIG, TAG_OPEN, TAG_EXIT };
enum { SINGLE, SPAWNED, MASTER, SERVANT };

#define READMAX   (1 << 20)     /* bytes per MPI message, at most */
#define SPIN      0.002         /* s of polling without a nap after work */
#define NAPMIN    20000L        /* ns */
#define NAPMAX    2000000L      /* ns */
#define WATCH     0.1           /* s between liveness checks */
#define REAPWAIT  10.0          /* s a reap waits at most */
#define SPAWNWAIT 4.0           /* s until a spawn shows a worker here */
#define SPAWNMAX  60.0          /* s a spawn that showed one may take */
#define PINGENV   "CFUT_MPI_PING"
#define QUITWAIT  3.0           /* s the exit waits for MPI to end */

typedef struct Buf {          /* bytes for a link's socket */
  struct Buf *next;
  size_t len, pos;
  char data[];
} Buf;

typedef struct Send {         /* an MPI_Isend not completed yet */
  struct Send *next;
  MPI_Request req;
  char *buf;
  int link;                   /* -1: none */
} Send;

typedef struct MPool MPool;

typedef struct Group {        /* the workers of one MPI_Comm_spawn */
  struct Group *next;
  MPI_Comm comm;
  int n, ended, dead, freed;
} Group;

typedef struct Link {         /* one worker stream */
  int used;
  int fd;                     /* the relay's end, -1 once closed */
  int mfd;                    /* the pool's end until handed out, or -1 */
  MPI_Comm comm;
  int rank;
  Group *group;               /* spawn mode, else NULL */
  MPool *pool;                /* NULL: nobody will reap it (orphan) */
  Buf *out, *outtail;
  int rdeof, wrshut;          /* our socket's input ended; output shut */
  int peereof;                /* the peer's stream ended */
  int dead;                   /* its process is gone or unreachable */
  int killed;                 /* sent SIGKILL */
  double killedat;
  pid_t pid;                  /* from TAG_HELLO, 0 before */
  int local;                  /* its process is on this host */
} Link;

struct MPool {
  int max;
  int handed;                 /* spawned workers handed out */
  char *cmd;
  char *argv[3];
  char **keys, **vals;        /* MPI_Info of the spawn */
  int nkv;
  pid_t *ended;               /* its spawned workers on this host whose */
  int nended;                 /* streams ended: tr_close waits for them */
  int pingfd;                 /* spawned workers here say they started */
};

typedef struct Cmd {
  struct Cmd *next;
  int what;                   /* CMD_* */
  MPool *pool;
  int id, sig;
  int done, rc, fd;
  int abandoned;              /* its caller stopped waiting: free it */
  char err[200];
} Cmd;

enum { CMD_START, CMD_SIG, CMD_FREEPOOL, CMD_QUIT };

static struct {
  pthread_t th;
  int started, ready, finished;
  char err[256];
  int wake[2];
  int quit;
  int role, size, rank, provided;
  MPI_Comm parent;
  char host[256];
  Link *links;
  int nlinks;
  Group *groups;
  Cmd *cmds, *cmdtail;
  Send *sends;
  int *busy;                  /* MASTER: rank in use */
  int sessionfd;              /* SPAWNED/SERVANT: the main thread's end */
  int exiting;                /* SERVANT: TAG_EXIT came */
  double lastwatch;
} R;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static int trace;
#define TRACE(...) do { if (trace) { fprintf(stderr, "[mpi %d r%d] ", (int)getpid(), R.role); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static double now (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void wakerelay (void) {
  char c = 1;
  ssize_t r;
  do r = write(R.wake[1], &c, 1); while (r < 0 && errno == EINTR);
}

/* Wait on cv (mu held) for at most 'secs'. */
static void timedwait (double secs) {
  struct timespec ts;
  double t;
  clock_gettime(CLOCK_REALTIME, &ts);
  t = (double)ts.tv_nsec * 1e-9 + secs;
  ts.tv_sec += (time_t)t;
  ts.tv_nsec = (long)((t - (double)(time_t)t) * 1e9);
  pthread_cond_timedwait(&cv, &mu, &ts);
}

/* {======================================================================
** The relay's links (relay thread, mu held)
** ======================================================================= */

/* Why an MPI call failed.  MPICH's text is a stack, one line per level:
** its first line (the class, before ", error stack:") and its last (the
** innermost reason) say it; the lines between name every argument. */
static void mpierr (int rc, char *err, size_t errlen, const char *what) {
  char s[MPI_MAX_ERROR_STRING + 1], *nl, *p;
  int n = 0;
  if (MPI_Error_string(rc, s, &n) != MPI_SUCCESS || n < 0)
    n = snprintf(s, sizeof s, "%d", rc);
  s[n < (int)sizeof s ? n : (int)sizeof s - 1] = '\0';
  n = (int)strlen(s);
  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ')) s[--n] = '\0';
  if ((nl = strchr(s, '\n')) == NULL) {
    snprintf(err, errlen, "%s failed: %.150s", what, s);
    return;
  }
  *nl = '\0';
  if ((p = strstr(s, ", error stack:")) != NULL) *p = '\0';
  snprintf(err, errlen, "%s failed: %.60s: %.100s", what, s,
           strrchr(nl + 1, '\n') ? strrchr(nl + 1, '\n') + 1 : nl + 1);
}

/* A new link to (comm, rank) with a socketpair; -1 when none can be made. */
static int newlink (MPI_Comm comm, int rank, Group *g, MPool *pool) {
  int sv[2], i;
  Link *l;
  for (i = 0; i < R.nlinks; i++)
    if (!R.links[i].used) break;
  if (i == R.nlinks) {
    Link *nl = realloc(R.links, (size_t)(R.nlinks + 8) * sizeof *nl);
    if (nl == NULL) return -1;
    memset(nl + R.nlinks, 0, 8 * sizeof *nl);
    R.links = nl;
    R.nlinks += 8;
  }
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return -1;
  fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
  l = &R.links[i];
  memset(l, 0, sizeof *l);
  l->used = 1;
  l->fd = sv[1];
  l->mfd = sv[0];
  l->comm = comm;
  l->rank = rank;
  l->group = g;
  l->pool = pool;
  return i;
}

static void dropout (Link *l) {
  while (l->out != NULL) {
    Buf *b = l->out;
    l->out = b->next;
    free(b);
  }
  l->outtail = NULL;
}

/* The worker behind l is gone: its stream ends for the pool. */
static void linkdead (Link *l) {
  if (l->dead) return;
  l->dead = 1;
  dropout(l);
  if (l->fd >= 0) {
    close(l->fd);
    l->fd = -1;
  }
  if (l->group != NULL) l->group->dead = 1;
  pthread_cond_broadcast(&cv);
}

/* Send n bytes (taking buf, malloc'ed or NULL) with tag to l's peer. */
static void mpisend (int link, MPI_Comm comm, int rank, int tag, char *buf,
                    int n) {
  Send *s = malloc(sizeof *s);
  if (s == NULL || MPI_Isend(buf, n, MPI_BYTE, rank, tag, comm, &s->req)
                   != MPI_SUCCESS) {
    free(s);
    free(buf);
    if (link >= 0) linkdead(&R.links[link]);
    return;
  }
  s->buf = buf;
  s->link = link;
  s->next = R.sends;
  R.sends = s;
}

/* Complete what can be completed; returns 1 if any did. */
static int testsends (void) {
  Send **ps = &R.sends;
  int any = 0;
  while (*ps != NULL) {
    Send *s = *ps;
    int flag = 0;
    if (s->link >= 0 && R.links[s->link].dead) {
      *ps = s->next;            /* never completes: let it be */
      free(s);
      continue;
    }
    if (MPI_Test(&s->req, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS) flag = 1;
    if (flag) {
      *ps = s->next;
      free(s->buf);
      free(s);
      any = 1;
    }
    else ps = &s->next;
  }
  return any;
}

static unsigned char scratch[READMAX];

/* Move bytes between l's socket and MPI (from the socket only if 'in');
** 1 if anything moved.  A short read or write ends its loop: the socket
** had no more then, and asking again would cost a system call for an
** EAGAIN (the next round, or ppoll, sees what comes later). */
static int pumplink (int i, int in) {
  Link *l = &R.links[i];
  int any = 0;
  if (l->dead || l->fd < 0) return 0;
  while (in && !l->rdeof) {
    ssize_t n = recv(l->fd, scratch, sizeof scratch, MSG_DONTWAIT);
    if (n > 0) {
      char *b = malloc((size_t)n);
      if (b == NULL) { linkdead(l); return 1; }
      memcpy(b, scratch, (size_t)n);
      TRACE("link %d: %d bytes to rank %d", i, (int)n, l->rank);
      mpisend(i, l->comm, l->rank, TAG_DATA, b, (int)n);
      any = 1;
      if (l->dead) return 1;
      if ((size_t)n < sizeof scratch) break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    l->rdeof = 1;             /* end of file (or error): tell the peer */
    mpisend(i, l->comm, l->rank, TAG_EOF, NULL, 0);
    any = 1;
    pthread_cond_broadcast(&cv);
  }
  while (l->out != NULL && l->fd >= 0) {
    Buf *b = l->out;
    ssize_t n = send(l->fd, b->data + b->pos, b->len - b->pos,
                     MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0) { dropout(l); break; }     /* the reader is gone */
    any = 1;
    b->pos += (size_t)n;
    if (b->pos < b->len) break;           /* the socket is full */
    l->out = b->next;
    if (l->out == NULL) l->outtail = NULL;
    free(b);
  }
  if (l->peereof && l->out == NULL && !l->wrshut && l->fd >= 0) {
    shutdown(l->fd, SHUT_WR);
    l->wrshut = 1;
    any = 1;
  }
  return any;
}

static int findlink (MPI_Comm comm, int rank) {
  int i;
  for (i = 0; i < R.nlinks; i++) {
    Link *l = &R.links[i];
    if (l->used && !l->dead && l->comm == comm && l->rank == rank &&
        !(l->peereof && l->rdeof && R.role != SERVANT && R.role != SPAWNED))
      return i;
  }
  return -1;
}

static void sendhello (int link) {
  char *b = malloc(300);
  if (b == NULL) return;
  snprintf(b, 300, "%ld %s", (long)getpid(), R.host);
  mpisend(link, R.links[link].comm, R.links[link].rank, TAG_HELLO, b,
         (int)strlen(b) + 1);
}

static void freelink (Link *l);

/* A servant's new session: a fresh stream for the main thread. */
static void opensession (void) {
  int i;
  for (i = 0; i < R.nlinks; i++)     /* the last session's stream */
    if (R.links[i].used) freelink(&R.links[i]);
  i = newlink(MPI_COMM_WORLD, 0, NULL, NULL);
  if (i < 0) return;          /* rank 0 sees no answer: its reap bounds it */
  R.sessionfd = R.links[i].mfd;
  R.links[i].mfd = -1;
  sendhello(i);
  pthread_cond_broadcast(&cv);
}

/* A message came; b (taken) holds its n bytes, which a DATA message's
** link sends on as they are. */
static void onmessage (MPI_Comm comm, int src, int tag, Buf *b, int n) {
  char *buf = b->data;
  int i;
  TRACE("message tag %d from %d, %d bytes, link %d", tag, src, n, findlink(comm, src));
  if (R.role == SERVANT && tag == TAG_OPEN) { opensession(); free(b); return; }
  if (R.role == SERVANT && tag == TAG_EXIT) {
    R.exiting = 1;
    pthread_cond_broadcast(&cv);
    free(b);
    return;
  }
  if ((i = findlink(comm, src)) < 0) { free(b); return; }
  if (tag == TAG_DATA && n > 0) {
    Link *l = &R.links[i];
    b->next = NULL;
    b->len = (size_t)n;
    b->pos = 0;
    if (l->outtail) l->outtail->next = b;
    else l->out = b;
    l->outtail = b;
    return;
  }
  else if (tag == TAG_EOF) {
    R.links[i].peereof = 1;
    pthread_cond_broadcast(&cv);
  }
  else if (tag == TAG_HELLO && n > 0) {
    char host[256] = "";
    long pid = 0;
    buf[n - 1] = '\0';
    if (sscanf(buf, "%ld %255s", &pid, host) == 2 && pid > 0) {
      R.links[i].pid = (pid_t)pid;
      R.links[i].local = strcmp(host, R.host) == 0;
      if (R.links[i].killed && R.links[i].local) kill((pid_t)pid, SIGKILL);
    }
  }
  else if (tag == TAG_SIG && n == (int)sizeof(int)) {
    int sig;
    memcpy(&sig, buf, sizeof sig);
    if (sig > 0 && sig < 65) kill(getpid(), sig);
  }
  free(b);
}

/* Receive what has come on comm; 1 if anything did. */
static int probe (MPI_Comm comm) {
  int any = 0;
  for (;;) {
    MPI_Status st;
    int flag = 0, n = 0;
    Buf *b;
    if (MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm, &flag, &st)
        != MPI_SUCCESS || !flag)
      return any;
    MPI_Get_count(&st, MPI_BYTE, &n);
    if (n < 0) n = 0;
    b = malloc(sizeof *b + (size_t)n + 1);
    if (b == NULL) return any;            /* later, with memory */
    if (MPI_Recv(b->data, n, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, comm,
                 MPI_STATUS_IGNORE) != MPI_SUCCESS) {
      free(b);
      return any;
    }
    onmessage(comm, st.MPI_SOURCE, st.MPI_TAG, b, n);
    any = 1;
  }
}

/* Workers on this host that have died; remote ones killed long ago. */
static void watch (void) {
  int i;
  double t = now();
  if (t - R.lastwatch < WATCH) return;
  R.lastwatch = t;
  for (i = 0; i < R.nlinks; i++) {
    Link *l = &R.links[i];
    if (!l->used || l->dead) continue;
    if (l->local && l->pid > 0 && kill(l->pid, 0) != 0 && errno == ESRCH)
      linkdead(l);
    else if (l->killed && !l->local && t - l->killedat > 2.0) linkdead(l);
  }
}

static void freelink (Link *l) {
  MPool *mp = l->pool;
  if (mp != NULL && l->group != NULL && l->local && l->pid > 0) {
    pid_t *ne = realloc(mp->ended, (size_t)(mp->nended + 1) * sizeof *ne);
    if (ne != NULL) {
      mp->ended = ne;
      ne[mp->nended++] = l->pid;
    }
  }
  dropout(l);
  if (l->fd >= 0) close(l->fd);
  if (l->mfd >= 0) close(l->mfd);
  if (R.busy != NULL && l->group == NULL && R.role == MASTER)
    R.busy[l->rank] = 0;
  if (l->group != NULL) l->group->ended++;
  memset(l, 0, sizeof *l);
  l->fd = l->mfd = -1;
}

/* Orphans (nobody reaps them) that have ended, and spawn groups that are
** all gone. */
static void tidy (void) {
  Group **pg;
  int i;
  for (i = 0; i < R.nlinks; i++) {
    Link *l = &R.links[i];
    if (l->used && l->pool == NULL && R.role != SERVANT && R.role != SPAWNED
        && (l->dead || (l->peereof && l->rdeof)))
      freelink(l);
  }
  for (pg = &R.groups; *pg != NULL;) {
    Group *g = *pg;
    if (g->ended == g->n) {
      if (!g->dead) MPI_Comm_free(&g->comm);  /* a broken one stays */
      *pg = g->next;
      free(g);
    }
    else pg = &g->next;
  }
}

/* }====================================================================== */

/* {======================================================================
** Commands (relay thread, mu held)
** ======================================================================= */

static int dospawn (MPool *mp, char *err, size_t errlen) {
  MPI_Info info = MPI_INFO_NULL;
  MPI_Comm inter;
  Group *g;
  int n = mp->max - mp->handed, *codes, rc, i;
  if (n < 1) n = 1;
  if ((codes = calloc((size_t)n, sizeof *codes)) == NULL ||
      (g = calloc(1, sizeof *g)) == NULL) {
    free(codes);
    snprintf(err, errlen, "not enough memory");
    return -1;
  }
  if (mp->nkv > 0) {
    MPI_Info_create(&info);
    for (i = 0; i < mp->nkv; i++) MPI_Info_set(info, mp->keys[i], mp->vals[i]);
  }
  pthread_mutex_unlock(&mu);  /* spawning takes a while */
  rc = MPI_Comm_spawn(mp->cmd, mp->argv, n, info, 0, MPI_COMM_SELF, &inter,
                      codes);
  pthread_mutex_lock(&mu);
  if (info != MPI_INFO_NULL) MPI_Info_free(&info);
  for (i = 0; rc == MPI_SUCCESS && i < n; i++)
    if (codes[i] != MPI_SUCCESS) rc = codes[i];
  free(codes);
  if (rc != MPI_SUCCESS) {
    mpierr(rc, err, errlen, "MPI_Comm_spawn");
    free(g);
    return -1;
  }
  MPI_Comm_set_errhandler(inter, MPI_ERRORS_RETURN);
  g->comm = inter;
  g->n = n;
  for (i = 0; i < n; i++) {
    if (newlink(inter, i, g, mp) < 0) g->ended++;  /* it ends at EOF */
  }
  g->next = R.groups;
  R.groups = g;
  return 0;
}

static void docmd (Cmd *c) {
  int i;
  MPool *mp = c->pool;
  switch (c->what) {
    case CMD_START:
      c->rc = -1;
      if (R.role == MASTER) {
        for (i = 1; i < R.size; i++) if (!R.busy[i]) break;
        if (i >= R.size) {
          snprintf(c->err, sizeof c->err, "all %d worker ranks of mpiexec "
                   "are in use", R.size - 1);
          break;
        }
        if ((c->id = newlink(MPI_COMM_WORLD, i, NULL, mp)) < 0) {
          snprintf(c->err, sizeof c->err, "%s", strerror(errno));
          break;
        }
        R.busy[i] = 1;
        mpisend(c->id, MPI_COMM_WORLD, i, TAG_OPEN, NULL, 0);
      }
      else {
        for (i = 0; i < R.nlinks; i++)
          if (R.links[i].used && R.links[i].pool == mp &&
              R.links[i].mfd >= 0 && !R.links[i].dead) break;
        if (i == R.nlinks) {
          if (dospawn(mp, c->err, sizeof c->err) != 0) break;
          for (i = 0; i < R.nlinks; i++)
            if (R.links[i].used && R.links[i].pool == mp &&
                R.links[i].mfd >= 0 && !R.links[i].dead) break;
          if (i == R.nlinks) {
            snprintf(c->err, sizeof c->err, "no stream for the new worker");
            break;
          }
        }
        c->id = i;
        mp->handed++;
      }
      c->fd = R.links[c->id].mfd;
      R.links[c->id].mfd = -1;
      c->rc = 0;
      break;
    case CMD_SIG:
      if (c->id < R.nlinks && R.links[c->id].used && !R.links[c->id].dead) {
        Link *l = &R.links[c->id];
        char *b = malloc(sizeof(int));
        if (c->sig == SIGKILL && !l->killed) {
          l->killed = 1;
          l->killedat = now();
        }
        if (b != NULL) {
          memcpy(b, &c->sig, sizeof(int));
          mpisend(c->id, l->comm, l->rank, TAG_SIG, b, (int)sizeof(int));
        }
      }
      break;
    case CMD_FREEPOOL:        /* its unused workers end; none is reaped */
      for (i = 0; i < R.nlinks; i++) {
        Link *l = &R.links[i];
        if (!l->used || l->pool != mp) continue;
        if (l->mfd >= 0) {
          close(l->mfd);
          l->mfd = -1;
        }
        l->pool = NULL;
      }
      free(mp->cmd);
      free(mp->argv[1]);
      for (i = 0; i < mp->nkv; i++) {
        free(mp->keys[i]);
        free(mp->vals[i]);
      }
      free(mp->keys);
      free(mp->vals);
      free(mp->ended);
      if (mp->pingfd >= 0) close(mp->pingfd);
      free(mp);
      break;
  }
}

/* Run a command in the relay; synchronous ones wait for it (mu held). */
static void post (Cmd *c, int sync) {
  c->next = NULL;
  c->done = 0;
  if (R.finished) {           /* MPI is gone: nothing can be done */
    snprintf(c->err, sizeof c->err, "MPI has been finalized");
    c->rc = -1;
    if (c->what != CMD_START && (c->what == CMD_FREEPOOL || !sync)) free(c);
    else if (c->what == CMD_START && !sync) free(c);
    return;
  }
  if (R.cmdtail) R.cmdtail->next = c;
  else R.cmds = c;
  R.cmdtail = c;
  wakerelay();
  while (sync && !c->done && !R.finished) pthread_cond_wait(&cv, &mu);
  if (sync && !c->done) {
    snprintf(c->err, sizeof c->err, "MPI has been finalized");
    c->rc = -1;
  }
}

static void runcmds (void) {
  while (R.cmds != NULL) {
    Cmd *c = R.cmds;
    int sync = c->what == CMD_START;
    R.cmds = c->next;
    if (R.cmds == NULL) R.cmdtail = NULL;
    if (c->what == CMD_QUIT) { R.quit = 1; free(c); continue; }
    docmd(c);
    if (sync && c->abandoned) {
      if (c->rc == 0) close(c->fd);
      free(c);
    }
    else if (sync) c->done = 1;
    else free(c);
  }
  pthread_cond_broadcast(&cv);
}

/* }====================================================================== */

/* {======================================================================
** The relay thread
** ======================================================================= */

static int anyopen (void) {
  int i;
  for (i = 0; i < R.nlinks; i++)
    if (R.links[i].used && !R.links[i].dead &&
        !(R.links[i].peereof && R.links[i].rdeof)) return 1;
  return 0;
}

/* One round of work: 1 if anything moved. */
static int pump (void) {
  int i, any = 0;
  Group *g;
  runcmds();
  for (i = 0; i < R.nlinks; i++)
    if (R.links[i].used) any |= pumplink(i, 1);
  any |= testsends();
  if (R.role == MASTER || R.role == SERVANT) any |= probe(MPI_COMM_WORLD);
  if (R.role == SPAWNED) any |= probe(R.parent);
  for (g = R.groups; g != NULL; g = g->next)
    if (!g->dead) any |= probe(g->comm);
  for (i = 0; i < R.nlinks; i++)   /* what came may go out at once */
    if (R.links[i].used && (R.links[i].out || R.links[i].peereof))
      any |= pumplink(i, 0);
  watch();
  tidy();
  return any;
}

static void nap (long ns) {
  struct pollfd fds[65];
  struct timespec ts;
  int n = 1, i;
  fds[0].fd = R.wake[0];
  fds[0].events = POLLIN;
  for (i = 0; i < R.nlinks && n < 65; i++) {
    Link *l = &R.links[i];
    if (!l->used || l->fd < 0) continue;
    fds[n].fd = l->fd;
    fds[n].events = (short)((l->rdeof ? 0 : POLLIN) | (l->out ? POLLOUT : 0));
    if (fds[n].events) n++;
  }
  ts.tv_sec = 0;
  ts.tv_nsec = ns;
  pthread_mutex_unlock(&mu);
  if (ppoll(fds, (nfds_t)n, &ts, NULL) > 0 && (fds[0].revents & POLLIN)) {
    char buf[64];
    while (read(R.wake[0], buf, sizeof buf) > 0) {}
  }
  pthread_mutex_lock(&mu);
}

/* Bounded: let the sends complete before MPI is finalized. */
static void drainsends (double secs) {
  double end = now() + secs;
  while (R.sends != NULL && now() < end) {
    testsends();
    nap(NAPMIN);
  }
}

static void finish (void) {
  int i;
  double end;
  if (R.role == MASTER) {     /* every rank exits with us */
    for (i = 1; i < R.size; i++)
      mpisend(-1, MPI_COMM_WORLD, i, TAG_EXIT, NULL, 0);
  }
  /* Streams still open end now; what still runs on this host is killed. */
  for (i = 0; i < R.nlinks; i++) {
    Link *l = &R.links[i];
    if (l->used && l->mfd >= 0) { close(l->mfd); l->mfd = -1; }
  }
  end = now() + 1.0;
  while (anyopen() && now() < end) {
    pump();
    nap(NAPMIN * 10);
  }
  for (i = 0; i < R.nlinks; i++) {
    Link *l = &R.links[i];
    if (l->used && !l->dead && l->local && l->pid > 0 && R.role != SERVANT
        && R.role != SPAWNED && l->group != NULL && !(l->peereof && l->rdeof))
      kill(l->pid, SIGKILL);
  }
  drainsends(2.0);
  if (R.role == SPAWNED && R.parent != MPI_COMM_NULL)
    MPI_Comm_free(&R.parent);
  pthread_mutex_unlock(&mu);
  TRACE("finalize at %.3f", now());
  MPI_Finalize();
  TRACE("finalized at %.3f", now());
  pthread_mutex_lock(&mu);
}

static void *relay (void *arg) {
  int rc;
  double last = 0;
  long ns = NAPMIN;
  (void)arg;
  trace = getenv("CFUT_MPI_TRACE") != NULL;
  rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &R.provided);
  pthread_mutex_lock(&mu);
  if (rc != MPI_SUCCESS) {
    mpierr(rc, R.err, sizeof R.err, "MPI_Init_thread");
    R.finished = 1;
  }
  else if (R.provided < MPI_THREAD_FUNNELED) {
    snprintf(R.err, sizeof R.err, "MPI grants thread level %d, cfut needs "
             "MPI_THREAD_FUNNELED (%d) or better", R.provided,
             MPI_THREAD_FUNNELED);
    R.finished = 1;
    pthread_mutex_unlock(&mu);
    MPI_Finalize();
    pthread_mutex_lock(&mu);
  }
  if (R.finished) {
    R.ready = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    return NULL;
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
  MPI_Comm_size(MPI_COMM_WORLD, &R.size);
  MPI_Comm_rank(MPI_COMM_WORLD, &R.rank);
  MPI_Comm_get_parent(&R.parent);
  if (gethostname(R.host, sizeof R.host - 1) != 0) strcpy(R.host, "?");
  if (R.parent != MPI_COMM_NULL) {
    int i;
    R.role = SPAWNED;
    MPI_Comm_set_errhandler(R.parent, MPI_ERRORS_RETURN);
    MPI_Comm_rank(R.parent, &i);
    (void)i;
    if ((i = newlink(R.parent, 0, NULL, NULL)) >= 0) {
      R.sessionfd = R.links[i].mfd;
      R.links[i].mfd = -1;
      sendhello(i);
    }
  }
  else if (R.size > 1) {
    R.role = R.rank == 0 ? MASTER : SERVANT;
    if (R.role == MASTER && (R.busy = calloc((size_t)R.size, sizeof(int)))
                            == NULL) R.quit = 1;
  }
  else R.role = SINGLE;
  R.ready = 1;
  pthread_cond_broadcast(&cv);
  while (!R.quit) {
    if (pump()) {
      last = now();
      ns = NAPMIN;
      continue;
    }
    if (R.role == SPAWNED && !anyopen() && R.sends == NULL) break;
    if (R.role == SERVANT && R.exiting && !anyopen()) break;
    if (now() - last < SPIN) {  /* an answer may follow: no nap, but */
      pthread_mutex_unlock(&mu);  /* leave the core to the threads that */
      sched_yield();              /* make it (2 cores serve 3 here) */
      pthread_mutex_lock(&mu);
      continue;
    }
    nap(ns);
    ns = ns * 2 > NAPMAX ? NAPMAX : ns * 2;
  }
  finish();
  R.finished = 1;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  return NULL;
}

static void stoprelay (void) {
  Cmd *c;
  pthread_mutex_lock(&mu);
  if (!R.started || R.finished) {
    pthread_mutex_unlock(&mu);
    if (R.started) pthread_join(R.th, NULL);
    R.started = 0;
    return;
  }
  if ((c = calloc(1, sizeof *c)) != NULL) {
    c->what = CMD_QUIT;
    post(c, 0);
  }
  else R.quit = 1;
  {
    double end = now() + QUITWAIT;
    while (!R.finished && now() < end) timedwait(0.05);
  }
  if (!R.finished) {          /* stuck in MPI (a spawn that never returns) */
    pthread_mutex_unlock(&mu);
    return;
  }
  pthread_mutex_unlock(&mu);
  pthread_join(R.th, NULL);
  R.started = 0;
}

/* A process forked here (Open MPI's daemon, forked by MPI_Init on the
** relay thread) starts with no signal blocked: the relay's mask would
** otherwise block SIGCHLD in the daemon, and with it the daemon's
** knowledge of the workers it started (it fails after a few spawns). */
static void forkchild (void) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Start the relay (MPI_Init) once; NULL, or why it failed. */
static const char *startrelay (void) {
  sigset_t all, old;
  pthread_mutex_lock(&mu);
  if (!R.started) {
    R.sessionfd = -1;
    /* fd 3 is where a worker's stream goes (cfut._procworker): keep it
    ** from MPI and from the wake pipe until then. */
    if (fcntl(3, F_GETFD) < 0) (void)open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (pipe2(R.wake, O_CLOEXEC | O_NONBLOCK) != 0 ||
        R.wake[0] == 3 || R.wake[1] == 3) {
      snprintf(R.err, sizeof R.err, "%s", strerror(errno));
      pthread_mutex_unlock(&mu);
      return R.err;
    }
    /* Signals go to the other threads (the Lua code), never the relay or
    ** the threads MPI starts from it. */
    pthread_atfork(NULL, NULL, forkchild);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (pthread_create(&R.th, NULL, relay, NULL) != 0) {
      pthread_sigmask(SIG_SETMASK, &old, NULL);
      snprintf(R.err, sizeof R.err, "cannot start the MPI thread");
      pthread_mutex_unlock(&mu);
      return R.err;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    R.started = 1;
    atexit(stoprelay);
  }
  while (!R.ready) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  return R.err[0] ? R.err : NULL;
}

/* }====================================================================== */

/* {======================================================================
** The transport (a pool's manager thread)
** ======================================================================= */

/* A new worker.  MPI_Comm_spawn never returns when a host's daemon
** cannot be started (Open MPI 4.1 prints why), so the wait is bounded:
** SPAWNWAIT until a worker process of the spawn has started on this host
** (it pings the pool's socket before its MPI_Init; Open MPI starts the
** workers only once every host's daemon has answered), SPAWNMAX after. */
static int tr_start (void *ctx, int *fd, int *id, char *err, size_t errlen) {
  MPool *mp = ctx;
  Cmd *c = calloc(1, sizeof *c);
  double start = now();
  /* (Without a socket to be told on, the bound the sign would give.) */
  double end = start + (mp->pingfd >= 0 ? SPAWNWAIT : SPAWNMAX);
  int rc, seen = 0;
  if (c == NULL) {
    snprintf(err, errlen, "not enough memory");
    return -1;
  }
  c->what = CMD_START;
  c->pool = ctx;
  pthread_mutex_lock(&mu);
  post(c, 0);
  if (R.finished) {           /* post freed it */
    pthread_mutex_unlock(&mu);
    snprintf(err, errlen, "MPI has been finalized");
    return -1;
  }
  while (!c->done && !R.finished && now() < end) {
    char b[64];
    timedwait(0.05);
    if (!seen && mp->pingfd >= 0 &&
        recv(mp->pingfd, b, sizeof b, MSG_DONTWAIT) >= 0) {
      seen = 1;
      end = start + SPAWNMAX;
      TRACE("spawn: a worker started here after %.3f s", now() - start);
    }
  }
  if (!c->done) {
    c->abandoned = 1;
    pthread_mutex_unlock(&mu);
    if (R.finished) snprintf(err, errlen, "MPI has been finalized");
    else if (seen)
      snprintf(err, errlen, "the MPI workers did not start within %g s "
               "(MPI_Comm_spawn did not return)", SPAWNMAX);
    else
      snprintf(err, errlen, "no MPI worker started within %g s "
               "(MPI_Comm_spawn did not return: a host that does not "
               "answer?)", mp->pingfd >= 0 ? SPAWNWAIT : SPAWNMAX);
    return -1;
  }
  rc = c->rc;
  if (rc != 0) snprintf(err, errlen, "%s", c->err);
  else {
    fcntl(c->fd, F_SETFD, FD_CLOEXEC);
    *fd = c->fd;
    *id = c->id;
  }
  pthread_mutex_unlock(&mu);
  free(c);
  return rc == 0 ? 0 : -1;
}

static void tr_signal (void *ctx, int id, int sig) {
  Cmd *c;
  (void)ctx;
  pthread_mutex_lock(&mu);
  if (id >= 0 && id < R.nlinks && R.links[id].used && !R.links[id].dead &&
      R.links[id].local && R.links[id].pid > 0) {
    if (sig == SIGKILL && !R.links[id].killed) {
      R.links[id].killed = 1;
      R.links[id].killedat = now();
    }
    kill(R.links[id].pid, sig);
  }
  else if ((c = calloc(1, sizeof *c)) != NULL) {
    c->what = CMD_SIG;
    c->id = id;
    c->sig = sig;
    post(c, 0);
  }
  pthread_mutex_unlock(&mu);
}

static int tr_reap (void *ctx, int id, int block) {
  double end = now() + REAPWAIT;
  Link *l;
  (void)ctx;
  pthread_mutex_lock(&mu);
  if (id < 0 || id >= R.nlinks || !R.links[id].used) {
    pthread_mutex_unlock(&mu);
    return 1;
  }
  for (;;) {
    l = &R.links[id];
    if (R.finished || l->dead || (l->peereof && l->rdeof)) break;
    if (!block) {
      pthread_mutex_unlock(&mu);
      return 0;
    }
    if (now() > end) {        /* it does not answer: taken as gone */
      linkdead(l);
      break;
    }
    timedwait(0.05);
  }
  /* (A spawned worker's process exits soon after its stream ended: its
  ** MPI_Finalize waits for the others of its spawn group.) */
  if (!R.finished) freelink(l);
  wakerelay();
  pthread_mutex_unlock(&mu);
  return 1;
}

/* The pool is done: its spare workers end, and (bounded) the spawned
** workers on this host have exited when this returns, as a process
** pool's shutdown(wait) has reaped its workers. */
static void tr_close (void *ctx) {
  MPool *mp = ctx;
  Cmd *c = calloc(1, sizeof *c);
  pid_t *pids;
  int n, i;
  double end = now() + REAPWAIT / 2;
  pthread_mutex_lock(&mu);
  n = mp->nended;
  pids = mp->ended;
  mp->ended = NULL;
  mp->nended = 0;
  if (c != NULL) {
    c->what = CMD_FREEPOOL;
    c->pool = ctx;
    post(c, 0);
  }
  pthread_mutex_unlock(&mu);
  for (i = 0; i < n; i++)
    while (kill(pids[i], 0) == 0 && now() < end) usleep(2000);
  free(pids);
}

static const PPTransport transport = {
  "MPIPoolExecutor", "BrokenMPIPool", tr_start, tr_signal, tr_reap, tr_close
};

/* }====================================================================== */

/* {======================================================================
** The module
** ======================================================================= */

static char *dupstr (lua_State *L, const char *s) {
  char *d = strdup(s);
  if (d == NULL) luaL_error(L, "not enough memory");
  return d;
}

/* A string option value (numbers are taken as strings). */
static const char *optstring (lua_State *L, int idx, const char *what) {
  int t = lua_type(L, idx);
  if (t != LUA_TSTRING && t != LUA_TNUMBER)
    luaL_argerror(L, 1, lua_pushfstring(L, "%s must be a string (got %s)",
                                        what, luaL_typename(L, idx)));
  return lua_tostring(L, idx);
}

static void addkv (lua_State *L, MPool *mp, const char *k, const char *v) {
  int i;
  char **nk, **nv;
  for (i = 0; i < mp->nkv; i++)
    if (strcmp(mp->keys[i], k) == 0) {
      free(mp->vals[i]);
      mp->vals[i] = dupstr(L, v);
      return;
    }
  nk = realloc(mp->keys, (size_t)(mp->nkv + 1) * sizeof *nk);
  if (nk == NULL) luaL_error(L, "not enough memory");
  mp->keys = nk;
  nv = realloc(mp->vals, (size_t)(mp->nkv + 1) * sizeof *nv);
  if (nv == NULL) luaL_error(L, "not enough memory");
  mp->vals = nv;
  mp->keys[mp->nkv] = dupstr(L, k);
  mp->vals[mp->nkv++] = dupstr(L, v);
}

/* [==[s]==] with enough '=' that s cannot end it. */
static void longstring (luaL_Buffer *b, const char *s) {
  char close[40];
  int level = 0;
  for (;;) {
    snprintf(close, sizeof close, "]%.*s]", level, "==============================");
    if (strstr(s, close) == NULL || level >= 30) break;
    level++;
  }
  luaL_addchar(b, '[');
  luaL_addlstring(b, "==============================", (size_t)level);
  luaL_addstring(b, "[\n");
  luaL_addstring(b, s);
  luaL_addstring(b, close);
}

/* An abstract datagram socket the pool's spawned workers on this host
** ping when they start (tr_start); its name in 'name'.  -1: none. */
static int pingsocket (char *name, size_t len) {
  static int seq;
  struct sockaddr_un a;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int tries;
  if (fd < 0) return -1;
  for (tries = 0; tries < 16; tries++) {  /* (a pid another namespace has) */
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(name, len, "cfut-mpi-%ld-%d", (long)getpid(), ++seq);
    memcpy(a.sun_path + 1, name, strlen(name));
    if (bind(fd, (struct sockaddr *)&a, (socklen_t)(offsetof(struct
             sockaddr_un, sun_path) + 1 + strlen(name))) == 0) return fd;
    if (errno != EADDRINUSE) break;
  }
  close(fd);
  return -1;
}

/* A spawned worker: tell the pool this process has started, if the pool
** is on this host (else the send fails, and that is all). */
static void ping (const char *name) {
  struct sockaddr_un a;
  size_t n = strlen(name);
  int fd;
  if (n == 0 || n >= sizeof a.sun_path - 1) return;
  if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0) return;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  memcpy(a.sun_path + 1, name, n);
  (void)sendto(fd, "", 1, MSG_DONTWAIT, (struct sockaddr *)&a,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n));
  close(fd);
}

static int mp_gc (lua_State *L) {
  MPool **pp = (MPool **)lua_touserdata(L, 1);
  if (*pp != NULL) {
    Cmd *c = calloc(1, sizeof *c);
    pthread_mutex_lock(&mu);
    if (c != NULL) {
      c->what = CMD_FREEPOOL;
      c->pool = *pp;
      post(c, 0);
    }
    pthread_mutex_unlock(&mu);
    *pp = NULL;
  }
  return 0;
}

/* cfut.mpi._open(opts, max_workers or nil, path, cpath) -> transport,
** state, max_workers.  The state belongs to the pool made with it (its
** tr->close frees it). */
static int m_open (lua_State *L) {
  MPool *mp, **box;
  const char *why;
  luaL_Buffer b;
  char exe[4096];
  ssize_t n;
  int given = (int)luaL_optinteger(L, 2, 0);
  const char *path = luaL_optstring(L, 3, NULL);
  const char *cpath = luaL_optstring(L, 4, NULL);
  if ((why = startrelay()) != NULL)
    return luaL_error(L, "cannot start MPI: %s", why);
  /* Freed by __gc unless the pool takes it (then the box lets go). */
  box = (MPool **)lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, mp_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  if ((mp = calloc(1, sizeof *mp)) == NULL)
    return luaL_error(L, "not enough memory");
  mp->pingfd = -1;
  *box = mp;
  if (R.role == MASTER) {
    static const char *const spawnonly[] = {"hosts", "mpi_info", "wdir",
                                            "env", NULL};
    int i;
    for (i = 0; lua_istable(L, 1) && spawnonly[i]; i++) {
      if (lua_getfield(L, 1, spawnonly[i]) != LUA_TNIL)
        luaL_argerror(L, 1, lua_pushfstring(L, "field '%s' applies to "
          "spawned workers only; under mpiexec, place the ranks with "
          "mpiexec's own options", spawnonly[i]));
      lua_pop(L, 1);
    }
    if (given > R.size - 1)
      luaL_argerror(L, 1, lua_pushfstring(L, "max_workers is %d, but mpiexec "
        "started %d worker rank%s (rank 0 runs the script)", given,
        R.size - 1, R.size - 1 == 1 ? "" : "s"));
    mp->max = given > 0 ? given : R.size - 1;
  }
  else if (R.role == SERVANT)
    return luaL_error(L, "mpi_pool: this rank serves rank 0's pools");
  else {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    mp->max = given > 0 ? given : (cpus > 0 ? (int)cpus : 1);
  }
  if ((n = readlink("/proc/self/exe", exe, sizeof exe - 1)) <= 0)
    return luaL_error(L, "cannot find the running program (/proc/self/exe)");
  exe[n] = '\0';
  mp->cmd = dupstr(L, exe);
  mp->argv[0] = (char *)"-e";
  luaL_buffinit(L, &b);
  if (path) { luaL_addstring(&b, "package.path="); longstring(&b, path); }
  luaL_addchar(&b, '\n');
  if (cpath) { luaL_addstring(&b, "package.cpath="); longstring(&b, cpath); }
  luaL_addstring(&b, "\nrequire('cfut.mpi')._worker()");
  luaL_pushresult(&b);
  mp->argv[1] = dupstr(L, lua_tostring(L, -1));
  lua_pop(L, 1);
  addkv(L, mp, "env", "LUA_INIT_5_4=");
  if (R.role != MASTER) {
    char name[80];
    if ((mp->pingfd = pingsocket(name, sizeof name)) >= 0) {
      lua_pushfstring(L, "%s\n%s=%s", mp->vals[0], PINGENV, name);
      addkv(L, mp, "env", lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
  if (lua_istable(L, 1)) {
    /* hosts: "a,b" or {"a", "b"} (the MPI info key "host") */
    if (lua_getfield(L, 1, "hosts") != LUA_TNIL) {
      int t = lua_gettop(L);
      if (lua_istable(L, t)) {
        lua_Integer i, len = luaL_len(L, t);
        luaL_argcheck(L, len > 0, 1, "field 'hosts' is empty");
        lua_pushliteral(L, "");
        for (i = 1; i <= len; i++) {
          if (lua_geti(L, t, i) != LUA_TSTRING)
            luaL_argerror(L, 1, lua_pushfstring(L, "field 'hosts[%d]' must "
                          "be a string", (int)i));
          if (i > 1) {
            lua_pushliteral(L, ",");
            lua_insert(L, -2);
          }
          lua_concat(L, i > 1 ? 3 : 2);
        }
      }
      else lua_pushstring(L, optstring(L, t, "field 'hosts'"));
      addkv(L, mp, "host", lua_tostring(L, -1));
      lua_settop(L, t);
    }
    lua_pop(L, 1);
    if (lua_getfield(L, 1, "wdir") != LUA_TNIL)
      addkv(L, mp, "wdir", optstring(L, -1, "field 'wdir'"));
    lua_pop(L, 1);
    if (lua_getfield(L, 1, "env") != LUA_TNIL) {
      int t = lua_gettop(L);
      luaL_argcheck(L, lua_istable(L, t), 1, "field 'env' must be a table");
      lua_pushnil(L);
      while (lua_next(L, t)) {
        if (lua_type(L, -2) != LUA_TSTRING ||
            strpbrk(lua_tostring(L, -2), "=\n") != NULL ||
            lua_tostring(L, -2)[0] == '\0')
          luaL_argerror(L, 1, "field 'env' must map variable names to "
                        "strings");
        lua_pushfstring(L, "%s\n%s=%s", mp->vals[0], lua_tostring(L, -2),
                        optstring(L, -1, "a value of field 'env'"));
        addkv(L, mp, "env", lua_tostring(L, -1));
        lua_pop(L, 2);
      }
    }
    lua_pop(L, 1);
    /* mpi_info: any key MPI_Comm_spawn takes, last (it wins) */
    if (lua_getfield(L, 1, "mpi_info") != LUA_TNIL) {
      int t = lua_gettop(L);
      luaL_argcheck(L, lua_istable(L, t), 1,
                    "field 'mpi_info' must be a table");
      lua_pushnil(L);
      while (lua_next(L, t)) {
        if (lua_type(L, -2) != LUA_TSTRING)
          luaL_argerror(L, 1, "field 'mpi_info' must map MPI info keys to "
                        "strings");
        if (strcmp(lua_tostring(L, -2), "env") == 0)
          lua_pushfstring(L, "%s\n%s", mp->vals[0],
                          optstring(L, -1, "field 'mpi_info.env'"));
        else lua_pushstring(L, optstring(L, -1, lua_pushfstring(L,
                            "field 'mpi_info.%s'", lua_tostring(L, -2))));
        addkv(L, mp, lua_tostring(L, -3), lua_tostring(L, -1));
        lua_settop(L, t + 1);
      }
    }
    lua_pop(L, 1);
  }
  lua_pushlightuserdata(L, (void *)&transport);
  lua_pushlightuserdata(L, mp);
  lua_pushinteger(L, mp->max);
  *box = NULL;                /* the pool has it now */
  return 3;
}

/* Serve one stream on fd 3 with the process pool's worker loop. */
static void serveonce (lua_State *L, int fd) {
  TRACE("serving fd %d", fd);
  if (fd != 3) {
    dup2(fd, 3);
    close(fd);
  }
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cfut");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "_procworker");
  lua_call(L, 0, 0);
  TRACE("served");
  lua_pop(L, 1);
  close(3);
}

/* Wait for the relay to give this process its next stream; -1: none
** will come (the relay is ending). */
static int nextsession (void) {
  int fd;
  pthread_mutex_lock(&mu);
  while (R.sessionfd < 0 && !R.finished && !R.exiting)
    pthread_cond_wait(&cv, &mu);
  fd = R.sessionfd;
  R.sessionfd = -1;
  pthread_mutex_unlock(&mu);
  return fd;
}

/* cfut.mpi._worker(): a spawned worker serves its parent, then MPI ends. */
static int m_worker (lua_State *L) {
  const char *why = startrelay();
  int fd;
  if (why != NULL) return luaL_error(L, "cannot start MPI: %s", why);
  if (R.role != SPAWNED)
    return luaL_error(L, "_worker: this process was not spawned by an "
                      "mpi_pool");
  if ((fd = nextsession()) >= 0) serveonce(L, fd);
  stoprelay();
  return 0;
}

/* A rank other than 0 under mpiexec: serve rank 0's pools until it
** exits, then exit without running the script. */
static void servant (lua_State *L) {
  int fd;
  while ((fd = nextsession()) >= 0) serveonce(L, fd);
  stoprelay();
  fflush(stdout);
  exit(0);
}

static int m_info (lua_State *L) {
  static const char *const roles[] = {"spawn", "spawned", "static",
                                      "servant"};
  lua_createtable(L, 0, 4);
  lua_pushstring(L, roles[R.role]);
  lua_setfield(L, -2, "mode");
  lua_pushinteger(L, R.size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, R.rank);
  lua_setfield(L, -2, "rank");
  lua_pushinteger(L, R.provided);
  lua_setfield(L, -2, "thread_level");
  return 1;
}

int luaopen_cfut_mpi (lua_State *L);

int luaopen_cfut_mpi (lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"_open", m_open}, {"_worker", m_worker}, {"info", m_info}, {NULL, NULL}
  };
  Dl_info dl;
  /* Never unloaded: the relay thread and the exit handler run its code
  ** after a Lua state that loaded it has closed. */
  if (dladdr((void *)luaopen_cfut_mpi, &dl) != 0 && dl.dli_fname != NULL)
    (void)dlopen(dl.dli_fname, RTLD_NOW | RTLD_NODELETE | RTLD_NOLOAD);
  /* A worker being spawned tells its pool before MPI_Init (tr_start). */
  if (getenv(PINGENV) != NULL) {
    ping(getenv(PINGENV));
    unsetenv(PINGENV);
  }
  /* Under mpiexec (-l cfut.mpi), the ranks other than 0 serve from here. */
  if (getenv("OMPI_COMM_WORLD_SIZE") != NULL || getenv("PMI_SIZE") != NULL
      || getenv("PMIX_RANK") != NULL) {
    const char *why = startrelay();
    if (why != NULL) return luaL_error(L, "cannot start MPI: %s", why);
    if (R.role == SERVANT) servant(L);
  }
  luaL_newlib(L, funcs);
  return 1;
}
