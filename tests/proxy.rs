//! The port proxy (`-p HOST:CTR`, `stepctr::net::proxy`) on loopback: a server on
//! 127.0.0.2 plays the container, the proxy listens on 127.0.0.1 and relays. Streams both ways
//! (10 MB each, compared by hash), many connections at once, half-close, UDP with two clients,
//! a port already taken, and nothing left once the proxy is killed.

mod common;

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::Duration;
use stepctr::kernel::linux::Linux;
use stepctr::net::proxy::{self, Proto, Publish};

fn main() {
    common::enter_private_mount_ns();
    let mut trials: Vec<_> = tests![
        tcp_streams_both_ways_intact,
        many_connections_at_once,
        half_close_gets_the_whole_answer,
        udp_both_ways_with_two_clients,
        a_taken_port_is_an_error_from_start,
        killed_proxy_leaves_nothing,
        a_refused_target_does_not_end_the_proxy,
        forked_while_threads_come_and_go,
    ]
    .into_iter()
    .map(|(name, f)| {
        libtest_mimic::Trial::test(name, move || {
            f();
            Ok(())
        })
    })
    .collect();
    // A measurement, not a test: bench/port-proxy.sh runs it (`--ignored throughput`).
    trials.push(
        libtest_mimic::Trial::test("throughput", || {
            throughput();
            Ok(())
        })
        .with_ignored_flag(true),
    );
    common::run_trials(&common::test_args(), trials)
}

const TARGET: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const MB: usize = 1 << 20;

/// The running proxy: killed (SIGKILL) and reaped when dropped, even when a test fails.
struct Proxy {
    pid: i32,
    port: u16,
}

impl Proxy {
    fn addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port)
    }

    /// What the proxy's threads are doing and what it holds, for a failed test's output.
    fn evidence(&self) -> String {
        let pid = self.pid;
        let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        let mut out = format!("proxy pid {pid}, port {}:\n", self.port);
        for t in std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let stat = read(t.path().join("stat"));
            let state = stat.rfind(')').map_or("?", |i| &stat[i + 2..i + 3]);
            out += &format!(
                "  thread {:?}: state {state}, wchan {}\n",
                t.file_name(),
                read(t.path().join("wchan"))
            );
        }
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            out += &format!(
                "  fd {:?} -> {:?}\n",
                fd.file_name(),
                std::fs::read_link(fd.path()).ok()
            );
        }
        out
    }

    /// Kill with `sig` and reap; the wait status.
    fn kill(&mut self, sig: i32) -> i32 {
        let mut status = 0;
        if self.pid > 0 {
            // SAFETY: our own child, killed and reaped once.
            unsafe {
                libc::kill(self.pid, sig);
                libc::waitpid(self.pid, &mut status, 0);
            }
            self.pid = 0;
        }
        status
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if std::thread::panicking() && self.pid > 0 {
            eprintln!("{}", self.evidence());
        }
        self.kill(libc::SIGKILL);
    }
}

/// Start a proxy from a free port of 127.0.0.1 to `ctr_port` of 127.0.0.2. The port is taken
/// below the ephemeral range (32768 and up), where the outgoing connections of the other tests
/// get theirs; one still in use (another program's) is skipped.
fn start(ctr_port: u16, proto: Proto) -> Proxy {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let base = 10000 + (std::process::id() % 500) * 16;
    for _ in 0..64 {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let port = (base + n % 8000) as u16;
        let spec = Publish {
            host_ip: Ipv4Addr::LOCALHOST,
            host_port: port,
            container_port: ctr_port,
            proto,
        };
        match proxy::start(&Linux, &[spec], TARGET) {
            Ok(child) => {
                return Proxy {
                    pid: child.pid,
                    port,
                }
            }
            Err(e) if format!("{e:#}").contains("EADDRINUSE") => continue,
            Err(e) => panic!("start the proxy: {e:#}"),
        }
    }
    panic!("no free port for the proxy");
}

/// The "container": a TCP server on 127.0.0.2 running `serve` per connection.
fn server(serve: fn(TcpStream)) -> u16 {
    let l = TcpListener::bind((TARGET, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for c in l.incoming().flatten() {
            thread::spawn(move || serve(c));
        }
    });
    port
}

/// `n` bytes that differ from seed to seed.
fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sha(b: &[u8]) -> Vec<u8> {
    Sha256::digest(b).to_vec()
}

