//! The kernel seam: the only code in stepctr that talks to the kernel.
//!
//! Every system call a stage makes is described by a [`Sys`] value and goes through
//! [`Kernel::sys`]. Three implementations exist:
//! - [`linux::Linux`] makes the real call,
//! - [`narrate::Narrate`] wraps another kernel and prints each call in strace syntax,
//! - [`record::Record`] keeps one globally ordered list of calls for unit tests (no root needed).
//!
//! Writes to cgroupfs and procfs are system calls too (`openat` + `write`), so they go through
//! here as well.

pub mod bpf;
pub mod host;
pub mod linux;
pub mod narrate;
pub mod pace;
pub mod record;
pub mod relay;
pub mod render;
pub mod signals;
pub mod tty;

use std::ffi::CString;
use std::path::{Path, PathBuf};

pub use nix::errno::Errno;

/// One system call, with the arguments stepctr passes to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sys {
    Openat {
        path: PathBuf,
        flags: i32,
        mode: u32,
    },
    Write {
        fd: i32,
        data: Vec<u8>,
    },
    Close {
        fd: i32,
    },
    Mkdirat {
        path: PathBuf,
        mode: u32,
    },
    Unlinkat {
        path: PathBuf,
        flags: i32,
    },
    Renameat {
        old: PathBuf,
        new: PathBuf,
    },
    Symlinkat {
        target: PathBuf,
        linkpath: PathBuf,
    },
    Mknodat {
        path: PathBuf,
        mode: u32,
        major: u32,
        minor: u32,
    },
    Statfs {
        path: PathBuf,
    },
    Mount {
        source: Option<String>,
        target: PathBuf,
        fstype: Option<String>,
        flags: u64,
        data: Option<String>,
    },
    Umount2 {
        target: PathBuf,
        flags: i32,
    },
    Unshare {
        flags: i32,
    },
    Setns {
        fd: i32,
        nstype: i32,
    },
    Sethostname {
        name: String,
    },
    Chdir {
        path: PathBuf,
    },
    /// chroot(2): change the root directory of the caller (not its working directory).
    Chroot {
        path: PathBuf,
    },
    PivotRoot {
        new_root: PathBuf,
        put_old: PathBuf,
    },
    Prctl {
        option: i32,
        arg2: u64,
    },
    Kill {
        pid: i32,
        sig: i32,
    },
    /// setsid(2): a new session (and process group) led by the caller; returns its id.
    Setsid,
    /// dup3(2): make `newfd` refer to what `oldfd` refers to (a shell's `2>&1`).
    Dup3 {
        oldfd: i32,
        newfd: i32,
        flags: i32,
    },
    Wait4 {
        pid: i32,
        options: i32,
    },
    /// socket(2), for the interface ioctls.
    Socket {
        domain: i32,
        ty: i32,
    },
    /// An interface's flags: `ioctl(fd, SIOCGIFFLAGS, ...)` to read them (returned as the
    /// value), or `ioctl(fd, SIOCSIFFLAGS, ...)` to set them to `set`.
    IfFlags {
        fd: i32,
        name: String,
        set: Option<i32>,
    },
    /// open_tree(AT_FDCWD, path, OPEN_TREE_CLONE|OPEN_TREE_CLOEXEC): a detached copy of the
    /// mount at `path` (a bind mount not attached anywhere yet), as an fd.
    OpenTree {
        path: PathBuf,
    },
    /// move_mount(fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH): attach a detached mount
    /// (from [`Sys::OpenTree`]) at `target`, even in another mount namespace.
    MoveMount {
        fd: i32,
        target: PathBuf,
    },
    /// mount_setattr(fd, "", AT_EMPTY_PATH[|AT_RECURSIVE], {attr_set, attr_clr, ...}, 32)
    /// (Linux 5.12): change the attributes (MOUNT_ATTR_RDONLY, _NOSUID, ...) of the mount whose
    /// root `fd` is, and with `recursive` of every mount below it as well. A remount with
    /// `mount(MS_REMOUNT|MS_BIND|MS_REC)` changes the top mount only, whatever MS_REC says.
    MountSetattr {
        fd: i32,
        recursive: bool,
        attr_set: u64,
        attr_clr: u64,
        /// With MOUNT_ATTR_IDMAP: the user namespace whose id map the mount takes (else 0).
        userns_fd: i32,
    },
    /// A terminal ioctl(2) on a pseudo-terminal (see [`TtyOp`]).
    Tty {
        fd: i32,
        op: TtyOp,
    },
    Execve {
        path: PathBuf,
        argv: Vec<String>,
        envp: Vec<String>,
    },
    /// close_range(2): close (or with CLOSE_RANGE_CLOEXEC, mark close-on-exec) every fd from
    /// `first` to `last`.
    CloseRange {
        first: u32,
        last: u32,
        flags: u32,
    },
    /// getcwd(2), the system call: the working directory lands in `out` (NUL-terminated).
    /// Outside the caller's root the kernel prefixes it with `(unreachable)`.
    Getcwd {
        out: OutBuf,
    },
    Umask {
        mask: u32,
    },
    /// read(2) of at most `len` bytes (what was read is not kept: the OCI exec fifo's byte).
    Read {
        fd: i32,
        len: usize,
    },
    /// prlimit64(0, resource, {soft, hard}, NULL): a resource limit of our own (setrlimit).
    Prlimit {
        resource: u32,
        soft: u64,
        hard: u64,
    },
    /// setgroups(2): the supplementary groups (needs CAP_SETGID, so before setresgid/setresuid).
    Setgroups {
        groups: Vec<u32>,
    },
    /// setresgid(2) with the same gid as real, effective and saved group.
    Setresgid {
        gid: u32,
    },
    /// setresuid(2) with the same uid as real, effective and saved user; from a uid other
    /// than 0, the capabilities are gone.
    Setresuid {
        uid: u32,
    },
    /// capget(2) of the calling thread (`pid=0`): its effective, permitted and inheritable
    /// capability sets land in `out`, as the kernel writes them (two
    /// `struct __user_cap_data_struct`, see [`CapSets::from_kernel`]).
    Capget {
        out: OutBuf,
    },
    /// capset(2) of the calling thread: its effective, permitted and inheritable sets (bit N =
    /// capability N). Permitted can only shrink; effective must stay within permitted.
    Capset {
        sets: CapSets,
    },
    /// prctl(PR_CAP_AMBIENT, `op`, `cap`, 0, 0): the ambient set (PR_CAP_AMBIENT_CLEAR_ALL,
    /// PR_CAP_AMBIENT_RAISE, ...).
    CapAmbient {
        op: i32,
        cap: u32,
    },
    /// Run the calling thread on this one CPU only.
    SchedSetaffinity {
        cpu: usize,
    },
    /// fork(): made only through [`Kernel::spawn`]; listed here so it is rendered and recorded
    /// like every other call.
    Clone,
    /// clone3(2) with CLONE_INTO_CGROUP (cgroup v2): a fork whose child is born inside the
    /// cgroup open at `cgroup` (a directory fd), instead of moving itself there afterwards.
    /// Made only through [`Kernel::spawn_into`].
    Clone3 {
        cgroup: i32,
    },
    // ---- fd-relative calls, for unpacking layers safely (see image::unpack) ----
    /// openat2(2): `path` resolved relative to `dirfd` as `resolve` says. With
    /// RESOLVE_IN_ROOT, `..` and absolute symlinks stay inside `dirfd`, as if it were `/`.
    Openat2 {
        dirfd: i32,
        path: PathBuf,
        flags: i32,
        mode: u32,
        resolve: u64,
    },
    /// openat(2) relative to a directory fd.
    OpenatIn {
        dirfd: i32,
        path: PathBuf,
        flags: i32,
        mode: u32,
    },
    /// mkdirat(2) relative to a directory fd.
    MkdiratIn {
        dirfd: i32,
        path: PathBuf,
        mode: u32,
    },
    /// unlinkat(2) relative to a directory fd.
    UnlinkatIn {
        dirfd: i32,
        path: PathBuf,
        flags: i32,
    },
    /// symlinkat(2) relative to a directory fd.
    SymlinkatIn {
        target: PathBuf,
        dirfd: i32,
        linkpath: PathBuf,
    },
    /// mknodat(2) relative to a directory fd (char or block device, fifo).
    MknodatIn {
        dirfd: i32,
        path: PathBuf,
        mode: u32,
        major: u32,
        minor: u32,
    },
    /// linkat(2): a hardlink; `flags` 0 never follows a symlink at `oldpath`.
    Linkat {
        olddirfd: i32,
        oldpath: PathBuf,
        newdirfd: i32,
        newpath: PathBuf,
        flags: i32,
    },
    Fchown {
        fd: i32,
        uid: u32,
        gid: u32,
    },
    /// fchownat(2); AT_SYMLINK_NOFOLLOW changes a symlink itself.
    Fchownat {
        dirfd: i32,
        path: PathBuf,
        uid: u32,
        gid: u32,
        flags: i32,
    },
    Fchmod {
        fd: i32,
        mode: u32,
    },
    /// fchmodat(2) (the system call has no flags: never use it on a symlink).
    Fchmodat {
        dirfd: i32,
        path: PathBuf,
        mode: u32,
    },
    /// utimensat(2): access and modification times as (seconds, nanoseconds). Without a path
    /// it sets the times of `dirfd` itself.
    Utimensat {
        dirfd: i32,
        path: Option<PathBuf>,
        atime: (i64, i64),
        mtime: (i64, i64),
        flags: i32,
    },
    Fsetxattr {
        fd: i32,
        name: String,
        value: Vec<u8>,
    },
    /// lsetxattr(2): never follows a symlink at the end of `path`.
    Lsetxattr {
        path: PathBuf,
        name: String,
        value: Vec<u8>,
    },
    /// llistxattr(2): the names, NUL-terminated, land in `out`.
    Llistxattr {
        path: PathBuf,
        out: OutBuf,
    },
    Lremovexattr {
        path: PathBuf,
        name: String,
    },
    /// newfstatat(2) (fstatat): the file's `st_mode` is returned as the value.
    Newfstatat {
        dirfd: i32,
        path: PathBuf,
        flags: i32,
    },
    /// getdents64(2): raw `linux_dirent64` records land in `out` (see [`dirents`]).
    Getdents64 {
        fd: i32,
        out: OutBuf,
    },
    /// write(2) of file contents: `len` bytes of `data` from `start`. The data is shared, not
    /// copied, and only its first bytes are ever shown.
    WriteData {
        fd: i32,
        data: std::sync::Arc<Vec<u8>>,
        start: usize,
        len: usize,
    },
    /// seccomp(SECCOMP_SET_MODE_FILTER, flags, {len, filter}): from now on every system call
    /// of this thread, and of every program it execs or process it forks, is first judged by
    /// the classic-BPF program `filter` (allow, fail with an errno, or kill). The program is
    /// shared, not copied: the address strace shows is the one the kernel read.
    SeccompFilter {
        flags: u32,
        filter: std::sync::Arc<Vec<BpfInsn>>,
    },
    /// bind(2) of a unix socket to a path: `{sa_family=AF_UNIX, sun_path=...}`.
    BindUnix {
        fd: i32,
        path: PathBuf,
    },
    /// listen(2).
    Listen {
        fd: i32,
        backlog: i32,
    },
    /// accept4(fd, NULL, NULL, SOCK_CLOEXEC): the next connection, as a new fd.
    Accept4 {
        fd: i32,
    },
    /// connect(2) of a unix socket to a path.
    ConnectUnix {
        fd: i32,
        path: PathBuf,
    },
    /// sendmsg(2) of one byte (1) with `passed` in an SCM_RIGHTS message: hand over an fd.
    SendFd {
        fd: i32,
        passed: i32,
    },
    /// recvmsg(2) of one byte, with MSG_CMSG_CLOEXEC: an fd handed over with SCM_RIGHTS is
    /// returned in [`Ret::wstatus`] (-1 if none came); the value is the bytes read (0: the
    /// other side closed without handing anything).
    RecvFd {
        fd: i32,
    },
    // --- netlink (network stage) ---
    /// socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC, NETLINK_ROUTE): how `ip` talks to the kernel's
    /// network stack (links, addresses, routes).
    NetlinkSocket,
    /// sendmsg(2) of one rtnetlink request (header included) to the kernel (nl_pid 0).
    NetlinkSend {
        fd: i32,
        msg: Vec<u8>,
    },
    /// recvmsg(2) of the kernel's answer into `buf` (a 32 KiB buffer).
    NetlinkRecv {
        fd: i32,
        buf: OutBuf,
    },
    // --- end netlink ---
    // --- inet sockets (proxy) ---
    /// setsockopt(fd, level, name, [val], 4) of an int option (SO_REUSEADDR, ...).
    SetsockoptInt {
        fd: i32,
        level: i32,
        name: i32,
        val: i32,
    },
    /// bind(2) of an AF_INET socket to an IPv4 address and port:
    /// `{sa_family=AF_INET, sin_port=htons(P), sin_addr=inet_addr("A")}`.
    BindInet {
        fd: i32,
        addr: std::net::SocketAddrV4,
    },
    // --- end inet sockets (proxy) ---
}

