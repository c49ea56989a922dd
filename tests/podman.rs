//! Issue 9 acceptance 3: podman uses stepctr as its OCI runtime. `podman --runtime PATH run --rm
//! IMAGE CMD`, with the default stepctr image loaded into podman from a local archive, prints what
//! CMD prints: first with runc (the yardstick: it proves this harness, and that what podman needs
//! from this host is set up), then with stepctr in runc's place.
//!
//! podman runs fully apart from any podman state of the host: its storage (`--root`,
//! `--runroot`), its per-boot files (`--tmpdir`: locks, exit files, events), its configuration
//! (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF, CONTAINERS_REGISTRIES_CONF) all live in a temporary
//! directory, and the one file podman 4.3 insists on writing outside them
//! (/var/lib/containers/cache/blob-info-cache-v1.boltdb, written by `podman load`) goes to a tmpfs
//! mounted over /var/lib/containers in this test binary's private mount namespace. Nothing
//! touches the network: the image comes from a tar file (`--pull never`, `--network none`).
//!
//! What this host needs, shown with runc in `host_needs_cgroupfs_and_lower_rlimits_with_runc_too`:
//! - `--cgroup-manager cgroupfs`: podman's default, systemd, fails with runc too ("systemd not
//!   running on this host") when systemd is not PID 1;
//! - `--ulimit nofile=1024:1024 --ulimit nproc=1024:1024`: podman asks for RLIMIT_NOFILE 1048576
//!   and RLIMIT_NPROC 32768, above this host's hard limits, and root here lacks
//!   CAP_SYS_RESOURCE to raise them: runc's setrlimit fails with EPERM.
//!
//! How podman and conmon call the runtime (the flags, the pid file, the --log file, which stdio
//! the runtime gets, config.json) is in docs/podman-runtime-calls.md, recorded with
//! tests/podman/record-runtime.sh.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn main() {
    run_tests(
        tests![
            podman_runs_the_image_with_runc,
            podman_runs_the_image_with_stepctr,
            host_needs_cgroupfs_and_lower_rlimits_with_runc_too,
        ],
        true,
    );
}

/// The name the default image has in stepctr's store (index.json's org.opencontainers.image.ref.name),
/// and so in podman's once loaded from the archive.
const IMAGE: &str = "localhost/stepctr-busybox:latest";

/// Flags of every `podman run` here, besides `--cgroup-parent`: see the module doc.
const RUN_FLAGS: &[&str] = &[
    "--pull",
    "never",
    "--network",
    "none",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

fn runc() -> PathBuf {
    which("runc")
}

fn which(prog: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path.split(':').chain(["/usr/sbin", "/sbin"]) {
        let p = Path::new(dir).join(prog);
        if p.is_file() {
            return p;
        }
    }
    panic!("{prog} is not installed (.ci/run installs it)");
}

// (a) The harness: podman, isolated as described above, runs the image with runc.
fn podman_runs_the_image_with_runc() {
    let podman = Podman::new(&runc());
    podman.load_default_image();
    podman.run_and_check("runc");
    podman.run_detached_and_check();
    podman.run_with_terminal_and_check();
}

// (b) The same with stepctr in runc's place: `podman --runtime <target/debug/stepctr>`.
// Also, with both: `run -d` + the runtime's `state` + `stop` + `rm`, and `run -t`.
fn podman_runs_the_image_with_stepctr() {
    let podman = Podman::new(&stepctr_bin());
    podman.load_default_image();
    podman.run_and_check("stepctr");
    podman.run_detached_and_check();
    podman.run_with_terminal_and_check();
}

/// The two things this host needs podman to be told, shown to be needed with runc too (so they
/// are not stepctr's doing): without them podman with runc fails here.
fn host_needs_cgroupfs_and_lower_rlimits_with_runc_too() {
    let podman = Podman::new(&runc());
    podman.load_default_image();

    // podman's default rlimits (RLIMIT_NOFILE 1048576, RLIMIT_NPROC 32768): runc may only set
    // them if they are within the hard limits or it has CAP_SYS_RESOURCE.
    let hard_nofile = hard_limit(libc::RLIMIT_NOFILE);
    if hard_nofile < 1_048_576 && !has_cap_sys_resource() {
        let parent = podman.cgroup_parent_flag();
        let out = podman.podman(&[
            "run",
            "--rm",
            "--pull",
            "never",
            "--network",
            "none",
            "--cgroup-parent",
            &parent,
            IMAGE,
            "true",
        ]);
        let err = stderr(&out);
        assert!(
            !out.status.success() && err.contains("rlimit") && err.contains("not permitted"),
            "without --ulimit, podman with runc should fail to set RLIMIT_NOFILE (hard limit here \
             {hard_nofile}, no CAP_SYS_RESOURCE): {:?}\n{err}",
            out.status
        );
    } else {
        eprintln!("note: this host allows podman's default rlimits: nothing to show");
    }

    // podman's default cgroup manager is systemd: with no systemd as PID 1, runc refuses it.
    if !Path::new("/run/systemd/system").exists() {
        let machine_slice_was_there = cgroup_hierarchies()
            .iter()
            .any(|h| h.join("machine.slice").exists());
        let out = podman.podman_with_cgroup_manager(
            "systemd",
            &[&["run", "--rm"][..], RUN_FLAGS, &[IMAGE, "true"]].concat(),
        );
        let err = stderr(&out);
        if !machine_slice_was_there {
            remove_cgroup_tree("machine.slice");
        }
        assert!(
            !out.status.success() && err.contains("systemd not running"),
            "with --cgroup-manager systemd and no systemd, podman with runc should fail: {:?}\n{err}",
            out.status
        );
    } else {
        eprintln!("note: systemd runs this host: podman's default cgroup manager would work");
    }
}

fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    assert_eq!(unsafe { libc::getrlimit(resource, &mut r) }, 0);
    r.rlim_max
}

