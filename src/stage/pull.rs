//! Stage 1, pull: get the image into the local store.
//!
//! From a registry (`alpine`, `ghcr.io/o/r:t`, `localhost:5000/x@sha256:...`) this is the OCI
//! distribution API: the manifest (choosing this machine's platform from an index), then the
//! config and layer blobs, streamed to disk and checked against their sha256 as they arrive.
//! The default image is built on this machine instead (busybox, by rootfs-fetch: no network
//! needed); `oci:DIR[:TAG]` copies an image from an OCI image layout on disk. Either way each
//! blob is checked against its digest before it enters the store, and the store is a standard
//! OCI image layout that skopeo and umoci read.

use crate::image::registry::{self, PullOptions};
use crate::image::{self, ImageInfo, Source, Store};
use crate::kernel::Kernel;
use crate::state::{Paths, Stage};
use anyhow::{anyhow, Context, Result};
use std::fs;

/// Pull with the defaults (host platform, docker's credentials): what `stepctr all` does.
pub fn run(k: &dyn Kernel, paths: &Paths, reference: &str) -> Result<ImageInfo> {
    run_with(k, paths, reference, &PullOptions::new())
}

pub fn run_with(
    k: &dyn Kernel,
    paths: &Paths,
    reference: &str,
    opts: &PullOptions,
) -> Result<ImageInfo> {
    fetch(k, paths, reference, opts, false)
}

/// What `stepctr all` does, like `docker run`: use the image in the store if it is there,
/// pull it only when it is missing (`stepctr pull` always asks the registry again).
pub fn run_if_missing(
    k: &dyn Kernel,
    paths: &Paths,
    reference: &str,
    opts: &PullOptions,
) -> Result<ImageInfo> {
    fetch(k, paths, reference, opts, true)
}

fn fetch(
    k: &dyn Kernel,
    paths: &Paths,
    reference: &str,
    opts: &PullOptions,
    if_missing: bool,
) -> Result<ImageInfo> {
    super::header(k, Stage::Pull, "get the image into the local store");
    let (source, stored) = Source::parse(reference)?;
    let store = Store::open(paths.images())?;
    if if_missing && matches!(source, Source::Registry(_)) {
        if let Some(info) = store.resolve(&stored)? {
            k.note(&format!(
                "{stored} is already in the store ({}): not asking the registry (`stepctr pull` would)",
                info.manifest_digest
            ));
            return Ok(info);
        }
    }
    let info = match source {
        Source::Default => {
            if let Some(info) = store.resolve(&stored)? {
                k.note(&format!(
                    "{stored} is already in the store ({})",
                    info.manifest_digest
                ));
                return Ok(info);
            }
            store.sweep();
            build_default(k, paths, &store)?
        }
        Source::OciLayout { dir, tag } => {
            store.sweep();
            k.note(&format!(
                "copying {} from the OCI layout {} into {}",
                tag.as_deref().unwrap_or("the image"),
                dir.display(),
                store.dir.display()
            ));
            store.import_layout(&dir, tag.as_deref(), &stored)?
        }
        Source::DockerArchive { file, reference } => {
            store.sweep();
            image::archive::import(k, &store, &file, reference.as_deref(), &stored)?
        }
        Source::Registry(r) => {
            store.sweep();
            registry::pull(k, &store, &r, &stored, opts)
                .with_context(|| format!("cannot pull {reference}"))?
        }
    };
    describe(k, &info);
    Ok(info)
}

fn build_default(k: &dyn Kernel, paths: &Paths, store: &Store) -> Result<ImageInfo> {
    let source = rootfs_fetch::detect_source().context("find binaries for the default image")?;
    k.note(&format!(
        "building the default image {} from {source} (offline, on this machine)",
        image::DEFAULT_IMAGE
    ));
    let tmp = paths
        .root
        .join(format!(".build-default-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let built = rootfs_fetch::build_default_image(&tmp, "latest")
        .map_err(|e| anyhow!("build the default image: {e}"));
    let imported =
        built.and_then(|_| store.import_layout(&tmp, Some("latest"), image::DEFAULT_IMAGE));
    let _ = fs::remove_dir_all(&tmp);
    imported
}

fn describe(k: &dyn Kernel, info: &ImageInfo) {
    k.note(&format!(
        "stored {} as manifest {}",
        info.reference, info.manifest_digest
    ));
    for (i, l) in info.layers.iter().enumerate() {
        k.note(&format!(
            "layer {}: {} ({} bytes, {})",
            i + 1,
            l.digest,
            l.size,
            l.media_type
        ));
    }
}
