/* SPDX-License-Identifier: MIT */
/* message_handler.c — one turn of an isolate (see message_handler.h). */
#include "message_handler.h"

#include <setjmp.h>
#include <stdlib.h>

#include "backpressure.h"
#include "control.h"
#include "heap.h"
#include "isolate.h"
#include "lifecycle.h"
#include "message_queue.h"
#include "platform.h"
#include "pool.h"
#include "port_map.h"
#include "scheduler.h"
#include "stats.h"
#include "event_handler.h"
#include "value.h"
#include "vm.h"

/* Whether n is one of iso's two queue sentinels (internal.h), not a
 * message. */
static inline bool is_sentinel(const isola__isolate *iso,
                               const isola__node *n) {
  return n == &iso->sentinel || n == &iso->oob_sentinel;
}

/* Releases a node that stopped being a queue's tail; whether it was a
 * message. */
static inline bool release_node(isola__isolate *iso, isola__node *n) {
  if (is_sentinel(iso, n)) return false;
  isola__msg *m = (isola__msg *)n;
  if (ISOLA__UNLIKELY(m->charged)) isola__heap_uncharge_msg(iso, m);
  isola__msg_free(m);
  return true;
}

/* Frees tail (the last node handled, or a sentinel) and every message queued
 * behind it; returns how many messages were queued, that is dropped. */
static inline uint64_t drain(isola__isolate *iso, isola__node *tail) {
  uint64_t freed = 0;
  for (isola__node *n = tail, *next; n; n = next) {
    next = atomic_load_explicit(&n->next, memory_order_acquire);
    freed += release_node(iso, n);
  }
  /* tail was handled, not dropped. */
  return freed - (tail && !is_sentinel(iso, tail));
}

void isola__mh_free_isolate(isola__isolate *iso) {
  /* Normally released at its end (isola__ext_end); a hook at the very end
   * may have made some again. */
  isola__ext_free(iso);
  uint64_t dropped = drain(iso, iso->tail);
  /* Most often the out-of-band queue is its bare sentinel. */
  if (iso->oob_tail != &iso->oob_sentinel ||
      atomic_load_explicit(&iso->oob_sentinel.next, memory_order_acquire))
    drain(iso, iso->oob_tail);
  /* Counted by the reclaiming thread; not once the VM is torn down. */
  isola__vm *vm;
  isola__tstats *ts;
  if (dropped && (vm = isola__vm_get()) && (ts = ISOLA__TSTATS(vm)))
    isola__cnt_add(&ts->dropped[ISOLA_DROP_ENDED], dropped);
  isola__control_free(iso);
  isola__isolate_name_free(iso);
  isola__life_move(iso, ISOLA__ISO_RECLAIMED);
  isola__pool_free(iso, iso->pool_class);
}

static void handle_start(isola__vm *vm, isola__isolate *iso, isola__msg *m) {
  if (vm->config.hooks.isolate_created) {
    isola_isolate_info info = {isola__isolate_name(iso), iso->control_port,
                               iso->origin, iso->group->id, 0};
    vm->config.hooks.isolate_created(vm->config.hooks.data, &info);
  }
  isola__trace(vm, ISOLA_TRACE_ISOLATES,
               "isola: %.6f isolate '%s' (%016llx) started\n",
               (double)isola__plat_now_ns() / 1e9, isola__isolate_name(iso),
               (unsigned long long)iso->control_port);
  iso->entry(m->value);
}

/* ---- microtasks -------------------------------------------------------- */

int isola_microtask(void (*fn)(void *), void *arg) {
  if (!fn) return ISOLA_EINVAL;
  isola__isolate *iso;
  int rc = isola__life_opening(&iso);
  if (rc != ISOLA_OK) return rc;
  struct isola__ext *x = isola__ext_get(iso);
  if (!x) return ISOLA_ENOMEM;
  uint8_t cls;
  isola__mt *t = isola__pool_alloc(sizeof *t, &cls);
  if (!t) return ISOLA_ENOMEM;
  t->next = NULL;
  t->fn = fn;
  t->arg = arg;
  t->pool_class = cls;
  /* The tail is meaningful only while the queue is not empty. */
  if (iso->mt_head)
    x->mt_tail->next = t;
  else
    iso->mt_head = t;
  x->mt_tail = t;
  return ISOLA_OK;
}

