//! `demo startup [-n N] [--json] [--vm]`: how long a container takes to start, stage by stage,
//! over N runs; and, with --vm, a VM boot measured beside it.
//!
//! Each run is exactly `stepctr -q all --rm --name NAME --timings=json -- true`: this binary
//! (std::env::current_exe), run as a child process, its one JSON line of timings read from
//! stderr. A child process, not a call of [`crate::pipeline::all`] in this one: each run gets a
//! fresh process, as a user's command would, and its `stepctr` row (main() to the first stage)
//! is real. Starting those children is bookkeeping, not narrated: their own kernel calls are
//! the containers', and with -q they print nothing (their narration would drown the table).

use super::vmboot;
use crate::kernel::Kernel;
use crate::state::Paths;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};

/// The rows: the stages of `all --timings` (their `NAME_ms` fields), then the total.
pub const STAGES: [&str; 10] = [
    "stepctr", "pull", "load", "cgroup", "ns", "fs", "start", "run", "rm", "total",
];

/// The rows that make up "start": main() until the container's command was exec'd.
const START: [&str; 7] = ["stepctr", "pull", "load", "cgroup", "ns", "fs", "start"];

/// How many runs `-n` may ask for.
pub const MAX_RUNS: u32 = 1000;

/// Median, min and max of some samples (ms).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// The median (the mean of the two middle values for an even count), min and max.
pub fn stats(samples: &[f64]) -> Stats {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        return Stats {
            median: 0.0,
            min: 0.0,
            max: 0.0,
        };
    }
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    Stats {
        median,
        min: s[0],
        max: s[n - 1],
    }
}

/// `stepctr ARGS...` as a child, with this process's store and run directory.
fn stepctr(exe: &Path, paths: &Paths, args: &[&str]) -> Command {
    let mut c = Command::new(exe);
    c.args(args)
        .env("STEPCTR_ROOT", &paths.root)
        .env("STEPCTR_RUN", &paths.run)
        .stdin(Stdio::null());
    c
}

/// The last line of `text` that is a JSON object, parsed.
fn timings_line(text: &str) -> Option<serde_json::Value> {
    text.lines()
        .rev()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.is_object())
}

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

