//! Promise 1, checked against the kernel's own witness: every call stepctr narrates appears in
//! `strace -f` of the same command, in the same order, with the same name, key arguments and
//! result.
//!
//! Each traced command runs as
//! `strace -f -qq -v -y -s 65535 -o TRACE stepctr --trace-file NARR ARGS...`
//! and every call line of NARR must be found in TRACE:
//! - in the same process: a line's process is its `[pid N]` prefix, or stepctr's own process
//!   (the first pid in TRACE) when it has none;
//! - in order *within that process*: each narrated call is searched after the previous match
//!   of the same pid. Order across processes is not checked: `strace -f` interleaves
//!   concurrent processes in whatever order it happens to see their stops, so only the order
//!   within one process is a fact;
//! - with the same name (`clone` may be strace's `clone`, `clone3`, `fork` or `vfork`,
//!   `renameat` may be `renameat2`, `statfs` may be `statfs64`);
//! - with the same key arguments: every quoted string (a string cut as `"abc"...` by the short
//!   narration matches by prefix), every symbolic constant (`MS_BIND`, `SIOCSIFFLAGS`,
//!   `SIGKILL`...), every number (by value: `0o755` and strace's `0755` are both 493) and
//!   every fd annotation (`5</sys/fs/cgroup/...>`, as strace's `-y` prints it);
//! - with the same result: the same return value, or for a failure `-1` and the same errno.
//!
//! Adding a command to the test is one line in [`STEPS`].

mod common;

use common::{assert_no_leaks, unique, Env};
use regex::Regex;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What to do with one command of a scenario.
#[derive(Debug, Clone, Copy)]
enum Run {
    /// Run it under strace and check its narration; it must exit with this code.
    Trace(i32),
    /// Run it quietly, untraced, to set the scene; it must succeed.
    Setup,
    /// `Trace(code)` of a command that runs the scenario's container attached, with a second
    /// actor: once that container's PID 1 has set what it does on signal `sig` (its shell's
    /// `trap` ran), the test sends `sig` to stepctr or to the container's shim, as a user's
    /// `kill` or a supervisor would, and the command goes on under strace (which follows
    /// the signal in every process it traces).
    TraceSignal(i32, i32, To),
    /// `Trace(code)` of an OCI `create`: once the container is created, `stepctr start`
    /// (untraced) lets its PID 1 exec, and strace follows PID 1 (reparented, but still
    /// traced) to its end. `code` is create's exit code.
    TraceCreate(i32),
    /// No command (the line's arguments are empty): wait until the scenario's container's
    /// PID 1 has set what it does on this signal, so a signal sent next finds its `trap`.
    Handles(i32),
    /// No command: wait until the scenario's container has stopped and the shim has recorded
    /// this exit code.
    Exited(i32),
}
use Run::{Exited, Handles, Setup, Trace, TraceCreate, TraceSignal};

/// Who gets the signal of a [`Run::TraceSignal`].
#[derive(Debug, Clone, Copy)]
enum To {
    /// The attached stepctr, as Ctrl-C or `kill PID` of it would (it forwards to PID 1).
    Stepctr,
    /// The container's shim, as a supervisor would (it forwards to PID 1).
    Shim,
}
use To::{Shim, Stepctr};

/// A PID 1 that ends with code 3 on SIGTERM, and one that ignores SIGTERM (`stop` escalates).
const TRAP_TERM: &str = "trap \"exit 3\" TERM; while :; do sleep 1; done";
const IGNORE_TERM: &str = "trap \"\" TERM; while :; do sleep 1; done";
/// A PID 1 that ends with code 5 on SIGINT (Ctrl-C).
const TRAP_INT: &str = "trap \"exit 5\" INT; while :; do sleep 1; done";
const TERM: i32 = libc::SIGTERM;
const INT: i32 = libc::SIGINT;

