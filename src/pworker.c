/*
** pworker.c: the worker side of a process pool.  A worker process is the
** interpreter started by ppool.c with `-e "require('cfut')._procworker(P)"`
** (P: the parent's pid) and its socket at fd 3.  It runs every task in one
** fresh worker state (worker.c, as thread workers do) and answers in the
** order of the tasks, several answers per write when several tasks arrived
** together.
**
** Invariants.  One reader owns the socket's input: the Inbox.  Bytes
** enter it only through inread, which may move the buffer; they leave it
** only through inconsume, which moves 'head' (and 'pos', the stream offset
** of 'head') past one whole frame.  A Frame from inpeek points into the
** buffer and is valid until the next inread or inconsume: serve takes a
** frame, answers it (runtask and refuse never read the socket), consumes
** it, and only then reads again.  'mark' is the stream offset the input
** had reached when a Ctrl-C was last noticed (marksigint, only between
** frames): a task frame that starts before it is refused.  'out' holds
** whole answer frames only (answer reserves the room for a frame before
** writing any of it); sendanswers empties it, after the task's stdout
** (Lines), before the worker blocks for input and at exit.
*/
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"

#include "errors.h"
#include "lcfut.h"
#include "marshal.h"
#include "ppool.h"
#include "worker.h"

#define FD 3
#define MINREAD 4096          /* room for at least this much per read */
#define INTERRUPTED 1         /* nextframe: a Ctrl-C came while waiting */
#define LONGLINE 65536        /* a line without end this long goes out */

static volatile sig_atomic_t gotsigint;

/*
** Stops (PP_STOPSIG, its value a task id).  The handler notes the id in
** 'stopped' (the ids of the last STOPRING stops: more than the tasks a
** worker holds at once) and, when it is the running task's, sets the stop
** flag and hooks the running Lua code.  runtask sets 'current' before it
** looks in 'stopped': a stop lands in one place or the other.
*/
#define STOPRING 256
static atomic_int stopflag;             /* this process's fut_set_stopflag */
#define NOTASK UINT64_MAX             /* no id: no task, no stop */
static _Atomic uint64_t current;        /* the running task's id, or NOTASK */
static _Atomic uint64_t stopped[STOPRING];
static atomic_uint nstopped;

/*
** Answers wait in 'out' for the next time the worker waits for input (a
** batch per write).  But the parent kills a worker whose stopped task is
** not answered within its grace (ppool.c, STOP_GRACE), and the task it
** takes for running may be one that finished while later ones ran, its
** answer kept back: it would kill the worker and run those again.  So
** once a stop came (any: for this task, one before it, one after it) the
** worker is 'eager' for the rest of its life: each answer goes out at
** once, and the answers held when the stop came go out at the running
** task's next Lua instruction (flushnow, in the hook: sendout).  (Not only
** until it next waits for input: tasks sent ahead may still be on their
** way then, the stopped one among them.)  A plain PP_STOPSIG (no value: an
** MPI worker's relay carries none) does only that.
*/
static atomic_int eager, flushnow;
static struct Conn *theconn;  /* serve's, for sendout */
static _Thread_local int serving;   /* the thread that owns theconn */

static void onstop (int sig, siginfo_t *si, void *uc) {
  uint64_t id = NOTASK;
  (void)sig; (void)uc;
  atomic_store(&eager, 1);
  atomic_store(&flushnow, 1);
  if (si->si_code == SI_QUEUE) {
    id = (uint64_t)(uintptr_t)si->si_value.sival_ptr;
    atomic_store(&stopped[atomic_fetch_add(&nstopped, 1) % STOPRING], id);
  }
  if (id != NOTASK && atomic_load(&current) == id)
    atomic_store(&stopflag, 1);
  worker_sigint();            /* the hook: sendout, then the stop */
}

static int wasstopped (uint64_t id) {
  int i;
  for (i = 0; i < STOPRING; i++)
    if (atomic_load(&stopped[i]) == id) return 1;
  return 0;
}

static void onsigint (int sig) {
  (void)sig;
  gotsigint = 1;              /* what was sent before is dropped */
  fut_set_interrupt(1);       /* waits in the task raise */
  worker_sigint();            /* running Lua raises */
}

