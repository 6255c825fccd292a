/* SPDX-License-Identifier: MIT */
/* name_server.c — names for ports (see name_server.h). */
#include "name_server.h"

#include <stdlib.h>
#include <string.h>

#include "platform.h"
#include "port_map.h"
#include "random.h"
#include "send.h"
#include "vm.h"

#define MIN_BUCKETS 16

/* next_by_name stays the first member: tests/test_security.c walks chains
 * by it. */
struct isola__name {
  isola__name *next_by_name;
  isola__name *next_by_port;
  isola_port port;
  /* Who may remove it: the registering isolate's control port (0: a thread
   * outside every isolate), or a holder of cap (0: no capability). */
  isola_port owner;
  isola_capability cap;
  uint64_t hash; /* of text */
  size_t len;
  char text[]; /* len bytes and a NUL */
};

/* ---- hashing ----------------------------------------------------------- */

/* SipHash-1-3 under a key of the VM's, drawn when the table is first
 * made: names may come from anyone, and with a hash they could compute,
 * crafted names would all share a chain. */
static uint64_t name_hash(const isola__names *n, const char *s, size_t len) {
  return isola__siphash_bytes(n->key, s, len, 1, 3);
}

static size_t port_bucket(const isola__names *n, isola_port port) {
  /* Ids are a keyed permutation, but ports are chosen by whoever
   * registers: hash them under the key too. */
  return (size_t)isola__siphash(n->key, port, 1, 3) & (n->nbuckets - 1);
}

static size_t name_bucket(const isola__names *n, uint64_t hash) {
  return (size_t)hash & (n->nbuckets - 1);
}

/* ---- the table (callers hold n->lock) ----------------------------------- */

void isola__names_init(isola__names *n) {
  pthread_mutex_init(&n->lock, NULL);
  n->by_name = NULL;
  n->by_port = NULL;
  n->nbuckets = 0;
  n->count = 0;
  n->key[0] = n->key[1] = 0;
}

void isola__names_destroy(isola__names *n) {
  for (size_t b = 0; b < n->nbuckets; b++) {
    isola__name *e = n->by_name[b];
    while (e) {
      isola__name *next = e->next_by_name;
      free(e);
      e = next;
    }
  }
  free(n->by_name);
  free(n->by_port);
  n->by_name = n->by_port = NULL;
  n->nbuckets = n->count = 0;
  pthread_mutex_destroy(&n->lock);
}

/* Makes room for one more entry (load factor at most 1).  ISOLA_ENOMEM
 * leaves the table as it was. */
static int reserve_locked(isola__names *n) {
  if (n->count < n->nbuckets) return ISOLA_OK;
  if (!n->nbuckets && isola__plat_random(n->key, sizeof n->key) != 0)
    return ISOLA_ESYS;
  size_t want = n->nbuckets ? n->nbuckets * 2 : MIN_BUCKETS;
  isola__name **by_name = calloc(want, sizeof *by_name);
  isola__name **by_port = calloc(want, sizeof *by_port);
  if (!by_name || !by_port) {
    free(by_name);
    free(by_port);
    return ISOLA_ENOMEM;
  }
  isola__name **old_by_name = n->by_name, **old_by_port = n->by_port;
  size_t old_nbuckets = n->nbuckets;
  n->by_name = by_name;
  n->by_port = by_port;
  n->nbuckets = want;
  for (size_t b = 0; b < old_nbuckets; b++) {
    isola__name *e = old_by_name[b];
    while (e) {
      isola__name *next = e->next_by_name;
      size_t nb = name_bucket(n, e->hash), pb = port_bucket(n, e->port);
      e->next_by_name = by_name[nb];
      by_name[nb] = e;
      e->next_by_port = by_port[pb];
      by_port[pb] = e;
      e = next;
    }
  }
  free(old_by_name);
  free(old_by_port);
  return ISOLA_OK;
}

static void insert_locked(isola__names *n, isola__name *e) {
  size_t nb = name_bucket(n, e->hash), pb = port_bucket(n, e->port);
  e->next_by_name = n->by_name[nb];
  n->by_name[nb] = e;
  e->next_by_port = n->by_port[pb];
  n->by_port[pb] = e;
  n->count++;
}

/* Unlinks e from both chains and frees it. */
static void erase_locked(isola__names *n, isola__name *e) {
  isola__name **pp = &n->by_name[name_bucket(n, e->hash)];
  while (*pp != e) pp = &(*pp)->next_by_name;
  *pp = e->next_by_name;
  pp = &n->by_port[port_bucket(n, e->port)];
  while (*pp != e) pp = &(*pp)->next_by_port;
  *pp = e->next_by_port;
  n->count--;
  free(e);
}

/* The entry named (name, len), or NULL.  An entry whose port has closed is
 * dropped on the way and counts as absent (name_server.h explains how one
 * can be left behind). */
static isola__name *find_locked(isola__vm *vm, const char *name, size_t len) {
  isola__names *n = &vm->names;
  if (!n->nbuckets) return NULL;
  uint64_t hash = name_hash(n, name, len);
  for (isola__name *e = n->by_name[name_bucket(n, hash)]; e;
       e = e->next_by_name) {
    if (e->hash != hash || e->len != len || memcmp(e->text, name, len) != 0)
      continue;
    if (isola__port_slot_of(&vm->ports, e->port)) return e;
    erase_locked(n, e);
    return NULL;
  }
  return NULL;
}

