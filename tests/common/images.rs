//! Test images built offline, as OCI image layouts (and docker archives), for every test that
//! needs more than the default image.
//!
//! Include it next to `mod common;` with
//!
//! ```text
//! #[path = "common/images.rs"]
//! mod images;
//! ```
//!
//! (it depends on nothing in `common`). Ready-made images, each written into an OCI layout
//! directory (created when missing; several images can share one layout):
//!
//! * [`everything_image`]: busybox-static plus three layers with every tar entry type (files,
//!   dirs, symlinks, hardlinks, char and block devices, fifos), owners, odd modes (setuid,
//!   setgid, sticky), mtimes, xattrs, long and non-ASCII names, and whiteouts of both kinds
//!   (`.wh.NAME`, `.wh..wh..opq`) across layers, compressed gzip / none / gzip / none;
//!   [`everything_zstd_image`] is the same with a zstd third layer.
//! * [`simple_image`]: busybox-static plus one small layer, all layers with one compression
//!   (umoci 0.4.7 cannot unpack zstd layers: compare those with the same image in gzip).
//! * [`multi_arch`]: an OCI image index with the host platform and one other (linux/arm64/v8
//!   on amd64 hosts, linux/amd64 elsewhere), each with its own config and a layer holding
//!   `/etc/stepctr-arch` (the platform's name).
//! * [`docker_archive`] / [`docker_archive_skopeo`]: `docker save` archives of an image.
//!
//! Building blocks for your own images (hostile layers too: [`Entry::raw`] writes any name):
//! [`Entry`], [`tar`], [`Layer`], [`ImageBuilder`], [`Layout`].
//! Everything is deterministic: the same calls give the same digests.

#![allow(dead_code)]

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The mtime of entries unless set otherwise (2020-09-13T12:26:40Z).
pub const MTIME: u64 = 1_600_000_000;

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `oci:DIR:TAG`, what `stepctr pull` takes.
pub fn oci_ref(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// Compile C `source` statically with the host's C compiler into `dir/name`.
pub fn compile(dir: &Path, name: &str, source: &str) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    let bin = dir.join(name);
    std::fs::write(&src, source).unwrap();
    let out = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("run cc (gcc and libc6-dev are needed: .ci/run installs them)");
    assert!(
        out.status.success(),
        "cc {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// busybox plus `programs` ((name, C source)), each compiled statically to /bin/NAME, as an
/// image in a fresh OCI layout `dir/base` tagged v1; returns the layout. (Pull it with
/// `oci_ref(&layout, "v1")`: it is stored as `localhost/BASE:v1`.)
pub fn image_with_programs(dir: &Path, base: &str, programs: &[(&str, &str)]) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("tools dir");
    let entries: Vec<Entry> = programs
        .iter()
        .map(|(name, source)| {
            let bin = compile(dir, name, source);
            Entry::file(&format!("bin/{name}"), std::fs::read(&bin).unwrap()).mode(0o755)
        })
        .collect();
    let img = ImageBuilder::busybox(Compression::Gzip).layer(
        Layer::from_entries(&entries, Compression::Gzip),
        "test programs",
    );
    let layout = dir.join(base);
    Layout::create(&layout).add_image(&img, "v1");
    layout
}

/// An OCI platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.into(),
            architecture: architecture.into(),
            variant: variant.map(Into::into),
        }
    }

    /// `linux/arm64/v8`
    pub fn name(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }

    fn json(&self) -> Value {
        let mut p = json!({"os": self.os, "architecture": self.architecture});
        if let Some(v) = &self.variant {
            p["variant"] = json!(v);
        }
        p
    }
}

/// The platform this test runs on, in OCI's words (`linux/amd64`, `linux/arm64/v8`, ...).
pub fn host_platform() -> Platform {
    match std::env::consts::ARCH {
        "x86_64" => Platform::new("linux", "amd64", None),
        "aarch64" => Platform::new("linux", "arm64", Some("v8")),
        "x86" => Platform::new("linux", "386", None),
        "arm" => Platform::new("linux", "arm", Some("v7")),
        "riscv64" => Platform::new("linux", "riscv64", None),
        "powerpc64" => Platform::new("linux", "ppc64le", None),
        "s390x" => Platform::new("linux", "s390x", None),
        other => Platform::new("linux", other, None),
    }
}

