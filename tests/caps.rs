//! Capabilities and no_new_privs (issue 5), seen from inside the container the way
//! `capsh --print` would: the five sets in /proc/self/status, for root, for `-u nobody`, with
//! `--cap-add`/`--cap-drop`/`--privileged`, in PID 1 and in an `exec`'d process; and what the
//! missing capabilities prevent (mount, loading a kernel module).

mod common;

use common::{assert_no_leaks, stderr, stdout, unique, Env};
use std::collections::BTreeMap;

const IMAGE: &str = "localhost/stepctr-busybox:latest";

/// docker's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
/// NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
const DOCKER: u64 = 0x0000_0000_a804_25fb;
const CAP_NET_ADMIN: u64 = 1 << 12;
const CAP_CHOWN: u64 = 1 << 0;

fn main() {
    common::run_tests(
        tests![
            root_gets_dockers_default_set,
            cap_drop_all_leaves_nothing,
            cap_add_and_cap_drop_change_the_set,
            privileged_keeps_the_hosts_bounding_set,
            a_non_root_user_has_no_capabilities,
            no_new_privs_by_default_and_off_on_request,
            mount_is_refused_without_cap_sys_admin,
            loading_a_kernel_module_is_refused,
            exec_gets_the_same_sets,
            bad_capability_names_are_one_clear_line,
            what_the_host_withholds_cannot_be_added,
        ],
        true,
    )
}

/// The `Cap*` and `NoNewPrivs` lines of /proc/self/status of `sh` run in a new container
/// with these extra flags: name -> value.
fn status_in(env: &Env, flags: &[&str]) -> BTreeMap<String, u64> {
    let name = unique("caps");
    let mut args = vec!["run", "--rm", "--name", &name];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[
        IMAGE,
        "grep",
        "-E",
        "^(Cap|NoNewPrivs)",
        "/proc/self/status",
    ]);
    let out = env.ok(&args);
    assert_no_leaks(env, &name);
    parse_status(&stdout(&out))
}

fn parse_status(text: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if !k.starts_with("Cap") && k != "NoNewPrivs" {
            continue;
        }
        let v = v.trim();
        let n = if k == "NoNewPrivs" {
            v.parse().unwrap_or(u64::MAX)
        } else {
            u64::from_str_radix(v, 16).unwrap_or(u64::MAX)
        };
        m.insert(k.to_string(), n);
    }
    for k in [
        "CapInh",
        "CapPrm",
        "CapEff",
        "CapBnd",
        "CapAmb",
        "NoNewPrivs",
    ] {
        assert!(m.contains_key(k), "{k} missing in:\n{text}");
    }
    m
}

/// The sets, as (inheritable, permitted, effective, bounding, ambient).
fn sets(m: &BTreeMap<String, u64>) -> (u64, u64, u64, u64, u64) {
    (
        m["CapInh"],
        m["CapPrm"],
        m["CapEff"],
        m["CapBnd"],
        m["CapAmb"],
    )
}

/// This (root) test process's own status: the host's sets, as stepctr gets them.
fn host() -> BTreeMap<String, u64> {
    parse_status(&std::fs::read_to_string("/proc/self/status").unwrap())
}

fn root_gets_dockers_default_set() {
    let env = Env::new();
    let m = status_in(&env, &[]);
    // Exactly what `docker run` shows (docker >= 20.10.14: no inheritable, no ambient).
    assert_eq!(sets(&m), (0, DOCKER, DOCKER, DOCKER, 0), "{m:x?}");
}

fn cap_drop_all_leaves_nothing() {
    let env = Env::new();
    let m = status_in(&env, &["--cap-drop", "ALL"]);
    assert_eq!(sets(&m), (0, 0, 0, 0, 0), "{m:x?}");
}

fn cap_add_and_cap_drop_change_the_set() {
    let env = Env::new();
    let m = status_in(&env, &["--cap-add", "NET_ADMIN"]);
    let want = DOCKER | CAP_NET_ADMIN;
    assert_eq!(sets(&m), (0, want, want, want, 0), "{m:x?}");
    // Any spelling docker accepts; drop and add together.
    let m = status_in(&env, &["--cap-add", "cap_net_admin", "--cap-drop", "chown"]);
    let want = (DOCKER | CAP_NET_ADMIN) & !CAP_CHOWN;
    assert_eq!(sets(&m), (0, want, want, want, 0), "{m:x?}");
    // --cap-drop ALL --cap-add X: only X.
    let m = status_in(&env, &["--cap-drop", "ALL", "--cap-add", "CAP_CHOWN"]);
    assert_eq!(sets(&m), (0, CAP_CHOWN, CAP_CHOWN, CAP_CHOWN, 0), "{m:x?}");
}

