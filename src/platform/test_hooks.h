/* SPDX-License-Identifier: MIT */
/*
 * test_hooks.h — failures the test suite can ask for, to reach paths that
 * only a transient lack of memory takes.  Compiled in only with the CMake
 * option ISOLA_TEST_HOOKS (the test build sets it); otherwise every check
 * is a constant false and costs nothing.  Tests arm a site with
 * isola__test_fail(site, n): the next n checks of that site fail.
 */
#ifndef ISOLA_TEST_HOOKS_H
#define ISOLA_TEST_HOOKS_H

#include <stdbool.h>
#include <stddef.h>

enum {
  ISOLA__FAIL_EVENT_MSG, /* the event thread builds a timer or fd message */
  ISOLA__FAIL_EVENT_REC, /* the event thread registers its epoch record */
  ISOLA__FAIL_STAND_IN,  /* isola_blocking_begin starts a stand-in thread */
  ISOLA__FAIL_FENCE_HEAVY, /* a new VM's scheduler asks for membarrier(2) */
  ISOLA__FAIL_RUNNEXT_STEAL, /* a thief tries another worker's runnext */
  ISOLA__FAIL_SITES
};

#ifdef ISOLA_TEST_HOOKS
/* Arms site: its next n checks fail.  Any thread. */
void isola__test_fail(int site, unsigned n);
/* Whether this check of site fails (consumes one armed failure). */
bool isola__test_failing(int site);
/* Isolates the running VM's reclaimer has freed so far. */
size_t isola__test_isolates_freed(void);
/* Posts (and outbox pushes) made so far by a thread whose epoch record was
 * missing or offline (ISOLA__TEST_POST_CHECK in send.c): each could touch
 * a freed isolate. */
size_t isola__test_unprotected_posts(void);
#else
static inline bool isola__test_failing(int site) {
  (void)site;
  return false;
}
#endif

#endif
