/* SPDX-License-Identifier: MIT */
/* isolate.c — spawn, the root isolate, ports and sends: the public isolate
 * API on top of the port map, the message handler and the scheduler. */
#include "isolate.h"

#include <stdlib.h>
#include <string.h>

#include "backpressure.h"
#include "control.h"
#include "detail.h"
#include "epoch.h"
#include "heap.h"
#include "lifecycle.h"
#include "turn.h"
#include "message_queue.h"
#include "module.h"
#include "name_server.h"
#include "platform.h"
#include "pool.h"
#include "port_map.h"
#include "scheduler.h"
#include "stats.h"
#include "event_handler.h"
#include "value.h"
#include "vm.h"

/* ---- ports ------------------------------------------------------------- */

void isola__port_close(isola__vm *vm, isola__port_slot *s) {
  isola_port id = isola__port_unpublish(&vm->ports, s);
  if (ISOLA__UNLIKELY(atomic_load_explicit(&s->named, memory_order_relaxed)))
    isola__names_port_closed(&vm->names, s, id);
  isola__port_release(&vm->ports, s);
}

int isola_port_open(isola_handler handler, void *ctx, isola_port *out) {
  if (!handler || !out) return ISOLA_EINVAL;
  isola__isolate *iso;
  int rc = isola__life_opening(&iso);
  if (rc != ISOLA_OK) return rc;
  isola__vm *vm = isola__vm_get();
  return isola__port_open(&vm->ports, iso, ISOLA__PORT_LIVE, handler, ctx,
                          out);
}

/* How many of the running isolate's newest ports own_slot() compares
 * before it decodes the id. */
#define OWN_SLOT_TRIES 2

/* The slot of an open port of the running isolate, or an error.  A port is
 * most often closed soon after it was opened (a reply port, a stop), when
 * its id has left this thread's memo: the isolate's newest ports, at the
 * head of its list, are compared first, which costs a load of the slot the
 * close touches anyway; only then is the id decoded. */
static int own_slot(isola_port port, isola__port_slot **out) {
  isola__isolate *iso = isola__t.current;
  if (!iso) return ISOLA_ENOTISOLATE;
  isola__vm *vm = isola__vm_get();
  isola__port_slot *s = NULL;
  /* The list and its slots' ids change only on this thread; an open
   * port's id is never ISOLA_PORT_NONE. */
  uint32_t ix = isola__ld32(&iso->ports);
  for (int i = 0; ix && i < OWN_SLOT_TRIES; i++) {
    isola__port_slot *t = isola__port_at(&vm->ports, ix);
    if (atomic_load_explicit(&t->id, memory_order_relaxed) == port) {
      s = t;
      break;
    }
    ix = isola__ld32(&t->next);
  }
  if (!s && !(s = isola__port_slot_of(&vm->ports, port))) return ISOLA_ECLOSED;
  if (atomic_load_explicit(&s->owner, memory_order_relaxed) != iso)
    return ISOLA_ENOTOWNER;
  if (atomic_load_explicit(&s->state, memory_order_relaxed) ==
      ISOLA__PORT_CONTROL)
    return ISOLA_EINVAL;
  *out = s;
  return ISOLA_OK;
}

int isola_port_close(isola_port port) {
  isola__port_slot *s;
  int rc = own_slot(port, &s);
  if (rc != ISOLA_OK) return rc;
  isola__port_close(isola__vm_get(), s);
  return ISOLA_OK;
}

int isola_port_keep_alive(isola_port port, bool keep_alive) {
  isola__port_slot *s;
  int rc = own_slot(port, &s);
  if (rc != ISOLA_OK) return rc;
  isola__isolate *iso = isola__t.current;
  uint8_t st = atomic_load_explicit(&s->state, memory_order_relaxed);
  uint8_t want = keep_alive ? ISOLA__PORT_LIVE : ISOLA__PORT_INACTIVE;
  if (st != want) {
    atomic_store_explicit(&s->state, want, memory_order_relaxed);
    uint32_t live = isola__ld32(&iso->live_ports);
    isola__st32(&iso->live_ports, keep_alive ? live + 1 : live - 1);
  }
  return ISOLA_OK;
}

