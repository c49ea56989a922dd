//! `stepctr doctor` on this machine: what it reports is checked against what the test itself
//! reads from /proc (computed here, independently of stepctr's code), so the test is right
//! wherever it runs: on the development machine (hybrid cgroups, root without
//! CAP_SYS_RESOURCE) that is a hybrid layout and a missing CAP_SYS_RESOURCE. The other kinds of
//! host (pure v2, v1, WSL, docker, rootless with delegation) are unit tests in src/doctor.rs;
//! pure v2 for real is in tests/vm/cgroup-v2.sh.

mod common;

use common::{stderr, stdout, Env};
use serde_json::Value;
use std::process::{Command, Output};

fn main() {
    common::run_tests(
        tests![
            doctor_reports_this_hosts_cgroup_mode,
            doctor_reports_the_capabilities_root_lacks_here,
            json_is_an_array_of_check_status_found_advice_like_the_text,
            doctor_narrates_nothing,
            doctor_as_a_user_who_is_not_root,
        ],
        true,
    );
}

/// A capability's name by number, from the `caps` crate (not from stepctr's code under test).
fn cap_name(bit: u32) -> String {
    caps::all()
        .into_iter()
        .find(|c| u32::from(c.index()) == bit)
        .map(|c| c.to_string())
        .unwrap_or_else(|| format!("capability {bit}"))
}

fn doctor(args: &[&str]) -> Output {
    let env = Env::fresh();
    env.cmd(&[&["doctor"], args].concat())
        .output()
        .expect("run stepctr doctor")
}

fn json() -> Vec<Value> {
    let out = doctor(&["--json"]);
    let text = stdout(&out);
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("doctor --json is not JSON ({e}):\n{text}"));
    v.as_array().expect("a JSON array").clone()
}

fn check<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:?}"))
}

/// The layout as this test sees it: each mount point under /sys/fs/cgroup and its type, the
/// last mount on a point winning (the test's private mount namespace is a copy of the host's).
fn cgroup_mode_here() -> &'static str {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    let mut at: Vec<(String, String)> = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let point = left.split_whitespace().nth(4).unwrap_or("").to_string();
        let fstype = right.split_whitespace().next().unwrap_or("").to_string();
        if point == "/sys/fs/cgroup" {
            // A new mount on /sys/fs/cgroup hides everything below it.
            at.retain(|(p, _)| !p.starts_with("/sys/fs/cgroup"));
        }
        if point == "/sys/fs/cgroup" || point.starts_with("/sys/fs/cgroup/") {
            at.push((point, fstype));
        }
    }
    let top_v2 = at
        .iter()
        .any(|(p, t)| p == "/sys/fs/cgroup" && t == "cgroup2");
    let v1 = at.iter().any(|(_, t)| t == "cgroup");
    let v2_below = at
        .iter()
        .any(|(p, t)| p != "/sys/fs/cgroup" && t == "cgroup2");
    match (top_v2, v1, v2_below) {
        (true, _, _) => "pure v2",
        (false, true, true) => "hybrid",
        (false, true, false) => "v1",
        _ => "none",
    }
}

