/* SPDX-License-Identifier: MIT */
/*
 * isola_supervisor (issue 17 item 3b): the three strategies, the restart
 * policies, restart intensity (storms, giving up), ordered shutdown with
 * its per-child timeout then kill, a child that never ends, and children
 * that do not outlive their owner.
 *
 * Plumbing: an "owner" isolate starts the supervisor from the spec in
 * `cfg` and obeys commands on its port (stop); the callbacks log every
 * event in `ev`.  Children are "kids": each opens a port, publishes it,
 * and obeys commands; a kid whose crash_left is positive crashes in its
 * entry instead (restart storms).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "helpers.h"

TestSuite(supervisor, .timeout = TH_TEST_TIMEOUT_S);

#define KIDS 16

/* ---- the event log ----------------------------------------------------- */

enum { EV_START, EV_EXIT, EV_END };
typedef struct event {
  int kind;
  int index;
  int reason;
  char detail[200];
} event;

#define EV_MAX 4096
static struct {
  pthread_mutex_t mu;
  event e[EV_MAX];
  int n;
} ev = {.mu = PTHREAD_MUTEX_INITIALIZER};
static th_counter ev_count = TH_COUNTER_INIT;
static th_counter ends = TH_COUNTER_INIT;
static th_counter starts[KIDS];
static th_counter exits[KIDS];
static th_counter published[KIDS]; /* ports published by kids */
static th_counter started[KIDS];   /* starts logged by the supervisor */

static void log_event(int kind, int index, int reason, const char *detail) {
  pthread_mutex_lock(&ev.mu);
  TH_CHECK(ev.n < EV_MAX);
  event *e = &ev.e[ev.n++];
  e->kind = kind;
  e->index = index;
  e->reason = reason;
  snprintf(e->detail, sizeof e->detail, "%s", detail ? detail : "");
  pthread_mutex_unlock(&ev.mu);
  th_counter_add(&ev_count, 1);
}

/* The indexes of the events of kind, in order, from event from on. */
static int ev_indexes(int kind, int from, int *out, int max) {
  int k = 0;
  pthread_mutex_lock(&ev.mu);
  for (int i = from; i < ev.n && k < max; i++)
    if (ev.e[i].kind == kind) out[k++] = ev.e[i].index;
  pthread_mutex_unlock(&ev.mu);
  return k;
}

static int ev_n(void) {
  pthread_mutex_lock(&ev.mu);
  int n = ev.n;
  pthread_mutex_unlock(&ev.mu);
  return n;
}

static event ev_last(int kind) {
  event r = {.kind = -1};
  pthread_mutex_lock(&ev.mu);
  for (int i = ev.n - 1; i >= 0; i--)
    if (ev.e[i].kind == kind) {
      r = ev.e[i];
      break;
    }
  pthread_mutex_unlock(&ev.mu);
  return r;
}

/* ---- kids -------------------------------------------------------------- */

enum { K_CRASH = 1, K_NORMAL, K_SPIN, K_STUCK };

static _Atomic isola_port kid_port[KIDS];
static _Atomic int crash_left[KIDS];
static th_counter stuck_release = TH_COUNTER_INIT;
static th_counter stuck_in = TH_COUNTER_INIT;
static th_counter spinning = TH_COUNTER_INIT;

static void kid_cmd(void *ctx, isola_port port, isola_value msg,
                    isola_port reply_to) {
  (void)ctx, (void)reply_to;
  switch (th_int(msg)) {
  case K_CRASH:
    isola_throw("kid crashed on request");
  case K_NORMAL:
    TH_CHECK_OK(isola_port_close(port));
    return;
  case K_SPIN: /* never returns: only an immediate kill ends it */
    th_counter_add(&spinning, 1);
    for (;;) isola_check_interrupts();
  case K_STUCK: /* blocked in C: no kill ends it until released */
    th_counter_add(&stuck_in, 1);
    TH_CHECK_OK(isola_blocking_begin()); /* others run meanwhile */
    TH_CHECK_WAIT_GE(&stuck_release, 1);
    TH_CHECK_OK(isola_blocking_end());
    return;
  }
}

