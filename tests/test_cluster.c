/* SPDX-License-Identifier: MIT */
/*
 * The cluster component (isola_cluster.h) across real processes: each
 * test starts its own nats-server on 127.0.0.1 (cluster_harness.c) and
 * `isola node` processes, and is node "a" itself, in this process.
 */
#include "helpers.h"

#include <isola_cluster.h>
#include <nats/nats.h>

#include <signal.h>
#include <sys/wait.h>

#include "cluster_harness.h"

TestSuite(cluster, .timeout = TH_TEST_TIMEOUT_S);

/* minicr (the TSan runner) has cr_assert with a message only. */
#define STR_EQ(a, b)                                                         \
  do {                                                                       \
    const char *s_a_ = (a), *s_b_ = (b);                                     \
    cr_assert(strcmp(s_a_, s_b_) == 0, "'%s' != '%s'", s_a_, s_b_);          \
  } while (0)

/* ---- node a: a native port that keeps what it gets ---------------------- */

typedef struct inbox {
  pthread_mutex_t mu;
  isola_value *v;
  isola_port *reply;
  size_t n, cap;
  th_counter count;
} inbox;

static inbox in = {.mu = PTHREAD_MUTEX_INITIALIZER};
static ch_server srv;
static isola_port home;

/* ctx: the inbox (NULL: in). */
static void on_home(void *ctx, isola_port port, isola_value m, isola_port r) {
  (void)port;
  inbox *b = ctx ? ctx : &in;
  pthread_mutex_lock(&b->mu);
  if (b->n == b->cap) {
    b->cap = b->cap ? b->cap * 2 : 64;
    b->v = realloc(b->v, b->cap * sizeof *b->v);
    b->reply = realloc(b->reply, b->cap * sizeof *b->reply);
    TH_CHECK(b->v && b->reply);
  }
  TH_CHECK_OK(isola_value_copy(m, &b->v[b->n]));
  b->reply[b->n] = r;
  b->n++;
  pthread_mutex_unlock(&b->mu);
  th_counter_add(&b->count, 1);
}

/* The i-th message inbox b got (waits for it). */
static isola_value got_in(inbox *b, size_t i) {
  TH_WAIT_GE(&b->count, (long)i + 1);
  pthread_mutex_lock(&b->mu);
  isola_value v = b->v[i];
  pthread_mutex_unlock(&b->mu);
  return v;
}

/* The i-th message node a's home port got (waits for it). */
static isola_value got(size_t i) { return got_in(&in, i); }

static void inbox_free(inbox *b) {
  for (size_t i = 0; i < b->n; i++) isola_value_free(&b->v[i]);
  free(b->v);
  free(b->reply);
  b->v = NULL;
  b->reply = NULL;
  b->n = b->cap = 0;
}

static bool send_asap; /* node a writes every message at once */

static void join_a(const char *url, unsigned timeout_ms) {
  isola_cluster_config cc;
  isola_cluster_config_init(&cc);
  cc.servers = url;
  cc.node = "a";
  cc.send_asap = send_asap;
  cc.heartbeat_ms = 100;
  cc.node_timeout_ms = timeout_ms;
  cc.runner = ISOLA_RUNNER;
  int rc = isola_cluster_join(&cc);
  cr_assert(rc == ISOLA_OK, "join: %s: %s", isola_err_name(rc),
            isola_cluster_error());
}

static void start(bool js) {
  th_counter_init(&in.count);
  cr_assert(ch_server_start(&srv, js), "nats-server did not start");
  th_vm_init(NULL);
  join_a(srv.url, 1500);
  TH_ASSERT_OK(isola_native_port_new("home", on_home, NULL, false, &home));
}

static void finish(void) {
  TH_ASSERT_OK(isola_native_port_close(home));
  TH_ASSERT_OK(isola_cluster_leave());
  th_vm_shutdown_ok();
  ch_server_stop(&srv);
  inbox_free(&in);
}

static pid_t node(const char *name) {
  static const char *fast[] = {"--heartbeat-ms", "100", "--node-timeout-ms",
                               "1500", NULL};
  pid_t pid = ch_node_start(srv.url, name, fast);
  cr_assert(pid > 0, "node %s did not start", name);
  return pid;
}

/* Spawns cluster_echo on node; returns its handle and its echo port (the
 * hello message is message number *seen, which is then advanced). */
static isola_port spawn_echo(const char *on, const isola_spawn_options *o,
                             isola_isolate *h, size_t *seen) {
  TH_ASSERT_OK(isola_cluster_spawn_uri(on, TM_CLUSTER_ECHO, isola_str(on),
                                       isola_sendport(home), o, h));
  isola_value hello = got((*seen)++);
  isola_port echo = th_item_port(hello, 0);
  cr_assert(th_item_port(hello, 1) == h->control_port,
            "the control port arrives as the handle's proxy");
  STR_EQ(th_item_str(hello, 2), on);
  char where[ISOLA_CLUSTER_NODE_MAX + 1];
  TH_ASSERT_OK(isola_cluster_port_node(echo, where, sizeof where));
  STR_EQ(where, on);
  return echo;
}

static isola_value send3(const char *verb, isola_port to, isola_value v,
                         isola_value *store) {
  store[0] = isola_str(verb);
  store[1] = isola_sendport(to);
  store[2] = v;
  return isola_list(store, 3);
}

/* ---- round trips, equality, errors -------------------------------------- */

Test(cluster, roundtrip) {
  start(false);
  pid_t b = node("b");
  size_t seen = 0;
  isola_isolate h;
  isola_port echo = spawn_echo("b", NULL, &h, &seen);

  /* A value with a port, sharing and a cycle goes and comes back. */
  isola_value inner[2] = {isola_int(7), isola_str("seven")};
  isola_value shared = isola_list(inner, 2);
  isola_value outer[4] = {shared, shared, isola_sendport(home),
                          isola_double(0.5)};
  TH_ASSERT_OK(isola_send_reply(echo, isola_list(outer, 4), home));
  isola_value back = got(seen++);
  cr_assert(isola_value_equal(back, isola_list(outer, 4)),
            "the value comes back equal, and home comes back as itself");
  pthread_mutex_lock(&in.mu);
  cr_assert(in.reply[seen - 1] == ISOLA_PORT_NONE, "in.reply[seen - 1] == ISOLA_PORT_NONE");
  pthread_mutex_unlock(&in.mu);

  /* The same remote port always arrives as the same value: ask b to send
   * its echo port here twice. */
  isola_value st[3];
  TH_ASSERT_OK(isola_send(echo, send3("send", home, isola_sendport(echo), st)));
  TH_ASSERT_OK(isola_send(echo, send3("send", home, isola_sendport(echo), st)));
  cr_assert(th_port(got(seen++)) == echo, "th_port(got(seen++)) == echo");
  cr_assert(th_port(got(seen++)) == echo, "th_port(got(seen++)) == echo");

  /* A transferable buffer is copied and arrives as bytes. */
  isola_buffer *buf = isola_buffer_new(3);
  memcpy(isola_buffer_data(buf), "xyz", 3);
  TH_ASSERT_OK(isola_send_reply(echo, isola_transfer(&buf), home));
  cr_assert(buf == NULL, "buf == NULL");
  isola_value bytes = got(seen++);
  const uint8_t *p;
  size_t len;
  TH_ASSERT_OK(isola_value_get_bytes(bytes, &p, &len));
  cr_assert(len == 3 && memcmp(p, "xyz", 3) == 0, "len == 3 && memcmp(p, \"xyz\", 3) == 0");

  /* A module the remote node cannot load: its loader's words come back. */
  TH_ASSERT_RC(isola_cluster_spawn_uri("b", "/nonexistent/module.so",
                                       isola_null(), isola_null(), NULL, NULL),
               ISOLA_EMODULE);
  cr_assert(strstr(isola_cluster_error(), "nonexistent") != NULL, "%s",
            isola_cluster_error());
  TH_ASSERT_RC(isola_cluster_spawn_uri("no such", TM_CLUSTER_ECHO,
                                       isola_null(), isola_null(), NULL, NULL),
               ISOLA_EINVAL);

  /* The port closes at home: the message after it is dropped there, and
   * b tells a, which closes its proxy, so a later send fails as to a
   * closed local port.  b says so before it answers the spawn below (one
   * ordered stream from b to a), so once the spawn returned it is done. */
  TH_ASSERT_OK(isola_add_exit_listener(&h, home, isola_str("gone")));
  TH_ASSERT_OK(isola_send(echo, isola_str("quit")));
  const char *s;
  TH_ASSERT_OK(isola_value_get_str(got(seen++), &s, NULL));
  STR_EQ(s, "gone");
  TH_ASSERT_OK(isola_send(echo, isola_str("dropped")));
  isola_isolate h2;
  spawn_echo("b", NULL, &h2, &seen);
  TH_ASSERT_RC(isola_send(echo, isola_str("probe")), ISOLA_ECLOSED);
  cr_assert(ch_node_stop(b, SIGTERM) == 0, "ch_node_stop(b, SIGTERM) == 0");
  finish();
}

