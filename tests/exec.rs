//! `stepctr exec`: a second process joins a running container's namespaces and cgroup (the
//! lesson on nsenter), and `-u USER[:GROUP]` on `run` and `exec`. Seen from inside (ps,
//! hostname, files) and from the host (/proc/PID/ns, /proc/PID/cgroup); nothing may leak.

mod common;

use common::{alive, assert_no_leaks_with, stderr, stdout, unique, Env};
use std::time::{Duration, Instant};

const IMAGE: &str = "localhost/stepctr-busybox:latest";

fn main() {
    common::run_tests(
        tests![
            exec_sees_pid1_hostname_files_and_cgroup,
            exec_relays_exit_code_and_separate_stdio,
            exec_refuses_stopped_and_missing_containers,
            run_and_exec_as_another_user,
        ],
        true,
    )
}

/// `run -d` a container whose PID 1 writes /tmp/mark and sleeps; returns PID 1's host pid
/// once the mark is there.
fn start_sleeper(env: &Env, name: &str) -> i32 {
    env.ok(&[
        "run",
        "-d",
        "--name",
        name,
        IMAGE,
        "sh",
        "-c",
        "echo written-by-pid1 > /tmp/mark; exec sleep 100",
    ]);
    let pid1 = env.state(name)["pid"].as_i64().expect("pid in state.json") as i32;
    let deadline = Instant::now() + Duration::from_secs(10);
    while env
        .run(&["exec", name, "test", "-s", "/tmp/mark"])
        .status
        .code()
        != Some(0)
    {
        assert!(Instant::now() < deadline, "PID 1 never wrote /tmp/mark");
        std::thread::sleep(Duration::from_millis(20));
    }
    pid1
}

fn ppid(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 2..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn children_of(parent: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|p| ppid(*p) == Some(parent))
        .collect()
}

fn ns_link(pid: i32, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|e| format!("unreadable: {e}"))
}

fn one_line(s: &str) -> bool {
    s.trim_end().lines().count() == 1 && !s.contains("panicked")
}

fn exec_sees_pid1_hostname_files_and_cgroup() {
    let env = Env::new();
    let name = unique("exec-sees");
    let pid1 = start_sleeper(&env, &name);

    // Same PID namespace: PID 1 is the container's sleep, and we are not 1.
    let ps = stdout(&env.ok(&["exec", &name, "ps"]));
    let first = ps.lines().nth(1).unwrap_or_default();
    assert!(
        first.split_whitespace().next() == Some("1") && first.contains("sleep 100"),
        "ps in exec: {ps}"
    );
    let me = stdout(&env.ok(&["exec", &name, "sh", "-c", "echo $$"]));
    assert_ne!(me.trim(), "1", "the exec'd shell must not be PID 1");
    // Same hostname (the container's name) and the same files as PID 1.
    assert_eq!(
        stdout(&env.ok(&["exec", &name, "hostname"])),
        format!("{name}\n")
    );
    assert_eq!(
        stdout(&env.ok(&["exec", &name, "cat", "/tmp/mark"])),
        "written-by-pid1\n"
    );
    // The container's root, not the host's: / holds the image's entries only.
    let ls = stdout(&env.ok(&["exec", &name, "ls", "/"]));
    assert!(
        ls.lines().any(|l| l == "bin") && !ls.lines().any(|l| l == "boot" || l == "lost+found"),
        "ls /: {ls}"
    );

    // From the host: a long-running exec'd process shares all of PID 1's namespaces and
    // its cgroups.
    let mut child = env
        .cmd(&["exec", &name, "sleep", "30"])
        .spawn()
        .expect("spawn stepctr exec");
    let deadline = Instant::now() + Duration::from_secs(10);
    let sleeper = loop {
        if let Some(p) = children_of(child.id() as i32).into_iter().find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.starts_with("sleep\0"))
        }) {
            break p;
        }
        assert!(Instant::now() < deadline, "the exec'd sleep never appeared");
        std::thread::sleep(Duration::from_millis(20));
    };
    for ns in ["pid", "mnt", "uts", "ipc", "net", "cgroup"] {
        assert_eq!(
            ns_link(sleeper, ns),
            ns_link(pid1, ns),
            "{ns} namespace differs"
        );
    }
    let cg = |p: i32| std::fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap_or_default();
    assert_eq!(cg(sleeper), cg(pid1), "cgroups differ");
    assert!(
        cg(sleeper).contains(&format!("/stepctr/{name}")),
        "{}",
        cg(sleeper)
    );
    // SAFETY: signalling a process this test watched start.
    unsafe { libc::kill(sleeper, libc::SIGKILL) };
    let status = child.wait().expect("wait for stepctr exec");
    assert_eq!(status.code(), Some(137), "exit code of a SIGKILLed exec");

    env.ok(&["-q", "rm", "-f", &name]);
    assert_no_leaks_with(&env, &name, &[pid1, sleeper]);
}

