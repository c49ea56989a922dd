//! A lesson file (`lessons/NN-slug.md`, see docs/lessons-plan.md): Markdown prose, with the
//! parts the runner acts on in fenced blocks named by their info string: `step`, `expect`,
//! `check`, `quiz`, `task`, `cleanup`. Everything else is prose, kept as it is (the same file is
//! a chapter of the book).

use anyhow::{bail, Result};

/// One part of a lesson, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Markdown to show.
    Prose(String),
    /// Commands to run (each `$ ` line), with the step's attributes.
    Step(Step),
    /// What the step just run must have done.
    Expect(Vec<Expect>),
    /// What the machine must look like now; each with an optional hint.
    Check(Vec<Check>),
    Quiz(Quiz),
    /// The learner's own exercise: its text and the checks `lesson N check` runs.
    Task(Vec<Check>),
    /// Commands run at the end and by `--restart`, whatever happened.
    Cleanup(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Step {
    pub commands: Vec<String>,
    /// `step fails`: expected to fail, and said so before it runs.
    pub fails: bool,
    /// `step needs=X`: a doctor check this host must pass, else the step is explained and
    /// skipped.
    pub needs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Exit(i32),
    StdoutContains(String),
    StdoutMatches(String),
    StderrContains(String),
}

/// One check of the machine's state: its kind (`gone`, `mount`, `process`...), its argument,
/// and the hint shown when it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub kind: String,
    pub arg: String,
    pub hint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quiz {
    pub question: String,
    /// The options, and whether each is right.
    pub options: Vec<(String, bool)>,
    pub why: String,
}

impl Quiz {
    /// The right options' texts, in order.
    pub fn right_answers(&self) -> Vec<&str> {
        self.options
            .iter()
            .filter(|(_, r)| *r)
            .map(|(o, _)| o.as_str())
            .collect()
    }
}

/// The kinds of check the runner knows (each one a function of `checks.rs`).
pub const CHECK_KINDS: &[&str] = &[
    "veth",
    "no-veth",
    "listening",
    "not-listening",
    "exists",
    "gone",
    "mount",
    "no-mount",
    "cgroup",
    "no-cgroup",
    "process",
    "no-process",
    "file-contains",
    "cgroup-file",
    "pid1-handles",
    "pid1-no-handler",
    "ns-same",
    "ns-differs",
    "hostname",
    "uid",
    "upper",
    "no-upper",
    "whiteout",
];

/// A ```text block the book draws as a picture (`book/src/img/NAME.svg`), its ASCII kept as the
/// text alternative: info string `text figure=NAME`, optionally `caption="..."` (the picture's
/// alt text and caption; else its first line of ASCII). The terminal shows the ASCII as before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figure {
    pub name: String,
    pub caption: Option<String>,
}

/// The figure a fence line (```` ```text figure=NAME ````) opens: Ok(None) for any other line, an
/// error for a bad name or an unknown attribute of a figure.
pub fn figure(fence: &str) -> Result<Option<Figure>, String> {
    let Some(info) = fence.strip_prefix("```") else {
        return Ok(None);
    };
    let Some(attrs) = info.strip_prefix("text ") else {
        return Ok(None);
    };
    if !attrs.contains("figure=") {
        return Ok(None);
    }
    let (mut name, mut caption) = (None, None);
    let mut rest = attrs.trim();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("{rest:?}: expected figure=NAME or caption=\"...\""))?;
        let (value, after) = match after.strip_prefix('"') {
            Some(q) => q
                .split_once('"')
                .ok_or_else(|| format!("{key}=: the quote is never closed"))?,
            None => after.split_once(' ').unwrap_or((after, "")),
        };
        match key {
            "figure" => name = Some(value.to_string()),
            "caption" => caption = Some(value.to_string()),
            _ => {
                return Err(format!(
                    "unknown attribute {key:?} (figure=NAME, caption=\"...\")"
                ))
            }
        }
        rest = after.trim_start();
    }
    let name = name.unwrap_or_default();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "figure={name:?}: a figure's name is letters, digits, - and _ (book/src/img/NAME.svg)"
        ));
    }
    Ok(Some(Figure { name, caption }))
}