/* ---- spawning ---------------------------------------------------------- */

/* A new group; it owns module (may be NULL) once this succeeds. */
static isola__group *group_new(isola__vm *vm, isola__module *module) {
  isola__group *g = malloc(sizeof *g);
  if (!g) return NULL;
  g->id = atomic_fetch_add_explicit(&vm->next_group, 1, memory_order_relaxed);
  g->data = NULL;
  atomic_init(&g->isolates, 0);
  g->module = module;
  atomic_init(&g->exit_code, 0);
  if (vm->config.hooks.group_created)
    g->data = vm->config.hooks.group_created(vm->config.hooks.data, g->id);
  return g;
}

static void group_release(isola__vm *vm, isola__group *g);

/* A new group whose isolate could not be built: cleaned up as usual, but
 * its module stays the caller's. */
static void group_discard(isola__vm *vm, isola__group *g) {
  g->module = NULL;
  atomic_store_explicit(&g->isolates, 1, memory_order_relaxed);
  group_release(vm, g);
}

static void group_release(isola__vm *vm, isola__group *g) {
  if (atomic_fetch_sub_explicit(&g->isolates, 1, memory_order_acq_rel) != 1)
    return;
  if (vm->config.hooks.group_cleanup)
    vm->config.hooks.group_cleanup(vm->config.hooks.data, g->id, g->data);
  /* Last: no isolate of the group runs, and the hook may still have
   * wanted the module's code or data. */
  isola__module_unload(g->module);
  free(g);
}

int isola__isolate_set_name(isola__isolate *iso, const char *name) {
  size_t n = name ? strlen(name) : 0;
  if (n > ISOLA__NAME_MAX) n = ISOLA__NAME_MAX;
  if (n < sizeof iso->name) {
    memcpy(iso->name, name ? name : "", n);
    memset(iso->name + n, 0, sizeof iso->name - n);
    return ISOLA_OK;
  }
  char *p = malloc(n + 1);
  if (!p) return ISOLA_ENOMEM;
  memcpy(p, name, n);
  p[n] = '\0';
  memcpy(iso->name, &p, sizeof p);
  iso->name[15] = 1;
  return ISOLA_OK;
}

/* Spawn credits.  The VM's live count and a group's member count are
 * shared words that every spawn and every end change; an event that
 * spawns several isolates (a tree, a pool of workers) takes them CREDITS
 * at a time and hands out the rest locally, and what it did not use goes
 * back when the event ends.  The counts run ahead by at most that much
 * while the event runs, and can reach zero only after it ended: the
 * spawning isolate is live and a member itself.  Not with a limit on live
 * isolates, which needs the exact count. */
#define CREDITS 8

static bool take_credits(isola__vm *vm) {
  isola__isolate *self = isola__t.current;
  return self && self->unwind && vm->config.max_isolates == 0;
}

void isola__spawn_credits_return(isola__vm *vm) {
  isola__tls *t = &isola__t;
  if (t->sp_live) {
    atomic_fetch_sub_explicit(&vm->live, t->sp_live, memory_order_relaxed);
    t->sp_live = 0;
  }
  if (t->sp_members) {
    atomic_fetch_sub_explicit(&t->sp_group->isolates, t->sp_members,
                              memory_order_relaxed);
    t->sp_members = 0;
  }
  t->sp_group = NULL;
}

/* Counts one more member of g. */
static void member_add(isola__group *g, bool credits) {
  isola__tls *t = &isola__t;
  if (!credits) {
    atomic_fetch_add_explicit(&g->isolates, 1, memory_order_relaxed);
    return;
  }
  if (t->sp_group != g) {
    if (t->sp_members) {
      atomic_fetch_sub_explicit(&t->sp_group->isolates, t->sp_members,
                                memory_order_relaxed);
      t->sp_members = 0;
    }
    t->sp_group = g;
  }
  if (t->sp_members == 0) {
    atomic_fetch_add_explicit(&g->isolates, CREDITS, memory_order_relaxed);
    t->sp_members = CREDITS;
  }
  t->sp_members--;
}

