//! stepctr on a pure cgroup v2 machine: boots Debian's kernel under QEMU (software emulation,
//! no network, `cgroup_no_v1=all`) with tests/vm/cgroup-v2.sh and checks what the VM reports.
//!
//! The host may have any cgroup layout: the VM is the v2 machine. Needs qemu-system-x86, cpio,
//! xz-utils, kmod, busybox-static, strace and Debian's package registry (or a kernel already in
//! target/vm-cache); .ci/run installs them. Missing pieces fail the test, they never skip it.
//! Besides the layout (1-4), it proves the limits are enforced on v2 (5): an OOM kill past
//! memory.max, a fork bomb held at pids.max, a busy loop held near half a CPU by cpu.max.
//! And that on v2 PID 1 and an `exec`'d process are *born* in the
//! container's cgroup with clone3(CLONE_INTO_CGROUP), never forked and moved with a write to
//! cgroup.procs: the narration says so, /proc/PID/cgroup shows it, and (6) strace -f, run in
//! the VM, sees exactly the clone3 calls the narration shows. The same clone3 path also runs on
//! this machine's kernel, whatever its layout, in a mount namespace where /sys/fs/cgroup is a
//! cgroup2 mount (`clone3_into_cgroup_on_this_kernel`; no limits there on a v1/hybrid host).

mod common;

use common::{assert_no_leaks, unique, Env};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn main() {
    common::run_tests(
        vec![
            ("cgroup_v2_vm", cgroup_v2_vm),
            (
                "clone3_lines_are_matched_against_strace",
                clone3_lines_are_matched_against_strace,
            ),
            (
                "clone3_into_cgroup_on_this_kernel",
                clone3_into_cgroup_on_this_kernel,
            ),
        ],
        true,
    );
}