fn doctor_reports_this_hosts_cgroup_mode() {
    let want = cgroup_mode_here();
    let checks = json();
    let mode = check(&checks, "cgroup_mode");
    let found = mode["found"].as_str().unwrap();
    let status = mode["status"].as_str().unwrap();
    match want {
        "pure v2" => assert!(found.starts_with("pure v2") && status == "ok", "{mode}"),
        "hybrid" => {
            assert!(
                found.starts_with("hybrid: v1 hierarchies (") && status == "limited",
                "{mode}"
            );
            assert!(
                found.contains("cgroup2 tree at /sys/fs/cgroup/unified"),
                "{mode}"
            );
        }
        "v1" => assert!(found.starts_with("v1: ") && status == "limited", "{mode}"),
        _ => assert_eq!(status, "missing", "{mode}"),
    }
    // And the text says the same on its cgroup_mode line.
    let text = stdout(&doctor(&[]));
    let line = text
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("cgroup_mode"))
        .unwrap_or_else(|| panic!("no cgroup_mode line:\n{text}"));
    let word = if want == "pure v2" { "pure v2" } else { want };
    assert!(
        line.starts_with(&format!("{status:<8} cgroup_mode")) && line.contains(&format!(" {word}")),
        "{line}"
    );
    // Which of memory, cpu, pids are usable (as stepctr finds them: v1 hierarchies or the
    // cgroup2 root's cgroup.controllers).
    let ctl = check(&checks, "cgroup_controllers");
    let have: Vec<String> = if want == "pure v2" {
        std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    } else {
        ["memory", "cpu", "pids"]
            .iter()
            .filter(|c| {
                std::fs::read_to_string("/proc/self/mountinfo")
                    .unwrap()
                    .lines()
                    .any(|l| {
                        l.contains(" - cgroup ")
                            && l.rsplit(' ')
                                .next()
                                .unwrap_or("")
                                .split(',')
                                .any(|o| o == **c)
                    })
            })
            .map(|c| c.to_string())
            .collect()
    };
    let all = ["memory", "cpu", "pids"]
        .iter()
        .all(|c| have.iter().any(|h| h == c));
    assert_eq!(ctl["status"] == "ok", all, "{ctl} (have {have:?})");
}

fn doctor_reports_the_capabilities_root_lacks_here() {
    let status = std::fs::read_to_string("/proc/self/status").expect("read status");
    let mask = |key: &str| -> u64 {
        let v = status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}:")))
            .unwrap_or_else(|| panic!("no {key} in /proc/self/status"));
        u64::from_str_radix(v.trim(), 16).unwrap()
    };
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .expect("cap_last_cap")
        .trim()
        .parse()
        .unwrap();
    // stepctr, exec'd by root, gets the bounding set as its effective set.
    let bnd = mask("CapBnd");
    let lacking: Vec<String> = (0..=last)
        .filter(|b| bnd & (1u64 << b) == 0)
        .map(cap_name)
        .collect();
    let checks = json();
    let caps = check(&checks, "capabilities");
    let found = caps["found"].as_str().unwrap();
    let advice = caps["advice"].as_str().unwrap();
    if lacking.is_empty() {
        assert_eq!(caps["status"], "ok", "{caps}");
        return;
    }
    assert!(found.starts_with("root lacks "), "{caps}");
    for name in &lacking {
        assert!(found.contains(name), "{name} is not named: {caps}");
        assert!(
            advice.contains(&format!("without {name}: ")),
            "{name}: {caps}"
        );
    }
    for name in (0..=last).map(cap_name) {
        if !lacking.contains(&name) {
            assert!(
                !found.contains(&format!("{name},")) && !found.contains(&format!("{name} (")),
                "{name} is there: {caps}"
            );
        }
    }
    if lacking.iter().any(|n| n == "CAP_SYS_RESOURCE") {
        // This machine: raising rlimits fails, and doctor says what that affects.
        assert_eq!(caps["status"], "limited", "{caps}");
        assert!(
            advice.contains("setrlimit") && advice.contains("--ulimit") && advice.contains("EPERM"),
            "{caps}"
        );
        let text = stdout(&doctor(&[]));
        assert!(
            text.lines().any(|l| l.starts_with("limited  capabilities ")
                && l.contains("CAP_SYS_RESOURCE")
                && l.contains("--ulimit")),
            "{text}"
        );
    }
}

