//! `stepctr exec NAME CMD...`: run one more process in a running container, and `-u USER`.
//!
//! A container is nothing but a process in some namespaces and cgroups, so "entering" one is
//! joining them: the same thing `nsenter -t PID -a` does, and what `docker exec` asks runc for.
//!
//! 1. open every namespace of the container's PID 1 (`/proc/PID/ns/{cgroup,ipc,uts,net,pid,mnt}`)
//!    *before* joining any: once we are in its mount namespace, the host's /proc is out of view;
//! 2. setns(pid): like unshare(CLONE_NEWPID), it changes where our *next child* goes, not us;
//! 3. fork; the child writes `0` to the container's cgroup.procs files (its limits now count
//!    it) — on pure v2 it is instead born in the cgroup with clone3(CLONE_INTO_CGROUP), see
//!    `stage::cgroup::Entry` — joins the cgroup, ipc, uts and net namespaces, then the mount
//!    namespace last:
//!    setns(CLONE_NEWNS) also moves its root and working directory to that namespace's root,
//!    which is the container's pivoted root;
//! 4. chdir to the working directory, switch user (`-u`), execve the command with PID 1's
//!    environment; stepctr waits and exits with the command's exit code.
//!
//! User switching (`-u USER[:GROUP]`, for `run`, `start`, `all` and `exec`): names and ids are
//! looked up in the container's own /etc/passwd and /etc/group (opened from inside it, so its
//! symlinks cannot point at the host's files), then setgroups → setresgid → setresuid, in that
//! order: after setresuid to a non-root uid the capability to change groups is gone.
//!
//! The OCI runtime's `exec`, as conmon calls it for `podman exec`
//! (`stepctr exec --process P.json --detach --pid-file F ID`), is this same path: the process
//! JSON (`crate::oci::config::load_process`) gives the command, environment, cwd, user,
//! capabilities and rlimits instead of the flags, the container's seccomp filter is the
//! bundle's, `--console-socket` gets the pty's master as `stepctr create` sends it, and with
//! `--detach` stepctr writes the pid file and exits at once: the command is reparented to the
//! caller (conmon is a subreaper), which waits for it.

use crate::kernel::{Kernel, Sys};
use crate::state::Container;
use anyhow::{anyhow, bail, Context, Result};
use std::io::Read;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::path::{Path, PathBuf};

/// The namespaces joined, in order; mount goes last (after it, host paths are the container's).
/// PID is joined by the parent, before the fork.
const NAMESPACES: [(&str, i32); 6] = [
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    ("mnt", libc::CLONE_NEWNS),
];

/// The flags of `exec`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra environment (`-e KEY=VAL`).
    pub env: Vec<String>,
    /// Working directory (`-w DIR`) instead of the image's.
    pub workdir: Option<String>,
    /// `-u USER[:GROUP]`.
    pub user: Option<String>,
    /// `-t`: a pseudo-terminal for the command (see `crate::tty`).
    pub tty: bool,
    /// `-i`: relay our stdin (with `-t`: raw mode).
    pub interactive: bool,
    /// OCI `--process FILE`, translated: the whole process instead of the flags above.
    pub process: Option<crate::oci::config::Plan>,
    /// OCI `--detach`: write the pid file and return once the command runs.
    pub detach: bool,
    /// OCI `--pid-file`: the command's host pid (decimal, no newline, as runc).
    pub pid_file: Option<PathBuf>,
    /// OCI `--console-socket`: with a terminal, the pty's master goes there.
    pub console_socket: Option<PathBuf>,
}

impl Options {
    /// Does the command get a terminal: process.terminal with `--process`, else `-t`.
    fn terminal(&self) -> bool {
        match &self.process {
            Some(p) => p.terminal,
            None => self.tty,
        }
    }
}

