//! Stage 6, start: the command becomes PID 1 of the container.
//!
//! stepctr forks the container's shim (see `shim.rs`), which makes the container's PID
//! namespace (unshare(CLONE_NEWPID) only changes where the *next child* goes: the shim itself
//! stays where it is), then forks; that child is PID 1 of the new namespace. It joins the
//! cgroup (on pure v2 it is born in it instead: clone3(CLONE_INTO_CGROUP), see
//! `cgroup::Entry`) → pins its PID namespace next to the others → joins the other namespaces
//! → sets the hostname → mounts /proc (it must be mounted by a process inside the PID
//! namespace, so it shows that namespace's processes), /sys and /dev/mqueue in the rootfs →
//! pivot_root into the overlay and detaches the old root → covers the dangerous parts of /proc
//! and /sys (`security::paths`) → chdir, checked to be inside the root → marks every fd of
//! its own close-on-exec → hardens itself (`security::before_exec`: capabilities with the `-u`
//! user switch among them, no_new_privs, seccomp) → detached, stdio to the log → exec the
//! command. The
//! shim waits for it: when PID 1 exits, the container has stopped; the shim records the exit
//! code, and an attached stepctr exits with it.

use crate::kernel::{Kernel, Sys, WaitStatus};
use crate::state::{Container, Resource, Stage};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything PID 1 needs, worked out before the fork.
#[derive(Debug, Clone)]
pub struct Plan {
    pub ns_dir: PathBuf,
    pub cgroups: Vec<PathBuf>,
    /// The cgroup layout is pure v2: PID 1 is born in its cgroup (see `cgroup::Entry`).
    pub cgroup_v2: bool,
    pub rootfs: PathBuf,
    pub hostname: String,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub workdir: PathBuf,
    /// `-u USER[:GROUP]`: who the command runs as (resolved inside the container; None = root).
    pub user: Option<String>,
    /// `-t`: the slave end of the container's pty (see `crate::tty`), taken by PID 1.
    pub tty: Option<crate::tty::Pty>,
    /// Capabilities, seccomp, masked paths (see `crate::security`).
    pub security: crate::security::Profile,
    /// In a user namespace (see `crate::userns`): the shim enters it (`ns/user`) first, and
    /// PID 1 becomes its root. `Some(true)`: rootless, `Some(false)`: root's `--userns`.
    pub userns: Option<bool>,
}

/// The order PID 1 joins the namespaces in. Mount goes last: after it, host paths are the
/// container's paths. (The PID namespace is made by the shim before the fork, the cgroup
/// namespace by PID 1 itself.)
const JOIN_ORDER: [(&str, i32); 4] = [
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("mnt", libc::CLONE_NEWNS),
];

pub fn plan(c: &Container, cmd: &[String]) -> Result<Plan> {
    let (Some(ns_dir), Some(rootfs)) = (c.state.ns_dir.clone(), c.state.rootfs.clone()) else {
        bail!(
            "stage `start` needs stage `fs` first: run `stepctr fs {}`",
            c.name
        );
    };
    let cfg = &c.state.config;
    let argv: Vec<String> = if cmd.is_empty() {
        cfg.entrypoint
            .iter()
            .chain(cfg.cmd.iter())
            .cloned()
            .collect()
    } else {
        cfg.entrypoint.iter().chain(cmd.iter()).cloned().collect()
    };
    if argv.is_empty() {
        bail!(
            "the image {} has no command: give one after `--`",
            c.state.image
        );
    }
    let mut env = cfg.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    env.retain(|e| !e.starts_with("HOSTNAME="));
    env.push(format!("HOSTNAME={}", c.name));
    Ok(Plan {
        ns_dir,
        cgroups: c
            .state
            .cgroup
            .as_ref()
            .map(|g| g.dirs.clone())
            .unwrap_or_default(),
        cgroup_v2: crate::stage::cgroup::is_v2(c.state.cgroup.as_ref()),
        rootfs,
        hostname: c.name.to_string(),
        argv,
        env,
        workdir: PathBuf::from(&cfg.workdir),
        user: None,
        tty: None,
        security: c.state.security.clone(),
        userns: c.state.userns.as_ref().map(|u| u.rootless),
    })
}

