//! Issue 9: config.json's `linux.seccomp` compiled by `stepctr::oci::seccomp` and installed for
//! real, in a forked child (after PR_SET_NO_NEW_PRIVS, which lets anyone install a filter),
//! through the same `Sys::SeccompFilter` call the runtime makes. Each profile is JSON as a
//! config.json carries it; the child makes the calls and its exit code (an errno, or the
//! signal that killed it) is what the kernel did. Busybox (static) runs under an allow list,
//! as a container would.
//!
//! Docker's default profile is not here (no network): the profiles are small realistic ones,
//! in its style (an allow list, personality's values, socket families, clone's flags).

use oci_spec::runtime::LinuxSeccomp;
use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stepctr::kernel::linux::Linux;
use stepctr::kernel::{BpfInsn, Kernel, Sys};
use stepctr::oci::seccomp;

fn profile(json: &str) -> LinuxSeccomp {
    serde_json::from_str(json).expect("a seccomp profile")
}

/// The install call of a profile, as the runtime makes it.
fn install_call(p: &LinuxSeccomp) -> Sys {
    let c = seccomp::build(p).expect("the profile compiles");
    Sys::SeccompFilter {
        flags: c.flags,
        filter: Arc::new(c.filter),
    }
}

/// PR_SET_NO_NEW_PRIVS then the filter: what a child does before its calls. Returns errno.
fn install(call: &Sys) -> i32 {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return errno();
    }
    match Linux.sys(call, "") {
        Ok(_) => 0,
        Err(e) => e as i32,
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// 0 if the raw call succeeded, else its errno.
fn rc(r: libc::c_long) -> i32 {
    if r < 0 {
        errno()
    } else {
        0
    }
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The child's exit code: what `body` returned (an errno, 0 for success).
    Exit(i32),
    /// The signal that killed it.
    Killed(i32),
}

/// Fork; the child installs `call`'s filter and exits with what `body` returns. The body runs
/// after a fork from a threaded test binary: raw calls only, nothing that allocates.
fn in_child(call: &Sys, body: impl FnOnce() -> i32) -> End {
    // SAFETY: the child only makes raw system calls and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let e = install(call);
        if e != 0 {
            unsafe { libc::_exit(200) };
        }
        let code = body();
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    if libc::WIFSIGNALED(status) {
        End::Killed(libc::WTERMSIG(status))
    } else {
        let code = libc::WEXITSTATUS(status);
        assert_ne!(code, 200, "the child could not install the filter");
        End::Exit(code)
    }
}

fn sys0(nr: libc::c_long) -> i32 {
    rc(unsafe { libc::syscall(nr) })
}

fn sys1(nr: libc::c_long, a: u64) -> i32 {
    rc(unsafe { libc::syscall(nr, a) })
}

/// socket(domain, type, 0), closed at once: 0 or the errno.
fn socket(domain: i32, ty: i32) -> i32 {
    let fd = unsafe { libc::syscall(libc::SYS_socket, domain, ty, 0) };
    if fd >= 0 {
        unsafe { libc::close(fd as i32) };
    }
    rc(fd)
}

const EPERM: End = End::Exit(libc::EPERM);
const OK: End = End::Exit(0);

fn tmp_path(tag: &str) -> (std::path::PathBuf, CString) {
    let p = std::env::temp_dir().join(format!("stepctr-oci-seccomp-{tag}-{}", std::process::id()));
    let c = CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    (p, c)
}

/// Allow everything but making directories (EPERM, the default errno), and removing them
/// (EACCES, an errnoRet).
#[test]
fn allow_all_but_mkdir() {
    let p = profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
              {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
              {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
            ]}"#,
    );
    let call = install_call(&p);
    let (path, c) = tmp_path("mkdir");
    let ptr = c.as_ptr();
    let mkdirat =
        move || rc(unsafe { libc::syscall(libc::SYS_mkdirat, libc::AT_FDCWD, ptr, 0o700) });
    let mkdir = move || rc(unsafe { libc::syscall(libc::SYS_mkdir, ptr, 0o700) });
    let rmdir = move || rc(unsafe { libc::syscall(libc::SYS_rmdir, ptr) });
    assert_eq!(in_child(&call, mkdirat), EPERM);
    assert_eq!(in_child(&call, mkdir), EPERM);
    assert!(!path.exists());
    // Without the filter rmdir would say ENOENT: the filter answers first.
    assert_eq!(in_child(&call, rmdir), End::Exit(libc::EACCES));
    assert_eq!(in_child(&call, || sys0(libc::SYS_getpid)), OK);
    assert_eq!(
        in_child(&call, || socket(libc::AF_UNIX, libc::SOCK_STREAM)),
        OK
    );

    // A real program: busybox's mkdir fails, its echo works.
    let out = busybox(&p, "echo before; mkdir $0 || exit 7; echo after", &c);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "before\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Operation not permitted"), "{err}");
    assert!(!path.exists());
}

