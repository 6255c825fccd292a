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
 *   1. The root spawns the consumer, which opens its item port and tells the
 *      root where it is; the root then spawns the producer with that port.
 *   2. The producer opens a credit port and announces it to the consumer,
 *      which grants a first WINDOW credits.
 *   3. The producer sends items while it has credits, then waits.  The
 *      consumer handles each item (slowly: it sleeps 1 ms, inside
 *      isola_blocking_begin/end so the worker thread is lent to other
 *      isolates meanwhile) and grants one credit back per item handled.
 *   4. After the last item the producer reports the most items it ever had
 *      in flight and ends; the consumer reports how many items it got and
 *      their sum, and ends.  The root checks both and ends the run.
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

/* Message tags: every message is a list whose first item is one of these. */
enum { HELLO, CREDIT, ITEM, CONSUMER_AT, PRODUCER_DONE, CONSUMER_DONE };

static int64_t tag_of(isola_value msg) {
  isola_value v;
  int64_t t = -1;
  isola_list_get(msg, 0, &v);
  isola_value_get_int(v, &t);
  return t;
}

static int64_t int_at(isola_value msg, size_t i) {
  isola_value v;
  int64_t n = 0;
  isola_list_get(msg, i, &v);
  isola_value_get_int(v, &n);
  return n;
}

static isola_port port_at(isola_value msg, size_t i) {
  isola_value v;
  isola_port p = ISOLA_PORT_NONE;
  isola_list_get(msg, i, &v);
  isola_value_get_port(v, &p);
  return p;
}

static void send2(isola_port to, int64_t tag, isola_value a) {
  isola_value m[2] = {isola_int(tag), a};
  isola_send(to, isola_list(m, 2));
}

static void send3(isola_port to, int64_t tag, isola_value a, isola_value b) {
  isola_value m[3] = {isola_int(tag), a, b};
  isola_send(to, isola_list(m, 3));
}

/* ---- the consumer -------------------------------------------------------- */

typedef struct consumer {
  isola_port root, credits; /* where to report, where to grant */
  int64_t items, window, got, sum;
} consumer;

static void consumer_handler(void *ctx, isola_port port, isola_value msg,
                             isola_port reply_to) {
  (void)reply_to;
  consumer *c = ctx;
  switch (tag_of(msg)) {
  case HELLO: /* [HELLO, credit port]: open the window */
    c->credits = port_at(msg, 1);
    send2(c->credits, CREDIT, isola_int(c->window));
    break;
  case ITEM: { /* [ITEM, value] */
    c->sum += int_at(msg, 1);
    c->got++;
    /* The slow part.  Sleeping would hold the worker thread; inside a
     * blocking section the pool lends another thread to other isolates. */
    isola_blocking_begin();
    nanosleep(&(struct timespec){0, 1000000}, NULL);
    isola_blocking_end();
    if (c->got < c->items) {
      send2(c->credits, CREDIT, isola_int(1));
    } else {
      send3(c->root, CONSUMER_DONE, isola_int(c->got), isola_int(c->sum));
      isola_port_close(port);
      free(c);
    }
    break;
  }
  }
}

static void consumer_entry(isola_value msg) {
  /* msg = [root port, items, window] */
  consumer *c = calloc(1, sizeof *c);
  if (!c) isola_throw("out of memory");
  c->root = port_at(msg, 0);
  c->items = int_at(msg, 1);
  c->window = int_at(msg, 2);
  isola_port me;
  if (isola_port_open(consumer_handler, c, &me) != ISOLA_OK)
    isola_throw("consumer: no port");
  send2(c->root, CONSUMER_AT, isola_sendport(me));
}

/* ---- the producer -------------------------------------------------------- */

typedef struct producer {
  isola_port root, sink;
  int64_t items, sent, credits, in_flight, max_in_flight, handled;
} producer;

