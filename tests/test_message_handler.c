/* SPDX-License-Identifier: MIT */
/*
 * The message handler: per-sender FIFO into one port and across the ports
 * of one isolate, nothing lost or duplicated, posts from plain threads,
 * messages queued for a port that closes are dropped.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "helpers.h"

TestSuite(message_handler, .timeout = TH_TEST_TIMEOUT_S);

/* ---------------------------------------------------------------------- */
/* 4 senders x 100,000 messages into one port                              */
/* ---------------------------------------------------------------------- */

#define FANIN_SENDERS 4
#define FANIN_N TH_SIZE(100000)

static int64_t fanin_next[FANIN_SENDERS]; /* main isolate only */
static int64_t fanin_total;

static void fanin_handler(void *ctx, isola_port port, isola_value msg,
                          isola_port reply_to) {
  (void)ctx, (void)reply_to;
  /* [sender id, seq] */
  TH_CHECK(msg.kind == ISOLA_LIST && msg.len == 2);
  int64_t id = th_item_int(msg, 0), seq = th_item_int(msg, 1);
  TH_CHECKF(id >= 0 && id < FANIN_SENDERS, "bad sender id %lld",
            (long long)id);
  TH_CHECKF(seq == fanin_next[id],
            "sender %lld: got seq %lld, expected %lld (lost, duplicated or "
            "reordered)",
            (long long)id, (long long)seq, (long long)fanin_next[id]);
  fanin_next[id]++;
  if (++fanin_total == (int64_t)FANIN_SENDERS * FANIN_N)
    TH_CHECK_OK(isola_port_close(port));
}

static void fanin_sender_entry(isola_value msg) {
  /* [target, id] */
  isola_port to = th_item_port(msg, 0);
  int64_t id = th_item_int(msg, 1);
  for (int64_t seq = 0; seq < FANIN_N; seq++) {
    isola_value items[2] = {isola_int(id), isola_int(seq)};
    TH_CHECK_OK(isola_send(to, isola_list(items, 2)));
  }
}

static void fanin_main_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(fanin_handler, NULL, &p));
  for (int i = 0; i < FANIN_SENDERS; i++) {
    isola_value items[2] = {isola_sendport(p), isola_int(i)};
    char name[32];
    snprintf(name, sizeof name, "sender-%d", i);
    isola_spawn_options o = {.name = name};
    TH_CHECK_OK(
        isola_spawn(fanin_sender_entry, isola_list(items, 2), &o, NULL));
  }
}

Test(message_handler, four_senders_into_one_port_keep_per_sender_order) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(fanin_main_entry, isola_null(), "fanin"));
  for (int i = 0; i < FANIN_SENDERS; i++)
    cr_assert(fanin_next[i] == FANIN_N, "sender %d: %lld of %d arrived", i,
              (long long)fanin_next[i], FANIN_N);
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* A plain pthread posting to a port                                       */
/* ---------------------------------------------------------------------- */

#define PTHREAD_N TH_SIZE(100000)

static void unused_handler(void *ctx, isola_port port, isola_value msg,
                           isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
}

struct poster {
  pthread_t thread;
  isola_port to;
  int open_rc;
};
static struct poster poster;
static int64_t pthread_next;

static void *poster_main(void *arg) {
  struct poster *p = arg;
  isola_port dummy;
  p->open_rc = isola_port_open(unused_handler, NULL, &dummy); /* no isolate */
  for (int64_t seq = 0; seq < PTHREAD_N; seq++) {
    /* Vary the kinds: every 3rd message is a list, others scalars/strings */
    isola_value v;
    char buf[32];
    isola_value items[2];
    switch (seq % 3) {
      case 0:
        v = isola_int(seq);
        break;
      case 1:
        snprintf(buf, sizeof buf, "%lld", (long long)seq);
        v = isola_str(buf);
        break;
      default:
        items[0] = isola_int(seq);
        items[1] = isola_str("list");
        v = isola_list(items, 2);
        break;
    }
    TH_CHECK_OK(isola_send(p->to, v));
  }
  return NULL;
}

