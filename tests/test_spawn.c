/* SPDX-License-Identifier: MIT */
/*
 * Spawning: the entry and its message, isola_current / isola_current_info,
 * names, origins and groups, the end of an isolate without ports and its
 * on_exit message, 10,000 isolates, isola_run_main.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "helpers.h"

#include <inttypes.h>

TestSuite(spawn, .timeout = TH_TEST_TIMEOUT_S);

static void empty_entry(isola_value msg) { (void)msg; }

/* ---------------------------------------------------------------------- */
/* The entry and its message                                               */
/* ---------------------------------------------------------------------- */

static isola_value copy_expected; /* what the entry must receive */
static th_counter copy_checked = TH_COUNTER_INIT;

static void copy_entry(isola_value msg) {
  TH_CHECKF(isola_value_equal(msg, copy_expected),
            "the spawn message arrived different");
  const char *s;
  size_t len;
  isola_value e;
  TH_CHECK_OK(isola_list_get(msg, 0, &e));
  TH_CHECK_OK(isola_value_get_str(e, &s, &len));
  TH_CHECK(len == strlen("spawn-message") && s[len] == '\0');
  th_counter_add(&copy_checked, 1);
}

Test(spawn, spawn_runs_entry_with_a_copy_of_the_message) {
  th_vm_init(NULL);
  char buf[32] = "spawn-message";
  uint8_t bytes[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  isola_value inner[2] = {isola_int(99), isola_bytes(bytes, 8)};
  isola_value items[3] = {isola_str(buf), isola_list(inner, 2),
                          isola_list(inner, 2)};
  isola_value msg = isola_list(items, 3);
  TH_ASSERT_OK(isola_value_copy(msg, &copy_expected));
  isola_isolate h;
  memset(&h, 0, sizeof h);
  TH_ASSERT_OK(isola_spawn(copy_entry, msg, NULL, &h));
  /* The message was copied before isola_spawn returned. */
  memset(buf, 'X', sizeof buf - 1);
  memset(bytes, 0, sizeof bytes);
  inner[0] = isola_int(-1);
  items[2] = isola_null();
  cr_assert(h.control_port != ISOLA_PORT_NONE, "no control port");
  cr_assert(h.pause_capability != 0 && h.terminate_capability != 0,
            "a capability is 0");
  cr_assert(h.pause_capability != h.terminate_capability &&
                h.pause_capability != h.control_port &&
                h.terminate_capability != h.control_port,
            "handle fields are not distinct");
  TH_WAIT_GE(&copy_checked, 1);
  isola_value_free(&copy_expected);
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* isola_current, isola_current_info                                       */
/* ---------------------------------------------------------------------- */

struct self_report {
  isola_isolate handle;
  isola_isolate_info info;
  char name[128];
  int current_null_rc, info_null_rc;
};
static struct self_report reports[8];
static th_counter reported = TH_COUNTER_INIT;

static void report_self(struct self_report *r) {
  TH_CHECK_OK(isola_current(&r->handle));
  TH_CHECK_OK(isola_current_info(&r->info));
  TH_CHECK(r->info.name != NULL);
  snprintf(r->name, sizeof r->name, "%s", r->info.name);
  r->info.name = r->name;
  r->current_null_rc = isola_current(NULL);
  r->info_null_rc = isola_current_info(NULL);
}

static void self_entry(isola_value msg) {
  report_self(&reports[th_int(msg)]);
  th_counter_add(&reported, 1);
}

Test(spawn, current_inside_an_isolate_matches_its_spawn_handle) {
  th_vm_init(NULL);
  isola_isolate h;
  TH_ASSERT_OK(isola_spawn(self_entry, isola_int(0), NULL, &h));
  TH_WAIT_GE(&reported, 1);
  struct self_report *r = &reports[0];
  cr_assert(r->handle.control_port == h.control_port &&
                r->handle.pause_capability == h.pause_capability &&
                r->handle.terminate_capability == h.terminate_capability,
            "isola_current() differs from the spawn handle");
  cr_assert(r->info.control_port == h.control_port,
            "isola_current_info() control port differs");
  TH_ASSERT_RC(r->current_null_rc, ISOLA_EINVAL);
  TH_ASSERT_RC(r->info_null_rc, ISOLA_EINVAL);
  th_vm_shutdown_ok();
}

Test(spawn, current_outside_an_isolate_gives_ENOTISOLATE) {
  isola_isolate h;
  isola_isolate_info info;
  TH_ASSERT_RC(isola_current(&h), ISOLA_ENOTISOLATE); /* no VM */
  th_vm_init(NULL);
  TH_ASSERT_RC(isola_current(&h), ISOLA_ENOTISOLATE);
  TH_ASSERT_RC(isola_current_info(&info), ISOLA_ENOTISOLATE);
  cr_assert(isola_group_data() == NULL, "group data outside an isolate");
  th_vm_shutdown_ok();
}

Test(spawn, current_info_gives_the_name_default_isolate_and_root_origin) {
  th_vm_init(NULL);
  char name[16] = "named-one";
  isola_spawn_options named = {.name = name};
  isola_spawn_options unnamed = {.name = NULL};
  char longname[101];
  memset(longname, 'n', 100);
  longname[100] = '\0';
  isola_spawn_options lng = {.name = longname};
  isola_isolate h[4];
  TH_ASSERT_OK(isola_spawn(self_entry, isola_int(0), &named, &h[0]));
  strcpy(name, "changed"); /* the name was copied */
  TH_ASSERT_OK(isola_spawn(self_entry, isola_int(1), NULL, &h[1]));
  TH_ASSERT_OK(isola_spawn(self_entry, isola_int(2), &unnamed, &h[2]));
  TH_ASSERT_OK(isola_spawn(self_entry, isola_int(3), &lng, &h[3]));
  TH_WAIT_GE(&reported, 4);
  cr_assert(strcmp(reports[0].name, "named-one") == 0, "name \"%s\"",
            reports[0].name);
  cr_assert(strcmp(reports[1].name, "isolate") == 0,
            "default name (opts NULL) \"%s\"", reports[1].name);
  cr_assert(strcmp(reports[2].name, "isolate") == 0,
            "default name (name NULL) \"%s\"", reports[2].name);
  cr_assert(strlen(reports[3].name) == 63 &&
                strncmp(reports[3].name, longname, 63) == 0,
            "a 100-byte name keeps 63 bytes, got %zu: \"%s\"",
            strlen(reports[3].name), reports[3].name);
  /* The two sides of the inline / allocated boundary (15 and 16 bytes). */
  const char *edge[2] = {"fifteen-bytes-x", "sixteen-bytes-xy"};
  for (int i = 0; i < 2; i++) {
    isola_spawn_options e = {.name = edge[i]};
    TH_ASSERT_OK(isola_spawn(self_entry, isola_int(4 + i), &e, NULL));
  }
  TH_WAIT_GE(&reported, 6);
  for (int i = 0; i < 2; i++)
    cr_assert(strcmp(reports[4 + i].name, edge[i]) == 0, "name \"%s\"",
              reports[4 + i].name);
  for (int i = 0; i < 4; i++) {
    cr_assert(reports[i].info.control_port == h[i].control_port,
              "isolate %d: control port differs from its handle", i);
    cr_assert(reports[i].info.origin == h[i].control_port,
              "isolate %d spawned from a plain thread: origin %" PRIx64
              " is not itself (%" PRIx64 ")",
              i, reports[i].info.origin, h[i].control_port);
    for (int j = 0; j < i; j++)
      cr_assert(reports[i].info.group != reports[j].info.group,
                "isolates %d and %d spawned from a plain thread share a "
                "group",
                i, j);
  }
  th_vm_shutdown_ok();
}

/* main -> child -> grandchild: all in main's group, all of main's origin. */
static struct self_report fam[3]; /* main, child, grandchild */

static void family_main_handler(void *ctx, isola_port port, isola_value msg,
                                isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  static int exits;
  if (++exits == 2) TH_CHECK_OK(isola_port_close(port));
}

static void grandchild_entry(isola_value msg) {
  (void)msg;
  report_self(&fam[2]);
}

static void child_entry(isola_value msg) {
  report_self(&fam[1]);
  isola_spawn_options o = {.name = "grandchild", .on_exit = th_port(msg)};
  TH_CHECK_OK(isola_spawn(grandchild_entry, isola_null(), &o, NULL));
}

static void family_main_entry(isola_value msg) {
  (void)msg;
  report_self(&fam[0]);
  isola_port p;
  TH_CHECK_OK(isola_port_open(family_main_handler, NULL, &p));
  isola_spawn_options o = {.name = "child", .on_exit = p};
  TH_CHECK_OK(isola_spawn(child_entry, isola_sendport(p), &o, NULL));
}

Test(spawn, spawn_from_an_isolate_shares_its_group_and_origin) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(family_main_entry, isola_null(), NULL));
  th_vm_shutdown_ok();
  cr_assert(strcmp(fam[0].name, "main") == 0,
            "isola_run_main with name NULL: \"%s\"", fam[0].name);
  cr_assert(strcmp(fam[1].name, "child") == 0, "\"%s\"", fam[1].name);
  cr_assert(strcmp(fam[2].name, "grandchild") == 0, "\"%s\"", fam[2].name);
  cr_assert(fam[0].info.origin == fam[0].info.control_port,
            "main's origin is itself");
  for (int i = 1; i < 3; i++) {
    cr_assert(fam[i].info.origin == fam[0].info.origin,
              "%s: origin %" PRIx64 ", its spawner's is %" PRIx64,
              fam[i].name, fam[i].info.origin, fam[i - 1].info.origin);
    cr_assert(fam[i].info.group == fam[0].info.group,
              "%s: group %" PRIx64 ", main's is %" PRIx64, fam[i].name,
              fam[i].info.group, fam[0].info.group);
    cr_assert(fam[i].info.control_port != fam[i - 1].info.control_port,
              "%s has its spawner's control port", fam[i].name);
  }
}

