/* SPDX-License-Identifier: MIT */
/*
 * The wire format (CBOR) and whole-graph round trips: encode/decode of
 * every kind, random graphs with sharing and cycles through copy, wire and
 * transfer, malformed and hostile input, limits.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "helpers.h"

#include <math.h>

TestSuite(wire, .timeout = TH_TEST_TIMEOUT_S);

/* ---------------------------------------------------------------------- */
/* Shape: a bijection between the containers of two graphs                 */
/* ---------------------------------------------------------------------- */

struct iso_map {
  const isola_value **from, **to;
  uint32_t *kind;
  size_t n, cap;
};

static void iso_free(struct iso_map *m) {
  free(m->from);
  free(m->to);
  free(m->kind);
  memset(m, 0, sizeof *m);
}

/* NULL when b has the shape and content of a (a buffer in a may be bytes
 * in b when bytes_for_buffers), else what differs.  Non-empty containers
 * must map one to one: sharing and cycles are preserved, nothing merged. */
static const char *shape(const isola_value *a, const isola_value *b,
                         struct iso_map *m, bool bytes_for_buffers,
                         int depth) {
  if (depth > 5000) return "too deep";
  if (a->kind == ISOLA_BUFFER && bytes_for_buffers) {
    uint8_t *d;
    size_t n;
    if (isola_value_get_buffer(*a, &d, &n) != ISOLA_OK) return "bad buffer";
    if (b->kind != ISOLA_BYTES) return "buffer did not become bytes";
    if (b->len != n || (n && memcmp(b->as.bytes, d, n) != 0))
      return "buffer bytes differ";
    return NULL;
  }
  if (a->kind != b->kind) return "kind differs";
  if (a->kind != ISOLA_LIST && a->kind != ISOLA_MAP)
    return isola_value_equal(*a, *b) ? NULL : "scalar differs";
  if (a->len != b->len) return "length differs";
  if (a->len == 0) return NULL;
  for (size_t i = 0; i < m->n; i++) {
    bool fa = m->from[i] == a->as.items && m->kind[i] == a->kind;
    bool fb = m->to[i] == b->as.items && m->kind[i] == b->kind;
    if (fa || fb) return fa && fb ? NULL : "sharing differs";
  }
  if (m->n == m->cap) {
    m->cap = m->cap ? m->cap * 2 : 64;
    m->from = realloc(m->from, m->cap * sizeof *m->from);
    m->to = realloc(m->to, m->cap * sizeof *m->to);
    m->kind = realloc(m->kind, m->cap * sizeof *m->kind);
    cr_assert(m->from && m->to && m->kind, "out of memory");
  }
  m->from[m->n] = a->as.items;
  m->to[m->n] = b->as.items;
  m->kind[m->n] = a->kind;
  m->n++;
  size_t n = a->kind == ISOLA_MAP ? 2 * (size_t)a->len : a->len;
  for (size_t i = 0; i < n; i++) {
    const char *why = shape(&a->as.items[i], &b->as.items[i], m,
                            bytes_for_buffers, depth + 1);
    if (why) return why;
  }
  return NULL;
}

static const char *same_shape(isola_value a, isola_value b,
                              bool bytes_for_buffers) {
  struct iso_map m = {0};
  const char *why = shape(&a, &b, &m, bytes_for_buffers, 0);
  iso_free(&m);
  return why;
}

/* ---------------------------------------------------------------------- */
/* Random graphs: every kind, shared lists and maps, cycles, buffers       */
/* ---------------------------------------------------------------------- */

#define G_MAX_ARRAYS 2048
#define G_MAX_BUFS 256
#define G_MAX_DEPTH 6

struct g {
  uint64_t rng;
  bool buffers; /* make transferable buffers too */
  isola_value *arrays[G_MAX_ARRAYS];
  uint32_t lens[G_MAX_ARRAYS]; /* elements; pairs for a map */
  bool is_map[G_MAX_ARRAYS];
  bool complete[G_MAX_ARRAYS];
  size_t narrays, ncomplete;
  size_t stack[G_MAX_DEPTH + 1];
  size_t depth;
  isola_buffer *bufs[G_MAX_BUFS];
  isola_buffer *buf_ptrs[G_MAX_BUFS]; /* what each handle held at first */
  size_t nbufs;
};

static const char *const g_strings[] = {
    "", "a", "key", "h\xc3\xa9llo", "\xe2\x82\xac\xe2\x82\xac",
    "\xf0\x9d\x84\x9e tail", "a string long enough to need a longer head"};
