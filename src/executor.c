/*
** executor.c: what both executors share: the reference count, the queue
** of futures, the exit watchers, and the process-wide list of executors
** that the end of the script shuts down.
**
** Lock order: g_lock is never held while an executor's own lock is taken
** or while one of its operations runs: the list is copied out first.
*/
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
