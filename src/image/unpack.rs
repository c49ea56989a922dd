//! Unpacking one layer (a tar, maybe gzip-compressed) into a directory.
//!
//! The tar crate's `unpack_in` refuses entries that would land outside the destination
//! (absolute paths, `..`, writing through a symlink that leaves the directory).

use anyhow::{bail, Context, Result};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io::{self, BufReader, Read};
use std::path::Path;

/// What a layer held, for the narration.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub files: usize,
    pub dirs: usize,
    pub symlinks: usize,
    pub hardlinks: usize,
    pub other: usize,
}

impl Counts {
    pub fn total(&self) -> usize {
        self.files + self.dirs + self.symlinks + self.hardlinks + self.other
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} entries: {} files, {} directories, {} symlinks, {} hardlinks, {} other",
            self.total(),
            self.files,
            self.dirs,
            self.symlinks,
            self.hardlinks,
            self.other
        )
    }
}

/// Hashes what passes through, so the uncompressed tar can be checked against its diff_id.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Unpack `blob` (of `media_type`) into the existing empty directory `dest` and check that the
/// uncompressed stream hashes to `diff_id`.
pub fn unpack_layer(blob: &Path, media_type: &str, diff_id: &str, dest: &Path) -> Result<Counts> {
    let file = fs::File::open(blob).with_context(|| format!("open layer {}", blob.display()))?;
    let reader: Box<dyn Read> = if media_type.ends_with("+gzip") || media_type.ends_with(".gzip") {
        Box::new(flate2::read::GzDecoder::new(BufReader::new(file)))
    } else if media_type.ends_with(".tar") || media_type.ends_with("tar") {
        Box::new(BufReader::new(file))
    } else {
        bail!("layer media type {media_type} is not supported yet (gzip and plain tar are)");
    };
    let mut hashing = HashingReader {
        inner: reader,
        hasher: Sha256::new(),
    };
    let mut counts = Counts::default();
    {
        let mut archive = tar::Archive::new(&mut hashing);
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        archive.set_unpack_xattrs(true);
        archive.set_overwrite(true);
        for entry in archive.entries().context("read layer tar")? {
            let mut entry = entry.context("read layer tar entry")?;
            let kind = entry.header().entry_type();
            let path = entry.path().map(|p| p.into_owned()).unwrap_or_default();
            let placed = entry
                .unpack_in(dest)
                .with_context(|| format!("unpack {}", path.display()))?;
            if !placed {
                bail!(
                    "layer entry {} would land outside the layer directory: refusing the image",
                    path.display()
                );
            }
            match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => counts.files += 1,
                tar::EntryType::Directory => counts.dirs += 1,
                tar::EntryType::Symlink => counts.symlinks += 1,
                tar::EntryType::Link => counts.hardlinks += 1,
                _ => counts.other += 1,
            }
        }
    }
    // Read to the end: the tar stops at its end-of-archive blocks, the hash needs everything.
    io::copy(&mut hashing, &mut io::sink()).context("read layer")?;
    let got = format!("sha256:{}", hex::encode(hashing.hasher.finalize()));
    if got != diff_id {
        bail!(
            "layer {} unpacks to {got}, but the image says {diff_id}",
            blob.display()
        );
    }
    Ok(counts)
}
