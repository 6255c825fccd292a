/* SPDX-License-Identifier: MIT */
/*
 * probes.h — USDT probes (include/isola_usdt.h names them).  With
 * ISOLA_HAVE_SDT (CMake found <sys/sdt.h>) each is a nop and an ELF note;
 * without it, nothing at all.
 */
#ifndef ISOLA_PROBES_H
#define ISOLA_PROBES_H

#ifdef ISOLA_HAVE_SDT
#include <sys/sdt.h>
/* sys/sdt.h's macros pass an empty variadic argument, which clang's
 * -Wpedantic reports at every use (a pragma inside a macro cannot silence
 * a warning of the preprocessor): off for the files that use probes. */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wgnu-zero-variadic-macro-arguments"
#endif
#define ISOLA__SDT_QUIET(probe)                                                \
  do {                                                                         \
    probe;                                                                     \
  } while (0)
#define ISOLA__PROBE1(name, a) ISOLA__SDT_QUIET(DTRACE_PROBE1(isola, name, a))
#define ISOLA__PROBE2(name, a, b)                                              \
  ISOLA__SDT_QUIET(DTRACE_PROBE2(isola, name, a, b))
#define ISOLA__PROBE3(name, a, b, c)                                           \
  ISOLA__SDT_QUIET(DTRACE_PROBE3(isola, name, a, b, c))
#else
#define ISOLA__PROBE1(name, a) ((void)0)
#define ISOLA__PROBE2(name, a, b) ((void)0)
#define ISOLA__PROBE3(name, a, b, c) ((void)0)
#endif

#endif
