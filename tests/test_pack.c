/* SPDX-License-Identifier: MIT */
/*
 * test_pack.c — isola_unpack and isola_pack (issue 17 item 6): shapes that
 * match, shapes that do not (each error names the position), malformed
 * formats; and the thread's error detail (item 8) for sends, spawns,
 * copies and wire decodes.
 */
#include "helpers.h"

TestSuite(pack, .timeout = TH_TEST_TIMEOUT_S);

static const char *detail(void) { return isola_error_detail(); }

#define ASSERT_DETAIL_HAS(text)                                                \
  cr_assert(strstr(detail(), (text)) != NULL, "detail \"%s\" lacks \"%s\"",    \
            detail(), (text))

Test(pack, unpack_reads_a_nested_shape) {
  isola_value inner[2] = {isola_int(10), isola_int(5)};
  isola_value outer[2] = {isola_bool(true), isola_list(inner, 2)};
  isola_value msg = isola_list(outer, 2);
  bool ok = false;
  int64_t lo = 0, n = 0;
  TH_ASSERT_OK(isola_unpack(msg, "[b [i i]]", &ok, &lo, &n));
  cr_assert(ok && lo == 10 && n == 5, "%s", "ok && lo == 10 && n == 5");
  /* Commas and spaces are free; NULL outputs check without storing. */
  TH_ASSERT_OK(isola_unpack(msg, "[b,[i,i]]", NULL, NULL, &n));
  TH_ASSERT_OK(isola_unpack(msg, "[_ [i *]]", &lo));
  TH_ASSERT_OK(isola_unpack(msg, "[b *]", &ok));
  isola_value whole;
  TH_ASSERT_OK(isola_unpack(msg, "v", &whole));
  cr_assert(isola_value_equal(whole, msg), "%s",
            "isola_value_equal(whole, msg)");
}

Test(pack, unpack_reads_every_kind) {
  const uint8_t raw[3] = {1, 2, 3};
  isola_value kv[4] = {isola_str("name"), isola_str("ada"), isola_str("age"),
                       isola_int(36)};
  isola_value items[10] = {isola_null(),        isola_bool(false),
                           isola_int(-7),       isola_double(2.5),
                           isola_str("hi"),     isola_strn("abc", 2),
                           isola_bytes(raw, 3), isola_sendport(0x1234),
                           isola_cap(99),       isola_map(kv, 2)};
  bool b = true;
  int64_t i = 0, age = 0;
  double d = 0;
  const char *s = NULL, *s2 = NULL, *name = NULL;
  size_t s2len = 0, blen = 0;
  const uint8_t *bytes = NULL;
  isola_port p = 0;
  isola_capability c = 0;
  TH_ASSERT_OK(isola_unpack(
      isola_list(items, 10), "[n b i d s S y p c {age:i name:s}]", &b, &i, &d,
      &s, &s2, &s2len, &bytes, &blen, &p, &c, &age, &name));
  cr_assert(!b && i == -7 && d == 2.5 && strcmp(s, "hi") == 0, "%s",
            "!b && i == -7 && d == 2.5 && strcmp(s, \"hi\") == 0");
  cr_assert(s2len == 2 && memcmp(s2, "ab", 2) == 0, "%s",
            "s2len == 2 && memcmp(s2, \"ab\", 2) == 0");
  cr_assert(blen == 3 && bytes == raw && p == 0x1234 && c == 99, "%s",
            "blen == 3 && bytes == raw && p == 0x1234 && c == 99");
  cr_assert(age == 36 && strcmp(name, "ada") == 0, "%s",
            "age == 36 && strcmp(name, \"ada\") == 0");
}

Test(pack, optional_items_accept_null) {
  isola_value items[2] = {isola_null(), isola_int(3)};
  int64_t a = -1, b = -1;
  const char *s = "untouched";
  TH_ASSERT_OK(isola_unpack(isola_list(items, 2), "[?i ?i]", &a, &b));
  cr_assert(a == -1 && b == 3, "%s", "a == -1 && b == 3");
  /* A skipped optional list still consumes its arguments. */
  TH_ASSERT_OK(isola_unpack(isola_list(items, 2), "[?[s i] i]", &s, &a, &b));
  cr_assert(strcmp(s, "untouched") == 0 && a == -1 && b == 3, "%s",
            "strcmp(s, \"untouched\") == 0 && a == -1 && b == 3");
  TH_ASSERT_RC(isola_unpack(isola_list(items, 2), "[?{k:s} ?s]", &s, &s),
               ISOLA_ETYPE); /* ?s against an int */
  ASSERT_DETAIL_HAS("at value[1]: expected a string, got an int");
}

