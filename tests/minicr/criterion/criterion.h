/* SPDX-License-Identifier: MIT */
/*
 * minicr: the small subset of Criterion's API that the isola tests use,
 * for ThreadSanitizer builds only.
 *
 * Why: Criterion 2.4 cannot start under ThreadSanitizer.  Its runner maps a
 * shared "inheritable arena" at random fixed addresses that TSan reserves
 * for its shadow memory, and aborts with "Could not initialize inheritable
 * arena: Resource temporarily unavailable" (Snaipe/Criterion#274, open).
 * tests/CMakeLists.txt therefore builds the tests against this header and
 * minicr.c when ISOLA_SANITIZE contains "thread".
 *
 * Same model as Criterion: every test runs in its own forked process (the
 * runner itself never starts a thread, so TSan's fork rules hold), with a
 * timeout; a failed assertion ends that process with a message.
 *
 * Supported: Test(suite, name, ...) (extra options ignored),
 * TestSuite(suite, ...), cr_assert(cond, fmt, ...), cr_assert_fail(fmt, ...),
 * cr_log_info / cr_log_warn / cr_log_error(fmt, ...).  Command line:
 * --timeout N, --filter GLOB (matched against "suite/name"), --list; other
 * Criterion options are accepted and ignored.
 */
#ifndef MINICR_CRITERION_H
#define MINICR_CRITERION_H

#ifdef __cplusplus
extern "C" {
#endif

typedef void (*minicr_fn)(void);

void minicr_register(const char *suite, const char *name, minicr_fn fn);

#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 4, 5)))
#endif
void minicr_fail(const char *file, int line, const char *expr,
                 const char *fmt, ...);

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void minicr_log(const char *level, const char *fmt, ...);

#define MINICR_CAT_(a, b) a##b
#define MINICR_CAT(a, b) MINICR_CAT_(a, b)

/* The extra ~ gives the variadic part an argument when the caller has no
 * options (ISO C requires one). */
#define Test(...) MINICR_TEST_(__VA_ARGS__, ~)
#define MINICR_TEST_(suite, name, ...)                                       \
  static void suite##_##name##_impl(void);                                   \
  __attribute__((constructor)) static void suite##_##name##_register(void) { \
    minicr_register(#suite, #name, suite##_##name##_impl);                   \
  }                                                                          \
  static void suite##_##name##_impl(void)

#define TestSuite(...) MINICR_SUITE_(__VA_ARGS__, ~)
#define MINICR_SUITE_(suite, ...) extern int MINICR_CAT(minicr_suite_, suite)

#define cr_assert(cond, ...)                                                 \
  do {                                                                       \
    if (!(cond)) minicr_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);        \
  } while (0)

#define cr_assert_fail(...) minicr_fail(__FILE__, __LINE__, NULL, __VA_ARGS__)

#define cr_log_info(...) minicr_log("INFO", __VA_ARGS__)
#define cr_log_warn(...) minicr_log("WARN", __VA_ARGS__)
#define cr_log_error(...) minicr_log("ERR ", __VA_ARGS__)

#ifdef __cplusplus
}
#endif

#endif /* MINICR_CRITERION_H */
