/* SPDX-License-Identifier: MIT */
/*
 * The fault sweep (issue 13): every scenario is run again and again, the
 * 1st, 2nd, 3rd ... call of one fault category (src/platform/fault.h:
 * allocations, mmap, thread creation, epoll, eventfd/timerfd, dlopen,
 * getrandom) made to fail, until a run sees no failure.  Each run is a
 * child process, so that a crash, a hang or a leak is pinned to one
 * scenario, category and failure index:
 *
 *   - every call the scenario makes must return OK or one of the errors
 *     its documentation lists (TH_CHECK aborts the child otherwise);
 *   - conservation: every message whose send returned OK is handled
 *     exactly once, every isolate whose spawn returned OK runs its entry
 *     exactly once and tells its exit listener exactly once, every timer
 *     started fires; nothing that failed is handled;
 *   - afterwards, with nothing failing any more, a spawn and a send work
 *     in the same VM (isola_run), and isola_vm_shutdown returns OK (no
 *     isolate left stuck), within the child's time limit (no hang);
 *   - LeakSanitizer (ASan builds) checks the child leaked nothing.
 *
 * Built only with -DISOLA_FAULT_INJECTION=ON.  ISOLA_FAULT_ONLY=<scenario>
 * and ISOLA_FAULT_AT=<category>:<n> rerun one failing run alone (in the
 * test process itself, so a debugger can follow it).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fault.h"

#if TH_HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

TestSuite(fault, .timeout = TH_TEST_TIMEOUT_S * 10);

/* ---------------------------------------------------------------------- */
/* Checks inside a run                                                     */
/* ---------------------------------------------------------------------- */

/* rc must be OK or one of the listed errors (a list ended by 1); returns
 * rc.  Any thread: aborts the run otherwise. */
static int expect_rc(int rc, const char *call, const char *file, int line,
                     const int *allowed) {
  if (rc == ISOLA_OK) return rc;
  for (const int *a = allowed; *a != 1; a++)
    if (rc == *a) return rc;
  th_check_failed(file, line,
                  "%s returned %s, which its documentation does not list",
                  call, isola_err_name(rc));
}

/* The value of call, which must be OK or one of the errors named after it. */
#define EXPECT(call, ...)                                                    \
  expect_rc((call), #call, __FILE__, __LINE__, (const int[]){__VA_ARGS__, 1})

/* How long a run may wait for one event before it counts as lost. */
#define RUN_WAIT_MS 10000L

/* The injected failure's call stack as offsets into the executable, for
 * addr2line -f -e test_fault <offsets>. */
static const char *fault_stack(void) {
  extern char __executable_start;
  static char text[400];
  text[0] = '\0';
  for (int c = 0; c < ISOLA__FAULT_NCATS; c++) {
    void *frames[12];
    int n = isola__fault_first_stack((isola__fault_cat)c, frames, 12);
    size_t at = 0;
    for (int i = 1; i < n && at + 20 < sizeof text; i++)
      at += (size_t)snprintf(text + at, sizeof text - at, " 0x%lx",
                             (unsigned long)((char *)frames[i] -
                                             &__executable_start));
    if (n) break;
  }
  return text;
}

#define WAIT_GE(counter, target)                                             \
  do {                                                                       \
    long fi_t_ = (long)(target);                                             \
    if (!th_counter_wait_ge((counter), fi_t_, RUN_WAIT_MS))                  \
      th_check_failed(__FILE__, __LINE__,                                    \
                      "lost: %s is %ld, waited for %ld (the failed call: "   \
                      "addr2line -f -e test_fault%s)",                       \
                      #counter, th_counter_get(counter), fi_t_,              \
                      fault_stack());                                        \
  } while (0)

/* ---------------------------------------------------------------------- */
/* A sink: a native port that counts what reaches it                       */
/* ---------------------------------------------------------------------- */

/* Messages to the sink are ints: kind * 1000000 + payload. */
enum { K_ENTRY = 1, K_EXIT, K_HANDLED, K_PORT, K_TIMER, K_DONE, K_LOCAL };

static th_counter sink_n[8];
static th_counter sink_any; /* every message counted */
static _Atomic int64_t sink_last[8];
static isola_port sink = ISOLA_PORT_NONE;

/* A port is recorded (K_PORT); a tagged int counted under its kind; a
 * list by its first item; anything else (an error notice's message, a
 * run_async completion's flag) only in sink_any. */
static void sink_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  if (msg.kind == ISOLA_LIST && msg.len > 0) {
    isola_value first;
    TH_CHECK_OK(isola_list_get(msg, 0, &first));
    sink_handler(ctx, port, first, reply_to);
    return;
  }
  if (msg.kind == ISOLA_PORT) {
    atomic_store(&sink_last[K_PORT], (int64_t)msg.as.port);
    th_counter_add(&sink_n[K_PORT], 1);
  } else if (msg.kind == ISOLA_INT) {
    int64_t k = msg.as.i / 1000000, v = msg.as.i % 1000000;
    TH_CHECK(k > 0 && k < 8);
    atomic_store(&sink_last[k], v);
    th_counter_add(&sink_n[k], 1);
  }
  th_counter_add(&sink_any, 1);
}

static isola_value tag(int kind, int64_t v) {
  return isola_int(kind * 1000000 + v);
}

/* Opens the sink; false when a documented error stopped it. */
static bool sink_open(void) {
  return EXPECT(isola_native_port_new("sink", sink_handler, NULL, false,
                                       &sink),
                ISOLA_ENOMEM, ISOLA_ELIMIT, ISOLA_ESYS) == ISOLA_OK;
}

/* ---------------------------------------------------------------------- */
/* One run                                                                 */
/* ---------------------------------------------------------------------- */

static isola_value doubled(isola_value arg) {
  return isola_int(arg.as.i * 2);
}

/* Starts the VM for a run; false if a documented error stopped it (then
 * it must start once nothing fails any more). */
