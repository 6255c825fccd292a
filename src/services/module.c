/* SPDX-License-Identifier: MIT */
/* module.c — modules: a shared object loaded with dlopen for an isolate
 * group (isola_spawn_uri, isola_run_main_uri).
 *
 * Each load is its own dlopen with RTLD_LOCAL, so two modules may define
 * the same names without one binding to the other's; the module's
 * references to the isola_* API resolve to the copy of the runtime already
 * in the process (the global scope is searched first).  The group owns the
 * handle and closes it after its last isolate is cleaned up (isolate.c),
 * when no frame of the module can be on any stack.
 *
 * Loading is running: dlopen runs the module's constructors, and those of
 * every library it needs, before dlsym can read the ABI stamp.  The stamp
 * tells a module built for another runtime from one built for this; it
 * keeps out no code (docs/security.md). */
#include "module.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The loader's message for this thread's last failed load. */
static _Thread_local char load_error[256];

static void set_error(const char *path, const char *what) {
  snprintf(load_error, sizeof load_error, "%s: %s", path ? path : "(null)",
           what ? what : "unknown error");
}

const char *isola_module_error(void) { return load_error; }

int isola__module_load(const char *path, isola__module **out) {
  if (!path || !*path) {
    set_error(path, "no path");
    return ISOLA_EINVAL;
  }
  isola__module *m = malloc(sizeof *m);
  if (!m) {
    set_error(path, "out of memory");
    return ISOLA_ENOMEM;
  }
  /* RTLD_NOW: an unresolved symbol is an error here, not a crash in the
   * middle of an isolate later. */
  m->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!m->handle) {
    /* glibc's message already names the file. */
    const char *why = dlerror();
    snprintf(load_error, sizeof load_error, "%s", why ? why : path);
    free(m);
    return ISOLA_EMODULE;
  }
  int rc = ISOLA_OK;
  /* The stamp comes first: the entry point of a module built against
   * another ABI must not be trusted, even to have the right signature. */
  const uint32_t *abi = dlsym(m->handle, "isola_module_abi");
  void *entry;
  if (!abi) {
    set_error(path, "no isola_module_abi (not built with ISOLA_MODULE())");
    rc = ISOLA_EABI;
  } else if (*abi != ISOLA_MODULE_ABI) {
    char what[96];
    snprintf(what, sizeof what, "built for module ABI %u, this runtime is %u",
             (unsigned)*abi, (unsigned)ISOLA_MODULE_ABI);
    set_error(path, what);
    rc = ISOLA_EABI;
  } else if (!(entry = dlsym(m->handle, "isola_main"))) {
    set_error(path, "no isola_main");
    rc = ISOLA_ENOENTRY;
  } else {
    /* POSIX guarantees a data pointer from dlsym can hold a function's
     * address; the copy keeps ISO C's conversion rules out of it. */
    memcpy(&m->main, &entry, sizeof m->main);
  }
  if (rc != ISOLA_OK) {
    dlclose(m->handle);
    free(m);
    return rc;
  }
  load_error[0] = '\0';
  *out = m;
  return ISOLA_OK;
}

void isola__module_unload(isola__module *m) {
  if (!m) return;
  dlclose(m->handle);
  free(m);
}

void isola__module_entry(isola_value message) {
  isola__module *m = isola__t.current->group->module;
  isola_value args = isola_null(), msg = isola_null();
  /* The runtime built the list itself (isola_spawn_uri), so both reads
   * succeed. */
  isola_list_get(message, 0, &args);
  isola_list_get(message, 1, &msg);
  m->main(args, msg);
}
