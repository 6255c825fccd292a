/* SPDX-License-Identifier: MIT */
/*
 * Ports: open and close, errors for closed, unknown and foreign ports,
 * reply_to, send ports inside messages, keep-alive, the end of an isolate
 * whose last port closes, and id uniqueness.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "helpers.h"

TestSuite(port, .timeout = TH_TEST_TIMEOUT_S);

static void noop_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
}

static void close_handler(void *ctx, isola_port port, isola_value msg,
                          isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  TH_CHECK_OK(isola_port_close(port));
}

/* Counts isolate_cleanup per isolate name. */
static pthread_mutex_t names_mu = PTHREAD_MUTEX_INITIALIZER;
static char cleaned_names[64][64]; /* protected by names_mu */
static int cleaned_n;              /* protected by names_mu */
static th_counter cleanups = TH_COUNTER_INIT;

static void on_cleanup(void *data, const isola_isolate_info *info) {
  (void)data;
  pthread_mutex_lock(&names_mu);
  if (cleaned_n < 64)
    snprintf(cleaned_names[cleaned_n++], 64, "%s", info->name);
  pthread_mutex_unlock(&names_mu);
  th_counter_add(&cleanups, 1);
}

static int cleanup_count(const char *name) {
  int n = 0;
  pthread_mutex_lock(&names_mu);
  for (int i = 0; i < cleaned_n; i++) n += strcmp(cleaned_names[i], name) == 0;
  pthread_mutex_unlock(&names_mu);
  return n;
}

static void init_with_cleanup_hook(void) {
  isola_config c;
  isola_config_init(&c);
  c.hooks.isolate_cleanup = on_cleanup;
  th_vm_init(&c);
}

/* ---------------------------------------------------------------------- */

static atomic_int basic_ran;

static void open_close_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(noop_handler, NULL, &p));
  TH_CHECK(p != ISOLA_PORT_NONE);
  TH_CHECK_OK(isola_port_keep_alive(p, false));
  TH_CHECK_OK(isola_port_keep_alive(p, true));
  TH_CHECK_OK(isola_port_close(p));
  TH_CHECK_RC(isola_port_close(p), ISOLA_ECLOSED);
  TH_CHECK_RC(isola_port_keep_alive(p, true), ISOLA_ECLOSED);
  /* A send to the closed port fails and drops (frees) the copy. */
  isola_value inner[2] = {isola_str("dropped"), isola_bytes("xyz", 3)};
  isola_value items[3] = {isola_int(1), isola_list(inner, 2),
                          isola_list(inner, 2)};
  TH_CHECK_RC(isola_send(p, isola_list(items, 3)), ISOLA_ECLOSED);
  TH_CHECK_RC(isola_send_reply(p, isola_str("x"), p), ISOLA_ECLOSED);
  atomic_store(&basic_ran, 1);
}

Test(port, open_close_and_close_twice_gives_ECLOSED) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(open_close_entry, isola_null(), NULL));
  cr_assert(atomic_load(&basic_ran), "the entry did not run");
  th_vm_shutdown_ok(); /* the dropped message was freed */
}

/* A close finds its port among the isolate's newest ones first, and by
 * the id otherwise (isolate.c, own_slot): closing in any order, oldest
 * first, newest first, and from the middle, closes each port exactly once
 * and leaves the others open. */
static atomic_int order_ran;

