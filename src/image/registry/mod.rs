//! Pulling from a registry with the OCI distribution API: the manifest (an index first, when the
//! image is multi-platform), then the config and layer blobs, a few at a time, each checked
//! against its sha256 as it streams to disk.
//!
//! The HTTP client runs on a single-threaded tokio runtime that lives only as long as the
//! pull: later stages fork, and a process that forks must not have other threads running.
//! Everything, the narration included, happens on the calling thread.

pub mod auth;
pub mod client;
pub mod download;
pub mod manifest;

use crate::image::store::{ImageInfo, Store};
use crate::image::ImageRef;
use crate::kernel::{KResult, Kernel};
use anyhow::{anyhow, bail, Context, Result};
use auth::Credentials;
use client::Client;
use futures_util::{StreamExt as _, TryStreamExt as _};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use manifest::{Descriptor, Fetched, ImageManifest, Platform};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use sha2::{Digest as _, Sha256};
use std::io::IsTerminal as _;
use std::time::Duration;

/// Layers downloaded at once (docker's default too).
const CONCURRENT_DOWNLOADS: usize = 3;

/// How to pull: what `stepctr pull` takes besides the reference.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `os/arch[/variant]`; the host's platform when `None`.
    pub platform: Option<String>,
    /// Credentials from the command line (else `~/.docker/config.json`).
    pub username: Option<String>,
    pub password: Option<String>,
    /// Plain HTTP even though the registry is not on loopback.
    pub insecure: bool,
    /// Progress bars on a terminal (`-q` turns them off).
    pub progress: bool,
}

impl PullOptions {
    /// The defaults `stepctr all` uses: host platform, docker's credentials, bars on a TTY;
    /// `STEPCTR_INSECURE_REGISTRIES` (comma-separated hosts) lists registries spoken to over
    /// plain HTTP.
    pub fn new() -> PullOptions {
        PullOptions {
            progress: true,
            ..PullOptions::default()
        }
    }
}

/// Narration that does not garble progress bars: every line is printed with the bars
/// cleared, then they are redrawn below it.
pub struct Say<'a> {
    k: &'a dyn Kernel,
    bars: Option<MultiProgress>,
}

