/* SPDX-License-Identifier: MIT */
/* send.c — the send path (send.h): isola_send and isola_send_reply, posts
 * of built messages and of control requests, and the outbox that pushes a
 * handler's sends in a row to one isolate as one chain. */
#include "send.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "backpressure.h"
#include "control.h"
#include "detail.h"
#include "epoch.h"
#include "message.h"
#include "message_queue.h"
#include "platform.h"
#include "port_map.h"
#include "scheduler.h"
#include "stats.h"
#include "value.h"
#include "vm.h"

/* The outbox.  Messages an event sends in a row to one other isolate are
 * linked on this thread and pushed as one chain, with one exchange on the
 * receiver's head, when the event sends elsewhere, after OUTBOX_MAX of
 * them, and when the event ends or may wait, or does anything that may make
 * another isolate send to the same receiver (isola__outbox_flush() callers:
 * the end of every event, however it ends, before the turn marks its
 * isolate idle (isola__event_end), isola_blocking_begin,
 * isola_check_interrupts, control requests, spawns, name registration; the
 * causality rule in isola.h).  Between isola_blocking_begin and _end every send is
 * pushed at once: what a blocked handler sends is what it waits on.  Each
 * send still looks its port up (so ECLOSED is told at once); the receiver
 * stays valid until the flush because this thread stays online in the
 * epoch for the whole event. */
#define OUTBOX_MAX 64

/* Every post touches an isolate found through the port map, which stays
 * valid only while this thread is online in the epoch (epoch.h): a pool
 * thread between turns of a blocking section, or a plain thread outside
 * isola__vm_enter(), is not.  Checked in debug builds; test builds also
 * count posts from a thread with no record at all. */
static inline void assert_online(void) {
  ISOLA__TEST_POST_CHECK();
  assert(!isola__t.rec ||
         atomic_load_explicit(&isola__t.rec->epoch, memory_order_relaxed));
}

void isola__outbox_push(isola__vm *vm) {
  assert_online();
  isola__isolate *to = isola__t.ob_to;
  isola__t.ob_to = NULL;
  if (isola__mq_push_chain(&to->head, isola__t.ob_first, isola__t.ob_last))
    isola__sched_ready(&vm->sched, to);
}

/* isola__post(), inlined into isola_send's path (send_mode). */
static inline __attribute__((always_inline)) int post(isola__vm *vm,
                                                      isola__msg *m) {
  assert_online();
  int state;
  isola__isolate *self = isola__t.current;
  isola__isolate *iso =
      self ? isola__port_lookup_hint(&vm->ports, m->dest, &state,
                                     &m->dest_slot, &self->send_hint)
           : isola__port_lookup_slot(&vm->ports, m->dest, &state,
                                     &m->dest_slot);
  if (!iso) {
    isola__msg_free(m);
    ISOLA__STATS_COUNT(vm, refused);
    return ISOLA_ECLOSED;
  }
  /* A control port takes no user message, and says so as an unknown id
   * does: every id that names no open port of the kind asked for answers
   * ISOLA_ECLOSED, so an answer tells a prober nothing (docs/security.md). */
  if (state == ISOLA__PORT_CONTROL &&
      (m->type == ISOLA__MSG_USER || m->type == ISOLA__MSG_EXTERNAL)) {
    isola__msg_free(m);
    ISOLA__STATS_COUNT(vm, refused);
    return ISOLA_ECLOSED;
  }
  /* What others send an isolate it holds until it handles it: taken from
   * its room, given back when popped (docs/security.md), and counted
   * against its mailbox bound, which may mute the sender (backpressure.h).
   * The runtime's own messages (timers, notices, what is owed to exit
   * listeners) are neither refused nor counted.  An isolate with neither
   * a heap limit nor a bound costs this one load and branch, on the line
   * the push touches anyway. */
  ISOLA__PREFETCH_W(&iso->room);
  uint32_t room = atomic_load_explicit(&iso->room, memory_order_relaxed);
  if (ISOLA__UNLIKELY(room != ISOLA__ROOM_NONE) &&
      (m->type == ISOLA__MSG_USER || m->type == ISOLA__MSG_EXTERNAL) &&
      !(m->held & ISOLA__HELD_EXEMPT)) {
    int rc = isola__bp_post(vm, iso, m, room);
    if (rc != ISOLA_OK) {
      isola__msg_free(m);
      ISOLA__STATS_COUNT(vm, refused);
      return rc;
    }
  }
  ISOLA__STATS_SENT(vm, iso, m); /* before the push: m is then the receiver's */
  isola__isolate *to = isola__t.ob_to;
  if (to) {
    if (to == iso && m->type == ISOLA__MSG_USER) {
      atomic_store_explicit(&isola__t.ob_last->next, &m->node,
                            memory_order_relaxed);
      isola__t.ob_last = &m->node;
      if (++isola__t.ob_n >= OUTBOX_MAX) isola__outbox_push(vm);
      return ISOLA_OK;
    }
    isola__outbox_push(vm);
  }
  isola__thread *t = isola__t.thread;
  if (m->type == ISOLA__MSG_USER && self && self->unwind && iso != self &&
      t && !t->blocking) {
    /* In an event that does not block: the first of a row. */
    isola__t.ob_to = iso;
    isola__t.ob_first = isola__t.ob_last = &m->node;
    isola__t.ob_n = 1;
    return ISOLA_OK;
  }
  if (isola__mq_push(&iso->head, &m->node))
    isola__sched_ready(&vm->sched, iso);
  return ISOLA_OK;
}

