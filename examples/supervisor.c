/* SPDX-License-Identifier: MIT */
/*
 * supervisor.c — a supervisor that restarts crashing workers, Erlang style,
 * built from exit and error listeners.
 *
 *   isola run build/examples/supervisor.so [jobs [workers [max_restarts]]]
 *                                                   (defaults 20 3 10)
 *
 * The root isolate is the supervisor.  It starts `workers` worker isolates,
 * each spawned with two listeners (isola_spawn_options):
 *   on_error  its error port, which gets [message, stack trace] of every
 *             uncaught error of the worker;
 *   on_exit   its exit port, which gets [slot, generation] when the worker
 *             ends, however it ends.
 * Each worker opens a job port and reports ready; the supervisor hands out
 * jobs (square a number) one at a time.  A job whose number is 3 mod 4
 * crashes on its first attempt (isola_throw): the worker dies, the error
 * port logs why, and the exit port tells the supervisor which worker died;
 * the supervisor puts the worker's job back in the queue and starts a new
 * worker in that slot (a new generation, so late messages from the dead
 * one are ignored).  The retried job succeeds.  Once every job is done the
 * supervisor tells the workers to stop, waits for each one's exit message
 * and closes its ports, which ends the run.  If more than max_restarts
 * restarts are needed, it gives up, stops everything, and exits with 1.
 */
#include <isola.h>
#include <stdio.h>
#include <stdlib.h>

ISOLA_MODULE();

#define MAX_WORKERS 64
#define MAX_JOBS 4096

enum { READY, DONE };

static int64_t int_at(isola_value msg, size_t i) {
  isola_value v;
  int64_t n = -1;
  isola_list_get(msg, i, &v);
  isola_value_get_int(v, &n);
  return n;
}

/* ---- a worker ------------------------------------------------------------ */

/* A worker keeps no state of its own: every job names its slot,
 * generation and where to answer.  (Nothing to free matters here: a crash
 * abandons the handler's frames as an exception would, so memory a handler
 * holds when it throws is lost.) */
static void worker_handler(void *ctx, isola_port port, isola_value msg,
                           isola_port reply_to) {
  (void)ctx, (void)reply_to;
  if (msg.kind != ISOLA_LIST) { /* stop */
    isola_port_close(port);
    return;
  }
  /* msg = [job, attempt, slot, generation, supervisor port] */
  int64_t job = int_at(msg, 0), attempt = int_at(msg, 1);
  int64_t slot = int_at(msg, 2), gen = int_at(msg, 3);
  isola_value v;
  isola_port supervisor = ISOLA_PORT_NONE;
  isola_list_get(msg, 4, &v);
  isola_value_get_port(v, &supervisor);
  if (job % 4 == 3 && attempt == 0)
    isola_throw("job %lld crashed worker-%lld (simulated)", (long long)job,
                (long long)slot);
  isola_value done[5] = {isola_int(DONE), isola_int(slot), isola_int(gen),
                         isola_int(job), isola_int(job * job)};
  isola_send(supervisor, isola_list(done, 5));
}

static void worker_entry(isola_value msg) {
  /* msg = [slot, generation, supervisor port] */
  isola_value v;
  isola_port supervisor = ISOLA_PORT_NONE, jobs;
  isola_list_get(msg, 2, &v);
  isola_value_get_port(v, &supervisor);
  if (isola_port_open(worker_handler, NULL, &jobs) != ISOLA_OK)
    isola_throw("worker: no port");
  isola_value ready[4] = {isola_int(READY), isola_int(int_at(msg, 0)),
                          isola_int(int_at(msg, 1)), isola_sendport(jobs)};
  isola_send(supervisor, isola_list(ready, 4));
}

/* ---- the supervisor ------------------------------------------------------ */

static struct {
  int64_t jobs, workers, max_restarts;
  isola_port results, exits, errors;
  struct {
    isola_port jobs; /* NONE until ready */
    int64_t gen, job; /* job: -1 when idle */
    bool alive;
  } slot[MAX_WORKERS];
  int64_t queue[MAX_JOBS * 2], head, tail; /* jobs waiting */
  int64_t attempts[MAX_JOBS];
  int64_t answers[MAX_JOBS];
  int64_t done, restarts, live;
  bool stopping, gave_up;
} sv;

static void start_worker(int64_t s) {
  isola_value meta[2] = {isola_int(s), isola_int(sv.slot[s].gen)};
  isola_value job[3] = {isola_int(s), isola_int(sv.slot[s].gen),
                        isola_sendport(sv.results)};
  char name[24];
  snprintf(name, sizeof name, "worker-%lld", (long long)s);
  isola_spawn_options o = {.name = name,
                           .on_exit = sv.exits,
                           .on_exit_message = isola_list(meta, 2),
                           .on_error = sv.errors};
  int rc = isola_spawn(worker_entry, isola_list(job, 3), &o, NULL);
  if (rc != ISOLA_OK) isola_throw("spawn: %s", isola_strerror(rc));
  sv.slot[s].jobs = ISOLA_PORT_NONE;
  sv.slot[s].job = -1;
  sv.slot[s].alive = true;
  sv.live++;
}

