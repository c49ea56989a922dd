//! Stage 5, fs: give the container its own root filesystem.
//!
//! overlayfs stacks the image's layers read-only (lowerdir, top layer first) under a fresh,
//! empty writable layer (upperdir). Every write in the container lands in upperdir; the image
//! itself never changes, and deleting upperdir throws the container's changes away.
//!
//! The mounts are made *inside the container's mount namespace* (a helper joins it with
//! setns), so the host never sees them: `ls rootfs/` on the host shows an empty directory,
//! `nsenter --mount=ns/mnt ls rootfs/` shows the image.

use crate::kernel::Kernel;
use crate::state::{Container, Resource, Stage};
use anyhow::{bail, Result};
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

pub fn run(k: &dyn Kernel, c: &mut Container) -> Result<()> {
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
        c.journal(Resource::Dir { path: dir.clone() })?;
        k.mkdirat(dir, 0o755, why)?;
    }
    mount_rootfs(k, c, &plan)?;
    c.state.rootfs = Some(plan.rootfs.clone());
    c.finish(Stage::Fs)?;
    k.note(&format!(
        "look: nsenter --mount={} ls {}   (the host's own view of it is empty)",
        plan.ns_mnt.display(),
        plan.rootfs.display()
    ));
    k.note(&format!("next: `stepctr start {}`", c.name));
    Ok(())
}

/// In a helper inside the container's mount namespace: overlay, then /dev.
pub fn mount_rootfs(k: &dyn Kernel, c: &mut Container, plan: &Plan) -> Result<()> {
    for p in [plan.rootfs.clone(), plan.rootfs.join("dev")] {
        c.journal(Resource::NsMount { path: p })?;
    }
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
