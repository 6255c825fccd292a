/* SPDX-License-Identifier: MIT */
/*
 * test_event_handler.c — the event handler: timers (one-shot and periodic,
 * order, cancellation, keeping the isolate alive, pause and kill) and
 * file-descriptor watches.
 */
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

TestSuite(timer, .timeout = TH_TEST_TIMEOUT_S);
TestSuite(watch, .timeout = TH_TEST_TIMEOUT_S);

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Shared with the isolates of one test; each test runs in its own process. */
static th_counter fired = TH_COUNTER_INIT;
static th_counter ended = TH_COUNTER_INIT;
static _Atomic long order[16];
static _Atomic long norder;

static void on_exit_handler(void *ctx, isola_port port, isola_value msg,
                            isola_port reply_to) {
  (void)ctx;
  (void)msg;
  (void)reply_to;
  th_counter_add(&ended, 1);
  TH_CHECK_OK(isola_port_close(port));
}

/* A root isolate that counts exit notices of the isolates it spawns. */
typedef struct spawn_req {
  isola_entry entry;
  int64_t arg;
  isola_isolate handle;
  th_counter ready;
} spawn_req;

static spawn_req req;
static bool req_nonfatal; /* spawn it with errors non-fatal */

static void root_entry(isola_value msg) {
  (void)msg;
  isola_port exits;
  TH_CHECK_OK(isola_port_open(on_exit_handler, NULL, &exits));
  isola_spawn_options o = {.name = "timed", .on_exit = exits,
                           .errors_nonfatal = req_nonfatal};
  TH_CHECK_OK(isola_spawn(req.entry, isola_int(req.arg), &o, &req.handle));
  th_counter_add(&req.ready, 1);
}

static void *run_root(void *arg) {
  (void)arg;
  TH_CHECK_OK(isola_run_main(root_entry, isola_null(), "timer-root"));
  return NULL;
}

static pthread_t start(isola_entry entry, int64_t arg) {
  req.entry = entry;
  req.arg = arg;
  th_counter_init(&req.ready);
  pthread_t th;
  cr_assert(pthread_create(&th, NULL, run_root, NULL) == 0,
            "pthread_create failed");
  TH_WAIT_GE(&req.ready, 1);
  return th;
}

/* ---- a one-shot fires once, after its delay, and keeps the isolate alive */

static uint64_t started_at, fired_at;

static void one_shot(void *arg) {
  (void)arg;
  fired_at = now_ms();
  th_counter_add(&fired, 1);
}

static void one_shot_entry(isola_value msg) {
  isola_timer t;
  started_at = now_ms();
  TH_CHECK_OK(isola_timer_start((uint64_t)msg.as.i, 0, one_shot, NULL, &t));
  TH_CHECK(t != 0);
  /* No port: only the timer keeps this isolate alive. */
}

Test(timer, a_one_shot_fires_once_after_its_delay_and_keeps_its_isolate) {
  th_vm_init(NULL);
  pthread_t th = start(one_shot_entry, 30);
  TH_WAIT_GE(&ended, 1); /* ends only after the timer fired */
  cr_assert(th_counter_get(&fired) == 1, "fired %ld times",
            th_counter_get(&fired));
  cr_assert(fired_at - started_at >= 30, "fired after %llu ms",
            (unsigned long long)(fired_at - started_at));
  pthread_join(th, NULL);
  th_vm_shutdown_ok();
}

/* ---- timers due together run in creation order ------------------------ */

static void record(void *arg) {
  order[atomic_fetch_add(&norder, 1)] = (long)(intptr_t)arg;
  th_counter_add(&fired, 1);
}

static void order_entry(isola_value msg) {
  (void)msg;
  isola_timer t;
  /* The same delay, made one after the other: due at nearly the same
   * instant, the later never before the earlier. */
  for (intptr_t i = 0; i < 8; i++)
    TH_CHECK_OK(isola_timer_start(5, 0, record, (void *)i, &t));
}

Test(timer, timers_due_together_run_in_creation_order) {
  th_vm_init(NULL);
  pthread_t th = start(order_entry, 0);
  TH_WAIT_GE(&ended, 1);
  cr_assert(atomic_load(&norder) == 8, "%ld timers ran", atomic_load(&norder));
  for (long i = 0; i < 8; i++)
    cr_assert(order[i] == i, "timer %ld ran at place %ld", order[i], i);
  pthread_join(th, NULL);
  th_vm_shutdown_ok();
}

/* ---- a cancelled timer never fires; cancelling twice is an error ------- */

static isola_timer late;

