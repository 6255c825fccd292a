/* SPDX-License-Identifier: MIT */
/*
 * Isolate-local storage (issue 7 item 5): ISOLA_LOCAL values are per
 * isolate whichever pool thread runs it, initialised on first use, and
 * destroyed once when the isolate ends.
 */
#include "helpers.h"

#include <limits.h>

#ifdef ISOLA_TEST_HOOKS
#include "../src/platform/test_hooks.h"
#endif

TestSuite(local, .timeout = TH_TEST_TIMEOUT_S);

static th_counter cleaned = TH_COUNTER_INIT;
static void on_cleanup(void *data, const isola_isolate_info *info) {
  (void)data, (void)info;
  th_counter_add(&cleaned, 1);
}

static void vm_start(unsigned workers) {
  isola_config c;
  isola_config_init(&c);
  c.workers = workers;
  c.hooks.isolate_cleanup = on_cleanup;
  th_vm_init(&c);
}

/* ---------------------------------------------------------------------- */
/* Separate values across many isolates and threads                        */
/* ---------------------------------------------------------------------- */

#define MAGIC 0x15011a
typedef struct state {
  int magic; /* set by init */
  int64_t id;
  int64_t rounds;
} state;

#define MANY 1000
static _Atomic int inits;
static _Atomic int destroyed[MANY];

static void state_init(void *v) {
  state *s = v;
  TH_CHECK(s->magic == 0 && s->id == 0 && s->rounds == 0); /* zeroed */
  s->magic = MAGIC;
  atomic_fetch_add(&inits, 1);
}

static void state_destroy(void *v) {
  state *s = v;
  TH_CHECK(s->magic == MAGIC);
  TH_CHECK(s->id >= 0 && s->id < MANY);
  atomic_fetch_add(&destroyed[s->id], 1);
}

static ISOLA_LOCAL_INIT(state, the_state, state_init, state_destroy);
static ISOLA_LOCAL(int64_t, shadow); /* a second key: plain, zeroed */

static _Atomic isola_port many_port[MANY];
static th_counter many_ready = TH_COUNTER_INIT;
static th_counter many_handled = TH_COUNTER_INIT;

static void many_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)reply_to;
  int64_t id = (int64_t)(intptr_t)ctx;
  int64_t round = th_int(msg);
  state *s = isola_local_get(&the_state);
  TH_CHECK(s != NULL && s->magic == MAGIC);
  TH_CHECKF(s->id == id, "isolate %lld sees the value of %lld", (long long)id,
            (long long)s->id);
  TH_CHECK(s->rounds == round); /* every earlier round counted here */
  s->rounds++;
  int64_t *sh = isola_local_get(&shadow);
  TH_CHECK(*sh == id * 7 + round);
  (*sh)++;
  if (round == 4)
    isola_port_close(port);
  th_counter_add(&many_handled, 1);
}

static void many_entry(isola_value msg) {
  int64_t id = th_int(msg);
  state *s = isola_local_get(&the_state);
  TH_CHECK(s != NULL);
  TH_CHECK(isola_local_get(&the_state) == s); /* the same pointer */
  s->id = id;
  *(int64_t *)isola_local_get(&shadow) = id * 7;
  isola_port p;
  TH_CHECK_OK(isola_port_open(many_handler, (void *)(intptr_t)id, &p));
  atomic_store(&many_port[id], p);
  th_counter_add(&many_ready, 1);
}

