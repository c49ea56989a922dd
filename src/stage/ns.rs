//! Stage 4, ns: create the container's namespaces and keep them alive.
//!
//! A namespace lives as long as something refers to it: a process in it, an open fd, or a
//! bind mount of its file from /proc/PID/ns. `ip netns add` keeps network namespaces alive
//! with bind mounts; we do the same, so the namespaces outlive the moment that made them and
//! the next stages (`fs`, `start`) can join them with setns().
//!
//! stepctr makes four here itself: it opens its own namespaces (the way back), unshare()s new
//! mount, hostname, IPC and network namespaces, makes every mount private and brings `lo` up,
//! opens the new namespaces, setns()es back into its own and bind-mounts the new ones' files
//! from those fds. (A process with threads may not change its mount namespace: then a forked
//! helper makes them, stops itself, and stepctr pins them from /proc/PID/ns and kills it.)
//!
//! Two more come with `start`, because both are about PID 1's place in the world:
//! - the PID namespace only exists together with its PID 1. Until a first process is born in
//!   it, /proc/PID/ns/pid_for_children cannot even be opened (ENOENT), and once its PID 1 dies
//!   no process can ever enter it again. So the shim makes it, its first child is PID 1;
//! - a cgroup namespace is rooted at the cgroup of the process that makes it. PID 1 makes it
//!   once it is in the container's cgroup, so inside, /proc/self/cgroup says `/`.
//!
//! Both are pinned in ns/ next to the others.

use crate::kernel::{Child, Kernel, WaitStatus};
use crate::state::{Container, Resource, Stage};
use crate::userns::UserNs;
use anyhow::{Context, Result};
use std::path::Path;

/// The namespaces made here, as (file under ns/ and under /proc/PID/ns/, clone flag).
pub const NAMESPACES: [(&str, i32); 4] = [
    ("mnt", libc::CLONE_NEWNS),
    ("uts", libc::CLONE_NEWUTS),
    ("ipc", libc::CLONE_NEWIPC),
    ("net", libc::CLONE_NEWNET),
];

/// The file that will pin the PID namespace, once `start` has made it.
pub const PID_FILE: &str = "pid";

/// The file that will pin the cgroup namespace, once PID 1 has made it.
pub const CGROUP_FILE: &str = "cgroup";

/// The namespaces unshared; `new_net` false (`--network host`): all but the network one.
pub fn flags(new_net: bool) -> i32 {
    NAMESPACES
        .iter()
        .filter(|(_, flag)| new_net || *flag != libc::CLONE_NEWNET)
        .fold(0, |f, (_, flag)| f | flag)
}

/// Does the container get a network namespace of its own (not `--network host`)?
fn new_net(c: &Container) -> bool {
    c.state
        .network
        .as_ref()
        .is_none_or(|n| n.mode != crate::net::link::Mode::Host)
}

/// How the container is networked (`--network`, `--subnet`).
#[derive(Debug, Clone, Copy)]
pub struct Network {
    pub mode: crate::net::link::Mode,
    pub subnet: crate::net::link::Subnet,
}

impl Default for Network {
    fn default() -> Network {
        Network {
            mode: crate::net::link::Mode::None,
            subnet: crate::net::link::Subnet::parse(crate::net::link::DEFAULT_SUBNET)
                .expect("the default subnet parses"),
        }
    }
}

