/* SPDX-License-Identifier: MIT */
/*
 * test_workpool.c — isola_pool (issue 17): worker isolates serving the
 * jobs of their owner.  Every job completes exactly once (an answer, a
 * timeout racing it, its worker's death, the pool's stop); jobs wait in
 * FIFO order; the queue bound and the owner's heap limit refuse calls; a
 * worker that dies mid-job is replaced; a stopped pool ends its workers
 * and frees itself; an owner that ends takes its pool along; bad input is
 * refused and runs nothing.
 */
#include "helpers.h"

#include <stdio.h>

TestSuite(workpool, .timeout = TH_TEST_TIMEOUT_S);

/* ---- workers and the hooks that watch them ----------------------------- */

/* n -> 2 n; "crash" throws; "eat" passes its heap limit; "close" closes
 * its pool port (staying alive) and answers -1; ["hold", port] sends its
 * reply_to to port and does not answer. */
static void worker(void *ctx, isola_port port, isola_value msg,
                   isola_port reply_to) {
  (void)port;
  _Atomic long *order = ctx; /* NULL, or: [0] count, then jobs in order */
  const char *s;
  isola_port to;
  if (msg.kind == ISOLA_INT) {
    if (order) {
      long at = atomic_fetch_add(&order[0], 1);
      atomic_store(&order[1 + at], (long)msg.as.i);
    }
    int rc = isola_send(reply_to, isola_int(msg.as.i * 2));
    /* ECLOSED: the job timed out and its worker was killed meanwhile. */
    TH_CHECKF(rc == ISOLA_OK || rc == ISOLA_ECLOSED, "%s", isola_err_name(rc));
  } else if (isola_unpack(msg, "s", &s) == ISOLA_OK &&
             strcmp(s, "crash") == 0) {
    isola_throw("boom on purpose");
  } else if (isola_unpack(msg, "s", &s) == ISOLA_OK &&
             strcmp(s, "close") == 0) {
    /* Stops serving the pool but stays alive on another port. */
    isola_port other;
    TH_CHECK_OK(isola_port_open(worker, NULL, &other));
    TH_CHECK_OK(isola_port_close(port));
    TH_CHECK_OK(isola_send(reply_to, isola_int(-1)));
  } else if (isola_unpack(msg, "s", &s) == ISOLA_OK && strcmp(s, "eat") == 0) {
    isola_alloc(1 << 20);
    TH_CHECKF(false, "isola_alloc passed the heap limit");
  } else if (isola_unpack(msg, "[s p]", &s, &to) == ISOLA_OK) {
    TH_CHECK_OK(isola_send(to, isola_sendport(reply_to)));
  } else {
    TH_CHECKF(msg.kind == ISOLA_BYTES, "unexpected job of kind %u", msg.kind);
    TH_CHECK_OK(isola_send(reply_to, isola_int((int64_t)msg.len)));
  }
}

/* Pool workers (named "pool") that ended, by reason. */
static th_counter pool_ends[ISOLA_EXIT_REASONS];

static void count_pool_ends(void *data, const isola_isolate_info *info) {
  (void)data;
  if (strcmp(info->name, "pool") == 0 && info->exit_reason >= 0 &&
      info->exit_reason < ISOLA_EXIT_REASONS)
    th_counter_add(&pool_ends[info->exit_reason], 1);
}

static void vm_with_hooks(void) {
  for (int i = 0; i < ISOLA_EXIT_REASONS; i++) th_counter_init(&pool_ends[i]);
  isola_config c = {0};
  c.hooks.isolate_cleanup = count_pool_ends;
  th_vm_init(&c);
}

static isola_pool_stats stats_of(isola_pool *p) {
  isola_pool_stats st;
  TH_CHECK_OK(isola_pool_stats_get(p, &st));
  return st;
}

/* ---- every job answered once; FIFO ------------------------------------- */

typedef struct many {
  long n;
  size_t workers;
  uint64_t timeout;
  _Atomic int *seen;
  _Atomic long ok, timed_out, next; /* next: the answer expected next */
  bool in_order;
  _Atomic long *order;
} many;

typedef struct one {
  many *t;
  long i;
} one;

