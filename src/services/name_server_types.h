/* SPDX-License-Identifier: MIT */
/*
 * name_server_types.h — the name server's table (name_server.h says how it
 * works).  Types only: the VM embeds isola__names (vm.h).
 */
#ifndef ISOLA_NAME_SERVER_TYPES_H
#define ISOLA_NAME_SERVER_TYPES_H

#include "internal.h"

struct isola__port_map;
struct isola__port_slot;

typedef struct isola__name isola__name;

typedef struct isola__names {
  pthread_mutex_t lock;  /* protects everything below */
  isola__name **by_name; /* nbuckets chains, by hash of the name */
  isola__name **by_port; /* nbuckets chains, by hash of the port id */
  size_t nbuckets;       /* a power of two, or 0 before the first name */
  size_t count;          /* entries in the table */
  uint64_t key[2];       /* the hashes' SipHash key, drawn with the table */
} isola__names;

#endif
