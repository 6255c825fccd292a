#!/bin/sh
# SPDX-License-Identifier: MIT
# The observe page in headless Chromium (issue 16 item 3).
#   run.sh RUNNER MODULE OUTDIR CHROMIUM CURL
# Runs MODULE (tests/modules/observed.c) with `isola run --observe
# 127.0.0.1:0`, then checks that
#   - the slow consumer's queue grows between two reads of /api/isolates,
#   - Chromium loads the page with no error in its console or on the page,
#     and the page shows the module's isolates by name, the slow consumer
#     paused with a queue,
# keeps a screenshot as OUTDIR/observe.png, and ends the run with SIGINT
# (exit status 130).  Every wait is for an event, bounded by `timeout`.
set -eu
runner=$1 module=$2 out=$3 chromium=$4 curl=$5
rm -rf "$out"
mkdir -p "$out"
fifo="$out/stdout.fifo"
mkfifo "$fifo"
"$runner" run --observe 127.0.0.1:0 "$module" > "$fifo" 2> "$out/runner.err" &
pid=$!
trap 'kill -INT $pid 2>/dev/null || true' EXIT
exec 3< "$fifo"
line=$(timeout 60 head -n 1 <&3 || true)
if [ "$line" != ready ]; then
  echo "browser test: the module did not get ready (got '$line')" >&2
  cat "$out/runner.err" >&2
  exit 1
fi
url=$(grep -o 'http://127\.0\.0\.1:[0-9]*/' "$out/runner.err" | head -n 1)
[ -n "$url" ] || { echo "browser test: no URL on stderr" >&2; exit 1; }

queued() { # the slow consumer's queue, from the JSON API
  "$curl" -sf "${url}api/isolates" |
    sed -n 's/.*"name":"slow-consumer","state":"[a-z]*"[^}]*"queued":\([0-9]*\),.*/\1/p'
}
q1=$(queued)
[ -n "$q1" ] || { echo "browser test: no slow-consumer in /api/isolates" >&2; exit 1; }
# The producer adds 50 every 20 ms: wait (bounded) until the queue grew.
if ! timeout 30 sh -c "while [ \"\$($(command -v "$curl") -sf '${url}api/isolates' | sed -n 's/.*\"name\":\"slow-consumer\",\"state\":\"[a-z]*\"[^}]*\"queued\":\([0-9]*\),.*/\1/p')\" -le $q1 ]; do :; done"; then
  echo "browser test: the slow consumer's queue did not grow from $q1" >&2
  exit 1
fi

chrome() {
  timeout 180 "$chromium" --headless --no-sandbox --disable-gpu \
    --disable-dev-shm-usage --user-data-dir="$out/profile" --hide-scrollbars \
    --window-size=1300,900 --virtual-time-budget=6000 "$@"
}
chrome --enable-logging=stderr --v=0 --dump-dom "$url" > "$out/dom.html" \
  2> "$out/chromium.log"
chrome --screenshot="$out/observe.png" "$url" > /dev/null 2>&1
[ -s "$out/observe.png" ] || { echo "browser test: no screenshot" >&2; exit 1; }

fail=0
if grep -E 'CONSOLE|Uncaught' "$out/chromium.log" >&2; then
  echo "browser test: messages in the console (above)" >&2
  fail=1
fi
grep -q '<pre id="errors"></pre>' "$out/dom.html" ||
  { echo "browser test: the page reported errors" >&2; fail=1; }
for name in main slow-consumer producer echo-0 echo-1 echo-2; do
  grep -q "<td class=\"l name\">$name</td>" "$out/dom.html" ||
    { echo "browser test: $name is not on the page" >&2; fail=1; }
done
# The slow consumer's row: paused, with a queue that is not 0.
row=$(sed -n 's/.*\(<td class="l name">slow-consumer<\/td>.*\)/\1/p' "$out/dom.html" | sed 's/<\/tr>.*//')
echo "$row" | grep -q 'state-paused">paused' ||
  { echo "browser test: the slow consumer is not shown paused" >&2; fail=1; }
echo "$row" | grep -q '<td class="queued">[1-9]' ||
  { echo "browser test: the slow consumer's queue is not shown" >&2; fail=1; }
grep -q 'live, every 1000 ms' "$out/dom.html" ||
  { echo "browser test: the page did not load its data" >&2; fail=1; }
[ $fail -eq 0 ] || exit 1

trap - EXIT
kill -INT $pid
status=0
wait $pid || status=$?
exec 3<&-
[ $status -eq 130 ] || { echo "browser test: runner exit $status, not 130" >&2; exit 1; }
echo "browser test: passed; screenshot in $out/observe.png"