/// The scenarios, one command per line. Lines with the same scenario name run in order in one
/// environment (own run directory, shared image store) and make one test; `{name}` is that
/// scenario's container, `{name}-b` a second one. Every container named is checked for leaks
/// at the end, so each scenario must remove what it creates. `{dir}` is a scratch directory of
/// the scenario (for volumes). A scenario whose name starts with
/// `fresh-` gets an image store of its own (so `pull` builds and `load` unpacks for real).
#[rustfmt::skip]
const STEPS: &[(&str, Run, &[&str])] = &[
    ("all",            Trace(0), &["all", "--name", "{name}", "--rm", "--memory", "64M", "--pids-limit", "32", "--", "sh", "-c", "echo hi"]),
    ("all-verbose",    Trace(0), &["-v", "all", "--name", "{name}", "--rm", "--", "true"]),
    ("all-exit-code",  Trace(3), &["all", "--name", "{name}", "--rm", "--", "sh", "-c", "exit 3"]),
    ("all-exec-fails", Trace(1), &["all", "--name", "{name}", "--rm", "--", "/bin/no-such-program"]),
    ("stages",         Trace(0), &["pull"]),
    ("stages",         Trace(0), &["load", "{name}"]),
    ("stages",         Trace(0), &["cgroup", "{name}", "--memory", "64M"]),
    ("stages",         Trace(0), &["ns", "{name}"]),
    ("stages",         Trace(0), &["fs", "{name}"]),
    ("stages",         Trace(0), &["start", "{name}", "--", "true"]),
    ("stages",         Trace(0), &["rm", "{name}"]),
    ("stages-limits",  Trace(0), &["load", "{name}"]),
    ("stages-limits",  Trace(0), &["cgroup", "{name}", "--memory", "256M", "--pids-limit", "64"]),
    ("stages-limits",  Trace(0), &["ns", "{name}"]),
    ("stages-limits",  Trace(0), &["fs", "{name}"]),
    ("stages-limits",  Trace(0), &["start", "{name}", "--", "sh", "-c", "echo hello from PID $$"]),
    ("stages-limits",  Trace(0), &["-v", "rm", "{name}"]),
    ("fresh-store",    Trace(0), &["pull"]),
    ("fresh-store",    Trace(0), &["load", "{name}"]),
    ("fresh-store",    Trace(0), &["rm", "{name}"]),
    ("fresh-load-v",   Setup,    &["pull"]),
    ("fresh-load-v",   Trace(0), &["-v", "load", "{name}"]),
    ("fresh-load-v",   Trace(0), &["-v", "load", "{name}-b", "--flatten"]),
    ("fresh-load-v",   Setup,    &["rm", "{name}", "{name}-b"]),
    ("rm-half-done",   Setup,    &["load", "{name}"]),
    ("rm-half-done",   Setup,    &["cgroup", "{name}", "--pids-limit", "8"]),
    ("rm-half-done",   Setup,    &["ns", "{name}"]),
    ("rm-half-done",   Trace(0), &["rm", "{name}"]),
    ("cgroup-cpus",    Setup,    &["load", "{name}"]),
    ("cgroup-cpus",    Trace(0), &["cgroup", "{name}", "--cpus", "0.5", "--pids-limit", "16"]),
    ("cgroup-cpus",    Setup,    &["rm", "{name}"]),
    ("all-oom",        Trace(137), &["all", "--name", "{name}", "--rm", "--memory", "64M", "--", "sh", "-c", "a=aaaaaaaaaaaaaaaa; while :; do a=$a$a; done"]),
    ("reset",          Setup,    &["all", "--name", "{name}", "--", "true"]),
    ("reset",          Setup,    &["load", "{name}-b"]),
    ("reset",          Setup,    &["cgroup", "{name}-b", "--memory", "64M"]),
    ("reset",          Trace(0), &["reset"]),
    ("volumes",        Setup,    &["load", "{name}"]),
    ("volumes",        Setup,    &["cgroup", "{name}"]),
    ("volumes",        Setup,    &["ns", "{name}"]),
    ("volumes",        Trace(0), &["fs", "{name}", "-v", "{dir}/data:/data", "-v", "{dir}/ro:/srv/ro:ro"]),
    ("volumes",        Trace(0), &["start", "{name}", "--", "sh", "-c", "echo hi > /data/f"]),
    ("volumes",        Trace(0), &["rm", "{name}"]),
    ("volumes-all",    Trace(0), &["-v", "all", "--name", "{name}", "--rm", "-v", "{dir}/x:/x:ro", "--", "ls", "/x"]),
    ("volumes-ro-sub", Trace(0), &["all", "--name", "{name}", "--rm", "-v", "/sys/fs/cgroup:/hostcg:ro", "--", "ls", "/hostcg"]),
    ("run",            Trace(3), &["run", "--rm", "--name", "{name}", "localhost/stepctr-busybox", "sh", "-c", "exit 3"]),
    ("system-paths",   Trace(0), &["-v", "run", "--rm", "--name", "{name}", "-w", "/proc/self/cwd", "localhost/stepctr-busybox", "ls", "/proc/self/fd"]),
    ("start-detached", Setup,    &["load", "{name}"]),
    ("start-detached", Setup,    &["cgroup", "{name}"]),
    ("start-detached", Setup,    &["ns", "{name}"]),
    ("start-detached", Setup,    &["fs", "{name}"]),
    ("start-detached", Trace(0), &["start", "-d", "{name}", "--", "sleep", "0.2"]),
    ("start-detached", Trace(0), &["logs", "{name}"]),
    ("start-detached", Trace(0), &["rm", "{name}"]),
    ("detached-tty",   Trace(0), &["run", "-dit", "--name", "{name}", "localhost/stepctr-busybox", "sh", "-c", "sleep 0.3"]),
    ("detached-tty",   Exited(0), &[]),
    ("detached-tty",   Trace(0), &["rm", "{name}"]),
    ("attach",         Setup,    &["run", "-dit", "--name", "{name}", "localhost/stepctr-busybox", "sh", "-c", "sleep 1; exit 4"]),
    ("attach",         Trace(4), &["attach", "{name}"]),
    ("attach",         Trace(0), &["rm", "{name}"]),
    ("lifecycle",      Setup,    &["run", "-d", "--name", "{name}", "localhost/stepctr-busybox", "sleep", "100"]),
    ("lifecycle",      Trace(0), &["kill", "-s", "TERM", "{name}"]),
    ("lifecycle",      Trace(1), &["rm", "{name}"]),
    ("lifecycle",      Trace(0), &["stop", "-t", "0.2", "{name}"]),
    ("lifecycle",      Trace(0), &["logs", "{name}"]),
    ("lifecycle",      Trace(0), &["rm", "{name}"]),
    ("lifecycle-kill", Setup,    &["run", "-d", "--name", "{name}", "localhost/stepctr-busybox", "sleep", "100"]),
    ("lifecycle-kill", Trace(0), &["kill", "{name}"]),
    ("lifecycle-kill", Trace(0), &["rm", "-f", "{name}"]),
    ("exec",           Setup,    &["run", "-d", "--name", "{name}", "localhost/stepctr-busybox", "sleep", "100"]),
    ("exec",           Trace(0), &["exec", "{name}", "sh", "-c", "echo hi"]),
    ("exec",           Trace(3), &["exec", "-u", "nobody", "-w", "/tmp", "{name}", "sh", "-c", "exit 3"]),
    ("exec",           Trace(1), &["exec", "{name}", "/no/such/program"]),
    ("exec",           Setup,    &["rm", "-f", "{name}"]),
    ("run-user",       Trace(0), &["run", "--rm", "-u", "nobody", "--name", "{name}", "localhost/stepctr-busybox", "id"]),
    ("run-user",       Trace(1), &["run", "--rm", "-u", "1000:no-such-group", "--name", "{name}", "localhost/stepctr-busybox", "id"]),
    ("seccomp",        Trace(0), &["-v", "all", "--name", "{name}", "--rm", "--cap-add", "SYS_TIME", "--", "true"]),
    ("seccomp",        Trace(0), &["run", "--rm", "--name", "{name}", "--security-opt", "seccomp=unconfined", "localhost/stepctr-busybox", "true"]),
    ("caps",           Trace(0), &["all", "--name", "{name}", "--rm", "--cap-drop", "CHOWN", "--cap-add", "NET_ADMIN", "--", "true"]),
    ("caps",           Trace(0), &["run", "--rm", "--name", "{name}", "-u", "nobody", "--security-opt", "no-new-privileges=false", "localhost/stepctr-busybox", "true"]),
    ("run-tty",        Trace(4), &["run", "--rm", "-t", "--name", "{name}", "localhost/stepctr-busybox", "sh", "-c", "tty; exit 4"]),
    ("exec-tty",       Setup,    &["run", "-d", "--name", "{name}", "localhost/stepctr-busybox", "sleep", "100"]),
    ("exec-tty",       Trace(0), &["exec", "-it", "{name}", "tty"]),
    ("exec-tty",       Setup,    &["rm", "-f", "{name}"]),
    ("kill-trapped",   Setup,    &["run", "-d", "--name", "{name}", "localhost/stepctr-busybox", "sh", "-c", TRAP_TERM]),
    ("kill-trapped",   Handles(TERM), &[]),
    ("kill-trapped",   Trace(0), &["kill", "-s", "TERM", "{name}"]),
    ("kill-trapped",   Exited(3), &[]),
    ("kill-trapped",   Trace(0), &["rm", "{name}"]),
    ("stop-escalates", Setup,    &["run", "-d", "--name", "{name}", "localhost/stepctr-busybox", "sh", "-c", IGNORE_TERM]),
    ("stop-escalates", Handles(TERM), &[]),
    ("stop-escalates", Trace(0), &["stop", "-t", "1", "{name}"]),
    ("stop-escalates", Exited(137), &[]),
    ("stop-escalates", Trace(0), &["rm", "{name}"]),
    ("forward-run",    TraceSignal(3, TERM, Stepctr), &["run", "--rm", "--name", "{name}", "localhost/stepctr-busybox", "sh", "-c", TRAP_TERM]),
    ("forward-shim",   TraceSignal(3, TERM, Shim), &["all", "--rm", "--name", "{name}", "--", "sh", "-c", TRAP_TERM]),
    ("userns",         Trace(0), &["all", "--rm", "--name", "{name}", "--userns=300000:65536", "-v", "{dir}/data:/data", "--", "id"]),
    ("userns-exec",    Setup,    &["run", "-d", "--userns", "--name", "{name}", "localhost/stepctr-busybox", "sleep", "100"]),
    ("userns-exec",    Trace(0), &["exec", "-u", "nobody", "{name}", "id"]),
    ("userns-exec",    Setup,    &["rm", "-f", "{name}"]),
    ("demo-isolation", Trace(0), &["demo", "isolation"]),
    ("demo-breakout",  Trace(0), &["-v", "demo", "breakout"]),
    ("oci",            Setup,    &["bundle", "localhost/stepctr-busybox", "{dir}"]),
    ("oci",            TraceCreate(0), &["-v", "create", "--bundle", "{dir}", "{name}"]),
    ("oci",            Trace(0), &["-v", "delete", "{name}"]),
    ("net-bridge",     Trace(0), &["all", "--rm", "--name", "{name}", "--network", "bridge", "--", "ip", "addr"]),
    ("net-bridge-two", Setup,    &["run", "-d", "--name", "{name}", "--network", "bridge", "localhost/stepctr-busybox", "sleep", "100"]),
    ("net-bridge-two", Trace(0), &["-v", "all", "--rm", "--name", "{name}-b", "--network", "bridge", "--", "ping", "-c", "1", "-W", "5", "10.88.0.1"]),
    ("net-bridge-two", Trace(0), &["rm", "-f", "{name}"]),
    ("net-publish",    Trace(0), &["all", "--rm", "--name", "{name}", "-p", "127.0.0.1:8083:80", "-p", "127.0.0.1:8083:53/udp", "--", "true"]),
    ("net-host",       Trace(0), &["all", "--rm", "--name", "{name}", "--network", "host", "--", "true"]),
    ("rootless-run",   Setup,    &["pull"]),
    ("rootless-run",   Trace(0), &["all", "--rm", "--name", "{name}", "--memory", "64M", "-v", "{dir}/data:/data", "--", "sh", "-c", "echo hi > /data/f"]),
    ("rootless-exec",  Setup,    &["run", "-d", "--name", "{name}", "localhost/stepctr-busybox", "sleep", "100"]),
    ("rootless-exec",  Trace(0), &["exec", "{name}", "id"]),
    ("rootless-exec",  Setup,    &["rm", "-f", "{name}"]),
    ("forward-tty",    TraceSignal(5, INT, Stepctr), &["run", "--rm", "-t", "--name", "{name}", "localhost/stepctr-busybox", "sh", "-c", TRAP_INT]),
];