static void close_order_entry(isola_value msg) {
  (void)msg;
  enum { N = 9 };
  isola_port p[N];
  for (int i = 0; i < N; i++)
    TH_CHECK_OK(isola_port_open(noop_handler, NULL, &p[i]));
  isola_isolate self;
  TH_CHECK_OK(isola_current(&self));
  /* The control port is the isolate's oldest: never closed by a user. */
  TH_CHECK_RC(isola_port_close(self.control_port), ISOLA_EINVAL);
  static const int order[N] = {0, 8, 4, 1, 7, 2, 6, 3, 5};
  for (int k = 0; k < N; k++) {
    isola_port q = p[order[k]];
    TH_CHECK_OK(isola_port_keep_alive(q, false));
    TH_CHECK_OK(isola_port_close(q));
    TH_CHECK_RC(isola_port_close(q), ISOLA_ECLOSED);
    TH_CHECK_RC(isola_send(q, isola_int(k)), ISOLA_ECLOSED);
    /* Every port not yet closed is still open and its own. */
    for (int j = k + 1; j < N; j++)
      TH_CHECK_OK(isola_port_keep_alive(p[order[j]], true));
  }
  atomic_store(&order_ran, 1);
}

Test(port, closing_in_any_order_closes_each_once) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(close_order_entry, isola_null(), NULL));
  cr_assert(atomic_load(&order_ran), "the entry did not run");
  th_vm_shutdown_ok();
}

/* A sender remembers the slot of the port it last sent to (send.c's hint):
 * once that port is closed and its slot reused by another, a send to the
 * old id must still fail, and one to the new port reach the new port. */
static atomic_int hint_p_got, hint_q_got;
static atomic_int hint_ran;

static void count_handler(void *ctx, isola_port port, isola_value msg,
                          isola_port reply_to) {
  (void)port, (void)msg, (void)reply_to;
  atomic_fetch_add((atomic_int *)ctx, 1);
  if (atomic_load(&hint_q_got) == 2) isola_port_close(port);
}

static void hint_entry(isola_value msg) {
  (void)msg;
  isola_port p, q;
  TH_CHECK_OK(isola_port_open(count_handler, &hint_p_got, &p));
  TH_CHECK_OK(isola_send(p, isola_int(1)));
  TH_CHECK_OK(isola_port_close(p)); /* drops the queued message */
  TH_CHECK_OK(isola_port_open(count_handler, &hint_q_got, &q));
  TH_CHECK(q != p);
  TH_CHECK_RC(isola_send(p, isola_int(2)), ISOLA_ECLOSED);
  TH_CHECK_OK(isola_send(q, isola_int(3)));
  TH_CHECK_RC(isola_send(p, isola_int(4)), ISOLA_ECLOSED);
  TH_CHECK_OK(isola_send(q, isola_int(5)));
  atomic_store(&hint_ran, 1);
}

Test(port, a_send_to_a_closed_port_whose_slot_was_reused_fails) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(hint_entry, isola_null(), NULL));
  cr_assert(atomic_load(&hint_ran), "the entry did not finish");
  cr_assert(atomic_load(&hint_p_got) == 0, "the closed port got %d",
            atomic_load(&hint_p_got));
  cr_assert(atomic_load(&hint_q_got) == 2, "the new port got %d of 2",
            atomic_load(&hint_q_got));
  th_vm_shutdown_ok();
}

static void bad_args_entry(isola_value msg) {
  (void)msg;
  isola_port p = 12345;
  TH_CHECK_RC(isola_port_open(NULL, NULL, &p), ISOLA_EINVAL);
  TH_CHECK_RC(isola_port_open(noop_handler, NULL, NULL), ISOLA_EINVAL);
  TH_CHECK_RC(isola_send(ISOLA_PORT_NONE, isola_int(1)), ISOLA_EINVAL);
  TH_CHECK_RC(isola_send_reply(ISOLA_PORT_NONE, isola_int(1), 5),
              ISOLA_EINVAL);
  atomic_store(&basic_ran, 1);
}

Test(port, bad_arguments_give_EINVAL) {
  th_vm_init(NULL);
  TH_ASSERT_RC(isola_send(ISOLA_PORT_NONE, isola_int(1)), ISOLA_EINVAL);
  TH_ASSERT_OK(isola_run_main(bad_args_entry, isola_null(), NULL));
  cr_assert(atomic_load(&basic_ran), "the entry did not run");
  th_vm_shutdown_ok();
}

static atomic_int none_close_rc = 1, none_keep_alive_rc = 1;

