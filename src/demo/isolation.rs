//! `stepctr demo isolation`: the same probes under plain chroot and inside a container.
//!
//! A probe is a child of stepctr that keeps every capability of root; what differs between the
//! two runs is only where it stands:
//! - **chroot**: it calls chroot(2) into a copy-on-write view of the flattened image, in the
//!   host's namespaces, with /proc mounted in its root as every chroot recipe does (so `ps`
//!   works);
//! - **namespaces**: it joins a container made by the six stages (a `sleep` as PID 1) the way
//!   `exec` does: setns into each of PID 1's namespaces, the mount namespace last.
//!
//! It then asks the same questions in the same order and writes its answers, as one line of
//! JSON, to a file of the host it opened before moving (an inherited fd reaches out of any
//! root). stepctr, on the host, adds what only the host can see: did the hostname change reach
//! it, does its mount table show the probe's mount, did the host process die. Whatever leaked
//! is put back at once: the hostname, the mount.

use super::Scratch;
use crate::cli::DemoMode;
use crate::kernel::Kernel;
use crate::state::{Container, Paths};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write as _};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};

/// The namespaces whose /proc/self/ns links are compared.
const NS: [&str; 7] = ["mnt", "pid", "net", "uts", "ipc", "cgroup", "user"];

/// What the probe saw, from where it stood.
#[derive(Debug, Serialize, Deserialize)]
struct Seen {
    /// getpid() inside.
    pid: i32,
    /// Inode of each /proc/self/ns link (0: unreadable).
    ns: Vec<(String, u64)>,
    /// The host's secret file, read through /proc/VICTIM/root: its text, or the errno.
    host_file: Result<String, String>,
    /// /proc/VICTIM/cmdline of the host's `sleep`: its text, or the errno.
    victim_cmdline: Result<String, String>,
    /// kill(VICTIM, SIGKILL): Ok, or the errno.
    kill: Result<(), String>,
    /// sethostname: Ok, or the errno.
    hostname: Result<(), String>,
    /// mount of a tmpfs on /tmp: Ok, or the errno.
    mount: Result<(), String>,
    /// Interface names in /proc/self/net/dev.
    interfaces: Vec<String>,
    /// After the breakout: the secret read by its host path, or the errno.
    breakout: Result<String, String>,
}

/// One probe's verdict in one mode.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The wall held: the probe could not see, touch or change the host.
    pub isolated: bool,
    /// What was seen, in a few words.
    pub evidence: String,
}

/// One row of the table.
#[derive(Debug, Serialize)]
pub struct Row {
    pub probe: &'static str,
    pub question: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chroot: Option<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Verdict>,
}

const ROWS: [(&str, &str); 9] = [
    ("host-files", "can it read a host file (/proc/PID/root)?"),
    ("host-processes-visible", "can it see a host process?"),
    ("host-processes-killable", "can it kill a host process?"),
    ("probe-pid", "is its PID the one the host sees?"),
    ("hostname-leaks", "does its hostname change reach the host?"),
    ("mount-leaks", "does its mount show on the host?"),
    ("network-interfaces", "does it see the host's interfaces?"),
    (
        "chroot-breakout",
        "does the chroot breakout reach the host?",
    ),
    ("ns-inodes", "are its /proc/self/ns links the host's?"),
];

/// What the host knows before a probe runs, and how to undo what the probe changes.
struct Host {
    hostname: String,
    ns: Vec<(String, u64)>,
    interfaces: Vec<String>,
    /// The secret file, outside every root the probes get.
    secret: PathBuf,
    secret_text: String,
    /// The probe's hostname and mount source (see [`probe_tag`]), fixed before it forks.
    tag: String,
}

