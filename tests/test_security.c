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

#include "name_server.h"
#include "random.h"
#include "value.h"
#include "vm.h"

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
  cr_assert(atomic_load(&ids_ok), "atomic_load(&ids_ok)");
  cr_assert(every_bit_varies(open_ids, NIDS),
            "a bit is the same in the ids of %d consecutive ports", NIDS);
  cr_assert(every_bit_varies(reopen_ids, NIDS),
            "a bit is the same in %d ids of one reused slot", NIDS);
  for (int i = 0; i < NIDS; i++)
    for (int j = 0; j < i; j++)
      cr_assert(reopen_ids[i] != reopen_ids[j], "an id came back");
  th_vm_shutdown_ok();
}

Test(security, the_id_permutation_round_trips_and_the_short_decode_agrees) {
  /* White box: decode inverts encode, and the lookup's three-round decode
   * of the low half (the slot index) agrees with the full one. */
  isola__idc k;
  cr_assert(isola__idc_init(&k) == 0, "no key");
  uint64_t x = 0x0123456789abcdefull;
  for (int i = 0; i < 100000; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t y = isola__idc_encode(&k, x);
    cr_assert(isola__idc_decode(&k, y) == x, "decode(encode(x)) != x");
    cr_assert(isola__idc_decode_low(&k, y) == (uint32_t)x,
              "the short decode disagrees");
    cr_assert(isola__idc_decode_low(&k, x) ==
                  (uint32_t)isola__idc_decode(&k, x),
              "the short decode disagrees on an arbitrary word");
  }
}

static th_counter memo_got = TH_COUNTER_INIT;
static isola_port memo_old;

static void memo_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  th_counter_add(&memo_got, 1);
  TH_CHECK_OK(isola_port_close(port));
}

static void memo_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(memo_handler, NULL, &p));
  /* An id of the VM before: this thread decoded it then. */
  if (memo_old)
    TH_CHECK_RC(isola_send(memo_old, isola_int(1)), ISOLA_ECLOSED);
  for (int i = 0; i < 3; i++) { /* decoded, then remembered */
    isola_port q;
    TH_CHECK_OK(isola_port_open(noop_handler, NULL, &q));
    TH_CHECK_OK(isola_send(q, isola_int(i)));
    TH_CHECK_OK(isola_port_close(q));
    TH_CHECK_RC(isola_send(q, isola_int(i)), ISOLA_ECLOSED);
  }
  TH_CHECK_OK(isola_send(p, isola_int(1)));
  memo_old = p;
}

Test(security, a_threads_id_memo_is_per_vm) {
  /* The lookup remembers the slot of ids it decoded (port_map.h): an id of
   * an earlier VM, or of a closed port, still answers ECLOSED, and a new
   * VM's ids are found. */
  for (int round = 0; round < 3; round++) {
    th_vm_init(NULL);
    TH_ASSERT_OK(isola_run_main(memo_entry, isola_null(), NULL));
    TH_WAIT_GE(&memo_got, round + 1);
    th_vm_shutdown_ok();
  }
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
  cr_assert(atomic_load(&oracle_ok), "atomic_load(&oracle_ok)");
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* 12.4: names have owners                                                 */
/* ---------------------------------------------------------------------- */

static th_counter owner_ready = TH_COUNTER_INIT, owner_done = TH_COUNTER_INIT;
static th_counter thief_done = TH_COUNTER_INIT;
static _Atomic isola_port owner_port;
static atomic_int owner_remove_rc = 1, thief_remove_rc = 1,
                  thief_register_rc = 1, thief_cap_rc = 1;

static void owner_handler(void *ctx, isola_port port, isola_value msg,
                          isola_port reply_to) {
  (void)ctx, (void)msg, (void)reply_to;
  atomic_store(&owner_remove_rc, isola_name_remove("svc"));
  TH_CHECK_OK(isola_port_close(port));
  th_counter_add(&owner_done, 1);
}

static void owner_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(owner_handler, NULL, &p));
  TH_CHECK_OK(isola_name_register("svc", p));
  atomic_store(&owner_port, p);
  th_counter_add(&owner_ready, 1);
}