static void kid_entry(isola_value msg) {
  int i = (int)th_int(msg);
  th_counter_add(&starts[i], 1);
  if (atomic_load(&crash_left[i]) > 0) {
    atomic_fetch_sub(&crash_left[i], 1);
    isola_throw("kid %d crashed at start", i);
  }
  isola_port p;
  TH_CHECK_OK(isola_port_open(kid_cmd, NULL, &p));
  atomic_store(&kid_port[i], p);
  th_counter_add(&published[i], 1);
}

/* Sends cmd to kid i once it has published its port n times. */
static void kid_send(int i, long n, int64_t cmd) {
  TH_WAIT_GE(&published[i], n);
  TH_ASSERT_OK(isola_send(atomic_load(&kid_port[i]), isola_int(cmd)));
}

/* ---- the owner --------------------------------------------------------- */

static struct {
  isola_strategy strategy;
  uint32_t max_restarts, period_ms;
  int n;
  isola_restart restart[KIDS];
  uint32_t shutdown_ms[KIDS];
  bool default_end; /* on_end NULL */
} cfg;

static isola_supervisor *the_sup; /* the owner's only */
static _Atomic isola_port owner_port;
static th_counter owner_ready = TH_COUNTER_INIT;
static _Atomic int start_rc = 1;

static void on_start(void *ctx, size_t i, const isola_isolate *h) {
  (void)ctx;
  TH_CHECK(h->control_port != ISOLA_PORT_NONE);
  log_event(EV_START, (int)i, 0, NULL);
  th_counter_add(&started[i], 1);
}
static void on_exit_cb(void *ctx, size_t i, isola_port id, int reason,
                       const char *detail) {
  (void)ctx, (void)id;
  log_event(EV_EXIT, (int)i, reason, detail);
  th_counter_add(&exits[i], 1);
}
static void on_end(void *ctx, int reason, const char *detail) {
  (void)ctx;
  the_sup = NULL;
  log_event(EV_END, -1, reason, detail);
  TH_CHECK_OK(isola_port_close(atomic_load(&owner_port)));
  th_counter_add(&ends, 1);
}

enum { O_STOP = 1, O_CHECK };
static _Atomic uint64_t restarts_seen;

static void owner_cmd(void *ctx, isola_port port, isola_value msg,
                      isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  switch (th_int(msg)) {
  case O_STOP:
    if (the_sup) TH_CHECK_OK(isola_supervisor_stop(the_sup));
    if (the_sup) TH_CHECK_OK(isola_supervisor_stop(the_sup)); /* no-op */
    break;
  case O_CHECK:
    atomic_store(&restarts_seen, isola_supervisor_restarts(the_sup));
    th_counter_add(&owner_ready, 1);
    break;
  }
}

static void owner_entry(isola_value msg) {
  (void)msg;
  isola_child_spec kids[KIDS];
  for (int i = 0; i < cfg.n; i++)
    kids[i] = (isola_child_spec){.name = "kid",
                                 .entry = kid_entry,
                                 .arg = isola_int(i),
                                 .restart = cfg.restart[i],
                                 .shutdown_ms = cfg.shutdown_ms[i]};
  isola_supervisor_spec spec = {.strategy = cfg.strategy,
                                .max_restarts = cfg.max_restarts,
                                .period_ms = cfg.period_ms,
                                .children = kids,
                                .nchildren = (size_t)cfg.n,
                                .on_child_start = on_start,
                                .on_child_exit = on_exit_cb,
                                .on_end = cfg.default_end ? NULL : on_end};
  isola_port p;
  TH_CHECK_OK(isola_port_open(owner_cmd, NULL, &p));
  atomic_store(&owner_port, p);
  if (cfg.default_end) TH_CHECK_OK(isola_port_close(p)); /* sup keeps it */
  int rc = isola_supervisor_start(&spec, &the_sup);
  atomic_store(&start_rc, rc);
  th_counter_add(&owner_ready, 1);
}

static isola_isolate owner_start(void) {
  isola_isolate h;
  isola_spawn_options o = {.name = "owner"};
  long r = th_counter_get(&owner_ready);
  TH_ASSERT_OK(isola_spawn(owner_entry, isola_null(), &o, &h));
  TH_WAIT_GE(&owner_ready, r + 1);
  TH_ASSERT_OK(atomic_load(&start_rc));
  return h;
}

static void owner_stop(void) {
  TH_ASSERT_OK(isola_send(atomic_load(&owner_port), isola_int(O_STOP)));
  TH_WAIT_GE(&ends, 1);
}

