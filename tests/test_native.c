/* SPDX-License-Identifier: MIT */
/*
 * test_native.c — native ports: a plain C handler on the pool, one message
 * at a time or concurrently; posting from plain threads; close waits for
 * the handlers in flight.
 */
#include "helpers.h"

#include <sched.h>

TestSuite(native, .timeout = TH_TEST_TIMEOUT_S);

#define SENDERS 4

static _Atomic long handled;
static _Atomic int inside;     /* handlers running right now */
static _Atomic int max_inside; /* the most seen at once */

static void count_handler(void *ctx, isola_port port, isola_value msg,
                          isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  TH_CHECK(msg.kind == ISOLA_INT);
  int now = atomic_fetch_add(&inside, 1) + 1;
  int seen = atomic_load(&max_inside);
  while (now > seen && !atomic_compare_exchange_weak(&max_inside, &seen, now)) {
  }
  atomic_fetch_add(&handled, 1);
  atomic_fetch_sub(&inside, 1);
}

typedef struct sender_arg {
  isola_port port;
  long n;
} sender_arg;

static void *sender(void *p) {
  sender_arg *a = p;
  for (long i = 0; i < a->n; i++)
    TH_CHECK_OK(isola_send(a->port, isola_int(i)));
  return NULL;
}

static void send_from_threads(isola_port port, long each) {
  pthread_t th[SENDERS];
  sender_arg a = {port, each};
  for (int i = 0; i < SENDERS; i++)
    cr_assert(pthread_create(&th[i], NULL, sender, &a) == 0, "pthread_create");
  for (int i = 0; i < SENDERS; i++)
    pthread_join(th[i], NULL);
}

Test(native, a_serial_port_handles_one_message_at_a_time_from_many_threads) {
  th_vm_init(NULL);
  isola_port p;
  TH_ASSERT_OK(isola_native_port_new("serial", count_handler, NULL, false, &p));
  long each = TH_SIZE(20000);
  send_from_threads(p, each);
  /* Close waits until every message sent before it was handled: these
   * were all sent (joined) before the close. */
  TH_ASSERT_OK(isola_native_port_close(p));
  cr_assert(atomic_load(&handled) == SENDERS * each, "handled %ld of %ld",
            atomic_load(&handled), SENDERS * each);
  cr_assert(atomic_load(&max_inside) == 1, "%d handlers ran at once",
            atomic_load(&max_inside));
  TH_ASSERT_RC(isola_send(p, isola_int(1)), ISOLA_ECLOSED);
  TH_ASSERT_RC(isola_native_port_close(p), ISOLA_ECLOSED);
  th_vm_shutdown_ok();
}

/* Concurrent: the first two handlers wait for each other, which only
 * works if they run at the same time. */
static th_counter met = TH_COUNTER_INIT;

static void meeting_handler(void *ctx, isola_port port, isola_value msg,
                            isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  if (msg.as.i < 2) {
    th_counter_add(&met, 1);
    /* Hand the worker over while waiting: blocking in a handler. */
    TH_CHECK_OK(isola_blocking_begin());
    TH_CHECK(th_counter_wait_ge(&met, 2, TH_WAIT_MS));
    TH_CHECK_OK(isola_blocking_end());
  }
  atomic_fetch_add(&handled, 1);
}

Test(native, a_concurrent_port_runs_handlers_at_the_same_time) {
  isola_config c;
  isola_config_init(&c);
  c.workers = 2;
  th_vm_init(&c);
  isola_port p;
  TH_ASSERT_OK(isola_native_port_new("conc", meeting_handler, NULL, true, &p));
  TH_ASSERT_OK(isola_send(p, isola_int(0)));
  TH_ASSERT_OK(isola_send(p, isola_int(1)));
  send_from_threads(p, TH_SIZE(5000));
  TH_ASSERT_OK(isola_native_port_close(p));
  cr_assert(atomic_load(&handled) == 2 + SENDERS * TH_SIZE(5000), "handled %ld",
            atomic_load(&handled));
  th_vm_shutdown_ok();
}

/* From inside an isolate: open, send, close (the close hands the worker
 * over while it waits). */
static th_counter iso_done = TH_COUNTER_INIT;

static void opener_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_native_port_new(NULL, count_handler, NULL, true, &p));
  for (int i = 0; i < 1000; i++)
    TH_CHECK_OK(isola_send(p, isola_int(i)));
  TH_CHECK_OK(isola_native_port_close(p));
  TH_CHECK(atomic_load(&handled) == 1000);
  th_counter_add(&iso_done, 1);
}

