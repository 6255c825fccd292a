/* SPDX-License-Identifier: MIT */
/*
 * call.c — request and response: isola_spawn_port (a spawn whose handle
 * comes with a port the child already has), receivers (a receive port a
 * plain thread owns and waits on), isola_call (an asynchronous call from
 * an isolate: reply or timeout, exactly once) and isola_call_wait (the
 * blocking call for plain threads).  Everything here is built on the
 * public API, plus two internal hooks: the spawner opens the first port
 * (isolate.c) and a receiver's isolate reports its end (run.c).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "control.h"
#include "detail.h"
#include "internal.h"
#include "isolate.h"

/* ---- isola_spawn_port -------------------------------------------------- */

static void no_entry(isola_value message) { (void)message; }

int isola_spawn_port(isola_entry entry, isola_value message,
                     isola_handler handler, void *ctx,
                     const isola_spawn_options *opts, isola_isolate *out,
                     isola_port *port) {
  if (port) *port = ISOLA_PORT_NONE;
  if (!handler || !port) {
    isola__detail_set("isola_spawn_port: %s is NULL",
                      handler ? "port" : "handler");
    return ISOLA_EINVAL;
  }
  isola__first_port fp = {handler, ctx, port};
  return isola__spawn_ex(entry ? entry : no_entry, message, opts, NULL, &fp,
                         out);
}

/* ---- receivers --------------------------------------------------------- */

typedef struct rmsg {
  struct rmsg *next;
  isola_value value; /* an isola_value_copy() block */
  isola_port reply_to;
} rmsg;

struct isola_receiver {
  pthread_mutex_t mu;
  pthread_cond_t cv; /* on CLOCK_MONOTONIC */
  rmsg *head, *tail; /* protected by mu */
  bool closed;       /* the owner closed it: arrivals are dropped (mu) */
  bool ended;        /* its isolate has ended (mu) */
  _Atomic int refs;  /* the owner's and the isolate's */
  isola_port port;
  isola_isolate iso;
};

static void rmsg_free_all(rmsg *m) {
  while (m) {
    rmsg *next = m->next;
    isola_value_free(&m->value);
    free(m);
    m = next;
  }
}

static void receiver_release(isola_receiver *r) {
  if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
    return;
  rmsg_free_all(r->head);
  pthread_cond_destroy(&r->cv);
  pthread_mutex_destroy(&r->mu);
  free(r);
}

/* The receiver's port handler, in its isolate: a copy of the message goes
 * to the owner's queue.  The copy is made before the lock is taken. */
static void receiver_deliver(void *ctx, isola_port port, isola_value message,
                             isola_port reply_to) {
  (void)port;
  isola_receiver *r = ctx;
  rmsg *m = malloc(sizeof *m);
  if (!m) return; /* as a message its receiver could not take: dropped */
  if (isola_value_copy(message, &m->value) != ISOLA_OK) {
    free(m);
    return;
  }
  m->next = NULL;
  m->reply_to = reply_to;
  pthread_mutex_lock(&r->mu);
  if (r->closed) {
    pthread_mutex_unlock(&r->mu);
    isola_value_free(&m->value);
    free(m);
    return;
  }
  if (r->tail)
    r->tail->next = m;
  else
    r->head = m;
  r->tail = m;
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

/* The receiver's isolate has ended (closed, or the VM shut down). */
static void receiver_ended(void *arg) {
  isola_receiver *r = arg;
  pthread_mutex_lock(&r->mu);
  r->ended = true;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  receiver_release(r);
}

int isola_receiver_new(const char *name, isola_receiver **out) {
  if (!out) {
    isola__detail_set("isola_receiver_new: out is NULL");
    return ISOLA_EINVAL;
  }
  *out = NULL;
  if (isola__t.current) {
    isola__detail_set("isola_receiver_new: called from an isolate, which "
                      "receives through its ports' handlers");
    return ISOLA_EBUSY;
  }
  isola_receiver *r = calloc(1, sizeof *r);
  if (!r) return ISOLA_ENOMEM;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&r->cv, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&r->mu, NULL);
  atomic_init(&r->refs, 2);
  struct isola__run *run = isola__run_on_end(receiver_ended, r);
  if (!run) {
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
    return ISOLA_ENOMEM;
  }
  isola__first_port fp = {receiver_deliver, r, &r->port};
  isola_spawn_options opts = {.name = name ? name : "receiver"};
  int rc = isola__spawn_ex(no_entry, isola_null(), &opts, run, &fp, &r->iso);
  if (rc != ISOLA_OK) {
    free(run); /* it computes nothing and holds nothing */
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
    return rc;
  }
  *out = r;
  return ISOLA_OK;
}

