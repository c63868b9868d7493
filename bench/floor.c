/*
** floor.c: what the hardware and the C library allow, as a scale for the
** cfut bench: a condvar ping-pong and a pipe ping-pong between two threads
** (round trip, median), and a mutex + condvar task queue with 2 workers
** (tasks/s for the W1 shape: submit N tasks, then collect every result).
** Prints machine-readable lines `F1 <us>`, `F2 <us>`, `F3 <tasks/s>`.
** Build: cc -O2 -pthread -o floor floor.c
*/
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PING_ROUNDS 10000
#define QUEUE_TASKS 100000
#define QUEUE_WORKERS 2
#define QUEUE_REPS 3

static double now (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void check (int err, const char *what) {
  if (err != 0) {
    fprintf(stderr, "floor: %s: %s\n", what, strerror(err));
    abort();
  }
}

static int cmpdouble (const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median of n samples (sorts them). */
static double median (double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmpdouble);
  return v[n / 2];
}

/* {====================================================== */
/* Condvar ping-pong: a token goes to the peer and back. */

typedef struct Ping {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int turn;          /* guarded by lock: 0 main's turn, 1 peer's, -1 stop */
} Ping;

static void *cv_peer (void *arg) {
  Ping *p = arg;
  check(pthread_mutex_lock(&p->lock), "lock");
  for (;;) {
    while (p->turn == 0)
      check(pthread_cond_wait(&p->cond, &p->lock), "wait");
    if (p->turn < 0) break;
    p->turn = 0;
    check(pthread_cond_signal(&p->cond), "signal");
  }
  check(pthread_mutex_unlock(&p->lock), "unlock");
  return NULL;
}

static double cv_pingpong (void) {
  static double samples[PING_ROUNDS];
  Ping p;
  pthread_t t;
  int i;
  check(pthread_mutex_init(&p.lock, NULL), "mutex_init");
  check(pthread_cond_init(&p.cond, NULL), "cond_init");
  p.turn = 0;
  check(pthread_create(&t, NULL, cv_peer, &p), "pthread_create");
  for (i = 0; i < PING_ROUNDS; i++) {
    double t0 = now();
    check(pthread_mutex_lock(&p.lock), "lock");
    p.turn = 1;
    check(pthread_cond_signal(&p.cond), "signal");
    while (p.turn != 0)
      check(pthread_cond_wait(&p.cond, &p.lock), "wait");
    check(pthread_mutex_unlock(&p.lock), "unlock");
    samples[i] = now() - t0;
  }
  check(pthread_mutex_lock(&p.lock), "lock");
  p.turn = -1;
  check(pthread_cond_signal(&p.cond), "signal");
  check(pthread_mutex_unlock(&p.lock), "unlock");
  check(pthread_join(t, NULL), "join");
  pthread_cond_destroy(&p.cond);
  pthread_mutex_destroy(&p.lock);
  return median(samples, PING_ROUNDS);
}

/* }====================================================== */

/* {====================================================== */
/* Pipe ping-pong: one byte to the peer and back. */

typedef struct Pipes {
  int to_peer[2];
  int to_main[2];
} Pipes;

static void *pipe_peer (void *arg) {
  Pipes *p = arg;
  char c;
  while (read(p->to_peer[0], &c, 1) == 1 && c != 'q') {
    if (write(p->to_main[1], &c, 1) != 1) break;
  }
  return NULL;
}

static double pipe_pingpong (void) {
  static double samples[PING_ROUNDS];
  Pipes p;
  pthread_t t;
  char c = 'x';
  int i;
  if (pipe(p.to_peer) != 0 || pipe(p.to_main) != 0) {
    perror("floor: pipe");
    exit(1);
  }
  check(pthread_create(&t, NULL, pipe_peer, &p), "pthread_create");
  for (i = 0; i < PING_ROUNDS; i++) {
    double t0 = now();
    if (write(p.to_peer[1], &c, 1) != 1 || read(p.to_main[0], &c, 1) != 1) {
      perror("floor: pipe ping-pong");
      exit(1);
    }
    samples[i] = now() - t0;
  }
  c = 'q';
  if (write(p.to_peer[1], &c, 1) != 1) perror("floor: write");
  check(pthread_join(t, NULL), "join");
  close(p.to_peer[0]); close(p.to_peer[1]);
  close(p.to_main[0]); close(p.to_main[1]);
  return median(samples, PING_ROUNDS);
}

/* }====================================================== */

/* {====================================================== */
/* Task queue: a FIFO of heap tasks under one mutex, 2 workers; each task
** has its own done flag that the main thread waits for, in order. */

typedef struct Task {
  struct Task *next;   /* guarded by Queue.lock */
  long in;             /* set before queueing, read-only after */
  long out;            /* written by the worker before done is set */
  int done;            /* guarded by Queue.done_lock */
} Task;

typedef struct Queue {
  pthread_mutex_t lock;       /* lock order: lock, then done_lock */
  pthread_cond_t nonempty;
  Task *head, *tail;          /* guarded by lock */
  int stop;                   /* guarded by lock */
  int idle;                   /* guarded by lock: workers waiting */
  pthread_mutex_t done_lock;
  pthread_cond_t done_cond;
  int waiting;                /* guarded by done_lock: main is waiting */
} Queue;

static void *q_worker (void *arg) {
  Queue *q = arg;
  for (;;) {
    Task *t;
    check(pthread_mutex_lock(&q->lock), "lock");
    while (q->head == NULL && !q->stop) {
      q->idle++;
      check(pthread_cond_wait(&q->nonempty, &q->lock), "wait");
      q->idle--;
    }
    t = q->head;
    if (t == NULL) {  /* stop and drained */
      check(pthread_mutex_unlock(&q->lock), "unlock");
      return NULL;
    }
    q->head = t->next;
    if (q->head == NULL) q->tail = NULL;
    check(pthread_mutex_unlock(&q->lock), "unlock");
    t->out = t->in;  /* the no-op task */
    check(pthread_mutex_lock(&q->done_lock), "lock");
    t->done = 1;
    if (q->waiting) check(pthread_cond_broadcast(&q->done_cond), "bcast");
    check(pthread_mutex_unlock(&q->done_lock), "unlock");
  }
}

static void q_submit (Queue *q, Task *t) {
  t->next = NULL;
  t->done = 0;
  check(pthread_mutex_lock(&q->lock), "lock");
  if (q->tail) q->tail->next = t; else q->head = t;
  q->tail = t;
  if (q->idle > 0) check(pthread_cond_signal(&q->nonempty), "signal");
  check(pthread_mutex_unlock(&q->lock), "unlock");
}

static long q_result (Queue *q, Task *t) {
  check(pthread_mutex_lock(&q->done_lock), "lock");
  while (!t->done) {
    q->waiting = 1;
    check(pthread_cond_wait(&q->done_cond, &q->done_lock), "wait");
    q->waiting = 0;
  }
  check(pthread_mutex_unlock(&q->done_lock), "unlock");
  return t->out;
}

static double queue_throughput (void) {
  Queue q;
  pthread_t w[QUEUE_WORKERS];
  Task *tasks = malloc(sizeof(Task) * QUEUE_TASKS);
  double t0, dt;
  long i, sum = 0;
  int k;
  if (tasks == NULL) { fprintf(stderr, "floor: out of memory\n"); exit(1); }
  memset(&q, 0, sizeof q);
  check(pthread_mutex_init(&q.lock, NULL), "mutex_init");
  check(pthread_cond_init(&q.nonempty, NULL), "cond_init");
  check(pthread_mutex_init(&q.done_lock, NULL), "mutex_init");
  check(pthread_cond_init(&q.done_cond, NULL), "cond_init");
  for (k = 0; k < QUEUE_WORKERS; k++)
    check(pthread_create(&w[k], NULL, q_worker, &q), "pthread_create");
  t0 = now();
  for (i = 0; i < QUEUE_TASKS; i++) {
    tasks[i].in = i;
    q_submit(&q, &tasks[i]);
  }
  for (i = 0; i < QUEUE_TASKS; i++)
    sum += q_result(&q, &tasks[i]);
  dt = now() - t0;
  if (sum != (long)QUEUE_TASKS * (QUEUE_TASKS - 1) / 2) {
    fprintf(stderr, "floor: wrong sum %ld\n", sum);
    exit(1);
  }
  check(pthread_mutex_lock(&q.lock), "lock");
  q.stop = 1;
  check(pthread_cond_broadcast(&q.nonempty), "bcast");
  check(pthread_mutex_unlock(&q.lock), "unlock");
  for (k = 0; k < QUEUE_WORKERS; k++)
    check(pthread_join(w[k], NULL), "join");
  free(tasks);
  return QUEUE_TASKS / dt;
}

/* }====================================================== */

int main (void) {
  double best = 0;
  int r;
  printf("F1 %.2f\n", cv_pingpong() * 1e6);
  printf("F2 %.2f\n", pipe_pingpong() * 1e6);
  for (r = 0; r < QUEUE_REPS; r++) {
    double v = queue_throughput();
    if (v > best) best = v;
  }
  printf("F3 %.0f\n", best);
  return 0;
}
