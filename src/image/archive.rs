//! `docker-archive:FILE[:REF]`: importing what `docker save` writes.
//!
//! A docker archive is a tar (maybe gzip- or zstd-compressed as a whole) holding:
//! * `manifest.json`: a list of images, each `{"Config": PATH, "RepoTags": [...], "Layers": [PATH...]}`;
//! * the image config (docker's and OCI's config formats are the same JSON), named
//!   `<sha256 hex>.json` (docker before 25, skopeo) or `blobs/sha256/<hex>` (docker 25+);
//! * one tar per layer: `<id>/layer.tar` (old docker, uncompressed; identical layers are
//!   symlinks to one another) or `blobs/sha256/<hex>` (docker 25+: kept as stored, so possibly
//!   gzip or zstd).
//!
//! There is no manifest in the OCI sense: the import writes one (config + layers, each layer's
//! media type from its compression), so the store stays a plain OCI layout. Every layer is
//! checked against the config's `rootfs.diff_ids` (the sha256 of its uncompressed tar), and
//! blobs named after their digest against that digest, before anything enters the store.
//!
//! The archive is read once, front to back (so it may come compressed): each file goes into a
//! temporary file in the store as it streams by, with its sha256 computed on the way;
//! `manifest.json` is usually near the end, so what to keep is only known afterwards.

use super::store::{Store, REF_ANNOTATION};
use super::ImageInfo;
use crate::kernel::Kernel;
use anyhow::{anyhow, bail, Context, Result};
use oci_spec::image::{
    Arch, DescriptorBuilder, Digest, ImageManifestBuilder, MediaType, Os, PlatformBuilder,
};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

/// Files up to this size are kept in memory while the archive streams by (manifest.json,
/// configs, small layers); bigger ones go to a temporary file in the store.
const IN_MEMORY: u64 = 64 << 10;

/// Symlinks followed inside the archive before giving up.
const MAX_LINKS: usize = 32;

/// One image in `manifest.json`.
#[derive(Debug, Deserialize)]
struct ArchiveImage {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

impl ArchiveImage {
    fn tags(&self) -> &[String] {
        self.repo_tags.as_deref().unwrap_or_default()
    }
}

enum Data {
    Memory(Vec<u8>),
    Temp(PathBuf),
}

/// A regular file of the archive, as it streamed by.
struct Member {
    data: Data,
    digest: String,
    size: u64,
    /// The first bytes, to recognise gzip and zstd.
    head: Vec<u8>,
}

impl Member {
    fn open(&self) -> Result<Box<dyn Read + '_>> {
        Ok(match &self.data {
            Data::Memory(b) => Box::new(b.as_slice()),
            Data::Temp(p) => Box::new(BufReader::new(
                fs::File::open(p).with_context(|| format!("reopen {}", p.display()))?,
            )),
        })
    }

    /// The whole content of a JSON file (manifest.json, a config): never a huge one.
    fn bytes(&self) -> Result<Vec<u8>> {
        if self.size > super::store::MAX_JSON_BLOB {
            bail!(
                "malformed docker archive: a {} byte JSON file (manifest.json or a config) is too big",
                self.size
            );
        }
        let mut v = Vec::new();
        self.open()?.read_to_end(&mut v)?;
        Ok(v)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

fn decompressed<'a>(c: Compression, r: Box<dyn Read + 'a>) -> Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::None => r,
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
    })
}

/// Temporary files of one import: removed on drop unless adopted into the store.
struct Temps<'s> {
    store: &'s Store,
    files: Vec<PathBuf>,
}

impl Temps<'_> {
    fn create(&mut self) -> Result<(PathBuf, fs::File)> {
        let path = self
            .store
            .temp_path(&format!("archive{}", self.files.len()));
        let f = fs::File::create(&path).with_context(|| format!("create {}", path.display()))?;
        self.files.push(path.clone());
        Ok((path, f))
    }
}

impl Drop for Temps<'_> {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = fs::remove_file(f);
        }
    }
}

