/* message_handler.c — one turn of an isolate (see message_handler.h). */
#include "message_handler.h"

#include <stdlib.h>

#include "isolate.h"
#include "message_queue.h"
#include "port_map.h"
#include "scheduler.h"
#include "vm.h"

void isola__msg_free(isola__msg *m) { free(m); }

/* Releases a node that stopped being a queue's tail. */
static inline void release_node(isola__isolate *iso, isola__node *n) {
  if (n != &iso->stub && n != &iso->oob_stub) isola__msg_free((isola__msg *)n);
}

static void drain(isola__isolate *iso, isola__node *tail) {
  isola__node *n = tail;
  while (n) {
    isola__node *next = atomic_load_explicit(&n->next, memory_order_acquire);
    release_node(iso, n);
    n = next;
  }
}

void isola__mh_free_isolate(isola__isolate *iso) {
  drain(iso, iso->tail);
  drain(iso, iso->oob_tail);
  if (iso->exit_msg) isola__msg_free(iso->exit_msg);
  free(iso->name);
  free(iso);
}

static void handle_start(isola__vm *vm, isola__isolate *iso, isola__msg *m) {
  iso->state = ISOLA__ISO_RUNNING;
  if (vm->config.hooks.isolate_created) {
    isola_isolate_info info = {isola__isolate_name(iso), iso->control_port,
                               iso->origin, iso->group->id};
    vm->config.hooks.isolate_created(vm->config.hooks.data, &info);
  }
  isola__trace(vm, ISOLA_TRACE_ISOLATES,
               "isola: isolate '%s' (%016llx) started\n",
               isola__isolate_name(iso),
               (unsigned long long)iso->control_port);
  iso->entry(m->value);
}

static void handle_user(isola__vm *vm, isola__isolate *iso, isola__msg *m) {
  isola__port_slot *s = isola__port_slot_of(&vm->ports, m->dest);
  /* A port closed after the message was queued: drop it. */
  if (!s || !s->handler) return;
  isola__trace(vm, ISOLA_TRACE_MESSAGES,
               "isola: isolate '%s' handles a message on port %016llx\n",
               isola__isolate_name(iso), (unsigned long long)m->dest);
  s->handler(s->ctx, m->dest, m->value, m->reply_to);
}

/* Whether anything wants the isolate back after it marked itself idle.
 * Reads only shared words: once marked idle another thread may own it. */
static bool wanted(isola__isolate *iso, isola__node *oob_tail) {
  return atomic_load_explicit(&iso->oob_head, memory_order_seq_cst) !=
             oob_tail ||
         atomic_load_explicit(&iso->kill_requested, memory_order_seq_cst);
}

isola__turn isola__mh_run(isola__vm *vm, isola__isolate *iso) {
  isola__t.current = iso;
  unsigned handled = 0;
  for (;;) {
    if (atomic_load_explicit(&iso->kill_requested, memory_order_acquire))
      goto dead;

    isola__node *old, *n = isola__mq_pop(&iso->oob_tail, &old);
    if (n) {
      release_node(iso, old);
      /* No out-of-band message kinds exist yet beyond the kill flag. */
      continue;
    }

    n = isola__mq_pop(&iso->tail, &old);
    if (n) {
      release_node(iso, old);
      if (n == &iso->stub) continue;
      isola__msg *m = (isola__msg *)n;
      if (m->type == ISOLA__MSG_START)
        handle_start(vm, iso, m);
      else
        handle_user(vm, iso, m);
      if (isola__ld32(&iso->live_ports) == 0) goto dead;
      if (++handled >= ISOLA__BATCH) {
        if (isola__sched_has_other_work(&vm->sched)) {
          isola__t.current = NULL;
          return ISOLA__TURN_YIELD;
        }
        handled = 0;
      }
      continue;
    }

    if (!isola__mq_empty(&iso->head, iso->tail)) {
      /* A sender is between its exchange and its link: the message is
       * moments away.  Let others run meanwhile. */
      isola__t.current = NULL;
      return ISOLA__TURN_YIELD;
    }
    isola__node *oob_tail = iso->oob_tail;
    if (isola__mq_mark_idle(&iso->head, iso->tail, true)) {
      /* The Dekker pair with isola__mq_poke(): an OOB sender or a kill
       * that came after our last look either sees the mark (and schedules
       * us) or is seen here. */
      if (wanted(iso, oob_tail) && isola__mq_poke(&iso->head)) continue;
      isola__t.current = NULL;
      return ISOLA__TURN_IDLE;
    }
  }
dead:
  isola__isolate_end(vm, iso);
  isola__t.current = NULL;
  return ISOLA__TURN_DEAD;
}
