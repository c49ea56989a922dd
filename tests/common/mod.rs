//! Shared by the integration tests: a private mount namespace for the whole test binary,
//! throw-away stepctr roots, unique container names, and leak checks.
//!
//! These tests need root and a real kernel (namespaces, overlayfs, cgroups). Each test binary
//! uses `harness = false` so that `main` can enter a private mount namespace while it is still
//! single-threaded: nothing a test mounts can ever reach the host's mount table.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

pub fn stepctr_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stepctr"))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Enter a private mount namespace (call first thing in `main`, before any thread starts).
pub fn enter_private_mount_ns() {
    if !is_root() {
        return;
    }
    // SAFETY: single-threaded at this point; plain syscalls with static strings.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            panic!("unshare(CLONE_NEWNS): {}", std::io::Error::last_os_error());
        }
        let flags = libc::MS_REC | libc::MS_PRIVATE;
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        ) != 0
        {
            panic!("make / private: {}", std::io::Error::last_os_error());
        }
    }
}

/// `tests![a, b]` is `vec![("a", a as fn()), ("b", b as fn())]`: each test named once.
#[macro_export]
macro_rules! tests {
    ($($f:ident),* $(,)?) => {
        vec![$((stringify!($f), $f as fn())),*]
    };
}

/// The test harness's arguments; no colour unless stdout is a terminal, so CI logs carry plain
/// "test result: ok. N passed" lines.
pub fn test_args() -> libtest_mimic::Arguments {
    let mut args = libtest_mimic::Arguments::from_args();
    if args.color.is_none() && !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        args.color = Some(libtest_mimic::ColorSetting::Never);
    }
    args
}

/// Run the tests of this binary with libtest-mimic, after entering a private mount namespace.
/// Tests that need root are reported as ignored when not root.
pub fn run_tests(tests: Vec<(&'static str, fn())>, needs_root: bool) -> ! {
    enter_private_mount_ns();
    let args = test_args();
    let root = is_root();
    let trials = tests
        .into_iter()
        .map(|(name, f)| {
            libtest_mimic::Trial::test(name, move || {
                f();
                Ok(())
            })
            .with_ignored_flag(needs_root && !root)
        })
        .collect();
    run_trials(&args, trials)
}

/// Run the trials, remove the store the binary's tests shared (if any), and exit.
pub fn run_trials(args: &libtest_mimic::Arguments, trials: Vec<libtest_mimic::Trial>) -> ! {
    let conclusion = libtest_mimic::run(args, trials);
    if let Some(dir) = SHARED_ROOT.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
    conclusion.exit()
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A container name no other test (or test run) uses.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}-{}-{n}", std::process::id())
}

static SHARED_ROOT: OnceLock<PathBuf> = OnceLock::new();

