/* SPDX-License-Identifier: MIT */
/*
 * pack.c — reading and building values by a format string (isola_unpack,
 * isola_pack): one call checks a message's whole shape and names the first
 * position that does not match.  The format language is in isola.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detail.h"
#include "isola.h"

/* ---- shared ------------------------------------------------------------ */

typedef struct cursor {
  const char *fmt; /* the whole format, for messages */
  const char *p;   /* next format character */
  va_list ap;
  char path[192];
  size_t path_len;
  int rc; /* the first error */
} cursor;

static void skip_space(cursor *c) {
  while (*c->p == ' ' || *c->p == ',' || *c->p == '\t' || *c->p == '\n')
    c->p++;
}

static const char *kind_name(uint32_t k) {
  static const char *const names[] = {"null", "a bool",  "an int",
                                      "a double", "a string", "bytes",
                                      "a list", "a port", "a map",
                                      "a capability", "a buffer"};
  return k < sizeof names / sizeof *names ? names[k] : "a malformed value";
}

static int bad_format(cursor *c, const char *what) {
  if (c->rc == ISOLA_OK) {
    c->rc = ISOLA_EINVAL;
    isola__detail_set("format \"%s\": %s at offset %zu", c->fmt, what,
                      (size_t)(c->p - c->fmt));
  }
  return c->rc;
}

static void path_push(cursor *c, const char *fmt, ...) {
  if (c->path_len >= sizeof c->path - 1) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->path + c->path_len, sizeof c->path - c->path_len, fmt, ap);
  va_end(ap);
}

/* A map key in the format: [A-Za-z0-9_.-]+, up to ':'. */
static int read_key(cursor *c, const char **key, size_t *len) {
  const char *k = c->p;
  while ((*c->p >= 'a' && *c->p <= 'z') || (*c->p >= 'A' && *c->p <= 'Z') ||
         (*c->p >= '0' && *c->p <= '9') || *c->p == '_' || *c->p == '-' ||
         *c->p == '.')
    c->p++;
  if (c->p == k) return bad_format(c, "a map key expected");
  *key = k;
  *len = (size_t)(c->p - k);
  skip_space(c);
  if (*c->p != ':') return bad_format(c, "':' expected after a map key");
  c->p++;
  return ISOLA_OK;
}

/* ---- unpack ------------------------------------------------------------ */

static int mismatch(cursor *c, const char *expected, isola_value v) {
  if (c->rc == ISOLA_OK) {
    c->rc = ISOLA_ETYPE;
    isola__detail_set("at %s: expected %s, got %s (format \"%s\", offset "
                      "%zu)",
                      c->path, expected, kind_name(v.kind), c->fmt,
                      (size_t)(c->p - 1 - c->fmt));
  }
  return c->rc;
}

/* Reads one format item against v (write: store the outputs; false:
 * consume the arguments only, for a null accepted by '?'). */
static int unpack_item(cursor *c, isola_value v, bool write);

static int unpack_list(cursor *c, isola_value v, bool write) {
  if (write && v.kind != ISOLA_LIST) return mismatch(c, "a list", v);
  size_t saved = c->path_len;
  size_t i = 0;
  bool rest = false;
  for (;;) {
    skip_space(c);
    if (*c->p == ']') {
      c->p++;
      break;
    }
    if (*c->p == '*') {
      c->p++;
      skip_space(c);
      if (*c->p != ']') return bad_format(c, "']' expected after '*'");
      c->p++;
      rest = true;
      break;
    }
    if (!*c->p) return bad_format(c, "']' missing");
    isola_value item = isola_null();
    if (write) {
      if (i >= v.len) {
        c->rc = ISOLA_ERANGE;
        isola__detail_set("at %s: expected a list of at least %zu items, got "
                          "%u (format \"%s\", offset %zu)",
                          c->path, i + 1, v.len, c->fmt,
                          (size_t)(c->p - c->fmt));
        return c->rc;
      }
      item = v.as.items[i];
      path_push(c, "[%zu]", i);
      c->path_len = strlen(c->path);
    }
    int rc = unpack_item(c, item, write);
    c->path_len = saved;
    c->path[saved] = '\0';
    if (rc != ISOLA_OK) return rc;
    i++;
  }
  if (write && !rest && i != v.len) {
    c->rc = ISOLA_ERANGE;
    isola__detail_set("at %s: expected a list of %zu items, got %u (format "
                      "\"%s\")",
                      c->path, i, v.len, c->fmt);
    return c->rc;
  }
  return ISOLA_OK;
}

