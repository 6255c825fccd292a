/* SPDX-License-Identifier: MIT */
/*
 * turn.h — what the scheduler needs of the isolate layer above it, declared
 * here so that the scheduler includes nothing above itself: what a turn
 * returns, a turn and the unwind driver its pool threads run
 * (message_handler.c), the loop of turns they share, and
 * the outbox it pushes at an interrupt point (send.c).  The definitions
 * stay above; only the declarations live at this layer.
 */
#ifndef ISOLA_TURN_H
#define ISOLA_TURN_H

#include <setjmp.h>

#include "determ.h"
#include "internal.h"

typedef enum {
  ISOLA__TURN_IDLE,  /* marked unscheduled: the next push schedules it */
  ISOLA__TURN_YIELD, /* still scheduled with work left: requeue it */
  ISOLA__TURN_DEAD,  /* ended; retired */
} isola__turn;

/* One turn of iso on the calling thread (message_handler.c); jb is the
 * thread's unwind point, armed by isola__mh_drive(). */
isola__turn isola__mh_run(isola__vm *vm, isola__isolate *iso, jmp_buf *jb);

/* Where a driven thread gets its turns: called with the isolate whose turn
 * just ended and that turn's result (NULL the first time), returns the
 * next isolate to run, or NULL to stop. */
typedef isola__isolate *(*isola__mh_next_fn)(void *arg, isola__isolate *prev,
                                              isola__turn r);

/* The turns of a driven thread, from the isolate whose turn just ended
 * (or NULL) and that turn's result, until next() returns NULL; returns
 * then, or leaves by a jump to jb when a handler unwinds.  Each kind of
 * driven thread wraps this in a function of its own with its next() known
 * (an isola__mh_loop_fn), so that next() is inlined into the loop. */
static inline __attribute__((always_inline)) void
isola__mh_turns(isola__vm *vm, jmp_buf *jb, isola__isolate *iso,
                isola__turn r, isola__mh_next_fn next, void *arg) {
  for (;;) {
    /* (An idle turn said so before its isolate could be claimed again.) */
    if (iso && r != ISOLA__TURN_IDLE)
      ISOLA__TEST_HOOK_P(ISOLA__HOOK_RUN_END, iso);
    /* Decision points of the deterministic mode (determ.h). */
    ISOLA__DET_POINT(ISOLA__DET_TURN_END);
    if (!(iso = next(arg, iso, r))) return;
    ISOLA__DET_POINT(ISOLA__DET_TURN_START);
    ISOLA__TEST_HOOK_P(ISOLA__HOOK_RUN_BEGIN, iso);
    r = isola__mh_run(vm, iso, jb);
  }
}

/* A driven thread's loop of turns: isola__mh_turns with its own next(). */
typedef void (*isola__mh_loop_fn)(isola__vm *vm, void *arg, jmp_buf *jb,
                                  isola__isolate *iso, isola__turn r);

/* The unwind driver, the one place that arms the setjmp, for pool threads
 * (scheduler.c) and root threads (isolate.c) alike: runs loop() from the
 * start, and again after each jump, once it has finished the unwound turn,
 * with that turn's isolate and result, until loop() returns. */
void isola__mh_drive(isola__vm *vm, isola__mh_loop_fn loop, void *arg);

/* Pushes the calling thread's outbox (send.c), which is not empty. */
void isola__outbox_push(isola__vm *vm);

/* Pushes the messages the running event sent and this thread still holds
 * back (the outbox, send.c).  Called where an event ends or may wait. */
static inline void isola__outbox_flush(isola__vm *vm) {
  if (isola__t.ob_to) isola__outbox_push(vm);
}

#endif