/// `busybox sh -c SCRIPT ARG0` under the profile's filter (installed just before execve).
fn busybox(p: &LinuxSeccomp, script: &str, arg0: &CString) -> std::process::Output {
    let call = install_call(p);
    let mut cmd = Command::new("/bin/busybox");
    cmd.args(["sh", "-c", script, arg0.to_str().unwrap()]);
    // SAFETY: the closure makes two raw calls (prctl, seccomp) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || match install(&call) {
            0 => Ok(()),
            e => Err(std::io::Error::from_raw_os_error(e)),
        });
    }
    cmd.output().expect("busybox runs")
}

/// What busybox's shell needs for `echo`, `ls`, `cat` and children (from strace), plus a few
/// neighbours, as an allow list in docker's style: everything else fails with EPERM.
const SHELL_CALLS: &[&str] = &[
    "access",
    "arch_prctl",
    "brk",
    "chdir",
    "clone",
    "close",
    "dup",
    "dup2",
    "dup3",
    "execve",
    "exit",
    "exit_group",
    "faccessat",
    "fcntl",
    "fork",
    "fstat",
    "getcwd",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getrandom",
    "getuid",
    "ioctl",
    "lseek",
    "mmap",
    "mprotect",
    "munmap",
    "newfstatat",
    "open",
    "openat",
    "pipe",
    "pipe2",
    "prctl",
    "prlimit64",
    "read",
    "readlink",
    "rseq",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sendfile",
    "set_robust_list",
    "set_tid_address",
    "setpgid",
    "stat",
    "statx",
    "uname",
    "vfork",
    "wait4",
    "write",
    "writev",
];

/// Default ERRNO, an allow list a shell can live with: busybox runs, prints, lists; `mkdir`
/// is not on the list and fails. A call newer than the list (clone3, 435 > 334, the highest
/// listed: rseq) fails with ENOSYS, runc's stub, so libc falls back to clone.
#[test]
fn default_errno_with_an_allow_list() {
    let p = profile(&format!(
        r#"{{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{{"names": {}, "action": "SCMP_ACT_ALLOW"}}]}}"#,
        serde_json::to_string(SHELL_CALLS).unwrap()
    ));
    let (path, c) = tmp_path("allow");
    let out = busybox(
        &p,
        "echo hi; ls / >/dev/null && echo listed; cat /proc/self/status | grep ^Seccomp: ; mkdir $0",
        &c,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout, "hi\nlisted\nSeccomp:\t2\n", "{stderr}");
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
    assert_eq!(out.status.code(), Some(1));
    assert!(!path.exists());

    let call = install_call(&p);
    assert_eq!(in_child(&call, || sys0(libc::SYS_getpid)), OK);
    assert_eq!(in_child(&call, || sys0(libc::SYS_sync)), EPERM);
    assert_eq!(
        in_child(&call, || sys1(libc::SYS_clone3, 0)),
        End::Exit(libc::ENOSYS)
    );
    assert_eq!(in_child(&call, || sys0(libc::SYS_gettid)), EPERM); // 186 < 334
    assert_eq!(
        in_child(&call, || sys1(libc::SYS_pidfd_open, 1)),
        End::Exit(libc::ENOSYS)
    );
}

