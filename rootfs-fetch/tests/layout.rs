//! Builds real images on this host and checks them: layout validity, reproducibility, contents,
//! and (when installed) that skopeo and umoci read them.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use flate2::read::GzDecoder;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use rootfs_fetch::{
    build_default_image, build_image, host_binaries_source, BuiltImage, Error, Source,
};
use sha2::{Digest, Sha256};

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

/// Reads a blob and checks that its content matches its name.
fn read_blob(layout: &Path, digest: &str) -> Vec<u8> {
    let path = blob_path(layout, digest);
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert_eq!(
        format!("sha256:{}", sha256_hex(&bytes)),
        digest,
        "blob {} does not match its name",
        path.display()
    );
    bytes
}

struct Checked {
    manifest: ImageManifest,
    config: ImageConfiguration,
    layer: Vec<u8>,
}

/// index.json -> manifest -> config + layer, checking every digest and size on the way.
fn check_layout(layout: &Path, tag: &str, built: &BuiltImage) -> Checked {
    let oci_layout: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(oci_layout["imageLayoutVersion"], "1.0.0");

    let index = ImageIndex::from_file(layout.join("index.json")).unwrap();
    assert_eq!(index.schema_version(), 2);
    assert_eq!(index.manifests().len(), 1);
    let desc = &index.manifests()[0];
    assert_eq!(desc.media_type(), &MediaType::ImageManifest);
    assert_eq!(
        desc.annotations()
            .as_ref()
            .and_then(|a| a.get("org.opencontainers.image.ref.name"))
            .map(String::as_str),
        Some(tag)
    );
    assert_eq!(desc.digest().to_string(), built.manifest_digest);
    let manifest_bytes = read_blob(layout, &built.manifest_digest);
    assert_eq!(desc.size(), manifest_bytes.len() as u64);
    let manifest = ImageManifest::from_reader(&manifest_bytes[..]).unwrap();

    let cdesc = manifest.config();
    assert_eq!(cdesc.media_type(), &MediaType::ImageConfig);
    assert_eq!(cdesc.digest().to_string(), built.config_digest);
    let config_bytes = read_blob(layout, &built.config_digest);
    assert_eq!(cdesc.size(), config_bytes.len() as u64);
    let config = ImageConfiguration::from_reader(&config_bytes[..]).unwrap();

    assert_eq!(manifest.layers().len(), 1);
    let ldesc = &manifest.layers()[0];
    assert_eq!(ldesc.media_type(), &MediaType::ImageLayerGzip);
    assert_eq!(ldesc.digest().to_string(), built.layer_digest);
    let layer_gz = read_blob(layout, &built.layer_digest);
    assert_eq!(ldesc.size(), layer_gz.len() as u64);
    assert_eq!(built.layer_size, layer_gz.len() as u64);

    let mut layer = Vec::new();
    GzDecoder::new(&layer_gz[..])
        .read_to_end(&mut layer)
        .unwrap();
    let diff_id = format!("sha256:{}", sha256_hex(&layer));
    assert_eq!(diff_id, built.diff_id);
    assert_eq!(config.rootfs().typ(), "layers");
    assert_eq!(config.rootfs().diff_ids(), &vec![diff_id]);

    // Config contents.
    let expected_arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(config.architecture().to_string(), expected_arch);
    assert_eq!(config.os().to_string(), "linux");
    let c = config.config().as_ref().expect("config.config");
    assert_eq!(
        c.env().as_deref(),
        Some(
            &["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()][..]
        )
    );
    assert_eq!(c.cmd().as_deref(), Some(&["sh".to_string()][..]));
    assert_eq!(c.working_dir().as_deref(), Some("/"));
    assert!(c
        .labels()
        .as_ref()
        .is_some_and(|l| l.contains_key("io.stepctr.image.source")));
    assert_eq!(config.history().len(), 1);
    assert!(config.history()[0]
        .created_by()
        .as_deref()
        .is_some_and(|s| s.starts_with("rootfs-fetch: ")));

    // Nothing but the three blobs and the two files: no temporary leftovers.
    let mut names: Vec<String> = fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = [
        &built.manifest_digest,
        &built.config_digest,
        &built.layer_digest,
    ]
    .iter()
    .map(|d| d.trim_start_matches("sha256:").to_string())
    .collect();
    expected.sort();
    assert_eq!(names, expected);
    let mut top: Vec<String> = fs::read_dir(layout)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["blobs", "index.json", "oci-layout"]);

    Checked {
        manifest,
        config,
        layer,
    }
}

