/* SPDX-License-Identifier: MIT */
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
#include <stdarg.h>
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
  X(ESHUTDOWN, -14, "the VM is shutting down")                                 \
  X(EENDING, -15, "the calling isolate is ending")                             \
  X(EPERM, -17, "the handle lacks the capability")                            \
  X(EFAILED, -18, "the computation failed")                                   \
  X(EFULL, -19, "the receiving isolate is full (its limit or mailbox bound)") \
  X(ENAMETAKEN, -20, "the name is already registered")                         \
  X(ENOTFOUND, -21, "no port is registered under the name")                    \
  X(ETRANSFER, -30, "a buffer is already transferred or appears twice")        \
  X(ENOKEY, -31, "no such key in the map")                                    \
  X(ENOSPACE, -32, "the output buffer is too small")                          \
  X(ETRUNCATED, -33, "the encoded input ends in the middle of a value")       \
  X(EMALFORMED, -34, "the encoded input is not well-formed CBOR")             \
  X(EUNSUPPORTED, -35, "the encoded input holds an item isola cannot represent") \
  X(EBADTAG, -36, "an unknown CBOR tag, or a tag on the wrong item")          \
  X(EUTF8, -37, "an encoded string is not valid UTF-8")                       \
  X(EDANGLING, -38, "a shared reference names no shareable value")            \
  X(ETRAILING, -39, "bytes follow the encoded value")                         \
  X(EDEPTH, -40, "the encoded value nests deeper than the limit")             \
  X(ECOUNT, -41, "the encoded value has more items than the limit")           \
  X(ETOOBIG, -42, "the decoded value would need more memory than the limit") \
  X(EMODULE, -50, "the module could not be loaded")                           \
  X(EABI, -51, "the module is not built for this isola module ABI")          \
  X(ENOENTRY, -52, "the module has no isola_main entry point")           \
  X(EWOULDBLOCK, -60, "the buffer is full: wait until it drains")

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

/* Why the calling thread's last failed call failed, when the code alone
 * does not say: which item of a value was refused and why (e.g. "value[1]
 * [0]: a string of 5 bytes is not valid UTF-8: byte 3 (0xff) is a byte
 * that never occurs in UTF-8"), which port was closed, where a wire
 * decode stopped, which position of an isola_unpack() format did not
 * match.  Set by isola_send(), isola_send_reply(), isola_spawn() and the
 * other spawns, isola_value_copy(), isola_wire_encode*() and
 * isola_wire_decode(), isola_unpack() and isola_pack(), and the
 * isola_call / isola_receiver calls, when they fail.  Like errno, a call
 * that succeeds does not clear it: read it right after the failure.  ""
 * if no call on this thread has set it (module loads have
 * isola_module_error()).  The string is the thread's own (an isolate's
 * handler sees the detail of its own pool thread) and changes with the
 * thread's next failure.  Any thread. */
ISOLA_EXPORT const char *isola_error_detail(void);

/* ------------------------------------------------------------------------ */
/* Ports and values                                                          */
/* ------------------------------------------------------------------------ */

/* A port id.  The id of a receive port is also its send port: a plain value
 * that can be copied, compared with ==, used as a hash key (it is already
 * uniformly distributed), and sent inside messages.  Every bit of an id
 * depends on a per-VM key, so ids show no order and cannot be guessed but
 * by chance (2^64 / N tries on average with N live ports; docs/security.md
 * says what is and is not claimed), and they are not handed out again
 * while the VM runs (see docs/design.md).  ISOLA_PORT_NONE is never a
 * valid port. */
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
  ISOLA_PORT,   /* a send port */
  ISOLA_MAP,    /* len (key, value) pairs, in order */
  ISOLA_CAPABILITY, /* an isola_capability */
  ISOLA_BUFFER  /* a transferable buffer (isola_buffer), moved, not copied */
} isola_kind;

/* A transferable byte buffer: memory with one owner at a time.  Sending a
 * value that holds it (isola_transfer()) moves it to the receiver without
 * copying its bytes.  Made by isola_buffer_new(), see "Transferable
 * buffers" below. */
typedef struct isola_buffer isola_buffer;

/*
 * A value: a small struct passed by value.  Scalars live inside it; strings,
 * bytes, lists and maps point to memory that the value does not own; a
 * buffer value points to the handle that owns its buffer.
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
  uint32_t len;  /* string and bytes: length in bytes; list: element
                    count; map: pair count */
  union {
    bool b;
    int64_t i;
    double d;
    isola_port port;
    const char *str;
    const uint8_t *bytes;
    const struct isola_value *items; /* list: len; map: 2 * len */
    isola_capability cap;
    isola_buffer **handle; /* buffer: the handle that owns it */
  } as;
} isola_value;

static inline isola_value isola_null(void) {
  isola_value v;
  v.kind = ISOLA_NULL;
  v.len = 0;
  v.as.i = 0;
  return v;
}
static inline isola_value isola_bool(bool b) {
  isola_value v;
  v.kind = ISOLA_BOOL;
  v.len = 0;
  v.as.i = 0;
  v.as.b = b;
  return v;
}
static inline isola_value isola_int(int64_t i) {
  isola_value v;
  v.kind = ISOLA_INT;
  v.len = 0;
  v.as.i = i;
  return v;
}
static inline isola_value isola_double(double d) {
  isola_value v;
  v.kind = ISOLA_DOUBLE;
  v.len = 0;
  v.as.i = 0;
  v.as.d = d;
  return v;
}
static inline isola_value isola_sendport(isola_port p) {
  isola_value v;
  v.kind = ISOLA_PORT;
  v.len = 0;
  v.as.i = 0;
  v.as.port = p;
  return v;
}
/* A string of len bytes (UTF-8; it need not be NUL-terminated).  Sending a
 * string that is not valid UTF-8 fails with ISOLA_EINVAL.  len must fit in
 * 32 bits; a longer one makes the send fail with ISOLA_EINVAL. */
static inline isola_value isola_strn(const char *s, size_t len) {
  isola_value v;
  v.kind = ISOLA_STRING;
  v.len = (uint32_t)len;
  v.as.i = 0;
  v.as.str = s;
  if (len > UINT32_MAX) v.kind = UINT32_MAX; /* rejected when used */
  return v;
}
/* A NUL-terminated UTF-8 string. */
ISOLA_EXPORT isola_value isola_str(const char *s);
static inline isola_value isola_bytes(const void *p, size_t len) {
  isola_value v;
  v.kind = ISOLA_BYTES;
  v.len = (uint32_t)len;
  v.as.i = 0;
  v.as.bytes = (const uint8_t *)p;
  if (len > UINT32_MAX) v.kind = UINT32_MAX;
  return v;
}
static inline isola_value isola_list(const isola_value *items, size_t n) {
  isola_value v;
  v.kind = ISOLA_LIST;
  v.len = (uint32_t)n;
  v.as.i = 0;
  v.as.items = items;
  if (n > UINT32_MAX) v.kind = UINT32_MAX;
  return v;
}
/* A map of npairs (key, value) pairs: kv points to 2 * npairs values, key,
 * value, key, value …, that the caller keeps alive as for a list.  Any value
 * may be a key.  The pairs keep their order; keys are not checked for
 * uniqueness (isola_map_find() returns the first match).  Two map values
 * with the same kv pointer and npairs are the same map: sharing and cycles
 * are preserved as for lists. */
static inline isola_value isola_map(const isola_value *kv, size_t npairs) {
  isola_value v;
  v.kind = ISOLA_MAP;
  v.len = (uint32_t)npairs;
  v.as.i = 0;
  v.as.items = kv;
  if (npairs > UINT32_MAX) v.kind = UINT32_MAX;
  return v;
}
static inline isola_value isola_cap(isola_capability c) {
  isola_value v;
  v.kind = ISOLA_CAPABILITY;
  v.len = 0;
  v.as.i = 0;
  v.as.cap = c;
  return v;
}
/* A value that moves the buffer *handle (see "Transferable buffers"). */
static inline isola_value isola_transfer(isola_buffer **handle) {
  isola_value v;
  v.kind = ISOLA_BUFFER;
  v.len = 0;
  v.as.i = 0;
  v.as.handle = handle;
  return v;
}

/* Typed reads.  Each returns ISOLA_OK and stores the content, or
 * ISOLA_ETYPE when v is of another kind (out is then untouched), or
 * ISOLA_EINVAL when out is NULL.  Any thread. */
ISOLA_EXPORT int isola_value_get_bool(isola_value v, bool *out);
ISOLA_EXPORT int isola_value_get_int(isola_value v, int64_t *out);
ISOLA_EXPORT int isola_value_get_double(isola_value v, double *out);
ISOLA_EXPORT int isola_value_get_port(isola_value v, isola_port *out);
ISOLA_EXPORT int isola_value_get_cap(isola_value v, isola_capability *out);
/* *out points to the string's bytes; *len (if len is not NULL) gets its
 * length.  Received strings are NUL-terminated as well. */
ISOLA_EXPORT int isola_value_get_str(isola_value v, const char **out,
                                     size_t *len);
ISOLA_EXPORT int isola_value_get_bytes(isola_value v, const uint8_t **out,
                                       size_t *len);
/* Element index of a list: ISOLA_ETYPE if v is not a list, ISOLA_ERANGE if
 * index >= its length. */
ISOLA_EXPORT int isola_list_get(isola_value v, size_t index, isola_value *out);
/* Pair index of a map: its key in *key and its value in *val (either may be
 * NULL).  ISOLA_ETYPE if v is not a map, ISOLA_ERANGE if index >= its
 * number of pairs. */
ISOLA_EXPORT int isola_map_get(isola_value v, size_t index, isola_value *key,
                               isola_value *val);
/* The value of the first pair whose key is isola_value_equal() to key.
 * ISOLA_ETYPE if v is not a map, ISOLA_ENOKEY if no key matches (*out is
 * then untouched), ISOLA_EINVAL if out is NULL.  Linear in the map's size. */
ISOLA_EXPORT int isola_map_find(isola_value v, isola_value key,
                                isola_value *out);
/* The bytes of a buffer value without taking it: *data and *size (size may
 * be NULL).  ISOLA_ETYPE for another kind, ISOLA_ETRANSFER if its handle is
 * empty (the buffer was taken or transferred). */
ISOLA_EXPORT int isola_value_get_buffer(isola_value v, uint8_t **data,
                                        size_t *size);

/*
 * Reads a whole value by a format, checking its shape: one call instead of
 * a chain of isola_list_get() and isola_value_get_*().  Each format item
 * matches one value and stores it through the next argument(s):
 *
 *   n         null (no argument)
 *   b         a bool          -> bool *
 *   i         an int          -> int64_t *
 *   d         a double        -> double *
 *   s         a string        -> const char ** (received strings are
 *                                NUL-terminated; see isola_value_get_str)
 *   S         a string        -> const char **, size_t * (its length)
 *   y         bytes           -> const uint8_t **, size_t *
 *   p         a port          -> isola_port *
 *   c         a capability    -> isola_capability *
 *   v         any value       -> isola_value * (not checked)
 *   _         any value, skipped (no argument)
 *   [ ... ]   a list of exactly these items; [ ... *] at least these
 *   { k:x ... }  a map: for each key k (letters, digits, _ - .; compared
 *             with a string key by isola_map_find) the item x; other keys
 *             are allowed
 *   ?x        x, or null: then x's outputs are left untouched
 *
 * Spaces and commas between items are ignored.  An output pointer may be
 * NULL (the item is checked, not stored).  Stored pointers point into v,
 * as isola_value_get_str() does.  Example: [true, [lo, n]] is
 *
 *   bool ok; int64_t lo, n;
 *   if (isola_unpack(msg, "[b [i i]]", &ok, &lo, &n) != ISOLA_OK)
 *     isola_throw("bad request: %s", isola_error_detail());
 *
 * Errors: ISOLA_ETYPE (a value has another kind), ISOLA_ERANGE (a list has
 * another length), ISOLA_ENOKEY (a map lacks a key), ISOLA_EINVAL (fmt
 * NULL or malformed).  isola_error_detail() then names the position, e.g.
 * "at value[1][0]: expected an int, got a string (format "[b [i i]]",
 * offset 4)".  Outputs stored before the mismatch keep their values.  Any
 * thread.
 */
ISOLA_EXPORT int isola_unpack(isola_value v, const char *fmt, ...);
ISOLA_EXPORT int isola_vunpack(isola_value v, const char *fmt, va_list ap);

/*
 * Builds a value by a format and copies it into one block the caller owns
 * (*out; release it with isola_value_free()).  Items as for isola_unpack(),
 * each taking its content as the next argument(s), by value:
 *
 *   n  (none)   b  int (0 false)   i  int   l  int64_t   d  double
 *   s  const char * (NUL-terminated UTF-8)  S  const char *, size_t
 *   y  const void *, size_t   p  isola_port   c  isola_capability
 *   v  isola_value (copied; a transferable buffer's bytes are copied)
 *   [ ... ]  a list   { k:x ... }  a map with string keys k
 *
 * Note 'i' takes an int and 'l' an int64_t: pass exactly those types (a
 * variadic argument is not converted).  Example:
 *
 *   isola_value req;
 *   isola_pack(&req, "{op:s, n:l, reply:p}", "sum", (int64_t)n, me);
 *   isola_send(server, req);
 *   isola_value_free(&req);
 *
 * Errors: ISOLA_EINVAL (out or fmt NULL, a malformed format, a NULL 's'
 * argument, an invalid string: see isola_error_detail()), ISOLA_ENOMEM.
 * On error *out is null.  Any thread.
 */
ISOLA_EXPORT int isola_pack(isola_value *out, const char *fmt, ...);
ISOLA_EXPORT int isola_vpack(isola_value *out, const char *fmt, va_list ap);

/* Deep-copies v (sharing and cycles preserved) into one block of memory that
 * the caller owns and releases with isola_value_free().  A transferable
 * buffer in v is copied too, into a new buffer the copy owns (take it with
 * isola_value_take_buffer()); v keeps its own.  Errors: ISOLA_EINVAL (a
 * malformed value: bad kind, invalid UTF-8, out NULL), ISOLA_ETRANSFER (a
 * buffer handle is empty, or one buffer appears twice), ISOLA_ENOMEM.  On
 * error *out is set to null.  Any thread. */
ISOLA_EXPORT int isola_value_copy(isola_value v, isola_value *out);

/* Releases a value made by isola_value_copy() or isola_wire_decode(), with
 * the buffers it still owns, and sets *v to null.  Passing a null value, or
 * NULL, does nothing.  Passing any other value is undefined behaviour.  Any
 * thread. */
ISOLA_EXPORT void isola_value_free(isola_value *v);

/* Structural equality: same kinds, same contents, same shape (shared lists
 * and maps compare by content; a cycle compares equal to the same cycle;
 * maps compare pair by pair, in order; buffers by their bytes, two empty
 * handles being equal).  Comparing lists or maps takes memory for the
 * pairs being compared: when none is left the answer is false.  Any
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
  uint64_t origin;         /* control port of the first isolate of its line:
                              itself when it was spawned from a thread that
                              is not an isolate, by isola_run_main, or as a
                              module's first isolate; else its spawner's
                              origin */
  uint64_t group;          /* id of its group */
  /* In the isolate_shutdown and isolate_cleanup hooks: why it ends (an
   * isola_exit_reason); 0 everywhere else. */
  int exit_reason;
} isola_isolate_info;

