/* SPDX-License-Identifier: MIT */
/*
 * isola_observe: the JSON endpoints name the isolates, /metrics passes
 * `promtool check metrics` (Debian prometheus; a line parser when it is
 * missing), the page is served whole, a foreign Host header and control
 * requests without permission or without the header are refused, and a
 * permitted kill ends the isolate.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "helpers.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <isola_observe.h>

TestSuite(observe, .timeout = TH_TEST_TIMEOUT_S);

typedef struct resp {
  int status;
  char *body; /* malloc'ed, NUL-terminated */
} resp;

/* One HTTP/1.0 request to 127.0.0.1:port; the answer read to its end. */
static resp http(uint16_t port, const char *method, const char *path,
                 const char *extra_headers) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  cr_assert(fd >= 0, "%s", "check failed");
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cr_assert(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "%s", "check failed");
  char req[512];
  int n = snprintf(req, sizeof req,
                   "%s %s HTTP/1.0\r\nHost: 127.0.0.1:%u\r\n%s\r\n", method,
                   path, (unsigned)port, extra_headers ? extra_headers : "");
  cr_assert(write(fd, req, (size_t)n) == n, "%s", "check failed");
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (len + 1 == cap) buf = realloc(buf, cap *= 2);
    ssize_t r = read(fd, buf + len, cap - len - 1);
    if (r <= 0) break;
    len += (size_t)r;
  }
  close(fd);
  buf[len] = '\0';
  resp out = {0, NULL};
  cr_assert(sscanf(buf, "HTTP/1.%*d %d", &out.status) == 1,
            "no status line in: %s", buf);
  char *body = strstr(buf, "\r\n\r\n");
  out.body = strdup(body ? body + 4 : "");
  free(buf);
  return out;
}

static th_counter up = TH_COUNTER_INIT;

static void on_nothing(void *ctx, isola_port port, isola_value msg,
                       isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
}

static void watched_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(on_nothing, NULL, &p));
  th_counter_add(&up, 1);
}

static isola_isolate start_vm(void) {
  isola_config c;
  isola_config_init(&c);
  c.workers = 2;
  c.isolate_stats = true;
  th_vm_init(&c);
  isola_spawn_options o = {.name = "watched \"quoted\" one"};
  isola_isolate h;
  TH_ASSERT_OK(isola_spawn(watched_entry, isola_null(), &o, &h));
  TH_WAIT_GE(&up, 1);
  return h;
}

/* Each sample line: a metric name, optional {labels}, a number. */
static void parse_metrics(const char *text) {
  const char *p = text;
  int samples = 0;
  while (*p) {
    const char *eol = strchr(p, '\n');
    cr_assert(eol, "the last line has no newline");
    if (*p != '#') {
      const char *q = p;
      cr_assert(isalpha((unsigned char)*q) || *q == '_', "bad line: %.*s",
                (int)(eol - p), p);
      while (isalnum((unsigned char)*q) || *q == '_' || *q == ':') q++;
      if (*q == '{') {
        q++;
        while (*q != '}') {
          while (isalnum((unsigned char)*q) || *q == '_') q++;
          cr_assert(q[0] == '=' && q[1] == '"', "bad label: %.*s",
                    (int)(eol - p), p);
          q += 2;
          while (*q != '"') q += *q == '\\' ? 2 : 1;
          q++;
          if (*q == ',') q++;
        }
        q++;
      }
      cr_assert(*q == ' ', "no value: %.*s", (int)(eol - p), p);
      char *end;
      strtod(q + 1, &end);
      cr_assert(end == eol, "bad value: %.*s", (int)(eol - p), p);
      samples++;
    }
    p = eol + 1;
  }
  cr_assert(samples > 10, "only %d samples", samples);
}

Test(observe, endpoints_serve_the_snapshot) {
  isola_isolate h = start_vm();
  isola_observe *o;
  TH_ASSERT_OK(isola_observe_start(NULL, &o));
  uint16_t port = isola_observe_port(o);
  cr_assert(port != 0, "%s", "check failed");

  resp r = http(port, "GET", "/api/isolates", NULL);
  cr_assert((r.status) == (200), "%s", "r.status == 200");
  cr_assert(strstr(r.body, "\"name\":\"watched \\\"quoted\\\" one\""),
            "body: %s", r.body);
  char id[32];
  snprintf(id, sizeof id, "\"id\":\"%016llx\"",
           (unsigned long long)h.control_port);
  cr_assert(strstr(r.body, id), "no %s in %s", id, r.body);
  free(r.body);
  r = http(port, "GET", "/api/workers", NULL);
  cr_assert(r.status == 200 && strstr(r.body, "\"workers\":[{\"id\":0"), "%s", "check failed");
  free(r.body);
  r = http(port, "GET", "/api/vm", NULL);
  cr_assert(r.status == 200 && strstr(r.body, "\"control\":false") &&
                strstr(r.body, "\"spawned\":1"),
            "body: %s", r.body);
  free(r.body);
  r = http(port, "GET", "/", NULL);
  cr_assert(r.status == 200 && strstr(r.body, "<title>isola observe") &&
                strstr(r.body, "const REFRESH = 1000;") &&
                strstr(r.body, "</html>"),
            "the page is not served whole");
  free(r.body);
  r = http(port, "GET", "/nothing", NULL);
  cr_assert((r.status) == (404), "%s", "r.status == 404");
  free(r.body);

  r = http(port, "GET", "/metrics", NULL);
  cr_assert((r.status) == (200), "%s", "r.status == 200");
  parse_metrics(r.body);
  cr_assert(strstr(r.body, "isola_isolates_spawned_total 1\n"), "%s", "check failed");
  cr_assert(strstr(r.body, "isola_isolate_queued_messages{id="), "%s", "check failed");
#ifdef PROMTOOL
  FILE *f = popen(PROMTOOL " check metrics > promtool.out 2>&1", "w");
  cr_assert(f, "%s", "check failed");
  fputs(r.body, f);
  int st = pclose(f);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
            "promtool check metrics failed (see promtool.out)");