static int64_t decode_seq(isola_value msg) {
  const char *s;
  switch (msg.kind) {
    case ISOLA_INT:
      return th_int(msg);
    case ISOLA_STRING:
      TH_CHECK_OK(isola_value_get_str(msg, &s, NULL));
      return strtoll(s, NULL, 10);
    case ISOLA_LIST:
      TH_CHECK(strcmp(th_item_str(msg, 1), "list") == 0);
      return th_item_int(msg, 0);
    default:
      th_check_failed(__FILE__, __LINE__, "unexpected kind %u", msg.kind);
  }
}

static void pthread_handler(void *ctx, isola_port port, isola_value msg,
                            isola_port reply_to) {
  (void)ctx;
  TH_CHECK(reply_to == ISOLA_PORT_NONE);
  int64_t seq = decode_seq(msg);
  TH_CHECKF(seq == pthread_next, "got %lld, expected %lld", (long long)seq,
            (long long)pthread_next);
  TH_CHECKF((int)(seq % 3) == (msg.kind == ISOLA_INT      ? 0
                               : msg.kind == ISOLA_STRING ? 1
                                                          : 2),
            "message %lld arrived with kind %u", (long long)seq, msg.kind);
  if (++pthread_next == PTHREAD_N) TH_CHECK_OK(isola_port_close(port));
}

static void pthread_main_entry(isola_value msg) {
  (void)msg;
  TH_CHECK_OK(isola_port_open(pthread_handler, NULL, &poster.to));
  TH_CHECK(pthread_create(&poster.thread, NULL, poster_main, &poster) == 0);
}

Test(message_handler, messages_from_a_plain_pthread_arrive_in_order) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(pthread_main_entry, isola_null(), NULL));
  cr_assert(pthread_join(poster.thread, NULL) == 0, "pthread_join");
  TH_ASSERT_RC(poster.open_rc, ISOLA_ENOTISOLATE);
  cr_assert(pthread_next == PTHREAD_N, "%lld of %d arrived",
            (long long)pthread_next, PTHREAD_N);
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* FIFO across the ports of one isolate                                    */
/* ---------------------------------------------------------------------- */

#define MP_PORTS 16
#define MP_SENDERS 3
#define MP_N TH_SIZE(30000)

struct mp_port {
  int index;
  isola_port port;
};
static struct mp_port mp_ports[MP_PORTS];
static int64_t mp_next[MP_SENDERS];
static int64_t mp_total;
static int64_t mp_per_port[MP_PORTS];
static uint64_t mp_seed;

static void mp_handler(void *ctx, isola_port port, isola_value msg,
                       isola_port reply_to) {
  (void)reply_to;
  struct mp_port *mp = ctx;
  TH_CHECKF(mp->port == port, "handler got port %llx with the ctx of %llx",
            (unsigned long long)port, (unsigned long long)mp->port);
  /* [sender, seq, port index it was sent to] */
  int64_t id = th_item_int(msg, 0), seq = th_item_int(msg, 1);
  TH_CHECKF(th_item_int(msg, 2) == mp->index,
            "message for port %lld arrived at port %d",
            (long long)th_item_int(msg, 2), mp->index);
  TH_CHECK(id >= 0 && id < MP_SENDERS);
  TH_CHECKF(seq == mp_next[id],
            "sender %lld: seq %lld arrived, expected %lld: FIFO across the "
            "ports of an isolate is broken",
            (long long)id, (long long)seq, (long long)mp_next[id]);
  mp_next[id]++;
  mp_per_port[mp->index]++;
  if (++mp_total == (int64_t)MP_SENDERS * MP_N)
    for (int i = 0; i < MP_PORTS; i++)
      TH_CHECK_OK(isola_port_close(mp_ports[i].port));
}

static void mp_sender_entry(isola_value msg) {
  /* [id, port 0, ..., port 15] */
  int64_t id = th_item_int(msg, 0);
  isola_port ports[MP_PORTS];
  for (int i = 0; i < MP_PORTS; i++) ports[i] = th_item_port(msg, 1 + i);
  uint64_t rng = mp_seed ^ (uint64_t)(id + 1) * 0x9E3779B97F4A7C15ull;
  for (int64_t seq = 0; seq < MP_N; seq++) {
    int k = (int)th_rand_below(&rng, MP_PORTS);
    isola_value items[3] = {isola_int(id), isola_int(seq), isola_int(k)};
    TH_CHECK_OK(isola_send(ports[k], isola_list(items, 3)));
  }
}

