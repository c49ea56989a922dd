//! Capabilities: root's power cut into pieces (41 on Linux 6.x, see capabilities(7)), of which
//! a container keeps only docker's default 14.
//!
//! A thread has five capability sets, each a bit mask (bit N = capability N):
//! - **bounding**: the ceiling. No execve can ever give a capability outside it, not even of a
//!   setuid-root program or a file with file capabilities. Dropping from it needs CAP_SETPCAP,
//!   and nothing puts a capability back. This is the real wall.
//! - **permitted**: what the thread may use; it can only shrink (capset).
//! - **effective**: what the kernel checks right now (a subset of permitted).
//! - **inheritable**: what may pass through execve to programs whose file says so.
//! - **ambient**: what passes through execve to any program a non-root user runs.
//!
//! For root, execve recomputes permitted and effective as the bounding set (plus inheritable):
//! root's power after execve is exactly the bounding set. So the container's root is as strong
//! as the bounding set we leave it, whatever else we set. A non-root user loses permitted,
//! effective and ambient when it becomes non-root (setresuid away from 0), and execve gives it
//! nothing unless a file grants it (setuid-root binaries, file capabilities: what no_new_privs
//! forbids).
//!
//! Docker chooses the sets (moby's `caps.TweakCapabilities`, `oci.SetCapabilities`), runc applies
//! them (`finalizeNamespace` in libcontainer/init_linux.go). stepctr does both, in runc's order:
//! 1. `capget`: what stepctr holds (root's full set, less what the host withholds: a container
//!    cannot be given what its runtime does not have);
//! 2. `prctl(PR_CAPBSET_DROP, cap)` for every capability not kept, still as root (it needs
//!    CAP_SETPCAP), up to the first the kernel does not know (EINVAL: the list is done);
//! 3. the `-u` user switch (`crate::exec::switch_user`), which for a non-root user empties
//!    permitted, effective and ambient (runc sets PR_SET_KEEPCAPS around it because an OCI spec
//!    may give a non-root user capabilities; docker's never does, so the kernel's own rule
//!    gives docker's result and stepctr needs no KEEPCAPS);
//! 4. `capset`: effective = permitted = the kept set for root, nothing for another user;
//!    inheritable empty (docker since 20.10.14, CVE-2022-24769: an inheritable set let a
//!    program with inheritable file capabilities gain them);
//! 5. `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)`: no ambient capabilities, as docker;
//! 6. `prctl(PR_SET_NO_NEW_PRIVS, 1)` when the profile says so (`no_new_privs`).
//!
//! The order of these around seccomp is `super::before_exec`'s.

use crate::kernel::{CapSets, Errno, Kernel};
use anyhow::{bail, Result};
use caps::Capability;

/// Docker's default capabilities (moby's oci/caps/defaults.go), in the kernel's bit order:
/// the mask 0x00000000a80425fb that `grep CapBnd /proc/self/status` shows in a docker
/// container.
pub const DOCKER_DEFAULT: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    Capability::CAP_KILL,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_NET_RAW,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_MKNOD,
    Capability::CAP_AUDIT_WRITE,
    Capability::CAP_SETFCAP,
];

/// The mask of a list of capabilities.
pub fn mask(list: &[Capability]) -> u64 {
    list.iter().fold(0, |m, c| m | c.bitmask())
}

/// A name given to `--cap-add` or `--cap-drop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    /// `ALL`: every capability.
    All,
    Cap(Capability),
}

/// `NET_ADMIN`, `cap_net_admin`, `CAP_NET_ADMIN` or `all`, as docker accepts them.
pub fn parse(name: &str) -> Result<Name> {
    if name.eq_ignore_ascii_case("all") {
        return Ok(Name::All);
    }
    match caps::to_canonical(name).parse::<Capability>() {
        Ok(c) => Ok(Name::Cap(c)),
        Err(_) => bail!(
            "unknown capability {:?}: use a name from capabilities(7), with or without CAP_ and in any case (e.g. NET_ADMIN, cap_sys_time), or ALL",
            name
        ),
    }
}