/* ---------------------------------------------------------------------- */
/* The end of an isolate, on_exit                                          */
/* ---------------------------------------------------------------------- */

static int exit_msgs;
static bool exit_null_seen, exit_value_seen, exit_late_seen;
static isola_value exit_expected;

static void exit_main_handler(void *ctx, isola_port port, isola_value msg,
                              isola_port reply_to) {
  (void)ctx, (void)reply_to;
  if (msg.kind == ISOLA_NULL) {
    TH_CHECKF(!exit_null_seen, "null on_exit message arrived twice");
    exit_null_seen = true;
  } else if (msg.kind == ISOLA_LIST) {
    TH_CHECKF(isola_value_equal(msg, exit_expected),
              "on_exit message arrived different");
    TH_CHECKF(!exit_value_seen, "on_exit message arrived twice");
    exit_value_seen = true;
  } else {
    const char *s = NULL;
    TH_CHECK_OK(isola_value_get_str(msg, &s, NULL));
    TH_CHECKF(strcmp(s, "late") == 0, "unexpected message \"%s\"", s);
    TH_CHECKF(!exit_late_seen, "late on_exit message arrived twice");
    exit_late_seen = true;
  }
  if (++exit_msgs == 3) TH_CHECK_OK(isola_port_close(port));
}

