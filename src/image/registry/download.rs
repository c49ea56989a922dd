//! One blob from the registry into the store: streamed into a temporary file with its sha256
//! computed as the bytes arrive, moved into `blobs/sha256/` only once the digest matches. A
//! connection cut in the middle resumes with a `Range` request when the server honours it (it
//! answers 206), and starts over otherwise.

use super::client::{backoff, short_error, status_line, Client, MAX_ATTEMPTS};
use super::manifest::Descriptor;
use super::{human, Say};
use crate::image::store::{digest_hex, Store};
use anyhow::{anyhow, bail, Result};
use indicatif::ProgressBar;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::path::PathBuf;
use std::time::Instant;

/// Writes are gathered into chunks this big (fewer write calls, little memory).
const WRITE_BUF: usize = 256 << 10;

/// A blob being downloaded: the temporary file, removed unless it was published.
struct TempBlob<'a> {
    say: &'a Say<'a>,
    path: PathBuf,
    out: Option<BufWriter<File>>,
}

impl<'a> TempBlob<'a> {
    fn create(say: &'a Say<'a>, path: PathBuf, why: &str) -> Result<TempBlob<'a>> {
        let fd = say.sys(|k| {
            k.openat(
                &path,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                0o644,
                why,
            )
        })?;
        // SAFETY: the fd was just opened by us and nothing else owns it.
        let file = unsafe { File::from_raw_fd(fd) };
        Ok(TempBlob {
            say,
            path,
            out: Some(BufWriter::with_capacity(WRITE_BUF, file)),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| anyhow!("temporary file closed"))?;
        out.write_all(bytes)
            .map_err(|e| anyhow!("write {}: {e}", self.path.display()))
    }

    /// Throw away what was written (the server did not resume where we asked).
    fn restart(&mut self) -> Result<()> {
        let out = self
            .out
            .take()
            .ok_or_else(|| anyhow!("temporary file closed"))?;
        // Drop what is still in the buffer (flushing it now would write old bytes at the
        // start of the new download), then empty the file.
        let (mut f, _old_bytes) = out.into_parts();
        f.set_len(0)
            .and_then(|_| f.rewind())
            .map_err(|e| anyhow!("truncate {}: {e}", self.path.display()))?;
        self.out = Some(BufWriter::with_capacity(WRITE_BUF, f));
        Ok(())
    }