/* ---- forwarding through a third node ------------------------------------ */

Test(cluster, forward) {
  start(false);
  pid_t b = node("b"), c = node("c");
  size_t seen = 0;
  isola_isolate hb, hc;
  isola_port eb = spawn_echo("b", NULL, &hb, &seen);
  isola_port ec = spawn_echo("c", NULL, &hc, &seen);
  /* a -> b: "send to ec: (send to home: 42)"; b -> c -> a. */
  isola_value s1[3], s2[3];
  isola_value to_home = send3("send", home, isola_int(42), s1);
  TH_ASSERT_OK(isola_send(eb, send3("send", ec, to_home, s2)));
  cr_assert(th_int(got(seen++)) == 42, "th_int(got(seen++)) == 42");
  /* And b hands c's echo port back here: the same proxy as ours. */
  isola_value s3[3], s4[3];
  isola_value back = send3("send", home, isola_sendport(ec), s3);
  TH_ASSERT_OK(isola_send(eb, send3("send", eb, back, s4)));
  cr_assert(th_port(got(seen++)) == ec, "th_port(got(seen++)) == ec");
  cr_assert(ch_node_stop(b, SIGTERM) == 0, "ch_node_stop(b, SIGTERM) == 0");
  cr_assert(ch_node_stop(c, SIGTERM) == 0, "ch_node_stop(c, SIGTERM) == 0");
  finish();
}

/* ---- FIFO under load, no duplicates -------------------------------------- */

static void fifo(void) {
  start(false);
  pid_t b = node("b");
  size_t seen = 0;
  isola_isolate h;
  isola_port echo = spawn_echo("b", NULL, &h, &seen);
  long n = TH_SIZE(20000);
  for (long i = 0; i < n; i++)
    TH_ASSERT_OK(isola_send_reply(echo, isola_int(i), home));
  for (long i = 0; i < n; i++) {
    int64_t v = th_int(got(seen + (size_t)i));
    cr_assert(v == i, "message %ld arrived as %lld", i, (long long)v);
  }
  cr_assert(ch_node_stop(b, SIGTERM) == 0, "ch_node_stop(b, SIGTERM) == 0");
  finish();
}

Test(cluster, fifo) { fifo(); }

/* The same with node a writing every message at once (send_asap). */
Test(cluster, fifo_send_asap) {
  send_asap = true;
  fifo();
}

/* ---- remote spawn: listeners, ping, pause, kill, capabilities ------------ */

