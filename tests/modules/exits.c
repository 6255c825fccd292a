/* SPDX-License-Identifier: MIT */
/* A test module for the runner's exit status.  args[0] says what to do:
 *   "ok"          return: exit 0
 *   "code" N      isola_set_exit_code(N) from a spawned isolate of the
 *                 group, which the root waits for: exit N (the root
 *                 prints "spawned" once the spawn has returned)
 *   "throw"       an uncaught error in the root isolate: exit 255
 *   "child-throw" an uncaught error in another isolate only: exit 0
 *   "pause-exit"  sets exit code 5 and closes the root's last port.  With
 *                 --pause-isolates-on-exit the root then pauses, answers
 *                 its child's ping while paused, and the child sets exit
 *                 code 7 and resumes it: exit 7.  Without the pause the
 *                 root ends first, never answering the ping: exit 5.
 *   "alloc" N     isola_alloc(N) in the root, then free it: exit 0, or
 *                 255 if that passes the heap limit
 *   "kind" X      exit 10 if X arrived as a string, 11 as bytes
 * Anything else: exit code 3. */
#include <isola.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ISOLA_MODULE();

static isola_port done;

static void on_done(void *ctx, isola_port port, isola_value msg,
                    isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  isola_port_close(port);
}

static void set_code(isola_value message) {
  int64_t n = 0;
  isola_port back;
  isola_value v;
  isola_list_get(message, 0, &v);
  isola_value_get_int(v, &n);
  isola_list_get(message, 1, &v);
  isola_value_get_port(v, &back);
  isola_set_exit_code((int)n);
  isola_send(back, isola_null());
}

static void thrower(isola_value message) {
  (void)message;
  isola_throw("boom in a child");
}

/* pause-exit: the child holds the root's full handle. */
static isola_isolate root;
static isola_port root_port;

static void child_go(void *ctx, isola_port port, isola_value msg,
                     isola_port reply_to) {
  (void)ctx, (void)reply_to;
  if (msg.kind == ISOLA_NULL) {
    /* The root closed its last port in the handler that sent this: it
     * either has paused on exit before it reads this ping (out of band,
     * answered while paused) or ends without reading it. */
    if (isola_ping(&root, port, isola_int(1), ISOLA_IMMEDIATE) != ISOLA_OK)
      isola_port_close(port);
    return;
  }
  /* The answer: the root is paused on exit. */
  isola_set_exit_code(7);
  isola_resume(&root, 0);
  isola_port_close(port);
}

static void child_main(isola_value message) {
  (void)message;
  isola_port me;
  if (isola_port_open(child_go, NULL, &me) != ISOLA_OK)
    isola_throw("exits: no port");
  isola_send(root_port, isola_sendport(me));
}

static void root_go(void *ctx, isola_port port, isola_value msg,
                    isola_port reply_to) {
  (void)ctx, (void)reply_to;
  isola_port child;
  isola_value_get_port(msg, &child);
  isola_send(child, isola_null());
  isola_port_close(port); /* the last: the root pauses on exit */
}

static const char *arg(isola_value args, size_t i) {
  isola_value v;
  const char *s = NULL;
  if (isola_list_get(args, i, &v) != ISOLA_OK) return "";
  if (isola_value_get_str(v, &s, NULL) != ISOLA_OK) return "";
  return s;
}

void isola_main(isola_value args, isola_value message) {
  (void)message;
  const char *what = arg(args, 0);
  if (strcmp(what, "ok") == 0) return;
  if (strcmp(what, "code") == 0) {
    if (isola_port_open(on_done, NULL, &done) != ISOLA_OK)
      isola_throw("exits: no port");
    isola_value items[2] = {isola_int(atoi(arg(args, 1))),
                            isola_sendport(done)};
    if (isola_spawn(set_code, isola_list(items, 2), NULL, NULL) != ISOLA_OK)
      isola_throw("exits: spawn failed");
    printf("spawned\n");
    fflush(stdout);
    return;
  }
  if (strcmp(what, "throw") == 0) isola_throw("boom from the module");
  if (strcmp(what, "child-throw") == 0) {
    /* Wait for the child's end through an exit listener, so the error is
     * printed before the run ends. */
    if (isola_port_open(on_done, NULL, &done) != ISOLA_OK)
      isola_throw("exits: no port");
    isola_spawn_options o = {.name = "thrower", .on_exit = done};
    if (isola_spawn(thrower, isola_null(), &o, NULL) != ISOLA_OK)
      isola_throw("exits: spawn failed");
    return;
  }
  if (strcmp(what, "pause-exit") == 0) {
    /* The child is in this group, so it shares these statics; it reads
     * them only after its spawn, which orders these writes before. */
    isola_current(&root);
    if (isola_port_open(root_go, NULL, &root_port) != ISOLA_OK)
      isola_throw("exits: no port");
    isola_set_exit_code(5);
    if (isola_spawn(child_main, isola_null(), NULL, NULL) != ISOLA_OK)
      isola_throw("exits: spawn failed");
    return;
  }
  if (strcmp(what, "kind") == 0) {
    isola_value v;
    if (isola_list_get(args, 1, &v) != ISOLA_OK) isola_throw("exits: no X");
    isola_set_exit_code(v.kind == ISOLA_STRING  ? 10
                        : v.kind == ISOLA_BYTES ? 11
                                                : 12);
    return;
  }
  if (strcmp(what, "alloc") == 0) {
    isola_free(isola_alloc((size_t)atol(arg(args, 1))));
    return;
  }
  isola_set_exit_code(3);
}
