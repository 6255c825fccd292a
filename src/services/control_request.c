/* SPDX-License-Identifier: MIT */
/*
 * control_request.c — isolate control requests (control.h): the public
 * requests (pause, resume, kill, ping, exit and error listeners, errors
 * fatal) and their handling on the isolate's own thread.  The rest of
 * isolate control is in files of its own: uncaught errors in uncaught.c,
 * the end (exit listeners' notices, isola_exit) in exit.c, isola_run in
 * run.c; the state they share is in control_state.h; control.h, the
 * interface, is what the turn, spawn and send call.
 *
 * Every request is a control message on the target's OOB queue, checked by
 * the target against its own capabilities (a wrong capability is ignored,
 * as the Dart VM does); so all the state here belongs to the isolate's
 * thread and needs no lock.  The state lives in iso->ctl, allocated on
 * first need: most isolates never use it.
 *
 * Where things are, in this order: room (what requests hold); set up and
 * tear down; handling requests (the isolate's thread: pause, kill and
 * pings, before-next-event kills and pings in one ordered list); the
 * requests (any thread).
 */
#include "control.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "backpressure.h"
#include "control_state.h"
#include "forward.h"
#include "isolate.h"
#include "lifecycle.h"
#include "message.h"
#include "message_handler.h"
#include "port_map.h"
#include "scheduler.h"
#include "send.h"
#include "value.h"
#include "vm.h"

static bool grow(void **p, uint32_t *cap, uint32_t n, size_t size) {
  if (n < *cap) return true;
  uint32_t c = *cap ? *cap * 2 : 1; /* most isolates have one listener */
  void *q = realloc(*p, (size_t)c * size);
  if (!q) return false;
  *p = q;
  *cap = c;
  return true;
}

/* ---- room (internal.h): what requests make the isolate hold ------------ */

/* Room taken for an error listener's entry, kept while it listens. */
#define ERROR_ROOM ((uint32_t)sizeof(struct error_listener))

static void room_give_bytes(isola__isolate *iso, uint32_t n) {
  atomic_fetch_add_explicit(&iso->room, n, memory_order_relaxed);
}

/* The request from was taken from iso's room; to (a copy of its value,
 * the same size) is what iso keeps for it: to holds that room now, and
 * from gives back any excess.  False (to is not kept) only if to is
 * larger and the room cannot take the difference. */
static bool room_move(isola__isolate *iso, isola__msg *from, isola__msg *to) {
  if (!(from->held & ISOLA__HELD_ROOM)) return true;
  from->held &= (uint16_t)~ISOLA__HELD_ROOM;
  if (to->bytes <= from->bytes) {
    to->held |= ISOLA__HELD_ROOM;
    if (from->bytes > to->bytes) room_give_bytes(iso, from->bytes - to->bytes);
    return true;
  }
  room_give_bytes(iso, from->bytes);
  return isola__room_take(iso, to);
}

bool isola__control_admit(isola__isolate *iso, isola__msg *m) {
  uint64_t cap = m->value.kind == ISOLA_INT ? (uint64_t)m->value.as.i : 0;
  isola_capability want;
  switch (m->type) {
  case ISOLA__MSG_PAUSE:
  case ISOLA__MSG_RESUME:
    want = iso->pause_cap;
    break;
  case ISOLA__MSG_KILL_NOW:
  case ISOLA__MSG_KILL_NEXT:
  case ISOLA__MSG_FATAL_ON:
  case ISOLA__MSG_FATAL_OFF:
    want = iso->terminate_cap;
    break;
  default:
    return true;
  }
  /* The isolate would ignore a wrong capability: it need not get it.  A
   * right one is its owner's word, not refused for want of room (a full
   * isolate can still be paused or killed). */
  if (cap != want) return false;
  m->held |= ISOLA__HELD_EXEMPT;
  return true;
}

struct isola__bp *isola__control_bp(const isola__isolate *iso) {
  return iso->ctl ? iso->ctl->bp : NULL;
}

struct isola__bp **isola__control_bp_slot(isola__isolate *iso) {
  struct isola__control *c = ctl_of(iso);
  return c ? &c->bp : NULL;
}