/// Run `cmd` inside the running container `c`; returns its exit code.
pub fn exec(k: &dyn Kernel, c: &mut Container, cmd: &[String], o: &Options) -> Result<i32> {
    let cmd: &[String] = match &o.process {
        Some(p) if !cmd.is_empty() => bail!(
            "give the command either in --process's args or after the name, not both: {}",
            p.args.join(" ")
        ),
        Some(p) => &p.args,
        None => cmd,
    };
    if cmd.is_empty() {
        bail!("give the command to run: `stepctr exec {} CMD...`", c.name);
    }
    if o.terminal() && o.detach && o.console_socket.is_none() {
        bail!("a terminal with --detach needs --console-socket SOCKET (the pty's master is sent there, as runc does)");
    }
    let Some(pid1) = crate::lifecycle::running_pid1(c) else {
        bail!(
            "container {} is not running: exec joins a running PID 1's namespaces (`stepctr ps` shows it)",
            c.name
        );
    };
    // Others (`stop`, `rm`, `ps`) may use the container while our command runs.
    c.unlock();
    match (&c.state.userns, &c.state.ns_dir) {
        (Some(_), Some(ns_dir)) => in_userns(k, c, ns_dir, pid1, cmd, o),
        _ => joined(k, c, pid1, cmd, o),
    }
}

/// In a user namespace (rootless, or root's `--userns`): joining the container's namespaces
/// takes being in its user namespace first, and a user namespace can be entered but never
/// left. So a forked helper enters it and does the rest (stepctr stays outside); it exits with
/// the command's exit code.
fn in_userns(
    k: &dyn Kernel,
    c: &Container,
    ns_dir: &Path,
    pid1: i32,
    cmd: &[String],
    o: &Options,
) -> Result<i32> {
    if o.process.is_some() || o.detach || o.console_socket.is_some() {
        bail!("exec in {}: --process, --detach and --console-socket are not supported for a container in a user namespace", c.name);
    }
    if c.state.userns.as_ref().is_some_and(|u| u.rootless) {
        crate::userns::check_options(o.user.as_deref(), o.tty)?;
    }
    let helper = k.spawn(
        "a helper to enter the container's user namespace (stepctr itself stays outside)",
        &mut || {
            k.prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as u64,
                "die if stepctr dies",
            )?;
            crate::userns::enter(k, ns_dir)?;
            let code = joined(k, c, pid1, cmd, o)?;
            crate::kernel::host::exit_now(code)
        },
    )?;
    let status = k.wait4(
        helper.pid,
        0,
        "wait for the helper: it exits with the command's exit code",
    )?;
    if let Some(err) = k.child_error(&helper) {
        bail!("exec in {}: {err}", c.name);
    }
    Ok(status.exit_code())
}

/// A running container's namespaces, open and ready to be joined by a child process, and its
/// cgroup: what `exec` and `demo isolation` fork into.
pub struct Joining<'c> {
    c: &'c Container,
    /// Every namespace of PID 1 but PID, opened before joining any, with its CLONE_NEW* flag.
    fds: Vec<(i32, i32)>,
    entry: crate::stage::cgroup::Entry,
}