fn privileged_keeps_the_hosts_bounding_set() {
    let env = Env::new();
    let ours = host();
    let m = status_in(&env, &["--privileged"]);
    let bnd = ours["CapBnd"];
    assert_eq!(sets(&m), (0, bnd, bnd, bnd, 0), "{m:x?}");
    assert_ne!(bnd, DOCKER);
}

fn a_non_root_user_has_no_capabilities() {
    let env = Env::new();
    // As docker: the bounding set is the container's, the rest empty (setresuid away from 0
    // empties them, and execve of a plain binary gives a non-root user nothing).
    let m = status_in(&env, &["-u", "nobody"]);
    assert_eq!(sets(&m), (0, 0, 0, DOCKER, 0), "{m:x?}");
    let m = status_in(&env, &["-u", "nobody", "--cap-add", "NET_ADMIN"]);
    assert_eq!(sets(&m), (0, 0, 0, DOCKER | CAP_NET_ADMIN, 0), "{m:x?}");
    // With no_new_privs off and the filter installed first: the same sets.
    let m = status_in(
        &env,
        &["-u", "nobody", "--security-opt", "no-new-privileges=false"],
    );
    assert_eq!(sets(&m), (0, 0, 0, DOCKER, 0), "{m:x?}");
    // uid 0 named explicitly is root.
    let m = status_in(&env, &["-u", "0"]);
    assert_eq!(sets(&m), (0, DOCKER, DOCKER, DOCKER, 0), "{m:x?}");
}

fn no_new_privs_by_default_and_off_on_request() {
    let env = Env::new();
    assert_eq!(status_in(&env, &[])["NoNewPrivs"], 1);
    assert_eq!(
        status_in(&env, &["--security-opt", "no-new-privileges"])["NoNewPrivs"],
        1
    );
    let m = status_in(&env, &["--security-opt", "no-new-privileges=false"]);
    assert_eq!(m["NoNewPrivs"], 0);
    // Without no_new_privs the seccomp filter is installed before the capabilities go (it
    // then needs CAP_SYS_ADMIN): the sets are the same.
    assert_eq!(sets(&m), (0, DOCKER, DOCKER, DOCKER, 0), "{m:x?}");
    let m = status_in(
        &env,
        &[
            "--security-opt",
            "no-new-privileges=false",
            "--cap-drop",
            "ALL",
        ],
    );
    assert_eq!((m["NoNewPrivs"], sets(&m)), (0, (0, 0, 0, 0, 0)), "{m:x?}");
}

/// Run `script` in a container with these flags; (exit code, stdout + stderr).
fn sh(env: &Env, flags: &[&str], script: &str) -> (i32, String) {
    let name = unique("caps-sh");
    let mut args = vec!["run", "--rm", "--name", &name];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[IMAGE, "sh", "-c", script]);
    let out = env.run(&args);
    assert_no_leaks(env, &name);
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

const MOUNT: &str = "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m && grep /tmp/m /proc/mounts";

fn mount_is_refused_without_cap_sys_admin() {
    let env = Env::new();
    // Under the default profile, and with seccomp off (capabilities alone are the wall):
    // busybox mount says "permission denied" for EPERM.
    for flags in [&[][..], &["--security-opt", "seccomp=unconfined"][..]] {
        let (code, out) = sh(&env, flags, MOUNT);
        assert_ne!(code, 0, "{flags:?}: {out}");
        assert!(out.contains("permission denied"), "{flags:?}: {out}");
    }
    // The same mount works once CAP_SYS_ADMIN is given back (the lesson's contrast): it was
    // the missing capability that refused it.
    let flags = [
        "--security-opt",
        "seccomp=unconfined",
        "--cap-add",
        "SYS_ADMIN",
    ];
    let (code, out) = sh(&env, &flags, MOUNT);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("none /tmp/m tmpfs"), "{out}");
    let (code, out) = sh(&env, &["--privileged"], MOUNT);
    assert_eq!(code, 0, "{out}");
}

