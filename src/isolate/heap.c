/* SPDX-License-Identifier: MIT */
/* heap.c — the isolate heap (isola_alloc) and the rarely used state behind
 * iso->ext (heap.h). */
#include "heap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "message_queue.h"
#include "stats.h"
#include "vm.h"

/* The isolate struct is one 192-byte pool block (three cache lines,
 * internal.h; pool.h's 192-byte class): state added to it must go behind
 * iso->ext instead of growing it. */
_Static_assert(sizeof(isola__isolate) <= 192,
               "the isolate outgrew its pool class: move state to ext");
/* Blocks are aligned for any type because the header's size is. */
_Static_assert(sizeof(isola__heap_hdr) % alignof(max_align_t) == 0,
               "the heap header breaks block alignment");

static struct isola__ext *ext_new(size_t limit) {
  struct isola__ext *x = calloc(1, sizeof *x);
  if (!x)
    return NULL;
  x->blocks.prev = x->blocks.next = &x->blocks;
  x->limit = limit;
  return x;
}

/* The room an isolate with this heap limit gives others (internal.h):
 * as much as the limit; none counted without a limit, or with one of 2 GiB
 * or more (the room has 31 bits; such an isolate's queue is bounded only
 * by a mailbox bound, if it has one). */
static uint32_t room_for(size_t limit) {
  return limit && limit < ISOLA__ROOM_FREE
             ? (uint32_t)limit | ISOLA__ROOM_UNBOUNDED
             : ISOLA__ROOM_NONE;
}

int isola__heap_init(isola__vm *vm, isola__isolate *iso,
                     const isola_spawn_options *opts) {
  atomic_init(&iso->room, room_for(vm->config.heap_limit));
  /* The VM's limit needs no state: ext, made on first use, copies it. */
  if (!opts || !opts->heap_limit || opts->heap_limit == vm->config.heap_limit)
    return ISOLA_OK;
  iso->ext = ext_new(opts->heap_limit == SIZE_MAX ? 0 : opts->heap_limit);
  if (!iso->ext) return ISOLA_ENOMEM;
  atomic_init(&iso->room, room_for(iso->ext->limit));
  return ISOLA_OK;
}

bool isola__room_take_slow(isola__isolate *iso, isola__msg *m,
                           uint32_t room) {
  /* No heap limit (the word's top bit is clear: a mailbox bound sent the
   * send here): nothing to take. */
  if ((room & ISOLA__ROOM_FREE) == ISOLA__ROOM_FREE) return true;
  /* Relaxed: the word is a count; nothing is published through it. */
  while ((room & ISOLA__ROOM_FREE) >= m->bytes) {
    if (atomic_compare_exchange_weak_explicit(&iso->room, &room,
                                              room - m->bytes,
                                              memory_order_relaxed,
                                              memory_order_relaxed)) {
      m->held |= ISOLA__HELD_ROOM;
      return true;
    }
  }
  return false;
}

struct isola__ext *isola__ext_get(isola__isolate *iso) {
  if (ISOLA__LIKELY(iso->ext != NULL))
    return iso->ext;
  isola__vm *vm = isola__vm_get();
  return iso->ext = ext_new(vm ? vm->config.heap_limit : 0);
}

static void heap_release(struct isola__ext *x) {
  isola__heap_hdr *h = x->blocks.next;
  while (h != &x->blocks) {
    isola__heap_hdr *next = h->next;
    free(h);
    h = next;
  }
  x->blocks.prev = x->blocks.next = &x->blocks;
  x->in_use = 0;
}

void isola__ext_end(isola__isolate *iso) {
  struct isola__ext *x = iso->ext;
  /* Destructors first: they may still use the heap and schedule
   * microtasks, which are then dropped with the rest. */
  if (x)
    isola__local_end(x, true);
  isola__mt_drop(iso);
  isola__ext_free(iso);
}

void isola__ext_free(isola__isolate *iso) {
  isola__mt_drop(iso);
  struct isola__ext *x = iso->ext;
  if (!x)
    return;
  isola__local_end(x, false);
  heap_release(x);
  free(x);
  iso->ext = NULL;
}

/* ---- the public heap --------------------------------------------------- */

/* Whether an out-of-memory error can be raised: inside an event there is a
 * turn to unwind to; elsewhere (a hook, a destructor) the caller gets NULL
 * (raising there would be fatal misuse). */
static _Thread_local bool quiet; /* isola__heap_try_*: never raise */
static bool can_raise(isola__isolate *iso) {
  return iso->unwind != NULL && !quiet;
}

/* Raises the out-of-memory error of the running isolate, or returns NULL
 * where nothing can be unwound. */
static void *out_of_memory(isola__isolate *iso, struct isola__ext *x,
                           size_t size) {
  if (!can_raise(iso))
    return NULL;
  if (x && x->limit)
    isola__throw_heap_limit("out of memory: an allocation of %zu bytes "
                            "would pass the isolate heap limit of %zu "
                            "bytes (%zu in use)",
                            size, x->limit, x->in_use);
  isola_throw("out of memory: an allocation of %zu bytes failed", size);
}

/* Whether size more bytes (block and header) stay within the limit. */
static bool fits(const struct isola__ext *x, size_t old_total, size_t size) {
  if (size > SIZE_MAX - sizeof(isola__heap_hdr))
    return false;
  size_t total = size + sizeof(isola__heap_hdr);
  if (!x->limit)
    return true;
  /* The message being handled counts too (isola__heap_charge_msg). */
  size_t others = x->in_use + x->msg_bytes - old_total;
  if (others < x->msg_bytes) return false; /* overflow */
  return total <= x->limit && others <= x->limit - total;
}

