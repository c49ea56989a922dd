//! Rootless mode: the container of a user who is not root.
//!
//! Without root, stepctr may not make namespaces, mount anything or create cgroups in the
//! host's world. What an unprivileged user may do, where the host allows it (`stepctr doctor`
//! says), is make a *user namespace*. Inside it the user's own uid and gid are mapped to 0, and
//! the process that made it holds every capability over it and over each namespace made while
//! in it: it may mount in its own mount namespace, set its own hostname, bring up its own `lo`.
//! Root inside is the user outside: what container root writes into a volume belongs to the
//! user on the host, and nothing of the host's that the user may not touch becomes reachable.
//!
//! How the stages change:
//! - `ns`: a forked *keeper* unshares a user namespace and pauses; stepctr, outside, writes its
//!   maps (`setgroups` = deny, then `uid_map` = `0 UID 1`, `gid_map` = `0 GID 1`: only the user
//!   exists in there, as root); the keeper makes the mount, UTS, IPC and network namespaces,
//!   which its user namespace owns, and stops for good. A bind mount to pin a namespace needs
//!   root on the host, so the stopped keeper holds them all, ns/ holds symlinks to its
//!   /proc/PID/ns/*, and `rm` kills it (podman keeps a "pause process" for the same reason).
//! - `fs` and `start`: the process that works inside first setns()es into the user
//!   namespace. A user namespace can be entered but never left, so stepctr itself stays out:
//!   a forked helper mounts the root filesystem, and the shim enters it before it makes the
//!   PID namespace (which the user namespace then owns, so PID 1 may mount /proc).
//! - `cgroup`: the user may not make cgroups unless the host delegated a subtree to them;
//!   without it the limits are skipped, and `cgroup` says so.

use crate::kernel::Kernel;
use crate::state::Container;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The namespace file a rootless container's processes enter first.
pub const USER_FILE: &str = "user";

/// A rootless container's user namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNs {
    /// /proc/PID/uid_map as written: `inside outside count` per line.
    pub uid_map: String,
    pub gid_map: String,
    /// The keeper holding the namespaces: its pid and start time (against pid reuse).
    pub keeper: Option<(i32, u64)>,
    /// Made by a user who is not root (rootless mode); else root asked for it (`--userns`).
    #[serde(default)]
    pub rootless: bool,
}

/// Is this a rootless run (effective uid not 0)?
pub fn rootless() -> bool {
    !crate::kernel::host::is_root()
}

impl UserNs {
    /// The mapping a single unprivileged user can write alone: their uid and gid become 0.
    pub fn single() -> UserNs {
        UserNs {
            uid_map: format!("0 {} 1", crate::kernel::host::uid()),
            gid_map: format!("0 {} 1", crate::kernel::host::gid()),
            keeper: None,
            rootless: true,
        }
    }

    /// Root's `--userns[=BASE:COUNT]`: ids 0..COUNT inside are BASE..BASE+COUNT outside, for
    /// uids and gids alike (`auto`: root's line of /etc/subuid and /etc/subgid, else
    /// 100000:65536, the range useradd hands the first user).
    pub fn parse_range(spec: &str) -> Result<UserNs> {
        let (base, count) = if spec == "auto" {
            let line = |file: &str| -> Option<(u64, u64)> {
                std::fs::read_to_string(file).ok()?.lines().find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    match f[..] {
                        ["root", b, n] => Some((b.parse().ok()?, n.parse().ok()?)),
                        _ => None,
                    }
                })
            };
            match (line("/etc/subuid"), line("/etc/subgid")) {
                (Some(u), Some(g)) if u == g => u,
                _ => (100_000, 65_536),
            }
        } else {
            let parsed = spec.split_once(':').and_then(|(b, n)| {
                Some((b.trim().parse::<u64>().ok()?, n.trim().parse::<u64>().ok()?))
            });
            match parsed {
                Some(r) => r,
                None => bail!("--userns {spec:?}: give BASE:COUNT (like 100000:65536) or auto"),
            }
        };
        if base == 0 || count == 0 || base + count > u64::from(u32::MAX) {
            bail!("--userns {base}:{count}: the range must start above 0 (uid 0 outside is the host's root), hold at least one id and end below 2^32");
        }
        let map = format!("0 {base} {count}");
        Ok(UserNs {
            uid_map: map.clone(),
            gid_map: map,
            keeper: None,
            rootless: false,
        })
    }

    /// From outside, write the maps of the user namespace `pid` is in. setgroups must be
    /// denied first: else a process in there could drop a supplementary group the host gave
    /// the user to keep them *out* of a file (a file mode like 0705 with group `nogames`).
    pub fn write_maps(&self, k: &dyn Kernel, pid: i32) -> Result<()> {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        if self.rootless {
            k.write_file(
                &proc.join("setgroups"),
                "deny",
                "no setgroups() in there: the kernel insists before an unprivileged user may write a gid map",
            )?;
        }
        let (uid_why, gid_why) = if self.rootless {
            (
                "uid 0 inside is our own uid outside, and no other uid exists in there",
                "gid 0 inside is our own gid outside",
            )
        } else {
            (
                "uid N inside is BASE+N outside: root inside is nobody special on the host",
                "and the same for gids",
            )
        };
        k.write_file(&proc.join("uid_map"), &self.uid_map, uid_why)?;
        k.write_file(&proc.join("gid_map"), &self.gid_map, gid_why)?;
        Ok(())
    }

    /// The uid outside that root inside is.
    pub fn root_outside(&self) -> Option<u32> {
        outside_of(&self.uid_map, 0)
    }
}

