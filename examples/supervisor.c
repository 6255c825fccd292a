/* SPDX-License-Identifier: MIT */
/*
 * supervisor.c — workers that crash, restarted by isola_supervisor.
 *
 *   isola run build/examples/supervisor.so [jobs [workers [max_restarts]]]
 *                                                   (defaults 20 3 10)
 *
 * The root isolate hands out jobs (square a number) to `workers` worker
 * isolates, one job at a time.  The workers are the children of a
 * one-for-one supervisor (isola_supervisor_start): each reports ready with
 * its job port, and a job whose number is 3 mod 4 crashes its worker on
 * the first attempt (isola_throw).  The supervisor restarts the worker
 * (it reports ready again); on_child_exit puts the job it held back in the
 * queue, and the retry succeeds.  Once every job is done the root stops
 * the supervisor, which stops the workers in reverse order and calls
 * on_end.  More than max_restarts restarts in a minute and the supervisor
 * gives up (on_end with ISOLA_EXIT_ERROR): the run exits with 1.
 */
#include <isola.h>
#include <stdio.h>
#include <stdlib.h>

ISOLA_MODULE();

#define MAX_WORKERS 64
#define MAX_JOBS 4096

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

/* ---- a worker: [slot, boss] -> reports [slot, its job port]; a job
 * [job, attempt] is answered with [slot, job, job * job] ---------------- */

static void worker_job(void *ctx, isola_port port, isola_value msg,
                       isola_port boss) {
  int64_t slot = (int64_t)(intptr_t)ctx, job = int_at(msg, 0);
  (void)port;
  if (job % 4 == 3 && int_at(msg, 1) == 0)
    isola_throw("job %lld crashed worker-%lld (simulated)", (long long)job,
                (long long)slot);
  isola_value done[3] = {isola_int(slot), isola_int(job), isola_int(job * job)};
  isola_send(boss, isola_list(done, 3));
}

static void worker_entry(isola_value msg) {
  int64_t slot = int_at(msg, 0);
  isola_port jobs;
  if (isola_port_open(worker_job, (void *)(intptr_t)slot, &jobs) != ISOLA_OK)
    isola_throw("worker: no port");
  isola_value ready[2] = {isola_int(slot), isola_sendport(jobs)};
  isola_send(port_at(msg, 1), isola_list(ready, 2));
}

/* ---- the root: the queue of jobs and the supervisor --------------------- */

static struct {
  int64_t jobs, workers, max_restarts, done, queue[MAX_JOBS * 2], head, tail;
  int64_t attempts[MAX_JOBS], answers[MAX_JOBS], held[MAX_WORKERS];
  isola_port boss, job_port[MAX_WORKERS];
  isola_supervisor *sup;
} b;

/* Gives slot s its next job, or stops the supervisor when all are done. */
static void dispatch(int64_t s) {
  b.held[s] = -1;
  if (b.head == b.tail) {
    if (b.done == b.jobs && b.sup) isola_supervisor_stop(b.sup);
    return;
  }
  int64_t j = b.queue[b.head++ % (MAX_JOBS * 2)];
  b.held[s] = j;
  isola_value m[2] = {isola_int(j), isola_int(b.attempts[j])};
  isola_send_reply(b.job_port[s], isola_list(m, 2), b.boss);
}

/* [slot, job port] (ready) or [slot, job, result] (done). */
static void on_message(void *ctx, isola_port port, isola_value msg,
                       isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  int64_t s = int_at(msg, 0);
  if (msg.len == 2) {
    b.job_port[s] = port_at(msg, 1);
  } else {
    b.answers[int_at(msg, 1)] = int_at(msg, 2);
    b.done++;
  }
  dispatch(s);
}

static void on_child_exit(void *ctx, size_t s, isola_port child, int reason,
                          const char *detail) {
  (void)ctx, (void)child;
  int64_t j = b.held[s];
  if (reason == ISOLA_EXIT_NORMAL || reason == ISOLA_EXIT_KILLED) return;
  printf("supervisor: worker-%zu died (job %lld): %s: %s\n", s,
         (long long)j, isola_exit_reason_name(reason), detail ? detail : "");
  if (j >= 0) { /* back in the queue, for its next attempt */
    b.attempts[j]++;
    b.queue[b.tail++ % (MAX_JOBS * 2)] = j;
    b.held[s] = -1;
  }
}

static void on_end(void *ctx, int reason, const char *detail) {
  (void)ctx;
  int64_t bad = 0;
  for (int64_t j = 0; b.done == b.jobs && j < b.jobs; j++)
    bad += b.answers[j] != j * j;
  printf("supervisor: %lld/%lld jobs done, %llu restarts%s%s\n",
         (long long)b.done, (long long)b.jobs,
         (unsigned long long)isola_supervisor_restarts(b.sup),
         reason ? ", gave up: " : "", reason ? detail : "");
  isola_set_exit_code(reason || bad || b.done != b.jobs ? 1 : 0);
  b.sup = NULL;
  isola_port_close(b.boss);
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
  b.jobs = arg_int(args, 0, 20);
  b.workers = arg_int(args, 1, 3);
  b.max_restarts = arg_int(args, 2, 10);
  if (b.jobs < 1 || b.jobs > MAX_JOBS || b.workers < 1 ||
      b.workers > MAX_WORKERS || b.max_restarts < 0) {
    fprintf(stderr, "usage: isola run supervisor.so [jobs [workers "
                    "[max_restarts]]] (jobs 1..%d, workers 1..%d)\n",
            MAX_JOBS, MAX_WORKERS);
    isola_set_exit_code(2);
    return;
  }
  if (isola_port_open(on_message, NULL, &b.boss) != ISOLA_OK)
    isola_throw("supervisor: no port");
  for (int64_t j = 0; j < b.jobs; j++) b.queue[b.tail++] = j;
  printf("supervisor: %lld jobs, %lld workers, at most %lld restarts\n",
         (long long)b.jobs, (long long)b.workers, (long long)b.max_restarts);

  /* The supervisor: one spec per worker, all permanent, one-for-one. */
  isola_child_spec kids[MAX_WORKERS];
  isola_value arg[MAX_WORKERS][2];
  for (int64_t s = 0; s < b.workers; s++) {
    static char names[MAX_WORKERS][32];
    snprintf(names[s], sizeof names[s], "worker-%lld", (long long)s);
    arg[s][0] = isola_int(s);
    arg[s][1] = isola_sendport(b.boss);
    kids[s] = (isola_child_spec){.name = names[s], .entry = worker_entry,
                                 .arg = isola_list(arg[s], 2)};
    b.held[s] = -1;
  }
  isola_supervisor_spec spec = {.strategy = ISOLA_ONE_FOR_ONE,
                                .max_restarts = (uint32_t)b.max_restarts,
                                .period_ms = 60000,
                                .children = kids,
                                .nchildren = (size_t)b.workers,
                                .on_child_exit = on_child_exit,
                                .on_end = on_end};
  int rc = isola_supervisor_start(&spec, &b.sup);
  if (rc != ISOLA_OK) isola_throw("supervisor: %s", isola_strerror(rc));
}
