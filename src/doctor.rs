//! `stepctr doctor`: what this host allows, and why.
//!
//! Each check is one line: `ok`, `limited` or `missing`, what was found, and what to do. The
//! checks are pure functions of a [`Host`], the raw text of the files they look at (and the uid,
//! and the result of one probe); [`Host::read`] is the thin layer that reads the real ones. So
//! every kind of host (pure v2, hybrid, v1, WSL, inside docker, a rootless user with a delegated
//! cgroup) is a unit test with made-up files.
//!
//! Reading these files is bookkeeping, not narrated; so is the one probe (a child that makes a
//! user namespace), which goes through the kernel seam's plain [`Linux`], never the narrator.

use crate::kernel::linux::Linux;
use crate::kernel::Kernel;
use anyhow::Result;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// How well the host offers one thing stepctr uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Limited,
    Missing,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Limited => "limited",
            Status::Missing => "missing",
        }
    }
}

/// One line of the report (and one object of `--json`: `check`, `status`, `found`, `advice`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub status: Status,
    pub found: String,
    /// What to do about it (empty when there is nothing to do).
    pub advice: String,
    /// Missing, stepctr cannot build a container at all (not in the JSON: `doctor` exits 1).
    #[serde(skip)]
    pub essential: bool,
}

impl Check {
    fn new(check: &'static str, status: Status, found: String, advice: &str) -> Check {
        Check {
            check,
            status,
            found,
            advice: advice.to_string(),
            essential: false,
        }
    }

    /// Without it, stepctr cannot work (when the status is `missing`).
    fn essential(mut self) -> Check {
        self.essential = true;
        self
    }

    fn advice(mut self, advice: String) -> Check {
        self.advice = advice;
        self
    }

    /// Is this check missing something stepctr cannot work without?
    pub fn fatal(&self) -> bool {
        self.essential && self.status == Status::Missing
    }
}

/// Everything the checks look at, as read from the host (or made up by a test).
#[derive(Debug, Clone, Default)]
pub struct Host {
    /// /proc/self/status (Uid, CapEff, CapBnd, Seccomp).
    pub status: String,
    /// /proc/self/mountinfo.
    pub mountinfo: String,
    /// /proc/self/cgroup.
    pub self_cgroup: String,
    /// cgroup.controllers at the top of the visible cgroup2 mount, if there is one.
    pub v2_controllers: Option<String>,
    /// Our own cgroup on the cgroup2 mount (for delegation to a user).
    pub own_cgroup: Option<OwnCgroup>,
    /// /proc/filesystems.
    pub filesystems: String,
    /// An overlay module this kernel could load (/lib/modules/RELEASE/.../overlay.ko*), or
    /// /sys/module/overlay (loaded or built in).
    pub overlay_module: bool,
    /// Ubuntu's /sys/module/overlay/parameters/permit_mounts_in_userns.
    pub overlay_permit_userns: Option<String>,
    /// /proc/sys/kernel/osrelease.
    pub kernel_release: String,
    /// /proc/version.
    pub proc_version: String,
    /// $WSL_DISTRO_NAME.
    pub wsl_distro: Option<String>,
    /// /proc/sys/user/max_user_namespaces.
    pub max_user_namespaces: Option<String>,
    /// Debian's (older kernels') /proc/sys/kernel/unprivileged_userns_clone.
    pub unprivileged_userns_clone: Option<String>,
    /// Ubuntu's /proc/sys/kernel/apparmor_restrict_unprivileged_userns.
    pub apparmor_restrict_userns: Option<String>,
    /// The probe: a child of ours made a user namespace, and a mount namespace in it (Err: the
    /// failed call). None: not run.
    pub userns_probe: Option<Result<(), String>>,
    /// /proc/sys/kernel/seccomp/actions_avail.
    pub seccomp_actions: Option<String>,
    /// /proc/sys/kernel/cap_last_cap.
    pub cap_last_cap: Option<String>,
    /// /.dockerenv exists.
    pub dockerenv: bool,
    /// /run/.containerenv exists (podman).
    pub containerenv: bool,
    /// /run/systemd/container (systemd-nspawn, lxc, docker... write their name there).
    pub systemd_container: Option<String>,
    /// /proc/1/cgroup.
    pub pid1_cgroup: Option<String>,
    /// /proc/1/comm.
    pub pid1_comm: Option<String>,
    /// qemu-system-x86_64 on $PATH (for `demo startup --vm`).
    pub qemu: Option<PathBuf>,
    /// The kernel image `demo startup --vm` would boot (Err: what was looked for). None: not
    /// looked for.
    pub vm_kernel: Option<Result<PathBuf, String>>,
}

/// Our own cgroup on the cgroup2 mount.
#[derive(Debug, Clone, Default)]
pub struct OwnCgroup {
    /// Its directory, e.g. /sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/x.scope.
    pub dir: String,
    /// The owner of that directory.
    pub owner: u32,
    /// Its cgroup.controllers (what its parent lets it use).
    pub controllers: String,
    /// Its cgroup.subtree_control.
    pub subtree_control: String,
}

/// The cgroup controllers stepctr uses, and the flag each one serves.
const CONTROLLERS: [(&str, &str); 3] = [
    ("memory", "--memory"),
    ("cpu", "--cpus"),
    ("pids", "--pids-limit"),
];

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

