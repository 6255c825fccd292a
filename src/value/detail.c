/* SPDX-License-Identifier: MIT */
/*
 * detail.c — the thread's last-error detail: a sentence saying which part
 * of a call's input was wrong and why, for errors whose code alone does not
 * (isola_error_detail).  Written only where an error is returned; the
 * value explanation walks the refused value a second time, so the copy
 * path pays nothing for it.
 */
#include "detail.h"
#include "utf8.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char detail[512];

const char *isola_error_detail(void) { return detail; }

void isola__detail_set(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
}

/* Why s[0..n) is not UTF-8: false and the offset and reason of the first
 * bad byte, or true. */
static bool utf8_explain(const unsigned char *s, size_t n, size_t *at,
                         const char **why) {
  static const char *const text[] = {
      [ISOLA__UTF8_STRAY_CONTINUATION] = "a continuation byte with no lead byte",
      [ISOLA__UTF8_OVERLONG_LEAD] = "the lead byte of an overlong form",
      [ISOLA__UTF8_NEVER] = "a byte that never occurs in UTF-8",
      [ISOLA__UTF8_CUT_SHORT] = "a sequence cut short by the end of the string",
      [ISOLA__UTF8_SURROGATE] = "an encoded UTF-16 surrogate",
      [ISOLA__UTF8_OVERLONG] = "an overlong form",
      [ISOLA__UTF8_TOO_HIGH] = "a code point above U+10FFFF",
      [ISOLA__UTF8_NO_CONTINUATION] =
          "a lead byte not followed by a continuation byte",
      [ISOLA__UTF8_TOO_FEW_CONTINUATIONS] =
          "a lead byte not followed by enough continuation bytes"};
  int reason;
  *at = isola__utf8_bad_at(s, n, &reason);
  if (*at == SIZE_MAX) return true;
  *why = text[reason];
  return false;
}

/* Set of list, map and buffer identities already met (cycles, sharing). */
typedef struct seen {
  const void **p;
  size_t n, cap;
} seen;

/* Returns true if ptr was met before, else records it. */
static bool seen_add(seen *s, const void *ptr) {
  for (size_t i = 0; i < s->n; i++)
    if (s->p[i] == ptr) return true;
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 32;
    const void **q = realloc(s->p, cap * sizeof *q);
    if (!q) return true; /* treated as met: the walk only gets shorter */
    s->p = q;
    s->cap = cap;
  }
  s->p[s->n++] = ptr;
  return false;
}

typedef struct frame {
  isola_value v;
  size_t next; /* next child to visit */
  size_t path_len;
} frame;

/* What is wrong with v itself (not its children), or NULL. */
static const char *check_one(isola_value v, seen *bufs, char *buf,
                             size_t cap, int rc) {
  switch (v.kind) {
  case ISOLA_NULL:
  case ISOLA_BOOL:
  case ISOLA_INT:
  case ISOLA_DOUBLE:
  case ISOLA_PORT:
  case ISOLA_CAPABILITY:
    return NULL;
  case ISOLA_STRING: {
    if (v.len && !v.as.str) return "a string of non-zero length with a NULL "
                                    "pointer";
    size_t at;
    const char *why;
    if (!utf8_explain((const unsigned char *)v.as.str, v.len, &at, &why)) {
      snprintf(buf, cap,
               "a string of %u bytes is not valid UTF-8: byte %zu (0x%02x) "
               "is %s",
               v.len, at, (unsigned)(unsigned char)v.as.str[at], why);
      return buf;
    }
    return NULL;
  }
  case ISOLA_BYTES:
    return v.len && !v.as.bytes ? "bytes of non-zero length with a NULL "
                                  "pointer"
                                : NULL;
  case ISOLA_LIST:
  case ISOLA_MAP:
    return v.len && !v.as.items ? "a list or map of non-zero length with a "
                                  "NULL items pointer"
                                : NULL;
  case ISOLA_BUFFER:
    if (!v.as.handle) return "a buffer value with a NULL handle pointer";
    if (!*v.as.handle)
      return "an empty buffer handle (already transferred or taken)";
    if (rc == ISOLA_ETRANSFER && seen_add(bufs, *v.as.handle))
      return "a buffer that appears a second time in the message";
    return NULL;
  case UINT32_MAX:
    return "a string, bytes, list or map longer than 2^32 - 1";
  default:
    snprintf(buf, cap, "an unknown kind %u", v.kind);
    return buf;
  }
}

void isola__detail_value(isola_value v, int rc) {
  char path[160] = "value";
  char why_buf[160];
  const char *why = NULL;
  seen lists = {0}, bufs = {0};
  frame *st = NULL;
  size_t n = 0, cap = 0;
  size_t plen = strlen(path);
  if (!(why = check_one(v, &bufs, why_buf, sizeof why_buf, rc)) &&
      (v.kind == ISOLA_LIST || v.kind == ISOLA_MAP)) {
    st = malloc(16 * sizeof *st);
    if (st) {
      cap = 16;
      seen_add(&lists, v.as.items);
      st[n++] = (frame){v, 0, plen};
    }
  }
  while (n && !why) {
    frame *f = &st[n - 1];
    size_t total = f->v.kind == ISOLA_MAP ? 2 * (size_t)f->v.len : f->v.len;
    if (f->next >= total) {
      n--;
      continue;
    }
    size_t i = f->next++;
    isola_value c = f->v.as.items[i];
    size_t at = f->path_len;
    if (at < sizeof path - 1) {
      if (f->v.kind == ISOLA_LIST)
        snprintf(path + at, sizeof path - at, "[%zu]", i);
      else
        snprintf(path + at, sizeof path - at, "{pair %zu}.%s", i / 2,
                 i % 2 ? "value" : "key");
    }
    size_t clen = strlen(path);
    if ((why = check_one(c, &bufs, why_buf, sizeof why_buf, rc))) break;
    if ((c.kind == ISOLA_LIST || c.kind == ISOLA_MAP) && c.len &&
        !seen_add(&lists, c.as.items)) {
      if (n == cap) {
        frame *q = realloc(st, 2 * cap * sizeof *q);
        if (!q) break;
        st = q;
        cap *= 2;
      }
      st[n++] = (frame){c, 0, clen};
    }
  }
  free(st);
  free(lists.p);
  free(bufs.p);
  if (why)
    isola__detail_set("%s: %s", path, why);
  else
    isola__detail_set("the value was refused: %s", isola_strerror(rc));
}
