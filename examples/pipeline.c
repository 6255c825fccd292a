/* SPDX-License-Identifier: MIT */
/*
 * pipeline.c — a producer and a slow consumer with backpressure: the
 * producer never has more than `window` items in flight, however slow the
 * consumer is.
 *
 *   isola run build/examples/pipeline.so [items [window]]   (defaults 200 8)
 *
 * Ports have unbounded queues: a producer that sends as fast as it can into
 * a slower consumer only grows the consumer's queue.  So here each item is
 * a call (isola_call) whose reply says the consumer is done with it, and
 * the producer (the root isolate) keeps at most `window` calls pending: a
 * reply is a credit for the next item.  The consumer, spawned with
 * isola_spawn_port (the spawn hands back its port: no handshake), handles
 * each item slowly (it sleeps 1 ms, inside isola_blocking_begin/end so the
 * worker thread is lent to other isolates meanwhile) and answers with how
 * many items it has handled and their sum; it keeps them in an
 * isolate-local (ISOLA_LOCAL).  After the last answer the producer checks
 * the count, the sum and the most items it ever had in flight (exit code 1
 * if one is wrong) and tells the consumer to stop.
 */
#define _POSIX_C_SOURCE 200809L
#include <isola.h>
#include <stdio.h>
#include <time.h>

ISOLA_MODULE();

/* ---- the consumer: an item -> [items handled, their sum]; null: stop ---- */

typedef struct consumer {
  int64_t got, sum;
} consumer;
static ISOLA_LOCAL(consumer, consumer_state);

static void consume(void *ctx, isola_port port, isola_value msg,
                    isola_port reply_to) {
  (void)ctx;
  consumer *c = isola_local_get(&consumer_state);
  int64_t item;
  if (msg.kind == ISOLA_NULL) {
    isola_port_close(port); /* its only port: the consumer ends */
    return;
  }
  if (isola_unpack(msg, "i", &item) != ISOLA_OK)
    isola_throw("consumer: %s", isola_error_detail());
  /* The slow part.  Sleeping would hold the worker thread; inside a
   * blocking section the pool lends another thread to other isolates. */
  isola_blocking_begin();
  nanosleep(&(struct timespec){0, 1000000}, NULL);
  isola_blocking_end();
  c->got++;
  c->sum += item;
  isola_value report[2] = {isola_int(c->got), isola_int(c->sum)};
  isola_send(reply_to, isola_list(report, 2));
}

/* ---- the producer: the root isolate ------------------------------------- */

static struct {
  int64_t items, window, sent, answered, in_flight, max_in_flight;
  isola_port consumer;
} p;

static void on_answer(void *ctx, int status, isola_value reply);

/* Sends items while fewer than window are in flight. */
static void produce(void) {
  for (; p.sent < p.items && p.in_flight < p.window; p.in_flight++) {
    if (isola_call(p.consumer, isola_int(++p.sent), ISOLA_FOREVER, on_answer,
                   NULL) != ISOLA_OK)
      isola_throw("producer: %s", isola_error_detail());
    if (p.in_flight + 1 > p.max_in_flight) p.max_in_flight = p.in_flight + 1;
  }
}

/* The consumer is done with an item.  It answers in order, so the last
 * answer counts every item. */
static void on_answer(void *ctx, int status, isola_value reply) {
  (void)ctx, (void)status; /* no timeout: always ISOLA_OK */
  int64_t got, sum, want = p.items * (p.items + 1) / 2;
  if (isola_unpack(reply, "[i i]", &got, &sum) != ISOLA_OK)
    isola_throw("producer: %s", isola_error_detail());
  p.in_flight--;
  if (++p.answered < p.items) {
    produce();
    return;
  }
  printf("producer: sent %lld items, at most %lld in flight (window %lld)\n",
         (long long)p.sent, (long long)p.max_in_flight, (long long)p.window);
  printf("consumer: handled %lld items, sum %lld (expected %lld)\n",
         (long long)got, (long long)sum, (long long)want);
  bool ok = got == p.items && sum == want && p.max_in_flight <= p.window;
  printf("%s\n", ok ? "ok" : "FAILED");
  isola_set_exit_code(ok ? 0 : 1);
  isola_send(p.consumer, isola_null()); /* stop */
}

void isola_main(isola_value args, isola_value message) {
  (void)message;
  if (isola_arg_int(args, 0, 200, 1, 1000000000, &p.items) != ISOLA_OK ||
      isola_arg_int(args, 1, 8, 1, INT64_MAX, &p.window) != ISOLA_OK) {
    fprintf(stderr, "usage: isola run pipeline.so [items [window]] "
                    "(1 <= items <= 1e9, window >= 1): %s\n",
            isola_error_detail());
    isola_set_exit_code(2);
    return;
  }
  printf("pipeline: %lld items through a window of %lld\n",
         (long long)p.items, (long long)p.window);
  isola_spawn_options o = {.name = "consumer"};
  if (isola_spawn_port(NULL, isola_null(), consume, NULL, &o, NULL,
                       &p.consumer) != ISOLA_OK)
    isola_throw("spawn: %s", isola_error_detail());
  produce();
}
