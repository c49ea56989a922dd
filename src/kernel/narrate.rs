//! The narrator: wraps any [`Kernel`] and prints every call in strace syntax, with its result,
//! how long it took and a one-line *why*:
//!
//! ```text
//! [pid 4242] mount(NULL, "/", NULL, MS_REC|MS_PRIVATE, NULL) = 0 <0.000011>  # keep our mounts from reaching the host
//! ```
//!
//! Narration goes to stderr or to a trace file, one `write` per line (so lines from parent and
//! child processes never interleave mid-line), and never to the container's stdout.

use super::pace;

use super::render::{self, Detail};
use super::{Child, ChildBody, Errno, KResult, Kernel, Ret, Sys};
use colored::Colorize;
use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// `-q`: nothing.
    Quiet,
    /// Stage headers and every call, long strings shortened.
    Normal,
    /// `-v`: every argument in full.
    Verbose,
}

/// Where the copy of the narration fd goes when a dup3 replaces it (see `sys`).
const SAVED_FD_MIN: i32 = 300;

/// Is `fd` open on /dev/null (character device 1:3)?
fn is_dev_null(fd: i32) -> bool {
    // SAFETY: fstat into a zeroed struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::fstat(fd, &mut st) } == 0;
    ok && st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3)
}

pub struct Narrate<K: Kernel> {
    inner: K,
    level: Level,
    color: bool,
    out_fd: i32,
    /// Where `emit` writes for now, if not `out_fd` (see the dup3 case in `sys`).
    emit_fd: Cell<Option<i32>>,
    main_pid: i32,
    /// In a child: (pid seen from the host, pid seen inside its own PID namespace).
    me: Cell<Option<(i32, i32)>>,
    /// Inside `bulk_begin`/`bulk_end` at the default level: what, and calls counted by name.
    bulk: RefCell<Option<Bulk>>,
    /// `--pace step`: pause before each call.
    pace: pace::Pacer,
}

struct Bulk {
    what: String,
    counts: Vec<(&'static str, usize)>,
    took: Duration,
}

impl<K: Kernel> Narrate<K> {
    /// `out_fd` is where narration goes (2 for stderr, or a trace file's fd).
    pub fn new(inner: K, level: Level, color: bool, out_fd: i32) -> Self {
        let main_pid = inner.getpid();
        Narrate {
            inner,
            level,
            color,
            out_fd,
            emit_fd: Cell::new(None),
            main_pid,
            me: Cell::new(None),
            bulk: RefCell::new(None),
            pace: pace::Pacer::new(false),
        }
    }

    /// `--pace step`: before each narrated call, show it on the terminal and wait for Enter
    /// (not at the quiet level: nothing is shown there).
    pub fn paced(mut self) -> Self {
        self.pace = pace::Pacer::new(self.level != Level::Quiet);
        self
    }

    /// With `--pace step`: show the call about to be made and wait for Enter.
    fn pause_before(&self, call: &Sys, pid: i32) {
        if !self.pace.active() {
            return;
        }
        // close is shown only with -v: no pause for what is not shown. wait4 only waits (for a
        // process that may be reading the terminal itself): its line shows when it returns.
        if matches!(call, Sys::Wait4 { .. })
            || matches!(call, Sys::Close { .. }) && self.level < Level::Verbose
        {
            return;
        }
        let text = render::call_with(call, self.detail(), &fd_name, None);
        self.pause(pid, &text);
    }

    fn pause(&self, pid: i32, what: &str) {
        let next = if self.color {
            "next:".bold().to_string()
        } else {
            "next:".to_string()
        };
        let prompt = format!("{}{next} {what}  [Enter] ", self.prefix(pid));
        match self.pace.pause(&prompt) {
            pace::Paused::Go => {}
            pace::Paused::Off(why) => self.note(&why),
            // Only stepctr's own process stops (as at Ctrl-C: its children die with it or are
            // what `stepctr rm` removes); a child's call goes on.
            pace::Paused::Quit if self.me.get().is_none() && pid == self.main_pid => {
                self.note(
                    "stopped before this call (q): `stepctr rm NAME` removes what was made so far",
                );
                std::process::exit(1);
            }
            pace::Paused::Quit => {
                self.note("q stops stepctr's own process only, not this child: going on");
            }
        }
    }

    fn detail(&self) -> Detail {
        if self.level >= Level::Verbose {
            Detail::Full
        } else {
            Detail::Short
        }
    }

    fn emit(&self, line: &str) {
        let mut buf = line.as_bytes();
        while !buf.is_empty() {
            // SAFETY: writing our own buffer to the narration fd.
            let fd = self.emit_fd.get().unwrap_or(self.out_fd);
            let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
            if n < 0 && Errno::last() == Errno::EINTR {
                continue;
            }
            if n <= 0 {
                return;
            }
            buf = &buf[n as usize..];
        }
    }

