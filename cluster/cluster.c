/* SPDX-License-Identifier: MIT */
/*
 * cluster.c — isolates across processes on NATS (isola_cluster.h,
 * docs/cluster.md).
 *
 * Built on the public API only.  A joined node runs one hidden isolate,
 * the *gateway*, which owns everything that changes: the proxies (its own
 * receive ports, one per remote port met), the exit relays, the peer
 * table and the pending requests.  NATS callback threads only copy what
 * arrives into a message to the gateway; API callers on other threads
 * send it requests.  So the gateway's state needs no lock, except the few
 * tables other threads read (which proxy stands for which remote port),
 * kept under g.mu.
 *
 * Subjects: isola.n.<to>.<from> carries every envelope from node <from> to
 * node <to>, on one connection each way, so NATS keeps their order;
 * isola.hb.<node> carries heartbeats.
 *
 * An envelope on the wire is the CBOR of [E, table, incarnation]: E is a
 * list [type, ...] whose port values are the sender's own ids; table
 * lists, for each, [sender id, home node, home id, secret].  The receiver
 * decodes with limits, maps each entry to a port of its own (the home
 * port itself when it is home, after checking the secret it handed out;
 * else a proxy), rewrites E's ports in place, and acts on E.
 */
#include "isola_cluster.h"

#include <nats/nats.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- envelope types ---------------------------------------------------- */

enum {
  T_MSG = 1,      /* [1, dest, reply|null, payload] */
  T_CLOSED = 2,   /* [2, int id]: the receiver's proxy for my id is dead */
  T_CTL = 3,      /* [3, kind, ctl, cap, cap2, port|null, response, prio] */
  T_EXIT_ADD = 4, /* [4, ctl, relay] */
  T_EXIT_DEL = 5, /* [5, ctl, relay] */
  T_SPAWN = 6,    /* [6, req, path, args, message, name|null, relay|null,
                      on_error|null, paused, nonfatal, heap_limit,
                      error_notice] */
  T_REPLY = 7,    /* [7, req, rc, error text, ctl|null, pcap, tcap] */
  T_NAMECHK = 8,  /* [8, req, name, id]: is name still registered to id? */
};

enum {
  K_PAUSE = 1,
  K_RESUME,
  K_KILL,
  K_PING,
  K_FATAL,
  K_ERR_ADD,
  K_ERR_DEL,
  K_ERRN_ADD /* an error notice listener */
};

/* Requests from API callers to the gateway (its api port). */
enum {
  OP_CTL = 1,  /* [op, kind, ctl, cap, cap2, port|null, response, prio] */
  OP_EXIT_ADD, /* [op, ctl, listener, response, notice] */
  OP_EXIT_DEL, /* [op, ctl, listener] */
  OP_SPAWN,    /* [op, waiter, node, path, args, message, name|null,
                   on_exit|null, on_exit_message, on_error|null, paused,
                   nonfatal, heap_limit, exit_notice, pid,
                   error_notice] */
  OP_LEAVE,    /* [op, waiter] */
  OP_NAME,     /* [op, waiter, node, incarnation, id, secret, name] */
  OP_WAIT_PEER, /* [op, waiter, node]: done when node is first heard */
  OP_PROC_DEAD, /* [op, node, detail]: a process spawn's process ended */
};

/* ---- small tables ------------------------------------------------------ */

/* Open addressing, linear probing, key 0 never used (no port id is 0). */
typedef struct u64map {
  uint64_t *keys, *vals;
  size_t cap, n;
} u64map;

static size_t mix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  return (size_t)k;
}

static bool map_get(const u64map *m, uint64_t k, uint64_t *v) {
  if (!m->cap) return false;
  for (size_t i = mix64(k) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    if (m->keys[i] == k) {
      if (v) *v = m->vals[i];
      return true;
    }
    if (m->keys[i] == 0) return false;
  }
}

static int map_put(u64map *m, uint64_t k, uint64_t v) {
  if ((m->n + 1) * 2 > m->cap) {
    size_t cap = m->cap ? m->cap * 2 : 16;
    uint64_t *keys = calloc(cap, sizeof *keys), *vals = calloc(cap, 8);
    if (!keys || !vals) {
      free(keys);
      free(vals);
      return ISOLA_ENOMEM;
    }
    for (size_t i = 0; i < m->cap; i++) {
      if (!m->keys[i]) continue;
      size_t j = mix64(m->keys[i]) & (cap - 1);
      while (keys[j]) j = (j + 1) & (cap - 1);
      keys[j] = m->keys[i];
      vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
  }
  size_t i = mix64(k) & (m->cap - 1);
  while (m->keys[i] && m->keys[i] != k) i = (i + 1) & (m->cap - 1);
  if (!m->keys[i]) m->n++;
  m->keys[i] = k;
  m->vals[i] = v;
  return ISOLA_OK;
}

static void map_del(u64map *m, uint64_t k) {
  if (!m->cap) return;
  size_t mask = m->cap - 1, i = mix64(k) & mask;
  while (m->keys[i] != k) {
    if (!m->keys[i]) return;
    i = (i + 1) & mask;
  }
  m->keys[i] = 0;
  m->n--;
  /* Backward shift: move later entries of the run into the hole. */
  for (size_t j = (i + 1) & mask; m->keys[j]; j = (j + 1) & mask) {
    size_t h = mix64(m->keys[j]) & mask;
    if (((j - h) & mask) >= ((j - i) & mask)) {
      m->keys[i] = m->keys[j];
      m->vals[i] = m->vals[j];
      m->keys[j] = 0;
      i = j;
    }
  }
}

static void map_free(u64map *m) {
  free(m->keys);
  free(m->vals);
  memset(m, 0, sizeof *m);
}

/* ---- walking a value's ports ------------------------------------------- */

/* Calls fn on every port value reachable from *root, each container once
 * (sharing and cycles).  fn may rewrite the port in place when the graph
 * is writable memory (a decoded value).  Returns fn's first error. */
typedef int (*port_fn)(void *ctx, isola_value *v);

static int walk_ports(isola_value *root, port_fn fn, void *ctx) {
  if (root->kind == ISOLA_PORT) return fn(ctx, root);
  if ((root->kind != ISOLA_LIST && root->kind != ISOLA_MAP) || !root->len)
    return ISOLA_OK;
  typedef struct frame {
    isola_value *items;
    size_t n, i;
  } frame;
  size_t depth = 0, dcap = 16;
  frame *st = malloc(dcap * sizeof *st);
  u64map seen = {0};
  int rc = ISOLA_OK;
  if (!st) return ISOLA_ENOMEM;
  st[depth++] = (frame){(isola_value *)root->as.items,
                        root->kind == ISOLA_MAP ? 2 * (size_t)root->len
                                                : root->len,
                        0};
  if (map_put(&seen, (uint64_t)(uintptr_t)root->as.items, 1) != ISOLA_OK)
    rc = ISOLA_ENOMEM;
  while (depth && rc == ISOLA_OK) {
    frame *f = &st[depth - 1];
    if (f->i == f->n) {
      depth--;
      continue;
    }
    isola_value *v = &f->items[f->i++];
    if (v->kind == ISOLA_PORT) {
      rc = fn(ctx, v);
    } else if ((v->kind == ISOLA_LIST || v->kind == ISOLA_MAP) && v->len) {
      uint64_t key = (uint64_t)(uintptr_t)v->as.items;
      if (map_get(&seen, key, NULL)) continue;
      if (map_put(&seen, key, 1) != ISOLA_OK) {
        rc = ISOLA_ENOMEM;
        break;
      }
      if (depth == dcap) {
        frame *n2 = realloc(st, dcap * 2 * sizeof *st);
        if (!n2) {
          rc = ISOLA_ENOMEM;
          break;
        }
        st = n2;
        dcap *= 2;
      }
      st[depth++] = (frame){(isola_value *)v->as.items,
                            v->kind == ISOLA_MAP ? 2 * (size_t)v->len : v->len,
                            0};
    }
  }
  free(st);
  map_free(&seen);
  return rc;
}

/* ---- waiting for the gateway ------------------------------------------- */

typedef struct waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done;
  atomic_int refs;
  int rc;
  isola_isolate handle;
  char err[256];
} waiter;

static waiter *waiter_new(void) {
  waiter *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  pthread_mutex_init(&w->mu, NULL);
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  pthread_cond_init(&w->cv, &a);
  pthread_condattr_destroy(&a);
  atomic_init(&w->refs, 2); /* the caller and the gateway */
  return w;
}

static void waiter_unref(waiter *w) {
  if (atomic_fetch_sub(&w->refs, 1) != 1) return;
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  free(w);
}

static void waiter_done(waiter *w, int rc) {
  pthread_mutex_lock(&w->mu);
  w->rc = rc;
  w->done = true;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  waiter_unref(w);
}

/* Waits up to ms; from an isolate inside a blocking section. */
static int waiter_wait(waiter *w, unsigned ms) {
  bool blocking = isola_blocking_begin() == ISOLA_OK;
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  t.tv_sec += ms / 1000;
  t.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (t.tv_nsec >= 1000000000L) {
    t.tv_sec++;
    t.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&w->mu);
  int e = 0;
  while (!w->done && e != ETIMEDOUT)
    e = pthread_cond_timedwait(&w->cv, &w->mu, &t);
  int rc = w->done ? w->rc : ISOLA_ETIMEDOUT;
  pthread_mutex_unlock(&w->mu);
  if (blocking) isola_blocking_end();
  return rc;
}

/* ---- the node's state -------------------------------------------------- */

typedef struct peer {
  char name[ISOLA_CLUSTER_NODE_MAX + 1];
  uint64_t inc;      /* its incarnation; 0 until heard from */
  int64_t last_seen; /* ms, monotonic */
  bool lost;
} peer;

typedef struct proxy {
  isola_port local; /* the gateway's port that stands for it */
  uint32_t peer;
  uint64_t id, secret;
  struct proxy *next_same_id;
} proxy;

/* An exit listener on a remote isolate: the remote node's core tells the
 * relay port, which tells the listener here; a lost node fires it too. */
typedef struct relay {
  isola_port port;     /* the relay: a gateway port */
  isola_port ctl;      /* the remote isolate's proxy (NONE while spawning) */
  isola_port listener; /* any port; NONE: only kill_pid */
  isola_value response;
  bool notice;         /* the listener wants an exit notice */
  pid_t kill_pid;      /* a process spawn's process, ended with it */
  uint32_t peer;
  struct relay *next;
} relay;

/* A process started by isola_cluster_spawn_process(), as a node. */
typedef struct process {
  pid_t pid;
  bool alive; /* under g.mu: not reaped yet */
  char node[ISOLA_CLUSTER_NODE_MAX + 1];
  pthread_t reaper;
  struct process *next;
} process;

/* A caller waiting for a node's first heartbeat. */
typedef struct peer_wait {
  char node[ISOLA_CLUSTER_NODE_MAX + 1];
  waiter *w;
  struct peer_wait *next;
} peer_wait;

typedef struct pending {
  uint64_t req;
  uint32_t peer;
  waiter *w;
  relay *r; /* the spawn's on_exit relay, or NULL */
  bool name; /* a name check: on success, a proxy for (id, secret) */
  uint64_t id, secret;
  struct pending *next;
} pending;

