/* SPDX-License-Identifier: MIT */
/*
 * isola-bench — the isola side of the benchmarks defined in BENCHMARKS.md.
 *
 *   isola-bench [--workers N] <bench> <args...>
 *
 *   pingpong N        two isolates bounce an int N times
 *   ring P T          P isolates in a ring pass a token from T down to 0
 *   spawn N           N idle isolates: spawn time, memory, stop time
 *   fanin P M         P producers send M ints each to one consumer
 *   skynet SIZE DIV   a tree of isolates sums 0 .. SIZE-1
 *   payload S N       an S-byte buffer: N round trips copied (2N sends),
 *                     then 50N round trips moved (100N sends)
 *   fanin P M         also reports rss_after_drain_kb
 *   fanin-bounded P M C  fanin with the consumer's mailbox bound at C
 *                     messages; each producer sends C/4 an event and is
 *                     muted between events while the consumer is full
 *   pairs K N         K timed ping-pong pairs at once, N round trips each
 *   crossworker N     one timed pair, its ends on two threads
 *   hog N H           a timed pair next to an isolate computing for H ms,
 *                     without and then with isola_check_interrupts()
 *   idle1m N          spawn, reported as idle1m (N = 1000000)
 *   kill N            kill N idle isolates; then the time to kill a busy one
 *   timers T I        T one-shot timers of 0-10 ms over I isolates
 *   tcpecho C R PORT  the echo server: serves C connections on
 *                     127.0.0.1:PORT, then ends (client: tcpecho-client)
 *   copy1m N          a 1 MiB byte buffer copied, N one-way sends
 *   transfer1m N      a 1 MiB transferable buffer moved, N one-way sends
 *   copynested N      100 lists of 99 ints (10,000 values), N one-way sends
 *
 * Each figure is printed as "isola <bench> <metric> <value> <unit>", and
 * every run ends with the process's peak RSS, "peak_rss_kb" (VmHWM).  Every
 * benchmark checks its result and exits with status 1 if it is wrong; bad
 * arguments give the usage and status 2.
 *
 * Shape of every run: main() starts the VM and turns its thread into the
 * root isolate (isola_run_main).  The root opens one port, spawns the
 * isolates of the benchmark and then only waits: all the measured work runs
 * between isolates on the worker pool.  The root reads the clock when it is
 * told the setup is done (a READY message, answered with a null "go") or,
 * where spawning is what is measured, before its first spawn; it reads it
 * again when the DONE message arrives, then closes its port so run_main()
 * returns.  main() checks the figures, prints them and shuts the VM down.
 *
 * Isolates share nothing here either: each learns its parameters from its
 * spawn message and keeps its state in the ctx of its own port.  A check
 * that fails inside an isolate prints why and ends the process at once.
 */
#define _GNU_SOURCE /* accept4 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "isola.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static _Noreturn void fail(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* Ends the process from any thread: exit() would run atexit handlers while
 * worker threads still run isolates. */
static _Noreturn void fail(const char *fmt, ...) {
  va_list ap;
  fflush(stdout);
  fputs("isola-bench: CHECK FAILED: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  _Exit(1);
}

/* Every runtime call is checked: a benchmark that lost a message would
 * otherwise hang or print a figure for work it did not do. */
#define CHECK(call) check_rc((call), #call, __LINE__)

static void check_rc(int rc, const char *what, int line) {
  if (rc != ISOLA_OK)
    fail("line %d: %s: %s (%s)", line, what, isola_err_name(rc),
         isola_strerror(rc));
}

static int64_t now_ns(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) fail("clock_gettime");
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* VmRSS of this process, in bytes. */
static int64_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long long kb = -1;
  if (f == NULL) fail("cannot open /proc/self/status");
  while (fgets(line, sizeof line, f) != NULL) {
    if (strncmp(line, "VmRSS:", 6) == 0) {
      kb = strtoll(line + 6, NULL, 10);
      break;
    }
  }
  fclose(f);
  if (kb < 0) fail("no VmRSS in /proc/self/status");
  return (int64_t)kb * 1024;
}

/* VmHWM (peak RSS) of this process, in KiB. */
static int64_t peak_rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long long kb = -1;
  if (f == NULL) fail("cannot open /proc/self/status");
  while (fgets(line, sizeof line, f) != NULL)
    if (strncmp(line, "VmHWM:", 6) == 0) kb = strtoll(line + 6, NULL, 10);
  fclose(f);
  if (kb < 0) fail("no VmHWM in /proc/self/status");
  return kb;
}

/* rss_after_drain_kb, the same rule in every system: VmRSS (KiB) once it
 * has not changed for 500 ms, read every 10 ms from the end of the drain,
 * at most 5 s.  A runtime gives memory back when its threads run out of
 * work (isola's pool when a worker parks, Go's scavenger in the
 * background), so a read at the instant of the last message would say
 * little. */
static int64_t settled_rss_kb(void) {
  int64_t last = rss_bytes() / 1024;
  int same = 0;
  for (int i = 0; i < 500 && same < 50; i++) {
    struct timespec ts = {0, 10000000};
    nanosleep(&ts, NULL);
    int64_t now = rss_bytes() / 1024;
    same = now == last ? same + 1 : 0;
    last = now;
  }
  return last;
}

static void *xmalloc(size_t n) {
  void *p = malloc(n != 0 ? n : 1);
  if (p == NULL) fail("out of memory (%zu bytes)", n);
  return p;
}

/* Typed reads of received messages; a message of the wrong shape is a bug
 * in this program or in the runtime, so it ends the run. */
static int64_t get_int(isola_value v) {
  int64_t i;
  if (isola_value_get_int(v, &i) != ISOLA_OK)
    fail("expected an int, got kind %u", (unsigned)v.kind);
  return i;
}

static int64_t item_int(isola_value list, size_t index) {
  isola_value item;
  CHECK(isola_list_get(list, index, &item));
  return get_int(item);
}

static isola_port item_port(isola_value list, size_t index) {
  isola_value item;
  isola_port p;
  CHECK(isola_list_get(list, index, &item));
  if (isola_value_get_port(item, &p) != ISOLA_OK)
    fail("item %zu: expected a port, got kind %u", index, (unsigned)item.kind);
  return p;
}

/* ------------------------------------------------------------------------ */
/* The root isolate                                                          */
/* ------------------------------------------------------------------------ */

/* What isolates tell the root: lists [tag, ...].  A bare int is a DONE
 * carrying that int (the top of the skynet tree answers like any node). */
enum {
  TAG_READY = 1, /* [READY, port]: setup done; start the clock, send null */
  TAG_MARK,      /* [MARK, port]: read clock and RSS, then send null */
  TAG_DONE,      /* [DONE, ints...]: stop the clock, keep the ints */
  TAG_INFO       /* [INFO, ints...]: keep the ints */
};

enum {
  BENCH_PINGPONG,
  BENCH_RING,
  BENCH_SPAWN,
  BENCH_FANIN,
  BENCH_SKYNET,
  BENCH_PAYLOAD,
  BENCH_COPY1M,
  BENCH_TRANSFER1M,
  BENCH_COPYNESTED,
  BENCH_PAIRS,
  BENCH_CROSSWORKER,
  BENCH_HOG,
  BENCH_IDLE1M,
  BENCH_KILL,
  BENCH_TIMERS,
  BENCH_TCPECHO,
  BENCH_FANIN_BOUNDED
};

#define MAX_RESULTS 4

/* Written only by the root isolate, which runs on the main thread; main()
 * reads it after isola_run_main() returns. */
static struct root_state {
  isola_port port;
  int expected; /* DONE + INFO messages that end the run */
  int received;
  int64_t rss_before, rss_mark;
  int64_t t_start, t_mark, t_after_mark, t_end;
  int64_t done[MAX_RESULTS];
  size_t ndone;
  int64_t info[MAX_RESULTS];
  size_t ninfo;
} root;

static size_t copy_ints(isola_value list, int64_t *out) {
  size_t n = list.len - 1;
  if (n > MAX_RESULTS) fail("root: %zu results, at most %d", n, MAX_RESULTS);
  for (size_t i = 0; i < n; i++) out[i] = item_int(list, i + 1);
  return n;
}

static void root_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  struct root_state *r = ctx;
  (void)reply_to;
  if (msg.kind == ISOLA_INT) {
    r->t_end = now_ns();
    r->done[0] = get_int(msg);
    r->ndone = 1;
    r->received++;
  } else {
    if (msg.kind != ISOLA_LIST || msg.len < 1) fail("root: bad message");
    switch (item_int(msg, 0)) {
    case TAG_READY:
      r->t_start = now_ns();
      CHECK(isola_send(item_port(msg, 1), isola_null()));
      break;
    case TAG_MARK:
      r->t_mark = now_ns();
      r->rss_mark = rss_bytes();
      r->t_after_mark = now_ns();
      CHECK(isola_send(item_port(msg, 1), isola_null()));
      break;
    case TAG_DONE:
      r->t_end = now_ns();
      r->ndone = copy_ints(msg, r->done);
      r->received++;
      break;
    case TAG_INFO:
      r->ninfo = copy_ints(msg, r->info);
      r->received++;
      break;
    default:
      fail("root: unknown tag");
    }
  }
  if (r->received == r->expected) CHECK(isola_port_close(port));
}