/* Builds an isolate that is not yet runnable: its control port is open and
 * its START message built.  On error nothing is left behind. */
static int isolate_new(isola__vm *vm, isola_entry entry, isola_value message,
                       const isola_spawn_options *opts, const char *name,
                       bool pinned, struct isola__run *run,
                       isola__module *module, const isola__first_port *fp,
                       isola__isolate **out) {
  ISOLA__TEST_HOOK(ISOLA__HOOK_SPAWN_ENTERED);
  size_t max = vm->config.max_isolates;
  bool credits = take_credits(vm);
  if (credits) {
    if (isola__t.sp_live == 0) {
      atomic_fetch_add_explicit(&vm->live, CREDITS, memory_order_relaxed);
      isola__t.sp_live = CREDITS;
    }
    isola__t.sp_live--;
  } else {
    size_t live =
        atomic_fetch_add_explicit(&vm->live, 1, memory_order_relaxed);
    if (max && live >= max) {
      atomic_fetch_sub_explicit(&vm->live, 1, memory_order_relaxed);
      return ISOLA_ELIMIT;
    }
  }
  int rc = ISOLA_ENOMEM;
  isola__msg *start = NULL;
  uint8_t cls;
  /* With isolate stats, its counters follow it in the same block. */
  bool stats = vm->config.isolate_stats;
  isola__isolate *iso = isola__pool_alloc(
      sizeof *iso + (stats ? sizeof(struct isola__istats) : 0), &cls);
  if (!iso) goto fail;
  memset(iso, 0, sizeof *iso);
  iso->pool_class = cls;
  if (stats) {
    iso->has_stats = true;
    isola__istats_init(isola__iso_stats(iso));
  }
  iso->observed = stats || vm->tracing;
  atomic_init(&iso->sentinel.next, NULL);
  atomic_init(&iso->oob_sentinel.next, NULL);
  /* Claimed by its builder (the scheduling bit clear) from the start:
   * once its control port is open a kill or a request finds it, but only
   * queues; nothing can schedule it before the spawn completes it
   * (isola__life_publish). */
  atomic_init(&iso->head, (uintptr_t)&iso->sentinel);
  atomic_init(&iso->oob_head, &iso->oob_sentinel);
  atomic_init(&iso->kill_requested, false);
  iso->tail = &iso->sentinel;
  iso->oob_tail = &iso->oob_sentinel;
  iso->entry = entry;
  iso->state = ISOLA__ISO_NEW;
  iso->pinned = pinned;
  atomic_init(&iso->pin_wake, 0);
  atomic_init(&iso->pin_sleeping, 0);
  if ((rc = isola__isolate_set_name(iso, name)) != ISOLA_OK) goto fail;
  if ((rc = isola__msg_new(message, &start)) != ISOLA_OK) goto fail;
  start->type = ISOLA__MSG_START;
  isola__tls *t = &isola__t;
  if (!t->rng.seeded && isola__rng_seed(&t->rng) != 0) {
    rc = ISOLA_ESYS;
    goto fail;
  }
  /* 0 is never a capability: a restricted handle holds 0. */
  do iso->pause_cap = isola__rng_next(&t->rng);
  while (iso->pause_cap == 0);
  do iso->terminate_cap = isola__rng_next(&t->rng);
  while (iso->terminate_cap == 0 || iso->terminate_cap == iso->pause_cap);
  if ((rc = isola__heap_init(vm, iso, opts)) != ISOLA_OK) goto fail;
  if ((rc = isola__control_init(vm, iso, opts, run)) != ISOLA_OK) goto fail;
  if (opts && (opts->mailbox_bound || opts->mailbox_bound_bytes) &&
      (rc = isola__bp_set(vm, iso, opts->mailbox_bound,
                          opts->mailbox_bound_bytes)) != ISOLA_OK)
    goto fail;
  /* isola__t directly, not through t: gcc's UBSan null check of a TLS
   * address computed with "add x@gottpoff(%rip)" tests flags that the
   * linker's relaxation of that add into lea no longer sets, and aborts
   * with a false "null pointer" report. */
  /* A module starts a group of its own, even when spawned from an
   * isolate; on success the group owns it. */
  isola__isolate *parent = module ? NULL : isola__t.current;
  isola__group *g = parent ? parent->group : group_new(vm, module);
  if (!g) {
    rc = ISOLA_ENOMEM;
    goto fail;
  }
  /* A receive port opened for the isolate before it first runs
   * (isola_spawn_port): its id is handed out only when the spawn returns,
   * so nothing is sent to it before START is queued. */
  isola_port first = ISOLA_PORT_NONE;
  if (fp) {
    rc = isola__port_open(&vm->ports, iso, ISOLA__PORT_LIVE, fp->handler,
                          fp->ctx, &first);
    if (rc != ISOLA_OK) {
      if (!parent) group_discard(vm, g);
      goto fail;
    }
  }
  /* The control port last: once it is open, shutdown's scan and control
   * requests find the isolate (they only queue: its builder holds the
   * claim), so nothing may fail after it. */
  rc = isola__port_open(&vm->ports, iso, ISOLA__PORT_CONTROL, NULL, NULL,
                        &iso->control_port);
  if (rc != ISOLA_OK) {
    if (first) isola__port_close(vm, isola__port_slot_of(&vm->ports, first));
    if (!parent) group_discard(vm, g);
    goto fail;
  }
  ISOLA__TEST_HOOK(ISOLA__HOOK_SPAWN_VISIBLE);
  start->dest = iso->control_port;
  iso->group = g;
  const uint64_t origin =
      parent ? atomic_load_explicit(&parent->origin, memory_order_relaxed)
             : iso->control_port;
  atomic_store_explicit(&iso->origin, origin, memory_order_relaxed);
  /* Credits only for the spawner's own group (a module's new group is
   * counted exactly). */
  member_add(iso->group, credits && parent);
  if (fp) *fp->out = first;
  if (iso->has_stats)
    atomic_store_explicit(&isola__iso_stats(iso)->group, iso->group->id,
                          memory_order_relaxed);
  ISOLA__STATS_COUNT(vm, spawned);
  if (ISOLA__UNLIKELY(vm->tracing))
    isola__trace_event(vm, ISOLA__TEV_SPAWN, iso, 0, 0);
  ISOLA__PROBE3(spawn, iso->control_port, origin,
                isola__isolate_name(iso));
  /* Queue the START message (the normal queue is empty: only the control
   * port is open), still claimed: the caller decides when the isolate
   * becomes runnable (isola__life_publish). */
  atomic_store_explicit(&start->node.next, NULL, memory_order_relaxed);
  isola__mq_push(&iso->head, &start->node);
  *out = iso;
  return ISOLA_OK;

fail:
  if (start) isola__msg_free(start);
  if (iso) {
    isola__control_discard(iso);
    isola__ext_free(iso);
    isola__isolate_name_free(iso);
    isola__pool_free(iso, iso->pool_class);
  }
  if (credits)
    isola__t.sp_live++; /* the credit goes back to the event */
  else
    atomic_fetch_sub_explicit(&vm->live, 1, memory_order_relaxed);
  return rc;
}

