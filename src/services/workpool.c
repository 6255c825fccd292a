/* SPDX-License-Identifier: MIT */
/*
 * workpool.c — isola_pool: worker isolates serving the jobs of the isolate
 * that started the pool (its owner), an idle worker at a time or a FIFO
 * queue until one is free.  Built on the public API (isola_spawn_port,
 * exit notices given at spawn, a reply port and a timer per job, as
 * isola_call has), plus two internals: requests are copied into the
 * owner's isolate heap (value.h, heap.h), and errors get their detail.
 *
 * Everything belongs to the owner's thread.  Callbacks never run inside
 * isola_pool_call(); they run from the pool's own events (a reply, a
 * timeout, a worker's exit notice) and from isola_pool_stop(), always with
 * the pool's state consistent first, so a callback may call the pool again
 * (or throw).  The pool is freed only by a microtask (after the event
 * that found it done), so no callback or call returns into a freed pool.
 */
#include <isola.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "detail.h"
#include "heap.h" /* isola__heap_try_calloc: blocks that never raise */
#include "internal.h"
#include "value.h"

#define MAX_WORKERS 1024

enum { W_NONE, W_IDLE, W_BUSY, W_GONE, W_STOPPING };

typedef struct job job;

typedef struct worker {
  uint8_t state;   /* W_*; GONE: its port refused a job, its notice is due;
                      STOPPING: told to end */
  bool in_idle;    /* on the idle stack */
  uint64_t gen;    /* its exit notice carries it: older ones are stale */
  isola_isolate h; /* valid unless W_NONE */
  isola_port port; /* the port it serves */
  job *job;        /* W_BUSY: the job it serves */
} worker;

struct job {
  job *prev, *next;  /* the queue, or the list of completions due */
  isola_pool *pool;
  isola_call_fn done; /* NULL: its caller was told already (timed out) */
  void *ctx;
  isola_value req;   /* the copy, while queued (root of block) */
  void *block;       /* its block in the owner's heap, or NULL */
  isola_timer timer; /* 0: none */
  isola_port reply;  /* while a worker has it */
  worker *w;         /* the worker that has it, or NULL */
  int status;        /* a completion due: its status */
};

struct isola_pool {
  isola_pool *next_pool; /* the owner's list */
  isola__isolate *owner;
  isola_handler handler;
  void *hctx;
  char name[64];
  size_t heap_limit, max_queued;
  isola_port notices; /* the workers' exit notices */
  bool stopping, finishing;
  worker *w;
  size_t n, live, busy; /* workers; not W_NONE; W_BUSY */
  size_t *idle;         /* a stack of worker indices */
  size_t nidle;
  job *qhead, *qtail; /* waiting for a worker */
  size_t queued;
  job *due_head, *due_tail; /* failed jobs whose callbacks are due */
  uint64_t respawns;
  int spawn_rc; /* the last failed spawn's error (no worker left) */
};

/* ---- the owner's list: the pool ends with its owner -------------------- */

typedef struct owned {
  isola_pool *head;
} owned;

static void job_release_block(job *j) {
  if (!j->block) return;
  isola__block_release(j->block); /* the buffers it copied */
  isola_free(j->block);
  j->block = NULL;
  j->req = isola_null();
}

/* The owner ends: workers are killed; the blocks' buffers (system memory)
 * are freed, the heap blocks go with the owner's heap. */
static void owned_end(void *value) {
  owned *o = value;
  for (isola_pool *p = o->head; p; p = p->next_pool) {
    for (size_t i = 0; i < p->n; i++) {
      if (p->w[i].state != W_NONE) isola_kill(&p->w[i].h, ISOLA_IMMEDIATE);
      if (p->w[i].job && p->w[i].job->block)
        isola__block_release(p->w[i].job->block);
    }
    for (job *j = p->qhead; j; j = j->next)
      if (j->block) isola__block_release(j->block);
  }
  o->head = NULL;
}

static ISOLA_LOCAL_INIT(owned, owned_key, NULL, owned_end);

static int owner_check(const isola_pool *p, const char *fn) {
  if (!isola__t.current) {
    isola__detail_set("%s: not called from an isolate", fn);
    return ISOLA_ENOTISOLATE;
  }
  if (!p) {
    isola__detail_set("%s: the pool is NULL", fn);
    return ISOLA_EINVAL;
  }
  if (p->owner != isola__t.current) {
    isola__detail_set("%s: the pool belongs to another isolate", fn);
    return ISOLA_ENOTOWNER;
  }
  return ISOLA_OK;
}

/* ---- the queue and the completions due --------------------------------- */

