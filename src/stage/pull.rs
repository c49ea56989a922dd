//! Stage 1, pull: get the image into the local store.
//!
//! For the default image this means building it on this machine (busybox, by rootfs-fetch:
//! no network needed); `oci:DIR[:TAG]` copies an image from an OCI image layout on disk.
//! Each blob is checked against its sha256 digest before it enters the store.

use crate::image::{self, ImageInfo, Source, Store};
use crate::kernel::Kernel;
use crate::state::{Paths, Stage};
use anyhow::{anyhow, Context, Result};
use std::fs;

pub fn run(k: &dyn Kernel, paths: &Paths, reference: &str) -> Result<ImageInfo> {
    super::header(k, Stage::Pull, "get the image into the local store");
    let (source, stored) = Source::parse(reference).ok_or_else(|| {
        anyhow!(
            "cannot pull {reference}: registries are not supported yet; use the default image \
             (no argument) or a local OCI layout as oci:DIR[:TAG]"
        )
    })?;
    let store = Store::open(paths.images())?;
    let info = match source {
        Source::Default => {
            if let Some(info) = store.resolve(&stored)? {
                k.note(&format!(
                    "{stored} is already in the store ({})",
                    info.manifest_digest
                ));
                return Ok(info);
            }
            build_default(k, paths, &store)?
        }
        Source::OciLayout { dir, tag } => {
            k.note(&format!(
                "copying {} from the OCI layout {} into {}",
                tag.as_deref().unwrap_or("the image"),
                dir.display(),
                store.dir.display()
            ));
            store.import_layout(&dir, tag.as_deref(), &stored)?
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
