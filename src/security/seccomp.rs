//! The default seccomp filter: a BPF program the kernel runs on every system call the
//! container makes, before the call itself, to allow it, fail it with an errno, or kill.
//!
//! Capabilities decide what root may do to objects it reaches; seccomp shrinks the kernel a
//! container can reach at all. Many kernel exploits start with a rarely used call (`keyctl`,
//! `bpf`, `userfaultfd`, `io_uring_setup`, a new user namespace from `unshare`...), so the
//! filter closes those whatever the capabilities say.
//!
//! **In the spirit of docker's default profile, as a deny list.** Docker's profile
//! (moby/profiles `seccomp/default.json`) is an allow list of about 370 calls, with some calls
//! opened only when the container keeps a capability. This filter starts from the other end:
//! every call is allowed except the families docker refuses, and the same capability gates open
//! them. A call docker does not know and this list does not name (a brand new one) is allowed
//! here and refused there: that is the difference. On x86_64 it refuses, with EPERM as docker
//! does:
//! - always: the kernel keyring (`keyctl`, `add_key`, `request_key`, not namespaced),
//!   `kexec_load`, `kexec_file_load`, `userfaultfd`, `io_uring_*`, `pivot_root`,
//!   `swapon`/`swapoff`, `move_pages`/`migrate_pages`, obsolete calls (`uselib`, `_sysctl`,
//!   `ustat`, `sysfs`, `nfsservctl`, `create_module`...), `personality` other than the
//!   harmless values, `socket` of the address families docker refuses (AF_ALG, AF_VSOCK...);
//! - without CAP_SYS_ADMIN (the default): `mount`, `umount2`, the new mount API (`fsopen`,
//!   `fsmount`, `move_mount`, `open_tree`, `mount_setattr`...), `unshare`, `setns`, `clone`
//!   with a namespace flag, `bpf`, `perf_event_open`, `fanotify_init`, `quotactl`,
//!   `sethostname`, `setdomainname`, `syslog`, `lookup_dcookie`, `lsm_*`; and `clone3` fails
//!   with ENOSYS (its flags are in memory, out of the filter's sight), so libc falls back to
//!   `clone`, whose flags it can check;
//! - without the capability that opens them: `reboot` (SYS_BOOT), `init_module`,
//!   `finit_module`, `delete_module` (SYS_MODULE), `acct` (SYS_PACCT), `kcmp`,
//!   `pidfd_getfd`, `process_madvise` (SYS_PTRACE; `ptrace` itself is allowed, as docker does on
//!   kernels from 4.8), `iopl`, `ioperm` (SYS_RAWIO), `settimeofday`, `clock_settime`
//!   (SYS_TIME; `adjtimex` stays allowed as in docker: the kernel wants SYS_TIME to change
//!   anything with it), `vhangup` (SYS_TTY_CONFIG), the NUMA policy calls (SYS_NICE),
//!   `open_by_handle_at` (DAC_READ_SEARCH), `chroot` (SYS_CHROOT, in the default set).
//!
//! The architecture is checked first: a call made through another ABI (i386's `int 0x80`,
//! whose numbers mean other calls) kills the process, and x32 numbers (bit 30 set) fail with
//! ENOSYS, so no second syscall table slips past a list written for x86_64's.
//!
//! The program (see [`build`]) is a binary search on the call number for the calls refused
//! whatever their arguments, then `seccompiler`'s rules for those judged by their arguments. It
//! is built once per process and capability set, and kept: building it takes about 20 µs
//! (release build), less than reading and checking a cached copy from disk would, so there is
//! no file cache. The kernel's side, checking the program and learning which call numbers it
//! always allows, is most of the cost of the install, and grows with the path a call takes
//! through the program: hence the search rather than a list.
//!
//! `--security-opt seccomp=unconfined` and `--privileged` install nothing.

use super::Profile;
use crate::kernel::bpf::{
    jump, stmt, ARCH, AUDIT_ARCH_X86_64, JMP_JA, JMP_JEQ_K, JMP_JGE_K, LD_W_ABS, NR, RET_K,
    X32_SYSCALL_BIT,
};
use crate::kernel::{BpfInsn, Kernel};
use anyhow::{Context, Result};
use std::sync::{Arc, Mutex};

