/* SPDX-License-Identifier: MIT */
/*
 * message_queue.h — the mailbox: an intrusive multi-producer single-consumer
 * queue of messages (after Vyukov), with the scheduling state folded into
 * the head word as Pony does.
 *
 *   head  the node pushed last; bit 0 set means "the isolate is not
 *         scheduled".  Producers swap it; the consumer reads it.
 *   tail  the node consumed last (initially the sentinel); consumer only.
 *
 * A push is one atomic exchange and one release store: wait-free.  The
 * exchange also clears bit 0 (nodes are aligned, so their bit 0 is clear),
 * and the producer that sees the bit set in the old head is the one that
 * must schedule the isolate.  So "schedule once" costs no extra atomic.
 *
 * A pop returns the node after tail and makes it the new tail; the old tail
 * is released then.  So the node being handled stays linked until the next
 * pop, and the consumer may read it freely meanwhile.
 */
#ifndef ISOLA_MESSAGE_QUEUE_H
#define ISOLA_MESSAGE_QUEUE_H

#include "internal.h"

#define ISOLA__UNSCHEDULED ((uintptr_t)1)

/* Pushes the chain first .. last (linked through next; last->next is set
 * here) onto a queue whose head word is *head, with one exchange.  Returns
 * true when the caller found the queue's owner unscheduled and must now
 * schedule it. */
static inline bool isola__mq_push_chain(_Atomic(uintptr_t) *head,
                                        isola__node *first,
                                        isola__node *last) {
  atomic_store_explicit(&last->next, NULL, memory_order_relaxed);
  /* acq_rel: release publishes the nodes' contents (and the chain's links)
   * to the consumer that reaches them through prev->next below; acquire
   * orders us after the consumer's mark-idle (the CAS in
   * isola__mq_mark_idle) when we see its bit. */
  uintptr_t prev = atomic_exchange_explicit(head, (uintptr_t)last,
                                            memory_order_acq_rel);
  isola__node *p = (isola__node *)(prev & ~ISOLA__UNSCHEDULED);
  /* Release pairs with the acquire load of next in isola__mq_pop(). */
  atomic_store_explicit(&p->next, first, memory_order_release);
  return (prev & ISOLA__UNSCHEDULED) != 0;
}

/* Pushes one node: a chain of one. */
static inline bool isola__mq_push(_Atomic(uintptr_t) *head, isola__node *node) {
  return isola__mq_push_chain(head, node, node);
}

/* The OOB queue has no scheduling bit: the same push on a plain pointer.
 *
 * seq_cst, not acq_rel: this exchange is one side of a Dekker pair.  The
 * sender then pokes (a seq_cst load of the normal head, isola__mq_poke);
 * the consumer marks itself idle (a seq_cst CAS of that head) and then
 * loads oob_head (seq_cst, wanted() in message_handler.c).  Only if both
 * stores and both loads are in the single total order S of seq_cst
 * operations does one side see the other's store (C11 7.17.3: a seq_cst
 * load sees the last seq_cst store before it in S, or a later one): the
 * sender sees the idle mark and schedules the isolate, or the consumer
 * sees the message and takes itself back.  With acq_rel the exchange is
 * not in S, and a weakly ordered machine may let the sender's load of head
 * pass its store to oob_head: both would miss, and the request would wait
 * for the next message.  (On x86 and on AArch64's LDAXR/STLXR the two
 * orders compile to the same instructions.) */
static inline void isola__mq_push_plain(_Atomic(isola__node *) *head,
                                        isola__node *node) {
  atomic_store_explicit(&node->next, NULL, memory_order_relaxed);
  isola__node *p =
      atomic_exchange_explicit(head, node, memory_order_seq_cst);
  atomic_store_explicit(&p->next, node, memory_order_release);
}

/* The node after *tail, which becomes the new tail; *old receives the node
 * that stops being the tail (the caller releases it unless it is a sentinel).
 * NULL when nothing is there yet (or a push is half done: its producer
 * will finish it). */
static inline isola__node *isola__mq_pop(isola__node **tail,
                                         isola__node **old) {
  isola__node *t = *tail;
  /* Acquire pairs with the release store of p->next in the push. */
  isola__node *next = atomic_load_explicit(&t->next, memory_order_acquire);
  if (!next) return NULL;
  *tail = next;
  *old = t;
  return next;
}

/* The node isola__mq_pop() would return next, without taking it (NULL
 * when none is there yet).  Consumer only. */
static inline isola__node *isola__mq_peek(isola__node *tail) {
  return atomic_load_explicit(&tail->next, memory_order_acquire);
}

/* Whether the queue looks empty to its consumer: nothing after tail and no
 * push under way. */
static inline bool isola__mq_empty(_Atomic(uintptr_t) *head,
                                   isola__node *tail) {
  uintptr_t h = atomic_load_explicit(head, memory_order_acquire);
  return (isola__node *)(h & ~ISOLA__UNSCHEDULED) == tail &&
         atomic_load_explicit(&tail->next, memory_order_acquire) == NULL;
}

/* Consumer: marks its isolate unscheduled.  With only_if_empty, succeeds
 * only when no node follows tail, so a message is never left behind an idle
 * isolate; without it (a paused isolate) the mark is set whatever is queued,
 * and the next push schedules the isolate again.  Returns false when a push
 * got in first: the consumer keeps running. */
static inline bool isola__mq_mark_idle(_Atomic(uintptr_t) *head,
                                       isola__node *tail, bool only_if_empty) {
  uintptr_t h = atomic_load_explicit(head, memory_order_relaxed);
  for (;;) {
    if (only_if_empty && (isola__node *)h != tail) return false;
    /* seq_cst: this store and our later load of the OOB queue must not be
     * reordered (the Dekker pair with isola__mq_poke's load of head). */
    if (atomic_compare_exchange_weak_explicit(head, &h,
                                              h | ISOLA__UNSCHEDULED,
                                              memory_order_seq_cst,
                                              memory_order_relaxed))
      return true;
    if (h & ISOLA__UNSCHEDULED) return true; /* cannot happen: we own it */
  }
}

/* Clears the unscheduled bit if set.  Returns true if this call cleared it:
 * the caller now owns scheduling the isolate.  Used by whoever makes an
 * isolate runnable without pushing a normal message (an OOB message, a
 * kill), and by the consumer taking itself back after mark-idle. */
static inline bool isola__mq_poke(_Atomic(uintptr_t) *head) {
  uintptr_t h = atomic_load_explicit(head, memory_order_seq_cst);
  while (h & ISOLA__UNSCHEDULED) {
    if (atomic_compare_exchange_weak_explicit(head, &h,
                                              h & ~ISOLA__UNSCHEDULED,
                                              memory_order_seq_cst,
                                              memory_order_relaxed))
      return true;
  }
  return false;
}

#endif
