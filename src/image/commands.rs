//! `stepctr images`, `stepctr rmi`, `stepctr inspect`: looking at and cleaning the image store.
//!
//! The store is an OCI image layout: `index.json` names each image (the
//! `org.opencontainers.image.ref.name` annotation) and points at its manifest by digest; the
//! manifest points at the config and the layers; everything is a file under
//! `blobs/sha256/<hex>`, named by the sha256 of its content. So images that share a layer share
//! the file, and removing an image means: drop its line from index.json, then delete the blobs
//! nothing else points to (a mark-and-sweep garbage collection, like `umoci gc`).

use super::store::{container_uses, Entry, Store};
use crate::kernel::Kernel;
use crate::state::Paths;
use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};
use std::io::Write;

/// Sizes as docker prints them (powers of 1000, three significant digits).
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    let digits = if v < 10.0 {
        2
    } else if v < 100.0 {
        1
    } else {
        0
    };
    format!("{v:.digits$} {}", UNITS[u])
}

/// The host's architecture in OCI's words.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn platform_of(config: &Value) -> String {
    let mut p = format!(
        "{}/{}",
        config["os"].as_str().unwrap_or("?"),
        config["architecture"].as_str().unwrap_or("?")
    );
    if let Some(v) = config["variant"].as_str() {
        p.push('/');
        p.push_str(v);
    }
    p
}

/// One image manifest with its config, read from the store.
struct Manifest {
    digest: String,
    bytes: usize,
    manifest: Value,
    config_digest: String,
    config: Value,
}

impl Manifest {
    fn read(store: &Store, digest: &str) -> Result<Manifest> {
        let (bytes, manifest) = store.read_json_blob(digest)?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .ok_or_else(|| anyhow!("manifest {digest} names no config"))?
            .to_string();
        let (_, config) = store.read_json_blob(&config_digest)?;
        Ok(Manifest {
            digest: digest.to_string(),
            bytes: bytes.len(),
            manifest,
            config_digest,
            config,
        })
    }

    /// Bytes in the store: manifest, config and layer blobs.
    fn size(&self) -> u64 {
        let layers: u64 = self
            .layers()
            .iter()
            .map(|l| l["size"].as_u64().unwrap_or(0))
            .sum();
        self.bytes as u64 + self.manifest["config"]["size"].as_u64().unwrap_or(0) + layers
    }

