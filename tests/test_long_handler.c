/* SPDX-License-Identifier: MIT */
/*
 * test_long_handler.c — a handler that runs for long strands nothing
 * (issue 11.7, 11.10, 18.2): what waits on its worker runs elsewhere, a
 * ping it answers is delivered while it goes on, and ended isolates are
 * still freed while it (or an isolate that sends itself messages without
 * end) keeps one turn going.
 */
#include "helpers.h"

#include <sched.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(long_handler, .timeout = TH_TEST_TIMEOUT_S);

static _Atomic bool stop_all;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static isola_config two_workers(void) {
  isola_config c;
  isola_config_init(&c);
  c.workers = 2;
  return c;
}

/* ---- a receiver readied by a long handler (11.7) ----------------------- */

static _Atomic bool r1_got;
static isola_port r1_port, r2_port;
static th_counter receivers_ready = TH_COUNTER_INIT;
static th_counter long_done = TH_COUNTER_INIT;

static void receiver_handler(void *ctx, isola_port port, isola_value msg,
                             isola_port reply_to) {
  (void)msg, (void)reply_to;
  if (ctx) atomic_store(&r1_got, true);
  TH_CHECK_OK(isola_port_close(port));
}

static void receiver_entry(isola_value msg) {
  isola_port *where = msg.as.i ? &r1_port : &r2_port;
  TH_CHECK_OK(isola_port_open(receiver_handler, msg.as.i ? (void *)1 : NULL,
                              where));
  th_counter_add(&receivers_ready, 1);
}

static void long_entry(isola_value msg) {
  (void)msg;
  /* The send to r2 pushes the one to r1 (sends in a row): r1 is readied
   * into this worker's runnext, and then this handler computes. */
  TH_CHECK_OK(isola_send(r1_port, isola_int(1)));
  TH_CHECK_OK(isola_send(r2_port, isola_int(2)));
  double deadline = now_ms() + (double)TH_WAIT_MS;
  while (!atomic_load(&r1_got) && now_ms() < deadline) {
  }
  TH_CHECKF(atomic_load(&r1_got),
            "the receiver readied by a long handler never ran elsewhere");
  th_counter_add(&long_done, 1);
}

static void readied_runs_elsewhere(void) {
  isola_config c = two_workers();
  th_vm_init(&c);
  TH_ASSERT_OK(isola_spawn(receiver_entry, isola_int(1), NULL, NULL));
  TH_ASSERT_OK(isola_spawn(receiver_entry, isola_int(0), NULL, NULL));
  TH_WAIT_GE(&receivers_ready, 2);
  TH_ASSERT_OK(isola_spawn(long_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&long_done, 1);
  th_vm_shutdown_ok();
}

/* Where membarrier(2) works, the owner takes runnext plainly and the
 * thief fences (scheduler.c's "runnext"). */
Test(long_handler, a_receiver_it_readied_runs_on_another_worker) {
  readied_runs_elsewhere();
}

/* The same in a child made by fork() after the parent ran a VM: the
 * parent's registration for membarrier(2) does not pass to the child's
 * new address space, so the child must register again before its thieves
 * can fence. */
Test(long_handler, a_receiver_it_readied_runs_elsewhere_in_a_forked_child) {
  isola_config c = two_workers();
  th_vm_init(&c);
  th_vm_shutdown_ok();
  pid_t pid = fork();
  cr_assert(pid >= 0, "fork failed");
  if (pid == 0) {
    readied_runs_elsewhere();
    _exit(0);
  }
  int status = 0;
  cr_assert(waitpid(pid, &status, 0) == pid, "waitpid failed");
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "the forked child's readied receiver was not taken (status %d)",
            status);
}

/* ---- steals of runnext racing the owner's take ------------------------
 * A ping-pong whose sender, after each send, computes for 1 to 10 us: the
 * receiver waits in the sender's worker's runnext meanwhile, so a spinning
 * thread on the other worker decides to steal it (after RUNNEXT_STEAL_NS)
 * about when the sender's turn ends and its owner takes it: over
 * thousands of rounds both orders happen.  (The receiver also sends a
 * third isolate a message each round, which lands in a ring and wakes the
 * other worker's thread: so a thief is spinning when the sender computes.)
 * The receiver must run exactly once per message and never on two threads
 * at once. */

