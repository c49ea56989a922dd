//! Rootless load: an unprivileged user pulls an image (busybox, and two layers with owners,
//! a device node, a trusted.* xattr, whiteouts and an opaque directory) into a store of their
//! own and `stepctr load`s it. The layers hold only the user's own files, with the overlayfs markers an
//! overlay mounted with `userxattr` reads, and such an overlay, mounted by the user inside a
//! user namespace of their own (`unshare -Urm`), stacks them: the layers are usable rootless.
//!
//! Each test runs in a `common::Env::rootless()`: a throw-away user (`stepctr-rl-<pid>-<n>`,
//! removed at the end even when the test fails) with a store and run directory of their own.

mod common;
#[path = "common/images.rs"]
mod images;

use common::{stderr, Env, TestUser};
use images::{Compression, Entry, ImageBuilder, Layer, Layout};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn main() {
    common::run_tests(
        tests![
            a_user_loads_layers_their_userns_overlay_can_stack,
            a_user_loads_a_flattened_image_their_userns_overlay_can_stack
        ],
        true,
    );
}

fn user(env: &Env) -> &TestUser {
    env.user.as_ref().expect("a rootless env")
}

/// `PROGRAM ARGS` as the env's user, nothing of our environment but HOME.
fn as_user(env: &Env, program: &str, args: &[&str]) -> Output {
    let u = user(env);
    Command::new("setpriv")
        .arg(format!("--reuid={}", u.uid))
        .arg(format!("--regid={}", u.gid))
        .args(["--init-groups", "--reset-env", "env"])
        .arg(format!("HOME={}", env.tmp().display()))
        .arg(program)
        .args(args)
        .output()
        .expect("run setpriv (util-linux)")
}

/// The container's layer directories, from its state.json.
fn layers(env: &Env, name: &str) -> Vec<PathBuf> {
    env.state(name)["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| PathBuf::from(l.as_str().expect("layer path")))
        .collect()
}

/// Everything in `layer` belongs to the user; no device node but whiteouts (char 0/0).
fn assert_all_theirs(env: &Env, layer: &Path) {
    let user = user(env);
    let mut stack = vec![layer.to_path_buf()];
    let mut seen = 0;
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).expect("stat");
        assert_eq!(
            (m.uid(), m.gid()),
            (user.uid, user.gid),
            "{} is not {}'s",
            p.display(),
            user.name
        );
        let t = m.file_type();
        assert!(
            !(t.is_block_device() || (t.is_char_device() && m.rdev() != 0)),
            "a device node: {}",
            p.display()
        );
        seen += 1;
        if m.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    assert!(seen > 3, "{}: only {seen} entries", layer.display());
}

/// The user, in a user namespace of their own (only their uid mapped, to root) and a mount
/// namespace it owns, mounts overlayfs with `userxattr` over `layers` and lists busybox.
fn assert_user_overlay_stacks(env: &Env, layers: &[PathBuf], tag: &str) {
    let d = env.tmp().join(format!("ovl-{tag}"));
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let script = format!(
        "mkdir -p {d}/upper {d}/work {d}/merged && \
         mount -t overlay -o userxattr,lowerdir={lower},upperdir={d}/upper,workdir={d}/work overlay {d}/merged && \
         ls {d}/merged/bin/busybox && id -u && \
         test ! -e {d}/merged/gone && test ! -e {d}/merged/app/old && test -e {d}/merged/app/keep && \
         test ! -e {d}/merged/opq/old && test -e {d}/merged/opq/new && test -u {d}/merged/suid && \
         test ! -e {d}/merged/dev/null && stat -c %u:%g {d}/merged/app/keep",
        d = d.display(),
        lower = lower.join(":")
    );
    let out = as_user(env, "unshare", &["-Urm", "sh", "-c", &script]);
    let text = common::stdout(&out);
    assert!(
        out.status.success(),
        "the overlay (userxattr) over the layers failed as {}: {}{}",
        user(env).name,
        text,
        stderr(&out)
    );
    assert!(text.contains("/merged/bin/busybox"), "{text}");
    assert!(
        text.lines().any(|l| l == "0"),
        "root inside the userns: {text}"
    );
    // The files the image gives 1000:1000 are root's inside: only the user's uid is mapped.
    assert_eq!(text.lines().last(), Some("0:0"), "{text}");
}

