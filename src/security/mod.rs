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
use anyhow::{bail, Result};
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
        caps::check_names(&p.cap_add)?;
        caps::check_names(&p.cap_drop)?;
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

/// The last steps of a container's process before its execve (PID 1, and `exec`'s child):
/// capabilities and no_new_privs, then the seccomp filter (last: it may forbid calls the
/// steps before it make).
pub fn before_exec(k: &dyn Kernel, p: &Profile) -> Result<()> {
    caps::apply(k, p)?;
    seccomp::install(k, p)?;
    Ok(())
}
