//! `stepctr lesson`: list the lessons, run one (steps for real, then the checks of what they
//! did), or check the learner's own attempt at a lesson's task.

use super::checks;
use super::parse::{self, Expect, Part, Quiz};
use anyhow::{bail, Context, Result};
use std::io::{IsTerminal, Write};
use std::process::Command;

/// The lessons, built into the binary (the same files are the book's chapters).
pub const LESSONS: &[(u32, &str, &str)] = &[
    (
        1,
        "01-a-process.md",
        include_str!("../../lessons/01-a-process.md"),
    ),
    (
        2,
        "02-chroot.md",
        include_str!("../../lessons/02-chroot.md"),
    ),
    (
        3,
        "03-namespaces.md",
        include_str!("../../lessons/03-namespaces.md"),
    ),
    (
        4,
        "04-cgroups.md",
        include_str!("../../lessons/04-cgroups.md"),
    ),
    (
        5,
        "05-images-and-layers.md",
        include_str!("../../lessons/05-images-and-layers.md"),
    ),
    (
        6,
        "06-writable-layer.md",
        include_str!("../../lessons/06-writable-layer.md"),
    ),
    (7, "07-pid1.md", include_str!("../../lessons/07-pid1.md")),
    (
        8,
        "08-networking.md",
        include_str!("../../lessons/08-networking.md"),
    ),
    (
        9,
        "09-docker-run.md",
        include_str!("../../lessons/09-docker-run.md"),
    ),
    (
        10,
        "10-pseudo-isolation.md",
        include_str!("../../lessons/10-pseudo-isolation.md"),
    ),
    (
        11,
        "11-startup.md",
        include_str!("../../lessons/11-startup.md"),
    ),
];

/// How a lesson is run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Answer every prompt with yes (also when stdin is not a terminal): for scripts and CI.
    pub yes: bool,
    /// `--restart`: run the lesson's cleanup and forget its progress first.
    pub restart: bool,
    /// `--pace step`: each step's stepctr pauses before every kernel call (STEPCTR_PACE).
    pub pace: bool,
}

/// The title of a lesson: its first `# ` heading.
pub fn title(text: &str) -> &str {
    text.lines()
        .find_map(|l| l.strip_prefix("# "))
        .unwrap_or("(untitled)")
}

/// `stepctr lesson`: one line per lesson, with the learner's progress.
pub fn list() -> Result<()> {
    let progress = super::progress::load();
    let mut out = std::io::stdout().lock();
    for (n, file, text) in LESSONS {
        let mark = super::progress::mark(progress.get(n));
        writeln!(out, "{n:>2} {mark:>5}  {}  ({file})", title(text))?;
    }
    Ok(())
}

/// `stepctr lesson status [--json]`: the progress, for the learner or (JSON) a teacher.
pub fn status(json: bool) -> Result<()> {
    let progress = super::progress::load();
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &progress)?;
        writeln!(out)?;
        return Ok(());
    }
    for (n, _, text) in LESSONS {
        let line = match progress.get(n) {
            Some(l) => format!(
                "steps {}/{}, checks {} passed {} failed, quizzes right {}{}",
                l.steps_run,
                l.steps,
                l.checks_passed,
                l.checks_failed,
                l.quizzes_right,
                if l.finished { ", finished" } else { "" }
            ),
            None => "not started".to_string(),
        };
        writeln!(out, "{n:>2}  {}: {line}", title(text))?;
    }
    Ok(())
}

fn find(n: u32) -> Result<(&'static str, Vec<Part>)> {
    let Some((_, file, text)) = LESSONS.iter().find(|(m, _, _)| *m == n) else {
        let have: Vec<String> = LESSONS.iter().map(|(m, _, _)| m.to_string()).collect();
        bail!("no lesson {n}: the lessons are {}", have.join(", "));
    };
    let parts = parse::parse(text).with_context(|| format!("lessons/{file}"))?;
    Ok((file, parts))
}

/// What a lesson's commands may name: `{c}` (a container name of this run), `{stepctr}` (this
/// binary).
struct Vars {
    container: String,
    stepctr: String,
}