    /// `[pid 4242] ` for a child; `[pid 4242, 1 inside] ` for the container's PID 1, whose
    /// getpid() says 1. Nothing for stepctr's own process.
    fn prefix(&self, pid: i32) -> String {
        match self.me.get() {
            Some((host, inside)) if host != inside => format!("[pid {host:>5}, {inside} inside] "),
            Some((host, _)) => format!("[pid {host:>5}] "),
            None if pid == self.main_pid => String::new(),
            None => format!("[pid {pid:>5}] "),
        }
    }

    /// The calling process's pid as the host sees it (NSpid's first field), and as it sees it.
    fn learn_own_pid(&self) {
        let inside = self.inner.getpid();
        let host = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("NSpid:"))
                    .and_then(|v| v.split_whitespace().next().and_then(|p| p.parse().ok()))
            })
            .unwrap_or(inside);
        self.me.set(Some((host, inside)));
    }

    /// Narrate a call that was made (unless it is counted in a bulk run or is a quiet close).
    fn narrated(
        &self,
        call: &Sys,
        why: &str,
        res: Result<Ret, Errno>,
        took: Duration,
        pid: i32,
        before: Option<Vec<u8>>,
    ) -> Result<Ret, Errno> {
        if res.is_ok() {
            if let Some(bulk) = self.bulk.borrow_mut().as_mut() {
                bulk.took += took;
                match bulk.counts.iter_mut().find(|(n, _)| *n == call.name()) {
                    Some((_, c)) => *c += 1,
                    None => bulk.counts.push((call.name(), 1)),
                }
                return res;
            }
        }
        if matches!(call, Sys::Close { .. }) {
            // close is bookkeeping: shown only with -v.
            if self.level < Level::Verbose {
                return res;
            }
        }
        let names = |fd: i32| match call {
            Sys::Close { .. } | Sys::Read { .. } => before.clone(),
            Sys::Dup3 { newfd, .. } if fd == *newfd => before.clone(),
            _ => fd_name(fd),
        };
        let text = render::call_with(call, self.detail(), &names, res.as_ref().ok());
        self.line(
            pid,
            &text,
            &render::result(call, &res),
            res.is_ok(),
            took,
            why,
        );
        if self.level >= Level::Verbose && res.is_ok() {
            for line in evidence(call) {
                self.emit(&format!("{}    -> {line}\n", self.prefix(pid)));
            }
        }
        res
    }

    fn line(&self, pid: i32, call: &str, result: &str, ok: bool, took: Duration, why: &str) {
        if self.level == Level::Quiet {
            return;
        }
        let (name, args) = call.split_at(call.find('(').unwrap_or(call.len()));
        let time = format!("<{:.6}>", took.as_secs_f64());
        let why = if why.is_empty() {
            String::new()
        } else {
            format!("  # {why}")
        };
        let text = if self.color {
            let result = if ok {
                result.green()
            } else {
                result.red().bold()
            };
            format!(
                "{}{}{} {} {}{}\n",
                self.prefix(pid).dimmed(),
                name.bold().cyan(),
                args,
                result,
                time.dimmed(),
                why.yellow()
            )
        } else {
            format!("{}{name}{args} {result} {time}{why}\n", self.prefix(pid))
        };
        self.emit(&text);
    }
}

impl<K: Kernel> Narrate<K> {
    /// `spawn` or `spawn_into` (`call` says which), narrated.
    fn forked(&self, call: &Sys, why: &str, body: &mut ChildBody<'_>) -> KResult<Child> {
        let parent = self.inner.getpid();
        self.pause_before(call, parent);
        let start = Instant::now();
        // The child announces the fork itself, before anything else it does, so the clone line
        // always comes before the child's own calls in the narration. For that to hold, the
        // parent must not narrate anything until it has waited on the child (wait4, or its
        // error channel): every stage keeps to that rule.
        let parent_label = self.me.get();
        let mut announced = || {
            // Narrated from the child, so print the parent's prefix for the parent's call.
            let child_me = {
                self.learn_own_pid();
                self.me.replace(parent_label)
            };
            let me = child_me.map_or(self.inner.getpid(), |(host, _)| host);
            self.line(
                parent,
                &render::call(call, Detail::Short, &|_| None),
                &format!("= {me}"),
                true,
                start.elapsed(),
                why,
            );
            self.me.set(child_me);
            if matches!(call, Sys::Clone3 { .. }) && self.level >= Level::Verbose {
                // Born in the cgroup: the proof, as for a write of 0 to cgroup.procs.
                for line in own_cgroup() {
                    self.emit(&format!("{}    -> {line}\n", self.prefix(me)));
                }
            }
            body()
        };
        let res = match call {
            Sys::Clone3 { cgroup } => self.inner.spawn_into(*cgroup, why, &mut announced),
            _ => self.inner.spawn(why, &mut announced),
        };
        // No child, so nobody announced the call: a failed clone3 is said here (its caller
        // goes on another way: fork, then join the cgroup). A failed pipe2 before it is not a
        // clone3, and a failed fork ends the command with its error message.
        if let (Sys::Clone3 { .. }, Err(e)) = (call, &res) {
            if self.level != Level::Quiet && e.call.starts_with("clone3") {
                self.line(
                    parent,
                    &render::call(call, Detail::Short, &|_| None),
                    &render::result(call, &Err(e.errno)),
                    false,
                    start.elapsed(),
                    why,
                );
            }
        }
        res
    }
}

