/* SPDX-License-Identifier: MIT */
/*
 * exit.c — how an isolate's end is told (control.h): the exit reasons,
 * isola__control_finish (the isola_run outcome, then every exit listener's
 * response or exit notice), and isola_exit (a last message, then the end).
 */
#include "control.h"

#include "control_state.h"
#include "isolate.h"
#include "message.h"
#include "pool.h"
#include "value.h"
#include "vm.h"

const char *isola_exit_reason_name(int reason) {
  switch (reason) {
  case ISOLA_EXIT_NORMAL: return "normal";
  case ISOLA_EXIT_KILLED: return "killed";
  case ISOLA_EXIT_ERROR: return "error";
  case ISOLA_EXIT_HEAP_LIMIT: return "heap limit";
  case ISOLA_EXIT_SHUTDOWN: return "shutdown";
  case ISOLA_EXIT_NODE_LOST: return "node lost";
  default: return "unknown";
  }
}

/* The exit notice [reason, isolate, detail, response] for the stored
 * response r, which it replaces (r is freed); r itself, made a plain
 * response, if memory runs out. */
static isola__msg *notice_of(isola__isolate *iso, isola__msg *r) {
  uint8_t reason = iso->exit_reason;
  const char *detail = iso->ctl ? iso->ctl->exit_detail : NULL;
  bool has_detail = (reason == ISOLA_EXIT_ERROR ||
                     reason == ISOLA_EXIT_HEAP_LIMIT) && detail;
  isola_value items[4] = {isola_int(reason),
                          isola_sendport(iso->control_port),
                          has_detail ? isola_str(detail) : isola_null(),
                          r->value};
  isola__msg *n;
  int rc = isola__msg_new(isola_list(items, 4), &n);
  if (rc == ISOLA_EINVAL && has_detail) { /* a detail that is not UTF-8 */
    ascii_only(iso->ctl->exit_detail);
    items[2] = isola_str(iso->ctl->exit_detail);
    rc = isola__msg_new(isola_list(items, 4), &n);
  }
  if (rc != ISOLA_OK) {
    r->type = ISOLA__MSG_USER;
    return r;
  }
  n->dest = r->dest;
  isola__msg_free(r);
  return n;
}

void isola__control_finish(isola__vm *vm, isola__isolate *iso) {
  struct isola__control *c = iso->ctl;
  if (c && c->run) {
    isola__run_deliver(vm, c->run);
    isola__run_free(c->run);
    c->run = NULL;
  }
  isola__msg *x = iso->exits;
  iso->exits = NULL;
  while (x) {
    isola__msg *next = exit_next(x);
    isola__room_give(iso, x);
    if (x->type == ISOLA__MSG_NOTICE) x = notice_of(iso, x);
    /* Owed since the listener was added, and paid for by this isolate's
     * room then: its receiver's room does not refuse it. */
    x->held |= ISOLA__HELD_EXEMPT;
    isola__post(vm, x); /* its node is the queue's from here */
    x = next;
  }
  if (iso->ctl) isola__control_release(iso, true); /* exits are gone */
}

/* ---- isola_exit -------------------------------------------------------- */

/* Posts the last message m and leaves the event.  The post goes through
 * the VM entry: inside a blocking section this thread is offline in the
 * epoch, and the receiver must stay alive while the post touches it. */
ISOLA_NORETURN_ static void exit_with(isola__isolate *iso, isola__msg *m) {
  isola__call e;
  if (isola__vm_enter(&e) == ISOLA_OK) {
    isola__post(e.vm, m); /* a closed port drops it */
    isola__vm_leave(&e);
  } else {
    isola__msg_free(m); /* shutting down: dropped, the isolate ends */
  }
  longjmp(*(jmp_buf *)iso->unwind, ISOLA__UNWIND_EXIT);
}

int isola_exit(isola_port port, isola_value value) {
  isola__isolate *iso = isola__t.current;
  if (!iso || !iso->unwind) return ISOLA_ENOTISOLATE;
  if (port == ISOLA_PORT_NONE) return ISOLA_EINVAL;
  /* Sent as isola_send() sends (through the VM entry, transferable
   * buffers moved and their handles emptied), then the end.  Only a
   * message that could not be built lets the isolate carry on. */
  int rc = isola_send(port, value);
  if (rc == ISOLA_EINVAL || rc == ISOLA_ENOMEM || rc == ISOLA_ETRANSFER)
    return rc;
  longjmp(*(jmp_buf *)iso->unwind, ISOLA__UNWIND_EXIT);
}

int isola_exit_owned(isola_port port, isola_value *owned) {
  isola__isolate *iso = isola__t.current;
  if (!iso || !iso->unwind) return ISOLA_ENOTISOLATE;
  if (port == ISOLA_PORT_NONE || !owned) return ISOLA_EINVAL;
  isola_value v = *owned;
  if (!isola__value_has_block(v))
    return isola_exit(port, v); /* a scalar: nothing to adopt */
  uint8_t cls;
  isola__msg *m = isola__pool_alloc(sizeof *m, &cls);
  if (!m) return ISOLA_ENOMEM;
  m->pool_class = cls;
  m->bytes = sizeof *m; /* the adopted block is the caller's size */
  m->charged = 0;
  m->held = 0;
  m->type = ISOLA__MSG_EXTERNAL;
  m->dest = port;
  m->reply_to = ISOLA_PORT_NONE;
  m->value = v; /* the block is the message's from here (isola__msg_free) */
  *owned = isola_null();
  exit_with(iso, m);
}
