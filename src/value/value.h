/* SPDX-License-Identifier: MIT */
/*
 * value.h — copying value graphs into one block.
 *
 * A copy is planned first (isola__value_plan: validate, find every distinct
 * list, map and transferable buffer, add up sizes) and then written into
 * memory of the planned size (isola__value_write).  The block is laid out
 * as
 *
 *   isola__block header | item arrays of lists and maps, in the order they
 *   were found | every string and byte buffer, each followed by a NUL |
 *   buffer slots (isola_buffer *[nbuf]) | sender handles (isola_buffer
 *   **[nbuf])
 *
 * so the root's own data (a root list's items, a root string's bytes, a
 * root buffer's slot) always starts right after the header: that is how
 * isola_value_free() finds the block from the root alone.  The slots own
 * the buffers the block holds (a taken buffer leaves NULL); the handles
 * are where a moved buffer came from, so the sender can empty them once
 * the send has succeeded.
 */
#ifndef ISOLA_VALUE_H
#define ISOLA_VALUE_H

#include "internal.h"
#include "utf8.h"

typedef struct isola__block {
  size_t nbuf;  /* buffer slots */
  size_t slots; /* offset of the slot array from the block's start */
} isola__block;

#define ISOLA__BLOCK_HDR sizeof(isola__block)

enum { ISOLA__REF_LIST, ISOLA__REF_MAP, ISOLA__REF_BUF };

/* One distinct list, map or buffer of a graph.  Lists and maps are named by
 * (items, number of values, kind); buffers by the buffer pointer. */
typedef struct isola__ref {
  const void *ptr;       /* items array, or the isola_buffer */
  size_t nvals;          /* values in the items array (a map: 2 * pairs) */
  size_t offset;         /* items: offset of the copy; buffer: slot index */
  isola_buffer **handle; /* buffer: the handle it was reached through */
  uint32_t kind;         /* ISOLA__REF_* */
  uint32_t refs;         /* times reached, saturating at 2 (wire.c) */
  size_t share;          /* wire.c: tag-28 index once emitted, or SIZE_MAX */
} isola__ref;

#define ISOLA__PLAN_INLINE 8

typedef struct isola__plan {
  size_t size; /* bytes the block needs (0: no block: a scalar root) */
  size_t items_bytes;
  size_t nbuf;
  size_t nrefs, cap;
  isola__ref *refs; /* points at inline or at a heap array */
  size_t *hash;     /* open-addressing index into refs, or NULL */
  size_t hash_cap;
  isola__ref inline_refs[ISOLA__PLAN_INLINE];
} isola__plan;

/* Plans the copy of v.  ISOLA_EINVAL for a malformed value, ISOLA_ETRANSFER
 * for an empty buffer handle or a buffer met twice, ISOLA_ENOMEM.  Always
 * call isola__plan_done() after. */
int isola__value_plan(isola__plan *p, isola_value v);

/* Index in p->refs of the list, map or buffer v (planned), or SIZE_MAX. */
size_t isola__plan_find(const isola__plan *p, isola_value v);

void isola__plan_done(isola__plan *p);

/* How isola__value_write() treats transferable buffers. */
enum {
  ISOLA__COPY_BUFFERS, /* each gets a new buffer holding a copy of its bytes */
  ISOLA__MOVE_BUFFERS  /* the block's slots take the buffers themselves */
};

/* Writes the copy of v into block (p->size bytes) and stores its root in
 * *root.  ISOLA_ENOMEM only when copying buffers (nothing is then left
 * allocated but the block, which the caller frees). */
int isola__value_write(const isola__plan *p, isola_value v, void *block,
                       int mode, isola_value *root);

/* Whether a root of v's kind has a block (what isola__plan sized). */
static inline bool isola__value_has_block(isola_value v) {
  return v.kind == ISOLA_STRING || v.kind == ISOLA_BYTES ||
         v.kind == ISOLA_LIST || v.kind == ISOLA_MAP ||
         v.kind == ISOLA_BUFFER;
}

/* Frees the buffers a block's slots still own (not the block itself). */
void isola__block_release(void *block);

/* Empties the slots without freeing: the buffers go back to their senders
 * (a send that failed after the message was built). */
void isola__block_disown(void *block);

/* The slots and sender handles of a block (both nbuf long). */
static inline isola_buffer **isola__block_slots(void *block) {
  return (isola_buffer **)((char *)block + ((isola__block *)block)->slots);
}
static inline isola_buffer ***isola__block_handles(void *block) {
  isola__block *h = block;
  return (isola_buffer ***)((char *)block + h->slots +
                            h->nbuf * sizeof(isola_buffer *));
}

/* The message this thread is posting from isola_send_reply(): if the post
 * fails, isola__post() frees it on this same thread, and
 * isola__msg_free() must then leave its moved buffers to their sender
 * (whose handles were not emptied).  Any other thread freeing the message
 * (its receiver, after a successful post) frees them. */
extern _Thread_local const isola__msg *isola__msg_posting;

#endif
