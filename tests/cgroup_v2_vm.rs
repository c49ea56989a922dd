//! stepctr on a pure cgroup v2 machine: boots Debian's kernel under QEMU (software emulation,
//! no network, `cgroup_no_v1=all`) with tests/vm/cgroup-v2.sh and checks what the VM reports.
//!
//! The host may have any cgroup layout: the VM is the v2 machine. Needs qemu-system-x86, cpio,
//! xz-utils, kmod, busybox-static and Debian's package registry (or a kernel already in
//! target/vm-cache); .ci/run installs them. Missing pieces fail the test, they never skip it.
//! Besides the layout (1-4), it proves the limits are enforced on v2 (5): an OOM kill past
//! memory.max, a fork bomb held at pids.max, a busy loop held near half a CPU by cpu.max.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn main() {
    common::run_tests(vec![("cgroup_v2_vm", cgroup_v2_vm)], true);
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
        "the ns helper has left the cgroup (it is gone)",
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
    (
        "limits_parent_gone",
        "yes",
        "no stepctr cgroup is left at the end",
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
