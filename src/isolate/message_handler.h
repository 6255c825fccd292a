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
#include "message.h"
#include "turn.h"

#define ISOLA__BATCH 64

/* isola__mh_run() (turn.h) runs one turn of iso on the calling thread.
 * jb is the thread's unwind point, armed by the setjmp in isola__mh_drive():
 * a handler that leaves its event with a jump (isola_throw, a kill at an
 * interrupt point, isola_exit) lands there, and the driver finishes the
 * turn.  So a thread pays for one setjmp per jump, not one per turn. */

/* Frees an ended isolate once no sender can see it (epoch.c calls this):
 * drains both queues, then the struct. */
void isola__mh_free_isolate(isola__isolate *iso);

#endif
