//! Builds stepctr's default image offline, as a standard OCI image layout directory that skopeo
//! and umoci can read.
//!
//! Two sources, in order of preference:
//! * **busybox-static**: a statically linked busybox on the host (`/bin/busybox` or
//!   `/usr/bin/busybox`, as Debian's `busybox-static` installs it) at `bin/busybox`, plus one
//!   symlink to `/bin/busybox` per applet, from `busybox --list-full`;
//! * **host binaries**: a handful of the host's own programs ([`DEFAULT_PROGRAMS`]) with their
//!   ELF interpreter and every shared library they need, at the host's paths.
//!
//! Either way the layer also gets the usual top-level directories and a minimal `etc/passwd`,
//! `etc/group` and `etc/os-release`. The output is reproducible: the same input files give the
//! same digests (mtime 0, uid/gid 0, sorted entries, gzip header without name or time, fixed
//! compression level, JSON with sorted keys).

mod host;
mod tree;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use flate2::{Compression, GzBuilder};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, Digest, HistoryBuilder, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, Os, PlatformBuilder, RootFsBuilder,
    ANNOTATION_DESCRIPTION, ANNOTATION_REF_NAME, ANNOTATION_TITLE,
};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use tree::{Entry, Tree};

/// Where a statically linked busybox is looked for, in order.
pub const BUSYBOX_CANDIDATES: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// Programs copied from the host when there is no static busybox. `sh` is required; the others
/// are taken when the host has them.
pub const DEFAULT_PROGRAMS: &[&str] = &[
    "sh", "ls", "cat", "echo", "hostname", "mkdir", "rm", "sleep", "ps", "mount", "true", "false",
    "env", "id", "uname", "grep", "head", "find",
];

/// The image's `PATH`.
pub const IMAGE_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Fixed creation time of the image (the layer's mtime is 0 too), for reproducibility.
pub const CREATED: &str = "1970-01-01T00:00:00Z";

/// Label/annotation keys naming where the image came from.
pub const LABEL_SOURCE: &str = "io.stepctr.image.source";
pub const LABEL_SOURCE_PATH: &str = "io.stepctr.image.source.path";
pub const LABEL_SOURCE_VERSION: &str = "io.stepctr.image.source.version";

/// gzip level of the layer; fixed so the compressed digest is reproducible.
const GZIP_LEVEL: u32 = 6;

/// What the image is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A statically linked busybox, at this host path.
    BusyboxStatic(PathBuf),
    /// These host programs (as found along the image's PATH), with their libraries.
    HostBinaries(Vec<PathBuf>),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::BusyboxStatic(p) => write!(f, "busybox-static ({})", p.display()),
            Source::HostBinaries(progs) => write!(
                f,
                "host binaries ({} program{} and their libraries)",
                progs.len(),
                if progs.len() == 1 { "" } else { "s" }
            ),
        }
    }
}

