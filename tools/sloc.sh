#!/bin/sh
# SPDX-License-Identifier: MIT
# Counts the lines of code of C files: the lines left with something other
# than white space once comments (/* ... */ and // ...) are taken out, so
# blank lines, comment lines and the SPDX line do not count; a line with
# code and a comment counts once.  String and character literals are read
# as such (a "/*" inside one is not a comment).  The method of the
# before/after table in docs/examples.md.
#   sh tools/sloc.sh FILE...        one line per file, then the total
#   git show REV:FILE | sh tools/sloc.sh -    a version from git history
set -eu
if [ $# -eq 0 ]; then
  echo "usage: sh tools/sloc.sh FILE... (- for stdin)" >&2
  exit 2
fi
count() {
  awk '
  BEGIN { incomment = 0; n = 0 }
  {
    line = $0; code = ""; i = 1; len = length(line)
    while (i <= len) {
      c = substr(line, i, 1); two = substr(line, i, 2)
      if (incomment) {
        if (two == "*/") { incomment = 0; i += 2 } else i++
        continue
      }
      if (two == "/*") { incomment = 1; i += 2; code = code " "; continue }
      if (two == "//") break
      if (c == "\"" || c == "'\''") {
        q = c; code = code c; i++
        while (i <= len) {
          d = substr(line, i, 1); code = code d; i++
          if (d == "\\") { code = code substr(line, i, 1); i++; continue }
          if (d == q) break
        }
        continue
      }
      code = code c; i++
    }
    if (code ~ /[^ \t\r]/) n++
  }
  END { print n }'
}
total=0
for f in "$@"; do
  if [ "$f" = - ]; then n=$(count); else n=$(count <"$f"); fi
  total=$((total + n))
  printf '%6d %s\n' "$n" "$f"
done
[ $# -gt 1 ] && printf '%6d total\n' "$total"
exit 0
