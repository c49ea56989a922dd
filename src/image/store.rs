//! The image store: an OCI image layout at `$STEPCTR_ROOT/images`.

use crate::state::RunConfig;
use anyhow::{anyhow, bail, Context, Result};
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub const REF_ANNOTATION: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, Clone)]
pub struct LayerInfo {
    /// Digest of the blob as stored (compressed).
    pub digest: String,
    pub media_type: String,
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: String,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub reference: String,
    pub manifest_digest: String,
    pub config: RunConfig,
    /// Bottom layer first.
    pub layers: Vec<LayerInfo>,
}

pub struct Store {
    pub dir: PathBuf,
}

/// `sha256:abc` → `abc`, refusing anything that is not a sha256 hex digest (digests become
/// file names, so they must never hold `/` or `..`).
pub fn digest_hex(digest: &str) -> Result<&str> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| anyhow!("unsupported digest {digest:?}: only sha256 is supported"))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("malformed digest {digest:?}");
    }
    Ok(hex)
}

fn ref_of(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(REF_ANNOTATION))
        .map(String::as_str)
}

fn load_index(layout: &Path) -> Result<ImageIndex> {
    let path = layout.join("index.json");
    ImageIndex::from_file(&path).with_context(|| format!("read {}", path.display()))
}

impl Store {
    /// Open the store, creating an empty OCI layout if there is none yet.
    pub fn open(dir: PathBuf) -> Result<Store> {
        fs::create_dir_all(dir.join("blobs/sha256"))
            .with_context(|| format!("create image store {}", dir.display()))?;
        let layout = dir.join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        sweep_stale_temps(&dir.join("blobs/sha256"));
        if let Some(root) = dir.parent() {
            sweep_stale_temps(root);
        }
        let index = dir.join("index.json");
        if !index.exists() {
            write_atomic(&index, br#"{"schemaVersion":2,"manifests":[]}"#)?;
        }
        Ok(Store { dir })
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.dir.join("blobs/sha256").join(digest_hex(digest)?))
    }

    /// The image stored under `reference` (already normalized), if any.
    pub fn resolve(&self, reference: &str) -> Result<Option<ImageInfo>> {
        let index = load_index(&self.dir)?;
        let Some(desc) = index
            .manifests()
            .iter()
            .find(|d| ref_of(d) == Some(reference))
        else {
            return Ok(None);
        };
        self.describe(reference, desc.digest().as_ref()).map(Some)
    }

    /// All references in the store with their manifest digests.
    pub fn list(&self) -> Result<Vec<(String, String)>> {
        let index = load_index(&self.dir)?;
        Ok(index
            .manifests()
            .iter()
            .filter_map(|d| ref_of(d).map(|r| (r.to_string(), d.digest().to_string())))
            .collect())
    }

