/* SPDX-License-Identifier: MIT */
/*
 * Values: constructors, typed getters, isola_value_copy (sharing, cycles,
 * UTF-8 checks), isola_value_equal, isola_value_free.  No VM needed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "helpers.h"

#include <math.h>

TestSuite(value, .timeout = TH_TEST_TIMEOUT_S);

/* One value of every kind, with content worth checking. */
static const char kHello[] = "hello, world";
static const uint8_t kBytes[] = {0, 1, 2, 0xfe, 0xff, 0, 7};

static size_t sample_values(isola_value *out, isola_value *list_items) {
  size_t n = 0;
  list_items[0] = isola_int(1);
  list_items[1] = isola_str("two");
  list_items[2] = isola_null();
  out[n++] = isola_null();
  out[n++] = isola_bool(true);
  out[n++] = isola_bool(false);
  out[n++] = isola_int(0);
  out[n++] = isola_int(INT64_MIN);
  out[n++] = isola_int(INT64_MAX);
  out[n++] = isola_double(3.25);
  out[n++] = isola_double(-1e300);
  out[n++] = isola_str(kHello);
  out[n++] = isola_str("");
  out[n++] = isola_str("h\xc3\xa9llo \xe2\x82\xac \xf0\x9d\x84\x9e");
  out[n++] = isola_bytes(kBytes, sizeof kBytes);
  out[n++] = isola_bytes(NULL, 0);
  out[n++] = isola_list(list_items, 3);
  out[n++] = isola_list(NULL, 0);
  out[n++] = isola_sendport((isola_port)0x0123456789abcdefull);
  return n;
}

#define MAX_SAMPLES 32

/* ---------------------------------------------------------------------- */
/* Constructors and getters                                                */
/* ---------------------------------------------------------------------- */

Test(value, constructors_wrap_their_arguments_without_copying) {
  isola_value items[2] = {isola_int(1), isola_int(2)};
  isola_value v;

  v = isola_null();
  cr_assert(v.kind == ISOLA_NULL, "null kind %u", v.kind);
  v = isola_bool(true);
  cr_assert(v.kind == ISOLA_BOOL && v.as.b, "bool");
  v = isola_int(-5);
  cr_assert(v.kind == ISOLA_INT && v.as.i == -5, "int");
  v = isola_double(2.5);
  cr_assert(v.kind == ISOLA_DOUBLE && v.as.d == 2.5, "double");
  v = isola_sendport(77);
  cr_assert(v.kind == ISOLA_PORT && v.as.port == 77, "port");
  v = isola_str(kHello);
  cr_assert(v.kind == ISOLA_STRING && v.len == strlen(kHello) &&
                v.as.str == kHello,
            "isola_str wraps the caller's pointer with its length");
  v = isola_strn(kHello, 5);
  cr_assert(v.kind == ISOLA_STRING && v.len == 5 && v.as.str == kHello,
            "isola_strn");
  v = isola_bytes(kBytes, sizeof kBytes);
  cr_assert(v.kind == ISOLA_BYTES && v.len == sizeof kBytes &&
                v.as.bytes == kBytes,
            "isola_bytes");
  v = isola_list(items, 2);
  cr_assert(v.kind == ISOLA_LIST && v.len == 2 && v.as.items == items,
            "isola_list");
}

Test(value, typed_getters_return_the_content_of_their_kind) {
  bool b = false;
  int64_t i = 0;
  double d = 0;
  isola_port p = 0;
  const char *s = NULL;
  const uint8_t *by = NULL;
  size_t len = 0;

  TH_ASSERT_OK(isola_value_get_bool(isola_bool(true), &b));
  cr_assert(b, "bool content");
  TH_ASSERT_OK(isola_value_get_int(isola_int(INT64_MIN), &i));
  cr_assert(i == INT64_MIN, "int content %lld", (long long)i);
  TH_ASSERT_OK(isola_value_get_double(isola_double(-0.5), &d));
  cr_assert(d == -0.5, "double content %g", d);
  TH_ASSERT_OK(isola_value_get_port(isola_sendport(99), &p));
  cr_assert(p == 99, "port content");
  TH_ASSERT_OK(isola_value_get_str(isola_str(kHello), &s, &len));
  cr_assert(s == kHello && len == strlen(kHello), "string content");
  s = NULL;
  TH_ASSERT_OK(isola_value_get_str(isola_str(kHello), &s, NULL));
  cr_assert(s == kHello, "string with len NULL");
  TH_ASSERT_OK(isola_value_get_bytes(isola_bytes(kBytes, 3), &by, &len));
  cr_assert(by == kBytes && len == 3, "bytes content");
  by = NULL;
  TH_ASSERT_OK(isola_value_get_bytes(isola_bytes(kBytes, 3), &by, NULL));
  cr_assert(by == kBytes, "bytes with len NULL");
}

Test(value, typed_getters_return_ETYPE_for_other_kinds_and_leave_out_alone) {
  isola_value samples[MAX_SAMPLES], items[3];
  size_t n = sample_values(samples, items);
  for (size_t k = 0; k < n; k++) {
    isola_value v = samples[k];
    bool b = true;
    int64_t i = 12345;
    double d = 1.5;
    isola_port p = 4242;
    const char *s = "sentinel";
    const uint8_t *by = kBytes;
    size_t len = 777;
    isola_value item = isola_int(31337);

    if (v.kind != ISOLA_BOOL) {
      TH_ASSERT_RC(isola_value_get_bool(v, &b), ISOLA_ETYPE);
      cr_assert(b == true, "get_bool touched out on kind %u", v.kind);
    }
    if (v.kind != ISOLA_INT) {
      TH_ASSERT_RC(isola_value_get_int(v, &i), ISOLA_ETYPE);
      cr_assert(i == 12345, "get_int touched out on kind %u", v.kind);
    }
    if (v.kind != ISOLA_DOUBLE) {
      TH_ASSERT_RC(isola_value_get_double(v, &d), ISOLA_ETYPE);
      cr_assert(d == 1.5, "get_double touched out on kind %u", v.kind);
    }
    if (v.kind != ISOLA_PORT) {
      TH_ASSERT_RC(isola_value_get_port(v, &p), ISOLA_ETYPE);
      cr_assert(p == 4242, "get_port touched out on kind %u", v.kind);
    }
    if (v.kind != ISOLA_STRING) {
      TH_ASSERT_RC(isola_value_get_str(v, &s, &len), ISOLA_ETYPE);
      cr_assert(strcmp(s, "sentinel") == 0 && len == 777,
                "get_str touched out on kind %u", v.kind);
    }
    if (v.kind != ISOLA_BYTES) {
      TH_ASSERT_RC(isola_value_get_bytes(v, &by, &len), ISOLA_ETYPE);
      cr_assert(by == kBytes && len == 777,
                "get_bytes touched out on kind %u", v.kind);
    }
    if (v.kind != ISOLA_LIST) {
      TH_ASSERT_RC(isola_list_get(v, 0, &item), ISOLA_ETYPE);
      cr_assert(item.kind == ISOLA_INT && item.as.i == 31337,
                "list_get touched out on kind %u", v.kind);
    }
  }
}