fn main() {
    common::enter_private_mount_ns();
    let args = common::test_args();
    let root = common::is_root();
    let have_strace = Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    // Without root nothing here can run; without strace it must not pass silently.
    assert!(
        !root || have_strace,
        "strace is not installed: the fidelity tests need it (apt-get install strace)"
    );
    let skip = !root;
    let mut names: Vec<&'static str> = Vec::new();
    for (scenario, _, _) in STEPS {
        if !names.contains(scenario) {
            names.push(scenario);
        }
    }
    let mut trials: Vec<libtest_mimic::Trial> = names
        .into_iter()
        .map(|scenario| {
            libtest_mimic::Trial::test(format!("narration_matches_strace::{scenario}"), move || {
                run_scenario(scenario);
                Ok(())
            })
            .with_ignored_flag(skip)
        })
        .collect();
    let self_tests: [(&str, fn()); 3] = [
        (
            "checker::accepts_the_real_narration",
            checker_accepts_the_real_narration,
        ),
        (
            "checker::rejects_a_call_that_never_happened",
            checker_rejects_a_call_that_never_happened,
        ),
        (
            "checker::rejects_calls_out_of_order",
            checker_rejects_calls_out_of_order,
        ),
    ];
    for (name, f) in self_tests {
        trials.push(
            libtest_mimic::Trial::test(name, move || {
                f();
                Ok(())
            })
            .with_ignored_flag(skip),
        );
    }
    trials.push(libtest_mimic::Trial::test("checker::parses_lines", || {
        checker_parses_lines();
        Ok(())
    }));
    common::run_trials(&args, trials)
}

// ---------------------------------------------------------------------------------------------
// Running the scenarios

/// The narration and strace output of one traced command.
struct Traced {
    narration: String,
    trace: String,
    exit: Option<i32>,
    stderr: String,
}

/// How long one traced command may take before it counts as hung.
const TIMEOUT: Duration = Duration::from_secs(120);

/// `stepctr ARGS` under `strace -f`, narration to a file; both outputs are read back.
/// A command that hangs is killed (with every process strace saw it make) and reported.
fn traced(env: &Env, dir: &Path, tag: &str, args: &[&str]) -> Traced {
    traced_with(env, dir, tag, args, &mut || Ok(()))
}

