//! Without root: a user gets an image store of their own (as podman's), in their home, and can
//! pull, list, inspect and remove images there (containers without root: tests/rootless.rs);
//! what rootless mode does not cover yet says so in one line.

mod common;

use common::{stderr, stdout};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

fn main() {
    common::run_tests(
        tests![
            a_user_pulls_into_a_store_of_their_own,
            a_user_is_told_what_rootless_mode_lacks
        ],
        true,
    );
}

/// The uid and gid of `nobody`/`nogroup`.
const NOBODY: u32 = 65534;

/// stepctr as `nobody`, with HOME=home and nothing else of our environment.
fn as_nobody(home: &Path, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
            "NO_COLOR=1",
        ])
        .arg(format!("HOME={}", home.display()))
        .arg(common::stepctr_bin())
        .args(args)
        .output()
        .expect("run setpriv (util-linux)")
}

fn home() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("stepctr-user-")
        .tempdir()
        .expect("temp dir");
    std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).expect("chown the home");
    dir
}

fn a_user_pulls_into_a_store_of_their_own() {
    let home = home();
    let out = as_nobody(home.path(), &["-q", "pull"]);
    assert!(out.status.success(), "pull as nobody: {}", stderr(&out));
    let store = home.path().join(".local/share/stepctr/images");
    assert!(
        store.join("index.json").is_file(),
        "no store in the user's home"
    );
    // Everything in it belongs to the user.
    let mut stack = vec![home.path().join(".local")];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!(m.uid(), NOBODY, "{} is not the user's", p.display());
        if m.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    let images = stdout(&as_nobody(home.path(), &["images"]));
    assert!(
        images.contains("localhost/stepctr-busybox:latest"),
        "{images}"
    );
    let inspect = as_nobody(home.path(), &["inspect", "localhost/stepctr-busybox"]);
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    let rmi = as_nobody(home.path(), &["-q", "rmi", "localhost/stepctr-busybox"]);
    assert!(rmi.status.success(), "{}", stderr(&rmi));
    let images = stdout(&as_nobody(home.path(), &["images"]));
    assert!(!images.contains("stepctr-busybox"), "{images}");
}

fn a_user_is_told_what_rootless_mode_lacks() {
    let home = home();
    let out = as_nobody(home.path(), &["-q", "attach", "x"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "attach as nobody succeeded");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("stepctr: error: ")
            && err.contains("needs root")
            && err.contains("rootless mode does not cover it yet"),
        "{err}"
    );
    // Nothing was made for the refused command.
    assert!(!home.path().join(".local").exists());
}
