/* SPDX-License-Identifier: MIT */
/*
 * isola_stream (issue 17 item 5), on 127.0.0.1: lines and frames cut
 * across reads, oversize and garbage input closing with a reason, a peer
 * that stops reading (a bounded buffer, ISOLA_EWOULDBLOCK, on_drain), close
 * from either side, connect (and a refused one), the heap limit covering
 * the buffers, bad arguments.
 *
 * Plumbing: a "server" isolate listens and opens a stream on every
 * connection with the options in `srv`; its callbacks record what they see.
 * The test thread is the peer, with plain blocking sockets whose timeouts
 * fail the test (SO_RCVTIMEO / SO_SNDTIMEO).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "helpers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

TestSuite(stream, .timeout = TH_TEST_TIMEOUT_S);

/* ---- what the server saw ---------------------------------------------- */

static struct {
  pthread_mutex_t mu;
  char data[1 << 16]; /* every line or frame, each followed by '|' */
  size_t len;
  int reason, err; /* of the last on_close */
} seen = {.mu = PTHREAD_MUTEX_INITIALIZER};
static th_counter items = TH_COUNTER_INIT;  /* on_data calls */
static th_counter closes = TH_COUNTER_INIT; /* on_close calls */
static th_counter drains = TH_COUNTER_INIT;
static th_counter blocked = TH_COUNTER_INIT; /* writes refused */
static th_counter listening = TH_COUNTER_INIT;
static _Atomic uint16_t srv_port;
static _Atomic size_t max_buffered;
static th_counter nomem = TH_COUNTER_INIT; /* writes refused for the heap */

static void record(const uint8_t *d, size_t n) {
  pthread_mutex_lock(&seen.mu);
  TH_CHECK(seen.len + n + 1 < sizeof seen.data);
  memcpy(seen.data + seen.len, d, n);
  seen.len += n;
  seen.data[seen.len++] = '|';
  pthread_mutex_unlock(&seen.mu);
  th_counter_add(&items, 1);
}

static bool seen_is(const char *want) {
  pthread_mutex_lock(&seen.mu);
  bool ok = seen.len == strlen(want) && memcmp(seen.data, want, seen.len) == 0;
  if (!ok)
    fprintf(stderr, "seen '%.*s', want '%s'\n", (int)seen.len, seen.data,
            want);
  pthread_mutex_unlock(&seen.mu);
  return ok;
}

/* ---- the server ------------------------------------------------------- */

enum { ECHO = 1, PUMP = 2, BYE = 4, SMALL_SNDBUF = 8 };
static struct {
  isola_stream_options o;
  int mode;
  size_t pump_total, pumped;
} srv;

static void pump(isola_stream *s);

static void on_data(isola_stream *s, const uint8_t *d, size_t n, void *ctx) {
  (void)ctx;
  record(d, n);
  if (srv.mode & ECHO) {
    char buf[4096];
    TH_CHECK(n + 2 <= sizeof buf);
    buf[0] = '>';
    memcpy(buf + 1, d, n);
    TH_CHECK_OK(isola_stream_write(s, buf, n + 1));
  }
}

static void on_drain(isola_stream *s, void *ctx) {
  (void)ctx;
  th_counter_add(&drains, 1);
  if (srv.mode & PUMP) pump(s);
}

static void on_close(isola_stream *s, int reason, int err, void *ctx) {
  (void)s, (void)ctx;
  pthread_mutex_lock(&seen.mu);
  seen.reason = reason;
  seen.err = err;
  pthread_mutex_unlock(&seen.mu);
  th_counter_add(&closes, 1);
}