static void mp_main_entry(isola_value msg) {
  (void)msg;
  for (int i = 0; i < MP_PORTS; i++) {
    mp_ports[i].index = i;
    TH_CHECK_OK(isola_port_open(mp_handler, &mp_ports[i], &mp_ports[i].port));
  }
  isola_value items[1 + MP_PORTS];
  for (int i = 0; i < MP_PORTS; i++)
    items[1 + i] = isola_sendport(mp_ports[i].port);
  for (int s = 0; s < MP_SENDERS; s++) {
    items[0] = isola_int(s);
    TH_CHECK_OK(isola_spawn(mp_sender_entry, isola_list(items, 1 + MP_PORTS),
                            NULL, NULL));
  }
}

Test(message_handler, fifo_per_sender_holds_across_the_ports_of_an_isolate) {
  mp_seed = th_seed("message_handler/fifo_across_ports");
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(mp_main_entry, isola_null(), NULL));
  for (int s = 0; s < MP_SENDERS; s++)
    cr_assert(mp_next[s] == MP_N, "sender %d: %lld of %d arrived", s,
              (long long)mp_next[s], MP_N);
  for (int i = 0; i < MP_PORTS; i++)
    cr_assert(mp_per_port[i] > 0, "port %d never received anything", i);
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* Messages queued for a port that closes are dropped                      */
/* ---------------------------------------------------------------------- */

static int drop_a_calls, drop_b_calls;
static isola_port drop_a, drop_b;

static void drop_a_handler(void *ctx, isola_port port, isola_value msg,
                           isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  drop_a_calls++;
  TH_CHECK_OK(isola_port_close(port)); /* 99 more are queued for it */
}

static void drop_b_handler(void *ctx, isola_port port, isola_value msg,
                           isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  drop_b_calls++;
  TH_CHECK_OK(isola_port_close(port));
}

static void drop_entry(isola_value msg) {
  (void)msg;
  TH_CHECK_OK(isola_port_open(drop_a_handler, NULL, &drop_a));
  TH_CHECK_OK(isola_port_open(drop_b_handler, NULL, &drop_b));
  for (int i = 0; i < 100; i++) {
    isola_value items[2] = {isola_int(i), isola_str("owned memory to free")};
    TH_CHECK_OK(isola_send(drop_a, isola_list(items, 2)));
  }
  TH_CHECK_OK(isola_send(drop_b, isola_str("last")));
}

Test(message_handler, messages_queued_for_a_closed_port_are_dropped) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(drop_entry, isola_null(), NULL));
  cr_assert(drop_a_calls == 1,
            "the handler of a closed port ran %d times, expected 1",
            drop_a_calls);
  cr_assert(drop_b_calls == 1, "the other port's message: %d", drop_b_calls);
  th_vm_shutdown_ok(); /* the dropped messages were freed */
}

/* ---------------------------------------------------------------------- */
/* Sends in a row (the outbox, docs/design.md): held back no later than     */
/* the end of the event, isola_check_interrupts or isola_blocking_begin     */
/* ---------------------------------------------------------------------- */

/* Runs of random length to three receivers, in one event: each receiver
 * sees its messages in order and none is lost. */
#define ROW_RECEIVERS 3
#define ROW_N TH_SIZE(30000)
static _Atomic isola_port row_port[ROW_RECEIVERS];
static th_counter row_ready = TH_COUNTER_INIT;
static th_counter row_closed = TH_COUNTER_INIT;
static int64_t row_sent[ROW_RECEIVERS]; /* the sender's event only */
static uint64_t row_seed;

typedef struct row_rx {
  int64_t next, total;
} row_rx;

static void row_handler(void *ctx, isola_port port, isola_value msg,
                        isola_port reply_to) {
  (void)reply_to;
  row_rx *r = ctx;
  int64_t seq = th_int(msg);
  if (seq < 0) { /* the last: how many there were */
    TH_CHECKF(-seq - 1 == r->next, "%lld sent, %lld arrived",
              (long long)(-seq - 1), (long long)r->next);
    free(r);
    TH_CHECK_OK(isola_port_close(port));
    th_counter_add(&row_closed, 1);
    return;
  }
  TH_CHECKF(seq == r->next, "got %lld, expected %lld", (long long)seq,
            (long long)r->next);
  r->next++;
}

