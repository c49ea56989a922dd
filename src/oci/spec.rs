//! config.json: the default runtime spec (`stepctr spec`), how stepctr writes one, and what
//! stepctr supports of the runtime spec (`stepctr features`).
//!
//! A *bundle* is a directory with two things in it: `config.json` (the OCI runtime spec: which
//! process to run, as whom, with which namespaces, mounts, limits and security) and the root
//! filesystem it names (`root.path`, usually `rootfs`). Images are what registries move around;
//! bundles are what runtimes run: containerd and podman unpack an image into a bundle, then call
//! `runc create --bundle DIR ID`.
//!
//! The lists below say what stepctr supports. `stepctr features` prints them, and the code that
//! reads config.json (`oci::config`) refuses what is not in them, so both always agree.

use anyhow::{Context, Result};
use oci_spec::runtime::{
    ApparmorBuilder, Arch, Capability, CgroupBuilder, Features, FeaturesBuilder, IDMapBuilder,
    IntelRdtBuilder, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceCgroupBuilder,
    LinuxFeatureBuilder, LinuxIdMappingBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxResourcesBuilder, LinuxSeccompAction, Mount, MountBuilder, MountExtensionsBuilder,
    PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, SeccompBuilder,
    SelinuxBuilder, Spec, SpecBuilder, UserBuilder,
};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// The `ociVersion` stepctr writes (runc 1.1's, so `runc` and older tools read it as theirs).
pub const OCI_VERSION: &str = "1.0.2-dev";
/// The oldest runtime-spec version stepctr reads.
pub const OCI_VERSION_MIN: &str = "1.0.0";
/// The newest runtime-spec version stepctr reads.
pub const OCI_VERSION_MAX: &str = "1.2.0";

/// Whether stepctr reads a config.json of `ociVersion` `v`: 1.0.x, 1.1.x and 1.2.x (with or
/// without a `-dev`/`-rc.N` suffix).
pub fn version_supported(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let mut parts = core.split('.').map(|p| p.parse::<u32>());
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(Ok(1)), Some(Ok(0..=2)), Some(Ok(_)), None)
    )
}

/// The namespaces stepctr makes (or joins by path).
pub const NAMESPACES: [LinuxNamespaceType; 7] = [
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::User,
    LinuxNamespaceType::Uts,
];

/// The hooks stepctr runs (src/oci/hooks.rs), in the spec's order, as runc lists them.
pub const HOOKS: [&str; 6] = super::hooks::KINDS;

/// One mount option of config.json's `mounts[].options` that is a mount flag, as runc reads
/// them (anything else is passed to the filesystem as data: `mode=755`, `size=65536k`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountFlag {
    pub name: &'static str,
    /// Clear the flag instead of setting it (`rw` clears MS_RDONLY).
    pub clear: bool,
    /// MS_* flags.
    pub flag: u64,
}

const fn set(name: &'static str, flag: u64) -> MountFlag {
    MountFlag {
        name,
        clear: false,
        flag,
    }
}

const fn clear(name: &'static str, flag: u64) -> MountFlag {
    MountFlag {
        name,
        clear: true,
        flag,
    }
}

// MS_NOSYMFOLLOW (Linux 5.10), which this libc does not name on every target.
const MS_NOSYMFOLLOW: u64 = 256;

/// The mount flags stepctr understands in `mounts[].options` (runc's list, less the `r*`
/// recursive attributes of mount_setattr and `tmpcopyup`, which stepctr does not do).
pub const MOUNT_FLAGS: [MountFlag; 33] = [
    clear("async", libc::MS_SYNCHRONOUS),
    clear("atime", libc::MS_NOATIME),
    set("bind", libc::MS_BIND),
    set("defaults", 0),
    clear("dev", libc::MS_NODEV),
    clear("diratime", libc::MS_NODIRATIME),
    set("dirsync", libc::MS_DIRSYNC),
    clear("exec", libc::MS_NOEXEC),
    set("iversion", libc::MS_I_VERSION),
    set("lazytime", libc::MS_LAZYTIME),
    clear("loud", libc::MS_SILENT),
    set("mand", libc::MS_MANDLOCK),
    set("noatime", libc::MS_NOATIME),
    set("nodev", libc::MS_NODEV),
    set("nodiratime", libc::MS_NODIRATIME),
    set("noexec", libc::MS_NOEXEC),
    clear("noiversion", libc::MS_I_VERSION),
    clear("nolazytime", libc::MS_LAZYTIME),
    clear("nomand", libc::MS_MANDLOCK),
    clear("norelatime", libc::MS_RELATIME),
    clear("nostrictatime", libc::MS_STRICTATIME),
    set("nosuid", libc::MS_NOSUID),
    set("nosymfollow", MS_NOSYMFOLLOW),
    set("rbind", libc::MS_BIND | libc::MS_REC),
    set("relatime", libc::MS_RELATIME),
    set("remount", libc::MS_REMOUNT),
    set("ro", libc::MS_RDONLY),
    clear("rw", libc::MS_RDONLY),
    set("silent", libc::MS_SILENT),
    set("strictatime", libc::MS_STRICTATIME),
    clear("suid", libc::MS_NOSUID),
    clear("symfollow", MS_NOSYMFOLLOW),
    set("sync", libc::MS_SYNCHRONOUS),
];