/// [`traced`], with `meanwhile` run once the command has started; if it fails, the command
/// is given 5 s more before it counts as hung, and the failure is reported in `stderr`.
fn traced_with(
    env: &Env,
    dir: &Path,
    tag: &str,
    args: &[&str],
    meanwhile: &mut dyn FnMut() -> Result<(), String>,
) -> Traced {
    let narr = dir.join(format!("{tag}.narr"));
    let trace = dir.join(format!("{tag}.trace"));
    let errors = dir.join(format!("{tag}.stderr"));
    // The command as the Env runs it (rootless: through setpriv as its user), under strace
    // as root.
    let narr_arg = narr.to_string_lossy().into_owned();
    let inner = env.cmd(&[&["--trace-file", narr_arg.as_str()], args].concat());
    let mut strace = Command::new("strace");
    strace
        .args(["-f", "-qq", "-v", "-y", "-s", "65535", "-o"])
        .arg(&trace)
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            strace.env(k, v);
        }
    }
    let mut child = strace
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errors).expect("stderr file"))
        .spawn()
        .expect("run strace (is it installed?)");
    let mut deadline = Instant::now() + TIMEOUT;
    let aside = meanwhile();
    if aside.is_err() {
        deadline = deadline.min(Instant::now() + Duration::from_secs(5));
    }
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for strace") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    let mut t = Traced {
        narration: read(&narr),
        trace: read(&trace),
        // strace exits with the traced command's exit code.
        exit: status.and_then(|s| s.code()),
        stderr: read(&errors),
    };
    if status.is_none() {
        // Hung: kill what we started (stepctr and its children, as strace saw them), then strace.
        let (_, calls) = parse_strace(&t.trace);
        let pids: BTreeSet<i32> = calls.iter().map(|c| c.pid).collect();
        for pid in pids {
            // SAFETY: plain kill(2) of a process this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = child.kill();
        let _ = child.wait();
        t.stderr = format!(
            "HUNG: `stepctr {}` did not finish within {TIMEOUT:?} and was killed; narration so far:\n{}\n{}",
            args.join(" "),
            t.narration,
            t.stderr
        );
    }
    if let Err(e) = aside {
        t.stderr = format!("{e}\n{}", t.stderr);
    }
    t
}

/// The scenario container's state.json, if it is there and complete.
fn state(env: &Env, name: &str) -> Option<serde_json::Value> {
    let text = std::fs::read(env.container_dir(name).join("state.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Wait at most 30 s (under strace, `all` takes a while) for `what`.
fn await_that<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> Result<T, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("waited 30 s in vain for {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Has process `pid` caught or ignored `sig` (/proc/PID/status SigCgt, SigIgn)?
fn handles(pid: i64, sig: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().any(|l| {
        let mask = l
            .strip_prefix("SigCgt:")
            .or_else(|| l.strip_prefix("SigIgn:"));
        mask.and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .is_some_and(|m| m & (1 << (sig - 1)) != 0)
    })
}

/// PID 1 of container `name`, once it runs and has set what it does on `sig`; with its shim.
fn pid1_handling(env: &Env, name: &str, sig: i32) -> Result<(i64, i64), String> {
    await_that(
        &format!("PID 1 of {name} to set what it does on signal {sig}"),
        || {
            let st = state(env, name)?;
            let pid = st["pid"].as_i64()?;
            let shim = st["shim"][0].as_i64()?;
            handles(pid, sig).then_some((pid, shim))
        },
    )
}

/// The parent of process `pid` (/proc/PID/stat).
fn parent(pid: i64) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()
}

/// The second actor of [`Run::TraceSignal`]: `sig` to stepctr or the shim once PID 1 is ready.
/// Returns the forwarding call it expects in the narration: the process that makes it (`None`:
/// stepctr's own), and the call itself, `kill(PID1, SIGNAME)`.
fn send_when_ready(
    env: &Env,
    name: &str,
    sig: i32,
    to: To,
) -> Result<(Option<i32>, String), String> {
    let (pid1, shim) = pid1_handling(env, name, sig)?;
    let target = match to {
        Shim => shim,
        Stepctr => parent(shim).ok_or("the shim has no parent (stepctr) in /proc")?,
    };
    // SAFETY: plain kill(2) of a process this test started.
    if unsafe { libc::kill(target as i32, sig) } != 0 {
        return Err(format!(
            "kill({target}, {sig}): {}",
            std::io::Error::last_os_error()
        ));
    }
    let who = match to {
        Shim => Some(shim as i32),
        Stepctr => None,
    };
    Ok((who, format!("kill({pid1}, {})", signal_name(sig))))
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => "?",
    }
}

/// Keep the outputs of a failed check where a human can read them.
fn keep(tag: &str, t: &Traced) -> String {
    let base = std::env::temp_dir().join(format!("stepctr-fidelity-{tag}-{}", std::process::id()));
    let _ = std::fs::write(base.with_extension("narr"), &t.narration);
    let _ = std::fs::write(base.with_extension("trace"), &t.trace);
    format!("(kept as {}.narr and .trace)", base.display())
}

fn run_scenario(scenario: &str) {
    let env = if scenario.starts_with("fresh-") {
        Env::fresh()
    } else if scenario.starts_with("rootless-") {
        Env::rootless()
    } else {
        Env::new()
    };
    let short: String = scenario
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(6)
        .collect();
    let name = unique(&format!("fid-{short}"));
    let second = format!("{name}-b");
    let dir = tempfile::tempdir().expect("temp dir");
    if let Some(u) = &env.user {
        // Rootless: the user writes the narration and the volumes' data here.
        std::os::unix::fs::chown(dir.path(), Some(u.uid), Some(u.gid)).expect("chown");
    }
    let mut failures = Vec::new();
    let mut calls = 0;
    let mut report = String::new();
    let steps = STEPS.iter().filter(|(s, _, _)| *s == scenario);
    for (i, (_, run, args)) in steps.enumerate() {
        let scratch = dir.path().join("scratch").to_string_lossy().into_owned();
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{name}", &name).replace("{dir}", &scratch))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, t, tag) = match *run {
            Setup => {
                let mut quiet = vec!["-q"];
                quiet.extend(&args);
                env.ok(&quiet);
                continue;
            }
            Handles(sig) => {
                if let Err(e) = pid1_handling(&env, &name, sig) {
                    failures.push(e);
                }
                continue;
            }
            Exited(code) => {
                let what = format!("{name} to stop with exit code {code}");
                let seen = await_that(&what, || state(&env, &name)?["exit_code"].as_i64());
                match seen {
                    Ok(c) if c == i64::from(code) => {}
                    Ok(c) => {
                        failures.push(format!("{name} stopped with exit code {c}, not {code}"))
                    }
                    Err(e) => failures.push(e),
                }
                continue;
            }
            Trace(code) => {
                let tag = format!("{scenario}-{i}");
                (code, traced(&env, dir.path(), &tag, &args), tag)
            }
            TraceCreate(code) => {
                let tag = format!("{scenario}-{i}");
                let t = traced_with(&env, dir.path(), &tag, &args, &mut || {
                    await_that(&format!("{name} to be created"), || {
                        let out = env.run(&["state", &name]);
                        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
                        (doc["status"] == "created").then_some(())
                    })?;
                    let out = env.run(&["-q", "start", &name]);
                    if out.status.success() {
                        Ok(())
                    } else {
                        Err(format!(
                            "start {name}: {}",
                            String::from_utf8_lossy(&out.stderr)
                        ))
                    }
                });
                (code, t, tag)
            }
            TraceSignal(code, sig, to) => {
                let tag = format!("{scenario}-{i}");
                let mut forward = None;
                let t = traced_with(&env, dir.path(), &tag, &args, &mut || {
                    forward = Some(send_when_ready(&env, &name, sig, to)?);
                    Ok(())
                });
                // The forwarding is narrated, by the process that forwarded (and `check`
                // below finds it in that process's calls in strace's output).
                if let Some((who, call)) = forward {
                    let narrated = parse_narration(&t.narration).unwrap_or_default();
                    let found = narrated.iter().any(|n| {
                        n.pid == who && format!("{}({})", n.name, n.args) == call && n.ret == "0"
                    });
                    if !found {
                        let by = who.map_or("stepctr".into(), |p| format!("pid {p}"));
                        failures.push(format!(
                            "`stepctr {}`: no narrated `{call} = 0` by {by} {}",
                            args.join(" "),
                            keep(&tag, &t)
                        ));
                    }
                }
                (code, t, tag)
            }
        };
        if t.exit != Some(code) {
            failures.push(format!(
                "`stepctr {}` exited with {:?}, expected {code}; stderr:\n{}",
                args.join(" "),
                t.exit,
                t.stderr
            ));
        }
        match check(&t.narration, &t.trace) {
            Ok(n) => {
                calls += n;
                let _ = writeln!(
                    report,
                    "  {n:3} narrated calls found in strace: stepctr {}",
                    args.join(" ")
                );
            }
            Err(e) => failures.push(format!(
                "`stepctr {}`: the narration does not match strace {}:\n{e}",
                args.join(" "),
                keep(&tag, &t)
            )),
        }
    }
    eprint!("{scenario}:\n{report}");
    if calls == 0 && failures.is_empty() {
        failures.push(format!(
            "scenario {scenario} narrated no call at all: nothing was checked"
        ));
    }
    for n in [&name, &second] {
        if env.container_dir(n).exists() {
            failures.push(format!("scenario {scenario} left container {n} behind"));
            let _ = env.run(&["-q", "rm", n]);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_no_leaks(&env, &name);
    assert_no_leaks(&env, &second);
}

// ---------------------------------------------------------------------------------------------
// The checker

/// One call line of the narration.
#[derive(Debug, Clone)]
struct Narrated {
    line_no: usize,
    line: String,
    /// `[pid N]`; `None` for stepctr's own process.
    pid: Option<i32>,
    name: String,
    args: String,
    ret: String,
}

/// One call of strace's output (an `<unfinished ...>` call joined with its `resumed` part).
#[derive(Debug, Clone)]
struct Syscall {
    line_no: usize,
    pid: i32,
    name: String,
    args: String,
    ret: String,
    /// The call as strace printed it, without the pid.
    text: String,
}

/// The line format of the narration, as the design describes it.
fn call_line_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"^(\[pid +(\d+)(, \d+ inside)?\] )?([a-z_0-9]+)\((.*)\) = (.*) <[0-9.]+>(  # .*)?$",
        )
        .unwrap()
    })
}