isola_port isola_receiver_port(const isola_receiver *r) {
  return r ? r->port : ISOLA_PORT_NONE;
}

/* now + ms on CLOCK_MONOTONIC. */
static struct timespec deadline_in(uint64_t ms) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t sec = ms / 1000;
  long nsec = (long)(ms % 1000) * 1000000L + ts.tv_nsec;
  if (nsec >= 1000000000L) {
    nsec -= 1000000000L;
    sec++;
  }
  ts.tv_sec += (time_t)sec;
  ts.tv_nsec = nsec;
  return ts;
}

int isola_receiver_wait(isola_receiver *r, uint64_t timeout_ms,
                        isola_value *message, isola_port *reply_to) {
  if (message) *message = isola_null();
  if (reply_to) *reply_to = ISOLA_PORT_NONE;
  if (!r || !message) {
    isola__detail_set("isola_receiver_wait: %s is NULL",
                      r ? "message" : "the receiver");
    return ISOLA_EINVAL;
  }
  if (isola__t.current) {
    isola__detail_set("isola_receiver_wait: called from an isolate, which "
                      "must not block");
    return ISOLA_EBUSY;
  }
  /* Beyond about 290 years the wait is forever (a time_t would wrap). */
  bool forever = timeout_ms >= (uint64_t)1 << 53;
  struct timespec deadline = {0, 0};
  if (!forever && timeout_ms) deadline = deadline_in(timeout_ms);
  int rc = ISOLA_OK;
  pthread_mutex_lock(&r->mu);
  while (!r->head && !r->ended) {
    if (!forever && timeout_ms == 0) break;
    if (forever) {
      pthread_cond_wait(&r->cv, &r->mu);
    } else if (pthread_cond_timedwait(&r->cv, &r->mu, &deadline) ==
               ETIMEDOUT) {
      break;
    }
  }
  rmsg *m = r->head;
  if (m) {
    r->head = m->next;
    if (!r->head) r->tail = NULL;
  } else if (r->ended) {
    rc = ISOLA_ESHUTDOWN;
  } else {
    rc = ISOLA_ETIMEDOUT;
  }
  pthread_mutex_unlock(&r->mu);
  if (m) {
    *message = m->value;
    if (reply_to) *reply_to = m->reply_to;
    free(m);
  } else if (rc == ISOLA_ESHUTDOWN) {
    isola__detail_set("isola_receiver_wait: the receiver's port is closed: "
                      "the VM shut down");
  } else {
    isola__detail_set("isola_receiver_wait: no message within %llu ms",
                      (unsigned long long)timeout_ms);
  }
  return rc;
}

void isola_receiver_close(isola_receiver *r) {
  if (!r) return;
  pthread_mutex_lock(&r->mu);
  r->closed = true;
  bool ended = r->ended;
  rmsg *queued = r->head;
  r->head = r->tail = NULL;
  pthread_mutex_unlock(&r->mu);
  rmsg_free_all(queued);
  /* Ends its isolate, which closes the port: later sends to it fail with
   * ISOLA_ECLOSED.  If the VM is shutting down the isolate ends anyway;
   * either way its end releases the isolate's reference. */
  if (!ended && isola_kill(&r->iso, ISOLA_IMMEDIATE) == ISOLA_OK &&
      !isola__t.current) {
    /* A plain thread waits for the end, so that a send after the close
     * fails with ISOLA_ECLOSED.  The isolate runs no user code and is
     * killed at ISOLA_IMMEDIATE, so the wait is short.  (An isolate must
     * not wait: the receiver's isolate may be queued behind it.) */
    pthread_mutex_lock(&r->mu);
    while (!r->ended) pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
  }
  receiver_release(r);
}

/* ---- isola_call_wait --------------------------------------------------- */

