//! Unit tests on the recording kernel: no root, no real calls. They check the *order* of the
//! calls the stages make, across the fork into a helper or PID 1, which is where container
//! runtimes get security wrong.

use std::path::{Path, PathBuf};
use stepctr::kernel::record::{Record, Recorded};
use stepctr::kernel::{Errno, Sys};
use stepctr::stage::{fs, ns, start};
use stepctr::state::{CgroupState, Container, ContainerName, Paths, State};

struct Fixture {
    _tmp: tempfile::TempDir,
    container: Container,
    cgroups: Vec<PathBuf>,
}

/// A container on cgroup v1 (one cgroup per controller), or on pure v2 (one cgroup).
fn fixture(v2: bool) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let paths = Paths {
        root: tmp.path().join("root"),
        run: tmp.path().join("run"),
    };
    let name = ContainerName::parse("rec").unwrap();
    std::fs::create_dir_all(paths.container(&name)).unwrap();
    let mut container = Container::adopt(&paths, &name, State::default()).unwrap();
    let cgroups = if v2 {
        vec![PathBuf::from(V2_CGROUP)]
    } else {
        vec![
            PathBuf::from("/sys/fs/cgroup/memory/stepctr/rec"),
            PathBuf::from("/sys/fs/cgroup/pids/stepctr/rec"),
        ]
    };
    container.state.cgroup = Some(CgroupState {
        version: if v2 { "v2" } else { "v1" }.into(),
        dirs: cgroups.clone(),
        ..CgroupState::default()
    });
    Fixture {
        _tmp: tmp,
        container,
        cgroups,
    }
}

const V2_CGROUP: &str = "/sys/fs/cgroup/stepctr/rec";

/// ns + fs + start, as `all` runs them, on the recorder (cgroup v1).
fn record_container(k: &Record) -> anyhow::Result<()> {
    record_container_on(k, false)
}

/// ns + fs + start on cgroup v1, or on pure v2 (`v2`).
fn record_container_on(k: &Record, v2: bool) -> anyhow::Result<()> {
    let mut f = fixture(v2);
    let dir = f.container.path("ns");
    ns::create(k, &mut f.container, &dir, None)?;
    let plan = fs::Plan {
        ids: fs::Ids::Host,
        ns_mnt: dir.join("mnt"),
        layers: vec![PathBuf::from("/layers/a"), PathBuf::from("/layers/b")],
        upper: f.container.path("upper"),
        work: f.container.path("work"),
        rootfs: f.container.path("rootfs"),
    };
    fs::mount_rootfs(k, &mut f.container, &plan)?;
    let plan = start::Plan {
        ns_dir: dir,
        cgroups: f.cgroups.clone(),
        cgroup_v2: v2,
        rootfs: plan.rootfs,
        hostname: "rec".into(),
        argv: vec!["sh".into(), "-c".into(), "true".into()],
        env: vec!["PATH=/usr/bin:/bin".into()],
        workdir: PathBuf::from("/"),
        user: None,
        tty: None,
        security: Default::default(),
        userns: None,
    };
    start::launch(k, &mut f.container, &plan)?;
    Ok(())
}

fn position(calls: &[Recorded], what: impl Fn(&Recorded) -> bool) -> Option<usize> {
    calls.iter().position(what)
}

fn is_mount_of(r: &Recorded, fstype: &str) -> bool {
    matches!(&r.call, Sys::Mount { fstype: Some(t), .. } if t == fstype)
}

