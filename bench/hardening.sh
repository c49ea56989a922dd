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
# hyperfine's blocks of runs. So, paired: round i runs every command once, in turn, timed with
# bash's $EPOCHREALTIME (no fork for the clock), and the figure is the median over the rounds of
# (default - other) within the round.
samples="$work/paired.txt"
names=(default privileged ${BEFORE:+before})
cmd_of() {
    case $1 in
        default) echo "$stepctr -q all --rm -- /bin/true" ;;
        privileged) echo "$stepctr -q all --rm --privileged -- /bin/true" ;;
        before) echo "$BEFORE -q all --rm -- /bin/true" ;;
    esac
}
for ((i = 0; i < runs; i++)); do
    for n in "${names[@]}"; do
        read -ra cmd <<<"$(cmd_of "$n")"
        t0=$EPOCHREALTIME
        "${cmd[@]}" >/dev/null
        t1=$EPOCHREALTIME
        echo "$i $n $t0 $t1"
    done
done >"$samples"
echo "paired, $runs rounds (median of the per-round differences):"
for n in "${names[@]:1}"; do
    awk -v n="$n" '
        { ms[$1, $2] = ($4 - $3) * 1000 }
        END { for (i = 0; ("" i, "default") in ms; i++) print ms[i, "default"] - ms[i, n] }' "$samples" |
        sort -g | awk -v n="$n" '
        { d[NR] = $1 }
        END { printf "  default - %s: %.2f ms\n", n, (NR % 2) ? d[(NR + 1) / 2] : (d[NR / 2] + d[NR / 2 + 1]) / 2 }'
done
echo "# goal: default - before <= 1 ms (paired); hyperfine JSON: ${json#"$repo"/}"
