/* SPDX-License-Identifier: MIT */
/*
 * echo_harness.h — the command line and the self-test that
 * echo_server.c (on streams) and echo_server_raw.c (on raw fd watches)
 * share; each includes it once.
 *
 *   NAME [--port P]      serve until interrupted (P = 0: any port)
 *   NAME --selftest N    serve, connect N clients from plain threads,
 *                        check every echo, then stop (exit 1 on a failure)
 *
 * echo_main() runs the server's entry as the root isolate (the program's
 * main thread) with the port to listen on as its message (an int).  Once
 * listening, the entry calls echo_listening() with the bound port and a
 * port of its own whose first message makes it stop listening (and so
 * end).  The self-test thread waits for that report on a receiver (a port
 * a plain thread owns), runs the clients, each on a plain thread that
 * sends a line and reads it back, then stops the server by sending to its
 * port: any thread may send to any port.
 */
#ifndef ECHO_HARNESS_H
#define ECHO_HARNESS_H

#include <isola.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static isola_port echo_reports; /* the self-test's receiver */
static atomic_int echo_failures;

/* From the root entry: listening on port, stopped by a message to stop
 * (port 0: it could not listen). */
static void echo_listening(uint16_t port, isola_port stop) {
  if (port)
    printf("echo_server: listening on 127.0.0.1:%u\n", port);
  else
    echo_failures++;
  fflush(stdout);
  isola_value ready[2] = {isola_int(port), isola_sendport(stop)};
  isola_send(echo_reports, port ? isola_list(ready, 2) : isola_null());
}

/* ---- the self-test: clients on plain threads ----------------------------- */

static uint16_t echo_bound;

static void *echo_client(void *arg) {
  char out[64], in[64];
  int n = snprintf(out, sizeof out, "hello from client %ld\n",
                   (long)(intptr_t)arg);
  int got = 0;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons(echo_bound),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      write(fd, out, (size_t)n) == n) {
    ssize_t r = 1;
    while (got < n && r > 0)
      if ((r = read(fd, in + got, (size_t)(n - got))) > 0) got += (int)r;
  }
  if (fd >= 0) close(fd);
  if (got != n || memcmp(in, out, (size_t)n) != 0) echo_failures++;
  return NULL;
}

typedef struct echo_test {
  isola_receiver *reports;
  long clients;
} echo_test;

static void *echo_selftest(void *arg) {
  echo_test *t = arg;
  isola_value ready = isola_null();
  int64_t port;
  isola_port stop;
  int rc = isola_receiver_wait(t->reports, ISOLA_FOREVER, &ready, NULL);
  if (rc == ISOLA_OK) rc = isola_unpack(ready, "[i p]", &port, &stop);
  isola_value_free(&ready);
  if (rc != ISOLA_OK) return NULL; /* the server could not listen */
  echo_bound = (uint16_t)port;
  pthread_t *th = calloc((size_t)t->clients, sizeof *th);
  for (long i = 0; th && i < t->clients; i++)
    pthread_create(&th[i], NULL, echo_client, (void *)(intptr_t)i);
  for (long i = 0; th && i < t->clients; i++) pthread_join(th[i], NULL);
  free(th);
  printf("echo_server: %ld clients, %d failed\n", t->clients,
         (int)echo_failures);
  isola_send(stop, isola_null()); /* from a plain thread */
  return NULL;
}

/* ---- the program ----------------------------------------------------------- */

static int echo_main(int argc, char **argv, const char *name,
                     isola_entry entry) {
  long port = 0;
  echo_test t = {NULL, 0};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--port") && i + 1 < argc)
      port = atol(argv[++i]);
    else if (!strcmp(argv[i], "--selftest") && i + 1 < argc)
      t.clients = atol(argv[++i]);
    else
      port = -1;
  }
  if (port < 0 || port > 65535 || t.clients < 0) {
    fprintf(stderr, "usage: %s [--port P] [--selftest N]\n", name);
    return 2;
  }
  int rc = isola_vm_init(NULL);
  if (rc == ISOLA_OK) rc = isola_receiver_new("reports", &t.reports);
  if (rc != ISOLA_OK) {
    fprintf(stderr, "%s: %s\n", name, isola_strerror(rc));
    return 1;
  }
  pthread_t st;
  if (t.clients) pthread_create(&st, NULL, echo_selftest, &t);
  echo_reports = isola_receiver_port(t.reports);
  rc = isola_run_main(entry, isola_int(port), "listener");
  if (t.clients) pthread_join(st, NULL);
  isola_receiver_close(t.reports);
  if (isola_vm_shutdown(NULL) != ISOLA_OK || rc != ISOLA_OK) return 1;
  return echo_failures ? 1 : 0;
}

#endif /* ECHO_HARNESS_H */