static void close_none_entry(isola_value msg) {
  (void)msg;
  atomic_store(&none_close_rc, isola_port_close(ISOLA_PORT_NONE));
  atomic_store(&none_keep_alive_rc,
               isola_port_keep_alive(ISOLA_PORT_NONE, false));
}

/* ISOLA_PORT_NONE is never a port: closing it is closing an unknown port. */
Test(port, closing_port_none_gives_ECLOSED) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(close_none_entry, isola_null(), NULL));
  TH_ASSERT_RC(atomic_load(&none_close_rc), ISOLA_ECLOSED);
  TH_ASSERT_RC(atomic_load(&none_keep_alive_rc), ISOLA_ECLOSED);
  th_vm_shutdown_ok();
}

static uint64_t unknown_seed;

static void unknown_entry(isola_value msg) {
  (void)msg;
  uint64_t rng = unknown_seed;
  for (int i = 0; i < 100; i++) {
    isola_port p = th_rand(&rng) | 1;
    TH_CHECK_RC(isola_send(p, isola_str("to nobody")), ISOLA_ECLOSED);
    TH_CHECK_RC(isola_port_close(p), ISOLA_ECLOSED);
  }
  atomic_store(&basic_ran, 1);
}

Test(port, send_to_a_never_issued_port_gives_ECLOSED) {
  unknown_seed = th_seed("port/never_issued");
  th_vm_init(NULL);
  uint64_t rng = unknown_seed ^ 0xabcdef;
  for (int i = 0; i < 100; i++) /* from a plain thread */
    TH_ASSERT_RC(isola_send(th_rand(&rng) | 1, isola_int(i)), ISOLA_ECLOSED);
  TH_ASSERT_OK(isola_run_main(unknown_entry, isola_null(), NULL));
  cr_assert(atomic_load(&basic_ran), "the entry did not run");
  th_vm_shutdown_ok();
}

Test(port, port_calls_from_a_plain_thread_give_ENOTISOLATE) {
  th_vm_init(NULL);
  isola_port p = 7;
  TH_ASSERT_RC(isola_port_open(noop_handler, NULL, &p), ISOLA_ENOTISOLATE);
  TH_ASSERT_RC(isola_port_close((isola_port)0x5555), ISOLA_ENOTISOLATE);
  TH_ASSERT_RC(isola_port_keep_alive((isola_port)0x5555, false),
               ISOLA_ENOTISOLATE);
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* Invalid values                                                          */
/* ---------------------------------------------------------------------- */

static int invalid_received;

static void invalid_handler(void *ctx, isola_port port, isola_value msg,
                            isola_port reply_to) {
  (void)ctx, (void)reply_to;
  invalid_received++;
  /* Only the valid message arrives. */
  TH_CHECK(th_int(msg) == 42);
  TH_CHECK_OK(isola_port_close(port));
}

static void invalid_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(invalid_handler, NULL, &p));
  isola_value items[2] = {isola_int(1), isola_str("bad \xff utf-8")};
  TH_CHECK_RC(isola_send(p, isola_list(items, 2)), ISOLA_EINVAL);
  isola_value bad = isola_int(3);
  bad.kind = 1000;
  TH_CHECK_RC(isola_send(p, bad), ISOLA_EINVAL);
  TH_CHECK_OK(isola_send(p, isola_int(42)));
}

Test(port, an_invalid_value_is_refused_with_EINVAL_and_not_delivered) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(invalid_entry, isola_null(), NULL));
  cr_assert(invalid_received == 1, "%d messages arrived, expected 1",
            invalid_received);
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* Foreign ports                                                           */
/* ---------------------------------------------------------------------- */

static atomic_int foreign_done;

static void foreign_main_handler(void *ctx, isola_port port, isola_value msg,
                                 isola_port reply_to) {
  (void)ctx, (void)reply_to;
  TH_CHECK(strcmp(th_item_str(msg, 0), "tried") == 0);
  atomic_store(&foreign_done, 1);
  TH_CHECK_OK(isola_port_close(port)); /* still ours */
}