static void row_receiver_entry(isola_value msg) {
  row_rx *r = calloc(1, sizeof *r);
  TH_CHECK(r != NULL);
  isola_port p;
  TH_CHECK_OK(isola_port_open(row_handler, r, &p));
  atomic_store(&row_port[th_int(msg)], p);
  th_counter_add(&row_ready, 1);
}

static void row_sender_entry(isola_value msg) {
  (void)msg;
  uint64_t rng = row_seed;
  int64_t left = ROW_N;
  while (left > 0) {
    int to = (int)th_rand_below(&rng, ROW_RECEIVERS);
    /* Runs around the outbox's limit of 64, and runs of one. */
    int64_t run = th_rand_below(&rng, 4) == 0 ? 1
                                               : (int64_t)th_rand_below(&rng, 200);
    for (int64_t i = 0; i < run && left > 0; i++, left--)
      TH_CHECK_OK(isola_send(atomic_load(&row_port[to]),
                             isola_int(row_sent[to]++)));
  }
  for (int i = 0; i < ROW_RECEIVERS; i++)
    TH_CHECK_OK(
        isola_send(atomic_load(&row_port[i]), isola_int(-row_sent[i] - 1)));
}

Test(message_handler, sends_in_a_row_to_several_isolates_keep_their_order) {
  row_seed = th_seed("message_handler/sends_in_a_row");
  th_vm_init(NULL);
  for (int i = 0; i < ROW_RECEIVERS; i++)
    TH_ASSERT_OK(isola_spawn(row_receiver_entry, isola_int(i), NULL, NULL));
  TH_WAIT_GE(&row_ready, ROW_RECEIVERS);
  TH_ASSERT_OK(isola_spawn(row_sender_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&row_closed, ROW_RECEIVERS);
  th_vm_shutdown_ok();
}

/* A long event that calls isola_check_interrupts(): what it sent before
 * reaches a receiver running on the other worker while the event still
 * runs.  B holds the other worker (so it is scheduled, not idle) until A
 * has sent; A then waits for B to have handled the message. */
static _Atomic isola_port ci_a, ci_b;
static th_counter ci_ready = TH_COUNTER_INIT;
static th_counter ci_b_busy = TH_COUNTER_INIT;
static th_counter ci_sent = TH_COUNTER_INIT;
static th_counter ci_got = TH_COUNTER_INIT;
static th_counter ci_done = TH_COUNTER_INIT;

static void ci_b_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx, (void)reply_to;
  if (th_int(msg) == 0) { /* from main: hold this worker */
    th_counter_add(&ci_b_busy, 1);
    TH_CHECK_WAIT_GE(&ci_sent, 1);
    return;
  }
  th_counter_add(&ci_got, 1); /* from A */
  TH_CHECK_OK(isola_port_close(port));
}

static void ci_a_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  TH_CHECK_OK(isola_send(atomic_load(&ci_b), isola_int(1)));
  TH_CHECK_OK(isola_check_interrupts());
  th_counter_add(&ci_sent, 1);
  /* Still in the event, no blocking section: only a message already
   * pushed can be handled now. */
  if (!th_counter_wait_ge(&ci_got, 1, TH_WAIT_MS))
    th_check_failed(__FILE__, __LINE__,
                    "the message sent before isola_check_interrupts() was "
                    "held back until the event's end");
  TH_CHECK_OK(isola_port_close(port));
  th_counter_add(&ci_done, 1);
}

static void ci_entry(isola_value msg) {
  bool is_a = th_int(msg) == 0;
  isola_port p;
  TH_CHECK_OK(isola_port_open(is_a ? ci_a_handler : ci_b_handler, NULL, &p));
  atomic_store(is_a ? &ci_a : &ci_b, p);
  th_counter_add(&ci_ready, 1);
}

Test(message_handler, check_interrupts_pushes_what_the_event_sent) {
  isola_config c;
  isola_config_init(&c);
  c.workers = 2;
  th_vm_init(&c);
  TH_ASSERT_OK(isola_spawn(ci_entry, isola_int(0), NULL, NULL));
  TH_ASSERT_OK(isola_spawn(ci_entry, isola_int(1), NULL, NULL));
  TH_WAIT_GE(&ci_ready, 2);
  TH_ASSERT_OK(isola_send(atomic_load(&ci_b), isola_int(0)));
  TH_WAIT_GE(&ci_b_busy, 1); /* B holds one worker */
  TH_ASSERT_OK(isola_send(atomic_load(&ci_a), isola_int(0)));
  TH_WAIT_GE(&ci_done, 1);
  th_vm_shutdown_ok();
}