static void link_block(struct isola__ext *x, isola__heap_hdr *h) {
  h->prev = &x->blocks;
  h->next = x->blocks.next;
  x->blocks.next->prev = h;
  x->blocks.next = h;
}

static void account(struct isola__ext *x, size_t old_total, size_t total) {
  x->in_use = x->in_use - old_total + total;
  if (x->in_use > x->peak)
    x->peak = x->in_use;
}

void *isola_alloc(size_t size) {
  isola__isolate *iso = isola__t.current;
  if (!iso)
    return NULL;
  struct isola__ext *x = isola__ext_get(iso);
  if (!x)
    return out_of_memory(iso, NULL, size);
  if (!fits(x, 0, size))
    return out_of_memory(iso, x, size);
  isola__heap_hdr *h = malloc(sizeof *h + size);
  if (!h)
    return out_of_memory(iso, NULL, size);
  h->owner = x;
  h->size = size;
  link_block(x, h);
  account(x, 0, sizeof *h + size);
  return h + 1;
}

void *isola_calloc(size_t size) {
  void *p = isola_alloc(size);
  if (p)
    memset(p, 0, size);
  return p;
}

/* The header of p, a block of the running isolate, or an uncaught error
 * (NULL where it cannot be raised). */
static isola__heap_hdr *own_block(isola__isolate *iso, void *p) {
  isola__heap_hdr *h = (isola__heap_hdr *)p - 1;
  if (ISOLA__LIKELY(iso->ext && h->owner == iso->ext))
    return h;
  if (can_raise(iso))
    isola_throw("isola_free/isola_realloc: %p is not a block of this "
                "isolate's heap",
                p);
  return NULL;
}

void *isola_realloc(void *p, size_t size) {
  if (!p)
    return isola_alloc(size);
  isola__isolate *iso = isola__t.current;
  if (!iso)
    return NULL;
  isola__heap_hdr *h = own_block(iso, p);
  if (!h)
    return NULL;
  struct isola__ext *x = iso->ext;
  size_t old_total = sizeof *h + h->size;
  if (!fits(x, old_total, size))
    return out_of_memory(iso, x, size);
  /* The block may move: unlink it first and link whichever copy is
   * valid afterwards, so the list never points at freed memory. */
  h->prev->next = h->next;
  h->next->prev = h->prev;
  isola__heap_hdr *n = realloc(h, sizeof *h + size);
  if (!n) {
    link_block(x, h);
    return out_of_memory(iso, NULL, size);
  }
  n->size = size;
  link_block(x, n);
  account(x, old_total, sizeof *n + size);
  return n + 1;
}

void *isola__heap_try_calloc(size_t size) {
  quiet = true;
  void *p = isola_calloc(size);
  quiet = false;
  return p;
}

void *isola__heap_try_realloc(void *p, size_t size) {
  quiet = true;
  void *q = isola_realloc(p, size);
  quiet = false;
  return q;
}

void isola_free(void *p) {
  if (!p)
    return;
  isola__isolate *iso = isola__t.current;
  if (!iso)
    return;
  isola__heap_hdr *h = own_block(iso, p);
  if (!h)
    return;
  h->prev->next = h->next;
  h->next->prev = h->prev;
  iso->ext->in_use -= sizeof *h + h->size;
  /* Cleared so that a block freed twice is more likely to fail the owner
   * check, but that is not a detection: the second isola_free reads the
   * header of freed memory, undefined behaviour as with free() (isola.h
   * says so). */
  h->owner = NULL;
  free(h);
}

/* ---- figures ----------------------------------------------------------- */

int isola_current_stats(isola_isolate_stats *out) {
  if (!out)
    return ISOLA_EINVAL;
  isola__isolate *iso = isola__t.current;
  if (!iso)
    return ISOLA_ENOTISOLATE;
  memset(out, 0, sizeof *out);
  struct isola__ext *x = iso->ext;
  if (x) {
    out->heap_bytes = x->in_use;
    out->message_bytes = x->msg_bytes;
    out->heap_peak = x->peak;
    out->heap_limit = x->limit;
    for (isola__heap_hdr *h = x->blocks.next; h != &x->blocks; h = h->next)
      out->heap_blocks++;
  } else {
    isola__vm *vm = isola__vm_get();
    out->heap_limit = vm ? vm->config.heap_limit : 0;
  }
  /* The queue from the tail (the message being handled, or the sentinel) to
   * the last linked node: this thread owns the tail, and nodes after it
   * are freed only by this thread's pops.  Acquire pairs with each
   * sender's release link (message_queue.h). */
  for (isola__node *n =
           atomic_load_explicit(&iso->tail->next, memory_order_acquire);
       n; n = atomic_load_explicit(&n->next, memory_order_acquire))
    if (n != &iso->sentinel)
      out->messages_queued++;
  return ISOLA_OK;
}

void isola__heap_charge_msg(isola__vm *vm, isola__isolate *iso,
                            isola__msg *m) {
  /* No heap state and no VM limit: nothing to count against (the common
   * case costs these two loads). */
  if (!iso->ext && !vm->config.heap_limit) return;
  struct isola__ext *x = isola__ext_get(iso);
  if (!x) return; /* out of memory for the heap state: not charged */
  size_t n = m->bytes;
  size_t held = x->in_use + x->msg_bytes;
  if (x->limit && (n > x->limit || held > x->limit - n)) {
    ISOLA__STATS_COUNT(vm, dropped[ISOLA_DROP_HEAP]);
    if (can_raise(iso))
      isola__throw_heap_limit("out of memory: a message of %zu bytes "
                              "would pass the isolate heap limit of %zu "
                              "bytes (%zu in use)",
                              n, x->limit, held);
    return;
  }
  x->msg_bytes += n;
  m->charged = 1;
}
