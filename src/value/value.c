/* SPDX-License-Identifier: MIT */
/* value.c — values: typed reads, buffers, validation, deep copy, equality. */
#include "value.h"
#include "detail.h"

#include <stdlib.h>
#include <string.h>

isola_value isola_str(const char *s) {
  if (!s) {
    isola_value bad = {UINT32_MAX, 0, {.i = 0}};
    return bad;
  }
  return isola_strn(s, strlen(s));
}

/* ---- transferable buffers ---------------------------------------------- */

/* The bytes follow the header; two words keep them aligned as malloc's. */
struct isola_buffer {
  size_t size;
  size_t reserved;
};

isola_buffer *isola_buffer_new(size_t size) {
  if (size > SIZE_MAX - sizeof(isola_buffer)) return NULL;
  isola_buffer *b = malloc(sizeof *b + size);
  if (!b) return NULL;
  b->size = size;
  b->reserved = 0;
  return b;
}

uint8_t *isola_buffer_data(isola_buffer *buf) {
  return buf ? (uint8_t *)(buf + 1) : NULL;
}

size_t isola_buffer_size(const isola_buffer *buf) {
  return buf ? buf->size : 0;
}

void isola_buffer_free(isola_buffer *buf) { free(buf); }

int isola_value_get_buffer(isola_value v, uint8_t **data, size_t *size) {
  if (!data) return ISOLA_EINVAL;
  if (v.kind != ISOLA_BUFFER) return ISOLA_ETYPE;
  if (!v.as.handle) return ISOLA_EINVAL;
  if (!*v.as.handle) return ISOLA_ETRANSFER;
  *data = isola_buffer_data(*v.as.handle);
  if (size) *size = (*v.as.handle)->size;
  return ISOLA_OK;
}

int isola_value_take_buffer(isola_value v, isola_buffer **out) {
  if (!out) return ISOLA_EINVAL;
  if (v.kind != ISOLA_BUFFER) return ISOLA_ETYPE;
  if (!v.as.handle) return ISOLA_EINVAL;
  if (!*v.as.handle) return ISOLA_ETRANSFER;
  *out = *v.as.handle;
  *v.as.handle = NULL;
  return ISOLA_OK;
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
GETTER(isola_value_get_cap, ISOLA_CAPABILITY, isola_capability, cap)
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

int isola_map_get(isola_value v, size_t index, isola_value *key,
                  isola_value *val) {
  if (v.kind != ISOLA_MAP) return ISOLA_ETYPE;
  if (index >= v.len) return ISOLA_ERANGE;
  if (key) *key = v.as.items[2 * index];
  if (val) *val = v.as.items[2 * index + 1];
  return ISOLA_OK;
}

int isola_map_find(isola_value v, isola_value key, isola_value *out) {
  if (!out) return ISOLA_EINVAL;
  if (v.kind != ISOLA_MAP) return ISOLA_ETYPE;
  for (size_t i = 0; i < v.len; i++) {
    if (isola_value_equal(v.as.items[2 * i], key)) {
      *out = v.as.items[2 * i + 1];
      return ISOLA_OK;
    }
  }
  return ISOLA_ENOKEY;
}

/* ---- UTF-8 ------------------------------------------------------------- */

/* Whether s[0..n) is well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF). */
size_t isola__utf8_bad_at(const unsigned char *s, size_t n, int *why) {
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
      *why = c <= 0xBF               ? ISOLA__UTF8_STRAY_CONTINUATION
             : c == 0xC0 || c == 0xC1 ? ISOLA__UTF8_OVERLONG_LEAD
                                      : ISOLA__UTF8_NEVER;
      return i;
    }
    if (n - i - 1 < need) {
      *why = ISOLA__UTF8_CUT_SHORT;
      return i;
    }
    unsigned c1 = s[i + 1];
    if (c1 < lo || c1 > hi) {
      *why = c == 0xED ? ISOLA__UTF8_SURROGATE
             : (c == 0xE0 || c == 0xF0) && c1 >= 0x80 && c1 < lo
                 ? ISOLA__UTF8_OVERLONG
             : c == 0xF4 && c1 > hi ? ISOLA__UTF8_TOO_HIGH
                                    : ISOLA__UTF8_NO_CONTINUATION;
      return i + 1;
    }
    for (size_t k = 2; k <= need; k++)
      if ((s[i + k] & 0xC0) != 0x80) {
        *why = ISOLA__UTF8_TOO_FEW_CONTINUATIONS;
        return i + k;
      }
    i += need + 1;
  }
  return SIZE_MAX;
}

/* ---- planning ---------------------------------------------------------- */

