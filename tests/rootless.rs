//! Rootless mode: an unprivileged user (made for the test with useradd, removed after) runs
//! containers in a user namespace that maps their own uid and gid to 0. Root inside is the user
//! outside: `id` says root, files made in a volume belong to the user on the host, the host's
//! root-owned files stay out of reach, and cgroup limits are skipped on this v1/hybrid host
//! with a note saying so. Every test ends with nothing of the user left running.

mod common;

use common::{assert_no_leaks_with, stderr, stdout, unique, Env};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const IMAGE: &str = "localhost/stepctr-busybox";

fn main() {
    common::run_tests(
        tests![
            run_shows_root_inside,
            volume_files_belong_to_the_user,
            root_inside_is_not_root_outside,
            stage_by_stage_with_a_keeper,
            detached_exec_stop,
            hardening_still_holds,
            what_rootless_cannot_do_is_refused,
            a_killed_keeper_is_reported,
            a_run_directory_others_could_replace_is_refused,
        ],
        true,
    );
}

/// A rootless Env with the default image in the user's own store.
fn env() -> Env {
    let env = Env::rootless();
    env.ok(&["-q", "pull"]);
    env
}

/// Nothing of the user runs any more, and nothing of container `name` is left.
fn assert_clean(env: &Env, name: &str, pids: &[i32]) {
    assert_no_leaks_with(env, name, pids);
    let user = env.user.as_ref().expect("a rootless env");
    // The keeper and shim are gone at once; give init a moment to reap what rm killed.
    for _ in 0..100 {
        if user.processes().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        user.processes(),
        Vec::<i32>::new(),
        "processes of the user left"
    );
}

fn uid_gid(env: &Env) -> (u32, u32) {
    let u = env.user.as_ref().expect("a rootless env");
    (u.uid, u.gid)
}

