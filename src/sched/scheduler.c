/* SPDX-License-Identifier: MIT */
/* scheduler.c — workers, threads, run queues, stealing, parking (see
 * scheduler.h). */
#include "scheduler.h"

#include <stdlib.h>
#include <string.h>

#include "determ.h"
#include "epoch.h"
#include "platform.h"
#include "pool.h"
#include "stats.h"
#include "test_hooks.h"
#include "turn.h"
#include "vm.h"

/* How long an idle thread spins before parking.  A futex wake-up costs
 * tens of microseconds on virtual machines, far more than most gaps between
 * messages, so spinning this long is cheaper than sleeping. */
#define SPIN_NS 50000u
/* Turns in a row taken from runnext before the runq gets a turn. */
#define RUNNEXT_MAX 64u
/* A worker whose turn count has not moved for this long is in one long
 * turn (a handler computing or blocked in C): a busy worker steals what
 * waits behind it, and the monitor looks this often at first while some
 * worker is busy (then less often: monitor_main). */
#define STUCK_NS 1000000u
/* A spinning thread takes another worker's runnext once that worker has
 * been in the same turn for this long (Go's 3 µs): a ping-pong hop is far
 * shorter, so talking isolates are left alone. */
#define RUNNEXT_STEAL_NS 5000u

static void *thread_main(void *arg);

/* ---- the per-worker ring ---------------------------------------------- */

static bool runq_empty(isola__worker *w) {
  return atomic_load_explicit(&w->rq_head, memory_order_acquire) ==
         atomic_load_explicit(&w->rq_tail, memory_order_acquire);
}

static void gq_put_list(isola__sched *s, isola__isolate *first,
                        isola__isolate *last, size_t n) {
  pthread_mutex_lock(&s->gq_lock);
  last->rq_next = NULL;
  if (s->gq_tail)
    s->gq_tail->rq_next = first;
  else
    s->gq_head = first;
  s->gq_tail = last;
  atomic_fetch_add_explicit(&s->gq_len, n, memory_order_seq_cst);
  pthread_mutex_unlock(&s->gq_lock);
}

/* Owner: appends iso; a full ring moves half of itself to the global queue. */
static void runq_put(isola__sched *s, isola__worker *w, isola__isolate *iso) {
  for (;;) {
    uint32_t h = atomic_load_explicit(&w->rq_head, memory_order_acquire);
    uint32_t t = atomic_load_explicit(&w->rq_tail, memory_order_relaxed);
    if (t - h < ISOLA__RUNQ_SIZE) {
      atomic_store_explicit(&w->rq[t % ISOLA__RUNQ_SIZE], iso,
                            memory_order_relaxed);
      /* Release publishes the slot (and the isolate) to takers. */
      atomic_store_explicit(&w->rq_tail, t + 1, memory_order_release);
      return;
    }
    /* Full: take half with a CAS (thieves compete) and chain it. */
    uint32_t n = (t - h) / 2;
    isola__isolate *batch[ISOLA__RUNQ_SIZE / 2];
    for (uint32_t i = 0; i < n; i++)
      batch[i] = atomic_load_explicit(&w->rq[(h + i) % ISOLA__RUNQ_SIZE],
                                      memory_order_relaxed);
    if (!atomic_compare_exchange_strong_explicit(&w->rq_head, &h, h + n,
                                                 memory_order_acq_rel,
                                                 memory_order_relaxed))
      continue;
    for (uint32_t i = 0; i + 1 < n; i++) batch[i]->rq_next = batch[i + 1];
    batch[n - 1]->rq_next = iso;
    gq_put_list(s, batch[0], iso, n + 1);
    return;
  }
}

/* Owner: the isolate at the head, or NULL. */
static isola__isolate *runq_get(isola__worker *w) {
  for (;;) {
    uint32_t h = atomic_load_explicit(&w->rq_head, memory_order_acquire);
    uint32_t t = atomic_load_explicit(&w->rq_tail, memory_order_relaxed);
    if (t == h) return NULL;
    isola__isolate *iso = atomic_load_explicit(&w->rq[h % ISOLA__RUNQ_SIZE],
                                               memory_order_relaxed);
    if (atomic_compare_exchange_weak_explicit(&w->rq_head, &h, h + 1,
                                              memory_order_acq_rel,
                                              memory_order_relaxed))
      return iso;
  }
}

/* Thief: moves half of victim's ring into w's (which is empty) and returns
 * one of them to run, or NULL. */
static isola__isolate *runq_steal(isola__worker *w, isola__worker *victim) {
  for (;;) {
    uint32_t h = atomic_load_explicit(&victim->rq_head,
                                      memory_order_acquire);
    /* Acquire pairs with the owner's release of the tail: the slots below
     * it are written. */
    uint32_t t = atomic_load_explicit(&victim->rq_tail,
                                      memory_order_acquire);
    uint32_t n = t - h;
    if (n == 0 || n > ISOLA__RUNQ_SIZE) {
      if (n == 0) return NULL;
      continue; /* inconsistent snapshot: head moved under us */
    }
    n -= n / 2;
    uint32_t wt = atomic_load_explicit(&w->rq_tail, memory_order_relaxed);
    for (uint32_t i = 0; i < n; i++) {
      isola__isolate *iso = atomic_load_explicit(
          &victim->rq[(h + i) % ISOLA__RUNQ_SIZE], memory_order_relaxed);
      atomic_store_explicit(&w->rq[(wt + i) % ISOLA__RUNQ_SIZE], iso,
                            memory_order_relaxed);
    }
    /* The CAS claims what we copied; if it fails the copies are garbage. */
    if (!atomic_compare_exchange_weak_explicit(&victim->rq_head, &h, h + n,
                                               memory_order_acq_rel,
                                               memory_order_relaxed))
      continue;
    n--;
    isola__isolate *iso = atomic_load_explicit(
        &w->rq[(wt + n) % ISOLA__RUNQ_SIZE], memory_order_relaxed);
    if (n) atomic_store_explicit(&w->rq_tail, wt + n, memory_order_release);
    return iso;
  }
}

