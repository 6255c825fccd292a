/* SPDX-License-Identifier: MIT */
/*
 * stream.c — isola_stream (docs/streams.md): buffered sockets over fd
 * watches, built on the public API.
 *
 * Everything belongs to the owner isolate's thread.  The struct and both
 * buffers come from the owner's heap (isola_alloc), so its heap limit
 * covers them; a growth that would pass the limit is checked for first
 * and reported (ISOLA_ENOMEM, or a close with ENOMEM), never raised.  A stream is closed at once (watch and fd) but freed, and
 * on_close run, in a microtask after the event: code that called into the
 * stream from a callback never returns into freed memory.  An
 * isolate-local list closes the fds of whatever is still open when the
 * owner ends.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <isola.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "heap.h" /* isola__heap_try_*: buffers that never raise */

#ifdef ISOLA_FAULT_INJECTION
/* The socket calls take part in the fault sweep (platform/fault.h). */
#define read(f, b, n) isola__fault_read((f), (b), (n))
#define write(f, b, n) isola__fault_write((f), (b), (n))
#define send(f, b, n, fl) isola__fault_send((f), (b), (n), (fl))
#define accept4(f, a, l, fl) isola__fault_accept4((f), (a), (l), (fl))
#endif

#define DEFAULT_MAX_FRAME 65536u
#define DEFAULT_WRITE_LIMIT 262144u
#define MAX_FRAME_LIMIT (1u << 30)
#define READS_PER_EVENT 16

struct isola_stream {
  struct isola_stream *next, *prev; /* the owner's open streams */
  isola_port owner;
  int fd;
  isola_watch watch;
  uint32_t events; /* what the watch waits for now */
  isola_stream_options o;
  uint8_t *rbuf; /* rlen bytes read, not yet delivered */
  size_t rlen, rcap;
  uint8_t *wbuf; /* wbuf[woff, wlen) waits to be written */
  size_t woff, wlen, wcap;
  bool reading;    /* the user wants input */
  bool connecting; /* a connect() in progress */
  bool closing;    /* isola_stream_close(): flush, then close */
  bool closed;     /* the fd is closed; freed in a microtask */
  bool want_drain; /* on_drain owed when the buffer empties */
  bool eof;        /* the peer closed its side: flushing, then EOF */
  int reason, err;
};

struct isola_stream_listener {
  struct isola_stream_listener *next, *prev;
  isola_port owner;
  int fd;
  isola_watch watch;
  uint16_t port;
  bool closed;
  isola_stream_accept_fn on_accept;
  void *ctx;
};

/* ---- the owner's list -------------------------------------------------- */

typedef struct owned {
  isola_stream *streams;
  isola_stream_listener *listeners;
} owned;

/* The owner ends: its watches close by themselves, its heap is freed
 * right after; only the fds are left to close. */
static void owned_end(void *value) {
  owned *o = value;
  for (isola_stream *s = o->streams; s; s = s->next) close(s->fd);
  for (isola_stream_listener *l = o->listeners; l; l = l->next) close(l->fd);
  o->streams = NULL;
  o->listeners = NULL;
}

static ISOLA_LOCAL_INIT(owned, owned_key, NULL, owned_end);

#define LINK(head, x)                                                          \
  do {                                                                         \
    (x)->prev = NULL;                                                          \
    (x)->next = (head);                                                        \
    if (head) (head)->prev = (x);                                              \
    (head) = (x);                                                              \
  } while (0)
#define UNLINK(head, x)                                                        \
  do {                                                                         \
    if ((x)->prev)                                                             \
      (x)->prev->next = (x)->next;                                             \
    else                                                                       \
      (head) = (x)->next;                                                      \
    if ((x)->next) (x)->next->prev = (x)->prev;                                \
  } while (0)

static int me(isola_port *out) {
  isola_isolate_info info;
  if (isola_current_info(&info) != ISOLA_OK) return ISOLA_ENOTISOLATE;
  *out = info.control_port;
  return ISOLA_OK;
}

