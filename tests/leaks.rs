//! Nothing of a container is left after `rm`: no mount, no cgroup, no namespace file, no
//! process, no state directory. Also after stepctr was killed with SIGKILL in the middle of
//! each stage (run on its own, and inside `all`), which is what the journal in state.json is for.
//!
//! The kills are deterministic: strace's fault injection delivers SIGKILL to the main stepctr
//! process on entry to a chosen system call (no `-f`: its children are not traced, they die
//! by PR_SET_PDEATHSIG as they would after any crash). Each kill is checked to have really
//! happened in the middle of its stage, otherwise the test would test nothing.

mod common;

use common::{assert_no_leaks, assert_no_leaks_with, cgroup_dirs_named, stderr, unique, Env};
use std::cell::Cell;
use std::fs;
use std::io::{Read, Seek};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Generous: a debug build unpacking a layer under strace is the slowest step here.
const LIMIT: Duration = Duration::from_secs(120);

fn main() {
    install_quiet_panic_hook();
    common::run_tests(
        vec![
            ("kill_in_load_then_rm", || killed(Stage::Load, Via::Alone)),
            ("kill_in_cgroup_then_rm", || {
                killed(Stage::Cgroup, Via::Alone)
            }),
            ("kill_in_ns_then_rm", || killed(Stage::Ns, Via::Alone)),
            ("kill_in_fs_then_rm", || killed(Stage::Fs, Via::Alone)),
            ("kill_in_start_then_rm", || killed(Stage::Start, Via::Alone)),
            ("kill_all_in_load_then_rm", || killed(Stage::Load, Via::All)),
            ("kill_all_in_cgroup_then_rm", || {
                killed(Stage::Cgroup, Via::All)
            }),
            ("kill_all_in_ns_then_rm", || killed(Stage::Ns, Via::All)),
            ("kill_all_in_fs_then_rm", || killed(Stage::Fs, Via::All)),
            ("kill_all_in_start_then_rm", || {
                killed(Stage::Start, Via::All)
            }),
            ("rm_after_all_leaves_nothing", rm_after_all_leaves_nothing),
            (
                "rm_after_each_stage_leaves_nothing",
                rm_after_each_stage_leaves_nothing,
            ),
            ("rm_twice_says_no_container", rm_twice_says_no_container),
            (
                "rm_of_running_container_kills_it",
                rm_of_running_container_kills_it,
            ),
            (
                "reset_removes_every_container",
                reset_removes_every_container,
            ),
            ("leak_checker_can_fail", leak_checker_can_fail),
        ],
        true,
    );
}

use stepctr::state::Stage;

/// The command line of a stage alone (limits for cgroup, a long-running PID 1 for start).
trait StageArgs {
    fn args(self, name: &str) -> Vec<String>;
}

