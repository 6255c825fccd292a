/* SPDX-License-Identifier: MIT */
/*
 * test_call.c — request and response (issue 17 items 2, 4, 7): a spawn
 * that comes with its port, isola_call from an isolate (reply or timeout,
 * exactly once, late replies dropped), isola_call_wait and receivers on
 * plain threads (timeouts, VM shutdown while waiting, bad input), the root
 * entry with a context, isola_run options and tagged completions.
 */
#include "helpers.h"

TestSuite(call, .timeout = TH_TEST_TIMEOUT_S);

/* A server: answers every int with its double, to reply_to. */
static void doubler(void *ctx, isola_port port, isola_value msg,
                    isola_port reply_to) {
  (void)ctx, (void)port;
  if (!reply_to)
    return;
  /* ECLOSED: the caller timed out and closed its reply port. */
  int rc = isola_send(reply_to, isola_int(th_int(msg) * 2));
  TH_CHECKF(rc == ISOLA_OK || rc == ISOLA_ECLOSED, "%s", isola_err_name(rc));
}

/* A server that never answers. */
static void silent(void *ctx, isola_port port, isola_value msg,
                   isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
}

/* ---- isola_spawn_port --------------------------------------------------- */

Test(call, spawn_port_gives_a_port_to_send_to_at_once) {
  th_vm_init(NULL);
  isola_isolate h;
  isola_port p;
  TH_ASSERT_OK(
      isola_spawn_port(NULL, isola_null(), doubler, NULL, NULL, &h, &p));
  cr_assert(p != ISOLA_PORT_NONE && h.control_port != ISOLA_PORT_NONE, "%s",
            "p != ISOLA_PORT_NONE && h.control_port != ISOLA_PORT_NONE");
  isola_value r;
  TH_ASSERT_OK(isola_call_wait(p, isola_int(21), TH_WAIT_MS, &r));
  cr_assert((th_int(r)) == (42), "%s", "th_int(r) == 42");
  isola_value_free(&r);
  TH_ASSERT_OK(isola_kill(&h, ISOLA_IMMEDIATE));
  th_vm_shutdown_ok();
}

static _Atomic int entry_ran;

static void entry_marks(isola_value m) {
  (void)m;
  atomic_store(&entry_ran, 1);
}

static void checks_entry_ran(void *ctx, isola_port port, isola_value msg,
                             isola_port reply_to) {
  (void)ctx, (void)port, (void)msg;
  TH_CHECK(atomic_load(&entry_ran) == 1); /* the entry always runs first */
  TH_CHECK_OK(isola_send(reply_to, isola_bool(true)));
}

Test(call, spawn_port_of_a_paused_isolate_queues_until_resumed) {
  th_vm_init(NULL);
  isola_spawn_options o = {.name = "paused", .paused = true};
  isola_isolate h;
  isola_port p;
  TH_ASSERT_OK(isola_spawn_port(entry_marks, isola_null(), checks_entry_ran,
                                NULL, &o, &h, &p));
  isola_receiver *r;
  TH_ASSERT_OK(isola_receiver_new(NULL, &r));
  TH_ASSERT_OK(isola_send_reply(p, isola_null(), isola_receiver_port(r)));
  isola_value v;
  /* Paused: the entry has not run and nothing is answered. */
  TH_ASSERT_RC(isola_receiver_wait(r, 0, &v, NULL), ISOLA_ETIMEDOUT);
  cr_assert((atomic_load(&entry_ran)) == (0), "%s",
            "atomic_load(&entry_ran) == 0");
  TH_ASSERT_OK(isola_resume(&h, 0));
  TH_ASSERT_OK(isola_receiver_wait(r, TH_WAIT_MS, &v, NULL));
  cr_assert(v.kind == ISOLA_BOOL && v.as.b, "%s",
            "v.kind == ISOLA_BOOL && v.as.b");
  isola_value_free(&v);
  isola_receiver_close(r);
  TH_ASSERT_OK(isola_kill(&h, ISOLA_IMMEDIATE));
  th_vm_shutdown_ok();
}

