/*
** executor.c: what both executors share: the reference count, the queue
** of futures, the exit watchers, and the process-wide list of executors
** that the end of the script shuts down.
**
** Lock order: g_lock is never held while an executor's own lock is taken
** or while one of its operations runs: the list is copied out first.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "executor.h"
#include "marshal.h"
#include "sys.h"

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static Executor *g_list;      /* guarded by g_lock */

void fq_push (FutQueue *q, Future **fs, int n) {
  int i;
  for (i = 0; i < n; i++) {
    fut_retain(fs[i]);
    fut_task(fs[i])->next = NULL;
    if (q->tail) fut_task(q->tail)->next = fs[i];
    else q->head = fs[i];
    q->tail = fs[i];
  }
  q->n += n;
}

Future *fq_pop (FutQueue *q) {
  Future *f = q->head;
  if (f == NULL) return NULL;
  q->head = fut_task(f)->next;
  if (q->head == NULL) q->tail = NULL;
  fut_task(f)->next = NULL;
  q->n--;
  return f;
}

Future *fq_takeall (FutQueue *q) {
  Future *head = q->head;
  q->head = q->tail = NULL;
  q->n = 0;
  return head;
}

void ex_failfuture (Future *f, const char *cls, const char *msg) {
  MBuf b;
  size_t len;
  char *data;
  mbuf_init(&b);
  marshal_error(&b, cls, msg);    /* on ENOMEM: an empty failure */
  data = mbuf_steal(&b, &len);
  if (fut_finish(f, 1, data, len, NULL) != 0) free(data);
}

void fq_settle (Future *f, const char *cls, const char *msg) {
  while (f != NULL) {
    Future *next = fut_task(f)->next;
    fut_task(f)->next = NULL;
    fut_droptask(f);
    if (cls == NULL) fut_cancel(f);
    else ex_failfuture(f, cls, msg);
    fut_release(f);
    f = next;
  }
}

int ex_watch (ExitWatch **list, Waiter *w) {
  ExitWatch *x;
  for (x = *list; x != NULL && x->w != w; x = x->next) {}
  if (x != NULL) return 0;
  if ((x = malloc(sizeof *x)) == NULL) return CFUT_ENOMEM;
  waiter_retain(w);
  x->w = w;
  x->next = *list;
  *list = x;
  return 0;
}

void ex_unwatch (ExitWatch *list, int notify) {
  ExitWatch *next;
  for (; list != NULL; list = next) {
    next = list->next;
    if (notify) waiter_notify(list->w);
    waiter_release(list->w);
    free(list);
  }
}

const char *ex_setbroken (Executor *ex, const char *cls, const char *msg) {
  if (!atomic_load(&ex->broken)) {
    ex->broken_cls = cls;
    ex->broken_msg = strdup(msg);
    atomic_store(&ex->broken, 1);
  }
  return ex->broken_msg != NULL ? ex->broken_msg : msg;
}

void ex_init (Executor *ex, const ExecutorOps *ops, int local) {
  ex->ops = ops;
  atomic_init(&ex->refs, 1);
  atomic_init(&ex->broken, 0);
  atomic_init(&ex->handles, 0);
  ex->local = local;
  ex->pertask = 0;
  ex->gnext = NULL;
  ex->broken_cls = NULL;
  ex->broken_msg = NULL;
}

void ex_retain (Executor *ex) {
  atomic_fetch_add_explicit(&ex->refs, 1, memory_order_relaxed);
}

void ex_release (Executor *ex) {
  if (atomic_fetch_sub_explicit(&ex->refs, 1, memory_order_acq_rel) == 1)
    ex->ops->destroy(ex);
}

void ex_register (Executor *ex) {
  ex_retain(ex);
  sys_lock(&g_lock);
  ex->gnext = g_list;
  g_list = ex;
  sys_unlock(&g_lock);
}

void ex_unregister (Executor *ex) {
  Executor **p;
  int found = 0;
  sys_lock(&g_lock);
  for (p = &g_list; *p != NULL; p = &(*p)->gnext) {
    if (*p == ex) {
      *p = ex->gnext;
      found = 1;
      break;
    }
  }
  sys_unlock(&g_lock);
  if (found) ex_release(ex);
}

/* Copy the list out (each entry retained) so that operations run without
** g_lock.  Returns the count; *out is malloc'ed (NULL when empty). */
int ex_list (Executor ***out) {
  Executor *e, **arr;
  int n = 0, i = 0;
  sys_lock(&g_lock);
  for (e = g_list; e != NULL; e = e->gnext) n++;
  arr = n ? malloc((size_t)n * sizeof *arr) : NULL;
  if (arr == NULL) n = 0;
  for (e = g_list; e != NULL && i < n; e = e->gnext) {
    ex_retain(e);
    arr[i++] = e;
  }
  sys_unlock(&g_lock);
  *out = arr;
  return n;
}

void ex_stop_all (void) {
  Executor **arr;
  int i, n = ex_list(&arr);
  for (i = 0; i < n; i++) {
    if (arr[i]->ops->stopall != NULL) arr[i]->ops->stopall(arr[i]);
    else arr[i]->ops->interrupt(arr[i]);
    ex_release(arr[i]);
  }
  free(arr);
}