/// How `start` runs the command (flags of `start`, `all` and `run`).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Return once PID 1 runs; the shim stays and keeps its output in the log (`-d`).
    pub detach: bool,
    /// Extra environment (`-e KEY=VAL`), overriding the image's.
    pub env: Vec<String>,
    /// Working directory (`-w DIR`) instead of the image's.
    pub workdir: Option<String>,
    /// Hostname (`--hostname`) instead of the container's name.
    pub hostname: Option<String>,
    /// `--rm`: the container is removed once PID 1 has ended; detached the shim does it,
    /// attached stepctr does (and the shim does not record an exit nobody will read).
    pub remove_when_done: bool,
    /// `-u USER[:GROUP]`: run the command as this user instead of root.
    pub user: Option<String>,
    /// `-t`: give the container a pseudo-terminal (see `crate::tty`).
    pub tty: bool,
    /// `-i`: with `-t`, relay our stdin to the container's terminal (raw mode).
    pub interactive: bool,
    /// How the container is hardened (`--privileged`, `--cap-add`, `--security-opt`...).
    pub security: crate::security::Profile,
    /// `-p`: ports published on the host (see `crate::net::proxy`).
    pub publish: Vec<crate::net::proxy::Publish>,
}

/// Run the container's command as its PID 1 and wait for it; returns its exit code.
pub fn run(k: &dyn Kernel, c: &mut Container, cmd: &[String]) -> Result<i32> {
    run_with(k, c, cmd, &Options::default())
}

/// `run` with options: attached (wait, return PID 1's exit code) or detached (return 0 once
/// PID 1 runs).
pub fn run_with(k: &dyn Kernel, c: &mut Container, cmd: &[String], o: &Options) -> Result<i32> {
    super::header(
        k,
        Stage::Start,
        "the command becomes PID 1 of the container",
    );
    c.require_before(Stage::Start)?;
    c.state.security = o.security.clone();
    let mut plan = plan(c, cmd)?;
    for e in &o.env {
        let key = e.split('=').next().unwrap_or(e);
        plan.env.retain(|x| x.split('=').next() != Some(key));
        plan.env.push(e.clone());
    }
    if let Some(w) = &o.workdir {
        plan.workdir = PathBuf::from(w);
    }
    if let Some(h) = &o.hostname {
        plan.hostname = h.clone();
        crate::net::files::set_hostname(k, c, h)?;
    }
    plan.user = o.user.clone();
    if let Some(u) = &c.state.userns {
        crate::userns::check_keeper(c)?;
        if u.rootless {
            crate::userns::check_options(plan.user.as_deref(), o.tty)?;
        }
    }
    if !o.publish.is_empty() {
        publish(k, c, &o.publish)?;
    }
    // Mark the stage as begun: a second `start` must not try to reuse the PID namespace
    // (once its PID 1 has died it accepts no new process).
    c.finish(Stage::Start)?;
    let code = crate::shim::start(k, c, &plan, o)?;
    if o.detach {
        k.note(&format!(
            "the container runs in the background: `stepctr ps`, `stepctr logs {n}`, `stepctr stop {n}`",
            n = c.name
        ));
    } else {
        k.note(&format!(
            "PID 1 ended (exit code {code}): the container has stopped; `stepctr rm {}` removes it",
            c.name
        ));
    }
    Ok(code)
}

/// `-p`: start the container's port proxy (docker-proxy's job), journalled so `rm` kills it.
fn publish(k: &dyn Kernel, c: &mut Container, ports: &[crate::net::proxy::Publish]) -> Result<()> {
    let Some(addr) = c.state.network.as_ref().and_then(|n| n.address) else {
        bail!(
            "-p needs the container on the bridge (--network bridge at `ns`, `all` or `run`): with --network none or host there is no container address to relay to"
        );
    };
    let proxy = crate::net::proxy::start(k, ports, addr)?;
    c.journal(Resource::Process {
        pid: proxy.pid,
        start_time: crate::state::process_start_time(proxy.pid).unwrap_or(0),
    })?;
    c.state.ports = ports.to_vec();
    for p in ports {
        k.note(&format!(
            "published: {}:{}/{} on the host reaches {addr}:{} in the container (the proxy, pid {}, relays it)",
            p.host_ip, p.host_port, p.proto, p.container_port, proxy.pid
        ));
    }
    Ok(())
}

/// Start PID 1 and wait for it, in this process (the shim runs the same two steps).
pub fn launch(k: &dyn Kernel, c: &mut Container, plan: &Plan) -> Result<WaitStatus> {
    let pid = spawn_pid1(k, plan, None)?;
    c.state.pid = Some(pid);
    c.journal(Resource::Process {
        pid,
        start_time: crate::state::process_start_time(pid).unwrap_or(0),
    })?;
    // While the container runs, other commands (`rm`, `ps`) may use it: let go of the lock.
    c.save()?;
    c.unlock();
    let status = k.wait4(pid, 0, "wait for PID 1: when it exits, the container stops")?;
    Ok(status)
}