Test(value, typed_getters_return_EINVAL_when_out_is_NULL) {
  isola_value items[1] = {isola_int(1)};
  TH_ASSERT_RC(isola_value_get_bool(isola_bool(true), NULL), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_value_get_int(isola_int(1), NULL), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_value_get_double(isola_double(1), NULL), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_value_get_port(isola_sendport(1), NULL), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_value_get_str(isola_str("x"), NULL, NULL),
               ISOLA_EINVAL);
  TH_ASSERT_RC(isola_value_get_bytes(isola_bytes("x", 1), NULL, NULL),
               ISOLA_EINVAL);
  TH_ASSERT_RC(isola_list_get(isola_list(items, 1), 0, NULL), ISOLA_EINVAL);
}

Test(value, list_get_returns_elements_and_ERANGE_past_the_end) {
  isola_value items[3] = {isola_int(10), isola_str("b"), isola_null()};
  isola_value l = isola_list(items, 3), out;
  TH_ASSERT_OK(isola_list_get(l, 0, &out));
  cr_assert(out.kind == ISOLA_INT && out.as.i == 10, "element 0");
  TH_ASSERT_OK(isola_list_get(l, 2, &out));
  cr_assert(out.kind == ISOLA_NULL, "element 2");
  out = isola_int(5);
  TH_ASSERT_RC(isola_list_get(l, 3, &out), ISOLA_ERANGE);
  TH_ASSERT_RC(isola_list_get(l, SIZE_MAX, &out), ISOLA_ERANGE);
  TH_ASSERT_RC(isola_list_get(isola_list(NULL, 0), 0, &out), ISOLA_ERANGE);
  cr_assert(out.kind == ISOLA_INT && out.as.i == 5,
            "ERANGE must leave out alone");
}

/* ---------------------------------------------------------------------- */
/* Structural check of a copy, independent of isola_value_equal            */
/* ---------------------------------------------------------------------- */

/* Maps each list of the original (by items pointer) to the list of the
 * copy; a list met again must map to the same copy (sharing preserved),
 * two lists of the original must not merge into one copy. */
struct list_map {
  const isola_value **from, **to;
  size_t n, cap;
};

static void map_free(struct list_map *m) {
  free(m->from);
  free(m->to);
  memset(m, 0, sizeof *m);
}

/* Returns NULL when the copy matches the original, else what differs. */
static const char *check_copy(const isola_value *a, const isola_value *b,
                              struct list_map *m, int depth) {
  if (depth > 10000) return "too deep";
  if (a->kind != b->kind) return "kind differs";
  if (a->len != b->len) return "len differs";
  switch (a->kind) {
    case ISOLA_NULL:
      return NULL;
    case ISOLA_BOOL:
      return a->as.b == b->as.b ? NULL : "bool differs";
    case ISOLA_INT:
      return a->as.i == b->as.i ? NULL : "int differs";
    case ISOLA_DOUBLE:
      return memcmp(&a->as.d, &b->as.d, sizeof(double)) == 0
                 ? NULL
                 : "double differs";
    case ISOLA_PORT:
      return a->as.port == b->as.port ? NULL : "port differs";
    case ISOLA_STRING:
    case ISOLA_BYTES:
      if (a->len == 0) return NULL;
      if (a->as.bytes == b->as.bytes) return "copy shares the original bytes";
      return memcmp(a->as.bytes, b->as.bytes, a->len) == 0
                 ? NULL
                 : "string or bytes content differs";
    case ISOLA_LIST: {
      if (a->len == 0) return NULL;
      for (size_t i = 0; i < m->n; i++) {
        if (m->from[i] == a->as.items)
          return m->to[i] == b->as.items ? NULL : "sharing lost";
        if (m->to[i] == b->as.items) return "two lists merged into one";
      }
      if (a->as.items == b->as.items) return "copy shares the original list";
      if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 64;
        m->from = realloc(m->from, m->cap * sizeof *m->from);
        m->to = realloc(m->to, m->cap * sizeof *m->to);
        cr_assert(m->from && m->to, "out of memory");
      }
      m->from[m->n] = a->as.items;
      m->to[m->n] = b->as.items;
      m->n++;
      for (uint32_t i = 0; i < a->len; i++) {
        const char *why = check_copy(&a->as.items[i], &b->as.items[i], m,
                                     depth + 1);
        if (why) return why;
      }
      return NULL;
    }
    default:
      return "unknown kind";
  }
}

static void assert_copy_matches(isola_value orig, isola_value copy,
                                const char *what) {
  struct list_map m = {0};
  const char *why = check_copy(&orig, &copy, &m, 0);
  map_free(&m);
  cr_assert(why == NULL, "copy of %s: %s", what, why);
  cr_assert(isola_value_equal(orig, copy),
            "copy of %s: isola_value_equal says it differs", what);
  cr_assert(isola_value_equal(copy, orig),
            "copy of %s: isola_value_equal is not symmetric", what);
}

/* ---------------------------------------------------------------------- */
/* Copy                                                                    */
/* ---------------------------------------------------------------------- */

Test(value, copy_round_trips_every_kind) {
  isola_value samples[MAX_SAMPLES], items[3];
  size_t n = sample_values(samples, items);
  for (size_t k = 0; k < n; k++) {
    isola_value c;
    TH_ASSERT_OK(isola_value_copy(samples[k], &c));
    char what[64];
    snprintf(what, sizeof what, "sample %zu (kind %u)", k,
             (unsigned)samples[k].kind);
    assert_copy_matches(samples[k], c, what);
    isola_value_free(&c);
    cr_assert(c.kind == ISOLA_NULL, "isola_value_free must null the value");
  }
  th_leak_check();
}

