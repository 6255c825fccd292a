/* SPDX-License-Identifier: MIT */
/*
 * isola-soak — long runs that show memory stays bounded (issue 13 item 5).
 *
 *   isola-soak soak [SECONDS [SAMPLE_SECONDS]]   default 600 10
 *     Waves of mixed traffic until SECONDS have passed: each wave spawns
 *     isolates that exchange messages of every kind, start one-shot and
 *     periodic timers, watch a pipe, and end in four ways (their last port
 *     closed, killed, dead of their heap limit, dead of an uncaught
 *     error).  Every end is waited for through exit listeners.  RSS
 *     (VmRSS) is printed every SAMPLE_SECONDS.  Passes when, after the
 *     warm-up (the first fifth of the run), no sample exceeds the first
 *     sample after the warm-up by more than 10% + 4 MiB, and the VM shuts
 *     down with nothing stuck and no isolate left.
 *
 *   isola-soak burst [N]                          default 2000000
 *     Queues N small messages to a paused isolate from a plain thread,
 *     then resumes it and waits until all are handled.  Prints RSS before,
 *     at the peak and after the drain (once steady for 500 ms); passes when
 *     RSS after the drain is within 20% (+ 4 MiB) of the level before the
 *     burst.
 *
 * Lines: `isola soak <metric> <value> <unit>`; the exit status is 0 on a
 * pass.  Not part of CI (it runs for minutes); `bench/soak` builds and
 * runs it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <isola.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long rss_kb(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long v = -1;
  size_t n = strlen(field);
  while (fgets(line, sizeof line, f))
    if (strncmp(line, field, n) == 0 && line[n] == ':') {
      v = strtol(line + n + 1, NULL, 10);
      break;
    }
  fclose(f);
  return v;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc) {
  fprintf(stderr, "isola-soak: %s: %s\n", what, isola_strerror(rc));
  exit(1);
}

#define CHECK(call)                                                          \
  do {                                                                       \
    int rc_ = (call);                                                        \
    if (rc_ != ISOLA_OK) die(#call, rc_);                                    \
  } while (0)

/* A counter a plain thread can wait on. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long ended;

static void on_exit_notice(void *ctx, isola_port port, isola_value msg,
                           isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
  pthread_mutex_lock(&mu);
  ended++;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

/* Waits until `ended` reaches target; false after 60 s (something lost). */
static bool wait_ended(long target) {
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += 60;
  pthread_mutex_lock(&mu);
  int rc = 0;
  while (ended < target && rc != ETIMEDOUT)
    rc = pthread_cond_timedwait(&cv, &mu, &dl);
  bool ok = ended >= target;
  pthread_mutex_unlock(&mu);
  return ok;
}

/* ---- soak -------------------------------------------------------------- */

enum { END_CLOSE, END_KILLED, END_HEAP, END_ERROR, END_KINDS };

typedef struct worker {
  int how;          /* END_* */
  int pipe_fd[2];
  isola_watch watch;
  isola_timer periodic;
  int ticks;
  int got;          /* messages handled */
  isola_port port;
} worker;

static _Atomic long messages;

static void on_msg(void *ctx, isola_port port, isola_value msg,
                   isola_port reply_to);

static void maybe_end(worker *w) {
  /* Ends once its traffic, its timers and its watch are done. */
  if (w->got < 8 || w->ticks < 3 || w->watch) return;
  switch (w->how) {
  case END_CLOSE:
    isola_port_close(w->port);
    break;
  case END_HEAP:
    for (;;) (void)isola_alloc(4096); /* dies of its heap limit */
  case END_ERROR:
    isola_throw("soak: an uncaught error on purpose");
  default: /* END_KILLED: the driver kills it */
    break;
  }
}

static void on_msg(void *ctx, isola_port port, isola_value msg,
                   isola_port reply_to) {
  (void)port, (void)msg;
  worker *w = ctx;
  atomic_fetch_add_explicit(&messages, 1, memory_order_relaxed);
  if (reply_to != ISOLA_PORT_NONE) isola_send(reply_to, isola_int(w->got));
  w->got++;
  maybe_end(w);
}

static void on_tick(void *arg) {
  worker *w = arg;
  if (++w->ticks == 3) isola_timer_cancel(w->periodic);
  maybe_end(w);
}

static void on_oneshot(void *arg) { (void)arg; }

static void on_pipe(int fd, uint32_t events, void *arg) {
  (void)events;
  worker *w = arg;
  char buf[64];
  while (read(fd, buf, sizeof buf) > 0) {
  }
  isola_watch_close(w->watch);
  w->watch = 0;
  close(w->pipe_fd[0]);
  close(w->pipe_fd[1]);
  w->pipe_fd[0] = w->pipe_fd[1] = -1;
  maybe_end(w);
}

static void worker_init(void *v) {
  worker *w = v;
  w->pipe_fd[0] = w->pipe_fd[1] = -1;
}

/* A worker killed or dead of an error before its pipe event still closes
 * its pipe. */
static void worker_destroy(void *v) {
  worker *w = v;
  for (int i = 0; i < 2; i++)
    if (w->pipe_fd[i] >= 0) close(w->pipe_fd[i]);
}