fn json_is_an_array_of_check_status_found_advice_like_the_text() {
    let out = doctor(&["--json"]);
    let checks = json();
    let names: Vec<&str> = checks
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "cgroup_mode",
            "cgroup_controllers",
            "cgroup_delegation",
            "overlayfs",
            "overlayfs_userns",
            "pivot_root",
            "userns",
            "userns_unprivileged",
            "seccomp",
            "environment",
            "capabilities",
            "root",
            "vm_boot",
        ]
    );
    for c in &checks {
        let o = c.as_object().unwrap();
        assert_eq!(o.len(), 4, "{c}");
        for k in ["check", "status", "found", "advice"] {
            assert!(o[k].is_string(), "{k}: {c}");
        }
        assert!(["ok", "limited", "missing"].contains(&o["status"].as_str().unwrap()));
        assert!(!o["found"].as_str().unwrap().is_empty(), "{c}");
        if o["status"] != "ok" {
            assert!(!o["advice"].as_str().unwrap().is_empty(), "what to do? {c}");
        }
    }
    // stepctr works here (the other tests prove it): exit 0, and nothing it needs is missing.
    assert!(out.status.success(), "{:?}: {}", out.status, stderr(&out));
    for needed in ["overlayfs", "pivot_root", "root"] {
        assert_ne!(check(&checks, needed)["status"], "missing");
    }
    // The text: the same checks in the same order, one line each, then the verdict.
    let text_out = doctor(&[]);
    assert!(text_out.status.success());
    let text = stdout(&text_out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), checks.len() + 1, "{text}");
    for (line, c) in lines.iter().zip(&checks) {
        let mut w = line.split_whitespace();
        assert_eq!(w.next(), c["status"].as_str(), "{line}");
        assert_eq!(w.next(), c["check"].as_str(), "{line}");
        assert!(line.contains(c["found"].as_str().unwrap()), "{line}");
        assert!(line.contains(c["advice"].as_str().unwrap()), "{line}");
    }
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("# stepctr can work on this host: "),
        "{text}"
    );
}

fn doctor_narrates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("trace");
    let out = doctor(&["--trace-file", trace.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&trace).unwrap_or_default(), "");
    let out = doctor(&[]);
    assert_eq!(
        stderr(&out),
        "",
        "doctor writes nothing to stderr when all is well"
    );
    assert!(
        !stdout(&out).contains(") = "),
        "a kernel call in the report"
    );
}

/// As uid 65534 (setpriv): rootless mode where user namespaces work (checked here with
/// util-linux's `unshare --user --mount`), never root's lines.
fn doctor_as_a_user_who_is_not_root() {
    let as_nobody = |args: &[&str]| -> Output {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .expect("run setpriv (util-linux)")
    };
    // A copy the user can reach (the checkout may sit in a directory only its owner enters).
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("stepctr");
    std::fs::copy(common::stepctr_bin(), &bin).expect("copy stepctr");
    let open = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(tmp.path(), open).unwrap();
    let out = as_nobody(&[bin.to_str().unwrap(), "doctor", "--json"]);
    let text = stdout(&out);
    let checks: Vec<Value> = serde_json::from_str::<Value>(&text)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {text}\n{}", stderr(&out)))
        .as_array()
        .unwrap()
        .clone();
    let userns_works = as_nobody(&["unshare", "--user", "--mount", "true"])
        .status
        .success();
    let userns = check(&checks, "userns");
    let root = check(&checks, "root");
    assert!(
        root["found"].as_str().unwrap().starts_with("uid 65534"),
        "{root}"
    );
    assert!(
        userns["found"].as_str().unwrap().contains("uid 65534"),
        "{userns}"
    );
    if userns_works {
        assert_eq!(userns["status"], "ok", "{userns}");
        assert_eq!(root["status"], "limited", "{root}");
        assert!(out.status.success(), "{}", stderr(&out));
    } else {
        assert_eq!(userns["status"], "missing", "{userns}");
        assert_eq!(root["status"], "missing", "{root}");
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("stepctr cannot work on this host: "));
    }
    let caps = check(&checks, "capabilities");
    assert!(
        caps["found"]
            .as_str()
            .unwrap()
            .starts_with("uid 65534: no capabilities"),
        "{caps}"
    );
    if cgroup_mode_here() != "pure v2" {
        assert_eq!(check(&checks, "cgroup_delegation")["status"], "missing");
    }
}
