#!/usr/bin/env bash
# Print the path of a Linux kernel image (vmlinuz) that qemu can boot, fetching Debian's into the
# cache when there is none yet: the package linux-image-amd64 depends on, downloaded with
# `apt-get download` and unpacked (never installed). Used by tests/vm/cgroup-v2.sh, by
# tests/demo_startup.rs and tests/lessons.rs (for `stepctr demo startup --vm`, as
# STEPCTR_VM_KERNEL).
#
# Usage: tests/vm/kernel.sh            prints e.g. target/vm-cache/linux-image-6.1.0-56-amd64/boot/vmlinuz-6.1.0-56-amd64
#
# Environment:
#   STEPCTR_VM_CACHE       cache directory (default: target/vm-cache in the repository)
#   STEPCTR_VM_KERNEL_PKG  kernel package to use instead of what linux-image-amd64 depends on
#
# Exits non-zero, saying why on stderr, when no kernel can be had (no package index and none
# cached, or the download fails).
set -euo pipefail

die() {
    echo "kernel.sh: $*" >&2
    exit 1
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${STEPCTR_VM_CACHE:-$repo/target/vm-cache}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
command -v flock >/dev/null || die "flock not found: install the Debian package util-linux"
command -v dpkg-deb >/dev/null || die "dpkg-deb not found: install the Debian package dpkg"
# One fetch at a time; a separate lock from the callers' own (cgroup-v2.sh holds .lock).
exec 8>"$cache/.kernel-lock"
flock 8

# The newest kernel already in the cache, if any.
cached() {
    find "$cache" -maxdepth 1 -type d -name 'linux-image-*' -exec test -f '{}/.complete' ';' \
        -printf '%f\n' 2>/dev/null | sort -V | tail -n1
}

pkg=${STEPCTR_VM_KERNEL_PKG:-}
if [[ -z $pkg ]] && command -v apt-cache >/dev/null; then
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1) || true
fi
if [[ -z $pkg ]]; then
    # No package index: use the newest kernel already in the cache, if there is one.
    pkg=$(cached)
    [[ -n $pkg ]] || die "cannot find Debian's kernel package: \`apt-cache depends linux-image-amd64\` names none (run apt-get update) and $cache holds none"
fi
kdir=$cache/$pkg
if [[ ! -f $kdir/.complete ]]; then
    echo "kernel.sh: fetching $pkg with apt-get download" >&2
    rm -rf "$kdir" "$kdir.tmp" "$cache/dl"
    mkdir -p "$cache/dl"
    (cd "$cache/dl" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2) ||
        die "apt-get download $pkg failed (is Debian's package registry reachable? try apt-get update)"
    deb=$(find "$cache/dl" -name '*.deb' | head -n1)
    [[ -n $deb ]] || die "apt-get download $pkg left no .deb"
    dpkg-deb -x "$deb" "$kdir.tmp" || die "dpkg-deb -x $deb failed"
    rm -rf "$cache/dl"
    mv "$kdir.tmp" "$kdir"
    touch "$kdir/.complete"
fi
vmlinuz=$(find "$kdir/boot" -name 'vmlinuz-*' | head -n1)
[[ -n $vmlinuz ]] || die "$pkg has no boot/vmlinuz-*"
echo "$vmlinuz"