Test(cluster, control) {
  start(false);
  pid_t b = node("b");
  size_t seen = 0;
  isola_isolate h;
  isola_spawn_options o = {.on_exit = home,
                           .on_exit_message = isola_str("exited"),
                           .on_error = home,
                           .errors_nonfatal = true};
  isola_port echo = spawn_echo("b", &o, &h, &seen);
  cr_assert(h.pause_capability && h.terminate_capability, "h.pause_capability && h.terminate_capability");

  /* Ping. */
  TH_ASSERT_OK(isola_ping(&h, home, isola_str("pong"),
                                  ISOLA_IMMEDIATE));
  const char *s;
  TH_ASSERT_OK(isola_value_get_str(got(seen++), &s, NULL));
  STR_EQ(s, "pong");

  /* Paused: a message waits; an immediate ping is answered first. */
  TH_ASSERT_OK(isola_pause(&h, 0));
  TH_ASSERT_OK(isola_send_reply(echo, isola_int(1), home));
  TH_ASSERT_OK(isola_ping(&h, home, isola_str("while paused"),
                                  ISOLA_IMMEDIATE));
  TH_ASSERT_OK(isola_value_get_str(got(seen++), &s, NULL));
  STR_EQ(s, "while paused");
  TH_ASSERT_OK(isola_resume(&h, 0));
  cr_assert(th_int(got(seen++)) == 1, "th_int(got(seen++)) == 1");

  /* Uncaught errors reach the remote error listener; an error notice
   * listener also gets the isolate, as this node knows it. */
  isola_port home3;
  TH_ASSERT_OK(isola_native_port_new("home3", on_home, NULL, false, &home3));
  TH_ASSERT_OK(isola_add_error_notice_listener(&h, home3));
  TH_ASSERT_OK(isola_send(echo, isola_str("throw")));
  bool plain_err = false, notice_err = false;
  for (int k = 0; k < 2; k++) {
    isola_value err = got(seen++);
    cr_assert(strstr(th_item_str(err, 0), "boom") != NULL, "the message");
    if (err.len >= 3 && th_item_port(err, 2) == h.control_port)
      notice_err = true;
    else
      plain_err = true;
  }
  cr_assert(plain_err && notice_err, "both error listeners got it");
  TH_ASSERT_OK(isola_remove_error_listener(&h, home3));
  /* Removed: the next error reaches home only.  The isolate sends its
   * errors before it handles the next message, and both travel b's one
   * ordered stream, so a second error would come before the echo. */
  TH_ASSERT_OK(isola_send(echo, isola_str("throw")));
  TH_ASSERT_OK(isola_send_reply(echo, isola_int(42), home));
  isola_value err1 = got(seen++);
  cr_assert(err1.kind == ISOLA_LIST && err1.len == 2 &&
                strstr(th_item_str(err1, 0), "boom") != NULL,
            "the plain error");
  cr_assert(th_int(got(seen++)) == 42, "no second error: removed");

  /* A handle without the capability is refused here; one with a forged
   * capability is ignored there (the ping after it is answered, the
   * isolate still echoes). */
  isola_isolate weak;
  TH_ASSERT_OK(isola_isolate_from_port(h.control_port, &weak));
  TH_ASSERT_RC(isola_kill(&weak, ISOLA_IMMEDIATE), ISOLA_EPERM);
  weak.terminate_capability = h.terminate_capability ^ 1;
  TH_ASSERT_OK(isola_kill(&weak, ISOLA_IMMEDIATE));
  TH_ASSERT_OK(isola_send_reply(echo, isola_int(2), home));
  cr_assert(th_int(got(seen++)) == 2, "th_int(got(seen++)) == 2");
  /* The same for pause, resume and errors-fatal. */
  weak.terminate_capability = 0;
  TH_ASSERT_RC(isola_pause(&weak, 0), ISOLA_EPERM);
  TH_ASSERT_RC(isola_resume(&weak, 0), ISOLA_EPERM);
  TH_ASSERT_RC(isola_set_errors_fatal(&weak, true), ISOLA_EPERM);
  weak.pause_capability = h.pause_capability ^ 1;
  TH_ASSERT_OK(isola_pause(&weak, 0)); /* ignored there: not paused */
  TH_ASSERT_OK(isola_send_reply(echo, isola_int(3), home));
  cr_assert(th_int(got(seen++)) == 3, "a forged pause is ignored");
  /* A restricted handle pings, as locally. */
  weak.pause_capability = 0;
  TH_ASSERT_OK(isola_ping(&weak, home, isola_str("weak"), ISOLA_IMMEDIATE));
  TH_ASSERT_OK(isola_value_get_str(got(seen++), &s, NULL));
  STR_EQ(s, "weak");
  /* A ping before the next event waits while the isolate is paused, as
   * locally; the immediate one after it is answered first. */
  TH_ASSERT_OK(isola_pause(&h, 0));
  TH_ASSERT_OK(isola_ping(&h, home, isola_str("next"),
                          ISOLA_BEFORE_NEXT_EVENT));
  TH_ASSERT_OK(isola_ping(&h, home, isola_str("now"), ISOLA_IMMEDIATE));
  TH_ASSERT_OK(isola_value_get_str(got(seen++), &s, NULL));
  STR_EQ(s, "now");
  TH_ASSERT_OK(isola_resume(&h, 0));
  TH_ASSERT_OK(isola_value_get_str(got(seen++), &s, NULL));
  STR_EQ(s, "next");
  /* Bad arguments are refused here, by the core, as locally. */
  TH_ASSERT_RC(isola_ping(&h, ISOLA_PORT_NONE, isola_null(), ISOLA_IMMEDIATE),
               ISOLA_EINVAL);
  TH_ASSERT_RC(isola_kill(&h, (isola_priority)7), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_add_exit_listener(&h, ISOLA_PORT_NONE, isola_null()),
               ISOLA_EINVAL);

  /* An exit listener added on another port and the spawn's on_exit both
   * fire on kill; adding home again replaced its response, as locally. */
  isola_port home2;
  TH_ASSERT_OK(isola_native_port_new("home2", on_home, NULL, false, &home2));
  TH_ASSERT_OK(
      isola_add_exit_notice_listener(&h, home2, isola_str("bye")));
  TH_ASSERT_OK(isola_add_exit_listener(&h, home, isola_str("ended")));
  TH_ASSERT_OK(isola_kill(&h, ISOLA_IMMEDIATE));
  bool ended = false, bye = false;
  for (int k = 0; k < 2; k++) {
    isola_value v = got(seen++);
    if (v.kind == ISOLA_LIST) { /* the notice: killed, and by whom */
      cr_assert(th_item_int(v, 0) == ISOLA_EXIT_KILLED, "reason killed");
      cr_assert(th_item_port(v, 1) == h.control_port, "the isolate");
      STR_EQ(th_item_str(v, 3), "bye");
      bye = true;
    } else {
      TH_ASSERT_OK(isola_value_get_str(v, &s, NULL));
      STR_EQ(s, "ended");
      ended = true;
    }
  }
  cr_assert(ended && bye, "ended && bye");
  /* The isolate has ended: b answers the next request for it as a closed
   * port, so once a later answer of b is here (b sends in order), the
   * handle's calls fail as they would locally. */
  TH_ASSERT_OK(isola_ping(&h, home, isola_str("late"), ISOLA_IMMEDIATE));
  isola_isolate h2;
  spawn_echo("b", NULL, &h2, &seen);
  TH_ASSERT_RC(isola_ping(&h, home, isola_str("late"), ISOLA_IMMEDIATE),
               ISOLA_ECLOSED);
  TH_ASSERT_RC(isola_kill(&h, ISOLA_IMMEDIATE), ISOLA_ECLOSED);
  TH_ASSERT_RC(isola_add_exit_listener(&h, home, isola_null()),
               ISOLA_ECLOSED);
  TH_ASSERT_OK(isola_native_port_close(home2));
  TH_ASSERT_OK(isola_native_port_close(home3));
  cr_assert(ch_node_stop(b, SIGTERM) == 0, "ch_node_stop(b, SIGTERM) == 0");
  finish();
}

/* Errors-fatal and a kill before the next event, across nodes; a removed
 * exit listener is not told. */
Test(cluster, control_fatal) {
  start(false);
  pid_t b = node("b");
  size_t seen = 0;
  isola_isolate h;
  isola_spawn_options o = {.on_exit = home,
                           .on_exit_message = isola_str("x"),
                           .exit_notice = true,
                           .errors_nonfatal = true};
  isola_port echo = spawn_echo("b", &o, &h, &seen);
  inbox side_in = {.mu = PTHREAD_MUTEX_INITIALIZER};
  th_counter_init(&side_in.count);
  isola_port side;
  TH_ASSERT_OK(isola_native_port_new("side", on_home, &side_in, false, &side));
  TH_ASSERT_OK(isola_add_exit_listener(&h, side, isola_str("removed")));
  TH_ASSERT_OK(isola_remove_exit_listener(&h, side));
  isola_isolate weak;
  TH_ASSERT_OK(isola_isolate_from_port(h.control_port, &weak));
  TH_ASSERT_RC(isola_set_errors_fatal(&weak, true), ISOLA_EPERM);
  /* Not fatal yet: it carries on after an error. */
  TH_ASSERT_OK(isola_send(echo, isola_str("throw")));
  TH_ASSERT_OK(isola_send_reply(echo, isola_int(1), home));
  cr_assert(th_int(got(seen++)) == 1, "errors are not fatal yet");
  TH_ASSERT_OK(isola_set_errors_fatal(&h, true));
  TH_ASSERT_OK(isola_send(echo, isola_str("throw")));
  isola_value n = got(seen++);
  cr_assert(th_item_int(n, 0) == ISOLA_EXIT_ERROR, "reason error");
  cr_assert(th_item_port(n, 1) == h.control_port, "the isolate");
  cr_assert(strstr(th_item_str(n, 2), "boom") != NULL, "detail: the error");

  /* A kill before the next event, while paused: it waits for the resume,
   * then comes before the message queued ahead of it. */
  isola_isolate h2;
  isola_spawn_options o2 = {.on_exit = home,
                            .on_exit_message = isola_str("y"),
                            .exit_notice = true};
  isola_port echo2 = spawn_echo("b", &o2, &h2, &seen);
  TH_ASSERT_OK(isola_pause(&h2, 0));
  TH_ASSERT_OK(isola_send_reply(echo2, isola_int(5), home));
  TH_ASSERT_OK(isola_kill(&h2, ISOLA_BEFORE_NEXT_EVENT));
  TH_ASSERT_OK(isola_resume(&h2, 0));
  n = got(seen++);
  cr_assert(n.kind == ISOLA_LIST, "the exit notice comes first, not 5");
  cr_assert(th_item_int(n, 0) == ISOLA_EXIT_KILLED, "reason killed");
  cr_assert(th_item_port(n, 1) == h2.control_port, "the isolate");

  /* b told every listener when the isolates ended, before it answers
   * this spawn: the removed listener was not among them. */
  isola_isolate h3;
  spawn_echo("b", NULL, &h3, &seen);
  cr_assert(th_counter_get(&side_in.count) == 0, "a removed listener");
  TH_ASSERT_OK(isola_native_port_close(side));
  inbox_free(&side_in);
  cr_assert(ch_node_stop(b, SIGTERM) == 0, "b ends cleanly");
  finish();
}