// ---- parsing ------------------------------------------------------------------------------

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub id: u64,
    pub parent: u64,
    pub point: String,
    pub read_only: bool,
    pub fstype: String,
    pub source: String,
    pub super_options: Vec<String>,
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|o| o.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(o) if b[i] == b'\\' => {
                out.push(o.iter().fold(0u8, |v, c| v.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let f: Vec<&str> = left.split_whitespace().collect();
            let r: Vec<&str> = right.split_whitespace().collect();
            if f.len() < 6 || r.is_empty() {
                return None;
            }
            Some(Mount {
                id: f[0].parse().ok()?,
                parent: f[1].parse().ok()?,
                point: unescape(f[4]),
                read_only: f[5].split(',').any(|o| o == "ro"),
                fstype: r[0].to_string(),
                source: r.get(1).map(|s| unescape(s)).unwrap_or_default(),
                super_options: r
                    .get(2)
                    .map(|o| o.split(',').map(str::to_string).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The mounts a path lookup can reach: not covered by a mount on the same point (mounted on
/// top of it), and all their parents reachable too.
pub fn visible_mounts(all: &[Mount]) -> Vec<Mount> {
    // `m` is covered, as seen from its child `by` (or from itself): another mount sits on the
    // same point, on top of it.
    let covered = |m: &Mount, by: &Mount| {
        all.iter()
            .any(|o| o.id != m.id && o.id != by.id && o.parent == m.id && o.point == m.point)
    };
    let visible = |m: &Mount| {
        let mut cur = m;
        let mut from = m;
        for _ in 0..=all.len() {
            if covered(cur, from) {
                return false;
            }
            match all.iter().find(|p| p.id == cur.parent && p.id != cur.id) {
                Some(p) => {
                    from = cur;
                    cur = p;
                }
                None => return true,
            }
        }
        true
    };
    all.iter().filter(|m| visible(m)).cloned().collect()
}

/// Which cgroup layout the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// One cgroup2 tree at /sys/fs/cgroup with the controllers.
    V2,
    /// v1 controller hierarchies, plus a cgroup2 tree without them (/sys/fs/cgroup/unified).
    Hybrid,
    /// v1 hierarchies only.
    V1,
    /// No cgroup filesystem at /sys/fs/cgroup.
    None,
}

/// The cgroup mounts under /sys/fs/cgroup.
#[derive(Debug, Clone)]
pub struct CgroupLayout {
    pub mode: CgroupMode,
    /// The cgroup2 mount, if there is one.
    pub v2: Option<Mount>,
    /// The v1 hierarchies.
    pub v1: Vec<Mount>,
}

fn under_cgroup_root(point: &str) -> bool {
    point == CGROUP_ROOT || point.starts_with("/sys/fs/cgroup/")
}

pub fn cgroup_layout(mountinfo: &str) -> CgroupLayout {
    let mounts = visible_mounts(&parse_mountinfo(mountinfo));
    let v2 = mounts
        .iter()
        .filter(|m| m.fstype == "cgroup2" && under_cgroup_root(&m.point))
        .min_by_key(|m| m.point.len())
        .cloned();
    let v1: Vec<Mount> = mounts
        .iter()
        .filter(|m| m.fstype == "cgroup" && under_cgroup_root(&m.point))
        .cloned()
        .collect();
    let mode = match (&v2, v1.is_empty()) {
        (Some(m), _) if m.point == CGROUP_ROOT => CgroupMode::V2,
        (Some(_), false) => CgroupMode::Hybrid,
        (None, false) => CgroupMode::V1,
        // A cgroup2 mount somewhere below /sys/fs/cgroup and nothing else: stepctr looks for
        // controllers at /sys/fs/cgroup itself and finds none.
        (Some(_), true) | (None, true) => CgroupMode::None,
    };
    CgroupLayout { mode, v2, v1 }
}

/// Every v1 controller the kernel knows (the other super options are flags: xattr, noprefix...).
const V1_CONTROLLERS: [&str; 15] = [
    "cpuset",
    "cpu",
    "cpuacct",
    "io",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// The controllers of a v1 hierarchy (from its super options).
fn v1_controllers(m: &Mount) -> Vec<String> {
    m.super_options
        .iter()
        .filter(|o| V1_CONTROLLERS.contains(&o.as_str()))
        .cloned()
        .collect()
}

/// A `Key:\tvalue` field of /proc/PID/status.
fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// The effective uid (the second number of `Uid:`).
pub fn effective_uid(status: &str) -> Option<u32> {
    status_field(status, "Uid")?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn cap_mask(status: &str, key: &str) -> Option<u64> {
    u64::from_str_radix(status_field(status, key)?, 16).ok()
}

/// A capability's name (`CAP_SYS_ADMIN`) by its number, as the `caps` crate knows them.
fn cap_name(bit: u32) -> String {
    caps::all()
        .into_iter()
        .find(|c| u32::from(c.index()) == bit)
        .map(|c| c.to_string())
        .unwrap_or_else(|| format!("capability {bit}"))
}

/// What stepctr (or a container) cannot do without this capability.
fn cap_effect(name: &str) -> &'static str {
    match name {
        "CAP_SYS_ADMIN" => "mount, unshare, setns, pivot_root and sethostname all fail: no stage can run",
        "CAP_SYS_RESOURCE" => "raising a resource limit above its hard limit fails with EPERM (setrlimit/prlimit), so a --ulimit that raises nofile or nproc (docker's --ulimit) cannot work here, nor can a container be given CAP_SYS_RESOURCE",
        "CAP_MKNOD" => "the device nodes of the container's /dev (mknod null, zero, random...) cannot be made",
        "CAP_SETUID" | "CAP_SETGID" => "-u USER cannot switch user (setresuid/setresgid/setgroups)",
        "CAP_SETPCAP" => "capabilities cannot be dropped from the container's bounding set (PR_CAPBSET_DROP)",
        "CAP_NET_ADMIN" => "the container's loopback interface cannot be brought up",
        "CAP_CHOWN" | "CAP_FOWNER" | "CAP_DAC_OVERRIDE" | "CAP_FSETID" => "image layers cannot be unpacked with their owners and modes",
        "CAP_SYS_MODULE" => "the overlay module cannot be loaded on demand",
        "CAP_SYS_PTRACE" => "the namespaces of other users' processes cannot be opened (/proc/PID/ns)",
        _ => "no container can be given it either (--cap-add, --privileged)",
    }
}

/// `6.8.0-45-generic` → (6, 8).
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

fn trimmed(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim)
}

fn words(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

// ---- the checks (pure) --------------------------------------------------------------------

/// cgroup_mode: pure v2, hybrid or v1 (from the visible mounts under /sys/fs/cgroup).
pub fn check_cgroup_mode(layout: &CgroupLayout, v2_controllers: Option<&str>) -> Check {
    let name = "cgroup_mode";
    match layout.mode {
        CgroupMode::V2 => Check::new(
            name,
            Status::Ok,
            format!("pure v2: cgroup2 at {CGROUP_ROOT}, no v1 hierarchy"),
            "",
        ),
        CgroupMode::Hybrid => {
            let v2 = layout.v2.as_ref().map(|m| m.point.as_str()).unwrap_or("?");
            let ctl = match v2_controllers.map(str::trim) {
                Some("") | None => "no controllers".to_string(),
                Some(c) => format!("controllers: {c}"),
            };
            Check::new(
                name,
                Status::Limited,
                format!(
                    "hybrid: v1 hierarchies ({}) and a cgroup2 tree at {v2} ({ctl})",
                    v1_names(layout)
                ),
                "stepctr uses the v1 hierarchies: limits work, but a process cannot be born in its cgroup (clone3 CLONE_INTO_CGROUP needs v2), so PID 1 is forked and then moved; for pure v2 boot with systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all",
            )
        }
        CgroupMode::V1 => Check::new(
            name,
            Status::Limited,
            format!("v1: one hierarchy per controller ({})", v1_names(layout)),
            "stepctr uses the v1 hierarchies: limits work, but a process cannot be born in its cgroup (clone3 CLONE_INTO_CGROUP needs v2) and no cgroup can be delegated to a user; for v2 boot with systemd.unified_cgroup_hierarchy=1",
        ),
        CgroupMode::None => Check::new(
            name,
            Status::Missing,
            format!("no cgroup filesystem mounted at {CGROUP_ROOT}"),
            "mount one: `mount -t cgroup2 none /sys/fs/cgroup` (the cgroup stage of `all` needs it)",
        )
        .essential(),
    }
}

fn v1_names(layout: &CgroupLayout) -> String {
    let mut names: Vec<String> = Vec::new();
    for m in &layout.v1 {
        let c = v1_controllers(m);
        if c.is_empty() {
            if let Some(n) = m.super_options.iter().find(|o| o.starts_with("name=")) {
                names.push(n.clone());
            }
        } else {
            names.push(c.join(","));
        }
    }
    names.join(" ")
}

/// cgroup_controllers: which of memory, cpu, pids stepctr can set limits with.
pub fn check_cgroup_controllers(layout: &CgroupLayout, v2_controllers: Option<&str>) -> Check {
    let name = "cgroup_controllers";
    let (have, whence): (Vec<String>, String) = match layout.mode {
        CgroupMode::V2 => (
            words(v2_controllers.unwrap_or(""))
                .into_iter()
                .map(str::to_string)
                .collect(),
            format!("{CGROUP_ROOT}/cgroup.controllers"),
        ),
        CgroupMode::Hybrid | CgroupMode::V1 => (
            layout.v1.iter().flat_map(v1_controllers).collect(),
            "v1 hierarchies".to_string(),
        ),
        CgroupMode::None => {
            return Check::new(
                name,
                Status::Missing,
                "no cgroup filesystem, so no controller".to_string(),
                "without cgroups there are no limits (--memory, --cpus, --pids-limit)",
            )
        }
    };
    let usable: Vec<&str> = CONTROLLERS
        .iter()
        .map(|(c, _)| *c)
        .filter(|c| have.iter().any(|h| h == c))
        .collect();
    let lacking: Vec<(&str, &str)> = CONTROLLERS
        .iter()
        .copied()
        .filter(|(c, _)| !usable.contains(c))
        .collect();
    if lacking.is_empty() {
        return Check::new(
            name,
            Status::Ok,
            format!("{} usable ({whence})", usable.join(", ")),
            "",
        );
    }
    let found = if usable.is_empty() {
        format!("none of memory, cpu, pids ({whence})")
    } else {
        format!(
            "{} usable, {} not ({whence})",
            usable.join(", "),
            lacking
                .iter()
                .map(|(c, _)| *c)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let flags: Vec<&str> = lacking.iter().map(|(_, f)| *f).collect();
    Check::new(name, Status::Limited, found, "")
        .advice(format!(
            "{} cannot be used here (stepctr refuses them with an error); enable the controller in the kernel (CONFIG_MEMCG, CONFIG_CGROUP_SCHED, CONFIG_CGROUP_PIDS) or on the boot command line",
            flags.join(", ")
        ))
}

/// cgroup_delegation: can we, as who we are, make cgroups? Root: is cgroupfs writable. A user
/// on v2: is our own cgroup (under the user's systemd slice) delegated to us.
pub fn check_cgroup_delegation(layout: &CgroupLayout, uid: u32, own: Option<&OwnCgroup>) -> Check {
    let name = "cgroup_delegation";
    if layout.mode == CgroupMode::None {
        return Check::new(
            name,
            Status::Missing,
            "no cgroup filesystem".to_string(),
            "see cgroup_mode",
        );
    }
    if uid == 0 {
        let used: Vec<&Mount> = match layout.mode {
            CgroupMode::V2 => layout.v2.iter().collect(),
            _ => layout
                .v1
                .iter()
                .filter(|m| {
                    v1_controllers(m)
                        .iter()
                        .any(|c| CONTROLLERS.iter().any(|(w, _)| w == c))
                })
                .collect(),
        };
        let ro: Vec<&str> = used
            .iter()
            .filter(|m| m.read_only)
            .map(|m| m.point.as_str())
            .collect();
        if !ro.is_empty() {
            return Check::new(
                name,
                Status::Missing,
                format!("root, but cgroupfs is mounted read-only: {}", ro.join(" ")),
                "no limits can be set; a container runtime outside made it read-only: start that container with --privileged (or mount /sys/fs/cgroup read-write)",
            );
        }
        return Check::new(
            name,
            Status::Ok,
            if layout.mode == CgroupMode::V2 {
                format!("root, and the cgroup2 tree is mounted read-write: stepctr makes {CGROUP_ROOT}/stepctr/NAME")
            } else {
                format!("root, and the v1 hierarchies are mounted read-write: stepctr makes {CGROUP_ROOT}/CONTROLLER/stepctr/NAME")
            },
            "",
        );
    }
    if layout.mode != CgroupMode::V2 {
        return Check::new(
            name,
            Status::Missing,
            format!("uid {uid} on cgroup {}: v1 cannot be delegated to a user", mode_word(layout.mode)),
            "rootless containers run without limits here; for limits run as root, or boot with systemd.unified_cgroup_hierarchy=1 (v2) and use a delegated cgroup",
        );
    }
    let advice = "start stepctr in a delegated cgroup: `systemd-run --user --scope -p Delegate=yes stepctr ...` (systemd delegates memory, pids (and cpu) under user@UID.service), or run as root; without it rootless containers run without limits";
    let Some(own) = own else {
        return Check::new(
            name,
            Status::Missing,
            format!("uid {uid}: our own cgroup is not known (/proc/self/cgroup)"),
            advice,
        );
    };
    if own.owner != uid {
        return Check::new(
            name,
            Status::Missing,
            format!(
                "uid {uid}: our cgroup {} belongs to uid {}, not delegated",
                own.dir, own.owner
            ),
            advice,
        );
    }
    let have = words(&own.controllers);
    let lacking: Vec<&str> = CONTROLLERS
        .iter()
        .filter(|(c, _)| !have.contains(c))
        .map(|(_, f)| *f)
        .collect();
    let found = format!(
        "uid {uid}: {} is delegated to us (controllers: {}; cgroup.subtree_control: {})",
        own.dir,
        or_none(&own.controllers),
        or_none(&own.subtree_control)
    );
    if lacking.is_empty() {
        Check::new(name, Status::Ok, found, "")
    } else {
        Check::new(name, Status::Limited, found, "").advice(format!(
            "{} cannot be used rootless: delegate more controllers (systemctl edit user@.service: [Service] Delegate=cpu memory pids)",
            lacking.join(", ")
        ))
    }
}

fn or_none(s: &str) -> &str {
    if s.trim().is_empty() {
        "none"
    } else {
        s.trim()
    }
}

fn mode_word(mode: CgroupMode) -> &'static str {
    match mode {
        CgroupMode::V2 => "v2",
        CgroupMode::Hybrid => "hybrid",
        CgroupMode::V1 => "v1",
        CgroupMode::None => "none",
    }
}

/// overlayfs: in /proc/filesystems (or a module the kernel can load).
pub fn check_overlayfs(filesystems: &str, module: bool) -> Check {
    let name = "overlayfs";
    let listed = filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"));
    if listed {
        Check::new(
            name,
            Status::Ok,
            "overlay is in /proc/filesystems".to_string(),
            "",
        )
    } else if module {
        Check::new(
            name,
            Status::Ok,
            "overlay is not loaded yet, but its module is there: the kernel loads it at the first mount".to_string(),
            "",
        )
    } else {
        Check::new(
            name,
            Status::Missing,
            "overlay is neither in /proc/filesystems nor a module of this kernel".to_string(),
            "the fs stage stacks the image's layers with overlayfs: `modprobe overlay`, or use a kernel with CONFIG_OVERLAY_FS",
        )
        .essential()
    }
}

/// overlayfs_userns: can overlayfs be mounted inside a user namespace (rootless)?
pub fn check_overlayfs_userns(overlay: &Check, release: &str, permit_param: Option<&str>) -> Check {
    let name = "overlayfs_userns";
    if overlay.status == Status::Missing {
        return Check::new(
            name,
            Status::Missing,
            "no overlayfs at all".to_string(),
            "see overlayfs",
        );
    }
    if matches!(permit_param, Some("Y" | "y" | "1")) {
        return Check::new(
            name,
            Status::Ok,
            "Ubuntu's overlay.permit_mounts_in_userns is on".to_string(),
            "",
        );
    }
    match kernel_version(release) {
        Some(v) if v >= (5, 11) => Check::new(
            name,
            Status::Ok,
            format!("kernel {}.{} (5.11 or later mounts overlayfs in a user namespace)", v.0, v.1),
            "",
        ),
        Some(v) => Check::new(
            name,
            Status::Limited,
            format!("kernel {}.{} is older than 5.11: overlayfs cannot be mounted in a user namespace", v.0, v.1),
            "rootless mode cannot stack the layers (root is not affected); use a kernel >= 5.11, or Ubuntu's overlay module with permit_mounts_in_userns=1",
        ),
        None => Check::new(
            name,
            Status::Limited,
            format!("cannot tell the kernel version from {:?}", release.trim()),
            "overlayfs in a user namespace needs Linux 5.11 or later",
        ),
    }
}

/// pivot_root: the container's root is switched with pivot_root, which cannot leave the
/// initramfs (rootfs).
pub fn check_pivot_root(mountinfo: &str) -> Check {
    let name = "pivot_root";
    let mounts = visible_mounts(&parse_mountinfo(mountinfo));
    match mounts.iter().rev().find(|m| m.point == "/") {
        Some(m) if m.fstype == "rootfs" => Check::new(
            name,
            Status::Missing,
            "/ is the initramfs (rootfs), which pivot_root cannot leave (EINVAL)".to_string(),
            "switch_root to a tmpfs or a real disk first (as tests/vm/cgroup-v2.sh does), or boot with root= a real filesystem",
        )
        .essential(),
        Some(m) => Check::new(
            name,
            Status::Ok,
            format!("/ is {} ({}), not the initramfs: pivot_root can switch away from it", m.fstype, m.source),
            "",
        ),
        None => Check::new(
            name,
            Status::Limited,
            "/ is not in /proc/self/mountinfo: cannot tell".to_string(),
            "pivot_root needs / to be a real mount (not the initramfs)",
        ),
    }
}

/// What the sysctls say about user namespaces for a user who is not root.
fn userns_knobs(h: &Host) -> (Status, String, String) {
    let max = trimmed(&h.max_user_namespaces);
    if max == Some("0") {
        return (
            Status::Missing,
            "user.max_user_namespaces = 0: nobody, root included, may make a user namespace".into(),
            "sysctl -w user.max_user_namespaces=15000 (and in /etc/sysctl.d/ to keep it)".into(),
        );
    }
    if trimmed(&h.unprivileged_userns_clone) == Some("0") {
        return (
            Status::Missing,
            "kernel.unprivileged_userns_clone = 0 (Debian's switch): only root may make a user namespace".into(),
            "sysctl -w kernel.unprivileged_userns_clone=1 for rootless mode".into(),
        );
    }
    if trimmed(&h.apparmor_restrict_userns) == Some("1") {
        return (
            Status::Limited,
            "kernel.apparmor_restrict_unprivileged_userns = 1 (Ubuntu): a user gets a user namespace without capabilities in it, so rootless mounts fail".into(),
            "give stepctr an AppArmor profile that allows `userns,` (/etc/apparmor.d/stepctr: `abi <abi/4.0>, include <tunables/global> profile stepctr /usr/local/bin/stepctr flags=(unconfined) { userns, }`, then apparmor_parser -r it), or sysctl -w kernel.apparmor_restrict_unprivileged_userns=0".into(),
        );
    }
    let mut found = match max {
        Some(n) => format!("user.max_user_namespaces = {n}"),
        None => "no user.max_user_namespaces (a kernel without CONFIG_USER_NS?)".to_string(),
    };
    if max.is_none() {
        return (
            Status::Missing,
            found,
            "use a kernel with CONFIG_USER_NS".into(),
        );
    }
    if let Some(v) = trimmed(&h.unprivileged_userns_clone) {
        found.push_str(&format!(", kernel.unprivileged_userns_clone = {v}"));
    }
    if let Some(v) = trimmed(&h.apparmor_restrict_userns) {
        found.push_str(&format!(
            ", kernel.apparmor_restrict_unprivileged_userns = {v}"
        ));
    }
    found.push_str(": no switch stops a user");
    (Status::Ok, found, String::new())
}

/// userns: can we (as who we are) make a user namespace? The probe says; without one, the knobs.
pub fn check_userns(h: &Host, uid: u32) -> Check {
    let name = "userns";
    match &h.userns_probe {
        Some(Ok(())) => Check::new(
            name,
            Status::Ok,
            format!(
                "probe: a child (uid {uid}) made a user namespace, and a mount namespace in it"
            ),
            "",
        ),
        Some(Err(e)) => {
            let (_, knob_found, knob_advice) = userns_knobs(h);
            Check::new(
                name,
                Status::Missing,
                format!("probe: a child (uid {uid}) could not: {}; {knob_found}", e.trim()),
                "",
            )
            .advice(if knob_advice.is_empty() {
                "something else forbids it (a seccomp filter or LSM of the runtime stepctr runs in?); --userns and rootless mode need it".to_string()
            } else {
                knob_advice
            })
        }
        None => {
            let (status, found, advice) = userns_knobs(h);
            Check::new(name, status, found, "").advice(advice)
        }
    }
}

/// userns_unprivileged: what a user who is not root would get (rootless mode), from the knobs
/// (and from the probe when we are that user).
pub fn check_userns_unprivileged(h: &Host, uid: u32) -> Check {
    let name = "userns_unprivileged";
    let (status, found, advice) = userns_knobs(h);
    if uid != 0 {
        if let Some(Err(e)) = &h.userns_probe {
            return Check::new(
                name,
                Status::Missing,
                format!("as uid {uid}: {}; {found}", e.trim()),
                "",
            )
            .advice(if advice.is_empty() {
                "rootless mode needs unprivileged user namespaces".to_string()
            } else {
                advice
            });
        }
    }
    Check::new(name, status, found, "").advice(advice)
}

/// seccomp: can stepctr install its syscall filter?
pub fn check_seccomp(status: &str, actions: Option<&str>) -> Check {
    let name = "seccomp";
    let Some(mode) = status_field(status, "Seccomp") else {
        return Check::new(
            name,
            Status::Missing,
            "no Seccomp field in /proc/self/status: a kernel without CONFIG_SECCOMP".to_string(),
            "containers cannot get a syscall filter: start them with --security-opt seccomp=unconfined, or use a kernel with CONFIG_SECCOMP_FILTER",
        );
    };
    let Some(actions) = actions else {
        return Check::new(
            name,
            Status::Missing,
            "no /proc/sys/kernel/seccomp/actions_avail: no seccomp filters (CONFIG_SECCOMP_FILTER)".to_string(),
            "containers cannot get a syscall filter: start them with --security-opt seccomp=unconfined, or use a kernel with CONFIG_SECCOMP_FILTER",
        );
    };
    let avail = words(actions);
    let lacking: Vec<&str> = ["errno", "kill_process", "allow"]
        .into_iter()
        .filter(|a| !avail.contains(a))
        .collect();
    if !lacking.is_empty() {
        return Check::new(
            name,
            Status::Limited,
            format!(
                "filters, but not the actions {} (actions_avail: {})",
                lacking.join(", "),
                actions.trim()
            ),
            "stepctr's filter answers EPERM (errno) and kills (kill_process): use a kernel >= 4.14",
        );
    }
    let filters = status_field(status, "Seccomp_filters").unwrap_or("?");
    match mode {
        "0" => Check::new(
            name,
            Status::Ok,
            format!("filters available (actions: {}); stepctr itself runs unfiltered", actions.trim()),
            "",
        ),
        "2" => Check::new(
            name,
            Status::Limited,
            format!("filters available, but stepctr already runs under {filters} filter(s) from whoever started it (Seccomp: 2)"),
            "the container's filter is added on top: what the outer filter denies stays denied, even with --privileged or seccomp=unconfined",
        ),
        other => Check::new(
            name,
            Status::Missing,
            format!("stepctr runs in strict seccomp mode (Seccomp: {other})"),
            "almost every call is refused: run stepctr outside that sandbox",
        )
        .essential(),
    }
}

/// environment: a bare host, inside a container, or WSL.
pub fn check_environment(h: &Host) -> Check {
    let name = "environment";
    let version = h.proc_version.to_lowercase();
    if version.contains("microsoft") || h.wsl_distro.is_some() {
        let wsl2 = version.contains("microsoft-standard") || version.contains("wsl2");
        let distro = h
            .wsl_distro
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        if wsl2 || !version.contains("microsoft") {
            return Check::new(
                name,
                Status::Limited,
                format!("WSL2{distro}: a real Linux kernel in a lightweight VM ({})", h.proc_version.trim()),
                "works, but systemd may not be PID 1 and the cgroup layout is WSL's choice: for pure v2 put `kernelCommandLine = cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1` under [wsl2] in .wslconfig; enable systemd in /etc/wsl.conf for delegation",
            );
        }
        return Check::new(
            name,
            Status::Missing,
            format!(
                "WSL1{distro}: Windows translates Linux calls, there is no Linux kernel ({})",
                h.proc_version.trim()
            ),
            "WSL1 has no namespaces, cgroups or overlayfs: `wsl --set-version <distro> 2`",
        )
        .essential();
    }
    let mut signs = Vec::new();
    if h.dockerenv {
        signs.push("/.dockerenv (docker)".to_string());
    }
    if h.containerenv {
        signs.push("/run/.containerenv (podman)".to_string());
    }
    if let Some(c) = trimmed(&h.systemd_container).filter(|c| !c.is_empty()) {
        signs.push(format!("/run/systemd/container says {c}"));
    }
    if let Some(cg) = &h.pid1_cgroup {
        for (needle, what) in [
            ("/docker", "docker"),
            ("/kubepods", "kubernetes"),
            ("/libpod", "podman"),
            ("/lxc", "lxc"),
            ("containerd", "containerd"),
        ] {
            if cg.contains(needle) {
                signs.push(format!("/proc/1/cgroup names {what}"));
                break;
            }
        }
    }
    let pid1 = trimmed(&h.pid1_comm).unwrap_or("?");
    if signs.is_empty() {
        return Check::new(
            name,
            Status::Ok,
            format!(
                "not in a container or WSL (no /.dockerenv, /run/.containerenv; PID 1 is {pid1})"
            ),
            "",
        );
    }
    Check::new(
        name,
        Status::Limited,
        format!("inside a container: {}; PID 1 is {pid1}", signs.join(", ")),
        "stepctr nests a container in it: what the outer runtime withheld (capabilities, seccomp, a read-only /sys/fs/cgroup) is missing here too; the other lines say what",
    )
}

/// capabilities: what root lacks here (and so can never give a container).
pub fn check_capabilities(status: &str, cap_last_cap: Option<&str>, uid: u32) -> Check {
    let name = "capabilities";
    let last: u32 = cap_last_cap
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
        .min(63);
    let full: u64 = if last >= 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    };
    let (Some(eff), Some(bnd)) = (cap_mask(status, "CapEff"), cap_mask(status, "CapBnd")) else {
        return Check::new(
            name,
            Status::Limited,
            "no CapEff/CapBnd in /proc/self/status: cannot tell".to_string(),
            "",
        );
    };
    let bits = |mask: u64| -> Vec<String> {
        (0..=last)
            .filter(|b| mask & (1u64 << b) != 0)
            .map(cap_name)
            .collect()
    };
    if uid != 0 {
        let lost = bits(full & !bnd);
        let found = if lost.is_empty() {
            format!("uid {uid}: no capabilities on the host (as usual); a user namespace gives its own full set")
        } else {
            format!(
                "uid {uid}: no capabilities on the host (as usual), and the bounding set lacks {}",
                lost.join(", ")
            )
        };
        return Check::new(name, Status::Ok, found, "");
    }
    // Root: what the effective set lacks is what we cannot do; what the bounding set lacks, no
    // process started from here can ever get back.
    let lacking = bits(full & !(eff & bnd));
    if lacking.is_empty() {
        return Check::new(
            name,
            Status::Ok,
            format!("root has all {} capabilities (CapEff {eff:016x})", last + 1),
            "",
        );
    }
    let found = format!(
        "root lacks {} (CapEff {eff:016x}, CapBnd {bnd:016x}: {} of {})",
        lacking.join(", "),
        (eff & bnd & full).count_ones(),
        last + 1
    );
    let advice: Vec<String> = lacking
        .iter()
        .map(|c| format!("without {c}: {}", cap_effect(c)))
        .collect();
    let advice = format!(
        "{}. Whoever started this shell withheld them (a container runtime?): run stepctr where root has every capability (a VM, or a container started with --privileged) to see them",
        advice.join("; ")
    );
    let sys_admin = lacking.iter().any(|c| c == "CAP_SYS_ADMIN");
    let c = Check::new(
        name,
        if sys_admin {
            Status::Missing
        } else {
            Status::Limited
        },
        found,
        "",
    )
    .advice(advice);
    if sys_admin {
        c.essential()
    } else {
        c
    }
}

/// root: full mode as root, rootless mode in a user namespace otherwise.
pub fn check_root(uid: u32, userns: &Check) -> Check {
    let name = "root";
    if uid == 0 {
        return Check::new(
            name,
            Status::Ok,
            "running as root (uid 0): the full mode".to_string(),
            "",
        );
    }
    if userns.status == Status::Ok {
        return Check::new(
            name,
            Status::Limited,
            format!("uid {uid}: rootless mode: containers run in a user namespace where root is uid {uid} outside, and no other uid exists (no -u USER, no -t yet); limits only where a cgroup is delegated (see cgroup_delegation)"),
            "run stepctr with sudo for the full mode",
        );
    }
    Check::new(
        name,
        Status::Missing,
        format!("uid {uid}, and user namespaces are not usable (see userns)"),
        "run stepctr with sudo, or allow unprivileged user namespaces (see userns_unprivileged) for rootless mode",
    )
    .essential()
}

/// Every check, in the order they are printed.
pub fn checks(h: &Host) -> Vec<Check> {
    let uid = effective_uid(&h.status).unwrap_or(0);
    let layout = cgroup_layout(&h.mountinfo);
    let v2c = h.v2_controllers.as_deref();
    let overlay = check_overlayfs(&h.filesystems, h.overlay_module);
    let overlay_userns = check_overlayfs_userns(
        &overlay,
        &h.kernel_release,
        trimmed(&h.overlay_permit_userns),
    );
    let userns = check_userns(h, uid);
    let root = check_root(uid, &userns);
    vec![
        check_cgroup_mode(&layout, v2c),
        check_cgroup_controllers(&layout, v2c),
        check_cgroup_delegation(&layout, uid, h.own_cgroup.as_ref()),
        overlay,
        overlay_userns,
        check_pivot_root(&h.mountinfo),
        userns,
        check_userns_unprivileged(h, uid),
        check_seccomp(&h.status, h.seccomp_actions.as_deref()),
        check_environment(h),
        check_capabilities(&h.status, h.cap_last_cap.as_deref(), uid),
        root,
        check_vm_boot(h.qemu.as_deref(), h.vm_kernel.as_ref()),
    ]
}

/// vm_boot: can `demo startup --vm` boot a VM for contrast (qemu-system-x86_64 on $PATH, and a
/// kernel image: $STEPCTR_VM_KERNEL, /boot/vmlinuz-RELEASE or /boot/vmlinuz)? Not needed for
/// containers.
pub fn check_vm_boot(qemu: Option<&Path>, kernel: Option<&Result<PathBuf, String>>) -> Check {
    let name = "vm_boot";
    let kernel = match kernel {
        Some(k) => k.clone(),
        None => Err("no kernel image looked for".to_string()),
    };
    match (qemu, kernel) {
        (Some(q), Ok(k)) => Check::new(
            name,
            Status::Ok,
            format!(
                "{} and the kernel {}: `demo startup --vm` can boot a VM (software emulation)",
                q.display(),
                k.display()
            ),
            "",
        ),
        (q, k) => {
            let mut gone = Vec::new();
            if q.is_none() {
                gone.push("qemu-system-x86_64 is not on $PATH".to_string());
            }
            if let Err(e) = k {
                gone.push(e);
            }
            Check::new(
                name,
                Status::Missing,
                gone.join("; "),
                "only `demo startup --vm` (a VM boot beside the containers) needs it: install the Debian package qemu-system-x86, and set STEPCTR_VM_KERNEL to a kernel image (tests/vm/kernel.sh fetches Debian's)",
            )
        }
    }
}

// ---- reading the real host (the thin layer) -------------------------------------------------

fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

impl Host {
    /// Read this host's files, and run the user namespace probe.
    pub fn read() -> Host {
        let status = read("/proc/self/status").unwrap_or_default();
        let mountinfo = read("/proc/self/mountinfo").unwrap_or_default();
        let self_cgroup = read("/proc/self/cgroup").unwrap_or_default();
        let layout = cgroup_layout(&mountinfo);
        let v2_dir = layout.v2.as_ref().map(|m| PathBuf::from(&m.point));
        let v2_controllers = v2_dir
            .as_ref()
            .and_then(|d| read(d.join("cgroup.controllers")));
        let own_cgroup = v2_dir.as_ref().and_then(|d| own_cgroup(d, &self_cgroup));
        let kernel_release = read("/proc/sys/kernel/osrelease").unwrap_or_default();
        let module_dir = PathBuf::from("/lib/modules")
            .join(kernel_release.trim())
            .join("kernel/fs/overlayfs");
        let overlay_module = Path::new("/sys/module/overlay").is_dir()
            || [
                "overlay.ko",
                "overlay.ko.xz",
                "overlay.ko.zst",
                "overlay.ko.gz",
            ]
            .iter()
            .any(|f| module_dir.join(f).exists());
        Host {
            v2_controllers,
            own_cgroup,
            filesystems: read("/proc/filesystems").unwrap_or_default(),
            overlay_module,
            overlay_permit_userns: read("/sys/module/overlay/parameters/permit_mounts_in_userns"),
            kernel_release,
            proc_version: read("/proc/version").unwrap_or_default(),
            wsl_distro: std::env::var("WSL_DISTRO_NAME")
                .ok()
                .filter(|v| !v.is_empty()),
            max_user_namespaces: read("/proc/sys/user/max_user_namespaces"),
            unprivileged_userns_clone: read("/proc/sys/kernel/unprivileged_userns_clone"),
            apparmor_restrict_userns: read(
                "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            ),
            userns_probe: Some(probe_userns()),
            seccomp_actions: read("/proc/sys/kernel/seccomp/actions_avail"),
            cap_last_cap: read("/proc/sys/kernel/cap_last_cap"),
            dockerenv: Path::new("/.dockerenv").exists(),
            containerenv: Path::new("/run/.containerenv").exists(),
            systemd_container: read("/run/systemd/container"),
            pid1_cgroup: read("/proc/1/cgroup"),
            pid1_comm: read("/proc/1/comm"),
            qemu: crate::demo::vmboot::find_qemu(),
            vm_kernel: Some(crate::demo::vmboot::find_kernel()),
            status,
            mountinfo,
            self_cgroup,
        }
    }
}

/// Our cgroup on the cgroup2 mount at `v2_dir` (the `0::/PATH` line of /proc/self/cgroup).
fn own_cgroup(v2_dir: &Path, self_cgroup: &str) -> Option<OwnCgroup> {
    use std::os::unix::fs::MetadataExt;
    let rel = self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .trim()
        .trim_start_matches('/');
    let dir = v2_dir.join(rel);
    let owner = std::fs::metadata(&dir).ok()?.uid();
    Some(OwnCgroup {
        dir: dir.display().to_string(),
        owner,
        controllers: read(dir.join("cgroup.controllers")).unwrap_or_default(),
        subtree_control: read(dir.join("cgroup.subtree_control")).unwrap_or_default(),
    })
}

/// A child makes a user namespace, then a mount namespace in it (which fails when the user
/// namespace came without capabilities, as under Ubuntu's AppArmor restriction). Through the
/// plain kernel: doctor narrates nothing.
fn probe_userns() -> Result<(), String> {
    let k = Linux;
    let mut body = || -> Result<()> {
        k.unshare(libc::CLONE_NEWUSER, "doctor: may we make a user namespace?")?;
        k.unshare(libc::CLONE_NEWNS, "doctor: with capabilities in it?")?;
        Ok(())
    };
    let child = k
        .spawn("doctor: the user namespace probe", &mut body)
        .map_err(|e| e.to_string())?;
    let err = k.child_error(&child);
    let status = k.wait4(child.pid, 0, "doctor: reap the probe");
    match (err, status) {
        (Some(e), _) => Err(e),
        (None, Ok(s)) if s.exit_code() == 0 => Ok(()),
        (None, Ok(s)) => Err(format!("the probe ended with {}", s.exit_code())),
        (None, Err(e)) => Err(e.to_string()),
    }
}

// ---- the command --------------------------------------------------------------------------

/// The report as text: one line per check.
pub fn render_text(checks: &[Check], color: bool) -> String {
    use colored::Colorize;
    let mut out = String::new();
    for c in checks {
        let status = format!("{:<8}", c.status.as_str());
        let status = if color {
            match c.status {
                Status::Ok => status.green().to_string(),
                Status::Limited => status.yellow().to_string(),
                Status::Missing => status.red().to_string(),
            }
        } else {
            status
        };
        out.push_str(&format!("{status} {:<20} {}", c.check, c.found));
        if !c.advice.is_empty() {
            out.push_str(" -> ");
            out.push_str(&c.advice);
        }
        out.push('\n');
    }
    out
}

/// The report as JSON: an array of {check, status, found, advice}.
pub fn render_json(checks: &[Check]) -> String {
    serde_json::to_string_pretty(checks).unwrap_or_else(|_| "[]".to_string()) + "\n"
}

/// The one-line verdict, and the exit code: 1 when something essential is missing.
pub fn verdict(checks: &[Check]) -> (String, i32) {
    let fatal: Vec<&Check> = checks.iter().filter(|c| c.fatal()).collect();
    if !fatal.is_empty() {
        let names: Vec<&str> = fatal.iter().map(|c| c.check).collect();
        return (
            format!(
                "stepctr cannot work on this host: {} missing",
                names.join(", ")
            ),
            1,
        );
    }
    let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
    (
        format!(
            "stepctr can work on this host: {} ok, {} limited, {} missing (nothing it cannot do without)",
            count(Status::Ok),
            count(Status::Limited),
            count(Status::Missing)
        ),
        0,
    )
}

/// `stepctr doctor [--json]`: the report on stdout, the verdict as the exit code (and on
/// stderr when it is a failure, or after the text report).
pub fn command(json: bool) -> Result<i32> {
    use std::io::{IsTerminal, Write};
    let checks = checks(&Host::read());
    let (verdict, code) = verdict(&checks);
    let mut out = std::io::stdout();
    if json {
        let _ = out.write_all(render_json(&checks).as_bytes());
        if code != 0 {
            eprintln!("stepctr: {verdict}");
        }
    } else {
        let color = out.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let _ = out.write_all(render_text(&checks, color).as_bytes());
        if code != 0 {
            eprintln!("stepctr: {verdict}");
        } else {
            let _ = writeln!(out, "# {verdict}");
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.check == name)
            .unwrap_or_else(|| panic!("no check {name}"))
    }

    fn line(checks: &[Check], name: &str) -> String {
        let c = get(checks, name);
        format!(
            "{} {}: {} -> {}",
            c.status.as_str(),
            c.check,
            c.found,
            c.advice
        )
    }

    const ROOT_STATUS: &str = "Name:\tstepctr\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t0\nSeccomp_filters:\t0\n";

    const FILESYSTEMS: &str = "nodev\tsysfs\nnodev\tproc\nnodev\ttmpfs\n\text4\nnodev\toverlay\nnodev\tcgroup\nnodev\tcgroup2\n";

    const ACTIONS: &str = "kill_process kill_thread trap errno user_notif trace log allow\n";

    /// Ubuntu 24.04: pure v2, systemd, AppArmor restricting unprivileged user namespaces.
    const UBUNTU_MOUNTINFO: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 30 0:24 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw
30 1 252:1 / / rw,relatime shared:1 - ext4 /dev/mapper/ubuntu--vg-ubuntu--lv rw
35 25 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    fn ubuntu() -> Host {
        Host {
            status: ROOT_STATUS.to_string(),
            mountinfo: UBUNTU_MOUNTINFO.to_string(),
            self_cgroup: "0::/user.slice/user-1000.slice/session-3.scope\n".into(),
            v2_controllers: Some("cpuset cpu io memory hugetlb pids rdma misc\n".into()),
            own_cgroup: None,
            filesystems: FILESYSTEMS.into(),
            overlay_module: true,
            overlay_permit_userns: None,
            kernel_release: "6.8.0-45-generic\n".into(),
            proc_version: "Linux version 6.8.0-45-generic (buildd@lcy02-amd64-115) (x86_64-linux-gnu-gcc-13 (Ubuntu 13.2.0-23ubuntu4) 13.2.0) #45-Ubuntu SMP PREEMPT_DYNAMIC\n".into(),
            wsl_distro: None,
            max_user_namespaces: Some("63432\n".into()),
            unprivileged_userns_clone: None,
            apparmor_restrict_userns: Some("1\n".into()),
            userns_probe: Some(Ok(())),
            seccomp_actions: Some(ACTIONS.into()),
            cap_last_cap: Some("40\n".into()),
            dockerenv: false,
            containerenv: false,
            systemd_container: None,
            pid1_cgroup: Some("0::/init.scope\n".into()),
            pid1_comm: Some("systemd\n".into()),
            qemu: None,
            vm_kernel: None,
        }
    }

    /// Debian 11 style hybrid: v1 controllers, systemd's cgroup2 at /sys/fs/cgroup/unified.
    const HYBRID_MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
32 31 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate
33 31 0:30 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:6 - cgroup cgroup rw,xattr,name=systemd
34 31 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:7 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:8 - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,pids
37 31 0:34 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,blkio
";

    fn debian(mountinfo: &str) -> Host {
        Host {
            mountinfo: mountinfo.into(),
            self_cgroup: "0::/user.slice\n4:memory:/user.slice\n".into(),
            v2_controllers: Some("\n".into()),
            kernel_release: "5.10.0-30-amd64".into(),
            proc_version: "Linux version 5.10.0-30-amd64 (debian-kernel@lists.debian.org) (gcc-10 (Debian 10.2.1-6) 10.2.1 20210110) #1 SMP Debian 5.10.218-1\n".into(),
            apparmor_restrict_userns: None,
            unprivileged_userns_clone: Some("1\n".into()),
            ..ubuntu()
        }
    }

    #[test]
    fn vm_boot_needs_qemu_and_a_kernel() {
        let c = checks(&ubuntu());
        assert_eq!(get(&c, "vm_boot").status, Status::Missing);
        let q = PathBuf::from("/usr/bin/qemu-system-x86_64");
        let k = Ok(PathBuf::from("/boot/vmlinuz-6.8.0-45-generic"));
        let ok = check_vm_boot(Some(&q), Some(&k));
        assert_eq!(ok.status, Status::Ok);
        assert!(
            ok.found.contains("/boot/vmlinuz-6.8.0-45-generic"),
            "{}",
            ok.found
        );
        let none = check_vm_boot(Some(&q), Some(&Err("no kernel image: x".into())));
        assert_eq!(none.status, Status::Missing);
        assert_eq!(none.found, "no kernel image: x");
        assert!(!none.fatal(), "containers do not need a VM");
        let neither = check_vm_boot(None, None);
        assert!(
            neither
                .found
                .starts_with("qemu-system-x86_64 is not on $PATH"),
            "{}",
            neither.found
        );
    }

    #[test]
    fn ubuntu_24_04_pure_v2_with_apparmor_restriction() {
        let c = checks(&ubuntu());
        assert_eq!(get(&c, "cgroup_mode").status, Status::Ok);
        assert!(
            line(&c, "cgroup_mode").contains("pure v2"),
            "{}",
            line(&c, "cgroup_mode")
        );
        let ctl = get(&c, "cgroup_controllers");
        assert_eq!(ctl.status, Status::Ok);
        assert!(
            ctl.found.starts_with("memory, cpu, pids usable"),
            "{}",
            ctl.found
        );
        assert_eq!(get(&c, "cgroup_delegation").status, Status::Ok);
        assert_eq!(get(&c, "overlayfs").status, Status::Ok);
        assert_eq!(get(&c, "overlayfs_userns").status, Status::Ok);
        assert!(get(&c, "overlayfs_userns").found.contains("6.8"));
        assert_eq!(get(&c, "pivot_root").status, Status::Ok);
        // Root's own probe works; a user would get a namespace without capabilities.
        assert_eq!(get(&c, "userns").status, Status::Ok);
        let un = get(&c, "userns_unprivileged");
        assert_eq!(un.status, Status::Limited);
        assert!(
            un.found
                .contains("apparmor_restrict_unprivileged_userns = 1"),
            "{}",
            un.found
        );
        assert!(
            un.advice.contains("userns,") && un.advice.contains("AppArmor"),
            "{}",
            un.advice
        );
        assert_eq!(get(&c, "seccomp").status, Status::Ok);
        assert_eq!(get(&c, "environment").status, Status::Ok);
        assert!(get(&c, "environment").found.contains("PID 1 is systemd"));
        assert_eq!(get(&c, "capabilities").status, Status::Ok);
        assert_eq!(get(&c, "root").status, Status::Ok);
        assert_eq!(verdict(&c).1, 0);
    }

    #[test]
    fn hybrid_debian_without_cap_sys_resource() {
        let mut h = debian(HYBRID_MOUNTINFO);
        h.status = ROOT_STATUS.replace("000001ffffffffff", "000001fffeffffff");
        let c = checks(&h);
        let mode = get(&c, "cgroup_mode");
        assert_eq!(mode.status, Status::Limited);
        assert!(
            mode.found.starts_with("hybrid: v1 hierarchies (name=systemd cpu,cpuacct memory pids blkio) and a cgroup2 tree at /sys/fs/cgroup/unified (no controllers)"),
            "{}",
            mode.found
        );
        assert!(mode.advice.contains("CLONE_INTO_CGROUP"));
        let ctl = get(&c, "cgroup_controllers");
        assert_eq!(ctl.status, Status::Ok, "{}", ctl.found);
        assert_eq!(ctl.found, "memory, cpu, pids usable (v1 hierarchies)");
        assert_eq!(get(&c, "cgroup_delegation").status, Status::Ok);
        // 5.10: no overlayfs in a user namespace.
        assert_eq!(get(&c, "overlayfs_userns").status, Status::Limited);
        assert!(get(&c, "overlayfs_userns")
            .found
            .contains("5.10 is older than 5.11"));
        let caps = get(&c, "capabilities");
        assert_eq!(caps.status, Status::Limited);
        assert!(
            caps.found
                .starts_with("root lacks CAP_SYS_RESOURCE (CapEff 000001fffeffffff"),
            "{}",
            caps.found
        );
        assert!(caps.found.contains("40 of 41"), "{}", caps.found);
        assert!(
            caps.advice.contains("--ulimit") && caps.advice.contains("setrlimit"),
            "{}",
            caps.advice
        );
        assert_eq!(get(&c, "userns_unprivileged").status, Status::Ok);
        assert_eq!(verdict(&c).1, 0);
        // The text: one line per check, status first.
        let text = render_text(&c, false);
        assert_eq!(text.lines().count(), c.len());
        assert!(
            text.lines()
                .any(|l| l.starts_with("limited  cgroup_mode          hybrid: ")),
            "{text}"
        );
        assert!(text.lines().any(|l| l.starts_with("limited  capabilities         root lacks CAP_SYS_RESOURCE")), "{text}");
    }

    #[test]
    fn pure_v1_with_debian_userns_switch_off() {
        let v1 = HYBRID_MOUNTINFO
            .lines()
            .filter(|l| !l.contains("cgroup2"))
            .map(|l| format!("{l}\n"))
            .collect::<String>();
        let mut h = debian(&v1);
        h.v2_controllers = None;
        h.unprivileged_userns_clone = Some("0\n".into());
        let c = checks(&h);
        assert_eq!(get(&c, "cgroup_mode").status, Status::Limited);
        assert!(get(&c, "cgroup_mode")
            .found
            .starts_with("v1: one hierarchy per controller"));
        assert_eq!(get(&c, "cgroup_controllers").status, Status::Ok);
        let un = get(&c, "userns_unprivileged");
        assert_eq!(un.status, Status::Missing);
        assert!(un.found.contains("unprivileged_userns_clone = 0"));
        assert!(un
            .advice
            .contains("sysctl -w kernel.unprivileged_userns_clone=1"));
        // Root is not stopped by that switch.
        assert_eq!(get(&c, "root").status, Status::Ok);
        assert_eq!(verdict(&c).1, 0);
    }

    #[test]
    fn v1_without_a_pids_hierarchy_is_limited() {
        let mi = HYBRID_MOUNTINFO
            .lines()
            .filter(|l| !l.contains("/pids"))
            .map(|l| format!("{l}\n"))
            .collect::<String>();
        let c = checks(&debian(&mi));
        let ctl = get(&c, "cgroup_controllers");
        assert_eq!(ctl.status, Status::Limited);
        assert_eq!(ctl.found, "memory, cpu usable, pids not (v1 hierarchies)");
        assert!(ctl.advice.starts_with("--pids-limit cannot be used"));
    }

    #[test]
    fn wsl2_and_wsl1() {
        let mut h = ubuntu();
        h.proc_version = "Linux version 5.15.153.1-microsoft-standard-WSL2 (root@941d701f84f1) (gcc (GCC) 11.2.0) #1 SMP Fri Mar 29 23:14:13 UTC 2024\n".into();
        h.kernel_release = "5.15.153.1-microsoft-standard-WSL2".into();
        h.wsl_distro = Some("Ubuntu".into());
        h.pid1_comm = Some("init\n".into());
        h.apparmor_restrict_userns = None;
        let c = checks(&h);
        let env = get(&c, "environment");
        assert_eq!(env.status, Status::Limited);
        assert!(env.found.starts_with("WSL2 (Ubuntu)"), "{}", env.found);
        assert!(env.advice.contains(".wslconfig"));
        assert_eq!(get(&c, "overlayfs_userns").status, Status::Ok);
        assert_eq!(verdict(&c).1, 0);

        h.proc_version = "Linux version 4.4.0-19041-Microsoft (Microsoft@Microsoft.com) (gcc version 5.4.0 (GCC) ) #1237-Microsoft Sat Sep 11 14:32:00 PST 2021\n".into();
        let c = checks(&h);
        let env = get(&c, "environment");
        assert_eq!(env.status, Status::Missing);
        assert!(env.found.starts_with("WSL1"));
        let (text, code) = verdict(&c);
        assert_eq!(code, 1);
        assert!(text.contains("environment"), "{text}");
    }

    #[test]
    fn inside_docker() {
        // docker's defaults: cgroupns, read-only cgroupfs, no CAP_SYS_ADMIN, a seccomp filter.
        let mut h = ubuntu();
        h.mountinfo = "\
600 500 0:60 / / rw,relatime - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A:/var/lib/docker/overlay2/l/B,upperdir=/var/lib/docker/overlay2/x/diff,workdir=/var/lib/docker/overlay2/x/work
601 600 0:62 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
605 600 0:66 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
606 605 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup ro,nsdelegate,memory_recursiveprot
"
        .into();
        h.status = "Uid:\t0\t0\t0\t0\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nSeccomp:\t2\nSeccomp_filters:\t1\n".into();
        h.dockerenv = true;
        h.pid1_comm = Some("bash\n".into());
        h.pid1_cgroup = Some("0::/\n".into());
        h.userns_probe = Some(Err(
            "unshare(CLONE_NEWUSER): EPERM (Operation not permitted)".into(),
        ));
        let c = checks(&h);
        let env = get(&c, "environment");
        assert_eq!(env.status, Status::Limited);
        assert_eq!(
            env.found,
            "inside a container: /.dockerenv (docker); PID 1 is bash"
        );
        assert_eq!(get(&c, "cgroup_mode").status, Status::Ok);
        let del = get(&c, "cgroup_delegation");
        assert_eq!(del.status, Status::Missing);
        assert!(
            del.found.contains("read-only: /sys/fs/cgroup"),
            "{}",
            del.found
        );
        let caps = get(&c, "capabilities");
        assert_eq!(caps.status, Status::Missing);
        assert!(caps.found.contains("CAP_SYS_ADMIN") && caps.found.contains("CAP_SYS_RESOURCE"));
        assert!(caps.advice.contains("no stage can run"));
        assert_eq!(get(&c, "seccomp").status, Status::Limited);
        assert!(get(&c, "seccomp").found.contains("1 filter(s)"));
        let userns = get(&c, "userns");
        assert_eq!(userns.status, Status::Missing);
        assert!(userns.found.contains("EPERM"));
        assert_eq!(get(&c, "pivot_root").status, Status::Ok);
        assert!(get(&c, "pivot_root").found.starts_with("/ is overlay"));
        let (text, code) = verdict(&c);
        assert_eq!(code, 1);
        assert_eq!(
            text,
            "stepctr cannot work on this host: capabilities missing"
        );
    }

    fn rootless(owner: u32, controllers: &str) -> Host {
        let mut h = ubuntu();
        h.status = "Uid:\t1000\t1000\t1000\t1000\nCapEff:\t0000000000000000\nCapBnd:\t000001ffffffffff\nSeccomp:\t0\nSeccomp_filters:\t0\n".into();
        h.apparmor_restrict_userns = Some("0\n".into());
        h.self_cgroup =
            "0::/user.slice/user-1000.slice/user@1000.service/app.slice/stepctr.scope\n".into();
        h.own_cgroup = Some(OwnCgroup {
            dir: "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/stepctr.scope".into(),
            owner,
            controllers: controllers.into(),
            subtree_control: "\n".into(),
        });
        h
    }

    #[test]
    fn rootless_user_with_delegation() {
        let c = checks(&rootless(1000, "cpu memory pids\n"));
        let del = get(&c, "cgroup_delegation");
        assert_eq!(del.status, Status::Ok, "{}", line(&c, "cgroup_delegation"));
        assert!(del.found.starts_with("uid 1000: /sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/stepctr.scope is delegated to us (controllers: cpu memory pids; cgroup.subtree_control: none)"), "{}", del.found);
        assert_eq!(get(&c, "userns").status, Status::Ok);
        assert_eq!(get(&c, "userns_unprivileged").status, Status::Ok);
        let root = get(&c, "root");
        assert_eq!(root.status, Status::Limited);
        assert!(root.found.contains("rootless mode"));
        assert_eq!(get(&c, "capabilities").status, Status::Ok);
        assert_eq!(verdict(&c).1, 0);

        // Older systemd: memory and pids only.
        let c = checks(&rootless(1000, "memory pids"));
        let del = get(&c, "cgroup_delegation");
        assert_eq!(del.status, Status::Limited);
        assert!(
            del.advice.starts_with("--cpus cannot be used rootless"),
            "{}",
            del.advice
        );

        // Not delegated (a login session's scope belongs to root).
        let c = checks(&rootless(0, "memory pids"));
        let del = get(&c, "cgroup_delegation");
        assert_eq!(del.status, Status::Missing);
        assert!(del
            .advice
            .contains("systemd-run --user --scope -p Delegate=yes"));
        assert_eq!(
            verdict(&c).1,
            0,
            "no delegation: rootless runs without limits"
        );
    }

    #[test]
    fn rootless_user_without_user_namespaces_cannot_work() {
        let mut h = rootless(1000, "memory pids");
        h.apparmor_restrict_userns = None;
        h.max_user_namespaces = Some("0\n".into());
        h.userns_probe = Some(Err(
            "unshare(CLONE_NEWUSER): ENOSPC (No space left on device)".into(),
        ));
        let c = checks(&h);
        assert_eq!(get(&c, "userns").status, Status::Missing);
        assert!(get(&c, "userns").advice.contains("max_user_namespaces"));
        assert_eq!(get(&c, "userns_unprivileged").status, Status::Missing);
        assert_eq!(get(&c, "root").status, Status::Missing);
        assert_eq!(
            verdict(&c),
            (
                "stepctr cannot work on this host: root missing".to_string(),
                1
            )
        );
    }

    #[test]
    fn initramfs_root_and_no_overlay() {
        let mut h = ubuntu();
        h.mountinfo = "1 1 0:2 / / rw - rootfs rootfs rw\n20 1 0:20 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n".into();
        h.filesystems = "nodev\tproc\n".into();
        h.overlay_module = false;
        let c = checks(&h);
        assert_eq!(get(&c, "pivot_root").status, Status::Missing);
        assert_eq!(get(&c, "overlayfs").status, Status::Missing);
        assert_eq!(get(&c, "overlayfs_userns").status, Status::Missing);
        assert_eq!(
            verdict(&c).0,
            "stepctr cannot work on this host: overlayfs, pivot_root missing"
        );
    }

    #[test]
    fn a_cgroup2_mount_on_top_of_the_v1_tmpfs_hides_it() {
        // What tests/cgroup_v2_vm.rs does on a hybrid host: `mount -t cgroup2` over /sys/fs/cgroup.
        let mi = format!(
            "{HYBRID_MOUNTINFO}90 31 0:40 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n"
        );
        let layout = cgroup_layout(&mi);
        assert_eq!(layout.mode, CgroupMode::V2);
        assert!(layout.v1.is_empty());
        assert_eq!(layout.v2.unwrap().id, 90);
        // No mounts at all: none.
        assert_eq!(cgroup_layout("").mode, CgroupMode::None);
    }

    #[test]
    fn mountinfo_escapes_and_fields() {
        let m = parse_mountinfo("40 31 0:37 / /mnt/a\\040b ro,relatime shared:3 master:1 - tmpfs my\\040src rw,size=4k\n");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].point, "/mnt/a b");
        assert_eq!(m[0].source, "my src");
        assert!(m[0].read_only);
        assert_eq!(m[0].fstype, "tmpfs");
        assert_eq!(m[0].super_options, vec!["rw", "size=4k"]);
        assert_eq!(kernel_version("6.18.44-fc-v857"), Some((6, 18)));
        assert_eq!(kernel_version("4.4.0-19041-Microsoft"), Some((4, 4)));
        assert_eq!(effective_uid("Uid:\t1000\t0\t0\t0\n"), Some(0));
    }

    #[test]
    fn json_is_an_array_of_check_status_found_advice() {
        let c = checks(&ubuntu());
        let v: serde_json::Value = serde_json::from_str(&render_json(&c)).unwrap();
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), c.len());
        for o in arr {
            let keys: Vec<&String> = o.as_object().unwrap().keys().collect();
            assert_eq!(keys.len(), 4, "{o}");
            for k in ["check", "status", "found", "advice"] {
                assert!(o[k].is_string(), "{k} in {o}");
            }
            assert!(["ok", "limited", "missing"].contains(&o["status"].as_str().unwrap()));
        }
    }
}
