//! Stage 2, load: unpack the image's layers, each once, into its own directory.
//!
//! Layers are kept by diff_id under `$STEPCTR_ROOT/layers/` and shared by every container of
//! the image: the `fs` stage stacks them read-only with overlayfs. Whiteouts become overlayfs
//! whiteouts (a character device 0/0, the xattr `trusted.overlay.opaque`), so overlayfs does
//! the deleting when it stacks them.
//!
//! Rootless (not root: [`unpack::Owners::Mine`]), the user unpacks into their own store what
//! an overlay mounted with `userxattr` in their user namespace can stack: the opaque marker is
//! `user.overlay.opaque`, files keep the user's uid (no `fchown`: only that uid is mapped, and
//! it is root inside), device nodes and `trusted.*`/`security.*` xattrs are skipped. One note
//! says how many entries that changed.
//!
//! `--flatten` instead applies every layer, in order, into one directory under
//! `$STEPCTR_ROOT/flat/<manifest digest>/` (whiteouts delete for real): the image's root
//! filesystem as one plain tree, as `umoci unpack` or `docker export` give it, good for a
//! `chroot` lesson. The `fs` stage then stacks that one directory.
//!
//! Either way each directory is unpacked into a temporary directory first and renamed into
//! place, so a crash never leaves half a layer. How a layer is unpacked, safely:
//! [`crate::image::unpack`].

use crate::image::{self, unpack, ImageInfo, Store};
use crate::kernel::{Errno, Kernel};
use crate::state::{Container, ContainerName, Paths, Resource, Stage, State};
use anyhow::{anyhow, bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// Stage 2 with the layers stacked (what `stepctr load` and `stepctr all` do).
pub fn run(
    k: &dyn Kernel,
    paths: &Paths,
    name: &ContainerName,
    reference: &str,
) -> Result<Container> {
    run_with(k, paths, name, reference, false)
}

/// Stage 2; `flatten` applies all layers into one directory instead of one per layer.
pub fn run_with(
    k: &dyn Kernel,
    paths: &Paths,
    name: &ContainerName,
    reference: &str,
    flatten: bool,
) -> Result<Container> {
    let what = if flatten {
        "apply the image's layers into one directory"
    } else {
        "unpack the image's layers"
    };
    super::header(k, Stage::Load, what);
    let reference = image::normalize(reference);
    let store = Store::open(paths.images())?;
    let info = store.resolve(&reference)?.ok_or_else(|| {
        anyhow!("image {reference} is not in the store: run `stepctr pull {reference}` first")
    })?;

    paths.prepare_run()?;
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

    let owners = unpack::Owners::detect();
    let mut skipped = Skipped::default();
    let (layers, shown) = if flatten {
        let flat = flatten_image(k, paths, &mut c, &store, &info, owners, &mut skipped)?;
        (vec![flat], paths.root.join("flat"))
    } else {
        (
            unpack_layers(k, paths, &mut c, &store, &info, owners, &mut skipped)?,
            paths.layers(),
        )
    };
    if owners == unpack::Owners::Mine && skipped.unpacked {
        k.note(&rootless_note(&skipped.counts));
    }
    c.state.layers = layers;
    c.finish(Stage::Load)?;
    k.note(&format!(
        "next: `stepctr cgroup {name}` (layers are in {})",
        shown.display()
    ));
    Ok(c)
}

/// What unpacking as an unprivileged user left out, over every layer unpacked now.
#[derive(Default)]
struct Skipped {
    /// Something was unpacked (not every layer was there already).
    unpacked: bool,
    counts: unpack::Counts,
}

impl Skipped {
    fn add(&mut self, c: &unpack::Counts) {
        self.unpacked = true;
        self.counts.add(c);
    }
}

/// The one note of a rootless load: what the layers hold differently from the image.
fn rootless_note(c: &unpack::Counts) -> String {
    let mut s = format!(
        "rootless: only your own uid is mapped into the container: {} files keep your uid instead of the image's owners (inside they all belong to root)",
        c.kept_owner
    );
    if c.skipped_devices > 0 {
        s.push_str(&format!(
            "; {} device nodes skipped (mknod needs CAP_MKNOD; /dev is a tmpfs anyway)",
            c.skipped_devices
        ));
    }
    if c.skipped_xattrs > 0 {
        s.push_str(&format!(
            "; {} trusted.*/security.* xattrs skipped (only root may set them)",
            c.skipped_xattrs
        ));
    }
    s
}

/// One directory per layer, by diff_id, unpacked only once.
fn unpack_layers(
    k: &dyn Kernel,
    paths: &Paths,
    c: &mut Container,
    store: &Store,
    info: &ImageInfo,
    owners: unpack::Owners,
    skipped: &mut Skipped,
) -> Result<Vec<PathBuf>> {
    let layers_dir = paths.layers();
    fs::create_dir_all(&layers_dir).with_context(|| format!("create {}", layers_dir.display()))?;
    let mut layers = Vec::new();
    // Leftovers of an unpacking that crashed are swept before this one unpacks (not on every
    // start: that would read the whole directory each time).
    let mut swept = false;
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
        if !std::mem::replace(&mut swept, true) {
            crate::image::store::sweep_stale_temps(&layers_dir);
        }
        let tmp = layers_dir.join(format!(".tmp-{hex}-{}", std::process::id()));
        c.journal(Resource::Dir { path: tmp.clone() })?;
        k.mkdirat(&tmp, 0o755, "unpack into a temporary directory first")?;
        let blob = store.blob_path(&layer.digest)?;
        let label = format!("unpack layer {} ({})", i + 1, short(&layer.diff_id));
        let src = unpack::LayerBlob {
            path: &blob,
            media_type: &layer.media_type,
            diff_id: &layer.diff_id,
        };
        let counts = unpack::unpack_layer(k, &src, &tmp, &label, owners)
            .with_context(|| format!("unpack layer {} ({})", i + 1, layer.digest))?;
        skipped.add(&counts);
        k.note(&format!(
            "layer {}: unpacked {counts} from {}",
            i + 1,
            blob.display()
        ));
        publish(
            k,
            &tmp,
            &dest,
            "publish the whole layer at once, under its diff_id",
        )?;
        layers.push(dest);
    }
    Ok(layers)
}

