/* SPDX-License-Identifier: MIT */
/*
 * Exit notices (issue 17 item 3a): every reason an isolate ends is named in
 * the notice [reason, isolate, detail, response] its notice listeners get,
 * error notices name the isolate, and the plain exit response is unchanged.
 *
 * Plumbing: a "sink" isolate keeps a copy of every message it gets; the
 * "victims" obey int commands (see victim_cmd).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "helpers.h"

TestSuite(exit_notice, .timeout = TH_TEST_TIMEOUT_S);

/* ---- the sink ---------------------------------------------------------- */

#define SINK_MAX 256
static struct {
  pthread_mutex_t mu;
  isola_value v[SINK_MAX]; /* copies, protected by mu */
  int n;                   /* protected by mu */
  _Atomic isola_port port;
  _Atomic isola_port port2; /* a second port of the same isolate */
} sink = {.mu = PTHREAD_MUTEX_INITIALIZER};
static th_counter sink_got = TH_COUNTER_INIT;
static th_counter sink_ready = TH_COUNTER_INIT;

static void sink_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  isola_value c;
  TH_CHECK_OK(isola_value_copy(msg, &c));
  pthread_mutex_lock(&sink.mu);
  TH_CHECK(sink.n < SINK_MAX);
  sink.v[sink.n++] = c;
  pthread_mutex_unlock(&sink.mu);
  th_counter_add(&sink_got, 1);
}

static void sink_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(sink_handler, NULL, &p));
  atomic_store(&sink.port, p);
  TH_CHECK_OK(isola_port_open(sink_handler, NULL, &p));
  atomic_store(&sink.port2, p);
  th_counter_add(&sink_ready, 1);
}

