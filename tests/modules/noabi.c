/* SPDX-License-Identifier: MIT */
/* A test module with an isola_main but no ABI stamp (not built with
 * ISOLA_MODULE()); its isola_main must never run. */
#include <isola.h>
#include <stdlib.h>

ISOLA_EXPORT void isola_main(isola_value args, isola_value message) {
  (void)args, (void)message;
  abort();
}
