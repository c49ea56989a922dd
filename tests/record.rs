//! Unit tests on the recording kernel: no root, no real calls. They check the *order* of the
//! calls the stages make, across the fork into a helper or PID 1, which is where container
//! runtimes get security wrong.

use std::path::{Path, PathBuf};
use stepctr::kernel::record::{Record, Recorded};
use stepctr::kernel::{Errno, Sys};
use stepctr::stage::{fs, ns, start};
use stepctr::state::{Container, ContainerName, Paths, State};

struct Fixture {
    _tmp: tempfile::TempDir,
    container: Container,
    cgroups: Vec<PathBuf>,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let paths = Paths {
        root: tmp.path().join("root"),
        run: tmp.path().join("run"),
    };
    let name = ContainerName::parse("rec").unwrap();
    std::fs::create_dir_all(paths.container(&name)).unwrap();
    let container = Container::adopt(&paths, &name, State::default()).unwrap();
    let cgroups = vec![
        PathBuf::from("/sys/fs/cgroup/memory/stepctr/rec"),
        PathBuf::from("/sys/fs/cgroup/pids/stepctr/rec"),
    ];
    Fixture {
        _tmp: tmp,
        container,
        cgroups,
    }
}

/// ns + fs + start, as `all` runs them, on the recorder.
fn record_container(k: &Record) -> anyhow::Result<()> {
    let mut f = fixture();
    let dir = f.container.path("ns");
    ns::create(k, &mut f.container, &dir, &f.cgroups)?;
    let plan = fs::Plan {
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
        rootfs: plan.rootfs,
        hostname: "rec".into(),
        argv: vec!["sh".into(), "-c".into(), "true".into()],
        env: vec!["PATH=/usr/bin:/bin".into()],
        workdir: PathBuf::from("/"),
        user: None,
        tty: None,
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
    let proc = position(&calls, |r| is_mount_of(r, "proc")).unwrap();
    assert!(
        chdir_root < pivot && pivot < detach && detach < proc,
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

#[test]
fn the_namespace_helper_joins_the_cgroup_before_unsharing() {
    let k = Record::new();
    record_container(&k).unwrap();
    let calls = k.calls();
    let unshare = position(
        &calls,
        |r| matches!(r.call, Sys::Unshare { flags } if flags & libc::CLONE_NEWCGROUP != 0),
    )
    .unwrap();
    let helper = calls[unshare].pid;
    // cgroup.procs, or on v1 `tasks` (the same move for a one-thread helper, without the
    // kernel's global lock: see `cgroup::join_file`).
    let join = position(&calls, |r| {
        r.pid == helper
            && matches!(&r.call, Sys::Openat { path, .. } if path.ends_with("cgroup.procs") || path.ends_with("tasks"))
    })
    .unwrap();
    assert!(
        join < unshare,
        "a cgroup namespace is rooted where its creator is"
    );
    // The namespaces are pinned while the helper is stopped, then it is killed.
    let stop = position(
        &calls,
        |r| matches!(r.call, Sys::Kill { sig, .. } if sig == libc::SIGSTOP),
    )
    .unwrap();
    let pins = calls.iter().enumerate().filter(|(_, r)| matches!(&r.call, Sys::Mount { source: Some(s), .. } if s.starts_with(&format!("/proc/{helper}/ns/")))).map(|(i, _)| i).collect::<Vec<_>>();
    assert_eq!(pins.len(), 5, "mnt, uts, ipc, net, cgroup are pinned");
    let kill = position(
        &calls,
        |r| matches!(r.call, Sys::Kill { pid, sig } if pid == helper && sig == libc::SIGKILL),
    )
    .unwrap();
    assert!(pins.iter().all(|p| stop < *p && *p < kill));
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
