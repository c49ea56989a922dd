//! The checks a lesson makes of the machine's real state (`check` and `task` blocks): each
//! kind is a function of what the kernel shows (/proc, /sys, the filesystem), never of what
//! stepctr says about itself.

use super::parse::Check;
use std::path::Path;

/// Does `c` hold now? Ok(()) or the reason it does not (the hint is the caller's).
pub fn holds(c: &Check) -> Result<(), String> {
    let arg = c.arg.as_str();
    match c.kind.as_str() {
        "exists" => yes(Path::new(arg).exists(), || format!("{arg} does not exist")),
        "gone" => yes(!Path::new(arg).exists(), || format!("{arg} still exists")),
        "mount" => yes(mounted(arg), || format!("no mount mentions {arg:?}")),
        "no-mount" => yes(!mounted(arg), || format!("a mount still mentions {arg:?}")),
        "cgroup" => yes(cgroup_named(arg), || format!("no cgroup named {arg}")),
        "no-cgroup" => yes(!cgroup_named(arg), || {
            format!("a cgroup named {arg} is left")
        }),
        "process" => yes(!processes(arg).is_empty(), || {
            format!("no process mentions {arg:?}")
        }),
        "no-process" => {
            let p = processes(arg);
            yes(p.is_empty(), || {
                format!("processes still mention {arg:?}: {p:?}")
            })
        }
        "file-contains" => {
            let (file, text) = arg.split_once(' ').unwrap_or((arg, ""));
            let got = std::fs::read_to_string(file).unwrap_or_default();
            yes(got.contains(text), || {
                format!("{file} does not contain {text:?}")
            })
        }
        "ns-same" => ns_compare(arg, true),
        "ns-differs" => ns_compare(arg, false),
        "hostname" => {
            let (name, want) = arg.split_once(' ').unwrap_or((arg, ""));
            let got = container_hostname(name)?;
            yes(got == want.trim(), || {
                format!("{name}'s hostname is {got:?}, not {:?}", want.trim())
            })
        }
        "uid" => {
            let (name, want) = arg.split_once(' ').unwrap_or((arg, ""));
            let pid = pid1(name)?;
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .map_err(|e| format!("{name}'s PID 1 ({pid}): {e}"))?;
            let got = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or("?")
                .to_string();
            yes(got == want.trim(), || {
                format!(
                    "{name}'s PID 1 runs as uid {got} on the host, not {}",
                    want.trim()
                )
            })
        }
        "cgroup-file" => cgroup_file(Path::new("/sys/fs/cgroup"), arg),
        "pid1-handles" | "pid1-no-handler" => {
            let (name, sig) = arg.split_once(' ').unwrap_or((arg, "TERM"));
            let pid = pid1(name)?;
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .map_err(|e| format!("{name}'s PID 1 ({pid}): {e}"))?;
            handler_check(&status, sig.trim(), c.kind == "pid1-handles")
                .map_err(|e| format!("{name}'s PID 1 (host pid {pid}) {e}"))
        }
        "upper" | "no-upper" | "whiteout" => {
            upper_check(&crate::state::Paths::from_env().run, &c.kind, arg)
        }
        "veth" | "no-veth" => veth_check(Path::new("/sys/class/net"), c.kind == "veth", arg),
        "listening" | "not-listening" => {
            let on = listening(arg)?;
            if c.kind == "listening" {
                yes(on, || {
                    format!("nothing listens on TCP {arg} (/proc/net/tcp)")
                })
            } else {
                yes(!on, || {
                    format!("a socket still listens on TCP {arg} (/proc/net/tcp)")
                })
            }
        }
        other => Err(format!("unknown check {other:?}")),
    }
}

