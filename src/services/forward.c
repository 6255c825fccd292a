/* SPDX-License-Identifier: MIT */
/*
 * forward.c — control requests for isolates of other processes
 * (isola.h: isola_control_forward_set()).  control_request.c asks here
 * only where a request would fail with ISOLA_ECLOSED, after its lookup:
 * the local path is not touched.  The forwarder is one atomic pointer,
 * read once per forwarded request.
 */
#include "forward.h"

#include <stdatomic.h>

static _Atomic(isola_control_forward_fn) forwarder;

void isola_control_forward_set(isola_control_forward_fn fn) {
  atomic_store_explicit(&forwarder, fn, memory_order_release);
}

int isola__control_forward(const isola_isolate *h, uint32_t type,
                           isola_value v, isola_port reply_to) {
  isola_control_forward_fn fn =
      atomic_load_explicit(&forwarder, memory_order_acquire);
  if (!fn) return ISOLA_ECLOSED;
  isola_control_request r = {.isolate = *h, .response = isola_null()};
  switch (type) {
  case ISOLA__MSG_PAUSE:
  case ISOLA__MSG_RESUME:
    r.kind = type == ISOLA__MSG_PAUSE ? ISOLA_CONTROL_PAUSE
                                      : ISOLA_CONTROL_RESUME;
    r.resume = (isola_capability)reply_to; /* request() put it there */
    break;
  case ISOLA__MSG_KILL_NOW:
  case ISOLA__MSG_KILL_NEXT:
    r.kind = ISOLA_CONTROL_KILL;
    r.priority = type == ISOLA__MSG_KILL_NOW ? ISOLA_IMMEDIATE
                                             : ISOLA_BEFORE_NEXT_EVENT;
    break;
  case ISOLA__MSG_PING_NOW:
  case ISOLA__MSG_PING_NEXT:
    r.kind = ISOLA_CONTROL_PING;
    r.priority = type == ISOLA__MSG_PING_NOW ? ISOLA_IMMEDIATE
                                             : ISOLA_BEFORE_NEXT_EVENT;
    r.port = reply_to;
    r.response = v;
    break;
  case ISOLA__MSG_EXIT_ADD:
  case ISOLA__MSG_NOTICE_ADD:
    r.kind = type == ISOLA__MSG_EXIT_ADD ? ISOLA_CONTROL_EXIT_ADD
                                         : ISOLA_CONTROL_EXIT_NOTICE_ADD;
    r.port = reply_to;
    r.response = v;
    break;
  case ISOLA__MSG_EXIT_DEL:
    r.kind = ISOLA_CONTROL_EXIT_REMOVE;
    r.port = reply_to;
    break;
  case ISOLA__MSG_ERROR_ADD:
    r.kind = ISOLA_CONTROL_ERROR_ADD;
    r.port = reply_to;
    break;
  case ISOLA__MSG_ERROR_NOTICE_ADD:
    r.kind = ISOLA_CONTROL_ERROR_NOTICE_ADD;
    r.port = reply_to;
    break;
  case ISOLA__MSG_ERROR_DEL:
    r.kind = ISOLA_CONTROL_ERROR_REMOVE;
    r.port = reply_to;
    break;
  case ISOLA__MSG_FATAL_ON:
  case ISOLA__MSG_FATAL_OFF:
    r.kind = ISOLA_CONTROL_ERRORS_FATAL;
    r.fatal = type == ISOLA__MSG_FATAL_ON;
    break;
  default:
    return ISOLA_ECLOSED;
  }
  return fn(&r);
}
