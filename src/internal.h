/* SPDX-License-Identifier: MIT */
/*
 * internal.h — the runtime's shared types: the VM, an isolate, a message,
 * and the per-thread state.  Each component's functions are declared in the
 * header named after it; this file only holds what several of them share.
 *
 * Naming: internal non-static functions are isola__<component>_<verb>.
 */
#ifndef ISOLA_INTERNAL_H
#define ISOLA_INTERNAL_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "isola.h"
#include "random.h"

#define ISOLA__CACHE_LINE 64

#if defined(__GNUC__)
#define ISOLA__LIKELY(x) __builtin_expect(!!(x), 1)
#define ISOLA__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define ISOLA__TLS __thread __attribute__((tls_model("initial-exec")))
/* Fetches p's line for writing: a read that an atomic write to the same
 * line follows would otherwise fetch it twice (shared, then owned). */
#define ISOLA__PREFETCH_W(p) __builtin_prefetch((p), 1, 3)
#else
#define ISOLA__PREFETCH_W(p) ((void)(p))
#define ISOLA__LIKELY(x) (x)
#define ISOLA__UNLIKELY(x) (x)
#define ISOLA__TLS _Thread_local
#endif

typedef struct isola__isolate isola__isolate;
typedef struct isola__group isola__group;
typedef struct isola__thread isola__thread;
typedef struct isola__worker isola__worker;
typedef struct isola__epoch_rec isola__epoch_rec;
typedef struct isola__vm isola__vm;

/* ---- messages ---------------------------------------------------------- */

/* A link of an intrusive MPSC queue (message_queue.h). */
typedef struct isola__node {
  _Atomic(struct isola__node *) next;
} isola__node;

enum {
  ISOLA__MSG_USER = 0, /* a value for a receive port */
  ISOLA__MSG_START,    /* the spawn message: runs the entry function */
  ISOLA__MSG_TIMER,    /* a timer is due (event_handler.c); value: its id */
  ISOLA__MSG_FD,       /* a watched fd is ready; value: the watch's id,
                          reply_to: the ISOLA__POLL_* events */
  /* A user message whose value is an isola_value_copy() block the message
   * adopted (isola_exit_owned): the block is freed with the message. */
  ISOLA__MSG_EXTERNAL,
  /* Control messages (control_request.c), sent out of band to a control
   * port and handled by the runtime, never by a user handler.  Field use:
   * value = the capability checked (an int) or the response value;
   * reply_to = the port named, or the resume capability. */
  ISOLA__MSG_PAUSE,      /* value: pause capability; reply_to: resume cap */
  ISOLA__MSG_RESUME,     /* as PAUSE */
  ISOLA__MSG_KILL_NOW,   /* value: terminate capability */
  ISOLA__MSG_KILL_NEXT,  /* as KILL_NOW, before the next normal message */
  ISOLA__MSG_PING_NOW,   /* value: response; reply_to: response port */
  ISOLA__MSG_PING_NEXT,  /* as PING_NOW, before the next normal message */
  ISOLA__MSG_EXIT_ADD,   /* value: response; reply_to: listener port */
  ISOLA__MSG_EXIT_DEL,   /* reply_to: listener port */
  ISOLA__MSG_ERROR_ADD,  /* reply_to: listener port */
  ISOLA__MSG_ERROR_DEL,  /* reply_to: listener port */
  ISOLA__MSG_FATAL_ON,   /* value: terminate capability */
  ISOLA__MSG_FATAL_OFF,  /* value: terminate capability */
  ISOLA__MSG_NOTICE_ADD, /* as EXIT_ADD, for an exit notice listener */
  ISOLA__MSG_ERROR_NOTICE_ADD, /* as ERROR_ADD, for an error notice one */
  /* Never queued: marks a stored exit response (iso->exits) whose
   * listener gets an exit notice built around it (exit.c). */
  ISOLA__MSG_NOTICE,
};

/* A message: one allocation holding the header and a copy of the value
 * graph (value.c lays it out after the header). */
typedef struct isola__msg {
  isola__node node; /* first: queues link messages through it */
  isola_port dest;
  isola_port reply_to;
  uint32_t type; /* ISOLA__MSG_* */
  uint32_t pool_class; /* of this block (pool.h) */
  isola_value value; /* points into the bytes after this header */
  /* Bytes of the message (header and copy), and whether its receiver's
   * heap is charged for them while it handles it (heap.c). */
  uint32_t bytes;
  uint16_t charged;
  uint16_t held; /* ISOLA__HELD_*: its holder's room (isola__room_take) */
  /* The slot of dest, set by isola__post() (which looked it up), so that
   * the receiver finds the port with no lookup of its own (its id says
   * whether it is still the port). */
  struct isola__port_slot *dest_slot;
} isola__msg;

