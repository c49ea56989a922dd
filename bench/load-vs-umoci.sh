#!/usr/bin/env bash
# Time `stepctr load --flatten` of a ~100 MB image against `umoci unpack` of the same image and
# against GNU `tar -xzf` of its layers, one after the other, into one directory.
#
# The image (built offline with umoci, gzip layers): 4 layers of ~25 MiB each, every layer
# ~400 files of 4-124 KiB in 16 directories, half of them random bytes (gzip cannot shrink
# them), half a hex dump (gzip shrinks it about 2.5x), plus a few symlinks and hardlinks.
# Each timed run starts from an empty destination, after `sync`.
# Needs root (stepctr load does), cargo, umoci, hyperfine, jq and GNU tar. Writes hyperfine's
# JSON to bench/results/.
#
# Usage: sudo bench/load-vs-umoci.sh [RUNS]   (default 10 runs, 2 warm-up runs each)
set -euo pipefail

runs=${1:-10}
warmup=${WARMUP:-2}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
results="$here/results"

die() { echo "load-vs-umoci: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "needs root (stepctr load does)"
for tool in cargo umoci hyperfine jq tar od; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done

echo "# building stepctr (release)"
(cd "$repo" && cargo build --release --quiet)
stepctr="$repo/target/release/stepctr"

# tmpfs by default: on ext4, a file made right after a run deleted the previous tree waits
# for the inode allocator to skip the recently deleted inodes, which then dominates every
# tool's time. BENCH_DIR=/var/tmp measures on the disk's filesystem instead.
base=${BENCH_DIR:-/dev/shm}
work=$(mktemp -d "$base/stepctr-bench-load.XXXXXX")
cleanup() { [[ -n ${KEEP:-} ]] || rm -rf "$work"; }
trap cleanup EXIT

echo "# building a ~100 MB image (4 layers of ~25 MiB in ~400 files each)"
umoci init --layout "$work/src" >/dev/null
umoci new --image "$work/src:bench" >/dev/null
for l in 1 2 3 4; do
    top="$work/layer$l/data$l"
    total=0
    n=0
    while ((total < 25 * 1024 * 1024)); do
        dir="$top/d$((n % 16))"
        mkdir -p "$dir"
        size=$(((RANDOM % 31 + 1) * 4096))
        if ((n % 2)); then
            head -c "$size" /dev/urandom >"$dir/f$n.bin"
        else
            # A hex dump of random bytes: text that gzip shrinks about 2.5x.
            { head -c "$((size / 3))" /dev/urandom | od -An -tx1 | head -c "$size" || true; } \
                >"$dir/f$n.txt"
        fi
        total=$((total + size))
        n=$((n + 1))
    done
    ln -s d0 "$top/link-to-d0"
    ln "$top/d1/f1.bin" "$top/hardlink"
    chown -R 1000:1000 "$top/d2"
    umoci insert --image "$work/src:bench" "$work/layer$l" / >/dev/null
    rm -rf "$work/layer$l"
done
blobs=$(du -sb "$work/src/blobs" | cut -f1)
echo "# image: $((blobs / 1024 / 1024)) MiB of blobs"

export STEPCTR_ROOT="$work/stepctr" STEPCTR_RUN="$work/run" NO_COLOR=1
"$stepctr" -q pull "oci:$work/src:bench"
ref="localhost/src:bench"
# The layers as stepctr stores them, bottom first, for tar.
manifest=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "bench") | .digest' \
    "$work/src/index.json")
layers=$(jq -r '.layers[].digest | sub("sha256:"; "")' "$work/src/blobs/sha256/${manifest#sha256:}" \
    | sed "s|^|$work/src/blobs/sha256/|" | tr '\n' ' ')

load="$stepctr -q load bench $ref --flatten"
unpack="umoci unpack --image $work/src:bench $work/bundle"
untar="mkdir $work/tar && for l in $layers; do tar -xzf \$l -C $work/tar; done"
reset="rm -rf $work/stepctr/flat $work/run $work/bundle $work/tar; sync"

# All three must work, and make the same tree, before they are timed.
eval "$reset"
$load || die "stepctr cannot flatten $ref"
$unpack >/dev/null || die "umoci cannot unpack the image"
bash -c "$untar" || die "tar cannot extract the layers"
flat=$(echo "$work"/stepctr/flat/*)
diff -r --no-dereference "$flat" "$work/bundle/rootfs" >/dev/null \
    || die "stepctr's and umoci's trees differ"
diff -r --no-dereference "$flat" "$work/tar" >/dev/null || die "stepctr's and tar's trees differ"
echo "# the three trees are the same ($(find "$flat" | wc -l) entries)"

mkdir -p "$results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
json="$results/load-vs-umoci-$stamp.json"
hyperfine --shell=bash --warmup "$warmup" --runs "$runs" --export-json "$json" \
    --prepare "$reset" \
    --command-name stepctr "$load" \
    --command-name umoci "$unpack" \
    --command-name tar "$untar"

median() { jq ".results[] | select(.command == \"$1\") | .median * 1000" "$json"; }
s=$(median stepctr)
u=$(median umoci)
t=$(median tar)
echo
printf 'median: stepctr %.0f ms, umoci %.0f ms, tar -xzf %.0f ms\n' "$s" "$u" "$t"
printf 'stepctr/umoci = %.2f (goal: <= 0.5), stepctr/tar = %.2f (goal: <= 1.2)\n' \
    "$(jq -n "$s / $u")" "$(jq -n "$s / $t")"
echo "# hyperfine JSON: ${json#"$repo"/}"