static void thief_entry(isola_value msg) {
  (void)msg;
  isola_port mine;
  TH_CHECK_OK(isola_port_open(noop_handler, NULL, &mine));
  atomic_store(&thief_remove_rc, isola_name_remove("svc"));
  atomic_store(&thief_register_rc, isola_name_register("svc", mine));
  atomic_store(&thief_cap_rc,
               isola_name_remove_cap("svc", isola_capability_new()));
  TH_CHECK_OK(isola_port_close(mine));
  th_counter_add(&thief_done, 1);
}

Test(security, only_the_owner_removes_a_name) {
  /* Before issue 12 anyone could remove a name and register their own port
   * under it: the thief's remove succeeded. */
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_spawn(owner_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&owner_ready, 1);
  TH_ASSERT_OK(isola_spawn(thief_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&thief_done, 1);
  TH_ASSERT_RC(atomic_load(&thief_remove_rc), ISOLA_EPERM);
  TH_ASSERT_RC(atomic_load(&thief_register_rc), ISOLA_ENAMETAKEN);
  TH_ASSERT_RC(atomic_load(&thief_cap_rc), ISOLA_EPERM);
  /* Nor may a thread outside every isolate: it is another owner. */
  TH_ASSERT_RC(isola_name_remove("svc"), ISOLA_EPERM);
  isola_port got;
  TH_ASSERT_OK(isola_name_lookup("svc", &got));
  cr_assert(got == atomic_load(&owner_port), "the name changed hands");
  /* The owner may. */
  TH_ASSERT_OK(isola_send(got, isola_null()));
  TH_WAIT_GE(&owner_done, 1);
  TH_ASSERT_OK(atomic_load(&owner_remove_rc));
  th_vm_shutdown_ok();
}

static th_counter cap_done = TH_COUNTER_INIT;
static atomic_int cap_wrong_rc = 1, cap_right_rc = 1, cap_plain_rc = 1;
static _Atomic isola_capability the_cap;

static void cap_entry(isola_value msg) {
  (void)msg;
  atomic_store(&cap_plain_rc, isola_name_remove("capped"));
  atomic_store(&cap_wrong_rc,
               isola_name_remove_cap("capped", atomic_load(&the_cap) ^ 1));
  atomic_store(&cap_right_rc,
               isola_name_remove_cap("capped", atomic_load(&the_cap)));
  th_counter_add(&cap_done, 1);
}

static void holder_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(owner_handler, NULL, &p));
  atomic_store(&owner_port, p);
  th_counter_add(&owner_ready, 1);
}