static ISOLA_LOCAL_INIT(worker, worker_state, worker_init, worker_destroy);

/* Where workers say hello: [index, port]. */
enum { WAVE = 64 };
static _Atomic isola_port wave_ports[WAVE];
static long hellos;

static void on_hello(void *ctx, isola_port port, isola_value msg,
                     isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  isola_value i, p;
  if (isola_list_get(msg, 0, &i) != ISOLA_OK ||
      isola_list_get(msg, 1, &p) != ISOLA_OK)
    return;
  atomic_store(&wave_ports[i.as.i % WAVE], p.as.port);
  pthread_mutex_lock(&mu);
  hellos++;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

static bool wait_hellos(long target) {
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += 60;
  pthread_mutex_lock(&mu);
  int rc = 0;
  while (hellos < target && rc != ETIMEDOUT)
    rc = pthread_cond_timedwait(&cv, &mu, &dl);
  bool ok = hellos >= target;
  pthread_mutex_unlock(&mu);
  return ok;
}

/* msg: [index, how, hello port]. */
static void worker_entry(isola_value msg) {
  worker *w = isola_local_get(&worker_state);
  if (!w) isola_throw("soak: no local");
  isola_value index, how, hello;
  CHECK(isola_list_get(msg, 0, &index));
  CHECK(isola_list_get(msg, 1, &how));
  CHECK(isola_list_get(msg, 2, &hello));
  w->how = (int)how.as.i;
  CHECK(isola_port_open(on_msg, w, &w->port));
  isola_timer t;
  CHECK(isola_timer_start(1, 0, on_oneshot, w, &t));
  CHECK(isola_timer_start(1, 1, on_tick, w, &w->periodic));
  if (pipe2(w->pipe_fd, O_NONBLOCK | O_CLOEXEC) != 0) isola_throw("pipe");
  CHECK(isola_watch_open(w->pipe_fd[0], ISOLA_READABLE, on_pipe, w,
                         &w->watch));
  if (write(w->pipe_fd[1], "x", 1) != 1) isola_throw("write");
  isola_value items[2] = {index, isola_sendport(w->port)};
  CHECK(isola_send(hello.as.port, isola_list(items, 2)));
}

/* The driver's reply sink: a native port that counts replies. */
static void on_reply(void *ctx, isola_port port, isola_value msg,
                     isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
}

/* Uncaught errors are part of the traffic: counted, not printed. */
static _Atomic long errors;

static void on_unhandled(void *data, const isola_isolate_info *info,
                         const char *message, const char *stack) {
  (void)data, (void)info, (void)message, (void)stack;
  atomic_fetch_add_explicit(&errors, 1, memory_order_relaxed);
}

typedef struct spawned {
  isola_isolate h;
  int how;
} spawned;

static int soak(double seconds, double sample_s) {
  isola_config c;
  isola_config_init(&c);
  c.unhandled_error = on_unhandled;
  CHECK(isola_vm_init(&c));
  isola_port exits, replies, hello;
  CHECK(isola_native_port_new("exits", on_exit_notice, NULL, false, &exits));
  CHECK(isola_native_port_new("replies", on_reply, NULL, true, &replies));
  CHECK(isola_native_port_new("hello", on_hello, NULL, false, &hello));
  spawned sp[WAVE];
  long spawned_total = 0;
  double start = now_s(), next_sample = start;
  double warm_until = start + seconds / 5;
  long base_after_warm = -1, worst = 0;
  uint8_t blob[300];
  memset(blob, 7, sizeof blob);
  while (now_s() - start < seconds) {
    for (int i = 0; i < WAVE; i++) {
      isola_spawn_options o = {0};
      o.on_exit = exits;
      o.heap_limit = 64 * 1024;
      sp[i].how = i % END_KINDS;
      isola_value args[3] = {isola_int(i), isola_int(sp[i].how),
                             isola_sendport(hello)};
      CHECK(isola_spawn(worker_entry, isola_list(args, 3), &o, &sp[i].h));
      spawned_total++;
    }
    if (!wait_hellos(spawned_total)) {
      fprintf(stderr, "isola-soak: workers did not start\n");
      return 1;
    }
    /* Traffic: eight messages of mixed kinds to each worker, each asking
     * for a reply. */
    for (int i = 0; i < WAVE; i++) {
      isola_value kv[2] = {isola_str("k"), isola_bytes(blob, sizeof blob)};
      isola_value items[4] = {isola_int(i), isola_double(0.5),
                              isola_str("soak message"), isola_map(kv, 1)};
      for (int m = 0; m < 8; m++)
        CHECK(isola_send_reply(atomic_load(&wave_ports[i]),
                               isola_list(items, 4), replies));
    }
    for (int i = 0; i < WAVE; i++)
      if (sp[i].how == END_KILLED)
        CHECK(isola_kill(&sp[i].h, ISOLA_BEFORE_NEXT_EVENT));
    if (!wait_ended(spawned_total)) {
      fprintf(stderr, "isola-soak: isolates did not end (%ld of %ld)\n",
              ended, spawned_total);
      return 1;
    }
    double t = now_s();
    if (t >= next_sample) {
      long rss = rss_kb("VmRSS");
      printf("isola soak rss_kb %ld kB (t=%.0f s, %ld isolates, %ld "
             "messages)\n",
             rss, t - start, spawned_total, atomic_load(&messages));
      fflush(stdout);
      if (t >= warm_until) {
        if (base_after_warm < 0) base_after_warm = rss;
        if (rss > worst) worst = rss;
      }
      next_sample = t + sample_s;
    }
  }
  CHECK(isola_native_port_close(hello));
  CHECK(isola_native_port_close(replies));
  CHECK(isola_native_port_close(exits));
  isola_shutdown_report rep;
  int rc = isola_vm_shutdown(&rep);
  if (rc != ISOLA_OK) {
    fprintf(stderr, "isola-soak: shutdown: %s\n%s\n", isola_strerror(rc),
            rep.text);
    return 1;
  }
  long limit = base_after_warm + base_after_warm / 10 + 4096;
  printf("isola soak isolates %ld count\n", spawned_total);
  printf("isola soak uncaught_errors %ld count\n", atomic_load(&errors));
  printf("isola soak rss_after_warmup_kb %ld kB\n", base_after_warm);
  printf("isola soak rss_worst_kb %ld kB\n", worst);
  printf("isola soak peak_rss_kb %ld kB\n", rss_kb("VmHWM"));
  if (base_after_warm < 0 || worst > limit) {
    printf("isola soak FAILED: RSS grew past %ld kB after the warm-up\n",
           limit);
    return 1;
  }
  printf("isola soak passed: RSS flat within 10%% + 4 MiB after warm-up\n");
  return 0;
}

/* ---- burst ------------------------------------------------------------- */

static _Atomic long drained;

static void on_count(void *ctx, isola_port port, isola_value msg,
                     isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  long n = atomic_fetch_add_explicit(&drained, 1, memory_order_relaxed) + 1;
  if (msg.kind == ISOLA_STRING) {
    isola_port_close(port);
    (void)n;
  }
}

static _Atomic isola_port consumer_port;

static void consumer_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  CHECK(isola_port_open(on_count, NULL, &p));
  atomic_store(&consumer_port, p);
}

