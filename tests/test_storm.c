/* SPDX-License-Identifier: MIT */
/*
 * Storms (issue 13 item 4): many threads at once pulling an isolate's
 * life in different directions, with conservation checked.
 *
 *   - kills from several threads while others send: each sender's
 *     messages are handled in order, none twice, none after the end; the
 *     exit listener hears of the end exactly once; later sends fail;
 *   - pause/resume storms under several capabilities while others send:
 *     once every pause is resumed, every message is handled, in order;
 *   - spawn-and-kill churn: every isolate whose spawn returned OK tells
 *     its exit listener exactly once, whether killed before it ran
 *     (spawned paused) or while it ran;
 *   - shutdown at a random moment of a busy run (isolates bouncing
 *     messages, plain threads sending and spawning): it returns OK, the
 *     plain threads get documented errors, nothing leaks.
 *
 * Seeds are printed; replay one with ISOLA_TEST_SEED=<seed>.  These run
 * in every build, TSan's included (smaller there).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "helpers.h"

TestSuite(storm, .timeout = TH_TEST_TIMEOUT_S);

/* ---------------------------------------------------------------------- */
/* A counting native port, for exit notices                                */
/* ---------------------------------------------------------------------- */

static th_counter exits = TH_COUNTER_INIT;
/* Messages handled in this round, plus END once the isolate has ended:
 * what a killer waits on, so that it also wakes when another was first. */
static th_counter progress = TH_COUNTER_INIT;
#define END (1L << 40)

static void counter_reset(th_counter *c) {
  pthread_mutex_lock(&c->mu);
  c->value = 0;
  pthread_mutex_unlock(&c->mu);
}

static void count_exit(void *ctx, isola_port port, isola_value msg,
                       isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
  th_counter_add(&progress, END);
  th_counter_add(&exits, 1);
}

static isola_port exit_port(void) {
  isola_port p;
  cr_assert(isola_native_port_new("exits", count_exit, NULL, false, &p) ==
                ISOLA_OK,
            "native port for exits");
  return p;
}

/* ---------------------------------------------------------------------- */
/* A receiver that checks per-sender order                                 */
/* ---------------------------------------------------------------------- */

#define MAX_SENDERS 4

static _Atomic int64_t last_seq[MAX_SENDERS];
static th_counter handled = TH_COUNTER_INIT;
static _Atomic isola_port recv_port;
static th_counter recv_ready = TH_COUNTER_INIT;

/* Messages are [sender, seq], seq from 1 up per sender; "stop" closes. */
static void on_seq(void *ctx, isola_port port, isola_value msg,
                   isola_port reply_to) {
  (void)ctx, (void)reply_to;
  if (msg.kind == ISOLA_STRING) {
    TH_CHECK_OK(isola_port_close(port));
    return;
  }
  int64_t s = th_item_int(msg, 0), seq = th_item_int(msg, 1);
  TH_CHECK(s >= 0 && s < MAX_SENDERS);
  int64_t last = atomic_load(&last_seq[s]);
  TH_CHECKF(seq == last + 1,
            "sender %lld: message %lld handled after %lld (lost, reordered "
            "or twice)",
            (long long)s, (long long)seq, (long long)last);
  atomic_store(&last_seq[s], seq);
  th_counter_add(&handled, 1);
  th_counter_add(&progress, 1);
}

static void receiver_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(on_seq, NULL, &p));
  atomic_store(&recv_port, p);
  th_counter_add(&recv_ready, 1);
}

static void reset_receiver(void) {
  for (int i = 0; i < MAX_SENDERS; i++) atomic_store(&last_seq[i], 0);
  counter_reset(&handled);
  counter_reset(&progress);
  counter_reset(&recv_ready);
  atomic_store(&recv_port, ISOLA_PORT_NONE);
}

static isola_value seq_msg(int64_t sender, int64_t seq) {
  static _Thread_local isola_value items[2];
  items[0] = isola_int(sender);
  items[1] = isola_int(seq);
  return isola_list(items, 2);
}

/* ---------------------------------------------------------------------- */
/* Kills from many threads while others send                               */
/* ---------------------------------------------------------------------- */

struct sender {
  pthread_t t;
  int id;
  long limit;   /* at most this many sends (0: until the port closes) */
  long ok;      /* sends that returned OK */
  bool closed;  /* a send returned ECLOSED */
};