impl<'a> Say<'a> {
    pub fn new(k: &'a dyn Kernel, bars: Option<MultiProgress>) -> Say<'a> {
        Say { k, bars }
    }

    fn quiet<T>(&self, f: impl FnOnce() -> T) -> T {
        match &self.bars {
            Some(mp) => mp.suspend(f),
            None => f(),
        }
    }

    pub fn note(&self, text: &str) {
        self.quiet(|| self.k.note(text));
    }

    pub fn http(
        &self,
        method: &str,
        url: &str,
        outcome: Result<&str, &str>,
        took: Duration,
        why: &str,
    ) {
        self.quiet(|| self.k.http(method, url, outcome, took, why));
    }

    /// A system call through the kernel seam (narrated like any other).
    pub fn sys<T>(&self, f: impl FnOnce(&dyn Kernel) -> KResult<T>) -> Result<T> {
        self.quiet(|| f(self.k)).map_err(Into::into)
    }
}

/// `12.3 MiB`
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

/// Pull `r` into `store` under the name `stored`.
pub fn pull(
    k: &dyn Kernel,
    store: &Store,
    r: &ImageRef,
    stored: &str,
    opts: &PullOptions,
) -> Result<ImageInfo> {
    // rustls needs its crypto named once per process (ring: no C toolchain, no OpenSSL).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the HTTP client's event loop")?;
    let bars = (opts.progress && std::io::stderr().is_terminal())
        .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
    let say = Say::new(k, bars);
    let result = rt.block_on(pull_async(&say, store, r, stored, opts));
    if let Some(mp) = &say.bars {
        let _ = mp.clear();
    }
    // Shut the runtime down now: its worker threads (DNS lookups run on one) must be gone
    // before any stage forks.
    drop(rt);
    wait_single_threaded()?;
    result
}

/// Threads joined by the runtime's shutdown may take a moment to leave /proc.
fn wait_single_threaded() -> Result<()> {
    for _ in 0..200 {
        let n = std::fs::read_dir("/proc/self/task")
            .map(|d| d.count())
            .unwrap_or(1);
        if n <= 1 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    bail!("internal error: threads of the HTTP client are still running after the pull")
}

fn credentials(r: &ImageRef, opts: &PullOptions) -> Result<Option<Credentials>> {
    match (&opts.username, &opts.password) {
        (Some(u), Some(p)) => Ok(Some(Credentials {
            username: u.clone(),
            password: p.clone(),
            from: "the command line".to_string(),
        })),
        (Some(_), None) => bail!("--username needs a password too: --password or --password-stdin"),
        (None, Some(_)) => bail!("a password needs a user name too: --username"),
        (None, None) => auth::from_docker_config(&r.domain),
    }
}

fn insecure_by_env(host: &str) -> bool {
    std::env::var("STEPCTR_INSECURE_REGISTRIES")
        .map(|v| v.split(',').any(|h| h.trim() == host))
        .unwrap_or(false)
}

async fn pull_async(
    say: &Say<'_>,
    store: &Store,
    r: &ImageRef,
    stored: &str,
    opts: &PullOptions,
) -> Result<ImageInfo> {
    let host = r.api_host();
    let plain = r.is_loopback() || opts.insecure || insecure_by_env(&r.domain);
    let scheme = if plain { "http" } else { "https" };
    let want = match &opts.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let creds = credentials(r, opts)?;
    say.note(&format!(
        "{stored}: registry {scheme}://{host}{}, repository {}, {} {}{}",
        if plain && !r.is_loopback() {
            " (plain HTTP: --insecure)"
        } else if plain {
            " (plain HTTP: loopback)"
        } else {
            ""
        },
        r.path,
        if r.digest.is_some() { "digest" } else { "tag" },
        r.manifest_key(),
        match &creds {
            Some(c) => format!("; credentials of {} from {}", c.username, c.from),
            None => String::new(),
        }
    ));
    let c = Client::new(say, scheme, host, &r.path, creds)?;

    // 1. The manifest the reference names: an index or one image's manifest.
    let key = r.manifest_key().to_string();
    let (bytes, content_type) = get_manifest(
        &c,
        &key,
        r,
        "ask for the image's manifest (or its index of platforms)",
    )
    .await?;
    let top_digest = sha256(&bytes);
    verify_manifest_digest(say, r.digest.as_deref(), &top_digest, stored)?;
    let (mut image, mut manifest_bytes, mut manifest_digest) = match manifest::parse(
        content_type.as_deref(),
        &bytes,
        stored,
    )? {
        Fetched::Image(m) => (*m, bytes, top_digest),
        Fetched::Index(entries) => {
            let chosen = manifest::choose_platform(&entries, &want, stored)?;
            let listed: Vec<String> = entries
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .filter(|p| p.os != "unknown")
                .map(Platform::to_string)
                .collect();
            say.note(&format!(
                "{} {} is an index of {} platforms ({}): chose {} ({}), manifest {}",
                content_type.as_deref().unwrap_or("manifest"),
                download::short(&top_digest),
                listed.len(),
                listed.join(", "),
                chosen
                    .platform
                    .as_ref()
                    .map(Platform::to_string)
                    .unwrap_or_default(),
                if opts.platform.is_some() {
                    "--platform"
                } else {
                    "this machine's platform"
                },
                download::short(&chosen.digest)
            ));
            let (b, ct) = get_manifest(
                &c,
                &chosen.digest,
                r,
                &format!("the {want} image's manifest"),
            )
            .await?;
            let d = sha256(&b);
            verify_manifest_digest(say, Some(&chosen.digest), &d, stored)?;
            match manifest::parse(ct.as_deref(), &b, stored)? {
                Fetched::Image(m) => (*m, b, d),
                Fetched::Index(_) => {
                    bail!("{stored}: the index entry for {want} is another index: nested indexes are not supported")
                }
            }
        }
    };
    manifest::check_supported(&image, stored)?;
    say.note(&format!(
        "{} {}: config {}, {} layer(s), {} in all",
        image.media_type,
        download::short(&manifest_digest),
        download::short(&image.config.digest),
        image.layers.len(),
        human(image.layers.iter().map(|l| l.size).sum())
    ));

    // The manifest as it will be stored: OCI (as skopeo converts Docker's when it writes a
    // layout, so OCI tools read the store).
    if image.is_docker() {
        let oci = manifest::to_oci(&image);
        let d = sha256(&oci);
        say.note(&format!(
            "the Docker schema 2 manifest {} is stored as the OCI manifest {} (same config and \
             layers), as skopeo does",
            download::short(&manifest_digest),
            download::short(&d)
        ));
        manifest_bytes = oci;
        manifest_digest = d;
        image.media_type = manifest::OCI_MANIFEST.to_string();
    }
    // Keep a concurrent `rmi`'s garbage collection away from these blobs until the image is
    // in index.json.
    let mut digests: Vec<String> = vec![manifest_digest.clone(), image.config.digest.clone()];
    digests.extend(image.layers.iter().map(|l| l.digest.clone()));
    let _pin = store.pin(&digests)?;

    // 2. The config and the layers, a few at a time.
    fetch_blobs(&c, store, &image).await?;
    check_config(say, store, &image, &want, opts.platform.is_some(), stored)?;

    // 3. The manifest, then its name in index.json.
    download::store_bytes(say, store, &manifest_digest, &manifest_bytes)?;
    let desc = oci_spec::image::Descriptor::new(
        oci_spec::image::MediaType::ImageManifest,
        manifest_bytes.len() as u64,
        manifest_digest
            .parse::<oci_spec::image::Digest>()
            .map_err(|e| anyhow!("digest {manifest_digest}: {e}"))?,
    );
    store.add_ref(&desc, stored)?;
    say.note(&format!(
        "index.json: {stored} -> {}",
        download::short(&manifest_digest)
    ));
    store.describe(stored, &manifest_digest)
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn verify_manifest_digest(
    say: &Say<'_>,
    expected: Option<&str>,
    got: &str,
    what: &str,
) -> Result<()> {
    if let Some(e) = expected {
        if e != got {
            bail!("the manifest of {what} has digest {got}, not the {e} asked for: refusing it");
        }
        say.note(&format!(
            "manifest digest {} verified",
            download::short(got)
        ));
    }
    Ok(())
}

/// GET a manifest (by tag or digest); returns its bytes and Content-Type. An unknown tag or
/// repository is one clear error.
async fn get_manifest(
    c: &Client<'_>,
    key: &str,
    r: &ImageRef,
    why: &str,
) -> Result<(Vec<u8>, Option<String>)> {
    let url = c.url("manifests", key)?;
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static(manifest::ACCEPT));
    let resp = c.get(url.clone(), headers, why).await?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        let body = client::read_limited(resp, 4096).await.unwrap_or_default();
        let msg = client::registry_message(&body).unwrap_or_default();
        let what = if msg.contains("NAME_UNKNOWN") {
            format!("repository {} does not exist there", r.path)
        } else if key.starts_with("sha256:") {
            format!("it has no manifest {key}")
        } else {
            format!("it has no tag {key:?} in {}", r.path)
        };
        bail!(
            "not found on {}: {what}{}",
            c.base,
            if msg.is_empty() {
                String::new()
            } else {
                format!(" ({msg})")
            }
        );
    }
    if !status.is_success() {
        let body = client::read_limited(resp, 4096).await.unwrap_or_default();
        let msg = client::registry_message(&body)
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        bail!("GET {url}: {}{msg}", client::status_line(status));
    }
    let ct = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let header_digest = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = client::read_limited(resp, manifest::MANIFEST_MAX).await?;
    if let Some(h) = header_digest {
        let got = sha256(&bytes);
        if h.starts_with("sha256:") && h != got {
            bail!("the manifest of {r} has digest {got}, but the registry says {h}: refusing it");
        }
    }
    Ok((bytes, ct))
}

async fn fetch_blobs(c: &Client<'_>, store: &Store, image: &ImageManifest) -> Result<()> {
    let n = image.layers.len();
    let mut jobs: Vec<(&Descriptor, String)> = vec![(&image.config, "config".to_string())];
    for (i, l) in image.layers.iter().enumerate() {
        jobs.push((l, format!("layer {}/{n}", i + 1)));
    }
    let style = ProgressStyle::with_template(
        "{prefix:>10} {msg:<22} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12}",
    )
    .map(|s| s.progress_chars("=> "))
    .ok();
    let say = c.say;
    futures_util::stream::iter(jobs.into_iter().map(|(d, label)| {
        let bar = match (&say.bars, &style) {
            (Some(mp), Some(style)) if label != "config" => {
                let b = mp.add(ProgressBar::new(d.size));
                b.set_style(style.clone());
                b.set_prefix(label.clone());
                b.set_message(download::short(&d.digest).to_string());
                Some(b)
            }
            _ => None,
        };
        async move { download::fetch_blob(c, store, d, &label, bar).await }
    }))
    .buffer_unordered(CONCURRENT_DOWNLOADS)
    .try_collect::<Vec<_>>()
    .await?;
    Ok(())
}

/// The config must describe as many layers as the manifest has, for the platform we wanted.
fn check_config(
    say: &Say<'_>,
    store: &Store,
    image: &ImageManifest,
    want: &Platform,
    asked: bool,
    what: &str,
) -> Result<()> {
    let path = store.blob_path(&image.config.digest)?;
    let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow!("the config of {what} is not valid JSON: {e}"))?;
    let diff_ids = v
        .pointer("/rootfs/diff_ids")
        .and_then(|d| d.as_array())
        .map_or(0, Vec::len);
    if diff_ids != image.layers.len() {
        bail!(
            "{what} is inconsistent: {} layers in its manifest but {diff_ids} diff_ids in its config",
            image.layers.len()
        );
    }
    let os = v.get("os").and_then(|s| s.as_str()).unwrap_or("");
    let arch = v.get("architecture").and_then(|s| s.as_str()).unwrap_or("");
    if !os.is_empty() && (os != want.os || arch != want.architecture) {
        let msg = format!(
            "{what} is built for {os}/{arch}, not {}/{}{}",
            want.os,
            want.architecture,
            if asked {
                ""
            } else {
                ": it may not run on this machine"
            }
        );
        if asked {
            bail!("{msg}: it has no image for the platform asked for");
        }
        say.note(&format!("warning: {msg}"));
    }
    Ok(())
}
