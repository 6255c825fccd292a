/* pool.c — per-thread caches of fixed-size blocks carved from slabs (see
 * pool.h). */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "internal.h"
#include "lock.h"
#include "platform.h"

/* LeakSanitizer scans the heap for pointers, not mapped regions: isolates
 * and messages live in regions and point to malloc'ed memory, so a program
 * that exits without isola_vm_shutdown() would see false leaks. */
#if defined(__SANITIZE_ADDRESS__)
#define ISOLA__LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(leak_sanitizer)
#define ISOLA__LSAN 1
#endif
#endif
#ifdef ISOLA__LSAN
#include <sanitizer/lsan_interface.h>
#define LSAN_ADD(p, n) __lsan_register_root_region((p), (n))
#define LSAN_REMOVE(p, n) __lsan_unregister_root_region((p), (n))
#else
#define LSAN_ADD(p, n) ((void)0)
#define LSAN_REMOVE(p, n) ((void)0)
#endif

#define BATCH 128u             /* blocks moved between threads at once */
#define LOCAL_MAX (2 * BATCH)  /* a thread keeps at most this many */
#define SLAB_BYTES (64u * 1024u)

typedef struct block {
  struct block *next;
} block;

/* Slabs are cut from regions mapped from the OS (platform.h): one mmap
 * per 32 slabs instead of a malloc per slab, which grew a thread arena's
 * heap with an mprotect per slab under the process's mmap lock (page
 * faults wait for it).  A region's first line links it. */
#define REGION_BYTES ((size_t)2 << 20)
typedef struct region {
  struct region *next;
} region;

static const uint32_t class_size[ISOLA__POOL_CLASSES] = {
    64, 128, 192, 256, 320, 384, 512, 1024, 2048};

static ISOLA__TLS struct {
  bool on;
  block *head[ISOLA__POOL_CLASSES];
  uint32_t n[ISOLA__POOL_CLASSES];
} cache;

/* Per class: full batches handed back by threads, loose blocks freed by
 * threads without a cache, and the slab being carved. */
typedef struct shared_class {
  isola__lock lock;
  _Atomic uint32_t nbatches; /* written under lock; read as a hint */
  uint32_t cap;
  block **batches;
  block *loose;
  char *carve, *carve_end;
} shared_class;

#define SHARED_INIT {ISOLA__LOCK_INIT, 0, 0, NULL, NULL, NULL, NULL}
static shared_class shared[ISOLA__POOL_CLASSES] = {
    SHARED_INIT, SHARED_INIT, SHARED_INIT, SHARED_INIT, SHARED_INIT,
    SHARED_INIT, SHARED_INIT, SHARED_INIT, SHARED_INIT};
static pthread_mutex_t slabs_lock = PTHREAD_MUTEX_INITIALIZER;
static region *regions; /* every region, unmapped by isola__pool_destroy */
static char *slab_next, *slab_end; /* what is left of the newest region */

static inline uint8_t class_of(size_t size) {
  uint8_t c = 0;
  while (c < ISOLA__POOL_CLASSES && class_size[c] < size) c++;
  return c < ISOLA__POOL_CLASSES ? c : ISOLA__POOL_NONE;
}

/* A new slab (SLAB_BYTES, cache-line aligned, zeroed), or NULL. */
static char *new_slab(void) {
  pthread_mutex_lock(&slabs_lock);
  if (!slab_next || (size_t)(slab_end - slab_next) < SLAB_BYTES) {
    char *mem = isola__plat_map(REGION_BYTES);
    if (!mem) {
      pthread_mutex_unlock(&slabs_lock);
      return NULL;
    }
    LSAN_ADD(mem, REGION_BYTES);
    region *r = (region *)mem;
    r->next = regions;
    regions = r;
    slab_next = mem + ISOLA__CACHE_LINE;
    slab_end = mem + REGION_BYTES;
  }
  char *slab = slab_next;
  slab_next += SLAB_BYTES;
  pthread_mutex_unlock(&slabs_lock);
  return slab;
}

/* Reserves up to want blocks of class c from the slab being carved and
 * returns the first, or NULL when the slab is used up; *got says how many.
 * Called with shared[c].lock held; the caller links the blocks after
 * unlocking, so the page faults of fresh memory are not taken under the
 * lock. */
static char *reserve_locked(uint8_t c, uint32_t want, uint32_t *got) {
  shared_class *sc = &shared[c];
  size_t size = class_size[c];
  if (!sc->carve || (size_t)(sc->carve_end - sc->carve) < size) return NULL;
  size_t left = (size_t)(sc->carve_end - sc->carve) / size;
  uint32_t k = left < want ? (uint32_t)left : want;
  char *first = sc->carve;
  sc->carve += (size_t)k * size;
  *got = k;
  return first;
}

