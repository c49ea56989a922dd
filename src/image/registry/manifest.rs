//! Manifests and indexes as registries serve them (OCI and Docker flavours), choosing a
//! platform from an index, and the Docker → OCI conversion skopeo does when it writes an OCI
//! layout.

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_SCHEMA1: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// The `Accept` header of a manifest request: every kind we can use, best first.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Manifests and indexes are small; anything bigger is not one.
pub const MANIFEST_MAX: usize = 4 << 20;

/// A content descriptor as manifests and indexes hold them.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub urls: Option<Vec<String>>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    /// `--platform os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(ok) {
            bail!("invalid platform {s:?}: write it as os/arch or os/arch/variant, like linux/arm64/v8");
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture: normalize_arch(&parts[1].to_ascii_lowercase()).to_string(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }

    /// The platform this machine runs, in OCI's words (Go's GOOS/GOARCH).
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "x86" => ("386", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: arch.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// Does an index entry for `self` run where `want` is asked for? Variants are compared
    /// after the defaults are filled in (arm64 means v8); a `want` without a variant takes
    /// any variant.
    fn matches(&self, want: &Platform) -> bool {
        self.os == want.os
            && normalize_arch(&self.architecture) == want.architecture
            && match &want.variant {
                None => true,
                Some(v) => {
                    default_variant(&want.architecture, Some(v))
                        == default_variant(&self.architecture, self.variant.as_deref())
                }
            }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = self.variant.as_deref().filter(|v| !v.is_empty()) {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

fn normalize_arch(a: &str) -> &str {
    match a {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "i386" | "i686" => "386",
        other => other,
    }
}

fn default_variant<'a>(arch: &str, v: Option<&'a str>) -> Option<&'a str> {
    match (normalize_arch(arch), v) {
        ("arm64", None | Some("" | "v8")) => None,
        ("arm", None | Some("")) => Some("v7"),
        (_, Some("")) => None,
        (_, v) => v,
    }
}

/// What a manifest request returned.
#[derive(Debug)]
pub enum Fetched {
    /// A multi-platform index (OCI image index or Docker manifest list).
    Index(Vec<Descriptor>),
    /// One image's manifest.
    Image(Box<ImageManifest>),
}

#[derive(Debug, Clone)]
pub struct ImageManifest {
    /// The media type the registry served it as.
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// The manifest as parsed, to convert without losing fields.
    pub raw: Value,
}

impl ImageManifest {
    pub fn is_docker(&self) -> bool {
        self.media_type == DOCKER_MANIFEST
    }
}

/// Decide what `body` is: by the Content-Type the registry sent, else by its own `mediaType`,
/// else by its shape (OCI allows leaving `mediaType` out).
pub fn parse(content_type: Option<&str>, body: &[u8], what: &str) -> Result<Fetched> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| anyhow!("the manifest of {what} is not valid JSON: {e}"))?;
    let own = v.get("mediaType").and_then(Value::as_str);
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim())
        .filter(|c| !c.is_empty() && *c != "application/json" && *c != "text/plain");
    let media_type = match (header, own) {
        (Some(h), _) => h.to_string(),
        (None, Some(o)) => o.to_string(),
        (None, None) if v.get("manifests").is_some() => OCI_INDEX.to_string(),
        (None, None) if v.get("layers").is_some() => OCI_MANIFEST.to_string(),
        (None, None) if v.get("fsLayers").is_some() => DOCKER_SCHEMA1[0].to_string(),
        (None, None) => bail!("the manifest of {what} has no media type and no known shape"),
    };
    let field = |name: &str| -> Result<Value> {
        v.get(name)
            .cloned()
            .ok_or_else(|| anyhow!("the {media_type} of {what} has no {name:?}"))
    };
    let descs = |val: Value, name: &str| -> Result<Vec<Descriptor>> {
        serde_json::from_value(val)
            .map_err(|e| anyhow!("the {name} of {what}'s manifest are malformed: {e}"))
    };
    match media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => Ok(Fetched::Index(descs(field("manifests")?, "entries")?)),
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let config: Descriptor = serde_json::from_value(field("config")?)
                .map_err(|e| anyhow!("the config descriptor of {what} is malformed: {e}"))?;
            let layers = descs(field("layers")?, "layers")?;
            Ok(Fetched::Image(Box::new(ImageManifest {
                media_type,
                config,
                layers,
                raw: v,
            })))
        }
        t if DOCKER_SCHEMA1.contains(&t) => bail!(
            "{what} is a Docker schema 1 manifest ({t}), which is deprecated and not supported: \
             push the image again with a current docker or skopeo"
        ),
        t => bail!(
            "unsupported manifest media type {t} for {what}: stepctr pulls OCI and Docker \
             schema 2 images and indexes"
        ),
    }
}