/// Index just past the `)` closing the argument list that starts at `s[0]` (just after the
/// call's `(`), skipping quoted strings and nested brackets. `None` if it never closes.
fn close_paren(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' if depth > 0 => depth -= 1,
            b')' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Parse the narration: call lines are returned; headers (`==>`), notes (`# `), evidence
/// (`    -> `), HTTP lines (`[http] `) and blank lines are skipped; anything else is an error (the format drifted).
fn parse_narration(text: &str) -> Result<Vec<Narrated>, String> {
    let head = Regex::new(r"^(\[pid +(\d+)(, \d+ inside)?\] )?([a-z_0-9]+)\(").unwrap();
    let tail = Regex::new(r"^\) = (.*?) <[0-9.]+>(  # .*)?$").unwrap();
    // Notes (`# ...`), with -v the /proc evidence after a call (`    -> ...`), and HTTP
    // exchanges (`[http] GET url -> 200 OK`), which are not system calls.
    let note = Regex::new(r"^(\[pid +\d+(, \d+ inside)?\] )?(# |    -> |\[http\] )").unwrap();
    let mut calls = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() || line.starts_with("==> ") || note.is_match(line) {
            continue;
        }
        let bad = || {
            format!("narration line {line_no} is neither a call, a header nor a note:\n  {line}")
        };
        if !call_line_re().is_match(line) {
            return Err(bad());
        }
        let h = head.captures(line).ok_or_else(bad)?;
        let start = h.get(0).unwrap().end();
        let end = start + close_paren(&line[start..]).ok_or_else(bad)?;
        let t = tail.captures(&line[end..]).ok_or_else(bad)?;
        calls.push(Narrated {
            line_no,
            line: line.to_string(),
            pid: h.get(2).map(|p| p.as_str().parse().unwrap()),
            name: h[4].to_string(),
            args: line[start..end].to_string(),
            ret: t[1].to_string(),
        });
    }
    Ok(calls)
}

/// Parse `strace -f -o` output: `PID name(args) = ret`, with split calls joined. Returns the
/// first pid (the traced command itself) and every call.
/// strace names a netlink message's type and flags only when it has found out which netlink
/// family the socket is (with sock_diag, in *its own* network namespace: a socket stepctr made
/// in a container's namespace stays unknown to it); else it prints the numbers,
/// `nlmsg_type=0x10 /* NLMSG_??? */, nlmsg_flags=NLM_F_REQUEST|NLM_F_ACK|0x600`. The values are
/// the same: name them as strace does for a NETLINK_ROUTE socket before comparing.
fn decode_netlink_headers(trace: &str) -> String {
    let re = Regex::new(
        r"nlmsg_type=0x([0-9a-f]+) /\* NLMSG_\?\?\? \*/, nlmsg_flags=(0|[A-Z_|]*?)\|?(0x[0-9a-f]+)?,",
    )
    .unwrap();
    re.replace_all(trace, |c: &regex::Captures<'_>| {
        let t = u16::from_str_radix(&c[1], 16).unwrap_or(0);
        let name = match t {
            16 => "RTM_NEWLINK",
            17 => "RTM_DELLINK",
            18 => "RTM_GETLINK",
            19 => "RTM_SETLINK",
            20 => "RTM_NEWADDR",
            21 => "RTM_DELADDR",
            22 => "RTM_GETADDR",
            24 => "RTM_NEWROUTE",
            25 => "RTM_DELROUTE",
            26 => "RTM_GETROUTE",
            _ => return c[0].to_string(),
        };
        let mut flags: Vec<String> = c[2]
            .split('|')
            .filter(|f| !f.is_empty() && *f != "0")
            .map(String::from)
            .collect();
        if let Some(rest) = c.get(3) {
            let bits = u16::from_str_radix(rest.as_str().trim_start_matches("0x"), 16).unwrap_or(0);
            let kind: &[(u16, &str)] = match t {
                16 | 20 | 24 => &[
                    (0x100, "NLM_F_REPLACE"),
                    (0x200, "NLM_F_EXCL"),
                    (0x400, "NLM_F_CREATE"),
                    (0x800, "NLM_F_APPEND"),
                ],
                17 | 21 | 25 => &[(0x100, "NLM_F_NONREC"), (0x200, "NLM_F_BULK")],
                _ => &[
                    (0x100, "NLM_F_ROOT"),
                    (0x200, "NLM_F_MATCH"),
                    (0x400, "NLM_F_ATOMIC"),
                ],
            };
            flags.extend(
                kind.iter()
                    .filter(|(b, _)| bits & b != 0)
                    .map(|(_, n)| n.to_string()),
            );
        }
        let flags = if flags.is_empty() {
            "0".to_string()
        } else {
            flags.join("|")
        };
        format!("nlmsg_type={name}, nlmsg_flags={flags},")
    })
    .into_owned()
}

