/* SPDX-License-Identifier: MIT */
/*
 * call.c — request and response with a 100 ms timeout, from an isolate
 * (isola_call) and from a plain thread (isola_call_wait).
 *
 * A server isolate squares numbers; asked for 13 it takes 300 ms, so that
 * call times out.  Its late answer is dropped: the reply port is closed.
 * (A server handles one request at a time, so each caller gets its own.)
 *
 *   build/examples/call
 *
 * 12 is answered well within 100 ms on any machine not overloaded; the
 * program fails (exit 1) only if 13 were answered in time, which cannot
 * happen.
 */
#define _POSIX_C_SOURCE 200809L
#include <isola.h>
#include <stdio.h>
#include <time.h>

static void square(void *ctx, isola_port port, isola_value msg,
                   isola_port reply_to) {
  (void)ctx, (void)port;
  int64_t n;
  if (isola_unpack(msg, "i", &n) != ISOLA_OK) return;
  if (n == 13) { /* unlucky: slow */
    isola_blocking_begin();
    nanosleep(&(struct timespec){0, 300000000}, NULL);
    isola_blocking_end();
  }
  isola_send(reply_to, isola_int(n * n)); /* ECLOSED if the caller gave up */
}

/* ---- from an isolate: the answer comes to a callback ------------------- */

static int failures;

static void on_reply(void *ctx, int status, isola_value reply) {
  int64_t n = (int64_t)(intptr_t)ctx;
  if (status == ISOLA_OK)
    printf("isolate: %lld squared is %lld\n", (long long)n,
           (long long)reply.as.i);
  else
    printf("isolate: %lld: %s\n", (long long)n, isola_strerror(status));
  failures += n == 13 && status == ISOLA_OK; /* 13 cannot be on time */
}

static void caller(void *server, isola_value msg) {
  (void)msg;
  for (int64_t n = 12; n <= 13; n++)
    isola_call(*(isola_port *)server, isola_int(n), 100, on_reply,
               (void *)(intptr_t)n);
} /* the root lives until both calls are done */

int main(void) {
  isola_vm_init(NULL);
  isola_port server;
  isola_spawn_port(NULL, isola_null(), square, NULL, NULL, NULL, &server);
  isola_run_main_ctx(caller, &server, isola_null(), NULL);

  /* ---- from a plain thread: the call blocks ---------------------------- */
  isola_spawn_port(NULL, isola_null(), square, NULL, NULL, NULL, &server);
  for (int64_t n = 12; n <= 13; n++) {
    isola_value r;
    int rc = isola_call_wait(server, isola_int(n), 100, &r);
    if (rc == ISOLA_OK)
      printf("thread: %lld squared is %lld\n", (long long)n,
             (long long)r.as.i);
    else
      printf("thread: %lld: %s\n", (long long)n, isola_strerror(rc));
    failures += n == 13 && rc == ISOLA_OK;
    isola_value_free(&r);
  }
  isola_vm_shutdown(NULL);
  return failures ? 1 : 0;
}
