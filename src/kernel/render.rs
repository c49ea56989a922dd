//! Renders calls in strace's syntax: `mount("overlay", "/x", "overlay", 0, "lowerdir=...") = 0`.
//!
//! Flags are printed symbolically, with the names strace uses, so a learner can put our
//! narration next to `strace -f -y` output and find every line.

use super::{errno_name, Errno, Ret, Sys, WaitStatus};
use std::path::Path;

/// How much of each argument to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Long strings cut at 64 bytes, environment summarised (the default narration).
    Short,
    /// Everything (`-v`).
    Full,
}

/// Looks up what an fd refers to (strace's `-y`): `3</sys/fs/cgroup/pids/...>`.
pub type FdName<'a> = dyn Fn(i32) -> Option<String> + 'a;

const SHORT_LIMIT: usize = 64;

/// A string argument, quoted and escaped the way strace does it.
pub fn quote(bytes: &[u8], detail: Detail) -> String {
    let cut = detail == Detail::Short && bytes.len() > SHORT_LIMIT;
    let shown = if cut { &bytes[..SHORT_LIMIT] } else { bytes };
    let mut s = String::with_capacity(shown.len() + 2);
    s.push('"');
    for &b in shown {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\r' => s.push_str("\\r"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\{b:o}")),
        }
    }
    s.push('"');
    if cut {
        s.push_str("...");
    }
    s
}

fn qpath(p: &Path, detail: Detail) -> String {
    use std::os::unix::ffi::OsStrExt;
    quote(p.as_os_str().as_bytes(), detail)
}

fn qstr(s: &str, detail: Detail) -> String {
    quote(s.as_bytes(), detail)
}

fn opt_str(s: &Option<String>, detail: Detail) -> String {
    match s {
        Some(s) => qstr(s, detail),
        None => "NULL".to_string(),
    }
}

/// `a|b|c` for the bits set in `value`, with any unknown bits in hex; `zero` when nothing is set.
pub fn flags(value: u64, names: &[(u64, &str)], zero: &str) -> String {
    let mut parts = Vec::new();
    let mut rest = value;
    for &(bit, name) in names {
        if bit != 0 && value & bit == bit {
            parts.push(name.to_string());
            rest &= !bit;
        }
    }
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    if parts.is_empty() {
        zero.to_string()
    } else {
        parts.join("|")
    }
}

pub const MOUNT_FLAGS: &[(u64, &str)] = &[
    (libc::MS_RDONLY, "MS_RDONLY"),
    (libc::MS_NOSUID, "MS_NOSUID"),
    (libc::MS_NODEV, "MS_NODEV"),
    (libc::MS_NOEXEC, "MS_NOEXEC"),
    (libc::MS_SYNCHRONOUS, "MS_SYNCHRONOUS"),
    (libc::MS_REMOUNT, "MS_REMOUNT"),
    (libc::MS_MANDLOCK, "MS_MANDLOCK"),
    (libc::MS_DIRSYNC, "MS_DIRSYNC"),
    (libc::MS_NOATIME, "MS_NOATIME"),
    (libc::MS_NODIRATIME, "MS_NODIRATIME"),
    (libc::MS_BIND, "MS_BIND"),
    (libc::MS_MOVE, "MS_MOVE"),
    (libc::MS_REC, "MS_REC"),
    (libc::MS_SILENT, "MS_SILENT"),
    (libc::MS_POSIXACL, "MS_POSIXACL"),
    (libc::MS_UNBINDABLE, "MS_UNBINDABLE"),
    (libc::MS_PRIVATE, "MS_PRIVATE"),
    (libc::MS_SLAVE, "MS_SLAVE"),
    (libc::MS_SHARED, "MS_SHARED"),
    (libc::MS_RELATIME, "MS_RELATIME"),
    (libc::MS_STRICTATIME, "MS_STRICTATIME"),
    (libc::MS_LAZYTIME, "MS_LAZYTIME"),
];

const SOCKET_TYPES: &[(u64, &str)] = &[
    (libc::SOCK_DGRAM as u64, "SOCK_DGRAM"),
    (libc::SOCK_NONBLOCK as u64, "SOCK_NONBLOCK"),
    (libc::SOCK_CLOEXEC as u64, "SOCK_CLOEXEC"),
];

