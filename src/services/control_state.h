/* SPDX-License-Identifier: MIT */
/*
 * control_state.h — the control state an isolate keeps (iso->ctl), shared
 * by the files of isolate control and by nothing else:
 *   control_request.c  the requests (pause, resume, kill, ping, listeners,
 *                      errors fatal): sent from any thread, handled on
 *                      the isolate's own
 *   uncaught.c         uncaught errors: isola_throw, error listeners
 *   exit.c             the end: exit listeners and notices, isola_exit
 *   run.c              isola_run and isola_run_async (their outcome)
 * All of it belongs to the isolate's thread (control.h says why).
 */
#ifndef ISOLA_CONTROL_STATE_H
#define ISOLA_CONTROL_STATE_H

#include <pthread.h>
#include <stdlib.h>

#include "internal.h"

typedef struct run_waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done; /* protected by mu */
  int rc;
  isola_value result;
} run_waiter;

/* An isola_run computation, owned by the isolate that runs it. */
struct isola__run {
  isola_run_fn fn;
  isola_port port;    /* isola_run_async: where the outcome goes */
  run_waiter *waiter; /* isola_run: the blocked caller */
  bool done;          /* fn returned: result holds its value */
  isola_value result;
  char *err_msg, *err_stack; /* the last uncaught error, or NULL */
  /* isola_run_async_opts: a copy of the caller's tag, the completion's
   * first item. */
  bool tagged;
  isola_value tag;
  /* Not a computation: fn is NULL and on_end(on_end_arg) runs on the
   * isolate's thread as it ends, after its ports closed (receivers,
   * call.c). */
  void (*on_end)(void *arg);
  void *on_end_arg;
};

struct isola__control {
  isola_capability *pauses; /* a set: Dart's pause capabilities */
  uint32_t npauses, pauses_cap;
  struct error_listener {
    isola_port port;
    bool notice; /* [message, stack, isolate] rather than [message, stack] */
    bool held;   /* ERROR_ROOM of the isolate's room is taken for it */
  } *errors;
  uint32_t nerrors, errors_cap;
  /* ISOLA_BEFORE_NEXT_EVENT pings (addressed responses) and kills (NULL),
   * in the order received: a kill ends the isolate there, and the pings
   * after it are never answered. */
  isola__msg **pings;
  uint32_t npings, pings_cap;
  bool kill_next; /* a kill that found no room in pings: after them all */
  bool exit_paused; /* pause_on_exit applied once */
  /* The message of the error that ends the isolate (exit notices'
   * detail), or NULL. */
  char *exit_detail;
  struct isola__run *run;
  /* Its mailbox bound and muting (backpressure.h), or NULL.  Set once by
   * the isolate's thread and kept until the isolate is freed: senders
   * read it (after the room word told them of a bound).  Last: an
   * ended isolate's control state is cleared up to it
   * (isola__control_release). */
  struct isola__bp *bp;
};

/* The isolate's control state, made on first need (NULL: out of memory). */
static inline struct isola__control *ctl_of(isola__isolate *iso) {
  if (!iso->ctl) iso->ctl = calloc(1, sizeof *iso->ctl);
  return iso->ctl;
}

/* Exit listeners (iso->exits) are their prebuilt responses, linked
 * through the message's queue node (control_request.c): the one after m. */
static inline isola__msg *exit_next(isola__msg *m) {
  return (isola__msg *)atomic_load_explicit(&m->node.next,
                                            memory_order_relaxed);
}

/* Replaces bytes that may break UTF-8 so the text can be sent. */
static inline void ascii_only(char *s) {
  for (; s && *s; s++)
    if ((unsigned char)*s >= 0x80) *s = '?';
}

/* Frees the control state (control_request.c); keep_bp: all but the
 * backpressure state, kept until the isolate is freed (backpressure.h). */
void isola__control_release(isola__isolate *iso, bool keep_bp);

/* Frees an isola_run computation's state, NULL allowed (run.c). */
void isola__run_free(struct isola__run *r);

/* Delivers r's outcome as the isolate ends: wakes the isola_run caller,
 * posts the isola_run_async completion, or runs on_end (run.c). */
void isola__run_deliver(isola__vm *vm, struct isola__run *r);

#endif
