#!/usr/bin/env bash
# How close is a whole container to the bare minimum? `stepctr run --rm IMAGE /bin/true` against
# `unshare -pfmuin chroot ROOTFS /bin/true` (util-linux: new PID, mount, UTS, IPC and network
# namespaces, a fork, a chroot into the same unpacked image, exec, wait). unshare does no
# cgroup, no overlay, no pivot_root, no /proc or /dev, no state and no clean-up: it is the floor.
# Goal (issue 4): stepctr within 2x of it (median).
#
# Needs root, hyperfine and jq. Writes hyperfine's JSON to bench/results/.
# Usage: sudo bench/vs-unshare.sh [RUNS]          (default 50 runs, 5 warm-up runs each)
#        STEPCTR=/path/to/stepctr bench/vs-unshare.sh   (use that binary, no build)
set -euo pipefail

runs=${1:-50}
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" vs-unshare hyperfine jq unshare chroot
results="$here/results"

"$stepctr" -q pull
image=$("$stepctr" images | awk 'NR == 2 { print $1 }')
"$stepctr" -q run --rm "$image" /bin/true || die "stepctr cannot run /bin/true"
# The image has one layer: its unpacked directory is the rootfs both use.
rootfs=$(find "$STEPCTR_ROOT/layers" -mindepth 1 -maxdepth 1 -type d | head -n 1)
[[ -x $rootfs/bin/true ]] || die "no /bin/true in $rootfs"
unshare -pfmuin chroot "$rootfs" /bin/true || die "unshare cannot run /bin/true"

mkdir -p "$results"
json="$results/vs-unshare-$(date -u +%Y%m%dT%H%M%SZ).json"
hyperfine -N --warmup 5 --runs "$runs" --export-json "$json" \
    --command-name stepctr "$stepctr -q run --rm $image /bin/true" \
    --command-name unshare "unshare -pfmuin chroot $rootfs /bin/true"

s=$(jq '.results[] | select(.command == "stepctr") | .median * 1000' "$json")
u=$(jq '.results[] | select(.command == "unshare") | .median * 1000' "$json")
echo
printf 'median: stepctr %.1f ms, unshare %.1f ms, stepctr/unshare = %.2f (goal: <= 2)\n' \
    "$s" "$u" "$(jq -n "$s / $u")"
echo "# hyperfine JSON: ${json#"$repo"/}"