static void send_tagged(isola_port to, int64_t tag, isola_port port) {
  isola_value items[2] = {isola_int(tag), isola_sendport(port)};
  CHECK(isola_send(to, isola_list(items, 2)));
}

/* ------------------------------------------------------------------------ */
/* pingpong N                                                                */
/* ------------------------------------------------------------------------ */

/* The pinger sends N, N-1, ... 1 to the ponger with itself as reply_to; the
 * ponger answers each on the reply port it got.  A 0 stops the ponger. */

struct ping {
  isola_port root, self, pong;
  int64_t n, expect, count;
};

static void pong_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx;
  if (get_int(msg) == 0) {
    CHECK(isola_port_close(port));
    return;
  }
  CHECK(isola_send_reply(reply_to, msg, port));
}

static void pong_entry(isola_value msg) {
  isola_port self;
  CHECK(isola_port_open(pong_handler, NULL, &self));
  CHECK(isola_send(item_port(msg, 0), isola_sendport(self)));
}

static void ping_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  struct ping *p = ctx;
  switch (msg.kind) {
  case ISOLA_PORT: /* the ponger is up */
    CHECK(isola_value_get_port(msg, &p->pong));
    send_tagged(p->root, TAG_READY, port);
    break;
  case ISOLA_NULL: /* go */
    CHECK(isola_send_reply(p->pong, isola_int(p->n), port));
    break;
  default: {
    int64_t v = get_int(msg);
    if (v != p->expect)
      fail("pingpong: got %" PRId64 ", want %" PRId64, v, p->expect);
    p->count++;
    if (v > 1) {
      p->expect = v - 1;
      CHECK(isola_send_reply(reply_to, isola_int(v - 1), port));
      break;
    }
    /* Stop the ponger before telling the root: once the root has its
     * answer the VM shuts down and sends fail. */
    CHECK(isola_send(reply_to, isola_int(0)));
    isola_value done[2] = {isola_int(TAG_DONE), isola_int(p->count)};
    CHECK(isola_send(p->root, isola_list(done, 2)));
    CHECK(isola_port_close(port));
    free(p);
  }
  }
}

static void ping_entry(isola_value msg) {
  struct ping *p = xmalloc(sizeof *p);
  p->n = item_int(msg, 0);
  p->root = item_port(msg, 1);
  p->pong = ISOLA_PORT_NONE;
  p->expect = p->n;
  p->count = 0;
  CHECK(isola_port_open(ping_handler, p, &p->self));
  isola_value items[1] = {isola_sendport(p->self)};
  isola_spawn_options opts = {.name = "pong"};
  CHECK(isola_spawn(pong_entry, isola_list(items, 1), &opts, NULL));
}

/* ------------------------------------------------------------------------ */
/* ring P T                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * Member i spawns member i+1 (a chain), and each member sends its port to
 * the one before it, so every member learns its next.  The last member
 * closes the ring on member 0 and tells the root; the root's "go" makes
 * member 0 take the token T.  A member that gets t > 0 passes t-1 on (one
 * hop); the one that gets 0 reports its index and starts a stop message
 * [origin, hops] round the ring: each member adds its hop count, passes it
 * on and closes its port; the member before the origin reports the total.
 */

struct member {
  isola_port root, self, next;
  int64_t p, t, index, hops;
  bool pending; /* a token came before the port of the next member */
  int64_t pending_token;
};

static void member_token(struct member *m, int64_t t) {
  if (m->next == ISOLA_PORT_NONE) {
    /* Only per-sender order is promised; the token may overtake the
     * message that names the next member. */
    m->pending = true;
    m->pending_token = t;
    return;
  }
  if (t > 0) {
    m->hops++;
    CHECK(isola_send(m->next, isola_int(t - 1)));
    return;
  }
  isola_value done[2] = {isola_int(TAG_DONE), isola_int(m->index)};
  CHECK(isola_send(m->root, isola_list(done, 2)));
  isola_value stop[2] = {isola_int(m->index), isola_int(m->hops)};
  CHECK(isola_send(m->next, isola_list(stop, 2)));
  CHECK(isola_port_close(m->self));
  free(m);
}

static void member_handler(void *ctx, isola_port port, isola_value msg,
                           isola_port reply_to) {
  struct member *m = ctx;
  (void)port;
  (void)reply_to;
  switch (msg.kind) {
  case ISOLA_INT:
    member_token(m, get_int(msg));
    break;
  case ISOLA_PORT: /* the next member is up */
    CHECK(isola_value_get_port(msg, &m->next));
    if (m->pending) {
      m->pending = false;
      member_token(m, m->pending_token);
    }
    break;
  case ISOLA_NULL: /* go: member 0 takes the token */
    member_token(m, m->t);
    break;
  case ISOLA_LIST: { /* stop [origin, hops so far] */
    int64_t origin = item_int(msg, 0);
    int64_t hops = item_int(msg, 1) + m->hops;
    if ((m->index + 1) % m->p == origin) {
      isola_value info[2] = {isola_int(TAG_INFO), isola_int(hops)};
      CHECK(isola_send(m->root, isola_list(info, 2)));
    } else {
      isola_value stop[2] = {isola_int(origin), isola_int(hops)};
      CHECK(isola_send(m->next, isola_list(stop, 2)));
    }
    CHECK(isola_port_close(m->self));
    free(m);
    break;
  }
  default:
    fail("ring: unexpected message kind %u", (unsigned)msg.kind);
  }
}

/* [P, T, index, root] for member 0; [P, T, index, root, first, prev] after. */
static void member_entry(isola_value msg) {
  struct member *m = xmalloc(sizeof *m);
  isola_port first;
  m->p = item_int(msg, 0);
  m->t = item_int(msg, 1);
  m->index = item_int(msg, 2);
  m->root = item_port(msg, 3);
  m->next = ISOLA_PORT_NONE;
  m->hops = 0;
  m->pending = false;
  CHECK(isola_port_open(member_handler, m, &m->self));
  if (m->index == 0) {
    first = m->self;
  } else {
    first = item_port(msg, 4);
    CHECK(isola_send(item_port(msg, 5), isola_sendport(m->self)));
  }
  if (m->index == m->p - 1) {
    m->next = first;
    send_tagged(m->root, TAG_READY, first);
    return;
  }
  isola_value items[6] = {isola_int(m->p),        isola_int(m->t),
                          isola_int(m->index + 1), isola_sendport(m->root),
                          isola_sendport(first),   isola_sendport(m->self)};
  isola_spawn_options opts = {.name = "ring"};
  CHECK(isola_spawn(member_entry, isola_list(items, 6), &opts, NULL));
}

/* ------------------------------------------------------------------------ */
/* spawn N                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * A boss isolate spawns N idle isolates; each opens a port and reports
 * [index, port] to the boss.  When all N are alive the boss sends MARK to
 * the root, which reads the clock and RSS and answers "go".  The boss then
 * sends each idle isolate its index with itself as reply_to; the isolate
 * answers with the same message and closes its port, so it ends, and the
 * runtime sends the boss an on_exit notice.  Once the boss has N answers
 * and N exit notices it sends DONE [answers, exits, sum of indexes].
 */

struct boss {
  isola_port root, ctl, exits;
  isola_port *ports;
  int64_t n, alive, answers, exited, sum;
};

static void idle_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx;
  CHECK(isola_send(reply_to, msg));
  CHECK(isola_port_close(port));
}

/* [boss port, index] */
static void idle_entry(isola_value msg) {
  isola_port self;
  CHECK(isola_port_open(idle_handler, NULL, &self));
  isola_value items[2] = {isola_int(item_int(msg, 1)), isola_sendport(self)};
  CHECK(isola_send(item_port(msg, 0), isola_list(items, 2)));
}

static void boss_maybe_done(struct boss *b) {
  if (b->answers < b->n || b->exited < b->n) return;
  isola_value done[4] = {isola_int(TAG_DONE), isola_int(b->answers),
                         isola_int(b->exited), isola_int(b->sum)};
  CHECK(isola_send(b->root, isola_list(done, 4)));
  CHECK(isola_port_close(b->ctl));
  CHECK(isola_port_close(b->exits));
  free(b->ports);
  free(b);
}

static void boss_ctl_handler(void *ctx, isola_port port, isola_value msg,
                             isola_port reply_to) {
  struct boss *b = ctx;
  (void)reply_to;
  switch (msg.kind) {
  case ISOLA_LIST: { /* [index, port]: one more is alive */
    int64_t i = item_int(msg, 0);
    if (i < 0 || i >= b->n || b->ports[i] != ISOLA_PORT_NONE)
      fail("spawn: bad or repeated report from %" PRId64, i);
    b->ports[i] = item_port(msg, 1);
    if (++b->alive == b->n) send_tagged(b->root, TAG_MARK, port);
    break;
  }
  case ISOLA_NULL: /* go: stop them all */
    for (int64_t i = 0; i < b->n; i++)
      CHECK(isola_send_reply(b->ports[i], isola_int(i), port));
    break;
  case ISOLA_INT: /* an answer to stop */
    b->answers++;
    b->sum += get_int(msg);
    boss_maybe_done(b);
    break;
  default:
    fail("spawn: unexpected message kind %u", (unsigned)msg.kind);
  }
}

