/* SPDX-License-Identifier: MIT */
/*
 * native.c — native ports (Dart_NewNativePort): a port whose handler is a
 * plain C function run on the pool, one message at a time or concurrently.
 *
 * A native port is built from isolates, so it needs nothing new from the
 * scheduler or the port map.  A hidden "dispatcher" isolate owns the port.
 * One at a time: the dispatcher calls the handler itself.  Concurrently:
 * the caller also starts one hidden worker isolate per pool worker and the
 * dispatcher hands each message to the next in turn (one more copy), so up
 * to that many handlers run at once on different threads.
 *
 * The hidden isolates are spawned with errors non-fatal and no heap limit,
 * so neither a throwing handler nor a large message ends them.  A forward
 * that fails (out of memory, or a worker that ended: a handler called
 * isola_exit) goes to the next worker, and when none takes it the
 * dispatcher runs the handler itself: a message the port accepted is
 * handled.
 *
 * Closing posts a stop, built when the port was made (so closing needs no
 * memory), to the dispatcher, which forwards the workers' stops the same
 * way: each reaches its isolate after every message that was ahead of it.
 * A hidden isolate is done with the native port when an isolate-local
 * destructor of its own runs, at its end however it ends (stopped, killed
 * by shutdown, isola_exit), so the close waits for those and never for an
 * acknowledgement a dead isolate cannot send.  An isolate killed by
 * shutdown before its entry ran never touches the port: only isola_native_
 * port_new can meet one, and it then hands the port to shutdown, which
 * frees it once every isolate has ended.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "isolate.h"
#include "lifecycle.h"
#include "message_handler.h"
#include "vm.h"

typedef struct native native;

/* One hidden isolate of a native port: [0] the dispatcher, then the
 * workers. */
typedef struct hidden {
  native *n;
  isola_port port;         /* its receive port, once open */
  isola_port control;      /* its control port (the spawn handle) */
  isola__msg *stop;        /* its prebuilt stop until posted; under lock */
  _Atomic bool dead;       /* its destructor ran (the dispatcher skips it) */
} hidden;

