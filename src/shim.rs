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
//! shim, reparented to init, outlives it. Detached with `-t` (`run -dit`), PID 1's stdio is its
//! terminal: the shim keeps the pty's master, copies what it shows into the log while nobody is
//! attached, and hands the master to `stepctr attach` over `<run>/NAME/attach.sock`
//! (`crate::tty::serve_detached`).

use crate::kernel::signals::{hear, pipe, tell};
pub use crate::kernel::signals::{Forward, FORWARDED};
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
    let pty = if o.tty {
        Some(crate::tty::open_pty_for_start(
            k,
            &plan.ns_dir.join("mnt"),
            &plan.rootfs,
        )?)
    } else {
        None
    };
    if let (Some(p), true) = (pty, o.detach) {
        // Detached, the shim keeps the master (PID 1 closes its copy with the rest).
        crate::kernel::forget_not_for_children(p.master);
    }
    let mut with_tty;
    let plan = match pty {
        Some(p) => {
            with_tty = plan.clone();
            with_tty.tty = Some(p);
            &with_tty
        }
        None => plan,
    };
    let (rd, wr) = match pipe() {
        Ok(p) => p,
        Err(e) => {
            if let Some(p) = pty {
                crate::tty::close(k, p);
            }
            return Err(e);
        }
    };
    let log = c.path(LOG_FILE);
    let attach_socket = c.path(crate::tty::ATTACH_SOCKET);
    let name = c.name.clone();
    let paths = Paths {
        root: Paths::from_env().root,
        run: c.dir.parent().unwrap_or(Path::new("/")).to_path_buf(),
    };
    let shim = k.spawn(
        "the container's shim: it parents PID 1, reaps it and records how it ended",
        &mut || {
            // The shim's copy of the read end is not used.
            crate::kernel::host::close_fd(rd);
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
                k.setsid(
                    "detached: a session of our own, so the terminal's hangup and Ctrl-C no longer reach the container",
                )?;
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
            // From now on a signal sent to the shim goes on to PID 1 (containerd-shim does the
            // same); caught already, so none sent while PID 1 starts is lost. PID 1 inherits
            // the handlers, which its execve resets.
            let forward = Forward::install();
            // Detached with a terminal: PID 1's stdio is the terminal; the shim copies what
            // it writes there into the log while nobody is attached.
            let detached_tty = o.detach && plan.tty.is_some();
            let pid1_stdio = if detached_tty { None } else { stdio };
            let pid1 = crate::stage::start::spawn_pid1(k, plan, pid1_stdio)?;
            if let Some(pty) = plan.tty {
                // Our copy of the slave: PID 1 holds the terminal, not the shim.
                crate::kernel::host::close_fd(pty.slave);
                if pty.tree >= 0 {
                    crate::kernel::host::close_fd(pty.tree);
                }
            }
            let attach = match (plan.tty, detached_tty) {
                (Some(pty), true) => Some((pty.master, listen_for_attach(k, &attach_socket)?)),
                _ => None,
            };
            if let Some(fd) = stdio {
                if attach.is_none() {
                    k.close(fd)?;
                }
                // Let go of stepctr's terminal or pipes: whoever waits for their end (a shell's
                // $(...), a test) must not wait for the container.
                redirect_stdio(k, -1)?;
            }
            tell(wr, pid1);
            if o.detach {
                // A detached shim may sleep for months beside its container: give back what
                // starting it needed. (Attached, stepctr itself waits beside it anyway, and PID 1
                // may end before the trimming would.)
                crate::kernel::host::trim_memory();
            }
            if let (Some((master, socket)), Some(log)) = (attach, stdio) {
                let mut ended = || {
                    forward.forward_pending(k, pid1);
                    crate::kernel::tty::has_ended(pid1)
                };
                crate::tty::serve_detached(k, master, log, socket, &mut ended);
                let _ = k.close(socket);
                let _ = k.unlinkat(
                    &attach_socket,
                    0,
                    "PID 1 has ended: nothing to attach to any more",
                );
            }
            let status = forward.wait(
                k,
                pid1,
                pid1,
                "reap PID 1: when it exits, the container has stopped",
            )?;
            drop(forward);
            let code = status.exit_code();
            // Attached with --rm, stepctr removes the container as soon as we exit: there is
            // no one to read an exit code written into its state.
            let removed_next = o.remove_when_done && !o.detach;
            if !removed_next {
                if let Err(e) = record(k, &paths, &name, code, o.detach) {
                    k.note(&format!("could not record the exit of PID 1: {e:#}"));
                }
            }
            if o.detach && o.remove_when_done {
                if let Err(e) = crate::remove::remove(k, &paths, &name) {
                    k.note(&format!("could not remove {name}: {e:#}"));
                }
            }
            // Leave without running the parent's destructors.
            crate::kernel::host::exit_now(code)
        },
    );
    // Our copy of the write end: EOF on `rd` then means the shim has spoken or died.
    crate::kernel::host::close_fd(wr);
    let shim = match shim {
        Ok(s) => s,
        Err(e) => {
            crate::kernel::host::close_fd(rd);
            if let Some(p) = pty {
                crate::tty::close(k, p);
            }
            return Err(e.into());
        }
    };
    let heard = hear(rd);
    let Some(pid1) = heard else {
        if let Some(p) = pty {
            crate::tty::close(k, p);
        }
        let err = k
            .child_error(&shim)
            .unwrap_or_else(|| "the shim ended before PID 1 started".into());
        let _ = k.wait4(shim.pid, 0, "reap the shim");
        bail!("{err}");
    };
    // Attached: from now on Ctrl-C, `kill` of stepctr, a hangup... go on to PID 1, as with
    // `docker run` (set up before state.json names PID 1, for whoever reads it there).
    let forward = (!o.detach).then(Forward::install);
    let shim_start = state::process_start_time(shim.pid).unwrap_or(0);
    c.state.shim = Some((shim.pid, shim_start));
    c.state.pid = Some(pid1);
    let saved = (|| -> Result<()> {
        // One write of state.json: both processes, and the pids above.
        c.journal_all([
            Resource::Process {
                pid: shim.pid,
                start_time: shim_start,
            },
            Resource::Process {
                pid: pid1,
                start_time: state::process_start_time(pid1).unwrap_or(0),
            },
        ])?;
        // While the container runs, other commands (`rm`, `ps`, `kill`) may use it.
        c.unlock();
        Ok(())
    })();
    if let Err(e) = saved {
        if let Some(p) = pty {
            crate::tty::close(k, p);
        }
        return Err(e);
    }
    if let (Some(p), Some(f)) = (pty, &forward) {
        crate::tty::attach(k, p, o.interactive, &mut || f.forward_pending(k, pid1))?;
    }
    if let (Some(p), true) = (pty, o.detach) {
        // The shim holds the terminal now (and hands it to `stepctr attach`).
        crate::tty::close(k, p);
    }
    if o.detach {
        // The shim stays; its error channel says nothing more that we would wait for.
        let fd = shim.err_fd.replace(-1);
        if fd >= 0 {
            crate::kernel::host::close_fd(fd);
        }
        return Ok(0);
    }
    let why = "wait for the shim: it exits when PID 1 does, with PID 1's exit code";
    let status = match &forward {
        Some(f) => f.wait(k, pid1, shim.pid, why),
        None => k.wait4(shim.pid, 0, why),
    };
    drop(forward);
    let status = status?;
    if let Some(err) = k.child_error(&shim) {
        bail!("the shim failed: {err}");
    }
    Ok(status.exit_code())
}

