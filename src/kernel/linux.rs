//! The real kernel: each [`Sys`] becomes exactly one system call.
//!
//! We call libc's thin wrappers with the `*at` forms directly (`mkdirat`, `unlinkat`, ...) so the
//! call that strace sees is the call we narrate, on every architecture.

use super::{cstr, cstring, Child, ChildBody, Errno, KResult, Kernel, Ret, Sys, SysError};
use std::ffi::CString;

#[derive(Debug, Default, Clone, Copy)]
pub struct Linux;

fn check(rc: libc::c_int) -> Result<Ret, Errno> {
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(Ret {
            val: rc as i64,
            wstatus: 0,
        })
    }
}

fn check_l(rc: libc::c_long) -> Result<Ret, Errno> {
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(Ret {
            val: rc,
            wstatus: 0,
        })
    }
}

fn opt_cstring(s: &Option<String>) -> Result<Option<CString>, Errno> {
    s.as_deref().map(cstring).transpose()
}

fn ptr_or_null(s: &Option<CString>) -> *const libc::c_char {
    s.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())
}

/// A `sockaddr_un` for `path` and the length to pass: the family, the path and its NUL.
fn unix_addr(path: &std::path::Path) -> Result<(libc::sockaddr_un, libc::socklen_t), Errno> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; zeroed is a valid value.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= a.sun_path.len() || bytes.contains(&0) {
        return Err(Errno::ENAMETOOLONG);
    }
    a.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (i, b) in bytes.iter().enumerate() {
        a.sun_path[i] = *b as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((a, len as libc::socklen_t))
}

/// Room for one SCM_RIGHTS message of one fd, aligned for cmsghdr.
#[repr(C)]
union CmsgBuf {
    _align: libc::cmsghdr,
    buf: [u8; 64],
}

/// A msghdr for one byte (`iov`) with room for one fd in its control data (`cbuf`).
fn one_byte_msg(iov: &mut libc::iovec, cbuf: &mut CmsgBuf) -> libc::msghdr {
    // SAFETY: a msghdr is plain data; all-zero is a valid empty one.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    // SAFETY: reading the byte view of the union's storage is always valid.
    msg.msg_control = unsafe { cbuf.buf.as_mut_ptr().cast() };
    // SAFETY: CMSG_SPACE is arithmetic.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(4) } as _;
    msg
}

/// sendmsg of the byte 1 with `passed` as SCM_RIGHTS.
fn send_fd(fd: i32, passed: i32) -> Result<Ret, Errno> {
    let mut byte = [1u8];
    // SAFETY: every pointer below is to a local that outlives the call; CMSG_* macros stay
    // within `cbuf` (CMSG_SPACE(4) <= 64).
    unsafe {
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut cbuf: CmsgBuf = std::mem::zeroed();
        let msg = one_byte_msg(&mut iov, &mut cbuf);
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(4) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>(), passed);
        let n = libc::sendmsg(fd, &msg, 0);
        if n < 0 {
            return Err(Errno::last());
        }
        Ok(Ret {
            val: n as i64,
            wstatus: 0,
        })
    }
}

// --- netlink (network stage) ---
/// The kernel's netlink address (nl_pid 0).
fn kernel_nl_addr() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain data; all-zero is valid, and the family is set below.
    let mut a: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    a.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    a
}

/// sendmsg of one netlink message to the kernel.
fn netlink_send(fd: i32, msg: &[u8]) -> Result<Ret, Errno> {
    let mut addr = kernel_nl_addr();
    // SAFETY: the msghdr points at locals (`addr`, `iov`, `msg`) that outlive the call; the
    // kernel only reads the message.
    unsafe {
        let mut iov = libc::iovec {
            iov_base: msg.as_ptr() as *mut libc::c_void,
            iov_len: msg.len(),
        };
        let mut h: libc::msghdr = std::mem::zeroed();
        h.msg_name = (&mut addr as *mut libc::sockaddr_nl).cast();
        h.msg_namelen = std::mem::size_of::<libc::sockaddr_nl>() as u32;
        h.msg_iov = &mut iov;
        h.msg_iovlen = 1;
        let n = libc::sendmsg(fd, &h, 0);
        if n < 0 {
            return Err(Errno::last());
        }
        Ok(Ret {
            val: n as i64,
            wstatus: 0,
        })
    }
}

