//! `stepctr stats NAME`: what the container uses, read back from its cgroups.
//!
//! The kernel keeps the accounts in the same directories that hold the limits:
//! - memory: v1 `memory.usage_in_bytes` / `memory.limit_in_bytes`, v2 `memory.current` / `memory.max`;
//! - CPU time: v1 `cpuacct.usage` (nanoseconds), v2 `cpu.stat` `usage_usec`;
//! - processes: `pids.current` / `pids.max` on both;
//! - OOM kills: v1 `memory.oom_control` `oom_kill N`, v2 `memory.events` `oom_kill N`.
//!
//! These are plain reads of cgroupfs: nothing changes, so nothing is narrated.

use crate::kernel::Kernel;
use crate::state::{CgroupState, Container};
use anyhow::{bail, Result};
use serde::Serialize;
use std::fs;
use std::path::{Path, PathBuf};

/// One reading of a container's cgroups. `None`: that controller is not there.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Usage {
    pub memory_bytes: Option<u64>,
    /// `None` with `memory_bytes` set: no limit.
    pub memory_limit: Option<u64>,
    pub cpu_usec: Option<u64>,
    pub pids: Option<u64>,
    /// `None` with `pids` set: no limit.
    pub pids_limit: Option<u64>,
    pub oom_kills: Option<u64>,
}

fn read(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

fn number(path: &Path) -> Option<u64> {
    read(path)?.trim().parse().ok()
}

/// A limit file: `max` (v2) or a huge v1 value (PAGE_COUNTER_MAX in bytes) means none.
fn limit(path: &Path) -> Option<u64> {
    number(path).filter(|v| *v < 1 << 62)
}

/// `key N` from a flat keyed file (cpu.stat, memory.events, memory.oom_control).
fn keyed(path: &Path, key: &str) -> Option<u64> {
    read(path)?.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key)).then(|| it.next()?.parse().ok())?
    })
}

/// The first of the container's cgroup directories holding `file`.
fn find(dirs: &[PathBuf], file: &str) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(file)).find(|p| p.exists())
}

pub fn usage(cg: &CgroupState) -> Usage {
    let d = &cg.dirs;
    let f = |name: &str| find(d, name);
    let mut u = Usage::default();
    if let Some(p) = f("memory.current") {
        u.memory_bytes = number(&p);
        u.memory_limit = f("memory.max").and_then(|p| limit(&p));
        u.oom_kills = f("memory.events").and_then(|p| keyed(&p, "oom_kill"));
    } else if let Some(p) = f("memory.usage_in_bytes") {
        u.memory_bytes = number(&p);
        u.memory_limit = f("memory.limit_in_bytes").and_then(|p| limit(&p));
        u.oom_kills = f("memory.oom_control").and_then(|p| keyed(&p, "oom_kill"));
    }
    u.cpu_usec = match f("cpuacct.usage") {
        Some(p) => number(&p).map(|ns| ns / 1000),
        None => f("cpu.stat").and_then(|p| keyed(&p, "usage_usec")),
    };
    if let Some(p) = f("pids.current") {
        u.pids = number(&p);
        u.pids_limit = f("pids.max").and_then(|p| limit(&p));
    }
    u
}

/// After PID 1 has ended with `code`: if SIGKILL ended it (128 + 9) and the cgroup counted an
/// OOM kill, the kernel's OOM killer did it. Record that in the state (`OOMKilled`) and say so.
pub fn record_exit(k: &dyn Kernel, c: &mut Container, code: i32) -> Result<()> {
    if code != 128 + libc::SIGKILL || !c.relock()? {
        return Ok(());
    }
    let Some(cg) = &c.state.cgroup else {
        return Ok(());
    };
    let kills = usage(cg).oom_kills.unwrap_or(0);
    if kills > 0 {
        c.state.oom_killed = true;
        c.save()?;
        let limit = c
            .state
            .cgroup
            .as_ref()
            .and_then(|g| g.memory)
            .map(|m| format!(" ({})", human(m)))
            .unwrap_or_default();
        k.note(&format!(
            "PID 1 was killed by the kernel's OOM killer: the container hit its memory limit{limit} ({kills} OOM kill(s) counted in its cgroup)"
        ));
    }
    Ok(())
}