const IFF_FLAGS: &[(u64, &str)] = &[
    (libc::IFF_UP as u64, "IFF_UP"),
    (libc::IFF_BROADCAST as u64, "IFF_BROADCAST"),
    (libc::IFF_DEBUG as u64, "IFF_DEBUG"),
    (libc::IFF_LOOPBACK as u64, "IFF_LOOPBACK"),
    (libc::IFF_POINTOPOINT as u64, "IFF_POINTOPOINT"),
    (libc::IFF_NOTRAILERS as u64, "IFF_NOTRAILERS"),
    (libc::IFF_RUNNING as u64, "IFF_RUNNING"),
    (libc::IFF_NOARP as u64, "IFF_NOARP"),
    (libc::IFF_PROMISC as u64, "IFF_PROMISC"),
    (libc::IFF_MULTICAST as u64, "IFF_MULTICAST"),
];

pub const CLONE_FLAGS: &[(u64, &str)] = &[
    (libc::CLONE_FS as u64, "CLONE_FS"),
    (libc::CLONE_FILES as u64, "CLONE_FILES"),
    (libc::CLONE_NEWNS as u64, "CLONE_NEWNS"),
    (libc::CLONE_SYSVSEM as u64, "CLONE_SYSVSEM"),
    (libc::CLONE_NEWCGROUP as u64, "CLONE_NEWCGROUP"),
    (libc::CLONE_NEWUTS as u64, "CLONE_NEWUTS"),
    (libc::CLONE_NEWIPC as u64, "CLONE_NEWIPC"),
    (libc::CLONE_NEWUSER as u64, "CLONE_NEWUSER"),
    (libc::CLONE_NEWPID as u64, "CLONE_NEWPID"),
    (libc::CLONE_NEWNET as u64, "CLONE_NEWNET"),
];

const OPEN_FLAGS: &[(u64, &str)] = &[
    (libc::O_CREAT as u64, "O_CREAT"),
    (libc::O_EXCL as u64, "O_EXCL"),
    (libc::O_NOCTTY as u64, "O_NOCTTY"),
    (libc::O_TRUNC as u64, "O_TRUNC"),
    (libc::O_APPEND as u64, "O_APPEND"),
    (libc::O_NONBLOCK as u64, "O_NONBLOCK"),
    (libc::O_DIRECTORY as u64, "O_DIRECTORY"),
    (libc::O_NOFOLLOW as u64, "O_NOFOLLOW"),
    (libc::O_CLOEXEC as u64, "O_CLOEXEC"),
    (libc::O_PATH as u64, "O_PATH"),
];

const UMOUNT_FLAGS: &[(u64, &str)] = &[
    (libc::MNT_FORCE as u64, "MNT_FORCE"),
    (libc::MNT_DETACH as u64, "MNT_DETACH"),
    (libc::MNT_EXPIRE as u64, "MNT_EXPIRE"),
    (libc::UMOUNT_NOFOLLOW as u64, "UMOUNT_NOFOLLOW"),
];

/// A file mode the way strace prints it: `0755`.
pub fn mode(m: u32) -> String {
    if m == 0 {
        "000".to_string()
    } else {
        format!("0{m:o}")
    }
}

pub fn open_flags(f: i32) -> String {
    let access = match f & libc::O_ACCMODE {
        libc::O_WRONLY => "O_WRONLY",
        libc::O_RDWR => "O_RDWR",
        _ => "O_RDONLY",
    };
    let rest = (f & !libc::O_ACCMODE) as u64;
    if rest == 0 {
        access.to_string()
    } else {
        format!("{access}|{}", flags(rest, OPEN_FLAGS, ""))
    }
}

pub fn signal_name(sig: i32) -> String {
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(s) => s.as_str().to_string(),
        Err(_) if sig == 0 => "0".to_string(),
        Err(_) => sig.to_string(),
    }
}

fn fs_magic(magic: i64) -> String {
    let name = match magic {
        0x0102_1994 => "TMPFS_MAGIC",
        0x6367_7270 => "CGROUP2_SUPER_MAGIC",
        0x0027_e0eb => "CGROUP_SUPER_MAGIC",
        0xef53 => "EXT2_SUPER_MAGIC",
        0x794c_7630 => "OVERLAYFS_SUPER_MAGIC",
        0x9123_683e => "BTRFS_SUPER_MAGIC",
        0x5846_5342 => "XFS_SUPER_MAGIC",
        0x9fa0 => "PROC_SUPER_MAGIC",
        0x6265_6572 => "SYSFS_MAGIC",
        _ => return format!("{magic:#x}"),
    };
    name.to_string()
}