impl<'c> Joining<'c> {
    /// Open PID 1's namespaces and setns its PID namespace for our next child (steps 1 and 2
    /// above), and open its cgroup.
    pub fn open(k: &dyn Kernel, c: &'c Container, pid1: i32) -> Result<Joining<'c>> {
        k.note(&format!(
            "join the namespaces and cgroup of PID 1 (host pid {pid1}), as `nsenter -t {pid1} -a` does"
        ));
        let mut fds: Vec<(i32, i32)> = Vec::new();
        let close_all = |fds: &[(i32, i32)]| {
            for (fd, _) in fds {
                let _ = k.close(*fd);
            }
        };
        for (name, flag) in NAMESPACES {
            match k.openat(
                &Path::new("/proc").join(pid1.to_string()).join("ns").join(name),
                libc::O_RDONLY | libc::O_CLOEXEC,
                0,
                "open the namespace of PID 1 now: after joining its mount namespace the host's /proc is out of view",
            ) {
                Ok(fd) => fds.push((fd, flag)),
                Err(e) => {
                    close_all(&fds);
                    return Err(anyhow!(e)).context(format!("container {} is not running", c.name));
                }
            }
        }
        // The pid could have been reused between reading state.json and opening its namespaces.
        if crate::lifecycle::running_pid1(c) != Some(pid1) {
            close_all(&fds);
            bail!("container {} stopped meanwhile", c.name);
        }
        let (pid_fd, _) = fds[4];
        let joined_pid = k.setns(
            pid_fd,
            libc::CLONE_NEWPID,
            "the container's PID namespace for our next child (we stay where we are, as with unshare)",
        );
        let _ = k.close(pid_fd);
        fds.remove(4);
        if let Err(e) = joined_pid {
            close_all(&fds);
            return Err(e.into());
        }
        let cgroups: Vec<PathBuf> = c
            .state
            .cgroup
            .as_ref()
            .map(|g| g.dirs.clone())
            .unwrap_or_default();
        let cgroup_v2 = crate::stage::cgroup::is_v2(c.state.cgroup.as_ref());
        match crate::stage::cgroup::Entry::open(k, &cgroups, cgroup_v2) {
            Ok(entry) => Ok(Joining { c, fds, entry }),
            Err(e) => {
                close_all(&fds);
                Err(e)
            }
        }
    }

    /// Fork a child that joins the cgroup and the namespaces (mount last: its root and working
    /// directory become the container's) and then runs `body` (step 3).
    pub fn spawn(
        &self,
        k: &dyn Kernel,
        why: &str,
        body: &mut crate::kernel::ChildBody<'_>,
    ) -> crate::kernel::KResult<crate::kernel::Child> {
        self.entry.spawn(k, why, &mut || {
            crate::stage::start::not_dumpable(k)?;
            self.entry.join(
                k,
                "join the container's cgroup: its limits count us too (0 = me)",
            )?;
            for (fd, flag) in &self.fds {
                let why = if *flag == libc::CLONE_NEWNS {
                    "join the container's mount namespace last: our / and cwd become its root"
                } else {
                    "join the container's namespace"
                };
                k.setns(*fd, *flag, why)?;
            }
            if let Some(u) = &self.c.state.userns {
                crate::userns::become_root(k, u.rootless)?;
            }
            body()
        })
    }

    /// Close the namespace and cgroup fds (the child has its own copies).
    pub fn close(self, k: &dyn Kernel) {
        for (fd, _) in &self.fds {
            let _ = k.close(*fd);
        }
        self.entry.close(k);
    }
}

/// Join PID 1's namespaces and cgroup in a child and run `cmd` there; returns its exit code.
fn joined(k: &dyn Kernel, c: &Container, pid1: i32, cmd: &[String], o: &Options) -> Result<i32> {
    // The container's hardening, chosen at `start`, for this process too.
    let security = c.state.security.clone();
    // An OCI process gets the container's seccomp filter, as runc gives it: the bundle's.
    let filter = match (&o.process, &c.state.oci) {
        (Some(_), Some(oci)) => match crate::oci::config::load(&oci.bundle)?.seccomp {
            Some(s) => Some(std::sync::Arc::new(
                crate::oci::seccomp::compile(&s).context("the bundle's linux.seccomp")?,
            )),
            None => None,
        },
        _ => None,
    };
    let join = Joining::open(k, c, pid1)?;
    let mut env = match &o.process {
        Some(p) => p.env.clone(),
        None => environment(c, pid1, &o.env),
    };
    let workdir = match (&o.process, &o.workdir) {
        (Some(p), _) => p.cwd.clone(),
        (None, Some(w)) => PathBuf::from(w),
        (None, None) if c.state.config.workdir.is_empty() => PathBuf::from("/"),
        (None, None) => PathBuf::from(&c.state.config.workdir),
    };
    let console = match (&o.console_socket, o.terminal()) {
        (Some(path), true) => match crate::oci::create::console_socket(k, path) {
            Ok(fd) => Some(fd),
            Err(e) => {
                join.close(k);
                return Err(e);
            }
        },
        _ => None,
    };
    let close_console = || {
        if let Some(fd) = console {
            let _ = k.close(fd);
        }
    };
    let pty = if o.terminal() && console.is_none() {
        match open_pty(k, pid1) {
            Ok(p) => Some(p),
            Err(e) => {
                join.close(k);
                return Err(e);
            }
        }
    } else {
        None
    };
    let no_size = crate::oci::config::Plan::default();
    let home = crate::kernel::host::SharedPath::new();
    let close_pty = || {
        if let Some(p) = pty {
            crate::tty::close(k, p);
        }
    };
    let resolved = crate::kernel::host::SharedPath::new();
    let child = join.spawn(
        k,
        "the process that becomes the command inside the container",
        &mut || {
            k.chdir(&workdir, "the container's working directory")?;
            crate::stage::start::check_workdir(k, &workdir)?;
            let mut env = env.clone();
            if let Some(p) = &o.process {
                if let Some(adj) = p.oom_score_adj {
                    k.write_file(
                        Path::new("/proc/self/oom_score_adj"),
                        &adj.to_string(),
                        "process.oomScoreAdj",
                    )?;
                }
                for (res, soft, hard) in &p.rlimits {
                    k.prlimit(*res, *soft, *hard, "a resource limit of process.rlimits")?;
                }
                if let Some(mask) = p.umask {
                    k.umask(mask, "process.user.umask")?;
                }
                if !env.iter().any(|e| e.starts_with("HOME=")) {
                    // As runc: HOME from the container's /etc/passwd, else /.
                    let h = crate::oci::create::home_of(p.uid);
                    home.set(Path::new(&h));
                    env.push(format!("HOME={h}"));
                }
            }
            let path = resolve_command(&cmd[0], &env)?;
            resolved.set(&path);
            if let Some(p) = pty {
                crate::tty::take_terminal(k, p)?;
            }
            if let Some(sock) = console {
                let root = k.openat(
                    Path::new("/"),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                    0,
                    "the container's root: its /dev/pts is the container's devpts",
                )?;
                let sent =
                    crate::oci::create::terminal(k, root, sock, o.process.as_ref().unwrap_or(&no_size));
                k.close(root)?;
                sent?;
            }
            crate::stage::start::close_our_fds(k)?;
            match &o.process {
                // process.user and process.capabilities, seccomp and no_new_privs as
                // `stepctr create`'s PID 1 does them.
                Some(p) => {
                    if let (Some(f), false) = (&filter, p.no_new_privileges) {
                        k.seccomp_filter(
                            0,
                            f,
                            "linux.seccomp: the container's system call filter (before the capabilities go)",
                        )?;
                    }
                    crate::oci::create::become_user(k, p)?;
                    if p.no_new_privileges {
                        crate::security::caps::no_new_privs(k)?;
                        if let Some(f) = &filter {
                            k.seccomp_filter(
                                0,
                                f,
                                "linux.seccomp: the container's system call filter, the last step before execve",
                            )?;
                        }
                    }
                }
                // Capabilities, the `-u` user switch among them, no_new_privs, seccomp: as PID 1.
                None => crate::security::before_exec(k, &security, o.user.as_deref())?,
            }
            k.execve(&path, cmd, &env, "become the command, inside the container")?;
            Ok(())
        },
    );
    let child = match child {
        Ok(child) => child,
        Err(e) => {
            join.close(k);
            close_pty();
            close_console();
            return Err(e.into());
        }
    };
    let failed = k.child_error(&child);
    join.close(k);
    close_console();
    if let Some(err) = failed {
        close_pty();
        let _ = k.wait4(child.pid, 0, "reap the failed child");
        bail!("exec in {}: {err}", c.name);
    }
    if let Some(h) = home.get() {
        env.push(format!("HOME={}", h.display()));
    }
    let shown = Sys::Execve {
        path: resolved.get().unwrap_or_else(|| PathBuf::from(&cmd[0])),
        argv: cmd.to_vec(),
        envp: env.clone(),
    };
    k.report(
        child.pid,
        inside_pid(child.pid).unwrap_or(child.pid),
        &shown,
        "the command runs in the container, beside PID 1",
    );
    if let Some(f) = &o.pid_file {
        if let Err(e) = crate::oci::create::write_pid_file(f, child.pid) {
            close_pty();
            let _ = k.kill(
                child.pid,
                libc::SIGKILL,
                "the pid file failed: the command goes",
            );
            let _ = k.wait4(child.pid, 0, "reap it");
            return Err(e);
        }
    }
    if o.detach {
        close_pty();
        k.note(&format!(
            "--detach: the command (host pid {}) runs on; when stepctr exits it is reparented to our caller's subreaper (conmon), which waits for it",
            child.pid
        ));
        return Ok(0);
    }
    let mut attached = Ok(());
    if let Some(p) = pty {
        // Ctrl-C and friends sent to us go on to the command, as with PID 1.
        let forward = crate::kernel::signals::Forward::install();
        attached = crate::tty::attach(k, p, o.interactive, &mut || {
            forward.forward_pending(k, child.pid)
        });
        drop(forward);
    }
    let status = k.wait4(child.pid, 0, "wait for the command; its exit code is ours")?;
    attached?;
    let code = status.exit_code();
    k.note(&format!(
        "the exec'd command ended (exit code {code}); PID 1 runs on"
    ));
    Ok(code)
}

/// `-t`: a pty in the container's own devpts, reached through /proc/PID/root of its PID 1
/// (every component resolved inside that root).
fn open_pty(k: &dyn Kernel, pid1: i32) -> Result<crate::tty::Pty> {
    let root = k.openat(
        &PathBuf::from(format!("/proc/{pid1}/root")),
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
        "the container's root, as PID 1 sees it: its /dev/pts is the container's devpts",
    )?;
    let pty = crate::tty::open_pty_in(k, Some(root));
    let closed = k.close(root);
    let pty = pty?;
    if let Err(e) = closed {
        crate::tty::close(k, pty);
        return Err(e.into());
    }
    Ok(pty)
}

/// PID 1's environment as it started (/proc/PID/environ: the image's, `-e`'s, HOSTNAME), the
/// image's if that cannot be read; then `extra` on top.
fn environment(c: &Container, pid1: i32, extra: &[String]) -> Vec<String> {
    // PID 1 of an OCI container waiting for `start` has not exec'd yet: its environ is still
    // stepctr's, not the bundle's.
    let waiting = c.state.oci.is_some() && c.dir.join(crate::oci::lifecycle::FIFO).exists();
    let mut env: Vec<String> = std::fs::read(format!("/proc/{pid1}/environ"))
        .ok()
        .map(|b| {
            b.split(|&x| x == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .filter(|v: &Vec<String>| !v.is_empty() && !waiting)
        .unwrap_or_else(|| {
            let mut env = c.state.config.env.clone();
            if !env.iter().any(|e| e.starts_with("PATH=")) {
                env.insert(0, format!("PATH={}", crate::stage::start::DEFAULT_PATH));
            }
            env.push(format!("HOSTNAME={}", c.name));
            env
        });
    for e in extra {
        let key = e.split('=').next().unwrap_or(e);
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    env
}

/// A process's pid in its own (innermost) PID namespace, from the host's /proc.
fn inside_pid(pid: i32) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// Find the program as execvp does, with the container's PATH (we are inside it already).
fn resolve_command(arg0: &str, env: &[String]) -> Result<PathBuf> {
    if arg0.contains('/') {
        return Ok(PathBuf::from(arg0));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(crate::stage::start::DEFAULT_PATH);
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(arg0);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    bail!("{arg0}: executable file not found in $PATH ({path})")
}

/// Who `-u` names: uid, primary gid, supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// Resolve `USER[:GROUP]` (names or numbers) against passwd and group file contents, as
/// docker does: a number needs no entry (gid 0 then, unless given), a name must have one; the
/// supplementary groups are those of /etc/group that list the user's name.
pub fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<Ids> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || grp.is_some_and(|g| g.is_empty()) {
        bail!("-u {spec:?}: give USER, UID, USER:GROUP or UID:GID");
    }
    let entries = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| l.split(':').map(str::to_string).collect())
            .collect()
    };
    let users = entries(passwd);
    let groups = entries(group);
    let number = |f: Option<&String>| f.and_then(|s| s.parse::<u32>().ok());
    let entry = match user.parse::<u32>() {
        Ok(uid) => users.iter().find(|e| number(e.get(2)) == Some(uid)),
        Err(_) => users.iter().find(|e| e[0] == user),
    };
    let (uid, name, primary) = match (user.parse::<u32>(), entry) {
        (Ok(uid), e) => (
            uid,
            e.map(|e| e[0].clone()),
            e.and_then(|e| number(e.get(3))),
        ),
        (Err(_), Some(e)) => match number(e.get(2)) {
            Some(uid) => (uid, Some(e[0].clone()), number(e.get(3))),
            None => bail!("user {user:?}: its /etc/passwd entry has no valid uid"),
        },
        (Err(_), None) => {
            bail!("unable to find user {user}: no matching entries in the container's /etc/passwd")
        }
    };
    let gid = match grp {
        None => primary.unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => match groups
                .iter()
                .find(|e| e[0] == g)
                .and_then(|e| number(e.get(2)))
            {
                Some(gid) => gid,
                None => bail!(
                    "unable to find group {g}: no matching entries in the container's /etc/group"
                ),
            },
        },
    };
    let mut list = vec![gid];
    if let Some(name) = name {
        for e in &groups {
            let member = e
                .get(3)
                .is_some_and(|m| m.split(',').any(|m| m.trim() == name));
            if let Some(g) = number(e.get(2)).filter(|_| member) {
                if !list.contains(&g) {
                    list.push(g);
                }
            }
        }
    }
    Ok(Ids {
        uid,
        gid,
        groups: list,
    })
}

/// Read one of the container's account files from inside it ("" if it has none).
fn read_inside(k: &dyn Kernel, path: &str) -> Result<String> {
    let fd = match k.openat(
        Path::new(path),
        libc::O_RDONLY | libc::O_CLOEXEC,
        0,
        "the container's own account file (we are inside its root: its symlinks stay inside)",
    ) {
        Ok(fd) => fd,
        Err(e) if e.errno == crate::kernel::Errno::ENOENT => return Ok(String::new()),
        Err(e) => return Err(e.into()),
    };
    // SAFETY: the fd was just opened by us; the File gives it back before closing.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut text = Vec::new();
    let read = f.read_to_end(&mut text);
    let fd = f.into_raw_fd();
    k.close(fd)?;
    read.with_context(|| format!("read {path}"))?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// `-u USER[:GROUP]`, in a child already inside the container's root: look the names up in
/// its /etc/passwd and /etc/group, then drop to them (groups first, uid last).
/// Returns the uid now in force. Called by `security::before_exec`, between the bounding set
/// (dropped as root) and the other capability sets (set for the user).
pub fn switch_user(k: &dyn Kernel, spec: &str) -> Result<u32> {
    let passwd = read_inside(k, "/etc/passwd")?;
    let group = read_inside(k, "/etc/group")?;
    let ids = resolve_user(spec, &passwd, &group)?;
    // Changing credentials clears the parent-death signal (PID 1 has one: it dies with its
    // shim); remember it, to set it again (a read of our own setting: bookkeeping).
    let pdeath = crate::kernel::host::parent_death_signal();
    k.setgroups(
        &ids.groups,
        "the user's supplementary groups (none of root's stay)",
    )?;
    k.setresgid(
        ids.gid,
        "real, effective and saved group: no way back to root's",
    )?;
    k.setresuid(
        ids.uid,
        "real, effective and saved user, last: leaving uid 0 empties our permitted, effective and ambient capabilities",
    )?;
    if pdeath > 0 {
        k.prctl(
            libc::PR_SET_PDEATHSIG,
            pdeath as u64,
            "changing ids cleared the parent-death signal: set it again",
        )?;
    }
    Ok(ids.uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\nalice:x:1000:1000::/home/alice:/bin/sh\n";
    const GROUP: &str =
        "root:x:0:\nnogroup:x:65534:\nalice:x:1000:\nwheel:x:10:root,alice\naudio:x:29:alice\n";

    #[test]
    fn names_numbers_and_groups() {
        let r = |s| resolve_user(s, PASSWD, GROUP);
        assert_eq!(
            r("nobody").unwrap(),
            Ids {
                uid: 65534,
                gid: 65534,
                groups: vec![65534]
            }
        );
        assert_eq!(r("alice").unwrap().groups, vec![1000, 10, 29]);
        assert_eq!(r("1000").unwrap().gid, 1000);
        assert_eq!(
            r("4242").unwrap(),
            Ids {
                uid: 4242,
                gid: 0,
                groups: vec![0]
            }
        );
        assert_eq!(r("1000:wheel").unwrap().gid, 10);
        assert_eq!(r("5:7").unwrap().gid, 7);
        assert!(r("mallory")
            .unwrap_err()
            .to_string()
            .contains("unable to find user mallory"));
        assert!(r("alice:nogrp").is_err());
        assert!(r(":1").is_err());
        assert!(r("1:").is_err());
    }
}
