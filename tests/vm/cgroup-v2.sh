#!/usr/bin/env bash
# Boot a real pure-cgroup-v2 Linux under QEMU (software emulation, no network) and run stepctr in
# it for real: `all` with limits, the six stages one by one, `rm`, and `rm` of a running container,
# the limits enforced, and PID 1 and `exec` born in the cgroup with clone3
# (CLONE_INTO_CGROUP), with strace -f as the witness.
#
# Usage: tests/vm/cgroup-v2.sh [STEPCTR_BINARY]     (default: target/debug/stepctr)
#
# Every result is printed as `CHECK name=value`; the VM also checks each value itself and prints
# `FAIL: ...` for a wrong one. This script exits non-zero, with a message saying why, when qemu or
# the kernel cannot be had, the VM does not finish, or any check fails.
#
# The kernel is Debian's: the package linux-image-amd64 depends on, fetched with `apt-get
# download` and unpacked (never installed) into the cache. The initramfs (busybox-static, the
# stepctr binary, strace, their libraries, the overlay module, /init) is cached by kernel version
# and a hash of the stepctr and strace binaries and this script.
#
# Environment:
#   STEPCTR_VM_CACHE    cache directory (default: target/vm-cache next to the binary's target/)
#   STEPCTR_VM_TIMEOUT  seconds the VM may run (default 240)
#   STEPCTR_VM_KERNEL_PKG  kernel package to use instead of what linux-image-amd64 depends on
set -euo pipefail

die() {
    echo "cgroup-v2.sh: $*" >&2
    exit 1
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=${1:-$repo/target/debug/stepctr}
[[ -x $bin ]] || die "no stepctr binary at $bin: run \`cargo build\` first"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
target=$(cd "$(dirname "$bin")/.." && pwd)
cache=${STEPCTR_VM_CACHE:-$target/vm-cache}
timeout_s=${STEPCTR_VM_TIMEOUT:-240}

need() {
    command -v "$1" >/dev/null || die "$1 not found: install the Debian package $2 (.ci/run installs it)"
}
need qemu-system-x86_64 qemu-system-x86
need cpio cpio
need gzip gzip
need xz xz-utils
need modinfo kmod
need dpkg-deb dpkg
need flock util-linux
need ldd libc-bin
need strace strace
strace_bin=$(command -v strace)
need setpriv util-linux
setpriv_bin=$(command -v setpriv)
busybox=""
for b in /bin/busybox /usr/bin/busybox; do
    if [[ -x $b ]] && ! ldd "$b" >/dev/null 2>&1; then
        busybox=$b
        break
    fi
done
[[ -n $busybox ]] || die "no statically linked busybox: install the Debian package busybox-static"

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 # one build at a time; parallel runs then share the cache

# --- the kernel -------------------------------------------------------------------------------
# tests/vm/kernel.sh prints its vmlinuz (fetching Debian's package into the cache when missing).
vmlinuz=$(STEPCTR_VM_CACHE=$cache "$here/kernel.sh") || die "no kernel to boot (tests/vm/kernel.sh failed)"
kdir=$(cd "$(dirname "$vmlinuz")/.." && pwd)
pkg=${kdir##*/}
kver=${vmlinuz##*/vmlinuz-}
moddir=$(find "$kdir" -maxdepth 3 -type d -path "*/modules/$kver" | head -n1)
[[ -n $moddir ]] || die "$pkg has no modules/$kver"

# A module file by name (.ko, .ko.xz, .ko.zst, .ko.gz), uncompressed into $2.
module_file() {
    local f
    f=$(find "$moddir/kernel" -name "$1.ko" -o -name "$1.ko.xz" -o -name "$1.ko.zst" -o -name "$1.ko.gz" |
        head -n1)
    [[ -n $f ]] || die "module $1 not found under $moddir"
    case $f in
        *.xz) xz -dc "$f" >"$2" ;;
        *.zst) command -v zstd >/dev/null || die "$f needs zstd"; zstd -qdc "$f" >"$2" ;;
        *.gz) gzip -dc "$f" >"$2" ;;
        *) cp "$f" "$2" ;;
    esac
}