fn wait_status(raw: i32) -> String {
    match WaitStatus::from_raw(raw) {
        WaitStatus::Exited(c) => format!("[{{WIFEXITED(s) && WEXITSTATUS(s) == {c}}}]"),
        WaitStatus::Signaled(s) => {
            format!("[{{WIFSIGNALED(s) && WTERMSIG(s) == {}}}]", signal_name(s))
        }
        WaitStatus::Stopped(s) => {
            format!("[{{WIFSTOPPED(s) && WSTOPSIG(s) == {}}}]", signal_name(s))
        }
    }
}

fn fd(fd: i32, names: &FdName<'_>) -> String {
    match names(fd) {
        Some(n) => format!("{fd}<{n}>"),
        None => fd.to_string(),
    }
}

fn string_list(items: &[String], detail: Detail) -> String {
    let inner: Vec<String> = items.iter().map(|a| qstr(a, detail)).collect();
    format!("[{}]", inner.join(", "))
}

/// The call with its arguments, without the result: `mount("proc", "/proc", "proc", 0, NULL)`.
/// `ret` is the result when known: some arguments (wait4's status, statfs's buffer) are outputs.
pub fn call_with(call: &Sys, detail: Detail, names: &FdName<'_>, ret: Option<&Ret>) -> String {
    let d = detail;
    let args = match call {
        Sys::Openat { path, flags, mode } => {
            if flags & libc::O_CREAT != 0 {
                format!(
                    "AT_FDCWD, {}, {}, {}",
                    qpath(path, d),
                    open_flags(*flags),
                    self::mode(*mode)
                )
            } else {
                format!("AT_FDCWD, {}, {}", qpath(path, d), open_flags(*flags))
            }
        }
        Sys::Write { fd: f, data } => {
            format!("{}, {}, {}", fd(*f, names), quote(data, d), data.len())
        }
        Sys::Close { fd: f } => fd(*f, names),
        Sys::Mkdirat { path, mode } => {
            format!("AT_FDCWD, {}, {}", qpath(path, d), self::mode(*mode))
        }
        Sys::Unlinkat { path, flags } => {
            let f = if *flags & libc::AT_REMOVEDIR != 0 {
                "AT_REMOVEDIR"
            } else {
                "0"
            };
            format!("AT_FDCWD, {}, {f}", qpath(path, d))
        }
        Sys::Renameat { old, new } => {
            format!("AT_FDCWD, {}, AT_FDCWD, {}", qpath(old, d), qpath(new, d))
        }
        Sys::Symlinkat { target, linkpath } => {
            format!("{}, AT_FDCWD, {}", qpath(target, d), qpath(linkpath, d))
        }
        Sys::Mknodat {
            path,
            mode,
            major,
            minor,
        } => {
            let kind = match mode & libc::S_IFMT {
                libc::S_IFCHR => "S_IFCHR",
                libc::S_IFBLK => "S_IFBLK",
                libc::S_IFIFO => "S_IFIFO",
                _ => "S_IFREG",
            };
            format!(
                "AT_FDCWD, {}, {kind}|{}, makedev({major:#x}, {minor:#x})",
                qpath(path, d),
                self::mode(mode & 0o7777)
            )
        }
        Sys::Statfs { path } => match ret {
            Some(r) => format!("{}, {{f_type={}, ...}}", qpath(path, d), fs_magic(r.val)),
            None => format!("{}, ...", qpath(path, d)),
        },
        Sys::Mount {
            source,
            target,
            fstype,
            flags: f,
            data,
        } => format!(
            "{}, {}, {}, {}, {}",
            opt_str(source, d),
            qpath(target, d),
            opt_str(fstype, d),
            flags(*f, MOUNT_FLAGS, "0"),
            opt_str(data, d)
        ),
        Sys::Umount2 { target, flags: f } => {
            format!(
                "{}, {}",
                qpath(target, d),
                flags(*f as u64, UMOUNT_FLAGS, "0")
            )
        }
        Sys::Unshare { flags: f } => flags(*f as u64, CLONE_FLAGS, "0"),
        Sys::Setns { fd: f, nstype } => {
            format!(
                "{}, {}",
                fd(*f, names),
                flags(*nstype as u64, CLONE_FLAGS, "0")
            )
        }
        Sys::Sethostname { name } => format!("{}, {}", qstr(name, d), name.len()),
        Sys::Chdir { path } => qpath(path, d),
        Sys::PivotRoot { new_root, put_old } => {
            format!("{}, {}", qpath(new_root, d), qpath(put_old, d))
        }
        Sys::Prctl { option, arg2 } => match *option {
            libc::PR_SET_PDEATHSIG => format!("PR_SET_PDEATHSIG, {}", signal_name(*arg2 as i32)),
            libc::PR_SET_NO_NEW_PRIVS => format!("PR_SET_NO_NEW_PRIVS, {arg2}"),
            o => format!("{o}, {arg2:#x}"),
        },
        Sys::Kill { pid, sig } => format!("{pid}, {}", signal_name(*sig)),
        Sys::Wait4 { pid, options } => {
            let status = match ret {
                Some(r) => wait_status(r.wstatus),
                None => "...".to_string(),
            };
            let opts = if options & libc::WUNTRACED != 0 {
                "WSTOPPED"
            } else {
                "0"
            };
            format!("{pid}, {status}, {opts}, NULL")
        }
        Sys::Socket { domain, ty } => {
            let dom = if *domain == libc::AF_INET {
                "AF_INET".to_string()
            } else {
                domain.to_string()
            };
            format!(
                "{dom}, {}, IPPROTO_IP",
                flags(*ty as u64, SOCKET_TYPES, "0")
            )
        }
        Sys::IfFlags { fd: f, name, set } => {
            let (req, shown) = match set {
                Some(v) => ("SIOCSIFFLAGS", Some(*v)),
                None => ("SIOCGIFFLAGS", ret.map(|r| r.val as i32)),
            };
            let fl = shown.map_or("...".to_string(), |v| {
                flags(v as u32 as u64, IFF_FLAGS, "0")
            });
            format!(
                "{}, {req}, {{ifr_name={}, ifr_flags={fl}}}",
                fd(*f, names),
                qstr(name, d)
            )
        }
        Sys::Execve { path, argv, envp } => {
            let env = match d {
                Detail::Full => string_list(envp, d),
                Detail::Short => format!("[/* {} vars */]", envp.len()),
            };
            format!("{}, {}, {env}", qpath(path, d), string_list(argv, d))
        }
        Sys::Umask { mask } => format!("{mask:03o}"),
        Sys::SchedSetaffinity { cpu } => {
            format!("0, {}, [{cpu}]", std::mem::size_of::<libc::cpu_set_t>())
        }
        Sys::Clone => {
            "child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD".to_string()
        }
    };
    format!("{}({args})", call.name())
}

