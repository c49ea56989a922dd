//! Calls stepctr makes for its own bookkeeping, not to build the container: locks on its state
//! files, a page of memory shared with a child, which CPUs it may use, who it runs as. They live
//! here, in the kernel seam, like every other call, but are not narrated: they say nothing about
//! containers.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// flock(LOCK_EX) on an open file or directory: waits until no other stepctr holds it.
pub fn lock_exclusive(f: &File) -> std::io::Result<()> {
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// close(2) of an fd this process owns and no longer needs (errors are of no use here).
pub fn close_fd(fd: i32) {
    // SAFETY: closing an fd we own; nothing uses it afterwards.
    unsafe { libc::close(fd) };
}

/// _exit(2): leave at once, without the destructors and atexit handlers of the parent whose
/// memory a forked child shares.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// sysconf(_SC_CLK_TCK): the unit of the times in /proc/PID/stat.
pub fn clock_ticks_per_second() -> i64 {
    // SAFETY: sysconf has no memory effects.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }
}

/// prctl(PR_GET_PDEATHSIG): the signal we get when our parent dies (0: none).
pub fn parent_death_signal() -> i32 {
    let mut sig: libc::c_int = 0;
    // SAFETY: PR_GET_PDEATHSIG writes one int to the pointer we pass.
    unsafe { libc::prctl(libc::PR_GET_PDEATHSIG, &mut sig as *mut libc::c_int) };
    sig
}

/// The effective uid.
pub fn uid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// The effective gid.
pub fn gid() -> u32 {
    // SAFETY: getegid cannot fail.
    unsafe { libc::getegid() }
}

/// Are we root (effective uid 0)?
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The CPUs this process may run on (sched_getaffinity).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills a cpu_set_t we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|c| libc::CPU_ISSET(*c, &set))
            .collect()
    }
}

/// A page of memory shared between parent and child across fork (MAP_SHARED), holding a path.
pub struct SharedPath {
    ptr: *mut u8,
}

const SHARED_LEN: usize = 4096;

impl SharedPath {
    pub fn new() -> SharedPath {
        // SAFETY: an anonymous shared mapping; checked for failure below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SHARED_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        SharedPath {
            ptr: if ptr == libc::MAP_FAILED {
                std::ptr::null_mut()
            } else {
                ptr.cast()
            },
        }
    }

    pub fn set(&self, path: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path.as_os_str().as_bytes();
        if self.ptr.is_null() || bytes.len() + 2 > SHARED_LEN {
            return;
        }
        // SAFETY: the mapping is SHARED_LEN bytes and we write at most that many.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(2), bytes.len());
            *self.ptr = (bytes.len() >> 8) as u8;
            *self.ptr.add(1) = bytes.len() as u8;
        }
    }

    pub fn get(&self) -> Option<PathBuf> {
        use std::os::unix::ffi::OsStrExt;
        if self.ptr.is_null() {
            return None;
        }
        // SAFETY: reading within the mapping; the length was written by `set`.
        unsafe {
            let len = ((*self.ptr as usize) << 8) | *self.ptr.add(1) as usize;
            if len == 0 || len + 2 > SHARED_LEN {
                return None;
            }
            let bytes = std::slice::from_raw_parts(self.ptr.add(2), len);
            Some(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
        }
    }
}

impl Default for SharedPath {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SharedPath {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: unmapping the mapping we made.
            unsafe { libc::munmap(self.ptr.cast(), SHARED_LEN) };
        }
    }
}

/// How many threads this process has (`Threads:` in /proc/self/status; 0 if unreadable).
/// setns(CLONE_NEWNS) and unshare(CLONE_NEWNS) refuse a process whose threads share its
/// filesystem context, so callers check for 1 first.
pub fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The working directory, held open so it can be returned to after a setns() into a mount
/// namespace (which moves it to that namespace's root).
pub struct Cwd(File);

impl Cwd {
    /// `None` if the working directory cannot be opened (e.g. it was deleted).
    pub fn save() -> Option<Cwd> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(".")
            .ok()
            .map(Cwd)
    }

    /// fchdir(2) back to it.
    pub fn restore(self) {
        // SAFETY: fchdir on an fd we own.
        unsafe { libc::fchdir(self.0.as_raw_fd()) };
    }
}

/// Give back the memory a long-lived, mostly sleeping process (a detached shim) no longer
/// needs: free heap pages (malloc_trim), and the pages of read-only file mappings (code,
/// constants) that the work so far pulled in. Those are copies of the file in the page cache:
/// MADV_DONTNEED drops them from this process, and a later touch maps them again from the
/// cache. A mapping holding pages of its own (relocated data: `Anonymous:` above 0 in smaps)
/// is left alone, as is anything writable. (What comes back is what the sleeping process
/// touches, and the kernel's "fault-around" of up to 64 KB around each such page.)
pub fn trim_memory() {
    // SAFETY: malloc_trim only returns free memory of glibc's heap to the kernel.
    unsafe { libc::malloc_trim(0) };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let mut candidate: Option<(usize, usize)> = None;
    let drop_range = |range: Option<(usize, usize)>| {
        if let Some((start, end)) = range {
            // SAFETY: a private, read-only, file-backed mapping without anonymous pages: its
            // content is the file's, which a later access maps in again.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
    };
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-') {
            // A mapping's header: "start-end perms offset dev inode [path]".
            let perms = fields.next().unwrap_or("");
            let inode = fields.nth(2).unwrap_or("0");
            let parsed = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            );
            candidate = match parsed {
                (Ok(s), Ok(e))
                    if perms.len() == 4
                        && perms.as_bytes()[1] == b'-'
                        && perms.as_bytes()[3] == b'p'
                        && inode != "0" =>
                {
                    Some((s, e))
                }
                _ => None,
            };
        } else if first == "Anonymous:" {
            if fields.next() == Some("0") {
                drop_range(candidate.take());
            }
            candidate = None;
        }
    }
}

/// kill(getpid(), SIGSTOP): stop this process until someone sends SIGCONT. Not narrated by
/// the stopped process (its line would only print once it runs again): the parent that sees
/// the stop in wait4 reports it (`Kernel::report`).
pub fn stop_self() {
    // SAFETY: signalling ourselves.
    unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
}

/// sched_setaffinity(2) back to a set of CPUs (after a narrated pin to one of them).
pub fn set_affinity(cpus: &[usize]) {
    // SAFETY: a cpu_set_t we own, filled with CPU_SET; sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