#[test]
fn mount_propagation_is_private_before_any_container_mount() {
    let k = Record::new();
    record_container(&k).unwrap();
    let calls = k.calls();
    let unshare = position(
        &calls,
        |r| matches!(r.call, Sys::Unshare { flags } if flags & libc::CLONE_NEWNS != 0),
    )
    .expect("a new mount namespace is made");
    let private = position(&calls, |r| {
        matches!(&r.call, Sys::Mount { target, flags, .. }
            if target == Path::new("/") && *flags == libc::MS_REC | libc::MS_PRIVATE)
    })
    .expect("/ is made rprivate");
    assert!(
        unshare < private,
        "rprivate must happen inside the new namespace:\n{}",
        k.texts().join("\n")
    );
    assert_eq!(calls[unshare].pid, calls[private].pid, "same process");
    for fstype in ["overlay", "tmpfs", "proc", "sysfs"] {
        let at = position(&calls, |r| is_mount_of(r, fstype))
            .unwrap_or_else(|| panic!("no {fstype} mount"));
        assert!(
            private < at,
            "{fstype} mounted before propagation was made private:\n{}",
            k.texts().join("\n")
        );
    }
    // The host-side directory of namespace files is made private right after it is bound.
    let bind = position(
        &calls,
        |r| matches!(&r.call, Sys::Mount { flags, .. } if *flags == libc::MS_BIND),
    )
    .unwrap();
    assert!(
        matches!(&calls[bind + 1].call, Sys::Mount { flags, .. } if *flags == libc::MS_PRIVATE)
    );
}

#[test]
fn pivot_root_comes_before_the_old_root_is_detached() {
    let k = Record::new();
    record_container(&k).unwrap();
    let calls = k.calls();
    let chdir_root = position(
        &calls,
        |r| matches!(&r.call, Sys::Chdir { path } if path.ends_with("rootfs")),
    )
    .unwrap();
    let pivot = position(&calls, |r| matches!(r.call, Sys::PivotRoot { .. })).expect("pivot_root");
    let detach = position(&calls, |r| {
        matches!(&r.call, Sys::Umount2 { target, flags } if target == Path::new(".") && *flags == libc::MNT_DETACH)
    })
    .expect("old root detached");
    // /proc is mounted into the rootfs before pivot_root, while the host's /proc/self/fd is
    // still there to mount through (as runc does); pivot_root carries it along.
    let proc = position(&calls, |r| is_mount_of(r, "proc")).unwrap();
    assert!(
        proc < chdir_root && chdir_root < pivot && pivot < detach,
        "{}",
        k.texts().join("\n")
    );
    assert!(
        matches!(&calls[pivot].call, Sys::PivotRoot { new_root, put_old } if new_root == Path::new(".") && put_old == Path::new("."))
    );
    // The mount namespace is joined before, in the same process.
    let setns_mnt = position(&calls, |r| matches!(r.call, Sys::Setns { nstype, .. } if nstype == libc::CLONE_NEWNS && r.pid == calls[pivot].pid)).unwrap();
    assert!(setns_mnt < pivot);
}

#[test]
fn the_cgroup_is_joined_before_exec() {
    let k = Record::new();
    record_container(&k).unwrap();
    let calls = k.calls();
    let exec = position(&calls, |r| matches!(r.call, Sys::Execve { .. })).expect("execve");
    let pid1 = calls[exec].pid;
    for cg in ["memory", "pids"] {
        let open = position(&calls, |r| {
            r.pid == pid1 && matches!(&r.call, Sys::Openat { path, .. } if (path.ends_with("cgroup.procs") || path.ends_with("tasks")) && path.to_string_lossy().contains(cg))
        })
        .unwrap_or_else(|| panic!("PID 1 never joins the {cg} cgroup:\n{}", k.texts().join("\n")));
        assert!(matches!(&calls[open + 1].call, Sys::Write { data, .. } if data == b"0"));
        assert!(open < exec);
    }
    // ...and before any namespace is joined, so nothing runs outside the limits.
    let first_setns = position(&calls, |r| {
        r.pid == pid1 && matches!(r.call, Sys::Setns { .. })
    })
    .unwrap();
    let first_join = position(&calls, |r| {
        r.pid == pid1
            && matches!(&r.call, Sys::Openat { path, .. } if path.ends_with("cgroup.procs") || path.ends_with("tasks"))
    })
    .unwrap();
    assert!(first_join < first_setns);
    // The PID namespace is made by the parent, for its child.
    let unshare_pid = position(
        &calls,
        |r| matches!(r.call, Sys::Unshare { flags } if flags == libc::CLONE_NEWPID),
    )
    .unwrap();
    let clone = position(&calls, |r| {
        matches!(r.call, Sys::Clone) && r.result.as_ref().is_ok_and(|v| v.val == pid1 as i64)
    })
    .unwrap();
    assert!(unshare_pid < clone && calls[unshare_pid].pid != pid1);
}

