//! `stepctr ps` (and `inspect` of a container): what each container is doing now.
//!
//! A container's status is not stored anywhere: like docker, stepctr works it out from the
//! state the stages left and from /proc. PID 1 alive → `running`; PID 1 gone and its exit
//! recorded by the shim → `exited (CODE)` (or `OOMKilled (137)` when the kernel's OOM killer
//! ended it); PID 1 gone but its shim still busy writing that down → `stopping`; no PID 1
//! yet → `created` (the STAGES column says how far it got).
//!
//! `ps` reads each state.json without taking the container's lock (stepctr writes it
//! atomically), so it never waits for a `stop` or a `start` in progress.

use crate::state::{self, ContainerName, Paths, Resource, State};
use anyhow::{bail, Result};
use serde::Serialize;
use std::io::Write;

/// One container, as `ps --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub name: String,
    pub image: String,
    /// `created`, `running`, `stopping`, `exited (CODE)`, `OOMKilled (CODE)`.
    pub status: String,
    pub running: bool,
    /// PID 1's host pid.
    pub pid: Option<i32>,
    /// The shim's pid, and whether it still runs.
    pub shim: Option<i32>,
    pub shim_running: bool,
    pub exit_code: Option<i32>,
    pub oom_killed: bool,
    /// When PID 1 started and ended, in seconds since the epoch.
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    /// The stages done, in order.
    pub stages: Vec<String>,
}

/// Read a container's state without locking it.
pub fn read_state(paths: &Paths, name: &ContainerName) -> Result<Option<State>> {
    let dir = paths.container(name);
    if !dir.is_dir() {
        return Ok(None);
    }
    match std::fs::read(dir.join("state.json")) {
        Ok(b) => Ok(Some(serde_json::from_slice(&b).map_err(|e| {
            anyhow::anyhow!(
                "read {}/state.json: not valid container state: {e}",
                dir.display()
            )
        })?)),
        // A container whose first stage is still being written (or crashed early).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Some(State {
            name: name.to_string(),
            ..State::default()
        })),
        Err(e) => Err(anyhow::Error::from(e).context(format!("read {}", dir.display()))),
    }
}

/// The status of a container, from its state and /proc (and, for one made by the OCI
/// `create`, its exec fifo in `dir`: while it is there, PID 1 waits for `start`).
pub fn entry(state: &State, name: &str, dir: &std::path::Path) -> Entry {
    let pid1 = crate::lifecycle::pid1_running(state);
    let shim_running = state
        .shim
        .is_some_and(|(pid, start)| crate::lifecycle::alive_as(pid, start));
    let status = match (state.exit_code, pid1, state.pid) {
        (Some(code), _, _) if state.oom_killed => format!("OOMKilled ({code})"),
        (Some(code), _, _) => format!("exited ({code})"),
        (None, Some(_), _)
            if state.oci.is_some() && dir.join(crate::oci::lifecycle::FIFO).exists() =>
        {
            "created".to_string()
        }
        (None, Some(_), _) => "running".to_string(),
        (None, None, Some(_)) if shim_running => "stopping".to_string(),
        // PID 1 and its shim are gone and nobody wrote down how it ended (the shim was
        // killed, or the machine rebooted).
        (None, None, Some(_)) => "exited (unknown)".to_string(),
        (None, None, None) => "created".to_string(),
    };
    let started_at = state.pid.and_then(|pid| {
        state.journal.iter().find_map(|r| match r {
            Resource::Process { pid: p, start_time } if *p == pid && *start_time > 0 => {
                epoch_of_ticks(*start_time)
            }
            _ => None,
        })
    });
    Entry {
        name: name.to_string(),
        image: state.image.clone(),
        status,
        running: pid1.is_some(),
        pid: state.pid,
        shim: state.shim.map(|(p, _)| p),
        shim_running,
        exit_code: state.exit_code,
        oom_killed: state.oom_killed,
        started_at,
        finished_at: state.finished_at,
        stages: state.stages.iter().map(|s| s.name().to_string()).collect(),
    }
}

/// A process start time (clock ticks after boot, /proc/PID/stat field 22) as epoch seconds.
fn epoch_of_ticks(ticks: u64) -> Option<u64> {
    let btime: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let hz = crate::kernel::host::clock_ticks_per_second();
    (hz > 0).then(|| btime + ticks / hz as u64)
}

