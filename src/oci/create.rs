//! `stepctr create`: a bundle through the stages, up to a PID 1 that waits for `start`.
//!
//! As runc does it: load (the container's directory and state; the rootfs is the bundle's,
//! no layers), cgroup (linux.resources at linux.cgroupsPath), then the fork of PID 1 in its
//! new PID namespace. PID 1 does the rest of ns and fs itself, as the start stage's PID 1 does:
//! it joins the namespaces that have a path and makes the others, mounts config.json's mounts
//! inside the rootfs, makes the devices, opens the exec fifo, pivot_roots, writes the sysctls,
//! covers maskedPaths and readonlyPaths, sets its rlimits, user and capabilities, and then
//! blocks reading the exec fifo. `create` writes the pid file and exits: PID 1 is reparented
//! to the caller's subreaper (conmon, containerd-shim), which is the shim of the chain
//! docker → containerd → shim → runc. `start` writes one byte into the fifo: PID 1 execs.
//!
//! With a user namespace, a keeper makes it and stops while create writes its maps, and a
//! helper enters it and forks PID 1 there, so that every namespace PID 1 makes is owned by
//! it (see [`spawn_in_userns`]); device nodes are then the host's, bind-mounted.
//! The namespaces PID 1 made are pinned in the state directory's ns/, as the ns stage pins
//! them, so `stepctr exec` and `nsenter` find them.

use super::config::{self, MountSpec, Plan};
use super::lifecycle::{OciState, FIFO};
use crate::kernel::{Errno, Kernel};
use crate::stage::cgroup::Entry;
use crate::state::{Container, ContainerName, Paths, Resource, Stage, State};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The flags of `stepctr create`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// `--systemd-cgroup`: cgroupsPath is `slice:prefix:name`.
    pub systemd_cgroup: bool,
}

/// The devices every container gets (runc's default list, in its order), besides linux.devices.
const DEFAULT_DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("random", 1, 8),
    ("full", 1, 7),
    ("tty", 5, 0),
    ("zero", 1, 5),
    ("urandom", 1, 9),
];

/// `stepctr create ID`.
pub fn create(
    k: &dyn Kernel,
    paths: &Paths,
    id: &str,
    o: &Options,
    cgroup_root: &Path,
) -> Result<()> {
    let name = ContainerName::parse(id)?;
    let bundle = std::fs::canonicalize(&o.bundle)
        .with_context(|| format!("bundle {}", o.bundle.display()))?;
    let mut plan = config::load(&bundle)?;
    let filter = match &plan.seccomp {
        Some(s) => Some(std::sync::Arc::new(
            super::seccomp::compile(s).context("config.json: linux.seccomp")?,
        )),
        None => None,
    };
    if plan.terminal && o.console_socket.is_none() {
        bail!("config.json: process.terminal is true: give --console-socket SOCKET (the pty's master is sent there, as runc does), or set it to false");
    }
    if let Some(p) = &plan.cgroups_path {
        plan.cgroups_path = Some(cgroups_path(k, p, o.systemd_cgroup)?);
    }
    if !plan.rootfs.is_dir() {
        bail!(
            "config.json: root.path {} is not a directory",
            plan.rootfs.display()
        );
    }
    paths.prepare_run()?;
    let dir = paths.container(&name);
    if dir.exists() {
        bail!("container {id} already exists");
    }
    k.mkdirat(
        &dir,
        0o700,
        "the container's state directory (runc's /run/runc/ID)",
    )?;
    let state = State {
        name: name.to_string(),
        image: format!("bundle:{}", bundle.display()),
        rootfs: Some(plan.rootfs.clone()),
        // The bundle's process, as an image's config would give it (`exec` and `inspect`
        // read it from here).
        config: crate::state::RunConfig {
            entrypoint: Vec::new(),
            cmd: plan.args.clone(),
            env: plan.env.clone(),
            workdir: plan.cwd.to_string_lossy().into_owned(),
        },
        oci: Some(OciState {
            bundle: bundle.clone(),
            annotations: plan.annotations.clone(),
            created: super::lifecycle::rfc3339(std::time::SystemTime::now()),
            cgroups_path: plan.cgroups_path.clone(),
        }),
        ..State::default()
    };
    let mut c = Container::adopt(paths, &name, state)?;
    c.journal(Resource::Dir { path: dir.clone() })?;
    c.finish(Stage::Load)?;
    let made = (|| -> Result<()> {
        crate::stage::cgroup::run(k, &mut c, cgroup_root, plan.limits)?;
        if let Some(shares) = plan.cpu_shares {
            cpu_shares(k, &c, shares)?;
        }
        memory_extras(k, &c, &plan)?;
        let fifo = c.path(FIFO);
        c.journal(Resource::File { path: fifo.clone() })?;
        k.mknodat(
            &fifo,
            libc::S_IFIFO | 0o600,
            0,
            0,
            "the exec fifo: PID 1 waits on it until `stepctr start` writes a byte",
        )?;
        let pid = spawn(k, &c, &plan, filter.as_ref(), &fifo, o)?;
        c.state.pid = Some(pid);
        c.journal(Resource::Process {
            pid,
            start_time: crate::state::process_start_time(pid).unwrap_or(0),
        })?;
        pin_namespaces(k, &mut c, &plan, pid)?;
        c.finish(Stage::Ns)?;
        c.finish(Stage::Fs)?;
        if let Some(f) = &o.pid_file {
            write_pid_file(f, pid)?;
        }
        Ok(())
    })();
    if let Err(e) = made {
        drop(c);
        let _ = crate::remove::remove_with(k, paths, &name, true);
        return Err(e);
    }
    k.note(&format!(
        "created: PID 1 (host pid {}) waits on the exec fifo; `stepctr start {id}` lets it exec",
        c.state.pid.unwrap_or(0)
    ));
    Ok(())
}

