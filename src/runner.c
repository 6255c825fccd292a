/* SPDX-License-Identifier: MIT */
/*
 * runner.c — the `isola` command: runs a module as the root isolate of a
 * fresh VM, as `dart run` runs a script.
 *
 *   isola run [options] module.so [args...]
 *   isola --help | --version
 *
 * The module's isola_main(args, message) gets args as a list of strings
 * (an argument that is not valid UTF-8 as bytes, as the OS gave it) and a
 * null message; it runs on the main thread, which handles the root
 * isolate's messages until it has no live ports.  Then the VM shuts down
 * (ending any isolate still running) and the process exits with the
 * group's exit code (isola_set_exit_code(), 0 if unset).
 *
 * Exit codes, following the dart command where it has one:
 *   the module's exit code   the root isolate ended normally
 *   255                      the root isolate died of an uncaught error
 *                            (message and stack trace on stderr)
 *   254                      the module could not be loaded or started
 *   64                       bad command line (sysexits' EX_USAGE)
 *   130 / 143                SIGINT / SIGTERM: every isolate was killed
 *                            (exit listeners told) and the VM shut down
 *
 * This is a program, not the library: it prints, and it exits.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "isola.h"
#ifdef ISOLA_HAVE_CLUSTER
#include "isola_cluster.h"
#endif
#ifdef ISOLA_HAVE_OBSERVE
#include "isola_observe.h"
#endif
#ifdef ISOLA_HAVE_SYMBOLIZE
#include "isola_symbolize.h"
#endif

enum {
  EXIT_USAGE = 64,
  EXIT_LOAD = 254,
  EXIT_UNCAUGHT = 255,
};

static const char usage[] =
    "usage: isola run [options] module.so [args...]\n"
#ifdef ISOLA_HAVE_CLUSTER
    "       isola node --cluster URLS --node NAME [cluster options]\n"
#endif
    "       isola --help\n"
    "       isola --version\n"
    "\n"
    "Runs the module's isola_main(args, message) as the root isolate of a\n"
    "new VM on the main thread (args: the strings after module.so, each\n"
    "that is not valid UTF-8 as bytes; message: null) until the root\n"
    "isolate has no live ports, then exits with the\n"
    "exit code the module set with isola_set_exit_code() (0 if none).\n"
    "module.so is a file path: a name without a slash is taken in the\n"
    "current directory, not searched for.\n"
    "\n"
    "options:\n"
    "  --threads N               worker threads, 1 to 1024 (default: one\n"
    "                            per core)\n"
    "  --heap-limit SIZE         each isolate's heap limit (isola_alloc), in\n"
    "                            bytes or with a k, m or g suffix (powers of\n"
    "                            1024); 0: none (the default)\n"
    "  --trace-isolates          print a line as each isolate starts and "
    "ends\n"
    "  --pause-isolates-on-start every isolate starts paused until resumed\n"
    "                            with its pause capability (by its spawner,\n"
    "                            or by the runner: once the root isolate is\n"
    "                            paused the run says so on stderr, and each\n"
    "                            SIGUSR2, kill -USR2 PID, resumes every\n"
    "                            isolate paused at that moment)\n"
    "  --pause-isolates-on-exit  every isolate pauses before it ends until\n"
    "                            resumed\n"
    "  --trace-file FILE         write scheduling and message events to FILE\n"
    "                            as Chrome trace-event JSON (Perfetto,\n"
    "                            chrome://tracing) when the run ends\n"
    "  --isolate-stats           count per-isolate figures (queues, time\n"
    "                            running) for snapshots and --observe\n"
    "  --shutdown-grace MS       how long the end of the run waits for\n"
    "                            isolates to end (default 5000)\n"
#ifdef ISOLA_HAVE_OBSERVE
    "  --observe ADDR:PORT       serve a live view of the VM over HTTP (a\n"
    "                            page, JSON, Prometheus /metrics) on ADDR,\n"
    "                            e.g. 127.0.0.1:8080 (port 0: any free one;\n"
    "                            the URL goes to stderr); turns on\n"
    "                            --isolate-stats.  Anything but a loopback\n"
    "                            address shows the VM to the network\n"
    "  --observe-control         let the page kill and pause isolates\n"
#endif
#ifdef ISOLA_HAVE_CLUSTER
    "\n"
    "cluster options (docs/cluster.md), for run and node:\n"
    "  --cluster URLS            join the cluster at these NATS servers\n"
    "                            (comma-separated, nats://host:port)\n"
    "  --node NAME               this node's name (letters, digits, - and _)\n"
    "  --nats-user USER, --nats-password PASSWORD, --nats-token TOKEN,\n"
    "  --nats-creds FILE, --nats-nkey PUBKEY --nats-nkey-seed FILE\n"
    "                            NATS authentication ($ISOLA_NATS_PASSWORD\n"
    "                            and $ISOLA_NATS_TOKEN are read too)\n"
    "  --tls-ca FILE, --tls-cert FILE, --tls-key FILE\n"
    "                            TLS to the servers (--tls-ca alone turns\n"
    "                            it on)\n"
    "  --heartbeat-ms N, --node-timeout-ms N\n"
    "                            failure detection (defaults 250, 3000)\n"
    "  --serve-spawns            (run) serve remote spawns as a node does\n"
    "\n"
    "isola node joins the cluster and serves remote spawns (modules loaded\n"
    "from this machine) until SIGINT or SIGTERM.\n"
#endif
    "\n"
    "SIGINT and SIGTERM end the run: every isolate is killed (exit\n"
    "listeners are told), the VM shuts down, and the exit status is 130 or\n"
    "143; isolates that do not end within the grace are listed.  With\n"
    "--pause-isolates-on-start, SIGUSR2 resumes every isolate paused now.\n"
    "\n"
    "exit status: the module's exit code; 255 if the root isolate died of\n"
    "an uncaught error (message and stack trace on stderr); 254 if the\n"
    "module could not be loaded; 64 for a bad command line.\n";

/* Set by the unhandled-error hook when the root isolate raised an error
 * nobody listened to; read after isola_run_main_uri() returned.  The hook
 * runs on the root's thread, which is this one, so relaxed is enough. */
