//! The mdBook preprocessor `mdbook-stepctr` (src/bin/mdbook-stepctr.rs): it renders the lesson
//! blocks of each chapter (parsed by `lesson::parse`, the runner's own parser) for a reader: a
//! step becomes a console block, expect and check a "What to look for" list, a quiz its question
//! with the answer folded away, a task a "Your turn" list, a cleanup a "Clean up" block; and a
//! ```` ```text figure=NAME ```` block becomes the picture `img/NAME.svg`, its ASCII kept as the
//! text alternative. A chapter `chNN-*.md` is lesson NN: `{c}` reads `lessonNN` there.
//!
//! mdBook's protocol: `mdbook-stepctr supports RENDERER` exits 0 for html; `mdbook-stepctr` reads
//! `[context, book]` as JSON on stdin and writes the book back on stdout.

use crate::lesson::parse::{self, Check, Expect, Part, Quiz, Step};
use anyhow::{anyhow, Context, Result};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The renderers this preprocessor knows.
pub fn supports(renderer: &str) -> bool {
    renderer == "html"
}

/// `[context, book]` in, the book out (both JSON).
pub fn preprocess(input: &str) -> Result<String> {
    let v: Value = serde_json::from_str(input).context("reading [context, book] from mdbook")?;
    let (ctx, mut book) = match v {
        Value::Array(mut a) if a.len() == 2 => {
            let book = a.pop().unwrap();
            (a.pop().unwrap(), book)
        }
        _ => return Err(anyhow!("mdbook sent something other than [context, book]")),
    };
    let root = PathBuf::from(ctx["root"].as_str().unwrap_or("."));
    let src = root.join(ctx["config"]["book"]["src"].as_str().unwrap_or("src"));
    if let Some(sections) = book.get_mut("sections").and_then(Value::as_array_mut) {
        walk(sections, &src)?;
    }
    Ok(serde_json::to_string(&book)?)
}

fn walk(items: &mut [Value], src: &Path) -> Result<()> {
    for item in items {
        let Some(ch) = item.get_mut("Chapter") else {
            continue;
        };
        if let (Some(path), Some(content)) = (
            ch["path"].as_str().map(String::from),
            ch["content"].as_str(),
        ) {
            let out = chapter(content, &path, src)
                .with_context(|| format!("mdbook-stepctr: chapter {path}"))?;
            ch["content"] = Value::String(out);
        }
        if let Some(sub) = ch.get_mut("sub_items").and_then(Value::as_array_mut) {
            walk(sub, src)?;
        }
    }
    Ok(())
}