static void list_push(job **head, job **tail, job *j) {
  j->next = NULL;
  j->prev = *tail;
  if (*tail)
    (*tail)->next = j;
  else
    *head = j;
  *tail = j;
}

static void list_unlink(job **head, job **tail, job *j) {
  if (j->prev)
    j->prev->next = j->next;
  else
    *head = j->next;
  if (j->next)
    j->next->prev = j->prev;
  else
    *tail = j->prev;
  j->prev = j->next = NULL;
}

/* Queued jobs keep the owner alive (a busy worker's job does by its reply
 * port): the notice port is live while any job waits. */
static void enqueue(isola_pool *p, job *j, bool front) {
  if (front) {
    j->prev = NULL;
    j->next = p->qhead;
    if (p->qhead)
      p->qhead->prev = j;
    else
      p->qtail = j;
    p->qhead = j;
  } else {
    list_push(&p->qhead, &p->qtail, j);
  }
  if (p->queued++ == 0) isola_port_keep_alive(p->notices, true);
}

static void dequeue(isola_pool *p, job *j) {
  list_unlink(&p->qhead, &p->qtail, j);
  if (--p->queued == 0) isola_port_keep_alive(p->notices, false);
}

/* Frees a job that is in no list and has no worker. */
static void job_free(job *j) {
  if (j->timer) isola_timer_cancel(j->timer);
  job_release_block(j);
  isola_free(j);
}

/* Makes j (in no list, no worker) a completion due with status. */
static void make_due(isola_pool *p, job *j, int status) {
  if (j->timer) isola_timer_cancel(j->timer);
  j->timer = 0;
  job_release_block(j);
  j->status = status;
  list_push(&p->due_head, &p->due_tail, j);
}

static void set_due_detail(const isola_pool *p, int status) {
  if (status == ISOLA_ECLOSED)
    isola__detail_set("isola_pool_call: the pool was stopped before a "
                      "worker took the job");
  else if (p->live == 0)
    isola__detail_set("isola_pool_call: no worker of the pool (%s) is left "
                      "and none could be started: %s", p->name,
                      isola_strerror(status));
  else
    isola__detail_set("isola_pool_call: the job could not be sent to a "
                      "worker of the pool (%s): %s", p->name,
                      isola_strerror(status));
}

/* Runs the callbacks due, oldest first, each job unlinked and freed
 * before its callback runs. */
static void run_due(isola_pool *p) {
  while (p->due_head) {
    job *j = p->due_head;
    list_unlink(&p->due_head, &p->due_tail, j);
    isola_call_fn done = j->done;
    void *ctx = j->ctx;
    int status = j->status;
    isola_free(j);
    set_due_detail(p, status);
    done(ctx, status, isola_null());
  }
}

/* ---- workers ------------------------------------------------------------ */

static void worker_replied(void *ctx, isola_port port, isola_value msg,
                           isola_port reply_to);

static void push_idle(isola_pool *p, worker *w) {
  w->state = W_IDLE;
  if (!w->in_idle) {
    w->in_idle = true;
    p->idle[p->nidle++] = (size_t)(w - p->w);
  }
}

/* An idle worker, or NULL. */
static worker *pop_idle(isola_pool *p) {
  while (p->nidle) {
    worker *w = &p->w[p->idle[--p->nidle]];
    w->in_idle = false;
    if (w->state == W_IDLE) return w;
  }
  return NULL;
}

static int spawn_worker(isola_pool *p, worker *w) {
  w->gen++;
  isola_value meta[2] = {isola_int((int64_t)(w - p->w)),
                         isola_int((int64_t)w->gen)};
  isola_spawn_options o = {.name = p->name,
                           .on_exit = p->notices,
                           .on_exit_message = isola_list(meta, 2),
                           .exit_notice = true,
                           .heap_limit = p->heap_limit};
  int rc = isola_spawn_port(NULL, isola_null(), p->handler, p->hctx, &o,
                            &w->h, &w->port);
  if (rc != ISOLA_OK) return rc;
  p->live++;
  push_idle(p, w);
  return ISOLA_OK;
}

/* Tells w to end (the pool is stopping). */
static void stop_worker(worker *w) {
  w->state = W_STOPPING;
  /* ECLOSED: it is ending already; its notice is on its way. */
  isola_kill(&w->h, ISOLA_BEFORE_NEXT_EVENT);
}

/* Sends j to w (idle).  On error w is idle again (or W_GONE when its port
 * is closed: ISOLA_ECLOSED) and j is as it was. */