/// The receive buffer of [`netlink_recv`] (what strace shows as iov_len).
pub const NETLINK_BUF: usize = 32768;

/// recvmsg of one netlink datagram into `out`.
fn netlink_recv(fd: i32, out: &super::OutBuf) -> Result<Ret, Errno> {
    let mut addr = kernel_nl_addr();
    let mut data = vec![0u8; NETLINK_BUF];
    // SAFETY: as in `netlink_send`; the kernel writes at most iov_len bytes into `data` and
    // msg_namelen bytes into `addr`.
    let n = unsafe {
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        let mut h: libc::msghdr = std::mem::zeroed();
        h.msg_name = (&mut addr as *mut libc::sockaddr_nl).cast();
        h.msg_namelen = std::mem::size_of::<libc::sockaddr_nl>() as u32;
        h.msg_iov = &mut iov;
        h.msg_iovlen = 1;
        libc::recvmsg(fd, &mut h, 0)
    };
    if n < 0 {
        return Err(Errno::last());
    }
    data.truncate(n as usize);
    out.with(|b| *b = data);
    Ok(Ret {
        val: n as i64,
        wstatus: 0,
    })
}
// --- end netlink ---

/// recvmsg of one byte with MSG_CMSG_CLOEXEC; the fd received (or -1) in `wstatus`.
fn recv_fd(fd: i32) -> Result<Ret, Errno> {
    let mut byte = [0u8];
    // SAFETY: as in `send_fd`; the kernel writes at most msg_controllen bytes into `cbuf`.
    unsafe {
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut cbuf: CmsgBuf = std::mem::zeroed();
        let mut msg = one_byte_msg(&mut iov, &mut cbuf);
        let n = libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(Errno::last());
        }
        let mut got = -1;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if !cmsg.is_null()
            && (*cmsg).cmsg_level == libc::SOL_SOCKET
            && (*cmsg).cmsg_type == libc::SCM_RIGHTS
        {
            got = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>());
        }
        Ok(Ret {
            val: n as i64,
            wstatus: got,
        })
    }
}

/// `ioctl(fd, SIOCGIFFLAGS | SIOCSIFFLAGS, &ifreq)`.
fn if_flags(fd: i32, name: &str, set: Option<i32>) -> Result<Ret, Errno> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(Errno::EINVAL);
    }
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in name.bytes().enumerate() {
        req.ifr_name[i] = b as libc::c_char;
    }
    // SAFETY: req is a valid ifreq for the duration of the ioctl.
    unsafe {
        match set {
            Some(flags) => {
                req.ifr_ifru.ifru_flags = flags as libc::c_short;
                check(libc::ioctl(fd, libc::SIOCSIFFLAGS, &req))
            }
            None => check(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req)).map(|mut r| {
                r.val = req.ifr_ifru.ifru_flags as u16 as i64;
                r
            }),
        }
    }
}

fn tty_ioctl(fd: i32, op: super::TtyOp) -> Result<Ret, Errno> {
    use super::TtyOp;
    // SAFETY: each ioctl gets a pointer to a local of the type it expects, or an integer.
    unsafe {
        match op {
            TtyOp::Unlock => {
                let zero: libc::c_int = 0;
                check(libc::ioctl(fd, libc::TIOCSPTLCK, &zero))
            }
            TtyOp::PtyNumber => {
                let mut n: libc::c_uint = 0;
                check(libc::ioctl(fd, libc::TIOCGPTN, &mut n)).map(|mut r| {
                    r.val = n as i64;
                    r
                })
            }
            TtyOp::SetCtty => check(libc::ioctl(fd, libc::TIOCSCTTY, 0)),
            TtyOp::SetWinsize { rows, cols } => {
                let ws = libc::winsize {
                    ws_row: rows,
                    ws_col: cols,
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                };
                check(libc::ioctl(fd, libc::TIOCSWINSZ, &ws))
            }
        }
    }
}

