#!/usr/bin/env bash
# The OCI runtime interface, stepctr against runc: the same bundle (made by `stepctr bundle` from
# the default image, its process /bin/true), driven as a caller such as conmon drives a runtime:
#   RUNTIME --root R create --bundle B ID && RUNTIME --root R start ID
#     && RUNTIME --root R delete --force ID
# create = cgroups, namespaces, mounts, pivot_root and PID 1 waiting; start = its execve;
# delete = everything removed. Both under `sh -c` (the same shell cost for both).
# Needs root, hyperfine, runc and jq. Writes hyperfine's JSON to bench/results/.
#
# Usage: sudo bench/oci-vs-runc.sh [RUNS]   (default 30 runs, 5 warm-up runs each)
set -euo pipefail

runs=${1:-30}
warmup=${WARMUP:-5}
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" oci-vs-runc hyperfine runc jq
results="$here/results"

echo "# pulling the default image into $STEPCTR_ROOT and making the bundle"
"$stepctr" -q pull
bundle="$work/bundle"
"$stepctr" -q bundle localhost/stepctr-busybox "$bundle"
# /bin/true, no terminal, no rlimits (raising one needs CAP_SYS_RESOURCE, which this VM lacks).
jq '.process.terminal = false | .process.args = ["/bin/true"] | del(.process.rlimits)' \
    "$bundle/config.json" >"$bundle/config.json.new"
mv "$bundle/config.json.new" "$bundle/config.json"
runc_root="$work/run/runc"
oci_root="$work/run/stepctr-oci"
mkdir -p "$runc_root" "$oci_root"
lifecycle() { # RUNTIME ROOT: the command line hyperfine times
    echo "$1 --root $2 create --bundle $bundle bench </dev/null >/dev/null 2>&1 && $1 --root $2 start bench && $1 --root $2 delete --force bench"
}
# Check both before timing them.
sh -c "$(lifecycle "$stepctr" "$oci_root")" || die "stepctr cannot run the bundle"
sh -c "$(lifecycle runc "$runc_root")" || die "runc cannot run the bundle"

mkdir -p "$results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
json="$results/oci-vs-runc-$stamp.json"
hyperfine --shell sh --warmup "$warmup" --runs "$runs" --export-json "$json" \
    --command-name stepctr "$(lifecycle "$stepctr" "$oci_root")" \
    --command-name runc "$(lifecycle runc "$runc_root")"

stepctr_ms=$(jq '.results[] | select(.command == "stepctr") | .median * 1000' "$json")
runc_ms=$(jq '.results[] | select(.command == "runc") | .median * 1000' "$json")
echo
printf 'median: stepctr %.1f ms, runc %.1f ms, stepctr/runc = %.2f (create + start + delete)\n' \
    "$stepctr_ms" "$runc_ms" "$(jq -n "$stepctr_ms / $runc_ms")"
echo "# hyperfine JSON: ${json#"$repo"/}"