static struct {
  pthread_mutex_t mu; /* joined, the proxy maps, peers (names), ports */
  bool joined;
  isola_cluster_config cfg;
  char *strings[13]; /* copies of cfg's strings */
  char node[ISOLA_CLUSTER_NODE_MAX + 1];
  char subj_data[ISOLA_CLUSTER_NODE_MAX + 32];
  char subj_hb[ISOLA_CLUSTER_NODE_MAX + 32];
  uint64_t inc;
  isola_capability name_cap; /* removes this node's local names */
  natsConnection *nc;
  natsSubscription *sub_data, *sub_hb;
  pthread_mutex_t kv_mu; /* opening the names bucket */
  jsCtx *js;
  kvStore *kv;
  bool kv_tried;
  isola_port in_port, api_port;
  u64map by_local;  /* proxy local port -> proxy * (under mu) */
  u64map by_remote; /* remote id -> proxy * chain (under mu) */
  peer *peers;      /* under mu (names read by isola_cluster_port_node) */
  uint32_t npeers, peers_cap;
  /* The gateway's own, unlocked. */
  u64map exports; /* local port -> secret */
  process *procs;   /* under mu */
  unsigned nprocs;  /* processes started, for their names */
  peer_wait *peer_waits;
  relay *relays;
  pending *pendings;
  uint64_t next_req;
  isola_timer timer;
  unsigned seen_epoch;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER, .kv_mu = PTHREAD_MUTEX_INITIALIZER};

/* Set by libnats' connection callbacks (other threads). */
static atomic_bool g_connected;
static atomic_uint g_reconnects;
static _Atomic isola_port g_in_port;

static _Thread_local char last_error[256];

static int64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static bool node_name_ok(const char *s) {
  size_t n = 0;
  for (; s[n]; n++) {
    char c = s[n];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '-' || c == '_'))
      return false;
  }
  return n > 0 && n <= ISOLA_CLUSTER_NODE_MAX;
}

/* Peer index by name, created if new (gateway; takes mu). */
static uint32_t peer_get(const char *name) {
  pthread_mutex_lock(&g.mu);
  uint32_t i = 0;
  for (; i < g.npeers; i++)
    if (strcmp(g.peers[i].name, name) == 0) break;
  if (i == g.npeers) {
    if (g.npeers == g.peers_cap) {
      uint32_t cap = g.peers_cap ? g.peers_cap * 2 : 8;
      peer *p = realloc(g.peers, cap * sizeof *p);
      if (!p) {
        pthread_mutex_unlock(&g.mu);
        return UINT32_MAX;
      }
      g.peers = p;
      g.peers_cap = cap;
    }
    peer *p = &g.peers[g.npeers++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->last_seen = now_ms();
  }
  pthread_mutex_unlock(&g.mu);
  return i;
}

/* ---- sending envelopes (gateway) --------------------------------------- */

typedef struct table {
  u64map index; /* sender id -> entry index + 1 */
  struct entry {
    uint64_t sid, id, secret;
    const char *node;
  } *e;
  size_t n, cap;
  int rc;
} table;

/* The secret that lets other nodes reach local port p (made on first
 * need).  0: out of memory.  Any thread (takes mu). */
static uint64_t export_port(isola_port p) {
  uint64_t s;
  pthread_mutex_lock(&g.mu);
  if (!map_get(&g.exports, p, &s)) {
    do s = isola_capability_new();
    while (s == 0);
    if (map_put(&g.exports, p, s) != ISOLA_OK) s = 0;
  }
  pthread_mutex_unlock(&g.mu);
  return s;
}

static bool export_check(uint64_t id, uint64_t secret) {
  uint64_t s;
  pthread_mutex_lock(&g.mu);
  bool ok = map_get(&g.exports, id, &s) && s == secret;
  pthread_mutex_unlock(&g.mu);
  return ok;
}

static void export_drop(uint64_t id) {
  pthread_mutex_lock(&g.mu);
  map_del(&g.exports, id);
  pthread_mutex_unlock(&g.mu);
}

static int collect(void *ctx, isola_value *v) {
  table *t = ctx;
  uint64_t sid = v->as.port;
  if (map_get(&t->index, sid, NULL)) return ISOLA_OK;
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 4;
    struct entry *e = realloc(t->e, cap * sizeof *e);
    if (!e) return ISOLA_ENOMEM;
    t->e = e;
    t->cap = cap;
  }
  struct entry *e = &t->e[t->n];
  e->sid = sid;
  uint64_t pv;
  pthread_mutex_lock(&g.mu);
  bool is_proxy = map_get(&g.by_local, sid, &pv);
  if (is_proxy) {
    proxy *px = (proxy *)(uintptr_t)pv;
    e->node = g.peers[px->peer].name; /* peers only grow while joined */
    e->id = px->id;
    e->secret = px->secret;
  }
  pthread_mutex_unlock(&g.mu);
  if (!is_proxy) {
    e->node = g.node;
    e->id = sid;
    e->secret = export_port(sid);
    if (!e->secret) return ISOLA_ENOMEM;
  }
  t->n++;
  return map_put(&t->index, sid, t->n);
}

static void publish(const char *subj, const uint8_t *buf, size_t len) {
  natsConnection_Publish(g.nc, subj, buf, (int)len);
}

/* Sends E (a list whose ports are this node's ids) to peer. */
static int emit(uint32_t peer_i, isola_value E) {
  table t = {0};
  int rc = walk_ports(&E, collect, &t);
  isola_value *items = NULL, *rows = NULL;
  uint8_t *buf = NULL;
  size_t len = 0;
  if (rc == ISOLA_OK) {
    items = calloc(t.n * 4 + 1, sizeof *items);
    rows = calloc(t.n + 1, sizeof *rows);
    if (!items || !rows) rc = ISOLA_ENOMEM;
  }
  if (rc == ISOLA_OK) {
    for (size_t i = 0; i < t.n; i++) {
      items[4 * i] = isola_int((int64_t)t.e[i].sid);
      items[4 * i + 1] = isola_str(t.e[i].node);
      items[4 * i + 2] = isola_int((int64_t)t.e[i].id);
      items[4 * i + 3] = isola_int((int64_t)t.e[i].secret);
      rows[i] = isola_list(&items[4 * i], 4);
    }
    isola_value top[3] = {E, isola_list(rows, t.n),
                          isola_int((int64_t)g.inc)};
    rc = isola_wire_encode(isola_list(top, 3), &buf, &len);
  }
  if (rc == ISOLA_OK) {
    char subj[2 * ISOLA_CLUSTER_NODE_MAX + 16];
    pthread_mutex_lock(&g.mu);
    snprintf(subj, sizeof subj, "isola.n.%s.%s", g.peers[peer_i].name,
             g.node);
    pthread_mutex_unlock(&g.mu);
    publish(subj, buf, len);
  }
  free(buf);
  free(items);
  free(rows);
  free(t.e);
  map_free(&t.index);
  return rc;
}

/* ---- proxies and relays (gateway) -------------------------------------- */

static void on_proxy(void *ctx, isola_port port, isola_value msg,
                     isola_port reply_to);

static proxy *proxy_find(uint32_t peer_i, uint64_t id) {
  uint64_t v;
  if (!map_get(&g.by_remote, id, &v)) return NULL;
  for (proxy *p = (proxy *)(uintptr_t)v; p; p = p->next_same_id)
    if (p->peer == peer_i) return p;
  return NULL;
}

static isola_port proxy_for(uint32_t peer_i, uint64_t id, uint64_t secret) {
  pthread_mutex_lock(&g.mu);
  proxy *p = proxy_find(peer_i, id);
  isola_port r = p ? p->local : ISOLA_PORT_NONE;
  pthread_mutex_unlock(&g.mu);
  if (r) return r;
  p = calloc(1, sizeof *p);
  if (!p) return ISOLA_PORT_NONE;
  p->peer = peer_i;
  p->id = id;
  p->secret = secret;
  if (isola_port_open(on_proxy, p, &p->local) != ISOLA_OK) {
    free(p);
    return ISOLA_PORT_NONE;
  }
  /* A proxy must not keep the gateway alive: leaving closes them. */
  pthread_mutex_lock(&g.mu);
  uint64_t head = 0;
  map_get(&g.by_remote, id, &head);
  p->next_same_id = (proxy *)(uintptr_t)head;
  int rc = map_put(&g.by_remote, id, (uint64_t)(uintptr_t)p);
  if (rc == ISOLA_OK)
    rc = map_put(&g.by_local, p->local, (uint64_t)(uintptr_t)p);
  pthread_mutex_unlock(&g.mu);
  if (rc != ISOLA_OK) {
    isola_port_close(p->local);
    free(p);
    return ISOLA_PORT_NONE;
  }
  return p->local;
}

static void proxy_drop(proxy *p) {
  pthread_mutex_lock(&g.mu);
  map_del(&g.by_local, p->local);
  uint64_t head = 0;
  map_get(&g.by_remote, p->id, &head);
  proxy *first = (proxy *)(uintptr_t)head;
  if (first == p) {
    if (p->next_same_id)
      map_put(&g.by_remote, p->id, (uint64_t)(uintptr_t)p->next_same_id);
    else
      map_del(&g.by_remote, p->id);
  } else {
    for (proxy *q = first; q; q = q->next_same_id)
      if (q->next_same_id == p) {
        q->next_same_id = p->next_same_id;
        break;
      }
  }
  pthread_mutex_unlock(&g.mu);
  isola_port_close(p->local);
  free(p);
}

/* A port that is already closed: what a port of a lost node becomes. */
static isola_port dead_port(void) {
  isola_port p;
  if (isola_port_open(on_proxy, NULL, &p) != ISOLA_OK) return ISOLA_PORT_NONE;
  isola_port_close(p);
  return p;
}

static void on_proxy(void *ctx, isola_port port, isola_value msg,
                     isola_port reply_to) {
  proxy *p = ctx;
  if (!p) return;
  isola_value E[4] = {isola_int(T_MSG), isola_sendport(port),
                      reply_to ? isola_sendport(reply_to) : isola_null(),
                      msg};
  emit(p->peer, isola_list(E, 4));
}

static void relay_free(relay *r) {
  relay **pp = &g.relays;
  while (*pp && *pp != r) pp = &(*pp)->next;
  if (*pp) *pp = r->next;
  isola_port_close(r->port);
  isola_value_free(&r->response);
  free(r);
}

static bool process_alive(pid_t pid) {
  bool alive = false;
  pthread_mutex_lock(&g.mu);
  for (process *p = g.procs; p; p = p->next)
    if (p->pid == pid) alive = p->alive;
  pthread_mutex_unlock(&g.mu);
  return alive;
}

/* Tells the listener, once: [reason, isolate, detail, response] or the
 * bare response. */
static void relay_fire(relay *r, int64_t reason, isola_value detail) {
  if (r->listener && r->notice) {
    isola_value n[4] = {isola_int(reason), isola_sendport(r->ctl), detail,
                        r->response};
    isola_send(r->listener, isola_list(n, 4));
  } else if (r->listener) {
    isola_send(r->listener, r->response);
  }
  /* Still alive (only reaped processes are not): its isolate ended. */
  if (r->kill_pid && process_alive(r->kill_pid)) kill(r->kill_pid, SIGTERM);
  relay_free(r);
}

