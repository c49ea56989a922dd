//! The image store: skopeo and umoci read it (acceptance 2), `images` / `rmi` / `inspect`,
//! docker-archive imports (docker's two layouts, compressed or not, malformed ones), and the
//! garbage collection that keeps shared blobs and removes what nothing uses.

mod common;
#[path = "common/images.rs"]
mod images;

use common::{stderr, stdout, unique, Env};
use images::{ArchiveStyle, Compression};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh store with the default image pulled, and a directory for test images.
struct Fixture {
    env: Env,
    work: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let env = Env::fresh();
        env.ok(&["-q", "pull"]);
        Fixture {
            env,
            work: tempfile::Builder::new()
                .prefix("stepctr-store-test-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    fn store(&self) -> PathBuf {
        self.env.root.join("images")
    }

    /// `stepctr images --json`, by reference.
    fn images(&self) -> BTreeMap<String, Value> {
        let out = self.env.ok(&["images", "--json"]);
        let list: Vec<Value> = serde_json::from_slice(&out.stdout).expect("images --json");
        list.into_iter()
            .map(|v| (v["reference"].as_str().unwrap().to_string(), v))
            .collect()
    }

    /// Pull `source` and return the reference it was stored under.
    fn pull(&self, source: &str) -> String {
        let before = self.images();
        let out = self.env.ok(&["-q", "pull", source]);
        assert!(stdout(&out).is_empty(), "pull prints nothing on stdout");
        let after = self.images();
        let new: Vec<&String> = after
            .iter()
            .filter(|(r, v)| before.get(*r) != Some(*v))
            .map(|(r, _)| r)
            .collect();
        assert_eq!(new.len(), 1, "pull {source} stored one image: {new:?}");
        new[0].clone()
    }

    fn blobs(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.store().join("blobs/sha256"))
            .expect("blobs")
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn has_blob(&self, digest: &str) -> bool {
        self.store()
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
            .exists()
    }

    fn layer_dirs(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.env.root.join("layers"))
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn inspect(&self, reference: &str) -> Value {
        let out = self.env.ok(&["inspect", "--json", reference]);
        serde_json::from_slice(&out.stdout).expect("inspect --json")
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The error is exactly one line (with -q), starts with `stepctr: error:`, the exit is 1.
fn one_error_line(out: &Output) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "expected failure: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line, got:\n{err}");
    assert!(lines[0].starts_with("stepctr: error: "), "{err}");
    lines[0].to_string()
}

/// `skopeo inspect oci:STORE:REF` agrees with the store on the digest and layers.
fn skopeo_reads(store: &Path, reference: &str, manifest: &Value, digest: &str) {
    let out = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:{reference}", store.display())));
    let v: Value = serde_json::from_slice(&out.stdout).expect("skopeo json");
    assert_eq!(v["Digest"], digest, "skopeo's digest of {reference}");
    let layers: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    let seen: Vec<&str> = v["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(seen, layers, "skopeo's layers of {reference}");
}

/// `umoci unpack --image STORE:REF BUNDLE` works; returns the bundle's rootfs.
fn umoci_unpacks(store: &Path, reference: &str, bundle: &Path) -> PathBuf {
    run(Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:{reference}", store.display()))
        .arg(bundle));
    let rootfs = bundle.join("rootfs");
    assert!(
        rootfs.join("bin/busybox").exists() || rootfs.join("bin/sh").exists(),
        "umoci unpacked {reference}"
    );
    rootfs
}

/// Acceptance 2: after pulls of the default image, `oci:` imports of the test images and
/// docker-archive imports, skopeo and umoci read every image in the store.
fn skopeo_and_umoci_read_the_store() {
    let f = Fixture::new();
    let layout = f.path("layout");
    let everything = images::everything_image(&layout);
    let zstd = images::everything_zstd_image(&layout);
    images::simple_image(&layout, "plain", Compression::None);
    images::simple_image(&layout, "gz", Compression::Gzip);
    let legacy = f.path("legacy.tar");
    images::docker_archive_skopeo(&layout, "gz", &legacy, "example.com/stepctr/skopeo:v1");
    let modern = f.path("modern.tar");
    images::docker_archive(
        &images::everything_builder(Compression::Gzip),
        &["example.com/stepctr/modern:v2"],
        ArchiveStyle::Oci,
        &modern,
    );

    let mut refs = vec![("localhost/stepctr-busybox:latest".to_string(), true)];
    for tag in [&everything, &zstd, "plain", "gz"] {
        let r = f.pull(&images::oci_ref(&layout, tag));
        assert_eq!(r, format!("localhost/layout:{tag}"));
        // umoci 0.4.7 (Debian 12) does not read zstd layers; skopeo does.
        refs.push((r, tag != zstd));
    }
    for archive in [&legacy, &modern] {
        refs.push((
            f.pull(&format!("docker-archive:{}", archive.display())),
            true,
        ));
    }
    assert!(refs
        .iter()
        .any(|(r, _)| r == "example.com/stepctr/skopeo:v1"));
    assert!(refs
        .iter()
        .any(|(r, _)| r == "example.com/stepctr/modern:v2"));

    let listed = f.images();
    for (i, (r, umoci)) in refs.iter().enumerate() {
        let v = f.inspect(r);
        let digest = listed[r]["digest"].as_str().unwrap();
        assert_eq!(v["digest"], digest);
        skopeo_reads(&f.store(), r, &v["manifest"], digest);
        if *umoci {
            let rootfs = umoci_unpacks(&f.store(), r, &f.path(&format!("bundle-{i}")));
            if r.contains("everything") || r.contains("modern") {
                let hello = std::fs::read(rootfs.join("data/file.txt")).expect("data/file.txt");
                assert_eq!(hello, b"hello\n");
                assert!(!rootfs.join("wh/gone.txt").exists(), "whiteouts applied");
            }
        }
    }
}

/// `images` lists reference, digest, size and creation time; `inspect` shows the manifest
/// and config.
fn images_and_inspect_show_what_is_stored() {
    let f = Fixture::new();
    let layout = f.path("layout");
    let tag = images::everything_image(&layout);
    let built = images::everything_builder(Compression::Gzip).build();
    let r = f.pull(&images::oci_ref(&layout, &tag));

    let listed = f.images();
    let v = &listed[&r];
    assert_eq!(v["digest"], built.manifest_digest);
    let size = built.manifest.len()
        + built.config.len()
        + built.layers.iter().map(|l| l.blob.len()).sum::<usize>();
    assert_eq!(v["size"], size as u64);
    assert_eq!(v["created"], "2024-01-02T03:04:05Z");
    assert_eq!(v["platforms"][0], images::host_platform().name());

    let table = stdout(&f.env.ok(&["images"]));
    let header = table.lines().next().unwrap();
    for col in ["REFERENCE", "DIGEST", "SIZE", "CREATED"] {
        assert!(header.contains(col), "{header}");
    }
    let row = table.lines().find(|l| l.starts_with(&r)).expect("row");
    assert!(row.contains(&built.manifest_digest[..19]), "{row}");
    assert!(row.contains("2024-01-02 03:04:05"), "{row}");
    assert!(row.contains(" MB"), "{row}");

    // inspect --json: the manifest and config as stored, and a layer summary.
    let j = f.inspect(&r);
    assert_eq!(j["reference"], r.as_str());
    assert_eq!(j["config_digest"], built.config_digest);
    let config: Value = serde_json::from_slice(&built.config).unwrap();
    assert_eq!(j["config"], config);
    let manifest: Value = serde_json::from_slice(&built.manifest).unwrap();
    assert_eq!(j["manifest"], manifest);
    for (i, l) in built.layers.iter().enumerate() {
        assert_eq!(j["layers"][i]["digest"], l.digest);
        assert_eq!(j["layers"][i]["diff_id"], l.diff_id);
        assert_eq!(j["layers"][i]["size"], l.blob.len() as u64);
        assert_eq!(j["layers"][i]["media_type"], l.media_type());
    }

    // inspect: the same for people.
    let text = stdout(&f.env.ok(&["inspect", &r]));
    for want in [
        format!("Reference:   {r}"),
        format!("Digest:      {}", built.manifest_digest),
        format!("Config:      {}", built.config_digest),
        "Cmd:        [\"sh\"]".to_string(),
        "WorkingDir: /data".to_string(),
        "STEPCTR_TEST=everything".to_string(),
        "whiteouts and opaque directories".to_string(),
        "tar+gzip".to_string(),
    ] {
        assert!(text.contains(&want), "inspect lacks {want:?}:\n{text}");
    }
    for l in &built.layers {
        assert!(text.contains(&l.digest), "{text}");
        assert!(text.contains(&format!("diff_id {}", l.diff_id)), "{text}");
    }
    // Short names work as for pull: `default` is the default image.
    let d = stdout(&f.env.ok(&["inspect", "default"]));
    assert!(d.contains("localhost/stepctr-busybox:latest"), "{d}");
}

/// rmi removes the reference, deletes blobs and unpacked layers only that image used, and
/// keeps the ones another image shares.
fn rmi_keeps_shared_blobs_and_removes_unique_ones() {
    let f = Fixture::new();
    let layout = f.path("layout");
    let tag = images::everything_image(&layout);
    images::simple_image(&layout, "gz", Compression::Gzip);
    let everything = images::everything_builder(Compression::Gzip).build();
    let ev = f.pull(&images::oci_ref(&layout, &tag));
    let gz = f.pull(&images::oci_ref(&layout, "gz"));
    let base = &everything.layers[0];
    let shared_manifest = f.inspect(&gz);
    assert_eq!(
        shared_manifest["layers"][0]["digest"], base.digest,
        "both images start with the same busybox layer blob"
    );

    // Unpack both images' layers, as containers do, then remove the containers.
    for image in [&ev, &gz] {
        let name = unique("rmi");
        f.env.ok(&["-q", "load", &name, image]);
        f.env.rm_and_check(&name);
    }
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    let layers_before = f.layer_dirs();
    for l in &everything.layers {
        assert!(
            layers_before.contains(&hex(&l.diff_id)),
            "unpacked {}",
            l.diff_id
        );
    }

    let out = f.env.ok(&["rmi", &ev]);
    let text = stdout(&out);
    assert!(text.contains(&format!("Untagged: {ev}")), "{text}");
    assert!(!f.images().contains_key(&ev), "gone from images");
    // Unique blobs (manifest, config, layers 2-4) are deleted...
    assert!(!f.has_blob(&everything.manifest_digest));
    assert!(!f.has_blob(&everything.config_digest));
    for l in &everything.layers[1..] {
        assert!(!f.has_blob(&l.digest), "layer blob {} deleted", l.digest);
        assert!(text.contains(&format!("Deleted: {}", l.digest)), "{text}");
        assert!(
            !f.layer_dirs().contains(&hex(&l.diff_id)),
            "layer dir deleted"
        );
    }
    // ... the shared base layer stays, as blob and as unpacked directory.
    assert!(f.has_blob(&base.digest));
    assert!(text.contains(&format!("Kept: {}", base.digest)), "{text}");
    assert!(f.layer_dirs().contains(&hex(&base.diff_id)));
    // The other images are whole: skopeo and umoci still read them.
    for r in [&gz, "localhost/stepctr-busybox:latest"] {
        let v = f.inspect(r);
        skopeo_reads(&f.store(), r, &v["manifest"], v["digest"].as_str().unwrap());
    }
    umoci_unpacks(&f.store(), &gz, &f.path("bundle"));
    // Nothing but blobs in blobs/sha256 (no temporary files left).
    for b in f.blobs() {
        assert_eq!(b.len(), 64, "stray file {b}");
    }

    // Removing the last image of a blob removes the blob.
    f.env.ok(&["-q", "rmi", &gz, "default"]);
    assert!(f.images().is_empty());
    assert!(f.blobs().is_empty(), "{:?}", f.blobs());
    assert!(f.layer_dirs().is_empty(), "{:?}", f.layer_dirs());
    // The store is still a valid (empty) layout: pulling again works.
    f.env.ok(&["-q", "pull"]);
}

/// An image a container uses is not removed (unless --force, which keeps its layers).
fn rmi_refuses_an_image_a_container_uses() {
    let f = Fixture::new();
    let layout = f.path("layout");
    images::simple_image(&layout, "used", Compression::Gzip);
    let r = f.pull(&images::oci_ref(&layout, "used"));
    let name = unique("inuse");
    f.env.ok(&["-q", "load", &name, &r]);
    let index_before = std::fs::read(f.store().join("index.json")).unwrap();
    let blobs_before = f.blobs();

    let line = one_error_line(&f.env.run(&["-q", "rmi", &r]));
    assert!(
        line.contains(&r) && line.contains(&name) && line.contains("--force"),
        "{line}"
    );
    assert_eq!(
        std::fs::read(f.store().join("index.json")).unwrap(),
        index_before
    );
    assert_eq!(f.blobs(), blobs_before);

    // With --force the image goes, the container's unpacked layers stay.
    let layers = f.env.state(&name)["layers"].clone();
    f.env.ok(&["-q", "rmi", "--force", &r]);
    assert!(!f.images().contains_key(&r));
    for l in layers.as_array().unwrap() {
        assert!(Path::new(l.as_str().unwrap()).is_dir(), "{l} kept");
    }
    // The container still runs from them.
    f.env.ok(&["-q", "cgroup", &name]);
    f.env.ok(&["-q", "ns", &name]);
    f.env.ok(&["-q", "fs", &name]);
    let out = f
        .env
        .ok(&["-q", "start", &name, "--", "cat", "/etc/stepctr-image"]);
    assert_eq!(stdout(&out), "used\n");
    f.env.rm_and_check(&name);
}

/// docker archives of both layouts, compressed inside and out, import and run.
fn docker_archive_round_trip() {
    let f = Fixture::new();
    let layout = f.path("layout");
    let tag = images::everything_image(&layout);
    let want = images::everything_builder(Compression::Gzip).build();
    let diff_ids: Vec<&str> = want.layers.iter().map(|l| l.diff_id.as_str()).collect();
    let check = |r: &str| {
        let j = f.inspect(r);
        let got: Vec<&str> = j["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["diff_id"].as_str().unwrap())
            .collect();
        assert_eq!(got, diff_ids, "{r}: same layers");
        assert_eq!(j["config_digest"], want.config_digest, "{r}: same config");
        assert_eq!(
            j["media_type"], "application/vnd.oci.image.manifest.v1+json",
            "{r}: converted to OCI"
        );
        j
    };

    // Written by skopeo (docker's legacy layout: <id>/layer.tar symlinks, uncompressed).
    let legacy = f.path("legacy.tar");
    images::docker_archive_skopeo(&layout, &tag, &legacy, "example.com/stepctr/everything:v1");
    let r = f.pull(&format!("docker-archive:{}", legacy.display()));
    assert_eq!(r, "example.com/stepctr/everything:v1");
    let j = check(&r);
    assert!(j["layers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["media_type"] == "application/vnd.oci.image.layer.v1.tar"));

    // Docker 25's layout, gzip and zstd layers kept as they are.
    let modern = f.path("modern.tar");
    images::docker_archive(
        &images::everything_builder(Compression::Zstd),
        &["stepctr-modern:v1", "stepctr-modern:other"],
        ArchiveStyle::Oci,
        &modern,
    );
    let r2 = f.pull(&format!("docker-archive:{}", modern.display()));
    assert_eq!(r2, stepctr::image::normalize("stepctr-modern:v1"));
    let j2 = check(&r2);
    let types: Vec<&str> = j2["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["media_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.v1.tar",
        ]
    );
    // :REF picks a tag, and the image is stored under it.
    let r3 = f.pull(&format!(
        "docker-archive:{}:stepctr-modern:other",
        modern.display()
    ));
    assert_eq!(r3, stepctr::image::normalize("stepctr-modern:other"));

    // The whole archive gzip-compressed (`docker save IMAGE | gzip`), untagged: named after
    // the file.
    let untagged = f.path("untagged.tar");
    images::docker_archive(
        &images::ImageBuilder::busybox(Compression::None).workdir("/tmp"),
        &[],
        ArchiveStyle::Legacy,
        &untagged,
    );
    let gz = f.path("Saved-Image.tar.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &std::fs::read(&untagged).unwrap()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let r4 = f.pull(&format!("docker-archive:{}", gz.display()));
    assert!(r4.starts_with("localhost/saved-image"), "{r4}");

    // It runs: through `all`, and stage by stage from the stored reference.
    let out = f.env.ok(&[
        "-q",
        "all",
        "--rm",
        &format!("docker-archive:{}", legacy.display()),
        "--",
        "sh",
        "-c",
        "cat /data/file.txt; pwd",
    ]);
    assert_eq!(stdout(&out), "hello\n/data\n");
    let name = unique("archive");
    f.env.ok(&["-q", "load", &name, &r2]);
    f.env.ok(&["-q", "cgroup", &name]);
    f.env.ok(&["-q", "ns", &name]);
    f.env.ok(&["-q", "fs", &name]);
    let out = f.env.ok(&["-q", "start", &name, "--", "true"]);
    assert!(out.status.success());
    f.env.rm_and_check(&name);
}

/// Malformed archives: one clear error line each, and nothing enters the store.
fn malformed_archives_fail_with_one_clear_line() {
    let f = Fixture::new();
    let good = images::ImageBuilder::busybox(Compression::None).layer(
        images::Layer::from_entries(&[images::Entry::file("x", b"x\n")], Compression::Gzip),
        "x",
    );
    let built = good.build();
    let tar_of = |files: &[(&str, &[u8])]| -> Vec<u8> {
        images::tar(
            &files
                .iter()
                .map(|(n, d)| images::Entry::file(n, d))
                .collect::<Vec<_>>(),
        )
    };
    let config_name = format!("{}.json", built.config_digest.trim_start_matches("sha256:"));
    let manifest = |config: &str, layers: &[&str], tags: &[&str]| -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!([
            {"Config": config, "RepoTags": tags, "Layers": layers}
        ]))
        .unwrap()
    };
    let l0 = built.layers[0].tar.clone();
    let l1 = built.layers[1].blob.clone();
    let mut bad_l1 = l1.clone();
    let n = bad_l1.len();
    bad_l1[n - 12] ^= 0xff; // inside the gzip data / trailer: unpacks to something else
    let other_l1 =
        images::Layer::from_entries(&[images::Entry::file("y", b"y\n")], Compression::Gzip).blob;
    let full = |layer1: &[u8], m: &[u8]| {
        tar_of(&[
            ("a/layer.tar", &l0),
            ("b/layer.tar", layer1),
            (&config_name, &built.config),
            ("manifest.json", m),
        ])
    };
    let good_manifest = manifest(&config_name, &["a/layer.tar", "b/layer.tar"], &["t:1"]);
    let two = serde_json::to_vec(&serde_json::json!([
        {"Config": config_name, "RepoTags": ["t:1"], "Layers": ["a/layer.tar", "b/layer.tar"]},
        {"Config": config_name, "RepoTags": ["t:2"], "Layers": ["a/layer.tar", "b/layer.tar"]},
    ]))
    .unwrap();
    let wrong_name_config = format!("{}.json", "0".repeat(64));
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "garbage",
            b"this is not a tar archive".to_vec(),
            "",
            "is not a whole tar archive",
        ),
        (
            "truncated",
            full(&l1, &good_manifest)[..3000].to_vec(),
            "",
            "is not a whole tar archive",
        ),
        (
            "no-manifest",
            tar_of(&[("a/layer.tar", &l0)]),
            "",
            "has no manifest.json",
        ),
        (
            "bad-json",
            tar_of(&[("manifest.json", b"{not json")]),
            "",
            "manifest.json is not a list",
        ),
        (
            "missing-layer",
            tar_of(&[
                (&config_name, &built.config),
                ("manifest.json", &good_manifest),
            ]),
            "",
            "layer a/layer.tar is missing",
        ),
        (
            "missing-config",
            tar_of(&[("a/layer.tar", &l0), ("manifest.json", &good_manifest)]),
            "",
            "is missing",
        ),
        (
            "corrupt-layer",
            full(&bad_l1, &good_manifest),
            "",
            "layer 2 (b/layer.tar) does not decompress",
        ),
        (
            "wrong-layer",
            full(&other_l1, &good_manifest),
            "",
            "layer 2 (b/layer.tar) unpacks to",
        ),
        (
            "config-digest",
            tar_of(&[
                ("a/layer.tar", &l0),
                ("b/layer.tar", &l1),
                (&wrong_name_config, &built.config),
                (
                    "manifest.json",
                    &manifest(&wrong_name_config, &["a/layer.tar", "b/layer.tar"], &[]),
                ),
            ]),
            "",
            "not to the digest its name says",
        ),
        (
            "layer-count",
            full(&l1, &manifest(&config_name, &["a/layer.tar"], &[])),
            "",
            "lists 1 layers, the config's rootfs.diff_ids 2",
        ),
        (
            "two-images",
            full(&l1, &two),
            "",
            "holds 2 images (t:1, t:2)",
        ),
        (
            "unknown-tag",
            full(&l1, &good_manifest),
            ":t:9",
            "holds no image tagged t:9",
        ),
        (
            "bad-index",
            full(&l1, &good_manifest),
            ":@5",
            "@5 is not one of them",
        ),
    ];
    let index_before = std::fs::read(f.store().join("index.json")).unwrap();
    let blobs_before = f.blobs();
    for (name, bytes, suffix, want) in &cases {
        let file = f.path(&format!("{name}.tar"));
        std::fs::write(&file, bytes).unwrap();
        let out = f.env.run(&[
            "-q",
            "pull",
            &format!("docker-archive:{}{suffix}", file.display()),
        ]);
        let line = one_error_line(&out);
        assert!(line.contains(want), "{name}: {line}");
        assert_eq!(
            std::fs::read(f.store().join("index.json")).unwrap(),
            index_before,
            "{name}: index.json unchanged"
        );
        assert_eq!(
            f.blobs(),
            blobs_before,
            "{name}: no blob (or temp file) left"
        );
    }
    let line = one_error_line(&f.env.run(&[
        "-q",
        "pull",
        &format!("docker-archive:{}", f.path("absent.tar").display()),
    ]));
    assert!(
        line.contains("absent.tar") && line.contains("No such file"),
        "{line}"
    );
    // The good one imports; :@1 picks the second of two.
    std::fs::write(f.path("good.tar"), full(&l1, &two)).unwrap();
    let r = f.pull(&format!(
        "docker-archive:{}:@1",
        f.path("good.tar").display()
    ));
    assert_eq!(r, stepctr::image::normalize("t:2"));
}

/// rmi and inspect of what is not there: one clear line each.
fn unknown_references_fail_with_one_clear_line() {
    let f = Fixture::new();
    for args in [
        &["-q", "rmi", "localhost/nosuch:1"][..],
        &["-q", "inspect", "localhost/nosuch:1"],
        &["-q", "inspect", "--json", "localhost/nosuch:1"],
        &["-q", "rmi", "default", "localhost/nosuch:1"],
    ] {
        let line = one_error_line(&f.env.run(args));
        assert!(
            line.contains("no image localhost/nosuch:1 in the store")
                && line.contains("stepctr images"),
            "{args:?}: {line}"
        );
    }
    // A refused rmi of several removes none of them.
    assert!(f.images().contains_key("localhost/stepctr-busybox:latest"));
    // An empty or missing store lists nothing (and creates nothing).
    let empty = Env::fresh();
    let out = empty.ok(&["images"]);
    assert_eq!(stdout(&out).lines().count(), 1, "just the header");
    assert_eq!(stdout(&empty.ok(&["images", "--json"])).trim(), "[]");
    assert!(!empty.root.join("images").exists());
}

/// Imports running at the same time all land in index.json (edits are made under the store
/// lock), and an rmi running meanwhile never takes a blob an import is using.
fn concurrent_imports_and_rmi_keep_the_store_whole() {
    let f = Fixture::new();
    let layout = f.path("layout");
    let tags: Vec<String> = (0..6)
        .map(|i| images::simple_image(&layout, &format!("c{i}"), Compression::Gzip))
        .collect();
    images::simple_image(&layout, "victim", Compression::Gzip);
    let victim = f.pull(&images::oci_ref(&layout, "victim"));
    let mut children: Vec<std::process::Child> = tags
        .iter()
        .map(|t| {
            f.env
                .cmd(&["-q", "pull", &images::oci_ref(&layout, t)])
                .spawn()
                .expect("spawn pull")
        })
        .collect();
    children.push(
        f.env
            .cmd(&["-q", "rmi", &victim])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn rmi"),
    );
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let listed = f.images();
    for t in &tags {
        let r = format!("localhost/layout:{t}");
        assert!(listed.contains_key(&r), "{r} listed: {listed:?}");
        let v = f.inspect(&r);
        skopeo_reads(
            &f.store(),
            &r,
            &v["manifest"],
            v["digest"].as_str().unwrap(),
        );
        for l in v["layers"].as_array().unwrap() {
            assert!(f.has_blob(l["digest"].as_str().unwrap()), "{r}: blob kept");
        }
    }
    assert!(!listed.contains_key(&victim));
}

/// An index.json entry that is an image index (one manifest per platform) is listed,
/// inspected (the host's manifest) and removed with everything it reaches.
fn index_entries_are_listed_inspected_and_removed() {
    let f = Fixture::new();
    let store = images::Layout::create(&f.store());
    let (digest, built) = store.add_index(
        &[
            images::platform_builder(&images::host_platform()),
            images::platform_builder(&images::other_platform()),
        ],
        "localhost/multi:1",
    );
    let listed = f.images();
    let v = &listed["localhost/multi:1"];
    assert_eq!(v["digest"], digest);
    assert_eq!(
        v["platforms"],
        serde_json::json!([
            images::host_platform().name(),
            images::other_platform().name()
        ])
    );
    let j = f.inspect("localhost/multi:1");
    assert_eq!(j["manifest_digest"], built[0].manifest_digest, "the host's");
    assert_eq!(j["index"]["manifests"].as_array().unwrap().len(), 2);
    let text = stdout(&f.env.ok(&["inspect", "localhost/multi:1"]));
    assert!(text.contains(&images::other_platform().name()), "{text}");
    assert!(text.contains("this host's platform"), "{text}");

    f.env.ok(&["-q", "rmi", "localhost/multi:1"]);
    assert!(!f.has_blob(&digest));
    for b in &built {
        assert!(!f.has_blob(&b.manifest_digest));
        assert!(!f.has_blob(&b.config_digest));
        assert!(!f.has_blob(&b.layers[1].digest));
    }
    let default = f.inspect("default");
    skopeo_reads(
        &f.store(),
        "localhost/stepctr-busybox:latest",
        &default["manifest"],
        default["digest"].as_str().unwrap(),
    );
}

/// `load --flatten` keeps one flattened tree per manifest; `rmi` removes it with the image.
fn rmi_removes_the_flattened_tree_of_the_image() {
    let env = Env::fresh();
    let name = unique("flat");
    env.ok(&["-q", "pull"]);
    env.ok(&["-q", "load", &name, "--flatten"]);
    let flat = env.root.join("flat");
    let trees = || std::fs::read_dir(&flat).map(|rd| rd.count()).unwrap_or(0);
    assert_eq!(trees(), 1, "one flattened tree");
    // In use by the container: --force removes the image but keeps the tree the container uses.
    env.ok(&["-q", "rmi", "--force", "localhost/stepctr-busybox:latest"]);
    assert_eq!(trees(), 1, "the container still uses its tree");
    env.ok(&["-q", "rm", &name]);
    env.ok(&["-q", "pull"]);
    env.ok(&["-q", "load", &name, "--flatten"]);
    env.ok(&["-q", "rm", &name]);
    let out = env.ok(&["rmi", "localhost/stepctr-busybox:latest"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Deleted flattened tree"));
    assert_eq!(trees(), 0, "nothing of the image is left");
}

fn main() {
    common::run_tests(
        tests![
            rmi_removes_the_flattened_tree_of_the_image,
            skopeo_and_umoci_read_the_store,
            images_and_inspect_show_what_is_stored,
            rmi_keeps_shared_blobs_and_removes_unique_ones,
            rmi_refuses_an_image_a_container_uses,
            docker_archive_round_trip,
            malformed_archives_fail_with_one_clear_line,
            unknown_references_fail_with_one_clear_line,
            concurrent_imports_and_rmi_keep_the_store_whole,
            index_entries_are_listed_inspected_and_removed,
        ],
        true,
    );
}
