//! `-t`: a pseudo-terminal for the container, as `docker run -it` gives.
//!
//! A terminal is a pair of ends: the *master*, held by whoever plays the keyboard and screen
//! (here stepctr, the way a terminal emulator or sshd does), and the *slave*, /dev/pts/N, which
//! the programs see as their terminal. Between them sits the kernel's line discipline: it
//! echoes, edits lines, and turns Ctrl-C (byte 0x03) into SIGINT for the terminal's foreground
//! process group.
//!
//! 1. stepctr opens /dev/ptmx (a new pair), unlocks the slave (TIOCSPTLCK), asks its number
//!    (TIOCGPTN), opens /dev/pts/N and sets the window size (TIOCSWINSZ);
//! 2. the container's process starts a session (setsid), takes the slave as its controlling
//!    terminal (TIOCSCTTY) and puts it on its stdin, stdout and stderr (dup3);
//! 3. with `-i`, stepctr puts its own terminal in raw mode, so every key goes through untouched
//!    (Ctrl-C included: the container's line discipline, not ours, turns it into SIGINT), and
//!    copies bytes both ways until the slave is closed everywhere (the container has ended). A
//!    new size of our terminal (SIGWINCH) is passed on with TIOCSWINSZ. Without `-i` (`docker
//!    run -t`), only the container's output is copied; our terminal stays as it is, so Ctrl-C
//!    is our own line discipline's SIGINT to stepctr, which passes it on to the container with
//!    kill(2) (the container leads a session on its own pty: our terminal's signals never
//!    reach it by themselves).

use crate::kernel::{tty as host, Kernel, TtyOp};
use anyhow::Result;
use std::path::{Path, PathBuf};

/// The size when stepctr's stdin is not a terminal.
pub const DEFAULT_SIZE: (u16, u16) = (24, 80);

/// Both ends of a new pseudo-terminal.
#[derive(Debug, Clone, Copy)]
pub struct Pty {
    pub master: i32,
    pub slave: i32,
    /// N of /dev/pts/N.
    pub number: u32,
    /// A detached bind mount of /dev/pts/N, for the container to attach inside its root.
    pub tree: i32,
}

/// Open a new pty pair in the host's devpts, sized like our terminal (or 80x24).
pub fn open_pty(k: &dyn Kernel) -> Result<Pty> {
    let master = k.openat(
        Path::new("/dev/ptmx"),
        libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        0,
        "a new pseudo-terminal: we hold its master end, the container gets the other",
    )?;
    let mut number = 0;
    let mut tree = -1;
    let slave = (|| -> Result<i32> {
        k.tty(
            master,
            TtyOp::Unlock,
            "unlock the slave side so it can be opened (unlockpt)",
        )?;
        let n = k.tty(
            master,
            TtyOp::PtyNumber,
            "which /dev/pts/N is the other end (ptsname)",
        )?;
        number = n as u32;
        let slave = k.openat(
            &PathBuf::from(format!("/dev/pts/{n}")),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            0,
            "open the slave now, while the host's /dev/pts is in view; the container inherits it",
        )?;
        let (rows, cols) = host::window_size(0).unwrap_or(DEFAULT_SIZE);
        let more = k
            .tty(
                master,
                TtyOp::SetWinsize { rows, cols },
                "the terminal's size, as our own (programs ask it with TIOCGWINSZ)",
            )
            .and_then(|_| {
                k.open_tree(
                    &PathBuf::from(format!("/dev/pts/{n}")),
                    "a detached bind mount of the slave: the container attaches it at the same name in its own /dev, so `tty` finds it",
                )
            });
        match more {
            Ok(t) => tree = t,
            Err(e) => {
                let _ = k.close(slave);
                return Err(e.into());
            }
        }
        Ok(slave)
    })();
    match slave {
        Ok(slave) => {
            // The shim and the container must not keep the master: its end must be ours alone.
            crate::kernel::not_for_children(master);
            Ok(Pty {
                master,
                slave,
                number,
                tree,
            })
        }
        Err(e) => {
            let _ = k.close(master);
            Err(e)
        }
    }
}

/// In the container's process, inside its root, before it switches user: show the slave at
/// /dev/pts/N (a bind mount of the open fd, so `tty` finds its name), make it the controlling
/// terminal and stdin, stdout and stderr.
pub fn take_terminal(k: &dyn Kernel, pty: Pty) -> Result<()> {
    let pts = Path::new("/dev/pts");
    if !pts.is_dir() {
        k.mkdirat(pts, 0o755, "a /dev/pts for the terminal's name")?;
    }
    let name = pts.join(pty.number.to_string());
    if !name.exists() {
        let fd = k.openat(
            &name,
            libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
            0o600,
            "a file to mount the terminal on",
        )?;
        k.close(fd)?;
    }
    k.move_mount(
        pty.tree,
        &name,
        "attach the slave's bind mount at the same name inside (the host's /dev/pts is out of view)",
    )?;
    k.setsid(
        "a session of our own: a process can take a controlling terminal only as a session leader",
    )?;
    k.tty(
        pty.slave,
        TtyOp::SetCtty,
        "the pty becomes our controlling terminal: Ctrl-C on it signals our foreground group",
    )?;
    for (to, why) in [
        (0, "stdin from the terminal"),
        (1, "stdout to the terminal"),
        (2, "stderr to the terminal"),
    ] {
        k.dup3(pty.slave, to, 0, why)?;
    }
    Ok(())
}

/// stepctr's side once the container runs: close our slave, raw mode on our terminal, copy
/// bytes (stdin only with `-i`) until the container has ended; then close the master and put
/// our terminal back. `tick` runs after every wake-up (signals to forward).
pub fn attach(k: &dyn Kernel, pty: Pty, interactive: bool, tick: &mut dyn FnMut()) -> Result<()> {
    // Failing to close these only keeps the terminal open longer: never give up the relay
    // over it (the container would wait for input nobody sends).
    let _ = k.close(pty.tree);
    let _ = k.close(pty.slave);
    let raw = if interactive {
        host::RawMode::enter(0)
    } else {
        None
    };
    // The container is on its own terminal now, not in our process group: what our terminal
    // sends us (Ctrl-C without `-i`, a hangup) must be passed on by us.
    let terminal_signals = crate::kernel::signals::TerminalSignals::forward();
    host::watch_resize();
    let mut tick = || {
        if host::resized() {
            if let Some((rows, cols)) = host::window_size(0) {
                let _ = k.tty(
                    pty.master,
                    TtyOp::SetWinsize { rows, cols },
                    "our terminal changed size (SIGWINCH): so does the container's, which sends SIGWINCH to its foreground group",
                );
            }
        }
        tick();
    };
    host::relay(pty.master, interactive.then_some(0), &mut tick);
    drop(terminal_signals);
    drop(raw);
    crate::kernel::forget_not_for_children(pty.master);
    k.close(pty.master)?;
    Ok(())
}

/// Close both ends (an error before the container ran).
pub fn close(k: &dyn Kernel, pty: Pty) {
    crate::kernel::forget_not_for_children(pty.master);
    let _ = k.close(pty.tree);
    let _ = k.close(pty.slave);
    let _ = k.close(pty.master);
}