static void many_done(void *ctx, int status, isola_value reply) {
  one *c = ctx;
  many *t = c->t;
  TH_CHECKF(atomic_fetch_add(&t->seen[c->i], 1) == 0, "job %ld twice", c->i);
  if (status == ISOLA_OK) {
    TH_CHECK(th_int(reply) == 2 * c->i);
    atomic_fetch_add(&t->ok, 1);
    if (t->in_order)
      TH_CHECKF(atomic_fetch_add(&t->next, 1) == c->i, "job %ld out of order",
                c->i);
  } else {
    TH_CHECKF(status == ISOLA_ETIMEDOUT, "%s", isola_err_name(status));
    TH_CHECK(reply.kind == ISOLA_NULL);
    atomic_fetch_add(&t->timed_out, 1);
  }
}

static void many_main(void *ctx, isola_value msg) {
  (void)msg;
  many *t = ctx;
  isola_pool *p;
  isola_pool_options o = {.workers = t->workers};
  TH_CHECK_OK(isola_pool_start(worker, t->order, &o, &p));
  isola_pool_stats st = stats_of(p);
  TH_CHECK(st.workers == t->workers && st.busy == 0 && st.queued == 0);
  one *calls = isola_alloc(sizeof *calls * (size_t)t->n);
  for (long i = 0; i < t->n; i++) {
    calls[i] = (one){t, i};
    TH_CHECK_OK(isola_pool_call(p, isola_int(i), t->timeout, many_done,
                                &calls[i]));
  }
  st = stats_of(p);
  size_t busy = t->n < (long)t->workers ? (size_t)t->n : t->workers;
  TH_CHECKF(st.busy == busy && st.queued == (size_t)t->n - busy,
            "busy %zu queued %zu", st.busy, st.queued);
  /* The pending jobs keep this root alive until each is done; then it
   * ends, and its pool with it. */
}

static void run_many(many *t) {
  t->seen = calloc((size_t)t->n, sizeof *t->seen);
  TH_ASSERT_OK(isola_run_main_ctx(many_main, t, isola_null(), NULL));
  for (long i = 0; i < t->n; i++)
    cr_assert(atomic_load(&t->seen[i]) == 1, "job %ld: %d callbacks", i,
              atomic_load(&t->seen[i]));
  cr_assert(atomic_load(&t->ok) + atomic_load(&t->timed_out) == t->n, "%s",
            "atomic_load(&t->ok) + atomic_load(&t->timed_out) == t->n");
  free(t->seen);
}

Test(workpool, every_job_is_answered_exactly_once) {
  vm_with_hooks();
  many t = {.n = TH_SIZE(2000), .workers = 4, .timeout = ISOLA_FOREVER};
  run_many(&t);
  cr_assert(atomic_load(&t.ok) == t.n, "%s",
            "atomic_load(&t.ok) == t.n");
  /* The root ended with its pool: the workers were killed. */
  TH_WAIT_GE(&pool_ends[ISOLA_EXIT_KILLED], 4);
  th_vm_shutdown_ok();
}

Test(workpool, jobs_wait_and_run_in_call_order) {
  th_vm_init(NULL);
  enum { N = 300 };
  static _Atomic long order[1 + N];
  many t = {.n = N, .workers = 1, .timeout = ISOLA_FOREVER, .in_order = true,
            .order = order};
  run_many(&t);
  cr_assert(atomic_load(&order[0]) == N, "%s",
            "atomic_load(&order[0]) == N");
  for (long i = 0; i < N; i++)
    cr_assert(atomic_load(&order[1 + i]) == i, "job %ld ran as %ld", i,
              atomic_load(&order[1 + i]));
  th_vm_shutdown_ok();
}

Test(workpool, timeouts_racing_answers_complete_each_job_once) {
  th_vm_init(NULL);
  many t = {.n = TH_SIZE(4000), .workers = 2, .timeout = 1};
  run_many(&t);
  cr_log_info("%ld answers, %ld timeouts", atomic_load(&t.ok),
              atomic_load(&t.timed_out));
  th_vm_shutdown_ok();
}

/* ---- the queue bound and the owner's heap limit ------------------------ */

static th_counter bound_done = TH_COUNTER_INIT;

static void bound_job_done(void *ctx, int status, isola_value reply) {
  TH_CHECK_OK(status);
  TH_CHECK(th_int(reply) == 2 * (int64_t)(intptr_t)ctx);
  th_counter_add(&bound_done, 1);
}

