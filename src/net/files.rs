//! /etc/hosts, /etc/hostname and /etc/resolv.conf of a container, as docker makes them: files
//! of the container's directory on the host, written by stepctr and bind-mounted over the
//! image's (stage `fs`). The image stays untouched; `start` rewrites /etc/hostname and /etc/hosts
//! when `--hostname` names the container otherwise (a bind mount of a file shows its current
//! content).

use super::link::{Mode, NetState};
use crate::kernel::Kernel;
use crate::state::Container;
use crate::volume::Volume;
use anyhow::Result;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The three files, as (file in the container's directory, path in the container).
pub const FILES: [(&str, &str); 3] = [
    ("hosts", "/etc/hosts"),
    ("hostname", "/etc/hostname"),
    ("resolv.conf", "/etc/resolv.conf"),
];

/// /etc/hosts: localhost, and with an address of its own the container's name for it.
pub fn hosts(net: Option<&NetState>, hostname: &str) -> String {
    let mut s = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    match net.and_then(|n| n.address) {
        Some(a) => s.push_str(&format!("{a}\t{hostname}\n")),
        None => s.push_str(&format!("127.0.1.1\t{hostname}\n")),
    }
    s
}

/// /etc/resolv.conf: `--dns` servers if given, else the host's file without the nameservers
/// the container cannot reach (127.0.0.0/8 and ::1 are the container's own loopback, unless it
/// shares the host's network).
pub fn resolv_conf(host: &str, dns: &[Ipv4Addr], mode: Mode) -> String {
    let mut out = String::new();
    if !dns.is_empty() {
        for d in dns {
            out.push_str(&format!("nameserver {d}\n"));
        }
        return out;
    }
    let mut dropped = Vec::new();
    for line in host.lines() {
        let server = line.trim().strip_prefix("nameserver").map(str::trim);
        match server {
            Some(ip) if mode != Mode::Host && (ip.starts_with("127.") || ip == "::1") => {
                dropped.push(ip.to_string())
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if !dropped.is_empty() {
        out.push_str(&format!(
            "# stepctr: the host's nameserver(s) {} are its own loopback, out of the container's reach: use --dns\n",
            dropped.join(", ")
        ));
    }
    out
}

/// The bind mounts of the three files.
pub fn volumes(c: &Container) -> Vec<Volume> {
    FILES
        .iter()
        .map(|(file, inside)| Volume {
            host: c.path(file),
            container: PathBuf::from(inside),
            readonly: false,
        })
        .collect()
}

/// Write the three files into the container's directory.
pub fn generate(k: &dyn Kernel, c: &Container, dns: &[Ipv4Addr]) -> Result<()> {
    let net = c.state.network.as_ref();
    let mode = net.map(|n| n.mode).unwrap_or_default();
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let name = c.name.as_str();
    let contents = [
        hosts(net, name),
        format!("{name}\n"),
        resolv_conf(&host_resolv, dns, mode),
    ];
    for ((file, inside), text) in FILES.iter().zip(contents) {
        write_new(
            k,
            &c.path(file),
            &text,
            &format!("the container's {inside}, bind-mounted over the image's (as docker does)"),
        )?;
    }
    Ok(())
}

/// `--hostname`: the name in /etc/hostname and /etc/hosts (if `fs` made them).
pub fn set_hostname(k: &dyn Kernel, c: &Container, hostname: &str) -> Result<()> {
    let (hosts_file, name_file) = (c.path("hosts"), c.path("hostname"));
    if !name_file.exists() || hostname == c.name.as_str() {
        return Ok(());
    }
    rewrite(
        k,
        &name_file,
        &format!("{hostname}\n"),
        "--hostname: /etc/hostname says it",
    )?;
    rewrite(
        k,
        &hosts_file,
        &hosts(c.state.network.as_ref(), hostname),
        "and /etc/hosts knows it",
    )
}

fn write_new(k: &dyn Kernel, path: &Path, text: &str, why: &str) -> Result<()> {
    let fd = k.openat(
        path,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
        0o644,
        why,
    )?;
    let written = k.write(fd, text.as_bytes(), "");
    k.close(fd)?;
    written?;
    Ok(())
}

fn rewrite(k: &dyn Kernel, path: &Path, text: &str, why: &str) -> Result<()> {
    let fd = k.openat(
        path,
        libc::O_WRONLY | libc::O_TRUNC | libc::O_CLOEXEC,
        0,
        why,
    )?;
    let written = k.write(fd, text.as_bytes(), "");
    k.close(fd)?;
    written?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_name_the_container() {
        let net = NetState {
            mode: Mode::Bridge,
            address: Some(Ipv4Addr::new(10, 88, 0, 2)),
            prefix: 16,
            gateway: Some(Ipv4Addr::new(10, 88, 0, 1)),
            host_veth: None,
        };
        assert!(hosts(Some(&net), "web").ends_with("10.88.0.2\tweb\n"));
        assert!(hosts(None, "web").ends_with("127.0.1.1\tweb\n"));
    }

    #[test]
    fn loopback_nameservers_are_dropped_unless_host() {
        let host = "search example.org\nnameserver 127.0.0.53\nnameserver 192.0.2.1\n";
        let c = resolv_conf(host, &[], Mode::Bridge);
        assert!(c.contains("search example.org\n") && c.contains("nameserver 192.0.2.1\n"));
        assert!(!c.contains("nameserver 127.0.0.53"));
        assert!(c.contains("use --dns"));
        assert!(resolv_conf(host, &[], Mode::Host).contains("nameserver 127.0.0.53"));
        let d = resolv_conf(host, &[Ipv4Addr::new(192, 0, 2, 53)], Mode::None);
        assert_eq!(d, "nameserver 192.0.2.53\n");
    }
}
