/* SPDX-License-Identifier: MIT */
/*
 * sched_types.h — the scheduler's state (scheduler.h says how it works):
 * workers ("P"), threads ("M") and the pool.  Types only: the VM embeds
 * isola__sched (vm.h), and what includes vm.h needs not include the
 * scheduler's functions.
 */
#ifndef ISOLA_SCHED_TYPES_H
#define ISOLA_SCHED_TYPES_H

#include "internal.h"

#define ISOLA__RUNQ_SIZE 256u

struct isola__worker {
  alignas(ISOLA__CACHE_LINE) _Atomic uint32_t rq_head; /* owner and thieves */
  alignas(ISOLA__CACHE_LINE) _Atomic uint32_t rq_tail; /* written by owner */
  _Atomic(isola__isolate *) rq[ISOLA__RUNQ_SIZE];
  /* The owner fills and takes it, a thief takes it with a CAS; the take
   * is a plain load and store unless a thief is at work (take_seq, odd
   * while the owner takes; thieves, counted while one tries: scheduler.c's
   * "runnext"). */
  alignas(ISOLA__CACHE_LINE) _Atomic(isola__isolate *) runnext;
  _Atomic uint32_t take_seq;
  _Atomic uint32_t thieves;
  /* The fields below belong to the thread holding the worker. */
  unsigned streak;  /* isolates in a row taken from runnext */
  uint32_t tick;    /* turns to the next that looks at the global queue */
  uint32_t id;
  isola__worker *idle_next; /* idle list, under sched lock */
  /* What other threads last saw of st_turns, and when (scheduler.c's
   * stuck_for); any thread writes them, relaxed: a lost update only
   * delays a steal. */
  alignas(ISOLA__CACHE_LINE) _Atomic uint64_t seen_turns;
  _Atomic uint64_t seen_at;
  /* The same for runnext: which isolate was seen in it, and since when
   * (scheduler.c's runnext_waited). */
  _Atomic uintptr_t seen_next;
  _Atomic uint64_t seen_next_at;
  /* Counters for snapshots (stats.h), on a line of their own: turns,
   * steals and cur by the thread holding the worker; parks, wakes and
   * idle under the sched lock.  cur is the address of the isolate whose
   * turn it runs (0: none), only ever compared with the addresses of
   * isolates a snapshot reached, never followed (a store of a register
   * per turn, where its control port cost a load and more); since when
   * the turn began (isolate stats). */
  alignas(ISOLA__CACHE_LINE) _Atomic uint64_t st_turns;
  _Atomic uint64_t st_steals, st_parks, st_wakes;
  _Atomic uint64_t st_cur, st_since;
  _Atomic uint32_t st_idle;
};

struct isola__thread {
  pthread_t pt;
  isola__worker *w;        /* held worker, or NULL; this thread only */
  _Atomic uint32_t wake;   /* futex word: set to 1 to wake the thread */
  _Atomic uint32_t sleeping; /* 1 while blocked in the futex */
  isola__worker *handoff;  /* worker given by the waker; under sched lock */
  bool idle;               /* on the idle thread list; under sched lock */
  isola__epoch_rec *rec;
  bool online;             /* epoch record online; this thread only */
  bool spinning;           /* counted in nspinning; this thread only */
  bool pinned;             /* a root isolate's thread, outside the pool */
  int blocking;            /* isola_blocking_begin() nesting */
  isola__thread *idle_next; /* idle thread list, under sched lock */
  isola__thread *all_next;  /* every pool thread, under sched lock */
};

typedef struct isola__sched {
  unsigned nworkers;
  isola__worker *workers;
  unsigned idle_timeout_ms;
  bool fence_heavy; /* isola__plat_fence_heavy() works: plain runnext takes */

  /* Hot counters read by every thread that makes work. */
  alignas(ISOLA__CACHE_LINE) _Atomic unsigned nspinning;
  _Atomic unsigned nidle_workers;
  _Atomic size_t gq_len;
  _Atomic bool stopping;

  alignas(ISOLA__CACHE_LINE) pthread_mutex_t gq_lock; /* the global queue */
  isola__isolate *gq_head, *gq_tail;

  pthread_mutex_t lock; /* idle workers, idle threads, thread lists */
  isola__worker *idle_workers;
  isola__thread *idle_threads;
  isola__thread *threads; /* every pool thread alive */
  isola__thread *zombies; /* exited, not yet joined */
  size_t nthreads;
  pthread_t monitor; /* stuck workers (scheduler.c) */
  bool monitor_started;
  _Atomic uint32_t monitor_wake; /* futex word: set to stop the monitor */
} isola__sched;

#endif
