/* SPDX-License-Identifier: MIT */
/*
 * pipeline.c — a producer and a slow consumer with credit-based
 * backpressure: the producer never has more than WINDOW items in flight,
 * however slow the consumer is.
 *
 *   isola run build/examples/pipeline.so [items [window]]   (defaults 200 8)
 *
 * Ports have unbounded queues: a producer that sends as fast as it can into
 * a slower consumer only grows the consumer's queue.  So here the consumer
 * grants credits, and the producer sends one item per credit:
 *
 *   1. The root spawns the producer, then the consumer, each with
 *      isola_spawn_port: the spawn hands back the child's port at once, so
 *      nobody has to announce where it is.  The consumer's spawn message
 *      names the producer's port.
 *   2. The root grants the first WINDOW credits in the consumer's name: a
 *      credit is an int sent with the consumer's port as reply_to, which
 *      is where the producer sends items.
 *   3. The producer sends items while it has credits, then waits.  The
 *      consumer handles each item (slowly: it sleeps 1 ms, inside
 *      isola_blocking_begin/end so the worker thread is lent to other
 *      isolates meanwhile) and grants one credit back per item handled.
 *   4. After the last item the producer reports the most items it ever had
 *      in flight and ends; the consumer reports how many items it got and
 *      their sum, and ends.  The root checks both and ends the run.
 *
 * Each isolate keeps its state in an isolate-local (ISOLA_LOCAL), set up
 * by its entry, which always runs before its port's first message.
 *
 * The bound holds because credits only come from items handled: items sent
 * minus items handled never exceeds the credits first granted.  The exit
 * code is 0 if the sum is right and in-flight never exceeded the window.
 */
#define _POSIX_C_SOURCE 200809L
#include <isola.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

ISOLA_MODULE();

/* ---- the consumer -------------------------------------------------------- */

typedef struct consumer {
  isola_port root, producer;
  int64_t items, got, sum;
} consumer;
static ISOLA_LOCAL(consumer, consumer_state);

static void consumer_entry(isola_value msg) {
  consumer *c = isola_local_get(&consumer_state);
  if (isola_unpack(msg, "[p p i]", &c->root, &c->producer, &c->items) !=
      ISOLA_OK)
    isola_throw("consumer: %s", isola_error_detail());
}

static void consumer_handler(void *ctx, isola_port port, isola_value msg,
                             isola_port reply_to) {
  (void)ctx, (void)reply_to;
  consumer *c = isola_local_get(&consumer_state);
  int64_t item;
  if (isola_unpack(msg, "i", &item) != ISOLA_OK)
    isola_throw("consumer: %s", isola_error_detail());
  c->sum += item;
  c->got++;
  /* The slow part.  Sleeping would hold the worker thread; inside a
   * blocking section the pool lends another thread to other isolates. */
  isola_blocking_begin();
  nanosleep(&(struct timespec){0, 1000000}, NULL);
  isola_blocking_end();
  if (c->got < c->items) {
    isola_send_reply(c->producer, isola_int(1), port);
  } else {
    isola_value report[3] = {isola_str("consumer"), isola_int(c->got),
                             isola_int(c->sum)};
    isola_send(c->root, isola_list(report, 3));
    isola_port_close(port);
  }
}

/* ---- the producer -------------------------------------------------------- */

typedef struct producer {
  isola_port root;
  int64_t items, sent, handled, max_in_flight;
} producer;
static ISOLA_LOCAL(producer, producer_state);

static void producer_entry(isola_value msg) {
  producer *p = isola_local_get(&producer_state);
  if (isola_unpack(msg, "[p i]", &p->root, &p->items) != ISOLA_OK)
    isola_throw("producer: %s", isola_error_detail());
}

/* A grant of credits; reply_to is the consumer's port. */
static void producer_handler(void *ctx, isola_port port, isola_value msg,
                             isola_port reply_to) {
  (void)ctx;
  producer *p = isola_local_get(&producer_state);
  int64_t credits;
  if (isola_unpack(msg, "i", &credits) != ISOLA_OK)
    isola_throw("producer: %s", isola_error_detail());
  /* Every credit after the first window stands for one item handled. */
  if (p->sent > 0) p->handled += credits;
  for (; credits > 0 && p->sent < p->items; credits--) {
    p->sent++;
    if (p->sent - p->handled > p->max_in_flight)
      p->max_in_flight = p->sent - p->handled;
    isola_send(reply_to, isola_int(p->sent)); /* items are 1 .. items */
  }
  if (p->sent == p->items) {
    isola_value report[2] = {isola_str("producer"),
                             isola_int(p->max_in_flight)};
    isola_send(p->root, isola_list(report, 2));
    isola_port_close(port);
  }
}

/* ---- the root ------------------------------------------------------------ */

typedef struct run_state {
  int64_t items, window;
  int reports;
  bool ok;
} run_state;

static void root_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)reply_to;
  run_state *run = ctx;
  int64_t max, got, sum;
  if (isola_unpack(msg, "[_ i]", &max) == ISOLA_OK) {
    printf("producer: sent %lld items, at most %lld in flight (window %lld)"
           "\n",
           (long long)run->items, (long long)max, (long long)run->window);
    if (max > run->window) run->ok = false;
  } else if (isola_unpack(msg, "[_ i i]", &got, &sum) == ISOLA_OK) {
    int64_t want = run->items * (run->items + 1) / 2;
    printf("consumer: handled %lld items, sum %lld (expected %lld)\n",
           (long long)got, (long long)sum, (long long)want);
    if (got != run->items || sum != want) run->ok = false;
  }
  if (++run->reports == 2) {
    printf("%s\n", run->ok ? "ok" : "FAILED");
    isola_set_exit_code(run->ok ? 0 : 1);
    isola_port_close(port);
  }
}

static int64_t arg_int(isola_value args, size_t i, int64_t dflt) {
  isola_value v;
  const char *s;
  if (isola_list_get(args, i, &v) != ISOLA_OK ||
      isola_value_get_str(v, &s, NULL) != ISOLA_OK)
    return dflt;
  return strtoll(s, NULL, 10);
}

void isola_main(isola_value args, isola_value message) {
  (void)message;
  run_state *run = isola_calloc(sizeof *run); /* freed when the root ends */
  run->items = arg_int(args, 0, 200);
  run->window = arg_int(args, 1, 8);
  run->ok = true;
  if (run->items < 1 || run->window < 1) {
    fprintf(stderr, "usage: isola run pipeline.so [items [window]] "
                    "(both >= 1)\n");
    isola_set_exit_code(2);
    return;
  }
  isola_port me, prod, cons;
  if (isola_port_open(root_handler, run, &me) != ISOLA_OK)
    isola_throw("root: no port");
  printf("pipeline: %lld items through a window of %lld credits\n",
         (long long)run->items, (long long)run->window);
  isola_value pjob[2] = {isola_sendport(me), isola_int(run->items)};
  isola_spawn_options po = {.name = "producer"}, co = {.name = "consumer"};
  int rc = isola_spawn_port(producer_entry, isola_list(pjob, 2),
                            producer_handler, NULL, &po, NULL, &prod);
  isola_value cjob[3] = {isola_sendport(me), isola_sendport(prod),
                         isola_int(run->items)};
  if (rc == ISOLA_OK)
    rc = isola_spawn_port(consumer_entry, isola_list(cjob, 3),
                          consumer_handler, NULL, &co, NULL, &cons);
  if (rc != ISOLA_OK) isola_throw("spawn: %s", isola_error_detail());
  /* Open the window in the consumer's name: items go to its port. */
  isola_send_reply(prod, isola_int(run->window), cons);
}
