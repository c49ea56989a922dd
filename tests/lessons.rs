//! `stepctr lesson` (issue 7, begun): the lessons are listed, and a lesson runs end to end
//! non-interactively (`--yes`, as in CI): its steps for real, every check of what they did
//! passing, and nothing of it left behind.

mod common;
#[path = "common/pty.rs"]
mod pty;

use common::{assert_no_leaks, stderr, stdout, Env};
use std::process::Stdio;

fn main() {
    common::run_tests(
        tests![
            lessons_are_listed,
            every_lesson_runs_end_to_end,
            a_lesson_is_driven_at_a_terminal,
            progress_is_kept_and_exported,
            lesson_check_grades_the_learners_attempt,
            a_lesson_without_a_task_says_so
        ],
        true,
    );
}

fn lessons_are_listed() {
    let env = Env::new();
    let out = env.ok(&["lesson"]);
    assert!(
        stdout(&out).contains("  How `docker run` creates a container: the six steps with `stepctr all`  (09-docker-run.md)"),
        "{}",
        stdout(&out)
    );
}

/// Every lesson, run as CI runs it (`--yes`, stdin not a terminal): exit 0, every check passed,
/// and nothing of its containers left.
fn every_lesson_runs_end_to_end() {
    for (n, file, _) in stepctr::lesson::run::LESSONS {
        let env = Env::new();
        let mut cmd = env.cmd(&["lesson", &n.to_string(), "--yes"]);
        if *n == 11 {
            // Lesson 11 boots a VM (`demo startup --vm`, step needs=vm_boot): give it a kernel.
            cmd.env("STEPCTR_VM_KERNEL", vm_kernel());
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run stepctr lesson");
        // A lesson names its container `{c}` after its own pid.
        let name = format!("lesson{n}-{}", child.id());
        let out = child.wait_with_output().expect("wait");
        let text = stdout(&out);
        assert!(
            out.status.success(),
            "lesson {n} ({file}):\n{text}\n{}",
            stderr(&out)
        );
        assert!(
            text.contains(&format!("== lesson {n}: every check passed")),
            "lesson {n}: {text}"
        );
        // A failed check is a line starting with ✘ (a step's own output, such as the table of
        // `demo isolation`, may show ✘ inside a line).
        assert!(
            !text.lines().any(|l| l.starts_with('✘')),
            "lesson {n}: {text}"
        );
        assert_no_leaks(&env, &name);
        if *n == 11 {
            assert!(
                text.contains("boot to the first user-space program"),
                "lesson 11 did not boot its VM: {text}"
            );
        }
        if *n == 9 {
            assert!(
                text.contains(&format!("✔ the output says \"{name}\"")),
                "{text}"
            );
            assert!(text.contains("answer: containerd-shim-runc-v2."), "{text}");
            assert!(!std::path::Path::new(&format!("/tmp/{name}.trace")).exists());
        }
    }
}

/// tests/vm/kernel.sh: the path of a kernel image (Debian's, fetched into target/vm-cache when
/// missing) for lesson 11's VM boot.
fn vm_kernel() -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vm/kernel.sh");
    let out = std::process::Command::new(script)
        .output()
        .expect("run tests/vm/kernel.sh");
    assert!(
        out.status.success(),
        "tests/vm/kernel.sh found no kernel: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn a_lesson_without_a_task_says_so() {
    let env = Env::new();
    let out = env.run(&["lesson", "9", "check"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("lesson 9 has no task to check"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["lesson", "42"]);
    assert!(
        stderr(&out).contains("no lesson 42: the lessons are "),
        "{}",
        stderr(&out)
    );
}

/// Read the terminal until one of `needles` shows; which one (the earliest), and consume the
/// output up to it.
fn expect_any(term: &mut pty::Term, needles: &[&str]) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let hit = needles
            .iter()
            .enumerate()
            .filter_map(|(k, n)| pty::find(&term.seen, n.as_bytes()).map(|at| (at, k, n.len())))
            .min();
        if let Some((at, k, len)) = hit {
            term.seen.drain(..at + len);
            return k;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited for one of {needles:?}; the terminal shows {:?}",
            String::from_utf8_lossy(&term.seen)
        );
        let mut p = libc::pollfd {
            fd: term.master,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll and read on the test's own pty master and buffer.
        unsafe {
            if libc::poll(&mut p, 1, 200) > 0 {
                let mut buf = [0u8; 4096];
                let n = libc::read(term.master, buf.as_mut_ptr().cast(), buf.len());
                if n > 0 {
                    term.seen.extend_from_slice(&buf[..n as usize]);
                }
            }
        }
    }
}

/// Lesson 3 at a terminal (a pty), as a student takes it: every step confirmed (Enter: yes),
/// the first quiz answered wrong (the feedback says so, and asks again) then right, the others
/// right, with the arrow keys as dialoguer reads them.
fn a_lesson_is_driven_at_a_terminal() {
    let env = Env::new();
    let mut term = pty::Term::new(50, 160);
    let mut child = term.spawn(env.cmd(&["lesson", "3"]));
    let name = format!("lesson3-{}", child.id());
    // The quizzes, by a piece of their question, and how far down the right answer is.
    let quizzes: [(&str, usize); 4] = [
        ("What keeps them alive?", 1),
        ("Where is the process on the host?", 1),
        ("Which uid does the host see?", 2),
        ("share with the host in every stepctr container?", 2),
    ];
    let mut needles = vec!["run it? [Y/n]", "every check passed", "check(s) failed"];
    needles.extend(quizzes.iter().map(|(q, _)| *q));
    let (mut steps, mut asked, mut wrong_first) = (0, 0, false);
    loop {
        match expect_any(&mut term, &needles) {
            0 => {
                term.type_(b"\r");
                steps += 1;
            }
            1 => break,
            2 => panic!(
                "lesson 3 failed at a terminal: {:?}",
                String::from_utf8_lossy(&term.seen)
            ),
            q => {
                let (_, right) = quizzes[q - 3];
                if q == 3 && !wrong_first {
                    // The first option: wrong.
                    term.type_(b"\r");
                    expect_any(&mut term, &["Try again."]);
                    wrong_first = true;
                    continue;
                }
                term.type_(("\x1b[B".repeat(right) + "\r").as_bytes());
                expect_any(&mut term, &["✔ right."]);
                asked += 1;
            }
        }
    }
    assert!(wrong_first, "the first quiz was never answered wrong");
    assert_eq!(asked, 4, "quizzes answered right");
    assert!(steps >= 10, "only {steps} steps were confirmed");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lesson did not end"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success());
    assert_no_leaks(&env, &name);
}

/// Progress is kept per user (beside the image store) and exported for a teacher; --restart
/// cleans up and forgets it.
fn progress_is_kept_and_exported() {
    let env = Env::fresh();
    env.ok(&["-q", "pull"]);
    let out = env.ok(&["lesson", "9", "--yes"]);
    assert!(stdout(&out).contains("every check passed"));
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&env.ok(&["lesson", "status", "--json"]))).unwrap();
    assert_eq!(json["9"]["finished"], true, "{json}");
    assert_eq!(json["9"]["steps_run"], json["9"]["steps"], "{json}");
    assert!(json["9"]["checks_passed"].as_u64().unwrap() >= 5, "{json}");
    assert!(stdout(&env.ok(&["lesson"]))
        .lines()
        .any(|l| l.starts_with(" 9     ✓")));
    let out = env.ok(&["lesson", "9", "--yes", "--restart"]);
    assert!(stdout(&out).contains("# lesson 9: cleaned up and started over"));
    assert!(env.root.join("lessons.json").is_file());
}

