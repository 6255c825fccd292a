/* SPDX-License-Identifier: MIT */
/*
 * Trace export (config.trace_events_path): the file written at shutdown
 * holds turns (balanced begin/end per thread), spawns, sends with flow
 * arrows, a pause and ends with their reason; isola_trace_write() writes on
 * demand; a full buffer drops and says so.  --trace-isolates lines carry a
 * timestamp and the end reason.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "helpers.h"

#include <unistd.h>

TestSuite(trace, .timeout = TH_TEST_TIMEOUT_S);

static char *slurp(const char *path) {
  FILE *f = fopen(path, "r");
  cr_assert(f, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  cr_assert(fread(buf, 1, (size_t)n, f) == (size_t)n, "%s", "short read");
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static size_t count(const char *s, const char *what) {
  size_t n = 0;
  for (const char *p = s; (p = strstr(p, what)); p += strlen(what)) n++;
  return n;
}

static th_counter done = TH_COUNTER_INIT;

static void on_echo(void *ctx, isola_port port, isola_value msg,
                    isola_port reply_to) {
  (void)ctx;
  if (msg.as.i < 0) {
    isola_port_close(port);
    return;
  }
  isola_send(reply_to, msg);
}

static void echo_entry(isola_value back) {
  isola_port me;
  TH_CHECK_OK(isola_port_open(on_echo, NULL, &me));
  TH_CHECK_OK(isola_send(back.as.port, isola_sendport(me)));
}

static void idle_entry(isola_value msg) {
  (void)msg;
  isola_port me;
  TH_CHECK_OK(isola_port_open(on_echo, NULL, &me));
}

static isola_isolate victim;
static int replies;

static void on_main(void *ctx, isola_port port, isola_value msg,
                    isola_port reply_to) {
  (void)ctx, (void)reply_to;
  static isola_port echo;
  if (msg.kind == ISOLA_PORT) {
    echo = msg.as.port;
    for (int i = 0; i < 5; i++)
      TH_CHECK_OK(isola_send_reply(echo, isola_int(i), port));
    return;
  }
  if (++replies == 5) {
    TH_CHECK_OK(isola_send(echo, isola_int(-1)));
    TH_CHECK_OK(isola_pause(&victim, 0));
    TH_CHECK_OK(isola_ping(&victim, port, isola_str("pong"),
                           ISOLA_IMMEDIATE));
  } else if (msg.kind == ISOLA_STRING) { /* the paused victim's pong */
    TH_CHECK_OK(isola_kill(&victim, ISOLA_IMMEDIATE));
    isola_port_close(port);
    th_counter_add(&done, 1);
  }
}

static void main_entry(isola_value msg) {
  (void)msg;
  isola_port me;
  TH_CHECK_OK(isola_port_open(on_main, NULL, &me));
  isola_spawn_options o = {.name = "traced-echo"};
  TH_CHECK_OK(isola_spawn(echo_entry, isola_sendport(me), &o, NULL));
  isola_spawn_options v = {.name = "traced-victim"};
  TH_CHECK_OK(isola_spawn(idle_entry, isola_null(), &v, &victim));
}

/* The ends of the victim and the echo, which the test waits for: a
 * shutdown that came first would end them with reason shutdown. */
static th_counter victim_gone = TH_COUNTER_INIT;
static void on_cleanup(void *data, const isola_isolate_info *info) {
  (void)data;
  if (strcmp(info->name, "traced-victim") == 0 ||
      strcmp(info->name, "traced-echo") == 0)
    th_counter_add(&victim_gone, 1);
}

