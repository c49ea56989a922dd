//! The shim: one small supervisor per container, the parent of its PID 1 (containerd-shim's
//! job in `docker → containerd → shim → runc → process`).
//!
//! ```text
//! stepctr start ──fork──► stepctr-shim ──fork──► PID 1 (the command)
//! ```
//!
//! The shim names itself `stepctr-shim` (prctl PR_SET_NAME), becomes a child subreaper, makes
//! the container's PID namespace and forks PID 1 into it (`start::spawn_pid1`). It tells
//! stepctr PID 1's pid over a pipe once the execve has succeeded, then waits for PID 1, writes
//! its exit code and time into state.json (under the container's lock) and exits with that
//! code. Inside the container PID 1 reaps its own orphans; the shim reaps PID 1.
//!
//! Attached (default): stepctr waits for the shim and exits with PID 1's code; the container's
//! stdio is stepctr's own (byte for byte); if stepctr dies, the shim dies (PR_SET_PDEATHSIG)
//! and PID 1 with it. Detached (`-d`): the shim starts a session of its own (setsid), PID 1's
//! stdout and stderr go to `<run>/NAME/log`, and stepctr returns as soon as PID 1 runs; the
//! shim, reparented to init, outlives it.

use crate::kernel::Kernel;
use crate::stage::start::{Options, Plan};
use crate::state::{self, Container, ContainerName, Paths, Resource};
use anyhow::{bail, Result};
use std::path::Path;

/// The container's output when detached, in its state directory.
pub const LOG_FILE: &str = "log";

/// What `ps` and /proc/PID/comm show for a shim (the kernel keeps at most 15 bytes).
const SHIM_NAME: &std::ffi::CStr = c"stepctr-shim";

/// Fork the shim, which starts PID 1; attached, wait for it and return PID 1's exit code,
/// detached return 0 as soon as PID 1 runs.
pub fn start(k: &dyn Kernel, c: &mut Container, plan: &Plan, o: &Options) -> Result<i32> {
    // A pipe on which the shim says "PID 1 is <pid> and has exec'd" (bookkeeping, like the
    // error channel every fork has: not a container-building call, so not narrated).
    let (rd, wr) = pipe()?;
    let log = c.path(LOG_FILE);
    let name = c.name.clone();
    let paths = Paths {
        root: Paths::from_env().root,
        run: c.dir.parent().unwrap_or(Path::new("/")).to_path_buf(),
    };
    let shim = k.spawn(
        "the container's shim: it parents PID 1, reaps it and records how it ended",
        &mut || {
            // SAFETY: the shim's copy of the read end is not used.
            unsafe { libc::close(rd) };
            k.prctl(
                libc::PR_SET_NAME,
                SHIM_NAME.as_ptr() as u64,
                "call this process stepctr-shim (ps, /proc/PID/comm)",
            )?;
            k.prctl(
                libc::PR_SET_CHILD_SUBREAPER,
                1,
                "a subreaper: orphans of our descendants come to us, not to the host's init",
            )?;
            let stdio = if o.detach {
                // SAFETY: setsid has no arguments; a forked child is never a group leader.
                if unsafe { libc::setsid() } < 0 {
                    bail!("setsid: {}", std::io::Error::last_os_error());
                }
                Some(k.openat(
                    &log,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC,
                    0o640,
                    "detached: the container's stdout and stderr go to its log",
                )?)
            } else {
                k.prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as u64,
                    "attached: if stepctr dies, the shim dies (and PID 1 with it)",
                )?;
                None
            };
            let pid1 = crate::stage::start::spawn_pid1(k, plan, stdio)?;
            if let Some(fd) = stdio {
                k.close(fd)?;
                // Let go of stepctr's terminal or pipes: whoever waits for their end (a shell's
                // $(...), a test) must not wait for the container.
                redirect_stdio(-1)?;
            }
            tell(wr, pid1);
            let status = k.wait4(
                pid1,
                0,
                "reap PID 1: when it exits, the container has stopped",
            )?;
            let code = status.exit_code();
            if let Err(e) = record(k, &paths, &name, code, o.detach) {
                k.note(&format!("could not record the exit of PID 1: {e:#}"));
            }
            if o.detach && o.remove_when_done {
                if let Err(e) = crate::remove::remove(k, &paths, &name) {
                    k.note(&format!("could not remove {name}: {e:#}"));
                }
            }
            // SAFETY: leave without running the parent's destructors; our code is PID 1's.
            unsafe { libc::_exit(code) }
        },
    );
    // SAFETY: our copy of the write end: EOF on `rd` then means the shim has spoken or died.
    unsafe { libc::close(wr) };
    let shim = match shim {
        Ok(s) => s,
        Err(e) => {
            // SAFETY: our own fd.
            unsafe { libc::close(rd) };
            return Err(e.into());
        }
    };
    let heard = hear(rd);
    let Some(pid1) = heard else {
        let err = k
            .child_error(&shim)
            .unwrap_or_else(|| "the shim ended before PID 1 started".into());
        let _ = k.wait4(shim.pid, 0, "reap the shim");
        bail!("{err}");
    };
    let shim_start = state::process_start_time(shim.pid).unwrap_or(0);
    c.state.shim = Some((shim.pid, shim_start));
    c.state.pid = Some(pid1);
    c.journal(Resource::Process {
        pid: shim.pid,
        start_time: shim_start,
    })?;
    c.journal(Resource::Process {
        pid: pid1,
        start_time: state::process_start_time(pid1).unwrap_or(0),
    })?;
    // While the container runs, other commands (`rm`, `ps`, `kill`) may use it.
    c.save()?;
    c.unlock();
    if o.detach {
        // The shim stays; its error channel says nothing more that we would wait for.
        let fd = shim.err_fd.replace(-1);
        if fd >= 0 {
            // SAFETY: our own fd.
            unsafe { libc::close(fd) };
        }
        return Ok(0);
    }
    let status = k.wait4(
        shim.pid,
        0,
        "wait for the shim: it exits when PID 1 does, with PID 1's exit code",
    )?;
    if let Some(err) = k.child_error(&shim) {
        bail!("the shim failed: {err}");
    }
    Ok(status.exit_code())
}