impl Kernel for Linux {
    fn sys(&self, call: &Sys, _why: &str) -> Result<Ret, Errno> {
        // SAFETY (for every block below): each call gets valid NUL-terminated strings that live
        // until it returns, and plain integers; no memory is shared with the kernel afterwards.
        unsafe {
            match call {
                Sys::Openat { path, flags, mode } => {
                    let p = cstr(path)?;
                    check(libc::openat(
                        libc::AT_FDCWD,
                        p.as_ptr(),
                        *flags,
                        *mode as libc::c_uint,
                    ))
                }
                Sys::Write { fd, data } => {
                    let n = libc::write(*fd, data.as_ptr().cast(), data.len());
                    check_l(n as libc::c_long)
                }
                Sys::Close { fd } => check(libc::close(*fd)),
                Sys::Mkdirat { path, mode } => {
                    let p = cstr(path)?;
                    check(libc::mkdirat(libc::AT_FDCWD, p.as_ptr(), *mode))
                }
                Sys::Unlinkat { path, flags } => {
                    let p = cstr(path)?;
                    check(libc::unlinkat(libc::AT_FDCWD, p.as_ptr(), *flags))
                }
                Sys::Renameat { old, new } => {
                    let (o, n) = (cstr(old)?, cstr(new)?);
                    check(libc::renameat(
                        libc::AT_FDCWD,
                        o.as_ptr(),
                        libc::AT_FDCWD,
                        n.as_ptr(),
                    ))
                }
                Sys::Symlinkat { target, linkpath } => {
                    let (t, l) = (cstr(target)?, cstr(linkpath)?);
                    check(libc::symlinkat(t.as_ptr(), libc::AT_FDCWD, l.as_ptr()))
                }
                Sys::Mknodat {
                    path,
                    mode,
                    major,
                    minor,
                } => {
                    let p = cstr(path)?;
                    let dev = libc::makedev(*major, *minor);
                    check(libc::mknodat(libc::AT_FDCWD, p.as_ptr(), *mode, dev))
                }
                Sys::Statfs { path } => {
                    let p = cstr(path)?;
                    let mut buf: libc::statfs = std::mem::zeroed();
                    check(libc::statfs(p.as_ptr(), &mut buf)).map(|mut r| {
                        r.val = buf.f_type as i64;
                        r
                    })
                }
                Sys::Mount {
                    source,
                    target,
                    fstype,
                    flags,
                    data,
                } => {
                    let (s, t, f, d) = (
                        opt_cstring(source)?,
                        cstr(target)?,
                        opt_cstring(fstype)?,
                        opt_cstring(data)?,
                    );
                    check(libc::mount(
                        ptr_or_null(&s),
                        t.as_ptr(),
                        ptr_or_null(&f),
                        *flags as libc::c_ulong,
                        ptr_or_null(&d).cast(),
                    ))
                }
                Sys::Umount2 { target, flags } => {
                    let t = cstr(target)?;
                    check(libc::umount2(t.as_ptr(), *flags))
                }
                Sys::Unshare { flags } => check(libc::unshare(*flags)),
                Sys::Setns { fd, nstype } => check(libc::setns(*fd, *nstype)),
                Sys::Sethostname { name } => {
                    check(libc::sethostname(name.as_ptr().cast(), name.len()))
                }
                Sys::Chroot { path } => {
                    let p = cstr(path)?;
                    check(libc::chroot(p.as_ptr()))
                }
                Sys::Chdir { path } => {
                    let p = cstr(path)?;
                    check(libc::chdir(p.as_ptr()))
                }
                Sys::PivotRoot { new_root, put_old } => {
                    let (n, o) = (cstr(new_root)?, cstr(put_old)?);
                    check_l(libc::syscall(libc::SYS_pivot_root, n.as_ptr(), o.as_ptr()))
                }
                Sys::Prctl { option, arg2 } => {
                    check(libc::prctl(*option, *arg2 as libc::c_ulong, 0, 0, 0))
                }
                Sys::Kill { pid, sig } => check(libc::kill(*pid, *sig)),
                Sys::Setsid => check(libc::setsid()),
                Sys::Dup3 {
                    oldfd,
                    newfd,
                    flags,
                } => check(libc::dup3(*oldfd, *newfd, *flags)),
                Sys::Wait4 { pid, options } => {
                    let mut status = 0;
                    loop {
                        let rc = libc::wait4(*pid, &mut status, *options, std::ptr::null_mut());
                        if rc < 0 && Errno::last() == Errno::EINTR {
                            continue;
                        }
                        break check(rc).map(|mut r| {
                            r.wstatus = status;
                            r
                        });
                    }
                }
                Sys::Socket { domain, ty } => check(libc::socket(*domain, *ty, 0)),
                Sys::IfFlags { fd, name, set } => if_flags(*fd, name, *set),
                Sys::Tty { fd, op } => tty_ioctl(*fd, *op),
                Sys::BindUnix { fd, path } => unix_addr(path).and_then(|(a, len)| {
                    check(libc::bind(
                        *fd,
                        (&a as *const libc::sockaddr_un).cast(),
                        len,
                    ))
                }),
                Sys::ConnectUnix { fd, path } => unix_addr(path).and_then(|(a, len)| {
                    check(libc::connect(
                        *fd,
                        (&a as *const libc::sockaddr_un).cast(),
                        len,
                    ))
                }),
                Sys::Listen { fd, backlog } => check(libc::listen(*fd, *backlog)),
                Sys::Accept4 { fd } => check(libc::accept4(
                    *fd,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                )),
                Sys::SendFd { fd, passed } => send_fd(*fd, *passed),
                Sys::RecvFd { fd } => recv_fd(*fd),
                // --- netlink (network stage) ---
                Sys::NetlinkSocket => check(libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    libc::NETLINK_ROUTE,
                )),
                Sys::NetlinkSend { fd, msg } => netlink_send(*fd, msg),
                Sys::NetlinkRecv { fd, buf } => netlink_recv(*fd, buf),
                // --- end netlink ---
                // --- inet sockets (proxy) ---
                Sys::SetsockoptInt {
                    fd,
                    level,
                    name,
                    val,
                } => check(libc::setsockopt(
                    *fd,
                    *level,
                    *name,
                    (val as *const i32).cast(),
                    std::mem::size_of::<i32>() as libc::socklen_t,
                )),
                Sys::BindInet { fd, addr } => {
                    let a = super::relay::sockaddr_in(*addr);
                    check(libc::bind(
                        *fd,
                        (&a as *const libc::sockaddr_in).cast(),
                        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    ))
                }
                // --- end inet sockets (proxy) ---
                Sys::OpenTree { path } => {
                    let p = cstr(path)?;
                    // OPEN_TREE_CLONE = 1; OPEN_TREE_CLOEXEC = O_CLOEXEC.
                    let flags = 1 | libc::O_CLOEXEC as libc::c_uint;
                    check(
                        libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, p.as_ptr(), flags)
                            as i32,
                    )
                }
                Sys::MoveMount { fd, target } => {
                    let t = cstr(target)?;
                    // MOVE_MOUNT_F_EMPTY_PATH = 4.
                    check(libc::syscall(
                        libc::SYS_move_mount,
                        *fd,
                        c"".as_ptr(),
                        libc::AT_FDCWD,
                        t.as_ptr(),
                        4,
                    ) as i32)
                }
                Sys::MountSetattr {
                    fd,
                    recursive,
                    attr_set,
                    attr_clr,
                    userns_fd,
                } => {
                    let attr = libc::mount_attr {
                        attr_set: *attr_set,
                        attr_clr: *attr_clr,
                        propagation: 0,
                        userns_fd: *userns_fd as u64,
                    };
                    let flags =
                        libc::AT_EMPTY_PATH | if *recursive { libc::AT_RECURSIVE } else { 0 };
                    check_l(libc::syscall(
                        libc::SYS_mount_setattr,
                        *fd,
                        c"".as_ptr(),
                        flags as libc::c_uint,
                        &attr as *const libc::mount_attr,
                        std::mem::size_of::<libc::mount_attr>(),
                    ))
                }
                Sys::SchedSetaffinity { cpu } => {
                    if *cpu >= libc::CPU_SETSIZE as usize {
                        return Err(Errno::EINVAL);
                    }
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(*cpu, &mut set);
                    check(libc::sched_setaffinity(
                        0,
                        std::mem::size_of::<libc::cpu_set_t>(),
                        &set,
                    ))
                }
                Sys::Setgroups { groups } => {
                    let list: Vec<libc::gid_t> = groups.to_vec();
                    check(libc::setgroups(list.len(), list.as_ptr()))
                }
                // Raw syscalls: glibc's wrappers would broadcast the change to every thread
                // (a signal to each, visible in strace); a forked child has only one.
                Sys::Setresgid { gid } => {
                    check(libc::syscall(libc::SYS_setresgid, *gid, *gid, *gid) as libc::c_int)
                }
                Sys::Setresuid { uid } => {
                    check(libc::syscall(libc::SYS_setresuid, *uid, *uid, *uid) as libc::c_int)
                }
                Sys::Capget { out } => out
                    .with(|buf| {
                        // struct __user_cap_header_struct { u32 version; int pid; }, then two
                        // struct __user_cap_data_struct (low and high 32 capabilities).
                        let mut header = [LINUX_CAPABILITY_VERSION_3, 0u32];
                        let mut data = [0u32; 6];
                        let rc = check_l(libc::syscall(
                            libc::SYS_capget,
                            header.as_mut_ptr(),
                            data.as_mut_ptr(),
                        ));
                        buf.clear();
                        for w in data {
                            buf.extend_from_slice(&w.to_ne_bytes());
                        }
                        rc
                    })
                    .unwrap_or(Err(Errno::EINVAL)),
                Sys::Capset { sets } => {
                    let mut header = [LINUX_CAPABILITY_VERSION_3, 0u32];
                    let data = sets.to_kernel();
                    check_l(libc::syscall(
                        libc::SYS_capset,
                        header.as_mut_ptr(),
                        data.as_ptr(),
                    ))
                }
                Sys::CapAmbient { op, cap } => check(libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    *op as libc::c_ulong,
                    *cap as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                )),
                Sys::Read { fd, len } => {
                    let mut buf = vec![0u8; *len];
                    let n = libc::read(*fd, buf.as_mut_ptr().cast(), *len);
                    if n < 0 {
                        Err(Errno::last())
                    } else {
                        Ok(Ret {
                            val: n as i64,
                            wstatus: 0,
                        })
                    }
                }
                Sys::Prlimit {
                    resource,
                    soft,
                    hard,
                } => {
                    let lim = libc::rlimit64 {
                        rlim_cur: *soft,
                        rlim_max: *hard,
                    };
                    check(libc::prlimit64(
                        0,
                        *resource as libc::__rlimit_resource_t,
                        &lim,
                        std::ptr::null_mut(),
                    ))
                }
                Sys::Umask { mask } => Ok(Ret {
                    val: libc::umask(*mask as libc::mode_t) as i64,
                    wstatus: 0,
                }),
                // A fork must go through spawn(), which sets up the child's error channel.
                Sys::Clone | Sys::Clone3 { .. } => Err(Errno::EINVAL),
                Sys::Openat2 {
                    dirfd,
                    path,
                    flags,
                    mode,
                    resolve,
                } => {
                    let p = cstr(path)?;
                    // open_how is non_exhaustive in libc: start from zeroes.
                    let mut how: libc::open_how = std::mem::zeroed();
                    how.flags = *flags as u32 as u64;
                    how.mode = *mode as u64;
                    how.resolve = *resolve;
                    check_l(libc::syscall(
                        libc::SYS_openat2,
                        *dirfd,
                        p.as_ptr(),
                        &how as *const libc::open_how,
                        std::mem::size_of::<libc::open_how>(),
                    ))
                }
                Sys::OpenatIn {
                    dirfd,
                    path,
                    flags,
                    mode,
                } => {
                    let p = cstr(path)?;
                    check(libc::openat(
                        *dirfd,
                        p.as_ptr(),
                        *flags,
                        *mode as libc::c_uint,
                    ))
                }
                Sys::MkdiratIn { dirfd, path, mode } => {
                    let p = cstr(path)?;
                    check(libc::mkdirat(*dirfd, p.as_ptr(), *mode))
                }
                Sys::UnlinkatIn { dirfd, path, flags } => {
                    let p = cstr(path)?;
                    check(libc::unlinkat(*dirfd, p.as_ptr(), *flags))
                }
                Sys::SymlinkatIn {
                    target,
                    dirfd,
                    linkpath,
                } => {
                    let (t, l) = (cstr(target)?, cstr(linkpath)?);
                    check(libc::symlinkat(t.as_ptr(), *dirfd, l.as_ptr()))
                }
                Sys::MknodatIn {
                    dirfd,
                    path,
                    mode,
                    major,
                    minor,
                } => {
                    let p = cstr(path)?;
                    let dev = libc::makedev(*major, *minor);
                    check(libc::mknodat(*dirfd, p.as_ptr(), *mode, dev))
                }
                Sys::Linkat {
                    olddirfd,
                    oldpath,
                    newdirfd,
                    newpath,
                    flags,
                } => {
                    let (o, n) = (cstr(oldpath)?, cstr(newpath)?);
                    check(libc::linkat(
                        *olddirfd,
                        o.as_ptr(),
                        *newdirfd,
                        n.as_ptr(),
                        *flags,
                    ))
                }
                Sys::Fchown { fd, uid, gid } => check(libc::fchown(*fd, *uid, *gid)),
                Sys::Fchownat {
                    dirfd,
                    path,
                    uid,
                    gid,
                    flags,
                } => {
                    let p = cstr(path)?;
                    check(libc::fchownat(*dirfd, p.as_ptr(), *uid, *gid, *flags))
                }
                Sys::Fchmod { fd, mode } => check(libc::fchmod(*fd, *mode)),
                Sys::Fchmodat { dirfd, path, mode } => {
                    // The system call itself (glibc's fchmodat may emulate flags with /proc).
                    let p = cstr(path)?;
                    check_l(libc::syscall(
                        libc::SYS_fchmodat,
                        *dirfd,
                        p.as_ptr(),
                        *mode as libc::c_uint,
                    ))
                }
                Sys::Utimensat {
                    dirfd,
                    path,
                    atime,
                    mtime,
                    flags,
                } => {
                    let p = path.as_deref().map(cstr).transpose()?;
                    let times = [
                        libc::timespec {
                            tv_sec: atime.0 as libc::time_t,
                            tv_nsec: atime.1 as _,
                        },
                        libc::timespec {
                            tv_sec: mtime.0 as libc::time_t,
                            tv_nsec: mtime.1 as _,
                        },
                    ];
                    // The system call: glibc's utimensat refuses a NULL path.
                    check_l(libc::syscall(
                        libc::SYS_utimensat,
                        *dirfd,
                        p.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
                        times.as_ptr(),
                        *flags,
                    ))
                }
                Sys::Fsetxattr { fd, name, value } => {
                    let n = cstring(name)?;
                    check(libc::fsetxattr(
                        *fd,
                        n.as_ptr(),
                        value.as_ptr().cast(),
                        value.len(),
                        0,
                    ))
                }
                Sys::Lsetxattr { path, name, value } => {
                    let (p, n) = (cstr(path)?, cstring(name)?);
                    check(libc::lsetxattr(
                        p.as_ptr(),
                        n.as_ptr(),
                        value.as_ptr().cast(),
                        value.len(),
                        0,
                    ))
                }
                Sys::Llistxattr { path, out } => {
                    let p = cstr(path)?;
                    out.with(|buf| {
                        // XATTR_LIST_MAX: every name list fits.
                        buf.resize(65536, 0);
                        let n = libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len());
                        buf.truncate(n.max(0) as usize);
                        check_l(n as libc::c_long)
                    })
                    .unwrap_or(Err(Errno::EINVAL))
                }
                Sys::Lremovexattr { path, name } => {
                    let (p, n) = (cstr(path)?, cstring(name)?);
                    check(libc::lremovexattr(p.as_ptr(), n.as_ptr()))
                }
                Sys::Newfstatat { dirfd, path, flags } => {
                    let p = cstr(path)?;
                    let mut st: libc::stat = std::mem::zeroed();
                    check(libc::fstatat(*dirfd, p.as_ptr(), &mut st, *flags)).map(|mut r| {
                        r.val = st.st_mode as i64;
                        r
                    })
                }
                Sys::Getdents64 { fd, out } => out
                    .with(|buf| {
                        buf.resize(32768, 0);
                        let n =
                            libc::syscall(libc::SYS_getdents64, *fd, buf.as_mut_ptr(), buf.len());
                        buf.truncate(n.max(0) as usize);
                        check_l(n)
                    })
                    .unwrap_or(Err(Errno::EINVAL)),
                Sys::WriteData {
                    fd,
                    data,
                    start,
                    len,
                } => {
                    let Some(chunk) = data.get(*start..start.saturating_add(*len)) else {
                        return Err(Errno::EINVAL);
                    };
                    let n = libc::write(*fd, chunk.as_ptr().cast(), chunk.len());
                    check_l(n as libc::c_long)
                }
                Sys::SeccompFilter { flags, filter } => {
                    let Ok(len) = u16::try_from(filter.len()) else {
                        return Err(Errno::EINVAL);
                    };
                    // BpfInsn is laid out as struct sock_filter; the kernel copies the program
                    // during the call.
                    let prog = libc::sock_fprog {
                        len,
                        filter: filter.as_ptr() as *mut libc::sock_filter,
                    };
                    check_l(libc::syscall(
                        libc::SYS_seccomp,
                        libc::SECCOMP_SET_MODE_FILTER as libc::c_uint,
                        *flags as libc::c_uint,
                        &prog as *const libc::sock_fprog,
                    ))
                }
                Sys::CloseRange { first, last, flags } => check_l(libc::syscall(
                    libc::SYS_close_range,
                    *first as libc::c_uint,
                    *last as libc::c_uint,
                    *flags as libc::c_uint,
                )),
                Sys::Getcwd { out } => out
                    .with(|buf| {
                        buf.resize(libc::PATH_MAX as usize, 0);
                        let n = libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len());
                        buf.truncate(n.max(0) as usize);
                        check_l(n)
                    })
                    .unwrap_or(Err(Errno::EINVAL)),
                Sys::Execve { path, argv, envp } => {
                    let p = cstr(path)?;
                    let a: Vec<CString> =
                        argv.iter().map(|s| cstring(s)).collect::<Result<_, _>>()?;
                    let e: Vec<CString> =
                        envp.iter().map(|s| cstring(s)).collect::<Result<_, _>>()?;
                    let mut ap: Vec<*const libc::c_char> = a.iter().map(|c| c.as_ptr()).collect();
                    ap.push(std::ptr::null());
                    let mut ep: Vec<*const libc::c_char> = e.iter().map(|c| c.as_ptr()).collect();
                    ep.push(std::ptr::null());
                    libc::execve(p.as_ptr(), ap.as_ptr(), ep.as_ptr());
                    Err(Errno::last())
                }
            }
        }
    }

    fn spawn(&self, _why: &str, body: &mut ChildBody<'_>) -> KResult<Child> {
        spawn_child(None, body)
    }

    fn spawn_into(&self, cgroup_fd: i32, _why: &str, body: &mut ChildBody<'_>) -> KResult<Child> {
        spawn_child(Some(cgroup_fd), body)
    }

    fn child_error(&self, child: &Child) -> Option<String> {
        read_child_error(child)
    }

    fn getpid(&self) -> i32 {
        std::process::id() as i32
    }
}

