/* SPDX-License-Identifier: MIT */
/*
 * isola_vm_snapshot(): isolates with their queues, states and counters,
 * workers, the VM's totals (sent, spawned, ended and dropped by reason),
 * capabilities only when asked, from an isolate, and while a shutdown
 * that timed out still waits for a stuck isolate.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "helpers.h"

#include <sched.h>
#include <time.h>

TestSuite(snapshot, .timeout = TH_TEST_TIMEOUT_S);

static isola_config stats_config(void) {
  isola_config c;
  isola_config_init(&c);
  c.workers = 2;
  c.isolate_stats = true;
  return c;
}

static const isola_isolate_snapshot *find(const isola_snapshot *s,
                                          isola_port id) {
  for (size_t i = 0; i < s->nisolates; i++)
    if (s->isolates[i].id == id) return &s->isolates[i];
  return NULL;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Takes snapshots until pred(snapshot, arg) holds (returns that one) or
 * the wait times out (fails the test).  Counters have no event of their
 * own, so this polls, yielding, after the event that changes them. */
static isola_snapshot *wait_for(bool (*pred)(const isola_snapshot *, void *),
                                void *arg) {
  uint64_t deadline = now_ms() + (uint64_t)TH_WAIT_MS;
  for (;;) {
    isola_snapshot *s;
    TH_ASSERT_OK(isola_vm_snapshot(ISOLA_SNAPSHOT_CAPABILITIES, &s));
    if (pred(s, arg)) return s;
    isola_snapshot_free(s);
    cr_assert(now_ms() < deadline, "timed out waiting for a snapshot");
    sched_yield();
  }
}

/* ---- a sink: two ports; a message on A closes B ----------------------- */

static _Atomic isola_port sink_a, sink_b;
static th_counter sink_ready = TH_COUNTER_INIT;
static th_counter sink_handled = TH_COUNTER_INIT;

static void sink_on_b(void *ctx, isola_port port, isola_value msg,
                      isola_port reply_to) {
  (void)ctx; (void)port; (void)msg; (void)reply_to;
  th_counter_add(&sink_handled, 1);
}

static void sink_on_a(void *ctx, isola_port port, isola_value msg,
                      isola_port reply_to) {
  (void)ctx; (void)reply_to;
  if (msg.kind == ISOLA_INT && msg.as.i == -1)
    isola_port_close(atomic_load(&sink_b));
  if (msg.kind == ISOLA_INT && msg.as.i == -2) isola_port_close(port);
  th_counter_add(&sink_handled, 1);
}

static void sink_entry(isola_value msg) {
  (void)msg;
  isola_port a, b;
  TH_CHECK_OK(isola_port_open(sink_on_a, NULL, &a));
  TH_CHECK_OK(isola_port_open(sink_on_b, NULL, &b));
  atomic_store(&sink_a, a);
  atomic_store(&sink_b, b);
  th_counter_add(&sink_ready, 1);
}

static bool is_paused(const isola_snapshot *s, void *arg) {
  const isola_isolate_snapshot *o = find(s, *(isola_port *)arg);
  return o && o->state == ISOLA_STATE_PAUSED;
}

static bool is_gone(const isola_snapshot *s, void *arg) {
  return find(s, *(isola_port *)arg) == NULL;
}

Test(snapshot, bad_arguments_and_no_vm) {
  isola_snapshot *s = (isola_snapshot *)&s;
  TH_ASSERT_RC(isola_vm_snapshot(0, NULL), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_vm_snapshot(0x80, &s), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_vm_snapshot(0, &s), ISOLA_ENOVM);
  cr_assert(s == NULL, "*out is not cleared on error");
  isola_snapshot_free(NULL);
  cr_assert(strcmp(isola_drop_reason_name(ISOLA_DROP_CLOSED), "closed") == 0, "%s", "isola_drop_reason_name(ISOLA_DROP_CLOSED) == \"closed\"");
  cr_assert(strcmp(isola_isolate_state_name(ISOLA_STATE_PAUSED), "paused") == 0, "%s", "isola_isolate_state_name(ISOLA_STATE_PAUSED) == \"paused\"");
  cr_assert(strcmp(isola_worker_state_name(ISOLA_WORKER_IDLE), "idle") == 0, "%s", "isola_worker_state_name(ISOLA_WORKER_IDLE) == \"idle\"");
  cr_assert(strcmp(isola_isolate_state_name(-1), "?") == 0, "%s", "isola_isolate_state_name(-1) == \"?\"");
}