/// The host pid of a container's PID 1, from its state.json (only if that process is alive).
fn pid1(name: &str) -> Result<i32, String> {
    let state = crate::state::Paths::from_env()
        .run
        .join(name)
        .join("state.json");
    let text = std::fs::read_to_string(&state)
        .map_err(|_| format!("no container {name} ({} is missing)", state.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", state.display()))?;
    let pid = v["pid"].as_i64().unwrap_or(0) as i32;
    if pid <= 0 || !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(format!("container {name} is not running"));
    }
    Ok(pid)
}

/// The hostname in a container's UTS namespace: a thread of ours joins it (setns changes only
/// the calling thread's namespace) and asks.
fn container_hostname(name: &str) -> Result<String, String> {
    let path = match pid1(name) {
        Ok(pid) => format!("/proc/{pid}/ns/uts"),
        Err(_) => crate::state::Paths::from_env()
            .run
            .join(name)
            .join("ns/uts")
            .to_string_lossy()
            .into_owned(),
    };
    let name = name.to_string();
    std::thread::spawn(move || -> Result<String, String> {
        let f = std::fs::File::open(&path).map_err(|_| format!("no container {name}"))?;
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWUTS)
            .map_err(|e| format!("setns({path}): {e}"))?;
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .map_err(|e| format!("gethostname: {e}"))
    })
    .join()
    .map_err(|_| "the thread asking for the hostname panicked".to_string())?
}

fn yes(ok: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(why())
    }
}

fn mounted(text: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains(text))
}

fn cgroup_named(name: &str) -> bool {
    let base = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![base.join("stepctr").join(name)];
    if let Ok(rd) = std::fs::read_dir(base) {
        dirs.extend(rd.flatten().map(|e| e.path().join("stepctr").join(name)));
    }
    dirs.iter().any(|d| d.is_dir())
}

/// `ns-same: WHO KIND[,KIND...]` / `ns-differs: ...`: the namespaces of WHO (a host pid, or a
/// container's name: its PID 1, found through its cgroup) against the checker's own
/// (`/proc/self/ns/KIND`), compared as the kernel shows them (the links' `net:[inode]` text).
fn ns_compare(arg: &str, same: bool) -> Result<(), String> {
    let (who, kinds) = arg
        .split_once(' ')
        .ok_or_else(|| format!("{arg:?}: expected WHO KIND[,KIND...]"))?;
    let pid = match who.parse::<u32>() {
        Ok(p) => p,
        Err(_) => pid1_of(who).ok_or_else(|| format!("container {who} has no running PID 1"))?,
    };
    let link = |p: &str, k: &str| {
        std::fs::read_link(format!("/proc/{p}/ns/{k}"))
            .map(|l| l.to_string_lossy().into_owned())
            .map_err(|e| format!("/proc/{p}/ns/{k}: {e}"))
    };
    let mut wrong = Vec::new();
    for k in kinds.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        let theirs = link(&pid.to_string(), k)?;
        let ours = link("self", k)?;
        if (theirs == ours) != same {
            wrong.push(format!("{k} (pid {pid}: {theirs}, self: {ours})"));
        }
    }
    yes(wrong.is_empty(), || {
        format!(
            "{} namespace(s) {}: {}",
            who,
            if same { "differ from ours" } else { "are ours" },
            wrong.join(", ")
        )
    })
}

/// The host pid of container `name`'s PID 1: of the processes in its cgroup, the one whose
/// `NSpid` (in /proc/PID/status) ends in 1, the pid it has in its own PID namespace.
fn pid1_of(name: &str) -> Option<u32> {
    let base = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![base.join("stepctr").join(name)];
    if let Ok(rd) = std::fs::read_dir(base) {
        dirs.extend(rd.flatten().map(|e| e.path().join("stepctr").join(name)));
    }
    dirs.iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|procs| {
            procs
                .lines()
                .filter_map(|l| l.trim().parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .find(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            status.lines().any(|l| {
                let f: Vec<&str> = l
                    .strip_prefix("NSpid:")
                    .map(|r| r.split_whitespace().collect())
                    .unwrap_or_default();
                f.len() > 1 && f.last() == Some(&"1")
            })
        })
}

/// Processes (other than this one) whose command line mentions `needle`.
fn processes(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd)
            .replace('\0', " ")
            .contains(needle)
        {
            out.push(pid);
        }
    }
    out
}

