//! A pseudo-terminal for tests that drive stepctr as a person at a terminal would (tests/tty.rs,
//! tests/lessons.rs). Include it with `#[path = "common/pty.rs"] mod pty;`.

#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The user's side of a terminal: the master, and the slave stepctr runs on.
pub struct Term {
    pub master: i32,
    pub slave: i32,
    pub seen: Vec<u8>,
}

impl Term {
    pub fn new(rows: u16, cols: u16) -> Term {
        let (mut master, mut slave) = (-1, -1);
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty fills two fds.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &ws,
            )
        };
        assert_eq!(rc, 0, "openpty");
        // SAFETY: our own fds.
        unsafe {
            libc::fcntl(master, libc::F_SETFD, libc::FD_CLOEXEC);
            libc::fcntl(slave, libc::F_SETFD, libc::FD_CLOEXEC);
        }
        Term {
            master,
            slave,
            seen: Vec::new(),
        }
    }

    /// `stty -g` of the slave: the terminal's settings.
    pub fn settings(&self) -> Vec<u8> {
        // SAFETY: tcgetattr into our own termios.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(self.slave, &mut t), 0);
            let p = &t as *const libc::termios as *const u8;
            std::slice::from_raw_parts(p, std::mem::size_of::<libc::termios>()).to_vec()
        }
    }

    /// Start `cmd` with the slave as its stdin, stdout, stderr and controlling terminal.
    pub fn spawn(&self, mut cmd: Command) -> Child {
        let slave = self.slave;
        // SAFETY: dup of our fd, for the child's stdio.
        let fd = |_| unsafe { Stdio::from_raw_fd_dup(slave) };
        cmd.stdin(fd(0)).stdout(fd(1)).stderr(fd(2));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                Ok(())
            });
        }
        cmd.spawn().expect("spawn stepctr")
    }

    pub fn type_(&self, bytes: &[u8]) {
        // SAFETY: writing our buffer to our fd.
        let n = unsafe { libc::write(self.master, bytes.as_ptr().cast(), bytes.len()) };
        assert_eq!(n, bytes.len() as isize);
    }

    /// Read until `needle` has appeared (after what was already matched); panics after 20 s.
    pub fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(i) = find(&self.seen, needle.as_bytes()) {
                let before = String::from_utf8_lossy(&self.seen[..i + needle.len()]).into_owned();
                self.seen.drain(..i + needle.len());
                return before;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "waited for {needle:?}; the terminal shows {:?}",
                String::from_utf8_lossy(&self.seen)
            );
            let mut p = libc::pollfd {
                fd: self.master,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll and read on our own fd and buffer.
            unsafe {
                if libc::poll(&mut p, 1, left.as_millis().min(500) as i32) > 0 {
                    let mut buf = [0u8; 4096];
                    let n = libc::read(self.master, buf.as_mut_ptr().cast(), buf.len());
                    if n > 0 {
                        self.seen.extend_from_slice(&buf[..n as usize]);
                    }
                }
            }
        }
    }
}

trait FromRawFdDup {
    /// # Safety
    /// `fd` must be open.
    unsafe fn from_raw_fd_dup(fd: i32) -> Stdio;
}

impl FromRawFdDup for Stdio {
    unsafe fn from_raw_fd_dup(fd: i32) -> Stdio {
        use std::os::fd::FromRawFd;
        Stdio::from_raw_fd(libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3))
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        // SAFETY: our own fds.
        unsafe {
            libc::close(self.master);
            libc::close(self.slave);
        }
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
