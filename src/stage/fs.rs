//! Stage 5, fs: give the container its own root filesystem.
//!
//! overlayfs stacks the image's layers read-only (lowerdir, top layer first) under a fresh,
//! empty writable layer (upperdir). Every write in the container lands in upperdir; the image
//! itself never changes, and deleting upperdir throws the container's changes away.
//!
//! The mounts are made *inside the container's mount namespace* (stepctr steps into it with
//! setns and back out again; a forked helper does it when stepctr has threads), so the host
//! never sees them: `ls rootfs/` on the host shows an empty directory,
//! `nsenter --mount=ns/mnt ls rootfs/` shows the image.
//!
//! Volumes (`-v HOST:CTR[:ro]`) are bind mounts made in the same visit, after the overlay and
//! /dev. The target is resolved *inside* the rootfs with openat2(RESOLVE_IN_ROOT), so no symlink
//! in the image can redirect the mount to the host, and the mount is made through
//! `/proc/self/fd/N` of that O_PATH fd (as runc and crun do): the kernel mounts on exactly the
//! inode that was checked. `start`'s pivot_root carries these mounts into the container.

use crate::kernel::{Errno, Kernel};
use crate::state::{Container, Resource, Stage};
use crate::volume::Volume;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Character devices every container gets in /dev: (name, major, minor).
pub const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// What the fs stage mounts, worked out from the state.
pub struct Plan {
    pub ns_mnt: PathBuf,
    /// Layer directories, bottom first.
    pub layers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub rootfs: PathBuf,
    /// Whose ids the files get (see `crate::userns`).
    pub ids: Ids,
}

/// How the container's ids relate to the host's, as far as its filesystem is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ids {
    /// No user namespace: ids inside are the host's.
    Host,
    /// Rootless: a helper enters the user namespace (its file in `ns_dir`) and mounts there.
    Rootless { ns_dir: PathBuf },
    /// Root's `--userns`: id N inside is `base`+N outside. stepctr mounts from the host's user
    /// namespace as usual, and the layers are attached *idmapped* below `lower`: the same
    /// files, their owners shifted by `base` (nothing copied, nothing chowned).
    Mapped {
        ns_dir: PathBuf,
        base: u32,
        lower: PathBuf,
    },
}

impl Ids {
    /// From the container's state.
    pub fn of(c: &Container, ns_dir: &Path) -> Ids {
        match &c.state.userns {
            None => Ids::Host,
            Some(u) if u.rootless => Ids::Rootless {
                ns_dir: ns_dir.to_path_buf(),
            },
            Some(u) => Ids::Mapped {
                ns_dir: ns_dir.to_path_buf(),
                base: u.root_outside().unwrap_or(0),
                lower: c.path("lower"),
            },
        }
    }

    /// Where the idmapped copy of layer `i` is attached (root's `--userns` only).
    fn mapped_layer(&self, i: usize) -> Option<PathBuf> {
        match self {
            Ids::Mapped { lower, .. } => Some(lower.join(i.to_string())),
            _ => None,
        }
    }
}

impl Plan {
    /// The directories overlayfs stacks, bottom first: the layers themselves, or with root's
    /// `--userns` their idmapped mounts.
    pub fn lowers(&self) -> Vec<PathBuf> {
        (0..self.layers.len())
            .map(|i| {
                self.ids
                    .mapped_layer(i)
                    .unwrap_or_else(|| self.layers[i].clone())
            })
            .collect()
    }

    /// overlayfs options: lowerdir lists the *top* layer first.
    pub fn overlay_options(&self) -> String {
        let lower: Vec<String> = self
            .lowers()
            .iter()
            .rev()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        format!(
            "lowerdir={},upperdir={},workdir={}{}",
            lower.join(":"),
            self.upper.display(),
            self.work.display(),
            // In a user namespace overlayfs may not use trusted.* xattrs: it keeps its
            // whiteout and opaque markers in user.overlay.* (Linux 5.11).
            if matches!(self.ids, Ids::Rootless { .. }) {
                ",userxattr"
            } else {
                ""
            }
        )
    }
}

