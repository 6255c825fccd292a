/* SPDX-License-Identifier: MIT */
/*
 * primes.c — a parallel prime sieve: counts the primes below N by splitting
 * [2, N) into slices, one isolate per slice.
 *
 *   isola run build/examples/primes.so [N [slices]]     (defaults 10000000 4)
 *
 * The root isolate hands each slice [lo, hi] to isola_run_async_opts,
 * which computes it in an isolate of its own and sends the completion to
 * the root's port, tagged with the slice.  A worker shares nothing with
 * the others: it sieves the small primes up to sqrt(hi) itself, then
 * sieves its own slice with them (a segmented sieve of Eratosthenes), and
 * returns the count.  The root reads each completion with one
 * isola_unpack, adds the counts as they arrive, in whatever order the
 * workers finish, and when the last one has answered it prints the total
 * and closes its port, which ends the run.  For powers of
 * ten it checks the total against the known value of pi(N) and sets the
 * exit code to 1 on a mismatch (isola_set_exit_code).
 *
 * What it shows: isola_run_async_opts with tagged completions, reading a
 * message's shape in one call, and that isolates run in parallel on the
 * worker pool (try --threads 1 and --threads 4 with `time`).
 */
#include <isola.h>
#include <stdio.h>
#include <stdlib.h>

ISOLA_MODULE();

/* ---- a worker: counts the primes in [lo, hi) ---------------------------- */

static int64_t count_primes(int64_t lo, int64_t hi) {
  if (hi <= 2 || hi <= lo) return 0;
  if (lo < 2) lo = 2;
  int64_t root = 1;
  while (root * root < hi) root++;
  /* The small primes, up to sqrt(hi). */
  unsigned char *small = calloc((size_t)root + 1, 1);
  unsigned char *seg = calloc((size_t)(hi - lo), 1);
  if (!small || !seg) isola_throw("out of memory for [%lld, %lld)",
                                  (long long)lo, (long long)hi);
  for (int64_t i = 2; i * i <= root; i++)
    if (!small[i])
      for (int64_t j = i * i; j <= root; j += i) small[j] = 1;
  /* Cross off their multiples in the slice: seg[k] stands for lo + k. */
  for (int64_t p = 2; p <= root; p++) {
    if (small[p]) continue;
    int64_t first = (lo + p - 1) / p * p;
    if (first < p * p) first = p * p;
    for (int64_t m = first; m < hi; m += p) seg[m - lo] = 1;
  }
  int64_t n = 0;
  for (int64_t k = 0; k < hi - lo; k++) n += !seg[k];
  free(small);
  free(seg);
  return n;
}

/* The isolate's computation: job = [lo, hi]. */
static isola_value sieve(isola_value job) {
  int64_t lo, hi;
  if (isola_unpack(job, "[i i]", &lo, &hi) != ISOLA_OK)
    isola_throw("bad job: %s", isola_error_detail());
  return isola_int(count_primes(lo, hi));
}

/* ---- the root isolate ---------------------------------------------------- */

static struct {
  int64_t n, slices, answered, total;
} run;

/* pi(10^k) for k = 1 .. 10. */
static const int64_t known_pi[] = {4,      25,      168,      1229,
                                   9592,   78498,   664579,   5761455,
                                   50847534, 455052511};

/* A completion: [[lo, hi] (the tag), true, count]. */
static void on_answer(void *ctx, isola_port port, isola_value msg,
                      isola_port reply_to) {
  (void)ctx, (void)reply_to;
  int64_t lo, hi, count;
  if (isola_unpack(msg, "[[i i] b i]", &lo, &hi, NULL, &count) != ISOLA_OK)
    isola_throw("a slice failed: %s", isola_error_detail());
  printf("  [%lld, %lld): %lld primes\n", (long long)lo, (long long)hi,
         (long long)count);
  run.total += count;
  if (++run.answered < run.slices) return;
  printf("%lld primes below %lld (%lld isolates)\n", (long long)run.total,
         (long long)run.n, (long long)run.slices);
  int64_t p10 = 10;
  for (size_t k = 0; k < sizeof known_pi / sizeof *known_pi; k++, p10 *= 10)
    if (p10 == run.n && known_pi[k] != run.total) {
      printf("WRONG: pi(%lld) is %lld\n", (long long)run.n,
             (long long)known_pi[k]);
      isola_set_exit_code(1);
    }
  isola_port_close(port); /* the root's last port: the run ends */
}

void isola_main(isola_value args, isola_value message) {
  (void)message;
  if (isola_arg_int(args, 0, 10000000, 2, 1000000000, &run.n) != ISOLA_OK ||
      isola_arg_int(args, 1, 4, 1, 1024, &run.slices) != ISOLA_OK) {
    fprintf(stderr, "usage: isola run primes.so [N [slices]] "
                    "(2 <= N <= 1e9, 1 <= slices <= 1024): %s\n",
            isola_error_detail());
    isola_set_exit_code(2);
    return;
  }
  isola_port me;
  if (isola_port_open(on_answer, NULL, &me) != ISOLA_OK)
    isola_throw("cannot open a port");
  int64_t step = run.n / run.slices;
  for (int64_t i = 0; i < run.slices; i++) {
    int64_t lo = step * i, hi = i == run.slices - 1 ? run.n : lo + step;
    isola_value job[2] = {isola_int(lo), isola_int(hi)};
    /* The tag is the slice: each completion says which one it answers. */
    isola_run_options o = {.name = "sieve", .tag = isola_list(job, 2)};
    int rc = isola_run_async_opts(sieve, o.tag, &o, me);
    if (rc != ISOLA_OK) isola_throw("run: %s", isola_strerror(rc));
  }
}