/* Thief: the isolate at the head of victim's ring, or NULL. */
static isola__isolate *runq_take(isola__worker *victim) {
  for (;;) {
    uint32_t h = atomic_load_explicit(&victim->rq_head, memory_order_acquire);
    uint32_t t = atomic_load_explicit(&victim->rq_tail, memory_order_acquire);
    if (t == h || t - h > ISOLA__RUNQ_SIZE) {
      if (t == h) return NULL;
      continue; /* inconsistent snapshot: head moved under us */
    }
    isola__isolate *iso = atomic_load_explicit(
        &victim->rq[h % ISOLA__RUNQ_SIZE], memory_order_relaxed);
    if (atomic_compare_exchange_weak_explicit(&victim->rq_head, &h, h + 1,
                                              memory_order_acq_rel,
                                              memory_order_relaxed))
      return iso;
  }
}

/* How long v has been in its current turn as far as the calling thread can
 * tell: 0 the first time a turn is seen, then the time since.  A worker
 * nobody runs (idle) looks stuck too, but holds no work. */
static uint64_t stuck_for(isola__worker *v, uint64_t now) {
  uint64_t turns = isola__cnt(&v->st_turns);
  if (turns != atomic_load_explicit(&v->seen_turns, memory_order_relaxed)) {
    atomic_store_explicit(&v->seen_at, now, memory_order_relaxed);
    atomic_store_explicit(&v->seen_turns, turns, memory_order_relaxed);
    return 0;
  }
  uint64_t at = atomic_load_explicit(&v->seen_at, memory_order_relaxed);
  return now > at ? now - at : 0;
}

/* How long x has been in v's runnext as far as the calling thread can
 * tell: 0 the first time it is seen there, then the time since.  (An
 * isolate taken and put back meanwhile starts a new turn of v, which
 * stuck_for() sees.) */
static uint64_t runnext_waited(isola__worker *v, isola__isolate *x,
                               uint64_t now) {
  if ((uintptr_t)x !=
      atomic_load_explicit(&v->seen_next, memory_order_relaxed)) {
    atomic_store_explicit(&v->seen_next_at, now, memory_order_relaxed);
    atomic_store_explicit(&v->seen_next, (uintptr_t)x, memory_order_relaxed);
    return 0;
  }
  uint64_t at = atomic_load_explicit(&v->seen_next_at, memory_order_relaxed);
  return now > at ? now - at : 0;
}

/* ---- runnext ------------------------------------------------------------
 * The owner fills runnext in every turn that readies an isolate and takes
 * it at the start of the next: two locked instructions per hand-off if both
 * were exchanges, where a ping-pong's whole turn costs about twenty times
 * one.  A thief takes it rarely (from a worker stuck in one turn), with a
 * CAS from the isolate to NULL.  So:
 *
 * - Filling an empty runnext is a store: only the owner writes anything
 *   but NULL, and a thief's CAS fails on NULL.  Replacing an isolate is a
 *   take (below), then that store.
 * - Taking is a load and a store, made safe by an asymmetric fence
 *   (platform.h): the owner makes take_seq odd, issues the light fence
 *   (a compiler barrier), and takes plainly only if no thief is counted in
 *   `thieves`; then makes take_seq even again (release).  A thief reads an
 *   even take_seq q, counts itself in `thieves`, issues the heavy fence
 *   (membarrier: every running thread of the process executes a full
 *   fence), and CASes only if take_seq is still q.  The pair of fences
 *   orders like two seq_cst fences (Dekker): either the owner's load of
 *   `thieves` comes after the heavy fence and sees the thief (the owner
 *   then exchanges, and exactly one of exchange and CAS gets the isolate),
 *   or its odd take_seq, stored before, is visible to the thief after the
 *   fence (the thief gives up).  A thief that read q after the take ended
 *   (even, release) sees the take's NULL (acquire): its CAS fails.
 * - Where the heavy fence is not available (fence_heavy false), the owner
 *   exchanges and the thief CASes, as before. */

/* Takes w's runnext, or NULL.  Owner only: at a turn's start, and to
 * displace it (isola__sched_ready). */
static inline isola__isolate *take_runnext(isola__sched *s, isola__worker *w) {
  if (!atomic_load_explicit(&w->runnext, memory_order_relaxed)) return NULL;
  if (ISOLA__UNLIKELY(!s->fence_heavy))
    return atomic_exchange_explicit(&w->runnext, NULL, memory_order_acquire);
  uint32_t q = atomic_load_explicit(&w->take_seq, memory_order_relaxed);
  atomic_store_explicit(&w->take_seq, q + 1, memory_order_relaxed);
  isola__plat_fence_light();
  isola__isolate *x;
  if (ISOLA__LIKELY(!atomic_load_explicit(&w->thieves, memory_order_relaxed))) {
    x = atomic_load_explicit(&w->runnext, memory_order_relaxed);
    ISOLA__TEST_HOOK_P(ISOLA__HOOK_RUNNEXT_TAKING, x);
    atomic_store_explicit(&w->runnext, NULL, memory_order_relaxed);
  } else {
    x = atomic_exchange_explicit(&w->runnext, NULL, memory_order_acquire);
  }
  atomic_store_explicit(&w->take_seq, q + 2, memory_order_release);
  return x;
}

