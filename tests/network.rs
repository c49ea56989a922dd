//! `--network none|host|bridge` (issue 6): what a container's network namespace holds, two
//! containers on the `stepctr0` bridge reaching each other by address, and nothing left behind
//! (no veth, no bridge, no address lease) after `rm`, or after `reset` following a crash.
//! Traffic stays on this machine: the bridge's subnet lives only between the host and the
//! network namespaces these tests create.

mod common;

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

fn assert_network_gone(env: &Env, before: &[String]) {
    let left: Vec<String> = veths()
        .into_iter()
        .filter(|v| !before.contains(v))
        .collect();
    assert!(left.is_empty(), "veths left: {left:?}");
    assert!(
        !Path::new("/sys/class/net").join(BRIDGE).exists(),
        "the bridge {BRIDGE} is left"
    );
    let _ = env;
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
    let before = veths();
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
    let before = veths();
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