/// One container, start to removal: each row's ms, in [`STAGES`] order.
fn one_run(exe: &Path, paths: &Paths, name: &str) -> Result<[f64; 10]> {
    let out = stepctr(
        exe,
        paths,
        &[
            "-q",
            "all",
            "--rm",
            "--name",
            name,
            "--timings=json",
            "--",
            "true",
        ],
    )
    .stdout(Stdio::null())
    .output()
    .with_context(|| format!("run {}", exe.display()))?;
    let err = String::from_utf8_lossy(&out.stderr);
    let parsed = timings_line(&err);
    if !out.status.success() || parsed.is_none() {
        // Whatever it left, remove it (quietly: it may be gone already).
        let _ = stepctr(exe, paths, &["-q", "rm", "-f", name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        bail!(
            "demo startup: container {name} failed ({}): {}",
            out.status,
            last_line(&err)
        );
    }
    let v = parsed.unwrap_or_default();
    let mut row = [0.0; 10];
    for (i, stage) in STAGES.iter().enumerate() {
        row[i] = v[format!("{stage}_ms")].as_f64().with_context(|| {
            format!("demo startup: container {name}: no {stage}_ms in its timings: {v}")
        })?;
    }
    Ok(row)
}

/// `demo startup`: the exit code.
pub fn command(k: &dyn Kernel, paths: &Paths, runs: u32, json: bool, vm: bool) -> Result<i32> {
    if !(1..=MAX_RUNS).contains(&runs) {
        bail!("demo startup: -n must be from 1 to {MAX_RUNS} (got {runs})");
    }
    if vm {
        if let Some(why) = vmboot::missing() {
            bail!("demo startup --vm: cannot boot a VM: {why}");
        }
    }
    let exe = std::env::current_exe().context("demo startup: where is this stepctr binary?")?;

    k.note("demo startup: the default image into the store first (as `all` does), so no run pays for building it");
    let pull = stepctr(&exe, paths, &["-q", "pull"])
        .stdout(Stdio::null())
        .output()
        .with_context(|| format!("run {}", exe.display()))?;
    if !pull.status.success() {
        bail!(
            "demo startup: stepctr pull failed: {}",
            last_line(&String::from_utf8_lossy(&pull.stderr))
        );
    }

    k.note(&format!(
        "demo startup: {runs} container(s), one after the other, each `stepctr -q all --rm --name NAME --timings=json -- true` (quiet: their narration would drown the table)"
    ));
    let pid = std::process::id();
    let mut rows: Vec<[f64; 10]> = Vec::with_capacity(runs as usize);
    for i in 1..=runs {
        rows.push(one_run(&exe, paths, &format!("demo-startup-{pid}-{i}"))?);
    }
    let column = |i: usize| -> Vec<f64> { rows.iter().map(|r| r[i]).collect() };
    let table: Vec<(&str, Stats)> = STAGES
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, stats(&column(i))))
        .collect();
    let start_samples: Vec<f64> = rows.iter().map(|r| r[..START.len()].iter().sum()).collect();
    let start = stats(&start_samples);
    let total = table[STAGES.len() - 1].1;

    let boot = if vm {
        k.note("demo startup: now a VM, for contrast: qemu-system-x86_64 -accel tcg (software emulation: no KVM), 256 MiB, no network, a stock kernel and a busybox initramfs built in a temp dir; timed from spawning qemu to /init's line on the serial console");
        Some(vmboot::boot()?)
    } else {
        None
    };

    if json {
        // The stages in their order (a serde_json map would sort them by name).
        let stages: Vec<String> = table
            .iter()
            .map(|(name, s)| {
                format!(
                    "\"{name}\":{}",
                    serde_json::json!({"median_ms": r3(s.median), "min_ms": r3(s.min), "max_ms": r3(s.max)})
                )
            })
            .collect();
        let vm_json = match &boot {
            Some(b) => serde_json::json!({
                "accel": "tcg",
                "emulation": "software emulation",
                "kernel": b.kernel.display().to_string(),
                "boot_ms": r3(ms(b.boot)),
                "exit_ms": r3(ms(b.total)),
                "guest_uptime_s": b.guest_uptime_s,
                "container_start_median_ms": r3(start.median),
                "boot_over_start": r3(ms(b.boot) / start.median.max(0.001)),
                "boot_over_total": r3(ms(b.boot) / total.median.max(0.001)),
            }),
            None => serde_json::Value::Null,
        };
        println!(
            "{{\"runs\":{runs},\"stages\":{{{}}},\"vm\":{vm_json}}}",
            stages.join(",")
        );
        return Ok(0);
    }

    println!(
        "# container start, {runs} run(s) of `stepctr all --rm -- true`, per stage (ms, wall clock):"
    );
    println!("  {:<8} {:>9} {:>9} {:>9}", "stage", "median", "min", "max");
    for (name, s) in &table {
        println!(
            "  {name:<8} {:>9.2} {:>9.2} {:>9.2}",
            s.median, s.min, s.max
        );
    }
    println!(
        "# start (stepctr..start: main() until the container's command ran): median {:.2} ms; total includes its run and its removal",
        start.median
    );
    if let Some(b) = &boot {
        println!(
            "# a VM, for contrast: qemu-system-x86_64 -accel tcg (software emulation, no KVM), 256 MiB, no network, kernel {}",
            b.kernel.display()
        );
        println!(
            "  boot to the first user-space program  {:>10.1} ms",
            ms(b.boot)
        );
        println!(
            "  until qemu exited                     {:>10.1} ms",
            ms(b.total)
        );
        if let Some(u) = b.guest_uptime_s {
            println!(
                "# the guest kernel's own uptime at /init: {:.1} ms; the rest of the boot is qemu, the firmware and the kernel's decompression, before its clock starts",
                u * 1000.0
            );
        }
        println!(
            "# VM boot / container start median: {:.1} / {:.2} ms = {:.0}x",
            ms(b.boot),
            start.median,
            ms(b.boot) / start.median.max(0.001)
        );
        println!(
            "# VM boot / container total median (start, run and removal): {:.1} / {:.2} ms = {:.0}x",
            ms(b.boot),
            total.median,
            ms(b.boot) / total.median.max(0.001)
        );
    }
    Ok(0)
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Rounded to a microsecond, for the JSON.
fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        let s = stats(&[5.0, 1.0, 3.0]);
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 5.0));
        let s = stats(&[4.0, 1.0, 3.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
        assert_eq!(stats(&[7.0]).median, 7.0);
    }

    #[test]
    fn the_timings_line_is_found_among_other_lines() {
        let err = "some warning\n{\"stepctr_ms\":1.5,\"total_ms\":9}\n";
        let v = timings_line(err).unwrap();
        assert_eq!(v["stepctr_ms"].as_f64(), Some(1.5));
        assert!(timings_line("no json here\n").is_none());
    }
}