/* {======================================================================
** The task's stdout: whole lines to fd 1
** =======================================================================
** The parent and the other workers write to the same fd 1, often a pipe.
** stdio would cut a line where its buffer fills, and another process's
** write would land in the middle.  So stdout is a stream whose bytes
** collect here and go out as whole lines, at most PIPE_BUF bytes a write
** (what a pipe takes in one piece) unless one line is longer.  On a
** terminal each line goes at once, as stdio's line buffering did.
*/

typedef struct Lines {
  char *buf;
  size_t len, cap;
  int eager;                  /* fd 1 is a terminal: no batching */
} Lines;

static Lines lines;           /* the process's one stdout */

enum { BATCH, WHOLE, ALL };   /* what linesdrain writes: see cut */

/* Write s[0 .. n) to fd 1; dropped if fd 1 fails (SIGPIPE ends us as it
** would end a thread worker's process). */
static void out1 (const char *s, size_t n) {
  while (n > 0) {
    ssize_t k = write(1, s, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return;
    s += k;
    n -= (size_t)k;
  }
}

/* How much of s[0 .. n) goes out in the next write: whole lines, at most
** PIPE_BUF bytes unless one line is longer; 0 to wait for more.  BATCH
** waits for PIPE_BUF bytes, WHOLE does not, ALL sends a partial line too. */
static size_t cut (const char *s, size_t n, int how) {
  const char *nl;
  if (n <= PIPE_BUF && how == ALL) return n;
  if (n < PIPE_BUF && how == BATCH) return 0;
  nl = memrchr(s, '\n', n < PIPE_BUF ? n : PIPE_BUF);
  if (nl != NULL || (nl = memchr(s, '\n', n)) != NULL)
    return (size_t)(nl - s) + 1;
  return (how == ALL || n >= LONGLINE) ? n : 0;
}

/* Write to fd 1 what 'how' says is ready. */
static void linesdrain (Lines *o, int how) {
  size_t p = 0, k;
  while (p < o->len && (k = cut(o->buf + p, o->len - p, how)) > 0) {
    out1(o->buf + p, k);
    p += k;
  }
  if (p == 0) return;
  memmove(o->buf, o->buf + p, o->len - p);
  o->len -= p;
}

static ssize_t lineswrite (void *ud, const char *s, size_t n) {
  Lines *o = ud;
  if (o->cap - o->len < n) {
    size_t ncap = o->cap ? o->cap : 2 * PIPE_BUF;
    char *nb;
    while (ncap - o->len < n) ncap *= 2;
    if ((nb = realloc(o->buf, ncap)) == NULL) {
      linesdrain(o, ALL);     /* no memory: let them go as they are */
      out1(s, n);
      return (ssize_t)n;
    }
    o->buf = nb;
    o->cap = ncap;
  }
  memcpy(o->buf + o->len, s, n);
  o->len += n;
  if (o->eager && memchr(s, '\n', n) != NULL) linesdrain(o, WHOLE);
  else if (o->len >= PIPE_BUF) linesdrain(o, BATCH);
  return (ssize_t)n;
}

/* Make stdout that stream (before the worker state's io library takes
** it).  Unbuffered: each write reaches lineswrite at once. */
static void linesopen (void) {
  cookie_io_functions_t io = { NULL, lineswrite, NULL, NULL };
  FILE *f = fopencookie(&lines, "w", io);
  if (f == NULL) return;      /* keep stdio's stdout */
  lines.eager = isatty(1);
  setvbuf(f, NULL, _IONBF, 0);
  fflush(stdout);
  stdout = f;
}

/* }====================================================================== */

/* {======================================================================
** The socket's input: one buffer, one reader
** ======================================================================= */

typedef struct Inbox {
  unsigned char *buf;
  size_t head, len, cap;      /* the bytes not consumed: buf[head .. len) */
  uint64_t pos;               /* bytes consumed so far */
} Inbox;

typedef struct Frame {
  int type;
  const unsigned char *body;  /* in the Inbox: see the invariants */
  size_t blen, size;          /* the body's length; the whole frame's */
  uint64_t at;                /* its offset in the stream */
} Frame;

/* Is a whole frame at the head?  1 with *fr set; 0 when *need more bytes
** are needed; -1 when its length is malformed. */
static int inpeek (const Inbox *in, Frame *fr, size_t *need) {
  size_t have = in->len - in->head;
  uint64_t flen = 0;
  int r = (have > 0) ? ppool_frame(in->buf + in->head, have, &flen) : 0;
  *need = MINREAD;
  if (r < 0) return -1;
  if (r == 0) {
    if (flen > 0) *need = (size_t)(8 + flen - have);
    return 0;
  }
  fr->type = in->buf[in->head + 8];
  fr->body = in->buf + in->head + PP_HEADER;
  fr->blen = (size_t)flen - 1;
  fr->size = 8 + (size_t)flen;
  fr->at = in->pos;
  return 1;
}

static void inconsume (Inbox *in, const Frame *fr) {
  in->head += fr->size;
  in->pos += fr->size;
}

/* Read once, with room for 'need' more bytes (the held ones move to the
** front; the buffer may move).  1: bytes came; 0: end of file; 2: none
** for now (not blocking, or a signal); -1: error or no memory. */
static int inread (Inbox *in, size_t need, int block) {
  ssize_t n;
  if (in->head > 0) {
    memmove(in->buf, in->buf + in->head, in->len - in->head);
    in->len -= in->head;
    in->head = 0;
  }
  if (need < MINREAD) need = MINREAD;
  if (in->cap - in->len < need) {
    size_t ncap = in->cap ? in->cap : 65536;
    unsigned char *nb;
    while (ncap - in->len < need) ncap *= 2;
    if ((nb = realloc(in->buf, ncap)) == NULL) return -1;
    in->buf = nb;
    in->cap = ncap;
  }
  n = recv(FD, in->buf + in->len, in->cap - in->len, block ? 0 : MSG_DONTWAIT);
  if (n > 0) {
    in->len += (size_t)n;
    return 1;
  }
  if (n == 0) return 0;
  return (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) ? 2 : -1;
}

/* }====================================================================== */

typedef struct Conn {
  Inbox in;
  MBuf out;                   /* whole answer frames not written yet */
  uint64_t mark;              /* tasks starting before this are refused */
} Conn;

/* Write the task's output, then the answers; -1 if the parent is gone. */
static int sendanswers (Conn *c) {
  size_t pos = 0;
  fflush(stdout);
  linesdrain(&lines, ALL);      /* a task's output before its answer */
  while (pos < c->out.len) {
    ssize_t n = send(FD, c->out.data + pos, c->out.len - pos, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    pos += (size_t)n;
  }
  c->out.len = 0;
  return 0;
}

/* The hook's part (worker_sethookfn): send the answers held when a stop
** came.  At a Lua instruction of the task, so 'out' and the task's stdout
** are between writes. */
static void sendout (void) {
  /* (a thread pool's worker inside this process runs the hook too) */
  if (serving && atomic_exchange(&flushnow, 0) && theconn != NULL)
    (void)sendanswers(theconn);   /* a parent gone: seen at the next read */
}

/* The next whole frame (after sending the answers when the worker must
** wait for it): its type, 0 at EOF, -1 on a bad frame, or INTERRUPTED
** when a Ctrl-C came during the wait. */
static int nextframe (Conn *c, Frame *fr) {
  for (;;) {
    size_t need;
    int r = inpeek(&c->in, fr, &need);
    if (r != 0) return r < 0 ? -1 : fr->type;
    if (sendanswers(c) != 0) return 0;
    r = inread(&c->in, need, 1);
    if (r == 0) return c->in.len == c->in.head ? 0 : -1;
    if (r < 0) return -1;
    if (r == 2 && gotsigint) return INTERRUPTED;
  }
}

static void addframe (MBuf *b, int type, size_t bodylen) {
  unsigned char h[PP_HEADER];
  put64(h, (uint64_t)bodylen + 1);
  h[8] = (unsigned char)type;
  (void)mbuf_add(b, h, sizeof h);     /* the caller reserved the room */
}

/*
** Queue the answer to the task with 'id': the whole frame, or, when there
** is no memory for it, a failure without its error value (the parent
** reports "error value was lost: not enough memory").  -1 when not even
** that fits; nothing was added then.
*/
static int answer (Conn *c, const unsigned char *id, int failed,
                   const char *tb, size_t tblen, const char *data,
                   size_t dlen) {
  unsigned char head[13];
  if (tblen > 0xffffffffu ||
      mbuf_reserve(&c->out, PP_HEADER + sizeof head + tblen + dlen) != 0) {
    if (mbuf_reserve(&c->out, PP_HEADER + sizeof head) != 0) return -1;
    failed = 1;
    tblen = dlen = 0;
  }
  memcpy(head, id, 8);
  head[8] = (unsigned char)failed;
  head[9] = (unsigned char)tblen;
  head[10] = (unsigned char)(tblen >> 8);
  head[11] = (unsigned char)(tblen >> 16);
  head[12] = (unsigned char)(tblen >> 24);
  addframe(&c->out, 'r', sizeof head + tblen + dlen);
  (void)mbuf_add(&c->out, head, sizeof head);
  (void)mbuf_add(&c->out, tb, tblen);
  (void)mbuf_add(&c->out, data, dlen);
  return 0;
}

/* Run one task frame and queue its answer. */
static int runtask (lua_State *L, Conn *c, const Frame *fr) {
  Future *f;
  const char *data, *tb;
  size_t dlen;
  int failed, r;
  uint64_t id;
  if (fr->blen < 8 || (f = fut_new()) == NULL) return -1;
  id = get64(fr->body);
  atomic_store(&stopflag, 0);
  atomic_store(&current, id);
  if (wasstopped(id)) atomic_store(&stopflag, 1);  /* before it started */
  fut_set_running(f);
  fut_set_flags(f, 0);
  /* No collection here after a big task (as thread workers do): measured,
  ** it only slows the next trip of a process worker. */
  if (!atomic_load(&stopflag))
    (void)worker_run(L, f, (const char *)fr->body + 8, fr->blen - 8, 0,
                     NULL, NULL);
  atomic_store(&current, NOTASK);
  fut_set_interrupt(0);       /* a Ctrl-C ends at the task it stopped */
  failed = fut_outcome(f, &data, &dlen, &tb);
  if (!fut_isdone(fut_state(f)) || fut_state(f) == FUT_CANCELLED) {
    /* stopped (its future, in the parent, is settled already): a failure
    ** without a value, which the parent drops */
    failed = 1;
    data = tb = NULL;
    dlen = 0;
  }
  atomic_store(&stopflag, 0);
  r = answer(c, fr->body, failed, tb, tb != NULL ? strlen(tb) : 0, data,
             dlen);
  if (r == 0 && atomic_load(&eager)) {      /* a stop came: at once */
    atomic_store(&flushnow, 0);
    if (sendanswers(c) != 0) r = -1;
  }
  fut_release(f);
  if (r == 0) worker_poll(L);
  return r;
}

/* Answer a task without running it: it fails with 'why'. */
static int refuse (lua_State *L, Conn *c, const Frame *fr, const char *why) {
  MBuf m;
  char err[64];
  int r;
  if (fr->blen < 8) return -1;
  mbuf_init(&m);
  lua_pushstring(L, why);
  if (marshal_encode(L, -1, 1, 0, "error value", 1, &m, err, sizeof err) != 0)
    m.len = 0;                /* sent without its value */
  lua_pop(L, 1);
  r = answer(c, fr->body, 1, NULL, 0, m.data, m.len);
  mbuf_free(&m);
  return r;
}

/* A Ctrl-C: the tasks that have arrived, whole or in part, were sent
** before the parent cancelled its queue; they are refused. */
static void marksigint (Conn *c) {
  gotsigint = 0;
  while (inread(&c->in, 0, 0) == 1) {}
  c->mark = c->in.pos + (c->in.len - c->in.head);
  fut_set_interrupt(0);
}

/* Serve task frames until the parent closes.  After a Ctrl-C the tasks
** that had already arrived are answered "interrupted!" without running. */
static void serve (lua_State *W, Conn *c) {
  for (;;) {
    Frame fr;
    int t, r;
    if (gotsigint) marksigint(c);
    if ((t = nextframe(c, &fr)) == INTERRUPTED) continue;
    if (t != 'T') return;
    if (fr.at < c->mark) r = refuse(W, c, &fr, "interrupted!");
    else r = runtask(W, c, &fr);
    inconsume(&c->in, &fr);   /* fr points nowhere from here on */
    if (r != 0) return;
  }
}

/* The initializer frame: 0 when it ran (or there is none). */
static int runinit (lua_State *L, Conn *c) {
  Frame fr;
  char *err = NULL;
  int t;
  while ((t = nextframe(c, &fr)) == INTERRUPTED) {}
  if (t != 'I') return -1;
  if (fr.blen > 0 &&
      worker_init(L, (const char *)fr.body, fr.blen, 0, &err) != 0) {
    const char *msg = err ? err : "(no message)";
    if (mbuf_reserve(&c->out, PP_HEADER + strlen(msg)) == 0) {
      addframe(&c->out, 'F', strlen(msg));
      (void)mbuf_add(&c->out, msg, strlen(msg));
      sendanswers(c);
    }
    free(err);
    return -1;
  }
  inconsume(&c->in, &fr);
  if (mbuf_reserve(&c->out, PP_HEADER) != 0) return -1;
  addframe(&c->out, 'R', 0);
  /* At once, not with the first answer: the parent counts a task's
  ** task_timeout, and may signal a stop, from here on. */
  return sendanswers(c);
}

/* A worker state with the parent's package.path and cpath, as it set them
** (passed in the environment; this program's own are the fallback).  NULL
** and *err (malloc'ed, or NULL for lack of memory) when it cannot be made. */
static lua_State *newworkerstate (lua_State *L, char **err) {
  const char *path, *cpath;
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_getfield(L, -2, "cpath");
  if ((path = getenv("LUA_PATH_5_4")) == NULL) path = lua_tostring(L, -2);
  if ((cpath = getenv("LUA_CPATH_5_4")) == NULL) cpath = lua_tostring(L, -1);
  return worker_newstate(path, cpath, "MainThread", err);
}

/* cfut._procworker([parent]): serve the parent on fd 3 until it closes. */
static int m_procworker (lua_State *L) {
  lua_Integer parent = luaL_optinteger(L, 1, 0);
  struct stat st;
  struct sigaction sa;
  lua_State *W;
  char *err;
  Conn c;
  if (fstat(FD, &st) != 0 || !S_ISSOCK(st.st_mode))
    return luaL_error(L, "_procworker: fd 3 is not a worker socket");
  /* A parent killed (SIGTERM, SIGKILL, SIGPIPE...) cannot end its workers:
  ** the kernel does, even in the middle of a task.  The manager thread
  ** that started this worker only exits once its workers have ended.  A
  ** parent that died before this call sends no signal: this process has
  ** another parent by now. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (parent != 0 && getppid() != (pid_t)parent) return 0;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = onsigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  {  /* before the handler: no id is stopped yet */
    int i;
    atomic_store(&current, NOTASK);
    for (i = 0; i < STOPRING; i++) atomic_store(&stopped[i], NOTASK);
  }
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = onstop;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(PP_STOPSIG, &sa, NULL);
  fut_set_stopflag(&stopflag);
#ifdef CFUT_FAILALLOC
  fa_startworker();
#endif
  linesopen();
  if ((W = newworkerstate(L, &err)) == NULL) {
    char why[2048];             /* err is freed before raising */
    snprintf(why, sizeof why, "%s", worker_nostate(err));
    free(err);
    return luaL_error(L, "%s", why);
  }
  memset(&c, 0, sizeof c);
  mbuf_init(&c.out);
  theconn = &c;
  serving = 1;
  worker_sethookfn(sendout);
  if (runinit(W, &c) == 0) {
    serve(W, &c);
    sendanswers(&c);
  }
  worker_close(W);
  theconn = NULL;
  fflush(stdout);
  linesdrain(&lines, ALL);
  free(c.in.buf);
  mbuf_free(&c.out);
  close(FD);
  return 0;
}

void cfut_openprocworker (lua_State *L) {
  lua_pushcfunction(L, m_procworker);
  lua_setfield(L, -2, "_procworker");
}