static void foreign_child_entry(isola_value msg) {
  isola_port theirs = th_port(msg);
  TH_CHECK_RC(isola_port_close(theirs), ISOLA_ENOTOWNER);
  TH_CHECK_RC(isola_port_keep_alive(theirs, false), ISOLA_ENOTOWNER);
  isola_value items[1] = {isola_str("tried")};
  TH_CHECK_OK(isola_send(theirs, isola_list(items, 1)));
}

static void foreign_main_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(foreign_main_handler, NULL, &p));
  TH_CHECK_OK(
      isola_spawn(foreign_child_entry, isola_sendport(p), NULL, NULL));
}

Test(port, closing_another_isolates_port_gives_ENOTOWNER) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(foreign_main_entry, isola_null(), NULL));
  cr_assert(atomic_load(&foreign_done), "the child's report never arrived");
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* reply_to                                                                */
/* ---------------------------------------------------------------------- */

struct reply_state {
  isola_port q, r;
  int got;
  int ctx_ok;
};
static struct reply_state reply_st;

static void reply_q_handler(void *ctx, isola_port port, isola_value msg,
                            isola_port reply_to) {
  struct reply_state *st = ctx;
  TH_CHECK(st == &reply_st);
  TH_CHECK(port == st->q);
  int64_t n = th_int(msg);
  TH_CHECK(n == st->got + 1); /* in order */
  if (n == 1) TH_CHECKF(reply_to == st->r, "reply_to not delivered");
  if (n == 2)
    TH_CHECKF(reply_to == ISOLA_PORT_NONE, "isola_send gave a reply_to");
  if (n == 3) TH_CHECKF(reply_to == st->q, "reply_to naming the port itself");
  if (++st->got == 3) {
    TH_CHECK_OK(isola_port_close(st->q));
    TH_CHECK_OK(isola_port_close(st->r));
  }
}

static void reply_entry(isola_value msg) {
  (void)msg;
  TH_CHECK_OK(isola_port_open(reply_q_handler, &reply_st, &reply_st.q));
  TH_CHECK_OK(isola_port_open(noop_handler, NULL, &reply_st.r));
  TH_CHECK_OK(isola_send_reply(reply_st.q, isola_int(1), reply_st.r));
  TH_CHECK_OK(isola_send(reply_st.q, isola_int(2)));
  TH_CHECK_OK(isola_send_reply(reply_st.q, isola_int(3), reply_st.q));
}

Test(port, reply_to_comes_from_send_reply_and_is_NONE_from_send) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(reply_entry, isola_null(), NULL));
  cr_assert(reply_st.got == 3, "%d messages handled, expected 3",
            reply_st.got);
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* A send port inside a message                                            */
/* ---------------------------------------------------------------------- */

static int64_t sendport_answer;

static void sp_child_handler(void *ctx, isola_port port, isola_value msg,
                             isola_port reply_to) {
  (void)ctx, (void)reply_to;
  /* [41, <port to answer on>] */
  int64_t q = th_item_int(msg, 0);
  isola_port answer_to = th_item_port(msg, 1);
  TH_CHECK_OK(isola_send(answer_to, isola_int(q + 1)));
  TH_CHECK_OK(isola_port_close(port));
}

static void sp_child_entry(isola_value msg) {
  /* ["hi", <main's port>] */
  TH_CHECK(strcmp(th_item_str(msg, 0), "hi") == 0);
  isola_port main_port = th_item_port(msg, 1);
  isola_port mine;
  TH_CHECK_OK(isola_port_open(sp_child_handler, NULL, &mine));
  isola_value items[2] = {isola_str("child-port"), isola_sendport(mine)};
  TH_CHECK_OK(isola_send(main_port, isola_list(items, 2)));
}