/* The remote core's exit notice: [reason, isolate, detail, null]. */
static void on_relay(void *ctx, isola_port port, isola_value msg,
                     isola_port reply_to) {
  (void)port, (void)reply_to;
  int64_t reason = ISOLA_EXIT_NORMAL;
  isola_value detail = isola_null();
  if (msg.kind == ISOLA_LIST) {
    isola_value v;
    if (isola_list_get(msg, 0, &v) == ISOLA_OK) isola_value_get_int(v, &reason);
    isola_list_get(msg, 2, &detail);
  }
  relay_fire(ctx, reason, detail);
}

static relay *relay_new(uint32_t peer_i, isola_port ctl, isola_port listener,
                        isola_value response) {
  relay *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  if (isola_value_copy(response, &r->response) != ISOLA_OK ||
      isola_port_open(on_relay, r, &r->port) != ISOLA_OK) {
    isola_value_free(&r->response);
    free(r);
    return NULL;
  }
  isola_port_keep_alive(r->port, false);
  r->peer = peer_i;
  r->ctl = ctl;
  r->listener = listener;
  r->next = g.relays;
  g.relays = r;
  return r;
}

/* The peer is gone: detail says how (NULL: "node lost"). */
static void node_lost(uint32_t peer_i, const char *detail) {
  pthread_mutex_lock(&g.mu);
  g.peers[peer_i].lost = true;
  pthread_mutex_unlock(&g.mu);
  isola_value why = isola_str(detail ? detail : "node lost");
  /* Exit listeners first, in the order they were added (oldest last in
   * the list: fire from the end). */
  for (;;) {
    relay *last = NULL;
    for (relay *r = g.relays; r; r = r->next)
      if (r->peer == peer_i && r->ctl) last = r;
    if (!last) break;
    relay_fire(last, ISOLA_EXIT_NODE_LOST, why);
  }
  for (pending **pp = &g.pendings; *pp;) {
    pending *p = *pp;
    if (p->peer != peer_i) {
      pp = &p->next;
      continue;
    }
    *pp = p->next;
    if (p->r) relay_free(p->r);
    waiter_done(p->w, ISOLA_ECLOSED);
    free(p);
  }
  for (;;) {
    proxy *victim = NULL;
    pthread_mutex_lock(&g.mu);
    for (size_t i = 0; i < g.by_local.cap && !victim; i++)
      if (g.by_local.keys[i]) {
        proxy *p = (proxy *)(uintptr_t)g.by_local.vals[i];
        if (p->peer == peer_i) victim = p;
      }
    pthread_mutex_unlock(&g.mu);
    if (!victim) break;
    proxy_drop(victim);
  }
}

/* A peer was heard from (heartbeat or envelope).  Returns whether what it
 * sent is to be handled: not from an incarnation already taken as lost. */
static bool peer_heard(uint32_t peer_i, uint64_t inc, bool leaving) {
  peer *p = &g.peers[peer_i];
  if (p->inc && p->inc != inc) {
    /* A new incarnation: the old one is gone. */
    if (!p->lost) node_lost(peer_i, "node restarted");
    pthread_mutex_lock(&g.mu);
    p = &g.peers[peer_i];
    p->lost = false;
    p->inc = inc;
    pthread_mutex_unlock(&g.mu);
  } else if (!p->inc) {
    pthread_mutex_lock(&g.mu);
    p->inc = inc;
    pthread_mutex_unlock(&g.mu);
    /* First heard: wake whoever waits for it. */
    for (peer_wait **pp = &g.peer_waits; *pp;) {
      peer_wait *w = *pp;
      if (strcmp(w->node, g.peers[peer_i].name) != 0) {
        pp = &w->next;
        continue;
      }
      *pp = w->next;
      waiter_done(w->w, ISOLA_OK);
      free(w);
    }
  }
  p = &g.peers[peer_i];
  if (p->lost) return false;
  p->last_seen = now_ms();
  if (leaving) {
    node_lost(peer_i, "node left");
    return false;
  }
  return true;
}

/* ---- receiving envelopes (gateway) ------------------------------------- */

typedef struct inbound {
  u64map map; /* sender id -> local port (0: refused) */
  uint32_t peer;
} inbound;

static int rewrite(void *ctx, isola_value *v) {
  inbound *in = ctx;
  uint64_t local;
  if (!map_get(&in->map, v->as.port, &local) || !local) return ISOLA_EPERM;
  v->as.port = local;
  return ISOLA_OK;
}

static bool get_int(isola_value l, size_t i, int64_t *out) {
  isola_value v;
  return isola_list_get(l, i, &v) == ISOLA_OK &&
         isola_value_get_int(v, out) == ISOLA_OK;
}

static bool get_port(isola_value l, size_t i, isola_port *out) {
  isola_value v;
  if (isola_list_get(l, i, &v) != ISOLA_OK) return false;
  if (v.kind == ISOLA_NULL) {
    *out = ISOLA_PORT_NONE;
    return true;
  }
  return isola_value_get_port(v, out) == ISOLA_OK;
}

static bool get_cap(isola_value l, size_t i, isola_capability *out) {
  isola_value v;
  if (isola_list_get(l, i, &v) != ISOLA_OK) return false;
  if (isola_value_get_cap(v, out) == ISOLA_OK) return true;
  int64_t n;
  if (isola_value_get_int(v, &n) != ISOLA_OK) return false;
  *out = (isola_capability)n;
  return true;
}

static bool get_str(isola_value l, size_t i, const char **out) {
  isola_value v;
  if (isola_list_get(l, i, &v) != ISOLA_OK) return false;
  if (v.kind == ISOLA_NULL) {
    *out = NULL;
    return true;
  }
  return isola_value_get_str(v, out, NULL) == ISOLA_OK;
}

static bool get_bool(isola_value l, size_t i, bool *out) {
  isola_value v;
  return isola_list_get(l, i, &v) == ISOLA_OK &&
         isola_value_get_bool(v, out) == ISOLA_OK;
}

static void send_closed(uint32_t peer_i, uint64_t id) {
  isola_value E[2] = {isola_int(T_CLOSED), isola_int((int64_t)id)};
  emit(peer_i, isola_list(E, 2));
}

static void reply(uint32_t peer_i, int64_t req, int rc, const char *err,
                  const isola_isolate *h) {
  isola_value E[7] = {isola_int(T_REPLY),
                      isola_int(req),
                      isola_int(rc),
                      isola_str(err ? err : ""),
                      h ? isola_sendport(h->control_port) : isola_null(),
                      isola_cap(h ? h->pause_capability : 0),
                      isola_cap(h ? h->terminate_capability : 0)};
  emit(peer_i, isola_list(E, 7));
}

static bool proxy_peer(isola_port p, uint32_t *peer_i);

/* A control request from peer_i for one of our isolates: the core call,
 * with the sender's capabilities (a wrong one is ignored by the isolate,
 * as locally).  An isolate that has ended is answered as a closed port
 * is: the sender's proxy for its control port closes, so the sender's
 * next request fails with ISOLA_ECLOSED, as it would locally. */
static void handle_ctl(uint32_t peer_i, isola_value E) {
  int64_t kind, prio;
  isola_port ctl, arg;
  isola_capability cap, cap2;
  isola_value response;
  if (!get_int(E, 1, &kind) || !get_port(E, 2, &ctl) || !ctl ||
      !get_cap(E, 3, &cap) || !get_cap(E, 4, &cap2) ||
      !get_port(E, 5, &arg) || isola_list_get(E, 6, &response) != ISOLA_OK ||
      !get_int(E, 7, &prio))
    return;
  isola_isolate h = {ctl, 0, 0};
  isola_priority pr = prio ? ISOLA_BEFORE_NEXT_EVENT : ISOLA_IMMEDIATE;
  int rc = ISOLA_OK;
  switch (kind) {
  case K_PAUSE:
    h.pause_capability = cap;
    rc = isola_pause(&h, cap2);
    break;
  case K_RESUME:
    h.pause_capability = cap;
    rc = isola_resume(&h, cap2);
    break;
  case K_KILL:
    h.terminate_capability = cap;
    rc = isola_kill(&h, pr);
    break;
  case K_PING:
    if (arg) rc = isola_ping(&h, arg, response, pr);
    break;
  case K_FATAL:
    h.terminate_capability = cap;
    rc = isola_set_errors_fatal(&h, prio != 0);
    break;
  case K_ERR_ADD:
    if (arg) rc = isola_add_error_listener(&h, arg);
    break;
  case K_ERR_DEL:
    if (arg) rc = isola_remove_error_listener(&h, arg);
    break;
  case K_ERRN_ADD:
    if (arg) rc = isola_add_error_notice_listener(&h, arg);
    break;
  default:
    break;
  }
  uint32_t other;
  if (rc == ISOLA_ECLOSED && !proxy_peer(ctl, &other)) {
    export_drop(ctl);
    send_closed(peer_i, ctl);
  }
}

static void handle_spawn(uint32_t peer_i, isola_value E) {
  int64_t req, heap;
  const char *path, *name;
  isola_value args, message;
  isola_port relay_p, on_error;
  bool paused, nonfatal, error_notice = false;
  if (!get_int(E, 1, &req)) return;
  if (!get_str(E, 2, &path) || !path ||
      isola_list_get(E, 3, &args) != ISOLA_OK ||
      isola_list_get(E, 4, &message) != ISOLA_OK || !get_str(E, 5, &name) ||
      !get_port(E, 6, &relay_p) || !get_port(E, 7, &on_error) ||
      !get_bool(E, 8, &paused) || !get_bool(E, 9, &nonfatal) ||
      !get_int(E, 10, &heap)) {
    reply(peer_i, req, ISOLA_EINVAL, "malformed spawn request", NULL);
    return;
  }
  if (!g.cfg.allow_spawn) {
    reply(peer_i, req, ISOLA_EPERM, "this node does not serve remote spawns",
          NULL);
    return;
  }
  if (E.len > 11) get_bool(E, 11, &error_notice);
  isola_spawn_options o = {.name = name,
                           .error_notice = error_notice,
                           .on_exit = relay_p,
                           .exit_notice = relay_p != ISOLA_PORT_NONE,
                           .on_error = on_error,
                           .paused = paused,
                           .errors_nonfatal = nonfatal,
                           .heap_limit = (size_t)heap};
  isola_isolate h;
  int rc = isola_spawn_uri(path, args, message, &o, &h);
  reply(peer_i, req, rc, rc == ISOLA_OK ? "" : isola_module_error(),
        rc == ISOLA_OK ? &h : NULL);
}