/// Propagation options of `mounts[].options` and `linux.rootfsPropagation`, with their flags.
pub const PROPAGATION: [(&str, u64); 8] = [
    ("private", libc::MS_PRIVATE),
    ("rprivate", libc::MS_PRIVATE | libc::MS_REC),
    ("shared", libc::MS_SHARED),
    ("rshared", libc::MS_SHARED | libc::MS_REC),
    ("slave", libc::MS_SLAVE),
    ("rslave", libc::MS_SLAVE | libc::MS_REC),
    ("unbindable", libc::MS_UNBINDABLE),
    ("runbindable", libc::MS_UNBINDABLE | libc::MS_REC),
];

/// A mount option's flag: `Some(flag)` for a flag (or propagation) option, `None` for
/// filesystem data (`mode=755`).
pub fn mount_flag(option: &str) -> Option<MountFlag> {
    MOUNT_FLAGS
        .iter()
        .find(|f| f.name == option)
        .copied()
        .or_else(|| {
            PROPAGATION
                .iter()
                .find(|(n, _)| *n == option)
                .map(|&(name, flag)| MountFlag {
                    name,
                    clear: false,
                    flag,
                })
        })
}

/// Every mount option name stepctr recognises (sorted, no duplicates).
pub fn mount_options() -> Vec<String> {
    let mut v: Vec<String> = MOUNT_FLAGS
        .iter()
        .map(|f| f.name)
        .chain(PROPAGATION.iter().map(|(n, _)| *n))
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The seccomp actions stepctr compiles (seccompiler's: all but SCMP_ACT_NOTIFY, which needs
/// a listener fd handed to the caller).
pub const SECCOMP_ACTIONS: [LinuxSeccompAction; 8] = [
    LinuxSeccompAction::ScmpActAllow,
    LinuxSeccompAction::ScmpActErrno,
    LinuxSeccompAction::ScmpActKill,
    LinuxSeccompAction::ScmpActKillProcess,
    LinuxSeccompAction::ScmpActKillThread,
    LinuxSeccompAction::ScmpActLog,
    LinuxSeccompAction::ScmpActTrace,
    LinuxSeccompAction::ScmpActTrap,
];

/// The argument comparisons stepctr compiles (all of the spec's).
pub const SECCOMP_OPERATORS: [&str; 7] = [
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];

/// The architectures a seccomp profile may name (`oci::seccomp`): x86_64's table is compiled;
/// i386 and x32 are accepted (docker's and podman's profiles list all three) because their
/// calls never run: the ABI check kills an i386 call and fails an x32 one with ENOSYS.
pub const SECCOMP_ARCHS: [Arch; 3] = [Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32];

/// The `linux.seccomp.flags` passed to seccomp(2) as they are.
pub const SECCOMP_FLAGS: [&str; 3] = [
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
];

/// Every capability this build knows, in the kernel's bit order, as config.json names them
/// (`CAP_CHOWN`).
pub fn capabilities() -> Vec<String> {
    let mut all: Vec<caps::Capability> = caps::all().into_iter().collect();
    all.sort_by_key(|c| c.index());
    all.iter().map(|c| c.to_string()).collect()
}

/// `stepctr features`: what stepctr supports of the runtime spec, as the spec's features.md
/// describes it (what podman and containerd ask a runtime before they use a feature).
pub fn features() -> Result<Features> {
    let flags: Vec<String> = SECCOMP_FLAGS.iter().map(|s| s.to_string()).collect();
    let seccomp = SeccompBuilder::default()
        .enabled(true)
        .actions(SECCOMP_ACTIONS.to_vec())
        .operators(
            SECCOMP_OPERATORS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .archs(SECCOMP_ARCHS.to_vec())
        .known_flags(flags.clone())
        .supported_flags(flags)
        .build()?;
    let linux = LinuxFeatureBuilder::default()
        .namespaces(NAMESPACES.to_vec())
        .capabilities(capabilities())
        .cgroup(
            CgroupBuilder::default()
                .v1(true)
                .v2(true)
                .systemd(false)
                .systemd_user(false)
                .rdma(false)
                .build()?,
        )
        .seccomp(seccomp)
        .apparmor(ApparmorBuilder::default().enabled(false).build()?)
        .selinux(SelinuxBuilder::default().enabled(false).build()?)
        .intel_rdt(IntelRdtBuilder::default().enabled(false).build()?)
        .mount_extensions(
            MountExtensionsBuilder::default()
                .idmap(IDMapBuilder::default().enabled(false).build()?)
                .build()?,
        )
        .build()?;
    let annotations = HashMap::from([(
        "io.github.stepctr.version".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    )]);
    Ok(FeaturesBuilder::default()
        .oci_version_min(OCI_VERSION_MIN)
        .oci_version_max(OCI_VERSION_MAX)
        .hooks(HOOKS.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .mount_options(mount_options())
        .linux(linux)
        .annotations(annotations)
        .potentially_unsafe_config_annotations(Vec::<String>::new())
        .build()?)
}

// ---------------------------------------------------------------------------------------------
// The default spec

/// `runc spec`'s masked paths (docker adds /sys/devices/virtual/powercap:
/// [`crate::security::paths::MASKED`]).
pub const RUNC_MASKED: [&str; 10] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

/// `runc spec`'s capabilities: the few a shell needs to do no harm.
pub const RUNC_CAPS: [Capability; 3] = [
    Capability::AuditWrite,
    Capability::Kill,
    Capability::NetBindService,
];

/// The PATH of a process whose image gives none (docker's and runc's).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    let mut b = MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source);
    if !options.is_empty() {
        b = b.options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    }
    Ok(b.build()?)
}

/// runc's default mounts: /proc, a tmpfs /dev with devpts, shm and mqueue in it, /sys and
/// the cgroup tree read-only. Rootless, /sys is bound from the host's (a user namespace may
/// not mount sysfs without its own network namespace) and devpts takes no gid=5 (not mapped).
fn default_mounts(rootless: bool) -> Result<Vec<Mount>> {
    let devpts: &[&str] = if rootless {
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
        ]
    } else {
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ]
    };
    let sys = if rootless {
        mount(
            "/sys",
            "none",
            "/sys",
            &["rbind", "nosuid", "noexec", "nodev", "ro"],
        )?
    } else {
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?
    };
    Ok(vec![
        mount("/proc", "proc", "proc", &[])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount("/dev/pts", "devpts", "devpts", devpts)?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        sys,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )?,
    ])
}

