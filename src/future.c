/*
** future.c: the C side of futures and waiters.  Knows nothing about Lua.
**
** DESIGN: a future's state only moves forward (PENDING -> RUNNING ->
** FINISHED, or PENDING -> CANCELLED); each move happens under f->lock and
** is published with an atomic store, so readers that only need the state
** (done(), the spin phase of a wait) never lock.  The outcome fields are
** written before the state becomes FINISHED and never change after.
** Waiting is done on the waiter of the waiting Lua state, not on the
** future: one mechanism serves result(), wait(), as_completed(), sleep()
** and the delivery of done-callbacks to the state that added them.
**
** Lock order: executor lock -> future lock -> waiter lock.
*/
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errors.h"
#include "future.h"
#include "sys.h"

typedef struct Listener {
  Waiter *w;                  /* holds one reference */
  int kind;
  struct Listener *next;
} Listener;

struct Future {
  SysMutex lock;
  atomic_int state;           /* written under lock, read anywhere */
  atomic_int refs;
  int failed;                 /* set before FINISHED, read-only after */
  int flags;                  /* how to decode messages: set before the
                                 future is shared, read-only after */
  int oflags;                 /* how to decode the outcome: set with it */
  char *data;                 /* the outcome: idem */
  size_t len;
  char *tb;                   /* idem */
  Listener *listeners;        /* guarded by lock */
  FutStopper stopper;         /* how to stop the running task: lock */
  void *stopud;
  FutTask task;               /* guarded by the owning executor's lock */
  char inl[FUT_INLINE];       /* a small outcome: data points here */
  /* a task message given to fut_new_task follows the struct */
};

struct Waiter {
  SysMutex lock;
  SysCond cond;
  atomic_uint seq;            /* bumped by every notification */
  atomic_int sleeping;        /* the owner is (about to be) in cond wait */
  atomic_int refs;
  Future **ready;             /* guarded by lock */
  int nready, cap;            /* guarded by lock */
  atomic_int efd;             /* eventfd written by each notification, or
                                 -1; set once by the owner, closed by the
                                 last release */
  Waiter *parent;             /* also woken by each notification, or NULL;
                                 set before w is shared, one reference */
};

static atomic_int g_interrupt;
/* The calling thread's stop flag (a worker's; fut_set_stopflag). */
static _Thread_local atomic_int *tl_stop
  __attribute__((tls_model("initial-exec")));   /* read by handlers */
typedef void (*DiscardHook) (const char *data, size_t len);
static _Atomic(DiscardHook) discard_hook;   /* set once, by every state */

/* {======================================================================
** Futures
** ======================================================================= */

void fut_set_discard (void (*hook) (const char *, size_t)) {
  atomic_store(&discard_hook, hook);
}

static Future *alloc (size_t extra) {
  Future *f = malloc(sizeof *f + extra);
  if (f == NULL) return NULL;
  memset(f, 0, sizeof *f);
  f->flags = FUT_FLAGS_LOCAL;
  sys_mutex_init(&f->lock);
  atomic_init(&f->state, FUT_PENDING);
  atomic_init(&f->refs, 1);
  return f;
}

Future *fut_new (void) {
  return alloc(0);
}

Future *fut_new_task (const char *msg, size_t len) {
  Future *f = alloc(len);
  if (f == NULL) return NULL;
  f->task.msg = (char *)(f + 1);
  f->task.len = len;
  memcpy(f->task.msg, msg, len);
  return f;
}

Future *fut_adopt_task (char *msg, size_t len) {
  Future *f = alloc(0);
  if (f == NULL) return NULL;
  f->task.msg = msg;
  f->task.len = len;
  return f;
}