static void handle_reply(uint32_t peer_i, isola_value E) {
  int64_t req, rc;
  const char *err;
  isola_port ctl;
  isola_capability pcap, tcap;
  if (!get_int(E, 1, &req) || !get_int(E, 2, &rc) || !get_str(E, 3, &err) ||
      !get_port(E, 4, &ctl) || !get_cap(E, 5, &pcap) || !get_cap(E, 6, &tcap))
    return;
  pending **pp = &g.pendings;
  while (*pp && !((*pp)->req == (uint64_t)req && (*pp)->peer == peer_i))
    pp = &(*pp)->next;
  pending *p = *pp;
  if (!p) return;
  *pp = p->next;
  if (p->name) {
    if (rc == ISOLA_OK) {
      isola_port px = proxy_for(peer_i, p->id, p->secret);
      p->w->handle.control_port = px;
      if (!px) rc = ISOLA_ENOMEM;
    }
  } else if (rc == ISOLA_OK && ctl) {
    p->w->handle = (isola_isolate){ctl, pcap, tcap};
    if (p->r) p->r->ctl = ctl;
  } else {
    if (rc == ISOLA_OK) rc = ISOLA_EINVAL;
    if (p->r) relay_free(p->r);
  }
  snprintf(p->w->err, sizeof p->w->err, "%s", err ? err : "");
  waiter_done(p->w, (int)rc);
  free(p);
}

static void handle_envelope(const char *src, const uint8_t *data,
                            size_t len) {
  uint32_t peer_i = peer_get(src);
  if (peer_i == UINT32_MAX) return;
  isola_value top;
  if (isola_wire_decode(data, len, &g.cfg.limits, &top) != ISOLA_OK) return;
  isola_value E, tab;
  int64_t inc, type;
  inbound in = {.peer = peer_i};
  if (top.kind != ISOLA_LIST || top.len != 3 ||
      isola_list_get(top, 0, &E) != ISOLA_OK || E.kind != ISOLA_LIST ||
      isola_list_get(top, 1, &tab) != ISOLA_OK || tab.kind != ISOLA_LIST ||
      !get_int(top, 2, &inc) || !get_int(E, 0, &type))
    goto out;
  if (!peer_heard(peer_i, (uint64_t)inc, false)) goto out;
  /* Map the table's entries to ports of this node. */
  uint64_t dest_sid = 0, dest_id = 0;
  if (type == T_MSG) {
    isola_value d;
    if (isola_list_get(E, 1, &d) != ISOLA_OK || d.kind != ISOLA_PORT) goto out;
    dest_sid = d.as.port;
  }
  for (uint32_t i = 0; i < tab.len; i++) {
    isola_value row;
    int64_t sid, id, secret;
    const char *node;
    if (isola_list_get(tab, i, &row) != ISOLA_OK || row.kind != ISOLA_LIST ||
        row.len != 4 || !get_int(row, 0, &sid) || !get_str(row, 1, &node) ||
        !node || !get_int(row, 2, &id) || !get_int(row, 3, &secret) || !sid)
      goto out;
    uint64_t local = 0;
    if (strcmp(node, g.node) == 0) {
      if (export_check((uint64_t)id, (uint64_t)secret)) local = (uint64_t)id;
      if ((uint64_t)sid == dest_sid) dest_id = (uint64_t)id;
    } else if (node_name_ok(node)) {
      uint32_t pi = peer_get(node);
      if (pi != UINT32_MAX) {
        local = g.peers[pi].lost ? dead_port()
                                 : proxy_for(pi, (uint64_t)id,
                                             (uint64_t)secret);
      }
    }
    if (map_put(&in.map, (uint64_t)sid, local) != ISOLA_OK) goto out;
  }
  if (type == T_MSG) {
    uint64_t local = 0;
    if (!map_get(&in.map, dest_sid, &local) || !local || local != dest_id) {
      /* Closed here, unknown, or a wrong secret: the sender's proxy is
       * dead; tell it (only for a port that is ours by name). */
      if (dest_id) send_closed(peer_i, dest_id);
      goto out;
    }
  }
  if (walk_ports(&E, rewrite, &in) != ISOLA_OK) goto out;
  switch (type) {
  case T_MSG: {
    isola_port dest, rep;
    isola_value payload;
    if (!get_port(E, 1, &dest) || !get_port(E, 2, &rep) ||
        isola_list_get(E, 3, &payload) != ISOLA_OK)
      break;
    int rc = isola_send_reply(dest, payload, rep);
    if (rc == ISOLA_ECLOSED) {
      export_drop(dest);
      send_closed(peer_i, dest);
    }
    break;
  }
  case T_CLOSED: {
    int64_t id;
    if (!get_int(E, 1, &id)) break;
    pthread_mutex_lock(&g.mu);
    proxy *p = proxy_find(peer_i, (uint64_t)id);
    pthread_mutex_unlock(&g.mu);
    if (p) proxy_drop(p);
    break;
  }
  case T_CTL:
    handle_ctl(peer_i, E);
    break;
  case T_EXIT_ADD:
  case T_EXIT_DEL: {
    isola_port ctl, rel;
    if (!get_port(E, 1, &ctl) || !get_port(E, 2, &rel) || !ctl || !rel)
      break;
    isola_isolate h = {ctl, 0, 0};
    uint32_t other;
    if (type == T_EXIT_ADD) {
      /* Too late (the isolate has ended): dropped, as a local request
       * that reaches an ending isolate; the sender's proxy closes. */
      if (isola_add_exit_notice_listener(&h, rel, isola_null()) ==
              ISOLA_ECLOSED &&
          !proxy_peer(ctl, &other)) {
        export_drop(ctl);
        send_closed(peer_i, ctl);
      }
    } else {
      isola_remove_exit_listener(&h, rel);
      pthread_mutex_lock(&g.mu);
      uint64_t v = 0;
      bool is = map_get(&g.by_local, rel, &v);
      pthread_mutex_unlock(&g.mu);
      if (is) proxy_drop((proxy *)(uintptr_t)v);
    }
    break;
  }
  case T_SPAWN:
    handle_spawn(peer_i, E);
    break;
  case T_REPLY:
    handle_reply(peer_i, E);
    break;
  case T_NAMECHK: {
    int64_t req, id;
    const char *name;
    isola_port p;
    if (!get_int(E, 1, &req) || !get_str(E, 2, &name) || !name ||
        !get_int(E, 3, &id))
      break;
    bool ok = isola_name_lookup(name, &p) == ISOLA_OK && p == (uint64_t)id;
    reply(peer_i, req, ok ? ISOLA_OK : ISOLA_ENOTFOUND, "", NULL);
    break;
  }
  default:
    break;
  }
out:
  map_free(&in.map);
  isola_value_free(&top);
}

static void handle_heartbeat(const char *src, const uint8_t *data,
                             size_t len) {
  if (strcmp(src, g.node) == 0) return;
  isola_value v;
  int64_t inc;
  bool leaving;
  if (isola_wire_decode(data, len, &g.cfg.limits, &v) != ISOLA_OK) return;
  if (v.kind == ISOLA_LIST && v.len == 2 && get_int(v, 0, &inc) &&
      get_bool(v, 1, &leaving)) {
    uint32_t peer_i = peer_get(src);
    if (peer_i != UINT32_MAX) peer_heard(peer_i, (uint64_t)inc, leaving);
  }
  isola_value_free(&v);
}

/* [src, bytes, is heartbeat], from a NATS callback thread. */
static void on_in(void *ctx, isola_port port, isola_value msg,
                  isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  const char *src;
  const uint8_t *data;
  size_t len;
  bool hb;
  isola_value v;
  if (!get_str(msg, 0, &src) || !src || !get_bool(msg, 2, &hb) ||
      isola_list_get(msg, 1, &v) != ISOLA_OK ||
      isola_value_get_bytes(v, &data, &len) != ISOLA_OK || !node_name_ok(src))
    return;
  if (hb)
    handle_heartbeat(src, data, len);
  else
    handle_envelope(src, data, len);
}

static void heartbeat(bool leaving) {
  isola_value items[2] = {isola_int((int64_t)g.inc), isola_bool(leaving)};
  uint8_t buf[32];
  size_t len;
  if (isola_wire_encode_to(isola_list(items, 2), buf, sizeof buf, &len) ==
      ISOLA_OK)
    publish(g.subj_hb, buf, len);
}

static void on_tick(void *arg) {
  (void)arg;
  heartbeat(false);
  if (!atomic_load(&g_connected)) return; /* no judging while cut off */
  int64_t now = now_ms();
  unsigned epoch = atomic_load(&g_reconnects);
  if (epoch != g.seen_epoch) {
    /* Back from a disconnection: give every peer a fresh period. */
    g.seen_epoch = epoch;
    for (uint32_t i = 0; i < g.npeers; i++) g.peers[i].last_seen = now;
    return;
  }
  for (uint32_t i = 0; i < g.npeers; i++)
    if (!g.peers[i].lost &&
        now - g.peers[i].last_seen > (int64_t)g.cfg.node_timeout_ms)
      node_lost(i, NULL);
}

/* ---- requests from API callers (gateway) ------------------------------- */

static bool proxy_peer(isola_port p, uint32_t *peer_i) {
  pthread_mutex_lock(&g.mu);
  uint64_t v;
  bool is = map_get(&g.by_local, p, &v);
  if (is) *peer_i = ((proxy *)(uintptr_t)v)->peer;
  pthread_mutex_unlock(&g.mu);
  return is;
}

static void op_spawn(isola_value m) {
  int64_t wp, heap, pid;
  bool notice, error_notice;
  const char *node, *path, *name;
  isola_value args, message, exit_msg;
  isola_port on_exit, on_error;
  bool paused, nonfatal;
  if (!get_int(m, 1, &wp)) return;
  waiter *w = (waiter *)(intptr_t)wp;
  if (!get_str(m, 2, &node) || !get_str(m, 3, &path) ||
      isola_list_get(m, 4, &args) != ISOLA_OK ||
      isola_list_get(m, 5, &message) != ISOLA_OK || !get_str(m, 6, &name) ||
      !get_port(m, 7, &on_exit) || isola_list_get(m, 8, &exit_msg) != ISOLA_OK ||
      !get_port(m, 9, &on_error) || !get_bool(m, 10, &paused) ||
      !get_bool(m, 11, &nonfatal) || !get_int(m, 12, &heap) ||
      !get_bool(m, 13, &notice) || !get_int(m, 14, &pid) ||
      !get_bool(m, 15, &error_notice)) {
    waiter_done(w, ISOLA_EINVAL);
    return;
  }
  uint32_t peer_i = peer_get(node);
  if (peer_i == UINT32_MAX) {
    waiter_done(w, ISOLA_ENOMEM);
    return;
  }
  if (g.peers[peer_i].lost) {
    waiter_done(w, ISOLA_ECLOSED);
    return;
  }
  pending *p = calloc(1, sizeof *p);
  relay *r = NULL;
  if (p && (on_exit || pid))
    r = relay_new(peer_i, ISOLA_PORT_NONE, on_exit, exit_msg);
  if (r) {
    r->notice = notice;
    r->kill_pid = (pid_t)pid;
  }
  if (!p || ((on_exit || pid) && !r)) {
    free(p);
    waiter_done(w, ISOLA_ENOMEM);
    return;
  }
  p->req = ++g.next_req;
  p->peer = peer_i;
  p->w = w;
  p->r = r;
  isola_value E[12] = {isola_int(T_SPAWN),
                       isola_int((int64_t)p->req),
                       isola_str(path),
                       args,
                       message,
                       name ? isola_str(name) : isola_null(),
                       r ? isola_sendport(r->port) : isola_null(),
                       on_error ? isola_sendport(on_error) : isola_null(),
                       isola_bool(paused),
                       isola_bool(nonfatal),
                       isola_int(heap),
                       isola_bool(error_notice)};
  int rc = emit(peer_i, isola_list(E, 12));
  if (rc != ISOLA_OK) {
    if (r) relay_free(r);
    free(p);
    waiter_done(w, rc);
    return;
  }
  p->next = g.pendings;
  g.pendings = p;
}

