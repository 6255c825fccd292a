/* SPDX-License-Identifier: MIT */
/*
 * The deterministic scheduling mode (issue 13 item 3; src/sched/determ.h),
 * built only with -DISOLA_DETERMINISTIC=ON.
 *
 *   - replay: a scenario driven from inside isolates, run twice with one
 *     seed, gives the same trace of scheduling decisions and the same
 *     outcome; another seed gives another trace;
 *   - seed exploration over the trickiest scenarios, each checking
 *     conservation and order:
 *       kill racing send          senders' messages are handled in order,
 *                                 never more than were accepted, and the
 *                                 exit listener hears once;
 *       pause/resume storms       every message handled, in order, once
 *                                 every pause (two capabilities, two
 *                                 pausers) is resumed;
 *       shutdown racing spawn     a tree of spawners while the VM shuts
 *                                 down: OK, every spawn that returned OK
 *                                 ends exactly once, the rest fail with
 *                                 ISOLA_ESHUTDOWN (plain thread: explored,
 *                                 not replayed exactly);
 *       exit listeners added      each listener port hears at most once, and
 *       while the isolate dies    only with a response it added, the spawn's
 *                                 on_exit exactly once;
 *       outbox vs spawn           a row of sends to Y is handled before
 *                                 anything a child spawned after it, or an
 *                                 isolate told after it, sends to Y;
 *       blocking section          a handler blocked in a blocking section
 *                                 waits for another isolate: the blocked
 *                                 thread steps out of the baton (explored,
 *                                 not replayed exactly).
 *
 * Each scenario runs DETERM_SEEDS seeds (ISOLA_DETERM_SEEDS=n overrides)
 * from a base taken from the clock (printed).  A failed check prints its seed; rerun it alone with
 * ISOLA_SCHED_SEED=<seed> (then only that seed runs).  A hung seed is
 * caught by an alarm that prints it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "determ.h"
#include "helpers.h"

/* Seeds per scenario; ISOLA_DETERM_SEEDS overrides. */
#define DETERM_SEEDS 3000

TestSuite(determ, .timeout = 600);

/* ---------------------------------------------------------------------- */
/* The seed being run, and how a failure names it                          */
/* ---------------------------------------------------------------------- */

static const char *cur_scenario = "";
static uint64_t cur_seed;

#define DCHECK(cond, ...)                                                  \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "determ: %s, seed %llu: check failed: %s: ",         \
              cur_scenario, (unsigned long long)cur_seed, #cond);          \
      fprintf(stderr, __VA_ARGS__);                                        \
      fprintf(stderr,                                                      \
              "\ndeterm: rerun it alone: ISOLA_SCHED_SEED=%llu "           \
              "test_determ --filter 'determ/%s'\n",                        \
              (unsigned long long)cur_seed, cur_scenario);                 \
      abort();                                                             \
    }                                                                      \
  } while (0)

static void on_alarm(int sig) {
  (void)sig;
  char buf[256];
  int n = snprintf(buf, sizeof buf,
                   "determ: %s, seed %llu: hung; rerun it alone: "
                   "ISOLA_SCHED_SEED=%llu test_determ --filter 'determ/%s'\n",
                   cur_scenario, (unsigned long long)cur_seed,
                   (unsigned long long)cur_seed, cur_scenario);
  if (n > 0) (void)!write(2, buf, (size_t)n);
  n = (int)isola__det_describe(buf, sizeof buf - 1);
  buf[n++] = '\n';
  (void)!write(2, buf, (size_t)n);
  _exit(3);
}

