//! Issue 8, acceptance 1: every console example of the book runs, and its output is the output the
//! book shows.
//!
//! The examples are the ```console blocks that follow the lesson in the chapter pages
//! (book/src/chNN-*.md, after their `{{#include}}` line): trycmd runs each `$ command` line (split
//! as a shell would, no shell: `$ sh -c '...'` for a pipe) with stdout and stderr together, and
//! compares the output with the lines below it (`[..]` matches part of a line, a line `...` any
//! number of lines; `? 137` expects that exit status). Each page is one case; its commands run in
//! order, as root, against a fresh run directory and a store pulled once, with `stepctr` on PATH
//! and NO_COLOR=1. The store and run directories appear in the book as [STORE] and [RUN].
//! A block written ```console,ignore is shown and not run (book/src/examples-not-run.md lists why).
//! The lessons' own steps are run by tests/lessons.rs.

mod common;

use common::{assert_no_leaks, cgroup_dirs_named, Env};
use std::path::{Path, PathBuf};

fn book_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("book/src")
}

/// The pages whose console examples are run: the chapters.
fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(book_src())
        .expect("read book/src")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("ch") && name.ends_with(".md")
        })
        .collect();
    pages.sort();
    pages
}

/// A copy of `page` in `dir` for trycmd: trycmd 1.2 drops the last newline of an example's
/// expected output (for output without one), while the book shows a command's output as the lines it
/// prints; the copy adds that newline back (a blank line after each non-empty output). Line numbers
/// in a failure are the copy's.
fn prepare(page: &Path, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(page).expect("read page");
    let mut out = String::new();
    // Outside a block, in a block trycmd runs, or in one it skips.
    let (mut in_block, mut skipping, mut in_output) = (false, false, false);
    for line in text.lines() {
        let fence = line.starts_with("```");
        if in_block {
            if in_output && (fence || line.starts_with("$ ")) {
                out.push('\n');
            }
            if let Some(cmd) = line.strip_prefix("$ ") {
                // trycmd skips a command whose program it does not know, silently ("ignored").
                let words = shlex::split(cmd).unwrap_or_default();
                let program = words.iter().find(|w| !w.contains('=')).cloned();
                let program = program.unwrap_or_default();
                assert!(
                    program == "stepctr" || HOST_TOOLS.contains(&program.as_str()),
                    "{}: `{program}` is not a program the test registers (add it to HOST_TOOLS): {line}",
                    page.display()
                );
            }
            in_output = !(fence
                || line.starts_with("$ ")
                || line.starts_with("> ")
                || line.starts_with("? "));
            in_block = !fence;
        } else if skipping {
            skipping = !fence;
        } else if let Some(info) = line.strip_prefix("```") {
            let mut words = info.trim().split(',');
            let runs = matches!(words.next(), Some("console" | "trycmd" | ""))
                && !words.any(|w| w == "ignore");
            (in_block, skipping, in_output) = (runs, !runs, false);
        }
        out.push_str(line);
        out.push('\n');
    }
    let copy = dir.join(page.file_name().unwrap());
    std::fs::write(&copy, out).expect("write page copy");
    copy
}

/// The host's programs the examples run besides stepctr.
const HOST_TOOLS: &[&str] = &["sh", "cat", "mkdir", "rm", "ls"];

/// trycmd over `pages`, in the environment `env` (the examples' fixed container names must not
/// be in use).
fn trycmd_cases(env: &Env) -> trycmd::TestCases {
    let bin = common::stepctr_bin();
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
    );
    let t = trycmd::TestCases::new();
    t.register_bin("stepctr", bin.as_path())
        .env("STEPCTR_ROOT", env.root.to_string_lossy())
        .env("STEPCTR_RUN", env.run.to_string_lossy())
        .env("NO_COLOR", "1")
        .env("PATH", path)
        .timeout(std::time::Duration::from_secs(120));
    // trycmd skips (as "ignored") a command whose program is not registered.
    for tool in HOST_TOOLS {
        let found = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{tool} not found"));
        t.register_bin(*tool, found.as_path());
    }
    t.insert_var("[STORE]", env.root.to_string_lossy().into_owned())
        .expect("[STORE]");
    t.insert_var("[RUN]", env.run.to_string_lossy().into_owned())
        .expect("[RUN]");
    t
}

/// The fixed container names the pages use (every example names its containers `book-...`).
fn fixed_names(pages: &[PathBuf]) -> Vec<String> {
    let re = regex::Regex::new(r"\bbook-[a-z0-9][a-z0-9-]*").unwrap();
    let mut names: Vec<String> = pages
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            re.find_iter(&text)
                .map(|m| m.as_str().trim_end_matches('-').to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

fn book_console_examples() {
    let env = Env::new();
    let pages = pages();
    assert!(pages.len() >= 11, "chapter pages: {pages:?}");
    let names = fixed_names(&pages);
    for name in &names {
        assert!(
            cgroup_dirs_named(name).is_empty(),
            "a cgroup named {name} exists before the examples run: remove it (stepctr rm -f {name})"
        );
    }
    let copies = tempfile::tempdir().expect("temp dir");
    let cases = trycmd_cases(&env);
    for p in &pages {
        cases.case(prepare(p, copies.path()));
    }
    cases.run();
    // Every example removed what it made.
    let left: Vec<_> = std::fs::read_dir(&env.run)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "containers left in the run directory: {left:?}"
    );
    for name in &names {
        assert_no_leaks(&env, name);
    }
}

/// A page whose expected output is not what the command prints fails.
fn changed_output_fails() {
    let env = Env::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let page = dir.path().join("wrong.md");
    std::fs::write(
        &page,
        "# A wrong example\n\n```console\n$ stepctr -q run --rm localhost/stepctr-busybox echo hello\nhallo\n```\n",
    )
    .unwrap();
    let copies = tempfile::tempdir().expect("temp dir");
    let result = std::panic::catch_unwind(|| {
        let cases = trycmd_cases(&env);
        cases.case(prepare(&page, copies.path()));
        cases.run();
    });
    assert!(result.is_err(), "trycmd accepted a wrong expected output");
    // The same page with the right output passes.
    std::fs::write(
        &page,
        "```console\n$ stepctr -q run --rm localhost/stepctr-busybox echo hello\nhello\n```\n",
    )
    .unwrap();
    let cases = trycmd_cases(&env);
    cases.case(prepare(&page, copies.path()));
    cases.run();
}

fn main() {
    common::run_tests(tests![book_console_examples, changed_output_fails], true);
}
