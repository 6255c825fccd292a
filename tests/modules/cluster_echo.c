/* SPDX-License-Identifier: MIT */
/* A test module for the cluster tests, spawned on remote nodes.
 * isola_main(args, home) opens a port and sends [that port, its control
 * port, args] to home.  Messages to the port:
 *   ["send", port, value]   sends value to port
 *   ["ctl", op, isolate, pause cap, terminate cap, port, value]
 *                           makes the core control call op ("pause",
 *                           "resume", "kill", "ping", "exit", "fatal") on
 *                           that handle (port and value: ping's response
 *                           port and response, the exit listener and its
 *                           response) and sends its result code (an int)
 *                           to reply_to
 *   "quit"                  closes the port: the isolate ends
 *   "throw"                 raises an uncaught error "boom"
 *   "segv"                  raises SIGSEGV: the process dies
 *   anything else           is sent back to reply_to (if any) */
#include <isola.h>

#include <signal.h>
#include <string.h>

ISOLA_MODULE();

static void on_msg(void *ctx, isola_port port, isola_value msg,
                   isola_port reply_to) {
  (void)ctx;
  const char *s;
  if (isola_value_get_str(msg, &s, NULL) == ISOLA_OK) {
    if (strcmp(s, "quit") == 0) {
      isola_port_close(port);
      return;
    }
    if (strcmp(s, "throw") == 0) isola_throw("boom");
    if (strcmp(s, "segv") == 0) raise(SIGSEGV);
  }
  isola_value verb, to, value;
  if (isola_list_get(msg, 0, &verb) == ISOLA_OK &&
      isola_value_get_str(verb, &s, NULL) == ISOLA_OK &&
      strcmp(s, "ctl") == 0) {
    const char *op = "";
    isola_port arg = ISOLA_PORT_NONE;
    isola_isolate h = {0, 0, 0};
    isola_value v;
    if (isola_list_get(msg, 1, &v) == ISOLA_OK)
      isola_value_get_str(v, &op, NULL);
    if (isola_list_get(msg, 2, &v) == ISOLA_OK)
      isola_value_get_port(v, &h.control_port);
    if (isola_list_get(msg, 3, &v) == ISOLA_OK)
      isola_value_get_cap(v, &h.pause_capability);
    if (isola_list_get(msg, 4, &v) == ISOLA_OK)
      isola_value_get_cap(v, &h.terminate_capability);
    if (isola_list_get(msg, 5, &v) == ISOLA_OK) isola_value_get_port(v, &arg);
    if (isola_list_get(msg, 6, &value) != ISOLA_OK) value = isola_null();
    int rc = ISOLA_EINVAL;
    if (strcmp(op, "pause") == 0) rc = isola_pause(&h, 0);
    if (strcmp(op, "resume") == 0) rc = isola_resume(&h, 0);
    if (strcmp(op, "kill") == 0) rc = isola_kill(&h, ISOLA_IMMEDIATE);
    if (strcmp(op, "ping") == 0)
      rc = isola_ping(&h, arg, value, ISOLA_IMMEDIATE);
    if (strcmp(op, "exit") == 0) rc = isola_add_exit_listener(&h, arg, value);
    if (strcmp(op, "fatal") == 0) rc = isola_set_errors_fatal(&h, true);
    if (reply_to) isola_send(reply_to, isola_int(rc));
    return;
  }
  if (isola_list_get(msg, 0, &verb) == ISOLA_OK &&
      isola_value_get_str(verb, &s, NULL) == ISOLA_OK &&
      strcmp(s, "send") == 0 && isola_list_get(msg, 1, &to) == ISOLA_OK &&
      to.kind == ISOLA_PORT && isola_list_get(msg, 2, &value) == ISOLA_OK) {
    isola_send(to.as.port, value);
    return;
  }
  if (reply_to) isola_send(reply_to, msg);
}

void isola_main(isola_value args, isola_value message) {
  isola_port home, port;
  if (isola_value_get_port(message, &home) != ISOLA_OK)
    isola_throw("cluster_echo: the message is not a port");
  if (isola_port_open(on_msg, NULL, &port) != ISOLA_OK)
    isola_throw("cluster_echo: no port");
  isola_isolate self;
  isola_current(&self);
  isola_value items[3] = {isola_sendport(port),
                          isola_sendport(self.control_port), args};
  isola_send(home, isola_list(items, 3));
}