Test(call, spawn_port_rejects_bad_input) {
  isola_port p = 99;
  TH_ASSERT_RC(
      isola_spawn_port(NULL, isola_null(), doubler, NULL, NULL, NULL, &p),
      ISOLA_ENOVM);
  cr_assert((p) == (ISOLA_PORT_NONE), "%s", "p == ISOLA_PORT_NONE");
  th_vm_init(NULL);
  TH_ASSERT_RC(isola_spawn_port(NULL, isola_null(), NULL, NULL, NULL, NULL, &p),
               ISOLA_EINVAL);
  cr_assert(strstr(isola_error_detail(), "handler"), "%s",
            isola_error_detail());
  TH_ASSERT_RC(
      isola_spawn_port(NULL, isola_null(), doubler, NULL, NULL, NULL, NULL),
      ISOLA_EINVAL);
  const char bad[] = {'o', 'k', (char)0xff, 0};
  TH_ASSERT_RC(
      isola_spawn_port(NULL, isola_str(bad), doubler, NULL, NULL, NULL, &p),
      ISOLA_EINVAL);
  cr_assert((p) == (ISOLA_PORT_NONE), "%s", "p == ISOLA_PORT_NONE");
  cr_assert((isola_live_isolates()) == (0), "%s",
            "isola_live_isolates() == 0"); /* nothing was started */
  th_vm_shutdown_ok();
}

/* ---- isola_call from an isolate ---------------------------------------- */

typedef struct call_test {
  isola_port server; /* answers */
  isola_port quiet;  /* never answers */
  long n;            /* calls to make */
  uint64_t timeout;  /* ms */
  _Atomic int *seen; /* per call: callbacks run */
  _Atomic long ok, timed_out;
} call_test;

typedef struct one_call {
  call_test *t;
  long index;
} one_call;

static void count_done(void *ctx, int status, isola_value reply) {
  one_call *c = ctx;
  call_test *t = c->t;
  TH_CHECKF(atomic_fetch_add(&t->seen[c->index], 1) == 0,
            "call %ld completed twice", c->index);
  if (status == ISOLA_OK) {
    TH_CHECK(th_int(reply) == 2 * c->index);
    atomic_fetch_add(&t->ok, 1);
  } else {
    TH_CHECK_RC(status, ISOLA_ETIMEDOUT);
    TH_CHECK(reply.kind == ISOLA_NULL);
    atomic_fetch_add(&t->timed_out, 1);
  }
}

static void caller_main(void *ctx, isola_value msg) {
  (void)msg;
  call_test *t = ctx;
  one_call *calls = isola_alloc(sizeof *calls * (size_t)t->n);
  for (long i = 0; i < t->n; i++) {
    calls[i] = (one_call){t, i};
    bool quiet = t->quiet && (i % 2);
    /* The answered calls wait as long as it takes, so the outcome of each
     * call does not depend on the machine's speed. */
    TH_CHECK_OK(isola_call(quiet ? t->quiet : t->server, isola_int(i),
                           quiet || !t->quiet ? t->timeout : ISOLA_FOREVER,
                           count_done, &calls[i]));
  }
  /* The pending calls keep this root isolate alive until each is done. */
}

Test(call, call_gets_the_reply_or_the_timeout_once_each) {
  th_vm_init(NULL);
  call_test t = {.n = 20, .timeout = 100};
  TH_ASSERT_OK(isola_spawn_port(NULL, isola_null(), doubler, NULL, NULL, NULL,
                                &t.server));
  TH_ASSERT_OK(
      isola_spawn_port(NULL, isola_null(), silent, NULL, NULL, NULL, &t.quiet));
  _Atomic int seen[20] = {0};
  t.seen = seen;
  isola_spawn_options o = {.name = "caller"};
  TH_ASSERT_OK(isola_run_main_ctx(caller_main, &t, isola_null(), &o));
  for (int i = 0; i < 20; i++)
    cr_assert((atomic_load(&seen[i])) == (1), "%s",
              "atomic_load(&seen[i]) == 1");
  cr_assert((atomic_load(&t.ok)) == (10), "%s", "atomic_load(&t.ok) == 10");
  cr_assert((atomic_load(&t.timed_out)) == (10), "%s",
            "atomic_load(&t.timed_out) == 10");
  th_vm_shutdown_ok();
}