/* A message sent just before isola_blocking_begin() is pushed by it: the
 * receiver (woken onto this worker, handed to the stand-in) gets it while
 * the sender waits. */
static _Atomic isola_port bb_rx;
static th_counter bb_ready = TH_COUNTER_INIT;
static th_counter bb_got = TH_COUNTER_INIT;
static th_counter bb_done = TH_COUNTER_INIT;

static void bb_rx_handler(void *ctx, isola_port port, isola_value msg,
                          isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  th_counter_add(&bb_got, 1);
  TH_CHECK_OK(isola_port_close(port));
}

static void bb_tx_handler(void *ctx, isola_port port, isola_value msg,
                          isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  TH_CHECK_OK(isola_send(atomic_load(&bb_rx), isola_int(1)));
  TH_CHECK_OK(isola_blocking_begin());
  if (!th_counter_wait_ge(&bb_got, 1, TH_WAIT_MS))
    th_check_failed(__FILE__, __LINE__,
                    "the message sent before isola_blocking_begin() never "
                    "arrived while the sender blocked");
  TH_CHECK_OK(isola_blocking_end());
  TH_CHECK_OK(isola_port_close(port));
  th_counter_add(&bb_done, 1);
}

static _Atomic isola_port bb_tx;
static void bb_entry(isola_value msg) {
  bool rx = th_int(msg) == 0;
  isola_port p;
  TH_CHECK_OK(isola_port_open(rx ? bb_rx_handler : bb_tx_handler, NULL, &p));
  atomic_store(rx ? &bb_rx : &bb_tx, p);
  th_counter_add(&bb_ready, 1);
}

Test(message_handler, blocking_begin_pushes_what_the_event_sent) {
  isola_config c;
  isola_config_init(&c);
  c.workers = 1;
  th_vm_init(&c);
  TH_ASSERT_OK(isola_spawn(bb_entry, isola_int(0), NULL, NULL));
  TH_ASSERT_OK(isola_spawn(bb_entry, isola_int(1), NULL, NULL));
  TH_WAIT_GE(&bb_ready, 2);
  TH_ASSERT_OK(isola_send(atomic_load(&bb_tx), isola_int(0)));
  TH_WAIT_GE(&bb_done, 1);
  th_vm_shutdown_ok();
}

/* An event that sends and then fails (isola_throw, fatal) or is killed at
 * an interrupt point: everything it sent before still arrives. */
#define EU_N 100
static _Atomic isola_port eu_rx;
static th_counter eu_ready = TH_COUNTER_INIT;
static th_counter eu_got = TH_COUNTER_INIT;
static th_counter eu_ended = TH_COUNTER_INIT;

static void eu_rx_handler(void *ctx, isola_port port, isola_value msg,
                          isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
  th_counter_add(&eu_got, 1);
}

static void eu_rx_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(eu_rx_handler, NULL, &p));
  atomic_store(&eu_rx, p);
  th_counter_add(&eu_ready, 1);
}

static void eu_thrower_entry(isola_value msg) {
  (void)msg;
  for (int i = 0; i < EU_N; i++)
    TH_CHECK_OK(isola_send(atomic_load(&eu_rx), isola_int(i)));
  isola_throw("after %d sends", EU_N);
}

static void eu_unhandled(void *data, const isola_isolate_info *info,
                         const char *message, const char *stack) {
  (void)data, (void)info, (void)message, (void)stack;
}

static void eu_cleanup(void *data, const isola_isolate_info *info) {
  (void)data, (void)info;
  th_counter_add(&eu_ended, 1);
}

Test(message_handler, what_an_event_sent_before_an_error_arrives) {
  isola_config c;
  isola_config_init(&c);
  c.unhandled_error = eu_unhandled;
  c.hooks.isolate_cleanup = eu_cleanup;
  th_vm_init(&c);
  TH_ASSERT_OK(isola_spawn(eu_rx_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&eu_ready, 1);
  TH_ASSERT_OK(isola_spawn(eu_thrower_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&eu_ended, 1); /* the thrower is gone */
  TH_WAIT_GE(&eu_got, EU_N);
  th_vm_shutdown_ok(); /* the receiver is killed at shutdown */
}