impl StageArgs for Stage {
    fn args(self, name: &str) -> Vec<String> {
        let mut a = vec!["-q".to_string(), self.name().to_string(), name.to_string()];
        match self {
            Stage::Cgroup => a.extend(["--memory", "64M", "--pids-limit", "32"].map(String::from)),
            Stage::Start => a.extend(["--", "sleep", "1000"].map(String::from)),
            _ => {}
        }
        a
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// `stepctr <stage> NAME`, after the earlier stages ran one by one.
    Alone,
    /// `stepctr all --name NAME ...`.
    All,
}

fn all_args(name: &str) -> Vec<String> {
    [
        "-q",
        "all",
        "--name",
        name,
        "--memory",
        "64M",
        "--pids-limit",
        "32",
        "--",
        "sleep",
        "1000",
    ]
    .map(String::from)
    .to_vec()
}

/// Where to kill: on entry to the `when`-th call of `syscall` (only counting calls that touch
/// `path`, if given) in the main stepctr process.
struct KillPoint {
    syscall: &'static str,
    when: u32,
    path: Option<PathBuf>,
}

fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// A point in the middle of `stage`, chosen from the stage's code. Every point is one the
/// main process passes exactly once per run (ns may retry its helper on another CPU, so
/// counting wait4 or clone across stages would not be deterministic):
/// - load: the renameat that publishes the unpacked layer (the layer is complete in its
///   `.tmp-*` directory, not yet in place);
/// - cgroup: opening pids.max (the container's cgroups exist, the pids limit is not written);
/// - ns: the bind mount of ns/uts (ns/mnt is already pinned; stepctr has made the namespaces
///   and stepped back out of them);
/// - fs alone: the mknodat of rootfs/dev/null (stepctr is inside the container's mount
///   namespace, the overlay and the /dev tmpfs are mounted there);
///   fs in `all`: the mkdirat of rootfs/ (upper/ and work/ exist);
/// - start: the close of the container's lock, which start lets go of once PID 1 (`sleep
///   1000`) has been exec'd, just before waiting for it.
fn kill_point(env: &Env, stage: Stage, via: Via, name: &str) -> KillPoint {
    let dir = env.container_dir(name);
    match stage {
        Stage::Pull => unreachable!("pull makes no container"),
        Stage::Load => KillPoint {
            syscall: "renameat",
            when: 1,
            path: None,
        },
        Stage::Cgroup => {
            let cg = if cgroup_v2() {
                PathBuf::from("/sys/fs/cgroup/stepctr")
            } else {
                PathBuf::from("/sys/fs/cgroup/pids/stepctr")
            };
            KillPoint {
                syscall: "openat",
                when: 1,
                path: Some(cg.join(name).join("pids.max")),
            }
        }
        Stage::Ns => KillPoint {
            syscall: "mount",
            when: 1,
            path: Some(dir.join("ns").join("uts")),
        },
        Stage::Fs if via == Via::All => KillPoint {
            syscall: "mkdirat",
            when: 1,
            path: Some(dir.join("rootfs")),
        },
        // mknodat(fd of rootfs/dev, "null", ...): the first device node, made fd-relative
        // (so no path to match: it is the stage's first mknodat).
        Stage::Fs => KillPoint {
            syscall: "mknodat",
            when: 1,
            path: None,
        },
        Stage::Start => KillPoint {
            syscall: "close",
            when: 1,
            path: Some(dir),
        },
    }
}

/// Run stepctr under strace, which SIGKILLs it at `kp`. Insists that it was killed.
fn run_killed(env: &Env, kp: &KillPoint, args: &[String]) -> Output {
    let mut cmd = Command::new("strace");
    cmd.args(["-qq", "-o", "/dev/null"]);
    if let Some(p) = &kp.path {
        cmd.arg("-P").arg(p);
    }
    cmd.arg("-e")
        .arg(format!("trace={}", kp.syscall))
        .arg("-e")
        .arg(format!(
            "inject={}:signal=SIGKILL:when={}",
            kp.syscall, kp.when
        ))
        .arg("--")
        .arg(common::stepctr_bin())
        .args(args)
        .env("STEPCTR_ROOT", &env.root)
        .env("STEPCTR_RUN", &env.run)
        .env("NO_COLOR", "1");
    let out =
        output_within(&mut cmd, LIMIT).unwrap_or_else(|e| panic!("strace stepctr {args:?}: {e}"));
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "stepctr {args:?} was not killed at {}#{} ({:?}): the kill point was never reached, \
         so this test tests nothing (is strace installed?)\nstderr:\n{}",
        kp.syscall,
        kp.when,
        out.status,
        stderr(&out)
    );
    out
}

