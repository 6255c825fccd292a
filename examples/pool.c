/* SPDX-License-Identifier: MIT */
/*
 * pool.c — a worker pool: `workers` isolates serve `jobs` jobs, one job at
 * a time each; a worker that answers gets the next job.
 *
 *   isola run build/examples/pool.so [jobs [workers]]   (defaults 1000 4)
 *
 * isola_pool_start spawns the workers, each serving the handler `work`;
 * isola_pool_call gives the pool a job: an idle worker takes it, or it
 * waits in the pool's queue until one is free, and the answer comes to a
 * callback in the root.  A job n is answered with n * n; the root checks
 * the sum of the answers (exit code 1 if wrong).  The pending jobs keep
 * the root alive: once the last one is answered it ends, its pool (and
 * workers) with it, and so does the run.
 */
#include <isola.h>
#include <stdio.h>

ISOLA_MODULE();

/* ---- a worker: n -> n * n ---------------------------------------------- */

static void work(void *ctx, isola_port port, isola_value msg,
                 isola_port reply_to) {
  (void)ctx, (void)port;
  int64_t n;
  if (isola_unpack(msg, "i", &n) != ISOLA_OK)
    isola_throw("bad job: %s", isola_error_detail());
  isola_send(reply_to, isola_int(n * n));
}

/* ---- the root: gives the pool every job -------------------------------- */

static int64_t jobs, done, sum;

static void on_answer(void *ctx, int status, isola_value reply) {
  (void)ctx;
  int64_t square;
  if (status != ISOLA_OK || isola_unpack(reply, "i", &square) != ISOLA_OK)
    isola_throw("job failed: %s", isola_error_detail());
  sum += square;
  if (++done == jobs) {
    int64_t want = jobs * (jobs + 1) * (2 * jobs + 1) / 6;
    printf("pool: %lld jobs, sum of squares %lld (expected %lld)\n",
           (long long)jobs, (long long)sum, (long long)want);
    isola_set_exit_code(sum == want ? 0 : 1);
  }
}

void isola_main(isola_value args, isola_value message) {
  (void)message;
  int64_t workers;
  if (isola_arg_int(args, 0, 1000, 1, 1000000, &jobs) != ISOLA_OK ||
      isola_arg_int(args, 1, 4, 1, 64, &workers) != ISOLA_OK) {
    fprintf(stderr, "usage: isola run pool.so [jobs [workers]] (jobs "
                    "1..1000000, workers 1..64): %s\n", isola_error_detail());
    isola_set_exit_code(2);
    return;
  }
  isola_pool *pool;
  isola_pool_options o = {.name = "worker", .workers = (size_t)workers};
  if (isola_pool_start(work, NULL, &o, &pool) != ISOLA_OK)
    isola_throw("pool: %s", isola_error_detail());
  for (int64_t n = 1; n <= jobs; n++)
    if (isola_pool_call(pool, isola_int(n), ISOLA_FOREVER, on_answer,
                        NULL) != ISOLA_OK)
      isola_throw("pool: %s", isola_error_detail());
}
