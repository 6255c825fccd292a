/* SPDX-License-Identifier: MIT */
/*
 * The runner on SIGINT and SIGTERM: every isolate ends (its isolate-local
 * destructor runs), the exit status is 130 / 143, and an isolate that
 * cannot end is named, with a snapshot line, once the grace has passed.
 * The runner runs tests/modules/observed.c, which prints "ready" once its
 * isolates are up; each wait below is for output or for the exit, with a
 * deadline.  Also SIGUSR2, which resumes the isolates paused by
 * --pause-isolates-on-start (tests/modules/exits.c).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "helpers.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

TestSuite(runner_signals, .timeout = TH_TEST_TIMEOUT_S);

typedef struct child {
  pid_t pid;
  int out, err; /* read ends */
  char obuf[8192], ebuf[8192];
  size_t olen, elen;
  bool oeof, eeof;
} child;

static void start(child *c, const char *const *args) {
  int o[2], e[2];
  cr_assert(pipe(o) == 0 && pipe(e) == 0, "%s", "check failed");
  memset(c, 0, sizeof *c);
  c->pid = fork();
  cr_assert(c->pid >= 0, "%s", "check failed");
  if (c->pid == 0) {
    dup2(o[1], 1);
    dup2(e[1], 2);
    close(o[0]), close(o[1]), close(e[0]), close(e[1]);
    execv(ISOLA_RUNNER, (char *const *)args);
    _exit(127);
  }
  close(o[1]), close(e[1]);
  c->out = o[0];
  c->err = e[0];
}

static long ms_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int count_of(const char *s, const char *text) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, text)); p += strlen(text)) n++;
  return n;
}

/* Reads what is there until the deadline, until both pipes end, or until
 * stdout holds until_out or stderr holds until_err `times` times; returns
 * whether it got what it waited for (with neither: the end). */
static bool pump_for(child *c, long deadline, const char *until_out,
                     const char *until_err, int times) {
  for (;;) {
    if (until_out && strstr(c->obuf, until_out)) return true;
    if (until_err && count_of(c->ebuf, until_err) >= times) return true;
    if (c->oeof && c->eeof) return !until_out && !until_err;
    long left = deadline - ms_now();
    if (left <= 0) return false;
    struct pollfd p[2] = {{c->oeof ? -1 : c->out, POLLIN, 0},
                          {c->eeof ? -1 : c->err, POLLIN, 0}};
    if (poll(p, 2, (int)left) < 0 && errno != EINTR) return false;
    for (int i = 0; i < 2; i++) {
      if (!(p[i].revents & (POLLIN | POLLHUP))) continue;
      char *buf = i ? c->ebuf : c->obuf;
      size_t *len = i ? &c->elen : &c->olen;
      ssize_t n = read(p[i].fd, buf + *len, sizeof c->obuf - 1 - *len);
      if (n <= 0) {
        if (i) c->eeof = true; else c->oeof = true;
        continue;
      }
      *len += (size_t)n;
      buf[*len] = '\0';
    }
  }
}

static bool pump(child *c, long deadline, const char *until_out) {
  return pump_for(c, deadline, until_out, NULL, 0);
}

