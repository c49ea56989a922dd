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
use super::hooks;
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
    if !plan.unknown.is_empty() {
        k.note(&format!(
            "config.json: {} not in the OCI spec: ignored, as the spec says a runtime must",
            plan.unknown.join(", ")
        ));
    }
    let filter = match &plan.seccomp {
        Some(s) => Some(std::sync::Arc::new(
            super::seccomp::compile(s).context("config.json: linux.seccomp")?,
        )),
        None => None,
    };
    if plan.terminal && o.console_socket.is_none() {
        bail!("config.json: process.terminal is true: give --console-socket SOCKET (the pty's master is sent there, as runc does), or set it to false");
    }
    check_hooks(&plan)?;
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
            hooks: plan.hooks.clone(),
        }),
        ..State::default()
    };
    let mut c = Container::adopt(paths, &name, state)?;
    c.journal(Resource::Dir { path: dir.clone() })?;
    c.finish(Stage::Load)?;
    let made = (|| -> Result<()> {
        crate::stage::cgroup::run_with(k, &mut c, cgroup_root, plan.limits, &plan.cpuset)?;
        if let Some(shares) = plan.cpu_shares {
            cpu_shares(k, &c, shares)?;
        }
        cpu_period(k, &c, &plan)?;
        cpu_rt(k, &c, &plan)?;
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
        let pid = spawn(k, &c, id, &plan, filter.as_ref(), &fifo, o)?;
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
        // As runc: the container goes, and the poststop hooks run (failures only warned of).
        let stdin = poststop_stdin(k, &c, id);
        drop(c);
        let _ = crate::remove::remove_with(k, paths, &name, true);
        hooks::run_warn(k, "poststop", &plan.hooks.poststop, &stdin, None);
        return Err(e);
    }
    k.note(&format!(
        "created: PID 1 (host pid {}) waits on the exec fifo; `stepctr start {id}` lets it exec",
        c.state.pid.unwrap_or(0)
    ));
    Ok(())
}

/// What stepctr cannot do yet with hooks, refused before anything is made.
fn check_hooks(plan: &Plan) -> Result<()> {
    let h = &plan.hooks;
    let runtime = !h.prestart.is_empty() || !h.create_runtime.is_empty();
    if runtime && plan.namespace(libc::CLONE_NEWUSER).is_some() {
        bail!("config.json: hooks.prestart and hooks.createRuntime with a user namespace are not supported by stepctr yet (PID 1 is forked by a helper there: no sync point with create)");
    }
    let inside = !h.create_container.is_empty() || !h.start_container.is_empty();
    let new_pidns = plan.makes(libc::CLONE_NEWPID);
    if inside && !new_pidns {
        bail!("config.json: hooks.createContainer and hooks.startContainer need a new PID namespace in stepctr (their state's pid, PID 1's, is then known before the fork)");
    }
    Ok(())
}

/// The poststop hooks' stdin, opened while the container's directory still exists.
pub(crate) fn poststop_stdin(k: &dyn Kernel, c: &Container, id: &str) -> Vec<i32> {
    let Some(oci) = &c.state.oci else {
        return Vec::new();
    };
    let json = hooks::state_json(id, "stopped", 0, &oci.bundle, &oci.annotations);
    hooks::stdin_fds(
        k,
        &c.path("hooks-poststop.json"),
        &json,
        oci.hooks.poststop.len(),
    )
    .unwrap_or_default()
}

/// The hooks PID 1 runs (their stdin opened by create: PID 1 inherits the fds) and, with
/// prestart or createRuntime hooks, the sync point: PID 1 says it is there in `ready` and
/// reads a byte from the exec fifo, which create writes once those hooks ran.
struct Pid1Hooks {
    ready: Option<crate::kernel::host::SharedPath>,
    create_container: Vec<i32>,
    start_container: Vec<i32>,
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
        if v1 {
            memory_v1_extras(k, d, plan)?;
        } else if v2 && (plan.memory_swappiness.is_some() || plan.oom_kill_disable) {
            k.note("linux.resources.memory.swappiness and .disableOOMKiller: cgroup v2 has neither (no memory.swappiness, no memory.oom_control): ignored, as runc does");
        }
    }
    if plan.kernel_memory {
        // runc 1.1: "Kernel memory settings are ignored and will be removed".
        eprintln!("stepctr: warning: config.json: linux.resources.memory.kernel and .kernelTCP are ignored (kernel memory limits are deprecated in Linux; runc ignores them too)");
    }
    Ok(())
}

