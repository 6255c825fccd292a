/* SPDX-License-Identifier: MIT */
/*
 * stats.h — counters for snapshots (isola_vm_snapshot, snapshot.c).
 *
 * Every counter has one owner, the only thread that writes it, and is read
 * by snapshots with relaxed loads; an owner adds with a relaxed load and a
 * relaxed store (a plain add, no locked instruction).
 *
 *   isola__tstats  per thread, in the thread's epoch record (epoch.h): what
 *                  the VM totals add up (sends, spawns, ends, drops).  A
 *                  record outlives its thread and is reused by the next, so
 *                  the sums never lose a count.  The send path writes only
 *                  the sender's own record.
 *   isola__istats  per isolate, only with config.isolate_stats: three cache
 *                  lines right after the isolate in its pool block
 *                  (isola__iso_stats()).  Senders add to the first (queued
 *                  messages and bytes), the thread running the isolate
 *                  writes the others.
 *   workers        in isola__worker (scheduler.h), written by the thread
 *                  holding the worker or under the scheduler lock.
 */
#ifndef ISOLA_STATS_H
#define ISOLA_STATS_H

#include "internal.h"
#include "probes.h"
#include "trace_events.h"

/* Adds n to a counter only the calling thread writes. */
static inline void isola__cnt_add(_Atomic uint64_t *c, uint64_t n) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                        memory_order_relaxed);
}
static inline void isola__cnt_set(_Atomic uint64_t *c, uint64_t v) {
  atomic_store_explicit(c, v, memory_order_relaxed);
}
static inline uint64_t isola__cnt(_Atomic uint64_t *c) {
  return atomic_load_explicit(c, memory_order_relaxed);
}

typedef struct isola__tstats {
  _Atomic uint64_t sent, sent_bytes, refused, spawned;
  _Atomic uint64_t ended[ISOLA_EXIT_REASONS];
  _Atomic uint64_t dropped[ISOLA_DROP_REASONS];
} isola__tstats;

/* Where isola__t.tstats points on a thread with no record of the running
 * VM (the initial value, and after a pool, root or event thread stops):
 * what is counted there is lost, as for a thread that cannot be asked.  It
 * saves the send a test for NULL. */
extern isola__tstats isola__tstats_sink;

struct isola__istats {
  /* Senders' line: atomic adds by whoever queues a message. */
  alignas(ISOLA__CACHE_LINE) _Atomic uint64_t enq, enq_bytes;
  _Atomic uint64_t oob_enq, oob_enq_bytes;
  /* The running thread's line. */
  alignas(ISOLA__CACHE_LINE) _Atomic uint64_t deq, deq_bytes;
  _Atomic uint64_t oob_deq, oob_deq_bytes;
  _Atomic uint64_t handled, errors, run_ns, last_run_ns, since_ns;
  _Atomic uint64_t heap_used, heap_peak, heap_limit;
  _Atomic uint32_t state, pauses, timers, watches;
  _Atomic int32_t worker;
  _Atomic uint64_t group; /* set at spawn: the group may be freed first */
};

/* The calling thread's counters, or NULL (a thread with no record of this
 * VM: the timer thread).  Use where epoch.h is included. */
#define ISOLA__TSTATS(vm)                                                      \
  (isola__t.rec && isola__t.rec_vm_gen == (vm)->gen ? &isola__t.rec->stats    \
                                                    : NULL)

/* -DISOLA_NO_SEND_COUNTERS=ON (CMake; for measuring their cost only,
 * docs/observability.md): the snapshot-only updates on every send (the
 * sender's sent, sent_bytes) and every turn (the worker's st_cur) are
 * compiled out, and snapshots show them as 0.  st_turns stays: the
 * scheduler's stuck-worker check reads it. */
#ifdef ISOLA_NO_SEND_COUNTERS
#define ISOLA__SEND_COUNTERS 0
#else
#define ISOLA__SEND_COUNTERS 1
#endif

/* A message is queued for iso: the sender's totals, and with isolate
 * stats the receiver's senders' line.  Called before the push (the
 * receiver may free m as soon as it is queued). */