static uint64_t owner_restarts(void) {
  long r = th_counter_get(&owner_ready);
  TH_ASSERT_OK(isola_send(atomic_load(&owner_port), isola_int(O_CHECK)));
  TH_WAIT_GE(&owner_ready, r + 1);
  return atomic_load(&restarts_seen);
}

static void setup(isola_strategy st, int n, isola_restart r) {
  memset(&cfg, 0, sizeof cfg);
  cfg.strategy = st;
  cfg.n = n;
  cfg.max_restarts = 100;
  cfg.period_ms = 60000;
  for (int i = 0; i < n; i++) {
    cfg.restart[i] = r;
    cfg.shutdown_ms[i] = 5000;
  }
}

static void expect_seq(const int *got, int ngot, const int *want, int nwant,
                       const char *what) {
  cr_assert(ngot == nwant, "%s: %d events, expected %d", what, ngot, nwant);
  for (int i = 0; i < nwant; i++)
    cr_assert(got[i] == want[i], "%s: event %d is child %d, expected %d",
              what, i, got[i], want[i]);
}

/* ---- strategies -------------------------------------------------------- */

Test(supervisor, one_for_one_restarts_only_the_child_that_ended) {
  th_vm_init(NULL);
  setup(ISOLA_ONE_FOR_ONE, 3, ISOLA_RESTART_PERMANENT);
  owner_start();
  int got[16];
  expect_seq(got, ev_indexes(EV_START, 0, got, 16), (int[]){0, 1, 2}, 3,
             "first starts");
  int mark = ev_n();
  kid_send(1, 1, K_CRASH);
  TH_WAIT_GE(&started[1], 2);
  expect_seq(got, ev_indexes(EV_START, mark, got, 16), (int[]){1}, 1,
             "restart");
  cr_assert(ev_last(EV_EXIT).reason == ISOLA_EXIT_ERROR, "crash reason");
  cr_assert(strstr(ev_last(EV_EXIT).detail, "kid crashed on request"),
            "detail");
  cr_assert(owner_restarts() == 1, "one restart");
  mark = ev_n();
  owner_stop();
  /* Ordered shutdown: reverse start order, then the end. */
  expect_seq(got, ev_indexes(EV_EXIT, mark, got, 16), (int[]){2, 1, 0}, 3,
             "shutdown order");
  cr_assert(ev_last(EV_END).reason == ISOLA_EXIT_NORMAL, "end reason");
  cr_assert(th_counter_get(&starts[0]) == 1 && th_counter_get(&starts[2]) == 1,
            "siblings untouched");
  th_vm_shutdown_ok();
}

Test(supervisor, one_for_all_stops_the_others_in_reverse_and_starts_all) {
  th_vm_init(NULL);
  setup(ISOLA_ONE_FOR_ALL, 4, ISOLA_RESTART_PERMANENT);
  owner_start();
  int got[32];
  int mark = ev_n();
  kid_send(1, 1, K_CRASH);
  for (int i = 0; i < 4; i++) TH_WAIT_GE(&started[i], 2);
  /* Child 1 ended; then 3, 2, 0 were stopped, then all started. */
  expect_seq(got, ev_indexes(EV_EXIT, mark, got, 32), (int[]){1, 3, 2, 0}, 4,
             "exits");
  expect_seq(got, ev_indexes(EV_START, mark, got, 32), (int[]){0, 1, 2, 3}, 4,
             "starts");
  cr_assert(owner_restarts() == 1, "one restart for four children");
  owner_stop();
  th_vm_shutdown_ok();
}

Test(supervisor, rest_for_one_takes_the_later_children_along) {
  th_vm_init(NULL);
  setup(ISOLA_REST_FOR_ONE, 4, ISOLA_RESTART_PERMANENT);
  owner_start();
  int got[32];
  int mark = ev_n();
  kid_send(1, 1, K_CRASH);
  for (int i = 1; i < 4; i++) TH_WAIT_GE(&started[i], 2);
  expect_seq(got, ev_indexes(EV_EXIT, mark, got, 32), (int[]){1, 3, 2}, 3,
             "exits");
  expect_seq(got, ev_indexes(EV_START, mark, got, 32), (int[]){1, 2, 3}, 3,
             "starts");
  cr_assert(th_counter_get(&starts[0]) == 1, "child 0 untouched");
  owner_stop();
  th_vm_shutdown_ok();
}