/* Takes v's runnext if v has been in one turn, and the isolate in its
 * runnext, for at least min_ns.  The second: a turn that readies one
 * isolate after another (a spawner, a broadcast) replaces its runnext
 * every send, and what it displaces goes to its run queue, stolen half at
 * a time; stealing each new runnext too cost a heavy fence per isolate,
 * an interrupt of the sender's core each (stopping 200,000 isolates spent
 * 6% of its time in them). */
static isola__isolate *steal_runnext(isola__sched *s, isola__worker *v,
                                     uint64_t now, uint64_t min_ns) {
  isola__isolate *x = atomic_load_explicit(&v->runnext, memory_order_relaxed);
  if (!x || stuck_for(v, now) < min_ns ||
      runnext_waited(v, x, now) < min_ns ||
      isola__test_failing(ISOLA__FAIL_RUNNEXT_STEAL))
    return NULL;
  ISOLA__TEST_HOOK_P(ISOLA__HOOK_RUNNEXT_STEAL, v);
  bool ok = true;
  if (s->fence_heavy) {
    uint32_t q = atomic_load_explicit(&v->take_seq, memory_order_acquire);
    if (q & 1) return NULL; /* taking it now: not stuck */
    atomic_fetch_add_explicit(&v->thieves, 1, memory_order_seq_cst);
    ok = isola__plat_fence_heavy() &&
         atomic_load_explicit(&v->take_seq, memory_order_acquire) == q;
  }
  if (ok)
    ok = atomic_compare_exchange_strong_explicit(&v->runnext, &x, NULL,
                                                 memory_order_acq_rel,
                                                 memory_order_relaxed);
  if (s->fence_heavy)
    atomic_fetch_sub_explicit(&v->thieves, 1, memory_order_release);
  return ok ? x : NULL;
}

/* Whether v holds work another thread could take: a runnext or a ring. */
static bool holds_work(isola__worker *v) {
  return atomic_load_explicit(&v->runnext, memory_order_relaxed) != NULL ||
         !runq_empty(v);
}

/* A busy worker, every 61st turn: takes work from a worker stuck in one
 * long turn (its ring, then its runnext), or NULL.  Half the ring when
 * w's own is empty, else one isolate (w's ring may be full). */
static isola__isolate *steal_stuck(isola__sched *s, isola__worker *w) {
  uint64_t now = 0;
  for (unsigned i = 0; i < s->nworkers; i++) {
    isola__worker *v = &s->workers[i];
    if (v == w || !holds_work(v)) continue;
    if (!now) now = ISOLA__SCHED_NOW();
    if (stuck_for(v, now) < STUCK_NS) continue;
    isola__isolate *iso = runq_empty(w) ? runq_steal(w, v) : runq_take(v);
    if (!iso) iso = steal_runnext(s, v, now, STUCK_NS);
    if (iso) return iso;
  }
  return NULL;
}

static void wakep(isola__sched *s);

/* Takes up to max isolates off the global queue: returns one, puts the rest
 * on w's ring.  The list is intrusive, so finding where our share ends
 * means a cache miss per isolate: that walk is done outside the lock (all
 * is taken, and what is beyond our share goes back to the front), so the
 * lock is held for a few stores and other threads do not sleep on it. */
static isola__isolate *gq_get(isola__sched *s, isola__worker *w, size_t max) {
  if (atomic_load_explicit(&s->gq_len, memory_order_acquire) == 0)
    return NULL;
  pthread_mutex_lock(&s->gq_lock);
  isola__isolate *first = s->gq_head, *tail = s->gq_tail;
  if (!first) {
    pthread_mutex_unlock(&s->gq_lock);
    return NULL;
  }
  size_t len = atomic_load_explicit(&s->gq_len, memory_order_relaxed);
  size_t n = len / s->nworkers + 1;
  if (n > max) n = max;
  if (n > len) n = len;
  /* gq_len stays the list's length: another taker computes its share
   * from it while our remainder is out. */
  s->gq_head = s->gq_tail = NULL;
  atomic_fetch_sub_explicit(&s->gq_len, len, memory_order_relaxed);
  pthread_mutex_unlock(&s->gq_lock);

  isola__isolate *last = first;
  for (size_t i = 1; i < n; i++) last = last->rq_next;
  isola__isolate *beyond = last->rq_next;
  if (beyond) {
    /* Not ours: back in front of whatever came meanwhile. */
    pthread_mutex_lock(&s->gq_lock);
    tail->rq_next = s->gq_head;
    s->gq_head = beyond;
    if (!s->gq_tail) s->gq_tail = tail;
    atomic_fetch_add_explicit(&s->gq_len, len - n, memory_order_seq_cst);
    pthread_mutex_unlock(&s->gq_lock);
    /* A thread that found the queue empty meanwhile may be parking. */
    wakep(s);
  }
  last->rq_next = NULL;
  isola__isolate *rest = first == last ? NULL : first->rq_next;
  while (rest) {
    isola__isolate *next = rest->rq_next;
    runq_put(s, w, rest);
    rest = next;
  }
  return first;
}

/* ---- waking and parking ----------------------------------------------- */

static isola__thread *thread_new(isola__sched *s, isola__worker *w,
                                 bool spinning);

/* Gives worker w to a parked thread (or a new one).  Called with s->lock
 * held.  Returns false when no thread could be had: w is then left idle. */