/// What [`build_default_image`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// "sha256:<hex>" of the manifest blob.
    pub manifest_digest: String,
    /// "sha256:<hex>" of the config blob.
    pub config_digest: String,
    /// "sha256:<hex>" of the gzipped layer blob.
    pub layer_digest: String,
    /// "sha256:<hex>" of the uncompressed layer tar.
    pub diff_id: String,
    /// Size in bytes of the gzipped layer blob.
    pub layer_size: u64,
    pub source: Source,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{step} {}: {err}", path.display())]
    Io {
        step: &'static str,
        path: PathBuf,
        err: io::Error,
    },
    #[error("layout directory {} exists and is not an empty directory", .0.display())]
    LayoutNotEmpty(PathBuf),
    #[error("invalid tag {0:?}: use 1 to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'")]
    InvalidTag(String),
    #[error("no image source: no statically linked busybox at {} and no sh in {}", BUSYBOX_CANDIDATES.join(" or "), host::SEARCH_PATH.join(":"))]
    NoSource,
    #[error("program {name} not found in {}", host::SEARCH_PATH.join(":"))]
    ProgramNotFound { name: String },
    #[error("{} is not a statically linked busybox: {reason}", path.display())]
    NotStaticBusybox { path: PathBuf, reason: String },
    #[error("listing busybox applets with {} --list-full: {msg}", path.display())]
    BusyboxApplets { path: PathBuf, msg: String },
    #[error("parsing elf {}: {msg}", path.display())]
    Elf { path: PathBuf, msg: String },
    #[error("library {name} needed by {} not found in {dirs}", needed_by.display())]
    LibraryNotFound {
        name: String,
        needed_by: PathBuf,
        dirs: String,
    },
    #[error("too many levels of symbolic links resolving {}", .0.display())]
    SymlinkLoop(PathBuf),
    #[error("layer path {}: {msg}", path.display())]
    Conflict { path: PathBuf, msg: String },
    #[error("building oci {what}: {err}")]
    Spec {
        what: &'static str,
        err: oci_spec::OciSpecError,
    },
    #[error("serializing oci {what}: {err}")]
    Json {
        what: &'static str,
        err: serde_json::Error,
    },
}

fn io_err(step: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_path_buf();
    move |err| Error::Io { step, path, err }
}

fn spec_err(what: &'static str) -> impl FnOnce(oci_spec::OciSpecError) -> Error {
    move |err| Error::Spec { what, err }
}

/// The host's OCI architecture name and Debian multiarch triple.
fn host_platform() -> (Arch, Option<&'static str>) {
    let little = cfg!(target_endian = "little");
    match std::env::consts::ARCH {
        "x86_64" => (Arch::Amd64, Some("x86_64-linux-gnu")),
        "aarch64" => (Arch::ARM64, Some("aarch64-linux-gnu")),
        "x86" => (Arch::i386, Some("i386-linux-gnu")),
        "arm" => (Arch::ARM, Some("arm-linux-gnueabihf")),
        "riscv64" => (Arch::RISCV64, Some("riscv64-linux-gnu")),
        "powerpc64" if little => (Arch::PowerPC64le, Some("powerpc64le-linux-gnu")),
        "powerpc64" => (Arch::PowerPC64, Some("powerpc64-linux-gnu")),
        "s390x" => (Arch::s390x, Some("s390x-linux-gnu")),
        "loongarch64" => (Arch::LoongArch64, Some("loongarch64-linux-gnu")),
        "mips64" if little => (Arch::Mips64le, Some("mips64el-linux-gnuabi64")),
        other => (Arch::Other(other.to_string()), None),
    }
}

/// Picks the source: a statically linked busybox if the host has one, else host binaries.
pub fn detect_source() -> Result<Source, Error> {
    for cand in BUSYBOX_CANDIDATES {
        let p = Path::new(cand);
        if p.is_file() && matches!(host::is_static_elf(p), Ok(true)) {
            return Ok(Source::BusyboxStatic(p.to_path_buf()));
        }
    }
    let programs: Vec<PathBuf> = DEFAULT_PROGRAMS
        .iter()
        .filter_map(|name| host::find_program(name))
        .collect();
    if host::find_program("sh").is_none() {
        return Err(Error::NoSource);
    }
    Ok(Source::HostBinaries(programs))
}

/// A host-binaries source for exactly these programs (names looked up along the image's PATH,
/// or absolute paths); `sh` is added when missing, since the image's Cmd is `sh`.
pub fn host_binaries_source(programs: &[&str]) -> Result<Source, Error> {
    let mut names: Vec<&str> = programs.to_vec();
    if !names.contains(&"sh") {
        names.insert(0, "sh");
    }
    let mut paths = Vec::new();
    for name in names {
        let p = host::find_program(name).ok_or_else(|| Error::ProgramNotFound {
            name: name.to_string(),
        })?;
        if !paths.contains(&p) {
            paths.push(p);
        }
    }
    Ok(Source::HostBinaries(paths))
}