/// `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2, Linux 5.7); the libc crate does
/// not define it for every target.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// The size clone3 is told its argument has (88).
pub const CLONE_ARGS_SIZE: usize = std::mem::size_of::<CloneArgs>();

/// _LINUX_CAPABILITY_VERSION_3 of <linux/capability.h>: 64-bit capability sets.
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone3({flags=CLONE_INTO_CGROUP, exit_signal=SIGCHLD, cgroup=fd}) with no stack of its own:
/// like fork(), the child goes on from here on a copy of our memory, in the cgroup `fd`.
/// (glibc's fork would also run atfork handlers and reset its locks: stepctr is
/// single-threaded when it forks and the child only runs its body, so nothing is held.)
fn clone3_into(cgroup_fd: i32) -> libc::c_long {
    let mut args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup_fd as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 reads `args` (CLONE_ARGS_SIZE bytes); without CLONE_VM and with a NULL
    // stack the child gets its own copy of our memory and stack, as with fork().
    unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            CLONE_ARGS_SIZE,
        )
    }
}

/// fork() — or, with `cgroup`, clone3(CLONE_INTO_CGROUP) — with an error channel: a
/// close-on-exec pipe that the child writes its error into. EOF without data means the child
/// exec'd (the pipe closed with exec) or finished cleanly. Both kinds of child take the same
/// path afterwards (fds marked for the parent only closed, then the body).
pub(crate) fn spawn_child(cgroup: Option<i32>, body: &mut ChildBody<'_>) -> KResult<Child> {
    let fork_call = match cgroup {
        Some(fd) => super::Sys::Clone3 { cgroup: fd },
        None => super::Sys::Clone,
    };
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        let mut e = SysError::new(&fork_call, Errno::last());
        e.call = "pipe2([...], O_CLOEXEC)".into();
        return Err(e);
    }
    let (rd, wr) = (fds[0], fds[1]);
    let pid = match cgroup {
        Some(fd) => clone3_into(fd) as libc::pid_t,
        // SAFETY: stepctr is single-threaded when it forks; the child only runs `body` and exits.
        None => unsafe { libc::fork() },
    };
    if pid < 0 {
        let e = SysError::new(&fork_call, Errno::last());
        // SAFETY: closing our own pipe fds.
        unsafe {
            libc::close(rd);
            libc::close(wr);
        }
        return Err(e);
    }
    if pid == 0 {
        // SAFETY: the child closes the read end it does not use.
        unsafe { libc::close(rd) };
        super::close_parent_only_fds();
        let code = match body() {
            Ok(()) => 0,
            Err(e) => {
                let msg = format!("{e:#}");
                // SAFETY: writing our own buffer to our own pipe.
                unsafe { libc::write(wr, msg.as_ptr().cast(), msg.len()) };
                1
            }
        };
        // SAFETY: _exit skips Rust destructors and atexit handlers that belong to the parent.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: the parent closes the write end so EOF arrives when the child is done with it.
    unsafe { libc::close(wr) };
    Ok(Child {
        pid,
        err_fd: std::cell::Cell::new(rd),
    })
}

pub(crate) fn read_child_error(child: &Child) -> Option<String> {
    let fd = child.err_fd.replace(-1);
    if fd < 0 {
        return None;
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        // SAFETY: reading into our own buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    // SAFETY: the fd is ours; reading is over.
    unsafe { libc::close(fd) };
    if out.is_empty() {
        None
    } else {
        Some(String::from_utf8_lossy(&out).into_owned())
    }
}