/// cgroup v1 only: linux.resources.memory.swappiness and .disableOOMKiller.
fn memory_v1_extras(k: &dyn Kernel, d: &Path, plan: &Plan) -> Result<()> {
    if let Some(s) = plan.memory_swappiness {
        if s > 100 {
            bail!("config.json: linux.resources.memory.swappiness {s}: must be between 0 and 100 (as runc checks)");
        }
        k.write_file(
            &d.join("memory.swappiness"),
            &s.to_string(),
            "memory.swappiness: how readily the kernel swaps this container's memory out (0 = avoid, 100 = as readily as dropping file cache)",
        )
        .with_context(|| format!("config.json: linux.resources.memory.swappiness {s}"))?;
    }
    if plan.oom_kill_disable {
        k.write_file(
            &d.join("memory.oom_control"),
            "1",
            "memory.disableOOMKiller: at the limit, the container's processes wait for memory instead of being OOM-killed",
        )
        .context("config.json: linux.resources.memory.disableOOMKiller")?;
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

/// linux.resources.cpu.period other than the 100 ms the cgroup stage writes: the period and
/// the quota as config.json gives them (as runc writes them).
fn cpu_period(k: &dyn Kernel, c: &Container, plan: &Plan) -> Result<()> {
    let Some(period) = plan.cpu_period else {
        return Ok(());
    };
    if period == crate::stage::cgroup::CPU_PERIOD_US && plan.cpu_quota.is_some() {
        return Ok(());
    }
    let Some(g) = &c.state.cgroup else {
        return Ok(());
    };
    let what = || format!("config.json: linux.resources.cpu.period {period}");
    for d in &g.dirs {
        if d.join("cpu.cfs_period_us").exists() {
            k.write_file(
                &d.join("cpu.cfs_period_us"),
                &period.to_string(),
                "CPU bandwidth period (linux.resources.cpu.period): the quota is handed out once per this many µs",
            )
            .with_context(what)?;
            if let Some(q) = plan.cpu_quota {
                k.write_file(
                    &d.join("cpu.cfs_quota_us"),
                    &q.to_string(),
                    "CPU quota per that period (linux.resources.cpu.quota)",
                )
                .with_context(|| format!("config.json: linux.resources.cpu.quota {q}"))?;
            }
        } else if d.join("cpu.max").exists() {
            let quota = plan.cpu_quota.map_or("max".to_string(), |q| q.to_string());
            k.write_file(
                &d.join("cpu.max"),
                &format!("{quota} {period}"),
                "CPU quota and period as config.json gives them (linux.resources.cpu.quota, .period)",
            )
            .with_context(what)?;
        }
    }
    Ok(())
}

/// linux.resources.cpu.realtimePeriod and .realtimeRuntime: cgroup v1's real-time group
/// scheduling (cpu.rt_period_us, cpu.rt_runtime_us), written before any process joins, as
/// runc does. Without CONFIG_RT_GROUP_SCHED the files do not exist: an error, as in runc.
/// cgroup v2 has no such files: ignored there, as runc does.
fn cpu_rt(k: &dyn Kernel, c: &Container, plan: &Plan) -> Result<()> {
    let (period, runtime) = (plan.cpu_rt_period, plan.cpu_rt_runtime);
    if period.is_none() && runtime.is_none() {
        return Ok(());
    }
    let Some(g) = &c.state.cgroup else {
        return Ok(());
    };
    let Some(d) = g.dirs.iter().find(|d| d.join("cpu.shares").exists()) else {
        k.note("linux.resources.cpu.realtimePeriod/.realtimeRuntime: cgroup v2 has no real-time group scheduling files: ignored, as runc does");
        return Ok(());
    };
    if !d.join("cpu.rt_period_us").exists() {
        bail!("config.json: linux.resources.cpu.realtimePeriod/realtimeRuntime: this kernel has no real-time group scheduling (CONFIG_RT_GROUP_SCHED: {} is missing)", d.join("cpu.rt_period_us").display());
    }
    let field = |f: &str, v: String| format!("config.json: linux.resources.cpu.{f} {v}");
    // The two depend on each other (runtime <= period): if the kernel refuses the period
    // first (EINVAL) and a runtime comes too, it is written again after the runtime.
    let mut retry = None;
    if let Some(p) = period {
        if let Err(e) = k.write_file(
            &d.join("cpu.rt_period_us"),
            &p.to_string(),
            "real-time period: the container's SCHED_FIFO/SCHED_RR threads get their budget once per this many µs",
        ) {
            if e.errno != Errno::EINVAL || runtime.is_none() {
                return Err(anyhow::Error::new(e).context(field("realtimePeriod", p.to_string())));
            }
            retry = Some(p);
        }
    }
    if let Some(r) = runtime {
        k.write_file(
            &d.join("cpu.rt_runtime_us"),
            &r.to_string(),
            "real-time runtime: µs per period its real-time threads may run (the parent must have that much to give)",
        )
        .with_context(|| {
            let parent = d.parent().map(|p| p.join("cpu.rt_runtime_us"));
            let has = parent.as_ref().and_then(|p| std::fs::read_to_string(p).ok());
            format!(
                "{} (the parent cgroup has {} µs to give)",
                field("realtimeRuntime", r.to_string()),
                has.as_deref().unwrap_or("?").trim()
            )
        })?;
    }
    if let Some(p) = retry {
        k.write_file(
            &d.join("cpu.rt_period_us"),
            &p.to_string(),
            "the real-time period again, now that the runtime fits it",
        )
        .with_context(|| field("realtimePeriod", p.to_string()))?;
    }
    Ok(())
}

/// Fork PID 1 into its PID namespace; returns its host pid once it waits on the fifo.
fn spawn(
    k: &dyn Kernel,
    c: &Container,
    id: &str,
    plan: &Plan,
    filter: Option<&Filter>,
    fifo: &Path,
    o: &Options,
) -> Result<i32> {
    let h = &plan.hooks;
    let oci = c.state.oci.clone().unwrap_or_default();
    let json =
        |status: &str, pid: i32| hooks::state_json(id, status, pid, &oci.bundle, &oci.annotations);
    let mut ph = Pid1Hooks {
        ready: (!h.prestart.is_empty() || !h.create_runtime.is_empty())
            .then(crate::kernel::host::SharedPath::new),
        create_container: Vec::new(),
        start_container: Vec::new(),
    };
    // PID 1's pid in its own namespace: 1 (check_hooks asks for a new PID namespace).
    ph.create_container = hooks::stdin_fds(
        k,
        &c.path("hooks-createContainer.json"),
        &json("creating", 1),
        h.create_container.len(),
    )?;
    ph.start_container = match hooks::stdin_fds(
        k,
        &c.path("hooks-startContainer.json"),
        &json("created", 1),
        h.start_container.len(),
    ) {
        Ok(fds) => fds,
        Err(e) => {
            for fd in &ph.create_container {
                let _ = k.close(*fd);
            }
            return Err(e);
        }
    };
    let r = spawn_pid1(k, c, plan, filter, fifo, o, &ph, &|pid| {
        let runtime: Vec<hooks::Hook> = h
            .prestart
            .iter()
            .chain(&h.create_runtime)
            .cloned()
            .collect();
        let stdin = hooks::stdin_fds(
            k,
            &c.path("hooks-createRuntime.json"),
            &json("creating", pid),
            runtime.len(),
        )?;
        let (pre, cr) = stdin.split_at(h.prestart.len());
        let r = hooks::run(k, "prestart", &h.prestart, pre, Some(&oci.bundle));
        if r.is_err() {
            for fd in cr {
                let _ = k.close(*fd);
            }
        }
        r?;
        hooks::run(k, "createRuntime", &h.create_runtime, cr, Some(&oci.bundle))
    });
    for fd in ph.create_container.iter().chain(&ph.start_container) {
        let _ = k.close(*fd);
    }
    r
}

/// [`spawn`]'s fork of PID 1; `runtime_hooks(pid)` runs at the sync point, if there is one.
#[allow(clippy::too_many_arguments)]
fn spawn_pid1(
    k: &dyn Kernel,
    c: &Container,
    plan: &Plan,
    filter: Option<&Filter>,
    fifo: &Path,
    o: &Options,
    ph: &Pid1Hooks,
    runtime_hooks: &dyn Fn(i32) -> Result<()>,
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
                pid1(k, plan, filter, fifo, None, &joined, console, o, ph)
            });
            entry.close(k);
            return r;
        }
        // The runtime's hooks run in our PID namespace: a way back to it after the fork.
        let own_pidns = match &ph.ready {
            Some(_) => match k.openat(
                Path::new("/proc/self/ns/pid"),
                libc::O_RDONLY | libc::O_CLOEXEC,
                0,
                "our PID namespace: the prestart and createRuntime hooks run in it",
            ) {
                Ok(fd) => Some(fd),
                Err(e) => {
                    entry.close(k);
                    return Err(e.into());
                }
            },
            None => None,
        };
        if let Err(e) = enter_pidns(k, plan, &joined) {
            entry.close(k);
            return Err(e);
        }
        let child = entry.spawn(k, "the future PID 1", &mut || {
            pid1(k, plan, filter, fifo, Some(&entry), &joined, console, o, ph)
        });
        entry.close(k);
        if let Some(fd) = own_pidns {
            let back = k.setns(
                fd,
                libc::CLONE_NEWPID,
                "our next children (the hooks) in our own PID namespace again",
            );
            let _ = k.close(fd);
            if let Err(e) = back {
                if let Ok(c) = &child {
                    let _ = k.kill(c.pid, libc::SIGKILL, "no hooks: PID 1 goes");
                    let _ = k.wait4(c.pid, 0, "reap PID 1");
                }
                return Err(e.into());
            }
        }
        let child = child?;
        if let Some(ready) = &ph.ready {
            if wait_ready(ready, child.pid) {
                if let Err(e) = runtime_hooks(child.pid) {
                    let _ = k.kill(child.pid, libc::SIGKILL, "a hook failed: PID 1 goes");
                    let _ = k.wait4(child.pid, 0, "reap PID 1");
                    let _ = k.close(child.err_fd.replace(-1));
                    return Err(e);
                }
                k.write(
                    fifo,
                    b"h",
                    "the prestart and createRuntime hooks ran: PID 1 goes on (pivot_root)",
                )?;
            }
        }
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