/// A platform that is not the host's (for multi-arch indexes).
pub fn other_platform() -> Platform {
    if host_platform().architecture == "arm64" {
        Platform::new("linux", "amd64", None)
    } else {
        Platform::new("linux", "arm64", Some("v8"))
    }
}

// ---------------------------------------------------------------------------------------------
// Tar entries and layers

/// One tar entry. Build with a constructor, adjust with the setters:
/// `Entry::file("etc/motd", b"hi").mode(0o600).owner(1000, 1000).xattr("user.a", b"1")`.
/// Paths are written exactly as given (no leading `/` is added or removed, `..` is kept), so
/// hostile layers can be made too; directories get a trailing `/` from [`Entry::dir`].
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: Vec<u8>,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    /// Symlink target or hardlink target (a path inside the layer, as tar writes it).
    pub link: Option<Vec<u8>>,
    pub data: Vec<u8>,
    /// Device major and minor numbers (char and block devices).
    pub device: (u32, u32),
    /// Extended attributes, written as PAX `SCHILY.xattr.NAME` records.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Entry {
    /// Any entry type with a raw path (bytes, unchecked).
    pub fn raw(path: impl AsRef<[u8]>, kind: tar::EntryType) -> Entry {
        Entry {
            path: path.as_ref().to_vec(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: MTIME,
            link: None,
            data: Vec::new(),
            device: (0, 0),
            xattrs: Vec::new(),
        }
    }

    pub fn file(path: &str, data: impl AsRef<[u8]>) -> Entry {
        let mut e = Entry::raw(path, tar::EntryType::Regular);
        e.data = data.as_ref().to_vec();
        e
    }

    /// A directory (mode 0755); `path/` is written with its trailing slash.
    pub fn dir(path: &str) -> Entry {
        let p = if path.ends_with('/') {
            path.to_string()
        } else {
            format!("{path}/")
        };
        Entry::raw(p, tar::EntryType::Directory).mode(0o755)
    }

    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry::raw(path, tar::EntryType::Symlink)
            .mode(0o777)
            .link(target)
    }

    /// A hardlink to `target`, an earlier entry of the same layer (a path like `data/a`).
    pub fn hardlink(path: &str, target: &str) -> Entry {
        Entry::raw(path, tar::EntryType::Link).link(target)
    }

    pub fn char_dev(path: &str, major: u32, minor: u32) -> Entry {
        let mut e = Entry::raw(path, tar::EntryType::Char).mode(0o666);
        e.device = (major, minor);
        e
    }

    pub fn block_dev(path: &str, major: u32, minor: u32) -> Entry {
        let mut e = Entry::raw(path, tar::EntryType::Block).mode(0o660);
        e.device = (major, minor);
        e
    }

    pub fn fifo(path: &str) -> Entry {
        Entry::raw(path, tar::EntryType::Fifo).mode(0o644)
    }

    /// The OCI whiteout for `path` (`dir/.wh.name`): deletes `dir/name` of the layers below.
    pub fn whiteout(path: &str) -> Entry {
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n),
            None => (String::new(), path),
        };
        Entry::file(&format!("{dir}.wh.{name}"), b"").mode(0o600)
    }

    /// The OCI opaque whiteout for directory `dir` (`dir/.wh..wh..opq`): hides everything the
    /// layers below have in `dir`.
    pub fn opaque(dir: &str) -> Entry {
        Entry::file(&format!("{}/.wh..wh..opq", dir.trim_end_matches('/')), b"").mode(0o600)
    }

    /// Permission bits, including setuid (0o4000), setgid (0o2000) and sticky (0o1000).
    pub fn mode(mut self, mode: u32) -> Entry {
        self.mode = mode;
        self
    }

    pub fn owner(mut self, uid: u64, gid: u64) -> Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn mtime(mut self, mtime: u64) -> Entry {
        self.mtime = mtime;
        self
    }

    pub fn link(mut self, target: impl AsRef<[u8]>) -> Entry {
        self.link = Some(target.as_ref().to_vec());
        self
    }

    pub fn xattr(mut self, name: &str, value: impl AsRef<[u8]>) -> Entry {
        self.xattrs
            .push((name.to_string(), value.as_ref().to_vec()));
        self
    }

    pub fn data(mut self, data: impl AsRef<[u8]>) -> Entry {
        self.data = data.as_ref().to_vec();
        self
    }
}