/// `a/./b/../c` → `a/c`; `None` if it climbs out of the archive.
fn clean(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Everything read from the archive.
struct Contents {
    members: HashMap<PathBuf, Member>,
    /// Symlinks and hardlinks: name → target (already relative to the archive root).
    links: HashMap<PathBuf, PathBuf>,
}

impl Contents {
    fn get(&self, name: &str) -> Option<&Member> {
        let mut p = clean(Path::new(name))?;
        for _ in 0..MAX_LINKS {
            if let Some(m) = self.members.get(&p) {
                return Some(m);
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }
}

/// Read the whole archive once.
fn read_archive(file: &Path, temps: &mut Temps) -> Result<Contents> {
    let f =
        fs::File::open(file).with_context(|| format!("open docker archive {}", file.display()))?;
    let mut input = BufReader::with_capacity(1 << 16, f);
    let head = input
        .fill_buf()
        .with_context(|| format!("read {}", file.display()))?
        .to_vec();
    let outer = decompressed(sniff(&head), Box::new(input))?;
    let mut archive = tar::Archive::new(outer);
    let mut contents = Contents {
        members: HashMap::new(),
        links: HashMap::new(),
    };
    let not_tar = |e: io::Error| {
        anyhow!(
            "{} is not a whole tar archive (docker-archive: takes what `docker save -o FILE IMAGE` writes; is it truncated?): {e}",
            file.display()
        )
    };
    for entry in archive.entries().map_err(not_tar)? {
        let mut entry = entry.map_err(not_tar)?;
        let raw = entry.path().map_err(not_tar)?.into_owned();
        let Some(name) = clean(&raw) else {
            bail!(
                "{}: malformed docker archive: entry {} points outside the archive",
                file.display(),
                raw.display()
            );
        };
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(not_tar)?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                // Symlink targets are relative to the link's directory, hardlink targets to
                // the archive's root.
                let joined = if entry.header().entry_type() == tar::EntryType::Symlink {
                    name.parent().unwrap_or(Path::new("")).join(&target)
                } else {
                    target.clone()
                };
                let Some(resolved) = clean(&joined) else {
                    bail!(
                        "{}: malformed docker archive: link {} -> {} points outside the archive",
                        file.display(),
                        name.display(),
                        target.display()
                    );
                };
                contents.links.insert(name, resolved);
                continue;
            }
            _ => continue,
        }
        let size = entry.size();
        let mut hasher = Sha256::new();
        let mut head = Vec::new();
        let data = if size <= IN_MEMORY {
            let mut buf = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut buf).map_err(&not_tar)?;
            hasher.update(&buf);
            head.extend_from_slice(&buf[..buf.len().min(8)]);
            Data::Memory(buf)
        } else {
            let (path, out) = temps.create()?;
            let mut out = io::BufWriter::with_capacity(1 << 16, out);
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = entry.read(&mut buf).map_err(&not_tar)?;
                if n == 0 {
                    break;
                }
                if head.len() < 8 {
                    let take = (8 - head.len()).min(n);
                    head.extend_from_slice(&buf[..take]);
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n])
                    .with_context(|| format!("write {}", path.display()))?;
            }
            out.flush()
                .with_context(|| format!("write {}", path.display()))?;
            Data::Temp(path)
        };
        contents.members.insert(
            name,
            Member {
                data,
                digest: format!("sha256:{}", hex::encode(hasher.finalize())),
                size,
                head,
            },
        );
    }
    Ok(contents)
}

/// If `name` says which digest the file has (`blobs/sha256/<hex>` or `<hex>.json`), check it.
fn check_named_digest(file: &Path, name: &str, m: &Member) -> Result<()> {
    let base = Path::new(name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let hex = base.strip_suffix(".json").unwrap_or(&base);
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let named = format!("sha256:{}", hex.to_ascii_lowercase());
        if named != m.digest {
            bail!(
                "{}: corrupt docker archive: {name} hashes to {}, not to the digest its name says",
                file.display(),
                m.digest
            );
        }
    }
    Ok(())
}