fn run_shows_root_inside() {
    let env = env();
    let name = unique("rl-id");
    let out = env.ok(&[
        "-q",
        "run",
        "--rm",
        "--name",
        &name,
        IMAGE,
        "--",
        "sh",
        "-c",
        "id; cat /proc/self/uid_map /proc/self/gid_map",
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("uid=0(root) gid=0(root)"),
        "id inside: {text}"
    );
    let (uid, gid) = uid_gid(&env);
    let maps: Vec<Vec<String>> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    assert_eq!(
        maps,
        [
            vec!["0".to_string(), uid.to_string(), "1".to_string()],
            vec!["0".to_string(), gid.to_string(), "1".to_string()],
        ],
        "one uid and one gid mapped: {text}"
    );
    // `all` works the same way, on the default image.
    let out = env.ok(&["-q", "all", "--rm", "--", "id", "-u"]);
    assert_eq!(stdout(&out).trim(), "0");
    assert_clean(&env, &name, &[]);
}

fn volume_files_belong_to_the_user() {
    let env = env();
    let name = unique("rl-vol");
    let vol = env.tmp().join("vol");
    let spec = format!("{}:/data", vol.display());
    env.ok(&[
        "-q",
        "run",
        "--rm",
        "--name",
        &name,
        "-v",
        &spec,
        IMAGE,
        "--",
        "sh",
        "-c",
        "echo kept > /data/f && mkdir /data/d && ls -ln /data",
    ]);
    let (uid, gid) = uid_gid(&env);
    for p in [vol.join("f"), vol.join("d")] {
        let m = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(
            (m.uid(), m.gid()),
            (uid, gid),
            "{} is not the user's on the host",
            p.display()
        );
    }
    assert_eq!(std::fs::read_to_string(vol.join("f")).unwrap(), "kept\n");
    assert_clean(&env, &name, &[]);
}

fn root_inside_is_not_root_outside() {
    let env = env();
    let name = unique("rl-notroot");
    // A directory of the host's root, readable by all, writable by root only.
    let host = env.tmp().join("roots");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("secret"), "x").unwrap();
    std::fs::set_permissions(
        host.join("secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let spec = format!("{}:/host", host.display());
    let out = env.run(&[
        "-q",
        "run",
        "--rm",
        "--name",
        &name,
        "-v",
        &spec,
        IMAGE,
        "--",
        "sh",
        "-c",
        "ls -ln /host; touch /host/new 2>&1; cat /host/secret 2>&1; echo done",
    ]);
    let text = stdout(&out);
    assert!(text.contains("done"), "{text}{}", stderr(&out));
    // Root's files show as the overflow uid (65534, "nobody"): uid 0 of the host is not
    // mapped in there.
    assert!(text.contains(" 65534 "), "host root's files: {text}");
    assert!(text.contains("Permission denied"), "{text}");
    assert!(
        !host.join("new").exists(),
        "container root wrote as host root"
    );
    assert_clean(&env, &name, &[]);
}

fn stage_by_stage_with_a_keeper() {
    let env = env();
    let name = unique("rl-stages");
    env.ok(&["-q", "load", &name, IMAGE]);
    let out = env.ok(&["cgroup", &name, "--memory", "64M", "--pids-limit", "20"]);
    let err = stderr(&out);
    assert!(
        err.contains("skipped: rootless")
            && err.contains("cgroup v1")
            && err.contains("--memory 67108864, --pids-limit 20 NOT applied"),
        "{err}"
    );
    let out = env.ok(&["ns", &name]);
    let err = stderr(&out);
    for call in [
        "unshare(CLONE_NEWUSER) = 0",
        "/setgroups>, \"deny\", 4) = 4",
        "/uid_map>, \"0 ",
        "unshare(CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWNET) = 0",
    ] {
        assert!(err.contains(call), "ns narration lacks {call}:\n{err}");
    }
    let state = env.state(&name);
    let keeper = state["userns"]["keeper"][0].as_i64().expect("keeper pid") as i32;
    // The keeper is stopped ('T'), holds its own user namespace, and ns/ links to it.
    let stat = std::fs::read_to_string(format!("/proc/{keeper}/stat")).unwrap();
    assert_eq!(
        stat[stat.rfind(')').unwrap() + 2..].chars().next(),
        Some('T'),
        "{stat}"
    );
    let ns = env.container_dir(&name).join("ns");
    for file in ["user", "mnt", "uts", "ipc", "net"] {
        assert_eq!(
            std::fs::read_link(ns.join(file)).unwrap(),
            Path::new(&format!("/proc/{keeper}/ns/{file}"))
        );
    }
    let theirs = std::fs::read_link(format!("/proc/{keeper}/ns/user")).unwrap();
    let ours = std::fs::read_link("/proc/self/ns/user").unwrap();
    assert_ne!(theirs, ours, "the keeper is in a user namespace of its own");
    env.ok(&["-q", "fs", &name]);
    let out = env.ok(&[
        "-q",
        "start",
        &name,
        "--",
        "sh",
        "-c",
        "echo hello from $(hostname)",
    ]);
    assert_eq!(stdout(&out).trim(), format!("hello from {name}"));
    env.ok(&["-q", "rm", &name]);
    assert_clean(&env, &name, &[keeper]);
}

fn detached_exec_stop() {
    let env = env();
    let name = unique("rl-detached");
    env.ok(&[
        "-q", "run", "-d", "--name", &name, IMAGE, "--", "sleep", "1000",
    ]);
    let out = env.ok(&[
        "-q",
        "exec",
        &name,
        "--",
        "sh",
        "-c",
        "id -u; cat /proc/1/cmdline",
    ]);
    let text = stdout(&out);
    assert!(text.starts_with("0\nsleep"), "{text}");
    let out = env.run(&["-q", "exec", &name, "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let ps = stdout(&env.ok(&["ps"]));
    assert!(ps.contains(&name) && ps.contains("running"), "{ps}");
    let pid1 = env.state(&name)["pid"].as_i64().unwrap() as i32;
    env.ok(&["-q", "stop", "-t", "0.2", &name]);
    let inspect = stdout(&env.ok(&["inspect", &name, "--json"]));
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v["exit_code"], 137, "{inspect}");
    env.ok(&["-q", "rm", &name]);
    assert_clean(&env, &name, &[pid1]);
}

fn hardening_still_holds() {
    let env = env();
    let name = unique("rl-hard");
    let out = env.ok(&[
        "-q",
        "run",
        "--rm",
        "--name",
        &name,
        IMAGE,
        "--",
        "sh",
        "-c",
        "grep CapBnd /proc/self/status; \
         echo h > /proc/sysrq-trigger 2>/dev/null && echo SYSRQ-WRITTEN; \
         cat /proc/kcore 2>/dev/null | head -c 1 | wc -c; \
         unshare -U true 2>/dev/null && echo UNSHARED; \
         mount -t tmpfs t /mnt 2>/dev/null && echo MOUNTED; \
         echo end",
    ]);
    let text = stdout(&out);
    // docker's default set, the same as a root container's.
    assert!(text.contains("CapBnd:\t00000000a80425fb"), "{text}");
    for bad in ["SYSRQ-WRITTEN", "UNSHARED", "MOUNTED"] {
        assert!(!text.contains(bad), "{bad}: {text}");
    }
    assert!(text.contains("\n0\n"), "/proc/kcore readable: {text}");
    assert!(text.ends_with("end\n"), "{text}");
    assert_clean(&env, &name, &[]);
}

fn what_rootless_cannot_do_is_refused() {
    let env = env();
    let name = unique("rl-refused");
    for (args, says) in [
        (
            vec![
                "-q", "run", "--rm", "--name", &name, "-u", "1000", IMAGE, "--", "true",
            ],
            "maps only your own uid",
        ),
        (
            vec![
                "-q", "run", "--rm", "--name", &name, "-t", IMAGE, "--", "true",
            ],
            "not supported yet",
        ),
        (
            vec![
                "-q", "run", "--rm", "--name", &name, "--userns", IMAGE, "--", "true",
            ],
            "only your own uid",
        ),
    ] {
        let out = env.run(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(says), "{err}");
        // A refused start leaves a created container behind, as a failed start as root does.
        let _ = env.run(&["-q", "rm", "-f", &name]);
    }
    // A rootless container has no cgroup to count with: stats says why.
    env.ok(&[
        "-q", "run", "-d", "--name", &name, IMAGE, "--", "sleep", "100",
    ]);
    let out = env.run(&["stats", &name]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("it is rootless"), "{}", stderr(&out));
    env.ok(&["-q", "rm", "-f", &name]);
    assert_clean(&env, &name, &[]);
}

fn a_killed_keeper_is_reported() {
    let env = env();
    let name = unique("rl-keeper");
    env.ok(&["-q", "load", &name, IMAGE]);
    env.ok(&["-q", "cgroup", &name]);
    env.ok(&["-q", "ns", &name]);
    let keeper = env.state(&name)["userns"]["keeper"][0].as_i64().unwrap() as i32;
    // SAFETY: killing the test user's process.
    unsafe { libc::kill(keeper, libc::SIGKILL) };
    for _ in 0..100 {
        if !common::alive(keeper) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = env.run(&["-q", "fs", &name]);
    let err = stderr(&out);
    assert!(!out.status.success(), "fs without a keeper succeeded");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("keeper") && err.contains("is gone"), "{err}");
    env.ok(&["-q", "rm", &name]);
    assert_clean(&env, &name, &[keeper]);
}

/// The default run directory without $XDG_RUNTIME_DIR is /tmp/stepctr-UID/run: another user
/// could make that first. A run directory on a path someone else may change is refused.
fn a_run_directory_others_could_replace_is_refused() {
    let mut env = env();
    // Everyone may write here (not sticky): someone else could swap our run directory.
    let open = env.tmp().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    env.run = open.join("run");
    let name = unique("rl-runtmp");
    let out = env.run(&["-q", "load", &name, IMAGE]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("writable by everyone"), "{err}");
    // Someone else's directory.
    let theirs = env.tmp().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&theirs, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    env.run = theirs.join("run");
    let out = env.run(&["-q", "load", &name, IMAGE]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("belongs to uid 65534"), "{err}");
    assert!(
        !theirs.join("run").exists(),
        "made something in their directory"
    );
}
