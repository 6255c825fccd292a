/* SPDX-License-Identifier: MIT */
/*
 * The VM: init and shutdown, errors without a VM, embedder hooks, the live
 * isolate limit, shutdown with messages in flight and with a stuck isolate,
 * tracing, isola_live_isolates().
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "helpers.h"

#include <inttypes.h>

TestSuite(vm, .timeout = TH_TEST_TIMEOUT_S);

static void empty_entry(isola_value msg) { (void)msg; }

/* ---------------------------------------------------------------------- */
/* Lifecycle                                                               */
/* ---------------------------------------------------------------------- */

Test(vm, config_init_sets_every_field_to_zero) {
  isola_config c;
  memset(&c, 0xa5, sizeof c);
  isola_config_init(&c);
  cr_assert(c.workers == 0 && c.idle_timeout_ms == 0 && c.max_isolates == 0 &&
                c.shutdown_grace_ms == 0 && c.trace == 0 &&
                c.trace_file == NULL,
            "isola_config_init left a field set");
  cr_assert(c.hooks.data == NULL && c.hooks.group_created == NULL &&
                c.hooks.isolate_created == NULL &&
                c.hooks.isolate_shutdown == NULL &&
                c.hooks.isolate_cleanup == NULL &&
                c.hooks.group_cleanup == NULL,
            "isola_config_init left a hook set");
}

Test(vm, init_and_shutdown_twice_in_a_row) {
  th_vm_init(NULL);
  th_vm_shutdown_ok();
  isola_config c;
  isola_config_init(&c);
  c.workers = 3;
  th_vm_init(&c);
  /* A VM that ran something shuts down as cleanly. */
  TH_ASSERT_OK(isola_spawn(empty_entry, isola_null(), NULL, NULL));
  th_vm_shutdown_ok();
}

Test(vm, second_init_while_running_returns_EEXIST) {
  th_vm_init(NULL);
  TH_ASSERT_RC(isola_vm_init(NULL), ISOLA_EEXIST);
  isola_config c;
  isola_config_init(&c);
  c.workers = 1;
  TH_ASSERT_RC(isola_vm_init(&c), ISOLA_EEXIST);
  /* The running VM is unharmed. */
  TH_ASSERT_OK(isola_spawn(empty_entry, isola_null(), NULL, NULL));
  th_vm_shutdown_ok();
}

Test(vm, calls_before_init_return_ENOVM) {
  isola_isolate h;
  TH_ASSERT_RC(isola_send((isola_port)0x1234567890abcdefull, isola_int(1)),
               ISOLA_ENOVM);
  TH_ASSERT_RC(isola_send_reply((isola_port)0x1234567890abcdefull,
                                isola_int(1), (isola_port)42),
               ISOLA_ENOVM);
  TH_ASSERT_RC(isola_spawn(empty_entry, isola_null(), NULL, &h), ISOLA_ENOVM);
  TH_ASSERT_RC(isola_run_main(empty_entry, isola_null(), "m"), ISOLA_ENOVM);
  cr_assert(isola_live_isolates() == 0, "live isolates without a VM");
  th_leak_check();
}

Test(vm, shutdown_without_a_vm_returns_ENOVM) {
  isola_shutdown_report r;
  TH_ASSERT_RC(isola_vm_shutdown(NULL), ISOLA_ENOVM);
  TH_ASSERT_RC(isola_vm_shutdown(&r), ISOLA_ENOVM);
  th_vm_init(NULL);
  th_vm_shutdown_ok();
  TH_ASSERT_RC(isola_vm_shutdown(NULL), ISOLA_ENOVM);
}

Test(vm, calls_after_shutdown_return_ENOVM) {
  th_vm_init(NULL);
  th_vm_shutdown_ok();
  TH_ASSERT_RC(isola_send((isola_port)77, isola_int(1)), ISOLA_ENOVM);
  TH_ASSERT_RC(isola_spawn(empty_entry, isola_null(), NULL, NULL),
               ISOLA_ENOVM);
  TH_ASSERT_RC(isola_run_main(empty_entry, isola_null(), NULL), ISOLA_ENOVM);
}

static atomic_int shutdown_from_isolate_rc = 1;

static void shutdown_from_isolate_entry(isola_value msg) {
  (void)msg;
  atomic_store(&shutdown_from_isolate_rc, isola_vm_shutdown(NULL));
}

