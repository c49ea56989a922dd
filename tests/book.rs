//! The book (book/, issue 8): it builds with the `mdbook` CLI and the `mdbook-stepctr`
//! preprocessor (src/book.rs), always into a temporary directory; every lesson is included by
//! exactly one chapter and copied nowhere (acceptance 2); the built HTML, JS and CSS name no
//! remote host and load nothing remote (acceptance 4); the lesson blocks are rendered for a
//! reader; a figure whose SVG is missing fails the build, naming the file.
//!
//! Needs `mdbook` 0.4.52 (`cargo install mdbook --locked --version 0.4.52`; .ci/run does it).

use regex::Regex;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `mdbook` binary: on PATH, else cargo's bin directory.
fn mdbook() -> PathBuf {
    let cargo_bin = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cargo/bin/mdbook"))
        .filter(|p| p.is_file());
    for m in [Some(PathBuf::from("mdbook")), cargo_bin]
        .into_iter()
        .flatten()
    {
        if Command::new(&m)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return m;
        }
    }
    panic!(
        "mdbook is not installed (neither on PATH nor in ~/.cargo/bin): the book tests need it; \
         install it with `cargo install mdbook --locked --version 0.4.52` (.ci/run does)"
    );
}

/// `mdbook build BOOK -d OUT`, with the preprocessor cargo built for these tests (book.toml's
/// own command is `cargo run`, which would wait for the lock this test run holds).
fn build(book: &Path, out: &Path) -> Output {
    Command::new(mdbook())
        .arg("build")
        .arg(book)
        .arg("-d")
        .arg(out)
        .env(
            "MDBOOK_PREPROCESSOR__STEPCTR__COMMAND",
            env!("CARGO_BIN_EXE_mdbook-stepctr"),
        )
        .output()
        .expect("running mdbook")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    files(dir, &mut v);
    v.sort();
    v
}

