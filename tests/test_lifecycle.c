/* SPDX-License-Identifier: MIT */
/*
 * An isolate's life at its edges (issues 11 and 18): the unwind of a turn,
 * calls made while or after it ends, spawns racing shutdown, the order of
 * sends across events, kills and pings before the next event, isola_exit's
 * transfer, and nested VM entry.  Each test is the regression test of the
 * defect named above it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "helpers.h"

#include <sched.h>
#include <time.h>
#include <unistd.h>

TestSuite(lifecycle, .timeout = TH_TEST_TIMEOUT_S);

/* An uncaught-error hook that keeps expected errors off stderr. */
static th_counter errors_seen = TH_COUNTER_INIT;
static void quiet_errors(void *data, const isola_isolate_info *info,
                         const char *msg, const char *stack) {
  (void)data, (void)info, (void)msg, (void)stack;
  th_counter_add(&errors_seen, 1);
}

/* ---------------------------------------------------------------------- */
/* 11.1: a non-fatal error, then a yield in the same turn                  */
/* ---------------------------------------------------------------------- */

/* A spinner keeps the one worker's run queue busy, so the victim's turn
 * yields after a batch: the turn that an uncaught error unwound, resumed
 * after the error, must be requeued, not lost. */
static _Atomic bool spin_stop;
static th_counter spin_ready = TH_COUNTER_INIT;
static th_counter spin_done = TH_COUNTER_INIT;
static void spin_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  if (atomic_load(&spin_stop)) {
    TH_CHECK_OK(isola_port_close(port));
    th_counter_add(&spin_done, 1);
    return;
  }
  /* Shutdown may come between the look at spin_stop and the send. */
  int rc = isola_send(port, isola_null());
  TH_CHECKF(rc == ISOLA_OK || rc == ISOLA_ESHUTDOWN, "send: %s",
            isola_err_name(rc));
}
static void spin_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(spin_handler, NULL, &p));
  TH_CHECK_OK(isola_send(p, isola_null()));
  th_counter_add(&spin_ready, 1);
}

static _Atomic isola_port victim_port;
static th_counter victim_ready = TH_COUNTER_INIT;
static th_counter victim_handled = TH_COUNTER_INIT;
static void victim_handler(void *ctx, isola_port port, isola_value msg,
                           isola_port reply_to) {
  (void)ctx, (void)reply_to;
  th_counter_add(&victim_handled, 1);
  int64_t i = th_int(msg);
  if (i == 0) isola_throw("the first message throws");
  if (i == -1) TH_CHECK_OK(isola_port_close(port));
}
static void victim_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(victim_handler, NULL, &p));
  atomic_store(&victim_port, p);
  th_counter_add(&victim_ready, 1);
}