static void *sender_main(void *arg) {
  struct sender *s = arg;
  isola_port p = atomic_load(&recv_port);
  for (int64_t seq = 1; s->limit == 0 || seq <= s->limit; seq++) {
    int rc = isola_send(p, seq_msg(s->id, seq));
    if (rc == ISOLA_ECLOSED) {
      s->closed = true;
      break;
    }
    TH_CHECKF(rc == ISOLA_OK, "send: %s", isola_err_name(rc));
    s->ok++;
  }
  return NULL;
}

struct killer {
  pthread_t t;
  isola_isolate h;
  long after; /* kill once this many messages were handled */
  isola_priority priority;
};

static void *killer_main(void *arg) {
  struct killer *k = arg;
  TH_CHECK_WAIT_GE(&progress, k->after); /* or the end */
  int rc = isola_kill(&k->h, k->priority);
  TH_CHECKF(rc == ISOLA_OK || rc == ISOLA_ECLOSED, "kill: %s",
            isola_err_name(rc));
  return NULL;
}

Test(storm, kills_from_many_threads_while_others_send) {
  uint64_t rng = th_seed("storm kills");
  th_vm_init(NULL);
  isola_port ex = exit_port();
  counter_reset(&exits);
  const int rounds = TH_SIZE(24);
  for (int r = 0; r < rounds; r++) {
    reset_receiver();
    isola_spawn_options o = {0};
    o.on_exit = ex;
    isola_isolate h;
    TH_ASSERT_OK(isola_spawn(receiver_entry, isola_null(), &o, &h));
    TH_WAIT_GE(&recv_ready, 1);
    struct sender s[3];
    struct killer k[3];
    for (int i = 0; i < 3; i++) {
      s[i] = (struct sender){.id = i, .limit = 0};
      k[i] = (struct killer){.h = h,
                             .after = (long)th_rand_below(&rng, 300),
                             .priority = th_rand_below(&rng, 2)
                                             ? ISOLA_IMMEDIATE
                                             : ISOLA_BEFORE_NEXT_EVENT};
    }
    for (int i = 0; i < 3; i++) {
      cr_assert(pthread_create(&s[i].t, NULL, sender_main, &s[i]) == 0,
                "sender thread");
      cr_assert(pthread_create(&k[i].t, NULL, killer_main, &k[i]) == 0,
                "killer thread");
    }
    for (int i = 0; i < 3; i++) {
      pthread_join(k[i].t, NULL);
      pthread_join(s[i].t, NULL); /* each ends at ECLOSED */
      cr_assert(s[i].closed, "sender %d never saw the port close", i);
    }
    TH_WAIT_GE(&exits, r + 1);
    long ok = s[0].ok + s[1].ok + s[2].ok;
    cr_assert(th_counter_get(&handled) <= ok,
              "handled %ld of %ld sent", th_counter_get(&handled), ok);
    /* The end is final: sends and kills see it. */
    TH_ASSERT_RC(isola_send(atomic_load(&recv_port), seq_msg(0, 1)),
                 ISOLA_ECLOSED);
    TH_ASSERT_RC(isola_kill(&h, ISOLA_IMMEDIATE), ISOLA_ECLOSED);
  }
  cr_assert(th_counter_get(&exits) == rounds,
            "%ld exit notices for %d isolates", th_counter_get(&exits),
            rounds);
  TH_ASSERT_OK(isola_native_port_close(ex));
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* Pause/resume storms                                                     */
/* ---------------------------------------------------------------------- */

struct pauser {
  pthread_t t;
  isola_isolate h;
  isola_capability cap; /* 0: the handle's pause capability */
  int times;
};

static void *pauser_main(void *arg) {
  struct pauser *p = arg;
  for (int i = 0; i < p->times; i++) {
    TH_CHECK_OK(isola_pause(&p->h, p->cap));
    if (i % 3 == 0) TH_CHECK_OK(isola_pause(&p->h, p->cap)); /* a set */
    TH_CHECK_OK(isola_resume(&p->h, p->cap));
  }
  return NULL;
}

Test(storm, pause_resume_storms_lose_nothing) {
  th_vm_init(NULL);
  isola_port ex = exit_port();
  counter_reset(&exits);
  reset_receiver();
  isola_spawn_options o = {0};
  o.on_exit = ex;
  isola_isolate h;
  TH_ASSERT_OK(isola_spawn(receiver_entry, isola_null(), &o, &h));
  TH_WAIT_GE(&recv_ready, 1);
  const long per = TH_SIZE(20000);
  struct sender s[2];
  struct pauser p[4];
  for (int i = 0; i < 4; i++)
    p[i] = (struct pauser){.h = h,
                           .cap = i == 0 ? 0 : isola_capability_new(),
                           .times = (int)TH_SIZE(2000)};
  for (int i = 0; i < 2; i++) s[i] = (struct sender){.id = i, .limit = per};
  for (int i = 0; i < 4; i++)
    cr_assert(pthread_create(&p[i].t, NULL, pauser_main, &p[i]) == 0,
              "pauser thread");
  for (int i = 0; i < 2; i++)
    cr_assert(pthread_create(&s[i].t, NULL, sender_main, &s[i]) == 0,
              "sender thread");
  for (int i = 0; i < 4; i++) pthread_join(p[i].t, NULL);
  for (int i = 0; i < 2; i++) {
    pthread_join(s[i].t, NULL);
    cr_assert(s[i].ok == per, "sender %d: %ld of %ld sends OK", i, s[i].ok,
              per);
  }
  /* Every pause was resumed: every message is handled, in order. */
  TH_WAIT_GE(&handled, 2 * per);
  TH_ASSERT_OK(isola_send(atomic_load(&recv_port), isola_str("stop")));
  TH_WAIT_GE(&exits, 1);
  cr_assert(th_counter_get(&handled) == 2 * per, "handled %ld of %ld",
            th_counter_get(&handled), 2 * per);
  TH_ASSERT_OK(isola_native_port_close(ex));
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* Spawn-and-kill churn                                                    */
/* ---------------------------------------------------------------------- */

static void on_nothing(void *ctx, isola_port port, isola_value msg,
                       isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
}

static void stay_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(on_nothing, NULL, &p));
}

