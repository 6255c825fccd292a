/* SPDX-License-Identifier: MIT */
/*
 * backpressure.h — mailbox bounds and muting (backpressure.c; docs/design.md,
 * "Backpressure").
 *
 * An isolate may bound its queued normal messages (a count, bytes, or
 * both).  Its state, struct isola__bp, lives behind iso->ctl and is freed
 * with the isolate (after the epoch), so a sender that found the isolate
 * may use it.  Senders learn of a bound from the isolate's room word
 * (internal.h): ISOLA__ROOM_UNBOUNDED clear.  So the unbounded send path
 * pays nothing: the room word it already loads is ISOLA__ROOM_NONE.
 *
 *   full      queued >= bound (either dimension): an isolate sender is
 *             muted after its event, isola_try_send answers ISOLA_EFULL,
 *             isola_send_wait waits.
 *   low-water queued <= bound / 2 (every bounded dimension): the muted
 *             senders are released and waiting threads woken.
 *
 * A muted isolate carries ISOLA__HOLD_MUTED and is idled as a paused one
 * is: it handles control requests, and each normal message only schedules
 * a turn that idles again.  It runs again once every receiver that muted
 * it released it, or as soon as its own queue is full (an isolate over its
 * bound is never held muted: what keeps cycles from deadlocking).
 */
#ifndef ISOLA_BACKPRESSURE_H
#define ISOLA_BACKPRESSURE_H

#include <pthread.h>

#include "internal.h"

struct isola__bp {
  /* The bound (0: that dimension is not bounded); written by the isolate,
   * read by senders. */
  _Atomic uint64_t max_msgs, max_bytes;
  /* Counted messages queued now (msg->held & ISOLA__HELD_BOUND): added by
   * senders, taken by the isolate as it pops them. */
  _Atomic uint64_t msgs, bytes;
  /* Muted senders listed plus threads waiting: the isolate's pop looks at
   * it only below the low-water mark. */
  _Atomic uint32_t waiting;
  /* As a sender: how many receivers hold this isolate muted, and the
   * last it was listed on (owner only): an event that goes on sending to
   * that full receiver is listed there once, not once per send. */
  _Atomic uint32_t mutes;
  struct isola__bp *muted_on;
  pthread_mutex_t lock;
  pthread_cond_t cond; /* isola_send_wait's waiters (CLOCK_MONOTONIC) */
  /* Under lock: the control ports of the isolates this one muted, and
   * whether it ended (nobody is muted on it or waits for it after). */
  isola_port *muted;
  uint32_t nmuted, cap;
  uint32_t nwaiters;
  bool closed;
};

/* How a send treats a full bounded receiver (isola__t.send_mode). */
enum {
  ISOLA__SEND_PLAIN = 0, /* queued; an isolate sender is muted */
  ISOLA__SEND_TRY,       /* refused with ISOLA_EFULL */
  ISOLA__SEND_WAIT,      /* a plain thread waits (isola__t.send_deadline) */
};

/* The slow half of a send of a normal message to iso, whose room word
 * (room) is not ISOLA__ROOM_NONE: takes the room of a heap limit, counts
 * the message against a bound and mutes, refuses or waits as the send's
 * mode says.  ISOLA_OK (m is counted and must be queued), ISOLA_EFULL,
 * ISOLA_ETIMEDOUT, ISOLA_ECLOSED (the receiver ended while we waited). */
int isola__bp_post(isola__vm *vm, isola__isolate *iso, isola__msg *m,
                   uint32_t room);

/* The isolate popped a counted message (m->held & ISOLA__HELD_BOUND). */
void isola__bp_popped(isola__vm *vm, isola__isolate *iso, isola__msg *m);

/* Sets the calling (or a new, unpublished) isolate's bound; 0 and 0: no
 * bound.  ISOLA_ENOMEM. */
int isola__bp_set(isola__vm *vm, isola__isolate *iso, uint64_t max_msgs,
                  uint64_t max_bytes);

/* The turn's test of ISOLA__HOLD_MUTED: true while the isolate stays
 * muted (clears the bit otherwise). */
bool isola__bp_still_muted(isola__isolate *iso);

/* The state of the calling isolate if it is muted and not paused, or
 * NULL; and what its turn re-reads after marking itself idle (the Dekker
 * pairs with a release's poke and with a sender's count and push):
 * whether it is released or its own queue became full. */
struct isola__bp *isola__bp_if_muted(isola__isolate *iso);
bool isola__bp_wanted(struct isola__bp *bp);

/* The isolate ends: releases whoever it muted and wakes its waiters. */
void isola__bp_end(isola__vm *vm, isola__isolate *iso);

/* Frees the state (with the isolate's control state). */
void isola__bp_free(struct isola__bp *bp);

#endif
