/* SPDX-License-Identifier: MIT */
/*
 * The scheduler: an isolate never runs on two threads at once, a busy pair
 * does not starve a third isolate, isola_blocking_begin/end lets a stand-in
 * worker run other isolates while a handler blocks.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "helpers.h"

TestSuite(scheduler, .timeout = TH_TEST_TIMEOUT_S);

/* ---------------------------------------------------------------------- */
/* Mutual exclusion                                                        */
/* ---------------------------------------------------------------------- */

#define MX_TARGETS 8
#define MX_SENDERS 8
#define MX_N TH_SIZE(20000) /* messages per sender */

struct mx_target {
  atomic_int busy; /* 1 while a handler of this isolate runs */
  long counter;    /* plain: only this isolate's handlers touch it */
  int fins;        /* idem */
  isola_port main_port;
};
static struct mx_target mx_targets[MX_TARGETS];
static _Atomic isola_port mx_ports[MX_TARGETS];
static long mx_counts[MX_TARGETS];
static int mx_reports, mx_ready;

static void mx_target_handler(void *ctx, isola_port port, isola_value msg,
                              isola_port reply_to) {
  (void)reply_to;
  struct mx_target *t = ctx;
  TH_CHECKF(atomic_exchange(&t->busy, 1) == 0,
            "two handlers of one isolate run at once");
  if (msg.kind == ISOLA_STRING) { /* "fin" from a sender */
    if (++t->fins == MX_SENDERS) {
      isola_value items[2] = {isola_int(t - mx_targets),
                              isola_int(t->counter)};
      TH_CHECK_OK(isola_send(t->main_port, isola_list(items, 2)));
      TH_CHECK_OK(isola_port_close(port));
    }
  } else {
    long before = t->counter;
    /* A little work inside the critical section widens the window. */
    for (volatile int i = 0; i < 50; i++) {
    }
    t->counter = before + 1;
  }
  atomic_store(&t->busy, 0);
}

static void mx_target_entry(isola_value msg) {
  /* [main port, index] */
  int64_t i = th_item_int(msg, 1);
  struct mx_target *t = &mx_targets[i];
  t->main_port = th_item_port(msg, 0);
  isola_port p;
  TH_CHECK_OK(isola_port_open(mx_target_handler, t, &p));
  atomic_store(&mx_ports[i], p);
  isola_value items[2] = {isola_str("ready"), isola_int(i)};
  TH_CHECK_OK(isola_send(t->main_port, isola_list(items, 2)));
}

static void mx_sender_entry(isola_value msg) {
  uint64_t rng = (uint64_t)th_int(msg) * 0x9E3779B97F4A7C15ull + 1;
  isola_port ports[MX_TARGETS];
  for (int i = 0; i < MX_TARGETS; i++) ports[i] = atomic_load(&mx_ports[i]);
  for (int n = 0; n < MX_N; n++)
    TH_CHECK_OK(isola_send(ports[th_rand_below(&rng, MX_TARGETS)],
                           isola_int(n)));
  for (int i = 0; i < MX_TARGETS; i++)
    TH_CHECK_OK(isola_send(ports[i], isola_str("fin")));
}

static void mx_main_handler(void *ctx, isola_port port, isola_value msg,
                            isola_port reply_to) {
  (void)ctx, (void)reply_to;
  isola_value first;
  TH_CHECK_OK(isola_list_get(msg, 0, &first));
  if (first.kind == ISOLA_STRING) { /* a target is ready */
    if (++mx_ready == MX_TARGETS)
      for (int s = 0; s < MX_SENDERS; s++)
        TH_CHECK_OK(isola_spawn(mx_sender_entry, isola_int(s), NULL, NULL));
    return;
  }
  mx_counts[th_int(first)] = (long)th_item_int(msg, 1);
  if (++mx_reports == MX_TARGETS) TH_CHECK_OK(isola_port_close(port));
}

static void mx_main_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(mx_main_handler, NULL, &p));
  for (int i = 0; i < MX_TARGETS; i++) {
    isola_value items[2] = {isola_sendport(p), isola_int(i)};
    TH_CHECK_OK(isola_spawn(mx_target_entry, isola_list(items, 2), NULL,
                            NULL));
  }
}