static void boss_exit_handler(void *ctx, isola_port port, isola_value msg,
                              isola_port reply_to) {
  struct boss *b = ctx;
  (void)port;
  (void)msg;
  (void)reply_to;
  b->exited++;
  boss_maybe_done(b);
}

/* [N, root] */
static void boss_entry(isola_value msg) {
  struct boss *b = xmalloc(sizeof *b);
  b->n = item_int(msg, 0);
  b->root = item_port(msg, 1);
  b->alive = b->answers = b->exited = b->sum = 0;
  /* Allocated by the root before it read the first RSS figure would be
   * fairer, but 8 bytes per isolate is what any peer keeps too. */
  b->ports = xmalloc((size_t)b->n * sizeof *b->ports);
  memset(b->ports, 0, (size_t)b->n * sizeof *b->ports);
  CHECK(isola_port_open(boss_ctl_handler, b, &b->ctl));
  CHECK(isola_port_open(boss_exit_handler, b, &b->exits));
  isola_spawn_options opts = {.name = "idle", .on_exit = b->exits};
  for (int64_t i = 0; i < b->n; i++) {
    isola_value items[2] = {isola_sendport(b->ctl), isola_int(i)};
    CHECK(isola_spawn(idle_entry, isola_list(items, 2), &opts, NULL));
  }
}

/* ------------------------------------------------------------------------ */
/* fanin P M                                                                 */
/* ------------------------------------------------------------------------ */

/* The consumer opens its port and tells the root; on "go" it spawns the P
 * producers, each of which sends 1 .. M from its entry and ends.  The
 * consumer counts and sums to P*M, then sends DONE [count, sum]. */

struct consumer {
  isola_port root, self;
  int64_t p, m, total, count;
  int64_t chunk; /* fanin-bounded: a producer's sends per event; 0: fanin */
  uint64_t sum; /* wraps like the expected figure for huge arguments */
};

/* [consumer port, M] */
static void producer_entry(isola_value msg) {
  isola_port to = item_port(msg, 0);
  int64_t m = item_int(msg, 1);
  for (int64_t i = 1; i <= m; i++) CHECK(isola_send(to, isola_int(i)));
}

/* fanin-bounded's producer: sends chunk ints an event, then asks itself
 * for the next event (a send to itself never mutes), so that the
 * consumer's bound can hold it back between events.  [to, next, m,
 * chunk]. */
struct bproducer {
  isola_port to, self;
  int64_t next, m, chunk;
};

static void bproducer_handler(void *ctx, isola_port port, isola_value msg,
                              isola_port reply_to) {
  struct bproducer *p = ctx;
  (void)msg, (void)reply_to;
  int64_t end = p->next + p->chunk;
  if (end > p->m + 1) end = p->m + 1;
  for (; p->next < end; p->next++) CHECK(isola_send(p->to, isola_int(p->next)));
  if (p->next <= p->m) {
    CHECK(isola_send(port, isola_null()));
    return;
  }
  CHECK(isola_port_close(port));
  free(p);
}

static void bproducer_entry(isola_value msg) {
  struct bproducer *p = xmalloc(sizeof *p);
  p->to = item_port(msg, 0);
  p->m = item_int(msg, 1);
  p->chunk = item_int(msg, 2);
  p->next = 1;
  CHECK(isola_port_open(bproducer_handler, p, &p->self));
  CHECK(isola_send(p->self, isola_null()));
}

static void consumer_handler(void *ctx, isola_port port, isola_value msg,
                             isola_port reply_to) {
  struct consumer *c = ctx;
  (void)reply_to;
  if (msg.kind == ISOLA_NULL) { /* go */
    isola_value items[3] = {isola_sendport(port), isola_int(c->m),
                            isola_int(c->chunk)};
    isola_spawn_options opts = {.name = "producer"};
    for (int64_t i = 0; i < c->p; i++)
      CHECK(isola_spawn(c->chunk ? bproducer_entry : producer_entry,
                        isola_list(items, c->chunk ? 3 : 2), &opts, NULL));
    return;
  }
  c->sum += (uint64_t)get_int(msg);
  if (++c->count < c->total) return;
  isola_value done[3] = {isola_int(TAG_DONE), isola_int(c->count),
                         isola_int((int64_t)c->sum)};
  CHECK(isola_send(c->root, isola_list(done, 3)));
  CHECK(isola_port_close(port));
  free(c);
}

/* [P, M, root, chunk] */
static void consumer_entry(isola_value msg) {
  struct consumer *c = xmalloc(sizeof *c);
  c->p = item_int(msg, 0);
  c->m = item_int(msg, 1);
  c->root = item_port(msg, 2);
  c->chunk = item_int(msg, 3);
  c->total = c->p * c->m;
  c->count = 0;
  c->sum = 0;
  CHECK(isola_port_open(consumer_handler, c, &c->self));
  send_tagged(c->root, TAG_READY, c->self);
}

/* ------------------------------------------------------------------------ */
/* skynet SIZE DIV                                                           */
/* ------------------------------------------------------------------------ */

/* A node [num, size, div, parent] of size 1 answers num and ends (it opens
 * no port).  A larger one spawns div children over its range, sums their
 * answers and sends the sum to its parent. */

struct node {
  isola_port parent;
  int64_t sum, remaining;
};

static void node_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  struct node *nd = ctx;
  (void)reply_to;
  nd->sum += get_int(msg);
  if (--nd->remaining > 0) return;
  CHECK(isola_send(nd->parent, isola_int(nd->sum)));
  CHECK(isola_port_close(port));
  free(nd);
}

static void node_entry(isola_value msg) {
  int64_t num = item_int(msg, 0);
  int64_t size = item_int(msg, 1);
  int64_t div = item_int(msg, 2);
  isola_port parent = item_port(msg, 3);
  if (size == 1) {
    CHECK(isola_send(parent, isola_int(num)));
    return;
  }
  struct node *nd = xmalloc(sizeof *nd);
  isola_port self;
  nd->parent = parent;
  nd->sum = 0;
  nd->remaining = div;
  CHECK(isola_port_open(node_handler, nd, &self));
  int64_t sub = size / div;
  isola_spawn_options opts = {.name = "skynet"};
  for (int64_t i = 0; i < div; i++) {
    isola_value items[4] = {isola_int(num + i * sub), isola_int(sub),
                            isola_int(div), isola_sendport(self)};
    CHECK(isola_spawn(node_entry, isola_list(items, 4), &opts, NULL));
  }
}

/* ------------------------------------------------------------------------ */
/* payload S N                                                               */
/* ------------------------------------------------------------------------ */

/*
 * Isolate A spawns B; B sends A its port; A tells the root.  On "go" A
 * sends an S-byte buffer to B with itself as reply_to, and from then on
 * each side sends back, on its reply port, the buffer it received: every
 * send copies it.  Sends are numbered 1 .. N: B receives the odd ones, A
 * the even ones.  The side that receives send N checks every byte, sends a
 * 0 that makes the other side close its port, and reports DONE [N, sends it
 * received]; the other side reports INFO [sends it received] as it closes,
 * so the root waits until both have ended.
 */

static uint8_t pattern_byte(size_t j) { return (uint8_t)(j * 7 + (j >> 8)); }

struct side {
  isola_port root, self, peer;
  int64_t s, n, received;
  bool is_a;
};

static void side_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  struct side *sd = ctx;
  switch (msg.kind) {
  case ISOLA_PORT: /* A: B is up */
    CHECK(isola_value_get_port(msg, &sd->peer));
    send_tagged(sd->root, TAG_READY, port);
    return;
  case ISOLA_NULL: { /* A: go */
    uint8_t *buf = xmalloc((size_t)sd->s);
    for (size_t j = 0; j < (size_t)sd->s; j++) buf[j] = pattern_byte(j);
    CHECK(isola_send_reply(sd->peer, isola_bytes(buf, (size_t)sd->s), port));
    free(buf); /* the send made its copy */
    return;
  }
  case ISOLA_INT: { /* stop: tell the root how many sends came here */
    isola_value info[2] = {isola_int(TAG_INFO), isola_int(sd->received)};
    CHECK(isola_send(sd->root, isola_list(info, 2)));
    CHECK(isola_port_close(port));
    free(sd);
    return;
  }
  case ISOLA_BYTES:
    break;
  default:
    fail("payload: unexpected message kind %u", (unsigned)msg.kind);
  }
  const uint8_t *b;
  size_t len;
  CHECK(isola_value_get_bytes(msg, &b, &len));
  if (len != (size_t)sd->s)
    fail("payload: %zu bytes, want %" PRId64, len, sd->s);
  sd->received++;
  int64_t seq = sd->is_a ? 2 * sd->received : 2 * sd->received - 1;
  if (seq < sd->n) {
    /* One byte per hop, as the peers do; all of them at the end. */
    size_t j = (size_t)((uint64_t)seq * 4099 % (uint64_t)sd->s);
    if (b[j] != pattern_byte(j)) fail("payload: byte %zu corrupted", j);
    CHECK(isola_send_reply(reply_to, msg, port));
    return;
  }
  for (size_t j = 0; j < len; j++)
    if (b[j] != pattern_byte(j)) fail("payload: byte %zu corrupted", j);
  CHECK(isola_send(reply_to, isola_int(0))); /* before the root hears */
  isola_value done[3] = {isola_int(TAG_DONE), isola_int(seq),
                         isola_int(sd->received)};
  CHECK(isola_send(sd->root, isola_list(done, 3)));
  CHECK(isola_port_close(port));
  free(sd);
}