/// `userns`: root's `--userns` (rootless mode always makes one, mapping only the user).
pub fn run(k: &dyn Kernel, c: &mut Container, userns: Option<UserNs>, net: Network) -> Result<()> {
    use crate::net::link::{Mode, NetState};
    super::header(k, Stage::Ns, "new namespaces: what the container can see");
    c.require_before(Stage::Ns)?;
    if crate::userns::rootless() && net.mode != Mode::None {
        anyhow::bail!("--network {}: without root a container has only `lo` (making veths and bridges on the host takes root)", match net.mode { Mode::Host => "host", _ => "bridge" });
    }
    if userns.is_some() && net.mode == Mode::Host {
        anyhow::bail!("--network host with --userns: the host's network namespace belongs to the host's user namespace, so the container's root could not mount its /sys; use --network bridge or none");
    }
    let dir = c.path("ns");
    c.state.network = Some(NetState {
        mode: net.mode,
        address: None,
        prefix: 0,
        gateway: None,
        host_veth: None,
    });
    create(k, c, &dir, userns)?;
    if net.mode == Mode::Bridge {
        let state = crate::net::link::connect(k, c, &dir.join("net"), net.subnet)?;
        k.note(&format!(
            "eth0 in the container is {}/{}, its gateway {} (the bridge {} on the host)",
            state.address.map(|a| a.to_string()).unwrap_or_default(),
            state.prefix,
            state.gateway.map(|a| a.to_string()).unwrap_or_default(),
            crate::net::link::BRIDGE
        ));
        c.state.network = Some(state);
    }
    if net.mode == Mode::Host {
        k.note("--network host: ns/net is the host's own network namespace (compare ls -lL with /proc/1/ns/net)");
    }
    c.state.ns_dir = Some(dir.clone());
    c.finish(Stage::Ns)?;
    k.note(&format!(
        "look: ls -l {}  (each file is a namespace, kept alive by {})",
        dir.display(),
        if c.state.userns.is_some() {
            "the keeper process it links to"
        } else {
            "a bind mount"
        }
    ));
    k.note(&format!("next: `stepctr fs {}`", c.name));
    Ok(())
}

/// Make the namespaces and pin them as files in `dir`.
pub fn create(k: &dyn Kernel, c: &mut Container, dir: &Path, userns: Option<UserNs>) -> Result<()> {
    if crate::userns::rootless() {
        if userns.is_some() {
            anyhow::bail!("--userns: without root, a container always gets a user namespace, and only your own uid can be in it");
        }
        return create_with_keeper(k, c, dir, UserNs::single());
    }
    if let Some(maps) = userns {
        return create_with_keeper(k, c, dir, maps);
    }
    // Everything this function makes in the host's mount table, journalled at once (one write
    // of state.json instead of eight): the directory, its own mount, one mount per namespace.
    let files = || {
        NAMESPACES
            .iter()
            .map(|(f, _)| *f)
            .chain([CGROUP_FILE, PID_FILE])
    };
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

    if k.single_threaded() {
        make_here(k, dir, new_net(c))?;
    } else {
        make_in_helper(k, c, dir)?;
    }
    k.note("the PID and cgroup namespaces come with `start`: one needs its PID 1, the other is rooted where PID 1 is");
    Ok(())
}

/// Make the namespaces in stepctr itself, pin them, and step back out of them.
fn make_here(k: &dyn Kernel, dir: &Path, new_net: bool) -> Result<()> {
    let cwd = crate::kernel::host::Cwd::save();
    let mut home: Vec<(i32, i32)> = Vec::new();
    let mut made: Vec<i32> = Vec::new();
    let result = (|| -> Result<()> {
        for (file, flag) in NAMESPACES {
            let fd = open_own(k, file, "our own namespace: the way back")?;
            home.push((fd, flag));
        }
        k.unshare(
            flags(new_net),
            "new namespaces, for stepctr itself for a moment: mount, hostname, IPC, network",
        )?;
        settle_in(k, new_net)?;
        for (file, _) in NAMESPACES {
            made.push(open_own(k, file, "hold on to the new namespace")?);
        }
        Ok(())
    })();
    // Back home whatever happened: stepctr must not go on inside half-made namespaces.
    let mut back = Ok(());
    for (fd, flag) in &home {
        if let Err(e) = k.setns(*fd, *flag, "step back into our own namespace") {
            back = Err(e);
        }
        let _ = k.close(*fd);
    }
    if let Some(cwd) = cwd {
        cwd.restore();
    }
    let pinned = back
        .context("return to stepctr's own namespaces")
        .and(result)
        .and_then(|()| pin_here(k, dir, &made));
    for fd in made {
        let _ = k.close(fd);
    }
    pinned
}

/// Open one of this process's own namespaces (/proc/self/ns/FILE).
fn open_own(k: &dyn Kernel, file: &str, why: &str) -> Result<i32, crate::kernel::SysError> {
    k.openat(
        &Path::new("/proc/self/ns").join(file),
        libc::O_RDONLY | libc::O_CLOEXEC,
        0,
        why,
    )
}

/// In a new mount namespace: make every mount private.
pub(crate) fn make_private(k: &dyn Kernel) -> Result<(), crate::kernel::SysError> {
    k.mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
        "mounts made in here must never propagate back to the host",
    )
}

