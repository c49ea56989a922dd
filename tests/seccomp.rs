//! Issue 5: the default seccomp filter, seen from inside containers.
//!
//! Busybox has `unshare` but no tool for most of the calls the filter refuses, so the tests
//! compile a tiny static C program (`probe`, gcc -static) that makes each call raw and prints
//! what it got (`keyctl EPERM`, `fork ok`...); it reaches the container through a read-only
//! volume. Under the default profile: `/proc/self/status` says `Seccomp: 2`, `unshare -U` and
//! `unshare -m` fail with EPERM, so do keyctl, add_key, bpf, clone with CLONE_NEWUSER,
//! personality(READ_IMPLIES_EXEC), socket(AF_ALG); clone3 fails with ENOSYS (libc falls back to
//! clone), i386's `int 0x80` is killed by SIGSYS; `exec` gets the same filter. With
//! `--security-opt seccomp=unconfined` (or `--privileged`) there is no filter: `Seccomp: 0`,
//! and `unshare -U` works (a user namespace needs no capability, where the host allows them),
//! while `unshare -m` is still refused, by the missing CAP_SYS_ADMIN this time (EPERM from the
//! kernel, not from a filter).

mod common;

use common::{assert_no_leaks, stderr, stdout, unique, Env};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const IMAGE: &str = "localhost/stepctr-busybox:latest";

fn main() {
    common::run_tests(
        tests![
            default_filter_is_on_and_refuses_namespaces,
            default_filter_refuses_the_dangerous_calls,
            unconfined_and_privileged_install_nothing,
            filter_without_no_new_privs,
            exec_is_filtered_too,
            install_is_narrated,
        ],
        true,
    )
}

const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void say(const char *name, long rc) {
    if (rc < 0)
        printf("%s %s\n", name, strerrorname_np(errno));
    else
        printf("%s ok\n", name);
}

/* A fork by raw clone/clone3: the child leaves at once. */
static void forked(const char *name, long rc) {
    if (rc == 0)
        _exit(0);
    if (rc > 0)
        waitpid(rc, NULL, 0);
    say(name, rc);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        errno = 0;
        if (!strcmp(a, "keyctl"))
            say(a, syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0));
        else if (!strcmp(a, "add_key"))
            say(a, syscall(SYS_add_key, "user", "stepctr-probe", "x", 1, -3));
        else if (!strcmp(a, "bpf"))
            say(a, syscall(SYS_bpf, 0, NULL, 0));
        else if (!strcmp(a, "unshare-user"))
            say(a, syscall(SYS_unshare, CLONE_NEWUSER));
        else if (!strcmp(a, "fork"))
            forked(a, syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
        else if (!strcmp(a, "clone-newuser"))
            forked(a, syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0));
        else if (!strcmp(a, "clone3")) {
            struct clone_args ca;
            memset(&ca, 0, sizeof ca);
            ca.exit_signal = SIGCHLD;
            forked(a, syscall(SYS_clone3, &ca, sizeof ca));
        } else if (!strcmp(a, "personality"))
            say(a, syscall(SYS_personality, 0x0400000 /* READ_IMPLIES_EXEC */));
        else if (!strcmp(a, "socket-alg"))
            say(a, socket(AF_ALG, SOCK_SEQPACKET, 0));
        else if (!strcmp(a, "socket-inet"))
            say(a, socket(AF_INET, SOCK_DGRAM, 0));
        else if (!strcmp(a, "i386")) {
            /* getpid through the 32-bit ABI (i386's number 20) */
            pid_t pid = fork();
            if (pid == 0) {
                long r;
                __asm__ volatile("int $0x80" : "=a"(r) : "a"(20) : "memory");
                _exit(r > 0 ? 0 : 1);
            }
            int st = 0;
            waitpid(pid, &st, 0);
            if (WIFSIGNALED(st))
                printf("%s killed by %s\n", a, sigabbrev_np(WTERMSIG(st)));
            else
                printf("%s exit %d\n", a, WEXITSTATUS(st));
        } else
            printf("%s unknown\n", a);
        fflush(stdout);
    }
    return 0;
}
"#;