static const uint8_t g_bytes[40] = {0, 1, 2, 3, 0xff, 0xfe, 0x80, 0x7f, 10};

static isola_value g_container(struct g *g, size_t k) {
  return g->is_map[k] ? isola_map(g->arrays[k], g->lens[k])
                      : isola_list(g->arrays[k], g->lens[k]);
}

static isola_value g_value(struct g *g) {
  uint64_t r = g->narrays == 0 ? 99 : th_rand_below(&g->rng, 100);
  bool can_nest = g->depth < G_MAX_DEPTH && g->narrays < G_MAX_ARRAYS;
  if (!can_nest || r < 50) {
    switch (th_rand_below(&g->rng, g->buffers ? 11 : 10)) {
    case 0:
      return isola_null();
    case 1:
      return isola_bool(th_rand(&g->rng) & 1);
    case 2:
      return isola_int((int64_t)th_rand(&g->rng) >>
                       th_rand_below(&g->rng, 64));
    case 3:
      return isola_double((double)(int64_t)th_rand(&g->rng) / 1024.0);
    case 4:
    case 5:
      return isola_str(
          g_strings[th_rand_below(&g->rng, sizeof g_strings / sizeof *g_strings)]);
    case 6:
      return isola_bytes(g_bytes, th_rand_below(&g->rng, sizeof g_bytes + 1));
    case 7:
      return isola_sendport(th_rand(&g->rng) | 1);
    case 8:
      return isola_cap(th_rand(&g->rng) | 1);
    case 9:
      return isola_int((int64_t)th_rand_below(&g->rng, 30) - 15);
    default: {
      if (g->nbufs == G_MAX_BUFS) return isola_null();
      size_t n = th_rand_below(&g->rng, 100);
      isola_buffer *b = isola_buffer_new(n);
      cr_assert(b != NULL, "b != NULL");
      for (size_t i = 0; i < n; i++)
        isola_buffer_data(b)[i] = (uint8_t)(th_rand(&g->rng));
      g->bufs[g->nbufs] = b;
      g->buf_ptrs[g->nbufs] = b;
      return isola_transfer(&g->bufs[g->nbufs++]);
    }
    }
  }
  if (r < 62 && g->ncomplete > 0) { /* share a finished container */
    size_t k = th_rand_below(&g->rng, g->narrays);
    while (!g->complete[k]) k = (k + 1) % g->narrays;
    return g_container(g, k);
  }
  if (r < 70 && g->depth > 0) { /* back to an ancestor: a cycle */
    size_t k = g->stack[th_rand_below(&g->rng, g->depth)];
    return g_container(g, k);
  }
  bool is_map = th_rand_below(&g->rng, 3) == 0;
  uint32_t n = (uint32_t)th_rand_below(&g->rng, 6);
  if (g->narrays == 0) n = 1 + n % 5;
  if (n == 0) return is_map ? isola_map(NULL, 0) : isola_list(NULL, 0);
  size_t k = g->narrays++;
  size_t nvals = is_map ? 2 * (size_t)n : n;
  g->arrays[k] = calloc(nvals, sizeof(isola_value));
  cr_assert(g->arrays[k] != NULL, "out of memory");
  g->lens[k] = n;
  g->is_map[k] = is_map;
  g->complete[k] = false;
  g->stack[g->depth++] = k;
  for (size_t i = 0; i < nvals; i++) g->arrays[k][i] = g_value(g);
  g->depth--;
  g->complete[k] = true;
  g->ncomplete++;
  return g_container(g, k);
}

static void g_free(struct g *g) {
  for (size_t i = 0; i < g->narrays; i++) free(g->arrays[i]);
  for (size_t i = 0; i < g->nbufs; i++) isola_buffer_free(g->bufs[i]);
  g->narrays = g->ncomplete = g->depth = g->nbufs = 0;
}

/* ---------------------------------------------------------------------- */
/* Every kind                                                              */
/* ---------------------------------------------------------------------- */