/// The image store shared by the tests of one binary: the default image is built once (and the
/// store removed when the binary's tests are done).
fn shared_root() -> &'static Path {
    SHARED_ROOT.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("stepctr-test-root-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let out = Command::new(stepctr_bin())
            .args(["-q", "pull"])
            .env("STEPCTR_ROOT", &dir)
            .env("STEPCTR_RUN", dir.join("run-unused"))
            .output()
            .expect("run stepctr pull");
        assert!(
            out.status.success(),
            "pull: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// A stepctr environment: its own run directory, and the shared store (or a fresh one).
pub struct Env {
    pub root: PathBuf,
    pub run: PathBuf,
    /// Rootless tests: the unprivileged user stepctr runs as (see [`Env::rootless`]).
    pub user: Option<TestUser>,
    /// The stepctr binary to run (a copy the user can reach, for a rootless Env).
    bin: PathBuf,
    _tmp: tempfile::TempDir,
}

/// A throw-away unprivileged user (`useradd`), removed with everything it runs when dropped.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Users of earlier test runs that died before removing them.
const TEST_USER_PREFIX: &str = "stepctr-rl-";

impl TestUser {
    pub fn new() -> TestUser {
        remove_stale_test_users();
        let name = format!(
            "{TEST_USER_PREFIX}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let out = Command::new("useradd")
            .args(["-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", &name])
            .output()
            .expect("run useradd");
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = |flag: &str| -> u32 {
            let out = Command::new("id")
                .args([flag, &name])
                .output()
                .expect("run id");
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("a numeric id")
        };
        TestUser {
            uid: id("-u"),
            gid: id("-g"),
            name,
        }
    }

    /// Processes that run as this user.
    pub fn processes(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            use std::os::unix::fs::MetadataExt;
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if e.metadata().is_ok_and(|m| m.uid() == self.uid) && alive(pid) {
                out.push(pid);
            }
        }
        out
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        remove_user(&self.name);
    }
}

fn remove_user(name: &str) {
    let _ = Command::new("pkill").args(["-KILL", "-u", name]).output();
    for _ in 0..50 {
        let left = Command::new("pgrep").args(["-u", name]).output();
        if left.map(|o| o.stdout.is_empty()).unwrap_or(true) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = Command::new("userdel").arg(name).output();
}

fn remove_stale_test_users() {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for line in passwd.lines() {
        let name = line.split(':').next().unwrap_or("");
        let Some(rest) = name.strip_prefix(TEST_USER_PREFIX) else {
            continue;
        };
        // Ours (this test binary's) are alive; others' pids are gone.
        let pid: i32 = rest
            .split('-')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if pid != std::process::id() as i32 && !alive(pid) {
            remove_user(name);
        }
    }
}

/// A temporary directory only its owner may enter (0700 whatever the umask: tests/unpack.rs
/// runs with umask 0, and stepctr refuses a run directory under one everyone may write).
fn private_tempdir(prefix: &str) -> tempfile::TempDir {
    let tmp = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir");
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod 0700");
    tmp
}

/// Can `uid` (not root, in no group of ours) reach and run `path`?
fn others_can_run(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.ancestors()
        .all(|p| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

impl Env {
    /// Shared image store, private run directory.
    pub fn new() -> Env {
        let tmp = private_tempdir("stepctr-test-run-");
        Env {
            root: shared_root().to_path_buf(),
            run: tmp.path().join("run"),
            user: None,
            bin: stepctr_bin(),
            _tmp: tmp,
        }
    }

    /// A new unprivileged user with a store and run directory of their own: every command
    /// runs as them (rootless mode).
    pub fn rootless() -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("stepctr-test-rl-")
            .tempdir()
            .expect("temp dir");
        let user = TestUser::new();
        let own = |p: &Path| {
            std::os::unix::fs::chown(p, Some(user.uid), Some(user.gid))
                .expect("chown to the test user")
        };
        own(tmp.path());
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let bin = if others_can_run(&stepctr_bin()) {
            stepctr_bin()
        } else {
            let copy = tmp.path().join("stepctr");
            std::fs::copy(stepctr_bin(), &copy).expect("copy stepctr where the user reaches it");
            copy
        };
        Env {
            root: tmp.path().join("root"),
            run: tmp.path().join("run"),
            user: Some(user),
            bin,
            _tmp: tmp,
        }
    }

    /// The test's temporary directory (owned by the user in a rootless Env).
    pub fn tmp(&self) -> &Path {
        self._tmp.path()
    }

    /// A store of its own too (for tests of pull and load).
    pub fn fresh() -> Env {
        let tmp = private_tempdir("stepctr-test-");
        Env {
            root: tmp.path().join("root"),
            run: tmp.path().join("run"),
            user: None,
            bin: stepctr_bin(),
            _tmp: tmp,
        }
    }

    /// `stepctr ARGS` in this environment (no colour); in a rootless Env as its user, with
    /// nothing of our environment but the stepctr variables (setpriv, from util-linux).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let Some(u) = &self.user else {
            let mut c = Command::new(&self.bin);
            c.args(args)
                .env("STEPCTR_ROOT", &self.root)
                .env("STEPCTR_RUN", &self.run)
                .env("NO_COLOR", "1");
            return c;
        };
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", u.uid))
            .arg(format!("--regid={}", u.gid))
            .args([
                "--clear-groups",
                "env",
                "-i",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "NO_COLOR=1",
            ])
            .arg(format!("HOME={}", self.tmp().display()))
            .arg(format!("STEPCTR_ROOT={}", self.root.display()))
            .arg(format!("STEPCTR_RUN={}", self.run.display()))
            .arg(&self.bin)
            .args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run stepctr")
    }

    /// Run and insist on exit code 0.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "stepctr {args:?} failed ({:?}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn container_dir(&self, name: &str) -> PathBuf {
        self.run.join(name)
    }

    /// The container's state.json, parsed.
    pub fn state(&self, name: &str) -> serde_json::Value {
        let bytes = std::fs::read(self.container_dir(name).join("state.json")).expect("state.json");
        serde_json::from_slice(&bytes).expect("state.json is JSON")
    }

    /// Remove the container (if any) and assert that nothing of it is left.
    pub fn rm_and_check(&self, name: &str) {
        if self.container_dir(name).exists() {
            self.ok(&["-q", "rm", name]);
        }
        assert_no_leaks(self, name);
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Best effort: never leave containers behind, even when a test fails half-way.
        if self.run.exists() {
            let _ = self.cmd(&["-q", "reset"]).output();
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every cgroup directory named `name` under any hierarchy (v1 or v2).
pub fn cgroup_dirs_named(name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let base = Path::new("/sys/fs/cgroup");
    let mut candidates = vec![base.join("stepctr").join(name)];
    if let Ok(rd) = std::fs::read_dir(base) {
        for e in rd.flatten() {
            candidates.push(e.path().join("stepctr").join(name));
        }
    }
    for c in candidates {
        if c.is_dir() {
            found.push(c);
        }
    }
    found
}

/// Processes whose command line mentions `needle` (other than ourselves).
pub fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(needle) {
            out.push((pid, text));
        }
    }
    out
}

/// Is this pid alive (and not a zombie)?
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rfind(')').is_some_and(|i| s[i + 2..].starts_with('Z')),
        Err(_) => false,
    }
}

