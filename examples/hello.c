/* SPDX-License-Identifier: MIT */
/*
 * hello.c — the showcase: isolates that share nothing and talk only through
 * ports.
 *
 * The program's main thread becomes the root isolate (isola_run_main_ctx,
 * whose entry gets a context pointer: no globals).  It hands four slices
 * of a sum to isola_run_async_opts, each computed in an isolate of its
 * own; each completion comes back tagged with the slice's name, in
 * whatever order they finish.  Then two isolates on the pool play
 * ping-pong to show what a message costs: the runtime keeps two isolates
 * that talk on one worker thread.  Ping spawns pong with isola_spawn_port,
 * which hands back pong's port at once: no "send me your port" handshake.
 * When the root isolate closes its last port, isola_run_main_ctx returns
 * and the VM shuts down, freeing everything.
 *
 * The same file builds two ways: as the program `hello` (main below), and
 * as the module hello.so (HELLO_MODULE defined) that the runner runs, where
 * isola_main is the root isolate's entry and the runner owns the VM:
 *
 *   isola run build/examples/hello.so
 *
 * Build and run: sh tools/showcase.sh
 */
#define _POSIX_C_SOURCE 200809L
#include <isola.h>
#include <stdio.h>
#include <time.h>

#define WORKERS 4
#define LIMIT 40000000LL /* sum of 0 .. LIMIT-1, split among the workers */
#define ROUND_TRIPS 200000

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- a worker: isola_run computes one slice [from, to) ------------------ */

static isola_value sum_slice(isola_value job) {
  int64_t from, to;
  if (isola_unpack(job, "[i i]", &from, &to) != ISOLA_OK)
    isola_throw("bad job: %s", isola_error_detail());
  long long sum = 0;
  for (long long i = from; i < to; i++) sum += i;
  return isola_int(sum);
}

/* ---- ping-pong between two isolates on the pool ------------------------ */

static void pong(void *ctx, isola_port port, isola_value msg,
                 isola_port reply_to) {
  (void)ctx;
  if (msg.kind != ISOLA_INT) { /* ping says stop */
    isola_port_close(port);    /* last port closed: this isolate ends */
    return;
  }
  isola_send_reply(reply_to, msg, port); /* bounce the ball back */
}

typedef struct ping_state {
  isola_port root, pong;
  int64_t n;
  double t0;
} ping_state;

static void ping(void *ctx, isola_port port, isola_value msg,
                 isola_port reply_to) {
  (void)msg, (void)reply_to;
  ping_state *st = ctx;
  if (++st->n < ROUND_TRIPS) {
    isola_send_reply(st->pong, isola_int(st->n), port);
    return;
  }
  isola_send(st->pong, isola_null()); /* pong: stop */
  isola_send(st->root, isola_double(now_ms() - st->t0));
  isola_port_close(port);
}

static void ping_entry(isola_value root) {
  ping_state *st = isola_calloc(sizeof *st); /* freed when ping ends */
  isola_value_get_port(root, &st->root);
  isola_spawn_options o = {.name = "pong"};
  isola_spawn_port(NULL, isola_null(), pong, NULL, &o, NULL, &st->pong);
  isola_port me;
  isola_port_open(ping, st, &me);
  st->t0 = now_ms();
  isola_send_reply(st->pong, isola_int(0), me);
}

/* ---- the root isolate --------------------------------------------------- */

typedef struct root_state {
  int answers;
  long long total;
} root_state;

static void on_root(void *ctx, isola_port port, isola_value msg,
                    isola_port reply_to) {
  (void)reply_to;
  root_state *st = ctx;
  const char *name;
  int64_t sum;
  double ms;
  if (isola_unpack(msg, "[s b i]", &name, NULL, &sum) == ISOLA_OK) {
    printf("  %-9s answered %lld\n", name, (long long)sum); /* a slice */
    st->total += sum;
    if (++st->answers < WORKERS) return;
    long long expect = LIMIT * (LIMIT - 1) / 2;
    printf("root: total %lld, expected %lld: %s\n\n", st->total, expect,
           st->total == expect ? "correct" : "WRONG");
    if (st->total != expect) isola_set_exit_code(1);
    printf("root: spawning 'ping', which spawns 'pong'; they bounce a "
           "ball %d times\n", ROUND_TRIPS);
    isola_spawn_options o = {.name = "ping"};
    isola_spawn(ping_entry, isola_sendport(port), &o, NULL);
  } else if (isola_unpack(msg, "d", &ms) == ISOLA_OK) { /* ping's time */
    printf("root: %d round trips in %.1f ms: %.0f ns per round trip\n\n",
           ROUND_TRIPS, ms, ms * 1e6 / ROUND_TRIPS);
    isola_port_close(port); /* the root's last port: the run ends */
  } else {
    isola_throw("unexpected message: %s", isola_error_detail());
  }
}

static void root_entry(void *ctx, isola_value msg) {
  (void)msg;
  isola_port me;
  isola_port_open(on_root, ctx, &me);
  printf("root: %d isolates sum 0..%lld\n", WORKERS, LIMIT - 1);
  for (int i = 0; i < WORKERS; i++) {
    char name[16];
    snprintf(name, sizeof name, "worker-%d", i);
    isola_value job[2] = {isola_int(LIMIT / WORKERS * i),
                          isola_int(LIMIT / WORKERS * (i + 1))};
    isola_run_options o = {.name = name, .tag = isola_str(name)};
    int rc = isola_run_async_opts(sum_slice, isola_list(job, 2), &o, me);
    if (rc != ISOLA_OK) isola_throw("run: %s", isola_strerror(rc));
  }
}

#ifdef HELLO_MODULE
ISOLA_MODULE();

/* The runner calls this on its main thread, as the root isolate; it exits
 * once the root has closed its last port (on_root). */
void isola_main(isola_value args, isola_value message) {
  (void)args;
  printf("isola %s: isolates share nothing and talk only through ports\n\n",
         ISOLA_VERSION_STRING);
  root_entry(isola_calloc(sizeof(root_state)), message);
}
#else
int main(void) {
  printf("isola %s: isolates share nothing and talk only through ports\n\n",
         ISOLA_VERSION_STRING);
  root_state st = {0};
  isola_spawn_options o = {.name = "root"};
  int rc = isola_vm_init(NULL); /* one worker thread per core */
  if (rc == ISOLA_OK)
    rc = isola_run_main_ctx(root_entry, &st, isola_null(), &o);
  if (rc != ISOLA_OK) {
    fprintf(stderr, "isola: %s\n", isola_strerror(rc));
    return 1;
  }
  printf("root: no live ports left; the root isolate has ended\n");
  rc = isola_vm_shutdown(NULL);
  printf("vm: shut down (%s); every thread joined, every message freed\n",
         isola_err_name(rc));
  return rc == ISOLA_OK ? 0 : 1;
}
#endif