/// In new mount and network namespaces: private mounts, and `lo` up.
fn settle_in(k: &dyn Kernel, new_net: bool) -> Result<(), crate::kernel::SysError> {
    make_private(k)?;
    if !new_net {
        return Ok(());
    }
    k.if_up(
        "lo",
        "a new network namespace has only a loopback device, and it is down",
    )
}

/// Bind the new namespaces (open in `made`, in NAMESPACES order) onto their files.
fn pin_here(k: &dyn Kernel, dir: &Path, made: &[i32]) -> Result<()> {
    for ((file, flag), fd) in NAMESPACES.iter().zip(made) {
        let src = format!("/proc/self/fd/{fd}");
        match k.mount(
            Some(&src),
            &dir.join(file),
            None,
            libc::MS_BIND,
            None,
            "pin the namespace: it lives as long as this mount",
        ) {
            Ok(()) => {}
            Err(e) if *flag == libc::CLONE_NEWNS && e.errno == crate::kernel::Errno::EINVAL => {
                pin_mnt_elsewhere(k, dir, e)?
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The mount namespace could not be pinned (see [`Pin::MntLoop`]): make another one on each
/// other CPU in turn until one can be, then let stepctr run on all its CPUs again.
fn pin_mnt_elsewhere(k: &dyn Kernel, dir: &Path, first: crate::kernel::SysError) -> Result<()> {
    let cpus = crate::kernel::host::allowed_cpus();
    let mut last = first;
    for cpu in cpus.iter().copied() {
        k.note("the kernel took that mount namespace for one older than ours (it numbers them per CPU): trying again on another CPU");
        match new_mnt_on(k, dir, cpu) {
            Ok(()) => {
                crate::kernel::host::set_affinity(&cpus);
                return Ok(());
            }
            Err(e) if e.errno == crate::kernel::Errno::EINVAL => last = e,
            Err(e) => {
                crate::kernel::host::set_affinity(&cpus);
                return Err(e.into());
            }
        }
    }
    crate::kernel::host::set_affinity(&cpus);
    Err(last.into())
}

/// On `cpu`: a new mount namespace, made private, pinned on ns/mnt.
fn new_mnt_on(k: &dyn Kernel, dir: &Path, cpu: usize) -> Result<(), crate::kernel::SysError> {
    k.sched_setaffinity(cpu, "make the namespace on this CPU (see the note above)")?;
    let home = open_own(k, "mnt", "our own mount namespace: the way back")?;
    let cwd = crate::kernel::host::Cwd::save();
    let made = (|| {
        k.unshare(libc::CLONE_NEWNS, "another new mount namespace")?;
        make_private(k)?;
        open_own(k, "mnt", "hold on to the new namespace")
    })();
    let back = k.setns(home, libc::CLONE_NEWNS, "step back into our own namespace");
    let _ = k.close(home);
    if let Some(cwd) = cwd {
        cwd.restore();
    }
    back?;
    let made = made?;
    let bound = k.mount(
        Some(&format!("/proc/self/fd/{made}")),
        &dir.join("mnt"),
        None,
        libc::MS_BIND,
        None,
        "pin the namespace: it lives as long as this mount",
    );
    let _ = k.close(made);
    bound
}

/// The same, in a forked helper (stepctr has threads, so it may not change its own mount
/// namespace). Usually the first helper will do; see `Pin::MntLoop` for why there may be more.
fn make_in_helper(k: &dyn Kernel, c: &mut Container, dir: &Path) -> Result<()> {
    let mut attempts = crate::kernel::host::allowed_cpus().into_iter().map(Some);
    let mut pin: Option<usize> = None;
    loop {
        let helper = spawn_helper(k, pin, new_net(c))?;
        match pin_helper_namespaces(k, c, dir, &helper) {
            Ok(()) => {
                let _ = k.child_error(&helper);
                return Ok(());
            }
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
}

/// fork a helper that makes the namespaces (optionally on one CPU only) and stops.
fn spawn_helper(k: &dyn Kernel, cpu: Option<usize>, new_net: bool) -> Result<Child> {
    let flags = flags(new_net);
    let helper = k.spawn("a helper process to create the namespaces in", &mut || {
        k.prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as u64,
            "die if stepctr dies",
        )?;
        if let Some(cpu) = cpu {
            k.sched_setaffinity(cpu, "make the namespaces on this CPU (see the note above)")?;
        }
        k.unshare(flags, "new namespaces: mount, hostname, IPC, network")?;
        settle_in(k, new_net)?;
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

/// With a user namespace (rootless, or root's `--userns`; see `crate::userns`): a keeper makes
/// the user namespace, stepctr writes its maps, the keeper makes the other namespaces inside it
/// and stops for good, holding them all; ns/ gets symlinks to its /proc/PID/ns files. (Root
/// could pin them with bind mounts, but PID 1's, made in the user namespace, cannot be: one
/// way for both.)
fn create_with_keeper(
    k: &dyn Kernel,
    c: &mut Container,
    dir: &Path,
    mut maps: UserNs,
) -> Result<()> {
    c.journal(Resource::Dir {
        path: dir.to_path_buf(),
    })?;
    k.mkdirat(
        dir,
        0o755,
        "a directory for links to the namespaces, held by a keeper process",
    )?;
    let flags = flags(new_net(c));
    let keeper = k.spawn(
        "the keeper: it makes the container's namespaces and holds them until `stepctr rm`",
        &mut || {
            k.prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as u64,
                "die if stepctr dies before the namespaces are ready",
            )?;
            k.unshare(
                libc::CLONE_NEWUSER,
                "a user namespace: in it we hold every capability, over it and over what it will own",
            )?;
            // Pause: only a process outside may write our maps (stepctr reports the stop).
            crate::kernel::host::stop_self();
            k.unshare(
                flags,
                "new namespaces, owned by our user namespace: mount, hostname, IPC, network",
            )?;
            settle_in(k, true)?;
            k.prctl(
                libc::PR_SET_PDEATHSIG,
                0,
                "from now on we outlive stepctr: the namespaces live as long as we do",
            )?;
            k.setsid("a session of our own: no terminal's hangup or Ctrl-C reaches us")?;
            k.chdir(
                Path::new("/"),
                "keep no directory of the host busy",
            )?;
            crate::shim::redirect_stdio(k, -1)?;
            crate::kernel::host::trim_memory();
            k.close_range(
                3,
                u32::MAX,
                0,
                "close the rest, the error channel too: its end tells stepctr we are ready",
            )?;
            // Stop for good (stepctr reports it): a stopped process still holds its
            // namespaces. If someone sends SIGCONT, stop again.
            loop {
                crate::kernel::host::stop_self();
            }
        },
    )?;
    let pid = keeper.pid;
    let start_time = crate::state::process_start_time(pid).unwrap_or(0);
    c.journal(Resource::Process { pid, start_time })?;
    let stopped = |why: &str, said: &str| -> Result<()> {
        match k.wait4(pid, libc::WUNTRACED, why)? {
            WaitStatus::Stopped(_) => {
                k.report(
                    pid,
                    pid,
                    &crate::kernel::Sys::Kill {
                        pid,
                        sig: libc::SIGSTOP,
                    },
                    said,
                );
                Ok(())
            }
            other => {
                let why = k
                    .child_error(&keeper)
                    .unwrap_or_else(|| format!("{other:?}"));
                anyhow::bail!("create namespaces: {why}")
            }
        }
    };
    stopped(
        "wait until the keeper has its user namespace",
        "the keeper paused itself: only a process outside its user namespace may write the maps",
    )?;
    maps.write_maps(k, pid)?;
    k.kill(
        pid,
        libc::SIGCONT,
        "go on: you are root in there now, make the other namespaces",
    )?;
    stopped(
        "wait until the keeper has made the namespaces",
        "the keeper stopped for good: a stopped process still holds its namespaces",
    )?;
    if let Some(err) = k.child_error(&keeper) {
        anyhow::bail!("create namespaces: {err}");
    }
    for file in [crate::userns::USER_FILE]
        .into_iter()
        .chain(NAMESPACES.iter().map(|(f, _)| *f))
    {
        k.symlinkat(
            &Path::new("/proc")
                .join(pid.to_string())
                .join("ns")
                .join(file),
            &dir.join(file),
            "a link to the keeper's namespace: open it to join",
        )?;
    }
    maps.keeper = Some((pid, start_time));
    c.state.userns = Some(maps);
    k.note("the PID and cgroup namespaces come with `start`: one needs its PID 1, the other is rooted where PID 1 is");
    Ok(())
}