Test(snapshot, paused_isolate_shows_its_queue_then_drains_and_drops) {
  isola_config c = stats_config();
  th_vm_init(&c);
  isola_isolate h;
  isola_spawn_options o = {.name = "snap-sink-with-a-long-name-over-16"};
  TH_ASSERT_OK(isola_spawn(sink_entry, isola_null(), &o, &h));
  TH_WAIT_GE(&sink_ready, 1);

  /* The pause goes ahead of the messages this thread sends after it. */
  TH_ASSERT_OK(isola_pause(&h, 0));
  enum { N = 10 };
  char text[100];
  memset(text, 'x', sizeof text - 1);
  text[sizeof text - 1] = '\0';
  for (int i = 0; i < N; i++)
    TH_ASSERT_OK(isola_send(atomic_load(&sink_b), isola_str(text)));
  isola_port id = h.control_port;
  isola_snapshot *s = wait_for(is_paused, &id);
  const isola_isolate_snapshot *me = find(s, id);
  cr_assert(s->isolate_stats && !s->shutting_down, "%s", "check failed");
  cr_assert(strcmp(me->name, "snap-sink-with-a-long-name-over-16") == 0, "%s", "me->name == \"snap-sink-with-a-long-name-over-16\"");
  cr_assert(me->queued == N, "queued %llu, expected %d",
            (unsigned long long)me->queued, N);
  cr_assert(me->queued_bytes >= N * sizeof text, "queued_bytes %llu",
            (unsigned long long)me->queued_bytes);
  cr_assert(me->pauses == 1, "pauses %u", me->pauses);
  cr_assert(me->live_ports == 2, "live ports %u", me->live_ports);
  cr_assert(me->group != 0 && me->origin == id, "%s", "check failed");
  cr_assert(me->handled == 0 && me->last_run_ns != 0 && me->run_ns > 0, "%s", "check failed");
  cr_assert(me->worker >= 0 && me->worker < 2, "worker %d", me->worker);
  cr_assert(me->pause_capability == h.pause_capability &&
            me->terminate_capability == h.terminate_capability, "%s", "check failed");
  cr_assert(s->nworkers == 2, "%s", "check failed");
  uint64_t turns = 0;
  for (size_t i = 0; i < s->nworkers; i++) turns += s->workers[i].turns;
  cr_assert(turns >= 1, "no worker counted a turn");
  cr_assert(s->vm.spawned >= 1, "spawned %llu",
            (unsigned long long)s->vm.spawned);
#ifndef ISOLA_NO_SEND_COUNTERS
  cr_assert(s->vm.sent >= N, "sent %llu", (unsigned long long)s->vm.sent);
  cr_assert(s->vm.sent_bytes >= N * sizeof text, "%s", "check failed");
#else
  /* Compiled out (docs/observability.md): 0, not a partial count. */
  cr_assert(s->vm.sent == 0 && s->vm.sent_bytes == 0, "sent %llu",
            (unsigned long long)s->vm.sent);
#endif
  isola_snapshot_free(s);

  /* Now A closes B: what else waits on B is dropped as closed; then A
   * closes itself and the isolate ends. */
  for (int i = 0; i < 3; i++)
    TH_ASSERT_OK(isola_send(atomic_load(&sink_a), isola_int(0)));
  TH_ASSERT_OK(isola_send(atomic_load(&sink_a), isola_int(-1)));
  for (int i = 0; i < 5; i++)
    TH_ASSERT_OK(isola_send(atomic_load(&sink_b), isola_int(i)));
  TH_ASSERT_OK(isola_send(atomic_load(&sink_a), isola_int(-2)));
  TH_ASSERT_OK(isola_resume(&h, 0));
  TH_WAIT_GE(&sink_handled, N + 5);
  s = wait_for(is_gone, &id);
  cr_assert(s->vm.dropped[ISOLA_DROP_CLOSED] == 5, "dropped closed: %llu",
            (unsigned long long)s->vm.dropped[ISOLA_DROP_CLOSED]);
  cr_assert(s->vm.ended[ISOLA_EXIT_NORMAL] >= 1, "%s", "check failed");
  cr_assert(s->vm.refused == 0, "%s", "check failed");
  isola_snapshot_free(s);
  /* A send to the closed port is refused, and counted so. */
  TH_ASSERT_RC(isola_send(atomic_load(&sink_b), isola_int(1)),
               ISOLA_ECLOSED);
  TH_ASSERT_OK(isola_vm_snapshot(0, &s));
  cr_assert(s->vm.refused == 1, "%s", "check failed");
  cr_assert(s->isolates == NULL || s->nisolates == 0 ||
            s->isolates[0].pause_capability == 0, "%s", "check failed");
  isola_snapshot_free(s);
  th_vm_shutdown_ok();
}