Test(lifecycle, nonfatal_error_then_yield_in_the_same_turn_is_not_lost) {
  isola_config cfg;
  isola_config_init(&cfg);
  cfg.workers = 1;
  cfg.unhandled_error = quiet_errors;
  th_vm_init(&cfg);
  isola_spawn_options o = {.errors_nonfatal = true};
  isola_isolate h;
  TH_ASSERT_OK(isola_spawn(victim_entry, isola_null(), &o, &h));
  TH_WAIT_GE(&victim_ready, 1);
  isola_port p = atomic_load(&victim_port);
  /* Paused, so the 300 messages are all queued when its turn starts. */
  TH_ASSERT_OK(isola_pause(&h, 0));
  enum { N = 300 };
  for (int i = 0; i < N; i++) TH_ASSERT_OK(isola_send(p, isola_int(i)));
  TH_ASSERT_OK(isola_spawn(spin_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&spin_ready, 1);
  TH_ASSERT_OK(isola_resume(&h, 0));
  TH_WAIT_GE(&victim_handled, N);
  TH_WAIT_GE(&errors_seen, 1);
  TH_ASSERT_OK(isola_send(p, isola_int(-1)));
  atomic_store(&spin_stop, true);
  TH_WAIT_GE(&spin_done, 1); /* no send of its races the shutdown */
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* 11.3: nothing is opened once the isolate is ending                      */
/* ---------------------------------------------------------------------- */

static void noop_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
}
static void noop_task(void *arg) { (void)arg; }
static void noop_timer(void *arg) { (void)arg; }
static void noop_watch(int fd, uint32_t events, void *arg) {
  (void)fd, (void)events, (void)arg;
}

/* What each open returned from the end of the isolate. */
static struct {
  int port_in_hook, timer_in_hook, watch_in_hook, task_in_hook;
  int port_in_dtor;
  void *local_in_hook;
  _Atomic isola_port late_port;
} late;
static th_counter late_done = TH_COUNTER_INIT;
static int late_pipe[2];
static ISOLA_LOCAL(int, other_local);

static void late_dtor(void *v) {
  (void)v;
  isola_port p = ISOLA_PORT_NONE;
  late.port_in_dtor = isola_port_open(noop_handler, NULL, &p);
  if (late.port_in_dtor == ISOLA_OK) atomic_store(&late.late_port, p);
}
static ISOLA_LOCAL_INIT(int, dtor_local, NULL, late_dtor);

static void late_cleanup(void *data, const isola_isolate_info *info) {
  (void)data;
  if (strcmp(info->name, "ender") != 0) return;
  isola_port p = ISOLA_PORT_NONE;
  late.port_in_hook = isola_port_open(noop_handler, NULL, &p);
  if (late.port_in_hook == ISOLA_OK) atomic_store(&late.late_port, p);
  isola_timer t;
  late.timer_in_hook = isola_timer_start(1, 0, noop_timer, NULL, &t);
  isola_watch w;
  late.watch_in_hook =
      isola_watch_open(late_pipe[0], ISOLA_READABLE, noop_watch, NULL, &w);
  late.task_in_hook = isola_microtask(noop_task, NULL);
  late.local_in_hook = isola_local_get(&other_local);
  th_counter_add(&late_done, 1);
}

static void ender_entry(isola_value msg) {
  (void)msg;
  TH_CHECK(isola_local_get(&dtor_local) != NULL);
  /* No port: the isolate ends after this event. */
}

Test(lifecycle, nothing_opens_after_the_isolate_started_ending) {
  TH_ASSERT_OK(pipe(late_pipe) == 0 ? ISOLA_OK : ISOLA_ESYS);
  isola_config cfg;
  isola_config_init(&cfg);
  cfg.hooks.isolate_cleanup = late_cleanup;
  th_vm_init(&cfg);
  isola_spawn_options o = {.name = "ender"};
  TH_ASSERT_OK(isola_spawn(ender_entry, isola_null(), &o, NULL));
  TH_WAIT_GE(&late_done, 1);
  cr_assert(late.port_in_dtor == ISOLA_EENDING, "port from a destructor: %s",
            isola_err_name(late.port_in_dtor));
  cr_assert(late.port_in_hook == ISOLA_EENDING, "port from the hook: %s",
            isola_err_name(late.port_in_hook));
  cr_assert(late.timer_in_hook == ISOLA_EENDING, "timer: %s",
            isola_err_name(late.timer_in_hook));
  cr_assert(late.watch_in_hook == ISOLA_EENDING, "watch: %s",
            isola_err_name(late.watch_in_hook));
  cr_assert(late.task_in_hook == ISOLA_EENDING, "microtask: %s",
            isola_err_name(late.task_in_hook));
  cr_assert(late.local_in_hook == NULL, "a local was created at the end");
  /* A port that opened anyway would accept sends for a freed isolate. */
  isola_port p = atomic_load(&late.late_port);
  if (p != ISOLA_PORT_NONE)
    cr_assert(isola_send(p, isola_int(1)) == ISOLA_ECLOSED,
              "a send to a port opened at the end succeeded");
  th_vm_shutdown_ok();
  close(late_pipe[0]);
  close(late_pipe[1]);
}

/* ---------------------------------------------------------------------- */
/* 11.4: shutdown racing a spawn never sees a half-built isolate           */
/* ---------------------------------------------------------------------- */

#ifdef ISOLA_TEST_HOOKS
extern void (*_Atomic isola__test_hook)(int where);

/* Which hook points stop the calling thread (thread-local: only the test's
 * spawner stops), and the counters the test waits on. */
static _Thread_local int stop_at;
static th_counter at_stop = TH_COUNTER_INIT;
static th_counter scans = TH_COUNTER_INIT;
enum { HOOK_SPAWN_ENTERED = 1, HOOK_SPAWN_VISIBLE, HOOK_SHUTDOWN_SCANNED };

static void race_hook(int where) {
  if (where == HOOK_SHUTDOWN_SCANNED) {
    th_counter_add(&scans, 1);
    return;
  }
  if (where != stop_at) return;
  stop_at = 0;
  th_counter_add(&at_stop, 1);
  /* Held here until shutdown has scanned for isolates to kill at least
   * once: the scan runs while this isolate is half built. */
  TH_CHECK_WAIT_GE(&scans, 1);
}

static void forever_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(noop_handler, NULL, &p)); /* stays open */
}