struct native {
  isola_native_handler handler;
  void *ctx;
  bool concurrent;
  char name[ISOLA__NAME_MAX + 1];
  uint64_t gen;      /* the VM's generation */
  isola_port port;   /* the dispatcher's: the native port's id */
  unsigned nhidden;  /* 1 + workers */
  hidden *h;
  unsigned next;     /* the dispatcher's round robin */
  int64_t token;     /* the stop message: an unguessable int */
  /* Start-up and end handshakes, under lock. */
  pthread_mutex_t lock;
  pthread_cond_t cv;
  unsigned spawned;  /* hidden isolates spawned */
  unsigned reported; /* ... whose entry ran (port open or not) */
  unsigned ready;    /* ... whose port is open */
  unsigned holds;    /* ... whose destructor has not run yet */
  native *next_native; /* the registry */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static native *registry;
/* The VM generation whose shutdown freed the registry (under the lock):
 * a port handed over later is freed by the one handing it over. */
static uint64_t destroyed_gen;

static void broadcast_locked(native *n) { pthread_cond_broadcast(&n->cv); }

/* The runtime's stop: sent "from" the native port itself with a token
 * drawn from the CSPRNG, so no user message is taken for it. */
static bool is_stop(native *n, isola_value msg, isola_port reply_to) {
  return reply_to == n->port && msg.kind == ISOLA_INT && msg.as.i == n->token;
}

static isola__msg *take_stop(hidden *h) {
  native *n = h->n;
  pthread_mutex_lock(&n->lock);
  isola__msg *m = h->stop;
  h->stop = NULL;
  pthread_mutex_unlock(&n->lock);
  return m;
}

/* Posts the workers' stops not posted yet (a closed port frees its own). */
static void stop_workers(isola__vm *vm, native *n) {
  for (unsigned i = 1; i < n->nhidden; i++) {
    isola__msg *m = take_stop(&n->h[i]);
    if (m) isola__post(vm, m);
  }
}

/* ---- the hidden isolates ------------------------------------------------ */

/* Runs at the end of a hidden isolate that started, however it ends: it
 * gives up its hold on the native port (the last thing it does with it). */
static void hidden_end(void *value) {
  hidden *h = *(hidden **)value;
  if (!h) return;
  native *n = h->n;
  isola__vm *vm = isola__vm_get();
  /* A dispatcher that ends before it forwarded the stop (a handler's
   * isola_exit, shutdown) still stops the workers. */
  if (h == &n->h[0]) stop_workers(vm, n);
  isola__msg *own = take_stop(h);
  if (own) isola__msg_free(own);
  atomic_store_explicit(&h->dead, true, memory_order_relaxed);
  pthread_mutex_lock(&n->lock);
  n->holds--;
  broadcast_locked(n);
  pthread_mutex_unlock(&n->lock);
}

static ISOLA_LOCAL_INIT(hidden *, hidden_key, NULL, hidden_end);

static void worker_handler(void *ctx, isola_port port, isola_value msg,
                           isola_port reply_to) {
  hidden *h = ctx;
  native *n = h->n;
  if (is_stop(n, msg, reply_to)) {
    isola_port_close(port);
    return;
  }
  n->handler(n->ctx, n->port, msg, reply_to);
}

static void dispatcher_handler(void *ctx, isola_port port, isola_value msg,
                               isola_port reply_to) {
  hidden *h = ctx;
  native *n = h->n;
  if (is_stop(n, msg, reply_to)) {
    stop_workers(isola__vm_get(), n);
    isola_port_close(port);
    return;
  }
  if (n->concurrent) {
    /* The next worker still there; a forward that fails goes to the next
     * one, and when none takes it the handler runs here. */
    unsigned nw = n->nhidden - 1;
    for (unsigned tries = 0; tries < nw; tries++) {
      hidden *w = &n->h[1 + n->next++ % nw];
      if (atomic_load_explicit(&w->dead, memory_order_relaxed)) continue;
      int rc = isola_send_reply(w->port, msg, reply_to);
      if (rc == ISOLA_OK) return;
      if (rc != ISOLA_ECLOSED) break;
    }
  }
  n->handler(n->ctx, port, msg, reply_to);
}

static void hidden_entry(isola_value msg) {
  hidden *h = (hidden *)(intptr_t)msg.as.i;
  native *n = h->n;
  hidden **ref = isola_local_get(&hidden_key);
  isola_port p = ISOLA_PORT_NONE;
  bool ok = false;
  if (ref) {
    *ref = h; /* from here its end runs hidden_end */
    ok = isola_port_open(h == &n->h[0] ? dispatcher_handler : worker_handler,
                         h, &p) == ISOLA_OK;
  }
  pthread_mutex_lock(&n->lock);
  if (ref) n->holds++;
  if (ok) {
    h->port = p;
    if (h == &n->h[0]) n->port = p;
    n->ready++;
  }
  n->reported++;
  broadcast_locked(n);
  pthread_mutex_unlock(&n->lock);
}

/* ---- waiting ------------------------------------------------------------- */

static bool vm_running(native *n) {
  isola__vm *vm = isola__vm_get();
  return vm && vm->gen == n->gen &&
         atomic_load_explicit(&vm->state, memory_order_acquire) ==
             ISOLA__VM_RUNNING;
}

/* Waits until every spawned hidden isolate has reported (all: and given up
 * its hold), letting the pool run others meanwhile if the caller is an
 * isolate.  With give_up, returns false as soon as the VM stops running
 * (an isolate killed before its entry ran never reports); so it looks at
 * the VM every 10 ms. */
static bool wait_hidden(native *n, bool all, bool give_up) {
  bool in_isolate = isola__t.current != NULL;
  if (in_isolate) isola_blocking_begin();
  bool ok = true;
  pthread_mutex_lock(&n->lock);
  while (n->reported < n->spawned || (all && n->holds > 0)) {
    if (give_up && !vm_running(n)) {
      ok = false;
      break;
    }
    if (!give_up) {
      pthread_cond_wait(&n->cv, &n->lock);
      continue;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += 10000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&n->cv, &n->lock, &ts);
  }
  pthread_mutex_unlock(&n->lock);
  if (in_isolate) isola_blocking_end();
  return ok;
}

/* Frees n once none of its isolates uses it; free_msgs: the stops not
 * posted are freed too (the pool must be alive: shutdown's or an entered
 * caller's). */
static void native_free(native *n, bool free_msgs) {
  for (unsigned i = 0; i < n->nhidden; i++)
    if (free_msgs && n->h[i].stop) isola__msg_free(n->h[i].stop);
  pthread_mutex_destroy(&n->lock);
  pthread_cond_destroy(&n->cv);
  free(n->h);
  free(n);
}

/* A port whose start was cut short by shutdown: its isolates may still run
 * (or never run), so shutdown frees it once all have ended; if that
 * happened already, nothing of the VM is left to use it. */
static void hand_to_shutdown(native *n) {
  pthread_mutex_lock(&registry_lock);
  bool gone = destroyed_gen == n->gen;
  if (!gone) {
    n->port = ISOLA_PORT_NONE; /* no close finds it */
    n->next_native = registry;
    registry = n;
  }
  pthread_mutex_unlock(&registry_lock);
  if (gone) native_free(n, false); /* the stops went with the pool */
}

/* Stops the hidden isolates that opened their port (new's failure path);
 * the caller has entered the VM.  Every stop is addressed before any is
 * posted: the dispatcher forwards the workers' as soon as it has its own. */
static void stop_ready(isola__vm *vm, native *n) {
  pthread_mutex_lock(&n->lock);
  for (unsigned i = 0; i < n->nhidden; i++) {
    isola__msg *m = n->h[i].stop;
    if (m) {
      m->dest = n->h[i].port; /* NONE if it has none: the post frees it */
      m->reply_to = n->port;
    }
  }
  pthread_mutex_unlock(&n->lock);
  for (unsigned i = 0; i < n->nhidden; i++) {
    isola__msg *m = take_stop(&n->h[i]);
    if (m) isola__post(vm, m);
  }
}

/* ---- the API ------------------------------------------------------------- */

int isola_native_port_new(const char *name, isola_native_handler handler,
                          void *ctx, bool concurrent, isola_port *out) {
  if (!handler || !out) return ISOLA_EINVAL;
  int brc = isola__life_may_wait(); /* waits for its hidden isolates */
  if (brc != ISOLA_OK) return brc;
  isola__call e;
  int rc = isola__vm_enter(&e);
  if (rc != ISOLA_OK) return rc;
  isola__vm *vm = e.vm;
  native *n = calloc(1, sizeof *n);
  unsigned nh = 1 + (concurrent ? vm->config.workers : 0);
  if (!n || !(n->h = calloc(nh, sizeof *n->h))) {
    free(n);
    isola__vm_leave(&e);
    return ISOLA_ENOMEM;
  }
  n->handler = handler;
  n->ctx = ctx;
  n->concurrent = concurrent;
  n->gen = vm->gen;
  n->nhidden = nh;
  n->token = (int64_t)isola_capability_new();
  snprintf(n->name, sizeof n->name, "%s", name && *name ? name : "native");
  pthread_mutex_init(&n->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&n->cv, &ca);
  pthread_condattr_destroy(&ca);
  for (unsigned i = 0; i < nh && rc == ISOLA_OK; i++) {
    n->h[i].n = n;
    atomic_init(&n->h[i].dead, false);
    rc = isola__msg_new(isola_int(n->token), &n->h[i].stop);
  }
  if (rc != ISOLA_OK) {
    native_free(n, true);
    isola__vm_leave(&e);
    return rc;
  }
  isola__vm_leave(&e);

  /* Spawned from here, so a failure is this call's result. */
  isola_spawn_options o = {.name = n->name,
                           .errors_nonfatal = true,
                           .heap_limit = SIZE_MAX};
  for (unsigned i = 0; i < nh && rc == ISOLA_OK; i++) {
    isola_isolate iso;
    rc = isola_spawn(hidden_entry, isola_int((intptr_t)&n->h[i]), &o, &iso);
    if (rc == ISOLA_OK) {
      n->h[i].control = iso.control_port;
      pthread_mutex_lock(&n->lock);
      n->spawned++;
      pthread_mutex_unlock(&n->lock);
    }
  }
  if (!wait_hidden(n, false, true)) {
    hand_to_shutdown(n);
    return ISOLA_ESHUTDOWN;
  }
  if (rc == ISOLA_OK && n->ready < nh) rc = ISOLA_ENOMEM;
  if (rc != ISOLA_OK) {
    /* Stop those that started, wait until none uses n, then give up. */
    isola__call e2;
    if (isola__vm_enter(&e2) == ISOLA_OK) {
      stop_ready(e2.vm, n);
      isola__vm_leave(&e2);
    }
    if (!wait_hidden(n, true, true)) {
      hand_to_shutdown(n);
      return rc;
    }
    if (isola__vm_enter(&e2) == ISOLA_OK) {
      native_free(n, true);
      isola__vm_leave(&e2);
    } else {
      hand_to_shutdown(n); /* its stops are freed by shutdown */
    }
    return rc;
  }
  /* Every stop is addressed "from" the native port to its isolate. */
  for (unsigned i = 0; i < nh; i++) {
    n->h[i].stop->dest = n->h[i].port;
    n->h[i].stop->reply_to = n->port;
  }
  pthread_mutex_lock(&registry_lock);
  n->next_native = registry;
  registry = n;
  pthread_mutex_unlock(&registry_lock);
  *out = n->port;
  return ISOLA_OK;
}

int isola_native_port_close(isola_port port) {
  int brc = isola__life_may_wait(); /* waits for its hidden isolates */
  if (brc != ISOLA_OK) return brc;
  isola__vm *vm = isola__vm_get();
  if (!vm) return ISOLA_ENOVM;
  if (port == ISOLA_PORT_NONE) return ISOLA_ECLOSED;
  isola__isolate *self = isola__t.current;
  pthread_mutex_lock(&registry_lock);
  native **pp = &registry;
  while (*pp && ((*pp)->port != port || (*pp)->gen != vm->gen))
    pp = &(*pp)->next_native;
  native *n = *pp;
  if (n && self) {
    /* From one of its own handlers the wait could never end. */
    for (unsigned i = 0; i < n->nhidden; i++)
      if (n->h[i].control == self->control_port) {
        pthread_mutex_unlock(&registry_lock);
        return ISOLA_EBUSY;
      }
  }
  if (n) *pp = n->next_native;
  pthread_mutex_unlock(&registry_lock);
  if (!n) return ISOLA_ECLOSED;

  /* The stop goes behind what the caller sent.  If the VM is shutting
   * down, the stop is not needed: every hidden isolate is being killed,
   * and its end is what the wait below counts. */
  isola__call e;
  int rc = isola__vm_enter(&e);
  if (rc == ISOLA_OK) {
    isola__msg *m = take_stop(&n->h[0]);
    if (m) isola__post(e.vm, m); /* closed: the dispatcher ended */
    isola__vm_leave(&e);
  }
  wait_hidden(n, true, false);
  /* Every hidden isolate has ended and freed or posted its stop. */
  native_free(n, false);
  return rc == ISOLA_OK ? ISOLA_OK : ISOLA_ESHUTDOWN;
}

void isola__native_destroy_all(void) {
  isola__vm *vm = isola__vm_get();
  pthread_mutex_lock(&registry_lock);
  native *n = registry;
  registry = NULL;
  if (vm) destroyed_gen = vm->gen;
  pthread_mutex_unlock(&registry_lock);
  while (n) {
    native *next = n->next_native;
    native_free(n, true); /* every isolate has ended; the pool is alive */
    n = next;
  }
}