static int check(const isola_stream *s) {
  isola_port p;
  int rc = me(&p);
  if (rc != ISOLA_OK) return rc;
  if (!s) return ISOLA_EINVAL;
  return p == s->owner ? ISOLA_OK : ISOLA_ENOTOWNER;
}

/* Whether growing a heap block from old_cap to new_cap bytes (0: a new
 * block) stays within the owner's heap limit.  The stream checks before it
 * allocates, so it never raises the out-of-memory error: it reports it. */
static bool heap_room(size_t old_cap, size_t new_cap) {
  isola_isolate_stats st;
  if (isola_current_stats(&st) != ISOLA_OK || !st.heap_limit) return true;
  size_t used = st.heap_bytes + st.message_bytes;
  size_t more = new_cap - old_cap + (old_cap ? 0 : 64); /* + a header */
  return used <= st.heap_limit && more <= st.heap_limit - used;
}

const char *isola_stream_reason_name(int reason) {
  switch (reason) {
  case ISOLA_STREAM_CLOSED: return "closed";
  case ISOLA_STREAM_EOF: return "eof";
  case ISOLA_STREAM_ERROR: return "error";
  case ISOLA_STREAM_OVERSIZE: return "oversize";
  case ISOLA_STREAM_MALFORMED: return "malformed";
  default: return "unknown";
  }
}

/* ---- closing ----------------------------------------------------------- */

static void finish(void *arg) {
  isola_stream *s = arg;
  if (s->o.on_close) s->o.on_close(s, s->reason, s->err, s->o.ctx);
  isola_free(s->rbuf);
  isola_free(s->wbuf);
  isola_free(s);
}

/* Closes now; on_close and the free come after the event. */
static void close_with(isola_stream *s, int reason, int err) {
  if (s->closed) return;
  s->closed = true;
  s->reason = reason;
  s->err = err;
  isola_watch_close(s->watch);
  close(s->fd);
  owned *o = isola_local_get(&owned_key);
  if (o) UNLINK(o->streams, s);
  if (isola_microtask(finish, s) != ISOLA_OK) finish(s);
}

/* ---- the watch --------------------------------------------------------- */

static void set_events(isola_stream *s) {
  uint32_t ev = 0;
  if (s->connecting || s->wlen > s->woff) ev |= ISOLA_WRITABLE;
  if (s->reading && !s->closing && !s->connecting) ev |= ISOLA_READABLE;
  if (ev == s->events) return; /* 0: nothing for now, still open */
  if (isola_watch_set_events(s->watch, ev) == ISOLA_OK) s->events = ev;
}

/* Writes what the buffer holds; closes on a hard error.  false: closed. */
static bool flush(isola_stream *s) {
  while (s->wlen > s->woff) {
    ssize_t n = send(s->fd, s->wbuf + s->woff, s->wlen - s->woff,
                     MSG_NOSIGNAL);
    if (n < 0 && errno == ENOTSOCK)
      n = write(s->fd, s->wbuf + s->woff, s->wlen - s->woff);
    if (n > 0) {
      s->woff += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    close_with(s, ISOLA_STREAM_ERROR, n < 0 ? errno : EPIPE);
    return false;
  }
  if (s->woff == s->wlen) {
    s->woff = s->wlen = 0;
    if (s->closing) {
      close_with(s, s->eof ? ISOLA_STREAM_EOF : ISOLA_STREAM_CLOSED, 0);
      return false;
    }
    if (s->want_drain) {
      s->want_drain = false;
      set_events(s);
      if (s->o.on_drain) s->o.on_drain(s, s->o.ctx);
      return !s->closed;
    }
  }
  set_events(s);
  return true;
}

static bool valid_utf8(const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = p[i];
    size_t k;
    uint32_t cp;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      k = 1, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      k = 2, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      k = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i <= k) return false; /* cut short */
    for (size_t j = 1; j <= k; j++) {
      if ((p[i + j] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + j] & 0x3F);
    }
    if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) ||
        (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += k + 1;
  }
  return true;
}

