/* SPDX-License-Identifier: MIT */
/*
 * native.c — native ports (Dart_NewNativePort): a port whose handler is a
 * plain C function run on the pool, one message at a time or concurrently.
 *
 * A native port is built from isolates, so it needs nothing new from the
 * scheduler or the port map.  A hidden "dispatcher" isolate owns the port.
 * One at a time: the dispatcher calls the handler itself.  Concurrently:
 * the dispatcher starts one hidden worker isolate per pool worker and
 * hands each message to the next in turn (one more copy), so up to that
 * many handlers run at once on different threads.  Closing sends a stop
 * down the same paths: it reaches each isolate after every message that
 * was ahead of it, so when every isolate has seen it no handler is in
 * flight, and the close returns.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "lifecycle.h"
#include "vm.h"

typedef struct native {
  isola_native_handler handler;
  void *ctx;
  bool concurrent;
  char name[ISOLA__NAME_MAX + 1];
  isola_port port; /* the dispatcher's: the native port's id */
  unsigned nworkers;
  isola_port *workers; /* concurrent: the workers' ports */
  unsigned next;       /* the dispatcher's round robin */
  int64_t stop;        /* the stop message: an unguessable int */
  /* Start-up and close handshakes, under lock. */
  pthread_mutex_t lock;
  pthread_cond_t cv;
  unsigned ready;             /* isolates that opened their port */
  unsigned stopped;           /* isolates that saw the stop */
  bool failed;                /* an isolate could not start */
  struct native *next_native; /* the registry */
} native;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static native *registry;

static void signal_count(native *n, unsigned *counter) {
  pthread_mutex_lock(&n->lock);
  (*counter)++;
  pthread_cond_broadcast(&n->cv);
  pthread_mutex_unlock(&n->lock);
}

/* The runtime's stop: sent "from" the native port itself with a token
 * drawn from the CSPRNG, so no user message is taken for it. */
static bool is_stop(native *n, isola_value msg, isola_port reply_to) {
  return reply_to == n->port && msg.kind == ISOLA_INT && msg.as.i == n->stop;
}

static void worker_handler(void *ctx, isola_port port, isola_value msg,
                           isola_port reply_to) {
  native *n = ctx;
  if (is_stop(n, msg, reply_to)) {
    isola_port_close(port);
    signal_count(n, &n->stopped);
    return;
  }
  n->handler(n->ctx, n->port, msg, reply_to);
}

static void worker_entry(isola_value msg) {
  native *n = (native *)(intptr_t)msg.as.i;
  isola_port p;
  if (isola_port_open(worker_handler, n, &p) != ISOLA_OK) {
    pthread_mutex_lock(&n->lock);
    n->failed = true;
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->lock);
    return;
  }
  pthread_mutex_lock(&n->lock);
  n->workers[n->ready - 1] = p; /* slot 0.. after the dispatcher's 1 */
  n->ready++;
  pthread_cond_broadcast(&n->cv);
  pthread_mutex_unlock(&n->lock);
}

static void dispatcher_handler(void *ctx, isola_port port, isola_value msg,
                               isola_port reply_to) {
  native *n = ctx;
  if (is_stop(n, msg, reply_to)) {
    for (unsigned i = 0; i < n->nworkers; i++)
      isola_send_reply(n->workers[i], msg, n->port);
    isola_port_close(port);
    signal_count(n, &n->stopped);
    return;
  }
  if (!n->concurrent) {
    n->handler(n->ctx, port, msg, reply_to);
    return;
  }
  isola_port w = n->workers[n->next++ % n->nworkers];
  isola_send_reply(w, msg, reply_to);
}

static void dispatcher_entry(isola_value msg) {
  native *n = (native *)(intptr_t)msg.as.i;
  isola_port p;
  bool ok = isola_port_open(dispatcher_handler, n, &p) == ISOLA_OK;
  pthread_mutex_lock(&n->lock);
  if (ok) {
    n->port = p;
    n->ready++;
  } else {
    n->failed = true;
  }
  pthread_cond_broadcast(&n->cv);
  pthread_mutex_unlock(&n->lock);
  if (!ok || !n->concurrent)
    return;
  isola_spawn_options o = {.name = n->name};
  for (unsigned i = 0; i < n->nworkers; i++)
    if (isola_spawn(worker_entry, isola_int((intptr_t)n), &o, NULL) !=
        ISOLA_OK) {
      pthread_mutex_lock(&n->lock);
      n->failed = true;
      pthread_cond_broadcast(&n->cv);
      pthread_mutex_unlock(&n->lock);
      return;
    }
}

