/* SPDX-License-Identifier: MIT */
/* backpressure.c — mailbox bounds, muting and waiting senders (see
 * backpressure.h and docs/design.md, "Backpressure"). */
#include "backpressure.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "control.h"
#include "message_queue.h"
#include "platform.h"
#include "port_map.h"
#include "scheduler.h"
#include "vm.h"

/* seq_cst on the counts and on waiting: a pop that drains below the
 * low-water mark then reads waiting, and a sender that lists itself (or a
 * waiting thread) adds to waiting then reads the counts: one of them sees
 * the other (the same pair as a turn's mark-idle and a poke). */

static bool full_at(struct isola__bp *bp, uint64_t msgs, uint64_t bytes) {
  uint64_t mm = atomic_load_explicit(&bp->max_msgs, memory_order_relaxed);
  uint64_t mb = atomic_load_explicit(&bp->max_bytes, memory_order_relaxed);
  return (mm && msgs >= mm) || (mb && bytes >= mb);
}

static bool full(struct isola__bp *bp) {
  return full_at(bp, atomic_load_explicit(&bp->msgs, memory_order_seq_cst),
                 atomic_load_explicit(&bp->bytes, memory_order_seq_cst));
}

/* At or below the low-water mark: half the bound, in every bounded
 * dimension (no bound at all: always). */
static bool low_at(struct isola__bp *bp, uint64_t msgs, uint64_t bytes) {
  uint64_t mm = atomic_load_explicit(&bp->max_msgs, memory_order_relaxed);
  uint64_t mb = atomic_load_explicit(&bp->max_bytes, memory_order_relaxed);
  return (!mm || msgs <= mm / 2) && (!mb || bytes <= mb / 2);
}

static bool low(struct isola__bp *bp) {
  return low_at(bp, atomic_load_explicit(&bp->msgs, memory_order_seq_cst),
                atomic_load_explicit(&bp->bytes, memory_order_seq_cst));
}

static struct isola__bp *bp_new(void) {
  struct isola__bp *bp = calloc(1, sizeof *bp);
  if (!bp) return NULL;
  pthread_condattr_t ca;
  if (pthread_condattr_init(&ca) != 0) {
    free(bp);
    return NULL;
  }
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  int rc = pthread_cond_init(&bp->cond, &ca);
  pthread_condattr_destroy(&ca);
  if (rc != 0) {
    free(bp);
    return NULL;
  }
  if (pthread_mutex_init(&bp->lock, NULL) != 0) {
    pthread_cond_destroy(&bp->cond);
    free(bp);
    return NULL;
  }
  return bp;
}

/* The calling isolate's state, made if needed (its own thread only). */
static struct isola__bp *bp_get(isola__isolate *iso) {
  struct isola__bp **slot = isola__control_bp_slot(iso);
  if (!slot) return NULL;
  if (!*slot) *slot = bp_new();
  return *slot;
}

void isola__bp_free(struct isola__bp *bp) {
  free(bp->muted);
  pthread_cond_destroy(&bp->cond);
  pthread_mutex_destroy(&bp->lock);
  free(bp);
}

/* One receiver lets go of the isolate whose control port is port; the
 * last to do so makes it runnable.  The caller is online (epoch.h), so an
 * isolate found stays valid for the call; one that ended is not found. */
static void release_one(isola__vm *vm, isola_port port) {
  int state;
  isola__isolate *iso = isola__port_lookup(&vm->ports, port, &state);
  if (!iso || state != ISOLA__PORT_CONTROL) return;
  /* Its state was made before it listed itself (under the lock we took
   * the list under), and is kept until it is freed. */
  struct isola__bp *bp = isola__control_bp(iso);
  if (!bp) return;
  if (atomic_fetch_sub_explicit(&bp->mutes, 1, memory_order_seq_cst) != 1)
    return;
  /* The pair with the turn's mark-idle and its re-read of mutes
   * (message_handler.c): it either sees 0 or we see its mark. */
  if (isola__mq_poke(&iso->head)) isola__sched_ready(&vm->sched, iso);
}

/* Releases every isolate bp's owner muted and wakes its waiting threads;
 * closing: none may list itself or wait after (the owner ends). */