/// The lesson a chapter file is (`ch03-namespaces.md` → 3).
fn lesson_of(path: &str) -> Option<u32> {
    let file = Path::new(path).file_name()?.to_str()?;
    let digits: String = file
        .strip_prefix("ch")?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// One chapter's Markdown, rendered for a reader. `path` is the chapter's path under `src`
/// (where the figures' SVGs are looked for, in `src/img/`).
pub fn chapter(content: &str, path: &str, src: &Path) -> Result<String> {
    let n = lesson_of(path);
    let text = match n {
        Some(n) => content
            .replace("{c}", &format!("lesson{n}"))
            .replace("{stepctr}", "stepctr"),
        None => content.to_string(),
    };
    let parts = parse::parse(&text)?;
    let depth = Path::new(path).components().count().saturating_sub(1);
    let img = format!("{}img", "../".repeat(depth));
    let mut out = String::new();
    let mut look: Vec<String> = Vec::new();
    for part in &parts {
        if !matches!(part, Part::Expect(_) | Part::Check(_)) {
            flush_look(&mut out, &mut look);
        }
        match part {
            Part::Prose(p) => out.push_str(&prose(p, &img, src)?),
            Part::Step(s) => step(&mut out, s),
            Part::Expect(es) => look.extend(es.iter().map(expect_words)),
            Part::Check(cs) => look.extend(cs.iter().map(check_words)),
            Part::Quiz(q) => quiz(&mut out, q),
            Part::Task(cs) => task(&mut out, cs, n),
            Part::Cleanup(cs) => {
                out.push_str("\n**Clean up:**\n\n");
                console(&mut out, cs);
            }
        }
    }
    flush_look(&mut out, &mut look);
    Ok(out)
}

/// Inline code, whatever backticks the text holds.
fn code(t: &str) -> String {
    if t.contains('`') {
        format!("`` {t} ``")
    } else {
        format!("`{t}`")
    }
}

fn html_escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn console(out: &mut String, commands: &[String]) {
    out.push_str("```console\n");
    for c in commands {
        let _ = writeln!(out, "$ {c}");
    }
    out.push_str("```\n\n");
}

fn step(out: &mut String, s: &Step) {
    out.push('\n');
    if s.fails {
        out.push_str("*This step is expected to fail: that is the point.*\n\n");
    }
    if !s.needs.is_empty() {
        let _ = writeln!(
            out,
            "*This step needs a host with {} (`stepctr doctor` says whether yours has it; \
             `stepctr lesson` skips it otherwise).*\n",
            s.needs
                .iter()
                .map(|x| code(x))
                .collect::<Vec<_>>()
                .join(" and ")
        );
    }
    console(out, &s.commands);
}

fn flush_look(out: &mut String, look: &mut Vec<String>) {
    if look.is_empty() {
        return;
    }
    out.push_str("\n**What to look for:**\n\n");
    for l in look.drain(..) {
        let _ = writeln!(out, "- {l}");
    }
    out.push('\n');
}

fn expect_words(e: &Expect) -> String {
    match e {
        Expect::Exit(n) => format!("exit code {n}"),
        Expect::StdoutContains(t) => format!("the output contains {}", code(t)),
        Expect::StdoutMatches(re) => format!("a line of the output matches {}", code(re)),
        Expect::StderrContains(t) => format!("the error output contains {}", code(t)),
    }
}

/// A check in words, as a reader would verify it by hand.
pub fn check_words(c: &Check) -> String {
    let a = c.arg.as_str();
    let (first, rest) = a.split_once(' ').unwrap_or((a, ""));
    let (first_c, rest_c) = (code(first), code(rest.trim()));
    match c.kind.as_str() {
        "exists" => format!("{} exists", code(a)),
        "gone" => format!("{} is gone", code(a)),
        "mount" => format!("a mount mentions {}", code(a)),
        "no-mount" => format!("no mount mentions {} any more", code(a)),
        "cgroup" => format!("a cgroup named {} exists", code(a)),
        "no-cgroup" => format!("no cgroup named {} remains", code(a)),
        "process" => format!("a process whose command line mentions {} runs", code(a)),
        "no-process" => format!("no process mentions {} any more", code(a)),
        "file-contains" => format!("{first_c} contains {rest_c}"),
        "cgroup-file" => format!("in the cgroup of {first_c}: {rest_c}"),
        "pid1-handles" => format!("PID 1 of {first_c} has a handler for SIG{}", rest.trim()),
        "pid1-no-handler" => format!("PID 1 of {first_c} has no handler for SIG{}", rest.trim()),
        "ns-same" => format!(
            "{first_c} shares the host's {} namespace(s)",
            rest.trim().replace(',', ", ")
        ),
        "ns-differs" => format!(
            "{first_c} has its own {} namespace(s), not the host's",
            rest.trim().replace(',', ", ")
        ),
        "hostname" => format!("the hostname inside {first_c} is {rest_c}"),
        "uid" => format!("PID 1 of {first_c} runs as uid {} on the host", rest.trim()),
        "upper" => format!("the writable layer of {first_c} holds {rest_c}"),
        "no-upper" => format!("the writable layer of {first_c} does not hold {rest_c}"),
        "whiteout" => {
            format!("the writable layer of {first_c} has a whiteout for {rest_c} (it was deleted)")
        }
        "veth" => format!("the host end of {}'s veth pair is on the bridge", code(a)),
        "no-veth" => format!("the veth pair of {} is gone", code(a)),
        "listening" => format!("something listens on {}", code(a)),
        "not-listening" => format!("nothing listens on {}", code(a)),
        other => format!("{other}: {}", code(a)),
    }
}

fn quiz(out: &mut String, q: &Quiz) {
    let _ = writeln!(out, "\n**Quiz.** {}\n", q.question);
    for (o, _) in &q.options {
        let _ = writeln!(out, "- {o}");
    }
    let right = q.right_answers();
    let _ = writeln!(
        out,
        "\n<details><summary>Answer</summary>\n\n**Right:** {}\n\n{}\n\n</details>\n",
        right.join("; "),
        q.why
    );
}

fn task(out: &mut String, cs: &[Check], n: Option<u32>) {
    let cmd = match n {
        Some(n) => format!("`stepctr lesson {n} check`"),
        None => "`stepctr lesson N check`".into(),
    };
    let _ = writeln!(out, "\n**Your turn:** {cmd} checks that\n");
    for c in cs {
        let _ = writeln!(out, "- {}", check_words(c));
    }
    let hints: Vec<&str> = cs.iter().filter_map(|c| c.hint.as_deref()).collect();
    if !hints.is_empty() {
        out.push_str("\n<details><summary>Hints</summary>\n\n");
        for h in hints {
            let _ = writeln!(out, "- {h}");
        }
        out.push_str("\n</details>\n");
    }
    out.push('\n');
}

/// Prose with its ```` ```text figure=NAME ```` blocks drawn as pictures (`img` is the images
/// folder relative to the chapter; the SVG must exist under `src/img/`).
fn prose(text: &str, img: &str, src: &Path) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.split_inclusive('\n');
    while let Some(line) = lines.next() {
        let fig = parse::figure(line.trim_end()).map_err(|e| anyhow!(e))?;
        let Some(fig) = fig else {
            out.push_str(line);
            // Any other fence is copied up to its end (a figure= line inside is not a fence).
            if line.starts_with("```") {
                for l in lines.by_ref() {
                    out.push_str(l);
                    if l.starts_with("```") {
                        break;
                    }
                }
            }
            continue;
        };
        let ascii: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .map(|l| l.trim_end_matches(['\n', '\r']))
            .collect();
        let svg = src.join("img").join(format!("{}.svg", fig.name));
        if !svg.is_file() {
            return Err(anyhow!(
                "figure={} needs the picture {}, which is missing (add the SVG, or drop figure= \
                 from the ```text block)",
                fig.name,
                svg.display()
            ));
        }
        let alt = fig.caption.clone().unwrap_or_else(|| {
            ascii
                .iter()
                .map(|l| l.trim())
                .find(|l| !l.is_empty())
                .unwrap_or(&fig.name)
                .to_string()
        });
        // One HTML block: no blank line in it (Markdown would end the block there), so an empty
        // line of the ASCII is written as a space entity.
        let pre: Vec<String> = ascii
            .iter()
            .map(|l| {
                if l.trim().is_empty() {
                    "&#32;".to_string()
                } else {
                    html_escape(l)
                }
            })
            .collect();
        let _ = write!(
            out,
            "<figure class=\"stepctr-figure\">\n<img src=\"{img}/{}.svg\" alt=\"{}\">\n",
            fig.name,
            html_escape(&alt)
        );
        if let Some(c) = &fig.caption {
            let _ = writeln!(out, "<figcaption>{}</figcaption>", html_escape(c));
        }
        let _ = write!(
            out,
            "<details><summary>As text</summary><pre>{}</pre></details>\n</figure>\n",
            pre.join("\n")
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LESSON: &str = "# Three\n\nProse about {c}.\n\n```step needs=userns\n$ {stepctr} run --name {c}-b x\n```\n```expect\nexit 0\nstdout contains {c}\n```\n```check\nno-cgroup: {c}\nhint: rm it\n```\n```step fails\n$ stepctr exec {c} -- hostname hacked\n```\n```quiz\nQ: Who is PID 1?\n- the shim\n* your `sleep`\nWhy: the shim is outside.\n```\n```task\nhostname: island atoll\nhint: --hostname\n```\n```cleanup\n$ stepctr rm -f {c}\n```\n";

    fn src_with(svgs: &[&str]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("img")).unwrap();
        for s in svgs {
            std::fs::write(d.path().join("img").join(format!("{s}.svg")), "<svg/>").unwrap();
        }
        d
    }

    #[test]
    fn lesson_blocks_are_rendered_for_a_reader() {
        let d = src_with(&[]);
        let out = chapter(LESSON, "ch03-namespaces.md", d.path()).unwrap();
        assert!(
            out.starts_with("# Three\n\nProse about lesson3.\n"),
            "{out}"
        );
        assert!(
            out.contains("```console\n$ stepctr run --name lesson3-b x\n```"),
            "{out}"
        );
        assert!(out.contains("needs a host with `userns`"), "{out}");
        assert!(out.contains(
            "**What to look for:**\n\n- exit code 0\n- the output contains `lesson3`\n- no cgroup named `lesson3` remains\n"
        ), "{out}");
        assert!(out.contains("*This step is expected to fail"), "{out}");
        assert!(out.contains("**Quiz.** Who is PID 1?\n\n- the shim\n- your `sleep`\n\n<details><summary>Answer</summary>\n\n**Right:** your `sleep`\n\nthe shim is outside.\n\n</details>"), "{out}");
        assert!(out.contains("`stepctr lesson 3 check` checks that\n\n- the hostname inside `island` is `atoll`\n\n<details><summary>Hints</summary>\n\n- --hostname\n"), "{out}");
        assert!(
            out.contains("**Clean up:**\n\n```console\n$ stepctr rm -f lesson3\n```"),
            "{out}"
        );
        assert!(!out.contains("{c}") && !out.contains("```step"), "{out}");
    }

    #[test]
    fn a_figure_becomes_its_svg_with_the_ascii_as_text() {
        let d = src_with(&["pipeline"]);
        let text = "Intro.\n\n```text figure=pipeline\n  pull -> <load>\n\n  & start\n```\n\nAfter.\n```text\nplain\n```\n";
        let out = chapter(text, "reference/x.md", d.path()).unwrap();
        assert!(out.contains(
            "<figure class=\"stepctr-figure\">\n<img src=\"../img/pipeline.svg\" alt=\"pull -&gt; &lt;load&gt;\">\n<details><summary>As text</summary><pre>  pull -&gt; &lt;load&gt;\n&#32;\n  &amp; start</pre></details>\n</figure>\n\nAfter.\n```text\nplain\n```\n"
        ), "{out}");
        let out = chapter(
            "```text figure=pipeline caption=\"The six stages\"\na\n```\n",
            "ch01-a.md",
            d.path(),
        )
        .unwrap();
        assert!(out.contains("<img src=\"img/pipeline.svg\" alt=\"The six stages\">\n<figcaption>The six stages</figcaption>"), "{out}");
    }

    #[test]
    fn a_missing_svg_names_the_file() {
        let d = src_with(&[]);
        let e = chapter("```text figure=nosuch\na\n```\n", "ch01-a.md", d.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("img/nosuch.svg") && e.contains("missing"), "{e}");
    }

    #[test]
    fn the_book_json_goes_through() {
        let d = src_with(&[]);
        let input = serde_json::json!([
            {"root": d.path().parent().unwrap(), "config": {"book": {"src": d.path().file_name().unwrap()}}, "renderer": "html"},
            {"sections": [
                {"PartTitle": "Lessons"},
                {"Chapter": {"name": "One", "content": "```step\n$ {stepctr} ps\n```\n", "path": "ch01-a.md",
                    "sub_items": [{"Chapter": {"name": "Sub", "content": "{c}", "path": "ch02-b.md", "sub_items": []}}]}},
                "Separator"
            ], "__non_exhaustive": null}
        ]);
        let out: Value = serde_json::from_str(&preprocess(&input.to_string()).unwrap()).unwrap();
        let ch = &out["sections"][1]["Chapter"];
        assert_eq!(ch["content"], "\n```console\n$ stepctr ps\n```\n\n");
        assert_eq!(ch["sub_items"][0]["Chapter"]["content"], "lesson2\n");
        assert_eq!(out["sections"][2], "Separator");
        assert!(supports("html") && !supports("latex"));
    }
}
