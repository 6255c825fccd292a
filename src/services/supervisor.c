/* SPDX-License-Identifier: MIT */
/*
 * supervisor.c — isola_supervisor (docs/supervisors.md): OTP-style
 * supervision built on the public API only: exit notices given at spawn,
 * one port and one timer of the owner isolate, isola_kill().
 *
 * All the state belongs to the owner isolate's thread.  Children are
 * stopped one at a time (the "stop sequence", from the highest index
 * down); a restart of several children stops them first, then starts them
 * in order.  The end (on_end, the free) always runs as a microtask, so no
 * callback or public call ever returns into a freed supervisor.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <isola.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CHILDREN 1024
#define MAX_INTENSITY 65536u
#define DEFAULT_MS 5000u

enum { C_NONE, C_RUNNING, C_STOPPING };
enum { M_RUN, M_RESTART, M_END, M_DONE };

typedef struct child {
  char *name;
  isola_entry entry;
  isola_value arg; /* an isola_value_copy() */
  uint8_t restart;
  uint8_t state;     /* C_* */
  uint8_t stop_step; /* 0: asked (before next event); 1: killed now */
  bool pending;      /* ended by itself during a restart: handled after */
  int pending_reason;
  uint32_t shutdown_ms;
  size_t heap_limit;
  uint64_t gen; /* its exit notices carry it: older ones are stale */
  isola_isolate h;
} child;

struct isola_supervisor {
  struct isola_supervisor *next; /* the owner's list */
  isola_port owner;              /* the owner's control port */
  isola_port port;               /* exit notices */
  uint8_t strategy, mode;
  uint32_t max_restarts, period_ms;
  void *ctx;
  void (*on_child_start)(void *, size_t, const isola_isolate *);
  void (*on_child_exit)(void *, size_t, isola_port, int, const char *);
  void (*on_end)(void *, int, const char *);
  child *c;
  size_t n;
  /* The stop sequence: active while seq; the child being stopped is
   * c[cur]; it goes down to lo. */
  bool seq;
  size_t cur, lo;
  size_t restart_from; /* M_RESTART: the children to start again */
  isola_timer timer;   /* the stop in progress; 0: none */
  uint64_t *stamps;    /* restart times (ms), a ring of max_restarts */
  size_t nstamps, first;
  uint64_t restarts;
  int end_reason;
  char *end_detail;
  /* Supervisor code on the stack (entry points: a notice, a stop timer,
   * isola_supervisor_stop), and an end due once the outermost returns. */
  unsigned depth;
  bool end_due;
};

/* ---- the owner's list: children never outlive the owner --------------- */

typedef struct owned {
  isola_supervisor *head;
} owned;

static void sup_free(isola_supervisor *s) {
  for (size_t i = 0; i < s->n; i++) {
    free(s->c[i].name);
    isola_value_free(&s->c[i].arg);
  }
  free(s->c);
  free(s->stamps);
  free(s->end_detail);
  free(s);
}

static void owned_end(void *value) {
  owned *o = value;
  isola_supervisor *s = o->head;
  while (s) {
    isola_supervisor *next = s->next;
    for (size_t i = 0; i < s->n; i++)
      if (s->c[i].state != C_NONE) isola_kill(&s->c[i].h, ISOLA_IMMEDIATE);
    sup_free(s); /* its port and timer end with the owner */
    s = next;
  }
  o->head = NULL;
}

static ISOLA_LOCAL_INIT(owned, owned_key, NULL, owned_end);

static void unlink_sup(isola_supervisor *s) {
  owned *o = isola_local_get(&owned_key);
  if (!o) return;
  for (isola_supervisor **p = &o->head; *p; p = &(*p)->next)
    if (*p == s) {
      *p = s->next;
      return;
    }
}

/* ---- helpers ----------------------------------------------------------- */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int owner_check(const isola_supervisor *s) {
  isola_isolate_info info;
  if (isola_current_info(&info) != ISOLA_OK) return ISOLA_ENOTISOLATE;
  if (!s) return ISOLA_EINVAL;
  return info.control_port == s->owner ? ISOLA_OK : ISOLA_ENOTOWNER;
}

static int start_child(isola_supervisor *s, size_t i) {
  child *c = &s->c[i];
  c->gen++;
  isola_value meta[2] = {isola_int((int64_t)i), isola_int((int64_t)c->gen)};
  isola_spawn_options o = {.name = c->name,
                           .on_exit = s->port,
                           .on_exit_message = isola_list(meta, 2),
                           .exit_notice = true,
                           .heap_limit = c->heap_limit};
  int rc = isola_spawn(c->entry, c->arg, &o, &c->h);
  if (rc != ISOLA_OK) return rc;
  c->state = C_RUNNING;
  c->stop_step = 0;
  if (s->on_child_start) s->on_child_start(s->ctx, i, &c->h);
  return ISOLA_OK;
}