/* Embedder hooks.  All optional (NULL to skip).  They run with no runtime
 * lock held and must not block for long: isolate_created, isolate_shutdown
 * and isolate_cleanup on the thread that runs the isolate concerned;
 * group_created on the thread that spawns the group's first isolate, inside
 * that spawn call (before the isolate exists); group_cleanup on the thread
 * that ran the group's last isolate, after it ended.  From the time an
 * isolate starts ending (isolate_shutdown on) nothing new can be opened
 * for it: ports, timers, watches and microtasks fail with ISOLA_EENDING
 * and isola_local_get() creates no value.  Blocking calls (isola_run,
 * native ports) from group_cleanup, or from any hook on a pool thread
 * outside an event, return ISOLA_EBUSY. */
typedef struct isola_hooks {
  void *data; /* passed to every hook */
  /* A group was created (by a spawn from a thread that is not an isolate,
   * by isola_run_main, or for a module by isola_spawn_uri and
   * isola_run_main_uri).  The return value becomes the group's embedder data,
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
  /* An uncaught error (isola_throw, a failed isola_assert) in an isolate
   * that has no error listener goes here, on the failing isolate's thread,
   * with no runtime lock held.  message and stack are valid during the
   * call.  NULL: one line on stderr naming the isolate (the only output the
   * library ever prints). */
  void (*unhandled_error)(void *data, const isola_isolate_info *info,
                          const char *message, const char *stack);
  void *unhandled_error_data; /* passed to unhandled_error */
  /* Turns the stack of an uncaught error (frames[0] the innermost of n
   * return addresses) into the text that error listeners, exit notices and
   * unhandled_error get: a malloc'ed NUL-terminated string the runtime
   * frees, or NULL for the default.  Called on the failing isolate's
   * thread.  NULL, or when it returns NULL: backtrace_symbols(), one line
   * a frame (module, exported symbol or offset, raw address).
   * isola_symbolize() (include/isola_symbolize.h, libisola_symbolize on
   * libdw) gives function names and file:line where debug info exists. */
  char *(*stack_symbolizer)(void *const *frames, int n);
  /* For debuggers: every isolate starts paused under its pause capability
   * (its entry waits for isola_resume()), and / or pauses before it ends
   * normally or by an error (not when killed) until resumed. */
  bool pause_on_start;
  bool pause_on_exit;
  /* The isolate heap limit of every isolate that does not name its own
   * (isola_alloc()), in bytes.  0: no limit. */
  size_t heap_limit;
  /* Count per-isolate figures for isola_vm_snapshot(): queue lengths,
   * messages handled, errors, time running, the worker of the last turn
   * (docs/observability.md).  Makes each isolate a 384-byte block instead
   * of 192 (its counters follow it), costs each turn two clock reads, and
   * each send two atomic adds on the receiver's counter line.  false: snapshots still list every isolate
   * and worker and the VM's totals, which are always counted. */
  bool isolate_stats;
  /* Record scheduling and message events (docs/observability.md, "Trace
   * export") and write them as Chrome trace-event JSON, which Perfetto
   * and chrome://tracing open, to this file at isola_vm_shutdown() (and
   * on demand, isola_trace_write()).  Per thread: the turns of each
   * isolate, spawns, sends with flow arrows to the turn that handles
   * them, pauses and ends with their reason.  NULL: nothing is recorded
   * (each of those points then costs one test of a flag). */
  const char *trace_events_path;
  /* Events each thread keeps at most (64 bytes each); later ones are
   * counted and dropped.  0: 65 536. */
  size_t trace_events_per_thread;
} isola_config;

/* Fills *config with the defaults (every field 0 or NULL). */
ISOLA_EXPORT void isola_config_init(isola_config *config);

/* Starts the VM: the worker threads and the port map.  config may be NULL
 * for the defaults; it is copied.  One VM per process at a time.
 * After fork(), the child of a process whose VM is running (or shutting
 * down) must not use that VM (its threads did not survive the fork): it
 * may exec, _exit, or use the calls that need no VM (values, the wire
 * format, isola_capability_new(), which re-seeds in the child so that it
 * never repeats the parent's capabilities), nor start a VM of its own.
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
   * unset) is sent to this port; with exit_notice, an exit notice
   * [reason, isolate, detail, on_exit_message] instead (see "Exit
   * notices").  ISOLA_PORT_NONE: nobody is told. */
  isola_port on_exit;
  isola_value on_exit_message; /* copied at spawn */
  /* Uncaught errors are sent to this port as [message, stack trace] (two
   * strings); with error_notice, as an error notice [message, stack trace,
   * isolate] naming the isolate.  The first error listener.
   * ISOLA_PORT_NONE: none. */
  isola_port on_error;
  /* Start paused under the isolate's pause capability: the entry runs
   * after isola_resume(handle, handle.pause_capability). */
  bool paused;
  /* false (the default): an uncaught error ends the isolate (Dart's
   * errorsAreFatal: true).  true: it carries on with its next event. */
  bool errors_nonfatal;
  /* This isolate's heap limit in bytes (isola_alloc()).  0: the VM's
   * (isola_config.heap_limit); SIZE_MAX: no limit. */
  size_t heap_limit;
  /* true: on_exit gets an exit notice [reason, isolate, detail,
   * on_exit_message] (isola_exit_reason) rather than on_exit_message
   * alone.  false (the default): the plain message, as in Dart. */
  bool exit_notice;
  /* true: on_error gets error notices [message, stack trace, isolate]
   * (isola_add_error_notice_listener()) rather than [message, stack
   * trace]. */
  bool error_notice;
  /* A bound on the isolate's queued normal messages: a count and bytes
   * (message bytes as isola_send counts them); 0: that dimension is not
   * bounded; both 0 (the default): no bound, as in Dart.  See
   * isola_set_mailbox_bound() for what a bound does. */
  size_t mailbox_bound;
  size_t mailbox_bound_bytes;
} isola_spawn_options;

/*
 * Starts a new isolate that runs entry(message) as its first event.  From an
 * isolate, the new isolate joins the caller's group; from any other thread
 * it starts a new group.  message is copied before the call returns.
 * opts may be NULL.  *out (may be NULL) receives the handle.
 * The isolate lives while it has live ports: if it has none when entry
 * returns, it ends.
 * Errors: ISOLA_EINVAL (entry NULL, a malformed message), ISOLA_ENOMEM,
 * ISOLA_ELIMIT, ISOLA_ENOVM, ISOLA_ESHUTDOWN, ISOLA_ESYS (the OS random
 * source failed, so no capabilities could be made for the isolate).
 * Nothing is started on error.
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

/* A root isolate's entry with the caller's context (isola_run_main_ctx). */
typedef void (*isola_main_entry)(void *ctx, isola_value message);

/*
 * As isola_run_main(): entry(ctx, message) runs as the root isolate on the
 * calling thread, which handles its messages until it has no live ports.
 * ctx is the caller's, handed through untouched (settings in, results out:
 * no globals needed); message is copied.  opts (may be NULL) are those of
 * isola_spawn(): name (NULL: "main"), heap_limit, on_exit, on_error,
 * errors_nonfatal; paused makes the entry wait for isola_resume() from
 * another thread.  Errors: those of isola_run_main().  Any thread that is
 * not an isolate.
 */
ISOLA_EXPORT int isola_run_main_ctx(isola_main_entry entry, void *ctx,
                                    isola_value message,
                                    const isola_spawn_options *opts);

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
 * thread; the figure may be stale by the time it is read.  While a handler
 * that spawns is running it may count up to 7 isolates ahead (spawns take
 * their counts in batches, docs/design.md); it is exact between events. */
ISOLA_EXPORT size_t isola_live_isolates(void);

/* ------------------------------------------------------------------------ */
/* Snapshots: what every isolate and worker is doing (docs/observability.md) */
/* ------------------------------------------------------------------------ */

/* How many isola_exit_reason values there are (ISOLA_EXIT_NORMAL ..
 * ISOLA_EXIT_NODE_LOST, "Exit notices" below): the VM's totals count ended
 * isolates by reason. */
#define ISOLA_EXIT_REASONS 6

/* Why a message that was sent was never handled. */
typedef enum isola_drop_reason {
  ISOLA_DROP_CLOSED = 0, /* its port closed after it was queued */
  ISOLA_DROP_HEAP,       /* it did not fit under its receiver's heap limit */
  ISOLA_DROP_ENDED,      /* its receiver ended with it still queued */
  ISOLA_DROP_REASONS
} isola_drop_reason;

/* What an isolate is doing when the snapshot looks at it. */
typedef enum isola_isolate_state {
  ISOLA_STATE_STARTING = 0, /* spawned, entry not run yet */
  ISOLA_STATE_RUNNING,      /* in a turn on some thread right now */
  ISOLA_STATE_READY,        /* has work, waits in a run queue */
  ISOLA_STATE_IDLE,         /* waiting for a message */
  ISOLA_STATE_PAUSED,       /* paused (pauses says by how many) */
  ISOLA_STATE_ENDING,       /* ending: ports being closed, hooks running */
  ISOLA_STATE_UNKNOWN       /* counters are off (config.isolate_stats) */
} isola_isolate_state;

/* One isolate.  Fields marked (stats) are counted only when the VM runs
 * with config.isolate_stats; otherwise they are 0 and state is
 * ISOLA_STATE_UNKNOWN.  Queue and heap figures are as of the end of the
 * isolate's last turn (queues: as of now); times are CLOCK_MONOTONIC
 * nanoseconds (isola_snapshot.now_ns is the snapshot's own). */
typedef struct isola_isolate_snapshot {
  isola_port id;        /* its control port */
  uint64_t origin;      /* control port of the isolate it descends from */
  uint64_t group;       /* its group's id */
  char name[64];        /* its debug name, NUL-terminated */
  uint32_t live_ports;  /* open ports, timers and watches that keep it alive */
  /* Its bound (docs/security.md): bytes others may still make it hold
   * before a send to it fails with ISOLA_EFULL; -1: unbounded (no heap
   * limit).  Counted always. */
  int64_t room;
  uint32_t state;       /* an isola_isolate_state (stats) */
  uint32_t pauses;      /* pause capabilities holding it (stats) */
  uint32_t timers;      /* its live timers (stats) */
  uint32_t watches;     /* its fd watches (stats) */
  int32_t worker;       /* the worker that ran its last turn; -1: a root
                           isolate's own thread, or never ran (stats) */
  uint64_t queued;      /* normal messages waiting (stats) */
  uint64_t queued_bytes;     /* their bytes (stats) */
  uint64_t oob_queued;       /* control requests waiting (stats) */
  uint64_t oob_queued_bytes; /* their bytes (stats) */
  uint64_t heap_used;   /* isolate-heap bytes in use (stats) */
  uint64_t heap_peak;   /* the most heap_used has been (stats) */
  uint64_t heap_limit;  /* its limit; 0: none (stats) */
  uint64_t handled;     /* messages passed to its handlers, timer ticks
                           and fd events run (stats) */
  uint64_t errors;      /* uncaught errors raised in it (stats) */
  uint64_t run_ns;      /* time spent in its turns (stats) */
  uint64_t last_run_ns; /* when its last turn began; 0: never (stats) */
  uint64_t running_since_ns; /* when the turn it is in began; 0: not in
                                one (stats) */
  /* Only with ISOLA_SNAPSHOT_CAPABILITIES: a full handle (pause, kill). */
  isola_capability pause_capability;
  isola_capability terminate_capability;
} isola_isolate_snapshot;

/* What a worker (the right to run isolates, scheduler) is doing. */
typedef enum isola_worker_state {
  ISOLA_WORKER_IDLE = 0,  /* no thread holds it: its thread parked */
  ISOLA_WORKER_SEARCHING, /* a thread holds it, looking for work */
  ISOLA_WORKER_RUNNING    /* a thread holds it and runs an isolate */
} isola_worker_state;

typedef struct isola_worker_snapshot {
  uint32_t id;
  uint32_t state;       /* an isola_worker_state */
  isola_port current;   /* the isolate it runs; 0: none (RUNNING needs
                           config.isolate_stats to name it) */
  uint64_t current_since_ns; /* when that turn began (isolate_stats) */
  uint32_t runq;        /* isolates waiting in its own run queue */
  uint32_t runnext;     /* 1 when an isolate waits in its runnext slot */
  uint64_t turns;       /* isolate turns run on it */
  uint64_t steals;      /* isolates taken from another worker's queue */
  uint64_t parks;       /* times it went idle (its thread parked) */
  uint64_t wakes;       /* times a thread was woken or started for it */
} isola_worker_snapshot;

/* Totals since the VM started. */
typedef struct isola_vm_totals {
  uint64_t live;        /* isola_live_isolates() */
  uint64_t spawned;     /* isolates spawned, root isolates included */
  uint64_t ended[ISOLA_EXIT_REASONS]; /* by isola_exit_reason */
  uint64_t sent;        /* messages queued by isola_send() and the
                           runtime's own notices (exit, error, ping) */
  uint64_t sent_bytes;  /* their bytes (header and copied value) */
  uint64_t refused;     /* sends that failed at the port: closed, not a
                           port of the kind, or no room (ISOLA_EFULL) */
  uint64_t dropped[ISOLA_DROP_REASONS]; /* by isola_drop_reason */
  uint64_t global_queue; /* isolates waiting in the global run queue */
} isola_vm_totals;

/* A snapshot: one block the caller owns and frees with
 * isola_snapshot_free(); isolates and workers point into it. */
typedef struct isola_snapshot {
  uint64_t now_ns;       /* CLOCK_MONOTONIC when it was taken */
  bool isolate_stats;    /* config.isolate_stats: the (stats) fields count */
  bool shutting_down;    /* taken while isola_vm_shutdown() runs */
  isola_vm_totals vm;
  size_t nworkers;
  isola_worker_snapshot *workers;
  size_t nisolates;
  isola_isolate_snapshot *isolates; /* in no particular order */
} isola_snapshot;

/* isola_vm_snapshot() flags. */
#define ISOLA_SNAPSHOT_CAPABILITIES 0x1u /* fill in the capabilities */

/*
 * Takes a snapshot of the running VM: every live isolate, every worker and
 * the VM's totals.  Nothing is stopped: each figure is read on its own
 * (relaxed) while the VM runs, so figures of one isolate may be a turn
 * apart, and an isolate spawned or ended meanwhile may be in it or not.
 * Costs a walk of the port map and one allocation.  Counters belong to
 * their owners (docs/observability.md): the send path writes only lines
 * it writes anyway, or, with config.isolate_stats, also the receiver's
 * counter line.  Also works while isola_vm_shutdown() waits or after it
 * timed out (shutting_down is then true), to name stuck isolates.
 * With ISOLA_SNAPSHOT_CAPABILITIES in flags each isolate comes with its
 * capabilities, a full handle: for trusted in-process code only (an
 * observer that may pause and kill).  *out receives the snapshot, which
 * the caller frees with isola_snapshot_free().
 * Errors: ISOLA_EINVAL (out NULL, unknown flags), ISOLA_ENOVM,
 * ISOLA_ENOMEM.  Any thread, isolates included.
 */
ISOLA_EXPORT int isola_vm_snapshot(unsigned flags, isola_snapshot **out);

/* Frees a snapshot (NULL: nothing).  Any thread. */
ISOLA_EXPORT void isola_snapshot_free(isola_snapshot *snapshot);