static void sp_main_handler(void *ctx, isola_port port, isola_value msg,
                            isola_port reply_to) {
  (void)ctx, (void)reply_to;
  if (msg.kind == ISOLA_LIST) {
    TH_CHECK(strcmp(th_item_str(msg, 0), "child-port") == 0);
    isola_port child = th_item_port(msg, 1);
    TH_CHECK(child != ISOLA_PORT_NONE && child != port);
    isola_value items[2] = {isola_int(41), isola_sendport(port)};
    TH_CHECK_OK(isola_send(child, isola_list(items, 2)));
  } else {
    sendport_answer = th_int(msg);
    TH_CHECK_OK(isola_port_close(port));
  }
}

static void sp_main_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(sp_main_handler, NULL, &p));
  isola_value items[2] = {isola_str("hi"), isola_sendport(p)};
  TH_CHECK_OK(isola_spawn(sp_child_entry, isola_list(items, 2), NULL, NULL));
}

Test(port, a_send_port_inside_a_message_lets_the_receiver_reply) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(sp_main_entry, isola_null(), NULL));
  cr_assert(sendport_answer == 42, "answer %lld, expected 42",
            (long long)sendport_answer);
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* The end of an isolate                                                   */
/* ---------------------------------------------------------------------- */

static _Atomic isola_port closer_port;
static th_counter closer_ready = TH_COUNTER_INIT;

static void closer_entry(isola_value msg) {
  (void)msg;
  isola_port a, b;
  TH_CHECK_OK(isola_port_open(noop_handler, NULL, &a));
  TH_CHECK_OK(isola_port_open(close_handler, NULL, &b));
  TH_CHECK_OK(isola_port_close(a)); /* b still keeps the isolate alive */
  atomic_store(&closer_port, b);
  th_counter_add(&closer_ready, 1);
}

Test(port, an_isolate_whose_last_port_closes_ends_and_is_cleaned_up_once) {
  init_with_cleanup_hook();
  isola_spawn_options o = {.name = "closer"};
  TH_ASSERT_OK(isola_spawn(closer_entry, isola_null(), &o, NULL));
  TH_WAIT_GE(&closer_ready, 1);
  cr_assert(cleanup_count("closer") == 0,
            "the isolate ended while a port was open");
  isola_port b = atomic_load(&closer_port);
  TH_ASSERT_OK(isola_send(b, isola_str("close yourself")));
  TH_WAIT_GE(&cleanups, 1);
  cr_assert(cleanup_count("closer") == 1, "cleanup ran %d times",
            cleanup_count("closer"));
  /* Its ports are closed once it is cleaned up. */
  TH_ASSERT_RC(isola_send(b, isola_int(1)), ISOLA_ECLOSED);
  th_vm_shutdown_ok();
  cr_assert(cleanup_count("closer") == 1,
            "cleanup ran %d times by the end of shutdown",
            cleanup_count("closer"));
}

static _Atomic isola_port ka_port[3];
static th_counter ka_ready = TH_COUNTER_INIT;
static th_counter ka_handled = TH_COUNTER_INIT;

static void ka_count_handler(void *ctx, isola_port port, isola_value msg,
                             isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
  th_counter_add(&ka_handled, 1);
}

/* 0: its only port does not keep it alive: it ends after entry. */
static void ka_weak_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(ka_count_handler, NULL, &p));
  TH_CHECK_OK(isola_port_keep_alive(p, false));
  atomic_store(&ka_port[0], p);
  th_counter_add(&ka_ready, 1);
}

/* 1: keep-alive off then on again: it lives until told to close. */
static void ka_toggle_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(close_handler, NULL, &p));
  TH_CHECK_OK(isola_port_keep_alive(p, false));
  TH_CHECK_OK(isola_port_keep_alive(p, true));
  atomic_store(&ka_port[1], p);
  th_counter_add(&ka_ready, 1);
}