static void op_name(isola_value m) {
  int64_t wp, inc, id, secret;
  const char *node, *name;
  if (!get_int(m, 1, &wp)) return;
  waiter *w = (waiter *)(intptr_t)wp;
  if (!get_str(m, 2, &node) || !node || !node_name_ok(node) ||
      !get_int(m, 3, &inc) || !get_int(m, 4, &id) || !get_int(m, 5, &secret) ||
      !get_str(m, 6, &name) || !name) {
    waiter_done(w, ISOLA_EINVAL);
    return;
  }
  uint32_t peer_i = peer_get(node);
  if (peer_i == UINT32_MAX) {
    waiter_done(w, ISOLA_ENOMEM);
    return;
  }
  peer *pr = &g.peers[peer_i];
  if (pr->lost || (pr->inc && pr->inc != (uint64_t)inc)) {
    waiter_done(w, ISOLA_ENOTFOUND); /* its node is gone */
    return;
  }
  pending *p = calloc(1, sizeof *p);
  if (!p) {
    waiter_done(w, ISOLA_ENOMEM);
    return;
  }
  p->req = ++g.next_req;
  p->peer = peer_i;
  p->w = w;
  p->name = true;
  p->id = (uint64_t)id;
  p->secret = (uint64_t)secret;
  isola_value E[4] = {isola_int(T_NAMECHK), isola_int((int64_t)p->req),
                      isola_str(name), isola_int(id)};
  int rc = emit(peer_i, isola_list(E, 4));
  if (rc != ISOLA_OK) {
    free(p);
    waiter_done(w, rc);
    return;
  }
  p->next = g.pendings;
  g.pendings = p;
}

static void leave_all(void) {
  heartbeat(true);
  while (g.peer_waits) {
    peer_wait *w = g.peer_waits;
    g.peer_waits = w->next;
    waiter_done(w->w, ISOLA_ECLOSED);
    free(w);
  }
  natsConnection_FlushTimeout(g.nc, 1000);
  while (g.relays) relay_free(g.relays);
  while (g.pendings) {
    pending *p = g.pendings;
    g.pendings = p->next;
    waiter_done(p->w, ISOLA_ECLOSED);
    free(p);
  }
  for (;;) {
    proxy *victim = NULL;
    pthread_mutex_lock(&g.mu);
    for (size_t i = 0; i < g.by_local.cap && !victim; i++)
      if (g.by_local.keys[i])
        victim = (proxy *)(uintptr_t)g.by_local.vals[i];
    pthread_mutex_unlock(&g.mu);
    if (!victim) break;
    proxy_drop(victim);
  }
  isola_timer_cancel(g.timer);
  isola_port_close(g.in_port);
  isola_port_close(g.api_port);
}

static void on_api(void *ctx, isola_port port, isola_value m,
                   isola_port reply_to) {
  (void)ctx, (void)port, (void)reply_to;
  int64_t op;
  if (!get_int(m, 0, &op)) return;
  switch (op) {
  case OP_CTL: {
    isola_port ctl;
    uint32_t peer_i;
    if (!get_port(m, 2, &ctl) || !proxy_peer(ctl, &peer_i)) break;
    /* The same list with T_CTL in front: [3, kind, ctl, ...]. */
    isola_value E[8];
    E[0] = isola_int(T_CTL);
    for (uint32_t i = 1; i < 8 && i < m.len; i++) isola_list_get(m, i, &E[i]);
    if (m.len == 8) emit(peer_i, isola_list(E, 8));
    break;
  }
  case OP_EXIT_ADD:
  case OP_EXIT_DEL: {
    isola_port ctl, listener;
    uint32_t peer_i;
    if (!get_port(m, 1, &ctl) || !get_port(m, 2, &listener) ||
        !proxy_peer(ctl, &peer_i))
      break;
    relay *r = g.relays;
    while (r && !(r->ctl == ctl && r->listener == listener)) r = r->next;
    if (op == OP_EXIT_DEL) {
      if (!r) break;
      isola_value E[3] = {isola_int(T_EXIT_DEL), isola_sendport(ctl),
                          isola_sendport(r->port)};
      emit(peer_i, isola_list(E, 3));
      relay_free(r);
      break;
    }
    isola_value response;
    bool notice;
    if (isola_list_get(m, 3, &response) != ISOLA_OK ||
        !get_bool(m, 4, &notice))
      break;
    if (r) { /* replaced: the same relay, a new response and kind */
      isola_value copy;
      if (isola_value_copy(response, &copy) == ISOLA_OK) {
        isola_value_free(&r->response);
        r->response = copy;
        r->notice = notice;
      }
      break;
    }
    r = relay_new(peer_i, ctl, listener, response);
    if (!r) break;
    r->notice = notice;
    isola_value E[3] = {isola_int(T_EXIT_ADD), isola_sendport(ctl),
                        isola_sendport(r->port)};
    emit(peer_i, isola_list(E, 3));
    break;
  }
  case OP_SPAWN:
    op_spawn(m);
    break;
  case OP_NAME:
    op_name(m);
    break;
  case OP_WAIT_PEER: {
    int64_t wp;
    const char *node;
    if (!get_int(m, 1, &wp)) break;
    waiter *w = (waiter *)(intptr_t)wp;
    peer_wait *pw = calloc(1, sizeof *pw);
    if (!get_str(m, 2, &node) || !node || !pw) {
      free(pw);
      waiter_done(w, ISOLA_EINVAL);
      break;
    }
    snprintf(pw->node, sizeof pw->node, "%s", node);
    pw->w = w;
    pw->next = g.peer_waits;
    g.peer_waits = pw;
    break;
  }
  case OP_PROC_DEAD: {
    const char *node, *detail;
    if (!get_str(m, 1, &node) || !node || !get_str(m, 2, &detail)) break;
    uint32_t peer_i = peer_get(node);
    if (peer_i != UINT32_MAX && !g.peers[peer_i].lost)
      node_lost(peer_i, detail);
    /* A process that died before it was ever heard from. */
    for (peer_wait **pp = &g.peer_waits; *pp;) {
      peer_wait *w = *pp;
      if (strcmp(w->node, node) != 0) {
        pp = &w->next;
        continue;
      }
      *pp = w->next;
      waiter_done(w->w, ISOLA_ECLOSED);
      free(w);
    }
    break;
  }
  case OP_LEAVE: {
    int64_t wp;
    if (!get_int(m, 1, &wp)) break;
    leave_all();
    waiter_done((waiter *)(intptr_t)wp, ISOLA_OK);
    break;
  }
  default:
    break;
  }
}

static void gateway_entry(isola_value message) {
  int64_t wp = 0;
  isola_value_get_int(message, &wp);
  waiter *w = (waiter *)(intptr_t)wp;
  isola_port in = ISOLA_PORT_NONE, api = ISOLA_PORT_NONE;
  int rc = isola_port_open(on_in, NULL, &in);
  if (rc == ISOLA_OK) rc = isola_port_open(on_api, NULL, &api);
  if (rc == ISOLA_OK)
    rc = isola_timer_start(g.cfg.heartbeat_ms, g.cfg.heartbeat_ms, on_tick,
                           NULL, &g.timer);
  if (rc != ISOLA_OK) {
    if (in) isola_port_close(in);
    if (api) isola_port_close(api);
    in = api = ISOLA_PORT_NONE;
  }
  pthread_mutex_lock(&g.mu);
  g.in_port = in;
  g.api_port = api;
  pthread_mutex_unlock(&g.mu);
  atomic_store(&g_in_port, in);
  waiter_done(w, rc);
}

/* ---- NATS callbacks (libnats threads) ---------------------------------- */

static void on_nats_msg(natsConnection *nc, natsSubscription *sub,
                        natsMsg *msg, void *closure) {
  (void)nc, (void)sub;
  bool hb = closure != NULL;
  const char *subj = natsMsg_GetSubject(msg);
  /* isola.n.<to>.<from> or isola.hb.<from>: the last token. */
  const char *src = strrchr(subj, '.');
  isola_port in = atomic_load(&g_in_port);
  if (src && in) {
    isola_value items[3] = {
        isola_str(src + 1),
        isola_bytes(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg)),
        isola_bool(hb)};
    isola_send(in, isola_list(items, 3));
  }
  natsMsg_Destroy(msg);
}

static void on_disconnected(natsConnection *nc, void *closure) {
  (void)nc, (void)closure;
  atomic_store(&g_connected, false);
}

static void on_reconnected(natsConnection *nc, void *closure) {
  (void)nc, (void)closure;
  atomic_fetch_add(&g_reconnects, 1);
  atomic_store(&g_connected, true);
}

/* ---- the API ----------------------------------------------------------- */

void isola_cluster_config_init(isola_cluster_config *config) {
  if (config) memset(config, 0, sizeof *config);
}

const char *isola_cluster_error(void) { return last_error; }

const char *isola_cluster_node(void) {
  pthread_mutex_lock(&g.mu);
  const char *n = g.joined ? g.node : NULL;
  pthread_mutex_unlock(&g.mu);
  return n;
}

static int nats_fail(natsStatus s, const char *what) {
  snprintf(last_error, sizeof last_error, "%s: %s", what,
           nats_GetLastError(&s) ? nats_GetLastError(&s)
                                 : natsStatus_GetText(s));
  return ISOLA_ESYS;
}

static void free_strings(void) {
  for (size_t i = 0; i < sizeof g.strings / sizeof *g.strings; i++) {
    free(g.strings[i]);
    g.strings[i] = NULL;
  }
}

static int keep_string(const char **field, size_t slot) {
  if (!*field) return ISOLA_OK;
  g.strings[slot] = strdup(*field);
  if (!g.strings[slot]) return ISOLA_ENOMEM;
  *field = g.strings[slot];
  return ISOLA_OK;
}

static int forward_control(const isola_control_request *r);

static void teardown(void) {
  isola_control_forward_set(NULL);
  atomic_store(&g_in_port, ISOLA_PORT_NONE);
  pthread_mutex_lock(&g.kv_mu);
  if (g.kv) kvStore_Destroy(g.kv);
  if (g.js) jsCtx_Destroy(g.js);
  g.kv = NULL;
  g.js = NULL;
  g.kv_tried = false;
  pthread_mutex_unlock(&g.kv_mu);
  if (g.sub_data) natsSubscription_Destroy(g.sub_data);
  if (g.sub_hb) natsSubscription_Destroy(g.sub_hb);
  if (g.nc) {
    natsConnection_Close(g.nc);
    natsConnection_Destroy(g.nc);
  }
  g.sub_data = g.sub_hb = NULL;
  g.nc = NULL;
  pthread_mutex_lock(&g.mu);
  for (size_t i = 0; i < g.by_local.cap; i++)
    if (g.by_local.keys[i]) free((proxy *)(uintptr_t)g.by_local.vals[i]);
  map_free(&g.by_local);
  map_free(&g.by_remote);
  free(g.peers);
  g.peers = NULL;
  g.npeers = g.peers_cap = 0;
  g.in_port = g.api_port = ISOLA_PORT_NONE;
  g.joined = false;
  map_free(&g.exports);
  pthread_mutex_unlock(&g.mu);
  free_strings();
}

