//! Issue 9 follow-up: config.json hooks (src/oci/hooks.rs). The same bundle, its hooks
//! appending what they see to a log (args, env, mount namespace, cwd, the state JSON on
//! stdin), under runc 1.1.5 and under stepctr: the same lines in the same order. Failing hooks
//! fail the operation as runc's do and leave nothing; a timeout kills the hook.

mod common;

use common::{assert_no_leaks, stderr, unique, Env};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn main() {
    common::run_tests(
        tests![
            same_hook_log_as_runc,
            failing_hooks_destroy_the_container,
            poststart_and_poststop_failures,
            poststart_runs_after_the_exec,
            timeout_kills_the_hook,
            bad_hooks_are_refused,
            hooks_are_narrated,
        ],
        true,
    );
}

/// A bundle in `dir`: the rootfs, `runc spec`'s config.json with `hooks`, and a host script
/// `dir/hook.sh` appending one line per call to `dir/log`.
fn bundle(dir: &Path, hooks: Value, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let dir = common::runc_spec_bundle(dir, |v| {
        v["process"]["args"] = json!(["true"]);
        v["root"]["readonly"] = json!(false);
        v["hooks"] = hooks;
        edit(v);
    });
    let script = dir.join("hook.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s|%s|%s|%s|%s\\n' \"$*\" \"$HK\" \"$(readlink /proc/self/ns/mnt)\" \"$(pwd)\" \"$(cat)\" >> {}/log\n",
            dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    dir
}

/// A hook running `dir/hook.sh` (a host path).
fn logging(dir: &Path, kind: &str) -> Value {
    json!({"path": dir.join("hook.sh"), "args": ["hook.sh", kind, "x y"], "env": [format!("HK={kind}")]})
}

/// Run `c` with stdout and stderr into files (a container's PID 1 keeps create's stdio: a
/// pipe would keep `output()` waiting for the container's end).
fn output(mut c: Command) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let status = c
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .status()
        .expect("run");
    Output {
        status,
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    }
}

fn runc(root: &Path, args: &[&str], cwd: &Path) -> Output {
    let mut c = Command::new("runc");
    c.arg("--root").arg(root).args(args).current_dir(cwd);
    output(c)
}

fn stepctr(env: &Env, args: &[&str], cwd: &Path) -> Output {
    let mut c = env.cmd(args);
    c.current_dir(cwd);
    output(c)
}

/// The log, each line normalised: the bundle's path, the mount namespace (ours = "runtime",
/// another = "container"), the state's pid (1, "host" or none), ociVersion dropped.
fn log_lines(dir: &Path, file: &Path) -> Vec<String> {
    let ours = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.splitn(5, '|').collect();
            assert_eq!(f.len(), 5, "{l}");
            let ns = if Path::new(f[2]) == ours {
                "runtime"
            } else {
                "container"
            };
            let mut st: Value = serde_json::from_str(f[4]).unwrap_or_else(|_| panic!("{l}"));
            st.as_object_mut().unwrap().remove("ociVersion");
            let pid = match st["pid"].as_i64() {
                None => "none".to_string(),
                Some(1) => "1".to_string(),
                Some(_) => "host".to_string(),
            };
            st["pid"] = json!(pid);
            let d = dir.to_string_lossy();
            format!("{}|{}|{}|{}|{}", f[0], f[1], ns, f[3], st)
                .replace(&*d, "BUNDLE")
                .replace(&*unique_id_of(&st), "ID")
        })
        .collect()
}

fn unique_id_of(st: &Value) -> String {
    st["id"].as_str().unwrap_or("no id").to_string()
}

