//! `--network none|host|bridge` (issue 6): what a container's network namespace holds, two
//! containers on the `stepctr0` bridge reaching each other by address, and nothing left behind
//! (no veth, no bridge, no address lease) after `rm`, or after `reset` following a crash.
//! Traffic stays on this machine: the bridge's subnet lives only between the host and the
//! network namespaces these tests create.

mod common;
#[path = "common/images.rs"]
mod images;

use common::{assert_no_leaks, stderr, stdout, unique, Env};
use std::path::Path;
use std::process::Command;

const IMAGE: &str = "localhost/stepctr-busybox";
const BRIDGE: &str = "stepctr0";

fn main() {
    common::run_tests(
        tests![
            none_has_only_lo,
            host_sees_the_hosts_interfaces,
            two_containers_on_the_bridge_reach_each_other,
            nothing_is_left_after_reset_following_a_crash,
            bad_network_options_are_refused,
            published_tcp_ports_reach_two_containers,
            published_udp_ports_relay_datagrams,
        ],
        true,
    );
}

/// The tests that use the bridge run one at a time: each checks that it is gone at the end.
fn bridge_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The host's interfaces, by name.
fn host_links() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn veths() -> Vec<String> {
    host_links()
        .into_iter()
        .filter(|n| n.starts_with("veth"))
        .collect()
}

/// What was on the host before a test: veths, and whether the bridge was there already (some
/// other container on this machine uses it: then it stays, and so do its leases).
struct Before {
    veths: Vec<String>,
    bridge: bool,
}

fn before() -> Before {
    Before {
        veths: veths(),
        bridge: Path::new("/sys/class/net").join(BRIDGE).exists(),
    }
}

/// Nothing of the test's containers is left on the host: no veth, and unless someone else
/// already used it, no bridge and no address lease.
fn assert_network_gone(env: &Env, before: &Before) {
    let left: Vec<String> = veths()
        .into_iter()
        .filter(|v| !before.veths.contains(v))
        .collect();
    assert!(left.is_empty(), "veths left: {left:?}");
    let _ = env;
    if before.bridge {
        return;
    }
    assert!(
        !Path::new("/sys/class/net").join(BRIDGE).exists(),
        "the bridge {BRIDGE} is left"
    );
    let leases = Path::new("/run/stepctr-leases");
    assert!(
        !leases.exists(),
        "address leases left in {}",
        leases.display()
    );
}

fn none_has_only_lo() {
    let env = Env::new();
    let name = unique("net-none");
    let out = env.ok(&[
        "-q",
        "run",
        "--rm",
        "--name",
        &name,
        IMAGE,
        "--",
        "ls",
        "/sys/class/net",
    ]);
    assert_eq!(stdout(&out).split_whitespace().collect::<Vec<_>>(), ["lo"]);
    assert_no_leaks(&env, &name);
}

fn host_sees_the_hosts_interfaces() {
    let env = Env::new();
    let name = unique("net-host");
    let out = env.ok(&[
        "-q",
        "run",
        "--rm",
        "--network",
        "host",
        "--name",
        &name,
        IMAGE,
        "--",
        "ls",
        "/sys/class/net",
    ]);
    let mut inside: Vec<String> = stdout(&out).split_whitespace().map(String::from).collect();
    inside.sort();
    // Interfaces may come and go on the host meanwhile (other tests' veths): compare the
    // ones that are not veths.
    let stable = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .filter(|n| !n.starts_with("veth") && n != BRIDGE)
            .collect()
    };
    assert_eq!(stable(inside), stable(host_links()));
    // ns/net is the host's own network namespace.
    assert_no_leaks(&env, &name);
}

