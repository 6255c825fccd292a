/* value.c — values: typed reads, validation, deep copy, equality. */
#include "value.h"

#include <stdlib.h>
#include <string.h>

isola_value isola_str(const char *s) {
  if (!s) {
    isola_value bad = {UINT32_MAX, 0, {.i = 0}};
    return bad;
  }
  return isola_strn(s, strlen(s));
}

/* ---- typed reads ------------------------------------------------------- */

#define GETTER(fn, KIND, type, field)                                          \
  int fn(isola_value v, type *out) {                                           \
    if (!out) return ISOLA_EINVAL;                                             \
    if (v.kind != KIND) return ISOLA_ETYPE;                                    \
    *out = v.as.field;                                                         \
    return ISOLA_OK;                                                           \
  }
GETTER(isola_value_get_bool, ISOLA_BOOL, bool, b)
GETTER(isola_value_get_int, ISOLA_INT, int64_t, i)
GETTER(isola_value_get_double, ISOLA_DOUBLE, double, d)
GETTER(isola_value_get_port, ISOLA_PORT, isola_port, port)
#undef GETTER

int isola_value_get_str(isola_value v, const char **out, size_t *len) {
  if (!out) return ISOLA_EINVAL;
  if (v.kind != ISOLA_STRING) return ISOLA_ETYPE;
  *out = v.as.str;
  if (len) *len = v.len;
  return ISOLA_OK;
}

int isola_value_get_bytes(isola_value v, const uint8_t **out, size_t *len) {
  if (!out) return ISOLA_EINVAL;
  if (v.kind != ISOLA_BYTES) return ISOLA_ETYPE;
  *out = v.as.bytes;
  if (len) *len = v.len;
  return ISOLA_OK;
}

int isola_list_get(isola_value v, size_t index, isola_value *out) {
  if (!out) return ISOLA_EINVAL;
  if (v.kind != ISOLA_LIST) return ISOLA_ETYPE;
  if (index >= v.len) return ISOLA_ERANGE;
  *out = v.as.items[index];
  return ISOLA_OK;
}

/* ---- UTF-8 ------------------------------------------------------------- */

/* Whether s[0..n) is well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF). */
static bool utf8_valid(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    /* Eight ASCII bytes at a time. */
    while (i + 8 <= n) {
      uint64_t w;
      memcpy(&w, s + i, 8);
      if (w & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= n) break;
    unsigned c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (n - i - 1 < need) return false;
    if (s[i + 1] < lo || s[i + 1] > hi) return false;
    for (size_t k = 2; k <= need; k++)
      if ((s[i + k] & 0xC0) != 0x80) return false;
    i += need + 1;
  }
  return true;
}

/* ---- planning ---------------------------------------------------------- */

static size_t ref_hash(const isola_value *items, uint32_t len) {
  uint64_t x = (uint64_t)(uintptr_t)items ^ ((uint64_t)len << 48);
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return (size_t)x;
}

/* Index of the list (items, len) in p->lists, or SIZE_MAX. */
static size_t find_list(const isola__plan *p, const isola_value *items,
                        uint32_t len) {
  if (!p->hash) {
    for (size_t i = 0; i < p->nlists; i++)
      if (p->lists[i].items == items && p->lists[i].len == len) return i;
    return SIZE_MAX;
  }
  size_t mask = p->hash_cap - 1;
  for (size_t h = ref_hash(items, len) & mask;; h = (h + 1) & mask) {
    size_t slot = p->hash[h];
    if (slot == 0) return SIZE_MAX;
    const isola__list_ref *r = &p->lists[slot - 1];
    if (r->items == items && r->len == len) return slot - 1;
  }
}

static void hash_insert(isola__plan *p, size_t index) {
  size_t mask = p->hash_cap - 1;
  size_t h = ref_hash(p->lists[index].items, p->lists[index].len) & mask;
  while (p->hash[h]) h = (h + 1) & mask;
  p->hash[h] = index + 1;
}

static int rehash(isola__plan *p, size_t cap) {
  size_t *h = calloc(cap, sizeof *h);
  if (!h) return ISOLA_ENOMEM;
  free(p->hash);
  p->hash = h;
  p->hash_cap = cap;
  for (size_t i = 0; i < p->nlists; i++) hash_insert(p, i);
  return ISOLA_OK;
}