static atomic_bool root_failed;

/* Every uncaught error without an error listener comes here, on the
 * failing isolate's thread.  The root isolate is the one whose origin is
 * itself: every other isolate of the run descends from it. */
static void on_uncaught(void *data, const isola_isolate_info *info,
                        const char *message, const char *stack) {
  (void)data;
  fprintf(stderr, "isola: uncaught error in isolate '%s': %s\n", info->name,
          message);
  if (stack && *stack) fprintf(stderr, "stack trace:\n%s", stack);
  if (stack && *stack && stack[strlen(stack) - 1] != '\n') fputc('\n', stderr);
  if (info->origin == info->control_port)
    atomic_store_explicit(&root_failed, true, memory_order_relaxed);
}

/* ---- shutdown on SIGINT / SIGTERM --------------------------------------- */

/* Signals are blocked in every thread and taken by one thread of ours with
 * sigwait(): a handler could call nothing of the runtime.  Whoever starts
 * the VM's shutdown first (that thread on a signal, or main when the root
 * isolate has ended) owns it; the other leaves it alone. */
static pthread_mutex_t end_lock = PTHREAD_MUTEX_INITIALIZER;
static bool end_claimed;
static sigset_t end_signals;

/* Names what is still alive after a shutdown that timed out: the runtime's
 * report, then a line per isolate from a snapshot. */
static void print_stuck(const isola_shutdown_report *r) {
  fprintf(stderr, "isola: %zu isolate(s) did not end:\n%s\n", r->stuck,
          r->text);
  isola_snapshot *s;
  if (isola_vm_snapshot(0, &s) != ISOLA_OK) return;
  for (size_t i = 0; i < s->nisolates; i++) {
    const isola_isolate_snapshot *o = &s->isolates[i];
    fprintf(stderr, "isola: stuck: '%s' (%016" PRIx64 ") %s", o->name, o->id,
            isola_isolate_state_name((int)o->state));
    if (o->running_since_ns && o->running_since_ns <= s->now_ns)
      fprintf(stderr, " for %.1f ms",
              (double)(s->now_ns - o->running_since_ns) / 1e6);
    if (o->worker >= 0) fprintf(stderr, " on worker %d", o->worker);
    if (s->isolate_stats)
      fprintf(stderr, ", %" PRIu64 " queued, %" PRIu64 " handled", o->queued,
              o->handled);
    fprintf(stderr, ", %u live port(s)\n", o->live_ports);
  }
  isola_snapshot_free(s);
}

