/* SPDX-License-Identifier: MIT */
/* isola_observe.c — the HTTP view of a VM (include/isola_observe.h), on
 * libmicrohttpd.  Every request takes its own snapshot; nothing is kept
 * between requests. */
#include "isola_observe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "observe_page.h" /* isola_observe_page[], generated from page.html */

struct isola_observe {
  struct MHD_Daemon *daemon;
  uint16_t port;
  bool allow_control;
  unsigned refresh_ms;
  char host[64];    /* the address as a Host header names it */
  bool loopback;    /* localhost is accepted too */
};

void isola_observe_options_init(isola_observe_options *opts) {
  if (opts) memset(opts, 0, sizeof *opts);
}

/* ---- rendering ----------------------------------------------------------- */

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(f, "\\%c", *p);
    else if (*p < 0x20)
      fprintf(f, "\\u%04x", *p);
    else
      fputc(*p, f);
  }
  fputc('"', f);
}

/* A Prometheus label value: backslash, quote and newline escaped. */
static void prom_str(FILE *f, const char *s) {
  fputc('"', f);
  for (const char *p = s; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(f, "\\%c", *p);
    else if (*p == '\n')
      fputs("\\n", f);
    else
      fputc(*p, f);
  }
  fputc('"', f);
}

static void isolates_json(FILE *f, const isola_snapshot *s) {
  fprintf(f, "{\"now_ns\":%" PRIu64 ",\"isolate_stats\":%s,\"isolates\":[",
          s->now_ns, s->isolate_stats ? "true" : "false");
  for (size_t i = 0; i < s->nisolates; i++) {
    const isola_isolate_snapshot *o = &s->isolates[i];
    /* Ids as hex strings: JSON numbers lose 64-bit precision. */
    fprintf(f, "%s{\"id\":\"%016" PRIx64 "\",\"origin\":\"%016" PRIx64
               "\",\"group\":%" PRIu64 ",\"name\":",
            i ? "," : "", o->id, o->origin, o->group);
    json_str(f, o->name);
    fprintf(f,
            ",\"state\":\"%s\",\"pauses\":%u,\"live_ports\":%u,"
            "\"room\":%" PRId64 ","
            "\"timers\":%u,\"watches\":%u,\"worker\":%d,"
            "\"queued\":%" PRIu64 ",\"queued_bytes\":%" PRIu64
            ",\"oob_queued\":%" PRIu64 ",\"oob_queued_bytes\":%" PRIu64
            ",\"heap_used\":%" PRIu64 ",\"heap_peak\":%" PRIu64
            ",\"heap_limit\":%" PRIu64 ",\"handled\":%" PRIu64
            ",\"errors\":%" PRIu64 ",\"run_ns\":%" PRIu64
            ",\"last_run_ns\":%" PRIu64 ",\"running_since_ns\":%" PRIu64 "}",
            isola_isolate_state_name((int)o->state), o->pauses, o->live_ports,
            o->room,
            o->timers, o->watches, o->worker, o->queued, o->queued_bytes,
            o->oob_queued, o->oob_queued_bytes, o->heap_used, o->heap_peak,
            o->heap_limit, o->handled, o->errors, o->run_ns, o->last_run_ns,
            o->running_since_ns);
  }
  fputs("]}\n", f);
}

static void workers_json(FILE *f, const isola_snapshot *s) {
  fprintf(f, "{\"now_ns\":%" PRIu64 ",\"workers\":[", s->now_ns);
  for (size_t i = 0; i < s->nworkers; i++) {
    const isola_worker_snapshot *w = &s->workers[i];
    fprintf(f,
            "%s{\"id\":%u,\"state\":\"%s\",\"current\":\"%016" PRIx64
            "\",\"current_since_ns\":%" PRIu64 ",\"runq\":%u,"
            "\"turns\":%" PRIu64 ",\"steals\":%" PRIu64 ",\"parks\":%" PRIu64
            ",\"wakes\":%" PRIu64 "}",
            i ? "," : "", w->id, isola_worker_state_name((int)w->state),
            w->current, w->current_since_ns, w->runq, w->turns, w->steals,
            w->parks, w->wakes);
  }
  fputs("]}\n", f);
}

