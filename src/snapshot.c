/* SPDX-License-Identifier: MIT */
/* snapshot.c — isola_vm_snapshot: every isolate, every worker and the VM's
 * totals, read while the VM runs (stats.h says who owns which counter). */
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "epoch.h"
#include "event_handler.h"
#include "heap.h"
#include "isolate.h"
#include "platform.h"
#include "port_map.h"
#include "scheduler.h"
#include "stats.h"
#include "vm.h"

/* ---- the isolate's counters (its own thread) ----------------------------- */

void isola__istats_init(struct isola__istats *st) {
  memset(st, 0, sizeof *st);
  atomic_store_explicit(&st->worker, -1, memory_order_relaxed);
  atomic_store_explicit(&st->state, ISOLA_STATE_STARTING,
                        memory_order_relaxed);
}

void isola__istats_turn_begin(isola__isolate *iso) {
  struct isola__istats *st = isola__iso_stats(iso);
  uint64_t now = isola__plat_now_ns();
  /* A turn resumed after an uncaught error did not end: count it so far. */
  uint64_t since = isola__cnt(&st->since_ns);
  if (since) isola__cnt_add(&st->run_ns, now - since);
  isola__cnt_set(&st->since_ns, now);
  isola__cnt_set(&st->last_run_ns, now);
  isola__thread *t = isola__t.thread;
  isola__worker *w = t ? t->w : NULL;
  atomic_store_explicit(&st->worker, w ? (int32_t)w->id : -1,
                        memory_order_relaxed);
  if (w) isola__cnt_set(&w->st_since, now);
  atomic_store_explicit(&st->state, ISOLA_STATE_RUNNING,
                        memory_order_relaxed);
}

void isola__istats_turn_end(isola__isolate *iso, uint32_t state) {
  struct isola__istats *st = isola__iso_stats(iso);
  uint64_t now = isola__plat_now_ns();
  uint64_t since = isola__cnt(&st->since_ns);
  if (since) isola__cnt_add(&st->run_ns, now - since);
  isola__cnt_set(&st->since_ns, 0);
  const struct isola__ext *x = iso->ext;
  if (x) {
    isola__cnt_set(&st->heap_used, x->in_use);
    isola__cnt_set(&st->heap_peak, x->peak);
    isola__cnt_set(&st->heap_limit, x->limit);
  } else {
    isola__vm *vm = isola__vm_get();
    isola__cnt_set(&st->heap_limit, vm ? vm->config.heap_limit : 0);
  }
  uint32_t timers, watches;
  isola__timers_count(iso, &timers, &watches);
  atomic_store_explicit(&st->timers, timers, memory_order_relaxed);
  atomic_store_explicit(&st->watches, watches, memory_order_relaxed);
  atomic_store_explicit(&st->pauses, isola__control_pauses(iso),
                        memory_order_relaxed);
  atomic_store_explicit(&st->state, state, memory_order_relaxed);
}

/* ---- names ------------------------------------------------------------- */

const char *isola_drop_reason_name(int reason) {
  static const char *const names[] = {"closed", "heap", "ended"};
  return reason >= 0 && reason < ISOLA_DROP_REASONS ? names[reason] : "?";
}

const char *isola_isolate_state_name(int state) {
  static const char *const names[] = {"starting", "running", "ready", "idle",
                                      "paused",   "ending",  "unknown"};
  return state >= 0 && state <= ISOLA_STATE_UNKNOWN ? names[state] : "?";
}

const char *isola_worker_state_name(int state) {
  static const char *const names[] = {"idle", "searching", "running"};
  return state >= 0 && state <= ISOLA_WORKER_RUNNING ? names[state] : "?";
}

/* ---- taking a snapshot -------------------------------------------------- */

/* What each worker runs, as read from st_cur (an isolate's address), in
 * address order, and the control port found for it. */
typedef struct running {
  uintptr_t addr;
  isola_port id;
} running;

typedef struct collect {
  isola_isolate_snapshot *items;
  size_t n, cap;
  unsigned flags;
  bool failed;
  running *run; /* nrun entries, sorted by addr */
  size_t nrun;
} collect;

static int by_addr(const void *a, const void *b) {
  uintptr_t x = ((const running *)a)->addr, y = ((const running *)b)->addr;
  return x < y ? -1 : x > y;
}

static uint64_t diff(uint64_t in, uint64_t out) {
  return in > out ? in - out : 0; /* read apart: never below zero */
}

/* One isolate, found through its control port: not freed while we are
 * online, but it may be ending (its group may be gone: stats keep the
 * group's id). */
