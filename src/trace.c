/* SPDX-License-Identifier: MIT */
/* trace.c — trace events per thread, written as Chrome trace-event JSON
 * (trace.h; docs/observability.md, "Trace export"). */
#include "trace.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isolate.h"
#include "platform.h"
#include "scheduler.h"
#include "vm.h"

#define DEFAULT_PER_THREAD 65536u

void isola__tracer_init(isola__tracer *t, size_t per_thread) {
  pthread_mutex_init(&t->lock, NULL);
  t->bufs = NULL;
  t->next_tid = 1;
  t->cap = per_thread ? per_thread : DEFAULT_PER_THREAD;
}

/* The calling thread's buffer, made on first use; NULL when out of memory
 * (its events are then not recorded). */
static isola__tbuf *own(isola__vm *vm) {
  if (ISOLA__LIKELY(isola__t.tbuf && isola__t.tbuf_gen == vm->gen))
    return isola__t.tbuf;
  isola__tracer *tr = &vm->tracer;
  isola__tbuf *b = malloc(sizeof *b + tr->cap * sizeof b->ev[0]);
  if (!b) return NULL;
  b->cap = tr->cap;
  atomic_init(&b->n, 0);
  atomic_init(&b->dropped, 0);
  isola__thread *th = isola__t.thread;
  pthread_mutex_lock(&tr->lock);
  b->tid = tr->next_tid++;
  snprintf(b->tname, sizeof b->tname, "%s %u",
           th ? (th->pinned ? "root isolate thread" : "pool thread")
              : "thread",
           (unsigned)b->tid);
  b->next = tr->bufs;
  tr->bufs = b;
  pthread_mutex_unlock(&tr->lock);
  isola__t.tbuf = b;
  isola__t.tbuf_gen = vm->gen;
  return b;
}

void isola__trace_event(isola__vm *vm, uint32_t kind, isola__isolate *iso,
                        uint64_t id, uint32_t arg) {
  isola__tbuf *b = own(vm);
  if (!b) return;
  size_t n = atomic_load_explicit(&b->n, memory_order_relaxed);
  if (n == b->cap) {
    atomic_store_explicit(
        &b->dropped,
        atomic_load_explicit(&b->dropped, memory_order_relaxed) + 1,
        memory_order_relaxed);
    return;
  }
  isola__tev *e = &b->ev[n];
  e->ts = isola__plat_now_ns();
  e->id = id;
  e->kind = kind;
  e->arg = arg;
  e->iso = iso ? iso->control_port : 0;
  e->name[0] = '\0';
  if (iso) {
    const char *name = isola__isolate_name(iso);
    size_t len = strlen(name);
    if (len >= sizeof e->name) len = sizeof e->name - 1;
    memcpy(e->name, name, len);
    e->name[len] = '\0';
  }
  /* Release: a writer that reads n sees the event. */
  atomic_store_explicit(&b->n, n + 1, memory_order_release);
}

void isola__trace_turn(isola__vm *vm, isola__isolate *iso, bool begin,
                       uint32_t state) {
  if (begin) {
    if (isola__t.turn_open) return;
    isola__t.turn_open = true;
    isola__thread *th = isola__t.thread;
    isola__trace_event(vm, ISOLA__TEV_TURN_BEGIN, iso, 0,
                       th && th->w ? th->w->id + 1 : 0);
    return;
  }
  if (!isola__t.turn_open) return;
  if (state == ISOLA_STATE_PAUSED)
    isola__trace_event(vm, ISOLA__TEV_PAUSE, iso, 0, 0);
  isola__trace_event(vm, ISOLA__TEV_TURN_END, iso, 0, 0);
  isola__t.turn_open = false;
}

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(f, "\\%c", *p);
    else if (*p < 0x20)
      fprintf(f, "\\u%04x", *p);
    else
      fputc(*p, f);
  }
  fputc('"', f);
}