_Static_assert(sizeof(isola__msg) == 64, "a message header is a cache line");

/* msg->held: the message's bytes are taken from the room of the isolate
 * that holds it (queued for it, or kept by it for a request); or it is
 * one the runtime owes (an exit response) and takes no room. */
#define ISOLA__HELD_ROOM 1u
#define ISOLA__HELD_EXEMPT 2u
/* Counted against its receiver's mailbox bound (backpressure.h). */
#define ISOLA__HELD_BOUND 4u

/* ---- groups and isolates ---------------------------------------------- */

struct isola__group {
  uint64_t id;
  void *data;               /* what the group_created hook returned */
  _Atomic size_t isolates;  /* members not yet cleaned up */
  /* The module the group runs (isola_spawn_uri), or NULL; set before the
   * group's first isolate is scheduled, unloaded with the group. */
  struct isola__module *module;
  /* isola_set_exit_code(); relaxed: any member may write it, and the one
   * reader (isola_run_main_uri) reads it after the root isolate ended. */
  _Atomic int exit_code;
};

/* An isolate's states: lifecycle.h has the moves and what each means. */
enum {
  ISOLA__ISO_NEW = 0,   /* being built by its spawner */
  ISOLA__ISO_RUNNING,   /* complete and scheduled by its messages */
  ISOLA__ISO_PAUSED,    /* holds a pause capability */
  ISOLA__ISO_ENDING,    /* isola__isolate_end() runs */
  ISOLA__ISO_ENDED,     /* retired, waiting to be freed */
  ISOLA__ISO_RECLAIMED, /* freed */
};

#define ISOLA__NAME_MAX 63

/*
 * An isolate: 192 bytes, a pool block of its own class, made by the
 * million (bytes per idle isolate is a benchmark figure).  Senders touch
 * only the first cache line (the two queue heads, and pinned); everything
 * after it belongs to the thread running the isolate, which the scheduling
 * bit makes unique (message_queue.h).
 */
struct isola__isolate {
  /* Shared with senders. */
  alignas(ISOLA__CACHE_LINE) _Atomic(uintptr_t) head; /* normal queue; bit 0:
                                                         not scheduled */
  _Atomic(isola__node *) oob_head;                    /* out-of-band queue */
  /* A root isolate's thread sleeps on these (isola__sched_wait_pinned);
   * they live here, not in the thread, because a sender that readies the
   * isolate may touch them after the thread has left. */
  _Atomic uint32_t pin_wake;
  _Atomic uint8_t pin_sleeping; /* not a futex word: a byte is enough */
  _Atomic bool kill_requested; /* set by shutdown; checked between events */
  bool pinned; /* a root isolate: runs on its caller's thread */
  /* With config.isolate_stats its counters (stats.h) follow it in the
   * same pool block (isola__iso_stats()).  Here, on the line senders
   * already read, so a sender tests it without another miss. */
  bool has_stats;
  /* Bytes others may still make it hold (queued messages, requests and
   * what it keeps for them), out of its heap limit; ISOLA__ROOM_NONE: no
   * limit, nothing counted.  Senders take, the isolate gives back
   * (isola__room_take/give). */
  _Atomic uint32_t room;
  /* has_stats, or the VM records trace events (vm->tracing): what a turn
   * and a send test first, so that with neither they cost one test. */
  bool observed;
  /* The slot index of the port this isolate last sent to, if below 2^16
   * (else 0): a hint its running thread tries before decoding the id
   * (isola__port_lookup_hint).  Written only when the port changes, so an
   * isolate that keeps sending to one port (a ring, a reply, a fan-in)
   * does not write this line its senders share. */
  uint16_t send_hint;
  /* Fixed at spawn and read rarely (control requests, reports): the rest
   * of the senders' line, where they cost the owner nothing. */
  isola_port control_port;
  isola_capability pause_cap;
  isola_capability terminate_cap;
  /* Set by the spawner once the control port is open (a root's origin is
   * that port), so a snapshot walking the port map may read it while the
   * isolate is being built: atomic, 0 until set. */
  _Atomic uint64_t origin;

