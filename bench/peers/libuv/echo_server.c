/* SPDX-License-Identifier: MIT */
/*
 * libuv peer of the tcpecho benchmark (BENCHMARKS.md, second round): a TCP
 * echo server on one libuv loop (one thread, as libuv servers are
 * written), built against Debian's libuv1-dev.
 *
 *   uv-echo tcpecho C R PORT
 *
 * Listens on 127.0.0.1:PORT, writes back what every connection sends, and
 * ends when C connections have closed; then prints
 * "libuv tcpecho peak_rss_kb ..." (VmHWM).  R is the client's and unused.
 * The client (bench/tcpecho-client.c) prints the figures.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static uv_tcp_t server;
static long conns, closed;

typedef struct {
  uv_write_t req;
  uv_buf_t buf;
} write_req;

static void die(const char *what, int err) {
  fprintf(stderr, "libuv: %s: %s\n", what, uv_strerror(err));
  exit(1);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  buf->base = malloc(4096);
  buf->len = buf->base ? 4096 : 0;
}

static void on_close(uv_handle_t *h) {
  free(h);
  if (++closed == conns) uv_close((uv_handle_t *)&server, NULL);
}

static void on_write(uv_write_t *req, int status) {
  write_req *w = (write_req *)req;
  (void)status;
  free(w->buf.base);
  free(w);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  if (n > 0) {
    write_req *w = malloc(sizeof *w);
    if (!w) die("malloc", UV_ENOMEM);
    w->buf = uv_buf_init(buf->base, (unsigned)n);
    int rc = uv_write(&w->req, s, &w->buf, 1, on_write);
    if (rc) die("uv_write", rc);
    return;
  }
  free(buf->base);
  if (n < 0) uv_close((uv_handle_t *)s, on_close); /* UV_EOF or an error */
}

static void on_conn(uv_stream_t *srv, int status) {
  if (status < 0) die("listen", status);
  uv_tcp_t *c = malloc(sizeof *c);
  if (!c) die("malloc", UV_ENOMEM);
  uv_tcp_init(uv_default_loop(), c);
  int rc = uv_accept(srv, (uv_stream_t *)c);
  if (rc) die("uv_accept", rc);
  uv_tcp_nodelay(c, 1);
  rc = uv_read_start((uv_stream_t *)c, alloc_cb, on_read);
  if (rc) die("uv_read_start", rc);
}

static long peak_rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "VmHWM:", 6) == 0) kb = strtol(line + 6, NULL, 10);
  if (f) fclose(f);
  return kb;
}

int main(int argc, char **argv) {
  if (argc != 5 || strcmp(argv[1], "tcpecho") != 0) {
    fputs("usage: uv-echo tcpecho C R PORT\n", stderr);
    return 2;
  }
  conns = atol(argv[2]);
  int port = atoi(argv[4]);
  if (conns < 1 || port < 1 || port > 65535) {
    fputs("uv-echo: bad arguments\n", stderr);
    return 2;
  }
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", port, &a);
  uv_tcp_init(uv_default_loop(), &server);
  int rc = uv_tcp_bind(&server, (const struct sockaddr *)&a, 0);
  if (rc) die("uv_tcp_bind", rc);
  rc = uv_listen((uv_stream_t *)&server, 1024, on_conn);
  if (rc) die("uv_listen", rc);
  uv_run(uv_default_loop(), UV_RUN_DEFAULT);
  printf("libuv tcpecho peak_rss_kb %.3f kB\n", (double)peak_rss_kb());
  return 0;
}
