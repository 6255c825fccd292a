/* SPDX-License-Identifier: MIT */
/*
 * Randomized stress: conservation of messages among 64 isolates forwarding
 * tokens to random peers, and a random tree of spawns.  Seeds are printed;
 * replay one with ISOLA_TEST_SEED=<seed>.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "helpers.h"

TestSuite(stress, .timeout = TH_TEST_TIMEOUT_S);

/* ---------------------------------------------------------------------- */
/* Conservation                                                            */
/* ---------------------------------------------------------------------- */

#define CS_ISOLATES 64
#define CS_TOKENS 256
#define CS_HOPS TH_SIZE(2000)

static const char *const cs_payloads[] = {
    "", "tok", "a payload string", "h\xc3\xa9llo w\xc3\xb6rld \xe2\x82\xac",
    "a somewhat longer payload so that the copy is not trivially small"};
#define CS_NPAYLOADS (sizeof cs_payloads / sizeof cs_payloads[0])

struct cs_isolate {
  uint64_t rng; /* this isolate's handlers only */
  isola_port main_port;
};
static struct cs_isolate cs_st[CS_ISOLATES];
static _Atomic isola_port cs_ports[CS_ISOLATES];
static atomic_long cs_sent, cs_received;
static uint64_t cs_seed;

/* Main isolate state (run_main's thread only). */
static uint8_t cs_finished[CS_TOKENS];
static int cs_done, cs_ready, cs_exits;
static uint64_t cs_main_rng;

static uint8_t cs_bytes_pattern(int64_t token, size_t i) {
  return (uint8_t)(token * 31 + (int64_t)i);
}

/* Builds the token message: [token, hops, payload string, payload bytes]. */
static void cs_send_token(isola_port to, int64_t token, int64_t hops) {
  uint8_t bytes[64];
  size_t nb = (size_t)(token % 50);
  for (size_t i = 0; i < nb; i++) bytes[i] = cs_bytes_pattern(token, i);
  isola_value items[4] = {isola_int(token), isola_int(hops),
                          isola_str(cs_payloads[token % CS_NPAYLOADS]),
                          isola_bytes(bytes, nb)};
  TH_CHECK_OK(isola_send(to, isola_list(items, 4)));
  atomic_fetch_add_explicit(&cs_sent, 1, memory_order_relaxed);
}

static void cs_check_payload(isola_value msg, int64_t token) {
  TH_CHECK(msg.kind == ISOLA_LIST && msg.len == 4);
  TH_CHECKF(strcmp(th_item_str(msg, 2), cs_payloads[token % CS_NPAYLOADS]) ==
                0,
            "token %lld: payload string damaged", (long long)token);
  isola_value b;
  const uint8_t *p;
  size_t len;
  TH_CHECK_OK(isola_list_get(msg, 3, &b));
  TH_CHECK_OK(isola_value_get_bytes(b, &p, &len));
  TH_CHECKF(len == (size_t)(token % 50), "token %lld: payload length %zu",
            (long long)token, len);
  for (size_t i = 0; i < len; i++)
    TH_CHECKF(p[i] == cs_bytes_pattern(token, i),
              "token %lld: payload byte %zu damaged", (long long)token, i);
}

static void cs_handler(void *ctx, isola_port port, isola_value msg,
                       isola_port reply_to) {
  (void)reply_to;
  struct cs_isolate *st = ctx;
  if (msg.kind == ISOLA_STRING) { /* "stop" */
    TH_CHECK_OK(isola_port_close(port));
    return;
  }
  atomic_fetch_add_explicit(&cs_received, 1, memory_order_relaxed);
  int64_t token = th_item_int(msg, 0), hops = th_item_int(msg, 1);
  TH_CHECK(token >= 0 && token < CS_TOKENS && hops >= 0);
  cs_check_payload(msg, token);
  if (hops == 0) {
    isola_value items[2] = {isola_str("done"), isola_int(token)};
    TH_CHECK_OK(isola_send(st->main_port, isola_list(items, 2)));
    return;
  }
  isola_port to = atomic_load_explicit(
      &cs_ports[th_rand_below(&st->rng, CS_ISOLATES)], memory_order_acquire);
  cs_send_token(to, token, hops - 1);
}

