#!/bin/bash
# An OCI runtime that only records how it is called, then runs the real one: give it to
# `podman --runtime` to see what podman and conmon ask of a runtime (docs/podman-runtime-calls.md
# was written from its records). Copy it into a directory of its own: it writes there (podman
# and conmon pass the runtime almost no environment, so nothing is read from it):
#   record/NNN-<command>.txt   argv, cwd, selected environment, what fds 0-2 and the others are,
#                              the exit status, and for `state`/`features`/`--version` the output
#   record/NNN-config.json     a copy of the bundle's config.json, for `create` and `run`
# The real runtime is the path in ./real-runtime next to this script, runc if there is none.
here=$(cd "$(dirname "$0")" && pwd)
dir=$here/record
mkdir -p "$dir"
# What fds 0, 1, 2 and any others are, as this script got them (find reads our fd table from
# outside, so it sees no fd of its own; [[ -t ]] is a builtin).
fds=$dir/.fds.$$
find /proc/$$/fd -mindepth 1 -maxdepth 1 -printf '  %f -> %l\n' | sort -n -k1 >"$fds"
for n_ in $(seq 0 2); do [[ -t $n_ ]] && echo "  ($n_ is a terminal)" >>"$fds"; done
real=runc
[[ -s $here/real-runtime ]] && real=$(cat "$here/real-runtime")

# The call number: one more than the records so far (calls may overlap: take a lock).
exec 9>>"$dir/.lock"
flock 9
n=$(printf '%03d' $(( $(find "$dir" -name '*.txt' | wc -l) + 1 )))
# The command: the first argument that is not a global flag (or a global flag's value).
cmd=none
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    a=${args[i]}
    case $a in
        --root|--log|--log-format|--criu|--rootless) ((i++)) ;;
        --*=*|--debug|--systemd-cgroup) ;;
        --version|-v|--help|-h) cmd=$a; break ;;
        -*) ;;
        *) cmd=$a; break ;;
    esac
done
rec=$dir/$n-${cmd#--}.txt
: >"$rec"
flock -u 9
exec 9>&-

{
    echo "argv:"
    printf '  %q\n' "$0" "$@"
    echo "cwd: $(pwd)"
    echo "uid: $(id -u) euid: $(id -u)"
    echo "ppid: $PPID ($(tr '\0' ' ' </proc/$PPID/cmdline | cut -c1-2000))"
    echo "env:"
    env | grep -E '^(PATH|HOME|XDG_RUNTIME_DIR|NOTIFY_SOCKET|LISTEN_FDS|LISTEN_PID|_CONTAINERS_|CONTAINERS_|_OCI_|TERM|LANG|TMPDIR|RUNC_|_LIBCONTAINER)' | sort | sed 's/^/  /'
    echo "  ($(env | wc -l) variables in all: $(env | cut -d= -f1 | sort | tr '\n' ' '))"
    echo "fds:"
    cat "$fds"; rm -f "$fds"
    echo "umask: $(umask)"
} >>"$rec" 2>&1

bundle=""
for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
        --bundle|-b) bundle=${args[i+1]} ;;
        --bundle=*) bundle=${args[i]#--bundle=} ;;
    esac
done
if [[ $cmd == create || $cmd == run ]]; then
    [[ -n $bundle ]] || bundle=$(pwd)
    cp "$bundle/config.json" "$dir/$n-config.json" 2>>"$rec"
    echo "bundle: $bundle ($(ls "$bundle" | tr '\n' ' '))" >>"$rec"
fi

case $cmd in
    state|features|--version|-v)
        out=$("$real" "$@")
        rc=$?
        printf '%s\n' "$out"
        printf 'stdout:\n%s\n' "$out" >>"$rec"
        ;;
    *)
        "$real" "$@"
        rc=$?
        ;;
esac
echo "exit: $rc" >>"$rec"
# The pid file podman asked for, as the runtime left it.
for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
        --pid-file) p=${args[i+1]} ;;
        --pid-file=*) p=${args[i]#--pid-file=} ;;
        *) continue ;;
    esac
    if [[ -f $p ]]; then
        echo "pid file $p: $(od -c "$p" | head -3 | tr -s ' ' | tr '\n' '|')" >>"$rec"
    else
        echo "pid file $p: absent" >>"$rec"
    fi
done
# A --log file podman or conmon asked for: its content after the call.
for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
        --log) l=${args[i+1]} ;;
        --log=*) l=${args[i]#--log=} ;;
        *) continue ;;
    esac
    if [[ -f $l ]]; then
        echo "log file $l (after the call): $(wc -c <"$l") bytes" >>"$rec"
        tail -c 600 "$l" | sed 's/^/  /' >>"$rec"
    else
        echo "log file $l (after the call): absent" >>"$rec"
    fi
done
exit "$rc"
