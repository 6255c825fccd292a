#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds the wire decoder's fuzz target with clang (libFuzzer, ASan, UBSan)
# and runs it for N seconds (default 60) over the seed corpus.
#   sh fuzz/run.sh [SECONDS]
# New inputs go to a scratch directory, never into fuzz/corpus; a crash
# leaves its input as build/fuzz/crash-* and makes the script fail.
set -eu
cd "$(dirname "$0")/.."
# libFuzzer and the sanitizer runtimes are in libclang-rt-dev, which clang
# only recommends (deps.sh installs without recommends).
sh tools/deps.sh clang libclang-rt-dev
seconds="${1:-60}"
build=build/fuzz
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DISOLA_BUILD_FUZZ=ON \
  -DISOLA_BUILD_TESTS=OFF -DISOLA_BUILD_BENCH=OFF -DISOLA_BUILD_EXAMPLES=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target fuzz_wire -j2 >/dev/null
scratch="$build/corpus"
mkdir -p "$scratch"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
"$build/fuzz_wire" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$build/" -print_final_stats=1 "$scratch" fuzz/corpus
