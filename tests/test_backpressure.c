/* SPDX-License-Identifier: MIT */
/* Backpressure (issue 14 item 1): mailbox bounds, muting of isolate
 * senders, plain threads' isola_try_send and isola_send_wait, control
 * requests while muted, kills and shutdown with muted isolates. */
#include "helpers.h"

/* ---- the cast --------------------------------------------------------- */

/* C, the consumer: counts what it gets; checks each producer's order. */
static _Atomic isola_port c_port;
static th_counter c_got = TH_COUNTER_INIT;
static _Atomic int64_t c_last[4];

static void c_handler(void *ctx, isola_port port, isola_value msg,
                      isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  if (msg.kind == ISOLA_LIST) { /* [producer, seq] */
    int64_t who = th_item_int(msg, 0), seq = th_item_int(msg, 1);
    TH_CHECKF(seq == atomic_load(&c_last[who]) + 1,
              "producer %lld: %lld after %lld", (long long)who,
              (long long)seq, (long long)atomic_load(&c_last[who]));
    atomic_store(&c_last[who], seq);
  }
  th_counter_add(&c_got, 1);
}

static void c_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(c_handler, NULL, &p));
  atomic_store(&c_port, p);
}

/* Spawns C with a bound of bound messages, paused unless running. */
static isola_isolate spawn_c(size_t bound, bool paused) {
  for (int i = 0; i < 4; i++) atomic_store(&c_last[i], 0);
  isola_spawn_options o = {0};
  o.on_exit = ISOLA_PORT_NONE;
  o.on_error = ISOLA_PORT_NONE;
  o.mailbox_bound = bound;
  o.paused = true;
  isola_isolate h;
  atomic_store(&c_port, ISOLA_PORT_NONE);
  TH_ASSERT_OK(isola_spawn(c_entry, isola_null(), &o, &h));
  /* Let the entry run (opens the port), then hold it if asked. */
  TH_ASSERT_OK(isola_resume(&h, h.pause_capability));
  for (long t = 0; atomic_load(&c_port) == ISOLA_PORT_NONE; t++)
    cr_assert(th_counter_wait_ge(&c_got, 0, 1) && t < 100000000,
              "C did not start");
  if (paused) TH_ASSERT_OK(isola_pause(&h, h.pause_capability));
  return h;
}

/* P, a producer: [0, n] sends n messages to C in one event; [1]: a tick. */
static _Atomic isola_port p_port;
static th_counter p_go = TH_COUNTER_INIT, p_tick = TH_COUNTER_INIT;
static th_counter p_fill = TH_COUNTER_INIT;

static void p_handler(void *ctx, isola_port port, isola_value msg,
                      isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  static int64_t seq; /* P runs on one thread at a time */
  if (th_item_int(msg, 0) == 2) {
    /* [2, n]: first wait (blocking) until the test filled P's queue. */
    TH_CHECK_OK(isola_blocking_begin());
    TH_CHECK_WAIT_GE(&p_fill, 1);
    TH_CHECK_OK(isola_blocking_end());
  }
  if (th_item_int(msg, 0) != 1) {
    int64_t n = th_item_int(msg, 1);
    for (int64_t i = 0; i < n; i++) {
      isola_value it[2] = {isola_int(1), isola_int(++seq)};
      TH_CHECK_OK(isola_send(atomic_load(&c_port), isola_list(it, 2)));
    }
    /* The event goes on after sends to a full receiver. */
    th_counter_add(&p_go, 1);
  } else {
    th_counter_add(&p_tick, 1);
  }
}

static void p_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(p_handler, NULL, &p));
  atomic_store(&p_port, p);
}

static isola_isolate spawn_pb(isola_port on_exit, size_t bound) {
  isola_spawn_options o = {0};
  o.mailbox_bound = bound;
  o.on_exit = on_exit;
  o.on_exit_message = isola_int(99);
  o.on_error = ISOLA_PORT_NONE;
  o.paused = true;
  isola_isolate h;
  atomic_store(&p_port, ISOLA_PORT_NONE);
  TH_ASSERT_OK(isola_spawn(p_entry, isola_null(), &o, &h));
  TH_ASSERT_OK(isola_resume(&h, h.pause_capability));
  while (atomic_load(&p_port) == ISOLA_PORT_NONE) th_counter_wait_ge(&p_go, 0, 1);
  return h;
}

static isola_isolate spawn_p(isola_port on_exit) {
  return spawn_pb(on_exit, 0);
}