static void roundtrip_ok(isola_value v, const char *what) {
  uint8_t *bytes;
  size_t len;
  TH_ASSERT_OK(isola_wire_encode(v, &bytes, &len));
  cr_assert(len > 0, "%s: nothing encoded", what);
  /* The fixed-buffer form agrees byte for byte. */
  uint8_t *fixed = malloc(len);
  size_t flen = 0;
  cr_assert(fixed, "fixed");
  TH_ASSERT_RC(isola_wire_encode_to(v, fixed, len - 1, &flen),
               ISOLA_ENOSPACE);
  cr_assert((flen) == (len), "%s: measured %zu, want %zu", what, flen, len);
  TH_ASSERT_OK(isola_wire_encode_to(v, fixed, len, &flen));
  cr_assert(flen == len && memcmp(fixed, bytes, len) == 0, "%s", what);
  free(fixed);
  isola_value d;
  TH_ASSERT_OK(isola_wire_decode(bytes, len, NULL, &d));
  const char *why = same_shape(v, d, true);
  cr_assert(why == NULL, "%s: %s", what, why);
  /* Encoding the decoded value gives the same bytes again. */
  uint8_t *again;
  size_t alen;
  TH_ASSERT_OK(isola_wire_encode(d, &again, &alen));
  cr_assert(alen == len && memcmp(again, bytes, len) == 0, "%s: re-encoding differs", what);
  free(again);
  isola_value_free(&d);
  free(bytes);
}

Test(wire, every_kind_round_trips) {
  static const uint8_t raw[] = {0, 1, 2, 0xfe, 0xff};
  isola_value inner[3] = {isola_int(1), isola_str("two"), isola_null()};
  isola_value kv[4] = {isola_str("k"), isola_int(7), isola_int(-3),
                       isola_list(inner, 3)};
  isola_buffer *buf = isola_buffer_new(5);
  cr_assert(buf, "buf");
  memcpy(isola_buffer_data(buf), raw, 5);
  const isola_value all[] = {
      isola_null(), isola_bool(true), isola_bool(false), isola_int(0),
      isola_int(23), isola_int(24), isola_int(-24), isola_int(-25),
      isola_int(INT64_MAX), isola_int(INT64_MIN), isola_double(0.5),
      isola_double(-0.0), isola_double(INFINITY), isola_double(NAN),
      isola_double(1e-310), isola_str(""), isola_str("h\xc3\xa9llo"),
      isola_bytes(raw, sizeof raw), isola_bytes(NULL, 0),
      isola_list(inner, 3), isola_list(NULL, 0), isola_map(kv, 2),
      isola_map(NULL, 0), isola_sendport(0x0123456789abcdefull),
      isola_sendport(ISOLA_PORT_NONE), isola_cap(UINT64_MAX), isola_cap(1),
      isola_transfer(&buf)};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    char what[32];
    snprintf(what, sizeof what, "value %zu", i);
    roundtrip_ok(all[i], what);
    /* And copy: same shape, buffers copied. */
    isola_value c;
    TH_ASSERT_OK(isola_value_copy(all[i], &c));
    const char *why = same_shape(all[i], c, false);
    cr_assert(why == NULL, "copy of %s: %s", what, why);
    isola_value_free(&c);
  }
  cr_assert(buf != NULL, "encoding consumed the buffer");
  isola_buffer_free(buf);
  th_leak_check();
}

static void expect_bytes(isola_value v, const uint8_t *want, size_t n) {
  uint8_t *bytes;
  size_t len;
  TH_ASSERT_OK(isola_wire_encode(v, &bytes, &len));
  cr_assert(len == n && memcmp(bytes, want, n) == 0, "encoded %zu bytes, want %zu (first %02x)", len, n, bytes[0]);
  free(bytes);
}

Test(wire, encodings_follow_rfc8949_and_the_documented_tags) {
  expect_bytes(isola_null(), (const uint8_t[]){0xf6}, 1);
  expect_bytes(isola_bool(true), (const uint8_t[]){0xf5}, 1);
  expect_bytes(isola_int(-1), (const uint8_t[]){0x20}, 1);
  expect_bytes(isola_int(500), (const uint8_t[]){0x19, 0x01, 0xf4}, 3);
  expect_bytes(isola_double(1.0),
               (const uint8_t[]){0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0}, 9);
  expect_bytes(isola_str("a"), (const uint8_t[]){0x61, 'a'}, 2);
  expect_bytes(isola_bytes("\x01", 1), (const uint8_t[]){0x41, 1}, 2);
  expect_bytes(isola_sendport(5),
               (const uint8_t[]){0xda, 0x69, 0x73, 0x6f, 0x70, 0x05}, 6);
  expect_bytes(isola_cap(5),
               (const uint8_t[]){0xda, 0x69, 0x73, 0x6f, 0x63, 0x05}, 6);
  isola_value kv[2] = {isola_int(1), isola_int(2)};
  expect_bytes(isola_map(kv, 1), (const uint8_t[]){0xa1, 0x01, 0x02}, 3);
  /* Shared: [x, x] with x = [1] becomes [28([1]), 29(0)]. */
  isola_value one[1] = {isola_int(1)};
  isola_value two[2] = {isola_list(one, 1), isola_list(one, 1)};
  expect_bytes(isola_list(two, 2),
               (const uint8_t[]){0x82, 0xd8, 0x1c, 0x81, 0x01, 0xd8, 0x1d,
                                 0x00},
               8);
  /* A list containing itself: 28([29(0)]). */
  isola_value self[1];
  self[0] = isola_list(self, 1);
  expect_bytes(isola_list(self, 1),
               (const uint8_t[]){0xd8, 0x1c, 0x81, 0xd8, 0x1d, 0x00}, 6);
  /* A transferable buffer is plain bytes. */
  isola_buffer *b = isola_buffer_new(2);
  cr_assert(b, "b");
  isola_buffer_data(b)[0] = 9;
  isola_buffer_data(b)[1] = 8;
  expect_bytes(isola_transfer(&b), (const uint8_t[]){0x42, 9, 8}, 3);
  isola_buffer_free(b);
}