Test(value, copy_keeps_nan_and_negative_zero) {
  isola_value c;
  TH_ASSERT_OK(isola_value_copy(isola_double(NAN), &c));
  cr_assert(c.kind == ISOLA_DOUBLE && isnan(c.as.d), "NaN lost");
  isola_value_free(&c);
  TH_ASSERT_OK(isola_value_copy(isola_double(-0.0), &c));
  cr_assert(c.kind == ISOLA_DOUBLE && c.as.d == 0 && signbit(c.as.d),
            "-0.0 lost its sign");
  isola_value_free(&c);
  th_leak_check();
}

Test(value, copy_is_independent_of_the_original_memory) {
  char buf[16] = "mutable";
  uint8_t bytes[4] = {1, 2, 3, 4};
  isola_value items[2] = {isola_str(buf), isola_bytes(bytes, 4)};
  isola_value c;
  TH_ASSERT_OK(isola_value_copy(isola_list(items, 2), &c));
  memset(buf, 'X', 7);
  memset(bytes, 0, sizeof bytes);
  items[0] = isola_int(0);
  const char *s;
  const uint8_t *by;
  size_t len;
  isola_value e;
  TH_ASSERT_OK(isola_list_get(c, 0, &e));
  TH_ASSERT_OK(isola_value_get_str(e, &s, &len));
  cr_assert(len == 7 && memcmp(s, "mutable", 7) == 0,
            "copied string changed with the original");
  TH_ASSERT_OK(isola_list_get(c, 1, &e));
  TH_ASSERT_OK(isola_value_get_bytes(e, &by, &len));
  cr_assert(len == 4 && by[0] == 1 && by[3] == 4,
            "copied bytes changed with the original");
  isola_value_free(&c);
  th_leak_check();
}

Test(value, copy_of_strn_keeps_only_its_length) {
  isola_value c;
  TH_ASSERT_OK(isola_value_copy(isola_strn("hello world", 5), &c));
  const char *s;
  size_t len;
  TH_ASSERT_OK(isola_value_get_str(c, &s, &len));
  cr_assert(len == 5 && memcmp(s, "hello", 5) == 0, "got %.*s", (int)len,
            s);
  isola_value_free(&c);
  th_leak_check();
}

Test(value, copy_preserves_nested_lists) {
  /* [1, [2, [3, ["deep"]]], [], "end"] and a 100-deep chain. */
  isola_value l3[1] = {isola_str("deep")};
  isola_value l2[2] = {isola_int(3), isola_list(l3, 1)};
  isola_value l1[2] = {isola_int(2), isola_list(l2, 2)};
  isola_value top[4] = {isola_int(1), isola_list(l1, 2), isola_list(NULL, 0),
                        isola_str("end")};
  isola_value c;
  TH_ASSERT_OK(isola_value_copy(isola_list(top, 4), &c));
  assert_copy_matches(isola_list(top, 4), c, "nested lists");
  isola_value e;
  TH_ASSERT_OK(isola_list_get(c, 1, &e));
  TH_ASSERT_OK(isola_list_get(e, 1, &e));
  TH_ASSERT_OK(isola_list_get(e, 1, &e));
  TH_ASSERT_OK(isola_list_get(e, 0, &e));
  const char *s;
  TH_ASSERT_OK(isola_value_get_str(e, &s, NULL));
  cr_assert(strcmp(s, "deep") == 0, "deep element is %s", s);
  isola_value_free(&c);

  enum { DEPTH = 100 };
  isola_value chain[DEPTH][2];
  chain[DEPTH - 1][0] = isola_int(DEPTH - 1);
  chain[DEPTH - 1][1] = isola_null();
  for (int i = DEPTH - 2; i >= 0; i--) {
    chain[i][0] = isola_int(i);
    chain[i][1] = isola_list(chain[i + 1], 2);
  }
  TH_ASSERT_OK(isola_value_copy(isola_list(chain[0], 2), &c));
  assert_copy_matches(isola_list(chain[0], 2), c, "100-deep chain");
  isola_value_free(&c);
  th_leak_check();
}

Test(value, copy_preserves_sharing_of_a_list_reached_twice) {
  isola_value inner[2] = {isola_int(7), isola_str("shared")};
  isola_value outer[3] = {isola_list(inner, 2), isola_int(0),
                          isola_list(inner, 2)};
  isola_value c;
  TH_ASSERT_OK(isola_value_copy(isola_list(outer, 3), &c));
  cr_assert(c.kind == ISOLA_LIST && c.len == 3, "outer shape");
  const isola_value *a = c.as.items[0].as.items;
  const isola_value *b = c.as.items[2].as.items;
  cr_assert(a == b, "the list reached twice arrived as two lists (%p, %p)",
            (const void *)a, (const void *)b);
  cr_assert(a != inner, "the copy points into the original");
  assert_copy_matches(isola_list(outer, 3), c, "shared list");
  isola_value_free(&c);
  th_leak_check();
}

Test(value, copy_of_a_self_containing_list_is_a_cycle) {
  isola_value self[2];
  self[0] = isola_int(1);
  self[1] = isola_list(self, 2); /* self[1] is the list itself */
  isola_value v = isola_list(self, 2), c;
  TH_ASSERT_OK(isola_value_copy(v, &c));
  cr_assert(c.kind == ISOLA_LIST && c.len == 2, "shape");
  cr_assert(c.as.items[1].kind == ISOLA_LIST &&
                c.as.items[1].as.items == c.as.items,
            "the copy is not a list that contains itself");
  cr_assert(c.as.items != self, "the copy points into the original");
  cr_assert(isola_value_equal(v, c), "a cycle equals its copy");
  assert_copy_matches(v, c, "self-containing list");
  isola_value_free(&c);

  /* Two lists containing each other: a = [b, "a"], b = [a, "b"]. */
  isola_value la[2], lb[2];
  la[0] = isola_list(lb, 2);
  la[1] = isola_str("a");
  lb[0] = isola_list(la, 2);
  lb[1] = isola_str("b");
  TH_ASSERT_OK(isola_value_copy(isola_list(la, 2), &c));
  const isola_value *ca = c.as.items;
  const isola_value *cb = ca[0].as.items;
  cr_assert(cb[0].as.items == ca, "mutual cycle not preserved");
  assert_copy_matches(isola_list(la, 2), c, "mutual cycle");
  isola_value_free(&c);
  th_leak_check();
}

