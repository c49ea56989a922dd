//! The data relay of a port proxy (`-p HOST:CTR`, docker-proxy's job): bytes and datagrams
//! copied between the host's clients and a container's address, for as long as the proxy lives.
//!
//! The sockets it serves were made, bound and listened to through the narrated seam
//! (`crate::net::proxy`); what happens here is per connection and per byte, so it is not
//! narrated (a line per accept or per datagram would drown everything else), and it calls libc
//! directly, like the other bookkeeping of this module.
//!
//! - TCP: a thread accepts on each listening socket; each connection gets a connection of its
//!   own to the target and two threads, one per direction. A direction copies with splice(2)
//!   through a pipe (the bytes never enter our memory) until its source says EOF, then
//!   half-closes its destination (shutdown SHUT_WR), so a client that half-closes (`nc -N`)
//!   still gets the whole answer. When a side fails (reset), both sockets are shut down.
//! - UDP: a thread reads each published socket; each client address gets a socket connected
//!   to the target and a thread that sends the target's replies back to that client (sendto
//!   from the published socket, so they come from the address the client wrote to). An entry
//!   with no traffic either way for [`UDP_IDLE`] is dropped.
//!
//! Nothing a client does ends the relay: errors end one connection, or are waited out (no
//! more fds: try again shortly). The process ends when it is killed.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a UDP client's entry lives without a datagram either way (docker-proxy: 90 s).
pub const UDP_IDLE: Duration = Duration::from_secs(90);

/// How much a direction moves per splice: also the size asked for its pipe.
const CHUNK: usize = 1 << 20;

/// Stack size of the relay's threads: they hold a few locals (and a datagram buffer, on the
/// heap).
const STACK: usize = 128 * 1024;

/// One published port the relay serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    /// The bound socket: listening (TCP) or not (UDP).
    pub fd: i32,
    pub udp: bool,
    /// Where its traffic goes: the container's address and port.
    pub target: SocketAddrV4,
}

/// A `sockaddr_in` for `addr`.
pub fn sockaddr_in(addr: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; zeroed is a valid value.
    let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    a.sin_family = libc::AF_INET as libc::sa_family_t;
    a.sin_port = addr.port().to_be();
    a.sin_addr.s_addr = u32::from(*addr.ip()).to_be();
    a
}

fn from_sockaddr_in(a: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
        u16::from_be(a.sin_port),
    )
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// An fd closed when the last holder lets go.
struct Fd(i32);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the fd is ours alone; nothing uses it after the last reference is gone.
        unsafe { libc::close(self.0) };
    }
}

/// Serve `ports` forever. Signals are set for a daemon first: SIGPIPE ignored (a write to a
/// closed connection fails with EPIPE instead of killing us), SIGTERM/SIGINT/SIGHUP back to
/// their default (whatever handlers the forking process had), none blocked.
pub fn serve(ports: &[Port]) -> ! {
    // SAFETY: plain signal dispositions and mask of this process, set before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::signal(sig, libc::SIG_DFL);
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
    for port in ports.iter().copied() {
        let run = move || {
            if port.udp {
                udp_port(port.fd, port.target, UDP_IDLE)
            } else {
                tcp_port(port.fd, port.target)
            }
        };
        // Without a thread, serve nothing on that port rather than exit: retry.
        while spawn(run).is_err() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    loop {
        // SAFETY: pause only waits for a signal (which ends us).
        unsafe { libc::pause() };
    }
}

/// A thread of the relay, joinable (see [`Thread::join`]) or, dropped, detached.
///
/// Made with pthread_create, not std::thread: the relay runs in a child forked from a
/// process that may have other threads (the test harness; stepctr is single-threaded when
/// it forks, but need not stay so). A fork copies only the forking thread, and a lock another
/// thread held at that moment stays held in the child forever. glibc resets its own locks
/// (malloc, thread stacks) in a fork's child; the Rust runtime's bookkeeping of its threads
/// (names, guard pages, spawn hooks) makes no such promise, so the child keeps out of it.
struct Thread(Option<libc::pthread_t>);

impl Thread {
    /// Wait for the thread to end.
    fn join(mut self) {
        if let Some(t) = self.0.take() {
            // SAFETY: a joinable thread of ours, joined once.
            unsafe { libc::pthread_join(t, std::ptr::null_mut()) };
        }
    }
}

impl Drop for Thread {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            // SAFETY: a joinable thread of ours, never joined: its resources go when it ends.
            unsafe { libc::pthread_detach(t) };
        }
    }
}

