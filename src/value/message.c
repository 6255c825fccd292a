/* SPDX-License-Identifier: MIT */
/* message.c — the message type's constructors and destructor (message.h):
 * a message is one pool block holding its header and a copy of its value
 * graph. */
#include "message.h"

#include "pool.h"
#include "value.h"

/* Builds a message holding a copy of v; mode says whether transferable
 * buffers move into it or are copied (value.h).  Moving consumes nothing
 * yet: the sender's handles are emptied only once the post succeeds. */
int isola__msg_build(isola_value v, int mode, isola__msg **out) {
  return isola__msg_build_checked(v, mode, SIZE_MAX, NULL, NULL, out);
}

int isola__msg_build_checked(isola_value v, int mode, size_t check_above,
                             int (*check)(size_t bytes, void *arg), void *arg,
                             isola__msg **out) {
  isola__msg *m;
  if (v.kind <= ISOLA_DOUBLE || v.kind == ISOLA_PORT ||
      v.kind == ISOLA_CAPABILITY) {
    uint8_t cls;
    m = isola__pool_alloc(sizeof *m, &cls);
    if (!m) return ISOLA_ENOMEM;
    m->pool_class = cls;
    m->bytes = sizeof *m;
    m->value = v;
  } else {
    isola__plan p;
    int rc = isola__value_plan(&p, v);
    if (rc == ISOLA_OK && ISOLA__UNLIKELY(p.size > check_above))
      rc = check(sizeof *m + p.size, arg);
    if (rc == ISOLA_OK) {
      uint8_t cls;
      m = isola__pool_alloc(sizeof *m + p.size, &cls);
      if (m) {
        m->pool_class = cls;
        m->bytes = p.size > UINT32_MAX - sizeof *m
                       ? UINT32_MAX
                       : (uint32_t)(sizeof *m + p.size);
        rc = isola__value_write(&p, v, m + 1, mode, &m->value);
        if (rc != ISOLA_OK) isola__pool_free(m, cls);
      } else {
        rc = ISOLA_ENOMEM;
      }
    }
    isola__plan_done(&p);
    if (rc != ISOLA_OK) return rc;
  }
  m->charged = 0;
  m->held = 0;
  m->type = ISOLA__MSG_USER;
  m->dest = ISOLA_PORT_NONE;
  m->reply_to = ISOLA_PORT_NONE;
  *out = m;
  return ISOLA_OK;
}

int isola__msg_new(isola_value v, isola__msg **out) {
  return isola__msg_build(v, ISOLA__COPY_BUFFERS, out);
}

/* The message isola_send_reply() is posting on this thread (value.h). */
_Thread_local const isola__msg *isola__msg_posting;

void isola__msg_free_slow(isola__msg *m) {
  /* isola_exit_owned (exit.c): the header stands alone and the value is
   * an isola_value_copy() block the message adopted. */
  if (m->type == ISOLA__MSG_EXTERNAL) {
    isola_value_free(&m->value);
    isola__pool_free(m, (uint8_t)m->pool_class);
    return;
  }
  /* A value with a block holds it right after the header, and the block's
   * slots own the buffers moved or copied into the message, except while a
   * failing post hands them back to their sender (value.h). */
  if (isola__value_has_block(m->value) && m != isola__msg_posting)
    isola__block_release(m + 1);
  isola__pool_free(m, (uint8_t)m->pool_class);
}