/// `volumes`: the user's `-v`; `dns`: `--dns` servers for /etc/resolv.conf.
pub fn run(
    k: &dyn Kernel,
    c: &mut Container,
    volumes: &[Volume],
    dns: &[std::net::Ipv4Addr],
) -> Result<()> {
    super::header(
        k,
        Stage::Fs,
        "the container's root filesystem: image layers + a writable layer",
    );
    c.require_before(Stage::Fs)?;
    let Some(ns_dir) = c.state.ns_dir.clone() else {
        bail!(
            "stage `fs` needs stage `ns` first: run `stepctr ns {}`",
            c.name
        );
    };
    let plan = Plan {
        ns_mnt: ns_dir.join("mnt"),
        layers: c.state.layers.clone(),
        upper: c.path("upper"),
        work: c.path("work"),
        rootfs: c.path("rootfs"),
        ids: Ids::of(c, &ns_dir),
    };
    crate::userns::check_keeper(c)?;
    if plan.layers.is_empty() {
        bail!(
            "container {} has no layers: run `stepctr rm {}` and load it again",
            c.name,
            c.name
        );
    }
    let mut plan = plan;
    plan.layers.push(init_layer(k, &plan.layers[0])?);
    // The user's volumes, then /etc/hosts, /etc/hostname and /etc/resolv.conf (see
    // `net::files`), bind-mounted the same way.
    let system = crate::net::files::volumes(c);
    let all: Vec<Volume> = volumes
        .iter()
        .cloned()
        .chain(system.iter().cloned())
        .collect();
    // Journalled together: one write of state.json for the three directories and the mounts
    // that will be made on them (`mount_rootfs_with` finds them journalled already).
    let mapped: Vec<PathBuf> = (0..plan.layers.len())
        .filter_map(|i| plan.ids.mapped_layer(i))
        .collect();
    let lower_dir = mapped
        .first()
        .and_then(|p| p.parent())
        .map(Path::to_path_buf);
    c.journal_all(
        [&plan.upper, &plan.work, &plan.rootfs]
            .into_iter()
            .chain(lower_dir.iter())
            .chain(mapped.iter())
            .map(|d| Resource::Dir { path: d.clone() })
            .chain(
                ns_mounts(&plan, &all)
                    .into_iter()
                    .map(|p| Resource::NsMount { path: p }),
            ),
    )?;
    for (dir, why) in [
        (
            &plan.upper,
            "the writable layer: everything the container writes lands here",
        ),
        (
            &plan.work,
            "overlayfs's scratch space (same filesystem as upperdir)",
        ),
        (&plan.rootfs, "the mount point of the container's root"),
    ] {
        k.mkdirat(dir, 0o755, why)?;
    }
    if let Ids::Mapped { base, .. } = plan.ids {
        k.fchownat(
            libc::AT_FDCWD,
            &plan.upper,
            base,
            base,
            0,
            "the writable layer's root is the container's / : it belongs to root inside, uid BASE outside",
        )?;
    }
    if let Some(dir) = &lower_dir {
        k.mkdirat(dir, 0o755, "mount points for the idmapped layers")?;
        for m in &mapped {
            k.mkdirat(m, 0o755, "where one layer appears idmapped")?;
        }
    }
    let mut host_is_dir = prepare_hosts(k, volumes)?;
    crate::net::files::generate(k, c, dns)?;
    host_is_dir.extend(system.iter().map(|_| false));
    c.state.volumes = volumes.to_vec();
    mount_rootfs_with(k, c, &plan, &all, &host_is_dir)?;
    c.state.rootfs = Some(plan.rootfs.clone());
    c.finish(Stage::Fs)?;
    k.note(&format!(
        "writes in the container land in the writable layer {} (ephemeral: `stepctr rm {}` deletes it)",
        plan.upper.display(),
        c.name
    ));
    for v in volumes {
        k.note(&format!(
            "volume: {} is {} in the container{}; its data stays on the host after rm",
            v.host.display(),
            v.container.display(),
            if v.readonly { ", read-only" } else { "" }
        ));
    }
    k.note(&format!(
        "look: nsenter --mount={} ls {}   (the host's own view of it is empty)",
        plan.ns_mnt.display(),
        plan.rootfs.display()
    ));
    k.note(&format!("next: `stepctr start {}`", c.name));
    Ok(())
}

/// Every volume's host path, made if missing (a directory, as `docker run -v` does). These
/// belong to the host: they are not journalled, so `rm` keeps them. Returns, per volume,
/// whether the host path is a directory (else a file is bind-mounted on a file).
fn prepare_hosts(k: &dyn Kernel, volumes: &[Volume]) -> Result<Vec<bool>> {
    let mut dirs = Vec::new();
    for v in volumes {
        match std::fs::metadata(&v.host) {
            Ok(m) => dirs.push(m.is_dir()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut missing: Vec<&Path> = v
                    .host
                    .ancestors()
                    .take_while(|p| std::fs::symlink_metadata(p).is_err())
                    .collect();
                missing.reverse();
                for p in missing {
                    k.mkdirat(
                        p,
                        0o755,
                        "the volume's host directory is missing: create it (the host's, rm keeps it)",
                    )
                    .with_context(|| format!("create volume directory {}", v.host.display()))?;
                }
                dirs.push(true);
            }
            Err(e) => bail!("volume {}: cannot use {}: {e}", v.spec(), v.host.display()),
        }
    }
    Ok(dirs)
}

