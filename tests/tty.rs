//! `-it`: a real pseudo-terminal. Each test plays the user's terminal: it opens a pty pair,
//! starts stepctr on the slave (as its controlling terminal, like a shell would), types into
//! the master and reads what comes back.

mod common;
#[path = "common/pty.rs"]
mod pty;

use common::{assert_no_leaks_with, unique, Env};
use pty::Term;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const IMAGE: &str = "localhost/stepctr-busybox:latest";

fn main() {
    common::run_tests(
        tests![
            tty_is_a_pty_with_our_size,
            ctrl_c_interrupts_the_foreground_only,
            exit_code_and_terminal_restored,
            ctrl_c_with_t_but_no_i_is_forwarded,
            exec_it_gets_a_tty,
            tty_without_a_terminal,
            detached_tty_and_attach,
            narration_stays_out_of_the_container,
        ],
        true,
    );
}

/// Wait for `child` at most 20 s; its exit code.
fn wait(child: &mut Child) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return st.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("stepctr did not end");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `stepctr run --rm -it --name NAME IMAGE sh` on a fresh terminal; the shell's prompt seen.
fn shell(env: &Env, term: &mut Term, name: &str) -> Child {
    let child = term.spawn(env.cmd(&["run", "--rm", "-it", "--name", name, IMAGE, "sh"]));
    term.type_(b"echo READY$((6*7))\r");
    term.expect("READY42");
    child
}

fn tty_is_a_pty_with_our_size() {
    let env = Env::new();
    let name = unique("tty");
    let mut term = Term::new(33, 101);
    let mut child = shell(&env, &mut term, &name);
    term.type_(b"tty; stty size; echo T$((1+1))\r");
    let out = term.expect("T2");
    assert!(out.contains("/dev/pts/"), "tty: {out:?}");
    assert!(out.contains("33 101"), "stty size: {out:?}");
    // A new size of the user's terminal reaches the container (SIGWINCH → TIOCSWINSZ).
    let ws = libc::winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ on our own master; the kernel sends SIGWINCH to stepctr's group.
    unsafe { libc::ioctl(term.master, libc::TIOCSWINSZ, &ws) };
    std::thread::sleep(Duration::from_millis(500));
    term.type_(b"stty size; echo S$((2+1))\r");
    let out = term.expect("S3");
    assert!(out.contains("40 120"), "stty size after resize: {out:?}");
    term.type_(b"exit\r");
    assert_eq!(wait(&mut child), 0);
    assert_no_leaks_with(&env, &name, &[]);
}

fn ctrl_c_interrupts_the_foreground_only() {
    let env = Env::new();
    let name = unique("tty");
    let mut term = Term::new(24, 80);
    let mut child = shell(&env, &mut term, &name);
    let started = Instant::now();
    term.type_(b"sleep 100\r");
    std::thread::sleep(Duration::from_millis(700));
    term.type_(&[0x03]);
    term.type_(b"echo ALIVE$((3*3)) $?\r");
    let out = term.expect("ALIVE9");
    assert!(started.elapsed() < Duration::from_secs(30), "{out:?}");
    let out = term.expect("\n");
    assert!(
        out.contains("130"),
        "sleep was interrupted by SIGINT: {out:?}"
    );
    term.type_(b"exit 0\r");
    assert_eq!(wait(&mut child), 0);
    assert_no_leaks_with(&env, &name, &[]);
}

fn exit_code_and_terminal_restored() {
    let env = Env::new();
    let name = unique("tty");
    let mut term = Term::new(24, 80);
    let before = term.settings();
    let mut child = shell(&env, &mut term, &name);
    assert_ne!(term.settings(), before, "raw mode while attached");
    term.type_(b"exit 3\r");
    assert_eq!(wait(&mut child), 3);
    assert_eq!(
        term.settings(),
        before,
        "the terminal is put back as it was"
    );
    assert_no_leaks_with(&env, &name, &[]);
}