Test(call, timeouts_racing_replies_complete_each_call_exactly_once) {
  th_vm_init(NULL);
  call_test t = {.n = TH_SIZE(4000), .timeout = 1};
  TH_ASSERT_OK(isola_spawn_port(NULL, isola_null(), doubler, NULL, NULL, NULL,
                                &t.server));
  t.seen = calloc((size_t)t.n, sizeof *t.seen);
  TH_ASSERT_OK(isola_run_main_ctx(caller_main, &t, isola_null(), NULL));
  for (long i = 0; i < t.n; i++)
    cr_assert((atomic_load(&t.seen[i])) == (1), "call %ld: %d", i,
              atomic_load(&t.seen[i]));
  cr_assert((atomic_load(&t.ok) + atomic_load(&t.timed_out)) == (t.n), "%s",
            "atomic_load(&t.ok) + atomic_load(&t.timed_out) == t.n");
  cr_log_info("%ld replies, %ld timeouts", atomic_load(&t.ok),
              atomic_load(&t.timed_out));
  free(t.seen);
  th_vm_shutdown_ok();
}

/* The late replier keeps the reply port of the first request and answers
 * it only when told to, after the caller has timed out. */
static isola_port kept_reply_to;
static th_counter late_rc_told = TH_COUNTER_INIT;
static _Atomic int late_rc;

static void late_replier(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx, (void)port;
  if (msg.kind == ISOLA_INT) {
    kept_reply_to = reply_to;
    return;
  }
  /* "now": reply to a call that has timed out. */
  atomic_store(&late_rc, isola_send(kept_reply_to, isola_int(1)));
  th_counter_add(&late_rc_told, 1);
  isola_port_close(port);
}

typedef struct late_test {
  isola_port server;
  _Atomic int done_calls;
} late_test;

static void late_done(void *ctx, int status, isola_value reply) {
  late_test *t = ctx;
  TH_CHECK_RC(status, ISOLA_ETIMEDOUT);
  TH_CHECK(reply.kind == ISOLA_NULL);
  TH_CHECK(atomic_fetch_add(&t->done_calls, 1) == 0);
  TH_CHECK_OK(isola_send(t->server, isola_str("now")));
}

static void late_main(void *ctx, isola_value msg) {
  (void)msg;
  late_test *t = ctx;
  TH_CHECK_OK(isola_call(t->server, isola_int(7), 20, late_done, t));
}

Test(call, a_reply_after_the_timeout_is_dropped) {
  th_vm_init(NULL);
  late_test t = {0};
  TH_ASSERT_OK(isola_spawn_port(NULL, isola_null(), late_replier, NULL, NULL,
                                NULL, &t.server));
  TH_ASSERT_OK(isola_run_main_ctx(late_main, &t, isola_null(), NULL));
  TH_WAIT_GE(&late_rc_told, 1);
  cr_assert((atomic_load(&t.done_calls)) == (1), "%s",
            "atomic_load(&t.done_calls) == 1");
  TH_ASSERT_RC(atomic_load(&late_rc), ISOLA_ECLOSED);
  th_vm_shutdown_ok();
}

/* Pending calls of an isolate that ends are dropped, not leaked (the
 * shutdown checks for leaks) and never completed. */
static _Atomic int never_done;

static void must_not_run(void *ctx, int status, isola_value reply) {
  (void)ctx, (void)status, (void)reply;
  atomic_store(&never_done, 1);
}

static void exits_with_calls_pending(void *ctx, isola_value msg) {
  isola_port quiet = *(isola_port *)ctx;
  (void)msg;
  for (int i = 0; i < 5; i++)
    TH_CHECK_OK(
        isola_call(quiet, isola_int(i), ISOLA_FOREVER, must_not_run, NULL));
  TH_CHECK_OK(isola_call(quiet, isola_int(9), 10, must_not_run, NULL));
  isola_exit(quiet, isola_str("bye"));
}

Test(call, an_isolate_that_ends_drops_its_pending_calls) {
  th_vm_init(NULL);
  isola_port quiet;
  TH_ASSERT_OK(
      isola_spawn_port(NULL, isola_null(), silent, NULL, NULL, NULL, &quiet));
  TH_ASSERT_OK(
      isola_run_main_ctx(exits_with_calls_pending, &quiet, isola_null(), NULL));
  cr_assert((atomic_load(&never_done)) == (0), "%s",
            "atomic_load(&never_done) == 0");
  th_vm_shutdown_ok();
}

static th_counter bad_calls_checked = TH_COUNTER_INIT;