/* Hands out every complete line or frame in rbuf.  false: closed. */
static bool deliver(isola_stream *s, bool at_eof) {
  size_t off = 0;
  bool ok = true;
  while (ok && !s->closed && s->reading) {
    uint8_t *p = s->rbuf + off;
    size_t avail = s->rlen - off;
    if (s->o.framing == ISOLA_STREAM_RAW) {
      if (!avail) break;
      off += avail;
      s->o.on_data(s, p, avail, s->o.ctx);
    } else if (s->o.framing == ISOLA_STREAM_LINES) {
      uint8_t *nl = memchr(p, '\n', avail);
      size_t len, used;
      if (nl) {
        len = (size_t)(nl - p);
        used = len + 1;
      } else if (avail > s->o.max_frame + 1) { /* +1: a '\r' */
        close_with(s, ISOLA_STREAM_OVERSIZE, 0);
        return false;
      } else if (at_eof && avail) {
        len = used = avail;
      } else {
        break;
      }
      if (len && p[len - 1] == '\r') len--;
      if (len > s->o.max_frame) {
        close_with(s, ISOLA_STREAM_OVERSIZE, 0);
        return false;
      }
      if (s->o.text && !valid_utf8(p, len)) {
        close_with(s, ISOLA_STREAM_MALFORMED, 0);
        return false;
      }
      off += used;
      s->o.on_data(s, p, len, s->o.ctx);
    } else {
      if (avail < 4) {
        if (at_eof && avail) {
          close_with(s, ISOLA_STREAM_MALFORMED, 0);
          return false;
        }
        break;
      }
      size_t len = (size_t)p[0] << 24 | (size_t)p[1] << 16 |
                   (size_t)p[2] << 8 | p[3];
      if (len > s->o.max_frame) {
        close_with(s, ISOLA_STREAM_OVERSIZE, 0);
        return false;
      }
      if (avail - 4 < len) {
        if (at_eof) {
          close_with(s, ISOLA_STREAM_MALFORMED, 0);
          return false;
        }
        break;
      }
      off += 4 + len;
      s->o.on_data(s, p + 4, len, s->o.ctx);
    }
  }
  if (s->closed) return false;
  /* Keep the rest (a partial line or frame) at the front. */
  if (off) {
    memmove(s->rbuf, s->rbuf + off, s->rlen - off);
    s->rlen -= off;
  }
  return true;
}

/* The space a complete line or frame may need. */
static size_t read_cap(const isola_stream *s) {
  switch (s->o.framing) {
  case ISOLA_STREAM_LINES: return s->o.max_frame + 2; /* "\r\n" */
  case ISOLA_STREAM_FRAMES: return s->o.max_frame + 4;
  default: return s->o.max_frame;
  }
}

static void on_readable(isola_stream *s) {
  for (int round = 0; round < READS_PER_EVENT && s->reading; round++) {
    if (s->rlen == s->rcap) {
      /* Grow toward the largest frame: 4 KiB first, doubling. */
      size_t cap = s->rcap ? s->rcap * 2 : 4096;
      if (cap > read_cap(s)) cap = read_cap(s);
      if (cap == s->rcap) { /* full and no complete line: too long */
        close_with(s, ISOLA_STREAM_OVERSIZE, 0);
        return;
      }
      if (!heap_room(s->rcap, cap)) {
        close_with(s, ISOLA_STREAM_ERROR, ENOMEM);
        return;
      }
      uint8_t *nb = isola__heap_try_realloc(s->rbuf, cap);
      if (!nb) { /* the system has no memory for it */
        close_with(s, ISOLA_STREAM_ERROR, ENOMEM);
        return;
      }
      s->rbuf = nb;
      s->rcap = cap;
    }
    ssize_t n = read(s->fd, s->rbuf + s->rlen, s->rcap - s->rlen);
    if (n > 0) {
      s->rlen += (size_t)n;
      if (!deliver(s, false)) return;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n == 0) {
      if (!deliver(s, true)) return;
      if (s->wlen == s->woff && !s->connecting) {
        close_with(s, ISOLA_STREAM_EOF, 0);
      } else { /* what on_data wrote is written first */
        s->eof = s->closing = true;
        set_events(s);
      }
      return;
    }
    close_with(s, ISOLA_STREAM_ERROR, errno);
    return;
  }
}