/* Runs the microtask queue until it is empty, those scheduled meanwhile
 * included.  Each leaves the queue before it runs, so one that throws is
 * not run again when the turn resumes the rest (isola__mh_run). */
static void run_microtasks(isola__isolate *iso) {
  isola__mt *t;
  while ((t = iso->mt_head)) {
    iso->mt_head = t->next;
    void (*fn)(void *) = t->fn;
    void *arg = t->arg;
    isola__pool_free(t, t->pool_class);
    fn(arg);
    /* An interrupt point, as a send is: a kill reaches an isolate whose
     * microtasks keep scheduling more. */
    if (ISOLA__UNLIKELY(isola__control_pending(iso)))
      isola_check_interrupts();
  }
}

void isola__mt_drop(isola__isolate *iso) {
  isola__mt *t;
  while ((t = iso->mt_head)) {
    iso->mt_head = t->next;
    isola__pool_free(t, t->pool_class);
  }
}

static void handle_user(isola__vm *vm, isola__isolate *iso, isola__msg *m) {
  /* The slot isola__post() found (a user message always went through
   * it); a port closed after the message was queued: drop it. */
  isola__port_slot *s = m->dest_slot;
  if (atomic_load_explicit(&s->id, memory_order_acquire) != m->dest ||
      !s->handler) {
    ISOLA__STATS_COUNT(vm, dropped[ISOLA_DROP_CLOSED]);
    return;
  }
  if (ISOLA__UNLIKELY(iso->has_stats)) isola__cnt_add(&isola__iso_stats(iso)->handled, 1);
  isola__trace(vm, ISOLA_TRACE_MESSAGES,
               "isola: isolate '%s' handles a message on port %016llx\n",
               isola__isolate_name(iso), (unsigned long long)m->dest);
  s->handler(s->ctx, m->dest, m->value, m->reply_to);
}

/* Whether anything wants the isolate back after it marked itself idle.
 * Reads only shared words: once marked idle another thread may own it. */
static bool wanted(isola__isolate *iso, isola__node *oob_tail,
                   struct isola__bp *muted) {
  return atomic_load_explicit(&iso->oob_head, memory_order_seq_cst) !=
             oob_tail ||
         atomic_load_explicit(&iso->kill_requested, memory_order_seq_cst) ||
         (muted && isola__bp_wanted(muted));
}

/* What one run of loop() ends with besides a turn result: end the
 * isolate. */
#define TURN_END ((isola__turn)-1)

/* The turn's loop.  Runs under the setjmp of isola__mh_run, so that an
 * uncaught error, a kill at an interrupt point or isola_exit can leave any
 * handler and come back there; its locals start afresh after a jump. */