#define RACE_ROUNDS TH_SIZE(20000)
static isola_port race_recv_port, race_noise_port;
static th_counter race_recv_ready = TH_COUNTER_INIT;
static th_counter race_handled = TH_COUNTER_INIT;
static _Atomic int race_inside;

static void race_recv_handler(void *ctx, isola_port port, isola_value msg,
                              isola_port reply_to) {
  (void)ctx, (void)reply_to;
  TH_CHECKF(atomic_exchange(&race_inside, 1) == 0,
            "the receiver runs on two threads at once");
  if (msg.as.i < 0) {
    TH_CHECK_OK(isola_send(race_noise_port, isola_int(-1)));
    TH_CHECK_OK(isola_port_close(port));
  } else {
    TH_CHECK_OK(isola_send(race_noise_port, isola_int(0)));
    TH_CHECK_OK(isola_send(reply_to, isola_int(msg.as.i + 1)));
  }
  atomic_store(&race_inside, 0);
  th_counter_add(&race_handled, 1);
}

static void race_recv_entry(isola_value msg) {
  (void)msg;
  TH_CHECK_OK(isola_port_open(race_recv_handler, NULL, &race_recv_port));
  th_counter_add(&race_recv_ready, 1);
}

static void race_noise_handler(void *ctx, isola_port port, isola_value msg,
                               isola_port reply_to) {
  (void)ctx, (void)reply_to;
  if (msg.as.i < 0) TH_CHECK_OK(isola_port_close(port));
}

static void race_noise_entry(isola_value msg) {
  (void)msg;
  TH_CHECK_OK(isola_port_open(race_noise_handler, NULL, &race_noise_port));
  th_counter_add(&race_recv_ready, 1);
}

static isola_port race_kick_port;

static void race_kick_handler(void *ctx, isola_port port, isola_value msg,
                              isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
}

static void race_send_handler(void *ctx, isola_port port, isola_value msg,
                              isola_port reply_to) {
  (void)ctx, (void)reply_to;
  int64_t i = msg.as.i;
  if (i >= RACE_ROUNDS) {
    TH_CHECK_OK(isola_send(race_recv_port, isola_int(-1)));
    TH_CHECK_OK(isola_port_close(race_kick_port));
    TH_CHECK_OK(isola_port_close(port));
    return;
  }
  TH_CHECK_OK(isola_send_reply(race_recv_port, isola_int(i), port));
  /* A send elsewhere (to this isolate's other port) pushes the one to the
   * receiver (sends in a row): the receiver waits in runnext while this
   * computes, and the turn ends right after (one short event more). */
  TH_CHECK_OK(isola_send(race_kick_port, isola_null()));
  double until = now_ms() + (double)(1 + i % 10) / 1000.0;
  while (now_ms() < until) {
  }
}

static void race_send_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(race_kick_handler, NULL, &race_kick_port));
  TH_CHECK_OK(isola_port_open(race_send_handler, NULL, &p));
  TH_CHECK_OK(isola_send(p, isola_int(0)));
}

