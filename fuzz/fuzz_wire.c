/* SPDX-License-Identifier: MIT */
/*
 * fuzz_wire.c — libFuzzer target for the wire decoder.
 *
 * Decodes arbitrary bytes under tight limits.  When decoding succeeds, the
 * value must encode, decode again to an equal value, and encode to the
 * same bytes the second time (the encoder is deterministic and the decoder
 * loses nothing it keeps).  Any crash, sanitizer report or abort is a bug.
 * Built by fuzz/run.sh (CMake option ISOLA_BUILD_FUZZ, clang only).
 */
#include <isola.h>

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
  uint8_t *e1 = NULL, *e2 = NULL;
  size_t n1 = 0, n2 = 0;
  if (isola_wire_encode(v, &e1, &n1) != ISOLA_OK) fail("encode failed");
  isola_value w;
  /* Re-encoding may use more items (a shared scalar is written out at
   * each use), so the second decode has default limits. */
  if (isola_wire_decode(e1, n1, NULL, &w) != ISOLA_OK) fail("re-decode");
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