    /// Flush and fsync (the blob must be on disk before its name is), close, and rename into
    /// place.
    fn publish(mut self, dest: &std::path::Path, expected_len: u64) -> Result<()> {
        let out = self
            .out
            .take()
            .ok_or_else(|| anyhow!("temporary file closed"))?;
        let file = out
            .into_inner()
            .map_err(|e| anyhow!("write {}: {}", self.path.display(), e.error()))?;
        file.sync_all()
            .map_err(|e| anyhow!("fsync {}: {e}", self.path.display()))?;
        // The digest was computed over the bytes as they arrived; the file must hold exactly
        // those bytes (a cheap guard against a write-side mistake).
        let on_disk = file
            .metadata()
            .map_err(|e| anyhow!("stat {}: {e}", self.path.display()))?
            .len();
        if on_disk != expected_len {
            bail!(
                "{} holds {on_disk} bytes, {expected_len} were verified: not publishing it",
                self.path.display()
            );
        }
        let fd = file.into_raw_fd();
        self.say.sys(|k| k.close(fd))?;
        self.say.sys(|k| {
            k.renameat(
                &self.path,
                dest,
                "the digest matches: publish the blob under its name, all at once",
            )
        })?;
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for TempBlob<'_> {
    fn drop(&mut self) {
        if let Some(out) = self.out.take() {
            if let Ok(file) = out.into_inner() {
                let fd = file.into_raw_fd();
                let _ = self.say.sys(|k| k.close(fd));
            }
        }
        if !self.path.as_os_str().is_empty() {
            let path = std::mem::take(&mut self.path);
            let _ = self
                .say
                .sys(|k| k.unlinkat(&path, 0, "remove the unfinished download"));
        }
    }
}

/// What became of one blob.
pub enum Outcome {
    /// It was in the store already: not downloaded again.
    Reused,
    /// Downloaded and verified.
    Downloaded,
}

/// Download the blob `d` into the store (unless it is there). `label` names it in the
/// narration (`layer 2/4`).
pub async fn fetch_blob(
    c: &Client<'_>,
    store: &Store,
    d: &Descriptor,
    label: &str,
    bar: Option<ProgressBar>,
) -> Result<Outcome> {
    let say = c.say;
    let hex = digest_hex(&d.digest)?;
    let dest = store.blob_path(&d.digest)?;
    if dest.exists() {
        if let Some(b) = &bar {
            b.finish_with_message("already in the store");
        }
        say.note(&format!(
            "{label} {}: already in the store, reused (not downloaded)",
            short(&d.digest)
        ));
        return Ok(Outcome::Reused);
    }
    let tmp_path = store
        .dir
        .join("blobs/sha256")
        .join(format!(".tmp-{hex}-{}", std::process::id()));
    if bar.is_none() {
        say.note(&format!(
            "{label} {}: downloading {}",
            short(&d.digest),
            human(d.size)
        ));
    }
    let url = c.url("blobs", &d.digest)?;
    // Created when the first answer arrives.
    let mut tmp: Option<TempBlob> = None;
    let mut hasher = Sha256::new();
    let mut written: u64 = 0;
    let mut attempt = 0;
    let start = Instant::now();
    loop {
        attempt += 1;
        let mut headers = HeaderMap::new();
        let why = if written > 0 {
            let range = format!("bytes={written}-");
            headers.insert(RANGE, HeaderValue::from_str(&range)?);
            format!("resume {label} at byte {written} ({range})")
        } else if attempt > 1 {
            format!("download {label} again")
        } else {
            format!("download {label}")
        };
        let resp = c.get(url.clone(), headers, &why).await?;
        let status = resp.status();
        if written > 0 {
            let resumed = status == StatusCode::PARTIAL_CONTENT
                && resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with(&format!("bytes {written}-")));
            if resumed {
                say.note(&format!(
                    "{label}: the server resumed at byte {written} (206 Partial Content)"
                ));
            } else if status == StatusCode::OK || status == StatusCode::PARTIAL_CONTENT {
                say.note(&format!(
                    "{label}: the server did not resume at byte {written} ({}): starting over",
                    status_line(status)
                ));
                if let Some(t) = &mut tmp {
                    t.restart()?;
                }
                hasher = Sha256::new();
                written = 0;
                if let Some(b) = &bar {
                    b.set_position(0);
                }
                if status == StatusCode::PARTIAL_CONTENT {
                    // Some other range: of no use. Ask for the whole blob.
                    drop(resp);
                    if attempt >= MAX_ATTEMPTS {
                        bail!(
                            "{label} {}: the server sends the wrong byte ranges",
                            d.digest
                        );
                    }
                    continue;
                }
            }
        }
        if !(status == StatusCode::OK || (status == StatusCode::PARTIAL_CONTENT && written > 0)) {
            let body = super::client::read_limited(resp, 4096)
                .await
                .unwrap_or_default();
            let why = super::client::registry_message(&body)
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            bail!(
                "GET {url} ({label} of {}): {}{why}",
                c.repo,
                status_line(status)
            );
        }
        let tmp = match &mut tmp {
            Some(t) => t,
            None => tmp.insert(TempBlob::create(
                say,
                tmp_path.clone(),
                "stream it into a temporary file: it gets the blob's name only once its digest matches",
            )?),
        };
        let mut resp = resp;
        let mut cut: Option<String> = None;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if written + chunk.len() as u64 > d.size {
                        bail!(
                            "{label} {} is longer than the {} bytes its manifest says: refusing it",
                            d.digest,
                            d.size
                        );
                    }
                    hasher.update(&chunk);
                    tmp.write(&chunk)?;
                    written += chunk.len() as u64;
                    if let Some(b) = &bar {
                        b.set_position(written);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    cut = Some(short_error(&e));
                    break;
                }
            }
        }
        if written == d.size {
            break;
        }
        let what = cut.unwrap_or_else(|| "the answer ended early".to_string());
        if attempt >= MAX_ATTEMPTS {
            bail!(
                "{label} {} was cut short: got {written} of {} bytes ({what}); gave up after \
                 {attempt} attempts",
                d.digest,
                d.size
            );
        }
        let wait = backoff(attempt);
        say.note(&format!(
            "{label}: connection lost after {written} of {} bytes ({what}): resuming in {:.2} s",
            d.size,
            wait.as_secs_f64()
        ));
        tokio::time::sleep(wait).await;
    }
    let got = format!("sha256:{}", hex::encode(hasher.finalize()));
    if got != d.digest {
        if let Some(b) = &bar {
            b.abandon_with_message("digest mismatch");
        }
        bail!(
            "{label} from {url} has digest {got}, not {}: refusing it (nothing was stored); the \
             registry or something between us serves corrupt data",
            d.digest
        );
    }
    tmp.ok_or_else(|| anyhow!("internal error: {label} was never written"))?
        .publish(&dest, d.size)?;
    if let Some(b) = &bar {
        b.finish_with_message("verified");
    }
    let secs = start.elapsed().as_secs_f64();
    say.note(&format!(
        "{label} {}: {} in {secs:.2} s, sha256 verified",
        short(&d.digest),
        human(d.size)
    ));
    Ok(Outcome::Downloaded)
}

/// Write a blob we already hold in memory (a manifest) into the store the same way.
pub fn store_bytes(say: &Say<'_>, store: &Store, digest: &str, bytes: &[u8]) -> Result<()> {
    let got = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    if got != digest {
        bail!("internal error: blob {digest} has digest {got}");
    }
    let dest = store.blob_path(digest)?;
    if dest.exists() {
        return Ok(());
    }
    let tmp_path = store.dir.join("blobs/sha256").join(format!(
        ".tmp-{}-{}",
        digest_hex(digest)?,
        std::process::id()
    ));
    let mut tmp = TempBlob::create(say, tmp_path, "write the manifest into a temporary file")?;
    tmp.write(bytes)?;
    tmp.publish(&dest, bytes.len() as u64)
}

/// `sha256:0123456789ab`: enough of a digest to tell blobs apart in the narration.
pub fn short(digest: &str) -> &str {
    let end = digest.find(':').map_or(0, |i| i + 13).min(digest.len());
    &digest[..end]
}