/* Writes the trace events recorded so far (config.trace_events_path set)
 * as Chrome trace-event JSON to path (NULL: config.trace_events_path),
 * replacing the file; recording goes on.  Errors: ISOLA_ENOVM,
 * ISOLA_EINVAL (the VM records no events), ISOLA_ESYS (the file could not
 * be written), ISOLA_ENOMEM.  Any thread that is not an isolate. */
ISOLA_EXPORT int isola_trace_write(const char *path);

/* Names of the drop reasons and states above ("heap", "paused" ...), for
 * reports (isola_exit_reason_name() names exit reasons); "?" for an
 * unknown value.  Any thread; static strings. */
ISOLA_EXPORT const char *isola_drop_reason_name(int reason);
ISOLA_EXPORT const char *isola_isolate_state_name(int state);
ISOLA_EXPORT const char *isola_worker_state_name(int state);

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
 * ISOLA_ENOTISOLATE, ISOLA_EENDING (the isolate is ending: called from an
 * isolate_shutdown or isolate_cleanup hook or an isolate-local destructor).
 * Isolate only. */
ISOLA_EXPORT int isola_port_open(isola_handler handler, void *ctx,
                                 isola_port *out);

/* Closes a port of the running isolate.  Messages still queued for it are
 * dropped; later sends to it fail with ISOLA_ECLOSED.  When the last live
 * port closes, the isolate ends after the current event.  Errors:
 * ISOLA_ECLOSED (already closed or unknown), ISOLA_ENOTOWNER,
 * ISOLA_EINVAL (the isolate's own control port, which closes only when
 * the isolate ends), ISOLA_ENOTISOLATE.  Isolate only. */
ISOLA_EXPORT int isola_port_close(isola_port port);

/* Whether an open port keeps its isolate alive (true when opened; Dart's
 * RawReceivePort.keepIsolateAlive).  An isolate whose open ports all have
 * keep_alive false ends.  Errors as isola_port_close().  Isolate only. */
ISOLA_EXPORT int isola_port_keep_alive(isola_port port, bool keep_alive);

/*
 * Sends a copy of value to port.  The copy is made before the call returns,
 * so the caller may change or free what value points to right after.
 * Messages from one sender to one isolate arrive in the order they were
 * sent, across all of that isolate's ports.  Transferable buffers in value
 * (isola_transfer()) are moved, not copied, and their handles set to NULL
 * once the send has succeeded.
 * From a handler, sends in a row to one isolate are queued together: they
 * reach its queue no later than when the sending event ends (however it
 * ends), calls isola_check_interrupts() or isola_blocking_begin(), sends
 * to another isolate, spawns (isola_spawn, isola_spawn_uri,
 * isola_run_async), sends a control request (pause, kill, ping, listeners)
 * or registers a name (sends inside a blocking section go at once).  So
 * causality holds through the runtime: if the send of m1 to an isolate
 * happens before anything the runtime carries (a message, a spawn, a
 * control request, a name, the end of the event) that leads to m2 being
 * sent to the same isolate, m1 is handled first.  Causality through memory
 * the handler shares by other means (an atomic, a lock) is not covered
 * until the event ends: call isola_check_interrupts() first.  A handler
 * that waits for what it sent must do so inside isola_blocking_begin/end.
 * Errors: ISOLA_ECLOSED (the port is closed, unknown or a control port:
 * every id that names no open port taking messages answers alike, so the
 * answer tells a guesser nothing; the message is dropped), ISOLA_EFULL
 * (the receiver has a heap limit and its room, see the isolate heap at
 * isola_alloc(), cannot take the message now: a message over 2 KiB is refused before it is
 * built), ISOLA_EINVAL (port NONE, a malformed value), ISOLA_ETRANSFER
 * (an empty buffer handle, or one buffer twice), ISOLA_ENOMEM,
 * ISOLA_ENOVM, ISOLA_ESHUTDOWN.  Nothing is sent on error, and no handle
 * is emptied.  A receiver's mailbox bound never makes isola_send fail: a
 * full receiver mutes a sending isolate after its event, and takes a plain
 * thread's message at once (see "Backpressure" below).  Any thread.
 */
ISOLA_EXPORT int isola_send(isola_port port, isola_value value);

/* As isola_send(), and the receiving handler gets reply_to as its reply_to
 * argument. */
ISOLA_EXPORT int isola_send_reply(isola_port port, isola_value value,
                                  isola_port reply_to);

/*
 * Backpressure: a mailbox bound (isola_spawn_options.mailbox_bound and
 * mailbox_bound_bytes, isola_set_mailbox_bound()) caps the normal messages
 * an isolate holds queued.  The receiver is FULL while its queued messages
 * (or bytes) are at or over the bound, and at its LOW-WATER MARK when they
 * are at or below half the bound (every bounded dimension).  Control
 * requests (pause, resume, kill, ping, listeners), timer and fd events,
 * and exit and error messages the runtime sends are never counted or held
 * back.  What a send to a full receiver does depends on who sends:
 *   - an isolate (any isola_send/_reply, and isola_send_wait, from a
 *     handler, a root isolate included): the message is queued (never
 *     dropped, nobody blocks) and the sender is MUTED: its current event
 *     runs to its end, then it handles no normal message until every
 *     receiver that muted it drained to its low-water mark (or ended).
 *     A muted isolate still handles its control requests at once, as a
 *     paused one does: kill (either priority) ends it, pings are answered
 *     (ISOLA_BEFORE_NEXT_EVENT ones too: muting holds its next event),
 *     pause and resume are kept; a paused muted isolate resumes only once
 *     both are over.  An isolate whose own queue is full is never muted,
 *     and a muted one whose queue becomes full runs again: so isolates that
 *     flood each other in a cycle cannot all wait on each other (the last
 *     one muted was muted by a receiver that has not run since and so is
 *     still full).  A send to itself never mutes;
 *   - a plain thread, with isola_send or isola_send_reply: the message is
 *     queued and the call returns at once (a plain thread is not held
 *     back: use isola_send_wait or isola_try_send to be);
 *   - isola_try_send, from any thread: refused with ISOLA_EFULL;
 *   - isola_send_wait from a plain thread: waits (see there).
 * A sender's event may send many messages to a full receiver before it
 * ends: the bound is where senders are stopped, not a hard cap.  The heap
 * limit (isola_alloc()) is a hard cap on queued bytes: a send past it
 * fails with ISOLA_EFULL whatever the bound.
 */

/* As isola_send(), but a full bounded receiver refuses the message with
 * ISOLA_EFULL (nothing is sent, no handle emptied) and the caller is
 * never muted.  Other errors as isola_send().  Any thread. */
ISOLA_EXPORT int isola_try_send(isola_port port, isola_value value);

/* As isola_send(), but from a plain thread (not an isolate) a full bounded
 * receiver makes the call wait, up to timeout_ms milliseconds (0: not at
 * all; ISOLA_FOREVER: no limit), until the receiver drains to its
 * low-water mark, then sends.  Errors as
 * isola_send(), and ISOLA_ETIMEDOUT (still full when the time ran out:
 * nothing is sent), ISOLA_ECLOSED (the receiver ended while we waited).
 * The message is copied before the wait.  From an isolate it never waits:
 * it is isola_send() (the sender is muted instead).  Any thread. */
ISOLA_EXPORT int isola_send_wait(isola_port port, isola_value value,
                                 uint64_t timeout_ms);

/* Sets the calling isolate's mailbox bound at run time: at most messages
 * normal messages and bytes bytes queued (0: that dimension unbounded;
 * both 0: no bound).  Messages already queued stay.  Senders muted by it,
 * and waiting threads, are released at once if the new bound leaves the
 * queue at or below its low-water mark (always, when the bound is
 * removed).  Errors: ISOLA_ENOTISOLATE, ISOLA_ENOMEM.  Isolate only. */
ISOLA_EXPORT int isola_set_mailbox_bound(size_t messages, size_t bytes);

/* ------------------------------------------------------------------------ */
/* Calls and receivers (request and response, docs/calls.md)                 */
/* ------------------------------------------------------------------------ */

/* A timeout meaning "never". */
#define ISOLA_FOREVER UINT64_MAX

/*
 * As isola_spawn(), with a receive port the new isolate owns before the
 * call returns: *port receives it and can be sent to at once, no "send me
 * your port" handshake needed.  Messages sent to it wait behind the entry
 * (they are handled after entry returns, or after the resume of a paused
 * isolate).  The port runs handler(ctx, ...) in the new isolate, as if the
 * isolate had opened it with isola_port_open() (it keeps the isolate
 * alive; the isolate may close it).  entry may be NULL: then the isolate
 * only serves the port.  ctx is the caller's, used in the child's thread:
 * pass memory the child may use (the child's own state can live in
 * isolate-locals, ISOLA_LOCAL).  Errors: those of isola_spawn(), and
 * ISOLA_EINVAL for handler or port NULL.  On error *port is
 * ISOLA_PORT_NONE and nothing is started.  Any thread.
 */
ISOLA_EXPORT int isola_spawn_port(isola_entry entry, isola_value message,
                                  isola_handler handler, void *ctx,
                                  const isola_spawn_options *opts,
                                  isola_isolate *out, isola_port *port);

/* Told once how an isola_call() ended: status ISOLA_OK with the reply
 * (valid until the callback returns; keep it with isola_value_copy()), or
 * ISOLA_ETIMEDOUT with null.  It runs as an event of the calling isolate. */
typedef void (*isola_call_fn)(void *ctx, int status, isola_value reply);

/*
 * An asynchronous call from an isolate: sends request to port with a new
 * reply port of the caller's as reply_to (a server replies with
 * isola_send(reply_to, ...) from its handler), and later runs
 * done(ctx, ...) exactly once: with the first reply, or with
 * ISOLA_ETIMEDOUT when timeout_ms passes first (ISOLA_FOREVER: no
 * timeout).  Whichever comes first closes the reply port, so a later reply
 * is dropped (its sender gets ISOLA_ECLOSED, or it is freed unread if
 * already queued).  A pending call keeps the isolate alive, as an open
 * port does; if the isolate ends first (killed, an error, isola_exit) the
 * call is dropped and done never runs.  ctx is the caller's.  If the
 * callee dies without replying, only the timeout tells.
 * Errors (done will not run): ISOLA_EINVAL (done NULL, port NONE,
 * timeout_ms 0, a malformed request), ISOLA_ENOTISOLATE, ISOLA_ENOMEM, and
 * those of isola_send() and isola_timer_start().  Isolate only.
 */
ISOLA_EXPORT int isola_call(isola_port port, isola_value request,
                            uint64_t timeout_ms, isola_call_fn done,
                            void *ctx);

/*
 * The blocking call for a plain thread: sends request to port with a reply
 * port made for this call as reply_to, and waits up to timeout_ms
 * (ISOLA_FOREVER: no limit) for the first reply.  On ISOLA_OK *reply is a
 * copy the caller owns (isola_value_free()).  A reply that comes after the
 * timeout is dropped: the port is closed by then.  Each call makes and
 * ends a receiver (an isolate), a few microseconds; a thread that makes
 * many calls in a row may keep a receiver of its own and use
 * isola_send_reply() and isola_receiver_wait().  Errors: ISOLA_ETIMEDOUT,
 * ISOLA_ESHUTDOWN (the VM shut down while waiting), ISOLA_EINVAL (reply
 * NULL, port NONE, a malformed request), ISOLA_EBUSY (called from an
 * isolate: use isola_call()), and those of isola_send() and
 * isola_receiver_new(); *reply is null on error.  Any thread that is not
 * an isolate.
 */
ISOLA_EXPORT int isola_call_wait(isola_port port, isola_value request,
                                 uint64_t timeout_ms, isola_value *reply);

/* A receive port owned by a plain thread, which waits on it. */
typedef struct isola_receiver isola_receiver;

/*
 * Opens a receiver: a port (isola_receiver_port()) whose messages queue
 * until a thread takes them with isola_receiver_wait().  It is served by a
 * hidden isolate named name (NULL: "receiver"), which the VM's hooks see;
 * each message is copied once more into the receiver's queue.  *out (the
 * caller's until isola_receiver_close()) receives it.  Errors:
 * ISOLA_EINVAL (out NULL), ISOLA_EBUSY (called from an isolate, which
 * receives through port handlers), ISOLA_ENOMEM, and those of
 * isola_spawn().  Any thread that is not an isolate.
 */
ISOLA_EXPORT int isola_receiver_new(const char *name, isola_receiver **out);

/* The receiver's port (ISOLA_PORT_NONE for NULL).  Any thread. */
ISOLA_EXPORT isola_port isola_receiver_port(const isola_receiver *r);

/*
 * Takes the oldest message of the receiver, waiting up to timeout_ms for
 * one (0: do not wait; ISOLA_FOREVER: no limit).  On ISOLA_OK *message is
 * a copy the caller owns (isola_value_free()) and *reply_to (reply_to may
 * be NULL) the sender's reply_to.  Several threads may wait on one
 * receiver; each message goes to one of them.  Errors: ISOLA_ETIMEDOUT,
 * ISOLA_ESHUTDOWN (the VM shut down: the port is closed and every message
 * was taken; close the receiver), ISOLA_EINVAL (r or message NULL),
 * ISOLA_EBUSY (called from an isolate).  Any thread that is not an
 * isolate.
 */
ISOLA_EXPORT int isola_receiver_wait(isola_receiver *r, uint64_t timeout_ms,
                                     isola_value *message,
                                     isola_port *reply_to);

/* Closes the receiver: messages not taken are freed, its port closes and
 * r is freed.  From a plain thread it returns once the port is closed, so
 * later sends fail with ISOLA_ECLOSED; from an isolate it does not wait
 * (a message sent meanwhile is dropped).  Call it once no thread waits on
 * r; it also works after the VM has shut down.  NULL does nothing.  Any
 * thread. */
ISOLA_EXPORT void isola_receiver_close(isola_receiver *r);

/* ------------------------------------------------------------------------ */
/* Worker pools (docs/calls.md)                                              */
/* ------------------------------------------------------------------------ */

/*
 * A worker pool: a fixed number of worker isolates that serve jobs, one
 * job at a time each, for the isolate that started it (its owner).  A job
 * is a call (isola_pool_call()): it goes to an idle worker, or waits in
 * the pool's FIFO queue until one is free, and its answer comes back to
 * the owner as isola_call()'s does.  Each worker serves a port with the
 * pool's handler, as an isolate made by isola_spawn_port() does:
 * handler(ctx, port, job, reply_to) answers with isola_send(reply_to,
 * answer), in that event or a later one; the worker is busy, and takes no
 * other job, until its first answer (later ones are dropped).  A worker's
 * own state can live in isolate-locals (ISOLA_LOCAL).
 *
 * A worker that ends before answering (an uncaught error, its heap limit,
 * a kill, or its handler closing its port; a worker whose port is found
 * closed while it lives on is killed) fails its job with
 * ISOLA_EFAILED (see isola_pool_call()) and is replaced by a new worker:
 * at once when it died serving a job or jobs wait, otherwise at the next
 * isola_pool_call() (so workers that end with nothing to do make no storm
 * of respawns); isola_pool_stats_get() counts the respawns.  Should a
 * spawn fail, the pool goes on with fewer workers and tries again at the
 * next isola_pool_call(); with none left, its queued jobs fail with the
 * spawn's error.
 *
 * The pool belongs to its owner: its state lives in the owner's isolate
 * heap (isola_alloc(): the owner's heap limit covers the pool and its
 * queued jobs), its callbacks run as events of the owner, and its calls
 * are the owner's only.  A pool does not keep its owner alive by itself:
 * its pending jobs do, as pending isola_call()s do.  If the owner ends
 * (by itself, killed, an error) the pool ends with it: its workers are
 * killed (ISOLA_IMMEDIATE), its pending jobs are dropped (their callbacks
 * never run) and everything is freed.
 */
