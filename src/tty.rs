//! `-t`: a pseudo-terminal for the container, as `docker run -it` gives.
//!
//! A terminal is a pair of ends: the *master*, held by whoever plays the keyboard and screen
//! (here stepctr, the way a terminal emulator or sshd does), and the *slave*, /dev/pts/N, which
//! the programs see as their terminal. Between them sits the kernel's line discipline: it
//! echoes, edits lines, and turns Ctrl-C (byte 0x03) into SIGINT for the terminal's foreground
//! process group.
//!
//! 1. stepctr opens the container's /dev/pts/ptmx (a new pair in the container's own devpts,
//!    reached from an fd of its root: through /proc/PID/root of PID 1 for `exec`, by stepping
//!    into its mount namespace for `start`), unlocks the slave (TIOCSPTLCK), asks its number
//!    (TIOCGPTN), opens /dev/pts/N there and sets the window size (TIOCSWINSZ). Inside, the
//!    terminal is /dev/pts/0 of the container's devpts, and the host's ptys are not in view;
//!    (a container without a devpts of its own gets a pty of the host's, bind-mounted in);
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
    open_pty_in(k, None)
}

/// `start -t`: a pty in the container's own devpts, reached from stepctr by stepping into the
/// container's mount namespace for the one call that opens its root (no process of the
/// container exists yet to reach it through). A process with threads may not change its
/// mount namespace: it falls back to a pty of the host's.
pub fn open_pty_for_start(k: &dyn Kernel, ns_mnt: &Path, rootfs: &Path) -> Result<Pty> {
    if !k.single_threaded() {
        return open_pty(k);
    }
    let root = std::cell::Cell::new(-1);
    crate::stage::fs::inside_mount_ns(k, ns_mnt, || {
        root.set(k.openat(
            rootfs,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            0,
            "the container's root, as its mount namespace shows it: its /dev/pts is the container's devpts",
        )?);
        Ok(())
    })?;
    let root = root.get();
    let pty = open_pty_in(k, Some(root));
    let closed = k.close(root);
    let pty = pty?;
    if let Err(e) = closed {
        close(k, pty);
        return Err(e.into());
    }
    Ok(pty)
}

/// Resolve inside the container's root, follow no symlink.
const IN_ROOT: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_SYMLINKS;

/// Open a new pty pair, sized like our terminal (or 80x24). With `root` (an fd of the
/// container's root directory, from any mount namespace), in the container's own devpts at
/// its /dev/pts: the container then sees its terminal as /dev/pts/N of its own, as with
/// docker, and nothing of the host's /dev/pts. Without it (or if the container has no devpts
/// of its own: made by an older stepctr), in the host's, and the container gets a bind mount
/// of the slave.
pub fn open_pty_in(k: &dyn Kernel, root: Option<i32>) -> Result<Pty> {
    if let Some(root) = root {
        match k.openat2(
            root,
            Path::new("dev/pts/ptmx"),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            0,
            IN_ROOT,
            "a new pseudo-terminal in the container's own devpts: we hold its master end, the container gets the other",
        ) {
            Ok(master) => return pty_pair(k, master, Some(root)),
            Err(e) if e.errno == crate::kernel::Errno::ENOENT => {}
            Err(e) => return Err(e.into()),
        }
    }
    let master = k.openat(
        Path::new("/dev/ptmx"),
        libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        0,
        "a new pseudo-terminal: we hold its master end, the container gets the other",
    )?;
    pty_pair(k, master, None)
}

