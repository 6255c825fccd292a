/* SPDX-License-Identifier: MIT */
/*
 * hello.c — the showcase: isolates that share nothing and talk only through
 * ports.
 *
 * The program's main thread becomes the root isolate (isola_run_main).  It
 * spawns four worker isolates, sends each a slice of a sum to compute along
 * with the port to answer on, and prints the answers as they arrive.  Then
 * two isolates on the pool play ping-pong to show what a message costs:
 * the runtime keeps two isolates that talk on one worker thread.  When the root
 * isolate closes its last port, isola_run_main returns and the VM shuts
 * down, freeing everything.
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
#include <stdlib.h>
#include <time.h>

#define WORKERS 4
#define LIMIT 40000000LL /* sum of 0 .. LIMIT-1, split among the workers */
#define ROUND_TRIPS 200000

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- a worker: sums [from, to) and answers [name, sum] ------------------- */

static void worker_entry(isola_value msg) {
  /* msg = [from, to, reply port] */
  isola_value from, to, reply;
  isola_list_get(msg, 0, &from);
  isola_list_get(msg, 1, &to);
  isola_list_get(msg, 2, &reply);
  long long sum = 0;
  for (long long i = from.as.i; i < to.as.i; i++) sum += i;
  isola_isolate_info me;
  isola_current_info(&me);
  isola_value answer[2] = {isola_str(me.name), isola_int(sum)};
  isola_send(reply.as.port, isola_list(answer, 2));
  /* No port was opened: the isolate ends when this function returns. */
}

/* ---- ping-pong between two isolates on the pool ------------------------ */

static void pong_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx;
  if (msg.as.i < 0) {       /* ping says stop */
    isola_port_close(port); /* last port closed: this isolate ends */
    return;
  }
  isola_send_reply(reply_to, msg, port); /* bounce the ball back */
}

static void pong_entry(isola_value ping_port) {
  isola_port me;
  isola_port_open(pong_handler, NULL, &me);
  isola_send(ping_port.as.port, isola_sendport(me)); /* tell ping where I am */
}

typedef struct ping_state {
  isola_port root;
  double t0;
} ping_state;

static void ping_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  ping_state *st = ctx;
  if (msg.kind == ISOLA_PORT) { /* pong is ready: serve */
    st->t0 = now_ms();
    isola_send_reply(msg.as.port, isola_int(1), port);
    return;
  }
  if (msg.as.i < ROUND_TRIPS) {
    isola_send_reply(reply_to, isola_int(msg.as.i + 1), port);
    return;
  }
  double ms = now_ms() - st->t0;
  isola_send(reply_to, isola_int(-1)); /* pong: stop */
  isola_send(st->root, isola_double(ms));
  isola_port_close(port);
  free(st);
}

static void ping_entry(isola_value root_port) {
  ping_state *st = malloc(sizeof *st);
  st->root = root_port.as.port;
  isola_port me;
  isola_port_open(ping_handler, st, &me);
  isola_spawn_options o = {.name = "pong"};
  isola_spawn(pong_entry, isola_sendport(me), &o, NULL);
}

/* ---- the root isolate --------------------------------------------------- */

typedef struct root_state {
  int answers;
  long long total;
} root_state;

static root_state st;

static void root_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx;
  (void)reply_to;
  if (msg.kind == ISOLA_LIST) { /* a worker's [name, sum] */
    isola_value name, sum;
    isola_list_get(msg, 0, &name);
    isola_list_get(msg, 1, &sum);
    printf("  %-9s answered %lld\n", name.as.str, (long long)sum.as.i);
    st.total += sum.as.i;
    if (++st.answers == WORKERS) {
      long long expect = LIMIT * (LIMIT - 1) / 2;
      printf("root: total %lld, expected %lld: %s\n\n", st.total, expect,
             st.total == expect ? "correct" : "WRONG");
      printf("root: spawning 'ping', which spawns 'pong'; they bounce a "
             "ball %d times\n", ROUND_TRIPS);
      isola_spawn_options o = {.name = "ping"};
      isola_spawn(ping_entry, isola_sendport(port), &o, NULL);
    }
  } else { /* ping's time */
    double ms = msg.as.d;
    printf("root: %d round trips in %.1f ms: %.0f ns per round trip\n\n",
           ROUND_TRIPS, ms, ms * 1e6 / ROUND_TRIPS);
    isola_port_close(port); /* the root's last port: run_main returns */
  }
}

static void root_entry(isola_value msg) {
  (void)msg;
  isola_port me;
  isola_port_open(root_handler, NULL, &me);
  printf("root: spawning %d workers to sum 0..%lld\n", WORKERS, LIMIT - 1);
  for (int i = 0; i < WORKERS; i++) {
    char name[16];
    snprintf(name, sizeof name, "worker-%d", i);
    isola_value job[3] = {isola_int(LIMIT / WORKERS * i),
                          isola_int(LIMIT / WORKERS * (i + 1)),
                          isola_sendport(me)};
    isola_spawn_options o = {.name = name};
    int rc = isola_spawn(worker_entry, isola_list(job, 3), &o, NULL);
    if (rc != ISOLA_OK) {
      fprintf(stderr, "spawn: %s\n", isola_strerror(rc));
      exit(1);
    }
  }
}

#ifdef HELLO_MODULE
ISOLA_MODULE();

/* The runner calls this on its main thread, as the root isolate; it exits
 * once the root has closed its last port (root_handler). */
void isola_main(isola_value args, isola_value message) {
  (void)args;
  printf("isola %s: isolates share nothing and talk only through ports\n\n",
         ISOLA_VERSION_STRING);
  root_entry(message);
}
#else
int main(void) {
  printf("isola %s: isolates share nothing and talk only through ports\n\n",
         ISOLA_VERSION_STRING);
  int rc = isola_vm_init(NULL); /* one worker thread per core */
  if (rc == ISOLA_OK) rc = isola_run_main(root_entry, isola_null(), "root");
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