fn parse_strace(text: &str) -> (i32, Vec<Syscall>) {
    let line_re = Regex::new(r"^(\d+) +(.*)$").unwrap();
    let resumed = Regex::new(r"^<\.\.\. ([a-z_0-9]+) resumed>(.*)$").unwrap();
    let head = Regex::new(r"^([a-z_0-9]+)\(").unwrap();
    let ret_re = Regex::new(r"^\)\s*= (.*)$").unwrap();
    let mut main_pid = 0;
    let mut calls: Vec<Syscall> = Vec::new();
    // pid -> (index in `calls` of its unfinished call, text so far)
    let mut pending: BTreeMap<i32, (usize, String)> = BTreeMap::new();
    let finish = |c: &mut Syscall, text: String| {
        if let Some(h) = head.captures(&text) {
            let start = h.get(0).unwrap().end();
            match close_paren(&text[start..]) {
                Some(end) => {
                    c.args = text[start..start + end].to_string();
                    c.ret = ret_re
                        .captures(&text[start + end..])
                        .map(|r| r[1].to_string())
                        .unwrap_or_default();
                }
                None => c.args = text[start..].to_string(),
            }
        }
        c.text = text;
    };
    for (i, line) in text.lines().enumerate() {
        let Some(m) = line_re.captures(line) else {
            continue;
        };
        let pid: i32 = m[1].parse().unwrap();
        if main_pid == 0 {
            main_pid = pid;
        }
        let rest = &m[2];
        if rest.starts_with("+++") || rest.starts_with("---") {
            continue;
        }
        if let Some(r) = resumed.captures(rest) {
            let (idx, so_far) = pending
                .remove(&pid)
                .unwrap_or_else(|| (usize::MAX, format!("{}(", &r[1])));
            let text = format!("{so_far}{}", &r[2]);
            if idx == usize::MAX {
                let mut c = Syscall {
                    line_no: i + 1,
                    pid,
                    name: r[1].to_string(),
                    args: String::new(),
                    ret: String::new(),
                    text: String::new(),
                };
                finish(&mut c, text);
                calls.push(c);
            } else {
                finish(&mut calls[idx], text);
            }
            continue;
        }
        let Some(h) = head.captures(rest) else {
            continue;
        };
        let mut c = Syscall {
            line_no: i + 1,
            pid,
            name: h[1].to_string(),
            args: String::new(),
            ret: String::new(),
            text: String::new(),
        };
        if let Some(partial) = rest.strip_suffix(" <unfinished ...>") {
            // Placed where the call began: within one process, calls never overlap.
            pending.insert(pid, (calls.len(), partial.to_string()));
            c.text = rest.to_string();
            c.args = partial[h.get(0).unwrap().end()..].to_string();
            c.ret = "?".into();
        } else {
            finish(&mut c, rest.to_string());
        }
        calls.push(c);
    }
    (main_pid, calls)
}

/// The key arguments of an argument list.
#[derive(Debug, Default, PartialEq)]
struct Keys {
    /// Quoted strings, raw: `"abc"`, or `"abc` for a string cut with `...` (a prefix).
    strings: Vec<String>,
    /// Symbolic constants: `MS_BIND`, `AT_FDCWD`, `SIGKILL`.
    idents: BTreeSet<String>,
    /// Numbers by value (hex `0x`, octal `0o` or leading `0`, decimal).
    numbers: BTreeSet<i128>,
    /// strace `-y` fd annotations: `5</sys/fs/cgroup/x>`.
    fds: BTreeSet<String>,
}

fn number(tok: &str) -> Option<i128> {
    let (neg, t) = match tok.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, tok),
    };
    let v = if let Some(h) = t.strip_prefix("0x") {
        i128::from_str_radix(h, 16).ok()?
    } else if let Some(o) = t.strip_prefix("0o") {
        i128::from_str_radix(o, 8).ok()?
    } else if t.len() > 1 && t.starts_with('0') {
        i128::from_str_radix(&t[1..], 8).ok()?
    } else {
        t.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

fn keys(args: &str) -> Keys {
    let b = args.as_bytes();
    let mut k = Keys::default();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' {
            let start = i;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            let end = (i + 1).min(b.len());
            if args[end..].starts_with("...") {
                k.strings.push(args[start..end - 1].to_string());
                i = end + 3;
            } else {
                k.strings.push(args[start..end].to_string());
                i = end;
            }
            continue;
        }
        if args[i..].starts_with("/*") {
            // A comment such as `/* 2 vars */`: a summary, not an argument.
            i = args[i..].find("*/").map_or(b.len(), |e| i + e + 2);
            continue;
        }
        if word(c) || (c == b'-' && i + 1 < b.len() && b[i + 1].is_ascii_digit()) {
            let start = i;
            i += 1;
            while i < b.len() && word(b[i]) {
                i += 1;
            }
            let tok = &args[start..i];
            // strace -y: `5</path>` after an fd, `AT_FDCWD</cwd>` after AT_FDCWD.
            let annotation = if i < b.len() && b[i] == b'<' {
                let e = args[i..].find('>').map_or(b.len(), |e| i + e + 1);
                let a = &args[i..e];
                i = e;
                Some(a)
            } else {
                None
            };
            if start > 0 && word(b[start - 1]) {
                continue;
            }
            // seccomp's BPF program: the narration shows its address (strace without -v),
            // strace -v decodes the instructions instead; the address is not a key.
            if args[..start].ends_with("filter=") && tok.starts_with("0x") {
                continue;
            }
            if tok.as_bytes()[0].is_ascii_uppercase() {
                if tok.len() > 1 {
                    k.idents.insert(tok.to_string());
                }
            } else if let Some(v) = number(tok) {
                k.numbers.insert(v);
                if let Some(a) = annotation {
                    k.fds.insert(format!("{tok}{a}"));
                }
            }
            continue;
        }
        i += 1;
    }
    k
}