/// The namespaces PID 1 made, pinned as files in the state directory's ns/ (as the ns stage
/// pins them: `ls -l RUN/ID/ns`, `nsenter --net=RUN/ID/ns/net`), journalled for `delete`.
/// A mount namespace the kernel numbers older than ours cannot be pinned in ours (it could
/// make a loop): it then lives as long as PID 1, with a note.
fn pin_namespaces(k: &dyn Kernel, c: &mut Container, plan: &Plan, pid: i32) -> Result<()> {
    let dir = c.path("ns");
    let new: Vec<&config::Namespace> = plan
        .namespaces
        .iter()
        .filter(|n| n.path.is_none())
        .collect();
    c.journal_all(new.iter().map(|n| Resource::Mount {
        path: dir.join(n.name),
    }))?;
    k.mkdirat(&dir, 0o700, "the namespace files")?;
    c.state.ns_dir = Some(dir.clone());
    for n in new {
        let file = dir.join(n.name);
        let fd = k.openat(
            &file,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o400,
            "an empty file to bind the namespace on",
        )?;
        k.close(fd)?;
        match k.mount(
            Some(&format!("/proc/{pid}/ns/{}", n.name)),
            &file,
            None,
            libc::MS_BIND,
            None,
            "pin the container's namespace: it lives as long as this mount",
        ) {
            Err(e) if n.flag == libc::CLONE_NEWNS && e.errno == Errno::EINVAL => {
                k.note("the kernel numbers that mount namespace older than ours: not pinned (it lives as long as PID 1)");
                k.unlinkat(&file, 0, "no pin: no file")?;
            }
            r => r?,
        }
    }
    c.save()
}

/// `--pid-file`: written atomically, as runc does (conmon reads it as soon as create exits).
pub(crate) fn write_pid_file(f: &Path, pid: i32) -> Result<()> {
    let tmp = f.with_extension("stepctr-tmp");
    std::fs::write(&tmp, pid.to_string()).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, f).with_context(|| format!("write {}", f.display()))
}

/// linux.cgroupsPath, relative to each controller's root. With --systemd-cgroup,
/// `slice:prefix:name` is read as the cgroupfs path `slice/prefix-name.scope`.
fn cgroups_path(k: &dyn Kernel, p: &Path, systemd: bool) -> Result<PathBuf> {
    let s = p.to_string_lossy();
    let rel = if systemd {
        let parts: Vec<&str> = s.split(':').collect();
        let [slice, prefix, name] = parts[..] else {
            bail!("config.json: linux.cgroupsPath {s:?}: with --systemd-cgroup give slice:prefix:name");
        };
        let slice = if slice.is_empty() {
            "system.slice"
        } else {
            slice
        };
        let p = PathBuf::from(slice).join(format!("{prefix}-{name}.scope"));
        k.note(&format!(
            "--systemd-cgroup: stepctr has no systemd driver: {s} is the cgroupfs path {}",
            p.display()
        ));
        p
    } else {
        PathBuf::from(s.trim_start_matches('/'))
    };
    if rel
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        bail!("config.json: linux.cgroupsPath {s:?} must not contain `..`");
    }
    Ok(rel)
}

/// linux.resources.memory.reservation and .swap, beside the limit the cgroup stage wrote.
fn memory_extras(k: &dyn Kernel, c: &Container, plan: &Plan) -> Result<()> {
    let Some(g) = &c.state.cgroup else {
        return Ok(());
    };
    for d in &g.dirs {
        let v1 = d.join("memory.limit_in_bytes").exists();
        let v2 = d.join("memory.max").exists();
        if let Some(r) = plan.memory_reservation {
            let (file, why) = if v1 {
                ("memory.soft_limit_in_bytes", "memory.reservation: under memory pressure, the kernel reclaims down to this first")
            } else if v2 {
                (
                    "memory.low",
                    "memory.reservation: memory the kernel protects from reclaim",
                )
            } else {
                continue;
            };
            k.write_file(&d.join(file), &r.to_string(), why)?;
        }
        if let Some(swap) = plan.memory_swap {
            if v1 {
                let file = d.join("memory.memsw.limit_in_bytes");
                if !file.exists() {
                    bail!("config.json: linux.resources.memory.swap: this kernel does not account swap (memory.memsw.* is missing: boot with swapaccount=1)");
                }
                k.write_file(
                    &file,
                    &swap.to_string(),
                    "memory.swap: memory + swap together",
                )?;
            } else if v2 {
                let limit = plan.limits.memory.map_or(0, |m| m as i64);
                let value = if swap < 0 {
                    "max".to_string()
                } else {
                    (swap - limit).max(0).to_string()
                };
                k.write_file(
                    &d.join("memory.swap.max"),
                    &value,
                    "memory.swap less the memory limit: swap alone (cgroup v2)",
                )?;
            }
        }
    }
    Ok(())
}