static void stop_all(void) {
  sv.stopping = true;
  for (int64_t s = 0; s < sv.workers; s++)
    if (sv.slot[s].alive && sv.slot[s].jobs != ISOLA_PORT_NONE)
      isola_send(sv.slot[s].jobs, isola_null());
}

static void finish_if_idle(void) {
  if (!sv.stopping || sv.live > 0) return;
  int64_t bad = 0;
  for (int64_t j = 0; sv.done == sv.jobs && j < sv.jobs; j++)
    if (sv.answers[j] != j * j) bad++;
  printf("supervisor: %lld/%lld jobs done, %lld restarts%s\n",
         (long long)sv.done, (long long)sv.jobs, (long long)sv.restarts,
         sv.gave_up ? ", gave up" : "");
  isola_set_exit_code(sv.gave_up || bad || sv.done != sv.jobs ? 1 : 0);
  isola_port_close(sv.results);
  isola_port_close(sv.exits);
  isola_port_close(sv.errors);
}

/* Gives slot s its next job, or, when none is left, stops the workers. */
static void dispatch(int64_t s) {
  if (sv.stopping) {
    isola_send(sv.slot[s].jobs, isola_null());
    return;
  }
  if (sv.head == sv.tail) {
    if (sv.done == sv.jobs) stop_all();
    return;
  }
  int64_t j = sv.queue[sv.head++ % (MAX_JOBS * 2)];
  sv.slot[s].job = j;
  isola_value m[5] = {isola_int(j), isola_int(sv.attempts[j]), isola_int(s),
                      isola_int(sv.slot[s].gen), isola_sendport(sv.results)};
  isola_send(sv.slot[s].jobs, isola_list(m, 5));
}

/* A message from a generation that has since died is stale. */
static bool current(int64_t s, int64_t gen) {
  return s >= 0 && s < sv.workers && gen == sv.slot[s].gen;
}

static void on_result(void *ctx, isola_port port, isola_value msg,
                      isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  int64_t s = int_at(msg, 1), gen = int_at(msg, 2);
  if (!current(s, gen)) return;
  if (int_at(msg, 0) == READY) {
    isola_value v;
    isola_list_get(msg, 3, &v);
    isola_value_get_port(v, &sv.slot[s].jobs);
  } else { /* [DONE, slot, gen, job, result] */
    int64_t j = int_at(msg, 3);
    sv.answers[j] = int_at(msg, 4);
    sv.done++;
    sv.slot[s].job = -1;
  }
  dispatch(s);
}

static void on_worker_error(void *ctx, isola_port port, isola_value msg,
                     isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  isola_value v;
  const char *text = "?";
  isola_list_get(msg, 0, &v);
  isola_value_get_str(v, &text, NULL);
  printf("supervisor: error listener: %s\n", text);
}

static void on_worker_exit(void *ctx, isola_port port, isola_value msg,
                    isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  int64_t s = int_at(msg, 0), gen = int_at(msg, 1);
  if (!current(s, gen)) return;
  sv.slot[s].alive = false;
  sv.live--;
  if (sv.stopping) {
    finish_if_idle();
    return;
  }
  /* It died with work to do: requeue its job and restart the slot. */
  int64_t j = sv.slot[s].job;
  if (j >= 0) {
    sv.attempts[j]++;
    sv.queue[sv.tail++ % (MAX_JOBS * 2)] = j;
  }
  if (++sv.restarts > sv.max_restarts) {
    printf("supervisor: more than %lld restarts, giving up\n",
           (long long)sv.max_restarts);
    sv.gave_up = true;
    stop_all();
    finish_if_idle();
    return;
  }
  printf("supervisor: worker-%lld died (job %lld); restarting it\n",
         (long long)s, (long long)j);
  sv.slot[s].gen++;
  start_worker(s);
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
  sv.jobs = arg_int(args, 0, 20);
  sv.workers = arg_int(args, 1, 3);
  sv.max_restarts = arg_int(args, 2, 10);
  if (sv.jobs < 1 || sv.jobs > MAX_JOBS || sv.workers < 1 ||
      sv.workers > MAX_WORKERS || sv.max_restarts < 0) {
    fprintf(stderr, "usage: isola run supervisor.so [jobs [workers "
                    "[max_restarts]]] (jobs 1..%d, workers 1..%d)\n",
            MAX_JOBS, MAX_WORKERS);
    isola_set_exit_code(2);
    return;
  }
  if (isola_port_open(on_result, NULL, &sv.results) != ISOLA_OK ||
      isola_port_open(on_worker_exit, NULL, &sv.exits) != ISOLA_OK ||
      isola_port_open(on_worker_error, NULL, &sv.errors) != ISOLA_OK)
    isola_throw("supervisor: no port");
  for (int64_t j = 0; j < sv.jobs; j++) sv.queue[sv.tail++] = j;
  printf("supervisor: %lld jobs, %lld workers, at most %lld restarts\n",
         (long long)sv.jobs, (long long)sv.workers,
         (long long)sv.max_restarts);
  for (int64_t s = 0; s < sv.workers; s++) start_worker(s);
}