static int unpack_map(cursor *c, isola_value v, bool write) {
  if (write && v.kind != ISOLA_MAP) return mismatch(c, "a map", v);
  size_t saved = c->path_len;
  for (;;) {
    skip_space(c);
    if (*c->p == '}') {
      c->p++;
      return ISOLA_OK;
    }
    if (!*c->p) return bad_format(c, "'}' missing");
    const char *key;
    size_t klen;
    if (read_key(c, &key, &klen) != ISOLA_OK) return c->rc;
    isola_value item = isola_null();
    if (write) {
      if (isola_map_find(v, isola_strn(key, klen), &item) != ISOLA_OK) {
        c->rc = ISOLA_ENOKEY;
        isola__detail_set("at %s: the map has no key \"%.*s\" (format "
                          "\"%s\")",
                          c->path, (int)klen, key, c->fmt);
        return c->rc;
      }
      path_push(c, ".%.*s", (int)klen, key);
      c->path_len = strlen(c->path);
    }
    int rc = unpack_item(c, item, write);
    c->path_len = saved;
    c->path[saved] = '\0';
    if (rc != ISOLA_OK) return rc;
  }
}

static int unpack_item(cursor *c, isola_value v, bool write) {
  skip_space(c);
  char f = *c->p;
  if (!f) return bad_format(c, "an item expected");
  c->p++;
  switch (f) {
  case '?':
    /* null is accepted: the item's outputs are left as they are. */
    if (write && v.kind == ISOLA_NULL) return unpack_item(c, v, false);
    return unpack_item(c, v, write);
  case '_':
    return ISOLA_OK;
  case 'n':
    if (write && v.kind != ISOLA_NULL) return mismatch(c, "null", v);
    return ISOLA_OK;
  case 'b': {
    bool *o = va_arg(c->ap, bool *);
    if (!write) return ISOLA_OK;
    if (v.kind != ISOLA_BOOL) return mismatch(c, "a bool", v);
    if (o) *o = v.as.b;
    return ISOLA_OK;
  }
  case 'i': {
    int64_t *o = va_arg(c->ap, int64_t *);
    if (!write) return ISOLA_OK;
    if (v.kind != ISOLA_INT) return mismatch(c, "an int", v);
    if (o) *o = v.as.i;
    return ISOLA_OK;
  }
  case 'd': {
    double *o = va_arg(c->ap, double *);
    if (!write) return ISOLA_OK;
    if (v.kind != ISOLA_DOUBLE) return mismatch(c, "a double", v);
    if (o) *o = v.as.d;
    return ISOLA_OK;
  }
  case 's': {
    const char **o = va_arg(c->ap, const char **);
    if (!write) return ISOLA_OK;
    if (v.kind != ISOLA_STRING) return mismatch(c, "a string", v);
    if (o) *o = v.as.str;
    return ISOLA_OK;
  }
  case 'S': {
    const char **o = va_arg(c->ap, const char **);
    size_t *len = va_arg(c->ap, size_t *);
    if (!write) return ISOLA_OK;
    if (v.kind != ISOLA_STRING) return mismatch(c, "a string", v);
    if (o) *o = v.as.str;
    if (len) *len = v.len;
    return ISOLA_OK;
  }
  case 'y': {
    const uint8_t **o = va_arg(c->ap, const uint8_t **);
    size_t *len = va_arg(c->ap, size_t *);
    if (!write) return ISOLA_OK;
    if (v.kind != ISOLA_BYTES) return mismatch(c, "bytes", v);
    if (o) *o = v.as.bytes;
    if (len) *len = v.len;
    return ISOLA_OK;
  }
  case 'p': {
    isola_port *o = va_arg(c->ap, isola_port *);
    if (!write) return ISOLA_OK;
    if (v.kind != ISOLA_PORT) return mismatch(c, "a port", v);
    if (o) *o = v.as.port;
    return ISOLA_OK;
  }
  case 'c': {
    isola_capability *o = va_arg(c->ap, isola_capability *);
    if (!write) return ISOLA_OK;
    if (v.kind != ISOLA_CAPABILITY) return mismatch(c, "a capability", v);
    if (o) *o = v.as.cap;
    return ISOLA_OK;
  }
  case 'v': {
    isola_value *o = va_arg(c->ap, isola_value *);
    if (write && o) *o = v;
    return ISOLA_OK;
  }
  case '[':
    return unpack_list(c, v, write);
  case '{':
    return unpack_map(c, v, write);
  default:
    c->p--;
    return bad_format(c, "an unknown item");
  }
}

