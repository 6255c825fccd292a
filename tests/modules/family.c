/* SPDX-License-Identifier: MIT */
/* A test module whose first isolate spawns a child with isola_spawn (so
 * the child joins the module's group and runs the module's code), then
 * ends.  message is the test's report port:
 *   the child sends [group id, its command port];
 *   the root sends its group id, then ends;
 *   on any message to its command port, the child replies to the report
 *   port with child_answer() (module code, run after the root ended) and
 *   closes its port, ending the group. */
#include <isola.h>

ISOLA_MODULE();

static isola_port report;

static int child_answer(void) { return 4242; }

static void on_command(void *ctx, isola_port port, isola_value msg,
                       isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  isola_send(report, isola_int(child_answer()));
  isola_port_close(port);
}

static void child_main(isola_value message) {
  isola_value_get_port(message, &report);
  isola_port cmd;
  if (isola_port_open(on_command, NULL, &cmd) != ISOLA_OK)
    isola_throw("family: no port");
  isola_isolate_info info;
  isola_current_info(&info);
  isola_value items[2] = {isola_int((int64_t)info.group),
                          isola_sendport(cmd)};
  isola_send(report, isola_list(items, 2));
}

void isola_main(isola_value args, isola_value message) {
  (void)args;
  isola_port to;
  if (isola_value_get_port(message, &to) != ISOLA_OK)
    isola_throw("family: the message is not a port");
  isola_spawn_options o = {.name = "family-child"};
  if (isola_spawn(child_main, message, &o, NULL) != ISOLA_OK)
    isola_throw("family: spawn failed");
  isola_isolate_info info;
  isola_current_info(&info);
  isola_send(to, isola_int((int64_t)info.group));
}
