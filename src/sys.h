/*
** sys.h: pthread, clock and process wrappers.  Knows nothing about Lua.
** Lock and condition functions abort on errors that cannot happen in a
** correct program (as libuv's uv_mutex_lock does).
*/
#ifndef CFUT_SYS_H
#define CFUT_SYS_H

#include <pthread.h>
#include <stddef.h>

typedef pthread_mutex_t SysMutex;
typedef pthread_cond_t SysCond;

void sys_mutex_init (SysMutex *m);
void sys_mutex_destroy (SysMutex *m);
void sys_lock (SysMutex *m);
void sys_unlock (SysMutex *m);

void sys_cond_init (SysCond *c);      /* uses CLOCK_MONOTONIC */
void sys_cond_destroy (SysCond *c);
void sys_cond_signal (SysCond *c);
void sys_cond_broadcast (SysCond *c);
void sys_cond_wait (SysCond *c, SysMutex *m);
/* Wait until 'deadline' (sys_now() seconds); returns 0 when woken (or
** spuriously), 1 when the deadline passed. */
int sys_cond_waituntil (SysCond *c, SysMutex *m, double deadline);

double sys_now (void);                /* CLOCK_MONOTONIC, seconds */
void sys_sleep (double seconds);      /* no interruption check */
void sys_relax (void);                /* a pause for spin loops */

/* Start a joinable thread; returns 0 or an errno value. */
int sys_thread_start (pthread_t *t, void *(*fn)(void *), void *arg);
void sys_thread_join (pthread_t t);
void sys_thread_setname (const char *name);  /* OS name, cut to 15 bytes */

int sys_cpu_count (void);

#endif