    fn describe(&self, reference: &str, manifest_digest: &str) -> Result<ImageInfo> {
        let manifest = ImageManifest::from_file(self.blob_path(manifest_digest)?)
            .with_context(|| format!("read manifest {manifest_digest} of {reference}"))?;
        let config_digest = manifest.config().digest().to_string();
        let config = ImageConfiguration::from_file(self.blob_path(&config_digest)?)
            .with_context(|| format!("read config {config_digest} of {reference}"))?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            bail!(
                "image {reference} is inconsistent: {} layers but {} diff_ids in its config",
                manifest.layers().len(),
                diff_ids.len()
            );
        }
        let layers = manifest
            .layers()
            .iter()
            .zip(diff_ids)
            .map(|(l, diff_id)| LayerInfo {
                digest: l.digest().to_string(),
                media_type: l.media_type().to_string(),
                diff_id: diff_id.clone(),
                size: l.size(),
            })
            .collect();
        let c = config.config().clone().unwrap_or_default();
        let run = RunConfig {
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            env: c.env().clone().unwrap_or_default(),
            workdir: c
                .working_dir()
                .clone()
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".to_string()),
        };
        Ok(ImageInfo {
            reference: reference.to_string(),
            manifest_digest: manifest_digest.to_string(),
            config: run,
            layers,
        })
    }

    /// Copy an image from another OCI layout into the store (each blob checked against its
    /// digest on the way) and record it under `as_ref`. `tag` picks the image in the source's
    /// index by its ref.name annotation; without it the source must hold exactly one image.
    pub fn import_layout(&self, src: &Path, tag: Option<&str>, as_ref: &str) -> Result<ImageInfo> {
        let index = load_index(src)?;
        let candidates: Vec<&Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| match tag {
                Some(t) => ref_of(d) == Some(t),
                None => true,
            })
            .collect();
        let desc = match (candidates.as_slice(), tag) {
            ([one], _) => *one,
            ([], Some(t)) => bail!("no image tagged {t:?} in {}", src.display()),
            ([], None) => bail!("no image in {}", src.display()),
            (_, _) => bail!(
                "{} holds several images: name one with oci:{}:TAG",
                src.display(),
                src.display()
            ),
        };
        if *desc.media_type() != MediaType::ImageManifest {
            bail!(
                "{}: only single-platform OCI image manifests are supported here, not {}",
                src.display(),
                desc.media_type()
            );
        }
        let manifest_digest = desc.digest().to_string();
        let src_blob =
            |d: &str| -> Result<PathBuf> { Ok(src.join("blobs/sha256").join(digest_hex(d)?)) };
        let manifest = ImageManifest::from_file(src_blob(&manifest_digest)?)
            .with_context(|| format!("read manifest {manifest_digest} in {}", src.display()))?;
        let mut blobs = vec![manifest.config().digest().to_string()];
        blobs.extend(manifest.layers().iter().map(|l| l.digest().to_string()));
        blobs.push(manifest_digest.clone());
        for digest in &blobs {
            self.copy_blob(&src_blob(digest)?, digest)?;
        }
        self.add_ref(desc, as_ref)?;
        self.describe(as_ref, &manifest_digest)
    }

    /// Copy one blob in, verifying its sha256, via a temporary file renamed into place.
    fn copy_blob(&self, from: &Path, digest: &str) -> Result<()> {
        let dest = self.blob_path(digest)?;
        if dest.exists() {
            return Ok(());
        }
        let mut input = fs::File::open(from).with_context(|| format!("open {}", from.display()))?;
        let tmp = self.dir.join(format!(
            "blobs/sha256/.tmp-{}-{}",
            digest_hex(digest)?,
            std::process::id()
        ));
        let result = (|| -> Result<()> {
            let mut out = fs::File::create(&tmp)?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = input.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n])?;
            }
            let got = format!("sha256:{}", hex::encode(hasher.finalize()));
            if got != digest {
                bail!(
                    "blob {} has digest {got}, expected {digest}",
                    from.display()
                );
            }
            out.sync_all()?;
            fs::rename(&tmp, &dest)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.with_context(|| format!("copy blob {digest} into the store"))
    }

    /// Point `reference` at `desc` in index.json (replacing an older image of that name).
    fn add_ref(&self, desc: &Descriptor, reference: &str) -> Result<()> {
        let _lock = self.lock()?;
        let mut index = load_index(&self.dir)?;
        let mut d = desc.clone();
        let mut ann = HashMap::new();
        ann.insert(REF_ANNOTATION.to_string(), reference.to_string());
        d.set_annotations(Some(ann));
        let mut manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|m| ref_of(m) != Some(reference))
            .cloned()
            .collect();
        manifests.push(d);
        index.set_manifests(manifests);
        let json = serde_json::to_vec_pretty(&index)?;
        write_atomic(&self.dir.join("index.json"), &json)
    }

    fn lock(&self) -> Result<fs::File> {
        let f = fs::File::open(&self.dir)?;
        // Released when the File drops.
        crate::kernel::host::lock_exclusive(&f)
            .with_context(|| format!("lock {}", self.dir.display()))?;
        Ok(f)
    }
}

/// Remove temporary files and directories (`.tmp-...-PID`, `.build-...-PID`) left in `dir` by a
/// stepctr process that was killed: their PID no longer runs.
pub fn sweep_stale_temps(dir: &Path) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with(".tmp-") || name.starts_with(".build-")) {
            continue;
        }
        let Some(pid) = name.rsplit('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pid > 0 && !Path::new(&format!("/proc/{pid}")).exists() {
            let path = entry.path();
            let _ = if path.is_dir() && !path.is_symlink() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
        }
    }
}

/// Write a file via a temporary sibling and rename, so readers never see half of it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".tmp-{name}-{}", std::process::id()));
    fs::write(&tmp, bytes).with_context(|| format!("write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))
}
