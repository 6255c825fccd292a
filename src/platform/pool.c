/* SPDX-License-Identifier: MIT */
/* pool.c — per-thread caches of fixed-size blocks carved from slabs (see
 * pool.h). */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

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
 * per 31 slabs instead of a malloc per slab, which grew a thread arena's
 * heap with an mprotect per slab under the process's mmap lock (page
 * faults wait for it).  A region is aligned to its size, so a block's
 * region and slab follow from its address.  Its first page is a header:
 * the link to the next region and what a trim counts per slab; the slabs
 * follow, page-aligned, so that each can be given back to the OS alone. */
#define REGION_BYTES ((size_t)2 << 20)
#define REGION_HEAD ((size_t)4096)
#define REGION_SLABS ((REGION_BYTES - REGION_HEAD) / SLAB_BYTES) /* 31 */
typedef struct region {
  struct region *next;
  /* Written only by a trim (under trim_lock): free blocks found per slab,
   * and which slabs it gives back. */
  uint32_t free_in[REGION_SLABS];
  bool release[REGION_SLABS];
  /* Each slab's color (slab_start): where its first block starts. */
  _Atomic uint16_t color[REGION_SLABS];
} region;
_Static_assert(sizeof(region) <= REGION_HEAD, "region header fits its page");

/* Giving empty slabs back (a trim).  When a class's free blocks handed to
 * the shared stack reach TRIM_HIGH bytes, the class is marked (trim_mask);
 * the next pool thread that runs out of work (isola__pool_idle, before it
 * parks) takes every free block of the class off the shared lists, counts
 * them per slab, and gives back to the OS the slabs whose every block is
 * free, keeping at least TRIM_LOW bytes of free blocks for the traffic
 * that goes on.  The trim walks every free block twice (~50-100 ns a
 * block), so it is kept off the path of the thread that frees: done while
 * draining, it made a drained fan-in several times slower.  Steady traffic
 * hands batches back as fast as it takes them and never gets to the mark.
 * Where free blocks are scattered over slabs that are still in use,
 * nothing can go back: the next mark then waits until that much more is
 * free (trim_at), so a walk is paid for by at least as many frees, or
 * until nearly every block carved for the class (7/8) is free, which is
 * how a drained burst looks, and some frees came since (a trim in the
 * middle of a drain finds the queue's slabs still half used).  Blocks in
 * thread caches are not counted; a slab that holds one stays. */
#define TRIM_HIGH ((size_t)2 << 20)
#define TRIM_LOW ((size_t)512 << 10)

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
  uint32_t trim_at; /* batches that set off a trim; 0: trim_high() */
  uint32_t pushed;  /* batches handed over since the last trim */
  _Atomic size_t slabs; /* slabs carved for this class, not given back */
} shared_class;

#define SHARED_INIT {ISOLA__LOCK_INIT, 0, 0, NULL, NULL, NULL, NULL, NULL, 0, 0, 0}
static shared_class shared[ISOLA__POOL_CLASSES] = {
    SHARED_INIT, SHARED_INIT, SHARED_INIT, SHARED_INIT, SHARED_INIT,
    SHARED_INIT, SHARED_INIT, SHARED_INIT, SHARED_INIT};
static pthread_mutex_t slabs_lock = PTHREAD_MUTEX_INITIALIZER;
static region *regions; /* every region, unmapped by isola__pool_destroy */
static size_t nregions;  /* how many: isola__pool_regions() */
static char *slab_next, *slab_end; /* the cache-less threads' region space */
static spare *spare_regions;       /* rests of regions threads left */
/* Slabs given back to the OS, mapped still: reused before new space. */
static char **idle_slabs;
static size_t nidle, idle_cap;
static size_t slabs_returned; /* given back so far */
static pthread_mutex_t trim_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint32_t trim_mask; /* bit c: class c has reached its mark */

static inline uint8_t class_of(size_t size) {
  uint8_t c = 0;
  while (c < ISOLA__POOL_CLASSES && class_size[c] < size) c++;
  return c < ISOLA__POOL_CLASSES ? c : ISOLA__POOL_NONE;
}

/* Batches of class c on the shared stack that set off a trim, and the
 * level a trim keeps (TRIM_HIGH, TRIM_LOW). */
static inline uint32_t trim_high(uint8_t c) {
  return (uint32_t)(TRIM_HIGH / class_size[c] / BATCH);
}
static inline uint32_t trim_low(uint8_t c) {
  return (uint32_t)(TRIM_LOW / class_size[c] / BATCH);
}

