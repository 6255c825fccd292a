/* SPDX-License-Identifier: MIT */
/* event_handler.c — the event handler thread: timers and file-descriptor
 * watches (see event_handler.h). */
#include "event_handler.h"

#include <stdlib.h>

#include <setjmp.h>

#include "control.h"
#include "epoch.h"
#include "heap.h"
#include "lifecycle.h"
#include "message.h"
#include "send.h"
#include "platform.h"
#include "test_hooks.h"
#include "vm.h"

struct isola__timer {
  uint64_t id;
  uint64_t due;    /* monotonic ns; under the timers lock */
  uint64_t period; /* ns; 0: one-shot */
  uint64_t seq;    /* creation order: ties on due run in this order */
  size_t index;    /* in the heap, or SIZE_MAX when not in it */
  isola_port port; /* the owner's control port */
  isola_timer_fn fn;
  void *arg;
  /* A periodic tick is posted and not yet handled: the next tick waits, so
   * a slow or paused isolate does not pile ticks up. */
  _Atomic bool in_flight;
};

/* A file-descriptor watch.  The isolate owns it until it closes it; then
 * the thread frees it (after any event of its already in hand), so the
 * epoll key can be its address. */
struct isola__watch {
  uint64_t id;
  int fd;
  uint32_t events;
  isola_port port; /* the owner's control port */
  isola_watch_fn fn;
  void *arg;
  bool closed;                 /* under the lock */
  struct isola__watch *next_dead; /* the graveyard, under the lock */
  /* An event whose message could not be built, to post again (under the
   * lock): epoll reports a one-shot watch once. */
  bool retrying;
  uint32_t retry_events;
  struct isola__watch *next_retry;
};

/* The isolate's own list of its timers (owner only), in iso->ext. */
struct isola__iso_timers {
  size_t n, cap;
  isola__timer **items;
  size_t nw, capw; /* its watches */
  isola__watch **watches;
};
typedef struct isola__iso_timers isola__iso_timers;

/* ---- the heap (under ts->lock) ------------------------------------------ */

static bool before(const isola__timer *a, const isola__timer *b) {
  return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void place(isola__timers *ts, size_t i, isola__timer *t) {
  ts->heap[i] = t;
  t->index = i;
}

static void sift_up(isola__timers *ts, size_t i) {
  isola__timer *t = ts->heap[i];
  while (i > 0 && before(t, ts->heap[(i - 1) / 2])) {
    place(ts, i, ts->heap[(i - 1) / 2]);
    i = (i - 1) / 2;
  }
  place(ts, i, t);
}

static void sift_down(isola__timers *ts, size_t i) {
  isola__timer *t = ts->heap[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= ts->n)
      break;
    if (c + 1 < ts->n && before(ts->heap[c + 1], ts->heap[c]))
      c++;
    if (!before(ts->heap[c], t))
      break;
    place(ts, i, ts->heap[c]);
    i = c;
  }
  place(ts, i, t);
}

static void heap_remove(isola__timers *ts, isola__timer *t) {
  size_t i = t->index;
  t->index = SIZE_MAX;
  isola__timer *last = ts->heap[--ts->n];
  if (i == ts->n)
    return;
  place(ts, i, last);
  sift_down(ts, i);
  sift_up(ts, last->index);
}

/* ---- the thread --------------------------------------------------------- */

/* A due event whose message cannot be built (memory is short) is not
 * dropped: the timer stays in the heap, due again this much later, and an
 * fd event waits on the retry list; the thread tries again then. */
#define RETRY_NS 1000000u

/* The message for one due event, or NULL when out of memory. */
static isola__msg *due_msg(isola_port port, uint64_t id, uint32_t type,
                           uint32_t events) {
  isola__msg *m;
  if (isola__test_failing(ISOLA__FAIL_EVENT_MSG) ||
      isola__msg_new(isola_int((int64_t)id), &m) != ISOLA_OK)
    return NULL;
  m->type = type;
  m->dest = port;
  m->reply_to = events; /* fd events ride in the unused field */
  return m;
}

/* Posts what came due: online while we look ports up (epoch.h).  A post
 * fails only for a closed port: the isolate ended meanwhile. */
