/* SPDX-License-Identifier: MIT */
/*
 * epoch.h — epoch-based reclamation of isolates.
 *
 * A sender finds the isolate that owns a port through the port map and then
 * pushes onto its queue with no lock held, so the isolate may end between
 * the two.  Its memory must therefore outlive every sender that may still
 * hold a pointer to it.  Each thread that may hold such a pointer has a
 * record: 0 while it holds none (offline), otherwise the global epoch it
 * saw when it last came online or refreshed.  An ended isolate is retired
 * with the current global epoch E, which then advances; it is freed once no
 * record is online with an epoch <= E.
 *
 * Retiring is per thread: a thread keeps the isolates it retires in a list
 * of its own and stamps them in batches, with one increment of the global
 * epoch per batch (the increment's release orders every unlink of the batch
 * before it), so ending isolates on several threads shares no lock and
 * touches the global epoch once per 64 isolates.
 *
 * Pool threads stay online while they run isolates and refresh once per
 * turn (a load and a store, no fence), so the send path inside a handler
 * pays nothing; a turn that goes on refreshes every batch of messages and
 * at every isola_check_interrupts() (scheduler.h), and a root isolate's
 * thread between its turns, so reclamation never waits for a turn to end
 * (a handler that computes without reaching an interrupt point holds back
 * only what ends while it computes).  Other threads come online for the
 * duration of one call.
 */
#ifndef ISOLA_EPOCH_H
#define ISOLA_EPOCH_H

#include "internal.h"
#include "stats.h"

struct isola__epoch_rec {
  alignas(ISOLA__CACHE_LINE) _Atomic uint64_t epoch; /* 0: offline */
  _Atomic bool in_use;    /* owned by a live thread */
  isola__epoch_rec *next; /* list of all records; append-only */
  /* What the threads that held this record counted (stats.h): written by
   * the holder only, on a line of its own; kept across holders. */
  alignas(ISOLA__CACHE_LINE) isola__tstats stats;
};

typedef struct isola__epoch {
  alignas(ISOLA__CACHE_LINE) _Atomic uint64_t global; /* starts at 1 */
  pthread_mutex_t lock; /* protects recs (appends) and the retire list */
  _Atomic(isola__epoch_rec *) recs;
  isola__isolate *retired_head, *retired_tail;
  _Atomic size_t nretired;
  _Atomic size_t nfreed; /* isolates freed so far (tests count them) */
  void (*free_isolate)(isola__isolate *);
} isola__epoch;

void isola__epoch_init(isola__epoch *e, void (*free_isolate)(isola__isolate *));

/* A record for the calling thread: a free one reused, or a new one.
 * NULL when out of memory. */
isola__epoch_rec *isola__epoch_register(isola__epoch *e);

/* Gives a record back (its thread no longer uses it). */
void isola__epoch_unregister(isola__epoch_rec *r);

/* Offline -> online.  The fence orders the store of the epoch before every
 * later load of a shared pointer; it pairs with the fence in reclaim. */
static inline void isola__epoch_online(isola__epoch *e, isola__epoch_rec *r) {
  atomic_store_explicit(&r->epoch,
                        atomic_load_explicit(&e->global, memory_order_acquire),
                        memory_order_relaxed);
  atomic_thread_fence(memory_order_seq_cst);
}

/* Online -> offline: every pointer loaded before is dropped (release pairs
 * with the acquire load in reclaim). */
static inline void isola__epoch_offline(isola__epoch_rec *r) {
  atomic_store_explicit(&r->epoch, 0, memory_order_release);
}

/* Online -> online with a newer epoch.  The caller holds no pointer loaded
 * before.  No fence is needed: a reclaimer that sees the old value is only
 * more careful, and the acquire load of the global epoch orders every later
 * load after the unlink of anything retired before it. */
static inline void isola__epoch_refresh(isola__epoch *e, isola__epoch_rec *r) {
  atomic_store_explicit(&r->epoch,
                        atomic_load_explicit(&e->global, memory_order_acquire),
                        memory_order_release);
}

/* Hands an ended isolate (already unreachable from the port map) to the
 * reclaimer.  Called by the thread that ran the isolate. */
void isola__epoch_retire(isola__epoch *e, isola__isolate *iso);

/* Frees what the calling thread retired, and what exited threads left
 * behind, once no online thread can still see it.  Any thread. */
void isola__epoch_reclaim(isola__epoch *e);

/* The calling thread stops running isolates: what it retired goes to the
 * shared list, for others (or shutdown) to free. */
void isola__epoch_thread_exit(isola__epoch *e);

/* Frees everything retired and every record.  No thread may be online. */
void isola__epoch_destroy(isola__epoch *e);

/* Whether some record is online (shutdown waits for senders to leave). */
bool isola__epoch_any_online(isola__epoch *e);

#endif