/// Every container, by name.
pub fn list(paths: &Paths) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for name in state::list_containers(paths)? {
        // Removed while we looked: not listed.
        if let Some(st) = read_state(paths, &name)? {
            out.push(entry(&st, name.as_str(), &paths.container(&name)));
        }
    }
    Ok(out)
}

/// `stepctr ps [--json]`.
pub fn command(paths: &Paths, json: bool) -> Result<()> {
    let entries = list(paths)?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &entries)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<20} {:<36} {:<18} {:>7} {:>7}  STAGES",
        "NAME", "IMAGE", "STATUS", "PID", "SHIM"
    )?;
    let dash = |p: Option<i32>| p.map_or_else(|| "-".to_string(), |p| p.to_string());
    for e in &entries {
        writeln!(
            out,
            "{:<20} {:<36} {:<18} {:>7} {:>7}  {}",
            e.name,
            e.image,
            e.status,
            dash(e.pid),
            dash(e.shim.filter(|_| e.shim_running)),
            e.stages.join(","),
        )?;
    }
    Ok(())
}

/// `stepctr inspect NAME` when NAME is a container: its state and status, as text or JSON.
pub fn inspect(paths: &Paths, name: &ContainerName, json: bool) -> Result<()> {
    let Some(st) = read_state(paths, name)? else {
        bail!("no container named {name}");
    };
    let e = entry(&st, name.as_str(), &paths.container(name));
    let mut out = std::io::stdout().lock();
    if json {
        let mut v = serde_json::to_value(&e)?;
        v["state"] = serde_json::to_value(&st)?;
        v["dir"] = serde_json::Value::String(paths.container(name).display().to_string());
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
        return Ok(());
    }
    let dash = |p: Option<i32>| p.map_or_else(|| "-".to_string(), |p| p.to_string());
    let time = |t: Option<u64>| t.map_or_else(|| "-".to_string(), utc);
    writeln!(out, "Container:  {}", e.name)?;
    writeln!(out, "Image:      {}", e.image)?;
    writeln!(out, "Status:     {}", e.status)?;
    writeln!(out, "Stages:     {}", e.stages.join(", "))?;
    writeln!(out, "PID 1:      {} (host pid)", dash(e.pid))?;
    writeln!(
        out,
        "Shim:       {}{}",
        dash(e.shim),
        if e.shim_running { " (running)" } else { "" }
    )?;
    writeln!(out, "Exit code:  {}", dash(e.exit_code))?;
    writeln!(out, "OOMKilled:  {}", e.oom_killed)?;
    writeln!(out, "Started:    {}", time(e.started_at))?;
    writeln!(out, "Finished:   {}", time(e.finished_at))?;
    if let Some(r) = &st.rootfs {
        writeln!(out, "Rootfs:     {}", r.display())?;
    }
    for v in &st.volumes {
        writeln!(out, "Volume:     {}", serde_json::to_string(v)?)?;
    }
    if let Some(n) = &st.network {
        let mode = serde_json::to_value(n.mode)?;
        let mode = mode.as_str().unwrap_or("?");
        match (n.address, &n.host_veth) {
            (Some(a), Some(v)) => writeln!(
                out,
                "Network:    {mode}: eth0 {a}/{}, gateway {}, host end {v}",
                n.prefix,
                n.gateway.map(|g| g.to_string()).unwrap_or_default()
            )?,
            _ => writeln!(out, "Network:    {mode}")?,
        }
    }
    for p in &st.ports {
        writeln!(out, "Port:       {p}")?;
    }
    writeln!(out, "State dir:  {}", paths.container(name).display())?;
    Ok(())
}

/// Epoch seconds as `2026-11-28 20:31:02 UTC`.
fn utc(t: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t);
    let iso = humantime::format_rfc3339_seconds(at).to_string();
    format!("{} UTC", iso.trim_end_matches('Z').replace('T', " "))
}

#[cfg(test)]
mod tests {
    #[test]
    fn epoch_seconds_as_utc() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(super::utc(1_796_329_862), "2026-12-03 20:31:02 UTC");
    }
}