fn two_containers_on_the_bridge_reach_each_other() {
    let _one = bridge_lock();
    let before = before();
    let env = Env::new();
    let a = unique("net-a");
    let b = unique("net-b");
    env.ok(&[
        "-q",
        "run",
        "-d",
        "--network",
        "bridge",
        "--name",
        &a,
        IMAGE,
        "--",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    let state = env.state(&a);
    let addr = state["network"]["address"]
        .as_str()
        .expect("an address")
        .to_string();
    assert!(addr.starts_with("10.88."), "{addr}");
    let veth = state["network"]["host_veth"].as_str().unwrap().to_string();
    assert!(Path::new("/sys/class/net").join(&veth).exists());
    assert_eq!(
        std::fs::read_link(format!("/sys/class/net/{veth}/master"))
            .unwrap()
            .file_name()
            .unwrap(),
        BRIDGE
    );
    // -v shows every netlink message decoded under its sendmsg/recvmsg line.
    let out = env.ok(&[
        "-v",
        "all",
        "--rm",
        "--network",
        "bridge",
        "--name",
        &format!("{b}-v"),
        "--",
        "true",
    ]);
    let err = stderr(&out);
    for decoded in [
        "-> RTM_NEWLINK name \"veth",
        "kind veth, peer [name \"eth0\", into the network namespace of fd",
        "-> RTM_NEWADDR 10.88.",
        "-> RTM_NEWROUTE default via 10.88.0.1",
        "-> ack: done",
    ] {
        assert!(err.contains(decoded), "-v lacks {decoded:?}:\n{err}");
    }
    // The second one reaches the first by address: ICMP (ping) and a TCP stream (an HTTP
    // request to the first one's busybox httpd, which serves the image's /etc).
    let out = env.ok(&[
        "-q",
        "run",
        "--rm",
        "--network",
        "bridge",
        "--name",
        &b,
        IMAGE,
        "--",
        "sh",
        "-c",
        &format!(
            "ping -c 1 -W 5 {addr} >/dev/null && echo PING-OK; \
             printf 'GET /os-release HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {addr} 80"
        ),
    ]);
    let text = stdout(&out);
    assert!(text.starts_with("PING-OK\n"), "{text}{}", stderr(&out));
    assert!(
        text.contains("200 OK") && text.contains("ID=stepctr"),
        "{text}"
    );
    // The host reaches it too, through the bridge.
    let page = http_get(&format!("{addr}:80"), "/os-release");
    assert!(page.contains("ID=stepctr"), "{page}");
    env.ok(&["-q", "rm", "-f", &a]);
    assert_no_leaks(&env, &a);
    assert_no_leaks(&env, &b);
    assert_network_gone(&env, &before);
}

/// A plain HTTP/1.0 GET (the host side of the test; the address is on the bridge).
fn http_get(hostport: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(hostport).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn nothing_is_left_after_reset_following_a_crash() {
    let _one = bridge_lock();
    let before = before();
    let env = Env::new();
    let name = unique("net-crash");
    env.ok(&["-q", "load", &name, IMAGE]);
    env.ok(&["-q", "cgroup", &name]);
    // stepctr dies (SIGKILL) right after the kernel made the veth pair.
    let out = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "inject=sendmsg:signal=SIGKILL:when=5",
        ])
        .arg(common::stepctr_bin())
        .args(["-q", "ns", "--network", "bridge", &name])
        .env("STEPCTR_ROOT", &env.root)
        .env("STEPCTR_RUN", &env.run)
        .output()
        .expect("strace");
    assert!(!out.status.success(), "ns survived the injected SIGKILL");
    let out = env.ok(&["-q", "reset"]);
    assert!(out.status.success());
    assert_no_leaks(&env, &name);
    assert_network_gone(&env, &before);

    // stepctr dies at `start -p` after the proxy took the port, as it forks the shim.
    let name = unique("net-crash-p");
    for stage in [
        &["load", &name, IMAGE][..],
        &["cgroup", &name],
        &["ns", "--network", "bridge", &name],
        &["fs", &name],
    ] {
        let mut args = vec!["-q"];
        args.extend(stage);
        env.ok(&args);
    }
    // Not -f: the proxy, a child that outlives stepctr, must not be traced (strace would wait
    // for it); the injection counts stepctr's own clones.
    let out = Command::new("strace")
        .args([
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "inject=clone:signal=SIGKILL:when=2",
        ])
        .arg(common::stepctr_bin())
        .args([
            "-q",
            "start",
            "-d",
            "-p",
            "127.0.0.1:8084:80",
            &name,
            "--",
            "sleep",
            "100",
        ])
        .env("STEPCTR_ROOT", &env.root)
        .env("STEPCTR_RUN", &env.run)
        .output()
        .expect("strace");
    assert!(!out.status.success(), "start survived the injected SIGKILL");
    let proxy = env.state(&name)["journal"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "process")
        .filter_map(|r| r["pid"].as_i64())
        .next_back()
        .expect("the proxy in the journal") as i32;
    env.ok(&["-q", "reset"]);
    assert!(!common::alive(proxy), "the proxy {proxy} outlived reset");
    std::net::TcpListener::bind(("127.0.0.1", 8084)).expect("port 8084 freed by reset");
    assert_no_leaks(&env, &name);
    assert_network_gone(&env, &before);
}

fn bad_network_options_are_refused() {
    let env = Env::new();
    for (args, says) in [
        (vec!["--network", "wifi"], "wifi"),
        (
            vec!["--network", "bridge", "--subnet", "8.8.8.0/24"],
            "private",
        ),
        (vec!["--network", "host", "--userns"], "--network host"),
    ] {
        let name = unique("net-bad");
        let mut all = vec!["-q", "all", "--rm", "--name", &name];
        all.extend(args.iter().copied());
        all.extend(["--", "true"]);
        let out = env.run(&all);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(err.contains(says), "{args:?}: {err}");
        let _ = env.run(&["-q", "rm", "-f", &name]);
        assert_no_leaks(&env, &name);
    }
}

/// `-p 8080:80` and `-p 127.0.0.1:8081:80`: an HTTP GET from the host to 127.0.0.1 reaches
/// busybox httpd in each of two containers at once; rm stops the proxies and frees the ports.
fn published_tcp_ports_reach_two_containers() {
    let _one = bridge_lock();
    let before = before();
    let env = Env::new();
    let (a, b) = (unique("net-pa"), unique("net-pb"));
    for (name, spec) in [(&a, "8080:80"), (&b, "127.0.0.1:8081:80")] {
        // -p alone puts the container on the bridge, as docker's default network does.
        env.ok(&[
            "-q", "run", "-d", "-p", spec, "--name", name, IMAGE, "--", "httpd", "-f", "-p", "80",
            "-h", "/etc",
        ]);
    }
    let proxies: Vec<i32> = [&a, &b]
        .iter()
        .map(|n| {
            let st = env.state(n);
            assert_eq!(st["network"]["mode"], "bridge");
            assert_eq!(st["ports"].as_array().map(Vec::len), Some(1));
            st["journal"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["kind"] == "process")
                .map(|r| r["pid"].as_i64().unwrap() as i32)
                .find(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|c| c.trim() == "stepctr-proxy")
                })
                .expect("a proxy process")
        })
        .collect();
    let shown = stdout(&env.ok(&["inspect", &b]));
    assert!(
        shown.contains("Port:       127.0.0.1:8081->80/tcp")
            && shown.contains("Network:    bridge: eth0 10.88."),
        "{shown}"
    );
    for port in [8080, 8081] {
        let page = retry_get(&format!("127.0.0.1:{port}"), "/os-release");
        assert!(
            page.contains("200 OK") && page.contains("ID=stepctr"),
            "{port}: {page}"
        );
    }
    env.ok(&["-q", "rm", "-f", &a, &b]);
    for pid in &proxies {
        assert!(!common::alive(*pid), "proxy {pid} still runs");
    }
    for port in [8080, 8081] {
        std::net::TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("port {port} not freed: {e}"));
    }
    assert_no_leaks(&env, &a);
    assert_no_leaks(&env, &b);
    assert_network_gone(&env, &before);
}