fn lessons() -> Vec<PathBuf> {
    files_under(&repo().join("lessons"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect()
}

/// Acceptance 2, first half: every `lessons/NN-*.md` is the target of exactly one
/// `{{#include}}` (the whole file), in chapter file `chNN-*.md`.
#[test]
fn every_lesson_is_included_by_exactly_one_chapter() {
    let include = Regex::new(r"\{\{#include\s+([^}\s]+)\s*\}\}").unwrap();
    let mut by: BTreeMap<PathBuf, Vec<String>> = lessons()
        .into_iter()
        .map(|l| (l.canonicalize().unwrap(), Vec::new()))
        .collect();
    let src = repo().join("book/src");
    for f in files_under(&src) {
        if f.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.strip_prefix(&src).unwrap().display().to_string();
        for cap in include.captures_iter(&text) {
            let (file, part) = cap[1].split_once(':').unwrap_or((&cap[1], ""));
            let Ok(target) = f.parent().unwrap().join(file).canonicalize() else {
                panic!("{name}: {{{{#include {}}}}} names no file", &cap[1]);
            };
            if let Some(who) = by.get_mut(&target) {
                assert!(
                    part.is_empty(),
                    "{name} includes only part of {file} ({part}): a chapter is the whole lesson"
                );
                who.push(name.clone());
            }
        }
    }
    assert!(by.len() >= 11, "lessons/ has {} lessons", by.len());
    for (lesson, who) in &by {
        let l = lesson.file_name().unwrap().to_string_lossy();
        assert_eq!(
            who.len(),
            1,
            "lessons/{l} must be included by exactly one chapter of book/src, not {who:?}"
        );
        let nn = &l[..2];
        assert!(
            who[0].starts_with(&format!("ch{nn}-")),
            "lessons/{l} is included by {}, not by chapter ch{nn}-*.md (chapter N = lesson N)",
            who[0]
        );
    }
}

/// Markdown without the contents of its ```console blocks: those are a command and the real
/// output stepctr gives (tests/book_examples.rs compares them), which may well print a line a
/// lesson also shows, such as a stage header.
fn without_console_blocks(text: &str) -> String {
    let mut out = String::new();
    let mut console = false;
    for line in text.lines() {
        if console {
            console = !line.starts_with("```");
            continue;
        }
        console = line.starts_with("```console");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Acceptance 2, second half: no line of a lesson (40 characters or more) is copied anywhere in
/// book/ (the build output aside, and the real output in console examples): chapters include
/// the lessons, they do not repeat them.
#[test]
fn no_lesson_text_is_copied_into_the_book() {
    let mut lines: Vec<(String, String)> = Vec::new();
    for l in lessons() {
        let name = l.file_name().unwrap().to_string_lossy().into_owned();
        for line in std::fs::read_to_string(&l).unwrap().lines() {
            let t = line.trim();
            if t.chars().count() >= 40 {
                lines.push((name.clone(), t.to_string()));
            }
        }
    }
    assert!(lines.len() > 100, "too few lesson lines: {}", lines.len());
    let book = repo().join("book");
    let build = book.join("build");
    let mut copies = Vec::new();
    for f in files_under(&book) {
        if f.starts_with(&build) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue; // not text (a picture)
        };
        let text = without_console_blocks(&text);
        for (lesson, line) in &lines {
            if text.contains(line.as_str()) {
                copies.push(format!(
                    "{} repeats lessons/{lesson}: {line:?}",
                    f.strip_prefix(repo()).unwrap().display()
                ));
            }
        }
    }
    assert!(
        copies.is_empty(),
        "lesson text copied into book/ (include it instead):\n{}",
        copies.join("\n")
    );
}

/// Is this URL host loopback?
fn loopback(host: &str) -> bool {
    let host = host.rsplit('@').next().unwrap_or(host);
    let bare = if host.starts_with('[') {
        host.split(']').next().unwrap_or(host).to_string() + "]"
    } else {
        host.split(':').next().unwrap_or(host).to_string()
    };
    matches!(
        bare.to_ascii_lowercase().as_str(),
        "127.0.0.1" | "localhost" | "[::1]"
    )
}

/// A JS or CSS asset without its comments (licence headers name their authors' sites): block
/// comments, and in JS whole lines that are `//` comments. The search index is data, kept whole.
fn without_comments(path: &Path, text: &str) -> String {
    let name = path.file_name().unwrap().to_string_lossy();
    let ext = path.extension().map(|e| e.to_string_lossy().into_owned());
    if name.starts_with("searchindex") || !matches!(ext.as_deref(), Some("js" | "css")) {
        return text.to_string();
    }
    let block = Regex::new(r"(?s)/\*.*?\*/").unwrap();
    let text = block.replace_all(text, "");
    if ext.as_deref() == Some("css") {
        return text.into_owned();
    }
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Acceptance 4: what in these built files (path, text) refers to a remote host: an http(s) URL
/// to a host other than loopback (outside comments of JS/CSS assets), a protocol-relative
/// reference, a <script src>/<link href> that is not local.
fn remote_references(root: &Path, web: &[(PathBuf, String)]) -> Vec<String> {
    let url = Regex::new(r"(?i)\bhttps?:(?://|\\/\\/)([A-Za-z0-9.\-_~%@:\[\]]*)").unwrap();
    let xmlns = Regex::new(r#"xmlns(?::\w+)?=\\?["']?$"#).unwrap();
    let relative = Regex::new(
        r#"(?i)(?:\b(?:src|href|action|poster|srcset)\s*=\s*\\?["']?|url\(\s*["']?|@import\s+["']?)//"#,
    )
    .unwrap();
    let script =
        Regex::new(r#"(?i)<(?:script|link)\b[^>]*\b(?:src|href)\s*=\s*["']?([^"'\s>]*)"#).unwrap();
    let playground = web.iter().any(|(p, t)| {
        p.extension().is_some_and(|e| e == "html") && t.contains("class=\"playground\"")
    });
    let mut remote = Vec::new();
    for (p, t) in web {
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let code = without_comments(p, t);
        for m in url.captures_iter(&code) {
            let whole = m.get(0).unwrap();
            let host = &m[1];
            if loopback(host) {
                continue;
            }
            // An XML namespace is a name, never fetched.
            if host == "www.w3.org" && xmlns.is_match(&code[..whole.start()]) {
                continue;
            }
            // mdBook's book.js asks play.rust-lang.org only to run Rust code blocks of the
            // playground; book.toml turns it off and the book has none (checked below).
            if rel == "book.js" && host == "play.rust-lang.org" && !playground {
                continue;
            }
            remote.push(format!("{rel}: {}", whole.as_str()));
        }
        for m in relative.find_iter(&code) {
            remote.push(format!("{rel}: protocol-relative {}", m.as_str()));
        }
        for m in script.captures_iter(t) {
            let target = &m[1];
            if target.contains("//") && !url.captures(target).is_some_and(|c| loopback(&c[1])) {
                remote.push(format!("{rel}: loads {target}"));
            }
        }
    }
    if playground {
        remote.push(
            "a chapter has a Rust playground block, whose book.js code would ask play.rust-lang.org"
                .into(),
        );
    }
    remote
}

#[test]
fn remote_references_are_found() {
    let root = Path::new("/b");
    let f = |name: &str, text: &str| (root.join(name), text.to_string());
    let clean = [
        f("a.html", "<a href=\"ch01.html\">x</a> curl http://127.0.0.1:8080/ http://localhost/ http://[::1]:80/ sed -n \"s/.*id: //p\""),
        f("b.css", "/* see https://example.com */ a { background: url(\"data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg'/>\") }"),
        f("c.js", "// https://github.com/x\nlet a = 1; /* http://x.org */"),
        f("book.js", "fetch('https://play.rust-lang.org/evaluate.json')"),
    ];
    assert_eq!(remote_references(root, &clean), Vec::<String>::new());
    let bad = [
        f(
            "a.html",
            "<script src=\"https://cdn.example.com/x.js\"></script>",
        ),
        f(
            "b.html",
            "<link rel=\"stylesheet\" href=\"//fonts.example.com/css\">",
        ),
        f("c.css", "a { background: url(//cdn.example.com/x.png) }"),
        f("d.js", "let u = \"https:\\/\\/example.com\";"),
        f(
            "e.html",
            "<pre class=\"playground\"></pre> see http://example.org/",
        ),
        f(
            "book.js",
            "fetch('https://play.rust-lang.org/evaluate.json')",
        ),
    ];
    let found = remote_references(root, &bad).join("\n");
    for want in [
        "a.html: https://cdn.example.com",
        "a.html: loads https://cdn.example.com/x.js",
        "b.html: protocol-relative",
        "b.html: loads //fonts.example.com/css",
        "c.css: protocol-relative",
        "d.js: https:\\/\\/example.com",
        "e.html: http://example.org",
        "book.js: https://play.rust-lang.org",
        "Rust playground",
    ] {
        assert!(found.contains(want), "{want:?} not in:\n{found}");
    }
}

/// Builds the real book once (into a temporary directory) and checks what a reader's browser
/// gets: acceptance 4 and the rendered lesson blocks.
#[test]
fn the_built_book_is_offline_and_renders_the_lessons() {
    let out = tempfile::tempdir().unwrap();
    let o = build(&repo().join("book"), out.path());
    assert!(
        o.status.success(),
        "mdbook build failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let built = files_under(out.path());
    let text_of = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    let web: Vec<(PathBuf, String)> = built
        .iter()
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "html" || e == "js" || e == "css")
        })
        .map(|p| (p.clone(), text_of(p)))
        .collect();
    assert!(web.len() > 15, "too few built files: {}", web.len());

    let remote = remote_references(out.path(), &web);
    assert!(
        remote.is_empty(),
        "the built book refers to remote hosts:\n{}",
        remote.join("\n")
    );

    // Every lesson block is rendered (none left as a raw ```step block), every picture exists.
    let img = Regex::new(r#"<img src="([^"]+)""#).unwrap();
    for (p, t) in &web {
        let rel = p.strip_prefix(out.path()).unwrap().display().to_string();
        for role in ["step", "expect", "check", "quiz", "task", "cleanup"] {
            assert!(
                !t.contains(&format!("language-{role}\"")),
                "{rel}: a ```{role} block is not rendered"
            );
        }
        for m in img.captures_iter(t) {
            assert!(
                p.parent().unwrap().join(&m[1]).is_file(),
                "{rel}: <img src=\"{}\"> is not in the built book",
                &m[1]
            );
        }
    }

    // Lesson 3's chapter: a quiz with its answer folded in <details>, console blocks of
    // `$ stepctr ...` with `{c}` read as lesson3, and what to look for.
    let ch3 = web
        .iter()
        .find(|(p, _)| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ch03-"))
        })
        .map(|(_, t)| t.as_str())
        .expect("no ch03-*.html in the built book");
    let quiz = Regex::new(
        r"(?s)<strong>Quiz\.</strong>.*?<ul>.*?</ul>\s*<details><summary>Answer</summary>\s*<p><strong>Right:</strong>[^<]*.*?</details>",
    )
    .unwrap();
    assert!(
        quiz.is_match(ch3),
        "ch03: no quiz with its answer inside <details>"
    );
    assert!(
        ch3.contains("<code class=\"language-console\">$ stepctr ns lesson3 --network none"),
        "ch03: no console block with `$ stepctr ns lesson3 ...`"
    );
    assert!(ch3.contains("<strong>What to look for:</strong>"), "ch03");
    assert!(
        ch3.contains("no cgroup named <code>lesson3</code> remains"),
        "ch03"
    );
    assert!(
        ch3.contains("<code>stepctr lesson 3 check</code>"),
        "ch03: no Your turn"
    );
}

/// A ```text figure=NAME block whose book/src/img/NAME.svg does not exist fails the build,
/// and the message names the file.
#[test]
fn a_figure_without_its_svg_fails_the_build() {
    let book = tempfile::tempdir().unwrap();
    let src = book.path().join("src");
    std::fs::create_dir_all(src.join("img")).unwrap();
    std::fs::write(
        book.path().join("book.toml"),
        "[book]\ntitle = \"t\"\n\n[preprocessor.stepctr]\ncommand = \"false\"\nafter = [\"links\"]\n",
    )
    .unwrap();
    std::fs::write(src.join("SUMMARY.md"), "# S\n\n- [One](ch01-one.md)\n").unwrap();
    std::fs::write(
        src.join("ch01-one.md"),
        "# One\n\n```text figure=nosuch\n a -> b\n```\n",
    )
    .unwrap();
    let o = build(book.path(), &book.path().join("out"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.status.success(), "the build passed:\n{said}");
    assert!(
        said.contains("img/nosuch.svg") && said.contains("missing"),
        "the failure does not name the missing SVG:\n{said}"
    );
    // With the SVG, the same book builds, and the picture is in it.
    std::fs::write(
        src.join("img/nosuch.svg"),
        "<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
    )
    .unwrap();
    let o = build(book.path(), &book.path().join("out"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(book.path().join("out/ch01-one.html")).unwrap();
    assert!(
        html.contains("<img src=\"img/nosuch.svg\" alt=\"a -&gt; b\">"),
        "{html}"
    );
    assert!(html.contains("<details><summary>As text</summary><pre> a -&gt; b</pre></details>"));
}
