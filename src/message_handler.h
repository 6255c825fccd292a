/*
 * message_handler.h — one turn of an isolate: the Dart VM's MessageHandler.
 *
 * A turn handles out-of-band messages first, then up to a batch of normal
 * messages, then either marks the isolate idle, yields it back to the
 * scheduler, or ends it (no live ports, or killed).
 */
#ifndef ISOLA_MESSAGE_HANDLER_H
#define ISOLA_MESSAGE_HANDLER_H

#include "internal.h"

#define ISOLA__BATCH 64

typedef enum {
  ISOLA__TURN_IDLE,  /* marked unscheduled: the next push schedules it */
  ISOLA__TURN_YIELD, /* still scheduled with work left: requeue it */
  ISOLA__TURN_DEAD,  /* ended; retired */
} isola__turn;

isola__turn isola__mh_run(isola__vm *vm, isola__isolate *iso);

/* Frees a message and what it owns. */
void isola__msg_free(isola__msg *m);

/* Frees an ended isolate once no sender can see it (epoch.c calls this):
 * drains both queues, then the struct. */
void isola__mh_free_isolate(isola__isolate *iso);

#endif