/// Refuse unknown capability names (`--cap-add`, `--cap-drop`).
pub fn check_names(names: &[String]) -> Result<()> {
    for n in names {
        parse(n)?;
    }
    Ok(())
}

fn parsed(names: &[String]) -> Result<Vec<Name>> {
    names.iter().map(|n| parse(n)).collect()
}

/// The capabilities the container's processes keep, given those stepctr holds (`held`,
/// its permitted set). This is docker's `TweakCapabilities`:
/// - `--privileged`: everything (here: everything stepctr holds);
/// - `--cap-add ALL`: everything but what `--cap-drop` names;
/// - `--cap-drop ALL`: only what `--cap-add` names;
/// - otherwise docker's default set, less `--cap-drop`, plus `--cap-add` (add wins).
///
/// A capability named by `--cap-add` that stepctr does not hold is an error: no runtime can
/// give what it does not have.
pub fn keep(p: &super::Profile, held: u64) -> Result<u64> {
    if p.privileged {
        return Ok(held);
    }
    let (add, drop) = (parsed(&p.cap_add)?, parsed(&p.cap_drop)?);
    let mask_of = |names: &[Name]| {
        names.iter().fold(0u64, |m, n| match n {
            Name::All => m,
            Name::Cap(c) => m | c.bitmask(),
        })
    };
    let (add_mask, drop_mask) = (mask_of(&add), mask_of(&drop));
    for c in caps::all() {
        if add_mask & c.bitmask() != 0 && held & c.bitmask() == 0 {
            bail!(
                "--cap-add {}: stepctr itself does not have {c} (this host withholds it: see CapBnd in /proc/self/status), so it cannot give it to a container",
                c.to_string().trim_start_matches("CAP_")
            );
        }
    }
    let wanted = if add.contains(&Name::All) {
        held & !drop_mask
    } else if drop.contains(&Name::All) {
        add_mask
    } else {
        (mask(&DOCKER_DEFAULT) & !drop_mask) | add_mask
    };
    Ok(wanted & held)
}

/// What the container keeps, worked out before anything changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The capabilities kept (bounding set; effective and permitted for root).
    pub keep: u64,
    /// `--privileged`: the bounding set stays as it is.
    pub privileged: bool,
}

/// Step 1: read what we hold (capget) and work out what the container keeps.
pub fn plan(k: &dyn Kernel, p: &super::Profile) -> Result<Plan> {
    let held = k.capget(
        "what we hold now (root's set, less what the host withholds): the most a container can keep",
    )?;
    Ok(Plan {
        keep: keep(p, held.permitted)?,
        privileged: p.privileged,
    })
}

/// What each capability allows, in a few words (from capabilities(7)), for the narration;
/// indexed by number, up to CAP_CHECKPOINT_RESTORE (40), the last one Linux 6.x knows.
const ALLOWS: [&str; 41] = [
    "change the owner of any file",
    "ignore file permissions",
    "read any file and open files by handle (the 2014 'shocker' escape)",
    "act as the owner of any file",
    "keep setuid bits on files it changes",
    "signal any process",
    "change group ids",
    "change user ids",
    "change capability sets",
    "set immutable and append-only file flags",
    "bind ports below 1024",
    "broadcast and listen to multicast",
    "configure interfaces, routes and firewalls",
    "use raw sockets (ping)",
    "lock memory",
    "bypass permissions on IPC objects",
    "load and unload kernel modules",
    "raw I/O: ioperm, /dev/mem",
    "chroot",
    "trace and inspect any process",
    "switch process accounting",
    "mount, setns, swapon, and much more: the new root",
    "reboot and kexec",
    "raise priorities and reschedule others",
    "exceed resource limits and quotas",
    "set the system clock",
    "configure terminals, vhangup",
    "create device nodes",
    "take file leases",
    "write to the audit log",
    "configure auditing",
    "set file capabilities",
    "override the security module (AppArmor, SELinux)",
    "configure the security module",
    "read and clear the kernel log",
    "set alarms that wake the system",
    "block system suspend",
    "read the audit log",
    "performance monitoring",
    "load BPF programs",
    "checkpoint/restore: choose pids of new processes",
];