static void cs_entry(isola_value msg) {
  /* [main port, index] */
  int64_t i = th_item_int(msg, 1);
  struct cs_isolate *st = &cs_st[i];
  st->main_port = th_item_port(msg, 0);
  st->rng = cs_seed ^ ((uint64_t)(i + 1) * 0xD1B54A32D192ED03ull);
  isola_port p;
  TH_CHECK_OK(isola_port_open(cs_handler, st, &p));
  atomic_store_explicit(&cs_ports[i], p, memory_order_release);
  isola_value items[2] = {isola_str("ready"), isola_int(i)};
  TH_CHECK_OK(isola_send(st->main_port, isola_list(items, 2)));
}

static void cs_main_handler(void *ctx, isola_port port, isola_value msg,
                            isola_port reply_to) {
  (void)ctx, (void)reply_to;
  const char *what = th_item_str(msg, 0);
  if (strcmp(what, "ready") == 0) {
    if (++cs_ready < CS_ISOLATES) return;
    /* Everyone has a port: serve the tokens. */
    for (int64_t t = 0; t < CS_TOKENS; t++)
      cs_send_token(atomic_load(&cs_ports[th_rand_below(&cs_main_rng,
                                                        CS_ISOLATES)]),
                    t, CS_HOPS);
  } else if (strcmp(what, "done") == 0) {
    int64_t t = th_item_int(msg, 1);
    TH_CHECKF(!cs_finished[t], "token %lld finished twice", (long long)t);
    cs_finished[t] = 1;
    if (++cs_done == CS_TOKENS)
      for (int i = 0; i < CS_ISOLATES; i++)
        TH_CHECK_OK(isola_send(atomic_load(&cs_ports[i]), isola_str("stop")));
  } else if (strcmp(what, "exit") == 0) {
    if (++cs_exits == CS_ISOLATES) TH_CHECK_OK(isola_port_close(port));
  } else {
    th_check_failed(__FILE__, __LINE__, "unexpected \"%s\"", what);
  }
}

static void cs_main_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(cs_main_handler, NULL, &p));
  isola_value exit_items[1] = {isola_str("exit")};
  for (int i = 0; i < CS_ISOLATES; i++) {
    char name[32];
    snprintf(name, sizeof name, "forwarder-%d", i);
    isola_spawn_options o = {.name = name,
                             .on_exit = p,
                             .on_exit_message = isola_list(exit_items, 1)};
    isola_value items[2] = {isola_sendport(p), isola_int(i)};
    TH_CHECK_OK(isola_spawn(cs_entry, isola_list(items, 2), &o, NULL));
  }
}

static void run_conservation(unsigned workers) {
  char what[64];
  snprintf(what, sizeof what, "stress/conservation (%u workers)", workers);
  cs_seed = th_seed(what);
  cs_main_rng = cs_seed ^ 0x5555;
  isola_config c;
  isola_config_init(&c);
  c.workers = workers;
  th_vm_init(&c);
  TH_ASSERT_OK(isola_run_main(cs_main_entry, isola_null(), "stress-main"));
  long sent = atomic_load(&cs_sent), received = atomic_load(&cs_received);
  long expected = (long)CS_TOKENS * (CS_HOPS + 1);
  cr_assert(received == sent, "seed %llu: sent %ld, received %ld",
            (unsigned long long)cs_seed, sent, received);
  cr_assert(sent == expected, "seed %llu: sent %ld, expected %ld",
            (unsigned long long)cs_seed, sent, expected);
  for (int t = 0; t < CS_TOKENS; t++)
    cr_assert(cs_finished[t], "seed %llu: token %d never finished",
              (unsigned long long)cs_seed, t);
  cr_assert(cs_exits == CS_ISOLATES, "%d of %d isolates ended", cs_exits,
            CS_ISOLATES);
  cr_log_info("%ld messages among %d isolates on %u workers", received,
              CS_ISOLATES, workers);
  th_vm_shutdown_ok();
}

Test(stress, forwarded_tokens_are_conserved_with_2_workers) {
  run_conservation(2);
}

Test(stress, forwarded_tokens_are_conserved_with_4_workers) {
  run_conservation(4);
}

/* ---------------------------------------------------------------------- */
/* A random tree of spawns                                                 */
/* ---------------------------------------------------------------------- */

/* Every isolate spawns 0-4 children (the first one 4), then reports
 * [its id, its parent's id, number of children] to main and ends.  Reports
 * from different isolates may arrive in any order (FIFO holds per sender
 * only), so main has heard from everyone when the reports it has are closed
 * under "children of": as many reports as 1 + the children counted, and no
 * report whose parent has not reported yet. */