pub fn command(
    k: &dyn Kernel,
    setup: &dyn Kernel,
    paths: &Paths,
    mode: DemoMode,
    json: bool,
    image: Option<&str>,
) -> Result<i32> {
    super::need_root("demo isolation")?;
    // The probes rename the machine (and stepctr puts the name back): two demos at once would
    // each take the other's probe name for the host's. One at a time on this machine.
    // The lock is on the hostname's own sysctl file (flock works on any open file), so nothing
    // is left behind for it.
    let _one_at_a_time = crate::state::lock_dir(Path::new("/proc/sys/kernel/hostname"))?;
    let mut rows: Vec<Row> = ROWS
        .iter()
        .map(|&(probe, question)| Row {
            probe,
            question,
            chroot: None,
            namespaces: None,
        })
        .collect();
    if matches!(mode, DemoMode::Chroot | DemoMode::Both) {
        let v = chroot_mode(k, setup, paths, image)?;
        for (row, v) in rows.iter_mut().zip(v) {
            row.chroot = Some(v);
        }
    }
    if matches!(mode, DemoMode::Namespaces | DemoMode::Both) {
        let v = namespaces_mode(k, setup, paths, image)?;
        for (row, v) in rows.iter_mut().zip(v) {
            row.namespaces = Some(v);
        }
    }
    let mut out = std::io::stdout().lock();
    if json {
        let doc = serde_json::json!({
            "image": image.unwrap_or(crate::image::DEFAULT_IMAGE),
            "probes": rows,
        });
        writeln!(out, "{doc}")?;
    } else {
        write!(out, "{}", table(&rows))?;
    }
    Ok(0)
}

/// The rows as a table: a ✔ where the wall held, a ✘ where the probe got through.
fn table(rows: &[Row]) -> String {
    let cell = |v: &Option<Verdict>| match v {
        Some(v) if v.isolated => format!("✔ {}", v.evidence),
        Some(v) => format!("✘ {}", v.evidence),
        None => String::new(),
    };
    let width = |s: &str| s.chars().count();
    let q = rows.iter().map(|r| width(r.question)).max().unwrap_or(0);
    let c = rows
        .iter()
        .map(|r| width(&cell(&r.chroot)))
        .chain([6])
        .max()
        .unwrap_or(6);
    let has = |f: fn(&Row) -> bool| rows.iter().any(f);
    let (show_c, show_n) = (has(|r| r.chroot.is_some()), has(|r| r.namespaces.is_some()));
    let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w.saturating_sub(width(s))));
    let mut t = String::new();
    let mut line = |a: &str, b: &str, n: &str| {
        let mut l = pad(a, q);
        if show_c {
            l.push_str("  ");
            l.push_str(&pad(b, c));
        }
        if show_n {
            l.push_str("  ");
            l.push_str(n);
        }
        t.push_str(l.trim_end());
        t.push('\n');
    };
    line("", "chroot", "namespaces");
    for r in rows {
        line(r.question, &cell(&r.chroot), &cell(&r.namespaces));
    }
    t.push_str(
        "✔ the wall held   ✘ the probe got through (both probes keep every capability of root)\n",
    );
    t
}

fn chroot_mode(
    k: &dyn Kernel,
    setup: &dyn Kernel,
    paths: &Paths,
    image: Option<&str>,
) -> Result<Vec<Verdict>> {
    k.note("demo isolation, chroot: a probe chroot()ed into the image, in the host's namespaces");
    let scratch = Scratch::new(setup, paths, "chroot", image)?;
    let result = in_scratch(k, &scratch, |host, victim, results| {
        let root = super::overlay_root(k, &scratch.flat, &scratch.dir)?;
        let mounted = Mounted::new(k, root.clone());
        let proc = root.join("proc");
        k.mount(
            Some("proc"),
            &proc,
            Some("proc"),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            None,
            "the host's /proc inside the root, as chroot recipes do so that ps works",
        )?;
        let mounted = mounted.and(proc);
        let child = k.spawn("the probe", &mut || {
            k.chroot(
                &root,
                "the probe's / is now the image: the whole of plain chroot",
            )?;
            k.chdir(Path::new("/"), "stand inside the new root")?;
            probe(k, host, victim, results)
        });
        let verdicts = finish(k, child, host, victim, results, &root.join("tmp"));
        mounted.undo(k);
        verdicts
    });
    cleanup(setup, paths, &scratch, result)
}