int isola_cluster_join(const isola_cluster_config *config) {
  last_error[0] = '\0';
  if (!config || !config->servers || !*config->servers || !config->node ||
      !node_name_ok(config->node))
    return ISOLA_EINVAL;
  if (isola_current(&(isola_isolate){0}) == ISOLA_OK) return ISOLA_EBUSY;
  pthread_mutex_lock(&g.mu);
  if (g.joined) {
    pthread_mutex_unlock(&g.mu);
    return ISOLA_EEXIST;
  }
  g.joined = true; /* claimed; undone on failure */
  pthread_mutex_unlock(&g.mu);

  g.cfg = *config;
  const char **fields[] = {&g.cfg.servers,        &g.cfg.node,
                           &g.cfg.user,           &g.cfg.password,
                           &g.cfg.token,          &g.cfg.nkey_public,
                           &g.cfg.nkey_seed_file, &g.cfg.credentials_file,
                           &g.cfg.tls_ca_file,    &g.cfg.tls_cert_file,
                           &g.cfg.tls_key_file,   &g.cfg.names_bucket,
                           &g.cfg.runner};
  int rc = ISOLA_OK;
  for (size_t i = 0; i < 13 && rc == ISOLA_OK; i++)
    rc = keep_string(fields[i], i);
  if (!g.cfg.heartbeat_ms) g.cfg.heartbeat_ms = 250;
  if (!g.cfg.node_timeout_ms) g.cfg.node_timeout_ms = 3000;
  if (!g.cfg.request_timeout_ms) g.cfg.request_timeout_ms = 5000;
  if (!g.cfg.connect_timeout_ms) g.cfg.connect_timeout_ms = 5000;
  if (!g.cfg.names_bucket) g.cfg.names_bucket = "isola_names";
  snprintf(g.node, sizeof g.node, "%s", g.cfg.node);
  snprintf(g.subj_data, sizeof g.subj_data, "isola.n.%s.*", g.node);
  snprintf(g.subj_hb, sizeof g.subj_hb, "isola.hb.%s", g.node);
  do g.inc = isola_capability_new();
  while (g.inc == 0);
  do g.name_cap = isola_capability_new();
  while (g.name_cap == 0);
  g.next_req = 0;
  g.relays = NULL;
  g.pendings = NULL;

  natsOptions *opts = NULL;
  natsStatus s = rc == ISOLA_OK ? natsOptions_Create(&opts) : NATS_NO_MEMORY;
  if (s == NATS_OK) s = natsOptions_SetURL(opts, g.cfg.servers);
  if (s == NATS_OK) s = natsOptions_SetName(opts, g.node);
  if (s == NATS_OK)
    s = natsOptions_SetTimeout(opts, (int64_t)g.cfg.connect_timeout_ms);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts, 100);
  /* libnats' own pings (every 2 minutes) only find a silent server; a
   * closed socket is seen at once.  Shorter ones made a starved process
   * (under a sanitizer, on a loaded machine) drop its connection as stale,
   * and lose what was in flight. */
  if (s == NATS_OK) s = natsOptions_SetNoEcho(opts, true);
  if (s == NATS_OK && g.cfg.send_asap) s = natsOptions_SetSendAsap(opts, true);
  if (s == NATS_OK && g.cfg.user)
    s = natsOptions_SetUserInfo(opts, g.cfg.user, g.cfg.password);
  if (s == NATS_OK && g.cfg.token) s = natsOptions_SetToken(opts, g.cfg.token);
  if (s == NATS_OK && g.cfg.nkey_public)
    s = natsOptions_SetNKeyFromSeed(opts, g.cfg.nkey_public,
                                    g.cfg.nkey_seed_file);
  if (s == NATS_OK && g.cfg.credentials_file)
    s = natsOptions_SetUserCredentialsFromFiles(opts, g.cfg.credentials_file,
                                                NULL);
  if (s == NATS_OK && g.cfg.tls) s = natsOptions_SetSecure(opts, true);
  if (s == NATS_OK && g.cfg.tls_ca_file)
    s = natsOptions_LoadCATrustedCertificates(opts, g.cfg.tls_ca_file);
  if (s == NATS_OK && g.cfg.tls_cert_file)
    s = natsOptions_LoadCertificatesChain(opts, g.cfg.tls_cert_file,
                                          g.cfg.tls_key_file);
  if (s == NATS_OK)
    s = natsOptions_SetDisconnectedCB(opts, on_disconnected, NULL);
  if (s == NATS_OK) s = natsOptions_SetReconnectedCB(opts, on_reconnected, NULL);
  if (s == NATS_OK) {
    /* A signed nonce (an nkey, or a credentials file's key) is refused
     * now and then with a valid key: about 1 connection in 200 between
     * Debian 12's libnats 3.4.1 and nats-server 2.9.10, reproduced
     * without isola (docs/cluster.md).  A refusal is tried twice more; a
     * wrong key is refused every time, so it still fails, three quick
     * refusals later. */
    int tries = g.cfg.nkey_public || g.cfg.credentials_file ? 3 : 1;
    while ((s = natsConnection_Connect(&g.nc, opts)) ==
               NATS_CONNECTION_AUTH_FAILED &&
           --tries > 0)
      g.nc = NULL;
    if (s != NATS_OK) g.nc = NULL;
  }
  if (opts) natsOptions_Destroy(opts);
  if (rc == ISOLA_OK && s != NATS_OK) rc = nats_fail(s, "cannot connect");
  if (rc == ISOLA_OK) atomic_store(&g_connected, true);
  g.seen_epoch = atomic_load(&g_reconnects);

  /* The gateway, then the subscriptions that feed it. */
  if (rc == ISOLA_OK) {
    waiter *w = waiter_new();
    if (!w) {
      rc = ISOLA_ENOMEM;
    } else {
      isola_spawn_options so = {.name = "cluster-gateway"};
      rc = isola_spawn(gateway_entry, isola_int((int64_t)(intptr_t)w), &so,
                       NULL);
      if (rc == ISOLA_OK) {
        rc = waiter_wait(w, 60000);
      } else {
        waiter_unref(w); /* the gateway's reference */
      }
      waiter_unref(w);
    }
  }
  if (rc == ISOLA_OK) {
    s = natsConnection_Subscribe(&g.sub_data, g.nc, g.subj_data, on_nats_msg,
                                 NULL);
    if (s == NATS_OK)
      s = natsConnection_Subscribe(&g.sub_hb, g.nc, "isola.hb.*", on_nats_msg,
                                   (void *)1);
    if (s == NATS_OK) s = natsSubscription_SetPendingLimits(g.sub_data, -1, -1);
    if (s == NATS_OK) s = natsSubscription_SetPendingLimits(g.sub_hb, -1, -1);
    if (s == NATS_OK) s = natsConnection_FlushTimeout(g.nc, 5000);
    if (s != NATS_OK) rc = nats_fail(s, "cannot subscribe");
  }
  if (rc != ISOLA_OK) {
    if (g.api_port) {
      waiter *w = waiter_new();
      if (w) {
        isola_value items[2] = {isola_int(OP_LEAVE),
                                isola_int((int64_t)(intptr_t)w)};
        if (isola_send(g.api_port, isola_list(items, 2)) != ISOLA_OK)
          waiter_unref(w); /* the gateway has ended already */
        else
          waiter_wait(w, 60000);
        waiter_unref(w);
      }
    }
    teardown();
    return rc;
  }
  heartbeat(false);
  isola_control_forward_set(forward_control);
  return ISOLA_OK;
}

/* Ends the processes of process spawns still running (SIGTERM: they
 * leave the cluster, which fires their listeners; SIGKILL after 10 s) and
 * reaps them.  The caller of leave. */
static void end_processes(void) {
  pthread_mutex_lock(&g.mu);
  process *procs = g.procs;
  for (process *p = procs; p; p = p->next)
    if (p->alive) kill(p->pid, SIGTERM);
  pthread_mutex_unlock(&g.mu);
  for (process *p = procs; p; p = p->next) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += 10;
    if (pthread_timedjoin_np(p->reaper, NULL, &t) != 0) {
      pthread_mutex_lock(&g.mu);
      if (p->alive) kill(p->pid, SIGKILL);
      pthread_mutex_unlock(&g.mu);
      pthread_join(p->reaper, NULL);
    }
  }
  pthread_mutex_lock(&g.mu);
  procs = g.procs;
  g.procs = NULL;
  pthread_mutex_unlock(&g.mu);
  while (procs) {
    process *p = procs;
    procs = p->next;
    free(p);
  }
}

int isola_cluster_leave(void) {
  pthread_mutex_lock(&g.mu);
  bool joined = g.joined && g.api_port;
  pthread_mutex_unlock(&g.mu);
  if (!joined) return ISOLA_ENOVM;
  if (isola_current(&(isola_isolate){0}) == ISOLA_OK) return ISOLA_EBUSY;
  end_processes();
  waiter *w = waiter_new();
  if (!w) return ISOLA_ENOMEM;
  isola_value items[2] = {isola_int(OP_LEAVE),
                          isola_int((int64_t)(intptr_t)w)};
  int rc = isola_send(g.api_port, isola_list(items, 2));
  if (rc != ISOLA_OK)
    waiter_unref(w);
  else
    waiter_wait(w, 60000);
  waiter_unref(w);
  teardown();
  return ISOLA_OK;
}

int isola_cluster_port_node(isola_port port, char *buf, size_t cap) {
  if (!buf || port == ISOLA_PORT_NONE) return ISOLA_EINVAL;
  pthread_mutex_lock(&g.mu);
  if (!g.joined) {
    pthread_mutex_unlock(&g.mu);
    return ISOLA_ENOVM;
  }
  uint64_t v;
  const char *n = g.node;
  if (map_get(&g.by_local, port, &v))
    n = g.peers[((proxy *)(uintptr_t)v)->peer].name;
  size_t len = strlen(n);
  int rc = ISOLA_ERANGE;
  if (len < cap) {
    memcpy(buf, n, len + 1);
    rc = ISOLA_OK;
  }
  pthread_mutex_unlock(&g.mu);
  return rc;
}

/* Whether port is a proxy; *api gets the gateway's request port. */
static int remote(isola_port port, bool *is, isola_port *api) {
  pthread_mutex_lock(&g.mu);
  if (!g.joined || !g.api_port) {
    pthread_mutex_unlock(&g.mu);
    *is = false;
    return ISOLA_ENOVM;
  }
  *is = map_get(&g.by_local, port, NULL);
  *api = g.api_port;
  pthread_mutex_unlock(&g.mu);
  return ISOLA_OK;
}

/* A control request for the isolate whose control port is the proxy ctl:
 * to the gateway, which sends it to the isolate's node. */