static void on_ready(int fd, uint32_t events, void *arg) {
  isola_stream *s = arg;
  (void)fd;
  if (s->closed) return;
  if ((events & ISOLA_FD_ERROR) &&
      isola_watch_set_events(s->watch, s->events) == ISOLA_ECLOSED) {
    /* The runtime could not re-arm the watch and closed it (see
     * isola_watch_open): no event would come again. */
    close_with(s, ISOLA_STREAM_ERROR, EIO);
    return;
  }
  if (s->connecting && (events & (ISOLA_WRITABLE | ISOLA_FD_ERROR))) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err) {
      close_with(s, ISOLA_STREAM_ERROR, err);
      return;
    }
    s->connecting = false;
  }
  if ((events & ISOLA_WRITABLE) && !s->connecting && !flush(s)) return;
  if (events & (ISOLA_READABLE | ISOLA_FD_ERROR)) on_readable(s);
  if (!s->closed) set_events(s);
}

/* ---- opening ----------------------------------------------------------- */

static int make(int fd, const isola_stream_options *opts, bool connecting,
                isola_stream **out) {
  isola_port owner;
  int rc = me(&owner);
  if (rc == ISOLA_OK && (fd < 0 || !opts || !out || !opts->on_data ||
                         opts->framing > ISOLA_STREAM_FRAMES ||
                         opts->max_frame > MAX_FRAME_LIMIT))
    rc = ISOLA_EINVAL;
  owned *o = rc == ISOLA_OK ? isola_local_get(&owned_key) : NULL;
  if (rc == ISOLA_OK && !o) rc = ISOLA_ENOMEM;
  if (rc != ISOLA_OK) {
    if (fd >= 0) close(fd);
    return rc;
  }
  if (!heap_room(0, sizeof(isola_stream))) {
    close(fd);
    return ISOLA_ENOMEM;
  }
  isola_stream *s = isola__heap_try_calloc(sizeof *s);
  if (!s) {
    close(fd);
    return ISOLA_ENOMEM;
  }
  s->owner = owner;
  s->fd = fd;
  s->o = *opts;
  if (!s->o.max_frame) s->o.max_frame = DEFAULT_MAX_FRAME;
  if (!s->o.write_limit) s->o.write_limit = DEFAULT_WRITE_LIMIT;
  s->reading = true;
  s->connecting = connecting;
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  s->events = connecting ? ISOLA_WRITABLE : ISOLA_READABLE;
  rc = isola_watch_open(fd, s->events, on_ready, s, &s->watch);
  if (rc != ISOLA_OK) {
    close(fd);
    isola_free(s);
    return rc;
  }
  LINK(o->streams, s);
  *out = s;
  return ISOLA_OK;
}

int isola_stream_open(int fd, const isola_stream_options *opts,
                      isola_stream **out) {
  return make(fd, opts, false, out);
}

/* A numeric address into *sa; false if it is none. */
static bool parse_addr(const char *ip, uint16_t port,
                       struct sockaddr_storage *sa, socklen_t *len) {
  memset(sa, 0, sizeof *sa);
  struct sockaddr_in *a4 = (struct sockaddr_in *)sa;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)sa;
  if (ip && inet_pton(AF_INET, ip, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    *len = sizeof *a4;
    return true;
  }
  if (ip && inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    *len = sizeof *a6;
    return true;
  }
  return false;
}

int isola_stream_connect(const char *ip, uint16_t port,
                         const isola_stream_options *opts,
                         isola_stream **out) {
  isola_port owner;
  int rc = me(&owner);
  if (rc != ISOLA_OK) return rc;
  struct sockaddr_storage sa;
  socklen_t len;
  if (!parse_addr(ip, port, &sa, &len) || !opts || !out) return ISOLA_EINVAL;
  int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return ISOLA_ESYS;
  bool pending = false;
  int err = 0;
  if (connect(fd, (struct sockaddr *)&sa, len) != 0) {
    if (errno == EINPROGRESS)
      pending = true;
    else
      err = errno;
  }
  rc = make(fd, opts, pending || err, out);
  if (rc == ISOLA_OK && err)
    close_with(*out, ISOLA_STREAM_ERROR, err); /* e.g. refused at once */
  return rc;
}