void ex_shutdown_all (void) {
  Executor **arr;
  int i, n;
  /* Shutting one down may let tasks create more executors: loop. */
  while ((n = ex_list(&arr)) > 0) {
    for (i = 0; i < n; i++) {
      arr[i]->ops->shutdown(arr[i], 1, 0);
      ex_unregister(arr[i]);
      ex_release(arr[i]);
    }
    free(arr);
  }
  ex_timeout_join();
}

void ex_reap (void) {
  Executor **arr;
  int i, n = ex_list(&arr);
  for (i = 0; i < n; i++) {
    if (arr[i]->ops->reap(arr[i])) ex_unregister(arr[i]);
    ex_release(arr[i]);
  }
  free(arr);
}

void ex_interrupt_all (void) {
  Executor **arr;
  int i, n = ex_list(&arr);
  for (i = 0; i < n; i++) {
    arr[i]->ops->interrupt(arr[i]);
    ex_release(arr[i]);
  }
  free(arr);
}

/* {======================================================================
** The task_timeout watchdog
** =======================================================================
** One thread for the whole process: a timed task is rare enough that a
** list scanned in full serves.  wd_lock is innermost but for the future
** locks that fut_stop takes, which it never holds.
*/

typedef struct Watch {
  Future *f;                  /* one reference */
  double deadline, seconds;
} Watch;

static pthread_mutex_t wd_lock = PTHREAD_MUTEX_INITIALIZER;
static SysCond wd_cond;       /* guarded by wd_lock: a new watch, or quit */
static int wd_condok, wd_running, wd_quit;
static pthread_t wd_thread;
static Watch *wd_list;
static int wd_n, wd_cap;

void ex_timeout_msg (char *buf, size_t size, double seconds) {
  snprintf(buf, size, "task ran longer than %g s", seconds);
}

/* Remove entry i (caller holds wd_lock); its reference passes on. */
static Watch wd_take (int i) {
  Watch w = wd_list[i];
  wd_list[i] = wd_list[--wd_n];
  return w;
}

static void *watchdog (void *arg) {
  (void)arg;
  sys_thread_setname("cfut-timeout");
  sys_lock(&wd_lock);
  while (!wd_quit) {
    double now = sys_now(), first = -1;
    int i, due = -1;
    for (i = 0; i < wd_n && due < 0; i++) {
      if (wd_list[i].deadline <= now) due = i;
      else if (first < 0 || wd_list[i].deadline < first)
        first = wd_list[i].deadline;
    }
    if (due >= 0) {
      Watch w = wd_take(due);
      MBuf b;
      char msg[64], *data;
      size_t len;
      sys_unlock(&wd_lock);
      ex_timeout_msg(msg, sizeof msg, w.seconds);
      mbuf_init(&b);
      marshal_error(&b, "TimeoutError", msg);
      data = mbuf_steal(&b, &len);
      if (!fut_stop(w.f, FUT_STOP_TIMEOUT, data, len)) free(data);
      fut_release(w.f);
      sys_lock(&wd_lock);
    }
    else if (first < 0) sys_cond_wait(&wd_cond, &wd_lock);
    else sys_cond_waituntil(&wd_cond, &wd_lock, first);
  }
  sys_unlock(&wd_lock);
  return NULL;
}

int ex_timeout_watch (Future *f, double seconds) {
  int r = 0;
  sys_lock(&wd_lock);
  if (!wd_condok) {
    sys_cond_init(&wd_cond);
    wd_condok = 1;
  }
  if (wd_n == wd_cap) {
    int ncap = wd_cap ? 2 * wd_cap : 16;
    Watch *nl = realloc(wd_list, (size_t)ncap * sizeof *nl);
    if (nl == NULL) r = CFUT_ENOMEM;
    else { wd_list = nl; wd_cap = ncap; }
  }
  if (r == 0 && !wd_running) {
    wd_quit = 0;
    if (sys_thread_start(&wd_thread, watchdog, NULL) != 0) r = CFUT_ETHREAD;
    else wd_running = 1;
  }
  if (r == 0) {
    fut_retain(f);
    wd_list[wd_n].f = f;
    wd_list[wd_n].seconds = seconds;
    wd_list[wd_n++].deadline = sys_now() + seconds;
    sys_cond_signal(&wd_cond);
  }
  sys_unlock(&wd_lock);
  return r;
}

void ex_timeout_unwatch (Future *f) {
  int i;
  Future *found = NULL;
  sys_lock(&wd_lock);
  for (i = 0; i < wd_n; i++)
    if (wd_list[i].f == f) { found = wd_take(i).f; break; }
  sys_unlock(&wd_lock);
  if (found != NULL) fut_release(found);
}

void ex_timeout_join (void) {
  int join;
  sys_lock(&wd_lock);
  join = wd_running;
  if (join) {
    wd_quit = 1;
    sys_cond_signal(&wd_cond);
  }
  sys_unlock(&wd_lock);
  if (!join) return;
  sys_thread_join(wd_thread);
  sys_lock(&wd_lock);
  wd_running = 0;
  while (wd_n > 0) fut_release(wd_take(0).f);
  sys_unlock(&wd_lock);
}

/* }====================================================================== */
