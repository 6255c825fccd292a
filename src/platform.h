/*
 * platform.h — everything isola needs from the operating system.  A port to
 * another OS supplies these functions; platform_linux.c is the Linux one.
 * Nothing else in src/ includes an OS header beyond POSIX threads.
 */
#ifndef ISOLA_PLATFORM_H
#define ISOLA_PLATFORM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Number of processors available to this process (at least 1). */
unsigned isola__plat_ncpu(void);

/* Fills buf with len bytes from the kernel's CSPRNG.  Returns 0, or -1. */
int isola__plat_random(void *buf, size_t len);

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

/* A hint to the CPU that this thread is spinning. */
static inline void isola__plat_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

#endif
