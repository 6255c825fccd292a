/* SPDX-License-Identifier: MIT */
/* See cluster_harness.h. */
#include "cluster_harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
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
#ifndef OPENSSL
#define OPENSSL "openssl"
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
  if (s->conf[0]) {
    argv[n++] = (char *)"-c";
    argv[n++] = s->conf;
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

/* Starts s (configured) on a free port, trying three ports. */
static bool server_on_free_port(ch_server *s) {
  for (int attempt = 0; attempt < 3; attempt++) {
    s->port = free_port();
    if (s->port <= 0) continue;
    snprintf(s->url, sizeof s->url, "nats://127.0.0.1:%d", s->port);
    if (server_exec(s)) return true;
  }
  return false;
}

bool ch_server_start(ch_server *s, bool js) {
  memset(s, 0, sizeof *s);
  s->jetstream = js;
  if (js && !ch_make_tmpdir(s->store, sizeof s->store, "test")) return false;
  return server_on_free_port(s);
}

bool ch_server_restart(ch_server *s) { return server_exec(s); }

bool ch_server_start_auth(ch_server *s, const char *user,
                          const char *password) {
  memset(s, 0, sizeof *s);
  s->user = user;
  s->password = password;
  return server_on_free_port(s);
}

bool ch_server_start_conf(ch_server *s, const char *conf) {
  memset(s, 0, sizeof *s);
  snprintf(s->conf, sizeof s->conf, "%s", conf);
  return server_on_free_port(s);
}

bool ch_make_tmpdir(char *dir, size_t cap, const char *what) {
  /* mkdtemp() replaces the template's six X's with a unique name. */
  int n = snprintf(dir, cap, "/tmp/isola-cluster-%s-XXXXXX", what);
  return n > 0 && (size_t)n < cap && mkdtemp(dir) != NULL;
}

bool ch_write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) return false;
  bool ok = fputs(text, f) >= 0;
  return fclose(f) == 0 && ok;
}

/* Runs a shell command (openssl's steps); false if it failed. */
static bool run(const char *cmd) {
  int st = system(cmd);
  if (st != 0) fprintf(stderr, "cluster harness: failed (%d): %s\n", st, cmd);
  return st == 0;
}

bool ch_make_tls(const char *dir) {
  char cmd[2048];
  char ext[256];
  snprintf(ext, sizeof ext, "%s/server.ext", dir);
  if (!ch_write_file(ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                          "extendedKeyUsage=serverAuth\n"))
    return false;
  snprintf(ext, sizeof ext, "%s/client.ext", dir);
  if (!ch_write_file(ext, "extendedKeyUsage=clientAuth\n")) return false;
  /* -batch and -subj: nothing is asked; 2>&1 >/dev/null: quiet unless
   * it fails (run() says so). */
  snprintf(cmd, sizeof cmd,
           "cd '%s' && exec >/dev/null 2>&1 && "
           OPENSSL " req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
           "-nodes -keyout ca.key -out ca.pem -days 1 -batch "
           "-subj /CN=isola-test-ca "
           "-addext basicConstraints=critical,CA:TRUE "
           "-addext keyUsage=critical,keyCertSign,cRLSign && "
           "for who in server client; do "
           OPENSSL " req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
           "-keyout $who.key -out $who.csr -batch -subj /CN=isola-test-$who "
           "&& " OPENSSL " x509 -req -in $who.csr -CA ca.pem -CAkey ca.key "
           "-CAcreateserial -out $who.pem -days 1 -extfile $who.ext "
           "|| exit 1; done",
           dir);
  return run(cmd);
}

/* RFC 4648 base32 without padding, as nkeys are written. */
static void base32(const uint8_t *in, size_t n, char *out) {
  static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    acc = (acc << 8) | in[i];
    bits += 8;
    while (bits >= 5) {
      *out++ = abc[(acc >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) *out++ = abc[(acc << (5 - bits)) & 31];
  *out = '\0';
}

/* CRC-16/XMODEM (polynomial 0x1021, initial 0), which nkeys append. */
static uint16_t crc16(const uint8_t *p, size_t n) {
  uint16_t c = 0;
  for (size_t i = 0; i < n; i++) {
    c ^= (uint16_t)(p[i] << 8);
    for (int k = 0; k < 8; k++)
      c = (uint16_t)((c & 0x8000) ? (c << 1) ^ 0x1021 : c << 1);
  }
  return c;
}

/* The last 32 bytes of a DER file (the raw key of an ed25519 PKCS#8
 * private key or SubjectPublicKeyInfo). */
static bool der_tail32(const char *path, uint8_t out[32]) {
  uint8_t buf[128];
  FILE *f = fopen(path, "rb");
  if (!f) return false;
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  if (n < 32 || n >= sizeof buf) return false;
  memcpy(out, buf + n - 32, 32);
  return true;
}

bool ch_make_nkey(const char *dir, const char *name, char pub[57],
                  char *seed_path, size_t cap) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "cd '%s' && exec >/dev/null 2>&1 && "
           OPENSSL " genpkey -algorithm ed25519 -outform DER -out %s.der && "
           OPENSSL " pkey -inform DER -in %s.der -pubout -outform DER "
           "-out %s.pub.der",
           dir, name, name, name);
  if (!run(cmd)) return false;
  uint8_t seed[32], key[32];
  char path[256];
  snprintf(path, sizeof path, "%s/%s.der", dir, name);
  if (!der_tail32(path, seed)) return false;
  snprintf(path, sizeof path, "%s/%s.pub.der", dir, name);
  if (!der_tail32(path, key)) return false;
  /* A user public key: the prefix byte 'U' (20 << 3), the key, the CRC
   * (little-endian).  A seed: the seed prefix (18 << 3) and the user
   * prefix packed in two bytes, the seed, the CRC. */
  uint8_t raw[36];
  raw[0] = 20 << 3;
  memcpy(raw + 1, key, 32);
  uint16_t c = crc16(raw, 33);
  raw[33] = (uint8_t)(c & 0xff);
  raw[34] = (uint8_t)(c >> 8);
  base32(raw, 35, pub);
  raw[0] = (uint8_t)((18 << 3) | ((20 << 3) >> 5));
  raw[1] = (uint8_t)(((20 << 3) & 31) << 3);
  memcpy(raw + 2, seed, 32);
  c = crc16(raw, 34);
  raw[34] = (uint8_t)(c & 0xff);
  raw[35] = (uint8_t)(c >> 8);
  char enc[64];
  base32(raw, 36, enc);
  snprintf(seed_path, cap, "%s/%s.seed", dir, name);
  char line[80];
  snprintf(line, sizeof line, "%s\n", enc);
  return ch_write_file(seed_path, line);
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
