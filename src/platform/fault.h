/* SPDX-License-Identifier: MIT */
/*
 * fault.h — failure injection, for the fault sweep (tests/test_fault.c).
 *
 * Compiled in only by the CMake option ISOLA_FAULT_INJECTION=ON, which
 * force-includes this header into every library source (-include).  In
 * that build every call the library makes to an allocator or to a system
 * call that can fail for reasons outside the program goes through
 * isola__fault_hit() first, which answers "fail this one" when the
 * category's window says so:
 *
 *   category          calls
 *   ALLOC             malloc, calloc, realloc, aligned_alloc, strdup,
 *                     and every pool block (isola__pool_alloc)
 *   MAP               mmap (the pool's regions)
 *   THREAD            pthread_create
 *   POLL              epoll_create1, epoll_ctl
 *   FD                eventfd, timerfd_create
 *   DLOPEN            dlopen
 *   RANDOM            getrandom
 *   IO                read, write, send, accept4 of socket streams
 *                     (stream.c opts in: only there, not the runtime's
 *                     own eventfd reads)
 *
 * A failed call fails as the real one would: NULL with errno ENOMEM, -1
 * with errno ENOMEM/EAGAIN, EAGAIN from pthread_create, NULL from dlopen.
 *
 * Without ISOLA_FAULT_INJECTION nothing here exists and nothing is
 * redirected: the normal build has no trace of it.
 */
#ifndef ISOLA_FAULT_H
#define ISOLA_FAULT_H

#ifdef ISOLA_FAULT_INJECTION

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Every header whose functions are redirected below, first, so that their
 * declarations are seen before the macros exist. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

typedef enum isola__fault_cat {
  ISOLA__FAULT_ALLOC,
  ISOLA__FAULT_MAP,
  ISOLA__FAULT_THREAD,
  ISOLA__FAULT_POLL,
  ISOLA__FAULT_FD,
  ISOLA__FAULT_DLOPEN,
  ISOLA__FAULT_RANDOM,
  ISOLA__FAULT_IO,
  ISOLA__FAULT_NCATS
} isola__fault_cat;

/* The category's name ("alloc", "map", ...), for reports. */
const char *isola__fault_cat_name(isola__fault_cat cat);

/* Arms category cat: of its calls from now on, the nth (1-based) and the
 * count - 1 after it fail (count 0: every call from the nth on).  Replaces
 * any window the category had.  Any thread. */
void isola__fault_arm(isola__fault_cat cat, uint64_t nth, uint64_t count);

/* Disarms every category: no call fails from now on.  Any thread. */
void isola__fault_disarm(void);

/* How many calls of cat failed since the last isola__fault_arm() of it. */
uint64_t isola__fault_failed(isola__fault_cat cat);

/* The return address of the call site of the first injected failure since
 * the last arm (NULL when none): it tells one injection point from another
 * in the sweep's report. */
void *isola__fault_first_site(isola__fault_cat cat);

/* The call stack of that first injected failure (at most max frames, the
 * innermost first); returns how many were stored, 0 when none failed. */
int isola__fault_first_stack(isola__fault_cat cat, void **frames, int max);

/* Counts a call of cat; true when it must fail.  site: the caller's
 * return address.  Any thread. */
bool isola__fault_hit(isola__fault_cat cat, void *site);

#define ISOLA__FAULT_HIT(cat) isola__fault_hit((cat), __builtin_return_address(0))

/* The redirected calls (fault.c). */
void *isola__fault_malloc(size_t n);
void *isola__fault_calloc(size_t n, size_t size);
void *isola__fault_realloc(void *p, size_t n);
void *isola__fault_aligned_alloc(size_t align, size_t n);
char *isola__fault_strdup(const char *s);
void *isola__fault_mmap(void *addr, size_t len, int prot, int flags, int fd,
                        off_t off);
int isola__fault_pthread_create(pthread_t *t, const pthread_attr_t *attr,
                                void *(*fn)(void *), void *arg);
int isola__fault_epoll_create1(int flags);
int isola__fault_epoll_ctl(int ep, int op, int fd, struct epoll_event *e);
int isola__fault_eventfd(unsigned int initval, int flags);
int isola__fault_timerfd_create(int clockid, int flags);
void *isola__fault_dlopen(const char *path, int flags);
ssize_t isola__fault_getrandom(void *buf, size_t len, unsigned int flags);
ssize_t isola__fault_read(int fd, void *buf, size_t len);
ssize_t isola__fault_write(int fd, const void *buf, size_t len);
ssize_t isola__fault_send(int fd, const void *buf, size_t len, int flags);
int isola__fault_accept4(int fd, struct sockaddr *sa, socklen_t *len,
                         int flags);
/* read, write, send and accept4 are not redirected everywhere (the
 * runtime's own eventfd reads cannot fail for outside reasons): a source
 * whose calls can (socket streams, services/stream.c) redirects them
 * itself, after its includes. */

#ifndef ISOLA_FAULT_IMPL /* fault.c itself calls the real ones */
#define malloc(n) isola__fault_malloc(n)
#define calloc(n, s) isola__fault_calloc((n), (s))
#define realloc(p, n) isola__fault_realloc((p), (n))
#define aligned_alloc(a, n) isola__fault_aligned_alloc((a), (n))
#define strdup(s) isola__fault_strdup(s)
#define mmap(a, l, p, f, d, o) isola__fault_mmap((a), (l), (p), (f), (d), (o))
#define pthread_create(t, a, f, x) isola__fault_pthread_create((t), (a), (f), (x))
#define epoll_create1(f) isola__fault_epoll_create1(f)
#define epoll_ctl(e, o, f, v) isola__fault_epoll_ctl((e), (o), (f), (v))
#define eventfd(i, f) isola__fault_eventfd((i), (f))
#define timerfd_create(c, f) isola__fault_timerfd_create((c), (f))
#define dlopen(p, f) isola__fault_dlopen((p), (f))
#define getrandom(b, l, f) isola__fault_getrandom((b), (l), (f))
#endif

#else /* !ISOLA_FAULT_INJECTION */

#define ISOLA__FAULT_HIT(cat) 0

#endif
#endif /* ISOLA_FAULT_H */