/// linux.resources.cpu.shares: cpu.shares on v1 (cpu.weight on v2, converted as runc does).
fn cpu_shares(k: &dyn Kernel, c: &Container, shares: u64) -> Result<()> {
    let Some(g) = &c.state.cgroup else {
        return Ok(());
    };
    for d in &g.dirs {
        if d.join("cpu.shares").exists() {
            k.write_file(
                &d.join("cpu.shares"),
                &shares.to_string(),
                "CPU weight against the other cgroups (linux.resources.cpu.shares)",
            )?;
        } else if d.join("cpu.weight").exists() {
            let w = 1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142;
            k.write_file(
                &d.join("cpu.weight"),
                &w.to_string(),
                "CPU weight (cpu.shares converted to cgroup v2's scale)",
            )?;
        }
    }
    Ok(())
}

/// Fork PID 1 into its PID namespace; returns its host pid once it waits on the fifo.
fn spawn(
    k: &dyn Kernel,
    c: &Container,
    plan: &Plan,
    filter: Option<&Filter>,
    fifo: &Path,
    o: &Options,
) -> Result<i32> {
    // Namespaces joined by path: opened now, joined by PID 1 (the PID namespace by us, here:
    // setns(CLONE_NEWPID), like unshare, only moves our next child).
    let mut joined = Vec::new();
    for ns in plan.namespaces.iter().filter(|n| n.path.is_some()) {
        let path = ns.path.as_ref().unwrap();
        let fd = k.openat(
            path,
            libc::O_RDONLY | libc::O_CLOEXEC,
            0,
            "a namespace to join (linux.namespaces path)",
        )?;
        joined.push((fd, ns.flag));
    }
    let close = |joined: &[(i32, i32)]| {
        for (fd, _) in joined {
            let _ = k.close(*fd);
        }
    };
    // Opened here, O_RDWR (a fifo opened so never blocks): PID 1 inherits it and waits on it.
    // In a user namespace, PID 1 could not open it in our 0700 state directory itself.
    let fifo = k.openat(
        fifo,
        libc::O_RDWR | libc::O_CLOEXEC,
        0,
        "the exec fifo, for PID 1 to inherit and wait on",
    )?;
    let console = match (&o.console_socket, plan.terminal) {
        (Some(path), true) => match console_socket(k, path) {
            Ok(fd) => Some(fd),
            Err(e) => {
                let _ = k.close(fifo);
                close(&joined);
                return Err(e);
            }
        },
        _ => None,
    };
    let result = (|| -> Result<i32> {
        let dirs = c
            .state
            .cgroup
            .as_ref()
            .map(|g| g.dirs.clone())
            .unwrap_or_default();
        let entry = Entry::open(
            k,
            &dirs,
            crate::stage::cgroup::is_v2(c.state.cgroup.as_ref()),
        )?;
        if plan.namespace(libc::CLONE_NEWUSER).is_some() {
            let r = spawn_in_userns(k, plan, &entry, &joined, &mut || {
                pid1(k, plan, filter, fifo, None, &joined, console, o)
            });
            entry.close(k);
            return r;
        }
        if let Err(e) = enter_pidns(k, plan, &joined) {
            entry.close(k);
            return Err(e);
        }
        let child = entry.spawn(k, "the future PID 1", &mut || {
            pid1(k, plan, filter, fifo, Some(&entry), &joined, console, o)
        });
        entry.close(k);
        let child = child?;
        if let Some(err) = k.child_error(&child) {
            let _ = k.wait4(child.pid, 0, "reap the failed child");
            bail!("create the container: {err}");
        }
        Ok(child.pid)
    })();
    close(&joined);
    if let Some(fd) = console {
        let _ = k.close(fd);
    }
    let _ = k.close(fifo);
    result
}

/// A connection to --console-socket (create and exec): the process with the terminal sends
/// its pty's master there ([`terminal`]).
pub(crate) fn console_socket(k: &dyn Kernel, path: &Path) -> Result<i32> {
    let fd = k.unix_socket("a connection to --console-socket: the pty's master is sent there")?;
    if let Err(e) = k.connect_unix(
        fd,
        path,
        "the caller (conmon, containerd-shim) listens there for the terminal",
    ) {
        let _ = k.close(fd);
        return Err(e.into());
    }
    Ok(fd)
}

/// The PID namespace our next child goes into: a new one (unshare), one joined by path
/// (setns), or none (the host's).
fn enter_pidns(k: &dyn Kernel, plan: &Plan, joined: &[(i32, i32)]) -> Result<()> {
    match plan.namespace(libc::CLONE_NEWPID) {
        Some(n) if n.path.is_none() => k.unshare(
            libc::CLONE_NEWPID,
            "a new PID namespace for our next child, its PID 1",
        )?,
        Some(_) => {
            let fd = joined
                .iter()
                .find(|(_, f)| *f == libc::CLONE_NEWPID)
                .context("the PID namespace to join")?
                .0;
            k.setns(
                fd,
                libc::CLONE_NEWPID,
                "our next child goes into this PID namespace (linux.namespaces path)",
            )?;
        }
        None => k.note("no pid namespace in config.json: the container's process is in the host's"),
    }
    Ok(())
}

