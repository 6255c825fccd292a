/* SPDX-License-Identifier: MIT */
/*
 * wire.c — values as CBOR (RFC 8949); the format is docs/wire-format.md.
 *
 * Encoding reuses the copy planner (value.h): it validates the graph and
 * counts how often each list and map is reached, so only those reached
 * twice or more (shared, or on a cycle) carry tag 28; later meetings emit
 * tag 29 with the index of that tag 28.  The walk keeps its own stack, so a
 * deep graph costs heap, not C stack.
 *
 * Decoding is two passes over the input.  The first validates everything
 * and measures the one block the value will live in, counting items
 * against the limits before anything is allocated; the second, over input
 * now known good, writes the block.  Both passes run the same code, so
 * they cannot disagree.  Nesting is followed on a stack of the decoder's
 * own, bounded by the depth limit (itself capped at ISOLA_WIRE_MAX_DEPTH),
 * so deep input costs no C stack.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "value.h"
#include "detail.h"

/* Tags of our own, from the first-come-first-served range (RFC 8949
 * §9.2): ASCII "isop" and "isoc". */
#define TAG_SHAREABLE 28
#define TAG_SHARED_REF 29
#define TAG_PORT UINT64_C(0x69736F70)
#define TAG_CAPABILITY UINT64_C(0x69736F63)

enum { MAJOR_UINT, MAJOR_NINT, MAJOR_BYTES, MAJOR_TEXT, MAJOR_ARRAY,
       MAJOR_MAP, MAJOR_TAG, MAJOR_SIMPLE };

/* ---- encoding ---------------------------------------------------------- */

typedef struct out {
  uint8_t *buf;
  size_t cap, len;
  bool grow;     /* malloc'd buffer: grow it; else only count past cap */
  bool overflow; /* a fixed buffer ran out: stop writing, keep counting */
  bool oom;
} out;

static void put(out *o, const void *p, size_t n) {
  if (o->oom) return;
  if (!o->overflow && n > o->cap - o->len) {
    if (!o->grow) {
      o->overflow = true;
    } else {
      size_t cap = o->cap ? o->cap : 64;
      while (cap - o->len < n) {
        if (cap > SIZE_MAX / 2) {
          o->oom = true;
          return;
        }
        cap *= 2;
      }
      uint8_t *b = realloc(o->buf, cap);
      if (!b) {
        o->oom = true;
        return;
      }
      o->buf = b;
      o->cap = cap;
    }
  }
  if (!o->overflow && n) memcpy(o->buf + o->len, p, n);
  o->len += n;
}

/* A head: major type and argument, in the shortest form (RFC 8949 §4.2.1). */
static void put_head(out *o, unsigned major, uint64_t arg) {
  uint8_t b[9];
  size_t n;
  if (arg < 24) {
    b[0] = (uint8_t)(major << 5 | arg);
    n = 1;
  } else if (arg <= UINT8_MAX) {
    b[0] = (uint8_t)(major << 5 | 24);
    n = 2;
  } else if (arg <= UINT16_MAX) {
    b[0] = (uint8_t)(major << 5 | 25);
    n = 3;
  } else if (arg <= UINT32_MAX) {
    b[0] = (uint8_t)(major << 5 | 26);
    n = 5;
  } else {
    b[0] = (uint8_t)(major << 5 | 27);
    n = 9;
  }
  for (size_t i = 1; i < n; i++)
    b[i] = (uint8_t)(arg >> (8 * (n - 1 - i)));
  put(o, b, n);
}

typedef struct frame {
  const isola_value *items;
  size_t n, i;
} frame;

typedef struct enc {
  isola__plan plan;
  out o;
  frame *stack;
  size_t depth, cap;
  size_t nshare;
} enc;