/// One classic-BPF instruction, `struct sock_filter` of <linux/filter.h>, as seccomp(2) reads
/// it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BpfInsn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// A thread's three capability sets as capget(2)/capset(2) see them: bit N is capability N
/// (CAP_CHOWN = 0 ... CAP_CHECKPOINT_RESTORE = 40).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

impl CapSets {
    /// Decode what capget(2) writes with _LINUX_CAPABILITY_VERSION_3: two
    /// `struct __user_cap_data_struct { u32 effective, permitted, inheritable; }`, the low 32
    /// capabilities first. Missing bytes read as 0.
    pub fn from_kernel(raw: &[u8]) -> CapSets {
        let word = |i: usize| -> u64 {
            raw.get(i * 4..i * 4 + 4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, |b| u32::from_ne_bytes(b) as u64)
        };
        CapSets {
            effective: word(0) | word(3) << 32,
            permitted: word(1) | word(4) << 32,
            inheritable: word(2) | word(5) << 32,
        }
    }

    /// The layout capset(2) reads (see [`CapSets::from_kernel`]).
    pub fn to_kernel(self) -> [u32; 6] {
        let (e, p, i) = (self.effective, self.permitted, self.inheritable);
        [
            e as u32,
            p as u32,
            i as u32,
            (e >> 32) as u32,
            (p >> 32) as u32,
            (i >> 32) as u32,
        ]
    }
}

