//! `--pace step` (issue 7): before every kernel call stepctr shows the call on the terminal and
//! waits for Enter; nothing happens until it is pressed. Without a terminal it runs straight
//! through, and says so once. `lesson N --pace step` pauses inside the lesson's steps.

mod common;
#[path = "common/pty.rs"]
mod pty;

use common::{assert_no_leaks, cgroup_dirs_named, stderr, unique, Env};
use std::os::unix::process::CommandExt;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

fn main() {
    common::run_tests(
        tests![
            step_pauses_before_every_call,
            q_stops_before_the_call,
            without_a_terminal_it_runs_straight_through,
            a_lesson_pauses_inside_its_steps
        ],
        true,
    );
}

const PROMPT: &str = "  [Enter] ";

/// Read the terminal until `child` has ended, pressing Enter at every pause. The whole
/// transcript, how many pauses were answered, and how the child ended.
fn answer_every_pause(term: &mut pty::Term, child: &mut Child) -> (String, usize, ExitStatus) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut scanned = 0;
    let mut pauses = 0;
    let mut ended: Option<(ExitStatus, Instant)> = None;
    loop {
        while let Some(at) = pty::find(&term.seen[scanned..], PROMPT.as_bytes()) {
            scanned += at + PROMPT.len();
            term.type_(b"\r");
            pauses += 1;
        }
        if ended.is_none() {
            ended = child
                .try_wait()
                .expect("wait")
                .map(|st| (st, Instant::now()));
        }
        // After the end, whatever was still in the terminal's buffer.
        if let Some((st, at)) = ended {
            if at.elapsed() > Duration::from_millis(300) {
                let text = String::from_utf8_lossy(&term.seen).into_owned();
                return (text, pauses, st);
            }
        }
        assert!(
            Instant::now() < deadline,
            "stepctr did not end; the terminal shows {:?}",
            String::from_utf8_lossy(&term.seen)
        );
        read_some(term, 50);
    }
}

fn read_some(term: &mut pty::Term, ms: i32) {
    let mut p = libc::pollfd {
        fd: term.master,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll and read on the test's own pty master and buffer.
    unsafe {
        if libc::poll(&mut p, 1, ms) > 0 {
            let mut buf = [0u8; 4096];
            let n = libc::read(term.master, buf.as_mut_ptr().cast(), buf.len());
            if n > 0 {
                term.seen.extend_from_slice(&buf[..n as usize]);
            }
        }
    }
}

/// The calls of the transcript's pauses (`[pid N] name`), and of its narrated lines.
fn pauses_and_calls(text: &str) -> (Vec<String>, Vec<String>) {
    let call = regex::Regex::new(r"^(\[pid [^\]]*\] )?([a-z_0-9]+)\(.*\) = .*<\d+\.\d+>").unwrap();
    let paused = regex::Regex::new(r"^(\[pid [^\]]*\] )?next: ([a-z_0-9]+)\(").unwrap();
    let (mut p, mut c) = (Vec::new(), Vec::new());
    for line in text.split(['\r', '\n']) {
        if let Some(m) = paused.captures(line) {
            p.push(format!("{}{}", m.get(1).map_or("", |x| x.as_str()), &m[2]));
        } else if let Some(m) = call.captures(line) {
            c.push(format!("{}{}", m.get(1).map_or("", |x| x.as_str()), &m[2]));
        }
    }
    (p, c)
}

/// The cgroup stage at a terminal: the first call is shown and waits (the cgroup does not
/// exist yet, nothing is narrated as done); then one pause per narrated call, in order.
fn step_pauses_before_every_call() {
    let env = Env::new();
    let name = unique("pace");
    env.ok(&["-q", "load", &name]);
    let mut term = pty::Term::new(50, 250);
    let mut child = term.spawn(env.cmd(&["--pace", "step", "cgroup", &name, "--pids-limit", "16"]));
    let first = term.expect(PROMPT);
    assert!(first.contains("next: "), "{first:?}");
    // Nobody pressed Enter: nothing happens.
    std::thread::sleep(Duration::from_millis(500));
    read_some(&mut term, 50);
    assert!(
        child.try_wait().expect("wait").is_none(),
        "stepctr went on without Enter"
    );
    assert!(
        cgroup_dirs_named(&name).is_empty(),
        "the cgroup was made before Enter"
    );
    let (_, done) = pauses_and_calls(&String::from_utf8_lossy(&term.seen));
    assert!(done.is_empty(), "narrated before Enter: {done:?}");
    // Enter for the first pause, then for every other.
    term.type_(b"\r");
    let (rest, pauses, status) = answer_every_pause(&mut term, &mut child);
    let text = format!("{first}{rest}");
    assert!(status.success(), "{text}");
    assert!(!cgroup_dirs_named(&name).is_empty(), "{text}");
    let (paused, calls) = pauses_and_calls(&text);
    assert_eq!(pauses + 1, paused.len(), "{text}");
    assert!(calls.len() >= 3, "{text}");
    assert_eq!(
        paused, calls,
        "a pause for each narrated call, in order:\n{text}"
    );
    assert!(!text.contains("no terminal"), "{text}");
    env.ok(&["-q", "rm", &name]);
    assert_no_leaks(&env, &name);
}

/// `q` and Enter at a pause: stepctr stops before that call, says so, and `rm` removes what
/// was made before it.
fn q_stops_before_the_call() {
    let env = Env::new();
    let name = unique("paceq");
    env.ok(&["-q", "load", &name]);
    let mut term = pty::Term::new(50, 250);
    let mut child = term.spawn(env.cmd(&["--pace", "step", "cgroup", &name, "--pids-limit", "16"]));
    // Three calls made, the fourth refused.
    for _ in 0..3 {
        term.expect(PROMPT);
        term.type_(b"\r");
    }
    term.expect(PROMPT);
    term.type_(b"q\r");
    let mut after = term.expect("stopped before this call (q)");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        assert!(Instant::now() < deadline, "stepctr did not stop at q");
        read_some(&mut term, 50);
    };
    read_some(&mut term, 100);
    after.push_str(&String::from_utf8_lossy(&term.seen));
    assert_eq!(status.code(), Some(1), "{after}");
    let (_, calls) = pauses_and_calls(&after);
    assert!(calls.is_empty(), "a call was made after q: {after}");
    env.ok(&["-q", "rm", &name]);
    assert_no_leaks(&env, &name);
}