Test(local, values_stay_separate_across_a_thousand_isolates) {
  vm_start(4);
  for (int i = 0; i < MANY; i++)
    TH_ASSERT_OK(isola_spawn(many_entry, isola_int(i), NULL, NULL));
  TH_WAIT_GE(&many_ready, MANY);
  /* Rounds: each isolate goes idle between them, so its next event may
   * run on any worker. */
  for (int r = 0; r < 5; r++) {
    for (int i = 0; i < MANY; i++)
      TH_ASSERT_OK(isola_send(atomic_load(&many_port[i]), isola_int(r)));
    TH_WAIT_GE(&many_handled, (long)(r + 1) * MANY);
  }
  TH_WAIT_GE(&cleaned, MANY);
  cr_assert(atomic_load(&inits) == MANY, "atomic_load(&inits) == MANY");
  for (int i = 0; i < MANY; i++)
    cr_assert(atomic_load(&destroyed[i]) == 1, "isolate %d destroyed %d times",
              i, atomic_load(&destroyed[i]));
  th_vm_shutdown_ok();
}

/* A value follows its isolate to another thread.  Made certain rather than
 * likely: in round 0, A wakes B, which runs next on A's worker (runnext is
 * never stolen, docs/design.md) and holds that worker until A has handled
 * round 1; with two workers, round 1 must run on the other one. */
static ISOLA_LOCAL(int64_t, moving);
static pthread_t a_thread[2], b_thread;
static _Atomic isola_port a_port, b_port;
static th_counter a_done = TH_COUNTER_INIT;
static th_counter b_running = TH_COUNTER_INIT;
static th_counter a_seen = TH_COUNTER_INIT;

static void b_handler(void *ctx, isola_port port, isola_value msg,
                      isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  b_thread = pthread_self();
  th_counter_add(&b_running, 1);
  TH_CHECK_WAIT_GE(&a_done, 2); /* holds this worker until A moved */
  isola_port_close(port);
}

static void b_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(b_handler, NULL, &p));
  atomic_store(&b_port, p);
  th_counter_add(&a_seen, 1);
}

static void a_handler(void *ctx, isola_port port, isola_value msg,
                      isola_port reply_to) {
  (void)ctx, (void)reply_to;
  int64_t round = th_int(msg);
  int64_t *v = isola_local_get(&moving);
  TH_CHECK(v != NULL && *v == 100 + round);
  (*v)++;
  a_thread[round] = pthread_self();
  if (round == 0)
    TH_CHECK_OK(isola_send(atomic_load(&b_port), isola_int(0)));
  else
    isola_port_close(port);
  th_counter_add(&a_done, 1);
}

static void a_entry(isola_value msg) {
  (void)msg;
  *(int64_t *)isola_local_get(&moving) = 100;
  isola_port p;
  TH_CHECK_OK(isola_port_open(a_handler, NULL, &p));
  atomic_store(&a_port, p);
  th_counter_add(&a_seen, 1);
}