    fn layers(&self) -> Vec<Value> {
        self.manifest["layers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// What an index.json entry points to: one manifest, or an index of per-platform manifests
/// (only those in the store are listed).
enum Target {
    Manifest(Manifest),
    Index {
        bytes: usize,
        index: Value,
        present: Vec<Manifest>,
    },
}

impl Target {
    fn read(store: &Store, e: &Entry) -> Result<Target> {
        let digest = e.descriptor.digest().to_string();
        let (bytes, v) = store.read_json_blob(&digest)?;
        if let Some(children) = v["manifests"].as_array() {
            let present = children
                .iter()
                .filter_map(|c| c["digest"].as_str())
                .filter_map(|d| Manifest::read(store, d).ok())
                .collect();
            return Ok(Target::Index {
                bytes: bytes.len(),
                index: v,
                present,
            });
        }
        Ok(Target::Manifest(Manifest::read(store, &digest)?))
    }

    /// The manifest to describe: the only one, or the host platform's in an index.
    fn main(&self) -> Option<&Manifest> {
        match self {
            Target::Manifest(m) => Some(m),
            Target::Index { present, .. } => present
                .iter()
                .find(|m| m.config["architecture"].as_str() == Some(host_arch()))
                .or(present.first()),
        }
    }

    fn size(&self) -> u64 {
        match self {
            Target::Manifest(m) => m.size(),
            Target::Index { bytes, present, .. } => {
                *bytes as u64 + present.iter().map(Manifest::size).sum::<u64>()
            }
        }
    }

    fn platforms(&self) -> Vec<String> {
        match self {
            Target::Manifest(m) => vec![platform_of(&m.config)],
            Target::Index { present, .. } => {
                present.iter().map(|m| platform_of(&m.config)).collect()
            }
        }
    }
}

fn open_store(paths: &Paths) -> Result<Option<Store>> {
    Store::open_existing(paths.images())
}

fn not_found(reference: &str) -> anyhow::Error {
    anyhow!(
        "no image {reference} in the store: `stepctr images` lists what is there, `stepctr pull {reference}` fetches it"
    )
}

/// `stepctr images [--json]`
pub fn images(paths: &Paths, as_json: bool) -> Result<()> {
    let entries = match open_store(paths)? {
        Some(store) => {
            let entries = store.entries()?;
            entries
                .into_iter()
                .map(|e| {
                    let t = Target::read(&store, &e);
                    (e, t)
                })
                .collect()
        }
        None => Vec::new(),
    };
    let mut out = std::io::stdout().lock();
    if as_json {
        let list: Vec<Value> = entries
            .iter()
            .map(|(e, t)| match t {
                Ok(t) => json!({
                    "reference": e.reference,
                    "digest": e.descriptor.digest().to_string(),
                    "media_type": e.descriptor.media_type().to_string(),
                    "size": t.size(),
                    "created": t.main().and_then(|m| m.config["created"].as_str()),
                    "platforms": t.platforms(),
                }),
                Err(err) => json!({
                    "reference": e.reference,
                    "digest": e.descriptor.digest().to_string(),
                    "media_type": e.descriptor.media_type().to_string(),
                    "error": format!("{err:#}"),
                }),
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        return Ok(());
    }
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|(e, t)| {
            let digest = e.descriptor.digest().to_string();
            let short = digest.get(..19).unwrap_or(&digest).to_string();
            match t {
                Ok(t) => [
                    e.reference.clone(),
                    short,
                    human_size(t.size()),
                    t.main()
                        .and_then(|m| m.config["created"].as_str())
                        .map(|c| c.replace('T', " ").trim_end_matches('Z').to_string())
                        .map(|c| c.split('.').next().unwrap_or_default().to_string())
                        .unwrap_or_else(|| "-".into()),
                    t.platforms().join(","),
                ],
                Err(err) => [
                    e.reference.clone(),
                    short,
                    "?".into(),
                    "-".into(),
                    format!("broken: {err:#}"),
                ],
            }
        })
        .collect();
    let header = [
        "REFERENCE".to_string(),
        "DIGEST".into(),
        "SIZE".into(),
        "CREATED".into(),
        "PLATFORM".into(),
    ];
    let mut w = [0usize; 5];
    for r in std::iter::once(&header).chain(rows.iter()) {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(rows.iter()) {
        writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:>w2$}  {:<w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        )?;
    }
    Ok(())
}

/// `stepctr rmi [--force] REF...`
pub fn rmi(k: &dyn Kernel, paths: &Paths, references: &[String], force: bool) -> Result<()> {
    let store = open_store(paths)?.ok_or_else(|| not_found(&references[0]))?;
    let mut targets = Vec::new();
    for r in references {
        let e = store.find(r)?.ok_or_else(|| not_found(r))?;
        if !targets.iter().any(|t: &Entry| t.reference == e.reference) {
            targets.push(e);
        }
    }
    let containers = container_uses(&paths.run);
    for e in &targets {
        let users: Vec<&str> = containers
            .iter()
            .filter(|c| c.image == e.reference)
            .map(|c| c.name.as_str())
            .collect();
        if users.is_empty() {
            continue;
        }
        if !force {
            bail!(
                "image {} is used by container(s) {}: remove them first (`stepctr rm {}`) or use `stepctr rmi --force {}` (their unpacked layers stay until they are removed)",
                e.reference,
                users.join(", "),
                users.join(" "),
                e.reference
            );
        }
        k.note(&format!(
            "--force: removing {} although {} use(s) it; their layers stay in {} until `stepctr rm {}`",
            e.reference,
            users.join(", "),
            paths.layers().display(),
            users.join(" ")
        ));
    }
    let before = store.reachable(&targets);
    let keep: Vec<_> = containers.iter().flat_map(|c| c.layers.clone()).collect();
    let refs: Vec<String> = targets.iter().map(|e| e.reference.clone()).collect();
    let removal = store.remove(&refs, &paths.layers(), &keep)?;

    let mut out = std::io::stdout().lock();
    for (r, d) in &removal.untagged {
        writeln!(out, "Untagged: {r} ({d})")?;
    }
    let mut freed = 0;
    for (d, size) in &removal.blobs {
        freed += size;
        writeln!(out, "Deleted: {d} ({})", human_size(*size))?;
    }
    let mut kept: Vec<&String> = before
        .blobs
        .iter()
        .filter(|d| !removal.blobs.iter().any(|(x, _)| x == *d))
        .collect();
    kept.sort();
    for d in kept {
        writeln!(out, "Kept: {d} (another image still uses it)")?;
    }
    for l in &removal.layers {
        writeln!(out, "Deleted layer directory: {}", l.display())?;
    }
    // Flattened trees (`load --flatten`) are kept per manifest: drop those of the removed
    // images, unless another reference still names that manifest or a container uses it.
    let still: Vec<String> = store.list()?.into_iter().map(|(_, d)| d).collect();
    for (_, digest) in &removal.untagged {
        let Ok(hex) = super::store::digest_hex(digest) else {
            continue;
        };
        let flat = paths.root.join("flat").join(hex);
        if still.contains(digest) || keep.contains(&flat) || !flat.is_dir() {
            continue;
        }
        let tmp = paths
            .root
            .join("flat")
            .join(format!(".tmp-gc-{hex}-{}", std::process::id()));
        if let Err(e) = std::fs::rename(&flat, &tmp).and_then(|()| std::fs::remove_dir_all(&tmp)) {
            anyhow::bail!("remove {}: {e}", flat.display());
        }
        writeln!(out, "Deleted flattened tree: {}", flat.display())?;
    }
    k.note(&format!(
        "removed {} reference(s) from {}/index.json; garbage collection deleted {} blob(s) ({}) and {} unpacked layer(s) no other image or container uses",
        removal.untagged.len(),
        store.dir.display(),
        removal.blobs.len(),
        human_size(freed),
        removal.layers.len()
    ));
    Ok(())
}

/// `stepctr inspect REF [--json]`
pub fn inspect(paths: &Paths, reference: &str, as_json: bool) -> Result<()> {
    let store = open_store(paths)?.ok_or_else(|| not_found(reference))?;
    let e = store.find(reference)?.ok_or_else(|| not_found(reference))?;
    let target = Target::read(&store, &e)?;
    let digest = e.descriptor.digest().to_string();
    let mut out = std::io::stdout().lock();
    let main = target.main().ok_or_else(|| {
        anyhow!(
            "image {} is an index whose manifests are not in the store: pull it again",
            e.reference
        )
    })?;
    let diff_ids: Vec<String> = main.config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let layers = main.layers();
    if as_json {
        let mut v = json!({
            "reference": e.reference,
            "digest": digest,
            "media_type": e.descriptor.media_type().to_string(),
            "size": target.size(),
            "platform": platform_of(&main.config),
            "manifest_digest": main.digest,
            "manifest": main.manifest,
            "config_digest": main.config_digest,
            "config": main.config,
            "layers": layers.iter().enumerate().map(|(i, l)| json!({
                "digest": l["digest"], "media_type": l["mediaType"], "size": l["size"],
                "diff_id": diff_ids.get(i),
            })).collect::<Vec<_>>(),
        });
        if let Target::Index { index, .. } = &target {
            v["index"] = index.clone();
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    let c = &main.config["config"];
    let list = |v: &Value| -> String {
        match v.as_array() {
            Some(a) if !a.is_empty() => serde_json::to_string(a).unwrap_or_default(),
            _ => "(none)".into(),
        }
    };
    writeln!(out, "Reference:   {}", e.reference)?;
    writeln!(
        out,
        "Digest:      {digest}\n             (sha256 of the {} in blobs/sha256/: `name@{}` pins exactly this image)",
        if matches!(target, Target::Index { .. }) {
            "index"
        } else {
            "manifest"
        },
        digest.get(..19).unwrap_or(&digest)
    )?;
    if let Target::Index { index, .. } = &target {
        writeln!(
            out,
            "Index:       one manifest per platform; the store has:"
        )?;
        for m in index["manifests"].as_array().into_iter().flatten() {
            let d = m["digest"].as_str().unwrap_or("?");
            let p = &m["platform"];
            let mut name = format!(
                "{}/{}",
                p["os"].as_str().unwrap_or("?"),
                p["architecture"].as_str().unwrap_or("?")
            );
            if let Some(v) = p["variant"].as_str() {
                name = format!("{name}/{v}");
            }
            let here = store.blob_path(d).map(|p| p.exists()).unwrap_or(false);
            writeln!(
                out,
                "             {name:<16} {d}{}",
                if here { "" } else { "  (not pulled)" }
            )?;
        }
        writeln!(out, "Manifest:    {} (this host's platform)", main.digest)?;
    }
    writeln!(out, "Platform:    {}", platform_of(&main.config))?;
    writeln!(
        out,
        "Created:     {}",
        main.config["created"].as_str().unwrap_or("(unknown)")
    )?;
    writeln!(
        out,
        "Size:        {} in the store (manifest, config and compressed layers)",
        human_size(target.size())
    )?;
    writeln!(
        out,
        "Config:      {} ({} bytes): how to run the image",
        main.config_digest,
        main.manifest["config"]["size"].as_u64().unwrap_or(0)
    )?;
    writeln!(
        out,
        "  Entrypoint: {}\n  Cmd:        {}",
        list(&c["Entrypoint"]),
        list(&c["Cmd"])
    )?;
    writeln!(out, "              (the command is Entrypoint + Cmd; `stepctr start NAME -- CMD...` replaces Cmd)")?;
    writeln!(
        out,
        "  WorkingDir: {}",
        c["WorkingDir"]
            .as_str()
            .filter(|w| !w.is_empty())
            .unwrap_or("/ (not set)")
    )?;
    writeln!(
        out,
        "  User:       {}",
        c["User"]
            .as_str()
            .filter(|u| !u.is_empty())
            .unwrap_or("root (not set)")
    )?;
    match c["Env"].as_array() {
        Some(env) if !env.is_empty() => {
            writeln!(out, "  Env:")?;
            for v in env {
                writeln!(out, "    {}", v.as_str().unwrap_or_default())?;
            }
        }
        _ => writeln!(out, "  Env:        (none)")?,
    }
    if let Some(labels) = c["Labels"].as_object().filter(|l| !l.is_empty()) {
        writeln!(out, "  Labels:")?;
        for (k, v) in labels {
            writeln!(out, "    {k}={}", v.as_str().unwrap_or_default())?;
        }
    }
    writeln!(
        out,
        "Layers:      {} (bottom first; the blob digest names the file as stored, maybe compressed;\n             the diff_id is the sha256 of the uncompressed tar, and names the unpacked layer)",
        layers.len()
    )?;
    for (i, l) in layers.iter().enumerate() {
        let mt = l["mediaType"].as_str().unwrap_or("?");
        let kind = mt.rsplit('.').next().unwrap_or(mt);
        writeln!(
            out,
            "  {:>2}  {}  {:>9}  {}\n      diff_id {}",
            i + 1,
            l["digest"].as_str().unwrap_or("?"),
            human_size(l["size"].as_u64().unwrap_or(0)),
            kind,
            diff_ids.get(i).map(String::as_str).unwrap_or("(missing)")
        )?;
    }
    if let Some(history) = main.config["history"].as_array().filter(|h| !h.is_empty()) {
        writeln!(
            out,
            "History:     how the layers were made (empty_layer steps only changed the config)"
        )?;
        for h in history {
            let by = h["created_by"].as_str().unwrap_or("");
            let by: String = if by.chars().count() > 100 {
                by.chars().take(100).collect::<String>() + "..."
            } else {
                by.to_string()
            };
            writeln!(
                out,
                "  {:<20}  {}{}",
                h["created"].as_str().unwrap_or(""),
                by,
                if h["empty_layer"].as_bool() == Some(true) {
                    "  (empty_layer)"
                } else {
                    ""
                }
            )?;
        }
    }
    Ok(())
}
