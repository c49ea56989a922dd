//! config.json's `hooks` (runtime spec, config.md "POSIX-platform Hooks"): programs the
//! runtime runs at points of the lifecycle, each given the container's state JSON on stdin.
//!
//! - prestart (deprecated) and createRuntime: during `create`, once the container's namespaces
//!   and mounts exist and before pivot_root, run by `create` itself (the runtime's namespaces);
//! - createContainer: right after them, run by PID 1 (the container's namespaces, the host's
//!   paths still visible: before pivot_root);
//! - startContainer: during `start`, by PID 1 after the exec fifo's byte, before its execve
//!   (path resolved in the container);
//! - poststart: after the fifo's byte, before `start` returns (the runtime's namespaces);
//! - poststop: once `delete` (or a failed `create`) removed the container.
//!
//! Each hook is a fork, an execve and a wait4, narrated like every other call. Its stdin is a
//! file of the state JSON, opened once per hook (each reader starts at offset 0); its stdout
//! goes to stderr. `timeout`: a timer child kills the hook with SIGKILL when it passes.

use crate::kernel::{Kernel, Sys, WaitStatus};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One hook of config.json.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    pub path: PathBuf,
    /// argv, args[0] included (empty: argv is [path]).
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    /// Seconds.
    #[serde(default)]
    pub timeout: Option<i64>,
}

/// config.json's `hooks`, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hooks {
    #[serde(default)]
    pub prestart: Vec<Hook>,
    #[serde(default)]
    pub create_runtime: Vec<Hook>,
    #[serde(default)]
    pub create_container: Vec<Hook>,
    #[serde(default)]
    pub start_container: Vec<Hook>,
    #[serde(default)]
    pub poststart: Vec<Hook>,
    #[serde(default)]
    pub poststop: Vec<Hook>,
}

/// The kinds, in config.json's spelling (what `features` lists).
pub const KINDS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

impl Hooks {
    /// config.json's `hooks` (absent: none), checked: absolute paths, timeouts above 0.
    pub fn parse(v: Option<&serde_json::Value>) -> Result<Hooks> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(Hooks::default());
        };
        if let Some(o) = v.as_object() {
            if let Some(k) = o.keys().find(|k| !KINDS.contains(&k.as_str())) {
                bail!("config.json: hooks.{k} is not a hook kind (the spec's are {KINDS:?})");
            }
        }
        let h: Hooks = serde_json::from_value(v.clone()).context("config.json: hooks")?;
        for (kind, list) in h.all() {
            for (i, hook) in list.iter().enumerate() {
                if !hook.path.is_absolute() {
                    bail!(
                        "config.json: hooks.{kind}[{i}].path {} is not an absolute path",
                        hook.path.display()
                    );
                }
                if hook.timeout.is_some_and(|t| t <= 0) {
                    bail!("config.json: hooks.{kind}[{i}].timeout must be more than 0 seconds");
                }
            }
        }
        Ok(h)
    }

    pub fn all(&self) -> [(&'static str, &Vec<Hook>); 6] {
        [
            ("prestart", &self.prestart),
            ("createRuntime", &self.create_runtime),
            ("createContainer", &self.create_container),
            ("startContainer", &self.start_container),
            ("poststart", &self.poststart),
            ("poststop", &self.poststop),
        ]
    }

    pub fn is_empty(&self) -> bool {
        self.all().iter().all(|(_, l)| l.is_empty())
    }
}

/// The state JSON a hook reads on stdin (the spec's state: what `stepctr state` prints).
pub fn state_json(
    id: &str,
    status: &str,
    pid: i32,
    bundle: &Path,
    annotations: &std::collections::BTreeMap<String, String>,
) -> String {
    // In the spec's order, as runc writes it.
    let q = |v: serde_json::Value| v.to_string();
    let mut s = format!(
        "{{\"ociVersion\":\"1.0.2\",\"id\":{},\"status\":{}",
        q(id.into()),
        q(status.into())
    );
    if pid > 0 {
        s += &format!(",\"pid\":{pid}");
    }
    s += &format!(",\"bundle\":{}", q(serde_json::json!(bundle)));
    if !annotations.is_empty() {
        s += &format!(",\"annotations\":{}", q(serde_json::json!(annotations)));
    }
    s + "}"
}

/// Write `json` to `file` and open it `n` times read-only (one fd per hook: each reads from
/// offset 0); the name goes at once (the fds keep the file).
pub fn stdin_fds(k: &dyn Kernel, file: &Path, json: &str, n: usize) -> Result<Vec<i32>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let fd = k.openat(
        file,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
        0o444,
        "the state JSON the hooks read on stdin",
    )?;
    let wrote = k.write(fd, json.as_bytes(), "the container's state, for the hooks");
    k.close(fd)?;
    let mut fds = Vec::new();
    let opened = (|| -> Result<()> {
        wrote?;
        for _ in 0..n {
            fds.push(k.openat(
                file,
                libc::O_RDONLY | libc::O_CLOEXEC,
                0,
                "a hook's stdin (its own offset)",
            )?);
        }
        Ok(())
    })();
    let _ = k.unlinkat(file, 0, "the hooks hold it open: no name needed");
    if let Err(e) = opened {
        for fd in fds {
            let _ = k.close(fd);
        }
        return Err(e);
    }
    Ok(fds)
}

