/* SPDX-License-Identifier: MIT */
/*
 * isola_symbolize — readable stack traces for uncaught errors, on libdw
 * (elfutils; a component of its own: libisola_symbolize, built when libdw
 * is found).  The core library prints raw frames; set
 *
 *     config.stack_symbolizer = isola_symbolize;
 *
 * and every error listener, exit notice and unhandled_error hook gets one
 * line a frame with the function's name, its offset, and file:line where
 * the module has debug information (built with -g, or with a separate
 * debug file that libdw finds, e.g. Debian's -dbgsym packages).
 * `isola run` does so when it is built with this component.
 */
#ifndef ISOLA_SYMBOLIZE_H
#define ISOLA_SYMBOLIZE_H

#include "isola.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * frames[0 .. n) are return addresses of the calling process (as
 * backtrace() gives them), innermost first.  Returns a malloc'ed string the
 * caller frees, one line a frame:
 *
 *     #0 0x5581c2a4e1f3 parse_header+0x43 at src/parse.c:118 (app)
 *     #1 0x7f3b1c02a2b9 ?? (libfoo.so.1)
 *
 * (?? where no symbol covers the address), or NULL when out of memory or
 * when libdw cannot read the process's modules.  Each address is taken as
 * a return address and looked up one byte back, at its call.  Reads the
 * process's modules each time (it is for errors, not for hot paths).
 * Any thread.
 */
ISOLA_EXPORT char *isola_symbolize(void *const *frames, int n);

#ifdef __cplusplus
}
#endif

#endif /* ISOLA_SYMBOLIZE_H */