/// `lesson N check` grades what the learner did: a wrong attempt gets the hint of its first
/// failing check, a right one passes.
fn lesson_check_grades_the_learners_attempt() {
    let env = Env::new();
    // Lesson 4's task: a running container `mylimits` with 128M, a quarter CPU, 10 pids.
    let out = env.run(&["lesson", "4", "check"]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("hint: run a detached container named mylimits with --memory 128M"),
        "{}",
        stdout(&out)
    );
    // Wrong: the CPU limit forgotten; the hint is the CPU one.
    let run = |cpus: &[&str]| {
        let mut args = vec![
            "-q",
            "run",
            "-d",
            "--name",
            "mylimits",
            "--memory",
            "128M",
            "--pids-limit",
            "10",
        ];
        args.extend(cpus);
        args.extend(["localhost/stepctr-busybox", "--", "sleep", "600"]);
        env.ok(&args);
    };
    run(&[]);
    let out = env.run(&["lesson", "4", "check"]);
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("hint: a quarter of a CPU is --cpus 0.25"),
        "{text}"
    );
    assert!(!text.contains("hint: run a detached container"), "{text}");
    env.ok(&["-q", "rm", "-f", "mylimits"]);
    // Right.
    run(&["--cpus", "0.25"]);
    let out = env.run(&["lesson", "4", "check"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(!stdout(&out).contains('✘'), "{}", stdout(&out));
    env.ok(&["-q", "rm", "-f", "mylimits"]);
    assert_no_leaks(&env, "mylimits");
}
