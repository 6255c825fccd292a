/* SPDX-License-Identifier: MIT */
/* root.c — isola_run_main_ctx: a root isolate whose entry takes the
 * caller's context pointer, with spawn options. */
#include <stdint.h>

#include "detail.h"
#include "internal.h"
#include "isolate.h"

/* Lives on the caller's stack: isola_run_main_ctx returns only after the
 * root isolate has ended, so the trampoline never outlives it. */
typedef struct root_start {
  isola_main_entry entry;
  void *ctx;
} root_start;

/* The root's entry: the spawn message is [address of a root_start,
 * the caller's message]; only this file builds it. */
static void root_entry(isola_value m) {
  const root_start *s = (const root_start *)(intptr_t)m.as.items[0].as.i;
  s->entry(s->ctx, m.as.items[1]);
}

int isola_run_main_ctx(isola_main_entry entry, void *ctx, isola_value message,
                       const isola_spawn_options *opts) {
  if (!entry) {
    isola__detail_set("isola_run_main_ctx: entry is NULL");
    return ISOLA_EINVAL;
  }
  root_start s = {entry, ctx};
  isola_value items[2] = {isola_int((int64_t)(intptr_t)&s), message};
  return isola__run_main_ex(root_entry, isola_list(items, 2), opts);
}
