/* SPDX-License-Identifier: MIT */
/* isolate.h — spawning, ending, ports and sends (isolate.c). */
#ifndef ISOLA_ISOLATE_H
#define ISOLA_ISOLATE_H

#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Ends the running isolate iso on its own thread: hooks, ports closed, exit
 * message sent, group released, retired.  iso must not be touched after. */
void isola__isolate_end(isola__vm *vm, isola__isolate *iso);

/* The isolate's name for humans. */
static inline const char *isola__isolate_name(const isola__isolate *iso) {
  if (iso->name[15]) { /* long: malloc'ed */
    const char *p;
    memcpy(&p, iso->name, sizeof p);
    return p;
  }
  return iso->name[0] ? iso->name : (iso->pinned ? "main" : "isolate");
}

/* Sets a new isolate's name (NULL or empty: the default); ISOLA_ENOMEM. */
int isola__isolate_set_name(isola__isolate *iso, const char *name);

/* Frees what the name holds. */
static inline void isola__isolate_name_free(isola__isolate *iso) {
  if (iso->name[15]) {
    char *p;
    memcpy(&p, iso->name, sizeof p);
    free(p);
    iso->name[15] = 0;
  }
}

/* Posts a built message to its destination; takes ownership of m.  The
 * caller is on an isolate or has entered the VM (isola__vm_enter). */
int isola__post(isola__vm *vm, isola__msg *m);

/* Gives back the spawn credits the event running on this thread did not
 * use (isolate.c).  Called where an event ends. */
void isola__spawn_credits_return(isola__vm *vm);

/* Pushes the calling thread's outbox (isolate.c), which is not empty. */
void isola__outbox_push(isola__vm *vm);

/* Pushes the messages the running event sent and this thread still holds
 * back (the outbox, isolate.c).  Called where an event ends or may wait. */
static inline void isola__outbox_flush(isola__vm *vm) {
  if (isola__t.ob_to) isola__outbox_push(vm);
}

/* Posts a control message (m->dest is a control port) to the isolate's
 * OOB queue and schedules it if idle; takes ownership of m.  The caller has
 * entered the VM (isola__vm_enter) before building m.  ISOLA_ECLOSED,
 * ISOLA_EINVAL (not a control port). */
int isola__post_control(isola__vm *vm, isola__msg *m);

struct isola__run;
/* isola_spawn for isola_run: the new isolate owns run once this succeeds
 * (on error it stays the caller's). */
int isola__spawn_run(isola_entry entry, isola_value message,
                     const isola_spawn_options *opts, struct isola__run *run);

/* A receive port the spawner opens for a new isolate before it runs
 * (isola_spawn_port): handler and ctx as for isola_port_open(); *out gets
 * the port when the spawn succeeds. */
typedef struct isola__first_port {
  isola_handler handler;
  void *ctx;
  isola_port *out;
} isola__first_port;

/* isola_spawn with, each optional, an isola_run state (as
 * isola__spawn_run) and a first port. */
int isola__spawn_ex(isola_entry entry, isola_value message,
                    const isola_spawn_options *opts, struct isola__run *run,
                    const isola__first_port *fp, isola_isolate *out);

/* isola_run_main with spawn options (name, heap limit, listeners). */
int isola__run_main_ex(isola_entry entry, isola_value message,
                       const isola_spawn_options *opts);

/* A message holding a copy of v; ISOLA_EINVAL, ISOLA_ENOMEM. */
int isola__msg_new(isola_value v, isola__msg **out);

#endif