Test(pack, wrong_shapes_name_the_position) {
  isola_value inner[2] = {isola_str("ten"), isola_int(5)};
  isola_value outer[2] = {isola_bool(true), isola_list(inner, 2)};
  isola_value msg = isola_list(outer, 2);
  bool ok;
  int64_t lo, n;
  TH_ASSERT_RC(isola_unpack(msg, "[b [i i]]", &ok, &lo, &n), ISOLA_ETYPE);
  ASSERT_DETAIL_HAS("at value[1][0]: expected an int, got a string");
  TH_ASSERT_RC(isola_unpack(msg, "[b [s i] i]", &ok, NULL, &n, &n),
               ISOLA_ERANGE);
  TH_ASSERT_RC(isola_unpack(msg, "[b [s]]", &ok, NULL), ISOLA_ERANGE);
  ASSERT_DETAIL_HAS("at value[1]: expected a list of 1 items, got 2");
  TH_ASSERT_RC(isola_unpack(msg, "[b [s i i]]", &ok, NULL, &n, &n),
               ISOLA_ERANGE);
  ASSERT_DETAIL_HAS("at value[1]: expected a list of at least 3 items");
  TH_ASSERT_RC(isola_unpack(isola_int(1), "[i]", &n), ISOLA_ETYPE);
  ASSERT_DETAIL_HAS("at value: expected a list, got an int");
  TH_ASSERT_RC(isola_unpack(msg, "{a:i}", &n), ISOLA_ETYPE);
  ASSERT_DETAIL_HAS("expected a map, got a list");
  isola_value kv[2] = {isola_str("id"), isola_double(1.0)};
  TH_ASSERT_RC(isola_unpack(isola_map(kv, 1), "{id:i}", &n), ISOLA_ETYPE);
  ASSERT_DETAIL_HAS("at value.id: expected an int, got a double");
  TH_ASSERT_RC(isola_unpack(isola_map(kv, 1), "{id:d name:s}", NULL, NULL),
               ISOLA_ENOKEY);
  ASSERT_DETAIL_HAS("no key \"name\"");
  /* Outputs before the mismatch are stored, later ones untouched. */
  ok = false;
  n = 77;
  TH_ASSERT_RC(isola_unpack(msg, "[b [i i]]", &ok, &lo, &n), ISOLA_ETYPE);
  cr_assert(ok && n == 77, "%s", "ok && n == 77");
  /* Every scalar kind refuses the others. */
  const char *fmts = "nbidspc";
  isola_value vals[7] = {isola_null(),    isola_bool(1),  isola_int(1),
                         isola_double(1), isola_str("x"), isola_sendport(1),
                         isola_cap(1)};
  for (int f = 0; f < 7; f++)
    for (int v = 0; v < 7; v++) {
      char fmt[2] = {fmts[f], 0};
      int64_t sink[2];
      int rc = isola_unpack(vals[v], fmt, (void *)sink);
      cr_assert((rc) == (f == v ? ISOLA_OK : ISOLA_ETYPE),
                "format %s, value %d", fmt, v);
    }
}

Test(pack, malformed_formats_are_einval) {
  int64_t n;
  TH_ASSERT_RC(isola_unpack(isola_int(1), NULL), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_unpack(isola_int(1), ""), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_unpack(isola_int(1), "x"), ISOLA_EINVAL);
  ASSERT_DETAIL_HAS("an unknown item at offset 0");
  TH_ASSERT_RC(isola_unpack(isola_int(1), "i i", &n, &n), ISOLA_EINVAL);
  isola_value one = isola_int(1);
  TH_ASSERT_RC(isola_unpack(isola_list(&one, 1), "[i", &n), ISOLA_EINVAL);
  ASSERT_DETAIL_HAS("']' missing");
  TH_ASSERT_RC(isola_unpack(isola_list(&one, 1), "[* i]", &n), ISOLA_EINVAL);
  isola_value kv[2] = {isola_str("a"), isola_int(1)};
  TH_ASSERT_RC(isola_unpack(isola_map(kv, 1), "{a i}", &n), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_unpack(isola_map(kv, 1), "{:i}", &n), ISOLA_EINVAL);
  isola_value v;
  TH_ASSERT_RC(isola_pack(&v, "[i"), ISOLA_EINVAL);
  cr_assert((v.kind) == (ISOLA_NULL), "%s", "v.kind == ISOLA_NULL");
  TH_ASSERT_RC(isola_pack(&v, "q"), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_pack(NULL, "i", 1), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_pack(&v, NULL), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_pack(&v, "s", (const char *)NULL), ISOLA_EINVAL);
}