Test(scheduler, an_isolate_never_runs_on_two_threads_at_once) {
  isola_config c;
  isola_config_init(&c);
  c.workers = 4;
  th_vm_init(&c);
  TH_ASSERT_OK(isola_run_main(mx_main_entry, isola_null(), NULL));
  long total = 0;
  for (int i = 0; i < MX_TARGETS; i++) total += mx_counts[i];
  cr_assert(total == (long)MX_SENDERS * MX_N,
            "targets counted %ld messages, %ld were sent (lost updates?)",
            total, (long)MX_SENDERS * MX_N);
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* Fairness                                                                */
/* ---------------------------------------------------------------------- */

/*
 * Two isolates A and B bounce a ball forever; each bounce readies the other
 * on the same worker, the case a naive "run next" slot starves everyone
 * else with.  A third isolate C is spawned while they bounce and must get
 * its entry and one message handled; only then does main tell A and B to
 * stop.  No timing: the test fails only by its timeout.
 */
static atomic_long bounces;
static long bounces_when_c_answered;
static int fair_exits;
static isola_port fair_a, fair_b, fair_c;

static void bounce_handler(void *ctx, isola_port port, isola_value msg,
                           isola_port reply_to) {
  (void)ctx;
  if (msg.kind == ISOLA_STRING) { /* "stop" */
    TH_CHECK_OK(isola_port_close(port));
    return;
  }
  atomic_fetch_add(&bounces, 1);
  /* The peer may have stopped already: ECLOSED then. */
  int rc = isola_send_reply(reply_to, msg, port);
  TH_CHECKF(rc == ISOLA_OK || rc == ISOLA_ECLOSED, "bounce: %s",
            isola_err_name(rc));
}

static void a_entry(isola_value msg) {
  isola_port main_port = th_port(msg);
  isola_port a;
  TH_CHECK_OK(isola_port_open(bounce_handler, NULL, &a));
  isola_value items[2] = {isola_str("a"), isola_sendport(a)};
  TH_CHECK_OK(isola_send(main_port, isola_list(items, 2)));
}

static void b_entry(isola_value msg) {
  /* [main port, a's port] */
  isola_port main_port = th_item_port(msg, 0);
  isola_port a = th_item_port(msg, 1);
  isola_port b;
  TH_CHECK_OK(isola_port_open(bounce_handler, NULL, &b));
  TH_CHECK_OK(isola_send_reply(a, isola_int(0), b)); /* serve */
  isola_value items[2] = {isola_str("b"), isola_sendport(b)};
  TH_CHECK_OK(isola_send(main_port, isola_list(items, 2)));
}

static void c_handler(void *ctx, isola_port port, isola_value msg,
                      isola_port reply_to) {
  (void)ctx, (void)msg;
  isola_value items[2] = {isola_str("pong"), isola_sendport(port)};
  TH_CHECK_OK(isola_send(reply_to, isola_list(items, 2)));
  TH_CHECK_OK(isola_port_close(port));
}

static void c_entry(isola_value msg) {
  isola_port main_port = th_port(msg);
  isola_port c;
  TH_CHECK_OK(isola_port_open(c_handler, NULL, &c));
  isola_value items[2] = {isola_str("c"), isola_sendport(c)};
  TH_CHECK_OK(isola_send(main_port, isola_list(items, 2)));
}

static void fair_main_handler(void *ctx, isola_port port, isola_value msg,
                              isola_port reply_to) {
  (void)ctx, (void)reply_to;
  const char *what = th_item_str(msg, 0);
  if (strcmp(what, "exit") == 0) {
    if (++fair_exits == 3) TH_CHECK_OK(isola_port_close(port));
    return;
  }
  isola_port who = th_item_port(msg, 1);
  isola_value exit_msg[1] = {isola_str("exit")};
  isola_spawn_options o = {.on_exit = port,
                           .on_exit_message = isola_list(exit_msg, 1)};
  if (strcmp(what, "a") == 0) {
    fair_a = who;
    isola_value items[2] = {isola_sendport(port), isola_sendport(fair_a)};
    o.name = "bouncer-b";
    TH_CHECK_OK(isola_spawn(b_entry, isola_list(items, 2), &o, NULL));
  } else if (strcmp(what, "b") == 0) {
    /* The ball is in play: now the third isolate. */
    fair_b = who;
    o.name = "third";
    TH_CHECK_OK(isola_spawn(c_entry, isola_sendport(port), &o, NULL));
  } else if (strcmp(what, "c") == 0) {
    fair_c = who;
    TH_CHECK_OK(isola_send_reply(fair_c, isola_str("ping"), port));
  } else if (strcmp(what, "pong") == 0) {
    bounces_when_c_answered = atomic_load(&bounces);
    TH_CHECK_OK(isola_send(fair_a, isola_str("stop")));
    TH_CHECK_OK(isola_send(fair_b, isola_str("stop")));
  } else {
    th_check_failed(__FILE__, __LINE__, "unexpected \"%s\"", what);
  }
}

static void fair_main_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(fair_main_handler, NULL, &p));
  isola_value exit_msg[1] = {isola_str("exit")};
  isola_spawn_options o = {.name = "bouncer-a",
                           .on_exit = p,
                           .on_exit_message = isola_list(exit_msg, 1)};
  TH_CHECK_OK(isola_spawn(a_entry, isola_sendport(p), &o, NULL));
}