/* ---- restart policies -------------------------------------------------- */

Test(supervisor, restart_policies) {
  th_vm_init(NULL);
  setup(ISOLA_ONE_FOR_ONE, 5, ISOLA_RESTART_PERMANENT);
  cfg.restart[1] = ISOLA_RESTART_TRANSIENT;
  cfg.restart[2] = ISOLA_RESTART_TRANSIENT;
  cfg.restart[3] = ISOLA_RESTART_TEMPORARY;
  cfg.restart[4] = ISOLA_RESTART_TEMPORARY;
  owner_start();
  kid_send(0, 1, K_NORMAL); /* permanent: restarted even so */
  kid_send(1, 1, K_NORMAL); /* transient, normal: not restarted */
  kid_send(2, 1, K_CRASH);  /* transient, error: restarted */
  kid_send(3, 1, K_CRASH);  /* temporary: never restarted */
  kid_send(4, 1, K_NORMAL);
  for (int i = 0; i < 5; i++) TH_WAIT_GE(&exits[i], 1);
  TH_WAIT_GE(&starts[0], 2);
  TH_WAIT_GE(&starts[2], 2);
  cr_assert(owner_restarts() == 2, "two restarts");
  cr_assert(th_counter_get(&starts[1]) == 1 &&
                th_counter_get(&starts[3]) == 1 &&
                th_counter_get(&starts[4]) == 1,
            "no restart for the others");
  int mark = ev_n(), got[16];
  owner_stop();
  expect_seq(got, ev_indexes(EV_EXIT, mark, got, 16), (int[]){2, 0}, 2,
             "only the running ones are stopped");
  th_vm_shutdown_ok();
}

/* ---- intensity --------------------------------------------------------- */

Test(supervisor, intensity_passed_ends_the_supervisor_with_a_reason) {
  th_vm_init(NULL);
  setup(ISOLA_ONE_FOR_ONE, 3, ISOLA_RESTART_PERMANENT);
  cfg.max_restarts = 3;
  owner_start();
  /* Kid 1's first start must not see the crashes meant for its restarts:
   * owner_start() waits for the owner, not for the kids' entries. */
  TH_WAIT_GE(&published[1], 1);
  atomic_store(&crash_left[1], 1000); /* every start from now crashes */
  kid_send(1, 1, K_CRASH);
  TH_WAIT_GE(&ends, 1);
  event e = ev_last(EV_END);
  cr_assert(e.reason == ISOLA_EXIT_ERROR, "end reason %d", e.reason);
  cr_assert(strstr(e.detail, "more than 3 restarts"), "detail: %s", e.detail);
  cr_assert(th_counter_get(&starts[1]) == 4, "1 + 3 restarts, got %ld",
            th_counter_get(&starts[1]));
  /* The siblings were stopped, in reverse order. */
  cr_assert(th_counter_get(&exits[0]) == 1 && th_counter_get(&exits[2]) == 1,
            "siblings stopped");
  th_vm_shutdown_ok();
}

static th_counter owner_gone = TH_COUNTER_INIT;
static _Atomic int owner_reason = -1;
static th_counter kids_gone = TH_COUNTER_INIT;
static void on_cleanup(void *data, const isola_isolate_info *info) {
  (void)data;
  if (strcmp(info->name, "owner") == 0) {
    atomic_store(&owner_reason, info->exit_reason);
    th_counter_add(&owner_gone, 1);
  } else if (strcmp(info->name, "kid") == 0) {
    th_counter_add(&kids_gone, 1);
  }
}

Test(supervisor, giving_up_without_on_end_ends_the_owner_with_the_error) {
  isola_config c;
  isola_config_init(&c);
  c.hooks.isolate_cleanup = on_cleanup;
  th_vm_init(&c);
  setup(ISOLA_ONE_FOR_ALL, 2, ISOLA_RESTART_PERMANENT);
  cfg.max_restarts = 0; /* no restart allowed */
  cfg.default_end = true;
  owner_start();
  kid_send(0, 1, K_CRASH);
  TH_WAIT_GE(&owner_gone, 1);
  cr_assert(atomic_load(&owner_reason) == ISOLA_EXIT_ERROR, "owner: %d",
            atomic_load(&owner_reason));
  TH_WAIT_GE(&kids_gone, 2);
  th_vm_shutdown_ok();
}

