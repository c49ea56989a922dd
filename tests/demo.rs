//! `stepctr demo isolation` and `demo breakout` (issue 7, acceptance 4): the probes give the
//! expected verdicts under chroot and under namespaces, the breakout escapes plain chroot and
//! fails after pivot_root, and neither leaves anything behind: no container, mount, cgroup or
//! process, and the host keeps its hostname.

mod common;

use common::{stderr, stdout, Env};
use serde_json::Value;

fn main() {
    common::run_tests(
        tests![
            isolation_json_gives_the_expected_verdicts,
            isolation_one_mode_and_the_table,
            breakout_escapes_chroot_but_not_pivot_root,
            demos_need_root_and_name_bad_input
        ],
        true,
    );
}

/// The lock `demo isolation` holds for its whole run (on the hostname's sysctl file): while a
/// demo runs, the host carries its probe's name and the probe's tmpfs, so a test that reads the
/// host's name or looks for leftovers takes the lock first and so sees the host between demos.
fn between_demos() -> stepctr::state::Lock {
    stepctr::state::lock_dir(std::path::Path::new("/proc/sys/kernel/hostname")).expect("lock")
}

/// The host's name, read between two demos.
fn host_name() -> String {
    let _between = between_demos();
    hostname()
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .expect("gethostname")
        .to_string_lossy()
        .into_owned()
}

/// Nothing the demos made is left: no scratch container (their names start with `demo-`), no
/// mount under the run directory, no cgroup, no probe mount, no victim, the same hostname.
fn assert_clean(env: &Env, host_name: &str) {
    let _between = between_demos();
    let left: Vec<String> = std::fs::read_dir(&env.run)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("demo-"))
        .collect();
    assert!(left.is_empty(), "scratch containers left: {left:?}");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let run = env.run.to_string_lossy();
    let mounts: Vec<&str> = mountinfo
        .lines()
        .filter(|l| l.contains(&*run) || l.contains("stepctr-probe-"))
        .collect();
    assert!(mounts.is_empty(), "mounts left:\n{}", mounts.join("\n"));
    // Scratch containers are named demo-WHAT-PID after the stepctr that made them: once that
    // stepctr has ended, a cgroup of that name is a leak (whichever test ran it).
    let leaked: Vec<std::path::PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|c| {
            std::fs::read_dir(c.path().join("stepctr"))
                .into_iter()
                .flatten()
                .flatten()
        })
        .chain(
            std::fs::read_dir("/sys/fs/cgroup/stepctr")
                .into_iter()
                .flatten()
                .flatten(),
        )
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix("demo-")
                .and_then(|r| r.rsplit('-').next()?.parse::<i32>().ok());
            pid.is_some_and(|pid| !common::alive(pid))
        })
        .collect();
    assert!(leaked.is_empty(), "cgroups left: {leaked:?}");
    assert_eq!(hostname(), host_name, "the host's name changed");
    let victims = common::processes_mentioning("sleep 3600");
    let ours: Vec<_> = victims
        .iter()
        .filter(|(pid, _)| {
            std::fs::read_to_string(format!("/proc/{pid}/environ")).is_ok_and(|e| e.contains(&*run))
        })
        .collect();
    assert!(ours.is_empty(), "processes left: {ours:?}");
}

fn verdicts(doc: &Value, mode: &str) -> Vec<(String, bool)> {
    doc["probes"]
        .as_array()
        .expect("probes")
        .iter()
        .map(|p| {
            (
                p["probe"].as_str().unwrap().to_string(),
                p[mode]["isolated"]
                    .as_bool()
                    .unwrap_or_else(|| panic!("{mode} of {p}")),
            )
        })
        .collect()
}

/// Both modes: under plain chroot every probe gets through (✘), inside the namespaces none does.
fn isolation_json_gives_the_expected_verdicts() {
    let env = Env::new();
    let host_name = host_name();
    let out = env.ok(&["demo", "isolation", "--json"]);
    let doc: Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON document");
    let expected = [
        "host-files",
        "host-processes-visible",
        "host-processes-killable",
        "probe-pid",
        "hostname-leaks",
        "mount-leaks",
        "network-interfaces",
        "chroot-breakout",
        "ns-inodes",
    ];
    let chroot = verdicts(&doc, "chroot");
    let names: Vec<&str> = chroot.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, expected);
    for (probe, isolated) in &chroot {
        assert!(!isolated, "under chroot, {probe} should get through: {doc}");
    }
    for (probe, isolated) in verdicts(&doc, "namespaces") {
        assert!(
            isolated,
            "inside the namespaces, {probe} should be stopped: {doc}"
        );
    }
    // The evidence is what was seen, not a label: the probe's PID inside the container.
    let pid = &doc["probes"][3];
    assert!(
        pid["namespaces"]["evidence"]
            .as_str()
            .unwrap()
            .starts_with("2 (host: "),
        "{pid}"
    );
    assert_eq!(doc["probes"][6]["namespaces"]["evidence"], "lo");
    // The narration shows the calls that made the difference.
    let err = stderr(&out);
    for call in [
        "chroot(\"",
        "kill(",
        "sethostname(\"stepctr-probe-",
        "setns(",
        "= -1 ESRCH",
        "put the host's name back",
    ] {
        assert!(err.contains(call), "narration lacks {call}:\n{err}");
    }
    assert_clean(&env, &host_name);
}