Test(port, keep_alive_false_on_the_only_port_lets_the_isolate_end) {
  init_with_cleanup_hook();
  isola_spawn_options o = {.name = "weak"};
  TH_ASSERT_OK(isola_spawn(ka_weak_entry, isola_null(), &o, NULL));
  TH_WAIT_GE(&ka_ready, 1);
  TH_WAIT_GE(&cleanups, 1);
  cr_assert(cleanup_count("weak") == 1, "the weak isolate did not end");
  TH_ASSERT_RC(isola_send(atomic_load(&ka_port[0]), isola_int(1)),
               ISOLA_ECLOSED);
  cr_assert(th_counter_get(&ka_handled) == 0,
            "a message reached the ended isolate");

  /* Off then on again: it stays. */
  isola_spawn_options o1 = {.name = "toggled"};
  TH_ASSERT_OK(isola_spawn(ka_toggle_entry, isola_null(), &o1, NULL));
  TH_WAIT_GE(&ka_ready, 2);
  TH_ASSERT_OK(isola_send(atomic_load(&ka_port[1]), isola_str("close")));
  TH_WAIT_GE(&cleanups, 2);
  cr_assert(cleanup_count("toggled") == 1,
            "the toggled isolate must live until its port closed");
  th_vm_shutdown_ok();
}

/* Mixed: the entry sends its strong port to its own weak port; the weak
 * handler (which counts) then closes the strong port; nothing keeps the
 * isolate any more, so it ends. */
static void ka_mixed_weak_handler(void *ctx, isola_port port,
                                  isola_value msg, isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  th_counter_add(&ka_handled, 1);
  TH_CHECK_OK(isola_port_close(th_port(msg)));
}

static void ka_mixed2_entry(isola_value msg) {
  (void)msg;
  isola_port strong, weak;
  TH_CHECK_OK(isola_port_open(noop_handler, NULL, &strong));
  TH_CHECK_OK(isola_port_open(ka_mixed_weak_handler, NULL, &weak));
  TH_CHECK_OK(isola_port_keep_alive(weak, false));
  atomic_store(&ka_port[2], weak);
  th_counter_add(&ka_ready, 1);
  TH_CHECK_OK(isola_send(weak, isola_sendport(strong)));
}

Test(port, a_port_without_keep_alive_still_receives_while_another_keeps) {
  init_with_cleanup_hook();
  isola_spawn_options o = {.name = "mixed"};
  TH_ASSERT_OK(isola_spawn(ka_mixed2_entry, isola_null(), &o, NULL));
  TH_WAIT_GE(&ka_ready, 1);
  TH_WAIT_GE(&ka_handled, 1);
  TH_WAIT_GE(&cleanups, 1);
  cr_assert(cleanup_count("mixed") == 1, "the mixed isolate did not end");
  TH_ASSERT_RC(isola_send(atomic_load(&ka_port[2]), isola_int(1)),
               ISOLA_ECLOSED);
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* Port ids                                                                */
/* ---------------------------------------------------------------------- */

#define NPORTS 10000
static isola_port ids[2][NPORTS];
static atomic_int ids_ok;

static int cmp_port(const void *a, const void *b) {
  isola_port x = *(const isola_port *)a, y = *(const isola_port *)b;
  return x < y ? -1 : x > y;
}

static void ids_entry(isola_value msg) {
  (void)msg;
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < NPORTS; i++) {
      TH_CHECK_OK(isola_port_open(noop_handler, NULL, &ids[round][i]));
      TH_CHECK(ids[round][i] != ISOLA_PORT_NONE);
    }
    for (int i = 0; i < NPORTS; i++) TH_CHECK_OK(isola_port_close(ids[round][i]));
    qsort(ids[round], NPORTS, sizeof(isola_port), cmp_port);
    for (int i = 1; i < NPORTS; i++)
      TH_CHECKF(ids[round][i] != ids[round][i - 1],
                "port id %llx handed out twice",
                (unsigned long long)ids[round][i]);
  }
  /* Ids of closed ports are not handed out again. */
  for (int i = 0; i < NPORTS; i++)
    TH_CHECKF(!bsearch(&ids[1][i], ids[0], NPORTS, sizeof(isola_port),
                       cmp_port),
              "closed port id %llx reused", (unsigned long long)ids[1][i]);
  /* Not sequential: the ids spread over the 64 bits. */
  uint64_t or_bits = 0, and_bits = ~0ull;
  for (int i = 0; i < NPORTS; i++) {
    or_bits |= ids[0][i];
    and_bits &= ids[0][i];
  }
  TH_CHECKF(or_bits >> 60 != 0 && (and_bits & 0xffff) == 0,
            "port ids look guessable (or %llx, and %llx)",
            (unsigned long long)or_bits, (unsigned long long)and_bits);
  atomic_store(&ids_ok, 1);
}

