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

#include <dlfcn.h>
#include <execinfo.h>
#include <stdbool.h>
#include <stdint.h>

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
static int throw_line;
__attribute__((noinline)) static void throw_here_for_symbolize(void) {
  throw_line = __LINE__ + 1;
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
/* The line of text that names function+0x... in stack, or "" when none;
 * in a static buffer. */
static const char *frame_of(const char *stack, const char *function) {
  static char frame[1024];
  char key[256];
  snprintf(key, sizeof key, " %s+0x", function);
  const char *at = strstr(stack, key);
  frame[0] = '\0';
  if (!at) return frame;
  while (at > stack && at[-1] != '\n') at--;
  size_t len = strcspn(at, "\n");
  if (len >= sizeof frame) len = sizeof frame - 1;
  memcpy(frame, at, len);
  frame[len] = '\0';
  return frame;
}

/* " at <...>/file:line (" in frame. */
static bool names_file_line(const char *frame, const char *file, int line) {
  char want[256];
  snprintf(want, sizeof want, "/%s:%d (", file, line);
  return strstr(frame, " at ") && strstr(frame, want);
}

Test(symbolize, libdw_names_the_function_file_and_line) {
  run_thrower(isola_symbolize);
  cr_assert(strncmp(seen, "#0 0x", 5) == 0, "stack:\n%s", seen);
  /* In gcc and in clang builds alike (clang writes no .debug_aranges, on
   * which libdw before elfutils 0.191 relies: isola_symbolize.c), and the
   * line of the call, not the one after it. */
  const char *frame = frame_of(seen, "throw_here_for_symbolize");
  cr_assert(names_file_line(frame, "test_symbolize.c", throw_line),
            "not test_symbolize.c:%d in \"%s\"; stack:\n%s", throw_line,
            frame, seen);
}

#ifdef ISOLA_CLANG_UNIT
/* The same in a module built by clang whatever builds this test. */
Test(symbolize, file_and_line_in_a_module_without_debug_aranges) {
  void *lib = dlopen(ISOLA_CLANG_UNIT, RTLD_NOW);
  cr_assert(lib, "dlopen %s: %s", ISOLA_CLANG_UNIT, dlerror());
  int (*frames_of)(void **, int, int *) = (int (*)(void **, int, int *))(
      uintptr_t)dlsym(lib, "symbolize_clang_frames");
  cr_assert(frames_of, "dlsym: %s", dlerror());
  void *frames[4];
  int line = 0;
  int n = frames_of(frames, 4, &line);
  cr_assert(n >= 2, "%d frames", n);
  char *s = isola_symbolize(frames, n);
  cr_assert(s, "%s", "isola_symbolize returned NULL");
  const char *frame = frame_of(s, "symbolize_clang_frames");
  bool ok = names_file_line(frame, "symbolize_clang_unit.c", line);
  cr_log_info("stack:\n%s", s);
  free(s);
  dlclose(lib);
  cr_assert(ok, "not symbolize_clang_unit.c:%d in \"%s\"", line, frame);
}
#endif

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
