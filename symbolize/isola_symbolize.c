/* SPDX-License-Identifier: MIT */
/* isola_symbolize.c — stack frames to function, file and line with libdw
 * (include/isola_symbolize.h). */
#include "isola_symbolize.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <elfutils/libdwfl.h>

static const Dwfl_Callbacks callbacks = {
    .find_elf = dwfl_linux_proc_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
};

char *isola_symbolize(void *const *frames, int n) {
  if (!frames || n <= 0) return NULL;
  Dwfl *dwfl = dwfl_begin(&callbacks);
  if (!dwfl) return NULL;
  if (dwfl_linux_proc_report(dwfl, getpid()) != 0 ||
      dwfl_report_end(dwfl, NULL, NULL) != 0) {
    dwfl_end(dwfl);
    return NULL;
  }
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) {
    dwfl_end(dwfl);
    return NULL;
  }
  for (int i = 0; i < n; i++) {
    Dwarf_Addr addr = (Dwarf_Addr)(uintptr_t)frames[i];
    /* A return address points after its call (past the end of the
     * function, when the callee does not return): look the call up. */
    Dwarf_Addr pc = addr ? addr - 1 : addr;
    fprintf(f, "#%d 0x%" PRIx64, i, (uint64_t)addr);
    Dwfl_Module *mod = dwfl_addrmodule(dwfl, pc);
    const char *sym = NULL;
    GElf_Off off = 0;
    GElf_Sym s;
    if (mod) sym = dwfl_module_addrinfo(mod, pc, &off, &s, NULL, NULL, NULL);
    if (sym)
      fprintf(f, " %s+0x%" PRIx64, sym, (uint64_t)off);
    else
      fputs(" ??", f);
    Dwfl_Line *line = mod ? dwfl_module_getsrc(mod, pc) : NULL;
    int lineno = 0;
    const char *file =
        line ? dwfl_lineinfo(line, NULL, &lineno, NULL, NULL, NULL) : NULL;
    if (file) fprintf(f, " at %s:%d", file, lineno);
    const char *mname =
        mod ? dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
            : NULL;
    if (mname) {
      const char *base = strrchr(mname, '/');
      fprintf(f, " (%s)", base ? base + 1 : mname);
    }
    if (i + 1 < n) fputc('\n', f);
  }
  dwfl_end(dwfl);
  if (fclose(f) != 0) {
    free(buf);
    return NULL;
  }
  return buf;
}