static void p_send(int64_t a, int64_t b) {
  isola_value it[2] = {isola_int(a), isola_int(b)};
  TH_ASSERT_OK(isola_send(atomic_load(&p_port), isola_list(it, 2)));
}

/* Pong: counts ping responses and exit messages. */
static _Atomic isola_port pong_port;
static th_counter pong = TH_COUNTER_INIT;
static void pong_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
  th_counter_add(&pong, 1);
}
static void pong_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(pong_handler, NULL, &p));
  atomic_store(&pong_port, p);
  th_counter_add(&pong, 1);
}
static void start_pong(void) {
  TH_ASSERT_OK(isola_spawn(pong_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&pong, 1);
}

/* Pings h twice, in turn: once the second is answered, a normal message
 * queued for h before the first would have been handled had h not been
 * held back (the turn that answers the first goes on to it). */
static void ping_twice(const isola_isolate *h, isola_priority pri) {
  for (int i = 0; i < 2; i++) {
    long before = th_counter_get(&pong);
    TH_ASSERT_OK(isola_ping(h, atomic_load(&pong_port), isola_int(1), pri));
    TH_WAIT_GE(&pong, before + 1);
  }
}

/* P floods C (paused, bound 8) with 20 messages and is muted. */
static void mute_p(void) {
  p_send(0, 20);
  TH_WAIT_GE(&p_go, 1);
  p_send(1, 0); /* the tick, held back while P is muted */
}

static void init(void) {
  th_counter_init(&c_got);
  th_counter_init(&p_go);
  th_counter_init(&p_tick);
  th_counter_init(&p_fill);
  th_counter_init(&pong);
  th_vm_init(NULL);
  start_pong();
}

/* ---- tests ------------------------------------------------------------ */

Test(backpressure, a_sender_to_a_full_receiver_is_muted_until_it_drains) {
  init();
  isola_isolate c = spawn_c(8, true);
  isola_isolate p = spawn_p(ISOLA_PORT_NONE);
  (void)p;
  mute_p();
  ping_twice(&p, ISOLA_IMMEDIATE);
  cr_assert(th_counter_get(&p_tick) == 0, "a muted isolate handled a message");
  cr_assert((th_counter_get(&c_got)) == 0, "th_counter_get(&c_got)");
  /* C drains to its low-water mark (4): P is released, nothing lost. */
  TH_ASSERT_OK(isola_resume(&c, c.pause_capability));
  TH_WAIT_GE(&p_tick, 1);
  TH_WAIT_GE(&c_got, 20);
  cr_assert((atomic_load(&c_last[1])) == 20, "atomic_load(&c_last[1])");
  /* Muted again and released again. */
  TH_ASSERT_OK(isola_pause(&c, c.pause_capability));
  p_send(0, 20);
  TH_WAIT_GE(&p_go, 2);
  p_send(1, 0);
  ping_twice(&p, ISOLA_IMMEDIATE);
  cr_assert((th_counter_get(&p_tick)) == 1, "th_counter_get(&p_tick)");
  TH_ASSERT_OK(isola_resume(&c, c.pause_capability));
  TH_WAIT_GE(&p_tick, 2);
  TH_WAIT_GE(&c_got, 40);
  cr_assert((atomic_load(&c_last[1])) == 40, "atomic_load(&c_last[1])");
  th_vm_shutdown_ok();
}

Test(backpressure, an_unbounded_receiver_mutes_nobody) {
  init();
  isola_isolate c = spawn_c(0, true);
  isola_isolate p = spawn_p(ISOLA_PORT_NONE);
  (void)p;
  mute_p();
  TH_WAIT_GE(&p_tick, 1);
  TH_ASSERT_OK(isola_resume(&c, c.pause_capability));
  TH_WAIT_GE(&c_got, 20);
  th_vm_shutdown_ok();
}

Test(backpressure, a_muted_isolate_handles_control_requests) {
  init();
  isola_isolate c = spawn_c(8, true);
  isola_isolate p = spawn_p(atomic_load(&pong_port));
  mute_p();
  /* Pings of both priorities are answered while muted. */
  ping_twice(&p, ISOLA_IMMEDIATE);
  ping_twice(&p, ISOLA_BEFORE_NEXT_EVENT);
  cr_assert((th_counter_get(&p_tick)) == 0, "th_counter_get(&p_tick)");
  /* Paused and muted: released by C, it still waits for its resume. */
  isola_capability r = isola_capability_new();
  TH_ASSERT_OK(isola_pause(&p, r));
  ping_twice(&p, ISOLA_IMMEDIATE);
  TH_ASSERT_OK(isola_resume(&c, c.pause_capability));
  TH_WAIT_GE(&c_got, 20);
  ping_twice(&p, ISOLA_IMMEDIATE);
  cr_assert(th_counter_get(&p_tick) == 0, "a paused isolate ran");
  TH_ASSERT_OK(isola_resume(&p, r));
  TH_WAIT_GE(&p_tick, 1);
  /* Muted again, then killed before its next event (which muting holds
   * back): it ends without being released. */
  TH_ASSERT_OK(isola_pause(&c, c.pause_capability));
  p_send(0, 20);
  TH_WAIT_GE(&p_go, 2);
  long before = th_counter_get(&pong);
  TH_ASSERT_OK(isola_kill(&p, ISOLA_BEFORE_NEXT_EVENT));
  TH_WAIT_GE(&pong, before + 1); /* its exit message */
  TH_ASSERT_OK(isola_resume(&c, c.pause_capability));
  TH_WAIT_GE(&c_got, 40);
  th_vm_shutdown_ok();
}

Test(backpressure, killing_a_full_receiver_releases_its_muted_senders) {
  init();
  isola_isolate c = spawn_c(8, true);
  isola_isolate p = spawn_p(ISOLA_PORT_NONE);
  (void)p;
  mute_p();
  ping_twice(&p, ISOLA_IMMEDIATE);
  cr_assert((th_counter_get(&p_tick)) == 0, "th_counter_get(&p_tick)");
  TH_ASSERT_OK(isola_kill(&c, ISOLA_IMMEDIATE));
  TH_WAIT_GE(&p_tick, 1);
  th_vm_shutdown_ok(); /* and nothing leaked */
}

Test(backpressure, shutdown_ends_muted_isolates) {
  init();
  spawn_c(8, true);
  spawn_p(ISOLA_PORT_NONE);
  mute_p();
  th_vm_shutdown_ok();
}

/* ---- plain threads ----------------------------------------------------- */

struct waiter {
  pthread_t t;
  int rc;
  int64_t seq;
  uint64_t timeout_ms;
};

static void *wait_send(void *arg) {
  struct waiter *w = arg;
  isola_value it[2] = {isola_int(2), isola_int(w->seq)};
  w->rc = isola_send_wait(atomic_load(&c_port), isola_list(it, 2),
                          w->timeout_ms);
  return NULL;
}

Test(backpressure, plain_threads_try_wait_or_send_unbounded) {
  init();
  isola_isolate c = spawn_c(4, true);
  isola_value it[2] = {isola_int(2), isola_int(0)};
  for (int i = 1; i <= 4; i++) {
    it[1] = isola_int(i);
    TH_ASSERT_OK(isola_try_send(atomic_load(&c_port), isola_list(it, 2)));
  }
  it[1] = isola_int(5);
  TH_ASSERT_RC(isola_try_send(atomic_load(&c_port), isola_list(it, 2)),
               ISOLA_EFULL);
  TH_ASSERT_RC(isola_send_wait(atomic_load(&c_port), isola_list(it, 2), 0),
               ISOLA_ETIMEDOUT);
  TH_ASSERT_RC(isola_send_wait(atomic_load(&c_port), isola_list(it, 2), 20),
               ISOLA_ETIMEDOUT);
  /* Plain isola_send is not held back. */
  TH_ASSERT_OK(isola_send(atomic_load(&c_port), isola_list(it, 2)));
  /* A waiting thread goes once C drains. */
  struct waiter w = {.seq = 6, .timeout_ms = (uint64_t)TH_WAIT_MS};
  cr_assert(pthread_create(&w.t, NULL, wait_send, &w) == 0, "pthread_create");
  TH_ASSERT_OK(isola_resume(&c, c.pause_capability));
  pthread_join(w.t, NULL);
  TH_ASSERT_OK(w.rc);
  TH_WAIT_GE(&c_got, 6);
  cr_assert((atomic_load(&c_last[2])) == 6, "atomic_load(&c_last[2])");
  /* A thread waiting on a receiver that is killed gets ISOLA_ECLOSED. */
  TH_ASSERT_OK(isola_pause(&c, c.pause_capability));
  for (int i = 7; i <= 10; i++) {
    it[1] = isola_int(i);
    TH_ASSERT_OK(isola_try_send(atomic_load(&c_port), isola_list(it, 2)));
  }
  struct waiter w2 = {.seq = 11, .timeout_ms = ISOLA_FOREVER};
  cr_assert(pthread_create(&w2.t, NULL, wait_send, &w2) == 0, "pthread_create");
  /* A send that finds the receiver gone also answers ECLOSED: either way
   * the waiter does not stay. */
  TH_ASSERT_OK(isola_kill(&c, ISOLA_IMMEDIATE));
  pthread_join(w2.t, NULL);
  TH_ASSERT_RC(w2.rc, ISOLA_ECLOSED);
  th_vm_shutdown_ok();
}

Test(backpressure, the_heap_limit_still_caps_queued_bytes) {
  init();
  isola_spawn_options o = {0};
  o.on_exit = o.on_error = ISOLA_PORT_NONE;
  o.mailbox_bound = 100000;
  o.heap_limit = 64 * 1024;
  o.paused = true;
  isola_isolate h;
  atomic_store(&c_port, ISOLA_PORT_NONE);
  TH_ASSERT_OK(isola_spawn(c_entry, isola_null(), &o, &h));
  TH_ASSERT_OK(isola_resume(&h, h.pause_capability));
  while (atomic_load(&c_port) == ISOLA_PORT_NONE) th_counter_wait_ge(&c_got, 0, 1);
  TH_ASSERT_OK(isola_pause(&h, h.pause_capability));
  static uint8_t kib[1024];
  int sent = 0, rc = ISOLA_OK;
  while (sent < 1000 && (rc = isola_send(atomic_load(&c_port),
                                         isola_bytes(kib, sizeof kib))) ==
                            ISOLA_OK)
    sent++;
  TH_ASSERT_RC(rc, ISOLA_EFULL);
  cr_assert(sent > 0 && sent <= 64, "%d KiB queued under a 64 KiB limit", sent);
  TH_ASSERT_OK(isola_resume(&h, h.pause_capability));
  TH_WAIT_GE(&c_got, sent);
  th_vm_shutdown_ok();
}

/* ---- bound changes at run time ------------------------------------------ */

/* R: [0, n] sets its bound to n; [1]: sets 100 and waits (blocking) until
 * P's tick is handled, which only a release by that change allows. */
static _Atomic isola_port r_port;
static th_counter r_got = TH_COUNTER_INIT;
static void r_handler(void *ctx, isola_port port, isola_value msg,
                      isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  if (msg.kind == ISOLA_LIST && th_item_int(msg, 0) == 0) {
    TH_CHECK_OK(isola_set_mailbox_bound((size_t)th_item_int(msg, 1), 0));
  } else if (msg.kind == ISOLA_LIST && th_item_int(msg, 0) == 1) {
    TH_CHECK_OK(isola_set_mailbox_bound(100, 0));
    TH_CHECK_OK(isola_blocking_begin());
    TH_CHECK_WAIT_GE(&p_tick, 1);
    TH_CHECK_OK(isola_blocking_end());
  }
  th_counter_add(&r_got, 1);
}
static void r_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(r_handler, NULL, &p));
  atomic_store(&r_port, p);
  th_counter_add(&r_got, 1);
}

