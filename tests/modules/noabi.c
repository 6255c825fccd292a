/* SPDX-License-Identifier: MIT */
/* A test module with an isola_main but no ABI stamp (not built with
 * ISOLA_MODULE()); its isola_main must never run.  Its constructor does
 * run, at load, before the stamp is read (docs/security.md: loading a
 * module runs its code): it leaves a mark in the environment. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <isola.h>
#include <stdlib.h>

__attribute__((constructor)) static void loaded(void) {
  setenv("ISOLA_TM_NOABI_LOADED", "1", 1);
}

ISOLA_EXPORT void isola_main(isola_value args, isola_value message) {
  (void)args, (void)message;
  abort();
}