/// What id `inside` is outside, by a map of `inside outside count` lines.
pub fn outside_of(map: &str, inside: u32) -> Option<u32> {
    map.lines().find_map(|line| {
        let f: Vec<u64> = line
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        match f[..] {
            [i, o, n] if (i..i + n).contains(&(inside as u64)) => {
                u32::try_from(o + (inside as u64 - i)).ok()
            }
            _ => None,
        }
    })
}

/// Fail unless the keeper of a rootless container still runs: without it, its namespaces
/// are gone (and its pid may belong to another process by now).
pub fn check_keeper(c: &Container) -> Result<()> {
    let Some(UserNs {
        keeper: Some((pid, start)),
        ..
    }) = &c.state.userns
    else {
        return Ok(());
    };
    // A zombie keeps its pid and start time, but no namespaces any more.
    let holds = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok();
    if crate::state::process_start_time(*pid) != Some(*start) || !holds {
        bail!(
            "container {n}: its keeper (pid {pid}) is gone, and its namespaces with it (was it killed?): `stepctr rm {n}` and start again",
            n = c.name
        );
    }
    Ok(())
}

/// What a rootless container cannot offer yet, refused up front in one line: another user
/// than root (`-u`: only one uid exists in there) and a terminal (`-t`).
pub fn check_options(user: Option<&str>, tty: bool) -> Result<()> {
    if let Some(u) = user.filter(|u| !matches!(*u, "0" | "root" | "0:0" | "root:root")) {
        bail!("-u {u}: a rootless container maps only your own uid, as root: no other user exists in it");
    }
    if tty {
        bail!("-t: a terminal for a rootless container is not supported yet");
    }
    Ok(())
}

/// In the user namespace, a process of stepctr's that goes on to be the container's (PID 1,
/// `exec`'s child): become its root. setns() gave full capabilities there but kept our uids:
/// root's uid 0 is not mapped inside (the process would be `nobody` to the container, and
/// would create files as the host's root). setresgid/setresuid(0) make it uid 0 inside, which
/// is BASE outside (rootless: the user's own uid, so nothing changes). runc does the same.
pub fn become_root(k: &dyn Kernel, rootless: bool) -> Result<()> {
    if !rootless {
        // (Rootless, setgroups is denied: the groups stay the user's.)
        k.setgroups(
            &[0],
            "the supplementary groups of root inside (the host's root's groups are not mapped)",
        )?;
    }
    k.setresgid(
        0,
        "gid 0 of the user namespace (outside: the map's first gid)",
    )?;
    k.setresuid(
        0,
        "uid 0 of the user namespace: root inside, an unprivileged uid outside",
    )?;
    Ok(())
}

/// In a forked child of one thread: enter the container's user namespace (`ns/user`). From
/// here on the child is root in there, with every capability over what it owns.
pub fn enter(k: &dyn Kernel, ns_dir: &Path) -> Result<()> {
    let fd = k.openat(
        &ns_dir.join(USER_FILE),
        libc::O_RDONLY | libc::O_CLOEXEC,
        0,
        "the container's user namespace",
    )?;
    let entered = k.setns(
        fd,
        libc::CLONE_NEWUSER,
        "enter it first: in there we are root, and its namespaces are ours to join and mount in (there is no way back)",
    );
    k.close(fd)?;
    entered?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse() {
        let u = UserNs::parse_range("100000:65536").unwrap();
        assert_eq!((u.uid_map.as_str(), u.rootless), ("0 100000 65536", false));
        assert_eq!(u.root_outside(), Some(100000));
        for bad in ["0:10", "5:0", "x", "1:", "4294967295:2"] {
            assert!(UserNs::parse_range(bad).is_err(), "{bad}");
        }
        assert!(UserNs::parse_range("auto").is_ok());
    }

    #[test]
    fn ids_are_looked_up_in_the_map() {
        assert_eq!(outside_of("0 1000 1", 0), Some(1000));
        assert_eq!(outside_of("0 1000 1", 1), None);
        assert_eq!(outside_of("0 1000 1\n1 100000 65536", 1), Some(100000));
        assert_eq!(outside_of("0 1000 1\n1 100000 65536", 65536), Some(165535));
        assert_eq!(outside_of("garbage", 0), None);
    }
}