static isola_value decode_ok(const uint8_t *p, size_t n) {
  isola_value v;
  TH_ASSERT_OK(isola_wire_decode(p, n, NULL, &v));
  return v;
}

Test(wire, decoder_accepts_other_valid_forms) {
  /* Non-shortest integer heads, half and single floats. */
  isola_value v = decode_ok((const uint8_t[]){0x1b, 0, 0, 0, 0, 0, 0, 0, 5}, 9);
  cr_assert((th_int(v)) == (5), "(th_int(v)) == (5)");
  v = decode_ok((const uint8_t[]){0xf9, 0x3c, 0x00}, 3); /* half 1.0 */
  cr_assert(v.kind == ISOLA_DOUBLE && v.as.d == 1.0, "v.kind == ISOLA_DOUBLE && v.as.d == 1.0");
  v = decode_ok((const uint8_t[]){0xf9, 0x00, 0x01}, 3); /* half subnormal */
  cr_assert(v.as.d == ldexp(1.0, -24), "v.as.d == ldexp(1.0, -24)");
  v = decode_ok((const uint8_t[]){0xf9, 0xfc, 0x00}, 3); /* -inf */
  cr_assert(isinf(v.as.d) && v.as.d < 0, "isinf(v.as.d) && v.as.d < 0");
  v = decode_ok((const uint8_t[]){0xf9, 0x7e, 0x00}, 3);
  cr_assert(isnan(v.as.d), "isnan(v.as.d)");
  v = decode_ok((const uint8_t[]){0xfa, 0x47, 0xc3, 0x50, 0x00}, 5);
  cr_assert(v.as.d == 100000.0, "v.as.d == 100000.0");
  /* A map whose value is the map itself. */
  const uint8_t selfmap[] = {0xd8, 0x1c, 0xa1, 0x01, 0xd8, 0x1d, 0x00};
  v = decode_ok(selfmap, sizeof selfmap);
  isola_value inner;
  TH_ASSERT_OK(isola_map_find(v, isola_int(1), &inner));
  cr_assert(inner.kind == ISOLA_MAP && inner.as.items == v.as.items, "inner.kind == ISOLA_MAP && inner.as.items == v.as.items");
  isola_value_free(&v);
  /* An empty root list and an empty root string get blocks to free. */
  v = decode_ok((const uint8_t[]){0x80}, 1);
  cr_assert(v.kind == ISOLA_LIST && v.len == 0, "v.kind == ISOLA_LIST && v.len == 0");
  isola_value_free(&v);
  v = decode_ok((const uint8_t[]){0x60}, 1);
  cr_assert(v.kind == ISOLA_STRING && v.len == 0 && v.as.str[0] == 0, "v.kind == ISOLA_STRING && v.len == 0 && v.as.str[0] == 0");
  isola_value_free(&v);
  th_leak_check();
}

/* ---------------------------------------------------------------------- */
/* Malformed and hostile input                                             */
/* ---------------------------------------------------------------------- */

struct bad {
  const char *what;
  const uint8_t *p;
  size_t n;
  int rc;
};

#define BAD(what, rc, ...)                                                     \
  {what, (const uint8_t[]){__VA_ARGS__},                                       \
   sizeof((const uint8_t[]){__VA_ARGS__}), rc}