static struct side *side_new(isola_value msg, bool is_a) {
  struct side *sd = xmalloc(sizeof *sd);
  sd->s = item_int(msg, 0);
  sd->n = item_int(msg, 1);
  sd->root = item_port(msg, 2);
  sd->peer = ISOLA_PORT_NONE;
  sd->received = 0;
  sd->is_a = is_a;
  CHECK(isola_port_open(side_handler, sd, &sd->self));
  return sd;
}

/* [S, N, root, A's port] */
static void side_b_entry(isola_value msg) {
  struct side *sd = side_new(msg, false);
  CHECK(isola_send(item_port(msg, 3), isola_sendport(sd->self)));
}

/* [S, N, root] */
static void side_a_entry(isola_value msg) {
  struct side *sd = side_new(msg, true);
  isola_value items[4] = {isola_int(sd->s), isola_int(sd->n),
                          isola_sendport(sd->root), isola_sendport(sd->self)};
  isola_spawn_options opts = {.name = "payload-b"};
  CHECK(isola_spawn(side_b_entry, isola_list(items, 4), &opts, NULL));
}

/* ------------------------------------------------------------------------ */
/* copy1m N, transfer1m N, copynested N; payload's transfer_ns               */
/* ------------------------------------------------------------------------ */

/*
 * Two isolates, X and Y (both on the pool, spawned by the root isolate),
 * bounce one message N times, each hop one one-way send: a 1 MiB byte buffer copied (copy1m),
 * a 1 MiB transferable buffer moved (transfer1m), or a list of 100 lists
 * of 99 ints, 10,000 values, copied (copynested).  payload S N runs the
 * transfer kind with its own S after its copy run.  The side receiving
 * send N checks the contents and reads the clock; X reads it before send 1.
 * Y reports its clock reading to X when it is the last receiver, and X
 * reports the end time to the root, which then closes its port.
 */

enum { HOP_COPY, HOP_TRANSFER, HOP_NESTED };

#define NESTED_OUTER 100
#define NESTED_INNER 99

struct hop {
  int kind;
  int64_t s, n, received, t_start, t_end;
  isola_port peer, root;
  bool is_x;
};

/* One pair runs at a time.  Y's state is static too: Y may still be
 * between its last events when the VM shuts down and kills it. */
static struct hop hop_x; /* X's state; t_start read by main() */
static struct hop hop_y;
static int64_t hop_t_end; /* set by the root isolate from X's report */

static void hop_check(const struct hop *h, isola_value msg, bool all) {
  if (h->kind == HOP_NESTED) {
    if (msg.kind != ISOLA_LIST || msg.len != NESTED_OUTER)
      fail("copynested: wrong message");
    size_t i = all ? 0 : NESTED_OUTER - 1;
    for (; i < NESTED_OUTER; i++) {
      isola_value inner = msg.as.items[i];
      if (inner.kind != ISOLA_LIST || inner.len != NESTED_INNER ||
          get_int(inner.as.items[NESTED_INNER - 1]) != (int64_t)i)
        fail("copynested: list %zu corrupted", i);
    }
    return;
  }
  const uint8_t *b;
  size_t len;
  if (h->kind == HOP_COPY) {
    CHECK(isola_value_get_bytes(msg, &b, &len));
  } else {
    uint8_t *d;
    CHECK(isola_value_get_buffer(msg, &d, &len));
    b = d;
  }
  if (len != (size_t)h->s) fail("hop: %zu bytes, want %" PRId64, len, h->s);
  size_t j = (size_t)((uint64_t)h->received * 4099 % (uint64_t)h->s);
  if (b[j] != pattern_byte(j)) fail("hop: byte %zu corrupted", j);
  for (j = 0; all && j < len; j++)
    if (b[j] != pattern_byte(j)) fail("hop: byte %zu corrupted", j);
}

/* Sends msg (a received message, or the first one) on to the peer. */
static void hop_send(struct hop *h, isola_value msg, isola_port self) {
  if (h->kind != HOP_TRANSFER) {
    CHECK(isola_send_reply(h->peer, msg, self));
    return;
  }
  isola_buffer *buf;
  CHECK(isola_value_take_buffer(msg, &buf));
  CHECK(isola_send_reply(h->peer, isola_transfer(&buf), self));
  if (buf != NULL) fail("transfer: the handle was not emptied");
}

static void hop_handler(void *ctx, isola_port port, isola_value msg,
                        isola_port reply_to) {
  struct hop *h = ctx;
  if (msg.kind == ISOLA_PORT) { /* X: Y is up; start */
    isola_value first;
    isola_buffer *buf = NULL;
    isola_value outer[NESTED_OUTER];
    static isola_value inner[NESTED_OUTER][NESTED_INNER];
    uint8_t *bytes = NULL;
    CHECK(isola_value_get_port(msg, &h->peer));
    if (h->kind == HOP_NESTED) {
      for (size_t i = 0; i < NESTED_OUTER; i++) {
        for (size_t k = 0; k < NESTED_INNER; k++)
          inner[i][k] = isola_int((int64_t)(k == NESTED_INNER - 1 ? i : k));
        outer[i] = isola_list(inner[i], NESTED_INNER);
      }
      first = isola_list(outer, NESTED_OUTER);
    } else if (h->kind == HOP_COPY) {
      bytes = xmalloc((size_t)h->s);
      for (size_t j = 0; j < (size_t)h->s; j++) bytes[j] = pattern_byte(j);
      first = isola_bytes(bytes, (size_t)h->s);
    } else {
      if ((buf = isola_buffer_new((size_t)h->s)) == NULL) fail("no memory");
      for (size_t j = 0; j < (size_t)h->s; j++)
        isola_buffer_data(buf)[j] = pattern_byte(j);
      first = isola_transfer(&buf);
    }
    h->t_start = now_ns();
    CHECK(isola_send_reply(h->peer, first, port));
    free(bytes);
    return;
  }
  if (msg.kind == ISOLA_INT) { /* stop, or X: Y's clock at send N */
    if (h->is_x) CHECK(isola_send(h->root, msg));
    CHECK(isola_port_close(port));
    return;
  }
  h->received++;
  int64_t seq = h->is_x ? 2 * h->received : 2 * h->received - 1;
  if (seq < h->n) {
    hop_check(h, msg, false);
    h->peer = reply_to;
    hop_send(h, msg, port);
    return;
  }
  int64_t t = now_ns();
  hop_check(h, msg, true);
  if (h->is_x) {
    CHECK(isola_send(reply_to, isola_int(0)));
    CHECK(isola_send(h->root, isola_int(t)));
  } else {
    CHECK(isola_send(reply_to, isola_int(t))); /* X closes on it */
  }
  CHECK(isola_port_close(port));
}

/* [kind, S, N, X's port] */
static void hop_y_entry(isola_value msg) {
  struct hop *h = &hop_y;
  *h = (struct hop){.kind = (int)item_int(msg, 0), .s = item_int(msg, 1),
                    .n = item_int(msg, 2)};
  isola_port self;
  CHECK(isola_port_open(hop_handler, h, &self));
  CHECK(isola_send(item_port(msg, 3), isola_sendport(self)));
}

/* [kind, S, N, root] */
static void hop_x_entry(isola_value msg) {
  struct hop *h = &hop_x;
  *h = (struct hop){.kind = (int)item_int(msg, 0), .s = item_int(msg, 1),
                    .n = item_int(msg, 2), .root = item_port(msg, 3),
                    .is_x = true};
  isola_port self;
  CHECK(isola_port_open(hop_handler, h, &self));
  isola_value items[4] = {isola_int(h->kind), isola_int(h->s),
                          isola_int(h->n), isola_sendport(self)};
  isola_spawn_options opts = {.name = "hop-y"};
  CHECK(isola_spawn(hop_y_entry, isola_list(items, 4), &opts, NULL));
}

static void hop_root_handler(void *ctx, isola_port port, isola_value msg,
                             isola_port reply_to) {
  (void)ctx;
  (void)reply_to;
  hop_t_end = get_int(msg);
  CHECK(isola_port_close(port));
}

/* [kind, S, N] */
static void hop_root_entry(isola_value msg) {
  isola_port self;
  CHECK(isola_port_open(hop_root_handler, NULL, &self));
  isola_value items[4] = {isola_int(item_int(msg, 0)),
                          isola_int(item_int(msg, 1)),
                          isola_int(item_int(msg, 2)), isola_sendport(self)};
  isola_spawn_options opts = {.name = "hop-x"};
  CHECK(isola_spawn(hop_x_entry, isola_list(items, 4), &opts, NULL));
}