/* ---- control from module code on another node ---------------------------- */

/* An isolate of node a: echoes what it gets to reply_to; sends its port
 * to the port it is given. */
static void victim_msg(void *ctx, isola_port port, isola_value m,
                       isola_port r) {
  (void)ctx, (void)port;
  if (r) isola_send(r, m);
}

static void victim_entry(isola_value message) {
  isola_port to, p;
  TH_CHECK_OK(isola_value_get_port(message, &to));
  TH_CHECK_OK(isola_port_open(victim_msg, NULL, &p));
  TH_CHECK_OK(isola_send(to, isola_sendport(p)));
}

/* Asks cluster_echo on b to make the core call op on handle h (its
 * capabilities as given) and returns b's result code. */
static int64_t ctl_on_b(isola_port echo, const char *op,
                        const isola_isolate *h, isola_port arg,
                        isola_value value, size_t *seen) {
  isola_value m[7] = {isola_str("ctl"),
                      isola_str(op),
                      isola_sendport(h->control_port),
                      isola_cap(h->pause_capability),
                      isola_cap(h->terminate_capability),
                      arg ? isola_sendport(arg) : isola_null(),
                      value};
  TH_ASSERT_OK(isola_send_reply(echo, isola_list(m, 7), home));
  return th_int(got((*seen)++));
}

/* Module code on node b controls an isolate of node a with the core's
 * calls; a's isolate checks b's capabilities as it would a local
 * caller's. */
Test(cluster, control_from_remote) {
  start(false);
  pid_t b = node("b");
  size_t seen = 0;
  isola_isolate hb;
  isola_port echo = spawn_echo("b", NULL, &hb, &seen);
  inbox side_in = {.mu = PTHREAD_MUTEX_INITIALIZER};
  th_counter_init(&side_in.count);
  size_t sseen = 0;
  isola_port side;
  TH_ASSERT_OK(isola_native_port_new("side", on_home, &side_in, false, &side));
  isola_isolate v;
  isola_spawn_options vo = {.on_exit = side,
                            .on_exit_message = isola_str("victim ended"),
                            .exit_notice = true};
  TH_ASSERT_OK(isola_spawn(victim_entry, isola_sendport(side), &vo, &v));
  isola_port vport = th_port(got_in(&side_in, sseen++));

  /* No capability: b's core refuses, as it would locally. */
  isola_isolate weak = {v.control_port, 0, 0};
  cr_assert(ctl_on_b(echo, "kill", &weak, 0, isola_null(), &seen) ==
                ISOLA_EPERM,
            "kill without the capability");
  cr_assert(ctl_on_b(echo, "pause", &weak, 0, isola_null(), &seen) ==
                ISOLA_EPERM,
            "pause without the capability");
  cr_assert(ctl_on_b(echo, "fatal", &weak, 0, isola_null(), &seen) ==
                ISOLA_EPERM,
            "errors-fatal without the capability");
  /* Forged capabilities: accepted there, ignored here by the isolate (b's
   * answer comes after a's gateway handled the request). */
  isola_isolate forged = {v.control_port, v.pause_capability ^ 1,
                          v.terminate_capability ^ 1};
  cr_assert(ctl_on_b(echo, "kill", &forged, 0, isola_null(), &seen) ==
                ISOLA_OK,
            "a forged kill is sent");
  cr_assert(ctl_on_b(echo, "pause", &forged, 0, isola_null(), &seen) ==
                ISOLA_OK,
            "a forged pause is sent");
  TH_ASSERT_OK(isola_send_reply(vport, isola_int(7), side));
  cr_assert(th_int(got_in(&side_in, sseen++)) == 7,
            "neither killed nor paused");

  /* Ping and exit listeners need no capability. */
  cr_assert(ctl_on_b(echo, "ping", &weak, side, isola_str("pinged from b"),
                     &seen) == ISOLA_OK,
            "ping");
  const char *s;
  TH_ASSERT_OK(isola_value_get_str(got_in(&side_in, sseen++), &s, NULL));
  STR_EQ(s, "pinged from b");
  cr_assert(ctl_on_b(echo, "exit", &weak, home, isola_str("b saw it end"),
                     &seen) == ISOLA_OK,
            "exit listener");

  /* With the capabilities: paused by b (a normal message waits, an
   * immediate ping from here is answered), resumed by b. */
  cr_assert(ctl_on_b(echo, "pause", &v, 0, isola_null(), &seen) == ISOLA_OK,
            "pause");
  TH_ASSERT_OK(isola_send_reply(vport, isola_int(8), side));
  TH_ASSERT_OK(isola_ping(&v, side, isola_str("paused"), ISOLA_IMMEDIATE));
  TH_ASSERT_OK(isola_value_get_str(got_in(&side_in, sseen++), &s, NULL));
  STR_EQ(s, "paused");
  cr_assert(ctl_on_b(echo, "resume", &v, 0, isola_null(), &seen) == ISOLA_OK,
            "resume");
  cr_assert(th_int(got_in(&side_in, sseen++)) == 8, "after the resume");

  /* Killed by b: the local listener and b's listener (through b) fire. */
  cr_assert(ctl_on_b(echo, "kill", &v, 0, isola_null(), &seen) == ISOLA_OK,
            "kill");
  isola_value n = got_in(&side_in, sseen++);
  cr_assert(th_item_int(n, 0) == ISOLA_EXIT_KILLED, "killed");
  TH_ASSERT_OK(isola_value_get_str(got(seen++), &s, NULL));
  STR_EQ(s, "b saw it end");
  TH_ASSERT_OK(isola_native_port_close(side));
  inbox_free(&side_in);
  cr_assert(ch_node_stop(b, SIGTERM) == 0, "b ends cleanly");
  finish();
}

/* ---- failure detection --------------------------------------------------- */

