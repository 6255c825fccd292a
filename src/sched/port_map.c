/* SPDX-License-Identifier: MIT */
/* port_map.c — port ids and their slots (see port_map.h). */
#include "port_map.h"

#include <stdlib.h>

#include "platform.h"

/* Each thread keeps a few free slots, so opening and closing ports on a busy
 * pool rarely touches the shared free list. */
#define CACHE_MAX 128
#define CACHE_BATCH 64

/* Never-used indices are taken from the map's high mark RANGE at a time,
 * so threads opening ports at once do not fight over its cache line; a
 * thread that leaves abandons what is left of its range (at most 63 of
 * 2^28 indices). */
#define RANGE 64

static ISOLA__TLS struct {
  uint64_t vm_gen; /* the map generation these slots belong to */
  unsigned n;
  uint32_t slots[CACHE_MAX];
  uint32_t next, end; /* never-used indices reserved by this thread */
} cache;

static _Atomic uint64_t map_gen = 1;
static uint64_t current_gen; /* set in init; read by this VM's threads */

ISOLA__TLS isola__id_memo isola__id_memos[ISOLA__ID_MEMO];

int isola__port_map_init(isola__port_map *m) {
  m->dir = calloc(ISOLA__DIR_SIZE, sizeof *m->dir);
  if (!m->dir) return ISOLA_ENOMEM;
  atomic_init(&m->high, 1); /* index 0 is never used: no id is 0 */
  m->lock = (isola__lock)ISOLA__LOCK_INIT;
  m->free_head = 0;
  atomic_init(&m->nfree, 0);
  if (isola__idc_init(&m->idc) != 0) {
    free(m->dir);
    return ISOLA_ESYS;
  }
  current_gen = atomic_fetch_add(&map_gen, 1) + 1;
  /* The id memos keep all 64 bits: an entry of an earlier map holds a
   * slot of that map, freed with it, and must never match. */
  m->gen = current_gen;
  return ISOLA_OK;
}

void isola__port_map_destroy(isola__port_map *m) {
  for (uint32_t i = 0; i < ISOLA__DIR_SIZE; i++)
    free(atomic_load_explicit(&m->dir[i], memory_order_relaxed));
  free(m->dir);
}

static isola__port_slot *slot_at(isola__port_map *m, uint32_t index) {
  return isola__port_at(m, index);
}

static void free_list_push(isola__port_map *m, const uint32_t *idx,
                           unsigned n) {
  if (n == 0) return;
  /* Linked among themselves before the lock: a miss per slot. */
  for (unsigned i = 0; i + 1 < n; i++)
    isola__st32(&slot_at(m, idx[i])->next, idx[i + 1]);
  isola__port_slot *last = slot_at(m, idx[n - 1]);
  isola__lock_acquire(&m->lock);
  isola__st32(&last->next, m->free_head);
  m->free_head = idx[0];
  atomic_store_explicit(&m->nfree,
                        atomic_load_explicit(&m->nfree, memory_order_relaxed) +
                            n,
                        memory_order_relaxed);
  isola__lock_release(&m->lock);
}

void isola__port_map_flush_cache(isola__port_map *m) {
  if (cache.vm_gen == current_gen && cache.n > 0)
    free_list_push(m, cache.slots, cache.n);
  cache.n = 0;
}

/* A new slot index, or 0 when the table is full or memory is out. */
static uint32_t alloc_index(isola__port_map *m) {
  if (cache.vm_gen != current_gen) {
    cache.vm_gen = current_gen;
    cache.n = 0;
    cache.next = cache.end = 0;
  }
  if (cache.n > 0) return cache.slots[--cache.n];
  /* Nothing freed yet (a growing program): no lock, a new index. */
  if (atomic_load_explicit(&m->nfree, memory_order_relaxed) != 0) {
    isola__lock_acquire(&m->lock);
    size_t nfree = atomic_load_explicit(&m->nfree, memory_order_relaxed);
    while (m->free_head && cache.n < CACHE_BATCH) {
      uint32_t i = m->free_head;
      m->free_head = isola__ld32(&slot_at(m, i)->next);
      nfree--;
      cache.slots[cache.n++] = i;
    }
    atomic_store_explicit(&m->nfree, nfree, memory_order_relaxed);
    isola__lock_release(&m->lock);
    if (cache.n > 0) return cache.slots[--cache.n];
  }

  if (cache.next == cache.end) {
    uint32_t first = atomic_fetch_add_explicit(&m->high, RANGE,
                                               memory_order_relaxed);
    if (first > ISOLA__PORT_INDEX_MASK) {
      atomic_fetch_sub_explicit(&m->high, RANGE, memory_order_relaxed);
      return 0;
    }
    cache.next = first;
    cache.end = first + RANGE > ISOLA__PORT_INDEX_MASK + 1
                    ? ISOLA__PORT_INDEX_MASK + 1
                    : first + RANGE;
  }
  uint32_t index = cache.next++;
  _Atomic(isola__port_slot *) *dp = &m->dir[index >> ISOLA__CHUNK_BITS];
  if (!atomic_load_explicit(dp, memory_order_acquire)) {
    isola__port_slot *chunk = calloc(ISOLA__CHUNK_SLOTS, sizeof *chunk);
    if (!chunk) {
      /* The index is lost for this VM's lifetime; harmless. */
      return 0;
    }
    /* A chunk is large enough for calloc to map fresh pages, untouched.
     * The first open on a page reads its slot before writing it, which
     * maps the shared zero page and then copies it on the write, with a
     * TLB shoot-down sent to every other core: a fifth of spawn time.
     * Writing a byte of each page first faults it in once, here. */
    for (size_t off = 0; off < ISOLA__CHUNK_SLOTS * sizeof *chunk;
         off += 4096)
      ((volatile char *)chunk)[off] = 0;
    isola__port_slot *expect = NULL;
    /* Release publishes the zeroed chunk to lookups (acquire). */
    if (!atomic_compare_exchange_strong_explicit(dp, &expect, chunk,
                                                 memory_order_acq_rel,
                                                 memory_order_acquire))
      free(chunk);
  }
  return index;
}

