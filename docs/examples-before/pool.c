/* SPDX-License-Identifier: MIT */
/* examples/pool.c on the API as it was before the toolkit (commit 2053f9a:
 * no isola_spawn_port, isola_call, isola_unpack): a handshake for each
 * worker's port, and the worker's index carried in every answer; the same
 * program with the same output.  Written only to count the lines it took
 * (docs/examples.md); not built by CMake.  It still builds and runs:
 *   cc -shared -fPIC -Iinclude docs/examples-before/pool.c -o pool_old.so
 *   build/isola run ./pool_old.so 1000 4 */
#include <isola.h>
#include <stdio.h>
#include <stdlib.h>

ISOLA_MODULE();

#define MAX_WORKERS 64

static int64_t int_at(isola_value msg, size_t i) {
  isola_value v;
  int64_t n = -1;
  isola_list_get(msg, i, &v);
  isola_value_get_int(v, &n);
  return n;
}

static isola_port port_at(isola_value msg, size_t i) {
  isola_value v;
  isola_port p = ISOLA_PORT_NONE;
  isola_list_get(msg, i, &v);
  isola_value_get_port(v, &p);
  return p;
}

/* ---- a worker: [index, root] -> reports [index, its port]; a job
 * [n] is answered with [index, n * n]; null: stop ---------------------- */

static void work(void *ctx, isola_port port, isola_value msg,
                 isola_port reply_to) {
  int64_t index = (int64_t)(intptr_t)ctx, n;
  if (msg.kind == ISOLA_NULL) {
    isola_port_close(port);
    return;
  }
  if (isola_value_get_int(msg, &n) != ISOLA_OK) isola_throw("bad job");
  isola_value answer[2] = {isola_int(index), isola_int(n * n)};
  isola_send(reply_to, isola_list(answer, 2));
}

static void worker_entry(isola_value msg) {
  int64_t index = int_at(msg, 0);
  isola_port jobs;
  if (isola_port_open(work, (void *)(intptr_t)index, &jobs) != ISOLA_OK)
    isola_throw("worker: no port");
  isola_value ready[2] = {isola_int(index), isola_sendport(jobs)};
  isola_send(port_at(msg, 1), isola_list(ready, 2));
}

/* ---- the root: hands out the jobs ------------------------------------- */

static struct {
  int64_t jobs, workers, given, done, stopped, sum;
  isola_port me, port[MAX_WORKERS];
} p;

static void next_job(int64_t w) {
  if (p.given == p.jobs) {
    isola_send(p.port[w], isola_null());
    if (++p.stopped == p.workers) isola_port_close(p.me);
    return;
  }
  if (isola_send_reply(p.port[w], isola_int(++p.given), p.me) != ISOLA_OK)
    isola_throw("send failed");
}

/* [index, its port] (ready) or [index, answer]. */
static void on_message(void *ctx, isola_port port, isola_value msg,
                       isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  isola_value second;
  int64_t w = int_at(msg, 0), square;
  if (w < 0 || w >= p.workers || isola_list_get(msg, 1, &second) != ISOLA_OK)
    isola_throw("bad message");
  if (second.kind == ISOLA_PORT) {
    p.port[w] = port_at(msg, 1);
  } else {
    if (isola_value_get_int(second, &square) != ISOLA_OK)
      isola_throw("bad answer");
    p.sum += square;
    if (++p.done == p.jobs) {
      int64_t want = p.jobs * (p.jobs + 1) * (2 * p.jobs + 1) / 6;
      printf("pool: %lld jobs, sum of squares %lld (expected %lld)\n",
             (long long)p.jobs, (long long)p.sum, (long long)want);
      isola_set_exit_code(p.sum == want ? 0 : 1);
    }
  }
  next_job(w);
}

static int64_t arg_int(isola_value args, size_t i, int64_t dflt) {
  isola_value v;
  const char *s;
  if (isola_list_get(args, i, &v) != ISOLA_OK ||
      isola_value_get_str(v, &s, NULL) != ISOLA_OK)
    return dflt;
  return strtoll(s, NULL, 10);
}

void isola_main(isola_value args, isola_value message) {
  (void)message;
  p.jobs = arg_int(args, 0, 1000);
  p.workers = arg_int(args, 1, 4);
  if (p.jobs < 1 || p.jobs > 1000000 || p.workers < 1 ||
      p.workers > MAX_WORKERS) {
    fprintf(stderr, "usage: isola run pool.so [jobs [workers]] "
                    "(jobs 1..1000000, workers 1..%d)\n", MAX_WORKERS);
    isola_set_exit_code(2);
    return;
  }
  if (isola_port_open(on_message, NULL, &p.me) != ISOLA_OK)
    isola_throw("root: no port");
  isola_spawn_options o = {.name = "worker"};
  for (int64_t i = 0; i < p.workers; i++) {
    isola_value arg[2] = {isola_int(i), isola_sendport(p.me)};
    if (isola_spawn(worker_entry, isola_list(arg, 2), &o, NULL) != ISOLA_OK)
      isola_throw("spawn failed");
  }
}