/// An uncompressed tar of `entries`, in order. Long names, long link targets, big ids and
/// xattrs go into PAX extended headers, as Go's archive/tar and GNU tar write them.
pub fn tar(entries: &[Entry]) -> Vec<u8> {
    tar_with_pax(entries, &[])
}

/// Like [`tar`], and `extra[i]` = `(i, key, value)` adds a PAX record to entry `i` (e.g. a
/// nanosecond `mtime`, or a hostile `path`).
pub fn tar_with_pax(entries: &[Entry], extra: &[(usize, &str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (i, e) in entries.iter().enumerate() {
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        if e.path.len() > 100 {
            pax.push(("path".into(), e.path.clone()));
        }
        if let Some(l) = &e.link {
            if l.len() > 100 {
                pax.push(("linkpath".into(), l.clone()));
            }
        }
        if e.uid > 0o7777777 {
            pax.push(("uid".into(), e.uid.to_string().into_bytes()));
        }
        if e.gid > 0o7777777 {
            pax.push(("gid".into(), e.gid.to_string().into_bytes()));
        }
        for (k, v) in &e.xattrs {
            pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
        }
        for (j, k, v) in extra {
            if *j == i {
                pax.push((k.to_string(), v.to_vec()));
            }
        }
        if !pax.is_empty() {
            b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .expect("append pax header");
        }
        let mut h = tar::Header::new_ustar();
        {
            let old = h.as_old_mut();
            let n = e.path.len().min(100);
            old.name[..n].copy_from_slice(&e.path[..n]);
            if let Some(l) = &e.link {
                let n = l.len().min(100);
                old.linkname[..n].copy_from_slice(&l[..n]);
            }
        }
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(e.uid.min(0o7777777));
        h.set_gid(e.gid.min(0o7777777));
        h.set_mtime(e.mtime);
        if matches!(e.kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(e.device.0).expect("device major");
            h.set_device_minor(e.device.1).expect("device minor");
        }
        h.set_size(e.data.len() as u64);
        h.set_cksum();
        b.append(&h, e.data.as_slice()).expect("append tar entry");
    }
    b.into_inner().expect("finish tar")
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    pub fn compress(self, tar: &[u8]) -> Vec<u8> {
        match self {
            Compression::None => tar.to_vec(),
            Compression::Gzip => {
                let mut enc = flate2::GzBuilder::new()
                    .mtime(0)
                    .write(Vec::new(), flate2::Compression::new(6));
                enc.write_all(tar).expect("gzip");
                enc.finish().expect("gzip")
            }
            Compression::Zstd => zstd::encode_all(tar, 3).expect("zstd"),
        }
    }
}

/// A layer: its uncompressed tar (digest = diff_id) and its blob (digest = what manifests name).
#[derive(Debug, Clone)]
pub struct Layer {
    pub tar: Vec<u8>,
    pub diff_id: String,
    pub blob: Vec<u8>,
    pub digest: String,
    pub compression: Compression,
}

impl Layer {
    pub fn new(tar: Vec<u8>, compression: Compression) -> Layer {
        let blob = compression.compress(&tar);
        Layer {
            diff_id: sha256(&tar),
            digest: sha256(&blob),
            blob,
            tar,
            compression,
        }
    }

    pub fn from_entries(entries: &[Entry], compression: Compression) -> Layer {
        Layer::new(tar(entries), compression)
    }

    pub fn media_type(&self) -> &'static str {
        self.compression.media_type()
    }
}

/// The uncompressed tar of the default image's only layer (busybox-static or host binaries,
/// as `stepctr pull` builds it), built once per test binary.
pub fn busybox_tar() -> &'static [u8] {
    static TAR: OnceLock<Vec<u8>> = OnceLock::new();
    TAR.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("temp dir");
        let layout = tmp.path().join("layout");
        let built = rootfs_fetch::build_default_image(&layout, "latest")
            .expect("build the default image with rootfs-fetch");
        let hex = built.layer_digest.trim_start_matches("sha256:");
        let gz = std::fs::read(layout.join("blobs/sha256").join(hex)).expect("read layer");
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut tar)
            .expect("gunzip the default layer");
        assert_eq!(sha256(&tar), built.diff_id, "default layer's diff_id");
        tar
    })
}