static void *signal_thread(void *arg) {
  (void)arg;
  int sig;
  while (sigwait(&end_signals, &sig) != 0) {
  }
  pthread_mutex_lock(&end_lock);
  bool mine = !end_claimed;
  end_claimed = true;
  pthread_mutex_unlock(&end_lock);
  if (!mine) return NULL; /* the run is ending anyway */
  fprintf(stderr, "isola: %s: ending every isolate\n",
          sig == SIGINT ? "SIGINT" : "SIGTERM");
#ifdef ISOLA_HAVE_CLUSTER
  /* The others take this node as gone at once, not after a timeout. */
  if (isola_cluster_node()) isola_cluster_leave();
#endif
  isola_shutdown_report report;
  if (isola_vm_shutdown(&report) == ISOLA_ETIMEDOUT) print_stuck(&report);
  fflush(stdout);
  fflush(stderr);
  /* The root isolate was killed too; main may still be returning from it,
   * so the process ends here, with the shell's code for the signal. */
  _exit(128 + sig);
}

/* ---- --pause-isolates-on-start: SIGUSR2 resumes -------------------------- */

/* Every isolate starts paused under its pause capability.  The root isolate
 * has no spawner to resume it, so the runner does: each SIGUSR2 (taken by
 * resume_thread with sigwait, as the end signals are) resumes every isolate
 * paused at that moment, with the capabilities a snapshot gives, as the
 * --observe page's resume button does one isolate.  An isolate spawned
 * later starts paused again, for its spawner or the next SIGUSR2. */
static sigset_t resume_signals;
static atomic_bool run_over; /* isola_run_main_uri has returned */

/* Whether the root isolate exists: the isolate named "main" that descends
 * from itself (every other isolate of the run descends from it). */
static bool root_started(void) {
  isola_snapshot *s;
  if (isola_vm_snapshot(0, &s) != ISOLA_OK) return false;
  bool found = false;
  for (size_t i = 0; i < s->nisolates && !found; i++)
    found = s->isolates[i].origin == s->isolates[i].id &&
            strcmp(s->isolates[i].name, "main") == 0;
  isola_snapshot_free(s);
  return found;
}

/* Resumes every isolate under its pause capability (one that is not
 * paused by it ignores the request); returns how many were asked. */
static size_t resume_all(void) {
  isola_snapshot *s;
  if (isola_vm_snapshot(ISOLA_SNAPSHOT_CAPABILITIES, &s) != ISOLA_OK)
    return 0;
  size_t n = 0;
  for (size_t i = 0; i < s->nisolates; i++) {
    const isola_isolate_snapshot *o = &s->isolates[i];
    isola_isolate h = {o->id, o->pause_capability, o->terminate_capability};
    n += isola_resume(&h, 0) == ISOLA_OK;
  }
  isola_snapshot_free(s);
  return n;
}

static void *resume_thread(void *arg) {
  bool observe_control = *(bool *)arg;
  /* The root is created by isola_run_main_uri on the main thread; the
   * instruction is printed once it exists (and is paused), so that a
   * resume sent on reading it finds it.  A SIGUSR2 that comes earlier
   * stays pending until the sigwait below. */
  while (!root_started()) {
    if (atomic_load_explicit(&run_over, memory_order_acquire)) return NULL;
    nanosleep(&(struct timespec){0, 1000000}, NULL);
  }
  fprintf(stderr,
          "isola: --pause-isolates-on-start: every isolate waits before "
          "its entry until it is resumed with its pause capability; the "
          "root isolate 'main' is paused now.  To resume every isolate "
          "paused: kill -USR2 %ld (isolates spawned later start paused "
          "too: send it again for them)%s.\n",
          (long)getpid(),
          observe_control ? ", or resume each from the --observe page" : "");
  for (;;) {
    int sig;
    if (sigwait(&resume_signals, &sig) != 0) continue;
    size_t n = resume_all();
    fprintf(stderr, "isola: SIGUSR2: resume sent to every isolate (%zu)\n",
            n);
  }
  return NULL;
}