/// httpd starts a moment after `run -d` returns: try for a few seconds.
fn retry_get(hostport: &str, path: &str) -> String {
    for _ in 0..100 {
        if let Ok(s) = std::net::TcpStream::connect(hostport) {
            drop(s);
            let page = http_get(hostport, path);
            if !page.is_empty() {
                return page;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    http_get(hostport, path)
}

/// A UDP echo server (this busybox has no `nc -u`): every datagram comes back in capitals, so
/// the answer proves it went through the container.
const UDP_ECHO_C: &str = r#"
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(atoi(argv[1]));
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) return 1;
    for (;;) {
        char buf[2048];
        struct sockaddr_in from;
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
        if (n < 0) continue;
        for (ssize_t i = 0; i < n; i++) buf[i] = toupper((unsigned char)buf[i]);
        sendto(s, buf, n, 0, (struct sockaddr *)&from, len);
    }
}
"#;

/// `-p 8082:9999/udp`: datagrams from two clients on the host reach the container's UDP server
/// and its answers come back to each.
fn published_udp_ports_relay_datagrams() {
    let _one = bridge_lock();
    let before = before();
    let env = Env::new();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("network-udp");
    let base = unique("udp-echo");
    let layout = images::image_with_programs(&dir, &base, &[("udp-echo", UDP_ECHO_C)]);
    env.ok(&["-q", "pull", &images::oci_ref(&layout, "v1")]);
    let name = unique("net-udp");
    env.ok(&[
        "-q",
        "run",
        "-d",
        "-p",
        "127.0.0.1:8082:9999/udp",
        "--name",
        &name,
        &format!("localhost/{base}:v1"),
        "--",
        "udp-echo",
        "9999",
    ]);
    for client in ["first client", "second client"] {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        let mut got = None;
        for _ in 0..50 {
            sock.send_to(client.as_bytes(), "127.0.0.1:8082").unwrap();
            let mut buf = [0u8; 64];
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                got = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
                break;
            }
        }
        assert_eq!(
            got.as_deref(),
            Some(client.to_uppercase().as_str()),
            "{client}"
        );
    }
    env.ok(&["-q", "rm", "-f", &name]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_no_leaks(&env, &name);
    assert_network_gone(&env, &before);
}