Test(cluster, node_lost) {
  start(false);
  pid_t b = node("b");
  size_t seen = 0;
  isola_isolate h;
  isola_spawn_options o = {.on_exit = home,
                           .on_exit_message = isola_str("on_exit")};
  isola_port echo = spawn_echo("b", &o, &h, &seen);
  isola_port home2;
  TH_ASSERT_OK(isola_native_port_new("home2", on_home, NULL, false, &home2));
  TH_ASSERT_OK(
      isola_add_exit_notice_listener(&h, home2, isola_str("added")));
  /* A round trip so the add has reached b. */
  TH_ASSERT_OK(isola_send_reply(echo, isola_int(5), home));
  cr_assert(th_int(got(seen++)) == 5, "th_int(got(seen++)) == 5");

  ch_node_stop(b, SIGKILL);
  /* Both fire within the bound: node_timeout 1500 ms + heartbeat 100 ms
   * (the wait below allows 5 s, the default bound the docs promise). */
  bool plain = false, notice = false;
  for (int k = 0; k < 2; k++) {
    cr_assert(th_counter_wait_ge(&in.count, (long)seen + 1, 5000),
              "exit listener %d did not fire within 5 s", k);
    isola_value v = got(seen++);
    if (v.kind == ISOLA_LIST) {
      cr_assert(th_item_int(v, 0) == ISOLA_EXIT_NODE_LOST, "node lost");
      cr_assert(th_item_port(v, 1) == h.control_port, "the isolate");
      STR_EQ(th_item_str(v, 2), "node lost");
      STR_EQ(th_item_str(v, 3), "added");
      notice = true;
    } else {
      const char *s;
      TH_ASSERT_OK(isola_value_get_str(v, &s, NULL));
      STR_EQ(s, "on_exit");
      plain = true;
    }
  }
  cr_assert(plain && notice, "both listeners fired");
  /* The proxies of the lost node are closed: sends and every control
   * call on its isolates fail as for an isolate that has ended (a
   * missing capability is still ISOLA_EPERM, checked first). */
  TH_ASSERT_RC(isola_send(echo, isola_int(6)), ISOLA_ECLOSED);
  TH_ASSERT_RC(isola_kill(&h, ISOLA_IMMEDIATE), ISOLA_ECLOSED);
  TH_ASSERT_RC(isola_pause(&h, 0), ISOLA_ECLOSED);
  TH_ASSERT_RC(isola_resume(&h, 0), ISOLA_ECLOSED);
  TH_ASSERT_RC(isola_set_errors_fatal(&h, false), ISOLA_ECLOSED);
  TH_ASSERT_RC(isola_ping(&h, home, isola_null(), ISOLA_IMMEDIATE),
               ISOLA_ECLOSED);
  TH_ASSERT_RC(isola_add_exit_listener(&h, home, isola_null()),
               ISOLA_ECLOSED);
  TH_ASSERT_RC(isola_add_exit_notice_listener(&h, home, isola_null()),
               ISOLA_ECLOSED);
  TH_ASSERT_RC(isola_remove_exit_listener(&h, home), ISOLA_ECLOSED);
  TH_ASSERT_RC(isola_add_error_listener(&h, home), ISOLA_ECLOSED);
  TH_ASSERT_RC(isola_add_error_notice_listener(&h, home), ISOLA_ECLOSED);
  TH_ASSERT_RC(isola_remove_error_listener(&h, home), ISOLA_ECLOSED);
  isola_isolate weak;
  TH_ASSERT_OK(isola_isolate_from_port(h.control_port, &weak));
  TH_ASSERT_RC(isola_kill(&weak, ISOLA_IMMEDIATE), ISOLA_EPERM);
  TH_ASSERT_RC(isola_cluster_spawn_uri("b", TM_CLUSTER_ECHO, isola_null(),
                                       isola_sendport(home), NULL, NULL),
               ISOLA_ECLOSED);
  TH_ASSERT_OK(isola_native_port_close(home2));
  finish();
}

/* ---- the server restarts ------------------------------------------------- */

Test(cluster, server_restart) {
  start(false);
  pid_t b = node("b");
  size_t seen = 0;
  isola_isolate h;
  isola_port echo = spawn_echo("b", NULL, &h, &seen);
  long n = TH_SIZE(2000);
  for (long i = 0; i < n; i++)
    TH_ASSERT_OK(isola_send_reply(echo, isola_int(i), home));
  for (long i = 0; i < n; i++) cr_assert(th_int(got(seen + (size_t)i)) == i, "th_int(got(seen + (size_t)i)) == i");
  seen += (size_t)n;

  ch_server_kill(&srv);
  cr_assert(ch_server_restart(&srv), "nats-server did not restart");
  /* NATS itself is at most once: what a node publishes after it is back
   * but before the other is back (and has subscribed again) is lost.  So
   * probe until the newest probe comes back (so none is still on its
   * way); the probes that do arrive come in order, none twice.  After
   * that nothing is lost. */
  int64_t last = -1;
  for (long k = 0; last != k - 1 || k == 0; k++) {
    cr_assert(k < 60, "no round trip within 60 probes after the restart");
    isola_value probe[2] = {isola_str("probe"), isola_int(k)};
    TH_ASSERT_OK(isola_send_reply(echo, isola_list(probe, 2), home));
    th_counter_wait_ge(&in.count, (long)seen + 1, 1000);
    while ((size_t)th_counter_get(&in.count) > seen) {
      isola_value v = got(seen++);
      STR_EQ(th_item_str(v, 0), "probe");
      int64_t j = th_item_int(v, 1);
      cr_assert(j > last, "probe %lld after probe %lld", (long long)j,
                (long long)last);
      last = j;
    }
  }
  for (long i = n; i < 2 * n; i++)
    TH_ASSERT_OK(isola_send_reply(echo, isola_int(i), home));
  for (long i = n; i < 2 * n; i++) {
    int64_t v = th_int(got(seen++));
    cr_assert(v == i, "after the restart message %ld arrived as %lld", i,
              (long long)v);
  }
  cr_assert(ch_node_stop(b, SIGTERM) == 0, "ch_node_stop(b, SIGTERM) == 0");
  finish();
}

/* ---- cluster-wide names -------------------------------------------------- */

