/* SPDX-License-Identifier: MIT */
/* A test module for the cluster names test, spawned on a remote node.
 * isola_main([taken, mine], home): opens an echo port, tries to register
 * it under taken (expected ISOLA_ENAMETAKEN) and under mine, looks taken
 * up, and sends [rc taken, rc mine, rc lookup, the port found or null,
 * its own port] to home.  The port echoes to reply_to; "quit" closes it. */
#include <isola.h>
#include <isola_cluster.h>

#include <string.h>

ISOLA_MODULE();

static void on_msg(void *ctx, isola_port port, isola_value msg,
                   isola_port reply_to) {
  (void)ctx;
  const char *s;
  if (isola_value_get_str(msg, &s, NULL) == ISOLA_OK &&
      strcmp(s, "quit") == 0) {
    isola_port_close(port);
    return;
  }
  if (reply_to) isola_send(reply_to, msg);
}

void isola_main(isola_value args, isola_value message) {
  isola_port home, port, found = ISOLA_PORT_NONE;
  isola_value a0, a1;
  const char *taken, *mine;
  if (isola_value_get_port(message, &home) != ISOLA_OK ||
      isola_list_get(args, 0, &a0) != ISOLA_OK ||
      isola_list_get(args, 1, &a1) != ISOLA_OK ||
      isola_value_get_str(a0, &taken, NULL) != ISOLA_OK ||
      isola_value_get_str(a1, &mine, NULL) != ISOLA_OK)
    isola_throw("cluster_names: bad arguments");
  if (isola_port_open(on_msg, NULL, &port) != ISOLA_OK)
    isola_throw("cluster_names: no port");
  int rc_taken = isola_cluster_name_register(taken, port);
  int rc_mine = isola_cluster_name_register(mine, port);
  int rc_lookup = isola_cluster_name_lookup(taken, &found);
  isola_value items[5] = {isola_int(rc_taken), isola_int(rc_mine),
                          isola_int(rc_lookup),
                          found ? isola_sendport(found) : isola_null(),
                          isola_sendport(port)};
  isola_send(home, isola_list(items, 5));
}