static size_t trim_class(uint8_t c);
static char *slab_start(char *slab);

/* A new region, linked into the list of regions; NULL when out of
 * memory. */
static char *new_region(void) {
  char *mem = isola__plat_map_aligned(REGION_BYTES, REGION_BYTES);
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
  *next = mem + REGION_HEAD;
  *end = mem + REGION_BYTES;
  return true;
}

/* A slab a trim gave back, or NULL. */
static char *idle_slab(void) {
  char *slab = NULL;
  pthread_mutex_lock(&slabs_lock);
  if (nidle) slab = idle_slabs[--nidle];
  pthread_mutex_unlock(&slabs_lock);
  return slab;
}

/* A new slab for the threads without a cache (SLAB_BYTES, cache-line
 * aligned, zeroed), or NULL. */
static char *new_slab(void) {
  char *idle = idle_slab();
  if (idle) return idle; /* zeroed by the OS when given back */
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
  char *slab = idle_slab();
  if (!slab) {
    if (!cache.region_next ||
        (size_t)(cache.region_end - cache.region_next) < SLAB_BYTES) {
      if (!region_space(&cache.region_next, &cache.region_end)) {
        cache.region_next = cache.region_end = NULL;
        return NULL;
      }
    }
    slab = cache.region_next;
    cache.region_next += SLAB_BYTES;
  }
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
    /* The free blocks are in use again: a later trim need not wait for
     * more than TRIM_HIGH. */
    if (nb - 1 <= trim_low(c)) sc->trim_at = 0;
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
      atomic_fetch_add_explicit(&sc->slabs, 1, memory_order_relaxed);
      cache.carve[c] = slab_start(mem);
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
      atomic_fetch_add_explicit(&sc->slabs, 1, memory_order_relaxed);
      isola__lock_acquire(&sc->lock);
      sc->carve = slab_start(mem);
      sc->carve_end = mem + SLAB_BYTES;
      run = reserve_locked(c, want, &k);
      isola__lock_release(&sc->lock);
    }
    return (block *)run;
  }
  isola__lock_release(&sc->lock);
  return b;
}

/* Adds a batch to the class's stack; false when the stack cannot grow.
 * Called with the class's lock held. */
static bool push_batch_locked(shared_class *sc, block *first) {
  uint32_t nb = atomic_load_explicit(&sc->nbatches, memory_order_relaxed);
  if (nb == sc->cap) {
    uint32_t cap = sc->cap ? sc->cap * 2 : 64;
    block **v = realloc(sc->batches, cap * sizeof *v);
    if (!v) return false;
    sc->batches = v;
    sc->cap = cap;
  }
  sc->batches[nb] = first;
  atomic_store_explicit(&sc->nbatches, nb + 1, memory_order_relaxed);
  return true;
}

static inline region *region_of(const void *p) {
  return (region *)((uintptr_t)p & ~(uintptr_t)(REGION_BYTES - 1));
}

static inline size_t slab_index(const void *p) {
  return (size_t)((const char *)p - (const char *)region_of(p) - REGION_HEAD) /
         SLAB_BYTES;
}

/* Slab coloring.  A slab given to a class starts its first block at an
 * offset of 0 to SLAB_COLORS - 1 cache lines, the next one in turn, and
 * its region's header keeps the offset (a trim counts the blocks it
 * holds).  Without it the first block of every slab sits at the start of
 * a page, so the few objects a hot path touches (two isolates, each
 * carved by the thread that spawned it, from a slab of its own, and the
 * messages between them) share their offset in the page: on this machine
 * a ping-pong round trip then took 95-110 ns instead of 63-66 ns with the
 * same instructions, the mark of 4K aliasing and L1 set conflicts.  It
 * costs half of SLAB_COLORS cache lines a slab on average (under 2%). */
#define SLAB_COLORS 32u
static _Atomic uint32_t slab_seq;

static char *slab_start(char *slab) {
  uint32_t k = atomic_fetch_add_explicit(&slab_seq, 1, memory_order_relaxed);
  size_t off = (size_t)(k % SLAB_COLORS) * ISOLA__CACHE_LINE;
  atomic_store_explicit(&region_of(slab)->color[slab_index(slab)],
                        (uint16_t)off, memory_order_relaxed);
  return slab + off;
}