/// 64 MiB, 1.5 GiB, 512 B.
pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// `stepctr stats NAME [--json]`.
pub fn command(c: &Container, json: bool) -> Result<()> {
    let Some(cg) = &c.state.cgroup else {
        if c.state.userns.is_some() && c.state.done(crate::state::Stage::Cgroup) {
            bail!(
                "container {} has no cgroup: it is rootless, and this host delegates no cgroup to its user (see `stepctr doctor`), so nothing is counted or limited",
                c.name
            );
        }
        bail!(
            "container {} has no cgroup yet: run `stepctr cgroup {}` first",
            c.name,
            c.name
        );
    };
    let u = usage(cg);
    if json {
        #[derive(Serialize)]
        struct Out<'a> {
            name: &'a str,
            cgroup_version: &'a str,
            cgroups: &'a [PathBuf],
            #[serde(flatten)]
            usage: &'a Usage,
            cpu_quota_usec: Option<u64>,
            cpu_period_usec: u64,
            oom_killed: bool,
        }
        let out = Out {
            name: c.name.as_str(),
            cgroup_version: &cg.version,
            cgroups: &cg.dirs,
            usage: &u,
            cpu_quota_usec: cg.cpu_quota,
            cpu_period_usec: crate::stage::cgroup::CPU_PERIOD_US,
            oom_killed: c.state.oom_killed,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let of = |v: Option<u64>, used: bool, f: &dyn Fn(u64) -> String| {
        if !used {
            "-".to_string()
        } else {
            v.map(f).unwrap_or_else(|| "no limit".into())
        }
    };
    let cpus = cg
        .cpu_quota
        .map(|q| {
            format!(
                " (limit {} CPUs)",
                q as f64 / crate::stage::cgroup::CPU_PERIOD_US as f64
            )
        })
        .unwrap_or_default();
    println!("{:<12} {}", "NAME", c.name);
    println!(
        "{:<12} {} / {}",
        "MEMORY",
        opt(u.memory_bytes.map(human)),
        of(u.memory_limit, u.memory_bytes.is_some(), &human)
    );
    println!(
        "{:<12} {}{cpus}",
        "CPU TIME",
        opt(u.cpu_usec.map(|us| format!("{:.3} s", us as f64 / 1e6)))
    );
    println!(
        "{:<12} {} / {}",
        "PIDS",
        opt(u.pids.map(|p| p.to_string())),
        of(u.pids_limit, u.pids.is_some(), &|p| p.to_string())
    );
    println!(
        "{:<12} {}{}",
        "OOM KILLS",
        opt(u.oom_kills.map(|n| n.to_string())),
        if c.state.oom_killed {
            " (PID 1 was OOM-killed)"
        } else {
            ""
        }
    );
    for d in &cg.dirs {
        println!("{:<12} {}", "CGROUP", d.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v1_and_v2_files() {
        let t = tempfile::tempdir().unwrap();
        let v2 = t.path().join("v2");
        fs::create_dir(&v2).unwrap();
        for (f, s) in [
            ("memory.current", "1048576\n"),
            ("memory.max", "max\n"),
            ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
            ("cpu.stat", "usage_usec 2500\nuser_usec 2000\n"),
            ("pids.current", "3\n"),
            ("pids.max", "32\n"),
        ] {
            fs::write(v2.join(f), s).unwrap();
        }
        let cg = CgroupState {
            version: "v2".into(),
            dirs: vec![v2],
            ..CgroupState::default()
        };
        let u = usage(&cg);
        assert_eq!(u.memory_bytes, Some(1 << 20));
        assert_eq!(u.memory_limit, None);
        assert_eq!(u.oom_kills, Some(1));
        assert_eq!(u.cpu_usec, Some(2500));
        assert_eq!((u.pids, u.pids_limit), (Some(3), Some(32)));

        let mem = t.path().join("memory");
        let acct = t.path().join("cpuacct");
        fs::create_dir(&mem).unwrap();
        fs::create_dir(&acct).unwrap();
        fs::write(mem.join("memory.usage_in_bytes"), "4096\n").unwrap();
        fs::write(mem.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        fs::write(
            mem.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        fs::write(acct.join("cpuacct.usage"), "3000000\n").unwrap();
        let cg = CgroupState {
            version: "v1".into(),
            dirs: vec![mem, acct],
            ..CgroupState::default()
        };
        let u = usage(&cg);
        assert_eq!(u.memory_bytes, Some(4096));
        assert_eq!(u.memory_limit, None);
        assert_eq!(u.oom_kills, Some(2));
        assert_eq!(u.cpu_usec, Some(3000));
        assert_eq!(u.pids, None);
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human(64 << 20), "64.0 MiB");
        assert_eq!(human(12), "12 B");
    }
}
