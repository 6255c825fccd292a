/* SPDX-License-Identifier: MIT */
/*
 * control.c — isolate control (control.h): the public requests (pause,
 * resume, kill, ping, listeners, errors fatal), their handling on the
 * isolate's own thread, uncaught errors, isola_exit and isola_run.
 *
 * Every request is a control message on the target's OOB queue, checked by
 * the target against its own capabilities (a wrong capability is ignored,
 * as the Dart VM does); so all the state here belongs to the isolate's
 * thread and needs no lock.  The state lives in iso->ctl, allocated on
 * first need: most isolates never use it.
 *
 * Where things are, in this order: room (what requests hold); set up and
 * tear down; handling requests (the isolate's thread: pause, kill and
 * pings, before-next-event kills and pings in one ordered list); uncaught
 * errors (isola_throw, the error listeners, isola__control_raise); the end
 * (the isola_run outcome and exit listeners, isola__control_finish); the
 * requests (any thread); isola_exit; isola_run.
 */
#include "control.h"

#include "pool.h"

#include <execinfo.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backpressure.h"
#include "forward.h"
#include "isolate.h"
#include "lifecycle.h"
#include "message.h"
#include "message_handler.h"
#include "pool.h"
#include "port_map.h"
#include "scheduler.h"
#include "value.h"
#include "vm.h"

typedef struct run_waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done; /* protected by mu */
  int rc;
  isola_value result;
} run_waiter;

/* An isola_run computation, owned by the isolate that runs it. */
struct isola__run {
  isola_run_fn fn;
  isola_port port;    /* isola_run_async: where the outcome goes */
  run_waiter *waiter; /* isola_run: the blocked caller */
  bool done;          /* fn returned: result holds its value */
  isola_value result;
  char *err_msg, *err_stack; /* the last uncaught error, or NULL */
  /* isola_run_async_opts: a copy of the caller's tag, the completion's
   * first item. */
  bool tagged;
  isola_value tag;
  /* Not a computation: fn is NULL and on_end(on_end_arg) runs on the
   * isolate's thread as it ends, after its ports closed (receivers,
   * call.c). */
  void (*on_end)(void *arg);
  void *on_end_arg;
};

struct isola__run *isola__run_on_end(void (*fn)(void *arg), void *arg) {
  struct isola__run *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->on_end = fn;
  r->on_end_arg = arg;
  return r;
}

struct isola__control {
  isola_capability *pauses; /* a set: Dart's pause capabilities */
  uint32_t npauses, pauses_cap;
  struct error_listener {
    isola_port port;
    bool notice; /* [message, stack, isolate] rather than [message, stack] */
    bool held;   /* ERROR_ROOM of the isolate's room is taken for it */
  } *errors;
  uint32_t nerrors, errors_cap;
  /* ISOLA_BEFORE_NEXT_EVENT pings (addressed responses) and kills (NULL),
   * in the order received: a kill ends the isolate there, and the pings
   * after it are never answered. */
  isola__msg **pings;
  uint32_t npings, pings_cap;
  bool kill_next; /* a kill that found no room in pings: after them all */
  bool exit_paused; /* pause_on_exit applied once */
  /* The message of the error that ends the isolate (exit notices'
   * detail), or NULL. */
  char *exit_detail;
  struct isola__run *run;
  /* Its mailbox bound and muting (backpressure.h), or NULL.  Set once by
   * the isolate's thread and kept until the isolate is freed: senders
   * read it (after the room word told them of a bound).  Last: an
   * ended isolate's control state is cleared up to it (control_release). */
  struct isola__bp *bp;
};

/* The error being raised on this thread, between isola_throw() and the
 * turn it unwinds to (same thread, so thread-local).  NULL: out of
 * memory, a fixed text is used. */
static _Thread_local char *pending_msg;
static _Thread_local char *pending_stack;
/* ISOLA_EXIT_ERROR, or ISOLA_EXIT_HEAP_LIMIT for isola__throw_heap_limit. */
static _Thread_local uint8_t pending_reason;