static void pause_add(isola__isolate *iso, isola_capability cap) {
  struct isola__control *c = ctl_of(iso);
  if (!c) return;
  for (uint32_t i = 0; i < c->npauses; i++)
    if (c->pauses[i] == cap) return;
  if (!grow((void **)&c->pauses, &c->pauses_cap, c->npauses,
            sizeof *c->pauses))
    return;
  c->pauses[c->npauses++] = cap;
  iso->hold |= ISOLA__HOLD_PAUSED;
  if (iso->state == ISOLA__ISO_RUNNING)
    isola__life_move(iso, ISOLA__ISO_PAUSED);
}

static void pause_remove(isola__isolate *iso, isola_capability cap) {
  struct isola__control *c = iso->ctl;
  if (!c) return;
  for (uint32_t i = 0; i < c->npauses; i++) {
    if (c->pauses[i] != cap) continue;
    c->pauses[i] = c->pauses[--c->npauses];
    if (c->npauses == 0) {
      iso->hold &= ~(uint32_t)ISOLA__HOLD_PAUSED;
      if (iso->state == ISOLA__ISO_PAUSED)
        isola__life_move(iso, ISOLA__ISO_RUNNING);
    }
    return;
  }
}

/* Exit listeners live in the isolate itself, not in its control record:
 * each is just its prebuilt response (addressed to the listener's port),
 * linked through the message's queue node, which is unused until the
 * message is posted, in the order they were added.  So an isolate spawned
 * with on_exit costs one message, not a record and an array besides. */
static void exit_link(isola__msg *m, isola__msg *next) {
  atomic_store_explicit(&m->node.next, next ? &next->node : NULL,
                        memory_order_relaxed);
}

/* Adds or replaces port's exit response (m addressed to port). */
static void exit_add(isola__isolate *iso, isola__msg *m) {
  isola__msg *prev = NULL, *x = iso->exits;
  for (; x && x->dest != m->dest; prev = x, x = exit_next(x)) {
  }
  /* Replaced in place (the order stays), or appended. */
  exit_link(m, x ? exit_next(x) : NULL);
  if (prev)
    exit_link(prev, m);
  else
    iso->exits = m;
  if (x) {
    isola__room_give(iso, x);
    isola__msg_free(x);
  }
}

static void exit_remove(isola__isolate *iso, isola_port port) {
  isola__msg *prev = NULL;
  for (isola__msg *x = iso->exits; x; prev = x, x = exit_next(x)) {
    if (x->dest != port) continue;
    if (prev)
      exit_link(prev, exit_next(x));
    else
      iso->exits = exit_next(x);
    isola__room_give(iso, x);
    isola__msg_free(x);
    return;
  }
}

/* Adds port as an error listener.  req: the request that asked (its room
 * pays for the entry), or NULL (spawn options). */
static void error_add(isola__isolate *iso, isola_port port, bool notice,
                      isola__msg *req) {
  struct isola__control *c = ctl_of(iso);
  if (!c) return;
  for (uint32_t i = 0; i < c->nerrors; i++)
    if (c->errors[i].port == port) {
      c->errors[i].notice = notice; /* the last add says which shape */
      return;
    }
  if (!grow((void **)&c->errors, &c->errors_cap, c->nerrors,
            sizeof *c->errors))
    return;
  bool held = false;
  if (req && (req->held & ISOLA__HELD_ROOM) && req->bytes >= ERROR_ROOM) {
    req->held &= (uint16_t)~ISOLA__HELD_ROOM;
    room_give_bytes(iso, req->bytes - ERROR_ROOM);
    held = true;
  }
  c->errors[c->nerrors].port = port;
  c->errors[c->nerrors].held = held;
  c->errors[c->nerrors++].notice = notice;
}

static void error_remove(isola__isolate *iso, isola_port port) {
  struct isola__control *c = iso->ctl;
  if (!c) return;
  for (uint32_t i = 0; i < c->nerrors; i++) {
    if (c->errors[i].port != port) continue;
    if (c->errors[i].held) room_give_bytes(iso, ERROR_ROOM);
    memmove(&c->errors[i], &c->errors[i + 1],
            (c->nerrors - i - 1) * sizeof *c->errors);
    c->nerrors--;
    return;
  }
}

/* A copy of v addressed to port, or NULL (out of memory). */
static isola__msg *addressed(isola_value v, isola_port port) {
  isola__msg *m;
  if (isola__msg_new(v, &m) != ISOLA_OK) return NULL;
  m->dest = port;
  return m;
}

