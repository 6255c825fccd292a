/* SPDX-License-Identifier: MIT */
/*
 * gen_corpus.c — writes the seed corpus of fuzz_wire into a directory: one
 * file per value, covering every kind, sharing, cycles and the limits, plus
 * a few hand-made malformed inputs.  Run by hand when the format changes
 * (after sh fuzz/run.sh has configured build/fuzz):
 *   cmake --build build/fuzz --target fuzz_gen_corpus
 *   build/fuzz/fuzz/fuzz_gen_corpus fuzz/corpus
 */
#include <isola.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *dir;
static int count;

static void write_file(const char *name, const uint8_t *p, size_t n) {
  char path[512];
  snprintf(path, sizeof path, "%s/%02d-%s", dir, count++, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
    perror(path);
    exit(1);
  }
}

static void seed(const char *name, isola_value v) {
  uint8_t *p;
  size_t n;
  int rc = isola_wire_encode(v, &p, &n);
  if (rc != ISOLA_OK) {
    fprintf(stderr, "%s: %s\n", name, isola_strerror(rc));
    exit(1);
  }
  write_file(name, p, n);
  free(p);
}

#define RAW(name, ...)                                                         \
  write_file(name, (const uint8_t[]){__VA_ARGS__},                             \
             sizeof((const uint8_t[]){__VA_ARGS__}))

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  dir = argv[1];
  seed("null", isola_null());
  seed("true", isola_bool(true));
  seed("int-small", isola_int(7));
  seed("int-max", isola_int(INT64_MAX));
  seed("int-min", isola_int(INT64_MIN));
  seed("double", isola_double(3.25));
  seed("nan", isola_double(NAN));
  seed("string", isola_str("h\xc3\xa9llo \xf0\x9d\x84\x9e"));
  seed("bytes", isola_bytes("\x00\x01\xff", 3));
  seed("port", isola_sendport(0x0123456789abcdefull));
  seed("capability", isola_cap(0xfedcba9876543210ull));
  isola_value items[4] = {isola_int(1), isola_str("two"), isola_null(),
                          isola_double(-0.0)};
  seed("list", isola_list(items, 4));
  isola_value kv[6] = {isola_str("a"), isola_int(1), isola_int(2),
                       isola_list(items, 4), isola_cap(3), isola_map(NULL, 0)};
  seed("map", isola_map(kv, 3));
  isola_value shared[3] = {isola_list(items, 4), isola_list(items, 4),
                           isola_map(kv, 3)};
  seed("shared", isola_list(shared, 3));
  isola_value self[2];
  self[0] = isola_str("self");
  self[1] = isola_list(self, 2);
  seed("cycle-list", isola_list(self, 2));
  isola_value mself[2];
  mself[0] = isola_map(mself, 1);
  mself[1] = isola_map(mself, 1);
  seed("cycle-map-key", isola_map(mself, 1));
  isola_value deep[40];
  for (int i = 0; i < 40; i++)
    deep[i] = i == 39 ? isola_int(0) : isola_list(&deep[i + 1], 1);
  seed("deep", isola_list(deep, 1));
  isola_buffer *b = isola_buffer_new(16);
  memset(isola_buffer_data(b), 0xab, 16);
  seed("buffer", isola_transfer(&b));
  isola_buffer_free(b);
  /* Other valid forms and some invalid ones. */
  RAW("half", 0xf9, 0x3c, 0x00);
  RAW("single", 0xfa, 0x47, 0xc3, 0x50, 0x00);
  RAW("long-int", 0x1b, 0, 0, 0, 0, 0, 0, 0, 5);
  RAW("shared-string", 0x82, 0xd8, 0x1c, 0x62, 'h', 'i', 0xd8, 0x1d, 0x00);
  RAW("dangling", 0x81, 0xd8, 0x1d, 0x00);
  RAW("bad-utf8", 0x62, 0xc3, 0x28);
  RAW("indefinite", 0x9f, 0x01, 0xff);
  RAW("truncated", 0x83, 0x01);
  RAW("unknown-tag", 0xc1, 0x01);
  /* A shared list holding a string, met three times: costs once. */
  RAW("shared-list-of-string", 0x83, 0xd8, 0x1c, 0x81, 0x62, 'h', 'i', 0xd8,
      0x1d, 0x00, 0xd8, 0x1d, 0x00);
  return 0;
}