Test(vm, shutdown_from_an_isolate_returns_EBUSY) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(shutdown_from_isolate_entry, isola_null(),
                              "would-shutdown"));
  TH_ASSERT_RC(atomic_load(&shutdown_from_isolate_rc), ISOLA_EBUSY);
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* Hooks                                                                   */
/* ---------------------------------------------------------------------- */

enum ev_kind {
  EV_GROUP_CREATED,
  EV_ISOLATE_CREATED,
  EV_ISOLATE_SHUTDOWN,
  EV_ISOLATE_CLEANUP,
  EV_GROUP_CLEANUP
};

static const char *const ev_names[] = {"group_created", "isolate_created",
                                       "isolate_shutdown", "isolate_cleanup",
                                       "group_cleanup"};

struct ev {
  enum ev_kind kind;
  char name[80];
  isola_port control;
  uint64_t origin, group;
  void *data;       /* hooks.data as received */
  void *group_data; /* group_cleanup: as received; group_created: returned */
  int current_rc;   /* isolate_shutdown: isola_current() */
  isola_port current_port;
};

#define MAX_EVENTS 1024
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ev events[MAX_EVENTS]; /* protected by log_mu */
static size_t nevents;               /* protected by log_mu */
static int group_tags[64];           /* group_created returns &tag[i] */
static int hooks_magic;              /* &hooks_magic is hooks.data */
static th_counter cleanups = TH_COUNTER_INIT;

static struct ev *log_event(enum ev_kind kind, void *data) {
  pthread_mutex_lock(&log_mu);
  if (nevents == MAX_EVENTS) th_check_failed(__FILE__, __LINE__, "log full");
  struct ev *e = &events[nevents++];
  memset(e, 0, sizeof *e);
  e->kind = kind;
  e->data = data;
  return e; /* filled under log_mu, which the caller releases */
}

static void *on_group_created(void *data, uint64_t group) {
  struct ev *e = log_event(EV_GROUP_CREATED, data);
  static size_t ngroups;
  TH_CHECK(ngroups < sizeof group_tags / sizeof group_tags[0]);
  e->group = group;
  e->group_data = &group_tags[ngroups++];
  void *ret = e->group_data;
  pthread_mutex_unlock(&log_mu);
  return ret;
}

static void log_isolate(enum ev_kind kind, void *data,
                        const isola_isolate_info *info) {
  isola_isolate cur = {0};
  int rc = kind == EV_ISOLATE_SHUTDOWN ? isola_current(&cur) : 0;
  struct ev *e = log_event(kind, data);
  TH_CHECK(info != NULL && info->name != NULL);
  snprintf(e->name, sizeof e->name, "%s", info->name);
  e->control = info->control_port;
  e->origin = info->origin;
  e->group = info->group;
  e->current_rc = rc;
  e->current_port = cur.control_port;
  pthread_mutex_unlock(&log_mu);
}

static void on_isolate_created(void *data, const isola_isolate_info *info) {
  log_isolate(EV_ISOLATE_CREATED, data, info);
}

static void on_isolate_shutdown(void *data, const isola_isolate_info *info) {
  log_isolate(EV_ISOLATE_SHUTDOWN, data, info);
}

static void on_isolate_cleanup(void *data, const isola_isolate_info *info) {
  log_isolate(EV_ISOLATE_CLEANUP, data, info);
  th_counter_add(&cleanups, 1);
}

static void on_group_cleanup(void *data, uint64_t group, void *group_data) {
  struct ev *e = log_event(EV_GROUP_CLEANUP, data);
  e->group = group;
  e->group_data = group_data;
  pthread_mutex_unlock(&log_mu);
}

static void hooks_config(isola_config *c) {
  isola_config_init(c);
  c->hooks.data = &hooks_magic;
  c->hooks.group_created = on_group_created;
  c->hooks.isolate_created = on_isolate_created;
  c->hooks.isolate_shutdown = on_isolate_shutdown;
  c->hooks.isolate_cleanup = on_isolate_cleanup;
  c->hooks.group_cleanup = on_group_cleanup;
}

static void dump_events(void) {
  for (size_t i = 0; i < nevents; i++)
    fprintf(stderr, "  #%zu %s name=%s control=%" PRIx64 " origin=%" PRIx64
                    " group=%" PRIx64 "\n",
            i, ev_names[events[i].kind], events[i].name, events[i].control,
            events[i].origin, events[i].group);
}

