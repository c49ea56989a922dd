//! Stage 4, ns: create the container's namespaces and keep them alive.
//!
//! A namespace lives as long as something refers to it: a process in it, an open fd, or a
//! bind mount of its file from /proc/PID/ns. `ip netns add` keeps network namespaces alive
//! with bind mounts; we do the same for five of the six, so they outlive the helper process
//! that made them and the next stages (`fs`, `start`) can join them with setns().
//!
//! The helper: fork → join the container's cgroup (so the new cgroup namespace is rooted
//! there; on v1 through `tasks`, see `cgroup::join_file`; on v2 it is born there instead, with
//! clone3(CLONE_INTO_CGROUP), see `cgroup::Entry`) → unshare(five of them) → make every mount
//! private → bring `lo` up → stop itself.
//! The parent then bind-mounts the helper's namespace files and kills it.
//!
//! The sixth, the PID namespace, is the exception the kernel imposes: a PID namespace exists
//! only together with its PID 1. Until a first process is born in it, /proc/PID/ns/
//! pid_for_children cannot even be opened (ENOENT), and once its PID 1 dies no process can
//! ever enter it again. So `start` makes it, with the container's command as its PID 1, and
//! pins it in ns/pid next to the others.

use crate::kernel::{Child, Kernel, WaitStatus};
use crate::state::{Container, Resource, Stage};
use anyhow::Result;
use std::path::{Path, PathBuf};

/// The namespaces made here, as (file under ns/ and under /proc/PID/ns/, clone flag).
pub const NAMESPACES: [(&str, i32); 5] = [
    ("mnt", libc::CLONE_NEWNS),
    ("uts", libc::CLONE_NEWUTS),
    ("ipc", libc::CLONE_NEWIPC),
    ("net", libc::CLONE_NEWNET),
    ("cgroup", libc::CLONE_NEWCGROUP),
];

/// The file that will pin the PID namespace, once `start` has made it.
pub const PID_FILE: &str = "pid";

pub fn all_flags() -> i32 {
    NAMESPACES.iter().fold(0, |f, (_, flag)| f | flag)
}

pub fn run(k: &dyn Kernel, c: &mut Container) -> Result<()> {
    super::header(k, Stage::Ns, "new namespaces: what the container can see");
    c.require_before(Stage::Ns)?;
    let dir = c.path("ns");
    let cgroups = c
        .state
        .cgroup
        .as_ref()
        .map(|g| g.dirs.clone())
        .unwrap_or_default();
    create(k, c, &dir, &cgroups)?;
    c.state.ns_dir = Some(dir.clone());
    c.finish(Stage::Ns)?;
    k.note(&format!(
        "look: ls -l {}  (each file is a namespace, kept alive by a bind mount)",
        dir.display()
    ));
    k.note(&format!("next: `stepctr fs {}`", c.name));
    Ok(())
}

/// Make the namespaces and pin them as files in `dir`.
pub fn create(k: &dyn Kernel, c: &mut Container, dir: &Path, cgroups: &[PathBuf]) -> Result<()> {
    // Everything this function makes in the host's mount table, journalled at once (one write
    // of state.json instead of eight): the directory, its own mount, one mount per namespace.
    let files = || NAMESPACES.iter().map(|(f, _)| *f).chain([PID_FILE]);
    c.journal_all(
        [
            Resource::Dir {
                path: dir.to_path_buf(),
            },
            Resource::Mount {
                path: dir.to_path_buf(),
            },
        ]
        .into_iter()
        .chain(files().map(|f| Resource::Mount { path: dir.join(f) })),
    )?;
    k.mkdirat(dir, 0o755, "a directory for the namespace files")?;
    // The directory becomes its own private mount: the bind mounts below then never propagate
    // anywhere, and a mount namespace's file can never end up inside that namespace (a loop
    // that would keep it alive forever).
    let dir_str = dir.to_string_lossy();
    k.mount(
        Some(&dir_str),
        dir,
        None,
        libc::MS_BIND,
        None,
        "make the ns directory a mount point...",
    )?;
    k.mount(
        None,
        dir,
        None,
        libc::MS_PRIVATE,
        None,
        "...that shares nothing with other mounts",
    )?;
    for file in files() {
        let path = dir.join(file);
        let fd = k.openat(
            &path,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o444,
            "an empty file to bind the namespace onto",
        )?;
        k.close(fd)?;
    }

    // Usually the first helper will do. See `Pin::MntLoop` for why there may be more.
    let mut attempts = crate::kernel::host::allowed_cpus().into_iter().map(Some);
    let mut pin: Option<usize> = None;
    let v2 = super::cgroup::is_v2(c.state.cgroup.as_ref());
    let entry = super::cgroup::Entry::open(k, cgroups, v2)?;
    // The cgroup's fd is closed once the helper is done with (pinned, or failed and reaped).
    let helper = (|| -> Result<Child> {
        loop {
            let helper = spawn_helper(k, &entry, pin)?;
            match pin_helper_namespaces(k, c, dir, &helper) {
                Ok(()) => return Ok(helper),
                Err(Pin::HelperFailed(e)) => return Err(e),
                Err(e) => {
                    // Never leave the helper stopped: it would keep the namespaces alive.
                    let _ = k.kill(
                        helper.pid,
                        libc::SIGKILL,
                        "clean up the helper after the failure",
                    );
                    let _ = k.wait4(helper.pid, 0, "reap the helper");
                    let _ = k.child_error(&helper);
                    match (e, attempts.next()) {
                        (Pin::MntLoop(_), Some(next)) => {
                            k.note("the kernel took that mount namespace for one older than ours (it numbers them per CPU): trying again on another CPU");
                            pin = next;
                        }
                        (e, _) => return Err(e.into()),
                    }
                }
            }
        }
    })();
    entry.close(k);
    let helper = helper?;
    let _ = k.child_error(&helper);
    k.note("the PID namespace comes with `start`: it can only exist together with its PID 1");
    Ok(())
}