/* The blocks slab k of region r holds for blocks of size bytes. */
static uint32_t slab_blocks(region *r, size_t k, size_t size) {
  size_t off = atomic_load_explicit(&r->color[k], memory_order_relaxed);
  return (uint32_t)((SLAB_BYTES - off) / size);
}

/* Gives back the slabs of class c whose every block is free on the shared
 * lists (see TRIM_HIGH); returns how many.  Any thread; one trim at a
 * time (another thread's trim makes this one return 0 at once). */
static size_t trim_class(uint8_t c) {
  if (pthread_mutex_trylock(&trim_lock) != 0) {
    /* Another thread trims: this class waits for the next idle thread. */
    atomic_fetch_or_explicit(&trim_mask, 1u << c, memory_order_relaxed);
    return 0;
  }
  shared_class *sc = &shared[c];
  const size_t size = class_size[c];
  /* Blocks an uncolored slab holds (a colored one: slab_blocks). */
  const uint32_t per = (uint32_t)(SLAB_BYTES / size);
  const size_t low = TRIM_LOW / size;

  /* Take the class's free blocks: the stack of batches (the array goes
   * too; a free that comes meanwhile starts a new one) and the loose
   * blocks.  What is taken is this thread's until it is put back. */
  isola__lock_acquire(&sc->lock);
  block **bv = sc->batches;
  uint32_t nb = atomic_load_explicit(&sc->nbatches, memory_order_relaxed);
  sc->batches = NULL;
  sc->cap = 0;
  atomic_store_explicit(&sc->nbatches, 0, memory_order_relaxed);
  block *loose = sc->loose;
  sc->loose = NULL;
  isola__lock_release(&sc->lock);

  /* Count them per slab.  Regions are only ever added at the head, and
   * every block taken is in a region that existed then. */
  pthread_mutex_lock(&slabs_lock);
  region *first_region = regions;
  pthread_mutex_unlock(&slabs_lock);
  for (region *r = first_region; r; r = r->next) {
    memset(r->free_in, 0, sizeof r->free_in);
    memset(r->release, 0, sizeof r->release);
  }
  size_t total = 0;
  for (uint32_t i = 0; i <= nb; i++)
    for (block *b = i < nb ? bv[i] : loose; b; b = b->next) {
      region_of(b)->free_in[slab_index(b)]++;
      total++;
    }

  /* Choose the slabs wholly free, as long as TRIM_LOW stays free.  A slab
   * with a part never carved (a thread's current slab) has fewer blocks
   * than it holds, and stays. */
  size_t released = 0, released_blocks = 0;
  for (region *r = first_region; r && total - released_blocks >= low + per;
       r = r->next)
    for (size_t k = 0;
         k < REGION_SLABS && total - released_blocks >= low + per; k++) {
      uint32_t n = slab_blocks(r, k, size);
      if (r->free_in[k] == n) {
        r->release[k] = true;
        released++;
        released_blocks += n;
      }
    }

  /* Put the other blocks back, in whole batches and the rest loose. */
  size_t nkept = total - released_blocks;
  block **kept = released ? malloc((nkept / BATCH + 1) * sizeof *kept) : NULL;
  if (released && !kept) released = 0; /* no memory: keep everything */
  uint32_t nkept_batches = 0;
  block *rest = NULL, *rest_tail = NULL;
  if (released) {
    block *cur = NULL;
    uint32_t n = 0;
    for (uint32_t i = 0; i <= nb; i++) {
      block *b = i < nb ? bv[i] : loose;
      while (b) {
        block *next = b->next;
        if (!region_of(b)->release[slab_index(b)]) {
          b->next = cur;
          if (!cur) rest_tail = b;
          cur = b;
          if (++n == BATCH) {
            kept[nkept_batches++] = cur;
            cur = NULL;
            n = 0;
          }
        }
        b = next;
      }
    }
    rest = cur;
    if (!rest) rest_tail = NULL;
    /* Nothing links into the chosen slabs any more: give them back, a run
     * of neighbours in one call (each call costs the other cores a TLB
     * flush: one per slab made the trims of a drained fan-in cost a fifth
     * of its run). */
    for (region *r = first_region; r; r = r->next)
      for (size_t k = 0; k < REGION_SLABS;) {
        size_t end = k;
        while (end < REGION_SLABS && r->release[end]) end++;
        if (end > k)
          isola__plat_release((char *)r + REGION_HEAD + k * SLAB_BYTES,
                              (end - k) * SLAB_BYTES);
        k = end + 1;
      }
    pthread_mutex_lock(&slabs_lock);
    for (region *r = first_region; r; r = r->next)
      for (size_t k = 0; k < REGION_SLABS; k++) {
        if (!r->release[k]) continue;
        char *slab = (char *)r + REGION_HEAD + k * SLAB_BYTES;
        if (nidle == idle_cap) {
          size_t cap = idle_cap ? idle_cap * 2 : 64;
          char **v = realloc(idle_slabs, cap * sizeof *v);
          if (!v) continue; /* mapped still; unmapped with its region */
          idle_slabs = v;
          idle_cap = cap;
        }
        idle_slabs[nidle++] = slab;
        slabs_returned++;
      }
    pthread_mutex_unlock(&slabs_lock);
  }

  isola__lock_acquire(&sc->lock);
  if (released) {
    for (uint32_t i = 0; i < nkept_batches; i++)
      if (!push_batch_locked(sc, kept[i])) {
        /* Keep the blocks loose rather than lose them. */
        block *last = kept[i];
        while (last->next) last = last->next;
        last->next = sc->loose;
        sc->loose = kept[i];
      }
    if (rest) {
      rest_tail->next = sc->loose;
      sc->loose = rest;
    }
  } else {
    for (uint32_t i = 0; i < nb; i++)
      if (!push_batch_locked(sc, bv[i])) {
        block *last = bv[i];
        while (last->next) last = last->next;
        last->next = sc->loose;
        sc->loose = bv[i];
      }
    if (loose) {
      block *last = loose;
      while (last->next) last = last->next;
      last->next = sc->loose;
      sc->loose = loose;
    }
  }
  /* The next trim once TRIM_HIGH - TRIM_LOW more is free. */
  uint32_t step = trim_high(c) - trim_low(c);
  uint32_t now = atomic_load_explicit(&sc->nbatches, memory_order_relaxed);
  sc->trim_at = now + step > trim_high(c) ? now + step : 0;
  sc->pushed = 0;
  atomic_fetch_sub_explicit(&sc->slabs, released, memory_order_relaxed);
  isola__lock_release(&sc->lock);
  free(kept);
  free(bv);
  pthread_mutex_unlock(&trim_lock);
  return released;
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
  /* The mark: as much free as trim_at says, or nearly all that was carved
   * free after enough frees since the last trim (see TRIM_HIGH). */
  uint32_t high = trim_high(cls);
  sc->pushed++;
  bool trim = nb + 1 >= (sc->trim_at ? sc->trim_at : high) ||
              (nb + 1 >= high && sc->pushed >= (high - trim_low(cls)) / 4 &&
               (size_t)(nb + 1) * BATCH * 8 >=
                   atomic_load_explicit(&sc->slabs, memory_order_relaxed) *
                       (SLAB_BYTES / class_size[cls]) * 7);
  isola__lock_release(&sc->lock);
  if (ISOLA__UNLIKELY(trim) &&
      !(atomic_load_explicit(&trim_mask, memory_order_relaxed) & (1u << cls)))
    atomic_fetch_or_explicit(&trim_mask, 1u << cls, memory_order_relaxed);
}

