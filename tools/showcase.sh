#!/bin/sh
# Builds isola and runs the showcase example (examples/hello.c).
set -eu
cd "$(dirname "$0")/.."
sh tools/deps.sh
cmake -S . -B build/showcase -DCMAKE_BUILD_TYPE=Release \
  -DISOLA_BUILD_TESTS=OFF -DISOLA_BUILD_BENCH=OFF >/dev/null
cmake --build build/showcase -j"$(nproc)" --target hello >/dev/null
exec build/showcase/examples/hello "$@"
