//! rtnetlink, the way `ip` configures the kernel's network stack: a NETLINK_ROUTE socket, one
//! request per change (RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE, ...), and the kernel's answer to
//! each. The messages are built with netlink-packet-route; every send and receive goes through
//! the kernel seam, so it is narrated as the sendmsg/recvmsg strace shows.

use crate::kernel::{Errno, Kernel, SysError};
use anyhow::{bail, Result};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::net::Ipv4Addr;

/// A NETLINK_ROUTE socket of the network namespace it was opened in.
pub struct Rtnl<'k> {
    k: &'k dyn Kernel,
    fd: i32,
    seq: u32,
}

/// What the kernel answered to a request that failed: the errno, and the request in strace's
/// short syntax (for the error message).
#[derive(Debug)]
pub struct Refused {
    pub errno: Errno,
    pub what: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: the kernel answered {} ({})",
            self.what,
            crate::kernel::errno_name(self.errno),
            self.errno.desc()
        )
    }
}

impl std::error::Error for Refused {}

impl<'k> Rtnl<'k> {
    /// Open a socket in the current network namespace.
    pub fn open(k: &'k dyn Kernel, why: &str) -> Result<Rtnl<'k>, SysError> {
        let fd = k.netlink_socket(why)?;
        Ok(Rtnl { k, fd, seq: 0 })
    }

    pub fn close(self) {
        let _ = self.k.close(self.fd);
    }

    /// Send `msg` and wait for the kernel's answer: Ok for an ack, `Refused` for an error.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: &str,
        why: &str,
    ) -> Result<Vec<u8>> {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut m = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        m.finalize();
        let mut buf = vec![0u8; m.buffer_len()];
        m.serialize(&mut buf);
        self.k.netlink_send(self.fd, &buf, why)?;
        let answer = self.k.netlink_recv(self.fd, "the kernel's answer")?;
        if let Some(errno) = error_of(&answer) {
            return Err(Refused {
                errno,
                what: what.to_string(),
            }
            .into());
        }
        Ok(answer)
    }

    /// A change (NLM_F_ACK: the kernel answers even on success).
    fn change(
        &mut self,
        msg: RouteNetlinkMessage,
        create: bool,
        what: &str,
        why: &str,
    ) -> Result<()> {
        let flags = NLM_F_REQUEST | NLM_F_ACK | if create { NLM_F_CREATE | NLM_F_EXCL } else { 0 };
        self.request(msg, flags, what, why).map(|_| ())
    }

    /// The index of the interface `name` (RTM_GETLINK), or None if there is none.
    pub fn index_of(&mut self, name: &str, why: &str) -> Result<Option<u32>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(
            RouteNetlinkMessage::GetLink(m),
            NLM_F_REQUEST,
            &format!("RTM_GETLINK {name}"),
            why,
        ) {
            Ok(answer) => Ok(link_index(&answer)),
            Err(e)
                if e.downcast_ref::<Refused>()
                    .is_some_and(|r| r.errno == Errno::ENODEV) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// A bridge `name`, up.
    pub fn new_bridge(&mut self, name: &str, why: &str) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.change(
            RouteNetlinkMessage::NewLink(m),
            true,
            &format!("RTM_NEWLINK bridge {name}"),
            why,
        )
    }

    /// A veth pair: `name` here, up, attached to the bridge `master`; its peer `peer` made
    /// directly in the network namespace `netns_fd` (down: it is set up there).
    pub fn new_veth(
        &mut self,
        name: &str,
        master: u32,
        peer: &str,
        netns_fd: i32,
        why: &str,
    ) -> Result<()> {
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.to_string()));
        p.attributes.push(LinkAttribute::NetNsFd(netns_fd));
        let mut m = LinkMessage::default();
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes.push(LinkAttribute::Controller(master));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        self.change(
            RouteNetlinkMessage::NewLink(m),
            true,
            &format!("RTM_NEWLINK veth {name}"),
            why,
        )
    }

    /// Bring the interface `index` up.
    pub fn set_up(&mut self, index: u32, what: &str, why: &str) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        self.change(RouteNetlinkMessage::NewLink(m), false, what, why)
    }

    /// Delete the interface `name` (a veth takes its peer with it).
    pub fn del_link(&mut self, name: &str, why: &str) -> Result<()> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.change(
            RouteNetlinkMessage::DelLink(m),
            false,
            &format!("RTM_DELLINK {name}"),
            why,
        )
    }

    /// The address `addr/prefix` on the interface `index`.
    pub fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8, why: &str) -> Result<()> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(addr.into()));
        m.attributes.push(AddressAttribute::Address(addr.into()));
        self.change(
            RouteNetlinkMessage::NewAddress(m),
            true,
            &format!("RTM_NEWADDR {addr}/{prefix}"),
            why,
        )
    }

    /// The default route: everything not local goes to `gateway` through the interface `index`.
    pub fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr, why: &str) -> Result<()> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = 254; // RT_TABLE_MAIN
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        m.attributes.push(RouteAttribute::Oif(index));
        self.change(
            RouteNetlinkMessage::NewRoute(m),
            true,
            &format!("RTM_NEWROUTE default via {gateway}"),
            why,
        )
    }
}

