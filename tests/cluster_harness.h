/* SPDX-License-Identifier: MIT */
/*
 * Processes for the cluster tests: a nats-server on 127.0.0.1 on a free
 * port, and `isola node` processes.  Every child dies with the test
 * (PR_SET_PDEATHSIG), so a failed test leaves nothing running.  Nothing
 * here sleeps: each start waits for the line the child prints when it is
 * ready, with a deadline.
 */
#ifndef ISOLA_TESTS_CLUSTER_HARNESS_H
#define ISOLA_TESTS_CLUSTER_HARNESS_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct ch_server {
  pid_t pid;
  int port;
  int route_port;   /* in a cluster of servers, else 0 */
  char routes[160]; /* the other servers' route URLs */
  char name[16];
  const char *user, *password; /* required of clients, when set */
  bool jetstream;
  char url[64];
  char store[128]; /* JetStream store directory ("" without) */
} ch_server;

/* Starts nats-server (with JetStream if js) on a free port; false if it
 * did not report ready within the deadline. */
bool ch_server_start(ch_server *s, bool js);
/* As ch_server_start, requiring this user and password of clients. */
bool ch_server_start_auth(ch_server *s, const char *user,
                          const char *password);
/* Starts three servers that form one NATS cluster (routes between them);
 * false if one did not report ready. */
bool ch_servers3_start(ch_server s[3]);
/* Starts it again on the same port (after ch_server_kill). */
bool ch_server_restart(ch_server *s);
/* SIGKILL and reap. */
void ch_server_kill(ch_server *s);
/* SIGTERM, reap, remove the store. */
void ch_server_stop(ch_server *s);

/* Starts `isola node --cluster url --node name` plus extra arguments
 * (NULL-terminated list, may be NULL); returns its pid once it printed
 * that it joined, or -1. */
pid_t ch_node_start(const char *url, const char *name, const char **extra);
/* Sends sig and reaps; returns the wait status. */
int ch_node_stop(pid_t pid, int sig);

#endif