Test(supervisor, a_restart_storm_within_the_intensity_recovers) {
  th_vm_init(NULL);
  int n = KIDS, k = (int)TH_SIZE(20);
  setup(ISOLA_ONE_FOR_ONE, n, ISOLA_RESTART_PERMANENT);
  cfg.max_restarts = (uint32_t)(n * k);
  for (int i = 0; i < n; i++) atomic_store(&crash_left[i], k);
  owner_start();
  for (int i = 0; i < n; i++) TH_WAIT_GE(&starts[i], k + 1);
  cr_assert(owner_restarts() == (uint64_t)(n * k), "%llu restarts",
            (unsigned long long)owner_restarts());
  cr_assert(th_counter_get(&ends) == 0, "not ended");
  owner_stop();
  cr_assert(ev_last(EV_END).reason == ISOLA_EXIT_NORMAL, "normal end");
  th_vm_shutdown_ok();
}

Test(supervisor, a_storm_under_one_for_all_gives_up_cleanly) {
  th_vm_init(NULL);
  setup(ISOLA_ONE_FOR_ALL, 8, ISOLA_RESTART_PERMANENT);
  cfg.max_restarts = 5;
  for (int i = 0; i < 8; i++) atomic_store(&crash_left[i], 1000);
  /* Every child crashes at every start: crashes arrive while restarts
   * are under way. */
  isola_isolate h;
  isola_spawn_options o = {.name = "owner"};
  TH_ASSERT_OK(isola_spawn(owner_entry, isola_null(), &o, &h));
  TH_WAIT_GE(&ends, 1);
  event e = ev_last(EV_END);
  cr_assert(e.reason == ISOLA_EXIT_ERROR && strstr(e.detail, "more than 5"),
            "end: %d %s", e.reason, e.detail);
  th_vm_shutdown_ok();
}

/* ---- shutdown: timeouts, kills, a child that never ends --------------- */

Test(supervisor, shutdown_kills_a_spinning_child_and_abandons_a_stuck_one) {
  th_vm_init(NULL);
  setup(ISOLA_ONE_FOR_ONE, 4, ISOLA_RESTART_PERMANENT);
  /* Only the stuck child is meant to run out of time (twice); the spinner
   * runs out once, then its immediate kill lands long before a second
   * second; the idle ones end at the polite kill. */
  cfg.shutdown_ms[2] = 20;
  cfg.shutdown_ms[1] = 1000;
  owner_start();
  kid_send(1, 1, K_SPIN);
  kid_send(2, 1, K_STUCK);
  TH_WAIT_GE(&spinning, 1);
  TH_WAIT_GE(&stuck_in, 1);
  int mark = ev_n(), got[16];
  owner_stop();
  expect_seq(got, ev_indexes(EV_EXIT, mark, got, 16), (int[]){3, 2, 1, 0}, 4,
             "shutdown order");
  pthread_mutex_lock(&ev.mu);
  int reasons[4] = {0};
  for (int i = mark; i < ev.n; i++)
    if (ev.e[i].kind == EV_EXIT) reasons[ev.e[i].index] = ev.e[i].reason;
  pthread_mutex_unlock(&ev.mu);
  cr_assert(reasons[3] == ISOLA_EXIT_KILLED, "3: %d", reasons[3]);
  cr_assert(reasons[2] == ISOLA_SUPERVISOR_ABANDONED, "2: %d", reasons[2]);
  cr_assert(reasons[1] == ISOLA_EXIT_KILLED, "1: %d", reasons[1]);
  cr_assert(reasons[0] == ISOLA_EXIT_KILLED, "0: %d", reasons[0]);
  th_counter_add(&stuck_release, 1); /* let it go, so the VM can stop */
  th_vm_shutdown_ok();
}