/* Runs N hops of the kind on a fresh pair; returns ns per one-way send. */
static double run_hops(int kind, int64_t s, int64_t n) {
  isola_value items[3] = {isola_int(kind), isola_int(s), isola_int(n)};
  hop_t_end = 0;
  CHECK(isola_run_main(hop_root_entry, isola_list(items, 3), "hop-root"));
  if (hop_t_end == 0) fail("hop: no result");
  return (double)(hop_t_end - hop_x.t_start) / (double)n;
}

/* ------------------------------------------------------------------------ */
/* Second round: latency samples, pairs, crossworker, hog, kill, timers,    */
/* tcpecho                                                                   */
/* ------------------------------------------------------------------------ */

/* Round-trip times in ns, one slot per round trip, written by the isolate
 * that owns the slot range and read by main() after isola_run_main()
 * returned (the end of run_main orders the writes before the reads). */
static uint32_t *samples;
static size_t nsamples;

static uint32_t clamp_ns(int64_t ns) {
  return ns < 0 ? 0 : ns > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

/* The p-quantile of the sorted samples: the value at index floor(p * n),
 * the same rule in every peer. */
static double quantile(const uint32_t *s, size_t n, double p) {
  size_t i = (size_t)(p * (double)n);
  if (i >= n) i = n - 1;
  return (double)s[i];
}

static void samples_alloc(size_t n) {
  samples = xmalloc(n * sizeof *samples);
  memset(samples, 0, n * sizeof *samples);
  nsamples = n;
}

static void report(const char *bench, const char *metric, double value,
                   const char *unit);

/* Sorts the samples and reports p50, p99 and p99.9 (prefixed metric names
 * when suffix is not empty). */
static void report_latency(const char *bench, bool p50, bool p999,
                           bool max, const char *suffix) {
  char m[64];
  qsort(samples, nsamples, sizeof *samples, cmp_u32);
  if (p50) {
    snprintf(m, sizeof m, "p50_ns%s", suffix);
    report(bench, m, quantile(samples, nsamples, 0.50), "ns");
  }
  snprintf(m, sizeof m, "p99_ns%s", suffix);
  report(bench, m, quantile(samples, nsamples, 0.99), "ns");
  if (p999) {
    snprintf(m, sizeof m, "p999_ns%s", suffix);
    report(bench, m, quantile(samples, nsamples, 0.999), "ns");
  }
  if (max) {
    snprintf(m, sizeof m, "max_ns%s", suffix);
    report(bench, m, (double)samples[nsamples - 1], "ns");
  }
}

/* The root of the second-round runs: it waits for `ready` READY messages,
 * then starts the clock and sends "go" to every one of them at once; the
 * run ends when `done` DONE messages have come (the clock stops at the
 * last).  DONE's ints are summed into done[]. */
static struct multi_root {
  isola_port port;
  int ready, done, nready, ndone;
  isola_port *go;
  int64_t t_start, t_end;
  int64_t sum[MAX_RESULTS];
} mroot;

static void multi_root_handler(void *ctx, isola_port port, isola_value msg,
                               isola_port reply_to) {
  struct multi_root *r = ctx;
  (void)reply_to;
  if (msg.kind != ISOLA_LIST || msg.len < 1) fail("root: bad message");
  switch (item_int(msg, 0)) {
  case TAG_READY:
    r->go[r->nready++] = item_port(msg, 1);
    if (r->nready < r->ready) break;
    r->t_start = now_ns();
    for (int i = 0; i < r->nready; i++) CHECK(isola_send(r->go[i], isola_null()));
    break;
  case TAG_DONE:
    for (size_t i = 1; i < msg.len && i <= MAX_RESULTS; i++)
      r->sum[i - 1] += item_int(msg, i);
    if (++r->ndone < r->done) break;
    r->t_end = now_ns();
    free(r->go);
    CHECK(isola_port_close(port));
    break;
  default:
    fail("root: unknown tag");
  }
}

/* Opens the root's port in a root entry; ready and done as above. */
static void multi_root_open(int ready, int done) {
  mroot = (struct multi_root){.ready = ready, .done = done};
  mroot.go = xmalloc((size_t)(ready > 0 ? ready : 1) * sizeof *mroot.go);
  CHECK(isola_port_open(multi_root_handler, &mroot, &mroot.port));
}

static void send_done(isola_port root, int64_t a, int64_t b) {
  isola_value done[3] = {isola_int(TAG_DONE), isola_int(a), isola_int(b)};
  CHECK(isola_send(root, isola_list(done, 3)));
}

/* ---- pairs K N, and the pair of hog N H --------------------------------- */

/* A timed pinger: [index, N, root].  It spawns a ponger (pong_entry), tells
 * the root it is ready, and on "go" makes N round trips, each timed from
 * the send to the answer; the times go to samples[index*N ...]. */
struct tping {
  isola_port root, pong;
  int64_t index, n, k, t0;
};

static void tping_handler(void *ctx, isola_port port, isola_value msg,
                          isola_port reply_to) {
  struct tping *p = ctx;
  (void)reply_to;
  switch (msg.kind) {
  case ISOLA_PORT:
    CHECK(isola_value_get_port(msg, &p->pong));
    send_tagged(p->root, TAG_READY, port);
    return;
  case ISOLA_NULL:
    p->t0 = now_ns();
    CHECK(isola_send_reply(p->pong, isola_int(p->n), port));
    return;
  default:
    break;
  }
  int64_t v = get_int(msg), t = now_ns();
  if (v != p->n - p->k) fail("pairs: got %" PRId64 ", want %" PRId64, v, p->n - p->k);
  samples[p->index * p->n + p->k] = clamp_ns(t - p->t0);
  p->t0 = t;
  if (++p->k < p->n) {
    CHECK(isola_send_reply(p->pong, isola_int(v - 1), port));
    return;
  }
  CHECK(isola_send(p->pong, isola_int(0)));
  send_done(p->root, p->k, 0);
  CHECK(isola_port_close(port));
  free(p);
}

static void tping_entry(isola_value msg) {
  struct tping *p = xmalloc(sizeof *p);
  isola_port self;
  p->index = item_int(msg, 0);
  p->n = item_int(msg, 1);
  p->root = item_port(msg, 2);
  p->k = 0;
  CHECK(isola_port_open(tping_handler, p, &self));
  isola_value items[1] = {isola_sendport(self)};
  isola_spawn_options opts = {.name = "pong"};
  CHECK(isola_spawn(pong_entry, isola_list(items, 1), &opts, NULL));
}

static void spawn_tping(int64_t index, int64_t n) {
  isola_value items[3] = {isola_int(index), isola_int(n),
                          isola_sendport(mroot.port)};
  isola_spawn_options opts = {.name = "ping"};
  CHECK(isola_spawn(tping_entry, isola_list(items, 3), &opts, NULL));
}

/* [K, N] */
static void pairs_root(isola_value msg) {
  int64_t k = item_int(msg, 0), n = item_int(msg, 1);
  multi_root_open((int)k, (int)k);
  for (int64_t i = 0; i < k; i++) spawn_tping(i, n);
}

/* The hog: [H ms, check].  Ready at once; on "go" it computes (a loop that
 * reads the clock) for H ms, calling isola_check_interrupts() at every
 * turn of the loop if check is set, and reports DONE [loop turns]. */
struct hog {
  isola_port root;
  int64_t h_ms, check;
};

static void hog_handler(void *ctx, isola_port port, isola_value msg,
                        isola_port reply_to) {
  struct hog *h = ctx;
  (void)msg;
  (void)reply_to;
  int64_t end = now_ns() + h->h_ms * 1000000, turns = 0;
  volatile uint64_t x = 1;
  while (now_ns() < end) {
    for (int i = 0; i < 100; i++) x = x * 6364136223846793005u + 1;
    turns++;
    if (h->check) CHECK(isola_check_interrupts());
  }
  send_done(h->root, 0, turns);
  CHECK(isola_port_close(port));
  free(h);
}

static void hog_entry(isola_value msg) {
  struct hog *h = xmalloc(sizeof *h);
  isola_port self;
  h->h_ms = item_int(msg, 0);
  h->check = item_int(msg, 1);
  h->root = item_port(msg, 2);
  CHECK(isola_port_open(hog_handler, h, &self));
  send_tagged(h->root, TAG_READY, self);
}

/* [N, H, check]: the hog and one timed pair. */
static void hog_root(isola_value msg) {
  multi_root_open(2, 2);
  isola_value items[3] = {isola_int(item_int(msg, 1)),
                          isola_int(item_int(msg, 2)),
                          isola_sendport(mroot.port)};
  isola_spawn_options opts = {.name = "hog"};
  CHECK(isola_spawn(hog_entry, isola_list(items, 3), &opts, NULL));
  spawn_tping(0, item_int(msg, 0));
}

/* ---- crossworker N ------------------------------------------------------- */

/* The two ends are root isolates of their own, each on its own thread
 * (isola_run_main pins a root isolate to its thread), so every hop crosses
 * threads: that is the only way to pin an isolate.  B opens a port that
 * answers what it gets; A makes N timed round trips to it. */
static isola_port cw_b_port = ISOLA_PORT_NONE;
static pthread_mutex_t cw_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cw_cond = PTHREAD_COND_INITIALIZER;

static void cw_b_entry(isola_value msg) {
  isola_port self;
  (void)msg;
  CHECK(isola_port_open(pong_handler, NULL, &self));
  pthread_mutex_lock(&cw_lock);
  cw_b_port = self;
  pthread_cond_signal(&cw_cond);
  pthread_mutex_unlock(&cw_lock);
}

static void *cw_b_thread(void *arg) {
  (void)arg;
  CHECK(isola_run_main(cw_b_entry, isola_null(), "crossworker-b"));
  return NULL;
}

struct cw_a {
  isola_port b;
  int64_t n, k, t0;
};

static void cw_a_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  struct cw_a *a = ctx;
  (void)reply_to;
  int64_t v = get_int(msg), t = now_ns();
  if (v != a->n - a->k) fail("crossworker: got %" PRId64, v);
  samples[a->k] = clamp_ns(t - a->t0);
  a->t0 = t;
  if (++a->k < a->n) {
    CHECK(isola_send_reply(a->b, isola_int(v - 1), port));
    return;
  }
  CHECK(isola_send(a->b, isola_int(0)));
  CHECK(isola_port_close(port));
}

