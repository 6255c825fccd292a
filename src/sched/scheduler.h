/* SPDX-License-Identifier: MIT */
/*
 * scheduler.h — the thread pool that runs isolates.
 *
 * Go's model, in Go's words: a worker ("P") is a right to run isolates and
 * carries the run queues; a thread ("M") runs isolates while it holds a
 * worker.  There are config.workers workers; threads come and go.
 *
 *   runnext  one isolate readied by the one running on this worker; it runs
 *            next, on the same thread, so two isolates that talk stay on one
 *            core and in one cache.  Stolen only when the worker's turn has
 *            not changed for a while (below).
 *   runq     a bounded ring: the owner pushes at the tail; the owner and
 *            thieves take from the head with a CAS.
 *   global   a locked list for isolates readied off the pool (a root
 *            isolate, a plain thread) and for runq overflow.
 *
 * An idle thread spins a while looking for work (steal half a victim's
 * runq, or the global queue), then gives its worker back and parks on a
 * futex.  Whoever makes stealable work wakes a parked thread only if no
 * thread is spinning, so a burst of messages costs at most one wake-up.
 *
 * A handler that runs for long must not strand what waits on its worker.
 * Each worker counts its turns (st_turns, for snapshots too); a worker
 * whose count has not moved for STUCK_NS is in one long turn.  Then a
 * spinning thread takes its runnext (after RUNNEXT_STEAL_NS), a busy worker
 * looks at the others every 61st turn and steals from a stuck one, and a
 * monitor thread, every millisecond while a worker is busy, wakes a
 * spinning thread when a stuck worker holds work.  So runnext is an atomic
 * word; the owner still takes it without a locked instruction (an
 * asymmetric fence protocol, scheduler.c's "runnext").
 */
#ifndef ISOLA_SCHEDULER_H
#define ISOLA_SCHEDULER_H

#include "determ.h"
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
  uint32_t tick;    /* turns run; every 61st looks at the global queue */
  uint32_t id;
  isola__worker *idle_next; /* idle list, under sched lock */
  /* What other threads last saw of st_turns, and when (scheduler.c's
   * stuck_for); any thread writes them, relaxed: a lost update only
   * delays a steal. */
  alignas(ISOLA__CACHE_LINE) _Atomic uint64_t seen_turns;
  _Atomic uint64_t seen_at;
  /* Counters for snapshots (stats.h), on a line of their own: turns,
   * steals and cur by the thread holding the worker; parks, wakes and
   * idle under the sched lock.  cur is the control port of the isolate
   * whose turn it runs (0: none), since when it began (isolate stats). */
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

/* Starts the pool with n workers, each on its own thread. */
int isola__sched_init(isola__sched *s, unsigned nworkers,
                      unsigned idle_timeout_ms);

/* Starts one thread per worker.  The VM must be published first. */
int isola__sched_start(isola__sched *s);

/* Stops every thread once no isolate is left, and joins them. */
void isola__sched_stop(isola__sched *s);

/* Makes iso runnable.  The caller has just claimed the right to schedule it
 * (message_queue.h): the isolate is in no queue and runs nowhere.  Any
 * thread. */
void isola__sched_ready(isola__sched *s, isola__isolate *iso);

/* Whether the calling pool thread has other isolates waiting (a turn that
 * used its batch yields only then). */
bool isola__sched_has_other_work(isola__sched *s);

/* A root isolate's thread: waits until its isolate is readied. */
void isola__sched_wait_pinned(isola__sched *s, isola__thread *t,
                              isola__isolate *iso);

/* At an interrupt point of a long event (isola_check_interrupts, every
 * batch of a long turn): pushes the outbox, hands this worker's runnext to
 * the other threads, and refreshes the thread's epoch so reclamation goes
 * on.  The caller holds no pointer to another isolate.  Pool and root
 * threads; a no-op elsewhere. */
void isola__sched_interrupt_point(isola__vm *vm);

/* isola_blocking_begin/end for the calling thread. */
/* begin: ISOLA_OK, or ISOLA_ESYS when no stand-in thread could take the
 * worker (the section has begun all the same). */
int isola__sched_blocking_begin(isola__sched *s, isola__thread *t);
void isola__sched_blocking_end(isola__sched *s, isola__thread *t);

#endif