/// With a user namespace (as runc does it): the namespaces PID 1 makes must be owned by it
/// (its /proc needs a PID namespace of its user namespace). A keeper unshares the user
/// namespace and stops; we write its maps from outside (linux.uidMappings, gidMappings); a
/// helper joins our cgroup, enters the user namespace (there is no way back: stepctr stays
/// out), makes the PID namespace there and forks PID 1, tells us its pid and exits. PID 1 is
/// then an orphan, as it is after `create` exits anyway.
fn spawn_in_userns(
    k: &dyn Kernel,
    plan: &Plan,
    entry: &Entry,
    joined: &[(i32, i32)],
    body: &mut crate::kernel::ChildBody<'_>,
) -> Result<i32> {
    let user = plan
        .namespace(libc::CLONE_NEWUSER)
        .context("no user namespace")?;
    let mut keeper = None;
    let user_fd = match &user.path {
        Some(_) => {
            joined
                .iter()
                .find(|(_, f)| *f == libc::CLONE_NEWUSER)
                .context("the user namespace to join")?
                .0
        }
        None => {
            let child = k.spawn(
                "a keeper: it makes the user namespace and waits while we write its maps",
                &mut || {
                    k.prctl(
                        libc::PR_SET_PDEATHSIG,
                        libc::SIGKILL as u64,
                        "die with create",
                    )?;
                    k.unshare(libc::CLONE_NEWUSER, "the container's user namespace")?;
                    loop {
                        crate::kernel::host::stop_self();
                    }
                },
            )?;
            let _ = k.close(child.err_fd.replace(-1));
            keeper = Some(child.pid);
            let fd = (|| -> Result<i32> {
                match k.wait4(
                    child.pid,
                    libc::WUNTRACED,
                    "wait for the keeper to stop in its user namespace",
                )? {
                    crate::kernel::WaitStatus::Stopped(_) => {}
                    other => bail!("the user namespace's keeper ended: {other:?}"),
                }
                let maps = crate::userns::UserNs {
                    uid_map: plan.uid_map.clone(),
                    gid_map: plan.gid_map.clone(),
                    keeper: None,
                    rootless: false,
                };
                maps.write_maps(k, child.pid)?;
                Ok(k.openat(
                    &PathBuf::from(format!("/proc/{}/ns/user", child.pid)),
                    libc::O_RDONLY | libc::O_CLOEXEC,
                    0,
                    "the new user namespace, for the helper to enter",
                )?)
            })();
            match fd {
                Ok(fd) => fd,
                Err(e) => {
                    let _ = k.kill(child.pid, libc::SIGKILL, "the keeper is not needed");
                    let _ = k.wait4(child.pid, 0, "reap the keeper");
                    return Err(e);
                }
            }
        }
    };
    let shared = crate::kernel::host::SharedPath::new();
    let helper = entry.spawn(
        k,
        "a helper: it enters the user namespace and forks PID 1 there",
        &mut || {
            entry.join(k, "join the container's cgroup (PID 1 is born in it)")?;
            k.setns(
                user_fd,
                libc::CLONE_NEWUSER,
                "enter the container's user namespace: what we make now is owned by it",
            )?;
            // Root of the user namespace (uid 0 inside): what PID 1 makes (mount points,
            // device files) then belongs to a uid that exists in there.
            crate::userns::become_root(k, false)?;
            enter_pidns(k, plan, joined)?;
            let child = k.spawn("the future PID 1", body)?;
            if let Some(err) = k.child_error(&child) {
                let _ = k.wait4(child.pid, 0, "reap the failed child");
                bail!("{err}");
            }
            shared.set(Path::new(&child.pid.to_string()));
            Ok(())
        },
    );
    let result = (|| -> Result<i32> {
        let helper = helper?;
        let err = k.child_error(&helper);
        let _ = k.wait4(helper.pid, 0, "reap the helper (PID 1 is an orphan now)");
        if let Some(err) = err {
            bail!("create the container: {err}");
        }
        shared
            .get()
            .and_then(|p| p.to_str()?.parse().ok())
            .context("the helper did not say PID 1's pid")
    })();
    if let Some(pid) = keeper {
        let _ = k.close(user_fd);
        let _ = k.kill(
            pid,
            libc::SIGKILL,
            "PID 1 holds the user namespace now: the keeper goes",
        );
        let _ = k.wait4(pid, 0, "reap the keeper");
    }
    result
}

/// The per-mount flags of the mount at `point` (from our mountinfo, the last mount there),
/// which a bind remount must repeat: in a user namespace the kernel refuses to drop flags
/// that a more privileged namespace set (nosuid, nodev, noexec, the atime mode).
fn kept_flags_at(point: &Path) -> u64 {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = point.to_string_lossy();
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 5 && f[4] == want).then(|| crate::stage::fs::kept_flags(f[5]))
        })
        .next_back()
        .unwrap_or(libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC)
}

fn via(fd: i32) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{fd}"))
}

type Filter = std::sync::Arc<Vec<crate::kernel::BpfInsn>>;

const NO_SYMLINKS: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_SYMLINKS;