# --- the initramfs ----------------------------------------------------------------------------
hash=$(cat "$bin" "$busybox" "$strace_bin" "$setpriv_bin" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
initrd=$cache/initramfs-$kver-$hash.cpio.gz
if [[ ! -f $initrd ]]; then
    echo "cgroup-v2.sh: building $initrd" >&2
    find "$cache" -maxdepth 1 -name "initramfs-*.cpio.gz" -delete
    rm -rf "$cache"/initramfs.?????? # left by a build that was killed
    stage=$(mktemp -d "$cache/initramfs.XXXXXX")
    trap 'rm -rf "$stage"' EXIT
    mkdir -p "$stage"/{bin,dev,proc,sys,run,tmp,newroot,vm/modules,etc}
    cp "$busybox" "$stage/bin/busybox"
    for applet in $("$busybox" --list); do
        [[ $applet == busybox ]] || ln -s busybox "$stage/bin/$applet"
    done
    # stepctr, without its debug info (it is big, and the VM unpacks everything in software)...
    if command -v strip >/dev/null; then
        strip --strip-debug -o "$stage/bin/stepctr" "$bin"
    else
        cp "$bin" "$stage/bin/stepctr"
    fi
    # strace (dynamically linked), the kernel's witness for the narration...
    cp "$strace_bin" "$stage/bin/strace"
    # util-linux's setpriv, to run stepctr as a user (busybox's cannot change uids, and its
    # shell would run its own applet for the name `setpriv`).
    cp "$setpriv_bin" "$stage/bin/ul-setpriv"
    # ...and their shared libraries and ELF interpreter, at the paths the binaries ask for.
    for lib in $( (ldd "$bin"; ldd "$strace_bin"; ldd "$setpriv_bin") | sort -u |
        sed -n 's/.*=> \(\/[^ ]*\).*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (.*/\1/p'); do
        mkdir -p "$stage$(dirname "$lib")"
        cp -L "$lib" "$stage$lib"
    done
    # The overlay module and what it depends on, in load order.
    order=()
    add_module() {
        local m=$1 dep deps
        [[ " ${order[*]} " == *" $m "* ]] && return 0
        module_file "$m" "$stage/vm/modules/$m.ko"
        deps=$(modinfo -F depends "$stage/vm/modules/$m.ko" | tr ',' ' ')
        for dep in $deps; do add_module "$dep"; done
        order+=("$m")
    }
    add_module overlay
    printf '%s\n' "${order[@]}" >"$stage/vm/modules.order"
    [[ -e $stage/dev/console ]] || mknod "$stage/dev/console" c 5 1 2>/dev/null || true
    [[ -e $stage/dev/null ]] || mknod "$stage/dev/null" c 1 3 2>/dev/null || true

    # Stage 1: pivot_root refuses to leave the initramfs (rootfs has no parent mount), and
    # runc, crun and stepctr all pivot_root: copy everything to a tmpfs and switch_root there.
    cat >"$stage/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t tmpfs -o mode=0755 tmpfs /newroot
for d in bin etc lib lib64 usr vm; do
    [ -e /$d ] && /bin/busybox cp -a /$d /newroot/
done
/bin/busybox mkdir -p /newroot/dev /newroot/proc /newroot/sys /newroot/run /newroot/tmp
exec /bin/busybox switch_root /newroot /vm/init2
echo "FAIL: switch_root failed"
/bin/busybox poweroff -f
EOF
    # Stage 2: the tests.
    cat >"$stage/vm/init2" <<'EOF'
#!/bin/sh
export PATH=/bin HOME=/ NO_COLOR=1
export STEPCTR_ROOT=/tmp/stepctr STEPCTR_RUN=/run/stepctr
FAILED=0
fail() { echo "FAIL: $*"; FAILED=1; }
check() { echo "CHECK $1=$2"; }
# expect NAME VALUE WANTED: print the check, and fail if the value is not the wanted one.
expect() {
    check "$1" "$2"
    [ "$2" = "$3" ] || fail "$1 is '$2', expected '$3'"
}
show() { echo "---- $1"; sed 's/^/| /' "$1"; echo "----"; }
finish() {
    echo "VM-DONE failed=$FAILED"
    sync
    poweroff -f
}
up() { cut -d' ' -f1 /proc/uptime; }
# wait_for SECONDS COMMAND...: poll every 0.1 s until COMMAND succeeds.
wait_for() {
    local n=$(($1 * 10)); shift
    while [ $n -gt 0 ]; do
        "$@" && return 0
        sleep 0.1
        n=$((n - 1))
    done
    return 1
}
state_pid() { sed -n 's/^  "pid": \([0-9][0-9]*\).*/\1/p' "$STEPCTR_RUN/$1/state.json" 2>/dev/null; }
in_procs() { grep -qx "$2" "/sys/fs/cgroup/stepctr/$1/cgroup.procs" 2>/dev/null; }
procs_at_least() { [ "$(grep -c . "/sys/fs/cgroup/stepctr/$1/cgroup.procs" 2>/dev/null)" -ge "$2" ] 2>/dev/null; }
got() { sed -n "s/^CHECK $2=//p" "$1" | head -n1; }
# The pid of the process running `sleep 7.25` (exec's command), as the VM sees it.
pgrep_sleep() {
    for p in /proc/[0-9]*; do
        [ "$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)" = "sleep 7.25 " ] && { echo "${p#/proc/}"; return 0; }
    done
    return 1
}
gone() { [ ! -e "$1" ] && echo yes || echo no; }
run_mounts() { grep -c " $STEPCTR_RUN" /proc/self/mountinfo; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mkdir -p "$STEPCTR_ROOT" "$STEPCTR_RUN"
exec </dev/null
echo; echo "VM-START uptime=$(up)"
check kernel "$(uname -r)"
# statfs's f_type: CGROUP2_SUPER_MAGIC (busybox's stat has no name for it)
expect cgroup_fs_magic "$(stat -f -c %t /sys/fs/cgroup)" 63677270
expect v1_hierarchies "$(grep -c ' cgroup ' /proc/mounts)" 0
check controllers "$(cat /sys/fs/cgroup/cgroup.controllers)"
for m in $(cat /vm/modules.order); do
    insmod "/vm/modules/$m.ko" || fail "insmod $m"
done
expect overlay_loaded "$(grep -qw overlay /proc/filesystems && echo yes || echo no)" yes
check stepctr_version "$(stepctr --version)"
# stepctr doctor sees what this VM is: pure v2, with memory, cpu and pids.
stepctr doctor >/tmp/doctor.out 2>/tmp/doctor.err
expect doctor_exit $? 0
doctor_line() { sed -n "s/^\([a-z]*\)  *$1  *\(.*\)/\1 \2/p" /tmp/doctor.out | head -n1; }
expect doctor_cgroup_mode "$(doctor_line cgroup_mode | cut -c1-10)" "ok pure v2"
expect doctor_controllers "$(doctor_line cgroup_controllers | sed 's/ usable.*//')" "ok memory, cpu, pids"
expect doctor_json "$(stepctr doctor --json | grep -c '"check": ')" 13
[ "$FAILED" = 0 ] || { show /tmp/doctor.out; show /tmp/doctor.err; }

# (1) all, with limits; look at it from the VM's side while it runs.
PROBE='echo "CHECK inner_pid=$$"; echo "CHECK inner_hostname=$(hostname)"; echo "CHECK inner_cgroup=$(cat /proc/self/cgroup)"; echo "CHECK inner_root=$(ls / | tr "\n" " ")"; echo "PROBE-READY"; sleep 3'
t0=$(up)
timeout 120 stepctr -v all --name v2 --memory 256M --pids-limit 64 -- sh -c "$PROBE" >/tmp/v2.out 2>/tmp/v2.err &
all_pid=$!
if wait_for 90 grep -q PROBE-READY /tmp/v2.out; then
    pid1=$(state_pid v2)
    check pid1_host "$pid1"
    cg=/sys/fs/cgroup/stepctr/v2
    expect memory_max "$(cat $cg/memory.max)" 268435456
    expect pids_max "$(cat $cg/pids.max)" 64
    check cgroup_procs "$(cat $cg/cgroup.procs | tr '\n' ' ')"
    expect procs_has_pid1 "$(in_procs v2 "$pid1" && echo yes || echo no)" yes
    expect host_cgroup "$(cat /proc/$pid1/cgroup)" 0::/stepctr/v2
    expect root_subtree_control "$(cat /sys/fs/cgroup/cgroup.subtree_control)" "memory pids"
    expect parent_subtree_control "$(cat /sys/fs/cgroup/stepctr/cgroup.subtree_control)" "memory pids"
    check pids_current "$(cat $cg/pids.current)"
else
    fail "the container of \`stepctr all\` did not run within 90 s"
fi
wait $all_pid
expect all_exit $? 0
check all_seconds "$(awk "BEGIN { print $(up) - $t0 }")"
expect inner_pid "$(got /tmp/v2.out inner_pid)" 1
expect inner_hostname "$(got /tmp/v2.out inner_hostname)" v2
expect inner_cgroup "$(got /tmp/v2.out inner_cgroup)" 0::/
check inner_root "$(got /tmp/v2.out inner_root)"
[ "$FAILED" = 0 ] || { show /tmp/v2.out; show /tmp/v2.err; }
expect all_narrated_memory_max "$(grep -q 'memory.max' /tmp/v2.err && echo yes || echo no)" yes
# On v2 PID 1 is born in the cgroup: clone3 with CLONE_INTO_CGROUP (and an fd of the cgroup's
# directory), never a fork and a write to cgroup.procs. (The namespaces are made by stepctr
# itself, which never enters the container's cgroup.)
# born WHY FILE: yes if FILE narrates a clone3 into the cgroup for the child WHY.
born() {
    grep -q "clone3({flags=CLONE_INTO_CGROUP, exit_signal=SIGCHLD, stack=NULL, stack_size=0, cgroup=[0-9]*}, 88) = [0-9]* .*# $1, born inside the container's cgroup" "$2" &&
        echo yes || echo no
}
expect all_ns_by_stepctr "$(grep -q '^unshare(CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWNET) = 0' /tmp/v2.err && echo yes || echo no)" yes
expect all_clone3_pid1 "$(born 'the future PID 1' /tmp/v2.err)" yes
expect all_cgroup_dir_opened "$(grep -q 'openat(AT_FDCWD, "/sys/fs/cgroup/stepctr/v2", O_RDONLY|O_CLOEXEC|O_PATH|O_DIRECTORY) = ' /tmp/v2.err && echo yes || echo no)" yes
expect all_procs_writes "$(grep -c 'cgroup.procs' /tmp/v2.err)" 0

# (2) the six stages one by one, on another container.
t0=$(up)
stage() {
    local name=$1; shift
    stepctr "$@" >"/tmp/stage-$name.out" 2>"/tmp/stage-$name.err"
    local rc=$?
    check "stage_${name}_exit" "$rc"
    return $rc
}
stage pull pull || fail "stepctr pull"
stage load load v2s || fail "stepctr load v2s"
stage cgroup cgroup v2s --memory 128M --pids-limit 32 || fail "stepctr cgroup v2s"
expect stages_memory_max "$(cat /sys/fs/cgroup/stepctr/v2s/memory.max)" 134217728
expect stages_pids_max "$(cat /sys/fs/cgroup/stepctr/v2s/pids.max)" 32
stage ns ns v2s || fail "stepctr ns v2s"
expect stages_procs_after_ns "$(cat /sys/fs/cgroup/stepctr/v2s/cgroup.procs | wc -l)" 0
stage fs fs v2s || fail "stepctr fs v2s"
timeout 60 stepctr start v2s -- sh -c 'echo "CHECK stages_inner_cgroup=$(cat /proc/self/cgroup)"; exit 7' \
    >/tmp/stage-start.out 2>/tmp/stage-start.err
expect start_exit $? 7
expect stages_inner_cgroup "$(got /tmp/stage-start.out stages_inner_cgroup)" 0::/
check stages_seconds "$(awk "BEGIN { print $(up) - $t0 }")"
[ "$FAILED" = 0 ] || for f in /tmp/stage-*; do show "$f"; done

# (3) rm both: their cgroups go, then the shared parent, and no mount of the run dir is left.
stepctr rm v2 v2s >/tmp/rm.out 2>/tmp/rm.err
expect rm_exit $? 0
expect rm_v2_cgroup_gone "$(gone /sys/fs/cgroup/stepctr/v2)" yes
expect rm_v2s_cgroup_gone "$(gone /sys/fs/cgroup/stepctr/v2s)" yes
expect rm_parent_gone "$(gone /sys/fs/cgroup/stepctr)" yes
expect rm_run_mounts "$(run_mounts)" 0
expect rm_state_left "$(ls "$STEPCTR_RUN" | wc -l)" 0
[ "$FAILED" = 0 ] || { show /tmp/rm.err; cat /proc/self/mountinfo; }

# (4) rm while the container runs: a child of PID 1 is killed with cgroup.kill.
timeout 120 stepctr all --name v2k --pids-limit 16 -- sh -c 'sleep 100 & echo "CHECK kill_child=$!"; sleep 100' \
    >/tmp/v2k.out 2>/tmp/v2k.err &
kill_all_pid=$!
if wait_for 90 grep -q kill_child /tmp/v2k.out && wait_for 10 procs_at_least v2k 2; then
    kpid=$(state_pid v2k)
    check kill_procs "$(cat /sys/fs/cgroup/stepctr/v2k/cgroup.procs | tr '\n' ' ')"
    # exec: the new process is born in the container's cgroup too (and rm kills it with the rest).
    timeout 60 stepctr -v exec v2k sh -c 'echo "CHECK exec_inner_cgroup=$(cat /proc/self/cgroup)"; exec sleep 7.25' \
        >/tmp/exec.out 2>/tmp/exec.err &
    if wait_for 60 grep -q exec_inner_cgroup /tmp/exec.out; then
        expect exec_inner_cgroup "$(got /tmp/exec.out exec_inner_cgroup)" 0::/
        epid=""
        wait_for 10 pgrep_sleep >/dev/null && epid=$(pgrep_sleep)
        check exec_host_pid "$epid"
        expect exec_host_cgroup "$(cat /proc/$epid/cgroup 2>/dev/null)" 0::/stepctr/v2k
        expect exec_clone3 "$(born 'the process that becomes the command inside the container' /tmp/exec.err)" yes
        expect exec_procs_writes "$(grep -c 'cgroup.procs' /tmp/exec.err)" 0
    else
        fail "stepctr exec v2k did not run within 60 s"
    fi
    [ "$FAILED" = 0 ] || { show /tmp/exec.out; show /tmp/exec.err; }
    t0=$(up)
    stepctr rm -f v2k >/tmp/rm-k.out 2>/tmp/rm-k.err
    expect kill_rm_exit $? 0
    check kill_rm_seconds "$(awk "BEGIN { print $(up) - $t0 }")"
    expect kill_used_cgroup_kill "$(grep -q 'cgroup.kill' /tmp/rm-k.err && echo yes || echo no)" yes
    wait $kill_all_pid
    check kill_all_exit $?
    expect kill_pid1_gone "$(gone /proc/$kpid)" yes
    expect kill_sleeps_left "$(cat /proc/[0-9]*/comm 2>/dev/null | grep -cx sleep)" 0
    expect kill_cgroup_gone "$(gone /sys/fs/cgroup/stepctr/v2k)" yes
    expect kill_parent_gone "$(gone /sys/fs/cgroup/stepctr)" yes
    expect kill_run_mounts "$(run_mounts)" 0
else
    fail "the container v2k did not run within 90 s"
    kill $kill_all_pid
fi
[ "$FAILED" = 0 ] || { show /tmp/v2k.out; show /tmp/v2k.err; show /tmp/rm-k.err; }

# (5) the limits are enforced by the kernel: memory, pids, cpu.
yes_if() { "$@" && echo yes || echo no; }
# memory: PID 1 (the shell) doubles a string past 64 MiB and is OOM-killed.
stepctr all --name v2m --memory 64M -- sh -c 'a=aaaaaaaaaaaaaaaa; while :; do a=$a$a; done' \
    >/tmp/v2m.out 2>/tmp/v2m.err
expect oom_exit $? 137
oom_kills=$(sed -n 's/^oom_kill //p' /sys/fs/cgroup/stepctr/v2m/memory.events)
check oom_kills "$oom_kills"
expect oom_kill_counted "$(yes_if [ "${oom_kills:-0}" -ge 1 ])" yes
expect oom_state "$(yes_if grep -q '"oom_killed": true' "$STEPCTR_RUN/v2m/state.json")" yes
stats_oom() { stepctr stats v2m --json | grep -q '"oom_killed": true'; }
expect oom_stats "$(yes_if stats_oom)" yes
expect oom_narrated "$(yes_if grep -q 'OOM killer' /tmp/v2m.err)" yes
stepctr -q rm v2m || fail "stepctr rm v2m"
[ "$FAILED" = 0 ] || { show /tmp/v2m.err; }
# pids: a fork bomb stays within --pids-limit 32, the VM stays usable, rm ends it.
BOMB='bomb() { while :; do bomb & done; }; bomb & while :; do wait; done'
timeout 60 stepctr -q all --name v2b --pids-limit 32 -- sh -c "$BOMB" >/dev/null 2>/tmp/v2b.err &
bomb_all=$!
if wait_for 30 procs_at_least v2b 1; then
    max=0 n=20
    while [ $n -gt 0 ]; do
        c=$(cat /sys/fs/cgroup/stepctr/v2b/pids.current)
        [ "$c" -gt "$max" ] && max=$c
        sleep 0.1
        n=$((n - 1))
    done
    check bomb_max_pids "$max"
    expect bomb_within_limit "$(yes_if [ "$max" -le 32 ])" yes
    refused=$(sed -n 's/^max //p' /sys/fs/cgroup/stepctr/v2b/pids.events)
    check bomb_refused "$refused"
    expect bomb_hit_limit "$(yes_if [ "${refused:-0}" -gt 0 ])" yes
    t0=$(up)
    for i in 1 2 3 4 5; do /bin/true; done
    expect bomb_vm_usable "$(yes_if awk "BEGIN { exit !($(up) - $t0 < 5) }")" yes
    stepctr -q rm -f v2b
    expect bomb_rm_exit $? 0
    wait $bomb_all
    expect bomb_all_exit $? 137
    expect bomb_cgroup_gone "$(gone /sys/fs/cgroup/stepctr/v2b)" yes
else
    fail "the container v2b did not run within 30 s"
    kill $bomb_all
fi
[ "$FAILED" = 0 ] || { show /tmp/v2b.err; }
# cpu: --cpus 0.5 is cpu.max "50000 100000"; a busy loop gets about half a CPU (cpu.stat).
timeout 60 stepctr -q all --name v2c --cpus 0.5 -- sh -c 'while :; do :; done' >/dev/null 2>/tmp/v2c.err &
cpu_all=$!
if wait_for 30 procs_at_least v2c 1; then
    cg=/sys/fs/cgroup/stepctr/v2c
    expect cpu_max "$(cat $cg/cpu.max)" "50000 100000"
    expect cpu_subtree_control "$(yes_if grep -qw cpu /sys/fs/cgroup/stepctr/cgroup.subtree_control)" yes
    sleep 0.3
    u0=$(sed -n 's/^usage_usec //p' $cg/cpu.stat) t0=$(up)
    sleep 2
    u1=$(sed -n 's/^usage_usec //p' $cg/cpu.stat) t1=$(up)
    pct=$(awk "BEGIN { printf \"%d\", ($u1 - $u0) / 10000 / ($t1 - $t0) }")
    check cpu_percent "$pct"
    expect cpu_capped "$(yes_if [ "$pct" -ge 35 -a "$pct" -le 65 ])" yes
    stepctr -q rm -f v2c || fail "stepctr rm v2c"
    wait $cpu_all
    expect cpu_cgroup_gone "$(gone $cg)" yes
else
    fail "the container v2c did not run within 30 s"
    kill $cpu_all
fi
[ "$FAILED" = 0 ] || { show /tmp/v2c.err; }
# (6) strace's witness: `all` under strace -f; the clone3 lines of the narration and of the
# trace are printed (NARR/TRACE) for the test to match, and no process writes to cgroup.procs.
timeout 180 strace -f -qq -v -y -s 256 -o /tmp/st.trace \
    stepctr --trace-file /tmp/st.narr all --name v2t --rm --memory 64M -- true >/tmp/st.out 2>/tmp/st.err
expect strace_all_exit $? 0
check strace_main_pid "$(head -n1 /tmp/st.trace | cut -d' ' -f1)"
grep 'clone3(' /tmp/st.narr | sed 's/^/NARR /'
grep 'clone3' /tmp/st.trace | sed 's/^/TRACE /'
expect strace_procs_writes "$(grep -c 'cgroup.procs", O_WRONLY' /tmp/st.trace)" 0
expect strace_into_cgroup "$(grep -c 'clone3({flags=CLONE_INTO_CGROUP' /tmp/st.trace | awk '{ print ($1 >= 1) ? "yes" : "no" }')" yes
[ "$FAILED" = 0 ] || { show /tmp/st.err; show /tmp/st.narr; }
expect limits_parent_gone "$(gone /sys/fs/cgroup/stepctr)" yes
# (7) rootless, with a delegated cgroup (the kernel's cgroup-v2 "Delegation", what systemd does
# for user@UID.service): root makes /sys/fs/cgroup/rl, lets it hand memory and pids down, and
# gives it with its control files to uid 1000, whose shell goes into rl/shell. stepctr, as that
# user, finds rl and makes rl/stepctr/NAME with the limits.
RL=/sys/fs/cgroup/rl
mkdir -p $RL/shell /tmp/rl
chown 1000:1000 /tmp/rl
echo "+memory +pids" >/sys/fs/cgroup/cgroup.subtree_control
echo "+memory +pids" >$RL/cgroup.subtree_control
for d in $RL $RL/shell; do
    chown 1000:1000 $d $d/cgroup.procs $d/cgroup.subtree_control $d/cgroup.threads
done
cat >/tmp/as-user <<'USER'
#!/bin/sh
echo $$ >/sys/fs/cgroup/rl/shell/cgroup.procs &&
    exec ul-setpriv --reuid=1000 --regid=1000 --clear-groups \
        env HOME=/tmp/rl STEPCTR_ROOT=/tmp/rl/store STEPCTR_RUN=/tmp/rl/run "$@"
USER
chmod 755 /tmp/as-user
as_user() { /tmp/as-user "$@"; }
as_user stepctr -q pull >/tmp/rl-pull.out 2>/tmp/rl-pull.err || { fail "rootless pull"; show /tmp/rl-pull.err; }
timeout 120 /tmp/as-user stepctr run -d --name rl1 --memory 64M --pids-limit 16 localhost/stepctr-busybox \
    sleep 100 >/tmp/rl.out 2>/tmp/rl.err || fail "rootless run -d"
rl_pid1=$(sed -n 's/^  "pid": \([0-9][0-9]*\).*/\1/p' /tmp/rl/run/rl1/state.json 2>/dev/null)
check rootless_pid1 "$rl_pid1"
expect rootless_state_cgroup "$(grep -q "\"$RL/stepctr/rl1\"" /tmp/rl/run/rl1/state.json && echo yes || echo no)" yes
expect rootless_memory_max "$(cat $RL/stepctr/rl1/memory.max 2>&1)" 67108864
expect rootless_pids_max "$(cat $RL/stepctr/rl1/pids.max 2>&1)" 16
expect rootless_pid1_in_cgroup "$(grep -qx "$rl_pid1" $RL/stepctr/rl1/cgroup.procs 2>/dev/null && echo yes || echo no)" yes
expect rootless_pid1_uid "$(stat -c %u /proc/$rl_pid1 2>&1)" 1000
expect rootless_uid_map "$(tr -s ' ' </proc/$rl_pid1/uid_map 2>&1)" " 0 1000 1"
as_user stepctr -q rm -f rl1 >/dev/null 2>/tmp/rl-rm.err || { fail "rootless rm"; show /tmp/rl-rm.err; }
[ "$FAILED" = 0 ] || { show /tmp/rl.err; }
# The memory limit holds: an allocation loop is OOM-killed (exit code 137).
timeout 120 /tmp/as-user stepctr all --rm --name rl2 --memory 64M localhost/stepctr-busybox \
    -- sh -c 'a=aaaaaaaaaaaaaaaa; while :; do a=$a$a; done' >/dev/null 2>/tmp/rl2.err
expect rootless_oom_exit $? 137
[ "$FAILED" = 0 ] || { show /tmp/rl2.err; }
expect rootless_found_delegation "$(grep -q "$RL is delegated to uid 1000" /tmp/rl2.err && echo yes || echo no)" yes
expect rootless_cgroups_gone "$(gone $RL/stepctr)" yes
expect rootless_nothing_left "$(ls /tmp/rl/run | wc -l)" 0
rmdir $RL/shell $RL 2>/dev/null
# (8) OCI linux.resources beyond the stage's limits: cpu.cpus/.mems (cpuset enabled in every
# ancestor's cgroup.subtree_control), cpu.period kept as given; swappiness, disableOOMKiller
# and kernel memory have no v2 file: ignored (kernel memory with a warning), as runc does.
stepctr -q bundle localhost/stepctr-busybox /tmp/ob >/dev/null 2>/tmp/ob.err || { fail "stepctr bundle"; show /tmp/ob.err; }
sed -i -e 's|^\([[:space:]]*\)"sh"$|\1"sh", "-c", "grep _allowed_list /proc/self/status"|' \
    -e 's|"resources": {|"cgroupsPath": "/oci/o1", "resources": {"memory": {"limit": 67108864, "swappiness": 42, "disableOOMKiller": true, "kernel": 67108864}, "cpu": {"quota": 50000, "period": 500000, "cpus": "0", "mems": "0"},|' \
    /tmp/ob/config.json
stopped() { stepctr state "$1" 2>/dev/null | grep -q '"status": "stopped"'; }
timeout 60 stepctr create -b /tmp/ob o1 >/tmp/o1.out 2>/tmp/o1.err
expect oci_create_exit $? 0
OC=/sys/fs/cgroup/oci/o1
expect oci_cpuset_cpus "$(cat $OC/cpuset.cpus 2>&1)" 0
expect oci_cpuset_mems "$(cat $OC/cpuset.mems 2>&1)" 0
expect oci_cpu_max "$(cat $OC/cpu.max 2>&1)" "50000 500000"
expect oci_parent_cpuset "$(grep -c cpuset /sys/fs/cgroup/oci/cgroup.subtree_control 2>&1)" 1
expect oci_kernel_warned "$(grep -c 'kernelTCP are ignored' /tmp/o1.err)" 1
timeout 60 stepctr start o1 || fail "stepctr start o1"
wait_for 30 stopped o1 || fail "o1 did not stop"
expect oci_cpus_allowed "$(grep Cpus_allowed_list /tmp/o1.out | tr -d ' \t')" Cpus_allowed_list:0
expect oci_mems_allowed "$(grep Mems_allowed_list /tmp/o1.out | tr -d ' \t')" Mems_allowed_list:0
stepctr delete o1 || fail "stepctr delete o1"
expect oci_cgroups_gone "$(gone /sys/fs/cgroup/oci)" yes
[ "$FAILED" = 0 ] || { show /tmp/o1.out; show /tmp/o1.err; show /tmp/ob/config.json; }
check vm_seconds "$(up)"
finish
EOF
    chmod 755 "$stage/init" "$stage/vm/init2"
    (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -1) \
        >"$initrd.tmp"
    mv "$initrd.tmp" "$initrd"
    rm -rf "$stage"
    trap - EXIT
fi
exec 9>&- # the cache is ready: let other runs in

# --- the VM -------------------------------------------------------------------------------------
log=$(mktemp "${TMPDIR:-/tmp}/stepctr-vm.XXXXXX.log")
echo "cgroup-v2.sh: booting $kver (tcg, no network), serial console in $log" >&2
start=$(date +%s)
set +e
timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 \
    -nographic -no-reboot -m 1024 -smp 2 -accel tcg -nic none \
    -kernel "$vmlinuz" -initrd "$initrd" \
    -append "console=ttyS0 cgroup_no_v1=all quiet panic=-1" \
    </dev/null >"$log" 2>&1
status=$?
set -e
secs=$(($(date +%s) - start))
# The console without carriage returns and SeaBIOS's terminal escapes.
tr -d '\r' <"$log" | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g'
echo "cgroup-v2.sh: the VM ran ${secs}s" >&2
if [[ $status -eq 124 || $status -eq 137 ]]; then
    die "the VM did not finish within ${timeout_s}s (log: $log)"
fi
[[ $status -eq 0 ]] || die "qemu exited with status $status (log: $log)"
grep -q '^VM-DONE' "$log" || die "the VM stopped before VM-DONE (log: $log)"
if grep -q '^FAIL' "$log"; then
    grep '^FAIL' "$log" | tr -d '\r' >&2
    die "checks failed in the VM (log: $log)"
fi
rm -f "$log"
echo "cgroup-v2.sh: all checks passed" >&2