fn loading_a_kernel_module_is_refused() {
    let env = Env::new();
    // Any file will do: the kernel checks CAP_SYS_MODULE before it looks at the module.
    let (code, out) = sh(&env, &[], "insmod /etc/passwd");
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    // With seccomp off, CAP_SYS_MODULE alone refuses it (EPERM), on a kernel that loads
    // modules at all (one built without them says ENOSYS to everyone).
    let modules = std::path::Path::new("/proc/modules").exists();
    let (code, out) = sh(
        &env,
        &["--security-opt", "seccomp=unconfined"],
        "insmod /etc/passwd",
    );
    assert_ne!(code, 0, "{out}");
    if modules {
        assert!(out.contains("Operation not permitted"), "{out}");
    }
}

fn exec_gets_the_same_sets() {
    let env = Env::new();
    let name = unique("caps-exec");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--cap-add",
        "NET_ADMIN",
        "--cap-drop",
        "CHOWN",
        IMAGE,
        "sleep",
        "100",
    ]);
    let pid1 = env.state(&name)["pid"].as_i64().expect("pid") as i32;
    let want = (DOCKER | CAP_NET_ADMIN) & !CAP_CHOWN;
    let of_pid1 = parse_status(&std::fs::read_to_string(format!("/proc/{pid1}/status")).unwrap());
    assert_eq!(sets(&of_pid1), (0, want, want, want, 0), "{of_pid1:x?}");
    assert_eq!(of_pid1["NoNewPrivs"], 1);
    let grep = ["grep", "-E", "^(Cap|NoNewPrivs)", "/proc/self/status"];
    let mut args = vec!["exec", &name];
    args.extend_from_slice(&grep);
    let m = parse_status(&stdout(&env.ok(&args)));
    assert_eq!(m, of_pid1, "exec'd process differs from PID 1");
    let mut args = vec!["exec", "-u", "nobody", &name];
    args.extend_from_slice(&grep);
    let m = parse_status(&stdout(&env.ok(&args)));
    assert_eq!(
        (m["NoNewPrivs"], sets(&m)),
        (1, (0, 0, 0, want, 0)),
        "{m:x?}"
    );
    env.ok(&["rm", "-f", &name]);
    assert_no_leaks(&env, &name);
}

/// One `stepctr: error:` line, a non-zero exit, no panic, and no container left.
fn refused(env: &Env, name: &str, flags: &[&str]) -> String {
    let mut args = vec!["-q", "run", "--rm", "--name", name];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[IMAGE, "true"]);
    let out = env.run(&args);
    let err = stderr(&out);
    assert!(!out.status.success(), "{flags:?} accepted");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("stepctr: error: "), "{err}");
    assert_no_leaks(env, name);
    err
}

fn bad_capability_names_are_one_clear_line() {
    let env = Env::new();
    let name = unique("caps-bad");
    let err = refused(&env, &name, &["--cap-add", "FLY"]);
    assert!(
        err.contains("--cap-add") && err.contains("unknown capability \"FLY\""),
        "{err}"
    );
    let err = refused(&env, &name, &["--cap-drop", "CAP_NOPE"]);
    assert!(
        err.contains("--cap-drop") && err.contains("unknown capability \"CAP_NOPE\""),
        "{err}"
    );
    assert!(!env.container_dir(&name).exists());
}

/// A capability this host does not give stepctr (here CAP_SYS_RESOURCE, when the machine is
/// itself a container without it) cannot be added: one line that says why.
fn what_the_host_withholds_cannot_be_added() {
    let env = Env::new();
    let bnd = host()["CapBnd"];
    let Some(missing) = (0..=40u32).find(|c| bnd & (1 << c) == 0) else {
        eprintln!("this host withholds no capability: nothing to check");
        return;
    };
    let names = [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    let cap = names[missing as usize];
    let name = unique("caps-withheld");
    let err = refused(&env, &name, &["--cap-add", cap]);
    assert!(
        err.contains(&format!("--cap-add {cap}")) && err.contains("does not have"),
        "{err}"
    );
    // --privileged still works: it keeps what there is.
    assert_eq!(status_in(&env, &["--privileged"])["CapBnd"], bnd);
}
