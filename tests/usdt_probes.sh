#!/bin/sh
# SPDX-License-Identifier: MIT
# The USDT probes of include/isola_usdt.h are in the library (ELF notes of
# provider "isola"), one or more each.
#   usdt_probes.sh LIBRARY
set -eu
notes=$(readelf -n "$1")
for p in spawn end send turn_start turn_end park wake; do
  if ! printf '%s\n' "$notes" | grep -q "Name: $p\$"; then
    echo "usdt: no probe isola:$p in $1" >&2
    exit 1
  fi
done
printf '%s\n' "$notes" | grep -q "Provider: isola" ||
  { echo "usdt: no provider isola" >&2; exit 1; }
echo "usdt: every probe is there"