/// Writes a complete OCI image layout into `layout_dir` (created if missing; must be empty or
/// absent), from the source [`detect_source`] picks. Blobs are written to temporary names and
/// renamed into place, `index.json` last; on failure everything written is removed again.
pub fn build_default_image(layout_dir: &Path, tag: &str) -> Result<BuiltImage, Error> {
    let source = detect_source()?;
    build_image(layout_dir, tag, source)
}

/// Like [`build_default_image`], from the given source.
pub fn build_image(layout_dir: &Path, tag: &str, source: Source) -> Result<BuiltImage, Error> {
    validate_tag(tag)?;
    let (arch, multiarch) = host_platform();
    // Everything that reads the host happens before the layout directory is touched.
    let (tree, provenance) = build_tree(&source, multiarch)?;

    let digests = write_or_clean(layout_dir, tag, &arch, &tree, &provenance)?;
    Ok(BuiltImage {
        manifest_digest: digests.manifest,
        config_digest: digests.config,
        layer_digest: digests.layer,
        diff_id: digests.diff_id,
        layer_size: digests.layer_size,
        source,
    })
}

/// Writes the layout; on failure removes what it wrote (the whole directory if it made it).
fn write_or_clean(
    layout_dir: &Path,
    tag: &str,
    arch: &Arch,
    tree: &Tree,
    provenance: &Provenance,
) -> Result<Digests, Error> {
    let created_dir = prepare_layout_dir(layout_dir)?;
    write_layout(layout_dir, tag, arch, tree, provenance).inspect_err(|_| {
        cleanup_layout_dir(layout_dir, created_dir);
    })
}

fn validate_tag(tag: &str) -> Result<(), Error> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidTag(tag.to_string()))
    }
}

/// Where the image came from, for the config's history, labels and the manifest's annotations.
struct Provenance {
    created_by: String,
    comment: Option<String>,
    labels: BTreeMap<String, String>,
}

fn build_tree(source: &Source, multiarch: Option<&str>) -> Result<(Tree, Provenance), Error> {
    let mut tree = Tree::default();
    add_base(&mut tree)?;
    let (flavour, provenance) = match source {
        Source::BusyboxStatic(path) => ("busybox", add_busybox(&mut tree, path)?),
        Source::HostBinaries(programs) => (
            "host binaries",
            add_host_binaries(&mut tree, programs, multiarch)?,
        ),
    };
    add_etc(&mut tree, flavour)?;
    Ok((tree, provenance))
}

fn add_base(tree: &mut Tree) -> Result<(), Error> {
    for (dir, mode) in [
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("etc", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
        ("home", 0o755),
        ("run", 0o755),
        ("var", 0o755),
    ] {
        tree.insert(Path::new(dir), Entry::Dir { mode })?;
    }
    Ok(())
}

fn add_etc(tree: &mut Tree, flavour: &str) -> Result<(), Error> {
    // usr/bin "if not already created" (host binaries may have made it, or made it a symlink).
    tree.insert_if_absent(Path::new("usr/bin"), Entry::Dir { mode: 0o755 })?;
    let files: [(&str, String); 3] = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
                .to_string(),
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n".to_string()),
        (
            "etc/os-release",
            format!(
                "NAME=\"stepctr default image\"\nID=stepctr\nPRETTY_NAME=\"stepctr default image ({flavour})\"\nVARIANT=\"{flavour}\"\n"
            ),
        ),
    ];
    for (path, text) in files {
        tree.insert(
            Path::new(path),
            Entry::Data {
                bytes: text.into_bytes(),
                mode: 0o644,
            },
        )?;
    }
    Ok(())
}

