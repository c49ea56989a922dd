//! `linux.seccomp` of config.json (runtime-spec config-linux.md, "Seccomp") compiled into the
//! classic-BPF program that `seccomp(SECCOMP_SET_MODE_FILTER)` installs, as runc does with
//! libseccomp; here the argument comparisons come from the `seccompiler` crate, as for the
//! default filter (`crate::security::seccomp`).
//!
//! A profile is a default action and a list of rules: call names, an action, and optional
//! comparisons on the arguments. On x86_64 the program is:
//! 1. the ABI: a call made through another one (i386's `int 0x80`, whose numbers mean other
//!    calls) kills the process, as libseccomp's "bad architecture" action does; an x32 call
//!    (number with bit 30 set) fails with ENOSYS, as on a kernel without x32. Only x86_64's
//!    table is compiled, even when `architectures` also lists SCMP_ARCH_X86 or SCMP_ARCH_X32
//!    (runc would also filter i386 and x32 calls by their own numbers: here they never run);
//! 2. runc's ENOSYS stub: when the default action refuses (not ALLOW, LOG or TRACE) and
//!    `architectures` names x86_64, a call numbered above the highest one the profile names
//!    fails with ENOSYS, not the default errno: the profile is older than the call, and ENOSYS
//!    is what makes libc fall back (`clone3` → `clone`, `faccessat2` → `faccessat`);
//! 3. a binary search on the call number (about log2(n) comparisons, not one per rule), whose
//!    leaves return the action of a call judged by its number alone, or jump to its block;
//! 4. the blocks of the calls judged by their arguments: each rule in the profile's order,
//!    its comparisons ANDed (seccompiler's 64-bit comparisons), the first rule that matches
//!    decides; then the call's rule without arguments if it has one, else the default action.
//!
//! What runc does and this does too: names unknown on x86_64 are skipped (listed in
//! [`Compiled::skipped`], for a note); a rule whose action is the default action is dropped;
//! a rule comparing one argument twice becomes one rule per comparison (ORed, runc's fallback
//! for libseccomp); `errnoRet`/`defaultErrnoRet` only with SCMP_ACT_ERRNO and SCMP_ACT_TRACE
//! (EPERM when absent); SCMP_ACT_KILL is SCMP_ACT_KILL_THREAD; `flags` are passed to
//! seccomp(2) ([`Compiled::flags`]). Refused with an error: SCMP_ACT_NOTIFY, `listenerPath`,
//! `listenerMetadata` (no seccomp agent), an `architectures` list without any x86 one.
//! SCMP_ACT_TRACE returns SECCOMP_RET_TRACE with the errno as its data: a tracer (strace
//! --seccomp-bpf) sees the call, and without one the kernel fails it with ENOSYS.

use crate::kernel::bpf::{
    jump, stmt, ARCH, AUDIT_ARCH_X86_64, JMP_JA, JMP_JEQ_K, JMP_JGE_K, JMP_JGT_K, LD_W_ABS, NR,
    RET_K, X32_SYSCALL_BIT,
};
use crate::kernel::BpfInsn;
use anyhow::{bail, Result};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction as Action, LinuxSeccompFilterFlag as Flag,
    LinuxSeccompOperator as Op,
};
use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};
use std::collections::BTreeMap;

/// A compiled profile: the program, the flags for seccomp(2), the names skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// The program, for `Sys::SeccompFilter { filter, .. }`.
    pub filter: Vec<BpfInsn>,
    /// SECCOMP_FILTER_FLAG_* from `flags`, for `Sys::SeccompFilter { flags, .. }`.
    pub flags: u32,
    /// Call names of the profile that x86_64 does not have (skipped, as runc does).
    pub skipped: Vec<String>,
}

/// The profile's program (see [`build`] for the flags and the names skipped).
pub fn compile(s: &LinuxSeccomp) -> Result<Vec<BpfInsn>> {
    Ok(build(s)?.filter)
}

/// The SECCOMP_FILTER_FLAG_* bits of `flags` (LOG, SPEC_ALLOW, TSYNC: all passed as they are).
pub fn flags(s: &LinuxSeccomp) -> u32 {
    s.flags()
        .iter()
        .flatten()
        .map(|f| match f {
            Flag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            Flag::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            Flag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
        } as u32)
        .fold(0, |a, b| a | b)
}

/// The number of system call `name` on x86_64.
pub fn syscall_nr(name: &str) -> Option<u32> {
    SYSCALLS
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| SYSCALLS[i].1 as u32)
}

/// The kernel's limit on a program's length (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;

fn errno_ret(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | e as u32
}

/// What the kernel returns for `action` (with `errno` from errnoRet/defaultErrnoRet);
/// `what` names the field for errors.
fn ret(action: Action, errno: Option<u32>, what: &str) -> Result<u32> {
    use seccompiler::SeccompAction as S;
    let data = || -> Result<u32> {
        let e = errno.unwrap_or(libc::EPERM as u32);
        if e > 0xffff {
            bail!("config.json: {what}: errno {e} does not fit seccomp's 16 bits of return data");
        }
        Ok(e)
    };
    if errno.is_some() && !matches!(action, Action::ScmpActErrno | Action::ScmpActTrace) {
        bail!("config.json: {what}: an errno is only for SCMP_ACT_ERRNO and SCMP_ACT_TRACE, not {action}");
    }
    let a = match action {
        Action::ScmpActAllow => S::Allow,
        Action::ScmpActErrno => S::Errno(data()?),
        Action::ScmpActKill | Action::ScmpActKillThread => S::KillThread,
        Action::ScmpActKillProcess => S::KillProcess,
        Action::ScmpActTrap => S::Trap,
        Action::ScmpActLog => S::Log,
        Action::ScmpActTrace => S::Trace(data()?),
        Action::ScmpActNotify => bail!(
            "config.json: {what}: SCMP_ACT_NOTIFY is not supported by stepctr (no seccomp agent)"
        ),
    };
    Ok(u32::from(a))
}

/// One comparison of a rule, for seccompiler (the whole 64-bit argument, as libseccomp
/// compares on x86_64).
fn condition(a: &oci_spec::runtime::LinuxSeccompArg, what: &str) -> Result<SeccompCondition> {
    let index = a.index();
    if index > 5 {
        bail!("config.json: {what}: argument index {index}: a system call has 6 (0 to 5)");
    }
    let (op, value) = match a.op() {
        Op::ScmpCmpNe => (SeccompCmpOp::Ne, a.value()),
        Op::ScmpCmpLt => (SeccompCmpOp::Lt, a.value()),
        Op::ScmpCmpLe => (SeccompCmpOp::Le, a.value()),
        Op::ScmpCmpEq => (SeccompCmpOp::Eq, a.value()),
        Op::ScmpCmpGe => (SeccompCmpOp::Ge, a.value()),
        Op::ScmpCmpGt => (SeccompCmpOp::Gt, a.value()),
        // value is the mask, valueTwo what the masked argument must equal.
        Op::ScmpCmpMaskedEq => (
            SeccompCmpOp::MaskedEq(a.value()),
            a.value_two().unwrap_or(0),
        ),
    };
    SeccompCondition::new(index as u8, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| anyhow::anyhow!("config.json: {what}: {e}"))
}