/// Kill stepctr in the middle of `stage`, then `rm`: nothing may be left.
fn killed(stage: Stage, via: Via) {
    // load needs a store where the layer is not unpacked yet.
    let env = if stage == Stage::Load {
        Env::fresh()
    } else {
        Env::new()
    };
    if stage == Stage::Load {
        env.ok(&["-q", "pull"]);
    }
    let tag = if via == Via::All { "killall" } else { "kill" };
    let name = unique(&format!("{tag}-{}", stage.name()));
    let args = match via {
        Via::All => all_args(&name),
        Via::Alone => {
            for earlier in [Stage::Load, Stage::Cgroup, Stage::Ns, Stage::Fs] {
                if earlier < stage {
                    let a = earlier.args(&name);
                    env.ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
                }
            }
            stage.args(&name)
        }
    };
    let kp = kill_point(&env, stage, via, &name);
    run_killed(&env, &kp, &args);

    // The stage began and did not finish.
    let dir = env.container_dir(&name);
    assert!(
        dir.join("state.json").is_file(),
        "no state.json after the kill in {}",
        stage.name()
    );
    let state = env.state(&name);
    let stages = stage_names(&state);
    let earlier: Vec<&str> = [Stage::Load, Stage::Cgroup, Stage::Ns, Stage::Fs]
        .into_iter()
        .filter(|s| *s < stage)
        .map(Stage::name)
        .collect();
    for e in &earlier {
        assert!(
            stages.contains(&e.to_string()),
            "stage {e} should be done before {}: {stages:?}",
            stage.name()
        );
    }
    match stage {
        // start records itself as begun before it forks PID 1; it is complete when PID 1's
        // exit code is recorded.
        Stage::Start => {
            assert!(
                state["exit_code"].is_null(),
                "start completed (exit code recorded): {state}"
            );
            assert!(
                state["pid"].as_i64().is_some(),
                "start was killed before PID 1 existed: {state}"
            );
        }
        _ => assert!(
            !stages.contains(&stage.name().to_string()),
            "stage {} completed: {stages:?}",
            stage.name()
        ),
    }
    // ... and had done part of its work.
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir_s = dir.to_string_lossy().into_owned();
    match stage {
        Stage::Pull => {}
        Stage::Load => {
            assert!(
                !tmp_layer_dirs(&env).is_empty(),
                "killed in load, but no .tmp-* layer directory was left to clean up"
            );
            assert!(
                state["layers"].as_array().is_none_or(|l| l.is_empty()),
                "layers recorded: {state}"
            );
        }
        Stage::Cgroup => assert!(
            !cgroup_dirs_named(&name).is_empty(),
            "killed in cgroup, but no cgroup of {name} exists"
        ),
        Stage::Ns => assert!(
            mountinfo
                .lines()
                .any(|l| l.contains(&format!("{dir_s}/ns/mnt "))),
            "killed in ns, but ns/mnt is not pinned yet"
        ),
        Stage::Fs => assert!(
            dir.join("upper").is_dir(),
            "killed in fs before its directories were made"
        ),
        Stage::Start => assert!(
            mountinfo
                .lines()
                .any(|l| l.contains(&format!("{dir_s}/ns/pid "))),
            "killed in start, but PID 1 had not pinned its PID namespace"
        ),
    }

    let pids = pids_of(&state);
    // ns and fs are done by stepctr itself (no helper process): the first process a stage
    // leaves is the shim, in start.
    if stage >= Stage::Start {
        assert!(
            !pids.is_empty(),
            "no process in the journal after a kill in {}",
            stage.name()
        );
    }
    if stage == Stage::Start {
        // stepctr's death takes the shim with it (PR_SET_PDEATHSIG), and the shim's takes
        // PID 1: a chain of signals that takes a moment. `rm` (without -f) rightly refuses a
        // container whose PID 1 still runs, so wait for the chain to end it first.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while pids.iter().any(|p| alive(*p)) {
            assert!(
                std::time::Instant::now() < deadline,
                "PID 1 or the shim outlived stepctr by 5 s: {pids:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    rm_ok(&env, &name);
    assert_no_leaks_with(&env, &name, &pids);
    if stage == Stage::Load {
        let left = tmp_layer_dirs(&env);
        assert!(left.is_empty(), "rm left half-unpacked layers: {left:?}");
        // The store is usable again: the layer is unpacked from scratch and published.
        let again = unique("reload");
        env.ok(&["-q", "load", &again]);
        rm_ok(&env, &again);
        assert_no_leaks(&env, &again);
    }
}

fn stage_names(state: &serde_json::Value) -> Vec<String> {
    state["stages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Every process the container ever had: the journal's and PID 1.
fn pids_of(state: &serde_json::Value) -> Vec<i32> {
    let mut pids: Vec<i32> = state["journal"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["kind"] == "process")
        .filter_map(|r| r["pid"].as_i64())
        .map(|p| p as i32)
        .collect();
    if let Some(p) = state["pid"].as_i64() {
        pids.push(p as i32);
    }
    pids.sort();
    pids.dedup();
    pids
}

fn tmp_layer_dirs(env: &Env) -> Vec<PathBuf> {
    fs::read_dir(env.root.join("layers"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .map(|e| e.path())
        .collect()
}

/// Is `pid` a live process (not a zombie)?
fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// `stepctr rm NAME` succeeds (within a time limit: a hang is a failure, not a stuck test).
fn rm_ok(env: &Env, name: &str) {
    let out = output_within(&mut env.cmd(&["-q", "rm", name]), LIMIT)
        .unwrap_or_else(|e| panic!("stepctr rm {name}: {e}"));
    assert!(
        out.status.success(),
        "stepctr rm {name} failed ({:?}):\n{}",
        out.status,
        stderr(&out)
    );
}

/// Run `cmd` to completion with output captured in files (not pipes: a leftover grandchild
/// holding a pipe open must not hang the test). Kills it after `limit`.
fn output_within(cmd: &mut Command, limit: Duration) -> Result<Output, String> {
    let out = tempfile::tempfile().map_err(|e| e.to_string())?;
    let err = tempfile::tempfile().map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(err.try_clone().map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "still running after {limit:?}: killed\nstderr:\n{}",
                read_all(err)
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: read_all(out).into_bytes(),
        stderr: read_all(err).into_bytes(),
    })
}

fn read_all(mut f: fs::File) -> String {
    let mut s = String::new();
    let _ = f.rewind();
    let _ = f.read_to_string(&mut s);
    s
}

/// `all` without --rm leaves a stopped container; `rm` removes all of it.
fn rm_after_all_leaves_nothing() {
    let env = Env::new();
    let name = unique("rm-after-all");
    env.ok(&[
        "-q",
        "all",
        "--name",
        &name,
        "--memory",
        "64M",
        "--pids-limit",
        "32",
        "--",
        "true",
    ]);
    let state = env.state(&name);
    assert_eq!(state["exit_code"], 0, "the container ran: {state}");
    assert!(!cgroup_dirs_named(&name).is_empty(), "all made no cgroup");
    let pids = pids_of(&state);
    rm_ok(&env, &name);
    assert_no_leaks_with(&env, &name, &pids);
}

/// A container stopped cleanly after any stage is removed completely.
fn rm_after_each_stage_leaves_nothing() {
    let env = Env::new();
    for last in [Stage::Load, Stage::Cgroup, Stage::Ns, Stage::Fs] {
        let name = unique(&format!("rm-after-{}", last.name()));
        for s in [Stage::Load, Stage::Cgroup, Stage::Ns, Stage::Fs] {
            if s <= last {
                let a = s.args(&name);
                env.ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
            }
        }
        let pids = pids_of(&env.state(&name));
        rm_ok(&env, &name);
        assert_no_leaks_with(&env, &name, &pids);
    }
}

/// rm is idempotent: the second one says there is no such container, exits non-zero, and
/// does not panic.
fn rm_twice_says_no_container() {
    let env = Env::new();
    let name = unique("rm-twice");
    env.ok(&["-q", "load", &name]);
    env.ok(&["-q", "cgroup", &name]);
    rm_ok(&env, &name);
    assert_no_leaks(&env, &name);
    let out = env.run(&["-q", "rm", &name]);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "second rm: {:?}\n{err}",
        out.status
    );
    assert!(
        err.contains(&format!("no container named {name}")),
        "second rm should say there is no such container:\n{err}"
    );
    assert!(!err.contains("panicked"), "second rm panicked:\n{err}");
    assert_eq!(err.trim().lines().count(), 1, "one clear line:\n{err}");
    assert_no_leaks(&env, &name);
}

/// rm while the container runs: PID 1 is killed, everything is removed, and the stepctr that
/// waited for PID 1 ends with 128+SIGKILL.
fn rm_of_running_container_kills_it() {
    let env = Env::new();
    let name = unique("rm-running");
    let log = tempfile::tempfile().unwrap();
    let bg = env
        .cmd(&["-q", "all", "--name", &name, "--", "sleep", "1000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.try_clone().unwrap())
        .spawn()
        .expect("spawn stepctr all");
    // Never leave it running (and holding the container) when the test fails half-way.
    let mut bg = KillOnDrop(bg);
    // Wait until PID 1 runs `sleep`.
    let deadline = Instant::now() + LIMIT;
    let pid1 = loop {
        let pid = fs::read(env.container_dir(&name).join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|s| s["pid"].as_i64())
            .map(|p| p as i32);
        if let Some(p) = pid {
            if fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep") {
                break p;
            }
        }
        if let Ok(Some(status)) = bg.0.try_wait() {
            panic!("stepctr all ended early ({status:?}):\n{}", read_all(log));
        }
        assert!(
            Instant::now() < deadline,
            "the container never started:\n{}",
            read_all(log.try_clone().unwrap())
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let pids = pids_of(&env.state(&name));
    // Plain `rm` refuses a running container (as docker's does); `rm -f` kills it.
    let refused = env.run(&["-q", "rm", &name]);
    assert!(
        !refused.status.success() && stderr(&refused).contains("rm -f"),
        "plain rm of a running container must refuse:\n{}",
        stderr(&refused)
    );
    let rm = output_within(
        &mut env.cmd(&["-q", "rm", "-f", &name]),
        Duration::from_secs(20),
    );
    let rm = match rm {
        Ok(o) => o,
        Err(e) => {
            // Clean up before failing: end PID 1, so `all` ends and releases the container.
            // SAFETY: signalling the pid we saw running `sleep` in this container.
            unsafe { libc::kill(pid1, libc::SIGKILL) };
            let _ = bg.0.wait();
            panic!("`stepctr rm` of a running container did not finish: it waits for the lock that the running `all` holds until PID 1 exits ({e})");
        }
    };
    assert!(
        rm.status.success(),
        "rm of a running container failed ({:?}):\n{}",
        rm.status,
        stderr(&rm)
    );
    let status = wait_within(&mut bg.0, Duration::from_secs(20));
    assert_eq!(
        status.code(),
        Some(128 + libc::SIGKILL),
        "the background stepctr: {status:?}\n{}",
        read_all(log)
    );
    let mut all = pids.clone();
    all.extend([pid1, bg.0.id() as i32]);
    assert_no_leaks_with(&env, &name, &all);
}

fn wait_within(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let s = child.wait().unwrap();
            panic!(
                "process {} still running after {limit:?} (killed: {s:?})",
                child.id()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `reset` removes every container, whatever stage it reached, also a half-done one.
fn reset_removes_every_container() {
    let env = Env::new();
    let mut names = Vec::new();
    for last in [Stage::Load, Stage::Cgroup, Stage::Ns, Stage::Fs] {
        let name = unique(&format!("reset-{}", last.name()));
        for s in [Stage::Load, Stage::Cgroup, Stage::Ns, Stage::Fs] {
            if s <= last {
                let a = s.args(&name);
                env.ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
            }
        }
        names.push(name);
    }
    let done = unique("reset-all");
    env.ok(&["-q", "all", "--name", &done, "--", "true"]);
    names.push(done);
    let half = unique("reset-killed");
    for s in [Stage::Load, Stage::Cgroup] {
        let a = s.args(&half);
        env.ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    }
    run_killed(
        &env,
        &kill_point(&env, Stage::Ns, Via::Alone, &half),
        &Stage::Ns.args(&half),
    );
    names.push(half);

    let mut pids = Vec::new();
    for n in &names {
        pids.extend(pids_of(&env.state(n)));
    }
    let out = output_within(&mut env.cmd(&["reset"]), LIMIT)
        .unwrap_or_else(|e| panic!("stepctr reset: {e}"));
    assert!(
        out.status.success(),
        "reset failed ({:?}):\n{}",
        out.status,
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(&format!("removed {} container(s)", names.len())),
        "reset should say how many it removed:\n{}",
        stderr(&out)
    );
    for n in &names {
        assert_no_leaks_with(&env, n, &pids);
    }
    let left: Vec<_> = fs::read_dir(&env.run)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "reset left {left:?}");
    // And with nothing to remove it still succeeds.
    let out = env.run(&["reset"]);
    assert!(
        out.status.success(),
        "reset of nothing: {:?}\n{}",
        out.status,
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("removed 0 container(s)"),
        "{}",
        stderr(&out)
    );
}

thread_local! {
    static QUIET_PANICS: Cell<bool> = const { Cell::new(false) };
}

/// Panics that a test provokes on purpose (in [`expect_leak`]) are not printed.
fn install_quiet_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !QUIET_PANICS.with(Cell::get) {
            default(info);
        }
    }));
}

/// Run the leak check `f` and insist that it fails with a message containing `want`.
fn expect_leak(what: &str, want: &str, f: impl FnOnce()) {
    QUIET_PANICS.with(|q| q.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET_PANICS.with(|q| q.set(false));
    let payload = match r {
        Ok(()) => panic!("the leak checker missed {what}"),
        Err(p) => p,
    };
    let msg = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(
        msg.contains(want),
        "the leak checker failed for {what}, but said: {msg}"
    );
}

/// The leak checker itself finds each kind of leak (so a passing test above means something).
fn leak_checker_can_fail() {
    let env = Env::new();

    // A state directory.
    let name = unique("fake-dir");
    let dir = env.container_dir(&name);
    fs::create_dir_all(&dir).unwrap();
    expect_leak("a state directory", "state directory", || {
        assert_no_leaks(&env, &name)
    });
    fs::remove_dir(&dir).unwrap();
    assert_no_leaks(&env, &name);

    // A mount inside the container's directory.
    let name = unique("fake-mount");
    let mnt = env.container_dir(&name).join("rootfs");
    fs::create_dir_all(&mnt).unwrap();
    mount_tmpfs(&mnt);
    expect_leak("a mount", "mounts of", || assert_no_leaks(&env, &name));
    umount(&mnt);
    fs::remove_dir_all(env.container_dir(&name)).unwrap();
    assert_no_leaks(&env, &name);

    // A cgroup named like the container.
    let name = unique("fake-cgroup");
    let hierarchy = if cgroup_v2() {
        PathBuf::from("/sys/fs/cgroup")
    } else if Path::new("/sys/fs/cgroup/pids").is_dir() {
        PathBuf::from("/sys/fs/cgroup/pids")
    } else {
        PathBuf::from("/sys/fs/cgroup/memory")
    };
    let parent = hierarchy.join("stepctr");
    let cg = parent.join(&name);
    let made_parent = fs::create_dir(&parent).is_ok();
    fs::create_dir_all(&cg).unwrap_or_else(|e| panic!("mkdir {}: {e}", cg.display()));
    expect_leak("a cgroup", "cgroups of", || assert_no_leaks(&env, &name));
    fs::remove_dir(&cg).unwrap();
    if made_parent {
        // Only if no container uses it meanwhile (EBUSY then).
        let _ = fs::remove_dir(&parent);
    }
    assert_no_leaks(&env, &name);

    // A process whose command line names the container, and a process given by pid.
    let name = unique("fake-proc");
    let child = Command::new("sleep")
        .arg0(&name)
        .arg("1000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sleep");
    let mut child = KillOnDrop(child);
    let pid = child.0.id() as i32;
    // Until the exec, the child's command line is still ours.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(name.as_bytes())) {
        assert!(Instant::now() < deadline, "sleep never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    expect_leak("a process naming the container", "processes of", || {
        assert_no_leaks(&env, &name)
    });
    let other = unique("fake-pid");
    expect_leak("a process by pid", "still runs", || {
        assert_no_leaks_with(&env, &other, &[pid])
    });
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert_no_leaks_with(&env, &name, &[pid]);
}

/// A child process that is killed and reaped even when the test fails half-way.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mount_tmpfs(at: &Path) {
    let target = std::ffi::CString::new(at.to_str().unwrap()).unwrap();
    // SAFETY: plain mount(2) with valid C strings; the test binary is in a private mount namespace.
    let r = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            c"size=64k".as_ptr().cast(),
        )
    };
    assert_eq!(
        r,
        0,
        "mount tmpfs on {}: {}",
        at.display(),
        std::io::Error::last_os_error()
    );
}

fn umount(at: &Path) {
    let target = std::ffi::CString::new(at.to_str().unwrap()).unwrap();
    // SAFETY: umount2 of the mount we made.
    let r = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    assert_eq!(
        r,
        0,
        "umount {}: {}",
        at.display(),
        std::io::Error::last_os_error()
    );
}