/// The busybox base layer with the given compression.
pub fn busybox_layer(compression: Compression) -> Layer {
    Layer::new(busybox_tar().to_vec(), compression)
}

// ---------------------------------------------------------------------------------------------
// Images and layouts

/// An image: layers (bottom first) plus the config fields tests care about.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    pub layers: Vec<(Layer, String)>,
    pub platform: Platform,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub created: String,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        ImageBuilder::new()
    }
}

/// An image as blobs: what [`ImageBuilder::build`] returns.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub config: Vec<u8>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub layers: Vec<Layer>,
    pub platform: Platform,
}

impl ImageBuilder {
    /// No layers, host platform, `PATH` set, `Cmd ["sh"]`.
    pub fn new() -> ImageBuilder {
        ImageBuilder {
            layers: Vec::new(),
            platform: host_platform(),
            entrypoint: None,
            cmd: Some(vec!["sh".into()]),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            workdir: None,
            user: None,
            labels: BTreeMap::new(),
            created: "2024-01-02T03:04:05Z".into(),
        }
    }

    /// Busybox base layer first (with this compression), then whatever you add.
    pub fn busybox(compression: Compression) -> ImageBuilder {
        ImageBuilder::new().layer(busybox_layer(compression), "busybox-static base")
    }

    /// Add a layer on top; `created_by` goes into the config's history.
    pub fn layer(mut self, layer: Layer, created_by: &str) -> ImageBuilder {
        self.layers.push((layer, created_by.to_string()));
        self
    }

    pub fn platform(mut self, p: Platform) -> ImageBuilder {
        self.platform = p;
        self
    }

    pub fn entrypoint(mut self, e: &[&str]) -> ImageBuilder {
        self.entrypoint = Some(e.iter().map(|s| s.to_string()).collect());
        self
    }

    pub fn cmd(mut self, c: &[&str]) -> ImageBuilder {
        self.cmd = Some(c.iter().map(|s| s.to_string()).collect());
        self
    }

    pub fn env(mut self, kv: &str) -> ImageBuilder {
        self.env.push(kv.to_string());
        self
    }

    pub fn workdir(mut self, w: &str) -> ImageBuilder {
        self.workdir = Some(w.to_string());
        self
    }

    pub fn label(mut self, k: &str, v: &str) -> ImageBuilder {
        self.labels.insert(k.into(), v.into());
        self
    }

    /// The config JSON (keys sorted, so it is reproducible).
    pub fn config_json(&self) -> Value {
        let mut c = json!({"Env": self.env});
        if let Some(e) = &self.entrypoint {
            c["Entrypoint"] = json!(e);
        }
        if let Some(cmd) = &self.cmd {
            c["Cmd"] = json!(cmd);
        }
        if let Some(w) = &self.workdir {
            c["WorkingDir"] = json!(w);
        }
        if let Some(u) = &self.user {
            c["User"] = json!(u);
        }
        if !self.labels.is_empty() {
            c["Labels"] = json!(self.labels);
        }
        let history: Vec<Value> = self
            .layers
            .iter()
            .map(|(_, by)| json!({"created": self.created, "created_by": by}))
            .collect();
        let mut v = json!({
            "created": self.created,
            "architecture": self.platform.architecture,
            "os": self.platform.os,
            "config": c,
            "rootfs": {
                "type": "layers",
                "diff_ids": self.layers.iter().map(|(l, _)| l.diff_id.clone()).collect::<Vec<_>>(),
            },
            "history": history,
        });
        if let Some(var) = &self.platform.variant {
            v["variant"] = json!(var);
        }
        v
    }

