/* SPDX-License-Identifier: MIT */
/*
 * A program built outside the isola tree against an installed isola (see
 * run.sh): starts the VM, spawns an isolate that finds the main isolate by
 * name and sends it 6 * 7, checks the answer and shuts the VM down.  It
 * prints one line, which run.sh compares, and exits 0 only if all went
 * well.
 */
#include <isola.h>
#include <stdio.h>

static int64_t answer = -1; /* written and read on the main thread only */

static void worker_entry(isola_value message) {
  (void)message;
  isola_port main_port;
  if (isola_name_lookup("main", &main_port) == ISOLA_OK)
    isola_send(main_port, isola_int(6 * 7));
}

static void on_answer(void *ctx, isola_port port, isola_value message,
                      isola_port reply_to) {
  (void)ctx, (void)reply_to;
  isola_value_get_int(message, &answer);
  isola_port_close(port); /* the last port: isola_run_main returns */
}

static void main_entry(isola_value message) {
  (void)message;
  isola_port me;
  if (isola_port_open(on_answer, NULL, &me) != ISOLA_OK) return;
  if (isola_name_register("main", me) != ISOLA_OK ||
      isola_spawn(worker_entry, isola_null(), NULL, NULL) != ISOLA_OK)
    isola_port_close(me);
}

int main(void) {
  int rc = isola_vm_init(NULL);
  if (rc != ISOLA_OK) {
    fprintf(stderr, "isola_vm_init: %s\n", isola_strerror(rc));
    return 1;
  }
  rc = isola_run_main(main_entry, isola_null(), "main");
  if (rc != ISOLA_OK) fprintf(stderr, "isola_run_main: %s\n", isola_strerror(rc));
  int down = isola_vm_shutdown(NULL);
  if (down != ISOLA_OK)
    fprintf(stderr, "isola_vm_shutdown: %s\n", isola_strerror(down));
  if (rc != ISOLA_OK || down != ISOLA_OK || answer != 42) {
    fprintf(stderr, "expected 42 from the isolate, got %lld\n",
            (long long)answer);
    return 1;
  }
  printf("isola %s out of tree: an isolate answered %lld\n",
         ISOLA_VERSION_STRING, (long long)answer);
  return 0;
}