Test(security, a_capability_chosen_by_the_owner_removes_a_name) {
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_spawn(holder_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&owner_ready, 1);
  isola_capability cap = isola_capability_new();
  cr_assert(cap != 0, "cap != 0");
  atomic_store(&the_cap, cap);
  TH_ASSERT_OK(isola_name_register_cap("capped", atomic_load(&owner_port),
                                       cap));
  TH_ASSERT_RC(isola_name_remove_cap("capped", 0), ISOLA_EINVAL);
  /* Registered without a capability: no capability removes it. */
  TH_ASSERT_OK(isola_name_register("uncapped", atomic_load(&owner_port)));
  TH_ASSERT_RC(isola_name_remove_cap("uncapped", cap), ISOLA_EPERM);
  TH_ASSERT_OK(isola_spawn(cap_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&cap_done, 1);
  TH_ASSERT_RC(atomic_load(&cap_plain_rc), ISOLA_EPERM);
  TH_ASSERT_RC(atomic_load(&cap_wrong_rc), ISOLA_EPERM);
  TH_ASSERT_OK(atomic_load(&cap_right_rc));
  isola_port got;
  TH_ASSERT_RC(isola_name_lookup("capped", &got), ISOLA_ENOTFOUND);
  /* The registering thread's owner still removes its own name. */
  TH_ASSERT_OK(isola_name_remove("uncapped"));
  TH_ASSERT_OK(isola_send(atomic_load(&owner_port), isola_null()));
  TH_WAIT_GE(&owner_done, 1);
  th_vm_shutdown_ok();
}

/* 64-bit FNV-1a, the table's hash before issue 12. */
static uint64_t fnv1a(const char *s, size_t len) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)s[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

/* White box: the longest chain of the table's by-name index.  Each entry
 * starts with its by-name link (name_server.c keeps it first). */
static size_t longest_name_chain(void) {
  isola__vm *vm = isola__vm_get();
  pthread_mutex_lock(&vm->names.lock);
  size_t longest = 0;
  for (size_t b = 0; b < vm->names.nbuckets; b++) {
    size_t n = 0;
    for (void *e = vm->names.by_name[b]; e; e = *(void **)e) n++;
    if (n > longest) longest = n;
  }
  pthread_mutex_unlock(&vm->names.lock);
  return longest;
}

#define NCRAFTED 2000

Test(security, crafted_names_do_not_share_a_chain) {
  /* Names whose unkeyed hash agrees in its low 12 bits: before issue 12
   * all 2,000 fell into one chain (lookups 800 times slower). */
  th_vm_init(NULL);
  TH_ASSERT_OK(isola_spawn(holder_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&owner_ready, 1);
  isola_port p = atomic_load(&owner_port);
  char name[32];
  int made = 0;
  for (unsigned long i = 0; made < NCRAFTED; i++) {
    int len = snprintf(name, sizeof name, "k%lx", i);
    if ((fnv1a(name, (size_t)len) & 0xfff) != 0) continue;
    TH_ASSERT_OK(isola_name_register(name, p));
    made++;
  }
  /* A keyed hash spreads 2,000 names over 2,048 chains; a chain of 32 has
   * a probability below 2^-100. */
  size_t longest = longest_name_chain();
  cr_assert(longest < 32, "one chain holds %zu of %d names", longest,
            NCRAFTED);
  TH_ASSERT_OK(isola_send(p, isola_null()));
  TH_WAIT_GE(&owner_done, 1);
  th_vm_shutdown_ok();
}

/* ---------------------------------------------------------------------- */
/* 12.5: a forked child draws other capabilities                           */
/* ---------------------------------------------------------------------- */

Test(security, a_forked_child_draws_fresh_capabilities) {
  /* Before issue 12 the child went on with a copy of the parent's CSPRNG:
   * its next capability was the parent's next one. */
  /* Seeds this thread's generator. */
  cr_assert(isola_capability_new() != 0, "no capability");
  int fds[2];
  cr_assert(pipe(fds) == 0, "pipe(fds) == 0");
  pid_t pid = fork();
  cr_assert(pid >= 0, "fork failed");
  if (pid == 0) {
    isola_capability c[2] = {isola_capability_new(), isola_capability_new()};
    ssize_t w = write(fds[1], c, sizeof c);
    _exit(w == (ssize_t)sizeof c ? 0 : 1);
  }
  close(fds[1]);
  isola_capability child[2] = {0, 0};
  ssize_t r = read(fds[0], child, sizeof child);
  close(fds[0]);
  int status = 0;
  cr_assert(waitpid(pid, &status, 0) == pid, "waitpid failed");
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "the child failed");
  cr_assert(r == (ssize_t)sizeof child, "the child wrote %zd bytes", r);
  isola_capability mine[2] = {isola_capability_new(), isola_capability_new()};
  cr_assert(child[0] != 0 && child[1] != 0, "the child drew 0");
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 2; j++)
      cr_assert(child[i] != mine[j], "the child repeated the parent's "
                                     "capability %d as its %d", j, i);
}

