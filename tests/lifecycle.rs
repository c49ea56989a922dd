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
            kill_and_stop_tell_what_pid1_does_with_the_signal,
            stop_lets_a_term_handler_choose_the_exit_code,
            rm_refuses_a_running_container_unless_forced,
            zombies_are_reaped_and_the_shim_goes,
            run_relays_stdout_and_stderr_byte_for_byte,
            run_exit_codes_and_pid1,
            run_rm_detached_removes_itself,
            signals_to_stepctr_and_the_shim_reach_pid1,
            ps_status_and_json_and_inspect,
            rm_tells_what_is_lost_and_what_is_kept,
            detached_narration_tells_the_redirections_and_stays_out_of_the_log,
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

/// `stepctr run -d --name NAME IMAGE sh -c SCRIPT`.
fn run_detached(env: &Env, name: &str, script: &str) {
    env.ok(&["run", "-d", "--name", name, IMAGE, "sh", "-c", script]);
}

fn detached_run_ps_logs_kill_records_the_exit() {
    let env = Env::new();
    let name = unique("det");
    run_detached(
        &env,
        &name,
        "echo to-stdout; echo to-stderr >&2; exec sleep 100",
    );
    let (shim, pid1) = pids(&env, &name);
    let ps = stdout(&env.ok(&["ps"]));
    let line = ps
        .lines()
        .find(|l| l.starts_with(&name))
        .expect("ps lists it");
    assert!(line.contains(&pid1.to_string()), "ps shows PID 1: {line}");
    assert!(line.contains(" running "), "ps shows it running: {line}");
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

/// `kill -s SIG` notes what PID 1 does with the signal, read from /proc/PID/status before it
/// is sent: a handler (it decides), ignored, or none (the kernel drops it for a namespace's
/// init); `stop` names the reason it escalates.
fn kill_and_stop_tell_what_pid1_does_with_the_signal() {
    let env = Env::new();
    let name = unique("killn");
    run_detached(
        &env,
        &name,
        "trap '' USR1 TERM; trap 'echo got HUP' HUP; echo ready; while :; do sleep 0.1; done",
    );
    let (shim, pid1) = pids(&env, &name);
    wait_until("PID 1's traps", Duration::from_secs(10), || {
        stdout(&env.ok(&["logs", &name])).contains("ready")
    });
    let note = |sig: &str| stderr(&env.ok(&["kill", "-s", sig, &name]));
    let err = note("HUP");
    assert!(err.contains("has a handler"), "{err}");
    wait_until("the handler's output", Duration::from_secs(10), || {
        stdout(&env.ok(&["logs", &name])).contains("got HUP")
    });
    let err = note("USR1");
    assert!(err.contains("ignores this signal"), "{err}");
    let err = note("USR2");
    assert!(
        err.contains("no handler") && err.contains("drops it"),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        alive(pid1),
        "ignored and dropped signals leave PID 1 running"
    );
    let err = stderr(&env.ok(&["stop", "-t", "0.3", &name]));
    assert!(
        err.contains("it ignores SIGTERM") && err.contains("escalates"),
        "{err}"
    );
    assert_eq!(exit_code(&env, &name), Some(137));
    env.rm_and_check(&name);
    assert_no_leaks_with(&env, &name, &[shim, pid1]);
}

fn stop_lets_a_term_handler_choose_the_exit_code() {
    let env = Env::new();
    let name = unique("stopt");
    run_detached(
        &env,
        &name,
        "trap 'exit 3' TERM; while :; do sleep 0.05; done",
    );
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
    run_detached(&env, &name, "sleep 0 & sleep 0.5");
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

/// The script PID 1 runs: a TERM handler that exits 5, and "ready" once the handler is set.
const TRAP_TERM: &str =
    "trap 'echo got TERM; exit 5' TERM; echo ready; while :; do sleep 0.1; done";

fn signals_to_stepctr_and_the_shim_reach_pid1() {
    use std::io::{BufRead, BufReader, Read};
    let env = Env::new();
    // Attached: SIGTERM to stepctr itself goes on to PID 1, whose handler picks the exit code.
    let name = unique("sig");
    let mut child = env
        .cmd(&["run", "--rm", "--name", &name, IMAGE, "sh", "-c", TRAP_TERM])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn stepctr");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read");
    assert_eq!(line, "ready\n", "PID 1 set its handler");
    wait_until("stepctr to record PID 1", Duration::from_secs(10), || {
        env.state(&name)["shim"][0].as_i64().is_some()
    });
    let (shim, pid1) = pids(&env, &name);
    // SAFETY: signalling the stepctr we started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("SIGTERM to stepctr did not end the container");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    out.read_to_string(&mut rest).expect("read");
    assert_eq!(rest, "got TERM\n");
    assert_eq!(status.code(), Some(5), "PID 1's exit code");
    assert_no_leaks_with(&env, &name, &[shim, pid1]);

    // Detached: the shim has a session of its own, its stdio on /dev/null, and passes a
    // SIGTERM sent to it on to PID 1.
    let name = unique("sigd");
    env.ok(&["run", "-d", "--name", &name, IMAGE, "sh", "-c", TRAP_TERM]);
    let (shim, pid1) = pids(&env, &name);
    assert_eq!(
        stat_field(shim, 6),
        Some(shim.to_string()),
        "setsid: the shim leads its session"
    );
    for fd in 0..3 {
        let target = std::fs::read_link(format!("/proc/{shim}/fd/{fd}")).expect("shim fd");
        assert_eq!(target, std::path::Path::new("/dev/null"), "shim fd {fd}");
    }
    wait_until("PID 1's handler", Duration::from_secs(10), || {
        stdout(&env.ok(&["logs", &name])).contains("ready")
    });
    // SAFETY: signalling the shim of our own container.
    assert_eq!(unsafe { libc::kill(shim, libc::SIGTERM) }, 0);
    wait_until("the exit code", Duration::from_secs(10), || {
        exit_code(&env, &name) == Some(5)
    });
    wait_until("the shim to exit", Duration::from_secs(10), || !alive(shim));
    assert_eq!(stdout(&env.ok(&["logs", &name])), "ready\ngot TERM\n");
    env.rm_and_check(&name);
    assert_no_leaks_with(&env, &name, &[shim, pid1]);
}

/// `ps`'s line for `name`.
fn ps_line(env: &Env, name: &str) -> String {
    let ps = stdout(&env.ok(&["ps"]));
    ps.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in ps:\n{ps}"))
        .to_string()
}

fn ps_json(env: &Env, name: &str) -> serde_json::Value {
    let all: serde_json::Value =
        serde_json::from_str(&stdout(&env.ok(&["ps", "--json"]))).expect("ps --json is JSON");
    let arr = all.as_array().expect("ps --json is an array");
    arr.iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in ps --json: {all}"))
        .clone()
}

fn ps_status_and_json_and_inspect() {
    let env = Env::new();
    let (run, done, made) = (unique("psr"), unique("psx"), unique("psc"));
    env.ok(&["run", "-d", "--name", &run, IMAGE, "sleep", "100"]);
    let out = env.run(&["run", "--name", &done, IMAGE, "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    env.ok(&["-q", "load", &made, IMAGE]);
    let (shim, pid1) = pids(&env, &run);

    let header = stdout(&env.ok(&["ps"]));
    assert!(header.starts_with("NAME"), "{header}");
    assert!(header.lines().next().unwrap_or("").contains("STATUS"));
    let l = ps_line(&env, &run);
    assert!(l.contains(" running "), "{l}");
    assert!(
        l.contains(&format!(" {pid1} ")) && l.contains(&format!(" {shim} ")),
        "{l}"
    );
    assert!(ps_line(&env, &done).contains(" exited (3) "));
    let l = ps_line(&env, &made);
    assert!(
        l.contains(" created ") && l.trim_end().ends_with("load"),
        "{l}"
    );

    let j = ps_json(&env, &run);
    assert_eq!(j["status"], "running");
    assert_eq!(j["running"], true);
    assert_eq!(j["pid"], pid1);
    assert_eq!(j["shim"], shim);
    assert_eq!(j["shim_running"], true);
    assert_eq!(j["exit_code"], serde_json::Value::Null);
    assert_eq!(j["oom_killed"], false);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let started = j["started_at"].as_u64().expect("started_at");
    assert!(started.abs_diff(now) < 120, "started {started}, now {now}");
    assert_eq!(
        j["stages"],
        serde_json::json!(["load", "cgroup", "ns", "fs", "start"])
    );
    let j = ps_json(&env, &done);
    assert_eq!(
        (j["status"].clone(), j["exit_code"].clone()),
        ("exited (3)".into(), 3.into())
    );
    assert_eq!(j["running"], false);
    assert!(j["finished_at"]
        .as_u64()
        .is_some_and(|f| f >= started.saturating_sub(5)));
    let j = ps_json(&env, &made);
    assert_eq!(j["status"], "created");
    assert_eq!(j["pid"], serde_json::Value::Null);

    // inspect NAME: a container's state (images keep their own inspect).
    let text = stdout(&env.ok(&["inspect", &run]));
    assert!(text.contains("Status:     running"), "{text}");
    let j: serde_json::Value =
        serde_json::from_str(&stdout(&env.ok(&["inspect", "--json", &run]))).expect("JSON");
    assert_eq!(j["status"], "running");
    assert_eq!(j["state"]["pid"], pid1);

    // Killed: exited (137), and the shim is gone from the SHIM column.
    env.ok(&["kill", &run]);
    wait_until("the exit to be recorded", Duration::from_secs(10), || {
        ps_json(&env, &run)["status"] == "exited (137)"
    });
    wait_until("the shim to exit", Duration::from_secs(10), || !alive(shim));
    let l = ps_line(&env, &run);
    assert!(!l.contains(&format!(" {shim} ")), "{l}");
    for n in [&run, &done, &made] {
        env.rm_and_check(n);
    }
    assert_no_leaks_with(&env, &run, &[shim, pid1]);
    let out = env.ok(&["ps", "--json"]);
    assert_eq!(stdout(&out).trim(), "[]");
}

fn rm_tells_what_is_lost_and_what_is_kept() {
    let env = Env::new();
    let vol = tempfile::tempdir().expect("volume dir");
    let name = unique("rmw");
    let spec = format!("{}:/data", vol.path().display());
    env.ok(&[
        "run",
        "--name",
        &name,
        "-v",
        &spec,
        IMAGE,
        "sh",
        "-c",
        "echo a > /a; mkdir /b; echo c > /b/c; echo kept > /data/v",
    ]);
    let upper = env.container_dir(&name).join("upper");
    assert!(
        upper.join("b/c").exists(),
        "the writes landed in the writable layer"
    );
    let out = env.ok(&["rm", &name]);
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.contains("writable layer"))
        .unwrap_or_else(|| panic!("rm tells of the writable layer:\n{err}"));
    assert!(
        line.starts_with("# ") && line.contains(&upper.display().to_string()),
        "{line}"
    );
    assert!(
        line.contains("are lost now") && line.contains("volume"),
        "{line}"
    );
    assert!(
        err.contains(&format!(
            "volume {} (seen as /data inside) keeps its data",
            vol.path().display()
        )),
        "{err}"
    );
    assert!(!upper.exists());
    assert_eq!(
        std::fs::read_to_string(vol.path().join("v")).expect("volume data"),
        "kept\n"
    );
    assert_no_leaks_with(&env, &name, &[]);

    // rm -f of a running container says what -f does to PID 1.
    let name = unique("rmf");
    env.ok(&["run", "-d", "--name", &name, IMAGE, "sleep", "100"]);
    let (shim, pid1) = pids(&env, &name);
    let err = stderr(&env.ok(&["rm", "-f", &name]));
    assert!(
        err.contains(&format!(
            "# rm -f: PID 1 (host pid {pid1}) still runs, so it is killed with SIGKILL"
        )),
        "{err}"
    );
    assert!(
        err.contains("it is empty: this container changed no file"),
        "{err}"
    );
    assert_no_leaks_with(&env, &name, &[shim, pid1]);
}

fn detached_narration_tells_the_redirections_and_stays_out_of_the_log() {
    let env = Env::new();
    let name = unique("dnar");
    let out = env.ok(&[
        "all",
        "-d",
        "--name",
        &name,
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    let err = stderr(&out);
    let (shim, pid1) = pids(&env, &name);
    for want in [
        format!("[pid {shim:>5}] setsid() = {shim} "),
        format!("[pid {pid1:>5}, 1 inside] openat(AT_FDCWD, \"/dev/null\", O_RDWR|O_CLOEXEC) = "),
        format!("[pid {shim:>5}] openat(AT_FDCWD, \"/dev/null\", O_RDWR|O_CLOEXEC) = "),
    ] {
        assert!(err.contains(&want), "narration lacks {want:?}:\n{err}");
    }
    let log = env.container_dir(&name).join("log");
    let dup_log = err
        .lines()
        .filter(|l| l.contains("dup3(") && l.contains(&format!("<{}>", log.display())))
        .count();
    assert_eq!(
        dup_log, 2,
        "PID 1 puts the log on stdout and stderr:\n{err}"
    );
    let dup_null = err
        .lines()
        .filter(|l| l.starts_with(&format!("[pid {shim:>5}] dup3(")))
        .count();
    assert_eq!(dup_null, 3, "the shim puts /dev/null on 0, 1, 2:\n{err}");
    wait_until("the shim to exit", Duration::from_secs(10), || !alive(shim));
    // Not one line of narration in the container's output.
    assert_eq!(stdout(&env.ok(&["logs", &name])), "out\nerr\n");
    env.rm_and_check(&name);
    assert_no_leaks_with(&env, &name, &[shim, pid1]);
}