fn has_cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    // CAP_SYS_RESOURCE is capability 24 (linux/capability.h).
    eff & (1 << 24) != 0
}

/// One isolated podman (its storage, configuration and per-boot files in a temporary
/// directory) that uses `runtime` as its OCI runtime, and puts its containers' cgroups under a
/// cgroup parent of its own. Dropping it removes everything podman made.
struct Podman {
    runtime: PathBuf,
    tmp: tempfile::TempDir,
    /// The cgroup parent (relative to each hierarchy's root) of the containers and of conmon.
    cgroup_parent: String,
    /// Entries of stepctr's default run directory before this podman ran anything (podman gives
    /// the runtime no --root and no environment of ours: stepctr keeps its state there).
    stepctr_run_before: Vec<String>,
}

/// stepctr's run directory when run without --root and without STEPCTR_RUN, as conmon and
/// podman run it.
const STEPCTR_DEFAULT_RUN: &str = "/run/stepctr";

impl Podman {
    fn new(runtime: &Path) -> Podman {
        which("podman");
        which("conmon");
        hide_host_podman_cache();
        let tmp = tempfile::Builder::new()
            .prefix("stepctr-podman-")
            .tempdir()
            .expect("temp dir");
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod 0700");
        let p = Podman {
            runtime: runtime.to_path_buf(),
            cgroup_parent: unique("stepctr-podman"),
            stepctr_run_before: list_dir(Path::new(STEPCTR_DEFAULT_RUN)),
            tmp,
        };
        for d in ["root", "runroot", "tmpdir", "networks", "home", "tmp"] {
            std::fs::create_dir_all(p.dir(d)).expect("mkdir");
        }
        // CONTAINERS_CONF: only this file is read (not /etc/containers/containers.conf).
        // runtime_supports_json: podman passes `--log-format=json --log FILE` to the runtimes
        // named here (by the runtime's file name) and reads their errors from FILE; the list is
        // podman's default plus stepctr, which writes runc's JSON lines.
        std::fs::write(
            p.dir("containers.conf"),
            format!(
                "[containers]\n\
                 [engine]\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n\
                 lock_type = \"file\"\n\
                 runtime_supports_json = [\"crun\", \"runc\", \"kata\", \"runsc\", \"krun\", \"stepctr\"]\n\
                 [network]\n\
                 network_config_dir = \"{}\"\n",
                p.dir("networks").display()
            ),
        )
        .expect("write containers.conf");
        std::fs::write(
            p.dir("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                p.dir("root").display(),
                p.dir("runroot").display()
            ),
        )
        .expect("write storage.conf");
        std::fs::write(p.dir("registries.conf"), "").expect("write registries.conf");
        p
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn cgroup_parent_flag(&self) -> String {
        format!("/{}", self.cgroup_parent)
    }

    /// `podman GLOBAL-FLAGS ARGS` with nothing of our environment but PATH.
    fn cmd_with_cgroup_manager(&self, manager: &str, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir("home"))
            .env("TMPDIR", self.dir("tmp"))
            .env("CONTAINERS_CONF", self.dir("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", self.dir("registries.conf"))
            .arg("--root")
            .arg(self.dir("root"))
            .arg("--runroot")
            .arg(self.dir("runroot"))
            .arg("--tmpdir")
            .arg(self.dir("tmpdir"))
            .arg("--network-config-dir")
            .arg(self.dir("networks"))
            .args(["--storage-driver", "overlay"])
            .args(["--cgroup-manager", manager])
            .args(["--events-backend", "file"])
            .arg("--runtime")
            .arg(&self.runtime)
            .args(args);
        c
    }

    fn podman_with_cgroup_manager(&self, manager: &str, args: &[&str]) -> Output {
        self.cmd_with_cgroup_manager(manager, args)
            .output()
            .expect("run podman")
    }

    fn podman(&self, args: &[&str]) -> Output {
        self.podman_with_cgroup_manager("cgroupfs", args)
    }

    /// `podman load` the default image from an oci-archive: the tar of stepctr's image store
    /// (an OCI image layout holding only the default image, built offline by `stepctr pull`).
    fn load_default_image(&self) {
        let env = Env::new();
        let layout = env.root.join("images");
        let archive = self.dir("stepctr-busybox.oci.tar");
        let file = std::fs::File::create(&archive).expect("create the archive");
        let mut tar = tar::Builder::new(file);
        tar.append_dir_all(".", &layout)
            .expect("tar the image layout");
        tar.into_inner().expect("write the archive");
        let out = self.podman(&["load", "-i", archive.to_str().unwrap()]);
        assert!(
            out.status.success() && stdout(&out).contains(&format!("Loaded image: {IMAGE}")),
            "podman load -i {}: {:?}\n{}{}",
            archive.display(),
            out.status,
            stdout(&out),
            stderr(&out)
        );
    }

    /// `podman run --rm IMAGE sh -c ...` prints what the command prints, its exit status is
    /// podman's, and nothing of the container is left afterwards.
    fn run_and_check(&self, what: &str) {
        let parent = self.cgroup_parent_flag();
        let cid = self.dir(&format!("cid-{what}"));
        let cid_arg = cid.to_str().unwrap();
        let script = "echo hello from pid $$ in $0";
        let out = self.podman(
            &[
                &[
                    "run",
                    "--rm",
                    "--cgroup-parent",
                    &parent,
                    "--cidfile",
                    cid_arg,
                ][..],
                RUN_FLAGS,
                &[IMAGE, "sh", "-c", script, what],
            ]
            .concat(),
        );
        let id = std::fs::read_to_string(&cid).unwrap_or_default();
        assert!(
            out.status.success(),
            "podman --runtime {} run --rm {IMAGE} failed ({:?}):\nstdout: {}\nstderr: {}",
            self.runtime.display(),
            out.status,
            stdout(&out),
            stderr(&out)
        );
        assert_eq!(stdout(&out), format!("hello from pid 1 in {what}\n"));
        self.assert_left_nothing(&id);

        // The container's exit status is podman's.
        let out = self.podman(
            &[
                &["run", "--rm", "--cgroup-parent", &parent][..],
                RUN_FLAGS,
                &[IMAGE, "sh", "-c", "echo to stderr >&2; exit 3"],
            ]
            .concat(),
        );
        assert_eq!(
            (out.status.code(), stdout(&out), stderr(&out)),
            (Some(3), String::new(), "to stderr\n".to_string()),
            "podman run ... exit 3"
        );
    }

    /// `podman run -d`: the runtime's own `state ID` (run as podman runs it: no environment of
    /// ours, so at its default root) says running, with the pid podman knows; `podman stop`
    /// (`kill ID 15`, `kill ID 9` after 1 s, `delete --force`) and `podman rm` leave nothing.
    fn run_detached_and_check(&self) {
        let parent = self.cgroup_parent_flag();
        let out = self.podman(
            &[
                &["run", "-d", "--cgroup-parent", &parent][..],
                RUN_FLAGS,
                &[IMAGE, "sleep", "100"],
            ]
            .concat(),
        );
        assert!(
            out.status.success(),
            "podman run -d: {:?}\n{}",
            out.status,
            stderr(&out)
        );
        let id = stdout(&out).trim().to_string();
        let out = self.podman(&["inspect", "--format", "{{.State.Pid}}", &id]);
        let pid: i64 = stdout(&out).trim().parse().expect("podman inspect: a pid");
        let out = Command::new(&self.runtime)
            .args(["state", &id])
            .env_clear()
            .output()
            .expect("run the runtime's state");
        assert!(
            out.status.success(),
            "{} state {id}: {:?}\n{}",
            self.runtime.display(),
            out.status,
            stderr(&out)
        );
        let state: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("state prints JSON");
        assert_eq!(state["id"], id.as_str(), "state: {state}");
        assert_eq!(state["status"], "running", "state: {state}");
        assert_eq!(state["pid"], pid, "state: {state}");
        self.exec_and_check(&id);
        let out = self.podman(&["stop", "--time", "1", &id]);
        assert!(
            out.status.success(),
            "podman stop: {:?}\n{}",
            out.status,
            stderr(&out)
        );
        let out = self.podman(&["rm", &id]);
        assert!(
            out.status.success(),
            "podman rm: {:?}\n{}",
            out.status,
            stderr(&out)
        );
        self.assert_left_nothing(&id);
    }

    /// `podman exec` in the running container `id`: conmon calls the runtime's
    /// `exec --pid-file F --process P.json --detach ID` and waits for the command itself (the
    /// runtime has returned; the command was reparented to conmon). Its output, its exit code,
    /// and with `-t` a terminal sent over --console-socket.
    fn exec_and_check(&self, id: &str) {
        let out = self.podman(&[
            "exec",
            id,
            "sh",
            "-c",
            "echo exec beside $(cat /proc/1/comm) in $PWD; test $$ != 1",
        ]);
        assert!(
            out.status.success(),
            "podman exec: {:?}\n{}",
            out.status,
            stderr(&out)
        );
        assert_eq!(stdout(&out), "exec beside sleep in /\n");
        let out = self.podman(&[
            "exec",
            "--workdir",
            "/etc",
            "--user",
            "65534",
            id,
            "sh",
            "-c",
            "echo $PWD $(id -u); exit 5",
        ]);
        assert_eq!(
            (out.status.code(), stdout(&out)),
            (Some(5), "/etc 65534\n".to_string()),
            "podman exec ... exit 5: {}",
            stderr(&out)
        );
        let out = self.podman(&["exec", "-t", id, "sh", "-c", "tty; echo on a terminal"]);
        assert!(
            out.status.success(),
            "podman exec -t: {:?}\n{}{}",
            out.status,
            stdout(&out),
            stderr(&out)
        );
        assert_eq!(stdout(&out), "/dev/pts/0\r\non a terminal\r\n");
    }

    /// `podman run -t`: the runtime gets --console-socket and hands conmon a pty's master.
    fn run_with_terminal_and_check(&self) {
        let parent = self.cgroup_parent_flag();
        let out = self.podman(
            &[
                &["run", "--rm", "-t", "--cgroup-parent", &parent][..],
                RUN_FLAGS,
                &[IMAGE, "sh", "-c", "tty; echo on a terminal"],
            ]
            .concat(),
        );
        assert!(
            out.status.success(),
            "podman run -t: {:?}\n{}",
            out.status,
            stderr(&out)
        );
        assert_eq!(stdout(&out), "/dev/pts/0\r\non a terminal\r\n");
    }

    /// No process, mount, cgroup or stepctr state of container `id` is left.
    fn assert_left_nothing(&self, id: &str) {
        assert_eq!(id.len(), 64, "a container ID from --cidfile: {id:?}");
        // conmon and `podman container cleanup` (conmon's exit command) end on their own, a
        // moment after `podman run --rm` returns.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let procs = processes_mentioning(id);
            if procs.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "processes of container {id} still alive: {procs:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mounts: Vec<String> = mount_points()
            .into_iter()
            .filter(|m| m.contains(id))
            .collect();
        assert!(
            mounts.is_empty(),
            "mounts of container {id} left: {mounts:?}"
        );
        for h in cgroup_hierarchies() {
            let cg = h.join(&self.cgroup_parent).join(format!("libpod-{id}"));
            assert!(!cg.exists(), "cgroup left: {}", cg.display());
        }
        let state: Vec<String> = list_dir(Path::new(STEPCTR_DEFAULT_RUN))
            .into_iter()
            .filter(|e| e.contains(id))
            .collect();
        assert!(
            state.is_empty(),
            "stepctr state of container {id} left in {STEPCTR_DEFAULT_RUN}: {state:?}"
        );
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Containers a failed test left: podman removes them (with its runtime) if it can...
        let _ = self
            .cmd_with_cgroup_manager("cgroupfs", &["rm", "--all", "--force", "--time", "0"])
            .output();
        // ... and whatever is left is ended here: conmon and podman's cleanup processes (their
        // command lines name our directory), the containers' processes (in our cgroup parent).
        let tmp = self.tmp.path().to_string_lossy().into_owned();
        for _ in 0..100 {
            let mut pids = processes_mentioning(&tmp);
            for h in cgroup_hierarchies() {
                pids.extend(cgroup_procs(&h.join(&self.cgroup_parent)));
            }
            pids.retain(|&p| p != std::process::id() as i32);
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // SAFETY: a plain kill(2) of a process this test started (through podman).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // podman's mounts (the overlay home, each container's merged root and shm) are in this
        // binary's mount namespace: the deepest first.
        let mut mounts: Vec<String> = mount_points()
            .into_iter()
            .filter(|m| m.starts_with(&tmp))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let c = std::ffi::CString::new(m).unwrap();
            // SAFETY: umount2 with a valid C string.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        remove_cgroup_tree(&self.cgroup_parent);
        // stepctr state of containers podman made and could not delete (64-hex IDs, new since
        // this podman started): `stepctr delete --force`, as podman would have.
        if self.runtime == stepctr_bin() {
            for e in list_dir(Path::new(STEPCTR_DEFAULT_RUN)) {
                if e.len() == 64
                    && e.bytes().all(|b| b.is_ascii_hexdigit())
                    && !self.stepctr_run_before.contains(&e)
                {
                    let _ = Command::new(stepctr_bin())
                        .args(["delete", "--force", &e])
                        .output();
                }
            }
        }
    }
}

/// podman load writes /var/lib/containers/cache/blob-info-cache-v1.boltdb whatever --root says:
/// a tmpfs over /var/lib/containers (in this binary's private mount namespace) takes it. If
/// the directory did not exist, it is made, and removed when the binary exits.
fn hide_host_podman_cache() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let dir = Path::new(HOST_PODMAN_DIR);
        if !dir.exists() {
            std::fs::create_dir(dir).expect("mkdir /var/lib/containers");
            extern "C" fn remove_made_dir() {
                let c = std::ffi::CString::new(HOST_PODMAN_DIR).unwrap();
                // SAFETY: umount2 and rmdir with a valid C string, at exit.
                unsafe {
                    libc::umount2(c.as_ptr(), libc::MNT_DETACH);
                    libc::rmdir(c.as_ptr());
                }
            }
            // SAFETY: registers a plain extern "C" function; std::process::exit runs it.
            unsafe { libc::atexit(remove_made_dir) };
        }
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "mode=0700",
                "stepctr-podman-test",
                HOST_PODMAN_DIR,
            ])
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount a tmpfs on {HOST_PODMAN_DIR}: {}",
            stderr(&out)
        );
    });
}