static bool start_thread_locked(isola__sched *s, isola__worker *w,
                                bool spinning) {
  isola__cnt_add(&w->st_wakes, 1);
  ISOLA__PROBE1(wake, (int)w->id);
  ISOLA__DET_TO_FRONT(ISOLA__DET_WAKE_THREAD, s->idle_threads, isola__thread,
                      idle_next);
  isola__thread *t = s->idle_threads;
  if (t) {
    s->idle_threads = t->idle_next;
    t->idle = false;
    t->handoff = w;
    t->spinning = spinning;
    if (spinning)
      atomic_fetch_add_explicit(&s->nspinning, 1, memory_order_seq_cst);
    atomic_store_explicit(&t->wake, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&t->sleeping, memory_order_seq_cst))
      ISOLA__PARK_WAKE(&t->wake);
    return true;
  }
  return thread_new(s, w, spinning) != NULL;
}

static void push_idle_worker_locked(isola__sched *s, isola__worker *w) {
  w->idle_next = s->idle_workers;
  s->idle_workers = w;
  isola__cnt_add(&w->st_parks, 1);
  ISOLA__PROBE1(park, (int)w->id);
  isola__cnt_set(&w->st_cur, 0);
  atomic_store_explicit(&w->st_idle, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->nidle_workers, 1, memory_order_seq_cst);
}

static isola__worker *pop_idle_worker_locked(isola__sched *s) {
  ISOLA__DET_TO_FRONT(ISOLA__DET_WAKE_WORKER, s->idle_workers, isola__worker,
                      idle_next);
  isola__worker *w = s->idle_workers;
  if (w) {
    s->idle_workers = w->idle_next;
    atomic_store_explicit(&w->st_idle, 0, memory_order_relaxed);
    atomic_fetch_sub_explicit(&s->nidle_workers, 1, memory_order_seq_cst);
  }
  return w;
}

/* Called after making stealable work: if a worker is idle and no thread is
 * looking for work, start one looking.  The seq_cst loads pair with the
 * seq_cst updates of the parking thread (park()). */
static void wakep(isola__sched *s) {
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(&s->nspinning, memory_order_seq_cst) != 0 ||
      atomic_load_explicit(&s->nidle_workers, memory_order_seq_cst) == 0)
    return;
  pthread_mutex_lock(&s->lock);
  if (atomic_load_explicit(&s->nspinning, memory_order_relaxed) == 0 &&
      !atomic_load_explicit(&s->stopping, memory_order_relaxed)) {
    isola__worker *w = pop_idle_worker_locked(s);
    if (w && !start_thread_locked(s, w, true)) push_idle_worker_locked(s, w);
  }
  pthread_mutex_unlock(&s->lock);
}

void isola__sched_ready(isola__sched *s, isola__isolate *iso) {
  if (iso->pinned) {
    /* seq_cst pairs with isola__sched_wait_pinned(): either it sees wake,
     * or we see it sleeping. */
    atomic_store_explicit(&iso->pin_wake, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&iso->pin_sleeping, memory_order_seq_cst))
      ISOLA__PARK_WAKE(&iso->pin_wake);
    return;
  }
  isola__thread *t = isola__t.thread;
  isola__worker *w = t ? t->w : NULL;
  if (w) {
    /* Runs next on this thread: no wake-up needed for it.  The isolate it
     * displaces becomes stealable. */
    isola__isolate *old =
        atomic_load_explicit(&w->runnext, memory_order_relaxed);
    /* Empty: a store ("runnext" above; release: a thief's CAS sees the
     * isolate as readied).  Full: taken as at a turn's start (a thief may
     * be taking it: take_runnext), then the store; a thief that looks
     * between the two finds nothing. */
    if (old) old = take_runnext(s, w);
    atomic_store_explicit(&w->runnext, iso, memory_order_release);
    if (old) {
      runq_put(s, w, old);
      wakep(s);
    }
    return;
  }
  gq_put_list(s, iso, iso, 1);
  ISOLA__DET_OPEN(); /* work from outside opens the baton (determ.h) */
  wakep(s);
}

bool isola__sched_has_other_work(isola__sched *s) {
  isola__thread *t = isola__t.thread;
  if (t && t->w &&
      (atomic_load_explicit(&t->w->runnext, memory_order_relaxed) ||
       !runq_empty(t->w)))
    return true;
  return atomic_load_explicit(&s->gq_len, memory_order_relaxed) != 0;
}

/* Ends spinning; if we were the last spinner, another thread starts
 * looking, in case more work is waiting (as Go's resetspinning). */
static void stop_spinning(isola__sched *s, isola__thread *t) {
  if (!t->spinning) return;
  t->spinning = false;
  if (atomic_fetch_sub_explicit(&s->nspinning, 1, memory_order_seq_cst) == 1)
    wakep(s);
}

static isola__isolate *steal_any(isola__sched *s, isola__worker *w,
                                 uint32_t seed) {
  unsigned n = s->nworkers;
  for (unsigned i = 0; i < n; i++) {
    isola__worker *v = &s->workers[(seed + i) % n];
    if (v == w) continue;
    isola__isolate *iso = runq_steal(w, v);
    if (iso) return iso;
  }
  return gq_get(s, w, ISOLA__RUNQ_SIZE / 2);
}

static bool any_work(isola__sched *s) {
  if (atomic_load_explicit(&s->gq_len, memory_order_seq_cst)) return true;
  for (unsigned i = 0; i < s->nworkers; i++)
    if (!runq_empty(&s->workers[i])) return true;
  return false;
}

static void go_offline(isola__thread *t) {
  if (t->online) {
    isola__epoch_offline(t->rec);
    t->online = false;
  }
}

static void go_online(isola__vm *vm, isola__thread *t) {
  if (!t->online) {
    isola__epoch_online(&vm->epoch, t->rec);
    t->online = true;
  }
}

