#!/usr/bin/env bash
# Install the Debian packages podwire's demo and tests need, once.
# Idempotent: does nothing when every package is already installed.
set -euo pipefail
missing=()
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "podwire: installing ${missing[*]} needs root" >&2
    exit 1
fi
echo "podwire: installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# Services that packages would start are not wanted: tests run private instances.
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