/* ---------------------------------------------------------------------- */
/* 12.2: a decoded value costs what the limits allow, to copy and encode   */
/* ---------------------------------------------------------------------- */

/* [28(x), 29(0) x nrefs] where x is a string of slen bytes (as_list:
 * [28([x]), 29(0) x nrefs], the string inside a shared list). */
static uint8_t *amplifier(size_t slen, size_t nrefs, bool as_list,
                          size_t *len) {
  size_t cap = 16 + slen + 3 * nrefs;
  uint8_t *p = malloc(cap), *q = p;
  cr_assert(p != NULL, "malloc");
  size_t n = nrefs + 1;
  *q++ = 0x9a; /* array, 4-byte length */
  for (int i = 3; i >= 0; i--) *q++ = (uint8_t)(n >> (8 * i));
  *q++ = 0xd8;
  *q++ = 0x1c;
  if (as_list) *q++ = 0x81;
  *q++ = 0x7a; /* text, 4-byte length */
  for (int i = 3; i >= 0; i--) *q++ = (uint8_t)(slen >> (8 * i));
  memset(q, 'x', slen);
  q += slen;
  for (size_t i = 0; i < nrefs; i++) {
    *q++ = 0xd8;
    *q++ = 0x1d;
    *q++ = 0x00;
  }
  *len = (size_t)(q - p);
  return p;
}

/* White box: what a copy or send of v plans to allocate. */
static size_t planned_copy(isola_value v) {
  isola__plan plan;
  TH_ASSERT_OK(isola__value_plan(&plan, v));
  size_t n = plan.size;
  isola__plan_done(&plan);
  return n;
}

Test(security, a_decoded_value_copies_and_encodes_within_the_limits) {
  /* Before issue 12 the first input (155 KB) decoded within the default
   * limits and planned a 1.97 GB copy: tag 28 on a string let every
   * three-byte tag 29 stand for all 64 KiB of it. */
  size_t len;
  uint8_t *in = amplifier(65536, 30000, false, &len);
  isola_value v = isola_null();
  int rc = isola_wire_decode(in, len, NULL, &v);
  if (rc == ISOLA_OK) {
    size_t planned = planned_copy(v);
    isola_value_free(&v);
    cr_assert_fail("a %zu-byte input decoded to a value whose copy needs "
                   "%zu bytes", len, planned);
  }
  TH_ASSERT_RC(rc, ISOLA_EBADTAG);
  free(in);
  /* Shared containers stay shared: copy and encoding cost them once. */
  in = amplifier(65536, 30000, true, &len);
  TH_ASSERT_OK(isola_wire_decode(in, len, NULL, &v));
  /* What max_size counts: 16 bytes per element (each here three input
   * bytes) and the string once. */
  size_t want = ISOLA__BLOCK_HDR + 16 * 30001 + 16 + 65537;
  cr_assert(planned_copy(v) <= ((want + 7) & ~(size_t)7),
            "the copy plans %zu bytes for %zu", planned_copy(v), want);
  uint8_t *enc;
  size_t n;
  TH_ASSERT_OK(isola_wire_encode(v, &enc, &n));
  cr_assert(n <= len, "encoded to %zu bytes from %zu", n, len);
  isola_value c;
  TH_ASSERT_OK(isola_value_copy(v, &c));
  cr_assert(isola_value_equal(v, c), "the copy differs");
  isola_value_free(&c);
  isola_value w;
  TH_ASSERT_OK(isola_wire_decode(enc, n, NULL, &w));
  isola_value_free(&w);
  free(enc);
  isola_value_free(&v);
  free(in);
}

/* ---------------------------------------------------------------------- */
/* 12.2 and 12.3: what others make an isolate hold is bounded by its limit */
/* ---------------------------------------------------------------------- */

#define SMALL_LIMIT (64 * 1024)

static th_counter lim_ready = TH_COUNTER_INIT, lim_handled = TH_COUNTER_INIT;
static _Atomic isola_port lim_port;

