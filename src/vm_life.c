/* SPDX-License-Identifier: MIT */
/* vm_life.c — the VM's life: init, shutdown, configuration, tracing, and the
 * count of live isolates (there is no list: shutdown finds them through
 * their control ports). */
#include "vm.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "event_handler.h"
#include "isolate.h"
#include "message_handler.h"
#include "message_queue.h"
#include "name_server.h"
#include "platform.h"
#include "pool.h"
#include "scheduler.h"
#include "trace.h"

ISOLA__TLS isola__tls isola__t = {.tstats = &isola__tstats_sink};
isola__tstats isola__tstats_sink;
_Atomic(isola__vm *) isola__the_vm;
_Atomic size_t isola__outside_callers;
#ifdef ISOLA_TEST_HOOKS
void (*_Atomic isola__test_hook)(int where);
void (*_Atomic isola__test_hook_p)(int where, const void *p);
#endif

/* The VM lives in static storage, so a thread that read the pointer just
 * before shutdown still reads valid memory (its state says "gone"). */
static isola__vm vm_storage;
static pthread_mutex_t life_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t vm_generations;

#define DEFAULT_IDLE_TIMEOUT_MS 10000u
#define DEFAULT_SHUTDOWN_GRACE_MS 5000u

void isola_config_init(isola_config *config) {
  if (config) memset(config, 0, sizeof *config);
}

void isola__trace_write(isola__vm *vm, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfprintf(vm->trace, fmt, ap);
  va_end(ap);
}

/* A plain thread that used the VM exits: give its epoch record back.  The
 * lock and the check keep this from touching a record that a shutdown
 * running at the same time has already freed (the record belongs to the VM
 * generation stored beside it in this thread's own TLS). */
static void thread_rec_release(void *rec) {
  pthread_mutex_lock(&life_lock);
  isola__vm *vm = isola__vm_get();
  if (vm && isola__t.rec == rec && isola__t.rec_vm_gen == vm->gen)
    isola__epoch_unregister(rec);
  isola__t.rec = NULL;
  isola__t.tstats = &isola__tstats_sink;
  pthread_mutex_unlock(&life_lock);
}

isola__epoch_rec *isola__vm_thread_rec(isola__vm *vm) {
  if (isola__t.rec && isola__t.rec_vm_gen == vm->gen) {
    /* (Again: a thread that was a root thread of this VM left the sink.) */
    isola__t.tstats = &isola__t.rec->stats;
    return isola__t.rec;
  }
  isola__epoch_rec *rec = isola__epoch_register(&vm->epoch);
  if (!rec) return NULL;
  isola__t.rec = rec;
  isola__t.rec_vm_gen = vm->gen;
  isola__t.tstats = &rec->stats;
  /* Give the record back when the thread exits. */
  pthread_setspecific(vm->thread_key, rec);
  return rec;
}

int isola__vm_enter_slow(isola__call *c) {
  c->counted = c->online = false;
  c->rec = NULL;
  isola__thread *t = isola__t.thread;
  if (!t) {
    /* seq_cst: with shutdown's seq_cst store of the state and its seq_cst
     * wait for the count, either we see it shutting down or it sees us. */
    atomic_fetch_add_explicit(&isola__outside_callers, 1,
                              memory_order_seq_cst);
    c->counted = true;
  }
  isola__vm *vm = c->vm = isola__vm_get();
  int rc = ISOLA_OK;
  if (!vm)
    rc = ISOLA_ENOVM;
  else if (atomic_load_explicit(&vm->state, memory_order_seq_cst) !=
           ISOLA__VM_RUNNING)
    rc = ISOLA_ESHUTDOWN;
  else if (t)
    c->rec = t->online ? NULL : t->rec;
  else if (!(c->rec = isola__vm_thread_rec(vm)))
    rc = ISOLA_ENOMEM;
  if (rc != ISOLA_OK) {
    isola__vm_leave_slow(c);
    return rc;
  }
  /* Entries nest: a call made inside another call on this thread (a hook
   * that calls the API while a spawn runs it) finds the record online and
   * leaves it so; only the outermost entry takes it offline again.  The
   * record is this thread's: a relaxed load of its own store. */
  if (c->rec &&
      atomic_load_explicit(&c->rec->epoch, memory_order_relaxed) == 0) {
    isola__epoch_online(&vm->epoch, c->rec);
    c->online = true;
  }
  return ISOLA_OK;
}