fn namespaces_mode(
    k: &dyn Kernel,
    setup: &dyn Kernel,
    paths: &Paths,
    image: Option<&str>,
) -> Result<Vec<Verdict>> {
    k.note("demo isolation, namespaces: a probe that joins a container made by the six stages");
    let scratch = Scratch::new(setup, paths, "ns", image)?;
    let result = in_scratch(k, &scratch, |host, victim, results| {
        // The scratch container already has its stage 2 (flattened); the remaining four.
        let mut c = Container::open(paths, &scratch.name)?;
        crate::stage::cgroup::run(
            setup,
            &mut c,
            Path::new("/sys/fs/cgroup"),
            Default::default(),
        )?;
        crate::stage::ns::run(setup, &mut c, None, Default::default())?;
        crate::stage::fs::run(setup, &mut c, &[], &[])?;
        let o = crate::stage::start::Options {
            detach: true,
            ..Default::default()
        };
        crate::stage::start::run_with(
            setup,
            &mut c,
            &["sleep".to_string(), "3600".to_string()],
            &o,
        )?;
        let pid1 =
            crate::lifecycle::running_pid1(&c).context("the demo's container did not start")?;
        k.note(&format!(
            "container {} runs `sleep 3600` as its PID 1 (host pid {pid1}); the probe joins it as `stepctr exec` does, keeping every capability",
            scratch.name
        ));
        let join = crate::exec::Joining::open(k, &c, pid1)?;
        let child = join.spawn(k, "the probe", &mut || {
            k.chdir(Path::new("/"), "stand at the container's root")?;
            probe(k, host, victim, results)
        });
        join.close(k);
        let rootfs = c.state.rootfs.clone().unwrap_or_default();
        drop(c);
        finish(k, child, host, victim, results, &rootfs.join("tmp"))
    });
    cleanup(setup, paths, &scratch, result)
}

/// Remove the scratch container whatever happened; the first error wins.
fn cleanup<T>(
    setup: &dyn Kernel,
    paths: &Paths,
    scratch: &Scratch,
    result: Result<T>,
) -> Result<T> {
    let removed = scratch.remove(setup, paths);
    let value = result?;
    removed?;
    Ok(value)
}

/// Prepare what the host knows (the secret file, the victim, the results file), run `f`,
/// and always kill the victim.
fn in_scratch(
    k: &dyn Kernel,
    scratch: &Scratch,
    f: impl FnOnce(&Host, i32, i32) -> Result<Vec<Verdict>>,
) -> Result<Vec<Verdict>> {
    let secret = scratch.dir.join("host-secret");
    let secret_text = format!("a secret of the host, {}", std::process::id());
    std::fs::write(&secret, &secret_text).with_context(|| format!("write {}", secret.display()))?;
    let host = Host {
        hostname: hostname(),
        ns: ns_inodes(),
        interfaces: interfaces(),
        secret,
        secret_text,
        tag: probe_tag(),
    };
    let results = k.openat(
        &scratch.dir.join("results"),
        libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
        0o600,
        "where the probe writes what it saw: the fd stays valid after chroot and setns",
    )?;
    // The victim: an ordinary host process (not a kernel call of the demo: std's spawn).
    let mut victim = match std::process::Command::new("sleep")
        .arg("3600")
        .stdin(std::process::Stdio::null())
        .spawn()
    {
        Ok(v) => v,
        Err(e) => {
            let _ = k.close(results);
            bail!("start the host process the probe looks for (sleep 3600): {e}");
        }
    };
    k.note(&format!(
        "on the host: a process to find and kill (sleep 3600, pid {}) and a file to read ({})",
        victim.id(),
        host.secret.display()
    ));
    let verdicts = f(&host, victim.id() as i32, results);
    // Not reaped yet (finish reaps it when the probe killed it; then waitpid says ECHILD).
    if let Ok(None) = victim.try_wait() {
        let _ = victim.kill();
        let _ = victim.wait();
    }
    let _ = k.close(results);
    verdicts
}

/// Mounts the demo made on the host, undone in reverse order.
struct Mounted(Vec<PathBuf>);

impl Mounted {
    fn new(_k: &dyn Kernel, first: PathBuf) -> Mounted {
        Mounted(vec![first])
    }

    fn and(mut self, next: PathBuf) -> Mounted {
        self.0.push(next);
        self
    }

    fn undo(self, k: &dyn Kernel) {
        for target in self.0.iter().rev() {
            let _ = k.umount2(
                target,
                libc::MNT_DETACH,
                "undo the demo's mount on the host",
            );
        }
    }
}

