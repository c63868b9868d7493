/*
** sys.c: pthread, clock and process wrappers.
** Errors that cannot happen in a correct program abort (libuv style);
** debug builds use error-checking mutexes.
*/
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sys.h"

static void fail (const char *what, int err) {
  fprintf(stderr, "cfut: %s failed: %s\n", what, strerror(err));
  abort();
}

void sys_mutex_init (SysMutex *m) {
  pthread_mutexattr_t a;
  int err;
  if ((err = pthread_mutexattr_init(&a)) != 0) fail("mutexattr_init", err);
#ifdef CFUT_DEBUG
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
#else
  /* Spin a little before sleeping: our critical sections are a few
  ** pointer moves, shorter than a futex round trip. */
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
#endif
  if ((err = pthread_mutex_init(m, &a)) != 0) fail("mutex_init", err);
  pthread_mutexattr_destroy(&a);
}

void sys_mutex_destroy (SysMutex *m) {
  int err = pthread_mutex_destroy(m);
  if (err != 0) fail("mutex_destroy", err);
}

void sys_lock (SysMutex *m) {
  int err = pthread_mutex_lock(m);
  if (err != 0) fail("mutex_lock", err);
}

void sys_unlock (SysMutex *m) {
  int err = pthread_mutex_unlock(m);
  if (err != 0) fail("mutex_unlock", err);
}

void sys_cond_init (SysCond *c) {
  pthread_condattr_t a;
  int err;
  if ((err = pthread_condattr_init(&a)) != 0) fail("condattr_init", err);
  if ((err = pthread_condattr_setclock(&a, CLOCK_MONOTONIC)) != 0)
    fail("condattr_setclock", err);
  if ((err = pthread_cond_init(c, &a)) != 0) fail("cond_init", err);
  pthread_condattr_destroy(&a);
}

void sys_cond_destroy (SysCond *c) {
  int err = pthread_cond_destroy(c);
  if (err != 0) fail("cond_destroy", err);
}

void sys_cond_signal (SysCond *c) {
  int err = pthread_cond_signal(c);
  if (err != 0) fail("cond_signal", err);
}

void sys_cond_broadcast (SysCond *c) {
  int err = pthread_cond_broadcast(c);
  if (err != 0) fail("cond_broadcast", err);
}

void sys_cond_wait (SysCond *c, SysMutex *m) {
  int err = pthread_cond_wait(c, m);
  if (err != 0) fail("cond_wait", err);
}

int sys_cond_waituntil (SysCond *c, SysMutex *m, double deadline) {
  struct timespec ts;
  int err;
  if (deadline > 1e15) deadline = 1e15;  /* keep tv_sec in range */
  ts.tv_sec = (time_t)deadline;
  ts.tv_nsec = (long)((deadline - (double)ts.tv_sec) * 1e9);
  if (ts.tv_nsec < 0) ts.tv_nsec = 0;
  if (ts.tv_nsec > 999999999) ts.tv_nsec = 999999999;
  err = pthread_cond_timedwait(c, m, &ts);
  if (err == ETIMEDOUT) return 1;
  if (err != 0) fail("cond_timedwait", err);
  return 0;
}

double sys_now (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void sys_sleep (double seconds) {
  struct timespec ts;
  if (seconds <= 0) return;
  ts.tv_sec = (time_t)seconds;
  ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

void sys_relax (void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* The deepest C recursion Lua allows (200 levels of string.gsub
** callbacks) takes about 450 KiB; sanitizers make frames several times
** larger (TSan overflows 1 MiB there). */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define THREAD_STACK (8 * 1024 * 1024)
#else
#define THREAD_STACK (1024 * 1024)
#endif

int sys_thread_start (pthread_t *t, void *(*fn)(void *), void *arg) {
  pthread_attr_t a;
  int err;
  if ((err = pthread_attr_init(&a)) != 0) return err;
  /* Lua's C stack use is bounded by LUAI_MAXCCALLS; 1 MiB is ample and
  ** keeps many workers cheap. */
  pthread_attr_setstacksize(&a, THREAD_STACK);
  err = pthread_create(t, &a, fn, arg);
  pthread_attr_destroy(&a);
  return err;
}

void sys_thread_join (pthread_t t) {
  int err = pthread_join(t, NULL);
  if (err != 0) fail("thread_join", err);
}

void sys_thread_setname (const char *name) {
  char buf[16];
  snprintf(buf, sizeof buf, "%s", name);
  pthread_setname_np(pthread_self(), buf);
}

int sys_cpu_count (void) {
  cpu_set_t set;
  long n;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int c = CPU_COUNT(&set);
    if (c > 0) return c;
  }
  n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}