static void run_fairness(unsigned workers) {
  isola_config c;
  isola_config_init(&c);
  c.workers = workers;
  th_vm_init(&c);
  TH_ASSERT_OK(isola_run_main(fair_main_entry, isola_null(), "fair-main"));
  cr_assert(fair_exits == 3, "%d isolates ended, expected 3", fair_exits);
  cr_log_info("%u worker(s): the pair had bounced %ld times when the third "
              "answered",
              workers, bounces_when_c_answered);
  th_vm_shutdown_ok();
}

Test(scheduler, a_bouncing_pair_does_not_starve_a_third_isolate_1_worker) {
  run_fairness(1);
}

Test(scheduler, a_bouncing_pair_does_not_starve_a_third_isolate_2_workers) {
  run_fairness(2);
}

/* ---------------------------------------------------------------------- */
/* Blocking                                                                */
/* ---------------------------------------------------------------------- */

static th_counter signalled = TH_COUNTER_INIT;
static th_counter blk_ready = TH_COUNTER_INIT;
static th_counter blk_done = TH_COUNTER_INIT;
static _Atomic isola_port blk_signaller, blk_waiter;

static void signaller_handler(void *ctx, isola_port port, isola_value msg,
                              isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  th_counter_add(&signalled, 1);
  TH_CHECK_OK(isola_port_close(port));
}

static void signaller_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(signaller_handler, NULL, &p));
  atomic_store(&blk_signaller, p);
  th_counter_add(&blk_ready, 1);
}

static void waiter_handler(void *ctx, isola_port port, isola_value msg,
                           isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  TH_CHECK_OK(isola_blocking_begin());
  TH_CHECK_OK(isola_send(atomic_load(&blk_signaller), isola_str("signal")));
  /* Only the signaller can end this wait.  With one worker and no
   * stand-in it never runs: the check below then fails after TH_WAIT_MS. */
  if (!th_counter_wait_ge(&signalled, 1, TH_WAIT_MS))
    th_check_failed(__FILE__, __LINE__,
                    "deadlock: the signaller never ran while this handler "
                    "was blocked (no stand-in worker)");
  TH_CHECK_OK(isola_blocking_end());
  TH_CHECK_OK(isola_port_close(port));
  th_counter_add(&blk_done, 1);
}

static void waiter_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(waiter_handler, NULL, &p));
  atomic_store(&blk_waiter, p);
  th_counter_add(&blk_ready, 1);
}

Test(scheduler, blocking_begin_lets_other_isolates_run_with_1_worker) {
  isola_config c;
  isola_config_init(&c);
  c.workers = 1;
  th_vm_init(&c);
  TH_ASSERT_OK(isola_spawn(signaller_entry, isola_null(), NULL, NULL));
  TH_ASSERT_OK(isola_spawn(waiter_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&blk_ready, 2);
  TH_ASSERT_OK(isola_send(atomic_load(&blk_waiter), isola_str("go")));
  TH_WAIT_GE(&blk_done, 1);
  th_vm_shutdown_ok();
}

/* Several handlers blocked at once, each needing a stand-in, released only
 * by an isolate that counts them all. */
#define MANY_BLOCKED 4
static th_counter release = TH_COUNTER_INIT;
static th_counter mb_ready = TH_COUNTER_INIT;
static th_counter mb_done = TH_COUNTER_INIT;
static _Atomic isola_port mb_counter_port;
static _Atomic isola_port mb_waiters[MANY_BLOCKED];

static void mb_counter_handler(void *ctx, isola_port port, isola_value msg,
                               isola_port reply_to) {
  (void)msg, (void)reply_to;
  int *blocked = ctx;
  if (++*blocked == MANY_BLOCKED) {
    th_counter_add(&release, 1);
    TH_CHECK_OK(isola_port_close(port));
  }
}

static int mb_blocked;

static void mb_counter_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(mb_counter_handler, &mb_blocked, &p));
  atomic_store(&mb_counter_port, p);
  th_counter_add(&mb_ready, 1);
}