/// `run -t` (and `all -t`) without `-i`, as `docker run -t`: stdin is not attached and our
/// terminal stays as it is (no raw mode), so Ctrl-C is our terminal's SIGINT to stepctr, which
/// passes it on to PID 1 (the container sits on a terminal of its own, outside our process
/// group). The markers are computed by the shell, so `all`'s narration of the command line
/// (on the same terminal) cannot match them.
fn ctrl_c_with_t_but_no_i_is_forwarded() {
    let script =
        "trap 'echo GOT$((2+3)); exit 5' INT; echo READY$((6*7)); while :; do sleep 1; done";
    for how in ["run", "all"] {
        let env = Env::new();
        let name = unique("tty");
        let mut term = Term::new(24, 80);
        let before = term.settings();
        let args: Vec<&str> = match how {
            "run" => vec![
                "run", "--rm", "-t", "--name", &name, IMAGE, "sh", "-c", script,
            ],
            _ => vec![
                "all", "--rm", "-t", "--name", &name, "--", "sh", "-c", script,
            ],
        };
        let mut child = term.spawn(env.cmd(&args));
        term.expect("READY42");
        assert_eq!(term.settings(), before, "{how}: no raw mode without -i");
        term.type_(&[0x03]);
        term.expect("GOT5");
        assert_eq!(
            wait(&mut child),
            5,
            "{how}: stepctr exits with PID 1's code"
        );
        assert_eq!(
            term.settings(),
            before,
            "{how}: the terminal's settings are unchanged"
        );
        assert_no_leaks_with(&env, &name, &[]);
    }
}

fn exec_it_gets_a_tty() {
    let env = Env::new();
    let name = unique("ttyx");
    env.ok(&["run", "-d", "--name", &name, IMAGE, "sleep", "100"]);
    let mut term = Term::new(30, 90);
    let mut child = term.spawn(env.cmd(&["exec", "-it", &name, "sh"]));
    term.type_(b"tty; stty size; hostname; echo E$((4+4))\r");
    let out = term.expect("E8");
    assert!(out.contains("/dev/pts/"), "tty: {out:?}");
    assert!(out.contains("30 90"), "stty size: {out:?}");
    assert!(out.contains(&name), "hostname: {out:?}");
    term.type_(b"exit 5\r");
    assert_eq!(wait(&mut child), 5);
    env.ok(&["-q", "rm", "-f", &name]);
    assert_no_leaks_with(&env, &name, &[]);
}