/// Wait until PID 1 is at the sync point (true) or has ended (false: its error tells why).
/// Bookkeeping, not narrated: a poll of the shared page and of PID 1's exit.
fn wait_ready(ready: &crate::kernel::host::SharedPath, pid: i32) -> bool {
    loop {
        if ready.get().is_some() {
            return true;
        }
        // SAFETY: waitid with WNOWAIT only looks: PID 1 stays to be reaped below.
        let ended = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            ) == 0
                && info.si_pid() == pid
        };
        if ended {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
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
    ph: &Pid1Hooks,
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
    if plan.makes(libc::CLONE_NEWNS) {
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
        if let Some(ready) = &ph.ready {
            ready.set(Path::new("hooks"));
            let n = k.read(
                fifo_fd,
                1,
                "wait for create to run the prestart and createRuntime hooks",
            )?;
            if n == 0 {
                bail!("the exec fifo closed without a byte");
            }
        }
        hooks::run(
            k,
            "createContainer",
            &plan.hooks.create_container,
            &ph.create_container,
            Some(&plan.rootfs),
        )?;
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
    crate::stage::start::pivot_into(k, &plan.rootfs)?;
    // After pivot_root, on the new / (pivot_root refuses a shared new root: EINVAL).
    if plan.rootfs_propagation != libc::MS_REC | libc::MS_SLAVE && plan.makes(libc::CLONE_NEWNS) {
        k.mount(
            None,
            Path::new("/"),
            None,
            plan.rootfs_propagation,
            None,
            "linux.rootfsPropagation, on the container's new /",
        )?;
    }
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
        .chain(ph.start_container.iter().copied())
        .filter(|fd| *fd >= 0 && *fd as u32 >= keep_from)
        .map(|fd| fd as u32)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first = keep_from;
    for fd in keep.iter().copied().chain(std::iter::once(u32::MAX)) {
        if fd > first {
            let last = if fd == u32::MAX { u32::MAX } else { fd - 1 };
            close_fds(k, first, last)?;
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
    if let Err(e) = hooks::run(
        k,
        "startContainer",
        &plan.hooks.start_container,
        &ph.start_container,
        None,
    ) {
        // create is gone: the error goes to the container's stderr, as runc's init says it.
        eprintln!("stepctr: {e:#}");
        return Err(e);
    }
    if let Err(e) = k.execve(&path, &plan.args, &env, "become the container's command") {
        eprintln!("stepctr: exec {}: {e}", plan.args[0]);
        return Err(e.into());
    }
    Ok(())
}

/// Close our fds `first..=last`: one close_range(2). A seccomp filter installed before this
/// point (without noNewPrivileges it must come before the capabilities go) may not allow
/// close_range (a profile older than the call says ENOSYS or EPERM): then, as runc falls
/// back, one close(2) per fd that /proc/self/fd lists.
fn close_fds(k: &dyn Kernel, first: u32, last: u32) -> Result<()> {
    const WHY: &str = "close every fd of ours but stdio, --preserve-fds, the fifo and the narration's: create learns we are ready";
    match k.close_range(first, last, 0, WHY) {
        Err(e) if matches!(e.errno, Errno::ENOSYS | Errno::EPERM) => {}
        r => return r.map_err(Into::into),
    }
    let dir = k.openat(
        Path::new("/proc/self/fd"),
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
        "the seccomp profile refuses close_range: list our fds instead",
    )?;
    let listed = k.read_dir_fd(dir, "our open fds");
    let _ = k.close(dir);
    for fd in listed? {
        let n: Option<u32> = std::str::from_utf8(&fd.name)
            .ok()
            .and_then(|n| n.parse().ok());
        if let Some(n) = n.filter(|n| (first..=last).contains(n) && *n as i32 != dir) {
            ignore_ebadf(k.close(n as i32))?;
        }
    }
    Ok(())
}

/// An fd already gone (the directory's own, listed while open) is not an error.
fn ignore_ebadf(r: crate::kernel::KResult<()>) -> Result<()> {
    match r {
        Err(e) if e.errno == Errno::EBADF => Ok(()),
        r => r.map_err(Into::into),
    }
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
