//! `rm` and `reset`: undo exactly what a container's journal lists, newest first.
//!
//! Every step tolerates "already gone" (ESRCH, ENOENT, EINVAL for a path that is no longer a
//! mount point), so `rm` is idempotent and also cleans up after a crash in the middle of a
//! stage: the journal names each resource *before* it is created.

use crate::kernel::{Errno, Kernel};
use crate::state::{self, Container, ContainerName, Paths, Resource};
use anyhow::{Context, Result};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long to wait for killed processes to be gone before removing their cgroups.
const GRACE: Duration = Duration::from_secs(10);

/// Remove a container, killing it first if it still runs (`rm -f`).
pub fn remove(k: &dyn Kernel, paths: &Paths, name: &ContainerName) -> Result<()> {
    remove_with(k, paths, name, true)
}

/// `rm` (refuses a running container) or, with `force`, `rm -f`.
pub fn remove_with(k: &dyn Kernel, paths: &Paths, name: &ContainerName, force: bool) -> Result<()> {
    let c = Container::open(paths, name)?;
    let running = crate::lifecycle::running_pid1(&c);
    if !force && running.is_some() {
        anyhow::bail!(
            "container {name} is running: stop it first (`stepctr stop {name}`) or remove it anyway with `stepctr rm -f {name}`"
        );
    }
    k.header(
        1,
        1,
        "rm",
        &format!("undo everything container {name} created"),
    );
    if let Some(pid) = running {
        k.note(&format!(
            "rm -f: PID 1 (host pid {pid}) still runs, so it is killed with SIGKILL, without a chance to clean up (`stepctr stop {name}` asks it with SIGTERM first)"
        ));
    }
    let journal: Vec<Resource> = c.state.journal.iter().rev().cloned().collect();

    // 1. Processes. On cgroup v2 one write to cgroup.kill kills everything in the container's
    //    cgroup at once, even a process that is forking right now; then the ones we started
    //    (on v1, or not in the cgroup yet), then anything still in the container's cgroups.
    let mut killed = Vec::new();
    for r in &journal {
        if let Resource::Cgroup { path } = r {
            if path.join("cgroup.kill").exists() {
                kill_cgroup(k, path, &mut killed)?;
            }
        }
    }
    // The shim of a `--rm -d` container removes it itself: it must not kill itself.
    let me = std::process::id() as i32;
    for r in &journal {
        if let Resource::Process { pid, start_time } = r {
            if *pid != me
                && alive_as(*pid, *start_time)
                && !is_zombie(*pid)
                && !killed.contains(pid)
            {
                ignore_gone(k.kill(*pid, libc::SIGKILL, "stop the container's process"))?;
                killed.push(*pid);
            }
        }
    }
    for r in &journal {
        if let Resource::Cgroup { path } = r {
            kill_cgroup(k, path, &mut killed)?;
        }
    }
    // Only what was just killed can still be on its way out (everything else was seen gone).
    if !killed.is_empty() {
        wait_gone(&journal, me);
    }

    // 2. Mounts in the host's namespace (namespace files, then their directory). Once the
    //    namespace files are unmounted and the processes are gone, the namespaces are freed,
    //    and with the mount namespace every mount inside it (overlay, /dev).
    let mounted = mount_points();
    // A mount below another one we made (the namespace files inside the ns directory) goes
    // with it: umount2(MNT_DETACH) detaches a whole subtree in one call.
    let ours: Vec<&Path> = journal
        .iter()
        .filter_map(|r| match r {
            Resource::Mount { path } if mounted.contains(path) => Some(path.as_path()),
            _ => None,
        })
        .collect();
    let under = |path: &Path| {
        ours.iter()
            .find(|p| path != **p && path.starts_with(p))
            .copied()
    };
    let mut riders: Vec<&Path> = Vec::new();
    for r in &journal {
        match r {
            Resource::Mount { path } if !mounted.contains(path) => {}
            Resource::Mount { path } if under(path).is_some() => riders.push(path),
            Resource::Mount { path } => {
                let inside: Vec<String> = riders
                    .iter()
                    .filter(|p| p.starts_with(path))
                    .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
                    .collect();
                if !inside.is_empty() {
                    k.note(&format!(
                        "{} are mounted inside {}: detaching it takes them along",
                        inside.join(", "),
                        path.display()
                    ));
                }
                ignore_gone(k.umount2(
                    path,
                    libc::MNT_DETACH,
                    "release the pinned namespace / mount",
                ))?
            }
            Resource::NsMount { path } => k.note(&format!(
                "{} goes away with the container's mount namespace",
                path.display()
            )),
            _ => {}
        }
    }

    // 3. Network: the veth (its peer in the container goes with it), then the bridge if no
    //    other container is attached to it.
    for r in &journal {
        match r {
            Resource::Link { name } => crate::net::link::remove_link(k, name)?,
            Resource::Bridge { name } => crate::net::link::remove_bridge_if_unused(k, name)?,
            _ => {}
        }
    }

    // 4. Cgroups (they must be empty), the container's first, then the parent if unused.
    for r in &journal {
        match r {
            Resource::Cgroup { path } => remove_cgroup(k, path, true)?,
            Resource::CgroupParent { path } => remove_cgroup(k, path, false)?,
            _ => {}
        }
    }

    // 5. Files and directories: the writable layer and friends.
    for r in &journal {
        match r {
            // The overlay's upperdir, `<container>/upper` (see stage::fs).
            Resource::Dir { path } if path == &c.path("upper") => {
                writable_layer_note(k, &c, path);
                remove_tree_told(k, path, false)?
            }
            Resource::Dir { path } => remove_tree(k, path)?,
            Resource::File { path } => ignore_gone(k.unlinkat(path, 0, "remove the file"))?,
            _ => {}
        }
    }
    if journal.iter().any(|r| matches!(r, Resource::Bridge { .. })) {
        crate::net::link::tidy_leases();
    }
    remove_tree(k, &c.dir)?;
    drop(c);
    k.note(&format!("container {name} removed"));
    Ok(())
}