static void never(void *arg) {
  (void)arg;
  th_counter_add(&fired, 100);
}

static void canceller(void *arg) {
  (void)arg;
  TH_CHECK_OK(isola_timer_cancel(late));
  TH_CHECK_RC(isola_timer_cancel(late), ISOLA_ECLOSED);
  th_counter_add(&fired, 1);
}

static void cancel_entry(isola_value msg) {
  (void)msg;
  isola_timer early;
  TH_CHECK_OK(isola_timer_start(200, 0, never, NULL, &late));
  TH_CHECK_OK(isola_timer_start(5, 0, canceller, NULL, &early));
}

Test(timer, a_cancelled_timer_never_fires_and_no_longer_keeps_the_isolate) {
  th_vm_init(NULL);
  pthread_t th = start(cancel_entry, 0);
  /* The isolate ends as soon as the canceller ran: the cancelled timer no
   * longer keeps it alive, so this does not wait the 200 ms. */
  TH_WAIT_GE(&ended, 1);
  cr_assert(th_counter_get(&fired) == 1, "fired %ld times",
            th_counter_get(&fired));
  pthread_join(th, NULL);
  th_vm_shutdown_ok();
}

/* ---- a periodic timer fires until cancelled ----------------------------- */

static isola_timer tick_timer;
static int ticks;

static void tick(void *arg) {
  (void)arg;
  th_counter_add(&fired, 1);
  if (++ticks == 5)
    TH_CHECK_OK(isola_timer_cancel(tick_timer));
}

static void periodic_entry(isola_value msg) {
  (void)msg;
  TH_CHECK_OK(isola_timer_start(1, 2, tick, NULL, &tick_timer));
}

Test(timer, a_periodic_timer_fires_until_it_cancels_itself) {
  th_vm_init(NULL);
  pthread_t th = start(periodic_entry, 0);
  TH_WAIT_GE(&ended, 1);
  cr_assert(th_counter_get(&fired) == 5, "fired %ld times",
            th_counter_get(&fired));
  pthread_join(th, NULL);
  th_vm_shutdown_ok();
}

/* ---- a paused isolate's due timer waits for the resume ----------------- */

static void paused_entry(isola_value msg) {
  (void)msg;
  isola_timer t;
  TH_CHECK_OK(isola_timer_start(20, 0, one_shot, NULL, &t));
  /* Pause itself: the request is handled right after this event, long
   * before the timer is due. */
  isola_isolate self;
  TH_CHECK_OK(isola_current(&self));
  TH_CHECK_OK(isola_pause(&self, 0));
}

Test(timer, a_paused_isolates_timer_waits_for_the_resume) {
  th_vm_init(NULL);
  pthread_t th = start(paused_entry, 0);
  /* Waiting for an event that must not come: bounded, well past the
   * timer's 20 ms. */
  cr_assert(!th_counter_wait_ge(&fired, 1, 200),
            "a paused isolate ran its timer");
  TH_ASSERT_OK(isola_resume(&req.handle, 0));
  TH_WAIT_GE(&fired, 1);
  TH_WAIT_GE(&ended, 1);
  pthread_join(th, NULL);
  th_vm_shutdown_ok();
}

/* ---- a killed isolate's timers are cancelled and freed ------------------ */

static void many_entry(isola_value msg) {
  (void)msg;
  isola_timer t;
  for (int i = 0; i < 100; i++)
    TH_CHECK_OK(
        isola_timer_start(60000, (uint64_t)(i % 2) * 1000, never, NULL, &t));
}

Test(timer, a_killed_isolates_timers_are_cancelled_and_freed) {
  th_vm_init(NULL);
  pthread_t th = start(many_entry, 0);
  TH_ASSERT_OK(isola_kill(&req.handle, ISOLA_IMMEDIATE));
  TH_WAIT_GE(&ended, 1);
  cr_assert(th_counter_get(&fired) == 0, "fired %ld times",
            th_counter_get(&fired));
  pthread_join(th, NULL);
  th_vm_shutdown_ok(); /* LeakSanitizer: no timer left behind */
}

/* ---- a ticket from another isolate is not one's own ---------------------- */

static th_counter got_id = TH_COUNTER_INIT;
static _Atomic isola_timer foreign;

static void owner_entry(isola_value msg) {
  (void)msg;
  isola_timer t;
  TH_CHECK_OK(isola_timer_start(60000, 0, never, NULL, &t));
  atomic_store(&foreign, t);
  th_counter_add(&got_id, 1);
}

