//! Where stepctr keeps things, and what each container has done so far.
//!
//! - `$STEPCTR_ROOT` (default `/var/lib/stepctr`): the image store (`images/`, an OCI image
//!   layout) and unpacked layers (`layers/<diff_id hex>/`), shared by all containers.
//! - `$STEPCTR_RUN` (default `/run/stepctr`): one directory per container with `state.json`,
//!   `ns/` (namespace files), the writable layer (`upper/`, `work/`) and the mount point `rootfs/`.
//!
//! `state.json` holds the stages done and the *journal*: every resource a stage is about to
//! create is written down before it is created, so `rm` can undo exactly that, even after a
//! crash in the middle of a stage.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The two roots.
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
    pub run: PathBuf,
}

impl Paths {
    /// `$STEPCTR_ROOT` and `$STEPCTR_RUN` if set; else root's `/var/lib/stepctr` and
    /// `/run/stepctr`, and for any other user a store of their own, as podman's: their images
    /// are theirs (`$XDG_DATA_HOME/stepctr` or `~/.local/share/stepctr`, and
    /// `$XDG_RUNTIME_DIR/stepctr` or `/tmp/stepctr-UID` for run-time state).
    pub fn from_env() -> Paths {
        let env = |var: &str| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        if crate::kernel::host::is_root() {
            return Paths {
                root: env("STEPCTR_ROOT").unwrap_or_else(|| PathBuf::from("/var/lib/stepctr")),
                run: env("STEPCTR_RUN").unwrap_or_else(|| PathBuf::from("/run/stepctr")),
            };
        }
        Paths::for_user(
            env("STEPCTR_ROOT"),
            env("STEPCTR_RUN"),
            env("XDG_DATA_HOME"),
            env("HOME"),
            env("XDG_RUNTIME_DIR"),
            crate::kernel::host::uid(),
        )
    }

    /// The defaults of a user who is not root (see [`Paths::from_env`]).
    pub fn for_user(
        root: Option<PathBuf>,
        run: Option<PathBuf>,
        data_home: Option<PathBuf>,
        home: Option<PathBuf>,
        runtime_dir: Option<PathBuf>,
        uid: u32,
    ) -> Paths {
        let root = root.unwrap_or_else(|| match (data_home, home) {
            (Some(d), _) => d.join("stepctr"),
            (None, Some(h)) => h.join(".local/share/stepctr"),
            (None, None) => PathBuf::from(format!("/tmp/stepctr-{uid}/store")),
        });
        let run = run.unwrap_or_else(|| match runtime_dir {
            Some(r) => r.join("stepctr"),
            None => PathBuf::from(format!("/tmp/stepctr-{uid}/run")),
        });
        Paths { root, run }
    }

    /// Make the run directory if missing (0700), and refuse one that someone else could
    /// tamper with: state.json says what `rm` deletes and which processes it kills, so a run
    /// directory another user can replace (a /tmp/stepctr-UID made first by someone else, or
    /// a symlink there) would hand them our rm. Every directory on the way must be ours or
    /// root's, and none writable by others unless sticky (like /tmp).
    pub fn prepare_run(&self) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        // Checked before anything is made in such a place, and again once it exists.
        self.check_run(true)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.run)
            .with_context(|| format!("create {}", self.run.display()))?;
        self.check_run(false)
    }

    fn check_run(&self, missing_ok: bool) -> Result<()> {
        let me = crate::kernel::host::uid();
        for dir in self.run.ancestors() {
            let m = match fs::symlink_metadata(dir) {
                Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => continue,
                m => m.with_context(|| format!("inspect {}", dir.display()))?,
            };
            if let Some(why) = untrusted(&m, me) {
                bail!(
                    "refusing the run directory {}: {} {why} (another user could tamper with container state there); set STEPCTR_RUN to a directory of your own",
                    self.run.display(),
                    dir.display()
                );
            }
        }
        Ok(())
    }

    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    pub fn layers(&self) -> PathBuf {
        self.root.join("layers")
    }

    pub fn container(&self, name: &ContainerName) -> PathBuf {
        self.run.join(name.as_str())
    }
}

/// Why a directory on the way to the run directory cannot be trusted by uid `me`, if it cannot.
fn untrusted(m: &fs::Metadata, me: u32) -> Option<String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mode = m.permissions().mode();
    if m.uid() != me && m.uid() != 0 {
        return Some(format!("belongs to uid {}", m.uid()));
    }
    if m.file_type().is_symlink() && m.uid() != 0 {
        return Some("is a symlink".to_string());
    }
    if mode & 0o002 != 0 && mode & 0o1000 == 0 && !m.file_type().is_symlink() {
        return Some("is writable by everyone".to_string());
    }
    None
}