fn add_busybox(tree: &mut Tree, path: &Path) -> Result<Provenance, Error> {
    match host::read_elf(path)? {
        None => {
            return Err(Error::NotStaticBusybox {
                path: path.to_path_buf(),
                reason: "not an elf file".to_string(),
            })
        }
        Some(info) if info.interpreter.is_some() => {
            return Err(Error::NotStaticBusybox {
                path: path.to_path_buf(),
                reason: format!(
                    "it is dynamically linked (interpreter {})",
                    info.interpreter.unwrap_or_default()
                ),
            })
        }
        Some(_) => {}
    }
    let meta = fs::metadata(path).map_err(io_err("inspecting", path))?;
    if !meta.is_file() {
        return Err(Error::NotStaticBusybox {
            path: path.to_path_buf(),
            reason: "not a regular file".to_string(),
        });
    }
    tree.insert(
        Path::new("bin/busybox"),
        Entry::File {
            src: path.to_path_buf(),
            mode: 0o755,
        },
    )?;
    for applet in busybox_applets(path)? {
        // Skip bin/busybox itself and top-level applets such as linuxrc (an initrd's init).
        if applet == Path::new("bin/busybox") || applet.components().count() < 2 {
            continue;
        }
        tree.insert_if_absent(
            &applet,
            Entry::Symlink {
                target: PathBuf::from("/bin/busybox"),
            },
        )?;
    }
    let version = busybox_version(path);
    let created_by = format!("rootfs-fetch: busybox-static from {}", path.display());
    let mut labels = BTreeMap::new();
    labels.insert(LABEL_SOURCE.to_string(), "busybox-static".to_string());
    labels.insert(LABEL_SOURCE_PATH.to_string(), path.display().to_string());
    if let Some(v) = &version {
        labels.insert(LABEL_SOURCE_VERSION.to_string(), v.clone());
    }
    Ok(Provenance {
        created_by,
        comment: version,
        labels,
    })
}

/// Applet paths relative to / from `busybox --list-full` (or `--list`, all in bin/, for builds
/// without it).
fn busybox_applets(path: &Path) -> Result<Vec<PathBuf>, Error> {
    let run = |arg: &str| -> Result<String, Error> {
        let out = Command::new(path)
            .arg(arg)
            .output()
            .map_err(|e| Error::BusyboxApplets {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(Error::BusyboxApplets {
                path: path.to_path_buf(),
                msg: format!(
                    "{arg} failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        String::from_utf8(out.stdout).map_err(|_| Error::BusyboxApplets {
            path: path.to_path_buf(),
            msg: format!("{arg} printed non-utf-8 output"),
        })
    };
    let listed: Vec<String> = match run("--list-full") {
        Ok(text) => text.lines().map(str::to_string).collect(),
        Err(full_err) => match run("--list") {
            Ok(text) => text.lines().map(|l| format!("bin/{}", l.trim())).collect(),
            Err(_) => return Err(full_err),
        },
    };
    let applets: Vec<PathBuf> = parse_applet_list(&listed);
    if applets.is_empty() {
        return Err(Error::BusyboxApplets {
            path: path.to_path_buf(),
            msg: "no applets listed".to_string(),
        });
    }
    Ok(applets)
}

fn parse_applet_list(lines: &[String]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = lines
        .iter()
        .map(|l| l.trim().trim_start_matches('/'))
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.components().all(|c| matches!(c, Component::Normal(_))))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// "BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1)" from the help banner, if it prints one.
fn busybox_version(path: &Path) -> Option<String> {
    let out = Command::new(path).arg("--help").output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let line = text.lines().find(|l| l.starts_with("BusyBox v"))?;
    Some(
        line.trim_end_matches('.')
            .trim_end_matches(" multi-call binary")
            .trim()
            .to_string(),
    )
}

fn add_host_binaries(
    tree: &mut Tree,
    programs: &[PathBuf],
    multiarch: Option<&str>,
) -> Result<Provenance, Error> {
    // Keep the host's usr-merge: /bin -> usr/bin on the host gives bin -> usr/bin in the image.
    for dir in host::MERGED_DIRS {
        let p = Path::new("/").join(dir);
        if fs::symlink_metadata(&p)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
        {
            host::add_host_path(tree, &p)?;
        }
    }
    let lib_dirs = host::library_dirs(multiarch);
    host::add_closure(tree, programs, &lib_dirs)?;
    // The image's Cmd is "sh" and etc/passwd names /bin/sh: make sure that path resolves.
    if Path::new("/bin/sh").exists() {
        host::add_closure(tree, &[PathBuf::from("/bin/sh")], &lib_dirs)?;
    }
    let names: Vec<String> = programs
        .iter()
        .map(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string())
        })
        .collect();
    let created_by = format!(
        "rootfs-fetch: host binaries {} with their shared libraries",
        names.join(" ")
    );
    let mut labels = BTreeMap::new();
    labels.insert(LABEL_SOURCE.to_string(), "host-binaries".to_string());
    labels.insert(
        LABEL_SOURCE_PATH.to_string(),
        programs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":"),
    );
    Ok(Provenance {
        created_by,
        comment: Some(format!("{} layer entries", tree.len())),
        labels,
    })
}