    /// Config, manifest and layer blobs.
    pub fn build(&self) -> BuiltImage {
        let config = serde_json::to_vec(&self.config_json()).expect("config json");
        let config_digest = sha256(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": self.layers.iter().map(|(l, _)| json!({
                "mediaType": l.media_type(), "digest": l.digest, "size": l.blob.len()
            })).collect::<Vec<_>>(),
        }))
        .expect("manifest json");
        BuiltImage {
            manifest_digest: sha256(&manifest),
            manifest,
            config_digest,
            config,
            layers: self.layers.iter().map(|(l, _)| l.clone()).collect(),
            platform: self.platform.clone(),
        }
    }
}

/// An OCI image layout directory being written.
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    /// Open the layout at `dir`, creating an empty one when there is none.
    pub fn create(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("create layout");
        let l = Layout {
            dir: dir.to_path_buf(),
        };
        if !dir.join("oci-layout").exists() {
            std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
                .expect("write oci-layout");
        }
        if !dir.join("index.json").exists() {
            l.write_index(&json!({"schemaVersion": 2, "manifests": []}));
        }
        l
    }

    fn write_index(&self, v: &Value) {
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec_pretty(v).expect("index json"),
        )
        .expect("write index.json");
    }

    /// Write a blob (if missing); returns its digest.
    pub fn blob(&self, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let path = self.blob_path(&digest);
        if !path.exists() {
            std::fs::write(&path, bytes).expect("write blob");
        }
        digest
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    /// Write an image's blobs; returns the descriptor of its manifest (with platform).
    pub fn put_image(&self, img: &BuiltImage) -> Value {
        for l in &img.layers {
            self.blob(&l.blob);
        }
        self.blob(&img.config);
        self.blob(&img.manifest);
        json!({
            "mediaType": MEDIA_MANIFEST,
            "digest": img.manifest_digest,
            "size": img.manifest.len(),
            "platform": img.platform.json(),
        })
    }

    /// Point `tag` (the `org.opencontainers.image.ref.name` annotation) at `descriptor` in
    /// index.json, replacing an older entry of that tag.
    pub fn tag(&self, mut descriptor: Value, tag: &str) {
        descriptor["annotations"] = json!({ REF_NAME: tag });
        let mut index: Value =
            serde_json::from_slice(&std::fs::read(self.dir.join("index.json")).expect("index"))
                .expect("index.json");
        let manifests = index["manifests"].as_array_mut().expect("manifests");
        manifests.retain(|m| m["annotations"][REF_NAME] != json!(tag));
        manifests.push(descriptor);
        self.write_index(&index);
    }

    /// Add an image under `tag`; returns the built image (digests and all).
    pub fn add_image(&self, image: &ImageBuilder, tag: &str) -> BuiltImage {
        let built = image.build();
        let desc = self.put_image(&built);
        self.tag(desc, tag);
        built
    }

    /// Add an image index of `images` (one per platform) under `tag`; returns the index's
    /// digest and the built images.
    pub fn add_index(&self, images: &[ImageBuilder], tag: &str) -> (String, Vec<BuiltImage>) {
        let built: Vec<BuiltImage> = images.iter().map(ImageBuilder::build).collect();
        let manifests: Vec<Value> = built.iter().map(|b| self.put_image(b)).collect();
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": manifests,
        }))
        .expect("index json");
        let digest = self.blob(&index);
        self.tag(
            json!({"mediaType": MEDIA_INDEX, "digest": digest, "size": index.len()}),
            tag,
        );
        (digest, built)
    }
}

// ---------------------------------------------------------------------------------------------
// Ready-made images

