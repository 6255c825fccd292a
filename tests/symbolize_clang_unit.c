/* SPDX-License-Identifier: MIT */
/*
 * A module that tests/CMakeLists.txt builds with clang (when clang is
 * installed) whatever compiler builds the rest: clang writes no
 * .debug_aranges, so test_symbolize checks, in gcc builds as well, that
 * isola_symbolize finds file:line in such a module.
 */
#include <execinfo.h>

int symbolize_clang_frames(void **frames, int n, int *line);

/* backtrace()'s frames, the innermost one in this function; *line is the
 * line of its call. */
__attribute__((noinline)) int symbolize_clang_frames(void **frames, int n,
                                                     int *line) {
  *line = __LINE__ + 1;
  int got = backtrace(frames, n);
  return got;
}
