/* SPDX-License-Identifier: MIT */
/*
 * The block pool (white box, src/platform/pool.h): blocks are distinct, aligned and
 * reused; threads with a cache carve from slabs and regions of their own,
 * and what a stopping thread leaves is reused by the next, so threads that
 * come and go do not map memory apiece.
 */
#include "helpers.h"

#include <sched.h>
#include <time.h>

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

/* VmRSS of this process in bytes (read from /proc: the test is about what
 * the OS counts). */
static size_t rss_now(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  size_t kb = 0;
  cr_assert(f != NULL, "open /proc/self/status");
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0) kb = (size_t)strtoull(line + 6, NULL, 10);
  fclose(f);
  cr_assert(kb > 0, "VmRSS read");
  return kb * 1024;
}

/* A burst of 24 MiB of 128-byte blocks, all freed by the thread that made
 * them: the frees only mark the class (no walk on the freeing thread's
 * path); when a pool thread then runs out of work (isola__pool_idle, as
 * the scheduler calls it before parking) the slabs that hold only free
 * blocks go back to the OS, 512 KiB of free blocks and the thread's cache
 * stay, and the RSS falls by what went back.  A second burst reuses those
 * slabs before it maps anything new.  Before this change no slab went
 * back while the pool lived. */
Test(pool, a_drained_burst_gives_its_slabs_back) {
  enum { N = 24 * 8192, SIZE = 128 };
  void **p = malloc(N * sizeof *p);
  uint8_t c = 0;
  cr_assert(p != NULL, "malloc");
  size_t returned0 = isola__pool_slabs_returned();
  isola__pool_thread_start();
  for (int i = 0; i < N; i++) {
    p[i] = isola__pool_alloc(SIZE, &c);
    cr_assert(p[i] != NULL, "block %d", i);
    memset(p[i], i & 0xff, SIZE);
  }
  size_t rss_full = rss_now();
  size_t regions = isola__pool_regions();
  for (int i = 0; i < N; i++) isola__pool_free(p[i], c);
  cr_assert(isola__pool_slabs_returned() == returned0,
            "the freeing thread gave slabs back itself");
  isola__pool_idle();
  size_t returned = isola__pool_slabs_returned() - returned0;
  size_t rss_drained = rss_now();
  size_t burst = (size_t)N * SIZE;
  /* Kept: 512 KiB on the shared stack, a batch or two in this thread's
   * cache, and slabs that hold one of those: 4 MiB is a loose bound. */
  size_t want = (burst - ((size_t)4 << 20)) / (64 * 1024);
  cr_log_info("%zu slabs returned; RSS %zu -> %zu KiB", returned,
              rss_full / 1024, rss_drained / 1024);
  cr_assert(returned >= want, "%zu slabs returned, want at least %zu",
            returned, want);
  cr_assert(rss_drained + want * 64 * 1024 / 2 <= rss_full,
            "RSS fell from %zu to %zu KiB only", rss_full / 1024,
            rss_drained / 1024);
  /* The same burst again: the slabs given back are used first. */
  for (int i = 0; i < N; i++) {
    p[i] = isola__pool_alloc(SIZE, &c);
    cr_assert(p[i] != NULL, "block %d", i);
    memset(p[i], i & 0xff, SIZE);
  }
  for (int i = 0; i < N; i++)
    cr_assert(((uint8_t *)p[i])[SIZE - 1] == (uint8_t)(i & 0xff),
              "block %d overwritten", i);
  cr_assert(isola__pool_regions() == regions,
            "%zu regions mapped, %zu before: the slabs given back were not "
            "reused", isola__pool_regions(), regions);
  for (int i = 0; i < N; i++) isola__pool_free(p[i], c);
  isola__pool_thread_stop();
  isola__pool_destroy();
  free(p);
}

/* Traffic that frees as much as it allocates, 1 MiB live at a time, never
 * marks the class for a trim, even with the thread going idle after every
 * round: the free blocks it hands back stay under 2 MiB, so no slab is
 * given back and faulted in again. */
Test(pool, steady_traffic_keeps_its_slabs) {
  enum { N = 8192, SIZE = 128, ROUNDS = 50 };
  static void *p[N];
  uint8_t c = 0;
  size_t returned0 = isola__pool_slabs_returned();
  isola__pool_thread_start();
  for (int r = 0; r < ROUNDS; r++) {
    for (int i = 0; i < N; i++) {
      p[i] = isola__pool_alloc(SIZE, &c);
      cr_assert(p[i] != NULL, "block %d", i);
      memset(p[i], 1, SIZE);
    }
    for (int i = 0; i < N; i++) isola__pool_free(p[i], c);
    isola__pool_idle();
  }
  cr_assert(isola__pool_slabs_returned() == returned0,
            "%zu slabs given back under steady traffic",
            isola__pool_slabs_returned() - returned0);
  isola__pool_thread_stop();
  isola__pool_destroy();
}

