/* SPDX-License-Identifier: MIT */
/*
 * scheduler.h — the thread pool that runs isolates.
 *
 * Go's model, in Go's words: a worker ("P") is a right to run isolates and
 * carries the run queues; a thread ("M") runs isolates while it holds a
 * worker.  There are config.workers workers; threads come and go.
 *
 *   runnext  one isolate readied by the one running on this worker; it runs
 *            next, on the same thread, so two isolates that talk stay on one
 *            core and in one cache.  Stolen only when the worker's turn has
 *            not changed for a while (below).
 *   runq     a bounded ring: the owner pushes at the tail; the owner and
 *            thieves take from the head with a CAS.
 *   global   a locked list for isolates readied off the pool (a root
 *            isolate, a plain thread) and for runq overflow.
 *
 * An idle thread spins a while looking for work (steal half a victim's
 * runq, or the global queue), then gives its worker back and parks on a
 * futex.  Whoever makes stealable work wakes a parked thread only if no
 * thread is spinning, so a burst of messages costs at most one wake-up.
 *
 * A handler that runs for long must not strand what waits on its worker.
 * Each worker counts its turns (st_turns, for snapshots too); a worker
 * whose count has not moved for STUCK_NS is in one long turn.  Then a
 * spinning thread takes its runnext (after RUNNEXT_STEAL_NS), a busy worker
 * looks at the others every 61st turn and steals from a stuck one, and a
 * monitor thread, every millisecond while a worker is busy, wakes a
 * spinning thread when a stuck worker holds work.  So runnext is an atomic
 * word; the owner still takes it without a locked instruction (an
 * asymmetric fence protocol, scheduler.c's "runnext").
 */
#ifndef ISOLA_SCHEDULER_H
#define ISOLA_SCHEDULER_H

#include "determ.h"
#include "internal.h"
#include "sched_types.h"

/* Starts the pool with n workers, each on its own thread. */
int isola__sched_init(isola__sched *s, unsigned nworkers,
                      unsigned idle_timeout_ms);

/* Starts one thread per worker.  The VM must be published first. */
int isola__sched_start(isola__sched *s);

/* Stops every thread once no isolate is left, and joins them. */
void isola__sched_stop(isola__sched *s);

/* Makes iso runnable.  The caller has just claimed the right to schedule it
 * (message_queue.h): the isolate is in no queue and runs nowhere.  Any
 * thread. */
void isola__sched_ready(isola__sched *s, isola__isolate *iso);

/* Whether the calling pool thread has other isolates waiting (a turn that
 * used its batch yields only then). */
bool isola__sched_has_other_work(isola__sched *s);

/* A root isolate's thread: waits until its isolate is readied. */
void isola__sched_wait_pinned(isola__sched *s, isola__thread *t,
                              isola__isolate *iso);

/* At an interrupt point of a long event (isola_check_interrupts, every
 * batch of a long turn): pushes the outbox, hands this worker's runnext to
 * the other threads, and refreshes the thread's epoch so reclamation goes
 * on.  The caller holds no pointer to another isolate.  Pool and root
 * threads; a no-op elsewhere. */
void isola__sched_interrupt_point(isola__vm *vm);

/* isola_blocking_begin/end for the calling thread. */
/* begin: ISOLA_OK, or ISOLA_ESYS when no stand-in thread could take the
 * worker (the section has begun all the same). */
int isola__sched_blocking_begin(isola__sched *s, isola__thread *t);
void isola__sched_blocking_end(isola__sched *s, isola__thread *t);

#endif