/* ---- kills, counters off, from an isolate --------------------------------- */

static void idle_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(sink_on_b, NULL, &p)); /* lives until killed */
  th_counter_add(&sink_ready, 1);
}

/* The kill is counted as the isolate ends, a moment before it leaves the
 * list: wait for both. */
static bool killed_one(const isola_snapshot *s, void *arg) {
  return s->vm.ended[ISOLA_EXIT_KILLED] == 1 &&
         find(s, *(const isola_port *)arg) == NULL;
}

static void ends_at_once(isola_value msg) { (void)msg; }

static bool dropped_ended(const isola_snapshot *s, void *arg) {
  return s->vm.dropped[ISOLA_DROP_ENDED] >= *(uint64_t *)arg;
}

/* Messages still queued when their isolate ends are freed with it, and
 * counted as dropped because it ended (the reclaimer counts them as it
 * frees the queue); the last one handled is not among them. */
Test(snapshot, messages_queued_at_the_end_count_as_dropped_ended) {
  isola_config c = stats_config();
  th_vm_init(&c);
  isola_isolate h;
  isola_spawn_options o = {.name = "snap-ender"};
  TH_ASSERT_OK(isola_spawn(sink_entry, isola_null(), &o, &h));
  TH_WAIT_GE(&sink_ready, 1);
  /* Paused, so that all of these are queued before the first is handled:
   * -1 closes B, -2 closes A, its last port, and the isolate ends with
   * the six behind it still queued. */
  TH_ASSERT_OK(isola_pause(&h, 0));
  TH_ASSERT_OK(isola_send(atomic_load(&sink_a), isola_int(-1)));
  TH_ASSERT_OK(isola_send(atomic_load(&sink_a), isola_int(-2)));
  enum { LEFT = 6 };
  for (int i = 0; i < LEFT; i++)
    TH_ASSERT_OK(isola_send(atomic_load(&sink_a), isola_int(i)));
  TH_ASSERT_OK(isola_resume(&h, 0));
  /* Freed once no thread can still hold the isolate (epoch.h): a thread
   * that reclaims must pass by after that, so short isolates keep the
   * workers passing until it shows. */
  uint64_t want = LEFT;
  uint64_t deadline = now_ms() + (uint64_t)TH_WAIT_MS;
  isola_snapshot *s;
  for (;;) {
    TH_ASSERT_OK(isola_vm_snapshot(0, &s));
    if (dropped_ended(s, &want)) break;
    isola_snapshot_free(s);
    cr_assert(now_ms() < deadline, "timed out waiting for the reclaim");
    TH_ASSERT_OK(isola_spawn(ends_at_once, isola_null(), NULL, NULL));
    sched_yield();
  }
  cr_assert(s->vm.dropped[ISOLA_DROP_ENDED] == LEFT, "dropped ended: %llu",
            (unsigned long long)s->vm.dropped[ISOLA_DROP_ENDED]);
  cr_assert(th_counter_get(&sink_handled) == 2, "handled %ld",
            th_counter_get(&sink_handled));
  cr_assert(find(s, h.control_port) == NULL, "%s", "the isolate is listed");
  isola_snapshot_free(s);
  th_vm_shutdown_ok();
}

Test(snapshot, kill_counts_as_killed_and_capabilities_only_on_request) {
  isola_config c = stats_config();
  th_vm_init(&c);
  isola_isolate h;
  isola_spawn_options o = {.name = "victim", .heap_limit = 1 << 20};
  TH_ASSERT_OK(isola_spawn(idle_entry, isola_null(), &o, &h));
  TH_WAIT_GE(&sink_ready, 1);
  isola_snapshot *s;
  TH_ASSERT_OK(isola_vm_snapshot(0, &s));
  const isola_isolate_snapshot *me = find(s, h.control_port);
  cr_assert(me && me->terminate_capability == 0 && me->pause_capability == 0, "%s", "check failed");
  /* Bounded by its heap limit: some room, at most the limit. */
  cr_assert(me->room > 0 && me->room <= 1 << 20, "room %lld",
            (long long)me->room);
  isola_snapshot_free(s);
  TH_ASSERT_OK(isola_vm_snapshot(ISOLA_SNAPSHOT_CAPABILITIES, &s));
  me = find(s, h.control_port);
  isola_isolate handle = {me->id, me->pause_capability,
                          me->terminate_capability};
  isola_snapshot_free(s);
  TH_ASSERT_OK(isola_kill(&handle, ISOLA_IMMEDIATE));
  s = wait_for(killed_one, &h.control_port);
  cr_assert(find(s, h.control_port) == NULL, "%s", "check failed");
  isola_snapshot_free(s);
  th_vm_shutdown_ok();
}