/// The lesson of the ephemeral container, told as its writable layer goes.
fn writable_layer_note(k: &dyn Kernel, c: &Container, upper: &Path) {
    let n = count_tree(upper, 0);
    let what = match n {
        0 => "; it is empty: this container changed no file of its image, so nothing is lost"
            .to_string(),
        1 => ": the 1 file or directory the container created or changed outside its volumes is lost now".to_string(),
        n => format!(": the {n} files and directories the container created or changed outside its volumes are lost now"),
    };
    k.note(&format!(
        "{} is the container's writable layer (overlay upperdir){what}. Containers are ephemeral: data that must outlive one belongs in a volume (-v HOST:CTR)",
        upper.display()
    ));
    for v in &c.state.volumes {
        k.note(&format!(
            "volume {} (seen as {} inside) keeps its data: rm never touches a volume",
            v.host.display(),
            v.container.display()
        ));
    }
}

/// Entries under `dir`, recursively, without following symlinks (capped: it is only told).
fn count_tree(dir: &Path, depth: usize) -> usize {
    if depth > 64 {
        return 0;
    }
    let Ok(rd) = fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        n += 1;
        if e.file_type().is_ok_and(|t| t.is_dir()) && n < 100_000 {
            n += count_tree(&e.path(), depth + 1);
        }
    }
    n
}

/// Remove every container.
pub fn reset(k: &dyn Kernel, paths: &Paths) -> Result<usize> {
    let names = state::list_containers(paths)?;
    let mut errors = Vec::new();
    for name in &names {
        if let Err(e) = remove(k, paths, name) {
            errors.push(format!("{name}: {e:#}"));
        }
    }
    if !errors.is_empty() {
        anyhow::bail!("reset left some containers: {}", errors.join("; "));
    }
    Ok(names.len())
}

