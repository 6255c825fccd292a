#!/bin/sh
# SPDX-License-Identifier: MIT
# Proves that an installed isola can be used from outside the tree:
#   1. configures, builds and installs isola (Release; no tests, benchmarks
#      or examples) into a fresh temporary prefix with `cmake --install
#      --prefix`;
#   2. builds main.c with `cc $(pkg-config --cflags --libs isola)`, found
#      through PKG_CONFIG_PATH;
#   3. builds main.c with this directory's CMakeLists.txt, which uses
#      find_package(isola), found through CMAKE_PREFIX_PATH, once against
#      the shared and once against the static library;
#   4. runs the three programs and checks each prints the expected line.
# Exits non-zero on any failure.  Usage: sh tests/out_of_tree/run.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
sh "$root/tools/deps.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/isola-out-of-tree.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
prefix="$work/prefix"
jobs=$(nproc 2>/dev/null || echo 2)

fail() {
  echo "out_of_tree: FAILED: $*" >&2
  exit 1
}

echo "out_of_tree: installing isola into $prefix"
cmake -S "$root" -B "$work/isola-build" -DCMAKE_BUILD_TYPE=Release \
  -DISOLA_WERROR=ON -DISOLA_BUILD_TESTS=OFF -DISOLA_BUILD_BENCH=OFF \
  -DISOLA_BUILD_EXAMPLES=OFF >/dev/null || fail "configuring isola"
cmake --build "$work/isola-build" -j"$jobs" >/dev/null || fail "building isola"
cmake --install "$work/isola-build" --prefix "$prefix" >/dev/null ||
  fail "installing isola"

pc=$(find "$prefix" -name isola.pc | head -n 1)
[ -n "$pc" ] || fail "no isola.pc under $prefix"
[ -f "$prefix/include/isola.h" ] || fail "no include/isola.h under $prefix"
libdir=$(dirname "$(dirname "$pc")")
for f in "$libdir/libisola.so" "$libdir/libisola.a" "$libdir/libisola.so.0.1"; do
  [ -e "$f" ] || fail "$f is not installed"
done
# The soname follows the version rule: 0.x carries the minor.
soname=$(objdump -p "$libdir/libisola.so" | awk '/SONAME/ {print $2}')
[ "$soname" = "libisola.so.0.1" ] || fail "soname is '$soname', not libisola.so.0.1"
for f in LICENSE README.md CHANGELOG.md; do
  [ -f "$prefix/share/doc/isola/$f" ] || fail "share/doc/isola/$f is not installed"
done
[ -f "$libdir/cmake/isola/isolaConfig.cmake" ] ||
  fail "no isolaConfig.cmake in $libdir/cmake/isola"
# Nothing installed may point back into the source or build tree.
if grep -rl -e "$root" -e "$work/isola-build" "$prefix" >/dev/null 2>&1; then
  fail "installed files mention the build tree: $(grep -rl -e "$root" \
    -e "$work/isola-build" "$prefix" | tr '\n' ' ')"
fi

expected="isola $(sed -n 's/^#define ISOLA_VERSION_STRING "\(.*\)"$/\1/p' \
  "$prefix/include/isola.h") out of tree: an isolate answered 42"

# run NAME PROGRAM: runs PROGRAM against the installed shared library and
# compares its output with the expected line.
run() {
  out=$(LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$2") ||
    fail "$1: the program failed (exit $?)"
  [ "$out" = "$expected" ] ||
    fail "$1: printed \"$out\", expected \"$expected\""
  echo "out_of_tree: $1: ok"
}

echo "out_of_tree: building with pkg-config"
export PKG_CONFIG_PATH="$(dirname "$pc")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
cflags=$(pkg-config --cflags isola) || fail "pkg-config --cflags isola"
libs=$(pkg-config --libs isola) || fail "pkg-config --libs isola"
mkdir -p "$work/pc"
# shellcheck disable=SC2086  # the flags are meant to split into words
cc -std=c17 -Wall -Wextra -Wpedantic -Werror $cflags "$here/main.c" \
  -o "$work/pc/consumer" $libs || fail "compiling with pkg-config flags"
run "pkg-config, shared" "$work/pc/consumer"
# It really uses the installed shared library.
LD_LIBRARY_PATH="$libdir" ldd "$work/pc/consumer" | grep -q "$libdir/libisola.so" ||
  fail "pkg-config build does not load $libdir/libisola.so"

echo "out_of_tree: building with find_package(isola)"
cmake -S "$here" -B "$work/cmake" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" >/dev/null || fail "configuring the consumer"
cmake --build "$work/cmake" -j"$jobs" >/dev/null || fail "building the consumer"
run "find_package, isola::isola" "$work/cmake/consumer_shared"
run "find_package, isola::isola_static" "$work/cmake/consumer_static"
LD_LIBRARY_PATH="$libdir" ldd "$work/cmake/consumer_static" |
  grep -q libisola && fail "isola::isola_static links libisola.so"

echo "out_of_tree: all passed"
