//! Stage 3, cgroup: make the container's control group and write its limits.
//!
//! A cgroup is a directory in cgroupfs; limits are files in it; a process is put in it by
//! writing its pid to `cgroup.procs` (on v2 it can also be created right in it). Two layouts exist and both are handled:
//! - cgroup v2 (most machines today): one tree at /sys/fs/cgroup; a controller must be enabled
//!   in every ancestor's `cgroup.subtree_control` before a child can use it. A new process can
//!   be born straight into a v2 cgroup with clone3(CLONE_INTO_CGROUP) (see [`Entry`]).
//! - cgroup v1 (and "hybrid", v1 controllers plus an empty v2 tree): one tree per controller,
//!   /sys/fs/cgroup/memory, /sys/fs/cgroup/pids, ...

use crate::kernel::{Child, ChildBody, Errno, KResult, Kernel};
use crate::state::{CgroupState, Container, Resource, Stage};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// The parent cgroup of every stepctr container.
pub const PARENT: &str = "stepctr";

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of memory (`--memory 256M`).
    pub memory: Option<u64>,
    /// Maximum number of processes (`--pids-limit 64`).
    pub pids: Option<u64>,
    /// CPU time allowed per [`CPU_PERIOD_US`], in microseconds (`--cpus 0.5` is 50000).
    pub cpu_quota: Option<u64>,
}

/// linux.resources.cpu.cpus and .mems (OCI bundles): the CPUs and memory (NUMA) nodes the
/// container may use, as lists like `0-1,3`. They live in the cpuset controller, which stepctr
/// joins only when one of them is asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cpuset {
    pub cpus: Option<String>,
    pub mems: Option<String>,
}

impl Cpuset {
    fn is_set(&self) -> bool {
        self.cpus.is_some() || self.mems.is_some()
    }
}

/// The CFS bandwidth period: the kernel hands out `quota` microseconds of CPU time every
/// `period` microseconds (100 ms, docker's and the kernel's default).
pub const CPU_PERIOD_US: u64 = 100_000;