Test(value, copy_rejects_invalid_utf8_with_EINVAL) {
  static const char *const bad[] = {
      "\xff",                 /* never valid */
      "abc\x80",              /* stray continuation byte */
      "\xc0\x80",             /* overlong NUL */
      "\xe0\x80\xaf",         /* overlong '/' */
      "\xed\xa0\x80",         /* UTF-16 surrogate */
      "\xe2\x82",             /* truncated sequence */
      "\xf4\x90\x80\x80",     /* above U+10FFFF */
      "\xf8\x88\x80\x80\x80", /* 5-byte form */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    isola_value c = isola_int(1);
    TH_ASSERT_RC(isola_value_copy(isola_str(bad[i]), &c), ISOLA_EINVAL);
    cr_assert(c.kind == ISOLA_NULL, "out not nulled on error (case %zu)", i);
    /* The same string deep inside a list. */
    isola_value inner[2] = {isola_int(1), isola_str(bad[i])};
    isola_value outer[2] = {isola_str("fine"), isola_list(inner, 2)};
    c = isola_int(1);
    TH_ASSERT_RC(isola_value_copy(isola_list(outer, 2), &c), ISOLA_EINVAL);
    cr_assert(c.kind == ISOLA_NULL, "out not nulled on nested error");
  }
  th_leak_check(); /* a failed copy frees what it had built */
}

Test(value, copy_accepts_valid_multibyte_utf8) {
  static const char *const good[] = {
      "\xc3\xa9",         /* é */
      "\xe2\x82\xac",     /* € */
      "\xf0\x9d\x84\x9e", /* U+1D11E */
      "\xf4\x8f\xbf\xbf", /* U+10FFFF */
      "\xef\xbb\xbf",     /* BOM */
  };
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    isola_value c;
    TH_ASSERT_OK(isola_value_copy(isola_str(good[i]), &c));
    assert_copy_matches(isola_str(good[i]), c, good[i]);
    isola_value_free(&c);
  }
  /* Bytes are not text: anything goes. */
  isola_value c;
  TH_ASSERT_OK(isola_value_copy(isola_bytes("\xff\xfe", 2), &c));
  isola_value_free(&c);
  th_leak_check();
}

Test(value, copy_rejects_malformed_values_with_EINVAL) {
  isola_value c = isola_int(1);
  isola_value bad = isola_int(1);
  bad.kind = 99;
  TH_ASSERT_RC(isola_value_copy(bad, &c), ISOLA_EINVAL);
  cr_assert(c.kind == ISOLA_NULL, "out not nulled on bad kind");
  isola_value items[2] = {isola_int(1), bad};
  c = isola_int(1);
  TH_ASSERT_RC(isola_value_copy(isola_list(items, 2), &c), ISOLA_EINVAL);
  cr_assert(c.kind == ISOLA_NULL, "out not nulled on nested bad kind");
  TH_ASSERT_RC(isola_value_copy(isola_int(1), NULL), ISOLA_EINVAL);
#if SIZE_MAX > UINT32_MAX
  /* A length past 32 bits is marked by the constructors and rejected. */
  isola_value huge = isola_strn(kHello, (size_t)UINT32_MAX + 1);
  c = isola_int(1);
  TH_ASSERT_RC(isola_value_copy(huge, &c), ISOLA_EINVAL);
  huge = isola_bytes(kBytes, (size_t)UINT32_MAX + 2);
  TH_ASSERT_RC(isola_value_copy(huge, &c), ISOLA_EINVAL);
  huge = isola_list(items, (size_t)UINT32_MAX + 1);
  TH_ASSERT_RC(isola_value_copy(huge, &c), ISOLA_EINVAL);
#endif
  th_leak_check();
}

/* ---------------------------------------------------------------------- */
/* Equality and free                                                       */
/* ---------------------------------------------------------------------- */

Test(value, equal_compares_kind_and_content) {
  isola_value samples[MAX_SAMPLES], items[3];
  size_t n = sample_values(samples, items);
  /* Every sample equals itself and differs from every other sample. */
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < n; j++)
      cr_assert(isola_value_equal(samples[i], samples[j]) == (i == j),
                "isola_value_equal(sample %zu, sample %zu) is %d", i, j,
                (int)isola_value_equal(samples[i], samples[j]));

  cr_assert(!isola_value_equal(isola_int(1), isola_double(1.0)),
            "int 1 equals double 1.0");
  cr_assert(!isola_value_equal(isola_str("ab"), isola_bytes("ab", 2)),
            "string equals bytes");
  cr_assert(!isola_value_equal(isola_int(0), isola_bool(false)),
            "int 0 equals false");
  cr_assert(!isola_value_equal(isola_null(), isola_int(0)), "null equals 0");
  cr_assert(!isola_value_equal(isola_sendport(1), isola_int(1)),
            "port equals int");
  cr_assert(isola_value_equal(isola_str("same"), isola_strn("same!", 4)),
            "equal strings from different buffers");
  cr_assert(!isola_value_equal(isola_str("abc"), isola_str("abd")),
            "different strings");
  cr_assert(!isola_value_equal(isola_str("abc"), isola_str("ab")),
            "prefix equals string");

  isola_value x[2] = {isola_int(1), isola_str("x")};
  isola_value y[2] = {isola_int(1), isola_str("x")};
  isola_value z[2] = {isola_int(1), isola_str("y")};
  isola_value w[3] = {isola_int(1), isola_str("x"), isola_null()};
  cr_assert(isola_value_equal(isola_list(x, 2), isola_list(y, 2)),
            "equal lists in different arrays");
  cr_assert(!isola_value_equal(isola_list(x, 2), isola_list(z, 2)),
            "lists with different elements");
  cr_assert(!isola_value_equal(isola_list(x, 2), isola_list(w, 3)),
            "lists of different lengths");
  isola_value nx[1] = {isola_list(x, 2)};
  cr_assert(!isola_value_equal(isola_list(nx, 1), isola_list(x, 2)),
            "different shapes");
}

Test(value, equal_handles_cycles) {
  isola_value a[2], b[2], c3[3];
  a[0] = isola_int(1);
  a[1] = isola_list(a, 2);
  b[0] = isola_int(1);
  b[1] = isola_list(b, 2);
  c3[0] = isola_int(1);
  c3[1] = isola_list(c3, 3);
  c3[2] = isola_null();
  cr_assert(isola_value_equal(isola_list(a, 2), isola_list(a, 2)),
            "a cycle equals itself");
  cr_assert(isola_value_equal(isola_list(a, 2), isola_list(b, 2)),
            "two identical cycles are equal");
  cr_assert(!isola_value_equal(isola_list(a, 2), isola_list(c3, 3)),
            "cycles of different shapes are equal");
  b[0] = isola_int(2);
  cr_assert(!isola_value_equal(isola_list(a, 2), isola_list(b, 2)),
            "cycles with different contents are equal");
}

