/* SPDX-License-Identifier: MIT */
/* vm.h — the one VM of the process: its parts and its live isolates. */
#ifndef ISOLA_VM_H
#define ISOLA_VM_H

#include "epoch.h"
#include "event_handler_types.h"
#include "internal.h"
#include "name_server_types.h"
#include "port_map.h"
#include "sched_types.h"
#include "trace_events.h"

/* TEARDOWN: shutdown found no isolate left and frees the VM once the
 * outside callers have left (a snapshot may enter until then). */
enum {
  ISOLA__VM_RUNNING = 1,
  ISOLA__VM_SHUTTING_DOWN = 2,
  ISOLA__VM_TEARDOWN = 3
};

struct isola__vm {
  isola_config config;
  FILE *trace; /* config.trace_file or stderr */
  uint64_t gen; /* distinguishes this VM from earlier ones in TLS */
  _Atomic int state;
  isola__port_map ports;
  isola__epoch epoch;
  isola__sched sched;

  pthread_mutex_t live_lock; /* with live_cv: shutdown waits for live == 0 */
  pthread_cond_t live_cv;    /* signalled when live drops to 0 */
  _Atomic size_t live;       /* isolates spawned and not yet ended */
  _Atomic uint64_t next_group;
  pthread_key_t thread_key;  /* unregisters a plain thread's epoch record */
  isola__names names;        /* the name server (name_server.h) */
  isola__timers timers;      /* timers, fd watches, their thread
                                (event_handler.h) */
  bool tracing;              /* config.trace_events_path: record events */
  isola__tracer tracer;      /* their buffers (trace.h) */
};

static inline isola__vm *isola__vm_get(void) {
  return atomic_load_explicit(&isola__the_vm, memory_order_acquire);
}

/* Writes one trace line (printf format).  Use isola__trace(), which costs
 * one test when tracing is off. */
void isola__trace_write(isola__vm *vm, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
#define isola__trace(vm, flag, ...)                                            \
  do {                                                                         \
    if (ISOLA__UNLIKELY((vm)->config.trace & (flag)))                          \
      isola__trace_write((vm), __VA_ARGS__);                                   \
  } while (0)

/* One public call into the VM.  A thread that is not an isolate holds the
 * VM's count of outside callers meanwhile, so shutdown frees nothing it is
 * using, and comes online (epoch.h) for the call; an isolate's thread needs
 * neither, the VM outlives it, but comes online if it is in a blocking
 * section. */
typedef struct isola__call {
  isola__vm *vm;
  bool counted; /* holds the outside-caller count */
  bool online;  /* came online for this call */
  isola__epoch_rec *rec;
} isola__call;

/* Enters the VM.  ISOLA_OK, or ISOLA_ENOVM, ISOLA_ESHUTDOWN (the VM is
 * shutting down), ISOLA_ENOMEM (no epoch record); on success call
 * isola__vm_leave() after. */
int isola__vm_enter_slow(isola__call *c);
void isola__vm_leave_slow(isola__call *c);

/* The fast path of isola__vm_enter(): a pool or root thread already online
 * (running a turn) enters by looking at the VM's state, nothing more. */
static inline int isola__vm_enter(isola__call *c) {
  isola__thread *t = isola__t.thread;
  isola__vm *vm = isola__vm_get();
  if (ISOLA__LIKELY(t && t->online && vm &&
                    atomic_load_explicit(&vm->state, memory_order_seq_cst) ==
                        ISOLA__VM_RUNNING)) {
    c->vm = vm;
    c->counted = c->online = false;
    c->rec = NULL;
    return ISOLA_OK;
  }
  return isola__vm_enter_slow(c);
}

static inline void isola__vm_leave(isola__call *c) {
  if (c->online || c->counted) isola__vm_leave_slow(c);
}

/* Threads that are not isolates inside a call (isola__vm_enter). */
extern _Atomic size_t isola__outside_callers;

/* The calling thread's epoch record, registering one if needed; NULL when
 * out of memory. */
isola__epoch_rec *isola__vm_thread_rec(isola__vm *vm);

/* Frees what native ports are left (shutdown, after every isolate ended). */
void isola__native_destroy_all(void);

/* An isolate has ended: the live count drops (isolate.c calls this last). */
void isola__vm_isolate_ended(isola__vm *vm);

#endif