static void post_all(isola__vm *vm, isola__epoch_rec *rec, isola__msg **due,
                     size_t n) {
  isola__epoch_online(&vm->epoch, rec);
  for (size_t i = 0; i < n; i++) isola__post(vm, due[i]);
  isola__epoch_offline(rec);
}

/* Takes the due timers off (or along) the heap and builds their messages
 * into due; returns how many.  Under ts->lock. */
static size_t take_due_timers(isola__timers *ts, uint64_t now,
                              isola__msg **due, size_t max) {
  size_t ndue = 0;
  while (ts->n && ts->heap[0]->due <= now && ndue < max) {
    isola__timer *t = ts->heap[0];
    bool post = !t->period ||
                !atomic_load_explicit(&t->in_flight, memory_order_acquire);
    isola__msg *m = NULL;
    if (post &&
        !(m = due_msg(t->port, t->id, ISOLA__MSG_TIMER, 0))) {
      t->due = now + RETRY_NS; /* nothing is lost: due again soon */
      sift_down(ts, 0);
      continue;
    }
    if (t->period) {
      /* A periodic tick is posted and not yet handled: the next tick
       * waits, so a slow or paused isolate does not pile ticks up. */
      if (post)
        atomic_store_explicit(&t->in_flight, true, memory_order_relaxed);
      /* Next tick from the one due, not from now: no drift. */
      t->due += t->period;
      if (t->due <= now) t->due = now + t->period; /* fell behind */
      sift_down(ts, 0);
    } else {
      heap_remove(ts, t);
    }
    if (m) due[ndue++] = m;
  }
  return ndue;
}

/* Builds the messages of fd events waiting for memory.  Under ts->lock;
 * with rec NULL only drops the closed watches. */
static size_t take_retries(isola__timers *ts, isola__epoch_rec *rec,
                           isola__msg **due, size_t max, size_t ndue) {
  isola__watch **pp = &ts->retry;
  while (*pp) {
    isola__watch *w = *pp;
    isola__msg *m = NULL;
    if (!w->closed) {
      if (!rec || ndue >= max ||
          !(m = due_msg(w->port, w->id, ISOLA__MSG_FD, w->retry_events))) {
        pp = &w->next_retry;
        continue;
      }
      due[ndue++] = m;
    }
    *pp = w->next_retry;
    w->retrying = false;
  }
  return ndue;
}

static isola__epoch_rec *event_rec(isola__vm *vm) {
  if (isola__test_failing(ISOLA__FAIL_EVENT_REC)) return NULL;
  isola__epoch_rec *rec = isola__epoch_register(&vm->epoch);
  /* This thread's record, where the check of every post (send.c) looks. */
  isola__t.rec = rec;
  isola__t.rec_vm_gen = vm->gen;
  isola__t.tstats = rec ? &rec->stats : &isola__tstats_sink;
  return rec;
}

static void *event_thread(void *arg) {
  isola__timers *ts = arg;
  isola__vm *vm = isola__vm_get();
  /* Without a record the thread posts nothing (it could not keep the
   * receiver alive while it pushes): what is due waits, and the
   * registration is tried again, every RETRY_NS. */
  isola__epoch_rec *rec = event_rec(vm);
  isola__msg *due[64];
  isola__poll_event ev[64];
  for (;;) {
    if (!rec) rec = event_rec(vm);
    size_t ndue = 0;
    uint64_t wait = UINT64_MAX;
    pthread_mutex_lock(&ts->lock);
    if (ts->stopping) {
      pthread_mutex_unlock(&ts->lock);
      break;
    }
    /* Closed watches leave the retry list first, then, no event of theirs
     * being in hand any more, they can go. */
    ndue = take_retries(ts, rec, due, 64, 0);
    while (ts->graveyard) {
      isola__watch *w = ts->graveyard;
      ts->graveyard = w->next_dead;
      free(w);
    }
    uint64_t now = isola__plat_now_ns();
    if (rec) ndue += take_due_timers(ts, now, due + ndue, 64 - ndue);
    if (ts->n && ndue < 64)
      wait = ts->heap[0]->due > now ? ts->heap[0]->due - now : 0;
    if ((ts->retry || !rec) && wait > RETRY_NS) wait = RETRY_NS;
    pthread_mutex_unlock(&ts->lock);

    if (ndue) {
      post_all(vm, rec, due, ndue);
      continue; /* look again: more may be due */
    }
    int n = isola__plat_poller_wait(ts->poller, wait, ev, 64);
    if (n <= 0) continue;
    pthread_mutex_lock(&ts->lock);
    for (int i = 0; i < n; i++) {
      isola__watch *w = (isola__watch *)(uintptr_t)ev[i].key;
      if (w->closed) continue; /* closed after the kernel reported it */
      isola__msg *m =
          rec ? due_msg(w->port, w->id, ISOLA__MSG_FD, ev[i].events) : NULL;
      if (m) {
        due[ndue++] = m;
      } else if (!w->retrying) {
        /* One-shot: epoll will not report it again; keep the event. */
        w->retrying = true;
        w->retry_events = ev[i].events;
        w->next_retry = ts->retry;
        ts->retry = w;
      }
    }
    pthread_mutex_unlock(&ts->lock);
    if (ndue) post_all(vm, rec, due, ndue);
  }
  isola__t.rec = NULL;
  isola__t.tstats = &isola__tstats_sink;
  if (rec) isola__epoch_unregister(rec);
  return NULL;
}