Test(trace, the_file_holds_turns_spawns_flows_pauses_and_ends) {
  char path[] = "/tmp/isola-trace-XXXXXX";
  int fd = mkstemp(path);
  cr_assert(fd >= 0, "%s", "mkstemp");
  close(fd);
  char log[4096] = {0};
  FILE *lines = fmemopen(log, sizeof log - 1, "w");
  setvbuf(lines, NULL, _IONBF, 0);
  isola_config c;
  isola_config_init(&c);
  c.workers = 2;
  c.trace_events_path = path;
  c.trace = ISOLA_TRACE_ISOLATES;
  c.trace_file = lines;
  c.hooks.isolate_cleanup = on_cleanup;
  th_vm_init(&c);
  TH_ASSERT_OK(isola_run_main(main_entry, isola_null(), "traced-main"));
  TH_WAIT_GE(&done, 1);
  TH_WAIT_GE(&victim_gone, 2);
  /* On demand, while running: a file that already names the main. */
  char now[] = "/tmp/isola-trace-now-XXXXXX";
  fd = mkstemp(now);
  cr_assert(fd >= 0, "%s", "mkstemp");
  close(fd);
  TH_ASSERT_OK(isola_trace_write(now));
  char *early = slurp(now);
  cr_assert(strstr(early, "\"name\":\"traced-main\""), "%s", early);
  free(early);
  unlink(now);
  th_vm_shutdown_ok();
  fclose(lines);

  char *t = slurp(path);
  unlink(path);
  cr_assert(strncmp(t, "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[", 38) == 0,
            "%s", "not a trace-event file");
  cr_assert(strstr(t, "\n]}\n"), "%s", "the file is not closed");
  size_t b = count(t, "\"ph\":\"B\""), e = count(t, "\"ph\":\"E\"");
  cr_assert(b > 0 && b == e, "turn begins %zu, ends %zu", b, e);
  cr_assert(count(t, "\"name\":\"spawn\"") >= 2, "%s", "no spawns");
  cr_assert(strstr(t, "\"name\":\"traced-echo\"}"), "%s", "spawn unnamed");
  /* Ten sends from handlers between main and echo: each an arrow. */
  size_t s = count(t, "\"ph\":\"s\""), f = count(t, "\"ph\":\"f\"");
  cr_assert(s >= 10 && f >= 10, "flows out %zu, in %zu", s, f);
  cr_assert(strstr(t, "\"name\":\"paused\""), "%s", "no pause");
  cr_assert(strstr(t, "\"reason\":\"killed\",\"name\":\"traced-victim\""),
            "%s", "the victim's end is not 'killed'");
  cr_assert(strstr(t, "\"reason\":\"normal\",\"name\":\"traced-echo\""),
            "%s", "the echo's end is not 'normal'");
  cr_assert(strstr(t, "\"name\":\"thread_name\""), "%s", "threads unnamed");
  free(t);
  /* --trace-isolates lines: "isola: <seconds> isolate ... ended: reason". */
  cr_assert(strstr(log, "(") && strstr(log, "ended: killed\n") &&
                strstr(log, "ended: normal\n"),
            "trace lines:\n%s", log);
  double ts;
  cr_assert(sscanf(log, "isola: %lf isolate", &ts) == 1 && ts > 0,
            "no timestamp in:\n%s", log);
}

Test(trace, a_full_buffer_drops_and_says_so_and_off_is_einval) {
  th_vm_init(NULL);
  TH_ASSERT_RC(isola_trace_write("/tmp/never"), ISOLA_EINVAL);
  th_vm_shutdown_ok();
  TH_ASSERT_RC(isola_trace_write("/tmp/never"), ISOLA_ENOVM);

  char path[] = "/tmp/isola-trace-XXXXXX";
  int fd = mkstemp(path);
  cr_assert(fd >= 0, "%s", "mkstemp");
  close(fd);
  isola_config c;
  isola_config_init(&c);
  c.workers = 1;
  c.trace_events_path = path;
  c.trace_events_per_thread = 4;
  th_vm_init(&c);
  TH_ASSERT_OK(isola_run_main(main_entry, isola_null(), "traced-main"));
  th_vm_shutdown_ok();
  char *t = slurp(path);
  unlink(path);
  cr_assert(strstr(t, "events dropped"), "%s", t);
  free(t);
}