/* ---- writing ----------------------------------------------------------- */

int isola_stream_write(isola_stream *s, const void *data, size_t len) {
  int rc = check(s);
  if (rc != ISOLA_OK) return rc;
  if (!data && len) return ISOLA_EINVAL;
  if (s->closed || s->closing) return ISOLA_ECLOSED;
  uint8_t head[4];
  size_t hlen = 0;
  const uint8_t *tail = NULL;
  if (s->o.framing == ISOLA_STREAM_LINES) {
    if (len && memchr(data, '\n', len)) return ISOLA_EINVAL;
    tail = (const uint8_t *)"\n";
  } else if (s->o.framing == ISOLA_STREAM_FRAMES) {
    if (len > UINT32_MAX) return ISOLA_EINVAL;
    head[0] = (uint8_t)(len >> 24);
    head[1] = (uint8_t)(len >> 16);
    head[2] = (uint8_t)(len >> 8);
    head[3] = (uint8_t)len;
    hlen = 4;
  }
  size_t total = hlen + len + (tail ? 1 : 0);
  if (total > s->o.write_limit) return ISOLA_EINVAL;
  size_t pending = s->wlen - s->woff;
  if (pending + total > s->o.write_limit) {
    s->want_drain = true;
    return ISOLA_EWOULDBLOCK;
  }
  size_t done = 0; /* bytes of head, data, tail written directly */
  if (pending == 0 && !s->connecting) {
    struct iovec iov[3] = {{head, hlen}, {(void *)data, len},
                           {(void *)tail, tail ? 1 : 0}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 3};
    for (;;) {
      ssize_t n = sendmsg(s->fd, &mh, MSG_NOSIGNAL);
      if (n < 0 && errno == ENOTSOCK) n = writev(s->fd, iov, 3);
      if (n < 0 && errno == EINTR) continue;
      if (n > 0) done = (size_t)n;
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        /* Reported by on_close, after this event. */
        close_with(s, ISOLA_STREAM_ERROR, errno);
        return ISOLA_OK;
      }
      break;
    }
    if (done == total) return ISOLA_OK;
  }
  /* Keep the rest: compact, grow, append. */
  if (s->woff) {
    memmove(s->wbuf, s->wbuf + s->woff, pending);
    s->wlen = pending;
    s->woff = 0;
  }
  size_t need = s->wlen + total - done;
  if (need > s->wcap) {
    size_t cap = s->wcap ? s->wcap : 4096;
    while (cap < need) cap *= 2;
    if (cap > s->o.write_limit) cap = s->o.write_limit;
    if (!heap_room(s->wcap, cap)) {
      /* Part of it went out already: the framing is lost, so is the
       * stream. */
      if (done) close_with(s, ISOLA_STREAM_ERROR, ENOMEM);
      return ISOLA_ENOMEM;
    }
    uint8_t *nb = isola__heap_try_realloc(s->wbuf, cap);
    if (!nb) {
      if (done) close_with(s, ISOLA_STREAM_ERROR, ENOMEM);
      return ISOLA_ENOMEM;
    }
    s->wbuf = nb;
    s->wcap = cap;
  }
  const uint8_t *parts[3] = {head, data, tail};
  size_t lens[3] = {hlen, len, tail ? 1 : 0};
  for (int i = 0; i < 3; i++) {
    size_t skip = done < lens[i] ? done : lens[i];
    done -= skip;
    if (lens[i] > skip) {
      memcpy(s->wbuf + s->wlen, parts[i] + skip, lens[i] - skip);
      s->wlen += lens[i] - skip;
    }
  }
  if (s->wlen > s->o.write_limit / 2) s->want_drain = true;
  set_events(s);
  return ISOLA_OK;
}

size_t isola_stream_buffered(const isola_stream *s) {
  return s ? s->wlen - s->woff : 0;
}

/* Input read before a pause, delivered on resume. */
static void resume_deliver(void *arg) {
  isola_stream *s = arg;
  if (!s->closed && s->reading && s->rlen) deliver(s, false);
}