static void handle_of(const isola__isolate *iso, isola_isolate *out) {
  out->control_port = iso->control_port;
  out->pause_capability = iso->pause_cap;
  out->terminate_capability = iso->terminate_cap;
}

static int spawn(isola_entry entry, isola_value message,
                 const isola_spawn_options *opts, struct isola__run *run,
                 isola__module *module, const isola__first_port *fp,
                 isola_isolate *out) {
  isola__call e;
  int rc = isola__vm_enter(&e);
  if (rc != ISOLA_OK) {
    isola__detail_set("isola_spawn: %s", isola_strerror(rc));
    return rc;
  }
  isola__vm *vm = e.vm;
  isola__isolate *iso = NULL;
  /* What the spawning event sent goes before anything the child sends. */
  isola__outbox_flush(vm);
  rc = isolate_new(vm, entry, message, opts, opts ? opts->name : NULL, false,
                   run, module, fp, &iso);
  if (rc == ISOLA_ELIMIT)
    isola__detail_set("isola_spawn: %zu isolates are live, the limit "
                      "(isola_config.max_isolates)",
                      vm->config.max_isolates);
  else if (rc != ISOLA_OK && rc != ISOLA_EINVAL && rc != ISOLA_ETRANSFER)
    isola__detail_set("isola_spawn: %s", isola_strerror(rc));
  if (rc == ISOLA_OK) {
    if (out) handle_of(iso, out);
    /* Complete: schedule it (its builder holds the claim). */
    isola__life_publish(iso);
    isola__sched_ready(&vm->sched, iso);
  }
  isola__vm_leave(&e);
  ISOLA__DET_POINT(ISOLA__DET_SPAWN);
  return rc;
}