/* Starts the thread with the first timer or watch.  Under ts->lock. */
static int start_locked(isola__timers *ts) {
  if (ts->started) return ISOLA_OK;
  if (!ts->poller && !(ts->poller = isola__plat_poller_open()))
    return ISOLA_ESYS;
  if (pthread_create(&ts->thread, NULL, event_thread, ts) != 0)
    return ISOLA_ESYS;
  ts->started = true;
  return ISOLA_OK;
}

void isola__timers_init(isola__timers *ts) {
  pthread_mutex_init(&ts->lock, NULL);
  ts->poller = NULL;
  ts->graveyard = NULL;
  ts->retry = NULL;
  ts->heap = NULL;
  ts->n = ts->cap = 0;
  ts->seq = 0;
  atomic_init(&ts->next_id, 1);
  ts->started = ts->stopping = false;
}

void isola__timers_destroy(isola__timers *ts) {
  pthread_mutex_lock(&ts->lock);
  ts->stopping = true;
  bool started = ts->started;
  pthread_mutex_unlock(&ts->lock);
  if (started) {
    isola__plat_poller_wake(ts->poller);
    pthread_join(ts->thread, NULL);
  }
  while (ts->graveyard) {
    isola__watch *w = ts->graveyard;
    ts->graveyard = w->next_dead;
    free(w);
  }
  isola__plat_poller_close(ts->poller);
  ts->poller = NULL;
  free(ts->heap);
  ts->heap = NULL;
  pthread_mutex_destroy(&ts->lock);
}

/* ---- the isolate's side ------------------------------------------------- */

/* The isolate's timers, or NULL. */
static isola__iso_timers *own_of(isola__isolate *iso) {
  return iso->ext ? iso->ext->timers : NULL;
}

static size_t find(isola__iso_timers *own, uint64_t id) {
  if (own)
    for (size_t i = 0; i < own->n; i++)
      if (own->items[i]->id == id)
        return i;
  return SIZE_MAX;
}

/* Removes own->items[i] (order kept: cancel_all frees in creation order). */
static void forget(isola__isolate *iso, size_t i) {
  isola__iso_timers *own = own_of(iso);
  for (size_t k = i + 1; k < own->n; k++)
    own->items[k - 1] = own->items[k];
  own->n--;
  /* A timer counted as a live port (event_handler.h). */
  isola__st32(&iso->live_ports, isola__ld32(&iso->live_ports) - 1);
}