/* Emits v, or the head of v and a frame for its elements. */
static int emit(enc *e, isola_value v) {
  out *o = &e->o;
  switch (v.kind) {
  case ISOLA_NULL:
    put_head(o, MAJOR_SIMPLE, 22);
    return ISOLA_OK;
  case ISOLA_BOOL:
    put_head(o, MAJOR_SIMPLE, v.as.b ? 21 : 20);
    return ISOLA_OK;
  case ISOLA_INT:
    if (v.as.i >= 0)
      put_head(o, MAJOR_UINT, (uint64_t)v.as.i);
    else
      put_head(o, MAJOR_NINT, ~(uint64_t)v.as.i); /* -1 - i */
    return ISOLA_OK;
  case ISOLA_DOUBLE: {
    /* Always 64 bits: every double comes back bit for bit (NaN payloads
     * and -0.0 too). */
    uint64_t bits;
    memcpy(&bits, &v.as.d, sizeof bits);
    uint8_t b[9] = {0xfb};
    for (int i = 0; i < 8; i++) b[1 + i] = (uint8_t)(bits >> (56 - 8 * i));
    put(o, b, sizeof b);
    return ISOLA_OK;
  }
  case ISOLA_PORT:
    put_head(o, MAJOR_TAG, TAG_PORT);
    put_head(o, MAJOR_UINT, v.as.port);
    return ISOLA_OK;
  case ISOLA_CAPABILITY:
    put_head(o, MAJOR_TAG, TAG_CAPABILITY);
    put_head(o, MAJOR_UINT, v.as.cap);
    return ISOLA_OK;
  case ISOLA_STRING:
  case ISOLA_BYTES:
    put_head(o, v.kind == ISOLA_STRING ? MAJOR_TEXT : MAJOR_BYTES, v.len);
    put(o, v.as.bytes, v.len);
    return ISOLA_OK;
  case ISOLA_BUFFER: {
    const isola_buffer *b = *v.as.handle;
    put_head(o, MAJOR_BYTES, isola_buffer_size(b));
    put(o, isola_buffer_data(*v.as.handle), isola_buffer_size(b));
    return ISOLA_OK;
  }
  case ISOLA_LIST:
  case ISOLA_MAP: {
    isola__ref *r = &e->plan.refs[isola__plan_find(&e->plan, v)];
    /* Empty containers are never shared: nothing can tell two apart. */
    if (r->refs >= 2 && r->nvals > 0) {
      if (r->share != SIZE_MAX) {
        put_head(o, MAJOR_TAG, TAG_SHARED_REF);
        put_head(o, MAJOR_UINT, r->share);
        return ISOLA_OK;
      }
      r->share = e->nshare++;
      put_head(o, MAJOR_TAG, TAG_SHAREABLE);
    }
    put_head(o, v.kind == ISOLA_LIST ? MAJOR_ARRAY : MAJOR_MAP, v.len);
    if (r->nvals == 0) return ISOLA_OK;
    if (e->depth == e->cap) {
      size_t cap = e->cap ? e->cap * 2 : 32;
      frame *s = realloc(e->stack, cap * sizeof *s);
      if (!s) return ISOLA_ENOMEM;
      e->stack = s;
      e->cap = cap;
    }
    e->stack[e->depth++] = (frame){v.as.items, r->nvals, 0};
    return ISOLA_OK;
  }
  default:
    return ISOLA_EINVAL; /* the planner rejected it already */
  }
}

static int encode(isola_value v, out *o) {
  enc e = {.o = *o};
  int rc = isola__value_plan(&e.plan, v);
  if (rc == ISOLA_OK) rc = emit(&e, v);
  while (rc == ISOLA_OK && e.depth > 0) {
    frame *f = &e.stack[e.depth - 1];
    if (f->i == f->n) {
      e.depth--;
      continue;
    }
    rc = emit(&e, f->items[f->i++]);
  }
  if (rc == ISOLA_OK && e.o.oom) rc = ISOLA_ENOMEM;
  free(e.stack);
  isola__plan_done(&e.plan);
  *o = e.o;
  return rc;
}

int isola_wire_encode(isola_value v, uint8_t **out_bytes, size_t *len) {
  if (out_bytes) *out_bytes = NULL;
  if (len) *len = 0;
  if (!out_bytes || !len) return ISOLA_EINVAL;
  out o = {.grow = true};
  int rc = encode(v, &o);
  if (rc != ISOLA_OK) {
    free(o.buf);
    return rc;
  }
  *out_bytes = o.buf;
  *len = o.len;
  return ISOLA_OK;
}

int isola_wire_encode_to(isola_value v, uint8_t *buf, size_t cap,
                         size_t *len) {
  if (!len || (!buf && cap)) return ISOLA_EINVAL;
  *len = 0;
  out o = {.buf = buf, .cap = cap};
  int rc = encode(v, &o);
  if (rc != ISOLA_OK) return rc;
  *len = o.len;
  return o.overflow ? ISOLA_ENOSPACE : ISOLA_OK;
}

/* ---- decoding ---------------------------------------------------------- */

typedef struct dec {
  const uint8_t *start, *p, *end;
  bool build; /* second pass: write the block */
  uint32_t max_depth;
  size_t items, max_items;
  size_t max_size;
  /* First pass: what the block needs. */
  size_t items_bytes, str_bytes;
  size_t nshare;
  /* Second pass. */
  char *block;
  size_t items_cursor, str_cursor;
  isola_value *shares; /* nshare of them, filled in order */
} dec;