/// No controlling terminal (setsid, pipes): no pause, one note, the same calls as without
/// --pace.
fn without_a_terminal_it_runs_straight_through() {
    let env = Env::new();
    let run = |pace: bool| {
        let name = unique("pace");
        env.ok(&["-q", "load", &name]);
        let mut args = vec!["cgroup", &name, "--pids-limit", "16"];
        if pace {
            args.splice(0..0, ["--pace", "step"]);
        }
        let mut cmd = env.cmd(&args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let out = cmd.output().expect("run stepctr");
        let text = stderr(&out);
        assert!(out.status.success(), "{text}");
        env.ok(&["-q", "rm", &name]);
        assert_no_leaks(&env, &name);
        (name, text)
    };
    let (paced_name, paced) = run(true);
    let (plain_name, plain) = run(false);
    assert_eq!(
        paced
            .matches("--pace step: no terminal to pause on")
            .count(),
        1,
        "{paced}"
    );
    assert!(!paced.contains(PROMPT), "{paced}");
    assert!(!plain.contains("--pace"), "{plain}");
    // The calls on the container's own cgroups (whether the parent `stepctr` cgroups had to
    // be made depends on other containers), the name left out.
    let own = |t: &str, name: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.contains(name) && !l.starts_with('#'))
            .map(|l| l.split(" = ").next().unwrap_or("").replace(name, "NAME"))
            .collect()
    };
    let (paced_calls, plain_calls) = (own(&paced, &paced_name), own(&plain, &plain_name));
    assert!(paced_calls.len() >= 3, "{paced}");
    assert_eq!(paced_calls, plain_calls);
}

/// `lesson 9 --pace step` at a terminal: the step's `stepctr all` (its narration in a trace
/// file) pauses on the terminal; every check passes.
fn a_lesson_pauses_inside_its_steps() {
    let env = Env::new();
    let mut term = pty::Term::new(50, 250);
    let mut child = term.spawn(env.cmd(&["lesson", "9", "--yes", "--pace", "step"]));
    let name = format!("lesson9-{}", child.id());
    let (text, pauses, status) = answer_every_pause(&mut term, &mut child);
    assert!(status.success(), "{text}");
    assert!(text.contains("== lesson 9: every check passed"), "{text}");
    assert!(pauses > 20, "only {pauses} pauses:\n{text}");
    eprintln!("lesson 9: {pauses} pauses");
    assert!(text.contains("next: unshare("), "{text}");
    assert_no_leaks(&env, &name);
}
