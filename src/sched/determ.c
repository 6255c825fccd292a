/* SPDX-License-Identifier: MIT */
/* determ.c — the baton and the PRNG of the deterministic scheduling mode
 * (determ.h).  Built only with -DISOLA_DETERMINISTIC=ON. */
#include "determ.h"

#include <pthread.h>
#include <stdlib.h>

#include <stdio.h>

#include "platform.h"

/* OUTSIDE: in a blocking section (isola_blocking_begin): runs without the
 * baton, as a thread outside the VM would. */
enum { READY = 1, RUNNING, PARKED, OUTSIDE };

/* A participant: a pool thread (key: its isola__thread) or a root isolate's
 * thread (key: NULL). */
typedef struct det_rec {
  const void *key;
  uint32_t id; /* order of registration in this VM: names it in the trace */
  int state;
  _Atomic uint32_t *word; /* PARKED on */
  struct det_rec *next;
} det_rec;

/* Everything below is under mu. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static det_rec *recs; /* in order of registration */
static det_rec *holder; /* holds the baton; NULL: nobody */
static bool open_;       /* work has come in since the VM started */
static uint32_t next_id;
static uint64_t prng, seed_used, seed_set;
static bool has_seed_set;
static uint64_t trace_hash, trace_steps;

static _Thread_local det_rec *me;

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