/* Waits for the exit (both pipes at end first) and returns the status. */
static int finish(child *c) {
  long deadline = ms_now() + TH_WAIT_MS;
  cr_assert(pump(c, deadline, NULL), "the runner did not exit; stdout:\n%s\n"
            "stderr:\n%s", c->obuf, c->ebuf);
  int st;
  cr_assert(waitpid(c->pid, &st, 0) == c->pid, "%s", "check failed");
  close(c->out);
  close(c->err);
  cr_log_info("stdout:\n%s\nstderr:\n%s", c->obuf, c->ebuf);
  cr_assert(WIFEXITED(st), "the runner died of signal %d",
            WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  return WEXITSTATUS(st);
}

static void run_until_ready(child *c, const char *const *args) {
  start(c, args);
  cr_assert(pump(c, ms_now() + TH_WAIT_MS, "ready\n"),
            "no 'ready' from the module; stdout:\n%s\nstderr:\n%s", c->obuf,
            c->ebuf);
}

static void every_isolate_ended(const child *c) {
  static const char *const names[] = {"main", "slow-consumer", "producer",
                                      "echo-0", "echo-1", "echo-2"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char line[64];
    snprintf(line, sizeof line, "ended: %s\n", names[i]);
    cr_assert(strstr(c->obuf, line), "no '%s' in stdout:\n%s", names[i],
              c->obuf);
  }
}

Test(runner_signals, sigint_ends_every_isolate_and_exits_130) {
  const char *const args[] = {"isola", "run", TM_OBSERVED, NULL};
  child c;
  run_until_ready(&c, args);
  cr_assert(kill(c.pid, SIGINT) == 0, "%s", "check failed");
  cr_assert((finish(&c)) == (130), "%s", "finish(&c) == 130");
  every_isolate_ended(&c);
  cr_assert(strstr(c.ebuf, "SIGINT: ending every isolate"), "%s", "check failed");
  cr_assert(!strstr(c.ebuf, "did not end"), "%s", "check failed");
}

Test(runner_signals, sigterm_exits_143) {
  const char *const args[] = {"isola", "run", "--isolate-stats", TM_OBSERVED,
                              NULL};
  child c;
  run_until_ready(&c, args);
  cr_assert(kill(c.pid, SIGTERM) == 0, "%s", "check failed");
  cr_assert((finish(&c)) == (143), "%s", "finish(&c) == 143");
  every_isolate_ended(&c);
}

Test(runner_signals, a_stuck_isolate_is_named_with_a_snapshot_line) {
  const char *const args[] = {"isola", "run", "--isolate-stats",
                              "--shutdown-grace", "100", TM_OBSERVED,
                              "stuck", NULL};
  child c;
  run_until_ready(&c, args);
  cr_assert(kill(c.pid, SIGINT) == 0, "%s", "check failed");
  cr_assert((finish(&c)) == (130), "%s", "finish(&c) == 130");
  every_isolate_ended(&c);
  cr_assert(strstr(c.ebuf, "1 isolate(s) did not end"), "stderr:\n%s",
            c.ebuf);
  cr_assert(strstr(c.ebuf, "isola: stuck: 'blocker'"), "stderr:\n%s", c.ebuf);
  /* With isolate stats, the line says it is in a turn, and for how long. */
  cr_assert(strstr(c.ebuf, "running for "), "stderr:\n%s", c.ebuf);
  cr_assert(!strstr(c.obuf, "ended: blocker"), "%s", "check failed");
}

Test(runner_signals, bad_shutdown_grace_is_a_usage_error) {
  const char *const args[] = {"isola", "run", "--shutdown-grace", "0",
                              TM_OBSERVED, NULL};
  child c;
  start(&c, args);
  cr_assert((finish(&c)) == (64), "%s", "finish(&c) == 64");
}

/* --pause-isolates-on-start: once the root isolate is paused the run says
 * how to resume it, with its pid; each SIGUSR2 resumes every isolate
 * paused then, and is answered with a line. */
static void resume(child *c, int nth) {
  long deadline = ms_now() + TH_WAIT_MS;
  if (nth == 1) {
    cr_assert(pump_for(c, deadline, NULL, "kill -USR2 ", 1),
              "no resume instruction; stdout:\n%s\nstderr:\n%s", c->obuf,
              c->ebuf);
    char want[64];
    snprintf(want, sizeof want, "kill -USR2 %ld ", (long)c->pid);
    cr_assert(strstr(c->ebuf, want), "no '%s' in stderr:\n%s", want,
              c->ebuf);
    cr_assert(strstr(c->ebuf, "root isolate 'main' is paused now"),
              "stderr:\n%s", c->ebuf);
  }
  cr_assert(kill(c->pid, SIGUSR2) == 0, "%s", "check failed");
  cr_assert(pump_for(c, deadline, NULL, "isola: SIGUSR2: resume sent", nth),
            "no answer to SIGUSR2 number %d; stderr:\n%s", nth, c->ebuf);
}

Test(runner_signals, pause_on_start_resumes_on_sigusr2) {
  const char *const args[] = {"isola", "run", "--pause-isolates-on-start",
                              TM_EXITS, "ok", NULL};
  child c;
  start(&c, args);
  resume(&c, 1);
  cr_assert((finish(&c)) == (0), "%s", "exit status 0");
}

Test(runner_signals, a_child_paused_on_start_resumes_on_a_later_sigusr2) {
  /* The root spawns a child that sets exit code 42 and tells the root,
   * which waits for it: 42 only if the child ran.  The child starts paused
   * too, after the first resume: the second resumes it. */
  const char *const args[] = {"isola", "run", "--pause-isolates-on-start",
                              TM_EXITS, "code", "42", NULL};
  child c;
  start(&c, args);
  resume(&c, 1);
  cr_assert(pump(&c, ms_now() + TH_WAIT_MS, "spawned\n"),
            "no 'spawned'; stdout:\n%s\nstderr:\n%s", c.obuf, c.ebuf);
  resume(&c, 2);
  cr_assert((finish(&c)) == (42), "%s", "exit status 42");
}
