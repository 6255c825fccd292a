/* SPDX-License-Identifier: MIT */
/* local.c — isolate-local storage (isola_local_get).
 *
 * A key gets a small id on its first use in any isolate; each isolate keeps
 * an array of its values indexed by id - 1 behind iso->ext, so a lookup is
 * a load of the id and an index: no hashing, no lock.  Values hang off the
 * isolate, not the thread, because an isolate may run on a different pool
 * thread for every event. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"
#include "lifecycle.h"

/* Key ids for the whole process: keys are static objects that outlive any
 * one VM, so their ids must stay unique across VMs too. */
static _Atomic uint32_t next_key_id = 1;

/* The key's id word, kept as a plain uint32_t in the public struct so the
 * header needs no <stdatomic.h>; _Atomic uint32_t has the same size and
 * alignment on the compilers isola supports. */
static _Atomic uint32_t *id_word(isola_local_key *key) {
  _Static_assert(sizeof(_Atomic uint32_t) == sizeof(uint32_t) &&
                     alignof(_Atomic uint32_t) == alignof(uint32_t),
                 "the key id word cannot be accessed atomically");
  return (_Atomic uint32_t *)&key->id_;
}

static uint32_t key_id(isola_local_key *key) {
  /* Relaxed: the id is a number with no data behind it; any isolate that
   * sees 0 races to set it and all agree on the winner's. */
  uint32_t id = atomic_load_explicit(id_word(key), memory_order_relaxed);
  if (ISOLA__LIKELY(id != 0))
    return id;
  uint32_t fresh =
      atomic_fetch_add_explicit(&next_key_id, 1, memory_order_relaxed);
  if (fresh == 0)
    return 0; /* 2^32 keys: out of ids */
  uint32_t expected = 0;
  if (atomic_compare_exchange_strong_explicit(id_word(key), &expected, fresh,
                                              memory_order_relaxed,
                                              memory_order_relaxed))
    return fresh;
  return expected; /* another isolate won; fresh is left unused */
}

static void *value_of(isola__local_rec *r) { return r + 1; }

/* Creates the isolate's value of key (id) on its first use. */
static void *create(isola__isolate *iso, isola_local_key *key, uint32_t id) {
  /* Ending (a hook at the end, a destructor): no value is created. */
  if (isola__life_ending(iso))
    return NULL;
  struct isola__ext *x = isola__ext_get(iso);
  if (!x || x->ending)
    return NULL;
  if (id > x->nlocals) {
    /* Ids are dense and few: grow to cover this one, doubling. */
    uint32_t n = x->nlocals ? x->nlocals : 8;
    while (n < id)
      n = n > UINT32_MAX / 2 ? id : n * 2;
    isola__local_rec **a = realloc(x->locals, (size_t)n * sizeof *a);
    if (!a)
      return NULL;
    memset(a + x->nlocals, 0, (size_t)(n - x->nlocals) * sizeof *a);
    x->locals = a;
    x->nlocals = n;
  }
  size_t size = key->size ? key->size : 1;
  if (size > SIZE_MAX - sizeof(isola__local_rec))
    return NULL;
  isola__local_rec *r = calloc(1, sizeof *r + size);
  if (!r)
    return NULL;
  r->key = key;
  r->next = x->local_list;
  x->local_list = r;
  /* In place before init runs: an init that asks for its own key gets the
   * zeroed value instead of recursing. */
  x->locals[id - 1] = r;
  if (key->init)
    key->init(value_of(r));
  return value_of(r);
}

void *isola_local_get(isola_local_key *key) {
  isola__isolate *iso = isola__t.current;
  if (!iso || !key)
    return NULL;
  uint32_t id = key_id(key);
  if (ISOLA__UNLIKELY(id == 0))
    return NULL;
  struct isola__ext *x = iso->ext;
  if (ISOLA__LIKELY(x && id <= x->nlocals && x->locals[id - 1]))
    return value_of(x->locals[id - 1]);
  return create(iso, key, id);
}

void isola__local_end(struct isola__ext *x, bool run_destructors) {
  x->ending = true;
  /* Newest first, like C++ thread_local destructors: a value made by
   * another's init is destroyed before it.  Each value leaves the index
   * before its destructor runs, so lookups from destructors see exactly
   * the values not yet destroyed. */
  isola__local_rec *r;
  while ((r = x->local_list)) {
    x->local_list = r->next;
    uint32_t id = atomic_load_explicit(id_word(r->key), memory_order_relaxed);
    x->locals[id - 1] = NULL;
    if (run_destructors && r->key->destroy)
      r->key->destroy(value_of(r));
    free(r);
  }
  free(x->locals);
  x->locals = NULL;
  x->nlocals = 0;
}