static void vm_json(FILE *f, const isola_snapshot *s, bool control) {
  const isola_vm_totals *v = &s->vm;
  fprintf(f,
          "{\"now_ns\":%" PRIu64 ",\"control\":%s,\"isolate_stats\":%s,"
          "\"shutting_down\":%s,\"live\":%" PRIu64 ",\"spawned\":%" PRIu64
          ",\"sent\":%" PRIu64 ",\"sent_bytes\":%" PRIu64
          ",\"refused\":%" PRIu64 ",\"global_queue\":%" PRIu64
          ",\"ended\":{",
          s->now_ns, control ? "true" : "false",
          s->isolate_stats ? "true" : "false",
          s->shutting_down ? "true" : "false", v->live, v->spawned, v->sent,
          v->sent_bytes, v->refused, v->global_queue);
  for (int k = 0; k < ISOLA_EXIT_REASONS; k++)
    fprintf(f, "%s\"%s\":%" PRIu64, k ? "," : "", isola_exit_reason_name(k),
            v->ended[k]);
  fputs("},\"dropped\":{", f);
  for (int k = 0; k < ISOLA_DROP_REASONS; k++)
    fprintf(f, "%s\"%s\":%" PRIu64, k ? "," : "", isola_drop_reason_name(k),
            v->dropped[k]);
  fputs("}}\n", f);
}

