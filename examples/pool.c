/* SPDX-License-Identifier: MIT */
/*
 * pool.c — a worker pool: `workers` isolates serve `jobs` jobs, one job at
 * a time each; a worker that answers gets the next job.
 *
 *   isola run build/examples/pool.so [jobs [workers]]   (defaults 1000 4)
 *
 * Each worker is spawned with isola_spawn_port, which hands back the port
 * the worker serves: no "send me your port" handshake.  The root gives a
 * worker a job with isola_call: the answer comes to a callback whose
 * context is that worker, which hands it its next job, or, when none is
 * left, tells it to stop.  A job n is answered with n * n; the root checks
 * the sum of the answers (exit code 1 if wrong).  The pending calls keep
 * the root alive: once the last one is answered it ends, and so does the
 * run.
 */
#include <isola.h>
#include <stdio.h>
#include <stdlib.h>

ISOLA_MODULE();

#define MAX_WORKERS 64

/* ---- a worker: n -> n * n; null: stop --------------------------------- */

static void work(void *ctx, isola_port port, isola_value msg,
                 isola_port reply_to) {
  (void)ctx;
  int64_t n;
  if (msg.kind == ISOLA_NULL) {
    isola_port_close(port); /* its only port: the worker ends */
  } else if (isola_unpack(msg, "i", &n) == ISOLA_OK) {
    isola_send(reply_to, isola_int(n * n));
  } else {
    isola_throw("bad job: %s", isola_error_detail());
  }
}

/* ---- the root: hands out the jobs ------------------------------------- */

static struct {
  int64_t jobs, given, done, sum;
  isola_port workers[MAX_WORKERS];
} p;

static void on_answer(void *ctx, int status, isola_value reply);

/* Gives worker w its next job, or tells it to stop. */
static void next_job(intptr_t w) {
  if (p.given == p.jobs)
    isola_send(p.workers[w], isola_null());
  else if (isola_call(p.workers[w], isola_int(++p.given), ISOLA_FOREVER,
                      on_answer, (void *)w) != ISOLA_OK)
    isola_throw("call: %s", isola_error_detail());
}

/* The answer to worker w's job (ctx is w). */
static void on_answer(void *ctx, int status, isola_value reply) {
  int64_t square;
  (void)status; /* no timeout: always ISOLA_OK */
  if (isola_unpack(reply, "i", &square) != ISOLA_OK)
    isola_throw("bad answer: %s", isola_error_detail());
  p.sum += square;
  if (++p.done == p.jobs) {
    int64_t want = p.jobs * (p.jobs + 1) * (2 * p.jobs + 1) / 6;
    printf("pool: %lld jobs, sum of squares %lld (expected %lld)\n",
           (long long)p.jobs, (long long)p.sum, (long long)want);
    isola_set_exit_code(p.sum == want ? 0 : 1);
  }
  next_job((intptr_t)ctx);
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
  int64_t workers = arg_int(args, 1, 4);
  if (p.jobs < 1 || p.jobs > 1000000 || workers < 1 ||
      workers > MAX_WORKERS) {
    fprintf(stderr, "usage: isola run pool.so [jobs [workers]] "
                    "(jobs 1..1000000, workers 1..%d)\n", MAX_WORKERS);
    isola_set_exit_code(2);
    return;
  }
  isola_spawn_options o = {.name = "worker"};
  for (intptr_t w = 0; w < workers; w++) {
    if (isola_spawn_port(NULL, isola_null(), work, NULL, &o, NULL,
                         &p.workers[w]) != ISOLA_OK)
      isola_throw("spawn: %s", isola_error_detail());
    next_job(w);
  }
}