/// `cgroup-file: NAME FILE[|FILE...] [KEY] OP VALUE`: a file of container NAME's cgroup, read
/// where the kernel keeps it on either layout (v2: /sys/fs/cgroup/stepctr/NAME/FILE; v1 and
/// hybrid: /sys/fs/cgroup/CONTROLLER/stepctr/NAME/FILE), the first of the FILEs that exists (so
/// one check names both spellings: `memory.limit_in_bytes|memory.max`). The value compared is
/// the second word of the line starting with KEY (`oom_kill 1`), or without KEY the file's
/// first word (`max` and `-1` count as unlimited); OP is `=`, `<=`, `>=` (numbers) or `contains`
/// (text, in the KEY's line or the whole file).
fn cgroup_file(base: &Path, arg: &str) -> Result<(), String> {
    let bad = || format!("{arg:?}: expected NAME FILE[|FILE...] [KEY] =|<=|>=|contains VALUE");
    let w: Vec<&str> = arg.split_whitespace().collect();
    let is_op = |s: &str| matches!(s, "=" | "<=" | ">=" | "contains");
    let (name, files) = match w.as_slice() {
        [n, f, ..] => (*n, f.split('|').collect::<Vec<_>>()),
        _ => return Err(bad()),
    };
    let (key, op, want) = match &w[2..] {
        [op, v @ ..] if is_op(op) && !v.is_empty() => (None, *op, v.join(" ")),
        [k, op, v @ ..] if is_op(op) && !v.is_empty() => (Some(*k), *op, v.join(" ")),
        _ => return Err(bad()),
    };
    let mut dirs = vec![base.join("stepctr").join(name)];
    if let Ok(rd) = std::fs::read_dir(base) {
        let mut more: Vec<_> = rd
            .flatten()
            .map(|e| e.path().join("stepctr").join(name))
            .collect();
        more.sort();
        dirs.extend(more);
    }
    let Some((path, text)) = dirs
        .iter()
        .flat_map(|d| files.iter().map(move |f| d.join(f)))
        .find_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t)))
    else {
        return Err(format!(
            "no {} in a cgroup named {name}",
            files.join(" or ")
        ));
    };
    let shown = path.display();
    let scope = match key {
        Some(k) => text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(k))
            .ok_or_else(|| format!("{shown} has no line {k:?}"))?
            .to_string(),
        None => text.clone(),
    };
    if op == "contains" {
        return yes(scope.contains(&want), || {
            format!("{shown} does not contain {want:?}: {:?}", text.trim())
        });
    }
    let word = match key {
        Some(_) => scope.split_whitespace().nth(1),
        None => scope.split_whitespace().next(),
    }
    .unwrap_or("");
    let number = |s: &str| match s {
        // Unlimited: `max` (v2, pids.max on v1), `-1` (cpu.cfs_quota_us on v1).
        "max" | "-1" => Some(u64::MAX),
        _ => s.parse::<u64>().ok(),
    };
    let (Some(got), Some(limit)) = (number(word), number(&want)) else {
        return Err(format!("{shown}: {word:?} or {want:?} is not a number"));
    };
    let ok = match op {
        "=" => got == limit,
        "<=" => got <= limit,
        _ => got >= limit,
    };
    let what = key.map(|k| format!(" {k}")).unwrap_or_default();
    yes(ok, || format!("{shown}{what} is {word}, not {op} {want}"))
}

/// `upper: NAME PATH` / `no-upper: NAME PATH` / `whiteout: NAME PATH`: what container NAME's
/// writable layer (the overlay's upperdir, `RUN/NAME/upper`) holds at PATH (relative to the
/// container's root). A whiteout is how overlayfs records a deleted lower file: a character
/// device 0/0 in the upper directory.
fn upper_check(run: &Path, kind: &str, arg: &str) -> Result<(), String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let (name, path) = arg
        .split_once(' ')
        .ok_or_else(|| format!("{arg:?}: expected NAME PATH"))?;
    let rel = path.trim().trim_start_matches('/');
    let file = run.join(name).join("upper").join(rel);
    let shown = file.display();
    let meta = std::fs::symlink_metadata(&file);
    match kind {
        "upper" => yes(meta.is_ok(), || {
            format!("{shown} is not in {name}'s writable layer")
        }),
        "no-upper" => yes(meta.is_err(), || {
            format!("{shown} is in {name}'s writable layer")
        }),
        _ => {
            let m = meta.map_err(|_| format!("{shown} is not in {name}'s writable layer"))?;
            yes(m.file_type().is_char_device() && m.rdev() == 0, || {
                format!("{shown} is not a whiteout (a character device 0/0)")
            })
        }
    }
}