/* When a parked thread gives empty slabs back (isola__pool_idle): once it
 * has had nothing to do for TRIM_IDLE_NS and every worker is idle, or,
 * while some worker stays busy, once it has had nothing to do for
 * TRIM_BUSY_NS.  A
 * trim walks every free block of a class (tens of ms after a burst), with
 * the blocks off the shared lists meanwhile, and gives pages back with
 * madvise, which interrupts every core running the process to flush its
 * TLB.  Done at the first park, a worker out of work for a moment in a
 * busy run walked the blocks just freed (stopping 200,000 isolates took
 * half as long again); done while another worker drains a burst, its
 * interrupts slow the drain (fan-in); done after every short pause, the
 * pages given back are faulted in again by the next burst.  A drained
 * program gives its memory back about 50 ms after it goes quiet: the
 * last worker to go idle trims then. */
#define TRIM_IDLE_NS 50000000u
#define TRIM_BUSY_NS 1000000000u

static bool all_idle(isola__sched *s) {
  return atomic_load_explicit(&s->nidle_workers, memory_order_relaxed) ==
         s->nworkers;
}

/* Parks t, which holds no worker, until it is handed one (returns true) or
 * the pool stops or its idle time runs out (returns false: the thread must
 * exit; it has been taken off the idle list). */
static bool park(isola__vm *vm, isola__thread *t) {
  isola__sched *s = &vm->sched;
  go_offline(t);
  isola__epoch_reclaim(&vm->epoch);
  uint64_t timeout = (uint64_t)s->idle_timeout_ms * 1000000u;
  uint64_t now = ISOLA__SCHED_NOW();
  uint64_t deadline = now + timeout;
  uint64_t trim_at = now + TRIM_IDLE_NS, trim_late = now + TRIM_BUSY_NS;
  bool trimmed = false;
  for (;;) {
    pthread_mutex_lock(&s->lock);
    if (t->handoff) {
      t->w = t->handoff;
      t->handoff = NULL;
      pthread_mutex_unlock(&s->lock);
      go_online(vm, t);
      return true;
    }
    now = ISOLA__SCHED_NOW();
    bool stopping = atomic_load_explicit(&s->stopping, memory_order_relaxed);
    bool stop = stopping || now >= deadline || ISOLA__DET_IDLE_TIMEOUT();
    /* Out of work long enough (TRIM_IDLE_NS, TRIM_BUSY_NS), or leaving for
     * lack of work: a burst that drained gives its empty slabs back now,
     * off the idle list meanwhile (work handed to it would wait for the
     * walk).  Not when the pool stops: everything is unmapped then. */
    bool trim = !trimmed && !stopping &&
                (stop || now >= trim_late || (now >= trim_at && all_idle(s)));
    if ((stop || trim) && t->idle) {
      isola__thread **pp = &s->idle_threads;
      while (*pp != t) pp = &(*pp)->idle_next;
      *pp = t->idle_next;
      t->idle = false;
    }
    if (stop || trim) {
      pthread_mutex_unlock(&s->lock);
      if (trim) {
        trimmed = true;
        isola__pool_idle();
      }
      if (stop) return false;
      continue;
    }
    if (!t->idle) {
      t->idle = true;
      t->idle_next = s->idle_threads;
      s->idle_threads = t;
    }
    atomic_store_explicit(&t->wake, 0, memory_order_relaxed);
    atomic_store_explicit(&t->sleeping, 1, memory_order_seq_cst);
    pthread_mutex_unlock(&s->lock);
    now = ISOLA__SCHED_NOW();
    uint64_t until = trimmed ? deadline : now < trim_at ? trim_at : trim_late;
    if (until > deadline) until = deadline;
    if (atomic_load_explicit(&t->wake, memory_order_seq_cst) == 0 &&
        now < until)
      ISOLA__PARK_WAIT(&t->wake, 0, until - now);
    atomic_store_explicit(&t->sleeping, 0, memory_order_relaxed);
  }
}

/* Gives back the worker t holds, then makes sure no work was left behind
 * unnoticed: the re-check after the seq_cst release pairs with wakep().
 * Returns true if t got a worker back and should look for work again. */
static bool release_worker(isola__sched *s, isola__thread *t) {
  isola__worker *w = t->w;
  t->w = NULL;
  pthread_mutex_lock(&s->lock);
  push_idle_worker_locked(s, w);
  pthread_mutex_unlock(&s->lock);
  atomic_thread_fence(memory_order_seq_cst);
  if (!atomic_load_explicit(&s->stopping, memory_order_relaxed) &&
      any_work(s)) {
    pthread_mutex_lock(&s->lock);
    t->w = pop_idle_worker_locked(s);
    pthread_mutex_unlock(&s->lock);
    if (t->w) return true;
  }
  return false;
}

/* A turn of iso begins on w: counted (stuck_for() sees it move) and
 * named for snapshots. */
static inline isola__isolate *turn_on(isola__worker *w, isola__isolate *iso) {
  if (ISOLA__SEND_COUNTERS) isola__cnt_set(&w->st_cur, (uintptr_t)iso);
  isola__cnt_add(&w->st_turns, 1);
  return iso;
}

/* The next isolate for t (which holds a worker) to run, or NULL when t gave
 * its worker away and should park. */