static void release_all(isola__vm *vm, struct isola__bp *bp, bool closing) {
  pthread_mutex_lock(&bp->lock);
  if (closing) bp->closed = true;
  isola_port *list = bp->muted;
  uint32_t n = bp->nmuted;
  bp->muted = NULL;
  bp->nmuted = bp->cap = 0;
  atomic_fetch_sub_explicit(&bp->waiting, n, memory_order_seq_cst);
  if (bp->nwaiters) pthread_cond_broadcast(&bp->cond);
  pthread_mutex_unlock(&bp->lock);
  for (uint32_t i = 0; i < n; i++) release_one(vm, list[i]);
  free(list);
}

/* Mutes self, the running isolate, on the full receiver whose state is
 * rbp: listed there, held by one more receiver, and ISOLA__HOLD_MUTED so
 * that its turn stops before its next normal message. */
static void mute(isola__vm *vm, isola__isolate *self, struct isola__bp *rbp) {
  /* An isolate that is itself full is never muted: it must drain. */
  struct isola__bp *own = isola__control_bp(self);
  if (own && full(own)) return;
  if (!own && !(own = bp_get(self))) return; /* no memory: not muted */
  /* Listed there already and still held: once is enough.  (If rbp let go
   * of it meanwhile, mutes says so only when rbp was its one receiver;
   * else this event may overshoot rbp's bound a little more, as a sender
   * that was never muted does within one event.) */
  if ((self->hold & ISOLA__HOLD_MUTED) && own->muted_on == rbp &&
      atomic_load_explicit(&own->mutes, memory_order_seq_cst) != 0)
    return;
  pthread_mutex_lock(&rbp->lock);
  if (rbp->closed) {
    pthread_mutex_unlock(&rbp->lock);
    return;
  }
  if (rbp->nmuted == rbp->cap) {
    uint32_t cap = rbp->cap ? rbp->cap * 2 : 8;
    isola_port *l = realloc(rbp->muted, cap * sizeof *l);
    if (!l) {
      pthread_mutex_unlock(&rbp->lock);
      return;
    }
    rbp->muted = l;
    rbp->cap = cap;
  }
  rbp->muted[rbp->nmuted++] = self->control_port;
  own->muted_on = rbp;
  atomic_fetch_add_explicit(&own->mutes, 1, memory_order_seq_cst);
  atomic_fetch_add_explicit(&rbp->waiting, 1, memory_order_seq_cst);
  pthread_mutex_unlock(&rbp->lock);
  self->hold |= ISOLA__HOLD_MUTED;
  /* Drained meanwhile, before its pop could see us listed: let go now. */
  if (low(rbp)) release_all(vm, rbp, false);
}

/* A plain thread waits until bp's owner is not full (woken at its
 * low-water mark), it ends, or the deadline (monotonic ns; UINT64_MAX:
 * none) passes. */
static int wait_room(struct isola__bp *bp, uint64_t deadline_ns) {
  struct timespec ts = {(time_t)(deadline_ns / 1000000000u),
                        (long)(deadline_ns % 1000000000u)};
  int rc = ISOLA_OK;
  pthread_mutex_lock(&bp->lock);
  bp->nwaiters++;
  atomic_fetch_add_explicit(&bp->waiting, 1, memory_order_seq_cst);
  while (!bp->closed && full(bp)) {
    if (deadline_ns == UINT64_MAX) {
      pthread_cond_wait(&bp->cond, &bp->lock);
    } else if (pthread_cond_timedwait(&bp->cond, &bp->lock, &ts) ==
               ETIMEDOUT) {
      if (!bp->closed && full(bp)) rc = ISOLA_ETIMEDOUT;
      break;
    }
  }
  if (bp->closed) rc = ISOLA_ECLOSED;
  bp->nwaiters--;
  atomic_fetch_sub_explicit(&bp->waiting, 1, memory_order_seq_cst);
  pthread_mutex_unlock(&bp->lock);
  return rc;
}