static struct cw_a cw_a;

/* [N, B's port] */
static void cw_a_entry(isola_value msg) {
  isola_port self;
  cw_a = (struct cw_a){.n = item_int(msg, 0), .b = item_port(msg, 1)};
  CHECK(isola_port_open(cw_a_handler, &cw_a, &self));
  cw_a.t0 = now_ns();
  CHECK(isola_send_reply(cw_a.b, isola_int(cw_a.n), self));
}

static void run_crossworker(int64_t n) {
  pthread_t tb;
  samples_alloc((size_t)n);
  if (pthread_create(&tb, NULL, cw_b_thread, NULL) != 0) fail("pthread_create");
  pthread_mutex_lock(&cw_lock);
  while (cw_b_port == ISOLA_PORT_NONE) pthread_cond_wait(&cw_cond, &cw_lock);
  pthread_mutex_unlock(&cw_lock);
  isola_value items[2] = {isola_int(n), isola_sendport(cw_b_port)};
  CHECK(isola_run_main(cw_a_entry, isola_list(items, 2), "crossworker-a"));
  pthread_join(tb, NULL);
  if (cw_a.k != n) fail("crossworker: %" PRId64 " round trips", cw_a.k);
  report_latency("crossworker", true, true, false, "");
}

/* ---- kill N -------------------------------------------------------------- */

/*
 * A killer isolate spawns N idle isolates (each opens a port and reports
 * it is up) and keeps their handles.  When all are up it kills them all
 * (ISOLA_IMMEDIATE) and counts their exit notices: ns_per_kill.  Then the
 * root spawns one busy isolate whose entry computes for ever, calling
 * isola_check_interrupts() at every turn of its loop (the interrupt point
 * a cooperative isolate needs); when the busy one reports it is running,
 * the root kills it and times until its exit notice: busy_kill_us.  The
 * root does this part because it has a thread of its own: an isolate
 * readied by the busy one's report would wait in the busy one's worker's
 * next slot (see docs/benchmarks.md).
 */
struct killer {
  isola_port root, ctl, exits;
  isola_isolate *h;
  int64_t n, up, exited, t0;
};

static void kidle_entry(isola_value msg) {
  isola_port self;
  CHECK(isola_port_open(idle_handler, NULL, &self));
  CHECK(isola_send(item_port(msg, 0), isola_int(1)));
}

static void kbusy_entry(isola_value msg) {
  volatile uint64_t x = 1;
  CHECK(isola_send(item_port(msg, 0), isola_int(2)));
  for (;;) {
    for (int i = 0; i < 100; i++) x = x * 6364136223846793005u + 1;
    CHECK(isola_check_interrupts()); /* does not return once killed */
  }
}

static void killer_ctl(void *ctx, isola_port port, isola_value msg,
                       isola_port reply_to) {
  struct killer *k = ctx;
  (void)port;
  (void)msg;
  (void)reply_to;
  if (++k->up < k->n) return;
  k->t0 = now_ns();
  for (int64_t i = 0; i < k->n; i++) CHECK(isola_kill(&k->h[i], ISOLA_IMMEDIATE));
}

static void killer_exit(void *ctx, isola_port port, isola_value msg,
                        isola_port reply_to) {
  struct killer *k = ctx;
  (void)port;
  (void)msg;
  (void)reply_to;
  if (++k->exited < k->n) return;
  send_done(k->root, now_ns() - k->t0, k->exited);
  CHECK(isola_port_close(k->ctl));
  CHECK(isola_port_close(k->exits));
  free(k->h);
  free(k);
}

/* [N, root] */
static void killer_entry(isola_value msg) {
  struct killer *k = xmalloc(sizeof *k);
  *k = (struct killer){.n = item_int(msg, 0), .root = item_port(msg, 1)};
  k->h = xmalloc((size_t)k->n * sizeof *k->h);
  CHECK(isola_port_open(killer_ctl, k, &k->ctl));
  CHECK(isola_port_open(killer_exit, k, &k->exits));
  isola_value items[1] = {isola_sendport(k->ctl)};
  isola_spawn_options opts = {.name = "idle", .on_exit = k->exits};
  for (int64_t i = 0; i < k->n; i++)
    CHECK(isola_spawn(kidle_entry, isola_list(items, 1), &opts, &k->h[i]));
}

static struct kill_root {
  int64_t kill_ns, killed, busy_t0, busy_ns;
  isola_isolate busy;
} kroot;

/* [DONE, ns, killed] from the killer; 2 from the busy isolate; -1: its
 * exit notice. */
static void kill_root_handler(void *ctx, isola_port port, isola_value msg,
                              isola_port reply_to) {
  (void)ctx;
  (void)reply_to;
  if (msg.kind == ISOLA_LIST) {
    kroot.kill_ns = item_int(msg, 1);
    kroot.killed = item_int(msg, 2);
    isola_value items[1] = {isola_sendport(port)};
    isola_spawn_options opts = {.name = "busy", .on_exit = port,
                                .on_exit_message = isola_int(-1)};
    CHECK(isola_spawn(kbusy_entry, isola_list(items, 1), &opts, &kroot.busy));
  } else if (get_int(msg) == 2) {
    kroot.busy_t0 = now_ns();
    CHECK(isola_kill(&kroot.busy, ISOLA_IMMEDIATE));
  } else {
    kroot.busy_ns = now_ns() - kroot.busy_t0;
    CHECK(isola_port_close(port));
  }
}

/* [N] */
static void kill_root(isola_value msg) {
  isola_port self;
  CHECK(isola_port_open(kill_root_handler, NULL, &self));
  isola_value items[2] = {isola_int(item_int(msg, 0)), isola_sendport(self)};
  isola_spawn_options opts = {.name = "killer"};
  CHECK(isola_spawn(killer_entry, isola_list(items, 2), &opts, NULL));
}

/* ---- timers T I ---------------------------------------------------------- */

/* Isolate i of I starts T/I one-shot timers, timer j with a delay of
 * (i * T/I + j) mod 11 ms (0-10 ms, the same in every peer), counts the
 * firings and reports DONE [firings] at the last; with no port and no
 * live timer left it then ends. */
struct tset {
  isola_port root;
  int64_t per, fired;
};

static void tick(void *arg) {
  struct tset *s = arg;
  if (++s->fired < s->per) return;
  send_done(s->root, s->fired, 0);
  free(s);
}

/* [index, per, root] */
static void tset_entry(isola_value msg) {
  struct tset *s = xmalloc(sizeof *s);
  int64_t i = item_int(msg, 0);
  s->per = item_int(msg, 1);
  s->root = item_port(msg, 2);
  s->fired = 0;
  for (int64_t j = 0; j < s->per; j++) {
    isola_timer t;
    CHECK(isola_timer_start((uint64_t)((i * s->per + j) % 11), 0, tick, s, &t));
  }
}

/* [T, I] */
static void timers_root(isola_value msg) {
  int64_t t = item_int(msg, 0), n = item_int(msg, 1);
  multi_root_open(0, (int)n);
  isola_spawn_options opts = {.name = "timers"};
  mroot.t_start = now_ns();
  for (int64_t i = 0; i < n; i++) {
    isola_value items[3] = {isola_int(i), isola_int(t / n),
                            isola_sendport(mroot.port)};
    CHECK(isola_spawn(tset_entry, isola_list(items, 3), &opts, NULL));
  }
}

/* ---- tcpecho C R PORT: the server ---------------------------------------- */

/*
 * The isola server of the TCP echo benchmark (bench/tcpecho-client.c is
 * the client for every server).  As examples/echo_server_raw.c does
 * it: the root isolate listens on 127.0.0.1:PORT and watches the socket
 * (isola_watch_open); every connection gets an isolate of its own that
 * watches its fd and writes back what it reads.  When C connections have
 * ended the root stops listening and the run ends.
 */
static int echo_listen_fd = -1;
static isola_watch echo_listen_watch;
static int64_t echo_conns, echo_closed;

struct econn {
  int fd;
  isola_watch watch;
  isola_port root;
};