Test(supervisor, children_do_not_outlive_their_owner) {
  isola_config c;
  isola_config_init(&c);
  c.hooks.isolate_cleanup = on_cleanup;
  th_vm_init(&c);
  setup(ISOLA_ONE_FOR_ONE, 3, ISOLA_RESTART_PERMANENT);
  isola_isolate h = owner_start();
  TH_ASSERT_OK(isola_kill(&h, ISOLA_IMMEDIATE));
  TH_WAIT_GE(&kids_gone, 3);
  TH_WAIT_GE(&owner_gone, 1);
  /* A kid may be killed before its entry ran (the owner dies at once):
   * at most one start each, never a restart. */
  for (int i = 0; i < 3; i++)
    cr_assert(th_counter_get(&starts[i]) <= 1, "kid %d restarted (%ld starts)",
              i, th_counter_get(&starts[i]));
  th_vm_shutdown_ok();
}

/* ---- bad input --------------------------------------------------------- */

static th_counter bad_done = TH_COUNTER_INIT;
static void bad_entry(isola_value msg) {
  (void)msg;
  isola_supervisor *s = NULL;
  isola_child_spec k = {.entry = kid_entry, .arg = isola_int(0)};
  isola_supervisor_spec spec = {.children = &k, .nchildren = 1};
  TH_CHECK_RC(isola_supervisor_start(NULL, &s), ISOLA_EINVAL);
  TH_CHECK_RC(isola_supervisor_start(&spec, NULL), ISOLA_EINVAL);
  spec.nchildren = 0;
  TH_CHECK_RC(isola_supervisor_start(&spec, &s), ISOLA_EINVAL);
  spec.nchildren = 1;
  spec.strategy = (isola_strategy)7;
  TH_CHECK_RC(isola_supervisor_start(&spec, &s), ISOLA_EINVAL);
  spec.strategy = ISOLA_ONE_FOR_ONE;
  k.entry = NULL;
  TH_CHECK_RC(isola_supervisor_start(&spec, &s), ISOLA_EINVAL);
  k.entry = kid_entry;
  k.restart = (isola_restart)9;
  TH_CHECK_RC(isola_supervisor_start(&spec, &s), ISOLA_EINVAL);
  k.restart = ISOLA_RESTART_TEMPORARY;
  k.arg = isola_strn("\xff", 1); /* not UTF-8 */
  TH_CHECK_RC(isola_supervisor_start(&spec, &s), ISOLA_EINVAL);
  TH_CHECK(s == NULL);
  TH_CHECK_RC(isola_supervisor_stop(NULL), ISOLA_EINVAL);
  k.arg = isola_int(0);
  TH_CHECK_OK(isola_supervisor_start(&spec, &s));
  isola_isolate h;
  TH_CHECK_RC(isola_supervisor_child(s, 1, &h), ISOLA_ERANGE);
  TH_CHECK_RC(isola_supervisor_child(s, 0, NULL), ISOLA_EINVAL);
  TH_CHECK_OK(isola_supervisor_child(s, 0, &h));
  TH_CHECK_OK(isola_supervisor_stop(s));
  th_counter_add(&bad_done, 1);
}

Test(supervisor, bad_arguments) {
  th_vm_init(NULL);
  isola_child_spec k = {.entry = kid_entry};
  isola_supervisor_spec spec = {.children = &k, .nchildren = 1};
  isola_supervisor *s;
  TH_ASSERT_RC(isola_supervisor_start(&spec, &s), ISOLA_ENOTISOLATE);
  TH_ASSERT_RC(isola_supervisor_stop(NULL), ISOLA_ENOTISOLATE);
  TH_ASSERT_OK(isola_spawn(bad_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&bad_done, 1);
  th_vm_shutdown_ok();
}

/* Another isolate's supervisor is refused. */
static _Atomic(isola_supervisor *) foreign;
static th_counter foreign_done = TH_COUNTER_INIT;
static void foreign_entry(isola_value msg) {
  (void)msg;
  isola_isolate h;
  TH_CHECK_RC(isola_supervisor_stop(atomic_load(&foreign)), ISOLA_ENOTOWNER);
  TH_CHECK_RC(isola_supervisor_child(atomic_load(&foreign), 0, &h),
              ISOLA_ENOTOWNER);
  th_counter_add(&foreign_done, 1);
}

Test(supervisor, another_isolate_cannot_drive_it) {
  th_vm_init(NULL);
  setup(ISOLA_ONE_FOR_ONE, 1, ISOLA_RESTART_PERMANENT);
  owner_start();
  atomic_store(&foreign, the_sup);
  TH_ASSERT_OK(isola_spawn(foreign_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&foreign_done, 1);
  owner_stop();
  th_vm_shutdown_ok();
}