typedef struct isola_pool isola_pool;

typedef struct isola_pool_options {
  const char *name;  /* each worker's debug name (copied, at most 63 bytes
                        kept); NULL: "pool" */
  size_t workers;    /* worker isolates, at most 1024; 0: one per core */
  size_t max_queued; /* jobs that may wait for a worker; a call past it
                        fails with ISOLA_EFULL.  0: no bound (but the
                        owner's heap limit) */
  size_t heap_limit; /* each worker's, as isola_spawn_options.heap_limit */
} isola_pool_options;

/*
 * Starts a pool in the calling isolate: spawns opts->workers workers (opts
 * may be NULL: the defaults above), each serving a port with
 * handler(ctx, ...).  ctx is the caller's, used in the workers' threads
 * (as with isola_spawn_port()): pass memory they may share, or NULL.  *out
 * receives the pool, the caller's until isola_pool_stop() or the caller's
 * end.  Errors: ISOLA_EINVAL (handler or out NULL, more than 1024
 * workers), ISOLA_ENOTISOLATE, ISOLA_EENDING, ISOLA_ENOMEM (also: the
 * owner's heap limit has no room for the pool), and those of
 * isola_spawn() (nothing is left running then).  Isolate only.
 */
ISOLA_EXPORT int isola_pool_start(isola_handler handler, void *ctx,
                                  const isola_pool_options *opts,
                                  isola_pool **out);

/*
 * Gives the pool a job: request is copied at once into the owner's heap
 * (a transferable buffer in it is copied too, and the caller keeps its
 * own), then sent to an idle worker, or queued, in call order, until a
 * worker is free.  done(ctx, status, reply) then runs exactly once, as an
 * event of the owner:
 *   ISOLA_OK         the worker's answer in reply (valid until done
 *                    returns; keep it with isola_value_copy());
 *   ISOLA_ETIMEDOUT  timeout_ms (ISOLA_FOREVER: none) passed first,
 *                    counted from this call, queued or not; reply null.
 *                    A worker that has the job stays busy until it
 *                    answers (the answer is dropped) or ends;
 *   ISOLA_EFAILED    the worker ended before answering; reply is the
 *                    int isola_exit_reason (-1 in the rare case the
 *                    runtime ran out of memory building the exit notice),
 *                    and isola_error_detail() says which worker and why
 *                    (with an error's message);
 *   ISOLA_ECLOSED    isola_pool_stop() came before a worker took the job
 *                    (done runs inside isola_pool_stop()); reply null;
 *   another code     the queued job could not be sent when a worker came
 *                    free (that of isola_send(), e.g. ISOLA_EFULL: no
 *                    room under the worker's heap limit), or no worker
 *                    was left to take it (that of isola_spawn()); reply
 *                    null; isola_error_detail() says which.
 * Errors (done will not run): ISOLA_EINVAL (pool or done NULL, timeout_ms
 * 0, a malformed request: isola_error_detail() says which item),
 * ISOLA_ETRANSFER, ISOLA_EFULL (max_queued jobs wait already),
 * ISOLA_ECLOSED (the pool is stopping), ISOLA_ENOTOWNER (called from
 * another isolate), ISOLA_ENOTISOLATE, ISOLA_EENDING, ISOLA_ENOMEM (also:
 * the copy does not fit under the owner's heap limit), those of
 * isola_send() when the job goes to a worker at once, and those of
 * isola_spawn() when the pool has no worker left and none can be
 * started.  Isolate only, the owner.
 */
ISOLA_EXPORT int isola_pool_call(isola_pool *pool, isola_value request,
                                 uint64_t timeout_ms, isola_call_fn done,
                                 void *ctx);

/*
 * Stops the pool: no new job is taken (isola_pool_call() fails with
 * ISOLA_ECLOSED); every queued job's done runs, before this returns, with
 * ISOLA_ECLOSED; idle workers are told to end (isola_kill(), at
 * ISOLA_BEFORE_NEXT_EVENT), and a busy worker once it has answered (or
 * its job timed out).  The jobs being served complete as usual.  Returns
 * at once; the pool is freed once every worker has ended.  After this call
 * the pool may be used only inside the callbacks of its jobs.  Calling it
 * again (from such a callback) does nothing.  Errors: ISOLA_EINVAL (pool
 * NULL), ISOLA_ENOTOWNER, ISOLA_ENOTISOLATE.  Isolate only, the owner.
 */
ISOLA_EXPORT int isola_pool_stop(isola_pool *pool);

/* A pool's figures (isola_pool_stats()). */
typedef struct isola_pool_stats {
  size_t workers;    /* workers running now */
  size_t busy;       /* of those, serving a job */
  size_t queued;     /* jobs waiting for a worker */
  uint64_t respawns; /* workers started in place of ones that ended */
} isola_pool_stats;

/* Fills *out with the pool's figures.  Errors: ISOLA_EINVAL (pool or out
 * NULL), ISOLA_ENOTOWNER, ISOLA_ENOTISOLATE.  Isolate only, the owner. */
ISOLA_EXPORT int isola_pool_stats_get(const isola_pool *pool,
                                      isola_pool_stats *out);

/* ------------------------------------------------------------------------ */
/* Blocking inside a handler                                                 */
/* ------------------------------------------------------------------------ */

/* A handler about to block (a read, a lock, a long computation in C) calls
 * isola_blocking_begin() first: the worker hands its run queue to another
 * thread so other isolates keep running, and isola_blocking_end() after.
 * This matters for the isolates the handler has just sent messages to:
 * the last one readied runs next on this worker, after the handler's event
 * ends (that is what keeps two talking isolates on one core), so a handler
 * that goes on for long without isola_blocking_begin() holds it back until
 * another thread notices the worker stuck in one turn and takes it (about
 * a millisecond; at once from isola_check_interrupts()).  It
 * also hands over the messages the event sent and still holds (see
 * isola_send()), and sends until isola_blocking_end() go out at once.
 * Calls nest.  Errors: ISOLA_ENOTISOLATE; isola_blocking_end() without a
 * begin gives ISOLA_EINVAL; isola_blocking_begin() gives ISOLA_ESYS when
 * no stand-in thread could be started (the section has begun all the
 * same: call isola_blocking_end(); the worker's queue waits until another
 * thread takes it, about a millisecond, instead of running at once).
 * Isolate only.
 *
 * When not to use it: for computing, when the pool is busy anyway (a pool
 * of CPU-bound workers, a parallel job split into as many isolates as
 * cores).  Each blocking section hands its worker to another thread
 * (started, or woken, for it), so N handlers computing inside blocking
 * sections put N threads more than there are workers on the cores: they
 * only share the cores, with more switching and cold caches, and finish no
 * sooner.  Use it for waits that leave the core idle (I/O, a lock, a
 * sleep); split long computations into events (or isola_run() per chunk)
 * and call isola_check_interrupts() in long loops instead. */
ISOLA_EXPORT int isola_blocking_begin(void);
ISOLA_EXPORT int isola_blocking_end(void);

/* ------------------------------------------------------------------------ */
/* The name server                                                           */
/* ------------------------------------------------------------------------ */

/*
 * A VM-wide table from names to send ports (Dart's IsolateNameServer), so
 * isolates that were never handed each other's ports can still meet: one
 * registers a port under a well-known name, others look it up and send.
 *
 * A name is a non-empty NUL-terminated string of at most ISOLA_NAME_MAX
 * bytes (not counting the NUL), compared byte for byte; the table keeps its
 * own copy.  A name maps to at most one port; a port may have several
 * names.  Unlike Dart, where a mapping stays until it is removed, a name
 * lives only as long as its port: when the port closes (or its isolate
 * ends) the name is removed with it, as Erlang's register does, so a lookup
 * never returns a port that was already closed when the lookup began.  The
 * table is emptied when the VM shuts down.
 *
 * Every function here may be called from any thread, isolate or not, while
 * the VM is running.  Each returns ISOLA_ENOVM when no VM runs and
 * ISOLA_ESHUTDOWN once isola_vm_shutdown() has begun.
 */
#define ISOLA_NAME_MAX 255

/* Registers port under name.  The name must be free: a taken name is never
 * overwritten.  The caller owns the name: the isolate calling, or, from a
 * thread that runs no isolate, the threads outside every isolate as one
 * owner.  Only the owner may remove it (isola_name_remove()), so nobody
 * else can take a name over by removing and registering it again.
 * Errors: ISOLA_EINVAL (name NULL, empty or longer than ISOLA_NAME_MAX;
 * port ISOLA_PORT_NONE), ISOLA_ENAMETAKEN (the name is registered already,
 * to this port or another), ISOLA_ECLOSED (port is closed or unknown),
 * ISOLA_ENOMEM, ISOLA_ESYS (the OS refused the random key of the table's
 * hash, drawn with the first name), ISOLA_ENOVM, ISOLA_ESHUTDOWN.
 * Nothing is registered on error.  Any thread. */
ISOLA_EXPORT int isola_name_register(const char *name, isola_port port);

/* As isola_name_register(), and a holder of remove_cap (e.g. from
 * isola_capability_new(); 0 for none) may also remove the name, with
 * isola_name_remove_cap(), from any thread or isolate.  Errors as
 * isola_name_register().  Any thread. */
ISOLA_EXPORT int isola_name_register_cap(const char *name, isola_port port,
                                         isola_capability remove_cap);

/* Stores in *out the port registered under name.  The port may close at any
 * time after the call returns (a send to it then fails with ISOLA_ECLOSED).
 * Errors: ISOLA_EINVAL (name as for isola_name_register(), out NULL),
 * ISOLA_ENOTFOUND (no port has that name), ISOLA_ENOVM, ISOLA_ESHUTDOWN; on
 * error *out (if out is not NULL) is set to ISOLA_PORT_NONE.  Any thread. */
ISOLA_EXPORT int isola_name_lookup(const char *name, isola_port *out);

/* Removes the mapping of name, if the caller owns it (see
 * isola_name_register()); its port stays open.  Errors: ISOLA_EINVAL (name
 * as for isola_name_register()), ISOLA_ENOTFOUND (no port has that name),
 * ISOLA_EPERM (the name is another's: nothing removed), ISOLA_ENOVM,
 * ISOLA_ESHUTDOWN.  Any thread. */
ISOLA_EXPORT int isola_name_remove(const char *name);

/* Removes the mapping of name if remove_cap is the capability it was
 * registered with (isola_name_register_cap()), whoever calls.  Errors:
 * ISOLA_EINVAL (name as for isola_name_register(), remove_cap 0),
 * ISOLA_ENOTFOUND, ISOLA_EPERM (another capability, or none was given),
 * ISOLA_ENOVM, ISOLA_ESHUTDOWN.  Any thread. */
ISOLA_EXPORT int isola_name_remove_cap(const char *name,
                                       isola_capability remove_cap);

/* ------------------------------------------------------------------------ */
/* Transferable buffers                                                      */
/* ------------------------------------------------------------------------ */

/*
 * An isola_buffer is a block of bytes with exactly one owner: a handle (an
 * isola_buffer * variable).  A value made with isola_transfer(&handle)
 * refers to the handle, not to the bytes.  When isola_send() or
 * isola_send_reply() succeeds with such a value anywhere in its graph, the
 * buffer moves to the message without its bytes being copied and the
 * handle is set to NULL: the sender cannot touch the memory again.  When the
 * send fails, nothing moves: the handle still owns its buffer.  A buffer
 * may appear at most once in a message, and an empty handle (NULL) cannot
 * be sent: either makes the send fail with ISOLA_ETRANSFER.
 *
 * The receiving handler sees an ISOLA_BUFFER value whose handle lives in
 * the message: it reads the bytes with isola_value_get_buffer() and keeps
 * the buffer with isola_value_take_buffer(); a buffer it does not take is
 * freed with the message.  isola_value_copy() and the spawn message copy a
 * buffer's bytes into a new buffer instead of moving it.  The wire format
 * encodes a buffer as a plain byte string (it decodes as ISOLA_BYTES).
 */

/* A new buffer of size bytes (0 is allowed), uninitialised, aligned for any
 * type; the caller owns it.  NULL when out of memory.  Any thread. */
ISOLA_EXPORT isola_buffer *isola_buffer_new(size_t size);

/* The buffer's bytes (writable; never NULL for a non-NULL buffer) and its
 * size.  Either of NULL gives NULL / 0.  Any thread that owns the buffer. */
ISOLA_EXPORT uint8_t *isola_buffer_data(isola_buffer *buf);
ISOLA_EXPORT size_t isola_buffer_size(const isola_buffer *buf);

/* Frees a buffer the caller owns.  NULL does nothing.  Any thread. */
ISOLA_EXPORT void isola_buffer_free(isola_buffer *buf);

/* Moves the buffer out of a buffer value: *out gets it and the value's
 * handle is emptied, so the message (or copy) no longer frees it; the
 * caller owns it and frees it with isola_buffer_free().  Errors:
 * ISOLA_EINVAL (out NULL), ISOLA_ETYPE (v is not a buffer value),
 * ISOLA_ETRANSFER (the handle is empty: already taken).  The thread that
 * owns the value (for a received message, its handler). */
ISOLA_EXPORT int isola_value_take_buffer(isola_value v, isola_buffer **out);

/* ------------------------------------------------------------------------ */
/* Wire format                                                               */
/* ------------------------------------------------------------------------ */

/*
 * Values as bytes, for other processes, other machines and files: CBOR
 * (RFC 8949), described in docs/wire-format.md.  Sharing and cycles are
 * kept (tags 28 and 29, on lists and maps only); ports and capabilities
 * have tags of their own.  Decoding is safe on untrusted bytes: it never
 * reads outside the input, and the limits below bound what it allocates,
 * and also what the value costs afterwards: a copy or send of a decoded
 * value needs no more than max_size bytes, and its encoding is at most
 * three times the input's length (and decodes under the same limits).
 */

/* Limits for isola_wire_decode().  A zero field takes its default. */
typedef struct isola_wire_limits {
  /* Nesting of arrays, maps and tags (default 256; values above 4096 are
   * taken as 4096).  Decoding keeps its own stack on the heap, so a deep
   * input costs no C stack on the calling thread.  Exceeded: ISOLA_EDEPTH. */
  uint32_t max_depth;
  /* Data items decoded, every scalar, string, array, map and element
   * counted (default 1 << 20).  Exceeded: ISOLA_ECOUNT. */
  size_t max_items;
  /* Bytes of memory the decoded value needs, the one block it lives in
   * (default 64 MiB).  Exceeded: ISOLA_ETOOBIG. */
  size_t max_size;
} isola_wire_limits;

#define ISOLA_WIRE_DEFAULT_DEPTH 256
#define ISOLA_WIRE_MAX_DEPTH 4096
#define ISOLA_WIRE_DEFAULT_ITEMS ((size_t)1 << 20)
#define ISOLA_WIRE_DEFAULT_SIZE ((size_t)64 << 20)