static int ctl_request(isola_port api, int kind, isola_port ctl,
                       isola_capability cap, isola_capability cap2,
                       isola_port arg, isola_value response, int prio) {
  isola_value items[8] = {isola_int(OP_CTL),
                          isola_int(kind),
                          isola_sendport(ctl),
                          isola_cap(cap),
                          isola_cap(cap2),
                          arg ? isola_sendport(arg) : isola_null(),
                          response,
                          isola_int(prio)};
  return isola_send(api, isola_list(items, 8));
}

/* The core's forwarder (isola_control_forward_set()): isola_pause(),
 * isola_kill() ... on a handle whose control port is one of our proxies.
 * The core made its own checks (capabilities present, arguments) first. */
static int forward_control(const isola_control_request *r) {
  isola_port ctl = r->isolate.control_port, api;
  bool is;
  if (remote(ctl, &is, &api) != ISOLA_OK || !is) return ISOLA_ECLOSED;
  const isola_isolate *h = &r->isolate;
  int rc;
  switch (r->kind) {
  case ISOLA_CONTROL_PAUSE:
  case ISOLA_CONTROL_RESUME:
    rc = ctl_request(api, r->kind == ISOLA_CONTROL_PAUSE ? K_PAUSE : K_RESUME,
                     ctl, h->pause_capability, r->resume, ISOLA_PORT_NONE,
                     isola_null(), 0);
    break;
  case ISOLA_CONTROL_KILL:
    rc = ctl_request(api, K_KILL, ctl, h->terminate_capability, 0,
                     ISOLA_PORT_NONE, isola_null(), r->priority);
    break;
  case ISOLA_CONTROL_ERRORS_FATAL:
    rc = ctl_request(api, K_FATAL, ctl, h->terminate_capability, 0,
                     ISOLA_PORT_NONE, isola_null(), r->fatal);
    break;
  case ISOLA_CONTROL_PING:
    rc = ctl_request(api, K_PING, ctl, 0, 0, r->port, r->response,
                     r->priority);
    break;
  case ISOLA_CONTROL_ERROR_ADD:
  case ISOLA_CONTROL_ERROR_NOTICE_ADD:
  case ISOLA_CONTROL_ERROR_REMOVE:
    rc = ctl_request(api,
                     r->kind == ISOLA_CONTROL_ERROR_ADD          ? K_ERR_ADD
                     : r->kind == ISOLA_CONTROL_ERROR_NOTICE_ADD ? K_ERRN_ADD
                                                                 : K_ERR_DEL,
                     ctl, 0, 0, r->port, isola_null(), 0);
    break;
  case ISOLA_CONTROL_EXIT_ADD:
  case ISOLA_CONTROL_EXIT_NOTICE_ADD: {
    isola_value items[5] = {
        isola_int(OP_EXIT_ADD), isola_sendport(ctl), isola_sendport(r->port),
        r->response, isola_bool(r->kind == ISOLA_CONTROL_EXIT_NOTICE_ADD)};
    rc = isola_send(api, isola_list(items, 5));
    break;
  }
  case ISOLA_CONTROL_EXIT_REMOVE: {
    isola_value items[3] = {isola_int(OP_EXIT_DEL), isola_sendport(ctl),
                            isola_sendport(r->port)};
    rc = isola_send(api, isola_list(items, 3));
    break;
  }
  default:
    return ISOLA_EINVAL;
  }
  return rc; /* ISOLA_ECLOSED: the gateway ended (we left) */
}

static int spawn_remote(const char *node, const char *path, isola_value args,
                        isola_value message, const isola_spawn_options *opts,
                        isola_isolate *out, pid_t pid);

int isola_cluster_spawn_uri(const char *node, const char *path,
                            isola_value args, isola_value message,
                            const isola_spawn_options *opts,
                            isola_isolate *out) {
  return spawn_remote(node, path, args, message, opts, out, 0);
}

static int spawn_remote(const char *node, const char *path, isola_value args,
                        isola_value message, const isola_spawn_options *opts,
                        isola_isolate *out, pid_t pid) {
  if (!node || !path || !*path || !node_name_ok(node)) return ISOLA_EINVAL;
  pthread_mutex_lock(&g.mu);
  bool joined = g.joined && g.api_port;
  isola_port api = g.api_port;
  bool self = joined && strcmp(node, g.node) == 0;
  unsigned timeout = g.cfg.request_timeout_ms;
  pthread_mutex_unlock(&g.mu);
  if (!joined) return ISOLA_ENOVM;
  if (self) return isola_spawn_uri(path, args, message, opts, out);
  waiter *w = waiter_new();
  if (!w) return ISOLA_ENOMEM;
  isola_spawn_options o = {0};
  if (opts) o = *opts;
  isola_value items[16] = {
      isola_int(OP_SPAWN),
      isola_int((int64_t)(intptr_t)w),
      isola_str(node),
      isola_str(path),
      args,
      message,
      o.name ? isola_str(o.name) : isola_null(),
      o.on_exit ? isola_sendport(o.on_exit) : isola_null(),
      o.on_exit ? o.on_exit_message : isola_null(),
      o.on_error ? isola_sendport(o.on_error) : isola_null(),
      isola_bool(o.paused),
      isola_bool(o.errors_nonfatal),
      isola_int((int64_t)o.heap_limit),
      isola_bool(o.exit_notice),
      isola_int((int64_t)pid),
      isola_bool(o.error_notice)};
  int rc = isola_send(api, isola_list(items, 16));
  if (rc != ISOLA_OK) {
    waiter_unref(w);
    waiter_unref(w);
    return rc == ISOLA_ECLOSED ? ISOLA_ENOVM : rc;
  }
  rc = waiter_wait(w, timeout);
  if (rc == ISOLA_OK && out) *out = w->handle;
  if (rc == ISOLA_EMODULE || rc == ISOLA_EABI || rc == ISOLA_ENOENTRY)
    snprintf(last_error, sizeof last_error, "%s", w->err);
  waiter_unref(w);
  return rc;
}

/* ---- cluster-wide names (JetStream key-value) -------------------------- */

/* The names bucket, opened (or created) on first use.  NULL: no
 * JetStream on the server. */
static kvStore *names_kv(void) {
  pthread_mutex_lock(&g.kv_mu);
  if (!g.kv_tried && g.nc) {
    g.kv_tried = true;
    natsStatus s = natsConnection_JetStream(&g.js, g.nc, NULL);
    if (s == NATS_OK) s = js_KeyValue(&g.kv, g.js, g.cfg.names_bucket);
    if (s != NATS_OK && g.js) {
      kvConfig kc;
      kvConfig_Init(&kc);
      kc.Bucket = g.cfg.names_bucket;
      kc.History = 1;
      s = js_CreateKeyValue(&g.kv, g.js, &kc);
      if (s != NATS_OK) s = js_KeyValue(&g.kv, g.js, g.cfg.names_bucket);
    }
    if (s != NATS_OK) {
      g.kv = NULL;
      if (g.js) jsCtx_Destroy(g.js);
      g.js = NULL;
    }
  }
  kvStore *kv = g.kv;
  pthread_mutex_unlock(&g.kv_mu);
  return kv;
}

/* A key for name: its bytes in hex (keys allow few characters). */
static bool name_key(const char *name, char *key, size_t cap) {
  static const char hex[] = "0123456789abcdef";
  size_t n = name ? strlen(name) : 0;
  if (n == 0 || n > ISOLA_NAME_MAX || 2 * n + 2 > cap) return false;
  key[0] = 'n';
  for (size_t i = 0; i < n; i++) {
    key[1 + 2 * i] = hex[(uint8_t)name[i] >> 4];
    key[2 + 2 * i] = hex[(uint8_t)name[i] & 15];
  }
  key[1 + 2 * n] = '\0';
  return true;
}

typedef struct name_entry {
  char node[ISOLA_CLUSTER_NODE_MAX + 1];
  uint64_t inc, id, secret;
  uint64_t rev;
} name_entry;

static int name_get(kvStore *kv, const char *key, name_entry *e) {
  kvEntry *ke = NULL;
  natsStatus s = kvStore_Get(&ke, kv, key);
  if (s == NATS_NOT_FOUND) return ISOLA_ENOTFOUND;
  if (s != NATS_OK) return ISOLA_ESYS;
  isola_value v;
  int rc = isola_wire_decode(kvEntry_Value(ke), (size_t)kvEntry_ValueLen(ke),
                             &g.cfg.limits, &v);
  e->rev = kvEntry_Revision(ke);
  kvEntry_Destroy(ke);
  if (rc != ISOLA_OK) return ISOLA_ENOTFOUND;
  const char *node;
  int64_t inc, id, secret;
  rc = ISOLA_ENOTFOUND;
  if (v.kind == ISOLA_LIST && v.len == 4 && get_str(v, 0, &node) && node &&
      node_name_ok(node) && get_int(v, 1, &inc) && get_int(v, 2, &id) &&
      get_int(v, 3, &secret)) {
    snprintf(e->node, sizeof e->node, "%s", node);
    e->inc = (uint64_t)inc;
    e->id = (uint64_t)id;
    e->secret = (uint64_t)secret;
    rc = ISOLA_OK;
  }
  isola_value_free(&v);
  return rc;
}

/* Whether e still holds: its port is open and still has the name, at its
 * node's current incarnation.  *out gets the port as this node sees it. */
static int name_check(const char *name, const name_entry *e,
                      isola_port *out) {
  pthread_mutex_lock(&g.mu);
  bool mine = strcmp(e->node, g.node) == 0;
  isola_port api = g.api_port;
  unsigned timeout = g.cfg.request_timeout_ms;
  pthread_mutex_unlock(&g.mu);
  if (mine) {
    isola_port p;
    if (e->inc != g.inc || isola_name_lookup(name, &p) != ISOLA_OK ||
        p != e->id)
      return ISOLA_ENOTFOUND;
    *out = p;
    return ISOLA_OK;
  }
  waiter *w = waiter_new();
  if (!w) return ISOLA_ENOMEM;
  isola_value items[7] = {isola_int(OP_NAME),
                          isola_int((int64_t)(intptr_t)w),
                          isola_str(e->node),
                          isola_int((int64_t)e->inc),
                          isola_int((int64_t)e->id),
                          isola_int((int64_t)e->secret),
                          isola_str(name)};
  int rc = isola_send(api, isola_list(items, 7));
  if (rc != ISOLA_OK) {
    waiter_unref(w);
    waiter_unref(w);
    return ISOLA_ENOVM;
  }
  rc = waiter_wait(w, timeout);
  if (rc == ISOLA_OK) *out = w->handle.control_port;
  waiter_unref(w);
  /* A node that is lost, or does not answer, holds no names. */
  if (rc == ISOLA_ECLOSED || rc == ISOLA_ETIMEDOUT) rc = ISOLA_ENOTFOUND;
  return rc;
}

static int names_begin(const char *name, char *key, size_t cap,
                       kvStore **kv) {
  if (!name_key(name, key, cap)) return ISOLA_EINVAL;
  pthread_mutex_lock(&g.mu);
  bool joined = g.joined && g.api_port;
  pthread_mutex_unlock(&g.mu);
  if (!joined) return ISOLA_ENOVM;
  *kv = names_kv();
  return *kv ? ISOLA_OK : ISOLA_EUNSUPPORTED;
}