static void lim_handler(void *ctx, isola_port port, isola_value msg,
                        isola_port reply_to) {
  (void)ctx, (void)reply_to;
  if (msg.kind == ISOLA_NULL) {
    TH_CHECK_OK(isola_port_close(port));
    return;
  }
  th_counter_add(&lim_handled, 1);
}

static void lim_entry(isola_value msg) {
  (void)msg;
  isola_port p;
  TH_CHECK_OK(isola_port_open(lim_handler, NULL, &p));
  atomic_store(&lim_port, p);
  th_counter_add(&lim_ready, 1);
}

/* Test thread: an isolate with a 64 KiB heap limit and one port. */
static isola_isolate spawn_limited(void) {
  isola_spawn_options o = {0};
  o.heap_limit = SMALL_LIMIT;
  isola_isolate h;
  long before = th_counter_get(&lim_ready);
  TH_ASSERT_OK(isola_spawn(lim_entry, isola_null(), &o, &h));
  TH_WAIT_GE(&lim_ready, before + 1);
  return h;
}

static th_counter pong = TH_COUNTER_INIT;
static isola_port pong_port_id;

static void pong_handler(void *ctx, isola_port port, isola_value msg,
                         isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  if (msg.kind == ISOLA_NULL) {
    TH_CHECK_OK(isola_port_close(port));
    return;
  }
  th_counter_add(&pong, 1);
}

static void pong_entry(isola_value msg) {
  (void)msg;
  TH_CHECK_OK(isola_port_open(pong_handler, NULL, &pong_port_id));
  th_counter_add(&pong, 1);
}

/* Test thread: waits until every request sent to h before is handled. */
static void sync_with(const isola_isolate *h) {
  long before = th_counter_get(&pong);
  TH_ASSERT_OK(isola_ping(h, pong_port_id, isola_int(1), ISOLA_IMMEDIATE));
  TH_WAIT_GE(&pong, before + 1);
}

static void start_pong(void) {
  TH_ASSERT_OK(isola_spawn(pong_entry, isola_null(), NULL, NULL));
  TH_WAIT_GE(&pong, 1);
}

Test(security, a_send_over_the_receivers_limit_is_refused_before_it_is_built) {
  /* Before issue 12 the sender built the copy whatever the receiver's
   * limit, and the receiver dropped it.  The value claims 3 GiB over a
   * 16-byte buffer: building it would read far past the buffer. */
  th_vm_init(NULL);
  spawn_limited();
  static const uint8_t small[16];
  isola_value huge = isola_bytes(small, (size_t)3 << 30);
  TH_ASSERT_RC(isola_send(atomic_load(&lim_port), huge), ISOLA_EFULL);
  isola_value items[2] = {isola_int(1), huge};
  TH_ASSERT_RC(isola_send(atomic_load(&lim_port), isola_list(items, 2)),
               ISOLA_EFULL);
  /* A message under the limit still goes. */
  TH_ASSERT_OK(isola_send(atomic_load(&lim_port), isola_int(1)));
  TH_WAIT_GE(&lim_handled, 1);
  TH_ASSERT_OK(isola_send(atomic_load(&lim_port), isola_null()));
  th_vm_shutdown_ok();
}

Test(security, queued_messages_count_against_the_receivers_limit) {
  /* Before issue 12 a paused or slow isolate's mailbox grew without bound
   * (977 MB in the probe): every send succeeded. */
  th_vm_init(NULL);
  isola_isolate h = spawn_limited();
  isola_capability resume = isola_capability_new();
  TH_ASSERT_OK(isola_pause(&h, resume));
  static uint8_t kib[1024];
  int sent = 0, rc = ISOLA_OK;
  while (sent < 1000 &&
         (rc = isola_send(atomic_load(&lim_port),
                          isola_bytes(kib, sizeof kib))) == ISOLA_OK)
    sent++;
  TH_ASSERT_RC(rc, ISOLA_EFULL);
  cr_assert(sent > 0 && sent <= SMALL_LIMIT / 1024,
            "%d messages of 1 KiB were queued under a 64 KiB limit", sent);
  /* Handled, they free their room again. */
  TH_ASSERT_OK(isola_resume(&h, resume));
  TH_WAIT_GE(&lim_handled, sent);
  for (int i = 0; i < sent; i++)
    TH_ASSERT_OK(isola_send(atomic_load(&lim_port),
                            isola_bytes(kib, sizeof kib)));
  TH_WAIT_GE(&lim_handled, 2 * sent);
  TH_ASSERT_OK(isola_send(atomic_load(&lim_port), isola_null()));
  th_vm_shutdown_ok();
}