  /* Owned by the thread running the isolate. */
  alignas(ISOLA__CACHE_LINE) isola__node *tail;
  isola__node *oob_tail;
  /* Each queue's sentinel: a node that is never a message, the queue's
   * first tail, pushed again behind a large last message (message_queue.h,
   * message_handler.c). */
  isola__node sentinel;     /* the normal queue's */
  isola__node oob_sentinel; /* the OOB queue's */
  /* Alive, the link in the global run queue (scheduler.c); ended, the link
   * in the epoch reclaimer's retire list (epoch.c). */
  union {
    isola__isolate *rq_next;
    isola__isolate *retire_next;
  };
  /* The entry until START has run it; once retired, the retire stamp. */
  union {
    isola_entry entry;
    uint64_t retire_epoch;
  };
  /* Written only by the running isolate; atomic (relaxed) so shutdown can
   * read them to name a stuck isolate's ports. */
  _Atomic uint32_t live_ports; /* open ports that keep it alive */
  _Atomic uint32_t ports;      /* first slot of its port list (0: none) */
  /* Isolate control (control_request.c).  hold is non-zero while something must
   * happen before the next normal message (paused, a kill or ping waiting
   * for the next event, the end after a pause on exit): the turn tests
   * this one word per message. */
  uint32_t hold;
  uint8_t state;      /* ISOLA__ISO_* (lifecycle.h) */
  uint8_t pool_class; /* of its memory (pool.h) */
  bool errors_fatal;
  /* Why it ends (an isola_exit_reason), set where the end is decided and
   * read when its exit notices are built (exit.c). */
  uint8_t exit_reason;
  isola__group *group;
  /* The name (isolate.h): up to 15 bytes here, NUL-terminated; a longer
   * one is malloc'ed, its pointer kept at the start and name[15] set to 1.
   * Empty: the default name. */
  char name[16];
  struct isola__control *ctl; /* pauses, error listeners; NULL: none */
  /* exit listeners' responses, in order (control_request.c) */
  isola__msg *exits;
  void *unwind;      /* the running turn's jmp_buf, or NULL */
  /* Microtasks waiting to run after the current event (message_handler.c);
   * NULL: none, the turn's one test per event.  On the line of hold and
   * unwind, which every turn touches anyway. */
  struct isola__mt *mt_head;
  /* Rarely used state: heap, isolate-locals, microtask tail (heap.h);
   * NULL until first needed. */
  struct isola__ext *ext;
};

/* The room word: its low 31 bits are the room (ISOLA__ROOM_FREE there: no
 * heap limit, bytes are not counted); its top bit, ISOLA__ROOM_UNBOUNDED,
 * is set while the isolate has no mailbox bound (backpressure.h).  So
 * ISOLA__ROOM_NONE, both, is the one value a send need not look further
 * at.  Takes and gives change the low bits only (a room never exceeds its
 * limit, so no carry or borrow reaches the top bit). */
#define ISOLA__ROOM_NONE UINT32_MAX
#define ISOLA__ROOM_UNBOUNDED 0x80000000u
#define ISOLA__ROOM_FREE 0x7FFFFFFFu

/* Whether a room word leaves less than bytes. */
static inline bool isola__room_short(uint32_t room, size_t bytes) {
  uint32_t left = room & ISOLA__ROOM_FREE;
  return left != ISOLA__ROOM_FREE && bytes > left;
}

/* Takes m's bytes from iso's room for whoever makes iso hold m: false if
 * there is not that much room left (the request is refused with
 * ISOLA_EFULL).  An isolate without a limit costs one relaxed load of a
 * word on the line the push touches anyway. */
bool isola__room_take_slow(isola__isolate *iso, isola__msg *m, uint32_t room);
static inline bool isola__room_take(isola__isolate *iso, isola__msg *m) {
  /* The push that follows exchanges the head, on this line. */
  ISOLA__PREFETCH_W(&iso->room);
  uint32_t room = atomic_load_explicit(&iso->room, memory_order_relaxed);
  if (ISOLA__LIKELY(room == ISOLA__ROOM_NONE)) return true;
  return isola__room_take_slow(iso, m, room);
}

/* Gives m's bytes back to iso's room if they were taken (iso no longer
 * holds m: it was popped, answered, replaced or freed). */
static inline void isola__room_give(isola__isolate *iso, isola__msg *m) {
  if (ISOLA__LIKELY(!(m->held & ISOLA__HELD_ROOM))) return;
  m->held &= (uint16_t)~ISOLA__HELD_ROOM;
  atomic_fetch_add_explicit(&iso->room, m->bytes, memory_order_relaxed);
}

_Static_assert(sizeof(struct isola__isolate) == 3 * ISOLA__CACHE_LINE,
               "an isolate is three cache lines");

/* Relaxed loads and stores of words owned by one thread but read by others
 * for reports. */
static inline uint32_t isola__ld32(_Atomic uint32_t *p) {
  return atomic_load_explicit(p, memory_order_relaxed);
}
static inline void isola__st32(_Atomic uint32_t *p, uint32_t v) {
  atomic_store_explicit(p, v, memory_order_relaxed);
}