int isola_vunpack(isola_value v, const char *fmt, va_list ap) {
  if (!fmt) {
    isola__detail_set("isola_unpack: the format is NULL");
    return ISOLA_EINVAL;
  }
  cursor c;
  c.fmt = c.p = fmt;
  va_copy(c.ap, ap);
  strcpy(c.path, "value");
  c.path_len = strlen(c.path);
  c.rc = ISOLA_OK;
  int rc = unpack_item(&c, v, true);
  if (rc == ISOLA_OK) {
    skip_space(&c);
    if (*c.p) rc = bad_format(&c, "more than one item at the top");
  }
  va_end(c.ap);
  return rc;
}

int isola_unpack(isola_value v, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = isola_vunpack(v, fmt, ap);
  va_end(ap);
  return rc;
}

/* ---- pack -------------------------------------------------------------- */

/* Every items array a pack allocates, freed once the copy is made. */
typedef struct arena {
  isola_value **arrays;
  size_t n, cap;
} arena;

static isola_value *arena_grow(arena *a, isola_value *old, size_t count) {
  isola_value *q = realloc(old, count * sizeof *q);
  if (!q) return NULL;
  if (old) {
    for (size_t i = 0; i < a->n; i++)
      if (a->arrays[i] == old) a->arrays[i] = q;
    return q;
  }
  if (a->n == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 8;
    isola_value **r = realloc(a->arrays, cap * sizeof *r);
    if (!r) {
      free(q);
      return NULL;
    }
    a->arrays = r;
    a->cap = cap;
  }
  a->arrays[a->n++] = q;
  return q;
}

static int pack_item(cursor *c, arena *a, isola_value *out);

/* Items of a list ("]") or a map ("}") into a new array. */
static int pack_seq(cursor *c, arena *a, bool map, isola_value *out) {
  isola_value *items = NULL;
  size_t n = 0, cap = 0;
  char end = map ? '}' : ']';
  for (;;) {
    skip_space(c);
    if (*c->p == end) {
      c->p++;
      break;
    }
    if (!*c->p) return bad_format(c, map ? "'}' missing" : "']' missing");
    if (n + 2 > cap) {
      cap = cap ? cap * 2 : 8;
      isola_value *q = arena_grow(a, items, cap);
      if (!q) return c->rc = ISOLA_ENOMEM;
      items = q;
    }
    if (map) {
      const char *key;
      size_t klen;
      if (read_key(c, &key, &klen) != ISOLA_OK) return c->rc;
      items[n++] = isola_strn(key, klen);
    }
    int rc = pack_item(c, a, &items[n]);
    if (rc != ISOLA_OK) return rc;
    n++;
  }
  *out = map ? isola_map(items, n / 2) : isola_list(items, n);
  return ISOLA_OK;
}

static int pack_item(cursor *c, arena *a, isola_value *out) {
  skip_space(c);
  char f = *c->p;
  if (!f) return bad_format(c, "an item expected");
  c->p++;
  switch (f) {
  case 'n':
    *out = isola_null();
    return ISOLA_OK;
  case 'b':
    *out = isola_bool(va_arg(c->ap, int) != 0);
    return ISOLA_OK;
  case 'i':
    *out = isola_int(va_arg(c->ap, int));
    return ISOLA_OK;
  case 'l':
    *out = isola_int(va_arg(c->ap, int64_t));
    return ISOLA_OK;
  case 'd':
    *out = isola_double(va_arg(c->ap, double));
    return ISOLA_OK;
  case 's': {
    const char *s = va_arg(c->ap, const char *);
    if (!s) {
      c->p--;
      return bad_format(c, "a NULL string argument for 's'");
    }
    *out = isola_str(s);
    return ISOLA_OK;
  }
  case 'S': {
    const char *s = va_arg(c->ap, const char *);
    size_t len = va_arg(c->ap, size_t);
    *out = isola_strn(s, len);
    return ISOLA_OK;
  }
  case 'y': {
    const void *s = va_arg(c->ap, const void *);
    size_t len = va_arg(c->ap, size_t);
    *out = isola_bytes(s, len);
    return ISOLA_OK;
  }
  case 'p':
    *out = isola_sendport(va_arg(c->ap, isola_port));
    return ISOLA_OK;
  case 'c':
    *out = isola_cap(va_arg(c->ap, isola_capability));
    return ISOLA_OK;
  case 'v':
    *out = va_arg(c->ap, isola_value);
    return ISOLA_OK;
  case '[':
    return pack_seq(c, a, false, out);
  case '{':
    return pack_seq(c, a, true, out);
  default:
    c->p--;
    return bad_format(c, "an unknown item");
  }
}