int isola_spawn(isola_entry entry, isola_value message,
                const isola_spawn_options *opts, isola_isolate *out) {
  if (!entry) {
    isola__detail_set("isola_spawn: entry is NULL");
    return ISOLA_EINVAL;
  }
  return spawn(entry, message, opts, NULL, NULL, NULL, out);
}

int isola__spawn_run(isola_entry entry, isola_value message,
                     const isola_spawn_options *opts, struct isola__run *run) {
  return spawn(entry, message, opts, run, NULL, NULL, NULL);
}

int isola__spawn_ex(isola_entry entry, isola_value message,
                    const isola_spawn_options *opts, struct isola__run *run,
                    const isola__first_port *fp, isola_isolate *out) {
  return spawn(entry, message, opts, run, NULL, fp, out);
}

/* A root thread's source of turns for the unwind driver: its one isolate,
 * again after each turn until it is dead, sleeping while it is idle. */
typedef struct root_drive {
  isola__vm *vm;
  isola__thread *t;
  isola__isolate *iso;
} root_drive;

static isola__isolate *root_next(void *arg, isola__isolate *prev,
                                 isola__turn r) {
  root_drive *d = arg;
  if (!prev) return d->iso;
  if (r == ISOLA__TURN_DEAD) return NULL;
  if (r == ISOLA__TURN_IDLE)
    isola__sched_wait_pinned(&d->vm->sched, d->t, d->iso);
  return d->iso;
}

static void root_loop(isola__vm *vm, void *arg, jmp_buf *jb,
                      isola__isolate *iso, isola__turn r) {
  isola__mh_turns(vm, jb, iso, r, root_next, arg);
}

/* isola_run_main, and isola_run_main_uri with a module: then the module is
 * the new group's once this succeeds (on error it stays the caller's) and
 * *exit_code gets the group's exit code. */
static int run_main(isola_entry entry, isola_value message, const char *name,
                    const isola_spawn_options *ropts, isola__module *module,
                    int *exit_code) {
  isola__call e;
  int rc = isola__vm_enter(&e);
  if (rc != ISOLA_OK) return rc;
  isola__vm *vm = e.vm;
  isola__thread *t = calloc(1, sizeof *t);
  isola__isolate *iso = NULL;
  if (!t) {
    rc = ISOLA_ENOMEM;
  } else {
    rc = isolate_new(vm, entry, message, ropts, name ? name : "main", true,
                     NULL, module, NULL, &iso);
  }
  if (rc != ISOLA_OK) {
    free(t);
    isola__vm_leave(&e);
    return rc;
  }
  /* A module group is held as one more member until the exit code is
   * read: isolates the root spawned may end (and free the group) after
   * the root has. */
  isola__group *const held = iso->group->module ? iso->group : NULL;
  if (held)
    atomic_fetch_add_explicit(&held->isolates, 1, memory_order_relaxed);
  /* From here this thread is the isolate's: the VM outlives it (shutdown
   * waits for every isolate), so it leaves the outside callers. */
  t->pinned = true;
  t->rec = e.rec;
  t->online = true;
  isola__t.thread = t;
  isola__t.tstats = t->rec ? &t->rec->stats : &isola__tstats_sink;
  isola__pool_thread_start();
  /* The count of outside callers stays held until we return, so shutdown
   * frees nothing this thread still touches after its isolate ended. */
  e.online = false;

  /* The deterministic mode's baton is this thread's from now on only when
   * it is its turn (determ.h). */
  ISOLA__DET_ENTER();
  /* Complete: this thread holds its claim and runs its first turn. */
  isola__life_publish(iso);
  /* Its turns, under the unwind driver (message_handler.h). */
  root_drive d = {vm, t, iso};
  isola__mh_drive(vm, root_loop, &d);
  ISOLA__DET_LEAVE();
  isola__epoch_thread_exit(&vm->epoch);
  isola__epoch_offline(t->rec);
  isola__port_map_flush_cache(&vm->ports);
  isola__pool_thread_stop();
  isola__t.thread = NULL;
  isola__t.tstats = &isola__tstats_sink;
  free(t);
  if (held) {
    if (exit_code)
      *exit_code = atomic_load_explicit(&held->exit_code,
                                        memory_order_relaxed);
    group_release(vm, held);
  }
  isola__vm_leave(&e);
  return ISOLA_OK;
}