/* Reads a head: *major gets the major type in its low byte and the
 * additional information above it. */
static int read_head(dec *d, unsigned *major, uint64_t *arg) {
  if (d->p == d->end) return ISOLA_ETRUNCATED;
  if (++d->items > d->max_items) return ISOLA_ECOUNT;
  uint8_t b = *d->p++;
  unsigned ai = b & 31;
  /* The additional information travels with the major type (a float's
   * width, a simple value's form). */
  *major = (unsigned)(b >> 5) | ai << 8;
  if (ai < 24) {
    *arg = ai;
    return ISOLA_OK;
  }
  if (ai == 31) {
    /* Indefinite lengths are valid CBOR that isola does not take; a
     * break code or an indefinite integer, tag or float is not CBOR. */
    if ((b >> 5) >= MAJOR_BYTES && (b >> 5) <= MAJOR_MAP)
      return ISOLA_EUNSUPPORTED;
    return ISOLA_EMALFORMED;
  }
  if (ai > 27) return ISOLA_EMALFORMED; /* reserved */
  size_t n = (size_t)1 << (ai - 24);
  if ((size_t)(d->end - d->p) < n) return ISOLA_ETRUNCATED;
  uint64_t x = 0;
  for (size_t i = 0; i < n; i++) x = x << 8 | d->p[i];
  d->p += n;
  *arg = x;
  /* The one-byte simple values below 32 must use the short form. */
  if ((b >> 5) == MAJOR_SIMPLE && ai == 24 && x < 32)
    return ISOLA_EMALFORMED;
  return ISOLA_OK;
}

static double half_to_double(uint16_t h) {
  int exp = (h >> 10) & 0x1f;
  unsigned mant = h & 0x3ff;
  double v;
  if (exp == 0)
    v = mant * (1.0 / 16777216.0); /* 2^-24 */
  else if (exp != 31)
    v = (mant + 1024) * (1.0 / 16777216.0) * (double)(1u << (exp - 1));
  else if (mant == 0)
    v = INFINITY;
  else
    v = NAN;
  return (h & 0x8000) ? -v : v;
}

static int check_size(dec *d) {
  if (d->items_bytes > d->max_size || d->str_bytes > d->max_size ||
      ISOLA__BLOCK_HDR + d->items_bytes + d->str_bytes > d->max_size)
    return ISOLA_ETOOBIG;
  return ISOLA_OK;
}

/* An array or map being filled: its elements are read at depth. */
typedef struct dframe {
  isola_value *items; /* second pass: where its elements go */
  size_t i, n;        /* the element being read, how many */
  uint32_t depth;
} dframe;

/* What one head (and, for tags, its content) came to. */
enum { ITEM_DONE, ITEM_OPEN, ITEM_TAGGED };

/* Reads one head into *out at depth.  share: the tag-28 index this item is
 * the content of, or SIZE_MAX.  Returns ITEM_DONE (a whole item: *out is
 * final), ITEM_OPEN (an array or map with elements: *f is filled in for
 * them, *out is final too), ITEM_TAGGED (a tag 28: its content follows,
 * *share set to its index), or a negative error. */
