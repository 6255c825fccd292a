/* SPDX-License-Identifier: MIT */
/* random.c — the CSPRNG and the keyed permutation of random.h. */
#include "random.h"

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

int isola__rng_seed(isola__rng *r) {
  if (isola__plat_random(r->key, sizeof r->key) != 0) return -1;
  r->counter = 0;
  r->seeded = true;
  return 0;
}

uint64_t isola__rng_next(isola__rng *r) {
  for (;;) {
    uint64_t x = isola__siphash(r->key, r->counter++, 1, 3);
    if (x != 0) return x;
  }
}

uint64_t isola__prp(const uint64_t key[2], uint64_t tweak, uint64_t x,
                    int bits) {
  /* A balanced Feistel network on two halves of bits/2 bits.  With a
   * pseudo-random round function, three rounds give a pseudo-random
   * permutation (Luby and Rackoff), which is what unpredictable ids need:
   * nobody can ask us to invert it. */
  const int half = bits / 2;
  const uint64_t mask = ((uint64_t)1 << half) - 1;
  uint64_t l = (x >> half) & mask, r = x & mask;
  for (uint64_t round = 0; round < 3; round++) {
    uint64_t in = (tweak << 24) ^ (round << 62) ^ r;
    uint64_t f = isola__siphash(key, in, 1, 3) & mask;
    uint64_t nl = r;
    r = l ^ f;
    l = nl;
  }
  return (l << half) | r;
}
