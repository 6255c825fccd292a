#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds isola and runs the showcase: the hello example (examples/hello.c)
# as a module, run by the `isola` runner.
set -eu
cd "$(dirname "$0")/.."
sh tools/deps.sh
cmake -S . -B build/showcase -DCMAKE_BUILD_TYPE=Release \
  -DISOLA_BUILD_TESTS=OFF -DISOLA_BUILD_BENCH=OFF >/dev/null
cmake --build build/showcase -j"$(nproc)" --target isola_runner hello_module \
  >/dev/null
exec build/showcase/isola run build/showcase/examples/hello.so "$@"
