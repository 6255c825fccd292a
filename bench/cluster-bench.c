/* SPDX-License-Identifier: MIT */
/*
 * cluster-bench — isola across two processes on NATS (issue 15 item 10),
 * run by bench/cluster-run.
 *
 *   cluster-bench serve URL          node "bench-b": an echo port and a
 *                                    sink port under cluster-wide names, and
 *                                    a plain NATS responder on "bench.rr";
 *                                    runs until SIGTERM
 *   cluster-bench client URL N M     node "bench-a": N ping-pong round
 *                                    trips to the echo port (p50, p99), M
 *                                    one-way messages to the sink
 *                                    (messages/s), then N plain NATS
 *                                    request/reply round trips (the floor)
 *
 * Prints one line per figure: "cluster <metric> <value> <unit>".
 */
#define _GNU_SOURCE
#include <isola.h>
#include <isola_cluster.h>
#include <nats/nats.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void report_latency(const char *what, double *us, long n) {
  qsort(us, (size_t)n, sizeof *us, cmp_double);
  printf("cluster %s_p50 %.1f us\n", what, us[n / 2]);
  printf("cluster %s_p99 %.1f us\n", what, us[(n * 99) / 100]);
  fflush(stdout);
}

static int join(const char *url, const char *node, bool serve) {
  isola_cluster_config cc;
  isola_cluster_config_init(&cc);
  cc.servers = url;
  cc.node = node;
  cc.allow_spawn = serve;
  /* CLUSTER_SEND_ASAP=1: the nodes write each message at once. */
  const char *asap = getenv("CLUSTER_SEND_ASAP");
  cc.send_asap = asap && *asap == '1';
  int rc = isola_cluster_join(&cc);
  if (rc != ISOLA_OK)
    fprintf(stderr, "cluster-bench: join: %s: %s\n", isola_strerror(rc),
            isola_cluster_error());
  return rc;
}

/* ---- serve --------------------------------------------------------------- */

static int64_t sunk;

static void on_echo(void *ctx, isola_port port, isola_value m, isola_port r) {
  (void)ctx, (void)port;
  if (r) isola_send(r, m);
}

/* Counts; ["done", port] answers the count so far and resets it. */
static void on_sink(void *ctx, isola_port port, isola_value m, isola_port r) {
  (void)ctx, (void)port, (void)r;
  isola_value v;
  if (m.kind == ISOLA_LIST && isola_list_get(m, 1, &v) == ISOLA_OK &&
      v.kind == ISOLA_PORT) {
    isola_send(v.as.port, isola_int(sunk));
    sunk = 0;
    return;
  }
  sunk++;
}

/* NATS's own floor: the replier writes each reply at once, as libnats
 * advises for a connection that only sends replies (a request is always
 * written at once). */
static natsStatus connect_asap(natsConnection **nc, const char *url) {
  natsOptions *o;
  natsStatus s = natsOptions_Create(&o);
  if (s != NATS_OK) return s;
  s = natsOptions_SetURL(o, url);
  if (s == NATS_OK) s = natsOptions_SetSendAsap(o, true);
  if (s == NATS_OK) s = natsConnection_Connect(nc, o);
  natsOptions_Destroy(o);
  return s;
}

static void on_rr(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                  void *closure) {
  (void)sub, (void)closure;
  natsConnection_Publish(nc, natsMsg_GetReply(msg), natsMsg_GetData(msg),
                         natsMsg_GetDataLength(msg));
  natsMsg_Destroy(msg);
}

static int serve(const char *url) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  if (isola_vm_init(NULL) != ISOLA_OK || join(url, "bench-b", true) != ISOLA_OK)
    return 1;
  isola_port echo, sink;
  natsConnection *nc;
  natsSubscription *sub;
  if (isola_native_port_new("echo", on_echo, NULL, false, &echo) != ISOLA_OK ||
      isola_native_port_new("sink", on_sink, NULL, false, &sink) != ISOLA_OK ||
      isola_cluster_name_register("bench-echo", echo) != ISOLA_OK ||
      isola_cluster_name_register("bench-sink", sink) != ISOLA_OK ||
      connect_asap(&nc, url) != NATS_OK ||
      natsConnection_Subscribe(&sub, nc, "bench.rr", on_rr, NULL) != NATS_OK ||
      natsConnection_Flush(nc) != NATS_OK) {
    fprintf(stderr, "cluster-bench: serve: setup failed\n");
    return 1;
  }
  printf("cluster-bench: serving\n");
  fflush(stdout);
  int sig;
  sigwait(&set, &sig);
  natsSubscription_Destroy(sub);
  natsConnection_Destroy(nc);
  isola_native_port_close(echo);
  isola_native_port_close(sink);
  isola_cluster_leave();
  isola_vm_shutdown(NULL);
  return 0;
}

