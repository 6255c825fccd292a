/*
 * isola — Dart-VM style isolates for C.
 *
 * An isolate is a unit of work with its own state and its own event loop.
 * Isolates share nothing: they talk only by sending messages to ports.  A
 * process runs one VM; the VM owns a pool of worker threads onto which
 * isolates are scheduled whenever they have messages to handle.  An isolate
 * never runs on two threads at once, so its handlers need no locks.
 *
 * Conventions used throughout this header:
 *   - Every function that can fail returns an int: ISOLA_OK (0) or a negative
 *     ISOLA_E* code.  isola_strerror() names each code.
 *   - "Isolate only" means the function must be called from code running in
 *     an isolate (a port handler or an entry function); from any other thread
 *     it returns ISOLA_ENOTISOLATE.
 *   - "Any thread" means any thread of the process, isolate or not, while the
 *     VM is running.
 *   - Ports and isolates are named by 64-bit ids, never by pointers: a stale
 *     id makes a call fail with an error, it never touches freed memory.
 */
#ifndef ISOLA_H
#define ISOLA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ISOLA_VERSION_MAJOR 0
#define ISOLA_VERSION_MINOR 1
#define ISOLA_VERSION_PATCH 0
#define ISOLA_VERSION_STRING "0.1.0"

#if defined(__GNUC__)
#define ISOLA_EXPORT __attribute__((visibility("default")))
#else
#define ISOLA_EXPORT
#endif

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

/* X(name, value, description): the one table of error codes. */
#define ISOLA_ERRNO_MAP(X)                                                     \
  X(OK, 0, "success")                                                          \
  X(EINVAL, -1, "invalid argument")                                            \
  X(ENOMEM, -2, "out of memory")                                               \
  X(ECLOSED, -3, "port is closed or unknown")                                  \
  X(EEXIST, -4, "the VM is already running")                                   \
  X(ENOVM, -5, "the VM is not running")                                        \
  X(ELIMIT, -6, "the live isolate limit is reached")                           \
  X(ETIMEDOUT, -7, "timed out")                                                \
  X(ENOTISOLATE, -8, "not called from an isolate")                             \
  X(ENOTOWNER, -9, "the port belongs to another isolate")                      \
  X(ETYPE, -10, "the value has another kind")                                  \
  X(ERANGE, -11, "index out of range")                                         \
  X(EBUSY, -12, "not allowed from this thread or in this state")               \
  X(ESYS, -13, "an operating system call failed")                              \
  X(ESHUTDOWN, -14, "the VM is shutting down")

typedef enum isola_err {
#define ISOLA_ERR_ENUM_(name, value, text) ISOLA_##name = (value),
  ISOLA_ERRNO_MAP(ISOLA_ERR_ENUM_)
#undef ISOLA_ERR_ENUM_
} isola_err;

/* A sentence describing err, e.g. "port is closed or unknown".  Never NULL:
 * an unknown code gives "unknown error".  Any thread; the string is static. */
ISOLA_EXPORT const char *isola_strerror(int err);

/* The code's name, e.g. "ISOLA_ECLOSED" ("ISOLA_UNKNOWN" for an unknown
 * code).  Any thread; the string is static. */
ISOLA_EXPORT const char *isola_err_name(int err);

/* ------------------------------------------------------------------------ */
/* Ports and values                                                          */
/* ------------------------------------------------------------------------ */

/* A port id.  The id of a receive port is also its send port: a plain value
 * that can be copied, compared with ==, used as a hash key (it is already
 * uniformly distributed), and sent inside messages.  Ids cannot be guessed
 * and are not handed out again while the VM runs (see docs/design.md).
 * ISOLA_PORT_NONE is never a valid port. */
typedef uint64_t isola_port;
#define ISOLA_PORT_NONE ((isola_port)0)

/* An unforgeable token (issue of the VM's CSPRNG), e.g. the pause and
 * terminate capabilities of an isolate.  0 is never a capability. */
typedef uint64_t isola_capability;