/// What the VM must report, as `CHECK name=value`.
const EXPECTED: &[(&str, &str, &str)] = &[
    // The machine really is pure v2.
    (
        "cgroup_fs_magic",
        "63677270",
        "/sys/fs/cgroup is cgroup2 (CGROUP2_SUPER_MAGIC)",
    ),
    ("v1_hierarchies", "0", "no cgroup v1 hierarchy is mounted"),
    ("overlay_loaded", "yes", "the overlay module loaded"),
    // `stepctr doctor` sees it too.
    ("doctor_exit", "0", "`stepctr doctor` exits 0 in the VM"),
    (
        "doctor_cgroup_mode",
        "ok pure v2",
        "`stepctr doctor` reports pure cgroup v2",
    ),
    (
        "doctor_controllers",
        "ok memory, cpu, pids",
        "`stepctr doctor` reports memory, cpu and pids usable",
    ),
    (
        "doctor_json",
        "13",
        "`stepctr doctor --json` lists 13 checks",
    ),
    // (1) `stepctr all --name v2 --memory 256M --pids-limit 64`, seen from inside...
    (
        "inner_pid",
        "1",
        "the command is PID 1 of its PID namespace",
    ),
    ("inner_hostname", "v2", "the container has its own hostname"),
    (
        "inner_cgroup",
        "0::/",
        "the cgroup namespace is rooted at the container's cgroup",
    ),
    // ...and from the VM's side while it runs.
    (
        "memory_max",
        "268435456",
        "--memory 256M is written to memory.max",
    ),
    ("pids_max", "64", "--pids-limit 64 is written to pids.max"),
    (
        "procs_has_pid1",
        "yes",
        "PID 1 is in the container's cgroup.procs",
    ),
    (
        "host_cgroup",
        "0::/stepctr/v2",
        "PID 1 sits in /stepctr/v2 as the host sees it",
    ),
    (
        "root_subtree_control",
        "memory pids",
        "the root enables memory and pids for its children",
    ),
    (
        "parent_subtree_control",
        "memory pids",
        "/stepctr enables them for the containers",
    ),
    (
        "all_exit",
        "0",
        "`stepctr all` exits with the command's code",
    ),
    (
        "all_narrated_memory_max",
        "yes",
        "the narration shows the write to memory.max",
    ),
    (
        "all_cgroup_dir_opened",
        "yes",
        "the cgroup's directory is opened (O_PATH) for clone3",
    ),
    (
        "all_ns_by_stepctr",
        "yes",
        "stepctr itself unshares the mount, UTS, IPC and network namespaces",
    ),
    (
        "all_clone3_pid1",
        "yes",
        "PID 1 is born in the cgroup: clone3 with CLONE_INTO_CGROUP",
    ),
    (
        "all_procs_writes",
        "0",
        "`all -v` narrates no write to cgroup.procs",
    ),
    // (2) the six stages one by one.
    ("stage_pull_exit", "0", "stepctr pull"),
    ("stage_load_exit", "0", "stepctr load v2s"),
    (
        "stage_cgroup_exit",
        "0",
        "stepctr cgroup v2s --memory 128M --pids-limit 32",
    ),
    (
        "stages_memory_max",
        "134217728",
        "the cgroup stage alone writes memory.max",
    ),
    (
        "stages_pids_max",
        "32",
        "the cgroup stage alone writes pids.max",
    ),
    ("stage_ns_exit", "0", "stepctr ns v2s"),
    (
        "stages_procs_after_ns",
        "0",
        "nothing is in the cgroup after ns (stepctr never enters it)",
    ),
    ("stage_fs_exit", "0", "stepctr fs v2s"),
    (
        "start_exit",
        "7",
        "`stepctr start v2s -- sh -c 'exit 7'` exits 7",
    ),
    (
        "stages_inner_cgroup",
        "0::/",
        "PID 1 of the staged container is in its own cgroup",
    ),
    // (3) rm of both.
    ("rm_exit", "0", "stepctr rm v2 v2s"),
    (
        "rm_v2_cgroup_gone",
        "yes",
        "rm removes /sys/fs/cgroup/stepctr/v2",
    ),
    (
        "rm_v2s_cgroup_gone",
        "yes",
        "rm removes /sys/fs/cgroup/stepctr/v2s",
    ),
    (
        "rm_parent_gone",
        "yes",
        "rm of the last container removes /sys/fs/cgroup/stepctr",
    ),
    (
        "rm_run_mounts",
        "0",
        "no mount under the run directory is left",
    ),
    ("rm_state_left", "0", "no container directory is left"),
    // (4) rm while the container runs `sleep 100` (and a second sleep in the background).
    (
        "exec_inner_cgroup",
        "0::/",
        "an exec'd process is at the root of the container's cgroup namespace",
    ),
    (
        "exec_host_cgroup",
        "0::/stepctr/v2k",
        "an exec'd process is in the container's cgroup, as the VM sees it",
    ),
    (
        "exec_clone3",
        "yes",
        "the exec'd process is born in the cgroup: clone3 with CLONE_INTO_CGROUP",
    ),
    (
        "exec_procs_writes",
        "0",
        "`exec -v` narrates no write to cgroup.procs",
    ),
    ("kill_rm_exit", "0", "stepctr rm of a running container"),
    (
        "kill_used_cgroup_kill",
        "yes",
        "rm kills the whole cgroup with cgroup.kill",
    ),
    ("kill_pid1_gone", "yes", "PID 1 is gone after rm"),
    (
        "kill_sleeps_left",
        "0",
        "no process of the container is left",
    ),
    ("kill_cgroup_gone", "yes", "its cgroup is gone"),
    ("kill_parent_gone", "yes", "and the parent cgroup too"),
    (
        "kill_run_mounts",
        "0",
        "no mount under the run directory is left",
    ),
    // (5) limits enforced. Memory: PID 1 grows past --memory 64M...
    (
        "oom_exit",
        "137",
        "the OOM-killed PID 1 makes `all` exit 137",
    ),
    (
        "oom_kill_counted",
        "yes",
        "memory.events counts the oom_kill",
    ),
    ("oom_state", "yes", "state.json says oom_killed"),
    ("oom_stats", "yes", "`stepctr stats --json` says oom_killed"),
    ("oom_narrated", "yes", "the narration names the OOM killer"),
    // ...pids: a fork bomb under --pids-limit 32...
    (
        "bomb_within_limit",
        "yes",
        "pids.current never went above 32",
    ),
    (
        "bomb_hit_limit",
        "yes",
        "pids.events counts forks refused at the limit",
    ),
    (
        "bomb_vm_usable",
        "yes",
        "the VM still starts processes quickly",
    ),
    ("bomb_rm_exit", "0", "rm ends the fork bomb"),
    ("bomb_all_exit", "137", "`all` returns when rm kills PID 1"),
    ("bomb_cgroup_gone", "yes", "the bomb's cgroup is gone"),
    // ...cpu: --cpus 0.5 on a busy loop.
    (
        "cpu_max",
        "50000 100000",
        "--cpus 0.5 is written to cpu.max as quota and period",
    ),
    (
        "cpu_subtree_control",
        "yes",
        "/stepctr enables the cpu controller",
    ),
    (
        "cpu_capped",
        "yes",
        "a busy loop gets 35-65% of a CPU (cpu.stat usage_usec over 2 s)",
    ),
    ("cpu_cgroup_gone", "yes", "its cgroup is gone"),
    // (6) `all` under strace -f in the VM.
    (
        "strace_all_exit",
        "0",
        "`stepctr all` under strace -f exits 0",
    ),
    (
        "strace_into_cgroup",
        "yes",
        "strace sees clone3 with CLONE_INTO_CGROUP (PID 1)",
    ),
    (
        "strace_procs_writes",
        "0",
        "strace sees no process open cgroup.procs for writing",
    ),
    (
        "limits_parent_gone",
        "yes",
        "no stepctr cgroup is left at the end",
    ),
    // (7) Rootless (uid 1000) with a cgroup delegated to it.
    (
        "rootless_state_cgroup",
        "yes",
        "rootless: the container's cgroup is made below the delegated one (rl/stepctr/NAME)",
    ),
    (
        "rootless_memory_max",
        "67108864",
        "rootless: memory.max is --memory 64M",
    ),
    (
        "rootless_pids_max",
        "16",
        "rootless: pids.max is --pids-limit 16",
    ),
    (
        "rootless_pid1_in_cgroup",
        "yes",
        "rootless: PID 1 is in the container's cgroup",
    ),
    (
        "rootless_pid1_uid",
        "1000",
        "rootless: PID 1, root inside, is uid 1000 outside",
    ),
    (
        "rootless_oom_exit",
        "137",
        "rootless: the memory limit OOM-kills an allocation loop",
    ),
    (
        "rootless_found_delegation",
        "yes",
        "rootless: `all` says which cgroup was delegated",
    ),
    (
        "rootless_cgroups_gone",
        "yes",
        "rootless: rm removes the cgroups",
    ),
];