static bool run_vm_init(void) {
  isola_config c;
  isola_config_init(&c);
  c.workers = 2;
  c.shutdown_grace_ms = 5000;
  int rc = EXPECT(isola_vm_init(&c), ISOLA_ENOMEM, ISOLA_ESYS);
  if (rc == ISOLA_OK) return true;
  isola__fault_disarm();
  TH_CHECK_OK(isola_vm_init(&c));
  return true;
}

/* The end of every run: nothing fails any more; a spawn and a send still
 * work (isola_run: spawn, the argument, the result); the VM shuts down
 * with nothing stuck. */
static void run_finish(void) {
  isola__fault_disarm();
  isola_value r;
  TH_CHECK_OK(isola_run(doubled, isola_int(21), &r));
  TH_CHECK(r.kind == ISOLA_INT && r.as.i == 42);
  if (sink != ISOLA_PORT_NONE) {
    int64_t before = th_counter_get(&sink_n[K_DONE]);
    TH_CHECK_OK(isola_send(sink, tag(K_DONE, 1)));
    WAIT_GE(&sink_n[K_DONE], before + 1);
  }
  isola_shutdown_report rep;
  int rc = isola_vm_shutdown(&rep);
  TH_CHECKF(rc == ISOLA_OK, "shutdown: %s: %s", isola_err_name(rc),
            rc == ISOLA_ETIMEDOUT ? rep.text : "");
}

/* ---------------------------------------------------------------------- */
/* Scenarios                                                               */
/* ---------------------------------------------------------------------- */

/* spawn: isolates from a plain thread, each with an exit message to the
 * sink; every one that started runs its entry once and exits once. */
static void entry_tell(isola_value msg) {
  isola_port s;
  TH_CHECK_OK(isola_value_get_port(msg, &s));
  /* The entry ran: if this send fails, the exit notice still counts. */
  int rc = EXPECT(isola_send(s, tag(K_ENTRY, 1)), ISOLA_ENOMEM);
  if (rc != ISOLA_OK) th_counter_add(&sink_n[K_ENTRY], 1);
}

static void sc_spawn(void) {
  if (!sink_open()) return;
  long started = 0;
  for (int i = 0; i < 6; i++) {
    isola_spawn_options o = {0};
    o.on_exit = sink;
    o.on_exit_message = tag(K_EXIT, i);
    o.name = "spawned";
    if (EXPECT(isola_spawn(entry_tell, isola_sendport(sink), &o, NULL),
               ISOLA_ENOMEM, ISOLA_ESYS) == ISOLA_OK)
      started++;
  }
  WAIT_GE(&sink_n[K_ENTRY], started);
  WAIT_GE(&sink_n[K_EXIT], started);
}

/* send: every kind of value from a plain thread to an isolate's port;
 * every send that returned OK is handled once, with the value intact. */
static _Atomic long handled;

static void on_value(void *ctx, isola_port port, isola_value msg,
                     isola_port reply_to) {
  (void)ctx, (void)reply_to;
  if (msg.kind == ISOLA_STRING) {
    const char *s;
    size_t n;
    TH_CHECK_OK(isola_value_get_str(msg, &s, &n));
    if (n == 4 && memcmp(s, "stop", 4) == 0) {
      isola_port_close(port);
      return;
    }
  }
  if (msg.kind == ISOLA_BUFFER) {
    uint8_t *d;
    size_t n;
    TH_CHECK_OK(isola_value_get_buffer(msg, &d, &n));
    TH_CHECK(n == 64 && d[0] == 7 && d[63] == 9);
  }
  atomic_fetch_add(&handled, 1);
}

static void entry_receiver(isola_value msg) {
  isola_port s, p;
  TH_CHECK_OK(isola_value_get_port(msg, &s));
  if (EXPECT(isola_port_open(on_value, NULL, &p), ISOLA_ENOMEM) != ISOLA_OK)
    return; /* ends: the exit notice tells the test */
  if (EXPECT(isola_send(s, isola_sendport(p)), ISOLA_ENOMEM) != ISOLA_OK)
    isola_port_close(p);
}

/* Spawns a receiver and waits for its port; NONE if it could not start
 * or ended first (a documented failure). */
static isola_port start_receiver(void) {
  isola_spawn_options o = {0};
  o.on_exit = sink;
  o.on_exit_message = tag(K_EXIT, 0);
  if (EXPECT(isola_spawn(entry_receiver, isola_sendport(sink), &o, NULL),
             ISOLA_ENOMEM, ISOLA_ESYS) != ISOLA_OK)
    return ISOLA_PORT_NONE;
  /* Either its port arrives, or it ends without one (its port message
   * would come before its exit notice: one sender, in order). */
  WAIT_GE(&sink_any, 1);
  if (th_counter_get(&sink_n[K_PORT]) > 0)
    return (isola_port)atomic_load(&sink_last[K_PORT]);
  return ISOLA_PORT_NONE;
}

static void sc_send(void) {
  if (!sink_open()) return;
  isola_port p = start_receiver();
  if (p == ISOLA_PORT_NONE) return;
  long ok = 0;
  uint8_t raw[5] = {1, 2, 3, 4, 5};
  isola_value pair[4] = {isola_str("k"), isola_int(1), isola_int(2),
                         isola_double(2.5)};
  isola_value nested[3] = {isola_list(pair, 4), isola_map(pair, 2),
                           isola_bytes(raw, 5)};
  isola_value kinds[] = {isola_null(),          isola_bool(true),
                         isola_int(-5),         isola_double(1.5),
                         isola_str("héllo"),    isola_bytes(raw, 5),
                         isola_list(pair, 4),   isola_map(pair, 2),
                         isola_sendport(sink),  isola_cap(77),
                         isola_list(nested, 3)};
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
    if (EXPECT(isola_send(p, kinds[i]), ISOLA_ENOMEM) == ISOLA_OK) ok++;
  for (int i = 0; i < 3; i++) { /* transfer */
    isola_buffer *b = isola_buffer_new(64);
    if (!b) continue;
    isola_buffer_data(b)[0] = 7;
    isola_buffer_data(b)[63] = 9;
    int rc = EXPECT(isola_send(p, isola_transfer(&b)), ISOLA_ENOMEM);
    if (rc == ISOLA_OK) {
      TH_CHECK(b == NULL);
      ok++;
    } else {
      TH_CHECK(b != NULL); /* still the caller's */
      isola_buffer_free(b);
    }
  }
  isola__fault_disarm();
  TH_CHECK_OK(isola_send(p, isola_str("stop")));
  WAIT_GE(&sink_n[K_EXIT], 1);
  TH_CHECKF(atomic_load(&handled) == ok, "handled %ld of %ld sent",
            atomic_load(&handled), ok);
}