void isola__vm_leave_slow(isola__call *c) {
  if (c->online) isola__epoch_offline(c->rec);
  c->online = false;
  /* Release: what this call did happens before a shutdown that sees the
   * count drop. */
  if (c->counted)
    atomic_fetch_sub_explicit(&isola__outside_callers, 1,
                              memory_order_release);
  c->counted = false;
}

void isola__vm_isolate_ended(isola__vm *vm) {
  if (atomic_fetch_sub_explicit(&vm->live, 1, memory_order_acq_rel) == 1) {
    /* Taking the lock orders this with a shutdown that checked live under
     * it and is about to wait: it then gets the broadcast. */
    pthread_mutex_lock(&vm->live_lock);
    pthread_cond_broadcast(&vm->live_cv);
    pthread_mutex_unlock(&vm->live_lock);
  }
}

size_t isola_live_isolates(void) {
  isola__vm *vm = isola__vm_get();
  return vm ? atomic_load_explicit(&vm->live, memory_order_relaxed) : 0;
}

int isola_vm_init(const isola_config *config) {
  isola_config cfg;
  if (config)
    cfg = *config;
  else
    isola_config_init(&cfg);
  if (cfg.workers > 1024) return ISOLA_EINVAL;
  if (!cfg.workers) cfg.workers = isola__plat_ncpu();
  if (!cfg.idle_timeout_ms) cfg.idle_timeout_ms = DEFAULT_IDLE_TIMEOUT_MS;
  if (!cfg.shutdown_grace_ms) cfg.shutdown_grace_ms = DEFAULT_SHUTDOWN_GRACE_MS;

  pthread_mutex_lock(&life_lock);
  if (atomic_load(&isola__the_vm) ||
      atomic_load(&vm_storage.state) != 0) {
    pthread_mutex_unlock(&life_lock);
    return ISOLA_EEXIST;
  }
  isola__vm *vm = &vm_storage;
  vm->config = cfg;
  vm->trace = cfg.trace_file ? cfg.trace_file : stderr;
  vm->gen = ++vm_generations;
  atomic_store(&vm->live, 0);
  atomic_store(&vm->next_group, 1);
  int rc = isola__port_map_init(&vm->ports);
  if (rc != ISOLA_OK) goto fail_ports;
  isola__epoch_init(&vm->epoch, isola__mh_free_isolate);
  if ((rc = isola__sched_init(&vm->sched, cfg.workers,
                              cfg.idle_timeout_ms)) != ISOLA_OK)
    goto fail_sched;
  pthread_mutex_init(&vm->live_lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&vm->live_cv, &ca);
  pthread_condattr_destroy(&ca);
  if (pthread_key_create(&vm->thread_key, thread_rec_release) != 0) {
    rc = ISOLA_ESYS;
    goto fail_key;
  }
  isola__names_init(&vm->names);
  isola__timers_init(&vm->timers);
  vm->tracing = cfg.trace_events_path != NULL;
  isola__tracer_init(&vm->tracer, cfg.trace_events_per_thread);
  atomic_store(&vm->state, ISOLA__VM_RUNNING);
  atomic_store_explicit(&isola__the_vm, vm, memory_order_release);
  if ((rc = isola__sched_start(&vm->sched)) != ISOLA_OK) {
    atomic_store(&vm->state, ISOLA__VM_SHUTTING_DOWN);
    isola__sched_stop(&vm->sched);
    atomic_store(&isola__the_vm, NULL);
    atomic_store(&vm->state, 0);
    pthread_key_delete(vm->thread_key);
    isola__epoch_destroy(&vm->epoch);
    isola__port_map_destroy(&vm->ports);
    isola__names_destroy(&vm->names);
    isola__timers_destroy(&vm->timers);
    isola__tracer_destroy(vm, NULL);
    pthread_cond_destroy(&vm->live_cv);
    pthread_mutex_destroy(&vm->live_lock);
    pthread_mutex_unlock(&life_lock);
    return rc;
  }
  pthread_mutex_unlock(&life_lock);
  return ISOLA_OK;

fail_key:
  pthread_cond_destroy(&vm->live_cv);
  pthread_mutex_destroy(&vm->live_lock);
  free(vm->sched.workers);
  pthread_mutex_destroy(&vm->sched.gq_lock);
  pthread_mutex_destroy(&vm->sched.lock);
fail_sched:
  isola__epoch_destroy(&vm->epoch);
  isola__port_map_destroy(&vm->ports);
fail_ports:
  pthread_mutex_unlock(&life_lock);
  return rc;
}