static void econn_readable(int fd, uint32_t events, void *arg) {
  struct econn *c = arg;
  char buf[4096];
  (void)events;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      for (ssize_t off = 0; off < n;) {
        ssize_t w = write(fd, buf + off, (size_t)(n - off));
        if (w > 0) {
          off += w;
        } else if (w < 0 && errno == EAGAIN) {
          /* The client reads before it writes again: a 64-byte echo
           * cannot fill the socket's buffer, so this does not happen. */
          fail("tcpecho: the socket buffer is full");
        } else if (w < 0 && errno != EINTR) {
          break;
        }
      }
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0 && errno == EINTR) continue;
    CHECK(isola_watch_close(c->watch));
    close(fd);
    CHECK(isola_send(c->root, isola_int(1)));
    free(c);
    return;
  }
}

/* [fd, root] */
static void econn_entry(isola_value msg) {
  struct econn *c = xmalloc(sizeof *c);
  c->fd = (int)item_int(msg, 0);
  c->root = item_port(msg, 1);
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
  CHECK(isola_watch_open(c->fd, ISOLA_READABLE, econn_readable, c, &c->watch));
}

static void echo_listener(int fd, uint32_t events, void *arg) {
  (void)events;
  (void)arg;
  for (;;) {
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) return;
    isola_value items[2] = {isola_int(c), isola_sendport(mroot.port)};
    isola_spawn_options o = {.name = "conn"};
    CHECK(isola_spawn(econn_entry, isola_list(items, 2), &o, NULL));
  }
}

static void echo_root_handler(void *ctx, isola_port port, isola_value msg,
                              isola_port reply_to) {
  (void)ctx;
  (void)msg;
  (void)reply_to;
  if (++echo_closed < echo_conns) return;
  CHECK(isola_watch_close(echo_listen_watch));
  close(echo_listen_fd);
  CHECK(isola_port_close(port));
}

/* [C, PORT] */
static void echo_root(isola_value msg) {
  echo_conns = item_int(msg, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)item_int(msg, 1)),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int one = 1;
  echo_listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (echo_listen_fd < 0) fail("socket");
  setsockopt(echo_listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(echo_listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      listen(echo_listen_fd, 1024) != 0)
    fail("tcpecho: cannot listen on 127.0.0.1:%" PRId64 ": %s",
         item_int(msg, 1), strerror(errno));
  CHECK(isola_port_open(echo_root_handler, NULL, &mroot.port));
  CHECK(isola_watch_open(echo_listen_fd, ISOLA_READABLE, echo_listener, NULL,
                         &echo_listen_watch));
}

/* ------------------------------------------------------------------------ */
/* Driver                                                                    */
/* ------------------------------------------------------------------------ */

/* fanin-bounded (BENCHMARKS.md, second round) is fanin with the
 * consumer's mailbox bound (isola_spawn_options.mailbox_bound) at C, like
 * Go's channel of capacity C: producers send C/4 an event and are muted
 * while the consumer is full (docs/design.md, "Backpressure"). */
static const char *const bench_names[] = {
    "pingpong", "ring",   "spawn",      "fanin",  "skynet",
    "payload",  "copy1m", "transfer1m", "copynested", "pairs",
    "crossworker", "hog", "idle1m",     "kill",   "timers", "tcpecho",
    "fanin-bounded"};
static const int bench_nargs[] = {1, 2, 1, 2, 2, 2, 1, 1, 1,
                                  2, 1, 2, 1, 1, 2, 3, 3};

/* The root's entry; message is [bench, a, b, c]. */
static void root_entry(isola_value msg) {
  int64_t bench = item_int(msg, 0);
  int64_t a = item_int(msg, 1), b = item_int(msg, 2), c = item_int(msg, 3);
  CHECK(isola_port_open(root_handler, &root, &root.port));
  root.expected = 1;
  isola_spawn_options opts = {0};
  isola_value items[4];
  switch (bench) {
  case BENCH_PINGPONG:
    items[0] = isola_int(a);
    items[1] = isola_sendport(root.port);
    opts.name = "ping";
    CHECK(isola_spawn(ping_entry, isola_list(items, 2), &opts, NULL));
    break;
  case BENCH_RING:
    root.expected = 2; /* DONE, then INFO with the hop total */
    items[0] = isola_int(a);
    items[1] = isola_int(b);
    items[2] = isola_int(0);
    items[3] = isola_sendport(root.port);
    opts.name = "ring";
    CHECK(isola_spawn(member_entry, isola_list(items, 4), &opts, NULL));
    break;
  case BENCH_SPAWN:
    items[0] = isola_int(a);
    items[1] = isola_sendport(root.port);
    opts.name = "boss";
    root.rss_before = rss_bytes();
    root.t_start = now_ns();
    CHECK(isola_spawn(boss_entry, isola_list(items, 2), &opts, NULL));
    break;
  case BENCH_FANIN:
  case BENCH_FANIN_BOUNDED:
    items[0] = isola_int(a);
    items[1] = isola_int(b);
    items[2] = isola_sendport(root.port);
    items[3] = isola_int(0);
    opts.name = "consumer";
    if (bench == BENCH_FANIN_BOUNDED) {
      opts.mailbox_bound = (size_t)c;
      items[3] = isola_int(c / 4 > 0 ? c / 4 : 1);
    }
    CHECK(isola_spawn(consumer_entry, isola_list(items, 4), &opts, NULL));
    break;
  case BENCH_SKYNET:
    items[0] = isola_int(0);
    items[1] = isola_int(a);
    items[2] = isola_int(b);
    items[3] = isola_sendport(root.port);
    opts.name = "skynet";
    root.t_start = now_ns();
    CHECK(isola_spawn(node_entry, isola_list(items, 4), &opts, NULL));
    break;
  case BENCH_PAYLOAD:
    items[0] = isola_int(a);
    items[1] = isola_int(b);
    items[2] = isola_sendport(root.port);
    items[1] = isola_int(2 * b); /* N round trips: 2N one-way sends */
    root.expected = 2; /* DONE from one side, INFO from the other */
    opts.name = "payload-a";
    CHECK(isola_spawn(side_a_entry, isola_list(items, 3), &opts, NULL));
    break;
  default:
    fail("unknown bench %" PRId64, bench);
  }
}

static void report(const char *bench, const char *metric, double value,
                   const char *unit) {
  printf("isola %s %s %.3f %s\n", bench, metric, value, unit);
}

/* Checks the figures main() got from the root and prints them. */
static void finish(int bench, const char *name, int64_t a, int64_t b) {
  double elapsed = (double)(root.t_end - root.t_start); /* ns */
  if (root.ndone < 1) fail("%s: no result", name);
  switch (bench) {
  case BENCH_PINGPONG:
    if (root.done[0] != a)
      fail("pingpong: %" PRId64 " round trips, want %" PRId64, root.done[0], a);
    report(name, "ns_per_roundtrip", elapsed / (double)a, "ns");
    break;
  case BENCH_RING:
    if (root.ninfo < 1 || root.info[0] != b || root.done[0] != b % a)
      fail("ring: %" PRId64 " hops (want %" PRId64 "), 0 seen by %" PRId64
           " (want %" PRId64 ")",
           root.ninfo ? root.info[0] : -1, b, root.done[0], b % a);
    report(name, "ns_per_hop", elapsed / (double)b, "ns");
    break;
  case BENCH_SPAWN: {
    /* Indexes 0 .. N-1 sum to N(N-1)/2; N is at most INT32_MAX. */
    int64_t want = a * (a - 1) / 2;
    if (root.ndone < 3 || root.done[0] != a || root.done[1] != a ||
        root.done[2] != want)
      fail("spawn: %" PRId64 " answers, %" PRId64 " exits, sum %" PRId64
           " (want %" PRId64 ", %" PRId64 ", %" PRId64 ")",
           root.done[0], root.done[1], root.done[2], a, a, want);
    report(name, "ns_per_spawn", (double)(root.t_mark - root.t_start) / (double)a,
           "ns");
    report(name, "bytes_per_idle",
           (double)(root.rss_mark - root.rss_before) / (double)a, "B");
    report(name, "ns_per_stop",
           (double)(root.t_end - root.t_after_mark) / (double)a, "ns");
    break;
  }
  case BENCH_FANIN: {
    /* P * (1 + .. + M), in the same wrapping arithmetic as the consumer. */
    uint64_t m = (uint64_t)b;
    uint64_t tri = m % 2 == 0 ? (m / 2) * (m + 1) : m * ((m + 1) / 2);
    uint64_t want = (uint64_t)a * tri;
    if (root.ndone < 2 || root.done[0] != a * b ||
        (uint64_t)root.done[1] != want)
      fail("fanin: count %" PRId64 " sum %" PRIu64 ", want %" PRId64
           " and %" PRIu64,
           root.done[0], (uint64_t)root.done[1], a * b, want);
    report(name, "msgs_per_s", (double)(a * b) / (elapsed / 1e9), "msg/s");
    report(name, "rss_after_drain_kb", (double)settled_rss_kb(), "kB");
    break;
  }
  case BENCH_SKYNET: {
    int64_t want = a * (a - 1) / 2;
    if (root.done[0] != want)
      fail("skynet: sum %" PRId64 ", want %" PRId64, root.done[0], want);
    printf("isola skynet sum %" PRId64 " sum\n", root.done[0]);
    report(name, "ms_total", elapsed / 1e6, "ms");
    break;
  }
  case BENCH_PAYLOAD:
    if (root.ndone < 2 || root.ninfo < 1 || root.done[0] != 2 * b ||
        root.done[1] + root.info[0] != 2 * b)
      fail("payload: last send %" PRId64 ", %" PRId64 " received, want %" PRId64,
           root.done[0], root.ndone < 2 ? -1 : root.done[1] + root.info[0],
           2 * b);
    report(name, "copy_gbps", (double)a * 2.0 * (double)b / (elapsed / 1e9) / 1e9,
           "GB/s");
    /* The same S, the buffer moved instead of copied: 50N round trips
     * (100N sends), every system alike, so the run is long enough to time. */
    report(name, "transfer_ns", run_hops(HOP_TRANSFER, a, 100 * b), "ns");
    break;
  }
}