/* One block in use per slab keeps every slab: a trim gives back only
 * slabs whose every block is free, and the blocks in use keep their
 * contents.  Once they are freed too, a trim gives the slabs back. */
Test(pool, a_slab_with_a_block_in_use_stays) {
  enum { N = 24 * 8192, SIZE = 128, PER_SLAB = 64 * 1024 / SIZE };
  void **p = malloc(N * sizeof *p);
  uint8_t c = 0;
  cr_assert(p != NULL, "malloc");
  size_t returned0 = isola__pool_slabs_returned();
  isola__pool_thread_start();
  for (int i = 0; i < N; i++) {
    p[i] = isola__pool_alloc(SIZE, &c);
    cr_assert(p[i] != NULL, "block %d", i);
    memset(p[i], i & 0xff, SIZE);
  }
  /* Keep one block of every slab (slabs are 64 KiB-aligned within their
   * region; a slab's first block is not at its start, pool.c's colors),
   * free the rest.  Blocks come out of a slab in a row, so the first one
   * of a new slab is where the slab changes. */
  size_t kept = 0;
  uintptr_t last_slab = 0;
  for (int i = 0; i < N; i++) {
    uintptr_t slab = (uintptr_t)p[i] & ~(uintptr_t)(64 * 1024 - 1);
    if (slab != last_slab) {
      last_slab = slab;
      kept++;
      continue;
    }
    isola__pool_free(p[i], c);
    p[i] = NULL;
  }
  cr_assert(kept >= N / PER_SLAB - 1, "%zu slab starts among the blocks",
            kept);
  isola__pool_trim();
  cr_assert(isola__pool_slabs_returned() == returned0,
            "%zu slabs given back with a block in use each",
            isola__pool_slabs_returned() - returned0);
  for (int i = 0; i < N; i++)
    if (p[i]) {
      const uint8_t *b = p[i];
      cr_assert(b[0] == (uint8_t)(i & 0xff) && b[SIZE - 1] == b[0],
                "block %d in use was overwritten", i);
      isola__pool_free(p[i], c);
    }
  /* Now whole slabs are free; what this thread caches is not counted. */
  isola__pool_thread_stop(); /* its cache goes to the shared lists */
  isola__pool_trim();
  cr_assert(isola__pool_slabs_returned() - returned0 >= kept / 2,
            "%zu slabs given back once free",
            isola__pool_slabs_returned() - returned0);
  isola__pool_destroy();
  free(p);
}

/* The same through the VM: an isolate queues a burst of messages to itself
 * and drains it; once its worker runs out of work the scheduler's park
 * calls isola__pool_idle, and the queue's slabs go back to the OS.  The
 * API gives no event for "slabs given back", so the test waits for the
 * drain (an event), then polls the count until its deadline. */
static th_counter burst_drained = TH_COUNTER_INIT;
static long burst_n, burst_got;

static void burst_handler(void *ctx, isola_port port, isola_value msg,
                          isola_port reply_to) {
  (void)ctx;
  (void)msg;
  (void)reply_to;
  if (++burst_got < burst_n) return;
  TH_CHECK_OK(isola_port_close(port));
  th_counter_add(&burst_drained, 1);
}

static void burst_entry(isola_value msg) {
  (void)msg;
  isola_port self;
  TH_CHECK_OK(isola_port_open(burst_handler, NULL, &self));
  for (long i = 0; i < burst_n; i++) TH_CHECK_OK(isola_send(self, isola_int(i)));
}

Test(pool, a_drained_burst_goes_back_when_the_workers_idle) {
  burst_n = (long)TH_SIZE(200000);
  burst_got = 0;
  th_vm_init(NULL);
  size_t returned0 = isola__pool_slabs_returned();
  isola_spawn_options opts = {.name = "burst"};
  TH_ASSERT_OK(isola_spawn(burst_entry, isola_null(), &opts, NULL));
  TH_WAIT_GE(&burst_drained, 1);
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (isola__pool_slabs_returned() == returned0) {
    clock_gettime(CLOCK_MONOTONIC, &t);
    long ms = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
    cr_assert(ms < TH_WAIT_MS, "no slab given back %ld ms after the drain", ms);
    sched_yield();
  }
  cr_log_info("%zu slabs given back after a burst of %ld messages",
              isola__pool_slabs_returned() - returned0, burst_n);
  th_vm_shutdown_ok();
}
