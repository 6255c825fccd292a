/* SPDX-License-Identifier: MIT */
/*
 * minicr: a fork-per-test runner for the Criterion subset declared in
 * minicr/criterion/criterion.h (ThreadSanitizer builds only; see there).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "criterion/criterion.h"

#include <errno.h>
#include <fnmatch.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TESTS 512

struct test {
  const char *suite;
  const char *name;
  minicr_fn fn;
};

static struct test tests[MAX_TESTS];
static int ntests;

void minicr_register(const char *suite, const char *name, minicr_fn fn) {
  if (ntests == MAX_TESTS) {
    fprintf(stderr, "minicr: more than %d tests\n", MAX_TESTS);
    exit(2);
  }
  tests[ntests].suite = suite;
  tests[ntests].name = name;
  tests[ntests].fn = fn;
  ntests++;
}

void minicr_fail(const char *file, int line, const char *expr,
                 const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "[----] %s:%d: Assertion Failed\n", file, line);
  if (expr) fprintf(stderr, "[----]   %s\n", expr);
  fprintf(stderr, "[----]   ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n");
  fflush(stderr);
  /* exit, not _exit: ThreadSanitizer reports at exit as well. */
  exit(1);
}

void minicr_log(const char *level, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "[%s] ", level);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n");
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs one test in a child process; returns 1 if it passed. */
static int run_one(const struct test *t, unsigned timeout_s) {
  fflush(NULL);
  double start = now_s();
  pid_t pid = fork();
  if (pid < 0) {
    perror("minicr: fork");
    return 0;
  }
  if (pid == 0) {
    /* The child: its own process group so the parent can kill it whole. */
    setpgid(0, 0);
    if (timeout_s) alarm(timeout_s);
    t->fn();
    fflush(NULL);
    exit(0);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      perror("minicr: waitpid");
      return 0;
    }
  }
  double took = now_s() - start;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    fprintf(stderr, "[PASS] %s::%s: (%.2fs)\n", t->suite, t->name, took);
    return 1;
  }
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
    fprintf(stderr, "[FAIL] %s::%s: Timed out. (%.2fs)\n", t->suite, t->name,
            took);
  else if (WIFSIGNALED(status))
    fprintf(stderr, "[FAIL] %s::%s: CRASH! signal %d (%s) (%.2fs)\n",
            t->suite, t->name, WTERMSIG(status), strsignal(WTERMSIG(status)),
            took);
  else
    fprintf(stderr, "[FAIL] %s::%s: exit code %d (%.2fs)\n", t->suite,
            t->name, WEXITSTATUS(status), took);
  return 0;
}

int main(int argc, char **argv) {
  unsigned timeout_s = 0;
  const char *filter = NULL;
  int list = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--timeout") && i + 1 < argc)
      timeout_s = (unsigned)atof(argv[++i]);
    else if (!strncmp(a, "--timeout=", 10))
      timeout_s = (unsigned)atof(a + 10);
    else if (!strcmp(a, "--filter") && i + 1 < argc)
      filter = argv[++i];
    else if (!strncmp(a, "--filter=", 9))
      filter = a + 9;
    else if (!strcmp(a, "-l") || !strcmp(a, "--list"))
      list = 1;
    else if ((!strcmp(a, "--jobs") || !strcmp(a, "-j")) && i + 1 < argc)
      i++; /* one test at a time anyway */
    /* anything else: a Criterion option minicr ignores */
  }

  int run = 0, passed = 0;
  for (int i = 0; i < ntests; i++) {
    char full[256];
    snprintf(full, sizeof full, "%s/%s", tests[i].suite, tests[i].name);
    if (filter && fnmatch(filter, full, 0) != 0) continue;
    if (list) {
      printf("%s\n", full);
      continue;
    }
    run++;
    passed += run_one(&tests[i], timeout_s);
  }
  if (!list)
    fprintf(stderr,
            "[====] Synthesis: Tested: %d | Passing: %d | Failing: %d\n", run,
            passed, run - passed);
  return passed == run ? 0 : 1;
}