/* Writes every buffer's events [0, n) to path; the caller holds the lock. */
static int write_locked(isola__tracer *tr, const char *path) {
  FILE *f = fopen(path, "w");
  if (!f) return ISOLA_ESYS;
  fputs("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n", f);
  fputs("{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0,"
        "\"args\":{\"name\":\"isola VM\"}}",
        f);
  for (isola__tbuf *b = tr->bufs; b; b = b->next) {
    fprintf(f,
            ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":%u,"
            "\"args\":{\"name\":",
            (unsigned)b->tid);
    json_str(f, b->tname);
    fputs("}}", f);
    size_t n = atomic_load_explicit(&b->n, memory_order_acquire);
    for (size_t i = 0; i < n; i++) {
      const isola__tev *e = &b->ev[i];
      double us = (double)e->ts / 1000.0;
      const char *head = ",\n{\"pid\":1,\"tid\":%u,\"ts\":%.3f,";
      fprintf(f, head, (unsigned)b->tid, us);
      switch (e->kind) {
      case ISOLA__TEV_TURN_BEGIN:
        fputs("\"ph\":\"B\",\"cat\":\"turn\",\"name\":", f);
        json_str(f, e->name);
        fprintf(f, ",\"args\":{\"isolate\":\"%016" PRIx64 "\"", e->iso);
        if (e->arg) fprintf(f, ",\"worker\":%u", (unsigned)(e->arg - 1));
        fputs("}}", f);
        break;
      case ISOLA__TEV_TURN_END:
        fputs("\"ph\":\"E\",\"cat\":\"turn\"}", f);
        break;
      case ISOLA__TEV_SPAWN:
        fputs("\"ph\":\"i\",\"s\":\"t\",\"cat\":\"isolate\",\"name\":", f);
        fprintf(f, "\"spawn\",\"args\":{\"isolate\":\"%016" PRIx64
                   "\",\"name\":",
                e->iso);
        json_str(f, e->name);
        fputs("}}", f);
        break;
      case ISOLA__TEV_FLOW_OUT:
      case ISOLA__TEV_FLOW_IN:
        fprintf(f,
                "\"ph\":\"%s\",%s\"cat\":\"message\",\"name\":\"message\","
                "\"id\":\"0x%" PRIx64 "\"}",
                e->kind == ISOLA__TEV_FLOW_OUT ? "s" : "f",
                e->kind == ISOLA__TEV_FLOW_IN ? "\"bp\":\"e\"," : "", e->id);
        break;
      case ISOLA__TEV_PAUSE:
        fputs("\"ph\":\"i\",\"s\":\"t\",\"cat\":\"isolate\",\"name\":"
              "\"paused\",\"args\":{\"name\":",
              f);
        json_str(f, e->name);
        fputs("}}", f);
        break;
      case ISOLA__TEV_END:
        fprintf(f,
                "\"ph\":\"i\",\"s\":\"t\",\"cat\":\"isolate\",\"name\":"
                "\"end: %s\",\"args\":{\"isolate\":\"%016" PRIx64
                "\",\"reason\":\"%s\",\"name\":",
                isola_exit_reason_name((int)e->arg), e->iso,
                isola_exit_reason_name((int)e->arg));
        json_str(f, e->name);
        fputs("}}", f);
        break;
      default:
        fputs("\"ph\":\"i\",\"s\":\"t\",\"name\":\"?\"}", f);
        break;
      }
    }
    uint64_t dropped = atomic_load_explicit(&b->dropped, memory_order_relaxed);
    if (dropped)
      fprintf(f,
              ",\n{\"pid\":1,\"tid\":%u,\"ts\":%.3f,\"ph\":\"i\",\"s\":\"t\","
              "\"name\":\"buffer full: %" PRIu64 " events dropped\"}",
              (unsigned)b->tid,
              n ? (double)b->ev[n - 1].ts / 1000.0 : 0.0, dropped);
  }
  fputs("\n]}\n", f);
  int rc = ferror(f) ? ISOLA_ESYS : ISOLA_OK;
  if (fclose(f) != 0) rc = ISOLA_ESYS;
  return rc;
}

void isola__tracer_destroy(isola__vm *vm, const char *path) {
  isola__tracer *tr = &vm->tracer;
  pthread_mutex_lock(&tr->lock);
  if (path) write_locked(tr, path);
  isola__tbuf *b = tr->bufs;
  tr->bufs = NULL;
  pthread_mutex_unlock(&tr->lock);
  while (b) {
    isola__tbuf *next = b->next;
    free(b);
    b = next;
  }
  pthread_mutex_destroy(&tr->lock);
}

int isola_trace_write(const char *path) {
  if (isola__t.current) return ISOLA_EBUSY;
  isola__call c;
  int rc = isola__vm_enter(&c);
  if (rc != ISOLA_OK) return rc;
  isola__vm *vm = c.vm;
  if (!vm->tracing) {
    rc = ISOLA_EINVAL;
  } else {
    if (!path) path = vm->config.trace_events_path;
    pthread_mutex_lock(&vm->tracer.lock);
    rc = write_locked(&vm->tracer, path);
    pthread_mutex_unlock(&vm->tracer.lock);
  }
  isola__vm_leave(&c);
  return rc;
}
