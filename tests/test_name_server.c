/* SPDX-License-Identifier: MIT */
/*
 * The name server: register, look up and remove; a taken name is refused
 * and kept; a name used across isolates and from plain threads; names
 * removed with their port and with their isolate; one winner among many
 * threads registering one name; registers racing with closes; bad
 * arguments; no VM; a VM shutting down.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "helpers.h"

/* For one white-box check of the table (table_count below). */
#include "../src/vm.h"

#include <sched.h>
#include <time.h>

TestSuite(name_server, .timeout = TH_TEST_TIMEOUT_S);

/* ---------------------------------------------------------------------- */
/* A holder isolate: opens ports for the test thread to name               */
/* ---------------------------------------------------------------------- */

/*
 * holder_entry(int n) opens n ports and publishes them in ports[] (then
 * counts holder_ready, whose mutex orders the stores before the test
 * thread's reads).  ports[0] is the command port and the only one that
 * keeps the isolate alive; the others are inactive, so they stay open until
 * the isolate ends and are then closed by the runtime.
 *
 * Commands (ints sent to ports[0]):
 *   0      close ports[0]: the isolate ends, closing all the others;
 *   i > 0  close ports[i], then count holder_closed;
 *   -k     (k >= 1) meet the registrar of round k, then close
 *          ports[n-1..1], last first, and count holder_closed.
 * Any value sent to another port is stored in last_value and counted in
 * received.
 */
#define MAX_PORTS 64

static isola_port ports[MAX_PORTS];
static int nports;           /* owned by the holder isolate */
static bool port_open[MAX_PORTS]; /* owned by the holder isolate */
static th_counter holder_ready = TH_COUNTER_INIT;
static th_counter holder_closed = TH_COUNTER_INIT;
static th_counter received = TH_COUNTER_INIT;
static th_counter cleanups = TH_COUNTER_INIT;
static _Atomic int64_t last_value;

static void value_handler(void *ctx, isola_port port, isola_value msg,
                          isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  atomic_store(&last_value, th_int(msg));
  th_counter_add(&received, 1);
}

/* The race test's rendezvous: the registrar thread and the holder each
 * add 1 and spin until both have, so they start at the same instant (a
 * condition variable's wake-up is slower than the whole race).  Spins are
 * bounded by TH_WAIT_MS. */
static atomic_int race_meet;

static void meet(int target) {
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  atomic_fetch_add(&race_meet, 1);
  for (unsigned spins = 1; atomic_load(&race_meet) < target; spins++) {
    if (spins % 1024) continue;
    clock_gettime(CLOCK_MONOTONIC, &t);
    TH_CHECKF((t.tv_sec - t0.tv_sec) * 1000L < TH_WAIT_MS,
              "the race's other side never came");
    sched_yield();
  }
}

static void close_index(int i) {
  TH_CHECK(port_open[i]);
  TH_CHECK_OK(isola_port_close(ports[i]));
  port_open[i] = false;
}

static void command_handler(void *ctx, isola_port port, isola_value msg,
                            isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  int64_t cmd = th_int(msg);
  if (cmd == 0) {
    close_index(0);
  } else if (cmd > 0) {
    TH_CHECK(cmd < nports);
    close_index((int)cmd);
    th_counter_add(&holder_closed, 1);
  } else {
    meet((int)(-cmd * 2));
    for (int i = nports - 1; i >= 1; i--) close_index(i);
    th_counter_add(&holder_closed, 1);
  }
}

static void holder_entry(isola_value msg) {
  nports = (int)th_int(msg);
  TH_CHECK(nports >= 1 && nports <= MAX_PORTS);
  TH_CHECK_OK(isola_port_open(command_handler, NULL, &ports[0]));
  port_open[0] = true;
  for (int i = 1; i < nports; i++) {
    TH_CHECK_OK(isola_port_open(value_handler, NULL, &ports[i]));
    TH_CHECK_OK(isola_port_keep_alive(ports[i], false));
    port_open[i] = true;
  }
  th_counter_add(&holder_ready, 1);
}

static void on_cleanup(void *data, const isola_isolate_info *info) {
  (void)data, (void)info;
  th_counter_add(&cleanups, 1);
}