int isola_timer_start(uint64_t delay_ms, uint64_t period_ms, isola_timer_fn fn,
                      void *arg, isola_timer *out) {
  if (!fn || !out)
    return ISOLA_EINVAL;
  isola__isolate *iso;
  int orc = isola__life_opening(&iso);
  if (orc != ISOLA_OK)
    return orc;
  if (delay_ms > UINT64_MAX / 2000000u || period_ms > UINT64_MAX / 2000000u)
    return ISOLA_EINVAL;
  isola__vm *vm = isola__vm_get();
  isola__timers *ts = &vm->timers;
  struct isola__ext *x = isola__ext_get(iso);
  if (!x)
    return ISOLA_ENOMEM;
  isola__iso_timers *own = x->timers;
  if (!own) {
    own = x->timers = calloc(1, sizeof *own);
    if (!own)
      return ISOLA_ENOMEM;
  }
  if (own->n == own->cap) {
    size_t cap = own->cap ? own->cap * 2 : 4;
    isola__timer **v = realloc(own->items, cap * sizeof *v);
    if (!v)
      return ISOLA_ENOMEM;
    own->items = v;
    own->cap = cap;
  }
  isola__timer *t = malloc(sizeof *t);
  if (!t)
    return ISOLA_ENOMEM;
  t->id = atomic_fetch_add_explicit(&ts->next_id, 1, memory_order_relaxed);
  t->period = period_ms * 1000000u;
  t->port = iso->control_port;
  t->fn = fn;
  t->arg = arg;
  atomic_init(&t->in_flight, false);
  int rc = ISOLA_OK;
  bool earliest = false;
  pthread_mutex_lock(&ts->lock);
  if (ts->stopping) {
    rc = ISOLA_ESHUTDOWN;
  } else if (ts->n == ts->cap) {
    size_t cap = ts->cap ? ts->cap * 2 : 64;
    isola__timer **v = realloc(ts->heap, cap * sizeof *v);
    if (!v)
      rc = ISOLA_ENOMEM;
    else {
      ts->heap = v;
      ts->cap = cap;
    }
  }
  if (rc == ISOLA_OK) rc = start_locked(ts);
  if (rc == ISOLA_OK) {
    t->due = isola__plat_now_ns() + delay_ms * 1000000u;
    t->seq = ts->seq++;
    place(ts, ts->n++, t);
    sift_up(ts, t->index);
    earliest = t->index == 0;
  }
  pthread_mutex_unlock(&ts->lock);
  if (rc != ISOLA_OK) {
    free(t);
    return rc;
  }
  if (earliest) {
    /* The thread re-reads the heap when its wait returns. */
    isola__plat_poller_wake(ts->poller);
  }
  own->items[own->n++] = t;
  isola__st32(&iso->live_ports, isola__ld32(&iso->live_ports) + 1);
  *out = t->id;
  return ISOLA_OK;
}

int isola_timer_cancel(isola_timer timer) {
  isola__isolate *iso = isola__t.current;
  if (!iso)
    return ISOLA_ENOTISOLATE;
  isola__iso_timers *own = own_of(iso);
  size_t i = find(own, timer);
  if (i == SIZE_MAX)
    return ISOLA_ECLOSED;
  isola__vm *vm = isola__vm_get();
  isola__timer *t = own->items[i];
  pthread_mutex_lock(&vm->timers.lock);
  if (t->index != SIZE_MAX)
    heap_remove(&vm->timers, t);
  pthread_mutex_unlock(&vm->timers.lock);
  forget(iso, i);
  free(t); /* a tick already posted finds no timer and is dropped */
  return ISOLA_OK;
}

void isola__timer_fire(isola__vm *vm, isola__isolate *iso, isola__msg *m) {
  (void)vm;
  isola__iso_timers *own = own_of(iso);
  size_t i = find(own, (uint64_t)m->value.as.i);
  if (i == SIZE_MAX)
    return; /* cancelled after it was posted */
  isola__timer *t = own->items[i];
  isola_timer_fn fn = t->fn;
  void *arg = t->arg;
  if (t->period) {
    atomic_store_explicit(&t->in_flight, false, memory_order_release);
  } else {
    /* A one-shot is out of the heap once posted: it is over. */
    forget(iso, i);
    free(t);
  }
  fn(arg);
}

static void watch_drop(isola__vm *vm, isola__isolate *iso, size_t i);