static void thief_entry(isola_value msg) {
  (void)msg;
  TH_CHECK_RC(isola_timer_cancel(atomic_load(&foreign)), ISOLA_ECLOSED);
  th_counter_add(&fired, 1);
}

Test(timer, another_isolates_timer_cannot_be_cancelled) {
  th_vm_init(NULL);
  pthread_t th = start(owner_entry, 0);
  TH_WAIT_GE(&got_id, 1);
  isola_isolate owner = req.handle;
  TH_ASSERT_OK(isola_spawn(thief_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&fired, 1);
  TH_ASSERT_OK(isola_kill(&owner, ISOLA_IMMEDIATE));
  TH_WAIT_GE(&ended, 1);
  pthread_join(th, NULL);
  th_vm_shutdown_ok();
}

/* ---- bad calls ----------------------------------------------------------- */

Test(timer, bad_calls_give_their_errors) {
  isola_timer t;
  TH_ASSERT_RC(isola_timer_start(1, 0, never, NULL, &t), ISOLA_ENOTISOLATE);
  TH_ASSERT_RC(isola_timer_cancel(1), ISOLA_ENOTISOLATE);
}

static void bad_args_entry(isola_value msg) {
  (void)msg;
  isola_timer t;
  TH_CHECK_RC(isola_timer_start(1, 0, NULL, NULL, &t), ISOLA_EINVAL);
  TH_CHECK_RC(isola_timer_start(1, 0, never, NULL, NULL), ISOLA_EINVAL);
  TH_CHECK_RC(isola_timer_start(UINT64_MAX, 0, never, NULL, &t), ISOLA_EINVAL);
  TH_CHECK_RC(isola_timer_cancel(0), ISOLA_ECLOSED);
  th_counter_add(&fired, 1);
}

Test(timer, bad_arguments_inside_an_isolate_give_EINVAL) {
  th_vm_init(NULL);
  pthread_t th = start(bad_args_entry, 0);
  TH_WAIT_GE(&ended, 1);
  cr_assert(th_counter_get(&fired) == 1, "fired %ld times",
            th_counter_get(&fired));
  pthread_join(th, NULL);
  th_vm_shutdown_ok();
}

/* ---- file-descriptor watches ----------------------------------------------
 * A socketpair: the test thread writes to one end, the isolate watches the
 * other. */

static int sp[2];
static th_counter bytes = TH_COUNTER_INIT;
static isola_watch the_watch;

static void on_readable(int fd, uint32_t events, void *arg) {
  (void)arg;
  TH_CHECK(events & ISOLA_READABLE);
  char buf[64];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) th_counter_add(&bytes, n);
  TH_CHECK(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
  if (th_counter_get(&bytes) >= 3) TH_CHECK_OK(isola_watch_close(the_watch));
}

static void reader_entry(isola_value msg) {
  (void)msg;
  /* No port: only the watch keeps this isolate alive. */
  TH_CHECK_OK(
      isola_watch_open(sp[1], ISOLA_READABLE, on_readable, NULL, &the_watch));
  TH_CHECK(the_watch != 0);
  th_counter_add(&fired, 1);
}

static void make_pair(void) {
  cr_assert(socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0, "socketpair");
  cr_assert(fcntl(sp[1], F_SETFL, O_NONBLOCK) == 0, "fcntl");
}

Test(watch, a_readable_socket_is_delivered_until_the_watch_closes) {
  make_pair();
  th_vm_init(NULL);
  pthread_t th = start(reader_entry, 0);
  TH_WAIT_GE(&fired, 1); /* the watch is open */
  for (int i = 0; i < 3; i++) {
    /* One byte at a time, each after the last was read: three events. */
    cr_assert(write(sp[0], "x", 1) == 1, "write");
    TH_WAIT_GE(&bytes, i + 1);
  }
  /* The callback closed the watch after the third byte: the isolate had
   * nothing else keeping it alive. */
  TH_WAIT_GE(&ended, 1);
  cr_assert(th_counter_get(&bytes) == 3, "%ld bytes", th_counter_get(&bytes));
  pthread_join(th, NULL);
  th_vm_shutdown_ok();
  close(sp[0]);
  close(sp[1]);
}

static void unused(int fd, uint32_t events, void *arg) {
  (void)fd;
  (void)events;
  (void)arg;
  th_counter_add(&fired, 100);
}

static void close_first_entry(isola_value msg) {
  (void)msg;
  isola_watch w;
  TH_CHECK_OK(isola_watch_open(sp[1], ISOLA_READABLE, unused, NULL, &w));
  TH_CHECK_OK(isola_watch_close(w));
  TH_CHECK_RC(isola_watch_close(w), ISOLA_ECLOSED);
  th_counter_add(&fired, 1);
}

Test(watch, a_closed_watch_never_fires_and_no_longer_keeps_the_isolate) {
  make_pair();
  cr_assert(write(sp[0], "x", 1) == 1, "write"); /* readable from the start */
  th_vm_init(NULL);
  pthread_t th = start(close_first_entry, 0);
  TH_WAIT_GE(&ended, 1);
  cr_assert(th_counter_get(&fired) == 1, "fired %ld", th_counter_get(&fired));
  pthread_join(th, NULL);
  th_vm_shutdown_ok();
  close(sp[0]);
  close(sp[1]);
}

static void watch_forever_entry(isola_value msg) {
  (void)msg;
  isola_watch w;
  TH_CHECK_OK(isola_watch_open(sp[1], ISOLA_READABLE, unused, NULL, &w));
  th_counter_add(&fired, 1);
}

Test(watch, a_killed_isolate_closes_its_watches) {
  make_pair();
  th_vm_init(NULL);
  pthread_t th = start(watch_forever_entry, 0);
  TH_WAIT_GE(&fired, 1);
  TH_ASSERT_OK(isola_kill(&req.handle, ISOLA_IMMEDIATE));
  TH_WAIT_GE(&ended, 1);
  /* The fd is no longer watched: data written now reaches nobody. */
  cr_assert(write(sp[0], "x", 1) == 1, "write");
  pthread_join(th, NULL);
  th_vm_shutdown_ok(); /* LeakSanitizer: the watch was freed */
  cr_assert(th_counter_get(&fired) == 1, "fired %ld", th_counter_get(&fired));
  close(sp[0]);
  close(sp[1]);
}

static void bad_watch_entry(isola_value msg) {
  (void)msg;
  isola_watch w;
  TH_CHECK_RC(isola_watch_open(-1, ISOLA_READABLE, unused, NULL, &w),
              ISOLA_EINVAL);
  TH_CHECK_RC(isola_watch_open(sp[1], 0, unused, NULL, &w), ISOLA_EINVAL);
  TH_CHECK_RC(isola_watch_open(sp[1], ISOLA_FD_ERROR, unused, NULL, &w),
              ISOLA_EINVAL);
  TH_CHECK_RC(isola_watch_open(sp[1], ISOLA_READABLE, NULL, NULL, &w),
              ISOLA_EINVAL);
  TH_CHECK_RC(isola_watch_open(sp[1], ISOLA_READABLE, unused, NULL, NULL),
              ISOLA_EINVAL);
  /* Watched twice: the OS refuses the second. */
  TH_CHECK_OK(isola_watch_open(sp[1], ISOLA_READABLE, unused, NULL, &w));
  isola_watch w2;
  TH_CHECK_RC(isola_watch_open(sp[1], ISOLA_WRITABLE, unused, NULL, &w2),
              ISOLA_ESYS);
  TH_CHECK_OK(isola_watch_close(w));
  TH_CHECK_RC(isola_watch_close(0), ISOLA_ECLOSED);
  th_counter_add(&fired, 1);
}

Test(watch, bad_watches_give_their_errors) {
  isola_watch w;
  TH_ASSERT_RC(isola_watch_open(0, ISOLA_READABLE, unused, NULL, &w),
               ISOLA_ENOTISOLATE);
  TH_ASSERT_RC(isola_watch_close(1), ISOLA_ENOTISOLATE);
  make_pair();
  th_vm_init(NULL);
  pthread_t th = start(bad_watch_entry, 0);
  TH_WAIT_GE(&ended, 1);
  cr_assert(th_counter_get(&fired) == 1, "fired %ld", th_counter_get(&fired));
  pthread_join(th, NULL);
  th_vm_shutdown_ok();
  close(sp[0]);
  close(sp[1]);
}

/* ---- issue 11.11, 18.7: nothing is lost for good -------------------------
 * A thrown callback, and (with the test hooks) messages the event thread
 * fails to build or an epoch record it fails to get. */

static void on_readable_throws(int fd, uint32_t events, void *arg) {
  (void)arg;
  TH_CHECK(events & ISOLA_READABLE);
  char buf[64];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) th_counter_add(&bytes, n);
  if (th_counter_get(&bytes) >= 3) {
    TH_CHECK_OK(isola_watch_close(the_watch));
    return;
  }
  isola_throw("callback throws after %ld bytes", th_counter_get(&bytes));
}