#define TREE_DEPTH 10
#define TREE_MAX TH_SIZE(6000)

static atomic_long tree_spawned; /* ids handed out; an id is < TREE_MAX */
static uint64_t tree_seed;
static th_counter tree_cleanups = TH_COUNTER_INIT;

/* Main isolate state. */
static long tree_reports, tree_expected = 1, tree_orphans;
static uint8_t tree_reported[TREE_MAX];
static int tree_kids_reported[TREE_MAX];

static void tree_entry(isola_value msg) {
  /* [main port, depth, seed, id, parent id] */
  isola_port main_port = th_item_port(msg, 0);
  int64_t depth = th_item_int(msg, 1);
  uint64_t rng = (uint64_t)th_item_int(msg, 2);
  int64_t id = th_item_int(msg, 3), parent = th_item_int(msg, 4);
  int64_t children = 0;
  if (depth < TREE_DEPTH) {
    int64_t want = depth == 0 ? 4 : (int64_t)th_rand_below(&rng, 5);
    for (int64_t k = 0; k < want; k++) {
      /* Stay under the size budget: take an id before spawning. */
      long child = atomic_fetch_add(&tree_spawned, 1);
      if (child >= TREE_MAX) {
        atomic_fetch_sub(&tree_spawned, 1);
        break;
      }
      isola_value items[5] = {isola_sendport(main_port),
                              isola_int(depth + 1),
                              isola_int((int64_t)th_rand(&rng)),
                              isola_int(child), isola_int(id)};
      TH_CHECK_OK(isola_spawn(tree_entry, isola_list(items, 5), NULL, NULL));
      children++;
    }
  }
  isola_value report[3] = {isola_int(id), isola_int(parent),
                           isola_int(children)};
  TH_CHECK_OK(isola_send(main_port, isola_list(report, 3)));
}

static void tree_main_handler(void *ctx, isola_port port, isola_value msg,
                              isola_port reply_to) {
  (void)ctx, (void)reply_to;
  int64_t id = th_item_int(msg, 0), parent = th_item_int(msg, 1);
  TH_CHECK(id >= 0 && id < TREE_MAX && !tree_reported[id]);
  tree_reported[id] = 1;
  tree_reports++;
  tree_expected += th_item_int(msg, 2);
  if (id != 0) {
    TH_CHECK(parent >= 0 && parent < TREE_MAX);
    if (!tree_reported[parent]) tree_orphans++;
    tree_kids_reported[parent]++;
  }
  tree_orphans -= tree_kids_reported[id]; /* they reported before us */
  if (tree_reports == tree_expected && tree_orphans == 0)
    TH_CHECK_OK(isola_port_close(port));
}

static void tree_main_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(tree_main_handler, NULL, &p));
  long id = atomic_fetch_add(&tree_spawned, 1); /* 0 */
  isola_value items[5] = {isola_sendport(p), isola_int(0),
                          isola_int((int64_t)tree_seed), isola_int(id),
                          isola_int(-1)};
  TH_CHECK_OK(isola_spawn(tree_entry, isola_list(items, 5), NULL, NULL));
}

static void tree_on_cleanup(void *data, const isola_isolate_info *info) {
  (void)data, (void)info;
  th_counter_add(&tree_cleanups, 1);
}

Test(stress, a_random_tree_of_spawns_reports_every_isolate) {
  tree_seed = th_seed("stress/spawn_tree");
  isola_config c;
  isola_config_init(&c);
  c.workers = 2;
  c.hooks.isolate_cleanup = tree_on_cleanup;
  th_vm_init(&c);
  TH_ASSERT_OK(isola_run_main(tree_main_entry, isola_null(), "tree-main"));
  long spawned = atomic_load(&tree_spawned);
  cr_assert(tree_reports == spawned,
            "seed %llu: %ld isolates spawned, %ld reported",
            (unsigned long long)tree_seed, spawned, tree_reports);
  /* Every tree isolate and main itself are cleaned up. */
  TH_WAIT_GE(&tree_cleanups, spawned + 1);
  cr_log_info("%ld isolates in the tree", spawned);
  th_vm_shutdown_ok();
  cr_assert(th_counter_get(&tree_cleanups) == spawned + 1,
            "%ld cleanups for %ld isolates", th_counter_get(&tree_cleanups),
            spawned + 1);
}
