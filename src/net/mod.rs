//! Networking: how a container's ports are reached from the host.

pub mod files;
pub mod link;
pub mod netlink;
pub mod proxy;