/// The init layer (docker has one too): a tiny read-only layer on top of the image's with the
/// files stepctr bind-mounts over (/etc/hosts, /etc/hostname, /etc/resolv.conf), empty. With
/// their mount points in a lower layer, nothing is created in the container's writable layer
/// for them: it holds what the container itself changes, and only that. Made once, beside the
/// image's layers, and shared.
fn init_layer(k: &dyn Kernel, a_layer: &Path) -> Result<PathBuf> {
    let dir = a_layer
        .parent()
        .context("the layers' directory")?
        .join(".init");
    if dir.join("etc").is_dir() {
        return Ok(dir);
    }
    let tmp = dir.with_file_name(format!(".init.tmp-{}", std::process::id()));
    let made = (|| -> Result<()> {
        k.mkdirat(
            &tmp,
            0o755,
            "the init layer: mount points stepctr binds files onto",
        )?;
        k.mkdirat(&tmp.join("etc"), 0o755, "")?;
        for (_, inside) in crate::net::files::FILES {
            let name = Path::new(inside).file_name().context("a file name")?;
            let fd = k.openat(
                &tmp.join("etc").join(name),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                0o644,
                "an empty file: the mount point, so the writable layer need not have it",
            )?;
            k.close(fd)?;
        }
        k.renameat(&tmp, &dir, "publish the init layer at once")?;
        Ok(())
    })();
    if made.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        // Another container may have published it meanwhile.
        if dir.join("etc").is_dir() {
            return Ok(dir);
        }
    }
    made?;
    Ok(dir)
}

/// Inside the container's mount namespace: overlay, then /dev.
pub fn mount_rootfs(k: &dyn Kernel, c: &mut Container, plan: &Plan) -> Result<()> {
    mount_rootfs_with(k, c, plan, &[], &[])
}

/// Inside the container's mount namespace: overlay, then /dev, then the volumes
/// (`host_is_dir[i]` says whether volume i's host path is a directory).
pub fn mount_rootfs_with(
    k: &dyn Kernel,
    c: &mut Container,
    plan: &Plan,
    volumes: &[Volume],
    host_is_dir: &[bool],
) -> Result<()> {
    c.journal_all(
        ns_mounts(plan, volumes)
            .into_iter()
            .map(|p| Resource::NsMount { path: p }),
    )?;
    let mount_all = |k: &dyn Kernel| -> Result<()> {
        if let Ids::Mapped { ns_dir, .. } = &plan.ids {
            attach_idmapped(k, plan, ns_dir)?;
        }
        let opts = plan.overlay_options();
        k.mount(
            Some("overlay"),
            &plan.rootfs,
            Some("overlay"),
            0,
            Some(&opts),
            "stack the layers: read-only image below, writable layer on top",
        )?;
        populate_dev(k, &plan.rootfs.join("dev"), &plan.ids)?;
        if !volumes.is_empty() {
            let root = k.openat(
                &plan.rootfs,
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                0,
                "the container's root: volume paths are resolved inside it, never on the host",
            )?;
            for (v, is_dir) in volumes.iter().zip(host_is_dir) {
                mount_volume(k, root, v, *is_dir)
                    .with_context(|| format!("volume {}", v.spec()))?;
            }
            k.close(root)?;
        }
        Ok(())
    };
    // setns into a mount namespace needs a process of one thread (threads share their root
    // and working directory); stepctr has one unless a pull left a worker thread behind.
    // Rootless, always a helper: it enters the user namespace first, and no one comes back.
    let rootless = match &plan.ids {
        Ids::Rootless { ns_dir } => Some(ns_dir),
        _ => None,
    };
    if k.single_threaded() && rootless.is_none() {
        return inside_mount_ns(k, &plan.ns_mnt, || mount_all(k));
    }
    let helper = k.spawn(
        "a helper to mount inside the container's mount namespace",
        &mut || {
            k.prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as u64,
                "die if stepctr dies",
            )?;
            if let Some(dir) = rootless {
                crate::userns::enter(k, dir)?;
            }
            let fd = k.openat(
                &plan.ns_mnt,
                libc::O_RDONLY | libc::O_CLOEXEC,
                0,
                "open the container's mount namespace",
            )?;
            k.setns(
                fd,
                libc::CLONE_NEWNS,
                "enter it: mounts from now on are the container's alone",
            )?;
            k.close(fd)?;
            mount_all(k)
        },
    )?;
    let status = k.wait4(helper.pid, 0, "wait for the mounts")?;
    if let Some(err) = k.child_error(&helper) {
        bail!("mount the root filesystem: {err}");
    }
    if status.exit_code() != 0 {
        bail!("mount the root filesystem: helper ended with {status:?}");
    }
    Ok(())
}