static void one(isola__isolate *iso, void *arg) {
  collect *c = arg;
  if (c->failed) return;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 64;
    isola_isolate_snapshot *p = realloc(c->items, cap * sizeof *p);
    if (!p) {
      c->failed = true;
      return;
    }
    c->items = p;
    c->cap = cap;
  }
  isola_isolate_snapshot *o = &c->items[c->n++];
  memset(o, 0, sizeof *o);
  o->id = iso->control_port;
  /* A worker that runs it names it by its address (st_cur). */
  running key = {(uintptr_t)iso, 0};
  running *r = c->nrun ? bsearch(&key, c->run, c->nrun, sizeof key, by_addr)
                       : NULL;
  if (r) r->id = o->id;
  o->origin = atomic_load_explicit(&iso->origin, memory_order_relaxed);
  const char *name = isola__isolate_name(iso);
  size_t len = strlen(name);
  if (len >= sizeof o->name) len = sizeof o->name - 1;
  memcpy(o->name, name, len);
  o->live_ports = isola__ld32(&iso->live_ports);
  uint32_t room = atomic_load_explicit(&iso->room, memory_order_relaxed);
  /* The low bits: the room itself (the top bit tells of a mailbox bound,
   * internal.h). */
  room &= ISOLA__ROOM_FREE;
  o->room = room == ISOLA__ROOM_FREE ? -1 : (int64_t)room;
  o->worker = -1;
  o->state = ISOLA_STATE_UNKNOWN;
  if (c->flags & ISOLA_SNAPSHOT_CAPABILITIES) {
    o->pause_capability = iso->pause_cap;
    o->terminate_capability = iso->terminate_cap;
  }
  struct isola__istats *st = isola__iso_stats(iso);
  if (!st) return;
  o->group = isola__cnt(&st->group);
  o->state = atomic_load_explicit(&st->state, memory_order_relaxed);
  o->pauses = atomic_load_explicit(&st->pauses, memory_order_relaxed);
  o->timers = atomic_load_explicit(&st->timers, memory_order_relaxed);
  o->watches = atomic_load_explicit(&st->watches, memory_order_relaxed);
  o->worker = atomic_load_explicit(&st->worker, memory_order_relaxed);
  /* Dequeues first: an enqueue read after them is never older. */
  uint64_t deq = isola__cnt(&st->deq), deq_b = isola__cnt(&st->deq_bytes);
  uint64_t odeq = isola__cnt(&st->oob_deq);
  uint64_t odeq_b = isola__cnt(&st->oob_deq_bytes);
  o->queued = diff(isola__cnt(&st->enq), deq);
  o->queued_bytes = diff(isola__cnt(&st->enq_bytes), deq_b);
  o->oob_queued = diff(isola__cnt(&st->oob_enq), odeq);
  o->oob_queued_bytes = diff(isola__cnt(&st->oob_enq_bytes), odeq_b);
  o->heap_used = isola__cnt(&st->heap_used);
  o->heap_peak = isola__cnt(&st->heap_peak);
  o->heap_limit = isola__cnt(&st->heap_limit);
  o->handled = isola__cnt(&st->handled);
  o->errors = isola__cnt(&st->errors);
  o->run_ns = isola__cnt(&st->run_ns);
  o->last_run_ns = isola__cnt(&st->last_run_ns);
  o->running_since_ns = isola__cnt(&st->since_ns);
  /* An idle isolate that a sender has readied since its last turn. */
  if (o->state == ISOLA_STATE_IDLE && o->queued) o->state = ISOLA_STATE_READY;
}