Test(backpressure, the_bound_changes_at_run_time) {
  init();
  th_counter_init(&r_got);
  isola_isolate r;
  TH_ASSERT_OK(isola_spawn(r_entry, isola_null(), NULL, &r));
  TH_WAIT_GE(&r_got, 1);
  isola_value it[2] = {isola_int(0), isola_int(4)};
  TH_ASSERT_OK(isola_send(atomic_load(&r_port), isola_list(it, 2)));
  TH_WAIT_GE(&r_got, 2);
  /* Bounded at 4 now: the first message queued is the raise. */
  TH_ASSERT_OK(isola_pause(&r, r.pause_capability));
  it[0] = isola_int(1);
  TH_ASSERT_OK(isola_try_send(atomic_load(&r_port), isola_list(it, 2)));
  it[0] = isola_int(2);
  for (int i = 0; i < 3; i++)
    TH_ASSERT_OK(isola_try_send(atomic_load(&r_port), isola_list(it, 2)));
  TH_ASSERT_RC(isola_try_send(atomic_load(&r_port), isola_list(it, 2)),
               ISOLA_EFULL);
  /* P sends to R (full) and is muted. */
  atomic_store(&c_port, atomic_load(&r_port));
  spawn_p(ISOLA_PORT_NONE);
  p_send(0, 1);
  TH_WAIT_GE(&p_go, 1);
  p_send(1, 0);
  TH_ASSERT_OK(isola_resume(&r, r.pause_capability));
  /* The raise released P while R's queue was still above 4 / 2. */
  TH_WAIT_GE(&p_tick, 1);
  TH_WAIT_GE(&r_got, 7);
  /* No bound: try_send never refuses. */
  it[0] = isola_int(0), it[1] = isola_int(0);
  TH_ASSERT_OK(isola_send(atomic_load(&r_port), isola_list(it, 2)));
  TH_WAIT_GE(&r_got, 8);
  TH_ASSERT_OK(isola_pause(&r, r.pause_capability));
  it[0] = isola_int(2);
  for (int i = 0; i < 200; i++)
    TH_ASSERT_OK(isola_try_send(atomic_load(&r_port), isola_list(it, 2)));
  TH_ASSERT_OK(isola_resume(&r, r.pause_capability));
  TH_WAIT_GE(&r_got, 208);
  TH_ASSERT_RC(isola_set_mailbox_bound(1, 0), ISOLA_ENOTISOLATE);
  th_vm_shutdown_ok();
}