/* Asks one live isolate to end. */
static void kill_one(isola__isolate *iso, void *arg) {
  isola__vm *vm = arg;
  /* seq_cst pairs with the message handler's check after marking itself
   * idle: either it sees the flag or we see the mark and schedule it. */
  atomic_store_explicit(&iso->kill_requested, true, memory_order_seq_cst);
  if (isola__mq_poke(&iso->head)) isola__sched_ready(&vm->sched, iso);
}

/* Asks every live isolate to end: the live isolates are the owners of the
 * open control ports.  The calling thread comes online for the scan. */
static void kill_all(isola__vm *vm, isola__epoch_rec *rec) {
  isola__epoch_online(&vm->epoch, rec);
  isola__port_map_each_isolate(&vm->ports, kill_one, vm);
  isola__epoch_offline(rec);
}

static void append(isola_shutdown_report *r, size_t *len, const char *fmt,
                   ...) {
  if (*len >= sizeof r->text - 1) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(r->text + *len, sizeof r->text - *len, fmt, ap);
  va_end(ap);
  if (n > 0) *len += (size_t)n;
  if (*len > sizeof r->text - 1) *len = sizeof r->text - 1;
}

typedef struct report_ctx {
  isola__vm *vm;
  isola_shutdown_report *r;
  size_t len;
} report_ctx;

/* Names one isolate still alive.  It may be half built (a spawn that
 * entered before the shutdown): its builder stores iso->control_port after
 * the port is published (isolate.c), and nothing orders that store before
 * a read here.  So only what the builder wrote before the publication (the
 * name, ordered by the scan's acquire of the port's id) and atomics are
 * read: the control port's id comes from its slot, found on the isolate's
 * port list.  That list belongs to the thread running the isolate: it is
 * read with relaxed atomic loads, walked at most as many steps as the map
 * has slots (a list that changes meanwhile may lead elsewhere), and at
 * most 8 live ports are listed. */
static void report_one(isola__isolate *iso, void *arg) {
  report_ctx *c = arg;
  uint64_t control = 0, live[8];
  unsigned nlive = 0;
  uint32_t steps = atomic_load_explicit(&c->vm->ports.high,
                                        memory_order_relaxed);
  for (uint32_t idx = isola__ld32(&iso->ports); idx && steps; steps--) {
    isola__port_slot *s = isola__port_at(&c->vm->ports, idx);
    uint64_t id = atomic_load_explicit(&s->id, memory_order_relaxed);
    int state = atomic_load_explicit(&s->state, memory_order_relaxed);
    if (id && state == ISOLA__PORT_CONTROL && !control &&
        atomic_load_explicit(&s->owner, memory_order_relaxed) == iso)
      control = id;
    else if (id && state == ISOLA__PORT_LIVE && nlive < 8)
      live[nlive++] = id;
    if (control && nlive == 8) break;
    idx = isola__ld32(&s->next);
  }
  c->r->stuck++;
  append(c->r, &c->len,
         "isolate '%s' (control port %016llx) did not end; %u live port(s):",
         isola__isolate_name(iso), (unsigned long long)control,
         (unsigned)isola__ld32(&iso->live_ports));
  for (unsigned i = 0; i < nlive; i++)
    append(c->r, &c->len, " %016llx", (unsigned long long)live[i]);
  append(c->r, &c->len, "\n");
}