void isola__timers_cancel_all(isola__vm *vm, isola__isolate *iso) {
  isola__iso_timers *own = own_of(iso);
  if (!own)
    return;
  pthread_mutex_lock(&vm->timers.lock);
  for (size_t i = 0; i < own->n; i++)
    if (own->items[i]->index != SIZE_MAX)
      heap_remove(&vm->timers, own->items[i]);
  pthread_mutex_unlock(&vm->timers.lock);
  while (own->n) {
    isola__timer *t = own->items[own->n - 1];
    forget(iso, own->n - 1);
    free(t);
  }
  free(own->items);
  while (own->nw) watch_drop(vm, iso, own->nw - 1);
  free(own->watches);
  free(own);
  iso->ext->timers = NULL;
}

/* ---- file-descriptor watches -------------------------------------------- */

static isola__iso_timers *own_get(isola__isolate *iso) {
  struct isola__ext *x = isola__ext_get(iso);
  if (!x) return NULL;
  if (!x->timers) x->timers = calloc(1, sizeof *x->timers);
  return x->timers;
}

static size_t find_watch(isola__iso_timers *own, uint64_t id) {
  if (own)
    for (size_t i = 0; i < own->nw; i++)
      if (own->watches[i]->id == id) return i;
  return SIZE_MAX;
}

static uint32_t poll_bits(uint32_t events) {
  return (events & ISOLA_READABLE ? ISOLA__POLL_IN : 0) |
         (events & ISOLA_WRITABLE ? ISOLA__POLL_OUT : 0);
}

int isola_watch_open(int fd, uint32_t events, isola_watch_fn fn, void *arg,
                     isola_watch *out) {
  if (fd < 0 || !fn || !out || !(events & (ISOLA_READABLE | ISOLA_WRITABLE)) ||
      (events & ~(uint32_t)(ISOLA_READABLE | ISOLA_WRITABLE)))
    return ISOLA_EINVAL;
  isola__isolate *iso;
  int orc = isola__life_opening(&iso);
  if (orc != ISOLA_OK) return orc;
  isola__vm *vm = isola__vm_get();
  isola__timers *ts = &vm->timers;
  isola__iso_timers *own = own_get(iso);
  if (!own) return ISOLA_ENOMEM;
  if (own->nw == own->capw) {
    size_t cap = own->capw ? own->capw * 2 : 4;
    isola__watch **v = realloc(own->watches, cap * sizeof *v);
    if (!v) return ISOLA_ENOMEM;
    own->watches = v;
    own->capw = cap;
  }
  isola__watch *w = calloc(1, sizeof *w);
  if (!w) return ISOLA_ENOMEM;
  w->id = atomic_fetch_add_explicit(&ts->next_id, 1, memory_order_relaxed);
  w->fd = fd;
  w->events = events;
  w->port = iso->control_port;
  w->fn = fn;
  w->arg = arg;
  pthread_mutex_lock(&ts->lock);
  int rc = ts->stopping ? ISOLA_ESHUTDOWN : start_locked(ts);
  pthread_mutex_unlock(&ts->lock);
  if (rc == ISOLA_OK &&
      isola__plat_poller_arm(ts->poller, fd, poll_bits(events),
                             (uint64_t)(uintptr_t)w, true) != 0)
    rc = ISOLA_ESYS; /* a bad fd, or one already watched */
  if (rc != ISOLA_OK) {
    free(w);
    return rc;
  }
  own->watches[own->nw++] = w;
  isola__st32(&iso->live_ports, isola__ld32(&iso->live_ports) + 1);
  *out = w->id;
  return ISOLA_OK;
}

/* Unregisters and hands w to the thread to free. */
static void watch_drop(isola__vm *vm, isola__isolate *iso, size_t i) {
  isola__iso_timers *own = own_of(iso);
  isola__watch *w = own->watches[i];
  own->watches[i] = own->watches[--own->nw];
  isola__st32(&iso->live_ports, isola__ld32(&iso->live_ports) - 1);
  isola__timers *ts = &vm->timers;
  isola__plat_poller_del(ts->poller, w->fd);
  pthread_mutex_lock(&ts->lock);
  w->closed = true;
  w->next_dead = ts->graveyard;
  ts->graveyard = w;
  pthread_mutex_unlock(&ts->lock);
}