static void steals_race_takes(void) {
  isola_config c = two_workers();
  th_vm_init(&c);
  TH_ASSERT_OK(isola_spawn(race_noise_entry, isola_null(), NULL, NULL));
  TH_ASSERT_OK(isola_spawn(race_recv_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&race_recv_ready, 2);
  TH_ASSERT_OK(isola_spawn(race_send_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&race_handled, RACE_ROUNDS + 1);
  th_vm_shutdown_ok();
  cr_assert(th_counter_get(&race_handled) == RACE_ROUNDS + 1, "%ld handled",
            th_counter_get(&race_handled));
}

Test(long_handler, steals_of_runnext_racing_its_take_lose_nothing) {
  steals_race_takes();
}

#ifdef ISOLA_TEST_HOOKS
#include "../src/platform/test_hooks.h"
/* Where it does not, both sides use locked instructions. */
Test(long_handler, a_receiver_it_readied_runs_elsewhere_without_membarrier) {
  isola__test_fail(ISOLA__FAIL_FENCE_HEAVY, 1);
  readied_runs_elsewhere();
}

Test(long_handler, steals_racing_takes_without_membarrier_lose_nothing) {
  isola__test_fail(ISOLA__FAIL_FENCE_HEAVY, 1);
  steals_race_takes();
}

/* The race made certain (the plain take of "runnext" in scheduler.c; with
 * no membarrier the take is an exchange, atomic by itself): an owner that
 * has just taken an isolate from runnext waits there until a thief has tried that worker, and
 * then a while longer: if the thief could still take the isolate, it
 * would start running it meanwhile, which the hook sees.  Hooks also
 * check that no isolate ever runs on two threads at once. */
extern void (*_Atomic isola__test_hook_p)(int where, const void *p);
/* src/internal.h's hook points, by number (the tests see no internals). */
enum {
  HOOK_RUN_BEGIN = 5,
  HOOK_RUN_END,
  HOOK_RUNNEXT_TAKING,
  HOOK_RUNNEXT_STEAL,
};
enum { RACE_HOOKED = 300 };
static pthread_mutex_t run_mu = PTHREAD_MUTEX_INITIALIZER;
static const void *running[64];
static _Atomic unsigned long steal_tries, begins;
static const void *_Atomic last_begin;
static _Atomic long takes_hooked, takes_tried;
static _Atomic bool double_run;

static void race_hook(int where, const void *p) {
  switch (where) {
  case HOOK_RUN_BEGIN: {
    pthread_mutex_lock(&run_mu);
    int free_i = -1;
    for (int i = 0; i < 64; i++) {
      if (running[i] == p) atomic_store(&double_run, true);
      if (!running[i] && free_i < 0) free_i = i;
    }
    if (free_i >= 0) running[free_i] = p;
    pthread_mutex_unlock(&run_mu);
    atomic_store(&last_begin, p);
    atomic_fetch_add(&begins, 1);
    break;
  }
  case HOOK_RUN_END:
    pthread_mutex_lock(&run_mu);
    for (int i = 0; i < 64; i++)
      if (running[i] == p) running[i] = NULL;
    pthread_mutex_unlock(&run_mu);
    break;
  case HOOK_RUNNEXT_STEAL:
    atomic_fetch_add(&steal_tries, 1);
    break;
  case HOOK_RUNNEXT_TAKING: {
    if (atomic_fetch_add(&takes_hooked, 1) >= RACE_HOOKED) break;
    unsigned long t0 = atomic_load(&steal_tries);
    double until = now_ms() + 0.5;
    while (atomic_load(&steal_tries) == t0 && now_ms() < until) sched_yield();
    if (atomic_load(&steal_tries) == t0) break;
    atomic_fetch_add(&takes_tried, 1);
    /* A thief tried while p is taken but still in runnext: if it got p,
     * it starts p now, while this thread is about to. */
    unsigned long b0 = atomic_load(&begins);
    until = now_ms() + 0.2;
    while (now_ms() < until) {
      if (atomic_load(&begins) != b0 && atomic_load(&last_begin) == p)
        atomic_store(&double_run, true);
      sched_yield();
    }
    break;
  }
  }
}

static void steals_race_takes_hooked(void) {
  atomic_store(&isola__test_hook_p, race_hook);
  steals_race_takes();
  atomic_store(&isola__test_hook_p, NULL);
  cr_assert(!atomic_load(&double_run),
            "an isolate was taken from runnext by its owner and a thief");
  cr_assert(atomic_load(&takes_tried) >= 10,
            "only %ld of %ld hooked takes met a thief: the race was not run",
            atomic_load(&takes_tried), atomic_load(&takes_hooked));
}

Test(long_handler, a_thief_never_takes_what_the_owner_is_taking) {
  steals_race_takes_hooked();
}
#endif

/* ---- a ping answered at isola_check_interrupts (11.10 a) --------------- */

static th_counter pinged = TH_COUNTER_INIT;
static th_counter spin_started = TH_COUNTER_INIT;
static isola_port answer_port;
static th_counter answer_ready = TH_COUNTER_INIT;

static void answer_handler(void *ctx, isola_port port, isola_value msg,
                           isola_port reply_to) {
  (void)ctx, (void)reply_to;
  TH_CHECK(msg.kind == ISOLA_INT && msg.as.i == 7);
  th_counter_add(&pinged, 1);
  TH_CHECK_OK(isola_port_close(port));
}

static void answer_entry(isola_value msg) {
  (void)msg;
  TH_CHECK_OK(isola_port_open(answer_handler, NULL, &answer_port));
  th_counter_add(&answer_ready, 1);
}

static void spin_at_interrupts_entry(isola_value msg) {
  (void)msg;
  th_counter_add(&spin_started, 1);
  while (!atomic_load(&stop_all)) TH_CHECK_OK(isola_check_interrupts());
}

Test(long_handler, a_ping_answered_inside_it_is_delivered) {
  isola_config c = two_workers();
  th_vm_init(&c);
  TH_ASSERT_OK(isola_spawn(answer_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&answer_ready, 1);
  isola_isolate spinner;
  TH_ASSERT_OK(
      isola_spawn(spin_at_interrupts_entry, isola_null(), NULL, &spinner));
  TH_WAIT_GE(&spin_started, 1);
  TH_ASSERT_OK(
      isola_ping(&spinner, answer_port, isola_int(7), ISOLA_IMMEDIATE));
  TH_WAIT_GE(&pinged, 1); /* while the spinner still spins */
  atomic_store(&stop_all, true);
  th_vm_shutdown_ok();
}

/* ---- pairs queued behind a spinning handler (11.10 b) ------------------ */

#define PAIRS 4
#define ROUNDS TH_SIZE(20000)

static _Atomic isola_port pong_ports[PAIRS];
static th_counter pongs_ready = TH_COUNTER_INIT;
static th_counter pairs_done = TH_COUNTER_INIT;
static th_counter pairs_started = TH_COUNTER_INIT;

static void pong_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx;
  TH_CHECK_OK(isola_send_reply(reply_to, msg, port));
  if (msg.as.i + 1 >= ROUNDS) TH_CHECK_OK(isola_port_close(port));
}

static void pong_entry(isola_value msg) {
  isola_port p;
  TH_CHECK_OK(isola_port_open(pong_handler, NULL, &p));
  atomic_store(&pong_ports[msg.as.i], p);
  th_counter_add(&pongs_ready, 1);
}

static void ping_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx;
  if (msg.as.i == ROUNDS / 2) th_counter_add(&pairs_started, 1);
  if (msg.as.i + 1 >= ROUNDS) {
    th_counter_add(&pairs_done, 1);
    TH_CHECK_OK(isola_port_close(port));
    return;
  }
  TH_CHECK_OK(isola_send_reply(reply_to, isola_int(msg.as.i + 1), port));
}

static void ping_entry(isola_value msg) {
  isola_port p;
  TH_CHECK_OK(isola_port_open(ping_handler, NULL, &p));
  TH_CHECK_OK(isola_send_reply(atomic_load(&pong_ports[msg.as.i]),
                               isola_int(0), p));
}

static void pure_spin_entry(isola_value msg) {
  (void)msg;
  th_counter_add(&spin_started, 1);
  while (!atomic_load(&stop_all)) {
  }
}

Test(long_handler, pairs_queued_behind_it_are_taken_by_another_worker) {
  isola_config c = two_workers();
  th_vm_init(&c);
  for (int i = 0; i < PAIRS; i++)
    TH_ASSERT_OK(isola_spawn(pong_entry, isola_int(i), NULL, NULL));
  TH_WAIT_GE(&pongs_ready, PAIRS);
  for (int i = 0; i < PAIRS; i++)
    TH_ASSERT_OK(isola_spawn(ping_entry, isola_int(i), NULL, NULL));
  /* The spinner lands on a worker while the pairs are running: whatever
   * waits on that worker is stranded unless another takes it. */
  TH_ASSERT_OK(isola_spawn(pure_spin_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&spin_started, 1);
  TH_WAIT_GE(&pairs_done, PAIRS);
  atomic_store(&stop_all, true);
  th_vm_shutdown_ok();
}

/* ---- reclamation during a long turn (11.10 c, 18.2) --------------------
 * An isolate B spawns short-lived children in rounds of 32 on its worker
 * (the last child of a round to run asks for the next), while one turn
 * runs on the other worker without end.  The children must be freed
 * meanwhile.  The round ends with its last child to run, not with the
 * last spawned (which runs first, from runnext): B's worker then never
 * holds more than a round, and nothing spills to the global queue, where
 * the long turn would see it and yield (and so take a newer epoch between
 * turns, which is not what is tested). */

#ifdef ISOLA_TEST_HOOKS
#define CHILDREN 32
static isola_port spawner_port;
static _Atomic unsigned children_ran;
static th_counter spawner_ready = TH_COUNTER_INIT;
static th_counter long_ready = TH_COUNTER_INIT;

static void child_entry(isola_value msg) {
  (void)msg;
  if (atomic_fetch_add(&children_ran, 1) % CHILDREN == CHILDREN - 1) {
    int rc = isola_send(spawner_port, isola_int(0));
    TH_CHECKF(rc == ISOLA_OK || rc == ISOLA_ECLOSED || rc == ISOLA_ESHUTDOWN,
              "send: %s", isola_err_name(rc));
  }
}

static void spawner_handler(void *ctx, isola_port port, isola_value msg,
                            isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  if (atomic_load(&stop_all)) {
    TH_CHECK_OK(isola_port_close(port));
    return;
  }
  for (int i = 0; i < CHILDREN; i++) {
    int rc = isola_spawn(child_entry, isola_int(i), NULL, NULL);
    TH_CHECKF(rc == ISOLA_OK || rc == ISOLA_ESHUTDOWN, "spawn: %s",
              isola_err_name(rc));
  }
}

static void spawner_entry(isola_value msg) {
  (void)msg;
  TH_CHECK_OK(isola_port_open(spawner_handler, NULL, &spawner_port));
  th_counter_add(&spawner_ready, 1);
}

static void self_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx, (void)reply_to;
  if (atomic_load(&stop_all)) {
    TH_CHECK_OK(isola_port_close(port));
    return;
  }
  /* Shutdown may come between the look at stop_all and the send. */
  int rc = isola_send(port, msg);
  TH_CHECKF(rc == ISOLA_OK || rc == ISOLA_ESHUTDOWN, "send: %s",
            isola_err_name(rc));
}

static void self_sender_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(self_handler, NULL, &p));
  TH_CHECK_OK(isola_send(p, isola_int(0)));
  th_counter_add(&long_ready, 1);
}