/// fork a helper that makes the namespaces (optionally on one CPU only) and stops. It starts
/// in the container's cgroup (`entry`): on v2 it is born there (clone3), else it moves there
/// itself before anything else.
fn spawn_helper(k: &dyn Kernel, entry: &super::cgroup::Entry, cpu: Option<usize>) -> Result<Child> {
    let flags = all_flags();
    let why = "a helper process to create the namespaces in";
    let helper = entry.spawn(k, why, &mut || {
        k.prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as u64,
            "die if stepctr dies",
        )?;
        if let Some(cpu) = cpu {
            k.sched_setaffinity(cpu, "make the namespaces on this CPU (see the note above)")?;
        }
        entry.join(
            k,
            "join the container's cgroup first: a new cgroup namespace is rooted where we are",
        )?;
        k.unshare(
            flags,
            "new namespaces: mount, cgroup, hostname, IPC, network",
        )?;
        k.mount(
            None,
            Path::new("/"),
            None,
            libc::MS_REC | libc::MS_PRIVATE,
            None,
            "mounts made in here must never propagate back to the host",
        )?;
        k.if_up(
            "lo",
            "a new network namespace has only a loopback device, and it is down",
        )?;
        let me = k.getpid();
        k.kill(
            me,
            libc::SIGSTOP,
            "pause, so the parent can pin our namespaces",
        )?;
        Ok(())
    })?;
    Ok(helper)
}

/// Why pinning failed.
enum Pin {
    /// The kernel refused to bind the mount namespace file with EINVAL: its "is this a loop?"
    /// check compares namespace sequence numbers, which recent kernels hand out in per-CPU
    /// batches, so a namespace made on another CPU can look older than ours. Another helper
    /// on another CPU gets a number that passes.
    MntLoop(crate::kernel::SysError),
    /// The helper itself failed (and has been reaped).
    HelperFailed(anyhow::Error),
    Other(anyhow::Error),
}

impl From<Pin> for anyhow::Error {
    fn from(p: Pin) -> anyhow::Error {
        match p {
            Pin::MntLoop(e) => e.into(),
            Pin::HelperFailed(e) | Pin::Other(e) => e,
        }
    }
}

impl From<anyhow::Error> for Pin {
    fn from(e: anyhow::Error) -> Pin {
        Pin::Other(e)
    }
}

impl From<crate::kernel::SysError> for Pin {
    fn from(e: crate::kernel::SysError) -> Pin {
        Pin::Other(e.into())
    }
}

/// Wait for the helper to stop, bind its namespace files, then end it.
fn pin_helper_namespaces(
    k: &dyn Kernel,
    c: &mut Container,
    dir: &Path,
    helper: &Child,
) -> Result<(), Pin> {
    c.journal(Resource::Process {
        pid: helper.pid,
        start_time: crate::state::process_start_time(helper.pid).unwrap_or(0),
    })?;
    match k.wait4(
        helper.pid,
        libc::WUNTRACED,
        "wait until the helper has its namespaces",
    )? {
        WaitStatus::Stopped(_) => k.report(
            helper.pid,
            helper.pid,
            &crate::kernel::Sys::Kill {
                pid: helper.pid,
                sig: libc::SIGSTOP,
            },
            "the helper paused itself, so the parent can pin its namespaces",
        ),
        other => {
            let why = k
                .child_error(helper)
                .unwrap_or_else(|| format!("{other:?}"));
            return Err(Pin::HelperFailed(anyhow::anyhow!(
                "create namespaces: {why}"
            )));
        }
    }
    for (file, flag) in NAMESPACES {
        let src = format!("/proc/{}/ns/{file}", helper.pid);
        match k.mount(
            Some(&src),
            &dir.join(file),
            None,
            libc::MS_BIND,
            None,
            "pin the namespace: it lives as long as this mount",
        ) {
            Ok(()) => {}
            Err(e) if flag == libc::CLONE_NEWNS && e.errno == crate::kernel::Errno::EINVAL => {
                return Err(Pin::MntLoop(e))
            }
            Err(e) => return Err(e.into()),
        }
    }
    k.kill(
        helper.pid,
        libc::SIGKILL,
        "the helper is done: its namespaces live on in the files",
    )?;
    k.wait4(helper.pid, 0, "reap the helper")?;
    Ok(())
}