fn cgroup_v2_vm() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/cgroup-v2.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(common::stepctr_bin())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    let stdout = common::stdout(&out);
    let stderr = common::stderr(&out);
    let tail = |s: &str| -> String {
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(80)..].join("\n")
    };
    if !stdout.lines().any(|l| l.starts_with("VM-DONE")) {
        panic!(
            "the cgroup v2 VM did not finish ({}):\n{}\n--- serial console (end) ---\n{}",
            out.status,
            stderr.trim_end(),
            tail(&stdout)
        );
    }

    let mut checks: BTreeMap<&str, &str> = BTreeMap::new();
    for line in stdout.lines() {
        if let Some((name, value)) = line.strip_prefix("CHECK ").and_then(|c| c.split_once('=')) {
            checks.entry(name).or_insert(value.trim_end());
        }
    }
    let mut wrong = Vec::new();
    for (name, want, what) in EXPECTED {
        match checks.get(name) {
            Some(got) if got == want => {}
            Some(got) => wrong.push(format!("{what}: {name} is {got:?}, expected {want:?}")),
            None => wrong.push(format!("{what}: the VM reported no {name}")),
        }
    }
    // PID 1's host pid (from state.json) is among the pids in the cgroup.
    match (checks.get("pid1_host"), checks.get("cgroup_procs")) {
        (Some(pid), Some(procs)) if procs.split_whitespace().any(|p| p == *pid) => {}
        (pid, procs) => wrong.push(format!(
            "PID 1 (host pid {pid:?}) is not in cgroup.procs {procs:?}"
        )),
    }
    match clone3_matches_strace(&stdout, checks.get("strace_main_pid").copied()) {
        Ok(n) if n >= 1 => {}
        Ok(n) => wrong.push(format!(
            "the traced `all` narrates {n} clone3 call(s): expected PID 1's"
        )),
        Err(e) => wrong.push(e),
    }
    assert!(
        wrong.is_empty(),
        "stepctr on cgroup v2 (in the VM):\n  {}\n--- what the VM printed ---\n{}\n{}",
        wrong.join("\n  "),
        stdout.trim_end(),
        stderr.trim_end()
    );
    assert!(
        out.status.success(),
        "tests/vm/cgroup-v2.sh failed ({}):\n{}\n{}",
        out.status,
        stderr.trim_end(),
        tail(&stdout)
    );
}