/* isola_exit: an isolate ends by sending a buffer it moves; the message
 * arrives once, or isola_exit failed and the isolate carries on. */
static void entry_exit(isola_value msg) {
  isola_port s;
  TH_CHECK_OK(isola_value_get_port(msg, &s));
  isola_buffer *b = isola_buffer_new(1024);
  if (!b) { /* no memory for the buffer: "reported", it never sent */
    th_counter_add(&sink_n[K_HANDLED], 1);
    return;
  }
  int rc = EXPECT(isola_exit(s, isola_list((isola_value[]){tag(K_HANDLED, 1),
                                                          isola_transfer(&b)},
                                          2)),
                  ISOLA_ENOMEM);
  TH_CHECK(rc != ISOLA_OK); /* returns only on error */
  TH_CHECK(b != NULL);
  isola_buffer_free(b);
  th_counter_add(&sink_n[K_HANDLED], 1); /* "reported": exit failed */
}

static void sc_exit(void) {
  if (!sink_open()) return;
  long started = 0;
  for (int i = 0; i < 3; i++) {
    isola_spawn_options o = {0};
    o.on_exit = sink;
    o.on_exit_message = tag(K_EXIT, i);
    if (EXPECT(isola_spawn(entry_exit, isola_sendport(sink), &o, NULL),
               ISOLA_ENOMEM, ISOLA_ESYS) == ISOLA_OK)
      started++;
  }
  WAIT_GE(&sink_n[K_EXIT], started);
  WAIT_GE(&sink_n[K_HANDLED], started);
  TH_CHECK(th_counter_get(&sink_n[K_HANDLED]) == started);
}

/* isola_run from a plain thread: a result, a thrown error, or a
 * documented failure. */
static isola_value throws(isola_value arg) {
  (void)arg;
  isola_throw("thrown on purpose");
}

static isola_value list_result(isola_value arg) {
  isola_value out;
  isola_value items[2] = {arg, isola_str("result")};
  if (isola_value_copy(isola_list(items, 2), &out) != ISOLA_OK)
    isola_throw("no memory for the result");
  return out;
}

static void sc_run(void) {
  isola_value r;
  int rc = EXPECT(isola_run(doubled, isola_int(4), &r), ISOLA_ENOMEM, ISOLA_ESYS,
                  ISOLA_EFAILED);
  if (rc == ISOLA_OK) TH_CHECK(r.as.i == 8);
  isola_value_free(&r);
  rc = EXPECT(isola_run(throws, isola_null(), &r), ISOLA_ENOMEM, ISOLA_ESYS,
              ISOLA_EFAILED);
  TH_CHECK(rc != ISOLA_OK);
  isola_value_free(&r);
  rc = EXPECT(isola_run(list_result, isola_str("arg"), &r), ISOLA_ENOMEM, ISOLA_ESYS,
              ISOLA_EFAILED);
  if (rc == ISOLA_OK) TH_CHECK(r.kind == ISOLA_LIST && r.len == 2);
  isola_value_free(&r);
  if (!sink_open()) return;
  rc = EXPECT(isola_run_async(doubled, isola_int(5), sink), ISOLA_ENOMEM, ISOLA_ESYS);
  (void)rc; /* the completion is a list: the sink checks ints only */
}

/* Control: pause, ping, listeners, resume, kill, on a live isolate. */
static void on_keep(void *ctx, isola_port port, isola_value msg,
                    isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
}

static void entry_keep(isola_value msg) {
  (void)msg;
  isola_port p;
  EXPECT(isola_port_open(on_keep, NULL, &p), ISOLA_ENOMEM);
}

static void sc_control(void) {
  if (!sink_open()) return;
  isola_isolate h;
  isola_spawn_options o = {0};
  o.paused = true;
  if (EXPECT(isola_spawn(entry_keep, isola_null(), &o, &h), ISOLA_ENOMEM, ISOLA_ESYS) !=
      ISOLA_OK)
    return;
  long exits = 0, pings = 0, immediate = 0;
  if (EXPECT(isola_add_exit_listener(&h, sink, tag(K_EXIT, 1)),
             ISOLA_ENOMEM) == ISOLA_OK)
    exits++;
  EXPECT(isola_add_error_listener(&h, sink), ISOLA_ENOMEM);
  if (EXPECT(isola_ping(&h, sink, tag(K_HANDLED, 1), ISOLA_IMMEDIATE),
             ISOLA_ENOMEM) == ISOLA_OK)
    pings++, immediate++;
  isola_capability c = isola_capability_new();
  EXPECT(isola_pause(&h, c), ISOLA_ENOMEM);
  bool resumed = EXPECT(isola_resume(&h, c), ISOLA_ENOMEM) == ISOLA_OK;
  if (EXPECT(isola_ping(&h, sink, tag(K_HANDLED, 2), ISOLA_BEFORE_NEXT_EVENT),
             ISOLA_ENOMEM) == ISOLA_OK)
    pings++;
  /* Immediate pings are answered while paused; wait for them before the
   * isolate can end, so that each answer is due. */
  WAIT_GE(&sink_n[K_HANDLED], immediate);
  isola__fault_disarm();
  if (!resumed) TH_CHECK_OK(isola_resume(&h, c)); /* its pause still holds */
  TH_CHECK_OK(isola_resume(&h, 0));
  WAIT_GE(&sink_n[K_HANDLED], pings);
  TH_CHECK_OK(isola_kill(&h, ISOLA_IMMEDIATE));
  WAIT_GE(&sink_n[K_EXIT], exits);
}