static void bad_calls(void *ctx, isola_value msg) {
  (void)msg;
  isola_port server = *(isola_port *)ctx;
  TH_CHECK_RC(isola_call(server, isola_null(), 10, NULL, NULL), ISOLA_EINVAL);
  TH_CHECK_RC(isola_call(ISOLA_PORT_NONE, isola_null(), 10, must_not_run, NULL),
              ISOLA_EINVAL);
  TH_CHECK_RC(isola_call(server, isola_null(), 0, must_not_run, NULL),
              ISOLA_EINVAL);
  TH_CHECK(strstr(isola_error_detail(), "timeout"));
  const char bad[] = {(char)0xc0, (char)0x80, 0};
  isola_value items[2] = {isola_int(1), isola_str(bad)};
  TH_CHECK_RC(isola_call(server, isola_list(items, 2), 10, must_not_run, NULL),
              ISOLA_EINVAL);
  TH_CHECKF(strstr(isola_error_detail(), "value[1]") &&
                strstr(isola_error_detail(), "UTF-8"),
            "%s", isola_error_detail());
  /* A closed port: the call fails at once and done never runs. */
  isola_port gone;
  TH_CHECK_OK(isola_port_open(silent, NULL, &gone));
  TH_CHECK_OK(isola_port_close(gone));
  TH_CHECK_RC(isola_call(gone, isola_null(), 10, must_not_run, NULL),
              ISOLA_ECLOSED);
  th_counter_add(&bad_calls_checked, 1);
  /* Nothing is pending: the root ends when this returns. */
}

Test(call, call_rejects_bad_input_and_runs_nothing) {
  th_vm_init(NULL);
  isola_port server;
  TH_ASSERT_OK(
      isola_spawn_port(NULL, isola_null(), doubler, NULL, NULL, NULL, &server));
  TH_ASSERT_RC(isola_call(server, isola_null(), 10, must_not_run, NULL),
               ISOLA_ENOTISOLATE);
  TH_ASSERT_OK(isola_run_main_ctx(bad_calls, &server, isola_null(), NULL));
  TH_WAIT_GE(&bad_calls_checked, 1);
  cr_assert((atomic_load(&never_done)) == (0), "%s",
            "atomic_load(&never_done) == 0");
  th_vm_shutdown_ok();
}

/* ---- isola_call_wait and receivers on plain threads --------------------- */

Test(call, call_wait_times_out_and_a_late_reply_is_dropped) {
  th_vm_init(NULL);
  isola_port quiet;
  TH_ASSERT_OK(isola_spawn_port(NULL, isola_null(), late_replier, NULL, NULL,
                                NULL, &quiet));
  isola_value r = isola_int(5);
  TH_ASSERT_RC(isola_call_wait(quiet, isola_int(1), 20, &r), ISOLA_ETIMEDOUT);
  cr_assert((r.kind) == (ISOLA_NULL), "%s", "r.kind == ISOLA_NULL");
  TH_ASSERT_OK(isola_send(quiet, isola_str("now")));
  TH_WAIT_GE(&late_rc_told, 1);
  TH_ASSERT_RC(atomic_load(&late_rc), ISOLA_ECLOSED);
  th_vm_shutdown_ok();
}

static void call_wait_in_isolate(void *ctx, isola_value msg) {
  (void)msg;
  isola_value r;
  TH_CHECK_RC(isola_call_wait(*(isola_port *)ctx, isola_int(1), 10, &r),
              ISOLA_EBUSY);
  isola_receiver *rc;
  TH_CHECK_RC(isola_receiver_new(NULL, &rc), ISOLA_EBUSY);
  th_counter_add(&bad_calls_checked, 1);
}