#define ISOLA__STATS_SENT(vm, iso, m)                                          \
  do {                                                                         \
    if (ISOLA__SEND_COUNTERS) {                                                \
      isola__tstats *ts_ = isola__t.tstats;                                    \
      isola__cnt_add(&ts_->sent, 1);                                           \
      isola__cnt_add(&ts_->sent_bytes, (m)->bytes);                            \
    }                                                                          \
    if (ISOLA__UNLIKELY((iso)->observed)) {                                   \
      if ((iso)->has_stats)                                                    \
        isola__istats_enq(isola__iso_stats(iso), (m)->bytes);                  \
      if ((vm)->tracing && (m)->type == ISOLA__MSG_USER)                       \
        isola__trace_event((vm), ISOLA__TEV_FLOW_OUT, NULL, (uintptr_t)(m),    \
                           0);                                                 \
    }                                                                          \
    ISOLA__PROBE2(send, (iso)->control_port, (m)->bytes);                      \
  } while (0)

/* Counts one event of the calling thread: field is a member of
 * isola__tstats (e.g. refused, dropped[ISOLA_DROP_CLOSED]). */
#define ISOLA__STATS_COUNT(vm, field)                                          \
  do {                                                                         \
    isola__tstats *ts_ = ISOLA__TSTATS(vm);                                    \
    if (ts_) isola__cnt_add(&ts_->field, 1);                                   \
  } while (0)

static inline void isola__istats_enq(struct isola__istats *st, uint32_t n) {
  atomic_fetch_add_explicit(&st->enq, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&st->enq_bytes, n, memory_order_relaxed);
}

/* A turn of iso begins or ends (state: an isola_isolate_state): its
 * counters (isolate stats) and trace events (trace.h).  Use where vm.h is
 * included; each costs one test when both are off (iso->observed). */
#define ISOLA__TURN_BEGIN(vm, iso)                                             \
  do {                                                                         \
    ISOLA__PROBE1(turn_start, (iso)->control_port);                            \
    if (ISOLA__UNLIKELY((iso)->observed)) {                                   \
      if ((iso)->has_stats) isola__istats_turn_begin(iso);                     \
      if ((vm)->tracing) isola__trace_turn((vm), (iso), true, 0);              \
    }                                                                          \
  } while (0)
#define ISOLA__TURN_END(vm, iso, state)                                        \
  do {                                                                         \
    ISOLA__PROBE2(turn_end, (iso)->control_port, (int)(state));                \
    if (ISOLA__UNLIKELY((iso)->observed)) {                                   \
      if ((iso)->has_stats) isola__istats_turn_end((iso), (state));            \
      if ((vm)->tracing) isola__trace_turn((vm), (iso), false, (state));       \
    }                                                                          \
  } while (0)

/* The isolate's counters: with config.isolate_stats its pool block holds
 * them right after the isolate (a 384-byte block instead of 192), so they
 * are made and freed with it. */
static inline struct isola__istats *isola__iso_stats(isola__isolate *iso) {
  return iso->has_stats ? (struct isola__istats *)(void *)(iso + 1) : NULL;
}
_Static_assert(sizeof(struct isola__isolate) % ISOLA__CACHE_LINE == 0,
               "the counters after an isolate start on a cache line");

/* snapshot.c: sets up a new isolate's counters; a turn begins and ends
 * (the running thread; state is an isola_isolate_state). */
void isola__istats_init(struct isola__istats *st);
void isola__istats_turn_begin(isola__isolate *iso);
void isola__istats_turn_end(isola__isolate *iso, uint32_t state);
/* A message was taken off a queue by its isolate (oob: the control
 * queue); a handler is about to get one. */
static inline void isola__istats_deq(struct isola__istats *st, bool oob,
                                     uint32_t bytes) {
  if (oob) {
    isola__cnt_add(&st->oob_deq, 1);
    isola__cnt_add(&st->oob_deq_bytes, bytes);
  } else {
    isola__cnt_add(&st->deq, 1);
    isola__cnt_add(&st->deq_bytes, bytes);
  }
}

#endif
