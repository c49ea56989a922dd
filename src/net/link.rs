//! The container's network (`--network none|host|bridge`), set up at the end of stage `ns`.
//!
//! - `none` (the default): the new network namespace has only `lo`, brought up by `ns`.
//! - `host`: no network namespace of its own: `ns/net` pins the host's, and the container
//!   sees (and may use) every interface of the host.
//! - `bridge`: docker's default. A bridge `stepctr0` on the host (made by the first container
//!   that needs it, with the subnet's first address, e.g. 10.88.0.1/16, as the containers'
//!   gateway); per container a veth pair, a virtual cable: one end on the host, attached to
//!   the bridge, the other made directly in the container's network namespace as `eth0`, with
//!   the next free address of the subnet and a default route via the bridge. Containers on the
//!   bridge reach each other and the host by address. Every change is one rtnetlink request
//!   (see `netlink.rs`), narrated as the sendmsg/recvmsg strace shows.

use super::netlink::{self, Rtnl};
use crate::kernel::Kernel;
use crate::state::{Container, Resource};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The bridge every `--network bridge` container is attached to.
pub const BRIDGE: &str = "stepctr0";

/// The default subnet (podman's).
pub const DEFAULT_SUBNET: &str = "10.88.0.0/16";

/// `--network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only `lo`, in a network namespace of its own.
    #[default]
    None,
    /// The host's network namespace: every host interface.
    Host,
    /// A veth pair to the `stepctr0` bridge, an address, a default route.
    Bridge,
}

/// What a container's network is, in state.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetState {
    pub mode: Mode,
    /// Bridge mode: the container's address, its prefix length, the gateway (the bridge's
    /// address) and the host end of the veth pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
    #[serde(default)]
    pub prefix: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_veth: Option<String>,
}

/// An IPv4 subnet `A.B.C.D/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn parse(s: &str) -> Result<Subnet> {
        let bad = || {
            anyhow::anyhow!(
                "invalid subnet {s:?}: give a private IPv4 network like 10.88.0.0/16 (prefix 8-29)"
            )
        };
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if !(8..=29).contains(&prefix) || !addr.is_private() {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Subnet {
            base: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }

    /// The bridge's (gateway's) address: the first of the subnet.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + 1)
    }

    /// The host addresses containers may get: from .2 up to the one before broadcast.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let base = u32::from(self.base);
        let size = 1u32 << (32 - self.prefix);
        (2..size - 1).map(move |i| Ipv4Addr::from(base + i))
    }
}

/// Where address leases are kept: one file per address in use, made with O_EXCL (so two
/// containers never get the same one) and journalled (so `rm` frees it). They belong to the
/// bridge, which is the host's, whatever STEPCTR_RUN a container's state is in.
pub fn leases() -> PathBuf {
    PathBuf::from("/run/stepctr-leases").join(BRIDGE)
}

/// Bridge mode: the bridge (if missing), the veth pair, the address and the route.
/// `netns` is the container's network namespace file (ns/net).
pub fn connect(
    k: &dyn Kernel,
    c: &mut Container,
    netns: &Path,
    subnet: Subnet,
) -> Result<NetState> {
    let dir = leases();
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    // The host end's name: veth + 8 hex digits of the container's name (IFNAMSIZ is 16).
    let host_veth = format!("veth{:08x}", short_hash(c.name.as_str()));
    netlink::check_ifname(&host_veth)?;
    c.journal_all([
        Resource::Bridge {
            name: BRIDGE.to_string(),
        },
        Resource::Link {
            name: host_veth.clone(),
        },
    ])?;
    let mut host = Rtnl::open(
        k,
        "a netlink socket in the host's network namespace: how `ip` talks to the kernel",
    )?;
    let result = (|| -> Result<NetState> {
        let bridge = ensure_bridge(k, &mut host, subnet)?;
        let address = lease(k, c, &dir, subnet)?;
        let ns = k.openat(
            netns,
            libc::O_RDONLY | libc::O_CLOEXEC,
            0,
            "the container's network namespace: the veth's other end is made right in it",
        )?;
        let made = host.new_veth(
            &host_veth,
            bridge,
            "eth0",
            ns,
            "a veth pair, a virtual cable: this end on the host, in the bridge; the other end, eth0, in the container",
        );
        let inside = made.and_then(|()| open_inside(k, ns));
        let _ = k.close(ns);
        let mut inner = inside?;
        let configured = (|| -> Result<()> {
            let eth0 = inner
                .index_of("eth0", "eth0's index, in the container's namespace")?
                .context("eth0 did not appear in the container")?;
            inner.add_address(
                eth0,
                address,
                subnet.prefix,
                "the container's address on the bridge's subnet",
            )?;
            inner.set_up(eth0, "RTM_NEWLINK eth0 up", "eth0 up")?;
            inner.add_default_route(
                eth0,
                subnet.gateway(),
                "a default route: anything not on the subnet goes to the bridge (the host)",
            )
        })();
        inner.close();
        configured?;
        Ok(NetState {
            mode: Mode::Bridge,
            address: Some(address),
            prefix: subnet.prefix,
            gateway: Some(subnet.gateway()),
            host_veth: Some(host_veth.clone()),
        })
    })();
    host.close();
    result
}

