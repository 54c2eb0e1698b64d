#!/usr/bin/env bash
# Install the Debian packages podwire's demo and tests need, once.
# Idempotent: does nothing when every package is already installed.
#   install-system-deps.sh PKG...                      from the machine's suites
#   BACKPORTS="PKG..." install-system-deps.sh PKG...   and these from bookworm-backports
# QEMU 10 (the emulated igb SR-IOV NIC) exists only in bookworm-backports; the
# suite is added at priority 100, so nothing else is upgraded from it.
set -euo pipefail
backports=(${BACKPORTS:-})
missing=()
missing_bp=()
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in "$@"; do installed "$pkg" || missing+=("$pkg"); done
for pkg in "${backports[@]}"; do
    # A backports package counts as present only in the backports version.
    if ! installed "$pkg" || ! dpkg-query -W -f='${Version}' "$pkg" | grep -q '~bpo'; then
        missing_bp+=("$pkg")
    fi
done
if [ ${#missing[@]} -eq 0 ] && [ ${#missing_bp[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "podwire: installing ${missing[*]} ${missing_bp[*]} needs root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if [ ${#missing_bp[@]} -gt 0 ]; then
    list=/etc/apt/sources.list.d/podwire-backports.sources
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        # The same mirror the machine already uses for bookworm.
        uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
        uri=${uri:-http://deb.debian.org/debian}
        printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$uri" >"$list"
    fi
fi
echo "podwire: installing Debian packages: ${missing[*]} ${missing_bp[*]}"
apt-get update -q >/dev/null
# Services that packages would start are not wanted: tests run private instances.
if [ ${#missing[@]} -gt 0 ]; then
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ${#missing_bp[@]} -gt 0 ]; then
    apt-get install -y -q --no-install-recommends -t bookworm-backports "${missing_bp[@]}" >/dev/null
fi
