/* SPDX-License-Identifier: MIT */
/*
 * random.h — unguessable numbers without a system call per number.
 *
 * SipHash-1-3 (a keyed pseudo-random function) run in counter mode is the
 * CSPRNG: each thread keeps a 128-bit key drawn once from the kernel and a
 * counter.  Port tags come from a keyed pseudo-random permutation (a Feistel
 * network whose round function is SipHash), so the tags of one port slot
 * never repeat and still cannot be predicted.
 */
#ifndef ISOLA_RANDOM_H
#define ISOLA_RANDOM_H

#include <stdbool.h>
#include <stdint.h>

typedef struct isola__rng {
  uint64_t key[2];
  uint64_t counter;
  bool seeded;
} isola__rng;

/* SipHash-c-d of one 64-bit word under key. */
uint64_t isola__siphash(const uint64_t key[2], uint64_t word, int c, int d);

/* Seeds r from the kernel.  Returns 0, or -1 if the kernel refused. */
int isola__rng_seed(isola__rng *r);

/* The next 64 unpredictable bits; r must be seeded.  Never returns 0. */
uint64_t isola__rng_next(isola__rng *r);

/* A permutation of [0, 2^bits) keyed by key and tweaked by tweak: distinct
 * inputs under one tweak give distinct outputs.  bits is even, 2..62. */
uint64_t isola__prp(const uint64_t key[2], uint64_t tweak, uint64_t x,
                    int bits);

#endif