static void free_index(isola__port_map *m, uint32_t index) {
  if (cache.vm_gen != current_gen) {
    cache.vm_gen = current_gen;
    cache.n = 0;
    cache.next = cache.end = 0;
  }
  if (cache.n == CACHE_MAX) {
    free_list_push(m, cache.slots + CACHE_MAX - CACHE_BATCH, CACHE_BATCH);
    cache.n -= CACHE_BATCH;
  }
  cache.slots[cache.n++] = index;
}

int isola__port_open(isola__port_map *m, isola__isolate *owner, int state,
                     isola_handler handler, void *ctx, isola_port *out) {
  uint32_t index;
  isola__port_slot *s;
  isola_port id;
  for (;;) {
    index = alloc_index(m);
    if (!index) return ISOLA_ENOMEM;
    s = slot_at(m, index);
    id = 0;
    /* The one generation whose id would be 0 (ISOLA_PORT_NONE) is skipped. */
    while (id == 0 && s->gen < ((uint64_t)1 << ISOLA__PORT_GEN_BITS))
      id = isola__idc_encode(&m->idc,
                             (s->gen++ << ISOLA__PORT_INDEX_BITS) | index);
    if (id != 0) break;
    /* Every id of this slot has been used: retire the slot for good. */
  }

  /* The slot's last close stored id = 0 before it freed the index, and that
   * happens before this point (this thread's own cache, or the free list's
   * lock).  This fence orders it before the field stores below, so a
   * lookup that reads a new field also sees the old id gone (the pairing
   * is described at isola__port_lookup()). */
  atomic_thread_fence(memory_order_release);
  s->handler = handler;
  s->ctx = ctx;
  s->index = index;
  atomic_store_explicit(&s->owner, owner, memory_order_relaxed);
  atomic_store_explicit(&s->state, (uint8_t)state, memory_order_relaxed);
  uint32_t first = isola__ld32(&owner->ports);
  isola__st32(&s->prev, 0);
  isola__st32(&s->next, first);
  if (first) isola__st32(&slot_at(m, first)->prev, index);
  isola__st32(&owner->ports, index);
  if (state == ISOLA__PORT_LIVE)
    isola__st32(&owner->live_ports, isola__ld32(&owner->live_ports) + 1);
  /* Before the release: *out may be the owner's control_port, which a
   * snapshot walking the port map reads once it sees this id. */
  *out = id;
  /* Release: a sender that reads this id sees owner and state. */
  atomic_store_explicit(&s->id, id, memory_order_release);
  return ISOLA_OK;
}

isola_port isola__port_unpublish(isola__port_map *m, isola__port_slot *s) {
  (void)m;
  uint64_t id = atomic_load_explicit(&s->id, memory_order_relaxed);
  /* From here no sender can find the port. */
  atomic_store_explicit(&s->id, 0, memory_order_release);
  return id;
}

void isola__port_release(isola__port_map *m, isola__port_slot *s) {
  isola__isolate *owner = atomic_load_explicit(&s->owner,
                                               memory_order_relaxed);
  uint32_t index = s->index;
  if (atomic_load_explicit(&s->state, memory_order_relaxed) ==
      ISOLA__PORT_LIVE)
    isola__st32(&owner->live_ports, isola__ld32(&owner->live_ports) - 1);
  uint32_t prev = isola__ld32(&s->prev), next = isola__ld32(&s->next);
  if (prev)
    isola__st32(&slot_at(m, prev)->next, next);
  else
    isola__st32(&owner->ports, next);
  if (next) isola__st32(&slot_at(m, next)->prev, prev);
  s->handler = NULL;
  s->ctx = NULL;
  free_index(m, index);
}

void isola__port_map_each_isolate(isola__port_map *m,
                                  void (*fn)(isola__isolate *, void *),
                                  void *arg) {
  uint32_t high = atomic_load_explicit(&m->high, memory_order_acquire);
  if (high > ISOLA__PORT_INDEX_MASK + 1) high = ISOLA__PORT_INDEX_MASK + 1;
  for (uint32_t i = 1; i < high; i++) {
    isola__port_slot *chunk = atomic_load_explicit(
        &m->dir[i >> ISOLA__CHUNK_BITS], memory_order_acquire);
    if (!chunk) { /* allocation of this chunk failed or is under way */
      i |= ISOLA__CHUNK_SLOTS - 1;
      continue;
    }
    isola__port_slot *s = &chunk[i & (ISOLA__CHUNK_SLOTS - 1)];
    uint64_t id = atomic_load_explicit(&s->id, memory_order_acquire);
    if (!id || atomic_load_explicit(&s->state, memory_order_relaxed) !=
                   ISOLA__PORT_CONTROL)
      continue;
    isola__isolate *owner =
        atomic_load_explicit(&s->owner, memory_order_relaxed);
    /* The seqlock read of isola__port_lookup(), for the state too. */
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&s->id, memory_order_relaxed) == id)
      fn(owner, arg);
  }
}
