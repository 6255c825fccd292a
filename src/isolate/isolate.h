/* SPDX-License-Identifier: MIT */
/* isolate.h — spawning, ending and ports (isolate.c); sends are in send.h. */
#ifndef ISOLA_ISOLATE_H
#define ISOLA_ISOLATE_H

#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "port_map.h"
#include "message.h"
#include "send.h"

/* Ends the running isolate iso on its own thread: hooks, ports closed, exit
 * message sent, group released, retired.  iso must not be touched after. */
void isola__isolate_end(isola__vm *vm, isola__isolate *iso);

/* Closes an open port of the running isolate (slot s): unpublishes it,
 * drops its names if it has any (name_server.h says why a relaxed read of
 * the bit is enough; unnamed ports pay one predictable branch), then frees
 * the slot. */
void isola__port_close(isola__vm *vm, isola__port_slot *s);

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

/* Gives back the spawn credits the event running on this thread did not
 * use (isolate.c).  Called where an event ends. */
void isola__spawn_credits_return(isola__vm *vm);

/* The end of an event, however it ends (returned, thrown, killed, exit):
 * what it sent and still holds back goes out (the outbox) and the spawn
 * credits it did not use go back, before anything else can happen: the
 * next event, a control request, the turn marking the isolate idle (after
 * which another thread may claim it).  Two thread-local loads when there
 * is nothing to do. */
static inline void isola__event_end(isola__vm *vm) {
  isola__outbox_flush(vm);
  if (ISOLA__UNLIKELY(isola__t.sp_live | isola__t.sp_members))
    isola__spawn_credits_return(vm);
}

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

#endif