int isola_cluster_name_register(const char *name, isola_port port) {
  char key[2 * ISOLA_NAME_MAX + 4];
  kvStore *kv;
  if (port == ISOLA_PORT_NONE) return ISOLA_EINVAL;
  int rc = names_begin(name, key, sizeof key, &kv);
  if (rc != ISOLA_OK) return rc;
  pthread_mutex_lock(&g.mu);
  bool is_proxy = map_get(&g.by_local, port, NULL);
  pthread_mutex_unlock(&g.mu);
  if (is_proxy) return ISOLA_EINVAL; /* a port of another node */
  /* Locally first: the local name server checks the port and drops the
   * name when the port closes, which is what the others check. */
  rc = isola_name_register_cap(name, port, g.name_cap);
  if (rc != ISOLA_OK) return rc;
  uint64_t secret = export_port(port);
  isola_value items[4] = {isola_str(g.node), isola_int((int64_t)g.inc),
                          isola_int((int64_t)port), isola_int((int64_t)secret)};
  uint8_t *buf = NULL;
  size_t len = 0;
  rc = secret ? isola_wire_encode(isola_list(items, 4), &buf, &len)
              : ISOLA_ENOMEM;
  bool blocking = isola_blocking_begin() == ISOLA_OK;
  for (int attempt = 0; rc == ISOLA_OK && attempt < 2; attempt++) {
    uint64_t rev;
    if (kvStore_Create(&rev, kv, key, buf, (int)len) == NATS_OK) break;
    /* Taken, unless what holds it is stale: then replace it, if nobody
     * else did meanwhile (the revision must still be the one read). */
    name_entry e;
    int g_rc = name_get(kv, key, &e);
    if (g_rc == ISOLA_ENOTFOUND) continue; /* deleted meanwhile */
    if (g_rc != ISOLA_OK) {
      rc = g_rc;
      break;
    }
    isola_port p;
    int c = name_check(name, &e, &p);
    if (c == ISOLA_OK) {
      rc = ISOLA_ENAMETAKEN;
    } else if (c != ISOLA_ENOTFOUND) {
      rc = c;
    } else if (kvStore_Update(&rev, kv, key, buf, (int)len, e.rev) !=
               NATS_OK) {
      rc = ISOLA_ENAMETAKEN;
    }
    break;
  }
  if (blocking) isola_blocking_end();
  free(buf);
  if (rc != ISOLA_OK) isola_name_remove_cap(name, g.name_cap);
  return rc;
}

int isola_cluster_name_lookup(const char *name, isola_port *out) {
  char key[2 * ISOLA_NAME_MAX + 4];
  kvStore *kv;
  if (out) *out = ISOLA_PORT_NONE;
  if (!out) return ISOLA_EINVAL;
  int rc = names_begin(name, key, sizeof key, &kv);
  if (rc != ISOLA_OK) return rc;
  bool blocking = isola_blocking_begin() == ISOLA_OK;
  name_entry e;
  rc = name_get(kv, key, &e);
  if (blocking) isola_blocking_end();
  if (rc != ISOLA_OK) return rc;
  return name_check(name, &e, out);
}

int isola_cluster_name_remove(const char *name) {
  char key[2 * ISOLA_NAME_MAX + 4];
  kvStore *kv;
  int rc = names_begin(name, key, sizeof key, &kv);
  if (rc != ISOLA_OK) return rc;
  bool blocking = isola_blocking_begin() == ISOLA_OK;
  name_entry e;
  rc = name_get(kv, key, &e);
  if (rc == ISOLA_OK) {
    /* Only this node's names, as only a name's owner removes it locally;
     * the local entry goes first, so a lookup racing with us finds none. */
    if (strcmp(e.node, g.node) != 0 || e.inc != g.inc)
      rc = ISOLA_EPERM;
    else if (isola_name_remove_cap(name, g.name_cap) != ISOLA_OK)
      rc = ISOLA_ENOTFOUND; /* its port closed: the entry is stale, and
                               another node may be replacing it */
    else if (kvStore_Delete(kv, key) != NATS_OK)
      rc = ISOLA_ESYS;
  }
  if (blocking) isola_blocking_end();
  return rc;
}

/* ---- spawning into a new process ---------------------------------------- */

extern char **environ;

static void *reaper(void *arg) {
  process *p = arg;
  int status = 0;
  while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR) {
  }
  char detail[200];
  if (WIFSIGNALED(status))
    snprintf(detail, sizeof detail,
             "process %d (node %s) was ended by signal %d (%s)", (int)p->pid,
             p->node, WTERMSIG(status), strsignal(WTERMSIG(status)));
  else
    snprintf(detail, sizeof detail,
             "process %d (node %s) exited with status %d", (int)p->pid,
             p->node, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  pthread_mutex_lock(&g.mu);
  p->alive = false;
  isola_port api = g.api_port;
  pthread_mutex_unlock(&g.mu);
  if (api) {
    isola_value items[3] = {isola_int(OP_PROC_DEAD), isola_str(p->node),
                            isola_str(detail)};
    isola_send(api, isola_list(items, 3));
  }
  return NULL;
}

/* Starts `runner node ...` as node name; *pid gets it. */
static int start_process(const char *name, pid_t *pid) {
  char hb[16], to[16];
  snprintf(hb, sizeof hb, "%u", g.cfg.heartbeat_ms);
  snprintf(to, sizeof to, "%u", g.cfg.node_timeout_ms);
  const char *runner = g.cfg.runner ? g.cfg.runner : getenv("ISOLA_RUNNER");
  if (!runner || !*runner) runner = "isola";
  const char *argv[32];
  int n = 0;
  argv[n++] = runner;
  argv[n++] = "node";
  argv[n++] = "--cluster";
  argv[n++] = g.cfg.servers;
  argv[n++] = "--node";
  argv[n++] = name;
  argv[n++] = "--heartbeat-ms";
  argv[n++] = hb;
  argv[n++] = "--node-timeout-ms";
  argv[n++] = to;
  const struct {
    const char *opt, *val;
  } pass[] = {{"--nats-user", g.cfg.user},
              {"--nats-creds", g.cfg.credentials_file},
              {"--nats-nkey", g.cfg.nkey_public},
              {"--nats-nkey-seed", g.cfg.nkey_seed_file},
              {"--tls-ca", g.cfg.tls_ca_file},
              {"--tls-cert", g.cfg.tls_cert_file},
              {"--tls-key", g.cfg.tls_key_file}};
  for (size_t i = 0; i < sizeof pass / sizeof *pass; i++)
    if (pass[i].val) {
      argv[n++] = pass[i].opt;
      argv[n++] = pass[i].val;
    }
  argv[n] = NULL;
  /* Secrets go in the environment, not on a command line others can
   * read in /proc. */
  size_t nenv = 0;
  while (environ[nenv]) nenv++;
  char **envp = calloc(nenv + 3, sizeof *envp);
  char *pw = NULL, *tok = NULL;
  if (!envp) return ISOLA_ENOMEM;
  size_t k = 0;
  for (size_t i = 0; i < nenv; i++)
    if (strncmp(environ[i], "ISOLA_NATS_PASSWORD=", 20) != 0 &&
        strncmp(environ[i], "ISOLA_NATS_TOKEN=", 17) != 0)
      envp[k++] = environ[i];
  if (g.cfg.password && asprintf(&pw, "ISOLA_NATS_PASSWORD=%s",
                                 g.cfg.password) >= 0)
    envp[k++] = pw;
  if (g.cfg.token && asprintf(&tok, "ISOLA_NATS_TOKEN=%s", g.cfg.token) >= 0)
    envp[k++] = tok;
  envp[k] = NULL;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  /* Its "joined" line is for scripts; keep stderr for crash reports. */
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  int e = posix_spawnp(pid, runner, &fa, NULL, (char *const *)argv, envp);
  posix_spawn_file_actions_destroy(&fa);
  free(pw);
  free(tok);
  free(envp);
  if (e != 0) {
    snprintf(last_error, sizeof last_error, "cannot start %s: %s", runner,
             strerror(e));
    return ISOLA_ESYS;
  }
  return ISOLA_OK;
}

int isola_cluster_spawn_process(const char *path, isola_value args,
                                isola_value message,
                                const isola_spawn_options *opts,
                                isola_isolate *out) {
  last_error[0] = '\0';
  if (!path || !*path) return ISOLA_EINVAL;
  pthread_mutex_lock(&g.mu);
  bool joined = g.joined && g.api_port;
  isola_port api = g.api_port;
  unsigned n = ++g.nprocs;
  unsigned wait_ms = g.cfg.connect_timeout_ms + g.cfg.request_timeout_ms;
  pthread_mutex_unlock(&g.mu);
  if (!joined) return ISOLA_ENOVM;
  char name[ISOLA_CLUSTER_NODE_MAX + 1];
  snprintf(name, sizeof name, "%.40s-p%u-%04x", g.node, n,
           (unsigned)(g.inc & 0xffff));
  /* Wait for its first heartbeat: asked for before it can send one. */
  waiter *w = waiter_new();
  process *p = calloc(1, sizeof *p);
  if (!w || !p) {
    free(w);
    free(p);
    return ISOLA_ENOMEM;
  }
  isola_value items[3] = {isola_int(OP_WAIT_PEER),
                          isola_int((int64_t)(intptr_t)w), isola_str(name)};
  int rc = isola_send(api, isola_list(items, 3));
  if (rc != ISOLA_OK) {
    waiter_unref(w);
    waiter_unref(w);
    free(p);
    return ISOLA_ENOVM;
  }
  snprintf(p->node, sizeof p->node, "%s", name);
  rc = start_process(name, &p->pid);
  if (rc == ISOLA_OK) {
    p->alive = true;
    pthread_mutex_lock(&g.mu);
    if (pthread_create(&p->reaper, NULL, reaper, p) != 0) {
      rc = ISOLA_ESYS;
    } else {
      p->next = g.procs;
      g.procs = p;
    }
    pthread_mutex_unlock(&g.mu);
    if (rc != ISOLA_OK) {
      kill(p->pid, SIGKILL);
      waitpid(p->pid, NULL, 0);
    }
  }
  if (rc != ISOLA_OK) {
    /* Nothing will be heard from it: end the wait. */
    isola_value dead[3] = {isola_int(OP_PROC_DEAD), isola_str(name),
                           isola_str("not started")};
    isola_send(api, isola_list(dead, 3));
    waiter_wait(w, wait_ms);
    waiter_unref(w);
    free(p);
    return rc;
  }
  rc = waiter_wait(w, wait_ms);
  waiter_unref(w);
  if (rc == ISOLA_OK)
    rc = spawn_remote(name, path, args, message, opts, out, p->pid);
  else if (!last_error[0])
    snprintf(last_error, sizeof last_error,
             "the process for node %s did not join the cluster", name);
  if (rc != ISOLA_OK) {
    pthread_mutex_lock(&g.mu);
    if (p->alive) kill(p->pid, SIGTERM);
    pthread_mutex_unlock(&g.mu);
    if (rc == ISOLA_ECLOSED) rc = ISOLA_ESYS; /* it died on the way */
  }
  return rc;
}