static const struct bad bad_inputs[] = {
    BAD("truncated head", ISOLA_ETRUNCATED, 0x19, 0x01),
    BAD("truncated string", ISOLA_ETRUNCATED, 0x63, 'a', 'b'),
    BAD("truncated array", ISOLA_ETRUNCATED, 0x83, 0x01, 0x02),
    BAD("truncated map", ISOLA_ETRUNCATED, 0xa1, 0x01),
    BAD("truncated tag", ISOLA_ETRUNCATED, 0xd8, 0x1c),
    BAD("oversized string length", ISOLA_ETRUNCATED, 0x5a, 0x7f, 0xff, 0xff,
        0xff, 0x00),
    BAD("oversized array length", ISOLA_ETRUNCATED, 0x9a, 0x7f, 0xff, 0xff,
        0xff, 0x00),
    BAD("64-bit string length", ISOLA_ETRUNCATED, 0x5b, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff),
    BAD("64-bit array length", ISOLA_ETRUNCATED, 0x9b, 0, 0, 0, 1, 0, 0, 0,
        0),
    BAD("reserved additional info", ISOLA_EMALFORMED, 0x1c),
    BAD("reserved additional info 30", ISOLA_EMALFORMED, 0x5e),
    BAD("stray break", ISOLA_EMALFORMED, 0xff),
    BAD("indefinite integer", ISOLA_EMALFORMED, 0x1f),
    BAD("two-byte simple below 32", ISOLA_EMALFORMED, 0xf8, 0x10),
    BAD("indefinite array", ISOLA_EUNSUPPORTED, 0x9f, 0x01, 0xff),
    BAD("indefinite string", ISOLA_EUNSUPPORTED, 0x7f, 0x61, 'a', 0xff),
    BAD("undefined", ISOLA_EUNSUPPORTED, 0xf7),
    BAD("simple value 255", ISOLA_EUNSUPPORTED, 0xf8, 0xff),
    BAD("uint beyond int64", ISOLA_EUNSUPPORTED, 0x1b, 0x80, 0, 0, 0, 0, 0, 0,
        0),
    BAD("nint beyond int64", ISOLA_EUNSUPPORTED, 0x3b, 0x80, 0, 0, 0, 0, 0, 0,
        0),
    BAD("bad utf-8", ISOLA_EUTF8, 0x62, 0xc3, 0x28),
    BAD("overlong utf-8", ISOLA_EUTF8, 0x62, 0xc0, 0x80),
    BAD("surrogate in utf-8", ISOLA_EUTF8, 0x63, 0xed, 0xa0, 0x80),
    BAD("dangling shared ref", ISOLA_EDANGLING, 0x81, 0xd8, 0x1d, 0x00),
    BAD("shared ref ahead", ISOLA_EDANGLING, 0x82, 0xd8, 0x1d, 0x01, 0xd8,
        0x1c, 0x80),
    BAD("unknown tag", ISOLA_EBADTAG, 0xc1, 0x01),
    BAD("bignum tag", ISOLA_EBADTAG, 0xc2, 0x41, 0x01),
    BAD("port tag on a string", ISOLA_EBADTAG, 0xda, 0x69, 0x73, 0x6f, 0x70,
        0x61, 'a'),
    BAD("capability tag on a negative", ISOLA_EBADTAG, 0xda, 0x69, 0x73, 0x6f,
        0x63, 0x20),
    BAD("shared ref to a string index", ISOLA_EBADTAG, 0xd8, 0x1d, 0x60),
    BAD("shareable string", ISOLA_EBADTAG, 0x82, 0xd8, 0x1c, 0x62, 'h', 'i',
        0xd8, 0x1d, 0x00),
    BAD("shareable bytes", ISOLA_EBADTAG, 0xd8, 0x1c, 0x41, 0x00),
    BAD("shareable integer", ISOLA_EBADTAG, 0xd8, 0x1c, 0x01),
    BAD("shareable port", ISOLA_EBADTAG, 0xd8, 0x1c, 0xda, 0x69, 0x73, 0x6f,
        0x70, 0x01),
    BAD("shareable of shareable", ISOLA_EBADTAG, 0xd8, 0x1c, 0xd8, 0x1c,
        0x80),
    BAD("shareable of a long-form ref", ISOLA_EBADTAG, 0x82, 0xd8, 0x1c, 0x80,
        0xd8, 0x1c, 0xd9, 0x00, 0x1d, 0x00),
    BAD("trailing bytes", ISOLA_ETRAILING, 0x01, 0x02),
    BAD("empty input", ISOLA_ETRUNCATED, 0x00, 0x00),
};

