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

/* The source line of pc (an address of the process) in mod, or NULL.
 * dwfl_module_getsrc finds the compilation unit through .debug_aranges,
 * and libdw before elfutils 0.191 (Debian 12 has 0.188) takes a missing
 * section as "no unit covers it": clang emits none by default (unless
 * -gdwarf-aranges), whatever the DWARF version, and a module may mix
 * units that have entries with units that have none.  So when that finds
 * nothing, ask each unit's own address ranges (DW_AT_low_pc/high_pc or
 * DW_AT_ranges) and read the line table of the one that holds pc. */
static const char *source_line(Dwfl_Module *mod, Dwarf_Addr pc, int *lineno) {
  Dwfl_Line *line = dwfl_module_getsrc(mod, pc);
  if (line) return dwfl_lineinfo(line, NULL, lineno, NULL, NULL, NULL);
  Dwarf_Addr bias = 0;
  Dwarf_Die *cu = NULL;
  while ((cu = dwfl_module_nextcu(mod, cu, &bias)) != NULL) {
    if (dwarf_haspc(cu, pc - bias) != 1) continue;
    Dwarf_Line *l = dwarf_getsrc_die(cu, pc - bias);
    const char *file = l ? dwarf_linesrc(l, NULL, NULL) : NULL;
    if (file && dwarf_lineno(l, lineno) == 0) return file;
  }
  return NULL;
}

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
    int lineno = 0;
    const char *file = mod ? source_line(mod, pc, &lineno) : NULL;
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