/* A block for a thread whose cache is empty or off. */
static block *refill(uint8_t c) {
  shared_class *sc = &shared[c];
  block *b = NULL;
  isola__lock_acquire(&sc->lock);
  uint32_t nb = atomic_load_explicit(&sc->nbatches, memory_order_relaxed);
  if (cache.on && nb) {
    /* A whole batch another thread gave back becomes our cache. */
    b = sc->batches[nb - 1];
    atomic_store_explicit(&sc->nbatches, nb - 1, memory_order_relaxed);
    cache.head[c] = b->next;
    cache.n[c] = BATCH - 1;
  } else if (sc->loose) {
    b = sc->loose;
    sc->loose = b->next;
  } else if (nb) {
    /* No cache: take a batch apart. */
    b = sc->batches[nb - 1];
    sc->batches[nb - 1] = b->next;
    if (!b->next)
      atomic_store_explicit(&sc->nbatches, nb - 1, memory_order_relaxed);
  } else {
    /* Carve a batch at once, so the lock is taken once per batch. */
    uint32_t want = cache.on ? BATCH : 1, k = 0;
    char *run = reserve_locked(c, want, &k);
    isola__lock_release(&sc->lock);
    if (!run) {
      /* The slab is used up.  The new one is allocated outside the lock;
       * if another thread installed one meanwhile, the rest of that one is
       * left uncarved (it is still freed with the pool). */
      char *mem = new_slab();
      if (!mem) return NULL;
      isola__lock_acquire(&sc->lock);
      sc->carve = mem;
      sc->carve_end = mem + SLAB_BYTES;
      run = reserve_locked(c, want, &k);
      isola__lock_release(&sc->lock);
    }
    size_t size = class_size[c];
    block *head = cache.head[c]; /* empty, or NULL with the cache off */
    for (uint32_t i = k; i-- > 1;) {
      block *x = (block *)(run + (size_t)i * size);
      x->next = head;
      head = x;
    }
    if (cache.on) {
      cache.head[c] = head;
      cache.n[c] += k - 1;
    }
    return (block *)run;
  }
  isola__lock_release(&sc->lock);
  return b;
}

void *isola__pool_alloc(size_t size, uint8_t *cls) {
  uint8_t c = class_of(size);
  *cls = c;
  if (c == ISOLA__POOL_NONE) return malloc(size);
  block *b = cache.head[c];
  if (ISOLA__LIKELY(b != NULL)) {
    cache.head[c] = b->next;
    cache.n[c]--;
    return b;
  }
  return refill(c);
}

void isola__pool_free(void *p, uint8_t cls) {
  if (!p) return;
  if (cls == ISOLA__POOL_NONE) {
    free(p);
    return;
  }
  block *b = p;
  shared_class *sc = &shared[cls];
  if (ISOLA__UNLIKELY(!cache.on)) {
    isola__lock_acquire(&sc->lock);
    b->next = sc->loose;
    sc->loose = b;
    isola__lock_release(&sc->lock);
    return;
  }
  b->next = cache.head[cls];
  cache.head[cls] = b;
  if (++cache.n[cls] < LOCAL_MAX) return;
  /* Too many here: hand a batch to whoever allocates more than it frees. */
  block *first = cache.head[cls], *last = first;
  for (uint32_t i = 1; i < BATCH; i++) last = last->next;
  cache.head[cls] = last->next;
  cache.n[cls] -= BATCH;
  last->next = NULL;
  isola__lock_acquire(&sc->lock);
  uint32_t nb = atomic_load_explicit(&sc->nbatches, memory_order_relaxed);
  if (nb == sc->cap) {
    uint32_t cap = sc->cap ? sc->cap * 2 : 64;
    block **v = realloc(sc->batches, cap * sizeof *v);
    if (!v) {
      /* Keep the blocks loose rather than lose them. */
      last->next = sc->loose;
      sc->loose = first;
      isola__lock_release(&sc->lock);
      return;
    }
    sc->batches = v;
    sc->cap = cap;
  }
  sc->batches[nb] = first;
  atomic_store_explicit(&sc->nbatches, nb + 1, memory_order_relaxed);
  isola__lock_release(&sc->lock);
}

void isola__pool_thread_start(void) { cache.on = true; }

/* Gives the calling thread's cached blocks back as loose blocks. */
void isola__pool_thread_stop(void) {
  for (int c = 0; c < ISOLA__POOL_CLASSES; c++) {
    block *b = cache.head[c];
    if (b) {
      block *last = b;
      while (last->next) last = last->next;
      isola__lock_acquire(&shared[c].lock);
      last->next = shared[c].loose;
      shared[c].loose = b;
      isola__lock_release(&shared[c].lock);
    }
    cache.head[c] = NULL;
    cache.n[c] = 0;
  }
  cache.on = false;
}

void isola__pool_destroy(void) {
  for (int c = 0; c < ISOLA__POOL_CLASSES; c++) {
    shared_class *sc = &shared[c];
    isola__lock_acquire(&sc->lock);
    free(sc->batches);
    sc->batches = NULL;
    sc->cap = 0;
    atomic_store_explicit(&sc->nbatches, 0, memory_order_relaxed);
    sc->loose = NULL;
    sc->carve = sc->carve_end = NULL;
    isola__lock_release(&sc->lock);
  }
  pthread_mutex_lock(&slabs_lock);
  while (regions) {
    region *next = regions->next;
    LSAN_REMOVE(regions, REGION_BYTES);
    isola__plat_unmap(regions, REGION_BYTES);
    regions = next;
  }
  slab_next = slab_end = NULL;
  pthread_mutex_unlock(&slabs_lock);
}
