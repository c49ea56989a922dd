//! The host side of `-t`: stepctr's own terminal in raw mode, its size, and the loop that
//! copies bytes between it and the pty's master. Bookkeeping (not narrated): the calls that
//! make the pty are narrated where they are made (`shim::open_pty`).

use std::sync::atomic::{AtomicBool, Ordering};

/// Our terminal, put back as it was when this is dropped.
pub struct RawMode {
    fd: i32,
    saved: libc::termios,
}

impl RawMode {
    /// Raw mode on `fd` if it is a terminal: every byte (Ctrl-C = 0x03 included) goes to the
    /// container as typed; the container's own line discipline interprets them.
    pub fn enter(fd: i32) -> Option<RawMode> {
        // SAFETY: tcgetattr/tcsetattr on a termios we own.
        unsafe {
            if libc::isatty(fd) != 1 {
                return None;
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(fd, libc::TCSANOW, &raw) != 0 {
                return None;
            }
            Some(RawMode { fd, saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: putting back the termios we read.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

/// The window size (rows, columns) of the terminal on `fd`, if it is one.
pub fn window_size(fd: i32) -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ fills a winsize we own.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) != 0 || ws.ws_row == 0 {
            return None;
        }
        Some((ws.ws_row, ws.ws_col))
    }
}

static RESIZED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_winch(_: libc::c_int) {
    RESIZED.store(true, Ordering::SeqCst);
}

/// Catch SIGWINCH (our terminal changed size) for the relay.
pub fn watch_resize() {
    // SAFETY: a plain handler that only sets an atomic flag.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_winch as *const () as usize;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(libc::SIGWINCH, &act, std::ptr::null_mut());
    }
}

/// Did our terminal change size since the last look?
pub fn resized() -> bool {
    RESIZED.swap(false, Ordering::SeqCst)
}

fn write_all(fd: i32, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: writing from our own buffer.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return false;
        }
        buf = &buf[n as usize..];
    }
    true
}

/// Ctrl-P then Ctrl-Q (docker's sequence): `stepctr attach` lets go of the terminal.
const DETACH_KEYS: [u8; 2] = [0x10, 0x11];

/// How a [`relay`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relayed {
    /// The pty's other side is closed everywhere: the container has ended.
    Ended,
    /// The detach keys were typed (only when asked for).
    Detached,
}

/// Copy `input` (if any) to `master` and `master` to stdout until the pty's other side is
/// closed everywhere (the container has ended: read on the master fails with EIO), or, with
/// `detach_keys`, until Ctrl-P Ctrl-Q is typed (neither byte is passed on; a Ctrl-P followed
/// by anything else is). `tick` runs after every wake-up (signals to forward, a new window
/// size).
pub fn relay(
    master: i32,
    mut input: Option<i32>,
    detach_keys: bool,
    tick: &mut dyn FnMut(),
) -> Relayed {
    let mut buf = [0u8; 8192];
    let mut held = false; // a Ctrl-P waiting to see what follows
    loop {
        let mut fds = [
            libc::pollfd {
                fd: master,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: input.unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll on our own array.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, 200) };
        tick();
        if rc < 0 {
            continue; // EINTR: a signal; `tick` has seen to it.
        }
        if fds[0].revents != 0 {
            // SAFETY: reading into our own buffer.
            let n = unsafe { libc::read(master, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Relayed::Ended; // EIO: no process has the terminal open any more.
            }
            let _ = write_all(1, &buf[..n as usize]);
        }
        if let Some(fd) = input {
            if fds[1].revents != 0 {
                // SAFETY: reading into our own buffer.
                let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    input = None; // end of our input: stop reading it
                    continue;
                }
                let typed = &buf[..n as usize];
                if !detach_keys {
                    if !write_all(master, typed) {
                        input = None;
                    }
                    continue;
                }
                let mut out = Vec::with_capacity(typed.len() + 1);
                for &b in typed {
                    if held {
                        held = false;
                        if b == DETACH_KEYS[1] {
                            // What was typed before the keys still goes to the container.
                            let _ = write_all(master, &out);
                            return Relayed::Detached;
                        }
                        out.push(DETACH_KEYS[0]);
                    }
                    if b == DETACH_KEYS[0] {
                        held = true;
                    } else {
                        out.push(b);
                    }
                }
                if !write_all(master, &out) {
                    input = None;
                }
            }
        }
    }
}

/// Copy what is written on `master` to `log` until `stop` has something to read or the pty's
/// other side is closed everywhere; returns false in that last case. The detached shim does
/// this while nobody is attached, so the container never blocks on a full terminal and
/// `stepctr logs` shows its output. `wake` (if >= 0) also ends the wait when readable.
pub fn drain_once(master: Option<i32>, log: i32, wake: &[i32], timeout_ms: i32) -> DrainEvent {
    let mut fds: Vec<libc::pollfd> = master
        .iter()
        .chain(wake.iter())
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: poll on our own array.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if rc <= 0 {
        return DrainEvent::Nothing;
    }
    let mut ev = DrainEvent::Nothing;
    let skip = usize::from(master.is_some());
    if let Some(m) = master {
        if fds[0].revents != 0 {
            let mut buf = [0u8; 8192];
            // SAFETY: reading into our own buffer.
            let n = unsafe { libc::read(m, buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                let _ = write_all(log, &buf[..n as usize]);
            } else if n == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR)
            {
                ev = DrainEvent::Closed;
            }
        }
    }
    if let Some(i) = fds[skip..].iter().position(|p| p.revents != 0) {
        if ev == DrainEvent::Nothing {
            ev = DrainEvent::Ready(wake[i]);
        }
    }
    ev
}

/// What [`drain_once`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainEvent {
    /// Timeout, a signal, or output copied to the log.
    Nothing,
    /// The pty's other side is closed everywhere.
    Closed,
    /// This fd of `wake` has something to read (or hung up).
    Ready(i32),
}

/// Read and drop what `fd` sends; false once it is closed (EOF or error).
pub fn still_open(fd: i32) -> bool {
    let mut buf = [0u8; 64];
    // SAFETY: reading into our own buffer.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    n > 0 || (n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR))
}

/// Has `child` ended? Looked at without reaping it (waitid WNOWAIT; bookkeeping).
pub fn has_ended(child: i32) -> bool {
    // SAFETY: waitid fills our zeroed siginfo_t.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let rc = libc::waitid(
            libc::P_PID,
            child as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        rc < 0 || info.si_pid() != 0
    }
}

/// Something to read on `fd` right now? (poll with a zero timeout)
pub fn has_input(fd: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one pollfd of ours.
    unsafe { libc::poll(&mut p, 1, 0) > 0 && p.revents & libc::POLLIN != 0 }
}
