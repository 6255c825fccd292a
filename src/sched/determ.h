/* SPDX-License-Identifier: MIT */
/*
 * determ.h — the deterministic scheduling mode, for tests (issue 13 item 3).
 *
 * Compiled in only by the CMake option ISOLA_DETERMINISTIC=ON; without it
 * every macro below is empty or its plain-build expression, and determ.c is
 * not built: the normal build has no trace of it.
 *
 * In that mode the VM's own threads (pool threads and root isolate
 * threads, the "participants") are serialised by one baton (a mutex and a
 * condition variable): a participant runs runtime code only while it holds
 * the baton.  At every decision point the holder gives the baton to a
 * participant chosen by a seeded PRNG among those ready to run (itself
 * included), and every choice the scheduler makes (when a spinning thread
 * gives up, whether a parked thread times out, which idle worker and which
 * parked thread to wake, which victim to steal from, runnext or the run
 * queue first, when to look at the global queue) is drawn from the same
 * PRNG.  Parking is explicit: a parked participant waits on a word in
 * determ.c's books, and a waker marks it ready under the baton's mutex, so
 * the candidates at each choice never depend on OS timing.  The
 * scheduler's clock (ISOLA__SCHED_NOW()) counts decisions, 1 µs each, so
 * its spin and stuck-worker limits are step counts; a spinning thread also
 * gives up, and a parked one times out, when the PRNG says so.  The
 * monitor thread (which wakes by the real clock) is not started.
 *
 * A new pool thread is registered (ready) by the thread that creates it,
 * before pthread_create, and the baton stays closed until work first comes
 * in (a root isolate's thread enters, or a thread outside the VM readies an
 * isolate): so from the first decision on, the same seed replays the same
 * interleaving, for runs driven from inside isolates (isola_run_main's
 * root isolate, pool workers; no timers, no plain threads sending, no
 * blocking sections; those still run, but what they do races the baton:
 * a thread in a blocking section steps out of the baton until its end).
 *
 * The seed: isola__det_set_seed(), else the environment variable
 * ISOLA_SCHED_SEED, else 1; read when a VM is created.  Every decision is
 * folded into a trace hash (isola__det_trace()) that tests compare.
 *
 * Decision points must be where the thread holds no runtime lock (the next
 * holder may need it): turn start and end (isola__mh_drive), after a send,
 * a spawn and a control request (their public entry points), before
 * parking, and every 16 rounds of a spinning thread.
 */
#ifndef ISOLA_DETERM_H
#define ISOLA_DETERM_H

#ifdef ISOLA_DETERMINISTIC

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decision kinds, recorded in the trace. */
enum {
  ISOLA__DET_TURN_START = 1,
  ISOLA__DET_TURN_END,
  ISOLA__DET_SEND,
  ISOLA__DET_SPAWN,
  ISOLA__DET_CONTROL,
  ISOLA__DET_PARK,
  ISOLA__DET_SPIN,
  ISOLA__DET_IDLE,
  ISOLA__DET_WAKE_WORKER,
  ISOLA__DET_WAKE_THREAD,
  ISOLA__DET_VICTIM,
  ISOLA__DET_RUNNEXT,
  ISOLA__DET_GLOBAL,
};

/* The seed of the next VM created (overrides ISOLA_SCHED_SEED).  Call
 * before isola_vm_create, outside any VM. */
void isola__det_set_seed(uint64_t seed);
/* The seed of the current (or last) VM. */
uint64_t isola__det_seed(void);
/* The trace so far: a hash of every decision (its kind, the candidates,
 * the choice) and their number.  Any thread. */
uint64_t isola__det_trace(uint64_t *steps);

/* A new VM: resets the PRNG to the seed, the trace, and closes the baton.
 * Called by isola__sched_init. */
void isola__det_vm_start(void);
/* The creator of participant key (a pool thread's isola__thread), before
 * the thread exists: it is registered ready. */
void isola__det_register(const void *key);
/* The registration of key is undone (its thread could not be created). */
void isola__det_unregister(const void *key);
/* The new thread of key: binds itself to its record and waits for the
 * baton. */
void isola__det_start(const void *key);
/* The calling thread becomes a participant (a root isolate's thread), opens
 * the baton and waits for it. */
void isola__det_enter(void);
/* The calling participant leaves: the baton goes to another. */
void isola__det_leave(void);
/* Work came from outside the participants: opens the baton. */
void isola__det_open(void);
/* A decision point: the baton goes to a ready participant (maybe the
 * caller).  No-op on a thread that is not a participant. */
void isola__det_point(int kind);
/* A participant parks until *word != expected (checked under the baton's
 * mutex) and it is woken and chosen. */
void isola__det_wait(_Atomic uint32_t *word, uint32_t expected);
/* Marks the participants parked on word ready.  Any thread. */
void isola__det_wake(_Atomic uint32_t *word);
/* A draw in [0, n) (n > 0) from the PRNG, recorded under kind. */
uint32_t isola__det_rand(int kind, uint32_t n);
/* Writes the participants and their states into buf (for a test's report
 * of a hung seed); returns the length written. */