/* Index of the only event of kind for control port (or group), failing the
 * test if there is not exactly one. */
static size_t only_event(enum ev_kind kind, uint64_t key) {
  size_t found = SIZE_MAX, count = 0;
  for (size_t i = 0; i < nevents; i++) {
    bool group_ev = kind == EV_GROUP_CREATED || kind == EV_GROUP_CLEANUP;
    uint64_t k = group_ev ? events[i].group : events[i].control;
    if (events[i].kind == kind && k == key) {
      found = i;
      count++;
    }
  }
  if (count != 1) dump_events();
  cr_assert(count == 1, "%s ran %zu times for %" PRIx64 " (expected once)",
            ev_names[kind], count, key);
  return found;
}

/* What the isolates of the hooks scenario saw of themselves. */
struct seen {
  isola_isolate_info info;
  char name[80];
  void *group_data;
};
static struct seen seen_main, seen_child[3], seen_root;
static th_counter seen_root_done = TH_COUNTER_INIT;

static void record_self(struct seen *s) {
  TH_CHECK_OK(isola_current_info(&s->info));
  snprintf(s->name, sizeof s->name, "%s", s->info.name);
  s->info.name = s->name;
  s->group_data = isola_group_data();
}

static void hook_child_entry(isola_value msg) {
  record_self(&seen_child[th_int(msg)]);
}

static void hook_root_entry(isola_value msg) {
  (void)msg;
  record_self(&seen_root);
  th_counter_add(&seen_root_done, 1);
}

static void hook_main_handler(void *ctx, isola_port port, isola_value msg,
                              isola_port reply_to) {
  (void)msg;
  (void)reply_to;
  int *exits = ctx;
  if (++*exits == 3) TH_CHECK_OK(isola_port_close(port));
}

static int hook_main_exits;

static void hook_main_entry(isola_value msg) {
  (void)msg;
  record_self(&seen_main);
  isola_port p;
  TH_CHECK_OK(isola_port_open(hook_main_handler, &hook_main_exits, &p));
  for (int i = 0; i < 3; i++) {
    char name[32];
    snprintf(name, sizeof name, "hooks-child-%d", i);
    isola_spawn_options o = {.name = name, .on_exit = p};
    TH_CHECK_OK(isola_spawn(hook_child_entry, isola_int(i), &o, NULL));
  }
}