static int spawner_rc = 1;
static void *spawner(void *arg) {
  stop_at = (int)(intptr_t)arg;
  spawner_rc = isola_spawn(forever_entry, isola_null(), NULL, NULL);
  return NULL;
}
static void *root_runner(void *arg) {
  stop_at = (int)(intptr_t)arg;
  spawner_rc = isola_run_main(forever_entry, isola_null(), "root");
  return NULL;
}

static void shutdown_races(void *(*fn)(void *), int where) {
  th_vm_init(NULL);
  atomic_store(&isola__test_hook, race_hook);
  pthread_t th;
  cr_assert(pthread_create(&th, NULL, fn, (void *)(intptr_t)where) == 0,
            "pthread_create failed");
  TH_WAIT_GE(&at_stop, 1);
  /* The spawner is stopped: inside its call, the isolate not complete. */
  th_vm_shutdown_ok();
  pthread_join(th, NULL);
  atomic_store(&isola__test_hook, NULL);
  cr_assert(spawner_rc == ISOLA_OK, "the racing spawn returned %s",
            isola_err_name(spawner_rc));
}

Test(lifecycle, shutdown_scanning_a_half_built_spawn_does_not_run_it) {
  shutdown_races(spawner, HOOK_SPAWN_VISIBLE);
}

Test(lifecycle, shutdown_scanning_a_half_built_root_does_not_run_it) {
  shutdown_races(root_runner, HOOK_SPAWN_VISIBLE);
}

Test(lifecycle, shutdown_waits_for_a_spawn_that_entered_before_it) {
  shutdown_races(spawner, HOOK_SPAWN_ENTERED);
}

Test(lifecycle, shutdown_waits_for_a_root_that_entered_before_it) {
  shutdown_races(root_runner, HOOK_SPAWN_ENTERED);
}

/* A shutdown that times out while a spawn is half built names the isolate
 * in its report without reading what its builder is still writing: the
 * builder stores the control port's id in the isolate after it published
 * the port, and the report read that field with nothing ordering the two
 * (a data race TSan reports; the TSan build halts on it).  The spawner
 * stops just after it published the port and tells the test so through a
 * relaxed flag, which orders nothing: only the runtime's own
 * synchronisation stands between its stores and the report. */
static _Atomic bool half_built;
static th_counter reported = TH_COUNTER_INIT;

static void report_hook(int where) {
  if (where != stop_at) return;
  stop_at = 0;
  atomic_store_explicit(&half_built, true, memory_order_relaxed);
  TH_CHECK_WAIT_GE(&reported, 1); /* until the report was made */
}

static void half_built_entry(isola_value msg) { (void)msg; }

static void *named_spawner(void *arg) {
  stop_at = (int)(intptr_t)arg;
  isola_spawn_options o = {.name = "half-built"};
  spawner_rc = isola_spawn(half_built_entry, isola_null(), &o, NULL);
  return NULL;
}