/* Writes a pattern (byte i is i % 251) until pump_total or EWOULDBLOCK. */
static void pump(isola_stream *s) {
  uint8_t chunk[16384];
  while (srv.pumped < srv.pump_total) {
    size_t n = sizeof chunk;
    if (n > srv.pump_total - srv.pumped) n = srv.pump_total - srv.pumped;
    for (size_t i = 0; i < n; i++) chunk[i] = (uint8_t)((srv.pumped + i) % 251);
    int rc = isola_stream_write(s, chunk, n);
    size_t b = isola_stream_buffered(s);
    if (b > atomic_load(&max_buffered)) atomic_store(&max_buffered, b);
    if (rc == ISOLA_EWOULDBLOCK) {
      th_counter_add(&blocked, 1);
      return;
    }
    if (rc == ISOLA_ENOMEM) {
      isola_isolate_stats st;
      TH_CHECK_OK(isola_current_stats(&st));
      TH_CHECK(st.heap_limit && st.heap_bytes <= st.heap_limit);
      th_counter_add(&nomem, 1);
      return;
    }
    TH_CHECK_OK(rc);
    srv.pumped += n;
  }
  TH_CHECK_OK(isola_stream_close(s));
  TH_CHECK_RC(isola_stream_close(s), ISOLA_ECLOSED);
  TH_CHECK_RC(isola_stream_write(s, "x", 1), ISOLA_ECLOSED);
}

static void on_accept(isola_stream_listener *l, int fd, void *ctx) {
  (void)l, (void)ctx;
  if (srv.mode & SMALL_SNDBUF) {
    int sz = 16384;
    TH_CHECK(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz) == 0);
  }
  isola_stream *s;
  TH_CHECK_OK(isola_stream_open(fd, &srv.o, &s));
  if (srv.mode & PUMP) pump(s);
  if (srv.mode & BYE) {
    TH_CHECK_OK(isola_stream_write(s, "bye", 3));
    TH_CHECK_OK(isola_stream_close(s));
  }
}

static void server_entry(isola_value msg) {
  (void)msg;
  isola_stream_listener *l;
  TH_CHECK_OK(isola_stream_listen("127.0.0.1", 0, on_accept, NULL, &l));
  TH_CHECK(isola_stream_listener_port(l) != 0);
  atomic_store(&srv_port, isola_stream_listener_port(l));
  th_counter_add(&listening, 1);
}

static void server_start(isola_stream_framing framing, size_t max_frame,
                         int mode) {
  memset(&srv, 0, sizeof srv);
  srv.o.framing = framing;
  srv.o.max_frame = max_frame;
  srv.o.on_data = on_data;
  srv.o.on_drain = on_drain;
  srv.o.on_close = on_close;
  srv.mode = mode;
}

static void server_spawn(const isola_spawn_options *o) {
  TH_ASSERT_OK(isola_spawn(server_entry, isola_null(), o, NULL));
  TH_WAIT_GE(&listening, 1);
}

/* ---- the peer (test thread) ------------------------------------------- */

static void set_timeouts(int fd) {
  struct timeval tv = {.tv_sec = TH_WAIT_MS / 1000};
  cr_assert(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0,
            "rcvtimeo");
  cr_assert(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0,
            "sndtimeo");
}

static int peer_connect(int rcvbuf) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  cr_assert(fd >= 0, "socket");
  if (rcvbuf)
    cr_assert(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) ==
                  0,
              "rcvbuf");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  set_timeouts(fd);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons(atomic_load(&srv_port)),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect: %s",
            strerror(errno));
  return fd;
}

static void put(int fd, const void *p, size_t n) {
  cr_assert(send(fd, p, n, MSG_NOSIGNAL) == (ssize_t)n, "send: %s",
            strerror(errno));
}

static void get_exact(int fd, char *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = recv(fd, buf + got, n - got, 0);
    cr_assert(r > 0, "recv: %zd (%s) after %zu of %zu bytes", r,
              r < 0 ? strerror(errno) : "eof", got, n);
    got += (size_t)r;
  }
}

/* Reads (and drops) until the peer closes: true for an orderly end or a
 * reset, false on the timeout. */
static bool get_end(int fd) {
  char buf[4096];
  for (;;) {
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    if (r > 0) continue;
    return r == 0 || errno == ECONNRESET;
  }
}

static void frame(int fd, const void *p, uint32_t n) {
  uint8_t h[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8),
                  (uint8_t)n};
  put(fd, h, 4);
  if (n) put(fd, p, n);
}

static int close_reason(void) {
  pthread_mutex_lock(&seen.mu);
  int r = seen.reason;
  pthread_mutex_unlock(&seen.mu);
  return r;
}

/* ---- lines ------------------------------------------------------------- */

