/*
 * value.h — copying value graphs into one block.
 *
 * A copy is planned first (isola__value_plan: validate, find every distinct
 * list, add up sizes) and then written into memory of the planned size
 * (isola__value_write).  The block holds the lists' item arrays first, in
 * the order they were found (so a root list starts at offset 0), then every
 * string and byte buffer, each followed by a NUL.
 */
#ifndef ISOLA_VALUE_H
#define ISOLA_VALUE_H

#include "internal.h"

typedef struct isola__list_ref {
  const isola_value *items;
  uint32_t len;
  size_t offset; /* of its copy in the block */
} isola__list_ref;

#define ISOLA__PLAN_INLINE 8

typedef struct isola__plan {
  size_t size; /* bytes the block needs (0: no block: a scalar root) */
  size_t items_bytes;
  size_t nlists, cap;
  isola__list_ref *lists; /* points at inline or at a heap array */
  size_t *hash;           /* open-addressing index into lists, or NULL */
  size_t hash_cap;
  isola__list_ref inline_lists[ISOLA__PLAN_INLINE];
} isola__plan;

/* Plans the copy of v.  ISOLA_EINVAL for a malformed value, ISOLA_ENOMEM.
 * Always call isola__plan_done() after. */
int isola__value_plan(isola__plan *p, isola_value v);

/* Writes the copy of v into block (p->size bytes) and returns its root. */
isola_value isola__value_write(const isola__plan *p, isola_value v,
                               void *block);

void isola__plan_done(isola__plan *p);

#endif
