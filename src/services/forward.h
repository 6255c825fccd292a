/* SPDX-License-Identifier: MIT */
/* forward.h — control requests for isolates of other processes
 * (isola_control_forward_set(), forward.c). */
#ifndef ISOLA_FORWARD_H
#define ISOLA_FORWARD_H

#include "internal.h"

/* A control request (control_request.c's request(): type an ISOLA__MSG_*
 * control type, v and reply_to as that message carries them) whose port
 * named no isolate of this process: handed to the installed forwarder.
 * Returns the forwarder's answer, or ISOLA_ECLOSED when none is
 * installed.  The caller has left the VM (isola__vm_leave). */
int isola__control_forward(const isola_isolate *h, uint32_t type,
                           isola_value v, isola_port reply_to);

#endif
