#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds isola and runs the whole test suite.  Optional argument: a sanitizer
# list for -fsanitize ("address,undefined" or "thread"); the build then goes
# to build/<name>.
set -eu
cd "$(dirname "$0")/.."
# The core needs cmake, gcc and Criterion; the optional components' tests
# need their libraries and tools too, so that this command runs every test:
# libnats-dev and nats-server (always, tools/deps.sh), libmicrohttpd-dev,
# promtool (prometheus), chromium and curl (isola_observe and its browser
# test), libdw-dev (isola_symbolize) and clang (a module of its test),
# systemtap-sdt-dev (USDT probes).
sh tools/deps.sh libmicrohttpd-dev prometheus chromium curl libdw-dev clang \
  systemtap-sdt-dev
san="${1:-}"
if [ -n "$san" ]; then
  dir="build/san-$(echo "$san" | tr ',' '-')"
else
  dir="build/test"
fi
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DISOLA_WERROR=ON \
  -DISOLA_TEST_HOOKS=ON -DISOLA_SANITIZE="$san" >/dev/null
cmake --build "$dir" -j"$(nproc)"
ctest --test-dir "$dir" --output-on-failure -j2
