/* SPDX-License-Identifier: MIT */
/*
 * An isolate's life at its edges (issues 11 and 18): the unwind of a turn,
 * calls made while or after it ends, spawns racing shutdown, the order of
 * sends across events, kills and pings before the next event, isola_exit's
 * transfer, and nested VM entry.  Each test is the regression test of the
 * defect named above it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "helpers.h"

TestSuite(lifecycle, .timeout = TH_TEST_TIMEOUT_S);

/* An uncaught-error hook that keeps expected errors off stderr. */
static th_counter errors_seen = TH_COUNTER_INIT;
static void quiet_errors(void *data, const isola_isolate_info *info,
                         const char *msg, const char *stack) {
  (void)data, (void)info, (void)msg, (void)stack;
  th_counter_add(&errors_seen, 1);
}

/* ---------------------------------------------------------------------- */
/* 11.1: a non-fatal error, then a yield in the same turn                  */
/* ---------------------------------------------------------------------- */

/* A spinner keeps the one worker's run queue busy, so the victim's turn
 * yields after a batch: the turn that an uncaught error unwound, resumed
 * after the error, must be requeued, not lost. */
static _Atomic bool spin_stop;
static th_counter spin_ready = TH_COUNTER_INIT;
static void spin_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  if (atomic_load(&spin_stop)) {
    TH_CHECK_OK(isola_port_close(port));
    return;
  }
  TH_CHECK_OK(isola_send(port, isola_null()));
}
static void spin_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(spin_handler, NULL, &p));
  TH_CHECK_OK(isola_send(p, isola_null()));
  th_counter_add(&spin_ready, 1);
}

static _Atomic isola_port victim_port;
static th_counter victim_ready = TH_COUNTER_INIT;
static th_counter victim_handled = TH_COUNTER_INIT;
static void victim_handler(void *ctx, isola_port port, isola_value msg,
                           isola_port reply_to) {
  (void)ctx, (void)reply_to;
  th_counter_add(&victim_handled, 1);
  int64_t i = th_int(msg);
  if (i == 0) isola_throw("the first message throws");
  if (i == -1) TH_CHECK_OK(isola_port_close(port));
}
static void victim_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(victim_handler, NULL, &p));
  atomic_store(&victim_port, p);
  th_counter_add(&victim_ready, 1);
}

Test(lifecycle, nonfatal_error_then_yield_in_the_same_turn_is_not_lost) {
  isola_config cfg;
  isola_config_init(&cfg);
  cfg.workers = 1;
  cfg.unhandled_error = quiet_errors;
  th_vm_init(&cfg);
  isola_spawn_options o = {.errors_nonfatal = true};
  isola_isolate h;
  TH_ASSERT_OK(isola_spawn(victim_entry, isola_null(), &o, &h));
  TH_WAIT_GE(&victim_ready, 1);
  isola_port p = atomic_load(&victim_port);
  /* Paused, so the 300 messages are all queued when its turn starts. */
  TH_ASSERT_OK(isola_pause(&h, 0));
  enum { N = 300 };
  for (int i = 0; i < N; i++) TH_ASSERT_OK(isola_send(p, isola_int(i)));
  TH_ASSERT_OK(isola_spawn(spin_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&spin_ready, 1);
  TH_ASSERT_OK(isola_resume(&h, 0));
  TH_WAIT_GE(&victim_handled, N);
  TH_WAIT_GE(&errors_seen, 1);
  TH_ASSERT_OK(isola_send(p, isola_int(-1)));
  atomic_store(&spin_stop, true);
  th_vm_shutdown_ok();
}