/// PID 1 makes the cgroup namespace once it is in the container's cgroup (a cgroup namespace
/// is rooted where its creator is), and pins it and the PID namespace while it still sees the
/// host's mounts.
#[test]
fn pid1_makes_its_cgroup_namespace_inside_the_cgroup() {
    let k = Record::new();
    record_container(&k).unwrap();
    let calls = k.calls();
    let texts = || k.texts().join("\n");
    let unshare = position(
        &calls,
        |r| matches!(r.call, Sys::Unshare { flags } if flags & libc::CLONE_NEWCGROUP != 0),
    )
    .unwrap_or_else(|| panic!("no cgroup namespace:\n{}", texts()));
    let exec = position(&calls, |r| matches!(r.call, Sys::Execve { .. })).unwrap();
    let pid1 = calls[exec].pid;
    assert_eq!(calls[unshare].pid, pid1, "{}", texts());
    // cgroup.procs, or on v1 `tasks` (the same move for a one-thread process, without the
    // kernel's global lock: see `cgroup::join_file`).
    let join = position(&calls, |r| r.pid == pid1 && is_join(r)).unwrap();
    assert!(join < unshare, "{}", texts());
    let setns_mnt = position(&calls, |r| {
        r.pid == pid1 && matches!(r.call, Sys::Setns { nstype, .. } if nstype == libc::CLONE_NEWNS)
    })
    .unwrap();
    for file in ["pid", "cgroup"] {
        let pin = position(&calls, |r| {
            r.pid == pid1
                && matches!(&r.call, Sys::Mount { source: Some(s), target, .. }
                    if s == &format!("/proc/self/ns/{file}") && target.ends_with(format!("ns/{file}")))
        })
        .unwrap_or_else(|| panic!("ns/{file} is not pinned by PID 1:\n{}", texts()));
        assert!(unshare < pin && pin < setns_mnt, "{}", texts());
    }
}

/// stepctr (one thread) makes the namespaces itself: it opens its own first, unshares, opens
/// the new ones, steps back into its own and only then pins the new ones, from their fds.
#[test]
fn stepctr_makes_the_namespaces_itself_and_steps_back() {
    let k = Record::new();
    record_container(&k).unwrap();
    let calls = k.calls();
    let texts = || k.texts().join("\n");
    let me = calls[0].pid;
    let unshare = position(
        &calls,
        |r| matches!(r.call, Sys::Unshare { flags } if flags & libc::CLONE_NEWNET != 0),
    )
    .unwrap();
    assert_eq!(calls[unshare].pid, me, "{}", texts());
    let homes: Vec<usize> = (0..unshare)
        .filter(|i| matches!(&calls[*i].call, Sys::Openat { path, .. } if path.starts_with("/proc/self/ns/")))
        .collect();
    assert_eq!(
        homes.len(),
        4,
        "mnt, uts, ipc, net: the way back\n{}",
        texts()
    );
    let backs: Vec<usize> = (unshare..calls.len())
        .filter(|i| calls[*i].pid == me && matches!(calls[*i].call, Sys::Setns { .. }))
        .take(4)
        .collect();
    assert_eq!(backs.len(), 4, "{}", texts());
    let pins: Vec<usize> = (0..calls.len())
        .filter(|i| calls[*i].pid == me && matches!(&calls[*i].call, Sys::Mount { source: Some(s), .. } if s.starts_with("/proc/self/fd/")))
        .collect();
    assert_eq!(pins.len(), 4, "mnt, uts, ipc, net are pinned\n{}", texts());
    assert!(
        pins.iter().all(|p| backs.iter().all(|b| b < p)),
        "pinned before stepping back:\n{}",
        texts()
    );
    // No helper process: nothing is forked before the shim.
    let first_fork = position(&calls, |r| {
        matches!(r.call, Sys::Clone | Sys::Clone3 { .. })
    })
    .unwrap();
    assert!(pins.iter().all(|p| *p < first_fork), "{}", texts());
}

