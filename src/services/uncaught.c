/* SPDX-License-Identifier: MIT */
/*
 * uncaught.c — uncaught errors (control.h): isola_throw and the failed
 * isola_assert, the unwind to the turn, then what the error does there:
 * the isola_run caller gets it, else every error listener gets an error
 * message (or notice), else the VM's unhandled_error hook or stderr; and
 * whether it ends the isolate (errors fatal).
 */
#include "control.h"

#include <execinfo.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control_state.h"
#include "isolate.h"
#include "message.h"
#include "scheduler.h"
#include "value.h"
#include "vm.h"

/* The error being raised on this thread, between isola_throw() and the
 * turn it unwinds to (same thread, so thread-local).  NULL: out of
 * memory, a fixed text is used. */
static _Thread_local char *pending_msg;
static _Thread_local char *pending_stack;
/* ISOLA_EXIT_ERROR, or ISOLA_EXIT_HEAP_LIMIT for isola__throw_heap_limit. */
static _Thread_local uint8_t pending_reason;

static const char oom_text[] = "out of memory while raising an error";

/* The stack of the calling thread, one frame a line, or NULL. */
static char *capture_stack(void) {
  void *frames[64];
  int n = backtrace(frames, 64);
  if (n <= 0) return NULL;
  /* Frame 0 is this function and frame 1 the raise: skip both. */
  int first = n > 2 ? 2 : 0;
  isola__vm *vm = isola__vm_get();
  if (vm && vm->config.stack_symbolizer) {
    char *sym = vm->config.stack_symbolizer(frames + first, n - first);
    if (sym) return sym;
  }
  char **syms = backtrace_symbols(frames, n);
  if (!syms) return NULL;
  size_t len = 1;
  for (int i = first; i < n; i++) len += strlen(syms[i]) + 1;
  char *s = malloc(len);
  if (s) {
    char *p = s;
    for (int i = first; i < n; i++) {
      size_t l = strlen(syms[i]);
      memcpy(p, syms[i], l);
      p += l;
      *p++ = '\n';
    }
    if (p > s) p--; /* no newline after the last frame */
    *p = '\0';
  }
  free(syms);
  return s;
}

static void info_of(isola__isolate *iso, isola_isolate_info *info) {
  info->name = isola__isolate_name(iso);
  info->control_port = iso->control_port;
  info->origin = iso->origin;
  info->group = iso->group->id;
  info->exit_reason = 0;
}

static void report_unhandled(isola__vm *vm, const isola_isolate_info *info,
                             const char *msg, const char *stack) {
  if (vm && vm->config.unhandled_error) {
    vm->config.unhandled_error(vm->config.unhandled_error_data, info, msg,
                               stack);
    return;
  }
  fprintf(stderr, "isola: uncaught error in isolate '%s' (%016llx): %s\n",
          info ? info->name : "(not an isolate)",
          info ? (unsigned long long)info->control_port : 0ull, msg);
}

ISOLA_NORETURN_ static void raise_now(char *msg, uint8_t reason) {
  char *stack = capture_stack();
  isola__isolate *iso = isola__t.current;
  if (!iso || !iso->unwind) {
    /* No turn to unwind to: misuse, reported and fatal like assert(). */
    isola_isolate_info info;
    if (iso) info_of(iso, &info);
    report_unhandled(iso ? isola__vm_get() : NULL, iso ? &info : NULL,
                     msg ? msg : oom_text, stack ? stack : "");
    abort();
  }
  free(pending_msg);
  free(pending_stack);
  pending_msg = msg;
  pending_stack = stack;
  pending_reason = reason;
  longjmp(*(jmp_buf *)iso->unwind, ISOLA__UNWIND_ERROR);
}

void isola_throw(const char *fmt, ...) {
  char *msg = NULL;
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0) msg = NULL;
    va_end(ap);
  } else {
    msg = strdup("");
  }
  raise_now(msg, ISOLA_EXIT_ERROR);
}