static void mb_waiter_handler(void *ctx, isola_port port, isola_value msg,
                              isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  TH_CHECK_OK(isola_blocking_begin());
  TH_CHECK_OK(isola_send(atomic_load(&mb_counter_port), isola_int(1)));
  if (!th_counter_wait_ge(&release, 1, TH_WAIT_MS))
    th_check_failed(__FILE__, __LINE__,
                    "deadlock: %d handlers blocked and the isolate that "
                    "releases them never ran",
                    MANY_BLOCKED);
  TH_CHECK_OK(isola_blocking_end());
  TH_CHECK_OK(isola_port_close(port));
  th_counter_add(&mb_done, 1);
}

static void mb_waiter_entry(isola_value msg) {
  isola_port p;
  TH_CHECK_OK(isola_port_open(mb_waiter_handler, NULL, &p));
  atomic_store(&mb_waiters[th_int(msg)], p);
  th_counter_add(&mb_ready, 1);
}

Test(scheduler, many_blocked_handlers_each_get_a_stand_in) {
  isola_config c;
  isola_config_init(&c);
  c.workers = 1;
  th_vm_init(&c);
  TH_ASSERT_OK(isola_spawn(mb_counter_entry, isola_null(), NULL, NULL));
  for (int i = 0; i < MANY_BLOCKED; i++)
    TH_ASSERT_OK(isola_spawn(mb_waiter_entry, isola_int(i), NULL, NULL));
  TH_WAIT_GE(&mb_ready, 1 + MANY_BLOCKED);
  for (int i = 0; i < MANY_BLOCKED; i++)
    TH_ASSERT_OK(isola_send(atomic_load(&mb_waiters[i]), isola_str("go")));
  TH_WAIT_GE(&mb_done, MANY_BLOCKED);
  th_vm_shutdown_ok();
}

static atomic_int nest_ok;

static void nest_entry(isola_value msg) {
  (void)msg;
  TH_CHECK_RC(isola_blocking_end(), ISOLA_EINVAL); /* no begin yet */
  TH_CHECK_OK(isola_blocking_begin());
  TH_CHECK_OK(isola_blocking_begin()); /* calls nest */
  TH_CHECK_OK(isola_blocking_end());
  TH_CHECK_OK(isola_blocking_end());
  TH_CHECK_RC(isola_blocking_end(), ISOLA_EINVAL); /* one too many */
  /* The isolate still works after all that. */
  isola_port p;
  TH_CHECK_OK(isola_port_open(signaller_handler, NULL, &p));
  TH_CHECK_OK(isola_send(p, isola_null()));
  atomic_store(&nest_ok, 1);
}

Test(scheduler, blocking_calls_nest_and_end_without_begin_gives_EINVAL) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_spawn(nest_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&signalled, 1);
  cr_assert(atomic_load(&nest_ok), "the entry did not finish");
  /* Also from isola_run_main's thread. */
  TH_ASSERT_OK(isola_run_main(nest_entry, isola_null(), NULL));
  TH_WAIT_GE(&signalled, 2);
  th_vm_shutdown_ok();
}

Test(scheduler, blocking_calls_from_a_plain_thread_give_ENOTISOLATE) {
  TH_ASSERT_RC(isola_blocking_begin(), ISOLA_ENOTISOLATE); /* no VM */
  TH_ASSERT_RC(isola_blocking_end(), ISOLA_ENOTISOLATE);
  th_vm_init(NULL);
  TH_ASSERT_RC(isola_blocking_begin(), ISOLA_ENOTISOLATE);
  TH_ASSERT_RC(isola_blocking_end(), ISOLA_ENOTISOLATE);
  th_vm_shutdown_ok();
}
