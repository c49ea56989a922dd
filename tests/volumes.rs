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
            readonly_volume_covers_the_mounts_below_it,
            readonly_without_mount_setattr_remounts_each_mount,
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

/// A host directory with a tmpfs mounted on its `sub/` (nosuid,nodev), made in the test
/// binary's private mount namespace, where stepctr (our child) sees it too. Unmounted on drop,
/// even when the test fails.
struct DirWithSubmount {
    dir: tempfile::TempDir,
}

impl DirWithSubmount {
    fn new() -> DirWithSubmount {
        let dir = host_dir();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let target = std::ffi::CString::new(sub.to_str().unwrap()).unwrap();
        // SAFETY: plain mount(2) with C strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"size=1m".as_ptr().cast(),
            )
        };
        assert_eq!(rc, 0, "mount tmpfs: {}", std::io::Error::last_os_error());
        DirWithSubmount { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn sub(&self) -> PathBuf {
        self.dir.path().join("sub")
    }

    /// The submount's per-mount options, as the host (this test) sees them.
    fn host_options(&self) -> String {
        let sub = self.sub();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        info.lines()
            .filter(|l| l.split(' ').nth(4) == Some(sub.to_str().unwrap()))
            .filter_map(|l| l.split(' ').nth(5))
            .next_back()
            .expect("the tmpfs is mounted")
            .to_string()
    }
}

impl Drop for DirWithSubmount {
    fn drop(&mut self) {
        if let Ok(target) = std::ffi::CString::new(self.sub().to_str().unwrap_or_default()) {
            // SAFETY: plain umount2(2) of the tmpfs this guard mounted.
            unsafe { libc::umount2(target.as_ptr(), 0) };
        }
    }
}

/// Write to the volume and to the mount inside it; each line of stdout says `ok` or `failed`.
const WRITE_BOTH: &str = "for f in /data/f /data/sub/f; do \
                          if echo x > $f; then echo \"$f ok\"; else echo \"$f failed\"; fi; done; \
                          grep ' /data' /proc/self/mountinfo | cut -d' ' -f5,6";

/// The submount's options inside the container, from the `grep` of [`WRITE_BOTH`].
fn options_inside(out: &str, point: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{point} ")))
        .unwrap_or_else(|| panic!("{point} is not mounted inside:\n{out}"))
        .to_string()
}

/// `:ro` reaches the mounts below the volume's root too (mount_setattr with AT_RECURSIVE: a
/// remount with MS_REC would leave `/data/sub` writable); the host's own mount stays writable.
fn readonly_volume_covers_the_mounts_below_it() {
    let env = Env::new();
    let host = DirWithSubmount::new();
    let name = unique("vol-rosub");
    let ro = format!("{}:ro", vol(host.path(), "/data"));
    let out = env.run(&[
        "run",
        "--rm",
        "--name",
        &name,
        "-v",
        &ro,
        "localhost/stepctr-busybox",
        "sh",
        "-c",
        WRITE_BOTH,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("/data/f failed\n/data/sub/f failed\n"),
        "{text}"
    );
    for f in ["/data/f", "/data/sub/f"] {
        assert!(
            stderr(&out).contains(&format!("{f}: Read-only file system")),
            "EROFS for {f}: {}",
            stderr(&out)
        );
    }
    assert!(options_inside(&text, "/data").starts_with("ro,"), "{text}");
    // Read-only added, the tmpfs's own nosuid,nodev kept.
    assert!(
        options_inside(&text, "/data/sub").starts_with("ro,nosuid,nodev"),
        "{text}"
    );
    assert_no_leaks(&env, &name);
    assert!(!host.path().join("f").exists() && !host.sub().join("f").exists());
    // The host's tmpfs is its own mount: still read-write, and written to.
    assert!(
        host.host_options().starts_with("rw,"),
        "{}",
        host.host_options()
    );
    std::fs::write(host.sub().join("g"), "host\n").expect("the host's submount is writable");

    // Without :ro both are writable, and what is written lands on the host.
    let name = unique("vol-rwsub");
    let out = env.run(&[
        "run",
        "--rm",
        "--name",
        &name,
        "-v",
        &vol(host.path(), "/data"),
        "localhost/stepctr-busybox",
        "sh",
        "-c",
        WRITE_BOTH,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("/data/f ok\n/data/sub/f ok\n"),
        "{}",
        stdout(&out)
    );
    assert_no_leaks(&env, &name);
    assert_eq!(
        std::fs::read_to_string(host.sub().join("f")).unwrap(),
        "x\n"
    );
    assert_eq!(
        std::fs::read_to_string(host.path().join("f")).unwrap(),
        "x\n"
    );
}

/// Make mount_setattr(2) fail with ENOSYS in this process and its children, as on a kernel
/// older than 5.12 (a seccomp filter; inherited across fork and exec).
fn without_mount_setattr(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let filter = [
        // A = seccomp_data.nr
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        // if A == mount_setattr: next, else skip one
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_mount_setattr as u32,
        },
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    // SAFETY: between fork and exec only prctl(2) is called, on a filter that lives in this
    // closure (copied into the child with it); we are root, so no PR_SET_NO_NEW_PRIVS needed.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            let rc = libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            );
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// On a kernel without mount_setattr, each mount of the volume is remounted read-only by
/// itself (keeping its other flags), and the result is checked.
fn readonly_without_mount_setattr_remounts_each_mount() {
    let env = Env::new();
    let host = DirWithSubmount::new();
    let name = unique("vol-rofb");
    let ro = format!("{}:ro", vol(host.path(), "/data"));
    let mut cmd = env.cmd(&[
        "all", "--name", &name, "--rm", "-v", &ro, "--", "sh", "-c", WRITE_BOTH,
    ]);
    without_mount_setattr(&mut cmd);
    let out = cmd.output().expect("run stepctr");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("mount_setattr(") && err.contains("= -1 ENOSYS (Function not implemented)"),
        "the failed call is narrated: {err}"
    );
    assert!(err.contains("no mount_setattr (Linux < 5.12)"), "{err}");
    let remounts = err
        .lines()
        .filter(|l| {
            l.starts_with("mount(NULL, ")
                && ["MS_RDONLY", "MS_REMOUNT", "MS_BIND"]
                    .iter()
                    .all(|f| l.contains(f))
        })
        .count();
    assert_eq!(
        remounts, 2,
        "the volume and its submount, each remounted: {err}"
    );
    let text = stdout(&out);
    assert!(
        text.starts_with("/data/f failed\n/data/sub/f failed\n"),
        "{text}"
    );
    assert!(options_inside(&text, "/data").starts_with("ro,"), "{text}");
    assert!(
        options_inside(&text, "/data/sub").starts_with("ro,nosuid,nodev"),
        "{text}"
    );
    assert_no_leaks(&env, &name);
    assert!(
        host.host_options().starts_with("rw,"),
        "{}",
        host.host_options()
    );
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
