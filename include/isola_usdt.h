/* SPDX-License-Identifier: MIT */
/*
 * isola_usdt.h — the USDT (user-level statically defined tracing) probes
 * that libisola carries when it is built where <sys/sdt.h> exists (Debian
 * systemtap-sdt-dev; CMake option ISOLA_USDT, on by default).  A probe is a
 * nop instruction and an ELF note: it costs nothing until a tracer
 * (bpftrace, perf, SystemTap) attaches to it, and then only its arguments,
 * which are plain loads.  docs/observability.md has an example bpftrace
 * script.  `readelf -n libisola.so` lists them (provider "isola").
 *
 * This header only names them, for tools and tests; nothing here is
 * needed to build against isola.
 *
 *   probe           arguments
 *   spawn           u64 isolate, u64 origin, char *name
 *   end             u64 isolate, int reason (an isola_exit_reason)
 *   send            u64 to, u32 bytes (the sender is the isolate whose
 *                   turn_start came last on the same thread, if any)
 *   turn_start      u64 isolate
 *   turn_end        u64 isolate, int state (an isola_isolate_state)
 *   park            int worker (the worker goes idle)
 *   wake            int worker (a thread is woken or started for it)
 *
 * Isolates are named by their control port (isola_isolate.control_port).
 */
#ifndef ISOLA_USDT_H
#define ISOLA_USDT_H

#define ISOLA_USDT_PROVIDER "isola"
#define ISOLA_USDT_PROBES                                                      \
  "spawn", "end", "send", "turn_start", "turn_end", "park", "wake"

#endif /* ISOLA_USDT_H */
