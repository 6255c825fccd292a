/* SPDX-License-Identifier: MIT */
/*
 * message_handler.h — one turn of an isolate: the Dart VM's MessageHandler.
 *
 * A turn handles out-of-band messages first, then up to a batch of normal
 * messages, each followed by the microtasks it scheduled, then either
 * marks the isolate idle, yields it back to the scheduler, or ends it (no
 * live ports, or killed).
 */
#ifndef ISOLA_MESSAGE_HANDLER_H
#define ISOLA_MESSAGE_HANDLER_H

#include <setjmp.h>

#include "internal.h"

#define ISOLA__BATCH 64

typedef enum {
  ISOLA__TURN_IDLE,  /* marked unscheduled: the next push schedules it */
  ISOLA__TURN_YIELD, /* still scheduled with work left: requeue it */
  ISOLA__TURN_DEAD,  /* ended; retired */
} isola__turn;

/* Runs one turn of iso on the calling thread.  jb is the thread's unwind
 * point, armed by a setjmp in the caller's loop: a handler that leaves its
 * event with a jump (isola_throw, a kill at an interrupt point, isola_exit)
 * lands there, and the caller then calls isola__mh_unwound() to finish the
 * turn.  So a thread pays for one setjmp per jump, not one per turn. */
isola__turn isola__mh_run(isola__vm *vm, isola__isolate *iso, jmp_buf *jb);

/* Finishes the turn of the running isolate (isola__t.current) after a
 * jump with code to jb; the result is that of the turn. */
isola__turn isola__mh_unwound(isola__vm *vm, int code, jmp_buf *jb);

/* Frees a message and what it owns. */
void isola__msg_free(isola__msg *m);

/* Frees an ended isolate once no sender can see it (epoch.c calls this):
 * drains both queues, then the struct. */
void isola__mh_free_isolate(isola__isolate *iso);

#endif