/// A container's name: what `--name` and the stage commands take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerName(String);

impl ContainerName {
    /// Names are 1-64 characters of `[a-zA-Z0-9_.-]`, starting with a letter or digit (as
    /// docker's), so a name is always a safe path component and a safe hostname.
    pub fn parse(s: &str) -> Result<ContainerName> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            bail!("invalid container name {s:?}: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit");
        }
        Ok(ContainerName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The six stages, in the order `docker run` does them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Pull,
    Load,
    Cgroup,
    Ns,
    Fs,
    Start,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Pull,
        Stage::Load,
        Stage::Cgroup,
        Stage::Ns,
        Stage::Fs,
        Stage::Start,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Pull => "pull",
            Stage::Load => "load",
            Stage::Cgroup => "cgroup",
            Stage::Ns => "ns",
            Stage::Fs => "fs",
            Stage::Start => "start",
        }
    }

    /// 1-based position, for headers like `[3/6]`.
    pub fn number(self) -> usize {
        Stage::ALL.iter().position(|s| *s == self).unwrap_or(0) + 1
    }

    pub fn previous(self) -> Option<Stage> {
        let i = self.number() - 1;
        (i > 0).then(|| Stage::ALL[i - 1])
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One thing a stage created that `rm` must undo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    /// A mount in the host's mount namespace (unmounted with MNT_DETACH).
    Mount { path: PathBuf },
    /// A mount inside the container's mount namespace: it goes when the namespace goes.
    NsMount { path: PathBuf },
    /// A cgroup directory (removed once empty).
    Cgroup { path: PathBuf },
    /// A cgroup we created as the parent of container cgroups (removed if no longer used).
    CgroupParent { path: PathBuf },
    /// A directory we created (removed with its contents).
    Dir { path: PathBuf },
    /// A file we created.
    File { path: PathBuf },
    /// A process (killed if it still runs and is still the same process).
    Process { pid: i32, start_time: u64 },
    /// A network interface of the host's (a veth's host end): deleted (RTM_DELLINK).
    Link { name: String },
    /// The bridge the container was attached to: deleted once no interface is attached to it.
    Bridge { name: String },
}

/// The image-config fields a container needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CgroupState {
    /// "v1" (also hybrid) or "v2".
    pub version: String,
    /// The container's cgroup directories: one per v1 controller, or one on v2.
    pub dirs: Vec<PathBuf>,
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    /// CPU quota in microseconds per 100 ms period (`--cpus 0.5` is 50000).
    #[serde(default)]
    pub cpu_quota: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub name: String,
    pub image: String,
    pub image_digest: String,
    pub stages: Vec<Stage>,
    /// Unpacked layer directories, bottom first.
    pub layers: Vec<PathBuf>,
    pub config: RunConfig,
    pub cgroup: Option<CgroupState>,
    /// The directory holding the namespace files (`ns/mnt`, `ns/pid`, ...).
    pub ns_dir: Option<PathBuf>,
    pub rootfs: Option<PathBuf>,
    pub pid: Option<i32>,
    pub exit_code: Option<i32>,
    /// The volumes (`-v HOST:CTR[:ro]`) the fs stage bind-mounted; their host data outlives `rm`.
    #[serde(default)]
    pub volumes: Vec<crate::volume::Volume>,
    /// PID 1 was killed by the kernel's OOM killer (the memory limit was hit), as docker's
    /// `State.OOMKilled`.
    #[serde(default)]
    pub oom_killed: bool,
    /// The shim that parents PID 1 (see `shim.rs`): its pid and start time.
    #[serde(default)]
    pub shim: Option<(i32, u64)>,
    /// When PID 1 ended, in seconds since the epoch.
    #[serde(default)]
    pub finished_at: Option<u64>,
    /// How the container's processes are hardened (chosen at `start`; `exec` applies it too).
    #[serde(default)]
    pub security: crate::security::Profile,
    /// Rootless: the user namespace the container lives in, and who holds it (`crate::userns`).
    #[serde(default)]
    pub userns: Option<crate::userns::UserNs>,
    /// The container's network (`--network`; see `crate::net::link`).
    #[serde(default)]
    pub network: Option<crate::net::link::NetState>,
    /// `-p`: the ports published on the host.
    #[serde(default)]
    pub ports: Vec<crate::net::proxy::Publish>,
    /// An OCI container (`stepctr create`, see `crate::oci`): its bundle, what `state` shows.
    #[serde(default)]
    pub oci: Option<crate::oci::lifecycle::OciState>,
    pub journal: Vec<Resource>,
}