Test(value, free_of_a_null_value_or_NULL_does_nothing) {
  isola_value v = isola_null();
  isola_value_free(&v);
  cr_assert(v.kind == ISOLA_NULL, "null stays null");
  isola_value_free(NULL);
  /* A copy of null is null and frees fine too. */
  TH_ASSERT_OK(isola_value_copy(isola_null(), &v));
  isola_value_free(&v);
  isola_value_free(&v); /* freeing twice: the first call nulled it */
  th_leak_check();
}

/* ---------------------------------------------------------------------- */
/* Random graphs                                                           */
/* ---------------------------------------------------------------------- */

#define GEN_MAX_ARRAYS 4096
#define GEN_MAX_DEPTH 5

struct gen {
  uint64_t rng;
  isola_value *arrays[GEN_MAX_ARRAYS]; /* every items array made */
  uint32_t lens[GEN_MAX_ARRAYS];
  bool complete[GEN_MAX_ARRAYS]; /* filled: may be shared */
  size_t narrays;
  size_t ncomplete;
  size_t stack[GEN_MAX_DEPTH + 1]; /* ancestors being filled: cycles */
  size_t depth;
};

static const char *const gen_strings[] = {
    "", "a", "hello", "h\xc3\xa9llo", "\xe2\x82\xac\xe2\x82\xac",
    "\xf0\x9d\x84\x9e tail", "a longer string that is not short at all"};
static const uint8_t gen_bytes[64] = {0,   1,   2,   3,   0xff, 0xfe, 0x80,
                                      0x7f, 10, 20, 30, 40, 50,   60,   70};

static isola_value gen_value(struct gen *g) {
  /* The root is always a fresh list: scalars are covered elsewhere. */
  uint64_t r = g->narrays == 0 ? 99 : th_rand_below(&g->rng, 100);
  bool can_nest = g->depth < GEN_MAX_DEPTH && g->narrays < GEN_MAX_ARRAYS;
  if (!can_nest || r < 50) {
    switch (th_rand_below(&g->rng, 7)) {
      case 0:
        return isola_null();
      case 1:
        return isola_bool(th_rand(&g->rng) & 1);
      case 2:
        return isola_int((int64_t)th_rand(&g->rng));
      case 3:
        return isola_double((double)(int64_t)th_rand(&g->rng) / 1024.0);
      case 4:
        return isola_str(gen_strings[th_rand_below(
            &g->rng, sizeof gen_strings / sizeof gen_strings[0])]);
      case 5:
        return isola_bytes(gen_bytes, th_rand_below(&g->rng, 65));
      default:
        return isola_sendport(th_rand(&g->rng) | 1);
    }
  }
  if (r < 62 && g->ncomplete > 0) { /* share a finished list */
    size_t k = th_rand_below(&g->rng, g->narrays);
    while (!g->complete[k]) k = (k + 1) % g->narrays;
    return isola_list(g->arrays[k], g->lens[k]);
  }
  if (r < 70 && g->depth > 0) { /* point back at an ancestor: a cycle */
    size_t k = g->stack[th_rand_below(&g->rng, g->depth)];
    return isola_list(g->arrays[k], g->lens[k]);
  }
  uint32_t n = (uint32_t)th_rand_below(&g->rng, 6);
  if (g->narrays == 0) n = 1 + n % 5;
  if (n == 0) return isola_list(NULL, 0);
  size_t k = g->narrays++;
  g->arrays[k] = calloc(n, sizeof(isola_value));
  cr_assert(g->arrays[k] != NULL, "out of memory");
  g->lens[k] = n;
  g->complete[k] = false;
  g->stack[g->depth++] = k;
  for (uint32_t i = 0; i < n; i++) g->arrays[k][i] = gen_value(g);
  g->depth--;
  g->complete[k] = true;
  g->ncomplete++;
  return isola_list(g->arrays[k], n);
}

static void gen_free(struct gen *g) {
  for (size_t i = 0; i < g->narrays; i++) free(g->arrays[i]);
  g->narrays = g->ncomplete = g->depth = 0;
}

/* Changes one int, bool or string element of some array; returns false if
 * no array holds one. */
static bool gen_mutate(struct gen *g, isola_value *saved, size_t *where_a,
                       uint32_t *where_i) {
  for (size_t a = 0; a < g->narrays; a++) {
    for (uint32_t i = 0; i < g->lens[a]; i++) {
      isola_value *e = &g->arrays[a][i];
      if (e->kind == ISOLA_INT || e->kind == ISOLA_BOOL ||
          (e->kind == ISOLA_STRING && e->len > 0)) {
        *saved = *e;
        *where_a = a;
        *where_i = i;
        if (e->kind == ISOLA_INT)
          e->as.i ^= 1;
        else if (e->kind == ISOLA_BOOL)
          e->as.b = !e->as.b;
        else
          *e = isola_str("mutated!");
        return true;
      }
    }
  }
  return false;
}

Test(value, random_graphs_with_sharing_and_cycles_copy_equal) {
  static struct gen g; /* large: keep it off the stack */
  uint64_t seed = th_seed("value/random_graphs");
  g.rng = seed;
  const int count = 500;
  int cycles_seen = 0, shared_seen = 0, mutations = 0;
  for (int n = 0; n < count; n++) {
    isola_value v = gen_value(&g);
    isola_value c, cc;
    TH_ASSERT_OK(isola_value_copy(v, &c));
    struct list_map m = {0};
    const char *why = check_copy(&v, &c, &m, 0);
    map_free(&m);
    cr_assert(why == NULL, "graph %d (seed %llu): %s", n,
              (unsigned long long)seed, why);
    cr_assert(isola_value_equal(v, c),
              "graph %d (seed %llu): not equal to its copy", n,
              (unsigned long long)seed);
    /* A copy of the copy is the same graph again. */
    TH_ASSERT_OK(isola_value_copy(c, &cc));
    m = (struct list_map){0};
    why = check_copy(&c, &cc, &m, 0);
    map_free(&m);
    cr_assert(why == NULL, "graph %d (seed %llu), copy of copy: %s", n,
              (unsigned long long)seed, why);
    cr_assert(isola_value_equal(v, cc), "graph %d: copy of copy differs", n);
    /* Equality notices a change anywhere in the graph. */
    isola_value saved;
    size_t wa;
    uint32_t wi;
    if (gen_mutate(&g, &saved, &wa, &wi)) {
      mutations++;
      cr_assert(!isola_value_equal(v, c),
                "graph %d (seed %llu): equal after a change in array %zu "
                "element %u",
                n, (unsigned long long)seed, wa, wi);
      g.arrays[wa][wi] = saved;
      cr_assert(isola_value_equal(v, c), "graph %d: restore failed", n);
    }
    for (size_t a = 0; a < g.narrays; a++)
      for (uint32_t i = 0; i < g.lens[a]; i++) {
        const isola_value *e = &g.arrays[a][i];
        if (e->kind != ISOLA_LIST || e->len == 0) continue;
        if (e->as.items == g.arrays[a]) cycles_seen++;
        /* An array referenced from an earlier-made one: shared or cyclic. */
        for (size_t b = 0; b < a; b++)
          if (e->as.items == g.arrays[b]) shared_seen++;
      }
    isola_value_free(&c);
    isola_value_free(&cc);
    gen_free(&g);
  }
  cr_log_info("%d graphs, %d mutations checked, %d direct self-cycles, %d "
              "back or shared references",
              count, mutations, cycles_seen, shared_seen);
  cr_assert(shared_seen > 0 && cycles_seen > 0,
            "the generator made no sharing or no cycles (seed %llu)",
            (unsigned long long)seed);
  cr_assert(mutations > count / 2,
            "the generator made too few mutable graphs (%d of %d)", mutations,
            count);
  th_leak_check();
}