/// All layers applied into one directory, by manifest digest, made only once.
fn flatten_image(
    k: &dyn Kernel,
    paths: &Paths,
    c: &mut Container,
    store: &Store,
    info: &ImageInfo,
    owners: unpack::Owners,
    skipped: &mut Skipped,
) -> Result<PathBuf> {
    let flat_dir = paths.root.join("flat");
    fs::create_dir_all(&flat_dir).with_context(|| format!("create {}", flat_dir.display()))?;
    crate::image::store::sweep_stale_temps(&flat_dir);
    let hex = image::store::digest_hex(&info.manifest_digest)?;
    let dest = flat_dir.join(hex);
    if dest.is_dir() {
        k.note(&format!(
            "the image is already flattened at {}: shared, read-only",
            dest.display()
        ));
        return Ok(dest);
    }
    let tmp = flat_dir.join(format!(".tmp-{hex}-{}", std::process::id()));
    c.journal(Resource::Dir { path: tmp.clone() })?;
    k.mkdirat(
        &tmp,
        0o755,
        "apply the layers in a temporary directory first",
    )?;
    let counts = flatten_into(k, store, info, &tmp, owners)?;
    skipped.add(&counts);
    k.note(&format!(
        "{} layers applied in order ({counts}); whiteouts deleted what they name",
        info.layers.len()
    ));
    publish(
        k,
        &tmp,
        &dest,
        "publish the whole tree at once, under the manifest digest",
    )?;
    Ok(dest)
}

/// Rename the finished temporary directory into place; if another container got there first,
/// use theirs.
fn publish(k: &dyn Kernel, tmp: &Path, dest: &Path, why: &str) -> Result<()> {
    match k.renameat(tmp, dest, why) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.errno, Errno::EEXIST | Errno::ENOTEMPTY) => {
            let _ = fs::remove_dir_all(tmp);
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

/// Apply every layer of the image, in order, into `dest` (an empty directory): whiteouts
/// delete for real. What `load --flatten` and `stepctr bundle` share.
pub(crate) fn flatten_into(
    k: &dyn Kernel,
    store: &Store,
    info: &ImageInfo,
    dest: &Path,
    owners: unpack::Owners,
) -> Result<unpack::Counts> {
    let blobs: Vec<PathBuf> = info
        .layers
        .iter()
        .map(|l| store.blob_path(&l.digest))
        .collect::<Result<_>>()?;
    let srcs: Vec<unpack::LayerBlob<'_>> = info
        .layers
        .iter()
        .zip(&blobs)
        .map(|(l, path)| unpack::LayerBlob {
            path,
            media_type: &l.media_type,
            diff_id: &l.diff_id,
        })
        .collect();
    let label = |i: usize| {
        let l = &info.layers[i];
        format!("apply layer {} ({})", i + 1, short(&l.diff_id))
    };
    unpack::flatten(k, &srcs, dest, &label, owners).context("flatten the image")
}