Test(security, exit_listener_responses_count_against_the_limit) {
  /* Before issue 12, 10,000 exit listeners with 64 KiB responses took an
   * isolate limited to 64 KiB to 838 MB: every add succeeded. */
  th_vm_init(NULL);
  start_pong();
  isola_isolate h = spawn_limited();
  static uint8_t big[16 * 1024];
  isola_value resp = isola_bytes(big, sizeof big);
  int added = 0, rc = ISOLA_OK;
  /* Made-up listener ports: nobody checks them before the isolate ends. */
  while (added < 1000 && (rc = isola_add_exit_listener(
                              &h, (isola_port)(1000 + added), resp)) ==
                             ISOLA_OK)
    added++;
  TH_ASSERT_RC(rc, ISOLA_EFULL);
  cr_assert(added > 0 && added <= SMALL_LIMIT / (int)sizeof big,
            "%d listeners of 16 KiB were held under a 64 KiB limit", added);
  /* The isolate keeps what it holds after handling the requests. */
  sync_with(&h);
  TH_ASSERT_RC(isola_add_exit_listener(&h, 999, resp), ISOLA_EFULL);
  /* Removing one gives its room back. */
  TH_ASSERT_OK(isola_remove_exit_listener(&h, 1000));
  sync_with(&h);
  TH_ASSERT_OK(isola_add_exit_listener(&h, 999, resp));
  sync_with(&h);
  TH_ASSERT_OK(isola_send(atomic_load(&lim_port), isola_null()));
  TH_ASSERT_OK(isola_send(pong_port_id, isola_null()));
  th_vm_shutdown_ok();
}

Test(security, pending_pings_count_against_the_limit) {
  /* Before issue 12 pings waiting for a paused isolate's next event held
   * their responses without bound. */
  th_vm_init(NULL);
  start_pong();
  isola_isolate h = spawn_limited();
  isola_capability resume = isola_capability_new();
  TH_ASSERT_OK(isola_pause(&h, resume));
  static uint8_t big[16 * 1024];
  isola_value resp = isola_bytes(big, sizeof big);
  int pinged = 0, rc = ISOLA_OK;
  while (pinged < 1000 &&
         (rc = isola_ping(&h, pong_port_id, resp,
                          ISOLA_BEFORE_NEXT_EVENT)) == ISOLA_OK)
    pinged++;
  TH_ASSERT_RC(rc, ISOLA_EFULL);
  cr_assert(pinged > 0 && pinged <= SMALL_LIMIT / (int)sizeof big,
            "%d pings of 16 KiB were held under a 64 KiB limit", pinged);
  /* Resumed, it answers them all and has room again. */
  long before = th_counter_get(&pong);
  TH_ASSERT_OK(isola_resume(&h, resume));
  TH_WAIT_GE(&pong, before + pinged);
  TH_ASSERT_OK(isola_ping(&h, pong_port_id, resp, ISOLA_IMMEDIATE));
  TH_WAIT_GE(&pong, before + pinged + 1);
  TH_ASSERT_OK(isola_send(atomic_load(&lim_port), isola_null()));
  TH_ASSERT_OK(isola_send(pong_port_id, isola_null()));
  th_vm_shutdown_ok();
}