/// Where the search sends a call number.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// Return this (the call is judged by its number).
    Ret(u32),
    /// Its rules on arguments start at this label.
    Block(usize),
}

/// The program before jumps to labels are resolved.
enum Asm {
    I(BpfInsn),
    /// `ja` to a label (32-bit offset: no distance limit).
    Ja(usize),
    Label(usize),
}

/// The binary search over sorted `entries`: `jge` on the middle number until four or fewer
/// remain, then `jeq` on each, and the default action when none is the call.
fn search(entries: &[(u32, Target)], default: u32, out: &mut Vec<Asm>) {
    if entries.len() <= 4 {
        for (nr, t) in entries {
            out.push(Asm::I(jump(JMP_JEQ_K, *nr, 0, 1)));
            out.push(match t {
                Target::Ret(v) => Asm::I(stmt(RET_K, *v)),
                Target::Block(l) => Asm::Ja(*l),
            });
        }
        out.push(Asm::I(stmt(RET_K, default)));
        return;
    }
    let mid = entries.len() / 2;
    let mut left = Vec::new();
    search(&entries[..mid], default, &mut left);
    let n = left.len(); // no labels in the search
    match u8::try_from(n) {
        Ok(n) => out.push(Asm::I(jump(JMP_JGE_K, entries[mid].0, n, 0))),
        Err(_) => {
            // Too far for a conditional jump: through a `ja` (and one more instruction).
            out.push(Asm::I(jump(JMP_JGE_K, entries[mid].0, 0, 1)));
            out.push(Asm::I(stmt(JMP_JA, n as u32)));
        }
    }
    out.extend(left);
    search(&entries[mid..], default, out);
}

/// The rules of one call number.
#[derive(Default)]
struct Call {
    /// Rules with comparisons, in the profile's order, with what they return.
    by_args: Vec<(SeccompRule, u32)>,
    /// The rule without arguments (the first one, if several).
    plain: Option<u32>,
}

/// Compile the profile (see the module's documentation for the program's shape).
pub fn build(s: &LinuxSeccomp) -> Result<Compiled> {
    if s.listener_path().is_some() {
        bail!("config.json: linux.seccomp.listenerPath is not supported by stepctr (no seccomp agent)");
    }
    if s.listener_metadata()
        .as_deref()
        .is_some_and(|m| !m.is_empty())
    {
        bail!("config.json: linux.seccomp.listenerMetadata is not supported by stepctr (no seccomp agent)");
    }
    let arches = s.architectures().as_deref().unwrap_or_default();
    let x86 = |a: &Arch| {
        matches!(
            a,
            Arch::ScmpArchNative | Arch::ScmpArchX86_64 | Arch::ScmpArchX86 | Arch::ScmpArchX32
        )
    };
    if !arches.is_empty() && !arches.iter().any(x86) {
        let names: Vec<String> = arches.iter().map(|a| a.to_string()).collect();
        bail!(
            "config.json: linux.seccomp.architectures is {}: none of them is this machine's (x86_64)",
            names.join(", ")
        );
    }
    let default = ret(
        s.default_action(),
        s.default_errno_ret(),
        "linux.seccomp.defaultAction",
    )?;

    let mut calls: BTreeMap<u32, Call> = BTreeMap::new();
    let mut skipped: Vec<String> = Vec::new();
    let mut highest = 0;
    for (i, rule) in s.syscalls().iter().flatten().enumerate() {
        let what = format!("linux.seccomp.syscalls[{i}]");
        let act = ret(rule.action(), rule.errno_ret(), &what)?;
        let args = rule.args().as_deref().unwrap_or_default();
        let conds = args
            .iter()
            .map(|a| condition(a, &what))
            .collect::<Result<Vec<_>>>()?;
        // One argument compared twice: one rule per comparison, as runc does.
        let twice = (0..6).any(|i| args.iter().filter(|a| a.index() == i).count() > 1);
        let rules: Vec<Vec<SeccompCondition>> = if twice {
            conds.into_iter().map(|c| vec![c]).collect()
        } else if conds.is_empty() {
            vec![]
        } else {
            vec![conds]
        };
        for name in rule.names() {
            let Some(nr) = syscall_nr(name) else {
                if !skipped.contains(name) {
                    skipped.push(name.clone());
                }
                continue;
            };
            highest = highest.max(nr);
            if act == default {
                continue; // nothing to say: the default says it
            }
            let call = calls.entry(nr).or_default();
            if rules.is_empty() {
                call.plain.get_or_insert(act);
            }
            for conds in &rules {
                let r = SeccompRule::new(conds.clone())
                    .map_err(|e| anyhow::anyhow!("config.json: {what}: {e}"))?;
                call.by_args.push((r, act));
            }
        }
    }

    let mut out = vec![
        Asm::I(stmt(LD_W_ABS, ARCH)),
        Asm::I(jump(JMP_JEQ_K, AUDIT_ARCH_X86_64, 1, 0)),
        Asm::I(stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS)),
        Asm::I(stmt(LD_W_ABS, NR)),
        Asm::I(jump(JMP_JGE_K, X32_SYSCALL_BIT, 0, 1)),
        Asm::I(stmt(RET_K, errno_ret(libc::ENOSYS))),
    ];
    let permissive = matches!(
        s.default_action(),
        Action::ScmpActAllow | Action::ScmpActLog | Action::ScmpActTrace
    );
    let native = arches
        .iter()
        .any(|a| matches!(a, Arch::ScmpArchNative | Arch::ScmpArchX86_64));
    if !permissive && native && highest > 0 && default != errno_ret(libc::ENOSYS) {
        out.push(Asm::I(jump(JMP_JGT_K, highest, 0, 1)));
        out.push(Asm::I(stmt(RET_K, errno_ret(libc::ENOSYS))));
    }

    let mut entries = Vec::new();
    let mut blocks = Vec::new();
    for (nr, call) in calls {
        let fallback = call.plain.unwrap_or(default);
        if call.by_args.is_empty() {
            entries.push((nr, Target::Ret(fallback)));
            continue;
        }
        let label = entries.len();
        entries.push((nr, Target::Block(label)));
        blocks.push(Asm::Label(label));
        for (rule, act) in call.by_args {
            // seccompiler's rule: a failed comparison jumps just past the `ret` that follows
            // it, to the next rule. Its first two instructions, its way in (`ja 1`) and out
            // (`ja` past all the call's rules, from seccompiler's `jeq` on the number), are
            // not used here: left in, the last `ja out` would jump past the program's end,
            // which the kernel refuses even unreached. (Six comparisons at most, one per
            // argument, never need seccompiler's relay jumps, which also jump out.)
            let prog: seccompiler::BpfProgram = rule.into();
            debug_assert_eq!((prog[0].code, prog[0].k), (JMP_JA, 1));
            blocks.extend(
                prog[2..]
                    .iter()
                    .map(|i| Asm::I(jump(i.code, i.k, i.jt, i.jf))),
            );
            blocks.push(Asm::I(stmt(RET_K, act)));
        }
        blocks.push(Asm::I(stmt(RET_K, fallback)));
    }
    if entries.is_empty() {
        out.push(Asm::I(stmt(RET_K, default)));
    } else {
        search(&entries, default, &mut out);
    }
    out.extend(blocks);

    // Labels to addresses, then `ja` offsets.
    let mut at = BTreeMap::new();
    let mut n = 0usize;
    for a in &out {
        match a {
            Asm::Label(l) => {
                at.insert(*l, n);
            }
            _ => n += 1,
        }
    }
    if n > MAX_INSNS {
        bail!(
            "config.json: linux.seccomp compiles to {n} BPF instructions, more than the kernel's {MAX_INSNS}"
        );
    }
    let mut filter = Vec::with_capacity(n);
    for a in out {
        match a {
            Asm::I(i) => filter.push(i),
            Asm::Ja(l) => {
                let to = at[&l];
                let off = to - (filter.len() + 1);
                filter.push(stmt(JMP_JA, off as u32));
            }
            Asm::Label(_) => {}
        }
    }
    Ok(Compiled {
        filter,
        flags: flags(s),
        skipped,
    })
}