/// Returns whether the directory was created here (and so may be removed whole on failure).
fn prepare_layout_dir(dir: &Path) -> Result<bool, Error> {
    match fs::metadata(dir) {
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(Error::LayoutNotEmpty(dir.to_path_buf()));
            }
            let mut entries = fs::read_dir(dir).map_err(io_err("reading directory", dir))?;
            if entries.next().is_some() {
                return Err(Error::LayoutNotEmpty(dir.to_path_buf()));
            }
            Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(io_err("creating layout directory", dir))?;
            Ok(true)
        }
        Err(e) => Err(Error::Io {
            step: "inspecting layout directory",
            path: dir.to_path_buf(),
            err: e,
        }),
    }
}

/// The directory was empty or absent before, so everything in it is ours to remove.
fn cleanup_layout_dir(dir: &Path, created: bool) {
    if created {
        let _ = fs::remove_dir_all(dir);
        return;
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let p = entry.path();
            let _ = match entry.file_type() {
                Ok(ft) if ft.is_dir() => fs::remove_dir_all(&p),
                _ => fs::remove_file(&p),
            };
        }
    }
}

struct Digests {
    manifest: String,
    config: String,
    layer: String,
    diff_id: String,
    layer_size: u64,
}

fn write_layout(
    dir: &Path,
    tag: &str,
    arch: &Arch,
    tree: &Tree,
    prov: &Provenance,
) -> Result<Digests, Error> {
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(io_err("creating blob directory", &blobs))?;

    // Layer: tar -> sha256 (diff_id) -> gzip -> sha256 (digest) -> temporary file.
    let tmp = TempFile::create(blobs.join(".tmp-layer"))?;
    let file = tmp.file()?;
    let outer = HashWriter::new(file);
    let gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(outer, Compression::new(GZIP_LEVEL));
    let inner = tree.write_tar(HashWriter::new(gz))?;
    let (gz, diff_id, _tar_len) = inner.finish();
    let outer = gz
        .finish()
        .map_err(io_err("compressing layer", tmp.path()))?;
    let (file, layer_hex, layer_size) = outer.finish();
    file.sync_all()
        .map_err(io_err("syncing layer", tmp.path()))?;
    drop(file);
    tmp.persist(&blobs.join(&layer_hex))?;
    let layer_digest = format!("sha256:{layer_hex}");
    let diff_id = format!("sha256:{diff_id}");

    // Config.
    let labels: HashMap<String, String> = prov
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain([
            (
                ANNOTATION_TITLE.to_string(),
                "stepctr default image".to_string(),
            ),
            (ANNOTATION_DESCRIPTION.to_string(), prov.created_by.clone()),
        ])
        .collect();
    let config = ConfigBuilder::default()
        .env(vec![IMAGE_PATH_ENV.to_string()])
        .cmd(vec!["sh".to_string()])
        .working_dir("/")
        .labels(labels.clone())
        .build()
        .map_err(spec_err("config"))?;
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(vec![diff_id.clone()])
        .build()
        .map_err(spec_err("config rootfs"))?;
    let mut history = HistoryBuilder::default()
        .created(CREATED)
        .created_by(prov.created_by.clone());
    if let Some(c) = &prov.comment {
        history = history.comment(c.clone());
    }
    let history = history.build().map_err(spec_err("config history"))?;
    let image_config = ImageConfigurationBuilder::default()
        .created(CREATED)
        .author("stepctr rootfs-fetch")
        .architecture(arch.clone())
        .os(Os::Linux)
        .config(config)
        .rootfs(rootfs)
        .history(vec![history])
        .build()
        .map_err(spec_err("image configuration"))?;
    let config_json = canonical_json("image configuration", &image_config)?;
    let (config_digest, config_len) = write_blob(&blobs, "config", &config_json)?;

    // Manifest.
    let config_desc = Descriptor::new(
        MediaType::ImageConfig,
        config_len,
        parse_digest(&config_digest)?,
    );
    let layer_desc = Descriptor::new(
        MediaType::ImageLayerGzip,
        layer_size,
        parse_digest(&layer_digest)?,
    );
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(vec![layer_desc])
        .annotations(labels)
        .build()
        .map_err(spec_err("image manifest"))?;
    let manifest_json = canonical_json("image manifest", &manifest)?;
    let (manifest_digest, manifest_len) = write_blob(&blobs, "manifest", &manifest_json)?;

    // oci-layout, then index.json last: until it exists the layout names no image.
    write_file_atomic(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let mut manifest_desc = Descriptor::new(
        MediaType::ImageManifest,
        manifest_len,
        parse_digest(&manifest_digest)?,
    );
    manifest_desc.set_annotations(Some(HashMap::from([(
        ANNOTATION_REF_NAME.to_string(),
        tag.to_string(),
    )])));
    manifest_desc.set_platform(Some(
        PlatformBuilder::default()
            .architecture(arch.clone())
            .os(Os::Linux)
            .build()
            .map_err(spec_err("platform"))?,
    ));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest_desc])
        .build()
        .map_err(spec_err("image index"))?;
    let index_json = canonical_json("image index", &index)?;
    write_file_atomic(&dir.join("index.json"), &index_json)?;

    Ok(Digests {
        manifest: manifest_digest,
        config: config_digest,
        layer: layer_digest,
        diff_id,
        layer_size,
    })
}

