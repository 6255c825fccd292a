/* SPDX-License-Identifier: MIT */
/* name_server.c — names for ports (see name_server.h). */
#include "name_server.h"

#include <stdlib.h>
#include <string.h>

#include "port_map.h"
#include "vm.h"

#define MIN_BUCKETS 16

struct isola__name {
  isola__name *next_by_name;
  isola__name *next_by_port;
  isola_port port;
  uint64_t hash; /* of text */
  size_t len;
  char text[]; /* len bytes and a NUL */
};

/* ---- hashing ----------------------------------------------------------- */

/* FNV-1a: names are short and chosen by the program, not by an attacker. */
static uint64_t name_hash(const char *s, size_t len) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)s[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

static size_t port_bucket(const isola__names *n, isola_port port) {
  /* Fibonacci hashing: the id's low bits are a slot index, often dense. */
  return (size_t)((port * 0x9E3779B97F4A7C15ull) >> 32) & (n->nbuckets - 1);
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
static isola__name *find_locked(isola__vm *vm, const char *name, size_t len,
                                uint64_t hash) {
  isola__names *n = &vm->names;
  if (!n->nbuckets) return NULL;
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

int isola_name_register(const char *name, isola_port port) {
  size_t len = name_len(name);
  if (!len || port == ISOLA_PORT_NONE) return ISOLA_EINVAL;
  isola__call c;
  int rc = isola__vm_enter(&c);
  if (rc != ISOLA_OK) return rc;
  isola__vm *vm = c.vm;
  /* Allocated before the lock, so the lock is never held across malloc
   * but for the rare table growth. */
  isola__name *e = malloc(sizeof *e + len + 1);
  if (!e) {
    isola__vm_leave(&c);
    return ISOLA_ENOMEM;
  }
  e->port = port;
  e->hash = name_hash(name, len);
  e->len = len;
  memcpy(e->text, name, len);
  e->text[len] = '\0';

  isola__names *n = &vm->names;
  pthread_mutex_lock(&n->lock);
  isola__port_slot *s;
  if (find_locked(vm, name, len, e->hash)) {
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
      rc = reserve_locked(n);
  }
  if (rc == ISOLA_OK) insert_locked(n, e);
  pthread_mutex_unlock(&n->lock);
  if (rc != ISOLA_OK) free(e);
  isola__vm_leave(&c);
  return rc;
}

/* Finds name and, with out, reads its port, or without, removes it: the
 * shared body of lookup and remove. */
static int find_or_remove(const char *name, isola_port *out) {
  size_t len = name_len(name);
  if (!len) return ISOLA_EINVAL;
  isola__call c;
  int rc = isola__vm_enter(&c);
  if (rc != ISOLA_OK) return rc;
  isola__names *n = &c.vm->names;
  pthread_mutex_lock(&n->lock);
  isola__name *e = find_locked(c.vm, name, len, name_hash(name, len));
  if (!e)
    rc = ISOLA_ENOTFOUND;
  else if (out)
    *out = e->port;
  else
    erase_locked(n, e);
  pthread_mutex_unlock(&n->lock);
  isola__vm_leave(&c);
  return rc;
}

int isola_name_lookup(const char *name, isola_port *out) {
  if (!out) return ISOLA_EINVAL;
  *out = ISOLA_PORT_NONE;
  return find_or_remove(name, out);
}

int isola_name_remove(const char *name) { return find_or_remove(name, NULL); }

/* ---- the close hook ------------------------------------------------------ */

void isola__names_port_closed(struct isola__port_map *m,
                              struct isola__port_slot *s, isola_port id) {
  /* The map is the VM's (there is no other), so the VM is around it. */
  isola__vm *vm = (isola__vm *)(void *)((char *)m - offsetof(isola__vm, ports));
  isola__names *n = &vm->names;
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