/// Arguments: `personality` values refused (one rule each, ORed), socket families refused
/// (EQ, GE), raw IPv4 sockets refused (two arguments of one rule, ANDed), user namespaces
/// refused by clone's flags (MASKED_EQ).
#[test]
fn argument_filters() {
    let p = profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
              {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
               "args": [{"index": 0, "value": 4194304, "op": "SCMP_CMP_EQ"}]},
              {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
               "args": [{"index": 0, "value": 262144, "op": "SCMP_CMP_EQ"}]},
              {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
               "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}]},
              {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
               "args": [{"index": 0, "value": 46, "op": "SCMP_CMP_GE"}]},
              {"names": ["socket"], "action": "SCMP_ACT_ERRNO",
               "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
                        {"index": 1, "value": 3, "op": "SCMP_CMP_EQ"}]},
              {"names": ["unshare"], "action": "SCMP_ACT_ERRNO",
               "args": [{"index": 0, "value": 268435456, "valueTwo": 268435456,
                         "op": "SCMP_CMP_MASKED_EQ"}]}
            ]}"#,
    );
    let call = install_call(&p);
    let persona = |v: u64| move || sys1(libc::SYS_personality, v);
    assert_eq!(in_child(&call, persona(0)), OK);
    assert_eq!(in_child(&call, persona(0xffff_ffff)), OK); // a query
    assert_eq!(in_child(&call, persona(0x40_0000)), EPERM); // READ_IMPLIES_EXEC
    assert_eq!(in_child(&call, persona(0x4_0000)), EPERM); // ADDR_NO_RANDOMIZE (setarch -R)
    let eafnosupport = End::Exit(libc::EAFNOSUPPORT);
    assert_eq!(
        in_child(&call, || socket(libc::AF_UNIX, libc::SOCK_STREAM)),
        OK
    );
    assert_eq!(
        in_child(&call, || socket(libc::AF_INET, libc::SOCK_DGRAM)),
        OK
    );
    assert_eq!(
        in_child(&call, || socket(libc::AF_VSOCK, libc::SOCK_STREAM)),
        eafnosupport
    );
    assert_eq!(
        in_child(&call, || socket(46, libc::SOCK_STREAM)),
        eafnosupport
    );
    // We are root: without the filter a raw socket would open.
    assert_eq!(
        in_child(&call, || socket(libc::AF_INET, libc::SOCK_RAW)),
        EPERM
    );
    let unshare = |f: i32| move || sys1(libc::SYS_unshare, f as u64);
    assert_eq!(in_child(&call, unshare(libc::CLONE_NEWUSER)), EPERM);
    assert_eq!(
        in_child(&call, unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS)),
        EPERM
    );
    assert_eq!(in_child(&call, unshare(libc::CLONE_FILES)), OK);
}

/// Each action as the kernel carries it out.
#[test]
fn actions() {
    let p = profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
              {"names": ["getppid"], "action": "SCMP_ACT_KILL"},
              {"names": ["getuid"], "action": "SCMP_ACT_KILL_THREAD"},
              {"names": ["geteuid"], "action": "SCMP_ACT_KILL_PROCESS"},
              {"names": ["getgid"], "action": "SCMP_ACT_TRAP"},
              {"names": ["getegid"], "action": "SCMP_ACT_LOG"},
              {"names": ["getpgrp"], "action": "SCMP_ACT_TRACE"},
              {"names": ["sync"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28}
            ]}"#,
    );
    let call = install_call(&p);
    let sigsys = End::Killed(libc::SIGSYS);
    assert_eq!(in_child(&call, || sys0(libc::SYS_getppid)), sigsys);
    assert_eq!(in_child(&call, || sys0(libc::SYS_getuid)), sigsys);
    assert_eq!(in_child(&call, || sys0(libc::SYS_geteuid)), sigsys);
    assert_eq!(in_child(&call, || sys0(libc::SYS_getgid)), sigsys);
    assert_eq!(in_child(&call, || sys0(libc::SYS_getegid)), OK);
    // No tracer: the kernel fails a traced call with ENOSYS.
    assert_eq!(
        in_child(&call, || sys0(libc::SYS_getpgrp)),
        End::Exit(libc::ENOSYS)
    );
    assert_eq!(
        in_child(&call, || sys0(libc::SYS_sync)),
        End::Exit(libc::ENOSPC)
    );
}

/// Another ABI: i386's `int 0x80` kills the process, x32 numbers fail with ENOSYS, whatever
/// the profile allows.
#[test]
fn foreign_abis_are_denied() {
    let p = profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}"#,
    );
    let call = install_call(&p);
    let i386_getpid = || {
        let mut ax: u32 = 20; // getpid on i386
                              // SAFETY: int 0x80 with a harmless call; it clobbers nothing we use but eax.
        unsafe { std::arch::asm!("int 0x80", inout("eax") ax => ax) };
        i32::from(ax == 0)
    };
    assert_eq!(in_child(&call, i386_getpid), End::Killed(libc::SIGSYS));
    let x32_getpid = || sys0(0x4000_0000 | libc::SYS_getpid);
    assert_eq!(in_child(&call, x32_getpid), End::Exit(libc::ENOSYS));
}