static int dispatch(isola_pool *p, worker *w, job *j) {
  int rc = isola_port_open(worker_replied, j, &j->reply);
  if (rc != ISOLA_OK) {
    push_idle(p, w);
    return rc;
  }
  /* Linked before the send: a kill that lands at the send abandons this
   * frame, and the owner's end must still find the job. */
  w->state = W_BUSY;
  w->job = j;
  j->w = w;
  p->busy++;
  rc = isola_send_reply(w->port, j->req, j->reply);
  if (rc != ISOLA_OK) {
    isola_port_close(j->reply);
    j->reply = ISOLA_PORT_NONE;
    w->job = NULL;
    j->w = NULL;
    p->busy--;
    if (rc == ISOLA_ECLOSED) {
      /* Its port is closed: it has ended (its notice is on its way), or
       * its handler closed the port and other ports keep it alive: a
       * worker no more, so it is ended, and its notice replaces it. */
      w->state = W_GONE;
      isola_kill(&w->h, ISOLA_IMMEDIATE);
    } else {
      push_idle(p, w);
    }
    return rc;
  }
  job_release_block(j);
  return ISOLA_OK;
}

/* Hands queued jobs to idle workers; a job that cannot be sent becomes a
 * completion due with the send's error. */
static void pump(isola_pool *p) {
  while (p->qhead) {
    worker *w = pop_idle(p);
    if (!w) return;
    job *j = p->qhead;
    dequeue(p, j);
    int rc = dispatch(p, w, j);
    if (rc == ISOLA_ECLOSED && w->state == W_GONE)
      enqueue(p, j, true); /* to the next worker */
    else if (rc != ISOLA_OK)
      make_due(p, j, rc);
  }
}

/* Fails every queued job with status. */
static void fail_queue(isola_pool *p, int status) {
  while (p->qhead) {
    job *j = p->qhead;
    dequeue(p, j);
    make_due(p, j, status);
  }
}

/* Frees the pool (a microtask: after the event that found it done). */
static void finish_now(void *arg) {
  isola_pool *p = arg;
  owned *o = isola_local_get(&owned_key);
  if (o)
    for (isola_pool **q = &o->head; *q; q = &(*q)->next_pool)
      if (*q == p) {
        *q = p->next_pool;
        break;
      }
  isola_port_close(p->notices);
  isola_free(p->idle);
  isola_free(p->w);
  isola_free(p);
}

/* A stopping pool whose workers have all ended is freed after this event;
 * should the microtask not be had, the owner's end frees it. */
static void maybe_finish(isola_pool *p) {
  if (!p->stopping || p->live || p->finishing || p->due_head) return;
  p->finishing = true;
  isola_microtask(finish_now, p);
}

/* w is done with its job: the next one, or its end if the pool stops. */
static void worker_free(isola_pool *p, worker *w) {
  w->job = NULL;
  p->busy--;
  if (p->stopping) {
    stop_worker(w);
    return;
  }
  push_idle(p, w);
  pump(p);
}

/* The first answer to j, on its reply port. */
static void worker_replied(void *ctx, isola_port port, isola_value msg,
                           isola_port reply_to) {
  (void)port, (void)reply_to;
  job *j = ctx;
  isola_pool *p = j->pool;
  isola_port_close(j->reply);
  worker_free(p, j->w);
  isola_call_fn done = j->done;
  void *dctx = j->ctx;
  job_free(j);
  if (done) done(dctx, ISOLA_OK, msg);
  run_due(p);
}

static void job_timed_out(void *arg) {
  job *j = arg;
  isola_pool *p = j->pool;
  j->timer = 0;
  isola_call_fn done = j->done;
  void *dctx = j->ctx;
  if (j->w) {
    /* Its worker keeps it until it answers or ends; nobody waits for the
     * answer, so it no longer keeps the owner alive. */
    j->done = NULL;
    isola_port_keep_alive(j->reply, false);
    if (p->stopping) stop_worker(j->w);
  } else {
    dequeue(p, j);
    job_free(j);
  }
  isola__detail_set("isola_pool_call: no answer within the timeout");
  done(dctx, ISOLA_ETIMEDOUT, isola_null());
}

/* Starts workers in place of the missing ones (W_NONE); ISOLA_OK when at
 * least one worker runs. */
static int refill(isola_pool *p) {
  for (size_t i = 0; i < p->n && !p->stopping; i++) {
    if (p->w[i].state != W_NONE) continue;
    int rc = spawn_worker(p, &p->w[i]);
    if (rc != ISOLA_OK) {
      p->spawn_rc = rc;
      break;
    }
    p->respawns++;
  }
  return p->live ? ISOLA_OK : p->spawn_rc;
}

