//! Issue 9: bundles. `stepctr bundle IMAGE DIR` and `stepctr spec` write bundles that runc (the
//! yardstick) runs as they are; `stepctr features` says what stepctr supports. Root: runc runs
//! containers. runc's state lives in a temp --root; every container is gone afterwards.

mod common;

use common::{stderr, stdout, Env};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};

fn main() {
    common::run_tests(
        tests![
            bundle_runs_under_runc,
            bundle_with_the_images_user,
            spec_bundle_runs_under_runc,
            spec_refuses_to_overwrite,
            bundle_refuses_a_non_empty_dir,
            features_lists_what_stepctr_supports,
        ],
        true,
    );
}

fn read_config(bundle: &Path) -> Value {
    let text = std::fs::read_to_string(bundle.join("config.json")).expect("read config.json");
    serde_json::from_str(&text).expect("config.json is JSON")
}

fn write_config(bundle: &Path, v: &Value) {
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_string_pretty(v).unwrap(),
    )
    .unwrap();
}

/// `runc --root STATE run -b BUNDLE ID`, then checks that runc left nothing: no container in
/// its state, no cgroup named after it.
fn runc_run(env: &Env, bundle: &Path, id: &str) -> Output {
    let state = env.tmp().join("runc-state");
    let out = Command::new("runc")
        .arg("--root")
        .arg(&state)
        .args(["run", "-b"])
        .arg(bundle)
        .arg(id)
        .output()
        .expect("run runc");
    let list = Command::new("runc")
        .arg("--root")
        .arg(&state)
        .args(["list", "-q"])
        .output()
        .expect("runc list");
    let left = String::from_utf8_lossy(&list.stdout).trim().to_string();
    if !left.is_empty() {
        let _ = Command::new("runc")
            .arg("--root")
            .arg(&state)
            .args(["delete", "-f", id])
            .status();
        panic!("runc left containers behind: {left}");
    }
    for ctrl in ["pids", "memory", "cpu", "devices"] {
        let dir = Path::new("/sys/fs/cgroup").join(ctrl).join(id);
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    out
}

fn set_args(cfg: &mut Value, script: &str) {
    cfg["process"]["args"] = json!(["sh", "-c", script]);
}

const PROBE: &str = "echo hi; id; pwd; hostname; grep -E '^Cap(Eff|Bnd)' /proc/self/status; \
                     echo \"PATH=$PATH\"; cat /proc/self/attr/current 2>/dev/null; true";

fn bundle_runs_under_runc() {
    let env = Env::new();
    // An existing empty directory is fine.
    let b = env.tmp().join("bundle");
    std::fs::create_dir(&b).unwrap();
    let out = env.ok(&["bundle", "localhost/stepctr-busybox", b.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(err.contains("[2/6] load"), "narrated as load:\n{err}");
    assert!(err.contains("runc run -b"), "says how to run it:\n{err}");
    assert!(b.join("rootfs/bin/busybox").is_file());

    let mut cfg = read_config(&b);
    // The image's config, as a runtime reads it.
    assert_eq!(cfg["process"]["args"], json!(["sh"]));
    assert_eq!(cfg["process"]["terminal"], json!(false));
    assert_eq!(cfg["process"]["cwd"], json!("/"));
    assert_eq!(cfg["root"]["path"], json!("rootfs"));
    assert_eq!(cfg["hostname"], json!("stepctr-busybox"));
    assert_eq!(
        cfg["annotations"]["org.opencontainers.image.ref.name"],
        json!("localhost/stepctr-busybox:latest")
    );
    assert_eq!(
        cfg["annotations"]["org.opencontainers.image.os"],
        json!("linux")
    );
    assert!(cfg["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e.as_str().unwrap().starts_with("PATH=")));

    set_args(&mut cfg, PROBE);
    write_config(&b, &cfg);
    let id = common::unique("ob");
    let out = runc_run(&env, &b, &id);
    assert!(out.status.success(), "runc run: {}", stderr(&out));
    let got = stdout(&out);
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines[0], "hi", "{got}");
    assert_eq!(lines[1], "uid=0(root) gid=0(root)", "{got}");
    assert_eq!(lines[2], "/", "{got}");
    assert_eq!(lines[3], "stepctr-busybox", "{got}");
    // docker's 14 capabilities, as `stepctr run` gives.
    assert_eq!(lines[4], "CapEff:\t00000000a80425fb", "{got}");
    assert_eq!(lines[5], "CapBnd:\t00000000a80425fb", "{got}");
    assert!(lines[6].starts_with("PATH=/"), "{got}");
}

fn bundle_with_the_images_user() {
    let env = Env::new();
    // A copy of the default image whose config says User nobody and WorkingDir /tmp (umoci
    // edits the config of an OCI layout), pulled into a store of its own.
    let layout = env.tmp().join("layout");
    let src = format!(
        "oci:{}:localhost/stepctr-busybox:latest",
        env.root.join("images").display()
    );
    let st = Command::new("skopeo")
        .args(["copy", "-q", &src])
        .arg(format!("oci:{}:u", layout.display()))
        .status()
        .expect("skopeo");
    assert!(st.success(), "skopeo copy");
    let st = Command::new("umoci")
        .args(["config", "--image"])
        .arg(format!("{}:u", layout.display()))
        .args([
            "--config.user",
            "nobody",
            "--config.workingdir",
            "/tmp",
            "--config.cmd",
            "id",
            "--config.env",
            "GREETING=hello",
        ])
        .status()
        .expect("umoci");
    assert!(st.success(), "umoci config");
    let b = env.tmp().join("bundle-u");
    let out = env.ok(&[
        "bundle",
        &format!("oci:{}:u", layout.display()),
        b.to_str().unwrap(),
    ]);
    drop(out);
    let cfg = read_config(&b);
    assert_eq!(cfg["process"]["user"]["uid"], json!(65534), "{cfg}");
    assert_eq!(cfg["process"]["user"]["gid"], json!(65534), "{cfg}");
    assert_eq!(cfg["process"]["cwd"], json!("/tmp"));
    assert_eq!(cfg["process"]["args"], json!(["id"]));
    assert!(cfg["process"]["env"]
        .as_array()
        .unwrap()
        .contains(&json!("GREETING=hello")));
    let id = common::unique("obu");
    let out = runc_run(&env, &b, &id);
    assert!(out.status.success(), "runc run: {}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "uid=65534(nobody) gid=65534(nogroup)");
}

fn spec_bundle_runs_under_runc() {
    let env = Env::new();
    // A rootfs from `stepctr bundle`, with the config of `stepctr spec` instead of its own.
    let b = env.tmp().join("bundle-s");
    env.ok(&[
        "-q",
        "bundle",
        "localhost/stepctr-busybox",
        b.to_str().unwrap(),
    ]);
    std::fs::remove_file(b.join("config.json")).unwrap();
    let out = env.ok(&["spec", "-b", b.to_str().unwrap()]);
    assert_eq!(stdout(&out), "");

    // The same as `runc spec`, but for the hostname.
    let r = env.tmp().join("runc-spec");
    std::fs::create_dir(&r).unwrap();
    let st = Command::new("runc")
        .args(["spec", "-b"])
        .arg(&r)
        .status()
        .unwrap();
    assert!(st.success());
    let mut ours = read_config(&b);
    let theirs = read_config(&r);
    assert_eq!(ours["hostname"], json!("stepctr"));
    ours["hostname"] = theirs["hostname"].clone();
    assert_eq!(ours, theirs, "stepctr spec differs from runc spec");

    let mut cfg = read_config(&b);
    cfg["process"]["terminal"] = json!(false);
    set_args(&mut cfg, PROBE);
    write_config(&b, &cfg);
    let id = common::unique("os");
    let out = runc_run(&env, &b, &id);
    assert!(out.status.success(), "runc run: {}", stderr(&out));
    let got = stdout(&out);
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(
        &lines[..4],
        ["hi", "uid=0(root) gid=0(root)", "/", "stepctr"]
    );
    // AUDIT_WRITE, KILL, NET_BIND_SERVICE: bits 29, 5, 10.
    assert_eq!(lines[4], "CapEff:\t0000000020000420", "{got}");
}

fn spec_refuses_to_overwrite() {
    let env = Env::new();
    let d = env.tmp().join("spec-twice");
    std::fs::create_dir(&d).unwrap();
    // Default: the current directory.
    let out = env.cmd(&["spec"]).current_dir(&d).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let first = std::fs::read(d.join("config.json")).unwrap();
    let out = env.run(&["spec", "--bundle", d.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("File config.json exists. Remove it first"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(d.join("config.json")).unwrap(), first);
    // --rootless: a user namespace mapping the caller (root here) to root.
    let r = env.tmp().join("spec-rootless");
    std::fs::create_dir(&r).unwrap();
    env.ok(&["spec", "--rootless", "-b", r.to_str().unwrap()]);
    let cfg = read_config(&r);
    let ns: Vec<&str> = cfg["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(ns.contains(&"user") && !ns.contains(&"network"), "{ns:?}");
    assert_eq!(
        cfg["linux"]["uidMappings"],
        json!([{"containerID": 0, "hostID": 0, "size": 1}])
    );
}

fn bundle_refuses_a_non_empty_dir() {
    let env = Env::new();
    let d = env.tmp().join("full");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("keep"), "mine").unwrap();
    let out = env.run(&["bundle", "localhost/stepctr-busybox", d.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is not empty"), "{}", stderr(&out));
    let names: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["keep"], "the directory is left as it was");
    // A file is not a directory.
    let out = env.run(&[
        "bundle",
        "localhost/stepctr-busybox",
        d.join("keep").to_str().unwrap(),
    ]);
    assert!(stderr(&out).contains("not a directory"), "{}", stderr(&out));
    // An image that is not there: nothing is left behind.
    let gone = env.tmp().join("never");
    let out = env.run(&["bundle", "oci:/nonexistent-layout", gone.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(!gone.exists(), "{} left behind", gone.display());
}

fn features_lists_what_stepctr_supports() {
    let env = Env::new();
    let out = env.ok(&["features"]);
    let f: Value = serde_json::from_str(&stdout(&out)).expect("features is JSON");
    assert_eq!(f["ociVersionMin"], json!("1.0.0"));
    assert_eq!(f["ociVersionMax"], json!("1.2.0"));
    // docs/oci-plan.md sections 3 and 5: runc's hooks, mount flags, every namespace but time.
    assert_eq!(
        f["hooks"],
        json!([
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ])
    );
    let opts: Vec<&str> = f["mountOptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    for o in [
        "ro", "rw", "nosuid", "nodev", "noexec", "bind", "rbind", "rprivate",
    ] {
        assert!(opts.contains(&o), "mount option {o} missing: {opts:?}");
    }
    let linux = &f["linux"];
    let mut ns: Vec<&str> = linux["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    ns.sort();
    assert_eq!(
        ns,
        ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"]
    );
    let caps = linux["capabilities"].as_array().unwrap();
    assert_eq!(caps[0], json!("CAP_CHOWN"));
    assert!(caps.contains(&json!("CAP_SYS_ADMIN")));
    assert_eq!(linux["cgroup"]["v1"], json!(true));
    assert_eq!(linux["cgroup"]["v2"], json!(true));
    assert_eq!(linux["cgroup"]["systemd"], json!(false));
    let sc = &linux["seccomp"];
    assert_eq!(sc["enabled"], json!(true));
    let actions = sc["actions"].as_array().unwrap();
    assert!(actions.contains(&json!("SCMP_ACT_ERRNO")));
    assert!(!actions.contains(&json!("SCMP_ACT_NOTIFY")));
    assert_eq!(sc["operators"].as_array().unwrap().len(), 7);
    assert_eq!(
        sc["archs"],
        json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
    );
    assert_eq!(linux["apparmor"]["enabled"], json!(false));
    assert_eq!(linux["selinux"]["enabled"], json!(false));
    assert_eq!(
        f["annotations"]["io.github.stepctr.version"],
        json!(env!("CARGO_PKG_VERSION"))
    );
}
