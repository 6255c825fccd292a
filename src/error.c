/* SPDX-License-Identifier: MIT */
/* error.c — names and descriptions of the error codes (ISOLA_ERRNO_MAP). */
#include "isola.h"

const char *isola_strerror(int err) {
  switch (err) {
#define X_(name, value, text)                                                  \
  case value:                                                                  \
    return text;
    ISOLA_ERRNO_MAP(X_)
#undef X_
  default:
    return "unknown error";
  }
}

const char *isola_err_name(int err) {
  switch (err) {
#define X_(name, value, text)                                                  \
  case value:                                                                  \
    return "ISOLA_" #name;
    ISOLA_ERRNO_MAP(X_)
#undef X_
  default:
    return "ISOLA_UNKNOWN";
  }
}
