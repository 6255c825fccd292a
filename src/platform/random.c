/* SPDX-License-Identifier: MIT */
/* random.c — the CSPRNG and the keyed permutation of random.h. */
#include "random.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "platform.h"

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static inline void sipround(uint64_t *v0, uint64_t *v1, uint64_t *v2,
                            uint64_t *v3) {
  *v0 += *v1;
  *v1 = ROTL(*v1, 13);
  *v1 ^= *v0;
  *v0 = ROTL(*v0, 32);
  *v2 += *v3;
  *v3 = ROTL(*v3, 16);
  *v3 ^= *v2;
  *v0 += *v3;
  *v3 = ROTL(*v3, 21);
  *v3 ^= *v0;
  *v2 += *v1;
  *v1 = ROTL(*v1, 17);
  *v1 ^= *v2;
  *v2 = ROTL(*v2, 32);
}

uint64_t isola__siphash(const uint64_t key[2], uint64_t word, int c, int d) {
  uint64_t v0 = 0x736f6d6570736575ULL ^ key[0];
  uint64_t v1 = 0x646f72616e646f6dULL ^ key[1];
  uint64_t v2 = 0x6c7967656e657261ULL ^ key[0];
  uint64_t v3 = 0x7465646279746573ULL ^ key[1];
  /* One full 8-byte block, then the length block of an 8-byte message. */
  const uint64_t len_block = (uint64_t)8 << 56;
  v3 ^= word;
  for (int i = 0; i < c; i++) sipround(&v0, &v1, &v2, &v3);
  v0 ^= word;
  v3 ^= len_block;
  for (int i = 0; i < c; i++) sipround(&v0, &v1, &v2, &v3);
  v0 ^= len_block;
  v2 ^= 0xff;
  for (int i = 0; i < d; i++) sipround(&v0, &v1, &v2, &v3);
  return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t isola__siphash_bytes(const uint64_t key[2], const void *data,
                              size_t len, int c, int d) {
  const unsigned char *p = data;
  uint64_t v0 = 0x736f6d6570736575ULL ^ key[0];
  uint64_t v1 = 0x646f72616e646f6dULL ^ key[1];
  uint64_t v2 = 0x6c7967656e657261ULL ^ key[0];
  uint64_t v3 = 0x7465646279746573ULL ^ key[1];
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t m = 0;
    for (int b = 0; b < 8; b++) m |= (uint64_t)p[i + b] << (8 * b);
    v3 ^= m;
    for (int r = 0; r < c; r++) sipround(&v0, &v1, &v2, &v3);
    v0 ^= m;
  }
  uint64_t last = (uint64_t)len << 56;
  for (int b = 0; i + (size_t)b < len; b++)
    last |= (uint64_t)p[i + b] << (8 * b);
  v3 ^= last;
  for (int r = 0; r < c; r++) sipround(&v0, &v1, &v2, &v3);
  v0 ^= last;
  v2 ^= 0xff;
  for (int r = 0; r < d; r++) sipround(&v0, &v1, &v2, &v3);
  return v0 ^ v1 ^ v2 ^ v3;
}

/* fork() copies every thread's generator into the child, where the next
 * numbers would repeat the parent's.  The child handler counts forks; a
 * generator seeded before the last fork re-seeds on its next use. */
static _Atomic unsigned forks;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void count_fork(void) {
  atomic_fetch_add_explicit(&forks, 1, memory_order_relaxed);
}

static void register_atfork(void) {
  /* Nothing to do if it fails: pthread_atfork fails only for want of
   * memory, and then no fork is counted. */
  (void)pthread_atfork(NULL, NULL, count_fork);
}

int isola__rng_seed(isola__rng *r) {
  pthread_once(&atfork_once, register_atfork);
  r->forks = atomic_load_explicit(&forks, memory_order_relaxed);
  if (isola__plat_random(r->key, sizeof r->key) != 0) return -1;
  r->counter = 0;
  r->seeded = true;
  return 0;
}

static void reseed_after_fork(isola__rng *r) {
  if (isola__rng_seed(r) == 0) return;
  /* The kernel refused: at least leave the parent's stream. */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  r->key[0] ^= isola__siphash(r->key, (uint64_t)getpid(), 2, 4);
  r->key[1] ^= isola__siphash(r->key, (uint64_t)ts.tv_sec * 1000000000u +
                                          (uint64_t)ts.tv_nsec, 2, 4);
  r->forks = atomic_load_explicit(&forks, memory_order_relaxed);
  r->seeded = true;
}

uint64_t isola__rng_next(isola__rng *r) {
  if (r->forks != atomic_load_explicit(&forks, memory_order_relaxed))
    reseed_after_fork(r);
  for (;;) {
    uint64_t x = isola__siphash(r->key, r->counter++, 1, 3);
    if (x != 0) return x;
  }
}

int isola__idc_init(isola__idc *c) {
  uint64_t w[2 + ISOLA__IDC_ROUNDS];
  if (isola__plat_random(w, sizeof w) != 0) return -1;
  c->in = w[0];
  c->out = w[1];
  for (int i = 0; i < ISOLA__IDC_ROUNDS; i++) {
    c->a[i] = (uint32_t)w[2 + i];
    c->c[i] = (uint32_t)(w[2 + i] >> 32);
  }
  return 0;
}