/// What PID 1 does before it waits on the fifo (it runs in the child: errors go to create).
#[allow(clippy::too_many_arguments)]
fn pid1(
    k: &dyn Kernel,
    plan: &Plan,
    filter: Option<&Filter>,
    fifo_fd: i32,
    entry: Option<&Entry>,
    joined: &[(i32, i32)],
    console: Option<i32>,
    o: &Options,
) -> Result<()> {
    crate::stage::start::not_dumpable(k)?;
    if let Some(entry) = entry {
        entry.join(k, "join the container's cgroup before anything else runs")?;
    }
    // Join by path: mount last (after it, paths are the other namespace's).
    let mut order: Vec<&(i32, i32)> = joined
        .iter()
        .filter(|(_, f)| *f != libc::CLONE_NEWPID && *f != libc::CLONE_NEWUSER)
        .collect();
    order.sort_by_key(|(_, f)| *f == libc::CLONE_NEWNS);
    for (fd, flag) in order {
        k.setns(*fd, *flag, "join the namespace config.json names by path")?;
    }
    let new: i32 = plan
        .namespaces
        .iter()
        .filter(|n| {
            n.path.is_none() && n.flag != libc::CLONE_NEWPID && n.flag != libc::CLONE_NEWUSER
        })
        .fold(0, |a, n| a | n.flag);
    if new != 0 {
        k.unshare(
            new,
            "the container's new namespaces (linux.namespaces without a path)",
        )?;
    }
    if plan
        .namespace(libc::CLONE_NEWNS)
        .is_some_and(|n| n.path.is_none())
    {
        k.mount(
            None,
            Path::new("/"),
            None,
            libc::MS_REC | libc::MS_SLAVE,
            None,
            "no mount event of ours reaches the host (rslave, as runc)",
        )?;
    }
    k.mount(
        Some(&plan.rootfs.to_string_lossy()),
        &plan.rootfs,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
        "the bundle's rootfs bound onto itself: pivot_root needs a mount point",
    )?;
    let root = k.openat(
        &plan.rootfs,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
        "the new root: every mount point is resolved inside it",
    )?;
    let result = (|| -> Result<Vec<PathBuf>> {
        let mut ro_after = Vec::new();
        for m in &plan.mounts {
            mount_one(k, root, plan, m, &mut ro_after)
                .with_context(|| format!("mount {}", m.destination.display()))?;
        }
        let dev_bound = plan
            .mounts
            .iter()
            .any(|m| m.destination == Path::new("/dev") && m.is_bind());
        if !dev_bound {
            devices(k, root, plan)?;
        }
        if let Some(h) = &plan.hostname {
            k.sethostname(h, "the container's hostname, in its UTS namespace")?;
        }
        if let Some(d) = &plan.domainname {
            k.write_file(
                Path::new("/proc/sys/kernel/domainname"),
                d,
                "the container's NIS domain name",
            )?;
        }
        Ok(ro_after)
    })();
    let closed = k.close(root);
    let ro_after = result?;
    closed?;
    if o.no_pivot {
        k.note("--no-pivot: stepctr always uses pivot_root (chroot leaves a way out)");
    }
    if plan.rootfs_propagation != libc::MS_REC | libc::MS_SLAVE
        && plan
            .namespace(libc::CLONE_NEWNS)
            .is_some_and(|n| n.path.is_none())
    {
        k.mount(
            None,
            &plan.rootfs,
            None,
            plan.rootfs_propagation,
            None,
            "linux.rootfsPropagation",
        )?;
    }
    crate::stage::start::pivot_into(k, &plan.rootfs)?;
    let root = k.openat(
        Path::new("/"),
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
        "the container's root",
    )?;
    let after = (|| -> Result<()> {
        for path in &ro_after {
            let fd = k.openat2(
                root,
                path,
                libc::O_PATH | libc::O_CLOEXEC,
                0,
                NO_SYMLINKS,
                "a mount to make read-only",
            )?;
            let kept = kept_flags_at(&Path::new("/").join(path));
            let r = k.mount(
                None,
                &via(fd),
                None,
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | kept,
                None,
                "read-only, as config.json asks (ro; the mount's other flags kept)",
            );
            k.close(fd)?;
            r?;
        }
        if plan.readonly {
            k.mount(
                None,
                Path::new("/"),
                None,
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | kept_flags_at(Path::new("/")),
                None,
                "root.readonly: the container's / is read-only",
            )?;
        }
        for (key, value) in &plan.sysctl {
            let file = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
            k.write_file(
                &file,
                value,
                "a sysctl of the container's namespaces (linux.sysctl)",
            )?;
        }
        for p in &plan.readonly_paths {
            crate::security::paths::read_only(k, root, p)
                .with_context(|| format!("make {p} read-only"))?;
        }
        for p in &plan.masked_paths {
            crate::security::paths::mask(k, root, p).with_context(|| format!("mask {p}"))?;
        }
        if let Some(sock) = console {
            terminal(k, root, sock, plan)?;
        }
        Ok(())
    })();
    let closed = k.close(root);
    after?;
    closed?;
    if let Some(adj) = plan.oom_score_adj {
        k.write_file(
            Path::new("/proc/self/oom_score_adj"),
            &adj.to_string(),
            "process.oomScoreAdj",
        )?;
    }
    for (res, soft, hard) in &plan.rlimits {
        k.prlimit(*res, *soft, *hard, "a resource limit of process.rlimits")?;
    }
    if let Some(mask) = plan.umask {
        k.umask(mask, "process.user.umask")?;
    }
    k.chdir(&plan.cwd, "process.cwd")?;
    crate::stage::start::check_workdir(k, &plan.cwd)?;
    let mut env = plan.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        // As runc: HOME from the container's /etc/passwd, else /.
        env.push(format!("HOME={}", home_of(plan.uid)));
    }
    let path = crate::stage::start::resolve_command(&plan.args[0], &env)?;
    // As runc: a command that is not there fails `create`, not `start`.
    if let Err(e) = std::fs::metadata(&path) {
        bail!("exec the container's command: {}: {e}", path.display());
    }
    // Without no_new_privs, installing a filter needs CAP_SYS_ADMIN: before the capabilities go.
    if let (Some(f), false) = (filter, plan.no_new_privileges) {
        k.seccomp_filter(
            0,
            f,
            "linux.seccomp: the system call filter (before the capabilities go)",
        )?;
    }
    become_user(k, plan)?;
    // Everything of ours but stdio, the preserved fds, the fifo and the narration's own fd
    // goes now (so nothing of the host's leaks), and with it every copy of an error channel
    // to create, which then knows we are ready.
    let keep_from = 3 + o.preserve_fds;
    let mut keep: Vec<u32> = std::iter::once(fifo_fd)
        .chain(k.narration_fds())
        .filter(|fd| *fd >= 0 && *fd as u32 >= keep_from)
        .map(|fd| fd as u32)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first = keep_from;
    for fd in keep.iter().copied().chain(std::iter::once(u32::MAX)) {
        if fd > first {
            let last = if fd == u32::MAX { u32::MAX } else { fd - 1 };
            k.close_range(
                first,
                last,
                0,
                "close every fd of ours but stdio, --preserve-fds, the fifo and the narration's: create learns we are ready",
            )?;
        }
        first = fd.saturating_add(1);
    }
    let n = k.read(
        fifo_fd,
        1,
        "wait for `stepctr start` (a byte in the exec fifo)",
    )?;
    if n == 0 {
        bail!("the exec fifo closed without a byte");
    }
    k.close(fifo_fd)?;
    if plan.no_new_privileges {
        crate::security::caps::no_new_privs(k)?;
        if let Some(f) = filter {
            k.seccomp_filter(
                0,
                f,
                "linux.seccomp: the system call filter, the last step before execve",
            )?;
        }
    }
    if let Err(e) = k.execve(&path, &plan.args, &env, "become the container's command") {
        eprintln!("stepctr: exec {}: {e}", plan.args[0]);
        return Err(e.into());
    }
    Ok(())
}

