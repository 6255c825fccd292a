/* SPDX-License-Identifier: MIT */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "helpers.h"

#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <time.h>
#include <unistd.h>

#if TH_HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

void th_check_failed(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  flockfile(stderr);
  fprintf(stderr, "%s:%d: check failed: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  funlockfile(stderr);
  fflush(stderr);
  abort();
}

/* ---------------------------------------------------------------------- */

void th_counter_init(th_counter *c) {
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv, NULL);
  c->value = 0;
}

void th_counter_destroy(th_counter *c) {
  pthread_cond_destroy(&c->cv);
  pthread_mutex_destroy(&c->mu);
}

void th_counter_add(th_counter *c, long n) {
  pthread_mutex_lock(&c->mu);
  c->value += n;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

long th_counter_get(th_counter *c) {
  pthread_mutex_lock(&c->mu);
  long v = c->value;
  pthread_mutex_unlock(&c->mu);
  return v;
}

/* The condition variables use the default clock (CLOCK_REALTIME) so that
 * TH_COUNTER_INIT can initialise them statically. */
static struct timespec deadline_after(long ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec += 1;
    ts.tv_nsec -= 1000000000L;
  }
  return ts;
}

bool th_counter_wait_ge(th_counter *c, long target, long timeout_ms) {
  struct timespec deadline = deadline_after(timeout_ms);
  bool ok = true;
  pthread_mutex_lock(&c->mu);
  while (c->value < target) {
    int rc = pthread_cond_timedwait(&c->cv, &c->mu, &deadline);
    if (rc == ETIMEDOUT) {
      ok = c->value >= target;
      break;
    }
  }
  pthread_mutex_unlock(&c->mu);
  return ok;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void th_wait_live_isolates(size_t n) {
  double deadline = now_ms() + (double)TH_WAIT_MS;
  size_t live;
  while ((live = isola_live_isolates()) != n) {
    if (now_ms() > deadline)
      cr_assert_fail("timed out waiting for isola_live_isolates() == %zu "
                     "(it is %zu)",
                     n, live);
    sched_yield();
  }
}

/* ---------------------------------------------------------------------- */

void th_vm_init(const isola_config *config) {
  TH_ASSERT_OK(isola_vm_init(config));
}

void th_leak_check(void) {
#if TH_HAVE_LSAN
  cr_assert(__lsan_do_recoverable_leak_check() == 0,
            "LeakSanitizer found leaks (listed above)");
#endif
}

void th_vm_shutdown_ok(void) {
  isola_shutdown_report report;
  memset(&report, 0, sizeof report);
  int rc = isola_vm_shutdown(&report);
  cr_assert(rc == ISOLA_OK,
            "isola_vm_shutdown returned %s, expected ISOLA_OK; stuck=%zu: %s",
            isola_err_name(rc), report.stuck, report.text);
  cr_assert(isola_live_isolates() == 0,
            "isola_live_isolates() is %zu after shutdown",
            isola_live_isolates());
  th_leak_check();
}

/* ---------------------------------------------------------------------- */

int64_t th_int(isola_value v) {
  int64_t i = 0;
  TH_CHECK_OK(isola_value_get_int(v, &i));
  return i;
}

isola_port th_port(isola_value v) {
  isola_port p = ISOLA_PORT_NONE;
  TH_CHECK_OK(isola_value_get_port(v, &p));
  return p;
}

int64_t th_item_int(isola_value list, size_t index) {
  isola_value item;
  TH_CHECK_OK(isola_list_get(list, index, &item));
  return th_int(item);
}

isola_port th_item_port(isola_value list, size_t index) {
  isola_value item;
  TH_CHECK_OK(isola_list_get(list, index, &item));
  return th_port(item);
}

const char *th_item_str(isola_value list, size_t index) {
  isola_value item;
  const char *s = NULL;
  TH_CHECK_OK(isola_list_get(list, index, &item));
  TH_CHECK_OK(isola_value_get_str(item, &s, NULL));
  return s;
}

/* ---------------------------------------------------------------------- */

uint64_t th_seed(const char *what) {
  const char *env = getenv("ISOLA_TEST_SEED");
  uint64_t seed;
  if (env && *env) {
    seed = strtoull(env, NULL, 0);
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed = ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^
           ((uint64_t)getpid() << 32);
  }
  /* Printed on stderr as well as logged: the log is only shown on failure
   * by some runners, stderr always reaches ctest --output-on-failure. */
  fprintf(stderr, "%s: seed %llu (replay with ISOLA_TEST_SEED=%llu)\n", what,
          (unsigned long long)seed, (unsigned long long)seed);
  return seed;
}