/// The probe, compiled once per test run: the directory holding it.
fn probe_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Cargo's scratch directory for integration tests (target/tmp): nothing to clean up.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("seccomp-probe");
        std::fs::create_dir_all(&dir).expect("probe dir");
        let src = dir.join("probe.c");
        let exe = dir.join("probe");
        if std::fs::read_to_string(&src).is_ok_and(|s| s == PROBE_C) && exe.exists() {
            return dir;
        }
        std::fs::write(&src, PROBE_C).expect("write probe.c");
        let out = Command::new("gcc")
            .args(["-static", "-O1", "-o"])
            .arg(&exe)
            .arg(&src)
            .output()
            .expect("run gcc (apt-get install gcc libc6-dev): the seccomp tests compile a probe");
        assert!(
            out.status.success(),
            "gcc -static probe.c failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// `run --rm` of the default image with `opts` and the probe at /probe; returns stdout.
fn run(env: &Env, opts: &[&str], cmd: &[&str]) -> (String, String, Option<i32>) {
    let name = unique("sc");
    let volume = format!("{}:/probe:ro", probe_dir().display());
    let mut args = vec!["run", "--rm", "--name", &name, "-v", &volume];
    args.extend(opts);
    args.push(IMAGE);
    args.extend(cmd);
    let out = env.run(&args);
    assert_no_leaks(env, &name);
    (stdout(&out), stderr(&out), out.status.code())
}

fn status_line(out: &str, key: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
}

fn probe(env: &Env, opts: &[&str], calls: &[&str]) -> Vec<String> {
    let mut cmd = vec!["/probe/probe"];
    cmd.extend(calls);
    let (out, err, code) = run(env, opts, &cmd);
    assert_eq!(code, Some(0), "probe failed: {out}\n{err}");
    out.lines().map(str::to_string).collect()
}

/// Does this host let a process without CAP_SYS_ADMIN make a user namespace?
fn host_allows_userns() -> bool {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string());
    read("/proc/sys/kernel/unprivileged_userns_clone").map_or(true, |v| v != "0")
        && read("/proc/sys/user/max_user_namespaces").map_or(true, |v| v != "0")
}