/// Prose as the terminal shows it: a figure's fence loses its attributes (```` ```text ````),
/// the ASCII picture stays.
pub fn for_terminal(prose: &str) -> String {
    let mut out = String::with_capacity(prose.len());
    for line in prose.split_inclusive('\n') {
        if matches!(figure(line.trim_end()), Ok(Some(_))) {
            out.push_str("```text");
            out.push_str(&line[line.trim_end().len()..]);
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Split a lesson into its parts. Errors name the line.
pub fn parse(text: &str) -> Result<Vec<Part>> {
    let mut parts = Vec::new();
    let mut prose = String::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            prose.push_str(line);
            prose.push('\n');
            continue;
        };
        let mut words = info.split_whitespace();
        let role = words.next().unwrap_or("");
        if !matches!(
            role,
            "step" | "expect" | "check" | "quiz" | "task" | "cleanup"
        ) {
            // A ```text figure=NAME block is a picture in the book: its attributes must be good.
            figure(line).map_err(|e| anyhow::anyhow!("line {}: ```{role} block: {e}", n + 1))?;
            // Another fence (text, sh...): prose, up to and with its closing fence.
            prose.push_str(line);
            prose.push('\n');
            for (_, l) in lines.by_ref() {
                prose.push_str(l);
                prose.push('\n');
                if l.starts_with("```") {
                    break;
                }
            }
            continue;
        }
        let attrs: Vec<&str> = words.collect();
        let mut body = Vec::new();
        let mut closed = false;
        for (_, l) in lines.by_ref() {
            if l.starts_with("```") {
                closed = true;
                break;
            }
            body.push(l);
        }
        if !closed {
            bail!("line {}: the ```{role} block is never closed", n + 1);
        }
        if !prose.trim().is_empty() {
            parts.push(Part::Prose(std::mem::take(&mut prose)));
        }
        prose.clear();
        let at = |what: &str| format!("line {}: ```{role} block: {what}", n + 1);
        parts.push(match role {
            "step" => Part::Step(step(&attrs, &body).map_err(|e| anyhow::anyhow!(at(&e)))?),
            "expect" => Part::Expect(expects(&body).map_err(|e| anyhow::anyhow!(at(&e)))?),
            "check" => Part::Check(checks(&body).map_err(|e| anyhow::anyhow!(at(&e)))?),
            "task" => Part::Task(checks(&body).map_err(|e| anyhow::anyhow!(at(&e)))?),
            "quiz" => Part::Quiz(quiz(&body).map_err(|e| anyhow::anyhow!(at(&e)))?),
            _ => Part::Cleanup(commands(&body)),
        });
    }
    if !prose.trim().is_empty() {
        parts.push(Part::Prose(prose));
    }
    Ok(parts)
}

fn commands(body: &[&str]) -> Vec<String> {
    body.iter()
        .filter_map(|l| l.trim_start().strip_prefix("$ "))
        .map(|c| c.trim().to_string())
        .collect()
}

fn step(attrs: &[&str], body: &[&str]) -> Result<Step, String> {
    let mut s = Step {
        commands: commands(body),
        ..Step::default()
    };
    if s.commands.is_empty() {
        return Err("no `$ ` command in it".into());
    }
    for a in attrs {
        match a.split_once('=') {
            None if *a == "fails" => s.fails = true,
            Some(("needs", v)) => s.needs.extend(v.split(',').map(String::from)),
            _ => return Err(format!("unknown attribute {a:?} (fails, needs=CHECK)")),
        }
    }
    Ok(s)
}

fn expects(body: &[&str]) -> Result<Vec<Expect>, String> {
    let mut out = Vec::new();
    for l in body.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
        let e = if let Some(n) = l.strip_prefix("exit ") {
            Expect::Exit(
                n.trim()
                    .parse()
                    .map_err(|_| format!("bad exit code in {l:?}"))?,
            )
        } else if let Some(t) = l.strip_prefix("stdout contains ") {
            Expect::StdoutContains(t.to_string())
        } else if let Some(t) = l.strip_prefix("stdout matches ") {
            Expect::StdoutMatches(t.to_string())
        } else if let Some(t) = l.strip_prefix("stderr contains ") {
            Expect::StderrContains(t.to_string())
        } else {
            return Err(format!(
                "{l:?}: expected `exit N`, `stdout contains T`, `stdout matches RE` or `stderr contains T`"
            ));
        };
        out.push(e);
    }
    Ok(out)
}

fn checks(body: &[&str]) -> Result<Vec<Check>, String> {
    let mut out: Vec<Check> = Vec::new();
    for l in body.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
        if let Some(h) = l.strip_prefix("hint:") {
            match out.last_mut() {
                Some(c) => c.hint = Some(h.trim().to_string()),
                None => return Err("a hint before any check".into()),
            }
            continue;
        }
        let Some((kind, arg)) = l.split_once(':') else {
            return Err(format!("{l:?}: expected KIND: ARGUMENT"));
        };
        let kind = kind.trim();
        if !CHECK_KINDS.contains(&kind) {
            return Err(format!(
                "unknown check {kind:?} (known: {})",
                CHECK_KINDS.join(", ")
            ));
        }
        out.push(Check {
            kind: kind.to_string(),
            arg: arg.trim().to_string(),
            hint: None,
        });
    }
    Ok(out)
}

