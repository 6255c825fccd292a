#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs the Debian packages isola's build and tests need, when missing.
# Usage: tools/deps.sh [extra-package ...]
set -eu
need=""
# libnats-dev and nats-server: the cluster component and its tests;
# openssl: the keys and certificates of its TLS and nkey tests.
for pkg in cmake make gcc libc6-dev pkg-config libcriterion-dev libnats-dev \
  nats-server openssl "$@"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed"; then
    need="$need $pkg"
  fi
done
[ -z "$need" ] && exit 0
echo "tools/deps.sh: installing$need" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