static size_t ref_hash(const void *ptr, size_t nvals, uint32_t kind) {
  uint64_t x = (uint64_t)(uintptr_t)ptr ^ ((uint64_t)nvals << 40) ^
               ((uint64_t)kind << 62);
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return (size_t)x;
}

/* Index of the ref (ptr, nvals, kind) in p->refs, or SIZE_MAX. */
static size_t find_ref(const isola__plan *p, const void *ptr, size_t nvals,
                       uint32_t kind) {
  if (!p->hash) {
    for (size_t i = 0; i < p->nrefs; i++)
      if (p->refs[i].ptr == ptr && p->refs[i].nvals == nvals &&
          p->refs[i].kind == kind)
        return i;
    return SIZE_MAX;
  }
  size_t mask = p->hash_cap - 1;
  for (size_t h = ref_hash(ptr, nvals, kind) & mask;; h = (h + 1) & mask) {
    size_t slot = p->hash[h];
    if (slot == 0) return SIZE_MAX;
    const isola__ref *r = &p->refs[slot - 1];
    if (r->ptr == ptr && r->nvals == nvals && r->kind == kind)
      return slot - 1;
  }
}

static void hash_insert(isola__plan *p, size_t index) {
  size_t mask = p->hash_cap - 1;
  const isola__ref *r = &p->refs[index];
  size_t h = ref_hash(r->ptr, r->nvals, r->kind) & mask;
  while (p->hash[h]) h = (h + 1) & mask;
  p->hash[h] = index + 1;
}

static int rehash(isola__plan *p, size_t cap) {
  size_t *h = calloc(cap, sizeof *h);
  if (!h) return ISOLA_ENOMEM;
  free(p->hash);
  p->hash = h;
  p->hash_cap = cap;
  for (size_t i = 0; i < p->nrefs; i++) hash_insert(p, i);
  return ISOLA_OK;
}

static int add_ref(isola__plan *p, const void *ptr, size_t nvals,
                   uint32_t kind, isola_buffer **handle) {
  if (p->nrefs == p->cap) {
    size_t cap = p->cap * 2;
    isola__ref *l;
    if (p->refs == p->inline_refs) {
      l = malloc(cap * sizeof *l);
      if (l) memcpy(l, p->refs, p->nrefs * sizeof *l);
    } else {
      l = realloc(p->refs, cap * sizeof *l);
    }
    if (!l) return ISOLA_ENOMEM;
    p->refs = l;
    p->cap = cap;
  }
  isola__ref *r = &p->refs[p->nrefs];
  r->ptr = ptr;
  r->nvals = nvals;
  r->kind = kind;
  r->handle = handle;
  r->refs = 1;
  r->share = SIZE_MAX;
  if (kind == ISOLA__REF_BUF) {
    r->offset = p->nbuf++;
  } else {
    r->offset = p->items_bytes;
    p->items_bytes += nvals * sizeof(isola_value);
  }
  p->nrefs++;
  if (p->hash) {
    if (p->nrefs * 2 > p->hash_cap) return rehash(p, p->hash_cap * 2);
    hash_insert(p, p->nrefs - 1);
  } else if (p->nrefs > 16) {
    return rehash(p, 64);
  }
  return ISOLA_OK;
}

/* The key naming a list, map or buffer value in p->refs. */
static void ref_key(isola_value v, const void **ptr, size_t *nvals,
                    uint32_t *kind) {
  if (v.kind == ISOLA_BUFFER) {
    *ptr = *v.as.handle;
    *nvals = 0;
    *kind = ISOLA__REF_BUF;
  } else {
    *ptr = v.as.items;
    *nvals = v.kind == ISOLA_MAP ? 2 * (size_t)v.len : v.len;
    *kind = v.kind == ISOLA_MAP ? ISOLA__REF_MAP : ISOLA__REF_LIST;
  }
}

size_t isola__plan_find(const isola__plan *p, isola_value v) {
  const void *ptr;
  size_t nvals;
  uint32_t kind;
  if (v.kind == ISOLA_BUFFER && (!v.as.handle || !*v.as.handle))
    return SIZE_MAX;
  ref_key(v, &ptr, &nvals, &kind);
  return find_ref(p, ptr, nvals, kind);
}