Test(lifecycle, a_timed_out_shutdown_reports_a_half_built_spawn) {
  isola_config c;
  isola_config_init(&c);
  c.shutdown_grace_ms = 20;
  th_vm_init(&c);
  atomic_store(&isola__test_hook, report_hook);
  pthread_t th;
  cr_assert(pthread_create(&th, NULL, named_spawner,
                           (void *)(intptr_t)HOOK_SPAWN_VISIBLE) == 0,
            "pthread_create failed");
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  do {
    if (atomic_load_explicit(&half_built, memory_order_relaxed)) break;
    sched_yield();
    clock_gettime(CLOCK_MONOTONIC, &t);
  } while ((t.tv_sec - t0.tv_sec) * 1000L +
               (t.tv_nsec - t0.tv_nsec) / 1000000L <
           TH_WAIT_MS);
  cr_assert(atomic_load_explicit(&half_built, memory_order_relaxed),
            "the spawner never reached its control port's publication");
  static isola_shutdown_report r;
  int rc = isola_vm_shutdown(&r);
  th_counter_add(&reported, 1);
  cr_assert(rc == ISOLA_ETIMEDOUT, "isola_vm_shutdown: %s",
            isola_err_name(rc));
  cr_assert(r.stuck == 1, "%zu stuck: %s", r.stuck, r.text);
  cr_assert(strstr(r.text, "isolate 'half-built' (control port ") != NULL &&
                strstr(r.text, "control port 0000000000000000") == NULL,
            "report: %s", r.text);
  pthread_join(th, NULL);
  atomic_store(&isola__test_hook, NULL);
  cr_assert(spawner_rc == ISOLA_OK, "the racing spawn returned %s",
            isola_err_name(spawner_rc));
  /* The spawn, complete now, ends (killed, or at once): the next shutdown
   * then has nothing to wait for, whatever its short grace. */
  th_wait_live_isolates(0);
  th_vm_shutdown_ok();
}
#endif

/* ---------------------------------------------------------------------- */
/* 11.6: what an event sent goes out when the event ends                   */
/* ---------------------------------------------------------------------- */

/* The receiver: records the ints it gets, in order. */
static struct {
  pthread_mutex_t mu;
  int64_t v[64];
  int n;
  _Atomic isola_port port;
} rec = {.mu = PTHREAD_MUTEX_INITIALIZER};
static th_counter rec_got = TH_COUNTER_INIT;
static th_counter rec_ready = TH_COUNTER_INIT;
static void rec_handler(void *ctx, isola_port port, isola_value msg,
                        isola_port reply_to) {
  (void)ctx, (void)reply_to;
  int64_t i = th_int(msg);
  if (i < 0) {
    TH_CHECK_OK(isola_port_close(port));
    return;
  }
  pthread_mutex_lock(&rec.mu);
  if (rec.n < 64) rec.v[rec.n++] = i;
  pthread_mutex_unlock(&rec.mu);
  th_counter_add(&rec_got, 1);
}
static void rec_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(rec_handler, NULL, &p));
  atomic_store(&rec.port, p);
  th_counter_add(&rec_ready, 1);
}
static isola_port rec_start(void) {
  TH_ASSERT_OK(isola_spawn(rec_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&rec_ready, 1);
  return atomic_load(&rec.port);
}
static int64_t rec_at(int i) {
  pthread_mutex_lock(&rec.mu);
  int64_t v = i < rec.n ? rec.v[i] : -1;
  pthread_mutex_unlock(&rec.mu);
  return v;
}

/* A root isolate (its own thread, not the pool's) drives each scenario:
 * what it spawns or readies runs on the pool at once, in parallel. */
static th_counter root_done = TH_COUNTER_INIT;
static _Atomic bool root_waited; /* the in-event wait saw its event */

static void m2_entry(isola_value msg) {
  TH_CHECK_OK(isola_send(th_port(msg), isola_int(2)));
}

/* One event: m1 to the receiver, then a spawn whose child sends m2 there
 * at once.  The spawn happens after the send, so m1 is handled first. */
static void root_send_then_spawn(void *ctx, isola_port port, isola_value msg,
                                 isola_port reply_to) {
  (void)ctx, (void)reply_to, (void)msg;
  isola_port r = atomic_load(&rec.port);
  TH_CHECK_OK(isola_send(r, isola_int(1)));
  TH_CHECK_OK(isola_spawn(m2_entry, isola_sendport(r), NULL, NULL));
  /* Still in the event: wait until the receiver got one of them. */
  atomic_store(&root_waited, th_counter_wait_ge(&rec_got, 1, TH_WAIT_MS));
  TH_CHECK_OK(isola_port_close(port));
  th_counter_add(&root_done, 1);
}

/* Two events in one turn: the first sends m1, the second waits for it. */
static void root_two_events(void *ctx, isola_port port, isola_value msg,
                            isola_port reply_to) {
  (void)ctx, (void)reply_to;
  if (th_int(msg) == 1) {
    TH_CHECK_OK(isola_send(atomic_load(&rec.port), isola_int(1)));
    return;
  }
  atomic_store(&root_waited, th_counter_wait_ge(&rec_got, 1, TH_WAIT_MS));
  TH_CHECK_OK(isola_port_close(port));
  th_counter_add(&root_done, 1);
}

static isola_handler root_handler;
static void root_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(root_handler, NULL, &p));
  /* Both queued before the first is handled: one turn handles both. */
  TH_CHECK_OK(isola_send(p, isola_int(1)));
  TH_CHECK_OK(isola_send(p, isola_int(2)));
}
static void *root_thread(void *arg) {
  (void)arg;
  TH_CHECK_OK(isola_run_main(root_entry, isola_null(), "driver"));
  return NULL;
}
static void run_root(isola_handler h) {
  root_handler = h;
  pthread_t th;
  cr_assert(pthread_create(&th, NULL, root_thread, NULL) == 0,
            "pthread_create failed");
  TH_WAIT_GE(&root_done, 1);
  pthread_join(th, NULL);
}

