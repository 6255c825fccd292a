#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds isola and runs the whole test suite.  Optional argument: a sanitizer
# list for -fsanitize ("address,undefined" or "thread"); the build then goes
# to build/<name>.
set -eu
cd "$(dirname "$0")/.."
sh tools/deps.sh
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
