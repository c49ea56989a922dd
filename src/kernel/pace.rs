//! `--pace step`: the narrator stops before every kernel call, shows it, and waits for Enter
//! (for a class watching a projector). The prompt and the answer go through the controlling
//! terminal, /dev/tty, so they work whatever stdin, stdout and stderr are.
//!
//! /dev/tty is opened once, on the first pause, close-on-exec and moved to a high fd number
//! (so the fds the learner sees narrated are numbered as without --pace). A child forked after
//! that inherits it and pauses on it too; nothing of it reaches a container (close-on-exec).
//! Without a controlling terminal (CI, scripts, cron), pacing is off and one note says so.

use std::cell::Cell;

/// Where the /dev/tty fd is moved: above the fds stepctr itself uses.
const TTY_FD_MIN: i32 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not asked for, or turned off.
    Off,
    /// Asked for; /dev/tty not opened yet.
    Wanted,
    /// Pausing on this fd, a terminal whose device number is `rdev`.
    On { fd: i32, rdev: libc::dev_t },
}

/// The pacing state of one process (a forked child gets a copy, with the fd).
pub struct Pacer {
    state: Cell<State>,
    /// Inside a bulk run (layer unpacking): one pause for all of it, at its start.
    in_bulk: Cell<bool>,
}

/// What a pause came to.
pub enum Paused {
    /// Enter was pressed (or pacing is off): make the call.
    Go,
    /// Pacing just turned off for this reason: say it once, then make the call.
    Off(String),
    /// `q` and Enter: stop before this call.
    Quit,
}

impl Pacer {
    pub fn new(on: bool) -> Pacer {
        Pacer {
            state: Cell::new(if on { State::Wanted } else { State::Off }),
            in_bulk: Cell::new(false),
        }
    }

    /// Would the next call pause?
    pub fn active(&self) -> bool {
        self.state.get() != State::Off && !self.in_bulk.get()
    }

    pub fn bulk(&self, inside: bool) {
        self.in_bulk.set(inside);
    }

    /// This process left the terminal's session (setsid: a daemon, a detached shim, a
    /// container's PID 1 taking its own terminal): it no longer pauses; the terminal is the
    /// learner's shell's again.
    pub fn left_session(&self) {
        self.state.set(State::Off);
    }

    /// Show `prompt` on the terminal and wait for a line.
    pub fn pause(&self, prompt: &str) -> Paused {
        let (fd, rdev) = match self.state.get() {
            State::Off => return Paused::Go,
            State::On { fd, rdev } => (fd, rdev),
            State::Wanted => match open_tty() {
                Ok(on) => on,
                Err(e) => {
                    self.state.set(State::Off);
                    return Paused::Off(format!(
                        "--pace step: no terminal to pause on (open /dev/tty: {e}), so running straight through"
                    ));
                }
            },
        };
        // Still our terminal? (Some processes close fds by number: a proxy, the ns holder.)
        if rdev_of(fd) != Some(rdev) {
            self.state.set(State::Off);
            return Paused::Go;
        }
        self.state.set(State::On { fd, rdev });
        if !write_all(fd, prompt.as_bytes()) {
            self.state.set(State::Off);
            return Paused::Go;
        }
        match read_line(fd) {
            Some(true) => Paused::Quit,
            Some(false) => Paused::Go,
            None => {
                self.state.set(State::Off);
                Paused::Off(
                    "--pace step: the terminal closed its input, so running straight through"
                        .into(),
                )
            }
        }
    }
}

fn open_tty() -> Result<(i32, libc::dev_t), nix::errno::Errno> {
    // SAFETY: open of a constant path; fcntl/close of the fd it returns.
    unsafe {
        let fd = libc::open(
            c"/dev/tty".as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOCTTY,
        );
        if fd < 0 {
            return Err(nix::errno::Errno::last());
        }
        let high = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, TTY_FD_MIN);
        let fd = if high >= 0 {
            libc::close(fd);
            high
        } else {
            fd
        };
        match rdev_of(fd) {
            Some(rdev) => Ok((fd, rdev)),
            None => {
                libc::close(fd);
                Err(nix::errno::Errno::ENOTTY)
            }
        }
    }
}

/// The device number of `fd` if it is a terminal.
fn rdev_of(fd: i32) -> Option<libc::dev_t> {
    // SAFETY: fstat into our own struct.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(fd, &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFCHR)
            .then_some(st.st_rdev)
    }
}

fn write_all(fd: i32, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: writing our own buffer.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            return false;
        }
        buf = &buf[n as usize..];
    }
    true
}

/// Read up to the end of a line (Enter: `\n`, or `\r` on a raw terminal): was it `q`? None at
/// the end of input or an error.
fn read_line(fd: i32) -> Option<bool> {
    let mut b = 0u8;
    let mut line = Vec::new();
    loop {
        // SAFETY: reading one byte into our own buffer.
        let n = unsafe { libc::read(fd, (&mut b as *mut u8).cast(), 1) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            return None;
        }
        if b == b'\n' || b == b'\r' {
            return Some(line.trim_ascii().eq_ignore_ascii_case(b"q"));
        }
        if line.len() < 16 {
            line.push(b);
        }
    }
}