/// The mount points of our mount namespace (field 5 of /proc/self/mountinfo, unescaped).
fn mount_points() -> Vec<std::path::PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| std::path::PathBuf::from(unescape_mountinfo(p)))
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\040` etc.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn ignore_gone(r: crate::kernel::KResult<()>) -> Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.errno, Errno::ESRCH | Errno::ENOENT | Errno::EINVAL) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn alive_as(pid: i32, start_time: u64) -> bool {
    match state::process_start_time(pid) {
        Some(t) => start_time == 0 || t == start_time,
        None => false,
    }
}

fn cgroup_pids(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn kill_cgroup(k: &dyn Kernel, dir: &Path, killed: &mut Vec<i32>) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    let left: Vec<i32> = cgroup_pids(dir)
        .into_iter()
        .filter(|p| !killed.contains(p))
        .collect();
    if left.is_empty() {
        return Ok(());
    }
    if dir.join("cgroup.kill").exists() {
        killed.extend(left);
        return k
            .write_file(
                &dir.join("cgroup.kill"),
                "1",
                "kill every process in the cgroup at once",
            )
            .map_err(Into::into);
    }
    for pid in left {
        ignore_gone(k.kill(
            pid,
            libc::SIGKILL,
            "a process still in the container's cgroup",
        ))?;
        killed.push(pid);
    }
    Ok(())
}

fn wait_gone(journal: &[Resource], me: i32) {
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline {
        let busy = journal.iter().any(|r| match r {
            Resource::Process { pid, start_time } => {
                *pid != me && alive_as(*pid, *start_time) && !is_zombie(*pid)
            }
            Resource::Cgroup { path } => !cgroup_pids(path).is_empty(),
            _ => false,
        });
        if !busy {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .unwrap_or(false)
}

/// rmdir a cgroup. The container's own must go (retrying while the kernel finishes tearing
/// down its last processes); a shared parent only goes if no other container uses it.
fn remove_cgroup(k: &dyn Kernel, dir: &Path, must: bool) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    let deadline = Instant::now() + GRACE;
    loop {
        match k.unlinkat(
            dir,
            libc::AT_REMOVEDIR,
            if must {
                "remove the container's cgroup"
            } else {
                "remove the parent cgroup if no other container uses it"
            },
        ) {
            Ok(()) => return Ok(()),
            Err(e) if e.errno == Errno::ENOENT => return Ok(()),
            Err(e) if !must && matches!(e.errno, Errno::EBUSY | Errno::ENOTEMPTY) => return Ok(()),
            Err(e) if e.errno == Errno::EBUSY && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e).with_context(|| format!("remove cgroup {}", dir.display())),
        }
    }
}

/// Remove a directory tree without following symlinks or crossing into other mounts.
fn remove_tree(k: &dyn Kernel, dir: &Path) -> Result<()> {
    remove_tree_told(k, dir, true)
}

/// [`remove_tree`]; `tell`: say how many entries go (unless something else said it).
fn remove_tree_told(k: &dyn Kernel, dir: &Path, tell: bool) -> Result<()> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("inspect {}", dir.display())),
    };
    if !meta.is_dir() {
        return ignore_gone(k.unlinkat(dir, 0, "remove"));
    }
    let entries = count_entries(dir);
    if tell && entries > 0 {
        k.note(&format!(
            "removing {} ({entries} entries inside)",
            dir.display()
        ));
    }
    match fs::remove_dir_all(dir) {
        // Rootless, nothing overrides a directory's mode: overlayfs leaves work/work as
        // d---------, and container root may do the same. They are ours: open them up.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && crate::userns::rootless() => {
            open_up(dir);
            fs::remove_dir_all(dir)
        }
        other => other,
    }
    .with_context(|| format!("remove {}", dir.display()))
}

/// Give the owner rwx on every directory of a tree (symlinks not followed), so it can be removed.
fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            open_up(&e.path());
        }
    }
}

fn count_entries(dir: &Path) -> usize {
    fs::read_dir(dir).map(|rd| rd.count()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::unescape_mountinfo;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo("/run/a\\040b"), "/run/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/end\\04"), "/end\\04");
    }
}
