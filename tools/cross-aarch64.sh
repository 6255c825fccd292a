#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds isola for AArch64 with Debian's cross compiler (warnings as
# errors) and runs the test suite under qemu-user.  What it checks: the
# code builds and passes on AArch64 (its atomics compile to LDAR/STLR and
# exclusive pairs).  What it does not: qemu runs the guest's threads on the
# host's, and on an x86 host the stronger x86 ordering hides most of the
# reorderings AArch64 allows, so the weak-memory arguments stay the written
# ones beside the code (message_queue.h, epoch.c, port_map.h).
# Not run: tests that start the runner binary themselves (test_module's
# runner tests, test_runner_signals), since without binfmt_misc the host
# cannot exec an AArch64 program directly.
# The optional components (cluster, observe, symbolize, USDT) are off:
# their libraries are installed for the host only.
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
  -DISOLA_OBSERVE=OFF -DISOLA_SYMBOLIZE=OFF -DISOLA_USDT=OFF \
  -DISOLA_BUILD_CLUSTER=OFF \
  -DISOLA_TEST_HOOKS=ON -DISOLA_TEST_EMULATED=ON >/dev/null
cmake --build "$dir" -j"$(nproc)"
skip='test_runner_signals|test_module'
if [ $# -gt 0 ]; then
  ctest --test-dir "$dir" --output-on-failure -j2 -R "$1" -E "$skip"
else
  ctest --test-dir "$dir" --output-on-failure -j2 -E "$skip"
fi
# test_module without its runner_* tests (minicr's --filter is fnmatch).
if [ $# -eq 0 ] || echo test_module | grep -qE "$1"; then
  for f in 'module/[!r]*' 'module/run_*'; do
    (cd "$dir/tests" &&
      qemu-aarch64-static -L /usr/aarch64-linux-gnu ./test_module \
        --filter "$f")
  done
fi