Test(wire, malformed_input_gives_its_own_error) {
  for (size_t i = 0; i < sizeof bad_inputs / sizeof bad_inputs[0]; i++) {
    const struct bad *b = &bad_inputs[i];
    size_t n = strcmp(b->what, "empty input") == 0 ? 0 : b->n;
    isola_value v = isola_int(42);
    int rc = isola_wire_decode(b->p, n, NULL, &v);
    cr_assert(rc == b->rc, "%s: got %s, want %s", b->what, isola_err_name(rc), isola_err_name(b->rc));
    cr_assert(v.kind == ISOLA_NULL, "%s: out not nulled", b->what);
    /* Every proper prefix fails too, and cleanly (but a prefix of
     * trailing bytes is a whole value). */
    for (size_t k = 0; k < n && b->rc != ISOLA_ETRAILING; k++)
      cr_assert(isola_wire_decode(b->p, k, NULL, &v) != ISOLA_OK, "%s: prefix %zu decoded", b->what, k);
  }
  isola_value v;
  TH_ASSERT_RC(isola_wire_decode(NULL, 1, NULL, &v), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_wire_decode((const uint8_t *)"\x01", 1, NULL, NULL),
               ISOLA_EINVAL);
  th_leak_check();
}

static uint8_t *nested(size_t depth, size_t *len) {
  uint8_t *p = malloc(depth + 1);
  cr_assert(p, "p");
  memset(p, 0x81, depth); /* [[[[ … */
  p[depth] = 0x01;
  *len = depth + 1;
  return p;
}

/* The deepest input the limits allow decodes on a thread with a small
 * stack: the decoder keeps its nesting on the heap.  (A recursive decoder
 * needs about 100 bytes of C stack per level in a release build, several
 * hundred under the sanitizers: 4096 levels overflow 128 KiB.) */
struct deep_job {
  int ok_rc, deeper_rc;
  int64_t leaf;
};

static void *deep_decode(void *arg) {
  struct deep_job *j = arg;
  size_t len;
  uint8_t *p = nested(ISOLA_WIRE_MAX_DEPTH, &len);
  isola_wire_limits lim = {.max_depth = UINT32_MAX}; /* taken as the cap */
  isola_value v;
  j->ok_rc = isola_wire_decode(p, len, &lim, &v);
  if (j->ok_rc == ISOLA_OK) {
    isola_value x = v;
    while (x.kind == ISOLA_LIST && x.len == 1) x = x.as.items[0];
    j->leaf = x.kind == ISOLA_INT ? x.as.i : -1;
    isola_value_free(&v);
  }
  free(p);
  p = nested(ISOLA_WIRE_MAX_DEPTH + 1, &len);
  j->deeper_rc = isola_wire_decode(p, len, &lim, &v);
  free(p);
  return NULL;
}

Test(wire, the_deepest_input_decodes_on_a_small_stack) {
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setstacksize(&a, 128 * 1024);
  pthread_t t;
  struct deep_job j = {0, 0, 0};
  cr_assert(pthread_create(&t, &a, deep_decode, &j) == 0, "pthread_create");
  pthread_join(t, NULL);
  pthread_attr_destroy(&a);
  TH_ASSERT_RC(j.ok_rc, ISOLA_OK);
  cr_assert(j.leaf == 1, "the innermost value is %lld", (long long)j.leaf);
  TH_ASSERT_RC(j.deeper_rc, ISOLA_EDEPTH);
}

