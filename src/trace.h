/* SPDX-License-Identifier: MIT */
/*
 * trace.h — trace events for config.trace_events_path (trace.c): a bounded
 * buffer per thread, written as Chrome trace-event JSON at shutdown or by
 * isola_trace_write().  Each recording point tests vm->tracing first, so
 * with tracing off it costs one predictable branch.
 */
#ifndef ISOLA_TRACE_H
#define ISOLA_TRACE_H

#include "internal.h"
#include "trace_events.h"

void isola__tracer_init(isola__tracer *t, size_t per_thread);
/* Writes the file (path) and frees every buffer: at shutdown, after every
 * thread that records has stopped. */
void isola__tracer_destroy(isola__vm *vm, const char *path);

#endif