/* The kinds of value a message can carry. */
typedef enum isola_kind {
  ISOLA_NULL = 0,
  ISOLA_BOOL,
  ISOLA_INT,    /* int64_t */
  ISOLA_DOUBLE, /* double */
  ISOLA_STRING, /* UTF-8, len bytes, not counting a terminating NUL */
  ISOLA_BYTES,  /* len bytes of binary data */
  ISOLA_LIST,   /* len values */
  ISOLA_PORT    /* a send port */
} isola_kind;

/*
 * A value: a small struct passed by value.  Scalars live inside it; strings,
 * bytes and lists point to memory that the value does not own.
 *
 * Building: the constructors below (isola_int(), isola_str(), isola_list() …)
 * only wrap what they are given; they allocate nothing.  A list points to an
 * array of values the caller keeps alive until the call that uses the value
 * returns.  Two list values with the same items pointer and length are the
 * same list: sending preserves that sharing, so a list reachable twice
 * arrives once, referenced twice, and a list that contains itself arrives as
 * a list that contains itself.
 *
 * Received values (a handler's argument) point into memory the runtime owns
 * and frees when the handler returns; keep one beyond that with
 * isola_value_copy().
 *
 * The fields are public for reading; use the constructors to build values
 * and the isola_value_get_* accessors to read them with type checks.
 */
typedef struct isola_value {
  uint32_t kind; /* an isola_kind */
  uint32_t len;  /* string and bytes: length in bytes; list: element count */
  union {
    bool b;
    int64_t i;
    double d;
    isola_port port;
    const char *str;
    const uint8_t *bytes;
    const struct isola_value *items;
  } as;
} isola_value;

static inline isola_value isola_null(void) {
  isola_value v = {ISOLA_NULL, 0, {.i = 0}};
  return v;
}
static inline isola_value isola_bool(bool b) {
  isola_value v = {ISOLA_BOOL, 0, {.i = 0}};
  v.as.b = b;
  return v;
}
static inline isola_value isola_int(int64_t i) {
  isola_value v = {ISOLA_INT, 0, {.i = i}};
  return v;
}
static inline isola_value isola_double(double d) {
  isola_value v = {ISOLA_DOUBLE, 0, {.d = d}};
  return v;
}
static inline isola_value isola_sendport(isola_port p) {
  isola_value v = {ISOLA_PORT, 0, {.port = p}};
  return v;
}
/* A string of len bytes (UTF-8; it need not be NUL-terminated).  Sending a
 * string that is not valid UTF-8 fails with ISOLA_EINVAL.  len must fit in
 * 32 bits; a longer one makes the send fail with ISOLA_EINVAL. */
static inline isola_value isola_strn(const char *s, size_t len) {
  isola_value v = {ISOLA_STRING, (uint32_t)len, {.str = s}};
  if (len > UINT32_MAX) v.kind = UINT32_MAX; /* rejected when used */
  return v;
}
/* A NUL-terminated UTF-8 string. */
ISOLA_EXPORT isola_value isola_str(const char *s);
static inline isola_value isola_bytes(const void *p, size_t len) {
  isola_value v = {ISOLA_BYTES, (uint32_t)len, {.bytes = (const uint8_t *)p}};
  if (len > UINT32_MAX) v.kind = UINT32_MAX;
  return v;
}
static inline isola_value isola_list(const isola_value *items, size_t n) {
  isola_value v = {ISOLA_LIST, (uint32_t)n, {.items = items}};
  if (n > UINT32_MAX) v.kind = UINT32_MAX;
  return v;
}

/* Typed reads.  Each returns ISOLA_OK and stores the content, or
 * ISOLA_ETYPE when v is of another kind (out is then untouched), or
 * ISOLA_EINVAL when out is NULL.  Any thread. */
ISOLA_EXPORT int isola_value_get_bool(isola_value v, bool *out);
ISOLA_EXPORT int isola_value_get_int(isola_value v, int64_t *out);
ISOLA_EXPORT int isola_value_get_double(isola_value v, double *out);
ISOLA_EXPORT int isola_value_get_port(isola_value v, isola_port *out);
/* *out points to the string's bytes; *len (if len is not NULL) gets its
 * length.  Received strings are NUL-terminated as well. */