/// Make the PID namespace, fork its PID 1 and let it set itself up and exec the command;
/// returns PID 1's host pid once the execve has succeeded. With `stdio`, PID 1 puts that fd
/// on its stdout and stderr (and /dev/null on stdin) just before the execve (detached runs).
pub fn spawn_pid1(k: &dyn Kernel, plan: &Plan, stdio: Option<i32>) -> Result<i32> {
    if plan.userns.is_some() {
        // The PID namespace made next is then owned by the user namespace, so PID 1 (root in
        // there) may mount a /proc of it. Only the shim's process does this: stepctr stays out.
        crate::userns::enter(k, &plan.ns_dir)?;
    }
    k.unshare(
        libc::CLONE_NEWPID,
        "a new PID namespace for our next child, which will be its PID 1 (we stay where we are)",
    )?;
    let mut fds = Vec::new();
    for (name, flag) in JOIN_ORDER {
        let fd = k.openat(
            &plan.ns_dir.join(name),
            libc::O_RDONLY | libc::O_CLOEXEC,
            0,
            "open the namespace now, while its path is visible",
        )?;
        fds.push((fd, flag));
    }
    let entry = match crate::stage::cgroup::Entry::open(k, &plan.cgroups, plan.cgroup_v2) {
        Ok(entry) => entry,
        Err(e) => {
            for (fd, _) in &fds {
                let _ = k.close(*fd);
            }
            return Err(e);
        }
    };
    // The child resolves the command inside the container; it leaves the path here (memory
    // shared across the fork) so the narration can show the execve as the kernel saw it.
    let resolved = crate::kernel::host::SharedPath::new();
    let child = entry.spawn(k, "the future PID 1", &mut || {
        not_dumpable(k)?;
        k.prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as u64,
            "if our parent (the shim) dies, the container dies with it",
        )?;
        entry.join(
            k,
            "join the container's cgroup before anything else runs (0 = me; on v1 `tasks` moves just this thread, without the global lock cgroup.procs takes)",
        )?;
        k.unshare(
            libc::CLONE_NEWCGROUP,
            "a cgroup namespace rooted at the container's cgroup, where we are now: inside, /proc/self/cgroup says /",
        )?;
        let pins: &[(&str, &str)] = if plan.userns.is_some() { &[] } else { &[
            (
                crate::stage::ns::PID_FILE,
                "pin our PID namespace beside the others (we are still in the host's mount namespace)",
            ),
            (
                crate::stage::ns::CGROUP_FILE,
                "and our cgroup namespace (`exec` joins both by these files)",
            ),
        ] };
        for (file, why) in pins {
            k.mount(
                Some(&format!("/proc/self/ns/{file}")),
                &plan.ns_dir.join(file),
                None,
                libc::MS_BIND,
                None,
                why,
            )?;
        }
        for (fd, flag) in &fds {
            k.setns(*fd, *flag, "join the container's namespace")?;
        }
        k.sethostname(
            &plan.hostname,
            "the container's own hostname, in its UTS namespace",
        )?;
        mount_pseudo_filesystems(k, &plan.rootfs)?;
        pivot_into(k, &plan.rootfs)?;
        if let Some(rootless) = plan.userns {
            // Only now: until pivot_root, paths of the host's (stepctr's 0700 directories)
            // were on the way, which root inside (uid BASE outside) may not enter.
            crate::userns::become_root(k, rootless)?;
        }
        crate::security::protect_paths(k, &plan.security)?;
        k.chdir(&plan.workdir, "the image's working directory")?;
        check_workdir(k, &plan.workdir)?;
        let path = resolve_command(&plan.argv[0], &plan.env)?;
        resolved.set(&path);
        if let Some(pty) = plan.tty {
            crate::tty::take_terminal(k, pty)?;
        }
        close_our_fds(k)?;
        // Capabilities, the `-u` user switch among them (the bounding set must shrink while
        // we are still root), no_new_privs, seccomp.
        crate::security::before_exec(k, &plan.security, plan.user.as_deref())?;
        // Detached: stdio to the log only now, so the narration of everything before (on
        // stderr) is not written into the container's log. The filter lets these calls pass.
        if let Some(fd) = stdio {
            crate::shim::redirect_stdio(k, fd)?;
        }
        k.execve(
            &path,
            &plan.argv,
            &plan.env,
            "become the container's command",
        )?;
        Ok(())
    });
    let close_fds = || {
        for (fd, _) in &fds {
            let _ = k.close(*fd);
        }
        entry.close(k);
    };
    let child = match child {
        Ok(child) => child,
        Err(e) => {
            close_fds();
            return Err(e.into());
        }
    };
    // The parent says nothing until the child has exec'd or failed, so the narration keeps the
    // order of events (the child narrates its own calls meanwhile).
    let failed = k.child_error(&child);
    if failed.is_none() {
        exec_clock::mark();
    }
    close_fds();
    if let Some(err) = failed {
        let _ = k.wait4(child.pid, 0, "reap the failed child");
        bail!("start the container: {err}");
    }
    // The execve succeeded (the error channel closed without a word). Its narration comes from
    // here: a successful execve never returns to the code that called it.
    let path = resolved
        .get()
        .unwrap_or_else(|| PathBuf::from(&plan.argv[0]));
    let shown = Sys::Execve {
        path,
        argv: plan.argv.clone(),
        envp: plan.env.clone(),
    };
    k.report(
        child.pid,
        1,
        &shown,
        "the container's command replaces our code: PID 1 is now the program",
    );
    if plan.userns.is_some() {
        // PID 1, in the user namespace, cannot pin them with a mount in the host's mount
        // namespace: link them, as ns/ does the others.
        for file in [crate::stage::ns::PID_FILE, crate::stage::ns::CGROUP_FILE] {
            k.symlinkat(
                &PathBuf::from(format!("/proc/{}/ns/{file}", child.pid)),
                &plan.ns_dir.join(file),
                "a link to PID 1's namespace (made in the user namespace: no mount can pin it)",
            )?;
        }
    }
    Ok(child.pid)
}

