/* SPDX-License-Identifier: MIT */
/*
 * isola_observe — a live view of a running VM over HTTP, on libmicrohttpd
 * (a component of its own: libisola_observe, built when libmicrohttpd is
 * found; the core library does not depend on it).  docs/observability.md
 * explains every figure.
 *
 * It serves, from isola_vm_snapshot() taken per request:
 *   GET /              one self-contained page (nothing downloaded) that
 *                      refreshes itself: isolates sortable by queue, heap
 *                      and CPU, worker utilisation, message rate and queue
 *                      growth
 *   GET /api/isolates  JSON: every isolate
 *   GET /api/workers   JSON: every worker
 *   GET /api/vm        JSON: the VM's totals, and whether control is on
 *   GET /metrics       the Prometheus text format
 *   POST /api/isolates/<id>/kill | pause | resume   only with
 *                      allow_control (else 403), and only with the request
 *                      header "X-Isola-Control: 1", which a page of another
 *                      origin cannot send without the server's consent
 * Every request must name this server in its Host header (the address it
 * listens on, or localhost with a loopback address): a page of another
 * site that rebinds its DNS name to 127.0.0.1 is refused.
 *
 * The server listens on loopback by default.  Binding it elsewhere shows
 * the names, queue sizes and counters of every isolate to anyone who can
 * reach the port, without authentication or TLS (put a reverse proxy with
 * both in front); with allow_control, anyone who can reach it can kill
 * and pause isolates.
 */
#ifndef ISOLA_OBSERVE_H
#define ISOLA_OBSERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "isola.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct isola_observe_options {
  /* A numeric IPv4 or IPv6 address to listen on.  NULL: "127.0.0.1". */
  const char *address;
  /* The TCP port.  0: any free port (isola_observe_port() tells which). */
  uint16_t port;
  /* Allow killing, pausing and resuming isolates from the page and the
   * API.  false (the default): those requests get 403. */
  bool allow_control;
  /* How often the page refreshes itself, in ms.  0: 1000. */
  unsigned refresh_ms;
} isola_observe_options;

/* Fills *opts with the defaults (every field 0, NULL or false). */
ISOLA_EXPORT void isola_observe_options_init(isola_observe_options *opts);

typedef struct isola_observe isola_observe;

/* Starts the server on its own thread (libmicrohttpd's).  The VM need not
 * be running yet: requests made while none runs get 503.  opts may be
 * NULL.  *out receives the server, which the caller stops with
 * isola_observe_stop().  Errors: ISOLA_EINVAL (out NULL, an address that
 * is not numeric), ISOLA_ESYS (the socket could not be bound: port in use,
 * address not local), ISOLA_ENOMEM.  Any thread. */
ISOLA_EXPORT int isola_observe_start(const isola_observe_options *opts,
                                     isola_observe **out);

/* The TCP port the server listens on.  Any thread. */
ISOLA_EXPORT uint16_t isola_observe_port(const isola_observe *observe);

/* Stops the server (requests under way finish first) and frees it.  NULL:
 * nothing.  Any thread that is not an isolate, before or after
 * isola_vm_shutdown(). */
ISOLA_EXPORT void isola_observe_stop(isola_observe *observe);

/* What isola_observe_render() writes: the bodies of /api/isolates,
 * /api/workers, /api/vm and /metrics. */
typedef enum isola_observe_format {
  ISOLA_OBSERVE_ISOLATES_JSON = 0,
  ISOLA_OBSERVE_WORKERS_JSON,
  ISOLA_OBSERVE_VM_JSON,
  ISOLA_OBSERVE_METRICS
} isola_observe_format;

/* Renders a snapshot as the server would serve it, into a NUL-terminated
 * string of *len bytes (len may be NULL) that the caller frees with
 * free().  allow_control only changes ISOLA_OBSERVE_VM_JSON's "control".
 * Errors: ISOLA_EINVAL (snapshot or out NULL, unknown format),
 * ISOLA_ENOMEM.  Any thread. */
ISOLA_EXPORT int isola_observe_render(const isola_snapshot *snapshot,
                                      isola_observe_format format,
                                      bool allow_control, char **out,
                                      size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* ISOLA_OBSERVE_H */
