/* SPDX-License-Identifier: MIT */
/*
 * name_server.h — the VM's table from names to ports (isola_name_*).
 *
 * Each name has an owner, the isolate that registered it (or the threads
 * outside every isolate), and optionally a capability: only they may
 * remove it.  Both chains hash under a key drawn from the kernel, so names
 * an attacker crafts spread like any others.
 *
 * One mutex guards a chained hash table with two indexes over the same
 * entries: by name (register, lookup, remove) and by port (so closing a
 * named port finds its names without a scan).  The table is small and off
 * every hot path; only port close touches it, and only for a port whose
 * slot has its named bit set (port_map.h).
 *
 * The rule "a name never leads to a closed port" is kept in two ways:
 *   - closing a port whose named bit it sees drops the port's names
 *     (isola__names_port_closed);
 *   - the close path reads that bit with a plain relaxed load, so a register
 *     racing with the close may set the bit too late to be seen.  Such a
 *     stale entry is harmless: every operation that meets an entry first
 *     checks under the lock that its port is still open (ids are never
 *     reused, so this is exact) and drops it when it is not.
 */
#ifndef ISOLA_NAME_SERVER_H
#define ISOLA_NAME_SERVER_H

#include "internal.h"
#include "name_server_types.h"

/* Empty table; allocates nothing, so it cannot fail. */
void isola__names_init(isola__names *n);

/* Frees every entry (the VM is shutting down: no caller is left). */
void isola__names_destroy(isola__names *n);

/* The close path of a port whose slot s has its named bit set: drops every
 * name of port id and clears the bit.  Called by the layer that closes the
 * port (isola__port_close, isolate.c) after the id is unpublished and
 * before the slot can be reused: the port map never calls up. */
void isola__names_port_closed(isola__names *n, struct isola__port_slot *s,
                              isola_port id);

#endif