/// `--cpus 1.5` as a quota per [`CPU_PERIOD_US`]: 1.5 × 100000 = 150000 µs every 100 ms.
pub fn parse_cpus(s: &str) -> Result<u64> {
    let v: f64 = s.trim().parse().map_err(|_| {
        anyhow::anyhow!("invalid --cpus {s:?}: use a number of CPUs, like 0.5 or 2")
    })?;
    if !v.is_finite() || !(0.01..=1024.0).contains(&v) {
        bail!("invalid --cpus {s:?}: must be between 0.01 and 1024");
    }
    Ok((v * CPU_PERIOD_US as f64).round() as u64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// statfs(/sys/fs/cgroup): cgroup2's magic means pure v2; anything else (a tmpfs holding one
/// mount per controller) means v1 or hybrid.
pub fn detect(k: &dyn Kernel, root: &Path) -> Result<Version> {
    let magic = k.statfs(root, "which cgroup layout does this machine use?")?;
    Ok(if magic == CGROUP2_SUPER_MAGIC {
        Version::V2
    } else {
        Version::V1
    })
}

pub fn run(k: &dyn Kernel, c: &mut Container, root: &Path, limits: Limits) -> Result<()> {
    run_with(k, c, root, limits, &Cpuset::default())
}

/// [`run`], and the container's cpuset (CPUs and memory nodes) too.
pub fn run_with(
    k: &dyn Kernel,
    c: &mut Container,
    root: &Path,
    limits: Limits,
    cpuset: &Cpuset,
) -> Result<()> {
    super::header(
        k,
        Stage::Cgroup,
        "a control group to limit what the container may use",
    );
    c.require_before(Stage::Cgroup)?;
    let version = detect(k, root)?;
    let mut base = root.to_path_buf();
    if crate::userns::rootless() {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let uid = crate::kernel::host::uid();
        match (version, delegated_base(root, &own, uid, &owner_of)) {
            (Version::V2, Some(b)) => {
                k.note(&format!("rootless: {} is delegated to uid {uid} (it owns the directory and its control files): the container's cgroup goes below it", b.display()));
                base = b;
            }
            _ => return skip_rootless(k, c, version, limits, cpuset),
        }
    }
    let dirs = match version {
        Version::V2 => {
            k.note("cgroup v2: one tree, controllers enabled from the top down");
            create_v2(k, c, &base, limits, cpuset)?
        }
        Version::V1 => {
            k.note("cgroup v1 (or hybrid): one tree per controller");
            create_v1(k, c, root, limits, cpuset)?
        }
    };
    c.state.cgroup = Some(CgroupState {
        version: match version {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
        .to_string(),
        dirs: dirs.clone(),
        memory: limits.memory,
        pids: limits.pids,
        cpu_quota: limits.cpu_quota,
    });
    c.finish(Stage::Cgroup)?;
    for d in &dirs {
        k.note(&format!("look: ls {}", d.display()));
    }
    if c.state.oci.is_none() {
        k.note(&format!("next: `stepctr ns {}`", c.name));
    }
    Ok(())
}

/// The owner of a file, if it exists.
fn owner_of(p: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| m.uid())
}

/// Rootless on cgroup v2: the subtree delegated to `uid`, if any (the kernel's cgroup-v2
/// "Delegation": the directory and its cgroup.procs and cgroup.subtree_control belong to the
/// user). From our own cgroup (`0::/PATH` in /proc/self/cgroup) up, the highest ancestor of a
/// chain of delegated cgroups: our own cgroup holds processes (us), so by the no-internal-
/// process rule it could not hand controllers down to a child, while the top of the
/// delegation (systemd's user@UID.service, say) holds none.
pub fn delegated_base(
    root: &Path,
    self_cgroup: &str,
    uid: u32,
    owner_of: &dyn Fn(&Path) -> Option<u32>,
) -> Option<PathBuf> {
    let rel = self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .trim()
        .trim_start_matches('/');
    let delegated = |d: &Path| {
        ["", "cgroup.procs", "cgroup.subtree_control"]
            .iter()
            .all(|f| owner_of(&d.join(f)) == Some(uid))
    };
    let mut best = None;
    let mut dir = root.join(rel);
    while dir != root && dir.starts_with(root) && delegated(&dir) {
        best = Some(dir.clone());
        dir = dir.parent()?.to_path_buf();
    }
    best
}

/// Rootless: a user may create cgroups only in a subtree the host delegated to them, and
/// cgroup v1 cannot be delegated safely at all. The container runs without a cgroup of its
/// own, and the limits asked for are not applied: said plainly, never silently.
fn skip_rootless(
    k: &dyn Kernel,
    c: &mut Container,
    version: Version,
    limits: Limits,
    cpuset: &Cpuset,
) -> Result<()> {
    let asked: Vec<String> = [
        limits.memory.map(|m| format!("--memory {m}")),
        limits.pids.map(|p| format!("--pids-limit {p}")),
        limits
            .cpu_quota
            .map(|q| format!("--cpus {}", q as f64 / CPU_PERIOD_US as f64)),
        cpuset.cpus.as_ref().map(|v| format!("cpuset.cpus {v}")),
        cpuset.mems.as_ref().map(|v| format!("cpuset.mems {v}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let not_applied = if asked.is_empty() {
        "no limits".to_string()
    } else {
        format!("{} NOT applied", asked.join(", "))
    };
    let why = match version {
        Version::V1 => "this host has cgroup v1 (or hybrid), which cannot be delegated to a user".to_string(),
        Version::V2 => format!(
            "no cgroup subtree is delegated to uid {} here (our cgroup, in /proc/self/cgroup, is not ours to write)",
            crate::kernel::host::uid()
        ),
    };
    k.note(&format!(
        "skipped: rootless, and {why}: {not_applied} (see `stepctr doctor`; as root, or on cgroup v2 with delegation, they are)"
    ));
    c.finish(Stage::Cgroup)?;
    k.note(&format!("next: `stepctr ns {}`", c.name));
    Ok(())
}

/// mkdir a cgroup (journalled first, so `rm` removes it even if we crash right after).
fn make_dir(k: &dyn Kernel, c: &mut Container, dir: &Path, parent: bool, why: &str) -> Result<()> {
    if parent {
        // Journalled by every container that uses it, not only the one that made it: then
        // whichever of them is removed last removes it (`rm` leaves it while others use it).
        c.journal(Resource::CgroupParent {
            path: dir.to_path_buf(),
        })?;
        if dir.is_dir() {
            return Ok(());
        }
    } else {
        c.journal(Resource::Cgroup {
            path: dir.to_path_buf(),
        })?;
    }
    match k.mkdirat(dir, 0o755, why) {
        Err(e) if parent && e.errno == crate::kernel::Errno::EEXIST => Ok(()),
        r => r.map_err(Into::into),
    }
}

/// The parents, outermost first (each made if missing, then `setup` on it), then the
/// container's own cgroup. `rm` of the last other container may remove a parent between the
/// mkdirs: then the next mkdir fails with ENOENT and we go round again.
fn make_cgroup(
    k: &dyn Kernel,
    c: &mut Container,
    parents: &[PathBuf],
    dir: &Path,
    setup: impl Fn(&dyn Kernel, &Path) -> Result<()>,
) -> Result<()> {
    let mut tries = 0;
    loop {
        let made = (|| -> Result<()> {
            for parent in parents {
                make_dir(
                    k,
                    c,
                    parent,
                    true,
                    "a parent cgroup for all stepctr containers",
                )?;
                setup(k, parent)?;
            }
            make_dir(k, c, dir, false, "the container's own cgroup")
        })();
        match made {
            Err(e) if tries < 3 && is_enoent(&e) => tries += 1,
            r => return r,
        }
    }
}

fn is_enoent(e: &anyhow::Error) -> bool {
    e.downcast_ref::<crate::kernel::SysError>()
        .is_some_and(|s| s.errno == crate::kernel::Errno::ENOENT)
}

/// v2: the container's cgroup `root/stepctr/NAME` (`root` is /sys/fs/cgroup, or rootless, the
/// delegated subtree).
fn create_v2(
    k: &dyn Kernel,
    c: &mut Container,
    root: &Path,
    limits: Limits,
    cpuset: &Cpuset,
) -> Result<Vec<PathBuf>> {
    let available = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    // cpu only when asked for: usage (cpu.stat) is there without it, and the kernel refuses
    // to enable it while realtime threads live outside the root cgroup. cpuset likewise.
    let wanted: Vec<&str> = ["memory", "pids", "cpu", "cpuset"]
        .into_iter()
        .filter(|w| *w != "cpu" || limits.cpu_quota.is_some())
        .filter(|w| *w != "cpuset" || cpuset.is_set())
        .filter(|w| available.split_whitespace().any(|a| a == *w))
        .collect();
    for (ctl, limit) in [
        ("memory", limits.memory.is_some()),
        ("pids", limits.pids.is_some()),
        ("cpu", limits.cpu_quota.is_some()),
        ("cpuset", cpuset.is_set()),
    ] {
        if limit && !wanted.contains(&ctl) {
            bail!("the {ctl} controller is not available in {} (cgroup.controllers: {:?}): cannot set a {ctl} limit", root.display(), available.trim());
        }
    }
    let enable: String = wanted
        .iter()
        .map(|w| format!("+{w}"))
        .collect::<Vec<_>>()
        .join(" ");
    let (parents_rel, dir_rel) = placement(c)?;
    let parents: Vec<PathBuf> = parents_rel.iter().map(|p| root.join(p)).collect();
    if !enable.is_empty() {
        k.write_file(
            &root.join("cgroup.subtree_control"),
            &enable,
            "let the root's children use these controllers",
        )?;
    }
    let dir = root.join(dir_rel);
    journal_ahead(c, &[(parents.clone(), dir.clone())])?;
    make_cgroup(k, c, &parents, &dir, |k, parent| {
        if !enable.is_empty() {
            k.write_file(
                &parent.join("cgroup.subtree_control"),
                &enable,
                "and let the containers below it use them too",
            )?;
        }
        Ok(())
    })?;
    if let Some(m) = limits.memory {
        k.write_file(
            &dir.join("memory.max"),
            &m.to_string(),
            "memory limit: above it the kernel reclaims, then OOM-kills inside the container",
        )?;
    }
    if let Some(p) = limits.pids {
        k.write_file(
            &dir.join("pids.max"),
            &p.to_string(),
            "process limit: fork() fails with EAGAIN beyond it (stops fork bombs)",
        )?;
    }
    if let Some(q) = limits.cpu_quota {
        k.write_file(
            &dir.join("cpu.max"),
            &format!("{q} {CPU_PERIOD_US}"),
            CPU_WHY,
        )?;
    }
    write_cpuset(k, &dir, cpuset)?;
    Ok(vec![dir])
}

/// linux.resources.cpu.cpus and .mems into the container's cpuset cgroup `dir`; the kernel
/// refuses CPUs or nodes that do not exist or that the parent does not have (EINVAL).
fn write_cpuset(k: &dyn Kernel, dir: &Path, cpuset: &Cpuset) -> Result<()> {
    for (field, file, value, why) in [
        (
            "cpus",
            "cpuset.cpus",
            &cpuset.cpus,
            "the CPUs the container may run on (linux.resources.cpu.cpus): the scheduler never puts its threads on others",
        ),
        (
            "mems",
            "cpuset.mems",
            &cpuset.mems,
            "the memory (NUMA) nodes the container may allocate from (linux.resources.cpu.mems)",
        ),
    ] {
        if let Some(v) = value {
            k.write_file(&dir.join(file), v, why).map_err(|e| {
                anyhow::anyhow!(
                    "config.json: linux.resources.cpu.{field} {v:?}: the kernel refused it ({} {}): {}",
                    crate::kernel::errno_name(e.errno),
                    e.errno.desc(),
                    available_hint(dir, file)
                )
            })?;
        }
    }
    Ok(())
}

/// What the parent of `dir` offers, for an error message: `the parent has 0-1`.
fn available_hint(dir: &Path, file: &str) -> String {
    let parent = dir.parent().map(|p| {
        let eff = file.replace("cpuset.", "cpuset.effective_");
        std::fs::read_to_string(p.join(&eff))
            .or_else(|_| std::fs::read_to_string(p.join(file)))
            .unwrap_or_default()
    });
    format!(
        "use a list like 0-1,3 of what the parent cgroup has ({})",
        parent.unwrap_or_default().trim()
    )
}

/// cgroup v1: a new cpuset cgroup starts with NO CPUs and no memory nodes (cpuset.cpus and
/// cpuset.mems empty), and no process can join it until both are set. A parent we made (or
/// one somebody else left empty) gets its own parent's, as runc does; existing values stay.
fn cpuset_inherit(k: &dyn Kernel, dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        if !own.trim().is_empty() {
            continue;
        }
        let theirs = std::fs::read_to_string(parent.join(file)).unwrap_or_default();
        let theirs = theirs.trim();
        if theirs.is_empty() {
            continue;
        }
        k.write_file(
            &dir.join(file),
            theirs,
            "a new cpuset cgroup starts empty (no CPUs or memory nodes: nobody could join it): give it its parent's",
        )?;
    }
    Ok(())
}

fn create_v1(
    k: &dyn Kernel,
    c: &mut Container,
    root: &Path,
    limits: Limits,
    cpuset: &Cpuset,
) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    let mut seen = Vec::new();
    let mut todo = Vec::new();
    // cpu holds the quota, cpuacct counts the time used (`stepctr stats`); many systems mount
    // them together (cpu,cpuacct), and then one directory serves both. cpuset only when asked.
    let cpuset_ctl = cpuset.is_set().then_some("cpuset");
    for ctl in ["memory", "pids", "cpu", "cpuacct"]
        .into_iter()
        .chain(cpuset_ctl)
    {
        let hierarchy = root.join(ctl);
        let limited = match ctl {
            "memory" => limits.memory.is_some(),
            "pids" => limits.pids.is_some(),
            "cpu" => limits.cpu_quota.is_some(),
            "cpuset" => true,
            _ => false,
        };
        if !hierarchy.is_dir() {
            if limited {
                bail!(
                    "the {ctl} controller is not mounted at {}: cannot set a {ctl} limit",
                    hierarchy.display()
                );
            }
            k.note(&format!(
                "{} is not mounted: skipping {ctl}",
                hierarchy.display()
            ));
            continue;
        }
        let real = std::fs::canonicalize(&hierarchy).unwrap_or_else(|_| hierarchy.clone());
        if seen.contains(&real) {
            continue;
        }
        seen.push(real);
        todo.push((ctl, hierarchy));
    }
    let (parents_rel, dir_rel) = placement(c)?;
    let pairs: Vec<(Vec<PathBuf>, PathBuf)> = todo
        .iter()
        .map(|(_, h)| {
            (
                parents_rel.iter().map(|p| h.join(p)).collect(),
                h.join(&dir_rel),
            )
        })
        .collect();
    journal_ahead(c, &pairs)?;
    for ((ctl, _), (parents, dir)) in todo.into_iter().zip(pairs) {
        if ctl == "cpuset" {
            make_cgroup(k, c, &parents, &dir, cpuset_inherit)?;
            write_cpuset(k, &dir, cpuset)?;
            cpuset_inherit(k, &dir)?;
            dirs.push(dir);
            continue;
        }
        make_cgroup(k, c, &parents, &dir, |_, _| Ok(()))?;
        match (ctl, limits.memory, limits.pids, limits.cpu_quota) {
            ("memory", Some(m), _, _) => k.write_file(
                &dir.join("memory.limit_in_bytes"),
                &m.to_string(),
                "memory limit: above it the kernel reclaims, then OOM-kills inside the container",
            )?,
            ("pids", _, Some(p), _) => k.write_file(
                &dir.join("pids.max"),
                &p.to_string(),
                "process limit: fork() fails with EAGAIN beyond it (stops fork bombs)",
            )?,
            ("cpu", _, _, Some(q)) => {
                k.write_file(
                    &dir.join("cpu.cfs_period_us"),
                    &CPU_PERIOD_US.to_string(),
                    "CPU bandwidth is counted in periods: this one is 100 ms",
                )?;
                k.write_file(&dir.join("cpu.cfs_quota_us"), &q.to_string(), CPU_WHY)?;
            }
            _ => {}
        }
        dirs.push(dir);
    }
    Ok(dirs)
}

/// Where the container's cgroup goes below each controller's root, and its parents, outermost
/// first (made if missing, each removed by the last container that used it): `stepctr/NAME`,
/// or an OCI container's linux.cgroupsPath (`podman/ctr-1`: the parent is `podman`; `a/b/c`:
/// `a` and `a/b`; `/ctr`: none, the cgroup sits right below the root).
fn placement(c: &Container) -> Result<(Vec<PathBuf>, PathBuf)> {
    match c.state.oci.as_ref().and_then(|o| o.cgroups_path.clone()) {
        Some(p) => {
            let mut parents: Vec<PathBuf> = p
                .ancestors()
                .skip(1)
                .filter(|q| !q.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .collect();
            parents.reverse();
            Ok((parents, p))
        }
        None => Ok((
            vec![PathBuf::from(PARENT)],
            Path::new(PARENT).join(c.name.as_str()),
        )),
    }
}

/// The file a freshly forked, single-threaded process writes `0` to, to move itself into the
/// cgroup `dir` (when it could not be born there: see [`Entry`]).
///
/// cgroup.procs moves a whole thread group, so the kernel takes a global lock
/// (cgroup_threadgroup_rwsem) for writing, and the first writer after a quiet spell waits for
/// an RCU grace period: 5–25 ms, more than everything else stepctr does to start a container.
/// On cgroup v1, `tasks` moves one thread; when that thread is the writer itself (`0`), the
/// kernel skips the global lock (recent kernels; older ones take it anyway): ~0.1 ms. For a process with one thread, as
/// our helpers and PID 1 are right after fork(), it is the same move. cgroup v2 has no
/// `tasks` (its `cgroup.threads` only moves threads inside a threaded subtree): cgroup.procs
/// there, or better clone3(CLONE_INTO_CGROUP).
pub fn join_file(dir: &Path) -> PathBuf {
    let tasks = dir.join("tasks");
    if tasks.exists() {
        tasks
    } else {
        dir.join("cgroup.procs")
    }
}

/// Is this container's cgroup layout pure v2 (one directory, which clone3 can be born into)?
pub fn is_v2(state: Option<&CgroupState>) -> bool {
    state.is_some_and(|g| g.version == "v2" && g.dirs.len() == 1)
}

/// How a new process of the container gets into its cgroup(s): born there, or moved there.
///
/// On pure v2 a process can be *born* in its cgroup: clone3(CLONE_INTO_CGROUP) takes an fd of
/// the cgroup's directory (opened by the parent before the fork), and the child never runs an
/// instruction outside the container's limits, nor takes the global lock that a write to
/// cgroup.procs takes. On v1 and hybrid a process is in one cgroup per controller, which
/// clone3 cannot name: the child is forked as usual and moves itself first thing, writing 0
/// (= me) to each cgroup's [`join_file`]. A kernel without CLONE_INTO_CGROUP (before 5.7)
/// makes v2 fall back to that fork-and-write too.
///
/// Use: [`Entry::open`] → [`Entry::spawn`], whose child calls [`Entry::join`] where it would
/// join (a no-op when it was born inside) → once the child has been waited for,
/// [`Entry::close`].
#[derive(Debug)]
pub struct Entry {
    dirs: Vec<PathBuf>,
    /// v2: the cgroup directory, open for clone3.
    fd: Option<i32>,
    /// Set before the fork, so the child knows: it was born in the cgroup (nothing to join).
    born_inside: std::cell::Cell<bool>,
}

impl Entry {
    /// The container's cgroups `dirs`; with `v2` (see [`is_v2`]) the one directory is opened
    /// (O_PATH: only to name it) for clone3.
    pub fn open(k: &dyn Kernel, dirs: &[PathBuf], v2: bool) -> Result<Entry> {
        let fd = match dirs {
            [dir] if v2 => Some(k.openat(
                dir,
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                0,
                "the container's cgroup as an fd: clone3 will start the child right in it",
            )?),
            _ => None,
        };
        Ok(Entry {
            dirs: dirs.to_vec(),
            fd,
            born_inside: std::cell::Cell::new(false),
        })
    }

    /// Run `body` in a new child: clone3(CLONE_INTO_CGROUP) on v2, else (or if the kernel
    /// has no clone3 or no CLONE_INTO_CGROUP) a plain fork.
    pub fn spawn(&self, k: &dyn Kernel, why: &str, body: &mut ChildBody<'_>) -> KResult<Child> {
        if let Some(fd) = self.fd {
            self.born_inside.set(true);
            let born = format!("{why}, born inside the container's cgroup");
            match k.spawn_into(fd, &born, body) {
                Err(e)
                    if e.call.starts_with("clone3")
                        && matches!(e.errno, Errno::ENOSYS | Errno::E2BIG | Errno::EINVAL) =>
                {
                    self.born_inside.set(false);
                    k.note("this kernel cannot clone3 into a cgroup (CLONE_INTO_CGROUP needs Linux 5.7): fork, and the child moves itself with a write to cgroup.procs");
                }
                r => return r,
            }
        }
        k.spawn(why, body)
    }

    /// In the child, first thing: move into the container's cgroups (0 = me), unless it was
    /// born there.
    pub fn join(&self, k: &dyn Kernel, why: &str) -> KResult<()> {
        if self.born_inside.get() {
            return Ok(());
        }
        for dir in &self.dirs {
            k.write_file(&join_file(dir), "0", why)?;
        }
        Ok(())
    }

    /// In the parent, after the child exec'd, stopped or ended: the directory fd is done.
    pub fn close(&self, k: &dyn Kernel) {
        if let Some(fd) = self.fd {
            let _ = k.close(fd);
        }
    }
}

/// Journal every (parents, container) cgroup chain about to be made with one write of
/// state.json, in the order `make_cgroup` makes them (so `rm`, going backwards, removes each
/// container cgroup before its parent). `make_dir` journals them again: a no-op then.
fn journal_ahead(c: &mut Container, pairs: &[(Vec<PathBuf>, PathBuf)]) -> Result<()> {
    c.journal_all(pairs.iter().flat_map(|(parents, dir)| {
        parents
            .iter()
            .map(|p| Resource::CgroupParent { path: p.clone() })
            .chain([Resource::Cgroup { path: dir.clone() }])
    }))
}

const CPU_WHY: &str = "CPU limit: the container may run this many microseconds per period, then it waits for the next one (quota/period = CPUs)";

/// Parse sizes the way docker does: `256M`, `1g`, `512k`, `1048576` (binary units).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let lower = lower
        .strip_suffix('b')
        .filter(|r| !r.is_empty())
        .unwrap_or(&lower);
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1u64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some('t') => (&lower[..lower.len() - 1], 1 << 40),
        _ => (lower, 1),
    };
    let n: u64 = num.parse().map_err(|_| {
        anyhow::anyhow!("invalid size {s:?}: use a number with an optional unit, like 256M or 1G")
    })?;
    n.checked_mul(mult).filter(|v| *v > 0).ok_or_else(|| {
        anyhow::anyhow!("invalid size {s:?}: must be more than 0 and fit in 64 bits")
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_delegated_subtree_is_found_from_our_own_cgroup_up() {
        let root = Path::new("/sys/fs/cgroup");
        let svc = "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service";
        // systemd: user@1000.service and everything below it belong to the user.
        let owner = |p: &Path| -> Option<u32> { Some(if p.starts_with(svc) { 1000 } else { 0 }) };
        let me = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/run-1.scope\n";
        assert_eq!(
            delegated_base(root, me, 1000, &owner),
            Some(PathBuf::from(svc))
        );
        // Another user, or no delegation, or a v1-only /proc/self/cgroup: none.
        assert_eq!(delegated_base(root, me, 1001, &owner), None);
        assert_eq!(
            delegated_base(root, "0::/user.slice/x.scope\n", 1000, &owner),
            None
        );
        assert_eq!(delegated_base(root, "4:memory:/x\n", 1000, &owner), None);
        // A subtree whose cgroup.subtree_control stayed root's is not delegated.
        let half = |p: &Path| -> Option<u32> {
            Some(
                if p.starts_with("/sys/fs/cgroup/rl") && !p.ends_with("cgroup.subtree_control") {
                    7
                } else {
                    0
                },
            )
        };
        assert_eq!(delegated_base(root, "0::/rl/shell", 7, &half), None);
        let full = |p: &Path| -> Option<u32> {
            Some(if p.starts_with("/sys/fs/cgroup/rl") {
                7
            } else {
                0
            })
        };
        assert_eq!(
            delegated_base(root, "0::/rl/shell", 7, &full),
            Some(PathBuf::from("/sys/fs/cgroup/rl"))
        );
        // Never the root of the tree itself.
        assert_eq!(delegated_base(root, "0::/", 0, &|_| Some(0)), None);
    }

    use super::*;

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_size("256M").unwrap(), 256 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("512kb").unwrap(), 512 << 10);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn cpus_become_a_quota_per_period() {
        assert_eq!(parse_cpus("0.5").unwrap(), 50_000);
        assert_eq!(parse_cpus("2").unwrap(), 200_000);
        assert_eq!(parse_cpus("1.25").unwrap(), 125_000);
        for bad in ["0", "-1", "abc", "nan", "inf", "0.001"] {
            assert!(parse_cpus(bad).is_err(), "{bad:?} accepted");
        }
    }
}
