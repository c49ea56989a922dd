//! Images: references, the OCI image layout store, and unpacking layers.
//!
//! The store under `$STEPCTR_ROOT/images` is a standard OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/...`), so `skopeo inspect oci:/var/lib/stepctr/images:REF` and
//! umoci can read it. Each image in `index.json` carries its full reference in the
//! `org.opencontainers.image.ref.name` annotation.

pub mod store;
pub mod unpack;

pub use store::{ImageInfo, LayerInfo, Store};

/// The image `stepctr all` uses when none is given: busybox, built on this machine by
/// `rootfs-fetch` (no network needed).
pub const DEFAULT_IMAGE: &str = "localhost/stepctr-busybox:latest";

/// The short names a learner may type for the default image.
const DEFAULT_ALIASES: &[&str] = &["default", "stepctr-busybox", "localhost/stepctr-busybox"];

/// A reference as stored: `name:tag` or `name@sha256:...`; `:latest` when no tag is given.
pub fn normalize(reference: &str) -> String {
    if DEFAULT_ALIASES.contains(&reference) {
        return DEFAULT_IMAGE.to_string();
    }
    if reference.contains('@') {
        return reference.to_string();
    }
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if last.contains(':') {
        reference.to_string()
    } else {
        format!("{reference}:latest")
    }
}

/// Where `pull` takes an image from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The default image, built locally by rootfs-fetch.
    Default,
    /// `oci:DIR[:TAG]`: an OCI image layout on disk.
    OciLayout {
        dir: std::path::PathBuf,
        tag: Option<String>,
    },
}

impl Source {
    /// Parse what the user typed; `None` means "a registry reference" (not supported yet).
    pub fn parse(reference: &str) -> Option<(Source, String)> {
        if normalize(reference) == DEFAULT_IMAGE {
            return Some((Source::Default, DEFAULT_IMAGE.to_string()));
        }
        let rest = reference.strip_prefix("oci:")?;
        let (dir, tag) = match rest.rsplit_once(':') {
            Some((d, t)) if !t.contains('/') && !d.is_empty() => (d, Some(t.to_string())),
            _ => (rest, None),
        };
        let dir = std::path::PathBuf::from(dir);
        let base = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_else(|| "image".to_string());
        let stored = format!("localhost/{base}:{}", tag.as_deref().unwrap_or("latest"));
        Some((Source::OciLayout { dir, tag }, stored))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_get_latest_when_untagged() {
        assert_eq!(normalize("alpine"), "alpine:latest");
        assert_eq!(normalize("alpine:3.19"), "alpine:3.19");
        assert_eq!(normalize("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(normalize("x@sha256:ab"), "x@sha256:ab");
        assert_eq!(normalize("default"), DEFAULT_IMAGE);
    }

    #[test]
    fn oci_sources_parse_dir_and_tag() {
        let (s, stored) = Source::parse("oci:/tmp/img:v1").unwrap();
        assert_eq!(
            s,
            Source::OciLayout {
                dir: "/tmp/img".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(stored, "localhost/img:v1");
        assert!(Source::parse("alpine").is_none());
    }
}