/// CVE-2019-5736: a process of stepctr that goes into a container (PID 1 before its execve,
/// `exec`'s child before its own) is stepctr's binary running there, and a process of the
/// container could open /proc/PID/exe of it and write over stepctr's binary on the host (runc's
/// bug, 2019). Made non-dumpable first, before it joins anything, its /proc/PID files are
/// root's and opening /proc/PID/exe needs CAP_SYS_PTRACE over it, which the container's
/// processes lack (the default capability set has none); ptrace is refused the same way.
/// The execve makes the process dumpable again, as the command it now is. (runc and crun went
/// further and run a sealed memfd copy of themselves; stepctr's other processes keep the binary
/// busy while a container runs, so a write to it fails with ETXTBSY anyway.)
pub fn not_dumpable(k: &dyn Kernel) -> Result<()> {
    k.prctl(
        libc::PR_SET_DUMPABLE,
        0,
        "non-dumpable: no process of the container can open our /proc/PID/exe (stepctr's binary) or ptrace us (CVE-2019-5736)",
    )?;
    Ok(())
}

/// CVE-2024-21626: a working directory such as /proc/self/fd/7 follows an fd that stepctr
/// still holds (a namespace, a cgroup directory of the host) out of the container's root, and
/// the command would start in the host's filesystem. After chdir, the kernel names the working
/// directory: outside our root it says `(unreachable)/...` (runc's check, since 1.1.12).
pub fn check_workdir(k: &dyn Kernel, workdir: &Path) -> Result<()> {
    let cwd =
        k.getcwd("where chdir took us: it must be inside the container's root (CVE-2024-21626)")?;
    if !cwd.is_absolute() {
        bail!(
            "working directory {}: it leads outside the container's root (to {}): refused (CVE-2024-21626)",
            workdir.display(),
            cwd.display()
        );
    }
    Ok(())
}

/// Nothing of stepctr's may reach the command: every fd from 3 up is marked close-on-exec
/// (stdin, stdout, stderr stay). The error channel to our parent is among them: its closing
/// at the execve is how the parent learns that the execve succeeded.
pub fn close_our_fds(k: &dyn Kernel) -> Result<()> {
    k.close_range(
        3,
        u32::MAX,
        libc::CLOSE_RANGE_CLOEXEC,
        "every fd of ours from 3 up closes at the execve: none of the host's leak into the container",
    )?;
    Ok(())
}

/// pivot_root(".", "."): the new root is the overlay, the old root ends up stacked on top of
/// it, and umount2(".", MNT_DETACH) drops it, so no path leads back to the host's files.
/// (Same trick as runc and lxc; no put_old directory needed.)
pub fn pivot_into(k: &dyn Kernel, rootfs: &Path) -> Result<()> {
    k.chdir(rootfs, "go into the new root")?;
    k.pivot_root(
        Path::new("."),
        Path::new("."),
        "make the overlay our / (old root stacked on top)",
    )?;
    k.umount2(
        Path::new("."),
        libc::MNT_DETACH,
        "detach the old root: the host's files are gone from view",
    )?;
    k.chdir(Path::new("/"), "settle at the new /")?;
    Ok(())
}