/// Write PID 1's exit code and time into state.json, under the container's lock; nothing if
/// the container was removed meanwhile.
fn record(k: &dyn Kernel, paths: &Paths, name: &ContainerName, code: i32, oom: bool) -> Result<()> {
    if !paths.container(name).is_dir() {
        return Ok(());
    }
    let mut c = Container::open(paths, name)?;
    if !c.dir.join("state.json").exists() {
        return Ok(());
    }
    c.state.exit_code = Some(code);
    c.state.finished_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs());
    c.save()?;
    if oom {
        // Attached, stepctr itself looks at the cgroup's OOM count.
        crate::stats::record_exit(k, &mut c, code)?;
    }
    Ok(())
}

/// Put `fd` on stdout and stderr and /dev/null on stdin; with `fd` < 0, /dev/null on all three.
/// (Plain fd bookkeeping before an execve, as a shell's redirections.)
pub fn redirect_stdio(fd: i32) -> Result<()> {
    // SAFETY: open/dup2/close on fds we own; the path is a static C string.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null < 0 {
            bail!("open /dev/null: {}", std::io::Error::last_os_error());
        }
        let out = if fd >= 0 { fd } else { null };
        for (from, to) in [(null, 0), (out, 1), (out, 2)] {
            if libc::dup2(from, to) < 0 {
                bail!("dup2 to fd {to}: {}", std::io::Error::last_os_error());
            }
        }
        libc::close(null);
    }
    Ok(())
}

fn pipe() -> Result<(i32, i32)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        bail!("pipe2: {}", std::io::Error::last_os_error());
    }
    Ok((fds[0], fds[1]))
}

/// The shim's side: PID 1's pid, then EOF.
fn tell(wr: i32, pid: i32) {
    let msg = pid.to_string();
    // SAFETY: a short write of our own buffer to our own pipe, then closing it.
    unsafe {
        libc::write(wr, msg.as_ptr().cast(), msg.len());
        libc::close(wr);
    }
}

/// stepctr's side: read to EOF; the pid if the shim told one.
fn hear(rd: i32) -> Option<i32> {
    let mut out = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: reading into our own buffer.
        let n = unsafe { libc::read(rd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    // SAFETY: our own fd; reading is over.
    unsafe { libc::close(rd) };
    std::str::from_utf8(&out).ok()?.trim().parse().ok()
}