/// What `stepctr spec` writes: `runc spec`'s default (only the hostname differs): `sh` on a
/// terminal as root, three capabilities, no new privileges, 1024 open files, a read-only
/// `rootfs`, new pid, network, ipc, uts and mount namespaces, runc's mounts and masked and
/// read-only paths, and no device but the defaults. `rootless`: as `runc spec --rootless`: a
/// user namespace mapping the caller's uid and gid to root, no network namespace (a user
/// namespace cannot make a usable one alone), no cgroup limits.
pub fn default_spec(rootless: bool) -> Result<Spec> {
    let caps: oci_spec::runtime::Capabilities = RUNC_CAPS.into_iter().collect();
    let process = ProcessBuilder::default()
        .terminal(true)
        .user(UserBuilder::default().uid(0u32).gid(0u32).build()?)
        .args(vec!["sh".to_string()])
        .env(vec![DEFAULT_PATH.to_string(), "TERM=xterm".to_string()])
        .cwd("/")
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps.clone())
                .ambient(caps)
                .build()?
                // The builder starts from oci-spec's default, which has these three too.
                .set_inheritable(None)
                .clone(),
        )
        .rlimits(vec![PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .hard(1024u64)
            .soft(1024u64)
            .build()?])
        .no_new_privileges(true)
        .build()?;
    let ns = |t| LinuxNamespaceBuilder::default().typ(t).build();
    let mut linux = LinuxBuilder::default()
        .masked_paths(
            RUNC_MASKED
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .readonly_paths(
            crate::security::paths::READ_ONLY
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        );
    if rootless {
        // SAFETY: geteuid and getegid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let map = |host: u32| {
            LinuxIdMappingBuilder::default()
                .container_id(0u32)
                .host_id(host)
                .size(1u32)
                .build()
        };
        linux = linux
            .uid_mappings(vec![map(uid)?])
            .gid_mappings(vec![map(gid)?])
            .namespaces(vec![
                ns(LinuxNamespaceType::Pid)?,
                ns(LinuxNamespaceType::Ipc)?,
                ns(LinuxNamespaceType::Uts)?,
                ns(LinuxNamespaceType::Mount)?,
                ns(LinuxNamespaceType::User)?,
            ]);
    } else {
        linux = linux
            .resources(
                LinuxResourcesBuilder::default()
                    .devices(vec![LinuxDeviceCgroupBuilder::default()
                        .allow(false)
                        .access("rwm")
                        .build()?])
                    .build()?,
            )
            .namespaces(vec![
                ns(LinuxNamespaceType::Pid)?,
                ns(LinuxNamespaceType::Network)?,
                ns(LinuxNamespaceType::Ipc)?,
                ns(LinuxNamespaceType::Uts)?,
                ns(LinuxNamespaceType::Mount)?,
            ]);
    }
    let mut spec = SpecBuilder::default()
        .version(OCI_VERSION)
        .process(process)
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(true)
                .build()?,
        )
        .hostname("stepctr")
        .mounts(default_mounts(rootless)?)
        .linux({
            let mut l = linux.build()?;
            if rootless {
                // The builder starts from oci-spec's default, which has an empty resources.
                l.set_resources(None);
            }
            l
        })
        .build()?;
    spec.set_annotations(None);
    Ok(spec)
}

