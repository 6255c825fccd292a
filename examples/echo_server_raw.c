/* SPDX-License-Identifier: MIT */
/*
 * echo_server_raw.c — a TCP echo server on 127.0.0.1 where each connection
 * is served by an isolate of its own, on raw fd watches (examples/
 * echo_server.c serves lines on isola_stream; the server of the TCP echo
 * benchmark, in bench/isola-bench.c, works as this one does).
 *
 * The root isolate (the program's main thread, isola_run_main) listens on a
 * non-blocking socket and watches it with isola_watch_open().  Each time
 * the socket is readable it accepts every pending connection and spawns a
 * "conn" isolate with the connection's fd as its spawn message.  A conn
 * isolate watches its fd: when readable, it reads what is there and writes
 * it back; at end of file it closes its watch and the fd, and, having no
 * watch and no port left, ends.  Its state is an isolate-local value whose
 * destructor closes the fd if the isolate is killed first (at shutdown).
 * Nothing is shared between the isolates but the fd number each was given.
 *
 *   echo_server_raw [--port P]   serve until interrupted (P = 0: any port)
 *   echo_server_raw --selftest N serve N clients, check every echo, stop
 *
 * The command line and the self-test are in echo_harness.h.
 */
#define _GNU_SOURCE
#include "echo_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>

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

/* ---- the listener: the root isolate -------------------------------------- */

static int listen_fd = -1;
static isola_watch listen_watch;

static void listener_readable(int fd, uint32_t events, void *arg) {
  (void)events, (void)arg;
  for (;;) {
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) return; /* EAGAIN: accepted all there was */
    isola_spawn_options o = {.name = "conn"};
    if (isola_spawn(conn_entry, isola_int(c), &o, NULL) != ISOLA_OK) close(c);
  }
}

static void on_stop(void *ctx, isola_port port, isola_value msg,
                    isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  /* Nothing left to keep the root alive: the run ends. */
  isola_watch_close(listen_watch);
  close(listen_fd);
  isola_port_close(port);
}

static void root_entry(isola_value msg) {
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((unsigned short)msg.as.i),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  isola_port stop = ISOLA_PORT_NONE;
  listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      listen(listen_fd, 128) != 0 ||
      getsockname(listen_fd, (struct sockaddr *)&a, &len) != 0 ||
      isola_port_open(on_stop, NULL, &stop) != ISOLA_OK ||
      isola_watch_open(listen_fd, ISOLA_READABLE, listener_readable, NULL,
                       &listen_watch) != ISOLA_OK) {
    perror("echo_server: listen");
    if (listen_fd >= 0) close(listen_fd);
    if (stop) isola_port_close(stop);
    echo_listening(0, ISOLA_PORT_NONE);
    return;
  }
  echo_listening(ntohs(a.sin_port), stop);
}

int main(int argc, char **argv) {
  return echo_main(argc, argv, "echo_server_raw", root_entry);
}