static void interrupt_spinner_entry(isola_value msg) {
  (void)msg;
  th_counter_add(&long_ready, 1);
  while (!atomic_load(&stop_all)) TH_CHECK_OK(isola_check_interrupts());
}

static void children_are_freed_during(isola_entry long_one) {
  isola_config c = two_workers();
  th_vm_init(&c);
  TH_ASSERT_OK(isola_spawn(spawner_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&spawner_ready, 1);
  TH_ASSERT_OK(isola_spawn(long_one, isola_null(), NULL, NULL));
  TH_WAIT_GE(&long_ready, 1);
  size_t before = isola__test_isolates_freed();
  TH_ASSERT_OK(isola_send(spawner_port, isola_int(0)));
  size_t target = before + (size_t)TH_SIZE(20000);
  double deadline = now_ms() + (double)TH_WAIT_MS;
  while (isola__test_isolates_freed() < target && now_ms() < deadline)
    sched_yield();
  size_t freed = isola__test_isolates_freed() - before;
  atomic_store(&stop_all, true);
  cr_assert(freed >= (size_t)TH_SIZE(20000),
            "%zu ended isolates freed while one turn went on", freed);
  th_vm_shutdown_ok();
}

Test(long_handler, ended_isolates_are_freed_while_it_calls_check_interrupts) {
  children_are_freed_during(interrupt_spinner_entry);
}

Test(long_handler, ended_isolates_are_freed_while_one_sends_itself_messages) {
  children_are_freed_during(self_sender_entry);
}

/* The same on a root isolate's thread (18.2), where nothing else can end
 * the turn for it: the self-sender runs on a thread of its own
 * (isola_run_main), never sleeps (it always has a next message) and so
 * never ends its turn, and the children run on the one pool worker, which
 * has nothing of the self-sender's to yield to.  Its thread stays online
 * for the whole test, so the children's memory is freed only if that
 * thread takes a newer epoch inside its turn (every batch): without that,
 * none is (the test then waits out its timeout).  With two workers, as
 * above, the self-sender could also yield to the spawner's messages and
 * take a new epoch between turns. */
static th_counter root_done = TH_COUNTER_INIT;
static _Atomic int root_rc = -1;

static void *root_self_sender(void *arg) {
  (void)arg;
  atomic_store(&root_rc, isola_run_main(self_sender_entry, isola_null(),
                                        "self-sender"));
  th_counter_add(&root_done, 1);
  return NULL;
}

Test(long_handler,
     ended_isolates_are_freed_while_a_root_isolate_sends_itself_messages) {
  isola_config c;
  isola_config_init(&c);
  c.workers = 1;
  th_vm_init(&c);
  TH_ASSERT_OK(isola_spawn(spawner_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&spawner_ready, 1);
  pthread_t th;
  cr_assert(pthread_create(&th, NULL, root_self_sender, NULL) == 0,
            "pthread_create failed");
  TH_WAIT_GE(&long_ready, 1);
  size_t before = isola__test_isolates_freed();
  TH_ASSERT_OK(isola_send(spawner_port, isola_int(0)));
  size_t target = before + (size_t)TH_SIZE(20000);
  double deadline = now_ms() + (double)TH_WAIT_MS;
  while (isola__test_isolates_freed() < target && now_ms() < deadline)
    sched_yield();
  size_t freed = isola__test_isolates_freed() - before;
  atomic_store(&stop_all, true);
  TH_WAIT_GE(&root_done, 1); /* the self-sender sees stop_all and ends */
  pthread_join(th, NULL);
  cr_assert(atomic_load(&root_rc) == ISOLA_OK, "isola_run_main: %s",
            isola_err_name(atomic_load(&root_rc)));
  cr_assert(freed >= (size_t)TH_SIZE(20000),
            "%zu ended isolates freed while a root isolate's turn went on",
            freed);
  th_vm_shutdown_ok();
}

/* ---- isola_blocking_begin without a stand-in (11.13) -------------------
 * One worker; the handler readies Y, then blocks with no stand-in thread
 * to be had: it is told (ESYS), and Y still runs, on a thread the monitor
 * wakes for the idle worker. */

static th_counter y_ran = TH_COUNTER_INIT;
static th_counter bb_done = TH_COUNTER_INIT;

static void y_entry(isola_value msg) {
  (void)msg;
  th_counter_add(&y_ran, 1);
}

static void blocker_entry(isola_value msg) {
  (void)msg;
  TH_CHECK_OK(isola_spawn(y_entry, isola_null(), NULL, NULL));
  isola__test_fail(ISOLA__FAIL_STAND_IN, 1);
  TH_CHECK_RC(isola_blocking_begin(), ISOLA_ESYS);
  TH_CHECK_WAIT_GE(&y_ran, 1);
  TH_CHECK_OK(isola_blocking_end());
  th_counter_add(&bb_done, 1);
}

Test(long_handler, blocking_begin_without_a_stand_in_is_reported) {
  isola_config c;
  isola_config_init(&c);
  c.workers = 1;
  th_vm_init(&c);
  TH_ASSERT_OK(isola_spawn(blocker_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&bb_done, 1);
  th_vm_shutdown_ok();
}
#endif
