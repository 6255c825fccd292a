/* SPDX-License-Identifier: MIT */
/* module.h — modules: shared objects loaded for a group (module.c). */
#ifndef ISOLA_MODULE_H
#define ISOLA_MODULE_H

#include "internal.h"

/* A loaded module.  A group holds at most one, from the spawn that made the
 * group until its last isolate is cleaned up (isolate.c). */
typedef struct isola__module {
  void *handle;             /* from dlopen */
  isola_module_main main;   /* its isola_main */
} isola__module;

/* Loads path with dlopen(RTLD_NOW | RTLD_LOCAL), checks its ABI stamp and
 * finds its entry point.  ISOLA_OK and *out, or ISOLA_EINVAL (path NULL or
 * empty), ISOLA_EMODULE, ISOLA_EABI, ISOLA_ENOENTRY, ISOLA_ENOMEM; on error
 * nothing stays loaded and the loader's text is kept for
 * isola_module_error(). */
int isola__module_load(const char *path, isola__module **out);

/* Unloads m (dlclose) and frees it.  No code of the module may run, or be
 * called again, after this. */
void isola__module_unload(isola__module *m);

/* The entry of a module group's first isolate: its spawn message is the
 * list [args, message], which it hands to the group's isola_main. */
void isola__module_entry(isola_value message);

#endif