/// With threads, stepctr may not change its mount namespace: a forked helper makes the
/// namespaces and stops; they are pinned from /proc/HELPER/ns while it is stopped, then it is
/// killed. The fs stage forks a helper too.
#[test]
fn with_threads_helpers_do_it() {
    let k = Record::new();
    k.pretend_threads();
    record_container(&k).unwrap();
    let calls = k.calls();
    let texts = || k.texts().join("\n");
    let unshare = position(
        &calls,
        |r| matches!(r.call, Sys::Unshare { flags } if flags & libc::CLONE_NEWNET != 0),
    )
    .unwrap();
    let helper = calls[unshare].pid;
    assert_ne!(helper, calls[0].pid, "{}", texts());
    let stop = position(
        &calls,
        |r| matches!(r.call, Sys::Kill { sig, .. } if sig == libc::SIGSTOP),
    )
    .unwrap();
    let pins = calls.iter().enumerate().filter(|(_, r)| matches!(&r.call, Sys::Mount { source: Some(s), .. } if s.starts_with(&format!("/proc/{helper}/ns/")))).map(|(i, _)| i).collect::<Vec<_>>();
    assert_eq!(pins.len(), 4, "mnt, uts, ipc, net are pinned\n{}", texts());
    let kill = position(
        &calls,
        |r| matches!(r.call, Sys::Kill { pid, sig } if pid == helper && sig == libc::SIGKILL),
    )
    .unwrap();
    assert!(pins.iter().all(|p| stop < *p && *p < kill));
    let overlay = position(&calls, |r| is_mount_of(r, "overlay")).unwrap();
    assert_ne!(calls[overlay].pid, calls[0].pid, "{}", texts());
    assert_ne!(calls[overlay].pid, helper, "{}", texts());
}

#[test]
fn a_failed_pivot_root_stops_before_exec_and_names_the_call() {
    let k = Record::new();
    k.fail_on(|c| matches!(c, Sys::PivotRoot { .. }), Errno::EINVAL);
    let err = record_container(&k).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("pivot_root(\".\", \".\")") && msg.contains("EINVAL"),
        "{msg}"
    );
    assert!(!k
        .calls()
        .iter()
        .any(|r| matches!(r.call, Sys::Execve { .. })));
}

#[test]
fn a_failed_unshare_is_reported_with_its_errno() {
    let k = Record::new();
    k.fail_on(|c| matches!(c, Sys::Unshare { .. }), Errno::EPERM);
    let err = record_container(&k).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("unshare(") && msg.contains("EPERM"), "{msg}");
    // Nothing gets pinned when the namespaces were never made.
    assert!(!k
        .calls()
        .iter()
        .any(|r| matches!(&r.call, Sys::Mount { source: Some(s), .. } if s.starts_with("/proc/"))));
}

/// The fd of the v2 cgroup directory, opened by `opener` (O_PATH|O_DIRECTORY) for clone3.
fn cgroup_dir_opened_by(calls: &[Recorded], opener: i32) -> Vec<(usize, i32)> {
    calls
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            r.pid == opener
                && matches!(&r.call, Sys::Openat { path, flags, .. }
                    if path == Path::new(V2_CGROUP)
                        && flags & libc::O_PATH != 0
                        && flags & libc::O_DIRECTORY != 0)
        })
        .map(|(i, r)| (i, r.result.unwrap().val as i32))
        .collect()
}