static void late_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  TH_CHECK_OK(isola_port_close(port));
}

static void late_entry(isola_value msg) {
  /* Lives until the message it sends itself arrives. */
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(late_handler, NULL, &p));
  TH_CHECK_OK(isola_send(p, isola_int(1)));
}

static void exit_main_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(exit_main_handler, NULL, &p));
  /* 1: no ports after entry, on_exit_message unset: null arrives. */
  isola_spawn_options o1 = {.on_exit = p};
  TH_CHECK_OK(isola_spawn(empty_entry, isola_null(), &o1, NULL));
  /* 2: an on_exit message, copied at spawn. */
  char buf[32] = "bye-from-child";
  isola_value items[2] = {isola_str(buf), isola_int(7)};
  TH_CHECK_OK(isola_value_copy(isola_list(items, 2), &exit_expected));
  isola_spawn_options o2 = {.on_exit = p,
                            .on_exit_message = isola_list(items, 2)};
  TH_CHECK_OK(isola_spawn(empty_entry, isola_null(), &o2, NULL));
  memset(buf, 'X', sizeof buf - 1);
  items[1] = isola_int(-7);
  /* 3: an isolate that ends later, when its port closes. */
  isola_spawn_options o3 = {.on_exit = p,
                            .on_exit_message = isola_str("late")};
  TH_CHECK_OK(isola_spawn(late_entry, isola_null(), &o3, NULL));
}