/// Root's `--userns`: each layer's directory cloned as a detached mount (open_tree), given the
/// container's id map (mount_setattr MOUNT_ATTR_IDMAP with its user namespace: the kernel
/// then shows uid 0 of the files as root inside), and attached where the overlay takes it from
/// (move_mount). Done inside the container's mount namespace, so the host never sees them.
fn attach_idmapped(k: &dyn Kernel, plan: &Plan, ns_dir: &Path) -> Result<()> {
    let userns = k.openat(
        &ns_dir.join(crate::userns::USER_FILE),
        libc::O_RDONLY | libc::O_CLOEXEC,
        0,
        "the container's user namespace: its id map is the one the layers get",
    )?;
    let result = (|| -> Result<()> {
        for (i, layer) in plan.layers.iter().enumerate() {
            let target = plan.ids.mapped_layer(i).context("an idmapped layer")?;
            let tree = k.open_tree(
                layer,
                "a detached copy of the layer's directory, as a mount of its own",
            )?;
            let attached = k
                .mount_setattr_idmap(
                    tree,
                    userns,
                    "idmapped: the files' owners, seen through this mount, go through the container's id map (uid 0 on disk is root inside)",
                )
                .and_then(|()| {
                    k.move_mount(
                        tree,
                        &target,
                        "attach it where the overlay takes its layers from",
                    )
                });
            k.close(tree)?;
            attached?;
        }
        Ok(())
    })();
    k.close(userns)?;
    result
}

/// Run `body` with stepctr itself inside the container's mount namespace, then come back: a
/// process may change its mount namespace with setns() as often as it likes (a fork for the
/// job, as `nsenter` makes, costs more than all the mounts together). setns() also moves the
/// root and working directory to the namespace's root, so the working directory is restored
/// afterwards.
pub(crate) fn inside_mount_ns(
    k: &dyn Kernel,
    ns_mnt: &Path,
    body: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let cwd = crate::kernel::host::Cwd::save();
    let home = k.openat(
        Path::new("/proc/self/ns/mnt"),
        libc::O_RDONLY | libc::O_CLOEXEC,
        0,
        "our own (the host's) mount namespace: the way back",
    )?;
    let result = (|| -> Result<()> {
        let fd = k.openat(
            ns_mnt,
            libc::O_RDONLY | libc::O_CLOEXEC,
            0,
            "open the container's mount namespace",
        )?;
        let entered = k.setns(
            fd,
            libc::CLONE_NEWNS,
            "step into it: mounts from now on are the container's alone",
        );
        k.close(fd)?;
        entered?;
        body()
    })();
    let back = k.setns(
        home,
        libc::CLONE_NEWNS,
        "step back out into the host's mount namespace, where the mounts just made are invisible",
    );
    let closed = k.close(home);
    if let Some(cwd) = cwd {
        cwd.restore();
    }
    back.context("return to the host's mount namespace")?;
    closed?;
    result
}

/// The mounts made inside the container's mount namespace: the overlay, /dev, the volumes.
fn ns_mounts(plan: &Plan, volumes: &[Volume]) -> Vec<PathBuf> {
    let mut mounts: Vec<PathBuf> = (0..plan.layers.len())
        .filter_map(|i| plan.ids.mapped_layer(i))
        .collect();
    mounts.extend([plan.rootfs.clone(), plan.rootfs.join("dev")]);
    mounts.extend(volumes.iter().map(|v| plan.rootfs.join(v.relative())));
    mounts
}

/// Resolve openat2 calls inside the container's root: `..` and absolute symlinks stop at it.
const IN_ROOT: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

/// Bind-mount one volume: make its mount point inside the rootfs (fd-relative, every
/// component resolved inside the root), then mount on the very inode opened, via its fd.
fn mount_volume(k: &dyn Kernel, root: i32, v: &Volume, is_dir: bool) -> Result<()> {
    let target = mount_point(k, root, v, is_dir)?;
    let via = PathBuf::from(format!("/proc/self/fd/{target}"));
    let host = v.host.to_string_lossy();
    let bound = k.mount(
        Some(&host),
        &via,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
        "the volume: the host's directory appears here; what is written to it stays on the host",
    );
    k.close(target)?;
    bound?;
    if v.readonly {
        // The old fd names the directory *under* the new mount: open the path again to reach
        // the bind mount itself, then make it read-only.
        let top = k.openat2(
            root,
            &v.relative(),
            libc::O_PATH | libc::O_CLOEXEC,
            0,
            IN_ROOT,
            "open the volume again: now the bind mount's root",
        )?;
        let ro = make_readonly(k, top);
        k.close(top)?;
        ro?;
    }
    Ok(())
}

