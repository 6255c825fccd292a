/* SPDX-License-Identifier: MIT */
/*
 * The control forwarder (isola.h: isola_control_forward_set()): what the
 * cluster component uses so that isola_kill() and the other control calls
 * work on a remote isolate's handle.  A request reaches the forwarder only
 * where it would fail with ISOLA_ECLOSED, after the core's own checks,
 * with its fields as the caller gave them.
 */
#include "helpers.h"

TestSuite(forward, .timeout = TH_TEST_TIMEOUT_S);

/* The ports the forwarder below stands for (not open ports here). */
#define FOREIGN ((isola_port)0x1234567890abcdefull)
#define FOREIGN_FULL ((isola_port)0x0badc0ffee0ddf00ull)

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int calls;                /* under mu */
static isola_control_request last; /* under mu; response copied */
static bool on_isolate;          /* the last call ran on an isolate */

static int forwarder(const isola_control_request *r) {
  if (r->isolate.control_port != FOREIGN &&
      r->isolate.control_port != FOREIGN_FULL)
    return ISOLA_ECLOSED;
  pthread_mutex_lock(&mu);
  isola_value_free(&last.response);
  last = *r;
  TH_CHECK_OK(isola_value_copy(r->response, &last.response));
  on_isolate = isola_current(&(isola_isolate){0}) == ISOLA_OK;
  calls++;
  pthread_mutex_unlock(&mu);
  return r->isolate.control_port == FOREIGN_FULL ? ISOLA_EFULL : ISOLA_OK;
}

static int ncalls(void) {
  pthread_mutex_lock(&mu);
  int n = calls;
  pthread_mutex_unlock(&mu);
  return n;
}

/* The last request (its response stays owned by last). */
static isola_control_request take(void) {
  pthread_mutex_lock(&mu);
  isola_control_request r = last;
  pthread_mutex_unlock(&mu);
  return r;
}

static void done(void) {
  isola_control_forward_set(NULL);
  pthread_mutex_lock(&mu);
  isola_value_free(&last.response);
  memset(&last, 0, sizeof last);
  calls = 0;
  pthread_mutex_unlock(&mu);
}

Test(forward, every_request_arrives_as_given) {
  th_vm_init(NULL);
  isola_isolate h = {FOREIGN, 11, 22};
  /* Without a forwarder: closed, as any unknown port. */
  TH_ASSERT_RC(isola_kill(&h, ISOLA_IMMEDIATE), ISOLA_ECLOSED);
  isola_control_forward_set(forwarder);
  isola_control_request r;
  isola_port lp = (isola_port)0x77;

  TH_ASSERT_OK(isola_pause(&h, 0));
  r = take();
  cr_assert(r.kind == ISOLA_CONTROL_PAUSE && r.resume == 11,
            "pause, the handle's capability as resume");
  cr_assert(r.isolate.control_port == FOREIGN &&
                r.isolate.pause_capability == 11 &&
                r.isolate.terminate_capability == 22,
            "the handle as given");
  TH_ASSERT_OK(isola_resume(&h, 33));
  r = take();
  cr_assert(r.kind == ISOLA_CONTROL_RESUME && r.resume == 33, "resume");
  TH_ASSERT_OK(isola_kill(&h, ISOLA_BEFORE_NEXT_EVENT));
  r = take();
  cr_assert(r.kind == ISOLA_CONTROL_KILL &&
                r.priority == ISOLA_BEFORE_NEXT_EVENT && r.port == 0,
            "kill");
  TH_ASSERT_OK(isola_ping(&h, lp, isola_str("pong"), ISOLA_IMMEDIATE));
  r = take();
  cr_assert(r.kind == ISOLA_CONTROL_PING && r.priority == ISOLA_IMMEDIATE &&
                r.port == lp &&
                isola_value_equal(r.response, isola_str("pong")),
            "ping");
  TH_ASSERT_OK(isola_add_exit_listener(&h, lp, isola_int(5)));
  r = take();
  cr_assert(r.kind == ISOLA_CONTROL_EXIT_ADD && r.port == lp &&
                isola_value_equal(r.response, isola_int(5)),
            "exit listener");
  TH_ASSERT_OK(isola_add_exit_notice_listener(&h, lp, isola_int(6)));
  r = take();
  cr_assert(r.kind == ISOLA_CONTROL_EXIT_NOTICE_ADD &&
                isola_value_equal(r.response, isola_int(6)),
            "exit notice listener");
  TH_ASSERT_OK(isola_remove_exit_listener(&h, lp));
  r = take();
  cr_assert(r.kind == ISOLA_CONTROL_EXIT_REMOVE && r.port == lp &&
                r.response.kind == ISOLA_NULL,
            "exit listener removed");
  TH_ASSERT_OK(isola_add_error_listener(&h, lp));
  cr_assert(take().kind == ISOLA_CONTROL_ERROR_ADD, "error listener");
  TH_ASSERT_OK(isola_add_error_notice_listener(&h, lp));
  cr_assert(take().kind == ISOLA_CONTROL_ERROR_NOTICE_ADD, "error notice");
  TH_ASSERT_OK(isola_remove_error_listener(&h, lp));
  r = take();
  cr_assert(r.kind == ISOLA_CONTROL_ERROR_REMOVE && r.port == lp,
            "error listener removed");
  TH_ASSERT_OK(isola_set_errors_fatal(&h, false));
  r = take();
  cr_assert(r.kind == ISOLA_CONTROL_ERRORS_FATAL && !r.fatal, "fatal off");
  TH_ASSERT_OK(isola_set_errors_fatal(&h, true));
  cr_assert(take().fatal, "fatal on");
  cr_assert(ncalls() == 12, "one call each: %d", ncalls());
  cr_assert(!on_isolate, "on the calling thread");

  /* A response over the size the core checks against the target's room
   * before it copies (2 KiB) is forwarded too, whole. */
  static uint8_t big[8192];
  memset(big, 'x', sizeof big);
  TH_ASSERT_OK(isola_ping(&h, lp, isola_bytes(big, sizeof big),
                          ISOLA_IMMEDIATE));
  r = take();
  cr_assert(r.response.kind == ISOLA_BYTES && r.response.len == sizeof big,
            "the big response");

  /* The forwarder's answer is the call's. */
  isola_isolate full = {FOREIGN_FULL, 11, 22};
  TH_ASSERT_RC(isola_kill(&full, ISOLA_IMMEDIATE), ISOLA_EFULL);
  isola_isolate other = {FOREIGN + 1, 11, 22};
  TH_ASSERT_RC(isola_kill(&other, ISOLA_IMMEDIATE), ISOLA_ECLOSED);
  done();
  TH_ASSERT_RC(isola_kill(&h, ISOLA_IMMEDIATE), ISOLA_ECLOSED);
  th_vm_shutdown_ok();
}