/// The sha256 of the uncompressed content (a layer's diff_id).
fn diff_id(m: &Member, c: Compression) -> Result<String> {
    if c == Compression::None {
        return Ok(m.digest.clone());
    }
    let mut r = decompressed(c, m.open()?)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// Pick the image: `@N` (position in manifest.json), a RepoTag, or the only one.
fn choose<'a>(
    file: &Path,
    images: &'a [ArchiveImage],
    want: Option<&str>,
) -> Result<(&'a ArchiveImage, Option<String>)> {
    let all_tags = || {
        let t: Vec<&str> = images
            .iter()
            .flat_map(|i| i.tags().iter().map(String::as_str))
            .collect();
        if t.is_empty() {
            "no tags".to_string()
        } else {
            t.join(", ")
        }
    };
    match want {
        None => match images {
            [one] => Ok((one, one.tags().first().map(|t| super::normalize(t)))),
            [] => bail!(
                "{}: malformed docker archive: manifest.json lists no image",
                file.display()
            ),
            _ => bail!(
                "{} holds {} images ({}): pick one with docker-archive:{}:REF or :@N",
                file.display(),
                images.len(),
                all_tags(),
                file.display()
            ),
        },
        Some(w) if w.starts_with('@') => {
            let n: usize = w[1..]
                .parse()
                .map_err(|_| anyhow!("{w:?} is not an image number: use @0, @1, ..."))?;
            let img = images.get(n).ok_or_else(|| {
                anyhow!(
                    "{} holds {} image(s): @{n} is not one of them (count from @0)",
                    file.display(),
                    images.len()
                )
            })?;
            Ok((img, img.tags().first().map(|t| super::normalize(t))))
        }
        Some(w) => {
            let wanted = super::normalize(w);
            images
                .iter()
                .find(|i| {
                    i.tags()
                        .iter()
                        .any(|t| t == w || super::normalize(t) == wanted)
                })
                .map(|i| (i, Some(wanted.clone())))
                .ok_or_else(|| {
                    anyhow!(
                        "{} holds no image tagged {w} (it holds: {})",
                        file.display(),
                        all_tags()
                    )
                })
        }
    }
}

fn layer_media_type(c: Compression) -> MediaType {
    match c {
        Compression::None => MediaType::ImageLayer,
        Compression::Gzip => MediaType::ImageLayerGzip,
        Compression::Zstd => MediaType::ImageLayerZstd,
    }
}