/* ---------------------------------------------------------------------- */
/* Maps and capabilities                                                   */
/* ---------------------------------------------------------------------- */

Test(value, map_and_capability_accessors_check_their_kind) {
  isola_value kv[6] = {isola_str("a"), isola_int(1), isola_int(2),
                       isola_str("two"), isola_null(), isola_bool(true)};
  isola_value m = isola_map(kv, 3);
  cr_assert((m.kind) == (ISOLA_MAP), "(m.kind) == (ISOLA_MAP)");
  cr_assert((m.len) == (3), "(m.len) == (3)");
  isola_value k, v;
  TH_ASSERT_OK(isola_map_get(m, 1, &k, &v));
  cr_assert(isola_value_equal(k, isola_int(2)), "isola_value_equal(k, isola_int(2))");
  cr_assert(isola_value_equal(v, isola_str("two")), "isola_value_equal(v, isola_str(\"two\"))");
  TH_ASSERT_OK(isola_map_get(m, 2, NULL, &v));
  cr_assert(v.kind == ISOLA_BOOL && v.as.b, "v.kind == ISOLA_BOOL && v.as.b");
  TH_ASSERT_RC(isola_map_get(m, 3, &k, &v), ISOLA_ERANGE);
  TH_ASSERT_RC(isola_map_get(isola_list(kv, 6), 0, &k, &v), ISOLA_ETYPE);
  TH_ASSERT_OK(isola_map_find(m, isola_str("a"), &v));
  cr_assert((th_int(v)) == (1), "(th_int(v)) == (1)");
  TH_ASSERT_OK(isola_map_find(m, isola_null(), &v));
  v = isola_int(99);
  TH_ASSERT_RC(isola_map_find(m, isola_str("b"), &v), ISOLA_ENOKEY);
  cr_assert((th_int(v)) == (99), "out touched on ENOKEY");
  TH_ASSERT_RC(isola_map_find(isola_int(1), isola_null(), &v), ISOLA_ETYPE);
  TH_ASSERT_RC(isola_map_find(m, isola_null(), NULL), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_list_get(m, 0, &v), ISOLA_ETYPE);

  isola_capability c = 0;
  TH_ASSERT_OK(isola_value_get_cap(isola_cap(0xfeedull), &c));
  cr_assert((c) == (0xfeedull), "(c) == (0xfeedull)");
  TH_ASSERT_RC(isola_value_get_cap(isola_sendport(0xfeedull), &c),
               ISOLA_ETYPE);
  TH_ASSERT_RC(isola_value_get_port(isola_cap(1), &(isola_port){0}),
               ISOLA_ETYPE);
  TH_ASSERT_RC(isola_value_get_cap(isola_cap(1), NULL), ISOLA_EINVAL);
  cr_assert(!isola_value_equal(isola_cap(1), isola_sendport(1)), "!isola_value_equal(isola_cap(1), isola_sendport(1))");
  cr_assert(!isola_value_equal(isola_map(kv, 3), isola_list(kv, 3)), "!isola_value_equal(isola_map(kv, 3), isola_list(kv, 3))");
  cr_assert(!isola_value_equal(isola_map(kv, 3), isola_map(kv, 2)), "!isola_value_equal(isola_map(kv, 3), isola_map(kv, 2))");
}

Test(value, copy_preserves_map_sharing_and_cycles) {
  /* m = {"self": m, "l": l, "l again": l} with l = [m, cap] */
  isola_value l[2], kv[6] = {0};
  isola_value m = isola_map(kv, 3);
  l[0] = m;
  l[1] = isola_cap(77);
  kv[0] = isola_str("self");
  kv[1] = m;
  kv[2] = isola_str("l");
  kv[3] = isola_list(l, 2);
  kv[4] = isola_map(kv, 3); /* a key may be any value, the map itself too */
  kv[5] = isola_list(l, 2);
  isola_value c;
  TH_ASSERT_OK(isola_value_copy(m, &c));
  cr_assert(isola_value_equal(m, c), "isola_value_equal(m, c)");
  cr_assert(c.as.items != kv, "c.as.items != kv");
  cr_assert(c.as.items[1].as.items == c.as.items, "cycle lost");
  cr_assert(c.as.items[4].as.items == c.as.items, "map key cycle lost");
  cr_assert(c.as.items[3].as.items == c.as.items[5].as.items, "sharing lost");
  cr_assert(c.as.items[3].as.items[0].as.items == c.as.items, "c.as.items[3].as.items[0].as.items == c.as.items");
  cr_assert((c.as.items[3].as.items[1].as.cap) == (77), "(c.as.items[3].as.items[1].as.cap) == (77)");
  /* A list and a map over the same array are different values. */
  isola_value pair[2] = {isola_list(kv, 2), isola_map(kv, 1)};
  isola_value c2;
  TH_ASSERT_OK(isola_value_copy(isola_list(pair, 2), &c2));
  cr_assert(c2.as.items[0].kind == ISOLA_LIST, "c2.as.items[0].kind == ISOLA_LIST");
  cr_assert(c2.as.items[1].kind == ISOLA_MAP, "c2.as.items[1].kind == ISOLA_MAP");
  cr_assert(isola_value_equal(isola_list(pair, 2), c2), "isola_value_equal(isola_list(pair, 2), c2)");
  isola_value_free(&c);
  isola_value_free(&c2);
  th_leak_check();
}