Test(vm, hooks_run_once_per_isolate_and_group_in_order) {
  isola_config c;
  hooks_config(&c);
  th_vm_init(&c);
  TH_ASSERT_OK(isola_run_main(hook_main_entry, isola_null(), "hooks-main"));
  isola_spawn_options o = {.name = "hooks-root"};
  isola_isolate root;
  TH_ASSERT_OK(isola_spawn(hook_root_entry, isola_null(), &o, &root));
  TH_WAIT_GE(&seen_root_done, 1);
  th_vm_shutdown_ok();

  /* After shutdown every hook has run: the log is final. */
  pthread_mutex_lock(&log_mu);
  for (size_t i = 0; i < nevents; i++)
    cr_assert(events[i].data == &hooks_magic,
              "%s got data %p, expected hooks.data", ev_names[events[i].kind],
              events[i].data);

  struct seen *all[5] = {&seen_main, &seen_child[0], &seen_child[1],
                         &seen_child[2], &seen_root};
  const char *names[5] = {"hooks-main", "hooks-child-0", "hooks-child-1",
                          "hooks-child-2", "hooks-root"};
  size_t n_isolate_events = 0;
  for (size_t i = 0; i < nevents; i++)
    if (events[i].kind >= EV_ISOLATE_CREATED &&
        events[i].kind <= EV_ISOLATE_CLEANUP)
      n_isolate_events++;
  if (n_isolate_events != 15) dump_events();
  cr_assert(n_isolate_events == 15,
            "%zu isolate hook calls, expected 3 each for 5 isolates",
            n_isolate_events);

  for (int k = 0; k < 5; k++) {
    struct seen *s = all[k];
    cr_assert(strcmp(s->name, names[k]) == 0,
              "isolate %d calls itself \"%s\", expected \"%s\"", k, s->name,
              names[k]);
    size_t cr = only_event(EV_ISOLATE_CREATED, s->info.control_port);
    size_t sd = only_event(EV_ISOLATE_SHUTDOWN, s->info.control_port);
    size_t cl = only_event(EV_ISOLATE_CLEANUP, s->info.control_port);
    cr_assert(cr < sd && sd < cl,
              "%s: hooks out of order (created #%zu, shutdown #%zu, "
              "cleanup #%zu)",
              names[k], cr, sd, cl);
    for (size_t e = 0; e < 3; e++) {
      struct ev *ev = &events[e == 0 ? cr : e == 1 ? sd : cl];
      cr_assert(strcmp(ev->name, names[k]) == 0, "%s: hook got name \"%s\"",
                names[k], ev->name);
      cr_assert(ev->origin == s->info.origin && ev->group == s->info.group,
                "%s: %s got origin/group %" PRIx64 "/%" PRIx64
                ", the isolate saw %" PRIx64 "/%" PRIx64,
                names[k], ev_names[ev->kind], ev->origin, ev->group,
                s->info.origin, s->info.group);
    }
    cr_assert(events[sd].current_rc == ISOLA_OK &&
                  events[sd].current_port == s->info.control_port,
              "%s: isola_current() in isolate_shutdown gave %s, port %" PRIx64,
              names[k], isola_err_name(events[sd].current_rc),
              events[sd].current_port);
    /* The group was created before the isolate and cleaned up after. */
    size_t gc = only_event(EV_GROUP_CREATED, s->info.group);
    size_t gx = only_event(EV_GROUP_CLEANUP, s->info.group);
    cr_assert(gc < cr && cl < gx,
              "%s: group hooks out of order (group_created #%zu, "
              "isolate_created #%zu, isolate_cleanup #%zu, group_cleanup #%zu)",
              names[k], gc, cr, cl, gx);
    cr_assert(s->group_data == events[gc].group_data,
              "%s: isola_group_data() is %p, group_created returned %p",
              names[k], s->group_data, events[gc].group_data);
    cr_assert(events[gx].group_data == events[gc].group_data,
              "%s: group_cleanup got %p, group_created returned %p", names[k],
              events[gx].group_data, events[gc].group_data);
  }

  /* Groups and origins. */
  cr_assert(seen_main.info.origin == seen_main.info.control_port,
            "a root isolate's origin is itself");
  cr_assert(seen_root.info.origin == seen_root.info.control_port,
            "a root isolate's origin is itself (spawned from a thread)");
  cr_assert(seen_root.info.control_port == root.control_port,
            "the spawn handle names the isolate");
  for (int i = 0; i < 3; i++) {
    cr_assert(seen_child[i].info.group == seen_main.info.group,
              "child %d is not in its spawner's group", i);
    cr_assert(seen_child[i].info.origin == seen_main.info.control_port,
              "child %d: origin is not its spawner", i);
  }
  cr_assert(seen_root.info.group != seen_main.info.group,
            "a spawn from a plain thread must start a new group");
  size_t ngc = 0, ngx = 0;
  for (size_t i = 0; i < nevents; i++) {
    ngc += events[i].kind == EV_GROUP_CREATED;
    ngx += events[i].kind == EV_GROUP_CLEANUP;
  }
  cr_assert(ngc == 2 && ngx == 2, "%zu groups created, %zu cleaned up (2)",
            ngc, ngx);
  pthread_mutex_unlock(&log_mu);
}

/* Isolates idle with open ports when shutdown starts are ended by it, and
 * their hooks run all the same. */
static th_counter idle_ready = TH_COUNTER_INIT;

static void idle_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
}

static void idle_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(idle_handler, NULL, &p));
  th_counter_add(&idle_ready, 1);
}

Test(vm, shutdown_ends_idle_isolates_and_runs_their_hooks) {
  isola_config c;
  hooks_config(&c);
  th_vm_init(&c);
  isola_isolate h[3];
  for (int i = 0; i < 3; i++)
    TH_ASSERT_OK(isola_spawn(idle_entry, isola_null(), NULL, &h[i]));
  TH_WAIT_GE(&idle_ready, 3);
  cr_assert(isola_live_isolates() == 3, "live isolates %zu, expected 3",
            isola_live_isolates());
  th_vm_shutdown_ok();
  pthread_mutex_lock(&log_mu);
  for (int i = 0; i < 3; i++) {
    size_t cr = only_event(EV_ISOLATE_CREATED, h[i].control_port);
    size_t sd = only_event(EV_ISOLATE_SHUTDOWN, h[i].control_port);
    size_t cl = only_event(EV_ISOLATE_CLEANUP, h[i].control_port);
    cr_assert(cr < sd && sd < cl, "isolate %d: hooks out of order", i);
    cr_assert(strcmp(events[cr].name, "isolate") == 0,
              "default name is \"%s\"", events[cr].name);
    only_event(EV_GROUP_CLEANUP, events[cr].group);
  }
  pthread_mutex_unlock(&log_mu);
}