static int head_item(dec *d, isola_value *out, uint32_t depth, size_t *share,
                     dframe *f) {
  unsigned major;
  uint64_t arg;
  int rc = read_head(d, &major, &arg);
  if (rc != ISOLA_OK) return rc;
  unsigned ai = major >> 8;
  major &= 0xff;
  /* Tag 28 only on an array or a map.  Sharing anything else would let a
   * three-byte tag 29 stand for a whole string at every use: a value
   * within the limits that costs thousands of times them to copy, encode
   * or send.  A shared container is kept shared by the copy planner and
   * the encoder, so it costs once.  (Also refuses 28(28(x)), 28(29(n)).) */
  if (*share != SIZE_MAX && major != MAJOR_ARRAY && major != MAJOR_MAP)
    return ISOLA_EBADTAG;
  switch (major) {
  case MAJOR_UINT:
  case MAJOR_NINT:
    if (arg > INT64_MAX) return ISOLA_EUNSUPPORTED;
    *out = isola_int(major == MAJOR_UINT ? (int64_t)arg : -1 - (int64_t)arg);
    return ITEM_DONE;
  case MAJOR_BYTES:
  case MAJOR_TEXT: {
    if (arg > (uint64_t)(d->end - d->p)) return ISOLA_ETRUNCATED;
    if (arg > UINT32_MAX) return ISOLA_EUNSUPPORTED;
    size_t n = (size_t)arg;
    const uint8_t *s = d->p;
    d->p += n;
    if (!d->build) {
      if (major == MAJOR_TEXT && !isola__utf8_valid(s, n)) return ISOLA_EUTF8;
      d->str_bytes += n + 1;
      rc = check_size(d);
      return rc != ISOLA_OK ? rc : ITEM_DONE;
    }
    char *dst = d->block + d->str_cursor;
    if (n) memcpy(dst, s, n);
    dst[n] = '\0';
    d->str_cursor += n + 1;
    *out = major == MAJOR_TEXT ? isola_strn(dst, n) : isola_bytes(dst, n);
    return ITEM_DONE;
  }
  case MAJOR_ARRAY:
  case MAJOR_MAP: {
    /* Every element takes at least a byte: a longer count is a lie. */
    if (arg > (uint64_t)(d->end - d->p) / (major == MAJOR_MAP ? 2 : 1))
      return ISOLA_ETRUNCATED;
    if (arg > UINT32_MAX) return ISOLA_EUNSUPPORTED;
    size_t nvals = (size_t)arg * (major == MAJOR_MAP ? 2 : 1);
    if (nvals > d->max_items - d->items) return ISOLA_ECOUNT;
    if (nvals && depth >= d->max_depth) return ISOLA_EDEPTH;
    isola_value *items = NULL;
    if (!d->build) {
      d->items_bytes += nvals * sizeof(isola_value);
      if ((rc = check_size(d)) != ISOLA_OK) return rc;
    } else {
      /* No block only for an empty root (isola_wire_decode() gives it
       * one). */
      items = d->block ? (isola_value *)(d->block + d->items_cursor) : NULL;
      d->items_cursor += nvals * sizeof(isola_value);
      *out = major == MAJOR_MAP ? isola_map(items, (size_t)arg)
                                : isola_list(items, (size_t)arg);
      /* Registered before the elements, which may refer back to it. */
      if (*share != SIZE_MAX) d->shares[*share] = *out;
    }
    if (!nvals) return ITEM_DONE;
    *f = (dframe){items, 0, nvals, depth + 1};
    return ITEM_OPEN;
  }
  case MAJOR_TAG: {
    if (depth >= d->max_depth) return ISOLA_EDEPTH;
    if (arg == TAG_SHAREABLE) {
      *share = d->nshare++;
      return ITEM_TAGGED;
    }
    if (arg != TAG_SHARED_REF && arg != TAG_PORT && arg != TAG_CAPABILITY)
      return ISOLA_EBADTAG;
    unsigned cmajor;
    uint64_t carg;
    if ((rc = read_head(d, &cmajor, &carg)) != ISOLA_OK) return rc;
    if ((cmajor & 0xff) != MAJOR_UINT) return ISOLA_EBADTAG;
    if (arg == TAG_SHARED_REF) {
      /* Every earlier tag 28 is already registered (a container before its
       * elements). */
      if (carg >= d->nshare) return ISOLA_EDANGLING;
      if (d->build) *out = d->shares[carg];
    } else if (arg == TAG_PORT) {
      *out = isola_sendport(carg);
    } else {
      *out = isola_cap(carg);
    }
    return ITEM_DONE;
  }
  default: /* MAJOR_SIMPLE */
    switch (ai) {
    case 20:
    case 21:
      *out = isola_bool(ai == 21);
      return ITEM_DONE;
    case 22:
      *out = isola_null();
      return ITEM_DONE;
    case 25:
      *out = isola_double(half_to_double((uint16_t)arg));
      return ITEM_DONE;
    case 26: {
      uint32_t bits = (uint32_t)arg;
      float f32;
      memcpy(&f32, &bits, sizeof f32);
      *out = isola_double((double)f32);
      return ITEM_DONE;
    }
    case 27: {
      double x;
      memcpy(&x, &arg, sizeof x);
      *out = isola_double(x);
      return ITEM_DONE;
    }
    default: /* undefined (23) and the unassigned simple values */
      return ISOLA_EUNSUPPORTED;
    }
  }
}

/* Decodes the item at d->p into *root.  Nesting is kept on a stack of our
 * own (on the heap past 32 levels), not the C stack: a decode at the
 * deepest limit costs 4096 frames of 32 bytes, whatever thread runs it. */