static int bad_usage(const char *fmt, const char *arg) {
  fputs("isola: ", stderr);
  fprintf(stderr, fmt, arg);
  fputs("\n(isola --help for usage)\n", stderr);
  return EXIT_USAGE;
}

/* Whether s is valid UTF-8 as isola strings must be (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF). */
static bool valid_utf8(const unsigned char *s) {
  while (*s) {
    unsigned c = *s++;
    if (c < 0x80) continue;
    int more;
    unsigned min, cp;
    if (c >= 0xc2 && c <= 0xdf) more = 1, min = 0x80, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef) more = 2, min = 0x800, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4) more = 3, min = 0x10000, cp = c & 0x07;
    else return false;
    for (int k = 0; k < more; k++, s++) {
      if ((*s & 0xc0) != 0x80) return false;
      cp = cp << 6 | (*s & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
  }
  return true;
}

/* "4096", "64k", "16M", "1g": bytes, suffixes in powers of 1024. */
static bool parse_size(const char *s, size_t *out) {
  char *end;
  errno = 0;
  if (*s < '0' || *s > '9') return false;
  unsigned long long n = strtoull(s, &end, 10);
  if (errno) return false;
  unsigned shift = 0;
  switch (*end) {
  case '\0': break;
  case 'k': case 'K': shift = 10; end++; break;
  case 'm': case 'M': shift = 20; end++; break;
  case 'g': case 'G': shift = 30; end++; break;
  default: return false;
  }
  if (*end || n > (SIZE_MAX >> shift)) return false;
  *out = (size_t)n << shift;
  return true;
}

/* "127.0.0.1:8080", "[::1]:0": address and port. */
static bool parse_hostport(char *s, const char **addr, uint16_t *port) {
  char *colon = strrchr(s, ':');
  if (!colon || colon == s) return false;
  *colon = '\0';
  char *end;
  errno = 0;
  unsigned long p = strtoul(colon + 1, &end, 10);
  if (errno || *end || end == colon + 1 || p > 65535) return false;
  if (*s == '[') {
    size_t n = strlen(s);
    if (n < 3 || s[n - 1] != ']') return false;
    s[n - 1] = '\0';
    s++;
  }
  *addr = s;
  *port = (uint16_t)p;
  return true;
}

#ifdef ISOLA_HAVE_CLUSTER
/* A cluster option at argv[*i]: 1 taken (and *i moved past its value), 0
 * not a cluster option, -1 a usage error (reported). */
static int cluster_option(int argc, char **argv, int *i,
                          isola_cluster_config *cc) {
  static const struct {
    const char *name;
    size_t off;
  } strs[] = {
      {"--cluster", offsetof(isola_cluster_config, servers)},
      {"--node", offsetof(isola_cluster_config, node)},
      {"--nats-user", offsetof(isola_cluster_config, user)},
      {"--nats-password", offsetof(isola_cluster_config, password)},
      {"--nats-token", offsetof(isola_cluster_config, token)},
      {"--nats-creds", offsetof(isola_cluster_config, credentials_file)},
      {"--nats-nkey", offsetof(isola_cluster_config, nkey_public)},
      {"--nats-nkey-seed", offsetof(isola_cluster_config, nkey_seed_file)},
      {"--tls-ca", offsetof(isola_cluster_config, tls_ca_file)},
      {"--tls-cert", offsetof(isola_cluster_config, tls_cert_file)},
      {"--tls-key", offsetof(isola_cluster_config, tls_key_file)},
  };
  const char *a = argv[*i];
  for (size_t k = 0; k < sizeof strs / sizeof *strs; k++) {
    if (strcmp(a, strs[k].name) != 0) continue;
    if (++*i == argc) {
      bad_usage("%s needs a value", a);
      return -1;
    }
    *(const char **)((char *)cc + strs[k].off) = argv[*i];
    if (strncmp(a, "--tls", 5) == 0) cc->tls = true;
    return 1;
  }
  if (strcmp(a, "--heartbeat-ms") == 0 ||
      strcmp(a, "--node-timeout-ms") == 0) {
    if (++*i == argc) {
      bad_usage("%s needs a number", a);
      return -1;
    }
    char *end;
    errno = 0;
    unsigned long n = strtoul(argv[*i], &end, 10);
    if (errno || *end || end == argv[*i] || n == 0 || n > 3600000) {
      bad_usage("'%s' is not a number of milliseconds", argv[*i]);
      return -1;
    }
    if (a[2] == 'h')
      cc->heartbeat_ms = (unsigned)n;
    else
      cc->node_timeout_ms = (unsigned)n;
    return 1;
  }
  if (strcmp(a, "--serve-spawns") == 0) {
    cc->allow_spawn = true;
    return 1;
  }
  return 0;
}