static void must_not_run(void *ctx, int status, isola_value reply) {
  (void)ctx, (void)reply;
  TH_CHECKF(false, "a refused job's callback ran (%s)",
            isola_err_name(status));
}

static void bound_main(void *ctx, isola_value msg) {
  (void)ctx, (void)msg;
  isola_pool *p;
  isola_pool_options o = {.workers = 1, .max_queued = 2};
  TH_CHECK_OK(isola_pool_start(worker, NULL, &o, &p));
  /* One event: the worker's answers cannot come back before it ends. */
  for (intptr_t i = 1; i <= 3; i++)
    TH_CHECK_OK(isola_pool_call(p, isola_int(i), ISOLA_FOREVER,
                                bound_job_done, (void *)i));
  isola_pool_stats st = stats_of(p);
  TH_CHECK(st.busy == 1 && st.queued == 2);
  TH_CHECK_RC(isola_pool_call(p, isola_int(4), ISOLA_FOREVER, must_not_run,
                              NULL),
              ISOLA_EFULL);
  TH_CHECKF(strstr(isola_error_detail(), "max_queued"), "%s",
            isola_error_detail());
}

Test(workpool, a_full_queue_refuses_with_efull) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main_ctx(bound_main, NULL, isola_null(), NULL));
  cr_assert(th_counter_get(&bound_done) == 3, "%s",
            "th_counter_get(&bound_done) == 3");
  th_vm_shutdown_ok();
}

/* The owner's heap limit holds its queued jobs: a copy that does not fit
 * is refused with ISOLA_ENOMEM (no error is raised), and the stop fails
 * the queued ones. */
static th_counter heap_closed = TH_COUNTER_INIT;

static void closed_done(void *ctx, int status, isola_value reply) {
  (void)ctx;
  TH_CHECKF(status == ISOLA_ECLOSED, "%s", isola_err_name(status));
  TH_CHECK(reply.kind == ISOLA_NULL);
  th_counter_add(&heap_closed, 1);
}

static void held(void *ctx, isola_port port, isola_value msg,
                 isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to; /* never answers */
}

/* The held job's reply port: answered once the pool has stopped. */
static void heap_side(void *ctx, isola_port port, isola_value msg,
                      isola_port reply_to) {
  (void)ctx, (void)reply_to;
  TH_CHECK_OK(isola_send(th_port(msg), isola_int(0)));
  isola_port_close(port);
}

static void heap_held_done(void *ctx, int status, isola_value reply) {
  (void)ctx, (void)reply;
  TH_CHECK_OK(status);
  th_counter_add(&heap_closed, 100);
}

static void heap_main(void *ctx, isola_value msg) {
  (void)ctx, (void)msg;
  isola_pool *p;
  isola_pool_options o = {.workers = 1};
  TH_CHECK_OK(isola_pool_start(worker, NULL, &o, &p));
  isola_port side;
  TH_CHECK_OK(isola_port_open(heap_side, NULL, &side));
  isola_value hold[2] = {isola_str("hold"), isola_sendport(side)};
  TH_CHECK_OK(isola_pool_call(p, isola_list(hold, 2), ISOLA_FOREVER,
                              heap_held_done, NULL));
  static uint8_t big[16384];
  isola_isolate_stats before, after;
  TH_CHECK_OK(isola_current_stats(&before));
  long queued = 0;
  int rc;
  /* The worker holds the first job: these wait, each in this heap. */
  while ((rc = isola_pool_call(p, isola_bytes(big, sizeof big), ISOLA_FOREVER,
                               closed_done, NULL)) == ISOLA_OK)
    queued++;
  TH_CHECKF(rc == ISOLA_ENOMEM, "%s", isola_err_name(rc));
  TH_CHECKF(queued >= 3 && queued < 40, "%ld jobs", queued);
  TH_CHECK_OK(isola_current_stats(&after));
  TH_CHECKF(after.heap_bytes >= before.heap_bytes + 16384 * (size_t)queued,
            "%zu -> %zu", before.heap_bytes, after.heap_bytes);
  TH_CHECK(stats_of(p).queued == (size_t)queued);
  TH_CHECK_OK(isola_pool_stop(p));
  /* The queued jobs were told before the stop returned. */
  TH_CHECK(th_counter_get(&heap_closed) == queued);
  TH_CHECK_OK(isola_current_stats(&after));
  TH_CHECKF(after.heap_bytes < before.heap_bytes + 16384, "%zu -> %zu",
            before.heap_bytes, after.heap_bytes);
}

