#!/usr/bin/env bash
# What `--network bridge` adds to a container's start (issue 6: <= 5 ms, median, side by side
# with `--network none`), and to its removal. Each round starts a container detached (`stepctr
# -q run -d IMAGE sleep 60`: it returns once PID 1 runs) with --network none and with --network
# bridge, in turn, then removes it (`rm -f`); both steps are timed (bash's $EPOCHREALTIME), and
# the figures are medians over the rounds of the bridge - none difference within a round, so the
# VM's drift between rounds cancels out. One container stays on the bridge meanwhile, so each
# measured start pays for its own veth pair, address and route, not for making the bridge.
#
# Needs root. Usage: sudo bench/network.sh [RUNS]   (default 100)
set -euo pipefail

runs=${1:-100}
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" network
image=localhost/stepctr-busybox
"$stepctr" -q pull
"$stepctr" -q run -d --network bridge --name bench-anchor "$image" sleep 3600 >/dev/null
samples="$work/network.txt"
for ((i = 0; i < runs + 5; i++)); do
    for mode in none bridge; do
        t0=$EPOCHREALTIME
        "$stepctr" -q run -d --network "$mode" --name "bench-$mode" "$image" sleep 60 >/dev/null
        t1=$EPOCHREALTIME
        "$stepctr" -q rm -f "bench-$mode"
        t2=$EPOCHREALTIME
        # The first five rounds warm up.
        ((i >= 5)) && echo "$i $mode $t0 $t1 $t2"
    done
done >"$samples"
"$stepctr" -q rm -f bench-anchor
median() { sort -g | awk '{ d[NR] = $1 } END { printf "%.2f", (NR % 2) ? d[(NR + 1) / 2] : (d[NR / 2] + d[NR / 2 + 1]) / 2 }'; }
for step in start rm; do
    col=$([[ $step == start ]] && echo 1 || echo 2)
    row() { awk -v c="$col" -v m="$1" '$2 == m { print ((c == 1 ? $4 - $3 : $5 - $4) * 1000) }' "$samples" | median; }
    diff=$(awk -v c="$col" '
        { ms[$1, $2] = (c == 1 ? $4 - $3 : $5 - $4) * 1000; seen[$1] = 1 }
        END { for (i in seen) if ((i, "bridge") in ms && (i, "none") in ms) print ms[i, "bridge"] - ms[i, "none"] }' "$samples" | median)
    printf '%-5s median: none %s ms, bridge %s ms; paired bridge - none: %s ms\n' "$step" "$(row none)" "$(row bridge)" "$diff"
done
echo "# goal: start, bridge - none <= 5 ms (paired)"
