//! `stepctr all`: the six stages in order, each with its header and timing, exactly as the
//! stage commands run them one by one.

use crate::kernel::Kernel;
use crate::remove;
use crate::stage::{self, cgroup::Limits};
use crate::state::{ContainerName, Paths};
use anyhow::Result;
use std::path::Path;
use std::time::Instant;

pub struct AllOptions<'a> {
    pub image: &'a str,
    /// How to pull (platform, credentials, progress).
    pub pull: crate::image::registry::PullOptions,
    pub name: &'a ContainerName,
    pub limits: Limits,
    pub cmd: &'a [String],
    /// Volumes to bind-mount (`-v HOST:CTR[:ro]`).
    pub volumes: &'a [crate::volume::Volume],
    pub cgroup_root: &'a Path,
    /// Remove the container when it has stopped.
    pub rm: bool,
    /// How to start PID 1: detached, extra env, workdir, hostname (`run`'s flags).
    pub start: stage::start::Options,
}

/// Run all six stages; returns the exit code of the container's command.
pub fn all(k: &dyn Kernel, paths: &Paths, o: &AllOptions<'_>) -> Result<i32> {
    let total = Instant::now();
    let mut timings = Vec::new();
    let t = Instant::now();
    let info = stage::pull::run_if_missing(k, paths, o.image, &o.pull)?;
    timings.push(("pull", t.elapsed()));

    let result = (|| -> Result<i32> {
        let t = Instant::now();
        let mut c = stage::load::run(k, paths, o.name, &info.reference)?;
        timings.push(("load", t.elapsed()));
        let t = Instant::now();
        stage::cgroup::run(k, &mut c, o.cgroup_root, o.limits)?;
        timings.push(("cgroup", t.elapsed()));
        let t = Instant::now();
        stage::ns::run(k, &mut c)?;
        timings.push(("ns", t.elapsed()));
        let t = Instant::now();
        stage::fs::run(k, &mut c, o.volumes)?;
        timings.push(("fs", t.elapsed()));
        let t = Instant::now();
        let mut start = o.start.clone();
        start.remove_when_done = o.rm && start.detach;
        let code = stage::start::run_with(k, &mut c, o.cmd, &start)?;
        if !start.detach {
            crate::stats::record_exit(k, &mut c, code)?;
        }
        timings.push(("start+run", t.elapsed()));
        Ok(code)
    })();

    let summary: Vec<String> = timings
        .iter()
        .map(|(s, d)| format!("{s} {:.1} ms", d.as_secs_f64() * 1000.0))
        .collect();
    k.note(&format!(
        "timings: {} (total {:.1} ms)",
        summary.join(", "),
        total.elapsed().as_secs_f64() * 1000.0
    ));
    // Detached, the shim removes the container when PID 1 ends (unless starting failed).
    if o.rm && (!o.start.detach || result.is_err()) && paths.container(o.name).exists() {
        let removed = remove::remove(k, paths, o.name);
        if let (Ok(_), Err(e)) = (&result, removed) {
            return Err(e);
        }
    }
    result
}
