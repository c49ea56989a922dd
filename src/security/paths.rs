//! Masked and read-only paths of /proc and /sys, as docker (runc) sets them.
//!
//! /proc and /sys are the kernel's own windows, and a few of them look at the whole machine,
//! not at the container: /proc/kcore is the host's memory, /proc/keys its keyrings,
//! /proc/timer_list and /proc/sched_debug its timers and tasks, /sys/firmware its firmware
//! tables; /proc/sysrq-trigger reboots it, /proc/sys tunes its kernel. Namespaces do not hide
//! them, so PID 1, once it has mounted /proc and /sys in its new root, covers them:
//!
//! - **masked**: a file gets /dev/null bind-mounted over it (reads give nothing, writes vanish),
//!   a directory an empty read-only tmpfs;
//! - **read-only**: the path is bind-mounted onto itself, then that bind mount is remounted
//!   read-only (MS_BIND|MS_REMOUNT|MS_RDONLY): writes fail with EROFS, reads still work
//!   (`sysctl -a` shows the values).
//!
//! Every path is resolved from an fd of the container's root with openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_SYMLINKS), and the mount is made on `/proc/self/fd/N` of the fd opened: the
//! kernel mounts on exactly the inode checked, whatever the image put on the way (as runc and
//! crun do). A path the kernel does not have (no /sys/firmware in a VM without EFI) is
//! skipped. `--security-opt systempaths=unconfined` (and `--privileged`) leave them all open.

use super::Profile;
use crate::kernel::{Errno, Kernel};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Covered with /dev/null (a file) or an empty read-only tmpfs (a directory): docker's list.
pub const MASKED: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Remounted read-only: docker's list.
pub const READ_ONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Every component inside the root, and no symlink at all on the way.
const RESOLVE: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_SYMLINKS;

/// The flags /proc is mounted with: a bind remount sets a mount's flags to exactly those
/// given, so they are repeated (else nosuid, nodev, noexec would be dropped, or refused).
const PROC_FLAGS: u64 = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// Mask and write-protect (unless the profile turns it off). PID 1 calls this after
/// pivot_root, with /proc and /sys mounted.
pub fn protect(k: &dyn Kernel, p: &Profile) -> Result<()> {
    if !p.system_paths {
        k.note(
            "systempaths=unconfined (or --privileged): /proc/kcore, /proc/sys, /sys/firmware... stay as the kernel shows them",
        );
        return Ok(());
    }
    let root = k.openat(
        Path::new("/"),
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
        "the container's root: the paths to cover are resolved inside it, no symlink followed",
    )?;
    let result = (|| -> Result<()> {
        for path in READ_ONLY {
            read_only(k, root, path).with_context(|| format!("make {path} read-only"))?;
        }
        for path in MASKED {
            mask(k, root, path).with_context(|| format!("mask {path}"))?;
        }
        Ok(())
    })();
    let closed = k.close(root);
    result?;
    closed?;
    Ok(())
}

/// Open `path` (absolute, inside the container) from the root fd; None if it does not exist.
fn open(k: &dyn Kernel, root: i32, path: &str, why: &str) -> Result<Option<i32>> {
    let rel = Path::new(path.trim_start_matches('/'));
    match k.openat2(root, rel, libc::O_PATH | libc::O_CLOEXEC, 0, RESOLVE, why) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.errno == Errno::ENOENT => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn via(fd: i32) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{fd}"))
}

/// Hide `path`: /dev/null over a file, an empty read-only tmpfs over a directory.
pub(crate) fn mask(k: &dyn Kernel, root: i32, path: &str) -> Result<()> {
    let Some(fd) = open(
        k,
        root,
        path,
        "a path to mask (skipped if this kernel has none)",
    )?
    else {
        return Ok(());
    };
    let result = (|| -> Result<()> {
        let mode = k.newfstatat(
            fd,
            Path::new(""),
            libc::AT_EMPTY_PATH,
            "a file or a directory?",
        )?;
        if mode & libc::S_IFMT == libc::S_IFDIR {
            k.mount(
                Some("tmpfs"),
                &via(fd),
                Some("tmpfs"),
                libc::MS_RDONLY,
                None,
                "masked: an empty read-only tmpfs hides the directory's contents",
            )?;
        } else {
            k.mount(
                Some("/dev/null"),
                &via(fd),
                None,
                libc::MS_BIND,
                None,
                "masked: /dev/null over the file (reads are empty, writes vanish)",
            )?;
        }
        Ok(())
    })();
    let closed = k.close(fd);
    result?;
    closed?;
    Ok(())
}

/// Bind `path` onto itself, then remount that bind mount read-only.
pub(crate) fn read_only(k: &dyn Kernel, root: i32, path: &str) -> Result<()> {
    let Some(fd) = open(
        k,
        root,
        path,
        "a path to make read-only (skipped if this kernel has none)",
    )?
    else {
        return Ok(());
    };
    let bound = k.mount(
        Some(&via(fd).to_string_lossy()),
        &via(fd),
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
        "bind it onto itself: a mount of its own, whose flags can change alone",
    );
    let closed = k.close(fd);
    bound?;
    closed?;
    // The old fd names the inode *under* the new bind mount: open the path again.
    let Some(top) = open(k, root, path, "open it again: now the bind mount's root")? else {
        anyhow::bail!("{path} vanished after its bind mount");
    };
    let ro = k.mount(
        None,
        &via(top),
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | PROC_FLAGS,
        None,
        "read-only: writes fail with EROFS, reads still work",
    );
    let closed = k.close(top);
    ro?;
    closed?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::record::Record;
    use crate::kernel::Sys;

    #[test]
    fn unconfined_touches_nothing() {
        let k = Record::new();
        let p = Profile {
            system_paths: false,
            ..Profile::default()
        };
        protect(&k, &p).unwrap();
        assert!(k.calls().is_empty());
    }

    #[test]
    fn every_path_is_resolved_in_the_root_without_symlinks() {
        let k = Record::new();
        protect(&k, &Profile::default()).unwrap();
        let calls: Vec<Sys> = k.calls().into_iter().map(|c| c.call).collect();
        let opened: Vec<String> = calls
            .iter()
            .filter_map(|c| match c {
                Sys::Openat2 { path, resolve, .. } => {
                    assert_eq!(*resolve, RESOLVE);
                    Some(path.display().to_string())
                }
                _ => None,
            })
            .collect();
        // Read-only paths are opened twice (before and after their bind mount).
        assert_eq!(opened.len(), 2 * READ_ONLY.len() + MASKED.len());
        assert!(opened.contains(&"proc/kcore".to_string()));
        let remounts = calls
            .iter()
            .filter(|c| {
                matches!(c, Sys::Mount { flags, .. }
                    if *flags & (libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_BIND)
                        == libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_BIND)
            })
            .count();
        assert_eq!(remounts, READ_ONLY.len());
        // Every mount goes through an fd, never a path the image could redirect.
        for c in &calls {
            if let Sys::Mount { target, .. } = c {
                assert!(target.starts_with("/proc/self/fd/"), "{target:?}");
            }
        }
    }
}