/// Import the image `want` (a RepoTag, `@N`, or `None` for the only one) from the docker
/// archive `file` into `store`, converting it to an OCI image manifest. It is stored under
/// `want`, else its first RepoTag, else `fallback` (a name made from the file name).
pub fn import(
    k: &dyn Kernel,
    store: &Store,
    file: &Path,
    want: Option<&str>,
    fallback: &str,
) -> Result<ImageInfo> {
    k.note(&format!(
        "reading the docker archive {} (what `docker save` writes: manifest.json, a config, one tar per layer)",
        file.display()
    ));
    let mut temps = Temps {
        store,
        files: Vec::new(),
    };
    let contents = read_archive(file, &mut temps)?;
    let manifest = contents.get("manifest.json").ok_or_else(|| {
        anyhow!(
            "{} is not a docker archive: it has no manifest.json (make one with `docker save -o FILE IMAGE`)",
            file.display()
        )
    })?;
    let list = manifest
        .bytes()
        .with_context(|| file.display().to_string())?;
    let images: Vec<ArchiveImage> = serde_json::from_slice(&list).map_err(|e| {
        anyhow!(
            "{}: malformed docker archive: manifest.json is not a list of {{Config, RepoTags, Layers}}: {e}",
            file.display()
        )
    })?;
    let (image, tag) = choose(file, &images, want)?;
    let stored = tag.unwrap_or_else(|| fallback.to_string());

    let config_member = contents.get(&image.config).ok_or_else(|| {
        anyhow!(
            "{}: malformed docker archive: its config {} is missing",
            file.display(),
            image.config
        )
    })?;
    check_named_digest(file, &image.config, config_member)?;
    let config_bytes = config_member
        .bytes()
        .with_context(|| file.display().to_string())?;
    let config: serde_json::Value = serde_json::from_slice(&config_bytes).map_err(|e| {
        anyhow!(
            "{}: malformed docker archive: config {} is not JSON: {e}",
            file.display(),
            image.config
        )
    })?;
    // What the store will need of it later (os, architecture, rootfs).
    oci_spec::image::ImageConfiguration::from_reader(config_bytes.as_slice()).map_err(|e| {
        anyhow!(
            "{}: malformed docker archive: config {} is not an image config: {e}",
            file.display(),
            image.config
        )
    })?;
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if diff_ids.len() != image.layers.len() {
        bail!(
            "{}: malformed docker archive: manifest.json lists {} layers, the config's rootfs.diff_ids {}",
            file.display(),
            image.layers.len(),
            diff_ids.len()
        );
    }
    k.note(&format!(
        "image config {} ({} bytes): {} layer(s)",
        config_member.digest,
        config_bytes.len(),
        image.layers.len()
    ));

    let mut layers = Vec::new();
    for (i, (path, want_diff)) in image.layers.iter().zip(&diff_ids).enumerate() {
        let m = contents.get(path).ok_or_else(|| {
            anyhow!(
                "{}: malformed docker archive: layer {path} is missing",
                file.display()
            )
        })?;
        check_named_digest(file, path, m)?;
        let c = sniff(&m.head);
        let got = diff_id(m, c).map_err(|e| {
            anyhow!(
                "{}: corrupt docker archive: layer {} ({path}) does not decompress: {e}",
                file.display(),
                i + 1
            )
        })?;
        if &got != want_diff {
            bail!(
                "{}: corrupt docker archive: layer {} ({path}) unpacks to {got}, but the config says {want_diff}",
                file.display(),
                i + 1
            );
        }
        k.note(&format!(
            "layer {}: {path}: {}, {} bytes; {} matches the config's diff_id",
            i + 1,
            match c {
                Compression::None => "uncompressed tar",
                Compression::Gzip => "gzip-compressed tar",
                Compression::Zstd => "zstd-compressed tar",
            },
            m.size,
            if c == Compression::None {
                "its sha256"
            } else {
                "the sha256 of its uncompressed content"
            }
        ));
        layers.push((m, c));
    }

    // The OCI manifest docker never wrote.
    let layer_descs = layers
        .iter()
        .map(|(m, c)| {
            DescriptorBuilder::default()
                .media_type(layer_media_type(*c))
                .digest(Digest::from_str(&m.digest)?)
                .size(m.size)
                .build()
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .context("build the OCI manifest")?;
    let config_desc = DescriptorBuilder::default()
        .media_type(MediaType::ImageConfig)
        .digest(Digest::from_str(&config_member.digest).context("config digest")?)
        .size(config_bytes.len() as u64)
        .build()
        .context("build the OCI manifest")?;
    let oci = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(layer_descs)
        .build()
        .context("build the OCI manifest")?;
    let manifest_bytes = serde_json::to_vec(&oci)?;
    let manifest_digest = format!("sha256:{}", hex::encode(Sha256::digest(&manifest_bytes)));

    let mut digests: Vec<String> = layers.iter().map(|(m, _)| m.digest.clone()).collect();
    digests.push(config_member.digest.clone());
    digests.push(manifest_digest.clone());
    let _pin = store.pin(&digests)?;
    for (m, _) in &layers {
        match &m.data {
            Data::Temp(p) => store.adopt_blob(p, &m.digest)?,
            Data::Memory(b) => {
                store.put_blob(b)?;
            }
        }
    }
    store.put_blob(&config_bytes)?;
    store.put_blob(&manifest_bytes)?;

    let mut platform = PlatformBuilder::default()
        .os(Os::from(config["os"].as_str().unwrap_or("linux")))
        .architecture(Arch::from(
            config["architecture"].as_str().unwrap_or("amd64"),
        ));
    if let Some(v) = config["variant"].as_str() {
        platform = platform.variant(v.to_string());
    }
    let mut ann = BTreeMap::new();
    ann.insert(REF_ANNOTATION.to_string(), stored.clone());
    let desc = DescriptorBuilder::default()
        .media_type(MediaType::ImageManifest)
        .digest(Digest::from_str(&manifest_digest).context("manifest digest")?)
        .size(manifest_bytes.len() as u64)
        .platform(platform.build().context("platform")?)
        .annotations(ann.into_iter().collect::<HashMap<_, _>>())
        .build()
        .context("build the index entry")?;
    store.add_ref(&desc, &stored)?;
    k.note(&format!(
        "wrote the OCI image manifest docker archives lack: {manifest_digest}"
    ));
    store.describe(&stored, &manifest_digest)
}