Test(pack, pack_builds_what_unpack_reads) {
  const uint8_t raw[2] = {9, 8};
  isola_value extra = isola_str("extra");
  isola_value v;
  TH_ASSERT_RC(isola_pack(&v, "{op:s [i]}", "sum", 1), ISOLA_EINVAL);
  ASSERT_DETAIL_HAS("a map key expected");
  TH_ASSERT_OK(isola_pack(&v, "{op:s n:l small:i ok:b x:d rest:[p c n y S v]}",
                          "sum", (int64_t)1 << 40, 7, 1, 0.5, (isola_port)0x55,
                          (isola_capability)3, raw, (size_t)2, "abc", (size_t)2,
                          extra));
  const char *op, *ab, *ex;
  int64_t n, small;
  bool ok;
  double x;
  isola_port p;
  isola_capability c;
  const uint8_t *bytes;
  size_t blen, ablen;
  TH_ASSERT_OK(isola_unpack(v, "{op:s n:i small:i ok:b x:d rest:[p c n y S s]}",
                            &op, &n, &small, &ok, &x, &p, &c, &bytes, &blen,
                            &ab, &ablen, &ex));
  cr_assert(strcmp(op, "sum") == 0 && n == (int64_t)1 << 40 && small == 7, "%s",
            "strcmp(op, \"sum\") == 0 && n == (int64_t)1 << 40 && small == 7");
  cr_assert(ok && x == 0.5 && p == 0x55 && c == 3, "%s",
            "ok && x == 0.5 && p == 0x55 && c == 3");
  cr_assert(blen == 2 && bytes[0] == 9 && bytes != raw, "%s",
            "blen == 2 && bytes[0] == 9 && bytes != raw"); /* a copy */
  cr_assert(
      ablen == 2 && memcmp(ab, "ab", 2) == 0 && strcmp(ex, "extra") == 0, "%s",
      "ablen == 2 && memcmp(ab, \"ab\", 2) == 0 && strcmp(ex, \"extra\") == 0");
  isola_value_free(&v);
  /* Large lists grow their arrays. */
  TH_ASSERT_OK(isola_pack(&v, "[iiiiiiiiii iiiiiiiiii [i]]", 0, 1, 2, 3, 4, 5,
                          6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
                          20));
  cr_assert((v.len) == (21), "%s", "v.len == 21");
  int64_t last;
  TH_ASSERT_OK(isola_unpack(v, "[_ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ i [i]]",
                            &n, &last));
  cr_assert(n == 19 && last == 20, "%s", "n == 19 && last == 20");
  isola_value_free(&v);
}

Test(pack, pack_refuses_invalid_strings_with_a_detail) {
  const char bad[] = {'a', (char)0xf8, 0};
  isola_value v;
  TH_ASSERT_RC(isola_pack(&v, "[i [s]]", 1, bad), ISOLA_EINVAL);
  ASSERT_DETAIL_HAS("value[1][0]");
  ASSERT_DETAIL_HAS("byte 1 (0xf8)");
  cr_assert((v.kind) == (ISOLA_NULL), "%s", "v.kind == ISOLA_NULL");
}

/* ---- the error detail (item 8) ------------------------------------------ */

static void sink(void *ctx, isola_port port, isola_value msg,
                 isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
}

static void entry_noop(isola_value m) { (void)m; }

