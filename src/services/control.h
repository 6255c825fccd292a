/* SPDX-License-Identifier: MIT */
/*
 * control.h — isolate control (Dart's isolate library messages, handled in
 * runtime/vm/isolate.cc): pause and resume, kill, ping, exit and error
 * listeners, uncaught errors and their non-local exit, Isolate.run.
 *
 * Requests travel as ISOLA__MSG_* control messages on an isolate's OOB
 * queue and are handled by its own thread (message_handler.c calls
 * isola__control_handle), so the state below is owned by that thread.
 */
#ifndef ISOLA_CONTROL_H
#define ISOLA_CONTROL_H

#include <setjmp.h>

#include "internal.h"

/* iso->hold bits. */
enum {
  ISOLA__HOLD_PAUSED = 1u,  /* a pause capability is held */
  ISOLA__HOLD_NEXT = 2u,    /* pings or a kill wait for the next event */
  ISOLA__HOLD_EXITING = 4u, /* paused on exit: end once resumed */
  ISOLA__HOLD_MUTED = 8u,   /* muted by a full receiver (backpressure.h) */
};

/* Why a turn was unwound (the longjmp value). */
enum {
  ISOLA__UNWIND_ERROR = 1, /* isola_throw: the error is in iso->ctl */
  ISOLA__UNWIND_KILL,      /* killed at an interrupt point */
  ISOLA__UNWIND_EXIT,      /* isola_exit or the end of an isola_run */
};

/* What the turn does after handling a control message or a hold. */
typedef enum {
  ISOLA__CTL_GO,    /* carry on */
  ISOLA__CTL_PAUSE, /* paused: handle no normal message */
  ISOLA__CTL_END,   /* end the isolate now */
} isola__ctl_action;

struct isola__run;

/* An isola__run that computes nothing: fn(arg) runs on the isolate's
 * thread as it ends, however it ends, after its ports closed.  Give it to
 * isola__spawn_ex(), which then owns it.  NULL when out of memory. */
struct isola__run *isola__run_on_end(void (*fn)(void *arg), void *arg);

/* Whether a control request or a kill waits for the running isolate: the
 * test that makes a runtime call (a send) an interrupt point.  One load of
 * a line the isolate owns, unless a request is being pushed. */
static inline bool isola__control_pending(isola__isolate *iso) {
  /* Acquire pairs with the release link of isola__mq_push_plain(). */
  return atomic_load_explicit(&iso->oob_tail->next, memory_order_acquire) ||
         atomic_load_explicit(&iso->kill_requested, memory_order_relaxed);
}

/* Sets up control state at spawn: errors fatal, on_exit, on_error, paused
 * (and the VM's pause_on_start).  ISOLA_ENOMEM, ISOLA_EINVAL (a malformed
 * on_exit message). */
int isola__control_init(isola__vm *vm, isola__isolate *iso,
                        const isola_spawn_options *opts,
                        struct isola__run *run);

/* Handles one control message on iso's thread. */
/* Takes now whatever memory handling m (the next OOB request, still
 * queued) will need: the control record, room in its lists, the copy of a
 * ping's or exit listener's response.  False when none can be had: the
 * request stays queued and is tried again later, so a request whose call
 * returned OK is never dropped for want of memory on the target.  The
 * isolate's thread. */
bool isola__control_prepare(isola__isolate *iso, isola__msg *m);

isola__ctl_action isola__control_handle(isola__vm *vm, isola__isolate *iso,
                                        isola__msg *m);

/* Called when iso->hold is set, before a normal message: posts waiting
 * pings, and says whether the isolate is paused or must end. */
isola__ctl_action isola__control_hold(isola__vm *vm, isola__isolate *iso);

/* For the sender of control request m to iso (any thread, online): false
 * if iso would ignore it (a capability that is not iso's), so it need not
 * be sent; a request with the right capability is marked exempt from
 * iso's room (internal.h), so that a full isolate can still be paused or
 * killed. */
bool isola__control_admit(isola__isolate *iso, isola__msg *m);

/* After an ISOLA__UNWIND_ERROR: tells the error listeners (or the hook).
 * Returns true when the error is fatal. */
bool isola__control_raise(isola__vm *vm, isola__isolate *iso);

/* After isola__control_raise() returned false and the isolate carries on:
 * the error no longer says why it will end. */
void isola__control_survived(isola__isolate *iso);

/* isola_throw() for a heap-limit error: exit notices say
 * ISOLA_EXIT_HEAP_LIMIT if it ends the isolate. */
ISOLA_NORETURN_ void isola__throw_heap_limit(const char *fmt, ...)
    ISOLA_PRINTF_(1, 2);

/* Repairs the thread after frames were abandoned (blocking nesting). */
void isola__control_unwound(isola__vm *vm, isola__isolate *iso);

/* The isolate is about to end normally or by an error: with pause_on_exit
 * it pauses first (returns true: keep running until resumed). */
bool isola__control_pause_on_exit(isola__vm *vm, isola__isolate *iso);

/* The isolate ends (ports closed): delivers the isola_run outcome, then
 * every exit listener's response. */
void isola__control_finish(isola__vm *vm, isola__isolate *iso);

/* Frees whatever control state is left (the reclaimer). */
void isola__control_free(isola__isolate *iso);

/* The isolate's backpressure state (backpressure.h), or NULL; and the
 * place for it, made on first use by the isolate's thread (NULL: out of
 * memory). */
struct isola__bp *isola__control_bp(const isola__isolate *iso);
struct isola__bp **isola__control_bp_slot(isola__isolate *iso);

/* A spawn that failed: frees the state, leaving the isola_run state to
 * the caller. */
void isola__control_discard(isola__isolate *iso);

/* Pause capabilities holding the isolate (snapshots).  Its thread only. */
uint32_t isola__control_pauses(const isola__isolate *iso);

#endif
