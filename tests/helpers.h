/* SPDX-License-Identifier: MIT */
/*
 * Shared helpers for the isola test suite.
 *
 * Rules every test follows:
 *   - A test never sleeps to wait for something: it waits on the event it
 *     expects (a th_counter reaching a value) with a timeout that fails the
 *     test.
 *   - Criterion's cr_assert* may only be called on the test's own thread
 *     (it longjmps out of the test on failure).  Code that runs in an
 *     isolate or on a helper thread uses TH_CHECK* instead, which prints the
 *     failed check and aborts the test process (Criterion reports a crash,
 *     the message is on stderr).
 *   - A test that starts the VM ends with th_vm_shutdown_ok(), which also
 *     asks LeakSanitizer (in ASan builds) whether anything leaked.
 *
 * Sizes: tests use TH_SIZE(full) for their iteration counts.  The normal
 * build runs the full sizes named by the issue; sanitizer builds
 * (ISOLA_TEST_SANITIZE=1 address/undefined, 2 thread, set by
 * tests/CMakeLists.txt) divide them.
 */
#ifndef ISOLA_TESTS_HELPERS_H
#define ISOLA_TESTS_HELPERS_H

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <isola.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------- */
/* Build flavour, sizes and timeouts                                       */
/* ---------------------------------------------------------------------- */

#ifndef ISOLA_TEST_SANITIZE
#define ISOLA_TEST_SANITIZE 0
#endif

#ifndef TH_SIZE_DIV /* may be set on the command line */
#if ISOLA_TEST_SANITIZE == 2 /* thread sanitizer */
#define TH_SIZE_DIV 4
#elif ISOLA_TEST_SANITIZE == 1 /* address,undefined */
#define TH_SIZE_DIV 2
#else
#define TH_SIZE_DIV 1
#endif
#endif

/* An iteration count: full in the normal build, divided (never below 1) in
 * sanitizer builds. */
#define TH_SIZE(full)                                                        \
  ((full) / TH_SIZE_DIV > 0 ? (full) / TH_SIZE_DIV : 1)

/* Per-test timeout in seconds (Criterion kills a test that runs longer). */
#ifndef TH_TEST_TIMEOUT_S
#if ISOLA_TEST_SANITIZE
#define TH_TEST_TIMEOUT_S 300
#else
#define TH_TEST_TIMEOUT_S 60
#endif
#endif

/* How long a test waits for an event before it fails: below the per-test
 * timeout so a missing event is reported as such, not as a kill. */
#define TH_WAIT_MS ((long)TH_TEST_TIMEOUT_S * 1000L * 3L / 4L)

/* Whether LeakSanitizer is linked in (gcc and clang spell it differently). */
#if defined(__SANITIZE_ADDRESS__)
#define TH_HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TH_HAVE_LSAN 1
#endif
#endif
#ifndef TH_HAVE_LSAN
#define TH_HAVE_LSAN 0
#endif

/* ---------------------------------------------------------------------- */
/* Checks                                                                  */
/* ---------------------------------------------------------------------- */

/* Test thread: asserts that call returned the isola code expected, naming
 * both codes on failure. */
#define TH_ASSERT_RC(call, expected)                                         \
  do {                                                                       \
    int th_rc_ = (call);                                                     \
    int th_exp_ = (expected);                                                \
    cr_assert(th_rc_ == th_exp_, "%s returned %s (%d), expected %s (%d)",    \
              #call, isola_err_name(th_rc_), th_rc_, isola_err_name(th_exp_), \
              th_exp_);                                                      \
  } while (0)

#define TH_ASSERT_OK(call) TH_ASSERT_RC(call, ISOLA_OK)

/* Any thread (isolates, helper threads): on failure prints the check and
 * aborts the process, which fails the test. */
