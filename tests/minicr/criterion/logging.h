/* SPDX-License-Identifier: MIT */
/* minicr: logging lives in criterion.h (see there). */
#include "criterion.h"