static isola__turn loop(isola__vm *vm, isola__isolate *iso, jmp_buf *jb) {
  unsigned handled = 0;
  for (;;) {
    if (atomic_load_explicit(&iso->kill_requested, memory_order_acquire)) {
      iso->exit_reason = ISOLA_EXIT_SHUTDOWN; /* only shutdown sets it */
      return TURN_END;
    }

    /* A request is handled only once the memory it needs was had: else it
     * stays queued and the turn comes back for it (control.h). */
    isola__node *old, *n = isola__mq_peek(iso->oob_tail);
    if (n && n != &iso->oob_sentinel &&
        ISOLA__UNLIKELY(!isola__control_prepare(iso, (isola__msg *)n)))
      return ISOLA__TURN_YIELD;
    n = isola__mq_pop(&iso->oob_tail, &old);
    if (n) {
      release_node(iso, old);
      if (n == &iso->oob_sentinel) continue;
      if (ISOLA__UNLIKELY(iso->has_stats))
        isola__istats_deq(isola__iso_stats(iso), true, ((isola__msg *)n)->bytes);
      if (isola__control_handle(vm, iso, (isola__msg *)n) == ISOLA__CTL_END) {
        return TURN_END;
      }
      continue;
    }

    /* One owner-only word says whether anything must happen before the
     * next normal message (a pause, a kill or ping waiting for it, the end
     * after a pause on exit). */
    bool paused = false;
    if (ISOLA__UNLIKELY(iso->hold)) {
      isola__ctl_action a = isola__control_hold(vm, iso);
      if (a == ISOLA__CTL_END) return TURN_END;
      paused = a == ISOLA__CTL_PAUSE;
    }

    if (!paused) {
      n = isola__mq_pop(&iso->tail, &old);
      if (n) {
        /* A control request pushed before this message by the same thread
         * is visible now: our acquire of the message's link pairs with its
         * sender's release, which follows the request's exchange on
         * oob_head.  So one look keeps Dart's order, the request first:
         * undo the pop (nothing was released) and go round.  (oob_head
         * shares the line with the kill flag read above: no extra miss.) */
        if (ISOLA__UNLIKELY(atomic_load_explicit(&iso->oob_head,
                                                 memory_order_acquire) !=
                            iso->oob_tail)) {
          iso->tail = old;
          /* Its push half done (exchanged, not linked): moments away. */
          if (!atomic_load_explicit(&iso->oob_tail->next,
                                    memory_order_acquire))
            return ISOLA__TURN_YIELD;
          continue;
        }
        release_node(iso, old);
        if (n == &iso->sentinel) continue;
        isola__msg *m = (isola__msg *)n;
        /* Out of the queue: its room back, its heap charge next. */
        isola__room_give(iso, m);
        if (ISOLA__UNLIKELY(m->held & ISOLA__HELD_BOUND))
          isola__bp_popped(vm, iso, m);
        if (ISOLA__UNLIKELY(iso->observed)) {
          if (iso->has_stats && m->type != ISOLA__MSG_START)
            isola__istats_deq(isola__iso_stats(iso), false, m->bytes);
          if (vm->tracing && m->type == ISOLA__MSG_USER)
            isola__trace_event(vm, ISOLA__TEV_FLOW_IN, NULL, (uintptr_t)m, 0);
        }
        /* The message is in the isolate's heap while it is handled (may
         * raise out-of-memory instead: heap.h). */
        if (iso->ext || vm->config.heap_limit) /* else nothing to count */
          isola__heap_charge_msg(vm, iso, m);
        if (m->type == ISOLA__MSG_START)
          handle_start(vm, iso, m);
        else if (ISOLA__UNLIKELY(m->type == ISOLA__MSG_TIMER)) {
          if (iso->has_stats) isola__cnt_add(&isola__iso_stats(iso)->handled, 1);
          isola__timer_fire(vm, iso, m);
        } else if (ISOLA__UNLIKELY(m->type == ISOLA__MSG_FD)) {
          if (iso->has_stats) isola__cnt_add(&isola__iso_stats(iso)->handled, 1);
          isola__watch_fire(vm, iso, m);
        }
        else
          handle_user(vm, iso, m);
        /* The event's microtasks, before anything else: one test of a word
         * on a line the turn already holds (hold) when there are none. */
        if (ISOLA__UNLIKELY(iso->mt_head != NULL)) run_microtasks(iso);
        isola__event_end(vm);
        if (isola__ld32(&iso->live_ports) == 0) {
          if (isola__control_pause_on_exit(vm, iso)) continue;
          return TURN_END;
        }
        if (++handled >= ISOLA__BATCH) {
          if (isola__sched_has_other_work(&vm->sched))
            return ISOLA__TURN_YIELD;
          handled = 0;
          /* A turn that goes on: a newer epoch every batch, so isolates
           * that end meanwhile can be freed (scheduler.h). */
          isola__sched_interrupt_point(vm);
        }
        continue;
      }
      if (!isola__mq_empty(&iso->head, iso->tail)) {
        /* A sender is between its exchange and its link: the message is
         * moments away.  Let others run meanwhile. */
        return ISOLA__TURN_YIELD;
      }
    }
    if (!paused && iso->tail != &iso->sentinel &&
        (((isola__msg *)iso->tail)->type == ISOLA__MSG_START ||
         ((isola__msg *)iso->tail)->pool_class > 1 /* over 128 bytes */)) {
      /* The last message handled stays linked as the tail until the next
       * pop.  An idle isolate would keep it for as long as it sleeps: push
       * the sentinel behind it (the queue is empty, so the sentinel is not
       * in it) and the next pop frees it now.  Small messages stay: this
       * costs an exchange per idle. */
      isola__mq_push(&iso->head, &iso->sentinel);
      continue;
    }
    isola__node *oob_tail = iso->oob_tail;
    /* Muted (a hold that idles it as a pause does): read before the mark,
     * while the isolate is still ours. */
    struct isola__bp *muted =
        ISOLA__UNLIKELY(paused) ? isola__bp_if_muted(iso) : NULL;
    /* Once marked idle another thread may own the isolate: nothing of this
     * turn may stay in it, and what it sent (a control request's answer
     * too) is pushed, and its spawn credits are back, before. */
    isola__event_end(vm);
    iso->unwind = NULL;
    ISOLA__TURN_END(vm, iso, paused ? ISOLA_STATE_PAUSED : ISOLA_STATE_IDLE);
    ISOLA__TEST_HOOK_P(ISOLA__HOOK_RUN_END, iso);
    /* Paused: idle whatever is queued.  The resume comes out of band; a
     * new normal message only schedules a turn that idles again. */
    if (isola__mq_mark_idle(&iso->head, iso->tail, !paused)) {
      /* The Dekker pair with isola__mq_poke(): an OOB sender or a kill
       * that came after our last look either sees the mark (and schedules
       * us) or is seen here. */
      if (wanted(iso, oob_tail, muted) && isola__mq_poke(&iso->head)) {
        ISOLA__TEST_HOOK_P(ISOLA__HOOK_RUN_BEGIN, iso);
        iso->unwind = jb;
        ISOLA__TURN_BEGIN(vm, iso);
        continue;
      }
      ISOLA__TEST_HOOK(ISOLA__HOOK_TURN_IDLE);
      return ISOLA__TURN_IDLE;
    }
    ISOLA__TEST_HOOK_P(ISOLA__HOOK_RUN_BEGIN, iso);
    iso->unwind = jb;
    ISOLA__TURN_BEGIN(vm, iso);
  }
}

