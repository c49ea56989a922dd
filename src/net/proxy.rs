//! Published ports (`-p [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]`) by a userspace proxy,
//! as docker-proxy does them: one process per container listens on the host's ports and
//! copies every connection (or datagram) to the container's address.
//!
//! ```text
//! client ──► 0.0.0.0:8080 (stepctr-proxy, on the host) ──► 10.88.0.2:80 (the container)
//! ```
//!
//! The proxy is a child of stepctr that names itself `stepctr-proxy`, makes and binds every
//! socket (narrated: a port already taken fails here, and the error reaches stepctr through the
//! child's error channel), starts a session of its own, lets go of stepctr's stdio and of
//! every other fd — which closes the error channel and tells stepctr it is ready — and then
//! relays forever (`crate::kernel::relay`, not narrated) until `stepctr rm` kills it.

use crate::kernel::relay;
use crate::kernel::{Child, Kernel};
use anyhow::{bail, Context, Result};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

/// What `ps` and /proc/PID/comm show for a proxy (the kernel keeps at most 15 bytes).
const PROXY_NAME: &std::ffi::CStr = c"stepctr-proxy";

/// The transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// One `-p` option: traffic to `host_ip:host_port` goes to the container's `container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Publish {
    /// The host address to listen on; 0.0.0.0 (every address of the host) by default.
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl fmt::Display for Publish {
    /// As `docker ps` shows it: `0.0.0.0:8080->80/tcp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}->{}/{}",
            self.host_ip, self.host_port, self.container_port, self.proto
        )
    }
}

impl Publish {
    /// Parse docker's forms: `8080:80`, `127.0.0.1:8080:80`, `8080:80/udp`,
    /// `127.0.0.1:8080:80/tcp`.
    pub fn parse(spec: &str) -> Result<Publish> {
        Publish::parse_inner(spec).with_context(|| {
            format!("invalid -p {spec:?} (expected [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp])")
        })
    }

    fn parse_inner(spec: &str) -> Result<Publish> {
        let (addr, proto) = match spec.rsplit_once('/') {
            Some((a, "tcp")) => (a, Proto::Tcp),
            Some((a, "udp")) => (a, Proto::Udp),
            Some((_, p)) => bail!("unknown protocol {p:?}: tcp or udp"),
            None => (spec, Proto::Tcp),
        };
        let parts: Vec<&str> = addr.split(':').collect();
        let (ip, host, ctr) = match parts.as_slice() {
            [host, ctr] => (None, *host, *ctr),
            [ip, host, ctr] => (Some(*ip), *host, *ctr),
            [_] => bail!("a host port is needed (a random one is not supported)"),
            _ => bail!("too many ':' (IPv6 host addresses are not supported)"),
        };
        let host_ip = match ip {
            None => Ipv4Addr::UNSPECIFIED,
            Some(ip) => ip
                .parse()
                .map_err(|_| anyhow::anyhow!("{ip:?} is not an IPv4 address"))?,
        };
        let port = |s: &str, what: &str| -> Result<u16> {
            if s.is_empty() {
                bail!("the {what} port is missing (a random one is not supported)");
            }
            match s.parse::<u16>() {
                Ok(0) | Err(_) => bail!("{what} port {s:?} is not a number from 1 to 65535"),
                Ok(p) => Ok(p),
            }
        };
        Ok(Publish {
            host_ip,
            host_port: port(host, "host")?,
            container_port: port(ctr, "container")?,
            proto,
        })
    }

    /// The host address and port the proxy binds.
    pub fn host_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.host_ip, self.host_port)
    }
}

