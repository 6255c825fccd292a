/* SPDX-License-Identifier: MIT */
/* pool.c — per-thread caches of fixed-size blocks carved from slabs (see
 * pool.h). */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "internal.h"
#include "fault.h"
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

/* Unused space a thread left behind (the rest of its slab of one class,
 * or of its region), kept for reuse: this header is written in its first
 * bytes, which are free.  Threads come and go (stand-ins for blocking
 * handlers, idle time-outs), and what they leave must not pile up. */
typedef struct spare {
  struct spare *next;
  char *end;
} spare;

static const uint32_t class_size[ISOLA__POOL_CLASSES] = {
    64, 128, 192, 256, 320, 384, 512, 1024, 2048};

static ISOLA__TLS struct {
  bool on;
  block *head[ISOLA__POOL_CLASSES];
  uint32_t n[ISOLA__POOL_CLASSES];
  /* A thread with a cache carves fresh blocks from slabs of its own, cut
   * from a region of its own: threads growing at once share no lock and
   * no page table page (whose lock every page fault takes). */
  char *carve[ISOLA__POOL_CLASSES], *carve_end[ISOLA__POOL_CLASSES];
  char *region_next, *region_end;
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
  spare *spares; /* rests of slabs of this class that threads left */
} shared_class;

#define SHARED_INIT {ISOLA__LOCK_INIT, 0, 0, NULL, NULL, NULL, NULL, NULL}
static shared_class shared[ISOLA__POOL_CLASSES] = {
    SHARED_INIT, SHARED_INIT, SHARED_INIT, SHARED_INIT, SHARED_INIT,
    SHARED_INIT, SHARED_INIT, SHARED_INIT, SHARED_INIT};
static pthread_mutex_t slabs_lock = PTHREAD_MUTEX_INITIALIZER;
static region *regions; /* every region, unmapped by isola__pool_destroy */
static size_t nregions;  /* how many: isola__pool_regions() */
static char *slab_next, *slab_end; /* the cache-less threads' region space */
static spare *spare_regions;       /* rests of regions threads left */

static inline uint8_t class_of(size_t size) {
  uint8_t c = 0;
  while (c < ISOLA__POOL_CLASSES && class_size[c] < size) c++;
  return c < ISOLA__POOL_CLASSES ? c : ISOLA__POOL_NONE;
}

/* A new region, linked into the list of regions; NULL when out of
 * memory. */
static char *new_region(void) {
  char *mem = isola__plat_map(REGION_BYTES);
  if (!mem) return NULL;
  LSAN_ADD(mem, REGION_BYTES);
  pthread_mutex_lock(&slabs_lock);
  region *r = (region *)mem;
  r->next = regions;
  regions = r;
  nregions++;
  pthread_mutex_unlock(&slabs_lock);
  return mem;
}

/* Space for slabs in [*next, *end): what a thread left of its region,
 * or a new region.  False when out of memory. */
static bool region_space(char **next, char **end) {
  pthread_mutex_lock(&slabs_lock);
  spare *r = spare_regions;
  if (r) {
    spare_regions = r->next;
    *end = r->end;
    *next = (char *)r;
  }
  pthread_mutex_unlock(&slabs_lock);
  if (r) return true;
  char *mem = new_region();
  if (!mem) return false;
  *next = mem + ISOLA__CACHE_LINE;
  *end = mem + REGION_BYTES;
  return true;
}

/* A new slab for the threads without a cache (SLAB_BYTES, cache-line
 * aligned, zeroed), or NULL. */
static char *new_slab(void) {
  pthread_mutex_lock(&slabs_lock);
  while (!slab_next || (size_t)(slab_end - slab_next) < SLAB_BYTES) {
    pthread_mutex_unlock(&slabs_lock);
    char *next, *end;
    if (!region_space(&next, &end)) return NULL;
    pthread_mutex_lock(&slabs_lock);
    if (slab_next && (size_t)(slab_end - slab_next) >= SLAB_BYTES) {
      /* Another thread got there first: keep this space for later. */
      spare *r = (spare *)next;
      r->end = end;
      r->next = spare_regions;
      spare_regions = r;
    } else {
      slab_next = next;
      slab_end = end;
    }
  }
  char *slab = slab_next;
  slab_next += SLAB_BYTES;
  pthread_mutex_unlock(&slabs_lock);
  return slab;
}