static void prom_head(FILE *f, const char *name, const char *type,
                      const char *help) {
  fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Per-isolate series: at most this many, the longest queues first, so a
 * VM of a million isolates does not make a million series. */
#define PROM_ISOLATES 100

static int by_queue(const void *a, const void *b) {
  const isola_isolate_snapshot *x = *(isola_isolate_snapshot *const *)a;
  const isola_isolate_snapshot *y = *(isola_isolate_snapshot *const *)b;
  if (x->queued != y->queued) return x->queued < y->queued ? 1 : -1;
  return x->id < y->id ? -1 : x->id > y->id;
}

static int metrics(FILE *f, const isola_snapshot *s) {
  const isola_vm_totals *v = &s->vm;
  prom_head(f, "isola_isolates_live", "gauge", "Live isolates.");
  fprintf(f, "isola_isolates_live %" PRIu64 "\n", v->live);
  prom_head(f, "isola_isolates_spawned_total", "counter",
            "Isolates spawned since the VM started.");
  fprintf(f, "isola_isolates_spawned_total %" PRIu64 "\n", v->spawned);
  prom_head(f, "isola_isolates_ended_total", "counter",
            "Isolates ended, by reason.");
  for (int k = 0; k < ISOLA_EXIT_REASONS; k++)
    fprintf(f, "isola_isolates_ended_total{reason=\"%s\"} %" PRIu64 "\n",
            isola_exit_reason_name(k), v->ended[k]);
  prom_head(f, "isola_messages_sent_total", "counter", "Messages queued.");
  fprintf(f, "isola_messages_sent_total %" PRIu64 "\n", v->sent);
  prom_head(f, "isola_message_bytes_sent_total", "counter",
            "Bytes of the messages queued.");
  fprintf(f, "isola_message_bytes_sent_total %" PRIu64 "\n", v->sent_bytes);
  prom_head(f, "isola_sends_refused_total", "counter",
            "Sends that failed: closed or wrong port.");
  fprintf(f, "isola_sends_refused_total %" PRIu64 "\n", v->refused);
  prom_head(f, "isola_messages_dropped_total", "counter",
            "Messages queued but never handled, by reason.");
  for (int k = 0; k < ISOLA_DROP_REASONS; k++)
    fprintf(f, "isola_messages_dropped_total{reason=\"%s\"} %" PRIu64 "\n",
            isola_drop_reason_name(k), v->dropped[k]);
  prom_head(f, "isola_global_run_queue", "gauge",
            "Isolates waiting in the global run queue.");
  fprintf(f, "isola_global_run_queue %" PRIu64 "\n", v->global_queue);

  static const struct {
    const char *name, *type, *help;
    size_t off;
  } wm[] = {
      {"isola_worker_turns_total", "counter", "Isolate turns run.",
       offsetof(isola_worker_snapshot, turns)},
      {"isola_worker_steals_total", "counter",
       "Isolates taken from other queues while searching.",
       offsetof(isola_worker_snapshot, steals)},
      {"isola_worker_parks_total", "counter", "Times the worker went idle.",
       offsetof(isola_worker_snapshot, parks)},
      {"isola_worker_wakes_total", "counter",
       "Times a thread was woken or started for the worker.",
       offsetof(isola_worker_snapshot, wakes)},
  };
  for (size_t m = 0; m < sizeof wm / sizeof wm[0]; m++) {
    prom_head(f, wm[m].name, wm[m].type, wm[m].help);
    for (size_t i = 0; i < s->nworkers; i++) {
      uint64_t val;
      memcpy(&val, (const char *)&s->workers[i] + wm[m].off, sizeof val);
      fprintf(f, "%s{worker=\"%zu\"} %" PRIu64 "\n", wm[m].name, i, val);
    }
  }
  prom_head(f, "isola_worker_run_queue", "gauge",
            "Isolates waiting in the worker's own run queue.");
  for (size_t i = 0; i < s->nworkers; i++)
    fprintf(f, "isola_worker_run_queue{worker=\"%zu\"} %u\n", i,
            s->workers[i].runq);
  prom_head(f, "isola_worker_running", "gauge",
            "1 while the worker runs an isolate.");
  for (size_t i = 0; i < s->nworkers; i++)
    fprintf(f, "isola_worker_running{worker=\"%zu\"} %d\n", i,
            s->workers[i].state == ISOLA_WORKER_RUNNING);

  if (!s->isolate_stats || !s->nisolates) return ISOLA_OK;
  const isola_isolate_snapshot **top = malloc(s->nisolates * sizeof *top);
  if (!top) return ISOLA_ENOMEM;
  for (size_t i = 0; i < s->nisolates; i++) top[i] = &s->isolates[i];
  qsort(top, s->nisolates, sizeof *top, by_queue);
  size_t n = s->nisolates < PROM_ISOLATES ? s->nisolates : PROM_ISOLATES;
  static const struct {
    const char *name, *type, *help;
    size_t off;
    double scale;
  } im[] = {
      {"isola_isolate_queued_messages", "gauge", "Normal messages waiting.",
       offsetof(isola_isolate_snapshot, queued), 1},
      {"isola_isolate_queued_bytes", "gauge", "Bytes of the messages waiting.",
       offsetof(isola_isolate_snapshot, queued_bytes), 1},
      {"isola_isolate_heap_bytes", "gauge", "Isolate-heap bytes in use.",
       offsetof(isola_isolate_snapshot, heap_used), 1},
      {"isola_isolate_handled_total", "counter", "Messages handled.",
       offsetof(isola_isolate_snapshot, handled), 1},
      {"isola_isolate_errors_total", "counter", "Uncaught errors raised.",
       offsetof(isola_isolate_snapshot, errors), 1},
      {"isola_isolate_run_seconds_total", "counter",
       "Time spent running the isolate's turns.",
       offsetof(isola_isolate_snapshot, run_ns), 1e-9},
  };
  for (size_t m = 0; m < sizeof im / sizeof im[0]; m++) {
    prom_head(f, im[m].name, im[m].type, im[m].help);
    for (size_t i = 0; i < n; i++) {
      uint64_t val;
      memcpy(&val, (const char *)top[i] + im[m].off, sizeof val);
      fprintf(f, "%s{id=\"%016" PRIx64 "\",name=", im[m].name, top[i]->id);
      prom_str(f, top[i]->name);
      if (im[m].scale == 1)
        fprintf(f, "} %" PRIu64 "\n", val);
      else
        fprintf(f, "} %.9f\n", (double)val * im[m].scale);
    }
  }
  free(top);
  return ISOLA_OK;
}

int isola_observe_render(const isola_snapshot *snapshot,
                         isola_observe_format format, bool allow_control,
                         char **out, size_t *len) {
  if (!snapshot || !out || (unsigned)format > ISOLA_OBSERVE_METRICS)
    return ISOLA_EINVAL;
  *out = NULL;
  char *buf = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&buf, &n);
  if (!f) return ISOLA_ENOMEM;
  int rc = ISOLA_OK;
  switch (format) {
  case ISOLA_OBSERVE_ISOLATES_JSON: isolates_json(f, snapshot); break;
  case ISOLA_OBSERVE_WORKERS_JSON: workers_json(f, snapshot); break;
  case ISOLA_OBSERVE_VM_JSON: vm_json(f, snapshot, allow_control); break;
  case ISOLA_OBSERVE_METRICS: rc = metrics(f, snapshot); break;
  }
  if (ferror(f)) rc = ISOLA_ENOMEM;
  if (fclose(f) != 0) rc = ISOLA_ENOMEM;
  if (rc != ISOLA_OK) {
    free(buf);
    return rc;
  }
  *out = buf;
  if (len) *len = n;
  return ISOLA_OK;
}

