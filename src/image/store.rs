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
        let index = dir.join("index.json");
        if !index.exists() {
            write_atomic(&index, br#"{"schemaVersion":2,"manifests":[]}"#)?;
        }
        Ok(Store { dir })
    }

    /// Remove what a crashed writer left (temporary blobs, a half-built default image): call
    /// before writing to the store, not on every read (it lists the directories).
    pub fn sweep(&self) {
        sweep_stale_temps(&self.dir.join("blobs/sha256"));
        if let Some(root) = self.dir.parent() {
            sweep_stale_temps(root);
        }
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

    /// The image whose manifest is `manifest_digest`, described under `reference`.
    pub fn describe(&self, reference: &str, manifest_digest: &str) -> Result<ImageInfo> {
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
        let _pin = self.pin(&blobs)?;
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
    pub fn add_ref(&self, desc: &Descriptor, reference: &str) -> Result<()> {
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
    let written = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        // On disk before the rename: after a crash the name holds the old or the new bytes.
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.with_context(|| format!("write {}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Blobs in, references out, garbage collected: what `images`, `rmi`, `inspect` and the
// importers (docker-archive, registry pulls) share.

/// JSON blobs (manifests, indexes, configs) bigger than this are refused: no real one is.
pub const MAX_JSON_BLOB: u64 = 16 << 20;

/// One entry of the store's index.json: a reference and the descriptor it points to.
#[derive(Debug, Clone)]
pub struct Entry {
    pub reference: String,
    pub descriptor: Descriptor,
}

/// What [`Store::remove`] did.
#[derive(Debug, Default)]
pub struct Removal {
    /// `(reference, manifest digest)` of each index entry removed.
    pub untagged: Vec<(String, String)>,
    /// `(digest, bytes)` of each blob deleted because no remaining image uses it.
    pub blobs: Vec<(String, u64)>,
    /// Unpacked layer directories deleted because no remaining image or container uses them.
    pub layers: Vec<PathBuf>,
}

/// What the blobs of the remaining images are: every digest reachable from index.json, and
/// the diff_ids of their layers.
#[derive(Debug, Default)]
pub struct Reachable {
    pub blobs: std::collections::HashSet<String>,
    pub diff_ids: std::collections::HashSet<String>,
}

/// Keeps blobs out of the garbage collector's reach while an import copies them in and until
/// it has added its reference: a file `.pins/<pid>-<n>` listing their digests, removed on drop.
/// Pins of processes that no longer run are ignored (and removed) by the collector.
pub struct Pin {
    path: PathBuf,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A container's claim on images and layers, read from `$STEPCTR_RUN/<name>/state.json`.
#[derive(Debug, Clone)]
pub struct ContainerUse {
    pub name: String,
    pub image: String,
    pub image_digest: String,
    pub layers: Vec<PathBuf>,
}

/// Every container under `run_dir` and what it uses (state files are read without taking the
/// containers' locks: a running `start` or `load` must not block `rmi`).
pub fn container_uses(run_dir: &Path) -> Vec<ContainerUse> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(run_dir) else {
        return out;
    };
    for e in rd.flatten() {
        if !e.path().is_dir() {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let state: serde_json::Value = fs::read(e.path().join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let s = |k: &str| state[k].as_str().unwrap_or_default().to_string();
        out.push(ContainerUse {
            name,
            image: s("image"),
            image_digest: s("image_digest"),
            layers: state["layers"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(PathBuf::from))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn is_hex_digest_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

static PIN_COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Store {
    /// The store at `dir` if there is one (for commands that only read: they create nothing).
    pub fn open_existing(dir: PathBuf) -> Result<Option<Store>> {
        if !dir.join("index.json").exists() {
            return Ok(None);
        }
        Ok(Some(Store { dir }))
    }

    /// Every reference in index.json with its descriptor, in index order.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let index = load_index(&self.dir)?;
        Ok(index
            .manifests()
            .iter()
            .filter_map(|d| {
                ref_of(d).map(|r| Entry {
                    reference: r.to_string(),
                    descriptor: d.clone(),
                })
            })
            .collect())
    }

    /// The entry for `reference` as typed or as [`super::normalize`] spells it.
    pub fn find(&self, reference: &str) -> Result<Option<Entry>> {
        let entries = self.entries()?;
        let normalized = super::normalize(reference);
        Ok(entries
            .iter()
            .find(|e| e.reference == reference)
            .or_else(|| entries.iter().find(|e| e.reference == normalized))
            .cloned())
    }

    /// A small JSON blob (manifest, index, config), checked against its digest.
    pub fn read_json_blob(&self, digest: &str) -> Result<(Vec<u8>, serde_json::Value)> {
        let path = self.blob_path(digest)?;
        let f = fs::File::open(&path)
            .with_context(|| format!("blob {digest} is missing from {}", self.dir.display()))?;
        let mut bytes = Vec::new();
        f.take(MAX_JSON_BLOB + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("read {}", path.display()))?;
        if bytes.len() as u64 > MAX_JSON_BLOB {
            bail!("blob {digest} is too big to be a manifest or config");
        }
        let got = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if got != digest {
            bail!("blob {digest} in the store is corrupt: its content hashes to {got}");
        }
        let v =
            serde_json::from_slice(&bytes).with_context(|| format!("blob {digest} is not JSON"))?;
        Ok((bytes, v))
    }

    /// A path for a temporary file among the blobs (`.tmp-<what>-<pid>`): renamed into place by
    /// [`Store::adopt_blob`], swept away if this process dies first.
    pub fn temp_path(&self, what: &str) -> PathBuf {
        self.dir
            .join("blobs/sha256")
            .join(format!(".tmp-{what}-{}", std::process::id()))
    }

    /// Move the finished temporary file `tmp`, whose content the caller has hashed to
    /// `digest`, into the store (dropping it if the store already has that blob).
    pub fn adopt_blob(&self, tmp: &Path, digest: &str) -> Result<()> {
        let dest = self.blob_path(digest)?;
        if dest.exists() {
            let _ = fs::remove_file(tmp);
            return Ok(());
        }
        fs::File::open(tmp)
            .and_then(|f| f.sync_all())
            .and_then(|_| fs::rename(tmp, &dest))
            .with_context(|| format!("move blob {digest} into {}", self.dir.display()))
    }

    /// Write `bytes` as a blob; returns its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<String> {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        let dest = self.blob_path(&digest)?;
        if !dest.exists() {
            write_atomic(&dest, bytes)?;
        }
        Ok(digest)
    }

    /// Protect `digests` from [`Store::remove`]'s garbage collection until the pin drops. Take
    /// it before looking whether a blob is already there; drop it after [`Store::add_ref`].
    pub fn pin(&self, digests: &[String]) -> Result<Pin> {
        let dir = self.dir.join(".pins");
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let n = PIN_COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = dir.join(format!("{}-{n}", std::process::id()));
        // Under the store lock, so a collection running now finishes before the blobs are
        // looked at, and one starting later sees the pin.
        let _lock = self.lock()?;
        write_atomic(&path, digests.join("\n").as_bytes())?;
        Ok(Pin { path })
    }

    /// Digests pinned by running processes (pins of dead ones are removed).
    fn pinned(&self) -> std::collections::HashSet<String> {
        let mut set = std::collections::HashSet::new();
        let Ok(rd) = fs::read_dir(self.dir.join(".pins")) else {
            return set;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
            let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
            if name.starts_with(".tmp-") {
                continue;
            }
            if !alive {
                let _ = fs::remove_file(e.path());
                continue;
            }
            if let Ok(text) = fs::read_to_string(e.path()) {
                set.extend(text.lines().map(str::to_string));
            }
        }
        set
    }

    /// Every blob reachable from `entries`: indexes → manifests → config and layers, plus the
    /// layers' diff_ids. Blobs an index names but the store lacks (platforms not pulled) are
    /// skipped.
    pub fn reachable(&self, entries: &[Entry]) -> Reachable {
        let mut r = Reachable::default();
        let mut todo: Vec<String> = entries
            .iter()
            .map(|e| e.descriptor.digest().to_string())
            .collect();
        while let Some(digest) = todo.pop() {
            if !r.blobs.insert(digest.clone()) {
                continue;
            }
            let Ok((_, v)) = self.read_json_blob(&digest) else {
                continue;
            };
            if let Some(children) = v["manifests"].as_array() {
                todo.extend(
                    children
                        .iter()
                        .filter_map(|m| m["digest"].as_str().map(str::to_string)),
                );
            }
            if let Some(config) = v["config"]["digest"].as_str() {
                r.blobs.insert(config.to_string());
                if let Ok((_, c)) = self.read_json_blob(config) {
                    if let Some(ids) = c["rootfs"]["diff_ids"].as_array() {
                        r.diff_ids
                            .extend(ids.iter().filter_map(|d| d.as_str().map(str::to_string)));
                    }
                }
            }
            if let Some(layers) = v["layers"].as_array() {
                r.blobs.extend(
                    layers
                        .iter()
                        .filter_map(|l| l["digest"].as_str().map(str::to_string)),
                );
            }
        }
        r
    }

    /// Remove `references` (exact, as stored) from index.json, then delete every blob no
    /// remaining image reaches (and no running import has pinned), and every unpacked layer
    /// directory in `layers_dir` that neither a remaining image nor `keep_layers` (the
    /// containers' layers) uses. All under the store lock; a layer directory is renamed to a
    /// temporary name before it is deleted, so a crash never leaves half a layer under its
    /// diff_id.
    pub fn remove(
        &self,
        references: &[String],
        layers_dir: &Path,
        keep_layers: &[PathBuf],
    ) -> Result<Removal> {
        let _lock = self.lock()?;
        let mut index = load_index(&self.dir)?;
        let mut removal = Removal::default();
        for r in references {
            if !index.manifests().iter().any(|d| ref_of(d) == Some(r)) {
                bail!("no image {r} in the store: `stepctr images` lists what is there");
            }
        }
        let (gone, kept): (Vec<Descriptor>, Vec<Descriptor>) = index
            .manifests()
            .iter()
            .cloned()
            .partition(|d| ref_of(d).is_some_and(|r| references.iter().any(|x| x == r)));
        for d in &gone {
            removal.untagged.push((
                ref_of(d).unwrap_or_default().to_string(),
                d.digest().to_string(),
            ));
        }
        index.set_manifests(kept.clone());
        write_atomic(
            &self.dir.join("index.json"),
            &serde_json::to_vec_pretty(&index)?,
        )?;

        // Unnamed entries (no ref.name annotation) count as images too.
        let remaining: Vec<Entry> = kept
            .into_iter()
            .map(|d| Entry {
                reference: String::new(),
                descriptor: d,
            })
            .collect();
        let reach = self.reachable(&remaining);
        let pinned = self.pinned();
        let blobs_dir = self.dir.join("blobs/sha256");
        let rd =
            fs::read_dir(&blobs_dir).with_context(|| format!("read {}", blobs_dir.display()))?;
        let mut names: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| is_hex_digest_name(n))
            .collect();
        names.sort();
        for hex in names {
            let digest = format!("sha256:{hex}");
            if reach.blobs.contains(&digest) || pinned.contains(&digest) {
                continue;
            }
            let path = blobs_dir.join(&hex);
            let size = fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&path).with_context(|| format!("remove blob {digest}"))?;
            removal.blobs.push((digest, size));
        }

        let Ok(rd) = fs::read_dir(layers_dir) else {
            return Ok(removal);
        };
        let mut layer_dirs: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| is_hex_digest_name(&n.to_string_lossy()))
            })
            .collect();
        layer_dirs.sort();
        for dir in layer_dirs {
            let hex = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let in_image = reach.diff_ids.contains(&format!("sha256:{hex}"));
            let in_container = keep_layers
                .iter()
                .any(|k| k == &dir || k.file_name().is_some_and(|n| n.to_string_lossy() == hex));
            if in_image || in_container {
                continue;
            }
            let tmp = layers_dir.join(format!(".tmp-gc-{hex}-{}", std::process::id()));
            fs::rename(&dir, &tmp)
                .with_context(|| format!("remove layer directory {}", dir.display()))?;
            fs::remove_dir_all(&tmp)
                .with_context(|| format!("remove layer directory {}", tmp.display()))?;
            removal.layers.push(dir);
        }
        Ok(removal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_blobs_survive_garbage_collection_until_the_pin_drops() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("images")).unwrap();
        let layers = tmp.path().join("layers");
        let a = store.put_blob(b"a").unwrap();
        let b = store.put_blob(b"b").unwrap();
        // A pin left by a process that is gone protects nothing, and is cleared away.
        let pin = store.pin(std::slice::from_ref(&a)).unwrap();
        let dead = store.dir.join(".pins/999999999-0");
        fs::write(&dead, &b).unwrap();
        let r = store.remove(&[], &layers, &[]).unwrap();
        assert_eq!(r.blobs.iter().map(|(d, _)| d).collect::<Vec<_>>(), [&b]);
        assert!(store.blob_path(&a).unwrap().exists());
        assert!(!dead.exists());
        drop(pin);
        let r = store.remove(&[], &layers, &[]).unwrap();
        assert_eq!(r.blobs.iter().map(|(d, _)| d).collect::<Vec<_>>(), [&a]);
        assert!(fs::read_dir(store.dir.join(".pins"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn removing_an_unknown_reference_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("images")).unwrap();
        let a = store.put_blob(b"a").unwrap();
        let err = store
            .remove(&["x:1".to_string()], &tmp.path().join("layers"), &[])
            .unwrap_err();
        assert!(
            err.to_string().contains("no image x:1 in the store"),
            "{err}"
        );
        assert!(store.blob_path(&a).unwrap().exists());
    }

    #[test]
    fn container_uses_read_state_files_without_locks() {
        let tmp = tempfile::tempdir().unwrap();
        let c = tmp.path().join("c1");
        fs::create_dir(&c).unwrap();
        fs::write(
            c.join("state.json"),
            br#"{"image":"a:1","image_digest":"sha256:x","layers":["/l/1","/l/2"]}"#,
        )
        .unwrap();
        fs::create_dir(tmp.path().join("c0")).unwrap(); // no state yet
        let uses = container_uses(tmp.path());
        assert_eq!(uses.len(), 2);
        assert_eq!(uses[0].name, "c0");
        assert_eq!(uses[1].image, "a:1");
        assert_eq!(
            uses[1].layers,
            [PathBuf::from("/l/1"), PathBuf::from("/l/2")]
        );
    }
}
