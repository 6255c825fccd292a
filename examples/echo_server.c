/* SPDX-License-Identifier: MIT */
/*
 * echo_server.c — a TCP line server on 127.0.0.1 where each connection is
 * served by an isolate of its own, on isola_stream: it sends every line
 * back (examples/echo_server_raw.c is an echo server on raw fd watches).
 *
 * The root isolate (the program's main thread) listens with
 * isola_stream_listen(); for each connection it spawns a "conn" isolate
 * with the connection's fd as its spawn message.  A conn isolate makes a
 * stream of the fd that cuts what it reads into lines and writes each line
 * back.  Output the client does not read yet waits in the stream's
 * bounded buffer; once it holds more than half its limit the isolate stops
 * reading (so the client is slowed by TCP, not the server's memory), and
 * on_drain resumes.  At end of input the stream closes and the isolate,
 * with nothing left, ends; if it is killed first (at shutdown) its stream's
 * fd is closed with it.
 *
 *   echo_server [--port P]      serve until interrupted (P = 0: any port)
 *   echo_server --selftest N    serve N clients, check every echo, stop
 *
 * The command line and the self-test are in echo_harness.h.
 */
#define _GNU_SOURCE
#include "echo_harness.h"

#define WRITE_LIMIT (256 * 1024)

/* ---- one connection, one isolate ----------------------------------------- */

static void conn_line(isola_stream *s, const uint8_t *line, size_t len,
                      void *ctx) {
  (void)ctx;
  /* Never refused: reading stops before the buffer is half full, and a
   * line is at most 64 KiB (max_frame; a longer one closes the stream). */
  isola_stream_write(s, line, len);
  if (isola_stream_buffered(s) > WRITE_LIMIT / 2)
    isola_stream_set_reading(s, false);
}

static void conn_drained(isola_stream *s, void *ctx) {
  (void)ctx;
  isola_stream_set_reading(s, true);
}

static void conn_entry(isola_value fd) {
  isola_stream_options o = {.framing = ISOLA_STREAM_LINES,
                            .write_limit = WRITE_LIMIT,
                            .on_data = conn_line,
                            .on_drain = conn_drained};
  isola_stream *s;
  isola_stream_open((int)fd.as.i, &o, &s); /* closes the fd on error */
}

/* ---- the listener: the root isolate -------------------------------------- */

static void on_accept(isola_stream_listener *l, int fd, void *ctx) {
  (void)l, (void)ctx;
  isola_spawn_options o = {.name = "conn"};
  if (isola_spawn(conn_entry, isola_int(fd), &o, NULL) != ISOLA_OK) close(fd);
}

static void on_stop(void *listener, isola_port port, isola_value msg,
                    isola_port reply_to) {
  (void)msg, (void)reply_to;
  /* Nothing left to keep the root alive: the run ends. */
  isola_stream_listener_close(listener);
  isola_port_close(port);
}

static void root_entry(isola_value port) {
  isola_stream_listener *l;
  isola_port stop = ISOLA_PORT_NONE;
  if (isola_stream_listen("127.0.0.1", (uint16_t)port.as.i, on_accept, NULL,
                          &l) == ISOLA_OK &&
      isola_port_open(on_stop, l, &stop) != ISOLA_OK)
    isola_stream_listener_close(l);
  echo_listening(stop ? isola_stream_listener_port(l) : 0, stop);
}

int main(int argc, char **argv) {
  return echo_main(argc, argv, "echo_server", root_entry);
}
