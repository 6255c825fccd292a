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
 * for the whole life of its map (the permutation's key is fixed, and a
 * chunk of slots, once in the directory, stays until the map is freed), so
 * a thread that sends to a few ports again and again (a ping-pong, a
 * request and its replies) decodes each once, and finds the slot with one
 * load: no directory walk.  The slot's own id still says whether the port
 * is open.  gen tells this map's entries from an earlier VM's, whose slots
 * are gone.  Direct-mapped: 64 entries (1.5 KiB) make it unlikely that two
 * of a thread's few hot ids share one (a shared entry costs a decode per
 * send). */
#define ISOLA__ID_MEMO 64
typedef struct isola__id_memo {
  uint64_t id;
  uint64_t gen; /* the map's number (never 0) */
  isola__port_slot *slot;
} isola__id_memo;
extern ISOLA__TLS isola__id_memo isola__id_memos[ISOLA__ID_MEMO];

static inline isola__id_memo *isola__id_memo_of(isola_port id) {
  return &isola__id_memos[(id ^ (id >> 32)) & (ISOLA__ID_MEMO - 1)];
}

/* The slot id names if this thread's memo holds it, else NULL. */
static inline isola__port_slot *isola__port_memo_hit(isola__port_map *m,
                                                     isola_port id) {
  isola__id_memo *e = isola__id_memo_of(id);
  return ISOLA__LIKELY(e->id == id && e->gen == m->gen) ? e->slot : NULL;
}

/* The slot id would name, decoded and memoized, or NULL when it names none
 * (index 0, or a chunk never made). */
static inline isola__port_slot *isola__port_decode_slot(isola__port_map *m,
                                                        isola_port id) {
  uint32_t index =
      isola__idc_decode_low(&m->idc, id) & ISOLA__PORT_INDEX_MASK;
  isola__port_slot *chunk = atomic_load_explicit(
      &m->dir[index >> ISOLA__CHUNK_BITS], memory_order_acquire);
  /* Slot 0 is never handed out, and no open port's id is 0, so
   * ISOLA_PORT_NONE never matches. */
  if (ISOLA__UNLIKELY(!chunk || index == 0)) return NULL;
  isola__port_slot *s = &chunk[index & (ISOLA__CHUNK_SLOTS - 1)];
  isola__id_memo *e = isola__id_memo_of(id);
  e->id = id;
  e->gen = m->gen;
  e->slot = s;
  return s;
}

/* The slot of an open port, or NULL. */
static inline isola__port_slot *isola__port_slot_of(isola__port_map *m,
                                                    isola_port id) {
  isola__port_slot *s = isola__port_memo_hit(m, id);
  if (!s && !(s = isola__port_decode_slot(m, id))) return NULL;
  /* Acquire pairs with the release store of id in isola__port_open(). */
  if (atomic_load_explicit(&s->id, memory_order_acquire) != id) return NULL;
  return s;
}

/* The slot at a list index (owner lists). */
static inline isola__port_slot *isola__port_at(isola__port_map *m,
                                               uint32_t index) {
  isola__port_slot *chunk = atomic_load_explicit(
      &m->dir[index >> ISOLA__CHUNK_BITS], memory_order_acquire);
  return &chunk[index & (ISOLA__CHUNK_SLOTS - 1)];
}

/* The rest of a sender's lookup once it has the open port's slot s: the
 * owner, or NULL if the port closed meanwhile; *state gets its state.
 *
 * A seqlock read.  The first id load (acquire, done by the caller) makes
 * owner and state at least as new as the port's opening.  They must not
 * be newer either: after a close the slot may be reopened, on this thread
 * or another, with a new owner and state, and a relaxed load may return
 * those while the id loads both still return the old id.  So the slot's
 * next incarnation writes them only after a release fence that follows
 * the close's id = 0 (isola__port_open()), and here an acquire fence sits
 * between the field loads and the second id load: if either field load
 * read a value written after that release fence, the fences synchronize,
 * the close's id = 0 happens before the second id load, and that load
 * cannot return the old id (coherence).  So an equal id means owner and
 * state belong to it.  On x86 both fences are compiler barriers only. */
static inline isola__isolate *isola__port_owner_of(isola__port_slot *s,
                                                   isola_port id,
                                                   int *state) {
  isola__isolate *owner =
      atomic_load_explicit(&s->owner, memory_order_relaxed);
  *state = atomic_load_explicit(&s->state, memory_order_relaxed);
  atomic_thread_fence(memory_order_acquire); /* pairs: isola__port_open() */
  if (atomic_load_explicit(&s->id, memory_order_relaxed) != id) return NULL;
  return owner;
}

/* For a sender: the isolate that owns open port id, or NULL.  *state gets
 * the port's state, *slot (if not NULL) its slot.  The caller must be
 * online (epoch.h). */
static inline isola__isolate *isola__port_lookup_slot(isola__port_map *m,
                                                      isola_port id,
                                                      int *state,
                                                      isola__port_slot **slot) {
  isola__port_slot *s = isola__port_slot_of(m, id);
  if (!s) return NULL;
  if (slot) *slot = s;
  return isola__port_owner_of(s, id, state);
}

/* isola__port_lookup_slot for an isolate's send.  Tried in turn: the slot
 * at index *hint (0: none), which is that of the last port whose id this
 * isolate had to decode; the thread's memo; the decode.  The hint is for
 * a thread running more isolates than its memo holds ids (a ring of 503);
 * tried first, it keeps the memo's hits and misses, unpredictable there,
 * off that path.  A wrong hint costs a look at a slot: the slot's own id
 * says whether it is the port's.  A lookup that had to decode stores the
 * index in *hint when it fits. */
static inline isola__isolate *isola__port_lookup_hint(isola__port_map *m,
                                                      isola_port id,
                                                      int *state,
                                                      isola__port_slot **slot,
                                                      uint16_t *hint) {
  isola__port_slot *s = NULL;
  uint32_t h = *hint;
  if (h) {
    s = isola__port_at(m, h);
    if (atomic_load_explicit(&s->id, memory_order_relaxed) != id) s = NULL;
  }
  if (!s && !(s = isola__port_memo_hit(m, id))) {
    if (!(s = isola__port_decode_slot(m, id))) return NULL;
    if (atomic_load_explicit(&s->id, memory_order_acquire) != id) return NULL;
    *hint = s->index <= UINT16_MAX ? (uint16_t)s->index : 0;
  }
  /* Acquire, as in isola__port_slot_of. */
  if (atomic_load_explicit(&s->id, memory_order_acquire) != id) return NULL;
  *slot = s;
  return isola__port_owner_of(s, id, state);
}

static inline isola__isolate *isola__port_lookup(isola__port_map *m,
                                                 isola_port id, int *state) {
  return isola__port_lookup_slot(m, id, state, NULL);
}

#endif
