/* epoch.c — epoch-based reclamation (see epoch.h). */
#include "epoch.h"

#include <stdlib.h>

void isola__epoch_init(isola__epoch *e,
                       void (*free_isolate)(isola__isolate *)) {
  atomic_init(&e->global, 1);
  pthread_mutex_init(&e->lock, NULL);
  atomic_init(&e->recs, NULL);
  e->retired_head = e->retired_tail = NULL;
  atomic_init(&e->nretired, 0);
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

void isola__epoch_retire(isola__epoch *e, isola__isolate *iso) {
  pthread_mutex_lock(&e->lock);
  /* The isolate was unlinked before this point; acq_rel makes that unlink
   * visible to whoever loads the advanced epoch with acquire. */
  iso->retire_epoch =
      atomic_fetch_add_explicit(&e->global, 1, memory_order_acq_rel);
  iso->retire_next = NULL;
  if (e->retired_tail)
    e->retired_tail->retire_next = iso;
  else
    e->retired_head = iso;
  e->retired_tail = iso;
  size_t n = atomic_fetch_add_explicit(&e->nretired, 1,
                                       memory_order_relaxed) + 1;
  pthread_mutex_unlock(&e->lock);
  if (n >= 64) isola__epoch_reclaim(e);
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

void isola__epoch_reclaim(isola__epoch *e) {
  if (atomic_load_explicit(&e->nretired, memory_order_relaxed) == 0) return;
  uint64_t min = min_online(e);
  isola__isolate *free_list = NULL, **link = &free_list;
  pthread_mutex_lock(&e->lock);
  /* The list is in retire order, so epochs only grow along it. */
  while (e->retired_head && e->retired_head->retire_epoch < min) {
    isola__isolate *iso = e->retired_head;
    e->retired_head = iso->retire_next;
    *link = iso;
    link = &iso->retire_next;
    atomic_fetch_sub_explicit(&e->nretired, 1, memory_order_relaxed);
  }
  *link = NULL;
  if (!e->retired_head) e->retired_tail = NULL;
  pthread_mutex_unlock(&e->lock);
  while (free_list) {
    isola__isolate *next = free_list->retire_next;
    e->free_isolate(free_list);
    free_list = next;
  }
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
