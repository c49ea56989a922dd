# Shared by the benchmark scripts: `source "$(dirname "$0")/lib.sh" NAME TOOL...`.
# Checks root and the tools named, builds stepctr in release mode (or uses $STEPCTR), and makes a
# throw-away STEPCTR_ROOT (on disk, under /tmp) and STEPCTR_RUN (on a tmpfs, like /run), reset
# and removed on exit.
# Sets: here, repo, stepctr, work; defines die.

bench_name=$1
shift
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

die() { echo "$bench_name: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "needs root (containers need CAP_SYS_ADMIN)"
for tool in "$@"; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
if [[ -n ${STEPCTR:-} ]]; then
    stepctr=$STEPCTR
else
    echo "# building stepctr (release)"
    (cd "$repo" && cargo build --release --quiet)
    stepctr="$repo/target/release/stepctr"
fi

work=$(mktemp -d "/tmp/stepctr-bench-$bench_name.XXXXXX")
# Run-time state (state.json, namespace files, the writable layers; runc's --root too) goes
# where it goes on most machines: /run, a tmpfs (systemd mounts it so; docker, containerd and
# runc keep their state there). This VM's /run is on its disk, so the benchmarks mount a tmpfs
# of their own. BENCH_RUN_ON_DISK=1 keeps it on the disk under /tmp instead.
mkdir -p "$work/run"
if [[ -z ${BENCH_RUN_ON_DISK:-} ]]; then
    mount -t tmpfs -o mode=0755 stepctr-bench "$work/run" || die "cannot mount a tmpfs"
fi
cleanup() {
    STEPCTR_ROOT="$work/root" STEPCTR_RUN="$work/run/stepctr" "$stepctr" -q reset >/dev/null 2>&1 || true
    if mountpoint -q "$work/run"; then umount "$work/run"; fi
    rm -rf "$work"
}
trap cleanup EXIT
export STEPCTR_ROOT="$work/root" STEPCTR_RUN="$work/run/stepctr" NO_COLOR=1

# paired RUNS NAME1 "CMD1" NAME2 "CMD2" ...: round i runs every command once, in turn, timed
# with bash's $EPOCHREALTIME (no fork for the clock); prints, for each command after the first,
# the median over the rounds of (first - it) within the round, and both medians. A difference
# of a millisecond or less cannot be read off hyperfine's blocks of runs on a VM whose speed
# drifts by more than that between blocks; within one round, the drift cancels out.
paired() {
    local runs=$1 i n
    shift
    local -a names=() cmds=()
    while (($# >= 2)); do
        names+=("$1")
        cmds+=("$2")
        shift 2
    done
    local samples="$work/paired.txt"
    for ((i = 0; i < runs; i++)); do
        for n in "${!names[@]}"; do
            read -ra cmd <<<"${cmds[$n]}"
            local t0=$EPOCHREALTIME
            "${cmd[@]}" >/dev/null
            local t1=$EPOCHREALTIME
            echo "$i ${names[$n]} $t0 $t1"
        done
    done >"$samples"
    echo "paired, $runs rounds (median of the per-round differences):"
    local first=${names[0]}
    for n in "${names[@]:1}"; do
        awk -v a="$first" -v n="$n" '
            { ms[$1, $2] = ($4 - $3) * 1000 }
            END { for (i = 0; ("" i, a) in ms; i++) print ms[i, a] - ms[i, n], ms[i, a], ms[i, n] }' "$samples" |
            sort -g | awk -v a="$first" -v n="$n" '
            { d[NR] = $1 }
            END { printf "  %s - %s: %.2f ms\n", a, n, (NR % 2) ? d[(NR + 1) / 2] : (d[NR / 2] + d[NR / 2 + 1]) / 2 }'
    done
}