/* An exit notice [reason, isolate, detail, [index, gen]]. */
static void on_notice(void *ctx, isola_port port, isola_value msg,
                      isola_port reply_to) {
  (void)port, (void)reply_to;
  isola_pool *p = ctx;
  int64_t reason = -1, idx = -1, gen = 0;
  const char *detail = NULL;
  /* Should memory run out while the notice is built, the runtime sends the
   * bare response [index, gen] instead: the end is known, not why. */
  if (isola_unpack(msg, "[i _ ?s [i i] *]", &reason, &detail, &idx, &gen) !=
      ISOLA_OK) {
    reason = -1; /* what the failed unpack stored is not it */
    detail = NULL;
    if (isola_unpack(msg, "[i i]", &idx, &gen) != ISOLA_OK)
      return; /* not a notice of ours */
  }
  if (idx < 0 || (size_t)idx >= p->n) return;
  worker *w = &p->w[idx];
  if ((uint64_t)gen != w->gen || w->state == W_NONE) return; /* stale */
  job *j = w->job;
  if (j) {
    w->job = NULL;
    p->busy--;
    isola_port_close(j->reply);
  }
  w->state = W_NONE;
  p->live--;
  /* Replaced at once when it died serving a job or jobs wait, otherwise
   * at the next isola_pool_call(): a worker that ends by itself with
   * nothing to do (or cannot even start) makes no storm of respawns, each
   * respawn here costing a job. */
  if (!p->stopping && (j || p->queued)) {
    int rc = refill(p);
    if (rc != ISOLA_OK) fail_queue(p, rc);
    pump(p);
  }
  if (j) {
    isola_call_fn done = j->done;
    void *dctx = j->ctx;
    job_free(j);
    if (done) {
      isola__detail_set("isola_pool_call: worker %lld of the pool (%s) ended "
                        "before answering: %s%s%s", (long long)idx, p->name,
                        isola_exit_reason_name((int)reason),
                        detail ? ": " : "", detail ? detail : "");
      done(dctx, ISOLA_EFAILED, isola_int(reason));
    }
  }
  run_due(p);
  maybe_finish(p);
}

/* ---- the public calls -------------------------------------------------- */

static void pool_free_unstarted(isola_pool *p) {
  for (size_t i = 0; i < p->n; i++)
    if (p->w[i].state != W_NONE) isola_kill(&p->w[i].h, ISOLA_IMMEDIATE);
  if (p->notices) isola_port_close(p->notices);
  isola_free(p->idle);
  isola_free(p->w);
  isola_free(p);
}

int isola_pool_start(isola_handler handler, void *ctx,
                     const isola_pool_options *opts, isola_pool **out) {
  if (out) *out = NULL;
  if (!isola__t.current) {
    isola__detail_set("isola_pool_start: not called from an isolate");
    return ISOLA_ENOTISOLATE;
  }
  isola_pool_options o = opts ? *opts : (isola_pool_options){0};
  if (!handler || !out || o.workers > MAX_WORKERS) {
    isola__detail_set("isola_pool_start: %s",
                      !handler ? "handler is NULL"
                      : !out   ? "out is NULL"
                               : "more than 1024 workers");
    return ISOLA_EINVAL;
  }
  if (o.workers == 0) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    o.workers = cores < 1 ? 1 : cores > MAX_WORKERS ? MAX_WORKERS
                                                    : (size_t)cores;
  }
  owned *own = isola_local_get(&owned_key);
  isola_pool *p = isola__heap_try_calloc(sizeof *p);
  if (!own || !p) {
    isola_free(p);
    isola__detail_set("isola_pool_start: no memory for the pool");
    return ISOLA_ENOMEM;
  }
  p->owner = isola__t.current;
  p->handler = handler;
  p->hctx = ctx;
  snprintf(p->name, sizeof p->name, "%s", o.name ? o.name : "pool");
  p->heap_limit = o.heap_limit;
  p->max_queued = o.max_queued;
  p->n = o.workers;
  p->w = isola__heap_try_calloc(p->n * sizeof *p->w);
  p->idle = isola__heap_try_calloc(p->n * sizeof *p->idle);
  int rc = p->w && p->idle ? ISOLA_OK : ISOLA_ENOMEM;
  if (rc == ISOLA_ENOMEM)
    isola__detail_set("isola_pool_start: no memory for the pool");
  if (rc == ISOLA_OK) rc = isola_port_open(on_notice, p, &p->notices);
  if (rc == ISOLA_OK) isola_port_keep_alive(p->notices, false);
  /* Listed before the spawns: should the owner be killed meanwhile, its
   * end kills the workers started. */
  if (rc == ISOLA_OK) {
    p->next_pool = own->head;
    own->head = p;
  }
  for (size_t i = 0; rc == ISOLA_OK && i < p->n; i++)
    rc = spawn_worker(p, &p->w[i]);
  if (rc != ISOLA_OK) {
    if (own->head == p) own->head = p->next_pool;
    if (p->w && p->idle)
      pool_free_unstarted(p);
    else {
      isola_free(p->w);
      isola_free(p->idle);
      isola_free(p);
    }
    return rc;
  }
  *out = p;
  return ISOLA_OK;
}