Test(wire, limits_on_depth_items_and_size_are_each_their_own_error) {
  size_t len;
  uint8_t *p = nested(100, &len);
  isola_value v;
  isola_wire_limits lim = {.max_depth = 100};
  TH_ASSERT_OK(isola_wire_decode(p, len, &lim, &v));
  isola_value_free(&v);
  lim.max_depth = 99;
  TH_ASSERT_RC(isola_wire_decode(p, len, &lim, &v), ISOLA_EDEPTH);
  free(p);
  /* Deep input against the default limit, and far past the hard cap. */
  p = nested(1000000, &len);
  TH_ASSERT_RC(isola_wire_decode(p, len, NULL, &v), ISOLA_EDEPTH);
  lim.max_depth = UINT32_MAX;
  TH_ASSERT_RC(isola_wire_decode(p, len, &lim, &v), ISOLA_EDEPTH);
  free(p);
  /* Tag 28 directly on tag 28 means nothing. */
  uint8_t tags[601];
  for (int i = 0; i < 300; i++) {
    tags[2 * i] = 0xd8;
    tags[2 * i + 1] = 0x1c;
  }
  tags[600] = 0x01;
  TH_ASSERT_RC(isola_wire_decode(tags, sizeof tags, NULL, &v), ISOLA_EBADTAG);
  /* Items: a 10-element array is 11 items. */
  const uint8_t ten[] = {0x8a, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  isola_wire_limits items = {.max_items = 11};
  TH_ASSERT_OK(isola_wire_decode(ten, sizeof ten, &items, &v));
  isola_value_free(&v);
  items.max_items = 10;
  TH_ASSERT_RC(isola_wire_decode(ten, sizeof ten, &items, &v), ISOLA_ECOUNT);
  /* Size: the block of a 1000-byte string is more than 1000 bytes. */
  size_t slen = 1003;
  uint8_t *s = malloc(slen);
  cr_assert(s, "s");
  s[0] = 0x59;
  s[1] = 0x03;
  s[2] = 0xe8;
  memset(s + 3, 'x', 1000);
  isola_wire_limits size = {.max_size = 1000};
  TH_ASSERT_RC(isola_wire_decode(s, slen, &size, &v), ISOLA_ETOOBIG);
  size.max_size = 2000;
  TH_ASSERT_OK(isola_wire_decode(s, slen, &size, &v));
  cr_assert((v.len) == (1000), "(v.len) == (1000)");
  isola_value_free(&v);
  free(s);
  /* A million one-byte elements claim 24 MB of items: over a 1 MiB limit
   * before anything is allocated. */
  size_t big = 1000000;
  uint8_t *arr = malloc(big + 5);
  cr_assert(arr, "arr");
  arr[0] = 0x9a;
  arr[1] = (uint8_t)(big >> 24);
  arr[2] = (uint8_t)(big >> 16);
  arr[3] = (uint8_t)(big >> 8);
  arr[4] = (uint8_t)big;
  memset(arr + 5, 0xf6, big);
  size.max_size = 1 << 20;
  TH_ASSERT_RC(isola_wire_decode(arr, big + 5, &size, &v), ISOLA_ETOOBIG);
  TH_ASSERT_OK(isola_wire_decode(arr, big + 5, NULL, &v));
  cr_assert((v.len) == (big), "(v.len) == (big)");
  isola_value_free(&v);
  free(arr);
  th_leak_check();
}

Test(wire, random_bytes_never_crash_the_decoder) {
  uint64_t seed = th_seed("wire/random_bytes");
  uint64_t rng = seed;
  uint8_t buf[64];
  isola_wire_limits lim = {.max_depth = 16, .max_items = 1000,
                           .max_size = 1 << 16};
  int ok = 0;
  for (int i = 0; i < TH_SIZE(200000); i++) {
    size_t n = th_rand_below(&rng, sizeof buf + 1);
    for (size_t k = 0; k < n; k++) {
      /* Bias towards heads that open things. */
      uint64_t r = th_rand(&rng);
      buf[k] = (r & 3) == 0 ? (uint8_t)(0x80 | (r >> 8 & 0x43)) : (uint8_t)(r >> 16);
    }
    isola_value v;
    if (isola_wire_decode(buf, n, &lim, &v) == ISOLA_OK) {
      ok++;
      uint8_t *e;
      size_t elen;
      TH_ASSERT_OK(isola_wire_encode(v, &e, &elen));
      isola_value w;
      TH_ASSERT_OK(isola_wire_decode(e, elen, &lim, &w));
      cr_assert(isola_value_equal(v, w), "seed %llu input %d", (unsigned long long)seed, i);
      isola_value_free(&w);
      free(e);
      isola_value_free(&v);
    }
  }
  cr_log_info("%d random inputs decoded", ok);
  cr_assert(ok > 0, "ok > 0");
  th_leak_check();
}

/* ---------------------------------------------------------------------- */
/* Random graphs through copy and wire                                     */
/* ---------------------------------------------------------------------- */

Test(wire, random_graphs_round_trip_through_copy_and_wire) {
  static struct g g;
  uint64_t seed = th_seed("wire/random_graphs");
  g.rng = seed;
  g.buffers = false;
  int count = TH_SIZE(3000), shared = 0;
  for (int n = 0; n < count; n++) {
    g.buffers = (n & 1) != 0;
    isola_value v = g_value(&g);
    isola_value c;
    TH_ASSERT_OK(isola_value_copy(v, &c));
    const char *why = same_shape(v, c, false);
    cr_assert(why == NULL, "copy of graph %d (seed %llu): %s", n, (unsigned long long)seed, why);
    cr_assert(isola_value_equal(v, c), "isola_value_equal(v, c)");
    uint8_t *bytes;
    size_t len;
    TH_ASSERT_OK(isola_wire_encode(v, &bytes, &len));
    for (size_t i = 0; i + 1 < len; i++)
      if (bytes[i] == 0xd8 && bytes[i + 1] == 0x1d) {
        shared++;
        break;
      }
    isola_value d;
    TH_ASSERT_OK(isola_wire_decode(bytes, len, NULL, &d));
    why = same_shape(v, d, true);
    cr_assert(why == NULL, "wire of graph %d (seed %llu): %s", n, (unsigned long long)seed, why);
    /* The copy encodes to the same bytes as the original. */
    uint8_t *cb;
    size_t clen;
    TH_ASSERT_OK(isola_wire_encode(c, &cb, &clen));
    cr_assert(clen == len && memcmp(cb, bytes, len) == 0, "graph %d: copy encodes differently", n);
    free(cb);
    free(bytes);
    isola_value_free(&d);
    isola_value_free(&c);
    g_free(&g);
  }
  cr_log_info("%d graphs, %d with shared references", count, shared);
  cr_assert(shared > count / 10, "too few shared graphs: %d", shared);
  th_leak_check();
}

/* ---------------------------------------------------------------------- */
/* Random graphs through a port, buffers transferred                       */
/* ---------------------------------------------------------------------- */

static struct g tg;
static isola_value t_expect; /* a copy made before the send */
static int t_received, t_count;
static const char *t_failure;

static bool holds_ptr(isola_buffer *b) {
  for (size_t i = 0; i < tg.nbufs; i++)
    if (tg.buf_ptrs[i] == b) return true;
  return false;
}

/* Takes every buffer in v (each must be one the sender made: moved, not
 * copied); counts them. */
static size_t take_all(isola_value v, struct iso_map *seen) {
  size_t n = 0;
  if (v.kind == ISOLA_BUFFER) {
    isola_buffer *b;
    TH_CHECK_OK(isola_value_take_buffer(v, &b));
    TH_CHECK(holds_ptr(b));
    TH_CHECK_RC(isola_value_take_buffer(v, &b), ISOLA_ETRANSFER);
    isola_buffer_free(b);
    return 1;
  }
  if ((v.kind != ISOLA_LIST && v.kind != ISOLA_MAP) || v.len == 0) return 0;
  for (size_t i = 0; i < seen->n; i++)
    if (seen->from[i] == v.as.items) return 0;
  if (seen->n == seen->cap) {
    seen->cap = seen->cap ? seen->cap * 2 : 64;
    seen->from = realloc(seen->from, seen->cap * sizeof *seen->from);
    TH_CHECK(seen->from);
  }
  seen->from[seen->n++] = v.as.items;
  size_t nv = v.kind == ISOLA_MAP ? 2 * (size_t)v.len : v.len;
  for (size_t i = 0; i < nv; i++) n += take_all(v.as.items[i], seen);
  return n;
}

static void t_handler(void *ctx, isola_port port, isola_value msg,
                      isola_port reply_to) {
  (void)ctx;
  (void)reply_to;
  const char *why = same_shape(t_expect, msg, false);
  if (why && !t_failure) t_failure = why;
  /* Half the messages give their buffers up to the message's free. */
  if (t_received & 1) {
    struct iso_map seen = {0};
    size_t n = take_all(msg, &seen);
    free(seen.from);
    TH_CHECK(n == tg.nbufs);
  }
  t_received++;
  isola_value_free(&t_expect);
  g_free(&tg);
  if (t_received == t_count || t_failure) {
    TH_CHECK_OK(isola_port_close(port));
    return;
  }
  /* The next graph. */
  isola_value v = g_value(&tg);
  TH_CHECK_OK(isola_value_copy(v, &t_expect));
  TH_CHECK_OK(isola_send(port, v));
  for (size_t i = 0; i < tg.nbufs; i++) TH_CHECK(tg.bufs[i] == NULL);
}

static void t_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(t_handler, NULL, &p));
  isola_value v = g_value(&tg);
  TH_CHECK_OK(isola_value_copy(v, &t_expect));
  TH_CHECK_OK(isola_send(p, v));
}

Test(wire, random_graphs_with_buffers_transfer_through_a_port) {
  uint64_t seed = th_seed("wire/random_transfer");
  tg.rng = seed;
  tg.buffers = true;
  t_count = TH_SIZE(1000);
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(t_entry, isola_null(), NULL));
  cr_assert(t_failure == NULL, "seed %llu: %s", (unsigned long long)seed, t_failure);
  cr_assert((t_received) == (t_count), "(t_received) == (t_count)");
  th_vm_shutdown_ok();
}