/// 1 MiB of deterministic pseudo-random bytes (so compression does not make it tiny).
pub fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Layer 2 of [`everything_image`]: every entry type, owners, modes, mtimes, xattrs, odd names,
/// and the files that layers 3 and 4 white out.
pub fn everything_entries() -> Vec<Entry> {
    let long = format!("data/{}/{}.txt", "d".repeat(60), "long-name-".repeat(8));
    vec![
        Entry::dir("data"),
        Entry::file("data/file.txt", b"hello\n").mtime(1_500_000_000),
        Entry::file("data/exec.sh", b"#!/bin/sh\necho exec\n").mode(0o755),
        Entry::file("data/empty", b""),
        Entry::file("data/setuid", b"suid\n").mode(0o4755),
        Entry::file("data/setgid", b"sgid\n")
            .mode(0o2711)
            .owner(0, 50),
        Entry::file("data/owned", b"mine\n")
            .mode(0o600)
            .owner(1000, 1000),
        Entry::file("data/nobody", b"nobody\n").owner(65534, 65534),
        Entry::file("data/big.bin", noise(1 << 20)),
        Entry::file("data/spaced name ü.txt", b"unicode\n"),
        Entry::dir(&long[..long.rfind('/').unwrap_or(0)]),
        Entry::file(&long, b"a name longer than 100 bytes\n"),
        Entry::file("data/xattr.txt", b"xattrs\n")
            .xattr("user.stepctr.note", b"hello")
            .xattr("user.stepctr.bin", [0u8, 1, 2, 255]),
        Entry::dir("data/xattr-dir").xattr("user.stepctr.dir", b"yes"),
        Entry::dir("data/private").mode(0o700).owner(1000, 1000),
        Entry::file("data/private/secret", b"s3cret\n")
            .mode(0o400)
            .owner(1000, 1000),
        Entry::dir("data/sticky").mode(0o1777),
        Entry::dir("data/shared").mode(0o2775).owner(0, 50),
        Entry::symlink("data/link-rel", "file.txt"),
        Entry::symlink("data/link-abs", "/data/file.txt"),
        Entry::symlink("data/link-dangling", "/nonexistent/target"),
        Entry::symlink("data/link-dir", "private"),
        Entry::symlink("data/link-up", "../etc/passwd").owner(1000, 1000),
        Entry::hardlink("data/hard", "data/file.txt"),
        Entry::hardlink("data/hard-exec", "data/exec.sh"),
        Entry::char_dev("data/chr", 1, 3),
        Entry::block_dev("data/blk", 7, 0),
        Entry::fifo("data/fifo").mode(0o640),
        // What the upper layers white out.
        Entry::dir("wh"),
        Entry::file("wh/gone.txt", b"whited out by layer 3\n"),
        Entry::file("wh/stays.txt", b"still here\n"),
        Entry::dir("wh/gone-dir"),
        Entry::file("wh/gone-dir/inner.txt", b"whole dir whited out\n"),
        Entry::symlink("wh/gone-link", "stays.txt"),
        Entry::dir("opq"),
        Entry::file("opq/old.txt", b"hidden by the opaque dir\n"),
        Entry::dir("opq/sub"),
        Entry::file("opq/sub/old2.txt", b"hidden too\n"),
        Entry::dir("replace"),
        Entry::file("replace/file-to-dir", b"becomes a directory\n"),
        Entry::dir("replace/dir-to-file"),
        Entry::file("replace/dir-to-file/x", b"x\n"),
        Entry::file("replace/file-to-link", b"becomes a symlink\n"),
        Entry::dir("opq2"),
        Entry::file("opq2/before.txt", b"hidden by layer 4\n"),
    ]
}

/// Layer 3 of [`everything_image`]: whiteouts of both kinds and replacements.
pub fn whiteout_entries() -> Vec<Entry> {
    vec![
        Entry::dir("wh"),
        Entry::whiteout("wh/gone.txt"),
        Entry::whiteout("wh/gone-dir"),
        Entry::whiteout("wh/gone-link"),
        Entry::dir("opq"),
        Entry::opaque("opq"),
        Entry::file("opq/new.txt", b"the only file left in opq\n"),
        Entry::dir("replace"),
        Entry::dir("replace/file-to-dir"),
        Entry::file("replace/file-to-dir/now.txt", b"now a directory\n"),
        Entry::file("replace/dir-to-file", b"now a file\n"),
        Entry::symlink("replace/file-to-link", "../wh/stays.txt"),
        Entry::dir("data"),
        Entry::file("data/exec.sh", b"#!/bin/sh\necho changed by layer 3\n").mode(0o750),
        Entry::dir("data/private").mode(0o750).owner(1000, 1000),
        Entry::file("added-by-layer-3", b"3\n"),
    ]
}