Test(lifecycle, a_send_is_handled_before_what_a_later_spawn_sends) {
  th_vm_init(NULL);
  isola_port r = rec_start();
  run_root(root_send_then_spawn);
  TH_WAIT_GE(&rec_got, 2);
  cr_assert(atomic_load(&root_waited), "the receiver got nothing");
  cr_assert(rec_at(0) == 1 && rec_at(1) == 2,
            "the receiver saw %lld then %lld", (long long)rec_at(0),
            (long long)rec_at(1));
  TH_ASSERT_OK(isola_send(r, isola_int(-1)));
  th_vm_shutdown_ok();
}

Test(lifecycle, a_send_is_not_held_past_the_end_of_its_event) {
  th_vm_init(NULL);
  isola_port r = rec_start();
  run_root(root_two_events);
  cr_assert(atomic_load(&root_waited),
            "a later event of the same turn waited in vain for m1");
  TH_ASSERT_OK(isola_send(r, isola_int(-1)));
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* 18.1: a turn's sends are out before its isolate can be claimed again    */
/* ---------------------------------------------------------------------- */

#ifdef ISOLA_TEST_HOOKS
enum { HOOK_TURN_IDLE = 4 };
static _Atomic bool idle_armed;
static th_counter idle_hits = TH_COUNTER_INIT;
/* Set on the thread whose turn ran the relay's handler.  The hook must not
 * look at the isolate itself: once the turn marked it idle, another thread
 * may run it to its end and free its group (isola_current_info read the
 * group's id there: a use-after-free TSan saw). */
static _Thread_local bool relay_turn;
static void idle_hook(int where) {
  if (where != HOOK_TURN_IDLE) return;
  bool mine = relay_turn;
  relay_turn = false;
  if (!mine || !atomic_exchange(&idle_armed, false)) return;
  th_counter_add(&idle_hits, 1);
  /* The turn has marked its isolate idle: hold this thread until the
   * receiver got something, so a second turn of the same isolate runs on
   * another thread meanwhile. */
  TH_CHECK_WAIT_GE(&rec_got, 1);
}

static void relay_handler(void *ctx, isola_port port, isola_value msg,
                          isola_port reply_to) {
  (void)ctx, (void)reply_to;
  int64_t i = th_int(msg);
  relay_turn = true;
  if (i < 0) {
    TH_CHECK_OK(isola_port_close(port));
    return;
  }
  TH_CHECK_OK(isola_send(atomic_load(&rec.port), isola_int(i)));
  /* The hook holds the end of this turn (the one that sent 1). */
  if (i == 1) atomic_store(&idle_armed, true);
}
static _Atomic isola_port relay_port;
static th_counter relay_ready = TH_COUNTER_INIT;
static void relay_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(relay_handler, NULL, &p));
  atomic_store(&relay_port, p);
  th_counter_add(&relay_ready, 1);
}
static void *rec_root_thread(void *arg) {
  (void)arg;
  TH_CHECK_OK(isola_run_main(rec_entry, isola_null(), "receiver"));
  return NULL;
}