/* Encodes v into a new malloc'd buffer: *out (free it with free()) and
 * *len.  Errors: ISOLA_EINVAL (a malformed value, out or len NULL),
 * ISOLA_ETRANSFER (an empty buffer handle, or a buffer twice),
 * ISOLA_ENOMEM.  On error *out is NULL and *len 0.  Any thread. */
ISOLA_EXPORT int isola_wire_encode(isola_value v, uint8_t **out, size_t *len);

/* Encodes v into buf[0..cap).  *len gets the encoded size, also when it
 * does not fit: then the call returns ISOLA_ENOSPACE and buf holds no
 * useful bytes (call again with cap >= *len).  buf may be NULL when cap is
 * 0, to measure.  Other errors as isola_wire_encode().  Any thread. */
ISOLA_EXPORT int isola_wire_encode_to(isola_value v, uint8_t *buf, size_t cap,
                                      size_t *len);

/* Decodes exactly one value from bytes[0..len) into *out, one block of
 * memory the caller releases with isola_value_free().  limits may be NULL
 * for the defaults.  Errors, each its own code: ISOLA_ETRUNCATED,
 * ISOLA_EMALFORMED (reserved or stray bytes), ISOLA_EUNSUPPORTED (valid
 * CBOR with no isola value: undefined, other simple values, integers
 * outside int64_t, indefinite lengths, lengths above 2^32 - 1),
 * ISOLA_EBADTAG (also tag 28 on anything but an array or a map),
 * ISOLA_EUTF8, ISOLA_EDANGLING, ISOLA_ETRAILING,
 * ISOLA_EDEPTH, ISOLA_ECOUNT, ISOLA_ETOOBIG, ISOLA_ENOMEM, ISOLA_EINVAL
 * (bytes NULL with len > 0, or out NULL).  On error *out is null and
 * nothing is allocated.  Any thread. */
ISOLA_EXPORT int isola_wire_decode(const uint8_t *bytes, size_t len,
                                   const isola_wire_limits *limits,
                                   isola_value *out);

/* ------------------------------------------------------------------------ */
/* Isolate control: capabilities, pause, kill, ping, listeners, errors, run  */
/* (docs/isolates.md)                                                        */
/* ------------------------------------------------------------------------ */

/* When a control request takes effect (Dart's Isolate.immediate and
 * Isolate.beforeNextEvent). */
typedef enum isola_priority {
  /* Out of band: handled at the isolate's next interrupt point (between
   * two events, a send from one of its handlers, or a call to
   * isola_check_interrupts()), even while it is paused. */
  ISOLA_IMMEDIATE = 0,
  /* Handled when the isolate would next handle a normal message: not while
   * it is paused; before any message already queued. */
  ISOLA_BEFORE_NEXT_EVENT = 1
} isola_priority;

/* A restricted handle on the isolate whose control port is control_port
 * (not checked: a request through a handle whose port is not an open
 * control port fails with ISOLA_ECLOSED, as for an isolate that ended):
 * both capabilities are 0, so it can ping and add or remove listeners but
 * isola_pause(), isola_resume(), isola_kill() and isola_set_errors_fatal()
 * refuse it with ISOLA_EPERM.  Errors: ISOLA_EINVAL (port NONE, out NULL).
 * Any thread; it touches nothing but *out. */
ISOLA_EXPORT int isola_isolate_from_port(isola_port control_port,
                                         isola_isolate *out);

/* A fresh capability from the calling thread's CSPRNG (never 0), e.g. a
 * resume capability of one's own for isola_pause().  Returns 0 only if the
 * OS random source failed.  Any thread. */
ISOLA_EXPORT isola_capability isola_capability_new(void);

/*
 * Pauses the isolate: it stops handling normal messages (they queue, none
 * is lost) until every resume capability it was paused with is resumed.
 * Out-of-band requests (ping, kill, listeners, resume) are still handled.
 * resume is the capability that will undo this pause (0: the handle's
 * pause capability).  The pauses form a set: pausing twice with one
 * capability needs one resume; two capabilities need a resume each.
 * Asynchronous: the isolate pauses when it handles the request (between
 * events).  Errors: ISOLA_EINVAL (isolate NULL), ISOLA_EPERM (no pause
 * capability in the handle), ISOLA_ECLOSED (the isolate has ended),
 * ISOLA_ENOMEM, ISOLA_ENOVM, ISOLA_ESHUTDOWN.  A handle whose capability
 * is wrong is ignored by the isolate, as in Dart.  Any thread.
 */
ISOLA_EXPORT int isola_pause(const isola_isolate *isolate,
                             isola_capability resume);

/* Removes resume (0: the handle's pause capability) from the isolate's
 * pauses; it runs again when none is left.  An unknown resume capability
 * is ignored.  Errors as isola_pause().  Any thread. */
ISOLA_EXPORT int isola_resume(const isola_isolate *isolate,
                              isola_capability resume);

/*
 * Ends the isolate.  ISOLA_IMMEDIATE: at its next interrupt point (between
 * events, at a send or at isola_check_interrupts() in a handler; it cannot
 * stop a handler blocked in C code, see isola_check_interrupts());
 * ISOLA_BEFORE_NEXT_EVENT: before it handles another normal message.
 * Its queued messages are freed, its ports closed, its exit listeners
 * told.  An isolate may kill itself.  Errors: ISOLA_EINVAL, ISOLA_EPERM
 * (no terminate capability), ISOLA_ECLOSED (already ended), ISOLA_ENOMEM,
 * ISOLA_ENOVM, ISOLA_ESHUTDOWN.  Any thread.
 */
ISOLA_EXPORT int isola_kill(const isola_isolate *isolate,
                            isola_priority priority);

/* Asks the isolate to send a copy of response (made now) to response_port
 * (Dart's Isolate.ping).  At ISOLA_IMMEDIATE it is answered even while the
 * isolate is paused.  Needs no capability.  The isolate makes one more
 * copy when it answers; if it is out of memory then, the request waits in
 * its queue until the copy can be made (it is never dropped for want of
 * memory once this call returned ISOLA_OK).
 * Errors: ISOLA_EINVAL (isolate NULL, response_port NONE, a malformed
 * response), ISOLA_ECLOSED,
 * ISOLA_EFULL (the request and its response do not fit the isolate's room,
 * see isola_alloc(); the response may also be dropped later if
 * response_port's isolate has no room for it), ISOLA_ENOMEM, ISOLA_ENOVM,
 * ISOLA_ESHUTDOWN.  Any thread. */
ISOLA_EXPORT int isola_ping(const isola_isolate *isolate,
                            isola_port response_port, isola_value response,
                            isola_priority priority);

/* When the isolate ends, however it ends (returned with no live ports,
 * killed, a fatal error, isola_exit), a copy of response (null for none)
 * is sent to port, exactly once.  Adding a port already listening replaces
 * its response.  Handled out of band; a request that reaches an isolate
 * already ending is dropped with it (no message).  Needs no capability.
 * The isolate holds response until it ends, in its room (see the isolate
 * heap, isola_alloc()).  It copies the response again when it records the
 * listener; if it is out of memory then, the request waits in its queue
 * until the copy can be made (it is never dropped for want of memory once
 * this call returned ISOLA_OK).  Errors: ISOLA_EINVAL (isolate
 * NULL, port NONE, a malformed response), ISOLA_ECLOSED, ISOLA_EFULL (no
 * room for the request), ISOLA_ENOMEM, ISOLA_ENOVM, ISOLA_ESHUTDOWN.  Any
 * thread. */
ISOLA_EXPORT int isola_add_exit_listener(const isola_isolate *isolate,
                                         isola_port port,
                                         isola_value response);
/* Stops sending port the exit response (once, however often it was
 * added).  Errors as isola_add_exit_listener().  Any thread. */
ISOLA_EXPORT int isola_remove_exit_listener(const isola_isolate *isolate,
                                            isola_port port);

/*
 * Exit notices: why an isolate ended, for supervisors.  A listener added
 * with isola_add_exit_notice_listener() (or spawned with on_exit and
 * isola_spawn_options.exit_notice) receives, exactly once, instead of its
 * bare response, the list
 *
 *     [reason, isolate, detail, response]
 *
 *   reason    an int, an isola_exit_reason below;
 *   isolate   a port value: the ended isolate's control port (its id; the
 *             isola_isolate.control_port of its handle);
 *   detail    a string for ISOLA_EXIT_ERROR and ISOLA_EXIT_HEAP_LIMIT (the
 *             error's message, as error listeners got it), null otherwise;
 *   response  a copy of the listener's response (null if none).
 *
 * Items may be appended in later versions: read by index, do not check
 * the length.  Should memory run out while the notice is built, the
 * listener gets its bare response instead (still exactly once).
 */
typedef enum isola_exit_reason {
  /* It ended by itself: its last live port closed (after its entry or a
   * handler returned), isola_exit(), or an isola_run() computation
   * returned. */
  ISOLA_EXIT_NORMAL = 0,
  /* isola_kill(), at either priority. */
  ISOLA_EXIT_KILLED = 1,
  /* An uncaught error ended it: a fatal one, or a non-fatal one that left
   * it with no live port.  detail: the error's message. */
  ISOLA_EXIT_ERROR = 2,
  /* As ISOLA_EXIT_ERROR, the error being that an allocation or a received
   * message would have passed the isolate's heap limit.  (Memory the
   * system itself refuses is ISOLA_EXIT_ERROR.) */
  ISOLA_EXIT_HEAP_LIMIT = 3,
  /* isola_vm_shutdown() ended it. */
  ISOLA_EXIT_SHUTDOWN = 4,
  /* The node that ran a remote isolate is unreachable.  Never produced by
   * the core library: components that stand for remote isolates (e.g. a
   * cluster transport) send it in the same notice shape. */
  ISOLA_EXIT_NODE_LOST = 5
} isola_exit_reason;

/* The reason's name: "normal", "killed", "error", "heap limit",
 * "shutdown", "node lost", or "unknown".  Any thread; static string. */
ISOLA_EXPORT const char *isola_exit_reason_name(int reason);

/* As isola_add_exit_listener(), but port gets the exit notice [reason,
 * isolate, detail, response] described above.  A port is one listener:
 * adding it again, with either call, replaces its response and its kind;
 * isola_remove_exit_listener() removes either kind.  Prefer the spawn
 * option (on_exit with exit_notice): a listener added after the spawn can
 * miss an isolate that ends first (the request is then dropped with it).
 * Errors as isola_add_exit_listener().  Any thread. */
ISOLA_EXPORT int isola_add_exit_notice_listener(const isola_isolate *isolate,
                                                isola_port port,
                                                isola_value response);

/* Every uncaught error of the isolate is sent to port as a list of two
 * strings, [message, stack trace].  A port is a listener once, however
 * often it is added (with this call or the next).  Errors as
 * isola_add_exit_listener().  Any thread. */
ISOLA_EXPORT int isola_add_error_listener(const isola_isolate *isolate,
                                          isola_port port);
/* As isola_add_error_listener(), but port gets error notices: [message,
 * stack trace, isolate], the third item the failing isolate's control
 * port (a port value), so that one port can listen to many isolates.
 * Items may be appended in later versions: read by index.  Adding a port
 * again, with either call, sets which shape it gets.  Errors as
 * isola_add_exit_listener().  Any thread. */
ISOLA_EXPORT int isola_add_error_notice_listener(const isola_isolate *isolate,
                                                 isola_port port);
/* Stops sending port the isolate's errors (either shape). */
ISOLA_EXPORT int isola_remove_error_listener(const isola_isolate *isolate,
                                             isola_port port);

/* Whether an uncaught error ends the isolate (true by default).  Needs the
 * terminate capability.  Handled out of band.  Errors as isola_kill().
 * Any thread. */
ISOLA_EXPORT int isola_set_errors_fatal(const isola_isolate *isolate,
                                        bool fatal);

/*
 * Control requests for isolates of other processes.  A component that
 * stands for isolates elsewhere (the cluster component, isola_cluster.h,
 * whose remote control ports are ports of its own) installs a forwarder:
 * when one of the calls above (isola_pause() to isola_set_errors_fatal())
 * names a control port that is no control port of this process, so that
 * it would fail with ISOLA_ECLOSED, the core calls the forwarder with the
 * request, on the calling thread, and returns what it returns.  The
 * forwarder answers ISOLA_ECLOSED for a port it does not stand for.  So
 * the calls work the same on a remote isolate's handle; every check the
 * core makes before it looks the port up (isolate NULL, a missing
 * capability: ISOLA_EPERM, a bad priority or listener port) is made first,
 * as for a local isolate.  A request for a local isolate never reaches
 * the forwarder.
 */
typedef enum isola_control_kind {
  ISOLA_CONTROL_PAUSE = 1,           /* isola_pause() */
  ISOLA_CONTROL_RESUME = 2,          /* isola_resume() */
  ISOLA_CONTROL_KILL = 3,            /* isola_kill() */
  ISOLA_CONTROL_PING = 4,            /* isola_ping() */
  ISOLA_CONTROL_EXIT_ADD = 5,        /* isola_add_exit_listener() */
  ISOLA_CONTROL_EXIT_NOTICE_ADD = 6, /* isola_add_exit_notice_listener() */
  ISOLA_CONTROL_EXIT_REMOVE = 7,     /* isola_remove_exit_listener() */
  ISOLA_CONTROL_ERROR_ADD = 8,       /* isola_add_error_listener() */
  ISOLA_CONTROL_ERROR_NOTICE_ADD = 9, /* isola_add_error_notice_listener() */
  ISOLA_CONTROL_ERROR_REMOVE = 10,   /* isola_remove_error_listener() */
  ISOLA_CONTROL_ERRORS_FATAL = 11    /* isola_set_errors_fatal() */
} isola_control_kind;

typedef struct isola_control_request {
  int kind;               /* an isola_control_kind */
  isola_isolate isolate;  /* the caller's handle, capabilities as given */
  /* PAUSE, RESUME: the resume capability (the handle's pause capability
   * when the caller gave 0).  Else 0. */
  isola_capability resume;
  int priority;   /* KILL, PING: an isola_priority.  Else 0. */
  bool fatal;     /* ERRORS_FATAL: the setting.  Else false. */
  /* PING: the response port; the listener kinds: the listener port.
   * Else ISOLA_PORT_NONE. */
  isola_port port;
  /* PING and the exit listener kinds: the caller's response, valid until
   * the forwarder returns (it copies what it keeps).  Else null. */
  isola_value response;
} isola_control_request;

/* A forwarder: ISOLA_OK when it took the request, ISOLA_ECLOSED when
 * request->isolate.control_port is not one it stands for (or that
 * isolate is known to be gone), or another code of the call it stands in
 * for. */
typedef int (*isola_control_forward_fn)(const isola_control_request *request);

/* Installs fn as the process's forwarder (one per process: it replaces
 * any earlier one; NULL removes it).  A call that had read the old
 * forwarder may still run it after this returns, so a forwarder must stay
 * callable while the process runs (a component's function checks its own
 * state).  fn runs on the thread of the control call, isolate or not, and
 * may do what that thread may (e.g. isola_send()); it must not block for
 * long.  Any thread; the VM need not run. */
ISOLA_EXPORT void isola_control_forward_set(isola_control_forward_fn fn);