/// Pick the entry of `index` for `want`; an error lists the platforms there are.
pub fn choose_platform<'a>(
    index: &'a [Descriptor],
    want: &Platform,
    what: &str,
) -> Result<&'a Descriptor> {
    let candidates: Vec<&Descriptor> = index
        .iter()
        .filter(|d| d.platform.as_ref().is_some_and(|p| p.matches(want)))
        .collect();
    // With no variant asked for, prefer the entry without one (or with the default one).
    let best = candidates
        .iter()
        .find(|d| {
            d.platform.as_ref().is_some_and(|p| {
                default_variant(&p.architecture, p.variant.as_deref())
                    == default_variant(&want.architecture, None)
            })
        })
        .or(candidates.first());
    if let Some(d) = best {
        return Ok(d);
    }
    let mut have: Vec<String> = index
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .filter(|p| p.os != "unknown")
        .map(Platform::to_string)
        .collect();
    have.dedup();
    bail!(
        "{what} has no image for {want}: it has {}; choose one with --platform",
        if have.is_empty() {
            "no platforms listed".to_string()
        } else {
            have.join(", ")
        }
    )
}

/// Can stepctr unpack a layer of this media type? Returns the OCI type to store it as.
pub fn layer_media_type(t: &str) -> Option<&'static str> {
    match t {
        OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => Some(OCI_LAYER_GZIP),
        OCI_LAYER_TAR | DOCKER_LAYER_TAR => Some(OCI_LAYER_TAR),
        OCI_LAYER_ZSTD => Some(OCI_LAYER_ZSTD),
        _ => None,
    }
}

/// Check that `m` is a container image whose layers we can unpack.
pub fn check_supported(m: &ImageManifest, what: &str) -> Result<()> {
    let ct = m.config.media_type.as_str();
    if ct != OCI_CONFIG && ct != DOCKER_CONFIG {
        bail!(
            "{what} is not a container image: its config has media type {ct:?} (an OCI \
             artifact?); stepctr runs images with an OCI or Docker image config"
        );
    }
    for l in &m.layers {
        if layer_media_type(&l.media_type).is_none() {
            bail!(
                "unsupported layer media type {:?} in {what} (layer {}): stepctr handles tar, \
                 tar+gzip and tar+zstd layers",
                l.media_type,
                l.digest
            );
        }
        if l.urls.as_ref().is_some_and(|u| !u.is_empty()) {
            bail!(
                "{what} has a foreign layer {} that must be fetched from {:?}: not supported",
                l.digest,
                l.urls
            );
        }
    }
    Ok(())
}