/* ---------------------------------------------------------------------- */
/* max_isolates                                                            */
/* ---------------------------------------------------------------------- */

#define LIMIT 4
static _Atomic isola_port limit_ports[LIMIT];
static th_counter limit_ready = TH_COUNTER_INIT;
static th_counter limit_tried = TH_COUNTER_INIT;
static atomic_int limit_inner_rc = 1;

static void limit_handler(void *ctx, isola_port port, isola_value msg,
                          isola_port reply_to) {
  (void)ctx, (void)reply_to;
  const char *s = NULL;
  TH_CHECK_OK(isola_value_get_str(msg, &s, NULL));
  if (strcmp(s, "try-spawn") == 0) {
    /* From an isolate the limit holds as well. */
    atomic_store(&limit_inner_rc,
                 isola_spawn(empty_entry, isola_null(), NULL, NULL));
    th_counter_add(&limit_tried, 1);
  } else {
    TH_CHECK_OK(isola_port_close(port));
  }
}

static void limit_entry(isola_value msg) {
  isola_port p;
  TH_CHECK_OK(isola_port_open(limit_handler, NULL, &p));
  atomic_store(&limit_ports[th_int(msg) % LIMIT], p);
  th_counter_add(&limit_ready, 1);
}

Test(vm, spawning_past_max_isolates_returns_ELIMIT_until_isolates_end) {
  isola_config c;
  hooks_config(&c);
  c.max_isolates = LIMIT;
  th_vm_init(&c);

  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < LIMIT; i++)
      TH_ASSERT_OK(isola_spawn(limit_entry, isola_int(i), NULL, NULL));
    TH_WAIT_GE(&limit_ready, (round + 1) * LIMIT);
    cr_assert(isola_live_isolates() == LIMIT, "live %zu, expected %d",
              isola_live_isolates(), LIMIT);
    isola_isolate h = {0};
    TH_ASSERT_RC(isola_spawn(empty_entry, isola_null(), NULL, &h),
                 ISOLA_ELIMIT);
    TH_ASSERT_RC(isola_run_main(empty_entry, isola_null(), NULL),
                 ISOLA_ELIMIT);
    TH_ASSERT_OK(isola_send(atomic_load(&limit_ports[0]),
                            isola_str("try-spawn")));
    TH_WAIT_GE(&limit_tried, round + 1);
    TH_ASSERT_RC(atomic_load(&limit_inner_rc), ISOLA_ELIMIT);

    /* End them all; the slots come back. */
    for (int i = 0; i < LIMIT; i++)
      TH_ASSERT_OK(isola_send(atomic_load(&limit_ports[i]), isola_str("end")));
    TH_WAIT_GE(&cleanups, (round + 1) * LIMIT);
    th_wait_live_isolates(0);
  }
  TH_ASSERT_OK(isola_spawn(empty_entry, isola_null(), NULL, NULL));
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* Shutdown while isolates flood each other                                */
/* ---------------------------------------------------------------------- */

#define FLOOD_N 8
static _Atomic isola_port flood_ports[FLOOD_N];
static th_counter flood_ready = TH_COUNTER_INIT;
static th_counter flood_handled = TH_COUNTER_INIT;
static uint64_t flood_rng[FLOOD_N]; /* each isolate's own */

static void flood_handler(void *ctx, isola_port port, isola_value msg,
                          isola_port reply_to) {
  (void)port, (void)reply_to;
  uint64_t *rng = ctx;
  static _Atomic long handled;
  if ((atomic_fetch_add(&handled, 1) & 255) == 0)
    th_counter_add(&flood_handled, 256);
  /* Forward the message (strings, bytes, a nested list) to two peers: the
   * queues only grow.  Sends fail once shutdown starts; that is fine. */
  for (int k = 0; k < 2; k++) {
    isola_port to = atomic_load(&flood_ports[th_rand_below(rng, FLOOD_N)]);
    int rc = isola_send(to, msg);
    TH_CHECKF(rc == ISOLA_OK || rc == ISOLA_ESHUTDOWN || rc == ISOLA_ECLOSED ||
                  rc == ISOLA_ENOVM,
              "flood send: %s", isola_err_name(rc));
  }
}

