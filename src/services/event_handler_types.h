/* SPDX-License-Identifier: MIT */
/*
 * event_handler_types.h — the timers' and fd watches' state
 * (event_handler.h says how it works).  Types only: the VM embeds
 * isola__timers (vm.h).
 */
#ifndef ISOLA_EVENT_HANDLER_TYPES_H
#define ISOLA_EVENT_HANDLER_TYPES_H

#include "internal.h"
#include "platform.h"

typedef struct isola__timer isola__timer;
typedef struct isola__watch isola__watch;

typedef struct isola__timers {
  pthread_mutex_t lock; /* the heap, started, stopping */
  isola__timer **heap;  /* min-heap by (due, seq) */
  size_t n, cap;
  uint64_t seq;          /* creation order, under lock */
  isola__poller *poller; /* opened with the thread */
  isola__watch *graveyard; /* closed watches for the thread to free */
  isola__watch *retry;     /* events to post again (event_handler.c) */
  _Atomic uint64_t next_id;
  bool started, stopping;
  pthread_t thread;
} isola__timers;

#endif
