/* SPDX-License-Identifier: MIT */
/*
 * echo_server_raw.c — a TCP echo server on 127.0.0.1 where each connection
 * is served by an isolate of its own, on raw fd watches (examples/
 * echo_server.c is the same server on isola_stream; the TCP echo benchmark
 * measures both).
 *
 * The root isolate (the program's main thread, isola_run_main) listens on a
 * non-blocking socket and watches it with isola_watch_open().  Each time
 * the socket is readable it accepts every pending connection and spawns a
 * "conn" isolate with the connection's fd as its spawn message.  A conn
 * isolate watches its fd: when readable, it reads what is there and writes
 * it back; at end of file it closes its watch and the fd, and, having no
 * watch and no port left, ends.  Its state is an isolate-local value whose
 * destructor closes the fd if the isolate is killed first (at shutdown).  Nothing is shared between the isolates
 * but the fd number each was given.
 *
 *   echo_server_raw [--port P]   serve until interrupted (P = 0: any port)
 *   echo_server_raw --selftest N serve, connect N clients from plain
 *                               threads, check every echo, then stop
 *
 * In self-test mode a plain thread (not an isolate) tells the root to stop
 * by sending to its port: any thread may post to any port.
 */
#define _GNU_SOURCE
#include <isola.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- one connection, one isolate ----------------------------------------- */

/* The connection lives in an isolate-local value: when the isolate ends,
 * at end of file or killed at shutdown while the client is still
 * connected, conn_end closes what is still open; nothing is leaked either
 * way. */
typedef struct conn {
  int fd;
  bool open;
  isola_watch watch;
} conn;

static void conn_end(void *value) {
  conn *c = value;
  if (c->open) close(c->fd); /* the runtime closes the watch itself */
}

static ISOLA_LOCAL_INIT(conn, the_conn, NULL, conn_end);

static void conn_readable(int fd, uint32_t events, void *arg) {
  conn *c = arg;
  (void)events;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      /* Echo it.  Small writes to a socket do not block in practice; a
       * real server would keep what it could not write and watch for
       * ISOLA_WRITABLE. */
      for (ssize_t off = 0; off < n;) {
        ssize_t w = write(fd, buf + off, (size_t)(n - off));
        if (w < 0 && errno != EINTR && errno != EAGAIN) break;
        if (w > 0) off += w;
      }
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0 && errno == EINTR) continue;
    /* End of file or an error: this connection is over, so is the isolate. */
    isola_watch_close(c->watch);
    close(fd);
    c->open = false;
    return;
  }
}

static void conn_entry(isola_value msg) {
  conn *c = isola_local_get(&the_conn);
  int fd = (int)msg.as.i;
  if (!c) {
    close(fd);
    return;
  }
  c->fd = fd;
  c->open = true;
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  if (isola_watch_open(fd, ISOLA_READABLE, conn_readable, c, &c->watch) !=
      ISOLA_OK) {
    close(fd);
    c->open = false;
  }
}

/* ---- the listener: the root isolate ---------------------------------- */

static int listen_fd = -1;
static isola_watch listen_watch;
static isola_port stop_port;
static unsigned short bound_port;
static pthread_mutex_t ready_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready_cv = PTHREAD_COND_INITIALIZER;
static int ready; /* 1: listening, -1: failed */

static void listener_readable(int fd, uint32_t events, void *arg) {
  (void)events;
  (void)arg;
  for (;;) {
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) return; /* EAGAIN: accepted all there was */
    isola_spawn_options o = {.name = "conn"};
    if (isola_spawn(conn_entry, isola_int(c), &o, NULL) != ISOLA_OK) close(c);
  }
}

static void on_stop(void *ctx, isola_port port, isola_value msg,
                    isola_port reply_to) {
  (void)ctx;
  (void)msg;
  (void)reply_to;
  /* Nothing left to keep the root alive: run_main returns. */
  isola_watch_close(listen_watch);
  close(listen_fd);
  isola_port_close(port);
}

static void set_ready(int value) {
  pthread_mutex_lock(&ready_lock);
  ready = value;
  pthread_cond_broadcast(&ready_cv);
  pthread_mutex_unlock(&ready_lock);
}

static void root_entry(isola_value msg) {
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((unsigned short)msg.as.i),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      listen(listen_fd, 128) != 0 ||
      getsockname(listen_fd, (struct sockaddr *)&a, &len) != 0 ||
      isola_port_open(on_stop, NULL, &stop_port) != ISOLA_OK ||
      isola_watch_open(listen_fd, ISOLA_READABLE, listener_readable, NULL,
                       &listen_watch) != ISOLA_OK) {
    perror("echo_server: listen");
    if (listen_fd >= 0) close(listen_fd);
    if (stop_port) isola_port_close(stop_port);
    set_ready(-1);
    return;
  }
  bound_port = ntohs(a.sin_port);
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
      fprintf(stderr, "usage: echo_server_raw [--port P] [--selftest N]\n");
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