Test(lifecycle, two_turns_of_one_sender_keep_their_order) {
  isola_config cfg;
  isola_config_init(&cfg);
  cfg.workers = 2;
  th_vm_init(&cfg);
  /* The receiver is a root isolate: it runs on its own thread, whatever
   * the pool threads do. */
  pthread_t th;
  cr_assert(pthread_create(&th, NULL, rec_root_thread, NULL) == 0,
            "pthread_create failed");
  TH_WAIT_GE(&rec_ready, 1);
  isola_spawn_options o = {.name = "relay"};
  TH_ASSERT_OK(isola_spawn(relay_entry, isola_null(), &o, NULL));
  TH_WAIT_GE(&relay_ready, 1);
  isola_port relay = atomic_load(&relay_port);
  atomic_store(&isola__test_hook, idle_hook);
  TH_ASSERT_OK(isola_send(relay, isola_int(1)));
  /* The relay's first turn has sent 1 and marked itself idle. */
  TH_WAIT_GE(&idle_hits, 1);
  TH_ASSERT_OK(isola_send(relay, isola_int(2)));
  TH_WAIT_GE(&rec_got, 2);
  atomic_store(&isola__test_hook, NULL);
  cr_assert(rec_at(0) == 1 && rec_at(1) == 2, "the receiver saw %lld then %lld",
            (long long)rec_at(0), (long long)rec_at(1));
  TH_ASSERT_OK(isola_send(relay, isola_int(-1)));
  TH_ASSERT_OK(isola_send(atomic_load(&rec.port), isola_int(-1)));
  pthread_join(th, NULL);
  th_vm_shutdown_ok();
}
#endif

/* ---------------------------------------------------------------------- */
/* 11.8: before-next-event kills and pings keep the order they were sent   */
/* ---------------------------------------------------------------------- */

static _Atomic isola_port plain_port;
static th_counter plain_ready = TH_COUNTER_INIT;
static void plain_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(noop_handler, NULL, &p));
  atomic_store(&plain_port, p);
  th_counter_add(&plain_ready, 1);
}

