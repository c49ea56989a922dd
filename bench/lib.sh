# Shared by the benchmark scripts: `source "$(dirname "$0")/lib.sh" NAME TOOL...`.
# Checks root and the tools named, builds stepctr in release mode (or uses $STEPCTR), and makes a
# throw-away STEPCTR_ROOT/STEPCTR_RUN under /tmp that is reset and removed on exit.
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
cleanup() {
    STEPCTR_ROOT="$work/root" STEPCTR_RUN="$work/run" "$stepctr" -q reset >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
export STEPCTR_ROOT="$work/root" STEPCTR_RUN="$work/run" NO_COLOR=1