Test(native, an_isolate_can_open_use_and_close_a_native_port) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_spawn(opener_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&iso_done, 1);
  th_vm_shutdown_ok();
}

Test(native, shutdown_closes_native_ports_left_open) {
  th_vm_init(NULL);
  isola_port p;
  TH_ASSERT_OK(isola_native_port_new("left", count_handler, NULL, true, &p));
  TH_ASSERT_OK(isola_send(p, isola_int(1)));
  th_vm_shutdown_ok(); /* LeakSanitizer: nothing of it is left */
}

Test(native, bad_calls_give_their_errors) {
  isola_port p;
  TH_ASSERT_RC(isola_native_port_new("x", count_handler, NULL, false, &p),
               ISOLA_ENOVM);
  th_vm_init(NULL);
  TH_ASSERT_RC(isola_native_port_new("x", NULL, NULL, false, &p), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_native_port_new("x", count_handler, NULL, false, NULL),
               ISOLA_EINVAL);
  TH_ASSERT_RC(isola_native_port_close(12345), ISOLA_ECLOSED);
  th_vm_shutdown_ok();
}

/* ---- issue 11.2, 11.5, 11.13, 18.7 ------------------------------------- */

/* 11.2: the hidden isolates cannot all be spawned (the VM's isolate limit):
 * the call fails with the spawn's error, those that started are stopped
 * and nothing is freed under them (ASan) or left behind (LSan). */
Test(native, new_fails_cleanly_when_its_isolates_cannot_all_be_spawned) {
  isola_config c;
  isola_config_init(&c);
  c.workers = 2;
  c.max_isolates = 2; /* a concurrent port needs 3 */
  th_vm_init(&c);
  isola_port p;
  for (int i = 0; i < 20; i++)
    TH_ASSERT_RC(isola_native_port_new("x", count_handler, NULL, true, &p),
                 ISOLA_ELIMIT);
  /* The limit is free again: a serial port (one isolate) opens. */
  th_wait_live_isolates(0);
  TH_ASSERT_OK(isola_native_port_new("x", count_handler, NULL, false, &p));
  TH_ASSERT_OK(isola_native_port_close(p));
  th_vm_shutdown_ok();
}

/* 11.5: a handler that throws does not end the port: every send that
 * returned OK is handled, and close returns. */
static _Atomic long thrown;

static void throw_once_handler(void *ctx, isola_port port, isola_value msg,
                               isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  atomic_fetch_add(&handled, 1);
  if (msg.as.i % 10 == 0) {
    atomic_fetch_add(&thrown, 1);
    isola_throw("handler %lld throws", (long long)msg.as.i);
  }
}

static void throwing_port(bool concurrent) {
  isola_config c;
  isola_config_init(&c);
  c.workers = 2;
  th_vm_init(&c);
  isola_port p;
  TH_ASSERT_OK(
      isola_native_port_new("t", throw_once_handler, NULL, concurrent, &p));
  for (int i = 0; i < 100; i++) TH_ASSERT_OK(isola_send(p, isola_int(i)));
  TH_ASSERT_OK(isola_native_port_close(p));
  cr_assert(atomic_load(&handled) == 100, "handled %ld of 100",
            atomic_load(&handled));
  cr_assert(atomic_load(&thrown) == 10, "atomic_load(&thrown) == 10");
  th_vm_shutdown_ok();
}

Test(native, a_throwing_handler_does_not_end_a_concurrent_port) {
  throwing_port(true);
}

Test(native, a_throwing_handler_does_not_end_a_serial_port) {
  throwing_port(false);
}

/* 11.5: the VM's heap limit is not the hidden isolates': a message larger
 * than it is handled, and so is everything after it. */
static void size_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  if (msg.kind == ISOLA_STRING) TH_CHECK(msg.len == 65536);
  atomic_fetch_add(&handled, 1);
}