/* splitmix64 */
static uint64_t next_u64(void) {
  uint64_t z = (prng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void note(int kind, uint32_t n, uint32_t k) {
  uint64_t v = (uint64_t)(unsigned)kind << 48 ^ (uint64_t)n << 24 ^ k;
  for (int i = 0; i < 8; i++) {
    trace_hash ^= (v >> (8 * i)) & 0xff;
    trace_hash *= FNV_PRIME;
  }
  trace_steps++;
}

static uint32_t draw(int kind, uint32_t n) {
  uint32_t k = (uint32_t)(((next_u64() >> 32) * n) >> 32);
  note(kind, n, k);
  return k;
}

/* The baton goes to a ready participant the PRNG chooses; nobody holds it
 * when none is ready or work has not come in yet. */
static void pass_locked(int kind) {
  holder = NULL;
  if (!open_) return;
  uint32_t n = 0;
  for (det_rec *r = recs; r; r = r->next)
    if (r->state == READY) n++;
  if (n == 0) return;
  uint32_t k = draw(kind, n);
  for (det_rec *r = recs; r; r = r->next)
    if (r->state == READY && k-- == 0) {
      holder = r;
      r->state = RUNNING;
      note(kind, 0, r->id); /* who, not only which of n */
      break;
    }
  pthread_cond_broadcast(&cv);
}

static void wait_baton_locked(void) {
  while (holder != me) pthread_cond_wait(&cv, &mu);
}

static det_rec *rec_new(const void *key) {
  det_rec *r = calloc(1, sizeof *r);
  /* A test-only build: a participant the baton cannot know of would break
   * every guarantee of the mode, so running out here ends the test. */
  if (!r) abort();
  r->key = key;
  r->id = next_id++;
  r->state = READY;
  det_rec **pp = &recs;
  while (*pp) pp = &(*pp)->next;
  *pp = r;
  return r;
}

static void rec_remove_locked(det_rec *r) {
  det_rec **pp = &recs;
  while (*pp != r) pp = &(*pp)->next;
  *pp = r->next;
}

void isola__det_set_seed(uint64_t seed) {
  pthread_mutex_lock(&mu);
  seed_set = seed;
  has_seed_set = true;
  pthread_mutex_unlock(&mu);
}

uint64_t isola__det_seed(void) {
  pthread_mutex_lock(&mu);
  uint64_t s = seed_used;
  pthread_mutex_unlock(&mu);
  return s;
}

uint64_t isola__det_trace(uint64_t *steps) {
  pthread_mutex_lock(&mu);
  uint64_t h = trace_hash;
  if (steps) *steps = trace_steps;
  pthread_mutex_unlock(&mu);
  return h;
}

void isola__det_vm_start(void) {
  pthread_mutex_lock(&mu);
  uint64_t seed = 1;
  const char *env = getenv("ISOLA_SCHED_SEED");
  if (has_seed_set)
    seed = seed_set;
  else if (env && *env)
    seed = strtoull(env, NULL, 0);
  seed_used = seed;
  prng = seed;
  trace_hash = FNV_OFFSET;
  trace_steps = 0;
  open_ = false;
  holder = NULL;
  /* The last VM's threads have all left (its shutdown joined them). */
  if (!recs) next_id = 0;
  pthread_mutex_unlock(&mu);
}

void isola__det_register(const void *key) {
  pthread_mutex_lock(&mu);
  rec_new(key);
  if (!holder) pass_locked(ISOLA__DET_WAKE_THREAD);
  pthread_mutex_unlock(&mu);
}

void isola__det_unregister(const void *key) {
  pthread_mutex_lock(&mu);
  for (det_rec *r = recs; r; r = r->next)
    if (r->key == key) {
      rec_remove_locked(r);
      if (holder == r) pass_locked(ISOLA__DET_PARK);
      free(r);
      break;
    }
  pthread_mutex_unlock(&mu);
}

void isola__det_start(const void *key) {
  pthread_mutex_lock(&mu);
  for (det_rec *r = recs; r; r = r->next)
    if (r->key == key) me = r;
  if (me) wait_baton_locked();
  pthread_mutex_unlock(&mu);
}

void isola__det_enter(void) {
  pthread_mutex_lock(&mu);
  me = rec_new(NULL);
  open_ = true;
  if (!holder) pass_locked(ISOLA__DET_TURN_START);
  wait_baton_locked();
  pthread_mutex_unlock(&mu);
}

void isola__det_leave(void) {
  if (!me) return;
  pthread_mutex_lock(&mu);
  rec_remove_locked(me);
  if (holder == me) pass_locked(ISOLA__DET_TURN_END);
  free(me);
  me = NULL;
  pthread_mutex_unlock(&mu);
}

void isola__det_open(void) {
  pthread_mutex_lock(&mu);
  if (!open_) {
    open_ = true;
    if (!holder) pass_locked(ISOLA__DET_TURN_START);
  }
  pthread_mutex_unlock(&mu);
}

void isola__det_point(int kind) {
  if (!me) return;
  pthread_mutex_lock(&mu);
  if (me->state == OUTSIDE) {
    pthread_mutex_unlock(&mu);
    return;
  }
  me->state = READY;
  pass_locked(kind);
  wait_baton_locked();
  pthread_mutex_unlock(&mu);
}

void isola__det_wait(_Atomic uint32_t *word, uint32_t expected) {
  if (!me) {
    /* Not a participant (cannot happen in the runtime's own use): wait as
     * the plain build does. */
    isola__plat_wait(word, expected, 1000000u);
    return;
  }
  pthread_mutex_lock(&mu);
  if (atomic_load_explicit(word, memory_order_seq_cst) == expected) {
    me->state = PARKED;
    me->word = word;
    pass_locked(ISOLA__DET_PARK);
    wait_baton_locked();
  }
  pthread_mutex_unlock(&mu);
}

void isola__det_wake(_Atomic uint32_t *word) {
  pthread_mutex_lock(&mu);
  bool any = false;
  for (det_rec *r = recs; r; r = r->next)
    if (r->state == PARKED && r->word == word) {
      r->state = READY;
      r->word = NULL;
      any = true;
    }
  if (any && !holder) pass_locked(ISOLA__DET_WAKE_THREAD);
  pthread_mutex_unlock(&mu);
  if (!any) isola__plat_wake_one(word); /* a non-participant's wait */
}

uint32_t isola__det_rand(int kind, uint32_t n) {
  pthread_mutex_lock(&mu);
  uint32_t k = draw(kind, n);
  pthread_mutex_unlock(&mu);
  return k;
}

void isola__det_step_out(void) {
  if (!me) return;
  pthread_mutex_lock(&mu);
  me->state = OUTSIDE;
  if (holder == me) pass_locked(ISOLA__DET_PARK);
  pthread_mutex_unlock(&mu);
}

void isola__det_step_in(void) {
  if (!me) return;
  pthread_mutex_lock(&mu);
  if (me->state == OUTSIDE) {
    me->state = READY;
    if (!holder) pass_locked(ISOLA__DET_WAKE_THREAD);
    wait_baton_locked();
  }
  pthread_mutex_unlock(&mu);
}

uint64_t isola__det_now(void) {
  pthread_mutex_lock(&mu);
  uint64_t now = trace_steps * 1000u;
  pthread_mutex_unlock(&mu);
  return now;
}

bool isola__det_give_up(void) {
  isola__det_point(ISOLA__DET_SPIN);
  return isola__det_rand(ISOLA__DET_SPIN, 4) == 0;
}

size_t isola__det_describe(char *buf, size_t size) {
  static const char *const names[] = {"?", "ready", "running", "parked",
                                      "outside"};
  size_t len = 0;
  pthread_mutex_lock(&mu);
  int n = snprintf(buf, size, "baton %s, holder %d:", open_ ? "open" : "closed",
                   holder ? (int)holder->id : -1);
  if (n > 0) len = (size_t)n < size ? (size_t)n : size;
  for (det_rec *r = recs; r && len < size; r = r->next) {
    n = snprintf(buf + len, size - len, " %u=%s%s", (unsigned)r->id,
                 names[r->state], r->key ? "" : "(root)");
    if (n > 0) len += (size_t)n < size - len ? (size_t)n : size - len;
  }
  pthread_mutex_unlock(&mu);
  return len;
}
