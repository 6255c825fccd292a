/* SPDX-License-Identifier: MIT */
/*
 * trace_events.h — the trace events (trace.h says what they are for): the
 * event kinds, the per-thread buffers, and the two calls that record an
 * event (trace.c).  The VM embeds isola__tracer (vm.h) and the counters'
 * macros record through it (stats.h), so these stand apart from trace.c's
 * writer, which needs the whole VM.
 */
#ifndef ISOLA_TRACE_EVENTS_H
#define ISOLA_TRACE_EVENTS_H

#include "internal.h"

enum {
  ISOLA__TEV_TURN_BEGIN = 1, /* iso: the isolate; arg: worker + 1 (0: none) */
  ISOLA__TEV_TURN_END,
  ISOLA__TEV_SPAWN,          /* iso: the new isolate */
  ISOLA__TEV_FLOW_OUT,       /* id: the message (a send) */
  ISOLA__TEV_FLOW_IN,        /* id: the message (its handling) */
  ISOLA__TEV_PAUSE,          /* iso paused (its turn ends paused) */
  ISOLA__TEV_END,            /* iso ended; arg: an isola_exit_reason */
};

/* One event: 64 bytes. */
typedef struct isola__tev {
  uint64_t ts;  /* CLOCK_MONOTONIC ns */
  uint64_t id;  /* a flow's id */
  uint64_t iso; /* an isolate's control port */
  uint32_t kind;
  uint32_t arg;
  char name[32]; /* the isolate's name, cut to 31 bytes */
} isola__tev;

/* A thread's events.  Only its thread appends; n is published with a
 * release store, so a writer (trace.c) reads events [0, n) safely while
 * the thread records more. */
typedef struct isola__tbuf {
  struct isola__tbuf *next; /* the VM's list, under tracer.lock */
  uint32_t tid;
  char tname[32];
  size_t cap;
  _Atomic size_t n;
  _Atomic uint64_t dropped;
  isola__tev ev[];
} isola__tbuf;

typedef struct isola__tracer {
  pthread_mutex_t lock; /* bufs, next_tid; and one writer at a time */
  isola__tbuf *bufs;
  uint32_t next_tid;
  size_t cap;
} isola__tracer;

/* Records one event on the calling thread (vm->tracing is set). */
void isola__trace_event(isola__vm *vm, uint32_t kind, isola__isolate *iso,
                        uint64_t id, uint32_t arg);
/* A turn of iso begins or ends on this thread (nested calls are folded). */
void isola__trace_turn(isola__vm *vm, isola__isolate *iso, bool begin,
                       uint32_t state);

#endif