/* ---------------------------------------------------------------------- */
/* Transferable buffers                                                    */
/* ---------------------------------------------------------------------- */

Test(value, buffers_copy_their_bytes_and_take_moves_them_out) {
  isola_buffer *b = isola_buffer_new(1000);
  cr_assert(b, "b");
  cr_assert((isola_buffer_size(b)) == (1000), "(isola_buffer_size(b)) == (1000)");
  cr_assert(((uintptr_t)isola_buffer_data(b) % 16) == (0), "((uintptr_t)isola_buffer_data(b) %% 16) == (0)");
  for (int i = 0; i < 1000; i++) isola_buffer_data(b)[i] = (uint8_t)i;
  cr_assert(isola_buffer_data(NULL) == NULL && isola_buffer_size(NULL) == 0, "isola_buffer_data(NULL) == NULL && isola_buffer_size(NULL) == 0");
  isola_buffer *empty = isola_buffer_new(0);
  cr_assert(empty && isola_buffer_size(empty) == 0, "empty && isola_buffer_size(empty) == 0");
  isola_buffer_free(empty);
  isola_buffer_free(NULL);

  isola_value items[2] = {isola_int(1), isola_transfer(&b)};
  isola_value c;
  TH_ASSERT_OK(isola_value_copy(isola_list(items, 2), &c));
  cr_assert(b != NULL, "a copy must not consume the handle");
  cr_assert(isola_value_equal(isola_list(items, 2), c), "isola_value_equal(isola_list(items, 2), c)");
  uint8_t *d;
  size_t n;
  TH_ASSERT_OK(isola_value_get_buffer(c.as.items[1], &d, &n));
  cr_assert(n == 1000 && d != isola_buffer_data(b) && d[999] == (uint8_t)999, "n == 1000 && d != isola_buffer_data(b) && d[999] == (uint8_t)999");
  TH_ASSERT_RC(isola_value_get_bytes(c.as.items[1], &(const uint8_t *){0},
                                     NULL),
               ISOLA_ETYPE);
  TH_ASSERT_RC(isola_value_get_buffer(isola_int(1), &d, &n), ISOLA_ETYPE);
  isola_buffer *taken = NULL;
  TH_ASSERT_RC(isola_value_take_buffer(isola_int(1), &taken), ISOLA_ETYPE);
  TH_ASSERT_RC(isola_value_take_buffer(c.as.items[1], NULL), ISOLA_EINVAL);
  TH_ASSERT_OK(isola_value_take_buffer(c.as.items[1], &taken));
  cr_assert(isola_buffer_data(taken) == d, "isola_buffer_data(taken) == d");
  TH_ASSERT_RC(isola_value_take_buffer(c.as.items[1], &taken),
               ISOLA_ETRANSFER);
  TH_ASSERT_RC(isola_value_get_buffer(c.as.items[1], &d, &n),
               ISOLA_ETRANSFER);
  /* A copy of a value whose buffer was taken cannot be made. */
  isola_value cc = isola_int(5);
  TH_ASSERT_RC(isola_value_copy(c, &cc), ISOLA_ETRANSFER);
  cr_assert(cc.kind == ISOLA_NULL, "cc.kind == ISOLA_NULL");
  isola_value_free(&c); /* frees the block, not the taken buffer */
  isola_buffer_free(taken);

  /* Copy of a root buffer; freeing the copy frees its buffer. */
  TH_ASSERT_OK(isola_value_copy(isola_transfer(&b), &c));
  isola_value_free(&c);
  /* A buffer twice, or an empty handle: ETRANSFER, nothing allocated. */
  isola_buffer *alias = b, *none = NULL;
  isola_value dup[3] = {isola_transfer(&b), isola_int(0),
                        isola_transfer(&alias)};
  TH_ASSERT_RC(isola_value_copy(isola_list(dup, 3), &c), ISOLA_ETRANSFER);
  dup[2] = isola_transfer(&b);
  TH_ASSERT_RC(isola_value_copy(isola_list(dup, 3), &c), ISOLA_ETRANSFER);
  TH_ASSERT_RC(isola_value_copy(isola_transfer(&none), &c), ISOLA_ETRANSFER);
  TH_ASSERT_RC(isola_value_copy(isola_transfer(NULL), &c), ISOLA_EINVAL);
  /* One buffer inside a list reached twice is met once: fine. */
  isola_value inner[1] = {isola_transfer(&b)};
  isola_value outer[2] = {isola_list(inner, 1), isola_list(inner, 1)};
  TH_ASSERT_OK(isola_value_copy(isola_list(outer, 2), &c));
  cr_assert(c.as.items[0].as.items == c.as.items[1].as.items, "c.as.items[0].as.items == c.as.items[1].as.items");
  isola_value_free(&c);
  isola_buffer_free(b);
  th_leak_check();
}

static isola_buffer *xfer_sent_ptr;
static isola_port xfer_closed_port;
static atomic_int xfer_stage;

static void xfer_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx;
  (void)reply_to;
  int stage = atomic_load(&xfer_stage);
  if (stage == 0) {
    /* The buffer arrives without a copy: the same memory. */
    isola_value item;
    TH_CHECK_OK(isola_list_get(msg, 1, &item));
    TH_CHECK(item.kind == ISOLA_BUFFER);
    uint8_t *d;
    size_t n;
    TH_CHECK_OK(isola_value_get_buffer(item, &d, &n));
    TH_CHECK(n == (1u << 20) && d == isola_buffer_data(xfer_sent_ptr));
    TH_CHECK(d[12345] == (uint8_t)12345);
    isola_buffer *mine;
    TH_CHECK_OK(isola_value_take_buffer(item, &mine));
    TH_CHECK(mine == xfer_sent_ptr);
    isola_buffer_free(mine);
  } else {
    /* Not taken: freed with the message (LeakSanitizer checks). */
    TH_CHECK(msg.kind == ISOLA_BUFFER);
    TH_CHECK_OK(isola_value_get_buffer(msg, &(uint8_t *){0}, NULL));
  }
  atomic_store(&xfer_stage, stage + 1);
  if (stage == 1) TH_CHECK_OK(isola_port_close(port));
}

static void noop(void *ctx, isola_port port, isola_value msg,
                 isola_port reply_to) {
  (void)ctx;
  (void)port;
  (void)msg;
  (void)reply_to;
}