Test(pack, send_and_spawn_errors_say_why) {
  th_vm_init(NULL);
  isola_port p;
  TH_ASSERT_OK(
      isola_spawn_port(NULL, isola_null(), sink, NULL, NULL, NULL, &p));
  const char trunc[] = {'o', 'k', (char)0xe2, (char)0x82, 0};
  isola_value inner[2] = {isola_int(1), isola_str(trunc)};
  isola_value kv[2] = {isola_str("k"), isola_list(inner, 2)};
  isola_value top[3] = {isola_null(), isola_int(2), isola_map(kv, 1)};
  TH_ASSERT_RC(isola_send(p, isola_list(top, 3)), ISOLA_EINVAL);
  ASSERT_DETAIL_HAS("value[2]{pair 0}.value[1]: a string of 4 bytes is not "
                    "valid UTF-8: byte 2 (0xe2)");
  ASSERT_DETAIL_HAS("cut short");
  /* A cycle with a bad string in it is walked once. */
  isola_value cyc[2];
  cyc[0] = isola_list(cyc, 2);
  cyc[1] = isola_strn("\xc1\x81", 2);
  TH_ASSERT_RC(isola_send(p, isola_list(cyc, 2)), ISOLA_EINVAL);
  ASSERT_DETAIL_HAS("value[1]: a string of 2 bytes is not valid UTF-8: byte 0 "
                    "(0xc1) is the lead byte of an overlong form");
  /* An unknown kind and a NULL pointer. */
  isola_value odd = isola_int(0);
  odd.kind = 77;
  TH_ASSERT_RC(isola_send(p, isola_list(&odd, 1)), ISOLA_EINVAL);
  ASSERT_DETAIL_HAS("value[0]: an unknown kind 77");
  TH_ASSERT_RC(isola_send(p, isola_bytes(NULL, 3)), ISOLA_EINVAL);
  ASSERT_DETAIL_HAS("NULL pointer");
  /* Transfers. */
  isola_buffer *buf = isola_buffer_new(4);
  isola_value twice[2] = {isola_transfer(&buf), isola_transfer(&buf)};
  TH_ASSERT_RC(isola_send(p, isola_list(twice, 2)), ISOLA_ETRANSFER);
  ASSERT_DETAIL_HAS("value[1]: a buffer that appears a second time");
  isola_buffer *empty = NULL;
  TH_ASSERT_RC(isola_send(p, isola_transfer(&empty)), ISOLA_ETRANSFER);
  ASSERT_DETAIL_HAS("empty buffer handle");
  isola_buffer_free(buf);
  /* Ports. */
  TH_ASSERT_RC(isola_send(ISOLA_PORT_NONE, isola_null()), ISOLA_EINVAL);
  ASSERT_DETAIL_HAS("ISOLA_PORT_NONE");
  isola_receiver *r;
  TH_ASSERT_OK(isola_receiver_new(NULL, &r));
  isola_port gone = isola_receiver_port(r);
  isola_receiver_close(r);
  char hex[32];
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)gone);
  TH_ASSERT_RC(isola_send(gone, isola_null()), ISOLA_ECLOSED);
  ASSERT_DETAIL_HAS(hex);
  /* Spawns. */
  TH_ASSERT_RC(isola_spawn(NULL, isola_null(), NULL, NULL), ISOLA_EINVAL);
  ASSERT_DETAIL_HAS("entry is NULL");
  TH_ASSERT_RC(isola_spawn(entry_noop, isola_strn("\xff", 1), NULL, NULL),
               ISOLA_EINVAL);
  ASSERT_DETAIL_HAS("value: a string of 1 bytes is not valid UTF-8");
  /* A copy says the same. */
  isola_value out;
  TH_ASSERT_RC(isola_value_copy(isola_strn("a\xed\xbf\xbf", 4), &out),
               ISOLA_EINVAL);
  ASSERT_DETAIL_HAS("surrogate");
  th_vm_shutdown_ok();
  TH_ASSERT_RC(isola_send(p, isola_null()), ISOLA_ENOVM);
  ASSERT_DETAIL_HAS("isola_send: the VM is not running");
  TH_ASSERT_RC(isola_spawn(entry_noop, isola_null(), NULL, NULL), ISOLA_ENOVM);
  ASSERT_DETAIL_HAS("isola_spawn: the VM is not running");
}

Test(pack, spawn_past_the_limit_says_so) {
  isola_config cfg;
  isola_config_init(&cfg);
  cfg.max_isolates = 1;
  th_vm_init(&cfg);
  isola_isolate h;
  TH_ASSERT_OK(isola_spawn_port(NULL, isola_null(), sink, NULL, NULL, &h,
                                &(isola_port){0}));
  TH_ASSERT_RC(isola_spawn(entry_noop, isola_null(), NULL, NULL), ISOLA_ELIMIT);
  ASSERT_DETAIL_HAS("max_isolates");
  TH_ASSERT_OK(isola_kill(&h, ISOLA_IMMEDIATE));
  th_vm_shutdown_ok();
}