/// `pid1-handles: NAME SIG` / `pid1-no-handler: NAME SIG`: whether container NAME's PID 1 has
/// a handler for SIG (TERM, SIGTERM or a number), read from the `SigCgt:` mask of
/// /proc/PID/status (bit SIG-1). The kernel delivers a signal to a PID namespace's init only
/// if it has one (SIGKILL and SIGSTOP from outside excepted).
fn handler_check(status: &str, sig: &str, want: bool) -> Result<(), String> {
    let n: u32 = match sig.parse() {
        Ok(n) => n,
        Err(_) => {
            let full = if sig.starts_with("SIG") {
                sig.to_string()
            } else {
                format!("SIG{sig}")
            };
            full.parse::<nix::sys::signal::Signal>()
                .map_err(|_| format!("cannot tell: {sig:?} is not a signal"))? as u32
        }
    };
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .ok_or_else(|| "has no SigCgt line in /proc/PID/status".to_string())?;
    let has = (1..=64).contains(&n) && mask & (1u64 << (n - 1)) != 0;
    yes(has == want, || {
        format!(
            "{} for signal {n} (SigCgt: {mask:016x})",
            if has {
                "has a handler"
            } else {
                "has no handler"
            }
        )
    })
}

/// The host end of container NAME's veth pair, as stepctr names it (src/net/link.rs): `veth` and
/// the 32-bit FNV-1a hash of the name in 8 hex digits (IFNAMSIZ is 16).
fn veth_name(container: &str) -> String {
    let h = container.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    });
    format!("veth{h:08x}")
}

/// `veth: NAME` / `no-veth: NAME`: the host end of container NAME's veth pair is an interface of
/// the host (`/sys/class/net/vethXXXXXXXX`) plugged into the bridge stepctr0 (its `master`
/// link), or is gone.
fn veth_check(net: &Path, want: bool, name: &str) -> Result<(), String> {
    let veth = veth_name(name);
    let dir = net.join(&veth);
    if !want {
        return yes(!dir.exists(), || {
            format!("{name}'s veth {veth} is still an interface of the host")
        });
    }
    if !dir.exists() {
        return Err(format!(
            "{name} has no veth on the host ({} is missing)",
            dir.display()
        ));
    }
    let master = std::fs::read_link(dir.join("master")).unwrap_or_default();
    let on_bridge = master.file_name() == Some(std::ffi::OsStr::new("stepctr0"));
    yes(on_bridge, || {
        format!("{veth} is not plugged into the bridge stepctr0")
    })
}

/// Is a TCP socket listening on `IP:PORT` (IPv4) in this network namespace? /proc/net/tcp lists
/// sockets as `local_address rem_address st`, addresses in hex (the IP in the kernel's byte
/// order), LISTEN being state 0A.
fn listening(arg: &str) -> Result<bool, String> {
    let tcp =
        std::fs::read_to_string("/proc/net/tcp").map_err(|e| format!("/proc/net/tcp: {e}"))?;
    listening_in(&tcp, arg)
}