#[derive(Debug)]
struct TarEntry {
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Option<PathBuf>,
    data: Vec<u8>,
}

/// Layer entries by path, in archive order checked: every parent comes before its children.
fn tar_entries(layer: &[u8]) -> BTreeMap<String, TarEntry> {
    let mut archive = tar::Archive::new(layer);
    let mut out = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        assert!(!path.starts_with('/'), "absolute path {path}");
        let key = path.trim_end_matches('/').to_string();
        if let Some((parent, _)) = key.rsplit_once('/') {
            assert!(
                out.contains_key(parent),
                "{key} comes before its parent {parent}"
            );
        }
        let h = entry.header();
        let kind = h.entry_type();
        if kind == tar::EntryType::Directory {
            assert!(
                path.ends_with('/'),
                "directory {path} without trailing slash"
            );
        }
        let e = TarEntry {
            kind,
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            mtime: h.mtime().unwrap(),
            link: entry.link_name().unwrap().map(|l| l.into_owned()),
            data: {
                let mut d = Vec::new();
                entry.read_to_end(&mut d).unwrap();
                d
            },
        };
        assert!(
            out.insert(key.clone(), e).is_none(),
            "duplicate entry {key}"
        );
    }
    out
}

/// Follows symlinks inside the layer (not on the host) and returns the regular file `path`
/// ends at, if it does.
fn resolve_in_layer(entries: &BTreeMap<String, TarEntry>, path: &str) -> Option<String> {
    let mut pending: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(str::to_string)
        .collect();
    let mut cur: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        cur.push(c);
        let key = cur.join("/");
        let e = entries.get(&key)?;
        if e.kind == tar::EntryType::Symlink {
            hops += 1;
            if hops > 40 {
                return None;
            }
            cur.pop();
            let target = e.link.as_ref()?.to_string_lossy().into_owned();
            if target.starts_with('/') {
                cur.clear();
            }
            pending.extend(
                target
                    .split('/')
                    .filter(|c| !c.is_empty())
                    .rev()
                    .map(str::to_string),
            );
        }
    }
    let key = cur.join("/");
    (entries.get(&key)?.kind == tar::EntryType::Regular).then_some(key)
}

