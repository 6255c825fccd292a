/* SPDX-License-Identifier: MIT */
/*
 * The block pool (white box, src/platform/pool.h): blocks are distinct, aligned and
 * reused; threads with a cache carve from slabs and regions of their own,
 * and what a stopping thread leaves is reused by the next, so threads that
 * come and go do not map memory apiece.
 */
#include "helpers.h"

#include "../src/platform/pool.h"

TestSuite(pool, .timeout = TH_TEST_TIMEOUT_S);

#define CLASSES 9
static const size_t sizes[CLASSES] = {64, 128, 192, 256, 320, 384, 512,
                                      1024, 2048};

/* Every block is 64-byte aligned, usable over its whole size, and holds
 * what was written in it while the others are written too. */
Test(pool, blocks_are_distinct_aligned_and_reused) {
  enum { N = 3000 };
  static void *p[N];
  static uint8_t cls[N];
  isola__pool_thread_start();
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < N; i++) {
      size_t size = sizes[i % CLASSES] - (size_t)(i % 7);
      p[i] = isola__pool_alloc(size, &cls[i]);
      cr_assert(p[i] != NULL, "block %d of %zu bytes", i, size);
      cr_assert(((uintptr_t)p[i] & 63) == 0, "block %d not aligned", i);
      memset(p[i], (int)(i & 0xff), size);
    }
    for (int i = 0; i < N; i++) {
      size_t size = sizes[i % CLASSES] - (size_t)(i % 7);
      const uint8_t *b = p[i];
      cr_assert(b[0] == (uint8_t)i && b[size - 1] == (uint8_t)i,
                "block %d was overwritten", i);
    }
    for (int i = 0; i < N; i++) isola__pool_free(p[i], cls[i]);
  }
  /* Larger than the largest class: malloc, marked so. */
  uint8_t big;
  void *q = isola__pool_alloc(4096, &big);
  cr_assert(q != NULL && big == ISOLA__POOL_NONE, "a 4 KiB block");
  isola__pool_free(q, big);
  isola__pool_thread_stop();
  isola__pool_destroy();
}

/* 200 threads one after the other, each taking blocks of two classes and
 * keeping them (so nothing is freed for the next to reuse but what the
 * last one left of its slabs and region): one region serves them all.
 * Without the hand-over each thread would map a region of its own. */
#define CHURN 200
#define PER_THREAD 40
static void *kept[CHURN][2 * PER_THREAD];
static uint8_t kept_cls[CHURN][2 * PER_THREAD];

static void *churn_thread(void *arg) {
  int t = (int)(intptr_t)arg;
  isola__pool_thread_start();
  for (int i = 0; i < 2 * PER_THREAD; i++) {
    kept[t][i] = isola__pool_alloc(i % 2 ? 2048 : 64, &kept_cls[t][i]);
    if (kept[t][i]) memset(kept[t][i], t & 0xff, i % 2 ? 2048 : 64);
  }
  isola__pool_thread_stop();
  return NULL;
}

Test(pool, threads_that_come_and_go_leave_their_slabs_to_the_next) {
  for (int t = 0; t < CHURN; t++) {
    pthread_t th;
    cr_assert(pthread_create(&th, NULL, churn_thread, (void *)(intptr_t)t) ==
                  0,
              "pthread_create");
    pthread_join(th, NULL);
  }
  for (int t = 0; t < CHURN; t++)
    for (int i = 0; i < 2 * PER_THREAD; i++) {
      cr_assert(kept[t][i] != NULL, "thread %d block %d", t, i);
      const uint8_t *b = kept[t][i];
      cr_assert(b[0] == (uint8_t)(t & 0xff), "thread %d block %d reused", t,
                i);
    }
  /* 200 x 40 x (2 KiB + 64) = 16.9 MB of blocks: 9 regions of 2 MiB,
   * give or take one for the slabs' rounding.  Without the hand-over of
   * regions it takes 200, without that of slab rests 11. */
  size_t regions = isola__pool_regions();
  size_t need = (CHURN * PER_THREAD * (2048 + 64)) / ((size_t)2 << 20) + 1;
  cr_log_info("%zu regions for %d threads (%zu needed)", regions, CHURN,
              need);
  cr_assert(regions <= need + 1, "%zu regions mapped for %d threads",
            regions, CHURN);
  for (int t = 0; t < CHURN; t++)
    for (int i = 0; i < 2 * PER_THREAD; i++)
      isola__pool_free(kept[t][i], kept_cls[t][i]);
  isola__pool_destroy();
}

/* A thread without a cache takes and gives single blocks. */
static void *plain_thread(void *arg) {
  (void)arg;
  for (int i = 0; i < 1000; i++) {
    uint8_t c;
    void *b = isola__pool_alloc(100, &c);
    if (!b) return (void *)1;
    memset(b, 1, 100);
    isola__pool_free(b, c);
  }
  return NULL;
}

Test(pool, threads_without_a_cache_take_single_blocks) {
  pthread_t th[2];
  for (int i = 0; i < 2; i++)
    cr_assert(pthread_create(&th[i], NULL, plain_thread, NULL) == 0,
              "pthread_create");
  for (int i = 0; i < 2; i++) {
    void *r;
    pthread_join(th[i], &r);
    cr_assert(r == NULL, "a plain thread's allocation failed");
  }
  isola__pool_destroy();
}