/// Nothing of container `name` is left (see [`assert_no_leaks`]), and none of `pids` runs.
pub fn assert_no_leaks_with(env: &Env, name: &str, pids: &[i32]) {
    assert_no_leaks(env, name);
    for pid in pids {
        assert!(!alive(*pid), "process {pid} of {name} still runs");
    }
}

/// Nothing of container `name` is left: no mount, no cgroup, no state, no stepctr process
/// working on it.
pub fn assert_no_leaks(env: &Env, name: &str) {
    let dir = env.container_dir(name);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir_s = dir.to_string_lossy();
    let mounts: Vec<&str> = mountinfo.lines().filter(|l| l.contains(&*dir_s)).collect();
    assert!(
        mounts.is_empty(),
        "mounts of {name} left:\n{}",
        mounts.join("\n")
    );
    let cgroups = cgroup_dirs_named(name);
    assert!(cgroups.is_empty(), "cgroups of {name} left: {cgroups:?}");
    assert!(!dir.exists(), "state directory {} left", dir.display());
    let procs = processes_mentioning(name);
    assert!(procs.is_empty(), "processes of {name} left: {procs:?}");
}

/// The default image flattened into one directory tree (`load --flatten`), made once per test
/// binary and removed at its exit: a rootfs to copy into OCI bundles.
pub fn flat_rootfs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let env = Env::new();
        let name = unique("flattpl");
        env.ok(&["-q", "load", "--flatten", &name]);
        let layer = env.state(&name)["layers"][0]
            .as_str()
            .expect("a flattened layer")
            .to_string();
        let dir = tempfile::Builder::new()
            .prefix("stepctr-flat-rootfs-")
            .tempdir()
            .expect("temp dir")
            .keep();
        copy_tree(Path::new(&layer), &dir.join("rootfs"));
        env.rm_and_check(&name);
        FLAT_ROOTFS.set(dir.clone()).unwrap();
        // SAFETY: registering a plain function to run at exit (run_tests ends with exit()).
        unsafe { libc::atexit(remove_flat_rootfs) };
        dir.join("rootfs")
    })
}

static FLAT_ROOTFS: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_flat_rootfs() {
    if let Some(d) = FLAT_ROOTFS.get() {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// `cp -a FROM TO`: a tree with its owners, modes and links.
pub fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// An OCI bundle in `dir`: a copy of [`flat_rootfs`] and `runc spec`'s config.json (terminal
/// off), then `edit`ed.
pub fn runc_spec_bundle(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    copy_tree(flat_rootfs(), &dir.join("rootfs"));
    let st = Command::new("runc")
        .args(["spec", "-b"])
        .arg(dir)
        .status()
        .expect("runc spec");
    assert!(st.success());
    let file = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    v["process"]["terminal"] = serde_json::json!(false);
    edit(&mut v);
    std::fs::write(&file, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    dir.to_path_buf()
}
