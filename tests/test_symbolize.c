/* SPDX-License-Identifier: MIT */
/*
 * config.stack_symbolizer: an uncaught error's stack goes through it (its
 * text reaches the unhandled_error hook), NULL from it falls back to the
 * default, and isola_symbolize() (libdw, when built) names the function
 * that threw with its file and line.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "helpers.h"

#include <execinfo.h>

#ifdef ISOLA_HAVE_SYMBOLIZE
#include <isola_symbolize.h>
#endif

TestSuite(symbolize, .timeout = TH_TEST_TIMEOUT_S);

static char seen[8192];
static th_counter reported = TH_COUNTER_INIT;

static void on_uncaught(void *data, const isola_isolate_info *info,
                        const char *message, const char *stack) {
  (void)data, (void)info, (void)message;
  snprintf(seen, sizeof seen, "%s", stack);
  th_counter_add(&reported, 1);
}

/* noinline: a frame of its own in the stack. */
__attribute__((noinline)) static void throw_here_for_symbolize(void) {
  isola_throw("thrown on purpose");
}

static void thrower_entry(isola_value msg) {
  (void)msg;
  throw_here_for_symbolize();
}

static int calls;
static char *counting_null(void *const *frames, int n) {
  (void)frames;
  TH_CHECK(n > 0);
  calls++;
  return NULL;
}

static char *fixed_text(void *const *frames, int n) {
  (void)frames, (void)n;
  return strdup("the symbolizer's own text");
}

static void run_thrower(char *(*symbolizer)(void *const *, int)) {
  isola_config c;
  isola_config_init(&c);
  c.workers = 1;
  c.unhandled_error = on_uncaught;
  c.stack_symbolizer = symbolizer;
  th_vm_init(&c);
  long before = th_counter_get(&reported);
  TH_ASSERT_OK(isola_spawn(thrower_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&reported, before + 1);
  th_vm_shutdown_ok();
  cr_log_info("stack:\n%s", seen);
}

Test(symbolize, the_symbolizer_text_is_the_stack) {
  run_thrower(fixed_text);
  cr_assert(strcmp(seen, "the symbolizer's own text") == 0, "stack: %s",
            seen);
}

Test(symbolize, null_from_the_symbolizer_falls_back_to_raw_frames) {
  run_thrower(counting_null);
  cr_assert(calls == 1, "the symbolizer ran %d times", calls);
  cr_assert(strstr(seen, "[0x") != NULL, "not backtrace_symbols text: %s",
            seen);
}

#ifdef ISOLA_HAVE_SYMBOLIZE
Test(symbolize, libdw_names_the_function_file_and_line) {
  run_thrower(isola_symbolize);
  cr_assert(strstr(seen, "throw_here_for_symbolize+0x"), "stack:\n%s", seen);
#if !defined(__clang__)
  /* With clang 14's debug info (DWARF 5) CI's libdw 0.188 found the
   * functions but no file:line; gcc's it reads (docs/observability.md). */
  cr_assert(strstr(seen, "test_symbolize.c:"), "no file:line:\n%s", seen);
#endif
  cr_assert(strncmp(seen, "#0 0x", 5) == 0, "stack:\n%s", seen);
}

Test(symbolize, direct_call_and_bad_arguments) {
  void *frames[8];
  int n = backtrace(frames, 8);
  char *s = isola_symbolize(frames, n);
  cr_assert(s && strstr(s, "symbolize_direct_call_and_bad_arguments"),
            "stack:\n%s", s ? s : "(null)");
  free(s);
  cr_assert(isola_symbolize(NULL, 3) == NULL, "%s", "NULL frames");
  cr_assert(isola_symbolize(frames, 0) == NULL, "%s", "no frames");
}
#endif
