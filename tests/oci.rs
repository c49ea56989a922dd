//! Issue 9: stepctr as an OCI runtime. The lifecycle (create → created → start → running →
//! kill → stopped → delete) and its errors, in the runtime spec's wording; the same bundle
//! under `runc run` and under `stepctr create` + `start`, one probe printing what the
//! container sees, outputs equal; refused fields; `rm` and `reset` clean OCI containers too.
//!
//! Bundles are made here: the rootfs is a copy of the default image flattened
//! (`stepctr load --flatten`), config.json is `runc spec`'s, edited with serde_json.

mod common;

use common::{assert_no_leaks, assert_no_leaks_with, stderr, stdout, unique, Env};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    common::run_tests(
        tests![
            lifecycle_of_a_bundle,
            errors_name_the_container_and_its_state,
            delete_force_and_rm_and_reset_clean_up,
            same_probe_output_as_runc,
            unsupported_fields_are_refused,
            terminal_over_console_socket,
            kill_all_signals_every_process,
            user_namespace_same_as_runc,
            exec_process_detached,
            lifecycle_results_match_runc,
            cgroups_path_at_any_depth,
            rootfs_propagation_applies_to_the_new_root,
            a_profile_without_close_range_still_starts,
            cgroup_resources_same_as_runc,
            cgroup_resources_nested_and_refused_leave_nothing,
        ],
        true,
    );
}

/// A bundle in `dir`: a copy of the rootfs and `runc spec`'s config.json, edited.
fn bundle(dir: &Path, edit: impl FnOnce(&mut Value)) -> PathBuf {
    common::runc_spec_bundle(dir, edit)
}