Test(call, call_wait_rejects_bad_input) {
  isola_value r;
  TH_ASSERT_RC(isola_call_wait(12345, isola_int(1), 10, &r), ISOLA_ENOVM);
  th_vm_init(NULL);
  isola_port server;
  TH_ASSERT_OK(
      isola_spawn_port(NULL, isola_null(), doubler, NULL, NULL, NULL, &server));
  TH_ASSERT_RC(isola_call_wait(server, isola_int(1), 10, NULL), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_call_wait(ISOLA_PORT_NONE, isola_int(1), 10, &r),
               ISOLA_EINVAL);
  isola_receiver *gone;
  TH_ASSERT_OK(isola_receiver_new(NULL, &gone));
  isola_port closed = isola_receiver_port(gone);
  isola_receiver_close(gone);
  TH_ASSERT_RC(isola_call_wait(closed, isola_int(1), 10, &r), ISOLA_ECLOSED);
  cr_assert(strstr(isola_error_detail(), "closed"), "%s", isola_error_detail());
  TH_ASSERT_OK(
      isola_run_main_ctx(call_wait_in_isolate, &server, isola_null(), NULL));
  TH_WAIT_GE(&bad_calls_checked, 1);
  /* Many calls in a row: each has its own reply port. */
  for (int i = 0; i < TH_SIZE(200); i++) {
    TH_ASSERT_OK(isola_call_wait(server, isola_int(i), TH_WAIT_MS, &r));
    cr_assert((th_int(r)) == (2 * i), "%s", "th_int(r) == 2 * i");
    isola_value_free(&r);
  }
  th_vm_shutdown_ok();
}

#define RSENDERS 4

typedef struct rsend {
  isola_port to;
  long n;
  int id;
} rsend;

static void *rsender(void *p) {
  rsend *a = p;
  for (long i = 0; i < a->n; i++)
    TH_CHECK_OK(isola_send_reply(a->to, isola_int(i), (isola_port)a->id + 1));
  return NULL;
}

Test(call, a_receiver_gets_every_message_in_order_per_sender) {
  th_vm_init(NULL);
  isola_receiver *r;
  TH_ASSERT_OK(isola_receiver_new("rx", &r));
  isola_port p = isola_receiver_port(r);
  cr_assert(p != ISOLA_PORT_NONE, "%s", "p != ISOLA_PORT_NONE");
  isola_value v;
  isola_port rt;
  TH_ASSERT_RC(isola_receiver_wait(r, 0, &v, &rt), ISOLA_ETIMEDOUT);
  TH_ASSERT_RC(isola_receiver_wait(r, 5, &v, &rt), ISOLA_ETIMEDOUT);
  long each = TH_SIZE(2000);
  pthread_t th[RSENDERS];
  rsend a[RSENDERS];
  for (int i = 0; i < RSENDERS; i++) {
    a[i] = (rsend){p, each, i};
    cr_assert(pthread_create(&th[i], NULL, rsender, &a[i]) == 0, "%s",
              "pthread_create(&th[i], NULL, rsender, &a[i]) == 0");
  }
  long next[RSENDERS] = {0};
  for (long k = 0; k < RSENDERS * each; k++) {
    TH_ASSERT_OK(isola_receiver_wait(r, TH_WAIT_MS, &v, &rt));
    cr_assert(rt >= 1 && rt <= RSENDERS, "%s", "rt >= 1 && rt <= RSENDERS");
    cr_assert((th_int(v)) == (next[rt - 1]++), "%s",
              "th_int(v) == next[rt - 1]++");
    isola_value_free(&v);
  }
  for (int i = 0; i < RSENDERS; i++)
    pthread_join(th[i], NULL);
  /* Queued messages are freed by the close; sends after it fail. */
  TH_ASSERT_OK(isola_send(p, isola_str("left behind")));
  isola_receiver_close(r);
  TH_ASSERT_RC(isola_send(p, isola_int(1)), ISOLA_ECLOSED);
  th_vm_shutdown_ok();
}

Test(call, receiver_rejects_bad_input) {
  isola_receiver *r = (isola_receiver *)&r;
  TH_ASSERT_RC(isola_receiver_new(NULL, &r), ISOLA_ENOVM);
  cr_assert((r) == NULL, "%s", "r is NULL");
  TH_ASSERT_RC(isola_receiver_new(NULL, NULL), ISOLA_EINVAL);
  isola_value v;
  TH_ASSERT_RC(isola_receiver_wait(NULL, 0, &v, NULL), ISOLA_EINVAL);
  cr_assert((isola_receiver_port(NULL)) == (ISOLA_PORT_NONE), "%s",
            "isola_receiver_port(NULL) == ISOLA_PORT_NONE");
  isola_receiver_close(NULL);
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_receiver_new(NULL, &r));
  TH_ASSERT_RC(isola_receiver_wait(r, 0, NULL, NULL), ISOLA_EINVAL);
  isola_receiver_close(r);
  th_vm_shutdown_ok();
}

