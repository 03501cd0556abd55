#!/usr/bin/env bash
# Install the Debian packages that medsign's tests use as real peers (PEERS.md).
# As root: installs what is missing (apt-get update only when something is).  Not root: only
# reports what is missing, and fails under CI=true, where a missing peer must never be skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t packages < <(grep -v '^\s*#' scripts/debian-packages.txt | awk 'NF {print $1}')
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi
echo "missing Debian packages (run 'make test' as root, or install them): ${missing[*]}" >&2
if [ "${CI:-}" = "true" ]; then
  exit 1
fi