#define TH_CHECK(cond)                                                       \
  do {                                                                       \
    if (!(cond)) th_check_failed(__FILE__, __LINE__, "%s", #cond);           \
  } while (0)

#define TH_CHECKF(cond, ...)                                                 \
  do {                                                                       \
    if (!(cond)) th_check_failed(__FILE__, __LINE__, __VA_ARGS__);           \
  } while (0)

#define TH_CHECK_RC(call, expected)                                          \
  do {                                                                       \
    int th_rc_ = (call);                                                     \
    int th_exp_ = (expected);                                                \
    if (th_rc_ != th_exp_)                                                   \
      th_check_failed(__FILE__, __LINE__, "%s returned %s (%d), expected %s", \
                      #call, isola_err_name(th_rc_), th_rc_,                 \
                      isola_err_name(th_exp_));                              \
  } while (0)

#define TH_CHECK_OK(call) TH_CHECK_RC(call, ISOLA_OK)

#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 3, 4)))
#endif
void th_check_failed(const char *file, int line, const char *fmt, ...);

/* ---------------------------------------------------------------------- */
/* Waiting: a counter guarded by a mutex and a condition variable          */
/* ---------------------------------------------------------------------- */

typedef struct th_counter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  long value; /* protected by mu */
} th_counter;

#define TH_COUNTER_INIT                                                      \
  { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 }

void th_counter_init(th_counter *c);
void th_counter_destroy(th_counter *c);
/* Adds n and wakes every waiter.  Any thread. */
void th_counter_add(th_counter *c, long n);
long th_counter_get(th_counter *c);
/* Waits until the value is >= target; false after timeout_ms. */
bool th_counter_wait_ge(th_counter *c, long target, long timeout_ms);

/* Test thread: waits until the counter reaches target or fails the test. */
#define TH_WAIT_GE(counter, target)                                          \
  do {                                                                       \
    long th_target_ = (long)(target);                                        \
    if (!th_counter_wait_ge((counter), th_target_, TH_WAIT_MS))              \
      cr_assert_fail("timed out after %ld ms waiting for %s to reach %ld "   \
                     "(it is %ld)",                                          \
                     TH_WAIT_MS, #counter, th_target_,                       \
                     th_counter_get(counter));                               \
  } while (0)

/* Any thread: as TH_WAIT_GE, aborting the process on timeout. */
#define TH_CHECK_WAIT_GE(counter, target)                                    \
  do {                                                                       \
    long th_target_ = (long)(target);                                        \
    if (!th_counter_wait_ge((counter), th_target_, TH_WAIT_MS))              \
      th_check_failed(__FILE__, __LINE__,                                    \
                      "timed out waiting for %s to reach %ld (it is %ld)",   \
                      #counter, th_target_, th_counter_get(counter));        \
  } while (0)

/* Test thread: waits until isola_live_isolates() == n.  The API gives no
 * event for "the count dropped", so this polls with sched_yield until the
 * deadline; it is only used after the event that ends the isolates (their
 * cleanup hooks) has been waited for, to absorb the instant between the
 * hook and the count. */
void th_wait_live_isolates(size_t n);

/* ---------------------------------------------------------------------- */
/* VM                                                                      */
/* ---------------------------------------------------------------------- */

/* Test thread: isola_vm_init(config) must succeed. */
void th_vm_init(const isola_config *config);
/* Test thread: isola_vm_shutdown() must return ISOLA_OK (the report is
 * printed otherwise), then checks for leaks. */
void th_vm_shutdown_ok(void);
/* Test thread: fails the test if LeakSanitizer finds a leak (ASan builds;
 * nothing elsewhere). */
void th_leak_check(void);

/* ---------------------------------------------------------------------- */
/* Values                                                                  */
/* ---------------------------------------------------------------------- */

/* Any thread: element index of a list message as an int / port / string,
 * aborting on a kind or range error. */
int64_t th_item_int(isola_value list, size_t index);
isola_port th_item_port(isola_value list, size_t index);
const char *th_item_str(isola_value list, size_t index);
int64_t th_int(isola_value v);
isola_port th_port(isola_value v);

/* ---------------------------------------------------------------------- */
/* Randomness (tests that use it print their seed)                         */
/* ---------------------------------------------------------------------- */

/* splitmix64 step. */
static inline uint64_t th_rand(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Uniform in [0, n), n > 0. */
static inline uint64_t th_rand_below(uint64_t *state, uint64_t n) {
  return th_rand(state) % n;
}

/* The seed to use: $ISOLA_TEST_SEED if set, else one from the clock; logged
 * with the test's name so a failure can be replayed. */
uint64_t th_seed(const char *what);

#endif /* ISOLA_TESTS_HELPERS_H */