/// The OCI form of a Docker schema 2 manifest (what `skopeo copy` writes to an OCI layout):
/// the same config and layer blobs, OCI media types. The config blob stays byte for byte the
/// same (Docker's image config is a superset of OCI's).
pub fn to_oci(m: &ImageManifest) -> Vec<u8> {
    let desc = |d: &Descriptor, media_type: &str| {
        let mut v = json!({"mediaType": media_type, "digest": d.digest, "size": d.size});
        if let Some(a) = d.annotations.as_ref().filter(|a| !a.is_empty()) {
            v["annotations"] = json!(a);
        }
        v
    };
    let layers: Vec<Value> = m
        .layers
        .iter()
        .map(|l| desc(l, layer_media_type(&l.media_type).unwrap_or(OCI_LAYER_GZIP)))
        .collect();
    let mut out = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc(&m.config, OCI_CONFIG),
        "layers": layers,
    });
    if let Some(a) = m.raw.get("annotations").filter(|a| a.is_object()) {
        out["annotations"] = a.clone();
    }
    serde_json::to_vec(&out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(os: &str, arch: &str, variant: Option<&str>, d: char) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{}", d.to_string().repeat(64)),
            size: 1,
            platform: Some(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(Into::into),
            }),
            urls: None,
            annotations: None,
        }
    }

    #[test]
    fn platforms_are_chosen_like_containerd_does() {
        let idx = vec![
            entry("linux", "amd64", None, 'a'),
            entry("linux", "arm", Some("v6"), 'b'),
            entry("linux", "arm", Some("v7"), 'c'),
            entry("linux", "arm64", Some("v8"), 'd'),
            entry("unknown", "unknown", None, 'e'),
        ];
        let pick = |p: &str| {
            choose_platform(&idx, &Platform::parse(p).unwrap(), "x")
                .map(|d| d.digest.chars().last().unwrap())
        };
        assert_eq!(pick("linux/amd64").unwrap(), 'a');
        assert_eq!(pick("linux/x86_64").unwrap(), 'a');
        assert_eq!(pick("linux/arm64").unwrap(), 'd');
        assert_eq!(pick("linux/arm64/v8").unwrap(), 'd');
        assert_eq!(pick("linux/arm/v6").unwrap(), 'b');
        assert_eq!(pick("linux/arm/v7").unwrap(), 'c');
        let e = pick("linux/s390x").unwrap_err().to_string();
        assert!(
            e.contains("no image for linux/s390x")
                && e.contains("linux/amd64, linux/arm/v6, linux/arm/v7, linux/arm64/v8")
                && !e.contains("unknown"),
            "{e}"
        );
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux/amd64/v2/x").is_err());
        assert!(Platform::parse("linux//v2").is_err());
        assert!(
            choose_platform(&idx, &Platform::host(), "x").is_ok()
                || cfg!(not(any(target_arch = "x86_64", target_arch = "aarch64")))
        );
    }

    #[test]
    fn manifests_are_recognised_by_type_or_shape() {
        let m = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:aa","size":2},"layers":[]}"#;
        assert!(matches!(parse(None, m, "x").unwrap(), Fetched::Image(_)));
        let i = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse(Some("application/json"), i, "x").unwrap(),
            Fetched::Index(_)
        ));
        let e = parse(
            Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
            b"{}",
            "x",
        )
        .unwrap_err();
        assert!(e.to_string().contains("schema 1"), "{e}");
        let e = parse(Some("application/vnd.example+json"), b"{}", "x").unwrap_err();
        assert!(
            e.to_string().contains("unsupported manifest media type"),
            "{e}"
        );
        assert!(parse(None, b"not json", "x").is_err());
    }

    #[test]
    fn docker_manifests_convert_to_oci_keeping_blobs() {
        let d = format!("sha256:{}", "1".repeat(64));
        let body = json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "digest": d, "size": 10},
            "layers": [{"mediaType": DOCKER_LAYER_GZIP, "digest": d, "size": 20}],
        })
        .to_string();
        let Fetched::Image(m) = parse(Some(DOCKER_MANIFEST), body.as_bytes(), "x").unwrap() else {
            panic!("not an image");
        };
        check_supported(&m, "x").unwrap();
        let oci: Value = serde_json::from_slice(&to_oci(&m)).unwrap();
        assert_eq!(oci["mediaType"], OCI_MANIFEST);
        assert_eq!(oci["config"]["mediaType"], OCI_CONFIG);
        assert_eq!(oci["config"]["digest"], d.as_str());
        assert_eq!(oci["layers"][0]["mediaType"], OCI_LAYER_GZIP);
        assert_eq!(oci["layers"][0]["size"], 20);

        let mut bad = m.clone();
        bad.layers[0].media_type = "application/vnd.oci.image.layer.v1.tar+lz4".into();
        let e = check_supported(&bad, "x").unwrap_err().to_string();
        assert!(e.contains("unsupported layer media type"), "{e}");
        let mut art = m;
        art.config.media_type = "application/vnd.cncf.helm.config.v1+json".into();
        assert!(check_supported(&art, "x")
            .unwrap_err()
            .to_string()
            .contains("not a container image"));
    }
}
