/* SPDX-License-Identifier: MIT */
/*
 * isola_cluster — isolates across processes and machines, on NATS.
 *
 * A separate component (library isola_cluster, built when libnats is
 * found): the core library (isola.h) does not depend on it.  A process
 * whose VM runs joins a cluster as a *node* with a name; isolates of
 * different nodes then exchange messages through ports as they do inside
 * one process, and a node can spawn isolates on another.  Everything
 * travels through a NATS server (or a NATS cluster) on subjects described
 * in docs/cluster.md, which also holds the failure semantics and the
 * threat model.
 *
 * Remote ports.  A port value in a message sent to another node arrives
 * there as a *proxy*: a port of the receiving node that isola_send()
 * accepts like any other, and that forwards what it gets to the port's
 * home node.  The same remote port always arrives as the same proxy value
 * (so == holds), and a proxy sent back to its home node arrives as the
 * original port.  A reply_to crosses the same way.  Values cross as the
 * CBOR wire format (docs/wire-format.md) and are decoded with the limits
 * of isola_cluster_config.limits; a transferable buffer arrives as bytes
 * (ISOLA_BYTES).  Order: messages from one node to another are handled in
 * the order the senders sent them (one sender's messages to one remote
 * isolate keep their order, across that isolate's ports).
 *
 * A send to a proxy is asynchronous, as a local send is: it returns
 * ISOLA_OK once the message is queued for the network.  A message for a
 * port that has closed at home is dropped there, as a message queued for a
 * local port that closes is dropped; the home node then tells the sender's
 * node, which closes the proxy, so later sends to it return ISOLA_ECLOSED.
 * When a node is lost (see "Failure detection" in docs/cluster.md) every
 * proxy for its ports is closed: sends to them return ISOLA_ECLOSED.
 *
 * One cluster membership per process, like one VM per process.
 */
#ifndef ISOLA_CLUSTER_H
#define ISOLA_CLUSTER_H

#include <isola.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Longest node name in bytes.  A node name is 1..ISOLA_CLUSTER_NODE_MAX
 * bytes of ASCII letters, digits, '-' and '_' (it is a NATS subject
 * token). */
#define ISOLA_CLUSTER_NODE_MAX 64

typedef struct isola_cluster_config {
  /* NATS server URLs, comma-separated ("nats://127.0.0.1:4222,nats://..."):
   * the client connects to one and fails over to the others.  Required. */
  const char *servers;
  /* This node's name, unique in the cluster.  Required. */
  const char *node;
  /* Authentication, passed to libnats as given (NULL: not used): a user
   * and password, a token, an nkey (public key and seed file), or a
   * credentials file (JWT + nkey seed).  With an nkey or credentials, a
   * connection the server refuses is tried up to three times in all: the
   * server refuses about 1 in 200 with a valid key (docs/cluster.md). */
  const char *user;
  const char *password;
  const char *token;
  const char *nkey_public;
  const char *nkey_seed_file;
  const char *credentials_file;
  /* TLS: true requires it; the CA file verifies the server; a certificate
   * and key file (both or neither) authenticate this node to the server.
   * A "tls://" URL also turns TLS on. */
  bool tls;
  const char *tls_ca_file;
  const char *tls_cert_file;
  const char *tls_key_file;
  /* Heartbeat period (0: 250 ms) and how long a node may stay silent
   * before it is taken as lost (0: 3000 ms).  A lost node is detected
   * within node_timeout_ms + heartbeat_ms of its last heartbeat. */
  unsigned heartbeat_ms;
  unsigned node_timeout_ms;
  /* How long a call that needs another node's answer (remote spawn, name
   * lookup) waits for it (0: 5000 ms); and how long isola_cluster_join()
   * tries to reach a server (0: 5000 ms). */
  unsigned request_timeout_ms;
  unsigned connect_timeout_ms;
  /* Write every message to the server at once (libnats' SendAsap).  By
   * default libnats' flusher thread writes what was published after
   * waiting about a millisecond, to batch: that millisecond is most of a
   * cross-node hop when traffic is light (docs/cluster.md has both
   * figures); at once, every message costs a write system call, so a
   * node passes fewer messages per second under load. */
  bool send_asap;
  /* Serve remote spawns (isola_cluster_spawn_uri() from other nodes):
   * they load modules from this node's file system, so it is off unless
   * set (`isola node` sets it). */
  bool allow_spawn;
  /* Limits for decoding what arrives from the network (zero fields take
   * the defaults of isola_wire_decode()). */
  isola_wire_limits limits;
  /* The JetStream key-value bucket holding cluster-wide names (NULL:
   * "isola_names").  Names need a server with JetStream (nats-server
   * -js); without it the name calls return ISOLA_EUNSUPPORTED. */
  const char *names_bucket;
  /* The `isola` runner that isola_cluster_spawn_process() starts (NULL:
   * $ISOLA_RUNNER, else "isola" searched in PATH). */
  const char *runner;
} isola_cluster_config;