Test(cluster, names) {
  start(true);
  pid_t b = node("b");
  size_t seen = 0;
  TH_ASSERT_OK(isola_cluster_name_register("svc", home));
  TH_ASSERT_RC(isola_cluster_name_register("svc", home), ISOLA_ENAMETAKEN);
  isola_port p;
  TH_ASSERT_OK(isola_cluster_name_lookup("svc", &p));
  cr_assert(p == home, "p == home");
  TH_ASSERT_RC(isola_cluster_name_lookup("nobody", &p), ISOLA_ENOTFOUND);
  cr_assert(p == ISOLA_PORT_NONE, "p == ISOLA_PORT_NONE");

  /* On b: "svc" is taken everywhere; "bsvc" registers; "svc" looked up on
   * b is home, which comes back here as itself. */
  isola_value args[2] = {isola_str("svc"), isola_str("bsvc")};
  isola_isolate h;
  TH_ASSERT_OK(isola_cluster_spawn_uri("b", TM_CLUSTER_NAMES,
                                       isola_list(args, 2),
                                       isola_sendport(home), NULL, &h));
  isola_value r = got(seen++);
  cr_assert(th_item_int(r, 0) == ISOLA_ENAMETAKEN, "th_item_int(r, 0) == ISOLA_ENAMETAKEN");
  cr_assert(th_item_int(r, 1) == ISOLA_OK, "th_item_int(r, 1) == ISOLA_OK");
  cr_assert(th_item_int(r, 2) == ISOLA_OK, "th_item_int(r, 2) == ISOLA_OK");
  cr_assert(th_item_port(r, 3) == home, "th_item_port(r, 3) == home");
  isola_port bport = th_item_port(r, 4);

  /* Looked up here: b's port, the same proxy as the one b sent. */
  TH_ASSERT_OK(isola_cluster_name_lookup("bsvc", &p));
  cr_assert(p == bport, "p == bport");
  TH_ASSERT_OK(isola_send_reply(p, isola_int(9), home));
  cr_assert(th_int(got(seen++)) == 9, "th_int(got(seen++)) == 9");
  TH_ASSERT_RC(isola_cluster_name_register("bsvc", home), ISOLA_ENAMETAKEN);
  TH_ASSERT_RC(isola_cluster_name_remove("bsvc"), ISOLA_EPERM); /* b's */

  /* The name goes with its port. */
  TH_ASSERT_OK(isola_add_exit_listener(&h, home, isola_str("gone")));
  TH_ASSERT_OK(isola_send(bport, isola_str("quit")));
  const char *s;
  TH_ASSERT_OK(isola_value_get_str(got(seen++), &s, NULL));
  STR_EQ(s, "gone");
  TH_ASSERT_RC(isola_cluster_name_lookup("bsvc", &p), ISOLA_ENOTFOUND);
  /* ... and its stale entry gives way to a new registration. */
  TH_ASSERT_OK(isola_cluster_name_register("bsvc", home));
  TH_ASSERT_OK(isola_cluster_name_remove("bsvc"));
  TH_ASSERT_RC(isola_cluster_name_lookup("bsvc", &p), ISOLA_ENOTFOUND);

  /* The name goes with its node. */
  isola_value args2[2] = {isola_str("svc"), isola_str("bsvc2")};
  TH_ASSERT_OK(isola_cluster_spawn_uri("b", TM_CLUSTER_NAMES,
                                       isola_list(args2, 2),
                                       isola_sendport(home), NULL, &h));
  r = got(seen++);
  cr_assert(th_item_int(r, 1) == ISOLA_OK, "th_item_int(r, 1) == ISOLA_OK");
  TH_ASSERT_OK(isola_cluster_name_lookup("bsvc2", &p));
  ch_node_stop(b, SIGKILL);
  TH_ASSERT_RC(isola_cluster_name_lookup("bsvc2", &p), ISOLA_ENOTFOUND);
  TH_ASSERT_OK(isola_cluster_name_register("bsvc2", home));
  finish();
}

/* ---- security: a port is reachable only with its secret ------------------ */

static isola_value decode_msg(natsMsg *m) {
  isola_value v;
  TH_ASSERT_OK(isola_wire_decode((const uint8_t *)natsMsg_GetData(m),
                                 (size_t)natsMsg_GetDataLength(m), NULL, &v));
  return v;
}

Test(cluster, forged_secret_refused) {
  start(false);
  pid_t b = node("b");
  /* An eavesdropper (what NATS permissions exist to prevent) sees b's
   * messages to a, and forges as node "evil". */
  natsConnection *nc;
  natsSubscription *sniff, *answers;
  cr_assert(natsConnection_ConnectTo(&nc, srv.url) == NATS_OK, "natsConnection_ConnectTo(&nc, srv.url) == NATS_OK");
  cr_assert(natsConnection_SubscribeSync(&sniff, nc, "isola.n.a.b") ==
            NATS_OK, "natsConnection_SubscribeSync(&sniff, nc, \"isola.n.a.b\") == NATS_OK");
  cr_assert(natsConnection_SubscribeSync(&answers, nc, "isola.n.evil.b") ==
            NATS_OK, "natsConnection_SubscribeSync(&answers, nc, \"isola.n.evil.b\") == NATS_OK");
  cr_assert(natsConnection_Flush(nc) == NATS_OK, "natsConnection_Flush(nc) == NATS_OK");
  size_t seen = 0;
  isola_isolate h;
  spawn_echo("b", NULL, &h, &seen);
  /* The hello: [1, dest, reply, [echo port, ctl, args]] and its table. */
  int64_t id = 0, secret = 0;
  while (!id) {
    natsMsg *m;
    cr_assert(natsSubscription_NextMsg(&m, sniff, TH_WAIT_MS) == NATS_OK, "natsSubscription_NextMsg(&m, sniff, TH_WAIT_MS) == NATS_OK");
    isola_value top = decode_msg(m), E, tab, payload, row;
    natsMsg_Destroy(m);
    TH_ASSERT_OK(isola_list_get(top, 0, &E));
    TH_ASSERT_OK(isola_list_get(top, 1, &tab));
    if (th_item_int(E, 0) == 1) {
      TH_ASSERT_OK(isola_list_get(E, 3, &payload));
      isola_port sid = th_item_port(payload, 0);
      for (size_t i = 0; i < tab.len; i++) {
        TH_ASSERT_OK(isola_list_get(tab, i, &row));
        if ((isola_port)th_item_int(row, 0) == sid) {
          id = th_item_int(row, 2);
          secret = th_item_int(row, 3);
        }
      }
    }
    isola_value_free(&top);
  }
  /* The right id with a wrong secret: refused, and answered as for a
   * closed port ([2, id] to the sender). */
  isola_value E[4] = {isola_int(1), isola_sendport(77), isola_null(),
                      isola_int(1)};
  isola_value row[4] = {isola_int(77), isola_str("b"), isola_int(id),
                        isola_int(secret ^ 1)};
  isola_value rows = isola_list(row, 4);
  isola_value top[3] = {isola_list(E, 4), isola_list(&rows, 1),
                        isola_int(12345)};
  uint8_t *buf;
  size_t len;
  TH_ASSERT_OK(isola_wire_encode(isola_list(top, 3), &buf, &len));
  cr_assert(natsConnection_Publish(nc, "isola.n.b.evil", buf, (int)len) ==
            NATS_OK, "natsConnection_Publish(nc, \"isola.n.b.evil\", buf, (int)len) == NATS_OK");
  free(buf);
  natsMsg *m;
  for (;;) {
    cr_assert(natsSubscription_NextMsg(&m, answers, TH_WAIT_MS) == NATS_OK,
              "b did not answer the forged message");
    isola_value ans = decode_msg(m), ae;
    natsMsg_Destroy(m);
    TH_ASSERT_OK(isola_list_get(ans, 0, &ae));
    int64_t type = th_item_int(ae, 0), which = th_item_int(ae, 1);
    isola_value_free(&ans);
    if (type == 2) {
      cr_assert(which == id, "which == id");
      break;
    }
  }
  natsSubscription_Destroy(sniff);
  natsSubscription_Destroy(answers);
  natsConnection_Destroy(nc);
  cr_assert(ch_node_stop(b, SIGTERM) == 0, "ch_node_stop(b, SIGTERM) == 0");
  finish();
}

/* ---- crash isolation: a module in a process of its own ------------------- */