/* Starts the VM with the cleanup counter hooked. */
static void vm_init_counting(unsigned shutdown_grace_ms) {
  isola_config c;
  isola_config_init(&c);
  c.hooks.isolate_cleanup = on_cleanup;
  c.shutdown_grace_ms = shutdown_grace_ms;
  th_vm_init(&c);
}

/* Test thread: spawns a holder with n ports and waits for them. */
static void start_holder(int n) {
  long before = th_counter_get(&holder_ready);
  TH_ASSERT_OK(isola_spawn(holder_entry, isola_int(n), NULL, NULL));
  TH_WAIT_GE(&holder_ready, before + 1);
}

/* Test thread: ends the holder and waits until it is cleaned up. */
static void end_holder(void) {
  long before = th_counter_get(&cleanups);
  TH_ASSERT_OK(isola_send(ports[0], isola_int(0)));
  TH_WAIT_GE(&cleanups, before + 1);
}

/* Test thread: closes ports[i] in the holder and waits for it. */
static void close_holder_port(int i) {
  long before = th_counter_get(&holder_closed);
  TH_ASSERT_OK(isola_send(ports[0], isola_int(i)));
  TH_WAIT_GE(&holder_closed, before + 1);
}

static void assert_lookup(const char *name, isola_port expected) {
  isola_port got = 12345;
  TH_ASSERT_OK(isola_name_lookup(name, &got));
  cr_assert(got == expected, "lookup(\"%s\") gave %016llx, expected %016llx",
            name, (unsigned long long)got, (unsigned long long)expected);
}

static void assert_not_found(const char *name) {
  isola_port got = 12345;
  TH_ASSERT_RC(isola_name_lookup(name, &got), ISOLA_ENOTFOUND);
  cr_assert(got == ISOLA_PORT_NONE, "a failed lookup left *out at %016llx",
            (unsigned long long)got);
}

/* ---------------------------------------------------------------------- */

Test(name_server, register_lookup_remove) {
  vm_init_counting(0);
  start_holder(3);
  TH_ASSERT_OK(isola_name_register("alpha", ports[1]));
  assert_lookup("alpha", ports[1]);
  assert_not_found("alph");
  assert_not_found("alphabet");
  TH_ASSERT_OK(isola_name_remove("alpha"));
  assert_not_found("alpha");
  TH_ASSERT_RC(isola_name_remove("alpha"), ISOLA_ENOTFOUND);
  /* Removing a name leaves its port open; the name can be used again. */
  TH_ASSERT_OK(isola_name_register("alpha", ports[2]));
  isola_port p;
  TH_ASSERT_OK(isola_name_lookup("alpha", &p));
  TH_ASSERT_OK(isola_send(ports[1], isola_int(1)));
  TH_ASSERT_OK(isola_send(p, isola_int(2)));
  TH_WAIT_GE(&received, 2);
  end_holder();
  th_vm_shutdown_ok();
}

Test(name_server, a_taken_name_is_refused_and_keeps_its_port) {
  vm_init_counting(0);
  start_holder(3);
  TH_ASSERT_OK(isola_name_register("svc", ports[1]));
  TH_ASSERT_RC(isola_name_register("svc", ports[2]), ISOLA_ENAMETAKEN);
  assert_lookup("svc", ports[1]);
  TH_ASSERT_RC(isola_name_register("svc", ports[1]), ISOLA_ENAMETAKEN);
  assert_lookup("svc", ports[1]);
  /* One port, several names. */
  TH_ASSERT_OK(isola_name_register("svc-alias", ports[1]));
  assert_lookup("svc-alias", ports[1]);
  assert_lookup("svc", ports[1]);
  end_holder();
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* Across isolates                                                         */
/* ---------------------------------------------------------------------- */

static th_counter worker_got = TH_COUNTER_INIT;

static void worker_handler(void *ctx, isola_port port, isola_value msg,
                           isola_port reply_to) {
  (void)ctx, (void)reply_to;
  TH_CHECK(th_int(msg) == 43);
  th_counter_add(&worker_got, 1);
  TH_CHECK_OK(isola_port_close(port));
}

/* Knows nothing but two names: registers its own inbox, then finds the
 * main isolate's and sends it 42. */
static void worker_entry(isola_value msg) {
  (void)msg;
  isola_port mine, main_inbox;
  TH_CHECK_OK(isola_port_open(worker_handler, NULL, &mine));
  TH_CHECK_OK(isola_name_register("worker-inbox", mine));
  TH_CHECK_OK(isola_name_lookup("main-inbox", &main_inbox));
  TH_CHECK_OK(isola_send(main_inbox, isola_int(42)));
}

static _Atomic int64_t main_got;

static void main_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx, (void)reply_to;
  atomic_store(&main_got, th_int(msg));
  isola_port worker;
  TH_CHECK_OK(isola_name_lookup("worker-inbox", &worker));
  TH_CHECK_OK(isola_send(worker, isola_int(43)));
  TH_CHECK_OK(isola_port_close(port));
}

