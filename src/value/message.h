/* SPDX-License-Identifier: MIT */
/* message.h — building and freeing messages (message.c).  The type itself,
 * isola__msg, is in internal.h: the mailbox and every layer above it link
 * messages. */
#ifndef ISOLA_MESSAGE_H
#define ISOLA_MESSAGE_H

#include "internal.h"
#include "pool.h"
#include "value.h"

/* Builds a message holding a copy of v; mode says whether transferable
 * buffers move into it or are copied (ISOLA__MOVE_BUFFERS or
 * ISOLA__COPY_BUFFERS, value.h).  Moving consumes nothing yet: the sender's
 * handles are emptied only once the post succeeds.  The message is a
 * ISOLA__MSG_USER with no destination.  ISOLA_EINVAL, ISOLA_ENOMEM. */
int isola__msg_build(isola_value v, int mode, isola__msg **out);

/* As isola__msg_build(), and once the copy is planned, before anything is
 * allocated, a copy of more than check_above bytes is passed to
 * check(bytes of the message, arg), which may refuse it: its error is the
 * result.  Scalars are not planned, so not checked. */
int isola__msg_build_checked(isola_value v, int mode, size_t check_above,
                             int (*check)(size_t bytes, void *arg), void *arg,
                             isola__msg **out);

/* A message holding a copy of v; ISOLA_EINVAL, ISOLA_ENOMEM. */
int isola__msg_new(isola_value v, isola__msg **out);

/* isola__msg_free() of a message that owns more than its pool block. */
void isola__msg_free_slow(isola__msg *m);

/* Frees a message and what it owns.  Inline for the common case, a
 * message whose value holds no block (a scalar: only the header). */
static inline void isola__msg_free(isola__msg *m) {
  if (ISOLA__LIKELY(m->type != ISOLA__MSG_EXTERNAL &&
                    !isola__value_has_block(m->value)))
    isola__pool_free(m, (uint8_t)m->pool_class);
  else
    isola__msg_free_slow(m);
}

#endif
