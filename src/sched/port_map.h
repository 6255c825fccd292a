/* SPDX-License-Identifier: MIT */
/*
 * port_map.h — the global table from port id to the isolate that owns it.
 *
 * A port id is E(gen << 28 | index), E the VM's keyed permutation of 64-bit
 * words (isola__idc, random.h).  index picks a slot in a two-level table
 * whose chunks are never freed while the VM runs, so a lookup decodes the
 * id, loads the slot and compares, with no lock.  gen counts the slot's
 * uses, so a slot reused gets an id it never had (a stale id never names a
 * new port), and neither the index nor the generation shows in an id:
 * without the key every bit of the next id is unpredictable.
 *
 * A slot's id field is the truth: non-zero and equal to the id while the
 * port is open, 0 once it closes.  Everything else in the slot is written
 * before the id is published (release) and read after it (acquire).
 */
#ifndef ISOLA_PORT_MAP_H
#define ISOLA_PORT_MAP_H

#include "internal.h"
#include "lock.h"
#include "random.h"

#define ISOLA__PORT_INDEX_BITS 28
#define ISOLA__PORT_GEN_BITS 36
#define ISOLA__CHUNK_BITS 12
#define ISOLA__CHUNK_SLOTS (1u << ISOLA__CHUNK_BITS)
#define ISOLA__DIR_SIZE (1u << (ISOLA__PORT_INDEX_BITS - ISOLA__CHUNK_BITS))
#define ISOLA__PORT_INDEX_MASK ((1u << ISOLA__PORT_INDEX_BITS) - 1)

/* Port states, as the Dart VM names them. */
enum {
  ISOLA__PORT_NEW = 0,  /* allocated, not yet published */
  ISOLA__PORT_LIVE,     /* open; keeps its isolate alive */
  ISOLA__PORT_CONTROL,  /* an isolate's control port: never keeps it alive */
  ISOLA__PORT_INACTIVE, /* open, but does not keep its isolate alive */
};

typedef struct isola__port_slot {
  _Atomic uint64_t id;              /* the open port's id, or 0 */
  _Atomic(isola__isolate *) owner;  /* valid while id is */
  isola_handler handler;            /* owner only */
  void *ctx;                        /* owner only */
  uint64_t gen;     /* generations handed out; held by the slot's holder */
  _Atomic uint32_t prev; /* owner's port list (0 ends it) */
  _Atomic uint32_t next; /* owner's port list, or the free list */
  _Atomic uint8_t state; /* ISOLA__PORT_*; senders read it after the id */
  /* The port may have names (name_server.h): set under the names lock by a
   * register, cleared by the close hook. */
  _Atomic uint8_t named;
  uint32_t index; /* its own index, set when opened: a close needs no decode */
} isola__port_slot;

typedef struct isola__port_map {
  /* Read by every send, written only at init: a line of their own. */
  _Alignas(64) isola__idc idc; /* the id permutation's keys */
  _Atomic(isola__port_slot *) *dir; /* ISOLA__DIR_SIZE chunk pointers */
  uint64_t gen; /* this map's number in the process (never 0) */
  _Alignas(64) _Atomic uint32_t high; /* first index never handed out */
  isola__lock lock;                 /* protects free_head, nfree */
  uint32_t free_head;
  _Atomic size_t nfree; /* written under lock; read unlocked as a hint */
} isola__port_map;

int isola__port_map_init(isola__port_map *m);
void isola__port_map_destroy(isola__port_map *m);

/* Returns this thread's cached free slots to the map (thread exit). */
void isola__port_map_flush_cache(isola__port_map *m);

/* Opens a port owned by owner in state (LIVE, CONTROL or INACTIVE) and
 * links it into owner's list.  The caller is owner's running thread, or
 * the spawner before owner first runs.  ISOLA_ENOMEM when the table is
 * full or memory is out. */
int isola__port_open(isola__port_map *m, isola__isolate *owner, int state,
                     isola_handler handler, void *ctx, isola_port *out);

/* Closing an open port of the calling owner takes two steps, so that the
 * layer that closes it can tell what lives above the map (the name
 * server) in between, and the map calls nothing above it:
 * isola__port_unpublish() makes the port unfindable and returns its id;
 * isola__port_release() unlinks the slot from its owner, adjusts
 * owner->live_ports and frees the slot for reuse.  isola__port_close()
 * (isolate.h) does both. */
isola_port isola__port_unpublish(isola__port_map *m, isola__port_slot *s);
void isola__port_release(isola__port_map *m, isola__port_slot *s);

/* Calls fn(owner, arg) for the owner of every open control port, that is
 * for every live isolate.  The caller must be online (epoch.h); isolates
 * spawned or ended meanwhile may be missed or seen. */
void isola__port_map_each_isolate(isola__port_map *m,
                                  void (*fn)(isola__isolate *, void *),
                                  void *arg);

/* Each thread's memo of the ids it decoded last: an id names the same slot
 * index for the whole life of its map (the permutation's key is fixed), so
 * a thread that sends to a few ports again and again (a ping-pong, a
 * request and its replies) decodes each once.  The slot's own id still
 * says whether the port is open.  gen tells this map's entries from an
 * earlier VM's.  Direct-mapped: 64 entries (1 KiB) make it unlikely that
 * two of a thread's few hot ids share one (a shared entry costs a decode
 * per send). */
#define ISOLA__ID_MEMO 64
typedef struct isola__id_memo {
  uint64_t id;
  uint64_t gen_index; /* map gen << 32 | slot index */
} isola__id_memo;
extern ISOLA__TLS isola__id_memo isola__id_memos[ISOLA__ID_MEMO];