static const char oom_text[] = "out of memory while raising an error";

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

static struct isola__control *ctl_of(isola__isolate *iso) {
  if (!iso->ctl) iso->ctl = calloc(1, sizeof *iso->ctl);
  return iso->ctl;
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
static isola__msg *exit_next(isola__msg *m) {
  return (isola__msg *)atomic_load_explicit(&m->node.next,
                                            memory_order_relaxed);
}

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

static void run_free(struct isola__run *r) {
  if (!r) return;
  isola_value_free(&r->result);
  isola_value_free(&r->tag);
  free(r->err_msg);
  free(r->err_stack);
  free(r);
}

/* Frees the control state; keep_bp: all but the backpressure state, kept
 * (in an otherwise empty control state) until the isolate is freed,
 * because senders and waiting threads that found the isolate may still
 * use it (backpressure.h). */
static void control_release(isola__isolate *iso, bool keep_bp) {
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
  run_free(c->run);
  if (keep_bp && c->bp) {
    /* All but bp, the last member, which other threads may be reading. */
    memset(c, 0, offsetof(struct isola__control, bp));
    return;
  }
  if (c->bp) isola__bp_free(c->bp);
  free(c);
  iso->ctl = NULL;
}

void isola__control_free(isola__isolate *iso) { control_release(iso, false); }

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

/* ---- uncaught errors --------------------------------------------------- */

/* The stack of the calling thread, one frame a line, or NULL. */
static char *capture_stack(void) {
  void *frames[64];
  int n = backtrace(frames, 64);
  if (n <= 0) return NULL;
  /* Frame 0 is this function and frame 1 the raise: skip both. */
  int first = n > 2 ? 2 : 0;
  isola__vm *vm = isola__vm_get();
  if (vm && vm->config.stack_symbolizer) {
    char *sym = vm->config.stack_symbolizer(frames + first, n - first);
    if (sym) return sym;
  }
  char **syms = backtrace_symbols(frames, n);
  if (!syms) return NULL;
  size_t len = 1;
  for (int i = first; i < n; i++) len += strlen(syms[i]) + 1;
  char *s = malloc(len);
  if (s) {
    char *p = s;
    for (int i = first; i < n; i++) {
      size_t l = strlen(syms[i]);
      memcpy(p, syms[i], l);
      p += l;
      *p++ = '\n';
    }
    if (p > s) p--; /* no newline after the last frame */
    *p = '\0';
  }
  free(syms);
  return s;
}

static void info_of(isola__isolate *iso, isola_isolate_info *info) {
  info->name = isola__isolate_name(iso);
  info->control_port = iso->control_port;
  info->origin = iso->origin;
  info->group = iso->group->id;
  info->exit_reason = 0;
}

static void report_unhandled(isola__vm *vm, const isola_isolate_info *info,
                             const char *msg, const char *stack) {
  if (vm && vm->config.unhandled_error) {
    vm->config.unhandled_error(vm->config.unhandled_error_data, info, msg,
                               stack);
    return;
  }
  fprintf(stderr, "isola: uncaught error in isolate '%s' (%016llx): %s\n",
          info ? info->name : "(not an isolate)",
          info ? (unsigned long long)info->control_port : 0ull, msg);
}

ISOLA_NORETURN_ static void raise_now(char *msg, uint8_t reason) {
  char *stack = capture_stack();
  isola__isolate *iso = isola__t.current;
  if (!iso || !iso->unwind) {
    /* No turn to unwind to: misuse, reported and fatal like assert(). */
    isola_isolate_info info;
    if (iso) info_of(iso, &info);
    report_unhandled(iso ? isola__vm_get() : NULL, iso ? &info : NULL,
                     msg ? msg : oom_text, stack ? stack : "");
    abort();
  }
  free(pending_msg);
  free(pending_stack);
  pending_msg = msg;
  pending_stack = stack;
  pending_reason = reason;
  longjmp(*(jmp_buf *)iso->unwind, ISOLA__UNWIND_ERROR);
}

void isola_throw(const char *fmt, ...) {
  char *msg = NULL;
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0) msg = NULL;
    va_end(ap);
  } else {
    msg = strdup("");
  }
  raise_now(msg, ISOLA_EXIT_ERROR);
}