/// Step 2 (as root, before the user switch): drop every capability not kept from the bounding
/// set, up to the first one the kernel does not know.
pub fn drop_bounding(k: &dyn Kernel, plan: &Plan) -> Result<()> {
    if plan.privileged {
        k.note("--privileged: the bounding set stays the host's");
        return Ok(());
    }
    let mut first = true;
    for cap in 0..64u64 {
        if plan.keep & (1 << cap) != 0 {
            continue;
        }
        let why = if cap as usize >= ALLOWS.len() {
            format!("is there a capability {cap}? EINVAL means no: the kernel's list ends here, and every capability not kept is gone")
        } else if first {
            format!(
                "out of the bounding set: nothing in the container can ever get it back, not even a setuid-root program ({})",
                ALLOWS[cap as usize]
            )
        } else {
            format!("gone too: {}", ALLOWS[cap as usize])
        };
        first = false;
        match k.prctl(libc::PR_CAPBSET_DROP, cap, &why) {
            Ok(()) => {}
            // Past the kernel's last capability (/proc/sys/kernel/cap_last_cap): all done.
            Err(e) if e.errno == Errno::EINVAL => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Steps 4 and 5, after the user switch: effective, permitted and inheritable (capset), and
/// the ambient set. `root`: the process is (still) uid 0.
pub fn set(k: &dyn Kernel, plan: &Plan, root: bool) -> Result<()> {
    let (sets, why) = if root {
        (
            CapSets {
                effective: plan.keep,
                permitted: plan.keep,
                inheritable: 0,
            },
            "root's effective and permitted: the kept capabilities only (execve gives root its bounding set anyway); inheritable empty, as docker (CVE-2022-24769)",
        )
    } else {
        (
            CapSets::default(),
            "a non-root user holds none (setresuid emptied permitted and effective; docker gives it none), inheritable empty too",
        )
    };
    k.capset(sets, why)?;
    k.cap_ambient(
        libc::PR_CAP_AMBIENT_CLEAR_ALL,
        0,
        "no ambient capabilities (those a non-root program keeps across execve), as docker",
    )?;
    Ok(())
}

/// Step 6: no_new_privs. From here on execve never grants more than the process has: setuid
/// bits and file capabilities are ignored. It also lets a process without CAP_SYS_ADMIN
/// install a seccomp filter.
pub fn no_new_privs(k: &dyn Kernel) -> Result<()> {
    k.prctl(
        libc::PR_SET_NO_NEW_PRIVS,
        1,
        "no_new_privs: no execve can grant more (setuid bits and file capabilities are ignored), for good",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::record::Record;
    use crate::kernel::Sys;
    use crate::security::Profile;

    const ALL_HELD: u64 = (1 << 41) - 1;
    const DOCKER: u64 = 0xa804_25fb;

    fn profile(add: &[&str], drop: &[&str]) -> Profile {
        Profile {
            cap_add: add.iter().map(|s| s.to_string()).collect(),
            cap_drop: drop.iter().map(|s| s.to_string()).collect(),
            ..Profile::default()
        }
    }

    #[test]
    fn docker_default_mask() {
        assert_eq!(mask(&DOCKER_DEFAULT), DOCKER);
        assert_eq!(keep(&Profile::default(), ALL_HELD).unwrap(), DOCKER);
    }

    #[test]
    fn names_with_or_without_cap_in_any_case() {
        for n in ["NET_ADMIN", "net_admin", "CAP_NET_ADMIN", "cap_Net_Admin"] {
            assert_eq!(
                parse(n).unwrap(),
                Name::Cap(Capability::CAP_NET_ADMIN),
                "{n}"
            );
        }
        assert_eq!(parse("all").unwrap(), Name::All);
        assert_eq!(parse("ALL").unwrap(), Name::All);
        let err = check_names(&["CHOWN".into(), "FLY".into()]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown capability \"FLY\""), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        assert!(check_names(&["CAP_ALL".into()]).is_err());
        assert!(check_names(&[]).is_ok());
    }

    #[test]
    fn add_and_drop_as_docker() {
        let k = |add: &[&str], drop: &[&str]| keep(&profile(add, drop), ALL_HELD).unwrap();
        assert_eq!(k(&["NET_ADMIN"], &[]), DOCKER | 1 << 12);
        assert_eq!(k(&[], &["chown"]), DOCKER & !1);
        assert_eq!(k(&[], &["ALL"]), 0);
        assert_eq!(k(&["SYS_TIME"], &["ALL"]), 1 << 25);
        assert_eq!(k(&["ALL"], &[]), ALL_HELD);
        assert_eq!(k(&["ALL"], &["SYS_ADMIN"]), ALL_HELD & !(1 << 21));
        // Named in both: docker drops first, then adds.
        assert_eq!(k(&["CHOWN"], &["CHOWN"]), DOCKER);
        let privileged = Profile {
            privileged: true,
            ..profile(&[], &["ALL"])
        };
        assert_eq!(keep(&privileged, 0x1ff_feff_ffff).unwrap(), 0x1ff_feff_ffff);
    }

    #[test]
    fn what_the_host_withholds_cannot_be_kept() {
        let held = ALL_HELD & !(1 << 24);
        let err = keep(&profile(&["SYS_RESOURCE"], &[]), held).unwrap_err();
        assert!(err.to_string().contains("--cap-add SYS_RESOURCE"), "{err}");
        assert_eq!(keep(&profile(&["ALL"], &[]), held).unwrap(), held);
        // The default set is cut to what we hold, silently (bit 0, CHOWN, missing here).
        assert_eq!(keep(&Profile::default(), held & !1).unwrap(), DOCKER & !1);
    }

    /// The calls of steps 1-6 for root, in order: capget, every drop up to EINVAL, capset,
    /// the ambient set, no_new_privs.
    #[test]
    fn calls_in_order() {
        let rec = Record::new();
        rec.fail_on(
            |c| matches!(c, Sys::Prctl { option, arg2: 41 } if *option == libc::PR_CAPBSET_DROP),
            Errno::EINVAL,
        );
        let p = Profile::default();
        // Record's capget fills nothing: it holds no capability, so nothing is kept.
        let plan = plan(&rec, &p).unwrap();
        assert_eq!(plan.keep, 0);
        drop_bounding(&rec, &plan).unwrap();
        set(&rec, &plan, true).unwrap();
        no_new_privs(&rec).unwrap();
        let texts: Vec<String> = rec.calls().iter().map(|c| c.text()).collect();
        assert!(texts[0].starts_with("capget("), "{texts:?}");
        assert_eq!(texts[1], "prctl(PR_CAPBSET_DROP, CAP_CHOWN)");
        assert_eq!(texts[22], "prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN)");
        assert_eq!(texts[42], "prctl(PR_CAPBSET_DROP, 0x29 /* CAP_??? */)");
        assert!(texts[43].starts_with("capset("), "{}", texts[43]);
        assert_eq!(
            texts[44],
            "prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)"
        );
        assert_eq!(texts[45], "prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)");
        assert_eq!(texts.len(), 46);
        // What is kept is never dropped.
        let rec = Record::new();
        rec.fail_on(
            |c| matches!(c, Sys::Prctl { option, arg2: 41 } if *option == libc::PR_CAPBSET_DROP),
            Errno::EINVAL,
        );
        let plan = Plan {
            keep: DOCKER,
            privileged: false,
        };
        drop_bounding(&rec, &plan).unwrap();
        let dropped: Vec<u64> = rec
            .calls()
            .iter()
            .filter_map(|c| match c.call {
                Sys::Prctl { arg2, .. } => Some(arg2),
                _ => None,
            })
            .collect();
        assert_eq!(dropped.len(), 41 - 14 + 1);
        assert!(dropped.iter().all(|c| DOCKER & (1 << c) == 0));
    }
}