fn quiz(body: &[&str]) -> Result<Quiz, String> {
    let mut q = Quiz {
        question: String::new(),
        options: Vec::new(),
        why: String::new(),
    };
    for l in body.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
        if let Some(t) = l.strip_prefix("Q:") {
            q.question = t.trim().to_string();
        } else if let Some(t) = l.strip_prefix("- ") {
            q.options.push((t.trim().to_string(), false));
        } else if let Some(t) = l.strip_prefix("* ") {
            q.options.push((t.trim().to_string(), true));
        } else if let Some(t) = l.strip_prefix("Why:") {
            q.why = t.trim().to_string();
        } else {
            return Err(format!(
                "{l:?}: expected `Q:`, `- option`, `* right option` or `Why:`"
            ));
        }
    }
    if q.question.is_empty() || q.options.len() < 2 || !q.options.iter().any(|(_, r)| *r) {
        return Err("a quiz needs `Q:`, two options or more, and at least one marked `*`".into());
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LESSON: &str = "# Namespaces\n\nSome prose.\n\n```text\nnot a step\n```\n\n```step needs=userns\n$ stepctr all --name {c} --rm -- hostname\n```\n```expect\nexit 0\nstdout contains {c}\n```\n```check\ngone: /run/stepctr/{c}\nhint: did rm run?\n```\n```quiz\nQ: Who is PID 1?\n- the shim\n* your command\nWhy: the shim is outside.\n```\n```step fails\n$ sh -c 'exit 3'\n```\n```cleanup\n$ stepctr rm -f {c}\n```\n";

    #[test]
    fn a_lesson_splits_into_its_parts() {
        let parts = parse(LESSON).unwrap();
        assert!(matches!(&parts[0], Part::Prose(p) if p.contains("```text\nnot a step\n```")));
        assert_eq!(
            parts[1],
            Part::Step(Step {
                commands: vec!["stepctr all --name {c} --rm -- hostname".into()],
                fails: false,
                needs: vec!["userns".into()],
            })
        );
        assert_eq!(
            parts[2],
            Part::Expect(vec![Expect::Exit(0), Expect::StdoutContains("{c}".into())])
        );
        assert_eq!(
            parts[3],
            Part::Check(vec![Check {
                kind: "gone".into(),
                arg: "/run/stepctr/{c}".into(),
                hint: Some("did rm run?".into()),
            }])
        );
        assert!(
            matches!(&parts[4], Part::Quiz(q) if q.options[1] == ("your command".into(), true))
        );
        assert!(matches!(&parts[5], Part::Step(s) if s.fails));
        assert_eq!(parts[6], Part::Cleanup(vec!["stepctr rm -f {c}".into()]));
    }

    #[test]
    fn a_figure_is_prose_with_a_name_and_shows_as_text_in_the_terminal() {
        let text =
            "Look:\n\n```text figure=pipeline caption=\"The six stages\"\npull -> load\n```\n";
        let parts = parse(text).unwrap();
        assert_eq!(parts, vec![Part::Prose(text.into())]);
        assert_eq!(
            figure("```text figure=pipeline caption=\"The six stages\""),
            Ok(Some(Figure {
                name: "pipeline".into(),
                caption: Some("The six stages".into()),
            }))
        );
        assert_eq!(
            figure("```text figure=ns"),
            Ok(Some(Figure {
                name: "ns".into(),
                caption: None,
            }))
        );
        assert_eq!(figure("```text"), Ok(None));
        assert_eq!(figure("```sh"), Ok(None));
        assert_eq!(for_terminal(text), "Look:\n\n```text\npull -> load\n```\n");
        for bad in [
            "```text figure=../x\n```\n",
            "```text figure=a size=2\n```\n",
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("line 1: ```text block"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn mistakes_name_their_line() {
        for (bad, says) in [
            (
                "```step\nno dollar\n```\n",
                "line 1: ```step block: no `$ ` command",
            ),
            (
                "x\n```check\nsmell: roses\n```\n",
                "line 2: ```check block: unknown check \"smell\"",
            ),
            ("```quiz\nQ: ?\n- a\n- b\n```\n", "at least one marked `*`"),
            ("```expect\nexit zero\n```\n", "bad exit code"),
            ("```step\n$ true\n", "never closed"),
            ("```step sometimes\n$ true\n```\n", "unknown attribute"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