/// process.terminal: a pty in the container's own devpts; its master goes to the caller over
/// --console-socket (SCM_RIGHTS, as runc sends it to conmon), its slave becomes our
/// controlling terminal and stdio.
pub(crate) fn terminal(k: &dyn Kernel, root: i32, sock: i32, plan: &Plan) -> Result<()> {
    let pty = crate::tty::open_pty_in(k, Some(root))?;
    if let Some((rows, cols)) = plan.console_size {
        k.tty(
            pty.master,
            crate::kernel::TtyOp::SetWinsize { rows, cols },
            "process.consoleSize",
        )?;
    }
    let sent = k.send_fd(
        sock,
        pty.master,
        "the pty's master to the caller: it relays the terminal",
    );
    k.close(pty.master)?;
    k.close(sock)?;
    sent?;
    crate::tty::take_terminal(k, pty)?;
    k.close(pty.slave)?;
    Ok(())
}

/// The home directory of `uid` in the container's /etc/passwd (we are in its root now).
pub(crate) fn home_of(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string())
}

/// process.user and process.capabilities: the bounding set shrinks while we are root, the
/// ids change with PR_SET_KEEPCAPS on, then the three sets and the ambient set.
pub(crate) fn become_user(k: &dyn Kernel, plan: &Plan) -> Result<()> {
    let caps = plan.caps;
    for cap in 0..=40u32 {
        if caps.bounding & (1 << cap) == 0 {
            match k.prctl(
                libc::PR_CAPBSET_DROP,
                cap as u64,
                "drop from the bounding set: never to be regained",
            ) {
                Err(e) if e.errno == Errno::EINVAL => break,
                r => r?,
            }
        }
    }
    k.prctl(
        libc::PR_SET_KEEPCAPS,
        1,
        "keep the permitted set across the change of uid",
    )?;
    k.setgroups(&plan.additional_gids, "process.user.additionalGids")?;
    k.setresgid(plan.gid, "process.user.gid")?;
    k.setresuid(plan.uid, "process.user.uid")?;
    k.capset(
        crate::kernel::CapSets {
            effective: caps.effective,
            permitted: caps.permitted,
            inheritable: caps.inheritable,
        },
        "process.capabilities: effective, permitted, inheritable",
    )?;
    for cap in 0..=40u32 {
        if caps.ambient & (1 << cap) != 0 {
            // Only a capability both permitted and inheritable can be ambient: runc goes on
            // without it (its warning "can't raise ambient capability"), and so does stepctr.
            if let Err(e) = k.cap_ambient(
                libc::PR_CAP_AMBIENT_RAISE,
                cap,
                "process.capabilities.ambient: kept across execve (needs it inheritable too)",
            ) {
                if e.errno != Errno::EPERM {
                    return Err(e.into());
                }
            }
        }
    }
    Ok(())
}

/// Open the directory `rel` of the root (O_PATH), making it and its missing parents (0755),
/// each step resolved inside the root without symlinks (`fs::mount_dir`).
fn mkdir_all(k: &dyn Kernel, root: i32, rel: &Path, mode: u32) -> Result<i32> {
    match crate::stage::fs::mount_dir(k, root, rel, mode) {
        Err(e)
            if e.downcast_ref::<crate::kernel::SysError>()
                .is_some_and(|s| s.errno == Errno::ENOENT) => {}
        r => return r,
    }
    let mut at = PathBuf::new();
    let parts: Vec<_> = rel.components().collect();
    for (i, c) in parts.iter().enumerate() {
        at.push(c);
        if i + 1 < parts.len() {
            let fd = crate::stage::fs::mount_dir(k, root, &at, 0o755)?;
            k.close(fd)?;
        }
    }
    crate::stage::fs::mount_dir(k, root, rel, mode)
}