/* A new slab for the calling thread (its cache is on), from its own
 * region, its pages backed at once (one call rather than a fault each:
 * they are about to be written). */
static char *thread_slab(void) {
  if (!cache.region_next ||
      (size_t)(cache.region_end - cache.region_next) < SLAB_BYTES) {
    if (!region_space(&cache.region_next, &cache.region_end)) {
      cache.region_next = cache.region_end = NULL;
      return NULL;
    }
  }
  char *slab = cache.region_next;
  cache.region_next += SLAB_BYTES;
  isola__plat_prefault(slab, SLAB_BYTES);
  return slab;
}

/* Takes a slab rest of class c that a thread left, into *carve and *end;
 * called with shared[c].lock held. */
static bool take_spare_locked(uint8_t c, char **carve, char **end) {
  spare *r = shared[c].spares;
  if (!r) return false;
  shared[c].spares = r->next;
  *end = r->end;
  *carve = (char *)r;
  return true;
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
  } else if (cache.on) {
    /* From this thread's own slab: a rest another thread left, or a new
     * one from its own region. */
    size_t size = class_size[c];
    bool have = cache.carve[c] &&
                (size_t)(cache.carve_end[c] - cache.carve[c]) >= size;
    if (!have)
      have = take_spare_locked(c, &cache.carve[c], &cache.carve_end[c]);
    isola__lock_release(&sc->lock);
    if (!have) {
      char *mem = thread_slab();
      if (!mem) return NULL;
      cache.carve[c] = mem;
      cache.carve_end[c] = mem + SLAB_BYTES;
    }
    size_t left = (size_t)(cache.carve_end[c] - cache.carve[c]) / size;
    uint32_t k = left < BATCH ? (uint32_t)left : BATCH;
    char *run = cache.carve[c];
    cache.carve[c] += (size_t)k * size;
    block *head = NULL;
    for (uint32_t i = k; i-- > 1;) {
      block *x = (block *)(run + (size_t)i * size);
      x->next = head;
      head = x;
    }
    cache.head[c] = head;
    cache.n[c] = k - 1;
    return (block *)run;
  } else {
    /* No cache: one block from the shared slab. */
    uint32_t want = 1, k = 0;
    char *run = reserve_locked(c, want, &k);
    if (!run && take_spare_locked(c, &sc->carve, &sc->carve_end))
      run = reserve_locked(c, want, &k);
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
    return (block *)run;
  }
  isola__lock_release(&sc->lock);
  return b;
}

void *isola__pool_alloc(size_t size, uint8_t *cls) {
  if (ISOLA__FAULT_HIT(ISOLA__FAULT_ALLOC)) return NULL;
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
    /* The rest of its slab is kept for whoever carves this class next. */
    if (cache.carve[c] &&
        (size_t)(cache.carve_end[c] - cache.carve[c]) >= class_size[c]) {
      spare *r = (spare *)cache.carve[c];
      r->end = cache.carve_end[c];
      isola__lock_acquire(&shared[c].lock);
      r->next = shared[c].spares;
      shared[c].spares = r;
      isola__lock_release(&shared[c].lock);
    }
    cache.carve[c] = cache.carve_end[c] = NULL;
  }
  /* And the rest of its region for the next thread that needs one. */
  if (cache.region_next &&
      (size_t)(cache.region_end - cache.region_next) >= SLAB_BYTES) {
    spare *r = (spare *)cache.region_next;
    r->end = cache.region_end;
    pthread_mutex_lock(&slabs_lock);
    r->next = spare_regions;
    spare_regions = r;
    pthread_mutex_unlock(&slabs_lock);
  }
  cache.region_next = cache.region_end = NULL;
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
    sc->spares = NULL; /* in the regions unmapped below */
    isola__lock_release(&sc->lock);
  }
  pthread_mutex_lock(&slabs_lock);
  while (regions) {
    region *next = regions->next;
    LSAN_REMOVE(regions, REGION_BYTES);
    isola__plat_unmap(regions, REGION_BYTES);
    regions = next;
  }
  nregions = 0;
  slab_next = slab_end = NULL;
  spare_regions = NULL;
  pthread_mutex_unlock(&slabs_lock);
}

size_t isola__pool_regions(void) {
  pthread_mutex_lock(&slabs_lock);
  size_t n = nregions;
  pthread_mutex_unlock(&slabs_lock);
  return n;
}
