/* SPDX-License-Identifier: MIT */
/* detail.h — the calling thread's last-error detail (isola_error_detail)
 * and the explanations written into it (detail.c). */
#ifndef ISOLA_DETAIL_H
#define ISOLA_DETAIL_H

#include "isola.h"

/* Sets the calling thread's detail (printf format).  Slow path only: call
 * it where an error is returned, never on success. */
void isola__detail_set(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* Explains why v was refused with rc (ISOLA_EINVAL or ISOLA_ETRANSFER by
 * the copy planner): the path of the first bad item and what is wrong
 * with it.  Walks v again, so it costs only when a value is refused. */
void isola__detail_value(isola_value v, int rc);

#endif
