//! Bad input: one clear error line naming what to do, a non-zero exit, no panic, and nothing
//! half-written left behind.

mod common;

use common::{stderr, unique, Env};
use std::process::Output;

/// The error is exactly one line (with -q), starts with `stepctr: error:`, and the exit is non-zero.
fn one_error_line(out: &Output) -> String {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure, got {:?}",
        out.status
    );
    assert!(!err.contains("panicked"), "panic: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line, got:\n{err}");
    assert!(lines[0].starts_with("stepctr: error: "), "{err}");
    lines[0].to_string()
}

fn unknown_container_names_the_command_that_creates_one() {
    let env = Env::new();
    for stage in ["cgroup", "ns", "fs", "start", "rm"] {
        let out = env.run(&["-q", stage, "nosuch"]);
        let line = one_error_line(&out);
        assert!(
            line.contains("no container named nosuch") && line.contains("stepctr load nosuch"),
            "{line}"
        );
        assert_eq!(out.status.code(), Some(1));
    }
}

fn a_stage_before_the_one_it_needs_names_the_command_to_run_first() {
    let env = Env::new();
    let name = unique("order");
    env.ok(&["-q", "load", &name]);
    let before = std::fs::read(env.container_dir(&name).join("state.json")).unwrap();
    for (stage, needs) in [("ns", "cgroup"), ("fs", "cgroup"), ("start", "cgroup")] {
        let line = one_error_line(&env.run(&["-q", stage, &name]));
        let first = format!("run `stepctr {needs} {name}`");
        assert!(line.contains(&first), "{stage}: {line}");
    }
    env.ok(&["-q", "cgroup", &name]);
    let line = one_error_line(&env.run(&["-q", "fs", &name]));
    assert!(line.contains(&format!("run `stepctr ns {name}`")), "{line}");
    // Repeating a stage is refused too.
    let line = one_error_line(&env.run(&["-q", "cgroup", &name]));
    assert!(line.contains("already done stage `cgroup`"), "{line}");
    // The refused commands changed nothing.
    let after: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.container_dir(&name).join("state.json")).unwrap(),
    )
    .unwrap();
    let before: serde_json::Value = serde_json::from_slice(&before).unwrap();
    assert_eq!(after["stages"], serde_json::json!(["load", "cgroup"]));
    assert_eq!(before["stages"], serde_json::json!(["load"]));
    env.rm_and_check(&name);
}

fn a_missing_image_is_reported_and_nothing_is_created() {
    let env = Env::new();
    let name = unique("noimg");
    let line = one_error_line(&env.run(&["-q", "load", &name, "nosuch"]));
    assert!(
        line.contains("docker.io/library/nosuch:latest is not in the store")
            && line.contains("stepctr pull docker.io/library/nosuch:latest"),
        "{line}"
    );
    assert!(!env.container_dir(&name).exists(), "no half-made container");
    // A registry that is not there (port 1 on loopback: nothing listens, nothing leaves the
    // machine): one line, and no container.
    let line = one_error_line(&env.run(&["-q", "all", "--name", &name, "127.0.0.1:1/nosuch"]));
    assert!(line.contains("127.0.0.1:1"), "{line}");
    assert!(!env.container_dir(&name).exists());
    let line = one_error_line(&env.run(&["-q", "pull", "oci:/nonexistent/dir"]));
    assert!(line.contains("/nonexistent/dir"), "{line}");
}

fn a_command_that_does_not_exist_in_the_image_fails_cleanly() {
    let env = Env::new();
    let name = unique("noexec");
    let out = env.run(&[
        "-q",
        "all",
        "--rm",
        "--name",
        &name,
        "--",
        "no-such-program",
    ]);
    let line = one_error_line(&out);
    assert!(
        line.contains("no-such-program: executable file not found"),
        "{line}"
    );
    common::assert_no_leaks(&env, &name);
}

fn bad_names_and_limits_are_refused() {
    let env = Env::new();
    let line = one_error_line(&env.run(&["-q", "load", "../escape"]));
    assert!(line.contains("invalid container name"), "{line}");
    let name = unique("limits");
    env.ok(&["-q", "load", &name]);
    let line = one_error_line(&env.run(&["-q", "cgroup", &name, "--memory", "lots"]));
    assert!(line.contains("invalid size \"lots\""), "{line}");
    let line = one_error_line(&env.run(&["-q", "cgroup", &name, "--pids-limit", "0"]));
    assert!(line.contains("--pids-limit"), "{line}");
    env.rm_and_check(&name);
    // Usage errors are clap's: exit code 2.
    let out = env.run(&["no-such-subcommand"]);
    assert_eq!(out.status.code(), Some(2));
}

fn a_duplicate_name_is_refused_without_touching_the_existing_container() {
    let env = Env::new();
    let name = unique("dup");
    env.ok(&["-q", "load", &name]);
    let line = one_error_line(&env.run(&["-q", "load", &name]));
    assert!(
        line.contains(&format!("a container named {name} already exists")),
        "{line}"
    );
    assert!(env.container_dir(&name).join("state.json").exists());
    env.rm_and_check(&name);
}

/// A user who is not root runs rootless (tests/rootless.rs); pointed at root's directories, they
/// get one clear line naming what they may not write.
fn not_root_in_roots_directories_is_a_clear_error() {
    let env = Env::new();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(common::stepctr_bin())
        .args(["-q", "all"])
        .env("STEPCTR_ROOT", &env.root)
        .env("STEPCTR_RUN", &env.run)
        .output()
        .expect("setpriv (util-linux)");
    let line = one_error_line(&out);
    assert!(
        line.contains("Permission denied") && line.contains(&*env.run.to_string_lossy()),
        "{line}"
    );
}

fn main() {
    common::run_tests(
        tests![
            unknown_container_names_the_command_that_creates_one,
            a_stage_before_the_one_it_needs_names_the_command_to_run_first,
            a_missing_image_is_reported_and_nothing_is_created,
            a_command_that_does_not_exist_in_the_image_fails_cleanly,
            bad_names_and_limits_are_refused,
            a_duplicate_name_is_refused_without_touching_the_existing_container,
            not_root_in_roots_directories_is_a_clear_error,
        ],
        true,
    );
}
