/* SPDX-License-Identifier: MIT */
/* A test module with the ABI stamp but no isola_main. */
#include <isola.h>

ISOLA_MODULE();

ISOLA_EXPORT int not_the_entry(void) { return 1; }