Test(spawn, an_isolate_without_ports_ends_and_on_exit_arrives) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(exit_main_entry, isola_null(), NULL));
  cr_assert(exit_null_seen, "on_exit without a message: nothing arrived");
  cr_assert(exit_value_seen, "on_exit with a message: nothing arrived");
  cr_assert(exit_late_seen, "on_exit of the late isolate: nothing arrived");
  isola_value_free(&exit_expected);
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* Many isolates                                                           */
/* ---------------------------------------------------------------------- */

#define ECHO_N TH_SIZE(10000)
static uint8_t *echo_seen;
static int echo_got;

static void echo_child_entry(isola_value msg) {
  /* [reply port, i, "payload-i"] -> [i, 3i+1, "payload-i"] */
  isola_port to = th_item_port(msg, 0);
  int64_t i = th_item_int(msg, 1);
  isola_value s;
  TH_CHECK_OK(isola_list_get(msg, 2, &s));
  isola_value items[3] = {isola_int(i), isola_int(3 * i + 1), s};
  TH_CHECK_OK(isola_send(to, isola_list(items, 3)));
}

static void echo_main_handler(void *ctx, isola_port port, isola_value msg,
                              isola_port reply_to) {
  (void)ctx, (void)reply_to;
  int64_t i = th_item_int(msg, 0);
  TH_CHECKF(i >= 0 && i < ECHO_N, "answer from unknown isolate %lld",
            (long long)i);
  TH_CHECKF(!echo_seen[i], "isolate %lld answered twice", (long long)i);
  TH_CHECK(th_item_int(msg, 1) == 3 * i + 1);
  char want[32];
  snprintf(want, sizeof want, "payload-%lld", (long long)i);
  TH_CHECK(strcmp(th_item_str(msg, 2), want) == 0);
  echo_seen[i] = 1;
  if (++echo_got == ECHO_N) TH_CHECK_OK(isola_port_close(port));
}

static void echo_main_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(echo_main_handler, NULL, &p));
  for (int i = 0; i < ECHO_N; i++) {
    char payload[32];
    snprintf(payload, sizeof payload, "payload-%d", i);
    isola_value items[3] = {isola_sendport(p), isola_int(i),
                            isola_str(payload)};
    TH_CHECK_OK(isola_spawn(echo_child_entry, isola_list(items, 3), NULL,
                            NULL));
  }
}

Test(spawn, ten_thousand_isolates_each_echo_a_message) {
  echo_seen = calloc(ECHO_N, 1);
  cr_assert(echo_seen != NULL, "out of memory");
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(echo_main_entry, isola_null(), "echo-main"));
  cr_assert(echo_got == ECHO_N, "%d of %d answers", echo_got, ECHO_N);
  for (int i = 0; i < ECHO_N; i++)
    cr_assert(echo_seen[i], "isolate %d never answered", i);
  free(echo_seen);
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* isola_run_main                                                          */
/* ---------------------------------------------------------------------- */

