//! `stepctr bundle IMAGE DIR`: an OCI runtime bundle made from an image, as containerd and
//! podman make one before they call the runtime.
//!
//! An image is layers plus a config saying how to run it (entrypoint, cmd, env, working
//! directory, user). A runtime knows nothing of images: it wants a *bundle*, a directory holding
//! the root filesystem and a `config.json` that says everything. Turning one into the other is
//! load's work, done here in the open:
//!
//! - `DIR/rootfs`: every layer applied in order into one plain tree, whiteouts deleting for real
//!   (the flatten of `stepctr load --flatten`: every path resolved inside the tree, never
//!   followed out of it);
//! - `DIR/config.json`: the default spec (`stepctr spec`) with the image's process in it, as the
//!   image spec's conversion.md says: args = entrypoint + cmd, env (a PATH if the image has
//!   none), cwd = the working directory, user = the image's user (names looked up in the
//!   rootfs's /etc/passwd and /etc/group, opened inside the rootfs), no terminal, a hostname
//!   from the image's name, the image's labels and facts as `org.opencontainers.image.*`
//!   annotations; and what `stepctr run` gives every container: docker's 14 capabilities and
//!   docker's masked paths.
//!
//! `runc run -b DIR ID` and `stepctr create -b DIR ID` both run it.

use super::spec;
use crate::image::{self, unpack, ImageInfo, Store};
use crate::kernel::{Errno, Kernel};
use crate::state::{Paths, Stage};
use anyhow::{anyhow, bail, Context, Result};
use oci_spec::image::{ImageConfiguration, ImageManifest};
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilitiesBuilder, Spec};
use std::collections::HashMap;
use std::io::Read as _;
use std::os::fd::{FromRawFd as _, IntoRawFd as _};
use std::path::{Path, PathBuf};

/// `stepctr bundle IMAGE DIR`: pull IMAGE if the store lacks it, apply its layers into
/// DIR/rootfs, write DIR/config.json. DIR must not exist or be empty.
pub fn command(
    k: &dyn Kernel,
    paths: &Paths,
    image_ref: &str,
    dir: &Path,
    pull: &image::registry::PullOptions,
) -> Result<()> {
    // Checked before pulling: a mistake costs nothing.
    let made_dir = check_dir(dir)?;
    let info = crate::stage::pull::run_if_missing(k, paths, image_ref, pull)?;
    crate::stage::header(
        k,
        Stage::Load,
        &format!("apply the image's layers into {}/rootfs", dir.display()),
    );
    if made_dir {
        k.mkdirat(
            dir,
            0o700,
            "the bundle: only its owner may reach the rootfs (its setuid files stay out of reach)",
        )?;
    }
    let rootfs = dir.join("rootfs");
    if let Err(e) = k.mkdirat(&rootfs, 0o755, "the bundle's root filesystem") {
        if made_dir {
            let _ = std::fs::remove_dir(dir);
        }
        return Err(e.into());
    }
    let res = fill(k, paths, &info, dir, &rootfs);
    if res.is_err() {
        // Leave nothing half made: what was made here, and DIR if it was ours.
        let _ = std::fs::remove_dir_all(&rootfs);
        let _ = std::fs::remove_file(dir.join("config.json"));
        if made_dir {
            let _ = std::fs::remove_dir(dir);
        }
    }
    res
}

/// DIR must be missing (it is made, mode 0700) or an empty directory. True when missing.
fn check_dir(dir: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(anyhow!("{}: {e}", dir.display())),
        Ok(m) if !m.is_dir() => bail!("{} exists and is not a directory", dir.display()),
        Ok(_) => {
            let mut entries =
                std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))?;
            if entries.next().is_some() {
                bail!(
                    "{} is not empty: a bundle goes into a new or empty directory",
                    dir.display()
                );
            }
            Ok(false)
        }
    }
}