Test(lifecycle, a_kill_before_the_next_event_drops_the_pings_sent_after_it) {
  th_vm_init(NULL);
  isola_port r = rec_start();
  isola_isolate h;
  TH_ASSERT_OK(isola_spawn(plain_entry, isola_null(), NULL, &h));
  TH_WAIT_GE(&plain_ready, 1);
  TH_ASSERT_OK(isola_add_exit_listener(&h, r, isola_int(99)));
  TH_ASSERT_OK(isola_pause(&h, 0));
  TH_ASSERT_OK(isola_send(atomic_load(&plain_port), isola_int(0)));
  TH_ASSERT_OK(isola_ping(&h, r, isola_int(1), ISOLA_BEFORE_NEXT_EVENT));
  TH_ASSERT_OK(isola_kill(&h, ISOLA_BEFORE_NEXT_EVENT));
  TH_ASSERT_OK(isola_ping(&h, r, isola_int(2), ISOLA_BEFORE_NEXT_EVENT));
  TH_ASSERT_OK(isola_resume(&h, 0));
  /* The exit listener's 99 comes last of all. */
  for (;;) {
    TH_WAIT_GE(&rec_got, 1);
    long n = th_counter_get(&rec_got);
    if (rec_at((int)n - 1) == 99) break;
    TH_WAIT_GE(&rec_got, n + 1);
  }
  cr_assert(th_counter_get(&rec_got) == 2 && rec_at(0) == 1,
            "got %ld responses: %lld %lld %lld", th_counter_get(&rec_got),
            (long long)rec_at(0), (long long)rec_at(1), (long long)rec_at(2));
  TH_ASSERT_OK(isola_send(r, isola_int(-1)));
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* 11.9: isola_exit moves a transferable buffer                            */
/* ---------------------------------------------------------------------- */

static _Atomic(uint8_t *) sent_bytes;
static _Atomic int got_same_bytes = -1;
static th_counter buf_got = TH_COUNTER_INIT;
static th_counter buf_ready = TH_COUNTER_INIT;
static _Atomic isola_port buf_port;
static void buf_handler(void *ctx, isola_port port, isola_value msg,
                        isola_port reply_to) {
  (void)ctx, (void)reply_to;
  uint8_t *data = NULL;
  size_t size = 0;
  TH_CHECK_OK(isola_value_get_buffer(msg, &data, &size));
  atomic_store(&got_same_bytes,
               data == atomic_load(&sent_bytes) && size == (1u << 20));
  TH_CHECK_OK(isola_port_close(port));
  th_counter_add(&buf_got, 1);
}
static void buf_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(buf_handler, NULL, &p));
  atomic_store(&buf_port, p);
  th_counter_add(&buf_ready, 1);
}
static void exiter_entry(isola_value msg) {
  (void)msg;
  isola_buffer *b = isola_buffer_new(1u << 20);
  TH_CHECK(b != NULL);
  memset(isola_buffer_data(b), 7, 1u << 20);
  atomic_store(&sent_bytes, isola_buffer_data(b));
  isola_exit(atomic_load(&buf_port), isola_transfer(&b));
  TH_CHECK(!"isola_exit returned");
}

Test(lifecycle, isola_exit_moves_a_transferable_buffer) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_spawn(buf_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&buf_ready, 1);
  TH_ASSERT_OK(isola_spawn(exiter_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&buf_got, 1);
  cr_assert(atomic_load(&got_same_bytes) == 1,
            "the receiver got a copy, not the buffer sent");
  th_vm_shutdown_ok(); /* LeakSanitizer: the original is not left behind */
}

/* ---------------------------------------------------------------------- */
/* 18.4: what a blocking section posts goes through the VM entry           */
/* ---------------------------------------------------------------------- */

/* (Debug builds assert on every post that the posting thread is online in
 * the epoch; the handler below answers a ping from inside a blocking
 * section, where the thread is offline.) */
static th_counter blocked_in = TH_COUNTER_INIT;
static th_counter pinged = TH_COUNTER_INIT;
static void blocking_handler(void *ctx, isola_port port, isola_value msg,
                             isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  TH_CHECK_OK(isola_blocking_begin());
  th_counter_add(&blocked_in, 1);
  TH_CHECK_WAIT_GE(&pinged, 1);
  TH_CHECK_OK(isola_check_interrupts()); /* answers the ping */
  TH_CHECK_OK(isola_blocking_end());
  TH_CHECK_OK(isola_port_close(port));
}
static _Atomic isola_port blocking_port;
static th_counter blocking_ready = TH_COUNTER_INIT;
static void blocking_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(blocking_handler, NULL, &p));
  atomic_store(&blocking_port, p);
  th_counter_add(&blocking_ready, 1);
}