// ---------------------------------------------------------------------------------------------
// Writing JSON as people read it

/// The order keys are written in (runc's, which follows the spec's Go structs); other keys
/// follow, alphabetically. serde_json's maps are sorted, and oci-spec keeps capabilities in
/// hash sets: without this, every config.json would come out in a different order.
const KEY_ORDER: &[&str] = &[
    "ociVersion",
    "ociVersionMin",
    "ociVersionMax",
    "hooks",
    "mountOptions",
    "process",
    "terminal",
    "consoleSize",
    "user",
    "uid",
    "gid",
    "umask",
    "additionalGids",
    "args",
    "env",
    "cwd",
    "capabilities",
    "bounding",
    "effective",
    "inheritable",
    "permitted",
    "ambient",
    "rlimits",
    "destination",
    "type",
    "hard",
    "soft",
    "noNewPrivileges",
    "root",
    "path",
    "readonly",
    "hostname",
    "domainname",
    "mounts",
    "source",
    "options",
    "linux",
    "uidMappings",
    "gidMappings",
    "containerID",
    "hostID",
    "size",
    "sysctl",
    "resources",
    "devices",
    "allow",
    "access",
    "cgroupsPath",
    "namespaces",
    "cgroup",
    "v1",
    "v2",
    "systemd",
    "systemdUser",
    "rdma",
    "seccomp",
    "enabled",
    "actions",
    "operators",
    "archs",
    "knownFlags",
    "supportedFlags",
    "apparmor",
    "selinux",
    "intelRdt",
    "mountExtensions",
    "idmap",
    "maskedPaths",
    "readonlyPaths",
    "annotations",
];

struct Ordered<'a>(&'a Value);

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(m) => {
                let rank = |k: &str| KEY_ORDER.iter().position(|o| *o == k).unwrap_or(usize::MAX);
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort_by_key(|k| (rank(k), k.as_str()));
                let mut map = s.serialize_map(Some(keys.len()))?;
                for k in keys {
                    map.serialize_entry(k, &Ordered(&m[k.as_str()]))?;
                }
                map.end()
            }
            Value::Array(a) => s.collect_seq(a.iter().map(Ordered)),
            v => v.serialize(s),
        }
    }
}

/// Capability sets sorted by name, as runc writes them (oci-spec holds them in hash sets).
fn sort_capabilities(v: &mut Value) {
    if let Some(sets) = v
        .pointer_mut("/process/capabilities")
        .and_then(Value::as_object_mut)
    {
        for set in sets.values_mut() {
            if let Some(list) = set.as_array_mut() {
                list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
        }
    }
}

/// `value` as JSON indented with tabs, keys in runc's order, capabilities sorted: what
/// `runc spec` writes, byte for byte (no newline at the end, as runc).
pub fn to_json<T: Serialize>(value: &T) -> Result<String> {
    let mut v = serde_json::to_value(value).context("serialize to JSON")?;
    sort_capabilities(&mut v);
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    Ordered(&v)
        .serialize(&mut ser)
        .context("serialize to JSON")?;
    String::from_utf8(out).context("serialize to JSON")
}

/// Write `spec` as `path` (a new file: an existing one is an error, as runc's).
pub fn write_new(spec: &Spec, path: &Path) -> Result<()> {
    use std::io::Write as _;
    let text = to_json(spec)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow::anyhow!("File {} exists. Remove it first", path.display())
            } else {
                anyhow::anyhow!("create {}: {e}", path.display())
            }
        })?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("write {}", path.display()))
}