/// x86_64's system calls by name (sorted by name, for the binary search): libc's numbers,
/// and literal ones for the calls this libc does not name (the obsolete `create_module`,
/// `get_kernel_syms`, `query_module`; those added since Linux 6.5).
#[rustfmt::skip]
pub const SYSCALLS: &[(&str, i64)] = &[
    ("_sysctl", libc::SYS__sysctl),
    ("accept", libc::SYS_accept),
    ("accept4", libc::SYS_accept4),
    ("access", libc::SYS_access),
    ("acct", libc::SYS_acct),
    ("add_key", libc::SYS_add_key),
    ("adjtimex", libc::SYS_adjtimex),
    ("afs_syscall", libc::SYS_afs_syscall),
    ("alarm", libc::SYS_alarm),
    ("arch_prctl", libc::SYS_arch_prctl),
    ("bind", libc::SYS_bind),
    ("bpf", libc::SYS_bpf),
    ("brk", libc::SYS_brk),
    ("cachestat", 451),
    ("capget", libc::SYS_capget),
    ("capset", libc::SYS_capset),
    ("chdir", libc::SYS_chdir),
    ("chmod", libc::SYS_chmod),
    ("chown", libc::SYS_chown),
    ("chroot", libc::SYS_chroot),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("clock_getres", libc::SYS_clock_getres),
    ("clock_gettime", libc::SYS_clock_gettime),
    ("clock_nanosleep", libc::SYS_clock_nanosleep),
    ("clock_settime", libc::SYS_clock_settime),
    ("clone", libc::SYS_clone),
    ("clone3", libc::SYS_clone3),
    ("close", libc::SYS_close),
    ("close_range", libc::SYS_close_range),
    ("connect", libc::SYS_connect),
    ("copy_file_range", libc::SYS_copy_file_range),
    ("creat", libc::SYS_creat),
    ("create_module", 174),
    ("delete_module", libc::SYS_delete_module),
    ("dup", libc::SYS_dup),
    ("dup2", libc::SYS_dup2),
    ("dup3", libc::SYS_dup3),
    ("epoll_create", libc::SYS_epoll_create),
    ("epoll_create1", libc::SYS_epoll_create1),
    ("epoll_ctl", libc::SYS_epoll_ctl),
    ("epoll_ctl_old", libc::SYS_epoll_ctl_old),
    ("epoll_pwait", libc::SYS_epoll_pwait),
    ("epoll_pwait2", libc::SYS_epoll_pwait2),
    ("epoll_wait", libc::SYS_epoll_wait),
    ("epoll_wait_old", libc::SYS_epoll_wait_old),
    ("eventfd", libc::SYS_eventfd),
    ("eventfd2", libc::SYS_eventfd2),
    ("execve", libc::SYS_execve),
    ("execveat", libc::SYS_execveat),
    ("exit", libc::SYS_exit),
    ("exit_group", libc::SYS_exit_group),
    ("faccessat", libc::SYS_faccessat),
    ("faccessat2", libc::SYS_faccessat2),
    ("fadvise64", libc::SYS_fadvise64),
    ("fallocate", libc::SYS_fallocate),
    ("fanotify_init", libc::SYS_fanotify_init),
    ("fanotify_mark", libc::SYS_fanotify_mark),
    ("fchdir", libc::SYS_fchdir),
    ("fchmod", libc::SYS_fchmod),
    ("fchmodat", libc::SYS_fchmodat),
    ("fchmodat2", libc::SYS_fchmodat2),
    ("fchown", libc::SYS_fchown),
    ("fchownat", libc::SYS_fchownat),
    ("fcntl", libc::SYS_fcntl),
    ("fdatasync", libc::SYS_fdatasync),
    ("fgetxattr", libc::SYS_fgetxattr),
    ("file_getattr", 468),
    ("file_setattr", 469),
    ("finit_module", libc::SYS_finit_module),
    ("flistxattr", libc::SYS_flistxattr),
    ("flock", libc::SYS_flock),
    ("fork", libc::SYS_fork),
    ("fremovexattr", libc::SYS_fremovexattr),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsetxattr", libc::SYS_fsetxattr),
    ("fsmount", libc::SYS_fsmount),
    ("fsopen", libc::SYS_fsopen),
    ("fspick", libc::SYS_fspick),
    ("fstat", libc::SYS_fstat),
    ("fstatfs", libc::SYS_fstatfs),
    ("fsync", libc::SYS_fsync),
    ("ftruncate", libc::SYS_ftruncate),
    ("futex", libc::SYS_futex),
    ("futex_requeue", 456),
    ("futex_wait", 455),
    ("futex_waitv", libc::SYS_futex_waitv),
    ("futex_wake", 454),
    ("futimesat", libc::SYS_futimesat),
    ("get_kernel_syms", 177),
    ("get_mempolicy", libc::SYS_get_mempolicy),
    ("get_robust_list", libc::SYS_get_robust_list),
    ("get_thread_area", libc::SYS_get_thread_area),
    ("getcpu", libc::SYS_getcpu),
    ("getcwd", libc::SYS_getcwd),
    ("getdents", libc::SYS_getdents),
    ("getdents64", libc::SYS_getdents64),
    ("getegid", libc::SYS_getegid),
    ("geteuid", libc::SYS_geteuid),
    ("getgid", libc::SYS_getgid),
    ("getgroups", libc::SYS_getgroups),
    ("getitimer", libc::SYS_getitimer),
    ("getpeername", libc::SYS_getpeername),
    ("getpgid", libc::SYS_getpgid),
    ("getpgrp", libc::SYS_getpgrp),
    ("getpid", libc::SYS_getpid),
    ("getpmsg", libc::SYS_getpmsg),
    ("getppid", libc::SYS_getppid),
    ("getpriority", libc::SYS_getpriority),
    ("getrandom", libc::SYS_getrandom),
    ("getresgid", libc::SYS_getresgid),
    ("getresuid", libc::SYS_getresuid),
    ("getrlimit", libc::SYS_getrlimit),
    ("getrusage", libc::SYS_getrusage),
    ("getsid", libc::SYS_getsid),
    ("getsockname", libc::SYS_getsockname),
    ("getsockopt", libc::SYS_getsockopt),
    ("gettid", libc::SYS_gettid),
    ("gettimeofday", libc::SYS_gettimeofday),
    ("getuid", libc::SYS_getuid),
    ("getxattr", libc::SYS_getxattr),
    ("getxattrat", 464),
    ("init_module", libc::SYS_init_module),
    ("inotify_add_watch", libc::SYS_inotify_add_watch),
    ("inotify_init", libc::SYS_inotify_init),
    ("inotify_init1", libc::SYS_inotify_init1),
    ("inotify_rm_watch", libc::SYS_inotify_rm_watch),
    ("io_cancel", libc::SYS_io_cancel),
    ("io_destroy", libc::SYS_io_destroy),
    ("io_getevents", libc::SYS_io_getevents),
    ("io_pgetevents", 333),
    ("io_setup", libc::SYS_io_setup),
    ("io_submit", libc::SYS_io_submit),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("ioctl", libc::SYS_ioctl),
    ("ioperm", libc::SYS_ioperm),
    ("iopl", libc::SYS_iopl),
    ("ioprio_get", libc::SYS_ioprio_get),
    ("ioprio_set", libc::SYS_ioprio_set),
    ("kcmp", libc::SYS_kcmp),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("kexec_load", libc::SYS_kexec_load),
    ("keyctl", libc::SYS_keyctl),
    ("kill", libc::SYS_kill),
    ("landlock_add_rule", libc::SYS_landlock_add_rule),
    ("landlock_create_ruleset", libc::SYS_landlock_create_ruleset),
    ("landlock_restrict_self", libc::SYS_landlock_restrict_self),
    ("lchown", libc::SYS_lchown),
    ("lgetxattr", libc::SYS_lgetxattr),
    ("link", libc::SYS_link),
    ("linkat", libc::SYS_linkat),
    ("listen", libc::SYS_listen),
    ("listmount", 458),
    ("listxattr", libc::SYS_listxattr),
    ("listxattrat", 465),
    ("llistxattr", libc::SYS_llistxattr),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("lremovexattr", libc::SYS_lremovexattr),
    ("lseek", libc::SYS_lseek),
    ("lsetxattr", libc::SYS_lsetxattr),
    ("lsm_get_self_attr", 459),
    ("lsm_list_modules", 461),
    ("lsm_set_self_attr", 460),
    ("lstat", libc::SYS_lstat),
    ("madvise", libc::SYS_madvise),
    ("map_shadow_stack", 453),
    ("mbind", libc::SYS_mbind),
    ("membarrier", libc::SYS_membarrier),
    ("memfd_create", libc::SYS_memfd_create),
    ("memfd_secret", libc::SYS_memfd_secret),
    ("migrate_pages", libc::SYS_migrate_pages),
    ("mincore", libc::SYS_mincore),
    ("mkdir", libc::SYS_mkdir),
    ("mkdirat", libc::SYS_mkdirat),
    ("mknod", libc::SYS_mknod),
    ("mknodat", libc::SYS_mknodat),
    ("mlock", libc::SYS_mlock),
    ("mlock2", libc::SYS_mlock2),
    ("mlockall", libc::SYS_mlockall),
    ("mmap", libc::SYS_mmap),
    ("modify_ldt", libc::SYS_modify_ldt),
    ("mount", libc::SYS_mount),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("move_mount", libc::SYS_move_mount),
    ("move_pages", libc::SYS_move_pages),
    ("mprotect", libc::SYS_mprotect),
    ("mq_getsetattr", libc::SYS_mq_getsetattr),
    ("mq_notify", libc::SYS_mq_notify),
    ("mq_open", libc::SYS_mq_open),
    ("mq_timedreceive", libc::SYS_mq_timedreceive),
    ("mq_timedsend", libc::SYS_mq_timedsend),
    ("mq_unlink", libc::SYS_mq_unlink),
    ("mremap", libc::SYS_mremap),
    ("mseal", libc::SYS_mseal),
    ("msgctl", libc::SYS_msgctl),
    ("msgget", libc::SYS_msgget),
    ("msgrcv", libc::SYS_msgrcv),
    ("msgsnd", libc::SYS_msgsnd),
    ("msync", libc::SYS_msync),
    ("munlock", libc::SYS_munlock),
    ("munlockall", libc::SYS_munlockall),
    ("munmap", libc::SYS_munmap),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("nanosleep", libc::SYS_nanosleep),
    ("newfstatat", libc::SYS_newfstatat),
    ("nfsservctl", libc::SYS_nfsservctl),
    ("open", libc::SYS_open),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("open_tree", libc::SYS_open_tree),
    ("open_tree_attr", 467),
    ("openat", libc::SYS_openat),
    ("openat2", libc::SYS_openat2),
    ("pause", libc::SYS_pause),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("personality", libc::SYS_personality),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("pidfd_open", libc::SYS_pidfd_open),
    ("pidfd_send_signal", libc::SYS_pidfd_send_signal),
    ("pipe", libc::SYS_pipe),
    ("pipe2", libc::SYS_pipe2),
    ("pivot_root", libc::SYS_pivot_root),
    ("pkey_alloc", libc::SYS_pkey_alloc),
    ("pkey_free", libc::SYS_pkey_free),
    ("pkey_mprotect", libc::SYS_pkey_mprotect),
    ("poll", libc::SYS_poll),
    ("ppoll", libc::SYS_ppoll),
    ("prctl", libc::SYS_prctl),
    ("pread64", libc::SYS_pread64),
    ("preadv", libc::SYS_preadv),
    ("preadv2", libc::SYS_preadv2),
    ("prlimit64", libc::SYS_prlimit64),
    ("process_madvise", libc::SYS_process_madvise),
    ("process_mrelease", libc::SYS_process_mrelease),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("pselect6", libc::SYS_pselect6),
    ("ptrace", libc::SYS_ptrace),
    ("putpmsg", libc::SYS_putpmsg),
    ("pwrite64", libc::SYS_pwrite64),
    ("pwritev", libc::SYS_pwritev),
    ("pwritev2", libc::SYS_pwritev2),
    ("query_module", 178),
    ("quotactl", libc::SYS_quotactl),
    ("quotactl_fd", libc::SYS_quotactl_fd),
    ("read", libc::SYS_read),
    ("readahead", libc::SYS_readahead),
    ("readlink", libc::SYS_readlink),
    ("readlinkat", libc::SYS_readlinkat),
    ("readv", libc::SYS_readv),
    ("reboot", libc::SYS_reboot),
    ("recvfrom", libc::SYS_recvfrom),
    ("recvmmsg", libc::SYS_recvmmsg),
    ("recvmsg", libc::SYS_recvmsg),
    ("remap_file_pages", libc::SYS_remap_file_pages),
    ("removexattr", libc::SYS_removexattr),
    ("removexattrat", 466),
    ("rename", libc::SYS_rename),
    ("renameat", libc::SYS_renameat),
    ("renameat2", libc::SYS_renameat2),
    ("request_key", libc::SYS_request_key),
    ("restart_syscall", libc::SYS_restart_syscall),
    ("rmdir", libc::SYS_rmdir),
    ("rseq", libc::SYS_rseq),
    ("rt_sigaction", libc::SYS_rt_sigaction),
    ("rt_sigpending", libc::SYS_rt_sigpending),
    ("rt_sigprocmask", libc::SYS_rt_sigprocmask),
    ("rt_sigqueueinfo", libc::SYS_rt_sigqueueinfo),
    ("rt_sigreturn", libc::SYS_rt_sigreturn),
    ("rt_sigsuspend", libc::SYS_rt_sigsuspend),
    ("rt_sigtimedwait", libc::SYS_rt_sigtimedwait),
    ("rt_tgsigqueueinfo", libc::SYS_rt_tgsigqueueinfo),
    ("sched_get_priority_max", libc::SYS_sched_get_priority_max),
    ("sched_get_priority_min", libc::SYS_sched_get_priority_min),
    ("sched_getaffinity", libc::SYS_sched_getaffinity),
    ("sched_getattr", libc::SYS_sched_getattr),
    ("sched_getparam", libc::SYS_sched_getparam),
    ("sched_getscheduler", libc::SYS_sched_getscheduler),
    ("sched_rr_get_interval", libc::SYS_sched_rr_get_interval),
    ("sched_setaffinity", libc::SYS_sched_setaffinity),
    ("sched_setattr", libc::SYS_sched_setattr),
    ("sched_setparam", libc::SYS_sched_setparam),
    ("sched_setscheduler", libc::SYS_sched_setscheduler),
    ("sched_yield", libc::SYS_sched_yield),
    ("seccomp", libc::SYS_seccomp),
    ("security", libc::SYS_security),
    ("select", libc::SYS_select),
    ("semctl", libc::SYS_semctl),
    ("semget", libc::SYS_semget),
    ("semop", libc::SYS_semop),
    ("semtimedop", libc::SYS_semtimedop),
    ("sendfile", libc::SYS_sendfile),
    ("sendmmsg", libc::SYS_sendmmsg),
    ("sendmsg", libc::SYS_sendmsg),
    ("sendto", libc::SYS_sendto),
    ("set_mempolicy", libc::SYS_set_mempolicy),
    ("set_mempolicy_home_node", libc::SYS_set_mempolicy_home_node),
    ("set_robust_list", libc::SYS_set_robust_list),
    ("set_thread_area", libc::SYS_set_thread_area),
    ("set_tid_address", libc::SYS_set_tid_address),
    ("setdomainname", libc::SYS_setdomainname),
    ("setfsgid", libc::SYS_setfsgid),
    ("setfsuid", libc::SYS_setfsuid),
    ("setgid", libc::SYS_setgid),
    ("setgroups", libc::SYS_setgroups),
    ("sethostname", libc::SYS_sethostname),
    ("setitimer", libc::SYS_setitimer),
    ("setns", libc::SYS_setns),
    ("setpgid", libc::SYS_setpgid),
    ("setpriority", libc::SYS_setpriority),
    ("setregid", libc::SYS_setregid),
    ("setresgid", libc::SYS_setresgid),
    ("setresuid", libc::SYS_setresuid),
    ("setreuid", libc::SYS_setreuid),
    ("setrlimit", libc::SYS_setrlimit),
    ("setsid", libc::SYS_setsid),
    ("setsockopt", libc::SYS_setsockopt),
    ("settimeofday", libc::SYS_settimeofday),
    ("setuid", libc::SYS_setuid),
    ("setxattr", libc::SYS_setxattr),
    ("setxattrat", 463),
    ("shmat", libc::SYS_shmat),
    ("shmctl", libc::SYS_shmctl),
    ("shmdt", libc::SYS_shmdt),
    ("shmget", libc::SYS_shmget),
    ("shutdown", libc::SYS_shutdown),
    ("sigaltstack", libc::SYS_sigaltstack),
    ("signalfd", libc::SYS_signalfd),
    ("signalfd4", libc::SYS_signalfd4),
    ("socket", libc::SYS_socket),
    ("socketpair", libc::SYS_socketpair),
    ("splice", libc::SYS_splice),
    ("stat", libc::SYS_stat),
    ("statfs", libc::SYS_statfs),
    ("statmount", 457),
    ("statx", libc::SYS_statx),
    ("swapoff", libc::SYS_swapoff),
    ("swapon", libc::SYS_swapon),
    ("symlink", libc::SYS_symlink),
    ("symlinkat", libc::SYS_symlinkat),
    ("sync", libc::SYS_sync),
    ("sync_file_range", libc::SYS_sync_file_range),
    ("syncfs", libc::SYS_syncfs),
    ("sysfs", libc::SYS_sysfs),
    ("sysinfo", libc::SYS_sysinfo),
    ("syslog", libc::SYS_syslog),
    ("tee", libc::SYS_tee),
    ("tgkill", libc::SYS_tgkill),
    ("time", libc::SYS_time),
    ("timer_create", libc::SYS_timer_create),
    ("timer_delete", libc::SYS_timer_delete),
    ("timer_getoverrun", libc::SYS_timer_getoverrun),
    ("timer_gettime", libc::SYS_timer_gettime),
    ("timer_settime", libc::SYS_timer_settime),
    ("timerfd_create", libc::SYS_timerfd_create),
    ("timerfd_gettime", libc::SYS_timerfd_gettime),
    ("timerfd_settime", libc::SYS_timerfd_settime),
    ("times", libc::SYS_times),
    ("tkill", libc::SYS_tkill),
    ("truncate", libc::SYS_truncate),
    ("tuxcall", libc::SYS_tuxcall),
    ("umask", libc::SYS_umask),
    ("umount2", libc::SYS_umount2),
    ("uname", libc::SYS_uname),
    ("unlink", libc::SYS_unlink),
    ("unlinkat", libc::SYS_unlinkat),
    ("unshare", libc::SYS_unshare),
    ("uretprobe", 335),
    ("uselib", libc::SYS_uselib),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("ustat", libc::SYS_ustat),
    ("utime", libc::SYS_utime),
    ("utimensat", libc::SYS_utimensat),
    ("utimes", libc::SYS_utimes),
    ("vfork", libc::SYS_vfork),
    ("vhangup", libc::SYS_vhangup),
    ("vmsplice", libc::SYS_vmsplice),
    ("vserver", libc::SYS_vserver),
    ("wait4", libc::SYS_wait4),
    ("waitid", libc::SYS_waitid),
    ("write", libc::SYS_write),
    ("writev", libc::SYS_writev),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kernel does with a call (checked first to be a program it would load).
    fn verdict(prog: &[BpfInsn], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        kernel_would_load(prog);
        crate::kernel::bpf::run_bpf(prog, arch, nr, args)
    }

    /// The kernel's checks of a seccomp program (bpf_check_classic, seccomp_check_filter):
    /// at most 4096 instructions, every jump inside the program (reachable or not), loads
    /// of whole 32-bit words of `seccomp_data`, a `ret` at the end.
    fn kernel_would_load(prog: &[BpfInsn]) {
        let len = prog.len();
        assert!(len > 0 && len <= MAX_INSNS, "{len} instructions");
        for (pc, i) in prog.iter().enumerate() {
            let lands = |off: usize| assert!(pc + off + 1 < len, "jump at {pc} out: {i:?}");
            match i.code {
                JMP_JA => lands(i.k as usize),
                0x15 | 0x25 | 0x35 | 0x45 => {
                    lands(i.jt.into());
                    lands(i.jf.into());
                }
                LD_W_ABS => assert!(i.k < 64 && i.k % 4 == 0, "load at {pc}: {i:?}"),
                _ => {}
            }
        }
        assert_eq!(prog[len - 1].code, RET_K);
    }

    const X86_64: u32 = 0xc000_003e;
    const I386: u32 = 0x4000_0003;
    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    fn call(prog: &[BpfInsn], name: &str, args: &[u64]) -> u32 {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        verdict(prog, X86_64, syscall_nr(name).unwrap(), a)
    }

    #[test]
    fn the_name_table_is_sorted_and_agrees_with_libc() {
        for w in SYSCALLS.windows(2) {
            assert!(w[0].0 < w[1].0, "{} before {}", w[0].0, w[1].0);
        }
        assert!(SYSCALLS.len() > 370);
        assert_eq!(syscall_nr("read"), Some(0));
        assert_eq!(syscall_nr("mkdir"), Some(libc::SYS_mkdir as u32));
        assert_eq!(syscall_nr("clone3"), Some(435));
        assert_eq!(syscall_nr("cachestat"), Some(451));
        assert_eq!(syscall_nr("mseal"), Some(462));
        assert_eq!(syscall_nr("socketcall"), None); // i386 only
        let mut numbers: Vec<i64> = SYSCALLS.iter().map(|(_, n)| *n).collect();
        numbers.sort();
        numbers.dedup();
        assert_eq!(numbers.len(), SYSCALLS.len(), "one name per number");
    }

    #[test]
    fn shape_of_an_allow_all_profile_with_one_errno_rule() {
        let p = profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#,
        );
        let c = build(&p).unwrap();
        assert_eq!(c.flags, 0);
        assert!(c.skipped.is_empty());
        let prog = &c.filter;
        // The ABI check, then (the default allows: no ENOSYS stub) two jeq + ret, and allow.
        assert_eq!(prog[0], stmt(LD_W_ABS, ARCH));
        assert_eq!(prog[1], jump(JMP_JEQ_K, AUDIT_ARCH_X86_64, 1, 0));
        assert_eq!(prog[2], stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS));
        assert_eq!(prog[3], stmt(LD_W_ABS, NR));
        assert_eq!(prog[4], jump(JMP_JGE_K, X32_SYSCALL_BIT, 0, 1));
        assert_eq!(prog[5], stmt(RET_K, ENOSYS));
        assert_eq!(
            &prog[6..],
            &[
                jump(JMP_JEQ_K, libc::SYS_mkdir as u32, 0, 1),
                stmt(RET_K, EPERM),
                jump(JMP_JEQ_K, libc::SYS_mkdirat as u32, 0, 1),
                stmt(RET_K, EPERM),
                stmt(RET_K, ALLOW),
            ]
        );
        assert_eq!(call(prog, "mkdir", &[]), EPERM);
        assert_eq!(call(prog, "rmdir", &[]), ALLOW);
        assert_eq!(
            verdict(prog, I386, 39, [0; 6]),
            libc::SECCOMP_RET_KILL_PROCESS
        );
        let x32_mkdir = X32_SYSCALL_BIT | libc::SYS_mkdir as u32;
        assert_eq!(verdict(prog, X86_64, x32_mkdir, [0; 6]), ENOSYS);
        assert_eq!(compile(&p).unwrap(), c.filter);
    }

    #[test]
    fn shape_of_a_rule_on_arguments() {
        let p = profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
              {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
               "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}]}]}"#,
        );
        let prog = compile(&p).unwrap();
        let eafnosupport = libc::SECCOMP_RET_ERRNO | libc::EAFNOSUPPORT as u32;
        assert_eq!(
            &prog[6..],
            &[
                // The search: socket's block is 3 on, else the default.
                jump(JMP_JEQ_K, libc::SYS_socket as u32, 0, 1),
                stmt(JMP_JA, 1),
                stmt(RET_K, ALLOW),
                // socket's block: the high half of args[0], then the low half (seccompiler).
                stmt(LD_W_ABS, 20),
                jump(JMP_JEQ_K, 0, 0, 3),
                stmt(LD_W_ABS, 16),
                jump(JMP_JEQ_K, 40, 0, 1),
                stmt(RET_K, eafnosupport),
                stmt(RET_K, ALLOW),
            ]
        );
        kernel_would_load(&prog);
        assert_eq!(call(&prog, "socket", &[40]), eafnosupport);
        assert_eq!(call(&prog, "socket", &[40 | 1 << 32]), ALLOW);
        assert_eq!(call(&prog, "socket", &[2]), ALLOW);
    }

    #[test]
    fn actions_and_errnos() {
        let p = profile(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 13,
                "syscalls": [
                  {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                  {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                  {"names": ["getppid"], "action": "SCMP_ACT_ERRNO"},
                  {"names": ["getuid"], "action": "SCMP_ACT_KILL"},
                  {"names": ["getgid"], "action": "SCMP_ACT_KILL_THREAD"},
                  {"names": ["geteuid"], "action": "SCMP_ACT_KILL_PROCESS"},
                  {"names": ["getegid"], "action": "SCMP_ACT_TRAP"},
                  {"names": ["uname"], "action": "SCMP_ACT_LOG"},
                  {"names": ["getpgrp"], "action": "SCMP_ACT_TRACE"},
                  {"names": ["getsid"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
                  {"names": ["sync"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
                ]}"#,
        );
        let prog = compile(&p).unwrap();
        let eacces = libc::SECCOMP_RET_ERRNO | libc::EACCES as u32;
        assert_eq!(call(&prog, "read", &[]), ALLOW);
        assert_eq!(call(&prog, "write", &[]), ALLOW);
        assert_eq!(call(&prog, "getpid", &[]), ENOSYS);
        assert_eq!(call(&prog, "getppid", &[]), EPERM);
        assert_eq!(call(&prog, "getuid", &[]), libc::SECCOMP_RET_KILL_THREAD);
        assert_eq!(call(&prog, "getgid", &[]), libc::SECCOMP_RET_KILL_THREAD);
        assert_eq!(call(&prog, "geteuid", &[]), libc::SECCOMP_RET_KILL_PROCESS);
        assert_eq!(call(&prog, "getegid", &[]), libc::SECCOMP_RET_TRAP);
        assert_eq!(call(&prog, "uname", &[]), libc::SECCOMP_RET_LOG);
        assert_eq!(call(&prog, "getpgrp", &[]), libc::SECCOMP_RET_TRACE | 1);
        assert_eq!(call(&prog, "getsid", &[]), libc::SECCOMP_RET_TRACE | 7);
        assert_eq!(call(&prog, "mkdir", &[]), eacces);
        // sync's rule is the default action: dropped, as runc does.
        assert_eq!(call(&prog, "sync", &[]), eacces);
        assert!(!prog
            .iter()
            .any(|i| i.k == libc::SYS_sync as u32 && i.code == JMP_JEQ_K));
    }

    #[test]
    fn every_comparison_on_64_bit_values() {
        let big = 0x1_0000_0005u64;
        let p = profile(&format!(
            r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
              {{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO",
                "args": [{{"index": 1, "value": {big}, "op": "SCMP_CMP_NE"}}]}},
              {{"names": ["setpriority"], "action": "SCMP_ACT_ERRNO",
                "args": [{{"index": 2, "value": {big}, "op": "SCMP_CMP_LT"}}]}},
              {{"names": ["lseek"], "action": "SCMP_ACT_ERRNO",
                "args": [{{"index": 1, "value": {big}, "op": "SCMP_CMP_LE"}}]}},
              {{"names": ["dup"], "action": "SCMP_ACT_ERRNO",
                "args": [{{"index": 0, "value": {big}, "op": "SCMP_CMP_EQ"}}]}},
              {{"names": ["dup2"], "action": "SCMP_ACT_ERRNO",
                "args": [{{"index": 0, "value": {big}, "op": "SCMP_CMP_GE"}}]}},
              {{"names": ["dup3"], "action": "SCMP_ACT_ERRNO",
                "args": [{{"index": 5, "value": {big}, "op": "SCMP_CMP_GT"}}]}},
              {{"names": ["clone"], "action": "SCMP_ACT_ERRNO",
                "args": [{{"index": 0, "value": 2114060288, "valueTwo": 0,
                          "op": "SCMP_CMP_MASKED_EQ"}}]}}
            ]}}"#
        ));
        let prog = compile(&p).unwrap();
        let at = |name: &str, i: usize, v: u64| {
            let mut a = [0u64; 6];
            a[i] = v;
            call(&prog, name, &a)
        };
        // The low halves alone would say otherwise for each of these.
        assert_eq!(at("getpriority", 1, big), ALLOW);
        assert_eq!(at("getpriority", 1, 5), EPERM);
        assert_eq!(at("setpriority", 2, 5), EPERM);
        assert_eq!(at("setpriority", 2, big), ALLOW);
        assert_eq!(at("setpriority", 2, big + 1), ALLOW);
        assert_eq!(at("lseek", 1, big), EPERM);
        assert_eq!(at("lseek", 1, 6), EPERM);
        assert_eq!(at("lseek", 1, big + 1), ALLOW);
        assert_eq!(at("dup", 0, big), EPERM);
        assert_eq!(at("dup", 0, 5), ALLOW);
        assert_eq!(at("dup2", 0, big), EPERM);
        assert_eq!(at("dup2", 0, 0x2_0000_0000), EPERM);
        assert_eq!(at("dup2", 0, 6), ALLOW);
        assert_eq!(at("dup3", 5, big + 1), EPERM);
        assert_eq!(at("dup3", 5, big), ALLOW);
        // Docker's clone rule: no namespace flag (mask 0x7e020000 clear) matches.
        let fork = (libc::CLONE_CHILD_SETTID | libc::SIGCHLD) as u64;
        assert_eq!(at("clone", 0, fork), EPERM);
        assert_eq!(at("clone", 0, fork | libc::CLONE_NEWUSER as u64), ALLOW);
    }

    #[test]
    fn args_of_a_rule_are_anded_rules_of_a_call_ored() {
        let p = profile(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
              {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
                        {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]},
              {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
              {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                        {"index": 0, "value": 4294967295, "op": "SCMP_CMP_EQ"}]}
            ]}"#,
        );
        let prog = compile(&p).unwrap();
        assert_eq!(call(&prog, "socket", &[2, 2]), ALLOW); // AF_INET, SOCK_DGRAM
        assert_eq!(call(&prog, "socket", &[2, 1]), EPERM); // AF_INET, SOCK_STREAM
        assert_eq!(call(&prog, "socket", &[1, 1]), ALLOW); // AF_UNIX, any
        assert_eq!(call(&prog, "socket", &[10, 2]), EPERM);
        // One argument compared twice: ORed, as runc does (ANDed it could never match).
        assert_eq!(call(&prog, "personality", &[0]), ALLOW);
        assert_eq!(call(&prog, "personality", &[0xffff_ffff]), ALLOW);
        assert_eq!(call(&prog, "personality", &[0x40_0000]), EPERM);
    }

    #[test]
    fn six_comparisons_in_one_rule() {
        let args: Vec<String> = (0..6)
            .map(|i| {
                format!(
                    r#"{{"index": {i}, "value": {}, "valueTwo": {}, "op": "SCMP_CMP_MASKED_EQ"}}"#,
                    u64::MAX,
                    i + 1
                )
            })
            .collect();
        let p = profile(&format!(
            r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
              {{"names": ["mmap", "munmap"], "action": "SCMP_ACT_KILL", "args": [{}]}}]}}"#,
            args.join(",")
        ));
        let prog = compile(&p).unwrap();
        let kill = libc::SECCOMP_RET_KILL_THREAD;
        assert_eq!(call(&prog, "mmap", &[1, 2, 3, 4, 5, 6]), kill);
        assert_eq!(call(&prog, "munmap", &[1, 2, 3, 4, 5, 6]), kill);
        assert_eq!(call(&prog, "mmap", &[1, 2, 3, 4, 5, 7]), ALLOW);
        assert_eq!(call(&prog, "munmap", &[1, 2, 3, 4, 5, 6 | 1 << 40]), ALLOW);
    }

    #[test]
    fn first_matching_rule_then_the_plain_rule_then_the_default() {
        let p = profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
              {"names": ["socket"], "action": "SCMP_ACT_ERRNO",
               "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}]},
              {"names": ["socket"], "action": "SCMP_ACT_KILL_PROCESS",
               "args": [{"index": 0, "value": 38, "op": "SCMP_CMP_GE"}]},
              {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
              {"names": ["kill"], "action": "SCMP_ACT_LOG",
               "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]}
            ]}"#,
        );
        let prog = compile(&p).unwrap();
        assert_eq!(call(&prog, "socket", &[40]), EPERM);
        assert_eq!(call(&prog, "socket", &[41]), libc::SECCOMP_RET_KILL_PROCESS);
        assert_eq!(call(&prog, "socket", &[1]), ALLOW);
        assert_eq!(call(&prog, "kill", &[1, 0]), libc::SECCOMP_RET_LOG);
        assert_eq!(call(&prog, "kill", &[1, 9]), EPERM);
    }

    #[test]
    fn unknown_names_are_skipped_and_listed() {
        let p = profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
              {"names": ["socketcall", "mkdir", "no_such_call", "socketcall"],
               "action": "SCMP_ACT_ERRNO"}]}"#,
        );
        let c = build(&p).unwrap();
        assert_eq!(c.skipped, vec!["socketcall", "no_such_call"]);
        assert_eq!(call(&c.filter, "mkdir", &[]), EPERM);
    }

    #[test]
    fn enosys_for_calls_newer_than_the_profile_as_runc() {
        let allow =
            r#"[{"names": ["read", "write", "exit_group", "openat"], "action": "SCMP_ACT_ALLOW"}]"#;
        let p = profile(&format!(
            r#"{{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": {allow}}}"#
        ));
        let prog = compile(&p).unwrap();
        assert_eq!(call(&prog, "openat", &[]), ALLOW);
        assert_eq!(call(&prog, "mkdir", &[]), EPERM); // below openat (257)
        assert_eq!(call(&prog, "clone3", &[]), ENOSYS); // above: newer than the profile
                                                        // Not without an architecture list (runc's stub is per listed architecture), nor when
                                                        // the default allows.
        let p = profile(&format!(
            r#"{{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": {allow}}}"#
        ));
        assert_eq!(call(&compile(&p).unwrap(), "clone3", &[]), EPERM);
        let p = profile(
            r#"{"defaultAction": "SCMP_ACT_LOG", "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}"#,
        );
        assert_eq!(
            call(&compile(&p).unwrap(), "clone3", &[]),
            libc::SECCOMP_RET_LOG
        );
    }

    #[test]
    fn flags_are_passed() {
        let p = profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}"#,
        );
        let c = build(&p).unwrap();
        assert_eq!(c.flags, 2 | 4);
        assert_eq!(flags(&p), 6);
        // No rules at all: the ABI check and the default.
        assert_eq!(c.filter.len(), 7);
        assert_eq!(c.filter[6], stmt(RET_K, ALLOW));
    }

    #[test]
    fn what_is_refused() {
        let err = |json: &str| format!("{:#}", build(&profile(json)).unwrap_err());
        let e = err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}"#);
        assert!(e.contains("listenerPath is not supported"), "{e}");
        let e = err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "x"}"#);
        assert!(e.contains("listenerMetadata is not supported"), "{e}");
        let e = err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}"#);
        assert!(
            e.contains("syscalls[0]: SCMP_ACT_NOTIFY is not supported"),
            "{e}"
        );
        let e = err(r#"{"defaultAction": "SCMP_ACT_ERRNO",
                "architectures": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]}"#);
        assert!(
            e.contains("SCMP_ARCH_AARCH64, SCMP_ARCH_ARM: none of them is this machine's"),
            "{e}"
        );
        let e = err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}"#);
        assert!(
            e.contains("defaultAction: an errno is only for SCMP_ACT_ERRNO"),
            "{e}"
        );
        let e = err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]}"#);
        assert!(e.contains("syscalls[0]: an errno is only for"), "{e}");
        let e = err(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"],
                "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
        );
        assert!(e.contains("argument index 6"), "{e}");
        let e = err(r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}"#);
        assert!(e.contains("does not fit"), "{e}");
        // A multi-architecture profile that includes x86_64 is fine.
        build(&profile(
            r#"{"defaultAction": "SCMP_ACT_ERRNO",
                "architectures": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_X86_64"]}"#,
        ))
        .unwrap();
    }

    #[test]
    fn long_programs_keep_their_jumps_in_range() {
        // Every known call, many with argument rules: the search is longer than 255
        // instructions and blocks are far from it.
        let names: Vec<&str> = SYSCALLS.iter().map(|(n, _)| *n).collect();
        let mut rules = vec![format!(
            r#"{{"names": {}, "action": "SCMP_ACT_ALLOW"}}"#,
            serde_json::to_string(&names[..names.len() / 2]).unwrap()
        )];
        for n in &names[names.len() / 2..] {
            rules.push(format!(
                r#"{{"names": ["{n}"], "action": "SCMP_ACT_ALLOW",
                    "args": [{{"index": 0, "value": 3, "op": "SCMP_CMP_LE"}},
                             {{"index": 1, "value": 7, "op": "SCMP_CMP_NE"}}]}}"#
            ));
        }
        let p = profile(&format!(
            r#"{{"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": [{}]}}"#,
            rules.join(",")
        ));
        let prog = compile(&p).unwrap();
        assert!(prog.len() > 1000, "{}", prog.len());
        for (i, n) in names.iter().enumerate() {
            if i < names.len() / 2 {
                assert_eq!(call(&prog, n, &[9, 7]), ALLOW, "{n}");
            } else {
                assert_eq!(call(&prog, n, &[3, 8]), ALLOW, "{n}");
                assert_eq!(
                    call(&prog, n, &[3, 7]),
                    libc::SECCOMP_RET_KILL_PROCESS,
                    "{n}"
                );
                assert_eq!(
                    call(&prog, n, &[4, 8]),
                    libc::SECCOMP_RET_KILL_PROCESS,
                    "{n}"
                );
            }
        }
        assert_eq!(
            verdict(&prog, X86_64, 470, [0; 6]),
            libc::SECCOMP_RET_KILL_PROCESS
        );
    }
}
