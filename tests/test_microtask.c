/* SPDX-License-Identifier: MIT */
/*
 * Microtasks (issue 7 item 4): isola_microtask() work runs right after the
 * event that scheduled it, before the next event, in FIFO order, those
 * scheduled by microtasks included; errors in them are uncaught errors;
 * pending ones are dropped when the isolate ends.
 */
#include "helpers.h"

TestSuite(microtask, .timeout = TH_TEST_TIMEOUT_S);

static th_counter cleaned = TH_COUNTER_INIT;
static void on_cleanup(void *data, const isola_isolate_info *info) {
  (void)data, (void)info;
  th_counter_add(&cleaned, 1);
}

static th_counter unhandled = TH_COUNTER_INIT;
static void on_unhandled(void *data, const isola_isolate_info *info,
                         const char *message, const char *stack) {
  (void)data, (void)info, (void)stack;
  TH_CHECKF(strstr(message, "microtask boom"), "unexpected error: %s", message);
  th_counter_add(&unhandled, 1);
}

static void vm_start(void) {
  isola_config c;
  isola_config_init(&c);
  c.hooks.isolate_cleanup = on_cleanup;
  c.unhandled_error = on_unhandled;
  th_vm_init(&c);
}

/* The order of work, written by the one isolate that runs it and read by
 * the test after the isolate ended (the cleanup counter orders them). */
static char order[64];
static int norder;
static void note(char c) {
  TH_CHECK(norder < (int)sizeof order - 1);
  order[norder++] = c;
}

/* ---------------------------------------------------------------------- */
/* Order                                                                   */
/* ---------------------------------------------------------------------- */

static void mt_note(void *arg) { note((char)(uintptr_t)arg); }

static void mt_a(void *arg) {
  (void)arg;
  note('a');
  /* Scheduled by a microtask: after those already queued, still before
   * the next event. */
  TH_CHECK_OK(isola_microtask(mt_note, (void *)(uintptr_t)'c'));
}

static void order_handler(void *ctx, isola_port port, isola_value msg,
                          isola_port reply_to) {
  (void)ctx, (void)reply_to;
  int64_t n = th_int(msg);
  note((char)('0' + n));
  TH_CHECK_OK(isola_microtask(mt_note, (void *)(uintptr_t)('x' + n - 1)));
  if (n == 2)
    isola_port_close(port);
}

static void order_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(order_handler, NULL, &p));
  /* Both messages are queued before any microtask runs. */
  TH_CHECK_OK(isola_send(p, isola_int(1)));
  TH_CHECK_OK(isola_send(p, isola_int(2)));
  TH_CHECK_OK(isola_microtask(mt_a, NULL));
  TH_CHECK_OK(isola_microtask(mt_note, (void *)(uintptr_t)'b'));
  note('E');
}

Test(microtask, run_after_their_event_before_the_next_in_fifo_order) {
  vm_start();
  TH_ASSERT_OK(isola_spawn(order_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&cleaned, 1);
  order[norder] = '\0';
  cr_assert(strcmp(order, "Eabc1x2y") == 0, "order %s, expected Eabc1x2y",
            order);
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* Errors                                                                  */
/* ---------------------------------------------------------------------- */

static void mt_throw(void *arg) {
  (void)arg;
  note('t');
  isola_throw("microtask boom");
}

static void err_handler(void *ctx, isola_port port, isola_value msg,
                        isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  note('M');
  isola_port_close(port);
}

static void err_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(err_handler, NULL, &p));
  TH_CHECK_OK(isola_send(p, isola_null()));
  TH_CHECK_OK(isola_microtask(mt_note, (void *)(uintptr_t)'1'));
  TH_CHECK_OK(isola_microtask(mt_throw, NULL));
  TH_CHECK_OK(isola_microtask(mt_note, (void *)(uintptr_t)'2'));
}