int isola__post(isola__vm *vm, isola__msg *m) { return post(vm, m); }

int isola__post_control(isola__vm *vm, isola__msg *m) {
  assert_online();
  int rc = ISOLA_OK;
  /* A request goes after the normal messages sent before it. */
  isola__outbox_flush(vm);
  int state = 0;
  isola__isolate *iso = isola__port_lookup(&vm->ports, m->dest, &state);
  if (!iso || state != ISOLA__PORT_CONTROL) /* one answer: see isola__post */
    rc = ISOLA_ECLOSED;
  else if (!isola__control_admit(iso, m)) /* a wrong capability: ignored */
    rc = ISOLA_OK, iso = NULL;
  else if (!(m->held & ISOLA__HELD_EXEMPT) && !isola__room_take(iso, m))
    rc = ISOLA_EFULL; /* held until handled, or kept for the requester */
  if (iso && rc == ISOLA_OK) {
    /* Out of band, then claim scheduling if the isolate is idle: the
     * Dekker pair with the turn's mark-idle and wanted() re-check
     * (message_handler.c).  A dead isolate's head stays scheduled, so the
     * poke fails and the message is freed with the isolate. */
    if (ISOLA__UNLIKELY(iso->has_stats)) {
      atomic_fetch_add_explicit(&isola__iso_stats(iso)->oob_enq, 1,
                                memory_order_relaxed);
      atomic_fetch_add_explicit(&isola__iso_stats(iso)->oob_enq_bytes, m->bytes,
                                memory_order_relaxed);
    }
    isola__mq_push_plain(&iso->oob_head, &m->node);
    if (isola__mq_poke(&iso->head)) isola__sched_ready(&vm->sched, iso);
  } else {
    isola__msg_free(m);
  }
  return rc;
}

/* A send larger than the pool's largest block looks its receiver up before
 * it builds the message (ISOLA__ROOM_CHECK_MIN), and is refused with
 * ISOLA_EFULL if the receiver's room could not take it, so a message over
 * an isolate's limit is never built.  Smaller ones are built first and
 * refused by isola__post: a second lookup would cost more than they do.
 * Control requests are checked the same way (control_request.c). */
int isola__room_check(size_t bytes, void *arg) {
  isola__room_check_arg *c = arg;
  int state;
  isola__isolate *iso = isola__port_lookup(&c->vm->ports, c->port, &state);
  if (!iso || (state == ISOLA__PORT_CONTROL) != c->control)
    return ISOLA_ECLOSED;
  uint32_t room = atomic_load_explicit(&iso->room, memory_order_relaxed);
  if (isola__room_short(room, bytes)) return ISOLA_EFULL;
  return ISOLA_OK;
}

