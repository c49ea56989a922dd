#!/usr/bin/env bash
# Time `stepctr pull` of a ~100 MB image from a registry on loopback against
# `skopeo copy docker://... oci:DIR:TAG` of the same image, and measure stepctr's peak RSS.
#
# Both fetch the manifest, the config and four 25 MiB layers of random bytes (gzip: they do not
# shrink) over plain HTTP from Debian's docker-registry on 127.0.0.1, check every blob's sha256
# and write an OCI image layout. Each timed run starts from an empty store/layout.
# Needs root (stepctr pull does), cargo, docker-registry, skopeo, umoci, hyperfine, jq and GNU
# time (/usr/bin/time). Writes hyperfine's JSON to bench/results/.
#
# Usage: sudo bench/pull-vs-skopeo.sh [RUNS]   (default 20 runs, 2 warm-up runs each)
set -euo pipefail

runs=${1:-20}
warmup=${WARMUP:-2}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
results="$here/results"

die() { echo "pull-vs-skopeo: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "needs root (stepctr pull does)"
for tool in cargo docker-registry skopeo umoci hyperfine jq /usr/bin/time; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done

echo "# building stepctr (release)"
(cd "$repo" && cargo build --release --quiet)
stepctr="$repo/target/release/stepctr"

work=$(mktemp -d /tmp/stepctr-bench-pull.XXXXXX)
registry_pid=
cleanup() {
    if [[ -n $registry_pid ]]; then
        kill "$registry_pid" 2>/dev/null || true
        wait "$registry_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# A free port on 127.0.0.1.
port=
for _ in $(seq 50); do
    p=$((20000 + RANDOM % 20000))
    if ! (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[[ -n $port ]] || die "no free port found"
addr="127.0.0.1:$port"

cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: $addr
EOF
echo "# starting docker-registry on $addr"
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
done

echo "# building a ~100 MB image (4 layers of 25 MiB of random bytes) and pushing it"
umoci init --layout "$work/src" >/dev/null
umoci new --image "$work/src:bench" >/dev/null
for i in 1 2 3 4; do
    mkdir -p "$work/layer$i/data$i"
    head -c 25M /dev/urandom >"$work/layer$i/data$i/blob"
    umoci insert --image "$work/src:bench" "$work/layer$i" / >/dev/null
done
image="$addr/bench:1"
skopeo copy --quiet --dest-tls-verify=false "oci:$work/src:bench" "docker://$image"
size=$(du -sb "$work/src/blobs" | cut -f1)
echo "# image $image: $((size / 1024 / 1024)) MiB of blobs"

export STEPCTR_RUN="$work/run" NO_COLOR=1
pull="env STEPCTR_ROOT=$work/stepctr $stepctr -q pull $image"
copy="skopeo copy --quiet --src-tls-verify=false docker://$image oci:$work/skopeo:bench"
# Both must work before they are timed.
$pull || die "stepctr cannot pull $image"
$copy || die "skopeo cannot copy $image"

mkdir -p "$results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
json="$results/pull-vs-skopeo-$stamp.json"
hyperfine -N --warmup "$warmup" --runs "$runs" --export-json "$json" \
    --prepare "rm -rf $work/stepctr $work/skopeo" \
    --command-name stepctr "$pull" \
    --command-name skopeo "$copy"

stepctr_ms=$(jq '.results[] | select(.command == "stepctr") | .median * 1000' "$json")
skopeo_ms=$(jq '.results[] | select(.command == "skopeo") | .median * 1000' "$json")
echo
printf 'median: stepctr %.0f ms, skopeo %.0f ms, stepctr/skopeo = %.2f (goal: <= 1.0)\n' \
    "$stepctr_ms" "$skopeo_ms" "$(jq -n "$stepctr_ms / $skopeo_ms")"

# Peak RSS of a whole pull into an empty store, the worst of 3.
peak=0
for _ in 1 2 3; do
    rm -rf "$work/stepctr"
    kb=$(STEPCTR_ROOT="$work/stepctr" /usr/bin/time -v "$stepctr" -q pull "$image" 2>&1 \
        | awk -F': ' '/Maximum resident set size/ { print $2 }')
    ((kb > peak)) && peak=$kb
done
printf 'peak RSS of stepctr pull: %.1f MiB (goal: <= 32 MiB)\n' "$(jq -n "$peak / 1024")"
echo "# hyperfine JSON: ${json#"$repo"/}"