/* The response isola__control_prepare() built for the request being
 * handled on this thread (prepare and handle follow each other on the
 * isolate's thread, nothing in between), or NULL. */
static _Thread_local isola__msg *prepared;
static _Thread_local const isola__msg *prepared_for;

/* The copy of request m's value addressed to its reply port: the one
 * prepared for it, else made now (NULL: out of memory). */
static isola__msg *response_of(isola__msg *m) {
  isola__msg *r = prepared;
  if (r && prepared_for == m) {
    prepared = NULL;
    prepared_for = NULL;
    return r;
  }
  return addressed(m->value, m->reply_to);
}

static bool prepare_response(isola__msg *m) {
  if (prepared_for == m) return true;
  if (!(prepared = addressed(m->value, m->reply_to))) return false;
  prepared_for = m;
  return true;
}

bool isola__control_prepare(isola__isolate *iso, isola__msg *m) {
  uint64_t cap = m->value.kind == ISOLA_INT ? (uint64_t)m->value.as.i : 0;
  struct isola__control *c;
  if (prepared && prepared_for != m) { /* left over: not handled after all */
    isola__msg_free(prepared);
    prepared = NULL;
    prepared_for = NULL;
  }
  switch (m->type) {
  case ISOLA__MSG_PAUSE:
    if (cap != iso->pause_cap) return true;
    return (c = ctl_of(iso)) &&
           grow((void **)&c->pauses, &c->pauses_cap, c->npauses,
                sizeof *c->pauses);
  case ISOLA__MSG_KILL_NEXT:
    if (cap != iso->terminate_cap) return true;
    return (c = ctl_of(iso)) && grow((void **)&c->pings, &c->pings_cap,
                                     c->npings, sizeof *c->pings);
  case ISOLA__MSG_ERROR_ADD:
  case ISOLA__MSG_ERROR_NOTICE_ADD:
    return (c = ctl_of(iso)) && grow((void **)&c->errors, &c->errors_cap,
                                     c->nerrors, sizeof *c->errors);
  case ISOLA__MSG_PING_NEXT: /* a place in the list, and its response */
    if (!(c = ctl_of(iso)) || !grow((void **)&c->pings, &c->pings_cap,
                                    c->npings, sizeof *c->pings))
      return false;
    return prepare_response(m);
  case ISOLA__MSG_PING_NOW:
  case ISOLA__MSG_EXIT_ADD:
  case ISOLA__MSG_NOTICE_ADD:
    return prepare_response(m);
  default:
    return true;
  }
}

/* ---- set up and tear down ---------------------------------------------- */

int isola__control_init(isola__vm *vm, isola__isolate *iso,
                        const isola_spawn_options *opts,
                        struct isola__run *run) {
  iso->errors_fatal = !(opts && opts->errors_nonfatal);
  iso->exit_reason = ISOLA_EXIT_NORMAL;
  iso->hold = 0;
  iso->ctl = NULL;
  iso->unwind = NULL;
  iso->exits = NULL;
  if (opts && opts->on_exit != ISOLA_PORT_NONE) {
    isola__msg *m;
    int rc = isola__msg_new(opts->on_exit_message, &m);
    if (rc != ISOLA_OK) return rc;
    m->dest = opts->on_exit;
    if (opts->exit_notice) m->type = ISOLA__MSG_NOTICE;
    exit_add(iso, m);
  }
  bool need = run || vm->config.pause_on_start ||
              (opts && (opts->on_error || opts->paused));
  if (!need) return ISOLA_OK;
  struct isola__control *c = ctl_of(iso);
  if (!c) return ISOLA_ENOMEM;
  c->run = run;
  if (opts && opts->on_error != ISOLA_PORT_NONE) {
    error_add(iso, opts->on_error, opts->error_notice, NULL);
    if (c->nerrors == 0) return ISOLA_ENOMEM;
  }
  /* A runtime helper (a receiver's isolate) is not paused for debuggers:
   * it runs no user code. */
  if ((opts && opts->paused) ||
      (vm->config.pause_on_start && !(run && run->on_end))) {
    pause_add(iso, iso->pause_cap);
    if (c->npauses == 0) return ISOLA_ENOMEM;
  }
  return ISOLA_OK;
}