fn wait_stopped(status: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while status() != "stopped" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status_of(out: &Output) -> String {
    serde_json::from_slice::<Value>(&out.stdout)
        .map(|v| v["status"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// All six kinds under runc and stepctr: the same lines. runc 1.1.5 runs poststart during
/// `create` (status "created"); the spec (and stepctr) after the user process started, in
/// `start` (status "running"): that line is compared on its own.
fn same_hook_log_as_runc() {
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    let make = |name: &str| {
        let dir = tmp.path().join(name);
        let mut hooks = json!({});
        for kind in [
            "prestart",
            "createRuntime",
            "createContainer",
            "poststart",
            "poststop",
        ] {
            hooks[kind] = json!([logging(&dir, kind)]);
        }
        // startContainer: resolved in the container, busybox's sh, logging inside the rootfs.
        hooks["startContainer"] = json!([{"path": "/bin/sh", "args": ["sh", "-c",
            "echo \"startContainer|$HK|$(id -u)|$(pwd)|$(cat)\" >> /hooklog", "sh"],
            "env": ["HK=startContainer"]}]);
        bundle(&dir, hooks, |v| {
            v["process"]["args"] = json!(["sh", "-c", "echo user >> /hooklog"]);
        })
    };
    let rb = make("runc");
    let rid = unique("hookrunc");
    let rroot = tmp.path().join("runc-state");
    let o = runc(&rroot, &["create", "-b", rb.to_str().unwrap(), &rid], &rb);
    assert!(o.status.success(), "runc create: {}", stderr(&o));
    let o = runc(&rroot, &["start", &rid], &rb);
    assert!(o.status.success(), "runc start: {}", stderr(&o));
    wait_stopped(|| status_of(&runc(&rroot, &["state", &rid], &rb)));
    let o = runc(&rroot, &["delete", &rid], &rb);
    assert!(o.status.success(), "runc delete: {}", stderr(&o));

    let sb = make("stepctr");
    let id = unique("hookstep");
    let o = stepctr(&env, &["create", "-b", sb.to_str().unwrap(), &id], &sb);
    assert!(o.status.success(), "stepctr create: {}", stderr(&o));
    let o = stepctr(&env, &["start", &id], &sb);
    assert!(o.status.success(), "stepctr start: {}", stderr(&o));
    wait_stopped(|| status_of(&stepctr(&env, &["state", &id], &sb)));
    let o = stepctr(&env, &["delete", &id], &sb);
    assert!(o.status.success(), "stepctr delete: {}", stderr(&o));
    assert_no_leaks(&env, &id);

    let theirs = log_lines(&rb, &rb.join("log"));
    let ours = log_lines(&sb, &sb.join("log"));
    let without = |l: &[String]| -> Vec<String> {
        l.iter()
            .filter(|x| !x.starts_with("poststart"))
            .cloned()
            .collect()
    };
    assert_eq!(
        without(&ours),
        without(&theirs),
        "\nstepctr: {ours:#?}\nrunc: {theirs:#?}"
    );
    assert_eq!(ours.len(), 5, "{ours:#?}");
    let kinds: Vec<&str> = ours.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "poststart",
            "poststop"
        ]
    );
    assert!(ours[0].contains("|runtime|BUNDLE|"), "{}", ours[0]);
    assert!(ours[0].contains(r#""status":"creating""#) && ours[0].contains(r#""pid":"host""#));
    assert!(ours[2].contains("|container|BUNDLE/rootfs|"), "{}", ours[2]);
    assert!(ours[2].contains(r#""pid":"1""#), "{}", ours[2]);
    assert!(ours[3].contains(r#""status":"running""#), "{}", ours[3]);
    assert!(theirs
        .iter()
        .any(|l| l.starts_with("poststart x y|poststart|runtime|BUNDLE|")));
    assert!(ours[4].contains(r#""status":"stopped""#) && ours[4].contains(r#""pid":"none""#));
    // Inside: startContainer before the user's command, as root, with the state "created".
    let norm = |dir: &Path| -> Vec<String> {
        std::fs::read_to_string(dir.join("rootfs/hooklog"))
            .unwrap_or_default()
            .replace("1.0.2-dev", "1.0.2")
            .replace(&*dir.to_string_lossy(), "BUNDLE")
            .lines()
            .map(|l| l.replace(&rid, "ID").replace(&id, "ID"))
            .collect()
    };
    let inside = norm(&sb);
    assert_eq!(inside, norm(&rb));
    assert_eq!(inside.len(), 2, "{inside:?}");
    assert!(
        inside[0].starts_with("startContainer|startContainer|0|/|"),
        "{inside:?}"
    );
    assert!(
        inside[0].contains(r#""status":"created","pid":1"#),
        "{inside:?}"
    );
    assert_eq!(inside[1], "user");
}

fn failing(kind: &str) -> Value {
    json!({kind: [{"path": "/bin/true"}, {"path": "/bin/false", "args": ["false", "x"]}]})
}

/// prestart, createRuntime, createContainer failing: `create` fails with one line naming the
/// hook, and the container does not exist afterwards (as with runc), nothing left.
fn failing_hooks_destroy_the_container() {
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    for kind in ["prestart", "createRuntime", "createContainer"] {
        let rb = bundle(&tmp.path().join(format!("r{kind}")), failing(kind), |_| {});
        let rroot = tmp.path().join("runc-state");
        let rid = unique("hookfr");
        let r = runc(&rroot, &["create", "-b", rb.to_str().unwrap(), &rid], &rb);
        assert!(!r.status.success());
        let rs = runc(&rroot, &["state", &rid], &rb);
        assert!(stderr(&rs).contains("does not exist"), "{}", stderr(&rs));

        let sb = bundle(&tmp.path().join(format!("s{kind}")), failing(kind), |_| {});
        let id = unique("hookf");
        let o = stepctr(&env, &["create", "-b", sb.to_str().unwrap(), &id], &sb);
        assert_eq!(o.status.code(), r.status.code(), "{}", stderr(&o));
        let e = stderr(&o);
        assert_eq!(e.lines().count(), 1, "one line: {e}");
        assert!(
            e.contains(&format!("{kind} hook #1 (/bin/false): exit status 1")),
            "{e}"
        );
        let s = stepctr(&env, &["state", &id], &sb);
        assert!(stderr(&s).contains("does not exist"), "{}", stderr(&s));
        assert_no_leaks(&env, &id);
    }
}

/// poststart and poststop, as the spec says: a failing hook is a warning, the hooks after it
/// still run and so does the lifecycle (`start` succeeds and the container runs; `delete`
/// succeeds). runc 1.1.5 fails `start` instead and does not run the hooks after the failure.
fn poststart_and_poststop_failures() {
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    for kind in ["poststart", "poststop"] {
        let dir = tmp.path().join(kind);
        std::fs::create_dir_all(&dir).unwrap();
        let after = dir.join("after-the-failure");
        let hooks = json!({kind: [
            {"path": "/bin/false", "args": ["false", "x"]},
            {"path": "/bin/sh", "args": ["sh", "-c", format!("echo ran > {}", after.display())]}
        ]});
        let sb = bundle(&dir, hooks, |v| {
            v["process"]["args"] = json!(["sleep", "30"]);
        });
        let id = unique("hookps");
        let o = stepctr(&env, &["create", "-b", sb.to_str().unwrap(), &id], &sb);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = stepctr(&env, &["start", &id], &sb);
        assert_eq!(o.status.code(), Some(0), "{kind}: {}", stderr(&o));
        let s = stepctr(&env, &["state", &id], &sb);
        assert_eq!(status_of(&s), "running", "{kind}");
        let o2 = stepctr(&env, &["delete", "--force", &id], &sb);
        assert_eq!(o2.status.code(), Some(0), "{}", stderr(&o2));
        let warned = if kind == "poststart" { &o } else { &o2 };
        assert!(
            stderr(warned).contains(&format!(
                "warning: {kind} hook #0 (/bin/false): exit status 1"
            )),
            "{kind}: {}",
            stderr(warned)
        );
        assert_eq!(
            std::fs::read_to_string(&after).unwrap_or_default(),
            "ran\n",
            "{kind}: the hook after the failed one did not run"
        );
        let s = stepctr(&env, &["state", &id], &sb);
        assert!(stderr(&s).contains("does not exist"), "{}", stderr(&s));
        assert_no_leaks(&env, &id);
    }
}

/// poststart runs once PID 1 has exec'd the container's command (it has steps left after the
/// fifo's byte: here a slow startContainer hook): the hook reads /proc/PID/exe, which must no
/// longer be stepctr. Ten times, as a race shows up only some of the time.
fn poststart_runs_after_the_exec() {
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    let seen = tmp.path().join("exe");
    // A startContainer hook that takes its time widens the window between the byte and execve.
    let hooks = json!({"startContainer": [{"path": "/bin/sleep", "args": ["sleep", "0.2"]}],
        "poststart": [{"path": "/bin/sh", "args": ["sh", "-c",
        format!("pid=$(sed 's/.*\"pid\": *\\([0-9]*\\).*/\\1/'); readlink /proc/$pid/exe >> {}", seen.display())]}]});
    let sb = bundle(&tmp.path().join("b"), hooks, |v| {
        v["process"]["args"] = json!(["sleep", "30"]);
    });
    for _ in 0..10 {
        let id = unique("hookexe");
        let o = stepctr(&env, &["create", "-b", sb.to_str().unwrap(), &id], &sb);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = stepctr(&env, &["start", &id], &sb);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = stepctr(&env, &["delete", "--force", &id], &sb);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_no_leaks(&env, &id);
    }
    let exes = std::fs::read_to_string(&seen).unwrap_or_default();
    assert_eq!(exes.lines().count(), 10, "{exes}");
    let stepctr_exe = common::stepctr_bin().canonicalize().unwrap();
    for exe in exes.lines() {
        assert!(
            exe.ends_with("busybox") && Path::new(exe) != stepctr_exe,
            "poststart ran while PID 1 was still {exe}"
        );
    }
}

/// A createRuntime hook past its timeout is killed and `create` fails at once.
fn timeout_kills_the_hook() {
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    let marker = unique("hooksleep");
    let hooks = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "exec sleep 30", &marker], "timeout": 1}]});
    let sb = bundle(&tmp.path().join("t"), hooks, |_| {});
    let id = unique("hookto");
    let t = Instant::now();
    let o = stepctr(&env, &["create", "-b", sb.to_str().unwrap(), &id], &sb);
    assert_eq!(o.status.code(), Some(1));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(
        stderr(&o).contains("createRuntime hook #0 (/bin/sh): ran past its timeout of 1s"),
        "{}",
        stderr(&o)
    );
    assert_no_leaks(&env, &id);
    assert!(common::processes_mentioning("sleep 30").is_empty());
}

fn bad_hooks_are_refused() {
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    for (hooks, want) in [
        (
            json!({"prestart": [{"path": "bin/true"}]}),
            "hooks.prestart[0].path bin/true is not an absolute path",
        ),
        (
            json!({"poststop": [{"path": "/bin/true", "timeout": 0}]}),
            "hooks.poststop[0].timeout must be more than 0 seconds",
        ),
    ] {
        let sb = bundle(&tmp.path().join(unique("bad")), hooks, |_| {});
        let id = unique("hookbad");
        let o = stepctr(&env, &["create", "-b", sb.to_str().unwrap(), &id], &sb);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(want), "{}", stderr(&o));
        assert_no_leaks(&env, &id);
    }
}

/// `-v`: each hook is a fork, an execve and a wait4 in the narration.
fn hooks_are_narrated() {
    let env = Env::new();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    let hooks = json!({"createRuntime": [logging(&dir, "createRuntime")], "createContainer": [logging(&dir, "createContainer")]});
    let sb = bundle(&dir, hooks, |_| {});
    let id = unique("hooknar");
    let o = stepctr(
        &env,
        &["-v", "create", "-b", sb.to_str().unwrap(), &id],
        &sb,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    let script = dir.join("hook.sh");
    assert_eq!(
        e.matches(&format!("execve(\"{}\"", script.display()))
            .count(),
        2,
        "{e}"
    );
    assert!(
        e.contains("# the createRuntime hook #0") || e.contains("the createRuntime hook #0"),
        "{e}"
    );
    assert!(e.contains("wait4("), "{e}");
    let o = stepctr(&env, &["delete", "--force", &id], &sb);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_no_leaks(&env, &id);
}
