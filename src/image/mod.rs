//! Images: references, the OCI image layout store, and unpacking layers.
//!
//! The store under `$STEPCTR_ROOT/images` is a standard OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/...`), so `skopeo inspect oci:/var/lib/stepctr/images:REF` and
//! umoci can read it. Each image in `index.json` carries its full reference in the
//! `org.opencontainers.image.ref.name` annotation.

pub mod archive;
pub mod commands;
pub mod reference;
pub mod registry;
pub mod store;
pub mod unpack;

pub use reference::ImageRef;
pub use store::{ImageInfo, LayerInfo, Store};

/// The image `stepctr all` uses when none is given: busybox, built on this machine by
/// `rootfs-fetch` (no network needed).
pub const DEFAULT_IMAGE: &str = "localhost/stepctr-busybox:latest";

/// The short names a learner may type for the default image.
const DEFAULT_ALIASES: &[&str] = &["default", "stepctr-busybox", "localhost/stepctr-busybox"];

/// The store's key for what the user typed: the canonical reference
/// (`alpine` → `docker.io/library/alpine:latest`), the local name of an `oci:` source, the
/// default image for its aliases; anything unparseable is returned as typed (it will not be
/// found).
pub fn normalize(reference: &str) -> String {
    match Source::parse(reference) {
        Ok((_, stored)) => stored,
        Err(_) => reference.to_string(),
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
    /// `docker-archive:FILE[:REF]`: what `docker save` writes; REF picks one of its images by
    /// tag (or `@N`, its position) when it holds several.
    DockerArchive {
        file: std::path::PathBuf,
        reference: Option<String>,
    },
    /// A registry reference (`alpine`, `ghcr.io/o/r:t`, `localhost:5000/x@sha256:...`).
    Registry(ImageRef),
}

impl Source {
    /// Parse what the user typed into where to get the image from and the name to store it
    /// under; a malformed registry reference is refused with the reason.
    pub fn parse(reference: &str) -> Result<(Source, String), reference::RefError> {
        if DEFAULT_ALIASES.contains(&reference) || reference == DEFAULT_IMAGE {
            return Ok((Source::Default, DEFAULT_IMAGE.to_string()));
        }
        if let Some(rest) = reference.strip_prefix("oci:") {
            let (dir, tag) = match rest.rsplit_once(':') {
                Some((d, t)) if !t.contains('/') && !d.is_empty() => (d, Some(t.to_string())),
                _ => (rest, None),
            };
            let dir = std::path::PathBuf::from(dir);
            let stored = format!(
                "localhost/{}:{}",
                local_name(&dir, false),
                tag.as_deref().unwrap_or("latest")
            );
            return Ok((Source::OciLayout { dir, tag }, stored));
        }
        if let Some(rest) = reference.strip_prefix("docker-archive:") {
            // As skopeo reads it: the file name ends at the first ':'.
            let (file, want) = match rest.split_once(':') {
                Some((f, r)) if !f.is_empty() && !r.is_empty() => (f, Some(r.to_string())),
                _ => (rest, None),
            };
            let file = std::path::PathBuf::from(file);
            // The archive's own tag decides the name; this one is for untagged archives.
            let stored = format!("localhost/{}:latest", local_name(&file, true));
            return Ok((
                Source::DockerArchive {
                    file,
                    reference: want,
                },
                stored,
            ));
        }
        let r = ImageRef::parse(reference)?;
        let stored = r.to_string();
        if stored == DEFAULT_IMAGE {
            return Ok((Source::Default, stored));
        }
        Ok((Source::Registry(r), stored))
    }
}

/// A repository name for a local directory (its lower-cased base name) or file (without its
/// extension).
fn local_name(path: &std::path::Path, is_file: bool) -> String {
    let name = if is_file {
        path.file_stem()
    } else {
        path.file_name()
    };
    name.map(|n| n.to_string_lossy().to_lowercase())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "image".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_get_latest_when_untagged() {
        assert_eq!(normalize("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(normalize("alpine:3.19"), "docker.io/library/alpine:3.19");
        assert_eq!(normalize("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(
            normalize("x@sha256:ab"),
            "x@sha256:ab",
            "unparseable: kept as typed"
        );
        assert_eq!(normalize("default"), DEFAULT_IMAGE);
        assert_eq!(normalize(DEFAULT_IMAGE), DEFAULT_IMAGE);
        assert_eq!(normalize("oci:/tmp/img:v1"), "localhost/img:v1");
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
        assert!(matches!(
            Source::parse("alpine"),
            Ok((Source::Registry(_), s)) if s == "docker.io/library/alpine:latest"
        ));
        assert!(Source::parse("Alpine").is_err());
    }
}