/// The terminal ioctls a pseudo-terminal needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtyOp {
    /// TIOCSPTLCK with 0: unlock the slave side of a new pty (unlockpt).
    Unlock,
    /// TIOCGPTN: the number N of the slave, /dev/pts/N (ptsname); returned as the value.
    PtyNumber,
    /// TIOCSCTTY with 0: make the terminal the caller's controlling terminal.
    SetCtty,
    /// TIOCSWINSZ: the window size (rows, columns).
    SetWinsize { rows: u16, cols: u16 },
}

impl Sys {
    /// The syscall name as strace prints it.
    pub fn name(&self) -> &'static str {
        match self {
            Sys::Openat { .. } => "openat",
            Sys::Write { .. } => "write",
            Sys::Close { .. } => "close",
            Sys::Mkdirat { .. } => "mkdirat",
            Sys::Unlinkat { .. } => "unlinkat",
            Sys::Renameat { .. } => "renameat",
            Sys::Symlinkat { .. } => "symlinkat",
            Sys::Mknodat { .. } => "mknodat",
            Sys::Statfs { .. } => "statfs",
            Sys::Mount { .. } => "mount",
            Sys::Umount2 { .. } => "umount2",
            Sys::Unshare { .. } => "unshare",
            Sys::Setns { .. } => "setns",
            Sys::Sethostname { .. } => "sethostname",
            Sys::Chdir { .. } => "chdir",
            Sys::Chroot { .. } => "chroot",
            Sys::PivotRoot { .. } => "pivot_root",
            Sys::Prctl { .. } => "prctl",
            Sys::Kill { .. } => "kill",
            Sys::Setsid => "setsid",
            Sys::Dup3 { .. } => "dup3",
            Sys::Wait4 { .. } => "wait4",
            Sys::Socket { .. } => "socket",
            Sys::IfFlags { .. } => "ioctl",
            Sys::Tty { .. } => "ioctl",
            Sys::OpenTree { .. } => "open_tree",
            Sys::MoveMount { .. } => "move_mount",
            Sys::MountSetattr { .. } => "mount_setattr",
            Sys::Execve { .. } => "execve",
            Sys::CloseRange { .. } => "close_range",
            Sys::Getcwd { .. } => "getcwd",
            Sys::Umask { .. } => "umask",
            Sys::Read { .. } => "read",
            Sys::Prlimit { .. } => "prlimit64",
            Sys::Setgroups { .. } => "setgroups",
            Sys::Setresgid { .. } => "setresgid",
            Sys::Setresuid { .. } => "setresuid",
            Sys::Capget { .. } => "capget",
            Sys::Capset { .. } => "capset",
            Sys::CapAmbient { .. } => "prctl",
            Sys::SchedSetaffinity { .. } => "sched_setaffinity",
            Sys::Clone => "clone",
            Sys::Clone3 { .. } => "clone3",
            Sys::Openat2 { .. } => "openat2",
            Sys::OpenatIn { .. } => "openat",
            Sys::MkdiratIn { .. } => "mkdirat",
            Sys::UnlinkatIn { .. } => "unlinkat",
            Sys::SymlinkatIn { .. } => "symlinkat",
            Sys::MknodatIn { .. } => "mknodat",
            Sys::Linkat { .. } => "linkat",
            Sys::Fchown { .. } => "fchown",
            Sys::Fchownat { .. } => "fchownat",
            Sys::Fchmod { .. } => "fchmod",
            Sys::Fchmodat { .. } => "fchmodat",
            Sys::Utimensat { .. } => "utimensat",
            Sys::Fsetxattr { .. } => "fsetxattr",
            Sys::Lsetxattr { .. } => "lsetxattr",
            Sys::Llistxattr { .. } => "llistxattr",
            Sys::Lremovexattr { .. } => "lremovexattr",
            Sys::Newfstatat { .. } => "newfstatat",
            Sys::Getdents64 { .. } => "getdents64",
            Sys::WriteData { .. } => "write",
            Sys::SeccompFilter { .. } => "seccomp",
            Sys::BindUnix { .. } => "bind",
            Sys::Listen { .. } => "listen",
            Sys::Accept4 { .. } => "accept4",
            Sys::ConnectUnix { .. } => "connect",
            Sys::SendFd { .. } => "sendmsg",
            Sys::RecvFd { .. } => "recvmsg",
            Sys::NetlinkSocket => "socket",
            Sys::NetlinkSend { .. } => "sendmsg",
            Sys::NetlinkRecv { .. } => "recvmsg",
            // --- inet sockets (proxy) ---
            Sys::SetsockoptInt { .. } => "setsockopt",
            Sys::BindInet { .. } => "bind",
            // --- end inet sockets (proxy) ---
        }
    }
}