Test(stream, lines_cut_across_reads_are_whole_and_echoed) {
  th_vm_init(NULL);
  server_start(ISOLA_STREAM_LINES, 0, ECHO);
  server_spawn(NULL);
  int fd = peer_connect(0);
  put(fd, "hel", 3);
  put(fd, "lo\r\nwor", 7);
  put(fd, "ld\n\n", 4);
  put(fd, "last", 4);
  cr_assert(shutdown(fd, SHUT_WR) == 0, "shutdown");
  char buf[64];
  const char *want = ">hello\n>world\n>\n>last\n";
  get_exact(fd, buf, strlen(want));
  cr_assert(memcmp(buf, want, strlen(want)) == 0, "echo '%.*s'",
            (int)strlen(want), buf);
  /* The echo of the last line was written before the EOF closed it. */
  cr_assert(get_end(fd), "end");
  TH_WAIT_GE(&closes, 1);
  cr_assert(seen_is("hello|world||last|"), "lines");
  cr_assert(close_reason() == ISOLA_STREAM_EOF, "reason %s",
            isola_stream_reason_name(close_reason()));
  close(fd);
  th_vm_shutdown_ok();
}

Test(stream, a_line_over_max_frame_closes_with_oversize) {
  th_vm_init(NULL);
  server_start(ISOLA_STREAM_LINES, 16, 0);
  server_spawn(NULL);
  int fd = peer_connect(0);
  put(fd, "0123456789abcdef\n", 17); /* exactly max_frame: fine */
  TH_WAIT_GE(&items, 1);
  char junk[64];
  memset(junk, 'x', sizeof junk);
  put(fd, junk, sizeof junk); /* no newline, ever */
  TH_WAIT_GE(&closes, 1);
  cr_assert(close_reason() == ISOLA_STREAM_OVERSIZE, "reason %s",
            isola_stream_reason_name(close_reason()));
  cr_assert(seen_is("0123456789abcdef|"), "lines");
  cr_assert(get_end(fd), "the peer sees the end");
  close(fd);
  th_vm_shutdown_ok();
}

Test(stream, text_lines_that_are_not_utf8_close_with_malformed) {
  th_vm_init(NULL);
  server_start(ISOLA_STREAM_LINES, 0, 0);
  srv.o.text = true;
  server_spawn(NULL);
  int fd = peer_connect(0);
  put(fd, "caf\xc3\xa9\n", 6);
  put(fd, "bad \xc3\x28 byte\n", 12);
  put(fd, "never\n", 6);
  TH_WAIT_GE(&closes, 1);
  cr_assert(close_reason() == ISOLA_STREAM_MALFORMED, "reason %s",
            isola_stream_reason_name(close_reason()));
  cr_assert(seen_is("caf\xc3\xa9|"), "lines");
  close(fd);
  th_vm_shutdown_ok();
}

/* ---- frames ------------------------------------------------------------ */

Test(stream, frames_of_every_size_and_cut_byte_by_byte) {
  th_vm_init(NULL);
  server_start(ISOLA_STREAM_FRAMES, 1000, 0);
  server_spawn(NULL);
  int fd = peer_connect(0);
  frame(fd, "", 0);
  frame(fd, "a", 1);
  static char big[1000];
  memset(big, 'b', sizeof big);
  frame(fd, big, sizeof big);
  /* One frame, a byte per send. */
  const uint8_t one[] = {0, 0, 0, 3, 'x', 'y', 'z'};
  for (size_t i = 0; i < sizeof one; i++) put(fd, one + i, 1);
  TH_WAIT_GE(&items, 4);
  pthread_mutex_lock(&seen.mu);
  bool ok = seen.len == 1 + 2 + 1001 + 4 && memcmp(seen.data, "|a|", 3) == 0 &&
            memcmp(seen.data + 1004, "xyz|", 4) == 0;
  pthread_mutex_unlock(&seen.mu);
  cr_assert(ok, "frames");
  /* Garbage: a length no frame may have.  Closed at once. */
  put(fd, "\xff\xff\xff\xff", 4);
  TH_WAIT_GE(&closes, 1);
  cr_assert(close_reason() == ISOLA_STREAM_OVERSIZE, "reason %s",
            isola_stream_reason_name(close_reason()));
  cr_assert(get_end(fd), "end");
  close(fd);
  th_vm_shutdown_ok();
}