static int add_list(isola__plan *p, const isola_value *items, uint32_t len) {
  if (p->nlists == p->cap) {
    size_t cap = p->cap * 2;
    isola__list_ref *l;
    if (p->lists == p->inline_lists) {
      l = malloc(cap * sizeof *l);
      if (l) memcpy(l, p->lists, p->nlists * sizeof *l);
    } else {
      l = realloc(p->lists, cap * sizeof *l);
    }
    if (!l) return ISOLA_ENOMEM;
    p->lists = l;
    p->cap = cap;
  }
  size_t bytes = (size_t)len * sizeof(isola_value);
  p->lists[p->nlists].items = items;
  p->lists[p->nlists].len = len;
  p->lists[p->nlists].offset = p->items_bytes;
  p->items_bytes += bytes;
  p->nlists++;
  if (p->hash) {
    if (p->nlists * 2 > p->hash_cap) return rehash(p, p->hash_cap * 2);
    hash_insert(p, p->nlists - 1);
  } else if (p->nlists > 16) {
    return rehash(p, 64);
  }
  return ISOLA_OK;
}

/* Accounts for one value met in the graph. */
static int visit(isola__plan *p, isola_value v, size_t *bytes) {
  switch (v.kind) {
  case ISOLA_NULL:
  case ISOLA_BOOL:
  case ISOLA_INT:
  case ISOLA_DOUBLE:
  case ISOLA_PORT:
    return ISOLA_OK;
  case ISOLA_STRING:
    if (v.len && !v.as.str) return ISOLA_EINVAL;
    if (!utf8_valid((const unsigned char *)v.as.str, v.len))
      return ISOLA_EINVAL;
    *bytes += (size_t)v.len + 1;
    return ISOLA_OK;
  case ISOLA_BYTES:
    if (v.len && !v.as.bytes) return ISOLA_EINVAL;
    *bytes += (size_t)v.len + 1;
    return ISOLA_OK;
  case ISOLA_LIST:
    if (v.len && !v.as.items) return ISOLA_EINVAL;
    if (find_list(p, v.as.items, v.len) != SIZE_MAX) return ISOLA_OK;
    return add_list(p, v.as.items, v.len);
  default:
    return ISOLA_EINVAL;
  }
}

int isola__value_plan(isola__plan *p, isola_value v) {
  p->size = 0;
  p->items_bytes = 0;
  p->nlists = 0;
  p->cap = ISOLA__PLAN_INLINE;
  p->lists = p->inline_lists;
  p->hash = NULL;
  p->hash_cap = 0;
  size_t bytes = 0;
  int rc = visit(p, v, &bytes);
  /* Breadth first over the lists found so far; the array grows as we go,
   * so deep nesting costs no C stack. */
  for (size_t i = 0; rc == ISOLA_OK && i < p->nlists; i++) {
    const isola_value *items = p->lists[i].items;
    uint32_t len = p->lists[i].len;
    for (uint32_t k = 0; rc == ISOLA_OK && k < len; k++)
      rc = visit(p, items[k], &bytes);
  }
  if (rc != ISOLA_OK) return rc;
  if (v.kind == ISOLA_STRING || v.kind == ISOLA_BYTES ||
      v.kind == ISOLA_LIST)
    p->size = p->items_bytes + bytes;
  if (p->size == 0 && v.kind == ISOLA_LIST) p->size = 1; /* empty list */
  return ISOLA_OK;
}

void isola__plan_done(isola__plan *p) {
  if (p->lists != p->inline_lists) free(p->lists);
  free(p->hash);
  p->lists = p->inline_lists;
  p->hash = NULL;
}

static isola_value convert(const isola__plan *p, isola_value v, char *block,
                           size_t *cursor) {
  isola_value out = v;
  switch (v.kind) {
  case ISOLA_STRING:
  case ISOLA_BYTES: {
    char *dst = block + *cursor;
    if (v.len) memcpy(dst, v.as.str, v.len);
    dst[v.len] = '\0';
    *cursor += (size_t)v.len + 1;
    out.as.str = dst;
    break;
  }
  case ISOLA_LIST:
    out.as.items = (const isola_value *)(block +
        p->lists[find_list(p, v.as.items, v.len)].offset);
    break;
  default:
    break;
  }
  return out;
}

