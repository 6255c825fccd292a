/* SPDX-License-Identifier: MIT */
/* epoch.c — epoch-based reclamation (see epoch.h). */
#include "epoch.h"

#include <stdlib.h>
#include <string.h>

void isola__epoch_init(isola__epoch *e,
                       void (*free_isolate)(isola__isolate *)) {
  atomic_init(&e->global, 1);
  pthread_mutex_init(&e->lock, NULL);
  atomic_init(&e->recs, NULL);
  e->retired_head = e->retired_tail = NULL;
  atomic_init(&e->nretired, 0);
  atomic_init(&e->nfreed, 0);
  e->free_isolate = free_isolate;
}

isola__epoch_rec *isola__epoch_register(isola__epoch *e) {
  for (isola__epoch_rec *r = atomic_load_explicit(&e->recs,
                                                  memory_order_acquire);
       r; r = r->next) {
    bool expect = false;
    if (!atomic_load_explicit(&r->in_use, memory_order_relaxed) &&
        atomic_compare_exchange_strong_explicit(&r->in_use, &expect, true,
                                                memory_order_acq_rel,
                                                memory_order_relaxed))
      return r;
  }
  isola__epoch_rec *r = aligned_alloc(ISOLA__CACHE_LINE, sizeof *r);
  if (!r) return NULL;
  memset(&r->stats, 0, sizeof r->stats);
  atomic_init(&r->epoch, 0);
  atomic_init(&r->in_use, true);
  pthread_mutex_lock(&e->lock);
  r->next = atomic_load_explicit(&e->recs, memory_order_relaxed);
  /* Release: a reader that finds r in the list sees it initialised. */
  atomic_store_explicit(&e->recs, r, memory_order_release);
  pthread_mutex_unlock(&e->lock);
  return r;
}

void isola__epoch_unregister(isola__epoch_rec *r) {
  atomic_store_explicit(&r->epoch, 0, memory_order_release);
  atomic_store_explicit(&r->in_use, false, memory_order_release);
}

static uint64_t min_online(isola__epoch *e) {
  /* Pairs with the fence in isola__epoch_online(): either that thread's
   * later loads see the unlink, or we see its epoch here. */
  atomic_thread_fence(memory_order_seq_cst);
  uint64_t min = UINT64_MAX;
  for (isola__epoch_rec *r = atomic_load_explicit(&e->recs,
                                                  memory_order_acquire);
       r; r = r->next) {
    uint64_t v = atomic_load_explicit(&r->epoch, memory_order_acquire);
    if (v != 0 && v < min) min = v;
  }
  return min;
}

bool isola__epoch_any_online(isola__epoch *e) {
  return min_online(e) != UINT64_MAX;
}

#define BATCH 64

/* Stamps the calling thread's pending isolates with the current epoch and
 * advances it.  The increment is a release: a thread that later loads the
 * advanced epoch (acquire) sees every unlink made before. */
static void stamp_pending(isola__epoch *e) {
  isola__tls *t = &isola__t;
  if (!t->retire_pending) return;
  uint64_t stamp =
      atomic_fetch_add_explicit(&e->global, 1, memory_order_acq_rel);
  /* pending is newest first; reverse it onto the stamped list's tail,
   * stamping as we go (one pass: each isolate is a cache miss). */
  isola__isolate *rev = NULL, *last = t->retire_pending;
  while (t->retire_pending) {
    isola__isolate *iso = t->retire_pending;
    t->retire_pending = iso->retire_next;
    iso->retire_next = rev;
    iso->retire_epoch = stamp;
    rev = iso;
  }
  t->npending = 0;
  if (t->retire_tail)
    t->retire_tail->retire_next = rev;
  else
    t->retire_head = rev;
  t->retire_tail = last;
}

void isola__epoch_retire(isola__epoch *e, isola__isolate *iso) {
  isola__tls *t = &isola__t;
  iso->retire_next = t->retire_pending;
  t->retire_pending = iso;
  if (++t->npending >= BATCH) isola__epoch_reclaim(e);
}