fn default_filter_is_on_and_refuses_namespaces() {
    let env = Env::new();
    let (out, err, code) = run(&env, &[], &["grep", "^Seccomp", "/proc/self/status"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(status_line(&out, "Seccomp").as_deref(), Some("2"), "{out}");
    assert_eq!(
        status_line(&out, "Seccomp_filters").as_deref(),
        Some("1"),
        "{out}"
    );
    for flag in ["-U", "-m"] {
        let (out, err, code) = run(&env, &[], &["unshare", flag, "true"]);
        assert_ne!(code, Some(0), "unshare {flag} worked: {out}{err}");
        assert!(
            err.contains("Operation not permitted"),
            "unshare {flag}: {err}"
        );
    }
}

fn default_filter_refuses_the_dangerous_calls() {
    let env = Env::new();
    let got = probe(
        &env,
        &[],
        &[
            "keyctl",
            "add_key",
            "bpf",
            "unshare-user",
            "clone-newuser",
            "clone3",
            "fork",
            "personality",
            "socket-alg",
            "socket-inet",
            "i386",
        ],
    );
    let want = [
        "keyctl EPERM",
        "add_key EPERM",
        "bpf EPERM",
        "unshare-user EPERM",
        "clone-newuser EPERM",
        "clone3 ENOSYS",
        "fork ok",
        "personality EPERM",
        "socket-alg EPERM",
        "socket-inet ok",
        "i386 killed by SYS",
    ];
    assert_eq!(got, want);
}

fn unconfined_and_privileged_install_nothing() {
    let env = Env::new();
    for opts in [
        &["--security-opt", "seccomp=unconfined"][..],
        &["--privileged"],
    ] {
        let (out, err, code) = run(&env, opts, &["grep", "^Seccomp", "/proc/self/status"]);
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(
            status_line(&out, "Seccomp").as_deref(),
            Some("0"),
            "{opts:?}: {out}"
        );
    }
    let unconfined = ["--security-opt", "seccomp=unconfined"];
    let got = probe(
        &env,
        &unconfined,
        &["keyctl", "clone3", "personality", "i386"],
    );
    // No filter: keyctl reaches the kernel (the session keyring's id, or the kernel's own
    // refusal, but not the filter's EPERM), clone3 forks, i386's getpid answers.
    assert_ne!(got[0], "keyctl EPERM", "{got:?}");
    assert_eq!(got[1..], ["clone3 ok", "personality ok", "i386 exit 0"]);
    if host_allows_userns() {
        let (out, err, code) = run(&env, &unconfined, &["unshare", "-U", "true"]);
        assert_eq!(code, Some(0), "unconfined unshare -U: {out}{err}");
    }
    // A mount namespace needs CAP_SYS_ADMIN, which the default capabilities lack: refused
    // by the kernel now that no filter stands in front of it.
    let (out, err, code) = run(&env, &unconfined, &["unshare", "-m", "true"]);
    assert_ne!(code, Some(0), "unconfined unshare -m worked: {out}{err}");
}

/// Without no_new_privs the filter goes in first, while PID 1 still has CAP_SYS_ADMIN (the
/// kernel wants one or the other); the capability calls and the user switch after it pass it.
fn filter_without_no_new_privs() {
    let env = Env::new();
    let opts = ["--security-opt", "no-new-privileges=false", "-u", "nobody"];
    let (out, err, code) = run(
        &env,
        &opts,
        &[
            "grep",
            "-E",
            "^(Seccomp|NoNewPrivs|Uid):",
            "/proc/self/status",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(status_line(&out, "Seccomp").as_deref(), Some("2"), "{out}");
    assert_eq!(
        status_line(&out, "NoNewPrivs").as_deref(),
        Some("0"),
        "{out}"
    );
    assert!(
        status_line(&out, "Uid").is_some_and(|u| u.starts_with("65534")),
        "{out}"
    );
}

fn exec_is_filtered_too() {
    let env = Env::new();
    let name = unique("sc-exec");
    env.ok(&["run", "-d", "--name", &name, IMAGE, "sleep", "100"]);
    let out = env.run(&["exec", &name, "grep", "^Seccomp:", "/proc/self/status"]);
    assert_eq!(status_line(&stdout(&out), "Seccomp").as_deref(), Some("2"));
    let out = env.run(&["exec", &name, "unshare", "-U", "true"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
    env.ok(&["rm", "-f", &name]);
    assert_no_leaks(&env, &name);
}

fn install_is_narrated() {
    let env = Env::new();
    let name = unique("sc-narr");
    let out = env.ok(&["all", "--name", &name, "--rm", "--", "true"]);
    let narration = stderr(&out);
    let line = narration
        .lines()
        .find(|l| l.contains("seccomp(SECCOMP_SET_MODE_FILTER, 0, {len="))
        .unwrap_or_else(|| panic!("no seccomp call narrated:\n{narration}"));
    assert!(
        line.contains("filter=0x") && line.contains(") = 0 <"),
        "{line}"
    );
    assert!(line.contains("inside] "), "not PID 1's call: {line}");
    // It is the last call before the container's execve.
    let calls: Vec<&str> = narration
        .lines()
        .filter(|l| l.contains("inside] ") && !l.contains("] # "))
        .collect();
    let at = calls.iter().position(|l| *l == line).unwrap();
    assert!(calls[at + 1].contains("execve("), "{:?}", &calls[at..]);
    assert_no_leaks(&env, &name);

    let name = unique("sc-narr");
    let out = env.ok(&[
        "all",
        "--name",
        &name,
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        "--",
        "true",
    ]);
    let narration = stderr(&out);
    assert!(!narration.contains("seccomp("), "{narration}");
    assert!(
        narration.contains("# seccomp=unconfined: no seccomp filter"),
        "{narration}"
    );
    assert_no_leaks(&env, &name);
}
