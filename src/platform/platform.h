/* SPDX-License-Identifier: MIT */
/*
 * platform.h — everything isola needs from the operating system.  A port to
 * another OS supplies these functions; platform_linux.c is the Linux one.
 * Nothing else in src/ includes an OS header beyond POSIX threads.
 */
#ifndef ISOLA_PLATFORM_H
#define ISOLA_PLATFORM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Number of processors available to this process (at least 1). */
unsigned isola__plat_ncpu(void);

/* Fills buf with len bytes from the kernel's CSPRNG.  Returns 0, or -1. */
int isola__plat_random(void *buf, size_t len);

/* Maps len bytes (a multiple of the page size) of zeroed, page-aligned
 * memory straight from the OS; NULL when none is left.  (Huge pages were
 * tried for the pool's regions: zeroing and compacting 2 MiB at a fault
 * made spawn and fan-in slower and erratic.) */
void *isola__plat_map(size_t len);
/* As isola__plat_map, the start a multiple of align (a power of two, a
 * multiple of the page size); NULL when none is left.  Returned with
 * isola__plat_unmap(p, len).  Not backed by huge pages (see above). */
void *isola__plat_map_aligned(size_t len, size_t align);
/* Returns memory from isola__plat_map(). */
void isola__plat_unmap(void *p, size_t len);
/* Gives the pages of [p, p+len) (mapped memory; p and len multiples of the
 * page size) back to the OS now: the range stays mapped, reads as zeros
 * and is backed again when next written.  Where the OS cannot, nothing
 * happens. */
void isola__plat_release(void *p, size_t len);
/* Asks the OS to back the pages of [p, p+len) (mapped memory) now, in one
 * call, rather than one fault per page as each is first written.  A hint:
 * where the OS cannot, nothing happens. */
void isola__plat_prefault(void *p, size_t len);

/* Monotonic time in nanoseconds. */
uint64_t isola__plat_now_ns(void);

/* Blocks while *word == expected, at most timeout_ns (0: no limit).  May
 * return early (spuriously); callers re-check their condition. */
void isola__plat_wait(_Atomic uint32_t *word, uint32_t expected,
                      uint64_t timeout_ns);

/* Wakes one thread blocked in isola__plat_wait() on word. */
void isola__plat_wake_one(_Atomic uint32_t *word);

/* Wakes every thread blocked on word. */
void isola__plat_wake_all(_Atomic uint32_t *word);

/* Gives up the processor for a moment. */
void isola__plat_yield(void);

/* Asymmetric fences, for a protocol whose one side runs all the time and
 * the other rarely (the scheduler's runnext: scheduler.c).  The frequent
 * side issues isola__plat_fence_light(), which only keeps the compiler from
 * moving memory accesses across it; the rare side issues
 * isola__plat_fence_heavy(), which makes every thread of the process that
 * is running execute a full fence.  Together they order as a seq_cst fence
 * on each side would (the asymmetric fences of C++ proposal P1202).
 * isola__plat_fence_heavy_init() must have returned true once in the
 * process before isola__plat_fence_heavy() is used; false: not available
 * here (then the rare side must not rely on it).  Any thread. */
bool isola__plat_fence_heavy_init(void);
bool isola__plat_fence_heavy(void);
static inline void isola__plat_fence_light(void) {
  atomic_signal_fence(memory_order_seq_cst);
}

/* A poller: file-descriptor readiness and a wake-up, for the event handler
 * thread (timer.c).  Events are ISOLA__POLL_* bits; every registration is
 * one-shot: after an event the fd is disarmed until re-armed. */
typedef struct isola__poller isola__poller;
#define ISOLA__POLL_IN 0x1u
#define ISOLA__POLL_OUT 0x2u
#define ISOLA__POLL_ERR 0x4u /* an error or a hang-up */

typedef struct isola__poll_event {
  uint64_t key;
  uint32_t events;
} isola__poll_event;

/* NULL when the OS refuses. */
isola__poller *isola__plat_poller_open(void);
void isola__plat_poller_close(isola__poller *p);
/* Registers fd (add) or re-arms it (add == false) for events, reported
 * with key.  0, or -1 with errno set. */
int isola__plat_poller_arm(isola__poller *p, int fd, uint32_t events,
                           uint64_t key, bool add);
/* Unregisters fd.  0, or -1. */
int isola__plat_poller_del(isola__poller *p, int fd);
/* Makes a waiting isola__plat_poller_wait() return. */
void isola__plat_poller_wake(isola__poller *p);
/* Waits for events, at most timeout_ns (UINT64_MAX: no limit), and fills up
 * to max of them; returns how many (0 on time-out or wake-up). */
int isola__plat_poller_wait(isola__poller *p, uint64_t timeout_ns,
                            isola__poll_event *ev, int max);

/* A hint to the CPU that this thread is spinning. */
static inline void isola__plat_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

#endif