impl State {
    pub fn done(&self, stage: Stage) -> bool {
        self.stages.contains(&stage)
    }
}

/// An open, locked container directory. The lock (flock on the directory) is held until drop,
/// so two commands on one container run one after the other; different containers never block.
pub struct Container {
    pub name: ContainerName,
    pub dir: PathBuf,
    pub state: State,
    lock: Option<Lock>,
}

/// A held flock; child processes close their copy (see `kernel::not_for_children`).
pub struct Lock(fs::File);

impl Drop for Lock {
    fn drop(&mut self) {
        crate::kernel::forget_not_for_children(self.0.as_raw_fd());
    }
}

/// flock(LOCK_EX) on a directory (or any file: only its open file matters), held until the
/// Lock is dropped; child processes close their copy.
pub fn lock_dir(dir: &Path) -> Result<Lock> {
    let f = fs::File::open(dir).with_context(|| format!("open {}", dir.display()))?;
    crate::kernel::host::lock_exclusive(&f).with_context(|| format!("lock {}", dir.display()))?;
    crate::kernel::not_for_children(f.as_raw_fd());
    Ok(Lock(f))
}

impl Container {
    /// Open an existing container.
    pub fn open(paths: &Paths, name: &ContainerName) -> Result<Container> {
        let dir = paths.container(name);
        if !dir.is_dir() {
            bail!("no container named {name}: create one with `stepctr load {name}` (or run `stepctr all --name {name}`)");
        }
        let lock = lock_dir(&dir)?;
        let file = dir.join("state.json");
        let state = match fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("read {}: not valid container state", file.display()))?,
            // A crash right after the directory was made leaves it without state: an empty
            // state lets `rm` clean it up.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State {
                name: name.to_string(),
                ..State::default()
            },
            Err(e) => return Err(e).with_context(|| format!("read {}", file.display())),
        };
        Ok(Container {
            name: name.clone(),
            dir,
            state,
            lock: Some(lock),
        })
    }

    /// Lock a directory that was just created for a new container. state.json is written by
    /// the first journal entry or finished stage: until then there is nothing to undo but the
    /// directory, and a directory without state.json is one `rm` cleans up.
    pub fn adopt(paths: &Paths, name: &ContainerName, state: State) -> Result<Container> {
        let dir = paths.container(name);
        let lock = lock_dir(&dir)?;
        Ok(Container {
            name: name.clone(),
            dir,
            state,
            lock: Some(lock),
        })
    }

    /// Write state.json atomically (temp file + rename), so a crash never leaves half a file.
    pub fn save(&self) -> Result<()> {
        let file = self.dir.join("state.json");
        let tmp = self.dir.join(".state.json.tmp");
        let bytes = serde_json::to_vec_pretty(&self.state)?;
        fs::write(&tmp, bytes).with_context(|| format!("write {}", tmp.display()))?;
        fs::rename(&tmp, &file).with_context(|| format!("write {}", file.display()))?;
        Ok(())
    }

    /// Write down a resource *before* creating it.
    pub fn journal(&mut self, r: Resource) -> Result<()> {
        self.journal_all([r])
    }

    /// Write down several resources about to be created, with one write of state.json (each
    /// write is a temp file + rename, the largest part of a stage's own bookkeeping). `rm`
    /// tolerates journalled resources that were never made, so journalling ahead is safe;
    /// journalling late is not.
    pub fn journal_all(&mut self, rs: impl IntoIterator<Item = Resource>) -> Result<()> {
        let mut new = false;
        for r in rs {
            if !self.state.journal.contains(&r) {
                self.state.journal.push(r);
                new = true;
            }
        }
        if new {
            self.save()?;
        }
        Ok(())
    }

    /// Fail with the command to run first unless `stage`'s predecessor is done, and refuse to
    /// do a stage twice.
    pub fn require_before(&self, stage: Stage) -> Result<()> {
        if self.state.done(stage) {
            bail!(
                "container {} has already done stage `{stage}`: remove it with `stepctr rm {}` and start over",
                self.name,
                self.name
            );
        }
        let missing: Vec<Stage> = Stage::ALL
            .iter()
            .copied()
            .filter(|s| *s != Stage::Pull && *s < stage && !self.state.done(*s))
            .collect();
        if let Some(first) = missing.first() {
            let names: Vec<String> = missing.iter().map(|s| format!("`{s}`")).collect();
            let then: Vec<String> = missing[1..]
                .iter()
                .map(|s| format!(", then `stepctr {s} {}`", self.name))
                .collect();
            bail!(
                "stage `{stage}` needs {} first: run `stepctr {first} {}`{}",
                names.join(" and "),
                self.name,
                then.concat()
            );
        }
        Ok(())
    }

    /// Let go of the lock (while PID 1 runs, so `rm` and `ps` are not blocked).
    pub fn unlock(&mut self) {
        self.lock = None;
    }

    /// Take the lock again and re-read the state; `false` if the container is gone meanwhile.
    pub fn relock(&mut self) -> Result<bool> {
        if self.lock.is_some() {
            return Ok(true);
        }
        if !self.dir.join("state.json").exists() {
            return Ok(false);
        }
        let lock = match lock_dir(&self.dir) {
            Ok(l) => l,
            Err(_) if !self.dir.exists() => return Ok(false),
            Err(e) => return Err(e),
        };
        match fs::read(self.dir.join("state.json")) {
            Ok(bytes) => {
                self.state = serde_json::from_slice(&bytes).context("re-read container state")?;
                self.lock = Some(lock);
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    pub fn finish(&mut self, stage: Stage) -> Result<()> {
        self.state.stages.push(stage);
        self.save()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }
}

/// A process's start time (field 22 of /proc/PID/stat), so a recycled pid is never mistaken
/// for ours.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// All container names under the run root.
pub fn list_containers(paths: &Paths) -> Result<Vec<ContainerName>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(&paths.run) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("read {}", paths.run.display())),
    };
    for entry in rd {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            if let Some(name) = entry.file_name().to_str() {
                if let Ok(n) = ContainerName::parse(name) {
                    out.push(n);
                }
            }
        }
    }
    out.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_gets_a_store_of_their_own() {
        let p = |root, run, data: Option<&str>, home: Option<&str>, rt: Option<&str>| {
            let o = |x: Option<&str>| x.map(PathBuf::from);
            Paths::for_user(o(root), o(run), o(data), o(home), o(rt), 1000)
        };
        let a = p(None, None, None, Some("/home/ann"), Some("/run/user/1000"));
        assert_eq!(a.root, PathBuf::from("/home/ann/.local/share/stepctr"));
        assert_eq!(a.run, PathBuf::from("/run/user/1000/stepctr"));
        let b = p(None, None, Some("/data"), Some("/home/ann"), None);
        assert_eq!(b.root, PathBuf::from("/data/stepctr"));
        assert_eq!(b.run, PathBuf::from("/tmp/stepctr-1000/run"));
        let c = p(Some("/s"), Some("/r"), Some("/data"), None, None);
        assert_eq!((c.root, c.run), (PathBuf::from("/s"), PathBuf::from("/r")));
    }

    #[test]
    fn a_run_directory_others_could_replace_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let me = crate::kernel::host::uid();
        let paths = |run: PathBuf| Paths {
            root: tmp.path().join("root"),
            run,
        };
        // Ours, made 0700.
        let ok = paths(tmp.path().join("a/run"));
        ok.prepare_run().unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&ok.run).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // A directory on the way that everyone may write (and not sticky).
        let open = tmp.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let err = paths(open.join("run"))
            .prepare_run()
            .unwrap_err()
            .to_string();
        assert!(err.contains("writable by everyone"), "{err}");
        // A symlink of ours (root's symlinks, like /var/run, are trusted).
        if me != 0 {
            let link = tmp.path().join("link");
            std::os::unix::fs::symlink(tmp.path().join("a"), &link).unwrap();
            let err = paths(link.join("run"))
                .prepare_run()
                .unwrap_err()
                .to_string();
            assert!(err.contains("symlink"), "{err}");
        }
    }

    #[test]
    fn names_are_safe_path_components() {
        assert!(ContainerName::parse("web-1.a_b").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "-x", &"a".repeat(65)] {
            assert!(ContainerName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn stages_know_their_order() {
        assert_eq!(Stage::Cgroup.number(), 3);
        assert_eq!(Stage::Ns.previous(), Some(Stage::Cgroup));
        assert_eq!(Stage::Pull.previous(), None);
    }

    #[test]
    fn start_time_of_self_is_readable() {
        assert!(process_start_time(std::process::id() as i32).is_some());
    }
}
