//! Hardening: the walls around a container's processes beyond namespaces and cgroups, each one
//! a narrated call a learner can switch off to see what it prevents (issue 5).
//!
//! - `paths`: masked and read-only paths of /proc and /sys (PID 1, after its mounts);
//! - `caps`: capabilities (docker's default set; `--cap-add`, `--cap-drop`, `--privileged`)
//!   and no_new_privs;
//! - `seccomp`: the default system-call filter (`--security-opt seccomp=unconfined`).
//!
//! The profile is chosen at `start` (or `run`/`all`) and kept in the container's state, so
//! `exec` applies the same one to every process it adds.

pub mod caps;
pub mod paths;
pub mod seccomp;

use crate::kernel::Kernel;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// How a container is hardened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// `--privileged`: every capability, no seccomp filter, no masked or read-only paths.
    #[serde(default)]
    pub privileged: bool,
    /// `--cap-add`: capabilities added to the default set (names like `NET_ADMIN`, or `ALL`).
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// `--cap-drop`: capabilities taken from it (or `ALL`).
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// The default seccomp filter (`--security-opt seccomp=unconfined` turns it off).
    #[serde(default = "yes")]
    pub seccomp: bool,
    /// Masked and read-only paths of /proc and /sys (`--security-opt systempaths=unconfined`
    /// turns them off, as docker's does).
    #[serde(default = "yes")]
    pub system_paths: bool,
    /// no_new_privs (`--security-opt no-new-privileges[=true|false]`).
    #[serde(default = "yes")]
    pub no_new_privs: bool,
}

fn yes() -> bool {
    true
}

impl Default for Profile {
    fn default() -> Profile {
        Profile {
            privileged: false,
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            seccomp: true,
            system_paths: true,
            no_new_privs: true,
        }
    }
}

impl Profile {
    /// The profile the command line asks for.
    pub fn from_args(args: &crate::cli::SecurityArgs) -> Result<Profile> {
        let mut p = Profile {
            privileged: args.privileged,
            cap_add: args.cap_add.clone(),
            cap_drop: args.cap_drop.clone(),
            ..Profile::default()
        };
        for opt in &args.security_opt {
            let (key, value) = opt.split_once(['=', ':']).unwrap_or((opt.as_str(), "true"));
            match (key, value) {
                ("seccomp", "unconfined") => p.seccomp = false,
                ("systempaths", "unconfined") => p.system_paths = false,
                ("no-new-privileges", "true") => p.no_new_privs = true,
                ("no-new-privileges", "false") => p.no_new_privs = false,
                _ => bail!(
                    "--security-opt {opt}: not supported (known: seccomp=unconfined, systempaths=unconfined, no-new-privileges[=true|false])"
                ),
            }
        }
        caps::check_names(&p.cap_add).context("--cap-add")?;
        caps::check_names(&p.cap_drop).context("--cap-drop")?;
        if p.privileged {
            p.seccomp = false;
            p.system_paths = false;
        }
        Ok(p)
    }
}

/// PID 1, once /proc and /sys are mounted in its new root: mask and write-protect what a
/// container must not touch there.
pub fn protect_paths(k: &dyn Kernel, p: &Profile) -> Result<()> {
    paths::protect(k, p)
}

/// The last steps of a container's process before its execve (PID 1, and `exec`'s child),
/// the user switch (`-u`) among them, in runc's order (`finalizeNamespace` and
/// `standard_init_linux.go`):
///
/// 1. `capget`: what we hold, the most the container can keep;
/// 2. drop the rest from the bounding set, while we are still root: PR_CAPBSET_DROP needs
///    CAP_SETPCAP, which a non-root user no longer has after step 3;
/// 3. switch to the `-u` user (setgroups, setresgid, setresuid); leaving uid 0 empties the
///    permitted, effective and ambient sets, as docker wants for a non-root user;
/// 4. `capset` effective/permitted/inheritable and clear the ambient set;
/// 5. no_new_privs (`PR_SET_NO_NEW_PRIVS`) when the profile says so;
/// 6. the seccomp filter, LAST: as few calls as possible run under it, and it may forbid
///    calls the steps before it make.
///
/// Installing a seccomp filter needs no_new_privs, or CAP_SYS_ADMIN. With
/// `--security-opt no-new-privileges=false` there is no no_new_privs, and step 4 has taken
/// CAP_SYS_ADMIN away (unless `--cap-add SYS_ADMIN`), so then, as runc does, the filter is
/// installed FIRST, while we are still fully root; the calls of steps 1-4 (capget, prctl,
/// setgroups, setresgid, setresuid, capset, openat/read of /etc/passwd and /etc/group, then
/// execve) must pass it, as they pass docker's default profile.
pub fn before_exec(k: &dyn Kernel, p: &Profile, user: Option<&str>) -> Result<()> {
    let seccomp_first = !p.no_new_privs;
    if seccomp_first {
        seccomp::install(k, p)?;
    }
    let plan = caps::plan(k, p)?;
    caps::drop_bounding(k, &plan)?;
    let root = match user {
        Some(user) => crate::exec::switch_user(k, user)? == 0,
        None => true,
    };
    caps::set(k, &plan, root)?;
    if p.no_new_privs {
        caps::no_new_privs(k)?;
    }
    if !seccomp_first {
        seccomp::install(k, p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::record::Record;
    use crate::kernel::Sys;

    /// The calls of `before_exec` (no `-u`), as strace names with the prctl option.
    fn calls(p: &Profile) -> Vec<String> {
        let rec = Record::new();
        before_exec(&rec, p, None).unwrap();
        rec.calls()
            .iter()
            .map(|c| match c.call {
                Sys::Prctl { option, .. } if option == libc::PR_CAPBSET_DROP => "drop".into(),
                Sys::Prctl { option, .. } if option == libc::PR_SET_NO_NEW_PRIVS => "nnp".into(),
                Sys::CapAmbient { .. } => "ambient".into(),
                _ => c.call.name().to_string(),
            })
            .collect()
    }

    #[test]
    fn seccomp_last_after_no_new_privs() {
        let c = calls(&Profile::default());
        let tail: Vec<&str> = c.iter().rev().take(4).rev().map(|s| s.as_str()).collect();
        assert_eq!(tail, ["capset", "ambient", "nnp", "seccomp"], "{c:?}");
        assert_eq!(c[0], "capget");
        assert!(c[1..c.len() - 4].iter().all(|s| s == "drop"), "{c:?}");
    }

    #[test]
    fn without_no_new_privs_seccomp_goes_first() {
        let p = Profile {
            no_new_privs: false,
            ..Profile::default()
        };
        let c = calls(&p);
        assert_eq!(c[0], "seccomp", "{c:?}");
        assert_eq!(c[1], "capget", "{c:?}");
        assert_eq!(c.last().map(String::as_str), Some("ambient"), "{c:?}");
        assert!(!c.contains(&"nnp".to_string()), "{c:?}");
        assert_eq!(c.iter().filter(|s| *s == "seccomp").count(), 1);
    }

    #[test]
    fn privileged_drops_nothing() {
        let p = Profile {
            privileged: true,
            seccomp: false,
            system_paths: false,
            ..Profile::default()
        };
        assert_eq!(calls(&p), ["capget", "capset", "ambient", "nnp"]);
    }
}