fn is_join(r: &Recorded) -> bool {
    matches!(&r.call, Sys::Openat { path, .. }
        if path.ends_with("cgroup.procs") || path.ends_with("tasks"))
}

/// On pure v2 the namespace helper and PID 1 are born in the container's cgroup:
/// clone3(CLONE_INTO_CGROUP) with an fd of its directory, opened by the parent just before.
/// Nothing of the child runs before the clone3 (it is its first call), and no child writes
/// cgroup.procs. The fd is closed by the parent only after the child exec'd or stopped.
#[test]
fn on_cgroup_v2_children_are_born_in_the_cgroup() {
    let k = Record::new();
    record_container_on(&k, true).unwrap();
    let calls = k.calls();
    let texts = || k.texts().join("\n");
    let clones: Vec<(usize, i32, i32, i32)> = calls
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match r.call {
            Sys::Clone3 { cgroup } => Some((i, r.pid, cgroup, r.result.unwrap().val as i32)),
            _ => None,
        })
        .collect();
    // (The namespaces are made by stepctr itself, and it needs no cgroup.)
    assert_eq!(clones.len(), 1, "PID 1:\n{}", texts());
    let unshare_ns = position(
        &calls,
        |r| matches!(r.call, Sys::Unshare { flags } if flags & libc::CLONE_NEWCGROUP != 0),
    )
    .unwrap();
    let exec = position(&calls, |r| matches!(r.call, Sys::Execve { .. })).unwrap();
    let pid1 = calls[exec].pid;
    for (at, parent, fd, child) in clones {
        assert_eq!(child, pid1, "{}", texts());
        // The parent opened the cgroup directory, and that fd is the one clone3 gets.
        let opened = cgroup_dir_opened_by(&calls, parent);
        let (open_at, open_fd) = *opened
            .iter()
            .rfind(|(i, _)| *i < at)
            .unwrap_or_else(|| panic!("no O_PATH open of {V2_CGROUP} before clone3:\n{}", texts()));
        assert_eq!(open_fd, fd, "{}", texts());
        assert!(open_at < at);
        // Nothing of the child before its birth, and no join afterwards.
        let first = position(&calls, |r| r.pid == child).unwrap();
        assert!(at < first, "{}", texts());
        assert!(
            !calls.iter().any(|r| r.pid == child && is_join(r)),
            "a child born in its cgroup does not join it again:\n{}",
            texts()
        );
        // The parent closes the fd after the child is done with the fork (stopped, or exec'd).
        let close = calls
            .iter()
            .enumerate()
            .skip(at)
            .find(|(_, r)| r.pid == parent && matches!(r.call, Sys::Close { fd: f } if f == fd))
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("the cgroup fd {fd} is never closed:\n{}", texts()));
        let last_of_child = calls.iter().rposition(|r| r.pid == child).unwrap();
        assert!(
            close > last_of_child,
            "the cgroup fd is closed before the child stopped or exec'd:\n{}",
            texts()
        );
    }
    // PID 1 is born after the PID namespace is made for it.
    let unshare_pid = position(
        &calls,
        |r| matches!(r.call, Sys::Unshare { flags } if flags == libc::CLONE_NEWPID),
    )
    .unwrap();
    let pid1_born = position(&calls, |r| {
        matches!(r.call, Sys::Clone3 { .. }) && r.result.unwrap().val == pid1 as i64
    })
    .unwrap();
    assert!(unshare_pid < pid1_born);
    // PID 1 is born in the cgroup before it makes its cgroup namespace: rooted there.
    assert!(pid1_born < unshare_ns);
    assert_eq!(calls[unshare_ns].pid, pid1);
}

