/* SPDX-License-Identifier: MIT */
/* See cluster_harness.h. */
#include "cluster_harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef NATS_SERVER
#define NATS_SERVER "nats-server"
#endif

#define READY_MS 20000

static int64_t mono_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = -1;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

/* Forks argv with its stdout+stderr (or only one: which_fd) on a pipe;
 * waits until a line containing needle appears.  Returns the pid, or -1
 * (the child is killed). */
static pid_t spawn_wait(char *const argv[], const char *needle) {
  int p[2];
  if (pipe(p) != 0) return -1;
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    close(p[0]);
    close(p[1]);
    return -1;
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(p[1], 1);
    dup2(p[1], 2);
    close(p[0]);
    close(p[1]);
    execvp(argv[0], argv);
    _exit(127);
  }
  close(p[1]);
  char buf[8192];
  size_t have = 0;
  int64_t deadline = mono_ms() + READY_MS;
  bool ok = false;
  while (!ok) {
    int64_t left = deadline - mono_ms();
    if (left <= 0) break;
    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    int r = poll(&pf, 1, (int)left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    if (have == sizeof buf - 1) { /* keep the tail */
      memmove(buf, buf + 4096, have - 4096);
      have -= 4096;
    }
    ssize_t n = read(p[0], buf + have, sizeof buf - 1 - have);
    if (n <= 0) break;
    have += (size_t)n;
    buf[have] = '\0';
    if (strstr(buf, needle)) ok = true;
  }
  if (!ok) {
    fprintf(stderr, "cluster harness: %s did not print '%s':\n%s\n", argv[0],
            needle, buf);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(p[0]);
    return -1;
  }
  /* Keep the child's output flowing (to nowhere) so it never blocks on
   * a full pipe: a reader thread would do; a simpler way is to hand the
   * read end to a grandchild that drains it. */
  pid_t drain = fork();
  if (drain == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    char b[4096];
    while (read(p[0], b, sizeof b) > 0) {
    }
    _exit(0);
  }
  close(p[0]);
  return pid;
}

static bool server_exec(ch_server *s) {
  char port[16], cluster[64];
  snprintf(port, sizeof port, "%d", s->port);
  char *argv[24];
  int n = 0;
  argv[n++] = (char *)NATS_SERVER;
  argv[n++] = (char *)"-a";
  argv[n++] = (char *)"127.0.0.1";
  argv[n++] = (char *)"-p";
  argv[n++] = port;
  if (s->jetstream) {
    argv[n++] = (char *)"-js";
    argv[n++] = (char *)"-sd";
    argv[n++] = s->store;
  }
  if (s->user) {
    argv[n++] = (char *)"--user";
    argv[n++] = (char *)s->user;
    argv[n++] = (char *)"--pass";
    argv[n++] = (char *)s->password;
  }
  if (s->route_port) {
    snprintf(cluster, sizeof cluster, "nats://127.0.0.1:%d", s->route_port);
    argv[n++] = (char *)"--cluster";
    argv[n++] = cluster;
    argv[n++] = (char *)"--cluster_name";
    argv[n++] = (char *)"isola-test";
    argv[n++] = (char *)"--server_name";
    argv[n++] = s->name;
    argv[n++] = (char *)"--routes";
    argv[n++] = s->routes;
  }
  argv[n] = NULL;
  s->pid = spawn_wait(argv, "Server is ready");
  return s->pid > 0;
}

bool ch_server_start(ch_server *s, bool js) {
  memset(s, 0, sizeof *s);
  s->jetstream = js;
  if (js) {
    snprintf(s->store, sizeof s->store, "/tmp/isola-cluster-test-XXXXXX");
    if (!mkdtemp(s->store)) return false;
  }
  for (int attempt = 0; attempt < 3; attempt++) {
    s->port = free_port();
    if (s->port <= 0) continue;
    snprintf(s->url, sizeof s->url, "nats://127.0.0.1:%d", s->port);
    if (server_exec(s)) return true;
  }
  return false;
}

bool ch_server_restart(ch_server *s) { return server_exec(s); }

bool ch_server_start_auth(ch_server *s, const char *user,
                          const char *password) {
  memset(s, 0, sizeof *s);
  s->user = user;
  s->password = password;
  for (int attempt = 0; attempt < 3; attempt++) {
    s->port = free_port();
    if (s->port <= 0) continue;
    snprintf(s->url, sizeof s->url, "nats://127.0.0.1:%d", s->port);
    if (server_exec(s)) return true;
  }
  return false;
}

bool ch_servers3_start(ch_server s[3]) {
  memset(s, 0, 3 * sizeof *s);
  for (int i = 0; i < 3; i++) {
    s[i].port = free_port();
    s[i].route_port = free_port();
    snprintf(s[i].name, sizeof s[i].name, "s%d", i + 1);
    snprintf(s[i].url, sizeof s[i].url, "nats://127.0.0.1:%d", s[i].port);
  }
  for (int i = 0; i < 3; i++)
    snprintf(s[i].routes, sizeof s[i].routes,
             "nats://127.0.0.1:%d,nats://127.0.0.1:%d",
             s[(i + 1) % 3].route_port, s[(i + 2) % 3].route_port);
  for (int i = 0; i < 3; i++)
    if (!server_exec(&s[i])) {
      for (int k = 0; k < i; k++) ch_server_kill(&s[k]);
      return false;
    }
  return true;
}

void ch_server_kill(ch_server *s) {
  if (s->pid > 0) {
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
  }
  s->pid = 0;
}

void ch_server_stop(ch_server *s) {
  if (s->pid > 0) {
    kill(s->pid, SIGTERM);
    waitpid(s->pid, NULL, 0);
  }
  s->pid = 0;
  if (s->store[0]) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->store);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", s->store);
    s->store[0] = '\0';
  }
}

pid_t ch_node_start(const char *url, const char *name, const char **extra) {
  char *argv[32];
  int n = 0;
  argv[n++] = (char *)ISOLA_RUNNER;
  argv[n++] = (char *)"node";
  argv[n++] = (char *)"--cluster";
  argv[n++] = (char *)url;
  argv[n++] = (char *)"--node";
  argv[n++] = (char *)name;
  for (; extra && *extra && n < 31; extra++) argv[n++] = (char *)*extra;
  argv[n] = NULL;
  return spawn_wait(argv, "joined the cluster");
}

int ch_node_stop(pid_t pid, int sig) {
  int status = 0;
  if (pid <= 0) return -1;
  kill(pid, sig);
  waitpid(pid, &status, 0);
  return status;
}
