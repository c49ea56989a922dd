//! `kill`, `stop` and `logs`: talking to a running container's PID 1.
//!
//! PID 1 is special to the kernel: a signal sent to the init of a PID namespace is delivered
//! only if PID 1 installed a handler for it (SIGKILL and SIGSTOP from an ancestor namespace
//! excepted). So `stepctr kill NAME` (SIGKILL by default, as docker) always works, while the
//! SIGTERM of `stepctr stop` is silently dropped by a command that never asked for it, such as
//! `sleep`: `stop` then waits its timeout and escalates to SIGKILL, as `docker stop` does.

use crate::kernel::Kernel;
use crate::state::{self, Container, Resource};
use anyhow::{bail, Result};
use std::time::{Duration, Instant};

/// PID 1's host pid, if the container's PID 1 still runs.
pub fn running_pid1(c: &Container) -> Option<i32> {
    pid1_running(&c.state)
}

/// [`running_pid1`] from a container's state alone (`ps` reads it without the lock).
pub fn pid1_running(st: &state::State) -> Option<i32> {
    let pid = st.pid?;
    if st.exit_code.is_some() {
        return None;
    }
    let start = st.journal.iter().find_map(|r| match r {
        Resource::Process { pid: p, start_time } if *p == pid => Some(*start_time),
        _ => None,
    })?;
    alive_as(pid, start).then_some(pid)
}

/// `pid` runs (not a zombie) and is the process that started at `start_time` (0: any).
pub fn alive_as(pid: i32, start_time: u64) -> bool {
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .unwrap_or(true);
    !zombie && state::process_start_time(pid).is_some_and(|t| start_time == 0 || t == start_time)
}

/// `KILL`, `SIGKILL`, `kill`, `9` → 9.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        bail!("signal {n} is out of range (1-64)");
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let sig = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => bail!("unknown signal {s:?}: use a name like TERM, SIGKILL or a number like 9"),
    };
    Ok(sig)
}

fn need_running(c: &Container) -> Result<i32> {
    match running_pid1(c) {
        Some(pid) => Ok(pid),
        None => bail!(
            "container {} is not running: `stepctr ps` shows its state",
            c.name
        ),
    }
}

/// What a process does on a signal, as /proc/PID/status shows it (SigCgt, SigIgn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// It installed a handler: it decides what happens.
    Caught,
    /// It ignores the signal (SIG_IGN, a shell's `trap "" SIG`).
    Ignored,
    /// The default action, which the kernel never applies to the init of a PID namespace.
    Default,
}

/// PID `pid`'s disposition of `sig`, if /proc still shows the process.
pub fn disposition(pid: i32, sig: i32) -> Option<Disposition> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mask = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .map(|m| (1..=64).contains(&sig) && m & (1 << (sig - 1)) != 0)
    };
    Some(if mask("SigCgt:")? {
        Disposition::Caught
    } else if mask("SigIgn:")? {
        Disposition::Ignored
    } else {
        Disposition::Default
    })
}

/// What becomes of `sig` sent to a namespace's PID 1 that has `d` for it (a note).
fn fate(sig: i32, d: Option<Disposition>) -> &'static str {
    if sig == libc::SIGKILL || sig == libc::SIGSTOP {
        return "SIGKILL and SIGSTOP from the host reach even a namespace's PID 1";
    }
    match d {
        Some(Disposition::Caught) => {
            "PID 1 has a handler for this signal (/proc/PID/status SigCgt): it decides what happens"
        }
        Some(Disposition::Ignored) => {
            "PID 1 ignores this signal (/proc/PID/status SigIgn): nothing happens"
        }
        Some(Disposition::Default) => {
            "PID 1 has no handler for this signal: the kernel drops it, as it never applies a default action to a namespace's init"
        }
        None => "PID 1 of a namespace only gets signals it has a handler for: without one, this one is dropped",
    }
}

/// `stepctr kill NAME [-s SIG]`: send a signal to PID 1.
pub fn kill(k: &dyn Kernel, c: &mut Container, sig: i32) -> Result<()> {
    let pid = need_running(c)?;
    // Looked at before the signal: a PID 1 that handles it may be gone right after.
    let d = disposition(pid, sig);
    k.kill(
        pid,
        sig,
        "signal the container's PID 1 (from the host, it has its host pid)",
    )?;
    k.note(fate(sig, d));
    Ok(())
}

/// `stepctr stop NAME [-t SECS]`: SIGTERM, wait, then SIGKILL. Returns once the shim has
/// recorded PID 1's exit.
pub fn stop(k: &dyn Kernel, c: &mut Container, timeout: Duration) -> Result<()> {
    let Some(pid) = running_pid1(c) else {
        k.note(&format!("container {} is not running", c.name));
        return Ok(());
    };
    let d = disposition(pid, libc::SIGTERM);
    k.kill(
        pid,
        libc::SIGTERM,
        "ask PID 1 to end: it gets SIGTERM only if it has a handler for it",
    )?;
    if !wait_gone(c, pid, timeout) {
        let why = match d {
            Some(Disposition::Caught) => "its SIGTERM handler did not end it in time",
            Some(Disposition::Ignored) => "it ignores SIGTERM",
            _ => "it has no SIGTERM handler, and the kernel never applies a default action to a namespace's init",
        };
        k.note(&format!(
            "PID 1 still runs after {:.1} s: {why} — so stop escalates",
            timeout.as_secs_f64()
        ));
        k.kill(
            pid,
            libc::SIGKILL,
            "SIGKILL cannot be ignored, not even by PID 1",
        )?;
        wait_gone(c, pid, Duration::from_secs(10));
    }
    // Let the shim take the lock and write down the exit code, so `ps` right after shows it.
    let shim = c.state.shim;
    c.unlock();
    if let Some((spid, start)) = shim {
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive_as(spid, start) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    if c.relock()? {
        if let Some(code) = c.state.exit_code {
            k.note(&format!(
                "PID 1 exited with code {code}: the container has stopped"
            ));
        }
    }
    Ok(())
}

fn wait_gone(c: &Container, pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if running_pid1(c) != Some(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `stepctr logs NAME`: what a detached container wrote to stdout and stderr.
pub fn logs(c: &Container) -> Result<()> {
    use std::io::Write;
    let path = c.path(crate::shim::LOG_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            std::io::stdout().write_all(&bytes)?;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "container {} has no log: only a detached container (`-d`) keeps one; an attached one wrote to your terminal",
            c.name
        ),
        Err(e) => Err(anyhow::Error::from(e).context(format!("read {}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_signal;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("sigkill").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("SIGUSR1").unwrap(), libc::SIGUSR1);
        assert_eq!(parse_signal("15").unwrap(), 15);
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("BOGUS").is_err());
    }
}