void isola__pool_idle(void) {
  if (ISOLA__LIKELY(!atomic_load_explicit(&trim_mask, memory_order_relaxed)))
    return;
  uint32_t m = atomic_exchange_explicit(&trim_mask, 0, memory_order_relaxed);
  for (uint8_t c = 0; c < ISOLA__POOL_CLASSES; c++)
    if (m & (1u << c)) trim_class(c);
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
    sc->trim_at = 0;
    sc->pushed = 0;
    atomic_store_explicit(&sc->slabs, 0, memory_order_relaxed);
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
  free(idle_slabs);
  atomic_store_explicit(&trim_mask, 0, memory_order_relaxed);
  idle_slabs = NULL;
  nidle = idle_cap = 0;
  slabs_returned = 0;
  pthread_mutex_unlock(&slabs_lock);
}

size_t isola__pool_regions(void) {
  pthread_mutex_lock(&slabs_lock);
  size_t n = nregions;
  pthread_mutex_unlock(&slabs_lock);
  return n;
}

size_t isola__pool_trim(void) {
  size_t n = 0;
  for (uint8_t c = 0; c < ISOLA__POOL_CLASSES; c++) n += trim_class(c);
  return n;
}

size_t isola__pool_slabs_returned(void) {
  pthread_mutex_lock(&slabs_lock);
  size_t n = slabs_returned;
  pthread_mutex_unlock(&slabs_lock);
  return n;
}
