/* SPDX-License-Identifier: MIT */
/* A test module stamped with an ABI this runtime does not accept, as one
 * built against a future header would be; its isola_main must never run. */
#include <isola.h>
#include <stdlib.h>

ISOLA_EXPORT extern const uint32_t isola_module_abi;
const uint32_t isola_module_abi = ISOLA_MODULE_ABI + 1;

ISOLA_EXPORT void isola_main(isola_value args, isola_value message) {
  (void)args, (void)message;
  abort();
}