Test(workpool, the_owners_heap_limit_bounds_the_queue) {
  vm_with_hooks();
  isola_spawn_options o = {.heap_limit = 256 * 1024};
  TH_ASSERT_OK(isola_run_main_ctx(heap_main, NULL, isola_null(), &o));
  cr_assert(th_counter_get(&heap_closed) >= 100, "%s",
            "th_counter_get(&heap_closed) >= 100"); /* the held job's answer */
  TH_WAIT_GE(&pool_ends[ISOLA_EXIT_KILLED], 1);
  th_vm_shutdown_ok();
}

/* ---- a timed-out job keeps its worker busy until it answers ------------ */

typedef struct late {
  isola_pool *p;
  isola_port side;     /* the root's: the held job's reply port comes here */
  isola_port held_to;  /* that reply port */
  int steps;           /* 2: timed out and held_to known */
  int timed_out, late_ok;
} late;

static void late_after_done(void *ctx, int status, isola_value reply) {
  late *t = ctx;
  TH_CHECK_OK(status);
  TH_CHECK(th_int(reply) == 10);
  t->late_ok++;
  isola_port_close(t->side);
}

static void late_both(late *t) {
  if (++t->steps < 2) return;
  /* The worker is still busy with the timed-out job: a new one waits. */
  TH_CHECK_OK(isola_pool_call(t->p, isola_int(5), ISOLA_FOREVER,
                              late_after_done, t));
  isola_pool_stats st = stats_of(t->p);
  TH_CHECK(st.busy == 1 && st.queued == 1);
  /* The late answer frees the worker (and is dropped). */
  TH_CHECK_OK(isola_send(t->held_to, isola_int(99)));
}

static void late_timed_out(void *ctx, int status, isola_value reply) {
  late *t = ctx;
  TH_CHECK_RC(status, ISOLA_ETIMEDOUT);
  TH_CHECK(reply.kind == ISOLA_NULL);
  t->timed_out++;
  late_both(t);
}

static void late_side(void *ctx, isola_port port, isola_value msg,
                      isola_port reply_to) {
  (void)port, (void)reply_to;
  late *t = ctx;
  t->held_to = th_port(msg);
  late_both(t);
}

static void late_main(void *ctx, isola_value msg) {
  (void)msg;
  late *t = ctx;
  isola_pool_options o = {.workers = 1};
  TH_CHECK_OK(isola_pool_start(worker, NULL, &o, &t->p));
  TH_CHECK_OK(isola_port_open(late_side, t, &t->side));
  isola_value hold[2] = {isola_str("hold"), isola_sendport(t->side)};
  TH_CHECK_OK(isola_pool_call(t->p, isola_list(hold, 2), 20, late_timed_out,
                              t));
}

Test(workpool, a_timed_out_job_keeps_its_worker_until_it_answers) {
  th_vm_init(NULL);
  late t = {0};
  TH_ASSERT_OK(isola_run_main_ctx(late_main, &t, isola_null(), NULL));
  cr_assert(t.timed_out == 1 && t.late_ok == 1, "%d %d", t.timed_out,
            t.late_ok);
  th_vm_shutdown_ok();
}

/* ---- a worker that dies mid-job ---------------------------------------- */

typedef struct crash {
  isola_pool *p;
  int failed_error, failed_heap, ok;
  char detail[256];
} crash;

static void crash_done(void *ctx, int status, isola_value reply) {
  crash *t = ctx;
  if (status == ISOLA_OK) {
    t->ok++;
  } else {
    TH_CHECKF(status == ISOLA_EFAILED, "%s", isola_err_name(status));
    int64_t reason = th_int(reply);
    if (reason == ISOLA_EXIT_ERROR) {
      t->failed_error++;
      snprintf(t->detail, sizeof t->detail, "%s", isola_error_detail());
    } else {
      TH_CHECKF(reason == ISOLA_EXIT_HEAP_LIMIT, "%s",
                isola_exit_reason_name((int)reason));
      t->failed_heap++;
    }
  }
  if (t->ok + t->failed_error + t->failed_heap == 8) {
    isola_pool_stats st = stats_of(t->p);
    TH_CHECKF(st.workers == 1 && st.respawns == 2 && st.busy == 0 &&
                  st.queued == 0,
              "workers %zu respawns %llu", st.workers,
              (unsigned long long)st.respawns);
  }
}