Test(pack, decode_errors_say_where) {
  isola_value v;
  const uint8_t text[] = {0x63, 'a', 0xff, 'b'}; /* text(3) "a\xffb" */
  TH_ASSERT_RC(isola_wire_decode(text, sizeof text, NULL, &v), ISOLA_EUTF8);
  ASSERT_DETAIL_HAS("ISOLA_EUTF8");
  ASSERT_DETAIL_HAS("of 4");
  const uint8_t cut[] = {0x82, 0x01};
  TH_ASSERT_RC(isola_wire_decode(cut, sizeof cut, NULL, &v), ISOLA_ETRUNCATED);
  ASSERT_DETAIL_HAS("stopped at byte 1 of 2");
}

/* ---- isola_arg_int ------------------------------------------------------ */

Test(pack, arg_int_reads_integers_and_defaults) {
  isola_value a[4] = {isola_str("12"), isola_str("-3"),
                      isola_str("9223372036854775807"),
                      isola_str("-9223372036854775808")};
  isola_value args = isola_list(a, 4);
  int64_t n = 0;
  TH_ASSERT_OK(isola_arg_int(args, 0, 7, 1, 100, &n));
  cr_assert(n == 12, "%lld", (long long)n);
  TH_ASSERT_OK(isola_arg_int(args, 1, 7, -5, 5, &n));
  cr_assert(n == -3, "%lld", (long long)n);
  TH_ASSERT_OK(isola_arg_int(args, 2, 7, INT64_MIN, INT64_MAX, &n));
  cr_assert(n == INT64_MAX, "%lld", (long long)n);
  TH_ASSERT_OK(isola_arg_int(args, 3, 7, INT64_MIN, INT64_MAX, &n));
  cr_assert(n == INT64_MIN, "%lld", (long long)n);
  /* Absent: the default, whatever the range. */
  TH_ASSERT_OK(isola_arg_int(args, 4, 700, 1, 100, &n));
  cr_assert(n == 700, "%lld", (long long)n);
  TH_ASSERT_OK(isola_arg_int(isola_list(a, 0), 0, 5, 1, 9, &n));
  cr_assert(n == 5, "%lld", (long long)n);
  TH_ASSERT_OK(isola_arg_int(isola_null(), 0, 6, 1, 9, &n));
  cr_assert(n == 6, "%lld", (long long)n);
  isola_value plus = isola_str("+8");
  TH_ASSERT_OK(isola_arg_int(isola_list(&plus, 1), 0, 0, 0, 9, &n));
  cr_assert(n == 8, "%lld", (long long)n);
}

Test(pack, arg_int_refuses_what_is_not_an_integer_in_range) {
  isola_value a[9] = {isola_str("7x"),   isola_str(""),
                      isola_str("-"),    isola_str(" 1"),
                      isola_str("0"),    isola_str("9223372036854775808"),
                      isola_str("-9223372036854775809"),
                      isola_int(3),      isola_str("99999999999999999999999")};
  isola_value args = isola_list(a, 9);
  int64_t n = 42;
  TH_ASSERT_RC(isola_arg_int(args, 0, 1, 1, 9, &n), ISOLA_EINVAL);
  ASSERT_DETAIL_HAS("argument 1 (\"7x\"): not a decimal integer");
  TH_ASSERT_RC(isola_arg_int(args, 1, 1, 1, 9, &n), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_arg_int(args, 2, 1, 1, 9, &n), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_arg_int(args, 3, 1, 1, 9, &n), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_arg_int(args, 4, 1, 1, 9, &n), ISOLA_ERANGE);
  ASSERT_DETAIL_HAS("argument 5 (\"0\"): not in 1..9");
  TH_ASSERT_RC(isola_arg_int(args, 5, 1, INT64_MIN, INT64_MAX, &n),
               ISOLA_ERANGE);
  TH_ASSERT_RC(isola_arg_int(args, 6, 1, INT64_MIN, INT64_MAX, &n),
               ISOLA_ERANGE);
  TH_ASSERT_RC(isola_arg_int(args, 7, 1, 1, 9, &n), ISOLA_ETYPE);
  ASSERT_DETAIL_HAS("argument 8: not a string");
  TH_ASSERT_RC(isola_arg_int(args, 8, 1, INT64_MIN, INT64_MAX, &n),
               ISOLA_ERANGE);
  TH_ASSERT_RC(isola_arg_int(isola_int(1), 0, 1, 1, 9, &n), ISOLA_ETYPE);
  TH_ASSERT_RC(isola_arg_int(args, 4, 1, 9, 1, &n), ISOLA_EINVAL);
  TH_ASSERT_RC(isola_arg_int(args, 4, 1, 1, 9, NULL), ISOLA_EINVAL);
  cr_assert(n == 42, "%s", "*out is untouched on error");
}
