/* SPDX-License-Identifier: MIT */
/* Error codes: isola_strerror() and isola_err_name() over the one table. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "helpers.h"

#include <limits.h>

TestSuite(error, .timeout = TH_TEST_TIMEOUT_S);

struct code {
  int value;
  const char *name;
  const char *text;
};

static const struct code codes[] = {
#define X(name, value, text) {value, "ISOLA_" #name, text},
    ISOLA_ERRNO_MAP(X)
#undef X
};

#define NCODES (sizeof codes / sizeof codes[0])

Test(error, strerror_gives_the_table_text_for_every_code) {
  for (size_t i = 0; i < NCODES; i++) {
    const char *s = isola_strerror(codes[i].value);
    cr_assert(s != NULL, "isola_strerror(%d) is NULL", codes[i].value);
    cr_assert(strcmp(s, codes[i].text) == 0,
              "isola_strerror(%d) is \"%s\", expected \"%s\"", codes[i].value,
              s, codes[i].text);
  }
}

Test(error, err_name_gives_the_prefixed_name_for_every_code) {
  for (size_t i = 0; i < NCODES; i++) {
    const char *s = isola_err_name(codes[i].value);
    cr_assert(s != NULL, "isola_err_name(%d) is NULL", codes[i].value);
    cr_assert(strcmp(s, codes[i].name) == 0,
              "isola_err_name(%d) is \"%s\", expected \"%s\"", codes[i].value,
              s, codes[i].name);
  }
}

Test(error, enum_values_match_the_table) {
  cr_assert(ISOLA_OK == 0, "ISOLA_OK is %d", ISOLA_OK);
  cr_assert(ISOLA_ECLOSED == -3, "ISOLA_ECLOSED is %d", ISOLA_ECLOSED);
  cr_assert(ISOLA_ESHUTDOWN == -14, "ISOLA_ESHUTDOWN is %d", ISOLA_ESHUTDOWN);
  /* Codes are distinct and every error is negative. */
  for (size_t i = 0; i < NCODES; i++) {
    if (i > 0)
      cr_assert(codes[i].value < 0, "%s is %d, not negative", codes[i].name,
                codes[i].value);
    for (size_t j = i + 1; j < NCODES; j++)
      cr_assert(codes[i].value != codes[j].value, "%s and %s share %d",
                codes[i].name, codes[j].name, codes[i].value);
  }
}

Test(error, unknown_codes_give_unknown_error_and_unknown_name) {
  const int unknown[] = {1, 42, -16, -100, INT_MIN, INT_MAX};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    const char *s = isola_strerror(unknown[i]);
    const char *n = isola_err_name(unknown[i]);
    cr_assert(s != NULL && strcmp(s, "unknown error") == 0,
              "isola_strerror(%d) is \"%s\"", unknown[i], s ? s : "(null)");
    cr_assert(n != NULL && strcmp(n, "ISOLA_UNKNOWN") == 0,
              "isola_err_name(%d) is \"%s\"", unknown[i], n ? n : "(null)");
  }
}

Test(error, strings_are_static_and_stable) {
  /* The same pointer (or at least the same text) on every call, from any
   * thread: no buffer that a later call overwrites. */
  const char *a = isola_strerror(ISOLA_ECLOSED);
  const char *b = isola_strerror(ISOLA_ENOMEM);
  cr_assert(strcmp(a, "port is closed or unknown") == 0, "first call: %s", a);
  cr_assert(strcmp(b, "out of memory") == 0, "second call: %s", b);
  cr_assert(strcmp(isola_strerror(ISOLA_ECLOSED), a) == 0,
            "text changed between calls");
}