int isola_vm_shutdown(isola_shutdown_report *report) {
  if (isola__t.current || isola__t.thread) return ISOLA_EBUSY;
  pthread_mutex_lock(&life_lock);
  isola__vm *vm = isola__vm_get();
  if (!vm) {
    pthread_mutex_unlock(&life_lock);
    return ISOLA_ENOVM;
  }
  atomic_store_explicit(&vm->state, ISOLA__VM_SHUTTING_DOWN,
                        memory_order_seq_cst);

  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  uint64_t ns = (uint64_t)deadline.tv_nsec +
                (uint64_t)vm->config.shutdown_grace_ms * 1000000u;
  deadline.tv_sec += (time_t)(ns / 1000000000u);
  deadline.tv_nsec = (long)(ns % 1000000000u);

  isola__epoch_rec *rec = isola__vm_thread_rec(vm);
  if (!rec) {
    pthread_mutex_unlock(&life_lock);
    return ISOLA_ENOMEM;
  }
  /* Kill, then wait.  A spawn that passed its state check just before we
   * set the state can still add an isolate after a scan, so scan again
   * every 10 ms until none is left or the grace period is over.  "None is
   * left" needs both counts at zero: a plain thread inside a call (a spawn
   * or isola_run_main that entered before the state changed) may still
   * add one, and a root thread holds the count until its isolate ended. */
  for (;;) {
    kill_all(vm, rec);
    ISOLA__TEST_HOOK(ISOLA__HOOK_SHUTDOWN_SCANNED);
    struct timespec step;
    clock_gettime(CLOCK_MONOTONIC, &step);
    uint64_t sn = (uint64_t)step.tv_nsec + 10000000u;
    step.tv_sec += (time_t)(sn / 1000000000u);
    step.tv_nsec = (long)(sn % 1000000000u);
    bool past = step.tv_sec > deadline.tv_sec ||
                (step.tv_sec == deadline.tv_sec &&
                 step.tv_nsec >= deadline.tv_nsec);
    if (past) step = deadline;
    pthread_mutex_lock(&vm->live_lock);
    while (atomic_load(&vm->live) > 0 &&
           pthread_cond_timedwait(&vm->live_cv, &vm->live_lock, &step) !=
               ETIMEDOUT) {
    }
    pthread_mutex_unlock(&vm->live_lock);
    if (atomic_load(&vm->live) == 0 &&
        atomic_load_explicit(&isola__outside_callers, memory_order_seq_cst) ==
            0)
      break;
    if (atomic_load(&vm->live) == 0 && !past) {
      /* Only callers left: they finish (or spawn) in moments. */
      isola__plat_yield();
      continue;
    }
    if (past) {
      if (report) {
        report_ctx c = {vm, report, 0};
        report->stuck = 0;
        report->text[0] = '\0';
        isola__epoch_online(&vm->epoch, rec);
        isola__port_map_each_isolate(&vm->ports, report_one, &c);
        isola__epoch_offline(rec);
        if (c.r->stuck == 0)
          append(report, &c.len,
                 "a call into the VM from a thread that is not an isolate "
                 "did not return\n");
      }
      pthread_mutex_unlock(&life_lock);
      return ISOLA_ETIMEDOUT;
    }
  }
  if (report) {
    report->stuck = 0;
    report->text[0] = '\0';
  }

  /* Threads that are not isolates and came in after the loop's last look
   * see the state and fail fast.  seq_cst pairs with isola_vm_snapshot()'s
   * count then state check. */
  atomic_store_explicit(&vm->state, ISOLA__VM_TEARDOWN, memory_order_seq_cst);
  while (atomic_load_explicit(&isola__outside_callers, memory_order_seq_cst))
    isola__plat_yield();
  isola__native_destroy_all();
  /* No isolate is left, so no timer: the timer thread can go. */
  isola__timers_destroy(&vm->timers);
  isola__sched_stop(&vm->sched);
  /* Every thread that records has stopped (pool threads joined, root
   * isolates' threads gone): write the trace, free the buffers. */
  isola__tracer_destroy(vm, vm->tracing ? vm->config.trace_events_path
                                        : NULL);

  atomic_store_explicit(&isola__the_vm, NULL, memory_order_seq_cst);
  pthread_key_delete(vm->thread_key);
  isola__epoch_destroy(&vm->epoch);
  isola__port_map_destroy(&vm->ports);
  isola__names_destroy(&vm->names);
  isola__pool_destroy();
  pthread_cond_destroy(&vm->live_cv);
  pthread_mutex_destroy(&vm->live_lock);
  atomic_store(&vm->state, 0);
  pthread_mutex_unlock(&life_lock);
  return ISOLA_OK;
}
