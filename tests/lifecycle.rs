//! The shim, PID 1 life and death, and the lifecycle commands: `run`, `-d`, `ps`, `logs`,
//! `kill`, `stop`, `rm [-f]`. Every process is looked at in /proc, and nothing may leak.

mod common;

use common::{alive, assert_no_leaks_with, stderr, stdout, unique, Env};
use std::time::{Duration, Instant};

const IMAGE: &str = "localhost/stepctr-busybox:latest";

fn main() {
    common::run_tests(
        tests![
            shim_parents_pid1_detached_and_attached,
            detached_run_ps_logs_kill_records_the_exit,
            stop_escalates_when_pid1_ignores_term,
            stop_lets_a_term_handler_choose_the_exit_code,
            rm_refuses_a_running_container_unless_forced,
            zombies_are_reaped_and_the_shim_goes,
            run_relays_stdout_and_stderr_byte_for_byte,
            run_exit_codes_and_pid1,
            run_rm_detached_removes_itself,
        ],
        true,
    )
}

/// Field `n` (1-based, as in proc(5)) of /proc/PID/stat.
fn stat_field(pid: i32, n: usize) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    rest.split_whitespace().nth(n - 3).map(str::to_string)
}

fn ppid(pid: i32) -> Option<i32> {
    stat_field(pid, 4)?.parse().ok()
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn nspid(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|v| {
            v.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// (shim pid, PID 1's host pid) from state.json.
fn pids(env: &Env, name: &str) -> (i32, i32) {
    let st = env.state(name);
    let shim = st["shim"][0].as_i64().expect("state names the shim") as i32;
    let pid1 = st["pid"].as_i64().expect("state names PID 1") as i32;
    (shim, pid1)
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn exit_code(env: &Env, name: &str) -> Option<i64> {
    std::fs::read(env.container_dir(name).join("state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["exit_code"].as_i64())
}

fn shim_parents_pid1_detached_and_attached() {
    let env = Env::new();
    // Detached: stepctr has returned; the shim was adopted by init.
    let name = unique("shimd");
    let out = env.ok(&["run", "-d", "--name", &name, IMAGE, "sleep", "100"]);
    assert_eq!(stdout(&out).trim(), name);
    let (shim, pid1) = pids(&env, &name);
    assert_eq!(comm(shim), "stepctr-shim");
    assert_eq!(ppid(shim), Some(1), "a detached shim belongs to init");
    assert_eq!(ppid(pid1), Some(shim), "the shim is PID 1's parent");
    assert_eq!(comm(pid1), "sleep");
    assert_eq!(nspid(pid1).last(), Some(&1), "the command is PID 1 inside");
    // The shim has a session of its own, not stepctr's.
    assert_eq!(stat_field(shim, 6).as_deref(), Some(&*shim.to_string()));
    env.ok(&["-q", "rm", "-f", &name]);
    assert_no_leaks_with(&env, &name, &[shim, pid1]);

    // Attached: stepctr → shim → PID 1; killing stepctr takes the container with it.
    let name = unique("shima");
    let mut child = env
        .cmd(&["run", "--name", &name, IMAGE, "sleep", "100"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn stepctr run");
    wait_until("PID 1 to run", Duration::from_secs(20), || {
        env.container_dir(&name).join("state.json").exists()
            && env.state(&name)["pid"].as_i64().is_some()
    });
    let (shim, pid1) = pids(&env, &name);
    assert_eq!(
        ppid(shim),
        Some(child.id() as i32),
        "stepctr is the shim's parent"
    );
    assert_eq!(ppid(pid1), Some(shim));
    assert_eq!(comm(shim), "stepctr-shim");
    child.kill().expect("kill stepctr");
    let _ = child.wait();
    wait_until(
        "the container to die with stepctr",
        Duration::from_secs(10),
        || !alive(shim) && !alive(pid1),
    );
    env.rm_and_check(&name);
    assert_no_leaks_with(&env, &name, &[shim, pid1]);
}

fn detached_run_ps_logs_kill_records_the_exit() {
    let env = Env::new();
    let name = unique("det");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        IMAGE,
        "sh",
        "-c",
        "echo to-stdout; echo to-stderr >&2; exec sleep 100",
    ]);
    let (shim, pid1) = pids(&env, &name);
    let ps = stdout(&env.ok(&["ps"]));
    let line = ps
        .lines()
        .find(|l| l.starts_with(&name))
        .expect("ps lists it");
    assert!(line.contains(&pid1.to_string()), "ps shows PID 1: {line}");
    assert!(
        line.trim_end().ends_with('-'),
        "no exit code while running: {line}"
    );
    wait_until("the log", Duration::from_secs(5), || {
        stdout(&env.ok(&["logs", &name])).contains("to-stderr")
    });
    let logs = stdout(&env.ok(&["logs", &name]));
    assert!(
        logs.contains("to-stdout\n") && logs.contains("to-stderr\n"),
        "{logs}"
    );
    // SIGTERM to a PID 1 without a handler: dropped by the kernel.
    env.ok(&["kill", "-s", "TERM", &name]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(pid1), "PID 1 without a handler ignores SIGTERM");
    env.ok(&["kill", &name]);
    wait_until("the exit code", Duration::from_secs(10), || {
        exit_code(&env, &name) == Some(137)
    });
    assert!(env.state(&name)["finished_at"].as_u64().is_some());
    wait_until("the shim to exit", Duration::from_secs(10), || !alive(shim));
    let out = env.run(&["kill", &name]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not running"), "{}", stderr(&out));
    env.rm_and_check(&name);
    assert_no_leaks_with(&env, &name, &[shim, pid1]);
}

fn stop_escalates_when_pid1_ignores_term() {
    let env = Env::new();
    let name = unique("stopk");
    env.ok(&["run", "-d", "--name", &name, IMAGE, "sleep", "100"]);
    let (shim, pid1) = pids(&env, &name);
    let t = Instant::now();
    let out = env.ok(&["stop", "-t", "1", &name]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(950),
        "stop waited only {took:?}"
    );
    assert!(took < Duration::from_secs(8), "stop took {took:?}");
    let err = stderr(&out);
    assert!(
        err.contains("SIGTERM") && err.contains("SIGKILL") && err.contains("escalates"),
        "{err}"
    );
    assert_eq!(exit_code(&env, &name), Some(137));
    env.rm_and_check(&name);
    assert_no_leaks_with(&env, &name, &[shim, pid1]);
}

fn stop_lets_a_term_handler_choose_the_exit_code() {
    let env = Env::new();
    let name = unique("stopt");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        IMAGE,
        "sh",
        "-c",
        "trap 'exit 3' TERM; while :; do sleep 0.05; done",
    ]);
    let (shim, pid1) = pids(&env, &name);
    let t = Instant::now();
    let out = env.ok(&["stop", "-t", "20", &name]);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the handler ran: no need to wait"
    );
    assert!(!stderr(&out).contains("escalates"), "{}", stderr(&out));
    assert_eq!(exit_code(&env, &name), Some(3));
    env.rm_and_check(&name);
    assert_no_leaks_with(&env, &name, &[shim, pid1]);
}

fn rm_refuses_a_running_container_unless_forced() {
    let env = Env::new();
    let name = unique("rmf");
    env.ok(&["run", "-d", "--name", &name, IMAGE, "sleep", "100"]);
    let (shim, pid1) = pids(&env, &name);
    let out = env.run(&["rm", &name]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("running") && err.contains("rm -f") && err.contains("stop"),
        "{err}"
    );
    assert!(alive(pid1), "a refused rm leaves the container alone");
    env.ok(&["-q", "rm", "-f", &name]);
    assert_no_leaks_with(&env, &name, &[shim, pid1]);
}

fn zombies_are_reaped_and_the_shim_goes() {
    let env = Env::new();
    let name = unique("zomb");
    // The backgrounded sleep ends first and is PID 1's to reap; then PID 1 (sh) ends.
    env.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        IMAGE,
        "sh",
        "-c",
        "sleep 0 & sleep 0.5",
    ]);
    let (shim, pid1) = pids(&env, &name);
    wait_until("the exit code", Duration::from_secs(10), || {
        exit_code(&env, &name) == Some(0)
    });
    wait_until("the shim to be gone", Duration::from_secs(10), || {
        !std::path::Path::new(&format!("/proc/{shim}")).exists()
    });
    // No zombie whose parent is the shim or PID 1.
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Some(p) = ppid(pid) {
            assert!(
                p != shim && p != pid1,
                "process {pid} left under the container"
            );
        }
    }
    env.rm_and_check(&name);
    assert_no_leaks_with(&env, &name, &[shim, pid1]);
}

fn run_relays_stdout_and_stderr_byte_for_byte() {
    let env = Env::new();
    let name = unique("relay");
    let out = env.run(&[
        "run",
        "--rm",
        "--name",
        &name,
        IMAGE,
        "sh",
        "-c",
        r"printf '\000\377\001out\n'; printf 'err\376' >&2; printf 'more'",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout, b"\x00\xff\x01out\nmore");
    assert_eq!(out.stderr, b"err\xfe", "run narrates nothing unless asked");
    assert_no_leaks_with(&env, &name, &[]);
}

fn run_exit_codes_and_pid1() {
    let env = Env::new();
    for (cmd, code) in [("exit 0", 0), ("exit 7", 7), ("exit 255", 255)] {
        let name = unique("code");
        let out = env.run(&["run", "--rm", "--name", &name, IMAGE, "sh", "-c", cmd]);
        assert_eq!(out.status.code(), Some(code), "{cmd}: {}", stderr(&out));
        assert_no_leaks_with(&env, &name, &[]);
    }
    // Even SIGKILL from inside its own namespace cannot end PID 1: the kernel protects init.
    let name = unique("init");
    let out = env.ok(&[
        "run",
        "--rm",
        "--name",
        &name,
        IMAGE,
        "sh",
        "-c",
        "kill -9 $$; echo still here",
    ]);
    assert_eq!(stdout(&out), "still here\n");
    let name = unique("pid1");
    let out = env.ok(&[
        "run",
        "--rm",
        "--name",
        &name,
        "-e",
        "GREETING=hi there",
        "-w",
        "/etc",
        "--hostname",
        "box",
        IMAGE,
        "sh",
        "-c",
        "echo $$ \"$GREETING\" $(pwd) $(hostname)",
    ]);
    assert_eq!(stdout(&out), "1 hi there /etc box\n");
    // Without --rm the container stays, stopped, with its exit code.
    let name = unique("keep");
    let out = env.run(&["run", "--name", &name, IMAGE, "false"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(exit_code(&env, &name), Some(1));
    env.rm_and_check(&name);
}

fn run_rm_detached_removes_itself() {
    let env = Env::new();
    let name = unique("rmd");
    env.ok(&["run", "-d", "--rm", "--name", &name, IMAGE, "sleep", "0.3"]);
    let (shim, pid1) = pids(&env, &name);
    wait_until(
        "the container to remove itself",
        Duration::from_secs(15),
        || !env.container_dir(&name).exists() && !alive(shim),
    );
    assert_no_leaks_with(&env, &name, &[shim, pid1]);
}