static void flood_entry(isola_value msg) {
  int64_t i = th_int(msg);
  flood_rng[i] = 0x1234567ull * (uint64_t)(i + 1);
  isola_port p;
  TH_CHECK_OK(isola_port_open(flood_handler, &flood_rng[i], &p));
  atomic_store(&flood_ports[i], p);
  th_counter_add(&flood_ready, 1);
}

Test(vm, shutdown_with_messages_in_flight_frees_everything) {
  isola_config c;
  isola_config_init(&c);
  th_vm_init(&c);
  for (int i = 0; i < FLOOD_N; i++) {
    char name[32];
    snprintf(name, sizeof name, "flood-%d", i);
    isola_spawn_options o = {.name = name};
    TH_ASSERT_OK(isola_spawn(flood_entry, isola_int(i), &o, NULL));
  }
  TH_WAIT_GE(&flood_ready, FLOOD_N);
  static const uint8_t blob[100] = {1, 2, 3};
  isola_value inner[2] = {isola_str("inner"), isola_bytes(blob, 100)};
  isola_value items[4] = {isola_int(0), isola_str("a flood of copies"),
                          isola_list(inner, 2), isola_list(inner, 2)};
  for (int i = 0; i < FLOOD_N; i++)
    TH_ASSERT_OK(isola_send(atomic_load(&flood_ports[i]),
                            isola_list(items, 4)));
  TH_WAIT_GE(&flood_handled, TH_SIZE(20000));
  th_vm_shutdown_ok(); /* ISOLA_OK, nothing leaked, nothing alive */
}

/* ---------------------------------------------------------------------- */
/* Shutdown with an isolate stuck in a handler                             */
/* ---------------------------------------------------------------------- */

static th_counter stuck_entered = TH_COUNTER_INIT;
static th_counter stuck_release = TH_COUNTER_INIT;
static th_counter stuck_ready = TH_COUNTER_INIT;
static _Atomic isola_port stuck_port;

static void stuck_handler(void *ctx, isola_port port, isola_value msg,
                          isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
  th_counter_add(&stuck_entered, 1);
  /* Stuck in C code until the test lets go (after shutdown timed out). */
  TH_CHECK_WAIT_GE(&stuck_release, 1);
}

static void stuck_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(stuck_handler, NULL, &p));
  atomic_store(&stuck_port, p);
  th_counter_add(&stuck_ready, 1);
}

static bool text_mentions_port(const char *text, uint64_t port) {
  char buf[3][40];
  snprintf(buf[0], sizeof buf[0], "%" PRIu64, port);
  snprintf(buf[1], sizeof buf[1], "%" PRIx64, port);
  snprintf(buf[2], sizeof buf[2], "%" PRIX64, port);
  for (int i = 0; i < 3; i++)
    if (strstr(text, buf[i])) return true;
  return false;
}