/* Sends while there are credits and items. */
static void produce(producer *p) {
  while (p->credits > 0 && p->sent < p->items) {
    p->sent++;
    p->credits--;
    p->in_flight = p->sent - p->handled;
    if (p->in_flight > p->max_in_flight) p->max_in_flight = p->in_flight;
    send2(p->sink, ITEM, isola_int(p->sent)); /* items are 1 .. items */
  }
}

static void producer_handler(void *ctx, isola_port port, isola_value msg,
                             isola_port reply_to) {
  (void)reply_to;
  producer *p = ctx;
  if (tag_of(msg) != CREDIT) return;
  int64_t granted = int_at(msg, 1);
  p->credits += granted;
  /* Every credit after the first window stands for one item handled. */
  if (p->sent > 0) p->handled += granted;
  produce(p);
  if (p->sent == p->items) {
    send2(p->root, PRODUCER_DONE, isola_int(p->max_in_flight));
    isola_port_close(port);
    free(p);
  }
}

static void producer_entry(isola_value msg) {
  /* msg = [root port, consumer port, items] */
  producer *p = calloc(1, sizeof *p);
  if (!p) isola_throw("out of memory");
  p->root = port_at(msg, 0);
  p->sink = port_at(msg, 1);
  p->items = int_at(msg, 2);
  isola_port me;
  if (isola_port_open(producer_handler, p, &me) != ISOLA_OK)
    isola_throw("producer: no port");
  send2(p->sink, HELLO, isola_sendport(me));
}

/* ---- the root ------------------------------------------------------------ */

static struct {
  int64_t items, window;
  int reports;
  bool ok;
} run;

static void root_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx, (void)reply_to;
  switch (tag_of(msg)) {
  case CONSUMER_AT: {
    isola_value job[3] = {isola_sendport(port),
                          isola_sendport(port_at(msg, 1)),
                          isola_int(run.items)};
    isola_spawn_options o = {.name = "producer"};
    int rc = isola_spawn(producer_entry, isola_list(job, 3), &o, NULL);
    if (rc != ISOLA_OK) isola_throw("spawn: %s", isola_strerror(rc));
    return;
  }
  case PRODUCER_DONE: {
    int64_t max = int_at(msg, 1);
    printf("producer: sent %lld items, at most %lld in flight (window %lld)"
           "\n",
           (long long)run.items, (long long)max, (long long)run.window);
    if (max > run.window) run.ok = false;
    break;
  }
  case CONSUMER_DONE: {
    int64_t got = int_at(msg, 1), sum = int_at(msg, 2);
    int64_t want = run.items * (run.items + 1) / 2;
    printf("consumer: handled %lld items, sum %lld (expected %lld)\n",
           (long long)got, (long long)sum, (long long)want);
    if (got != run.items || sum != want) run.ok = false;
    break;
  }
  }
  if (++run.reports == 2) {
    printf("%s\n", run.ok ? "ok" : "FAILED");
    isola_set_exit_code(run.ok ? 0 : 1);
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
  run.items = arg_int(args, 0, 200);
  run.window = arg_int(args, 1, 8);
  run.ok = true;
  if (run.items < 1 || run.window < 1) {
    fprintf(stderr, "usage: isola run pipeline.so [items [window]] "
                    "(both >= 1)\n");
    isola_set_exit_code(2);
    return;
  }
  isola_port me;
  if (isola_port_open(root_handler, NULL, &me) != ISOLA_OK)
    isola_throw("root: no port");
  printf("pipeline: %lld items through a window of %lld credits\n",
         (long long)run.items, (long long)run.window);
  isola_value job[3] = {isola_sendport(me), isola_int(run.items),
                        isola_int(run.window)};
  isola_spawn_options o = {.name = "consumer"};
  int rc = isola_spawn(consumer_entry, isola_list(job, 3), &o, NULL);
  if (rc != ISOLA_OK) isola_throw("spawn: %s", isola_strerror(rc));
}
