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
