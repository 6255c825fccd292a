#!/bin/sh
# SPDX-License-Identifier: MIT
# Checks that every tracked source file carries the MIT SPDX line.  Data
# (the fuzz corpus), prose (Markdown) and images are exempt.
set -eu
cd "$(dirname "$0")/.."
missing=$(git ls-files | grep -v -E '^fuzz/corpus/|\.(md|png|mod|json|txt)$|^\.gitignore$|^LICENSE$' |
  while read -r f; do
    grep -q 'SPDX-License-Identifier: MIT' "$f" || echo "$f"
  done)
if [ -n "$missing" ]; then
  echo "tools/check-license.sh: no SPDX-License-Identifier line in:" >&2
  echo "$missing" >&2
  exit 1
fi
echo "license: every source file carries SPDX-License-Identifier: MIT"