/* ---- serving ----------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status,
                             const char *type, char *body, size_t len,
                             bool owned) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
  if (!r) {
    if (owned) free(body);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", type);
  MHD_add_response_header(r, "Cache-Control", "no-store");
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  enum MHD_Result ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result text(struct MHD_Connection *c, unsigned status,
                            const char *msg) {
  return reply(c, status, "text/plain; charset=utf-8", (char *)msg,
               strlen(msg), false);
}

/* Whether the Host header names this server (DNS rebinding). */
static bool host_ok(const isola_observe *o, struct MHD_Connection *c) {
  const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                              MHD_HTTP_HEADER_HOST);
  if (!h) return false;
  char want[96];
  snprintf(want, sizeof want, "%s:%u", o->host, (unsigned)o->port);
  if (strcasecmp(h, want) == 0) return true;
  if (o->loopback) {
    snprintf(want, sizeof want, "localhost:%u", (unsigned)o->port);
    if (strcasecmp(h, want) == 0) return true;
  }
  return false;
}

static enum MHD_Result control(isola_observe *o, struct MHD_Connection *c,
                               const char *url) {
  if (!o->allow_control)
    return text(c, MHD_HTTP_FORBIDDEN, "control is not enabled\n");
  const char *hdr =
      MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Isola-Control");
  if (!hdr || strcmp(hdr, "1") != 0)
    return text(c, MHD_HTTP_FORBIDDEN, "X-Isola-Control: 1 is missing\n");
  /* /api/isolates/<16 hex digits>/<verb> */
  const char *p = url + strlen("/api/isolates/");
  char *end;
  errno = 0;
  unsigned long long id = strtoull(p, &end, 16);
  if (errno || end == p || *end != '/')
    return text(c, MHD_HTTP_NOT_FOUND, "no such isolate\n");
  const char *verb = end + 1;
  isola_snapshot *s;
  if (isola_vm_snapshot(ISOLA_SNAPSHOT_CAPABILITIES, &s) != ISOLA_OK)
    return text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "no VM\n");
  isola_isolate h = {0, 0, 0};
  for (size_t i = 0; i < s->nisolates; i++)
    if (s->isolates[i].id == id) {
      h.control_port = s->isolates[i].id;
      h.pause_capability = s->isolates[i].pause_capability;
      h.terminate_capability = s->isolates[i].terminate_capability;
    }
  isola_snapshot_free(s);
  if (!h.control_port) return text(c, MHD_HTTP_NOT_FOUND, "no such isolate\n");
  int rc;
  if (strcmp(verb, "kill") == 0)
    rc = isola_kill(&h, ISOLA_IMMEDIATE);
  else if (strcmp(verb, "pause") == 0)
    rc = isola_pause(&h, 0);
  else if (strcmp(verb, "resume") == 0)
    rc = isola_resume(&h, 0);
  else
    return text(c, MHD_HTTP_NOT_FOUND, "unknown action\n");
  if (rc != ISOLA_OK) return text(c, MHD_HTTP_CONFLICT, isola_strerror(rc));
  return text(c, MHD_HTTP_OK, "ok\n");
}

