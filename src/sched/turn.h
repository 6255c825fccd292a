/* SPDX-License-Identifier: MIT */
/*
 * turn.h — what the scheduler needs of the isolate layer above it, declared
 * here so that the scheduler includes nothing above itself: what a turn
 * returns, the unwind driver its pool threads run (message_handler.c), and
 * the outbox it pushes at an interrupt point (send.c).  The definitions
 * stay above; only the declarations live at this layer.
 */
#ifndef ISOLA_TURN_H
#define ISOLA_TURN_H

#include "internal.h"

typedef enum {
  ISOLA__TURN_IDLE,  /* marked unscheduled: the next push schedules it */
  ISOLA__TURN_YIELD, /* still scheduled with work left: requeue it */
  ISOLA__TURN_DEAD,  /* ended; retired */
} isola__turn;

/* Where a driven thread gets its turns: called with the isolate whose turn
 * just ended and that turn's result (NULL the first time), returns the
 * next isolate to run, or NULL to stop. */
typedef isola__isolate *(*isola__mh_next_fn)(void *arg, isola__isolate *prev,
                                              isola__turn r);

/* The unwind driver, the one place that arms the setjmp, for pool threads
 * (scheduler.c) and root threads (isolate.c) alike: runs turns of the
 * isolates next() gives until it returns NULL.  After a jump it finishes
 * the unwound turn and hands its isolate and result to next() like any
 * other turn's. */
void isola__mh_drive(isola__vm *vm, isola__mh_next_fn next, void *arg);

/* Pushes the calling thread's outbox (send.c), which is not empty. */
void isola__outbox_push(isola__vm *vm);

/* Pushes the messages the running event sent and this thread still holds
 * back (the outbox, send.c).  Called where an event ends or may wait. */
static inline void isola__outbox_flush(isola__vm *vm) {
  if (isola__t.ob_to) isola__outbox_push(vm);
}

#endif