/// Apply the layers into `rootfs` (made, empty), then write DIR/config.json.
fn fill(k: &dyn Kernel, paths: &Paths, info: &ImageInfo, dir: &Path, rootfs: &Path) -> Result<()> {
    let store = Store::open(paths.images())?;
    let owners = unpack::Owners::detect();
    let counts = crate::stage::load::flatten_into(k, &store, info, rootfs, owners)?;
    k.note(&format!(
        "{} layers applied in order into {} ({counts}); whiteouts deleted what they name",
        info.layers.len(),
        rootfs.display()
    ));

    let config = image_config(&store, info)?;
    let rootless = owners == unpack::Owners::Mine;
    let spec = bundle_spec(k, info, &config, rootfs, rootless)?;
    let path = dir.join("config.json");
    spec::write_new(&spec, &path)?;
    let process = spec.process().as_ref();
    k.note(&format!(
        "wrote {}: args {:?}, cwd {}, uid {}: the image's config, as a runtime reads it",
        path.display(),
        process.and_then(|p| p.args().clone()).unwrap_or_default(),
        process
            .map(|p| p.cwd().display().to_string())
            .unwrap_or_default(),
        process.map(|p| p.user().uid()).unwrap_or(0),
    ));
    k.note(&format!(
        "run it: `runc run -b {0} ID`, or `stepctr create -b {0} ID` then `stepctr start ID`",
        dir.display()
    ));
    Ok(())
}

/// The image's config blob, through its manifest.
fn image_config(store: &Store, info: &ImageInfo) -> Result<ImageConfiguration> {
    let manifest = ImageManifest::from_file(store.blob_path(&info.manifest_digest)?)
        .with_context(|| format!("read the manifest of {}", info.reference))?;
    let digest = manifest.config().digest().to_string();
    ImageConfiguration::from_file(store.blob_path(&digest)?)
        .with_context(|| format!("read the config of {}", info.reference))
}

/// The default spec with the image's process in it (see the module's documentation).
pub fn bundle_spec(
    k: &dyn Kernel,
    info: &ImageInfo,
    config: &ImageConfiguration,
    rootfs: &Path,
    rootless: bool,
) -> Result<Spec> {
    let mut s = spec::default_spec(rootless)?;
    let run = &info.config;
    let c = config.config().clone().unwrap_or_default();

    let mut args: Vec<String> = run.entrypoint.iter().chain(&run.cmd).cloned().collect();
    if args.is_empty() {
        k.note("the image has no entrypoint and no cmd: process.args stays `sh`, edit it");
        args = vec!["sh".to_string()];
    }
    let mut env = run.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, spec::DEFAULT_PATH.to_string());
    }
    let cwd = if run.workdir.is_empty() {
        "/".to_string()
    } else {
        run.workdir.clone()
    };
    let user = match c.user().as_deref().filter(|u| !u.is_empty()) {
        None => None,
        Some(u) => Some(image_user(k, u, rootfs)?),
    };
    let docker: Capabilities = crate::security::caps::DOCKER_DEFAULT
        .iter()
        .map(|c| {
            // oci-spec parses names without their CAP_ prefix.
            c.to_string()
                .trim_start_matches("CAP_")
                .parse::<Capability>()
                .map_err(|_| anyhow!("capability {c} unknown to oci-spec"))
        })
        .collect::<Result<_>>()?;

    let mut process = s.process().clone().unwrap_or_default();
    process.set_terminal(Some(false));
    process.set_args(Some(args));
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(cwd));
    if let Some(ids) = user {
        let mut u = process.user().clone();
        u.set_uid(ids.uid);
        u.set_gid(ids.gid);
        let extra: Vec<u32> = ids.groups.into_iter().filter(|g| *g != ids.gid).collect();
        u.set_additional_gids((!extra.is_empty()).then_some(extra));
        process.set_user(u);
    }
    process.set_capabilities(Some(
        LinuxCapabilitiesBuilder::default()
            .bounding(docker.clone())
            .effective(docker.clone())
            .permitted(docker)
            .build()?
            // As docker: no inheritable or ambient capabilities (the builder's default has some).
            .set_inheritable(None)
            .set_ambient(None)
            .clone(),
    ));
    s.set_process(Some(process));
    s.set_hostname(Some(hostname_of(&info.reference)));
    if let Some(linux) = s.linux_mut() {
        linux.set_masked_paths(Some(
            crate::security::paths::MASKED
                .iter()
                .map(|p| p.to_string())
                .collect(),
        ));
    }
    s.set_annotations(Some(annotations(info, config)));
    Ok(s)
}