ISOLA_EXPORT int isola_value_get_str(isola_value v, const char **out,
                                     size_t *len);
ISOLA_EXPORT int isola_value_get_bytes(isola_value v, const uint8_t **out,
                                       size_t *len);
/* Element index of a list: ISOLA_ETYPE if v is not a list, ISOLA_ERANGE if
 * index >= its length. */
ISOLA_EXPORT int isola_list_get(isola_value v, size_t index, isola_value *out);

/* Deep-copies v (sharing and cycles preserved) into one block of memory that
 * the caller owns and releases with isola_value_free().  Errors: ISOLA_EINVAL
 * (a malformed value: bad kind, invalid UTF-8, out NULL), ISOLA_ENOMEM.  On
 * error *out is set to null.  Any thread. */
ISOLA_EXPORT int isola_value_copy(isola_value v, isola_value *out);

/* Releases a value made by isola_value_copy() and sets *v to null.  Passing
 * a null value, or NULL, does nothing.  Passing any other value is undefined
 * behaviour.  Any thread. */
ISOLA_EXPORT void isola_value_free(isola_value *v);

/* Structural equality: same kinds, same contents, same shape (shared lists
 * compare by content; a cycle compares equal to the same cycle).  Any
 * thread. */
ISOLA_EXPORT bool isola_value_equal(isola_value a, isola_value b);

/* ------------------------------------------------------------------------ */
/* The VM                                                                    */
/* ------------------------------------------------------------------------ */

/* What the embedder is told about an isolate.  Strings are valid during the
 * call that receives the struct. */
typedef struct isola_isolate_info {
  const char *name;        /* debug name, never NULL */
  isola_port control_port; /* identifies the isolate while it lives */
  uint64_t origin;         /* control port of the first isolate it was
                              spawned from (itself for a root isolate) */
  uint64_t group;          /* id of its group */
} isola_isolate_info;

/* Embedder hooks.  All optional (NULL to skip).  They run on the thread
 * that runs the isolate concerned, with no runtime lock held, and must not
 * block for long. */
typedef struct isola_hooks {
  void *data; /* passed to every hook */
  /* A group was created (by a spawn from a thread that is not an isolate, or
   * by isola_run_main).  The return value becomes the group's embedder data,
   * readable with isola_group_data(). */
  void *(*group_created)(void *data, uint64_t group);
  /* The isolate is about to run its entry function. */
  void (*isolate_created)(void *data, const isola_isolate_info *info);
  /* The isolate is ending; it is still current (isola_current() works), its
   * ports are still open. */
  void (*isolate_shutdown)(void *data, const isola_isolate_info *info);
  /* The isolate has ended: its ports are closed, nothing of it runs again. */
  void (*isolate_cleanup)(void *data, const isola_isolate_info *info);
  /* The last isolate of the group has been cleaned up. */
  void (*group_cleanup)(void *data, uint64_t group, void *group_data);
} isola_hooks;

/* Trace flags for isola_config.trace. */
#define ISOLA_TRACE_ISOLATES 0x1u /* isolate start and stop */
#define ISOLA_TRACE_MESSAGES 0x2u /* every message handled */

typedef struct isola_config {
  /* Worker threads that run isolates.  0: one per core. */
  unsigned workers;
  /* A thread that stays idle this long exits (it is re-created on demand).
   * 0: 10 000 ms. */
  unsigned idle_timeout_ms;
  /* Live isolates allowed at once; a spawn past it fails with ISOLA_ELIMIT.
   * 0: no limit but memory. */
  size_t max_isolates;
  /* How long isola_vm_shutdown() waits for isolates to end.  0: 5 000 ms. */
  unsigned shutdown_grace_ms;
  /* ISOLA_TRACE_* flags; 0: no tracing. */
  unsigned trace;
  /* Where trace lines go; NULL: stderr. */
  FILE *trace_file;
  isola_hooks hooks;
} isola_config;

/* Fills *config with the defaults (every field 0 or NULL). */
ISOLA_EXPORT void isola_config_init(isola_config *config);