fn check_common_contents(entries: &BTreeMap<String, TarEntry>) {
    for e in entries.values() {
        assert_eq!((e.uid, e.gid, e.mtime), (0, 0, 0));
    }
    let tmp = &entries["tmp"];
    assert_eq!(tmp.kind, tar::EntryType::Directory);
    assert_eq!(tmp.mode, 0o1777);
    assert_eq!(entries["root"].mode, 0o700);
    for d in ["dev", "proc", "sys", "etc", "home", "run", "var", "usr/bin"] {
        assert!(entries.contains_key(d), "missing {d}");
    }
    let passwd = String::from_utf8(entries["etc/passwd"].data.clone()).unwrap();
    assert!(passwd.contains("root:x:0:0:root:/root:/bin/sh\n"));
    assert!(passwd.contains("nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"));
    let group = String::from_utf8(entries["etc/group"].data.clone()).unwrap();
    assert_eq!(group, "root:x:0:\nnogroup:x:65534:\n");
    let os = String::from_utf8(entries["etc/os-release"].data.clone()).unwrap();
    assert!(os.contains("stepctr default image"), "{os}");
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn unpack(layer: &[u8], dest: &Path) {
    let mut archive = tar::Archive::new(layer);
    archive.set_preserve_permissions(true);
    archive.unpack(dest).unwrap();
}

fn chroot_sh(root: &Path, script: &str) -> std::process::Output {
    Command::new("chroot")
        .arg(root)
        .args(["/bin/sh", "-c", script])
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .output()
        .unwrap()
}

#[test]
fn default_image_is_valid_reproducible_and_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let built = build_default_image(&a, "latest").unwrap();
    println!("source: {}", built.source);
    let checked = check_layout(&a, "latest", &built);
    assert!(checked.manifest.annotations().is_some());
    assert!(!checked.config.history().is_empty());

    // Reproducible: an existing empty directory is fine too.
    fs::create_dir(&b).unwrap();
    let again = build_default_image(&b, "latest").unwrap();
    assert_eq!(again, built);
    for f in ["index.json", "oci-layout"] {
        assert_eq!(fs::read(a.join(f)).unwrap(), fs::read(b.join(f)).unwrap());
    }

    let entries = tar_entries(&checked.layer);
    check_common_contents(&entries);
    match &built.source {
        Source::BusyboxStatic(_) => {
            let bb = &entries["bin/busybox"];
            assert_eq!(bb.kind, tar::EntryType::Regular);
            assert_eq!(bb.mode, 0o755);
            let sh = &entries["bin/sh"];
            assert_eq!(sh.kind, tar::EntryType::Symlink);
            assert_eq!(sh.link.as_deref(), Some(Path::new("/bin/busybox")));
            assert!(entries.contains_key("usr/bin/env"));
        }
        Source::HostBinaries(_) => assert!(resolve_in_layer(&entries, "bin/sh").is_some()),
    }

    if is_root() {
        let root = tmp.path().join("unpacked");
        unpack(&checked.layer, &root);
        let out = chroot_sh(&root, "echo ok; ls / >/dev/null && id -u");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n0\n");
    }

    // Not empty any more: refused, and left as it was.
    let err = build_default_image(&a, "latest").unwrap_err();
    assert!(matches!(err, Error::LayoutNotEmpty(_)), "{err}");
    check_layout(&a, "latest", &built);

    if have("skopeo") {
        let out = Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:latest", a.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo inspect: {out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["Digest"], built.manifest_digest.as_str());
        assert_eq!(v["Layers"][0], built.layer_digest.as_str());
    } else {
        println!("note: skopeo not installed, skipping skopeo inspect");
    }

    if have("umoci") && is_root() {
        let bundle = tmp.path().join("bundle");
        let out = Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:latest", a.display()))
            .arg(&bundle)
            .output()
            .unwrap();
        assert!(out.status.success(), "umoci unpack: {out:?}");
        assert!(bundle.join("rootfs/etc/passwd").is_file());
        assert!(bundle.join("config.json").is_file());
    } else {
        println!("note: umoci not installed (or not root), skipping umoci unpack");
    }
}

#[test]
fn other_tags_are_written_to_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("l");
    let built = build_default_image(&dir, "v1.0").unwrap();
    check_layout(&dir, "v1.0", &built);
}