/// Layer 4 of [`everything_image`]: an opaque directory over layer 2's content, and a
/// whiteout of something layer 3 added.
pub fn layer4_entries() -> Vec<Entry> {
    vec![
        Entry::dir("opq2"),
        Entry::opaque("opq2"),
        Entry::file("opq2/after.txt", b"layer 4\n"),
        Entry::dir("opq"),
        Entry::whiteout("opq/new.txt"),
        Entry::whiteout("added-by-layer-3"),
        Entry::dir("data"),
        Entry::whiteout("data/link-dangling"),
    ]
}

/// The image [`everything_image`] writes: busybox (gzip), [`everything_entries`] (no
/// compression), [`whiteout_entries`] (`layer3`: gzip in [`everything_image`], zstd in
/// [`everything_zstd_image`]), [`layer4_entries`] (uncompressed); workdir `/data`,
/// `Cmd ["sh"]`, env `STEPCTR_TEST=everything`.
pub fn everything_builder(layer3: Compression) -> ImageBuilder {
    ImageBuilder::busybox(Compression::Gzip)
        .layer(
            Layer::from_entries(&everything_entries(), Compression::None),
            "every entry type (uncompressed)",
        )
        .layer(
            Layer::from_entries(&whiteout_entries(), layer3),
            "whiteouts and opaque directories",
        )
        .layer(
            Layer::from_entries(&layer4_entries(), Compression::None),
            "more whiteouts (uncompressed)",
        )
        .workdir("/data")
        .env("STEPCTR_TEST=everything")
        .label(
            "org.opencontainers.image.title",
            "stepctr everything test image",
        )
}

/// Write the everything image (gzip and uncompressed layers: Debian's umoci 0.4.7 reads it)
/// into the OCI layout `dir` (created when missing) under the tag `everything`; returns the
/// tag. Pull it with `oci:DIR:everything` ([`oci_ref`]).
pub fn everything_image(dir: &Path) -> String {
    let tag = "everything";
    Layout::create(dir).add_image(&everything_builder(Compression::Gzip), tag);
    tag.to_string()
}

/// The same image with its third layer zstd-compressed, under the tag `everything-zstd`;
/// returns the tag. Its layers have the same diff_ids as [`everything_image`]'s, so it
/// unpacks to the same tree: compare with `umoci unpack` of `everything` (umoci 0.4.7 does not
/// read zstd layers: "blob is not correct mediatype").
pub fn everything_zstd_image(dir: &Path) -> String {
    let tag = "everything-zstd";
    Layout::create(dir).add_image(&everything_builder(Compression::Zstd), tag);
    tag.to_string()
}

/// A runnable image: busybox plus a layer with `/etc/stepctr-image` holding `tag`, every layer
/// compressed with `compression`. Written into the layout `dir` under `tag`; returns the tag.
pub fn simple_image(dir: &Path, tag: &str, compression: Compression) -> String {
    let img = ImageBuilder::busybox(compression).layer(
        Layer::from_entries(
            &[
                Entry::dir("etc"),
                Entry::file("etc/stepctr-image", format!("{tag}\n")),
            ],
            compression,
        ),
        "mark the image",
    );
    Layout::create(dir).add_image(&img, tag);
    tag.to_string()
}

/// The image of one platform in [`multi_arch`]: busybox plus `/etc/stepctr-arch` holding the
/// platform's name (e.g. `linux/arm64/v8`).
pub fn platform_builder(p: &Platform) -> ImageBuilder {
    ImageBuilder::busybox(Compression::Gzip)
        .layer(
            Layer::from_entries(
                &[
                    Entry::dir("etc"),
                    Entry::file("etc/stepctr-arch", format!("{}\n", p.name())),
                ],
                Compression::Gzip,
            ),
            "mark the platform",
        )
        .platform(p.clone())
        .env(&format!("STEPCTR_PLATFORM={}", p.name()))
}

