/* SPDX-License-Identifier: MIT */
/*
 * examples/cluster/primes.c — the parallel prime count of examples/primes.c
 * split over the nodes of a cluster (docs/cluster.md).
 *
 *   sh examples/cluster/run.sh [N [slices]]     (defaults 10000000 6)
 *
 * starts a nats-server, three `isola node` processes (w1, w2, w3), and
 *
 *   isola run --cluster URL --node main cluster_primes.so N SLICES w1 w2 w3
 *
 * The root isolate spawns one worker per slice, round robin over the named
 * nodes, with isola_cluster_spawn_uri() (this same module, loaded by the
 * node), and sends it [lo, hi, reply port] as its spawn message; the reply
 * port crosses as a proxy.  Each worker counts the primes of its slice
 * with a segmented sieve and answers [lo, hi, count, its node's name].
 * The root adds the answers; for powers of ten it checks pi(N) and sets
 * exit code 1 on a mismatch.  Every worker also has an exit listener: a
 * node that dies makes the run fail at once instead of hanging.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <isola.h>
#include <isola_cluster.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ISOLA_MODULE();

static int64_t count_primes(int64_t lo, int64_t hi) {
  if (hi <= 2 || hi <= lo) return 0;
  if (lo < 2) lo = 2;
  int64_t root = 1;
  while (root * root < hi) root++;
  unsigned char *small = calloc((size_t)root + 1, 1);
  unsigned char *seg = calloc((size_t)(hi - lo), 1);
  if (!small || !seg)
    isola_throw("out of memory for [%lld, %lld)", (long long)lo,
                (long long)hi);
  for (int64_t i = 2; i * i <= root; i++)
    if (!small[i])
      for (int64_t j = i * i; j <= root; j += i) small[j] = 1;
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

static int64_t item_int(isola_value list, size_t i) {
  isola_value v;
  int64_t n = 0;
  if (isola_list_get(list, i, &v) == ISOLA_OK) isola_value_get_int(v, &n);
  return n;
}

/* A worker, on some node: message = [lo, hi, reply port]. */
static void worker(isola_value message) {
  int64_t lo = item_int(message, 0), hi = item_int(message, 1);
  isola_value v;
  isola_port reply;
  if (isola_list_get(message, 2, &v) != ISOLA_OK ||
      isola_value_get_port(v, &reply) != ISOLA_OK)
    isola_throw("worker: no reply port");
  const char *node = isola_cluster_node();
  isola_value answer[4] = {isola_int(lo), isola_int(hi),
                           isola_int(count_primes(lo, hi)),
                           isola_str(node ? node : "?")};
  isola_send(reply, isola_list(answer, 4));
}

/* ---- the root ------------------------------------------------------------ */

static struct {
  int64_t n, total;
  int slices, answered;
  isola_port answers, exits;
} run;

static const int64_t known_pi[] = {4,       25,       168,      1229,
                                   9592,    78498,    664579,   5761455,
                                   50847534, 455052511};

static void finish(void) {
  printf("%lld primes below %lld (%d slices on %s)\n", (long long)run.total,
         (long long)run.n, run.slices, "the cluster");
  int64_t p10 = 10;
  for (size_t k = 0; k < sizeof known_pi / sizeof *known_pi; k++, p10 *= 10)
    if (p10 == run.n && known_pi[k] != run.total) {
      printf("WRONG: pi(%lld) is %lld\n", (long long)run.n,
             (long long)known_pi[k]);
      isola_set_exit_code(1);
    }
  isola_port_close(run.answers);
  isola_port_close(run.exits);
}

static void on_answer(void *ctx, isola_port port, isola_value msg,
                      isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  isola_value v;
  const char *node = "?";
  if (isola_list_get(msg, 3, &v) == ISOLA_OK)
    isola_value_get_str(v, &node, NULL);
  printf("  [%lld, %lld): %lld primes, counted on %s\n",
         (long long)item_int(msg, 0), (long long)item_int(msg, 1),
         (long long)item_int(msg, 2), node);
  run.total += item_int(msg, 2);
  if (++run.answered == run.slices) finish();
}

/* A worker ended: normal after its answer; a lost node fails the run. */
static int exited;
static void on_exit_notice(void *ctx, isola_port port, isola_value msg,
                           isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
  /* Answers and exit messages come from different isolates, so an exit
   * may overtake its answer; only a run that still misses answers after
   * every worker ended has lost one. */
  if (++exited == run.slices && run.answered < run.slices) {
    printf("a worker ended without answering (its node was lost?)\n");
    isola_set_exit_code(1);
    isola_port_close(run.answers);
    isola_port_close(run.exits);
  }
}

void isola_main(isola_value args, isola_value message) {
  if (message.kind == ISOLA_LIST) {
    worker(message);
    return;
  }
  isola_value v;
  const char *s;
  run.n = 10000000;
  run.slices = 6;
  if (isola_list_get(args, 0, &v) == ISOLA_OK &&
      isola_value_get_str(v, &s, NULL) == ISOLA_OK)
    run.n = strtoll(s, NULL, 10);
  if (isola_list_get(args, 1, &v) == ISOLA_OK &&
      isola_value_get_str(v, &s, NULL) == ISOLA_OK)
    run.slices = atoi(s);
  size_t nodes = args.len > 2 ? args.len - 2 : 0;
  if (run.n < 2 || run.n > 1000000000LL || run.slices < 1 ||
      run.slices > 1024 || nodes == 0 || !isola_cluster_node()) {
    fprintf(stderr, "usage: isola run --cluster URL --node NAME "
                    "cluster_primes.so N SLICES NODE...\n");
    isola_set_exit_code(2);
    return;
  }
  /* This module's own file: the nodes load it from the same path. */
  Dl_info info;
  if (!dladdr(&run, &info) || !info.dli_fname)
    isola_throw("cannot find this module's path");
  char *path = realpath(info.dli_fname, NULL);
  if (!path) isola_throw("cannot resolve %s", info.dli_fname);
  if (isola_port_open(on_answer, NULL, &run.answers) != ISOLA_OK ||
      isola_port_open(on_exit_notice, NULL, &run.exits) != ISOLA_OK)
    isola_throw("cannot open a port");
  printf("counting the primes below %lld in %d slices on %zu nodes\n",
         (long long)run.n, run.slices, nodes);
  int64_t step = run.n / run.slices;
  for (int i = 0; i < run.slices; i++) {
    const char *node;
    isola_list_get(args, 2 + (size_t)i % nodes, &v);
    isola_value_get_str(v, &node, NULL);
    int64_t lo = step * i, hi = i == run.slices - 1 ? run.n : lo + step;
    isola_value job[3] = {isola_int(lo), isola_int(hi),
                          isola_sendport(run.answers)};
    isola_spawn_options o = {.name = "sieve", .on_exit = run.exits};
    int rc = isola_cluster_spawn_uri(node, path, isola_null(),
                                     isola_list(job, 3), &o, NULL);
    if (rc != ISOLA_OK) {
      free(path);
      isola_throw("spawn on %s: %s %s", node, isola_strerror(rc),
                  isola_cluster_error());
    }
  }
  free(path);
}