/* Starts the VM: the worker threads and the port map.  config may be NULL
 * for the defaults; it is copied.  One VM per process at a time.
 * Errors: ISOLA_EEXIST (a VM is running or shutting down), ISOLA_EINVAL,
 * ISOLA_ENOMEM, ISOLA_ESYS (a thread could not be started).  Any thread that
 * is not an isolate. */
ISOLA_EXPORT int isola_vm_init(const isola_config *config);

/* What isola_vm_shutdown() found still alive when its grace period ran out.
 * text lists each isolate that did not end (name, control port, and the
 * ports that keep it alive); it is NUL-terminated and cut at its size. */
typedef struct isola_shutdown_report {
  size_t stuck; /* isolates still alive */
  char text[2048];
} isola_shutdown_report;

/*
 * Ends every isolate, frees every queued message, joins every thread and
 * frees everything the VM allocated.  Isolates idle or between messages end
 * at once; one running a handler ends when the handler returns.  If some
 * isolate has not ended within config.shutdown_grace_ms (it is stuck in C
 * code), returns ISOLA_ETIMEDOUT, fills *report (if not NULL) naming it, and
 * leaves the VM shutting down: calling isola_vm_shutdown() again waits
 * again.  New spawns and sends fail with ISOLA_ESHUTDOWN from the start of
 * the first call.  Errors: ISOLA_ENOVM, ISOLA_EBUSY (called from an
 * isolate), ISOLA_ETIMEDOUT.  Any thread that is not an isolate.
 */
ISOLA_EXPORT int isola_vm_shutdown(isola_shutdown_report *report);

/* ------------------------------------------------------------------------ */
/* Isolates                                                                  */
/* ------------------------------------------------------------------------ */

/* An isolate's entry function.  message is the spawn message, valid until
 * the entry returns (copy it with isola_value_copy() to keep it). */
typedef void (*isola_entry)(isola_value message);

/* A full handle on an isolate.  The control port identifies the isolate;
 * the capabilities grant pausing and terminating it. */
typedef struct isola_isolate {
  isola_port control_port;
  isola_capability pause_capability;
  isola_capability terminate_capability;
} isola_isolate;

typedef struct isola_spawn_options {
  const char *name; /* debug name, copied (at most 63 bytes kept); NULL:
                       "isolate" */
  /* When the isolate ends, however it ends, on_exit_message (null if
   * unset) is sent to this port.  ISOLA_PORT_NONE: nobody is told. */
  isola_port on_exit;
  isola_value on_exit_message; /* copied at spawn */
} isola_spawn_options;

/*
 * Starts a new isolate that runs entry(message) as its first event.  From an
 * isolate, the new isolate joins the caller's group; from any other thread
 * it starts a new group.  message is copied before the call returns.
 * opts may be NULL.  *out (may be NULL) receives the handle.
 * The isolate lives while it has live ports: if it has none when entry
 * returns, it ends.
 * Errors: ISOLA_EINVAL (entry NULL, a malformed message), ISOLA_ENOMEM,
 * ISOLA_ELIMIT, ISOLA_ENOVM, ISOLA_ESHUTDOWN.  Nothing is started on error.
 * Any thread.
 */
ISOLA_EXPORT int isola_spawn(isola_entry entry, isola_value message,
                             const isola_spawn_options *opts,
                             isola_isolate *out);

/*
 * Turns the calling thread into the root isolate of a new group: runs
 * entry(message) on this thread, then handles this isolate's messages on
 * this thread until it has no live ports, then ends the isolate and
 * returns (Dart_RunLoop).  name may be NULL ("main").
 * Errors: ISOLA_EINVAL, ISOLA_ENOMEM, ISOLA_ELIMIT, ISOLA_ENOVM,
 * ISOLA_ESHUTDOWN, ISOLA_EBUSY (called from an isolate).  Any thread that is
 * not an isolate.
 */
ISOLA_EXPORT int isola_run_main(isola_entry entry, isola_value message,
                                const char *name);

