//! `stepctr all`: the six stages in order, each with its header and timing, exactly as the
//! stage commands run them one by one.

use crate::cli::TimingsFormat;
use crate::kernel::Kernel;
use crate::remove;
use crate::stage::start::exec_clock;
use crate::stage::{self, cgroup::Limits};
use crate::state::{ContainerName, Paths};
use anyhow::Result;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

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
    /// Root's `--userns`: a user namespace with these maps (see `crate::userns`).
    pub userns: Option<crate::userns::UserNs>,
    /// `--network`, `--subnet`.
    pub network: stage::ns::Network,
    /// `--dns`: nameservers for /etc/resolv.conf.
    pub dns: &'a [std::net::Ipv4Addr],
    /// `--timings`: report where the time went once the container has ended.
    pub timings: Option<Timings>,
    /// How to start PID 1: detached, extra env, workdir, hostname (`run`'s flags).
    pub start: stage::start::Options,
}

/// `--timings[=json]`: print the per-stage breakdown to stderr after the container ends (even
/// with -q: it was asked for; stdout stays the container's).
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub format: TimingsFormat,
    /// When `main` began: the `stepctr` row runs from here to the first stage. (Before main(),
    /// the kernel's execve and the dynamic loader: /proc/self/stat's starttime counts in 10 ms
    /// clock ticks, too coarse to measure that honestly, so it is left out.)
    pub started: Instant,
}

/// The rows of the report, in order: (name, what it covers).
const ROWS: [(&str, &str); 9] = [
    (
        "stepctr",
        "main() → first stage: arguments, narration, container name",
    ),
    ("pull", "the image into the store (or found there)"),
    ("load", "the container's directory and the image's layers"),
    ("cgroup", "cgroup directories and limits"),
    ("ns", "namespaces made and pinned as files"),
    ("fs", "overlay root filesystem and volumes"),
    (
        "start",
        "shim and PID 1 forked, PID 1 set up, until its execve succeeded",
    ),
    (
        "run",
        "PID 1's life: from its execve until stepctr saw it end",
    ),
    ("rm", "removal (--rm): processes, mounts, cgroups, files"),
];

/// Measured durations, one per row of [`ROWS`] (None: did not happen), and the total.
struct Breakdown {
    took: [Option<Duration>; 9],
    total: Duration,
    detached: bool,
}

fn row(name: &str) -> usize {
    ROWS.iter().position(|(n, _)| *n == name).unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Breakdown {
    fn table(&self) -> String {
        let total = ms(self.total);
        let mut out = String::from(
            "# where the time went (wall clock, measured with CLOCK_MONOTONIC):\n  stage          ms   share\n",
        );
        for ((name, what), took) in ROWS.iter().zip(self.took) {
            match took {
                Some(d) => {
                    let share = if total > 0.0 {
                        ms(d) / total * 100.0
                    } else {
                        0.0
                    };
                    out.push_str(&format!(
                        "  {name:<8}{:>9.2}  {share:>5.1}%  {what}\n",
                        ms(d)
                    ));
                }
                None if *name == "run" && self.detached => out.push_str(&format!(
                    "  {name:<8}{:>9}  {:>6}  PID 1 still runs (detached)\n",
                    "-", "-"
                )),
                None => {}
            }
        }
        out.push_str(&format!("  {:<8}{total:>9.2}  100.0%\n", "total"));
        out
    }

    fn json(&self) -> String {
        let mut fields: Vec<String> = ROWS
            .iter()
            .zip(self.took)
            .map(|((name, _), took)| match took {
                Some(d) => format!("\"{name}_ms\":{:.3}", ms(d)),
                None => format!("\"{name}_ms\":null"),
            })
            .collect();
        fields.push(format!("\"total_ms\":{:.3}", ms(self.total)));
        format!("{{{}}}\n", fields.join(","))
    }
}

/// Run all six stages; returns the exit code of the container's command.
pub fn all(k: &dyn Kernel, paths: &Paths, o: &AllOptions<'_>) -> Result<i32> {
    let mut took: [Option<Duration>; 9] = [None; 9];
    let total = Instant::now();
    if let Some(t) = &o.timings {
        took[row("stepctr")] = Some(total.duration_since(t.started));
    }
    // Each lap ends where the next begins, so the rows add up to the total.
    let mut lap_start = total;
    let mut lap = |name: &str, until: Instant| {
        took[row(name)] = Some(until.saturating_duration_since(lap_start));
        lap_start = until;
    };
    let info = stage::pull::run_if_missing(k, paths, o.image, &o.pull)?;
    lap("pull", Instant::now());

    let result = (|| -> Result<i32> {
        let mut c = stage::load::run(k, paths, o.name, &info.reference)?;
        lap("load", Instant::now());
        stage::cgroup::run(k, &mut c, o.cgroup_root, o.limits)?;
        lap("cgroup", Instant::now());
        stage::ns::run(k, &mut c, o.userns.clone(), o.network)?;
        lap("ns", Instant::now());
        stage::fs::run(k, &mut c, o.volumes, o.dns)?;
        lap("fs", Instant::now());
        let mut start = o.start.clone();
        start.remove_when_done = o.rm;
        if o.timings.is_some() {
            exec_clock::watch();
        }
        let code = stage::start::run_with(k, &mut c, o.cmd, &start);
        let execed = exec_clock::execed_at();
        let code = code?;
        if !start.detach {
            crate::stats::record_exit(k, &mut c, code)?;
        }
        let now = Instant::now();
        match execed {
            Some(at) => {
                lap("start", at);
                if !start.detach {
                    lap("run", now);
                }
            }
            // Not told when PID 1 exec'd (no shared page): start and run as one.
            None => lap("start", now),
        }
        Ok(code)
    })();

    if o.timings.is_none() {
        let start_run = match (took[row("start")], took[row("run")]) {
            (Some(s), r) => Some(s + r.unwrap_or_default()),
            _ => None,
        };
        let summary: Vec<String> = ["pull", "load", "cgroup", "ns", "fs"]
            .iter()
            .filter_map(|s| took[row(s)].map(|d| (*s, d)))
            .chain(start_run.map(|d| ("start+run", d)))
            .map(|(s, d)| format!("{s} {:.1} ms", ms(d)))
            .collect();
        k.note(&format!(
            "timings: {} (total {:.1} ms)",
            summary.join(", "),
            ms(total.elapsed())
        ));
    }
    // Detached, the shim removes the container when PID 1 ends (unless starting failed).
    if o.rm && (!o.start.detach || result.is_err()) && paths.container(o.name).exists() {
        let t = Instant::now();
        let removed = remove::remove(k, paths, o.name);
        took[row("rm")] = Some(t.elapsed());
        if let (Ok(_), Err(e)) = (&result, removed) {
            return Err(e);
        }
    }
    if let (Some(t), Ok(_)) = (&o.timings, &result) {
        let report = Breakdown {
            took,
            total: t.started.elapsed(),
            detached: o.start.detach,
        };
        let text = match t.format {
            TimingsFormat::Table => report.table(),
            TimingsFormat::Json => report.json(),
        };
        // A report asked for: stderr, whatever the narration level (stdout is the container's).
        let _ = std::io::stderr().write_all(text.as_bytes());
    }
    result
}