int isola__bp_post(isola__vm *vm, isola__isolate *iso, isola__msg *m,
                   uint32_t room) {
  if (room & ISOLA__ROOM_UNBOUNDED)
    return isola__room_take_slow(iso, m, room) ? ISOLA_OK : ISOLA_EFULL;
  /* Bounded.  Acquire: the state the owner made before it cleared the
   * bit is visible. */
  room = atomic_load_explicit(&iso->room, memory_order_acquire);
  struct isola__bp *bp = isola__control_bp(iso);
  if (!bp) /* cannot be: the bit is cleared only once it exists */
    return isola__room_take_slow(iso, m, room) ? ISOLA_OK : ISOLA_EFULL;
  int mode = isola__t.send_mode;
  isola__isolate *self = isola__t.current;
  if (mode == ISOLA__SEND_TRY && full(bp)) return ISOLA_EFULL;
  if (mode == ISOLA__SEND_WAIT && !self && full(bp)) {
    int rc = wait_room(bp, isola__t.send_deadline);
    if (rc != ISOLA_OK) return rc;
    room = atomic_load_explicit(&iso->room, memory_order_acquire);
  }
  if (!isola__room_take_slow(iso, m, room)) return ISOLA_EFULL;
  m->held |= ISOLA__HELD_BOUND;
  uint64_t n = atomic_fetch_add_explicit(&bp->msgs, 1, memory_order_seq_cst);
  uint64_t b =
      atomic_fetch_add_explicit(&bp->bytes, m->bytes, memory_order_seq_cst);
  /* Full when this send began: an isolate sender is muted after its
   * event (isola_try_send never mutes; a plain thread is not an isolate
   * and is not held back). */
  if (mode != ISOLA__SEND_TRY && self && self != iso && full_at(bp, n, b))
    mute(vm, self, bp);
  return ISOLA_OK;
}

void isola__bp_popped(isola__vm *vm, isola__isolate *iso, isola__msg *m) {
  struct isola__bp *bp = isola__control_bp(iso);
  m->held &= (uint16_t)~ISOLA__HELD_BOUND;
  uint64_t n =
      atomic_fetch_sub_explicit(&bp->msgs, 1, memory_order_seq_cst) - 1;
  uint64_t b = atomic_fetch_sub_explicit(&bp->bytes, m->bytes,
                                         memory_order_seq_cst) -
               m->bytes;
  if (low_at(bp, n, b) &&
      atomic_load_explicit(&bp->waiting, memory_order_seq_cst))
    release_all(vm, bp, false);
}

int isola__bp_set(isola__vm *vm, isola__isolate *iso, uint64_t max_msgs,
                  uint64_t max_bytes) {
  struct isola__bp *bp = isola__control_bp(iso);
  if (!max_msgs && !max_bytes) {
    if (!bp) return ISOLA_OK;
    atomic_fetch_or_explicit(&iso->room, ISOLA__ROOM_UNBOUNDED,
                             memory_order_release);
  } else {
    if (!bp && !(bp = bp_get(iso))) return ISOLA_ENOMEM;
  }
  atomic_store_explicit(&bp->max_msgs, max_msgs, memory_order_seq_cst);
  atomic_store_explicit(&bp->max_bytes, max_bytes, memory_order_seq_cst);
  if (max_msgs || max_bytes)
    /* Release: a sender that sees the bit clear sees bp. */
    atomic_fetch_and_explicit(&iso->room, ~ISOLA__ROOM_UNBOUNDED,
                              memory_order_release);
  /* A higher bound, or none: whoever waits for less may go now. */
  if (vm && low(bp) &&
      atomic_load_explicit(&bp->waiting, memory_order_seq_cst))
    release_all(vm, bp, false);
  return ISOLA_OK;
}

bool isola__bp_still_muted(isola__isolate *iso) {
  struct isola__bp *bp = isola__control_bp(iso);
  if (bp && atomic_load_explicit(&bp->mutes, memory_order_seq_cst) != 0 &&
      !full(bp))
    return true;
  iso->hold &= ~(uint32_t)ISOLA__HOLD_MUTED;
  return false;
}

struct isola__bp *isola__bp_if_muted(isola__isolate *iso) {
  if ((iso->hold & (ISOLA__HOLD_MUTED | ISOLA__HOLD_PAUSED)) !=
      ISOLA__HOLD_MUTED)
    return NULL;
  return isola__control_bp(iso);
}

bool isola__bp_wanted(struct isola__bp *bp) {
  return atomic_load_explicit(&bp->mutes, memory_order_seq_cst) == 0 ||
         full(bp);
}

void isola__bp_end(isola__vm *vm, isola__isolate *iso) {
  struct isola__bp *bp = isola__control_bp(iso);
  if (bp) release_all(vm, bp, true);
}
