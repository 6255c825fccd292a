/* isolate.h — spawning, ending, ports and sends (isolate.c). */
#ifndef ISOLA_ISOLATE_H
#define ISOLA_ISOLATE_H

#include "internal.h"

/* Ends the running isolate iso on its own thread: hooks, ports closed, exit
 * message sent, group released, retired.  iso must not be touched after. */
void isola__isolate_end(isola__vm *vm, isola__isolate *iso);

/* The isolate's name for humans. */
static inline const char *isola__isolate_name(const isola__isolate *iso) {
  return iso->name ? iso->name : (iso->pinned ? "main" : "isolate");
}

/* Posts a built message to its destination; takes ownership of m.  The
 * caller is on an isolate or has entered the VM (isola__vm_enter). */
int isola__post(isola__vm *vm, isola__msg *m);

/* A message holding a copy of v; ISOLA_EINVAL, ISOLA_ENOMEM. */
int isola__msg_new(isola_value v, isola__msg **out);

#endif