Test(stream, input_that_ends_inside_a_frame_is_malformed) {
  th_vm_init(NULL);
  server_start(ISOLA_STREAM_FRAMES, 0, 0);
  server_spawn(NULL);
  int fd = peer_connect(0);
  put(fd, "\0\0\0\x0a" "abc", 7);
  cr_assert(shutdown(fd, SHUT_WR) == 0, "shutdown");
  TH_WAIT_GE(&closes, 1);
  cr_assert(close_reason() == ISOLA_STREAM_MALFORMED, "reason %s",
            isola_stream_reason_name(close_reason()));
  cr_assert(th_counter_get(&items) == 0, "no frame");
  close(fd);
  th_vm_shutdown_ok();
}

/* ---- backpressure ------------------------------------------------------ */

Test(stream, a_peer_that_stops_reading_meets_a_bounded_buffer) {
  th_vm_init(NULL);
  server_start(ISOLA_STREAM_RAW, 0, PUMP | SMALL_SNDBUF);
  srv.o.write_limit = 65536;
  srv.pump_total = 4u << 20;
  server_spawn(NULL);
  int fd = peer_connect(16384);
  /* Not reading: the server's writes must be refused at some point. */
  TH_WAIT_GE(&blocked, 1);
  cr_assert(atomic_load(&max_buffered) <= 65536, "buffered %zu",
            atomic_load(&max_buffered));
  /* Now read it all: drains resume the pump until it closes. */
  static uint8_t buf[65536];
  size_t got = 0;
  bool pattern = true;
  for (;;) {
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    cr_assert(r >= 0, "recv: %s", strerror(errno));
    if (r == 0) break;
    for (ssize_t i = 0; i < r; i++)
      pattern &= buf[i] == (uint8_t)((got + (size_t)i) % 251);
    got += (size_t)r;
  }
  cr_assert(got == (4u << 20), "got %zu bytes", got);
  cr_assert(pattern, "bytes out of order");
  TH_WAIT_GE(&closes, 1);
  cr_assert(close_reason() == ISOLA_STREAM_CLOSED, "reason %s",
            isola_stream_reason_name(close_reason()));
  cr_assert(th_counter_get(&drains) >= th_counter_get(&blocked),
            "a drain after every refusal");
  cr_assert(atomic_load(&max_buffered) <= 65536, "buffered %zu",
            atomic_load(&max_buffered));
  close(fd);
  th_vm_shutdown_ok();
}

/* The heap limit covers the write buffer: with a write limit above the
 * heap limit, the write that would need more heap than the limit allows
 * is refused with ISOLA_ENOMEM; the isolate lives on (it ends only at the
 * shutdown). */
static th_counter gone = TH_COUNTER_INIT;
static _Atomic int gone_reason = -1;
static void on_cleanup(void *data, const isola_isolate_info *info) {
  (void)data;
  if (strcmp(info->name, "server") == 0) {
    atomic_store(&gone_reason, info->exit_reason);
    th_counter_add(&gone, 1);
  }
}

Test(stream, the_heap_limit_covers_the_buffers) {
  isola_config c;
  isola_config_init(&c);
  c.hooks.isolate_cleanup = on_cleanup;
  th_vm_init(&c);
  server_start(ISOLA_STREAM_RAW, 0, PUMP | SMALL_SNDBUF);
  srv.o.write_limit = 8u << 20;
  srv.pump_total = 64u << 20;
  isola_spawn_options o = {.name = "server", .heap_limit = 256u << 10};
  server_spawn(&o);
  int fd = peer_connect(16384); /* and never reads */
  TH_WAIT_GE(&nomem, 1);
  cr_assert(th_counter_get(&blocked) == 0, "refused for the heap first");
  th_vm_shutdown_ok();
  cr_assert(th_counter_get(&gone) == 1, "ended once");
  cr_assert(atomic_load(&gone_reason) == ISOLA_EXIT_SHUTDOWN, "reason %s",
            isola_exit_reason_name(atomic_load(&gone_reason)));
  cr_assert(get_end(fd), "its socket was closed with it");
  close(fd);
}

/* ---- closing from either side ------------------------------------------ */