int isola__run_main_ex(isola_entry entry, isola_value message,
                       const isola_spawn_options *opts) {
  if (!entry) return ISOLA_EINVAL;
  if (isola__t.current || isola__t.thread) return ISOLA_EBUSY;
  return run_main(entry, message, opts ? opts->name : NULL, opts, NULL, NULL);
}

int isola_run_main(isola_entry entry, isola_value message, const char *name) {
  if (!entry) return ISOLA_EINVAL;
  if (isola__t.current || isola__t.thread) return ISOLA_EBUSY;
  return run_main(entry, message, name, NULL, NULL, NULL);
}

/* ---- modules ----------------------------------------------------------- */

int isola_spawn_uri(const char *path, isola_value args, isola_value message,
                    const isola_spawn_options *opts, isola_isolate *out) {
  isola__module *m;
  int rc = isola__module_load(path, &m);
  if (rc != ISOLA_OK) return rc;
  isola_value pair[2] = {args, message};
  rc = spawn(isola__module_entry, isola_list(pair, 2), opts, NULL, m, NULL,
             out);
  if (rc != ISOLA_OK) isola__module_unload(m);
  return rc;
}

int isola_run_main_uri(const char *path, isola_value args,
                       isola_value message, const char *name,
                       int *exit_code) {
  if (isola__t.current || isola__t.thread) return ISOLA_EBUSY;
  if (!isola__vm_get()) return ISOLA_ENOVM;
  isola__module *m;
  int rc = isola__module_load(path, &m);
  if (rc != ISOLA_OK) return rc;
  isola_value pair[2] = {args, message};
  rc = run_main(isola__module_entry, isola_list(pair, 2), name, NULL, m,
                exit_code);
  if (rc != ISOLA_OK) isola__module_unload(m);
  return rc;
}

int isola_set_exit_code(int code) {
  isola__isolate *iso = isola__t.current;
  if (!iso) return ISOLA_ENOTISOLATE;
  atomic_store_explicit(&iso->group->exit_code, code, memory_order_relaxed);
  return ISOLA_OK;
}

int isola_exit_code(void) {
  isola__isolate *iso = isola__t.current;
  return iso ? atomic_load_explicit(&iso->group->exit_code,
                                    memory_order_relaxed)
             : 0;
}

/* ---- ending ------------------------------------------------------------ */