fn names_match(narrated: &str, strace: &str) -> bool {
    narrated == strace
        || match narrated {
            "clone" => matches!(strace, "clone3" | "fork" | "vfork"),
            "renameat" => strace == "renameat2",
            "statfs" => strace == "statfs64",
            _ => false,
        }
}

/// The result as compared: the return value, or `-1 ERRNO`.
fn result_key(ret: &str) -> String {
    let mut words = ret.split_whitespace();
    let first = words.next().unwrap_or("");
    if first == "-1" {
        return format!("-1 {}", words.next().unwrap_or(""));
    }
    // strace -y annotates returned fds: `5</path>`.
    first.split('<').next().unwrap_or("").to_string()
}

/// Why `s` is not the narrated call `n` (`None` when it is).
fn mismatch(n: &Narrated, nk: &Keys, s: &Syscall) -> Option<String> {
    if !names_match(&n.name, &s.name) {
        return Some(format!("name {} is not {}", s.name, n.name));
    }
    let sk = keys(&s.args);
    for st in &nk.strings {
        if !s.args.contains(st.as_str()) {
            return Some(format!("no string {st}"));
        }
    }
    let missing: Vec<&String> = nk.idents.difference(&sk.idents).collect();
    if !missing.is_empty() {
        return Some(format!("no {missing:?}"));
    }
    let missing: Vec<&i128> = nk.numbers.difference(&sk.numbers).collect();
    if !missing.is_empty() {
        return Some(format!("no number(s) {missing:?}"));
    }
    let missing: Vec<&String> = nk.fds.difference(&sk.fds).collect();
    if !missing.is_empty() {
        return Some(format!("no fd {missing:?}"));
    }
    let (nr, sr) = (result_key(&n.ret), result_key(&s.ret));
    if nr != sr {
        return Some(format!("result {sr} is not {nr}"));
    }
    None
}