/// Run `hooks` of `kind` in order, the i-th reading `stdin[i]` (closed here), in `cwd`; the
/// first failure stops them: "createRuntime hook #1 (/bin/false): exit status 1".
pub fn run(
    k: &dyn Kernel,
    kind: &str,
    hooks: &[Hook],
    stdin: &[i32],
    cwd: Option<&Path>,
) -> Result<()> {
    let mut result = Ok(());
    for (i, hook) in hooks.iter().enumerate() {
        if result.is_ok() {
            result = run_one(k, kind, i, hook, stdin.get(i).copied(), cwd);
        }
    }
    for fd in stdin {
        let _ = k.close(*fd);
    }
    result
}

/// poststart and poststop: every hook runs, a failure is a warning on stderr ("the runtime
/// MUST log a warning, but the remaining hooks and lifecycle continue").
pub fn run_warn(k: &dyn Kernel, kind: &str, hooks: &[Hook], stdin: &[i32], cwd: Option<&Path>) {
    for (i, hook) in hooks.iter().enumerate() {
        if let Err(e) = run_one(k, kind, i, hook, stdin.get(i).copied(), cwd) {
            eprintln!("stepctr: warning: {e:#}");
        }
    }
    for fd in stdin {
        let _ = k.close(*fd);
    }
}

fn name(kind: &str, i: usize, hook: &Hook) -> String {
    format!("{kind} hook #{i} ({})", hook.path.display())
}

/// NSpid's first field: our pid in the PID namespace of the /proc we see (the host's, unless
/// the container's /proc is mounted over it).
fn own_host_pid() -> Option<i32> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn run_one(
    k: &dyn Kernel,
    kind: &str,
    i: usize,
    hook: &Hook,
    stdin: Option<i32>,
    cwd: Option<&Path>,
) -> Result<()> {
    let argv = if hook.args.is_empty() {
        vec![hook.path.to_string_lossy().into_owned()]
    } else {
        hook.args.clone()
    };
    let why = format!("the {kind} hook #{i}");
    // The hook's pid as the host sees it, for the narration of its execve (PID 1 runs some:
    // its children's pids are those of the container's PID namespace).
    let host_pid = crate::kernel::host::SharedPath::new();
    let child = k.spawn(&why, &mut || {
        if let Some(p) = own_host_pid() {
            host_pid.set(Path::new(&p.to_string()));
        }
        if let Some(fd) = stdin {
            k.dup3(fd, 0, 0, "the state JSON on the hook's stdin")?;
        }
        k.dup3(
            2,
            1,
            0,
            "the hook's stdout to stderr (the container's stdout is not the hook's)",
        )?;
        if let Some(dir) = cwd {
            k.chdir(dir, "the hook's working directory")?;
        }
        k.execve(&hook.path, &argv, &hook.env, "become the hook")?;
        Ok(())
    });
    let child = child.with_context(|| name(kind, i, hook))?;
    if let Some(err) = k.child_error(&child) {
        let _ = k.wait4(child.pid, 0, "reap the hook that could not start");
        bail!("{}: {err}", name(kind, i, hook));
    }
    let host = host_pid
        .get()
        .and_then(|p| p.to_str()?.parse().ok())
        .unwrap_or(child.pid);
    k.report(
        host,
        child.pid,
        &Sys::Execve {
            path: hook.path.clone(),
            argv: argv.clone(),
            envp: hook.env.clone(),
        },
        "the hook runs",
    );
    let hook_pid = child.pid;
    let began = std::time::Instant::now();
    let timer = match hook.timeout {
        Some(secs) => Some(k.spawn(
            "a timer: it kills the hook when its timeout passes",
            &mut || {
                k.prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as u64,
                    "die with the runtime",
                )?;
                std::thread::sleep(std::time::Duration::from_secs(secs as u64));
                k.kill(hook_pid, libc::SIGKILL, "the hook ran past its timeout")?;
                Ok(())
            },
        )?),
        None => None,
    };
    let status = k.wait4(hook_pid, 0, "wait for the hook to end");
    // Killed once its time was up: the timer's doing.
    let timed_out = hook
        .timeout
        .is_some_and(|t| began.elapsed() >= std::time::Duration::from_secs(t as u64));
    if let Some(t) = timer {
        let _ = k.close(t.err_fd.replace(-1));
        let _ = k.kill(t.pid, libc::SIGKILL, "the hook ended: no timer needed");
        let _ = k.wait4(t.pid, 0, "reap the timer");
    }
    let status = status.with_context(|| name(kind, i, hook))?;
    if timed_out && status == WaitStatus::Signaled(libc::SIGKILL) {
        bail!(
            "{}: ran past its timeout of {}s: killed",
            name(kind, i, hook),
            hook.timeout.unwrap_or(0)
        );
    }
    match status {
        WaitStatus::Exited(0) => Ok(()),
        WaitStatus::Exited(c) => bail!("{}: exit status {c}", name(kind, i, hook)),
        WaitStatus::Signaled(s) | WaitStatus::Stopped(s) => {
            bail!("{}: killed by signal {s}", name(kind, i, hook))
        }
    }
}