/// Busybox, then a layer with what an unprivileged user cannot make as the image says, then
/// one that whites out and makes a directory opaque. Written into the user's directory;
/// returns the reference to pull and the name it is stored under.
fn image(env: &Env) -> (String, String) {
    let a = Layer::from_entries(
        &[
            Entry::dir("app"),
            Entry::file("app/old", b"whited out above\n"),
            Entry::file("app/keep", b"kept\n").owner(1000, 1000),
            Entry::dir("opq").owner(0, 42),
            Entry::file("opq/old", b"hidden by the opaque directory above\n"),
            Entry::file("gone", b"whited out above\n"),
            Entry::dir("dev"),
            Entry::char_dev("dev/null", 1, 3),
            Entry::file("suid", b"setuid\n").mode(0o4755),
            Entry::file("x", b"x\n").xattr("trusted.stepctr", b"t"),
        ],
        Compression::Gzip,
    );
    let b = Layer::from_entries(
        &[
            Entry::whiteout("gone"),
            Entry::whiteout("app/old"),
            Entry::dir("opq"),
            Entry::opaque("opq"),
            Entry::file("opq/new", b"new\n"),
        ],
        Compression::Gzip,
    );
    let layout = env.tmp().join("layout");
    Layout::create(&layout).add_image(
        &ImageBuilder::busybox(Compression::Gzip)
            .layer(a, "rootless A")
            .layer(b, "rootless B"),
        "rl",
    );
    (
        images::oci_ref(&layout, "rl"),
        "localhost/layout:rl".to_string(),
    )
}

/// The one note of a rootless load, with what the image held that the user cannot make:
/// owners other than root (app/keep, opq), the device, the trusted.* xattr.
fn assert_one_rootless_note(out: &Output) {
    let err = stderr(out);
    let notes: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("rootless: only your own uid is mapped"))
        .collect();
    assert_eq!(notes.len(), 1, "one rootless note: {err}");
    for part in [
        "# rootless: ",
        ": 2 files keep your uid instead of the image's owners",
        "1 device nodes skipped",
        "1 trusted.*/security.* xattrs skipped",
    ] {
        assert!(notes[0].contains(part), "{part:?} in {}", notes[0]);
    }
    assert!(!err.contains("fchown"), "no fchown narrated: {err}");
}

fn a_user_loads_layers_their_userns_overlay_can_stack() {
    let env = Env::rootless();
    let (pull, reference) = image(&env);
    env.ok(&["-q", "pull", &pull]);
    let name = "rl-stacked";
    let out = env.ok(&["load", name, &reference]);
    assert_one_rootless_note(&out);
    let layers = layers(&env, name);
    assert_eq!(layers.len(), 3, "{layers:?}");
    for l in &layers {
        assert!(
            l.starts_with(&env.root),
            "{}: not in the user's store",
            l.display()
        );
        assert_all_theirs(&env, l);
    }
    assert_user_overlay_stacks(&env, &layers, "stacked");
    // A second container shares the layers: nothing is unpacked, no note.
    let out = env.ok(&["load", "rl-again", &reference]);
    assert!(!stderr(&out).contains("rootless:"), "{}", stderr(&out));
    env.ok(&["-q", "rm", name]);
    env.ok(&["-q", "rm", "rl-again"]);
    assert!(!env.container_dir(name).exists());
}

fn a_user_loads_a_flattened_image_their_userns_overlay_can_stack() {
    let env = Env::rootless();
    let (pull, reference) = image(&env);
    env.ok(&["-q", "pull", &pull]);
    let name = "rl-flat";
    let out = env.ok(&["load", name, &reference, "--flatten"]);
    assert_one_rootless_note(&out);
    let layers = layers(&env, name);
    assert_eq!(layers.len(), 1, "{layers:?}");
    assert_all_theirs(&env, &layers[0]);
    assert_user_overlay_stacks(&env, &layers, "flat");
    env.ok(&["-q", "rm", name]);
    assert!(!env.container_dir(name).exists());
}