void isola__isolate_end(isola__vm *vm, isola__isolate *iso) {
  /* From here nothing new is opened (lifecycle.h). */
  isola__life_move(iso, ISOLA__ISO_ENDING);
  /* Built for the hooks only (ended isolates are many). */
  isola_isolate_info info = {0};
  if (vm->config.hooks.isolate_shutdown || vm->config.hooks.isolate_cleanup)
    info = (isola_isolate_info){isola__isolate_name(iso), iso->control_port,
                                iso->origin, iso->group->id, iso->exit_reason};
  if (vm->config.hooks.isolate_shutdown)
    vm->config.hooks.isolate_shutdown(vm->config.hooks.data, &info);
  int reason = iso->exit_reason < ISOLA_EXIT_REASONS ? iso->exit_reason
                                                     : ISOLA_EXIT_NORMAL;
  ISOLA__STATS_COUNT(vm, ended[reason]);
  ISOLA__PROBE2(end, iso->control_port, reason);
  if (ISOLA__UNLIKELY(vm->tracing))
    isola__trace_event(vm, ISOLA__TEV_END, iso, 0, (uint32_t)reason);
  ISOLA__TURN_END(vm, iso, ISOLA_STATE_ENDING);
  isola__trace(vm, ISOLA_TRACE_ISOLATES,
               "isola: %.6f isolate '%s' (%016llx) ended: %s\n",
               (double)isola__plat_now_ns() / 1e9, isola__isolate_name(iso),
               (unsigned long long)iso->control_port,
               isola_exit_reason_name(reason));
  /* Its timers and watches go first: a tick or fd event already queued
   * finds none and is dropped. */
  isola__timers_cancel_all(vm, iso);
  /* Close every port: from now on no sender finds the isolate. */
  uint32_t p;
  while ((p = isola__ld32(&iso->ports)))
    isola__port_close(vm, isola__port_at(&vm->ports, p));
  /* Nobody stays muted on it or waits for it (backpressure.h); a bound
   * lives in the control state, so without one there is none. */
  if (iso->ctl) isola__bp_end(vm, iso);
  /* The isola_run outcome, then each exit listener, exactly once: the
   * control port is closed, so no request is handled after this.  These
   * go to listeners, not to the port it last sent to: no hint to try. */
  iso->send_hint = 0;
  isola__control_finish(vm, iso);
  /* Isolate-local destructors, then the heap returned at once; pending
   * microtasks are dropped. */
  isola__ext_end(iso);
  if (vm->config.hooks.isolate_cleanup)
    vm->config.hooks.isolate_cleanup(vm->config.hooks.data, &info);
  isola__group *g = iso->group;
  isola__life_move(iso, ISOLA__ISO_ENDED);
  isola__t.current = NULL;
  group_release(vm, g);
  /* The head keeps its scheduled bit clear for good, so no sender ever
   * schedules the dead isolate; messages that still arrive wait in its
   * queue until the reclaimer frees them with it. */
  isola__epoch_retire(&vm->epoch, iso);
  isola__vm_isolate_ended(vm);
}

/* ---- queries ----------------------------------------------------------- */

int isola_current(isola_isolate *out) {
  if (!out) return ISOLA_EINVAL;
  isola__isolate *iso = isola__t.current;
  if (!iso) return ISOLA_ENOTISOLATE;
  handle_of(iso, out);
  return ISOLA_OK;
}

int isola_current_info(isola_isolate_info *out) {
  if (!out) return ISOLA_EINVAL;
  isola__isolate *iso = isola__t.current;
  if (!iso) return ISOLA_ENOTISOLATE;
  out->name = isola__isolate_name(iso);
  out->control_port = iso->control_port;
  out->origin = iso->origin;
  out->group = iso->group->id;
  out->exit_reason = 0;
  return ISOLA_OK;
}

void *isola_group_data(void) {
  isola__isolate *iso = isola__t.current;
  return iso ? iso->group->data : NULL;
}

int isola_blocking_begin(void) {
  isola__thread *t = isola__t.thread;
  if (!isola__t.current || !t) return ISOLA_ENOTISOLATE;
  isola__vm *vm = isola__vm_get();
  isola__outbox_flush(vm); /* what it sent may be what it waits on */
  return isola__sched_blocking_begin(&vm->sched, t);
}

int isola_blocking_end(void) {
  isola__thread *t = isola__t.thread;
  if (!isola__t.current || !t) return ISOLA_ENOTISOLATE;
  if (t->blocking == 0) return ISOLA_EINVAL;
  isola__sched_blocking_end(&isola__vm_get()->sched, t);
  return ISOLA_OK;
}

int isola_set_mailbox_bound(size_t messages, size_t bytes) {
  isola__isolate *iso = isola__t.current;
  if (!iso) return ISOLA_ENOTISOLATE;
  return isola__bp_set(isola__vm_get(), iso, messages, bytes);
}