/// `runc --root ROOT run -b BUNDLE ID`, to its end, stdin empty.
fn runc_run(root: &Path, bundle: &Path, id: &str) -> std::process::Output {
    Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(["run", "-b"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .output()
        .expect("runc run")
}

fn args(v: &mut Value, script: &str) {
    v["process"]["args"] = json!(["sh", "-c", script]);
}

/// `stepctr state ID` parsed.
fn state(env: &Env, id: &str) -> Value {
    let out = env.ok(&["state", id]);
    serde_json::from_slice(&out.stdout).expect("state prints JSON")
}

fn wait_status(env: &Env, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = state(env, id);
        if s["status"] == want || Instant::now() > deadline {
            assert_eq!(s["status"], want, "{s}");
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `stepctr create` with stdout and stderr into files (PID 1 keeps them: a pipe would keep
/// `output()` waiting for the container's end).
fn create(env: &Env, dir: &Path, id: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
    let out = dir.join("out");
    let err = dir.join("err");
    let bundle = dir.to_string_lossy().into_owned();
    let mut a = vec!["create", "-b", &bundle];
    a.extend_from_slice(extra);
    a.push(id);
    let st = env
        .cmd(&a)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .status()
        .expect("stepctr create");
    assert!(
        st.success(),
        "create failed: {}",
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    (out, err)
}

/// [`create`], start, wait until it stopped, delete: nothing left, not even PID 1.
fn run_to_end(env: &Env, dir: &Path, id: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
    let (out, err) = create(env, dir, id, extra);
    let pid = state(env, id)["pid"].as_i64().unwrap() as i32;
    env.ok(&["start", id]);
    wait_status(env, id, "stopped");
    env.ok(&["delete", id]);
    assert_no_leaks_with(env, id, &[pid]);
    (out, err)
}

/// `create` that must fail: its one error line.
fn refused_create(env: &Env, dir: &Path, id: &str) -> String {
    let o = env
        .cmd(&["create", "-b", &dir.to_string_lossy(), id])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    one_error(&o)
}

fn one_error(o: &std::process::Output) -> String {
    assert!(!o.status.success(), "should have failed: {}", stdout(o));
    let e = stderr(o);
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    e
}

fn lifecycle_of_a_bundle() {
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    let id = unique("oci");
    let dir = bundle(&tmp.path().join("b"), |v| {
        args(v, "echo started $$; exec sleep 60");
        v["annotations"] = json!({"org.example.test": "yes"});
    });
    let pid_file = tmp.path().join("pid");
    let (out, _) = create(
        &env,
        &dir,
        &id,
        &["--pid-file", &pid_file.to_string_lossy()],
    );
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let s = state(&env, &id);
    assert_eq!(s["status"], "created", "{s}");
    assert_eq!(s["id"], id.as_str());
    assert_eq!(s["pid"], pid);
    assert_eq!(s["bundle"], dir.to_string_lossy().as_ref());
    assert_eq!(s["annotations"]["org.example.test"], "yes");
    assert!(s["ociVersion"].as_str().unwrap().starts_with("1."));
    // Created: PID 1 waits, the command has not run.
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "");
    assert!(common::alive(pid));
    // The new namespaces are pinned in the state directory, as the ns stage pins them.
    for ns in ["pid", "net", "ipc", "uts", "mnt"] {
        let file = env.container_dir(&id).join("ns").join(ns);
        // A mount namespace the kernel numbers older than the caller's cannot be pinned.
        if ns == "mnt" && !file.exists() {
            continue;
        }
        let pinned = std::fs::metadata(file).unwrap();
        let live = std::fs::metadata(format!("/proc/{pid}/ns/{ns}")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(pinned.ino(), live.ino(), "ns/{ns}");
    }
    // Before start, `exec` gets the bundle's environment, not stepctr's (PID 1 has not
    // exec'd: its own environ is still the one create was given).
    let o = env.ok(&["exec", &id, "env"]);
    assert!(stdout(&o).contains("PATH="), "{}", stdout(&o));
    assert!(!stdout(&o).contains("STEPCTR_"), "{}", stdout(&o));
    let o = env.ok(&["start", &id]);
    assert_eq!(stdout(&o) + &stderr(&o), "", "start is quiet");
    // `stepctr exec` joins a running OCI container as any other.
    let o = env.ok(&["exec", &id, "hostname"]);
    assert_eq!(stdout(&o), "runc\n");
    wait_status(&env, &id, "running");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&out).unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The container's stdout is create's: PID 1 of its PID namespace wrote it.
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "started 1\n");
    // SIGTERM (kill's default) is dropped by PID 1 without a handler: still running.
    env.ok(&["kill", &id]);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(state(&env, &id)["status"], "running");
    env.ok(&["kill", &id, "KILL"]);
    let s = wait_status(&env, &id, "stopped");
    assert_eq!(s["pid"], 0);
    env.ok(&["delete", &id]);
    let e = one_error(&env.run(&["state", &id]));
    assert!(e.contains(&format!("container {id} does not exist")), "{e}");
    assert_no_leaks_with(&env, &id, &[pid]);
}

fn errors_name_the_container_and_its_state() {
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log.json");
    let log_s = log.to_string_lossy().into_owned();
    for cmd in [
        vec!["state", "nosuch"],
        vec!["start", "nosuch"],
        vec!["kill", "nosuch"],
        vec!["delete", "nosuch"],
    ] {
        let mut a = vec!["--log", &log_s, "--log-format", "json"];
        a.extend(cmd.iter());
        let e = one_error(&env.run(&a));
        assert!(
            e.contains("container nosuch does not exist"),
            "{cmd:?}: {e}"
        );
    }
    // --log json: one object per line, as conmon reads it.
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 4);
    for l in &lines {
        assert_eq!(l["level"], "error");
        assert!(l["msg"].as_str().unwrap().contains("does not exist"), "{l}");
        assert!(l["time"].as_str().unwrap().ends_with('Z'), "{l}");
    }
    // --root: state lives where the caller says (as podman's --runtime-flag / runc --root).
    let id = unique("ocierr");
    let root = tmp.path().join("state");
    let root_s = root.to_string_lossy().into_owned();
    let dir = bundle(&tmp.path().join("b"), |v| args(v, "exec sleep 60"));
    let bundle_s = dir.to_string_lossy().into_owned();
    let st = env
        .cmd(&["--root", &root_s, "create", "--bundle", &bundle_s, &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    assert!(root.join(&id).join("state.json").is_file());
    let again = env
        .cmd(&["--root", &root_s, "create", "--bundle", &bundle_s, &id])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(one_error(&again).contains(&format!("container {id} already exists")));
    // As runc: --force of a container that does not exist succeeds (podman cleans up so).
    env.ok(&["--root", &root_s, "delete", "--force", "nosuch"]);
    env.ok(&["--root", &root_s, "start", &id]);
    let e = one_error(&env.run(&["--root", &root_s, "start", &id]));
    assert!(
        e.contains(&format!("container {id} is not in created state")),
        "{e}"
    );
    let e = one_error(&env.run(&["--root", &root_s, "delete", &id]));
    assert!(
        e.contains(&format!(
            "cannot delete running container {id}: stop it or use --force"
        )),
        "{e}"
    );
    let pid: i32 = {
        let o = env.ok(&["--root", &root_s, "state", &id]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["pid"].as_i64().unwrap() as i32
    };
    env.ok(&["--root", &root_s, "delete", "-f", &id]);
    assert!(!root.join(&id).exists());
    assert!(!common::alive(pid), "PID 1 {pid} survived delete -f");
    assert!(common::cgroup_dirs_named(&id).is_empty());
    // As runc: a command that is not there fails create (by name or by path), nothing left.
    for (n, arg0, says) in [
        (1, "no-such-command", "executable file not found in $PATH"),
        (
            2,
            "/no/such/command",
            "/no/such/command: No such file or directory",
        ),
    ] {
        let missing = unique("ocimiss");
        let dir = bundle(&tmp.path().join(format!("m{n}")), |v| {
            v["process"]["args"] = serde_json::json!([arg0]);
        });
        let out = env
            .cmd(&["create", "--bundle", &dir.to_string_lossy(), &missing])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success());
        let e = one_error(&out);
        assert!(e.contains(says), "{e}");
        assert!(
            !env.container_dir(&missing).exists(),
            "create left {missing} behind"
        );
        assert!(common::cgroup_dirs_named(&missing).is_empty());
    }
}

fn delete_force_and_rm_and_reset_clean_up() {
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    let dir = bundle(&tmp.path().join("b"), |v| args(v, "exec sleep 60"));
    // delete of a created container (never started) kills its waiting PID 1.
    let ids: Vec<String> = (0..3).map(|_| unique("ocirm")).collect();
    let mut pids = Vec::new();
    for id in &ids {
        create(&env, &dir, id, &[]);
        pids.push(state(&env, id)["pid"].as_i64().unwrap() as i32);
    }
    env.ok(&["delete", &ids[0]]);
    assert_no_leaks_with(&env, &ids[0], &pids[..1]);
    // `stepctr rm -f` of a running OCI container, and `reset` of a created one.
    env.ok(&["start", &ids[1]]);
    env.ok(&["-q", "rm", "-f", &ids[1]]);
    assert_no_leaks_with(&env, &ids[1], &pids[1..2]);
    env.ok(&["-q", "reset"]);
    assert_no_leaks_with(&env, &ids[2], &pids[2..]);
}

/// What the container sees, printed by one shell script (stderr folded into stdout).
const PROBE: &str = r#"exec 2>&1; echo "args: $0 $*"; env | sort; echo "pwd: $(pwd)"; id; echo "hostname: $(hostname)"
echo mounts:; cut -d" " -f5 /proc/self/mountinfo
grep -E "^Cap(Eff|Bnd|Prm|Inh|Amb)" /proc/self/status
echo "nofile: $(ulimit -n) umask: $(umask)"
echo "kcore: $(wc -c < /proc/kcore)"; ls /proc/acpi /proc/scsi
if (echo 1 > /proc/sys/kernel/ns_last_pid) 2>/dev/null; then echo "proc/sys: rw"; else echo "proc/sys: ro"; fi
touch /rootfs-is-writable
echo "memory: $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes) pids: $(cat /sys/fs/cgroup/pids/pids.max)"
cd /sys/fs/cgroup; echo "soft: $(cat memory/memory.soft_limit_in_bytes) memsw: $(cat memory/memory.memsw.limit_in_bytes) cpu: $(cat cpu/cpu.shares) $(cat cpu/cpu.cfs_quota_us) $(cat cpu/cpu.cfs_period_us)"; cd /tmp
cut -d: -f1,2 /proc/self/cgroup
echo "net: $(readlink /proc/self/ns/net) uts: $(readlink /proc/self/ns/uts)"
for f in /dev/* /dev/pts/ptmx; do stat -c "%n %F %a %u:%g %t,%T" $f; done
echo "secret: $(cat /etc/secret | wc -c)"; touch /srv/x; touch /home/x
mkdir /home/d; echo "mkdir: $?"; echo "msgmax: $(cat /proc/sys/kernel/msgmax) oom: $(cat /proc/self/oom_score_adj)"
echo "data: $(cat /mnt/data/f)"; touch /mnt/data/g; stat -c "run: %a %u" /run; grep -E " /(run|mnt/data) " /proc/self/mountinfo | cut -d" " -f5,6"#;

fn same_probe_output_as_runc() {
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    // A network namespace to join by path, held by a process of ours.
    let mut holder = Command::new("unshare")
        .args(["--net", "sleep", "60"])
        .spawn()
        .expect("unshare --net sleep");
    let netns = format!("/proc/{}/ns/net", holder.id());
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_link(&netns).ok() == std::fs::read_link("/proc/self/ns/net").ok()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let joined = std::fs::read_link(&netns)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let host_uts = std::fs::read_link("/proc/self/ns/uts")
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f"), "from the host").unwrap();
    let data = data.to_string_lossy().into_owned();
    let make = |name: &str, cg: &str| {
        bundle(&tmp.path().join(name), |v| {
            v["process"]["args"] = json!(["sh", "-c", PROBE, "probe", "a b", "c"]);
            v["process"]["env"]
                .as_array_mut()
                .unwrap()
                .push(json!("FOO=bar baz"));
            v["process"]["cwd"] = json!("/tmp");
            v["process"]["user"] =
                json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 20], "umask": 23});
            v["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 256}]);
            v["process"]["capabilities"]["bounding"]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_CHOWN"));
            v["hostname"] = json!("probe");
            v["linux"]["cgroupsPath"] = json!(cg);
            v["linux"]["resources"] = json!({
                "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728},
                "pids": {"limit": 32},
                "cpu": {"shares": 512, "quota": 50000, "period": 100000}
            });
            let ns = v["linux"]["namespaces"].as_array_mut().unwrap();
            ns.retain(|n| n["type"] != "network");
            ns.push(json!({"type": "network", "path": netns}));
            v["linux"]["maskedPaths"]
                .as_array_mut()
                .unwrap()
                .push(json!("/etc/secret"));
            v["linux"]["readonlyPaths"]
                .as_array_mut()
                .unwrap()
                .push(json!("/srv"));
            v["root"]["readonly"] = json!(false);
            v["process"]["oomScoreAdj"] = json!(123);
            v["linux"]["sysctl"] = json!({"kernel.msgmax": "4242"});
            v["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]});
            v["linux"]["devices"] = json!([{"path": "/dev/mydev", "type": "c", "major": 1, "minor": 3, "fileMode": 416, "uid": 0, "gid": 1000}]);
            v["mounts"].as_array_mut().unwrap().extend([
                json!({"destination": "/mnt/data", "type": "bind", "source": data, "options": ["rbind", "ro", "nosuid"]}),
                json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=755", "size=1m"]}),
            ]);
        });
        let rootfs = tmp.path().join(name).join("rootfs");
        std::fs::write(rootfs.join("etc/secret"), "secret").unwrap();
        for d in ["srv", "home"] {
            let d = rootfs.join(d);
            std::fs::create_dir_all(&d).unwrap();
            std::os::unix::fs::chown(&d, Some(1000), Some(1000)).unwrap();
        }
        tmp.path().join(name)
    };
    // runc.
    let parent = unique("ocicg");
    let runc_id = unique("ocirunc");
    let rb = make("runc", &format!("/{parent}/{runc_id}"));
    let runc_root = tmp.path().join("runc-state");
    let runc = runc_run(&runc_root, &rb, &runc_id);
    assert!(runc.status.success(), "runc: {}", stderr(&runc));
    // stepctr.
    let id = unique("ociprobe");
    let sb = make("stepctr", &format!("/{parent}/{id}"));
    let (out, err) = run_to_end(&env, &sb, &id, &[]);
    for ctl in ["memory", "pids", "cpu"] {
        let ours = Path::new("/sys/fs/cgroup")
            .join(ctl)
            .join(&parent)
            .join(&id);
        assert!(!ours.exists(), "{} left", ours.display());
    }
    let _ = holder.kill();
    let _ = holder.wait();
    let _ = std::fs::remove_dir_all(&runc_root);
    // runc leaves the parent of its cgroup in every hierarchy; stepctr removed its own.
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let _ = std::fs::remove_dir(h.path().join(&parent));
        assert!(!h.path().join(&parent).exists(), "cgroup {parent} left");
    }
    assert_eq!(std::fs::read_to_string(&err).unwrap(), "");
    let ours = std::fs::read_to_string(&out).unwrap();
    let theirs = stdout(&runc);
    let normal = |s: &str| {
        let s = s.replace(&joined, "JOINED").replace(&host_uts, "HOST");
        // A new namespace's inode number is the kernel's choice.
        regex::Regex::new(r"uts:\[\d+\]")
            .unwrap()
            .replace_all(&s, "uts:NEW")
            .into_owned()
    };
    assert_eq!(
        normal(&ours),
        normal(&theirs),
        "stepctr (left) and runc (right) differ"
    );
    // The probe saw what it should (so an equal but empty output cannot pass).
    for want in [
        "args: probe a b c",
        "FOO=bar baz",
        "HOME=/",
        "pwd: /tmp",
        "uid=1000 gid=1000 groups=10,20",
        "hostname: probe",
        "/sys/fs/cgroup/memory",
        "CapBnd:\t0000000020000421",
        "CapEff:\t0000000000000000",
        "nofile: 256 umask: 0027",
        "kcore: \n",
        "proc/sys: ro",
        "touch: /srv/x: Read-only file system",
        "memory: 67108864 pids: 32",
        "soft: 33554432 memsw: 134217728 cpu: 512 50000 100000",
        "net: JOINED",
        "secret: 0",
        "mkdir: can't create directory '/home/d': Operation not permitted",
        "msgmax: 4242 oom: 123",
        "data: from the host",
        "touch: /mnt/data/g: Read-only file system",
        "run: 755 0",
        "/dev/mydev character special file 640 0:1000 1,3",
        "uts: uts:NEW",
    ] {
        assert!(normal(&ours).contains(want), "{want:?} not in:\n{ours}");
    }
    assert!(!normal(&ours).contains("touch: /home/x"), "{ours}");
}

fn unsupported_fields_are_refused() {
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    for (i, (edit, field)) in [
        (
            (|v: &mut Value| v["linux"]["personality"] = json!({"domain": "LINUX32"}))
                as fn(&mut Value),
            "linux.personality",
        ),
        (
            |v: &mut Value| v["linux"]["intelRdt"] = json!({"closID": "x"}),
            "linux.intelRdt",
        ),
        (
            |v: &mut Value| v["process"]["apparmorProfile"] = json!("docker-default"),
            "process.apparmorProfile",
        ),
        (
            |v: &mut Value| v["linux"]["resources"]["blockIO"] = json!({"weight": 10}),
            "linux.resources.blockIO",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = bundle(&tmp.path().join(format!("b{i}")), edit);
        let id = unique("ocibad");
        let e = refused_create(&env, &dir, &id);
        assert!(
            e.contains(&format!("config.json: {field} is not supported by stepctr")),
            "{e}"
        );
        assert_no_leaks(&env, &id);
    }
}

/// process.terminal: the pty's master arrives over --console-socket before create returns
/// (as conmon expects it); the container's stdio is the pty's slave, in its own devpts.
fn terminal_over_console_socket() {
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd};
    use stepctr::kernel::Kernel;
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    let dir = bundle(&tmp.path().join("b"), |v| {
        args(v, "tty; stty size; echo hi; sleep 0.2");
        v["process"]["terminal"] = json!(true);
        v["process"]["consoleSize"] = json!({"height": 33, "width": 101});
    });
    let sock = tmp.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let id = unique("ocitty");
    let got = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let k = stepctr::kernel::linux::Linux;
        k.recv_fd(conn.as_raw_fd(), "the master").unwrap()
    });
    let (out, _) = create(
        &env,
        &dir,
        &id,
        &["--console-socket", &sock.to_string_lossy()],
    );
    let master = got
        .join()
        .unwrap()
        .expect("a pty master over the console socket");
    env.ok(&["start", &id]);
    // SAFETY: the fd was just received and is ours alone.
    let mut f = unsafe { std::fs::File::from_raw_fd(master) };
    let mut text = Vec::new();
    let mut buf = [0u8; 256];
    // The slave's last close ends reads with EIO.
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
    }
    assert_eq!(
        String::from_utf8_lossy(&text),
        "/dev/pts/0\r\n33 101\r\nhi\r\n"
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "",
        "stdio went to the pty"
    );
    wait_status(&env, &id, "stopped");
    env.ok(&["delete", &id]);
    assert_no_leaks(&env, &id);
}

/// `kill --all`: every process of the container's cgroup, not only PID 1 (runc kill --all).
fn kill_all_signals_every_process() {
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    let dir = bundle(&tmp.path().join("b"), |v| {
        args(v, "sleep 61 & sleep 62 & wait");
    });
    let id = unique("ocikill");
    create(&env, &dir, &id, &[]);
    env.ok(&["start", &id]);
    wait_status(&env, &id, "running");
    let cg = Path::new("/sys/fs/cgroup/pids/stepctr")
        .join(&id)
        .join("cgroup.procs");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut procs = Vec::new();
    while procs.len() < 3 && Instant::now() < deadline {
        procs = std::fs::read_to_string(&cg)
            .unwrap()
            .lines()
            .map(|l| l.parse::<i32>().unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(procs.len(), 3, "{procs:?}");
    env.ok(&["kill", "--all", &id, "SIGKILL"]);
    wait_status(&env, &id, "stopped");
    let e = one_error(&env.run(&["kill", &id, "KILL"]));
    assert!(e.contains(&format!("container {id} is not running")), "{e}");
    env.ok(&["delete", &id]);
    assert_no_leaks_with(&env, &id, &procs);
}

/// A user namespace (linux.uidMappings/gidMappings): root inside is uid 100000 outside; the
/// same bundle under runc and stepctr, the same view from inside.
fn user_namespace_same_as_runc() {
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    let host_user = std::fs::read_link("/proc/self/ns/user").unwrap();
    let script = r#"exec 2>&1; id; cat /proc/self/uid_map /proc/self/gid_map
grep -E "^Cap(Eff|Bnd)" /proc/self/status; hostname; echo "ls: $(stat -c "%u:%g" / /bin/sh /proc)"
cut -d" " -f5 /proc/self/mountinfo; touch /x; mkdir /tmp/d && echo "tmp: ok"; ls -ln /dev/null | cut -c1-10
readlink /proc/self/ns/user"#;
    let make = |name: &str| {
        let dir = bundle(&tmp.path().join(name), |v| {
            v["process"]["args"] = json!(["sh", "-c", script]);
            v["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user"}));
            v["linux"]["uidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            v["linux"]["gidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            v["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]
            }));
        });
        // Root inside owns the rootfs (uid 100000 outside), as a real user-namespaced bundle.
        let st = Command::new("chown")
            .args(["-R", "100000:100000"])
            .arg(dir.join("rootfs"))
            .status()
            .unwrap();
        assert!(st.success());
        dir
    };
    let rb = make("runc");
    let runc_root = tmp.path().join("runc-state");
    let runc_id = unique("ociurunc");
    let runc = runc_run(&runc_root, &rb, &runc_id);
    let _ = std::fs::remove_dir_all(&runc_root);
    assert!(
        runc.status.success(),
        "runc: {}{}",
        stdout(&runc),
        stderr(&runc)
    );
    let id = unique("ociuser");
    let sb = make("stepctr");
    let (out, err) = run_to_end(&env, &sb, &id, &[]);
    assert_eq!(std::fs::read_to_string(&err).unwrap(), "");
    let ours = std::fs::read_to_string(&out).unwrap();
    let normal = |s: &str| {
        regex::Regex::new(r"user:\[\d+\]")
            .unwrap()
            .replace_all(s, "user:NS")
            .into_owned()
    };
    assert_eq!(
        normal(&ours),
        normal(&stdout(&runc)),
        "stepctr (left) and runc (right) differ"
    );
    for want in [
        "uid=0(root) gid=0(root)",
        "         0     100000      65536",
        "ls: 0:0\n0:0\n65534:65534",
        "tmp: ok",
        "crw-rw-rw-",
    ] {
        assert!(ours.contains(want), "{want:?} not in:\n{ours}");
    }
    assert!(
        !ours.contains(&host_user.to_string_lossy().into_owned()),
        "{ours}"
    );
}

/// The OCI `exec` as conmon calls it for `podman exec`: `exec --process P.json --detach
/// --pid-file F ID`. The process JSON's user, groups, cwd, env, rlimits and capabilities are
/// the command's (an ambient capability survives execve as uid 1000); stepctr returns at
/// once, the pid file holds its host pid (no newline).
fn exec_process_detached() {
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    let dir = bundle(&tmp.path().join("b"), |v| args(v, "exec sleep 60"));
    let id = unique("ociexec");
    let (_, _) = create(&env, &dir, &id, &[]);
    let pid1: i32 = state(&env, &id)["pid"].as_i64().unwrap() as i32;
    env.ok(&["start", &id]);
    wait_status(&env, &id, "running");
    let process = tmp.path().join("p.json");
    let script = "echo out $$ $(id -u):$(id -g) $(id -G) $PWD $FOO $HOME; ulimit -n; grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status; sleep 1";
    std::fs::write(
        &process,
        serde_json::to_vec(&json!({
            "terminal": false,
            "user": {"uid": 1000, "gid": 1000, "additionalGids": [10]},
            "args": ["sh", "-c", script],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "FOO=bar"],
            "cwd": "/etc",
            "capabilities": {
                "bounding": ["CAP_CHOWN"], "effective": ["CAP_CHOWN"],
                "permitted": ["CAP_CHOWN"], "inheritable": ["CAP_CHOWN"],
                "ambient": ["CAP_CHOWN"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 512}],
            "noNewPrivileges": true
        }))
        .unwrap(),
    )
    .unwrap();
    let pid_file = tmp.path().join("exec.pid");
    let out = tmp.path().join("out");
    let st = env
        .cmd(&[
            "exec",
            "--pid-file",
            &pid_file.to_string_lossy(),
            "--process",
            &process.to_string_lossy(),
            "--detach",
            &id,
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    assert!(st.success());
    let text = std::fs::read_to_string(&pid_file).unwrap();
    assert!(!text.ends_with('\n'), "{text:?}");
    let pid: i32 = text.parse().unwrap();
    assert!(
        common::alive(pid),
        "--detach returns while the command runs"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "out 2 1000:1000 1000 10 /etc bar /\n512\nCapEff:\t0000000000000001\nNoNewPrivs:\t1\n"
    );
    // What stepctr does not implement is refused by name.
    std::fs::write(
        &process,
        r#"{"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "apparmorProfile": "x"}"#,
    )
    .unwrap();
    let e = one_error(&env.run(&["exec", "--process", &process.to_string_lossy(), &id]));
    assert!(
        e.contains("process.apparmorProfile is not supported"),
        "{e}"
    );
    // Without --detach: it waits and exits with the command's code.
    std::fs::write(
        &process,
        r#"{"args": ["sh", "-c", "echo waited; exit 7"], "cwd": "/", "user": {"uid": 0, "gid": 0}}"#,
    )
    .unwrap();
    let o = env.run(&["exec", "--process", &process.to_string_lossy(), &id]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert_eq!(stdout(&o), "waited\n");
    env.ok(&["kill", &id, "KILL"]);
    wait_status(&env, &id, "stopped");
    env.ok(&["delete", &id]);
    assert_no_leaks_with(&env, &id, &[pid1, pid]);
}

/// The runtime-spec lifecycle, operation by operation, under runc and under stepctr: each
/// operation must succeed or fail alike, and `state` must report the same status after it
/// (what a conformance suite checks). The runtimes keep their state in temp roots.
fn lifecycle_results_match_runc() {
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    let dir = bundle(&tmp.path().join("b"), |v| args(v, "exec sleep 60"));
    let runc_root = tmp.path().join("runc-root");
    let bundle_s = dir.to_string_lossy().into_owned();
    let root_s = runc_root.to_string_lossy().into_owned();
    let id = unique("ocilc");
    // (operation, arguments after the command); `{id}` is the container.
    let ops: &[(&str, &[&str])] = &[
        ("state of an unknown id", &["state", "{id}"]),
        ("start of an unknown id", &["start", "{id}"]),
        ("kill of an unknown id", &["kill", "{id}", "KILL"]),
        ("delete of an unknown id", &["delete", "{id}"]),
        ("create", &["create", "--bundle", "{bundle}", "{id}"]),
        (
            "create again, same id",
            &["create", "--bundle", "{bundle}", "{id}"],
        ),
        ("state when created", &["state", "{id}"]),
        ("start", &["start", "{id}"]),
        ("start again", &["start", "{id}"]),
        ("state when running", &["state", "{id}"]),
        ("delete while running", &["delete", "{id}"]),
        (
            "kill with TERM (no handler in PID 1)",
            &["kill", "{id}", "TERM"],
        ),
        ("kill with SIGKILL", &["kill", "{id}", "SIGKILL"]),
        ("wait", &[]),
        ("state when stopped", &["state", "{id}"]),
        ("kill when stopped", &["kill", "{id}", "KILL"]),
        ("start when stopped", &["start", "{id}"]),
        ("delete", &["delete", "{id}"]),
        ("state after delete", &["state", "{id}"]),
        (
            "delete --force of an unknown id",
            &["delete", "--force", "{id}"],
        ),
    ];
    let run = |runtime: &str, op: &[&str]| -> (bool, Option<String>) {
        let op: Vec<String> = op
            .iter()
            .map(|a| a.replace("{id}", &id).replace("{bundle}", &bundle_s))
            .collect();
        let mut cmd = if runtime == "runc" {
            let mut c = Command::new("runc");
            c.args(["--root", &root_s]);
            c
        } else {
            env.cmd(&[])
        };
        let st = cmd
            .args(&op)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(tmp.path().join(format!("{runtime}.out"))).unwrap())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        let out = std::fs::read_to_string(tmp.path().join(format!("{runtime}.out"))).unwrap();
        let status = (op[0] == "state")
            .then(|| serde_json::from_str::<Value>(&out).ok())
            .flatten()
            .and_then(|v| v["status"].as_str().map(str::to_string));
        (st.success(), status)
    };
    let mut differences = Vec::new();
    for (what, op) in ops {
        if op.is_empty() {
            for runtime in ["runc", "stepctr"] {
                let deadline = Instant::now() + Duration::from_secs(5);
                while run(runtime, &["state", "{id}"]).1.as_deref() != Some("stopped")
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            continue;
        }
        if *what == "kill with TERM (no handler in PID 1)" {
            // Both ignore it the same way; give the signal time to (not) act.
            let (a, b) = (run("runc", op), run("stepctr", op));
            std::thread::sleep(Duration::from_millis(100));
            if a != b {
                differences.push(format!("{what}: runc {a:?}, stepctr {b:?}"));
            }
            continue;
        }
        let (a, b) = (run("runc", op), run("stepctr", op));
        if a != b {
            differences.push(format!("{what}: runc {a:?}, stepctr {b:?}"));
        }
    }
    let _ = Command::new("runc")
        .args(["--root", &root_s, "delete", "--force", &id])
        .status();
    let _ = env.run(&["delete", "--force", &id]);
    assert!(
        differences.is_empty(),
        "stepctr differs from runc:\n{}",
        differences.join("\n")
    );
    assert_no_leaks(&env, &id);
}

/// linux.cgroupsPath one level deep (`/TOP`: right below each hierarchy's root, no parent) and
/// three deep (`A/B/C`, relative: made with its parents, as `mkdir -p`): PID 1 runs in it, the
/// limit lands there, and delete removes the cgroup and the parents it made.
fn cgroups_path_at_any_depth() {
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    let top = unique("ocitop");
    let a = unique("ocia");
    for (i, path, rel) in [
        (0, format!("/{top}"), top.clone()),
        (1, format!("{a}/b/c"), format!("{a}/b/c")),
    ] {
        let dir = bundle(&tmp.path().join(format!("b{i}")), |v| {
            args(v, "cat /proc/self/cgroup");
            v["linux"]["cgroupsPath"] = json!(path);
            v["linux"]["resources"] = json!({"pids": {"limit": 7}});
        });
        let id = unique("ocicgp");
        let (out, err) = create(&env, &dir, &id, &[]);
        let pid = state(&env, &id)["pid"].as_i64().unwrap() as i32;
        let host_view = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let pids_line = host_view
            .lines()
            .find(|l| l.split(':').nth(1) == Some("pids") || l.starts_with("0::"))
            .unwrap_or_default()
            .to_string();
        assert!(
            pids_line.ends_with(&format!("/{rel}")),
            "{path}: PID 1 is in {pids_line}"
        );
        let v1 = Path::new("/sys/fs/cgroup/pids").join(&rel);
        let max = if v1.is_dir() {
            v1.join("pids.max")
        } else {
            Path::new("/sys/fs/cgroup").join(&rel).join("pids.max")
        };
        assert_eq!(std::fs::read_to_string(&max).unwrap().trim(), "7", "{path}");
        env.ok(&["start", &id]);
        wait_status(&env, &id, "stopped");
        env.ok(&["delete", &id]);
        assert_no_leaks_with(&env, &id, &[pid]);
        assert_eq!(std::fs::read_to_string(&err).unwrap(), "");
        // Inside its cgroup namespace the container sees its own cgroup as the root.
        assert!(
            std::fs::read_to_string(&out)
                .unwrap()
                .lines()
                .any(|l| l.ends_with(":/")),
            "{path}: {}",
            std::fs::read_to_string(&out).unwrap()
        );
        let first = rel.split('/').next().unwrap();
        for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            assert!(
                !h.path().join(first).exists(),
                "cgroup {first} left in {}",
                h.path().display()
            );
        }
    }
}

/// linux.rootfsPropagation: the container's / carries it (mountinfo's optional fields, seen
/// inside). `shared` is applied after pivot_root, which refuses a shared new root.
fn rootfs_propagation_applies_to_the_new_root() {
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    for (i, prop, want) in [
        (0, "shared", "shared:"),
        (1, "rshared", "shared:"),
        (2, "unbindable", "unbindable"),
        (3, "private", "-"),
    ] {
        let dir = bundle(&tmp.path().join(format!("p{i}")), |v| {
            // The optional fields of / (5th field on), up to the separator.
            args(v, "awk '$5 == \"/\" { for (i = 7; $i != \"-\"; i++) printf \"%s \", $i; print \"-\" }' /proc/self/mountinfo");
            v["linux"]["rootfsPropagation"] = json!(prop);
        });
        let id = unique("ociprop");
        let (out, err) = run_to_end(&env, &dir, &id, &[]);
        assert_eq!(std::fs::read_to_string(&err).unwrap(), "", "{prop}");
        let seen = std::fs::read_to_string(&out).unwrap();
        let line = seen.lines().next_back().unwrap_or_default();
        if want == "-" {
            assert_eq!(line, "-", "{prop}: {seen}");
        } else {
            assert!(line.contains(want), "{prop}: / has {line:?}, wanted {want}");
        }
    }
}

/// Without noNewPrivileges the seccomp filter goes in before the capabilities go, so before
/// PID 1 closes its fds. A profile that predates close_range (the runtime-tools default: ENOSYS
/// or EPERM for it) must not break create: the fds are closed one by one, as runc does.
fn a_profile_without_close_range_still_starts() {
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    for (i, errno) in [(0, 38), (1, 1)] {
        let dir = bundle(&tmp.path().join(format!("s{i}")), |v| {
            args(v, "echo started; ls /proc/self/fd");
            v["process"]["noNewPrivileges"] = json!(false);
            v["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["close_range"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno}]});
        });
        let id = unique("ocicr");
        let (out, err) = run_to_end(&env, &dir, &id, &["--preserve-fds", "0"]);
        assert_eq!(std::fs::read_to_string(&err).unwrap(), "", "errno {errno}");
        // stdio and ls's own directory fd: nothing of stepctr's leaked in.
        let seen = std::fs::read_to_string(&out).unwrap();
        let fds: Vec<&str> = seen.lines().skip(1).collect();
        assert_eq!(seen.lines().next(), Some("started"), "{seen}");
        assert_eq!(fds, ["0", "1", "2", "3"], "errno {errno}: {seen}");
    }
}

/// What the container's cgroups hold, read inside (runc and stepctr bind-mount its own
/// cgroup of each v1 hierarchy at /sys/fs/cgroup/CONTROLLER), and what the kernel enforces
/// on the probe itself (the CPUs and memory nodes it may use).
const CGROUP_PROBE: &str = r#"cd /sys/fs/cgroup
r() { cat "$1" 2>/dev/null || echo none; }
echo "swappiness: $(r memory/memory.swappiness) oom: $(head -n1 memory/memory.oom_control 2>/dev/null)"
echo "kmem: $(r memory/memory.kmem.limit_in_bytes) tcp: $(r memory/memory.kmem.tcp.limit_in_bytes)"
echo "cfs: $(r cpu/cpu.cfs_quota_us) $(r cpu/cpu.cfs_period_us) shares: $(r cpu/cpu.shares)"
echo "rt: $(r cpu/cpu.rt_runtime_us) $(r cpu/cpu.rt_period_us)"
echo "cpuset: $(r cpuset/cpuset.cpus) $(r cpuset/cpuset.mems)"
grep -E '^(Cpus|Mems)_allowed_list' /proc/self/status"#;

/// Real-time group scheduling (cgroup v1 with CONFIG_RT_GROUP_SCHED)?
fn has_rt_groups() -> bool {
    Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists()
}

/// The cgroup of `rel` (a cgroupsPath) removed from every hierarchy, saying whether any was there.
fn remove_cgroup_everywhere(rel: &str) -> bool {
    let mut found = false;
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let d = h.path().join(rel);
        if d.is_dir() {
            found = true;
            let _ = Command::new("find")
                .arg(&d)
                .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
                .status();
        }
    }
    found
}

/// linux.resources beyond the cgroup stage's limits (memory.swappiness, .disableOOMKiller,
/// .kernel/.kernelTCP, cpu.period, .cpus, .mems, .realtime*): one bundle under `runc run` and
/// under stepctr, the probe's outputs equal, both warn that kernel memory is ignored, and
/// stepctr leaves no cgroup.
fn cgroup_resources_same_as_runc() {
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    let rt = has_rt_groups();
    let make = |name: &str, cg: &str| {
        bundle(&tmp.path().join(name), |v| {
            args(v, CGROUP_PROBE);
            v["linux"]["cgroupsPath"] = json!(cg);
            v["linux"]["resources"] = json!({
                "memory": {"limit": 67108864, "swappiness": 42, "disableOOMKiller": true,
                    "kernel": 67108864, "kernelTCP": 33554432},
                "cpu": {"shares": 512, "quota": 50000, "period": 500000, "cpus": "0", "mems": "0"}
            });
            if rt {
                // Right below the root: only the root has real-time time to give.
                v["linux"]["resources"]["cpu"]["realtimePeriod"] = json!(1000000);
                v["linux"]["resources"]["cpu"]["realtimeRuntime"] = json!(10000);
            }
        })
    };
    let runc_id = unique("ocirunc");
    let rb = make("runc", &format!("/{runc_id}"));
    let runc_root = tmp.path().join("runc-state");
    let runc = runc_run(&runc_root, &rb, &runc_id);
    let _ = std::fs::remove_dir_all(&runc_root);
    remove_cgroup_everywhere(&runc_id);
    assert!(runc.status.success(), "runc: {}", stderr(&runc));
    let id = unique("ocires");
    let sb = make("stepctr", &format!("/{id}"));
    let (out, err) = run_to_end(&env, &sb, &id, &[]);
    assert!(!remove_cgroup_everywhere(&id), "cgroup {id} left");
    let ours = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        ours,
        stdout(&runc),
        "stepctr (left) and runc (right) differ"
    );
    // Kernel memory: ignored with a warning by both.
    assert!(
        stderr(&runc).contains("Kernel memory settings are ignored"),
        "{}",
        stderr(&runc)
    );
    let warned = std::fs::read_to_string(&err).unwrap();
    assert!(
        warned.contains("linux.resources.memory.kernel and .kernelTCP are ignored"),
        "{warned}"
    );
    if Path::new("/sys/fs/cgroup/cpuset").is_dir() {
        let mut want = vec![
            "swappiness: 42 oom: oom_kill_disable 1",
            "cfs: 50000 500000 shares: 512",
            "cpuset: 0 0",
            "Cpus_allowed_list:\t0\n",
            "Mems_allowed_list:\t0\n",
        ];
        if rt {
            want.push("rt: 10000 1000000");
        }
        for w in want {
            assert!(ours.contains(w), "{w:?} not in:\n{ours}");
        }
    }
}

/// cgroup v1's cpuset at any depth: each new parent gets its own parent's CPUs and memory
/// nodes (a new cpuset cgroup starts empty), the container what it asks for, and `delete`
/// removes them all. Values the kernel (or runc's checks) refuse fail create with one line
/// naming the field, and leave nothing.
fn cgroup_resources_nested_and_refused_leave_nothing() {
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    let cpuset = Path::new("/sys/fs/cgroup/cpuset");
    let v1 = cpuset.is_dir();
    let a = unique("ocics");
    let rel = format!("{a}/b/c");
    let dir = bundle(&tmp.path().join("ok"), |v| {
        args(v, "grep -E '^(Cpus|Mems)_allowed_list' /proc/self/status");
        v["linux"]["cgroupsPath"] = json!(rel);
        v["linux"]["resources"] =
            json!({"cpu": {"cpus": "0", "mems": "0"}, "memory": {"swappiness": 30}});
    });
    let id = unique("ocicpuset");
    let (out, err) = create(&env, &dir, &id, &[]);
    let pid = state(&env, &id)["pid"].as_i64().unwrap() as i32;
    let read = |p: &Path| std::fs::read_to_string(p).unwrap().trim().to_string();
    if v1 {
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let root = read(&cpuset.join(f));
            for p in [a.clone(), format!("{a}/b")] {
                assert_eq!(read(&cpuset.join(&p).join(f)), root, "{p}/{f}");
            }
            assert_eq!(read(&cpuset.join(&rel).join(f)), "0", "{rel}/{f}");
        }
        let swappiness = Path::new("/sys/fs/cgroup/memory").join(&rel);
        assert_eq!(read(&swappiness.join("memory.swappiness")), "30");
    }
    env.ok(&["start", &id]);
    wait_status(&env, &id, "stopped");
    env.ok(&["delete", &id]);
    assert_no_leaks_with(&env, &id, &[pid]);
    assert!(!remove_cgroup_everywhere(&a), "cgroup {a} left");
    assert_eq!(std::fs::read_to_string(&err).unwrap(), "");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "Cpus_allowed_list:\t0\nMems_allowed_list:\t0\n"
    );
    let mut refused = vec![(
        json!({"cpu": {"cpus": "99"}}),
        "linux.resources.cpu.cpus \"99\"",
    )];
    if v1 {
        refused.push((
            json!({"memory": {"swappiness": 101}}),
            "linux.resources.memory.swappiness 101",
        ));
    }
    if has_rt_groups() {
        // Below a parent that has no real-time runtime to give.
        refused.push((
            json!({"cpu": {"realtimeRuntime": 10000, "realtimePeriod": 1000000}}),
            "linux.resources.cpu.realtimeRuntime 10000",
        ));
    }
    for (i, (resources, field)) in refused.into_iter().enumerate() {
        let top = unique("ocibadcg");
        let dir = bundle(&tmp.path().join(format!("bad{i}")), |v| {
            args(v, "true");
            v["linux"]["cgroupsPath"] = json!(format!("{top}/x"));
            v["linux"]["resources"] = resources;
        });
        let id = unique("ocibadres");
        let e = refused_create(&env, &dir, &id);
        assert!(e.contains(&format!("config.json: {field}")), "{e}");
        assert_no_leaks(&env, &id);
        assert!(
            !remove_cgroup_everywhere(&top),
            "{field}: cgroup {top} left"
        );
    }
}