static void throwing_reader_entry(isola_value msg) {
  (void)msg;
  TH_CHECK_OK(isola_watch_open(sp[1], ISOLA_READABLE, on_readable_throws,
                               NULL, &the_watch));
  th_counter_add(&fired, 1);
}

static void quiet_errors(void *data, const isola_isolate_info *info,
                         const char *message, const char *stack) {
  (void)data, (void)info, (void)message, (void)stack;
}

/* 11.11: with errors non-fatal, a callback that throws is re-armed. */
Test(watch, a_callback_that_throws_is_re_armed) {
  make_pair();
  isola_config c;
  isola_config_init(&c);
  c.unhandled_error = quiet_errors;
  th_vm_init(&c);
  req_nonfatal = true;
  pthread_t th = start(throwing_reader_entry, 0);
  TH_WAIT_GE(&fired, 1);
  for (int i = 0; i < 3; i++) {
    cr_assert(write(sp[0], "x", 1) == 1, "write");
    TH_WAIT_GE(&bytes, i + 1);
  }
  TH_WAIT_GE(&ended, 1);
  pthread_join(th, NULL);
  th_vm_shutdown_ok();
  close(sp[0]);
  close(sp[1]);
}

#ifdef ISOLA_TEST_HOOKS
#include "../src/platform/test_hooks.h"

