/* SPDX-License-Identifier: MIT */
/* examples/call.c on the API as it was before the toolkit (commit 2053f9a:
 * no isola_call, no receivers, no isola_spawn_port, no context for the
 * root's entry, no isola_unpack), the same program with the same output.
 * Written only to count the lines it took (docs/examples.md); not built
 * by CMake.  It still builds and runs against today's library:
 *   cc -Iinclude docs/examples-before/call.c -Lbuild -lisola -lpthread */
#define _POSIX_C_SOURCE 200809L
#include <isola.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void square(void *ctx, isola_port port, isola_value msg,
                   isola_port reply_to) {
  (void)ctx, (void)port;
  int64_t n;
  if (isola_value_get_int(msg, &n) != ISOLA_OK) return;
  if (n == 13) { /* unlucky: slow */
    isola_blocking_begin();
    nanosleep(&(struct timespec){0, 300000000}, NULL);
    isola_blocking_end();
  }
  isola_send(reply_to, isola_int(n * n)); /* ECLOSED if the caller gave up */
}

/* The server announces its port to whoever spawned it. */
static void server_entry(isola_value msg) {
  isola_port me, parent;
  isola_value_get_port(msg, &parent);
  if (isola_port_open(square, NULL, &me) != ISOLA_OK) isola_throw("no port");
  isola_send(parent, isola_sendport(me));
}

static int failures;

/* ---- from an isolate: a reply port and a timer per call ---------------- */

typedef struct call {
  int64_t n;
  isola_port reply;
  isola_timer timer;
  bool done;
} call;

static void call_end(call *c, int status, isola_value reply) {
  if (c->done) return; /* exactly once */
  c->done = true;
  if (status == ISOLA_OK)
    printf("isolate: %lld squared is %lld\n", (long long)c->n,
           (long long)reply.as.i);
  else
    printf("isolate: %lld: %s\n", (long long)c->n, isola_strerror(status));
  failures += c->n == 13 && status == ISOLA_OK;
  isola_port_close(c->reply); /* a late reply is dropped */
  isola_free(c);
}

static void on_reply(void *ctx, isola_port port, isola_value msg,
                     isola_port reply_to) {
  (void)port, (void)reply_to;
  call *c = ctx;
  isola_timer_cancel(c->timer);
  call_end(c, ISOLA_OK, msg);
}

static void on_timeout(void *arg) {
  call_end(arg, ISOLA_ETIMEDOUT, isola_null());
}

static void start_call(isola_port server, int64_t n) {
  call *c = isola_calloc(sizeof *c);
  if (!c) isola_throw("no memory");
  c->n = n;
  if (isola_port_open(on_reply, c, &c->reply) != ISOLA_OK ||
      isola_timer_start(100, 0, on_timeout, c, &c->timer) != ISOLA_OK)
    isola_throw("cannot call");
  isola_send_reply(server, isola_int(n), c->reply);
}

/* The root first waits for the server's port. */
static void on_server(void *ctx, isola_port port, isola_value msg,
                      isola_port reply_to) {
  (void)ctx, (void)reply_to;
  isola_port server;
  isola_value_get_port(msg, &server);
  isola_port_close(port);
  for (int64_t n = 12; n <= 13; n++) start_call(server, n);
}

static void caller(isola_value msg) {
  (void)msg;
  isola_port me;
  if (isola_port_open(on_server, NULL, &me) != ISOLA_OK) isola_throw("port");
  isola_spawn(server_entry, isola_sendport(me), NULL, NULL);
}

/* ---- from a plain thread: a native port, a mutex and a condvar --------- */

/* Takes the first message sent to its native port. */
typedef struct box {
  pthread_mutex_t lock;
  pthread_cond_t cv;
  bool have;
  isola_value value;
} box;

static void on_native(void *ctx, isola_port port, isola_value msg,
                      isola_port reply_to) {
  (void)port, (void)reply_to;
  box *b = ctx;
  pthread_mutex_lock(&b->lock);
  if (!b->have && isola_value_copy(msg, &b->value) == ISOLA_OK) {
    b->have = true;
    pthread_cond_signal(&b->cv);
  }
  pthread_mutex_unlock(&b->lock);
}

/* Sends msg to port with a native port of its own as reply_to and waits
 * up to timeout_ms for the reply; the port is closed after, so a late
 * reply is dropped.  to NONE: only waits (for a port announced to it). */
static int call_wait(isola_port to, isola_value msg, long timeout_ms,
                     isola_value *out, isola_entry spawn) {
  box b = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, {0}};
  isola_port reply;
  int rc = isola_native_port_new("reply", on_native, &b, false, &reply);
  if (rc != ISOLA_OK) return rc;
  if (spawn)
    rc = isola_spawn(spawn, isola_sendport(reply), NULL, NULL);
  else
    rc = isola_send_reply(to, msg, reply);
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += timeout_ms / 1000;
  deadline.tv_nsec += timeout_ms % 1000 * 1000000;
  if (deadline.tv_nsec >= 1000000000) {
    deadline.tv_sec++;
    deadline.tv_nsec -= 1000000000;
  }
  pthread_mutex_lock(&b.lock);
  while (rc == ISOLA_OK && !b.have)
    if (pthread_cond_timedwait(&b.cv, &b.lock, &deadline) != 0) break;
  pthread_mutex_unlock(&b.lock);
  isola_native_port_close(reply); /* waits for a handler still running */
  if (rc == ISOLA_OK && !b.have) rc = ISOLA_ETIMEDOUT;
  *out = b.value;
  return rc;
}

int main(void) {
  isola_vm_init(NULL);
  isola_run_main(caller, isola_null(), NULL);

  isola_value v;
  isola_port server;
  if (call_wait(ISOLA_PORT_NONE, isola_null(), 10000, &v, server_entry) !=
          ISOLA_OK ||
      isola_value_get_port(v, &server) != ISOLA_OK)
    return 1;
  isola_value_free(&v);
  for (int64_t n = 12; n <= 13; n++) {
    isola_value r;
    int rc = call_wait(server, isola_int(n), 100, &r, NULL);
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