/* Accounts for one value met in the graph. */
static int visit(isola__plan *p, isola_value v, size_t *bytes) {
  switch (v.kind) {
  case ISOLA_NULL:
  case ISOLA_BOOL:
  case ISOLA_INT:
  case ISOLA_DOUBLE:
  case ISOLA_PORT:
  case ISOLA_CAPABILITY:
    return ISOLA_OK;
  case ISOLA_STRING:
    if (v.len && !v.as.str) return ISOLA_EINVAL;
    if (!isola__utf8_valid((const unsigned char *)v.as.str, v.len))
      return ISOLA_EINVAL;
    *bytes += (size_t)v.len + 1;
    return ISOLA_OK;
  case ISOLA_BYTES:
    if (v.len && !v.as.bytes) return ISOLA_EINVAL;
    *bytes += (size_t)v.len + 1;
    return ISOLA_OK;
  case ISOLA_LIST:
  case ISOLA_MAP: {
    if (v.len && !v.as.items) return ISOLA_EINVAL;
    const void *ptr;
    size_t nvals;
    uint32_t kind;
    ref_key(v, &ptr, &nvals, &kind);
    size_t i = find_ref(p, ptr, nvals, kind);
    if (i != SIZE_MAX) {
      p->refs[i].refs = 2;
      return ISOLA_OK;
    }
    return add_ref(p, ptr, nvals, kind, NULL);
  }
  case ISOLA_BUFFER:
    if (!v.as.handle) return ISOLA_EINVAL;
    /* Empty (already moved) or met before: moving it would hand one
     * buffer to two owners. */
    if (!*v.as.handle) return ISOLA_ETRANSFER;
    if (find_ref(p, *v.as.handle, 0, ISOLA__REF_BUF) != SIZE_MAX)
      return ISOLA_ETRANSFER;
    return add_ref(p, *v.as.handle, 0, ISOLA__REF_BUF, v.as.handle);
  default:
    return ISOLA_EINVAL;
  }
}

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

int isola__value_plan(isola__plan *p, isola_value v) {
  p->size = 0;
  p->items_bytes = 0;
  p->nbuf = 0;
  p->nrefs = 0;
  p->cap = ISOLA__PLAN_INLINE;
  p->refs = p->inline_refs;
  p->hash = NULL;
  p->hash_cap = 0;
  size_t bytes = 0;
  int rc = visit(p, v, &bytes);
  /* Breadth first over the lists and maps found so far; the array grows as
   * we go, so deep nesting costs no C stack. */
  for (size_t i = 0; rc == ISOLA_OK && i < p->nrefs; i++) {
    if (p->refs[i].kind == ISOLA__REF_BUF) continue;
    const isola_value *items = p->refs[i].ptr;
    size_t n = p->refs[i].nvals;
    for (size_t k = 0; rc == ISOLA_OK && k < n; k++)
      rc = visit(p, items[k], &bytes);
  }
  if (rc != ISOLA_OK) {
    /* Refused: say which item and why (the thread's error detail). */
    if (rc != ISOLA_ENOMEM) isola__detail_value(v, rc);
    return rc;
  }
  if (isola__value_has_block(v))
    p->size = align8(ISOLA__BLOCK_HDR + p->items_bytes + bytes) +
              p->nbuf * 2 * sizeof(void *);
  return ISOLA_OK;
}

void isola__plan_done(isola__plan *p) {
  if (p->refs != p->inline_refs) free(p->refs);
  free(p->hash);
  p->refs = p->inline_refs;
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
  case ISOLA_MAP:
    out.as.items = (const isola_value *)(block + ISOLA__BLOCK_HDR +
                                         p->refs[isola__plan_find(p, v)].offset);
    break;
  case ISOLA_BUFFER:
    out.as.handle =
        isola__block_slots(block) + p->refs[isola__plan_find(p, v)].offset;
    break;
  default:
    break;
  }
  return out;
}

int isola__value_write(const isola__plan *p, isola_value v, void *block,
                       int mode, isola_value *root) {
  char *b = block;
  isola__block *h = block;
  size_t cursor = ISOLA__BLOCK_HDR + p->items_bytes;
  /* Slots first, so convert() can point buffer values at them. */
  h->nbuf = p->nbuf;
  h->slots = p->size - p->nbuf * 2 * sizeof(void *);
  isola_buffer **slots = isola__block_slots(block);
  isola_buffer ***handles = isola__block_handles(block);
  size_t k = 0;
  for (size_t i = 0; i < p->nrefs; i++) {
    const isola__ref *r = &p->refs[i];
    if (r->kind != ISOLA__REF_BUF) continue;
    isola_buffer *src = (isola_buffer *)r->ptr;
    if (mode == ISOLA__MOVE_BUFFERS) {
      slots[r->offset] = src;
      handles[r->offset] = r->handle;
    } else {
      isola_buffer *dst = isola_buffer_new(src->size);
      if (!dst) {
        for (size_t j = 0; j < k; j++) isola_buffer_free(slots[j]);
        return ISOLA_ENOMEM;
      }
      if (src->size) memcpy(dst + 1, src + 1, src->size);
      slots[r->offset] = dst;
      handles[r->offset] = NULL;
    }
    k++;
  }
  for (size_t i = 0; i < p->nrefs; i++) {
    const isola__ref *r = &p->refs[i];
    if (r->kind == ISOLA__REF_BUF) continue;
    const isola_value *items = r->ptr;
    isola_value *dst = (isola_value *)(b + ISOLA__BLOCK_HDR + r->offset);
    for (size_t j = 0; j < r->nvals; j++)
      dst[j] = convert(p, items[j], b, &cursor);
  }
  *root = convert(p, v, b, &cursor);
  return ISOLA_OK;
}