/* Frees the control state; keep_bp: all but the backpressure state, kept
 * (in an otherwise empty control state) until the isolate is freed,
 * because senders and waiting threads that found the isolate may still
 * use it (backpressure.h). */
void isola__control_release(isola__isolate *iso, bool keep_bp) {
  for (isola__msg *x = iso->exits, *next; x; x = next) {
    next = exit_next(x);
    isola__msg_free(x);
  }
  iso->exits = NULL;
  struct isola__control *c = iso->ctl;
  if (!c) return;
  for (uint32_t i = 0; i < c->npings; i++)
    if (c->pings[i]) isola__msg_free(c->pings[i]);
  free(c->pings);
  free(c->pauses);
  free(c->errors);
  free(c->exit_detail);
  isola__run_free(c->run);
  if (keep_bp && c->bp) {
    /* All but bp, the last member, which other threads may be reading. */
    memset(c, 0, offsetof(struct isola__control, bp));
    return;
  }
  if (c->bp) isola__bp_free(c->bp);
  free(c);
  iso->ctl = NULL;
}

void isola__control_free(isola__isolate *iso) {
  if (iso->exits || iso->ctl) isola__control_release(iso, false);
}

void isola__control_discard(isola__isolate *iso) {
  if (iso->ctl) iso->ctl->run = NULL;
  isola__control_free(iso);
}

/* ---- handling requests (the isolate's thread) ------------------------- */

isola__ctl_action isola__control_handle(isola__vm *vm, isola__isolate *iso,
                                        isola__msg *m) {
  uint64_t cap = m->value.kind == ISOLA_INT ? (uint64_t)m->value.as.i : 0;
  isola__msg *r;
  switch (m->type) {
  case ISOLA__MSG_PAUSE:
    if (cap == iso->pause_cap) pause_add(iso, m->reply_to);
    break;
  case ISOLA__MSG_RESUME:
    if (cap == iso->pause_cap) pause_remove(iso, m->reply_to);
    break;
  case ISOLA__MSG_KILL_NOW:
    if (cap == iso->terminate_cap) {
      isola__room_give(iso, m);
      iso->exit_reason = ISOLA_EXIT_KILLED;
      return ISOLA__CTL_END;
    }
    break;
  case ISOLA__MSG_KILL_NEXT:
    if (cap == iso->terminate_cap && ctl_of(iso)) {
      struct isola__control *c = iso->ctl;
      if (grow((void **)&c->pings, &c->pings_cap, c->npings,
               sizeof *c->pings))
        c->pings[c->npings++] = NULL; /* in order with the pings */
      else
        c->kill_next = true;
      iso->hold |= ISOLA__HOLD_NEXT;
    }
    break;
  case ISOLA__MSG_PING_NOW:
    if ((r = response_of(m))) isola__post(vm, r);
    break;
  case ISOLA__MSG_PING_NEXT: {
    struct isola__control *c = ctl_of(iso);
    if (!c || !(r = response_of(m))) break;
    if (!room_move(iso, m, r) ||
        !grow((void **)&c->pings, &c->pings_cap, c->npings,
              sizeof *c->pings)) {
      isola__room_give(iso, r);
      isola__msg_free(r);
      break;
    }
    c->pings[c->npings++] = r;
    iso->hold |= ISOLA__HOLD_NEXT;
    break;
  }
  case ISOLA__MSG_EXIT_ADD:
  case ISOLA__MSG_NOTICE_ADD:
    if ((r = response_of(m))) {
      if (m->type == ISOLA__MSG_NOTICE_ADD) r->type = ISOLA__MSG_NOTICE;
      if (room_move(iso, m, r))
        exit_add(iso, r);
      else
        isola__msg_free(r);
    }
    break;
  case ISOLA__MSG_EXIT_DEL:
    exit_remove(iso, m->reply_to);
    break;
  case ISOLA__MSG_ERROR_ADD:
  case ISOLA__MSG_ERROR_NOTICE_ADD:
    error_add(iso, m->reply_to, m->type == ISOLA__MSG_ERROR_NOTICE_ADD, m);
    break;
  case ISOLA__MSG_ERROR_DEL:
    error_remove(iso, m->reply_to);
    break;
  case ISOLA__MSG_FATAL_ON:
  case ISOLA__MSG_FATAL_OFF:
    if (cap == iso->terminate_cap)
      iso->errors_fatal = m->type == ISOLA__MSG_FATAL_ON;
    break;
  default:
    break;
  }
  /* Handled: what the request took from the room, unless it is kept. */
  isola__room_give(iso, m);
  return ISOLA__CTL_GO;
}