static pthread_t rm_test_thread;
static int rm_handled;
static bool rm_entry_on_caller, rm_handlers_on_caller = true;

static void rm_handler(void *ctx, isola_port port, isola_value msg,
                       isola_port reply_to) {
  (void)ctx, (void)reply_to;
  if (!pthread_equal(pthread_self(), rm_test_thread))
    rm_handlers_on_caller = false;
  TH_CHECK(th_int(msg) == rm_handled); /* in order */
  if (++rm_handled == 3) TH_CHECK_OK(isola_port_close(port));
}

static void rm_entry(isola_value msg) {
  TH_CHECK(th_int(msg) == 1234);
  rm_entry_on_caller = pthread_equal(pthread_self(), rm_test_thread);
  isola_port p;
  TH_CHECK_OK(isola_port_open(rm_handler, NULL, &p));
  for (int i = 0; i < 3; i++) TH_CHECK_OK(isola_send(p, isola_int(i)));
}

Test(spawn, run_main_runs_entry_and_handlers_on_the_calling_thread) {
  th_vm_init(NULL);
  rm_test_thread = pthread_self();
  TH_ASSERT_OK(isola_run_main(rm_entry, isola_int(1234), "runner"));
  cr_assert(rm_entry_on_caller, "the entry ran on another thread");
  cr_assert(rm_handlers_on_caller, "a handler ran on another thread");
  cr_assert(rm_handled == 3, "%d messages handled, expected 3", rm_handled);
  /* The calling thread is no isolate any more, and may run main again. */
  isola_isolate h;
  TH_ASSERT_RC(isola_current(&h), ISOLA_ENOTISOLATE);
  rm_handled = 0;
  TH_ASSERT_OK(isola_run_main(rm_entry, isola_int(1234), NULL));
  cr_assert(rm_handled == 3, "second run: %d messages handled", rm_handled);
  th_vm_shutdown_ok();
}

static atomic_int nested_rc_main = 1, nested_rc_child = 1;
static th_counter nested_done = TH_COUNTER_INIT;

static void nested_child_entry(isola_value msg) {
  (void)msg;
  atomic_store(&nested_rc_child,
               isola_run_main(empty_entry, isola_null(), "nested"));
  th_counter_add(&nested_done, 1);
}

static void nested_main_entry(isola_value msg) {
  (void)msg;
  atomic_store(&nested_rc_main,
               isola_run_main(empty_entry, isola_null(), "nested"));
  TH_CHECK_OK(isola_spawn(nested_child_entry, isola_null(), NULL, NULL));
}

Test(spawn, run_main_from_inside_an_isolate_gives_EBUSY) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(nested_main_entry, isola_null(), NULL));
  TH_WAIT_GE(&nested_done, 1);
  TH_ASSERT_RC(atomic_load(&nested_rc_main), ISOLA_EBUSY);
  TH_ASSERT_RC(atomic_load(&nested_rc_child), ISOLA_EBUSY);
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* Bad arguments                                                           */
/* ---------------------------------------------------------------------- */

static th_counter created = TH_COUNTER_INIT;
static void on_created(void *data, const isola_isolate_info *info) {
  (void)data, (void)info;
  th_counter_add(&created, 1);
}

static atomic_int inner_null_rc = 1;
static void inner_null_entry(isola_value msg) {
  (void)msg;
  atomic_store(&inner_null_rc, isola_spawn(NULL, isola_null(), NULL, NULL));
}

