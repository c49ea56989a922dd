//! Volumes: `-v HOST:CTR[:ro|rw]`, a directory (or file) of the host bind-mounted into the
//! container.
//!
//! The container's root filesystem is an overlay whose writable layer (`upper/`) is deleted with
//! the container. A volume is the way out: the bind mount makes the host's directory appear at
//! `CTR` inside the container, so what the container writes there lands on the host, survives
//! `stepctr rm` and is seen by the next container given the same volume.
//!
//! The rules, checked before anything is created:
//! - HOST and CTR are absolute paths without `..` (a path that climbs is refused, not cleaned).
//! - CTR is not `/` (that is the overlay's place) and not `/proc` or below (procfs is mounted
//!   there by `start`, it would hide the volume).
//! - A missing HOST is created as a directory (as `docker run -v` does). It belongs to the host,
//!   not to the container: `rm` never deletes it.
//! - The option is `rw` (the default) or `ro`. `ro` covers the whole tree: a host directory with
//!   mounts below it (a tmpfs on a subdirectory, `/sys/fs/cgroup`'s controllers) is read-only
//!   in the container down to its last mount (see `stage::fs::make_readonly`), while the host's
//!   own mounts stay as they were.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::path::{Component, Path, PathBuf};

/// One volume, as parsed from `-v`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// The host's path (absolute).
    pub host: PathBuf,
    /// Where it appears in the container (absolute, normalised: no `.`, no empty components).
    pub container: PathBuf,
    /// Mounted read-only, with every mount below it: writes inside fail with EROFS.
    #[serde(default)]
    pub readonly: bool,
}

impl Volume {
    /// Parse `HOST:CTR[:ro|rw]`; errors are one line naming the spec and what to do.
    pub fn parse(spec: &str) -> Result<Volume> {
        let usage = "use -v HOST:CTR[:ro|rw] with absolute paths, e.g. -v /srv/data:/data:ro";
        let parts: Vec<&str> = spec.split(':').collect();
        let (host, ctr, opt) = match parts.as_slice() {
            [h, c] => (*h, *c, None),
            [h, c, o] => (*h, *c, Some(*o)),
            [_] => {
                bail!("invalid volume {spec:?}: no ':' between host and container path: {usage}")
            }
            _ => bail!("invalid volume {spec:?}: too many ':' ({usage})"),
        };
        let readonly = match opt {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(o) => bail!("invalid volume {spec:?}: unknown option {o:?} (use ro or rw)"),
        };
        let host = clean(spec, "host", host)?;
        let container = clean(spec, "container", ctr)?;
        if container == Path::new("/") {
            bail!("invalid volume {spec:?}: the container path cannot be / (the root is the image's overlay)");
        }
        if container.starts_with("/proc") {
            bail!("invalid volume {spec:?}: {} is under /proc, where `start` mounts procfs: pick another path", container.display());
        }
        Ok(Volume {
            host,
            container,
            readonly,
        })
    }

    /// The container path relative to the root (`data/sub` for `/data/sub`), for openat2.
    pub fn relative(&self) -> PathBuf {
        self.container
            .strip_prefix("/")
            .unwrap_or(&self.container)
            .to_path_buf()
    }

    /// How `-v` spells it back.
    pub fn spec(&self) -> String {
        format!(
            "{}:{}{}",
            self.host.display(),
            self.container.display(),
            if self.readonly { ":ro" } else { "" }
        )
    }
}

/// Parse every `-v`, refusing two volumes at one container path; sorted so that a volume is
/// mounted before any volume inside it (`/data` before `/data/logs`).
pub fn parse_all(specs: &[String]) -> Result<Vec<Volume>> {
    let mut out: Vec<Volume> = Vec::new();
    for s in specs {
        let v = Volume::parse(s)?;
        if let Some(other) = out.iter().find(|o| o.container == v.container) {
            bail!(
                "volumes {:?} and {:?} both mount on {}: use one",
                other.spec(),
                v.spec(),
                v.container.display()
            );
        }
        out.push(v);
    }
    out.sort_by_key(|v| v.container.components().count());
    Ok(out)
}

/// An absolute path without `..`, with `.` and repeated slashes dropped.
fn clean(spec: &str, which: &str, p: &str) -> Result<PathBuf> {
    if p.is_empty() {
        bail!("invalid volume {spec:?}: the {which} path is empty");
    }
    if p.contains('\0') {
        bail!("invalid volume {spec:?}: the {which} path contains a NUL byte");
    }
    if !p.starts_with('/') {
        bail!("invalid volume {spec:?}: the {which} path {p:?} is relative: give an absolute path");
    }
    let mut out = PathBuf::from("/");
    for c in Path::new(p).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => bail!(
                "invalid volume {spec:?}: the {which} path {p:?} contains `..`: give the path without it"
            ),
            Component::Normal(n) => out.push(n),
            Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_good_specs() {
        let v = Volume::parse("/srv/data:/data").unwrap();
        assert_eq!(v.host, Path::new("/srv/data"));
        assert_eq!(v.container, Path::new("/data"));
        assert!(!v.readonly);
        let v = Volume::parse("/srv//x/./:/a/b/:ro").unwrap();
        assert_eq!(v.host, Path::new("/srv/x"));
        assert_eq!(v.container, Path::new("/a/b"));
        assert_eq!(v.relative(), Path::new("a/b"));
        assert!(v.readonly);
        assert!(!Volume::parse("/a:/b:rw").unwrap().readonly);
        assert_eq!(Volume::parse("/a:/b:ro").unwrap().spec(), "/a:/b:ro");
    }

    #[test]
    fn refuses_bad_specs() {
        for (spec, want) in [
            ("/a", "no ':'"),
            ("a:/b", "relative"),
            ("/a:b", "relative"),
            ("/a:/b/../c", "`..`"),
            ("/a/..:/b", "`..`"),
            ("/a:/b:rx", "unknown option"),
            ("/a:/b:ro:x", "too many"),
            ("/a:/", "cannot be /"),
            ("/a:/proc/x", "/proc"),
            (":/b", "empty"),
        ] {
            let e = Volume::parse(spec).unwrap_err().to_string();
            assert!(e.contains(want), "{spec}: {e}");
            assert!(!e.contains('\n'), "{spec}: {e}");
        }
    }

    #[test]
    fn sorts_parents_first_and_refuses_duplicates() {
        let v = parse_all(&["/x:/data/logs".into(), "/y:/data".into()]).unwrap();
        assert_eq!(v[0].container, Path::new("/data"));
        assert!(parse_all(&["/x:/data".into(), "/y:/data/".into()]).is_err());
    }
}
