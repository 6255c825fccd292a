/* SPDX-License-Identifier: MIT */
/*
 * random.h — unguessable numbers without a system call per number.
 *
 * SipHash-1-3 (a keyed pseudo-random function) run in counter mode is the
 * CSPRNG: each thread keeps a 128-bit key drawn once from the kernel and a
 * counter.  Port ids are a keyed permutation of 64-bit words (isola__idc:
 * a Feistel network with multiplying rounds), so ids never repeat, every
 * bit of one depends on the key, and decoding one costs a few multiplies.
 */
#ifndef ISOLA_RANDOM_H
#define ISOLA_RANDOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct isola__rng {
  uint64_t key[2];
  uint64_t counter;
  unsigned forks; /* the process's fork count when seeded */
  bool seeded;
} isola__rng;

/* SipHash-c-d of one 64-bit word under key. */
uint64_t isola__siphash(const uint64_t key[2], uint64_t word, int c, int d);

/* SipHash-c-d of len bytes at data under key (the reference algorithm). */
uint64_t isola__siphash_bytes(const uint64_t key[2], const void *data,
                              size_t len, int c, int d);

/* Seeds r from the kernel.  Returns 0, or -1 if the kernel refused. */
int isola__rng_seed(isola__rng *r);

/* The next 64 unpredictable bits; r must be seeded.  Never returns 0.
 * In a child of fork(), the first call re-seeds r (a pthread_atfork
 * handler counts forks), so parent and child never share a stream; should
 * the kernel refuse the new seed, the key is changed by the child's pid
 * and the clock instead: another stream, though not a secret one. */
uint64_t isola__rng_next(isola__rng *r);

/* The port id cipher: a keyed permutation of all 2^64 words.  A balanced
 * Feistel network on two 32-bit halves, whitened with a 64-bit key before
 * and after; each round adds to one half the 64-bit product of the other
 * half xored with two round keys, (r ^ a) * (r ^ c), folded to 32 bits:
 * quadratic in r (carries make it non-linear over bits) and keyed twice.
 * Four rounds; decoding the low half, all a send needs, is three 64-bit
 * multiplies in a chain (about 25 cycles).  It is a lightweight
 * construction chosen for that cost, not a vetted block cipher: see
 * docs/security.md. */
#define ISOLA__IDC_ROUNDS 4
typedef struct isola__idc {
  uint64_t in, out;                /* whitening keys */
  uint32_t a[ISOLA__IDC_ROUNDS];   /* round keys */
  uint32_t c[ISOLA__IDC_ROUNDS];
} isola__idc;

/* Fills c with keys drawn from the kernel.  Returns 0, or -1 if it refused. */
int isola__idc_init(isola__idc *c);

static inline uint32_t isola__idc_f(uint32_t r, uint32_t a, uint32_t c) {
  uint64_t t = (uint64_t)(r ^ a) * (uint64_t)(r ^ c);
  return (uint32_t)(t >> 32) ^ (uint32_t)t;
}

static inline uint64_t isola__idc_encode(const isola__idc *k, uint64_t x) {
  x ^= k->in;
  uint32_t l = (uint32_t)(x >> 32), r = (uint32_t)x;
  for (int i = 0; i < ISOLA__IDC_ROUNDS; i++) {
    uint32_t nl = r;
    r = l + isola__idc_f(r, k->a[i], k->c[i]);
    l = nl;
  }
  return (((uint64_t)l << 32) | r) ^ k->out;
}

/* The low 32 bits of isola__idc_decode(k, y), one round sooner: the low
 * half of the input comes out of the second-last round of the decode (the
 * last one only makes the high half).  A port lookup needs no more (the
 * slot index), and checks the whole id against the slot's. */
static inline uint32_t isola__idc_decode_low(const isola__idc *k,
                                             uint64_t y) {
  y ^= k->out;
  uint32_t l = (uint32_t)(y >> 32), r = (uint32_t)y;
  for (int i = ISOLA__IDC_ROUNDS - 1; i >= 1; i--) {
    uint32_t pr = l;
    l = r - isola__idc_f(pr, k->a[i], k->c[i]);
    r = pr;
  }
  return l ^ (uint32_t)k->in;
}

static inline uint64_t isola__idc_decode(const isola__idc *k, uint64_t y) {
  y ^= k->out;
  uint32_t l = (uint32_t)(y >> 32), r = (uint32_t)y;
  for (int i = ISOLA__IDC_ROUNDS - 1; i >= 0; i--) {
    uint32_t pr = l;
    l = r - isola__idc_f(pr, k->a[i], k->c[i]);
    r = pr;
  }
  return (((uint64_t)l << 32) | r) ^ k->in;
}

#endif