isola_value isola__value_write(const isola__plan *p, isola_value v,
                               void *block) {
  char *b = block;
  size_t cursor = p->items_bytes;
  for (size_t i = 0; i < p->nlists; i++) {
    const isola__list_ref *r = &p->lists[i];
    isola_value *dst = (isola_value *)(b + r->offset);
    for (uint32_t k = 0; k < r->len; k++)
      dst[k] = convert(p, r->items[k], b, &cursor);
  }
  return convert(p, v, b, &cursor);
}

/* ---- copies owned by the caller ----------------------------------------- */

int isola_value_copy(isola_value v, isola_value *out) {
  if (!out) return ISOLA_EINVAL;
  *out = isola_null();
  isola__plan p;
  int rc = isola__value_plan(&p, v);
  if (rc == ISOLA_OK) {
    void *block = NULL;
    if (p.size) {
      block = malloc(p.size);
      if (!block) rc = ISOLA_ENOMEM;
    }
    if (rc == ISOLA_OK) *out = isola__value_write(&p, v, block);
  }
  isola__plan_done(&p);
  return rc;
}

void isola_value_free(isola_value *v) {
  if (!v) return;
  /* The block starts with the root's own data (value.h). */
  switch (v->kind) {
  case ISOLA_STRING:
  case ISOLA_BYTES:
  case ISOLA_LIST:
    free((void *)v->as.str);
    break;
  default:
    break;
  }
  *v = isola_null();
}

/* ---- equality ---------------------------------------------------------- */

typedef struct pair {
  const isola_value *a, *b;
  uint32_t len;
} pair;

typedef struct pairs {
  pair *v;
  size_t n, cap;
} pairs;

static bool seen_or_add(pairs *ps, const isola_value *a, const isola_value *b,
                        uint32_t len, bool *oom) {
  for (size_t i = 0; i < ps->n; i++)
    if (ps->v[i].a == a && ps->v[i].b == b && ps->v[i].len == len)
      return true;
  if (ps->n == ps->cap) {
    size_t cap = ps->cap ? ps->cap * 2 : 16;
    pair *v = realloc(ps->v, cap * sizeof *v);
    if (!v) {
      *oom = true;
      return true;
    }
    ps->v = v;
    ps->cap = cap;
  }
  ps->v[ps->n].a = a;
  ps->v[ps->n].b = b;
  ps->v[ps->n].len = len;
  ps->n++;
  return false;
}

static bool scalar_equal(isola_value a, isola_value b) {
  switch (a.kind) {
  case ISOLA_NULL:
    return true;
  case ISOLA_BOOL:
    return a.as.b == b.as.b;
  case ISOLA_INT:
    return a.as.i == b.as.i;
  case ISOLA_DOUBLE:
    return memcmp(&a.as.d, &b.as.d, sizeof(double)) == 0;
  case ISOLA_PORT:
    return a.as.port == b.as.port;
  case ISOLA_STRING:
  case ISOLA_BYTES:
    return a.len == b.len &&
           (a.len == 0 || memcmp(a.as.str, b.as.str, a.len) == 0);
  default:
    return false;
  }
}

bool isola_value_equal(isola_value a, isola_value b) {
  if (a.kind != b.kind) return false;
  if (a.kind != ISOLA_LIST) return scalar_equal(a, b);
  /* Pairs of lists assumed equal while they are compared (so cycles
   * terminate); a worklist instead of recursion.  Quadratic in the number
   * of lists: this is for tests and checks, not the send path. */
  pairs seen = {0};
  bool oom = false, eq = true;
  if (a.len != b.len) return false;
  seen_or_add(&seen, a.as.items, b.as.items, a.len, &oom);
  for (size_t i = 0; eq && !oom && i < seen.n; i++) {
    pair pr = seen.v[i];
    for (uint32_t k = 0; eq && k < pr.len; k++) {
      isola_value x = pr.a[k], y = pr.b[k];
      if (x.kind != y.kind) {
        eq = false;
      } else if (x.kind == ISOLA_LIST) {
        if (x.len != y.len)
          eq = false;
        else
          seen_or_add(&seen, x.as.items, y.as.items, x.len, &oom);
      } else if (!scalar_equal(x, y)) {
        eq = false;
      }
    }
  }
  free(seen.v);
  return eq && !oom;
}