fn listening_in(tcp: &str, arg: &str) -> Result<bool, String> {
    let addr: std::net::SocketAddrV4 = arg
        .trim()
        .parse()
        .map_err(|_| format!("{arg:?}: expected IP:PORT"))?;
    let want = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(addr.ip().octets()),
        addr.port()
    );
    Ok(tcp.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1] == want && f[3] == "0A"
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: &str, arg: &str) -> Check {
        Check {
            kind: kind.into(),
            arg: arg.into(),
            hint: None,
        }
    }

    #[test]
    fn checks_read_the_real_state() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "hello world").unwrap();
        let p = f.to_string_lossy().into_owned();
        assert!(holds(&check("exists", &p)).is_ok());
        assert!(holds(&check("gone", &p))
            .unwrap_err()
            .contains("still exists"));
        assert!(holds(&check("file-contains", &format!("{p} world"))).is_ok());
        assert!(holds(&check("file-contains", &format!("{p} moon"))).is_err());
        assert!(holds(&check("mount", " / ")).is_ok());
        assert!(holds(&check("no-mount", "no-such-mount-anywhere")).is_ok());
        assert!(holds(&check("no-process", "no-such-process-anywhere-xyz")).is_ok());
        assert!(holds(&check("smell", "roses")).is_err());
        assert!(holds(&check("hostname", "no-such-container-xyz h")).is_err());
        assert!(holds(&check("uid", "no-such-container-xyz 0")).is_err());
        // ns-same / ns-differs: our own pid against ourselves, and a container that is not there.
        let me = std::process::id().to_string();
        assert!(holds(&check("ns-same", &format!("{me} net,uts,user"))).is_ok());
        assert!(holds(&check("ns-differs", &format!("{me} net")))
            .unwrap_err()
            .contains("are ours"));
        assert!(holds(&check("ns-same", "no-such-container-xyz net"))
            .unwrap_err()
            .contains("no running PID 1"));
        assert!(holds(&check("ns-same", "1")).is_err());
    }
}

#[cfg(test)]
mod cgroup_file_tests {
    use super::cgroup_file;

    /// Both layouts, made in a temporary directory: v1 (one tree per controller) for `v1c`,
    /// v2 (one tree) for `v2c`.
    #[test]
    fn cgroup_file_reads_either_layout() {
        let base = tempfile::tempdir().unwrap();
        let b = base.path();
        let put = |dir: &str, file: &str, text: &str| {
            let d = b.join(dir);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(file), text).unwrap();
        };
        put("memory/stepctr/v1c", "memory.limit_in_bytes", "268435456\n");
        put(
            "memory/stepctr/v1c",
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        );
        put("pids/stepctr/v1c", "pids.events", "max 45\n");
        put("pids/stepctr/v1c", "pids.current", "3\n");
        put("stepctr/v2c", "memory.max", "268435456\n");
        put("stepctr/v2c", "cpu.max", "50000 100000\n");
        put("stepctr/v2c", "pids.max", "max\n");
        put(
            "stepctr/v2c",
            "memory.events",
            "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n",
        );
        let ok = |a: &str| cgroup_file(b, a);
        for c in ["v1c", "v2c"] {
            assert_eq!(
                ok(&format!("{c} memory.limit_in_bytes|memory.max = 268435456")),
                Ok(())
            );
            assert_eq!(
                ok(&format!(
                    "{c} memory.oom_control|memory.events oom_kill >= 1"
                )),
                Ok(())
            );
            let e = ok(&format!("{c} memory.limit_in_bytes|memory.max = 64")).unwrap_err();
            assert!(e.contains("is 268435456, not = 64"), "{e}");
        }
        assert_eq!(ok("v1c pids.events max >= 1"), Ok(()));
        assert_eq!(ok("v1c pids.current <= 16"), Ok(()));
        assert!(ok("v1c pids.current >= 16").is_err());
        assert_eq!(ok("v2c cpu.cfs_quota_us|cpu.max = 50000"), Ok(()));
        assert_eq!(ok("v2c cpu.max contains 50000 100000"), Ok(()));
        assert_eq!(ok("v2c pids.max >= 1000000"), Ok(()));
        assert!(ok("v2c memory.events oom_kill = 0").is_err());
        put("cpu/stepctr/v1c", "cpu.cfs_quota_us", "-1\n");
        let e = ok("v1c cpu.cfs_quota_us|cpu.max = 25000").unwrap_err();
        assert!(e.contains("is -1, not = 25000"), "{e}");
        assert!(ok("v2c memory.events nokey = 0")
            .unwrap_err()
            .contains("no line"));
        assert!(ok("nosuch pids.max = 1")
            .unwrap_err()
            .contains("no pids.max"));
        assert!(ok("v1c pids.max").unwrap_err().contains("expected NAME"));
    }
}

#[cfg(test)]
mod upper_tests {
    use super::upper_check;