Test(lifecycle, a_ping_answered_inside_a_blocking_section_is_posted_online) {
  th_vm_init(NULL);
  isola_port r = rec_start();
  isola_isolate h;
  TH_ASSERT_OK(isola_spawn(blocking_entry, isola_null(), NULL, &h));
  TH_WAIT_GE(&blocking_ready, 1);
  TH_ASSERT_OK(isola_send(atomic_load(&blocking_port), isola_null()));
  TH_WAIT_GE(&blocked_in, 1);
  TH_ASSERT_OK(isola_ping(&h, r, isola_int(5), ISOLA_IMMEDIATE));
  th_counter_add(&pinged, 1);
  TH_WAIT_GE(&rec_got, 1);
  cr_assert(rec_at(0) == 5, "got %lld", (long long)rec_at(0));
  TH_ASSERT_OK(isola_send(r, isola_int(-1)));
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* 18.3: entering the VM from a hook nests                                 */
/* ---------------------------------------------------------------------- */

/* (Debug builds assert on every post that the posting thread is online:
 * the root's first send checks that the hook's inner call left the root
 * thread's epoch record online.) */
static _Atomic int hook_send_rc = 1;
static void *entering_group_hook(void *data, uint64_t group) {
  (void)data, (void)group;
  /* Any call that enters the VM; the port names nothing. */
  atomic_store(&hook_send_rc, isola_send(12345, isola_int(1)));
  return NULL;
}
static void nested_root_entry(isola_value msg) {
  (void)msg;
  TH_CHECK_OK(isola_send(atomic_load(&rec.port), isola_int(7)));
}

Test(lifecycle, a_hook_that_enters_the_vm_leaves_the_root_thread_online) {
  isola_config cfg;
  isola_config_init(&cfg);
  cfg.hooks.group_created = entering_group_hook;
  th_vm_init(&cfg);
  isola_port r = rec_start();
  TH_ASSERT_OK(isola_run_main(nested_root_entry, isola_null(), "nested"));
  TH_WAIT_GE(&rec_got, 1);
  cr_assert(atomic_load(&hook_send_rc) == ISOLA_ECLOSED, "hook's send: %s",
            isola_err_name(atomic_load(&hook_send_rc)));
  TH_ASSERT_OK(isola_send(r, isola_int(-1)));
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* 18.5: blocking calls from a hook on a pool thread are refused           */
/* ---------------------------------------------------------------------- */

static isola_value run_one(isola_value v) { return v; }
static void native_noop(void *ctx, isola_port port, isola_value msg,
                        isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
}
static _Atomic int cleanup_run_rc = 1, cleanup_native_rc = 1;
static th_counter cleanup_seen = TH_COUNTER_INIT;
static void blocking_group_cleanup(void *data, uint64_t group, void *gdata) {
  (void)data, (void)group, (void)gdata;
  if (th_counter_get(&cleanup_seen) > 0) return; /* the first group only */
  isola_value res;
  atomic_store(&cleanup_run_rc, isola_run(run_one, isola_int(1), &res));
  if (atomic_load(&cleanup_run_rc) == ISOLA_OK) isola_value_free(&res);
  isola_port np;
  atomic_store(&cleanup_native_rc,
               isola_native_port_new("n", native_noop, NULL, false, &np));
  if (atomic_load(&cleanup_native_rc) == ISOLA_OK)
    isola_native_port_close(np);
  th_counter_add(&cleanup_seen, 1);
}
static void ends_at_once(isola_value msg) { (void)msg; }

Test(lifecycle, blocking_calls_from_a_hook_on_a_pool_thread_are_refused) {
  isola_config cfg;
  isola_config_init(&cfg);
  cfg.hooks.group_cleanup = blocking_group_cleanup;
  th_vm_init(&cfg);
  TH_ASSERT_OK(isola_spawn(ends_at_once, isola_null(), NULL, NULL));
  TH_WAIT_GE(&cleanup_seen, 1);
  cr_assert(atomic_load(&cleanup_run_rc) == ISOLA_EBUSY, "isola_run: %s",
            isola_err_name(atomic_load(&cleanup_run_rc)));
  cr_assert(atomic_load(&cleanup_native_rc) == ISOLA_EBUSY,
            "isola_native_port_new: %s",
            isola_err_name(atomic_load(&cleanup_native_rc)));
  th_vm_shutdown_ok();
}
