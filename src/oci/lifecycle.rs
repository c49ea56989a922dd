//! The OCI lifecycle after `create`: `start`, `state`, `kill`, `delete` (runtime spec,
//! "Operations"). A container's status is read from the kernel each time, as runc does:
//! PID 1 alive and the exec fifo still there = created; alive and the fifo gone = running;
//! PID 1 gone (or a zombie nobody has reaped yet) = stopped.

use crate::kernel::Kernel;
use crate::state::{Container, ContainerName, Paths, Resource};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The exec fifo, in the container's state directory.
pub const FIFO: &str = "exec.fifo";

/// What `create` records beside the stages' state (state.json's `oci`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OciState {
    pub bundle: PathBuf,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// When `create` ran (RFC 3339).
    #[serde(default)]
    pub created: String,
    /// linux.cgroupsPath (relative to each controller's root), if config.json gave one.
    #[serde(default)]
    pub cgroups_path: Option<PathBuf>,
    /// config.json's hooks (`start` runs poststart, `delete` poststop).
    #[serde(default, skip_serializing_if = "super::hooks::Hooks::is_empty")]
    pub hooks: super::hooks::Hooks,
}

/// The runtime spec's statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Stopped,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
    }
}

/// Is `name` an OCI container (made by `stepctr create`)? Used to tell `start ID` from the
/// stage 6 `start NAME`.
pub fn is_oci(paths: &Paths, name: &str) -> bool {
    let Ok(n) = ContainerName::parse(name) else {
        return false;
    };
    std::fs::read(paths.container(&n).join("state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v.get("oci").is_some_and(|o| !o.is_null()))
}

/// Open an OCI container, with the spec's wording when there is none.
pub fn open(paths: &Paths, id: &str) -> Result<Container> {
    let name = ContainerName::parse(id)?;
    if !paths.container(&name).join("state.json").is_file() {
        bail!("container {id} does not exist");
    }
    let c = Container::open(paths, &name)?;
    if c.state.oci.is_none() {
        bail!("container {id} was not made by `stepctr create` (it is a stage-built container: `stepctr ps`, `stepctr rm {id}`)");
    }
    Ok(c)
}

/// PID 1's pid and start time, as journalled.
fn pid1(c: &Container) -> Option<(i32, u64)> {
    let pid = c.state.pid?;
    c.state.journal.iter().find_map(|r| match r {
        Resource::Process { pid: p, start_time } if *p == pid => Some((pid, *start_time)),
        _ => None,
    })
}

pub fn status(c: &Container) -> Status {
    match pid1(c) {
        None => Status::Creating,
        Some((pid, start)) if crate::lifecycle::alive_as(pid, start) => {
            if c.path(FIFO).exists() {
                Status::Created
            } else {
                Status::Running
            }
        }
        Some(_) => Status::Stopped,
    }
}

/// `stepctr state ID`: the runtime spec's state JSON.
pub fn state(paths: &Paths, id: &str) -> Result<String> {
    let c = open(paths, id)?;
    let st = status(&c);
    let oci = c.state.oci.clone().unwrap_or_default();
    let mut v = serde_json::json!({
        "ociVersion": "1.0.2",
        "id": id,
        "status": st.name(),
        "pid": if st == Status::Stopped { 0 } else { c.state.pid.unwrap_or(0) },
        "bundle": oci.bundle,
        "rootfs": c.state.rootfs,
        "created": oci.created,
    });
    if !oci.annotations.is_empty() {
        v["annotations"] = serde_json::to_value(&oci.annotations)?;
    }
    Ok(serde_json::to_string_pretty(&v)?)
}

/// `stepctr start ID`: one byte into the exec fifo; PID 1 reads it and execs.
pub fn start(k: &dyn Kernel, paths: &Paths, id: &str) -> Result<()> {
    let c = open(paths, id)?;
    match status(&c) {
        Status::Created => {}
        Status::Stopped if c.path(FIFO).exists() => {
            bail!("container {id} is not in created state: PID 1 died before start (stopped)")
        }
        s => bail!(
            "container {id} is not in created state (it is {})",
            s.name()
        ),
    }
    let fifo = c.path(FIFO);
    // What PID 1 runs now: the runtime that forked it, until its execve.
    let pid = c.state.pid.unwrap_or(0);
    let before_exec = exe_of(pid);
    let fd = k
        .openat(
            &fifo,
            libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
            0,
            "the exec fifo (PID 1 holds it open for reading)",
        )
        .with_context(|| format!("container {id}: PID 1 no longer waits on the exec fifo"))?;
    let wrote = k.write(
        fd,
        b"0",
        "one byte: PID 1's read returns and it execs the command",
    );
    k.close(fd)?;
    wrote?;
    k.unlinkat(&fifo, 0, "no fifo: the container is running now")?;
    k.note(&format!(
        "started: PID 1 ({}) execs {}",
        c.state.pid.unwrap_or(0),
        id
    ));
    let oci = c.state.oci.clone().unwrap_or_default();
    if oci.hooks.poststart.is_empty() {
        return Ok(());
    }
    // poststart runs "after the user-specified process is executed": PID 1 still has steps
    // between the fifo's byte and its execve (seccomp, startContainer hooks).
    wait_for_exec(pid, before_exec);
    let json = super::hooks::state_json(id, "running", pid, &oci.bundle, &oci.annotations);
    match super::hooks::stdin_fds(
        k,
        &c.path("hooks-poststart.json"),
        &json,
        oci.hooks.poststart.len(),
    ) {
        // The spec: a failed poststart hook is a warning; the other hooks and the container
        // go on. (runc 1.1.5 fails `start` and removes the container instead.)
        Ok(fds) => super::hooks::run_warn(
            k,
            "poststart",
            &oci.hooks.poststart,
            &fds,
            Some(&oci.bundle),
        ),
        Err(e) => eprintln!("stepctr: warning: poststart hooks: {e:#}"),
    }
    Ok(())
}

/// The file PID 1 runs (device, inode of /proc/PID/exe).
fn exe_of(pid: i32) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/exe"))
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Until PID 1 runs another file than `before` (it exec'd) or is gone; at most 5 s.
fn wait_for_exec(pid: i32, before: Option<(u64, u64)>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while before.is_some() && exe_of(pid) == before && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// `stepctr kill ID [SIGNAL]`: signal PID 1 (created or running); with `all`, every process
/// in the container's cgroups.
pub fn kill(k: &dyn Kernel, paths: &Paths, id: &str, sig: i32, all: bool) -> Result<()> {
    let c = open(paths, id)?;
    match (status(&c), pid1(&c)) {
        (Status::Created | Status::Running, Some((pid, _))) => {
            k.kill(pid, sig, "signal the container's PID 1")?;
            if all {
                let mut seen = vec![pid];
                for d in c.state.cgroup.iter().flat_map(|g| g.dirs.iter()) {
                    let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
                    for p in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                        if !seen.contains(&p) {
                            seen.push(p);
                            match k.kill(p, sig, "kill --all: a process of the container's cgroup")
                            {
                                Err(e) if e.errno == crate::kernel::Errno::ESRCH => {}
                                r => r?,
                            }
                        }
                    }
                }
            }
            Ok(())
        }
        (s, _) => bail!("container {id} is not running (it is {})", s.name()),
    }
}

/// `stepctr delete [--force] ID`: remove a created or stopped container (running: only with
/// --force, which kills it first). The journal undoes it all, as `stepctr rm` does.
pub fn delete(k: &dyn Kernel, paths: &Paths, id: &str, force: bool) -> Result<()> {
    let name = ContainerName::parse(id)?;
    if force && !paths.container(&name).join("state.json").is_file() {
        // As runc: --force of a container that does not exist (or whose create died before
        // its state was written) succeeds, removing what is left (podman cleans up this way).
        if paths.container(&name).is_dir() {
            return crate::remove::remove_with(k, paths, &name, true);
        }
        return Ok(());
    }
    let c = open(paths, id)?;
    let st = status(&c);
    if st == Status::Running && !force {
        bail!("cannot delete running container {id}: stop it or use --force");
    }
    let name = c.name.clone();
    let stdin = super::create::poststop_stdin(k, &c, id);
    let poststop = c
        .state
        .oci
        .as_ref()
        .map(|o| o.hooks.poststop.clone())
        .unwrap_or_default();
    drop(c);
    let removed = crate::remove::remove_with(k, paths, &name, true);
    if removed.is_err() {
        for fd in stdin {
            let _ = k.close(fd);
        }
        return removed;
    }
    // As runc 1.1.5: a failed poststop hook is logged, `delete` still succeeds.
    super::hooks::run_warn(k, "poststop", &poststop, &stdin, None);
    Ok(())
}

/// RFC 3339 in UTC, `2026-11-29T03:04:05.123456789Z` (Go's time format, which conmon reads).
pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// `--log FILE --log-format text|json`: an error line appended, as runc writes it.
pub fn log_error(file: &Path, json: bool, msg: &str) {
    use std::io::Write;
    let time = rfc3339(std::time::SystemTime::now());
    let line = if json {
        serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
    } else {
        format!("time=\"{time}\" level=error msg={msg:?}")
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
    {
        let _ = writeln!(f, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000000000Z");
        let t = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 5);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.000000005Z");
    }
}