/* Fills *config with the defaults (every field 0 or NULL). */
ISOLA_EXPORT void isola_cluster_config_init(isola_cluster_config *config);

/*
 * Joins the cluster: connects to a server of config->servers as node
 * config->node, starts the node's gateway (a hidden isolate that owns the
 * proxies) and its heartbeat.  The VM must be running; leave before
 * isola_vm_shutdown().  config is copied.  Errors: ISOLA_EINVAL (config,
 * servers or node NULL, a bad node name, a zero-length URL list),
 * ISOLA_EEXIST (already joined), ISOLA_ENOVM, ISOLA_ESHUTDOWN, ISOLA_ESYS
 * (no server could be reached, or authentication or TLS failed:
 * isola_cluster_error() says why), ISOLA_ENOMEM.  Any thread that is not
 * an isolate.
 */
ISOLA_EXPORT int isola_cluster_join(const isola_cluster_config *config);

/*
 * Leaves the cluster: tells the other nodes (they take this node as lost
 * at once: their exit listeners on its isolates fire), closes every proxy
 * (sends to them then return ISOLA_ECLOSED), ends the gateway and closes
 * the connection.  This node's isolates keep running.  Errors:
 * ISOLA_ENOVM (not joined).  Any thread that is not an isolate.
 */
ISOLA_EXPORT int isola_cluster_leave(void);

/* This node's name, or NULL when not joined.  The string stays valid until
 * isola_cluster_leave().  Any thread. */
ISOLA_EXPORT const char *isola_cluster_node(void);

/* Why the last isola_cluster_join() on the calling thread failed (libnats'
 * words), or why the last isola_cluster_spawn_uri() could not load its
 * module on the remote node (that node's loader's words).  The thread's
 * own string.  Any thread. */
ISOLA_EXPORT const char *isola_cluster_error(void);

/* Where port lives: copies its home node's name (NUL-terminated, at most
 * cap bytes with the NUL) to buf.  A port of this process gives this
 * node's name.  Errors: ISOLA_EINVAL (buf NULL or port NONE), ISOLA_ERANGE
 * (cap too small), ISOLA_ENOVM (not joined).  Any thread. */
ISOLA_EXPORT int isola_cluster_port_node(isola_port port, char *buf,
                                         size_t cap);

/*
 * isola_spawn_uri() on the node named node: that node loads the module at
 * path (from its own file system, as dlopen() finds it) and starts it in a
 * new group there, with copies of args and message (ports in them cross as
 * described above).  opts (may be NULL): name, paused, errors_nonfatal and
 * heap_limit as for a local spawn; on_exit and on_error may be ports of
 * any node (on_exit_message is copied and stays on this node: it is what
 * the listener gets, here, also when the node is lost).  *out (may be
 * NULL) receives a handle whose control port is a proxy for the remote
 * isolate's, with its capabilities: use it with the core's control calls
 * (isola_kill() ..., see "Isolate control across nodes" below).  If node
 * is this node, it is a local isola_spawn_uri().  Waits for the remote
 * node's answer.
 * Errors: those of isola_spawn_uri() on the remote node (ISOLA_EMODULE,
 * ISOLA_EABI, ISOLA_ENOENTRY: isola_cluster_error() on the calling
 * thread then holds the remote loader's words), ISOLA_EPERM (the node does not
 * serve remote spawns), ISOLA_ECLOSED (the node is lost or left),
 * ISOLA_ETIMEDOUT (no answer within request_timeout_ms: whether the
 * isolate started is unknown), ISOLA_EINVAL (path or node NULL, a bad
 * node name), ISOLA_ENOVM (not joined), ISOLA_ENOMEM.  Any thread; from an
 * isolate the wait runs inside isola_blocking_begin()/end().
 */
ISOLA_EXPORT int isola_cluster_spawn_uri(const char *node, const char *path,
                                         isola_value args,
                                         isola_value message,
                                         const isola_spawn_options *opts,
                                         isola_isolate *out);

/*
 * Crash isolation: as isola_cluster_spawn_uri(), on a node of its own in a
 * new process of this machine.  Starts the runner (config.runner) as
 * `isola node` named "<this node>-p<n>-<hex>", with this node's servers,
 * credentials (passwords and tokens through the environment) and timings;
 * waits for it to join, then spawns the module there.  A crash there (a
 * segfault in a handler) ends that process only: its isolates' exit
 * listeners get ISOLA_EXIT_NODE_LOST with a detail naming the signal (see
 * the exit notices below), at once, from the process's exit status.  When
 * the isolate ends, its process is told to end (SIGTERM);
 * isola_cluster_leave() ends those still running.  The process is reaped by
 * a thread of this component: do not wait for it yourself.  Errors: those
 * of isola_cluster_spawn_uri(), and ISOLA_ESYS (the runner could not be
 * started, or ended or did not join within connect_timeout_ms +
 * request_timeout_ms: isola_cluster_error() says why).  Any thread; from
 * an isolate the waits run inside isola_blocking_begin()/end().
 */