static int join(isola_cluster_config *cc) {
  if (!cc->servers && !cc->node) return ISOLA_OK;
  /* Secrets may come from the environment (kept off the command line,
   * as process spawns pass them). */
  if (!cc->password) cc->password = getenv("ISOLA_NATS_PASSWORD");
  if (!cc->token) cc->token = getenv("ISOLA_NATS_TOKEN");
  if (!cc->servers || !cc->node) {
    fputs("isola: --cluster and --node go together\n", stderr);
    return ISOLA_EINVAL;
  }
  int rc = isola_cluster_join(cc);
  if (rc != ISOLA_OK)
    fprintf(stderr, "isola: cannot join the cluster at %s as %s: %s%s%s\n",
            cc->servers, cc->node, isola_strerror(rc),
            *isola_cluster_error() ? ": " : "", isola_cluster_error());
  return rc;
}

/* isola node: a VM that only serves remote spawns, until a signal. */
static int node(int argc, char **argv) {
  isola_cluster_config cc;
  isola_cluster_config_init(&cc);
  cc.allow_spawn = true;
  isola_config cfg;
  isola_config_init(&cfg);
  for (int i = 0; i < argc; i++) {
    int r = cluster_option(argc, argv, &i, &cc);
    if (r < 0) return EXIT_USAGE;
    if (r == 0) return bad_usage("node: unknown option '%s'", argv[i]);
  }
  if (!cc.servers || !cc.node)
    return bad_usage("%s", "node: --cluster and --node are required");
  /* The signals are taken by sigwait below, in every thread. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  cfg.unhandled_error = on_uncaught;
  int rc = isola_vm_init(&cfg);
  if (rc != ISOLA_OK) {
    fprintf(stderr, "isola: cannot start the VM: %s\n", isola_strerror(rc));
    return EXIT_LOAD;
  }
  if (join(&cc) != ISOLA_OK) {
    isola_vm_shutdown(NULL);
    return EXIT_LOAD;
  }
  /* Scripts and tests wait for this line. */
  printf("isola: node %s joined the cluster\n", cc.node);
  fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  isola_cluster_leave();
  isola_vm_shutdown(NULL);
  return 0;
}
#endif