/* Timers: one-shots and a periodic; every timer started fires. */
static _Atomic long ticks;
static isola_timer periodic;

static void on_tick(void *arg) {
  (void)arg;
  th_counter_add(&sink_n[K_TIMER], 1);
}

static void on_periodic(void *arg) {
  (void)arg;
  if (atomic_fetch_add(&ticks, 1) + 1 == 3)
    TH_CHECK_OK(isola_timer_cancel(periodic));
}

static void entry_timers(isola_value msg) {
  (void)msg;
  long started = 0;
  for (int i = 0; i < 4; i++) {
    isola_timer t;
    if (EXPECT(isola_timer_start((uint64_t)i, 0, on_tick, NULL, &t),
               ISOLA_ENOMEM, ISOLA_ESYS) == ISOLA_OK)
      started++;
  }
  if (EXPECT(isola_timer_start(1, 1, on_periodic, NULL, &periodic),
             ISOLA_ENOMEM, ISOLA_ESYS) != ISOLA_OK)
    atomic_store(&ticks, 3);
  /* The isolate lives while a timer lives; its exit tells the test. */
  atomic_store(&sink_last[K_ENTRY], started);
  th_counter_add(&sink_n[K_ENTRY], 1);
}

static void sc_timers(void) {
  if (!sink_open()) return;
  isola_spawn_options o = {0};
  o.on_exit = sink;
  o.on_exit_message = tag(K_EXIT, 0);
  if (EXPECT(isola_spawn(entry_timers, isola_null(), &o, NULL),
             ISOLA_ENOMEM, ISOLA_ESYS) != ISOLA_OK)
    return;
  WAIT_GE(&sink_n[K_ENTRY], 1);
  WAIT_GE(&sink_n[K_EXIT], 1);
  TH_CHECKF(th_counter_get(&sink_n[K_TIMER]) == atomic_load(&sink_last[K_ENTRY]),
            "%ld of %ld one-shot timers fired",
            th_counter_get(&sink_n[K_TIMER]),
            (long)atomic_load(&sink_last[K_ENTRY]));
  TH_CHECK(atomic_load(&ticks) == 3);
}

/* fd watches: a pipe written in chunks; every byte is read. */
static int pipe_fds[2];
static isola_watch watch;
static _Atomic long bytes_read;

static void on_readable(int fd, uint32_t ev, void *arg) {
  (void)arg, (void)ev;
  char buf[64];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      atomic_fetch_add(&bytes_read, n);
      continue;
    }
    if (n == 0) { /* the writer closed: done */
      TH_CHECK_OK(isola_watch_close(watch));
      return;
    }
    TH_CHECK(errno == EAGAIN);
    return;
  }
}

static void entry_watch(isola_value msg) {
  (void)msg;
  if (EXPECT(isola_watch_open(pipe_fds[0], ISOLA_READABLE, on_readable, NULL,
                              &watch),
             ISOLA_ENOMEM, ISOLA_ESYS) != ISOLA_OK)
    atomic_store(&bytes_read, -1);
  th_counter_add(&sink_n[K_ENTRY], 1);
}

static void sc_watch(void) {
  if (!sink_open()) return;
  TH_CHECK(pipe2(pipe_fds, O_NONBLOCK | O_CLOEXEC) == 0);
  isola_spawn_options o = {0};
  o.on_exit = sink;
  o.on_exit_message = tag(K_EXIT, 0);
  if (EXPECT(isola_spawn(entry_watch, isola_null(), &o, NULL),
             ISOLA_ENOMEM, ISOLA_ESYS) != ISOLA_OK) {
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return;
  }
  WAIT_GE(&sink_n[K_ENTRY], 1);
  long wrote = 0;
  for (int i = 0; i < 5; i++) {
    char chunk[10];
    memset(chunk, 'a' + i, sizeof chunk);
    TH_CHECK(write(pipe_fds[1], chunk, sizeof chunk) == sizeof chunk);
    wrote += (long)sizeof chunk;
  }
  close(pipe_fds[1]);
  WAIT_GE(&sink_n[K_EXIT], 1);
  close(pipe_fds[0]);
  if (atomic_load(&bytes_read) >= 0)
    TH_CHECKF(atomic_load(&bytes_read) == wrote, "read %ld of %ld bytes",
              atomic_load(&bytes_read), wrote);
}

/* Microtasks and isolate-locals: every microtask scheduled runs once;
 * every local made is destroyed once. */
static _Atomic long mt_ran, locals_made, locals_destroyed;

static void local_init(void *v) {
  (void)v;
  atomic_fetch_add(&locals_made, 1);
}

static void local_destroy(void *v) {
  (void)v;
  atomic_fetch_add(&locals_destroyed, 1);
}

static ISOLA_LOCAL_INIT(long, a_local, local_init, local_destroy);
static ISOLA_LOCAL_INIT(char[200], b_local, local_init, local_destroy);

static void microtask(void *arg) {
  (void)arg;
  atomic_fetch_add(&mt_ran, 1);
}

static void entry_micro(isola_value msg) {
  (void)msg;
  long scheduled = 0;
  for (int i = 0; i < 5; i++)
    if (EXPECT(isola_microtask(microtask, NULL), ISOLA_ENOMEM) == ISOLA_OK)
      scheduled++;
  isola_local_get(&a_local);
  isola_local_get(&b_local);
  atomic_store(&sink_last[K_ENTRY], scheduled);
}