static isola__isolate *find_runnable_inner(isola__vm *vm, isola__thread *t) {
  isola__sched *s = &vm->sched;
  isola__worker *w = t->w;
  isola__isolate *iso;

  bool every61 = --w->tick == 0;
  if (every61) w->tick = 61;
  if (ISOLA__DET_GLOBAL_FIRST(every61) &&
      ((iso = gq_get(s, w, 1)) || (iso = steal_stuck(s, w))))
    return turn_on(w, iso);
  if ((iso = take_runnext(s, w))) {
    if ((w->streak < RUNNEXT_MAX && !ISOLA__DET_SKIP_RUNNEXT()) ||
        (runq_empty(w) &&
         !atomic_load_explicit(&s->gq_len, memory_order_relaxed))) {
      w->streak++;
      return turn_on(w, iso);
    }
    runq_put(s, w, iso);
  }
  w->streak = 0;
  if ((iso = runq_get(w))) return turn_on(w, iso);
  if ((iso = gq_get(s, w, ISOLA__RUNQ_SIZE / 2))) return turn_on(w, iso);

  /* Nothing local: spin, stealing, for a while (running nothing meanwhile,
   * as snapshots show). */
  if (ISOLA__SEND_COUNTERS) isola__cnt_set(&w->st_cur, 0);
  if (!t->spinning) {
    t->spinning = true;
    atomic_fetch_add_explicit(&s->nspinning, 1, memory_order_seq_cst);
  }
  uint64_t start = ISOLA__SCHED_NOW();
  uint32_t seed = ISOLA__DET_VICTIM(w->id + 1);
  for (unsigned round = 0;; round++) {
    if (atomic_load_explicit(&s->stopping, memory_order_relaxed)) break;
    if ((iso = steal_any(s, w, seed++))) {
      isola__cnt_add(&w->st_steals, 1);
      return turn_on(w, iso);
    }
    if ((round & 15) == 15) {
      /* A runnext held by a worker that stays in one turn. */
      uint64_t now = ISOLA__SCHED_NOW();
      for (unsigned i = 0; i < s->nworkers; i++)
        if (&s->workers[i] != w &&
            (iso = steal_runnext(s, &s->workers[i], now,
                                 RUNNEXT_STEAL_NS))) {
          isola__cnt_add(&w->st_steals, 1);
          return turn_on(w, iso);
        }
      if (now - start > SPIN_NS || ISOLA__DET_GIVE_UP()) break;
    }
    for (int i = 0; i < 32; i++) isola__plat_relax();
  }
  /* Stop spinning before the final check in release_worker(), so a maker
   * of work either sees no spinner (and wakes someone) or is seen by it
   * (the pair in wakep()). */
  t->spinning = false;
  atomic_fetch_sub_explicit(&s->nspinning, 1, memory_order_seq_cst);
  return NULL;
}

static isola__isolate *find_runnable(isola__vm *vm, isola__thread *t) {
  isola__isolate *iso = find_runnable_inner(vm, t);
  /* A thread woken to look for work counts as spinning until it finds
   * some. */
  if (iso) stop_spinning(&vm->sched, t);
  return iso;
}

/* What a turn's end asks of the scheduler. */
static void after_turn(isola__vm *vm, isola__thread *t, isola__isolate *iso,
                       isola__turn r) {
  isola__sched *s = &vm->sched;
  if (r == ISOLA__TURN_YIELD) {
    if (t->w) {
      runq_put(s, t->w, iso);
      wakep(s);
    } else {
      gq_put_list(s, iso, iso, 1);
      wakep(s);
    }
  }
}

/* The pool thread's source of turns for the unwind driver
 * (isola__mh_drive, pool_loop): requeues the isolate whose turn ended, then finds the
 * next one, parking while there is none; NULL when the thread must exit. */
typedef struct pool_drive {
  isola__vm *vm;
  isola__thread *t;
} pool_drive;

static isola__isolate *pool_next(void *arg, isola__isolate *prev,
                                 isola__turn r) {
  pool_drive *d = arg;
  isola__vm *vm = d->vm;
  isola__thread *t = d->t;
  isola__sched *s = &vm->sched;
  if (prev) after_turn(vm, t, prev, r);
  for (;;) {
    if (!t->w) {
      /* A thread back from blocking, or new without a worker: find one or
       * park until given one. */
      pthread_mutex_lock(&s->lock);
      t->w = pop_idle_worker_locked(s);
      pthread_mutex_unlock(&s->lock);
      if (!t->w && !park(vm, t)) return NULL;
    }
    isola__isolate *iso = find_runnable(vm, t);
    if (iso) {
      isola__epoch_refresh(&vm->epoch, t->rec);
      return iso;
    }
    if (atomic_load_explicit(&s->stopping, memory_order_relaxed)) {
      if (t->w) {
        pthread_mutex_lock(&s->lock);
        push_idle_worker_locked(s, t->w);
        pthread_mutex_unlock(&s->lock);
        t->w = NULL;
      }
      return NULL;
    }
    if (release_worker(s, t)) continue;
    if (!park(vm, t)) return NULL;
  }
}

static void pool_loop(isola__vm *vm, void *arg, jmp_buf *jb,
                      isola__isolate *iso, isola__turn r) {
  /* A copy no turn can reach, so it stays in registers across turns. */
  pool_drive d = *(pool_drive *)arg;
  isola__mh_turns(vm, jb, iso, r, pool_next, &d);
}

static void *thread_main(void *arg) {
  isola__thread *t = arg;
  isola__vm *vm = isola__vm_get();
  isola__sched *s = &vm->sched;
  isola__t.thread = t;
  isola__t.rec = t->rec;
  isola__t.rec_vm_gen = vm->gen;
  isola__t.tstats = &t->rec->stats;
  ISOLA__DET_START(t);
  isola__pool_thread_start();
  go_online(vm, t);

  /* Every turn this thread runs, under one unwind point
   * (message_handler.h). */
  pool_drive d = {vm, t};
  isola__mh_drive(vm, pool_loop, &d);

  /* Exit: the thread is off every list but the all-threads list. */
  isola__epoch_thread_exit(&vm->epoch);
  go_offline(t);
  isola__port_map_flush_cache(&vm->ports);
  isola__pool_thread_stop();
  pthread_mutex_lock(&s->lock);
  isola__thread **pp = &s->threads;
  while (*pp != t) pp = &(*pp)->all_next;
  *pp = t->all_next;
  t->all_next = s->zombies;
  s->zombies = t;
  s->nthreads--;
  pthread_mutex_unlock(&s->lock);
  isola__t.thread = NULL;
  isola__t.tstats = &isola__tstats_sink;
  isola__t.rec = NULL;
  isola__epoch_unregister(t->rec);
  ISOLA__DET_EXIT();
  return NULL;
}