void isola__block_release(void *block) {
  isola__block *h = block;
  if (!h->nbuf) return;
  isola_buffer **slots = isola__block_slots(block);
  for (size_t i = 0; i < h->nbuf; i++) isola_buffer_free(slots[i]);
}

void isola__block_disown(void *block) {
  isola__block *h = block;
  if (!h->nbuf) return;
  isola_buffer **slots = isola__block_slots(block);
  for (size_t i = 0; i < h->nbuf; i++) slots[i] = NULL;
}

/* ---- copies owned by the caller ----------------------------------------- */

int isola_value_copy(isola_value v, isola_value *out) {
  if (!out) return ISOLA_EINVAL;
  *out = isola_null();
  isola__plan p;
  int rc = isola__value_plan(&p, v);
  if (rc == ISOLA_OK) {
    if (p.size) {
      void *block = malloc(p.size);
      if (!block) {
        rc = ISOLA_ENOMEM;
      } else {
        rc = isola__value_write(&p, v, block, ISOLA__COPY_BUFFERS, out);
        if (rc != ISOLA_OK) {
          free(block);
          *out = isola_null();
        }
      }
    } else {
      *out = v;
    }
  }
  isola__plan_done(&p);
  return rc;
}

void isola_value_free(isola_value *v) {
  if (!v) return;
  if (isola__value_has_block(*v)) {
    /* The root's own data starts right after the header (value.h). */
    char *root = v->kind == ISOLA_BUFFER ? (char *)v->as.handle
                                         : (char *)v->as.str;
    void *block = root - ISOLA__BLOCK_HDR;
    isola__block_release(block);
    free(block);
  }
  *v = isola_null();
}

/* ---- equality ---------------------------------------------------------- */

typedef struct pair {
  const isola_value *a, *b;
  size_t nvals;
} pair;

typedef struct pairs {
  pair *v;
  size_t n, cap;
} pairs;

static bool seen_or_add(pairs *ps, const isola_value *a, const isola_value *b,
                        size_t nvals, bool *oom) {
  for (size_t i = 0; i < ps->n; i++)
    if (ps->v[i].a == a && ps->v[i].b == b && ps->v[i].nvals == nvals)
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
  ps->v[ps->n].nvals = nvals;
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
  case ISOLA_CAPABILITY:
    return a.as.cap == b.as.cap;
  case ISOLA_STRING:
  case ISOLA_BYTES:
    return a.len == b.len &&
           (a.len == 0 || memcmp(a.as.str, b.as.str, a.len) == 0);
  case ISOLA_BUFFER: {
    const isola_buffer *x = a.as.handle ? *a.as.handle : NULL;
    const isola_buffer *y = b.as.handle ? *b.as.handle : NULL;
    if (!x || !y) return x == y;
    return x->size == y->size &&
           (x->size == 0 || memcmp(x + 1, y + 1, x->size) == 0);
  }
  default:
    return false;
  }
}

static bool is_container(isola_value v) {
  return v.kind == ISOLA_LIST || v.kind == ISOLA_MAP;
}

static size_t nvals_of(isola_value v) {
  return v.kind == ISOLA_MAP ? 2 * (size_t)v.len : v.len;
}

bool isola_value_equal(isola_value a, isola_value b) {
  if (a.kind != b.kind) return false;
  if (!is_container(a)) return scalar_equal(a, b);
  /* Pairs of containers assumed equal while they are compared (so cycles
   * terminate); a worklist instead of recursion.  Quadratic in the number
   * of containers: this is for tests and checks, not the send path. */
  pairs seen = {0};
  bool oom = false, eq = true;
  if (a.len != b.len) return false;
  seen_or_add(&seen, a.as.items, b.as.items, nvals_of(a), &oom);
  for (size_t i = 0; eq && !oom && i < seen.n; i++) {
    pair pr = seen.v[i];
    for (size_t k = 0; eq && k < pr.nvals; k++) {
      isola_value x = pr.a[k], y = pr.b[k];
      if (x.kind != y.kind) {
        eq = false;
      } else if (is_container(x)) {
        if (x.len != y.len)
          eq = false;
        else
          seen_or_add(&seen, x.as.items, y.as.items, nvals_of(x), &oom);
      } else if (!scalar_equal(x, y)) {
        eq = false;
      }
    }
  }
  free(seen.v);
  return eq && !oom;
}