/* An interrupt point for a long-running handler: handles the isolate's
 * out-of-band requests now (pings are answered, pauses and listeners
 * recorded).  If the isolate was killed at ISOLA_IMMEDIATE (or the VM is
 * shutting down) this call does not return: the handler is abandoned as by
 * isola_throw() and the isolate ends.  isola_send() and
 * isola_send_reply() from a handler do the same before they send.  Messages
 * the event sent and still holds (see isola_send()) go out here, and the
 * isolates they (or a ping's answer) readied run on other threads rather
 * than wait for the event to end; memory the runtime holds for isolates
 * that ended meanwhile can be freed (a handler that computes for long
 * without calling this holds that memory back until it returns).
 * Returns ISOLA_OK, or ISOLA_ENOTISOLATE.  Isolate only. */
ISOLA_EXPORT int isola_check_interrupts(void);

#if defined(__GNUC__)
#define ISOLA_NORETURN_ __attribute__((noreturn))
#define ISOLA_PRINTF_(f, a) __attribute__((format(printf, f, a)))
#else
#define ISOLA_NORETURN_ _Noreturn
#define ISOLA_PRINTF_(f, a)
#endif

/*
 * Raises an uncaught error in the running isolate; never returns.  The
 * message is formatted as printf() does.  The current event (handler or
 * entry) is abandoned: control jumps (longjmp) back to the isolate's turn,
 * so the C frames in between are skipped and whatever they hold (memory,
 * locks, files) is not released, as an exception without destructors.
 * Then every error listener gets [message, stack trace] (error notice
 * listeners [message, stack trace, isolate]; the stack from glibc's
 * backtrace()); with no listener the error goes to the
 * VM's unhandled_error hook.  If errors are fatal the isolate ends (its exit
 * listeners are told, exit notices with ISOLA_EXIT_ERROR); otherwise it carries on with its next event.
 * Isolate only, from an event (entry or handler): called from another
 * thread, or from a hook outside an event, the error goes to the
 * unhandled_error hook and the process aborts, as a failed assert.
 */
ISOLA_EXPORT ISOLA_NORETURN_ void isola_throw(const char *fmt, ...)
    ISOLA_PRINTF_(1, 2);

ISOLA_EXPORT ISOLA_NORETURN_ void isola__assert_fail(const char *expr,
                                                     const char *file,
                                                     int line);
/* As assert(), but a failure raises an uncaught error in the isolate (see
 * isola_throw()) instead of aborting the process.  Never compiled out. */