typedef struct waiter_arg {
  isola_receiver *r;
  isola_port server;
  th_counter started;
  _Atomic int rc_wait, rc_call;
} waiter_arg;

static void *waits_forever(void *p) {
  waiter_arg *a = p;
  th_counter_add(&a->started, 1);
  isola_value v;
  atomic_store(&a->rc_wait, isola_receiver_wait(a->r, ISOLA_FOREVER, &v, NULL));
  return NULL;
}

static void *calls_forever(void *p) {
  waiter_arg *a = p;
  th_counter_add(&a->started, 1);
  isola_value v;
  atomic_store(&a->rc_call,
               isola_call_wait(a->server, isola_int(1), ISOLA_FOREVER, &v));
  return NULL;
}

Test(call, vm_shutdown_wakes_plain_threads_that_wait) {
  th_vm_init(NULL);
  waiter_arg a = {0};
  th_counter_init(&a.started);
  TH_ASSERT_OK(isola_receiver_new(NULL, &a.r));
  TH_ASSERT_OK(isola_spawn_port(NULL, isola_null(), silent, NULL, NULL, NULL,
                                &a.server));
  pthread_t t1, t2;
  cr_assert(pthread_create(&t1, NULL, waits_forever, &a) == 0, "%s",
            "pthread_create(&t1, NULL, waits_forever, &a) == 0");
  cr_assert(pthread_create(&t2, NULL, calls_forever, &a) == 0, "%s",
            "pthread_create(&t2, NULL, calls_forever, &a) == 0");
  TH_WAIT_GE(&a.started, 2);
  /* Whether or not they are asleep yet, both end with ESHUTDOWN (or the
   * call with ESHUTDOWN from its send when shutdown came first). */
  th_vm_shutdown_ok();
  pthread_join(t1, NULL);
  pthread_join(t2, NULL);
  TH_ASSERT_RC(atomic_load(&a.rc_wait), ISOLA_ESHUTDOWN);
  TH_ASSERT_RC(atomic_load(&a.rc_call), ISOLA_ESHUTDOWN);
  /* A receiver outlives its VM until closed. */
  isola_value v;
  TH_ASSERT_RC(isola_receiver_wait(a.r, 0, &v, NULL), ISOLA_ESHUTDOWN);
  isola_receiver_close(a.r);
  th_counter_destroy(&a.started);
  th_leak_check();
}

/* ---- the root entry's context, isola_run options ------------------------ */

typedef struct root_io {
  int64_t in, out;
  char name[64];
  size_t limit;
} root_io;

static void root_with_ctx(void *ctx, isola_value msg) {
  root_io *io = ctx;
  io->out = io->in * th_int(msg);
  isola_isolate_info info;
  TH_CHECK_OK(isola_current_info(&info));
  snprintf(io->name, sizeof io->name, "%s", info.name);
  isola_isolate_stats st;
  TH_CHECK_OK(isola_current_stats(&st));
  io->limit = st.heap_limit;
}

static void run_main_ctx_in_isolate(void *ctx, isola_value msg) {
  (void)ctx, (void)msg;
  TH_CHECK_RC(isola_run_main_ctx(root_with_ctx, NULL, isola_null(), NULL),
              ISOLA_EBUSY);
  th_counter_add(&bad_calls_checked, 1);
}

Test(call, run_main_ctx_passes_the_context_and_options) {
  th_vm_init(NULL);
  root_io io = {.in = 6};
  isola_spawn_options o = {.name = "root-with-ctx", .heap_limit = 1 << 20};
  TH_ASSERT_OK(isola_run_main_ctx(root_with_ctx, &io, isola_int(7), &o));
  cr_assert((io.out) == (42), "%s", "io.out == 42");
  cr_assert(strcmp(io.name, "root-with-ctx") == 0, "%s vs %s", io.name,
            "root-with-ctx");
  cr_assert((io.limit) == ((size_t)1 << 20), "%s",
            "io.limit == (size_t)1 << 20");
  TH_ASSERT_OK(isola_run_main_ctx(root_with_ctx, &io, isola_int(1), NULL));
  cr_assert(strcmp(io.name, "main") == 0, "%s vs %s", io.name, "main");
  TH_ASSERT_RC(isola_run_main_ctx(NULL, &io, isola_null(), NULL), ISOLA_EINVAL);
  TH_ASSERT_OK(
      isola_run_main_ctx(run_main_ctx_in_isolate, NULL, isola_null(), NULL));
  TH_WAIT_GE(&bad_calls_checked, 1);
  th_vm_shutdown_ok();
}