fn echo(mut c: TcpStream) {
    let mut w = c.try_clone().unwrap();
    let _ = std::io::copy(&mut c, &mut w);
    let _ = w.shutdown(Shutdown::Write);
}

fn connect(p: &Proxy) -> TcpStream {
    let s = TcpStream::connect(p.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// The server sends its own 10 MB while it reads the client's 10 MB, then answers with the
/// hash of what it read.
fn tcp_streams_both_ways_intact() {
    fn serve(mut c: TcpStream) {
        let mut w = c.try_clone().unwrap();
        let sender = thread::spawn(move || {
            w.write_all(&data(10 * MB, 2)).unwrap();
            w
        });
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        let mut w = sender.join().unwrap();
        w.write_all(&sha(&got)).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    }
    let p = start(server(serve), Proto::Tcp);
    let c = connect(&p);
    let mut w = c.try_clone().unwrap();
    let sender = thread::spawn(move || {
        w.write_all(&data(10 * MB, 1)).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    (&c).read_to_end(&mut got).unwrap();
    sender.join().unwrap();
    assert_eq!(got.len(), 10 * MB + 32);
    assert_eq!(
        sha(&got[..10 * MB]),
        sha(&data(10 * MB, 2)),
        "server -> client"
    );
    assert_eq!(
        got[10 * MB..],
        sha(&data(10 * MB, 1))[..],
        "client -> server"
    );
}

/// 64 clients at once, each with its own data, all echoed intact.
fn many_connections_at_once() {
    let p = start(server(echo), Proto::Tcp);
    let addr = p.addr();
    let clients: Vec<_> = (0..64u64)
        .map(|i| {
            thread::spawn(move || {
                let c = TcpStream::connect(addr).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mine = data(200 * 1024 + i as usize, i + 10);
                let mut w = c.try_clone().unwrap();
                let m = mine.clone();
                let sender = thread::spawn(move || {
                    w.write_all(&m).unwrap();
                    w.shutdown(Shutdown::Write).unwrap();
                });
                let mut got = Vec::new();
                (&c).read_to_end(&mut got).unwrap();
                sender.join().unwrap();
                assert!(got == mine, "client {i}: {} bytes back", got.len());
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
}

/// A client that half-closes after its request (`nc -N`, an HTTP/1.0 client) still gets the
/// whole answer, which the server sends only after it saw the request's end.
fn half_close_gets_the_whole_answer() {
    fn serve(mut c: TcpStream) {
        let mut req = Vec::new();
        c.read_to_end(&mut req).unwrap();
        thread::sleep(Duration::from_millis(100));
        let body = format!("you sent {} bytes", req.len());
        let answer = format!(
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        c.write_all(answer.as_bytes()).unwrap();
    }
    let p = start(server(serve), Proto::Tcp);
    let mut c = connect(&p);
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut got = String::new();
    c.read_to_string(&mut got).unwrap();
    assert!(got.starts_with("HTTP/1.0 200 OK\r\n"), "{got:?}");
    assert!(got.ends_with("you sent 18 bytes"), "{got:?}");
}

/// Two clients; each gets the answers to its own datagrams, from the published address.
fn udp_both_ways_with_two_clients() {
    let srv = UdpSocket::bind((TARGET, 0)).unwrap();
    let ctr_port = srv.local_addr().unwrap().port();
    thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = srv.recv_from(&mut buf) {
            let mut answer = b"echo:".to_vec();
            answer.extend_from_slice(&buf[..n]);
            let _ = srv.send_to(&answer, from);
        }
    });
    let p = start(ctr_port, Proto::Udp);
    let published = std::net::SocketAddr::V4(p.addr());
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&a, &b] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    let mut buf = [0u8; 2048];
    for round in 0..3 {
        for (who, s) in [("a", &a), ("b", &b)] {
            let msg = format!("{who}{round}");
            s.send_to(msg.as_bytes(), published).unwrap();
            let (n, from) = s.recv_from(&mut buf).expect("an answer through the proxy");
            assert_eq!(from, published);
            assert_eq!(&buf[..n], format!("echo:{msg}").as_bytes());
        }
    }
    // A big datagram (8 KiB) arrives whole.
    let big = data(8192, 7);
    a.send_to(&big, published).unwrap();
    let mut buf = vec![0u8; 16384];
    let (n, _) = a.recv_from(&mut buf).unwrap();
    assert!(
        buf[..5] == *b"echo:" && buf[5..n] == big[..],
        "{n} bytes back"
    );
}

/// A port someone else listens on: start fails, in one line that names the port and errno.
fn a_taken_port_is_an_error_from_start() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let spec = Publish::parse(&format!("127.0.0.1:{port}:80")).unwrap();
    let e = proxy::start(&Linux, &[spec], TARGET).expect_err("the port is taken");
    let msg = format!("{e:#}");
    assert!(!msg.contains('\n'), "{msg}");
    assert!(
        msg.starts_with(&format!(
            "port proxy: publish 127.0.0.1:{port}->80/tcp: bind("
        )),
        "{msg}"
    );
    assert!(
        msg.ends_with("EADDRINUSE (Address already in use)"),
        "{msg}"
    );
}

/// `ss -ltn`'s view: is anything listening on 127.0.0.1:`port` (in /proc/net/tcp)?
fn listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&want.as_str()) && f.get(3) == Some(&"0A")
        })
}

/// The proxy is named, holds only /dev/null and its sockets, and once killed (as `rm` does,
/// SIGTERM) neither its process nor its socket remains, and the port can be bound again.
fn killed_proxy_leaves_nothing() {
    let mut p = start(server(echo), Proto::Tcp);
    let pid = p.pid;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "stepctr-proxy");
    let mut fds: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|e| {
            let n = e.file_name().to_string_lossy().parse().unwrap();
            let to = std::fs::read_link(e.path()).unwrap();
            (n, to.to_string_lossy().into_owned())
        })
        .collect();
    fds.sort();
    let names: Vec<&str> = fds.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        names[..3],
        ["/dev/null", "/dev/null", "/dev/null"],
        "{fds:?}"
    );
    assert_eq!(
        names.len(),
        4,
        "only stdio and the listening socket: {fds:?}"
    );
    assert!(names[3].starts_with("socket:["), "{fds:?}");
    // Its own session, not ours.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let sid: i32 = after.split(' ').nth(3).unwrap().parse().unwrap();
    assert_eq!(sid, pid);
    // A connection is open while it is killed.
    let mut c = connect(&p);
    c.write_all(b"hi").unwrap();
    let mut two = [0u8; 2];
    c.read_exact(&mut two).unwrap();
    assert!(listening(p.port));
    let status = p.kill(libc::SIGTERM);
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGTERM,
        "{status:#x}"
    );
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(!listening(p.port));
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(rest.is_empty());
    TcpListener::bind(p.addr()).expect("the port is free again");
}