static enum MHD_Result serve(void *cls, struct MHD_Connection *c,
                             const char *url, const char *method,
                             const char *version, const char *upload_data,
                             size_t *upload_data_size, void **con_cls) {
  (void)version;
  (void)upload_data;
  isola_observe *o = cls;
  /* The first call only announces the request (its body may follow). */
  if (!*con_cls) {
    *con_cls = o;
    return MHD_YES;
  }
  if (*upload_data_size) {
    *upload_data_size = 0; /* bodies are ignored */
    return MHD_YES;
  }
  if (!host_ok(o, c))
    return text(c, MHD_HTTP_FORBIDDEN, "unexpected Host header\n");
  bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
  if (strcmp(method, "POST") == 0 &&
      strncmp(url, "/api/isolates/", strlen("/api/isolates/")) == 0)
    return control(o, c, url);
  if (!get) return text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only\n");
  if (strcmp(url, "/") == 0) {
    /* The page, with the refresh period put in place of its token. */
    static const char token[] = "__REFRESH_MS__";
    const char *page = (const char *)isola_observe_page;
    const char *at = strstr(page, token);
    size_t plen = strlen(page);
    char *body = malloc(plen + 16);
    if (!body) return MHD_NO;
    size_t head = at ? (size_t)(at - page) : plen;
    memcpy(body, page, head);
    size_t n = head;
    if (at) {
      n += (size_t)snprintf(body + n, 16, "%u", o->refresh_ms);
      size_t tail = plen - head - (sizeof token - 1);
      memcpy(body + n, at + sizeof token - 1, tail);
      n += tail;
    }
    return reply(c, MHD_HTTP_OK, "text/html; charset=utf-8", body, n, true);
  }
  isola_observe_format fmt;
  const char *type = "application/json";
  if (strcmp(url, "/api/isolates") == 0)
    fmt = ISOLA_OBSERVE_ISOLATES_JSON;
  else if (strcmp(url, "/api/workers") == 0)
    fmt = ISOLA_OBSERVE_WORKERS_JSON;
  else if (strcmp(url, "/api/vm") == 0)
    fmt = ISOLA_OBSERVE_VM_JSON;
  else if (strcmp(url, "/metrics") == 0) {
    fmt = ISOLA_OBSERVE_METRICS;
    type = "text/plain; version=0.0.4; charset=utf-8";
  } else {
    return text(c, MHD_HTTP_NOT_FOUND, "not found\n");
  }
  isola_snapshot *s;
  if (isola_vm_snapshot(0, &s) != ISOLA_OK)
    return text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "no VM is running\n");
  char *body;
  size_t len;
  int rc = isola_observe_render(s, fmt, o->allow_control, &body, &len);
  isola_snapshot_free(s);
  if (rc != ISOLA_OK) return MHD_NO;
  return reply(c, MHD_HTTP_OK, type, body, len, true);
}

int isola_observe_start(const isola_observe_options *opts,
                        isola_observe **out) {
  if (!out) return ISOLA_EINVAL;
  *out = NULL;
  isola_observe_options d;
  isola_observe_options_init(&d);
  if (!opts) opts = &d;
  const char *addr = opts->address ? opts->address : "127.0.0.1";
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
  bool v6 = false, loopback;
  if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(opts->port);
    loopback = (ntohl(in4->sin_addr.s_addr) >> 24) == 127;
  } else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
    v6 = true;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(opts->port);
    loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
  } else {
    return ISOLA_EINVAL;
  }
  isola_observe *o = calloc(1, sizeof *o);
  if (!o) return ISOLA_ENOMEM;
  o->allow_control = opts->allow_control;
  o->refresh_ms = opts->refresh_ms ? opts->refresh_ms : 1000;
  o->loopback = loopback;
  snprintf(o->host, sizeof o->host, v6 ? "[%s]" : "%s", addr);
  /* The socket is bound here, so the port (chosen by the system for port
   * 0) is known before the server's thread starts reading o. */
  int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  socklen_t sl = v6 ? sizeof *in6 : sizeof *in4;
  if (fd < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 64) != 0 ||
      getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
    if (fd >= 0) close(fd);
    free(o);
    return ISOLA_ESYS;
  }
  o->port = ntohs(v6 ? in6->sin6_port : in4->sin_port);
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
  if (v6) flags |= MHD_USE_IPv6;
  /* MHD closes the socket when it stops. */
  o->daemon = MHD_start_daemon(flags, 0, NULL, NULL, serve, o,
                               MHD_OPTION_LISTEN_SOCKET, fd,
                               MHD_OPTION_CONNECTION_LIMIT, 64u,
                               MHD_OPTION_CONNECTION_TIMEOUT, 30u,
                               MHD_OPTION_END);
  if (!o->daemon) {
    close(fd);
    free(o);
    return ISOLA_ESYS;
  }
  *out = o;
  return ISOLA_OK;
}

uint16_t isola_observe_port(const isola_observe *observe) {
  return observe ? observe->port : 0;
}

void isola_observe_stop(isola_observe *observe) {
  if (!observe) return;
  MHD_stop_daemon(observe->daemon);
  free(observe);
}
