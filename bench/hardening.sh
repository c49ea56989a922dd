#!/usr/bin/env bash
# What the hardening of issue 5 costs at start-up: `stepctr -q all --rm -- /bin/true` with the
# default profile (capabilities dropped, no_new_privs, the seccomp filter, masked and read-only
# /proc and /sys paths, /dev/pts, /dev/shm, /dev/mqueue, close_range, the cwd check) against the
# same with parts of it switched off, and, with BEFORE=/path/to/an/older/stepctr, against a build
# without any of it. Goal (issue 5): hardening costs <= 1 ms (median).
#
# Needs root, hyperfine and jq. Writes hyperfine's JSON to bench/results/.
# Usage: sudo bench/hardening.sh [RUNS]                 (default 100 runs, 10 warm-up runs)
#        BEFORE=/tmp/old/stepctr bench/hardening.sh     (add an older build to the comparison)
set -euo pipefail

runs=${1:-100}
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" hardening hyperfine jq
results="$here/results"

"$stepctr" -q pull
"$stepctr" -q all --rm -- /bin/true || die "stepctr cannot run /bin/true"
mkdir -p "$results"
json="$results/hardening-$(date -u +%Y%m%dT%H%M%SZ).json"
cmds=(
    --command-name default "$stepctr -q all --rm -- /bin/true"
    --command-name no-seccomp "$stepctr -q all --rm --security-opt seccomp=unconfined -- /bin/true"
    --command-name no-systempaths "$stepctr -q all --rm --security-opt systempaths=unconfined -- /bin/true"
    --command-name privileged "$stepctr -q all --rm --privileged -- /bin/true"
)
if [[ -n ${BEFORE:-} ]]; then
    "$BEFORE" -q all --rm -- /bin/true || die "$BEFORE cannot run /bin/true"
    cmds+=(--command-name before "$BEFORE -q all --rm -- /bin/true")
fi
hyperfine -N --warmup 10 --runs "$runs" --export-json "$json" "${cmds[@]}"

median() { jq ".results[] | select(.command == \"$1\") | .median * 1000" "$json"; }
d=$(median default)
echo
echo "hyperfine (each command's runs one after the other):"
for c in no-seccomp no-systempaths privileged ${BEFORE:+before}; do
    m=$(median "$c")
    printf '  median: default %.2f ms, %s %.2f ms: the difference is %.2f ms\n' "$d" "$c" "$m" "$(jq -n "$d - $m")"
done

# The difference is a fraction of a millisecond, and this VM drifts by more than that between
# hyperfine's blocks of runs: the goal is judged paired (see `paired` in lib.sh).
pairs=(default "$stepctr -q all --rm -- /bin/true" privileged "$stepctr -q all --rm --privileged -- /bin/true")
if [[ -n ${BEFORE:-} ]]; then
    pairs+=(before "$BEFORE -q all --rm -- /bin/true")
fi
paired "$runs" "${pairs[@]}"
echo "# goal: default - before <= 1 ms (paired); hyperfine JSON: ${json#"$repo"/}"