static void end_now(void *arg);
static void seq_next(isola_supervisor *s);
static void child_ended(isola_supervisor *s, size_t i, int reason);

/* Ends the supervisor after the current event: every child is gone.
 * Without memory for the microtask, it ends as the outermost supervisor
 * entry point returns (leave()): never under a caller that still uses it,
 * such as a notice whose on_child_exit called isola_supervisor_stop(). */
static void finish(isola_supervisor *s) {
  s->mode = M_DONE;
  if (isola_microtask(end_now, s) == ISOLA_OK) return;
  s->end_due = true;
  if (s->depth == 0) end_now(s);
}

static void enter(isola_supervisor *s) { s->depth++; }

/* Leaves an entry point; s may be freed when this returns. */
static void leave(isola_supervisor *s) {
  if (--s->depth == 0 && s->end_due) end_now(s);
}

static void end_now(void *arg) {
  isola_supervisor *s = arg;
  s->end_due = false;
  if (s->timer) isola_timer_cancel(s->timer);
  s->timer = 0;
  isola_port_close(s->port);
  int reason = s->end_reason;
  char text[512];
  snprintf(text, sizeof text, "%s", s->end_detail ? s->end_detail : "");
  /* s stays valid (and listed) during on_end: should on_end throw, the
   * owner's end frees it. */
  if (s->on_end)
    s->on_end(s->ctx, reason, reason == ISOLA_EXIT_NORMAL ? NULL : text);
  bool raise = !s->on_end && reason != ISOLA_EXIT_NORMAL;
  unlink_sup(s);
  sup_free(s);
  if (raise) isola_throw("%s", text);
}

/* Gives up or stops: stops every child, then ends with reason. */
static void begin_end(isola_supervisor *s, int reason, const char *detail) {
  if (s->mode == M_END || s->mode == M_DONE) return;
  s->mode = M_END;
  s->end_reason = reason;
  free(s->end_detail);
  s->end_detail = detail ? strdup(detail) : NULL;
  if (s->seq) { /* a restart's stops go on, down to the first child */
    s->lo = 0;
    return;
  }
  s->seq = true;
  s->cur = s->n;
  s->lo = 0;
  seq_next(s);
}

static void stop_timeout(void *arg);

/* Asks c[i] to end and arms its shutdown timer. */
static void stop_child(isola_supervisor *s, size_t i) {
  child *c = &s->c[i];
  c->state = C_STOPPING;
  c->stop_step = 0;
  /* ECLOSED: it is ending already; its notice is on its way. */
  isola_kill(&c->h, ISOLA_BEFORE_NEXT_EVENT);
  if (isola_timer_start(c->shutdown_ms, 0, stop_timeout, s, &s->timer) !=
      ISOLA_OK) {
    s->timer = 0;
    c->stop_step = 1;
    isola_kill(&c->h, ISOLA_IMMEDIATE);
  }
}

/* All the children of a restart are stopped: start them again in order,
 * then handle the ends that came meanwhile. */
static void restart_done(isola_supervisor *s) {
  s->mode = M_RUN;
  for (size_t i = s->restart_from; i < s->n; i++) {
    child *c = &s->c[i];
    if (c->state != C_NONE || c->restart == ISOLA_RESTART_TEMPORARY)
      continue;
    c->pending = false;
    int rc = start_child(s, i);
    if (rc != ISOLA_OK) {
      char d[160];
      snprintf(d, sizeof d, "supervisor: child %zu (%s) could not be "
               "started again: %s", i, c->name, isola_strerror(rc));
      begin_end(s, ISOLA_EXIT_ERROR, d);
      return;
    }
  }
  for (size_t i = 0; i < s->n && s->mode == M_RUN; i++)
    if (s->c[i].pending) {
      s->c[i].pending = false;
      child_ended(s, i, s->c[i].pending_reason);
    }
}

/* Stops the next running child of the sequence, or finishes it. */
static void seq_next(isola_supervisor *s) {
  while (s->cur > s->lo) {
    size_t i = --s->cur;
    if (s->c[i].state == C_RUNNING) {
      stop_child(s, i);
      return;
    }
  }
  s->seq = false;
  if (s->mode == M_RESTART)
    restart_done(s);
  else
    finish(s);
}

static void stop_timeout_in(isola_supervisor *s);

static void stop_timeout(void *arg) {
  isola_supervisor *s = arg;
  enter(s);
  stop_timeout_in(s);
  leave(s);
}