static void sc_micro(void) {
  if (!sink_open()) return;
  isola_spawn_options o = {0};
  o.on_exit = sink;
  o.on_exit_message = tag(K_EXIT, 0);
  if (EXPECT(isola_spawn(entry_micro, isola_null(), &o, NULL),
             ISOLA_ENOMEM, ISOLA_ESYS) != ISOLA_OK)
    return;
  WAIT_GE(&sink_n[K_EXIT], 1);
  TH_CHECKF(atomic_load(&mt_ran) == atomic_load(&sink_last[K_ENTRY]),
            "%ld of %ld microtasks ran", atomic_load(&mt_ran),
            (long)atomic_load(&sink_last[K_ENTRY]));
  TH_CHECKF(atomic_load(&locals_made) == atomic_load(&locals_destroyed),
            "%ld locals made, %ld destroyed", atomic_load(&locals_made),
            atomic_load(&locals_destroyed));
}

/* The heap limit: an isolate allocates past its limit and dies of it. */
static void entry_hog(isola_value msg) {
  (void)msg;
  for (int i = 0; i < 100; i++) {
    char *p = isola_alloc(512);
    p[0] = 1;
  }
  TH_CHECK(!"the heap limit did not stop the isolate");
}

static void sc_heap(void) {
  if (!sink_open()) return;
  isola_spawn_options o = {0};
  o.on_exit = sink;
  o.on_exit_message = tag(K_EXIT, 0);
  o.on_error = sink; /* [message, stack]: counted in sink_any only */
  o.heap_limit = 8192;
  if (EXPECT(isola_spawn(entry_hog, isola_null(), &o, NULL), ISOLA_ENOMEM, ISOLA_ESYS) !=
      ISOLA_OK)
    return;
  WAIT_GE(&sink_n[K_EXIT], 1);
}

/* The name server. */
static void sc_names(void) {
  if (!sink_open()) return;
  int rc = EXPECT(isola_name_register("fault.sink", sink), ISOLA_ENOMEM,
                  ISOLA_ESYS);
  isola_port p;
  int lk = EXPECT(isola_name_lookup("fault.sink", &p), ISOLA_ENOTFOUND);
  if (rc == ISOLA_OK) {
    TH_CHECK(lk == ISOLA_OK && p == sink);
    TH_CHECK_OK(isola_name_remove("fault.sink"));
  } else {
    TH_CHECK(lk == ISOLA_ENOTFOUND);
  }
  TH_CHECK_RC(isola_name_lookup("fault.sink", &p), ISOLA_ENOTFOUND);
}

/* Native ports: every send that returned OK is handled once; close waits
 * for them. */
static _Atomic long native_handled;

static void native_count(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
  atomic_fetch_add(&native_handled, 1);
}

static void sc_native(void) {
  for (int conc = 0; conc < 2; conc++) {
    isola_port np;
    atomic_store(&native_handled, 0);
    if (EXPECT(isola_native_port_new("counter", native_count, NULL, conc == 1,
                                     &np),
               ISOLA_ENOMEM, ISOLA_ELIMIT, ISOLA_ESYS) != ISOLA_OK)
      continue;
    long ok = 0;
    for (int i = 0; i < 20; i++)
      if (EXPECT(isola_send(np, isola_int(i)), ISOLA_ENOMEM) == ISOLA_OK) ok++;
    int rc = EXPECT(isola_native_port_close(np), ISOLA_ENOMEM);
    if (rc != ISOLA_OK) {
      isola__fault_disarm();
      TH_CHECK_OK(isola_native_port_close(np));
    }
    TH_CHECKF(atomic_load(&native_handled) == ok,
              "native port: %ld handled of %ld sent",
              atomic_load(&native_handled), ok);
  }
}

/* The wire format, no VM: encode and decode, or a documented error. */
static void sc_wire(void) {
  uint8_t raw[40];
  memset(raw, 3, sizeof raw);
  isola_value inner[3] = {isola_str("wire"), isola_bytes(raw, sizeof raw),
                          isola_double(-0.5)};
  isola_value kv[4] = {isola_str("a"), isola_list(inner, 3), isola_int(1),
                       isola_cap(9)};
  isola_value v = isola_map(kv, 2);
  uint8_t *bytes = NULL;
  size_t len = 0;
  if (EXPECT(isola_wire_encode(v, &bytes, &len), ISOLA_ENOMEM) != ISOLA_OK)
    return;
  isola_value back;
  int rc = EXPECT(isola_wire_decode(bytes, len, NULL, &back), ISOLA_ENOMEM);
  free(bytes);
  if (rc != ISOLA_OK) return;
  isola_value copy;
  rc = EXPECT(isola_value_copy(back, &copy), ISOLA_ENOMEM);
  /* isola_value_equal needs memory for containers and says false without
   * it (the header says so): compare with nothing failing. */
  isola__fault_disarm();
  TH_CHECK(isola_value_equal(v, back));
  if (rc == ISOLA_OK) {
    TH_CHECK(isola_value_equal(v, copy));
    isola_value_free(&copy);
  }
  isola_value_free(&back);
}

/* Shutdown with work in flight: pairs of isolates bounce a message for
 * ever; shutdown must end them all. */
static void on_bounce(void *ctx, isola_port port, isola_value msg,
                      isola_port reply_to) {
  (void)ctx;
  if (reply_to == ISOLA_PORT_NONE) return;
  /* A send that fails ends the bouncing of this pair, not the test. */
  EXPECT(isola_send_reply(reply_to, msg, port), ISOLA_ENOMEM,
         ISOLA_ESHUTDOWN, ISOLA_ECLOSED);
}

static void entry_bounce(isola_value msg) {
  isola_port me;
  if (EXPECT(isola_port_open(on_bounce, NULL, &me), ISOLA_ENOMEM) != ISOLA_OK)
    return;
  if (msg.kind == ISOLA_PORT)
    EXPECT(isola_send_reply(msg.as.port, isola_int(1), me), ISOLA_ENOMEM,
           ISOLA_ECLOSED, ISOLA_ESHUTDOWN);
  else
    EXPECT(isola_send(sink, isola_sendport(me)), ISOLA_ENOMEM);
}