fn parse_digest(s: &str) -> Result<Digest, Error> {
    Digest::from_str(s).map_err(spec_err("digest"))
}

/// JSON with object keys sorted at every level: oci-spec keeps labels and annotations in
/// `HashMap`s, whose order changes from run to run.
fn canonical_json<T: Serialize>(what: &'static str, v: &T) -> Result<Vec<u8>, Error> {
    fn sort(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<(String, serde_json::Value)> =
                    map.into_iter().map(|(k, v)| (k, sort(v))).collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(entries.into_iter().collect())
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.into_iter().map(sort).collect())
            }
            other => other,
        }
    }
    let value = serde_json::to_value(v).map_err(|err| Error::Json { what, err })?;
    serde_json::to_vec(&sort(value)).map_err(|err| Error::Json { what, err })
}

/// Writes `bytes` as a blob; returns ("sha256:<hex>", size).
fn write_blob(blobs: &Path, what: &str, bytes: &[u8]) -> Result<(String, u64), Error> {
    let hex = hex::encode(Sha256::digest(bytes));
    write_file_atomic_via(
        &blobs.join(format!(".tmp-{what}")),
        &blobs.join(&hex),
        bytes,
    )?;
    Ok((format!("sha256:{hex}"), bytes.len() as u64))
}

fn write_file_atomic(dest: &Path, bytes: &[u8]) -> Result<(), Error> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dest.with_file_name(format!(".tmp-{name}"));
    write_file_atomic_via(&tmp, dest, bytes)
}

