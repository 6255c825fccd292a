/* SPDX-License-Identifier: MIT */
/* send.h — the send path (send.c): posting built messages, control
 * requests, and the calling thread's outbox. */
#ifndef ISOLA_SEND_H
#define ISOLA_SEND_H

#include "internal.h"
#include "turn.h"

/* Posts a built message to its destination; takes ownership of m.  The
 * caller is on an isolate or has entered the VM (isola__vm_enter). */
int isola__post(isola__vm *vm, isola__msg *m);

/* Posts a control message (m->dest is a control port) to the isolate's
 * OOB queue and schedules it if idle; takes ownership of m.  The caller has
 * entered the VM (isola__vm_enter) before building m.  ISOLA_ECLOSED,
 * ISOLA_EINVAL (not a control port). */
int isola__post_control(isola__vm *vm, isola__msg *m);

#endif