void isola__throw_heap_limit(const char *fmt, ...) {
  char *msg = NULL;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&msg, fmt, ap) < 0) msg = NULL;
  va_end(ap);
  raise_now(msg, ISOLA_EXIT_HEAP_LIMIT);
}

void isola__assert_fail(const char *expr, const char *file, int line) {
  char *msg = NULL;
  if (asprintf(&msg, "assertion failed: %s (%s:%d)", expr, file, line) < 0)
    msg = NULL;
  raise_now(msg, ISOLA_EXIT_ERROR);
}

/* Replaces bytes that may break UTF-8 so the text can be sent. */
static void ascii_only(char *s) {
  for (; s && *s; s++)
    if ((unsigned char)*s >= 0x80) *s = '?';
}

/* A message [msg, stack] (notice: [msg, stack, isolate id]) addressed to
 * port, or NULL. */
static isola__msg *error_msg(char *msg, char *stack, isola_port id,
                             bool notice, isola_port port) {
  isola_value items[3] = {isola_str(msg), isola_str(stack),
                          isola_sendport(id)};
  size_t n = notice ? 3 : 2;
  isola__msg *m;
  int rc = isola__msg_new(isola_list(items, n), &m);
  if (rc == ISOLA_EINVAL) { /* not UTF-8 */
    ascii_only(msg);
    ascii_only(stack);
    items[0] = isola_str(msg);
    items[1] = isola_str(stack);
    rc = isola__msg_new(isola_list(items, n), &m);
  }
  if (rc != ISOLA_OK) return NULL;
  m->dest = port;
  return m;
}

bool isola__control_raise(isola__vm *vm, isola__isolate *iso) {
  char *msg = pending_msg, *stack = pending_stack;
  pending_msg = pending_stack = NULL;
  char empty[1] = "";
  char oom[sizeof oom_text];
  memcpy(oom, oom_text, sizeof oom);
  char *m = msg ? msg : oom, *s = stack ? stack : empty;
  struct isola__control *c = iso->ctl;
  bool fatal = iso->errors_fatal;
  if (c && c->run) {
    /* An isola_run computation: its caller receives the error. */
    free(c->run->err_msg);
    free(c->run->err_stack);
    c->run->err_msg = strdup(m);
    c->run->err_stack = strdup(s);
    fatal = true;
  } else if (c && c->nerrors) {
    for (uint32_t i = 0; i < c->nerrors; i++) {
      isola__msg *e = error_msg(m, s, iso->control_port,
                                c->errors[i].notice, c->errors[i].port);
      if (e) isola__post(vm, e);
    }
  } else {
    isola_isolate_info info;
    info_of(iso, &info);
    report_unhandled(vm, &info, m, s);
  }
  isola__trace(vm, ISOLA_TRACE_ISOLATES,
               "isola: isolate '%s' (%016llx) uncaught error: %s\n",
               isola__isolate_name(iso),
               (unsigned long long)iso->control_port, m);
  /* Should this error end the isolate, its exit notices say why. */
  iso->exit_reason = pending_reason ? pending_reason : ISOLA_EXIT_ERROR;
  pending_reason = 0;
  if (c || (iso->exits && (c = ctl_of(iso)))) {
    free(c->exit_detail);
    c->exit_detail = msg; /* taken: NULL (out of memory) is reported as
                             the fixed text */
    msg = NULL;
    if (!c->exit_detail) c->exit_detail = strdup(oom_text);
  }
  free(msg);
  free(stack);
  return fatal;
}

void isola__control_survived(isola__isolate *iso) {
  iso->exit_reason = ISOLA_EXIT_NORMAL;
  if (iso->ctl) {
    free(iso->ctl->exit_detail);
    iso->ctl->exit_detail = NULL;
  }
}