/* ---- client -------------------------------------------------------------- */

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  long got;
  int64_t last;
} inbox = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

static void on_home(void *ctx, isola_port port, isola_value m, isola_port r) {
  (void)ctx, (void)port, (void)r;
  pthread_mutex_lock(&inbox.mu);
  isola_value_get_int(m, &inbox.last);
  inbox.got++;
  pthread_cond_signal(&inbox.cv);
  pthread_mutex_unlock(&inbox.mu);
}

static int64_t wait_got(long n) {
  pthread_mutex_lock(&inbox.mu);
  while (inbox.got < n) pthread_cond_wait(&inbox.cv, &inbox.mu);
  int64_t v = inbox.last;
  pthread_mutex_unlock(&inbox.mu);
  return v;
}

static int client(const char *url, long n, long m) {
  if (isola_vm_init(NULL) != ISOLA_OK || join(url, "bench-a", false) != ISOLA_OK)
    return 1;
  isola_port home, echo, sink;
  if (isola_native_port_new("home", on_home, NULL, false, &home) != ISOLA_OK ||
      isola_cluster_name_lookup("bench-echo", &echo) != ISOLA_OK ||
      isola_cluster_name_lookup("bench-sink", &sink) != ISOLA_OK) {
    fprintf(stderr, "cluster-bench: client: setup failed\n");
    return 1;
  }
  double *us = malloc((size_t)n * sizeof *us);
  if (!us) return 1;
  /* Warm up, then the timed round trips. */
  long got = 0;
  for (long i = 0; i < 100; i++) {
    isola_send_reply(echo, isola_int(i), home);
    wait_got(++got);
  }
  for (long i = 0; i < n; i++) {
    double t0 = now_us();
    isola_send_reply(echo, isola_int(i), home);
    wait_got(++got);
    us[i] = now_us() - t0;
  }
  report_latency("pingpong", us, n);

  double t0 = now_us();
  for (long i = 0; i < m; i++) isola_send(sink, isola_int(i));
  isola_value done[2] = {isola_str("done"), isola_sendport(home)};
  isola_send(sink, isola_list(done, 2));
  int64_t count = wait_got(++got);
  double secs = (now_us() - t0) / 1e6;
  if (count != m)
    fprintf(stderr, "cluster-bench: the sink counted %lld of %ld\n",
            (long long)count, m);
  printf("cluster oneway %.0f msg/s\n", (double)m / secs);
  fflush(stdout);

  /* NATS's own request/reply between the same two processes. */
  natsConnection *nc;
  if (natsConnection_ConnectTo(&nc, url) != NATS_OK) return 1;
  int64_t payload = 1;
  for (long i = 0; i < n + 100; i++) {
    natsMsg *reply;
    double t = now_us();
    if (natsConnection_Request(&reply, nc, "bench.rr", &payload,
                               sizeof payload, 5000) != NATS_OK) {
      fprintf(stderr, "cluster-bench: NATS request failed\n");
      return 1;
    }
    natsMsg_Destroy(reply);
    if (i >= 100) us[i - 100] = now_us() - t;
  }
  report_latency("nats_request", us, n);
  natsConnection_Destroy(nc);
  free(us);
  isola_native_port_close(home);
  isola_cluster_leave();
  isola_vm_shutdown(NULL);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "serve") == 0) return serve(argv[2]);
  if (argc == 5 && strcmp(argv[1], "client") == 0)
    return client(argv[2], atol(argv[3]), atol(argv[4]));
  fprintf(stderr, "usage: cluster-bench serve URL | client URL N M\n");
  return 2;
}