int isola_vm_snapshot(unsigned flags, isola_snapshot **out) {
  if (!out || (flags & ~ISOLA_SNAPSHOT_CAPABILITIES)) return ISOLA_EINVAL;
  *out = NULL;
  /* Entered as isola__vm_enter() does, but also while shutting down: the
   * count of outside callers keeps shutdown from freeing anything, and
   * being online keeps every isolate we reach from being freed. */
  isola__thread *t = isola__t.thread;
  if (!t)
    atomic_fetch_add_explicit(&isola__outside_callers, 1,
                              memory_order_seq_cst);
  int rc = ISOLA_OK;
  isola__epoch_rec *rec = NULL;
  isola__vm *vm = isola__vm_get();
  int state = vm ? atomic_load_explicit(&vm->state, memory_order_seq_cst) : 0;
  if (!vm || (state != ISOLA__VM_RUNNING && state != ISOLA__VM_SHUTTING_DOWN))
    rc = ISOLA_ENOVM;
  else if (t)
    rec = t->online ? NULL : t->rec;
  else if (!(rec = isola__vm_thread_rec(vm)))
    rc = ISOLA_ENOMEM;
  if (rc == ISOLA_OK) {
    if (rec) isola__epoch_online(&vm->epoch, rec);
    size_t nw = vm->sched.nworkers;
    /* What the workers run, read before the isolates are: an isolate a
     * worker runs is found among them unless it ended meanwhile. */
    uintptr_t *cur = malloc(nw * sizeof *cur);
    running *run = malloc(nw * sizeof *run);
    collect c = {NULL, 0, 0, flags, !cur || !run, run, 0};
    for (size_t i = 0; cur && run && i < nw; i++) {
      cur[i] = (uintptr_t)isola__cnt(&vm->sched.workers[i].st_cur);
      if (cur[i]) run[c.nrun++] = (running){cur[i], 0};
    }
    if (c.nrun) qsort(run, c.nrun, sizeof *run, by_addr);
    isola__port_map_each_isolate(&vm->ports, one, &c);
    isola_snapshot *s =
        c.failed ? NULL
                 : malloc(sizeof *s + nw * sizeof *s->workers +
                          c.n * sizeof *s->isolates);
    if (!s) {
      rc = ISOLA_ENOMEM;
    } else {
      memset(s, 0, sizeof *s);
      s->now_ns = isola__plat_now_ns();
      s->isolate_stats = vm->config.isolate_stats;
      s->shutting_down = state == ISOLA__VM_SHUTTING_DOWN;
      s->nworkers = nw;
      s->workers = (isola_worker_snapshot *)(s + 1);
      s->nisolates = c.n;
      s->isolates = (isola_isolate_snapshot *)(s->workers + nw);
      if (c.n) memcpy(s->isolates, c.items, c.n * sizeof *s->isolates);
      for (size_t i = 0; i < nw; i++) {
        isola__worker *w = &vm->sched.workers[i];
        isola_worker_snapshot *o = &s->workers[i];
        memset(o, 0, sizeof *o);
        o->id = (uint32_t)i;
        running key = {cur[i], 0};
        const running *r =
            cur[i] ? bsearch(&key, run, c.nrun, sizeof key, by_addr) : NULL;
        o->current = r ? r->id : 0;
        if (atomic_load_explicit(&w->st_idle, memory_order_relaxed))
          o->state = ISOLA_WORKER_IDLE;
        else
          o->state = cur[i] ? ISOLA_WORKER_RUNNING : ISOLA_WORKER_SEARCHING;
        if (o->current && vm->config.isolate_stats)
          o->current_since_ns = isola__cnt(&w->st_since);
        uint32_t h = atomic_load_explicit(&w->rq_head, memory_order_relaxed);
        uint32_t tl = atomic_load_explicit(&w->rq_tail, memory_order_relaxed);
        o->runq = tl - h <= ISOLA__RUNQ_SIZE ? tl - h : 0;
        o->turns = isola__cnt(&w->st_turns);
        o->steals = isola__cnt(&w->st_steals);
        o->parks = isola__cnt(&w->st_parks);
        o->wakes = isola__cnt(&w->st_wakes);
      }
      isola_vm_totals *v = &s->vm;
      v->live = atomic_load_explicit(&vm->live, memory_order_relaxed);
      v->global_queue =
          atomic_load_explicit(&vm->sched.gq_len, memory_order_relaxed);
      for (isola__epoch_rec *r =
               atomic_load_explicit(&vm->epoch.recs, memory_order_acquire);
           r; r = r->next) {
        isola__tstats *ts = &r->stats;
        v->spawned += isola__cnt(&ts->spawned);
        v->sent += isola__cnt(&ts->sent);
        v->sent_bytes += isola__cnt(&ts->sent_bytes);
        v->refused += isola__cnt(&ts->refused);
        for (int k = 0; k < ISOLA_EXIT_REASONS; k++)
          v->ended[k] += isola__cnt(&ts->ended[k]);
        for (int k = 0; k < ISOLA_DROP_REASONS; k++)
          v->dropped[k] += isola__cnt(&ts->dropped[k]);
      }
      *out = s;
    }
    if (rec) isola__epoch_offline(rec);
    free(c.items);
    free(cur);
    free(run);
  }
  if (!t)
    atomic_fetch_sub_explicit(&isola__outside_callers, 1,
                              memory_order_release);
  return rc;
}

void isola_snapshot_free(isola_snapshot *snapshot) { free(snapshot); }

_Static_assert(ISOLA_EXIT_NODE_LOST + 1 == ISOLA_EXIT_REASONS,
               "ISOLA_EXIT_REASONS counts every isola_exit_reason");