fn write_file_atomic_via(tmp_path: &Path, dest: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = TempFile::create(tmp_path.to_path_buf())?;
    let mut f = tmp.file()?;
    f.write_all(bytes).map_err(io_err("writing", tmp.path()))?;
    f.sync_all().map_err(io_err("syncing", tmp.path()))?;
    drop(f);
    tmp.persist(dest)
}

/// A file under a temporary name, removed on drop unless renamed into place.
struct TempFile {
    path: Option<PathBuf>,
    file: Option<fs::File>,
}

impl TempFile {
    fn create(path: PathBuf) -> Result<Self, Error> {
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_err("creating", &path))?;
        Ok(TempFile {
            path: Some(path),
            file: Some(file),
        })
    }

    fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    fn file(&self) -> Result<fs::File, Error> {
        match &self.file {
            Some(f) => f.try_clone().map_err(io_err("opening", self.path())),
            None => Err(Error::Io {
                step: "opening",
                path: self.path().to_path_buf(),
                err: io::Error::from(io::ErrorKind::NotFound),
            }),
        }
    }

    fn persist(mut self, dest: &Path) -> Result<(), Error> {
        self.file = None;
        if let Some(p) = self.path.take() {
            if let Err(err) = fs::rename(&p, dest) {
                let _ = fs::remove_file(&p);
                return Err(Error::Io {
                    step: "renaming into place",
                    path: dest.to_path_buf(),
                    err,
                });
            }
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// Passes writes through while hashing and counting them.
struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W> HashWriter<W> {
    fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// (inner writer, hex sha256, bytes written)
    fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.len)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing_tree() -> Tree {
        let mut tree = Tree::default();
        add_base(&mut tree).unwrap();
        tree.insert(
            Path::new("bin/gone"),
            Entry::File {
                src: PathBuf::from("/nonexistent/rootfs-fetch-test"),
                mode: 0o755,
            },
        )
        .unwrap();
        tree
    }

    fn prov() -> Provenance {
        Provenance {
            created_by: "test".to_string(),
            comment: None,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn failure_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let absent = tmp.path().join("layout");
        let err = write_or_clean(&absent, "latest", &Arch::Amd64, &failing_tree(), &prov())
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("/nonexistent/rootfs-fetch-test"),
            "{err}"
        );
        assert!(!absent.exists());

        let empty = tmp.path().join("empty");
        fs::create_dir(&empty).unwrap();
        assert!(write_or_clean(&empty, "latest", &Arch::Amd64, &failing_tree(), &prov()).is_err());
        assert!(empty.is_dir());
        assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);
    }

    #[test]
    fn tags() {
        assert!(validate_tag("latest").is_ok());
        assert!(validate_tag("v1.2_3-x").is_ok());
        assert!(validate_tag("").is_err());
        assert!(validate_tag(".x").is_err());
        assert!(validate_tag("a/b").is_err());
        assert!(validate_tag(&"a".repeat(129)).is_err());
    }

    #[test]
    fn applet_list_is_cleaned() {
        let lines: Vec<String> = ["usr/bin/[", "bin/ls", "", "../etc/x", "/sbin/ip", "bin/ls"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            parse_applet_list(&lines),
            vec![
                PathBuf::from("bin/ls"),
                PathBuf::from("sbin/ip"),
                PathBuf::from("usr/bin/[")
            ]
        );
    }

    #[test]
    fn display() {
        assert_eq!(
            Source::BusyboxStatic("/bin/busybox".into()).to_string(),
            "busybox-static (/bin/busybox)"
        );
        assert_eq!(
            Source::HostBinaries(vec!["/bin/sh".into(), "/bin/ls".into()]).to_string(),
            "host binaries (2 programs and their libraries)"
        );
    }

    #[test]
    fn json_keys_are_sorted() {
        let m: HashMap<&str, u32> = (0..20).map(|i| (["a", "b", "c", "d"][i % 4], 1)).collect();
        let out = canonical_json("test", &m).unwrap();
        assert_eq!(out, br#"{"a":1,"b":1,"c":1,"d":1}"#);
    }
}