/* Detaches the prefix of a stamped list that no online thread can see. */
static isola__isolate *take_safe(isola__isolate **head, isola__isolate **tail,
                                 uint64_t min) {
  isola__isolate *first = *head, *last = NULL;
  while (*head && (*head)->retire_epoch < min) {
    last = *head;
    *head = last->retire_next;
  }
  if (!last) return NULL;
  last->retire_next = NULL;
  if (!*head) *tail = NULL;
  return first;
}

static void free_all(isola__epoch *e, isola__isolate *iso) {
  size_t n = 0;
  while (iso) {
    isola__isolate *next = iso->retire_next;
    e->free_isolate(iso);
    iso = next;
    n++;
  }
  if (n) atomic_fetch_add_explicit(&e->nfreed, n, memory_order_relaxed);
}

void isola__epoch_reclaim(isola__epoch *e) {
  isola__tls *t = &isola__t;
  stamp_pending(e);
  bool shared = atomic_load_explicit(&e->nretired, memory_order_relaxed) != 0;
  if (!t->retire_head && !shared) return;
  if (t->retire_head)
    free_all(e, take_safe(&t->retire_head, &t->retire_tail, min_online(e)));
  if (shared) {
    pthread_mutex_lock(&e->lock);
    /* The minimum is taken after the lock, not before: an isolate another
     * thread hands over (thread_exit) after an earlier scan may be held by
     * a thread that came online after that scan at an epoch below its
     * stamp, which that scan could not see (with nobody online it gave
     * UINT64_MAX, and the isolate would be freed under the newcomer).
     * Everything on the list now was stamped, so unlinked, before the
     * handing thread's unlock; our lock, then the fence in min_online(),
     * order that before the scan: a thread the scan misses came online
     * after it, and its loads see the unlink (the pair in epoch.h). */
    uint64_t min = min_online(e);
    isola__isolate *list =
        take_safe(&e->retired_head, &e->retired_tail, min);
    size_t n = 0;
    for (isola__isolate *i = list; i; i = i->retire_next) n++;
    atomic_fetch_sub_explicit(&e->nretired, n, memory_order_relaxed);
    pthread_mutex_unlock(&e->lock);
    free_all(e, list);
  }
}

void isola__epoch_thread_exit(isola__epoch *e) {
  isola__tls *t = &isola__t;
  stamp_pending(e);
  if (!t->retire_head) return;
  size_t n = 0;
  for (isola__isolate *i = t->retire_head; i; i = i->retire_next) n++;
  pthread_mutex_lock(&e->lock);
  /* Stamps from different threads interleave: merge ours (stamped in
   * order, so sorted) into the shared list, which stays sorted.  Linear:
   * an insertion per isolate from the head was quadratic, and a thread
   * can leave with a hundred thousand. */
  isola__isolate *a = e->retired_head, *b = t->retire_head;
  isola__isolate *head = NULL, **pp = &head, *last = NULL;
  while (a && b) {
    isola__isolate **take = a->retire_epoch <= b->retire_epoch ? &a : &b;
    last = *pp = *take;
    pp = &last->retire_next;
    *take = last->retire_next;
  }
  *pp = a ? a : b;
  e->retired_head = head;
  if (*pp) { /* the rest of one list: its tail is the new tail */
    e->retired_tail = a ? e->retired_tail : t->retire_tail;
  } else {
    e->retired_tail = last;
  }
  atomic_fetch_add_explicit(&e->nretired, n, memory_order_relaxed);
  pthread_mutex_unlock(&e->lock);
  t->retire_head = t->retire_tail = NULL;
}

void isola__epoch_destroy(isola__epoch *e) {
  isola__isolate *iso = e->retired_head;
  while (iso) {
    isola__isolate *next = iso->retire_next;
    e->free_isolate(iso);
    iso = next;
  }
  e->retired_head = e->retired_tail = NULL;
  atomic_store(&e->nretired, 0);
  isola__epoch_rec *r = atomic_load(&e->recs);
  while (r) {
    isola__epoch_rec *next = r->next;
    free(r);
    r = next;
  }
  atomic_store(&e->recs, NULL);
  pthread_mutex_destroy(&e->lock);
}