/// One clone3 call: (pid, arguments, result).
type Clone3 = (String, String, String);

/// `ARGS) = RET`, with any padding strace puts before the `=`: (ARGS, RET...).
fn split_result(s: &str) -> Option<(&str, &str)> {
    let (call, ret) = s.rsplit_once(" = ")?;
    Some((call.trim_end().strip_suffix(')')?, ret))
}

/// The `TRACE` lines (strace -f -o: `PID  clone3({...}, 88) = CHILD`, or split in
/// `<unfinished ...>` and `<... clone3 resumed>` when another process's call came between).
fn strace_clone3(stdout: &str) -> Vec<Clone3> {
    let mut calls = Vec::new();
    let mut pending: BTreeMap<String, String> = BTreeMap::new();
    for line in stdout.lines().filter_map(|l| l.strip_prefix("TRACE ")) {
        let Some((pid, rest)) = line.trim_end().split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        let (args, tail) = if let Some(args) = rest.strip_prefix("clone3(") {
            match args.strip_suffix(" <unfinished ...>") {
                Some(entry) => {
                    pending.insert(pid.to_string(), entry.to_string());
                    continue;
                }
                None => match split_result(args) {
                    Some((a, t)) => (a.to_string(), t),
                    None => continue,
                },
            }
        } else if let Some(resumed) = rest.strip_prefix("<... clone3 resumed>") {
            let Some((more, t)) = split_result(resumed) else {
                continue;
            };
            let entry = pending.remove(pid).unwrap_or_default();
            (format!("{entry}{more}"), t)
        } else {
            continue;
        };
        let ret = tail.split_whitespace().next().unwrap_or("").to_string();
        calls.push((pid.to_string(), args, ret));
    }
    calls
}

/// The `NARR` lines: `[pid  P] clone3({...}, 88) = CHILD <0.001>  # why`, without a prefix
/// when stepctr's own process (the first pid of the trace) made the call.
fn narrated_clone3(stdout: &str, main_pid: &str) -> Vec<Clone3> {
    let mut calls = Vec::new();
    for line in stdout.lines().filter_map(|l| l.strip_prefix("NARR ")) {
        let (pid, call) = match line.strip_prefix("[pid") {
            Some(rest) => match rest.split_once(']') {
                Some((p, c)) => (
                    p.split(',').next().unwrap_or("").trim().to_string(),
                    c.trim_start(),
                ),
                None => continue,
            },
            None => (main_pid.to_string(), line),
        };
        let Some((args, tail)) = call
            .strip_prefix("clone3(")
            .and_then(|a| a.split_once(") = "))
        else {
            continue;
        };
        let ret = tail.split_whitespace().next().unwrap_or("").to_string();
        calls.push((pid, args.to_string(), ret));
    }
    calls
}

/// Every clone3 the VM's traced `all` narrated is in strace's trace of it: the same process,
/// the same arguments (strace's own syntax) and the same child. Returns how many there were.
fn clone3_matches_strace(stdout: &str, main_pid: Option<&str>) -> Result<usize, String> {
    let main_pid = main_pid.ok_or("the VM reported no strace_main_pid")?;
    let traced = strace_clone3(stdout);
    let narrated = narrated_clone3(stdout, main_pid);
    let missing: Vec<String> = narrated
        .iter()
        .filter(|n| !traced.contains(n))
        .map(|(p, a, r)| format!("[pid {p}] clone3({a}) = {r}"))
        .collect();
    if missing.is_empty() {
        Ok(narrated.len())
    } else {
        Err(format!(
            "narrated clone3 calls strace -f did not see: {missing:?}; strace saw {traced:?}"
        ))
    }
}

