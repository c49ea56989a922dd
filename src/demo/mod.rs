//! `stepctr demo`: scripted comparisons for a class, each made of real calls.
//!
//! - [`isolation`]: the same probes under plain chroot and inside a container, side by side.
//! - [`breakout`]: the classic chroot escape, then the same attempt after pivot_root.
//! - [`startup`]: container start time per stage, median of N runs (and a VM boot beside it).

pub mod breakout;
pub mod isolation;
pub mod startup;
pub mod vmboot;

use crate::cli::DemoCommand;
use crate::kernel::linux::Linux;
use crate::kernel::narrate::{Level, Narrate};
use crate::kernel::Kernel;
use crate::state::{ContainerName, Paths};
use anyhow::{Context, Result};
use std::path::PathBuf;

/// Run one demo; the exit code. `verbose` (-v): the containers and trees the demo makes for
/// itself are narrated too, not only the demo's own calls.
pub fn command(k: &dyn Kernel, paths: &Paths, d: &DemoCommand, verbose: bool) -> Result<i32> {
    let quiet = Narrate::new(Linux, Level::Quiet, false, 2);
    let setup: &dyn Kernel = if verbose { k } else { &quiet };
    match d {
        DemoCommand::Isolation { mode, json, image } => {
            isolation::command(k, setup, paths, *mode, *json, image.as_deref())
        }
        DemoCommand::Breakout { image } => breakout::command(k, setup, paths, image.as_deref()),
        DemoCommand::Startup { runs, json, vm } => startup::command(k, paths, *runs, *json, *vm),
    }
}

/// The demos make namespaces, mounts and chroots: root only.
pub(crate) fn need_root(what: &str) -> Result<()> {
    if !crate::kernel::host::is_root() {
        anyhow::bail!("`stepctr {what}` needs root (it mounts, chroots and makes namespaces): run it with sudo");
    }
    Ok(())
}

/// A scratch container whose only stage is `load --flatten`: the image as one plain tree
/// (shared, never written: the demos mount a copy-on-write overlay over it), and a state
/// directory for the demo's own files. [`Scratch::remove`] removes both (the flattened tree
/// stays in the store, as after `load --flatten`).
pub(crate) struct Scratch {
    pub name: ContainerName,
    /// The flattened image (`$STEPCTR_ROOT/flat/<digest>`).
    pub flat: PathBuf,
    /// The container's state directory, outside any root the demo makes.
    pub dir: PathBuf,
}

impl Scratch {
    /// `pull` (when the image is missing) and `load --flatten` into a fresh container named
    /// `demo-<what>-<pid>`.
    pub fn new(
        setup: &dyn Kernel,
        paths: &Paths,
        what: &str,
        image: Option<&str>,
    ) -> Result<Scratch> {
        let image = image.unwrap_or(crate::image::DEFAULT_IMAGE);
        crate::stage::pull::run_if_missing(
            setup,
            paths,
            image,
            &crate::image::registry::PullOptions::default(),
        )?;
        let name = ContainerName::parse(&format!("demo-{what}-{}", std::process::id()))?;
        let c = crate::stage::load::run_with(setup, paths, &name, image, true)
            .with_context(|| format!("flatten {image} for the demo"))?;
        let flat = c
            .state
            .layers
            .first()
            .cloned()
            .context("the image has no layers")?;
        Ok(Scratch {
            dir: paths.container(&name),
            name,
            flat,
        })
    }

    pub fn remove(&self, setup: &dyn Kernel, paths: &Paths) -> Result<()> {
        crate::remove::remove_with(setup, paths, &self.name, true)
    }
}

/// A copy-on-write view of `lower` at `dir/rootfs`: an overlay whose upper layer is
/// `dir/upper` (`dir` is made when missing), so a probe may write (a directory for the breakout) without touching the shared
/// flattened tree. The mount is in the caller's mount namespace.
pub(crate) fn overlay_root(
    k: &dyn Kernel,
    lower: &std::path::Path,
    dir: &std::path::Path,
) -> Result<PathBuf> {
    let (upper, work, root) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
    if !dir.is_dir() {
        k.mkdirat(dir, 0o700, "a directory for a copy-on-write root")?;
    }
    for d in [&upper, &work, &root] {
        k.mkdirat(d, 0o755, "a directory for the demo's copy-on-write root")?;
    }
    k.mount(
        Some("overlay"),
        &root,
        Some("overlay"),
        0,
        Some(&format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        )),
        "the flattened image, copy-on-write: what the probe writes lands in upper/",
    )?;
    Ok(root)
}

/// How many times the breakout climbs `..`: more than any real root is deep.
const CLIMB: usize = 64;

/// The classic chroot escape: make a directory, chroot into it (the working directory stays
/// outside the new root, and chroot does not move it), climb `..` past where the old root
/// was (the kernel stops `..` only at the caller's root, which is now below), and chroot where
/// the climb ends. Under plain chroot that is the host's /; after pivot_root in a mount
/// namespace it is the container's own root again. Err: the errno name of the call that failed.
pub(crate) fn escape(k: &dyn Kernel) -> Result<(), String> {
    let errno = |e: crate::kernel::SysError| crate::kernel::errno_name(e.errno);
    let dir = std::path::Path::new("/.stepctr-breakout");
    match k.mkdirat(dir, 0o700, "the breakout: a directory to chroot into") {
        Ok(()) => {}
        Err(e) if e.errno == crate::kernel::Errno::EEXIST => {}
        Err(e) => return Err(errno(e)),
    }
    k.chroot(
        dir,
        "chroot into it; my working directory (/) is now outside my root",
    )
    .map_err(errno)?;
    k.bulk_begin(&format!("climb: chdir(\"..\") {CLIMB} times"));
    for _ in 0..CLIMB {
        let _ = k.chdir(
            std::path::Path::new(".."),
            "up: `..` stops only at my root, and I am outside it",
        );
    }
    k.bulk_end();
    k.chroot(
        std::path::Path::new("."),
        "make where the climb ended my root",
    )
    .map_err(errno)
}