int isola_vpack(isola_value *out, const char *fmt, va_list ap) {
  if (out) *out = isola_null();
  if (!out || !fmt) {
    isola__detail_set("isola_pack: %s is NULL", out ? "the format" : "out");
    return ISOLA_EINVAL;
  }
  cursor c;
  c.fmt = c.p = fmt;
  va_copy(c.ap, ap);
  c.path[0] = '\0';
  c.path_len = 0;
  c.rc = ISOLA_OK;
  arena a = {0};
  isola_value v;
  int rc = pack_item(&c, &a, &v);
  if (rc == ISOLA_OK) {
    skip_space(&c);
    if (*c.p) rc = bad_format(&c, "more than one item at the top");
  }
  va_end(c.ap);
  /* The copy checks what the arguments hold (UTF-8, pointers) and sets
   * the detail for what it refuses. */
  if (rc == ISOLA_OK) rc = isola_value_copy(v, out);
  for (size_t i = 0; i < a.n; i++) free(a.arrays[i]);
  free(a.arrays);
  return rc;
}

int isola_pack(isola_value *out, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = isola_vpack(out, fmt, ap);
  va_end(ap);
  return rc;
}

/* ---- isola_arg_int: a module's argument as an integer ------------------- */

int isola_arg_int(isola_value args, size_t index, int64_t dflt, int64_t min,
                  int64_t max, int64_t *out) {
  if (!out || min > max) {
    isola__detail_set("isola_arg_int: %s",
                      !out ? "out is NULL" : "min is above max");
    return ISOLA_EINVAL;
  }
  if (args.kind == ISOLA_NULL) {
    *out = dflt;
    return ISOLA_OK;
  }
  isola_value v;
  int rc = isola_list_get(args, index, &v);
  if (rc == ISOLA_ERANGE) {
    *out = dflt;
    return ISOLA_OK;
  }
  if (rc != ISOLA_OK) {
    isola__detail_set("isola_arg_int: the arguments are not a list");
    return ISOLA_ETYPE;
  }
  const char *s;
  size_t len;
  if (isola_value_get_str(v, &s, &len) != ISOLA_OK) {
    isola__detail_set("argument %zu: not a string", index + 1);
    return ISOLA_ETYPE;
  }
  int shown = len > 40 ? 40 : (int)len;
  size_t i = 0;
  bool neg = false, over = false;
  if (len && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    i = 1;
  }
  if (i == len) {
    isola__detail_set("argument %zu (\"%.*s\"): not a decimal integer",
                      index + 1, shown, s);
    return ISOLA_EINVAL;
  }
  uint64_t mag = 0;
  for (; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') {
      isola__detail_set("argument %zu (\"%.*s\"): not a decimal integer",
                        index + 1, shown, s);
      return ISOLA_EINVAL;
    }
    unsigned d = (unsigned)(s[i] - '0');
    if (mag > (UINT64_MAX - d) / 10)
      over = true;
    else
      mag = mag * 10 + d;
  }
  /* INT64_MIN's magnitude is INT64_MAX + 1. */
  if (mag > (uint64_t)INT64_MAX + (neg ? 1u : 0u)) over = true;
  int64_t n = 0;
  if (!over)
    n = neg ? (mag == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)mag)
            : (int64_t)mag;
  if (over || n < min || n > max) {
    isola__detail_set("argument %zu (\"%.*s\"): not in %lld..%lld",
                      index + 1, shown, s, (long long)min, (long long)max);
    return ISOLA_ERANGE;
  }
  *out = n;
  return ISOLA_OK;
}