/* Waits until *counter reaches target (or a start failed), letting the
 * pool run others meanwhile if the caller is an isolate. */
static bool wait_count(native *n, unsigned *counter, unsigned target) {
  bool in_isolate = isola__t.current != NULL;
  if (in_isolate)
    isola_blocking_begin();
  pthread_mutex_lock(&n->lock);
  while (*counter < target && !n->failed)
    pthread_cond_wait(&n->cv, &n->lock);
  bool ok = *counter >= target;
  pthread_mutex_unlock(&n->lock);
  if (in_isolate)
    isola_blocking_end();
  return ok;
}

static void native_free(native *n) {
  pthread_mutex_destroy(&n->lock);
  pthread_cond_destroy(&n->cv);
  free(n->workers);
  free(n);
}

int isola_native_port_new(const char *name, isola_native_handler handler,
                          void *ctx, bool concurrent, isola_port *out) {
  if (!handler || !out)
    return ISOLA_EINVAL;
  int brc = isola__life_may_wait(); /* waits for its hidden isolates */
  if (brc != ISOLA_OK)
    return brc;
  isola__vm *vm = isola__vm_get();
  if (!vm)
    return ISOLA_ENOVM;
  native *n = calloc(1, sizeof *n);
  if (!n)
    return ISOLA_ENOMEM;
  n->handler = handler;
  n->ctx = ctx;
  n->concurrent = concurrent;
  n->stop = (int64_t)isola_capability_new();
  snprintf(n->name, sizeof n->name, "%s", name && *name ? name : "native");
  n->nworkers = concurrent ? vm->config.workers : 0;
  if (n->nworkers && !(n->workers = calloc(n->nworkers, sizeof *n->workers))) {
    free(n);
    return ISOLA_ENOMEM;
  }
  pthread_mutex_init(&n->lock, NULL);
  pthread_cond_init(&n->cv, NULL);
  isola_spawn_options o = {.name = n->name};
  int rc = isola_spawn(dispatcher_entry, isola_int((intptr_t)n), &o, NULL);
  if (rc != ISOLA_OK) {
    native_free(n);
    return rc;
  }
  /* The dispatcher and every worker have their port open. */
  if (!wait_count(n, &n->ready, 1 + n->nworkers)) {
    /* Some isolate could not start: stop those that did, then give up. */
    wait_count(n, &n->ready, 1); /* the port id, if the dispatcher has one */
    if (n->port) {
      isola_send_reply(n->port, isola_int(n->stop), n->port);
      wait_count(n, &n->stopped, 1 + (n->ready - 1));
    }
    native_free(n);
    return ISOLA_ENOMEM;
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
  if (brc != ISOLA_OK)
    return brc;
  pthread_mutex_lock(&registry_lock);
  native **pp = &registry;
  while (*pp && (*pp)->port != port)
    pp = &(*pp)->next_native;
  native *n = *pp;
  if (n)
    *pp = n->next_native;
  pthread_mutex_unlock(&registry_lock);
  if (!n)
    return ISOLA_ECLOSED;
  int rc = isola_send_reply(port, isola_int(n->stop), port);
  if (rc != ISOLA_OK) {
    /* The VM is going down: its isolates may still run handlers of n, so
     * n stays registered for shutdown to free once they are gone. */
    pthread_mutex_lock(&registry_lock);
    n->next_native = registry;
    registry = n;
    pthread_mutex_unlock(&registry_lock);
    return rc;
  }
  wait_count(n, &n->stopped, 1 + n->nworkers);
  native_free(n);
  return ISOLA_OK;
}

void isola__native_destroy_all(void) {
  pthread_mutex_lock(&registry_lock);
  native *n = registry;
  registry = NULL;
  pthread_mutex_unlock(&registry_lock);
  while (n) {
    native *next = n->next_native;
    native_free(n);
    n = next;
  }
}
