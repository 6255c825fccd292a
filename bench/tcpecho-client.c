/* SPDX-License-Identifier: MIT */
/*
 * tcpecho-client — the one client of the tcpecho benchmark (BENCHMARKS.md,
 * second round), the same for every server.
 *
 *   tcpecho-client SYSTEM C R PORT
 *
 * Opens C connections to 127.0.0.1:PORT (retrying for up to 30 s while the
 * server starts), then runs them all at once from one thread with epoll:
 * each connection sends a 64-byte line, waits until the 64 bytes have come
 * back (and checks them), and sends the next, R times.  Each request is
 * timed from its send to the last byte of its answer.  Prints
 * "SYSTEM tcpecho requests_per_s ..." (C*R over the time from the first
 * send to the last answer) and "SYSTEM tcpecho p99_us ...", then closes
 * every connection (the servers end when C connections have closed).
 * Exits 1 if an answer is wrong or a connection fails.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LINE 64

static void die(const char *what) {
  fprintf(stderr, "tcpecho-client: %s: %s\n", what, strerror(errno));
  exit(1);
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct conn {
  int fd;
  long sent, got; /* requests sent; bytes of the current answer */
  int64_t t0;
  char line[LINE];
};

static int cmp(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

static void send_line(struct conn *c) {
  /* 63 bytes that differ per connection and request, and a newline. */
  for (int i = 0; i < LINE - 1; i++)
    c->line[i] = (char)('a' + (c->fd + c->sent + i) % 26);
  c->line[LINE - 1] = '\n';
  c->t0 = now_ns();
  c->got = 0;
  ssize_t w = write(c->fd, c->line, LINE);
  if (w != LINE) die("write"); /* 64 bytes fit an empty socket buffer */
  c->sent++;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fputs("usage: tcpecho-client SYSTEM C R PORT\n", stderr);
    return 2;
  }
  const char *sys = argv[1];
  long nc = atol(argv[2]), r = atol(argv[3]), port = atol(argv[4]);
  if (nc < 1 || r < 1 || port < 1 || port > 65535) {
    fputs("tcpecho-client: bad arguments\n", stderr);
    return 2;
  }
  struct conn *cs = calloc((size_t)nc, sizeof *cs);
  uint32_t *lat = malloc((size_t)(nc * r) * sizeof *lat);
  if (!cs || !lat) die("malloc");
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int64_t deadline = now_ns() + 30 * (int64_t)1000000000;
  for (long i = 0; i < nc; i++) {
    for (;;) {
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) die("socket");
      if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        cs[i].fd = fd;
        break;
      }
      close(fd);
      if (errno != ECONNREFUSED || now_ns() > deadline) die("connect");
      struct timespec ts = {0, 20000000}; /* the server is starting */
      nanosleep(&ts, NULL);
    }
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  for (long i = 0; i < nc; i++) {
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev) != 0) die("epoll_ctl");
  }
  long done = 0, nlat = 0;
  int64_t t_start = now_ns();
  for (long i = 0; i < nc; i++) send_line(&cs[i]);
  struct epoll_event evs[256];
  while (done < nc) {
    int n = epoll_wait(ep, evs, 256, 30000);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die("epoll_wait (no answer for 30 s)");
    for (int k = 0; k < n; k++) {
      struct conn *c = evs[k].data.ptr;
      char buf[LINE];
      ssize_t got = read(c->fd, buf, (size_t)(LINE - c->got));
      if (got <= 0) {
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        fprintf(stderr, "tcpecho-client: connection closed by the server\n");
        return 1;
      }
      if (memcmp(buf, c->line + c->got, (size_t)got) != 0) {
        fprintf(stderr, "tcpecho-client: wrong echo\n");
        return 1;
      }
      c->got += got;
      if (c->got < LINE) continue;
      int64_t d = now_ns() - c->t0;
      lat[nlat++] = d > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)d;
      if (c->sent < r)
        send_line(c);
      else
        done++;
    }
  }
  int64_t elapsed = now_ns() - t_start;
  for (long i = 0; i < nc; i++) close(cs[i].fd);
  if (nlat != nc * r) {
    fprintf(stderr, "tcpecho-client: %ld answers, want %ld\n", nlat, nc * r);
    return 1;
  }
  qsort(lat, (size_t)nlat, sizeof *lat, cmp);
  size_t i99 = (size_t)(0.99 * (double)nlat);
  if (i99 >= (size_t)nlat) i99 = (size_t)nlat - 1;
  printf("%s tcpecho requests_per_s %.3f req/s\n", sys,
         (double)nlat / ((double)elapsed / 1e9));
  printf("%s tcpecho p99_us %.3f us\n", sys, (double)lat[i99] / 1e3);
  free(lat);
  free(cs);
  return 0;
}