Test(forward, the_core_checks_come_first) {
  th_vm_init(NULL);
  isola_control_forward_set(forwarder);
  isola_isolate weak;
  TH_ASSERT_OK(isola_isolate_from_port(FOREIGN, &weak));
  TH_ASSERT_RC(isola_kill(&weak, ISOLA_IMMEDIATE), ISOLA_EPERM);
  TH_ASSERT_RC(isola_pause(&weak, 0), ISOLA_EPERM);
  TH_ASSERT_RC(isola_resume(&weak, 0), ISOLA_EPERM);
  TH_ASSERT_RC(isola_set_errors_fatal(&weak, true), ISOLA_EPERM);
  TH_ASSERT_RC(isola_ping(&weak, ISOLA_PORT_NONE, isola_null(),
                          ISOLA_IMMEDIATE),
               ISOLA_EINVAL);
  TH_ASSERT_RC(isola_add_exit_listener(&weak, ISOLA_PORT_NONE, isola_null()),
               ISOLA_EINVAL);
  isola_isolate h = {FOREIGN, 11, 22};
  TH_ASSERT_RC(isola_kill(&h, (isola_priority)9), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_kill(NULL, ISOLA_IMMEDIATE), ISOLA_EINVAL);
  cr_assert(ncalls() == 0, "refused before the forwarder");
  /* A restricted handle may ping and listen, as locally. */
  TH_ASSERT_OK(isola_ping(&weak, (isola_port)0x77, isola_null(),
                          ISOLA_BEFORE_NEXT_EVENT));
  cr_assert(ncalls() == 1, "ncalls() == 1");
  done();
  th_vm_shutdown_ok();
}

/* ---- a local isolate's requests never reach it -------------------------- */

static th_counter pongs = TH_COUNTER_INIT;
static th_counter ready = TH_COUNTER_INIT;
static _Atomic isola_port sink;

static void on_sink(void *ctx, isola_port port, isola_value m, isola_port r) {
  (void)ctx, (void)port, (void)m, (void)r;
  th_counter_add(&pongs, 1);
}

static void sink_entry(isola_value m) {
  (void)m;
  isola_port p;
  TH_CHECK_OK(isola_port_open(on_sink, NULL, &p));
  atomic_store(&sink, p);
  /* From an isolate: the forwarder runs on this thread. */
  isola_isolate h = {FOREIGN, 1, 2};
  TH_CHECK_OK(isola_kill(&h, ISOLA_IMMEDIATE));
  th_counter_add(&ready, 1);
}

Test(forward, local_requests_stay_local) {
  th_vm_init(NULL);
  isola_control_forward_set(forwarder);
  isola_isolate s;
  TH_ASSERT_OK(isola_spawn(sink_entry, isola_null(), NULL, &s));
  TH_WAIT_GE(&ready, 1);
  cr_assert(ncalls() == 1 && on_isolate, "the isolate's own call");
  TH_ASSERT_OK(isola_ping(&s, atomic_load(&sink), isola_null(),
                          ISOLA_IMMEDIATE));
  TH_WAIT_GE(&pongs, 1);
  TH_ASSERT_OK(isola_pause(&s, 0));
  TH_ASSERT_OK(isola_resume(&s, 0));
  cr_assert(ncalls() == 1, "local requests are not forwarded");
  /* A receive port is no control port: not local control, so asked. */
  isola_isolate p;
  TH_ASSERT_OK(isola_isolate_from_port(atomic_load(&sink), &p));
  TH_ASSERT_RC(isola_ping(&p, atomic_load(&sink), isola_null(),
                          ISOLA_IMMEDIATE),
               ISOLA_ECLOSED);
  cr_assert(ncalls() == 1, "declined by the forwarder");
  TH_ASSERT_OK(isola_kill(&s, ISOLA_IMMEDIATE));
  done();
  th_vm_shutdown_ok();
}