Test(spawn, spawn_with_a_NULL_entry_or_bad_message_gives_EINVAL) {
  isola_config c;
  isola_config_init(&c);
  c.hooks.isolate_created = on_created;
  th_vm_init(&c);
  isola_isolate h;
  TH_ASSERT_RC(isola_spawn(NULL, isola_null(), NULL, &h), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_spawn(NULL, isola_null(), NULL, NULL), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_spawn(empty_entry, isola_str("\xc3\x28"), NULL, NULL),
               ISOLA_EINVAL);
  isola_spawn_options o = {.on_exit = (isola_port)1234,
                           .on_exit_message = isola_str("\xff")};
  TH_ASSERT_RC(isola_spawn(empty_entry, isola_null(), &o, NULL),
               ISOLA_EINVAL);
  TH_ASSERT_RC(isola_run_main(NULL, isola_null(), NULL), ISOLA_EINVAL);
  /* Nothing was started. */
  cr_assert(isola_live_isolates() == 0, "live isolates %zu after failures",
            isola_live_isolates());
  cr_assert(th_counter_get(&created) == 0, "an isolate was created");
  TH_ASSERT_OK(isola_run_main(inner_null_entry, isola_null(), NULL));
  TH_ASSERT_RC(atomic_load(&inner_null_rc), ISOLA_EINVAL);
  th_vm_shutdown_ok();
  cr_assert(th_counter_get(&created) == 1, "%ld isolates created, expected 1",
            th_counter_get(&created));
}

/* ---------------------------------------------------------------------- */
/* Counts stay exact around an event that spawns several isolates          */
/* ---------------------------------------------------------------------- */

/* An event that spawns takes the live and member counts ahead in batches
 * and gives back what it did not use when it ends (isolate.c): once it has
 * ended the counts are exact, a failed spawn returns its share, and the
 * group's cleanup runs when its last member ends. */
#define BROOD 3
static _Atomic isola_port brood_port[BROOD + 1]; /* [BROOD]: the parent */
static th_counter brood_ready = TH_COUNTER_INIT;
static th_counter brood_groups_cleaned = TH_COUNTER_INIT;
static _Atomic int brood_bad_rc;

static void brood_handler(void *ctx, isola_port port, isola_value msg,
                          isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  TH_CHECK_OK(isola_port_close(port)); /* "end" */
}

static void brood_child_entry(isola_value msg) {
  isola_port p;
  TH_CHECK_OK(isola_port_open(brood_handler, NULL, &p));
  atomic_store(&brood_port[th_int(msg)], p);
  th_counter_add(&brood_ready, 1);
}

static void brood_parent_entry(isola_value msg) {
  (void)msg;
  for (int i = 0; i < BROOD; i++)
    TH_CHECK_OK(isola_spawn(brood_child_entry, isola_int(i), NULL, NULL));
  /* A spawn that fails: its share of the counts goes back. */
  isola_value bad = isola_null();
  bad.kind = (isola_kind)200;
  atomic_store(&brood_bad_rc,
               isola_spawn(brood_child_entry, bad, NULL, NULL));
  brood_child_entry(isola_int(BROOD)); /* the parent's own port */
}

static void brood_group_cleanup(void *data, uint64_t group, void *gdata) {
  (void)data, (void)group, (void)gdata;
  th_counter_add(&brood_groups_cleaned, 1);
}

Test(spawn, counts_are_exact_after_an_event_that_spawns_several) {
  isola_config c;
  isola_config_init(&c);
  c.hooks.group_cleanup = brood_group_cleanup;
  th_vm_init(&c);
  TH_ASSERT_OK(isola_spawn(brood_parent_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&brood_ready, BROOD + 1);
  TH_ASSERT_RC(atomic_load(&brood_bad_rc), ISOLA_EINVAL);
  th_wait_live_isolates(BROOD + 1); /* the parent and its children */
  for (int i = 0; i <= BROOD; i++)
    TH_ASSERT_OK(isola_send(atomic_load(&brood_port[i]), isola_str("end")));
  TH_WAIT_GE(&brood_groups_cleaned, 1); /* one group: all four ended */
  th_wait_live_isolates(0);
  th_vm_shutdown_ok();
  cr_assert(th_counter_get(&brood_groups_cleaned) == 1, "%ld group cleanups",
            th_counter_get(&brood_groups_cleaned));
}