static void stop_timeout_in(isola_supervisor *s) {
  s->timer = 0;
  if (!s->seq || s->cur >= s->n || s->c[s->cur].state != C_STOPPING) return;
  child *c = &s->c[s->cur];
  if (c->stop_step == 0) {
    c->stop_step = 1;
    isola_kill(&c->h, ISOLA_IMMEDIATE);
    if (isola_timer_start(c->shutdown_ms, 0, stop_timeout, s, &s->timer) ==
        ISOLA_OK)
      return;
    s->timer = 0;
  }
  /* Stuck in C code: stop waiting for it. */
  c->state = C_NONE;
  c->gen++; /* its notice, should it come, is stale */
  if (s->on_child_exit)
    s->on_child_exit(s->ctx, s->cur, c->h.control_port,
                     ISOLA_SUPERVISOR_ABANDONED, NULL);
  seq_next(s);
}

/* Whether the restart intensity allows one more restart now (and counts
 * it). */
static bool intensity_ok(isola_supervisor *s) {
  uint64_t t = now_ms();
  while (s->nstamps && t - s->stamps[s->first] > s->period_ms) {
    s->first = (s->first + 1) % s->max_restarts;
    s->nstamps--;
  }
  if (s->nstamps >= s->max_restarts) return false;
  s->stamps[(s->first + s->nstamps) % s->max_restarts] = t;
  s->nstamps++;
  s->restarts++;
  return true;
}

/* c[i] ended by itself while running (mode M_RUN). */
static void child_ended(isola_supervisor *s, size_t i, int reason) {
  child *c = &s->c[i];
  bool again = c->restart == ISOLA_RESTART_PERMANENT ||
               (c->restart == ISOLA_RESTART_TRANSIENT &&
                reason != ISOLA_EXIT_NORMAL);
  if (!again) return;
  if (!intensity_ok(s)) {
    char d[200];
    snprintf(d, sizeof d, "supervisor: more than %u restarts in %u ms "
             "(last: child %zu (%s) ended: %s)", s->max_restarts,
             s->period_ms, i, c->name, isola_exit_reason_name(reason));
    begin_end(s, ISOLA_EXIT_ERROR, d);
    return;
  }
  if (s->strategy == ISOLA_ONE_FOR_ONE) {
    int rc = start_child(s, i);
    if (rc != ISOLA_OK) {
      char d[160];
      snprintf(d, sizeof d, "supervisor: child %zu (%s) could not be "
               "started again: %s", i, c->name, isola_strerror(rc));
      begin_end(s, ISOLA_EXIT_ERROR, d);
    }
    return;
  }
  s->mode = M_RESTART;
  s->restart_from = s->strategy == ISOLA_ONE_FOR_ALL ? 0 : i;
  s->seq = true;
  s->cur = s->n;
  s->lo = s->restart_from;
  seq_next(s);
}

/* What the child's notice says when memory ran out while it was built. */
static const char lost_notice[] =
    "its exit notice could not be built (out of memory): why it ended is "
    "not known";

/* An exit notice [reason, isolate, detail, [index, gen]], or, should
 * memory have run out while the notice was built, the bare response
 * [index, gen]: the child ended, why is not known (told as an error). */
static void notice(isola_supervisor *s, isola_value msg);

static void on_notice(void *ctx, isola_port port, isola_value msg,
                      isola_port reply_to) {
  (void)port, (void)reply_to;
  isola_supervisor *s = ctx;
  enter(s);
  notice(s, msg);
  leave(s);
}

static void notice(isola_supervisor *s, isola_value msg) {
  isola_value v, meta;
  int64_t reason = 0, idx = -1, gen = -1;
  const char *detail = NULL;
  bool bare = msg.kind == ISOLA_LIST && msg.len == 2;
  if (bare) {
    meta = msg;
    reason = ISOLA_EXIT_ERROR;
    detail = lost_notice;
  } else if (isola_list_get(msg, 0, &v) != ISOLA_OK ||
             isola_value_get_int(v, &reason) != ISOLA_OK ||
             isola_list_get(msg, 3, &meta) != ISOLA_OK) {
    return; /* not a notice (someone else sent to the port) */
  }
  if (isola_list_get(meta, 0, &v) != ISOLA_OK ||
      isola_value_get_int(v, &idx) != ISOLA_OK ||
      isola_list_get(meta, 1, &v) != ISOLA_OK ||
      isola_value_get_int(v, &gen) != ISOLA_OK)
    return; /* not a notice */
  if (!bare && isola_list_get(msg, 2, &v) == ISOLA_OK)
    isola_value_get_str(v, &detail, NULL);
  if (s->mode == M_DONE || idx < 0 || (size_t)idx >= s->n) return;
  size_t i = (size_t)idx;
  child *c = &s->c[i];
  if ((uint64_t)gen != c->gen || c->state == C_NONE) return; /* stale */
  uint8_t was = c->state;
  c->state = C_NONE;
  if (s->on_child_exit)
    s->on_child_exit(s->ctx, i, c->h.control_port, (int)reason, detail);
  if (was == C_STOPPING && s->seq && s->cur == i) {
    if (s->timer) isola_timer_cancel(s->timer);
    s->timer = 0;
    seq_next(s);
    return;
  }
  if (s->mode == M_RUN) {
    child_ended(s, i, (int)reason);
  } else if (s->mode == M_RESTART && i < s->restart_from) {
    c->pending = true; /* outside the restart: its turn comes after */
    c->pending_reason = (int)reason;
  }
  /* M_END, or inside the restart's set: nothing more to do. */
}