static int burst(long n) {
  isola_config c;
  isola_config_init(&c);
  CHECK(isola_vm_init(&c));
  isola_port exits;
  CHECK(isola_native_port_new("exits", on_exit_notice, NULL, false, &exits));
  isola_spawn_options o = {0};
  o.on_exit = exits;
  isola_isolate h;
  CHECK(isola_spawn(consumer_entry, isola_null(), &o, &h));
  while (atomic_load(&consumer_port) == ISOLA_PORT_NONE) usleep(100);
  long before = rss_kb("VmRSS");
  CHECK(isola_pause(&h, 0));
  isola_port p = atomic_load(&consumer_port);
  for (long i = 0; i < n; i++) CHECK(isola_send(p, isola_int(i)));
  long peak = rss_kb("VmRSS");
  CHECK(isola_resume(&h, 0));
  CHECK(isola_send(p, isola_str("stop")));
  if (!wait_ended(1)) {
    fprintf(stderr, "isola-soak: the consumer did not drain\n");
    return 1;
  }
  /* The pool gives a drained burst's slabs back when a worker runs out of
   * work (docs/design.md), just after the consumer ends: read the RSS once
   * it has stayed the same for 500 ms (every 10 ms, at most 5 s), the rule
   * of bench/run's rss_after_drain_kb. */
  long after = rss_kb("VmRSS");
  for (int i = 0, same = 0; i < 500 && same < 50; i++) {
    usleep(10000);
    long now = rss_kb("VmRSS");
    same = now == after ? same + 1 : 0;
    after = now;
  }
  printf("isola burst messages %ld count\n", atomic_load(&drained));
  printf("isola burst rss_before_kb %ld kB\n", before);
  printf("isola burst rss_peak_kb %ld kB\n", peak);
  printf("isola burst rss_after_drain_kb %ld kB\n", after);
  CHECK(isola_native_port_close(exits));
  CHECK(isola_vm_shutdown(NULL));
  long limit = before + before / 5 + 4096;
  if (atomic_load(&drained) != n + 1) {
    printf("isola burst FAILED: %ld of %ld handled\n", atomic_load(&drained),
           n + 1);
    return 1;
  }
  if (after > limit) {
    printf("isola burst FAILED: RSS after the drain %ld kB > %ld kB\n", after,
           limit);
    return 1;
  }
  printf("isola burst passed: RSS back within 20%% + 4 MiB\n");
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "soak") == 0)
    return soak(argc > 2 ? atof(argv[2]) : 600, argc > 3 ? atof(argv[3]) : 10);
  if (argc >= 2 && strcmp(argv[1], "burst") == 0)
    return burst(argc > 2 ? atol(argv[2]) : 2000000);
  fprintf(stderr, "usage: isola-soak soak [SECONDS [SAMPLE_SECONDS]]\n"
                  "       isola-soak burst [N]\n");
  return 2;
}