void isola__throw_heap_limit(const char *fmt, ...) {
  char *msg = NULL;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&msg, fmt, ap) < 0) msg = NULL;
  va_end(ap);
  raise_now(msg, ISOLA_EXIT_HEAP_LIMIT);
}

void isola__assert_fail(const char *expr, const char *file, int line) {
  char *msg = NULL;
  if (asprintf(&msg, "assertion failed: %s (%s:%d)", expr, file, line) < 0)
    msg = NULL;
  raise_now(msg, ISOLA_EXIT_ERROR);
}

/* A message [msg, stack] (notice: [msg, stack, isolate id]) addressed to
 * port, or NULL. */
static isola__msg *error_msg(char *msg, char *stack, isola_port id,
                             bool notice, isola_port port) {
  isola_value items[3] = {isola_str(msg), isola_str(stack),
                          isola_sendport(id)};
  size_t n = notice ? 3 : 2;
  isola__msg *m;
  int rc = isola__msg_new(isola_list(items, n), &m);
  if (rc == ISOLA_EINVAL) { /* not UTF-8 */
    ascii_only(msg);
    ascii_only(stack);
    items[0] = isola_str(msg);
    items[1] = isola_str(stack);
    rc = isola__msg_new(isola_list(items, n), &m);
  }
  if (rc != ISOLA_OK) return NULL;
  m->dest = port;
  return m;
}

bool isola__control_raise(isola__vm *vm, isola__isolate *iso) {
  char *msg = pending_msg, *stack = pending_stack;
  pending_msg = pending_stack = NULL;
  char empty[1] = "";
  char oom[sizeof oom_text];
  memcpy(oom, oom_text, sizeof oom);
  char *m = msg ? msg : oom, *s = stack ? stack : empty;
  struct isola__control *c = iso->ctl;
  bool fatal = iso->errors_fatal;
  if (c && c->run) {
    /* An isola_run computation: its caller receives the error. */
    free(c->run->err_msg);
    free(c->run->err_stack);
    c->run->err_msg = strdup(m);
    c->run->err_stack = strdup(s);
    fatal = true;
  } else if (c && c->nerrors) {
    for (uint32_t i = 0; i < c->nerrors; i++) {
      isola__msg *e = error_msg(m, s, iso->control_port,
                                c->errors[i].notice, c->errors[i].port);
      if (e) isola__post(vm, e);
    }
  } else {
    isola_isolate_info info;
    info_of(iso, &info);
    report_unhandled(vm, &info, m, s);
  }
  isola__trace(vm, ISOLA_TRACE_ISOLATES,
               "isola: isolate '%s' (%016llx) uncaught error: %s\n",
               isola__isolate_name(iso),
               (unsigned long long)iso->control_port, m);
  /* Should this error end the isolate, its exit notices say why. */
  iso->exit_reason = pending_reason ? pending_reason : ISOLA_EXIT_ERROR;
  pending_reason = 0;
  if (c || (iso->exits && (c = ctl_of(iso)))) {
    free(c->exit_detail);
    c->exit_detail = msg; /* taken: NULL (out of memory) is reported as
                             the fixed text */
    msg = NULL;
    if (!c->exit_detail) c->exit_detail = strdup(oom_text);
  }
  free(msg);
  free(stack);
  return fatal;
}

void isola__control_survived(isola__isolate *iso) {
  iso->exit_reason = ISOLA_EXIT_NORMAL;
  if (iso->ctl) {
    free(iso->ctl->exit_detail);
    iso->ctl->exit_detail = NULL;
  }
}

void isola__control_unwound(isola__vm *vm, isola__isolate *iso) {
  (void)iso;
  /* Frames abandoned between isola_blocking_begin() and _end(): end the
   * blocking section so the thread gets its worker back. */
  isola__thread *t = isola__t.thread;
  while (t && t->blocking > 0) isola__sched_blocking_end(&vm->sched, t);
}