fn clip(s: &str) -> String {
    if s.len() <= 240 {
        return s.to_string();
    }
    let mut end = 240;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Check a narration against strace's output of the same run. Returns how many narrated calls
/// were found; the error lists every narrated call that was not, with strace's view of that
/// process around the place it should have been.
fn check(narration: &str, trace: &str) -> Result<usize, String> {
    let narrated = parse_narration(narration)?;
    let trace = decode_netlink_headers(trace);
    let (main_pid, calls) = parse_strace(&trace);
    if main_pid == 0 {
        return Err("strace's output has no call at all".into());
    }
    let mut by_pid: BTreeMap<i32, Vec<&Syscall>> = BTreeMap::new();
    for c in &calls {
        by_pid.entry(c.pid).or_default().push(c);
    }
    // Per process: index (into by_pid[pid]) just after the last match.
    let mut cursor: BTreeMap<i32, usize> = BTreeMap::new();
    let mut errors = Vec::new();
    for n in &narrated {
        let pid = n.pid.unwrap_or(main_pid);
        let Some(list) = by_pid.get(&pid) else {
            errors.push(format!(
                "narration line {}: pid {pid} made no call at all in strace's output:\n  {}",
                n.line_no, n.line
            ));
            continue;
        };
        let nk = keys(&n.args);
        let from = *cursor.get(&pid).unwrap_or(&0);
        match list[from..]
            .iter()
            .position(|s| mismatch(n, &nk, s).is_none())
        {
            Some(off) => {
                cursor.insert(pid, from + off + 1);
            }
            None => {
                let mut e = format!(
                    "narration line {}: not found in strace's calls of pid {pid} after its previous match:\n  {}\n",
                    n.line_no, n.line
                );
                let lo = from.saturating_sub(3);
                let hi = (from + 12).min(list.len());
                let _ = writeln!(
                    e,
                    "strace, pid {pid}, around the expected position (>> = first candidate):"
                );
                for (j, s) in list.iter().enumerate().take(hi).skip(lo) {
                    let mark = if j == from { ">>" } else { "  " };
                    let _ = writeln!(e, "  {mark} trace:{:<6} {}", s.line_no, clip(&s.text));
                }
                let same: Vec<&&Syscall> = list
                    .iter()
                    .filter(|s| names_match(&n.name, &s.name))
                    .collect();
                if same.is_empty() {
                    let _ = writeln!(e, "pid {pid} never called {} in strace's output", n.name);
                } else {
                    let _ = writeln!(
                        e,
                        "every {} of pid {pid} in strace's output, and why it is not this one:",
                        n.name
                    );
                    for s in same.iter().take(8) {
                        let why = mismatch(n, &nk, s).unwrap_or_else(|| {
                            "matches, but comes before the previous match (order)".into()
                        });
                        let _ = writeln!(
                            e,
                            "     trace:{:<6} {}\n                  -> {why}",
                            s.line_no,
                            clip(&s.text)
                        );
                    }
                }
                errors.push(e);
            }
        }
        if errors.len() >= 5 {
            errors.push("(stopped after 5 mismatches)".into());
            break;
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    if narrated.is_empty() {
        // Not an error for one command (`pull` of a stored image makes no call); the scenario
        // as a whole must narrate something.
        return Ok(0);
    }
    Ok(narrated.len())
}

// ---------------------------------------------------------------------------------------------
// The checker checks: it accepts real runs and rejects what did not happen.

/// One real `all` run under strace, shared by the self-tests.
fn real_run() -> &'static Traced {
    static RUN: OnceLock<Traced> = OnceLock::new();
    RUN.get_or_init(|| {
        let env = Env::new();
        let name = unique("fid-self");
        let dir = tempfile::tempdir().expect("temp dir");
        let t = traced(
            &env,
            dir.path(),
            "self",
            &[
                "all", "--name", &name, "--rm", "--memory", "64M", "--", "sh", "-c", "echo hi",
            ],
        );
        assert_eq!(t.exit, Some(0), "stepctr all failed:\n{}", t.stderr);
        assert_no_leaks(&env, &name);
        t
    })
}

fn checker_accepts_the_real_narration() {
    let t = real_run();
    let n = check(&t.narration, &t.trace).unwrap_or_else(|e| panic!("{e}"));
    assert!(n > 20, "only {n} narrated calls");
}

fn checker_rejects_a_call_that_never_happened() {
    let t = real_run();
    // A mount that never happened, in stepctr's own process and in a child.
    let fake = r#"mount("nowhere", "/nowhere", "tmpfs", 0, NULL) = 0 <0.000010>  # never made"#;
    let lines: Vec<&str> = t.narration.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("mkdirat("))
        .expect("a mkdirat line");
    let mut fake_main = lines.clone();
    fake_main.insert(at + 1, fake);
    let err = check(&fake_main.join("\n"), &t.trace)
        .expect_err("a call that never happened was accepted");
    assert!(
        err.contains("\"nowhere\""),
        "the report names the missing call:\n{err}"
    );

    let child = lines
        .iter()
        .find(|l| l.starts_with("[pid "))
        .expect("a child's line");
    let prefix = &child[..child.find("] ").unwrap() + 2];
    let mut fake_child = lines.clone();
    let at = lines.iter().position(|l| l.starts_with(prefix)).unwrap();
    let fake_line = format!("{prefix}{fake}");
    fake_child.insert(at + 1, &fake_line);
    let err =
        check(&fake_child.join("\n"), &t.trace).expect_err("a child's fake call was accepted");
    assert!(err.contains("\"nowhere\""), "{err}");

    // A real call with the wrong result, with the wrong pid, with a wrong argument.
    let i = lines
        .iter()
        .position(|l| l.contains("sethostname("))
        .expect("sethostname line");
    for bad in [
        lines[i].replace(") = 0 <", ") = -1 EPERM (Operation not permitted) <"),
        lines[i].replace("[pid ", "[pid 1"),
        lines[i].replacen("\", ", "x\", ", 1),
        lines[i].replacen("sethostname(", "setdomainname(", 1),
    ] {
        let mut v = lines.clone();
        v[i] = &bad;
        let err = check(&v.join("\n"), &t.trace).expect_err(&format!("accepted {bad}"));
        assert!(err.contains(&bad), "the report shows the line:\n{err}");
    }

    // A garbled line is not silently skipped.
    let mut v = lines.clone();
    v.insert(3, "mount(oops");
    assert!(check(&v.join("\n"), &t.trace).is_err());
    // Nor is an empty trace accepted.
    assert!(check(&t.narration, "").is_err());
}

fn checker_rejects_calls_out_of_order() {
    let t = real_run();
    let lines: Vec<&str> = t.narration.lines().collect();
    // Two calls of PID 1, each made once: swapped, the second can no longer be found after
    // the first.
    let a = lines
        .iter()
        .position(|l| l.contains("sethostname("))
        .expect("sethostname line");
    let b = lines
        .iter()
        .position(|l| l.contains("pivot_root("))
        .expect("pivot_root line");
    assert!(a < b);
    let mut v = lines.clone();
    v.swap(a, b);
    let err = check(&v.join("\n"), &t.trace).expect_err("swapped calls were accepted");
    assert!(
        err.contains("order") || err.contains("sethostname("),
        "{err}"
    );

    // Same in the shim: its unshare(CLONE_NEWPID) and the first namespace openat after it.
    let a = lines
        .iter()
        .position(|l| l.contains("] unshare(CLONE_NEWPID)"))
        .expect("unshare line");
    let b = a + 1;
    assert!(lines[b].contains("] openat("), "{}", lines[b]);
    let mut v = lines.clone();
    v.swap(a, b);
    let err = check(&v.join("\n"), &t.trace).expect_err("swapped calls were accepted");
    assert!(err.contains("unshare(CLONE_NEWPID)"), "{err}");
}

/// The parsers on fixed text (no root needed).
fn checker_parses_lines() {
    let n = parse_narration(
        "\n==> [3/6] cgroup: x\n# a note\n[pid  4242] # a child's note\n[pid  4242]     -> /proc/self/cgroup: 4:memory:/x\n\
         write(5</sys/fs/cgroup/pids/x/pids.max>, \"64\", 2) = 2 <0.000010>  # why (0 = me)\n\
         [pid 4243, 1 inside] mount(\"proc\", \"/proc\", \"proc\", MS_NOSUID|MS_NODEV, NULL) = -1 EPERM (Operation not permitted) <0.000001>\n\
         mkdirat(AT_FDCWD, \"/tmp/layers/.tmp-4584b95a47412ddb7b16922258c6745822de4b055cf4\"..., 0o755) = 0 <0.1>\n",
    )
    .unwrap();
    assert_eq!(n.len(), 3);
    assert_eq!(
        (n[0].pid, n[0].name.as_str(), n[0].ret.as_str()),
        (None, "write", "2")
    );
    assert_eq!(n[1].pid, Some(4243));
    assert_eq!(result_key(&n[1].ret), "-1 EPERM");
    let k = keys(&n[0].args);
    assert_eq!(k.strings, vec!["\"64\""]);
    assert!(k.fds.contains("5</sys/fs/cgroup/pids/x/pids.max>"));
    assert_eq!(k.numbers, BTreeSet::from([2, 5]));
    let k = keys(&n[2].args);
    assert_eq!(
        k.strings,
        vec!["\"/tmp/layers/.tmp-4584b95a47412ddb7b16922258c6745822de4b055cf4"]
    );
    assert!(k.numbers.contains(&0o755) && k.idents.contains("AT_FDCWD"));
    // seccomp's program address is not a key (strace -v decodes the program instead).
    let k = keys("SECCOMP_SET_MODE_FILTER, 0, {len=472, filter=0x55bed4d52e40}");
    assert_eq!(k.numbers, BTreeSet::from([0, 472]));

    let (main, s) = parse_strace(
        "100 execve(\"/x\", [\"x\"], 0x7ff /* 3 vars */) = 0\n\
         100 wait4(101,  <unfinished ...>\n\
         101 mkdirat(AT_FDCWD</w>, \"/tmp/a\", 0755) = 0\n\
         101 +++ exited with 0 +++\n\
         100 <... wait4 resumed>[{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, NULL) = 101\n\
         100 openat(AT_FDCWD</w>, \"/a\", O_RDONLY) = 3</a>\n",
    );
    assert_eq!(main, 100);
    assert_eq!(s.len(), 4);
    assert_eq!((s[1].name.as_str(), s[1].ret.as_str()), ("wait4", "101"));
    assert!(keys(&s[1].args).idents.contains("WIFEXITED"));
    assert_eq!(s[2].pid, 101);
    assert_eq!(result_key(&s[3].ret), "3");
    assert_eq!(keys(&s[2].args).numbers, BTreeSet::from([0o755]));
}