void fut_retain (Future *f) {
  atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

/* Let a message go (decoded with 'flags'): its handle references, then
** (unless it lives inside the future's own allocation) its memory. */
static void freemsg (Future *f, int flags, char *data, size_t len) {
  DiscardHook hook = atomic_load_explicit(&discard_hook, memory_order_relaxed);
  if (data == NULL) return;
  /* Only a message of this process can hold handles. */
  if (hook != NULL && (flags & FUT_FLAGS_LOCAL)) hook(data, len);
  if (data != f->inl && data != (char *)(f + 1)) free(data);
}

void fut_set_flags (Future *f, int flags) {
  f->flags = flags;
}

int fut_flags (Future *f) {
  return fut_isdone(fut_state(f)) ? f->oflags : f->flags;
}

void fut_droptask (Future *f) {
  freemsg(f, f->flags, f->task.msg, f->task.len);
  f->task.msg = NULL;
  f->task.len = 0;
}

void fut_release (Future *f) {
  Listener *l, *next;
  if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
    return;
  for (l = f->listeners; l != NULL; l = next) {
    next = l->next;
    waiter_release(l->w);
    free(l);
  }
  freemsg(f, f->oflags, f->data, f->len);
  freemsg(f, f->flags, f->task.msg, f->task.len);
  free(f->tb);
  sys_mutex_destroy(&f->lock);
  free(f);
}

int fut_state (Future *f) {
  return atomic_load_explicit(&f->state, memory_order_acquire);
}

int fut_state_sync (Future *f) {
  int st;
  sys_lock(&f->lock);
  st = atomic_load_explicit(&f->state, memory_order_relaxed);
  sys_unlock(&f->lock);
  return st;
}

FutTask *fut_task (Future *f) {
  return &f->task;
}

static void notify (Waiter *w, Future *f, int kind);

/* Move f to a final state; the caller holds f->lock and releases it here.
** Listeners are notified after the lock is dropped. */
static void settle (Future *f, int state) {
  Listener *l = f->listeners, *next;
  int pass;
  f->listeners = NULL;
  f->stopper = NULL;          /* the task is over for its executor */
  atomic_store_explicit(&f->state, state, memory_order_release);
  sys_unlock(&f->lock);
  /* Callback listeners first: a state woken by the other kind then finds
  ** the callbacks already queued. */
  for (pass = FUT_LISTEN_CALLBACK; pass >= FUT_LISTEN_WAIT; pass--) {
    for (next = l; next != NULL; next = next->next) {
      int kind = next->kind == FUT_LISTEN_WAKE ? FUT_LISTEN_WAIT : next->kind;
      if (kind == pass) notify(next->w, f, pass);
    }
  }
  for (; l != NULL; l = next) {
    next = l->next;
    waiter_release(l->w);
    free(l);
  }
}

int fut_set_running (Future *f) {
  return fut_set_running_by(f, NULL, NULL);
}

int fut_set_running_by (Future *f, FutStopper fn, void *ud) {
  int st;
  sys_lock(&f->lock);
  st = atomic_load_explicit(&f->state, memory_order_relaxed);
  if (st == FUT_PENDING) {
    atomic_store_explicit(&f->state, FUT_RUNNING, memory_order_release);
    f->stopper = fn;
    f->stopud = ud;
  }
  sys_unlock(&f->lock);
  if (st == FUT_PENDING) return 1;
  return st == FUT_CANCELLED ? 0 : CFUT_ESTATE;
}

int fut_cancel (Future *f) {
  int st;
  sys_lock(&f->lock);
  st = atomic_load_explicit(&f->state, memory_order_relaxed);
  if (st == FUT_PENDING) {
    settle(f, FUT_CANCELLED);
    return 1;
  }
  sys_unlock(&f->lock);
  return st == FUT_CANCELLED;
}

void fut_set_stopper (Future *f, FutStopper fn, void *ud) {
  sys_lock(&f->lock);
  f->stopper = fn;
  f->stopud = ud;
  sys_unlock(&f->lock);
}

int fut_stop (Future *f, int why, char *data, size_t len) {
  int st;
  sys_lock(&f->lock);
  st = atomic_load_explicit(&f->state, memory_order_relaxed);
  if (st == FUT_PENDING) {
    settle(f, FUT_CANCELLED);
    return 1;
  }
  if (st != FUT_RUNNING) {
    sys_unlock(&f->lock);
    return 0;
  }
  if (f->stopper != NULL) f->stopper(f->stopud, f, why);
  f->stopper = NULL;          /* one stop per task */
  if (why == FUT_STOP_TIMEOUT) {
    f->oflags = f->flags;
    f->failed = 1;
    f->data = data;
    f->len = len;
    settle(f, FUT_FINISHED);
  }
  else settle(f, FUT_CANCELLED);
  return 1;
}

void fut_set_stopflag (atomic_int *flag) {
  tl_stop = flag;
}

int fut_stopping (void) {
  atomic_int *s = tl_stop;
  return s != NULL && atomic_load(s) != 0;
}

int fut_finish (Future *f, int failed, char *data, size_t len, char *tb) {
  return fut_finish_as(f, f->flags, failed, data, len, tb);
}

int fut_finish_as (Future *f, int flags, int failed, char *data, size_t len,
                   char *tb) {
  int st;
  sys_lock(&f->lock);
  st = atomic_load_explicit(&f->state, memory_order_relaxed);
  if (fut_isdone(st)) {
    sys_unlock(&f->lock);
    return CFUT_ESTATE;
  }
  f->oflags = flags;
  f->failed = failed;
  f->data = data;
  f->len = len;
  f->tb = tb;
  settle(f, FUT_FINISHED);
  return 0;
}

int fut_finish_small (Future *f, int failed, const char *data, size_t len) {
  int st;
  if (len > FUT_INLINE) return CFUT_ESTATE;
  sys_lock(&f->lock);
  st = atomic_load_explicit(&f->state, memory_order_relaxed);
  if (fut_isdone(st)) {
    sys_unlock(&f->lock);
    return CFUT_ESTATE;
  }
  memcpy(f->inl, data, len);
  f->oflags = f->flags;
  f->failed = failed;
  f->data = f->inl;
  f->len = len;
  settle(f, FUT_FINISHED);
  return 0;
}

int fut_outcome (Future *f, const char **data, size_t *len, const char **tb) {
  *data = f->data;
  *len = f->len;
  *tb = f->tb;
  return f->failed;
}

int fut_listen (Future *f, Waiter *w, int kind) {
  Listener *l = malloc(sizeof *l);
  if (l == NULL) return CFUT_ENOMEM;
  sys_lock(&f->lock);
  if (fut_isdone(atomic_load_explicit(&f->state, memory_order_relaxed))) {
    sys_unlock(&f->lock);
    free(l);
    return 1;
  }
  waiter_retain(w);
  l->w = w;
  l->kind = kind;
  l->next = f->listeners;
  f->listeners = l;
  sys_unlock(&f->lock);
  return 0;
}

void fut_unlisten (Future *f, Waiter *w, int kind) {
  Listener **pl, *found = NULL;
  sys_lock(&f->lock);
  for (pl = &f->listeners; *pl != NULL; pl = &(*pl)->next) {
    if ((*pl)->w == w && (*pl)->kind == kind) {
      found = *pl;
      *pl = found->next;
      break;
    }
  }
  sys_unlock(&f->lock);
  if (found != NULL) {
    waiter_release(found->w);
    free(found);
  }
}

/* }====================================================================== */

/* {======================================================================
** Waiters
** ======================================================================= */

Waiter *waiter_new (void) {
  Waiter *w = calloc(1, sizeof *w);
  if (w == NULL) return NULL;
  sys_mutex_init(&w->lock);
  sys_cond_init(&w->cond);
  atomic_init(&w->refs, 1);
  atomic_init(&w->efd, -1);
  return w;
}

void waiter_retain (Waiter *w) {
  atomic_fetch_add_explicit(&w->refs, 1, memory_order_relaxed);
}

void waiter_release (Waiter *w) {
  int i;
  if (atomic_fetch_sub_explicit(&w->refs, 1, memory_order_acq_rel) != 1)
    return;
  for (i = 0; i < w->nready; i++) fut_release(w->ready[i]);
  free(w->ready);
  if (atomic_load(&w->efd) >= 0) close(atomic_load(&w->efd));
  if (w->parent != NULL) waiter_release(w->parent);
  sys_cond_destroy(&w->cond);
  sys_mutex_destroy(&w->lock);
  free(w);
}

unsigned waiter_seq (Waiter *w) {
  return atomic_load(&w->seq);
}

/* Make w's eventfd readable, if it has one: after f is queued, so that the
** loop's futures.poll() finds it. */
static void wakefd (Waiter *w) {
  int efd = atomic_load(&w->efd);
  if (efd >= 0) {
    uint64_t one = 1;
    ssize_t r = write(efd, &one, sizeof one);
    (void)r;                  /* EAGAIN: the counter is readable anyway */
  }
}

/* Wake w's owner; with a callback listener also queue f on w's ready list.
** A ready entry that cannot be queued for lack of memory is dropped: its
** callbacks then never run (there is no way to report it). */
static void notify (Waiter *w, Future *f, int kind) {
  if (kind == FUT_LISTEN_CALLBACK) {
    sys_lock(&w->lock);
    if (w->nready == w->cap) {
      int ncap = w->cap ? 2 * w->cap : 8;
      Future **nr = realloc(w->ready, (size_t)ncap * sizeof *nr);
      if (nr != NULL) { w->ready = nr; w->cap = ncap; }
    }
    if (w->nready < w->cap) {
      fut_retain(f);
      w->ready[w->nready++] = f;
    }
    atomic_fetch_add(&w->seq, 1);
    sys_cond_signal(&w->cond);
    sys_unlock(&w->lock);
  }
  else {
    atomic_fetch_add(&w->seq, 1);
    /* Pairs with the owner's store of 'sleeping' before its last check of
    ** 'seq' (both sequentially consistent): one of us sees the other. */
    if (atomic_load(&w->sleeping)) {
      sys_lock(&w->lock);
      sys_cond_signal(&w->cond);
      sys_unlock(&w->lock);
    }
  }
  wakefd(w);
  /* No lock of w is held here: the parent's is never taken inside it. */
  if (w->parent != NULL) notify(w->parent, NULL, FUT_LISTEN_WAIT);
}

static int checkwake (Waiter *w, unsigned seq) {
  if (atomic_load(&w->seq) != seq) return 0;
  if (atomic_load_explicit(&g_interrupt, memory_order_relaxed))
    return CFUT_EINTR;
  if (tl_stop != NULL && atomic_load_explicit(tl_stop, memory_order_relaxed))
    return CFUT_EINTR;        /* the task this wait is in is stopped */
  return 1;
}

/* The longest a sleep lasts before the Ctrl-C flag is looked at
** again: signal handlers cannot signal a condition variable. */
#define WAIT_SLICE 0.02
/* How long a waiter spins before sleeping (seconds): about the cost of a
** wake-up here, so a quick answer never pays for one. */
#define WAIT_SPIN 20e-6

int waiter_wait (Waiter *w, unsigned seq, double deadline) {
  double now = sys_now(), spinend = now + WAIT_SPIN;
  int r, i;
  for (i = 1; (r = checkwake(w, seq)) == 1; i++) {
    if ((i & 31) == 0) {
      now = sys_now();
      if (deadline >= 0 && now >= deadline) return CFUT_ETIMEDOUT;
      if (now >= spinend) break;
      sched_yield();            /* let a thread that shares our core run */
    }
    else if (deadline >= 0 && i == 1 && now >= deadline)
      return CFUT_ETIMEDOUT;
    else sys_relax();
  }
  if (r != 1) return r;
  sys_lock(&w->lock);
  atomic_store(&w->sleeping, 1);
  while ((r = checkwake(w, seq)) == 1) {
    double until = now + WAIT_SLICE;
    if (deadline >= 0 && now >= deadline) { r = CFUT_ETIMEDOUT; break; }
    if (deadline >= 0 && deadline < until) until = deadline;
    sys_cond_waituntil(&w->cond, &w->lock, until);
    now = sys_now();
  }
  atomic_store(&w->sleeping, 0);
  sys_unlock(&w->lock);
  return r;
}

int waiter_take_ready (Waiter *w, Future ***list) {
  int n;
  sys_lock(&w->lock);
  n = w->nready;
  *list = w->ready;
  w->ready = NULL;
  w->nready = w->cap = 0;
  sys_unlock(&w->lock);
  return n;
}

void waiter_setparent (Waiter *w, Waiter *parent) {
  waiter_retain(parent);
  w->parent = parent;
}

int waiter_setfd (Waiter *w, int fd) {
  int none = -1;
  return atomic_compare_exchange_strong(&w->efd, &none, fd) ? 0 : CFUT_ESTATE;
}

int waiter_fd (Waiter *w) {
  return atomic_load(&w->efd);
}

void waiter_notify (Waiter *w) {
  notify(w, NULL, FUT_LISTEN_WAIT);
}

void fut_set_interrupt (int on) {
  atomic_store(&g_interrupt, on);
}

int fut_interrupted (void) {
  return atomic_load_explicit(&g_interrupt, memory_order_relaxed);
}

/* }====================================================================== */
