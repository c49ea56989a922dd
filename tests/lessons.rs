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
            lesson_9_runs_end_to_end,
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

fn lesson_9_runs_end_to_end() {
    let env = Env::new();
    let child = env
        .cmd(&["lesson", "9", "--yes"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run stepctr lesson");
    // The lesson names its container after its own pid.
    let name = format!("lesson9-{}", child.id());
    let out = child.wait_with_output().expect("wait");
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("== lesson 9: every check passed"), "{text}");
    assert!(!text.contains('✘'), "{text}");
    assert!(
        text.contains(&format!("✔ the output says \"{name}\"")),
        "{text}"
    );
    assert!(text.contains("answer: containerd-shim-runc-v2."), "{text}");
    assert!(!std::path::Path::new(&format!("/tmp/{name}.trace")).exists());
    assert_no_leaks(&env, &name);
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