/// The matcher itself, on made-up lines (no VM needed).
fn clone3_lines_are_matched_against_strace() {
    let main = "100";
    let out = "\
NARR clone3({flags=CLONE_INTO_CGROUP, exit_signal=SIGCHLD, stack=NULL, stack_size=0, cgroup=5}, 88) = 101 <0.000938>  # a helper
NARR [pid   102] clone3({flags=CLONE_INTO_CGROUP, exit_signal=SIGCHLD, stack=NULL, stack_size=0, cgroup=11}, 88) = 103 <0.003>  # PID 1
TRACE 100  clone3({flags=CLONE_INTO_CGROUP, exit_signal=SIGCHLD, stack=NULL, stack_size=0, cgroup=5}, 88) = 101
TRACE 102  clone3({flags=CLONE_INTO_CGROUP, exit_signal=SIGCHLD, stack=NULL, stack_size=0, cgroup=11}, 88 <unfinished ...>
TRACE 102  <... clone3 resumed>)             = 103
";
    assert_eq!(clone3_matches_strace(out, Some(main)), Ok(2));
    // Another child, another fd, another process, another call: not found.
    let narr_pid1 = "NARR [pid   102] clone3({flags=CLONE_INTO_CGROUP, exit_signal=SIGCHLD, stack=NULL, stack_size=0, cgroup=11}, 88) = 103";
    for bad_line in [
        narr_pid1.replace("= 103", "= 104"),
        narr_pid1.replace("cgroup=11", "cgroup=12"),
        narr_pid1.replace("[pid   102]", "[pid   99]"),
        narr_pid1.replace("[pid   102] ", ""),
        narr_pid1.replace("CLONE_INTO_CGROUP", "0"),
    ] {
        let bad = out.replace(narr_pid1, &bad_line);
        assert_ne!(bad, out);
        assert!(clone3_matches_strace(&bad, Some(main)).is_err(), "{bad}");
    }
}

/// The clone3 path on this machine's own kernel, whatever its cgroup layout: `all` runs in a
/// mount namespace of its own where /sys/fs/cgroup is a cgroup2 mount, so stepctr sees pure
/// v2. (On a v1 or hybrid host that hierarchy has no controllers, so no limits here: the VM
/// covers those.) Under strace -f, PID 1 is born in the cgroup, exactly as
/// narrated, nobody writes to cgroup.procs, PID 1 sees itself at its cgroup namespace's root,
/// and nothing is left.
fn clone3_into_cgroup_on_this_kernel() {
    let env = Env::new();
    let name = unique("c3");
    let tmp = tempfile::tempdir().expect("temp dir");
    let (trace, narr) = (tmp.path().join("trace"), tmp.path().join("narr"));
    let inner =
        r#"mount --make-rprivate / && mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$@""#;
    let out = Command::new("unshare")
        .args(["--mount", "--", "sh", "-c", inner, "sh"])
        .args(["strace", "-f", "-qq", "-v", "-y", "-s", "256", "-o"])
        .arg(&trace)
        .arg(common::stepctr_bin())
        .arg("--trace-file")
        .arg(&narr)
        .args([
            "all",
            "--name",
            &name,
            "--rm",
            "--",
            "cat",
            "/proc/self/cgroup",
        ])
        .env("STEPCTR_ROOT", &env.root)
        .env("STEPCTR_RUN", &env.run)
        .env("NO_COLOR", "1")
        .output()
        .expect("run unshare (util-linux) and strace");
    let narration = std::fs::read_to_string(&narr).unwrap_or_default();
    let traced = std::fs::read_to_string(&trace).unwrap_or_default();
    assert!(
        out.status.success(),
        "stepctr all under strace, on cgroup2 ({}):\n{}\n{narration}",
        out.status,
        common::stderr(&out)
    );
    let stdout = common::stdout(&out);
    assert!(
        stdout.lines().any(|l| l == "0::/"),
        "PID 1 is not at the root of its cgroup namespace:\n{stdout}"
    );
    let main_pid = traced.split_whitespace().next().unwrap_or("");
    let lines: String = narration
        .lines()
        .filter(|l| l.contains("clone3("))
        .map(|l| format!("NARR {l}\n"))
        .chain(
            traced
                .lines()
                .filter(|l| l.contains("clone3"))
                .map(|l| format!("TRACE {l}\n")),
        )
        .collect();
    match clone3_matches_strace(&lines, Some(main_pid)) {
        Ok(n) => assert!(n >= 1, "PID 1 is born in the cgroup:\n{narration}"),
        Err(e) => panic!("{e}\n{narration}"),
    }
    assert!(
        narration
            .lines()
            .any(|l| l.contains("clone3({flags=CLONE_INTO_CGROUP")
                && l.contains("# the future PID 1, born inside")),
        "no clone3 for PID 1:\n{narration}"
    );

    assert!(
        !narration.contains("cgroup.procs"),
        "a write to cgroup.procs on v2:\n{narration}"
    );
    assert!(
        !traced.contains("cgroup.procs\", O_WRONLY"),
        "strace saw cgroup.procs opened for writing"
    );
    assert_no_leaks(&env, &name);
}