struct churner {
  pthread_t t;
  uint64_t rng;
  isola_port ex;
  int times;
  long spawned;
};

static void *churner_main(void *arg) {
  struct churner *c = arg;
  for (int i = 0; i < c->times; i++) {
    isola_spawn_options o = {0};
    o.on_exit = c->ex;
    o.paused = th_rand_below(&c->rng, 4) == 0; /* killed before it runs */
    isola_isolate h;
    TH_CHECK_OK(isola_spawn(stay_entry, isola_null(), &o, &h));
    c->spawned++;
    isola_priority pr = th_rand_below(&c->rng, 2) ? ISOLA_IMMEDIATE
                                                  : ISOLA_BEFORE_NEXT_EVENT;
    int rc = isola_kill(&h, pr);
    TH_CHECKF(rc == ISOLA_OK, "kill: %s", isola_err_name(rc));
    if (o.paused) {
      /* A kill before the next event waits for the resume (the paused
       * isolate handles no event); an immediate one may have ended it. */
      rc = isola_resume(&h, 0);
      TH_CHECKF(rc == ISOLA_OK || (rc == ISOLA_ECLOSED && pr == ISOLA_IMMEDIATE),
                "resume: %s", isola_err_name(rc));
    }
  }
  return NULL;
}

Test(storm, spawn_and_kill_churn_tells_every_exit_once) {
  uint64_t seed = th_seed("storm churn");
  th_vm_init(NULL);
  size_t base = isola_live_isolates();
  isola_port ex = exit_port();
  counter_reset(&exits);
  struct churner c[3];
  for (int i = 0; i < 3; i++)
    c[i] = (struct churner){.rng = seed + (uint64_t)i, .ex = ex,
                            .times = (int)TH_SIZE(3000)};
  for (int i = 0; i < 3; i++)
    cr_assert(pthread_create(&c[i].t, NULL, churner_main, &c[i]) == 0,
              "churner thread");
  long spawned = 0;
  for (int i = 0; i < 3; i++) {
    pthread_join(c[i].t, NULL);
    spawned += c[i].spawned;
  }
  TH_WAIT_GE(&exits, spawned);
  TH_ASSERT_OK(isola_native_port_close(ex));
  th_wait_live_isolates(base);
  cr_assert(th_counter_get(&exits) == spawned,
            "%ld exit notices for %ld isolates", th_counter_get(&exits),
            spawned);
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* Shutdown at a random moment of a busy run                               */
/* ---------------------------------------------------------------------- */

static th_counter bounces = TH_COUNTER_INIT;
static th_counter bounce_ready = TH_COUNTER_INIT;
static _Atomic isola_port bounce_port;

static void on_bounce(void *ctx, isola_port port, isola_value msg,
                      isola_port reply_to) {
  (void)ctx;
  th_counter_add(&bounces, 1);
  if (reply_to == ISOLA_PORT_NONE) return; /* from a plain thread */
  int rc = isola_send_reply(reply_to, msg, port);
  TH_CHECKF(rc == ISOLA_OK || rc == ISOLA_ECLOSED || rc == ISOLA_ESHUTDOWN,
            "bounce: %s", isola_err_name(rc));
}

static void bounce_entry(isola_value msg) {
  isola_port me;
  TH_CHECK_OK(isola_port_open(on_bounce, NULL, &me));
  if (msg.kind == ISOLA_PORT) {
    /* The partner may already be gone: shutdown can begin at any moment. */
    int rc = isola_send_reply(msg.as.port, isola_int(1), me);
    TH_CHECKF(rc == ISOLA_OK || rc == ISOLA_ECLOSED || rc == ISOLA_ESHUTDOWN,
              "first bounce: %s", isola_err_name(rc));
  } else {
    atomic_store(&bounce_port, me);
    th_counter_add(&bounce_ready, 1);
  }
}

static void short_entry(isola_value msg) { (void)msg; }

static _Atomic bool stop_plain;

static bool vm_gone(int rc) {
  return rc == ISOLA_ESHUTDOWN || rc == ISOLA_ENOVM;
}

static void *plain_sender(void *arg) {
  (void)arg;
  while (!atomic_load(&stop_plain)) {
    int rc = isola_send(atomic_load(&bounce_port), isola_int(7));
    if (vm_gone(rc)) break;
    TH_CHECKF(rc == ISOLA_OK || rc == ISOLA_ECLOSED, "send: %s",
              isola_err_name(rc));
  }
  return NULL;
}

static void *plain_spawner(void *arg) {
  (void)arg;
  while (!atomic_load(&stop_plain)) {
    int rc = isola_spawn(short_entry, isola_str("x"), NULL, NULL);
    if (vm_gone(rc)) break;
    TH_CHECKF(rc == ISOLA_OK, "spawn: %s", isola_err_name(rc));
  }
  return NULL;
}

Test(storm, shutdown_at_a_random_moment_of_a_busy_run) {
  uint64_t rng = th_seed("storm shutdown");
  const int rounds = TH_SIZE(12);
  for (int r = 0; r < rounds; r++) {
    th_vm_init(NULL);
    counter_reset(&bounces);
    counter_reset(&bounce_ready);
    atomic_store(&stop_plain, false);
    atomic_store(&bounce_port, ISOLA_PORT_NONE);
    TH_ASSERT_OK(isola_spawn(bounce_entry, isola_null(), NULL, NULL));
    TH_WAIT_GE(&bounce_ready, 1);
    for (int i = 0; i < 3; i++)
      TH_ASSERT_OK(isola_spawn(bounce_entry,
                               isola_sendport(atomic_load(&bounce_port)),
                               NULL, NULL));
    pthread_t t[2];
    cr_assert(pthread_create(&t[0], NULL, plain_sender, NULL) == 0, "thread");
    cr_assert(pthread_create(&t[1], NULL, plain_spawner, NULL) == 0, "thread");
    /* Shut down once a random amount of work has happened. */
    TH_WAIT_GE(&bounces, 1 + (long)th_rand_below(&rng, 5000));
    isola_shutdown_report rep;
    int rc = isola_vm_shutdown(&rep);
    cr_assert(rc == ISOLA_OK, "round %d: shutdown: %s %s", r,
              isola_err_name(rc), rc == ISOLA_ETIMEDOUT ? rep.text : "");
    atomic_store(&stop_plain, true);
    pthread_join(t[0], NULL);
    pthread_join(t[1], NULL);
    th_leak_check();
  }
}