Test(stream, the_server_closes_after_its_last_write) {
  th_vm_init(NULL);
  server_start(ISOLA_STREAM_LINES, 0, BYE);
  server_spawn(NULL);
  int fd = peer_connect(0);
  char buf[4];
  get_exact(fd, buf, 4);
  cr_assert(memcmp(buf, "bye\n", 4) == 0, "bye");
  cr_assert(get_end(fd), "end");
  TH_WAIT_GE(&closes, 1);
  cr_assert(close_reason() == ISOLA_STREAM_CLOSED, "reason");
  close(fd);
  th_vm_shutdown_ok();
}

Test(stream, the_peer_closes) {
  th_vm_init(NULL);
  server_start(ISOLA_STREAM_RAW, 0, 0);
  server_spawn(NULL);
  int fd = peer_connect(0);
  put(fd, "abc", 3);
  TH_WAIT_GE(&items, 1);
  close(fd);
  TH_WAIT_GE(&closes, 1);
  cr_assert(close_reason() == ISOLA_STREAM_EOF, "reason %s",
            isola_stream_reason_name(close_reason()));
  th_vm_shutdown_ok();
}

/* ---- connect ------------------------------------------------------------ */

static _Atomic uint16_t connect_to;
static th_counter client_done = TH_COUNTER_INIT;

static void client_entry(isola_value msg) {
  (void)msg;
  isola_stream *s;
  TH_CHECK_OK(isola_stream_connect("127.0.0.1", atomic_load(&connect_to),
                                   &srv.o, &s));
  /* Queued until connected (a connect refused at once may have closed
   * it already: then on_close says why). */
  int rc = isola_stream_write(s, "hi", 2);
  TH_CHECK(rc == ISOLA_OK || rc == ISOLA_ECLOSED);
  th_counter_add(&client_done, 1);
}