static void sc_shutdown(void) {
  if (!sink_open()) return;
  for (int i = 0; i < 2; i++) {
    long before = th_counter_get(&sink_n[K_PORT]);
    if (EXPECT(isola_spawn(entry_bounce, isola_null(), NULL, NULL),
               ISOLA_ENOMEM, ISOLA_ESYS) != ISOLA_OK)
      continue;
    if (!th_counter_wait_ge(&sink_n[K_PORT], before + 1, 2000)) continue;
    isola_port first = (isola_port)atomic_load(&sink_last[K_PORT]);
    EXPECT(isola_spawn(entry_bounce, isola_sendport(first), NULL, NULL),
           ISOLA_ENOMEM, ISOLA_ESYS);
  }
  /* run_finish shuts down with the pairs still bouncing. */
}

/* spawn_uri: a module in a new group (tests/modules/echo.c): it sends
 * [tag, calls, args, group, quit port] and stays until told to quit. */
static void on_module_hello(void *ctx, isola_port port, isola_value msg,
                            isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  if (msg.kind == ISOLA_LIST && msg.len == 5) {
    isola_value quit;
    TH_CHECK_OK(isola_list_get(msg, 4, &quit));
    th_counter_add(&sink_n[K_ENTRY], 1);
    /* If the quit cannot be sent, the test sends it once nothing fails. */
    if (EXPECT(isola_send(quit.as.port, isola_null()), ISOLA_ENOMEM) !=
        ISOLA_OK)
      atomic_store(&sink_last[K_PORT], (int64_t)quit.as.port);
    th_counter_add(&sink_any, 1);
    return;
  }
  sink_handler(NULL, port, msg, reply_to);
}

static void sc_spawn_uri(void) {
  if (EXPECT(isola_native_port_new("module sink", on_module_hello, NULL,
                                   false, &sink),
             ISOLA_ENOMEM, ISOLA_ELIMIT, ISOLA_ESYS) != ISOLA_OK)
    return;
  isola_spawn_options o = {0};
  o.on_exit = sink;
  o.on_exit_message = tag(K_EXIT, 0);
  isola_value args[1] = {isola_str("arg")};
  int rc = EXPECT(isola_spawn_uri(TM_ECHO_A, isola_list(args, 1),
                                  isola_sendport(sink), &o, NULL),
                  ISOLA_ENOMEM, ISOLA_ESYS, ISOLA_EMODULE);
  if (rc != ISOLA_OK) return;
  /* It runs isola_main once (or fails there and ends), then ends once it
   * gets its quit. */
  WAIT_GE(&sink_any, 1);
  isola__fault_disarm();
  isola_port quit = (isola_port)atomic_load(&sink_last[K_PORT]);
  if (quit != ISOLA_PORT_NONE) TH_CHECK_OK(isola_send(quit, isola_null()));
  WAIT_GE(&sink_n[K_EXIT], 1);
}

/* Socket streams: a line echo over 127.0.0.1 (a listener and a client
 * in one isolate).  Every line written is echoed back, unless a stream
 * reports its end with an error first; either way both streams and the
 * listener close and the isolate ends. */
#define LINES 20
static isola_stream_listener *listener;
static isola_stream *client;
static long lines_echoed;
static int closes;
static bool reported; /* a call returned an error, or a stream closed with one */

static void maybe_done(void) {
  if (closes == 2 && listener) {
    TH_CHECK_OK(isola_stream_listener_close(listener));
    listener = NULL;
  }
}

static void on_server_line(isola_stream *s, const uint8_t *d, size_t n,
                           void *ctx) {
  (void)ctx;
  /* A write refused for memory closes the server side: reported. */
  if (EXPECT(isola_stream_write(s, d, n), ISOLA_ENOMEM, ISOLA_ECLOSED) !=
      ISOLA_OK) {
    reported = true;
    isola_stream_abort(s);
  }
}

static void on_client_line(isola_stream *s, const uint8_t *d, size_t n,
                           void *ctx) {
  (void)ctx, (void)d, (void)n;
  if (++lines_echoed == LINES) TH_CHECK_OK(isola_stream_close(s));
}

static void on_any_close(isola_stream *s, int reason, int err, void *ctx) {
  (void)s, (void)err, (void)ctx;
  /* A clean end, or one the stream reported: never a silent loss. */
  TH_CHECKF(reason == ISOLA_STREAM_CLOSED || reason == ISOLA_STREAM_EOF ||
                reason == ISOLA_STREAM_ERROR,
            "stream closed: %s", isola_stream_reason_name(reason));
  if (reason == ISOLA_STREAM_ERROR) reported = true;
  closes++;
  maybe_done();
}

static void on_accept(isola_stream_listener *l, int fd, void *ctx) {
  (void)l, (void)ctx;
  isola_stream_options o = {.framing = ISOLA_STREAM_LINES,
                            .on_data = on_server_line,
                            .on_close = on_any_close};
  isola_stream *s;
  if (EXPECT(isola_stream_open(fd, &o, &s), ISOLA_ENOMEM, ISOLA_ESYS) !=
      ISOLA_OK) {
    reported = true;
    closes++; /* the fd was closed by the failed open */
    maybe_done();
  }
}

static void entry_streams(isola_value msg) {
  (void)msg;
  if (EXPECT(isola_stream_listen("127.0.0.1", 0, on_accept, NULL, &listener),
             ISOLA_ENOMEM, ISOLA_ESYS) != ISOLA_OK) {
    reported = true;
    return;
  }
  isola_stream_options o = {.framing = ISOLA_STREAM_LINES,
                            .on_data = on_client_line,
                            .on_close = on_any_close};
  if (EXPECT(isola_stream_connect("127.0.0.1",
                                  isola_stream_listener_port(listener), &o,
                                  &client),
             ISOLA_ENOMEM, ISOLA_ESYS) != ISOLA_OK) {
    reported = true;
    TH_CHECK_OK(isola_stream_listener_close(listener));
    listener = NULL;
    return;
  }
  for (int i = 0; i < LINES; i++)
    if (EXPECT(isola_stream_write(client, "a line", 6), ISOLA_ENOMEM,
               ISOLA_ECLOSED) != ISOLA_OK) {
      reported = true;
      isola_stream_abort(client);
      return;
    }
}