/// Start the proxy for a container's published `ports`, relaying to `target` (the container's
/// address). Returns once every port is bound and listened to (an error such as EADDRINUSE is
/// returned here); the proxy then runs until it is killed. The caller journals its pid.
pub fn start(k: &dyn Kernel, ports: &[Publish], target: Ipv4Addr) -> Result<Child> {
    if ports.is_empty() {
        bail!("port proxy: no ports to publish");
    }
    let child = k.spawn(
        "the port proxy (docker-proxy's job): it listens on the host's ports and relays to the container",
        &mut || {
            k.prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as u64,
                "die if stepctr dies before the proxy is ready (stepctr records its pid then)",
            )?;
            k.prctl(
                libc::PR_SET_NAME,
                PROXY_NAME.as_ptr() as u64,
                "call this process stepctr-proxy (ps, /proc/PID/comm)",
            )?;
            let relayed = listen_all(k, ports, target)?;
            k.setsid("a session of our own: no terminal's hangup or Ctrl-C reaches us")?;
            k.chdir(std::path::Path::new("/"), "keep no directory of the host busy")?;
            crate::shim::redirect_stdio(k, -1)?;
            crate::kernel::host::trim_memory();
            k.prctl(
                libc::PR_SET_PDEATHSIG,
                0,
                "from now on we outlive stepctr: we relay until `stepctr rm` kills us",
            )?;
            let mut keep: Vec<i32> = relayed.iter().map(|p| p.fd).collect();
            keep.sort_unstable();
            close_all_but(k, &keep)?;
            relay::serve(&relayed)
        },
    )?;
    if let Some(err) = k.child_error(&child) {
        let _ = k.wait4(child.pid, 0, "collect the proxy, which could not start");
        bail!("port proxy: {err}");
    }
    Ok(child)
}

/// Make, bind and (TCP) listen to a socket for every port; what the relay serves.
pub fn listen_all(k: &dyn Kernel, ports: &[Publish], target: Ipv4Addr) -> Result<Vec<relay::Port>> {
    let mut out = Vec::new();
    for p in ports {
        let fd = listen_one(k, p).with_context(|| format!("publish {p}"))?;
        out.push(relay::Port {
            fd,
            udp: p.proto == Proto::Udp,
            target: SocketAddrV4::new(target, p.container_port),
        });
    }
    Ok(out)
}

fn listen_one(k: &dyn Kernel, p: &Publish) -> Result<i32> {
    let udp = p.proto == Proto::Udp;
    let fd = if udp {
        k.inet_socket(
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            "a UDP socket for the published port",
        )?
    } else {
        let fd = k.inet_socket(
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            "a TCP socket for the published port",
        )?;
        k.setsockopt_int(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            1,
            "take the port even while old connections to it linger in TIME_WAIT",
        )?;
        fd
    };
    k.bind_inet(
        fd,
        p.host_addr(),
        if p.host_ip.is_unspecified() {
            "the host's port, on every address of the host"
        } else {
            "the host's port, on that address only"
        },
    )?;
    if !udp {
        k.listen(
            fd,
            libc::SOMAXCONN,
            "accept connections: each is relayed to the container",
        )?;
    }
    Ok(fd)
}

