/* SPDX-License-Identifier: MIT */
/*
 * utf8.h — the one UTF-8 validator (defined in value.c, which uses it the
 * most), declared apart from the rest of value.h so that the error details
 * (detail.c), which value.c calls, can use it without a cycle.
 */
#ifndef ISOLA_UTF8_H
#define ISOLA_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Well-formed UTF-8 (RFC 3629). */
/* Why a string is not UTF-8 (isola__utf8_bad_at). */
enum {
  ISOLA__UTF8_STRAY_CONTINUATION, /* a continuation byte with no lead */
  ISOLA__UTF8_OVERLONG_LEAD,      /* 0xC0 or 0xC1 */
  ISOLA__UTF8_NEVER,              /* 0xF5 .. 0xFF */
  ISOLA__UTF8_CUT_SHORT,          /* the string ends inside a sequence */
  ISOLA__UTF8_SURROGATE,          /* an encoded UTF-16 surrogate */
  ISOLA__UTF8_OVERLONG,           /* an overlong form */
  ISOLA__UTF8_TOO_HIGH,           /* a code point above U+10FFFF */
  ISOLA__UTF8_NO_CONTINUATION,    /* a lead byte not followed by one */
  ISOLA__UTF8_TOO_FEW_CONTINUATIONS
};

/* The offset of the first byte of s[0..n) that makes it not well-formed
 * UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above
 * U+10FFFF), with its reason in *why; SIZE_MAX when it is well-formed. */
size_t isola__utf8_bad_at(const unsigned char *s, size_t n, int *why);

/* Whether s[0..n) is well-formed UTF-8. */
static inline bool isola__utf8_valid(const unsigned char *s, size_t n) {
  int why;
  return isola__utf8_bad_at(s, n, &why) == SIZE_MAX;
}

#endif
