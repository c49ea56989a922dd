//! config.json, the OCI runtime spec's description of a container, read with the oci-spec
//! crate and turned into what the stages need ([`Plan`]).
//!
//! Every field stepctr implements is translated; every other field that is present and not
//! empty is refused with one error that names it ("config.json: linux.intelRdt is not
//! supported by stepctr"), never silently ignored: a runtime that skips a hook or a limit it
//! was asked for would run a container less confined than its owner believes.

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One entry of config.json's `mounts`, with its options split as mount(2) takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub destination: PathBuf,
    pub typ: String,
    pub source: String,
    /// MS_* flags (MS_BIND, MS_REC for rbind, MS_RDONLY...).
    pub flags: u64,
    /// Propagation flags (MS_PRIVATE, MS_SLAVE...), applied by a second mount(2) call.
    pub propagation: u64,
    /// What mount(2) passes on to the filesystem (`mode=755,size=65536k`).
    pub data: String,
}

impl MountSpec {
    pub fn is_bind(&self) -> bool {
        self.flags & libc::MS_BIND != 0
    }
}

/// A device node of `linux.devices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub path: PathBuf,
    /// S_IFCHR, S_IFBLK or S_IFIFO.
    pub kind: u32,
    pub major: u32,
    pub minor: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A namespace of `linux.namespaces`: made new (`path` None) or joined (`path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// CLONE_NEW* flag.
    pub flag: i32,
    /// ipc, uts, net, pid, mnt, cgroup, user.
    pub name: &'static str,
    pub path: Option<PathBuf>,
}

/// The capability sets of `process.capabilities`, as bit masks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    pub bounding: u64,
    pub effective: u64,
    pub inheritable: u64,
    pub permitted: u64,
    pub ambient: u64,
}

/// Everything config.json asks for, in the shape the stages use.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub rootfs: PathBuf,
    pub readonly: bool,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub umask: Option<u32>,
    pub additional_gids: Vec<u32>,
    pub caps: Caps,
    /// (RLIMIT_*, soft, hard).
    pub rlimits: Vec<(u32, u64, u64)>,
    pub no_new_privileges: bool,
    pub oom_score_adj: Option<i32>,
    pub terminal: bool,
    /// process.consoleSize: (rows, columns).
    pub console_size: Option<(u16, u16)>,
    pub namespaces: Vec<Namespace>,
    /// linux.uidMappings and gidMappings as /proc/PID/uid_map takes them (`inside outside count`).
    pub uid_map: String,
    pub gid_map: String,
    pub mounts: Vec<MountSpec>,
    pub devices: Vec<Device>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub sysctl: Vec<(String, String)>,
    /// MS_PRIVATE, MS_SLAVE (default: MS_REC|MS_SLAVE, as runc), MS_SHARED, with MS_REC.
    pub rootfs_propagation: u64,
    pub cgroups_path: Option<PathBuf>,
    pub limits: crate::stage::cgroup::Limits,
    pub cpu_shares: Option<u64>,
    /// linux.resources.memory.reservation (bytes).
    pub memory_reservation: Option<u64>,
    /// linux.resources.memory.swap: memory + swap (bytes; -1 = unlimited).
    pub memory_swap: Option<i64>,
    /// linux.resources.memory.swappiness (0-100), .disableOOMKiller, and whether .kernel or
    /// .kernelTCP were given (ignored with a warning, as runc does).
    pub memory_swappiness: Option<u64>,
    pub oom_kill_disable: bool,
    pub kernel_memory: bool,
    /// linux.resources.cpu.cpus and .mems.
    pub cpuset: crate::stage::cgroup::Cpuset,
    /// linux.resources.cpu.quota and .period as given (µs; `limits.cpu_quota` is per 100 ms).
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    /// linux.resources.cpu.realtimePeriod and .realtimeRuntime (µs).
    pub cpu_rt_period: Option<u64>,
    pub cpu_rt_runtime: Option<i64>,
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    pub annotations: BTreeMap<String, String>,
    /// config.json's hooks (checked: absolute paths, timeouts above 0).
    pub hooks: super::hooks::Hooks,
    /// Properties the OCI spec does not define (a newer spec's, a vendor's): ignored, as the
    /// spec says, and named in a note.
    pub unknown: Vec<String>,
}

impl Plan {
    /// The namespace of this type, if config.json lists it.
    pub fn namespace(&self, flag: i32) -> Option<&Namespace> {
        self.namespaces.iter().find(|n| n.flag == flag)
    }

    /// Does the container get a new namespace of this type (listed without a path)?
    pub fn makes(&self, flag: i32) -> bool {
        self.namespace(flag).is_some_and(|n| n.path.is_none())
    }
}

/// The fields stepctr implements, as a tree of config.json keys: `*` = any key (a map),
/// `[]` = the elements of an array. A leaf accepts any value.
const SUPPORTED: &[&str] = &[
    "ociVersion",
    "root.path",
    "root.readonly",
    "hostname",
    "domainname",
    "annotations.*",
    "mounts.[].destination",
    "mounts.[].type",
    "mounts.[].source",
    "mounts.[].options",
    "process.terminal",
    "process.consoleSize",
    "process.user.uid",
    "process.user.gid",
    "process.user.umask",
    "process.user.additionalGids",
    "process.args",
    "process.env",
    "process.cwd",
    "process.capabilities.bounding",
    "process.capabilities.effective",
    "process.capabilities.inheritable",
    "process.capabilities.permitted",
    "process.capabilities.ambient",
    "process.rlimits.[].type",
    "process.rlimits.[].hard",
    "process.rlimits.[].soft",
    "process.noNewPrivileges",
    "process.oomScoreAdj",
    "linux.namespaces.[].type",
    "linux.uidMappings",
    "linux.gidMappings",
    "linux.namespaces.[].path",
    "linux.devices.[].path",
    "linux.devices.[].type",
    "linux.devices.[].major",
    "linux.devices.[].minor",
    "linux.devices.[].fileMode",
    "linux.devices.[].uid",
    "linux.devices.[].gid",
    "linux.cgroupsPath",
    "linux.resources.devices",
    "linux.resources.memory.limit",
    "linux.resources.memory.reservation",
    "linux.resources.memory.swap",
    "linux.resources.memory.kernel",
    "linux.resources.memory.kernelTCP",
    "linux.resources.memory.swappiness",
    "linux.resources.memory.disableOOMKiller",
    "linux.resources.cpu.shares",
    "linux.resources.cpu.quota",
    "linux.resources.cpu.period",
    "linux.resources.cpu.cpus",
    "linux.resources.cpu.mems",
    "linux.resources.cpu.realtimeRuntime",
    "linux.resources.cpu.realtimePeriod",
    "linux.resources.pids.limit",
    "linux.sysctl.*",
    "linux.maskedPaths",
    "linux.readonlyPaths",
    "linux.rootfsPropagation",
    "linux.seccomp",
    "hooks",
];

/// Is `v` empty: null, "", [], {}, or an object of empty values.
fn empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(empty),
        _ => false,
    }
}

/// The first present, non-empty field of `v` (at `path`) that [`SUPPORTED`] does not cover.
fn unsupported(v: &Value, path: &str, shown: &str) -> Option<String> {
    if empty(v) {
        return None;
    }
    let covered = |p: &str| {
        SUPPORTED
            .iter()
            .any(|s| *s == p || s.starts_with(&format!("{p}.")))
    };
    let leaf = |p: &str| SUPPORTED.contains(&p);
    if !path.is_empty() && leaf(path) {
        return None;
    }
    if !path.is_empty() && !covered(path) {
        return Some(shown.to_string());
    }
    match v {
        Value::Object(o) => {
            for (key, val) in o {
                let wild = if path.is_empty() {
                    "*".to_string()
                } else {
                    format!("{path}.*")
                };
                if leaf(&wild) {
                    continue;
                }
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let s = if shown.is_empty() {
                    key.clone()
                } else {
                    format!("{shown}.{key}")
                };
                if let Some(bad) = unsupported(val, &p, &s) {
                    return Some(bad);
                }
            }
            None
        }
        Value::Array(a) => {
            for (i, val) in a.iter().enumerate() {
                if let Some(bad) = unsupported(val, &format!("{path}.[]"), &format!("{shown}[{i}]"))
                {
                    return Some(bad);
                }
            }
            None
        }
        _ => Some(shown.to_string()),
    }
}

/// `raw` without the properties the OCI spec does not define (those absent from `known`, the
/// same document as oci-spec reads it), whose paths go to `unknown`.
fn only_known(raw: &Value, known: &Value, path: &str, unknown: &mut Vec<String>) -> Value {
    match (raw, known) {
        (Value::Object(r), Value::Object(k)) => Value::Object(
            r.iter()
                .filter_map(|(key, v)| {
                    let p = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    match k.get(key) {
                        Some(kv) => Some((key.clone(), only_known(v, kv, &p, unknown))),
                        // A null is the same as absent: nothing to ignore.
                        None if v.is_null() => None,
                        None => {
                            unknown.push(p);
                            None
                        }
                    }
                })
                .collect(),
        ),
        (Value::Array(r), Value::Array(k)) => Value::Array(
            r.iter()
                .zip(k)
                .enumerate()
                .map(|(i, (v, kv))| only_known(v, kv, &format!("{path}[{i}]"), unknown))
                .collect(),
        ),
        _ => raw.clone(),
    }
}

/// Read `bundle/config.json`.
pub fn load(bundle: &Path) -> Result<Plan> {
    let file = bundle.join("config.json");
    let bytes = std::fs::read(&file)
        .with_context(|| format!("read {} (the bundle's config)", file.display()))?;
    let raw: Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{}: not JSON", file.display()))?;
    let spec: Spec = serde_json::from_value(raw.clone())
        .with_context(|| format!("{}: not an OCI runtime config", file.display()))?;
    plan(bundle, &raw, &spec)
}

/// Check and translate a parsed config.json (`raw` is the same document, for the refusals).
pub fn plan(bundle: &Path, raw: &Value, spec: &Spec) -> Result<Plan> {
    // The spec: "Runtimes MUST ignore unknown properties" (a newer spec's, a vendor's). Known
    // ones are what oci-spec reads back out; of those, what stepctr does not do is refused.
    let known_part = serde_json::to_value(spec).context("config.json: re-read")?;
    let mut unknown = Vec::new();
    let known = only_known(raw, &known_part, "", &mut unknown);
    if let Some(bad) = unsupported(&known, "", "") {
        bail!("config.json: {bad} is not supported by stepctr (remove it from the bundle's config.json, or run the bundle with runc)");
    }
    let version = spec.version();
    if !(version.starts_with("1.0") || version.starts_with("1.1") || version.starts_with("1.2")) {
        bail!("config.json: ociVersion {version:?} is not supported by stepctr (1.0 to 1.2 are)");
    }
    let mut p = Plan {
        // runc's default: the container's mounts are rslave of the host's.
        rootfs_propagation: libc::MS_REC | libc::MS_SLAVE,
        unknown,
        ..Plan::default()
    };
    let root = spec
        .root()
        .as_ref()
        .context("config.json: root.path is missing")?;
    p.rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    p.readonly = root.readonly().unwrap_or(false);
    p.hooks = super::hooks::Hooks::parse(known.get("hooks"))?;
    p.hostname = spec.hostname().clone().filter(|h| !h.is_empty());
    p.domainname = spec.domainname().clone().filter(|h| !h.is_empty());
    p.annotations = spec
        .annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let process = spec
        .process()
        .as_ref()
        .context("config.json: process is missing (what should the container run?)")?;
    fill_process(&mut p, process)?;

    let linux = spec.linux().clone().unwrap_or_default();
    let mut seen = 0;
    for ns in linux.namespaces().iter().flatten() {
        let (flag, name) = match ns.typ() {
            LinuxNamespaceType::Mount => (libc::CLONE_NEWNS, "mnt"),
            LinuxNamespaceType::Uts => (libc::CLONE_NEWUTS, "uts"),
            LinuxNamespaceType::Ipc => (libc::CLONE_NEWIPC, "ipc"),
            LinuxNamespaceType::Network => (libc::CLONE_NEWNET, "net"),
            LinuxNamespaceType::Pid => (libc::CLONE_NEWPID, "pid"),
            LinuxNamespaceType::Cgroup => (libc::CLONE_NEWCGROUP, "cgroup"),
            LinuxNamespaceType::User => (libc::CLONE_NEWUSER, "user"),
            LinuxNamespaceType::Time => {
                bail!("config.json: linux.namespaces type time is not supported by stepctr")
            }
        };
        if seen & flag != 0 {
            bail!("config.json: linux.namespaces lists {name} twice");
        }
        seen |= flag;
        p.namespaces.push(Namespace {
            flag,
            name,
            path: ns.path().clone().filter(|p| !p.as_os_str().is_empty()),
        });
    }
    let map = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| -> String {
        m.iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect()
    };
    p.uid_map = map(linux.uid_mappings());
    p.gid_map = map(linux.gid_mappings());
    match p.namespace(libc::CLONE_NEWUSER) {
        Some(n) if n.path.is_none() && (p.uid_map.is_empty() || p.gid_map.is_empty()) => {
            bail!("config.json: a new user namespace needs linux.uidMappings and linux.gidMappings")
        }
        None if !p.uid_map.is_empty() || !p.gid_map.is_empty() => {
            bail!("config.json: linux.uidMappings without a new user namespace in linux.namespaces")
        }
        _ => {}
    }
    if p.namespace(libc::CLONE_NEWNS).is_none() {
        bail!("config.json: linux.namespaces has no mount namespace: stepctr always gives the container one (runc would chroot and make the config's mounts in the host's mount namespace; stepctr does not touch the host's mounts)");
    }
    if p.hostname.is_some() && p.namespace(libc::CLONE_NEWUTS).is_none() {
        bail!("config.json: hostname needs a new uts namespace in linux.namespaces (it would change the host's)");
    }
    for m in spec.mounts().iter().flatten() {
        p.mounts.push(mount_spec(m)?);
    }
    for d in linux.devices().iter().flatten() {
        let kind = match serde_json::to_value(d.typ())?.as_str().unwrap_or_default() {
            "c" | "u" => libc::S_IFCHR,
            "b" => libc::S_IFBLK,
            "p" => libc::S_IFIFO,
            other => bail!("config.json: linux.devices: type {other:?} is not c, u, b or p"),
        };
        p.devices.push(Device {
            path: d.path().clone(),
            kind,
            major: d.major() as u32,
            minor: d.minor() as u32,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }
    p.masked_paths = linux.masked_paths().clone().unwrap_or_default();
    p.readonly_paths = linux.readonly_paths().clone().unwrap_or_default();
    p.sysctl = linux
        .sysctl()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    p.sysctl.sort();
    if let Some(prop) = linux
        .rootfs_propagation()
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        p.rootfs_propagation = match prop {
            "private" => libc::MS_PRIVATE,
            "rprivate" => libc::MS_REC | libc::MS_PRIVATE,
            "slave" => libc::MS_SLAVE,
            "rslave" => libc::MS_REC | libc::MS_SLAVE,
            "shared" => libc::MS_SHARED,
            "rshared" => libc::MS_REC | libc::MS_SHARED,
            "unbindable" => libc::MS_UNBINDABLE,
            "runbindable" => libc::MS_REC | libc::MS_UNBINDABLE,
            other => bail!("config.json: linux.rootfsPropagation {other:?} is not one of private, slave, shared, unbindable (r...)"),
        };
    }
    p.cgroups_path = linux
        .cgroups_path()
        .clone()
        .filter(|p| !p.as_os_str().is_empty());
    if let Some(r) = linux.resources() {
        if let Some(m) = r.memory() {
            p.limits.memory = m.limit().filter(|l| *l > 0).map(|l| l as u64);
            p.memory_reservation = m.reservation().filter(|l| *l > 0).map(|l| l as u64);
            p.memory_swap = m.swap().filter(|s| *s != 0);
            p.memory_swappiness = m.swappiness();
            p.oom_kill_disable = m.disable_oom_killer() == Some(true);
            p.kernel_memory = m.kernel().is_some() || m.kernel_tcp().is_some();
        }
        if let Some(c) = r.cpu() {
            p.cpu_shares = c.shares().filter(|s| *s > 0);
            let list = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
            p.cpuset.cpus = list(c.cpus());
            p.cpuset.mems = list(c.mems());
            p.cpu_rt_period = c.realtime_period().filter(|v| *v != 0);
            p.cpu_quota = c.quota().filter(|q| *q > 0);
            p.cpu_period = c.period().filter(|v| *v > 0);
            p.cpu_rt_runtime = c.realtime_runtime().filter(|v| *v != 0);
            if let Some(q) = c.quota().filter(|q| *q > 0) {
                let period = c.period().filter(|p| *p > 0).unwrap_or(100_000);
                // The cgroup stage writes a quota per 100 ms period.
                p.limits.cpu_quota = Some((q as u64).saturating_mul(100_000) / period);
            }
        }
        if let Some(pids) = r.pids() {
            p.limits.pids = (pids.limit() > 0).then_some(pids.limit() as u64);
        }
    }
    if let Some(s) = linux.seccomp() {
        p.seccomp = Some(s.clone());
    }
    Ok(p)
}

/// process.*: the command, its environment, user, capabilities and limits (config.json's
/// process, or the process JSON of `stepctr exec --process`).
fn fill_process(p: &mut Plan, process: &oci_spec::runtime::Process) -> Result<()> {
    p.args = process.args().clone().unwrap_or_default();
    if p.args.is_empty() {
        bail!("config.json: process.args is empty: give the command to run");
    }
    p.env = process.env().clone().unwrap_or_default();
    p.cwd = process.cwd().clone();
    if !p.cwd.is_absolute() {
        bail!(
            "config.json: process.cwd {:?} must be an absolute path",
            p.cwd
        );
    }
    let user = process.user();
    p.uid = user.uid();
    p.gid = user.gid();
    p.umask = user.umask();
    p.additional_gids = user.additional_gids().clone().unwrap_or_default();
    if let Some(c) = process.capabilities() {
        let mask = |set: &Option<oci_spec::runtime::Capabilities>| -> Result<u64> {
            let mut m = 0u64;
            for cap in set.iter().flatten() {
                let name = serde_json::to_value(cap)?;
                let name = name.as_str().unwrap_or_default();
                let cap: caps::Capability = name
                    .parse()
                    .map_err(|_| anyhow::anyhow!("config.json: unknown capability {name}"))?;
                m |= 1u64 << cap.index();
            }
            Ok(m)
        };
        p.caps = Caps {
            bounding: mask(c.bounding())?,
            effective: mask(c.effective())?,
            inheritable: mask(c.inheritable())?,
            permitted: mask(c.permitted())?,
            ambient: mask(c.ambient())?,
        };
    }
    for r in process.rlimits().iter().flatten() {
        let name = serde_json::to_value(r.typ())?;
        let name = name.as_str().unwrap_or_default().to_string();
        let n = rlimit(&name)
            .with_context(|| format!("config.json: process.rlimits: unknown type {name}"))?;
        p.rlimits.push((n, r.soft(), r.hard()));
    }
    p.no_new_privileges = process.no_new_privileges().unwrap_or(false);
    p.oom_score_adj = process.oom_score_adj();
    p.terminal = process.terminal().unwrap_or(false);
    p.console_size = process
        .console_size()
        .as_ref()
        .map(|b| (b.height() as u16, b.width() as u16));
    Ok(())
}

/// `stepctr exec --process FILE`: an OCI process object (what `process` is in config.json),
/// checked against the same list of supported fields.
pub fn load_process(file: &Path) -> Result<Plan> {
    let bytes =
        std::fs::read(file).with_context(|| format!("read {} (--process)", file.display()))?;
    let raw: Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{}: not JSON", file.display()))?;
    let wrapped = serde_json::json!({ "process": raw });
    if let Some(bad) = unsupported(&wrapped, "", "") {
        bail!(
            "--process {}: {bad} is not supported by stepctr exec",
            file.display()
        );
    }
    let process: oci_spec::runtime::Process = serde_json::from_value(raw)
        .with_context(|| format!("{}: not an OCI process", file.display()))?;
    let mut p = Plan::default();
    fill_process(&mut p, &process).with_context(|| format!("--process {}", file.display()))?;
    Ok(p)
}

/// `RLIMIT_NOFILE` → 7.
fn rlimit(name: &str) -> Option<u32> {
    #[allow(clippy::unnecessary_cast)] // __rlimit_resource_t is u32 with glibc, i32 with musl
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    } as u32)
}

/// A mount of config.json, its options split as runc splits them.
fn mount_spec(m: &oci_spec::runtime::Mount) -> Result<MountSpec> {
    let dest = m.destination().clone();
    if !dest.is_absolute() {
        bail!(
            "config.json: mounts: destination {:?} must be an absolute path",
            dest
        );
    }
    let mut spec = MountSpec {
        destination: dest,
        typ: m.typ().clone().unwrap_or_default(),
        source: m
            .source()
            .as_ref()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        flags: 0,
        propagation: 0,
        data: String::new(),
    };
    let mut data = Vec::new();
    for o in m.options().iter().flatten() {
        let (set, clear): (u64, u64) = match o.as_str() {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "remount" => (libc::MS_REMOUNT, 0),
            "mand" => (libc::MS_MANDLOCK, 0),
            "nomand" => (0, libc::MS_MANDLOCK),
            "noatime" => (libc::MS_NOATIME, 0),
            "atime" => (0, libc::MS_NOATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME),
            "bind" => (libc::MS_BIND, 0),
            "rbind" => (libc::MS_BIND | libc::MS_REC, 0),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                let rec = if o.starts_with('r') { libc::MS_REC } else { 0 };
                spec.propagation |= rec
                    | match o.trim_start_matches('r') {
                        "private" => libc::MS_PRIVATE,
                        "shared" => libc::MS_SHARED,
                        "slave" => libc::MS_SLAVE,
                        _ => libc::MS_UNBINDABLE,
                    };
                continue;
            }
            "tmpcopyup" | "idmap" | "ridmap" | "copy-symlink" => bail!(
                "config.json: mounts: option {o:?} (at {}) is not supported by stepctr",
                spec.destination.display()
            ),
            other => {
                data.push(other.to_string());
                continue;
            }
        };
        spec.flags = (spec.flags | set) & !clear;
    }
    // "bind" mounts may say so by type alone.
    if spec.typ == "bind" {
        spec.flags |= libc::MS_BIND;
    }
    spec.data = data.join(",");
    match spec.typ.as_str() {
        "bind" | "" if spec.is_bind() => {}
        "proc" | "sysfs" | "tmpfs" | "devpts" | "mqueue" | "cgroup" | "cgroup2" | "shm" => {}
        _ if spec.is_bind() => {}
        other => bail!(
            "config.json: mounts: type {other:?} (at {}) is not supported by stepctr (bind, rbind, proc, sysfs, tmpfs, devpts, mqueue, cgroup, cgroup2 are)",
            spec.destination.display()
        ),
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(v: Value) -> Option<String> {
        unsupported(&v, "", "")
    }

    #[test]
    fn unsupported_fields_are_named() {
        let v = serde_json::json!({"ociVersion": "1.0.2", "linux": {"intelRdt": {"closID": "x"}}});
        assert_eq!(check(v).as_deref(), Some("linux.intelRdt"));
        let v = serde_json::json!({"hooks": {"prestart": [{"path": "/bin/x"}]}});
        assert_eq!(check(v), None);
        let v = serde_json::json!({"process": {"apparmorProfile": "p"}});
        assert_eq!(check(v).as_deref(), Some("process.apparmorProfile"));
        let v = serde_json::json!({"mounts": [{"destination": "/x", "uidMappings": [{"a": 1}]}]});
        assert_eq!(check(v).as_deref(), Some("mounts[0].uidMappings"));
        let v = serde_json::json!({"linux": {"resources": {"blockIO": {"weight": 10}}}});
        assert_eq!(check(v).as_deref(), Some("linux.resources.blockIO"));
    }

    #[test]
    fn unknown_properties_are_ignored_and_named() {
        let raw = serde_json::json!({
            "ociVersion": "1.0.2", "root": {"path": "rootfs", "colour": "blue"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}}, "vendor.example": {"x": 1},
            "mounts": [{"destination": "/x", "type": "tmpfs", "whatever": true}]
        });
        let spec: Spec = serde_json::from_value(raw.clone()).unwrap();
        let p = plan(Path::new("/b"), &raw, &spec).unwrap();
        let mut unknown = p.unknown.clone();
        unknown.sort();
        assert_eq!(
            unknown,
            ["mounts[0].whatever", "root.colour", "vendor.example"]
        );
        // A field the spec defines and stepctr does not do is still refused.
        let raw = serde_json::json!({"ociVersion": "1.0.2", "root": {"path": "r"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "apparmorProfile": "p"}});
        let spec: Spec = serde_json::from_value(raw.clone()).unwrap();
        let e = plan(Path::new("/b"), &raw, &spec).unwrap_err().to_string();
        assert!(
            e.contains("process.apparmorProfile is not supported"),
            "{e}"
        );
    }

    #[test]
    fn empty_and_supported_fields_pass() {
        let v = serde_json::json!({
            "ociVersion": "1.0.2", "hooks": {}, "process": {"apparmorProfile": "", "args": ["sh"]},
            "annotations": {"a.b": "c"}, "linux": {"sysctl": {"net.ipv4.ip_forward": "1"},
            "resources": {"devices": [{"allow": false, "access": "rwm"}]}}
        });
        assert_eq!(check(v), None);
    }

    #[test]
    fn hooks_are_checked() {
        use super::super::hooks::Hooks;
        let v = serde_json::json!({"createRuntime": [{"path": "/bin/x", "args": ["x", "1"], "env": ["A=b"], "timeout": 3}], "poststop": []});
        let h = Hooks::parse(Some(&v)).unwrap();
        assert_eq!(h.create_runtime[0].args, ["x", "1"]);
        assert_eq!(h.create_runtime[0].timeout, Some(3));
        assert!(Hooks::parse(None).unwrap().is_empty());
        let err = |v: serde_json::Value| format!("{:#}", Hooks::parse(Some(&v)).unwrap_err());
        assert!(err(serde_json::json!({"prestart": [{"path": "bin/x"}]}))
            .contains("hooks.prestart[0].path bin/x is not an absolute path"));
        assert!(
            err(serde_json::json!({"poststart": [{"path": "/x", "timeout": 0}]}))
                .contains("hooks.poststart[0].timeout must be more than 0")
        );
        assert!(
            err(serde_json::json!({"preStart": []})).contains("hooks.preStart is not a hook kind")
        );
    }

    #[test]
    fn mount_options_split_into_flags_and_data() {
        let m: oci_spec::runtime::Mount = serde_json::from_value(serde_json::json!({
            "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]
        }))
        .unwrap();
        let s = mount_spec(&m).unwrap();
        assert_eq!(s.flags, libc::MS_NOSUID | libc::MS_STRICTATIME);
        assert_eq!(s.data, "mode=755,size=65536k");
        let m: oci_spec::runtime::Mount = serde_json::from_value(serde_json::json!({
            "destination": "/x", "type": "bind", "source": "/tmp", "options": ["rbind", "ro", "rprivate"]
        }))
        .unwrap();
        let s = mount_spec(&m).unwrap();
        assert_eq!(s.flags, libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY);
        assert_eq!(s.propagation, libc::MS_REC | libc::MS_PRIVATE);
    }
}