/// `:ro`: make the volume read-only, *and every mount below it*.
///
/// MS_BIND|MS_REC copied the host directory with the mounts under it (a tmpfs on a
/// subdirectory, each controller under `/sys/fs/cgroup`), one mount each. The classic
/// `mount(NULL, dir, NULL, MS_BIND|MS_REMOUNT|MS_RDONLY|MS_REC, NULL)` changes the top mount
/// only: the kernel ignores MS_REC on a remount, so `/data` refuses writes while `/data/sub`
/// silently accepts them. mount_setattr(2) (Linux 5.12) with AT_RECURSIVE sets
/// MOUNT_ATTR_RDONLY on the whole tree in one call, as runc and crun do for `rro`.
///
/// Why not open_tree(OPEN_TREE_CLONE|AT_RECURSIVE) + mount_setattr + move_mount, which
/// attaches the tree already read-only? Its one advantage is that no moment exists when the
/// volume is attached and writable. Here that moment has no witness: the bind lives in the
/// container's mount namespace, where no process of the container runs yet (PID 1 comes with
/// `start`). So the volume stays one mount(MS_BIND) call whether it is `:ro` or not, and `:ro`
/// reads as what it is: one more call that changes the mount's attributes.
///
/// Without mount_setattr (ENOSYS, before Linux 5.12) each mount of the tree is remounted
/// read-only by itself, then the kernel's list of mounts is checked: a `:ro` volume with a
/// writable mount inside is an error, never a silent success.
fn make_readonly(k: &dyn Kernel, top: i32) -> Result<()> {
    match k.mount_setattr(
        top,
        true,
        libc::MOUNT_ATTR_RDONLY,
        0,
        "read-only (:ro), with every mount below it (AT_RECURSIVE): writes fail with EROFS",
    ) {
        Err(e) if e.errno == Errno::ENOSYS => readonly_one_by_one(k, top),
        other => Ok(other?),
    }
}

/// The fallback for kernels without mount_setattr: `MS_BIND|MS_REMOUNT|MS_RDONLY` on the
/// volume's top mount and on each mount below it, keeping each one's other flags (a bind
/// remount sets the flags to exactly those given: a missing MS_NOSUID would drop nosuid).
/// Every mount below is reached from `top` with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS),
/// so a symlink put into the host's directory cannot send the remount elsewhere.
fn readonly_one_by_one(k: &dyn Kernel, top: i32) -> Result<()> {
    let base = std::fs::read_link(format!("/proc/self/fd/{top}"))
        .context("where is the volume mounted (readlink /proc/self/fd)")?;
    k.note("no mount_setattr (Linux < 5.12): remount the volume and each mount inside it read-only, one by one");
    let mounts = mounts_at_or_below(&read_mountinfo()?, &base);
    for (point, options) in &mounts {
        let rel = point.strip_prefix(&base).unwrap_or(Path::new(""));
        let fd = if rel.as_os_str().is_empty() {
            top
        } else {
            k.openat2(
                top,
                rel,
                libc::O_PATH | libc::O_CLOEXEC,
                0,
                libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
                "a mount inside the volume: reached from the volume, never by following a symlink",
            )?
        };
        let ro = k.mount(
            None,
            &PathBuf::from(format!("/proc/self/fd/{fd}")),
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | kept_flags(options),
            None,
            "read-only (:ro): a bind remount changes this one mount only",
        );
        if fd != top {
            k.close(fd)?;
        }
        ro?;
    }
    let writable: Vec<String> = mounts_at_or_below(&read_mountinfo()?, &base)
        .into_iter()
        .filter(|(_, options)| !options.split(',').any(|o| o == "ro"))
        .map(|(p, _)| p.display().to_string())
        .collect();
    if !writable.is_empty() {
        bail!(
            "{} stayed writable after remounting it read-only: refusing a :ro volume with a writable part \
             (this kernel lacks mount_setattr; drop :ro or unmount what is below the host directory)",
            writable.join(", ")
        );
    }
    Ok(())
}

fn read_mountinfo() -> Result<String> {
    std::fs::read_to_string("/proc/self/mountinfo").context("read /proc/self/mountinfo")
}

/// The mounts visible at `base` or below it, as (mount point, per-mount options), parents
/// first. A mount point listed twice (mounted over) counts once: the last, visible one.
fn mounts_at_or_below(mountinfo: &str, base: &Path) -> Vec<(PathBuf, String)> {
    // Fields: id parent major:minor root mount-point options [optional...] - fstype ...
    let mut found: Vec<(PathBuf, String)> = Vec::new();
    for line in mountinfo.lines() {
        let mut fields = line.split(' ');
        let (Some(point), Some(options)) = (fields.nth(4), fields.next()) else {
            continue;
        };
        let point = unescape_mountinfo(point);
        if !point.starts_with(base) {
            continue;
        }
        found.retain(|(p, _)| *p != point);
        found.push((point, options.to_string()));
    }
    found.sort_by_key(|(p, _)| p.components().count());
    found
}

