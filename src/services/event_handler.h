/* SPDX-License-Identifier: MIT */
/*
 * event_handler.h — the event handler thread (the Dart VM's "dart:io
 * EventHandler"): timers, one-shot and periodic, and file-descriptor
 * watches, delivered to their isolate as events on its loop.
 *
 * One VM thread (started with the first timer or watch) keeps every pending
 * timer in a binary heap ordered by (due time, creation order) and waits in
 * epoll (platform.h's poller) for the watched descriptors, at most until the
 * earliest timer is due; a new earliest timer wakes it (no busy waiting).
 * A ready descriptor is posted the same way, as an ISOLA__MSG_FD message;
 * watches are one-shot in epoll and re-armed after the isolate handled the
 * event, so a busy descriptor cannot flood its isolate.  A due timer is posted as an ISOLA__MSG_TIMER message to
 * its isolate's control port, on the normal queue, so a paused isolate's
 * timers wait for the resume and a killed isolate's are freed with its
 * queue.  Timers due together are posted, and so run, in creation order.
 * The thread builds each message before it takes a timer off the heap or
 * lets an fd event go: one it cannot build (memory is short) leaves the
 * timer due again a millisecond later and puts the fd event on a retry
 * list, so nothing is lost for good; and it posts nothing while it has no
 * epoch record, trying to get one every millisecond.
 *
 * A timer belongs to its isolate, which allocates and frees it; the thread
 * only links it in and out of the heap, under the lock.  A live timer
 * counts as a live port, so it keeps its isolate alive.
 */
#ifndef ISOLA_EVENT_HANDLER_H
#define ISOLA_EVENT_HANDLER_H

#include "internal.h"
#include "platform.h"
#include "event_handler_types.h"

void isola__timers_init(isola__timers *ts);

/* Stops the thread (VM shutdown: no isolate, so no timer, is left). */
void isola__timers_destroy(isola__timers *ts);

/* The running isolate's timer message m (ISOLA__MSG_TIMER) arrived: runs
 * its callback, unless the timer was cancelled meanwhile. */
void isola__timer_fire(isola__vm *vm, isola__isolate *iso, isola__msg *m);

/* The running isolate's fd event m (ISOLA__MSG_FD) arrived: runs the
 * watch's callback, unless it was closed meanwhile, and re-arms it. */
void isola__watch_fire(isola__vm *vm, isola__isolate *iso, isola__msg *m);

/* The isolate ends: cancels and frees its timers, closes its watches. */
void isola__timers_cancel_all(isola__vm *vm, isola__isolate *iso);

/* The isolate's live timers and watches (snapshots).  Its thread only. */
void isola__timers_count(const isola__isolate *iso, uint32_t *timers,
                         uint32_t *watches);

#endif