/// The bridge's index, making it (up, with the gateway address) if it is missing.
fn ensure_bridge(k: &dyn Kernel, host: &mut Rtnl<'_>, subnet: Subnet) -> Result<u32> {
    if let Some(i) = host.index_of(BRIDGE, "is the bridge there already?")? {
        return Ok(i);
    }
    match host.new_bridge(
        BRIDGE,
        "a bridge: a virtual switch on the host that the containers' veths plug into",
    ) {
        Err(e) if netlink::exists(&e) => {} // another container made it meanwhile
        other => other?,
    }
    let index = host
        .index_of(BRIDGE, "the new bridge's index")?
        .context("the bridge vanished")?;
    match host.add_address(
        index,
        subnet.gateway(),
        subnet.prefix,
        "the bridge's address: the containers' gateway, and the host's side of the subnet",
    ) {
        Err(e) if netlink::exists(&e) => {}
        other => other?,
    }
    k.note(&format!(
        "bridge {BRIDGE} is {}/{}: containers get the next addresses of {}/{}",
        subnet.gateway(),
        subnet.prefix,
        subnet.base,
        subnet.prefix
    ));
    Ok(index)
}

/// The first free address of the subnet, leased by an O_EXCL file (journalled first).
fn lease(k: &dyn Kernel, c: &mut Container, dir: &Path, subnet: Subnet) -> Result<Ipv4Addr> {
    for addr in subnet.hosts() {
        let file = dir.join(addr.to_string());
        if file.exists() {
            continue;
        }
        c.journal(Resource::File { path: file.clone() })?;
        match k.openat(
            &file,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o644,
            "lease the address: one file per address in use (O_EXCL: never two containers)",
        ) {
            Ok(fd) => {
                let _ = k.write(fd, c.name.as_str().as_bytes(), "whose it is");
                k.close(fd)?;
                return Ok(addr);
            }
            Err(e) if e.errno == crate::kernel::Errno::EEXIST => {
                c.state
                    .journal
                    .retain(|r| r != &Resource::File { path: file.clone() });
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
    bail!("no free address left in {}/{}", subnet.base, subnet.prefix)
}

/// A netlink socket in the container's network namespace: step in, open it, step back (the
/// socket stays bound to the namespace it was made in).
fn open_inside(k: &dyn Kernel, ns: i32) -> Result<Rtnl<'_>> {
    let home = k.openat(
        Path::new("/proc/self/ns/net"),
        libc::O_RDONLY | libc::O_CLOEXEC,
        0,
        "our own network namespace: the way back",
    )?;
    let inside = k
        .setns(
            ns,
            libc::CLONE_NEWNET,
            "step into the container's network namespace",
        )
        .map_err(anyhow::Error::from)
        .and_then(|()| {
            Rtnl::open(
                k,
                "a netlink socket of the container's network namespace (it stays bound to it)",
            )
            .map_err(anyhow::Error::from)
        });
    let back = k.setns(home, libc::CLONE_NEWNET, "step back into the host's");
    let _ = k.close(home);
    back?;
    inside
}

/// `rm`: the host end of the veth (its peer goes with it).
pub fn remove_link(k: &dyn Kernel, name: &str) -> Result<()> {
    if !Path::new("/sys/class/net").join(name).exists() {
        return Ok(());
    }
    delete_link(
        k,
        name,
        "a netlink socket, to remove the container's veth",
        "remove the veth pair (deleting one end deletes both)",
    )
}

/// `rm`: the bridge, once no veth is attached to it any more.
pub fn remove_bridge_if_unused(k: &dyn Kernel, name: &str) -> Result<()> {
    let brif = Path::new("/sys/class/net").join(name).join("brif");
    let Ok(ports) = std::fs::read_dir(&brif) else {
        return Ok(()); // gone already
    };
    if ports.count() > 0 {
        k.note(&format!(
            "bridge {name} stays: other containers are attached to it"
        ));
        return Ok(());
    }
    delete_link(
        k,
        name,
        "a netlink socket, to remove the bridge",
        "the last container is gone: remove the bridge",
    )
}

/// RTM_DELLINK of `name` from a socket of its own; an interface gone meanwhile (ENODEV) is fine.
fn delete_link(k: &dyn Kernel, name: &str, why_socket: &str, why: &str) -> Result<()> {
    let mut host = Rtnl::open(k, why_socket)?;
    let r = host.del_link(name, why);
    host.close();
    match r {
        Err(e)
            if e.downcast_ref::<netlink::Refused>()
                .is_some_and(|r| r.errno == crate::kernel::Errno::ENODEV) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// `rm`, after the lease files: with the bridge gone, its lease directory goes too (when empty).
pub fn tidy_leases() {
    if Path::new("/sys/class/net").join(BRIDGE).exists() {
        return;
    }
    let dir = leases();
    let _ = std::fs::remove_dir(&dir);
    if let Some(parent) = dir.parent() {
        let _ = std::fs::remove_dir(parent);
    }
}

/// A stable 32-bit hash (FNV-1a) of a container's name, for its veth's name.
fn short_hash(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_hand_out_hosts() {
        let s = Subnet::parse("10.88.7.9/16").unwrap();
        assert_eq!(s.base, Ipv4Addr::new(10, 88, 0, 0));
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 88, 0, 1));
        assert_eq!(s.hosts().next(), Some(Ipv4Addr::new(10, 88, 0, 2)));
        let small = Subnet::parse("192.168.5.0/29").unwrap();
        assert_eq!(small.hosts().count(), 5);
        for bad in [
            "8.8.8.0/24",
            "10.0.0.0/30",
            "10.0.0.0",
            "x/16",
            "10.0.0.0/7",
        ] {
            assert!(Subnet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn veth_names_fit_ifnamsiz() {
        let n = format!(
            "veth{:08x}",
            short_hash("a-very-long-container-name-indeed")
        );
        assert_eq!(n.len(), 12);
        assert!(netlink::check_ifname(&n).is_ok());
    }
}