static int run(int argc, char **argv) {
  isola_config cfg;
  isola_config_init(&cfg);
#ifdef ISOLA_HAVE_CLUSTER
  isola_cluster_config cc;
  isola_cluster_config_init(&cc);
#endif
  const char *observe_addr = NULL;
  uint16_t observe_port = 0;
  bool observe_control = false;
  int i = 0;
  for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
    const char *a = argv[i];
#ifdef ISOLA_HAVE_CLUSTER
    int r = cluster_option(argc, argv, &i, &cc);
    if (r < 0) return EXIT_USAGE;
    if (r > 0) continue;
#endif
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    } else if (strcmp(a, "--threads") == 0) {
      if (++i == argc) return bad_usage("%s needs a number", a);
      char *end;
      errno = 0;
      unsigned long n = strtoul(argv[i], &end, 10);
      /* The VM's own bound (isola_config.workers). */
      if (errno || *end || end == argv[i] || n == 0 || n > 1024)
        return bad_usage("--threads: '%s' is not a number from 1 to 1024",
                         argv[i]);
      cfg.workers = (unsigned)n;
    } else if (strcmp(a, "--heap-limit") == 0) {
      if (++i == argc) return bad_usage("%s needs a size", a);
      if (!parse_size(argv[i], &cfg.heap_limit))
        return bad_usage("--heap-limit: '%s' is not a size (e.g. 64M)",
                         argv[i]);
    } else if (strcmp(a, "--trace-isolates") == 0) {
      cfg.trace |= ISOLA_TRACE_ISOLATES;
    } else if (strcmp(a, "--pause-isolates-on-start") == 0) {
      cfg.pause_on_start = true;
    } else if (strcmp(a, "--pause-isolates-on-exit") == 0) {
      cfg.pause_on_exit = true;
    } else if (strcmp(a, "--trace-file") == 0) {
      if (++i == argc) return bad_usage("%s needs a file", a);
      cfg.trace_events_path = argv[i];
    } else if (strcmp(a, "--isolate-stats") == 0) {
      cfg.isolate_stats = true;
    } else if (strcmp(a, "--shutdown-grace") == 0) {
      if (++i == argc) return bad_usage("%s needs milliseconds", a);
      char *end;
      errno = 0;
      unsigned long n = strtoul(argv[i], &end, 10);
      if (errno || *end || end == argv[i] || n == 0 || n > 3600000)
        return bad_usage("--shutdown-grace: '%s' is not a number of ms "
                         "from 1 to 3600000", argv[i]);
      cfg.shutdown_grace_ms = (unsigned)n;
#ifdef ISOLA_HAVE_OBSERVE
    } else if (strcmp(a, "--observe") == 0) {
      if (++i == argc) return bad_usage("%s needs ADDR:PORT", a);
      /* A copy: parsing cuts it, and ps should show the argument whole. */
      static char hostport[300];
      snprintf(hostport, sizeof hostport, "%s", argv[i]);
      if (!parse_hostport(hostport, &observe_addr, &observe_port))
        return bad_usage("--observe: '%s' is not ADDR:PORT", argv[i]);
      cfg.isolate_stats = true;
    } else if (strcmp(a, "--observe-control") == 0) {
      observe_control = true;
#endif
    } else {
      return bad_usage("unknown option '%s'", a);
    }
  }
  if (i == argc) return bad_usage("%s", "run: no module given");
  /* A file, as `dart run file` takes one: dlopen() would search the
   * library path for a name without a slash. */
  char local[4096];
  const char *path = argv[i++];
  if (!strchr(path, '/')) {
    if ((size_t)snprintf(local, sizeof local, "./%s", path) >= sizeof local)
      return bad_usage("module path too long: %s", path);
    path = local;
  }

  int nargs = argc - i;
  isola_value *items = calloc(nargs ? (size_t)nargs : 1, sizeof *items);
  if (!items) {
    fputs("isola: out of memory\n", stderr);
    return EXIT_LOAD;
  }
  /* A file name or other argument need not be UTF-8: such a one goes to
   * the module as the bytes the OS gave, not refused. */
  for (int k = 0; k < nargs; k++) {
    const char *a = argv[i + k];
    items[k] = valid_utf8((const unsigned char *)a)
                   ? isola_str(a)
                   : isola_bytes(a, strlen(a));
  }

  cfg.unhandled_error = on_uncaught;
#ifdef ISOLA_HAVE_SYMBOLIZE
  /* Function names and file:line in the stack traces it prints. */
  cfg.stack_symbolizer = isola_symbolize;
#endif
  /* Before any thread starts, so that every thread inherits the mask and
   * only signal_thread takes these two. */
  sigemptyset(&end_signals);
  sigaddset(&end_signals, SIGINT);
  sigaddset(&end_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &end_signals, NULL);
  /* SIGUSR2 keeps its default action (the end of the process) unless the
   * run pauses on start. */
  sigemptyset(&resume_signals);
  if (cfg.pause_on_start) sigaddset(&resume_signals, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &resume_signals, NULL);
  pthread_t sig_thread;
  if (pthread_create(&sig_thread, NULL, signal_thread, NULL) != 0) {
    fputs("isola: cannot start the signal thread\n", stderr);
    free(items);
    return EXIT_LOAD;
  }
  pthread_detach(sig_thread);