#define isola_assert(expr)                                                     \
  ((expr) ? (void)0 : isola__assert_fail(#expr, __FILE__, __LINE__))

/*
 * Ends the running isolate at once (Dart's Isolate.exit): value is sent
 * to port as the isolate's last message, then the isolate ends as if its
 * last port had closed (exit listeners are told; pause_on_exit does not
 * apply).  value is sent as isola_send() sends it: copied, with its
 * transferable buffers moved (their handles emptied); see
 * isola_exit_owned() to hand over a block without a copy.  The current
 * event is abandoned as by isola_throw().  On success it does not return.
 * A closed port, one whose isolate has no room for it (ISOLA_EFULL for a
 * send), or a VM shutting down, loses the message; the isolate still ends.
 * Errors (the isolate carries on, nothing moved):
 * ISOLA_ENOTISOLATE, ISOLA_EINVAL (port NONE, a malformed value),
 * ISOLA_ETRANSFER (an empty buffer handle, or one buffer twice),
 * ISOLA_ENOMEM.  Isolate only, from an event.
 */
ISOLA_EXPORT int isola_exit(isola_port port, isola_value value);

/* As isola_exit(), without a copy: *owned must be a value returned by
 * isola_value_copy() (or a scalar); its block becomes the message, the
 * receiver's handler reads it in place, and the runtime frees it after.
 * *owned is set to null before the isolate ends.  Errors as isola_exit()
 * (then *owned is untouched and still the caller's). */
ISOLA_EXPORT int isola_exit_owned(isola_port port, isola_value *owned);

/* What isola_run() computes: the result must be a scalar or a value made
 * by isola_value_copy(); the runtime takes it over (the caller of
 * isola_run gets it without another copy, isola_run_async copies it into
 * the completion message and frees it). */
typedef isola_value (*isola_run_fn)(isola_value argument);

/*
 * Dart's Isolate.run: spawns an isolate that computes fn(argument) as its
 * entry, waits for it, and returns once it has ended.  On ISOLA_OK *result
 * is the value fn returned (the caller owns it: isola_value_free()).  If
 * fn raised an uncaught error (isola_throw) or the isolate was killed,
 * returns ISOLA_EFAILED and *result is a list of two strings [message,
 * stack trace] that the caller owns.  argument is copied.  Other errors
 * are those of isola_spawn() (*result is then null).  The isolate ends
 * when fn returns, even if it opened ports.  Any thread that is not an
 * isolate (an isolate gets ISOLA_EBUSY: it must not block; use
 * isola_run_async()).  A hook that runs on a pool thread or a root
 * isolate's thread outside an event (group_cleanup, for one) gets
 * ISOLA_EBUSY too: the wait would hold the thread the computation needs.
 */
ISOLA_EXPORT int isola_run(isola_run_fn fn, isola_value argument,
                           isola_value *result);

/* As isola_run() without waiting: when the isolate ends, completion_port
 * gets [true, result] or [false, message, stack trace].  Exactly one
 * completion message is sent, unless the port is closed by then.  Errors
 * those of isola_spawn(), ISOLA_EINVAL (completion_port NONE).  Any
 * thread. */
ISOLA_EXPORT int isola_run_async(isola_run_fn fn, isola_value argument,
                                 isola_port completion_port);

/* Options of isola_run_opts() and isola_run_async_opts(). */
typedef struct isola_run_options {
  const char *name;  /* the isolate's debug name; NULL: "isola_run" */
  size_t heap_limit; /* as in isola_spawn_options: 0 the VM's, SIZE_MAX
                        none */
  /* isola_run_async_opts(): copied at the call, and the first item of the
   * completion, so one port can tell which call each completion answers. */
  isola_value tag;
} isola_run_options;

/* isola_run() with options (options may be NULL: the defaults).  Errors
 * as isola_run().  Any thread that is not an isolate. */
ISOLA_EXPORT int isola_run_opts(isola_run_fn fn, isola_value argument,
                                const isola_run_options *options,
                                isola_value *result);

/* isola_run_async() with options.  With options not NULL the completion
 * says which call it answers: [tag, true, result] or [tag, false, message,
 * stack trace] (options->tag, null if unset); with NULL it is as
 * isola_run_async()'s.  Errors: those of isola_run_async(), ISOLA_EINVAL
 * for a malformed tag.  Any thread. */
ISOLA_EXPORT int isola_run_async_opts(isola_run_fn fn, isola_value argument,
                                      const isola_run_options *options,
                                      isola_port completion_port);

/* ------------------------------------------------------------------------ */
/* Supervisors (docs/supervisors.md)                                         */
/* ------------------------------------------------------------------------ */

/*
 * A supervisor starts child isolates from specs, restarts them when they
 * end (Erlang/OTP's strategies and restart policies), gives up when they
 * fail too often, and stops them in order.  It lives in the isolate that
 * starts it (its owner): it opens a port there for its children's exit
 * notices (so it keeps the owner alive while it runs), uses the owner's
 * timers, and calls the owner's callbacks as events of the owner.  Every
 * child is spawned with its exit listener in its spawn options, so no end
 * is ever missed.  An isolate may own any number of supervisors; a child
 * may itself start one (a supervision tree: a supervisor that gives up
 * ends its owner with an error, which its own supervisor sees).
 *
 * Children do not outlive their supervisor's owner: if the owner ends
 * while a supervisor runs (killed, an error), every running child is
 * killed (ISOLA_IMMEDIATE) and the supervisor is freed.
 */
typedef struct isola_supervisor isola_supervisor;

/* What the supervisor does when a child ends. */
typedef enum isola_restart {
  ISOLA_RESTART_PERMANENT = 0, /* always restarted */
  ISOLA_RESTART_TRANSIENT = 1, /* restarted unless it ended normally
                                  (ISOLA_EXIT_NORMAL) */
  ISOLA_RESTART_TEMPORARY = 2  /* never restarted */
} isola_restart;

/* Which children a restart takes along. */
typedef enum isola_strategy {
  ISOLA_ONE_FOR_ONE = 0,  /* only the child that ended */
  ISOLA_ONE_FOR_ALL = 1,  /* every child: the others are stopped (reverse
                             start order), then all started again */
  ISOLA_REST_FOR_ONE = 2  /* the child and those started after it */
} isola_strategy;

typedef struct isola_child_spec {
  const char *name;  /* the child's debug name (copied); NULL: "child" */
  isola_entry entry; /* its entry; must not be NULL */
  isola_value arg;   /* its spawn message, copied at isola_supervisor_start
                        and given to every start of the child */
  isola_restart restart;
  /* How long a child being stopped may take: it is first asked with
   * isola_kill(ISOLA_BEFORE_NEXT_EVENT) (its current event finishes),
   * after shutdown_ms killed at ISOLA_IMMEDIATE, and if it has still not
   * ended shutdown_ms later (stuck in C code, which no kill interrupts)
   * the supervisor stops waiting: it reports the child with
   * ISOLA_SUPERVISOR_ABANDONED and goes on.  0: 5000 ms. */
  uint32_t shutdown_ms;
  size_t heap_limit; /* as isola_spawn_options.heap_limit */
} isola_child_spec;

/* The reason on_child_exit gets for a child abandoned as above (it may
 * still be running). */
#define ISOLA_SUPERVISOR_ABANDONED (-1)

typedef struct isola_supervisor_spec {
  isola_strategy strategy;
  /* Restart intensity: more than max_restarts restarts within period_ms
   * and the supervisor gives up: it stops every child and ends with
   * ISOLA_EXIT_ERROR.  A restart of several children by one failure
   * (one-for-all, rest-for-one) counts once.  0 allows none. */
  uint32_t max_restarts;
  uint32_t period_ms; /* 0: 5000 */
  const isola_child_spec *children; /* started in this order */
  size_t nchildren;                 /* at most 1024 */
  void *ctx; /* passed to the callbacks; the runtime never touches it */
  /* Each callback may be NULL; each runs in the owner isolate, as an
   * event of it (or inside isola_supervisor_start()).  None may free the
   * supervisor.  A child started (the first time or again): */
  void (*on_child_start)(void *ctx, size_t index,
                         const isola_isolate *child);
  /* A child ended (reason an isola_exit_reason, detail the error message
   * or NULL), or was abandoned (ISOLA_SUPERVISOR_ABANDONED), whether or
   * not it will be restarted.  Should memory run out while the child's
   * exit notice is built, the supervisor still learns that it ended, not
   * why: reason is then ISOLA_EXIT_ERROR and detail says so. */
  void (*on_child_exit)(void *ctx, size_t index, isola_port child,
                        int reason, const char *detail);
  /* The supervisor has ended: all its children are gone (or abandoned).
   * reason: ISOLA_EXIT_NORMAL after isola_supervisor_stop(),
   * ISOLA_EXIT_ERROR when it gave up (detail says why: the intensity
   * passed, or a child that could not be spawned again).  The supervisor
   * is still valid here (e.g. for isola_supervisor_restarts()) and is
   * freed when this returns.  NULL: on ISOLA_EXIT_ERROR the owner
   * raises the error (isola_throw(), so with errors fatal the owner ends
   * with ISOLA_EXIT_ERROR and that detail); on ISOLA_EXIT_NORMAL nothing. */
  void (*on_end)(void *ctx, int reason, const char *detail);
} isola_supervisor_spec;

/*
 * Starts a supervisor in the calling isolate: copies spec (names, args;
 * the spec need not outlive the call), opens its port and starts every
 * child in order (on_child_start runs for each before this returns).
 * *out receives the supervisor, owned by the calling isolate until it
 * ends (on_end) or the isolate does.
 * Errors: ISOLA_EINVAL (spec or out NULL, no children or more than 1024,
 * an entry NULL, a bad strategy or restart, a malformed arg),
 * ISOLA_ENOMEM, ISOLA_ENOTISOLATE, and those of isola_spawn() for a child
 * that could not start (the children already started are then killed and
 * nothing is left running).  Isolate only.
 */
ISOLA_EXPORT int isola_supervisor_start(const isola_supervisor_spec *spec,
                                        isola_supervisor **out);

/* Stops the supervisor: no more restarts; its children are stopped one
 * at a time in reverse start order (each as shutdown_ms says), then
 * on_end(ISOLA_EXIT_NORMAL) runs.  Asynchronous: returns at once.  (One
 * exception: with no child left to stop and no memory to put the end off
 * to a microtask, on_end runs before this returns and sup is freed.
 * Called from one of the supervisor's own callbacks, the end still waits
 * until that callback has returned.)
 * Calling it again, or while it is giving up, does nothing.  Errors:
 * ISOLA_EINVAL (sup NULL), ISOLA_ENOTOWNER (sup belongs to another
 * isolate), ISOLA_ENOTISOLATE.  Isolate only, the owner. */
ISOLA_EXPORT int isola_supervisor_stop(isola_supervisor *sup);

/* The handle of child index as it runs now.  Errors: ISOLA_EINVAL (sup
 * or out NULL), ISOLA_ERANGE (no such child), ISOLA_ECLOSED (not running
 * now: being restarted, stopped, or a temporary child that ended),
 * ISOLA_ENOTOWNER, ISOLA_ENOTISOLATE.  Isolate only, the owner. */
ISOLA_EXPORT int isola_supervisor_child(isola_supervisor *sup, size_t index,
                                        isola_isolate *out);

/* Restarts counted since the supervisor started (each failure that led to
 * a restart counts one).  0 for NULL.  Isolate only, the owner. */
ISOLA_EXPORT uint64_t isola_supervisor_restarts(const isola_supervisor *sup);

/* ------------------------------------------------------------------------ */
/* The event loop's extras: microtasks, isolate-local storage, the isolate  */
/* heap and its figures (docs/eventloop.md)                                  */
/* ------------------------------------------------------------------------ */

/* Schedules fn(arg) to run in the calling isolate right after the event
 * being handled (its entry or a port handler), before the next event: Dart's
 * scheduleMicrotask.  Microtasks run in the order they were scheduled,
 * including those scheduled by a microtask, until none is left.  Between
 * two microtasks the isolate takes its interrupts (a kill, a ping, as at a
 * send).  An uncaught error in a microtask (isola_throw) is an uncaught
 * error of the isolate like any other: with errors fatal the isolate ends;
 * otherwise the remaining microtasks run, then the next event.  Microtasks
 * still pending when the isolate ends (killed, isola_exit, a fatal error)
 * are dropped without running.  arg is the caller's; isola never frees it.
 * Errors: ISOLA_EINVAL (fn NULL), ISOLA_ENOMEM, ISOLA_ENOTISOLATE,
 * ISOLA_EENDING (the isolate is ending: from an isola_local destructor or
 * a hook at its end nothing is scheduled).  Isolate only. */
ISOLA_EXPORT int isola_microtask(void (*fn)(void *arg), void *arg);

/* An isolate-local variable: one value of size bytes per isolate.  Declare
 * it with ISOLA_LOCAL (a static or global object, never on the stack) and
 * reach the calling isolate's value with isola_local_get().  Keys are never
 * destroyed; any number may exist.  Fields are read-only after declaration;
 * id_ is private. */
typedef struct isola_local_key {
  size_t size;                /* bytes of each value (0: one byte) */
  void (*init)(void *value);  /* NULL: the value starts zeroed */
  void (*destroy)(void *value); /* NULL: nothing to do at the end */
  uint32_t id_;               /* private: 0 until first used */
} isola_local_key;

/* Declares name, a key for an isolate-local value of type type, zeroed in
 * each isolate on first use.  ISOLA_LOCAL_INIT also names a function run
 * once per isolate on the zeroed value at first use (init, may be NULL)
 * and one run when the isolate ends (destroy, may be NULL).  Prefix with
 * static as needed: static ISOLA_LOCAL(int, counter); */
#define ISOLA_LOCAL(type, name) isola_local_key name = {sizeof(type), 0, 0, 0}
#define ISOLA_LOCAL_INIT(type, name, init, destroy)                           \
  isola_local_key name = {sizeof(type), (init), (destroy), 0}

/*
 * The calling isolate's value of key: created on the isolate's first call
 * (zeroed, then key->init run on it), the same pointer on every later call
 * in that isolate whichever pool thread runs it, and freed when the isolate
 * ends, after key->destroy ran on it.  Destructors run on the isolate's
 * thread after its ports closed, newest value first; while they run,
 * isola_local_get() returns the values not yet destroyed and NULL for the
 * others (none is created again; nor from the isolate_shutdown and
 * isolate_cleanup hooks).  Values live in runtime memory, not in
 * the isolate heap: they do not count toward its limit.  Returns NULL from
 * a thread that is not running an isolate, for key NULL, or when out of
 * memory.  Isolate only (a C thread-local would be wrong: an isolate may
 * run on a different pool thread for every event).
 */
ISOLA_EXPORT void *isola_local_get(isola_local_key *key);

/*
 * The isolate heap: blocks of the calling isolate, aligned for any type,
 * returned all at once when the isolate ends (whatever ends it), so an
 * isolate killed in the middle of its work leaks nothing.  Each block
 * costs its size plus a 32-byte header.
 *
 * A heap limit (isola_config.heap_limit, or isola_spawn_options.heap_limit
 * for one isolate) bounds the bytes of an isolate's live blocks and their
 * headers.  An allocation that would pass it raises an uncaught error in
 * that isolate only, "out of memory: ..." (error listeners get [message,
 * stack]; with errors fatal the isolate ends, and exit notices
 * say ISOLA_EXIT_HEAP_LIMIT), exactly as if the caller
 * had called isola_throw(); the same happens when the system itself is out
 * of memory.  So inside an event (an entry, a handler, a microtask)
 * isola_alloc() and isola_realloc() never return NULL.  Outside an event
 * of an isolate (a hook, an isola_local destructor) there is nothing to
 * unwind: they return NULL instead.  From a thread that is not running an
 * isolate there is no heap: they return NULL.
 *
 * The message being handled is charged to the heap (isola_isolate_stats,
 * message_bytes).  What others make an isolate hold besides, messages
 * queued for it, control requests waiting for it, and what it keeps for
 * requesters (exit listener responses, pings waiting for its next event,
 * error listener entries), together take at most its heap limit again,
 * its room: a send or request that would pass it fails with ISOLA_EFULL
 * and is not kept, and the room comes back as the isolate takes messages
 * off its queue and drops what it kept.  A send or request value over
 * 2 KiB is refused before it is copied.  Not counted: requests with the
 * isolate's right pause or terminate capability (a full isolate can still
 * be paused and killed), the runtime's own messages (timers, fd events,
 * exit notices and responses it is owed), and isolates whose limit is 0,
 * SIZE_MAX or 2 GiB and more (docs/security.md).
 */

/* A block of size bytes (size 0: a unique block of no bytes) in the
 * calling isolate's heap, uninitialised.  Isolate only. */
ISOLA_EXPORT void *isola_alloc(size_t size);

/* As isola_alloc(), zeroed. */
ISOLA_EXPORT void *isola_calloc(size_t size);

/* Resizes p, a block of the calling isolate (NULL: as isola_alloc()), and
 * returns its new address; the contents are kept up to the smaller size.
 * When the limit or memory runs out, the error is raised and p stays
 * valid.  Isolate only. */
ISOLA_EXPORT void *isola_realloc(void *p, size_t size);

/* Returns p, a block of the calling isolate's heap, at once.  NULL: nothing
 * happens.  A block of another isolate is detected (it would corrupt that
 * isolate's heap) and raised as an uncaught error; a pointer that is no
 * isola_alloc block at all, or a block already freed, is undefined
 * behaviour, as with free() (a second free is not detected).  From a
 * thread that is not running an isolate it does nothing.  Isolate only. */
ISOLA_EXPORT void isola_free(void *p);

/* Figures of one isolate, for monitoring. */
typedef struct isola_isolate_stats {
  size_t heap_bytes;      /* live isolate-heap bytes, headers included */
  size_t heap_peak;       /* the most heap_bytes has been */
  size_t heap_limit;      /* the limit in force; 0: none */
  size_t heap_blocks;     /* live isolate-heap blocks */
  size_t messages_queued; /* normal messages waiting, not counting the one
                             being handled */
  /* Bytes of the received message being handled: it lives in the isolate's
   * heap while its handler runs, and heap_bytes + message_bytes must stay
   * within heap_limit (a message that does not fit raises out-of-memory
   * in the receiver, and is dropped).  Counted when the isolate has a
   * limit or has used isola_alloc(). */
  size_t message_bytes;
} isola_isolate_stats;

/* Fills *out with the calling isolate's figures.  messages_queued is
 * counted by walking the queue, so it costs one step per waiting message
 * and the send path pays nothing for it; a message whose sender is still
 * linking it may be missed.  Only the calling isolate (another isolate's
 * figures: ask it with a message).  Errors: ISOLA_EINVAL (out NULL),
 * ISOLA_ENOTISOLATE.  Isolate only. */
ISOLA_EXPORT int isola_current_stats(isola_isolate_stats *out);

/* ------------------------------------------------------------------------ */
/* Modules and the runner                                                    */
/* ------------------------------------------------------------------------ */

/*
 * A module is a shared object (built e.g. as a CMake MODULE library, or with
 * `cc -shared -fPIC`) that a group runs: Dart's Isolate.spawnUri.  It holds
 * ISOLA_MODULE() once, at file scope, and defines
 *
 *     void isola_main(isola_value args, isola_value message) { ... }
 *
 * which runs as the entry of the group's first isolate.  Each load is its
 * own dlopen(RTLD_NOW | RTLD_LOCAL): modules loaded by different groups may
 * define the same names without clashing, and the module's calls to this
 * API go to the runtime already in the process (so a module need not link
 * the library itself, and must not link a second copy of it statically).
 * The group shares the module among all its isolates (an isola_spawn from
 * inside runs the module's functions) and unloads it (dlclose) after its
 * last isolate is cleaned up, after the group_cleanup hook.
 *
 * A module's global variables are C globals, not per isolate as Dart's
 * statics are: every isolate that runs the module's code sees the same
 * ones, and so does every group that loads the same file at the same time
 * (the loader keeps one copy per file).  Keep per-isolate state in handler
 * contexts or isolate-locals, as elsewhere.
 */

/* The module ABI this runtime accepts.  It changes when a module built
 * against an older header could misbehave with this runtime. */
#define ISOLA_MODULE_ABI 1u

/* A module's entry point (what ISOLA_MODULE() declares as isola_main).
 * args and message are valid until it returns, as a spawn message is. */
typedef void (*isola_module_main)(isola_value args, isola_value message);

/* Marks a shared object as an isola module built for this ABI: exports the
 * stamp isola_module_abi = ISOLA_MODULE_ABI and declares isola_main with
 * default visibility (so the module may be built with -fvisibility=hidden).
 * Use once, at file scope, in one source file of the module. */
#define ISOLA_MODULE()                                                         \
  ISOLA_MODULE_EXTERN_ ISOLA_EXPORT void isola_main(isola_value args,          \
                                                    isola_value message);      \
  ISOLA_MODULE_EXTERN_ ISOLA_EXPORT const uint32_t isola_module_abi;           \
  const uint32_t isola_module_abi = ISOLA_MODULE_ABI
/* C linkage in a C++ module too (the loader looks the names up as is). */
#ifdef __cplusplus
#define ISOLA_MODULE_EXTERN_ extern "C"
#else
#define ISOLA_MODULE_EXTERN_ extern
#endif

/*
 * Reads item index of a module's args (isola_main's list of strings: for
 * the `isola` runner, the command-line arguments after the module's path)
 * as a decimal integer within min..max, for the settings every module
 * parses.  *out receives it, or dflt (not checked against min..max) when
 * args has no such item (fewer arguments were given) or is null.  The
 * whole string must be the integer: an optional sign, then decimal digits
 * ("12", "-3"; no spaces, no suffix).  Errors (*out untouched):
 * ISOLA_EINVAL (out NULL, min > max, a string that is not a decimal
 * integer), ISOLA_ERANGE (outside min..max, or beyond int64_t),
 * ISOLA_ETYPE (args is not a list, or the item is not a string);
 * isola_error_detail() then says which argument (counted from 1) and why,
 * e.g. "argument 2 (\"7x\"): not a decimal integer", for a usage
 * message.  Any thread.
 */
ISOLA_EXPORT int isola_arg_int(isola_value args, size_t index, int64_t dflt,
                               int64_t min, int64_t max, int64_t *out);

/*
 * Loads the module at path (as dlopen() finds it: a path with a slash is a
 * file, a bare name is searched for) into a new group and starts that
 * group's first isolate, which runs isola_main(args, message).  args and
 * message are copied before the call returns; opts (may be NULL) and *out
 * (may be NULL) are as for isola_spawn().  The module is loaded, checked
 * and resolved in this call, so a module that cannot run is reported here
 * and no isolate is started (nothing reaches opts->on_error or on_exit).
 * From an isolate too, the new isolate starts a new group (unlike
 * isola_spawn()).
 * Errors: ISOLA_EINVAL (path NULL or empty, a malformed value),
 * ISOLA_EMODULE (dlopen failed: no such file, not a shared object, an
 * unresolved symbol), ISOLA_EABI (no ABI stamp, or another ABI),
 * ISOLA_ENOENTRY (no isola_main), and those of isola_spawn().  After
 * ISOLA_EMODULE, ISOLA_EABI or ISOLA_ENOENTRY, isola_module_error() says
 * why.  Loading a module runs its code: the loader runs its constructors
 * (and those of the libraries it needs) before the ABI stamp can be read,
 * so the stamp is a compatibility check, not a trust boundary, and a
 * module has every power of the process.  Load only modules you trust
 * (docs/security.md).  Any thread.
 */
ISOLA_EXPORT int isola_spawn_uri(const char *path, isola_value args,
                                 isola_value message,
                                 const isola_spawn_options *opts,
                                 isola_isolate *out);

/*
 * isola_run_main() for a module: loads the module at path into a new group
 * and runs isola_main(args, message) as that group's root isolate on the
 * calling thread, handling its messages until it has no live ports; then
 * returns.  name may be NULL ("main").  *exit_code (exit_code may be NULL)
 * receives the group's exit code (isola_set_exit_code(); 0 if never set) as
 * it stands when the root isolate has ended.  Other isolates of the group
 * may still run then; isola_vm_shutdown() ends them.  How the root isolate
 * ended is not reported here: an uncaught error reaches its error listeners
 * or the VM's unhandled_error hook, as for any isolate (the `isola` runner
 * uses the hook).  Errors: those of isola_spawn_uri() and isola_run_main();
 * on error nothing ran and *exit_code is untouched.  Any thread that is not
 * an isolate.
 */
ISOLA_EXPORT int isola_run_main_uri(const char *path, isola_value args,
                                    isola_value message, const char *name,
                                    int *exit_code);

/* Sets the exit code of the running isolate's group: what
 * isola_run_main_uri() reports, and so what the `isola` runner exits with
 * (Dart's dart:io exitCode).  The last call, from any isolate of the group,
 * wins.  Errors: ISOLA_ENOTISOLATE.  Isolate only. */
ISOLA_EXPORT int isola_set_exit_code(int code);

/* The exit code of the running isolate's group (0 if never set), or 0
 * outside an isolate.  Isolate only. */
ISOLA_EXPORT int isola_exit_code(void);

/* Why the last module load on the calling thread failed: the dynamic
 * loader's message for ISOLA_EMODULE (glibc's names the file), the path and
 * the missing symbol or the ABI found for ISOLA_EABI and ISOLA_ENOENTRY;
 * "" if it did not fail.  The string is the thread's own and changes with
 * its next load.  Any thread. */
ISOLA_EXPORT const char *isola_module_error(void);

/* ------------------------------------------------------------------------ */
/* Timers                                                                    */
/* ------------------------------------------------------------------------ */

/* A timer of the running isolate; 0 is never a timer. */
typedef uint64_t isola_timer;
typedef void (*isola_timer_fn)(void *arg);

/*
 * Starts a timer of the running isolate: fn(arg) runs as an event of this
 * isolate delay_ms milliseconds from now, then, if period_ms is not 0,
 * every period_ms milliseconds until cancelled (a tick is skipped, not
 * queued, while the previous one waits to be handled).  Timers due at the
 * same time run in the order they were started.  A live timer keeps its
 * isolate alive, as an open port does; a one-shot stops doing so when it
 * has fired.  A paused isolate's due timers wait until it resumes; an
 * isolate that ends cancels its timers.  When memory is short the runtime
 * delays a tick or an fd event (and tries again every millisecond) rather
 * than drop it.  arg is the caller's: the runtime never touches it.  *out
 * receives the timer.
 * Errors: ISOLA_EINVAL (fn or out NULL, a delay or period over about 290
 * years), ISOLA_ENOMEM, ISOLA_ESYS (the timer thread could not start),
 * ISOLA_ESHUTDOWN, ISOLA_ENOTISOLATE, ISOLA_EENDING (as for
 * isola_port_open()).  Isolate only.
 */
ISOLA_EXPORT int isola_timer_start(uint64_t delay_ms, uint64_t period_ms,
                                   isola_timer_fn fn, void *arg,
                                   isola_timer *out);

/* Cancels a timer of the running isolate: its callback does not run again,
 * even if a tick is already queued.  Errors: ISOLA_ECLOSED (not a live
 * timer of this isolate: fired, cancelled, unknown, or another isolate's),
 * ISOLA_ENOTISOLATE.  Isolate only. */
ISOLA_EXPORT int isola_timer_cancel(isola_timer timer);

/* ------------------------------------------------------------------------ */
/* File-descriptor watches                                                   */
/* ------------------------------------------------------------------------ */

/* A watch of the running isolate; 0 is never a watch. */
typedef uint64_t isola_watch;
#define ISOLA_READABLE 0x1u
#define ISOLA_WRITABLE 0x2u
#define ISOLA_FD_ERROR 0x4u /* reported only: an error or a hang-up */
/* events: what is ready (ISOLA_READABLE, ISOLA_WRITABLE, ISOLA_FD_ERROR). */
typedef void (*isola_watch_fn)(int fd, uint32_t events, void *arg);

/*
 * Watches fd for events (ISOLA_READABLE and/or ISOLA_WRITABLE): fn(fd,
 * ready, arg) runs as an event of this isolate whenever fd is ready, until
 * the watch is closed.  The next readiness is reported only after fn
 * returned (the runtime re-arms the watch then, also when fn threw and the
 * isolate's errors are non-fatal), so a busy fd cannot flood the isolate; make fd non-blocking and read or write until it would
 * block.  If the OS refuses to re-arm the watch after an event (out of
 * memory), the watch is closed and fn runs once more, at once, with
 * ISOLA_FD_ERROR, so that its owner is never left waiting; a later
 * isola_watch_set_events() or isola_watch_close() on it then answers
 * ISOLA_ECLOSED.  A watch keeps its isolate alive, as an open port does; an
 * isolate that ends closes its watches.  The caller keeps owning fd: close
 * the watch before closing fd.  arg is the caller's.
 * Errors: ISOLA_EINVAL (fd < 0, fn or out NULL, no or unknown events),
 * ISOLA_ESYS (the OS refused fd: not pollable, or already watched),
 * ISOLA_ENOMEM, ISOLA_ESHUTDOWN, ISOLA_ENOTISOLATE, ISOLA_EENDING (as for
 * isola_port_open()).  Isolate only.
 */
ISOLA_EXPORT int isola_watch_open(int fd, uint32_t events, isola_watch_fn fn,
                                  void *arg, isola_watch *out);

/* Closes a watch of the running isolate: fn does not run again, even for
 * an event already queued.  Errors: ISOLA_ECLOSED (not a live watch of this
 * isolate), ISOLA_ENOTISOLATE.  Isolate only. */
ISOLA_EXPORT int isola_watch_close(isola_watch watch);

/* Changes the events a watch of the running isolate waits for
 * (ISOLA_READABLE and/or ISOLA_WRITABLE, e.g. ISOLA_WRITABLE only while
 * output waits to be written; 0: nothing for now, the watch stays open
 * and keeps the isolate alive, and at most one error or hang-up is
 * reported until events are set again).  Takes effect for the next
 * readiness: an event already reported is delivered as it was, so the
 * callback may see one readiness it no longer asked for (non-blocking
 * I/O takes that in its stride).  Errors: ISOLA_EINVAL (unknown events),
 * ISOLA_ECLOSED (not a live watch of this isolate), ISOLA_ESYS (the OS
 * refused), ISOLA_ENOTISOLATE.  Isolate only. */
ISOLA_EXPORT int isola_watch_set_events(isola_watch watch, uint32_t events);

/* ------------------------------------------------------------------------ */
/* Streams: buffered sockets over fd watches (docs/streams.md)               */
/* ------------------------------------------------------------------------ */

/*
 * A stream is a connected socket owned by one isolate: it reads with an fd
 * watch, cuts what it reads into chunks, lines or length-prefixed frames
 * (each handed to on_data), and writes through a bounded buffer that
 * pushes back on the isolate.  Its struct and both buffers are allocated
 * in the owner's isolate heap (isola_alloc), so the owner's heap limit
 * covers them: a stream checks before it grows a buffer, and one that
 * would pass the limit is reported, not raised (a write returns
 * ISOLA_ENOMEM; a read buffer that cannot grow closes the stream with
 * ISOLA_STREAM_ERROR, err ENOMEM).  Every function is isolate only,
 * from the owner (ISOLA_ENOTOWNER from another isolate); callbacks run as
 * events of the owner.  The stream owns its fd: it is closed with the
 * stream, and when the owner ends every stream and listener it still has
 * is closed (no callback runs then).
 */
typedef struct isola_stream isola_stream;

/* How a stream cuts what it reads. */
typedef enum isola_stream_framing {
  /* Chunks as they are read (at most max_frame bytes each). */
  ISOLA_STREAM_RAW = 0,
  /* Lines ending in '\n'; on_data gets a line without its '\n' (nor a
   * '\r' before it).  A line longer than max_frame closes the stream
   * (ISOLA_STREAM_OVERSIZE); at end of input a last line without '\n' is
   * still delivered.  Writes append the '\n'. */
  ISOLA_STREAM_LINES = 1,
  /* Frames: a 4-byte big-endian length, then that many bytes; on_data gets
   * the bytes.  A length over max_frame closes the stream at once
   * (ISOLA_STREAM_OVERSIZE), before its bytes are read; input that ends
   * inside a frame closes it with ISOLA_STREAM_MALFORMED.  Writes add the
   * prefix. */
  ISOLA_STREAM_FRAMES = 2
} isola_stream_framing;

/* Why a stream closed (on_close's reason). */
typedef enum isola_stream_reason {
  ISOLA_STREAM_CLOSED = 0,    /* this side: isola_stream_close() or _abort() */
  ISOLA_STREAM_EOF = 1,       /* the peer closed its side; all it sent was
                                 delivered */
  ISOLA_STREAM_ERROR = 2,     /* an OS error (err: the errno), e.g.
                                 ECONNRESET, EPIPE, ECONNREFUSED */
  ISOLA_STREAM_OVERSIZE = 3,  /* a line or frame over max_frame */
  ISOLA_STREAM_MALFORMED = 4  /* a line that is not UTF-8 (text), or input
                                 that ended inside a frame */
} isola_stream_reason;

/* The name of a reason ("closed", "eof", ...; "unknown").  Any thread. */
ISOLA_EXPORT const char *isola_stream_reason_name(int reason);

typedef struct isola_stream_options {
  isola_stream_framing framing;
  /* The largest chunk, line or frame read, in bytes (not counting the
   * '\n' or the prefix).  0: 65536.  At most 1 GiB. */
  size_t max_frame;
  /* The most bytes the write buffer holds (prefixes and '\n' included).
   * A write that would pass it is refused whole (ISOLA_EWOULDBLOCK).
   * 0: 262144. */
  size_t write_limit;
  /* ISOLA_STREAM_LINES only: every line must be valid UTF-8, or the stream
   * closes with ISOLA_STREAM_MALFORMED. */
  bool text;
  void *ctx; /* passed to the callbacks; never touched by the runtime */
  /* A chunk, line or frame: data is valid until the callback returns.
   * May write, close, pause reading. */
  void (*on_data)(isola_stream *s, const uint8_t *data, size_t len,
                  void *ctx);
  /* The write buffer is empty again after a write was refused with
   * ISOLA_EWOULDBLOCK, or after it had filled past half of write_limit
   * (so a writer may pause its source early).  May be NULL. */
  void (*on_drain)(isola_stream *s, void *ctx);
  /* Once, when the stream has closed (reason an isola_stream_reason, err
   * the errno for ISOLA_STREAM_ERROR, else 0).  The fd is closed already;
   * s is freed when this returns.  Runs after the event that closed it.
   * May be NULL. */
  void (*on_close)(isola_stream *s, int reason, int err, void *ctx);
} isola_stream_options;

/*
 * Makes a stream of fd, a connected stream socket (e.g. from a listener's
 * on_accept, or passed from another isolate), which it owns from now on
 * (made non-blocking here; closed with the stream, also on error).
 * opts is copied.  Reading starts at once.  *out receives the stream.
 * Errors: ISOLA_EINVAL (fd < 0, opts or out NULL, on_data NULL, a bad
 * framing or max_frame), ISOLA_ESYS (the fd cannot be watched),
 * ISOLA_ENOMEM (also: the heap limit has no room for the stream),
 * ISOLA_ESHUTDOWN, ISOLA_ENOTISOLATE.  Isolate only.
 */
ISOLA_EXPORT int isola_stream_open(int fd, const isola_stream_options *opts,
                                   isola_stream **out);

/* Connects to ip:port (a numeric IPv4 or IPv6 address: no name lookup,
 * which would block) without blocking: the stream exists at once, writes
 * queue until it is connected, and a failed connection closes it with
 * ISOLA_STREAM_ERROR (err ECONNREFUSED, ...).  Errors: those of
 * isola_stream_open(), ISOLA_EINVAL (ip not a numeric address), ISOLA_ESYS
 * (no socket).  Isolate only. */
ISOLA_EXPORT int isola_stream_connect(const char *ip, uint16_t port,
                                      const isola_stream_options *opts,
                                      isola_stream **out);

/*
 * Writes len bytes (one frame or line: the prefix or '\n' is added) with
 * all-or-nothing semantics: as much as the socket takes now is written,
 * the rest is kept in the write buffer and written as the socket drains.
 * If the buffer cannot take it all (it would pass write_limit), nothing is
 * written and ISOLA_EWOULDBLOCK is returned: wait for on_drain.  data may
 * be reused when the call returns.  ISOLA_ENOMEM: the write buffer would
 * have to grow past the owner's heap limit; nothing was written, unless
 * part of the data had gone out already, in which case the stream is
 * closed (on_close: ISOLA_STREAM_ERROR, err ENOMEM).  Errors:
 * ISOLA_EWOULDBLOCK, ISOLA_ENOMEM, ISOLA_EINVAL
 * (s NULL, data NULL with len > 0, a line holding '\n', a frame over 4 GiB
 * or more than write_limit with its prefix), ISOLA_ECLOSED (closed or
 * closing), ISOLA_ENOTOWNER, ISOLA_ENOTISOLATE.  A broken connection is
 * reported through on_close, not here.  Isolate only.
 */
ISOLA_EXPORT int isola_stream_write(isola_stream *s, const void *data,
                                    size_t len);

/* Bytes waiting in the write buffer (0 for NULL).  Isolate only. */
ISOLA_EXPORT size_t isola_stream_buffered(const isola_stream *s);

/* Stops (false) or resumes (true) reading: while stopped no on_data runs
 * and the peer's sends back up in the kernel, then in the peer (TCP flow
 * control).  Errors: ISOLA_EINVAL, ISOLA_ECLOSED, ISOLA_ENOTOWNER,
 * ISOLA_ENOTISOLATE.  Isolate only. */
ISOLA_EXPORT int isola_stream_set_reading(isola_stream *s, bool reading);

/* Closes the stream after what is buffered has been written: no more
 * on_data; on_close(ISOLA_STREAM_CLOSED) once the buffer is written (or
 * with the error that stops it).  Errors: ISOLA_EINVAL, ISOLA_ECLOSED
 * (already closed or closing), ISOLA_ENOTOWNER, ISOLA_ENOTISOLATE.
 * Isolate only. */
ISOLA_EXPORT int isola_stream_close(isola_stream *s);

/* Closes the stream now, dropping what is buffered: on_close
 * (ISOLA_STREAM_CLOSED) after the current event.  Errors as
 * isola_stream_close(), except that a closing stream may be aborted.
 * Isolate only. */
ISOLA_EXPORT int isola_stream_abort(isola_stream *s);

/* A listening socket of the running isolate. */
typedef struct isola_stream_listener isola_stream_listener;

/* Receives each accepted connection: fd is connected, non-blocking and
 * close-on-exec, and the callee owns it (isola_stream_open() it here, or
 * send the number to another isolate that will). */
typedef void (*isola_stream_accept_fn)(isola_stream_listener *l, int fd,
                                       void *ctx);

/* Listens on ip:port (numeric; port 0: any free port, see
 * isola_stream_listener_port()) with a backlog of 128, and calls
 * on_accept for every connection, as an event of the calling isolate.
 * The listener keeps the isolate alive until closed.  Errors:
 * ISOLA_EINVAL (ip, on_accept or out NULL, ip not numeric), ISOLA_ESYS
 * (socket, bind or listen failed: errno says why), ISOLA_ENOMEM,
 * ISOLA_ESHUTDOWN, ISOLA_ENOTISOLATE.  Isolate only. */
ISOLA_EXPORT int isola_stream_listen(const char *ip, uint16_t port,
                                     isola_stream_accept_fn on_accept,
                                     void *ctx,
                                     isola_stream_listener **out);

/* The port the listener is bound to (0 for NULL).  Isolate only. */
ISOLA_EXPORT uint16_t isola_stream_listener_port(
    const isola_stream_listener *l);

/* Closes the listener and its socket (also from inside its own
 * on_accept: no more on_accept runs); l is freed after the current
 * event.  Connections accepted before are not affected.  Errors:
 * ISOLA_EINVAL, ISOLA_ECLOSED (closed already), ISOLA_ENOTOWNER,
 * ISOLA_ENOTISOLATE.  Isolate only, the owner. */
ISOLA_EXPORT int isola_stream_listener_close(isola_stream_listener *l);

/* ------------------------------------------------------------------------ */
/* Native ports                                                              */
/* ------------------------------------------------------------------------ */

/* A native port's handler: plain C run on the pool (Dart_NewNativePort).
 * port is the native port; message is valid until the handler returns;
 * reply_to as for isola_handler. */
typedef void (*isola_native_handler)(void *ctx, isola_port port,
                                     isola_value message, isola_port reply_to);

/*
 * Opens a native port: messages sent to it (from any thread) are passed to
 * handler(ctx, ...) on the pool.  concurrent false: one message at a time,
 * in the order a sender sent them.  concurrent true: up to one handler per
 * pool worker at once, so handler must be thread-safe and messages from one
 * sender may be handled out of order.  The port is served by hidden
 * isolates named name (NULL: "native"), which the VM's hooks see; from an
 * isolate they join its group.
 * What applies to a handler: its hidden isolate has errors non-fatal and
 * no heap limit (isola_config.heap_limit does not apply), so a handler that
 * throws, or a message of any size, does not end the port; an uncaught
 * error is reported as for any isolate (the unhandled_error hook), and the
 * message counts as handled.  Every send that returned ISOLA_OK is handled
 * (a concurrent port that cannot hand a message to a worker, for lack of
 * memory, runs the handler on the dispatcher itself), except when the VM
 * shuts down first, or when a handler ends its own hidden isolate with
 * isola_exit() or closes the port with isola_port_close(): then a serial
 * port is closed and what was queued is dropped (a concurrent port goes on
 * with its other workers).  A handler must do neither.
 * *out receives the port.  Errors: ISOLA_EINVAL (handler or out NULL),
 * ISOLA_ENOMEM, ISOLA_ELIMIT (the hidden isolates exceed
 * isola_config.max_isolates; nothing is left running), ISOLA_ENOVM,
 * ISOLA_ESHUTDOWN, ISOLA_ESYS (as for isola_spawn()), ISOLA_EBUSY (from a
 * hook on a pool or root thread outside an event: the wait for the hidden
 * isolates would hold the thread they need; see isola_run()).  Any
 * thread.
 */
ISOLA_EXPORT int isola_native_port_new(const char *name,
                                       isola_native_handler handler,
                                       void *ctx, bool concurrent,
                                       isola_port *out);

/* Closes a native port and waits until no handler of it runs: messages
 * sent to it before, by the calling thread, are handled first; later sends
 * fail with ISOLA_ECLOSED.  From an isolate, the wait hands the worker to
 * a stand-in (isola_blocking_begin).  The wait ends when every hidden
 * isolate of the port has ended, however it ended, so it needs no memory
 * and does not depend on a handler returning normally; it lasts as long
 * as a handler of the port runs.  VM shutdown closes the native ports left
 * open.  Errors: ISOLA_ECLOSED (not an open native port), ISOLA_EBUSY
 * (called from a handler of this port: it would wait for itself; the port
 * stays open; or from a hook, as isola_native_port_new()), ISOLA_ENOVM,
 * ISOLA_ESHUTDOWN (the VM is shutting down: the port is closed and no
 * handler of it runs any more, but messages still queued were dropped).
 * Any thread. */
ISOLA_EXPORT int isola_native_port_close(isola_port port);

#ifdef __cplusplus
}
#endif

#endif /* ISOLA_H */