/// The rest of a pty pair whose master is open: unlock, number, slave, size.
fn pty_pair(k: &dyn Kernel, master: i32, root: Option<i32>) -> Result<Pty> {
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
        if let Some(root) = root {
            let slave = k.openat2(
                root,
                &PathBuf::from(format!("dev/pts/{n}")),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
                0,
                IN_ROOT,
                "open the slave, in the container's devpts; the container inherits it",
            )?;
            let (rows, cols) = host::window_size(0).unwrap_or(DEFAULT_SIZE);
            if let Err(e) = k.tty(
                master,
                TtyOp::SetWinsize { rows, cols },
                "the terminal's size, as our own (programs ask it with TIOCGWINSZ)",
            ) {
                let _ = k.close(slave);
                return Err(e.into());
            }
            return Ok(slave);
        }
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

/// In the container's process, inside its root, before it switches user: make the slave the
/// controlling terminal and stdin, stdout and stderr. A slave of the host's devpts is first
/// shown at /dev/pts/N (a bind mount of the open fd, so `tty` finds its name); one of the
/// container's own devpts is there already.
pub fn take_terminal(k: &dyn Kernel, pty: Pty) -> Result<()> {
    if pty.tree >= 0 {
        show_host_pty(k, pty)?;
    }
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

/// A pty of the host's devpts: bind it at /dev/pts/N inside, so `tty` finds its name.
fn show_host_pty(k: &dyn Kernel, pty: Pty) -> Result<()> {
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
    Ok(())
}

/// stepctr's side once the container runs: close our slave, raw mode on our terminal, copy
/// bytes (stdin only with `-i`) until the container has ended; then close the master and put
/// our terminal back. `tick` runs after every wake-up (signals to forward).
pub fn attach(k: &dyn Kernel, pty: Pty, interactive: bool, tick: &mut dyn FnMut()) -> Result<()> {
    // Failing to close these only keeps the terminal open longer: never give up the relay
    // over it (the container would wait for input nobody sends).
    if pty.tree >= 0 {
        let _ = k.close(pty.tree);
    }
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
    host::relay(pty.master, interactive.then_some(0), false, &mut tick);
    drop(terminal_signals);
    drop(raw);
    crate::kernel::forget_not_for_children(pty.master);
    k.close(pty.master)?;
    Ok(())
}

/// Close both ends (an error before the container ran).
pub fn close(k: &dyn Kernel, pty: Pty) {
    crate::kernel::forget_not_for_children(pty.master);
    if pty.tree >= 0 {
        let _ = k.close(pty.tree);
    }
    let _ = k.close(pty.slave);
    let _ = k.close(pty.master);
}

/// The unix socket of a detached container with a terminal (`run -dit`), in its state
/// directory: its shim listens there and hands the pty's master to `stepctr attach`.
pub const ATTACH_SOCKET: &str = "attach.sock";

/// The detached shim's side of `-dit`: until PID 1 has ended (`ended` says so), copy what
/// the container writes on its terminal into `log` while nobody is attached, and serve
/// `stepctr attach` on `socket`: hand the first client the master (sendmsg, SCM_RIGHTS) and
/// stop reading it until that client's connection closes; a second client at the same time
/// is closed at once (it says so). `tick` runs after every wake-up (signals to forward).
pub fn serve_detached(
    k: &dyn Kernel,
    master: i32,
    log: i32,
    socket: i32,
    ended: &mut dyn FnMut() -> bool,
) {
    use host::DrainEvent;
    let mut client: Option<i32> = None;
    let mut open = true; // the pty's other side is still open somewhere
    loop {
        if ended() {
            break;
        }
        let drain = (client.is_none() && open).then_some(master);
        let mut wake = vec![socket];
        wake.extend(client);
        match host::drain_once(drain, log, &wake, 200) {
            DrainEvent::Nothing => {}
            DrainEvent::Closed => open = false,
            DrainEvent::Ready(fd) if fd == socket => {
                let Ok(conn) = k.accept4(socket, "someone runs `stepctr attach`") else {
                    continue;
                };
                if client.is_some() {
                    let _ = k.close(conn);
                    continue;
                }
                match k.send_fd(
                    conn,
                    master,
                    "hand the terminal's master to `stepctr attach` (SCM_RIGHTS): it reads and writes it until it detaches",
                ) {
                    Ok(()) => client = Some(conn),
                    Err(_) => {
                        let _ = k.close(conn);
                    }
                }
            }
            DrainEvent::Ready(fd) => {
                if !host::still_open(fd) {
                    let _ = k.close(fd);
                    client = None;
                }
            }
        }
    }
    // What PID 1 wrote last, if nobody is attached to read it.
    if client.is_none() && open {
        while host::drain_once(Some(master), log, &[], 0) == DrainEvent::Nothing
            && host::has_input(master)
        {}
    }
}

/// How `stepctr attach` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// Ctrl-P Ctrl-Q: the container keeps running.
    Detached,
    /// The container's terminal closed: PID 1 has ended.
    Ended,
}

/// `stepctr attach`: connect to the shim's socket, receive the terminal's master and relay
/// between our terminal and it (raw mode when stdin is a terminal, our window size, SIGWINCH)
/// until Ctrl-P Ctrl-Q or the end of the container.
pub fn attach_client(k: &dyn Kernel, socket_path: &Path, name: &str) -> Result<Attached> {
    let sock = k.unix_socket("a unix socket, to reach the container's shim")?;
    let master = (|| -> Result<i32> {
        k.connect_unix(
            sock,
            socket_path,
            "the shim listens here: it holds the container's terminal",
        )?;
        match k.recv_fd(
            sock,
            "the shim hands us the terminal's master (SCM_RIGHTS): it stops reading it while we are here",
        )? {
            Some(fd) => Ok(fd),
            None => anyhow::bail!(
                "{name} already has a client attached (one at a time): detach it first with Ctrl-P Ctrl-Q"
            ),
        }
    })();
    let master = match master {
        Ok(m) => m,
        Err(e) => {
            let _ = k.close(sock);
            return Err(e);
        }
    };
    k.note(&format!(
        "attached to {name}: Ctrl-P Ctrl-Q detaches (the container keeps running)"
    ));
    let raw = host::RawMode::enter(0);
    if let Some((rows, cols)) = host::window_size(0) {
        let _ = k.tty(
            master,
            TtyOp::SetWinsize { rows, cols },
            "the terminal's size, as our own (programs ask it with TIOCGWINSZ)",
        );
    }
    host::watch_resize();
    let mut tick = || {
        if host::resized() {
            if let Some((rows, cols)) = host::window_size(0) {
                let _ = k.tty(
                    master,
                    TtyOp::SetWinsize { rows, cols },
                    "our terminal changed size (SIGWINCH): so does the container's, which sends SIGWINCH to its foreground group",
                );
            }
        }
    };
    let how = host::relay(master, Some(0), true, &mut tick);
    drop(raw);
    let _ = k.close(master);
    // Closing the connection tells the shim to read the terminal again.
    let _ = k.close(sock);
    Ok(match how {
        host::Relayed::Detached => Attached::Detached,
        host::Relayed::Ended => Attached::Ended,
    })
}