/// `stepctr spec [--bundle DIR] [--rootless]`: write DIR/config.json.
pub fn command(bundle: &Path, rootless: bool) -> Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        // runc's words.
        anyhow::bail!("File config.json exists. Remove it first");
    }
    write_new(&default_spec(rootless)?, &path)
}

/// `stepctr features`: the features JSON on stdout.
pub fn features_command() -> Result<()> {
    use std::io::Write as _;
    let text = to_json(&features()?)?;
    let _ = writeln!(std::io::stdout(), "{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for v in ["1.0.0", "1.0.2-dev", "1.1.0", "1.2.0", "1.2.1-rc.1"] {
            assert!(version_supported(v), "{v}");
        }
        for v in ["0.9.0", "1.3.0", "2.0.0", "1.0", "", "x"] {
            assert!(!version_supported(v), "{v}");
        }
    }

    #[test]
    fn default_spec_is_runcs() {
        let text = to_json(&default_spec(false).unwrap()).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["ociVersion"], "1.0.2-dev");
        assert_eq!(v["process"]["args"], serde_json::json!(["sh"]));
        assert_eq!(
            v["process"]["capabilities"]["bounding"],
            serde_json::json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"])
        );
        assert!(v["process"]["capabilities"].get("inheritable").is_none());
        assert_eq!(v["root"]["path"], "rootfs");
        assert_eq!(v["mounts"].as_array().unwrap().len(), 7);
        assert_eq!(v["linux"]["namespaces"].as_array().unwrap().len(), 5);
        assert_eq!(v["linux"]["maskedPaths"].as_array().unwrap().len(), 10);
        // Keys in runc's order, the same every time.
        assert!(text.find("\"ociVersion\"").unwrap() < text.find("\"process\"").unwrap());
        assert!(text.find("\"process\"").unwrap() < text.find("\"linux\"").unwrap());
        assert_eq!(text, to_json(&default_spec(false).unwrap()).unwrap());
        // And oci-spec reads it back.
        let back: Spec = serde_json::from_str(&text).unwrap();
        assert_eq!(back.hostname().as_deref(), Some("stepctr"));
    }

    #[test]
    fn rootless_spec() {
        let v = serde_json::to_value(default_spec(true).unwrap()).unwrap();
        let ns: Vec<&str> = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "ipc", "uts", "mount", "user"]);
        assert_eq!(v["linux"]["uidMappings"][0]["size"], 1);
        assert!(v["linux"].get("resources").is_none());
    }

    #[test]
    fn mount_options_table() {
        assert_eq!(mount_flag("ro").unwrap().flag, libc::MS_RDONLY);
        assert!(mount_flag("rw").unwrap().clear);
        assert_eq!(
            mount_flag("rbind").unwrap().flag,
            libc::MS_BIND | libc::MS_REC
        );
        assert_eq!(
            mount_flag("rprivate").unwrap().flag,
            libc::MS_PRIVATE | libc::MS_REC
        );
        assert_eq!(mount_flag("mode=755"), None);
        let all = mount_options();
        assert!(all.contains(&"nosuid".to_string()));
        assert!(all.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn features_json() {
        let v: Value = serde_json::from_str(&to_json(&features().unwrap()).unwrap()).unwrap();
        assert_eq!(v["ociVersionMin"], OCI_VERSION_MIN);
        assert_eq!(
            v["hooks"],
            serde_json::json!([
                "prestart",
                "createRuntime",
                "createContainer",
                "startContainer",
                "poststart",
                "poststop"
            ])
        );
        assert_eq!(v["linux"]["namespaces"].as_array().unwrap().len(), 7);
        assert_eq!(v["linux"]["capabilities"][0], "CAP_CHOWN");
        assert_eq!(v["linux"]["seccomp"]["enabled"], true);
        assert_eq!(v["linux"]["apparmor"]["enabled"], false);
        assert_eq!(v["linux"]["cgroup"]["v1"], true);
    }
}