fn tty_without_a_terminal() {
    let env = Env::new();
    let name = unique("tty");
    let out = env
        .cmd(&[
            "run",
            "--rm",
            "-t",
            "--name",
            &name,
            IMAGE,
            "sh",
            "-c",
            "tty; stty size; exit 4",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert!(
        text.contains("24 80\r\n"),
        "default size, and the pty's \\r\\n: {text:?}"
    );
    assert_no_leaks_with(&env, &name, &[]);
}

/// `run -dit` then `stepctr attach`, as `docker run -dit` and `docker attach`: the shim keeps
/// the terminal and logs what the container writes on it while nobody is attached; `attach`
/// gets the terminal, Ctrl-P Ctrl-Q lets go of it (the container keeps running), and a second
/// `attach` at the same time is refused; `exit 3` ends the container and `attach` with it.
fn detached_tty_and_attach() {
    let env = Env::new();
    let name = unique("ttyd");
    env.ok(&["-q", "run", "-dit", "--name", &name, IMAGE, "sh"]);
    let sock = env.container_dir(&name).join("attach.sock");
    {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let meta = std::fs::metadata(&sock).expect("attach.sock");
        assert!(meta.file_type().is_socket());
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "root alone may attach"
        );
    }
    // Attach: the container's shell, on its terminal.
    let mut term = Term::new(27, 91);
    let mut child = term.spawn(env.cmd(&["attach", &name]));
    term.type_(b"echo hi; tty; stty size; echo A$((1+1))\r");
    let out = term.expect("A2");
    assert!(out.contains("hi"), "{out:?}");
    assert!(out.contains("/dev/pts/"), "tty: {out:?}");
    assert!(out.contains("27 91"), "our window size: {out:?}");
    // One client at a time.
    let second = env.run(&["-q", "attach", &name]);
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("already has a client attached"), "{err}");
    // Ctrl-P Ctrl-Q: detached, the container runs on.
    term.type_(&[0x10, 0x11]);
    assert_eq!(wait(&mut child), 0);
    let text = |args: &[&str]| String::from_utf8_lossy(&env.ok(args).stdout).into_owned();
    let ps = text(&["ps"]);
    let line = ps
        .lines()
        .find(|l| l.starts_with(name.as_str()))
        .unwrap_or("");
    assert!(line.contains("running"), "{ps}");
    // Output written while nobody is attached goes to the log.
    let mut term2 = Term::new(24, 80);
    let mut child = term2.spawn(env.cmd(&["attach", &name]));
    // Attached (our terminal in raw mode) before the keys are typed.
    term2.type_(b"echo C$((1+2))\r");
    term2.expect("C3");
    term2.type_(b"(sleep 1; echo LOGGED$((5*5))) &\r");
    term2.type_(&[0x10, 0x11]);
    assert_eq!(wait(&mut child), 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !text(&["logs", &name]).contains("LOGGED25") {
        assert!(Instant::now() < deadline, "{}", text(&["logs", &name]));
        std::thread::sleep(Duration::from_millis(100));
    }
    // Attach again, and end the container.
    let mut term3 = Term::new(24, 80);
    let mut child = term3.spawn(env.cmd(&["attach", &name]));
    term3.type_(b"echo B$((2+2))\r");
    term3.expect("B4");
    term3.type_(b"exit 3\r");
    assert_eq!(wait(&mut child), 3, "attach ends with PID 1's exit code");
    assert!(
        !sock.exists(),
        "the shim removes its socket when PID 1 has ended"
    );
    let out = env.run(&["-q", "attach", &name]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));
    env.ok(&["-q", "rm", "-f", &name]);
    assert_no_leaks_with(&env, &name, &[]);
}

/// The narration of PID 1 after it has put its terminal or its log on stderr still goes to
/// stepctr's stderr: never into the container's terminal (where, with nobody reading it before
/// PID 1 runs, `-v run -dt` once blocked on a full terminal buffer) nor into its log.
fn narration_stays_out_of_the_container() {
    let env = Env::new();
    let (t, d) = (common::unique("narr-t"), common::unique("narr-d"));
    let mut child = env
        .cmd(&[
            "-v",
            "run",
            "-dt",
            "--name",
            &t,
            "localhost/stepctr-busybox",
            "sleep",
            "100",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run -dt");
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut pipe, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = env.run(&["rm", "-f", &t]);
            panic!("`-v run -dt` did not return in 20 s (its PID 1 blocked on narration?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(child.wait().unwrap().success());
    let err = reader.join().unwrap();
    assert!(
        err.contains("inside] execve(") || err.contains("inside] close_range("),
        "{err}"
    );
    let out = env.ok(&[
        "-v",
        "run",
        "-d",
        "--name",
        &d,
        "localhost/stepctr-busybox",
        "sh",
        "-c",
        "echo out",
    ]);
    let err = common::stderr(&out);
    assert!(err.contains("dup3("), "{err}");
    let mut logs = String::new();
    for _ in 0..100 {
        logs = common::stdout(&env.ok(&["logs", &d]));
        if !logs.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(logs, "out\n", "the log holds the container's output only");
    env.ok(&["rm", "-f", &t, &d]);
    common::assert_no_leaks(&env, &t);
    common::assert_no_leaks(&env, &d);
}