static th_counter nticks = TH_COUNTER_INIT;

static void tick5(void *arg) {
  isola_timer *t = arg;
  th_counter_add(&nticks, 1);
  if (th_counter_get(&nticks) == 5) TH_CHECK_OK(isola_timer_cancel(*t));
}

static void periodic5_entry(isola_value msg) {
  (void)msg;
  static isola_timer t;
  TH_CHECK_OK(isola_timer_start(1, 1, tick5, &t, &t));
}

/* 11.11: three messages the event thread cannot build (out of memory)
 * delay a periodic timer; it ticks again after. */
Test(timer, a_periodic_timer_ticks_again_after_failed_posts) {
  th_vm_init(NULL);
  isola__test_fail(ISOLA__FAIL_EVENT_MSG, 3);
  pthread_t th = start(periodic5_entry, 0);
  TH_WAIT_GE(&ended, 1); /* ends after its fifth tick cancels it */
  cr_assert(th_counter_get(&nticks) == 5, "th_counter_get(&nticks) == 5");
  pthread_join(th, NULL);
  th_vm_shutdown_ok();
}

/* 11.11: an isolate whose only live thing is a one-shot still ends. */
Test(timer, a_one_shot_fires_after_failed_posts) {
  th_vm_init(NULL);
  isola__test_fail(ISOLA__FAIL_EVENT_MSG, 3);
  pthread_t th = start(one_shot_entry, 1);
  TH_WAIT_GE(&ended, 1);
  cr_assert(th_counter_get(&fired) == 1, "th_counter_get(&fired) == 1");
  pthread_join(th, NULL);
  th_vm_shutdown_ok();
}

/* 18.7: an event thread without an epoch record posts nothing until it
 * has one; the timer then fires, posted with the record online.  (Posting
 * without one, as the thread once did for the VM's whole life, also
 * delivers the tick: the test build counts every post made by a thread
 * whose record is missing or offline, and this asserts there was none.) */
Test(timer, a_timer_fires_after_the_event_thread_failed_to_get_a_record) {
  th_vm_init(NULL);
  isola__test_fail(ISOLA__FAIL_EVENT_REC, 3);
  pthread_t th = start(one_shot_entry, 1);
  TH_WAIT_GE(&ended, 1);
  cr_assert(th_counter_get(&fired) == 1, "th_counter_get(&fired) == 1");
  pthread_join(th, NULL);
  size_t unprotected = isola__test_unprotected_posts();
  cr_assert(unprotected == 0,
            "%zu post(s) made without an online epoch record", unprotected);
  th_vm_shutdown_ok();
}

/* 11.11: an fd event whose message cannot be built is posted later (epoll
 * reports a one-shot watch once). */
Test(watch, an_event_is_delivered_after_failed_posts) {
  make_pair();
  th_vm_init(NULL);
  pthread_t th = start(reader_entry, 0);
  TH_WAIT_GE(&fired, 1);
  isola__test_fail(ISOLA__FAIL_EVENT_MSG, 3);
  for (int i = 0; i < 3; i++) {
    cr_assert(write(sp[0], "x", 1) == 1, "write");
    TH_WAIT_GE(&bytes, i + 1);
  }
  TH_WAIT_GE(&ended, 1);
  pthread_join(th, NULL);
  th_vm_shutdown_ok();
  close(sp[0]);
  close(sp[1]);
}
#endif