isola__ctl_action isola__control_hold(isola__vm *vm, isola__isolate *iso) {
  if (iso->hold & ISOLA__HOLD_PAUSED) return ISOLA__CTL_PAUSE;
  struct isola__control *c = iso->ctl;
  if (iso->hold & ISOLA__HOLD_NEXT) {
    iso->hold &= ~(uint32_t)ISOLA__HOLD_NEXT;
    uint32_t i = 0, n = c->npings;
    c->npings = 0;
    for (; i < n && c->pings[i]; i++) {
      isola__room_give(iso, c->pings[i]);
      isola__post(vm, c->pings[i]);
    }
    if (i < n) { /* a kill, in order: later pings go unanswered */
      while (++i < n)
        if (c->pings[i]) {
          isola__room_give(iso, c->pings[i]);
          isola__msg_free(c->pings[i]);
        }
      iso->exit_reason = ISOLA_EXIT_KILLED;
      return ISOLA__CTL_END;
    }
    if (c->kill_next) {
      iso->exit_reason = ISOLA_EXIT_KILLED;
      return ISOLA__CTL_END;
    }
  }
  if (iso->hold & ISOLA__HOLD_EXITING) return ISOLA__CTL_END;
  /* Muted (backpressure.h): control requests are handled, the kill and
   * pings for the next event above included; normal messages wait. */
  if ((iso->hold & ISOLA__HOLD_MUTED) && isola__bp_still_muted(iso))
    return ISOLA__CTL_PAUSE;
  return ISOLA__CTL_GO;
}

bool isola__control_pause_on_exit(isola__vm *vm, isola__isolate *iso) {
  if (!vm->config.pause_on_exit) return false;
  struct isola__control *c = ctl_of(iso);
  if (!c || c->exit_paused) return false;
  c->exit_paused = true;
  pause_add(iso, iso->pause_cap);
  if (c->npauses == 0) return false;
  iso->hold |= ISOLA__HOLD_EXITING;
  return true;
}

/* ---- the requests (any thread) ----------------------------------------- */

int isola_isolate_from_port(isola_port control_port, isola_isolate *out) {
  if (!out || control_port == ISOLA_PORT_NONE) return ISOLA_EINVAL;
  out->control_port = control_port;
  out->pause_capability = 0;
  out->terminate_capability = 0;
  return ISOLA_OK;
}

isola_capability isola_capability_new(void) {
  isola__rng *r = &isola__t.rng;
  if (!r->seeded && isola__rng_seed(r) != 0) return 0;
  isola_capability c;
  do c = isola__rng_next(r);
  while (c == 0);
  return c;
}

static int request(const isola_isolate *h, uint32_t type, isola_value v,
                   isola_port reply_to) {
  if (!h || h->control_port == ISOLA_PORT_NONE) return ISOLA_EINVAL;
  /* Entered before the message is built (isola_send says why). */
  isola__call e;
  int rc = isola__vm_enter(&e);
  if (rc != ISOLA_OK) return rc;
  isola__msg *m;
  /* A value (a ping or exit response) larger than a pool block is
   * refused before it is copied if the target's room could not take it,
   * as isola_send's is. */
  isola__room_check_arg ck = {e.vm, h->control_port, true};
  if ((rc = isola__msg_build_checked(v, ISOLA__COPY_BUFFERS,
                                     ISOLA__ROOM_CHECK_MIN, isola__room_check,
                                     &ck, &m)) == ISOLA_OK) {
    m->type = type;
    m->dest = h->control_port;
    m->reply_to = reply_to;
    rc = isola__post_control(e.vm, m);
  }
  isola__vm_leave(&e);
  /* No control port of this process: perhaps one a component stands for
   * (an isolate of another process, forward.c). */
  if (ISOLA__UNLIKELY(rc == ISOLA_ECLOSED))
    rc = isola__control_forward(h, type, v, reply_to);
  ISOLA__DET_POINT(ISOLA__DET_CONTROL);
  return rc;
}

