/* SPDX-License-Identifier: MIT */
/* test_hooks.c — armed failures for the test suite (test_hooks.h). */
#include "test_hooks.h"

#ifdef ISOLA_TEST_HOOKS
#include <stdatomic.h>

#include "vm.h"

static _Atomic unsigned armed[ISOLA__FAIL_SITES];

void isola__test_fail(int site, unsigned n) {
  atomic_store(&armed[site], n);
}

bool isola__test_failing(int site) {
  unsigned n = atomic_load(&armed[site]);
  while (n > 0)
    if (atomic_compare_exchange_weak(&armed[site], &n, n - 1)) return true;
  return false;
}

static _Atomic size_t unprotected_posts;

void isola__test_post_check(void) {
  isola__epoch_rec *r = isola__t.rec;
  if (!r || !atomic_load_explicit(&r->epoch, memory_order_relaxed))
    atomic_fetch_add(&unprotected_posts, 1);
}

size_t isola__test_unprotected_posts(void) {
  return atomic_load(&unprotected_posts);
}

size_t isola__test_isolates_freed(void) {
  isola__vm *vm = isola__vm_get();
  return vm ? atomic_load(&vm->epoch.nfreed) : 0;
}
#else
/* ISO C wants a translation unit to declare something. */
typedef int isola__test_hooks_unused;
#endif