/// Open (making it if missing) the mount point of `m` inside the root: a directory, or a file
/// when a file is bind-mounted.
fn mount_point(k: &dyn Kernel, root: i32, rel: &Path, file: bool) -> Result<i32> {
    if !file {
        return mkdir_all(k, root, rel, 0o755);
    }
    let flags = libc::O_PATH | libc::O_CLOEXEC;
    match k.openat2(root, rel, flags, 0, NO_SYMLINKS, "the mount point (a file)") {
        Err(e) if e.errno == Errno::ENOENT => {
            if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                let fd = mkdir_all(k, root, parent, 0o755)?;
                k.close(fd)?;
            }
            let fd = k.openat2(
                root,
                rel,
                libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
                0o644,
                NO_SYMLINKS,
                "make the file to mount on",
            )?;
            k.close(fd)?;
            Ok(k.openat2(root, rel, flags, 0, NO_SYMLINKS, "the new mount point")?)
        }
        r => Ok(r?),
    }
}

fn mount_one(
    k: &dyn Kernel,
    root: i32,
    plan: &Plan,
    m: &MountSpec,
    ro_after: &mut Vec<PathBuf>,
) -> Result<()> {
    let rel = m
        .destination
        .strip_prefix("/")
        .unwrap_or(&m.destination)
        .to_path_buf();
    if m.typ == "cgroup" || m.typ == "cgroup2" {
        return mount_cgroup(k, root, &rel, m, ro_after);
    }
    let flags = m.flags & !libc::MS_REMOUNT;
    if m.is_bind() {
        let source = if Path::new(&m.source).is_absolute() {
            PathBuf::from(&m.source)
        } else {
            plan.rootfs
                .parent()
                .unwrap_or(Path::new("/"))
                .join(&m.source)
        };
        let file = !std::fs::metadata(&source)
            .with_context(|| format!("bind source {}", source.display()))?
            .is_dir();
        let fd = mount_point(k, root, &rel, file)?;
        let r = k.mount(
            Some(&source.to_string_lossy()),
            &via(fd),
            None,
            flags & (libc::MS_BIND | libc::MS_REC),
            None,
            "a bind mount of config.json",
        );
        k.close(fd)?;
        r?;
        let rest = flags & !(libc::MS_BIND | libc::MS_REC);
        if rest != 0 || m.propagation != 0 {
            let top = k.openat2(
                root,
                &rel,
                libc::O_PATH | libc::O_CLOEXEC,
                0,
                NO_SYMLINKS,
                "the bind mount just made",
            )?;
            let mut r = Ok(());
            if rest != 0 {
                r = k
                    .mount(
                        None,
                        &via(top),
                        None,
                        libc::MS_BIND | libc::MS_REMOUNT | rest,
                        None,
                        "the bind mount's own flags (a remount: a bind takes none at first)",
                    )
                    .map_err(anyhow::Error::from);
            }
            if r.is_ok() && m.propagation != 0 {
                r = k
                    .mount(
                        None,
                        &via(top),
                        None,
                        m.propagation,
                        None,
                        "the bind mount's propagation",
                    )
                    .map_err(anyhow::Error::from);
            }
            k.close(top)?;
            r?;
        }
        return Ok(());
    }
    let fd = mount_point(k, root, &rel, false)?;
    let data = (!m.data.is_empty()).then_some(m.data.as_str());
    let typ = if m.typ == "shm" {
        "tmpfs"
    } else {
        m.typ.as_str()
    };
    let source = if m.source.is_empty() {
        typ
    } else {
        m.source.as_str()
    };
    let r = k.mount(
        Some(source),
        &via(fd),
        Some(typ),
        flags,
        data,
        "a mount of config.json",
    );
    k.close(fd)?;
    r?;
    if m.propagation != 0 {
        let top = k.openat2(
            root,
            &rel,
            libc::O_PATH | libc::O_CLOEXEC,
            0,
            NO_SYMLINKS,
            "the mount just made",
        )?;
        let r = k.mount(
            None,
            &via(top),
            None,
            m.propagation,
            None,
            "the mount's propagation",
        );
        k.close(top)?;
        r?;
    }
    Ok(())
}

/// A `cgroup` mount on cgroup v1 (as runc): a tmpfs, and in it each hierarchy's directory of
/// the container's own cgroup bound (the container sees its cgroup as the top); `cgroup2` or
/// a pure v2 host: the cgroup2 filesystem (of our cgroup namespace, if we have one).
fn mount_cgroup(
    k: &dyn Kernel,
    root: i32,
    rel: &Path,
    m: &MountSpec,
    ro_after: &mut Vec<PathBuf>,
) -> Result<()> {
    let v2 = k.statfs(Path::new("/sys/fs/cgroup"), "cgroup v1 or v2 on this host?")? == 0x6367_7270;
    let fd = mkdir_all(k, root, rel, 0o755)?;
    let flags = m.flags & !(libc::MS_RDONLY | libc::MS_REMOUNT);
    if v2 || m.typ == "cgroup2" {
        let r = k.mount(
            Some("cgroup2"),
            &via(fd),
            Some("cgroup2"),
            m.flags & !libc::MS_REMOUNT,
            None,
            "the cgroup2 filesystem",
        );
        k.close(fd)?;
        return Ok(r?);
    }
    let r = k.mount(
        Some("tmpfs"),
        &via(fd),
        Some("tmpfs"),
        flags,
        Some("mode=755"),
        "cgroup v1: a tmpfs holding one directory per hierarchy",
    );
    k.close(fd)?;
    r?;
    for (dir, path) in v1_hierarchies() {
        let host = Path::new("/sys/fs/cgroup")
            .join(&dir)
            .join(path.trim_start_matches('/'));
        if !host.is_dir() {
            continue;
        }
        let at = rel.join(&dir);
        let fd = mkdir_all(k, root, &at, 0o755)?;
        let r = k.mount(
            Some(&host.to_string_lossy()),
            &via(fd),
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
            "the container's own cgroup of this hierarchy",
        );
        k.close(fd)?;
        r?;
        if m.flags & libc::MS_RDONLY != 0 {
            ro_after.push(at.clone());
        }
        // cpu,cpuacct is also reachable as cpu and cpuacct.
        if dir.contains(',') {
            for single in dir.split(',') {
                let _ = k.symlinkat_in(
                    Path::new(&dir),
                    root,
                    &rel.join(single),
                    "a link per controller of a shared hierarchy",
                );
            }
        }
    }
    if m.flags & libc::MS_RDONLY != 0 {
        ro_after.push(rel.to_path_buf());
    }
    Ok(())
}