Test(vm, shutdown_with_a_stuck_isolate_times_out_and_names_it) {
  isola_config c;
  hooks_config(&c);
  c.shutdown_grace_ms = 200;
  th_vm_init(&c);
  isola_spawn_options o = {.name = "stuck-in-c-code"};
  isola_isolate h;
  TH_ASSERT_OK(isola_spawn(stuck_entry, isola_null(), &o, &h));
  /* A well-behaved idle isolate beside it must not be reported. */
  isola_spawn_options o2 = {.name = "idle-bystander"};
  TH_ASSERT_OK(isola_spawn(idle_entry, isola_null(), &o2, NULL));
  TH_WAIT_GE(&stuck_ready, 1);
  TH_WAIT_GE(&idle_ready, 1);
  TH_ASSERT_OK(isola_send(atomic_load(&stuck_port), isola_str("block")));
  TH_WAIT_GE(&stuck_entered, 1);

  isola_shutdown_report r;
  memset(&r, 0, sizeof r);
  TH_ASSERT_RC(isola_vm_shutdown(&r), ISOLA_ETIMEDOUT);
  cr_log_info("shutdown report: stuck=%zu: %s", r.stuck, r.text);
  cr_assert(r.stuck == 1, "report.stuck is %zu, expected 1 (%s)", r.stuck,
            r.text);
  cr_assert(memchr(r.text, '\0', sizeof r.text) != NULL,
            "report.text is not NUL-terminated");
  cr_assert(strstr(r.text, "stuck-in-c-code") != NULL,
            "report.text does not name the stuck isolate: \"%s\"", r.text);
  cr_assert(strstr(r.text, "idle-bystander") == NULL,
            "report.text names an isolate that ended: \"%s\"", r.text);
  cr_assert(text_mentions_port(r.text, h.control_port),
            "report.text does not give the control port %" PRIx64 ": \"%s\"",
            h.control_port, r.text);

  /* While shutting down: no new work, no second VM. */
  TH_ASSERT_RC(isola_spawn(empty_entry, isola_null(), NULL, NULL),
               ISOLA_ESHUTDOWN);
  TH_ASSERT_RC(isola_send(atomic_load(&stuck_port), isola_int(1)),
               ISOLA_ESHUTDOWN);
  TH_ASSERT_RC(isola_vm_init(NULL), ISOLA_EEXIST);

  th_counter_add(&stuck_release, 1);
  th_vm_shutdown_ok(); /* the second call waits again, and now succeeds */
  pthread_mutex_lock(&log_mu);
  only_event(EV_ISOLATE_CLEANUP, h.control_port);
  pthread_mutex_unlock(&log_mu);
  /* And the VM can start again. */
  th_vm_init(NULL);
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* Tracing                                                                 */
/* ---------------------------------------------------------------------- */

static void trace_main_handler(void *ctx, isola_port port, isola_value msg,
                               isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  TH_CHECK_OK(isola_port_close(port)); /* the child's on_exit */
}

static void trace_main_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(trace_main_handler, NULL, &p));
  isola_spawn_options o = {.name = "traced-child-plugh", .on_exit = p};
  TH_CHECK_OK(isola_spawn(empty_entry, isola_null(), &o, NULL));
}

static size_t count_occurrences(const char *hay, size_t len, const char *s) {
  size_t n = 0, sl = strlen(s);
  for (size_t i = 0; i + sl <= len; i++)
    if (memcmp(hay + i, s, sl) == 0) n++;
  return n;
}

static void run_traced(unsigned trace, char **buf, size_t *len) {
  FILE *f = open_memstream(buf, len);
  cr_assert(f != NULL, "open_memstream failed");
  isola_config c;
  isola_config_init(&c);
  c.trace = trace;
  c.trace_file = f;
  th_vm_init(&c);
  TH_ASSERT_OK(
      isola_run_main(trace_main_entry, isola_null(), "traced-main-xyzzy"));
  th_vm_shutdown_ok();
  cr_assert(fclose(f) == 0, "fclose of the trace stream failed");
}

Test(vm, trace_isolates_writes_start_and_stop_of_each_isolate) {
  char *buf = NULL;
  size_t len = 0;
  run_traced(ISOLA_TRACE_ISOLATES, &buf, &len);
  cr_log_info("trace output:\n%.*s", (int)len, buf);
  size_t child = count_occurrences(buf, len, "traced-child-plugh");
  size_t main_ = count_occurrences(buf, len, "traced-main-xyzzy");
  cr_assert(child >= 2, "the child is named %zu times (start and stop: 2)",
            child);
  cr_assert(main_ >= 2, "main is named %zu times (start and stop: 2)", main_);
  free(buf);
  th_leak_check();
}

Test(vm, trace_messages_writes_something_when_messages_are_handled) {
  char *buf = NULL;
  size_t len = 0;
  run_traced(ISOLA_TRACE_MESSAGES, &buf, &len);
  cr_assert(len > 0, "ISOLA_TRACE_MESSAGES wrote nothing");
  free(buf);
  th_leak_check();
}

Test(vm, trace_zero_writes_nothing) {
  char *buf = NULL;
  size_t len = 0;
  run_traced(0, &buf, &len);
  cr_assert(len == 0, "trace 0 wrote %zu bytes: %.*s", len, (int)len, buf);
  free(buf);
  th_leak_check();
}

/* ---------------------------------------------------------------------- */
/* isola_live_isolates                                                     */
/* ---------------------------------------------------------------------- */

static atomic_size_t live_seen_in_main;