#endif
  free(r.body);

  /* Another site's page reaching us through DNS rebinding: refused. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cr_assert(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "%s", "check failed");
  const char bad[] = "GET /api/isolates HTTP/1.0\r\nHost: evil.example\r\n\r\n";
  cr_assert(write(fd, bad, sizeof bad - 1) == (ssize_t)(sizeof bad - 1), "%s", "check failed");
  char buf[256] = {0};
  cr_assert(read(fd, buf, sizeof buf - 1) > 0, "%s", "check failed");
  close(fd);
  cr_assert(strstr(buf, " 403 "), "a foreign Host got: %s", buf);

  /* Control is off: refused even with the header. */
  char path[64];
  snprintf(path, sizeof path, "/api/isolates/%016llx/kill",
           (unsigned long long)h.control_port);
  r = http(port, "POST", path, "X-Isola-Control: 1\r\n");
  cr_assert((r.status) == (403), "%s", "r.status == 403");
  free(r.body);
  isola_observe_stop(o);
  th_vm_shutdown_ok();
}

static bool killed(void) {
  isola_snapshot *s;
  if (isola_vm_snapshot(0, &s) != ISOLA_OK) return false;
  bool k = s->vm.ended[ISOLA_EXIT_KILLED] == 1;
  isola_snapshot_free(s);
  return k;
}

Test(observe, control_needs_permission_and_the_header) {
  isola_isolate h = start_vm();
  isola_observe_options opts;
  isola_observe_options_init(&opts);
  opts.allow_control = true;
  opts.refresh_ms = 250;
  isola_observe *o;
  TH_ASSERT_OK(isola_observe_start(&opts, &o));
  uint16_t port = isola_observe_port(o);
  resp r = http(port, "GET", "/api/vm", NULL);
  cr_assert(strstr(r.body, "\"control\":true"), "%s", "check failed");
  free(r.body);
  char path[64];
  snprintf(path, sizeof path, "/api/isolates/%016llx/kill",
           (unsigned long long)h.control_port);
  r = http(port, "POST", path, NULL);
  cr_assert((r.status) == (403), "%s", "r.status == 403"); /* no X-Isola-Control header */
  free(r.body);
  r = http(port, "POST", "/api/isolates/0000000000000001/kill",
           "X-Isola-Control: 1\r\n");
  cr_assert((r.status) == (404), "%s", "r.status == 404");
  free(r.body);
  r = http(port, "POST", path, "X-Isola-Control: 1\r\n");
  cr_assert((r.status) == (200), "%s", "r.status == 200");
  free(r.body);
  long deadline = TH_WAIT_MS;
  for (long spins = 0; !killed(); spins++) {
    cr_assert(spins < deadline * 1000, "the kill did not end the isolate");
    sched_yield();
  }
  isola_observe_stop(o);
  th_vm_shutdown_ok();
}

static int count_fds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  cr_assert(d != NULL, "%s", "opendir /proc/self/fd");
  while (readdir(d)) n++;
  closedir(d);
  return n;
}

Test(observe, bad_arguments) {
  isola_observe_options opts;
  isola_observe_options_init(&opts);
  opts.address = "not-an-address";
  isola_observe *o = (isola_observe *)&o;
  TH_ASSERT_RC(isola_observe_start(&opts, &o), ISOLA_EINVAL);
  cr_assert(o == NULL, "%s", "check failed");
  TH_ASSERT_RC(isola_observe_start(NULL, NULL), ISOLA_EINVAL);
  char *out;
  TH_ASSERT_RC(isola_observe_render(NULL, ISOLA_OBSERVE_METRICS, false, &out,
                                    NULL),
               ISOLA_EINVAL);
  isola_observe_stop(NULL);
  /* Without a VM the server answers 503. */
  int fds = count_fds();
  TH_ASSERT_OK(isola_observe_start(NULL, &o));
  resp r = http(isola_observe_port(o), "GET", "/api/vm", NULL);
  cr_assert((r.status) == (503), "%s", "r.status == 503");
  free(r.body);
  /* A port in use: ISOLA_ESYS, and nothing left open. */
  isola_observe_options_init(&opts);
  opts.port = isola_observe_port(o);
  isola_observe *o2 = NULL;
  TH_ASSERT_RC(isola_observe_start(&opts, &o2), ISOLA_ESYS);
  cr_assert(o2 == NULL, "%s", "*out set on error");
  isola_observe_stop(o);
  /* Stopping closes the listening socket (and every connection). */
  cr_assert(count_fds() == fds, "open fds: %d before, %d after", fds,
            count_fds());
}