/// A buffer the kernel fills (getdents64, llistxattr): shared between the call and its caller,
/// so the call can be narrated and recorded like any other. Two are equal when they are the
/// same buffer.
#[derive(Debug, Clone, Default)]
pub struct OutBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl OutBuf {
    pub fn new() -> OutBuf {
        OutBuf::default()
    }

    /// What the last call put in the buffer.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// Run `f` on the buffer (the real kernel fills it this way).
    pub fn with<T>(&self, f: impl FnOnce(&mut Vec<u8>) -> T) -> Option<T> {
        self.0.lock().ok().map(|mut b| f(&mut b))
    }
}

impl PartialEq for OutBuf {
    fn eq(&self, other: &OutBuf) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for OutBuf {}

/// One entry of a getdents64 buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirent {
    pub ino: u64,
    pub off: i64,
    pub reclen: u16,
    /// DT_DIR, DT_REG, DT_LNK, ... (DT_UNKNOWN when the filesystem does not say).
    pub kind: u8,
    pub name: Vec<u8>,
}

/// Decode the `linux_dirent64` records of a getdents64 buffer.
pub fn dirents(buf: &[u8]) -> Vec<Dirent> {
    let mut out = Vec::new();
    let mut at = 0;
    // struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
    while at + 19 <= buf.len() {
        let ino = u64::from_ne_bytes(buf[at..at + 8].try_into().unwrap_or([0; 8]));
        let off = i64::from_ne_bytes(buf[at + 8..at + 16].try_into().unwrap_or([0; 8]));
        let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]);
        if reclen < 19 || at + reclen as usize > buf.len() {
            break;
        }
        let kind = buf[at + 18];
        let name_area = &buf[at + 19..at + reclen as usize];
        let end = name_area
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(name_area.len());
        out.push(Dirent {
            ino,
            off,
            reclen,
            kind,
            name: name_area[..end].to_vec(),
        });
        at += reclen as usize;
    }
    out
}

/// What a successful call returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ret {
    /// The return value (an fd, a pid, a byte count, 0...). For statfs, `f_type`.
    pub val: i64,
    /// For wait4: the raw wait status.
    pub wstatus: i32,
}

/// A failed call: which call, and the errno.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{call}: {} ({})", errno_name(*.errno), .errno.desc())]
pub struct SysError {
    /// The call in strace syntax (short form).
    pub call: String,
    pub errno: Errno,
}

pub fn errno_name(e: Errno) -> String {
    format!("{e:?}")
}

impl SysError {
    pub fn new(call: &Sys, errno: Errno) -> Self {
        SysError {
            call: render::call(call, render::Detail::Short, &|_| None),
            errno,
        }
    }
}

pub type KResult<T> = Result<T, SysError>;

/// A child process made by [`Kernel::spawn`].
#[derive(Debug)]
pub struct Child {
    pub pid: i32,
    /// Read end of the child's error channel (closed on exec or exit), or -1 once read.
    pub err_fd: std::cell::Cell<i32>,
}

/// How a child ended or paused, decoded from a wait status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStatus {
    Exited(i32),
    Signaled(i32),
    Stopped(i32),
}

impl WaitStatus {
    pub fn from_raw(status: i32) -> WaitStatus {
        if libc::WIFEXITED(status) {
            WaitStatus::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            WaitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            WaitStatus::Stopped(libc::WSTOPSIG(status))
        }
    }

    /// The exit code a shell would report: the code, or 128 + signal.
    pub fn exit_code(self) -> i32 {
        match self {
            WaitStatus::Exited(c) => c,
            WaitStatus::Signaled(s) | WaitStatus::Stopped(s) => 128 + s,
        }
    }
}

/// The body of a child process. Returning `Err` reports the message to the parent.
pub type ChildBody<'a> = dyn FnMut() -> anyhow::Result<()> + 'a;

/// Everything stepctr asks of the kernel.
pub trait Kernel {
    /// Make one system call.
    fn sys(&self, call: &Sys, why: &str) -> Result<Ret, Errno>;