/* The slot index an id would name (not checked). */
static inline uint32_t isola__port_index(isola__port_map *m, isola_port id) {
  isola__id_memo *e = &isola__id_memos[(id ^ (id >> 32)) &
                                       (ISOLA__ID_MEMO - 1)];
  uint64_t tag = m->gen << 32;
  if (ISOLA__LIKELY(e->id == id &&
                    (e->gen_index & ~(uint64_t)UINT32_MAX) == tag))
    return (uint32_t)e->gen_index;
  uint32_t index =
      isola__idc_decode_low(&m->idc, id) & ISOLA__PORT_INDEX_MASK;
  e->id = id;
  e->gen_index = tag | index;
  return index;
}

/* The slot of an open port, or NULL; *index_out (if not NULL) gets the
 * slot's index. */
static inline isola__port_slot *isola__port_slot_ix(isola__port_map *m,
                                                    isola_port id,
                                                    uint32_t *index_out) {
  uint32_t index = isola__port_index(m, id);
  if (index_out) *index_out = index;
  isola__port_slot *chunk = atomic_load_explicit(
      &m->dir[index >> ISOLA__CHUNK_BITS], memory_order_acquire);
  /* Slot 0 is never handed out, and no open port's id is 0, so
   * ISOLA_PORT_NONE never matches. */
  if (ISOLA__UNLIKELY(!chunk || index == 0)) return NULL;
  isola__port_slot *s = &chunk[index & (ISOLA__CHUNK_SLOTS - 1)];
  /* Acquire pairs with the release store of id in isola__port_open(). */
  if (atomic_load_explicit(&s->id, memory_order_acquire) != id) return NULL;
  return s;
}

static inline isola__port_slot *isola__port_slot_of(isola__port_map *m,
                                                    isola_port id) {
  return isola__port_slot_ix(m, id, NULL);
}

/* The slot at a list index (owner lists). */
static inline isola__port_slot *isola__port_at(isola__port_map *m,
                                               uint32_t index) {
  isola__port_slot *chunk = atomic_load_explicit(
      &m->dir[index >> ISOLA__CHUNK_BITS], memory_order_acquire);
  return &chunk[index & (ISOLA__CHUNK_SLOTS - 1)];
}

/* For a sender: the isolate that owns open port id, or NULL.  *state gets
 * the port's state.  The caller must be online (epoch.h).
 *
 * A seqlock read.  The first id load (acquire, in isola__port_slot_of)
 * makes owner and state at least as new as the port's opening.  They must
 * not be newer either: after a close the slot may be reopened, on this
 * thread or another, with a new owner and state, and a relaxed load may
 * return those while the id loads both still return the old id.  So the
 * slot's next incarnation writes them only after a release fence that
 * follows the close's id = 0 (isola__port_open()), and here an acquire
 * fence sits between the field loads and the second id load: if either
 * field load read a value written after that release fence, the fences
 * synchronize, the close's id = 0 happens before the second id load, and
 * that load cannot return the old id (coherence).  So an equal id means
 * owner and state belong to it.  On x86 both fences are compiler barriers
 * only. */
static inline isola__isolate *isola__port_lookup_ix(isola__port_map *m,
                                                    isola_port id, int *state,
                                                    uint32_t *index) {
  isola__port_slot *s = isola__port_slot_ix(m, id, index);
  if (!s) return NULL;
  isola__isolate *owner =
      atomic_load_explicit(&s->owner, memory_order_relaxed);
  *state = atomic_load_explicit(&s->state, memory_order_relaxed);
  atomic_thread_fence(memory_order_acquire); /* pairs: isola__port_open() */
  if (atomic_load_explicit(&s->id, memory_order_relaxed) != id) return NULL;
  return owner;
}

/* isola__port_lookup_ix, trying the slot at index *hint first (0: none):
 * the slot's own id says whether it is the port's, so a stale hint costs
 * a look and nothing else.  A lookup that had to find the index stores it
 * in *hint when it fits. */
static inline isola__isolate *isola__port_lookup_hint(isola__port_map *m,
                                                      isola_port id,
                                                      int *state,
                                                      uint32_t *index,
                                                      uint16_t *hint) {
  uint32_t h = *hint;
  isola__port_slot *s = NULL;
  if (h) {
    /* A chunk, once in the directory, stays until the map is freed. */
    isola__port_slot *chunk = atomic_load_explicit(
        &m->dir[h >> ISOLA__CHUNK_BITS], memory_order_acquire);
    s = &chunk[h & (ISOLA__CHUNK_SLOTS - 1)];
    /* Acquire, as in isola__port_slot_ix. */
    if (atomic_load_explicit(&s->id, memory_order_acquire) != id) s = NULL;
  }
  if (s) {
    *index = h;
  } else {
    if (!(s = isola__port_slot_ix(m, id, index))) return NULL;
    *hint = *index <= UINT16_MAX ? (uint16_t)*index : 0;
  }
  isola__isolate *owner =
      atomic_load_explicit(&s->owner, memory_order_relaxed);
  *state = atomic_load_explicit(&s->state, memory_order_relaxed);
  atomic_thread_fence(memory_order_acquire); /* as isola__port_lookup_ix */
  if (atomic_load_explicit(&s->id, memory_order_relaxed) != id) return NULL;
  return owner;
}

static inline isola__isolate *isola__port_lookup(isola__port_map *m,
                                                 isola_port id, int *state) {
  return isola__port_lookup_ix(m, id, state, NULL);
}

#endif
