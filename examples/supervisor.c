/* SPDX-License-Identifier: MIT */
/*
 * supervisor.c — workers that crash, restarted by isola_supervisor.
 *
 *   isola run build/examples/supervisor.so [jobs [workers [max_restarts]]]
 *                                                   (defaults 20 3 10)
 *
 * The root isolate hands out jobs 1..jobs (square the number) to `workers`
 * worker isolates, the children of a one-for-one supervisor
 * (isola_supervisor_start).  A worker asks the root for a job with
 * isola_call, sending the answer to its last one; the reply is its next
 * job, or null when none is left (the worker then ends normally: a
 * transient child is not restarted then).  A job whose number is 3 mod 4
 * crashes its worker on the first attempt (isola_throw); the supervisor
 * restarts the worker, on_child_exit puts the job back for a retry, and
 * the new worker gets it.  Once every job is done the root stops the
 * supervisor, which stops the workers in reverse order and calls on_end;
 * the root checks the sum of the answers.  More than max_restarts restarts
 * in a minute and the supervisor gives up (on_end with ISOLA_EXIT_ERROR):
 * the run exits with 1.
 */
#include <isola.h>
#include <stdio.h>

ISOLA_MODULE();

#define MAX_WORKERS 64

/* ---- a worker: asks the boss [slot, answer or null] for a job; a job
 * is [job, retry] -------------------------------------------------------- */

typedef struct worker {
  int64_t slot;
  isola_port boss;
} worker;

static void on_job(void *ctx, int status, isola_value job);

static void ask(worker *w, isola_value answer) {
  isola_value m[2] = {isola_int(w->slot), answer};
  if (isola_call(w->boss, isola_list(m, 2), ISOLA_FOREVER, on_job, w) !=
      ISOLA_OK)
    isola_throw("worker: %s", isola_error_detail());
}

static void on_job(void *ctx, int status, isola_value msg) {
  (void)status; /* no timeout: always ISOLA_OK */
  worker *w = ctx;
  int64_t job;
  bool retry;
  if (msg.kind == ISOLA_NULL) return; /* no job left: the worker ends */
  if (isola_unpack(msg, "[i b]", &job, &retry) != ISOLA_OK)
    isola_throw("bad job: %s", isola_error_detail());
  if (job % 4 == 3 && !retry)
    isola_throw("job %lld crashed worker-%lld (simulated)", (long long)job,
                (long long)w->slot);
  ask(w, isola_int(job * job));
}

static void worker_entry(isola_value msg) {
  worker *w = isola_calloc(sizeof *w); /* freed when the worker ends */
  if (!w || isola_unpack(msg, "[i p]", &w->slot, &w->boss) != ISOLA_OK)
    isola_throw("worker: %s", isola_error_detail());
  ask(w, isola_null());
}

/* ---- the root: the jobs and the supervisor ------------------------------ */

static struct {
  int64_t jobs, next, done, sum, retries[MAX_WORKERS], nretries;
  int64_t held[MAX_WORKERS]; /* the job (1..jobs) each worker holds, or 0 */
  isola_port boss;
  isola_supervisor *sup;
} b;

/* A worker's [slot, answer or null]: replies with its next job (a retry
 * first), or null when none is left. */
static void on_ask(void *ctx, isola_port port, isola_value msg,
                   isola_port reply_to) {
  (void)ctx, (void)port;
  int64_t s, answer;
  if (isola_unpack(msg, "[i ?i]", &s, &answer) != ISOLA_OK)
    isola_throw("unexpected message: %s", isola_error_detail());
  if (b.held[s]) { /* the answer to its job */
    b.sum += answer;
    if (++b.done == b.jobs) isola_supervisor_stop(b.sup);
  }
  bool retry = b.nretries > 0;
  b.held[s] = retry ? b.retries[--b.nretries]
              : b.next < b.jobs ? ++b.next
                                : 0;
  isola_value job[2] = {isola_int(b.held[s]), isola_bool(retry)};
  isola_send(reply_to, b.held[s] ? isola_list(job, 2) : isola_null());
}

static void on_child_exit(void *ctx, size_t s, isola_port child, int reason,
                          const char *detail) {
  (void)ctx, (void)child;
  if (reason == ISOLA_EXIT_NORMAL || reason == ISOLA_EXIT_KILLED) return;
  printf("supervisor: worker-%zu died: %s: %s\n", s,
         isola_exit_reason_name(reason), detail ? detail : "");
  if (b.held[s]) b.retries[b.nretries++] = b.held[s];
  b.held[s] = 0;
}

static void on_end(void *ctx, int reason, const char *detail) {
  (void)ctx;
  int64_t want = b.jobs * (b.jobs + 1) * (2 * b.jobs + 1) / 6;
  printf("supervisor: %lld/%lld jobs done, %llu restarts%s%s\n",
         (long long)b.done, (long long)b.jobs,
         (unsigned long long)isola_supervisor_restarts(b.sup),
         reason ? ", gave up: " : "", reason ? detail : "");
  isola_set_exit_code(reason || b.done != b.jobs || b.sum != want ? 1 : 0);
  isola_port_close(b.boss);
}

void isola_main(isola_value args, isola_value message) {
  (void)message;
  int64_t workers, max_restarts;
  if (isola_arg_int(args, 0, 20, 1, 1000000, &b.jobs) != ISOLA_OK ||
      isola_arg_int(args, 1, 3, 1, MAX_WORKERS, &workers) != ISOLA_OK ||
      isola_arg_int(args, 2, 10, 0, 65536, &max_restarts) != ISOLA_OK) {
    fprintf(stderr, "usage: isola run supervisor.so [jobs [workers "
                    "[max_restarts]]] (jobs 1..1000000, workers 1..%d): %s\n",
            MAX_WORKERS, isola_error_detail());
    isola_set_exit_code(2);
    return;
  }
  if (isola_port_open(on_ask, NULL, &b.boss) != ISOLA_OK)
    isola_throw("supervisor: no port");
  /* The supervisor: one spec per worker, transient, one-for-one. */
  isola_child_spec kids[MAX_WORKERS];
  isola_value arg[MAX_WORKERS][2];
  for (int64_t s = 0; s < workers; s++) {
    arg[s][0] = isola_int(s);
    arg[s][1] = isola_sendport(b.boss);
    kids[s] = (isola_child_spec){.name = "worker", .entry = worker_entry,
                                 .arg = isola_list(arg[s], 2),
                                 .restart = ISOLA_RESTART_TRANSIENT};
  }
  isola_supervisor_spec spec = {
      .strategy = ISOLA_ONE_FOR_ONE, .max_restarts = (uint32_t)max_restarts,
      .period_ms = 60000, .children = kids, .nchildren = (size_t)workers,
      .on_child_exit = on_child_exit, .on_end = on_end};
  int rc = isola_supervisor_start(&spec, &b.sup);
  if (rc != ISOLA_OK) isola_throw("supervisor: %s", isola_strerror(rc));
}