/// The probe, in the child: every question in the table, then the breakout (last: it moves the
/// probe's root). Writes what it saw to `results`.
fn probe(k: &dyn Kernel, host: &Host, victim: i32, results: i32) -> anyhow::Result<()> {
    let errno = |e: crate::kernel::SysError| crate::kernel::errno_name(e.errno);
    let (pid, ns) = (k.getpid(), ns_inodes());
    let through_proc = PathBuf::from(format!("/proc/{victim}/root"))
        .join(host.secret.strip_prefix("/").unwrap_or(&host.secret));
    let host_file = read(
        k,
        &through_proc,
        "the host's secret, through the root of a host process",
    );
    let victim_cmdline = read(
        k,
        &PathBuf::from(format!("/proc/{victim}/cmdline")),
        "is the host's sleep in my /proc?",
    )
    .map(|s| s.replace('\0', " ").trim().to_string());
    let kill = k
        .kill(
            victim,
            libc::SIGKILL,
            "kill the host's sleep, by its host pid",
        )
        .map_err(errno);
    let hostname = k
        .sethostname(&host.tag, "rename the machine I am on")
        .map_err(errno);
    let mount = k
        .mount(
            Some(&host.tag),
            Path::new("/tmp"),
            Some("tmpfs"),
            0,
            None,
            "a mount of my own on /tmp",
        )
        .map_err(errno);
    let seen = Seen {
        pid,
        ns,
        host_file,
        victim_cmdline,
        kill,
        hostname,
        mount,
        interfaces: interfaces(),
        breakout: breakout(k, &host.secret),
    };
    let line = serde_json::to_vec(&seen)?;
    k.write(results, &line, "tell stepctr what I saw")?;
    Ok(())
}

/// The breakout ([`super::escape`]), then the secret read by its host path.
fn breakout(k: &dyn Kernel, secret: &Path) -> Result<String, String> {
    super::escape(k)?;
    read(k, secret, "the host's secret, by its host path")
}

/// openat + read of a small file; its text or the errno name.
pub(crate) fn read(k: &dyn Kernel, path: &Path, why: &str) -> Result<String, String> {
    let fd = k
        .openat(path, libc::O_RDONLY | libc::O_CLOEXEC, 0, why)
        .map_err(|e| crate::kernel::errno_name(e.errno))?;
    // SAFETY: `fd` was just opened and is owned by this File from now on.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut s = String::new();
    f.read_to_string(&mut s).map_err(|e| e.to_string())?;
    Ok(s)
}

/// The name the probe gives the machine, and the source of its mount: stepctr's own pid, so
/// stepctr can find them on the host.
fn probe_tag() -> String {
    format!("stepctr-probe-{}", std::process::id())
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn ns_inodes() -> Vec<(String, u64)> {
    use std::os::unix::fs::MetadataExt;
    NS.iter()
        .map(|n| {
            let ino = std::fs::metadata(format!("/proc/self/ns/{n}")).map_or(0, |m| m.ino());
            (n.to_string(), ino)
        })
        .collect()
}

/// The interfaces of the caller's network namespace, from /proc/self/net/dev.
fn interfaces() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/net/dev").unwrap_or_default();
    let mut names: Vec<String> = text
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .collect();
    names.sort();
    names
}

