/* pool.c — per-thread caches of fixed-size blocks carved from slabs (see
 * pool.h). */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "internal.h"

#define BATCH 128u             /* blocks moved between threads at once */
#define LOCAL_MAX (2 * BATCH)  /* a thread keeps at most this many */
#define SLAB_BYTES (64u * 1024u)

typedef struct block {
  struct block *next;
} block;

typedef struct slab {
  struct slab *next;
} slab;

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
  pthread_mutex_t lock;
  _Atomic uint32_t nbatches; /* written under lock; read as a hint */
  uint32_t cap;
  block **batches;
  block *loose;
  char *carve, *carve_end;
} shared_class;

#define SHARED_INIT {PTHREAD_MUTEX_INITIALIZER, 0, 0, NULL, NULL, NULL, NULL}
static shared_class shared[ISOLA__POOL_CLASSES] = {
    SHARED_INIT, SHARED_INIT, SHARED_INIT, SHARED_INIT, SHARED_INIT,
    SHARED_INIT, SHARED_INIT, SHARED_INIT, SHARED_INIT};
static pthread_mutex_t slabs_lock = PTHREAD_MUTEX_INITIALIZER;
static slab *slabs; /* every slab, freed by isola__pool_destroy */

static inline uint8_t class_of(size_t size) {
  uint8_t c = 0;
  while (c < ISOLA__POOL_CLASSES && class_size[c] < size) c++;
  return c < ISOLA__POOL_CLASSES ? c : ISOLA__POOL_NONE;
}

/* Carves one block of class c; called with shared[c].lock held. */
static block *carve_locked(uint8_t c) {
  shared_class *sc = &shared[c];
  if (sc->carve + class_size[c] > sc->carve_end) {
    /* A new slab: its first line links it into the list of slabs. */
    char *mem = aligned_alloc(ISOLA__CACHE_LINE, SLAB_BYTES);
    if (!mem) return NULL;
    slab *s = (slab *)mem;
    pthread_mutex_lock(&slabs_lock);
    s->next = slabs;
    slabs = s;
    pthread_mutex_unlock(&slabs_lock);
    sc->carve = mem + ISOLA__CACHE_LINE;
    sc->carve_end = mem + SLAB_BYTES;
  }
  block *b = (block *)sc->carve;
  sc->carve += class_size[c];
  return b;
}

/* A block for a thread whose cache is empty or off. */
static block *refill(uint8_t c) {
  shared_class *sc = &shared[c];
  block *b = NULL;
  pthread_mutex_lock(&sc->lock);
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
  } else if ((b = carve_locked(c)) && cache.on) {
    /* Carve a batch at once, so the lock is taken once per batch. */
    for (uint32_t i = 1; i < BATCH; i++) {
      block *x = carve_locked(c);
      if (!x) break;
      x->next = cache.head[c];
      cache.head[c] = x;
      cache.n[c]++;
    }
  }
  pthread_mutex_unlock(&sc->lock);
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
    pthread_mutex_lock(&sc->lock);
    b->next = sc->loose;
    sc->loose = b;
    pthread_mutex_unlock(&sc->lock);
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
  pthread_mutex_lock(&sc->lock);
  uint32_t nb = atomic_load_explicit(&sc->nbatches, memory_order_relaxed);
  if (nb == sc->cap) {
    uint32_t cap = sc->cap ? sc->cap * 2 : 64;
    block **v = realloc(sc->batches, cap * sizeof *v);
    if (!v) {
      /* Keep the blocks loose rather than lose them. */
      last->next = sc->loose;
      sc->loose = first;
      pthread_mutex_unlock(&sc->lock);
      return;
    }
    sc->batches = v;
    sc->cap = cap;
  }
  sc->batches[nb] = first;
  atomic_store_explicit(&sc->nbatches, nb + 1, memory_order_relaxed);
  pthread_mutex_unlock(&sc->lock);
}

void isola__pool_thread_start(void) { cache.on = true; }

/* Gives the calling thread's cached blocks back as loose blocks. */
void isola__pool_thread_stop(void) {
  for (int c = 0; c < ISOLA__POOL_CLASSES; c++) {
    block *b = cache.head[c];
    if (b) {
      block *last = b;
      while (last->next) last = last->next;
      pthread_mutex_lock(&shared[c].lock);
      last->next = shared[c].loose;
      shared[c].loose = b;
      pthread_mutex_unlock(&shared[c].lock);
    }
    cache.head[c] = NULL;
    cache.n[c] = 0;
  }
  cache.on = false;
}

void isola__pool_destroy(void) {
  for (int c = 0; c < ISOLA__POOL_CLASSES; c++) {
    shared_class *sc = &shared[c];
    pthread_mutex_lock(&sc->lock);
    free(sc->batches);
    sc->batches = NULL;
    sc->cap = 0;
    atomic_store_explicit(&sc->nbatches, 0, memory_order_relaxed);
    sc->loose = NULL;
    sc->carve = sc->carve_end = NULL;
    pthread_mutex_unlock(&sc->lock);
  }
  pthread_mutex_lock(&slabs_lock);
  while (slabs) {
    slab *next = slabs->next;
    free(slabs);
    slabs = next;
  }
  pthread_mutex_unlock(&slabs_lock);
}