/// Write an OCI image index with two platforms ([`host_platform`] first, then
/// [`other_platform`]) into the layout `dir` under the tag `multi`; returns the tag. The
/// top-level index.json entry points to the index blob (as `skopeo copy --all` writes it).
pub fn multi_arch(dir: &Path) -> String {
    let tag = "multi";
    Layout::create(dir).add_index(
        &[
            platform_builder(&host_platform()),
            platform_builder(&other_platform()),
        ],
        tag,
    );
    tag.to_string()
}

// ---------------------------------------------------------------------------------------------
// docker archives

/// Which `docker save` layout to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveStyle {
    /// Docker before 25: `<id>/layer.tar` (uncompressed), `<config hex>.json`, `repositories`.
    Legacy,
    /// Docker 25 and later: an OCI layout (`blobs/sha256/...`, `index.json`) plus
    /// `manifest.json`; layer blobs kept as they are (so compressed layers stay compressed).
    Oci,
}

/// Write what `docker save` writes for `image` into the file `out`, tagged with `repo_tags`
/// (like `["busybox:latest"]`). Legacy archives store layers uncompressed, as docker does.
pub fn docker_archive(image: &ImageBuilder, repo_tags: &[&str], style: ArchiveStyle, out: &Path) {
    let built = image.build();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).expect("archive path");
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).expect("append");
    };
    let config_hex = built
        .config_digest
        .trim_start_matches("sha256:")
        .to_string();
    let mut layer_paths = Vec::new();
    match style {
        ArchiveStyle::Legacy => {
            let mut parent = String::new();
            for l in &built.layers {
                // A v1 layer id, derived from the chain, as docker does (any hex would do).
                let id = hex::encode(Sha256::digest(format!("{parent} {}", l.diff_id)));
                add(&format!("{id}/VERSION"), b"1.0");
                add(
                    &format!("{id}/json"),
                    format!("{{\"id\":\"{id}\"}}").as_bytes(),
                );
                add(&format!("{id}/layer.tar"), &l.tar);
                layer_paths.push(format!("{id}/layer.tar"));
                parent = id;
            }
            add(&format!("{config_hex}.json"), &built.config);
            let manifest = json!([{
                "Config": format!("{config_hex}.json"),
                "RepoTags": repo_tags,
                "Layers": layer_paths,
            }]);
            add(
                "manifest.json",
                &serde_json::to_vec(&manifest).expect("json"),
            );
        }
        ArchiveStyle::Oci => {
            for l in &built.layers {
                let hex = l.digest.trim_start_matches("sha256:");
                add(&format!("blobs/sha256/{hex}"), &l.blob);
                layer_paths.push(format!("blobs/sha256/{hex}"));
            }
            add(&format!("blobs/sha256/{config_hex}"), &built.config);
            let mhex = built.manifest_digest.trim_start_matches("sha256:");
            add(&format!("blobs/sha256/{mhex}"), &built.manifest);
            add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
            let index = json!({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [{
                "mediaType": MEDIA_MANIFEST, "digest": built.manifest_digest,
                "size": built.manifest.len(),
            }]});
            add("index.json", &serde_json::to_vec(&index).expect("json"));
            let manifest = json!([{
                "Config": format!("blobs/sha256/{config_hex}"),
                "RepoTags": repo_tags,
                "Layers": layer_paths,
            }]);
            add(
                "manifest.json",
                &serde_json::to_vec(&manifest).expect("json"),
            );
        }
    }
    std::fs::write(out, b.into_inner().expect("finish archive")).expect("write archive");
}

/// `skopeo copy oci:LAYOUT:TAG docker-archive:OUT:NAME`: a docker archive written by a real
/// tool (legacy layout, layers uncompressed). `name` is like `example.com/test:v1`.
pub fn docker_archive_skopeo(layout: &Path, tag: &str, out: &Path, name: &str) {
    let _ = std::fs::remove_file(out);
    let o = Command::new("skopeo")
        .arg("copy")
        .arg("--quiet")
        .arg(oci_ref(layout, tag))
        .arg(format!("docker-archive:{}:{name}", out.display()))
        .output()
        .expect("run skopeo (install Debian's skopeo)");
    assert!(
        o.status.success(),
        "skopeo copy to docker-archive failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}
