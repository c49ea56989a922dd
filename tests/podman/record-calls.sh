#!/bin/bash
# Records how podman and conmon call an OCI runtime (docs/podman-runtime-calls.md was written
# from its output), with podman isolated as tests/podman.rs isolates it. As root:
#   tests/podman/record-calls.sh OUTDIR [REAL-RUNTIME]     (default runc; needs target/debug/stepctr)
# OUTDIR/record/ gets one NNN-<command>.txt per runtime call and NNN-config.json per create;
# OUTDIR/scenarios.txt says which podman command made which calls.
set -euo pipefail
out=$(realpath -m "${1:?usage: record-calls.sh OUTDIR [REAL-RUNTIME]}")
real=${2:-$(command -v runc)}
repo=$(cd "$(dirname "$0")/../.." && pwd)
stepctr=$repo/target/debug/stepctr
mkdir -p "$out"
work=$(mktemp -d /var/tmp/stepctr-podman-record.XXXXXX)
parent=stepctr-podman-record-$$

cleanup() {
    set +e
    podman_ rm --all --force --time 0 >/dev/null 2>&1
    for pid in $(pgrep -f "$work"); do kill -9 "$pid"; done
    grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
    for c in /sys/fs/cgroup/*/"$parent" /sys/fs/cgroup/"$parent"; do
        [[ -d $c ]] && find "$c" -depth -type d -exec rmdir {} \;
    done
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work"/{root,runroot,tmpdir,networks,home,tmp,rt/record,store}
cat >"$work/containers.conf" <<CONF
[containers]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
lock_type = "file"
[network]
network_config_dir = "$work/networks"
CONF
printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\n' "$work/root" "$work/runroot" >"$work/storage.conf"
: >"$work/registries.conf"
# The recorder, named runc so that podman treats it as runc (--log-format=json --log FILE).
cp "$repo/tests/podman/record-runtime.sh" "$work/rt/runc"
echo "$real" >"$work/rt/real-runtime"

podman_() {
    env -i PATH="$PATH" HOME="$work/home" TMPDIR="$work/tmp" \
        CONTAINERS_CONF="$work/containers.conf" CONTAINERS_STORAGE_CONF="$work/storage.conf" \
        CONTAINERS_REGISTRIES_CONF="$work/registries.conf" \
        podman --root "$work/root" --runroot "$work/runroot" --tmpdir "$work/tmpdir" \
        --network-config-dir "$work/networks" --storage-driver overlay --cgroup-manager cgroupfs \
        --events-backend file --runtime "$work/rt/runc" "$@"
}

# The image: stepctr's default image (built offline), as an oci-archive (a tar of the layout).
# podman load writes /var/lib/containers/cache whatever --root says: run this script under
# `unshare -m` with a tmpfs there if that matters to you (tests/podman.rs does so).
STEPCTR_ROOT=$work/store STEPCTR_RUN=$work/store/run "$stepctr" -q pull
tar -C "$work/store/images" -cf "$work/image.tar" .
podman_ load -i "$work/image.tar" >/dev/null 2>&1
img=localhost/stepctr-busybox:latest
run=(--pull never --network none --cgroup-parent "/$parent" --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

scenario() {
    local name=$1; shift
    local before
    before=$(find "$work/rt/record" -name '*.txt' 2>/dev/null | wc -l)
    local o rc=0
    o=$("$@" 2>&1) || rc=$?
    sleep 1   # conmon's exit command (podman container cleanup) runs a moment later
    local calls
    calls=$(find "$work/rt/record" -name '*.txt' 2>/dev/null | sort | tail -n +$((before + 1)) | xargs -r -n1 basename | tr '\n' ' ')
    local shown="podman ${*:2}"
    [[ $1 == bash ]] && shown=${*: -1}
    printf '## %s\n$ %s\nexit %s; output: %s\nruntime calls: %s\n\n' \
        "$name" "${shown//podman_/podman}" "$rc" "$(printf '%s' "$o" | head -c 400 | tr '\n' '|')" "$calls" >>"$out/scenarios.txt"
}
: >"$out/scenarios.txt"
scenario "run --rm" podman_ run --rm "${run[@]}" $img echo hello
scenario "run -d" podman_ run -d --name sl "${run[@]}" $img sleep 100
scenario "ps --sync" podman_ ps --sync
scenario "exec" podman_ exec sl echo in-exec
scenario "stop (SIGTERM, then SIGKILL after -t)" podman_ stop -t 1 sl
scenario "rm" podman_ rm sl
export -f podman_
export work
scenario "run -d, kill, rm -f" bash -c "podman_ run -d --name k1 ${run[*]} $img sleep 100 >/dev/null; podman_ kill k1; podman_ rm -f k1"
scenario "run -i (stdin a pipe)" bash -c "echo piped | podman_ run --rm -i ${run[*]} $img cat"
scenario "run -t (a terminal)" podman_ run --rm -t "${run[@]}" $img sh -c tty
scenario "run, a command that does not exist" podman_ run --rm "${run[@]}" $img /nonexistent
scenario "run without --ulimit (podman's default rlimits)" podman_ run --rm --pull never --network none --cgroup-parent "/$parent" $img true
scenario "info (runtime version)" podman_ info --format '{{.Host.OCIRuntime.Version}}'
rm -rf "$out/record"
cp -r "$work/rt/record" "$out/record"
rm -f "$out/record/.lock"
echo "recorded in $out (scenarios.txt, record/)"
