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