Test(native, a_message_over_the_vm_heap_limit_does_not_end_the_port) {
  isola_config c;
  isola_config_init(&c);
  c.workers = 2;
  c.heap_limit = 4096;
  th_vm_init(&c);
  static char big[65536];
  memset(big, 'x', sizeof big);
  for (int conc = 0; conc < 2; conc++) {
    atomic_store(&handled, 0);
    isola_port p;
    TH_ASSERT_OK(isola_native_port_new("big", size_handler, NULL, conc, &p));
    for (int i = 0; i < 10; i++) {
      TH_ASSERT_OK(isola_send(p, isola_strn(big, sizeof big)));
      TH_ASSERT_OK(isola_send(p, isola_int(i)));
    }
    TH_ASSERT_OK(isola_native_port_close(p));
    cr_assert(atomic_load(&handled) == 20, "handled %ld of 20",
              atomic_load(&handled));
  }
  th_vm_shutdown_ok();
}

/* 11.5: closing a port from its own handler cannot wait for itself. */
static th_counter own_closed = TH_COUNTER_INIT;

static void self_close_handler(void *ctx, isola_port port, isola_value msg,
                               isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  TH_CHECK_RC(isola_native_port_close(port), ISOLA_EBUSY);
  th_counter_add(&own_closed, 1);
}

Test(native, close_from_its_own_handler_returns_ebusy) {
  isola_config c;
  isola_config_init(&c);
  c.workers = 2;
  th_vm_init(&c);
  for (int conc = 0; conc < 2; conc++) {
    isola_port p;
    TH_ASSERT_OK(
        isola_native_port_new("self", self_close_handler, NULL, conc, &p));
    TH_ASSERT_OK(isola_send(p, isola_int(1)));
    TH_WAIT_GE(&own_closed, conc + 1);
    TH_ASSERT_OK(isola_native_port_close(p));
  }
  th_vm_shutdown_ok();
}

Test(native, close_without_a_vm_returns_enovm) {
  TH_ASSERT_RC(isola_native_port_close(12345), ISOLA_ENOVM);
  th_vm_init(NULL);
  isola_port p;
  TH_ASSERT_OK(isola_native_port_new("x", count_handler, NULL, false, &p));
  th_vm_shutdown_ok();
  TH_ASSERT_RC(isola_native_port_close(p), ISOLA_ENOVM);
}

/* 11.5, 18.7: a close whose stop is queued behind a handler that is still
 * running when shutdown kills the port's isolates returns (the killed
 * dispatcher never handles the stop), and nothing leaks. */
static th_counter blocked_in = TH_COUNTER_INIT;
static th_counter release_handler = TH_COUNTER_INIT;
static th_counter close_done = TH_COUNTER_INIT;
static _Atomic int close_rc;

static void blocking_handler(void *ctx, isola_port port, isola_value msg,
                             isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
  th_counter_add(&blocked_in, 1);
  TH_CHECK_WAIT_GE(&release_handler, 1);
}

static void *closer(void *arg) {
  atomic_store(&close_rc, isola_native_port_close(*(isola_port *)arg));
  th_counter_add(&close_done, 1);
  return NULL;
}

static void *shutter(void *arg) {
  (void)arg;
  TH_CHECK_OK(isola_vm_shutdown(NULL));
  return NULL;
}

Test(native, close_racing_shutdown_returns_and_leaks_nothing) {
  isola_config c;
  isola_config_init(&c);
  c.workers = 2;
  c.shutdown_grace_ms = 60000;
  th_vm_init(&c);
  isola_port p;
  TH_ASSERT_OK(isola_native_port_new("s", blocking_handler, NULL, false, &p));
  TH_ASSERT_OK(isola_send(p, isola_int(1)));
  TH_WAIT_GE(&blocked_in, 1);
  pthread_t ct, st;
  cr_assert(pthread_create(&ct, NULL, closer, &p) == 0, "pthread_create");
  cr_assert(pthread_create(&st, NULL, shutter, NULL) == 0, "pthread_create");
  /* Shutdown has begun once a send is refused. */
  while (isola_send(p, isola_int(2)) == ISOLA_OK) sched_yield();
  th_counter_add(&release_handler, 1);
  TH_WAIT_GE(&close_done, 1);
  int rc = atomic_load(&close_rc);
  /* The closer may run before shutdown began, during it, or after it
   * finished (then there is no VM). */
  cr_assert(rc == ISOLA_OK || rc == ISOLA_ESHUTDOWN || rc == ISOLA_ENOVM ||
                rc == ISOLA_ECLOSED /* shutdown closed it first */,
            "close gave %s", isola_err_name(rc));
  pthread_join(ct, NULL);
  pthread_join(st, NULL);
  th_leak_check();
}