/* ---- the public calls -------------------------------------------------- */

int isola_supervisor_start(const isola_supervisor_spec *spec,
                           isola_supervisor **out) {
  isola_isolate_info info;
  if (isola_current_info(&info) != ISOLA_OK) return ISOLA_ENOTISOLATE;
  if (!spec || !out || !spec->children || spec->nchildren == 0 ||
      spec->nchildren > MAX_CHILDREN || spec->strategy > ISOLA_REST_FOR_ONE ||
      spec->max_restarts > MAX_INTENSITY)
    return ISOLA_EINVAL;
  for (size_t i = 0; i < spec->nchildren; i++)
    if (!spec->children[i].entry ||
        spec->children[i].restart > ISOLA_RESTART_TEMPORARY)
      return ISOLA_EINVAL;
  owned *o = isola_local_get(&owned_key);
  isola_supervisor *s = calloc(1, sizeof *s);
  if (!o || !s) {
    free(s);
    return ISOLA_ENOMEM;
  }
  s->owner = info.control_port;
  s->strategy = (uint8_t)spec->strategy;
  s->max_restarts = spec->max_restarts;
  s->period_ms = spec->period_ms ? spec->period_ms : DEFAULT_MS;
  s->ctx = spec->ctx;
  s->on_child_start = spec->on_child_start;
  s->on_child_exit = spec->on_child_exit;
  s->on_end = spec->on_end;
  s->n = spec->nchildren;
  s->c = calloc(s->n, sizeof *s->c);
  s->stamps = calloc(s->max_restarts ? s->max_restarts : 1,
                     sizeof *s->stamps);
  int rc = s->c && s->stamps ? ISOLA_OK : ISOLA_ENOMEM;
  for (size_t i = 0; rc == ISOLA_OK && i < s->n; i++) {
    const isola_child_spec *cs = &spec->children[i];
    child *c = &s->c[i];
    c->entry = cs->entry;
    c->restart = (uint8_t)cs->restart;
    c->shutdown_ms = cs->shutdown_ms ? cs->shutdown_ms : DEFAULT_MS;
    c->heap_limit = cs->heap_limit;
    c->name = strdup(cs->name ? cs->name : "child");
    if (!c->name) rc = ISOLA_ENOMEM;
    if (rc == ISOLA_OK) rc = isola_value_copy(cs->arg, &c->arg);
  }
  if (rc == ISOLA_OK) rc = isola_port_open(on_notice, s, &s->port);
  if (rc != ISOLA_OK) {
    if (s->c) sup_free(s);
    else {
      free(s->stamps);
      free(s);
    }
    return rc;
  }
  s->next = o->head;
  o->head = s;
  for (size_t i = 0; i < s->n; i++) {
    rc = start_child(s, i);
    if (rc == ISOLA_OK) continue;
    /* Nothing is left running: those started are killed, their notices
     * find the port closed. */
    for (size_t j = 0; j < i; j++) isola_kill(&s->c[j].h, ISOLA_IMMEDIATE);
    unlink_sup(s);
    isola_port_close(s->port);
    sup_free(s);
    return rc;
  }
  *out = s;
  return ISOLA_OK;
}

int isola_supervisor_stop(isola_supervisor *sup) {
  int rc = owner_check(sup);
  if (rc != ISOLA_OK) return rc;
  enter(sup);
  begin_end(sup, ISOLA_EXIT_NORMAL, NULL);
  leave(sup); /* ends it now only if memory ran out (finish()) */
  return ISOLA_OK;
}

int isola_supervisor_child(isola_supervisor *sup, size_t index,
                           isola_isolate *out) {
  int rc = owner_check(sup);
  if (rc != ISOLA_OK) return rc;
  if (!out) return ISOLA_EINVAL;
  if (index >= sup->n) return ISOLA_ERANGE;
  if (sup->c[index].state != C_RUNNING) return ISOLA_ECLOSED;
  *out = sup->c[index].h;
  return ISOLA_OK;
}

uint64_t isola_supervisor_restarts(const isola_supervisor *sup) {
  return sup ? sup->restarts : 0;
}