static void sc_stream(void) {
  if (!sink_open()) return;
  isola_spawn_options o = {0};
  o.on_exit = sink;
  o.on_exit_message = tag(K_EXIT, 0);
  if (EXPECT(isola_spawn(entry_streams, isola_null(), &o, NULL),
             ISOLA_ENOMEM, ISOLA_ESYS) != ISOLA_OK)
    return;
  WAIT_GE(&sink_n[K_EXIT], 1);
  TH_CHECKF(lines_echoed == LINES || reported,
            "%ld of %d lines echoed and no stream reported an error (the "
            "failed call: addr2line -f -e test_fault%s)",
            lines_echoed, LINES, fault_stack());
}

/* A worker pool (isola_pool): every job whose isola_pool_call returned
 * OK completes exactly once, with a documented status, whatever failed (a
 * spawn or respawn, a reply port, the copy in the owner's heap, a send, an
 * answer, an exit notice); the owner ends once every job has completed. */
static _Atomic long pool_accepted, pool_completed, pool_twice;
static _Atomic int pool_seen[6];

static void pool_answer(void *ctx, isola_port port, isola_value msg,
                        isola_port reply_to) {
  (void)ctx, (void)port;
  /* A worker that cannot answer ends: its job fails with ISOLA_EFAILED. */
  if (EXPECT(isola_send(reply_to, msg), ISOLA_ENOMEM) != ISOLA_OK)
    isola_throw("the answer could not be sent");
}

static void pool_job_done(void *ctx, int status, isola_value reply) {
  intptr_t i = (intptr_t)ctx;
  if (atomic_fetch_add(&pool_seen[i], 1) != 0)
    atomic_fetch_add(&pool_twice, 1);
  if (EXPECT(status, ISOLA_EFAILED, ISOLA_ENOMEM, ISOLA_ESYS,
             ISOLA_ELIMIT) == ISOLA_OK)
    TH_CHECK(reply.kind == ISOLA_INT && reply.as.i == i);
  atomic_fetch_add(&pool_completed, 1);
}

static void entry_pool(isola_value msg) {
  (void)msg;
  isola_pool *p;
  isola_pool_options o = {.workers = 2};
  if (EXPECT(isola_pool_start(pool_answer, NULL, &o, &p), ISOLA_ENOMEM,
             ISOLA_ESYS, ISOLA_ELIMIT) != ISOLA_OK)
    return;
  for (intptr_t i = 0; i < 6; i++)
    if (EXPECT(isola_pool_call(p, isola_int(i), ISOLA_FOREVER, pool_job_done,
                               (void *)i),
               ISOLA_ENOMEM, ISOLA_ESYS, ISOLA_ELIMIT) == ISOLA_OK)
      atomic_fetch_add(&pool_accepted, 1);
  /* The pending jobs keep this isolate alive; then it ends, the pool with
   * it. */
}

static void sc_pool(void) {
  if (!sink_open()) return;
  isola_spawn_options o = {0};
  o.on_exit = sink;
  o.on_exit_message = tag(K_EXIT, 0);
  if (EXPECT(isola_spawn(entry_pool, isola_null(), &o, NULL), ISOLA_ENOMEM,
             ISOLA_ESYS) != ISOLA_OK)
    return;
  WAIT_GE(&sink_n[K_EXIT], 1);
  TH_CHECKF(atomic_load(&pool_completed) == atomic_load(&pool_accepted) &&
                atomic_load(&pool_twice) == 0,
            "%ld of %ld jobs completed, %ld twice (the failed call: "
            "addr2line -f -e test_fault%s)",
            atomic_load(&pool_completed), atomic_load(&pool_accepted),
            atomic_load(&pool_twice), fault_stack());
}

/* A supervisor (isola_supervisor) learns that its child ended whatever
 * failed, the exit notice included (then the bare response comes: the
 * supervisor must still take it as the child's end), and its owner ends
 * once it has stopped the supervisor; a supervisor that missed the end
 * would keep its owner alive for ever (the wait fails).  The stop is made
 * from inside on_child_exit, as a user may: the supervisor must not end
 * (and be freed) under its own feet there, whichever allocation fails. */
static isola_supervisor *sup_sup;
static _Atomic int sup_ends, sup_child_exits;

static void sup_child(isola_value msg) { (void)msg; } /* ends at once */

static void sup_on_child_exit(void *ctx, size_t index, isola_port child,
                              int reason, const char *detail) {
  (void)ctx, (void)index, (void)child, (void)reason, (void)detail;
  atomic_fetch_add(&sup_child_exits, 1);
  TH_CHECK_OK(isola_supervisor_stop(sup_sup));
}

static void sup_on_end(void *ctx, int reason, const char *detail) {
  (void)ctx, (void)reason, (void)detail;
  atomic_fetch_add(&sup_ends, 1);
}

static void entry_supervisor(isola_value msg) {
  (void)msg;
  isola_child_spec kid = {.name = "kid", .entry = sup_child,
                          .arg = isola_null(),
                          .restart = ISOLA_RESTART_TEMPORARY};
  isola_supervisor_spec spec = {
      .strategy = ISOLA_ONE_FOR_ONE, .max_restarts = 3, .period_ms = 60000,
      .children = &kid, .nchildren = 1, .on_child_exit = sup_on_child_exit,
      .on_end = sup_on_end};
  EXPECT(isola_supervisor_start(&spec, &sup_sup), ISOLA_ENOMEM, ISOLA_ESYS,
         ISOLA_ELIMIT);
}

