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

/* Messages over this many bytes (more than the pool's largest block: a
 * malloc and a long copy) are checked against their receiver's room before
 * they are built (isola__msg_build_checked with isola__room_check). */
#define ISOLA__ROOM_CHECK_MIN 2048

/* isola__msg_build_checked's check for a message to port: ISOLA_ECLOSED
 * if port is not an open port of the kind asked for (a control port when
 * control, else a user port), ISOLA_EFULL if its isolate's room could not
 * take bytes, else ISOLA_OK.  arg is an isola__room_check_arg; the caller
 * has entered the VM. */
typedef struct isola__room_check_arg {
  isola__vm *vm;
  isola_port port;
  bool control;
} isola__room_check_arg;
int isola__room_check(size_t bytes, void *arg);

#endif
