//! What a process inside a stepctr container sees, and what the host sees of it: acceptance
//! checks for the six stages, run through `all` and one by one.

mod common;

use common::{stderr, stdout, unique, Env};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};

/// Runs inside the container: prints `key=value` lines, then waits on stdin so the host can
/// look at the running container, then exits with the code it reads.
const PROBE: &str = r#"
echo "pid=$$"
echo "hostname=$(hostname)"
echo "procs=$(ls /proc | grep -E '^[0-9]+$' | tr '\n' ' ')"
echo "root=$(ls / | tr '\n' ' ')"
echo "rootmount=$(grep -E '^[0-9]+ [0-9]+ [^ ]+ [^ ]+ / ' /proc/self/mountinfo | sed 's/.* - //' | cut -d' ' -f1)"
echo "netdevs=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ' ')"
echo "cgroup=$(tr '\n' ' ' < /proc/self/cgroup)"
if [ -e "@MARKER@" ]; then echo "marker=visible"; else echo "marker=hidden"; fi
if [ -e /bin/busybox ]; then echo "busybox=visible"; fi
echo READY
read code
exit $code
"#;

const MEMORY: u64 = 256 * 1024 * 1024;
const PIDS: u64 = 64;

struct Running {
    child: Child,
    probe: BTreeMap<String, String>,
}

/// Start the probe through `args` (the last command must end with `--`), read its report.
fn start_probe(env: &Env, args: &[&str], marker: &str) -> Running {
    assert!(
        std::path::Path::new(marker).exists(),
        "the marker exists on the host"
    );
    let script = PROBE.replace("@MARKER@", marker);
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["sh", "-c", &script]);
    let mut child = env
        .cmd(&full)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stepctr");
    let out = child.stdout.take().unwrap();
    let mut probe = BTreeMap::new();
    for line in BufReader::new(out).lines() {
        let line = line.expect("read probe output");
        if line == "READY" {
            break;
        }
        if let Some((k, v)) = line.split_once('=') {
            probe.insert(k.to_string(), v.trim().to_string());
        }
    }
    if probe.is_empty() {
        let out = child.wait_with_output().unwrap();
        panic!("the probe printed nothing; stepctr said:\n{}", stderr(&out));
    }
    Running { child, probe }
}

