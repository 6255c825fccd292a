/* SPDX-License-Identifier: MIT */
/*
 * heap.h — an isolate's rarely used state: its heap (isola_alloc), its
 * isolate-local values (local.c) and the tail of its microtask queue
 * (message_handler.c).
 *
 * The isolate struct is one pool block of 192 bytes made by the million,
 * so this state lives behind iso->ext, allocated on first use (or at spawn
 * when the spawn names a heap limit of its own).  Only the microtask
 * queue's head sits in the isolate itself (iso->mt_head), on the line the
 * turn reads for iso->hold anyway: the turn tests it once per event.
 *
 * Everything here is owned by the thread running the isolate.
 */
#ifndef ISOLA_HEAP_H
#define ISOLA_HEAP_H

#include <stdalign.h>
#include <stddef.h>

#include "internal.h"

/* The header before every isola_alloc block: links it into its heap's
 * list, so that the isolate's end frees every block still allocated. */
typedef struct isola__heap_hdr {
  alignas(max_align_t) struct isola__heap_hdr *prev;
  struct isola__heap_hdr *next;
  struct isola__ext *owner; /* detects a block freed by another isolate */
  size_t size;              /* the caller's size */
} isola__heap_hdr;

/* A microtask (isola_microtask). */
typedef struct isola__mt {
  struct isola__mt *next;
  void (*fn)(void *);
  void *arg;
  uint8_t pool_class;
} isola__mt;

/* An isolate-local value: this header, then the value (local.c). */
typedef struct isola__local_rec {
  alignas(max_align_t) struct isola__local_rec *next; /* newest first */
  struct isola_local_key *key;
} isola__local_rec;

struct isola__ext {
  /* The heap: a circular list through a sentinel. */
  isola__heap_hdr blocks;
  size_t in_use; /* bytes of blocks and their headers */
  size_t peak;
  size_t limit; /* 0: none */
  size_t msg_bytes; /* the received message being handled (charge_msg) */
  /* The microtask queue's tail (its head is iso->mt_head). */
  isola__mt *mt_tail;
  /* Isolate-local values, indexed by key id - 1, and in creation order. */
  isola__local_rec **locals;
  uint32_t nlocals;
  bool ending; /* destructors run: no value is created any more */
  isola__local_rec *local_list;
  /* The isolate's timers and fd watches (event_handler.c), NULL: none. */
  struct isola__iso_timers *timers;
};

/* Sets up the heap limit at spawn: allocates iso->ext only when the spawn
 * names a limit other than the VM's.  ISOLA_ENOMEM. */
/* As isola_calloc() and isola_realloc() for the runtime's own blocks in
 * an isolate's heap (socket stream buffers): NULL when the limit or the
 * system has no room, never an uncaught error (on NULL a realloc'ed block
 * is unchanged).  The running isolate only. */
void *isola__heap_try_calloc(size_t size);
void *isola__heap_try_realloc(void *p, size_t size);

int isola__heap_init(isola__vm *vm, isola__isolate *iso,
                     const isola_spawn_options *opts);

/* iso->ext, created with the VM's default limit if missing; NULL when out
 * of memory. */
struct isola__ext *isola__ext_get(isola__isolate *iso);

/* Received messages live in the isolate's heap: the message about to be
 * handled is charged to it (when the isolate has heap state or the VM a
 * default limit), and uncharged when released.  A message that does not
 * fit under the limit raises the out-of-memory error instead of being
 * handled (the message is dropped). */
void isola__heap_charge_msg(isola__vm *vm, isola__isolate *iso,
                            isola__msg *m);
static inline void isola__heap_uncharge_msg(isola__isolate *iso,
                                            isola__msg *m) {
  if (iso->ext) iso->ext->msg_bytes -= m->bytes;
  m->charged = 0;
}

/* The isolate ends, on its thread (isola__t.current is iso): runs the
 * isolate-local destructors, drops pending microtasks, returns every heap
 * block and frees iso->ext. */
void isola__ext_end(isola__isolate *iso);

/* Frees iso->ext and what it holds without running anything (a spawn that
 * failed; the reclaimer, for an isolate that never ended on its thread). */
void isola__ext_free(isola__isolate *iso);

/* local.c: runs the destructors and frees the values (ending). */
void isola__local_end(struct isola__ext *x, bool run_destructors);

/* message_handler.c: frees the pending microtasks without running them. */
void isola__mt_drop(isola__isolate *iso);

#endif
