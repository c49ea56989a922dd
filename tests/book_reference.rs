//! The book's two reference chapters, generated and checked (issue 8, acceptance 3):
//!
//! - `book/src/reference/cli.md`: `stepctr --help` and `stepctr SUB --help` for every
//!   subcommand (nested ones too), as the binary prints them. The subcommands are listed from
//!   the clap definitions (`Cli::command()`), the text is the binary's own output.
//! - `book/src/reference/kernel-calls.md`: every call stepctr narrates (every name
//!   `Sys::name()` returns), its man page, what it does, and which commands narrated it in real
//!   runs made here (as root, in a private mount namespace, in throw-away roots).
//!
//! Both files are regenerated in memory and compared with the committed ones; the hand-written
//! intro above the marker line is kept. `STEPCTR_BLESS=1 cargo test --test book_reference`
//! rewrites them.

mod common;

use clap::CommandFactory;
use common::{assert_no_leaks, stderr, Env};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn main() {
    common::enter_private_mount_ns();
    let root = common::is_root();
    if root {
        private_network();
    }
    let args = common::test_args();
    let trials = vec![
        libtest_mimic::Trial::test("cli_reference_is_the_help_output", || {
            cli_reference();
            Ok(())
        }),
        libtest_mimic::Trial::test("kernel_calls_glossary_covers_every_narrated_call", || {
            kernel_calls();
            Ok(())
        })
        .with_ignored_flag(!root),
    ];
    common::run_trials(&args, trials)
}

/// A network namespace of our own (still single-threaded), so that the bridge stepctr0 and
/// its address leases are ours alone: another test's container on the host's bridge would
/// change what `ns` and `rm` narrate (the bridge made, the bridge removed). /sys/class/net
/// (and the devices it points to) and /run/stepctr-leases are ours too, in our private mount
/// namespace.
fn private_network() {
    // SAFETY: plain syscalls, no other thread yet.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        panic!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
    }
    let sys = tempfile::Builder::new()
        .prefix("stepctr-book-sysfs-")
        .tempdir()
        .expect("temp dir")
        .keep();
    let leases = Path::new("/run/stepctr-leases");
    std::fs::create_dir_all(leases).expect("mkdir /run/stepctr-leases");
    let sh = format!(
        "set -e; ip link set lo up; mount -t sysfs sysfs {s}; \
         mount --bind {s}/class/net /sys/class/net; \
         mount --bind {s}/devices/virtual/net /sys/devices/virtual/net; \
         umount {s}; rmdir {s}; mount -t tmpfs -o mode=0755 stepctr-leases {l}",
        s = sys.display(),
        l = leases.display()
    );
    let out = Command::new("sh")
        .args(["-c", &sh])
        .output()
        .expect("run sh");
    assert!(out.status.success(), "a private network: {}", stderr(&out));
}

const MARKER: &str =
    "<!-- Generated below this line by tests/book_reference.rs: STEPCTR_BLESS=1 cargo test --test book_reference -->";

fn book_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The committed file's hand-written part (everything above the marker), or `default`.
fn intro_of(path: &Path, default: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    match text.find(MARKER) {
        Some(at) => text[..at].trim_end().to_string(),
        None => default.trim_end().to_string(),
    }
}

/// Compare `want` with the committed file; with STEPCTR_BLESS=1, write it instead.
fn check_or_bless(path: &Path, want: &str) {
    let bless = std::env::var("STEPCTR_BLESS").is_ok_and(|v| v == "1");
    let have = std::fs::read_to_string(path).unwrap_or_default();
    if have == want {
        return;
    }
    if bless {
        std::fs::write(path, want).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        return;
    }
    panic!(
        "{} is out of date:\n{}\nRegenerate it with: STEPCTR_BLESS=1 cargo test --test book_reference",
        path.display(),
        diff(&have, want)
    );
}