Test(stream, connect_queues_writes_until_connected) {
  th_vm_init(NULL);
  server_start(ISOLA_STREAM_LINES, 0, 0);
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  cr_assert(bind(lfd, (struct sockaddr *)&a, sizeof a) == 0 &&
                listen(lfd, 4) == 0 &&
                getsockname(lfd, (struct sockaddr *)&a, &len) == 0,
            "listen");
  atomic_store(&connect_to, ntohs(a.sin_port));
  TH_ASSERT_OK(isola_spawn(client_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&client_done, 1);
  int fd = accept(lfd, NULL, NULL);
  cr_assert(fd >= 0, "accept");
  set_timeouts(fd);
  char buf[3];
  get_exact(fd, buf, 3);
  cr_assert(memcmp(buf, "hi\n", 3) == 0, "hi");
  put(fd, "yo\n", 3);
  TH_WAIT_GE(&items, 1);
  cr_assert(seen_is("yo|"), "yo");
  close(fd);
  TH_WAIT_GE(&closes, 1);
  cr_assert(close_reason() == ISOLA_STREAM_EOF, "reason");
  close(lfd);
  th_vm_shutdown_ok();
}

Test(stream, a_refused_connect_closes_with_the_error) {
  th_vm_init(NULL);
  server_start(ISOLA_STREAM_LINES, 0, 0);
  /* A port nobody listens on: bound, then closed. */
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  cr_assert(bind(lfd, (struct sockaddr *)&a, sizeof a) == 0 &&
                getsockname(lfd, (struct sockaddr *)&a, &len) == 0,
            "bind");
  atomic_store(&connect_to, ntohs(a.sin_port));
  close(lfd);
  TH_ASSERT_OK(isola_spawn(client_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&closes, 1);
  pthread_mutex_lock(&seen.mu);
  int reason = seen.reason, err = seen.err;
  pthread_mutex_unlock(&seen.mu);
  cr_assert(reason == ISOLA_STREAM_ERROR && err == ECONNREFUSED,
            "reason %s, err %s", isola_stream_reason_name(reason),
            strerror(err));
  th_vm_shutdown_ok();
}

/* ---- bad arguments ------------------------------------------------------ */

static th_counter bad_done = TH_COUNTER_INIT;
static _Atomic(isola_stream *) foreign;
static int pair_fd = -1;

/* The other isolate has tried: close the peer (the stream sees EOF and
 * closes itself) and the port. */
static void bad_back(void *ctx, isola_port port, isola_value msg,
                     isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  close(pair_fd);
  TH_CHECK_OK(isola_port_close(port));
  th_counter_add(&bad_done, 1);
}

static void bad_entry(isola_value msg) {
  isola_stream_options o = {.on_data = on_data};
  isola_stream *s;
  isola_stream_listener *l;
  if (msg.kind == ISOLA_PORT) { /* another isolate's stream */
    isola_stream *f = atomic_load(&foreign);
    TH_CHECK_RC(isola_stream_write(f, "x", 1), ISOLA_ENOTOWNER);
    TH_CHECK_RC(isola_stream_close(f), ISOLA_ENOTOWNER);
    TH_CHECK_RC(isola_stream_set_reading(f, false), ISOLA_ENOTOWNER);
    TH_CHECK_OK(isola_send(th_port(msg), isola_null()));
    return;
  }
  TH_CHECK_RC(isola_stream_open(-1, &o, &s), ISOLA_EINVAL);
  int sv[2];
  TH_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  TH_CHECK_RC(isola_stream_open(sv[0], NULL, &s), ISOLA_EINVAL); /* closed */
  isola_stream_options none = {0};
  TH_CHECK_RC(isola_stream_open(sv[1], &none, &s), ISOLA_EINVAL);
  TH_CHECK_RC(isola_stream_connect("localhost", 80, &o, &s), ISOLA_EINVAL);
  TH_CHECK_RC(isola_stream_connect(NULL, 80, &o, &s), ISOLA_EINVAL);
  TH_CHECK_RC(isola_stream_listen("nowhere", 0, on_accept, NULL, &l),
              ISOLA_EINVAL);
  TH_CHECK_RC(isola_stream_listen("127.0.0.1", 0, NULL, NULL, &l),
              ISOLA_EINVAL);
  TH_CHECK_RC(isola_stream_write(NULL, "x", 1), ISOLA_EINVAL);
  /* A pair of our own: lines may not hold '\n'; too big for the limit. */
  TH_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  o.framing = ISOLA_STREAM_LINES;
  o.write_limit = 8;
  TH_CHECK_OK(isola_stream_open(sv[0], &o, &s));
  TH_CHECK_RC(isola_stream_write(s, "a\nb", 3), ISOLA_EINVAL);
  TH_CHECK_RC(isola_stream_write(s, "123456789", 9), ISOLA_EINVAL);
  TH_CHECK_RC(isola_stream_write(s, NULL, 1), ISOLA_EINVAL);
  TH_CHECK_OK(isola_stream_write(s, "1234567", 7)); /* with '\n': 8 */
  char buf[8];
  TH_CHECK(read(sv[1], buf, 8) == 8 && memcmp(buf, "1234567\n", 8) == 0);
  atomic_store(&foreign, s);
  pair_fd = sv[1];
  isola_port back;
  TH_CHECK_OK(isola_port_open(bad_back, NULL, &back));
  TH_CHECK_OK(isola_spawn(bad_entry, isola_sendport(back), NULL, NULL));
}

Test(stream, bad_arguments) {
  th_vm_init(NULL);
  isola_stream_options o = {.on_data = on_data};
  isola_stream *s;
  isola_stream_listener *l;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  TH_ASSERT_RC(isola_stream_open(fd, &o, &s), ISOLA_ENOTISOLATE); /* closed */
  TH_ASSERT_RC(isola_stream_connect("127.0.0.1", 1, &o, &s),
               ISOLA_ENOTISOLATE);
  TH_ASSERT_RC(isola_stream_listen("127.0.0.1", 0, on_accept, NULL, &l),
               ISOLA_ENOTISOLATE);
  TH_ASSERT_OK(isola_spawn(bad_entry, isola_int(0), NULL, NULL));
  TH_WAIT_GE(&bad_done, 1);
  cr_assert(strcmp(isola_stream_reason_name(ISOLA_STREAM_OVERSIZE),
                   "oversize") == 0, "name");
  cr_assert(strcmp(isola_stream_reason_name(42), "unknown") == 0, "name");
  th_vm_shutdown_ok();
}

/* ---- pausing, and watches that change their events --------------------- */

static int pause_fd = -1;           /* the raw end of a socketpair */
static isola_stream *paused_stream;  /* owned by the pause isolate */
static _Atomic long count_at_check = -1;

static void pause_data(isola_stream *s, const uint8_t *d, size_t n,
                       void *ctx) {
  (void)ctx;
  record(d, n);
  if (th_counter_get(&items) == 1)
    TH_CHECK_OK(isola_stream_set_reading(s, false));
}

static void pause_cmd(void *ctx, isola_port port, isola_value msg,
                      isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  atomic_store(&count_at_check, th_counter_get(&items));
  TH_CHECK_OK(isola_stream_set_reading(paused_stream, true));
  TH_CHECK_OK(isola_port_close(port));
}

static _Atomic isola_port pause_port;
static th_counter pause_ready = TH_COUNTER_INIT;

static void pause_entry(isola_value msg) {
  (void)msg;
  int sv[2];
  TH_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  isola_stream_options o = {.framing = ISOLA_STREAM_LINES,
                            .on_data = pause_data, .on_close = on_close};
  TH_CHECK_OK(isola_stream_open(sv[0], &o, &paused_stream));
  pause_fd = sv[1];
  /* Three lines in one write: one read takes them all. */
  TH_CHECK(write(pause_fd, "a\nb\nc\n", 6) == 6);
  isola_port p;
  TH_CHECK_OK(isola_port_open(pause_cmd, NULL, &p));
  atomic_store(&pause_port, p);
  th_counter_add(&pause_ready, 1);
}

Test(stream, paused_reading_delivers_nothing_until_resumed) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_spawn(pause_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&pause_ready, 1);
  TH_WAIT_GE(&items, 1);
  /* Handled after the event that delivered "a" (and paused). */
  TH_ASSERT_OK(isola_send(atomic_load(&pause_port), isola_null()));
  TH_WAIT_GE(&items, 3);
  cr_assert(atomic_load(&count_at_check) == 1, "%ld lines while paused",
            atomic_load(&count_at_check));
  cr_assert(seen_is("a|b|c|"), "lines");
  th_vm_shutdown_ok(); /* the stream is still open: closed with its owner */
  close(pause_fd);
}

static th_counter watch_events = TH_COUNTER_INIT;
static th_counter watch_done = TH_COUNTER_INIT;
static _Atomic uint32_t watch_seen;
static isola_watch the_watch;
static int wsv[2];

static void watch_fn(int fd, uint32_t events, void *arg) {
  (void)fd, (void)arg;
  atomic_fetch_or(&watch_seen, events);
  long n = th_counter_get(&watch_events);
  th_counter_add(&watch_events, 1);
  if (n == 0) { /* first: writable, as asked; now wait for input */
    TH_CHECK(events & ISOLA_WRITABLE);
    TH_CHECK_OK(isola_watch_set_events(the_watch, ISOLA_READABLE));
    TH_CHECK(write(wsv[1], "x", 1) == 1);
  } else if (events & ISOLA_READABLE) {
    char c;
    TH_CHECK(read(wsv[0], &c, 1) == 1 && c == 'x');
    TH_CHECK_OK(isola_watch_close(the_watch));
    close(wsv[0]);
    close(wsv[1]);
    th_counter_add(&watch_done, 1);
  }
}

static void watch_entry(isola_value msg) {
  (void)msg;
  TH_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0,
                      wsv) == 0);
  /* Nothing to read: only the change to WRITABLE makes it fire. */
  TH_CHECK_OK(isola_watch_open(wsv[0], ISOLA_READABLE, watch_fn, NULL,
                               &the_watch));
  TH_CHECK_RC(isola_watch_set_events(the_watch, 0x80), ISOLA_EINVAL);
  TH_CHECK_RC(isola_watch_set_events(the_watch + 1000, ISOLA_WRITABLE),
              ISOLA_ECLOSED);
  TH_CHECK_OK(isola_watch_set_events(the_watch, ISOLA_WRITABLE));
}

Test(stream, a_watch_changes_its_events) {
  th_vm_init(NULL);
  TH_ASSERT_RC(isola_watch_set_events(1, ISOLA_READABLE), ISOLA_ENOTISOLATE);
  TH_ASSERT_OK(isola_spawn(watch_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&watch_done, 1);
  cr_assert((atomic_load(&watch_seen) & (ISOLA_READABLE | ISOLA_WRITABLE)) ==
                (ISOLA_READABLE | ISOLA_WRITABLE),
            "events seen %x", atomic_load(&watch_seen));
  th_vm_shutdown_ok();
}
