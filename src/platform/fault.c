/* SPDX-License-Identifier: MIT */
/* fault.c — failure injection (see fault.h).  Built only with
 * ISOLA_FAULT_INJECTION. */
#define ISOLA_FAULT_IMPL
#include "fault.h"

/* The build force-includes fault.h into every library source, this one
 * too, before ISOLA_FAULT_IMPL: here the names mean the real calls. */
#undef malloc
#undef calloc
#undef realloc
#undef aligned_alloc
#undef strdup
#undef mmap
#undef pthread_create
#undef epoll_create1
#undef epoll_ctl
#undef eventfd
#undef timerfd_create
#undef dlopen
#undef getrandom

#include <errno.h>
#include <execinfo.h>
#include <stdatomic.h>

typedef struct window {
  _Atomic uint64_t calls;  /* calls counted since the last arm */
  _Atomic uint64_t first;  /* 1-based index of the first to fail; 0: none */
  _Atomic uint64_t last;   /* index of the last to fail; UINT64_MAX: no end */
  _Atomic uint64_t failed; /* calls failed since the last arm */
  _Atomic(void *) site;    /* return address of the first failed call */
  void *stack[12];         /* its call stack (written by that call only) */
  int depth;
} window;

static window windows[ISOLA__FAULT_NCATS];

static const char *const names[ISOLA__FAULT_NCATS] = {
    "alloc", "map", "thread", "poll", "fd", "dlopen", "random", "io"};

const char *isola__fault_cat_name(isola__fault_cat cat) {
  return (unsigned)cat < ISOLA__FAULT_NCATS ? names[cat] : "?";
}

void isola__fault_arm(isola__fault_cat cat, uint64_t nth, uint64_t count) {
  window *w = &windows[cat];
  atomic_store(&w->first, 0); /* nothing fails while the window moves */
  atomic_store(&w->calls, 0);
  atomic_store(&w->failed, 0);
  atomic_store(&w->site, NULL);
  atomic_store(&w->last, count == 0 ? UINT64_MAX : nth + count - 1);
  atomic_store(&w->first, nth);
}

void isola__fault_disarm(void) {
  for (int i = 0; i < ISOLA__FAULT_NCATS; i++)
    atomic_store(&windows[i].first, 0);
}

uint64_t isola__fault_failed(isola__fault_cat cat) {
  return atomic_load(&windows[cat].failed);
}

void *isola__fault_first_site(isola__fault_cat cat) {
  return atomic_load(&windows[cat].site);
}

int isola__fault_first_stack(isola__fault_cat cat, void **frames, int max) {
  window *w = &windows[cat];
  if (!atomic_load(&w->site)) return 0;
  int n = w->depth < max ? w->depth : max;
  for (int i = 0; i < n; i++) frames[i] = w->stack[i];
  return n;
}

bool isola__fault_hit(isola__fault_cat cat, void *site) {
  window *w = &windows[cat];
  uint64_t first = atomic_load_explicit(&w->first, memory_order_acquire);
  if (first == 0) return false;
  uint64_t k = atomic_fetch_add(&w->calls, 1) + 1;
  if (k < first || k > atomic_load(&w->last)) return false;
  if (atomic_fetch_add(&w->failed, 1) == 0) {
    w->depth = backtrace(w->stack, 12);
    atomic_store(&w->site, site);
  }
  return true;
}

#define RA __builtin_return_address(0)

void *isola__fault_malloc(size_t n) {
  if (isola__fault_hit(ISOLA__FAULT_ALLOC, RA)) {
    errno = ENOMEM;
    return NULL;
  }
  return malloc(n);
}

void *isola__fault_calloc(size_t n, size_t size) {
  if (isola__fault_hit(ISOLA__FAULT_ALLOC, RA)) {
    errno = ENOMEM;
    return NULL;
  }
  return calloc(n, size);
}

