//! `stepctr demo startup [-n N] [--json] [--vm]`: N real container starts, measured per stage
//! (median, min, max), nothing of them left; and with --vm, a real VM boot under qemu (software
//! emulation) beside them, its temp dir removed and qemu gone afterwards.
//!
//! The VM test needs qemu-system-x86, busybox-static and a kernel image: tests/vm/kernel.sh
//! prints one (fetching Debian's package into target/vm-cache when missing). Missing pieces fail
//! the test, they never skip it.

mod common;

use common::{assert_no_leaks, processes_mentioning, stderr, stdout, Env};
use serde_json::Value;
use std::process::{Command, Stdio};

const STAGES: [&str; 10] = [
    "stepctr", "pull", "load", "cgroup", "ns", "fs", "start", "run", "rm", "total",
];

fn main() {
    common::run_tests(
        tests![
            three_runs_as_json_leave_nothing,
            the_table_has_every_stage,
            a_bad_run_count_is_one_error_line,
            a_vm_boot_is_measured_beside_a_container,
        ],
        true,
    );
}

/// Run `stepctr ARGS` in `env`; (output, the demo's pid: its containers are demo-startup-PID-I).
fn demo(env: &Env, args: &[&str]) -> (std::process::Output, u32) {
    let child = env
        .cmd(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run stepctr demo startup");
    let pid = child.id();
    (child.wait_with_output().expect("wait"), pid)
}

fn parse(out: &std::process::Output) -> Value {
    let text = stdout(out);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{text}\n{}", stderr(out)))
}

/// Every stage has min <= median <= max, and the total is positive; the stages come in their
/// order in `text` (serde_json's map sorts its keys, so that is checked on the text).
fn check_stages(v: &Value, text: &str) -> f64 {
    let stages = v["stages"].as_object().expect("stages is an object");
    let mut names: Vec<&str> = stages.keys().map(String::as_str).collect();
    let at = |n: &str| text.find(&format!("\"{n}\":{{")).unwrap_or(usize::MAX);
    names.sort_by_key(|n| at(n));
    assert_eq!(names, STAGES, "the stages, in order: {text}");
    for (name, s) in stages {
        let f = |k: &str| {
            s[k].as_f64()
                .unwrap_or_else(|| panic!("{name}.{k} is not a number: {v}"))
        };
        let (median, min, max) = (f("median_ms"), f("min_ms"), f("max_ms"));
        assert!(
            0.0 <= min && min <= median && median <= max,
            "{name}: min {min} median {median} max {max}"
        );
    }
    let total = v["stages"]["total"]["median_ms"].as_f64().unwrap_or(0.0);
    assert!(total > 0.0, "{v}");
    total
}

fn three_runs_as_json_leave_nothing() {
    let env = Env::new();
    let (out, pid) = demo(&env, &["demo", "startup", "-n", "3", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = parse(&out);
    assert_eq!(v["runs"], 3, "{v}");
    assert!(v["vm"].is_null(), "{v}");
    check_stages(&v, &stdout(&out));
    // The phases are announced on stderr; the containers themselves print nothing.
    let err = stderr(&out);
    assert!(err.contains("# demo startup: 3 container(s)"), "{err}");
    assert!(!err.contains("==> ["), "the containers' narration: {err}");
    for i in 1..=4 {
        assert_no_leaks(&env, &format!("demo-startup-{pid}-{i}"));
    }
    let left: Vec<_> = std::fs::read_dir(env.container_dir("x").parent().unwrap())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in the run directory: {left:?}");
}

fn the_table_has_every_stage() {
    let env = Env::new();
    let (out, pid) = demo(&env, &["demo", "startup", "-n", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("  stage       median       min       max\n"),
        "{text}"
    );
    for s in STAGES {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(s))
            .unwrap_or_else(|| panic!("no row {s}:\n{text}"));
        let nums: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap_or_else(|_| panic!("{line}")))
            .collect();
        assert_eq!(nums.len(), 3, "{line}");
        // One run: median, min and max are that run.
        assert!(nums[0] == nums[1] && nums[1] == nums[2], "{line}");
    }
    assert!(!text.contains("VM"), "no VM without --vm:\n{text}");
    assert_no_leaks(&env, &format!("demo-startup-{pid}-1"));
}

fn a_bad_run_count_is_one_error_line() {
    let env = Env::new();
    for n in ["0", "1001"] {
        let out = env.run(&["demo", "startup", "-n", n]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!("-n must be from 1 to 1000 (got {n})")),
            "{err}"
        );
        assert_eq!(stdout(&out), "");
    }
}

/// tests/vm/kernel.sh: the path of a kernel image (fetched into target/vm-cache when missing).
fn vm_kernel() -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vm/kernel.sh");
    let out = Command::new(script)
        .output()
        .expect("run tests/vm/kernel.sh");
    assert!(
        out.status.success(),
        "tests/vm/kernel.sh found no kernel: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn a_vm_boot_is_measured_beside_a_container() {
    let env = Env::new();
    let kernel = vm_kernel();
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut c = env.cmd(&["demo", "startup", "-n", "1", "--vm", "--json"]);
    c.env("STEPCTR_VM_KERNEL", &kernel)
        .env("TMPDIR", tmp.path());
    let child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run stepctr demo startup --vm");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", stderr(&out));
    let v = parse(&out);
    let total = check_stages(&v, &stdout(&out));
    let vm = &v["vm"];
    assert_eq!(vm["accel"], "tcg", "{v}");
    assert_eq!(vm["emulation"], "software emulation", "{v}");
    assert_eq!(vm["kernel"], kernel.as_str(), "{v}");
    let boot = vm["boot_ms"].as_f64().expect("boot_ms");
    let exit = vm["exit_ms"].as_f64().expect("exit_ms");
    assert!(
        boot > total,
        "a VM boot ({boot} ms) beats a container ({total} ms)?"
    );
    assert!(exit >= boot, "{v}");
    assert!(vm["boot_over_total"].as_f64().unwrap_or(0.0) > 1.0, "{v}");
    assert!(
        stderr(&out).contains("software emulation"),
        "{}",
        stderr(&out)
    );
    // The initramfs's temp dir is gone, and so is qemu.
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("read the temp dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    let qemu = processes_mentioning(&format!("stepctr-vmboot-{pid}-"));
    assert!(qemu.is_empty(), "qemu still runs: {qemu:?}");
    assert_no_leaks(&env, &format!("demo-startup-{pid}-1"));
}
