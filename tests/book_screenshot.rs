//! Issue 8, acceptance 5: a headless browser shows a chapter of the built book with its diagram
//! drawn. The book is built into a temporary directory (`mdbook build -d`, with the
//! `mdbook-stepctr` preprocessor cargo built for this test), Debian's Chromium takes a
//! screenshot of chapter 3 (`text figure=namespaces`, drawn as `img/namespaces.svg`), and the
//! PNG is decoded and searched for the pale green that only that SVG paints (the inside-the-
//! container column): enough pixels of it, over an area of the right shape, means the picture
//! was loaded and rendered, not just referenced. The screenshot is kept under target/ and its
//! path printed.
//!
//! Needs `chromium` (Debian's package: `apt-get install --no-install-recommends chromium`, which
//! .ci/run does) and `mdbook` 0.4.52 (on PATH or in ~/.cargo/bin). Runs as any user.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The chapter screenshotted, and the figure it must show.
const CHAPTER: &str = "ch03-namespaces.html";
const FIGURE: &str = "img/namespaces.svg";
/// The fill of the container's column in namespaces.svg: a colour neither mdBook's theme nor
/// the other figures on that page use.
const FILL: &str = "#dcefe1";
const RGB: [u8; 3] = [0xdc, 0xef, 0xe1];
/// The window: wide enough for the content column, tall enough to hold the figure, which
/// comes right after the chapter's first paragraph.
const WIDTH: u32 = 1000;
const HEIGHT: u32 = 1800;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The first program of `names` that runs with `--version`, looked for on PATH and then in
/// `extra` (a path), or None.
fn find(names: &[&str], extra: Option<PathBuf>) -> Option<PathBuf> {
    names
        .iter()
        .map(PathBuf::from)
        .chain(extra.filter(|p| p.is_file()))
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

fn chromium() -> PathBuf {
    find(&["chromium", "chromium-browser"], None).unwrap_or_else(|| {
        panic!(
            "chromium is not installed (not on PATH): the screenshot test (issue 8, acceptance 5) \
             needs Debian's Chromium: `apt-get install --no-install-recommends chromium` \
             (.ci/run installs it)"
        )
    })
}

fn mdbook() -> PathBuf {
    let cargo_bin = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/mdbook"));
    find(&["mdbook"], cargo_bin).unwrap_or_else(|| {
        panic!(
            "mdbook is not installed (neither on PATH nor in ~/.cargo/bin): install it with \
             `cargo install mdbook --locked --version 0.4.52` (.ci/run does)"
        )
    })
}

/// Runs `cmd` to its end, killing it after `limit`; returns (success, stdout+stderr).
fn run(mut cmd: Command, limit: Duration) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let said = std::fs::read_to_string(&out).unwrap_or_default()
        + &std::fs::read_to_string(&err).unwrap_or_default();
    match status {
        Some(s) => (s.success(), said),
        None => (false, format!("{said}\n(killed after {limit:?})")),
    }
}

/// What `count` found in a screenshot.
struct Found {
    width: u32,
    height: u32,
    /// Pixels of the colour looked for.
    n: u32,
    /// Their bounding box: (x0, y0, x1, y1).
    bbox: Option<(u32, u32, u32, u32)>,
}

/// The pixels of colour `rgb` (within 3 per channel) in the PNG `png_file`.
fn count(png_file: &Path, rgb: [u8; 3]) -> Found {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_file).unwrap(),
    ));
    let mut reader = decoder.read_info().expect("the screenshot is a PNG");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader
        .next_frame(&mut buf)
        .expect("decoding the screenshot");
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    assert_eq!(info.bit_depth, png::BitDepth::Eight, "8-bit PNG expected");
    let (w, h) = (info.width, info.height);
    let (mut n, mut bbox) = (0u32, None::<(u32, u32, u32, u32)>);
    for y in 0..h {
        let row = &buf[(y * info.line_size as u32) as usize..][..info.line_size];
        for x in 0..w {
            let p = &row[x as usize * channels..][..3];
            if p.iter().zip(rgb).all(|(&a, b)| a.abs_diff(b) <= 3) {
                n += 1;
                bbox = Some(match bbox {
                    None => (x, y, x, y),
                    Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
                });
            }
        }
    }
    Found {
        width: w,
        height: h,
        n,
        bbox,
    }
}

#[test]
fn a_chapter_screenshot_shows_its_diagram() {
    let chromium = chromium();
    let mdbook = mdbook();

    // The SVG paints the colour the screenshot is searched for.
    let svg = std::fs::read_to_string(repo().join("book/src").join(FIGURE)).unwrap();
    assert!(
        svg.contains(&format!("fill=\"{FILL}\"")),
        "book/src/{FIGURE} no longer uses the fill {FILL} this test looks for: update FILL/RGB"
    );

    // Build the book into a temporary directory, never into the repo.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("book");
    let mut build = Command::new(&mdbook);
    build
        .current_dir(repo().join("book"))
        .arg("build")
        .arg("-d")
        .arg(&out)
        .env(
            "MDBOOK_PREPROCESSOR__STEPCTR__COMMAND",
            env!("CARGO_BIN_EXE_mdbook-stepctr"),
        );
    let (ok, said) = run(build, Duration::from_secs(300));
    assert!(ok, "mdbook build failed:\n{said}");

    // The chapter shows the figure as the SVG (the preprocessor's `text figure=` rendering).
    let chapter = out.join(CHAPTER);
    let html =
        std::fs::read_to_string(&chapter).unwrap_or_else(|e| panic!("{}: {e}", chapter.display()));
    assert!(
        html.contains(&format!("<img src=\"{FIGURE}\"")),
        "{CHAPTER} does not show {FIGURE} (is lesson 3's diagram still `text figure=namespaces`?)"
    );
    assert!(
        out.join(FIGURE).is_file(),
        "{FIGURE} was not copied into the built book"
    );

    // Screenshot it: kept under target/, for a human to look at.
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("book-screenshot");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join(CHAPTER.replace(".html", ".png"));
    let _ = std::fs::remove_file(&shot);
    let mut browse = Command::new(&chromium);
    browse
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--force-color-profile=srgb",
        ])
        .arg(format!(
            "--user-data-dir={}",
            tmp.path().join("profile").display()
        ))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("--window-size={WIDTH},{HEIGHT}"))
        .arg(format!("file://{}", chapter.display()))
        // Chromium's complaints about the missing D-Bus are harmless.
        .env("HOME", tmp.path());
    let (ok, said) = run(browse, Duration::from_secs(120));
    assert!(
        ok && shot.is_file(),
        "chromium took no screenshot of {CHAPTER}:\n{said}"
    );
    println!("screenshot: {}", shot.display());

    // The figure is drawn: a large block of the SVG's own green, shaped like its column.
    let Found {
        width: w,
        height: h,
        n,
        bbox,
    } = count(&shot, RGB);
    println!("{w}x{h} px, {n} px of {FILL}, within {bbox:?}");
    assert_eq!((w, h), (WIDTH, HEIGHT), "screenshot size");
    let (x0, y0, x1, y1) = bbox.unwrap_or_else(|| {
        panic!(
            "no pixel of {FILL} in {}: the diagram {FIGURE} was not drawn",
            shot.display()
        )
    });
    assert!(
        n >= 40_000 && x1 - x0 >= 150 && y1 - y0 >= 250,
        "only {n} px of {FILL} within ({x0},{y0})-({x1},{y1}) in {}: the diagram {FIGURE} \
         is not drawn in full (expected at least 40000 px over 150x250)",
        shot.display()
    );
}
