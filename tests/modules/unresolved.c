/* SPDX-License-Identifier: MIT */
/* A test module that needs a symbol nothing defines: with RTLD_NOW the
 * load fails at once instead of at the first call. */
#include <isola.h>

ISOLA_MODULE();

extern void isola_test_no_such_function(void);

void isola_main(isola_value args, isola_value message) {
  (void)args, (void)message;
  isola_test_no_such_function();
}