static void usage(void) {
  fputs("usage: isola-bench [--workers N] BENCH ARGS...\n"
        "  pingpong N        N >= 1 round trips between two isolates\n"
        "  ring P T          P >= 2 isolates, token from T >= 1 down to 0\n"
        "  spawn N           N >= 1 idle isolates\n"
        "  fanin P M         P >= 1 producers send M >= 1 ints each\n"
        "  fanin-bounded P M C  as fanin, the consumer bound at C >= 1 messages\n"
        "  skynet SIZE DIV   DIV >= 2, SIZE a power of DIV\n"
        "  payload S N       S >= 1 bytes, N >= 1 round trips\n"
        "  copy1m N          N >= 1 one-way sends of a copied 1 MiB buffer\n"
        "  transfer1m N      N >= 1 one-way sends of a moved 1 MiB buffer\n"
        "  copynested N      N >= 1 one-way sends of 10,000 nested values\n"
        "  pairs K N         K >= 1 timed pairs, N >= 1 round trips each\n"
        "  crossworker N     N >= 1 timed round trips across two threads\n"
        "  hog N H           N >= 1 timed round trips next to an H ms hog\n"
        "  idle1m N          as spawn N\n"
        "  kill N            N >= 1 idle isolates killed, then a busy one\n"
        "  timers T I        T >= I >= 1 timers over I isolates (I divides T)\n"
        "  tcpecho C R PORT  echo server for C >= 1 connections on PORT\n"
        "  --workers N       worker threads (0: one per core, the default)\n",
        stderr);
  exit(2);
}

/* A decimal integer in [0, INT32_MAX]: bounded so that no product or sum
 * the benchmarks compute from it overflows. */
static int64_t parse_arg(const char *s) {
  char *end;
  if (s[0] < '0' || s[0] > '9') usage();
  unsigned long long v = strtoull(s, &end, 10);
  if (*end != '\0' || v > INT32_MAX) usage();
  return (int64_t)v;
}

int main(int argc, char **argv) {
  isola_config config;
  int argi = 1;
  isola_config_init(&config);
  if (argi + 1 < argc && strcmp(argv[argi], "--workers") == 0) {
    config.workers = (unsigned)parse_arg(argv[argi + 1]);
    argi += 2;
  }
  if (argi >= argc) usage();
  int bench = -1;
  for (int i = 0; i < (int)(sizeof bench_names / sizeof bench_names[0]); i++)
    if (strcmp(argv[argi], bench_names[i]) == 0) bench = i;
  if (bench < 0 || argc - argi - 1 != bench_nargs[bench]) usage();
  int64_t a = parse_arg(argv[argi + 1]);
  int64_t b = bench_nargs[bench] > 1 ? parse_arg(argv[argi + 2]) : 0;
  int64_t c = bench_nargs[bench] > 2 ? parse_arg(argv[argi + 3]) : 0;
  switch (bench) {
  case BENCH_PAIRS:
  case BENCH_HOG:
  case BENCH_TCPECHO:
    if (a < 1 || b < 1 || (bench == BENCH_TCPECHO && c > 65535)) usage();
    break;
  case BENCH_TIMERS:
    if (b < 1 || a < b || a % b != 0) usage();
    break;
  case BENCH_CROSSWORKER:
  case BENCH_IDLE1M:
  case BENCH_KILL:
  case BENCH_PINGPONG:
  case BENCH_SPAWN:
  case BENCH_COPY1M:
  case BENCH_TRANSFER1M:
  case BENCH_COPYNESTED:
    if (a < 1) usage();
    break;
  case BENCH_RING:
    if (a < 2 || b < 1) usage();
    break;
  case BENCH_FANIN:
  case BENCH_PAYLOAD:
    if (a < 1 || b < 1) usage();
    break;
  case BENCH_FANIN_BOUNDED:
    if (a < 1 || b < 1 || c < 1) usage();
    break;
  case BENCH_SKYNET:
    /* The tree must split evenly down to leaves of size 1. */
    if (a < 1 || b < 2) usage();
    for (int64_t s = a; s > 1; s /= b)
      if (s % b != 0) usage();
    break;
  }

  CHECK(isola_vm_init(config.workers != 0 ? &config : NULL));
  isola_value items[4] = {isola_int(bench), isola_int(a), isola_int(b),
                          isola_int(c)};
  const char *name = bench_names[bench];
  if (bench == BENCH_IDLE1M) {
    items[0] = isola_int(BENCH_SPAWN);
    CHECK(isola_run_main(root_entry, isola_list(items, 4), "bench"));
    finish(BENCH_SPAWN, name, a, b);
  } else if (bench == BENCH_PAIRS) {
    samples_alloc((size_t)(a * b));
    isola_value args[2] = {isola_int(a), isola_int(b)};
    CHECK(isola_run_main(pairs_root, isola_list(args, 2), "bench"));
    if (mroot.sum[0] != a * b)
      fail("pairs: %" PRId64 " round trips, want %" PRId64, mroot.sum[0], a * b);
    /* Two messages a round trip, over every pair. */
    report(name, "msgs_per_s",
           2.0 * (double)(a * b) / ((double)(mroot.t_end - mroot.t_start) / 1e9),
           "msg/s");
    report_latency(name, true, true, false, "");
  } else if (bench == BENCH_CROSSWORKER) {
    run_crossworker(a);
  } else if (bench == BENCH_HOG) {
    for (int check = 0; check <= 1; check++) {
      samples_alloc((size_t)a);
      isola_value args[3] = {isola_int(a), isola_int(b), isola_int(check)};
      CHECK(isola_run_main(hog_root, isola_list(args, 3), "bench"));
      if (mroot.sum[0] != a || mroot.sum[1] < 1)
        fail("hog: %" PRId64 " round trips, want %" PRId64, mroot.sum[0], a);
      report_latency(name, false, false, true, check ? "_checked" : "");
      free(samples);
    }
  } else if (bench == BENCH_KILL) {
    isola_value args[1] = {isola_int(a)};
    CHECK(isola_run_main(kill_root, isola_list(args, 1), "bench"));
    if (kroot.killed != a || kroot.busy_ns <= 0)
      fail("kill: %" PRId64 " exit notices, want %" PRId64, kroot.killed, a);
    report(name, "ns_per_kill", (double)kroot.kill_ns / (double)a, "ns");
    report(name, "busy_kill_us", (double)kroot.busy_ns / 1e3, "us");
  } else if (bench == BENCH_TIMERS) {
    isola_value args[2] = {isola_int(a), isola_int(b)};
    CHECK(isola_run_main(timers_root, isola_list(args, 2), "bench"));
    if (mroot.sum[0] != a)
      fail("timers: %" PRId64 " fired, want %" PRId64, mroot.sum[0], a);
    report(name, "timers_per_s",
           (double)a / ((double)(mroot.t_end - mroot.t_start) / 1e9), "timer/s");
  } else if (bench == BENCH_TCPECHO) {
    isola_value args[2] = {isola_int(a), isola_int(c)};
    CHECK(isola_run_main(echo_root, isola_list(args, 2), "bench"));
    if (echo_closed != a)
      fail("tcpecho: %" PRId64 " connections ended, want %" PRId64, echo_closed, a);
  } else if (bench == BENCH_COPY1M)
    report("copy1m", "ns_per_send", run_hops(HOP_COPY, 1 << 20, a), "ns");
  else if (bench == BENCH_TRANSFER1M)
    report("transfer1m", "ns_per_send", run_hops(HOP_TRANSFER, 1 << 20, a),
           "ns");
  else if (bench == BENCH_COPYNESTED)
    report("copynested", "ns_per_send", run_hops(HOP_NESTED, 0, a), "ns");
  else
    CHECK(isola_run_main(root_entry, isola_list(items, 4), "bench"));
  if (bench < BENCH_COPY1M) finish(bench, name, a, b);
  if (bench == BENCH_FANIN_BOUNDED) finish(BENCH_FANIN, name, a, b);
  report(name, "peak_rss_kb", (double)peak_rss_kb(), "kB");
  fflush(stdout);
  isola_shutdown_report rep;
  int rc = isola_vm_shutdown(&rep);
  if (rc != ISOLA_OK)
    fail("isola_vm_shutdown: %s; %zu stuck: %s", isola_err_name(rc), rep.stuck,
         rep.text);
  return 0;
}