/* The length of a valid name, or 0. */
static size_t name_len(const char *name) {
  if (!name) return 0;
  size_t len = strnlen(name, ISOLA_NAME_MAX + 1);
  return len <= ISOLA_NAME_MAX ? len : 0;
}

/* ---- the public API ----------------------------------------------------- */

/* The caller's identity as a name's owner: its isolate's control port, or
 * 0 for a thread outside every isolate. */
static isola_port caller_owner(void) {
  isola__isolate *self = isola__t.current;
  return self ? self->control_port : ISOLA_PORT_NONE;
}

int isola_name_register_cap(const char *name, isola_port port,
                            isola_capability remove_cap) {
  size_t len = name_len(name);
  if (!len || port == ISOLA_PORT_NONE) return ISOLA_EINVAL;
  isola__call c;
  int rc = isola__vm_enter(&c);
  if (rc != ISOLA_OK) return rc;
  isola__vm *vm = c.vm;
  /* What the registering event sent goes before anything sent to a port
   * found by this name (the causality rule, isola.h). */
  isola__outbox_flush(vm);
  /* Allocated before the lock, so the lock is never held across malloc
   * but for the rare table growth. */
  isola__name *e = malloc(sizeof *e + len + 1);
  if (!e) {
    isola__vm_leave(&c);
    return ISOLA_ENOMEM;
  }
  e->port = port;
  e->owner = caller_owner();
  e->cap = remove_cap;
  e->len = len;
  memcpy(e->text, name, len);
  e->text[len] = '\0';

  isola__names *n = &vm->names;
  pthread_mutex_lock(&n->lock);
  isola__port_slot *s;
  if (find_locked(vm, name, len)) {
    rc = ISOLA_ENAMETAKEN;
  } else if (!(s = isola__port_slot_of(&vm->ports, port))) {
    rc = ISOLA_ECLOSED;
  } else {
    /* Mark the slot first, then re-check the port: a close that
     * unpublished the id before our check fails the register here; one
     * after it finds the bit set (or, if it reads the bit too early, leaves
     * an entry that find_locked drops).  The bit may stay set on a slot
     * whose port closed meanwhile: that only costs its next close a visit
     * here.  seq_cst keeps our store of the bit before our load of the id;
     * the close path's store of the id and load of the bit are not seq_cst
     * (it is the fast path), which is why find_locked re-checks. */
    atomic_store_explicit(&s->named, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&s->id, memory_order_seq_cst) != port)
      rc = ISOLA_ECLOSED;
    else
      rc = reserve_locked(n); /* draws the key with the first table */
  }
  if (rc == ISOLA_OK) {
    e->hash = name_hash(n, name, len);
    insert_locked(n, e);
  }
  pthread_mutex_unlock(&n->lock);
  if (rc != ISOLA_OK) free(e);
  isola__vm_leave(&c);
  return rc;
}

int isola_name_register(const char *name, isola_port port) {
  return isola_name_register_cap(name, port, 0);
}

/* Finds name and, with out, reads its port, or without, removes it if the
 * caller owns it or cap is its capability: the shared body of lookup and
 * remove. */
static int find_or_remove(const char *name, isola_port *out,
                          isola_capability cap) {
  size_t len = name_len(name);
  if (!len) return ISOLA_EINVAL;
  isola__call c;
  int rc = isola__vm_enter(&c);
  if (rc != ISOLA_OK) return rc;
  isola__names *n = &c.vm->names;
  pthread_mutex_lock(&n->lock);
  isola__name *e = find_locked(c.vm, name, len);
  if (!e)
    rc = ISOLA_ENOTFOUND;
  else if (out)
    *out = e->port;
  else if (cap ? cap == e->cap : e->owner == caller_owner())
    erase_locked(n, e);
  else
    rc = ISOLA_EPERM;
  pthread_mutex_unlock(&n->lock);
  isola__vm_leave(&c);
  return rc;
}

int isola_name_lookup(const char *name, isola_port *out) {
  if (!out) return ISOLA_EINVAL;
  *out = ISOLA_PORT_NONE;
  return find_or_remove(name, out, 0);
}

int isola_name_remove(const char *name) {
  return find_or_remove(name, NULL, 0);
}

int isola_name_remove_cap(const char *name, isola_capability remove_cap) {
  if (remove_cap == 0) return ISOLA_EINVAL;
  return find_or_remove(name, NULL, remove_cap);
}

/* ---- the close hook ------------------------------------------------------ */

void isola__names_port_closed(isola__names *n, struct isola__port_slot *s,
                              isola_port id) {
  pthread_mutex_lock(&n->lock);
  if (n->nbuckets) {
    isola__name *e = n->by_port[port_bucket(n, id)];
    while (e) {
      isola__name *next = e->next_by_port;
      if (e->port == id) erase_locked(n, e);
      e = next;
    }
  }
  /* Under the lock, so no register of this slot is half done; the slot is
   * not reused before the closer frees it, after this call. */
  atomic_store_explicit(&s->named, 0, memory_order_relaxed);
  pthread_mutex_unlock(&n->lock);
}