static isola_value square_named(isola_value arg) {
  isola_isolate_info info;
  isola_isolate_stats st;
  if (isola_current_info(&info) != ISOLA_OK ||
      isola_current_stats(&st) != ISOLA_OK)
    isola_throw("no isolate");
  if (th_int(arg) < 0)
    isola_throw("negative: %lld", (long long)th_int(arg));
  if (strcmp(info.name, "squarer") != 0)
    isola_throw("name %s", info.name);
  if (st.heap_limit != 4096)
    isola_throw("limit %zu", st.heap_limit);
  return isola_int(th_int(arg) * th_int(arg));
}

Test(call, run_opts_names_the_isolate_and_sets_its_heap_limit) {
  th_vm_init(NULL);
  isola_run_options o = {.name = "squarer", .heap_limit = 4096};
  isola_value r;
  TH_ASSERT_OK(isola_run_opts(square_named, isola_int(9), &o, &r));
  cr_assert((th_int(r)) == (81), "%s", "th_int(r) == 81");
  TH_ASSERT_RC(isola_run_opts(square_named, isola_int(9), NULL, &r),
               ISOLA_EFAILED); /* named "isola_run": it throws */
  cr_assert(strstr(th_item_str(r, 0), "name isola_run"), "%s",
            th_item_str(r, 0));
  isola_value_free(&r);
  th_vm_shutdown_ok();
}

#define TAGGED 16

Test(call, run_async_opts_completions_carry_their_tag) {
  th_vm_init(NULL);
  isola_receiver *rx;
  TH_ASSERT_OK(isola_receiver_new(NULL, &rx));
  isola_run_options o = {.name = "squarer", .heap_limit = 4096};
  for (int i = 0; i < TAGGED; i++) {
    char tag[16];
    snprintf(tag, sizeof tag, "job-%d", i);
    o.tag = isola_str(tag);
    /* Job 3 fails. */
    TH_ASSERT_OK(isola_run_async_opts(square_named, isola_int(i == 3 ? -1 : i),
                                      &o, isola_receiver_port(rx)));
  }
  bool seen[TAGGED] = {false};
  for (int k = 0; k < TAGGED; k++) {
    isola_value v;
    TH_ASSERT_OK(isola_receiver_wait(rx, TH_WAIT_MS, &v, NULL));
    const char *tag;
    bool ok;
    int64_t sq;
    const char *err;
    if (isola_unpack(v, "[s b i]", &tag, &ok, &sq) == ISOLA_OK) {
      int i = atoi(tag + 4);
      cr_assert(ok && i != 3 && sq == (int64_t)i * i, "%s",
                "ok && i != 3 && sq == (int64_t)i * i");
      seen[i] = true;
    } else {
      TH_ASSERT_OK(isola_unpack(v, "[s b s _]", &tag, &ok, &err));
      cr_assert(
          !ok && strcmp(tag, "job-3") == 0 && strstr(err, "negative"), "%s",
          "!ok && strcmp(tag, \"job-3\") == 0 && strstr(err, \"negative\")");
      seen[3] = true;
    }
    isola_value_free(&v);
  }
  for (int i = 0; i < TAGGED; i++)
    cr_assert(seen[i], "job %d", i);
  /* Untagged forms keep their shape. */
  TH_ASSERT_OK(
      isola_run_async(square_named, isola_int(2), isola_receiver_port(rx)));
  isola_value v;
  TH_ASSERT_OK(isola_receiver_wait(rx, TH_WAIT_MS, &v, NULL));
  TH_ASSERT_OK(isola_unpack(v, "[b s s]", NULL, NULL, NULL)); /* name */
  isola_value_free(&v);
  const char bad[] = {(char)0xed, (char)0xa0, (char)0x80, 0};
  o.tag = isola_str(bad);
  TH_ASSERT_RC(isola_run_async_opts(square_named, isola_int(2), &o,
                                    isola_receiver_port(rx)),
               ISOLA_EINVAL);
  cr_assert(strstr(isola_error_detail(), "surrogate"), "%s",
            isola_error_detail());
  isola_receiver_close(rx);
  th_vm_shutdown_ok();
}