#ifdef ISOLA_HAVE_OBSERVE
  isola_observe *observer = NULL;
  if (observe_addr) {
    isola_observe_options oo;
    isola_observe_options_init(&oo);
    oo.address = observe_addr;
    oo.port = observe_port;
    oo.allow_control = observe_control;
    int orc = isola_observe_start(&oo, &observer);
    if (orc != ISOLA_OK) {
      fprintf(stderr, "isola: --observe %s:%u: %s\n", observe_addr,
              (unsigned)observe_port, isola_strerror(orc));
      free(items);
      return EXIT_USAGE;
    }
    fprintf(stderr, "isola: observe on http://%s%s%s:%u/\n",
            strchr(observe_addr, ':') ? "[" : "", observe_addr,
            strchr(observe_addr, ':') ? "]" : "",
            (unsigned)isola_observe_port(observer));
  }
#else
  (void)observe_addr;
  (void)observe_port;
  (void)observe_control;
  (void)parse_hostport;
#endif
  int rc = isola_vm_init(&cfg);
  if (rc != ISOLA_OK) {
    fprintf(stderr, "isola: cannot start the VM: %s\n", isola_strerror(rc));
    free(items);
    return EXIT_LOAD;
  }
#ifdef ISOLA_HAVE_CLUSTER
  if (join(&cc) != ISOLA_OK) {
    free(items);
    isola_vm_shutdown(NULL);
    return EXIT_LOAD;
  }
#endif
  if (cfg.pause_on_start) {
    pthread_t resumer;
    if (pthread_create(&resumer, NULL, resume_thread, &observe_control) !=
        0) {
      fputs("isola: cannot start the resume thread\n", stderr);
      free(items);
      isola_vm_shutdown(NULL);
      return EXIT_LOAD;
    }
    pthread_detach(resumer);
  }
  int code = 0;
  rc = isola_run_main_uri(path, isola_list(items, (size_t)nargs),
                          isola_null(), "main", &code);
  atomic_store_explicit(&run_over, true, memory_order_release);
  free(items);
  int status;
  if (rc != ISOLA_OK) {
    const char *why = isola_module_error();
    if (*why)
      fprintf(stderr, "isola: %s: %s\n", isola_strerror(rc), why);
    else
      fprintf(stderr, "isola: cannot run %s: %s\n", path, isola_strerror(rc));
    status = EXIT_LOAD;
  } else if (atomic_load_explicit(&root_failed, memory_order_relaxed)) {
    status = EXIT_UNCAUGHT;
  } else {
    status = code & 0xff; /* what the shell sees of exit(code) */
  }
  pthread_mutex_lock(&end_lock);
  bool mine = !end_claimed;
  end_claimed = true;
  pthread_mutex_unlock(&end_lock);
  if (!mine) {
    /* A signal came first: its thread shuts the VM down and exits. */
    for (;;) pause();
  }
#ifdef ISOLA_HAVE_CLUSTER
  if (cc.servers) isola_cluster_leave(); /* before its gateway is ended */
#endif
  isola_shutdown_report report;
  rc = isola_vm_shutdown(&report);
  if (rc == ISOLA_ETIMEDOUT) {
    /* Isolates stuck in C code: say which, and leave without them. */
    print_stuck(&report);
  }
#ifdef ISOLA_HAVE_OBSERVE
  if (rc == ISOLA_OK) isola_observe_stop(observer);
#endif
  return status;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(usage, stderr);
    return EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
      strcmp(cmd, "help") == 0) {
    fputs(usage, stdout);
    return 0;
  }
  if (strcmp(cmd, "--version") == 0) {
    printf("isola %s (module ABI %u)\n", ISOLA_VERSION_STRING,
           (unsigned)ISOLA_MODULE_ABI);
    return 0;
  }
  if (strcmp(cmd, "run") == 0) return run(argc - 2, argv + 2);
#ifdef ISOLA_HAVE_CLUSTER
  if (strcmp(cmd, "node") == 0) return node(argc - 2, argv + 2);
#endif
  return bad_usage("unknown command '%s'", cmd);
}