/// `-v`: each message of a netlink datagram in words, decoded with netlink-packet-route
/// (the narrated call shows the headers only, as strace can name them).
pub fn describe(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= bytes.len() {
        let len = u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4])) as usize;
        if len < 16 || at + len > bytes.len() {
            break;
        }
        let one = &bytes[at..at + len];
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(one) {
            Ok(m) => out.push(describe_one(&m.payload)),
            Err(_) => out.push(format!("{len} bytes the decoder does not know")),
        }
        at += (len + 3) & !3;
    }
    out
}

fn describe_one(p: &NetlinkPayload<RouteNetlinkMessage>) -> String {
    match p {
        NetlinkPayload::Error(e) => match e.code {
            None => "ack: done".to_string(),
            Some(c) => format!(
                "error: {} ({})",
                crate::kernel::errno_name(Errno::from_raw(-c.get())),
                Errno::from_raw(-c.get()).desc()
            ),
        },
        NetlinkPayload::Done(_) => "done".to_string(),
        NetlinkPayload::InnerMessage(m) => match m {
            RouteNetlinkMessage::NewLink(l)
            | RouteNetlinkMessage::DelLink(l)
            | RouteNetlinkMessage::GetLink(l)
            | RouteNetlinkMessage::SetLink(l) => {
                let verb = match m {
                    RouteNetlinkMessage::NewLink(_) => "RTM_NEWLINK",
                    RouteNetlinkMessage::DelLink(_) => "RTM_DELLINK",
                    RouteNetlinkMessage::GetLink(_) => "RTM_GETLINK",
                    _ => "RTM_SETLINK",
                };
                format!("{verb} {}", link_words(l))
            }
            RouteNetlinkMessage::NewAddress(a) => {
                let local = a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::Local(ip) => Some(ip.to_string()),
                    _ => None,
                });
                format!(
                    "RTM_NEWADDR {}/{} on interface {}",
                    local.unwrap_or_default(),
                    a.header.prefix_len,
                    a.header.index
                )
            }
            RouteNetlinkMessage::NewRoute(r) => {
                let mut words = vec!["RTM_NEWROUTE".to_string()];
                if r.header.destination_prefix_length == 0 {
                    words.push("default".into());
                }
                for x in &r.attributes {
                    match x {
                        RouteAttribute::Gateway(RouteAddress::Inet(g)) => {
                            words.push(format!("via {g}"))
                        }
                        RouteAttribute::Oif(i) => words.push(format!("out of interface {i}")),
                        _ => {}
                    }
                }
                words.join(" ")
            }
            other => format!("{:?}", other.message_type()),
        },
        other => format!("{other:?}"),
    }
}

fn link_words(l: &LinkMessage) -> String {
    let mut words = Vec::new();
    if l.header.index != 0 {
        words.push(format!("interface {}", l.header.index));
    }
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => words.push(format!("name {n:?}")),
            LinkAttribute::Controller(m) => words.push(format!("master {m}")),
            LinkAttribute::NetNsFd(fd) => {
                words.push(format!("into the network namespace of fd {fd}"))
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => words.push(format!("kind {k}")),
                        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) => {
                            words.push(format!("peer [{}]", link_words(p)))
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if l.header.change_mask.contains(LinkFlags::Up) {
        words.push(
            if l.header.flags.contains(LinkFlags::Up) {
                "up"
            } else {
                "down"
            }
            .to_string(),
        );
    }
    words.join(", ")
}

/// The errno of an NLMSG_ERROR answer (None for an ack, error 0, or anything else).
pub fn error_of(answer: &[u8]) -> Option<Errno> {
    let t = u16::from_ne_bytes([*answer.get(4)?, *answer.get(5)?]);
    if t != 2 {
        return None;
    }
    let e = i32::from_ne_bytes(answer.get(16..20)?.try_into().ok()?);
    (e != 0).then(|| Errno::from_raw(-e))
}

/// The ifi_index of an RTM_NEWLINK answer.
fn link_index(answer: &[u8]) -> Option<u32> {
    let t = u16::from_ne_bytes([*answer.get(4)?, *answer.get(5)?]);
    if t != 16 {
        return None;
    }
    // struct ifinfomsg after the 16-byte header: family(1) pad(1) type(2) index(4) ...
    Some(i32::from_ne_bytes(answer.get(20..24)?.try_into().ok()?) as u32)
}

/// `what` failed because it already exists.
pub fn exists(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Refused>()
        .is_some_and(|r| r.errno == Errno::EEXIST)
}

/// Refuse a name the kernel would refuse (IFNAMSIZ is 16 with the NUL).
pub fn check_ifname(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', ':']) {
        bail!("invalid interface name {name:?}: 1-15 characters, no '/', ':' or space");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_and_errors_are_told_apart() {
        let mut ack = vec![0u8; 36];
        ack[0] = 36;
        ack[4] = 2; // NLMSG_ERROR
        assert_eq!(error_of(&ack), None);
        ack[16..20].copy_from_slice(&(-17i32).to_ne_bytes());
        assert_eq!(error_of(&ack), Some(Errno::EEXIST));
        let mut link = vec![0u8; 32];
        link[4] = 16;
        link[20..24].copy_from_slice(&7i32.to_ne_bytes());
        assert_eq!(link_index(&link), Some(7));
        assert_eq!(error_of(&link), None);
    }
}
