//! `stepctr demo breakout`: the classic chroot escape, then the same attempt after pivot_root.
//!
//! Everything happens in a child of stepctr that first unshares a mount namespace of its own
//! and makes every mount in it private: the demo's mounts (a copy-on-write view of the
//! flattened image) die with that child, and nothing propagates back to the host. The child
//! checks that it really is in a new mount namespace and refuses to go on otherwise.
//!
//! 1. A grandchild chroot()s into the image and breaks out ([`super::escape`]): it ends at
//!    the host's /, lists it and reads /etc/hostname. It only reads.
//! 2. Another grandchild does what the `fs` and `start` stages do instead of chroot: a new
//!    mount namespace, pivot_root into the image, the old root unmounted. The same escape ends
//!    where it began, at the image's own /: there is nothing above it in this namespace.
//!
//! Whether a root is the host's is decided by device and inode of "/", compared with the
//! host's, not by names.

use super::Scratch;
use crate::kernel::Kernel;
use crate::state::Paths;
use anyhow::{bail, Context, Result};
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub fn command(
    k: &dyn Kernel,
    setup: &dyn Kernel,
    paths: &Paths,
    image: Option<&str>,
) -> Result<i32> {
    super::need_root("demo breakout")?;
    let scratch = Scratch::new(setup, paths, "breakout", image)?;
    let result = demo(k, &scratch);
    let removed = scratch.remove(setup, paths);
    let code = result?;
    removed?;
    Ok(code)
}

/// Device and inode: what makes a directory the same directory, whatever it is called.
fn identity(path: &Path) -> Result<(u64, u64)> {
    let m = std::fs::metadata(path).with_context(|| format!("stat {}", path.display()))?;
    Ok((m.dev(), m.ino()))
}

fn mnt_ns(pid: &str) -> Result<u64> {
    Ok(std::fs::metadata(format!("/proc/{pid}/ns/mnt"))
        .context("stat /proc/self/ns/mnt")?
        .ino())
}

fn demo(k: &dyn Kernel, scratch: &Scratch) -> Result<i32> {
    let host_root = identity(Path::new("/"))?;
    let host_ns = mnt_ns("self")?;
    std::io::stdout().flush()?;
    let child = k.spawn(
        "the demo, in a throwaway mount namespace of its own",
        &mut || {
            k.unshare(
                libc::CLONE_NEWNS,
                "a throwaway mount namespace: what the demo mounts dies with this process",
            )?;
            crate::stage::ns::make_private(k)?;
            if mnt_ns("self")? == host_ns {
                bail!("refusing to break out: not in a mount namespace of the demo's own");
            }
            let mut out = std::io::stdout().lock();
            writeln!(out, "attempt 1: plain chroot into the image")?;
            drop(out);
            let root = super::overlay_root(k, &scratch.flat, &scratch.dir.join("chroot"))?;
            attempt(k, host_root, &mut || {
                k.chroot(&root, "my / is now the image")?;
                k.chdir(Path::new("/"), "stand in the new root")?;
                Ok(())
            })?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "\nattempt 2: pivot_root into the image in a new mount namespace (what stages fs and start do)"
            )?;
            drop(out);
            let root = super::overlay_root(k, &scratch.flat, &scratch.dir.join("pivot"))?;
            attempt(k, host_root, &mut || {
                k.unshare(libc::CLONE_NEWNS, "a mount namespace for the container")?;
                k.chdir(&root, "stand in the image's root (an overlay mount: pivot_root needs a mount point)")?;
                k.pivot_root(
                    Path::new("."),
                    Path::new("."),
                    "the image becomes /, the old root is stacked on top of it",
                )?;
                k.umount2(
                    Path::new("."),
                    libc::MNT_DETACH,
                    "unmount the old root: nothing of the host is left in this namespace",
                )?;
                k.chdir(Path::new("/"), "stand in the new root")?;
                Ok(())
            })?;
            Ok(())
        },
    )?;
    let failed = k.child_error(&child);
    let status = k.wait4(
        child.pid,
        0,
        "wait for the demo; its mount namespace dies with it",
    )?;
    if let Some(err) = failed {
        bail!("demo breakout: {err}");
    }
    if status != crate::kernel::WaitStatus::Exited(0) {
        bail!("demo breakout: the demo's process ended with {status:?}");
    }
    Ok(0)
}

/// In a grandchild: `enter` a root, show it, break out, show where that led.
fn attempt(
    k: &dyn Kernel,
    host_root: (u64, u64),
    enter: &mut dyn FnMut() -> Result<()>,
) -> Result<()> {
    std::io::stdout().flush()?;
    let child = k.spawn("one attempt, in a process of its own", &mut || {
        enter()?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "  before: / holds {}", listing(k)?)?;
        drop(out);
        let escaped = super::escape(k);
        let mut out = std::io::stdout().lock();
        match escaped {
            Err(e) => writeln!(out, "  the escape failed: {e}")?,
            Ok(()) if identity(Path::new("/"))? == host_root => {
                writeln!(out, "  after:  / holds {}", listing(k)?)?;
                let name = super::isolation::read(k, Path::new("/etc/hostname"), "the host's own file")
                    .map(|s| s.trim().to_string());
                writeln!(
                    out,
                    "  ESCAPED: / is the host's root (same device and inode); /etc/hostname: {}",
                    name.unwrap_or_else(|e| e)
                )?;
            }
            Ok(()) => {
                writeln!(out, "  after:  / holds {}", listing(k)?)?;
                writeln!(
                    out,
                    "  STAYED INSIDE: `..` of / is / itself; there is no host root above it in this namespace"
                )?;
            }
        }
        out.flush()?;
        Ok(())
    })?;
    let failed = k.child_error(&child);
    k.wait4(child.pid, 0, "wait for the attempt")?;
    if let Some(err) = failed {
        bail!("{err}");
    }
    Ok(())
}

/// The names in "/", sorted, through the seam (openat + getdents64).
fn listing(k: &dyn Kernel) -> Result<String> {
    let fd = k.openat(
        Path::new("/"),
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
        "what is in / now?",
    )?;
    let entries = k.read_dir_fd(fd, "list /");
    let _ = k.close(fd);
    let mut names: Vec<String> = entries?
        .into_iter()
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    Ok(names.join(" "))
}
