//! Stage 5, fs: give the container its own root filesystem.
//!
//! overlayfs stacks the image's layers read-only (lowerdir, top layer first) under a fresh,
//! empty writable layer (upperdir). Every write in the container lands in upperdir; the image
//! itself never changes, and deleting upperdir throws the container's changes away.
//!
//! The mounts are made *inside the container's mount namespace* (a helper joins it with
//! setns), so the host never sees them: `ls rootfs/` on the host shows an empty directory,
//! `nsenter --mount=ns/mnt ls rootfs/` shows the image.
//!
//! Volumes (`-v HOST:CTR[:ro]`) are bind mounts made by the same helper, after the overlay and
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
}

impl Plan {
    /// overlayfs options: lowerdir lists the *top* layer first.
    pub fn overlay_options(&self) -> String {
        let lower: Vec<String> = self
            .layers
            .iter()
            .rev()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            self.upper.display(),
            self.work.display()
        )
    }
}

pub fn run(k: &dyn Kernel, c: &mut Container, volumes: &[Volume]) -> Result<()> {
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
    };
    if plan.layers.is_empty() {
        bail!(
            "container {} has no layers: run `stepctr rm {}` and load it again",
            c.name,
            c.name
        );
    }
    // Journalled together: one write of state.json for the three directories.
    c.journal_all(
        [&plan.upper, &plan.work, &plan.rootfs].map(|d| Resource::Dir { path: d.clone() }),
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
    let host_is_dir = prepare_hosts(k, volumes)?;
    c.state.volumes = volumes.to_vec();
    mount_rootfs_with(k, c, &plan, volumes, &host_is_dir)?;
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

/// In a helper inside the container's mount namespace: overlay, then /dev.
pub fn mount_rootfs(k: &dyn Kernel, c: &mut Container, plan: &Plan) -> Result<()> {
    mount_rootfs_with(k, c, plan, &[], &[])
}

/// In a helper inside the container's mount namespace: overlay, then /dev, then the volumes
/// (`host_is_dir[i]` says whether volume i's host path is a directory).
pub fn mount_rootfs_with(
    k: &dyn Kernel,
    c: &mut Container,
    plan: &Plan,
    volumes: &[Volume],
    host_is_dir: &[bool],
) -> Result<()> {
    let mut mounts = vec![plan.rootfs.clone(), plan.rootfs.join("dev")];
    mounts.extend(volumes.iter().map(|v| plan.rootfs.join(v.relative())));
    c.journal_all(mounts.into_iter().map(|p| Resource::NsMount { path: p }))?;
    let helper = k.spawn(
        "a helper to mount inside the container's mount namespace",
        &mut || {
            k.prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as u64,
                "die if stepctr dies",
            )?;
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
            let opts = plan.overlay_options();
            k.mount(
                Some("overlay"),
                &plan.rootfs,
                Some("overlay"),
                0,
                Some(&opts),
                "stack the layers: read-only image below, writable layer on top",
            )?;
            populate_dev(k, &plan.rootfs.join("dev"))?;
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
        let ro = k.mount(
            None,
            &PathBuf::from(format!("/proc/self/fd/{top}")),
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC,
            None,
            "read-only (:ro): writes to the volume fail with EROFS",
        );
        k.close(top)?;
        ro?;
    }
    Ok(())
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
fn populate_dev(k: &dyn Kernel, dev: &Path) -> Result<()> {
    if !dev.is_dir() {
        k.mkdirat(
            dev,
            0o755,
            "the image has no /dev: make one (in the writable layer)",
        )?;
    }
    k.mount(
        Some("tmpfs"),
        dev,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
        "a private /dev: the host's devices stay out of reach",
    )?;
    k.umask(0, "create device nodes with exactly the modes we ask for")?;
    for (name, major, minor) in DEVICES {
        k.mknodat(
            &dev.join(name),
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
    ] {
        k.symlinkat(
            Path::new(target),
            &dev.join(name),
            "the usual /dev symlinks",
        )?;
    }
    Ok(())
}
