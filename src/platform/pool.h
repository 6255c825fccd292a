/* SPDX-License-Identifier: MIT */
/*
 * pool.h — fixed-size blocks for the objects made by the million: messages
 * and isolates.
 *
 * Blocks are carved from 64 KiB slabs, in size classes that are multiples
 * of a cache line, so a block costs exactly its class (no allocator header)
 * and is cache-line aligned.  Pool threads and root isolate threads keep
 * freed blocks in per-class lists of their own; a message is allocated by
 * its sender and freed by its receiver, so lists grow on one thread and
 * shrink on another: a thread with too many hands a batch of 128 to a
 * shared stack, and a thread with none takes a batch back (one lock per
 * batch), as Pony's pool does.  Threads without a cache (plain threads that
 * send) take and give single blocks under the class's lock.
 *
 * A thread with a cache carves fresh blocks from slabs of its own, cut
 * from a 2 MiB region of its own (mapped from the OS, its pages backed a
 * slab at a time): threads that grow at once share no lock and no page
 * table page.  A thread that stops leaves the rest of its slabs and of its
 * region for the next one that needs them, so threads that come and go do
 * not map memory apiece.
 *
 * Memory comes back after a burst: when a class's free blocks on the
 * shared stack reach 2 MiB, the next pool thread that runs out of work
 * (isola__pool_idle) gives back to the OS (isola__plat_release) the slabs
 * whose every block is free there, keeping 512 KiB free for the traffic
 * that goes on (pool.c, TRIM_HIGH).
 * A slab given back stays mapped and is reused before any new space.
 * isola__pool_destroy() unmaps everything at shutdown.  Blocks larger than
 * the largest class come from malloc.
 */
#ifndef ISOLA_POOL_H
#define ISOLA_POOL_H

#include <stddef.h>
#include <stdint.h>

/* 64, 128, 192, 256, 320, 384, 512, 1024 and 2048 bytes */
#define ISOLA__POOL_CLASSES 9
#define ISOLA__POOL_NONE 0xff /* a block too big for a class: plain malloc */

/* A block of at least size bytes, cache-line aligned if size <= 2048 (else
 * from malloc, 16-byte aligned); *cls receives what isola__pool_free needs.
 * NULL when out of memory.  Any thread. */
void *isola__pool_alloc(size_t size, uint8_t *cls);

/* Frees a block from isola__pool_alloc.  Any thread. */
void isola__pool_free(void *p, uint8_t cls);

/* Turns the calling thread's cache on (pool and root threads) or off,
 * giving back what it holds. */
void isola__pool_thread_start(void);
void isola__pool_thread_stop(void);

/* Returns every slab (VM shutdown: no block is in use, no cache is on). */
void isola__pool_destroy(void);

/* The 2 MiB regions mapped so far (tests: memory a thread left behind is
 * reused, not mapped again). */
size_t isola__pool_regions(void);

/* Called by a pool thread that has run out of work, before it parks: gives
 * back the empty slabs of the classes whose free blocks reached the mark
 * since (a walk of their free blocks; nothing when none did).  Any thread. */
void isola__pool_idle(void);

/* Gives back every slab whose blocks are all free on the shared lists, as
 * a trim does, keeping 512 KiB free per class, whether or not the mark was
 * reached; returns how many slabs went back.  Any thread (tests). */
size_t isola__pool_trim(void);

/* Slabs given back to the OS since the pool started (tests). */
size_t isola__pool_slabs_returned(void);

#endif
