/* SPDX-License-Identifier: MIT */
/*
 * A module that runs until it is stopped by a signal, for the runner's
 * signal tests and the observe page's browser test.  It makes:
 *   "slow-consumer"  paused by main, so its queue grows on purpose
 *   "producer"       sends 50 messages every 20 ms to slow-consumer (at
 *                    most 100 000 in all)
 *   "echo-N"         three isolates that pass a counter around a ring for
 *                    30 hops, a new one every 10 ms (a main timer)
 * then prints "ready" on stdout once each has run its entry.  Each isolate's end runs an isolate-local
 * destructor that prints "ended: NAME" on stdout.
 * args[0] == "stuck": also a "blocker" isolate whose handler blocks in C
 * (read() on a pipe nobody writes, inside isola_blocking_begin()), so
 * shutdown cannot end it.
 */
#include <isola.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

ISOLA_MODULE();

/* Its value: the isolate's name, printed when the isolate ends. */
static void say_end(void *value);
static isola_local_key said_end = {32, NULL, say_end, 0};

static void say_end(void *value) {
  printf("ended: %s\n", (const char *)value);
  fflush(stdout);
}

static void mark(const char *name) {
  char *p = isola_local_get(&said_end);
  if (p) strncpy(p, name, 31);
}

static void on_consume(void *ctx, isola_port port, isola_value msg,
                       isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
}

static void consumer_entry(isola_value main_port) {
  mark("slow-consumer");
  isola_port me;
  isola_port_open(on_consume, NULL, &me);
  isola_send(main_port.as.port, isola_list((isola_value[]){isola_str("consumer"), isola_sendport(me)}, 2));
}

static isola_port target;
static int sent;

static void produce(void *arg) {
  (void)arg;
  char text[64];
  memset(text, 'm', sizeof text - 1);
  text[sizeof text - 1] = '\0';
  for (int i = 0; i < 50 && sent < 100000; i++, sent++)
    isola_send(target, isola_str(text));
}

static void producer_entry(isola_value ports) {
  mark("producer");
  isola_value v;
  isola_list_get(ports, 0, &v);
  target = v.as.port;
  isola_timer t;
  isola_timer_start(0, 20, produce, NULL, &t);
  isola_list_get(ports, 1, &v); /* main: "started" */
  isola_send(v.as.port, isola_list((isola_value[]){isola_str("producer")}, 1));
}

static void on_echo(void *ctx, isola_port port, isola_value msg,
                    isola_port reply_to) {
  (void)port, (void)reply_to;
  isola_port *next = ctx;
  if (*next && msg.as.i < 30) isola_send(*next, isola_int(msg.as.i + 1));
}

static isola_port echo_next[3];

static void echo_entry(isola_value arg) {
  static const char *const names[] = {"echo-0", "echo-1", "echo-2"};
  int64_t i = 0;
  isola_value v;
  isola_list_get(arg, 0, &v);
  isola_value_get_int(v, &i);
  mark(names[i]);
  isola_port me;
  /* The ring's links live in this module's globals: each isolate reads
   * only its own slot, filled in by main before the first message. */
  isola_port_open(on_echo, &echo_next[i], &me);
  isola_list_get(arg, 1, &v);
  isola_send(v.as.port, isola_list((isola_value[]){isola_str("echo"), isola_int(i), isola_sendport(me)}, 3));
}

static void on_block(void *ctx, isola_port port, isola_value msg,
                     isola_port reply_to) {
  (void)ctx, (void)port, (void)msg, (void)reply_to;
  int fds[2];
  char c;
  /* Blocking, so its worker goes on with the others meanwhile; but no
   * kill reaches a thread blocked in read(). */
  isola_blocking_begin();
  if (pipe(fds) == 0 && read(fds[0], &c, 1) < 0) perror("read");
}

static void blocker_entry(isola_value main_port) {
  mark("blocker");
  isola_port me;
  isola_port_open(on_block, NULL, &me);
  isola_send(me, isola_null()); /* blocks in its next event */
  isola_send(main_port.as.port, isola_list((isola_value[]){isola_str("blocker"), isola_sendport(me)}, 2));
}

static isola_port main_port;
static isola_isolate consumer;
static int echoes, waiting;
static isola_port echo_ports[3];

static void inject(void *arg) {
  (void)arg;
  isola_send(echo_ports[0], isola_int(0));
}

static void ready_if_done(void) {
  if (--waiting == 0) {
    printf("ready\n");
    fflush(stdout);
  }
}

static void on_main(void *ctx, isola_port port, isola_value msg,
                    isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  isola_value tag, v;
  isola_list_get(msg, 0, &tag);
  const char *what;
  isola_value_get_str(tag, &what, NULL);
  if (strcmp(what, "consumer") == 0) {
    isola_list_get(msg, 1, &v);
    /* Paused: whatever the producer sends waits in its queue. */
    isola_pause(&consumer, 0);
    isola_spawn_options o = {.name = "producer"};
    isola_spawn(producer_entry,
                isola_list((isola_value[]){v, isola_sendport(main_port)}, 2),
                &o, NULL);
  } else if (strcmp(what, "producer") == 0) {
    ready_if_done();
  } else if (strcmp(what, "echo") == 0) {
    int64_t i = 0;
    isola_list_get(msg, 1, &v);
    isola_value_get_int(v, &i);
    isola_list_get(msg, 2, &v);
    echo_ports[i] = v.as.port;
    if (++echoes == 3) {
      for (int k = 0; k < 3; k++) echo_next[k] = echo_ports[(k + 1) % 3];
      isola_timer t;
      isola_timer_start(0, 10, inject, NULL, &t);
      ready_if_done();
    }
  } else {
    ready_if_done(); /* the blocker is blocked or about to be */
  }
}

void isola_main(isola_value args, isola_value message) {
  (void)message;
  mark("main");
  isola_port_open(on_main, NULL, &main_port);
  waiting = 2;
  isola_spawn_options o = {.name = "slow-consumer"};
  isola_spawn(consumer_entry, isola_sendport(main_port), &o, &consumer);
  for (int i = 0; i < 3; i++) {
    static const char *const names[] = {"echo-0", "echo-1", "echo-2"};
    isola_spawn_options e = {.name = names[i]};
    isola_spawn(echo_entry,
                isola_list((isola_value[]){isola_int(i), isola_sendport(main_port)}, 2),
                &e, NULL);
  }
  isola_value a;
  const char *mode;
  if (isola_list_get(args, 0, &a) == ISOLA_OK &&
      isola_value_get_str(a, &mode, NULL) == ISOLA_OK &&
      strcmp(mode, "stuck") == 0) {
    waiting++;
    isola_spawn_options b = {.name = "blocker"};
    isola_spawn(blocker_entry, isola_sendport(main_port), &b, NULL);
  }
}
