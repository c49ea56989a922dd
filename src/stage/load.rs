//! Stage 2, load: unpack the image's layers, each once, into its own directory.
//!
//! Layers are kept by diff_id under `$STEPCTR_ROOT/layers/` and shared by every container of
//! the image: the `fs` stage stacks them read-only with overlayfs. Each layer is unpacked into
//! a temporary directory first and renamed into place, so a crash never leaves half a layer.

use crate::image::{self, unpack, Store};
use crate::kernel::{Errno, Kernel};
use crate::state::{Container, ContainerName, Paths, Resource, Stage, State};
use anyhow::{anyhow, bail, Context, Result};
use std::fs;

pub fn run(
    k: &dyn Kernel,
    paths: &Paths,
    name: &ContainerName,
    reference: &str,
) -> Result<Container> {
    super::header(k, Stage::Load, "unpack the image's layers");
    let reference = image::normalize(reference);
    let store = Store::open(paths.images())?;
    let info = store.resolve(&reference)?.ok_or_else(|| {
        anyhow!("image {reference} is not in the store: run `stepctr pull {reference}` first")
    })?;

    fs::create_dir_all(&paths.run).with_context(|| format!("create {}", paths.run.display()))?;
    let dir = paths.container(name);
    match k.mkdirat(&dir, 0o700, "the container's state directory") {
        Ok(()) => {}
        Err(e) if e.errno == Errno::EEXIST => {
            bail!("a container named {name} already exists: remove it with `stepctr rm {name}` or pick another name")
        }
        Err(e) => return Err(e.into()),
    }
    let mut c = Container::adopt(
        paths,
        name,
        State {
            name: name.to_string(),
            image: info.reference.clone(),
            image_digest: info.manifest_digest.clone(),
            config: info.config.clone(),
            ..State::default()
        },
    )?;

    let layers_dir = paths.layers();
    fs::create_dir_all(&layers_dir).with_context(|| format!("create {}", layers_dir.display()))?;
    crate::image::store::sweep_stale_temps(&layers_dir);
    let mut layers = Vec::new();
    for (i, layer) in info.layers.iter().enumerate() {
        let hex = image::store::digest_hex(&layer.diff_id)?;
        let dest = layers_dir.join(hex);
        if dest.is_dir() {
            k.note(&format!(
                "layer {} ({}) is already unpacked at {}: layers are shared, read-only",
                i + 1,
                short(&layer.diff_id),
                dest.display()
            ));
            layers.push(dest);
            continue;
        }
        let tmp = layers_dir.join(format!(".tmp-{hex}-{}", std::process::id()));
        c.journal(Resource::Dir { path: tmp.clone() })?;
        k.mkdirat(&tmp, 0o755, "unpack into a temporary directory first")?;
        let blob = store.blob_path(&layer.digest)?;
        let counts = unpack::unpack_layer(&blob, &layer.media_type, &layer.diff_id, &tmp)
            .with_context(|| format!("unpack layer {}", layer.digest))?;
        k.note(&format!(
            "layer {}: unpacked {counts} from {}",
            i + 1,
            blob.display()
        ));
        match k.renameat(
            &tmp,
            &dest,
            "publish the whole layer at once, under its diff_id",
        ) {
            Ok(()) => {}
            // Another container unpacked the same layer meanwhile: use theirs.
            Err(e) if matches!(e.errno, Errno::EEXIST | Errno::ENOTEMPTY) => {
                let _ = fs::remove_dir_all(&tmp);
            }
            Err(e) => return Err(e.into()),
        }
        layers.push(dest);
    }
    c.state.layers = layers;
    c.finish(Stage::Load)?;
    k.note(&format!(
        "next: `stepctr cgroup {name}` (layers are in {})",
        layers_dir.display()
    ));
    Ok(c)
}

fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}