/// A kernel without clone3 or CLONE_INTO_CGROUP (ENOSYS, E2BIG, EINVAL): fork, then the child
/// joins with a write of 0 to cgroup.procs, first thing after PR_SET_PDEATHSIG, as on v1.
#[test]
fn on_cgroup_v2_without_clone3_children_fork_and_join() {
    for errno in [Errno::ENOSYS, Errno::E2BIG, Errno::EINVAL] {
        let k = Record::new();
        k.fail_on(|c| matches!(c, Sys::Clone3 { .. }), errno);
        record_container_on(&k, true).unwrap();
        let calls = k.calls();
        let texts = k.texts().join("\n");
        let failed = calls
            .iter()
            .filter(|r| matches!(r.call, Sys::Clone3 { .. }) && r.result == Err(errno))
            .count();
        assert_eq!(failed, 1, "{texts}");
        let exec = position(&calls, |r| matches!(r.call, Sys::Execve { .. })).unwrap();
        let pid1 = calls[exec].pid;
        let join = position(&calls, |r| {
            r.pid == pid1
                && matches!(&r.call, Sys::Openat { path, .. } if path == &Path::new(V2_CGROUP).join("cgroup.procs"))
        })
        .unwrap_or_else(|| panic!("PID 1 never joins its cgroup:\n{texts}"));
        assert!(matches!(&calls[join + 1].call, Sys::Write { data, .. } if data == b"0"));
        let first_setns = position(&calls, |r| {
            r.pid == pid1 && matches!(r.call, Sys::Setns { .. })
        })
        .unwrap();
        assert!(join < first_setns, "{texts}");
        let unshare = position(
            &calls,
            |r| matches!(r.call, Sys::Unshare { flags } if flags & libc::CLONE_NEWCGROUP != 0),
        )
        .unwrap();
        assert_eq!(calls[unshare].pid, pid1, "{texts}");
        assert!(join < unshare, "{texts}");
    }
    // Any other failure is an error, not a reason to fork instead (EAGAIN: pids.max is hit).
    let k = Record::new();
    k.fail_on(|c| matches!(c, Sys::Clone3 { .. }), Errno::EAGAIN);
    let err = record_container_on(&k, true).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("clone3(") && msg.contains("EAGAIN"), "{msg}");
    assert!(!k.calls().iter().any(|r| matches!(r.call, Sys::Clone)));
}

/// The kernel refuses to pin the new mount namespace (EINVAL: its per-CPU numbering made it
/// look older than ours): stepctr makes another one on another CPU and pins that, and the
/// other namespaces are pinned as usual.
#[test]
fn a_refused_mount_namespace_is_made_again_on_another_cpu() {
    let k = Record::new();
    k.fail_on(
        |c| matches!(c, Sys::Mount { source: Some(s), target, .. } if s.starts_with("/proc/self/fd/") && target.ends_with("ns/mnt")),
        Errno::EINVAL,
    );
    record_container(&k).unwrap();
    let calls = k.calls();
    let texts = || k.texts().join("\n");
    let refused = position(&calls, |r| r.result == Err(Errno::EINVAL)).unwrap();
    let pin = position(&calls, |r| matches!(r.call, Sys::SchedSetaffinity { .. })).unwrap();
    let again = position(
        &calls,
        |r| matches!(r.call, Sys::Unshare { flags } if flags == libc::CLONE_NEWNS),
    )
    .unwrap_or_else(|| panic!("no second mount namespace:\n{}", texts()));
    let pinned = position(&calls, |r| {
        r.result.is_ok()
            && matches!(&r.call, Sys::Mount { source: Some(s), target, .. } if s.starts_with("/proc/self/fd/") && target.ends_with("ns/mnt"))
    })
    .unwrap_or_else(|| panic!("ns/mnt never pinned:\n{}", texts()));
    assert!(
        refused < pin && pin < again && again < pinned,
        "{}",
        texts()
    );
    for file in ["uts", "ipc", "net"] {
        assert!(
            calls.iter().any(|r| matches!(&r.call, Sys::Mount { target, .. } if target.ends_with(format!("ns/{file}")))),
            "ns/{file} not pinned:\n{}",
            texts()
        );
    }
}