/// Wait for the probe, read what it saw, add the host's side, put back what leaked.
fn finish(
    k: &dyn Kernel,
    child: crate::kernel::KResult<crate::kernel::Child>,
    host: &Host,
    victim: i32,
    results: i32,
    probe_tmp: &Path,
) -> Result<Vec<Verdict>> {
    let child = child?;
    let failed = k.child_error(&child);
    let status = k.wait4(child.pid, 0, "wait for the probe")?;
    // What leaked, put back first, whatever the probe managed to report.
    let host_name_now = hostname();
    let hostname_leaked = host_name_now != host.hostname;
    if hostname_leaked {
        k.sethostname(&host.hostname, "put the host's name back")?;
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mount_line = mountinfo.lines().find(|l| {
        l.split(" - ")
            .nth(1)
            .is_some_and(|t| t.split(' ').nth(1) == Some(host.tag.as_str()))
    });
    if mount_line.is_some() {
        k.umount2(
            probe_tmp,
            libc::MNT_DETACH,
            "take the probe's mount off the host",
        )?;
    }
    if let Some(err) = failed {
        bail!("the probe failed: {err}");
    }
    if status != crate::kernel::WaitStatus::Exited(0) {
        bail!("the probe ended with {status:?}");
    }
    let mut text = String::new();
    // SAFETY: dup gives a new fd that the File owns; `results` stays open for the caller.
    let mut f = unsafe { std::fs::File::from_raw_fd(libc::dup(results)) };
    std::io::Seek::rewind(&mut f)?;
    f.read_to_string(&mut text)?;
    let seen: Seen = serde_json::from_str(&text).context("read what the probe saw")?;
    // kill() only queues SIGKILL: the victim dies when it next runs, which on a busy machine
    // can be after this line. It is stepctr's child, so wait for it (a SIGKILL cannot be
    // caught, so this returns); a victim the probe could not signal is left alone.
    let victim_died = seen.kill.is_ok()
        && matches!(
            k.wait4(victim, 0, "the host's sleep, killed by the probe: reap it")?,
            crate::kernel::WaitStatus::Signaled(libc::SIGKILL)
        );
    let same_ns: Vec<&str> = seen
        .ns
        .iter()
        .zip(&host.ns)
        .filter(|((_, a), (_, b))| a == b && *a != 0)
        .map(|((n, _), _)| n.as_str())
        .collect();
    let differ: Vec<&str> = seen
        .ns
        .iter()
        .zip(&host.ns)
        .filter(|((_, a), (_, b))| a != b)
        .map(|((n, _), _)| n.as_str())
        .collect();
    let v = |isolated: bool, evidence: String| Verdict { isolated, evidence };
    Ok(vec![
        match &seen.host_file {
            Ok(t) if *t == host.secret_text => v(false, "read it".into()),
            Ok(_) => v(true, "another file".into()),
            Err(e) => v(true, e.clone()),
        },
        match &seen.victim_cmdline {
            Ok(c) => v(false, format!("/proc/{victim}: {c}")),
            Err(e) => v(true, format!("/proc/{victim}: {e}")),
        },
        match (&seen.kill, victim_died) {
            (Ok(()), true) => v(false, "killed it".into()),
            (Ok(()), false) => v(true, "kill() = 0, it lives".into()),
            (Err(e), _) => v(true, format!("kill(): {e}")),
        },
        v(
            seen.pid != child.pid,
            format!("{} (host: {})", seen.pid, child.pid),
        ),
        match (&seen.hostname, hostname_leaked) {
            (_, true) => v(false, format!("host became {host_name_now}")),
            (Ok(()), false) => v(true, "only its own".into()),
            (Err(e), false) => v(true, format!("sethostname: {e}")),
        },
        match (&seen.mount, mount_line.is_some()) {
            (_, true) => v(false, "in host's mountinfo".into()),
            (Ok(()), false) => v(true, "only in its own".into()),
            (Err(e), false) => v(true, format!("mount: {e}")),
        },
        v(
            seen.interfaces != host.interfaces,
            seen.interfaces.join(" "),
        ),
        match &seen.breakout {
            Ok(t) if *t == host.secret_text => v(false, "escaped, read the file".into()),
            Ok(_) => v(true, "another file".into()),
            Err(e) => v(true, format!("stayed inside ({e})")),
        },
        if same_ns.len() == NS.len() {
            v(false, "all 7 the same".into())
        } else {
            v(
                !differ.is_empty() && same_ns.iter().all(|n| *n == "user"),
                format!("differ: {}", differ.join(" ")),
            )
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_marks_each_cell() {
        let rows = vec![Row {
            probe: "x",
            question: "can it?",
            chroot: Some(Verdict {
                isolated: false,
                evidence: "yes".into(),
            }),
            namespaces: Some(Verdict {
                isolated: true,
                evidence: "no".into(),
            }),
        }];
        let t = table(&rows);
        assert!(t.contains("can it?  ✘ yes   ✔ no\n"), "{t}");
        assert!(t.lines().next().unwrap().contains("chroot  namespaces"));
    }
}