void isola__control_unwound(isola__vm *vm, isola__isolate *iso) {
  (void)iso;
  /* Frames abandoned between isola_blocking_begin() and _end(): end the
   * blocking section so the thread gets its worker back. */
  isola__thread *t = isola__t.thread;
  while (t && t->blocking > 0) isola__sched_blocking_end(&vm->sched, t);
}

/* ---- the end ----------------------------------------------------------- */

static void run_deliver(isola__vm *vm, struct isola__run *r) {
  if (r->on_end) {
    r->on_end(r->on_end_arg);
    return;
  }
  const char *msg = r->err_msg ? r->err_msg
                               : "the isolate ended before the computation "
                                 "returned (killed, or isola_exit)";
  const char *stack = r->err_stack ? r->err_stack : "";
  if (r->waiter) {
    run_waiter *w = r->waiter;
    isola_value res = isola_null();
    int rc = ISOLA_OK;
    if (r->done) {
      res = r->result;
      r->result = isola_null();
    } else {
      isola_value items[2] = {isola_str(msg), isola_str(stack)};
      if (isola_value_copy(isola_list(items, 2), &res) != ISOLA_OK)
        res = isola_null();
      rc = ISOLA_EFAILED;
    }
    pthread_mutex_lock(&w->mu);
    w->rc = rc;
    w->result = res;
    w->done = true;
    /* Signalled under the lock: the waiter may free w once it sees done
     * and takes the lock, so w is not touched after the unlock. */
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return;
  }
  isola__msg *m = NULL;
  int rc = ISOLA_EINVAL;
  /* Tagged (isola_run_async_opts): the tag goes first. */
  size_t t = r->tagged ? 1 : 0;
  if (r->done) {
    isola_value items[3] = {r->tag, isola_bool(true), r->result};
    rc = isola__msg_new(isola_list(items + 1 - t, 2 + t), &m);
    if (rc == ISOLA_EINVAL) msg = "the result of the computation is malformed";
  }
  if (rc != ISOLA_OK) {
    isola_value items[4] = {r->tag, isola_bool(false), isola_str(msg),
                            isola_str(stack)};
    if (isola__msg_new(isola_list(items + 1 - t, 3 + t), &m) != ISOLA_OK)
      return;
  }
  m->dest = r->port;
  m->held |= ISOLA__HELD_EXEMPT; /* owed to the caller: not refused */
  isola__post(vm, m);
}

const char *isola_exit_reason_name(int reason) {
  switch (reason) {
  case ISOLA_EXIT_NORMAL: return "normal";
  case ISOLA_EXIT_KILLED: return "killed";
  case ISOLA_EXIT_ERROR: return "error";
  case ISOLA_EXIT_HEAP_LIMIT: return "heap limit";
  case ISOLA_EXIT_SHUTDOWN: return "shutdown";
  case ISOLA_EXIT_NODE_LOST: return "node lost";
  default: return "unknown";
  }
}

/* The exit notice [reason, isolate, detail, response] for the stored
 * response r, which it replaces (r is freed); r itself, made a plain
 * response, if memory runs out. */
static isola__msg *notice_of(isola__isolate *iso, isola__msg *r) {
  uint8_t reason = iso->exit_reason;
  const char *detail = iso->ctl ? iso->ctl->exit_detail : NULL;
  bool has_detail = (reason == ISOLA_EXIT_ERROR ||
                     reason == ISOLA_EXIT_HEAP_LIMIT) && detail;
  isola_value items[4] = {isola_int(reason),
                          isola_sendport(iso->control_port),
                          has_detail ? isola_str(detail) : isola_null(),
                          r->value};
  isola__msg *n;
  int rc = isola__msg_new(isola_list(items, 4), &n);
  if (rc == ISOLA_EINVAL && has_detail) { /* a detail that is not UTF-8 */
    ascii_only(iso->ctl->exit_detail);
    items[2] = isola_str(iso->ctl->exit_detail);
    rc = isola__msg_new(isola_list(items, 4), &n);
  }
  if (rc != ISOLA_OK) {
    r->type = ISOLA__MSG_USER;
    return r;
  }
  n->dest = r->dest;
  isola__msg_free(r);
  return n;
}