/// A container not listening (yet): the client's connection is closed, the proxy lives on
/// and relays as soon as the server is there.
fn a_refused_target_does_not_end_the_proxy() {
    // A port of 127.0.0.2 nobody listens on (until we do).
    let l = TcpListener::bind((TARGET, 0)).unwrap();
    let ctr_port = l.local_addr().unwrap().port();
    drop(l);
    let p = start(ctr_port, Proto::Tcp);
    for _ in 0..3 {
        let mut c = connect(&p);
        let mut got = Vec::new();
        let r = c.read_to_end(&mut got);
        assert!(r.is_err() || got.is_empty(), "{r:?} {got:?}");
    }
    let l = TcpListener::bind((TARGET, ctr_port)).unwrap();
    thread::spawn(move || {
        for c in l.incoming().flatten() {
            thread::spawn(move || echo(c));
        }
    });
    let mut c = connect(&p);
    c.write_all(b"still here").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut got = String::new();
    c.read_to_string(&mut got).unwrap();
    assert_eq!(got, "still here");
}

/// The proxy is forked from a process whose other threads start and end all the time (as this
/// test harness's do): a lock one of them held at the fork must not hang the proxy's relay.
fn forked_while_threads_come_and_go() {
    let srv = UdpSocket::bind((TARGET, 0)).unwrap();
    let ctr_port = srv.local_addr().unwrap().port();
    thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = srv.recv_from(&mut buf) {
            let _ = srv.send_to(&buf[..n], from);
        }
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = thread::spawn(|| {}).join();
                }
            })
        })
        .collect();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut buf = [0u8; 64];
    for i in 0..40 {
        let p = start(ctr_port, Proto::Udp);
        client.send_to(format!("{i}").as_bytes(), p.addr()).unwrap();
        let got = client.recv_from(&mut buf);
        assert!(
            matches!(got, Ok((n, _)) if buf[..n] == *format!("{i}").as_bytes()),
            "proxy {i} (pid {}) does not relay: {got:?}",
            p.pid
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in churn {
        c.join().unwrap();
    }
}

/// Bytes per second of one client sending `bytes` to `to`, where a server counts them and
/// answers with the count once the client half-closed.
fn send_timed(to: SocketAddrV4, bytes: u64) -> f64 {
    let chunk = data(MB, 3);
    let start = std::time::Instant::now();
    let mut c = TcpStream::connect(to).unwrap();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        c.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    c.shutdown(Shutdown::Write).unwrap();
    let mut count = [0u8; 8];
    c.read_exact(&mut count).unwrap();
    let took = start.elapsed().as_secs_f64();
    assert_eq!(u64::from_be_bytes(count), bytes);
    bytes as f64 / took
}

/// bench/port-proxy.sh: PROXY_BENCH_BYTES (default 1 GiB) sent straight to the server on
/// 127.0.0.2 and through the proxy, PROXY_BENCH_ROUNDS times each (default 5), interleaved,
/// after one warm-up run of each; the median of each and their ratio.
fn throughput() {
    fn discard(mut c: TcpStream) {
        let mut buf = vec![0u8; MB];
        let mut total = 0u64;
        loop {
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(e) => panic!("{e}"),
            }
        }
        c.write_all(&total.to_be_bytes()).unwrap();
    }
    let env = |name: &str, default: u64| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let bytes = env("PROXY_BENCH_BYTES", 1 << 30);
    let rounds = env("PROXY_BENCH_ROUNDS", 5);
    let ctr_port = server(discard);
    let p = start(ctr_port, Proto::Tcp);
    let direct_addr = SocketAddrV4::new(TARGET, ctr_port);
    let (mut direct, mut proxied) = (Vec::new(), Vec::new());
    // A pause before each run lets the kernel settle (free the last run's buffers, finish
    // its connections) so each run starts from the same state; one warm-up run of each.
    let run = |to: SocketAddrV4| {
        thread::sleep(Duration::from_millis(300));
        send_timed(to, bytes)
    };
    run(direct_addr);
    run(p.addr());
    // CPU seconds used: by this process (client and server) and by the proxy.
    let cpu = |pid: i32| -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
        ticks / stepctr::kernel::host::clock_ticks_per_second() as f64
    };
    let me = std::process::id() as i32;
    let (mut cpu_direct, mut cpu_ends, mut cpu_proxy) = (0.0, 0.0, 0.0);
    for _ in 0..rounds {
        let before = cpu(me);
        direct.push(run(direct_addr));
        cpu_direct += cpu(me) - before;
        let (before, proxy_before) = (cpu(me), cpu(p.pid));
        proxied.push(run(p.addr()));
        cpu_ends += cpu(me) - before;
        cpu_proxy += cpu(p.pid) - proxy_before;
    }
    let per_gib = |s: f64| s / rounds as f64 / (bytes as f64 / (1u64 << 30) as f64);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (d, x) = (median(&mut direct), median(&mut proxied));
    let mib = |v: f64| v / MB as f64;
    println!(
        "{} MiB x {rounds} rounds each, medians: direct {:.0} MiB/s, proxy {:.0} MiB/s, proxy/direct = {:.2} (goal: >= 0.80)",
        bytes / MB as u64,
        mib(d),
        mib(x),
        x / d
    );
    println!(
        "CPU s per GiB: direct {:.2} (client + server); through the proxy {:.2} (client + server) + {:.2} (proxy)",
        per_gib(cpu_direct),
        per_gib(cpu_ends),
        per_gib(cpu_proxy)
    );
    println!(
        "json: {{\"bytes\": {bytes}, \"rounds\": {rounds}, \"direct_mib_s\": {:.0}, \"proxy_mib_s\": {:.0}, \"ratio\": {:.3}, \"cpu_per_gib\": {{\"direct\": {:.3}, \"proxied_ends\": {:.3}, \"proxy\": {:.3}}}}}",
        mib(d),
        mib(x),
        x / d,
        per_gib(cpu_direct),
        per_gib(cpu_ends),
        per_gib(cpu_proxy)
    );
}