Test(cluster, crash_isolation) {
  start(false);
  size_t seen = 0;
  isola_isolate h;
  isola_spawn_options o = {.on_exit = home,
                           .on_exit_message = isola_str("crashed"),
                           .exit_notice = true};
  int rc = isola_cluster_spawn_process(TM_CLUSTER_ECHO, isola_str("p1"),
                                       isola_sendport(home), &o, &h);
  cr_assert(rc == ISOLA_OK, "spawn_process: %s: %s", isola_err_name(rc),
            isola_cluster_error());
  isola_value hello = got(seen++);
  isola_port echo = th_item_port(hello, 0);
  char where[ISOLA_CLUSTER_NODE_MAX + 1];
  TH_ASSERT_OK(isola_cluster_port_node(echo, where, sizeof where));
  cr_assert(strncmp(where, "a-p", 3) == 0, "a node of its own: %s", where);
  TH_ASSERT_OK(isola_send_reply(echo, isola_int(3), home));
  cr_assert(th_int(got(seen++)) == 3, "round trip");

  /* A segfault ends that process only; the exit notice says so. */
  TH_ASSERT_OK(isola_send(echo, isola_str("segv")));
  isola_value n = got(seen++);
  cr_assert(th_item_int(n, 0) == ISOLA_EXIT_NODE_LOST, "reason node lost");
  cr_assert(th_item_port(n, 1) == h.control_port, "the isolate");
  const char *detail = th_item_str(n, 2);
#if ISOLA_TEST_SANITIZE
  /* A sanitizer turns the crash into its own report and exit status (or
   * an abort). */
  cr_assert(strstr(detail, "signal") || strstr(detail, "exited with status"),
            "detail: %s", detail);
#else
  cr_assert(strstr(detail, "signal 11") != NULL, "detail: %s", detail);
#endif
  STR_EQ(th_item_str(n, 3), "crashed");
  TH_ASSERT_RC(isola_send(echo, isola_int(4)), ISOLA_ECLOSED);

  /* This process is fine: another one, which ends normally. */
  isola_spawn_options o2 = {.on_exit = home,
                            .on_exit_message = isola_str("done"),
                            .exit_notice = true};
  TH_ASSERT_OK(isola_cluster_spawn_process(TM_CLUSTER_ECHO, isola_str("p2"),
                                           isola_sendport(home), &o2, &h));
  echo = th_item_port(got(seen++), 0);
  TH_ASSERT_OK(isola_send(echo, isola_str("quit")));
  n = got(seen++);
  cr_assert(th_item_int(n, 0) == ISOLA_EXIT_NORMAL, "reason normal");
  STR_EQ(th_item_str(n, 3), "done");
  finish();
}

/* ---- a cluster of three servers: the server of a node dies --------------- */

Test(cluster, server_failover) {
  th_counter_init(&in.count);
  ch_server s3[3];
  cr_assert(ch_servers3_start(s3), "the three nats-servers did not start");
  th_vm_init(NULL);
  /* a knows s1 only, b knows s2 only: each learns the others from the
   * servers' gossip, which is how a's client finds a server after s1. */
  join_a(s3[0].url, 3000);
  TH_ASSERT_OK(isola_native_port_new("home", on_home, NULL, false, &home));
  static const char *fast[] = {"--heartbeat-ms", "100", "--node-timeout-ms",
                               "3000", NULL};
  pid_t b = ch_node_start(s3[1].url, "b", fast);
  cr_assert(b > 0, "node b did not start");
  /* The routes between the servers form after they start: until they do,
   * a spawn does not reach b (it times out); try again. */
  isola_isolate h;
  int rc = ISOLA_ETIMEDOUT;
  for (int k = 0; k < 10 && rc == ISOLA_ETIMEDOUT; k++)
    rc = isola_cluster_spawn_uri("b", TM_CLUSTER_ECHO, isola_str("b"),
                                 isola_sendport(home), NULL, &h);
  TH_ASSERT_OK(rc);
  size_t seen = 0;
  isola_port echo = th_item_port(got(seen++), 0);
  long n = TH_SIZE(1000);
  for (long i = 0; i < n; i++)
    TH_ASSERT_OK(isola_send_reply(echo, isola_int(i), home));
  for (long i = 0; i < n; i++)
    cr_assert(th_int(got(seen++)) == i, "before the failover");

  ch_server_kill(&s3[0]); /* a's server */
  srv = s3[0];            /* for finish(): already reaped, pid 0 */
  int64_t last = -1;
  for (long k = 0; last != k - 1 || k == 0; k++) {
    cr_assert(k < 60, "no round trip within 60 probes after the failover");
    isola_value probe[2] = {isola_str("probe"), isola_int(k)};
    TH_ASSERT_OK(isola_send_reply(echo, isola_list(probe, 2), home));
    th_counter_wait_ge(&in.count, (long)seen + 1, 1000);
    while ((size_t)th_counter_get(&in.count) > seen) {
      isola_value v = got(seen++);
      int64_t j = th_item_int(v, 1);
      cr_assert(j > last, "probe %lld after probe %lld", (long long)j,
                (long long)last);
      last = j;
    }
  }
  for (long i = 0; i < n; i++)
    TH_ASSERT_OK(isola_send_reply(echo, isola_int(n + i), home));
  for (long i = 0; i < n; i++)
    cr_assert(th_int(got(seen++)) == n + i, "after the failover");
  cr_assert(ch_node_stop(b, SIGTERM) == 0, "b ends cleanly");
  ch_server_stop(&s3[1]);
  ch_server_stop(&s3[2]);
  finish();
}

/* ---- authentication is passed through to NATS ---------------------------- */

/* The authentication tests measure no timeout: theirs are generous, so
 * that a TLS handshake or a heartbeat late on a loaded machine (the
 * sanitizers, parallel tests) fails none of them.  A refused join is
 * answered at once whatever the timeout. */
#define AUTH_TIMEOUT_MS 10000
#define AUTH_TIMEOUT_ARG "10000" /* the same, as a command line's */

static void round_trip_with(const char *const *extra);

Test(cluster, authentication) {
  th_counter_init(&in.count);
  cr_assert(ch_server_start_auth(&srv, "isola", "s3cret"),
            "nats-server did not start");
  th_vm_init(NULL);
  isola_cluster_config cc;
  isola_cluster_config_init(&cc);
  cc.servers = srv.url;
  cc.node = "a";
  cc.connect_timeout_ms = AUTH_TIMEOUT_MS;
  TH_ASSERT_RC(isola_cluster_join(&cc), ISOLA_ESYS); /* no credentials */
  cc.user = "isola";
  cc.password = "wrong";
  TH_ASSERT_RC(isola_cluster_join(&cc), ISOLA_ESYS);
  cr_assert(strstr(isola_cluster_error(), "uthorization") != NULL,
            "a clear error: %s", isola_cluster_error());
  cc.password = "s3cret";
  cc.heartbeat_ms = 100;
  cc.node_timeout_ms = AUTH_TIMEOUT_MS;
  TH_ASSERT_OK(isola_cluster_join(&cc));
  /* Node b takes its password from the environment, as process spawns
   * pass it. */
  setenv("ISOLA_NATS_PASSWORD", "s3cret", 1);
  static const char *auth[] = {"--nats-user", "isola", NULL};
  round_trip_with(auth);
  unsetenv("ISOLA_NATS_PASSWORD");
  finish();
}

/* ---- authentication and TLS, configured per node ------------------------- */

/* A directory for keys, certificates and a server configuration. */
static void tmpdir_make(char *dir, size_t cap) {
  cr_assert(ch_make_tmpdir(dir, cap, "sec"), "mkdtemp");
}

static void tmpdir_remove(const char *dir) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  cr_assert(system(cmd) == 0, "rm -rf %s", dir);
}