/// Close every fd from 3 up except `keep` (sorted): the error channel with the rest, which
/// tells stepctr we are ready.
fn close_all_but(k: &dyn Kernel, keep: &[i32]) -> Result<()> {
    let mut first: u32 = 3;
    for &fd in keep {
        let Ok(fd) = u32::try_from(fd) else { continue };
        if fd > first {
            k.close_range(
                first,
                fd - 1,
                0,
                "close what we inherited: keep only our sockets",
            )?;
        }
        first = first.max(fd + 1);
    }
    k.close_range(
        first,
        u32::MAX,
        0,
        "close the rest, the error channel too: its end tells stepctr we are ready",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::record::Record;
    use crate::kernel::{Errno, Sys};

    fn p(ip: [u8; 4], host: u16, ctr: u16, proto: Proto) -> Publish {
        Publish {
            host_ip: Ipv4Addr::from(ip),
            host_port: host,
            container_port: ctr,
            proto,
        }
    }

    #[test]
    fn parses_dockers_forms() {
        assert_eq!(
            Publish::parse("8080:80").unwrap(),
            p([0, 0, 0, 0], 8080, 80, Proto::Tcp)
        );
        assert_eq!(
            Publish::parse("127.0.0.1:8080:80").unwrap(),
            p([127, 0, 0, 1], 8080, 80, Proto::Tcp)
        );
        assert_eq!(
            Publish::parse("8080:80/udp").unwrap(),
            p([0, 0, 0, 0], 8080, 80, Proto::Udp)
        );
        assert_eq!(
            Publish::parse("10.0.0.1:53:5353/tcp").unwrap(),
            p([10, 0, 0, 1], 53, 5353, Proto::Tcp)
        );
        assert_eq!(
            Publish::parse("65535:1").unwrap().to_string(),
            "0.0.0.0:65535->1/tcp"
        );
    }

    #[test]
    fn bad_specs_are_one_clear_error_naming_the_spec() {
        for (spec, why) in [
            ("80", "a host port is needed"),
            ("", "a host port is needed"),
            ("8080:", "the container port is missing"),
            (":80", "the host port is missing"),
            ("127.0.0.1::80", "the host port is missing"),
            ("8080:80/sctp", "unknown protocol \"sctp\""),
            ("x:80", "host port \"x\" is not a number"),
            ("8080:0", "container port \"0\" is not a number"),
            ("70000:80", "host port \"70000\""),
            ("1.2.3:8080:80", "\"1.2.3\" is not an IPv4 address"),
            ("::1:8080:80", "too many ':'"),
        ] {
            let e = format!("{:#}", Publish::parse(spec).unwrap_err());
            assert!(
                e.starts_with(&format!("invalid -p {spec:?} (expected ")),
                "{spec}: {e}"
            );
            assert!(e.contains(why), "{spec}: {e}");
            assert!(!e.contains('\n'), "{spec}: {e}");
        }
    }

    #[test]
    fn sockets_are_made_bound_and_listened_in_order() {
        let k = Record::new();
        let ports = [
            p([127, 0, 0, 1], 8080, 80, Proto::Tcp),
            p([0, 0, 0, 0], 5353, 53, Proto::Udp),
        ];
        let relayed = listen_all(&k, &ports, Ipv4Addr::new(10, 88, 0, 2)).unwrap();
        let calls: Vec<String> = k.calls().iter().map(|c| c.text()).collect();
        assert_eq!(
            calls,
            [
                "socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_IP)",
                "setsockopt(0, SOL_SOCKET, SO_REUSEADDR, [1], 4)",
                r#"bind(0, {sa_family=AF_INET, sin_port=htons(8080), sin_addr=inet_addr("127.0.0.1")}, 16)"#,
                "listen(0, 4096)",
                "socket(AF_INET, SOCK_DGRAM|SOCK_CLOEXEC, IPPROTO_IP)",
                r#"bind(0, {sa_family=AF_INET, sin_port=htons(5353), sin_addr=inet_addr("0.0.0.0")}, 16)"#,
            ]
        );
        assert_eq!(relayed[0].target, "10.88.0.2:80".parse().unwrap());
        assert!(!relayed[0].udp);
        assert_eq!(relayed[1].target, "10.88.0.2:53".parse().unwrap());
        assert!(relayed[1].udp);
    }

    #[test]
    fn a_taken_port_fails_start_in_one_line() {
        let k = Record::new();
        k.fail_on(|c| matches!(c, Sys::BindInet { .. }), Errno::EADDRINUSE);
        let ports = [p([127, 0, 0, 1], 8080, 80, Proto::Tcp)];
        let e = format!(
            "{:#}",
            start(&k, &ports, Ipv4Addr::new(10, 88, 0, 2)).unwrap_err()
        );
        assert!(
            e.starts_with("port proxy: publish 127.0.0.1:8080->80/tcp: bind("),
            "{e}"
        );
        assert!(e.ends_with("EADDRINUSE (Address already in use)"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let names: Vec<&str> = k.calls().iter().map(|c| c.call.name()).collect();
        assert_eq!(
            names,
            [
                "clone",
                "prctl",
                "prctl",
                "socket",
                "setsockopt",
                "bind",
                "wait4"
            ]
        );
    }

    #[test]
    fn only_the_sockets_survive_the_close() {
        let k = Record::new();
        close_all_but(&k, &[5, 6, 9]).unwrap();
        let calls: Vec<String> = k.calls().iter().map(|c| c.text()).collect();
        assert_eq!(
            calls,
            [
                "close_range(3, 4, 0)",
                "close_range(7, 8, 0)",
                "close_range(10, 4294967295, 0)",
            ]
        );
    }
}