/* ---- per-thread state --------------------------------------------------- */

typedef struct isola__tls {
  isola__isolate *current; /* the isolate running on this thread, or NULL */
  isola__thread *thread;   /* a pool or root thread, or NULL */
  isola__epoch_rec *rec;   /* epoch record, if this thread has one */
  uint64_t rec_vm_gen;     /* VM generation rec belongs to */
  /* The totals a send from this thread adds to (stats.h): its record's
   * while that belongs to the running VM (set when a pool, root or event
   * thread starts, and when any other thread enters the VM:
   * isola__vm_thread_rec), else &isola__tstats_sink; never NULL, so a
   * send counts without looking for the record. */
  struct isola__tstats *tstats;
  isola__rng rng;
  /* Ended isolates this thread retired (epoch.c): not yet stamped with an
   * epoch, and stamped ones waiting for readers to move on. */
  isola__isolate *retire_pending;
  size_t npending;
  isola__isolate *retire_head, *retire_tail;
  /* The outbox (send.c): messages this thread's current event sent in
   * a row to one other isolate, not yet pushed.  ob_to is NULL when empty;
   * only ever non-empty inside an event. */
  isola__isolate *ob_to;
  isola__node *ob_first, *ob_last;
  uint32_t ob_n;
  /* How the current send treats a full bounded receiver (backpressure.h:
   * ISOLA__SEND_*), and until when isola_send_wait waits (monotonic ns). */
  uint8_t send_mode;
  uint64_t send_deadline;
  /* Spawn credits (isolate.c): counts of the VM's live isolates and of
   * sp_group's members taken ahead by the running event, returned when it
   * ends. */
  uint32_t sp_live, sp_members;
  isola__group *sp_group;
  /* Trace events (trace.c): this thread's buffer, the VM generation it
   * belongs to, and whether a turn's begin was recorded. */
  struct isola__tbuf *tbuf;
  uint64_t tbuf_gen;
  bool turn_open;
} isola__tls;

extern ISOLA__TLS isola__tls isola__t;

/* ---- test-only hooks ---------------------------------------------------- */

/* Places where a test build (-DISOLA_TEST_HOOKS=ON) calls the hook a test
 * installed, to stop or slow a thread inside a race window that is too
 * narrow to hit otherwise.  Compiled out of every other build. */
enum {
  ISOLA__HOOK_SPAWN_ENTERED = 1, /* isolate_new: entered, nothing counted */
  ISOLA__HOOK_SPAWN_VISIBLE,     /* isolate_new: control port just opened */
  ISOLA__HOOK_SHUTDOWN_SCANNED,  /* shutdown: one kill scan done */
  ISOLA__HOOK_TURN_IDLE,         /* a turn marked its isolate idle */
  /* With a pointer (ISOLA__TEST_HOOK_P).  Tests name these by number
   * (tests/test_long_handler.c): add new points at the end. */
  ISOLA__HOOK_RUN_BEGIN,      /* this thread starts running isolate p */
  ISOLA__HOOK_RUN_END,        /* ... stops (before it may be claimed again) */
  ISOLA__HOOK_RUNNEXT_TAKING, /* an owner took p from runnext plainly, and
                                 has not cleared runnext yet */
  ISOLA__HOOK_RUNNEXT_STEAL,  /* a thief tries worker p's runnext */
};
#ifdef ISOLA_TEST_HOOKS
extern void (*_Atomic isola__test_hook)(int where);
extern void (*_Atomic isola__test_hook_p)(int where, const void *p);
#define ISOLA__TEST_HOOK(where)                                                \
  do {                                                                         \
    void (*h_)(int) = atomic_load(&isola__test_hook);                          \
    if (h_) h_(where);                                                         \
  } while (0)
#define ISOLA__TEST_HOOK_P(where, p)                                           \
  do {                                                                         \
    void (*h_)(int, const void *) = atomic_load(&isola__test_hook_p);          \
    if (h_) h_((where), (p));                                                  \
  } while (0)
#else
#define ISOLA__TEST_HOOK(where) ((void)0)
#define ISOLA__TEST_HOOK_P(where, p) ((void)0)
#endif

/* Every post and outbox push is made by a thread whose epoch record
 * (isola__t.rec) is online (send.c); a test build counts those that are
 * not, for tests to read (test_hooks.h). */
#ifdef ISOLA_TEST_HOOKS
void isola__test_post_check(void);
#define ISOLA__TEST_POST_CHECK() isola__test_post_check()
#else
#define ISOLA__TEST_POST_CHECK() ((void)0)
#endif

/* The VM (vm_life.c).  NULL when none runs. */
extern _Atomic(isola__vm *) isola__the_vm;

#endif
