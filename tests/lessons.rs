//! `stepctr lesson` (issue 7, begun): the lessons are listed, and a lesson runs end to end
//! non-interactively (`--yes`, as in CI): its steps for real, every check of what they did
//! passing, and nothing of it left behind.

mod common;

use common::{assert_no_leaks, stderr, stdout, Env};
use std::process::Stdio;

fn main() {
    common::run_tests(
        tests![
            lessons_are_listed,
            every_lesson_runs_end_to_end,
            a_lesson_without_a_task_says_so
        ],
        true,
    );
}

fn lessons_are_listed() {
    let env = Env::new();
    let out = env.ok(&["lesson"]);
    assert!(
        stdout(&out).contains(" 9  How `docker run` creates a container"),
        "{}",
        stdout(&out)
    );
}

/// Every lesson, run as CI runs it (`--yes`, stdin not a terminal): exit 0, every check passed,
/// and nothing of its containers left.
fn every_lesson_runs_end_to_end() {
    for (n, file, _) in stepctr::lesson::run::LESSONS {
        let env = Env::new();
        let child = env
            .cmd(&["lesson", &n.to_string(), "--yes"])
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
        assert!(!text.contains('✘'), "lesson {n}: {text}");
        assert_no_leaks(&env, &name);
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
        stderr(&out).contains("no lesson 42: the lessons are 9"),
        "{}",
        stderr(&out)
    );
}