    /// A container's writable layer, made in a temporary directory: a file, and (as root, who
    /// may mknod) a whiteout.
    #[test]
    fn upper_checks_read_the_writable_layer() {
        let run = tempfile::tempdir().unwrap();
        let upper = run.path().join("c1/upper");
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(upper.join("notes.txt"), "draft").unwrap();
        let ok = |k: &str, a: &str| upper_check(run.path(), k, a);
        assert_eq!(ok("upper", "c1 /notes.txt"), Ok(()));
        assert_eq!(ok("upper", "c1 notes.txt"), Ok(()));
        assert!(ok("upper", "c1 /other")
            .unwrap_err()
            .contains("not in c1's writable layer"));
        assert_eq!(ok("no-upper", "c1 /other"), Ok(()));
        assert!(ok("no-upper", "c1 /notes.txt").is_err());
        assert!(ok("upper", "nosuch /notes.txt").is_err());
        assert!(ok("whiteout", "c1 /notes.txt")
            .unwrap_err()
            .contains("not a whiteout"));
        assert!(ok("whiteout", "c1 /etc/gone").is_err());
        assert!(ok("upper", "c1")
            .unwrap_err()
            .contains("expected NAME PATH"));
        let wh = upper.join("etc/os-release");
        let made = nix::sys::stat::mknod(
            &wh,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            nix::sys::stat::makedev(0, 0),
        );
        if made.is_ok() {
            assert_eq!(ok("whiteout", "c1 /etc/os-release"), Ok(()));
        }
    }
}

#[cfg(test)]
mod pid1_handler_tests {
    use super::handler_check;

    #[test]
    fn pid1_handler_reads_sigcgt() {
        // bash-like: SIGINT (2) and SIGTERM (15) caught, SIGHUP (1) not.
        let status = "Name:\tsh\nSigIgn:\t0000000000000000\nSigCgt:\t0000000000004002\n";
        assert!(handler_check(status, "TERM", true).is_ok());
        assert!(handler_check(status, "SIGTERM", true).is_ok());
        assert!(handler_check(status, "15", true).is_ok());
        assert!(handler_check(status, "INT", true).is_ok());
        assert!(handler_check(status, "HUP", false).is_ok());
        let err = handler_check(status, "HUP", true).unwrap_err();
        assert!(err.contains("has no handler for signal 1"), "{err}");
        assert!(handler_check(status, "TERM", false).is_err());
        assert!(handler_check(status, "NOPE", true).is_err());
        assert!(handler_check("Name: x\n", "TERM", true).is_err());
        // And our own process, for real: the test harness catches no SIGUSR2.
        let me = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(handler_check(&me, "USR2", false).is_ok());
    }
}

#[cfg(test)]
mod net_tests {
    use super::*;

    #[test]
    fn veth_and_listening_checks() {
        // the name a real run gave container t8a's host end
        assert_eq!(veth_name("t8a"), "veth8f97b820");
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path();
        assert!(veth_check(net, false, "t8a").is_ok());
        assert!(veth_check(net, true, "t8a")
            .unwrap_err()
            .contains("no veth"));
        std::fs::create_dir_all(net.join("stepctr0")).unwrap();
        std::fs::create_dir_all(net.join("veth8f97b820")).unwrap();
        assert!(veth_check(net, true, "t8a")
            .unwrap_err()
            .contains("not plugged"));
        std::os::unix::fs::symlink("../stepctr0", net.join("veth8f97b820/master")).unwrap();
        assert!(veth_check(net, true, "t8a").is_ok());
        assert!(veth_check(net, false, "t8a").unwrap_err().contains("still"));
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue\n   0: 0100007F:1F95 00000000:0000 0A 00000000:00000000\n   1: 0100007F:1F96 0100007F:D0B2 01 00000000:00000000\n";
        assert_eq!(listening_in(tcp, "127.0.0.1:8085"), Ok(true));
        assert_eq!(listening_in(tcp, "127.0.0.1:8086"), Ok(false));
        assert!(listening_in(tcp, "8085").is_err());
        assert!(holds(&Check {
            kind: "not-listening".into(),
            arg: "127.0.0.1:1".into(),
            hint: None,
        })
        .is_ok());
    }
}