/// Capabilities docker's profile looks at, as bits of the key its programs are cached by.
const GATES: &[&str] = &[
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "SYS_NICE",
    "SYSLOG",
    "DAC_READ_SEARCH",
    "BPF",
    "PERFMON",
];

/// Does the container keep capability `cap` (a name like `SYS_ADMIN`)? The same rules as
/// the capability step itself (`caps::keep`), for a stepctr that holds everything.
pub fn keeps(p: &Profile, cap: &str) -> bool {
    let kept = super::caps::keep(p, !0).unwrap_or(0);
    match super::caps::parse(cap) {
        Ok(super::caps::Name::Cap(c)) => kept & c.bitmask() != 0,
        _ => false,
    }
}

/// The capability gates the profile opens, as a bit set (bit i: `GATES[i]` is kept).
fn gates(p: &Profile) -> u32 {
    GATES
        .iter()
        .enumerate()
        .filter(|(_, cap)| keeps(p, cap))
        .fold(0, |bits, (i, _)| bits | 1 << i)
}

fn gate_open(bits: u32, cap: &str) -> bool {
    GATES
        .iter()
        .position(|c| *c == cap)
        .is_some_and(|i| bits & (1 << i) != 0)
}

/// Programs built in this process, by capability gates (usually one).
static BUILT: Mutex<Vec<(u32, Arc<Vec<BpfInsn>>)>> = Mutex::new(Vec::new());

/// The filter for this profile: built on first use, then the same program every time.
pub fn program(p: &Profile) -> Result<Arc<Vec<BpfInsn>>> {
    let bits = gates(p);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, prog)) = built.iter().find(|(b, _)| *b == bits) {
        return Ok(prog.clone());
    }
    let prog = Arc::new(build(bits)?);
    built.push((bits, prog.clone()));
    Ok(prog)
}