/// Mountinfo writes space, tab, newline and backslash in a path as `\040`-style octal.
fn unescape_mountinfo(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) if b[i] == b'\\' => {
                out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// The MS_* flags a bind remount must repeat to keep a mount's per-mount options (from
/// mountinfo's sixth field, `rw,nosuid,nodev,relatime`): everything but read-only/read-write.
pub(crate) fn kept_flags(options: &str) -> u64 {
    let mut flags = 0;
    let mut atime = libc::MS_STRICTATIME;
    for o in options.split(',') {
        match o {
            "nosuid" => flags |= libc::MS_NOSUID,
            "nodev" => flags |= libc::MS_NODEV,
            "noexec" => flags |= libc::MS_NOEXEC,
            "nodiratime" => flags |= libc::MS_NODIRATIME,
            "relatime" => atime = libc::MS_RELATIME,
            "noatime" => atime = libc::MS_NOATIME,
            _ => {}
        }
    }
    flags | atime
}

/// Open (creating what is missing) the volume's mount point, one component at a time, each
/// resolved with RESOLVE_IN_ROOT: a symlink in the image (`/data -> /etc`) leads to the rootfs's
/// /etc, never the host's. Missing directories go into the writable layer.
fn mount_point(k: &dyn Kernel, root: i32, v: &Volume, is_dir: bool) -> Result<i32> {
    let rel = v.relative();
    let parts: Vec<&std::ffi::OsStr> = rel.iter().collect();
    let mut parent: Option<i32> = None;
    let mut prefix = PathBuf::new();
    let result = (|| -> Result<i32> {
        for (i, name) in parts.iter().enumerate() {
            prefix.push(name);
            let last = i + 1 == parts.len();
            let dir = !last || is_dir;
            let flags = libc::O_PATH | libc::O_CLOEXEC | if dir { libc::O_DIRECTORY } else { 0 };
            let fd = match k.openat2(
                root,
                &prefix,
                flags,
                0,
                IN_ROOT,
                "find the mount point inside the container's root",
            ) {
                Err(e) if e.errno == Errno::ENOENT => {
                    let at = parent.unwrap_or(root);
                    let dangling = |e: crate::kernel::SysError| {
                        if e.errno == Errno::EEXIST {
                            anyhow::anyhow!(
                                "/{} is a symlink to something the image lacks: not followed (pick another path)",
                                prefix.display()
                            )
                        } else {
                            e.into()
                        }
                    };
                    if dir {
                        k.mkdirat_in(
                            at,
                            Path::new(name),
                            0o755,
                            "the image lacks it: make the mount point (in the writable layer)",
                        )
                        .map_err(dangling)?;
                    } else {
                        let f = k
                            .openat_in(
                                at,
                                Path::new(name),
                                libc::O_WRONLY
                                    | libc::O_CREAT
                                    | libc::O_EXCL
                                    | libc::O_NOFOLLOW
                                    | libc::O_CLOEXEC,
                                0o644,
                                "the image lacks it: an empty file to mount the host's file on",
                            )
                            .map_err(dangling)?;
                        k.close(f)?;
                    }
                    k.openat2(root, &prefix, flags, 0, IN_ROOT, "open the new mount point")?
                }
                other => other?,
            };
            if let Some(p) = parent.replace(fd) {
                k.close(p)?;
            }
        }
        parent.take().context("empty container path")
    })();
    if let Some(p) = parent {
        let _ = k.close(p);
    }
    let fd = result?;
    // A symlink to / would put the volume over the container's whole root: refuse.
    let path_of = |fd: i32| std::fs::read_link(format!("/proc/self/fd/{fd}")).ok();
    if path_of(fd).is_some_and(|p| Some(&p) == path_of(root).as_ref()) {
        let _ = k.close(fd);
        bail!(
            "{} resolves to the container's root itself (a symlink in the image?): pick another path",
            v.container.display()
        );
    }
    Ok(fd)
}

/// A fresh tmpfs on /dev with only the standard device nodes: none of the host's devices.
/// Then the usual mounts under it: /dev/pts (a devpts of the container's own, so its ptys are
/// numbered from 0 and the host's are out of view), /dev/shm (POSIX shared memory, a tmpfs),
/// and the mount point of /dev/mqueue (PID 1 mounts it: an mqueue filesystem belongs to the IPC
/// namespace of whoever mounts it, and we are still in the host's).
///
/// `dev` is `<rootfs>/dev`. It is resolved inside the rootfs with openat2(RESOLVE_IN_ROOT |
/// RESOLVE_NO_SYMLINKS) and every mount goes through `/proc/self/fd/N`: an image whose /dev
/// is a symlink (to the host's /tmp, say) is refused, as runc refuses it, instead of mounting
/// where the symlink points.
fn populate_dev(k: &dyn Kernel, dev: &Path, ids: &Ids) -> Result<()> {
    let rootfs = dev.parent().context("/dev has no parent")?;
    let root = k.openat(
        rootfs,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
        "the container's root: /dev is resolved inside it, never on the host",
    )?;
    let result = populate_dev_in(k, root, ids);
    let closed = k.close(root);
    result?;
    closed?;
    Ok(())
}

/// Resolve inside the rootfs, follow no symlink at all.
const NO_SYMLINKS: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_SYMLINKS;

/// Open the directory `rel` of the rootfs (an O_PATH fd, for mounting on it through
/// `/proc/self/fd/N`), making it if the image lacks it. A symlink anywhere on the way, or a
/// file where the directory should be, is refused with an error that names it.
pub(crate) fn mount_dir(k: &dyn Kernel, root: i32, rel: &Path, mode: u32) -> Result<i32> {
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    let why = "the mount point, inside the container's root (a symlink is refused)";
    let refused = |e: crate::kernel::SysError| -> anyhow::Error {
        if e.errno == Errno::ELOOP || e.errno == Errno::ENOTDIR {
            anyhow::anyhow!(
                "the image's /{} is a symlink or not a directory: refused (a runtime mounts there, \
                 and must not follow the image anywhere else; runc refuses it too)",
                rel.display()
            )
        } else {
            e.into()
        }
    };
    match k.openat2(root, rel, flags, 0, NO_SYMLINKS, why) {
        Err(e) if e.errno == Errno::ENOENT => {
            let parent = rel.parent().unwrap_or(Path::new(""));
            let name = rel.file_name().context("an empty mount point")?;
            let at = if parent.as_os_str().is_empty() {
                None
            } else {
                Some(
                    k.openat2(root, parent, flags, 0, NO_SYMLINKS, why)
                        .map_err(refused)?,
                )
            };
            let made = k.mkdirat_in(
                at.unwrap_or(root),
                Path::new(name),
                mode,
                "the image lacks it: make the mount point (in the writable layer)",
            );
            if let Some(fd) = at {
                k.close(fd)?;
            }
            made.map_err(refused)?;
            k.openat2(root, rel, flags, 0, NO_SYMLINKS, "open the new mount point")
                .map_err(refused)
        }
        other => other.map_err(refused),
    }
}

/// Rootless, mknod is refused (a device node made in a user namespace would be a way around
/// the host's device permissions): each node is an empty file with the host's node
/// bind-mounted on it instead, as runc and podman do rootless.
fn bind_host_device(k: &dyn Kernel, dev: i32, name: &str) -> Result<()> {
    let fd = k.openat_in(
        dev,
        Path::new(name),
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        0o666,
        "rootless: no mknod in a user namespace, so an empty file to bind the host's node on",
    )?;
    let host = format!("/dev/{name}");
    let bound = k.mount(
        Some(&host),
        &PathBuf::from(format!("/proc/self/fd/{fd}")),
        None,
        libc::MS_BIND,
        None,
        "the host's device node, seen here (its permissions still apply)",
    );
    k.close(fd)?;
    bound?;
    Ok(())
}

fn populate_dev_in(k: &dyn Kernel, root: i32, ids: &Ids) -> Result<()> {
    let via = |fd: i32| PathBuf::from(format!("/proc/self/fd/{fd}"));
    let rootless = matches!(ids, Ids::Rootless { .. });
    // Root's --userns: the tmpfs roots belong to root inside (uid BASE), and devpts's group is
    // the container's tty group (gid 5 inside).
    let owner = match ids {
        Ids::Mapped { base, .. } => format!(",uid={base},gid={base}"),
        _ => String::new(),
    };
    let under = mount_dir(k, root, Path::new("dev"), 0o755)?;
    let mounted = k.mount(
        Some("tmpfs"),
        &via(under),
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_STRICTATIME,
        Some(&format!("mode=755,size=65536k{owner}")),
        "a private /dev: the host's devices stay out of reach",
    );
    k.close(under)?;
    mounted?;
    // The fd opened before names the directory under the tmpfs: open /dev again.
    let dev = k.openat2(
        root,
        Path::new("dev"),
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
        NO_SYMLINKS,
        "the new /dev (our tmpfs): what follows is made in it",
    )?;
    let result = (|| -> Result<()> {
        let umask = k.umask(0, "create device nodes with exactly the modes we ask for")?;
        for (name, major, minor) in DEVICES {
            if rootless {
                bind_host_device(k, dev, name)?;
                continue;
            }
            k.mknodat_in(
                dev,
                Path::new(name),
                libc::S_IFCHR | 0o666,
                major,
                minor,
                "a standard device node",
            )?;
        }
        for (name, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("ptmx", "pts/ptmx"),
        ] {
            let why = if name == "ptmx" {
                "/dev/ptmx opens the container's own devpts (new pseudo-terminals are made there)"
            } else {
                "the usual /dev symlinks"
            };
            k.symlinkat_in(Path::new(target), dev, Path::new(name), why)?;
        }
        for (name, mode) in [("pts", 0o755), ("shm", 0o1777), ("mqueue", 0o1777)] {
            k.mkdirat_in(dev, Path::new(name), mode, "a mount point in /dev")?;
        }
        k.umask(umask, "back to the umask we had")?;
        for (name, source, fstype, flags, data, why) in [
            (
                "pts",
                "devpts",
                "devpts",
                libc::MS_NOSUID | libc::MS_NOEXEC,
                match ids {
                    // Group 5 (tty) does not exist in a user namespace that maps one gid.
                    Ids::Rootless { .. } => "newinstance,ptmxmode=0666,mode=620".to_string(),
                    // Group 5 inside is BASE+5 outside.
                    Ids::Mapped { base, .. } => format!(
                        "newinstance,ptmxmode=0666,mode=620,gid={}",
                        u64::from(*base) + 5
                    ),
                    Ids::Host => "newinstance,ptmxmode=0666,mode=620,gid=5".to_string(),
                },
                "the container's own pseudo-terminals (newinstance: numbered from 0, the host's are not in it)",
            ),
            (
                "shm",
                "shm",
                "tmpfs",
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                format!("mode=1777,size=65536k{owner}"),
                "POSIX shared memory (shm_open): a tmpfs of the container's, 64 MiB like docker's",
            ),
        ] {
            let at = k.openat2(
                dev,
                Path::new(name),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                0,
                libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
                "the mount point just made",
            )?;
            let mounted = k.mount(Some(source), &via(at), Some(fstype), flags, Some(&data), why);
            k.close(at)?;
            mounted?;
        }
        Ok(())
    })();
    let closed = k.close(dev);
    result?;
    closed?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::Sys;

    #[test]
    fn finds_the_mounts_of_a_volume_parents_first() {
        let info = "\
22 1 0:21 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw
40 30 0:40 / /r/rootfs/data/sub rw,nosuid,nodev,noexec,relatime - tmpfs t rw
39 30 8:1 /srv/x /r/rootfs/data rw,relatime - ext4 /dev/sda1 rw
41 40 0:41 / /r/rootfs/data/sub rw,relatime - tmpfs t rw
42 39 0:42 / /r/rootfs/data/with\\040space ro,relatime - tmpfs t rw
43 30 0:43 / /r/rootfs/database rw - tmpfs t rw
";
        let found = mounts_at_or_below(info, Path::new("/r/rootfs/data"));
        let points: Vec<&Path> = found.iter().map(|(p, _)| p.as_path()).collect();
        assert_eq!(
            points,
            [
                Path::new("/r/rootfs/data"),
                Path::new("/r/rootfs/data/sub"),
                Path::new("/r/rootfs/data/with space"),
            ]
        );
        // The mount on top at /data/sub is the one that counts.
        assert_eq!(found[1].1, "rw,relatime");
    }

    #[test]
    fn a_bind_remount_keeps_the_other_flags() {
        assert_eq!(
            kept_flags("rw,nosuid,nodev,noexec,relatime"),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RELATIME
        );
        assert_eq!(kept_flags("rw"), libc::MS_STRICTATIME);
        assert_eq!(
            kept_flags("ro,noatime,nodiratime"),
            libc::MS_NOATIME | libc::MS_NODIRATIME
        );
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(
            unescape_mountinfo(r"/a\040b\011c\134d"),
            Path::new("/a b\tc\\d")
        );
        assert_eq!(unescape_mountinfo(r"/plain\09"), Path::new(r"/plain\09"));
    }

    #[test]
    fn readonly_volumes_use_mount_setattr_recursively() {
        let k = crate::kernel::record::Record::new();
        make_readonly(&k, 7).unwrap();
        assert_eq!(
            k.calls().into_iter().map(|c| c.call).collect::<Vec<_>>(),
            [Sys::MountSetattr {
                fd: 7,
                recursive: true,
                attr_set: libc::MOUNT_ATTR_RDONLY,
                attr_clr: 0,
                userns_fd: 0,
            }]
        );
    }
}