static void main_entry(isola_value msg) {
  (void)msg;
  isola_port inbox;
  TH_CHECK_OK(isola_port_open(main_handler, NULL, &inbox));
  TH_CHECK_OK(isola_name_register("main-inbox", inbox));
  TH_CHECK_OK(isola_spawn(worker_entry, isola_null(), NULL, NULL));
}

Test(name_server, a_name_registered_in_one_isolate_is_used_from_another) {
  vm_init_counting(0);
  TH_ASSERT_OK(isola_run_main(main_entry, isola_null(), "main"));
  cr_assert(atomic_load(&main_got) == 42, "main got %lld, expected 42",
            (long long)atomic_load(&main_got));
  TH_WAIT_GE(&worker_got, 1);
  TH_WAIT_GE(&cleanups, 2); /* main and worker */
  /* Both inboxes closed with their isolates, and their names with them. */
  assert_not_found("main-inbox");
  assert_not_found("worker-inbox");
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* Names die with their ports                                              */
/* ---------------------------------------------------------------------- */

Test(name_server, a_name_is_removed_when_its_port_closes) {
  vm_init_counting(0);
  start_holder(3);
  isola_port closed = ports[1];
  TH_ASSERT_OK(isola_name_register("p1", closed));
  TH_ASSERT_OK(isola_name_register("p1-alias", closed));
  TH_ASSERT_OK(isola_name_register("p2", ports[2]));
  close_holder_port(1);
  assert_not_found("p1");
  assert_not_found("p1-alias");
  TH_ASSERT_RC(isola_name_remove("p1"), ISOLA_ENOTFOUND);
  assert_lookup("p2", ports[2]);
  /* A closed port cannot be named; its old name is free again. */
  TH_ASSERT_RC(isola_name_register("p1", closed), ISOLA_ECLOSED);
  TH_ASSERT_OK(isola_name_register("p1", ports[2]));
  assert_lookup("p1", ports[2]);
  end_holder();
  th_vm_shutdown_ok();
}

static atomic_int self_ran;

/* The owner names its own port and closes it in the same event. */
static void self_entry(isola_value msg) {
  (void)msg;
  isola_port p, q, out;
  TH_CHECK_OK(isola_port_open(value_handler, NULL, &p));
  TH_CHECK_OK(isola_port_open(value_handler, NULL, &q));
  TH_CHECK_OK(isola_name_register("self", p));
  TH_CHECK_OK(isola_port_close(p));
  TH_CHECK_RC(isola_name_lookup("self", &out), ISOLA_ENOTFOUND);
  TH_CHECK_RC(isola_name_register("self", p), ISOLA_ECLOSED);
  TH_CHECK_OK(isola_name_register("self", q));
  TH_CHECK_OK(isola_port_close(q));
  TH_CHECK_RC(isola_name_lookup("self", &out), ISOLA_ENOTFOUND);
  atomic_store(&self_ran, 1);
}

Test(name_server, an_isolate_closing_its_named_port_removes_the_name) {
  vm_init_counting(0);
  TH_ASSERT_OK(isola_run_main(self_entry, isola_null(), NULL));
  cr_assert(atomic_load(&self_ran), "the entry did not run to its end");
  th_vm_shutdown_ok();
}

Test(name_server, names_are_removed_when_their_isolate_ends) {
  vm_init_counting(0);
  start_holder(4);
  /* ports[1..3] are inactive: the runtime closes them as the isolate
   * ends, not the isolate itself. */
  TH_ASSERT_OK(isola_name_register("cmd", ports[0]));
  TH_ASSERT_OK(isola_name_register("one", ports[1]));
  TH_ASSERT_OK(isola_name_register("two", ports[2]));
  TH_ASSERT_OK(isola_name_register("three", ports[3]));
  end_holder();
  assert_not_found("cmd");
  assert_not_found("one");
  assert_not_found("two");
  assert_not_found("three");
  th_vm_shutdown_ok();
}

/* White box: the table's entry count (src/services/name_server.h), read under its
 * lock.  Lookups drop entries of closed ports on their own, so only the
 * count shows that closing a port freed its names at once. */
static size_t table_count(void) {
  isola__vm *vm = isola__vm_get();
  pthread_mutex_lock(&vm->names.lock);
  size_t n = vm->names.count;
  pthread_mutex_unlock(&vm->names.lock);
  return n;
}

Test(name_server, closing_a_named_port_frees_its_names_at_once) {
  vm_init_counting(0);
  start_holder(MAX_PORTS);
  char name[32];
  for (int i = 1; i < MAX_PORTS; i++)
    for (int j = 0; j < 2; j++) {
      snprintf(name, sizeof name, "eager-%d-%d", i, j);
      TH_ASSERT_OK(isola_name_register(name, ports[i]));
    }
  cr_assert(table_count() == 2 * (MAX_PORTS - 1), "%zu entries",
            table_count());
  close_holder_port(1);
  cr_assert(table_count() == 2 * (MAX_PORTS - 2),
            "closing a port left %zu entries, expected %d", table_count(),
            2 * (MAX_PORTS - 2));
  end_holder(); /* the runtime closes the others */
  cr_assert(table_count() == 0, "%zu entries left after the isolate ended",
            table_count());
  th_vm_shutdown_ok();
}

Test(name_server, names_are_freed_at_shutdown_and_gone_in_the_next_vm) {
  vm_init_counting(0);
  start_holder(MAX_PORTS);
  char name[32];
  for (int i = 0; i < MAX_PORTS; i++) {
    snprintf(name, sizeof name, "kept-%d", i);
    TH_ASSERT_OK(isola_name_register(name, ports[i]));
  }
  th_vm_shutdown_ok(); /* kills the holder; LeakSanitizer checks the rest */
  th_vm_init(NULL);
  assert_not_found("kept-0");
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* Plain threads                                                           */
/* ---------------------------------------------------------------------- */

static void *plain_thread(void *arg) {
  isola_port expected = *(isola_port *)arg, p = ISOLA_PORT_NONE;
  TH_CHECK_OK(isola_name_lookup("target", &p));
  TH_CHECK(p == expected);
  TH_CHECK_OK(isola_send(p, isola_int(7)));
  TH_CHECK_OK(isola_name_register("from-thread", p));
  return NULL;
}

Test(name_server, lookup_and_send_from_a_plain_pthread) {
  vm_init_counting(0);
  start_holder(2);
  TH_ASSERT_OK(isola_name_register("target", ports[1]));
  pthread_t t;
  isola_port expected = ports[1];
  cr_assert(pthread_create(&t, NULL, plain_thread, &expected) == 0,
            "pthread_create failed");
  pthread_join(t, NULL);
  TH_WAIT_GE(&received, 1);
  cr_assert(atomic_load(&last_value) == 7, "received %lld, expected 7",
            (long long)atomic_load(&last_value));
  assert_lookup("from-thread", ports[1]);
  end_holder();
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* Races                                                                   */
/* ---------------------------------------------------------------------- */

#define RACERS 8

static pthread_barrier_t race_barrier;
static atomic_int winners, winner;
static int race_rounds;

static void *contender(void *arg) {
  int i = (int)(intptr_t)arg;
  for (int r = 0; r < race_rounds; r++) {
    pthread_barrier_wait(&race_barrier); /* go */
    int rc = isola_name_register("contested", ports[1 + i]);
    TH_CHECKF(rc == ISOLA_OK || rc == ISOLA_ENAMETAKEN, "register gave %s",
              isola_err_name(rc));
    if (rc == ISOLA_OK) {
      atomic_fetch_add(&winners, 1);
      atomic_store(&winner, i);
    }
    pthread_barrier_wait(&race_barrier); /* all tried */
    pthread_barrier_wait(&race_barrier); /* checked and reset */
  }
  /* Then everyone at once registers names of its own: the table grows
   * under contention. */
  char name[32];
  for (int j = 0; j < 64; j++) {
    snprintf(name, sizeof name, "own-%d-%d", i, j);
    TH_CHECK_OK(isola_name_register(name, ports[1 + i]));
  }
  return NULL;
}

Test(name_server, concurrent_registration_of_one_name_has_one_winner) {
  vm_init_counting(0);
  start_holder(RACERS + 1);
  race_rounds = TH_SIZE(200);
  cr_assert(pthread_barrier_init(&race_barrier, NULL, RACERS + 1) == 0,
            "pthread_barrier_init failed");
  pthread_t t[RACERS];
  for (int i = 0; i < RACERS; i++)
    cr_assert(pthread_create(&t[i], NULL, contender, (void *)(intptr_t)i) ==
                  0,
              "pthread_create failed");
  for (int r = 0; r < race_rounds; r++) {
    pthread_barrier_wait(&race_barrier);
    pthread_barrier_wait(&race_barrier);
    int w = atomic_load(&winners);
    cr_assert(w == 1, "round %d: %d winners", r, w);
    assert_lookup("contested", ports[1 + atomic_load(&winner)]);
    TH_ASSERT_OK(isola_name_remove("contested"));
    atomic_store(&winners, 0);
    pthread_barrier_wait(&race_barrier);
  }
  for (int i = 0; i < RACERS; i++) pthread_join(t[i], NULL);
  pthread_barrier_destroy(&race_barrier);
  char name[32];
  for (int i = 0; i < RACERS; i++)
    for (int j = 0; j < 64; j++) {
      snprintf(name, sizeof name, "own-%d-%d", i, j);
      assert_lookup(name, ports[1 + i]);
    }
  end_holder();
  for (int i = 0; i < RACERS; i++) {
    snprintf(name, sizeof name, "own-%d-63", i);
    assert_not_found(name);
  }
  th_vm_shutdown_ok();
}

#define RACE_PORTS (MAX_PORTS - 1)

static atomic_int race_ok, race_closed;

static void *registrar(void *arg) {
  char name[32];
  meet((int)(intptr_t)arg * 2);
  for (int i = 1; i <= RACE_PORTS; i++) {
    snprintf(name, sizeof name, "race-%d", i);
    int rc = isola_name_register(name, ports[i]);
    TH_CHECKF(rc == ISOLA_OK || rc == ISOLA_ECLOSED, "register gave %s",
              isola_err_name(rc));
    atomic_fetch_add(rc == ISOLA_OK ? &race_ok : &race_closed, 1);
  }
  return NULL;
}

/* A plain thread names ports first to last while their owner closes them
 * last to first, so the two meet somewhere in the middle: whichever wins
 * for a port, once both are done no name leads to a closed port. */
Test(name_server, a_register_racing_with_close_never_leaves_a_stale_name) {
  vm_init_counting(0);
  int rounds = TH_SIZE(100);
  char name[32];
  for (int r = 0; r < rounds; r++) {
    start_holder(RACE_PORTS + 1);
    atomic_store(&race_ok, 0);
    atomic_store(&race_closed, 0);
    long closed_before = th_counter_get(&holder_closed);
    pthread_t t;
    cr_assert(pthread_create(&t, NULL, registrar, (void *)(intptr_t)(r + 1)) ==
                  0,
              "pthread_create failed");
    /* Close them all, as soon as the registrar runs. */
    TH_ASSERT_OK(isola_send(ports[0], isola_int(-(r + 1))));
    TH_WAIT_GE(&holder_closed, closed_before + 1);
    pthread_join(t, NULL);
    cr_assert(atomic_load(&race_ok) + atomic_load(&race_closed) == RACE_PORTS,
              "%d registers succeeded and %d failed, of %d",
              atomic_load(&race_ok), atomic_load(&race_closed), RACE_PORTS);
    for (int i = 1; i <= RACE_PORTS; i++) {
      snprintf(name, sizeof name, "race-%d", i);
      assert_not_found(name);
    }
    end_holder();
  }
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* Errors                                                                  */
/* ---------------------------------------------------------------------- */

Test(name_server, bad_arguments_give_EINVAL) {
  vm_init_counting(0);
  start_holder(2);
  isola_port p = ports[1], out = 12345;
  char longest[ISOLA_NAME_MAX + 2];
  memset(longest, 'x', sizeof longest);
  longest[ISOLA_NAME_MAX + 1] = '\0'; /* one byte too long */
  TH_ASSERT_RC(isola_name_register(NULL, p), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_name_register("", p), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_name_register(longest, p), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_name_register("none", ISOLA_PORT_NONE), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_name_lookup(NULL, &out), ISOLA_EINVAL);
  cr_assert(out == ISOLA_PORT_NONE, "a failed lookup left *out set");
  TH_ASSERT_RC(isola_name_lookup("", &out), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_name_lookup(longest, &out), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_name_lookup("x", NULL), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_name_remove(NULL), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_name_remove(""), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_name_remove(longest), ISOLA_EINVAL);
  /* ISOLA_NAME_MAX bytes is allowed. */
  longest[ISOLA_NAME_MAX] = '\0';
  TH_ASSERT_OK(isola_name_register(longest, p));
  assert_lookup(longest, p);
  TH_ASSERT_OK(isola_name_remove(longest));
  /* Ports that were never issued. */
  uint64_t rng = th_seed("name_server/bad_arguments");
  for (int i = 0; i < 100; i++)
    TH_ASSERT_RC(isola_name_register("nobody", th_rand(&rng) | 1),
                 ISOLA_ECLOSED);
  assert_not_found("nobody");
  end_holder();
  th_vm_shutdown_ok();
}

Test(name_server, calls_without_a_running_vm_give_ENOVM) {
  isola_port out = 12345;
  TH_ASSERT_RC(isola_name_register("a", 0x1234), ISOLA_ENOVM);
  TH_ASSERT_RC(isola_name_lookup("a", &out), ISOLA_ENOVM);
  cr_assert(out == ISOLA_PORT_NONE, "a failed lookup left *out set");
  TH_ASSERT_RC(isola_name_remove("a"), ISOLA_ENOVM);
  th_vm_init(NULL);
  th_vm_shutdown_ok();
  TH_ASSERT_RC(isola_name_register("a", 0x1234), ISOLA_ENOVM);
  TH_ASSERT_RC(isola_name_lookup("a", &out), ISOLA_ENOVM);
  TH_ASSERT_RC(isola_name_remove("a"), ISOLA_ENOVM);
}

static th_counter stuck_entered = TH_COUNTER_INIT;
static th_counter stuck_release = TH_COUNTER_INIT;
static _Atomic isola_port stuck_port;

static void stuck_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(value_handler, NULL, &p));
  TH_CHECK_OK(isola_name_register("stuck", p));
  atomic_store(&stuck_port, p);
  th_counter_add(&stuck_entered, 1);
  TH_CHECK_WAIT_GE(&stuck_release, 1); /* C code that will not return */
}

/* While shutdown waits for a stuck isolate, the name server refuses work;
 * the stuck isolate's named port is closed, and its name dropped, when it
 * finally ends. */
Test(name_server, calls_while_the_vm_shuts_down_give_ESHUTDOWN) {
  vm_init_counting(200);
  TH_ASSERT_OK(isola_spawn(stuck_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&stuck_entered, 1);
  assert_lookup("stuck", atomic_load(&stuck_port));
  isola_shutdown_report r;
  TH_ASSERT_RC(isola_vm_shutdown(&r), ISOLA_ETIMEDOUT);
  isola_port out = 12345;
  TH_ASSERT_RC(isola_name_lookup("stuck", &out), ISOLA_ESHUTDOWN);
  cr_assert(out == ISOLA_PORT_NONE, "a failed lookup left *out set");
  TH_ASSERT_RC(isola_name_register("late", 0x1234), ISOLA_ESHUTDOWN);
  TH_ASSERT_RC(isola_name_remove("stuck"), ISOLA_ESHUTDOWN);
  th_counter_add(&stuck_release, 1);
  th_vm_shutdown_ok();
}