/* ---- cycles -------------------------------------------------------------- */

/* Two bounded isolates flood each other: a message k > 0 makes its
 * handler send two messages k - 1 to the other. */
static _Atomic isola_port cyc_port[2];
static th_counter cyc_got = TH_COUNTER_INIT;
static void cyc_handler(void *ctx, isola_port port, isola_value msg,
                        isola_port reply_to) {
  (void)port, (void)reply_to;
  int me = (int)(intptr_t)ctx;
  int64_t k = th_int(msg);
  for (int i = 0; k > 0 && i < 2; i++)
    TH_CHECK_OK(isola_send(atomic_load(&cyc_port[!me]), isola_int(k - 1)));
  th_counter_add(&cyc_got, 1);
}
static void cyc_entry(isola_value msg) {
  int me = (int)th_int(msg);
  isola_port p;
  TH_CHECK_OK(isola_port_open(cyc_handler, (void *)(intptr_t)me, &p));
  atomic_store(&cyc_port[me], p);
}

Test(backpressure, isolates_flooding_each_other_do_not_deadlock) {
  init();
  th_counter_init(&cyc_got);
  isola_spawn_options o = {0};
  o.on_exit = o.on_error = ISOLA_PORT_NONE;
  o.mailbox_bound = 4;
  for (int i = 0; i < 2; i++) {
    atomic_store(&cyc_port[i], ISOLA_PORT_NONE);
    TH_ASSERT_OK(isola_spawn(cyc_entry, isola_int(i), &o, NULL));
  }
  while (atomic_load(&cyc_port[0]) == ISOLA_PORT_NONE ||
         atomic_load(&cyc_port[1]) == ISOLA_PORT_NONE)
    th_counter_wait_ge(&cyc_got, 0, 1);
  const int k = TH_SIZE_DIV > 1 ? 10 : 12;
  for (int r = 0; r < 4; r++)
    TH_ASSERT_OK(isola_send(atomic_load(&cyc_port[r & 1]), isola_int(k)));
  /* Each seed k makes 2^(k+1) - 1 messages in all. */
  TH_WAIT_GE(&cyc_got, 4L * ((1L << (k + 1)) - 1));
  th_vm_shutdown_ok();
}

