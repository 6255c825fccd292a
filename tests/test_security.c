/* SPDX-License-Identifier: MIT */
/*
 * Security (issue 12, docs/security.md): port ids that show nothing and
 * answer every wrong guess alike, bounded cost for untrusted bytes and for
 * requests, names with owners, a fresh CSPRNG after fork().
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "helpers.h"

#include <sys/wait.h>
#include <unistd.h>

TestSuite(security, .timeout = TH_TEST_TIMEOUT_S);

static void noop_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
}

/* Whether every one of the 64 bits is 0 in some id and 1 in another.  For
 * n unpredictable ids a bit is constant with probability 2^(1-n). */
static bool every_bit_varies(const isola_port *ids, size_t n) {
  uint64_t ones = 0, zeros = 0;
  for (size_t i = 0; i < n; i++) {
    ones |= ids[i];
    zeros |= ~ids[i];
  }
  return ones == UINT64_MAX && zeros == UINT64_MAX;
}

/* ---------------------------------------------------------------------- */
/* 12.1: ids show neither slot index nor generation                        */
/* ---------------------------------------------------------------------- */

#define NIDS 512
static isola_port open_ids[NIDS], reopen_ids[NIDS];
static atomic_int ids_ok;

static void ids_entry(isola_value msg) {
  (void)msg;
  /* Many ports at once: consecutive slots. */
  for (int i = 0; i < NIDS; i++)
    TH_CHECK_OK(isola_port_open(noop_handler, NULL, &open_ids[i]));
  for (int i = 0; i < NIDS; i++) TH_CHECK_OK(isola_port_close(open_ids[i]));
  /* One port opened and closed again and again: one slot, reused. */
  for (int i = 0; i < NIDS; i++) {
    TH_CHECK_OK(isola_port_open(noop_handler, NULL, &reopen_ids[i]));
    TH_CHECK_OK(isola_port_close(reopen_ids[i]));
  }
  atomic_store(&ids_ok, 1);
}

Test(security, port_ids_show_neither_slot_nor_generation) {
  /* Before issue 12 an id was tag << 28 | slot: the low 28 bits of
   * consecutive ports counted up, and a reused slot kept them. */
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(ids_entry, isola_null(), NULL));
  cr_assert(atomic_load(&ids_ok));
  cr_assert(every_bit_varies(open_ids, NIDS),
            "a bit is the same in the ids of %d consecutive ports", NIDS);
  cr_assert(every_bit_varies(reopen_ids, NIDS),
            "a bit is the same in %d ids of one reused slot", NIDS);
  for (int i = 0; i < NIDS; i++)
    for (int j = 0; j < i; j++)
      cr_assert(reopen_ids[i] != reopen_ids[j], "an id came back");
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* 12.1: every wrong id answers alike                                      */
/* ---------------------------------------------------------------------- */

static atomic_int oracle_ok;

static void oracle_entry(isola_value msg) {
  (void)msg;
  isola_isolate self;
  TH_CHECK_OK(isola_current(&self));
  isola_port p, closed;
  TH_CHECK_OK(isola_port_open(noop_handler, NULL, &p));
  TH_CHECK_OK(isola_port_open(noop_handler, NULL, &closed));
  TH_CHECK_OK(isola_port_close(closed));
  /* A user message to a control port, to a closed port, to ids nobody was
   * given: one answer. */
  TH_CHECK_RC(isola_send(self.control_port, isola_int(1)), ISOLA_ECLOSED);
  TH_CHECK_RC(isola_send(closed, isola_int(1)), ISOLA_ECLOSED);
  TH_CHECK_RC(isola_send(self.control_port ^ 1, isola_int(1)),
              ISOLA_ECLOSED);
  TH_CHECK_RC(isola_send(p ^ ((isola_port)1 << 63), isola_int(1)),
              ISOLA_ECLOSED);
  for (uint64_t i = 1; i < 64; i++)
    TH_CHECK_RC(isola_send(i, isola_int(1)), ISOLA_ECLOSED);
  /* A control request to a user port, a closed port or an unknown id. */
  isola_isolate bogus;
  TH_CHECK_OK(isola_isolate_from_port(p, &bogus));
  TH_CHECK_RC(isola_ping(&bogus, p, isola_null(), ISOLA_IMMEDIATE),
              ISOLA_ECLOSED);
  TH_CHECK_OK(isola_isolate_from_port(closed, &bogus));
  TH_CHECK_RC(isola_ping(&bogus, p, isola_null(), ISOLA_IMMEDIATE),
              ISOLA_ECLOSED);
  TH_CHECK_OK(isola_isolate_from_port(12345, &bogus));
  TH_CHECK_RC(isola_ping(&bogus, p, isola_null(), ISOLA_IMMEDIATE),
              ISOLA_ECLOSED);
  TH_CHECK_OK(isola_port_close(p));
  atomic_store(&oracle_ok, 1);
}

Test(security, wrong_ids_all_answer_ECLOSED) {
  /* Before issue 12 a user message to a control port answered ISOLA_EINVAL
   * and an unknown id ISOLA_ECLOSED: an oracle for control ports. */
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_run_main(oracle_entry, isola_null(), NULL));
  cr_assert(atomic_load(&oracle_ok));
  th_vm_shutdown_ok();
}