/* After loop(): IDLE keeps unwind cleared (loop() let the isolate go), the
 * others clear it; TURN_END ends the isolate. */
static isola__turn finish(isola__vm *vm, isola__isolate *iso, isola__turn r) {
  /* Yielded or ending: what the turn sent goes before the end's own, and
   * before the scheduler requeues it (idle: done before the mark). */
  if (r != ISOLA__TURN_IDLE) {
    isola__event_end(vm);
    iso->unwind = NULL;
    if (r != TURN_END) ISOLA__TURN_END(vm, iso, ISOLA_STATE_READY);
  }
  if (r != TURN_END) {
    isola__t.current = NULL;
    return r;
  }
  isola__isolate_end(vm, iso);
  isola__t.current = NULL;
  return ISOLA__TURN_DEAD;
}

isola__turn isola__mh_run(isola__vm *vm, isola__isolate *iso, jmp_buf *jb) {
  isola__t.current = iso;
  iso->unwind = jb;
  ISOLA__TURN_BEGIN(vm, iso);
  if (ISOLA__UNLIKELY(iso->mt_head != NULL)) {
    /* An uncaught error in a microtask unwound its event: the rest of the
     * queue still runs before the next event (Dart reschedules its
     * microtask loop the same way). */
    run_microtasks(iso);
    isola__event_end(vm);
    /* Then the end check an event gets, unless already paused on exit
     * (the hold ends it once resumed). */
    if (isola__ld32(&iso->live_ports) == 0 &&
        !(iso->hold & ISOLA__HOLD_EXITING) &&
        !isola__control_pause_on_exit(vm, iso))
      return finish(vm, iso, TURN_END);
  }
  return finish(vm, iso, loop(vm, iso, jb));
}

/* Finishes the turn of iso after a jump with code to jb; the result is
 * that of the turn. */