int isola_stream_set_reading(isola_stream *s, bool reading) {
  int rc = check(s);
  if (rc != ISOLA_OK) return rc;
  if (s->closed) return ISOLA_ECLOSED;
  bool resumed = reading && !s->reading;
  s->reading = reading;
  set_events(s);
  if (resumed && s->rlen) return isola_microtask(resume_deliver, s);
  return ISOLA_OK;
}

int isola_stream_close(isola_stream *s) {
  int rc = check(s);
  if (rc != ISOLA_OK) return rc;
  if (s->closed || s->closing) return ISOLA_ECLOSED;
  s->closing = true;
  if (s->wlen == s->woff && !s->connecting)
    close_with(s, ISOLA_STREAM_CLOSED, 0);
  else
    set_events(s);
  return ISOLA_OK;
}

int isola_stream_abort(isola_stream *s) {
  int rc = check(s);
  if (rc != ISOLA_OK) return rc;
  if (s->closed) return ISOLA_ECLOSED;
  close_with(s, ISOLA_STREAM_CLOSED, 0);
  return ISOLA_OK;
}

/* ---- listening --------------------------------------------------------- */

static void listener_free(void *arg) { isola_free(arg); }

static void on_acceptable(int fd, uint32_t events, void *arg) {
  isola_stream_listener *l = arg;
  (void)events;
  for (int i = 0; i < 64 && !l->closed; i++) {
    int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return; /* EAGAIN: all taken; EMFILE and co: next readiness */
    }
    l->on_accept(l, c, l->ctx);
  }
}

int isola_stream_listen(const char *ip, uint16_t port,
                        isola_stream_accept_fn on_accept, void *ctx,
                        isola_stream_listener **out) {
  isola_port owner;
  int rc = me(&owner);
  if (rc != ISOLA_OK) return rc;
  struct sockaddr_storage sa;
  socklen_t len;
  if (!on_accept || !out || !parse_addr(ip, port, &sa, &len))
    return ISOLA_EINVAL;
  owned *o = isola_local_get(&owned_key);
  if (!o) return ISOLA_ENOMEM;
  int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return ISOLA_ESYS;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&sa, len) != 0 || listen(fd, 128) != 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return ISOLA_ESYS;
  }
  if (!heap_room(0, sizeof(isola_stream_listener))) {
    close(fd);
    return ISOLA_ENOMEM;
  }
  isola_stream_listener *l = isola__heap_try_calloc(sizeof *l);
  if (!l) {
    close(fd);
    return ISOLA_ENOMEM;
  }
  l->owner = owner;
  l->fd = fd;
  l->on_accept = on_accept;
  l->ctx = ctx;
  l->port = ntohs(sa.ss_family == AF_INET
                      ? ((struct sockaddr_in *)&sa)->sin_port
                      : ((struct sockaddr_in6 *)&sa)->sin6_port);
  rc = isola_watch_open(fd, ISOLA_READABLE, on_acceptable, l, &l->watch);
  if (rc != ISOLA_OK) {
    close(fd);
    isola_free(l);
    return rc;
  }
  LINK(o->listeners, l);
  *out = l;
  return ISOLA_OK;
}

uint16_t isola_stream_listener_port(const isola_stream_listener *l) {
  return l ? l->port : 0;
}

int isola_stream_listener_close(isola_stream_listener *l) {
  isola_port p;
  int rc = me(&p);
  if (rc != ISOLA_OK) return rc;
  if (!l) return ISOLA_EINVAL;
  if (p != l->owner) return ISOLA_ENOTOWNER;
  if (l->closed) return ISOLA_ECLOSED;
  l->closed = true;
  isola_watch_close(l->watch);
  close(l->fd);
  owned *o = isola_local_get(&owned_key);
  if (o) UNLINK(o->listeners, l);
  /* Freed after the event: this may run inside its own on_accept. */
  if (isola_microtask(listener_free, l) != ISOLA_OK) {
    /* Out of memory for the microtask: the heap frees it at the end. */
  }
  return ISOLA_OK;
}
