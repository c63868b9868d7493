/*
** pworker.c: the worker side of a process pool.  A worker process is the
** interpreter started by ppool.c with `-e "require('cfut')._procworker()"`
** and its socket at fd 3.  It runs every task in one fresh worker state
** (worker.c, as thread workers do) and answers in the order of the tasks,
** several answers per write when several tasks arrived together.
*/
#include <errno.h>
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

typedef struct Conn {
  unsigned char *in;          /* bytes read, not handled yet */
  size_t start, len, cap;     /* in[start .. len) */
  MBuf out;                   /* answers not written yet */
} Conn;

static volatile sig_atomic_t gotsigint;

static void onsigint (int sig) {
  (void)sig;
  gotsigint = 1;              /* what was sent before is dropped */
  fut_set_interrupt(1);       /* waits in the task raise */
  worker_sigint();            /* running Lua raises */
}

/* Read without blocking whatever the parent has sent so far. */
static void slurp (Conn *c) {
  for (;;) {
    ssize_t n;
    if (c->cap - c->len < 4096) {
      size_t ncap = c->cap ? 2 * c->cap : 65536;
      unsigned char *nb = realloc(c->in, ncap);
      if (nb == NULL) return;
      c->in = nb;
      c->cap = ncap;
    }
    n = recv(FD, c->in + c->len, c->cap - c->len, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    c->len += (size_t)n;
  }
}

/* Write all of b to the parent; -1 if it is gone. */
static int writeall (MBuf *b) {
  size_t pos = 0;
  fflush(stdout);             /* the task's output before its answer */
  while (pos < b->len) {
    ssize_t n = send(FD, b->data + pos, b->len - pos, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    pos += (size_t)n;
  }
  b->len = 0;
  return 0;
}

/* The next complete frame, reading (and first writing the pending
** answers) when none is buffered.  Returns its type, 0 at EOF, -1 on a
** bad frame; *body and *blen describe it. */
static int nextframe (Conn *c, const unsigned char **body, size_t *blen) {
  for (;;) {
    size_t have = c->len - c->start;
    uint64_t flen = 0;
    ssize_t n;
    int r = (c->in != NULL) ? ppool_frame(c->in + c->start, have, &flen) : 0;
    if (r < 0) return -1;
    if (flen > 0) {
      if (r == 1) {
        int type = c->in[c->start + 8];
        *body = c->in + c->start + PP_HEADER;
        *blen = (size_t)flen - 1;
        c->start += 8 + (size_t)flen;
        return type;
      }
      if (c->start + 8 + flen > c->cap) {       /* make room */
        size_t need = 8 + (size_t)flen;
        memmove(c->in, c->in + c->start, have);
        c->len = have;
        c->start = 0;
        if (need > c->cap) {
          unsigned char *nb = realloc(c->in, need);
          if (nb == NULL) return -1;
          c->in = nb;
          c->cap = need;
        }
      }
    }
    else if (c->start > 0) {
      memmove(c->in, c->in + c->start, have);
      c->len = have;
      c->start = 0;
    }
    if (c->out.len > 0 && writeall(&c->out) != 0) return 0;
    if (c->cap - c->len < 4096) {
      size_t ncap = c->cap ? 2 * c->cap : 65536;
      unsigned char *nb = realloc(c->in, ncap);
      if (nb == NULL) return -1;
      c->in = nb;
      c->cap = ncap;
    }
    n = recv(FD, c->in + c->len, c->cap - c->len, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return have == 0 && n == 0 ? 0 : -1;
    c->len += (size_t)n;
  }
}

static int addframe (MBuf *b, int type, size_t bodylen) {
  unsigned char h[PP_HEADER];
  put64(h, (uint64_t)bodylen + 1);
  h[8] = (unsigned char)type;
  return mbuf_add(b, h, sizeof h);
}

/* Run one task frame and queue its answer. */
static int runtask (lua_State *L, Conn *c, const unsigned char *b,
                    size_t len) {
  Future *f;
  const char *data, *tb;
  size_t dlen, tblen;
  unsigned char head[13];
  int failed;
  if (len < 8 || (f = fut_new()) == NULL) return -1;
  fut_set_running(f);
  fut_set_flags(f, 0);
  /* No collection here after a big task (as thread workers do): measured,
  ** it only slows the next trip of a process worker. */
  (void)worker_run(L, f, (const char *)b + 8, len - 8, 0, NULL, NULL);
  fut_set_interrupt(0);       /* a Ctrl-C ends at the task it stopped */
  failed = fut_outcome(f, &data, &dlen, &tb);
  tblen = tb != NULL ? strlen(tb) : 0;
  memcpy(head, b, 8);         /* the task's id */
  head[8] = (unsigned char)failed;
  head[9] = (unsigned char)tblen;
  head[10] = (unsigned char)(tblen >> 8);
  head[11] = (unsigned char)(tblen >> 16);
  head[12] = (unsigned char)(tblen >> 24);
  if (addframe(&c->out, 'r', sizeof head + tblen + dlen) != 0 ||
      mbuf_add(&c->out, head, sizeof head) != 0 ||
      (tblen && mbuf_add(&c->out, tb, tblen) != 0) ||
      (dlen && mbuf_add(&c->out, data, dlen) != 0)) {
    fut_release(f);
    return -1;
  }
  fut_release(f);
  worker_poll(L);
  return 0;
}

/* Answer a task without running it: it fails with 'why'. */
static int refuse (lua_State *L, Conn *c, const unsigned char *b, size_t len,
                   const char *why) {
  MBuf m;
  unsigned char head[13];
  char err[64];
  int r;
  if (len < 8) return -1;
  mbuf_init(&m);
  lua_pushstring(L, why);
  r = marshal_encode(L, -1, 1, 0, "error value", 1, &m, err, sizeof err);
  lua_pop(L, 1);
  memcpy(head, b, 8);
  head[8] = 1;
  memset(head + 9, 0, 4);     /* no traceback */
  if (r == 0) r = addframe(&c->out, 'r', sizeof head + m.len);
  if (r == 0) r = mbuf_add(&c->out, head, sizeof head);
  if (r == 0) r = mbuf_add(&c->out, m.data, m.len);
  mbuf_free(&m);
  return r;
}

/* Serve task frames until the parent closes.  After a Ctrl-C the tasks
** that had already arrived are answered "interrupted!" without running
** (the parent cancelled its queue; these were sent ahead of it). */
static void serve (lua_State *W, Conn *c) {
  const unsigned char *b;
  size_t len, drop = 0;
  while (nextframe(c, &b, &len) == 'T') {
    size_t fsize = PP_HEADER + len;
    if (gotsigint) {
      gotsigint = 0;
      slurp(c);
      drop = fsize + (c->len - c->start);
      fut_set_interrupt(0);
    }
    if (drop >= fsize) {
      drop -= fsize;
      if (refuse(W, c, b, len, "interrupted!") != 0) break;
      continue;
    }
    drop = 0;
    if (runtask(W, c, b, len) != 0) break;
  }
}

/* The initializer frame: 0 when it ran (or there is none). */
static int runinit (lua_State *L, Conn *c) {
  const unsigned char *b;
  size_t len;
  char *err = NULL;
  int r;
  if (nextframe(c, &b, &len) != 'I') return -1;
  if (len > 0 && worker_init(L, (const char *)b, len, 0, &err) != 0) {
    const char *msg = err ? err : "(no message)";
    addframe(&c->out, 'F', strlen(msg));
    mbuf_add(&c->out, msg, strlen(msg));
    writeall(&c->out);
    free(err);
    return -1;
  }
  r = addframe(&c->out, 'R', 0);
  return r;
}

/* cfut._procworker(): serve the parent on fd 3 until it closes. */
static int m_procworker (lua_State *L) {
  const char *path, *cpath;
  struct stat st;
  struct sigaction sa;
  lua_State *W;
  char *err;
  Conn c;
  pid_t parent = getppid();
  if (fstat(FD, &st) != 0 || !S_ISSOCK(st.st_mode))
    return luaL_error(L, "_procworker: fd 3 is not a worker socket");
  /* A parent killed (SIGTERM, SIGKILL, SIGPIPE...) cannot end its workers:
  ** the kernel does, even in the middle of a task.  The manager thread
  ** that started this worker only exits once its workers have ended. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) return 0;    /* it died before that */
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = onsigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
#ifdef CFUT_FAILALLOC
  fa_startworker();
#endif
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_getfield(L, -2, "cpath");
  /* The parent's paths, as it set them: this program's package.path may
  ** have more (the cfut host adds the lua/ of its build tree). */
  if ((path = getenv("LUA_PATH_5_4")) == NULL) path = lua_tostring(L, -2);
  if ((cpath = getenv("LUA_CPATH_5_4")) == NULL) cpath = lua_tostring(L, -1);
  W = worker_newstate(path, cpath, "MainThread", &err);
  if (W == NULL) {
    char why[2048];             /* err is freed before raising */
    snprintf(why, sizeof why, "%s", worker_nostate(err));
    free(err);
    return luaL_error(L, "%s", why);
  }
  memset(&c, 0, sizeof c);
  mbuf_init(&c.out);
  if (runinit(W, &c) == 0) {
    serve(W, &c);
    if (c.out.len > 0) writeall(&c.out);
  }
  worker_close(W);
  free(c.in);
  mbuf_free(&c.out);
  close(FD);
  return 0;
}

void cfut_openprocworker (lua_State *L) {
  lua_pushcfunction(L, m_procworker);
  lua_setfield(L, -2, "_procworker");
}
