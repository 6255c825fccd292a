/* SPDX-License-Identifier: MIT */
/*
 * fuzz_wire.c — libFuzzer target for the wire decoder.
 *
 * Decodes arbitrary bytes under tight limits.  When decoding succeeds, the
 * value must encode, decode again to an equal value, and encode to the
 * same bytes the second time (the encoder is deterministic and the decoder
 * loses nothing it keeps).  What the decoded value costs must stay within
 * what the limits allowed (issue 12.2): a copy (and so a send) plans no
 * more than max_size bytes, the encoding is at most three times the input
 * (a 16-bit float widens to 64; nothing else grows), and it decodes again
 * under the same limits.  Any crash, sanitizer report or abort is a bug.
 * Built by fuzz/run.sh (CMake option ISOLA_BUILD_FUZZ, clang only).
 */
#include <isola.h>

#include "value.h" /* white box: the copy planner */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fail(const char *what) {
  fprintf(stderr, "fuzz_wire: %s\n", what);
  abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* Small limits keep each run fast and still hit every limit. */
  const isola_wire_limits limits = {
      .max_depth = 64, .max_items = 1 << 14, .max_size = 1 << 20};
  isola_value v;
  int rc = isola_wire_decode(data, size, &limits, &v);
  if (rc != ISOLA_OK) {
    if (v.kind != ISOLA_NULL) fail("failed decode left a value");
    if (rc >= 0 || strcmp(isola_err_name(rc), "ISOLA_UNKNOWN") == 0)
      fail("bad error code");
    return 0;
  }
  /* A copy or a send of v: the block it plans. */
  isola__plan plan;
  if (isola__value_plan(&plan, v) != ISOLA_OK) fail("plan failed");
  size_t planned = plan.size;
  isola__plan_done(&plan);
  if (planned > ((limits.max_size + 7) & ~(size_t)7))
    fail("a copy of the value needs more than max_size");
  uint8_t *e1 = NULL, *e2 = NULL;
  size_t n1 = 0, n2 = 0;
  if (isola_wire_encode(v, &e1, &n1) != ISOLA_OK) fail("encode failed");
  if (n1 > 3 * size + 9) fail("the encoding is over three times the input");
  isola_value w;
  /* The re-encoding has no more items, depth or size than the input. */
  if (isola_wire_decode(e1, n1, &limits, &w) != ISOLA_OK) fail("re-decode");
  if (!isola_value_equal(v, w)) fail("round trip changed the value");
  if (isola_wire_encode(w, &e2, &n2) != ISOLA_OK) fail("re-encode failed");
  if (n1 != n2 || memcmp(e1, e2, n1) != 0) fail("encoding is not stable");
  /* A deep copy of the decoded value is equal too. */
  isola_value c;
  if (isola_value_copy(v, &c) != ISOLA_OK) fail("copy failed");
  if (!isola_value_equal(v, c)) fail("copy differs");
  isola_value_free(&c);
  isola_value_free(&w);
  isola_value_free(&v);
  free(e1);
  free(e2);
  return 0;
}