void isola__control_finish(isola__vm *vm, isola__isolate *iso) {
  struct isola__control *c = iso->ctl;
  if (c && c->run) {
    run_deliver(vm, c->run);
    run_free(c->run);
    c->run = NULL;
  }
  isola__msg *x = iso->exits;
  iso->exits = NULL;
  while (x) {
    isola__msg *next = exit_next(x);
    isola__room_give(iso, x);
    if (x->type == ISOLA__MSG_NOTICE) x = notice_of(iso, x);
    /* Owed since the listener was added, and paid for by this isolate's
     * room then: its receiver's room does not refuse it. */
    x->held |= ISOLA__HELD_EXEMPT;
    isola__post(vm, x); /* its node is the queue's from here */
    x = next;
  }
  control_release(iso, true);
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

/* A request's value (a ping or exit response) larger than a pool block
 * is refused before it is copied if the target's room could not take it
 * (isola_send_reply() does the same). */
struct ctl_check {
  isola__vm *vm;
  isola_port port;
};

static int ctl_check(size_t bytes, void *arg) {
  struct ctl_check *c = arg;
  int state;
  isola__isolate *iso = isola__port_lookup(&c->vm->ports, c->port, &state);
  if (!iso || state != ISOLA__PORT_CONTROL) return ISOLA_ECLOSED;
  uint32_t room = atomic_load_explicit(&iso->room, memory_order_relaxed);
  if (isola__room_short(room, bytes)) return ISOLA_EFULL;
  return ISOLA_OK;
}

static int request(const isola_isolate *h, uint32_t type, isola_value v,
                   isola_port reply_to) {
  if (!h || h->control_port == ISOLA_PORT_NONE) return ISOLA_EINVAL;
  /* Entered before the message is built (isola_send says why). */
  isola__call e;
  int rc = isola__vm_enter(&e);
  if (rc != ISOLA_OK) return rc;
  isola__msg *m;
  struct ctl_check ck = {e.vm, h->control_port};
  if ((rc = isola__msg_build_checked(v, ISOLA__COPY_BUFFERS, 2048, ctl_check,
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

/* ---- isola_exit -------------------------------------------------------- */

/* Posts the last message m and leaves the event.  The post goes through
 * the VM entry: inside a blocking section this thread is offline in the
 * epoch, and the receiver must stay alive while the post touches it. */
ISOLA_NORETURN_ static void exit_with(isola__isolate *iso, isola__msg *m) {
  isola__call e;
  if (isola__vm_enter(&e) == ISOLA_OK) {
    isola__post(e.vm, m); /* a closed port drops it */
    isola__vm_leave(&e);
  } else {
    isola__msg_free(m); /* shutting down: dropped, the isolate ends */
  }
  longjmp(*(jmp_buf *)iso->unwind, ISOLA__UNWIND_EXIT);
}

int isola_exit(isola_port port, isola_value value) {
  isola__isolate *iso = isola__t.current;
  if (!iso || !iso->unwind) return ISOLA_ENOTISOLATE;
  if (port == ISOLA_PORT_NONE) return ISOLA_EINVAL;
  /* Sent as isola_send() sends (through the VM entry, transferable
   * buffers moved and their handles emptied), then the end.  Only a
   * message that could not be built lets the isolate carry on. */
  int rc = isola_send(port, value);
  if (rc == ISOLA_EINVAL || rc == ISOLA_ENOMEM || rc == ISOLA_ETRANSFER)
    return rc;
  longjmp(*(jmp_buf *)iso->unwind, ISOLA__UNWIND_EXIT);
}

int isola_exit_owned(isola_port port, isola_value *owned) {
  isola__isolate *iso = isola__t.current;
  if (!iso || !iso->unwind) return ISOLA_ENOTISOLATE;
  if (port == ISOLA_PORT_NONE || !owned) return ISOLA_EINVAL;
  isola_value v = *owned;
  if (!isola__value_has_block(v))
    return isola_exit(port, v); /* a scalar: nothing to adopt */
  uint8_t cls;
  isola__msg *m = isola__pool_alloc(sizeof *m, &cls);
  if (!m) return ISOLA_ENOMEM;
  m->pool_class = cls;
  m->bytes = sizeof *m; /* the adopted block is the caller's size */
  m->charged = 0;
  m->held = 0;
  m->type = ISOLA__MSG_EXTERNAL;
  m->dest = port;
  m->reply_to = ISOLA_PORT_NONE;
  m->value = v; /* the block is the message's from here (isola__msg_free) */
  *owned = isola_null();
  exit_with(iso, m);
}

/* ---- isola_run --------------------------------------------------------- */

static void run_entry(isola_value argument) {
  isola__isolate *iso = isola__t.current;
  struct isola__run *r = iso->ctl->run;
  isola_value v = r->fn(argument);
  r->result = v;
  r->done = true;
  /* The isolate ends with the computation, whatever ports it opened. */
  longjmp(*(jmp_buf *)iso->unwind, ISOLA__UNWIND_EXIT);
}

/* The spawn options of an isola_run isolate. */
static isola_spawn_options run_spawn_options(const isola_run_options *o) {
  isola_spawn_options opts = {.name = "isola_run"};
  if (o) {
    if (o->name) opts.name = o->name;
    opts.heap_limit = o->heap_limit;
  }
  return opts;
}

int isola_run_opts(isola_run_fn fn, isola_value argument,
                   const isola_run_options *options, isola_value *result) {
  if (!fn || !result) return ISOLA_EINVAL;
  *result = isola_null();
  if (isola__t.current) return ISOLA_EBUSY;
  int brc = isola__life_may_wait(); /* a hook on a pool or root thread */
  if (brc != ISOLA_OK) return brc;
  struct isola__run *r = calloc(1, sizeof *r);
  if (!r) return ISOLA_ENOMEM;
  run_waiter w;
  pthread_mutex_init(&w.mu, NULL);
  pthread_cond_init(&w.cv, NULL);
  w.done = false;
  w.rc = ISOLA_OK;
  w.result = isola_null();
  r->fn = fn;
  r->waiter = &w;
  isola_spawn_options opts = run_spawn_options(options);
  int rc = isola__spawn_run(run_entry, argument, &opts, r);
  if (rc == ISOLA_OK) {
    pthread_mutex_lock(&w.mu);
    while (!w.done) pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    rc = w.rc;
    *result = w.result;
  } else {
    free(r);
  }
  pthread_cond_destroy(&w.cv);
  pthread_mutex_destroy(&w.mu);
  return rc;
}

int isola_run(isola_run_fn fn, isola_value argument, isola_value *result) {
  return isola_run_opts(fn, argument, NULL, result);
}

int isola_run_async_opts(isola_run_fn fn, isola_value argument,
                         const isola_run_options *options,
                         isola_port completion_port) {
  if (!fn || completion_port == ISOLA_PORT_NONE) return ISOLA_EINVAL;
  struct isola__run *r = calloc(1, sizeof *r);
  if (!r) return ISOLA_ENOMEM;
  r->fn = fn;
  r->port = completion_port;
  if (options) {
    int rc = isola_value_copy(options->tag, &r->tag);
    if (rc != ISOLA_OK) {
      free(r);
      return rc;
    }
    r->tagged = true;
  }
  isola_spawn_options opts = run_spawn_options(options);
  int rc = isola__spawn_run(run_entry, argument, &opts, r);
  if (rc != ISOLA_OK) {
    isola_value_free(&r->tag);
    free(r);
  }
  return rc;
}

int isola_run_async(isola_run_fn fn, isola_value argument,
                    isola_port completion_port) {
  if (!fn || completion_port == ISOLA_PORT_NONE) return ISOLA_EINVAL;
  return isola_run_async_opts(fn, argument, NULL, completion_port);
}

uint32_t isola__control_pauses(const isola__isolate *iso) {
  return iso->ctl ? iso->ctl->npauses : 0;
}