static isola_value cap_value(isola_capability c) {
  return isola_int((int64_t)c);
}

int isola_pause(const isola_isolate *isolate, isola_capability resume) {
  if (!isolate) return ISOLA_EINVAL;
  if (!isolate->pause_capability) return ISOLA_EPERM;
  return request(isolate, ISOLA__MSG_PAUSE,
                 cap_value(isolate->pause_capability),
                 resume ? resume : isolate->pause_capability);
}

int isola_resume(const isola_isolate *isolate, isola_capability resume) {
  if (!isolate) return ISOLA_EINVAL;
  if (!isolate->pause_capability) return ISOLA_EPERM;
  return request(isolate, ISOLA__MSG_RESUME,
                 cap_value(isolate->pause_capability),
                 resume ? resume : isolate->pause_capability);
}

int isola_kill(const isola_isolate *isolate, isola_priority priority) {
  if (!isolate) return ISOLA_EINVAL;
  if (!isolate->terminate_capability) return ISOLA_EPERM;
  if (priority != ISOLA_IMMEDIATE && priority != ISOLA_BEFORE_NEXT_EVENT)
    return ISOLA_EINVAL;
  return request(isolate,
                 priority == ISOLA_IMMEDIATE ? ISOLA__MSG_KILL_NOW
                                             : ISOLA__MSG_KILL_NEXT,
                 cap_value(isolate->terminate_capability), ISOLA_PORT_NONE);
}

int isola_ping(const isola_isolate *isolate, isola_port response_port,
               isola_value response, isola_priority priority) {
  if (response_port == ISOLA_PORT_NONE) return ISOLA_EINVAL;
  if (priority != ISOLA_IMMEDIATE && priority != ISOLA_BEFORE_NEXT_EVENT)
    return ISOLA_EINVAL;
  return request(isolate,
                 priority == ISOLA_IMMEDIATE ? ISOLA__MSG_PING_NOW
                                             : ISOLA__MSG_PING_NEXT,
                 response, response_port);
}

int isola_add_exit_listener(const isola_isolate *isolate, isola_port port,
                            isola_value response) {
  if (port == ISOLA_PORT_NONE) return ISOLA_EINVAL;
  return request(isolate, ISOLA__MSG_EXIT_ADD, response, port);
}

int isola_add_exit_notice_listener(const isola_isolate *isolate,
                                   isola_port port, isola_value response) {
  if (port == ISOLA_PORT_NONE) return ISOLA_EINVAL;
  return request(isolate, ISOLA__MSG_NOTICE_ADD, response, port);
}

int isola_remove_exit_listener(const isola_isolate *isolate,
                               isola_port port) {
  if (port == ISOLA_PORT_NONE) return ISOLA_EINVAL;
  return request(isolate, ISOLA__MSG_EXIT_DEL, isola_null(), port);
}

int isola_add_error_listener(const isola_isolate *isolate, isola_port port) {
  if (port == ISOLA_PORT_NONE) return ISOLA_EINVAL;
  return request(isolate, ISOLA__MSG_ERROR_ADD, isola_null(), port);
}

int isola_add_error_notice_listener(const isola_isolate *isolate,
                                    isola_port port) {
  if (port == ISOLA_PORT_NONE) return ISOLA_EINVAL;
  return request(isolate, ISOLA__MSG_ERROR_NOTICE_ADD, isola_null(), port);
}

int isola_remove_error_listener(const isola_isolate *isolate,
                                isola_port port) {
  if (port == ISOLA_PORT_NONE) return ISOLA_EINVAL;
  return request(isolate, ISOLA__MSG_ERROR_DEL, isola_null(), port);
}

int isola_set_errors_fatal(const isola_isolate *isolate, bool fatal) {
  if (!isolate) return ISOLA_EINVAL;
  if (!isolate->terminate_capability) return ISOLA_EPERM;
  return request(isolate, fatal ? ISOLA__MSG_FATAL_ON : ISOLA__MSG_FATAL_OFF,
                 cap_value(isolate->terminate_capability), ISOLA_PORT_NONE);
}

uint32_t isola__control_pauses(const isola__isolate *iso) {
  return iso->ctl ? iso->ctl->npauses : 0;
}