static void crash_main(void *ctx, isola_value msg) {
  (void)msg;
  crash *t = ctx;
  isola_pool_options o = {.workers = 1, .heap_limit = 256 * 1024};
  TH_CHECK_OK(isola_pool_start(worker, NULL, &o, &t->p));
  /* One worker: the jobs after each death wait for its replacement. */
  const char *jobs[8] = {"1", "crash", "2", "3", "eat", "4", "5", "6"};
  for (int i = 0; i < 8; i++) {
    isola_value v = jobs[i][0] >= '0' && jobs[i][0] <= '9'
                        ? isola_int(jobs[i][0] - '0')
                        : isola_str(jobs[i]);
    TH_CHECK_OK(isola_pool_call(t->p, v, ISOLA_FOREVER, crash_done, t));
  }
}

Test(workpool, a_worker_dying_mid_job_fails_that_job_and_is_replaced) {
  vm_with_hooks();
  crash t = {0};
  TH_ASSERT_OK(isola_run_main_ctx(crash_main, &t, isola_null(), NULL));
  cr_assert(t.ok == 6 && t.failed_error == 1 && t.failed_heap == 1,
            "ok %d error %d heap %d", t.ok, t.failed_error, t.failed_heap);
  cr_assert(strstr(t.detail, "boom on purpose") && strstr(t.detail, "error"),
            "%s", t.detail);
  TH_WAIT_GE(&pool_ends[ISOLA_EXIT_ERROR], 1);
  TH_WAIT_GE(&pool_ends[ISOLA_EXIT_HEAP_LIMIT], 1);
  cr_assert(th_counter_get(&pool_ends[ISOLA_EXIT_ERROR]) == 1, "%s",
            "th_counter_get(&pool_ends[ISOLA_EXIT_ERROR]) == 1");
  cr_assert(th_counter_get(&pool_ends[ISOLA_EXIT_HEAP_LIMIT]) == 1, "%s",
            "th_counter_get(&pool_ends[ISOLA_EXIT_HEAP_LIMIT]) == 1");
  th_vm_shutdown_ok();
}

/* A worker that closed its pool port but lives on is ended when a job
 * finds its port closed, and replaced; the job goes to the new worker
 * (before the fix it waited for a notice that never came). */
typedef struct closed_port {
  isola_pool *p;
  int answers;
} closed_port;

static void closed_port_done(void *ctx, int status, isola_value reply) {
  closed_port *t = ctx;
  TH_CHECK_OK(status);
  if (++t->answers == 1) {
    TH_CHECK(th_int(reply) == -1);
    TH_CHECK_OK(isola_pool_call(t->p, isola_int(21), ISOLA_FOREVER,
                                closed_port_done, t));
  } else {
    TH_CHECK(th_int(reply) == 42);
    isola_pool_stats st = stats_of(t->p);
    TH_CHECKF(st.workers == 1 && st.respawns == 1, "workers %zu respawns %llu",
              st.workers, (unsigned long long)st.respawns);
  }
}

static void closed_port_main(void *ctx, isola_value msg) {
  (void)msg;
  closed_port *t = ctx;
  isola_pool_options o = {.workers = 1};
  TH_CHECK_OK(isola_pool_start(worker, NULL, &o, &t->p));
  TH_CHECK_OK(isola_pool_call(t->p, isola_str("close"), ISOLA_FOREVER,
                              closed_port_done, t));
}

Test(workpool, a_worker_that_closed_its_port_is_ended_and_replaced) {
  vm_with_hooks();
  closed_port t = {0};
  TH_ASSERT_OK(isola_run_main_ctx(closed_port_main, &t, isola_null(), NULL));
  cr_assert(t.answers == 2, "%d answers", t.answers);
  TH_WAIT_GE(&pool_ends[ISOLA_EXIT_KILLED], 2); /* the closer, the new one */
  th_vm_shutdown_ok();
}

/* A job too big for its worker's room fails with the send's error: at
 * once when a worker is idle, by its callback when it was queued. */
typedef struct room {
  int efull, ok;
} room;