/// The host's cgroup v1 hierarchies under /sys/fs/cgroup, in the host's mount order (as runc
/// mounts them), each with our own cgroup in it (from /proc/self/cgroup): (directory, path).
fn v1_hierarchies() -> Vec<(String, String)> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split(' ');
        if r.next() != Some("cgroup") {
            continue;
        }
        let Some(point) = left.split(' ').nth(4) else {
            continue;
        };
        let Some(dir) = point.strip_prefix("/sys/fs/cgroup/") else {
            continue;
        };
        let opts: Vec<&str> = r.nth(1).unwrap_or_default().split(',').collect();
        let path = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            let all = !ctrls.is_empty() && ctrls.split(',').all(|c| opts.contains(&c));
            all.then(|| path.to_string())
        });
        if let Some(path) = path {
            if !dir.contains('/') && !out.iter().any(|(d, _)| d == dir) {
                out.push((dir.to_string(), path));
            }
        }
    }
    out
}

/// runc's default devices and linux.devices, made in the container's /dev; the usual links.
fn devices(k: &dyn Kernel, root: i32, plan: &Plan) -> Result<()> {
    let old = k.umask(0, "device nodes with exactly the modes asked for")?;
    let result = (|| -> Result<()> {
        let mut all: Vec<config::Device> = DEFAULT_DEVICES
            .iter()
            .map(|(n, major, minor)| config::Device {
                path: PathBuf::from(format!("/dev/{n}")),
                kind: libc::S_IFCHR,
                major: *major,
                minor: *minor,
                mode: 0o666,
                uid: 0,
                gid: 0,
            })
            .collect();
        for d in &plan.devices {
            all.retain(|x| x.path != d.path);
            all.push(d.clone());
        }
        for d in &all {
            let rel = d.path.strip_prefix("/").unwrap_or(&d.path);
            if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                let fd = mkdir_all(k, root, parent, 0o755)?;
                k.close(fd)?;
            }
            if plan.namespace(libc::CLONE_NEWUSER).is_some() {
                // No mknod in a user namespace: the host's node, bind-mounted on an empty
                // file (as runc does; the host's permissions still apply).
                let fd = match k.openat2(
                    root,
                    rel,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                    0o666,
                    NO_SYMLINKS,
                    "user namespace: an empty file to bind the host's device node on",
                ) {
                    Err(e) if e.errno == Errno::EEXIST => continue,
                    r => r?,
                };
                let r = k.mount(
                    Some(&d.path.to_string_lossy()),
                    &via(fd),
                    None,
                    libc::MS_BIND,
                    None,
                    "the host's device node, seen here",
                );
                k.close(fd)?;
                r?;
                continue;
            }
            match k.mknodat_in(
                root,
                rel,
                d.kind | d.mode,
                d.major,
                d.minor,
                "a device node (runc's defaults and linux.devices)",
            ) {
                Err(e) if e.errno == Errno::EEXIST => continue,
                r => r?,
            }
            if d.uid != 0 || d.gid != 0 {
                k.fchownat(
                    root,
                    rel,
                    d.uid,
                    d.gid,
                    libc::AT_SYMLINK_NOFOLLOW,
                    "the device's owner (linux.devices uid/gid)",
                )?;
            }
        }
        for (name, target) in [
            ("dev/fd", "/proc/self/fd"),
            ("dev/stdin", "/proc/self/fd/0"),
            ("dev/stdout", "/proc/self/fd/1"),
            ("dev/stderr", "/proc/self/fd/2"),
        ] {
            match k.symlinkat_in(
                Path::new(target),
                root,
                Path::new(name),
                "the usual /dev links",
            ) {
                Err(e) if e.errno == Errno::EEXIST => {}
                r => r?,
            }
        }
        if plan
            .mounts
            .iter()
            .any(|m| m.destination == Path::new("/dev/pts"))
        {
            let _ = k.unlinkat_in(
                root,
                Path::new("dev/ptmx"),
                0,
                "/dev/ptmx becomes a link into the container's devpts",
            );
            k.symlinkat_in(
                Path::new("pts/ptmx"),
                root,
                Path::new("dev/ptmx"),
                "/dev/ptmx opens the container's own devpts",
            )?;
        }
        Ok(())
    })();
    k.umask(old, "back to the umask we had")?;
    result
}
