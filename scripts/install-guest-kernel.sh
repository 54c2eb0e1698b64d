#!/usr/bin/env bash
# Unpack a Debian kernel for QEMU test guests, without touching /boot.
# The image's own package (the version linux-image-amd64 names) is downloaded
# and dpkg -x'ed into $GUEST_KERNEL_DIR; the guest's initramfs is built by the
# tests from its modules (igb, igbvf, vfio-pci, 9p, virtio). Idempotent.
set -euo pipefail
dir=${GUEST_KERNEL_DIR:-/var/cache/podwire/guest-kernel}
if [ -f "$dir/.complete" ]; then
    exit 0
fi
if ! apt-cache show linux-image-amd64 >/dev/null 2>&1; then
    apt-get update -q >/dev/null
fi
# linux-image-amd64 depends on exactly one linux-image-6.1.0-NN-amd64.
pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$pkg" ]; then
    echo "podwire: cannot tell which kernel linux-image-amd64 depends on" >&2
    exit 1
fi
echo "podwire: unpacking $pkg for test guests into $dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"   # apt-get download runs as _apt
(cd "$work" && apt-get download -q "$pkg" >/dev/null)
rm -rf "$dir"
mkdir -p "$dir"
dpkg -x "$work"/"$pkg"_*.deb "$dir"
ln -sfn "$(ls "$dir"/boot/vmlinuz-* | head -1)" "$dir/vmlinuz"
ln -sfn "$(ls -d "$dir"/lib/modules/* | head -1)" "$dir/modules"
touch "$dir/.complete"