Test(microtask, nonfatal_error_reported_then_the_rest_run_before_next_event) {
  vm_start();
  isola_spawn_options o = {.errors_nonfatal = true};
  TH_ASSERT_OK(isola_spawn(err_entry, isola_null(), &o, NULL));
  TH_WAIT_GE(&cleaned, 1);
  cr_assert(th_counter_get(&unhandled) == 1, "th_counter_get(&unhandled) == 1");
  order[norder] = '\0';
  cr_assert(strcmp(order, "1t2M") == 0, "order %s, expected 1t2M", order);
  th_vm_shutdown_ok();
}

Test(microtask, fatal_error_ends_the_isolate_and_drops_the_rest) {
  vm_start();
  TH_ASSERT_OK(isola_spawn(err_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&cleaned, 1);
  cr_assert(th_counter_get(&unhandled) == 1, "th_counter_get(&unhandled) == 1");
  order[norder] = '\0';
  cr_assert(strcmp(order, "1t") == 0, "order %s, expected 1t", order);
  th_vm_shutdown_ok();
}

/* The last port closed by a microtask left over after an error: the
 * isolate ends once they have run. */
static void mt_close(void *arg) {
  note('c');
  isola_port_close((isola_port)(uintptr_t)arg);
}
static void close_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(err_handler, NULL, &p));
  TH_CHECK_OK(isola_microtask(mt_throw, NULL));
  TH_CHECK_OK(isola_microtask(mt_close, (void *)(uintptr_t)p));
}

Test(microtask, microtask_after_an_error_may_end_the_isolate) {
  vm_start();
  isola_spawn_options o = {.errors_nonfatal = true};
  TH_ASSERT_OK(isola_spawn(close_entry, isola_null(), &o, NULL));
  TH_WAIT_GE(&cleaned, 1);
  order[norder] = '\0';
  cr_assert(strcmp(order, "tc") == 0, "order %s, expected tc", order);
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* The end                                                                 */
/* ---------------------------------------------------------------------- */

static void exit_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(err_handler, NULL, &p));
  TH_CHECK_OK(isola_microtask(mt_note, (void *)(uintptr_t)'!'));
  isola_exit(p, isola_null()); /* does not return */
  note('?');
}

Test(microtask, pending_microtasks_are_dropped_at_the_end) {
  vm_start();
  TH_ASSERT_OK(isola_spawn(exit_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&cleaned, 1);
  cr_assert(norder == 0, "a dropped microtask ran (%.*s)", norder, order);
  th_vm_shutdown_ok();
}

/* A microtask that schedules itself forever is still killable: each
 * microtask boundary is an interrupt point. */
static th_counter spins = TH_COUNTER_INIT;
static void mt_spin(void *arg) {
  th_counter_add(&spins, 1);
  TH_CHECK_OK(isola_microtask(mt_spin, arg));
}
static void spin_entry(isola_value msg) {
  (void)msg;
  TH_CHECK_OK(isola_microtask(mt_spin, NULL));
}

Test(microtask, endless_microtasks_can_be_killed) {
  vm_start();
  isola_isolate h;
  TH_ASSERT_OK(isola_spawn(spin_entry, isola_null(), NULL, &h));
  TH_WAIT_GE(&spins, 1000);
  TH_ASSERT_OK(isola_kill(&h, ISOLA_IMMEDIATE));
  TH_WAIT_GE(&cleaned, 1);
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* Bad paths                                                               */
/* ---------------------------------------------------------------------- */

static th_counter bad_done = TH_COUNTER_INIT;
static void bad_entry(isola_value msg) {
  (void)msg;
  TH_CHECK_RC(isola_microtask(NULL, NULL), ISOLA_EINVAL);
  th_counter_add(&bad_done, 1);
}

Test(microtask, bad_arguments_and_threads) {
  vm_start();
  TH_ASSERT_RC(isola_microtask(mt_note, NULL), ISOLA_ENOTISOLATE);
  TH_ASSERT_OK(isola_spawn(bad_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&bad_done, 1);
  TH_WAIT_GE(&cleaned, 1);
  th_vm_shutdown_ok();
}