static void room_done(void *ctx, int status, isola_value reply) {
  room *t = ctx;
  if (status == ISOLA_OK) {
    TH_CHECK(reply.kind == ISOLA_INT);
    t->ok++;
  } else {
    TH_CHECKF(status == ISOLA_EFULL, "%s", isola_err_name(status));
    TH_CHECKF(strstr(isola_error_detail(), "could not be sent"), "%s",
              isola_error_detail());
    t->efull++;
  }
}

static void room_main(void *ctx, isola_value msg) {
  (void)msg;
  room *t = ctx;
  isola_pool *p;
  isola_pool_options o = {.workers = 1, .heap_limit = 64 * 1024};
  TH_CHECK_OK(isola_pool_start(worker, NULL, &o, &p));
  static uint8_t big[128 * 1024];
  isola_value b = isola_bytes(big, sizeof big);
  TH_CHECK_RC(isola_pool_call(p, b, ISOLA_FOREVER, must_not_run, NULL),
              ISOLA_EFULL);
  TH_CHECK_OK(isola_pool_call(p, isola_int(1), ISOLA_FOREVER, room_done, t));
  TH_CHECK_OK(isola_pool_call(p, b, ISOLA_FOREVER, room_done, t));
  TH_CHECK_OK(isola_pool_call(p, isola_int(2), ISOLA_FOREVER, room_done, t));
}

Test(workpool, a_job_that_does_not_fit_its_worker_fails_with_efull) {
  th_vm_init(NULL);
  room t = {0};
  TH_ASSERT_OK(isola_run_main_ctx(room_main, &t, isola_null(), NULL));
  cr_assert(t.ok == 2 && t.efull == 1, "ok %d efull %d", t.ok, t.efull);
  th_vm_shutdown_ok();
}

/* ---- stop ---------------------------------------------------------- */

static struct stop {
  isola_pool *p;
  isola_port keep;    /* keeps the root alive until the test says */
  size_t heap_blocks; /* the root's, before the pool */
  int answered, closed, closed_in_stop;
  bool stopping;
} st_;

static th_counter stop_ready = TH_COUNTER_INIT, stop_checked = TH_COUNTER_INIT;

static void stop_done(void *ctx, int status, isola_value reply) {
  (void)ctx;
  if (status == ISOLA_OK) {
    TH_CHECK(th_int(reply) == 2);
    st_.answered++;
    /* The pool may be used by its jobs' callbacks: it takes nothing now. */
    TH_CHECK_RC(isola_pool_call(st_.p, isola_int(1), ISOLA_FOREVER,
                                must_not_run, NULL),
                ISOLA_ECLOSED);
    TH_CHECK_OK(isola_pool_stop(st_.p)); /* again: nothing */
  } else {
    TH_CHECKF(status == ISOLA_ECLOSED, "%s", isola_err_name(status));
    TH_CHECK(reply.kind == ISOLA_NULL);
    st_.closed++;
    if (st_.stopping) st_.closed_in_stop++;
  }
}

static void stop_keep(void *ctx, isola_port port, isola_value msg,
                      isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  /* The workers have ended (their notices came before this message): the
   * pool has freed itself. */
  isola_isolate_stats st;
  TH_CHECK_OK(isola_current_stats(&st));
  TH_CHECKF(st.heap_blocks == st_.heap_blocks, "%zu heap blocks, %zu before",
            st.heap_blocks, st_.heap_blocks);
  isola_port_close(port);
  th_counter_add(&stop_checked, 1);
}

static void stop_entry(isola_value msg) {
  (void)msg;
  TH_CHECK_OK(isola_port_open(stop_keep, NULL, &st_.keep));
  isola_isolate_stats st;
  TH_CHECK_OK(isola_current_stats(&st));
  st_.heap_blocks = st.heap_blocks;
  isola_pool_options o = {.workers = 2};
  TH_CHECK_OK(isola_pool_start(worker, NULL, &o, &st_.p));
  for (int i = 0; i < 5; i++)
    TH_CHECK_OK(
        isola_pool_call(st_.p, isola_int(1), ISOLA_FOREVER, stop_done, NULL));
  st_.stopping = true;
  TH_CHECK_OK(isola_pool_stop(st_.p));
  st_.stopping = false;
  TH_CHECK(st_.closed_in_stop == 3 && st_.answered == 0);
  TH_CHECK_RC(isola_pool_call(st_.p, isola_int(1), ISOLA_FOREVER,
                              must_not_run, NULL),
              ISOLA_ECLOSED);
  th_counter_add(&stop_ready, 1);
}