fn exec_relays_exit_code_and_separate_stdio() {
    let env = Env::new();
    let name = unique("exec-io");
    let pid1 = start_sleeper(&env, &name);
    let out = env.run(&["exec", &name, "sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(stderr(&out), "err\n");
    // -e and -w, and PID 1's environment (HOSTNAME) inherited.
    let out = env.ok(&[
        "exec",
        "-e",
        "GREETING=hi",
        "-w",
        "/tmp",
        &name,
        "sh",
        "-c",
        "echo $GREETING $HOSTNAME $(pwd)",
    ]);
    assert_eq!(stdout(&out), format!("hi {name} /tmp\n"));
    // A command that does not exist: one line, exit 1, PID 1 still runs.
    let out = env.run(&["exec", &name, "/no/such/program"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line(&stderr(&out)), "{}", stderr(&out));
    assert!(alive(pid1));
    env.ok(&["-q", "rm", "-f", &name]);
    assert_no_leaks_with(&env, &name, &[pid1]);
}

fn exec_refuses_stopped_and_missing_containers() {
    let env = Env::new();
    let name = unique("exec-stopped");
    env.ok(&["run", "--name", &name, IMAGE, "true"]);
    let out = env.run(&["exec", &name, "true"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(one_line(&err) && err.contains("is not running"), "{err}");
    let out = env.run(&["exec", "no-such-container-here", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line(&stderr(&out)), "{}", stderr(&out));
    env.ok(&["-q", "rm", &name]);
    assert_no_leaks_with(&env, &name, &[]);
}

fn run_and_exec_as_another_user() {
    let env = Env::new();
    let name = unique("user");
    let out = env.ok(&["run", "--rm", "--name", &name, "-u", "nobody", IMAGE, "id"]);
    assert!(
        stdout(&out).starts_with("uid=65534(nobody) gid=65534"),
        "{}",
        stdout(&out)
    );
    let out = env.ok(&[
        "run",
        "--rm",
        "--name",
        &name,
        "-u",
        "1000:1000",
        IMAGE,
        "id",
    ]);
    assert_eq!(stdout(&out), "uid=1000 gid=1000 groups=1000\n");
    let out = env.run(&[
        "run",
        "--rm",
        "--name",
        &name,
        "-u",
        "no-such-user",
        IMAGE,
        "id",
    ]);
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        one_line(&err) && err.contains("unable to find user no-such-user"),
        "{err}"
    );
    assert_no_leaks_with(&env, &name, &[]);

    let pid1 = start_sleeper(&env, &name);
    let out = env.ok(&["exec", "-u", "nobody", &name, "id", "-u"]);
    assert_eq!(stdout(&out), "65534\n");
    let out = env.run(&["exec", "-u", "root:no-such-group", &name, "id"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line(&stderr(&out)), "{}", stderr(&out));
    env.ok(&["-q", "rm", "-f", &name]);
    assert_no_leaks_with(&env, &name, &[pid1]);
}