/* Node a joins with cc (servers and node filled in here); the result. */
static int join_with(isola_cluster_config *cc) {
  cc->servers = srv.url;
  cc->node = "a";
  cc->heartbeat_ms = 100;
  cc->node_timeout_ms = AUTH_TIMEOUT_MS;
  cc->connect_timeout_ms = AUTH_TIMEOUT_MS;
  return isola_cluster_join(cc);
}

/* After node a joined: node b joins with extra, and a round trip a -> b
 * -> a shows both connections work. */
static void round_trip_with(const char *const *extra) {
  TH_ASSERT_OK(isola_native_port_new("home", on_home, NULL, false, &home));
  const char *args[16];
  size_t n = 0;
  static const char *slow[] = {"--heartbeat-ms", "100", "--node-timeout-ms",
                               AUTH_TIMEOUT_ARG};
  for (size_t i = 0; i < 4; i++) args[n++] = slow[i];
  for (; extra && *extra && n < 15; extra++) args[n++] = *extra;
  args[n] = NULL;
  pid_t b = ch_node_start(srv.url, "b", args);
  cr_assert(b > 0, "node b did not join");
  size_t seen = 0;
  isola_isolate h;
  isola_port echo = spawn_echo("b", NULL, &h, &seen);
  TH_ASSERT_OK(isola_send_reply(echo, isola_int(8), home));
  cr_assert(th_int(got(seen++)) == 8, "round trip");
  cr_assert(ch_node_stop(b, SIGTERM) == 0, "b ends cleanly");
}

Test(cluster, authentication_token) {
  th_counter_init(&in.count);
  char dir[64], conf[128];
  tmpdir_make(dir, sizeof dir);
  snprintf(conf, sizeof conf, "%s/server.conf", dir);
  cr_assert(ch_write_file(conf, "authorization { token: \"t0ken-s3cret\" }\n"),
            "the configuration");
  cr_assert(ch_server_start_conf(&srv, conf), "nats-server did not start");
  th_vm_init(NULL);
  isola_cluster_config cc;
  isola_cluster_config_init(&cc);
  TH_ASSERT_RC(join_with(&cc), ISOLA_ESYS); /* no token */
  cr_assert(strstr(isola_cluster_error(), "uthorization") != NULL,
            "a clear error: %s", isola_cluster_error());
  cc.token = "wrong";
  TH_ASSERT_RC(join_with(&cc), ISOLA_ESYS);
  cr_assert(strstr(isola_cluster_error(), "uthorization") != NULL,
            "a clear error: %s", isola_cluster_error());
  cc.token = "t0ken-s3cret";
  TH_ASSERT_OK(join_with(&cc));
  /* Node b takes its token from the environment, as process spawns pass
   * it. */
  setenv("ISOLA_NATS_TOKEN", "t0ken-s3cret", 1);
  round_trip_with(NULL);
  unsetenv("ISOLA_NATS_TOKEN");
  finish();
  tmpdir_remove(dir);
}

Test(cluster, nkey) {
  th_counter_init(&in.count);
  char dir[64], conf[128], seed1[128], seed2[128], pub1[57], pub2[57];
  tmpdir_make(dir, sizeof dir);
  cr_assert(ch_make_nkey(dir, "k1", pub1, seed1, sizeof seed1), "nkey 1");
  cr_assert(ch_make_nkey(dir, "k2", pub2, seed2, sizeof seed2), "nkey 2");
  cr_assert(pub1[0] == 'U' && strlen(pub1) == 56, "a user key: %s", pub1);
  char text[256];
  snprintf(text, sizeof text,
           "authorization { users = [ { nkey: \"%s\" } ] }\n", pub1);
  snprintf(conf, sizeof conf, "%s/server.conf", dir);
  cr_assert(ch_write_file(conf, text), "the configuration");
  cr_assert(ch_server_start_conf(&srv, conf), "nats-server did not start");
  th_vm_init(NULL);
  isola_cluster_config cc;
  isola_cluster_config_init(&cc);
  TH_ASSERT_RC(join_with(&cc), ISOLA_ESYS); /* no key */
  /* The right public key signed with another key's seed; another user's
   * key that the server does not know. */
  cc.nkey_public = pub1;
  cc.nkey_seed_file = seed2;
  TH_ASSERT_RC(join_with(&cc), ISOLA_ESYS);
  cr_assert(strstr(isola_cluster_error(), "uthorization") != NULL,
            "a clear error: %s", isola_cluster_error());
  cc.nkey_public = pub2;
  TH_ASSERT_RC(join_with(&cc), ISOLA_ESYS);
  cc.nkey_public = pub1;
  cc.nkey_seed_file = seed1;
  int rc = join_with(&cc);
  cr_assert(rc == ISOLA_OK, "join: %s: %s", isola_err_name(rc),
            isola_cluster_error());
  const char *extra[] = {"--nats-nkey", pub1, "--nats-nkey-seed", seed1,
                         NULL};
  round_trip_with(extra);
  finish();
  tmpdir_remove(dir);
}

Test(cluster, tls) {
  th_counter_init(&in.count);
  char dir[64], conf[128], text[768], ca[128], cert[128], key[128];
  tmpdir_make(dir, sizeof dir);
  cr_assert(ch_make_tls(dir), "openssl could not make the certificates");
  /* Mutual TLS: the server requires a client certificate of the CA. */
  snprintf(text, sizeof text,
           "tls {\n  cert_file: \"%s/server.pem\"\n"
           "  key_file: \"%s/server.key\"\n  ca_file: \"%s/ca.pem\"\n"
           "  verify: true\n  timeout: 5\n}\n",
           dir, dir, dir);
  snprintf(conf, sizeof conf, "%s/server.conf", dir);
  cr_assert(ch_write_file(conf, text), "the configuration");
  cr_assert(ch_server_start_conf(&srv, conf), "nats-server did not start");
  snprintf(ca, sizeof ca, "%s/ca.pem", dir);
  snprintf(cert, sizeof cert, "%s/client.pem", dir);
  snprintf(key, sizeof key, "%s/client.key", dir);
  th_vm_init(NULL);
  isola_cluster_config cc;
  isola_cluster_config_init(&cc);
  /* The server's certificate is signed by a CA the system does not
   * trust: refused without the CA file. */
  cc.tls = true;
  cc.tls_cert_file = cert;
  cc.tls_key_file = key;
  TH_ASSERT_RC(join_with(&cc), ISOLA_ESYS);
  cr_assert(strstr(isola_cluster_error(), "certificate") != NULL,
            "a clear error: %s", isola_cluster_error());
  /* With the CA but without a client certificate: the server refuses
   * (TLS 1.3 tells the client only that the connection closed). */
  cc.tls_ca_file = ca;
  cc.tls_cert_file = NULL;
  cc.tls_key_file = NULL;
  TH_ASSERT_RC(join_with(&cc), ISOLA_ESYS);
  cr_assert(*isola_cluster_error() != '\0', "the error is explained");
  cc.tls_cert_file = cert;
  cc.tls_key_file = key;
  int rc = join_with(&cc);
  cr_assert(rc == ISOLA_OK, "join: %s: %s", isola_err_name(rc),
            isola_cluster_error());
  const char *extra[] = {"--tls-ca", ca, "--tls-cert", cert, "--tls-key", key,
                         NULL};
  round_trip_with(extra);
  finish();
  tmpdir_remove(dir);
}