/// The image's `User` (`uid`, `uid:gid`, `name`, `name:group`), resolved as docker does against
/// the rootfs's /etc/passwd and /etc/group.
fn image_user(k: &dyn Kernel, user: &str, rootfs: &Path) -> Result<crate::exec::Ids> {
    let passwd = read_in_root(k, rootfs, "etc/passwd")?;
    let group = read_in_root(k, rootfs, "etc/group")?;
    crate::exec::resolve_user(user, &passwd, &group)
        .with_context(|| format!("the image's user {user:?}"))
}

/// A file of the rootfs ("" when missing), opened with RESOLVE_IN_ROOT: an /etc/passwd that is
/// a symlink to /etc/passwd reads the rootfs's own, never the host's.
fn read_in_root(k: &dyn Kernel, rootfs: &Path, name: &str) -> Result<String> {
    let root = k.openat(
        rootfs,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        0,
        "the rootfs: the account files are looked up inside it",
    )?;
    let fd = k.openat2(
        root,
        Path::new(name),
        libc::O_RDONLY | libc::O_CLOEXEC,
        0,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
        "the image's account file, resolved inside the rootfs",
    );
    let _ = k.close(root);
    let fd = match fd {
        Ok(fd) => fd,
        Err(e) if e.errno == Errno::ENOENT => return Ok(String::new()),
        Err(e) => return Err(e.into()),
    };
    // SAFETY: the fd was just opened by us; the File gives it back before closing.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut text = Vec::new();
    let read = f.read_to_end(&mut text);
    k.close(f.into_raw_fd())?;
    read.with_context(|| format!("read {name} in {}", rootfs.display()))?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// A hostname from an image reference: `localhost/stepctr-busybox:latest` → `stepctr-busybox`.
pub fn hostname_of(reference: &str) -> String {
    let no_digest = reference.split('@').next().unwrap_or(reference);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    let name = last.split(':').next().unwrap_or(last);
    let mut h: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    h.truncate(63);
    let h = h.trim_matches('-');
    if h.is_empty() {
        "stepctr".to_string()
    } else {
        h.to_string()
    }
}

/// The image spec's conversion (conversion.md): the config's facts as
/// `org.opencontainers.image.*` annotations, and its labels as they are.
fn annotations(info: &ImageInfo, config: &ImageConfiguration) -> HashMap<String, String> {
    const P: &str = "org.opencontainers.image.";
    let mut a: HashMap<String, String> = HashMap::new();
    let c = config.config().clone().unwrap_or_default();
    if let Some(labels) = c.labels() {
        a.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let mut put = |key: &str, value: Option<String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            a.insert(format!("{P}{key}"), v);
        }
    };
    put("ref.name", Some(info.reference.clone()));
    put("os", Some(config.os().to_string()));
    put("architecture", Some(config.architecture().to_string()));
    put("variant", config.variant().clone());
    put("os.version", config.os_version().clone());
    put(
        "os.features",
        config.os_features().as_ref().map(|f| f.join(",")),
    );
    put("author", config.author().clone());
    put("created", config.created().clone());
    put("stopSignal", c.stop_signal().clone());
    put(
        "exposedPorts",
        c.exposed_ports().as_ref().map(|p| p.join(",")),
    );
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        assert_eq!(
            hostname_of("localhost/stepctr-busybox:latest"),
            "stepctr-busybox"
        );
        assert_eq!(hostname_of("docker.io/library/alpine:3.19"), "alpine");
        assert_eq!(hostname_of("localhost:5000/a/B_c@sha256:00"), "b-c");
        assert_eq!(hostname_of("___"), "stepctr");
    }
}