Test(snapshot, without_isolate_stats_lists_isolates_and_totals) {
  isola_config c;
  isola_config_init(&c);
  c.workers = 1;
  th_vm_init(&c);
  isola_isolate h;
  isola_spawn_options o = {.name = "plain"};
  TH_ASSERT_OK(isola_spawn(idle_entry, isola_null(), &o, &h));
  TH_WAIT_GE(&sink_ready, 1);
  isola_snapshot *s;
  TH_ASSERT_OK(isola_vm_snapshot(0, &s));
  const isola_isolate_snapshot *me = find(s, h.control_port);
  cr_assert(me, "the isolate is not listed");
  cr_assert(!s->isolate_stats, "%s", "check failed");
  cr_assert(strcmp(me->name, "plain") == 0, "%s", "me->name == \"plain\"");
  cr_assert(me->state == ISOLA_STATE_UNKNOWN && me->queued == 0 &&
            me->live_ports == 1, "%s", "check failed");
  cr_assert(me->room == -1, "an unbounded isolate has room %lld",
            (long long)me->room);
  cr_assert(s->vm.spawned == 1 && s->vm.live == 1, "%s", "check failed");
  cr_assert(s->nworkers == 1, "%s", "check failed");
  isola_snapshot_free(s);
  th_vm_shutdown_ok();
}

static th_counter from_isolate = TH_COUNTER_INIT;

static void snapshot_entry(isola_value msg) {
  (void)msg;
  isola_snapshot *s;
  TH_CHECK_OK(isola_vm_snapshot(0, &s));
  isola_isolate self;
  TH_CHECK_OK(isola_current(&self));
  const isola_isolate_snapshot *me = find(s, self.control_port);
  /* It sees itself in its own turn. */
  TH_CHECK(me && me->state == ISOLA_STATE_RUNNING && me->running_since_ns);
  bool running_worker = false;
  for (size_t i = 0; i < s->nworkers; i++)
    if (s->workers[i].current == self.control_port &&
        s->workers[i].state == ISOLA_WORKER_RUNNING &&
        s->workers[i].current_since_ns)
      running_worker = true;
#ifndef ISOLA_NO_SEND_COUNTERS
  TH_CHECK(running_worker);
#else
  /* A worker's current isolate is compiled out: none is RUNNING. */
  TH_CHECK(!running_worker);
  for (size_t i = 0; i < s->nworkers; i++)
    TH_CHECK(s->workers[i].current == 0 &&
             s->workers[i].state != ISOLA_WORKER_RUNNING);
#endif
  isola_snapshot_free(s);
  th_counter_add(&from_isolate, 1);
}

Test(snapshot, an_isolate_sees_itself_running_on_a_worker) {
  isola_config c = stats_config();
  th_vm_init(&c);
  TH_ASSERT_OK(isola_spawn(snapshot_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&from_isolate, 1);
  th_vm_shutdown_ok();
}

/* ---- a stuck isolate after a shutdown that timed out -------------------- */

static th_counter stuck_in = TH_COUNTER_INIT;
static th_counter stuck_release = TH_COUNTER_INIT;

static void stuck_entry(isola_value msg) {
  (void)msg;
  th_counter_add(&stuck_in, 1);
  /* Blocked in C code: no interrupt point until the test lets it go. */
  TH_CHECK_WAIT_GE(&stuck_release, 1);
}

Test(snapshot, names_the_stuck_isolate_while_shutdown_waits) {
  isola_config c = stats_config();
  c.shutdown_grace_ms = 50;
  th_vm_init(&c);
  isola_spawn_options o = {.name = "stuck-one"};
  isola_isolate h;
  TH_ASSERT_OK(isola_spawn(stuck_entry, isola_null(), &o, &h));
  TH_WAIT_GE(&stuck_in, 1);
  isola_shutdown_report r;
  TH_ASSERT_RC(isola_vm_shutdown(&r), ISOLA_ETIMEDOUT);
  isola_snapshot *s;
  TH_ASSERT_OK(isola_vm_snapshot(0, &s));
  cr_assert(s->shutting_down, "%s", "check failed");
  const isola_isolate_snapshot *me = find(s, h.control_port);
  cr_assert(me && me->state == ISOLA_STATE_RUNNING &&
                me->running_since_ns && me->running_since_ns <= s->now_ns,
            "the stuck isolate is not shown running");
  cr_assert(strcmp(me->name, "stuck-one") == 0, "%s", "me->name == \"stuck-one\"");
  isola_snapshot_free(s);
  th_counter_add(&stuck_release, 1);
  th_vm_shutdown_ok();
}