#[test]
fn bad_inputs_touch_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("l");
    let err = build_default_image(&dir, "no/slash").unwrap_err();
    assert!(matches!(err, Error::InvalidTag(_)), "{err}");
    assert!(!dir.exists());

    let err = build_image(
        &dir,
        "latest",
        Source::BusyboxStatic("/nonexistent/busybox".into()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/busybox"), "{err}");
    assert!(!dir.exists());

    let err = host_binaries_source(&["sh", "no-such-program-rootfs-fetch"]).unwrap_err();
    assert!(
        err.to_string().contains("no-such-program-rootfs-fetch"),
        "{err}"
    );

    // A dynamically linked program is not a static busybox.
    let dynamic = ["/bin/ls", "/usr/bin/ls"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("ls on the host");
    let err = build_image(&dir, "latest", Source::BusyboxStatic(dynamic.into())).unwrap_err();
    assert!(matches!(err, Error::NotStaticBusybox { .. }), "{err}");
    assert!(!dir.exists());

    let file = tmp.path().join("file");
    fs::write(&file, "x").unwrap();
    let err = build_default_image(&file, "latest").unwrap_err();
    assert!(matches!(err, Error::LayoutNotEmpty(_)), "{err}");
    // Messages are one lower-case line without a trailing period.
    let msg = err.to_string();
    assert!(!msg.ends_with('.') && !msg.contains('\n'));
    assert!(msg.starts_with(|c: char| c.is_lowercase()), "{msg}");
}

/// The ELF interpreter named in `path`'s PT_INTERP, if any.
fn interpreter(path: &Path) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    let elf = goblin::elf::Elf::parse(&bytes).ok()?;
    elf.interpreter.map(str::to_string)
}

#[test]
fn host_binaries_source_runs_after_chroot() {
    let source = host_binaries_source(&["sh", "ls"]).unwrap();
    let Source::HostBinaries(progs) = &source else {
        panic!("expected host binaries, got {source}");
    };
    assert_eq!(progs.len(), 2);
    assert_eq!(
        source.to_string(),
        "host binaries (2 programs and their libraries)"
    );

    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let built = build_image(&a, "latest", source.clone()).unwrap();
    let checked = check_layout(&a, "latest", &built);
    let again = build_image(&tmp.path().join("b"), "latest", source).unwrap();
    assert_eq!(again.manifest_digest, built.manifest_digest);

    let entries = tar_entries(&checked.layer);
    check_common_contents(&entries);
    assert!(resolve_in_layer(&entries, "bin/sh").is_some(), "bin/sh");
    assert!(
        resolve_in_layer(&entries, "usr/bin/ls").is_some()
            || resolve_in_layer(&entries, "bin/ls").is_some()
    );
    // usr-merge is kept.
    for d in ["bin", "lib", "lib64", "sbin"] {
        let host = Path::new("/").join(d);
        if let Ok(target) = fs::read_link(&host) {
            if entries.contains_key(d) {
                assert_eq!(entries[d].kind, tar::EntryType::Symlink, "{d}");
                assert_eq!(entries[d].link.as_deref(), Some(target.as_path()), "{d}");
            } else {
                assert!(d == "sbin" || d == "lib64", "missing merged dir {d}");
            }
        }
    }
    // libc is in, as a file named libc.so.* (or reached through such a symlink).
    assert!(
        entries.keys().any(|k| {
            k.rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with("libc.so"))
                && resolve_in_layer(&entries, k).is_some()
        }),
        "no libc in {:?}",
        entries.keys().collect::<Vec<_>>()
    );
    // No setuid bits and nothing outside the expected top-level directories.
    for (k, e) in &entries {
        assert_eq!(e.mode & 0o6000, 0, "{k}");
    }

    let sh = fs::canonicalize("/bin/sh").unwrap();
    let interp = interpreter(&sh).expect("host sh is dynamically linked");
    assert!(
        resolve_in_layer(&entries, &interp).is_some(),
        "interpreter {interp} not in layer"
    );
    if is_root() {
        let root = tmp.path().join("unpacked");
        unpack(&checked.layer, &root);
        let out = chroot_sh(&root, &format!("test -f {interp} && echo ok && ls /etc"));
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.starts_with("ok\n"), "{stdout}");
        assert!(stdout.contains("passwd"), "{stdout}");
    } else {
        println!("note: not root, skipping the chroot check");
    }
}

#[test]
fn cli_builds_and_reports_errors() {
    let exe = env!("CARGO_BIN_EXE_rootfs-fetch");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    let out = Command::new(exe)
        .args(["default", "--out"])
        .arg(&dir)
        .args(["--tag", "latest"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let digest = stdout
        .lines()
        .find_map(|l| l.strip_prefix("manifest: "))
        .expect("manifest line");
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("source: ")),
        "{stdout}"
    );
    assert!(blob_path(&dir, digest).is_file());

    // Same directory again: not empty, one line on stderr, exit 1.
    let out = Command::new(exe)
        .args(["default", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not an empty directory"), "{stderr}");

    // Usage errors exit 2.
    let out = Command::new(exe).arg("default").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
