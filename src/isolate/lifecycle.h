/* SPDX-License-Identifier: MIT */
/*
 * lifecycle.h — an isolate's states and the moves between them, in one
 * place (lifecycle.c).  docs/design.md, "Isolate lifetime", has the table
 * of which call is allowed in which state and what it returns.
 *
 *   NEW ──▶ RUNNING ⇄ PAUSED
 *              │         │
 *              ▼         ▼
 *            ENDING ◀────┘ ──▶ ENDED ──▶ RECLAIMED
 *
 *   NEW        being built by a spawn: not yet visible to anything that
 *              could claim or schedule it (its head is claimed by the
 *              spawner, so a kill or a send only queues)
 *   RUNNING    spawned and complete: scheduled by its messages
 *   PAUSED     holds at least one pause capability: handles only
 *              out-of-band messages
 *   ENDING     isola__isolate_end() runs: hooks, timers cancelled, ports
 *              closed, exit listeners told, isolate-local destructors; the
 *              isolate is still isola__t.current but nothing new may be
 *              opened (ports, timers, watches, microtasks, locals)
 *   ENDED      retired: no sender can find it; its memory waits for the
 *              epoch reclaimer
 *   RECLAIMED  freed by the reclaimer (the block is back in the pool)
 *
 * The state word belongs to the thread that runs the isolate (the
 * spawner's while NEW, the reclaimer's once ENDED).
 */
#ifndef ISOLA_LIFECYCLE_H
#define ISOLA_LIFECYCLE_H

#include <assert.h>

#include "internal.h"

/* The moves each state allows, as a bit set of target states. */
extern const uint8_t isola__life_moves[ISOLA__ISO_RECLAIMED + 1];

/* Moves iso to state to; the move must be one the diagram allows (checked
 * in debug builds).  Inline: an isolate's life takes four moves, each a
 * store in a release build. */
static inline void isola__life_move(isola__isolate *iso, uint8_t to) {
  assert(iso->state <= ISOLA__ISO_RECLAIMED &&
         (isola__life_moves[iso->state] & (1u << to)));
  iso->state = to;
}

/* A spawn completed iso: NEW becomes RUNNING, or PAUSED when it was
 * spawned paused.  The caller holds iso's claim and schedules it. */
void isola__life_publish(isola__isolate *iso);

/* The running isolate, for a call that opens something it owns (a port, a
 * timer, a watch, a microtask, an isolate-local value): ISOLA_OK and *out,
 * ISOLA_ENOTISOLATE (no isolate runs on this thread), or ISOLA_EENDING (it
 * is ending: nothing opened now could ever be closed or served). */
static inline int isola__life_opening(isola__isolate **out) {
  isola__isolate *iso = isola__t.current;
  if (!iso) return ISOLA_ENOTISOLATE;
  if (ISOLA__UNLIKELY(iso->state >= ISOLA__ISO_ENDING)) return ISOLA_EENDING;
  *out = iso;
  return ISOLA_OK;
}

/* For a call that waits for other isolates (isola_run, native ports'
 * open and close): ISOLA_EBUSY on a thread that runs isolates but is not
 * inside one's event (a hook on a pool or root thread, after the isolate
 * let go of it).  There the wait would hold the thread's worker, or the
 * root thread, that the awaited isolates need; inside an event the caller
 * hands its worker on first (isola_blocking_begin). */
static inline int isola__life_may_wait(void) {
  return isola__t.thread && !isola__t.current ? ISOLA_EBUSY : ISOLA_OK;
}

/* Whether iso has begun to end. */
static inline bool isola__life_ending(const isola__isolate *iso) {
  return iso->state >= ISOLA__ISO_ENDING;
}

#endif
