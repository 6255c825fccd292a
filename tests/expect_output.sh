#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs a command and passes when it exits 0 and its standard output holds
# the expected text (a fixed string).  For the examples' tests.
#   sh tests/expect_output.sh EXPECTED COMMAND [ARGS...]
expected=$1
shift
out=$("$@")
rc=$?
printf '%s\n' "$out"
if [ "$rc" -ne 0 ]; then
  echo "expect_output: exit status $rc" >&2
  exit 1
fi
case $out in
*"$expected"*) exit 0 ;;
esac
echo "expect_output: no \"$expected\" in the output" >&2
exit 1
