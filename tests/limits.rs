//! Acceptance 1 of issue 4, on this machine's cgroups (v1 or v2, whichever it has): limits are
//! enforced by the kernel, and `stats`, `ps` and the state report them.
//! - memory: PID 1 allocating past `--memory 64M` is OOM-killed: exit 137, OOMKilled;
//! - pids: a fork bomb under `--pids-limit 32` stays at 32 processes, the host stays usable,
//!   and `rm` ends it;
//! - cpu: `--cpus 0.5` holds a busy loop near half a CPU, measured from the cgroup's CPU time.

mod common;

use common::{assert_no_leaks, assert_no_leaks_with, cgroup_dirs_named, stderr, stdout, Env};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

fn main() {
    common::run_tests(
        tests![
            memory_limit_oom_kills_pid1,
            fork_bomb_is_contained,
            cpus_cap_a_busy_loop
        ],
        true,
    );
}

/// The tests of this binary run one at a time: a fork bomb next to the CPU measurement would
/// take the CPU the busy loop is measured on.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `stats NAME --json`, parsed.
fn stats(env: &Env, name: &str) -> serde_json::Value {
    let out = env.ok(&["stats", name, "--json"]);
    serde_json::from_slice(&out.stdout).expect("stats --json is JSON")
}

/// Start `all` in the background; return once PID 1 runs (the state records its pid). The
/// caller waits for the child ([`wait_exit`]).
#[allow(clippy::zombie_processes)]
fn start_background(env: &Env, name: &str, args: &[&str]) -> (Child, i32) {
    let mut full = vec!["-q", "all", "--name", name];
    full.extend_from_slice(args);
    let mut child = env
        .cmd(&full)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn stepctr all");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = env.container_dir(name).join("state.json");
        if let Some(pid) = std::fs::read(&state)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["pid"].as_i64())
        {
            return (child, pid as i32);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("container {name} did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(mut child: Child, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("stepctr all did not end within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn memory_limit_oom_kills_pid1() {
    let _one_at_a_time = serial();
    let env = Env::new();
    let name = common::unique("oom");
    // The shell itself (PID 1) doubles a string until it needs more than 64 MiB.
    let out = env.run(&[
        "all",
        "--name",
        &name,
        "--memory",
        "64M",
        "--",
        "sh",
        "-c",
        "a=aaaaaaaaaaaaaaaa; while :; do a=$a$a; done",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("OOM killer"),
        "the narration says why PID 1 died:\n{}",
        stderr(&out)
    );
    let state = env.state(&name);
    assert_eq!(state["exit_code"], 137);
    assert_eq!(state["oom_killed"], true, "state: {state}");
    let ps = stdout(&env.ok(&["ps"]));
    let line = ps
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_else(|| panic!("{name} not in ps:\n{ps}"));
    assert!(line.contains("OOMKilled"), "ps: {line}");
    let s = stats(&env, &name);
    assert_eq!(s["memory_limit"], 64u64 << 20, "stats: {s}");
    assert!(s["oom_kills"].as_u64().unwrap_or(0) >= 1, "stats: {s}");
    assert_eq!(s["oom_killed"], true);
    env.rm_and_check(&name);

    // Below the limit nothing is killed.
    let name = common::unique("nooom");
    let out = env.run(&[
        "-q",
        "all",
        "--rm",
        "--name",
        &name,
        "--memory",
        "64M",
        "--",
        "sh",
        "-c",
        "a=aaaaaaaaaaaaaaaa; i=0; while [ $i -lt 16 ]; do a=$a$a; i=$((i+1)); done; echo ${#a}",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), (16u64 << 16).to_string());
    assert_no_leaks(&env, &name);
}

/// Milliseconds to run `true` on the host.
fn host_spawn_ms() -> f64 {
    let t = Instant::now();
    let ok = Command::new("true").status().map(|s| s.success());
    assert!(matches!(ok, Ok(true)), "the host cannot start processes");
    t.elapsed().as_secs_f64() * 1000.0
}

/// Every process forks copies of itself forever. A busybox shell exits when a fork fails, so
/// the bomb may burn itself out at the limit; the kernel's count of refused forks shows it got
/// there. PID 1 only waits.
pub const BOMB: &str = "bomb() { while :; do bomb & done; }; bomb & while :; do wait; done";

fn fork_bomb_is_contained() {
    let _one_at_a_time = serial();
    let env = Env::new();
    let name = common::unique("bomb");
    let (child, pid1) =
        start_background(&env, &name, &["--pids-limit", "32", "--", "sh", "-c", BOMB]);
    let mut max = 0;
    let mut worst_spawn = 0.0f64;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        let s = stats(&env, &name);
        let pids = s["pids"].as_u64().expect("pids.current");
        assert_eq!(s["pids_limit"], 32, "stats: {s}");
        max = max.max(pids);
        worst_spawn = worst_spawn.max(host_spawn_ms());
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("fork bomb: at most {max} processes, host spawn at worst {worst_spawn:.1} ms");
    assert!(max <= 32, "the container had {max} processes");
    assert!(
        worst_spawn < 1000.0,
        "the host was slow to start a process: {worst_spawn:.0} ms"
    );
    // The bomb hit the limit: pids.events (`max N`, v1 and v2) counts the forks refused
    // because of it.
    let refused: u64 = cgroup_dirs_named(&name)
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("pids.events")).ok())
        .filter_map(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
        })
        .sum();
    eprintln!("fork bomb: {refused} forks refused");
    assert!(refused > 0, "no fork was refused");
    // rm ends it all while it runs; then `all` returns (PID 1 was killed).
    env.ok(&["-q", "rm", "-f", &name]);
    let code = wait_exit(child, Duration::from_secs(20));
    assert_eq!(code, Some(137));
    assert_no_leaks_with(&env, &name, &[pid1]);
}

fn cpus_cap_a_busy_loop() {
    let _one_at_a_time = serial();
    let env = Env::new();
    let name = common::unique("cpu");
    let (child, pid1) = start_background(
        &env,
        &name,
        &["--cpus", "0.5", "--", "sh", "-c", "while :; do :; done"],
    );
    let s = stats(&env, &name);
    assert_eq!(s["cpu_quota_usec"], 50_000, "stats: {s}");
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let u0 = stats(&env, &name)["cpu_usec"].as_u64().expect("cpu_usec");
    std::thread::sleep(Duration::from_secs(2));
    let u1 = stats(&env, &name)["cpu_usec"].as_u64().expect("cpu_usec");
    let wall = t0.elapsed().as_secs_f64();
    let share = (u1 - u0) as f64 / 1e6 / wall;
    eprintln!(
        "--cpus 0.5: {:.1}% of a CPU over {wall:.2} s",
        share * 100.0
    );
    env.ok(&["-q", "rm", "-f", &name]);
    let _ = wait_exit(child, Duration::from_secs(20));
    assert_no_leaks_with(&env, &name, &[pid1]);
    assert!(
        (0.35..=0.65).contains(&share),
        "--cpus 0.5: the busy loop used {:.0}% of a CPU",
        share * 100.0
    );
}
