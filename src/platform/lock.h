/* SPDX-License-Identifier: MIT */
/* lock.h — a small mutex for critical sections of a few instructions: it
 * spins a little before it sleeps.
 *
 * A pthread mutex sleeps in the kernel as soon as it finds the lock taken,
 * and a futex sleep and wake-up cost 23-44 us on the machines we run on:
 * for a section a few dozen nanoseconds long, waiting for the holder is
 * almost always cheaper.  The word is 0 (free), 1 (held) or 2 (held, and
 * somebody may sleep on it), as in Drepper's "Futexes Are Tricky".
 * Not recursive; no owner checks. */
#ifndef ISOLA_LOCK_H
#define ISOLA_LOCK_H

#include <stdatomic.h>
#include <stdint.h>

#include "platform.h"

typedef struct isola__lock {
  _Atomic uint32_t word;
} isola__lock;

#define ISOLA__LOCK_INIT {0}

/* Spins of the slow path before sleeping: ~a microsecond of pause. */
#define ISOLA__LOCK_SPINS 64

static inline void isola__lock_slow(isola__lock *l) {
  for (int i = 0; i < ISOLA__LOCK_SPINS; i++) {
    uint32_t c = 0;
    if (atomic_load_explicit(&l->word, memory_order_relaxed) == 0 &&
        atomic_compare_exchange_weak_explicit(&l->word, &c, 1,
                                              memory_order_acquire,
                                              memory_order_relaxed))
      return;
    isola__plat_relax();
  }
  /* Mark the lock contended; whoever unlocks it then wakes one sleeper. */
  while (atomic_exchange_explicit(&l->word, 2, memory_order_acquire) != 0)
    isola__plat_wait(&l->word, 2, 0);
}

static inline void isola__lock_acquire(isola__lock *l) {
  uint32_t c = 0;
  if (!atomic_compare_exchange_strong_explicit(&l->word, &c, 1,
                                               memory_order_acquire,
                                               memory_order_relaxed))
    isola__lock_slow(l);
}

static inline void isola__lock_release(isola__lock *l) {
  if (atomic_exchange_explicit(&l->word, 0, memory_order_release) == 2)
    isola__plat_wake_one(&l->word);
}

#endif