static isola_port sink_start(void) {
  TH_ASSERT_OK(isola_spawn(sink_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&sink_ready, 1);
  return atomic_load(&sink.port);
}

static void sink_free(void) {
  pthread_mutex_lock(&sink.mu);
  for (int i = 0; i < sink.n; i++) isola_value_free(&sink.v[i]);
  sink.n = 0;
  pthread_mutex_unlock(&sink.mu);
}

/* The first message at the sink that is a list whose item 1 is the port
 * id (a notice or an error notice naming that isolate) and whose length is
 * len; waits for it. */
static isola_value wait_for(isola_port id, uint32_t len) {
  for (;;) {
    long before = th_counter_get(&sink_got);
    pthread_mutex_lock(&sink.mu);
    for (int i = 0; i < sink.n; i++) {
      isola_value v = sink.v[i], x;
      isola_port p;
      size_t at = len == 4 ? 1 : 2; /* notice: item 1; error: item 2 */
      if (v.kind == ISOLA_LIST && v.len == len &&
          isola_list_get(v, at, &x) == ISOLA_OK &&
          isola_value_get_port(x, &p) == ISOLA_OK && p == id) {
        pthread_mutex_unlock(&sink.mu);
        return v;
      }
    }
    pthread_mutex_unlock(&sink.mu);
    cr_assert(th_counter_wait_ge(&sink_got, before + 1, TH_WAIT_MS),
              "timed out waiting for a message about %016llx",
              (unsigned long long)id);
  }
}

/* Checks a notice: reason, detail (NULL: must be null; else a substring),
 * response (an int). */
static void check_notice(isola_value n, int reason, const char *detail,
                         int64_t response) {
  cr_assert(n.kind == ISOLA_LIST && n.len == 4, "not a notice");
  int64_t r = th_item_int(n, 0);
  cr_assert(r == reason, "reason %s, expected %s",
            isola_exit_reason_name((int)r), isola_exit_reason_name(reason));
  isola_value d;
  TH_ASSERT_OK(isola_list_get(n, 2, &d));
  if (!detail) {
    cr_assert(d.kind == ISOLA_NULL, "detail is not null");
  } else {
    const char *s;
    TH_ASSERT_OK(isola_value_get_str(d, &s, NULL));
    cr_assert(strstr(s, detail), "detail '%s' lacks '%s'", s, detail);
  }
  cr_assert(th_item_int(n, 3) == response, "response %lld",
            (long long)th_item_int(n, 3));
}

/* How many messages at the sink are the plain int x. */
static int sink_count_int(int64_t x) {
  int k = 0;
  pthread_mutex_lock(&sink.mu);
  for (int i = 0; i < sink.n; i++) {
    int64_t y;
    if (isola_value_get_int(sink.v[i], &y) == ISOLA_OK && y == x) k++;
  }
  pthread_mutex_unlock(&sink.mu);
  return k;
}

static void wait_int(int64_t x) {
  for (;;) {
    long before = th_counter_get(&sink_got);
    if (sink_count_int(x) > 0) return;
    cr_assert(th_counter_wait_ge(&sink_got, before + 1, TH_WAIT_MS),
              "timed out waiting for %lld at the sink", (long long)x);
  }
}

/* ---- victims ----------------------------------------------------------- */

enum {
  V_RETURN = 0,  /* entry: open nothing, return (normal end) */
  V_SERVE,       /* entry: open a command port, report it */
  V_THROW,       /* entry: throw */
  V_EXIT,        /* entry: isola_exit(sink, 5) */
  V_HOG,         /* entry: allocate past the heap limit */
};

enum { C_THROW = -1, C_CLOSE = -2, C_ECHO = -3 };

static _Atomic isola_port victim_port;
static th_counter victim_ready = TH_COUNTER_INIT;

static void victim_cmd(void *ctx, isola_port port, isola_value msg,
                       isola_port reply_to) {
  (void)ctx, (void)reply_to;
  switch (th_int(msg)) {
  case C_THROW:
    isola_throw("handler failed %d", 7);
  case C_CLOSE:
    TH_CHECK_OK(isola_port_close(port));
    return;
  default:
    TH_CHECK_OK(isola_send(atomic_load(&sink.port), msg));
    return;
  }
}

static void victim_entry(isola_value msg) {
  isola_port p;
  switch (th_int(msg)) {
  case V_RETURN:
    return;
  case V_SERVE:
    TH_CHECK_OK(isola_port_open(victim_cmd, NULL, &p));
    atomic_store(&victim_port, p);
    th_counter_add(&victim_ready, 1);
    return;
  case V_THROW:
    isola_throw("entry failed with %s", "a reason");
  case V_EXIT:
    isola_exit(atomic_load(&sink.port), isola_int(5));
    TH_CHECK(false);
    return;
  case V_HOG:
    for (;;) TH_CHECK(isola_alloc(1 << 16) != NULL);
  }
}

static isola_isolate spawn_victim(int what, const isola_spawn_options *o) {
  isola_isolate h;
  TH_ASSERT_OK(isola_spawn(victim_entry, isola_int(what), o, &h));
  return h;
}

static isola_spawn_options notice_opts(isola_port to, int64_t response) {
  isola_spawn_options o = {.on_exit = to,
                           .on_exit_message = isola_int(response),
                           .exit_notice = true};
  return o;
}

/* ---- one test per reason ---------------------------------------------- */

Test(exit_notice, normal_when_the_entry_returns_with_no_port) {
  th_vm_init(NULL);
  isola_port s = sink_start();
  isola_spawn_options o = notice_opts(s, 11);
  isola_isolate h = spawn_victim(V_RETURN, &o);
  check_notice(wait_for(h.control_port, 4), ISOLA_EXIT_NORMAL, NULL, 11);
  th_vm_shutdown_ok();
  sink_free();
}

Test(exit_notice, normal_when_the_last_port_closes_and_after_isola_exit) {
  th_vm_init(NULL);
  isola_port s = sink_start();
  isola_spawn_options o = notice_opts(s, 12);
  isola_isolate h = spawn_victim(V_SERVE, &o);
  TH_WAIT_GE(&victim_ready, 1);
  TH_ASSERT_OK(isola_send(atomic_load(&victim_port), isola_int(C_CLOSE)));
  check_notice(wait_for(h.control_port, 4), ISOLA_EXIT_NORMAL, NULL, 12);

  o = notice_opts(s, 13);
  h = spawn_victim(V_EXIT, &o);
  check_notice(wait_for(h.control_port, 4), ISOLA_EXIT_NORMAL, NULL, 13);
  cr_assert(sink_count_int(5) == 1, "the exit value arrived once");
  th_vm_shutdown_ok();
  sink_free();
}

Test(exit_notice, killed_at_either_priority) {
  th_vm_init(NULL);
  isola_port s = sink_start();
  isola_spawn_options o = notice_opts(s, 21);
  isola_isolate h = spawn_victim(V_SERVE, &o);
  TH_WAIT_GE(&victim_ready, 1);
  TH_ASSERT_OK(isola_kill(&h, ISOLA_IMMEDIATE));
  check_notice(wait_for(h.control_port, 4), ISOLA_EXIT_KILLED, NULL, 21);

  o = notice_opts(s, 22);
  h = spawn_victim(V_SERVE, &o);
  TH_WAIT_GE(&victim_ready, 2);
  TH_ASSERT_OK(isola_kill(&h, ISOLA_BEFORE_NEXT_EVENT));
  check_notice(wait_for(h.control_port, 4), ISOLA_EXIT_KILLED, NULL, 22);
  th_vm_shutdown_ok();
  sink_free();
}

Test(exit_notice, error_carries_its_message_and_error_notices_name_the_isolate) {
  th_vm_init(NULL);
  isola_port s = sink_start();
  isola_spawn_options o = notice_opts(s, 31);
  o.on_error = s;
  o.error_notice = true;
  isola_isolate h = spawn_victim(V_THROW, &o);
  check_notice(wait_for(h.control_port, 4), ISOLA_EXIT_ERROR,
               "entry failed with a reason", 31);
  isola_value e = wait_for(h.control_port, 3);
  cr_assert(strstr(th_item_str(e, 0), "entry failed with a reason"), "strstr(th_item_str(e, 0), 'entry failed with a reason')");
  cr_assert(th_item_port(e, 2) == h.control_port, "th_item_port(e, 2) == h.control_port");

  /* An error in a handler, too; a plain error listener (the second port)
   * keeps getting [message, stack], an added notice one names it. */
  o = notice_opts(s, 32);
  o.on_error = atomic_load(&sink.port2);
  h = spawn_victim(V_SERVE, &o);
  TH_WAIT_GE(&victim_ready, 1);
  TH_ASSERT_OK(isola_add_error_notice_listener(&h, s));
  TH_ASSERT_RC(isola_add_error_notice_listener(&h, ISOLA_PORT_NONE),
               ISOLA_EINVAL);
  TH_ASSERT_OK(isola_send(atomic_load(&victim_port), isola_int(C_THROW)));
  check_notice(wait_for(h.control_port, 4), ISOLA_EXIT_ERROR,
               "handler failed 7", 32);
  e = wait_for(h.control_port, 3);
  cr_assert(strstr(th_item_str(e, 0), "handler failed 7"), "strstr(th_item_str(e, 0), 'handler failed 7')");
  int plain = 0;
  pthread_mutex_lock(&sink.mu);
  for (int i = 0; i < sink.n; i++)
    if (sink.v[i].kind == ISOLA_LIST && sink.v[i].len == 2 &&
        strstr(th_item_str(sink.v[i], 0), "handler failed 7"))
      plain++;
  pthread_mutex_unlock(&sink.mu);
  cr_assert(plain == 1, "%d plain error messages", plain);
  th_vm_shutdown_ok();
  sink_free();
}

Test(exit_notice, a_nonfatal_error_that_the_isolate_survives_is_forgotten) {
  th_vm_init(NULL);
  isola_port s = sink_start();
  isola_spawn_options o = notice_opts(s, 41);
  o.errors_nonfatal = true;
  isola_isolate h = spawn_victim(V_SERVE, &o);
  TH_WAIT_GE(&victim_ready, 1);
  isola_port vp = atomic_load(&victim_port);
  TH_ASSERT_OK(isola_send(vp, isola_int(C_THROW)));
  TH_ASSERT_OK(isola_send(vp, isola_int(4242))); /* handled after it */
  wait_int(4242);
  TH_ASSERT_OK(isola_send(vp, isola_int(C_CLOSE)));
  check_notice(wait_for(h.control_port, 4), ISOLA_EXIT_NORMAL, NULL, 41);
  th_vm_shutdown_ok();
  sink_free();
}

Test(exit_notice, a_nonfatal_error_with_no_port_left_ends_it_with_error) {
  th_vm_init(NULL);
  isola_port s = sink_start();
  isola_spawn_options o = notice_opts(s, 42);
  o.errors_nonfatal = true;
  isola_isolate h = spawn_victim(V_THROW, &o); /* the entry opened none */
  check_notice(wait_for(h.control_port, 4), ISOLA_EXIT_ERROR,
               "entry failed", 42);
  th_vm_shutdown_ok();
  sink_free();
}

Test(exit_notice, heap_limit) {
  th_vm_init(NULL);
  isola_port s = sink_start();
  isola_spawn_options o = notice_opts(s, 51);
  o.heap_limit = 1 << 20;
  o.on_error = s;
  o.error_notice = true;
  isola_isolate h = spawn_victim(V_HOG, &o);
  check_notice(wait_for(h.control_port, 4), ISOLA_EXIT_HEAP_LIMIT,
               "heap limit", 51);
  isola_value e = wait_for(h.control_port, 3);
  cr_assert(strstr(th_item_str(e, 0), "out of memory"), "strstr(th_item_str(e, 0), 'out of memory')");
  th_vm_shutdown_ok();
  sink_free();
}

/* Shutdown ends the sink too, so this reason is seen through the hooks,
 * whose info carries the same reason the notices do. */
static th_counter shut_seen = TH_COUNTER_INIT;
static _Atomic int shut_reason = -1, shut_reason_cleanup = -1;
static void on_shutdown_hook(void *data, const isola_isolate_info *info) {
  (void)data;
  if (strcmp(info->name, "victim") == 0)
    atomic_store(&shut_reason, info->exit_reason);
}
static void on_cleanup_hook(void *data, const isola_isolate_info *info) {
  (void)data;
  if (strcmp(info->name, "victim") == 0) {
    atomic_store(&shut_reason_cleanup, info->exit_reason);
    th_counter_add(&shut_seen, 1);
  }
}

Test(exit_notice, shutdown_and_the_hooks_see_the_reason) {
  isola_config cfg;
  isola_config_init(&cfg);
  cfg.hooks.isolate_shutdown = on_shutdown_hook;
  cfg.hooks.isolate_cleanup = on_cleanup_hook;
  th_vm_init(&cfg);
  isola_spawn_options o = {.name = "victim"};
  (void)spawn_victim(V_SERVE, &o);
  TH_WAIT_GE(&victim_ready, 1);
  th_vm_shutdown_ok();
  cr_assert(th_counter_get(&shut_seen) == 1, "th_counter_get(&shut_seen) == 1");
  cr_assert(atomic_load(&shut_reason) == ISOLA_EXIT_SHUTDOWN, "reason %d",
            atomic_load(&shut_reason));
  cr_assert(atomic_load(&shut_reason_cleanup) == ISOLA_EXIT_SHUTDOWN, "atomic_load(&shut_reason_cleanup) == ISOLA_EXIT_SHUTDOWN");

  /* And a kill, through the same hooks. */
  th_vm_init(&cfg);
  isola_isolate h = spawn_victim(V_SERVE, &o);
  TH_WAIT_GE(&victim_ready, 2);
  TH_ASSERT_OK(isola_kill(&h, ISOLA_IMMEDIATE));
  TH_WAIT_GE(&shut_seen, 2);
  cr_assert(atomic_load(&shut_reason_cleanup) == ISOLA_EXIT_KILLED, "atomic_load(&shut_reason_cleanup) == ISOLA_EXIT_KILLED");
  th_vm_shutdown_ok();
}

/* ---- listeners added after the spawn ---------------------------------- */

Test(exit_notice, added_listeners_and_plain_ones_side_by_side) {
  th_vm_init(NULL);
  isola_port s = sink_start();
  isola_spawn_options o = {.on_exit = s, .on_exit_message = isola_int(61)};
  isola_isolate h = spawn_victim(V_SERVE, &o);
  TH_WAIT_GE(&victim_ready, 1);
  isola_isolate weak;
  TH_ASSERT_OK(isola_isolate_from_port(h.control_port, &weak));
  /* A second port gets the notice; the first keeps its plain response. */
  isola_port s2 = atomic_load(&sink.port2);
  TH_ASSERT_OK(isola_add_exit_notice_listener(&weak, s2, isola_int(62)));
  TH_ASSERT_RC(isola_add_exit_notice_listener(&weak, ISOLA_PORT_NONE,
                                              isola_null()),
               ISOLA_EINVAL);
  TH_ASSERT_RC(isola_add_exit_notice_listener(NULL, s2, isola_null()),
               ISOLA_EINVAL);
  /* The ping answered means the add was handled (it went first). */
  TH_ASSERT_OK(isola_ping(&weak, s, isola_int(4243), ISOLA_IMMEDIATE));
  wait_int(4243);
  TH_ASSERT_OK(isola_kill(&h, ISOLA_IMMEDIATE));
  check_notice(wait_for(h.control_port, 4), ISOLA_EXIT_KILLED, NULL, 62);
  wait_int(61);
  cr_assert(sink_count_int(61) == 1, "sink_count_int(61) == 1");
  TH_ASSERT_RC(isola_add_exit_notice_listener(&weak, s2, isola_null()),
               ISOLA_ECLOSED);
  th_vm_shutdown_ok();
  sink_free();
}

Test(exit_notice, adding_a_port_again_replaces_its_kind) {
  th_vm_init(NULL);
  isola_port s = sink_start();
  isola_spawn_options o = notice_opts(s, 71);
  isola_isolate h = spawn_victim(V_SERVE, &o);
  TH_WAIT_GE(&victim_ready, 1);
  /* The plain add replaces the spawn's notice listener: one message, the
   * bare response.  A listener on the sink's second port, added last, is
   * told last, and the sink isolate gets h's messages in order: once 79
   * is in, whatever h sent to s is in. */
  TH_ASSERT_OK(isola_add_exit_listener(&h, s, isola_int(72)));
  TH_ASSERT_OK(isola_add_exit_listener(&h, atomic_load(&sink.port2),
                                       isola_int(79)));
  TH_ASSERT_OK(isola_kill(&h, ISOLA_BEFORE_NEXT_EVENT));
  wait_int(79);
  pthread_mutex_lock(&sink.mu);
  int notices = 0;
  for (int i = 0; i < sink.n; i++)
    notices += sink.v[i].kind == ISOLA_LIST && sink.v[i].len == 4 &&
               th_item_port(sink.v[i], 1) == h.control_port;
  pthread_mutex_unlock(&sink.mu);
  cr_assert(notices == 0, "a notice for a replaced listener");
  cr_assert(sink_count_int(72) == 1, "sink_count_int(72) == 1");
  th_vm_shutdown_ok();
  sink_free();
}

Test(exit_notice, reason_names) {
  cr_assert(strcmp(isola_exit_reason_name(ISOLA_EXIT_NORMAL), "normal") == 0, "strcmp(isola_exit_reason_name(ISOLA_EXIT_NORMAL), 'normal') ");
  cr_assert(strcmp(isola_exit_reason_name(ISOLA_EXIT_KILLED), "killed") == 0, "strcmp(isola_exit_reason_name(ISOLA_EXIT_KILLED), 'killed') ");
  cr_assert(strcmp(isola_exit_reason_name(ISOLA_EXIT_ERROR), "error") == 0, "strcmp(isola_exit_reason_name(ISOLA_EXIT_ERROR), 'error') ==");
  cr_assert(strcmp(isola_exit_reason_name(ISOLA_EXIT_HEAP_LIMIT),
                   "heap limit") == 0, "strcmp(isola_exit_reason_name(ISOLA_EXIT_HEAP_LIMIT), 'heap ");
  cr_assert(strcmp(isola_exit_reason_name(ISOLA_EXIT_SHUTDOWN),
                   "shutdown") == 0, "strcmp(isola_exit_reason_name(ISOLA_EXIT_SHUTDOWN), 'shutdow");
  cr_assert(strcmp(isola_exit_reason_name(ISOLA_EXIT_NODE_LOST),
                   "node lost") == 0, "strcmp(isola_exit_reason_name(ISOLA_EXIT_NODE_LOST), 'node l");
  cr_assert(strcmp(isola_exit_reason_name(99), "unknown") == 0, "strcmp(isola_exit_reason_name(99), 'unknown') == 0");
  cr_assert(strcmp(isola_exit_reason_name(-1), "unknown") == 0, "strcmp(isola_exit_reason_name(-1), 'unknown') == 0");
}