static void live_main_entry(isola_value msg) {
  (void)msg;
  atomic_store(&live_seen_in_main, isola_live_isolates());
}

Test(vm, live_isolates_counts_running_isolates) {
  cr_assert(isola_live_isolates() == 0, "before init");
  isola_config c;
  hooks_config(&c);
  th_vm_init(&c);
  cr_assert(isola_live_isolates() == 0, "after init: %zu",
            isola_live_isolates());
  TH_ASSERT_OK(isola_run_main(live_main_entry, isola_null(), NULL));
  cr_assert(atomic_load(&live_seen_in_main) == 1,
            "run_main's isolate saw %zu live isolates, expected itself only",
            atomic_load(&live_seen_in_main));
  TH_WAIT_GE(&cleanups, 1);
  th_wait_live_isolates(0);
  for (int i = 0; i < 5; i++)
    TH_ASSERT_OK(isola_spawn(limit_entry, isola_int(i), NULL, NULL));
  TH_WAIT_GE(&limit_ready, 5);
  cr_assert(isola_live_isolates() == 5, "live %zu, expected 5",
            isola_live_isolates());
  /* limit_ports holds 4 of them (index % 4): end those. */
  for (int i = 1; i < LIMIT; i++)
    TH_ASSERT_OK(isola_send(atomic_load(&limit_ports[i]), isola_str("end")));
  TH_WAIT_GE(&cleanups, 1 + 3);
  th_wait_live_isolates(2);
  th_vm_shutdown_ok();
  cr_assert(isola_live_isolates() == 0, "after shutdown");
}

/* ---------------------------------------------------------------------- */
/* Plain threads sending and asking while the VM shuts down                */
/* ---------------------------------------------------------------------- */

/* Every call gets a result (never a crash, never a leak): sends and
 * control requests build their messages only once inside the VM, and
 * shutdown waits for callers inside before it frees the pool. */
#define RACERS 3
static _Atomic isola_port racer_target;
static isola_isolate racer_handle;
static th_counter racer_ready = TH_COUNTER_INIT;
static th_counter racer_calls = TH_COUNTER_INIT;
static _Atomic bool racers_stop;

static void racer_sink(void *ctx, isola_port port, isola_value msg,
                       isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
}

static void racer_target_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(racer_sink, NULL, &p));
  atomic_store(&racer_target, p);
  th_counter_add(&racer_ready, 1);
}

static void *racer(void *arg) {
  (void)arg;
  static const char text[200] = "a message larger than the smallest class";
  isola_value items[3] = {isola_int(1), isola_str(text), isola_null()};
  isola_port to = atomic_load(&racer_target);
  long n = 0;
  while (!atomic_load(&racers_stop)) {
    int rc = isola_send(to, isola_list(items, 3));
    TH_CHECKF(rc == ISOLA_OK || rc == ISOLA_ECLOSED || rc == ISOLA_ESHUTDOWN ||
                  rc == ISOLA_ENOVM,
              "send: %s", isola_err_name(rc));
    rc = isola_ping(&racer_handle, to, isola_list(items, 3),
                    ISOLA_IMMEDIATE);
    TH_CHECKF(rc == ISOLA_OK || rc == ISOLA_ECLOSED || rc == ISOLA_ESHUTDOWN ||
                  rc == ISOLA_ENOVM,
              "ping: %s", isola_err_name(rc));
    if (++n % 64 == 0) th_counter_add(&racer_calls, 64);
  }
  return NULL;
}

Test(vm, plain_threads_sending_through_shutdown_get_results_not_crashes) {
  th_vm_init(NULL);
  TH_ASSERT_OK(
      isola_spawn(racer_target_entry, isola_null(), NULL, &racer_handle));
  TH_WAIT_GE(&racer_ready, 1);
  pthread_t t[RACERS];
  for (int i = 0; i < RACERS; i++)
    cr_assert(pthread_create(&t[i], NULL, racer, NULL) == 0, "create");
  TH_WAIT_GE(&racer_calls, 64L * 100);
  isola_shutdown_report report;
  memset(&report, 0, sizeof report);
  int rc = isola_vm_shutdown(&report);
  atomic_store(&racers_stop, true);
  for (int i = 0; i < RACERS; i++) pthread_join(t[i], NULL);
  cr_assert(rc == ISOLA_OK, "shutdown: %s (%s)", isola_err_name(rc),
            report.text);
  th_leak_check();
}
