/* SPDX-License-Identifier: MIT */
/* lifecycle.c — an isolate's state machine (lifecycle.h). */
#include "lifecycle.h"

#include <assert.h>

#include "control.h"

/* The moves each state allows, as a bit set of target states (read by
 * the assert only: unused with NDEBUG, hence the attribute). */
#define TO(s) (1u << (s))
#if defined(__GNUC__)
__attribute__((unused))
#endif
static const uint8_t allowed[] = {
    [ISOLA__ISO_NEW] = TO(ISOLA__ISO_RUNNING),
    [ISOLA__ISO_RUNNING] = TO(ISOLA__ISO_PAUSED) | TO(ISOLA__ISO_ENDING),
    [ISOLA__ISO_PAUSED] = TO(ISOLA__ISO_RUNNING) | TO(ISOLA__ISO_ENDING),
    [ISOLA__ISO_ENDING] = TO(ISOLA__ISO_ENDED),
    [ISOLA__ISO_ENDED] = TO(ISOLA__ISO_RECLAIMED),
    [ISOLA__ISO_RECLAIMED] = 0,
};

void isola__life_move(isola__isolate *iso, uint8_t to) {
  assert(iso->state < sizeof allowed && (allowed[iso->state] & TO(to)));
  iso->state = to;
}

void isola__life_publish(isola__isolate *iso) {
  isola__life_move(iso, ISOLA__ISO_RUNNING);
  if (iso->hold & ISOLA__HOLD_PAUSED) isola__life_move(iso, ISOLA__ISO_PAUSED);
}