Test(local, a_value_follows_its_isolate_to_another_thread) {
#ifdef ISOLA_TEST_HOOKS
  /* B must run next on A's worker: no thief may take it from runnext
   * first, which a slow turn (under qemu, say) would let one do. */
  isola__test_fail(ISOLA__FAIL_RUNNEXT_STEAL, UINT_MAX);
#endif
  vm_start(2);
  TH_ASSERT_OK(isola_spawn(b_entry, isola_null(), NULL, NULL));
  TH_ASSERT_OK(isola_spawn(a_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&a_seen, 2);
  TH_ASSERT_OK(isola_send(atomic_load(&a_port), isola_int(0)));
  TH_WAIT_GE(&b_running, 1); /* A's round-0 turn is over */
  cr_assert(pthread_equal(b_thread, a_thread[0]),
            "B did not run next on A's worker");
  TH_ASSERT_OK(isola_send(atomic_load(&a_port), isola_int(1)));
  TH_WAIT_GE(&a_done, 2);
  cr_assert(!pthread_equal(a_thread[0], a_thread[1]),
            "round 1 ran on the thread B holds");
  TH_WAIT_GE(&cleaned, 2);
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* The end, and bad paths                                                  */
/* ---------------------------------------------------------------------- */

static int order_log[8];
static int norder;
static ISOLA_LOCAL(int, first);

static void third_destroy(void *v);
static ISOLA_LOCAL_INIT(int, third, NULL, third_destroy);

static void second_destroy(void *v) {
  order_log[norder++] = *(int *)v;
  /* Newest first: first is still there while second goes; third, made
   * after second, is already gone and is not made again. */
  int *f = isola_local_get(&first);
  TH_CHECK(f != NULL && *f == 11);
  TH_CHECK(isola_local_get(&third) == NULL);
}
static ISOLA_LOCAL_INIT(int, second, NULL, second_destroy);

static void third_destroy(void *v) {
  order_log[norder++] = *(int *)v;
  int *s = isola_local_get(&second);
  TH_CHECK(s != NULL && *s == 22);
}

/* An init that asks for its own key gets the zeroed value, not a loop. */
static void selfish_init(void *v);
static ISOLA_LOCAL_INIT(int, selfish, selfish_init, NULL);
static void selfish_init(void *v) {
  int *again = isola_local_get(&selfish);
  TH_CHECK(again == v && *again == 0);
  *again = 5;
}

static ISOLA_LOCAL(char, tiny);                    /* declared size 1 */
static isola_local_key empty = {0, NULL, NULL, 0}; /* size 0: one byte */

static th_counter end_done = TH_COUNTER_INIT;
static void end_entry(isola_value msg) {
  (void)msg;
  *(int *)isola_local_get(&first) = 11;
  *(int *)isola_local_get(&second) = 22;
  *(int *)isola_local_get(&third) = 33;
  TH_CHECK(*(int *)isola_local_get(&selfish) == 5);
  TH_CHECK(isola_local_get(NULL) == NULL);
  char *t = isola_local_get(&tiny);
  TH_CHECK(t != NULL && *t == 0);
  char *e = isola_local_get(&empty);
  TH_CHECK(e != NULL && e != t);
  th_counter_add(&end_done, 1);
}

Test(local, destructors_run_newest_first_and_lookups_see_what_is_left) {
  vm_start(0);
  /* Not an isolate: no value. */
  cr_assert(isola_local_get(&first) == NULL, "isola_local_get(&first) == NULL");
  TH_ASSERT_OK(isola_spawn(end_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&end_done, 1);
  TH_WAIT_GE(&cleaned, 1);
  cr_assert(norder == 2, "norder == 2");
  cr_assert(order_log[0] == 33 && order_log[1] == 22,
            "order_log[0] == 33 && order_log[1] == 22");
  th_vm_shutdown_ok();
}

/* Killed isolates destroy their values too. */
static _Atomic int killed_destroyed;
static void count_destroy(void *v) {
  TH_CHECK(*(int *)v == 99);
  atomic_fetch_add(&killed_destroyed, 1);
}
static ISOLA_LOCAL_INIT(int, doomed, NULL, count_destroy);
static th_counter doomed_ready = TH_COUNTER_INIT;
static void doomed_handler(void *ctx, isola_port port, isola_value msg,
                           isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
}
static void doomed_entry(isola_value msg) {
  (void)msg;
  *(int *)isola_local_get(&doomed) = 99;
  isola_port p;
  TH_CHECK_OK(isola_port_open(doomed_handler, NULL, &p));
  th_counter_add(&doomed_ready, 1);
}

Test(local, killed_isolates_destroy_their_values_once) {
  vm_start(0);
  enum { N = 50 };
  isola_isolate h[N];
  for (int i = 0; i < N; i++)
    TH_ASSERT_OK(isola_spawn(doomed_entry, isola_null(), NULL, &h[i]));
  TH_WAIT_GE(&doomed_ready, N);
  for (int i = 0; i < N; i++)
    TH_ASSERT_OK(isola_kill(&h[i], ISOLA_IMMEDIATE));
  TH_WAIT_GE(&cleaned, N);
  cr_assert(atomic_load(&killed_destroyed) == N,
            "atomic_load(&killed_destroyed) == N");
  th_vm_shutdown_ok();
}
