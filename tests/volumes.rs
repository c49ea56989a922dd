//! Issue 4, acceptance 4: the ephemeral writable layer and volumes.
//!
//! - What a container writes to its root lands in its overlay's upper directory, is seen by no
//!   other container, and is deleted by `rm`.
//! - What it writes to a volume (`-v HOST:CTR`) lands on the host, survives `rm` and is seen by
//!   the next container; `:ro` volumes refuse writes with EROFS.
//! - Volume mount points are resolved inside the rootfs: symlinks in a hostile image cannot send
//!   the bind mount to the host's paths.
//! - Bad `-v` specs are refused with one line, before anything is created.

mod common;
#[path = "common/images.rs"]
mod images;

use common::{assert_no_leaks, stderr, stdout, unique, Env};
use images::{Compression, Entry, ImageBuilder, Layer, Layout};
use std::path::{Path, PathBuf};

fn main() {
    common::run_tests(
        tests![
            writable_layer_is_private_and_deleted_by_rm,
            volume_data_survives_rm_and_is_seen_by_the_next_container,
            missing_host_dir_is_created_and_kept,
            readonly_volume_refuses_writes,
            file_volume,
            volumes_stage_by_stage_in_state_json,
            hostile_symlinks_keep_volumes_inside_the_rootfs,
            symlink_to_root_or_nowhere_is_refused,
            bad_specs_give_one_line,
        ],
        true,
    );
}

fn host_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("stepctr-vol-")
        .tempdir()
        .expect("temp dir")
}

fn vol(host: &Path, ctr: &str) -> String {
    format!("{}:{ctr}", host.display())
}

/// The mount points of the container's mount namespace, as the kernel lists them.
fn ns_mount_points(env: &Env, name: &str) -> Vec<PathBuf> {
    let ns = env.container_dir(name).join("ns/mnt");
    let out = std::process::Command::new("nsenter")
        .arg(format!("--mount={}", ns.display()))
        .args(["cat", "/proc/self/mountinfo"])
        .output()
        .expect("run nsenter");
    assert!(out.status.success(), "nsenter: {}", stderr(&out));
    stdout(&out)
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .collect()
}