impl Vars {
    fn new(n: u32) -> Vars {
        Vars {
            container: format!("lesson{n}-{}", std::process::id()),
            stepctr: std::env::current_exe()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "stepctr".into()),
        }
    }

    fn fill(&self, s: &str) -> String {
        s.replace("{c}", &self.container)
            .replace("{stepctr}", &self.stepctr)
    }
}

/// The result of one command of a step.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_command(line: &str, vars: &Vars, pace: bool) -> Result<Ran> {
    let line = vars.fill(line);
    let words = shlex::split(&line).with_context(|| format!("cannot split {line:?} into words"))?;
    let Some((prog, args)) = words.split_first() else {
        bail!("an empty command");
    };
    // `stepctr` in a lesson is this very binary.
    let prog = if prog == "stepctr" {
        &vars.stepctr
    } else {
        prog
    };
    // Both outputs are kept for the expect blocks, and shown once the command has ended
    // (the narration, on stderr, as it would have been on the terminal).
    let mut cmd = Command::new(prog);
    cmd.args(args);
    // --pace step: every stepctr of the step (through sh too) pauses on the terminal.
    if pace {
        cmd.env("STEPCTR_PACE", "step");
    } else {
        cmd.env_remove("STEPCTR_PACE");
    }
    let out = cmd.output().with_context(|| format!("run {line}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    print!("{stdout}");
    eprint!("{stderr}");
    Ok(Ran {
        code: out.status.code().unwrap_or(128),
        stdout,
        stderr,
    })
}

/// `stepctr lesson N`: returns the number of failed checks (0: the lesson passed).
pub fn run(n: u32, o: &Options) -> Result<i32> {
    let (file, parts) = find(n)?;
    let vars = Vars::new(n);
    let auto = o.yes || !std::io::stdin().is_terminal();
    if o.restart {
        for p in &parts {
            if let Part::Cleanup(cs) = p {
                quiet_cleanup(cs, &vars);
            }
        }
        super::progress::forget(n)?;
        println!("# lesson {n}: cleaned up and started over");
    }
    let mut done = super::progress::Lesson {
        steps: parts.iter().filter(|p| matches!(p, Part::Step(_))).count(),
        ..Default::default()
    };
    let mut failed = 0;
    let mut last: Option<Ran> = None;
    // doctor's checks, read once if a step needs one; after a skipped step, its expect and
    // check blocks are skipped too.
    let mut host: Option<Vec<crate::doctor::Check>> = None;
    let mut skipping = false;
    let mut cleanup: Vec<String> = Vec::new();
    println!("== lesson {n}: {} (lessons/{file})", title_of(&parts));
    for part in &parts {
        match part {
            Part::Prose(p) => print!("{}", vars.fill(&parse::for_terminal(p))),
            Part::Step(s) => {
                if let Some(why) = cannot_show(&s.needs, &mut host) {
                    println!("# this host cannot show the next step, so it is skipped: {why}");
                    skipping = true;
                    continue;
                }
                skipping = false;
                if !auto && !confirm("run it?")? {
                    println!("(skipped)");
                    continue;
                }
                if s.fails {
                    println!("# this step is expected to fail: watch how");
                }
                for c in &s.commands {
                    println!("$ {}", vars.fill(c));
                    last = Some(run_command(c, &vars, o.pace)?);
                }
                done.steps_run += 1;
            }
            Part::Expect(_) | Part::Check(_) if skipping => {}
            Part::Expect(es) => {
                let Some(r) = &last else {
                    bail!("an expect block before any step");
                };
                for e in es {
                    if let Err(why) = expect(e, r, &vars) {
                        failed += 1;
                        println!("✘ {why}");
                    } else {
                        done.checks_passed += 1;
                        println!("✔ {}", describe(e, &vars));
                    }
                }
            }
            Part::Check(cs) => {
                for c in cs {
                    let c = filled(c, &vars);
                    match checks::holds(&c) {
                        Ok(()) => {
                            done.checks_passed += 1;
                            println!("✔ {}: {}", c.kind, c.arg)
                        }
                        Err(why) => {
                            failed += 1;
                            println!("✘ {why}");
                            if let Some(h) = &c.hint {
                                println!("  hint: {h}");
                            }
                        }
                    }
                }
            }
            Part::Quiz(q) => {
                if quiz(&filled_quiz(q, &vars), auto)? {
                    done.quizzes_right += 1;
                }
            }
            Part::Task(_) => {
                println!("# your turn: do the task above, then `stepctr lesson {n} check`")
            }
            Part::Cleanup(cs) => cleanup.extend(cs.iter().cloned()),
        }
    }
    quiet_cleanup(&cleanup, &vars);
    done.checks_failed = failed as usize;
    done.finished = failed == 0 && done.steps_run == done.steps;
    done.at = super::progress::now();
    super::progress::save(n, done)?;
    println!(
        "== lesson {n}: {}",
        if failed == 0 {
            "every check passed".to_string()
        } else {
            format!("{failed} check(s) failed")
        }
    );
    Ok(failed)
}

/// `stepctr lesson N check`: the checks of the lesson's task against what the learner did;
/// the hint of the first that fails. Returns the number of failed checks.
pub fn check(n: u32) -> Result<i32> {
    let (_, parts) = find(n)?;
    let vars = Vars::new(n);
    let tasks: Vec<&parse::Check> = parts
        .iter()
        .filter_map(|p| match p {
            Part::Task(cs) => Some(cs),
            _ => None,
        })
        .flatten()
        .collect();
    if tasks.is_empty() {
        bail!("lesson {n} has no task to check");
    }
    let mut failed = 0;
    for c in tasks {
        let c = filled(c, &vars);
        match checks::holds(&c) {
            Ok(()) => println!("✔ {}: {}", c.kind, c.arg),
            Err(why) => {
                println!("✘ {why}");
                if failed == 0 {
                    if let Some(h) = &c.hint {
                        println!("  hint: {h}");
                    }
                }
                failed += 1;
            }
        }
    }
    Ok(failed)
}

/// `step needs=CHECK,...`: why this host cannot show the step (a `doctor` check that is not
/// ok, with what doctor found), or None.
fn cannot_show(needs: &[String], host: &mut Option<Vec<crate::doctor::Check>>) -> Option<String> {
    if needs.is_empty() {
        return None;
    }
    let checks = host.get_or_insert_with(|| crate::doctor::checks(&crate::doctor::Host::read()));
    needs.iter().find_map(
        |need| match checks.iter().find(|c| c.check == need.as_str()) {
            Some(c) if c.status == crate::doctor::Status::Ok => None,
            Some(c) => Some(format!("`stepctr doctor` says {}: {}", c.check, c.found)),
            None => Some(format!("this stepctr has no doctor check {need:?}")),
        },
    )
}

/// Cleanup, quietly: what it removes may be gone already (the lesson's own steps did it).
fn quiet_cleanup(cleanup: &[String], vars: &Vars) {
    for c in cleanup {
        let line = vars.fill(c);
        if let Some(words) = shlex::split(&line) {
            if let Some((prog, args)) = words.split_first() {
                let prog = if prog == "stepctr" {
                    &vars.stepctr
                } else {
                    prog
                };
                let _ = Command::new(prog)
                    .args(args)
                    .env_remove("STEPCTR_PACE")
                    .output();
            }
        }
    }
}

fn title_of(parts: &[Part]) -> String {
    parts
        .iter()
        .find_map(|p| match p {
            Part::Prose(t) => Some(title(t).to_string()),
            _ => None,
        })
        .unwrap_or_default()
}

fn filled(c: &parse::Check, vars: &Vars) -> parse::Check {
    parse::Check {
        kind: c.kind.clone(),
        arg: vars.fill(&c.arg),
        hint: c.hint.clone(),
    }
}

fn expect(e: &Expect, r: &Ran, vars: &Vars) -> Result<(), String> {
    match e {
        Expect::Exit(n) if r.code == *n => Ok(()),
        Expect::Exit(n) => Err(format!("the step exited with {}, not {n}", r.code)),
        Expect::StdoutContains(t) => {
            let t = vars.fill(t);
            if r.stdout.contains(&t) {
                Ok(())
            } else {
                Err(format!("its output lacks {t:?}"))
            }
        }
        Expect::StdoutMatches(re) => match regex_lite_match(&vars.fill(re), &r.stdout) {
            true => Ok(()),
            false => Err(format!("its output does not match {re:?}")),
        },
        Expect::StderrContains(t) => {
            let t = vars.fill(t);
            if r.stderr.contains(&t) {
                Ok(())
            } else {
                Err(format!("its narration (stderr) lacks {t:?}"))
            }
        }
    }
}

/// `stdout matches PATTERN`: some line holds the pattern's pieces, in order, where `.*` separates
/// the pieces and everything else is literal (so `(137)` or `[sleep]` mean what they show; this
/// is not a regular expression).
fn regex_lite_match(pattern: &str, text: &str) -> bool {
    text.lines().any(|line| {
        let mut rest = line;
        pattern.split(".*").all(|piece| match rest.find(piece) {
            Some(i) => {
                rest = &rest[i + piece.len()..];
                true
            }
            None => false,
        })
    })
}

fn describe(e: &Expect, vars: &Vars) -> String {
    match e {
        Expect::Exit(n) => format!("exit code {n}"),
        Expect::StdoutContains(t) => format!("the output says {:?}", vars.fill(t)),
        Expect::StdoutMatches(t) => format!("the output matches {:?}", vars.fill(t)),
        Expect::StderrContains(t) => format!("the narration says {t:?}"),
    }
}

/// Ask on the terminal (dialoguer): run the next step? Enter means yes; Esc or q, no.
fn confirm(what: &str) -> Result<bool> {
    let answer = dialoguer::Confirm::new()
        .with_prompt(what)
        .default(true)
        .interact_opt()
        .context("ask on the terminal")?;
    Ok(answer.unwrap_or(false))
}

/// A quiz: asked until answered right, with the feedback after every answer (not on a
/// terminal, or with --yes: the options and the answer are shown).
fn filled_quiz(q: &Quiz, vars: &Vars) -> Quiz {
    Quiz {
        question: vars.fill(&q.question),
        options: q.options.iter().map(|(o, r)| (vars.fill(o), *r)).collect(),
        why: vars.fill(&q.why),
    }
}

/// How many wrong answers before the quiz gives the answer and moves on.
const QUIZ_TRIES: usize = 3;

fn quiz(q: &Quiz, auto: bool) -> Result<bool> {
    if auto {
        println!("? {}", q.question);
        for (i, (o, _)) in q.options.iter().enumerate() {
            println!("  {}) {o}", i + 1);
        }
        let right = q.right_answers();
        println!("  answer: {}. {}", right.join(" / "), q.why);
        return Ok(false);
    }
    let items: Vec<&str> = q.options.iter().map(|(o, _)| o.as_str()).collect();
    for _ in 0..QUIZ_TRIES {
        // An error (the terminal went away) ends the quiz like Esc does.
        let picked = dialoguer::Select::new()
            .with_prompt(&q.question)
            .items(&items)
            .default(0)
            .interact_opt()
            .unwrap_or(None);
        match picked.and_then(|i| q.options.get(i)) {
            Some((_, true)) => {
                println!("✔ right. {}", q.why);
                return Ok(true);
            }
            Some((o, false)) => println!("✘ not \"{o}\". Try again."),
            None => return Ok(false), // Esc: on with the lesson
        }
    }
    let right = q.right_answers();
    println!("the answer: {}. {}", right.join(" / "), q.why);
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_lesson_parses() {
        for (n, file, text) in LESSONS {
            parse::parse(text).unwrap_or_else(|e| panic!("lesson {n} ({file}): {e}"));
            assert!(file.starts_with(&format!("{n:02}-")), "{file}");
        }
    }

    #[test]
    fn every_lesson_file_is_built_in() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lessons");
        for e in std::fs::read_dir(dir).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            if name.ends_with(".md") {
                assert!(
                    LESSONS.iter().any(|(_, f, _)| *f == name),
                    "lessons/{name} is not in LESSONS"
                );
            }
        }
    }

    /// Every `stepctr ...` a lesson shows or runs (in any block, after `$ `, also after
    /// `strace ... stepctr`) parses with the real command line: a lesson cannot drift from
    /// the CLI.
    #[test]
    fn every_stepctr_command_in_a_lesson_exists() {
        use clap::Parser as _;
        let vars = Vars {
            container: "c".into(),
            stepctr: "stepctr".into(),
        };
        let mut seen = 0;
        for (n, _, text) in LESSONS {
            for line in text
                .lines()
                .filter_map(|l| l.trim_start().strip_prefix("$ "))
            {
                let line = vars.fill(line);
                // The words from the first `stepctr` (a word of the command line, not one
                // inside a quoted `sh -c` script) up to a pipe, if any.
                let Some(words) = shlex::split(&line) else {
                    panic!("lesson {n}: cannot split `{line}` into words");
                };
                // (A `stepctr` with nothing after it is an argument: a script's `$1`.)
                let Some(at) = words
                    .iter()
                    .enumerate()
                    .position(|(i, w)| w == "stepctr" && i + 1 < words.len())
                else {
                    continue;
                };
                let words: Vec<&String> = words[at..].iter().take_while(|w| *w != "|").collect();
                crate::cli::Cli::try_parse_from(&words)
                    .unwrap_or_else(|e| panic!("lesson {n}: `{line}`: {e}"));
                seen += 1;
            }
        }
        assert!(seen > 0, "no stepctr command found in any lesson");
    }

    #[test]
    fn a_step_this_host_cannot_show_says_why() {
        let mut host = None;
        assert_eq!(cannot_show(&[], &mut host), None);
        assert!(host.is_none(), "doctor read without a need");
        let why = cannot_show(&["no-such-check".into()], &mut host).unwrap();
        assert!(why.contains("no doctor check \"no-such-check\""), "{why}");
        // Every `needs=` of every lesson names one of doctor's checks.
        let names: Vec<&str> = host.as_ref().unwrap().iter().map(|c| c.check).collect();
        for (n, _, text) in LESSONS {
            for p in parse::parse(text).unwrap() {
                if let Part::Step(s) = p {
                    for need in &s.needs {
                        assert!(names.contains(&need.as_str()), "lesson {n}: needs={need}");
                    }
                }
            }
        }
    }

    /// Every topic of the course (issue 7's list) is taught in some lesson.
    #[test]
    fn every_topic_of_the_course_has_a_lesson() {
        let all: String = LESSONS.iter().map(|(_, _, t)| t.to_lowercase()).collect();
        for topic in [
            "a container is a process",
            "/proc/",
            "chroot",
            "breakout",
            "pid namespace",
            "mount namespace",
            "uts",
            "ipc",
            "user namespace",
            "cgroup namespace",
            "256",
            "0.5",
            "pids",
            "oom",
            "fork bomb",
            "registry",
            "manifest",
            "layer",
            "overlay",
            "whiteout",
            "writable layer",
            "volume",
            "pid 1",
            "exit code",
            "zombie",
            "sigterm",
            "veth",
            "bridge",
            "8080",
            "containerd",
            "shim",
            "runc",
            "shared kernel",
            "capabilit",
            "seccomp",
            "vm",
            "milliseconds",
        ] {
            assert!(all.contains(topic), "no lesson mentions {topic:?}");
        }
    }

    #[test]
    fn patterns_match_lines() {
        assert!(regex_lite_match(
            "uid=0.*gid=0",
            "x\nuid=0(root) gid=0(root)\n"
        ));
        assert!(!regex_lite_match("gid=0.*uid=0", "uid=0(root) gid=0(root)"));
    }
}