/// Install the filter (unless the profile turns it off). Once it is in place it judges our own
/// calls too, so `before_exec` makes it the last one before execve when it can (see there).
pub fn install(k: &dyn Kernel, p: &Profile) -> Result<()> {
    if !p.seccomp {
        k.note(if p.privileged {
            "--privileged: no seccomp filter, every system call reaches the kernel (only capabilities and namespaces stand in the way)"
        } else {
            "seccomp=unconfined: no seccomp filter, every system call reaches the kernel (only capabilities and namespaces stand in the way)"
        });
        return Ok(());
    }
    let prog = program(p)?;
    let admin = keeps(p, "SYS_ADMIN");
    let why = if admin {
        format!(
            "the default seccomp filter ({} BPF instructions) with CAP_SYS_ADMIN's calls open: keyctl, kexec_load, userfaultfd, io_uring... now fail with EPERM",
            prog.len()
        )
    } else {
        format!(
            "the default seccomp filter ({} BPF instructions): keyctl, bpf, mount, unshare, setns, clone with CLONE_NEW*... now fail with EPERM, clone3 with ENOSYS, for this process and all it runs",
            prog.len()
        )
    };
    k.seccomp_filter(0, &prog, &why)
        .context("install the seccomp filter")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Building the program

#[cfg(target_arch = "x86_64")]
mod table {
    //! x86_64's system call numbers of the calls the filter names, by rule.

    /// Refused (EPERM) whatever the capabilities.
    pub const ALWAYS: &[(&str, i64)] = &[
        ("keyctl", libc::SYS_keyctl),
        ("add_key", libc::SYS_add_key),
        ("request_key", libc::SYS_request_key),
        ("kexec_load", libc::SYS_kexec_load),
        ("kexec_file_load", libc::SYS_kexec_file_load),
        ("userfaultfd", libc::SYS_userfaultfd),
        ("io_uring_setup", libc::SYS_io_uring_setup),
        ("io_uring_enter", libc::SYS_io_uring_enter),
        ("io_uring_register", libc::SYS_io_uring_register),
        ("pivot_root", libc::SYS_pivot_root),
        ("swapon", libc::SYS_swapon),
        ("swapoff", libc::SYS_swapoff),
        ("move_pages", libc::SYS_move_pages),
        ("migrate_pages", libc::SYS_migrate_pages),
        ("uselib", libc::SYS_uselib),
        ("_sysctl", libc::SYS__sysctl),
        ("ustat", libc::SYS_ustat),
        ("sysfs", libc::SYS_sysfs),
        ("nfsservctl", libc::SYS_nfsservctl),
        // Removed from the kernel, not in libc: x86_64's numbers.
        ("create_module", 174),
        ("get_kernel_syms", 177),
        ("query_module", 178),
        ("afs_syscall", libc::SYS_afs_syscall),
        ("tuxcall", libc::SYS_tuxcall),
        ("security", libc::SYS_security),
        ("vserver", libc::SYS_vserver),
        ("getpmsg", libc::SYS_getpmsg),
        ("putpmsg", libc::SYS_putpmsg),
    ];

    /// Refused (EPERM) unless the container keeps the capability.
    pub const GATED: &[(&str, &[(&str, i64)])] = &[
        (
            "SYS_ADMIN",
            &[
                ("mount", libc::SYS_mount),
                ("umount2", libc::SYS_umount2),
                ("fsopen", libc::SYS_fsopen),
                ("fsconfig", libc::SYS_fsconfig),
                ("fsmount", libc::SYS_fsmount),
                ("fspick", libc::SYS_fspick),
                ("move_mount", libc::SYS_move_mount),
                ("open_tree", libc::SYS_open_tree),
                ("mount_setattr", libc::SYS_mount_setattr),
                ("unshare", libc::SYS_unshare),
                ("setns", libc::SYS_setns),
                ("fanotify_init", libc::SYS_fanotify_init),
                ("lookup_dcookie", libc::SYS_lookup_dcookie),
                ("quotactl", libc::SYS_quotactl),
                ("quotactl_fd", libc::SYS_quotactl_fd),
                ("sethostname", libc::SYS_sethostname),
                ("setdomainname", libc::SYS_setdomainname),
                // Not in libc yet: Linux 6.8's numbers.
                ("lsm_get_self_attr", 459),
                ("lsm_set_self_attr", 460),
                ("lsm_list_modules", 461),
            ],
        ),
        ("SYS_BOOT", &[("reboot", libc::SYS_reboot)]),
        ("SYS_CHROOT", &[("chroot", libc::SYS_chroot)]),
        (
            "SYS_MODULE",
            &[
                ("init_module", libc::SYS_init_module),
                ("finit_module", libc::SYS_finit_module),
                ("delete_module", libc::SYS_delete_module),
            ],
        ),
        ("SYS_PACCT", &[("acct", libc::SYS_acct)]),
        (
            "SYS_PTRACE",
            &[
                ("kcmp", libc::SYS_kcmp),
                ("pidfd_getfd", libc::SYS_pidfd_getfd),
                ("process_madvise", libc::SYS_process_madvise),
            ],
        ),
        (
            "SYS_RAWIO",
            &[("iopl", libc::SYS_iopl), ("ioperm", libc::SYS_ioperm)],
        ),
        (
            "SYS_TIME",
            &[
                ("settimeofday", libc::SYS_settimeofday),
                ("clock_settime", libc::SYS_clock_settime),
            ],
        ),
        ("SYS_TTY_CONFIG", &[("vhangup", libc::SYS_vhangup)]),
        (
            "SYS_NICE",
            &[
                ("get_mempolicy", libc::SYS_get_mempolicy),
                ("mbind", libc::SYS_mbind),
                ("set_mempolicy", libc::SYS_set_mempolicy),
                ("set_mempolicy_home_node", libc::SYS_set_mempolicy_home_node),
            ],
        ),
        (
            "DAC_READ_SEARCH",
            &[("open_by_handle_at", libc::SYS_open_by_handle_at)],
        ),
    ];

    /// Opened by CAP_SYS_ADMIN or by a capability of their own.
    pub const ADMIN_OR: &[(&str, &str, i64)] = &[
        ("BPF", "bpf", libc::SYS_bpf),
        ("PERFMON", "perf_event_open", libc::SYS_perf_event_open),
        ("SYSLOG", "syslog", libc::SYS_syslog),
    ];

    /// The namespace flags `clone` may not carry without CAP_SYS_ADMIN (docker's mask
    /// 0x7e020000).
    pub const CLONE_NS_FLAGS: &[i32] = &[
        libc::CLONE_NEWNS,
        libc::CLONE_NEWCGROUP,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
    ];

    /// The `personality` values docker allows: PER_LINUX, UNAME26, PER_LINUX32,
    /// UNAME26|PER_LINUX32, and 0xffffffff (a query).
    pub const PERSONALITIES: &[u64] = &[0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

    /// The address families docker refuses below 46 (AF_DECnet, AF_ECONET, AF_ATMSVC, AF_IRDA,
    /// AF_WANPIPE, AF_ISDN, AF_CAIF, AF_ALG, AF_VSOCK); 46 and above are refused too.
    pub const SOCKET_FAMILIES: &[u64] = &[12, 19, 20, 23, 25, 34, 37, 38, 40];
    pub const SOCKET_FAMILY_END: u64 = 46;
}

/// The program, in four parts:
/// 1. the ABI: `arch` must be x86_64 (else kill), and `nr` must not be an x32 number (ENOSYS);
/// 2. the calls refused whatever their arguments: a binary search on the call number (a few
///    comparisons per call, where a list would take one per entry), ending in `ret EPERM`,
///    `ret ENOSYS`, or on to part 3;
/// 3. the calls judged by their arguments (`clone`'s flags, `socket`'s family,
///    `personality`'s value), built by `seccompiler` (which compares 32 and 64-bit arguments
///    for us): EPERM on a match;
/// 4. allow.
///
/// The kernel runs a filter on every call, and when it is installed it also runs it once per
/// call number to learn which ones are always allowed (those then skip the filter): a short
/// path per number keeps both cheap (the install takes about 100 µs, where seccompiler's plain
/// list of the same ~90 calls took 250 µs).
#[cfg(target_arch = "x86_64")]
fn build(bits: u32) -> Result<Vec<BpfInsn>> {
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition as Cond,
        SeccompFilter, SeccompRule, TargetArch,
    };
    use std::collections::BTreeMap;
    use table::*;

    // Part 2: by number only.
    let mut by_nr: BTreeMap<u32, Verdict> = BTreeMap::new();
    for (_, nr) in ALWAYS {
        by_nr.insert(*nr as u32, Verdict::Eperm);
    }
    for (cap, calls) in GATED {
        if !gate_open(bits, cap) {
            for (_, nr) in *calls {
                by_nr.insert(*nr as u32, Verdict::Eperm);
            }
        }
    }
    let admin = gate_open(bits, "SYS_ADMIN");
    for (cap, _, nr) in ADMIN_OR {
        if !admin && !gate_open(bits, cap) {
            by_nr.insert(*nr as u32, Verdict::Eperm);
        }
    }
    if !admin {
        by_nr.insert(libc::SYS_clone3 as u32, Verdict::Enosys);
    }

    // Part 3: by arguments.
    let cond = |arg: u8, op: Op, value: u64| Cond::new(arg, Len::Dword, op, value);
    let mut by_args: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    // personality(2): anything but the harmless values (all conditions of a rule must hold).
    let other = PERSONALITIES
        .iter()
        .map(|v| cond(0, Op::Ne, *v))
        .collect::<Result<Vec<_>, _>>()?;
    by_args.insert(libc::SYS_personality, vec![SeccompRule::new(other)?]);
    // socket(2) of a refused address family (any one rule matching is enough).
    let mut families = SOCKET_FAMILIES
        .iter()
        .map(|f| SeccompRule::new(vec![cond(0, Op::Eq, *f)?]))
        .collect::<Result<Vec<_>, _>>()?;
    families.push(SeccompRule::new(vec![cond(0, Op::Ge, SOCKET_FAMILY_END)?])?);
    by_args.insert(libc::SYS_socket, families);
    if !admin {
        // clone(2) with any namespace flag: one rule per flag.
        let rules = CLONE_NS_FLAGS
            .iter()
            .map(|f| {
                let f = *f as u32 as u64;
                SeccompRule::new(vec![cond(0, Op::MaskedEq(f), f)?])
            })
            .collect::<Result<Vec<_>, _>>()?;
        by_args.insert(libc::SYS_clone, rules);
    }
    let filter = SeccompFilter::new(
        by_args,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        TargetArch::x86_64,
    )?;
    let by_args: seccompiler::BpfProgram = filter.try_into()?;
    // seccompiler starts with its own architecture check (3 instructions), done in part 1.
    let by_args = &by_args[3..];

    // Part 2's search, with its exits as symbols until its length is known.
    let entries: Vec<(u32, Verdict)> = by_nr.into_iter().collect();
    let mut tree = Vec::new();
    search(&entries, &mut tree);
    let first = 6; // after part 1
    let eperm = first + tree.len();
    let (enosys, miss) = (eperm + 1, eperm + 2);
    let mut out = vec![
        stmt(LD_W_ABS, ARCH),
        jump(JMP_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(LD_W_ABS, NR),
        jump(JMP_JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(RET_K, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    ];
    for (i, node) in tree.into_iter().enumerate() {
        let at = first + i;
        let rel = |to: To| -> Result<usize> {
            let target = match to {
                To::Node(n) => first + n,
                To::Verdict(Verdict::Eperm) => eperm,
                To::Verdict(Verdict::Enosys) => enosys,
                To::Miss => miss,
            };
            Ok(target - (at + 1))
        };
        let short = |to: To| -> Result<u8> {
            u8::try_from(rel(to)?).context("seccomp filter: a jump longer than 255 instructions")
        };
        out.push(match node {
            Node::IfEq(nr, v) => jump(JMP_JEQ_K, nr, short(To::Verdict(v))?, 0),
            Node::IfAtLeast(nr, n) => jump(JMP_JGE_K, nr, short(To::Node(n))?, 0),
            Node::ToMiss => stmt(JMP_JA, rel(To::Miss)? as u32),
        });
    }
    out.push(stmt(RET_K, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32));
    out.push(stmt(RET_K, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
    out.extend(by_args.iter().map(|i| jump(i.code, i.k, i.jt, i.jf)));
    Ok(out)
}

#[cfg(not(target_arch = "x86_64"))]
fn build(_bits: u32) -> Result<Vec<BpfInsn>> {
    anyhow::bail!(
        "the default seccomp filter is written for x86_64 only; use --security-opt seccomp=unconfined here"
    )
}

/// What a call refused by its number gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Eperm,
    Enosys,
}

/// Where a jump of the search goes.
#[derive(Debug, Clone, Copy)]
enum To {
    Node(usize),
    Verdict(Verdict),
    Miss,
}

/// One instruction of the search (the accumulator holds the call number).
#[derive(Debug, Clone, Copy)]
enum Node {
    /// `jeq nr`: this number gets this verdict.
    IfEq(u32, Verdict),
    /// `jge nr`: numbers from `nr` up are searched from node `usize` on.
    IfAtLeast(u32, usize),
    /// `ja`: not found, on to the rules on arguments.
    ToMiss,
}

/// A binary search over sorted `entries`: split on the middle number until four or fewer
/// remain, then compare each.
fn search(entries: &[(u32, Verdict)], out: &mut Vec<Node>) {
    if entries.len() <= 4 {
        for (nr, v) in entries {
            out.push(Node::IfEq(*nr, *v));
        }
        out.push(Node::ToMiss);
        return;
    }
    let mid = entries.len() / 2;
    let at = out.len();
    out.push(Node::IfAtLeast(entries[mid].0, 0));
    search(&entries[..mid], out);
    let right = out.len();
    out[at] = Node::IfAtLeast(entries[mid].0, right);
    search(&entries[mid..], out);
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    fn verdict(prog: &[BpfInsn], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        crate::kernel::bpf::run_bpf(prog, arch, nr, args)
    }

    const X86_64: u32 = 0xc000_003e;
    const I386: u32 = 0x4000_0003;
    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;

    fn call(prog: &[BpfInsn], nr: i64, arg0: u64) -> u32 {
        verdict(prog, X86_64, nr as u32, [arg0, 0, 0, 0, 0, 0])
    }

    #[test]
    fn default_profile_denies_the_dangerous_families_and_allows_the_rest() {
        let prog = program(&Profile::default()).unwrap();
        assert!(prog.len() < 1024, "{} instructions", prog.len());
        for nr in [
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_request_key,
            libc::SYS_kexec_load,
            libc::SYS_open_by_handle_at,
            libc::SYS_bpf,
            libc::SYS_perf_event_open,
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_delete_module,
            libc::SYS_reboot,
            libc::SYS_swapon,
            libc::SYS_acct,
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_pivot_root,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_fsopen,
            libc::SYS_move_mount,
            libc::SYS_open_tree,
            libc::SYS_mount_setattr,
            libc::SYS_userfaultfd,
            libc::SYS_settimeofday,
            libc::SYS_clock_settime,
            libc::SYS_io_uring_setup,
        ] {
            assert_eq!(call(&prog, nr, 0), EPERM, "syscall {nr}");
        }
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_openat,
            libc::SYS_execve,
            libc::SYS_ptrace,
            libc::SYS_chroot,
            libc::SYS_adjtimex,
            libc::SYS_seccomp,
            libc::SYS_exit_group,
        ] {
            assert_eq!(call(&prog, nr, 0), ALLOW, "syscall {nr}");
        }
        // clone: a fork or a thread yes, a new namespace no; clone3 is not there (ENOSYS).
        let fork = (libc::CLONE_CHILD_CLEARTID | libc::CLONE_CHILD_SETTID | libc::SIGCHLD) as u64;
        assert_eq!(call(&prog, libc::SYS_clone, fork), ALLOW);
        let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
        assert_eq!(call(&prog, libc::SYS_clone, thread), ALLOW);
        for f in table::CLONE_NS_FLAGS {
            assert_eq!(call(&prog, libc::SYS_clone, fork | *f as u32 as u64), EPERM);
        }
        assert_eq!(call(&prog, libc::SYS_clone3, 0), ENOSYS);
        // personality: the query and PER_LINUX yes, READ_IMPLIES_EXEC (0x400000) no.
        assert_eq!(call(&prog, libc::SYS_personality, 0xffff_ffff), ALLOW);
        assert_eq!(call(&prog, libc::SYS_personality, 0), ALLOW);
        assert_eq!(call(&prog, libc::SYS_personality, 0x40_0000), EPERM);
        // socket: AF_INET, AF_UNIX, AF_NETLINK yes; AF_ALG, AF_VSOCK, 46+ no.
        for af in [
            libc::AF_INET,
            libc::AF_UNIX,
            libc::AF_NETLINK,
            libc::AF_PACKET,
        ] {
            assert_eq!(call(&prog, libc::SYS_socket, af as u64), ALLOW);
        }
        for af in [libc::AF_ALG, libc::AF_VSOCK, 46, 1000] {
            assert_eq!(call(&prog, libc::SYS_socket, af as u64), EPERM);
        }
        // Another ABI: i386's numbers are killed, x32's fail.
        assert_eq!(
            verdict(&prog, I386, 0, [0; 6]),
            libc::SECCOMP_RET_KILL_PROCESS
        );
        let x32_keyctl = X32_SYSCALL_BIT as i64 + libc::SYS_keyctl;
        assert_eq!(call(&prog, x32_keyctl, 0), ENOSYS);
    }

    /// Every call number, under several capability sets, gets what the tables say.
    #[test]
    fn every_call_number_gets_what_the_tables_say() {
        let profiles = [
            Profile::default(),
            Profile {
                cap_add: vec!["SYS_ADMIN".into(), "SYS_TIME".into()],
                cap_drop: vec!["SYS_CHROOT".into()],
                ..Profile::default()
            },
            Profile {
                cap_add: vec!["ALL".into()],
                ..Profile::default()
            },
            Profile {
                cap_drop: vec!["ALL".into()],
                cap_add: vec!["BPF".into()],
                ..Profile::default()
            },
        ];
        for p in profiles {
            let prog = program(&p).unwrap();
            let admin = keeps(&p, "SYS_ADMIN");
            let want = |nr: i64| {
                let mut refused = table::ALWAYS.iter().any(|(_, n)| *n == nr);
                for (cap, calls) in table::GATED {
                    refused |= !keeps(&p, cap) && calls.iter().any(|(_, n)| *n == nr);
                }
                for (cap, _, n) in table::ADMIN_OR {
                    refused |= *n == nr && !admin && !keeps(&p, cap);
                }
                if nr == libc::SYS_clone3 && !admin {
                    ENOSYS
                } else if refused {
                    EPERM
                } else {
                    ALLOW
                }
            };
            for nr in 0..512 {
                assert_eq!(call(&prog, nr, 0), want(nr), "syscall {nr}, {p:?}");
            }
        }
    }

    #[test]
    fn capabilities_open_their_gates() {
        let admin = Profile {
            cap_add: vec!["CAP_SYS_ADMIN".into()],
            ..Profile::default()
        };
        let prog = program(&admin).unwrap();
        for nr in [
            libc::SYS_mount,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_bpf,
        ] {
            assert_eq!(call(&prog, nr, 0), ALLOW, "syscall {nr}");
        }
        let newuser = (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64;
        assert_eq!(call(&prog, libc::SYS_clone, newuser), ALLOW);
        assert_eq!(call(&prog, libc::SYS_clone3, 0), ALLOW);
        assert_eq!(call(&prog, libc::SYS_keyctl, 0), EPERM);
        assert_eq!(call(&prog, libc::SYS_reboot, 0), EPERM);

        let time = Profile {
            cap_add: vec!["sys_time".into()],
            cap_drop: vec!["SYS_CHROOT".into()],
            ..Profile::default()
        };
        let prog = program(&time).unwrap();
        assert_eq!(call(&prog, libc::SYS_settimeofday, 0), ALLOW);
        assert_eq!(call(&prog, libc::SYS_chroot, 0), EPERM);
        assert_eq!(call(&prog, libc::SYS_mount, 0), EPERM);
    }

    #[test]
    fn capability_sets_follow_docker() {
        let p = |add: &[&str], drop: &[&str]| Profile {
            cap_add: add.iter().map(|s| s.to_string()).collect(),
            cap_drop: drop.iter().map(|s| s.to_string()).collect(),
            ..Profile::default()
        };
        assert!(keeps(&p(&[], &[]), "SYS_CHROOT"));
        assert!(!keeps(&p(&[], &[]), "SYS_ADMIN"));
        assert!(!keeps(&p(&[], &["ALL"]), "SYS_CHROOT"));
        assert!(keeps(&p(&["sys_admin"], &["ALL"]), "SYS_ADMIN"));
        assert!(keeps(&p(&["ALL"], &["SYS_TIME"]), "SYS_ADMIN"));
        assert!(!keeps(&p(&["ALL"], &["SYS_TIME"]), "SYS_TIME"));
        let privileged = Profile {
            privileged: true,
            ..Profile::default()
        };
        assert!(keeps(&privileged, "SYS_MODULE"));
    }

    #[test]
    fn built_once_per_process_and_capability_set() {
        let a = program(&Profile::default()).unwrap();
        let b = program(&Profile::default()).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let t = std::time::Instant::now();
        let _ = build(gates(&Profile::default())).unwrap();
        eprintln!("building the default filter took {:?}", t.elapsed());
    }

    #[test]
    fn install_is_one_narrated_call_or_a_note() {
        use crate::kernel::record::Record;
        let rec = Record::new();
        install(&rec, &Profile::default()).unwrap();
        let calls = rec.calls();
        assert_eq!(calls.len(), 1);
        assert!(matches!(
            &calls[0].call,
            crate::kernel::Sys::SeccompFilter { flags: 0, filter } if filter.len() > 100
        ));
        assert!(calls[0]
            .text()
            .starts_with("seccomp(SECCOMP_SET_MODE_FILTER, 0, {len="));
        let rec = Record::new();
        let off = Profile {
            seccomp: false,
            ..Profile::default()
        };
        install(&rec, &off).unwrap();
        assert!(rec.calls().is_empty());
    }
}