int isola_watch_set_events(isola_watch watch, uint32_t events) {
  if (events & ~(uint32_t)(ISOLA_READABLE | ISOLA_WRITABLE))
    return ISOLA_EINVAL;
  isola__isolate *iso = isola__t.current;
  if (!iso) return ISOLA_ENOTISOLATE;
  isola__iso_timers *own = own_of(iso);
  size_t i = find_watch(own, watch);
  if (i == SIZE_MAX) return ISOLA_ECLOSED;
  isola__watch *w = own->watches[i];
  w->events = events;
  /* Armed now (one-shot, as ever).  An event already posted is delivered
   * as it was, and its fire re-arms with the new events; so the callback
   * may see one readiness it no longer asked for. */
  if (isola__plat_poller_arm(isola__vm_get()->timers.poller, w->fd,
                             poll_bits(events), (uint64_t)(uintptr_t)w,
                             false) != 0)
    return ISOLA_ESYS;
  return ISOLA_OK;
}

int isola_watch_close(isola_watch watch) {
  isola__isolate *iso = isola__t.current;
  if (!iso) return ISOLA_ENOTISOLATE;
  size_t i = find_watch(own_of(iso), watch);
  if (i == SIZE_MAX) return ISOLA_ECLOSED;
  watch_drop(isola__vm_get(), iso, i);
  return ISOLA_OK;
}

/* Re-arms the one-shot watch id after its event, unless it was closed
 * meanwhile or waits for nothing (isola_watch_set_events(0): a hang-up
 * would be reported again and again); a watch whose fd went away is
 * closed. */
static void watch_rearm(isola__vm *vm, isola__isolate *iso, uint64_t id,
                        bool tell) {
  size_t i = find_watch(own_of(iso), id);
  if (i == SIZE_MAX) return;
  isola__watch *w = own_of(iso)->watches[i];
  if (!w->events) return;
  if (isola__plat_poller_arm(vm->timers.poller, w->fd, poll_bits(w->events),
                             (uint64_t)(uintptr_t)w, false) != 0) {
    /* The OS refused (out of memory, or the fd went away): the watch is
     * closed, and its owner is told once with ISOLA_FD_ERROR rather than
     * left waiting for an event that will never come (the fault sweep's
     * stream scenario hung here). */
    isola_watch_fn fn = w->fn;
    int fd = w->fd;
    void *arg = w->arg;
    watch_drop(vm, iso, i);
    if (tell) fn(fd, ISOLA_FD_ERROR, arg);
  }
}

void isola__watch_fire(isola__vm *vm, isola__isolate *iso, isola__msg *m) {
  isola__iso_timers *own = own_of(iso);
  uint64_t id = (uint64_t)m->value.as.i;
  size_t i = find_watch(own, id);
  if (i == SIZE_MAX) return; /* closed after the event was posted */
  isola__watch *w = own->watches[i];
  uint32_t got = 0;
  if (m->reply_to & ISOLA__POLL_IN) got |= ISOLA_READABLE;
  if (m->reply_to & ISOLA__POLL_OUT) got |= ISOLA_WRITABLE;
  if (m->reply_to & ISOLA__POLL_ERR) got |= ISOLA_FD_ERROR;
  /* A callback that throws leaves by a jump to the turn: catch it on the
   * way, so that with errors non-fatal the watch is re-armed and keeps
   * working, then let it go on to the turn as it was.  (A kill or
   * isola_exit ends the isolate, which closes the watch anyway.) */
  void *turn = iso->unwind;
  jmp_buf jb;
  int code = turn ? setjmp(jb) : 0;
  if (code == 0) {
    if (turn) iso->unwind = &jb;
    w->fn(w->fd, got, w->arg);
    iso->unwind = turn;
    watch_rearm(vm, iso, id, true);
    return;
  }
  iso->unwind = turn;
  if (code == ISOLA__UNWIND_ERROR) watch_rearm(vm, iso, id, false);
  longjmp(*(jmp_buf *)turn, code);
}

void isola__timers_count(const isola__isolate *iso, uint32_t *timers,
                         uint32_t *watches) {
  const isola__iso_timers *own = iso->ext ? iso->ext->timers : NULL;
  *timers = own ? (uint32_t)own->n : 0;
  *watches = own ? (uint32_t)own->nw : 0;
}
