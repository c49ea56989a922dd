//! Signal plumbing and the status pipe of the shim: process bookkeeping, not container
//! building, so not narrated (the `kill` that forwards a signal is the call that matters, and
//! it goes through [`Kernel`] and is narrated).

use super::Kernel;
use anyhow::{bail, Result};

/// The signals a shim (and an attached stepctr) passes on to PID 1, like docker's
/// `--sig-proxy`: the ones a user or a supervisor sends to ask a program to end or reload.
pub const FORWARDED: [i32; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Signals caught and not yet forwarded, one bit per signal number.
static PENDING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Forward the signals the kernel sends itself too (see [`TerminalSignals`]).
static FROM_KERNEL_TOO: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // A signal the kernel sends itself, such as a terminal's Ctrl-C, goes to the whole
    // foreground process group, PID 1 included: forwarding it would deliver it twice. Unless
    // PID 1 sits on a terminal of its own (`-t`): then ours never reaches it.
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let from_kernel = !info.is_null() && unsafe { (*info).si_code } == libc::SI_KERNEL;
    let wanted = !from_kernel || FROM_KERNEL_TOO.load(std::sync::atomic::Ordering::SeqCst);
    if sig != libc::SIGCHLD && wanted && (0..64).contains(&sig) {
        PENDING.fetch_or(1 << sig, std::sync::atomic::Ordering::SeqCst);
    }
}

/// While it lives, the [`FORWARDED`] signals (and SIGCHLD, to wake us) are caught; during
/// [`Forward::wait`] they are also blocked except while we sleep, so none is lost between
/// "nothing pending" and the sleep. Blocking starts only there, after PID 1 is forked: a
/// blocked signal would stay blocked in PID 1 across its execve (caught ones are reset). (Signal plumbing is process bookkeeping, like the
/// pipe above: the kill that forwards is the call that matters, and it is narrated.)
pub struct Forward {
    old_mask: libc::sigset_t,
    /// The signals we catch.
    set: libc::sigset_t,
    old: Vec<(i32, libc::sigaction)>,
}

impl Forward {
    pub fn install() -> Forward {
        PENDING.store(0, std::sync::atomic::Ordering::SeqCst);
        // SAFETY: plain sigaction/sigprocmask on zeroed, then filled, C structures.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            let mut old = Vec::new();
            for sig in FORWARDED.iter().copied().chain([libc::SIGCHLD]) {
                libc::sigaddset(&mut set, sig);
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = on_signal as *const () as usize;
                // No SA_RESTART: the sleep below must wake up.
                act.sa_flags = libc::SA_SIGINFO;
                libc::sigemptyset(&mut act.sa_mask);
                let mut prev: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &act, &mut prev) == 0 {
                    old.push((sig, prev));
                }
            }
            let mut old_mask: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut old_mask);
            Forward { old_mask, old, set }
        }
    }

    /// Forward what arrives to `target` until `child` has ended, then reap `child` (narrated).
    pub fn wait(
        &self,
        k: &dyn Kernel,
        target: i32,
        child: i32,
        why: &str,
    ) -> super::KResult<super::WaitStatus> {
        // SAFETY: a copy of the mask we started with, minus our signals: the sleep's mask.
        let mut sleep_mask = self.old_mask;
        for sig in FORWARDED.iter().copied().chain([libc::SIGCHLD]) {
            // SAFETY: editing our own sigset_t.
            unsafe { libc::sigdelset(&mut sleep_mask, sig) };
        }
        // SAFETY: blocking our own signals in this (single-threaded) process.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &self.set, std::ptr::null_mut()) };
        loop {
            self.forward_now(k, target)?;
            // Has `child` ended? Look without reaping (the narrated wait4 below reaps it).
            // SAFETY: waitid fills our zeroed siginfo_t.
            let ended = unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                let rc = libc::waitid(
                    libc::P_PID,
                    child as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                );
                rc < 0 || info.si_pid() != 0
            };
            if ended {
                break;
            }
            // Sleep until a signal comes (SIGCHLD included), our signals unblocked meanwhile.
            // SAFETY: sigsuspend with a valid mask; it always returns -1 EINTR.
            unsafe { libc::sigsuspend(&sleep_mask) };
        }
        k.wait4(child, 0, why)
    }

    /// Forward what has arrived so far (the `-t` relay calls this as it goes).
    pub fn forward_pending(&self, k: &dyn Kernel, target: i32) {
        let _ = self.forward_now(k, target);
    }

    fn forward_now(&self, k: &dyn Kernel, target: i32) -> super::KResult<()> {
        let pending = PENDING.swap(0, std::sync::atomic::Ordering::SeqCst);
        for sig in FORWARDED {
            if pending & (1 << sig) != 0 {
                let r = k.kill(
                    target,
                    sig,
                    "forward the signal to PID 1; as the init of its PID namespace it gets it only if it has a handler for it (the kernel drops it otherwise, even SIGTERM and SIGINT)",
                );
                if let Err(e) = r {
                    if e.errno != super::Errno::ESRCH {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        // SAFETY: putting back the actions and the mask we replaced.
        unsafe {
            for (sig, act) in &self.old {
                libc::sigaction(*sig, act, std::ptr::null_mut());
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.old_mask, std::ptr::null_mut());
        }
    }
}

/// While it lives, the signals our terminal's line discipline sends (Ctrl-C's SIGINT, Ctrl-\'s
/// SIGQUIT, a hangup's SIGHUP: from the kernel, to our foreground process group) are forwarded
/// too. For `-t`: the container's process then leads a session of its own on its own pty, out
/// of our group, so without us it would never see them (`docker run -t` without `-i` relies on
/// this: the terminal stays in cooked mode and Ctrl-C is our SIGINT, passed on). The shim,
/// in our group as well, keeps ignoring them: one forward, not two.
pub struct TerminalSignals(bool);

impl TerminalSignals {
    pub fn forward() -> TerminalSignals {
        TerminalSignals(FROM_KERNEL_TOO.swap(true, std::sync::atomic::Ordering::SeqCst))
    }
}

impl Drop for TerminalSignals {
    fn drop(&mut self) {
        FROM_KERNEL_TOO.store(self.0, std::sync::atomic::Ordering::SeqCst);
    }
}

pub fn pipe() -> Result<(i32, i32)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        bail!("pipe2: {}", std::io::Error::last_os_error());
    }
    Ok((fds[0], fds[1]))
}

/// The shim's side: PID 1's pid, then EOF.
pub fn tell(wr: i32, pid: i32) {
    let msg = pid.to_string();
    // SAFETY: a short write of our own buffer to our own pipe, then closing it.
    unsafe {
        libc::write(wr, msg.as_ptr().cast(), msg.len());
        libc::close(wr);
    }
}

/// stepctr's side: read to EOF; the pid if the shim told one.
pub fn hear(rd: i32) -> Option<i32> {
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