/* ---- the monitor ---------------------------------------------------------
 * A worker in one long turn makes no wake-up for what waits behind it (a
 * runnext, a ring filled before the turn), and the other threads may all
 * be parked.  One thread (Go's sysmon) looks while some worker is busy,
 * and wakes a spinning thread when a stuck worker holds work; the spinner
 * steals it.  It looks every STUCK_NS at first and backs off, doubling the
 * wait after every look that woke nobody, up to MONITOR_MAX_NS (also its
 * wait while no worker is busy), as sysmon does: a busy program that is
 * not stuck (a ping-pong) is interrupted 100 times a second, not 1,000,
 * and what is stranded is found within two waits.  It reads only the
 * workers' counters, never an isolate, so it needs no epoch record. */
#define MONITOR_MAX_NS 10000000u

static void *monitor_main(void *arg) {
  isola__sched *s = arg;
  uint64_t wait_ns = STUCK_NS;
  while (!atomic_load_explicit(&s->stopping, memory_order_acquire)) {
    bool busy = atomic_load_explicit(&s->nidle_workers,
                                     memory_order_relaxed) < s->nworkers;
    /* Idle workers are looked at too: one left without a thread (no
     * stand-in could be started) may hold work. */
    isola__plat_wait(&s->monitor_wake, 0, busy ? wait_ns : MONITOR_MAX_NS);
    uint64_t now = isola__plat_now_ns();
    bool woke = false;
    for (unsigned i = 0; i < s->nworkers && !woke; i++) {
      isola__worker *v = &s->workers[i];
      if (holds_work(v) && stuck_for(v, now) >= STUCK_NS) {
        wakep(s);
        woke = true;
      }
    }
    wait_ns = woke || !busy ? STUCK_NS
                            : (wait_ns * 2 < MONITOR_MAX_NS ? wait_ns * 2
                                                            : MONITOR_MAX_NS);
  }
  return NULL;
}

/* Joins threads that have exited.  Called with s->lock held: exited
 * threads no longer take it. */
static void reap_zombies_locked(isola__sched *s) {
  while (s->zombies) {
    isola__thread *z = s->zombies;
    s->zombies = z->all_next;
    pthread_join(z->pt, NULL);
    free(z);
  }
}

/* A new pool thread holding w.  Called with s->lock held. */
static isola__thread *thread_new(isola__sched *s, isola__worker *w,
                                 bool spinning) {
  isola__vm *vm = isola__vm_get();
  reap_zombies_locked(s);
  isola__thread *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->rec = isola__epoch_register(&vm->epoch);
  if (!t->rec) {
    free(t);
    return NULL;
  }
  t->w = w;
  t->spinning = spinning;
  if (spinning)
    atomic_fetch_add_explicit(&s->nspinning, 1, memory_order_seq_cst);
  t->all_next = s->threads;
  s->threads = t;
  s->nthreads++;
  ISOLA__DET_REGISTER(t);
  if (pthread_create(&t->pt, NULL, thread_main, t) != 0) {
    ISOLA__DET_UNREGISTER(t);
    if (spinning)
      atomic_fetch_sub_explicit(&s->nspinning, 1, memory_order_seq_cst);
    s->threads = t->all_next;
    s->nthreads--;
    isola__epoch_unregister(t->rec);
    free(t);
    return NULL;
  }
  return t;
}

int isola__sched_init(isola__sched *s, unsigned nworkers,
                      unsigned idle_timeout_ms) {
  memset(s, 0, sizeof *s);
  s->nworkers = nworkers;
  s->idle_timeout_ms = idle_timeout_ms;
  ISOLA__DET_VM_START();
  s->workers = aligned_alloc(ISOLA__CACHE_LINE,
                             sizeof(isola__worker) * nworkers);
  if (!s->workers) return ISOLA_ENOMEM;
  memset(s->workers, 0, sizeof(isola__worker) * nworkers);
  for (unsigned i = 0; i < nworkers; i++) {
    s->workers[i].id = i;
    s->workers[i].tick = 61;
  }
  /* Plain runnext takes where membarrier(2) works ("runnext" above); a
   * test may ask for the exchanges instead. */
  s->fence_heavy = !isola__test_failing(ISOLA__FAIL_FENCE_HEAVY) &&
                   isola__plat_fence_heavy_init();
  atomic_init(&s->nspinning, 0);
  atomic_init(&s->nidle_workers, 0);
  atomic_init(&s->gq_len, 0);
  atomic_init(&s->stopping, false);
  atomic_init(&s->monitor_wake, 0);
  pthread_mutex_init(&s->gq_lock, NULL);
  pthread_mutex_init(&s->lock, NULL);
  return ISOLA_OK;
}

/* Starts one thread per worker; called once the VM is published. */
int isola__sched_start(isola__sched *s) {
  /* No monitor in the deterministic mode: it wakes by the clock. */
  if (!ISOLA__DET_MODE) {
    if (pthread_create(&s->monitor, NULL, monitor_main, s) != 0)
      return ISOLA_ESYS;
    s->monitor_started = true;
  }
  pthread_mutex_lock(&s->lock);
  for (unsigned i = 0; i < s->nworkers; i++) {
    if (!thread_new(s, &s->workers[i], false)) {
      pthread_mutex_unlock(&s->lock);
      return ISOLA_ESYS;
    }
  }
  pthread_mutex_unlock(&s->lock);
  return ISOLA_OK;
}

