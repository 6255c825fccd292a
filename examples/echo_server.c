/* SPDX-License-Identifier: MIT */
/*
 * echo_server.c — a TCP echo server on 127.0.0.1 where each connection is
 * served by an isolate of its own, on isola_stream (examples/
 * echo_server_raw.c is the same server on raw fd watches).
 *
 * The root isolate (the program's main thread, isola_run_main) listens
 * with isola_stream_listen(); for each connection it spawns a "conn"
 * isolate with the connection's fd as its spawn message.  A conn isolate
 * makes a stream of the fd and writes back whatever it reads.  Output the
 * client does not read yet waits in the stream's bounded buffer; once it
 * holds more than half its limit the isolate stops reading (so the client
 * is slowed by TCP, not the server's memory), and on_drain resumes.  At end
 * of file the stream closes and the isolate, with nothing left, ends; if
 * it is killed first (at shutdown) its stream's fd is closed with it.
 *
 *   echo_server [--port P]      serve until interrupted (P = 0: any port)
 *   echo_server --selftest N    serve, connect N clients from plain
 *                               threads, check every echo, then stop
 *
 * In self-test mode a plain thread (not an isolate) tells the root to stop
 * by sending to its port: any thread may post to any port.
 */
#define _GNU_SOURCE
#include <isola.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WRITE_LIMIT (256 * 1024)

/* ---- one connection, one isolate ----------------------------------------- */

static void conn_data(isola_stream *s, const uint8_t *data, size_t len,
                      void *ctx) {
  (void)ctx;
  /* Never refused: reading stops before the buffer is half full, and a
   * read is at most 64 KiB. */
  isola_stream_write(s, data, len);
  if (isola_stream_buffered(s) > WRITE_LIMIT / 2)
    isola_stream_set_reading(s, false);
}

static void conn_drained(isola_stream *s, void *ctx) {
  (void)ctx;
  isola_stream_set_reading(s, true);
}

static void conn_entry(isola_value msg) {
  isola_stream_options o = {.framing = ISOLA_STREAM_RAW,
                            .write_limit = WRITE_LIMIT,
                            .on_data = conn_data,
                            .on_drain = conn_drained};
  isola_stream *s;
  isola_stream_open((int)msg.as.i, &o, &s); /* closes the fd on error */
}

/* ---- the listener: the root isolate ---------------------------------- */

static isola_stream_listener *listener;
static isola_port stop_port;
static unsigned short bound_port;
static pthread_mutex_t ready_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready_cv = PTHREAD_COND_INITIALIZER;
static int ready; /* 1: listening, -1: failed */

static void on_accept(isola_stream_listener *l, int fd, void *ctx) {
  (void)l, (void)ctx;
  isola_spawn_options o = {.name = "conn"};
  if (isola_spawn(conn_entry, isola_int(fd), &o, NULL) != ISOLA_OK)
    close(fd);
}

static void on_stop(void *ctx, isola_port port, isola_value msg,
                    isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  /* Nothing left to keep the root alive: run_main returns. */
  isola_stream_listener_close(listener);
  isola_port_close(port);
}

static void set_ready(int value) {
  pthread_mutex_lock(&ready_lock);
  ready = value;
  pthread_cond_broadcast(&ready_cv);
  pthread_mutex_unlock(&ready_lock);
}

static void root_entry(isola_value msg) {
  int rc = isola_stream_listen("127.0.0.1", (uint16_t)msg.as.i, on_accept,
                               NULL, &listener);
  if (rc != ISOLA_OK ||
      (rc = isola_port_open(on_stop, NULL, &stop_port)) != ISOLA_OK) {
    fprintf(stderr, "echo_server: listen: %s\n", isola_strerror(rc));
    if (listener) isola_stream_listener_close(listener);
    set_ready(-1);
    return;
  }
  bound_port = isola_stream_listener_port(listener);
  printf("echo_server: listening on 127.0.0.1:%u\n", bound_port);
  fflush(stdout);
  set_ready(1);
}

/* ---- the self-test: clients on plain threads ------------------------- */

static int client_failures;
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;

static void *client(void *arg) {
  long id = (long)(intptr_t)arg;
  char out[64], in[64];
  int n = snprintf(out, sizeof out, "hello from client %ld", id);
  int ok = 0;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons(bound_port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      write(fd, out, (size_t)n) == n) {
    int got = 0;
    while (got < n) {
      ssize_t r = read(fd, in + got, (size_t)(n - got));
      if (r <= 0) break;
      got += (int)r;
    }
    ok = got == n && memcmp(in, out, (size_t)n) == 0;
  }
  if (fd >= 0) close(fd);
  if (!ok) {
    pthread_mutex_lock(&fail_lock);
    client_failures++;
    pthread_mutex_unlock(&fail_lock);
  }
  return NULL;
}

static long clients;

static void *selftest(void *arg) {
  (void)arg;
  pthread_mutex_lock(&ready_lock);
  while (!ready) pthread_cond_wait(&ready_cv, &ready_lock);
  int r = ready;
  pthread_mutex_unlock(&ready_lock);
  if (r < 0) return NULL;
  pthread_t *th = calloc((size_t)clients, sizeof *th);
  for (long i = 0; i < clients; i++)
    pthread_create(&th[i], NULL, client, (void *)(intptr_t)i);
  for (long i = 0; i < clients; i++) pthread_join(th[i], NULL);
  free(th);
  printf("echo_server: %ld clients, %d failed\n", clients, client_failures);
  isola_send(stop_port, isola_null()); /* from a plain thread */
  return NULL;
}

int main(int argc, char **argv) {
  long port = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--port") && i + 1 < argc)
      port = atol(argv[++i]);
    else if (!strcmp(argv[i], "--selftest") && i + 1 < argc)
      clients = atol(argv[++i]);
    else {
      fprintf(stderr, "usage: echo_server [--port P] [--selftest N]\n");
      return 2;
    }
  }
  if (port < 0 || port > 65535 || clients < 0) return 2;
  int rc = isola_vm_init(NULL);
  if (rc != ISOLA_OK) {
    fprintf(stderr, "echo_server: %s\n", isola_strerror(rc));
    return 1;
  }
  pthread_t st;
  if (clients) pthread_create(&st, NULL, selftest, NULL);
  rc = isola_run_main(root_entry, isola_int(port), "listener");
  if (clients) pthread_join(st, NULL);
  int shut = isola_vm_shutdown(NULL);
  if (rc != ISOLA_OK || shut != ISOLA_OK || ready < 0) return 1;
  return client_failures ? 1 : 0;
}