static isola__turn unwound(isola__vm *vm, isola__isolate *iso, int code,
                           jmp_buf *jb) {
  /* The message being handled stays the queue's tail until the next pop,
   * so nothing is lost or leaked by leaving its handler. */
  iso->unwind = NULL;
  isola__control_unwound(vm, iso);
  isola__event_end(vm); /* the jump ended the event */
  if (code == ISOLA__UNWIND_ERROR && ISOLA__UNLIKELY(iso->has_stats))
    isola__cnt_add(&isola__iso_stats(iso)->errors, 1);
  if (code == ISOLA__UNWIND_ERROR) {
    /* Not fatal: on with the next event, unless the error left the
     * isolate without a live port. */
    if (!isola__control_raise(vm, iso) &&
        (isola__ld32(&iso->live_ports) != 0 || iso->mt_head)) {
      isola__control_survived(iso); /* the error does not end it */
      return isola__mh_run(vm, iso, jb);
    }
    if (isola__control_pause_on_exit(vm, iso))
      return isola__mh_run(vm, iso, jb);
  }
  /* Killed at an interrupt point, isola_exit, or a fatal error. */
  return finish(vm, iso, TURN_END);
}

void isola__mh_drive(isola__vm *vm, isola__mh_loop_fn loop, void *arg) {
  jmp_buf jb;
  int code = setjmp(jb);
  /* Nothing set before the setjmp changes after it; what the loop changes
   * is set again here after a jump. */
  isola__isolate *iso = NULL;
  isola__turn r = ISOLA__TURN_IDLE;
  if (code != 0) {
    /* The jump left a handler of the isolate still current: take it
     * before the turn's end clears isola__t.current. */
    iso = isola__t.current;
    r = unwound(vm, iso, code, &jb);
  }
  loop(vm, arg, &jb, iso, r);
}

int isola_check_interrupts(void) {
  isola__isolate *iso = isola__t.current;
  if (!iso) return ISOLA_ENOTISOLATE;
  /* Outside an event (a hook) there is no turn to unwind to. */
  if (!iso->unwind) return ISOLA_OK;
  isola__vm *vm = isola__vm_get();
  isola__outbox_flush(vm); /* a long event's sends go out as it runs */
  if (atomic_load_explicit(&iso->kill_requested, memory_order_acquire)) {
    iso->exit_reason = ISOLA_EXIT_SHUTDOWN;
    longjmp(*(jmp_buf *)iso->unwind, ISOLA__UNWIND_KILL);
  }
  /* A request may post (a ping's answer) and so touch another isolate:
   * inside a blocking section this thread is offline in the epoch, so it
   * enters the VM for that, as any thread that is not running a turn
   * does.  Shutting down: the kill flag ends the isolate anyway. */
  isola__thread *t = isola__t.thread;
  bool entered = t && t->blocking;
  isola__call e;
  if (entered && isola__vm_enter(&e) != ISOLA_OK) return ISOLA_OK;
  isola__node *old, *n;
  /* A request whose memory cannot be had now stays queued for the turn's
   * end (control.h). */
  while ((n = isola__mq_peek(iso->oob_tail)) &&
         (n == &iso->oob_sentinel ||
          isola__control_prepare(iso, (isola__msg *)n)) &&
         (n = isola__mq_pop(&iso->oob_tail, &old))) {
    release_node(iso, old);
    if (n == &iso->oob_sentinel) continue;
    if (ISOLA__UNLIKELY(iso->has_stats))
      isola__istats_deq(isola__iso_stats(iso), true, ((isola__msg *)n)->bytes);
    if (isola__control_handle(vm, iso, (isola__msg *)n) == ISOLA__CTL_END) {
      if (entered) isola__vm_leave(&e);
      longjmp(*(jmp_buf *)iso->unwind, ISOLA__UNWIND_KILL);
    }
  }
  if (entered) isola__vm_leave(&e);
  /* What the event readied (a ping's answer) runs elsewhere meanwhile, and
   * reclamation goes on while the event does (scheduler.h). */
  isola__sched_interrupt_point(vm);
  return ISOLA_OK;
}