/* The seeds to run: ISOLA_SCHED_SEED alone, or DETERM_SEEDS from a base. */
static uint64_t seeds_base(unsigned *count) {
  const char *env = getenv("ISOLA_SCHED_SEED");
  if (env && *env) {
    *count = 1;
    return strtoull(env, NULL, 0);
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  const char *n = getenv("ISOLA_DETERM_SEEDS");
  *count = n && *n ? (unsigned)strtoul(n, NULL, 0) : DETERM_SEEDS;
  return ((uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec) % 1000000000u;
}

/* ---------------------------------------------------------------------- */
/* The VM of one run                                                       */
/* ---------------------------------------------------------------------- */

enum {
  T_PORT = 1, /* [T_PORT, port]: an isolate's receive port */
  T_DONE,     /* [T_DONE, id, n] */
  T_EXIT,     /* on_exit message: [T_EXIT] */
  T_CLEANED,  /* the victim's isolate_cleanup hook: [T_CLEANED] */
  T_ALL,      /* the victim has handled everything */
  T_ITEM,     /* [T_ITEM, from, a, b] */
};

static isola_value ints(int n, const int64_t *v) {
  static _Thread_local isola_value items[8];
  for (int i = 0; i < n; i++) items[i] = isola_int(v[i]);
  return isola_list(items, (size_t)n);
}
#define INTS(...)                                                          \
  ints((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),         \
       (int64_t[]){__VA_ARGS__})

/* [T_PORT, port] */
static isola_value port_msg(isola_port p) {
  static _Thread_local isola_value items[2];
  items[0] = isola_int(T_PORT);
  items[1] = isola_sendport(p);
  return isola_list(items, 2);
}

static int64_t item(isola_value v, size_t i) { return th_item_int(v, i); }

/* The root's port, where the cleanup hook reports the victim's end. */
static _Atomic isola_port hook_port;
static _Atomic long cleanups;

static void on_cleanup(void *data, const isola_isolate_info *info) {
  (void)data;
  atomic_fetch_add(&cleanups, 1);
  isola_port p = atomic_load(&hook_port);
  if (p != ISOLA_PORT_NONE && strcmp(info->name, "victim") == 0)
    DCHECK(isola_send(p, INTS(T_CLEANED)) == ISOLA_OK, "cleanup report");
}

/* Trace and outcome of the last run, read by the replay test. */
static uint64_t run_trace, run_steps, run_outcome;

static void record_trace(uint64_t outcome) {
  run_trace = isola__det_trace(&run_steps);
  run_outcome = outcome;
}

static void vm_start(uint64_t seed) {
  cur_seed = seed;
  isola__det_set_seed(seed);
  atomic_store(&hook_port, ISOLA_PORT_NONE);
  atomic_store(&cleanups, 0);
  isola_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.workers = 3;
  cfg.hooks.isolate_cleanup = on_cleanup;
  th_vm_init(&cfg);
  alarm(30);
}

static void vm_stop(void) {
  th_vm_shutdown_ok();
  alarm(0);
  DCHECK(isola__det_seed() == cur_seed, "the VM ran seed %llu",
         (unsigned long long)isola__det_seed());
}

static void run_root(isola_entry entry) {
  DCHECK(isola_run_main(entry, isola_null(), "root") == ISOLA_OK,
         "isola_run_main");
}

/* Spawns entry(msg) named name, with on_exit to port (NONE: none). */
static isola_isolate spawn(isola_entry entry, isola_value msg,
                           const char *name, isola_port on_exit) {
  isola_spawn_options o;
  memset(&o, 0, sizeof o);
  o.name = name;
  o.on_exit = on_exit;
  isola_value exit_msg[1] = {isola_int(T_EXIT)}; /* not INTS: msg may be */
  o.on_exit_message = isola_list(exit_msg, 1);
  isola_isolate h;
  int rc = isola_spawn(entry, msg, &o, &h);
  DCHECK(rc == ISOLA_OK, "spawn %s: %s", name, isola_err_name(rc));
  return h;
}

/* ---------------------------------------------------------------------- */
/* Kill racing send                                                        */
/* ---------------------------------------------------------------------- */

#define KS_SENDERS 3
#define KS_MSGS 40
#define KS_BATCH 4 /* sends per event: the senders' events interleave */

static struct {
  isola_port root, victim_port;
  isola_isolate victim;
  long next[KS_SENDERS], ok[KS_SENDERS], handled, kill_at;
  int done, exits, cleaned;
  uint64_t mix;
} ks;

static void ks_victim_h(void *ctx, isola_port port, isola_value m,
                        isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  int64_t id = item(m, 0), seq = item(m, 1);
  DCHECK(id >= 0 && id < KS_SENDERS, "sender id %lld", (long long)id);
  DCHECK(seq == ks.next[id], "sender %lld: got %lld, expected %ld",
         (long long)id, (long long)seq, ks.next[id]);
  ks.next[id]++;
  ks.mix = ks.mix * 31 + (uint64_t)(id * 1000 + seq);
  /* Tells the root when to kill: after kill_at messages. */
  if (++ks.handled == ks.kill_at)
    DCHECK(isola_send(ks.root, INTS(T_ALL)) == ISOLA_OK, "progress");
}

static void ks_victim(isola_value msg) {
  isola_port p;
  DCHECK(isola_port_open(ks_victim_h, NULL, &p) == ISOLA_OK, "port");
  DCHECK(isola_send(th_port(msg), port_msg(p)) == ISOLA_OK,
         "port to root");
}

/* A sender: KS_BATCH sends an event, KS_MSGS in all; a send refused
 * with ECLOSED is never followed by one accepted. */
static struct ks_sender {
  isola_port self;
  int64_t id;
  long ok, tried;
  bool closed;
} ks_senders[KS_SENDERS];

static void ks_sender_h(void *ctx, isola_port port, isola_value m,
                        isola_port reply_to) {
  (void)m, (void)reply_to;
  struct ks_sender *sd = ctx;
  for (int b = 0; b < KS_BATCH && sd->tried < KS_MSGS; b++, sd->tried++) {
    int rc = isola_send(ks.victim_port, INTS(sd->id, sd->ok));
    if (rc == ISOLA_OK) {
      DCHECK(!sd->closed, "sender %lld: a send succeeded after ECLOSED",
             (long long)sd->id);
      sd->ok++;
    } else {
      DCHECK(rc == ISOLA_ECLOSED, "send: %s", isola_err_name(rc));
      sd->closed = true;
    }
  }
  if (sd->tried < KS_MSGS) {
    DCHECK(isola_send(port, isola_null()) == ISOLA_OK, "next batch");
    return;
  }
  DCHECK(isola_send(ks.root, INTS(T_DONE, sd->id, sd->ok)) == ISOLA_OK,
         "done");
  isola_port_close(port);
}

static void ks_sender(isola_value msg) {
  struct ks_sender *sd = &ks_senders[th_int(msg)];
  sd->id = th_int(msg);
  DCHECK(isola_port_open(ks_sender_h, sd, &sd->self) == ISOLA_OK, "port");
  ks_sender_h(sd, sd->self, isola_null(), ISOLA_PORT_NONE);
}

static void ks_root_h(void *ctx, isola_port port, isola_value m,
                      isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  switch (item(m, 0)) {
  case T_PORT:
    ks.victim_port = th_item_port(m, 1);
    for (int64_t i = 0; i < KS_SENDERS; i++)
      spawn(ks_sender, isola_int(i), "sender", ISOLA_PORT_NONE);
    break;
  case T_ALL: {
    int rc = isola_kill(&ks.victim, cur_seed & 1 ? ISOLA_IMMEDIATE
                                                 : ISOLA_BEFORE_NEXT_EVENT);
    DCHECK(rc == ISOLA_OK, "kill: %s", isola_err_name(rc));
    break;
  }
  case T_DONE:
    ks.ok[item(m, 1)] = item(m, 2);
    ks.done++;
    break;
  case T_EXIT:
    ks.exits++;
    break;
  case T_CLEANED:
    ks.cleaned++;
    break;
  default:
    DCHECK(0, "unexpected message");
  }
  if (ks.done == KS_SENDERS && ks.cleaned == 1) {
    DCHECK(ks.exits == 1, "exit listener heard %d times", ks.exits);
    DCHECK(ks.handled >= ks.kill_at, "handled %ld, killed after %ld",
           ks.handled, ks.kill_at);
    for (int i = 0; i < KS_SENDERS; i++)
      DCHECK(ks.next[i] <= ks.ok[i], "sender %d: %ld handled, %ld accepted",
             i, ks.next[i], ks.ok[i]);
    DCHECK(isola_send(ks.victim_port, INTS(0, 0)) == ISOLA_ECLOSED,
           "a send to the dead victim");
    record_trace(ks.mix);
    isola_port_close(ks.root);
  }
}

static void ks_root(isola_value msg) {
  (void)msg;
  DCHECK(isola_port_open(ks_root_h, NULL, &ks.root) == ISOLA_OK, "port");
  atomic_store(&hook_port, ks.root);
  ks.victim = spawn(ks_victim, isola_sendport(ks.root), "victim", ks.root);
}

static void kill_racing_send(uint64_t seed) {
  memset(&ks, 0, sizeof ks);
  memset(ks_senders, 0, sizeof ks_senders);
  ks.kill_at = 1 + (long)(seed % (KS_SENDERS * KS_MSGS / 2));
  vm_start(seed);
  run_root(ks_root);
  vm_stop();
}

/* ---------------------------------------------------------------------- */
/* Pause/resume storms                                                     */
/* ---------------------------------------------------------------------- */

#define PR_MSGS 60
#define PR_PAUSERS 2
#define PR_ROUNDS 6

static struct {
  isola_port root, victim_port;
  isola_isolate victim;
  long next;
  int done, all, exits, cleaned;
} pr;

static void pr_victim_h(void *ctx, isola_port port, isola_value m,
                        isola_port reply_to) {
  (void)ctx, (void)reply_to;
  DCHECK(item(m, 0) == pr.next, "got %lld, expected %ld",
         (long long)item(m, 0), pr.next);
  if (++pr.next == PR_MSGS) {
    DCHECK(isola_send(pr.root, INTS(T_ALL)) == ISOLA_OK, "all");
    isola_port_close(port);
  }
}

static void pr_victim(isola_value msg) {
  isola_port p;
  DCHECK(isola_port_open(pr_victim_h, NULL, &p) == ISOLA_OK, "port");
  DCHECK(isola_send(th_port(msg), port_msg(p)) == ISOLA_OK,
         "port to root");
}

static void pr_sender(isola_value msg) {
  for (int64_t i = 0; i < PR_MSGS; i++)
    DCHECK(isola_send(th_port(msg), INTS(i)) == ISOLA_OK, "send %lld",
           (long long)i);
  DCHECK(isola_send(pr.root, INTS(T_DONE, 0, 0)) == ISOLA_OK, "done");
}

static int pr_accept(int rc) { return rc == ISOLA_OK || rc == ISOLA_ECLOSED; }

/* Pauses under two fresh capabilities and the handle's own, resumes them
 * in an order drawn from the seed; every pause is resumed. */
static void pr_pauser(isola_value msg) {
  int64_t id = item(msg, 0);
  uint64_t rs = cur_seed * 7 + (uint64_t)id;
  for (int r = 0; r < PR_ROUNDS; r++) {
    isola_capability c[3] = {isola_capability_new(), isola_capability_new(),
                             0};
    for (int i = 0; i < 3; i++) {
      int rc = isola_pause(&pr.victim, c[i]);
      DCHECK(pr_accept(rc), "pause: %s", isola_err_name(rc));
    }
    int first = (int)th_rand_below(&rs, 3);
    for (int i = 0; i < 3; i++) {
      int rc = isola_resume(&pr.victim, c[(first + i) % 3]);
      DCHECK(pr_accept(rc), "resume: %s", isola_err_name(rc));
    }
  }
  DCHECK(isola_send(pr.root, INTS(T_DONE, id, 0)) == ISOLA_OK, "done");
}

static void pr_root_h(void *ctx, isola_port port, isola_value m,
                      isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  switch (item(m, 0)) {
  case T_PORT:
    pr.victim_port = th_item_port(m, 1);
    spawn(pr_sender, isola_sendport(pr.victim_port), "sender",
          ISOLA_PORT_NONE);
    for (int64_t i = 1; i <= PR_PAUSERS; i++)
      spawn(pr_pauser, INTS(i), "pauser", ISOLA_PORT_NONE);
    break;
  case T_DONE: pr.done++; break;
  case T_ALL: pr.all++; break;
  case T_EXIT: pr.exits++; break;
  case T_CLEANED: pr.cleaned++; break;
  default: DCHECK(0, "unexpected message");
  }
  if (pr.done == PR_PAUSERS + 1 && pr.cleaned == 1) {
    DCHECK(pr.all == 1 && pr.next == PR_MSGS, "handled %ld of %d", pr.next,
           PR_MSGS);
    DCHECK(pr.exits == 1, "exit listener heard %d times", pr.exits);
    record_trace((uint64_t)pr.next);
    isola_port_close(pr.root);
  }
}

static void pr_root(isola_value msg) {
  (void)msg;
  DCHECK(isola_port_open(pr_root_h, NULL, &pr.root) == ISOLA_OK, "port");
  atomic_store(&hook_port, pr.root);
  pr.victim = spawn(pr_victim, isola_sendport(pr.root), "victim", pr.root);
}

static void pause_resume_storm(uint64_t seed) {
  memset(&pr, 0, sizeof pr);
  vm_start(seed);
  run_root(pr_root);
  vm_stop();
}

/* ---------------------------------------------------------------------- */
/* Shutdown racing spawn                                                   */
/* ---------------------------------------------------------------------- */

#define SS_DEPTH 6

static _Atomic long ss_spawned;

static void ss_spawner(isola_value msg) {
  int64_t depth = th_int(msg);
  if (depth == 0) return;
  for (int i = 0; i < 2; i++) {
    int rc = isola_spawn(ss_spawner, isola_int(depth - 1), NULL, NULL);
    DCHECK(rc == ISOLA_OK || rc == ISOLA_ESHUTDOWN, "spawn: %s",
           isola_err_name(rc));
    if (rc == ISOLA_OK) atomic_fetch_add(&ss_spawned, 1);
  }
}

static void ss_root(isola_value msg) {
  (void)msg;
  for (int i = 0; i < 2; i++) {
    DCHECK(isola_spawn(ss_spawner, isola_int(SS_DEPTH), NULL, NULL) ==
               ISOLA_OK,
           "spawn");
    atomic_fetch_add(&ss_spawned, 1);
  }
}

static void shutdown_racing_spawn(uint64_t seed) {
  atomic_store(&ss_spawned, 0);
  vm_start(seed);
  run_root(ss_root); /* returns at once: the tree grows while we shut down */
  vm_stop();
  /* Every isolate whose spawn returned OK ended exactly once; the root
   * too. */
  long spawned = atomic_load(&ss_spawned), ended = atomic_load(&cleanups);
  DCHECK(ended == spawned + 1, "%ld spawned (+ the root), %ld ended", spawned,
         ended);
}

/* ---------------------------------------------------------------------- */
/* Exit listeners added while the isolate dies                             */
/* ---------------------------------------------------------------------- */

#define EL_ADDERS 2
#define EL_ADDS 12

static struct {
  isola_port root, exit_port, victim_port;
  isola_port lport[EL_ADDERS];
  isola_isolate victim;
  int heard[EL_ADDERS];
  int64_t last_ok[EL_ADDERS], response[EL_ADDERS];
  int done, exits, cleaned;
} el;

static void el_victim_h(void *ctx, isola_port port, isola_value m,
                        isola_port reply_to) {
  (void)ctx, (void)m, (void)reply_to;
  isola_port_close(port); /* the first message ends it */
}

static void el_victim(isola_value msg) {
  isola_port p;
  DCHECK(isola_port_open(el_victim_h, NULL, &p) == ISOLA_OK, "port");
  DCHECK(isola_send(th_port(msg), port_msg(p)) == ISOLA_OK,
         "port to root");
}

static void el_adder(isola_value msg) {
  int64_t id = item(msg, 0);
  DCHECK(id >= 0 && id < EL_ADDERS, "adder %lld", (long long)id);
  int64_t last_ok = -1;
  for (int64_t j = 0; j < EL_ADDS; j++) {
    int rc = isola_add_exit_listener(&el.victim, el.lport[id],
                                     INTS(T_ITEM, id, j));
    if (rc == ISOLA_OK)
      last_ok = j;
    else
      DCHECK(rc == ISOLA_ECLOSED, "add: %s", isola_err_name(rc));
    if (j == EL_ADDS / 2 && id == 0) /* ends it, if it is still there */
      (void)isola_send(el.victim_port, INTS(0));
  }
  DCHECK(isola_send(el.root, INTS(T_DONE, id, last_ok)) == ISOLA_OK, "done");
}

static void el_listen_h(void *ctx, isola_port port, isola_value m,
                        isola_port reply_to) {
  (void)ctx, (void)reply_to;
  DCHECK(item(m, 0) == T_ITEM, "listener message");
  for (int i = 0; i < EL_ADDERS; i++)
    if (port == el.lport[i]) {
      DCHECK(item(m, 1) == i, "listener %d got adder %lld's response", i,
             (long long)item(m, 1));
      el.heard[i]++;
      el.response[i] = item(m, 2);
    }
}

static void el_check_end(void) {
  if (el.done < EL_ADDERS || el.cleaned != 1) return;
  DCHECK(el.exits == 1, "on_exit heard %d times", el.exits);
  for (int i = 0; i < EL_ADDERS; i++) {
    DCHECK(el.heard[i] <= 1, "listener %d heard %d times", i, el.heard[i]);
    if (el.heard[i])
      DCHECK(el.response[i] <= el.last_ok[i],
             "listener %d heard response %lld; last accepted add %lld", i,
             (long long)el.response[i], (long long)el.last_ok[i]);
    isola_port_close(el.lport[i]);
  }
  record_trace((uint64_t)(el.heard[0] * 2 + el.heard[1]));
  isola_port_close(el.exit_port);
  isola_port_close(el.root);
}

static void el_root_h(void *ctx, isola_port port, isola_value m,
                      isola_port reply_to) {
  (void)ctx, (void)reply_to;
  if (port == el.exit_port) {
    DCHECK(item(m, 0) == T_EXIT, "on_exit message");
    el.exits++;
  } else {
    switch (item(m, 0)) {
    case T_PORT:
      el.victim_port = th_item_port(m, 1);
      for (int64_t i = 0; i < EL_ADDERS; i++)
        spawn(el_adder, INTS(i), "adder", ISOLA_PORT_NONE);
      (void)isola_send(el.victim_port, INTS(0)); /* ends it, soon */
      break;
    case T_DONE:
      el.last_ok[item(m, 1)] = item(m, 2);
      el.done++;
      break;
    case T_CLEANED: el.cleaned++; break;
    default: DCHECK(0, "unexpected message");
    }
  }
  el_check_end();
}

static void el_root(isola_value msg) {
  (void)msg;
  DCHECK(isola_port_open(el_root_h, NULL, &el.root) == ISOLA_OK, "port");
  DCHECK(isola_port_open(el_root_h, NULL, &el.exit_port) == ISOLA_OK, "port");
  for (int i = 0; i < EL_ADDERS; i++)
    DCHECK(isola_port_open(el_listen_h, NULL, &el.lport[i]) == ISOLA_OK,
           "port");
  atomic_store(&hook_port, el.root);
  el.victim = spawn(el_victim, isola_sendport(el.root), "victim",
                    el.exit_port);
}

static void exit_listeners_while_dying(uint64_t seed) {
  memset(&el, 0, sizeof el);
  vm_start(seed);
  run_root(el_root);
  vm_stop();
}

/* ---------------------------------------------------------------------- */
/* Outbox (sends in a row) vs spawn ordering                               */
/* ---------------------------------------------------------------------- */

#define OB_ROUNDS 5
#define OB_ROW 10
enum { FROM_X = 1, FROM_Z, FROM_W };

static struct {
  isola_port root, y_port, w_port;
  long x_seen[OB_ROUNDS];
  long z_seen, w_seen;
  int y_done, x_done, cleaned;
  uint64_t mix;
} ob;

static void ob_y_h(void *ctx, isola_port port, isola_value m,
                   isola_port reply_to) {
  (void)ctx, (void)reply_to;
  int64_t from = item(m, 1), r = item(m, 2), i = item(m, 3);
  DCHECK(r >= 0 && r < OB_ROUNDS, "round %lld", (long long)r);
  ob.mix = ob.mix * 31 + (uint64_t)(from * 10000 + r * 100 + i);
  if (from == FROM_X) {
    DCHECK(i == ob.x_seen[r], "X round %lld: got %lld, expected %ld",
           (long long)r, (long long)i, ob.x_seen[r]);
    ob.x_seen[r]++;
  } else {
    /* What was sent before the spawn (or before the message that made W
     * send) is ahead of it. */
    DCHECK(ob.x_seen[r] == OB_ROW,
           "%s of round %lld came after %ld of X's %d", from == FROM_Z ? "Z"
                                                                      : "W",
           (long long)r, ob.x_seen[r], OB_ROW);
    if (from == FROM_Z) ob.z_seen++;
    else ob.w_seen++;
  }
  if (ob.z_seen == 2 * OB_ROUNDS && ob.w_seen == OB_ROUNDS &&
      ob.x_seen[OB_ROUNDS - 1] == OB_ROW) {
    DCHECK(isola_send(ob.root, INTS(T_ALL)) == ISOLA_OK, "all");
    isola_port_close(port);
  }
}

static void ob_y(isola_value msg) {
  isola_port p;
  DCHECK(isola_port_open(ob_y_h, NULL, &p) == ISOLA_OK, "port");
  DCHECK(isola_send(th_port(msg), port_msg(p)) == ISOLA_OK,
         "port to root");
}

static void ob_z(isola_value msg) {
  DCHECK(isola_send(ob.y_port, INTS(T_ITEM, FROM_Z, th_int(msg), 0)) ==
             ISOLA_OK,
         "Z's send");
}

static void ob_w_h(void *ctx, isola_port port, isola_value m,
                   isola_port reply_to) {
  (void)ctx, (void)reply_to;
  int64_t r = th_int(m);
  if (r < 0) {
    isola_port_close(port);
    return;
  }
  DCHECK(isola_send(ob.y_port, INTS(T_ITEM, FROM_W, r, 0)) == ISOLA_OK,
         "W's send");
}

static void ob_w(isola_value msg) {
  (void)msg;
  isola_port p;
  DCHECK(isola_port_open(ob_w_h, NULL, &p) == ISOLA_OK, "port");
  DCHECK(isola_send(ob.root, port_msg(p)) == ISOLA_OK,
         "port to root");
}

static void ob_x(isola_value msg) {
  (void)msg;
  for (int64_t r = 0; r < OB_ROUNDS; r++) {
    for (int64_t i = 0; i < OB_ROW; i++)
      DCHECK(isola_send(ob.y_port, INTS(T_ITEM, FROM_X, r, i)) == ISOLA_OK,
             "X's send");
    /* Two children: the second displaces the first from this worker's
     * runnext into its ring, where another thread may take it at once. */
    if (r % 2 == 0) {
      spawn(ob_z, isola_int(r), "z", ISOLA_PORT_NONE);
      spawn(ob_z, isola_int(r), "z", ISOLA_PORT_NONE);
      DCHECK(isola_send(ob.w_port, isola_int(r)) == ISOLA_OK, "to W");
    } else {
      DCHECK(isola_send(ob.w_port, isola_int(r)) == ISOLA_OK, "to W");
      spawn(ob_z, isola_int(r), "z", ISOLA_PORT_NONE);
      spawn(ob_z, isola_int(r), "z", ISOLA_PORT_NONE);
    }
  }
  DCHECK(isola_send(ob.w_port, isola_int(-1)) == ISOLA_OK, "W's end");
  DCHECK(isola_send(ob.root, INTS(T_DONE, 0, 0)) == ISOLA_OK, "done");
}

static void ob_root_h(void *ctx, isola_port port, isola_value m,
                      isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  switch (item(m, 0)) {
  case T_PORT:
    if (ob.y_port == ISOLA_PORT_NONE) {
      ob.y_port = th_item_port(m, 1);
      spawn(ob_w, isola_null(), "w", ISOLA_PORT_NONE);
    } else {
      ob.w_port = th_item_port(m, 1);
      spawn(ob_x, isola_null(), "x", ISOLA_PORT_NONE);
    }
    break;
  case T_ALL: ob.y_done++; break;
  case T_DONE: ob.x_done++; break;
  case T_EXIT: break;
  case T_CLEANED: ob.cleaned++; break;
  default: DCHECK(0, "unexpected message");
  }
  if (ob.y_done == 1 && ob.x_done == 1 && ob.cleaned == 1) {
    record_trace(ob.mix);
    isola_port_close(ob.root);
  }
}

static void ob_root(isola_value msg) {
  (void)msg;
  DCHECK(isola_port_open(ob_root_h, NULL, &ob.root) == ISOLA_OK, "port");
  atomic_store(&hook_port, ob.root);
  /* Y is "victim" for the cleanup hook: its end is the run's end. */
  spawn(ob_y, isola_sendport(ob.root), "victim", ISOLA_PORT_NONE);
}

static void outbox_vs_spawn(uint64_t seed) {
  memset(&ob, 0, sizeof ob);
  vm_start(seed);
  run_root(ob_root);
  vm_stop();
}

/* ---------------------------------------------------------------------- */
/* A blocking section that waits for another isolate                       */
/* ---------------------------------------------------------------------- */

/* The blocked thread steps out of the baton until the section ends, so
 * the isolate it waits for runs (explored, not replayed exactly: the
 * blocked thread races the baton). */
static th_counter bl_signal = TH_COUNTER_INIT;
static struct {
  isola_port root;
  int done;
} bl;

static void bl_waiter(isola_value msg) {
  (void)msg;
  DCHECK(isola_blocking_begin() == ISOLA_OK, "blocking_begin");
  DCHECK(th_counter_wait_ge(&bl_signal, 1, 20000),
         "the other isolate never ran while this handler blocked");
  DCHECK(isola_blocking_end() == ISOLA_OK, "blocking_end");
  DCHECK(isola_send(bl.root, INTS(T_DONE, 0, 0)) == ISOLA_OK, "done");
}

static void bl_signaller(isola_value msg) {
  (void)msg;
  th_counter_add(&bl_signal, 1);
  DCHECK(isola_send(bl.root, INTS(T_DONE, 1, 0)) == ISOLA_OK, "done");
}

static void bl_root_h(void *ctx, isola_port port, isola_value m,
                      isola_port reply_to) {
  (void)ctx, (void)reply_to, (void)m;
  if (++bl.done == 2) isola_port_close(port);
}

static void bl_root(isola_value msg) {
  (void)msg;
  DCHECK(isola_port_open(bl_root_h, NULL, &bl.root) == ISOLA_OK, "port");
  spawn(bl_waiter, isola_null(), "waiter", ISOLA_PORT_NONE);
  spawn(bl_signaller, isola_null(), "signaller", ISOLA_PORT_NONE);
}

static void blocking_section(uint64_t seed) {
  memset(&bl, 0, sizeof bl);
  pthread_mutex_lock(&bl_signal.mu);
  bl_signal.value = 0;
  pthread_mutex_unlock(&bl_signal.mu);
  vm_start(seed);
  run_root(bl_root);
  vm_stop();
}

/* ---------------------------------------------------------------------- */
/* The tests                                                               */
/* ---------------------------------------------------------------------- */

static void explore(const char *name, void (*scenario)(uint64_t)) {
  signal(SIGALRM, on_alarm);
  cur_scenario = name;
  unsigned n;
  uint64_t base = seeds_base(&n);
  cr_log_info("determ: %s: seeds %llu..%llu", name, (unsigned long long)base,
              (unsigned long long)(base + n - 1));
  fprintf(stderr, "determ: %s: seeds %llu..%llu\n", name,
          (unsigned long long)base, (unsigned long long)(base + n - 1));
  for (unsigned i = 0; i < n; i++) scenario(base + i);
}

Test(determ, kill_racing_send) { explore("kill_racing_send", kill_racing_send); }

Test(determ, pause_resume_storm) {
  explore("pause_resume_storm", pause_resume_storm);
}

Test(determ, shutdown_racing_spawn) {
  explore("shutdown_racing_spawn", shutdown_racing_spawn);
}

Test(determ, exit_listeners_added_while_dying) {
  explore("exit_listeners_added_while_dying", exit_listeners_while_dying);
}

Test(determ, outbox_vs_spawn_ordering) {
  explore("outbox_vs_spawn_ordering", outbox_vs_spawn);
}

Test(determ, blocking_section_waits_for_another_isolate) {
  explore("blocking_section_waits_for_another_isolate", blocking_section);
}

/* One seed replays one interleaving: the same trace of decisions and the
 * same outcome twice; another seed, another trace. */
static void replay(const char *name, void (*scenario)(uint64_t)) {
  signal(SIGALRM, on_alarm);
  cur_scenario = name;
  unsigned n;
  uint64_t base = seeds_base(&n);
  for (uint64_t seed = base; seed < base + 5; seed++) {
    scenario(seed);
    uint64_t t1 = run_trace, s1 = run_steps, o1 = run_outcome;
    cr_assert(s1 > 100, "%s seed %llu: only %llu decisions", name,
              (unsigned long long)seed, (unsigned long long)s1);
    scenario(seed);
    cr_assert(run_trace == t1 && run_steps == s1 && run_outcome == o1,
              "%s seed %llu: trace %016llx/%llu outcome %llx, then "
              "%016llx/%llu outcome %llx",
              name, (unsigned long long)seed, (unsigned long long)t1,
              (unsigned long long)s1, (unsigned long long)o1,
              (unsigned long long)run_trace, (unsigned long long)run_steps,
              (unsigned long long)run_outcome);
    scenario(seed + 1000003);
    cr_assert(run_trace != t1, "%s: seeds %llu and %llu gave one trace",
              name, (unsigned long long)seed,
              (unsigned long long)(seed + 1000003));
  }
}

Test(determ, one_seed_replays_one_interleaving) {
  replay("kill_racing_send", kill_racing_send);
  replay("outbox_vs_spawn_ordering", outbox_vs_spawn);
  replay("pause_resume_storm", pause_resume_storm);
}