/// /proc, /sys and /dev/mqueue of the container's own namespaces, made by PID 1 while the
/// host's /proc is still in view (before pivot_root, as runc does): each mount point is
/// resolved inside the rootfs with openat2(RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS) and mounted
/// through `/proc/self/fd/N`, so an image whose /proc or /sys is a symlink (to the host's /tmp,
/// say) is refused instead of followed. pivot_root carries the mounts into the new root.
///
/// /proc must be mounted by a process inside the PID namespace (it shows that namespace's
/// processes), /sys by one inside the network namespace (its /sys/class/net), /dev/mqueue by
/// one inside the IPC namespace (its message queues): PID 1 is all three.
fn mount_pseudo_filesystems(k: &dyn Kernel, rootfs: &Path) -> Result<()> {
    let nsd = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let root = k.openat(
        rootfs,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
        "the new root: mount points are resolved inside it, never through the image's symlinks",
    )?;
    let result = (|| -> Result<()> {
        for (dir, source, flags, data, why) in [
            (
                "proc",
                "proc",
                nsd,
                None,
                "a /proc of our PID namespace: only the container's processes",
            ),
            (
                "sys",
                "sysfs",
                nsd | libc::MS_RDONLY,
                None,
                "/sys of our network namespace, read-only",
            ),
            (
                "dev/mqueue",
                "mqueue",
                nsd,
                None,
                "POSIX message queues of our IPC namespace",
            ),
        ] {
            let fd = crate::stage::fs::mount_dir(k, root, Path::new(dir), 0o555)?;
            let mounted = k.mount(
                Some(source),
                &PathBuf::from(format!("/proc/self/fd/{fd}")),
                Some(source),
                flags,
                data,
                why,
            );
            k.close(fd)?;
            mounted?;
        }
        Ok(())
    })();
    let closed = k.close(root);
    result?;
    closed?;
    Ok(())
}

/// Find the program the way execvp does, but in the container's root and with its PATH.
pub(crate) fn resolve_command(arg0: &str, env: &[String]) -> Result<PathBuf> {
    if arg0.contains('/') {
        return Ok(PathBuf::from(arg0));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(arg0);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(anyhow::anyhow!(
        "{arg0}: executable file not found in $PATH ({path})"
    ))
    .context("exec the container's command")
}

/// `--timings`: the moment PID 1's execve succeeded, which separates `start` from `run`.
///
/// The shim forks PID 1, so the shim sees that moment (`child_error` returns once the execve
/// has succeeded), not stepctr. `watch` (in stepctr, before the shim is forked) takes an
/// `Instant` and a page of memory shared across the fork; the shim, holding a copy of that
/// `Instant`, writes the nanoseconds elapsed since it into the page; `execed_at` (in stepctr,
/// after the shim has spoken) adds them back. `Instant` is CLOCK_MONOTONIC, one clock for
/// every process of the machine, so this is a measurement, not an estimate.
pub mod exec_clock {
    use crate::kernel::host::SharedPath;
    use std::cell::RefCell;
    use std::path::Path;
    use std::time::{Duration, Instant};

    thread_local! {
        // A fork copies the forking thread, this slot included (same anchor, same shared page).
        static CLOCK: RefCell<Option<(Instant, SharedPath)>> = const { RefCell::new(None) };
    }

    /// Start watching: call before forking the shim.
    pub fn watch() {
        CLOCK.with(|c| *c.borrow_mut() = Some((Instant::now(), SharedPath::new())));
    }

    /// PID 1 has exec'd (whichever process forked it calls this).
    pub(super) fn mark() {
        CLOCK.with(|c| {
            if let Some((anchor, page)) = &*c.borrow() {
                // The page carries a path; a number of nanoseconds is one, as text.
                page.set(Path::new(&anchor.elapsed().as_nanos().to_string()));
            }
        });
    }

    /// When PID 1 exec'd, if it did since `watch`; stops watching.
    pub fn execed_at() -> Option<Instant> {
        let (anchor, page) = CLOCK.with(|c| c.borrow_mut().take())?;
        let nanos: u64 = page.get()?.to_str()?.parse().ok()?;
        Some(anchor + Duration::from_nanos(nanos))
    }
}