Test(backpressure, a_muted_isolate_killed_at_once_ends) {
  init();
  isola_isolate c = spawn_c(8, true);
  isola_isolate p = spawn_p(atomic_load(&pong_port));
  mute_p();
  long before = th_counter_get(&pong);
  TH_ASSERT_OK(isola_kill(&p, ISOLA_IMMEDIATE));
  TH_WAIT_GE(&pong, before + 1); /* its exit message */
  cr_assert(th_counter_get(&p_tick) == 0, "a muted isolate handled a message");
  TH_ASSERT_OK(isola_resume(&c, c.pause_capability));
  TH_WAIT_GE(&c_got, 20);
  th_vm_shutdown_ok();
}

Test(backpressure, an_isolate_whose_own_queue_is_full_is_not_held_muted) {
  init();
  isola_isolate c = spawn_c(8, true);
  spawn_pb(ISOLA_PORT_NONE, 2);
  p_send(2, 20); /* P waits inside this event ... */
  for (int i = 0; i < 3; i++) p_send(1, 0); /* ... its queue fills (3 >= 2) */
  th_counter_add(&p_fill, 1);
  /* P sent 20 to full C while full itself: not muted, so it handles all
   * three ticks while C stays full (muted, it would stop below 2). */
  TH_WAIT_GE(&p_go, 1);
  TH_WAIT_GE(&p_tick, 3);
  cr_assert(th_counter_get(&c_got) == 0, "C ran while paused");
  TH_ASSERT_OK(isola_resume(&c, c.pause_capability));
  TH_WAIT_GE(&c_got, 20);
  th_vm_shutdown_ok();
}