extern "C" fn thread_main<F: FnOnce() + Send + 'static>(
    arg: *mut libc::c_void,
) -> *mut libc::c_void {
    // SAFETY: `arg` is the Box<F> leaked by `spawn` for this thread alone.
    let f = unsafe { Box::from_raw(arg.cast::<F>()) };
    f();
    std::ptr::null_mut()
}

/// Run `f` in a new thread (a panic in it aborts the proxy, as for any extern "C" function).
fn spawn<F: FnOnce() + Send + 'static>(f: F) -> Result<Thread, ()> {
    let arg = Box::into_raw(Box::new(f));
    // SAFETY: attr is initialised before use and destroyed after; on success the new thread
    // owns `arg`, on failure we take it back.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setstacksize(&mut attr, STACK);
        let mut t: libc::pthread_t = std::mem::zeroed();
        let rc = libc::pthread_create(&mut t, &attr, thread_main::<F>, arg.cast());
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 {
            drop(Box::from_raw(arg));
            return Err(());
        }
        Ok(Thread(Some(t)))
    }
}

/// Accept connections on the listening socket `lfd` forever, each relayed to `target`.
pub fn tcp_port(lfd: i32, target: SocketAddrV4) {
    loop {
        // SAFETY: accept4 without an address; the new fd is ours.
        let c = unsafe {
            libc::accept4(
                lfd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if c < 0 {
            match errno() {
                libc::EINTR | libc::ECONNABORTED | libc::EPROTO => {}
                // Out of fds or memory: wait for connections to end.
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
            continue;
        }
        let client = Fd(c);
        // Without a thread for it, the connection is closed (the client sees EOF).
        let _ = spawn(move || tcp_connection(client, target));
    }
}

/// A TCP connection to `target`, or None (the connection the client made is then closed).
fn connect_tcp(target: SocketAddrV4) -> Option<Fd> {
    // SAFETY: a new socket, ours.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    let s = Fd(fd);
    let a = sockaddr_in(target);
    loop {
        // SAFETY: `a` is a valid sockaddr_in for the duration of the call.
        let rc = unsafe {
            libc::connect(
                s.0,
                (&a as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return Some(s);
        }
        if errno() != libc::EINTR {
            return None;
        }
    }
}

fn nodelay(fd: i32) {
    let one: libc::c_int = 1;
    // SAFETY: an int option read from a local.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// Relay one accepted connection: connect to the target, copy both ways, close.
fn tcp_connection(client: Fd, target: SocketAddrV4) {
    let Some(server) = connect_tcp(target) else {
        return;
    };
    // Small writes (a request, an answer) go out at once, as they would without us between.
    nodelay(client.0);
    nodelay(server.0);
    let (client, server) = (Arc::new(client), Arc::new(server));
    let (c2, s2) = (client.clone(), server.clone());
    // Without a thread for the way back, the connection is given up (both closed).
    if let Ok(back) = spawn(move || copy(&s2, &c2)) {
        copy(&client, &server);
        back.join();
    }
}

/// Copy `from` to `to` until `from` says EOF, then half-close `to`; on an error, shut both
/// down (which also ends the other direction's wait).
fn copy(from: &Fd, to: &Fd) {
    if !splice_copy(from.0, to.0).unwrap_or_else(|| rw_copy(from.0, to.0)) {
        // SAFETY: shutdown of sockets we hold.
        unsafe {
            libc::shutdown(from.0, libc::SHUT_RDWR);
            libc::shutdown(to.0, libc::SHUT_RDWR);
        }
        return;
    }
    // SAFETY: shutdown of a socket we hold.
    unsafe { libc::shutdown(to.0, libc::SHUT_WR) };
}

/// splice(2) `from` -> pipe -> `to` until EOF: Some(true) at EOF, Some(false) on an error,
/// None if no pipe could be made (copy through memory then).
fn splice_copy(from: i32, to: i32) -> Option<bool> {
    let mut p = [0; 2];
    // SAFETY: pipe2 fills two fds, closed below.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return None;
    }
    let (rd, wr) = (Fd(p[0]), Fd(p[1]));
    // A bigger pipe: fewer, larger splices (may fail beyond /proc/sys/fs/pipe-max-size).
    // SAFETY: fcntl on our pipe.
    unsafe { libc::fcntl(wr.0, libc::F_SETPIPE_SZ, CHUNK as libc::c_int) };
    let ok = loop {
        // SAFETY: splice between fds we hold, no offsets.
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                wr.0,
                std::ptr::null_mut(),
                CHUNK,
                libc::SPLICE_F_MOVE,
            )
        };
        if n == 0 {
            break true;
        }
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            break false;
        }
        let mut left = n as usize;
        let mut failed = false;
        while left > 0 {
            // SAFETY: as above.
            let m = unsafe {
                libc::splice(
                    rd.0,
                    std::ptr::null_mut(),
                    to,
                    std::ptr::null_mut(),
                    left,
                    libc::SPLICE_F_MOVE,
                )
            };
            if m < 0 && errno() == libc::EINTR {
                continue;
            }
            if m <= 0 {
                failed = true;
                break;
            }
            left -= m as usize;
        }
        if failed {
            break false;
        }
    };
    Some(ok)
}

/// read/write `from` -> `to` until EOF (true) or an error (false).
fn rw_copy(from: i32, to: i32) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: reading into our own buffer.
        let n = unsafe { libc::read(from, buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 {
            return true;
        }
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return false;
        }
        let mut done = 0usize;
        while done < n as usize {
            // SAFETY: writing from our own buffer.
            let m = unsafe {
                libc::send(
                    to,
                    buf[done..n as usize].as_ptr().cast(),
                    n as usize - done,
                    libc::MSG_NOSIGNAL,
                )
            };
            if m < 0 && errno() == libc::EINTR {
                continue;
            }
            if m <= 0 {
                return false;
            }
            done += m as usize;
        }
    }
}

/// One UDP client of a published port: a socket connected to the target, and when a
/// datagram last went either way (ms since the relay's start).
struct Flow {
    sock: Fd,
    last: AtomicU64,
}

type Flows = Arc<Mutex<HashMap<SocketAddrV4, Arc<Flow>>>>;

/// Relay the datagrams of the bound UDP socket `fd` to `target`, forever; a client's entry
/// goes after `idle` without traffic.
pub fn udp_port(fd: i32, target: SocketAddrV4, idle: Duration) {
    let epoch = Instant::now();
    let now = move || epoch.elapsed().as_millis() as u64;
    let flows: Flows = Arc::new(Mutex::new(HashMap::new()));
    let mut buf = vec![0u8; 65536];
    loop {
        // SAFETY: sockaddr_in is plain old data.
        let mut from: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: receiving into our own buffer and address.
        let n = unsafe {
            libc::recvfrom(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut from as *mut libc::sockaddr_in).cast(),
                &mut len,
            )
        };
        if n < 0 {
            if errno() != libc::EINTR {
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        }
        let client = from_sockaddr_in(&from);
        let flow = {
            let Ok(mut map) = flows.lock() else { continue };
            match map.get(&client) {
                Some(f) => f.clone(),
                None => {
                    let Some(f) = udp_flow(target, idle) else {
                        continue;
                    };
                    f.last.store(now(), Ordering::Relaxed);
                    let f = Arc::new(f);
                    let (fl, back, map_ref) = (f.clone(), fd, flows.clone());
                    if spawn(move || udp_replies(back, client, fl, map_ref, idle, now)).is_err() {
                        continue;
                    }
                    map.insert(client, f.clone());
                    f
                }
            }
        };
        flow.last.store(now(), Ordering::Relaxed);
        // SAFETY: sending from our own buffer on a connected socket; a lost datagram is UDP.
        unsafe {
            libc::send(
                flow.sock.0,
                buf.as_ptr().cast(),
                n as usize,
                libc::MSG_NOSIGNAL,
            )
        };
    }
}

/// A UDP socket connected to `target`, whose reads time out after `idle` (so its thread can
/// look at the clock).
fn udp_flow(target: SocketAddrV4, idle: Duration) -> Option<Flow> {
    // SAFETY: a new socket, ours.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    let sock = Fd(fd);
    let a = sockaddr_in(target);
    let tick = idle.min(Duration::from_secs(5));
    let tv = libc::timeval {
        tv_sec: tick.as_secs() as libc::time_t,
        tv_usec: tick.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: a valid address and timeval for the duration of the calls.
    unsafe {
        if libc::connect(
            sock.0,
            (&a as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) < 0
        {
            return None;
        }
        libc::setsockopt(
            sock.0,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    Some(Flow {
        sock,
        last: AtomicU64::new(0),
    })
}

/// Send the target's replies on `flow` back to `client` from the published socket `back`,
/// until the flow has been idle for `idle`; then drop it.
fn udp_replies(
    back: i32,
    client: SocketAddrV4,
    flow: Arc<Flow>,
    flows: Flows,
    idle: Duration,
    now: impl Fn() -> u64,
) {
    let to = sockaddr_in(client);
    let mut buf = vec![0u8; 65536];
    loop {
        // SAFETY: receiving into our own buffer.
        let n = unsafe { libc::recv(flow.sock.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n >= 0 {
            flow.last.store(now(), Ordering::Relaxed);
            // SAFETY: sending our own buffer to a valid address.
            unsafe {
                libc::sendto(
                    back,
                    buf.as_ptr().cast(),
                    n as usize,
                    libc::MSG_NOSIGNAL,
                    (&to as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            continue;
        }
        // A timeout, or the target refused a datagram (ICMP port unreachable): is the flow
        // idle? Decided under the lock, so a datagram arriving now finds a live entry or none.
        let Ok(mut map) = flows.lock() else { return };
        let quiet = now().saturating_sub(flow.last.load(Ordering::Relaxed));
        if quiet >= idle.as_millis() as u64 {
            if map.get(&client).is_some_and(|f| Arc::ptr_eq(f, &flow)) {
                map.remove(&client);
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn sockaddr_in_round_trips() {
        let a: SocketAddrV4 = "127.0.0.2:8080".parse().unwrap();
        let s = sockaddr_in(a);
        assert_eq!(s.sin_port, 8080u16.to_be());
        assert_eq!(from_sockaddr_in(&s), a);
    }

    #[test]
    fn udp_flows_relay_both_ways_and_expire() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = match server.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        let published = UdpSocket::bind("127.0.0.1:0").unwrap();
        let paddr = published.local_addr().unwrap();
        let pfd = std::os::fd::AsRawFd::as_raw_fd(&published);
        std::thread::spawn(move || udp_port(pfd, target, Duration::from_millis(300)));
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 64];
        let mut relayed_from = Vec::new();
        for round in 0..2 {
            client.send_to(b"ping", paddr).unwrap();
            let (n, from) = server.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"ping");
            relayed_from.push(from);
            server.send_to(b"pong", from).unwrap();
            let (n, back) = client.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], back), (&b"pong"[..], paddr), "round {round}");
            // Idle for longer than the flow lives: the next datagram gets a new flow.
            std::thread::sleep(Duration::from_millis(1500));
        }
        assert_ne!(
            relayed_from[0], relayed_from[1],
            "the idle flow was not dropped"
        );
        // The published socket stays with the relay thread (leaked with it, as the test ends).
        std::mem::forget(published);
    }
}
