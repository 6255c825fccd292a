/* SPDX-License-Identifier: MIT */
/* A test module, built twice (tm_echo_a, tm_echo_b) with a different
 * MOD_TAG: both copies define the same exported names (module_tag,
 * module_bump, module_calls), so a group binding to the other group's copy
 * would show in the reply.  isola_main(args, port) sends
 * [module_tag(), module_bump(), args, group id, quit port] to port, and
 * stays (so its module stays loaded) until a message reaches quit port. */
#include <isola.h>

ISOLA_MODULE();

/* Exported on purpose: hidden names could not clash even with RTLD_GLOBAL,
 * and the test is about the loader keeping exported names apart. */
ISOLA_EXPORT int module_calls;

ISOLA_EXPORT const char *module_tag(void) { return MOD_TAG; }

ISOLA_EXPORT int module_bump(void) { return ++module_calls; }

static void on_quit(void *ctx, isola_port port, isola_value msg,
                    isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  isola_port_close(port);
}

void isola_main(isola_value args, isola_value message) {
  isola_port reply;
  if (isola_value_get_port(message, &reply) != ISOLA_OK)
    isola_throw("echo: the message is not a port");
  isola_isolate_info info;
  if (isola_current_info(&info) != ISOLA_OK) isola_throw("echo: no info");
  isola_port quit;
  if (isola_port_open(on_quit, NULL, &quit) != ISOLA_OK)
    isola_throw("echo: no port");
  isola_value items[5] = {isola_str(module_tag()), isola_int(module_bump()),
                          args, isola_int((int64_t)info.group),
                          isola_sendport(quit)};
  /* A send that fails (out of memory: the fault sweep) ends the module's
   * isolate, which its exit listener then hears. */
  if (isola_send(reply, isola_list(items, 5)) != ISOLA_OK)
    isola_throw("echo: the reply could not be sent");
}