/// A short diff-like report: the first differing lines, with context.
fn diff(have: &str, want: &str) -> String {
    let a: Vec<&str> = have.lines().collect();
    let b: Vec<&str> = want.lines().collect();
    let first = a
        .iter()
        .zip(&b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    // The first line after `first` where the rest of both files agree again.
    let (mut ea, mut eb) = (a.len(), b.len());
    while ea > first && eb > first && a[ea - 1] == b[eb - 1] {
        ea -= 1;
        eb -= 1;
    }
    if a.len() == b.len() {
        // Lines changed in place (a help text reworded): each one, with its number.
        let mut out = String::from("(- committed, + generated)\n");
        let changed: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
        for &i in changed.iter().take(20) {
            out.push_str(&format!("@@ line {} @@\n- {}\n+ {}\n", i + 1, a[i], b[i]));
        }
        if changed.len() > 20 {
            out.push_str(&format!("  ... and {} more lines\n", changed.len() - 20));
        }
        return out;
    }
    let mut out = format!("@@ line {} @@ (- committed, + generated)\n", first + 1);
    for l in &a[first.saturating_sub(3)..first] {
        out.push_str(&format!("  {l}\n"));
    }
    for l in a[first..ea].iter().take(40) {
        out.push_str(&format!("- {l}\n"));
    }
    for l in b[first..eb].iter().take(40) {
        out.push_str(&format!("+ {l}\n"));
    }
    if ea - first > 40 || eb - first > 40 {
        out.push_str("  ... (more lines differ)\n");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The CLI reference
// ---------------------------------------------------------------------------------------------

const CLI_INTRO: &str = "# The command line

Every `stepctr` command with its full help, exactly as `stepctr COMMAND --help` prints it
(in a terminal 100 columns wide). The tests regenerate this page from the binary and fail
when a flag or a help text changes without it.
";

/// Every command path: [], [pull], ..., [demo, isolation], ... (clap's own `help` left out).
fn command_paths(cmd: &clap::Command, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let mut p = prefix.clone();
        p.push(sub.get_name().to_string());
        command_paths(sub, p, out);
    }
}

/// `stepctr PATH... --help`, as a terminal 100 columns wide would show it. clap wraps at the
/// width of the first of stdout, stderr, stdin that is a terminal, else at $COLUMNS: none of
/// the three is one here. Trailing blanks are dropped from each line.
fn help_text(path: &[String]) -> String {
    let out = Command::new(common::stepctr_bin())
        .args(path)
        .arg("--help")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .stdin(Stdio::null())
        .output()
        .expect("run stepctr --help");
    assert!(
        out.status.success(),
        "stepctr {} --help failed: {}",
        path.join(" "),
        stderr(&out)
    );
    let text = String::from_utf8(out.stdout).expect("help is UTF-8");
    assert!(!text.contains("```"), "help text with a code fence");
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_string()
}

fn cli_reference() {
    let path = book_file("book/src/reference/cli.md");
    let mut paths = Vec::new();
    command_paths(&stepctr::cli::Cli::command(), Vec::new(), &mut paths);
    assert!(paths.len() > 20, "too few commands: {paths:?}");
    let mut md = intro_of(&path, CLI_INTRO);
    md.push_str("\n\n");
    md.push_str(MARKER);
    md.push('\n');
    for p in &paths {
        let level = if p.len() <= 1 { "##" } else { "###" };
        let name = std::iter::once("stepctr")
            .chain(p.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        md.push_str(&format!(
            "\n{level} `{name}`\n\n```text\n$ {name} --help\n{}\n```\n",
            help_text(p)
        ));
    }
    check_or_bless(&path, &md);
}

// ---------------------------------------------------------------------------------------------
// The kernel calls glossary
// ---------------------------------------------------------------------------------------------

const CALLS_INTRO: &str = "# Kernel calls

Every system call stepctr narrates, in the order of the alphabet: its name as the narration
shows it, its manual page (`man 2 mount` in a terminal), what it does and why a container
runtime needs it. The last column says which stepctr commands narrated the call when the
tests last ran them, for real, as root: `pull`, `load`, `cgroup --memory 64M --pids-limit 16
--cpus 0.5`, `ns --network bridge`, `fs` with two volumes (one `:ro`), `start -u 1000:1000 -p`,
`rm`, `run -dt`, `attach`, `exec -u 1000`, `kill`, `rm -f` and `demo breakout`, each with `-v`.
A call that only some hosts, images or modes make says when it is made instead.

Writes to `/sys/fs/cgroup/...` and `/proc/PID/uid_map` are narrated as what they are, an
`openat` and a `write`. Lines that start with `[http]` are requests to a registry, not
kernel calls.
";

/// One glossary entry: the call as narrated, its man page(s), what and why, and (for a call
/// the tests' runs do not make here) when it is made.
struct Entry {
    name: &'static str,
    man: &'static str,
    what: &'static str,
    seen: Seen,
}

/// Whether the tests' runs narrate a call.
enum Seen {
    /// Always: the table says which commands did.
    Here,
    /// Never here: made only on other hosts, images or modes, said in the text.
    Only(&'static str),
    /// Depending on the host's state (said in the text): the table shows the text; when it is
    /// narrated, only by the commands listed.
    Sometimes(&'static str, &'static [&'static str]),
}

const fn e(name: &'static str, man: &'static str, what: &'static str) -> Entry {
    Entry {
        name,
        man,
        what,
        seen: Seen::Here,
    }
}

const fn only(
    name: &'static str,
    man: &'static str,
    what: &'static str,
    when: &'static str,
) -> Entry {
    Entry {
        name,
        man,
        what,
        seen: Seen::Only(when),
    }
}

const fn sometimes(
    name: &'static str,
    man: &'static str,
    what: &'static str,
    when: &'static str,
    by: &'static [&'static str],
) -> Entry {
    Entry {
        name,
        man,
        what,
        seen: Seen::Sometimes(when, by),
    }
}

const ENTRIES: &[Entry] = &[
    e("accept4", "accept4(2)", "Takes the next connection waiting on a listening socket. The shim of a container started with `-t` accepts `stepctr attach` on the container's attach socket."),
    e("bind", "bind(2)", "Gives a socket its address: a path for the shim's attach socket (unix), an IP address and port for the port proxy of `-p` (inet)."),
    e("capget", "capget(2)", "Reads a process's capability sets: what the container's process holds before its own are set (root's, less what the host withholds), the most it can keep."),
    e("capset", "capset(2)", "Sets the effective, permitted and inheritable capability sets. The container's root keeps only docker's default capabilities, so it cannot mount, load modules or change the clock."),
    e("chdir", "chdir(2)", "Changes the working directory. Done into the new root before and after pivot_root; the chroot breakout demo climbs out with `chdir(\"..\")`."),
    e("chroot", "chroot(2)", "Changes what `/` means for one process, and nothing else. The breakout demo shows why runtimes use pivot_root in a mount namespace instead."),
    e("clone", "clone(2)", "Creates a child process (a fork). stepctr forks for each step that must happen in another process: the shim, the container's PID 1, the process that joins namespaces."),
    only("clone3", "clone3(2)", "Creates a child process with more options than clone; with CLONE_INTO_CGROUP the child is born inside the container's cgroup, so none of its work is counted elsewhere.", "on pure cgroup v2 hosts (one unified hierarchy), where `start` makes PID 1 with it; on a hybrid host (cgroup v1 controllers, as where the tests ran) PID 1 is forked, then written into cgroup.procs"),
    e("close", "close(2)", "Releases a file descriptor. Shown with `-v` only: bookkeeping, but each fd left open would leak into the container."),
    e("close_range", "close_range(2)", "Marks every file descriptor above stderr close-on-exec at once, so no fd of stepctr's reaches the container's program (runc's CVE-2024-21626 was such a leak)."),
    e("connect", "connect(2)", "Connects a socket to an address. `stepctr attach` connects to the shim's attach socket."),
    e("prlimit64", "prlimit(2)", "Sets a resource limit of a process (how many files it may open, how many processes it may have...). PID 1 of an OCI container sets the bundle's `process.rlimits` this way before its execve."),
    e("read", "read(2)", "Reads from a file descriptor. PID 1 of a container made by the OCI `create` waits in a read of its exec fifo until `stepctr start` writes one byte into it; then it execs the bundle's process."),
    e("dup3", "dup3(2)", "Makes one fd a copy of another. The container's PID 1 gets its stdin, stdout and stderr this way (the terminal or the log)."),
    e("execve", "execve(2)", "Replaces the program of the calling process. The last call of every container start: from here on PID 1 is the image's program, not stepctr."),
    only("fchmod", "fchmod(2)", "Sets a file's mode through its fd: the exact mode of a layer's root directory, and again after chown on a setuid or setgid file (chown clears those bits).", "when a layer has an entry for its root directory or setuid/setgid files, and in rootless mode (directories kept writable until the end); the default busybox image has neither"),
    e("fchmodat", "fchmodat(2)", "Sets the mode of a path relative to a directory fd. Used on directories and special files of a layer, which are not opened for writing."),
    e("fchown", "fchown(2)", "Sets a file's owner through its fd, as the layer's tar entry says."),
    e("fchownat", "fchownat(2)", "Sets the owner of a path relative to a directory fd, without following symlinks: directories, symlinks and devices of a layer get the image's owners."),
    only("fsetxattr", "fsetxattr(2)", "Sets an extended attribute on an open file: file capabilities (`security.capability`) and other xattrs a layer carries.", "when a layer's files carry extended attributes (the default busybox image has none)"),
    e("getcwd", "getcwd(2)", "Returns the working directory. Checked in the container before execve: the working directory must be inside the new root."),
    e("getdents64", "getdents(2)", "Reads the entries of a directory. The breakout demo lists the host's / with it once it is out of the chroot; unpacking a layer reads a directory that a whiteout or a new entry replaces, to remove what is in it."),
    e("ioctl", "ioctl(2), ioctl_tty(2), netdevice(7)", "Device-specific requests: a pseudo-terminal's number, lock and window size (TIOCGPTN, TIOCSPTLCK, TIOCSWINSZ, TIOCSCTTY), and bringing a network interface up (SIOCSIFFLAGS)."),
    e("kill", "kill(2)", "Sends a signal to a process. `stepctr kill` and `stop` signal PID 1 (from the host, by its host pid); `rm` kills what is left of a container, such as the port proxy of `-p`."),
    only("linkat", "linkat(2)", "Makes a hard link: a second name for the same file, as a layer's tar stores it.", "when a layer holds hard links (the default busybox image has none)"),
    e("listen", "listen(2)", "Makes a bound socket accept connections: the shim's attach socket, and the TCP port of `-p`."),
    only("llistxattr", "llistxattr(2)", "Lists the extended attributes of a path. When a layer replaces a file, its old xattrs are listed to remove those the new entry lacks.", "when a later layer replaces a file of an earlier one (images with more than one layer)"),
    only("lremovexattr", "lremovexattr(2)", "Removes an extended attribute from a path: one the replaced file had and the layer's new entry does not.", "when a later layer replaces a file that had extended attributes"),
    only("lsetxattr", "lsetxattr(2)", "Sets an extended attribute on a path without following symlinks: the overlay `opaque` marker a layer's whiteout asks for, and the xattrs of symlinks and directories.", "when a layer has an opaque-directory whiteout or xattrs on a directory or symlink (not the default busybox image)"),
    e("mkdirat", "mkdirat(2)", "Makes a directory: the image store, the container's state directory, its cgroup in each hierarchy, the mount points of its root."),
    e("mknodat", "mknodat(2)", "Makes a device node or a file to mount on: the container's /dev gets the few safe devices (null, zero, random, tty...) and nothing of the host's."),
    e("mount", "mount(2)", "Attaches a filesystem or changes a mount: overlayfs for the container's root, proc, sysfs, tmpfs /dev, bind mounts for volumes and pinned namespaces, and MS_PRIVATE so that no mount leaks to the host."),
    e("mount_setattr", "mount_setattr(2)", "Changes the attributes of a whole mount tree at once: a `:ro` volume is made read-only with all its submounts in one call."),
    only("move_mount", "move_mount(2)", "Attaches a detached mount (from open_tree) at a path.", "with `exec -t` (the new terminal appears inside the container) and with idmapped layers under `--userns`"),
    e("newfstatat", "fstatat(2)", "Reads a file's metadata: before PID 1 starts, each path to mask (/proc/keys, /proc/acpi, /sys/firmware...) is a file or a directory, which decides how it is hidden."),
    only("open_tree", "open_tree(2)", "Makes a detached copy of a mount, held by an fd, to be attached elsewhere with move_mount.", "with `exec -t` (the terminal's slave, made while the host's /dev/pts is in view) and with idmapped layers under `--userns`"),
    e("openat", "openat(2)", "Opens a file. Also the first half of every write to cgroupfs and procfs (`openat(2)` + `write(2)`: limits, cgroup.procs, uid_map), and how namespace files are opened for setns."),
    e("openat2", "openat2(2)", "Opens a path with RESOLVE_IN_ROOT or RESOLVE_BENEATH: the kernel itself keeps the lookup inside the container's root, so a hostile image's symlinks cannot point stepctr at the host's files."),
    e("pivot_root", "pivot_root(2)", "Makes the container's root the root of its mount namespace and moves the old root aside, to be unmounted: unlike chroot, nothing of the host is left to climb back to."),
    e("prctl", "prctl(2)", "Per-process settings: PR_SET_NO_NEW_PRIVS (no setuid gains), PR_CAPBSET_DROP (the bounding set), PR_CAP_AMBIENT, PR_SET_PDEATHSIG (die with the shim), PR_SET_DUMPABLE."),
    e("recvmsg", "recvmsg(2)", "Receives a message: the kernel's netlink answers when links and addresses are made, and the terminal's fd (SCM_RIGHTS) that `stepctr attach` gets from the shim."),
    e("renameat", "renameat(2)", "Renames a path atomically: an unpacked layer, or the init layer `fs` makes, is written under a temporary name and renamed into place once complete, so no half-written one is ever used."),
    sometimes("sched_setaffinity", "sched_setaffinity(2)", "Pins the calling thread to one CPU, to make a new mount namespace there.", "at times, by `ns` (alone or in `run`, `all`), when the kernel refuses to pin a new mount namespace: it numbers them per CPU and may take ours for an older one, so `ns` tries again on another CPU", &["ns", "run"]),
    e("seccomp", "seccomp(2)", "Installs the container's default system call filter, as a BPF program: calls a container has no business making (keyctl, bpf, mount, new namespaces...) fail with EPERM, for PID 1 and all it runs."),
    e("sendmsg", "sendmsg(2)", "Sends a message: netlink requests that make the bridge, the veth pair and their addresses and routes, and the terminal's fd (SCM_RIGHTS) the shim hands to `stepctr attach`."),
    e("setgroups", "setgroups(2)", "Sets the supplementary groups: with `-u`, none of root's groups stay."),
    e("sethostname", "sethostname(2)", "Sets the hostname, in the container's own UTS namespace: the host's stays as it is."),
    e("setns", "setns(2)", "Joins an existing namespace through its fd: `fs` enters the container's mount namespace, `start` and `exec` join all of the container's namespaces."),
    e("setresgid", "setresgid(2)", "Sets the real, effective and saved group ids: with `-u`, the container's program runs as that group, with no way back."),
    e("setresuid", "setresuid(2)", "Sets the real, effective and saved user ids: with `-u`, the last step before execve drops root."),
    e("setsid", "setsid(2)", "Starts a new session: the shim leaves stepctr's terminal, and PID 1 of `-t` gets the container's terminal as its controlling one."),
    e("setsockopt", "setsockopt(2)", "Sets a socket option: SO_REUSEADDR on the port proxy's listening socket, TCP_NODELAY on its connections."),
    e("socket", "socket(2)", "Makes a socket: netlink (NETLINK_ROUTE) to build the network, unix for the attach socket, inet for the port proxy."),
    e("statfs", "statfs(2)", "Asks which filesystem a path is on: `cgroup` checks /sys/fs/cgroup to know whether the host has cgroup v1, v2 or both."),
    e("symlinkat", "symlinkat(2)", "Makes a symbolic link: the busybox image is mostly symlinks to /bin/busybox, and /dev/fd, /dev/stdin and friends point into /proc/self."),
    e("umask", "umask(2)", "Sets the mask applied to new files' modes: cleared while a layer is unpacked, so files get exactly the image's modes."),
    e("umount2", "umount2(2)", "Detaches a mount: the old root after pivot_root (MNT_DETACH), and a container's mounts and pinned namespaces at `rm`."),
    e("unlinkat", "unlinkat(2)", "Removes a file or (AT_REMOVEDIR) a directory: a container's cgroups, its state directory, its network lease."),
    e("unshare", "unshare(2)", "Moves the calling process into new namespaces (mount, UTS, IPC, network, PID, cgroup): the container's own views of the system."),
    e("utimensat", "utimensat(2)", "Sets a file's access and modification times, as the layer's tar entry records them."),
    e("wait4", "wait4(2)", "Waits for a child to end and collects its exit status: the shim reaps PID 1, stepctr reaps its helpers."),
    e("write", "write(2)", "Writes to an fd. On cgroupfs it sets a limit (memory.limit_in_bytes, pids.max, cpu.cfs_quota_us) or moves a process into the cgroup (cgroup.procs); on procfs it writes id maps; else file data from a layer."),
];

/// Every name `Sys::name()` returns, read from its match in src/kernel/mod.rs.
fn sys_names() -> BTreeSet<String> {
    let src = include_str!("../src/kernel/mod.rs");
    let start = src
        .find("pub fn name(&self) -> &'static str")
        .expect("Sys::name in src/kernel/mod.rs");
    let body = &src[start..];
    let end = body.find("\n    }\n").expect("end of Sys::name");
    let re = regex::Regex::new(r#"Sys::\w+(?: \{ \.\. \})? => "([a-z0-9_]+)""#).unwrap();
    let names: BTreeSet<String> = re
        .captures_iter(&body[..end])
        .map(|c| c[1].to_string())
        .collect();
    assert!(names.len() > 40, "too few names in Sys::name: {names:?}");
    names
}

/// The calls named in a narration: `name(` at the start of a line, after any `[pid ...] `.
fn narrated_calls(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"^(?:\[pid [^\]]*\] )?([a-z][a-z0-9_]*)\(").unwrap();
    text.lines()
        .filter_map(|l| re.captures(l).map(|c| c[1].to_string()))
        .collect()
}

/// The commands the glossary's runs make, in the order of the table's column.
const ORDER: &[&str] = &[
    "pull",
    "load",
    "cgroup",
    "ns",
    "fs",
    "start",
    "rm",
    "run",
    "attach",
    "exec",
    "kill",
    "demo breakout",
    "bundle",
    "create",
    "delete",
];

/// Run `stepctr -v --trace-file T ARGS` in `env`; T, to be read once every run is over (a
/// detached shim goes on narrating there).
fn narrate(env: &Env, trace_dir: &Path, n: usize, args: &[&str]) -> PathBuf {
    let trace = trace_dir.join(format!("{n:02}"));
    let t = trace.to_string_lossy().into_owned();
    let mut all = vec!["-v", "--trace-file", t.as_str()];
    all.extend_from_slice(args);
    // Not `output()`: the stdio of an OCI `create` is its container's, held until PID 1 ends.
    let errors = trace_dir.join(format!("{n:02}.stderr"));
    let status = env
        .cmd(&all)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errors).expect("a file for stderr"))
        .status()
        .expect("run stepctr");
    assert!(
        status.success(),
        "stepctr {args:?} failed ({status:?}):\n{}",
        std::fs::read_to_string(&errors).unwrap_or_default()
    );
    trace
}

/// Wait until `stepctr ps` says the container has exited.
fn wait_exited(env: &Env, name: &str) {
    for _ in 0..200 {
        let ps = common::stdout(&env.ok(&["ps"]));
        if ps.lines().any(|l| l.contains(name) && l.contains("exited")) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("{name} still runs 5 s after stepctr kill");
}

/// Until the OCI `state` of `id` says stopped.
fn wait_stopped(env: &Env, id: &str) {
    for _ in 0..200 {
        let state = common::stdout(&env.ok(&["state", id]));
        if state.contains("\"status\":\"stopped\"") || state.contains("\"status\": \"stopped\"") {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("{id} still runs 5 s after its start");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Which commands narrate which call, from real runs.
fn observed() -> BTreeMap<String, BTreeSet<&'static str>> {
    let env = Env::fresh();
    let tmp = tempfile::tempdir().expect("temp dir");
    let traces = tmp.path().join("traces");
    std::fs::create_dir(&traces).unwrap();
    let (vol, vol_ro) = (tmp.path().join("vol"), tmp.path().join("vol-ro"));
    let (v1, v2) = (
        format!("{}:/x", vol.display()),
        format!("{}:/y:ro", vol_ro.display()),
    );
    let c = common::unique("book-ref");
    let d = common::unique("book-ref-d");
    let port = format!("127.0.0.1:{}:80", free_port());
    let o = common::unique("book-ref-oci");
    let bundle_dir = tmp.path().join("bundle").to_string_lossy().into_owned();
    let image = "localhost/stepctr-busybox";
    let runs: Vec<(&'static str, Vec<&str>)> = vec![
        ("pull", vec!["pull"]),
        ("load", vec!["load", &c]),
        (
            "cgroup",
            vec![
                "cgroup",
                &c,
                "--memory",
                "64M",
                "--pids-limit",
                "16",
                "--cpus",
                "0.5",
            ],
        ),
        ("ns", vec!["ns", &c, "--network", "bridge"]),
        ("fs", vec!["fs", &c, "-v", &v1, "-v", &v2]),
        (
            "start",
            vec!["start", &c, "-u", "1000:1000", "-p", &port, "--", "true"],
        ),
        ("rm", vec!["rm", &c]),
        (
            "run",
            vec!["run", "-dt", "--name", &d, image, "--", "sleep", "3"],
        ),
        ("attach", vec!["attach", &d]),
        ("rm", vec!["rm", "-f", &d]),
        (
            "run",
            vec!["run", "-d", "--name", &d, image, "--", "sleep", "100"],
        ),
        ("exec", vec!["exec", "-u", "1000", &d, "--", "true"]),
        ("kill", vec!["kill", &d]),
        // `rm -f` of a stopped container, every time (not a race with the SIGKILL).
        ("", vec!["wait-exited", &d]),
        ("rm", vec!["rm", "-f", &d]),
        ("demo breakout", vec!["demo", "breakout"]),
        // The OCI runtime's commands, on a bundle of the default image (its `sh` ends at once:
        // stdin is /dev/null).
        ("bundle", vec!["bundle", image, &bundle_dir]),
        ("create", vec!["create", "--bundle", &bundle_dir, &o]),
        ("start", vec!["start", &o]),
        ("", vec!["wait-stopped", &o]),
        ("delete", vec!["delete", &o]),
    ];
    let mut made = Vec::new();
    for (n, (label, args)) in runs.iter().enumerate() {
        if args[0] == "wait-exited" {
            wait_exited(&env, args[1]);
            continue;
        }
        if args[0] == "wait-stopped" {
            wait_stopped(&env, args[1]);
            continue;
        }
        made.push((*label, narrate(&env, &traces, n, args)));
    }
    assert_no_leaks(&env, &c);
    assert_no_leaks(&env, &d);
    assert_no_leaks(&env, &o);
    let mut by_call: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    for (label, trace) in made {
        let text = std::fs::read_to_string(&trace).expect("the trace file");
        // BOOKREF_KEEP=DIR keeps a copy of each trace, to see which line named a call.
        if let Some(dir) = std::env::var_os("BOOKREF_KEEP") {
            let _ = std::fs::copy(&trace, Path::new(&dir).join(trace.file_name().unwrap()));
        }
        for call in narrated_calls(&text) {
            by_call.entry(call).or_default().insert(label);
        }
    }
    by_call
}

fn kernel_calls() {
    let path = book_file("book/src/reference/kernel-calls.md");
    let sys = sys_names();
    let seen = observed();
    let mut problems = Vec::new();
    let entries: BTreeMap<&str, &Entry> = ENTRIES.iter().map(|e| (e.name, e)).collect();
    if entries.len() != ENTRIES.len() {
        problems.push("an entry is there twice".to_string());
    }
    for name in &sys {
        if !entries.contains_key(name.as_str()) {
            problems.push(format!(
                "Sys::name() returns {name:?}, and no entry says what it is"
            ));
        }
    }
    for (name, by) in &seen {
        if !entries.contains_key(name.as_str()) {
            problems.push(format!("{name} was narrated (by {by:?}) and has no entry"));
        }
    }
    for e in ENTRIES {
        if !sys.contains(e.name) && !seen.contains_key(e.name) {
            problems.push(format!("entry {}: stepctr never narrates it", e.name));
        }
        match (seen.get(e.name), &e.seen) {
            (None, Seen::Here) => problems.push(format!(
                "entry {}: not narrated by any of the runs; say when it is (only)",
                e.name
            )),
            (Some(by), Seen::Only(_)) => problems.push(format!(
                "entry {}: marked as made only elsewhere, but narrated here by {by:?}",
                e.name
            )),
            (Some(by), Seen::Sometimes(_, may)) if by.iter().any(|c| !may.contains(c)) => problems
                .push(format!(
                    "entry {}: narrated by {by:?}, more than the entry allows ({may:?})",
                    e.name
                )),
            _ => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let cell = |s: &str| s.replace('|', "\\|");
    let mut md = intro_of(&path, CALLS_INTRO);
    md.push_str("\n\n");
    md.push_str(MARKER);
    md.push_str("\n\n| Call | Manual | What it does, and why a container runtime needs it | Narrated by |\n");
    md.push_str("|---|---|---|---|\n");
    for e in entries.values() {
        let by = match (seen.get(e.name), &e.seen) {
            (_, Seen::Only(when)) => format!("only {when}"),
            (_, Seen::Sometimes(when, _)) => when.to_string(),
            (Some(by), Seen::Here) => ORDER
                .iter()
                .filter(|c| by.contains(*c))
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", "),
            (None, Seen::Here) => unreachable!(),
        };
        md.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            e.name,
            cell(e.man),
            cell(e.what),
            cell(&by)
        ));
    }
    check_or_bless(&path, &md);
}