/* The running isolate's full handle.  Errors: ISOLA_EINVAL (out NULL),
 * ISOLA_ENOTISOLATE.  Isolate only. */
ISOLA_EXPORT int isola_current(isola_isolate *out);

/* The running isolate's info (name, control port, origin, group); the name
 * stays valid while the isolate lives.  Errors: ISOLA_EINVAL,
 * ISOLA_ENOTISOLATE.  Isolate only. */
ISOLA_EXPORT int isola_current_info(isola_isolate_info *out);

/* The embedder data of the running isolate's group (what the group_created
 * hook returned), or NULL.  Isolate only (NULL elsewhere). */
ISOLA_EXPORT void *isola_group_data(void);

/* Live isolates in the VM right now (0 when the VM is not running).  Any
 * thread; the figure may be stale by the time it is read. */
ISOLA_EXPORT size_t isola_live_isolates(void);

/* ------------------------------------------------------------------------ */
/* Ports and messages                                                        */
/* ------------------------------------------------------------------------ */

/* A receive port's handler.  It runs in the isolate that owns the port, one
 * message at a time.  message is valid until the handler returns (keep it
 * with isola_value_copy()).  reply_to is the port the sender named with
 * isola_send_reply(), or ISOLA_PORT_NONE. */
typedef void (*isola_handler)(void *ctx, isola_port port, isola_value message,
                              isola_port reply_to);

/* Opens a receive port owned by the running isolate; messages sent to it are
 * passed to handler(ctx, …).  An open port keeps its isolate alive.
 * ctx is the caller's: the runtime never touches it.
 * Errors: ISOLA_EINVAL (handler or out NULL), ISOLA_ENOMEM,
 * ISOLA_ENOTISOLATE.  Isolate only. */
ISOLA_EXPORT int isola_port_open(isola_handler handler, void *ctx,
                                 isola_port *out);

/* Closes a port of the running isolate.  Messages still queued for it are
 * dropped; later sends to it fail with ISOLA_ECLOSED.  When the last live
 * port closes, the isolate ends after the current event.  Errors:
 * ISOLA_ECLOSED (already closed or unknown), ISOLA_ENOTOWNER,
 * ISOLA_ENOTISOLATE.  Isolate only. */
ISOLA_EXPORT int isola_port_close(isola_port port);

/* Whether an open port keeps its isolate alive (true when opened; Dart's
 * RawReceivePort.keepIsolateAlive).  An isolate whose open ports all have
 * keep_alive false ends.  Errors as isola_port_close().  Isolate only. */
ISOLA_EXPORT int isola_port_keep_alive(isola_port port, bool keep_alive);

/*
 * Sends a copy of value to port.  The copy is made before the call returns,
 * so the caller may change or free what value points to right after.
 * Messages from one sender to one isolate arrive in the order they were
 * sent, across all of that isolate's ports.
 * Errors: ISOLA_ECLOSED (the port is closed or unknown: the message is
 * dropped), ISOLA_EINVAL (port NONE, a malformed value), ISOLA_ENOMEM,
 * ISOLA_ENOVM, ISOLA_ESHUTDOWN.  Nothing is sent on error.  Any thread.
 */
ISOLA_EXPORT int isola_send(isola_port port, isola_value value);

/* As isola_send(), and the receiving handler gets reply_to as its reply_to
 * argument. */
ISOLA_EXPORT int isola_send_reply(isola_port port, isola_value value,
                                  isola_port reply_to);

/* ------------------------------------------------------------------------ */
/* Blocking inside a handler                                                 */
/* ------------------------------------------------------------------------ */

/* A handler about to block (a read, a lock, a long computation in C) calls
 * isola_blocking_begin() first: the worker hands its run queue to another
 * thread so other isolates keep running, and isola_blocking_end() after.
 * Calls nest.  Errors: ISOLA_ENOTISOLATE; isola_blocking_end() without a
 * begin gives ISOLA_EINVAL.  Isolate only. */
ISOLA_EXPORT int isola_blocking_begin(void);
ISOLA_EXPORT int isola_blocking_end(void);

#ifdef __cplusplus
}
#endif

#endif /* ISOLA_H */