    /// fork(): run `body` in a new child process; returns in the parent.
    /// The child exits with 0 when `body` returns Ok, or reports the error and exits with 1.
    fn spawn(&self, why: &str, body: &mut ChildBody<'_>) -> KResult<Child>;

    /// clone3(CLONE_INTO_CGROUP): like [`Kernel::spawn`], but the child is born inside the
    /// cgroup v2 directory open at `cgroup_fd`, so nothing of it ever runs outside the
    /// container's limits and no write to `cgroup.procs` is needed. Fails (ENOSYS, E2BIG,
    /// EINVAL...) without making a child; the caller may then fork and join as on v1.
    fn spawn_into(&self, cgroup_fd: i32, why: &str, body: &mut ChildBody<'_>) -> KResult<Child>;

    /// Wait until the child has exec'd or ended; `Some(message)` if its body failed.
    fn child_error(&self, child: &Child) -> Option<String>;

    /// The calling process's pid (getpid is not narrated: it is bookkeeping).
    fn getpid(&self) -> i32;

    /// Does this process have a single thread? Only then may it unshare or setns a mount
    /// namespace itself (threads share their root and working directory); otherwise a forked
    /// helper does it. (Bookkeeping, not narrated.)
    fn single_threaded(&self) -> bool {
        host::thread_count() == 1
    }

    /// Tell the narration that child `pid` (`inside` in its own PID namespace) made `call`
    /// successfully, when the child itself cannot say so: an execve that succeeded never
    /// returns, and a process that stopped itself is killed before it runs again.
    fn report(&self, _pid: i32, _inside: i32, _call: &Sys, _why: &str) {}

    /// A stage header (narration only).
    fn header(&self, _step: usize, _of: usize, _stage: &str, _what: &str) {}

    /// A line of narration that is not a call (prefixed with `#`).
    fn note(&self, _text: &str) {}

    /// An HTTP exchange (narration only): `GET https://host/v2/ -> 401 Unauthorized`.
    /// `outcome` is the status line, or the error when no answer came.
    fn http(
        &self,
        _method: &str,
        _url: &str,
        _outcome: Result<&str, &str>,
        _took: std::time::Duration,
        _why: &str,
    ) {
    }

    /// Start a run of many similar calls (unpacking a layer: one or more calls per file). At the
    /// default level they are counted, not printed, and `bulk_end` prints one summary line;
    /// `-v` prints every call as usual. Failed calls are always printed.
    fn bulk_begin(&self, _what: &str) {}

    fn bulk_end(&self) {}

    /// The fds the narration itself writes to, above stderr (a `--trace-file`, or the copy
    /// kept when stderr was replaced): a process that closes its fds by range spares them, or
    /// the rest of its narration is lost. Bookkeeping, not narrated.
    fn narration_fds(&self) -> Vec<i32> {
        Vec::new()
    }

    // ---- one typed method per call; each goes through `sys` ----

    fn call(&self, c: Sys, why: &str) -> KResult<Ret> {
        self.sys(&c, why).map_err(|e| SysError::new(&c, e))
    }

    fn openat(&self, path: &Path, flags: i32, mode: u32, why: &str) -> KResult<i32> {
        let c = Sys::Openat {
            path: path.to_path_buf(),
            flags,
            mode,
        };
        self.call(c, why).map(|r| r.val as i32)
    }

    fn write(&self, fd: i32, data: &[u8], why: &str) -> KResult<usize> {
        let c = Sys::Write {
            fd,
            data: data.to_vec(),
        };
        self.call(c, why).map(|r| r.val as usize)
    }

    fn close(&self, fd: i32) -> KResult<()> {
        self.call(Sys::Close { fd }, "").map(|_| ())
    }

    /// Write a file such as a cgroup or procfs control file: `openat` + `write` + `close`.
    fn write_file(&self, path: &Path, data: &str, why: &str) -> KResult<()> {
        let fd = self.openat(path, libc::O_WRONLY | libc::O_CLOEXEC, 0, "")?;
        let res = self.write(fd, data.as_bytes(), why);
        let _ = self.close(fd);
        res.map(|_| ())
    }

    fn mkdirat(&self, path: &Path, mode: u32, why: &str) -> KResult<()> {
        let c = Sys::Mkdirat {
            path: path.to_path_buf(),
            mode,
        };
        self.call(c, why).map(|_| ())
    }

    fn unlinkat(&self, path: &Path, flags: i32, why: &str) -> KResult<()> {
        let c = Sys::Unlinkat {
            path: path.to_path_buf(),
            flags,
        };
        self.call(c, why).map(|_| ())
    }

    fn renameat(&self, old: &Path, new: &Path, why: &str) -> KResult<()> {
        let c = Sys::Renameat {
            old: old.to_path_buf(),
            new: new.to_path_buf(),
        };
        self.call(c, why).map(|_| ())
    }

    fn symlinkat(&self, target: &Path, linkpath: &Path, why: &str) -> KResult<()> {
        let c = Sys::Symlinkat {
            target: target.to_path_buf(),
            linkpath: linkpath.to_path_buf(),
        };
        self.call(c, why).map(|_| ())
    }

    fn mknodat(&self, path: &Path, mode: u32, major: u32, minor: u32, why: &str) -> KResult<()> {
        let c = Sys::Mknodat {
            path: path.to_path_buf(),
            mode,
            major,
            minor,
        };
        self.call(c, why).map(|_| ())
    }

    /// statfs(2); returns the filesystem's magic number (`f_type`).
    fn statfs(&self, path: &Path, why: &str) -> KResult<i64> {
        let c = Sys::Statfs {
            path: path.to_path_buf(),
        };
        self.call(c, why).map(|r| r.val)
    }

    fn mount(
        &self,
        source: Option<&str>,
        target: &Path,
        fstype: Option<&str>,
        flags: u64,
        data: Option<&str>,
        why: &str,
    ) -> KResult<()> {
        let c = Sys::Mount {
            source: source.map(str::to_string),
            target: target.to_path_buf(),
            fstype: fstype.map(str::to_string),
            flags,
            data: data.map(str::to_string),
        };
        self.call(c, why).map(|_| ())
    }

    fn umount2(&self, target: &Path, flags: i32, why: &str) -> KResult<()> {
        let c = Sys::Umount2 {
            target: target.to_path_buf(),
            flags,
        };
        self.call(c, why).map(|_| ())
    }

    fn unshare(&self, flags: i32, why: &str) -> KResult<()> {
        self.call(Sys::Unshare { flags }, why).map(|_| ())
    }

    fn setns(&self, fd: i32, nstype: i32, why: &str) -> KResult<()> {
        self.call(Sys::Setns { fd, nstype }, why).map(|_| ())
    }

    fn sethostname(&self, name: &str, why: &str) -> KResult<()> {
        let c = Sys::Sethostname {
            name: name.to_string(),
        };
        self.call(c, why).map(|_| ())
    }

    fn chroot(&self, path: &Path, why: &str) -> KResult<()> {
        let c = Sys::Chroot {
            path: path.to_path_buf(),
        };
        self.call(c, why).map(|_| ())
    }

    fn chdir(&self, path: &Path, why: &str) -> KResult<()> {
        let c = Sys::Chdir {
            path: path.to_path_buf(),
        };
        self.call(c, why).map(|_| ())
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path, why: &str) -> KResult<()> {
        let c = Sys::PivotRoot {
            new_root: new_root.to_path_buf(),
            put_old: put_old.to_path_buf(),
        };
        self.call(c, why).map(|_| ())
    }

    fn prctl(&self, option: i32, arg2: u64, why: &str) -> KResult<()> {
        self.call(Sys::Prctl { option, arg2 }, why).map(|_| ())
    }

    fn kill(&self, pid: i32, sig: i32, why: &str) -> KResult<()> {
        self.call(Sys::Kill { pid, sig }, why).map(|_| ())
    }

    /// setsid(2): returns the new session's id (our pid).
    fn setsid(&self, why: &str) -> KResult<i32> {
        self.call(Sys::Setsid, why).map(|r| r.val as i32)
    }

    /// open_tree with OPEN_TREE_CLONE: a detached bind mount of `path`; returns its fd.
    fn open_tree(&self, path: &Path, why: &str) -> KResult<i32> {
        self.call(
            Sys::OpenTree {
                path: path.to_path_buf(),
            },
            why,
        )
        .map(|r| r.val as i32)
    }

    /// move_mount of a detached mount fd onto `target`.
    fn move_mount(&self, fd: i32, target: &Path, why: &str) -> KResult<()> {
        self.call(
            Sys::MoveMount {
                fd,
                target: target.to_path_buf(),
            },
            why,
        )
        .map(|_| ())
    }

    /// mount_setattr on the mount whose root `fd` is (AT_EMPTY_PATH): set the MOUNT_ATTR_*
    /// bits of `attr_set`, clear those of `attr_clr`; `recursive` (AT_RECURSIVE) reaches every
    /// mount below it too.
    fn mount_setattr(
        &self,
        fd: i32,
        recursive: bool,
        attr_set: u64,
        attr_clr: u64,
        why: &str,
    ) -> KResult<()> {
        let c = Sys::MountSetattr {
            fd,
            recursive,
            attr_set,
            attr_clr,
            userns_fd: 0,
        };
        self.call(c, why).map(|_| ())
    }

    /// mount_setattr(MOUNT_ATTR_IDMAP) on a detached mount (from open_tree): from now on it
    /// shows its files' owners through the id map of the user namespace `userns_fd` (Linux
    /// 5.12; the filesystem must support it: ext4, xfs, btrfs, tmpfs since 6.3...).
    fn mount_setattr_idmap(&self, fd: i32, userns_fd: i32, why: &str) -> KResult<()> {
        let c = Sys::MountSetattr {
            fd,
            recursive: false,
            attr_set: libc::MOUNT_ATTR_IDMAP,
            attr_clr: 0,
            userns_fd,
        };
        self.call(c, why).map(|_| ())
    }

    /// A unix stream socket (AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC); returns its fd.
    fn unix_socket(&self, why: &str) -> KResult<i32> {
        let c = Sys::Socket {
            domain: libc::AF_UNIX,
            ty: libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
        };
        self.call(c, why).map(|r| r.val as i32)
    }

    /// bind(2) a unix socket to `path` (which must not exist).
    fn bind_unix(&self, fd: i32, path: &Path, why: &str) -> KResult<()> {
        let c = Sys::BindUnix {
            fd,
            path: path.to_path_buf(),
        };
        self.call(c, why).map(|_| ())
    }

    fn listen(&self, fd: i32, backlog: i32, why: &str) -> KResult<()> {
        self.call(Sys::Listen { fd, backlog }, why).map(|_| ())
    }

    /// accept4(2) with SOCK_CLOEXEC; returns the connection's fd.
    fn accept4(&self, fd: i32, why: &str) -> KResult<i32> {
        self.call(Sys::Accept4 { fd }, why).map(|r| r.val as i32)
    }

    /// connect(2) a unix socket to `path`.
    fn connect_unix(&self, fd: i32, path: &Path, why: &str) -> KResult<()> {
        let c = Sys::ConnectUnix {
            fd,
            path: path.to_path_buf(),
        };
        self.call(c, why).map(|_| ())
    }

    /// Hand `passed` over the connected unix socket `fd` (sendmsg with SCM_RIGHTS).
    fn send_fd(&self, fd: i32, passed: i32, why: &str) -> KResult<()> {
        self.call(Sys::SendFd { fd, passed }, why).map(|_| ())
    }

    /// Receive an fd handed over the connected unix socket `fd` (recvmsg, SCM_RIGHTS,
    /// MSG_CMSG_CLOEXEC); None if the other side closed without handing one.
    fn recv_fd(&self, fd: i32, why: &str) -> KResult<Option<i32>> {
        self.call(Sys::RecvFd { fd }, why)
            .map(|r| (r.val > 0 && r.wstatus >= 0).then_some(r.wstatus))
    }

    // --- netlink (network stage) ---
    /// A NETLINK_ROUTE socket; returns its fd.
    fn netlink_socket(&self, why: &str) -> KResult<i32> {
        self.call(Sys::NetlinkSocket, why).map(|r| r.val as i32)
    }

    /// Send one rtnetlink message (see [`Sys::NetlinkSend`]).
    fn netlink_send(&self, fd: i32, msg: &[u8], why: &str) -> KResult<()> {
        let c = Sys::NetlinkSend {
            fd,
            msg: msg.to_vec(),
        };
        self.call(c, why).map(|_| ())
    }

    /// Receive the kernel's answer (one datagram of netlink messages).
    fn netlink_recv(&self, fd: i32, why: &str) -> KResult<Vec<u8>> {
        let buf = OutBuf::new();
        let c = Sys::NetlinkRecv {
            fd,
            buf: buf.clone(),
        };
        self.call(c, why).map(|_| buf.bytes())
    }
    // --- end netlink ---

    // --- inet sockets (proxy) ---

    /// An IPv4 socket: socket(AF_INET, `ty`, IPPROTO_IP), `ty` being SOCK_STREAM or
    /// SOCK_DGRAM with flags (SOCK_CLOEXEC...); returns its fd.
    fn inet_socket(&self, ty: i32, why: &str) -> KResult<i32> {
        let c = Sys::Socket {
            domain: libc::AF_INET,
            ty,
        };
        self.call(c, why).map(|r| r.val as i32)
    }

    /// setsockopt(2) of an int option.
    fn setsockopt_int(&self, fd: i32, level: i32, name: i32, val: i32, why: &str) -> KResult<()> {
        let c = Sys::SetsockoptInt {
            fd,
            level,
            name,
            val,
        };
        self.call(c, why).map(|_| ())
    }

    /// bind(2) an AF_INET socket to `addr`.
    fn bind_inet(&self, fd: i32, addr: std::net::SocketAddrV4, why: &str) -> KResult<()> {
        self.call(Sys::BindInet { fd, addr }, why).map(|_| ())
    }

    // --- end inet sockets (proxy) ---

    /// A terminal ioctl on a pty; the value is the pty number for [`TtyOp::PtyNumber`].
    fn tty(&self, fd: i32, op: TtyOp, why: &str) -> KResult<i64> {
        self.call(Sys::Tty { fd, op }, why).map(|r| r.val)
    }

    fn dup3(&self, oldfd: i32, newfd: i32, flags: i32, why: &str) -> KResult<i32> {
        self.call(
            Sys::Dup3 {
                oldfd,
                newfd,
                flags,
            },
            why,
        )
        .map(|r| r.val as i32)
    }

    fn wait4(&self, pid: i32, options: i32, why: &str) -> KResult<WaitStatus> {
        self.call(Sys::Wait4 { pid, options }, why)
            .map(|r| WaitStatus::from_raw(r.wstatus))
    }

    /// umask(2): returns the previous mask.
    fn umask(&self, mask: u32, why: &str) -> KResult<u32> {
        self.call(Sys::Umask { mask }, why).map(|r| r.val as u32)
    }

    fn setgroups(&self, groups: &[u32], why: &str) -> KResult<()> {
        let c = Sys::Setgroups {
            groups: groups.to_vec(),
        };
        self.call(c, why).map(|_| ())
    }

    fn setresgid(&self, gid: u32, why: &str) -> KResult<()> {
        self.call(Sys::Setresgid { gid }, why).map(|_| ())
    }

    fn setresuid(&self, uid: u32, why: &str) -> KResult<()> {
        self.call(Sys::Setresuid { uid }, why).map(|_| ())
    }

    /// capget(2): the calling thread's effective, permitted and inheritable sets.
    fn capget(&self, why: &str) -> KResult<CapSets> {
        let out = OutBuf::new();
        self.call(Sys::Capget { out: out.clone() }, why)?;
        Ok(CapSets::from_kernel(&out.bytes()))
    }

    /// capset(2): set the calling thread's effective, permitted and inheritable sets.
    fn capset(&self, sets: CapSets, why: &str) -> KResult<()> {
        self.call(Sys::Capset { sets }, why).map(|_| ())
    }

    /// prctl(PR_CAP_AMBIENT, op, cap, 0, 0).
    fn cap_ambient(&self, op: i32, cap: u32, why: &str) -> KResult<()> {
        self.call(Sys::CapAmbient { op, cap }, why).map(|_| ())
    }

    fn sched_setaffinity(&self, cpu: usize, why: &str) -> KResult<()> {
        self.call(Sys::SchedSetaffinity { cpu }, why).map(|_| ())
    }

    // ---- fd-relative calls, for unpacking layers ----

    fn openat2(
        &self,
        dirfd: i32,
        path: &Path,
        flags: i32,
        mode: u32,
        resolve: u64,
        why: &str,
    ) -> KResult<i32> {
        let c = Sys::Openat2 {
            dirfd,
            path: path.to_path_buf(),
            flags,
            mode,
            resolve,
        };
        // With RESOLVE_IN_ROOT (and friends) the kernel answers EAGAIN when a rename or mount
        // elsewhere raced with the lookup; openat2(2) says to try again. Each try is narrated.
        let mut tries = 0;
        loop {
            match self.call(c.clone(), why) {
                Err(e) if e.errno == Errno::EAGAIN && tries < 16 => tries += 1,
                r => return r.map(|r| r.val as i32),
            }
        }
    }

    fn openat_in(&self, dirfd: i32, path: &Path, flags: i32, mode: u32, why: &str) -> KResult<i32> {
        let c = Sys::OpenatIn {
            dirfd,
            path: path.to_path_buf(),
            flags,
            mode,
        };
        self.call(c, why).map(|r| r.val as i32)
    }

    fn mkdirat_in(&self, dirfd: i32, path: &Path, mode: u32, why: &str) -> KResult<()> {
        let c = Sys::MkdiratIn {
            dirfd,
            path: path.to_path_buf(),
            mode,
        };
        self.call(c, why).map(|_| ())
    }

    fn unlinkat_in(&self, dirfd: i32, path: &Path, flags: i32, why: &str) -> KResult<()> {
        let c = Sys::UnlinkatIn {
            dirfd,
            path: path.to_path_buf(),
            flags,
        };
        self.call(c, why).map(|_| ())
    }

    fn symlinkat_in(&self, target: &Path, dirfd: i32, linkpath: &Path, why: &str) -> KResult<()> {
        let c = Sys::SymlinkatIn {
            target: target.to_path_buf(),
            dirfd,
            linkpath: linkpath.to_path_buf(),
        };
        self.call(c, why).map(|_| ())
    }

    fn mknodat_in(
        &self,
        dirfd: i32,
        path: &Path,
        mode: u32,
        major: u32,
        minor: u32,
        why: &str,
    ) -> KResult<()> {
        let c = Sys::MknodatIn {
            dirfd,
            path: path.to_path_buf(),
            mode,
            major,
            minor,
        };
        self.call(c, why).map(|_| ())
    }

    fn linkat(
        &self,
        olddirfd: i32,
        oldpath: &Path,
        newdirfd: i32,
        newpath: &Path,
        flags: i32,
        why: &str,
    ) -> KResult<()> {
        let c = Sys::Linkat {
            olddirfd,
            oldpath: oldpath.to_path_buf(),
            newdirfd,
            newpath: newpath.to_path_buf(),
            flags,
        };
        self.call(c, why).map(|_| ())
    }

    fn fchown(&self, fd: i32, uid: u32, gid: u32, why: &str) -> KResult<()> {
        self.call(Sys::Fchown { fd, uid, gid }, why).map(|_| ())
    }

    fn fchownat(
        &self,
        dirfd: i32,
        path: &Path,
        uid: u32,
        gid: u32,
        flags: i32,
        why: &str,
    ) -> KResult<()> {
        let c = Sys::Fchownat {
            dirfd,
            path: path.to_path_buf(),
            uid,
            gid,
            flags,
        };
        self.call(c, why).map(|_| ())
    }

    fn fchmod(&self, fd: i32, mode: u32, why: &str) -> KResult<()> {
        self.call(Sys::Fchmod { fd, mode }, why).map(|_| ())
    }

    fn fchmodat(&self, dirfd: i32, path: &Path, mode: u32, why: &str) -> KResult<()> {
        let c = Sys::Fchmodat {
            dirfd,
            path: path.to_path_buf(),
            mode,
        };
        self.call(c, why).map(|_| ())
    }

    fn utimensat(
        &self,
        dirfd: i32,
        path: Option<&Path>,
        atime: (i64, i64),
        mtime: (i64, i64),
        flags: i32,
        why: &str,
    ) -> KResult<()> {
        let c = Sys::Utimensat {
            dirfd,
            path: path.map(Path::to_path_buf),
            atime,
            mtime,
            flags,
        };
        self.call(c, why).map(|_| ())
    }

    fn fsetxattr(&self, fd: i32, name: &str, value: &[u8], why: &str) -> KResult<()> {
        let c = Sys::Fsetxattr {
            fd,
            name: name.to_string(),
            value: value.to_vec(),
        };
        self.call(c, why).map(|_| ())
    }

    fn lsetxattr(&self, path: &Path, name: &str, value: &[u8], why: &str) -> KResult<()> {
        let c = Sys::Lsetxattr {
            path: path.to_path_buf(),
            name: name.to_string(),
            value: value.to_vec(),
        };
        self.call(c, why).map(|_| ())
    }

    /// The names of the extended attributes at `path` (not following a final symlink).
    fn llistxattr(&self, path: &Path, why: &str) -> KResult<Vec<String>> {
        let out = OutBuf::new();
        let c = Sys::Llistxattr {
            path: path.to_path_buf(),
            out: out.clone(),
        };
        self.call(c, why)?;
        Ok(out
            .bytes()
            .split(|&b| b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect())
    }

    fn lremovexattr(&self, path: &Path, name: &str, why: &str) -> KResult<()> {
        let c = Sys::Lremovexattr {
            path: path.to_path_buf(),
            name: name.to_string(),
        };
        self.call(c, why).map(|_| ())
    }

    /// fstatat(2); returns `st_mode`.
    fn newfstatat(&self, dirfd: i32, path: &Path, flags: i32, why: &str) -> KResult<u32> {
        let c = Sys::Newfstatat {
            dirfd,
            path: path.to_path_buf(),
            flags,
        };
        self.call(c, why).map(|r| r.val as u32)
    }

    /// Every entry of the directory open at `fd` (getdents64 until it returns 0), `.` and
    /// `..` included.
    fn read_dir_fd(&self, fd: i32, why: &str) -> KResult<Vec<Dirent>> {
        let mut all = Vec::new();
        loop {
            let out = OutBuf::new();
            let c = Sys::Getdents64 {
                fd,
                out: out.clone(),
            };
            let n = self.call(c, why)?.val;
            if n <= 0 {
                return Ok(all);
            }
            all.extend(dirents(&out.bytes()));
        }
    }

    /// write(2) of `len` bytes of `data` from `start` (file contents; see [`Sys::WriteData`]).
    fn write_data(
        &self,
        fd: i32,
        data: &std::sync::Arc<Vec<u8>>,
        start: usize,
        len: usize,
        why: &str,
    ) -> KResult<usize> {
        let c = Sys::WriteData {
            fd,
            data: data.clone(),
            start,
            len,
        };
        self.call(c, why).map(|r| r.val as usize)
    }

    /// seccomp(SECCOMP_SET_MODE_FILTER): install the BPF program `filter` (it needs
    /// no_new_privs, or CAP_SYS_ADMIN).
    fn seccomp_filter(
        &self,
        flags: u32,
        filter: &std::sync::Arc<Vec<BpfInsn>>,
        why: &str,
    ) -> KResult<()> {
        let c = Sys::SeccompFilter {
            flags,
            filter: filter.clone(),
        };
        self.call(c, why).map(|_| ())
    }

    /// Bring a network interface up: a socket to talk about interfaces, read the flags,
    /// write them back with IFF_UP added.
    fn if_up(&self, name: &str, why: &str) -> KResult<()> {
        let socket = Sys::Socket {
            domain: libc::AF_INET,
            ty: libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
        };
        let fd = self
            .call(
                socket,
                "a socket, to ask the kernel about network interfaces",
            )?
            .val as i32;
        let result = (|| {
            let get = Sys::IfFlags {
                fd,
                name: name.to_string(),
                set: None,
            };
            let flags = self.call(get, "read the interface's flags")?.val as i32;
            let set = Sys::IfFlags {
                fd,
                name: name.to_string(),
                set: Some(flags | libc::IFF_UP | libc::IFF_RUNNING),
            };
            self.call(set, why).map(|_| ())
        })();
        let _ = self.close(fd);
        result
    }

    /// close_range(2) of the fds `first..=last`.
    fn close_range(&self, first: u32, last: u32, flags: u32, why: &str) -> KResult<()> {
        let c = Sys::CloseRange { first, last, flags };
        self.call(c, why).map(|_| ())
    }

    /// getcwd(2), the raw system call (glibc's wrapper hides an unreachable directory behind
    /// ENOENT): the working directory as the kernel names it.
    fn getcwd(&self, why: &str) -> KResult<PathBuf> {
        use std::os::unix::ffi::OsStringExt;
        let out = OutBuf::new();
        self.call(Sys::Getcwd { out: out.clone() }, why)?;
        let mut bytes = out.bytes();
        if let Some(end) = bytes.iter().position(|&b| b == 0) {
            bytes.truncate(end);
        }
        Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
    }

    /// read(2) of at most `len` bytes, discarded; returns how many were read (0: end of file).
    fn read(&self, fd: i32, len: usize, why: &str) -> KResult<usize> {
        self.call(Sys::Read { fd, len }, why)
            .map(|r| r.val as usize)
    }

    /// prlimit64(2) on ourselves: setrlimit(resource, {soft, hard}).
    fn prlimit(&self, resource: u32, soft: u64, hard: u64, why: &str) -> KResult<()> {
        let c = Sys::Prlimit {
            resource,
            soft,
            hard,
        };
        self.call(c, why).map(|_| ())
    }

    /// execve(2). Returns only on failure (the recording kernel returns Ok).
    fn execve(&self, path: &Path, argv: &[String], envp: &[String], why: &str) -> KResult<()> {
        let c = Sys::Execve {
            path: path.to_path_buf(),
            argv: argv.to_vec(),
            envp: envp.to_vec(),
        };
        self.call(c, why).map(|_| ())
    }
}

static NOT_FOR_CHILDREN: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// Mark an fd that a child process must not keep: a lock held through it would otherwise stay
/// held for as long as the child lives (flock locks belong to the open file, which a fork shares).
pub fn not_for_children(fd: i32) {
    if let Ok(mut v) = NOT_FOR_CHILDREN.lock() {
        v.push(fd);
    }
}

/// The fd is closed by its owner: forget it.
pub fn forget_not_for_children(fd: i32) {
    if let Ok(mut v) = NOT_FOR_CHILDREN.lock() {
        v.retain(|f| *f != fd);
    }
}

/// In a freshly forked child: close the fds marked with [`not_for_children`].
pub(crate) fn close_parent_only_fds() {
    if let Ok(mut v) = NOT_FOR_CHILDREN.lock() {
        for fd in v.iter() {
            // SAFETY: closing the child's copy; the parent's fd and its lock are unaffected.
            unsafe { libc::close(*fd) };
        }
        // Those numbers are free in this process now: a grandchild (the shim's PID 1) must
        // not close whatever reuses them.
        v.clear();
    }
}

/// A path as a C string; paths with NUL bytes cannot reach the kernel.
pub(crate) fn cstr(p: &Path) -> Result<CString, Errno> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

pub(crate) fn cstring(s: &str) -> Result<CString, Errno> {
    CString::new(s).map_err(|_| Errno::EINVAL)
}