static void xfer_entry(isola_value msg) {
  (void)msg;
  isola_port p, closed;
  TH_CHECK_OK(isola_port_open(xfer_handler, NULL, &p));
  TH_CHECK_OK(isola_port_open(noop, NULL, &closed));
  TH_CHECK_OK(isola_port_close(closed));

  isola_buffer *b = isola_buffer_new(1u << 20);
  TH_CHECK(b);
  for (size_t i = 0; i < (1u << 20); i++) isola_buffer_data(b)[i] = (uint8_t)i;
  isola_buffer *alias = b, *none = NULL;

  /* Duplicate in one message: refused, nothing consumed. */
  isola_value dup[2] = {isola_transfer(&b), isola_transfer(&b)};
  TH_CHECK_RC(isola_send(p, isola_list(dup, 2)), ISOLA_ETRANSFER);
  TH_CHECK(b == alias);
  dup[1] = isola_transfer(&alias);
  TH_CHECK_RC(isola_send(p, isola_list(dup, 2)), ISOLA_ETRANSFER);
  TH_CHECK(b == alias);
  TH_CHECK_RC(isola_send(p, isola_transfer(&none)), ISOLA_ETRANSFER);
  TH_CHECK_RC(isola_send(p, isola_transfer(NULL)), ISOLA_EINVAL);
  /* A closed port: the handle still owns its buffer. */
  TH_CHECK_RC(isola_send(closed, isola_transfer(&b)), ISOLA_ECLOSED);
  TH_CHECK(b == alias);
  isola_value with_bad[3] = {isola_transfer(&b), isola_int(1),
                             isola_strn("\xff", 1)};
  TH_CHECK_RC(isola_send(p, isola_list(with_bad, 3)), ISOLA_EINVAL);
  TH_CHECK(b == alias);
  TH_CHECK_RC(isola_send(ISOLA_PORT_NONE, isola_transfer(&b)), ISOLA_EINVAL);
  TH_CHECK(b == alias);
  TH_CHECK(isola_buffer_data(b)[7] == 7);

  /* The real send: the handle is emptied, the receiver gets the memory. */
  xfer_sent_ptr = b;
  isola_value items[2] = {isola_str("payload"), isola_transfer(&b)};
  TH_CHECK_OK(isola_send(p, isola_list(items, 2)));
  TH_CHECK(b == NULL);
  TH_CHECK_RC(isola_send(p, isola_transfer(&b)), ISOLA_ETRANSFER);

  /* A second one the handler leaves in the message. */
  isola_buffer *b2 = isola_buffer_new(64);
  TH_CHECK(b2);
  memset(isola_buffer_data(b2), 1, 64);
  TH_CHECK_OK(isola_send(p, isola_transfer(&b2)));
  TH_CHECK(b2 == NULL);
}

Test(value, transfer_moves_the_buffer_and_a_failed_send_consumes_nothing) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(xfer_entry, isola_null(), NULL));
  cr_assert((atomic_load(&xfer_stage)) == (2), "(atomic_load(&xfer_stage)) == (2)");
  (void)xfer_closed_port;
  th_vm_shutdown_ok();
}

static void queued_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(noop, NULL, &p));
  /* Queued, then dropped unhandled when the port closes: freed. */
  for (int i = 0; i < 10; i++) {
    isola_buffer *b = isola_buffer_new(4096);
    TH_CHECK(b);
    isola_value kv[2] = {isola_int(i), isola_transfer(&b)};
    TH_CHECK_OK(isola_send(p, isola_map(kv, 1)));
    TH_CHECK(b == NULL);
  }
  TH_CHECK_OK(isola_port_close(p));
}

Test(value, transferred_buffers_of_dropped_messages_are_freed) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(queued_entry, isola_null(), NULL));
  th_vm_shutdown_ok();
}

static void many_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(noop, NULL, &p));
  /* More buffers than the sender's inline handle array holds. */
  enum { N = 40 };
  isola_buffer *bufs[N];
  isola_value items[N];
  for (int i = 0; i < N; i++) {
    bufs[i] = isola_buffer_new((size_t)i);
    TH_CHECK(bufs[i]);
    items[i] = isola_transfer(&bufs[i]);
  }
  TH_CHECK_OK(isola_send(p, isola_list(items, N)));
  for (int i = 0; i < N; i++) TH_CHECK(bufs[i] == NULL);
  TH_CHECK_OK(isola_port_close(p));
  /* From a plain thread too (isola_send is any-thread). */
}

Test(value, a_message_with_many_buffers_moves_them_all) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(many_entry, isola_null(), NULL));
  th_vm_shutdown_ok();
}

/* Another isolate moves buffers to the root, from another thread. */
#define XT_COUNT 200
static int xt_received;

static void xt_handler(void *ctx, isola_port port, isola_value msg,
                       isola_port reply_to) {
  (void)ctx;
  (void)reply_to;
  isola_value seq, item;
  TH_CHECK_OK(isola_list_get(msg, 0, &seq));
  TH_CHECK_OK(isola_list_get(msg, 1, &item));
  TH_CHECK(th_int(seq) == xt_received);
  isola_buffer *b;
  TH_CHECK_OK(isola_value_take_buffer(item, &b));
  TH_CHECK(isola_buffer_size(b) == 256);
  for (size_t i = 0; i < 256; i++)
    TH_CHECK(isola_buffer_data(b)[i] == (uint8_t)(i + (size_t)xt_received));
  isola_buffer_free(b);
  if (++xt_received == XT_COUNT) TH_CHECK_OK(isola_port_close(port));
}

static void xt_sender(isola_value msg) {
  isola_port to;
  TH_CHECK_OK(isola_value_get_port(msg, &to));
  for (int n = 0; n < XT_COUNT; n++) {
    isola_buffer *b = isola_buffer_new(256);
    TH_CHECK(b);
    for (size_t i = 0; i < 256; i++)
      isola_buffer_data(b)[i] = (uint8_t)(i + (size_t)n);
    isola_value items[2] = {isola_int(n), isola_transfer(&b)};
    TH_CHECK_OK(isola_send(to, isola_list(items, 2)));
    TH_CHECK(b == NULL);
  }
}

static void xt_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(xt_handler, NULL, &p));
  TH_CHECK_OK(isola_spawn(xt_sender, isola_sendport(p), NULL, NULL));
}

Test(value, buffers_move_between_isolates_on_different_threads) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(xt_entry, isola_null(), NULL));
  cr_assert(xt_received == XT_COUNT, "received %d", xt_received);
  th_vm_shutdown_ok();
}