/// `-dit`: the socket `stepctr attach` connects to, in the container's state directory, for
/// root alone (umask 0177 while it is made: bind creates the file).
fn listen_for_attach(k: &dyn Kernel, path: &Path) -> Result<i32> {
    let fd =
        k.unix_socket("a unix socket for `stepctr attach`: it will get the terminal from us")?;
    let made = (|| -> Result<()> {
        let old = k.umask(
            0o177,
            "the socket file is made by bind: root alone may connect (mode 0600)",
        )?;
        let bound = k.bind_unix(fd, path, "its name: <run>/NAME/attach.sock");
        k.umask(old, "back to the umask we had")?;
        bound?;
        k.listen(fd, 1, "wait for `stepctr attach`")?;
        Ok(())
    })();
    match made {
        Ok(()) => Ok(fd),
        Err(e) => {
            let _ = k.close(fd);
            Err(e)
        }
    }
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

/// Put `fd` on stdout and stderr and /dev/null on stdin; with `fd` < 0, /dev/null on all three
/// (a shell's `<` and `>`): `openat("/dev/null")`, a `dup3` per standard fd, then `close`.
/// Detached, PID 1 does it with its log just before its execve, and the shim with /dev/null.
/// The line about the dup3 onto stderr still reaches the narration; after it, a process's
/// narration on stderr goes where its stderr now goes (a `--trace-file` keeps it all).
pub fn redirect_stdio(k: &dyn Kernel, fd: i32) -> Result<()> {
    let null = k.openat(
        Path::new("/dev/null"),
        libc::O_RDWR | libc::O_CLOEXEC,
        0,
        "nothing to read, and a place for output nobody reads",
    )?;
    let (out, why_out, why_err) = if fd >= 0 {
        (
            fd,
            "stdout to the container's log (`stepctr logs`)",
            "stderr to the log too",
        )
    } else {
        (
            null,
            "stdout away from stepctr's terminal or pipe: whoever waits for its end must not wait for us",
            "stderr likewise",
        )
    };
    for (from, to, why) in [
        (null, 0, "stdin from /dev/null: nothing to read"),
        (out, 1, why_out),
        (out, 2, why_err),
    ] {
        k.dup3(from, to, 0, why)?;
    }
    k.close(null)?;
    Ok(())
}
