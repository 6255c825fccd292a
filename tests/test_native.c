/* SPDX-License-Identifier: MIT */
/*
 * test_native.c — native ports: a plain C handler on the pool, one message
 * at a time or concurrently; posting from plain threads; close waits for
 * the handlers in flight.
 */
#include "helpers.h"

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