fn writable_layer_is_private_and_deleted_by_rm() {
    let env = Env::new();
    let a = unique("wl-a");
    let b = unique("wl-b");
    let out = env.ok(&[
        "all",
        "--name",
        &a,
        "--",
        "sh",
        "-c",
        "echo secret > /data.txt",
    ]);
    let upper = env.container_dir(&a).join("upper");
    assert!(
        stderr(&out).contains(&format!("writable layer {}", upper.display())),
        "the fs stage says where writes go:\n{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(upper.join("data.txt")).expect("data.txt is in upper/"),
        "secret\n"
    );
    // Same image, another container: its own, empty writable layer.
    let out = env.run(&[
        "-q",
        "all",
        "--name",
        &b,
        "--rm",
        "--",
        "test",
        "!",
        "-e",
        "/data.txt",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    env.ok(&["-q", "rm", &a]);
    assert!(!upper.exists(), "rm deletes the writable layer");
    assert_no_leaks(&env, &a);
    assert_no_leaks(&env, &b);
}

fn volume_data_survives_rm_and_is_seen_by_the_next_container() {
    let env = Env::new();
    let host = host_dir();
    let v = vol(host.path(), "/data");
    let a = unique("vol-a");
    let b = unique("vol-b");
    env.ok(&[
        "-q",
        "all",
        "--name",
        &a,
        "--rm",
        "-v",
        &v,
        "--",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    assert_no_leaks(&env, &a);
    assert_eq!(
        std::fs::read_to_string(host.path().join("f")).expect("the file is on the host"),
        "kept\n"
    );
    let out = env.ok(&[
        "-q", "all", "--name", &b, "--rm", "-v", &v, "--", "cat", "/data/f",
    ]);
    assert_eq!(stdout(&out), "kept\n");
    assert_no_leaks(&env, &b);
    assert!(host.path().join("f").exists(), "rm keeps the volume's data");
}

fn missing_host_dir_is_created_and_kept() {
    let env = Env::new();
    let host = host_dir();
    let missing = host.path().join("new/deeper");
    let name = unique("vol-new");
    let out = env.ok(&[
        "all",
        "--name",
        &name,
        "--rm",
        "-v",
        &vol(&missing, "/srv/x"),
        "--",
        "sh",
        "-c",
        "echo hi > /srv/x/f",
    ]);
    assert!(
        stderr(&out).contains(&format!("mkdirat(AT_FDCWD, \"{}\"", missing.display())),
        "the host directory's creation is narrated:\n{}",
        stderr(&out)
    );
    assert_no_leaks(&env, &name);
    assert_eq!(std::fs::read_to_string(missing.join("f")).unwrap(), "hi\n");
}

fn readonly_volume_refuses_writes() {
    let env = Env::new();
    let host = host_dir();
    std::fs::write(host.path().join("f"), "original\n").unwrap();
    let name = unique("vol-ro");
    let script = "cat /data/f; grep ' /data ' /proc/self/mountinfo | cut -d' ' -f6; \
                  if echo x > /data/f; then exit 0; else exit 42; fi";
    let out = env.run(&[
        "-q",
        "all",
        "--name",
        &name,
        "--rm",
        "-v",
        &format!("{}:ro", vol(host.path(), "/data")),
        "--",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(out.status.code(), Some(42), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("original\nro,"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("Read-only file system"),
        "EROFS: {}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(host.path().join("f")).unwrap(),
        "original\n"
    );
    assert_no_leaks(&env, &name);
}

fn file_volume() {
    let env = Env::new();
    let host = host_dir();
    let file = host.path().join("greeting");
    std::fs::write(&file, "hello from the host\n").unwrap();
    let name = unique("vol-file");
    let out = env.ok(&[
        "-q",
        "all",
        "--name",
        &name,
        "--rm",
        "-v",
        &format!("{}:ro", vol(&file, "/etc/greeting")),
        "--",
        "cat",
        "/etc/greeting",
    ]);
    assert_eq!(stdout(&out), "hello from the host\n");
    assert_no_leaks(&env, &name);
}

fn volumes_stage_by_stage_in_state_json() {
    let env = Env::new();
    let host = host_dir();
    let name = unique("vol-st");
    env.ok(&["-q", "load", &name]);
    env.ok(&["-q", "cgroup", &name]);
    env.ok(&["-q", "ns", &name]);
    env.ok(&[
        "-q",
        "fs",
        &name,
        "-v",
        &vol(host.path(), "/a/b"),
        "--volume",
        &format!("{}:ro", vol(host.path(), "/c")),
    ]);
    let state = env.state(&name);
    let vols = state["volumes"].as_array().expect("volumes in state.json");
    assert_eq!(vols.len(), 2);
    assert_eq!(vols[0]["container"], "/c");
    assert_eq!(vols[0]["readonly"], true);
    assert_eq!(vols[1]["container"], "/a/b");
    let rootfs = env.container_dir(&name).join("rootfs");
    let points = ns_mount_points(&env, &name);
    for p in ["a/b", "c"] {
        assert!(points.contains(&rootfs.join(p)), "{p} mounted: {points:?}");
    }
    let out = env.ok(&[
        "-q",
        "start",
        &name,
        "--",
        "sh",
        "-c",
        "echo hi > /a/b/f; cat /c/f",
    ]);
    assert_eq!(stdout(&out), "hi\n");
    env.ok(&["-q", "rm", &name]);
    assert_no_leaks(&env, &name);
    assert!(host.path().join("f").exists());
}

/// An image whose symlinks point at host paths: absolute (`/abs -> /tmp/.../victim1`),
/// climbing (`/rel -> ../../../..tmp/.../victim2`), to `/`, and to nothing. The image also
/// holds the victims' paths as directories, so resolving inside the root succeeds.
fn hostile_image(env: &Env, victims: &[&Path]) -> String {
    let layout_dir = host_dir();
    // Each test its own image name: tests run in parallel and share the store.
    let base = unique("hostile");
    let layout = layout_dir.path().join(&base);
    let mut entries = Vec::new();
    for v in victims {
        let rel = v.strip_prefix("/").unwrap();
        let mut acc = PathBuf::new();
        for c in rel.components() {
            acc.push(c);
            entries.push(Entry::dir(&acc.to_string_lossy()));
        }
    }
    let up = "../".repeat(12);
    entries.push(Entry::symlink("abs", &victims[0].to_string_lossy()));
    entries.push(Entry::symlink(
        "rel",
        &format!("{up}{}", victims[1].strip_prefix("/").unwrap().display()),
    ));
    entries.push(Entry::symlink("toroot", "/"));
    entries.push(Entry::symlink("uptoroot", &up));
    entries.push(Entry::symlink("dangling", "/nowhere/at/all"));
    let img = ImageBuilder::busybox(Compression::Gzip).layer(
        Layer::from_entries(&entries, Compression::Gzip),
        "symlinks aimed at the host",
    );
    Layout::create(&layout).add_image(&img, "v1");
    env.ok(&["-q", "pull", &images::oci_ref(&layout, "v1")]);
    format!("localhost/{base}:v1")
}

fn hostile_symlinks_keep_volumes_inside_the_rootfs() {
    let env = Env::new();
    let victims = host_dir();
    let (v1, v2) = (
        victims.path().join("victim1"),
        victims.path().join("victim2"),
    );
    std::fs::create_dir(&v1).unwrap();
    std::fs::create_dir(&v2).unwrap();
    let image = hostile_image(&env, &[&v1, &v2]);
    let host = host_dir();
    let name = unique("vol-hostile");
    env.ok(&["-q", "load", &name, &image]);
    env.ok(&["-q", "cgroup", &name]);
    env.ok(&["-q", "ns", &name]);
    env.ok(&[
        "-q",
        "fs",
        &name,
        "-v",
        &vol(host.path(), "/abs"),
        "-v",
        &vol(host.path(), "/rel/sub"),
    ]);
    let rootfs = env.container_dir(&name).join("rootfs");
    let points = ns_mount_points(&env, &name);
    for inside in [
        rootfs.join(v1.strip_prefix("/").unwrap()),
        rootfs.join(v2.strip_prefix("/").unwrap()).join("sub"),
    ] {
        assert!(
            points.contains(&inside),
            "{} is a mount point: {points:?}",
            inside.display()
        );
    }
    for host_path in [&v1, &v2, &v2.join("sub")] {
        assert!(
            !points.iter().any(|p| p == host_path),
            "the host's {} was mounted on",
            host_path.display()
        );
    }
    let out = env.ok(&[
        "-q",
        "start",
        &name,
        "--",
        "sh",
        "-c",
        "echo via-abs > /abs/f1; echo via-rel > /rel/sub/f2",
    ]);
    assert!(out.status.success());
    env.ok(&["-q", "rm", &name]);
    assert_no_leaks(&env, &name);
    assert_eq!(
        std::fs::read_to_string(host.path().join("f1")).unwrap(),
        "via-abs\n"
    );
    assert_eq!(
        std::fs::read_to_string(host.path().join("f2")).unwrap(),
        "via-rel\n"
    );
    // The host's victims were never touched: nothing created in them.
    assert_eq!(std::fs::read_dir(&v1).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(&v2).unwrap().count(), 0);
}

fn symlink_to_root_or_nowhere_is_refused() {
    let env = Env::new();
    let victims = host_dir();
    let (v1, v2) = (
        victims.path().join("victim1"),
        victims.path().join("victim2"),
    );
    let image = hostile_image(&env, &[&v1, &v2]);
    let host = host_dir();
    for (ctr, want) in [
        ("/toroot", "resolves to the container's root itself"),
        ("/uptoroot", "resolves to the container's root itself"),
        ("/dangling", "is a symlink to something the image lacks"),
    ] {
        let name = unique("vol-refuse");
        env.ok(&["-q", "load", &name, &image]);
        env.ok(&["-q", "cgroup", &name]);
        env.ok(&["-q", "ns", &name]);
        let out = env.run(&["-q", "fs", &name, "-v", &vol(host.path(), ctr)]);
        assert_eq!(out.status.code(), Some(1), "{ctr}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(want), "{ctr}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{ctr}: one line: {err}");
        env.ok(&["-q", "rm", &name]);
        assert_no_leaks(&env, &name);
    }
    assert_eq!(std::fs::read_dir(host.path()).unwrap().count(), 0);
}

fn bad_specs_give_one_line() {
    let env = Env::new();
    let host = host_dir();
    let h = host.path().display().to_string();
    let cases = [
        (h.clone(), "no ':'"),
        ("relative/dir:/data".to_string(), "relative"),
        (format!("{h}:data"), "relative"),
        (format!("{h}:/data/../etc"), "`..`"),
        (format!("{h}/..:/data"), "`..`"),
        (format!("{h}:/data:rx"), "unknown option"),
        (format!("{h}:/data:ro:x"), "too many"),
        (format!("{h}:/"), "cannot be /"),
        (format!("{h}:/proc/x"), "/proc"),
    ];
    for (spec, want) in &cases {
        let name = unique("vol-bad");
        for args in [
            vec!["all", "--name", &name, "-v", spec, "--rm", "--", "true"],
            vec!["fs", &name, "-v", spec],
        ] {
            let out = env.run(&args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            assert!(
                err.contains("invalid volume") && err.contains(want),
                "{args:?}: {err}"
            );
            assert_eq!(
                err.trim_end().lines().count(),
                1,
                "{args:?}: one line: {err}"
            );
            assert!(!env.container_dir(&name).exists(), "nothing created");
        }
    }
    let a = vol(host.path(), "/data");
    let out = env.run(&["all", "-v", &a, "-v", &a, "--rm", "--", "true"]);
    assert!(
        stderr(&out).contains("both mount on /data"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_dir(host.path()).unwrap().count(), 0);
}