const HOST_PODMAN_DIR: &str = "/var/lib/containers";

fn list_dir(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Live processes whose command line contains `needle`.
fn processes_mentioning(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        // Zombies have an empty command line: they are gone already.
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// Mount points of this process's mount namespace.
fn mount_points() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| m.replace("\\040", " "))
        .collect()
}

/// Every mounted cgroup hierarchy: /sys/fs/cgroup itself (cgroup v2) and each directory in it
/// that is a hierarchy (v1 controllers, name=systemd, the hybrid unified one).
fn cgroup_hierarchies() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut out = Vec::new();
    if root.join("cgroup.procs").exists() {
        out.push(root.to_path_buf());
        return out;
    }
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let p = e.path();
        if p.join("cgroup.procs").exists() && !p.is_symlink() {
            out.push(p);
        }
    }
    out
}

/// Pids in the cgroup `dir` and all below it.
fn cgroup_procs(dir: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    if !dir.is_dir() {
        return out;
    }
    if let Ok(s) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(cgroup_procs(&e.path()));
        }
    }
    out
}

/// rmdir the cgroup `rel` and everything below it, in every hierarchy.
fn remove_cgroup_tree(rel: &str) {
    fn rm(dir: &Path) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                rm(&e.path());
            }
        }
        for _ in 0..50 {
            if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("warning: cannot remove cgroup {}", dir.display());
    }
    for h in cgroup_hierarchies() {
        let d = h.join(rel);
        if d.is_dir() {
            rm(&d);
        }
    }
}
