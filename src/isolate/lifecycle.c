/* SPDX-License-Identifier: MIT */
/* lifecycle.c — an isolate's state machine (lifecycle.h). */
#include "lifecycle.h"

#include "control.h"

#define TO(s) (1u << (s))
const uint8_t isola__life_moves[ISOLA__ISO_RECLAIMED + 1] = {
    [ISOLA__ISO_NEW] = TO(ISOLA__ISO_RUNNING),
    [ISOLA__ISO_RUNNING] = TO(ISOLA__ISO_PAUSED) | TO(ISOLA__ISO_ENDING),
    [ISOLA__ISO_PAUSED] = TO(ISOLA__ISO_RUNNING) | TO(ISOLA__ISO_ENDING),
    [ISOLA__ISO_ENDING] = TO(ISOLA__ISO_ENDED),
    [ISOLA__ISO_ENDED] = TO(ISOLA__ISO_RECLAIMED),
    [ISOLA__ISO_RECLAIMED] = 0,
};

void isola__life_publish(isola__isolate *iso) {
  isola__life_move(iso, ISOLA__ISO_RUNNING);
  if (iso->hold & ISOLA__HOLD_PAUSED) isola__life_move(iso, ISOLA__ISO_PAUSED);
}