static void sc_supervisor(void) {
  if (!sink_open()) return;
  isola_spawn_options o = {0};
  o.on_exit = sink;
  o.on_exit_message = tag(K_EXIT, 0);
  if (EXPECT(isola_spawn(entry_supervisor, isola_null(), &o, NULL),
             ISOLA_ENOMEM, ISOLA_ESYS) != ISOLA_OK)
    return;
  WAIT_GE(&sink_n[K_EXIT], 1);
  TH_CHECKF(atomic_load(&sup_ends) <= 1 &&
                atomic_load(&sup_ends) >= (atomic_load(&sup_child_exits) > 0),
            "supervisor ended %d times after %d child exits (the failed "
            "call: addr2line -f -e test_fault%s)",
            atomic_load(&sup_ends), atomic_load(&sup_child_exits),
            fault_stack());
}

/* ---------------------------------------------------------------------- */
/* The sweep                                                               */
/* ---------------------------------------------------------------------- */

typedef struct scenario {
  const char *name;
  void (*body)(void);
  bool vm; /* runs in a VM */
} scenario;

/* In the child: one run with category cat's nth call failing.  Exits 0 if
 * a failure was injected, 10 if none was (the sweep is over); writes the
 * site of the first injected failure to fd. */
static void child_run(const scenario *sc, isola__fault_cat cat, uint64_t nth,
                      int fd) {
  alarm(60); /* a hang is a failure */
  isola__fault_arm(cat, nth, 1);
  if (sc->vm) {
    run_vm_init();
    sc->body();
    run_finish();
  } else {
    sc->body();
    isola__fault_disarm();
  }
  uint64_t failed = isola__fault_failed(cat);
  void *site = isola__fault_first_site(cat);
  if (fd >= 0) {
    ssize_t w = write(fd, &site, sizeof site);
    (void)w;
  }
  fflush(NULL);
  /* _exit, not exit: the child must not run the test runner's exit
   * handlers.  So LeakSanitizer is asked here. */
#if TH_HAVE_LSAN
  if (__lsan_do_recoverable_leak_check() != 0) _exit(3);
#endif
  _exit(failed > 0 ? 0 : 10);
}

typedef struct sweep_result {
  long runs, sites;
} sweep_result;

#define MAX_SITES 4096
#define MAX_RUNS 3000

/* Sweeps one scenario over one category; fails the test on the first bad
 * run, naming how to replay it. */
static sweep_result sweep_one(const scenario *sc, isola__fault_cat cat) {
  static void *sites[MAX_SITES];
  long nsites = 0;
  sweep_result res = {0, 0};
  for (uint64_t n = 1; n <= MAX_RUNS; n++) {
    int p[2];
    cr_assert(pipe(p) == 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
      close(p[0]);
      child_run(sc, cat, n, p[1]);
    }
    close(p[1]);
    void *site = NULL;
    ssize_t got = read(p[0], &site, sizeof site);
    close(p[0]);
    int st;
    cr_assert(waitpid(pid, &st, 0) == pid);
    res.runs++;
    bool ok = WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 10);
    cr_assert(ok,
              "fault sweep: scenario %s, %s call %llu made to fail: %s %d "
              "(replay: ISOLA_FAULT_ONLY=%s ISOLA_FAULT_AT=%s:%llu)",
              sc->name, isola__fault_cat_name(cat), (unsigned long long)n,
              WIFSIGNALED(st) ? "killed by signal" : "exit status",
              WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), sc->name,
              isola__fault_cat_name(cat), (unsigned long long)n);
    if (WEXITSTATUS(st) == 10) break;
    if (got == (ssize_t)sizeof site && site) {
      bool seen = false;
      for (long i = 0; i < nsites && !seen; i++) seen = sites[i] == site;
      if (!seen && nsites < MAX_SITES) sites[nsites++] = site;
    }
  }
  res.sites = nsites;
  return res;
}

static void sweep(const scenario *sc) {
  const char *only = getenv("ISOLA_FAULT_ONLY");
  const char *at = getenv("ISOLA_FAULT_AT");
  if (only && at) {
    if (strcmp(only, sc->name) != 0) return;
    char cat_name[16];
    unsigned long long n;
    cr_assert(sscanf(at, "%15[a-z]:%llu", cat_name, &n) == 2,
              "ISOLA_FAULT_AT=category:n");
    for (int c = 0; c < ISOLA__FAULT_NCATS; c++)
      if (strcmp(cat_name, isola__fault_cat_name(c)) == 0) {
        fprintf(stderr, "replaying %s with %s call %llu failing\n", sc->name,
                cat_name, n);
        child_run(sc, (isola__fault_cat)c, n, -1);
      }
    cr_assert_fail("no category %s", cat_name);
  }
  long runs = 0, sites = 0;
  for (int c = 0; c < ISOLA__FAULT_NCATS; c++) {
    sweep_result r = sweep_one(sc, (isola__fault_cat)c);
    runs += r.runs;
    sites += r.sites;
    printf("fault sweep: %-9s %-7s %5ld runs, %4ld distinct call sites "
           "failed\n",
           sc->name, isola__fault_cat_name(c), r.runs, r.sites);
  }
  printf("fault sweep: %-9s total   %5ld runs, %4ld injection points\n",
         sc->name, runs, sites);
  fflush(stdout);
}

#define SCENARIO(nm, vm_)                                                    \
  Test(fault, nm) {                                                          \
    static const scenario sc = {#nm, sc_##nm, vm_};                         \
    sweep(&sc);                                                              \
  }

SCENARIO(spawn, true)
SCENARIO(send, true)
SCENARIO(exit, true)
SCENARIO(run, true)
SCENARIO(control, true)
SCENARIO(timers, true)
SCENARIO(watch, true)
SCENARIO(micro, true)
SCENARIO(heap, true)
SCENARIO(names, true)
SCENARIO(native, true)
SCENARIO(wire, false)
SCENARIO(shutdown, true)
SCENARIO(spawn_uri, true)
SCENARIO(stream, true)
SCENARIO(pool, true)
SCENARIO(supervisor, true)