/// The call without its result.
pub fn call(call: &Sys, detail: Detail, names: &FdName<'_>) -> String {
    call_with(call, detail, names, None)
}

/// `= 0`, `= 3`, `= -1 EPERM (Operation not permitted)`.
pub fn result(call: &Sys, res: &Result<Ret, Errno>) -> String {
    match res {
        Ok(r) => match call {
            Sys::IfFlags { .. } | Sys::Statfs { .. } => "= 0".to_string(),
            Sys::Umask { .. } => format!("= {:03o}", r.val),
            _ => format!("= {}", r.val),
        },
        Err(e) => format!("= -1 {} ({})", errno_name(*e), e.desc()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn none(_: i32) -> Option<String> {
        None
    }

    #[test]
    fn mount_renders_like_strace() {
        let c = Sys::Mount {
            source: None,
            target: PathBuf::from("/"),
            fstype: None,
            flags: libc::MS_REC | libc::MS_PRIVATE,
            data: None,
        };
        assert_eq!(
            call(&c, Detail::Full, &none),
            r#"mount(NULL, "/", NULL, MS_REC|MS_PRIVATE, NULL)"#
        );
    }

    #[test]
    fn unshare_flags_in_bit_order() {
        let f = libc::CLONE_NEWNET | libc::CLONE_NEWNS | libc::CLONE_NEWPID;
        assert_eq!(
            call(&Sys::Unshare { flags: f }, Detail::Full, &none),
            "unshare(CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWNET)"
        );
    }

    #[test]
    fn long_strings_are_cut_in_short_mode_only() {
        let long = "x".repeat(100);
        assert!(quote(long.as_bytes(), Detail::Short).ends_with("\"..."));
        assert_eq!(quote(long.as_bytes(), Detail::Full).len(), 102);
    }

    #[test]
    fn errors_show_errno_name_and_text() {
        let c = Sys::Unshare { flags: 0 };
        assert_eq!(
            result(&c, &Err(Errno::EPERM)),
            "= -1 EPERM (Operation not permitted)"
        );
    }

    #[test]
    fn writes_show_fd_names_and_escapes() {
        let c = Sys::Write {
            fd: 3,
            data: b"1\n".to_vec(),
        };
        let names = |fd: i32| (fd == 3).then(|| "/sys/fs/cgroup/x".to_string());
        assert_eq!(
            call(&c, Detail::Short, &names),
            r#"write(3</sys/fs/cgroup/x>, "1\n", 2)"#
        );
    }
}