static int decode_root(dec *d, isola_value *root) {
  dframe local[32];
  dframe *stack = local;
  size_t top = 0, cap = sizeof local / sizeof local[0];
  isola_value scratch; /* the first pass's elements go nowhere */
  isola_value *out = root;
  uint32_t depth = 0;
  size_t share = SIZE_MAX;
  int rc;
  for (;;) {
    dframe f;
    rc = head_item(d, out, depth, &share, &f);
    if (rc < 0) break;
    if (rc == ITEM_TAGGED) { /* the content: same slot, one level down */
      depth++;
      continue;
    }
    if (rc == ITEM_OPEN) {
      if (top == cap) {
        size_t ncap = cap * 2;
        dframe *ns = malloc(ncap * sizeof *ns);
        if (!ns) {
          rc = ISOLA_ENOMEM;
          break;
        }
        memcpy(ns, stack, top * sizeof *ns);
        if (stack != local) free(stack);
        stack = ns;
        cap = ncap;
      }
      stack[top++] = f;
      out = d->build ? &f.items[0] : &scratch;
      depth = f.depth;
      share = SIZE_MAX;
      continue;
    }
    /* A whole item (a shared one, a container, registered itself before
     * its elements). */
    share = SIZE_MAX;
    /* On to the next element of the innermost unfinished container. */
    while (top > 0 && ++stack[top - 1].i == stack[top - 1].n) top--;
    if (top == 0) {
      rc = ISOLA_OK;
      break;
    }
    dframe *g = &stack[top - 1];
    out = d->build ? &g->items[g->i] : &scratch;
    depth = g->depth;
  }
  if (stack != local) free(stack);
  return rc;
}

static int pass(dec *d, isola_value *out) {
  d->p = d->start;
  d->items = 0;
  d->nshare = 0;
  int rc = decode_root(d, out);
  if (rc == ISOLA_OK && d->p != d->end) rc = ISOLA_ETRAILING;
  return rc;
}

int isola_wire_decode(const uint8_t *bytes, size_t len,
                      const isola_wire_limits *limits, isola_value *out) {
  if (out) *out = isola_null();
  if (!out || (!bytes && len)) return ISOLA_EINVAL;
  if (!bytes) bytes = (const uint8_t *)"";
  dec d = {.start = bytes, .end = bytes + len};
  d.max_depth = limits && limits->max_depth ? limits->max_depth
                                            : ISOLA_WIRE_DEFAULT_DEPTH;
  if (d.max_depth > ISOLA_WIRE_MAX_DEPTH) d.max_depth = ISOLA_WIRE_MAX_DEPTH;
  d.max_items = limits && limits->max_items ? limits->max_items
                                            : ISOLA_WIRE_DEFAULT_ITEMS;
  d.max_size = limits && limits->max_size ? limits->max_size
                                          : ISOLA_WIRE_DEFAULT_SIZE;
  isola_value v;
  int rc = pass(&d, &v);
  if (rc != ISOLA_OK) {
    isola__detail_set("isola_wire_decode: %s (%s), stopped at byte %zu of "
                      "%zu",
                      isola_strerror(rc), isola_err_name(rc),
                      (size_t)(d.p - d.start), len);
    return rc;
  }
  size_t nshare = d.nshare;
  d.build = true;
  if (nshare) {
    d.shares = malloc(nshare * sizeof *d.shares);
    if (!d.shares) return ISOLA_ENOMEM;
  }
  /* A scalar root needs no block (and has no tag 28). */
  bool has_block = d.items_bytes || d.str_bytes;
  if (has_block) {
    size_t size = (ISOLA__BLOCK_HDR + d.items_bytes + d.str_bytes + 7) &
                  ~(size_t)7;
    d.block = malloc(size);
    if (!d.block) {
      free(d.shares);
      return ISOLA_ENOMEM;
    }
    isola__block *h = (isola__block *)d.block;
    h->nbuf = 0;
    h->slots = size;
    d.items_cursor = ISOLA__BLOCK_HDR;
    d.str_cursor = ISOLA__BLOCK_HDR + d.items_bytes;
  }
  rc = pass(&d, &v);
  free(d.shares);
  if (rc != ISOLA_OK) { /* the first pass said the input is good */
    free(d.block);
    return rc;
  }
  if (!isola__value_has_block(v)) {
    free(d.block);
  } else if (!has_block) {
    /* An empty list or map at the root: give it a block of its own so
     * isola_value_free() has one to release. */
    d.block = malloc(ISOLA__BLOCK_HDR);
    if (!d.block) return ISOLA_ENOMEM;
    isola__block *h = (isola__block *)d.block;
    h->nbuf = 0;
    h->slots = ISOLA__BLOCK_HDR;
    v.as.items = (const isola_value *)(d.block + ISOLA__BLOCK_HDR);
  }
  *out = v;
  return ISOLA_OK;
}