int isola_pool_call(isola_pool *pool, isola_value request, uint64_t timeout_ms,
                    isola_call_fn done, void *ctx) {
  int rc = owner_check(pool, "isola_pool_call");
  if (rc != ISOLA_OK) return rc;
  if (!done || timeout_ms == 0) {
    isola__detail_set("isola_pool_call: %s",
                      !done ? "done is NULL"
                            : "a timeout of 0 ms (ISOLA_FOREVER: none)");
    return ISOLA_EINVAL;
  }
  if (pool->stopping) {
    isola__detail_set("isola_pool_call: the pool is stopping");
    return ISOLA_ECLOSED;
  }
  if (pool->live < pool->n) {
    rc = refill(pool);
    if (rc != ISOLA_OK) {
      isola__detail_set("isola_pool_call: no worker of the pool (%s) is "
                        "left and none could be started: %s", pool->name,
                        isola_strerror(rc));
      return rc;
    }
  }
  /* Jobs wait only while no worker is idle. */
  if (pool->max_queued && pool->queued >= pool->max_queued) {
    isola__detail_set("isola_pool_call: %zu jobs wait for a worker already "
                      "(max_queued)", pool->queued);
    return ISOLA_EFULL;
  }
  job *j = isola__heap_try_calloc(sizeof *j);
  if (!j) {
    isola__detail_set("isola_pool_call: no room for the job in the "
                      "caller's heap");
    return ISOLA_ENOMEM;
  }
  j->pool = pool;
  j->done = done;
  j->ctx = ctx;
  /* The copy: one block in the owner's heap, planned first. */
  isola__plan plan;
  rc = isola__value_plan(&plan, request);
  if (rc == ISOLA_OK && plan.size) {
    j->block = isola__heap_try_calloc(plan.size);
    if (!j->block) {
      rc = ISOLA_ENOMEM;
      isola__detail_set("isola_pool_call: no room for a request of %zu "
                        "bytes in the caller's heap", plan.size);
    } else {
      rc = isola__value_write(&plan, request, j->block, ISOLA__COPY_BUFFERS,
                              &j->req);
      if (rc != ISOLA_OK) {
        isola_free(j->block);
        j->block = NULL;
      }
    }
  } else if (rc == ISOLA_OK) {
    j->req = request; /* a scalar */
  } else if (rc != ISOLA_ENOMEM) {
    isola__detail_value(request, rc);
  }
  isola__plan_done(&plan);
  if (rc == ISOLA_OK && timeout_ms != ISOLA_FOREVER)
    rc = isola_timer_start(timeout_ms, 0, job_timed_out, j, &j->timer);
  if (rc != ISOLA_OK) {
    job_free(j);
    return rc;
  }
  worker *w;
  while ((w = pop_idle(pool)) != NULL) {
    rc = dispatch(pool, w, j);
    if (rc == ISOLA_OK) return ISOLA_OK;
    if (rc != ISOLA_ECLOSED || w->state != W_GONE) {
      job_free(j);
      return rc;
    }
  }
  enqueue(pool, j, false);
  return ISOLA_OK;
}

int isola_pool_stop(isola_pool *pool) {
  int rc = owner_check(pool, "isola_pool_stop");
  if (rc != ISOLA_OK) return rc;
  if (pool->stopping) return ISOLA_OK;
  pool->stopping = true;
  fail_queue(pool, ISOLA_ECLOSED);
  for (size_t i = 0; i < pool->n; i++) {
    worker *w = &pool->w[i];
    if (w->state == W_IDLE || (w->state == W_BUSY && !w->job->done))
      stop_worker(w);
  }
  run_due(pool);
  maybe_finish(pool);
  return ISOLA_OK;
}

int isola_pool_stats_get(const isola_pool *pool, isola_pool_stats *out) {
  int rc = owner_check(pool, "isola_pool_stats_get");
  if (rc != ISOLA_OK) return rc;
  if (!out) {
    isola__detail_set("isola_pool_stats_get: out is NULL");
    return ISOLA_EINVAL;
  }
  out->workers = pool->live;
  out->busy = pool->busy;
  out->queued = pool->queued;
  out->respawns = pool->respawns;
  return ISOLA_OK;
}