Test(workpool, stop_fails_queued_jobs_lets_running_ones_answer_and_frees) {
  vm_with_hooks();
  TH_ASSERT_OK(isola_spawn(stop_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&stop_ready, 1);
  /* Both workers end once they have answered. */
  TH_WAIT_GE(&pool_ends[ISOLA_EXIT_KILLED], 2);
  TH_ASSERT_OK(isola_send(st_.keep, isola_null()));
  TH_WAIT_GE(&stop_checked, 1);
  cr_assert(st_.answered == 2 && st_.closed == 3 && st_.closed_in_stop == 3,
            "answered %d closed %d (%d in the stop)", st_.answered, st_.closed,
            st_.closed_in_stop);
  th_vm_shutdown_ok();
}

/* A stop with a timed-out job's worker still busy ends that worker at
 * once (nobody waits for its answer). */
static th_counter stuck_timed_out = TH_COUNTER_INIT;

static void stuck_done(void *ctx, int status, isola_value reply) {
  (void)reply;
  TH_CHECK_RC(status, ISOLA_ETIMEDOUT);
  TH_CHECK_OK(isola_pool_stop(ctx));
  th_counter_add(&stuck_timed_out, 1);
}

static void stuck_entry(isola_value msg) {
  (void)msg;
  isola_pool *p;
  isola_pool_options o = {.workers = 1};
  TH_CHECK_OK(isola_pool_start(held, NULL, &o, &p));
  TH_CHECK_OK(isola_pool_call(p, isola_int(1), 10, stuck_done, p));
}

Test(workpool, stop_ends_a_worker_whose_job_timed_out) {
  vm_with_hooks();
  TH_ASSERT_OK(isola_spawn(stuck_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&stuck_timed_out, 1);
  TH_WAIT_GE(&pool_ends[ISOLA_EXIT_KILLED], 1);
  th_vm_shutdown_ok();
}

/* ---- the owner's end ------------------------------------------------- */

static th_counter owner_gone = TH_COUNTER_INIT;

static void owner_exit(void *data, const isola_isolate_info *info) {
  count_pool_ends(data, info);
  if (strcmp(info->name, "owner") == 0) th_counter_add(&owner_gone, 1);
}

static void owner_entry(isola_value msg) {
  (void)msg;
  isola_pool *p;
  isola_pool_options o = {.workers = 2};
  TH_CHECK_OK(isola_pool_start(held, NULL, &o, &p));
  for (int i = 0; i < 6; i++) /* 2 held by the workers, 4 queued */
    TH_CHECK_OK(isola_pool_call(p, isola_int(i), i % 2 ? 50 : ISOLA_FOREVER,
                                must_not_run, NULL));
  isola_buffer *b = isola_buffer_new(100);
  TH_CHECK(b != NULL);
  isola_value items[2] = {isola_int(1), isola_transfer(&b)};
  TH_CHECK_OK(isola_pool_call(p, isola_list(items, 2), ISOLA_FOREVER,
                              must_not_run, NULL));
  TH_CHECK(b != NULL); /* copied: the caller keeps its buffer */
  isola_buffer_free(b);
  isola_port self;
  TH_CHECK_OK(isola_port_open(held, NULL, &self));
  isola_exit(self, isola_null());
  TH_CHECKF(false, "isola_exit returned");
}

Test(workpool, an_owner_that_ends_takes_its_pool_and_pending_jobs_along) {
  for (int i = 0; i < ISOLA_EXIT_REASONS; i++) th_counter_init(&pool_ends[i]);
  isola_config c = {0};
  c.hooks.isolate_cleanup = owner_exit;
  th_vm_init(&c);
  isola_spawn_options o = {.name = "owner"};
  TH_ASSERT_OK(isola_spawn(owner_entry, isola_null(), &o, NULL));
  TH_WAIT_GE(&owner_gone, 1);
  TH_WAIT_GE(&pool_ends[ISOLA_EXIT_KILLED], 2);
  th_vm_shutdown_ok(); /* and no leak (ASan builds) */
}

/* ---- bad input ------------------------------------------------------- */

static th_counter bad_checked = TH_COUNTER_INIT;

static void other_isolate(isola_value msg) {
  int64_t ptr;
  isola_port owner;
  TH_CHECK_OK(isola_unpack(msg, "[i p]", &ptr, &owner));
  isola_pool *p = (isola_pool *)(intptr_t)ptr;
  TH_CHECK_RC(isola_pool_call(p, isola_int(1), 10, must_not_run, NULL),
              ISOLA_ENOTOWNER);
  TH_CHECK_RC(isola_pool_stop(p), ISOLA_ENOTOWNER);
  isola_pool_stats st;
  TH_CHECK_RC(isola_pool_stats_get(p, &st), ISOLA_ENOTOWNER);
  th_counter_add(&bad_checked, 1);
  TH_CHECK_OK(isola_send(owner, isola_null()));
}

static void bad_fin(void *ctx, isola_port port, isola_value msg,
                    isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  isola_port_close(port);
}

static void bad_main(void *ctx, isola_value msg) {
  (void)ctx, (void)msg;
  isola_pool *p = (isola_pool *)1;
  TH_CHECK_RC(isola_pool_start(NULL, NULL, NULL, &p), ISOLA_EINVAL);
  TH_CHECK(p == NULL);
  TH_CHECK(strstr(isola_error_detail(), "handler"));
  TH_CHECK_RC(isola_pool_start(worker, NULL, NULL, NULL), ISOLA_EINVAL);
  isola_pool_options big = {.workers = 1025};
  TH_CHECK_RC(isola_pool_start(worker, NULL, &big, &p), ISOLA_EINVAL);
  TH_CHECK_OK(isola_pool_start(worker, NULL, NULL, &p)); /* one per core */
  TH_CHECK(stats_of(p).workers >= 1);
  TH_CHECK_RC(isola_pool_call(NULL, isola_int(1), 10, must_not_run, NULL),
              ISOLA_EINVAL);
  TH_CHECK_RC(isola_pool_call(p, isola_int(1), 10, NULL, NULL), ISOLA_EINVAL);
  TH_CHECK_RC(isola_pool_call(p, isola_int(1), 0, must_not_run, NULL),
              ISOLA_EINVAL);
  TH_CHECK(strstr(isola_error_detail(), "timeout"));
  const char bad[] = {(char)0xc0, (char)0x80, 0};
  isola_value items[2] = {isola_int(1), isola_str(bad)};
  TH_CHECK_RC(isola_pool_call(p, isola_list(items, 2), 10, must_not_run, NULL),
              ISOLA_EINVAL);
  TH_CHECKF(strstr(isola_error_detail(), "value[1]") &&
                strstr(isola_error_detail(), "UTF-8"),
            "%s", isola_error_detail());
  TH_CHECK_RC(isola_pool_stop(NULL), ISOLA_EINVAL);
  TH_CHECK_RC(isola_pool_stats_get(p, NULL), ISOLA_EINVAL);
  TH_CHECK(stats_of(p).busy == 0 && stats_of(p).queued == 0);
  /* Another isolate may not use the pool; this root waits for it (its
   * port), then ends, and the pool with it. */
  isola_port fin;
  TH_CHECK_OK(isola_port_open(bad_fin, NULL, &fin));
  isola_value m[2] = {isola_int((int64_t)(intptr_t)p), isola_sendport(fin)};
  TH_CHECK_OK(isola_spawn(other_isolate, isola_list(m, 2), NULL, NULL));
}

Test(workpool, bad_input_is_refused_and_runs_nothing) {
  th_vm_init(NULL);
  isola_pool *p = (isola_pool *)1;
  TH_ASSERT_RC(isola_pool_start(worker, NULL, NULL, &p), ISOLA_ENOTISOLATE);
  cr_assert(p == NULL, "%s",
            "p == NULL");
  TH_ASSERT_RC(isola_pool_call(p, isola_int(1), 10, must_not_run, NULL),
               ISOLA_ENOTISOLATE);
  TH_ASSERT_RC(isola_pool_stop(p), ISOLA_ENOTISOLATE);
  isola_spawn_options o = {.name = "bad"};
  TH_ASSERT_OK(isola_run_main_ctx(bad_main, NULL, isola_null(), &o));
  TH_WAIT_GE(&bad_checked, 1);
  th_vm_shutdown_ok();
}
