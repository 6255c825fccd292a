#!/bin/sh
# SPDX-License-Identifier: MIT
# The cluster example: counts primes over three node processes on this
# machine.  Starts its own nats-server on 127.0.0.1 (a free port), three
# `isola node` processes, then the root (`isola run --cluster ...`), and
# stops everything when done.
#   sh examples/cluster/run.sh [N [SLICES]]    (defaults 10000000 6)
# ISOLA_BUILD=dir uses an existing build directory instead of building.
set -eu
cd "$(dirname "$0")/../.."
N="${1:-10000000}"
SLICES="${2:-6}"
if [ -z "${ISOLA_BUILD:-}" ]; then
  sh tools/deps.sh
  ISOLA_BUILD=build/cluster-example
  cmake -S . -B "$ISOLA_BUILD" -DCMAKE_BUILD_TYPE=Release \
    -DISOLA_BUILD_TESTS=OFF -DISOLA_BUILD_BENCH=OFF >/dev/null
  cmake --build "$ISOLA_BUILD" -j2 --target isola_runner cluster_primes_module \
    >/dev/null
fi
isola="$ISOLA_BUILD/isola"
module="$ISOLA_BUILD/examples/cluster_primes.so"
nats=$(command -v nats-server || echo /usr/sbin/nats-server)
tmp=$(mktemp -d)
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# Waits (at most 20 s) until file holds a line matching pattern.
wait_for() {
  i=0
  until grep -q "$2" "$1" 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -gt 200 ]; then
      echo "run.sh: no '$2' in $1:" >&2
      cat "$1" >&2
      exit 1
    fi
    sleep 0.1
  done
}

"$nats" -a 127.0.0.1 -p -1 >"$tmp/nats.log" 2>&1 &
pids="$pids $!"
wait_for "$tmp/nats.log" "Server is ready"
port=$(sed -n 's/.*Listening for client connections on 127.0.0.1:\([0-9]*\).*/\1/p' \
  "$tmp/nats.log" | head -n 1)
url="nats://127.0.0.1:$port"
echo "nats-server at $url"
for w in w1 w2 w3; do
  "$isola" node --cluster "$url" --node "$w" >"$tmp/$w.log" 2>&1 &
  pids="$pids $!"
done
for w in w1 w2 w3; do wait_for "$tmp/$w.log" "joined the cluster"; done
"$isola" run --cluster "$url" --node main "$module" "$N" "$SLICES" w1 w2 w3