fn isolation_one_mode_and_the_table() {
    let env = Env::new();
    let host_name = host_name();
    let out = env.ok(&["-q", "demo", "isolation", "--mode", "chroot", "--json"]);
    let doc: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(doc["probes"][0].get("namespaces").is_none(), "{doc}");
    assert!(verdicts(&doc, "chroot").iter().all(|(_, i)| !i), "{doc}");
    assert!(stderr(&out).is_empty(), "-q: {}", stderr(&out));
    let out = env.ok(&["-q", "demo", "isolation", "--mode", "namespaces"]);
    let table = stdout(&out);
    let first = table.lines().next().unwrap();
    assert!(first.trim() == "namespaces", "{table}");
    assert!(
        table.contains("can it kill a host process?") && table.contains("✔ kill(): ESRCH"),
        "{table}"
    );
    let rows: Vec<&str> = table.lines().filter(|l| l.contains('?')).collect();
    assert_eq!(rows.len(), 9, "{table}");
    assert!(
        rows.iter().all(|r| r.contains('✔') && !r.contains('✘')),
        "{table}"
    );
    assert_clean(&env, &host_name);
}

fn breakout_escapes_chroot_but_not_pivot_root() {
    let env = Env::new();
    let host_name = host_name();
    let out = env.ok(&["demo", "breakout"]);
    let text = stdout(&out);
    let (first, second) = text
        .split_once("attempt 2:")
        .unwrap_or_else(|| panic!("two attempts:\n{text}"));
    assert!(first.starts_with("attempt 1: plain chroot"), "{text}");
    assert!(
        first.contains(&format!(
            "ESCAPED: / is the host's root (same device and inode); /etc/hostname: {}",
            std::fs::read_to_string("/etc/hostname")
                .unwrap_or_default()
                .trim()
        )),
        "{text}"
    );
    assert!(second.contains("STAYED INSIDE"), "{text}");
    assert!(!second.contains("ESCAPED"), "{text}");
    // Before and after the failed escape, / is the image's (the breakout directory aside).
    let lists: Vec<&str> = second
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("before: / holds ")
                .or(l.trim().strip_prefix("after:  / holds "))
        })
        .collect();
    assert_eq!(lists.len(), 2, "{text}");
    assert_eq!(
        lists[1].replace(".stepctr-breakout ", ""),
        lists[0],
        "{text}"
    );
    let err = stderr(&out);
    for call in [
        "unshare(CLONE_NEWNS) = 0",
        "mount(NULL, \"/\", NULL, MS_REC|MS_PRIVATE, NULL) = 0",
        "chroot(\"/.stepctr-breakout\") = 0",
        "chroot(\".\") = 0",
        "pivot_root(\".\", \".\") = 0",
        "climb: chdir(\"..\") 64 times",
    ] {
        assert!(err.contains(call), "narration lacks {call}:\n{err}");
    }
    assert_clean(&env, &host_name);
}

fn demos_need_root_and_name_bad_input() {
    let env = Env::new();
    let out = env.run(&["demo", "isolation", "--mode", "vm"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid value 'vm'"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["demo", "breakout", "oci:/no/such/layout"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("stepctr: error: "), "{err}");
    let out = env
        .cmd(&["demo", "breakout"])
        .env("STEPCTR_ROOT", env.root.as_os_str())
        .uid_gid(65534)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("needs root"), "{}", stderr(&out));
}

trait UidGid {
    fn uid_gid(&mut self, id: u32) -> &mut Self;
}

impl UidGid for std::process::Command {
    fn uid_gid(&mut self, id: u32) -> &mut Self {
        use std::os::unix::process::CommandExt;
        self.uid(id).gid(id)
    }
}