/// Let the probe exit with `code`; returns stepctr's exit status code.
fn finish(mut r: Running, code: i32) -> i32 {
    let mut stdin = r.child.stdin.take().unwrap();
    writeln!(stdin, "{code}").unwrap();
    drop(stdin);
    let out = r.child.wait_with_output().unwrap();
    out.status
        .code()
        .unwrap_or_else(|| panic!("stepctr killed: {:?}\n{}", out.status, stderr(&out)))
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// The checks of acceptance item 2, from inside (the probe) and from the host.
fn check_container(env: &Env, name: &str, r: &Running) {
    let p = &r.probe;
    assert_eq!(p["pid"], "1", "the command is PID 1: {p:?}");
    assert_eq!(p["hostname"], name, "the hostname is the container's");
    let procs: Vec<i64> = p["procs"]
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(
        procs.contains(&1) && procs.len() < 10,
        "/proc shows only the container's processes: {procs:?}"
    );
    assert!(!procs.contains(&(std::process::id() as i64)) || std::process::id() < 10);
    assert_eq!(p["rootmount"], "overlay", "/ is the overlay");
    assert_eq!(p["marker"], "hidden", "a host file in /tmp is invisible");
    assert_eq!(
        p.get("busybox").map(String::as_str),
        Some("visible"),
        "the image's files are visible"
    );
    assert_eq!(p["netdevs"], "lo", "the network namespace has only lo");

    // The root holds exactly the image's top-level entries.
    let state = env.state(name);
    let layer = state["layers"][0].as_str().unwrap();
    let mut image_root: Vec<String> = std::fs::read_dir(layer)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    image_root.sort();
    let mut seen: Vec<&str> = p["root"].split_whitespace().collect();
    seen.sort();
    assert_eq!(seen, image_root, "ls / shows exactly the image's root");

    // Inside its cgroup namespace the container sees its own cgroup as the root...
    for ctl in ["memory", "pids"] {
        let v1 = p["cgroup"]
            .split_whitespace()
            .any(|l| l.ends_with(&format!(":{ctl}:/")));
        let v2 = p["cgroup"].split_whitespace().any(|l| l == "0::/");
        assert!(
            v1 || v2,
            "in its cgroup namespace the container is at the root: {}",
            p["cgroup"]
        );
    }
    // ...and the host sees PID 1 in /stepctr/NAME, with the limits written.
    // stepctr records PID 1's pid once the shim has told it, which may be after the probe
    // has already printed: wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let pid = loop {
        if let Some(pid) = env.state(name)["pid"].as_i64() {
            break pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "state has the pid of PID 1"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let host_view = read(&std::path::PathBuf::from(format!("/proc/{pid}/cgroup")));
    let dirs: Vec<String> = state["cgroup"]["dirs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    assert!(!dirs.is_empty());
    for dir in &dirs {
        let procs = read(&std::path::Path::new(dir).join("cgroup.procs"));
        assert!(
            procs.lines().any(|l| l == pid.to_string()),
            "PID 1 ({pid}) is in {dir}: {procs:?}"
        );
        assert!(dir.ends_with(&format!("/stepctr/{name}")));
    }
    assert!(
        host_view.contains(&format!("/stepctr/{name}")),
        "host view of PID 1's cgroups: {host_view}"
    );
    if state["cgroup"]["version"] == "v2" {
        let d = std::path::Path::new(&dirs[0]);
        assert_eq!(read(&d.join("memory.max")), MEMORY.to_string());
        assert_eq!(read(&d.join("pids.max")), PIDS.to_string());
    } else {
        let mem = dirs
            .iter()
            .find(|d| d.contains("/memory/"))
            .expect("a memory cgroup");
        let pids = dirs
            .iter()
            .find(|d| d.contains("/pids/"))
            .expect("a pids cgroup");
        assert_eq!(
            read(&std::path::Path::new(mem).join("memory.limit_in_bytes")),
            MEMORY.to_string()
        );
        assert_eq!(
            read(&std::path::Path::new(pids).join("pids.max")),
            PIDS.to_string()
        );
    }
}

fn marker() -> tempfile::NamedTempFile {
    tempfile::Builder::new()
        .prefix("stepctr-host-marker-")
        .tempfile_in("/tmp")
        .unwrap()
}

fn all_gives_an_isolated_limited_container() {
    let env = Env::new();
    let name = unique("all");
    let m = marker();
    let marker_path = m.path().to_string_lossy().into_owned();
    let r = start_probe(
        &env,
        &[
            "all",
            "--name",
            &name,
            "--memory",
            "256M",
            "--pids-limit",
            "64",
            "--",
        ],
        &marker_path,
    );
    check_container(&env, &name, &r);
    assert_eq!(finish(r, 0), 0);
    env.rm_and_check(&name);
}

fn stages_one_by_one_give_the_same_container() {
    let env = Env::new();
    let name = unique("steps");
    let m = marker();
    let marker_path = m.path().to_string_lossy().into_owned();
    env.ok(&["pull"]);
    env.ok(&["load", &name]);
    env.ok(&["cgroup", &name, "--memory", "256M", "--pids-limit", "64"]);
    env.ok(&["ns", &name]);
    env.ok(&["fs", &name]);
    let stages = env.state(&name)["stages"].clone();
    assert_eq!(stages, serde_json::json!(["load", "cgroup", "ns", "fs"]));
    let r = start_probe(&env, &["start", &name, "--"], &marker_path);
    check_container(&env, &name, &r);
    assert_eq!(finish(r, 0), 0);
    env.rm_and_check(&name);
}

fn exit_code_of_the_command_is_stepctrs() {
    let env = Env::new();
    let name = unique("exit");
    let out = env.run(&[
        "-q", "all", "--rm", "--name", &name, "--", "sh", "-c", "exit 42",
    ]);
    assert_eq!(out.status.code(), Some(42), "{}", stderr(&out));
    common::assert_no_leaks(&env, &name);

    // The same through `start`, and the code is recorded in the state.
    let m = marker();
    let name = unique("exit-start");
    for stage in [
        vec!["load", &name],
        vec!["cgroup", &name],
        vec!["ns", &name],
        vec!["fs", &name],
    ] {
        env.ok(&stage);
    }
    let r = start_probe(&env, &["start", &name, "--"], &m.path().to_string_lossy());
    assert_eq!(finish(r, 7), 7);
    assert_eq!(env.state(&name)["exit_code"], 7);
    env.rm_and_check(&name);
}

fn the_containers_stdout_is_not_mixed_with_narration() {
    let env = Env::new();
    let name = unique("stdout");
    let out = env.run(&[
        "all",
        "--rm",
        "--name",
        &name,
        "--",
        "echo",
        "hello from PID 1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "hello from PID 1\n",
        "stdout carries only the container's output"
    );
    let narration = stderr(&out);
    for needle in [
        "==> [1/6] pull",
        "==> [6/6] start",
        "unshare(",
        "pivot_root(\".\", \".\")",
        "execve(\"/bin/echo\"",
    ] {
        assert!(
            narration.contains(needle),
            "narration lacks {needle}:\n{narration}"
        );
    }
    assert!(
        !narration.contains("\x1b["),
        "no colour when stderr is not a terminal"
    );

    // -q: nothing but the container's output; --trace-file: the narration goes there.
    let name = unique("quiet");
    let out = env.run(&["-q", "all", "--rm", "--name", &name, "--", "echo", "hi"]);
    assert_eq!((stdout(&out).as_str(), stderr(&out).as_str()), ("hi\n", ""));
    let trace = tempfile::NamedTempFile::new().unwrap();
    let name = unique("trace");
    let out = env.run(&[
        "--trace-file",
        &trace.path().to_string_lossy(),
        "all",
        "--rm",
        "--name",
        &name,
        "--",
        "true",
    ]);
    assert!(out.status.success());
    assert_eq!(
        stderr(&out),
        "",
        "narration went to the trace file, not stderr"
    );
    let t = std::fs::read_to_string(trace.path()).unwrap();
    assert!(t.contains("==> [4/6] ns") && t.contains("setns("), "{t}");

    // -v shows long arguments in full: the whole overlay option string.
    let name = unique("verbose");
    let out = env.run(&["-v", "all", "--rm", "--name", &name, "--", "true"]);
    let v = stderr(&out);
    let line = v
        .lines()
        .find(|l| l.contains("mount(\"overlay\""))
        .expect("overlay mount narrated");
    assert!(
        line.contains("workdir=") && !line.contains("\"..."),
        "{line}"
    );
}

fn the_writable_layer_takes_writes_and_the_image_stays_untouched() {
    let env = Env::new();
    let name = unique("upper");
    let out = env.run(&[
        "-q",
        "all",
        "--name",
        &name,
        "--",
        "sh",
        "-c",
        "echo data > /etc/new-file && rm /bin/ls",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = env.container_dir(&name);
    assert_eq!(read(&dir.join("upper/etc/new-file")), "data");
    let state = env.state(&name);
    let layer = std::path::PathBuf::from(state["layers"][0].as_str().unwrap());
    assert!(
        layer.join("bin/ls").symlink_metadata().is_ok(),
        "the image layer is unchanged"
    );
    assert!(!layer.join("etc/new-file").exists());
    env.rm_and_check(&name);
}

/// README's first command (`... && cargo run --release -- all --rm`) works as written: on a
/// fresh store it builds the default image, runs all six stages, and leaves nothing behind.
fn the_readme_main_job_runs_on_a_fresh_store() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.contains("cargo run --release -- "))
        .expect("README gives the main job as `cargo run --release -- ...`");
    let args: Vec<&str> = line
        .split("cargo run --release -- ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        args.first(),
        Some(&"all"),
        "the main job is `stepctr all`: {line}"
    );
    let env = Env::fresh();
    let out = env.cmd(&args).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{line}:\n{}", stderr(&out));
    let narration = stderr(&out);
    assert!(
        narration.contains("building the default image"),
        "first use builds the default image"
    );
    for stage in ["pull", "load", "cgroup", "ns", "fs", "start"] {
        assert!(
            narration.contains(&format!("] {stage}: ")),
            "no header for {stage}:\n{narration}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(&env.run)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "--rm left {left:?}");
}

fn main() {
    common::run_tests(
        tests![
            all_gives_an_isolated_limited_container,
            stages_one_by_one_give_the_same_container,
            exit_code_of_the_command_is_stepctrs,
            the_containers_stdout_is_not_mixed_with_narration,
            the_writable_layer_takes_writes_and_the_image_stays_untouched,
            the_readme_main_job_runs_on_a_fresh_store,
        ],
        true,
    );
}
