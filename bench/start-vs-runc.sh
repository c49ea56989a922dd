#!/usr/bin/env bash
# Time `stepctr all --rm -- /bin/true` against `runc run` of /bin/true on the same rootfs.
#
# Both start a container from the default busybox image and wait for /bin/true to exit:
#   stepctr: load (layers already unpacked) + cgroup + namespaces + overlayfs + PID 1 + rm
#   runc:    create (cgroups, namespaces, mounts, pivot_root) + start + wait + delete
# Needs root, hyperfine, runc, umoci and jq. Writes hyperfine's JSON to bench/results/.
#
# Usage: sudo bench/start-vs-runc.sh [RUNS]   (default 30 runs, 5 warm-up runs each)
set -euo pipefail

runs=${1:-30}
warmup=${WARMUP:-5}
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" start-vs-runc hyperfine runc umoci jq
results="$here/results"

echo "# pulling the default image into $STEPCTR_ROOT"
"$stepctr" -q pull
# One run outside the benchmark unpacks the layer, so every timed run finds it unpacked.
"$stepctr" -q all --rm -- /bin/true

# The runc bundle: the same image, unpacked by umoci, with `runc spec`'s default config.
image_ref=$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]' \
    "$STEPCTR_ROOT/images/index.json")
umoci unpack --image "$STEPCTR_ROOT/images:$image_ref" "$work/umoci" >/dev/null
bundle="$work/bundle"
mkdir -p "$bundle"
mv "$work/umoci/rootfs" "$bundle/rootfs"
(cd "$bundle" && runc spec)
# Adjust the default spec: no TTY, run /bin/true, no rlimits (stepctr sets none, and raising one
# needs CAP_SYS_RESOURCE), and a cgroup namespace as stepctr makes one.
jq '.process.terminal = false
    | .process.args = ["/bin/true"]
    | del(.process.rlimits)
    | .linux.namespaces += [{"type": "cgroup"}]' \
    "$bundle/config.json" >"$bundle/config.json.new"
mv "$bundle/config.json.new" "$bundle/config.json"
runc_root="$work/run/runc"
mkdir -p "$runc_root"
# Check both commands work before timing them.
"$stepctr" -q all --rm -- /bin/true || die "stepctr cannot start /bin/true"
runc --root "$runc_root" run --bundle "$bundle" "check-$$" </dev/null || die "runc cannot start /bin/true"

mkdir -p "$results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
json="$results/start-vs-runc-$stamp.json"
# No shell in between (-N): each command is timed as it is. `runc run` deletes its container
# when /bin/true has ended, so one id serves every run.
hyperfine -N --warmup "$warmup" --runs "$runs" --export-json "$json" \
    --command-name stepctr "$stepctr -q all --rm -- /bin/true" \
    --command-name runc "runc --root $runc_root run --bundle $bundle bench"

stepctr_ms=$(jq '.results[] | select(.command == "stepctr") | .median * 1000' "$json")
runc_ms=$(jq '.results[] | select(.command == "runc") | .median * 1000' "$json")
echo
printf 'median: stepctr %.1f ms, runc %.1f ms, stepctr/runc = %.2f (goal: <= 0.35)\n' \
    "$stepctr_ms" "$runc_ms" "$(jq -n "$stepctr_ms / $runc_ms")"
echo "# hyperfine JSON: ${json#"$repo"/}"

echo "# where stepctr's time goes (its own per-stage timings, 3 runs):"
for _ in 1 2 3; do
    "$stepctr" all --rm -- /bin/true 2>&1 >/dev/null | grep '^# timings:' || true
done