void isola__sched_stop(isola__sched *s) {
  atomic_store_explicit(&s->stopping, true, memory_order_seq_cst);
  if (s->monitor_started) {
    atomic_store_explicit(&s->monitor_wake, 1, memory_order_seq_cst);
    isola__plat_wake_one(&s->monitor_wake);
    pthread_join(s->monitor, NULL);
    s->monitor_started = false;
  }
  for (;;) {
    pthread_mutex_lock(&s->lock);
    for (isola__thread *t = s->idle_threads; t; t = t->idle_next) {
      atomic_store_explicit(&t->wake, 1, memory_order_seq_cst);
      ISOLA__PARK_WAKE(&t->wake);
    }
    reap_zombies_locked(s);
    bool done = s->threads == NULL;
    pthread_mutex_unlock(&s->lock);
    if (done) break;
    /* Threads finishing their last turn: wait for them without burning a
     * core; they join the zombie list within a turn. */
    isola__plat_yield();
  }
  free(s->workers);
  pthread_mutex_destroy(&s->gq_lock);
  pthread_mutex_destroy(&s->lock);
}

void isola__sched_wait_pinned(isola__sched *s, isola__thread *t,
                              isola__isolate *iso) {
  (void)s;
  isola__vm *vm = isola__vm_get();
  uint64_t start = ISOLA__SCHED_NOW();
  for (unsigned round = 0;; round++) {
    if (atomic_exchange_explicit(&iso->pin_wake, 0, memory_order_acquire)) {
      /* Between turns: a newer epoch, as a pool thread takes per turn. */
      if (t->online) isola__epoch_refresh(&vm->epoch, t->rec);
      return;
    }
    if ((round & 15) == 15 &&
        (ISOLA__SCHED_NOW() - start > SPIN_NS || ISOLA__DET_GIVE_UP()))
      break;
    for (int i = 0; i < 32; i++) isola__plat_relax();
  }
  /* Offline while asleep: our isolate is idle and holds up nobody. */
  isola__epoch_reclaim(&vm->epoch);
  go_offline(t);
  atomic_store_explicit(&iso->pin_sleeping, 1, memory_order_seq_cst);
  while (atomic_load_explicit(&iso->pin_wake, memory_order_seq_cst) == 0)
    ISOLA__PARK_WAIT(&iso->pin_wake, 0, 0);
  atomic_store_explicit(&iso->pin_sleeping, 0, memory_order_relaxed);
  atomic_exchange_explicit(&iso->pin_wake, 0, memory_order_acquire);
  go_online(vm, t);
}

void isola__sched_interrupt_point(isola__vm *vm) {
  isola__outbox_flush(vm);
  isola__thread *t = isola__t.thread;
  if (!t) return;
  isola__worker *w = t->w;
  if (w && atomic_load_explicit(&w->runnext, memory_order_relaxed)) {
    /* What this long event readied (a ping's answer, a send) runs
     * elsewhere instead of after the event. */
    isola__isolate *rn =
        atomic_exchange_explicit(&w->runnext, NULL, memory_order_acquire);
    if (rn) {
      runq_put(&vm->sched, w, rn);
      wakep(&vm->sched);
    }
  }
  /* No pointer loaded before is held (the outbox is pushed): a newer
   * epoch lets isolates retired since the turn began be freed. */
  if (t->online) isola__epoch_refresh(&vm->epoch, t->rec);
}

int isola__sched_blocking_begin(isola__sched *s, isola__thread *t) {
  if (t->blocking++ > 0) return ISOLA_OK;
  int rc = ISOLA_OK;
  isola__worker *w = t->w;
  if (w && !t->pinned) {
    t->w = NULL;
    isola__isolate *rn =
        atomic_exchange_explicit(&w->runnext, NULL, memory_order_acquire);
    if (rn) runq_put(s, w, rn);
    /* Hand the worker, with its queue, to another thread (a stand-in). */
    pthread_mutex_lock(&s->lock);
    if (isola__test_failing(ISOLA__FAIL_STAND_IN) ||
        !start_thread_locked(s, w, false)) {
      /* None could be had: the worker waits idle.  What waits on it is
       * not lost: it counts as stuck, so the monitor wakes a thread for
       * it and busy workers steal from it; a thread back from blocking
       * takes the worker.  The caller is told. */
      push_idle_worker_locked(s, w);
      rc = ISOLA_ESYS;
    }
    pthread_mutex_unlock(&s->lock);
  }
  /* While blocked this thread holds no runtime pointer but its own isolate
   * (never freed while it runs): let reclamation go on without it.  A send
   * made meanwhile comes online for its own duration. */
  go_offline(t);
  ISOLA__DET_STEP_OUT(); /* runs without the baton until the end */
  return rc;
}

void isola__sched_blocking_end(isola__sched *s, isola__thread *t) {
  if (--t->blocking > 0) return;
  ISOLA__DET_STEP_IN();
  isola__vm *vm = isola__vm_get();
  go_online(vm, t);
  if (t->pinned) return;
  /* Take a worker back if one is idle; otherwise finish the turn without
   * one and give the thread up afterwards (thread_main). */
  if (!t->w && atomic_load_explicit(&s->nidle_workers, memory_order_relaxed)) {
    pthread_mutex_lock(&s->lock);
    t->w = pop_idle_worker_locked(s);
    pthread_mutex_unlock(&s->lock);
  }
}