Test(port, port_ids_are_distinct_nonzero_and_not_reused) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(ids_entry, isola_null(), NULL));
  cr_assert(atomic_load(&ids_ok), "the entry did not finish");
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* Every kind of value through a port                                      */
/* ---------------------------------------------------------------------- */

#define NKINDS 12
static isola_value kinds_expected[NKINDS]; /* copies, made before sending */
static int kinds_got;

static void kinds_handler(void *ctx, isola_port port, isola_value msg,
                          isola_port reply_to) {
  (void)ctx, (void)reply_to;
  int k = kinds_got++;
  TH_CHECK(k < NKINDS);
  TH_CHECKF(isola_value_equal(msg, kinds_expected[k]),
            "message %d arrived different", k);
  if (msg.kind == ISOLA_STRING) {
    const char *s;
    size_t len;
    TH_CHECK_OK(isola_value_get_str(msg, &s, &len));
    TH_CHECKF(s[len] == '\0', "a received string is not NUL-terminated");
  }
  if (k == NKINDS - 3) { /* [shared, shared] */
    TH_CHECKF(msg.as.items[0].as.items == msg.as.items[1].as.items,
              "a list sent twice in one message arrived as two lists");
  }
  if (k == NKINDS - 2) { /* a list that contains itself */
    TH_CHECKF(msg.as.items[1].as.items == msg.as.items,
              "a self-containing list did not arrive as a cycle");
  }
  if (kinds_got == NKINDS) TH_CHECK_OK(isola_port_close(port));
}

static void kinds_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(kinds_handler, NULL, &p));
  char buf[32] = "overwritten after send";
  isola_value shared_items[2] = {isola_int(5), isola_str("s")};
  isola_value pair[2] = {isola_list(shared_items, 2),
                         isola_list(shared_items, 2)};
  isola_value cyc[2];
  cyc[0] = isola_str("cycle");
  cyc[1] = isola_list(cyc, 2);
  isola_value v[NKINDS] = {
      isola_null(),
      isola_bool(true),
      isola_int(-123456789012345),
      isola_double(2.718281828),
      isola_str(buf),
      isola_str(""),
      isola_bytes("\0\1\2\3", 4),
      isola_sendport(p),
      isola_list(NULL, 0),
      isola_list(pair, 2),
      isola_list(cyc, 2),
      isola_str("\xe2\x82\xac last"),
  };
  for (int k = 0; k < NKINDS; k++) {
    TH_CHECK_OK(isola_value_copy(v[k], &kinds_expected[k]));
    TH_CHECK_OK(isola_send(p, v[k]));
    /* The sender may change its memory right after the call. */
    if (k == 4) memset(buf, 'X', sizeof buf - 1);
    if (k == 9) shared_items[0] = isola_int(-1);
  }
}

Test(port, every_kind_of_value_arrives_equal_with_sharing_and_cycles) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(kinds_entry, isola_null(), NULL));
  cr_assert(kinds_got == NKINDS, "%d of %d messages arrived", kinds_got,
            NKINDS);
  for (int k = 0; k < NKINDS; k++) isola_value_free(&kinds_expected[k]);
  th_vm_shutdown_ok();
}
