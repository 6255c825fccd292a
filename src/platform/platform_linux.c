/* SPDX-License-Identifier: MIT */
/* platform_linux.c — the Linux implementation of platform.h. */
#include "platform.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

unsigned isola__plat_ncpu(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return (unsigned)n;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (unsigned)n : 1u;
}

int isola__plat_random(void *buf, size_t len) {
  unsigned char *p = buf;
  while (len > 0) {
    ssize_t got = getrandom(p, len, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += got;
    len -= (size_t)got;
  }
  return 0;
}

void *isola__plat_map(size_t len) {
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

void *isola__plat_map_aligned(size_t len, size_t align) {
  /* Map align more than needed and unmap the ends outside the aligned
   * part. */
  char *p = mmap(NULL, len + align, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  uintptr_t start = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
  size_t head = (size_t)(start - (uintptr_t)p);
  if (head) munmap(p, head);
  if (align - head) munmap((char *)start + len, align - head);
#ifdef MADV_NOHUGEPAGE
  /* Aligned to 2 MiB, the range could get huge pages where they are on
   * for everything; releasing 64 KiB of one would split it. */
  (void)madvise((void *)start, len, MADV_NOHUGEPAGE);
#endif
  return (void *)start;
}

void isola__plat_unmap(void *p, size_t len) { munmap(p, len); }

void isola__plat_release(void *p, size_t len) {
  /* MADV_DONTNEED, not MADV_FREE: the pages leave the RSS at once (MADV_FREE
   * leaves them counted until the kernel is short of memory), so what the
   * pool returns shows in the figures the user reads. */
  (void)madvise(p, len, MADV_DONTNEED);
}

void isola__plat_prefault(void *p, size_t len) {
#ifdef MADV_POPULATE_WRITE
  /* madvise takes whole pages: the pages wholly inside the range. */
  const uintptr_t page = 4096;
  uintptr_t start = ((uintptr_t)p + page - 1) & ~(page - 1);
  uintptr_t end = ((uintptr_t)p + len) & ~(page - 1);
  if (end > start) /* Linux 5.14 and later; else EINVAL, and nothing done */
    (void)madvise((void *)start, end - start, MADV_POPULATE_WRITE);
#else
  (void)p, (void)len;
#endif
}

uint64_t isola__plat_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void isola__plat_wait(_Atomic uint32_t *word, uint32_t expected,
                      uint64_t timeout_ns) {
  struct timespec ts, *tsp = NULL;
  if (timeout_ns > 0) {
    ts.tv_sec = (time_t)(timeout_ns / 1000000000u);
    ts.tv_nsec = (long)(timeout_ns % 1000000000u);
    tsp = &ts;
  }
  /* The kernel compares *word with expected atomically with going to sleep,
   * so a wake that changed the word first is never lost. */
  syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, expected, tsp,
          NULL, 0);
}

void isola__plat_wake_one(_Atomic uint32_t *word) {
  syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

void isola__plat_wake_all(_Atomic uint32_t *word) {
  syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL,
          0);
}

void isola__plat_yield(void) { sched_yield(); }

/* membarrier(2)'s private expedited command: an IPI to every CPU running a
 * thread of this process, each executing a full barrier (Linux 4.14). */

static _Atomic int fence_heavy_state; /* 0 unknown, 1 registered, -1 not */

bool isola__plat_fence_heavy_init(void) {
  int st = atomic_load_explicit(&fence_heavy_state, memory_order_acquire);
  if (st == 0) {
    st = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
                 0, 0) == 0
             ? 1
             : -1;
    atomic_store_explicit(&fence_heavy_state, st, memory_order_release);
  }
  return st == 1;
}

bool isola__plat_fence_heavy(void) {
  if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0)
    return true;
  /* Not registered: a kernel that does not pass the registration to a
   * child made by fork() (this one, 6.x, does).  Register, then again. */
  return errno == EPERM &&
         syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0,
                 0) == 0 &&
         syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
}

/* ---- the poller: epoll, with an eventfd to be woken ------------------- */

struct isola__poller {
  int ep;
  int wake;
};

#define WAKE_KEY UINT64_MAX

isola__poller *isola__plat_poller_open(void) {
  isola__poller *p = malloc(sizeof *p);
  if (!p) return NULL;
  p->ep = epoll_create1(EPOLL_CLOEXEC);
  p->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = WAKE_KEY};
  if (p->ep < 0 || p->wake < 0 ||
      epoll_ctl(p->ep, EPOLL_CTL_ADD, p->wake, &e) != 0) {
    if (p->ep >= 0) close(p->ep);
    if (p->wake >= 0) close(p->wake);
    free(p);
    return NULL;
  }
  return p;
}

void isola__plat_poller_close(isola__poller *p) {
  if (!p) return;
  close(p->ep);
  close(p->wake);
  free(p);
}

int isola__plat_poller_arm(isola__poller *p, int fd, uint32_t events,
                           uint64_t key, bool add) {
  struct epoll_event e = {.events = EPOLLONESHOT, .data.u64 = key};
  if (events & ISOLA__POLL_IN) e.events |= EPOLLIN | EPOLLRDHUP;
  if (events & ISOLA__POLL_OUT) e.events |= EPOLLOUT;
  return epoll_ctl(p->ep, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &e);
}

int isola__plat_poller_del(isola__poller *p, int fd) {
  return epoll_ctl(p->ep, EPOLL_CTL_DEL, fd, NULL);
}

void isola__plat_poller_wake(isola__poller *p) {
  uint64_t one = 1;
  ssize_t n = write(p->wake, &one, sizeof one);
  (void)n; /* a full counter already wakes the waiter */
}

int isola__plat_poller_wait(isola__poller *p, uint64_t timeout_ns,
                            isola__poll_event *ev, int max) {
  struct epoll_event es[64];
  if (max > 64) max = 64;
  int ms = -1;
  if (timeout_ns != UINT64_MAX) {
    uint64_t m = (timeout_ns + 999999u) / 1000000u; /* never early */
    ms = m > INT_MAX ? INT_MAX : (int)m;
  }
  int n = epoll_wait(p->ep, es, max, ms);
  int out = 0;
  for (int i = 0; i < n; i++) {
    if (es[i].data.u64 == WAKE_KEY) {
      uint64_t v;
      ssize_t r = read(p->wake, &v, sizeof v);
      (void)r;
      continue;
    }
    uint32_t got = 0;
    if (es[i].events & (EPOLLIN | EPOLLRDHUP)) got |= ISOLA__POLL_IN;
    if (es[i].events & EPOLLOUT) got |= ISOLA__POLL_OUT;
    if (es[i].events & (EPOLLERR | EPOLLHUP)) got |= ISOLA__POLL_ERR;
    ev[out].key = es[i].data.u64;
    ev[out].events = got;
    out++;
  }
  return out;
}