void *isola__fault_realloc(void *p, size_t n) {
  if (isola__fault_hit(ISOLA__FAULT_ALLOC, RA)) {
    errno = ENOMEM;
    return NULL; /* p stays valid, as with a real failure */
  }
  return realloc(p, n);
}

void *isola__fault_aligned_alloc(size_t align, size_t n) {
  if (isola__fault_hit(ISOLA__FAULT_ALLOC, RA)) {
    errno = ENOMEM;
    return NULL;
  }
  return aligned_alloc(align, n);
}

char *isola__fault_strdup(const char *s) {
  if (isola__fault_hit(ISOLA__FAULT_ALLOC, RA)) {
    errno = ENOMEM;
    return NULL;
  }
  return strdup(s);
}

void *isola__fault_mmap(void *addr, size_t len, int prot, int flags, int fd,
                        off_t off) {
  if (isola__fault_hit(ISOLA__FAULT_MAP, RA)) {
    errno = ENOMEM;
    return MAP_FAILED;
  }
  return mmap(addr, len, prot, flags, fd, off);
}

int isola__fault_pthread_create(pthread_t *t, const pthread_attr_t *attr,
                                void *(*fn)(void *), void *arg) {
  if (isola__fault_hit(ISOLA__FAULT_THREAD, RA)) return EAGAIN;
  return pthread_create(t, attr, fn, arg);
}

int isola__fault_epoll_create1(int flags) {
  if (isola__fault_hit(ISOLA__FAULT_POLL, RA)) {
    errno = ENOMEM;
    return -1;
  }
  return epoll_create1(flags);
}

int isola__fault_epoll_ctl(int ep, int op, int fd, struct epoll_event *e) {
  /* Only registrations fail: a real EPOLL_CTL_DEL of a registered fd
   * cannot fail for want of memory. */
  if (op != EPOLL_CTL_DEL && isola__fault_hit(ISOLA__FAULT_POLL, RA)) {
    errno = ENOMEM;
    return -1;
  }
  return epoll_ctl(ep, op, fd, e);
}

int isola__fault_eventfd(unsigned int initval, int flags) {
  if (isola__fault_hit(ISOLA__FAULT_FD, RA)) {
    errno = EMFILE;
    return -1;
  }
  return eventfd(initval, flags);
}

int isola__fault_timerfd_create(int clockid, int flags) {
  if (isola__fault_hit(ISOLA__FAULT_FD, RA)) {
    errno = EMFILE;
    return -1;
  }
  return timerfd_create(clockid, flags);
}

void *isola__fault_dlopen(const char *path, int flags) {
  if (isola__fault_hit(ISOLA__FAULT_DLOPEN, RA)) return NULL;
  return dlopen(path, flags);
}

ssize_t isola__fault_getrandom(void *buf, size_t len, unsigned int flags) {
  if (isola__fault_hit(ISOLA__FAULT_RANDOM, RA)) {
    errno = EAGAIN;
    return -1;
  }
  return getrandom(buf, len, flags);
}

/* Socket calls fail as a peer that resets the connection makes them. */
ssize_t isola__fault_read(int fd, void *buf, size_t len) {
  if (isola__fault_hit(ISOLA__FAULT_IO, RA)) {
    errno = ECONNRESET;
    return -1;
  }
  return read(fd, buf, len);
}

ssize_t isola__fault_write(int fd, const void *buf, size_t len) {
  if (isola__fault_hit(ISOLA__FAULT_IO, RA)) {
    errno = EPIPE;
    return -1;
  }
  return write(fd, buf, len);
}

ssize_t isola__fault_send(int fd, const void *buf, size_t len, int flags) {
  if (isola__fault_hit(ISOLA__FAULT_IO, RA)) {
    errno = ECONNRESET;
    return -1;
  }
  return send(fd, buf, len, flags);
}

int isola__fault_accept4(int fd, struct sockaddr *sa, socklen_t *len,
                         int flags) {
  if (isola__fault_hit(ISOLA__FAULT_IO, RA)) {
    errno = EMFILE;
    return -1;
  }
  return accept4(fd, sa, len, flags);
}