/// `flags`: SECCOMP_FILTER_FLAG_LOG and SPEC_ALLOW are passed to seccomp(2) and accepted.
#[test]
fn filter_flags_reach_the_kernel() {
    let p = profile(
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls": [{"names": ["sync"], "action": "SCMP_ACT_ERRNO"}]}"#,
    );
    let call = install_call(&p);
    assert!(matches!(call, Sys::SeccompFilter { flags: 6, .. }));
    assert_eq!(in_child(&call, || sys0(libc::SYS_sync)), EPERM);
    assert_eq!(in_child(&call, || sys0(libc::SYS_getpid)), OK);
}

/// A large allow list (300 rules, one call each, as docker's profile is laid out): compile
/// and install times, printed (no timed assertion), with seccompiler's plain list of the
/// same calls for comparison.
#[test]
fn a_300_rule_allow_list_compiles_and_installs_quickly() {
    // The first 300 calls by number (most of them on docker's list), but mkdir, mkdirat
    // and sync.
    let mut by_nr = seccomp::SYSCALLS.to_vec();
    by_nr.sort_by_key(|(_, nr)| *nr);
    let names: Vec<&str> = by_nr
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !matches!(*n, "mkdir" | "mkdirat" | "sync"))
        .take(300)
        .collect();
    for must in ["write", "exit_group", "getpid"] {
        assert!(names.contains(&must), "{must}");
    }
    let rules: Vec<String> = names
        .iter()
        .map(|n| format!(r#"{{"names": ["{n}"], "action": "SCMP_ACT_ALLOW"}}"#))
        .collect();
    let p = profile(&format!(
        r#"{{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{}]}}"#,
        rules.join(",")
    ));
    let mut compile = Vec::new();
    let mut prog = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        prog = seccomp::compile(&p).unwrap();
        compile.push(t.elapsed());
    }
    let ours = install_times(&prog);
    // seccompiler's own layout: one jeq per call, in number order.
    let map = names
        .iter()
        .map(|n| (i64::from(seccomp::syscall_nr(n).unwrap()), vec![]))
        .collect();
    let plain: Vec<BpfInsn> = seccompiler::BpfProgram::try_from(
        seccompiler::SeccompFilter::new(
            map,
            seccompiler::SeccompAction::Errno(libc::EPERM as u32),
            seccompiler::SeccompAction::Allow,
            seccompiler::TargetArch::x86_64,
        )
        .unwrap(),
    )
    .unwrap()
    .iter()
    .map(|i| BpfInsn {
        code: i.code,
        jt: i.jt,
        jf: i.jf,
        k: i.k,
    })
    .collect();
    let linear = install_times(&plain);
    eprintln!(
        "300 rules: compiled in {:?} (median of 20; min {:?}), {} instructions; installed in {:?} \
         (median of 20; min {:?}); seccompiler's plain list of the same calls: {} instructions, \
         installed in {:?} (min {:?})",
        median(&compile),
        compile.iter().min().unwrap(),
        prog.len(),
        median(&ours),
        ours.iter().min().unwrap(),
        plain.len(),
        median(&linear),
        linear.iter().min().unwrap(),
    );
    // And the program is right: allowed calls work, others fail.
    let call = Sys::SeccompFilter {
        flags: 0,
        filter: Arc::new(prog),
    };
    assert_eq!(in_child(&call, || sys0(libc::SYS_getpid)), OK);
    assert_eq!(in_child(&call, || sys0(libc::SYS_sync)), EPERM);
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

/// How long seccomp(2) takes to install `prog`, in 20 children (each reports its time through
/// a pipe; the program must allow write and exit_group).
fn install_times(prog: &[BpfInsn]) -> Vec<Duration> {
    let call = Sys::SeccompFilter {
        flags: 0,
        filter: Arc::new(prog.to_vec()),
    };
    (0..20)
        .map(|_| {
            let mut fds = [0; 2];
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            let [r, w] = fds;
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                unsafe {
                    libc::close(r);
                    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                        libc::_exit(1);
                    }
                }
                let t = Instant::now();
                let ok = Linux.sys(&call, "").is_ok();
                let ns = t.elapsed().as_nanos() as u64;
                unsafe {
                    libc::write(w, ns.to_ne_bytes().as_ptr().cast(), 8);
                    libc::_exit(if ok { 0 } else { 2 });
                }
            }
            unsafe { libc::close(w) };
            let mut buf = [0u8; 8];
            let n = unsafe { libc::read(r, buf.as_mut_ptr().cast(), 8) };
            unsafe { libc::close(r) };
            let mut status = 0;
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
            assert_eq!(n, 8);
            Duration::from_nanos(u64::from_ne_bytes(buf))
        })
        .collect()
}