size_t isola__det_describe(char *buf, size_t size);
/* isola_blocking_begin: the calling participant runs without the baton
 * (and gives it away) until isola__det_step_in(), at the section's end,
 * where it waits for the baton again. */
void isola__det_step_out(void);
void isola__det_step_in(void);
/* The scheduler's clock in this mode: 1000 ns per decision so far. */
uint64_t isola__det_now(void);
/* A spinning participant: a decision point, then whether it gives up. */
bool isola__det_give_up(void);

#define ISOLA__DET_POINT(kind) isola__det_point(kind)
#define ISOLA__DET_ENTER() isola__det_enter()
#define ISOLA__DET_LEAVE() isola__det_leave()
#define ISOLA__DET_OPEN() isola__det_open()
#define ISOLA__DET_VM_START() isola__det_vm_start()
#define ISOLA__DET_REGISTER(key) isola__det_register(key)
#define ISOLA__DET_UNREGISTER(key) isola__det_unregister(key)
#define ISOLA__DET_START(key) isola__det_start(key)
#define ISOLA__DET_EXIT() isola__det_leave()
#define ISOLA__DET_STEP_OUT() isola__det_step_out()
#define ISOLA__DET_STEP_IN() isola__det_step_in()
#define ISOLA__DET_MODE 1
/* The scheduler's clock: decisions, not time. */
#define ISOLA__SCHED_NOW() isola__det_now()
/* A spinning thread gives up (time is frozen: the PRNG says when). */
#define ISOLA__DET_GIVE_UP() isola__det_give_up()
/* A parked thread's idle time ran out. */
#define ISOLA__DET_IDLE_TIMEOUT() (isola__det_rand(ISOLA__DET_IDLE, 16) == 0)
/* Whether the worker takes from the global queue first (plain: every 61st
 * turn). */
#define ISOLA__DET_GLOBAL_FIRST(plain) \
  (isola__det_rand(ISOLA__DET_GLOBAL, 8) == 0)
/* Whether runnext is passed over for the run queue this time. */
#define ISOLA__DET_SKIP_RUNNEXT() (isola__det_rand(ISOLA__DET_RUNNEXT, 4) == 0)
/* Where a thief starts its round of victims. */
#define ISOLA__DET_VICTIM(plain) isola__det_rand(ISOLA__DET_VICTIM, 1u << 16)
#define ISOLA__PARK_WAIT(word, expected, ns) isola__det_wait((word), (expected))
#define ISOLA__PARK_WAKE(word) isola__det_wake(word)
/* Moves a PRNG-chosen element of the intrusive list at head to its front:
 * the one that is popped next (which idle worker, which parked thread). */
#define ISOLA__DET_TO_FRONT(kind, head, type, next)                        \
  do {                                                                     \
    uint32_t n_ = 0;                                                       \
    for (type *p_ = (head); p_; p_ = p_->next) n_++;                       \
    if (n_ > 1) {                                                          \
      uint32_t k_ = isola__det_rand((kind), n_);                           \
      type **pp_ = &(head);                                                \
      while (k_--) pp_ = &(*pp_)->next;                                    \
      type *x_ = *pp_;                                                     \
      *pp_ = x_->next;                                                     \
      x_->next = (head);                                                   \
      (head) = x_;                                                         \
    }                                                                      \
  } while (0)

#else /* !ISOLA_DETERMINISTIC */

#define ISOLA__DET_MODE 0
#define ISOLA__DET_POINT(kind) ((void)0)
#define ISOLA__DET_ENTER() ((void)0)
#define ISOLA__DET_LEAVE() ((void)0)
#define ISOLA__DET_OPEN() ((void)0)
#define ISOLA__DET_VM_START() ((void)0)
#define ISOLA__DET_REGISTER(key) ((void)0)
#define ISOLA__DET_UNREGISTER(key) ((void)0)
#define ISOLA__DET_START(key) ((void)0)
#define ISOLA__DET_EXIT() ((void)0)
#define ISOLA__DET_STEP_OUT() ((void)0)
#define ISOLA__DET_STEP_IN() ((void)0)
#define ISOLA__SCHED_NOW() isola__plat_now_ns()
#define ISOLA__DET_GIVE_UP() 0
#define ISOLA__DET_IDLE_TIMEOUT() 0
#define ISOLA__DET_GLOBAL_FIRST(plain) (plain)
#define ISOLA__DET_SKIP_RUNNEXT() 0
#define ISOLA__DET_VICTIM(plain) (plain)
#define ISOLA__PARK_WAIT(word, expected, ns) \
  isola__plat_wait((word), (expected), (ns))
#define ISOLA__PARK_WAKE(word) isola__plat_wake_one(word)
#define ISOLA__DET_TO_FRONT(kind, head, type, next) ((void)0)

#endif
#endif /* ISOLA_DETERM_H */
