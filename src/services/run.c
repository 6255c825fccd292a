/* SPDX-License-Identifier: MIT */
/*
 * run.c — isola_run and isola_run_async (Dart's Isolate.run): a
 * computation in an isolate of its own, whose outcome (result or error)
 * goes to the blocked caller or to a completion port as the isolate ends.
 */
#include "control.h"

#include <pthread.h>
#include <stdlib.h>

#include "control_state.h"
#include "isolate.h"
#include "lifecycle.h"
#include "message.h"
#include "value.h"
#include "vm.h"

struct isola__run *isola__run_on_end(void (*fn)(void *arg), void *arg) {
  struct isola__run *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->on_end = fn;
  r->on_end_arg = arg;
  return r;
}

void isola__run_free(struct isola__run *r) {
  if (!r) return;
  isola_value_free(&r->result);
  isola_value_free(&r->tag);
  free(r->err_msg);
  free(r->err_stack);
  free(r);
}

void isola__run_deliver(isola__vm *vm, struct isola__run *r) {
  if (r->on_end) {
    r->on_end(r->on_end_arg);
    return;
  }
  const char *msg = r->err_msg ? r->err_msg
                               : "the isolate ended before the computation "
                                 "returned (killed, or isola_exit)";
  const char *stack = r->err_stack ? r->err_stack : "";
  if (r->waiter) {
    run_waiter *w = r->waiter;
    isola_value res = isola_null();
    int rc = ISOLA_OK;
    if (r->done) {
      res = r->result;
      r->result = isola_null();
    } else {
      isola_value items[2] = {isola_str(msg), isola_str(stack)};
      if (isola_value_copy(isola_list(items, 2), &res) != ISOLA_OK)
        res = isola_null();
      rc = ISOLA_EFAILED;
    }
    pthread_mutex_lock(&w->mu);
    w->rc = rc;
    w->result = res;
    w->done = true;
    /* Signalled under the lock: the waiter may free w once it sees done
     * and takes the lock, so w is not touched after the unlock. */
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return;
  }
  isola__msg *m = NULL;
  int rc = ISOLA_EINVAL;
  /* Tagged (isola_run_async_opts): the tag goes first. */
  size_t t = r->tagged ? 1 : 0;
  if (r->done) {
    isola_value items[3] = {r->tag, isola_bool(true), r->result};
    rc = isola__msg_new(isola_list(items + 1 - t, 2 + t), &m);
    if (rc == ISOLA_EINVAL) msg = "the result of the computation is malformed";
  }
  if (rc != ISOLA_OK) {
    isola_value items[4] = {r->tag, isola_bool(false), isola_str(msg),
                            isola_str(stack)};
    if (isola__msg_new(isola_list(items + 1 - t, 3 + t), &m) != ISOLA_OK)
      return;
  }
  m->dest = r->port;
  m->held |= ISOLA__HELD_EXEMPT; /* owed to the caller: not refused */
  isola__post(vm, m);
}

/* ---- isola_run --------------------------------------------------------- */

static void run_entry(isola_value argument) {
  isola__isolate *iso = isola__t.current;
  struct isola__run *r = iso->ctl->run;
  isola_value v = r->fn(argument);
  r->result = v;
  r->done = true;
  /* The isolate ends with the computation, whatever ports it opened. */
  longjmp(*(jmp_buf *)iso->unwind, ISOLA__UNWIND_EXIT);
}

/* The spawn options of an isola_run isolate. */
static isola_spawn_options run_spawn_options(const isola_run_options *o) {
  isola_spawn_options opts = {.name = "isola_run"};
  if (o) {
    if (o->name) opts.name = o->name;
    opts.heap_limit = o->heap_limit;
  }
  return opts;
}

int isola_run_opts(isola_run_fn fn, isola_value argument,
                   const isola_run_options *options, isola_value *result) {
  if (!fn || !result) return ISOLA_EINVAL;
  *result = isola_null();
  if (isola__t.current) return ISOLA_EBUSY;
  int brc = isola__life_may_wait(); /* a hook on a pool or root thread */
  if (brc != ISOLA_OK) return brc;
  struct isola__run *r = calloc(1, sizeof *r);
  if (!r) return ISOLA_ENOMEM;
  run_waiter w;
  pthread_mutex_init(&w.mu, NULL);
  pthread_cond_init(&w.cv, NULL);
  w.done = false;
  w.rc = ISOLA_OK;
  w.result = isola_null();
  r->fn = fn;
  r->waiter = &w;
  isola_spawn_options opts = run_spawn_options(options);
  int rc = isola__spawn_run(run_entry, argument, &opts, r);
  if (rc == ISOLA_OK) {
    pthread_mutex_lock(&w.mu);
    while (!w.done) pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    rc = w.rc;
    *result = w.result;
  } else {
    free(r);
  }
  pthread_cond_destroy(&w.cv);
  pthread_mutex_destroy(&w.mu);
  return rc;
}

int isola_run(isola_run_fn fn, isola_value argument, isola_value *result) {
  return isola_run_opts(fn, argument, NULL, result);
}

int isola_run_async_opts(isola_run_fn fn, isola_value argument,
                         const isola_run_options *options,
                         isola_port completion_port) {
  if (!fn || completion_port == ISOLA_PORT_NONE) return ISOLA_EINVAL;
  struct isola__run *r = calloc(1, sizeof *r);
  if (!r) return ISOLA_ENOMEM;
  r->fn = fn;
  r->port = completion_port;
  if (options) {
    int rc = isola_value_copy(options->tag, &r->tag);
    if (rc != ISOLA_OK) {
      free(r);
      return rc;
    }
    r->tagged = true;
  }
  isola_spawn_options opts = run_spawn_options(options);
  int rc = isola__spawn_run(run_entry, argument, &opts, r);
  if (rc != ISOLA_OK) {
    isola_value_free(&r->tag);
    free(r);
  }
  return rc;
}

int isola_run_async(isola_run_fn fn, isola_value argument,
                    isola_port completion_port) {
  if (!fn || completion_port == ISOLA_PORT_NONE) return ISOLA_EINVAL;
  return isola_run_async_opts(fn, argument, NULL, completion_port);
}