/// What /proc shows right after a call (`-v`): the proof that the call did what it says.
fn evidence(call: &Sys) -> Vec<String> {
    let link = |what: &str| {
        let path = format!("/proc/self/ns/{what}");
        std::fs::read_link(&path)
            .map(|t| format!("{path} is {}", t.display()))
            .ok()
    };
    let ns_names = |flags: i32| -> Vec<&'static str> {
        [
            (libc::CLONE_NEWNS, "mnt"),
            (libc::CLONE_NEWCGROUP, "cgroup"),
            (libc::CLONE_NEWUTS, "uts"),
            (libc::CLONE_NEWIPC, "ipc"),
            (libc::CLONE_NEWPID, "pid_for_children"),
            (libc::CLONE_NEWNET, "net"),
        ]
        .into_iter()
        .filter(|(f, _)| flags & f != 0)
        .map(|(_, n)| n)
        .collect()
    };
    match call {
        Sys::Unshare { flags } | Sys::Setns { nstype: flags, .. } => {
            ns_names(*flags).into_iter().filter_map(link).collect()
        }
        Sys::Mount { target, .. } => {
            let target = target.to_string_lossy();
            let abs = if target.starts_with('/') {
                target.into_owned()
            } else {
                std::env::current_dir()
                    .map(|d| d.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            std::fs::read_to_string("/proc/self/mountinfo")
                .unwrap_or_default()
                .lines()
                .rfind(|l| l.split(' ').nth(4) == Some(abs.as_str()))
                .map(|l| vec![format!("/proc/self/mountinfo: {l}")])
                .unwrap_or_default()
        }
        // `0` (= me) into cgroup.procs or tasks: the cgroup we are in now.
        Sys::Write { fd, data }
            if data == b"0"
                && fd_name(*fd)
                    .is_some_and(|n| n.ends_with(b"/cgroup.procs") || n.ends_with(b"/tasks")) =>
        {
            own_cgroup()
        }
        // -v: what a netlink message says, decoded (the call line shows its header only).
        Sys::NetlinkSend { msg, .. } => crate::net::netlink::describe(msg),
        Sys::NetlinkRecv { buf, .. } => crate::net::netlink::describe(&buf.bytes()),
        Sys::Sethostname { .. } => nix::sys::utsname::uname()
            .map(|u| vec![format!("uname -n: {}", u.nodename().to_string_lossy())])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// `/proc/self/cgroup: ...`: the cgroups the calling process is in.
fn own_cgroup() -> Vec<String> {
    std::fs::read_to_string("/proc/self/cgroup")
        .map(|c| {
            vec![format!(
                "/proc/self/cgroup: {}",
                c.lines().collect::<Vec<_>>().join(" ")
            )]
        })
        .unwrap_or_default()
}

/// strace's `-y`: what an fd refers to, from /proc/self/fd.
fn fd_name(fd: i32) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStringExt;
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .ok()
        .map(|p| p.into_os_string().into_vec())
}

impl<K: Kernel> Kernel for Narrate<K> {
    fn sys(&self, call: &Sys, why: &str) -> Result<Ret, Errno> {
        if self.level == Level::Quiet {
            // Nothing will be printed: spend nothing on rendering (it reads /proc per call).
            return self.inner.sys(call, why);
        }
        let pid = self.inner.getpid();
        // An fd argument must be named before a close takes it away (or a dup3 replaces it:
        // strace names dup3's newfd as it was on entry; a read that blocks, as PID 1's on the
        // exec fifo, may outlive the file's name).
        let before = match call {
            Sys::Close { fd } | Sys::Dup3 { newfd: fd, .. } | Sys::Read { fd, .. } => fd_name(*fd),
            _ => None,
        };
        self.pause_before(call, pid);
        // A dup3 onto the narration fd itself (PID 1 puts its log or its terminal on stderr,
        // a detached shim /dev/null): the line about it, and what the process narrates after
        // it, go where narration went before the call, on a copy of that fd (close-on-exec:
        // PID 1's execve drops it). Narration written into a container's terminal would show
        // in its screen, and block once the terminal's buffer is full, as nobody reads it
        // before PID 1 runs; written into its log, it would read as the container's output.
        // Only /dev/null (the shim, which must let go of our stderr) ends the narration.
        let saved = match call {
            Sys::Dup3 { newfd, .. } if *newfd == self.out_fd && self.emit_fd.get().is_none() => {
                // SAFETY: fcntl F_DUPFD_CLOEXEC of the narration fd, to a number no code of
                // stepctr dup3s onto or closes by number.
                Some(unsafe { libc::fcntl(self.out_fd, libc::F_DUPFD_CLOEXEC, SAVED_FD_MIN) })
                    .filter(|fd| *fd >= 0)
            }
            _ => None,
        };
        let start = Instant::now();
        let res = self.inner.sys(call, why);
        let took = start.elapsed();
        if saved.is_some() {
            self.emit_fd.set(saved);
        }
        let res = self.narrated(call, why, res, took, pid, before);
        if matches!(call, Sys::Setsid) && res.is_ok() {
            self.pace.left_session();
        }
        if let Some(fd) = saved {
            if res.is_err() || is_dev_null(self.out_fd) {
                self.emit_fd.set(None);
                // SAFETY: our own copy, made above.
                unsafe { libc::close(fd) };
            }
        }
        res
    }

    fn spawn(&self, why: &str, body: &mut ChildBody<'_>) -> KResult<Child> {
        self.forked(&Sys::Clone, why, body)
    }

    fn spawn_into(&self, cgroup_fd: i32, why: &str, body: &mut ChildBody<'_>) -> KResult<Child> {
        self.forked(&Sys::Clone3 { cgroup: cgroup_fd }, why, body)
    }

    fn child_error(&self, child: &Child) -> Option<String> {
        self.inner.child_error(child)
    }

    fn getpid(&self) -> i32 {
        self.inner.getpid()
    }

    fn single_threaded(&self) -> bool {
        self.inner.single_threaded()
    }

    fn report(&self, pid: i32, inside: i32, call: &Sys, why: &str) {
        let text = render::call(call, self.detail(), &|_| None);
        // The call happened in the child: show its prefix, not ours. Its duration is unknown.
        let ours = self.me.replace(Some((pid, inside)));
        self.line(pid, &text, "= 0", true, Duration::ZERO, why);
        self.me.set(ours);
    }

    fn header(&self, step: usize, of: usize, stage: &str, what: &str) {
        if self.level == Level::Quiet {
            return;
        }
        let text = format!("==> [{step}/{of}] {stage}: {what}");
        if self.color {
            self.emit(&format!("\n{}\n", text.bold().magenta()));
        } else {
            self.emit(&format!("\n{text}\n"));
        }
    }

    fn http(
        &self,
        method: &str,
        url: &str,
        outcome: Result<&str, &str>,
        took: Duration,
        why: &str,
    ) {
        if self.level == Level::Quiet {
            return;
        }
        let (result, ok) = match outcome {
            Ok(status) => (format!("-> {status}"), true),
            Err(e) => (format!("-> failed: {e}"), false),
        };
        self.line(
            self.inner.getpid(),
            &format!("[http] {method} {url}"),
            &result,
            ok,
            took,
            why,
        );
    }

    fn bulk_begin(&self, what: &str) {
        if self.pace.active() {
            self.pause(
                self.inner.getpid(),
                &format!("{what} (many calls, one pause)"),
            );
            self.pace.bulk(true);
        }
        if self.level == Level::Normal {
            *self.bulk.borrow_mut() = Some(Bulk {
                what: what.to_string(),
                counts: Vec::new(),
                took: Duration::ZERO,
            });
        }
    }

    fn narration_fds(&self) -> Vec<i32> {
        let mut fds = self.inner.narration_fds();
        fds.extend(
            [Some(self.out_fd), self.emit_fd.get()]
                .into_iter()
                .flatten()
                .filter(|fd| *fd > 2),
        );
        fds
    }

    fn bulk_end(&self) {
        self.pace.bulk(false);
        let Some(bulk) = self.bulk.borrow_mut().take() else {
            return;
        };
        let total: usize = bulk.counts.iter().map(|(_, c)| c).sum();
        let each: Vec<String> = bulk
            .counts
            .iter()
            .map(|(n, c)| format!("{c} {n}"))
            .collect();
        self.note(&format!(
            "{}: {total} calls ({}) in {:.1} ms; -v shows each one",
            bulk.what,
            each.join(", "),
            bulk.took.as_secs_f64() * 1000.0
        ));
    }

    fn note(&self, text: &str) {
        if self.level == Level::Quiet {
            return;
        }
        let pid = self.inner.getpid();
        let line = format!("{}# {text}", self.prefix(pid));
        if self.color {
            self.emit(&format!("{}\n", line.dimmed()));
        } else {
            self.emit(&format!("{line}\n"));
        }
    }
}
