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
  char conf[192];  /* a configuration file (-c), or "" */
} ch_server;

/* Starts nats-server (with JetStream if js) on a free port; false if it
 * did not report ready within the deadline. */
bool ch_server_start(ch_server *s, bool js);
/* As ch_server_start, requiring this user and password of clients. */
bool ch_server_start_auth(ch_server *s, const char *user,
                          const char *password);
/* As ch_server_start (no JetStream), with the configuration file conf
 * (nats-server's format: authorization, tls ...); the address and port
 * still come from the command line. */
bool ch_server_start_conf(ch_server *s, const char *conf);
/* Starts three servers that form one NATS cluster (routes between them);
 * false if one did not report ready. */
bool ch_servers3_start(ch_server s[3]);
/* Starts it again on the same port (after ch_server_kill). */
bool ch_server_restart(ch_server *s);
/* SIGKILL and reap. */
void ch_server_kill(ch_server *s);
/* SIGTERM, reap, remove the store. */
void ch_server_stop(ch_server *s);

/* Writes text to the file path; false on failure. */
bool ch_write_file(const char *path, const char *text);

/* Makes a new, uniquely named directory /tmp/isola-cluster-<what>-...
 * (mkdtemp) and writes its path to dir (cap bytes); false if it could not
 * be made. */
bool ch_make_tmpdir(char *dir, size_t cap, const char *what);

/* Makes, in the directory dir, with openssl: a certificate authority
 * (ca.pem), a server certificate for 127.0.0.1 and localhost signed by it
 * (server.pem, server.key) and a client certificate (client.pem,
 * client.key), EC P-256, valid for a day.  false (and why, on stderr) if
 * openssl failed. */
bool ch_make_tls(const char *dir);
/* Makes an ed25519 key pair with openssl and writes it as a NATS user
 * nkey: the public key ("U...", 56 characters) to pub, and the seed
 * ("SU...") to the file dir/name.seed, whose path goes to seed_path
 * (cap bytes).  false if openssl failed. */
bool ch_make_nkey(const char *dir, const char *name, char pub[57],
                  char *seed_path, size_t cap);

/* Starts `isola node --cluster url --node name` plus extra arguments
 * (NULL-terminated list, may be NULL); returns its pid once it printed
 * that it joined, or -1. */
pid_t ch_node_start(const char *url, const char *name, const char **extra);
/* Sends sig and reaps; returns the wait status. */
int ch_node_stop(pid_t pid, int sig);

#endif