int isola_call_wait(isola_port port, isola_value request, uint64_t timeout_ms,
                    isola_value *reply) {
  if (reply) *reply = isola_null();
  if (!reply || port == ISOLA_PORT_NONE) {
    isola__detail_set("isola_call_wait: %s",
                      reply ? "the port is ISOLA_PORT_NONE" : "reply is NULL");
    return ISOLA_EINVAL;
  }
  if (isola__t.current) {
    isola__detail_set("isola_call_wait: called from an isolate, which must "
                      "not block (use isola_call)");
    return ISOLA_EBUSY;
  }
  isola_receiver *r;
  int rc = isola_receiver_new("call", &r);
  if (rc != ISOLA_OK) return rc;
  rc = isola_send_reply(port, request, r->port);
  if (rc == ISOLA_OK) rc = isola_receiver_wait(r, timeout_ms, reply, NULL);
  isola_receiver_close(r);
  return rc;
}

/* ---- isola_call -------------------------------------------------------- */

/* A call waiting for its reply or its timeout, in its isolate's list so
 * that the isolate's end frees the ones still waiting. */
typedef struct pending {
  struct pending *prev, *next;
  isola_call_fn done;
  void *ctx;
  isola_port port;   /* the reply port, open while waiting */
  isola_timer timer; /* 0: no timeout */
} pending;

typedef struct pending_list {
  pending *head;
} pending_list;

static void pending_destroy(void *value) {
  pending_list *l = value;
  for (pending *p = l->head, *next; p; p = next) {
    next = p->next;
    free(p);
  }
  l->head = NULL;
}

static ISOLA_LOCAL_INIT(pending_list, calls, NULL, pending_destroy);

static void pending_unlink(pending *p) {
  pending_list *l = isola_local_get(&calls);
  if (p->prev)
    p->prev->next = p->next;
  else if (l)
    l->head = p->next;
  if (p->next) p->next->prev = p->prev;
}

/* The reply and the timeout are two events of the caller's isolate; the
 * first one closes the port (a reply queued meanwhile is dropped with it)
 * and cancels the timer (a tick queued meanwhile is dropped), so the other
 * never runs.  The call's state is freed before the callback runs, so a
 * callback that throws leaks nothing. */
static void call_replied(void *ctx, isola_port port, isola_value message,
                         isola_port reply_to) {
  (void)port, (void)reply_to;
  pending *p = ctx;
  pending_unlink(p);
  if (p->timer) isola_timer_cancel(p->timer);
  isola_port_close(p->port);
  isola_call_fn done = p->done;
  void *dctx = p->ctx;
  free(p);
  done(dctx, ISOLA_OK, message);
}

static void call_timed_out(void *arg) {
  pending *p = arg;
  pending_unlink(p);
  isola_port_close(p->port);
  isola_call_fn done = p->done;
  void *dctx = p->ctx;
  free(p);
  done(dctx, ISOLA_ETIMEDOUT, isola_null());
}

int isola_call(isola_port port, isola_value request, uint64_t timeout_ms,
               isola_call_fn done, void *ctx) {
  if (!done || port == ISOLA_PORT_NONE || timeout_ms == 0) {
    isola__detail_set("isola_call: %s",
                      !done ? "done is NULL"
                      : port == ISOLA_PORT_NONE
                          ? "the port is ISOLA_PORT_NONE"
                          : "a timeout of 0 ms (ISOLA_FOREVER: none)");
    return ISOLA_EINVAL;
  }
  if (!isola__t.current) {
    isola__detail_set("isola_call: not called from an isolate (plain "
                      "threads use isola_call_wait)");
    return ISOLA_ENOTISOLATE;
  }
  pending_list *l = isola_local_get(&calls);
  pending *p = calloc(1, sizeof *p);
  if (!l || !p) {
    free(p);
    return ISOLA_ENOMEM;
  }
  p->done = done;
  p->ctx = ctx;
  int rc = isola_port_open(call_replied, p, &p->port);
  if (rc != ISOLA_OK) {
    free(p);
    return rc;
  }
  if (timeout_ms != ISOLA_FOREVER) {
    rc = isola_timer_start(timeout_ms, 0, call_timed_out, p, &p->timer);
    if (rc != ISOLA_OK) {
      isola_port_close(p->port);
      free(p);
      return rc;
    }
  }
  /* Linked before the send: a kill that lands at the send abandons this
   * frame, and the isolate's end must still find p. */
  p->next = l->head;
  if (l->head) l->head->prev = p;
  l->head = p;
  rc = isola_send_reply(port, request, p->port);
  if (rc != ISOLA_OK) {
    pending_unlink(p);
    if (p->timer) isola_timer_cancel(p->timer);
    isola_port_close(p->port);
    free(p);
  }
  return rc;
}
