//! Root's `--userns[=BASE:COUNT]`: the container gets a user namespace mapping ids 0..COUNT
//! inside to BASE.. outside. Root inside is an unprivileged uid on the host; the image's layers
//! are attached idmapped (their owners shifted, nothing copied); what the container writes
//! belongs to BASE+N on the host.

mod common;

use common::{assert_no_leaks_with, stderr, stdout, unique, Env};
use std::os::unix::fs::MetadataExt;

const IMAGE: &str = "localhost/stepctr-busybox";

fn main() {
    common::run_tests(
        tests![
            root_inside_is_base_outside,
            layers_are_idmapped_not_copied,
            exec_users_and_the_shim,
            the_default_range_is_subuid_or_100000,
            hardening_holds_in_a_user_namespace,
            bad_ranges_are_refused,
        ],
        true,
    );
}

/// The uid owning `pid` on the host.
fn host_uid(pid: i32) -> u32 {
    std::fs::metadata(format!("/proc/{pid}"))
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

fn root_inside_is_base_outside() {
    let env = Env::new();
    let name = unique("uns-root");
    let out = env.ok(&[
        "-q",
        "run",
        "--rm",
        "--name",
        &name,
        "--userns=200000:65536",
        IMAGE,
        "--",
        "sh",
        "-c",
        "id; cat /proc/self/uid_map /proc/self/gid_map",
    ]);
    let text = stdout(&out);
    assert!(text.starts_with("uid=0(root) gid=0(root)"), "{text}");
    let maps: Vec<String> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(maps, ["0 200000 65536", "0 200000 65536"], "{text}");

    // Detached: PID 1 runs as uid 200000 on the host; a file it writes is 200000's.
    env.ok(&[
        "-q",
        "run",
        "-d",
        "--name",
        &name,
        "--userns=200000:65536",
        IMAGE,
        "--",
        "sh",
        "-c",
        "echo x > /made-inside; exec sleep 100",
    ]);
    let pid1 = env.state(&name)["pid"].as_i64().unwrap() as i32;
    assert_eq!(host_uid(pid1), 200000, "PID 1's uid on the host");
    let made = env.container_dir(&name).join("upper/made-inside");
    for _ in 0..100 {
        if made.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let m = std::fs::metadata(&made).expect("the file PID 1 wrote");
    assert_eq!((m.uid(), m.gid()), (200000, 200000));
    env.ok(&["-q", "rm", "-f", &name]);
    assert_no_leaks_with(&env, &name, &[pid1]);
}

fn layers_are_idmapped_not_copied() {
    let env = Env::new();
    let name = unique("uns-idmap");
    env.ok(&["-q", "load", &name, IMAGE]);
    env.ok(&["-q", "cgroup", &name]);
    let out = env.ok(&["ns", &name, "--userns=300000:1000"]);
    assert!(
        stderr(&out).contains("write(5</proc/") && stderr(&out).contains("\"0 300000 1000\""),
        "{}",
        stderr(&out)
    );
    let keeper = env.state(&name)["userns"]["keeper"][0].as_i64().unwrap() as i32;
    let out = env.ok(&["fs", &name]);
    let err = stderr(&out);
    for call in ["open_tree(", "attr_set=MOUNT_ATTR_IDMAP", "move_mount("] {
        assert!(err.contains(call), "fs narration lacks {call}:\n{err}");
    }
    // In the container's mount namespace (the keeper's), each layer is a mount with the
    // idmapped option, over the layer's own directory: no copy.
    let info = std::fs::read_to_string(format!("/proc/{keeper}/mountinfo")).unwrap();
    let lower = env.container_dir(&name).join("lower/0");
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(&*lower.to_string_lossy()))
        .unwrap_or_else(|| panic!("no mount at {}:\n{info}", lower.display()));
    assert!(line.contains("idmapped"), "{line}");
    // The layer on disk is unchanged: still root's.
    let layer = env.state(&name)["layers"][0].as_str().unwrap().to_string();
    let busybox = std::fs::metadata(format!("{layer}/bin/busybox")).unwrap();
    assert_eq!(busybox.uid(), 0);
    let out = env.ok(&[
        "-q",
        "start",
        &name,
        "--",
        "sh",
        "-c",
        "ls -ln /bin/busybox; stat -c %u /",
    ]);
    let text = stdout(&out);
    let owner: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(owner.get(2), Some(&"0"), "busybox inside: {text}");
    assert_eq!(text.lines().nth(1), Some("0"), "/ inside: {text}");
    env.ok(&["-q", "rm", &name]);
    assert_no_leaks_with(&env, &name, &[keeper]);
}

fn exec_users_and_the_shim() {
    let env = Env::new();
    let name = unique("uns-exec");
    env.ok(&[
        "-q",
        "run",
        "-d",
        "--userns=200000:65536",
        "--name",
        &name,
        IMAGE,
        "--",
        "sleep",
        "100",
    ]);
    let out = env.ok(&["-q", "exec", &name, "--", "sh", "-c", "id -u"]);
    let text = stdout(&out);
    assert!(text.starts_with("0\n"), "{text}");
    let out = env.ok(&["-q", "exec", "-u", "nobody", &name, "--", "id"]);
    assert!(
        stdout(&out).starts_with("uid=65534(nobody) gid=65534(nogroup)"),
        "{}",
        stdout(&out)
    );
    // nobody inside is 200000 + 65534 outside.
    let out = env.ok(&[
        "-q",
        "run",
        "--rm",
        "--userns=200000:65536",
        "-u",
        "nobody",
        "--name",
        &format!("{name}-b"),
        IMAGE,
        "--",
        "sh",
        "-c",
        "cat /proc/self/status | grep ^Uid",
    ]);
    assert!(stdout(&out).contains("65534"), "{}", stdout(&out));
    let pid1 = env.state(&name)["pid"].as_i64().unwrap() as i32;
    let shim = env.state(&name)["shim"][0].as_i64().unwrap() as i32;
    // The shim stays the host's root: it writes state.json and is out of the container's reach.
    assert_eq!(host_uid(shim), 0);
    env.ok(&["-q", "stop", "-t", "0.2", &name]);
    env.ok(&["-q", "rm", &name]);
    assert_no_leaks_with(&env, &name, &[pid1, shim]);
}

fn the_default_range_is_subuid_or_100000() {
    let env = Env::new();
    let name = unique("uns-auto");
    let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    let want = subuid
        .lines()
        .find_map(|l| l.strip_prefix("root:"))
        .map(|r| r.replace(':', " "))
        .unwrap_or_else(|| "100000 65536".into());
    let out = env.ok(&[
        "-q",
        "all",
        "--rm",
        "--userns",
        "--name",
        &name,
        "--",
        "cat",
        "/proc/self/uid_map",
    ]);
    let map = stdout(&out)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(map, format!("0 {want}"));
    assert_no_leaks_with(&env, &name, &[]);
}

fn hardening_holds_in_a_user_namespace() {
    let env = Env::new();
    let name = unique("uns-hard");
    // A file of the host's root, readable by root only, handed in by a volume.
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("secret"), "s").unwrap();
    std::fs::set_permissions(
        host.path().join("secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let spec = format!("{}:/host", host.path().display());
    let out = env.ok(&[
        "-q",
        "run",
        "--rm",
        "--userns",
        "--name",
        &name,
        "-v",
        &spec,
        IMAGE,
        "--",
        "sh",
        "-c",
        "grep CapBnd /proc/self/status; \
         cat /host/secret 2>/dev/null && echo READ-SECRET; \
         touch /host/new 2>/dev/null && echo WROTE-HOST; \
         echo h > /proc/sysrq-trigger 2>/dev/null && echo SYSRQ-WRITTEN; \
         unshare -U true 2>/dev/null && echo UNSHARED; \
         echo end",
    ]);
    let text = stdout(&out);
    assert!(text.contains("CapBnd:\t00000000a80425fb"), "{text}");
    for bad in ["READ-SECRET", "WROTE-HOST", "SYSRQ-WRITTEN", "UNSHARED"] {
        assert!(!text.contains(bad), "{bad}: {text}");
    }
    assert!(text.ends_with("end\n"), "{text}");
    assert!(!host.path().join("new").exists());
    assert_no_leaks_with(&env, &name, &[]);
}

fn bad_ranges_are_refused() {
    let env = Env::new();
    for bad in ["0:65536", "100000:0", "abc", "4294967000:65536"] {
        let name = unique("uns-bad");
        let out = env.run(&[
            "-q",
            "all",
            "--rm",
            &format!("--userns={bad}"),
            "--name",
            &name,
            "--",
            "true",
        ]);
        let err = stderr(&out);
        assert!(!out.status.success(), "--userns={bad} accepted");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("--userns"), "{err}");
        // Refused before anything was made.
        assert!(
            !env.container_dir(&name).exists(),
            "--userns={bad} made {name}"
        );
    }
}
