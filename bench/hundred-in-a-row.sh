#!/usr/bin/env bash
# Start N containers one after another and leave them running (`stepctr run -d ... sleep`):
# does the Nth start as fast as the first? Then: how much memory does each one's shim take?
#
#   start time: wall time of each `stepctr -q run -d IMAGE sleep 1000` (all stages, until PID 1
#               runs and stepctr returns); goal: the 100th within 1.5x the first (we compare the
#               medians of the first and of the last 10, one run is too noisy to compare alone).
#   shim memory: for every running container, its shim (the parent of PID 1): RSS, PSS and the
#               private anonymous memory, from /proc/PID/smaps_rollup; goal: <= 2 MB each.
#               RSS counts stepctr's binary pages that all shims share; PSS divides those
#               between the processes mapping them, which is what each container costs.
# Needs root. Everything lives in a throw-away STEPCTR_ROOT/STEPCTR_RUN, removed at the end.
#
# Usage: sudo bench/hundred-in-a-row.sh [N]      (default 100)
#        STEPCTR=/path/to/stepctr bench/hundred-in-a-row.sh   (use that binary, no build)
set -euo pipefail

n=${1:-100}
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" hundred-in-a-row

"$stepctr" -q pull
image=$("$stepctr" images | awk 'NR == 2 { print $1 }')
# One container outside the count unpacks the layer.
"$stepctr" -q run --rm "$image" /bin/true

now_us() { echo $(( $(date +%s%N) / 1000 )); }
times=()
for i in $(seq 1 "$n"); do
    t0=$(now_us)
    "$stepctr" -q run -d --name "many-$i" "$image" sleep 1000 >/dev/null
    t1=$(now_us)
    times+=($(( t1 - t0 )))
done

median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
first10=$(median "${times[@]:0:10}")
last10=$(median "${times[@]: -10}")
echo
printf 'start: #1 %.1f ms, #%d %.1f ms; median of the first 10 %.1f ms, of the last 10 %.1f ms: ratio %.2f (goal: <= 1.5)\n' \
    "$(jq -n "${times[0]} / 1000")" "$n" "$(jq -n "${times[-1]} / 1000")" \
    "$(jq -n "$first10 / 1000")" "$(jq -n "$last10 / 1000")" "$(jq -n "$last10 / $first10")"

# The shims: parent of each container's PID 1 (state.json's "pid").
rss=() pss=() anon=()
for i in $(seq 1 "$n"); do
    pid=$(jq -r '.pid // empty' "$STEPCTR_RUN/many-$i/state.json")
    [[ -n $pid ]] || die "many-$i has no PID 1"
    shim=$(awk '/^PPid:/ { print $2 }' "/proc/$pid/status")
    eval "$(awk '/^Rss:/ { print "r=" $2 } /^Pss:/ { print "p=" $2 } /^Private_Dirty:/ { print "a=" $2 }' \
        "/proc/$shim/smaps_rollup")"
    rss+=("$r") pss+=("$p") anon+=("$a")
done
printf 'shim memory with %d running (medians): RSS %d kB, PSS %d kB, private dirty %d kB (goal: <= 2048 kB)\n' \
    "$n" "$(median "${rss[@]}")" "$(median "${pss[@]}")" "$(median "${anon[@]}")"

t0=$(now_us)
for i in $(seq 1 "$n"); do
    "$stepctr" -q rm -f "many-$i"
done
t1=$(now_us)
printf 'rm -f of all %d: %.1f ms each\n' "$n" "$(jq -n "($t1 - $t0) / $n / 1000")"