ISOLA_EXPORT int isola_cluster_spawn_process(const char *path,
                                             isola_value args,
                                             isola_value message,
                                             const isola_spawn_options *opts,
                                             isola_isolate *out);

/*
 * Isolate control across nodes.  A remote isolate's handle (from
 * isola_cluster_spawn_uri(), or a control port received in a message with
 * isola_isolate_from_port()) works with the core's calls, isola_pause(),
 * isola_resume(), isola_kill(), isola_ping(), isola_set_errors_fatal(),
 * isola_add_exit_listener() and the other listener calls, exactly as a
 * local one: while joined, the core hands a request for a remote control
 * port to this component (isola_control_forward_set()), which sends it to
 * the isolate's node, where the core call is made with the handle's
 * capabilities.  So:
 *
 *   - the core's checks are made here first: a handle without the
 *     capability gets ISOLA_EPERM, a bad argument ISOLA_EINVAL;
 *   - a wrong (forged) capability is ignored by the isolate, as locally;
 *   - a handle whose node is lost or left (its proxy is closed), or whose
 *     isolate is known here to have ended, gets ISOLA_ECLOSED;
 *   - the calls are asynchronous, as locally; what the remote node finds
 *     (the isolate has just ended) is not reported to the call, but the
 *     node answers as for a closed port, so later calls on that handle
 *     return ISOLA_ECLOSED;
 *   - requests to one node keep their order, and their order with the
 *     messages this process sends to that node (a kill after a send takes
 *     effect after that send, also at ISOLA_IMMEDIATE);
 *   - ports in them (ping's response port, listeners) may be of any node;
 *   - an exit listener added after the remote isolate ended is dropped
 *     there, as a local request that reaches an ending isolate (prefer
 *     the spawn option on_exit, as locally).
 *
 * Exit listeners on a remote isolate get their response (kept on this
 * node) exactly once when the isolate ends, or when its node is lost
 * (within node_timeout_ms + heartbeat_ms of its last heartbeat), leaves,
 * or (isola_cluster_spawn_process()) its process ends.  An exit notice
 * listener gets [reason, isolate, detail, response] (isola.h), isolate
 * being the control port as this node knows it; when the isolate's node
 * is gone the reason is ISOLA_EXIT_NODE_LOST and detail says how ("node
 * lost", "node left", "node restarted", or for a process spawn e.g.
 * "process 4242 (node main-p1-1a2b) was ended by signal 11 (Segmentation
 * fault)").  Error notices are [message, stack trace, isolate], isolate as
 * this node knows it.  The spawn options on_exit (with exit_notice) and
 * on_error (with error_notice) cross too.
 */

/*
 * Cluster-wide names: isola_name_register() for the whole cluster, kept in
 * a JetStream key-value bucket (config.names_bucket) on the NATS servers.
 * The same rules as the local name server: a name maps to one port; a
 * taken name fails with ISOLA_ENAMETAKEN on every node; a name lives as
 * long as its port and its node: a lookup returns ISOLA_ENOTFOUND once
 * the port has closed or its node is lost or left (the registering node
 * is asked, so a lookup costs a key-value read and a round trip to that
 * node).  Only a port of this process may be registered (it is also
 * registered in the local name server under the same name, with a
 * removal capability of the cluster component).  A lookup
 * gives a proxy for a remote port, the port itself for a local one.
 * Errors as the local calls, and ISOLA_EUNSUPPORTED (the server has no
 * JetStream), ISOLA_ESYS (the bucket could not be reached), ISOLA_ENOVM
 * (not joined); register also ISOLA_EINVAL for a proxy.  Each waits for
 * the servers (and lookup for the owning node, at most
 * request_timeout_ms).  Any thread; from an isolate the waits run inside
 * isola_blocking_begin()/end().
 */
ISOLA_EXPORT int isola_cluster_name_register(const char *name,
                                             isola_port port);
ISOLA_EXPORT int isola_cluster_name_lookup(const char *name, isola_port *out);
/* Removes the name, if this node registered it (the port stays open);
 * ISOLA_EPERM if another node did.  Any isolate or thread of the node may
 * remove the node's names. */
ISOLA_EXPORT int isola_cluster_name_remove(const char *name);

#ifdef __cplusplus
}
#endif

#endif /* ISOLA_CLUSTER_H */
