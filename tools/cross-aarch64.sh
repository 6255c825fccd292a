#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds isola for AArch64 with Debian's cross compiler and runs the test
# suite under qemu-user: the memory orderings get tried on a weakly ordered
# machine's rules (as far as qemu's translation keeps them; it runs guest
# threads on host threads, so it is a check, not a proof).
# Usage: tools/cross-aarch64.sh [ctest -R regex]
set -eu
cd "$(dirname "$0")/.."
sh tools/deps.sh gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static
dir=build/aarch64
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DISOLA_WERROR=ON \
  -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
  -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc \
  -DCMAKE_FIND_ROOT_PATH=/usr/aarch64-linux-gnu \
  -DCMAKE_FIND_ROOT_PATH_MODE_PROGRAM=NEVER \
  -DCMAKE_FIND_ROOT_PATH_MODE_LIBRARY=ONLY \
  -DCMAKE_FIND_ROOT_PATH_MODE_INCLUDE=ONLY \
  -DCMAKE_CROSSCOMPILING_EMULATOR="qemu-aarch64-static;-L;/usr/aarch64-linux-gnu" \
  -DISOLA_BUILD_BENCH=OFF -DISOLA_BUILD_EXAMPLES=OFF \
  -DISOLA_TEST_HOOKS=ON -DISOLA_TEST_EMULATED=ON >/dev/null
cmake --build "$dir" -j"$(nproc)"
if [ $# -gt 0 ]; then
  ctest --test-dir "$dir" --output-on-failure -j2 -R "$1"
else
  ctest --test-dir "$dir" --output-on-failure -j2
fi