static int send_mode(isola_port port, isola_value value, isola_port reply_to,
                     int mode, uint64_t deadline) {
  if (port == ISOLA_PORT_NONE) {
    isola__detail_set("isola_send: the port is ISOLA_PORT_NONE");
    return ISOLA_EINVAL;
  }
  /* A send from a handler is an interrupt point (control.h): taken before
   * anything is built, so a kill that lands here leaves nothing behind. */
  isola__isolate *self = isola__t.current;
  if (self && ISOLA__UNLIKELY(isola__control_pending(self)))
    isola_check_interrupts();
  /* Entered before the message is built: a plain thread's pool blocks
   * must not be taken while isola_vm_shutdown() tears the pool down, and
   * shutdown waits for entered callers. */
  isola__call e;
  int rc = isola__vm_enter(&e);
  if (rc != ISOLA_OK) {
    isola__detail_set("isola_send: %s", isola_strerror(rc));
    return rc;
  }
  isola__msg *m;
  isola__room_check_arg rc_arg = {e.vm, port, false};
  if ((rc = isola__msg_build_checked(value, ISOLA__MOVE_BUFFERS,
                                     ISOLA__ROOM_CHECK_MIN, isola__room_check,
                                     &rc_arg, &m)) != ISOLA_OK) {
    isola__vm_leave(&e);
    return rc;
  }
  m->dest = port;
  m->reply_to = reply_to;
  /* Transfers: the sender handles to empty if the post succeeds, read now
   * because the receiver may free the message as soon as it is queued.  On
   * any failure the buffers go back to their handles untouched. */
  isola_buffer **inline_handles[8];
  isola_buffer ***handles = NULL;
  size_t nbuf = 0;
  if (isola__value_has_block(m->value) &&
      (nbuf = ((isola__block *)(m + 1))->nbuf) > 0) {
    handles = nbuf <= 8 ? inline_handles : malloc(nbuf * sizeof *handles);
    if (!handles) {
      isola__block_disown(m + 1);
      isola__msg_free(m);
      isola__vm_leave(&e);
      return ISOLA_ENOMEM;
    }
    memcpy(handles, isola__block_handles(m + 1), nbuf * sizeof *handles);
  }
  if (nbuf) isola__msg_posting = m;
  isola__t.send_mode = (uint8_t)mode;
  isola__t.send_deadline = deadline;
  rc = post(e.vm, m);
  isola__t.send_mode = ISOLA__SEND_PLAIN;
  if (nbuf) isola__msg_posting = NULL;
  isola__vm_leave(&e);
  if (rc == ISOLA_OK)
    for (size_t i = 0; i < nbuf; i++) *handles[i] = NULL;
  else if (rc == ISOLA_ECLOSED)
    isola__detail_set("isola_send: port %016llx is closed or unknown (%s)",
                      (unsigned long long)port, isola_err_name(rc));
  else
    isola__detail_set("isola_send to port %016llx: %s (%s)",
                      (unsigned long long)port, isola_strerror(rc),
                      isola_err_name(rc));
  if (handles && handles != inline_handles) free(handles);
  ISOLA__DET_POINT(ISOLA__DET_SEND);
  return rc;
}

int isola_send_reply(isola_port port, isola_value value, isola_port reply_to) {
  return send_mode(port, value, reply_to, ISOLA__SEND_PLAIN, 0);
}

int isola_send(isola_port port, isola_value value) {
  return send_mode(port, value, ISOLA_PORT_NONE, ISOLA__SEND_PLAIN, 0);
}

int isola_try_send(isola_port port, isola_value value) {
  return send_mode(port, value, ISOLA_PORT_NONE, ISOLA__SEND_TRY, 0);
}

int isola_send_wait(isola_port port, isola_value value, uint64_t timeout_ms) {
  /* UINT64_MAX: no deadline (ISOLA_FOREVER, or so far off it saturates). */
  uint64_t deadline = UINT64_MAX;
  if (timeout_ms < (UINT64_MAX - isola__plat_now_ns()) / 1000000u)
    deadline = isola__plat_now_ns() + timeout_ms * 1000000u;
  return send_mode(port, value, ISOLA_PORT_NONE, ISOLA__SEND_WAIT, deadline);
}
