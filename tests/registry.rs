//! `stepctr pull` from a real registry: Debian's docker-registry on 127.0.0.1 in its three
//! auth modes (acceptance 1), faults injected by a proxy between stepctr and the registry, and a
//! pull killed with SIGKILL (acceptance 6), and one clear error line for each kind of bad
//! request (acceptance 7). Every pulled image is read back with skopeo, and run.

mod common;
#[path = "common/images.rs"]
mod images;
#[path = "common/registry.rs"]
mod registry;

use common::{stderr, Env};
use registry::{test_images, Fault, FaultProxy, Mode, Registry, TokenIssuer, PASSWORD, USER};
use sha2::{Digest as _, Sha256};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn open_registry() -> Registry {
    Registry::start(&Mode::Open, &test_images().storage)
}

fn store(env: &Env) -> PathBuf {
    env.root.join("images")
}

/// `skopeo inspect oci:<store>:<ref>`, parsed.
fn skopeo_inspect(env: &Env, reference: &str, raw: bool) -> serde_json::Value {
    let mut c = Command::new("skopeo");
    c.arg("inspect");
    if raw {
        c.arg("--raw");
    }
    let out = c
        .arg(format!("oci:{}:{reference}", store(env).display()))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("skopeo prints JSON")
}

/// Run `cmd` in the pulled image and return its stdout.
fn run_in(env: &Env, reference: &str, cmd: &[&str]) -> String {
    let mut args = vec!["-q", "all", "--rm", reference, "--"];
    args.extend_from_slice(cmd);
    let out = env.ok(&args);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every blob in the store hashes to its name; returns the names of temporary files.
fn check_store(env: &Env) -> Vec<String> {
    let dir = store(env).join("blobs/sha256");
    let mut temps = Vec::new();
    for e in std::fs::read_dir(&dir).expect("blobs dir").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            let bytes = std::fs::read(e.path()).expect("read blob");
            assert_eq!(
                hex::encode(Sha256::digest(&bytes)),
                name,
                "blob {name} in the store is corrupt"
            );
        } else {
            temps.push(name);
        }
    }
    temps
}

fn has_blob(env: &Env, digest: &str) -> bool {
    store(env)
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
        .exists()
}

/// A failed command printed exactly one line: `stepctr: error: ...` holding `want`.
fn assert_one_error_line(out: &Output, want: &str) {
    assert!(!out.status.success(), "expected a failure");
    let err = stderr(out);
    let lines: Vec<&str> = err.trim_end().lines().collect();
    assert_eq!(lines.len(), 1, "one line expected:\n{err}");
    assert!(
        lines[0].starts_with("stepctr: error: ") && lines[0].contains(want),
        "expected {want:?} in: {err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Acceptance 1: pulls that work

fn pull_by_tag_is_readable_by_skopeo_and_runs() {
    let reg = open_registry();
    let env = Env::fresh();
    let r = format!("{}/busy:gzip", reg.addr);
    let out = env.ok(&["pull", &r]);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "[http] GET http://{}/v2/busy/manifests/gzip -> 200 OK",
            reg.addr
        )),
        "the manifest request is narrated:\n{err}"
    );
    assert!(err.contains("sha256 verified"), "{err}");
    assert!(
        err.contains("renameat("),
        "the publishing rename is narrated:\n{err}"
    );
    assert!(check_store(&env).is_empty(), "no temporary file left");
    let inspected = skopeo_inspect(&env, &r, false);
    assert_eq!(
        inspected["Digest"],
        test_images().digests["busy:gzip"].as_str()
    );
    assert_eq!(run_in(&env, &r, &["cat", "/etc/stepctr-image"]), "gzip\n");

    // Pulling again downloads no blob.
    let out = env.ok(&["pull", &r]);
    let err = stderr(&out);
    assert!(!err.contains("/blobs/"), "blobs are reused:\n{err}");
    assert!(err.contains("already in the store"), "{err}");
}

fn pull_by_digest_stores_exactly_that_manifest() {
    let reg = open_registry();
    let env = Env::fresh();
    let digest = &test_images().digests["busy:gzip"];
    for r in [
        format!("{}/busy@{digest}", reg.addr),
        format!("{}/busy:gzip@{digest}", reg.addr),
    ] {
        let out = env.ok(&["pull", &r]);
        assert!(stderr(&out).contains("manifest digest"), "{}", stderr(&out));
        assert_eq!(skopeo_inspect(&env, &r, false)["Digest"], digest.as_str());
    }
    let r = format!("{}/busy@{digest}", reg.addr);
    assert_eq!(run_in(&env, &r, &["cat", "/etc/stepctr-image"]), "gzip\n");
}

fn multi_arch_index_gives_the_host_platform() {
    let reg = open_registry();
    let env = Env::fresh();
    let r = format!("{}/multi", reg.addr);
    let host = images::host_platform().name();
    let out = env.ok(&["pull", &r]);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("chose {host} (this machine's platform)")),
        "the platform choice is narrated:\n{err}"
    );
    let stored = format!("{r}:latest");
    assert_eq!(
        run_in(&env, &stored, &["cat", "/etc/stepctr-arch"]),
        format!("{host}\n")
    );

    // --platform picks the other one (pulled, not run).
    let other = images::other_platform();
    let env2 = Env::fresh();
    env2.ok(&["-q", "pull", "--platform", &other.name(), &r]);
    let cfg = skopeo_inspect(&env2, &stored, false);
    assert_eq!(cfg["Architecture"], other.architecture.as_str());
}

/// Pull `busy:TAG`, check the stored layers' media type, run it.
fn pull_layers_of(tag: &str, media: &str) {
    let reg = open_registry();
    let env = Env::fresh();
    let r = format!("{}/busy:{tag}", reg.addr);
    env.ok(&["-q", "pull", &r]);
    let manifest = skopeo_inspect(&env, &r, true);
    for l in manifest["layers"].as_array().expect("layers") {
        assert_eq!(l["mediaType"], media, "{tag}");
    }
    assert_eq!(
        run_in(&env, &r, &["cat", "/etc/stepctr-image"]),
        format!("{tag}\n")
    );
}

fn uncompressed_layers_pull_and_run() {
    pull_layers_of("plain", "application/vnd.oci.image.layer.v1.tar");
}

fn zstd_layers_pull_and_run() {
    pull_layers_of("zstd", "application/vnd.oci.image.layer.v1.tar+zstd");
}

fn docker_schema2_is_stored_as_oci() {
    let reg = open_registry();
    let env = Env::fresh();
    let r = format!("{}/busy:v2s2", reg.addr);
    let out = env.ok(&["pull", &r]);
    assert!(
        stderr(&out).contains("Docker schema 2 manifest"),
        "{}",
        stderr(&out)
    );
    let manifest = skopeo_inspect(&env, &r, true);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let umoci = Command::new("umoci")
        .args(["stat", "--image"])
        .arg(format!("{}:{r}", store(&env).display()))
        .output()
        .expect("run umoci");
    assert!(
        umoci.status.success(),
        "umoci reads it: {}",
        String::from_utf8_lossy(&umoci.stderr)
    );
    assert_eq!(run_in(&env, &r, &["cat", "/etc/stepctr-image"]), "gzip\n");
}

fn oci_layout_source_pulls_and_runs() {
    let env = Env::fresh();
    let src = format!("oci:{}:gzip", test_images().layout.display());
    env.ok(&["-q", "pull", &src]);
    assert_eq!(run_in(&env, &src, &["cat", "/etc/stepctr-image"]), "gzip\n");
}

fn basic_auth_with_flags_stdin_and_docker_config() {
    let reg = Registry::start(&Mode::Basic, &test_images().storage);
    let r = format!("{}/busy:gzip", reg.addr);

    let env = Env::fresh();
    let home = tempfile::tempdir().expect("temp dir");
    let anonymous = env
        .cmd(&["-q", "pull", &r])
        .env("HOME", home.path())
        .env_remove("DOCKER_CONFIG")
        .output()
        .expect("run");
    assert_one_error_line(&anonymous, "--username");
    assert_one_error_line(&anonymous, "Basic auth");

    let wrong = env.run(&["-q", "pull", "--username", USER, "--password", "wrong", &r]);
    assert_one_error_line(&wrong, "denied");
    assert!(check_store(&env).is_empty());

    let out = env.ok(&["pull", "--username", USER, "--password", PASSWORD, &r]);
    assert!(stderr(&out).contains("Basic auth"), "{}", stderr(&out));
    skopeo_inspect(&env, &r, false);

    let env = Env::fresh();
    let mut child = env
        .cmd(&["-q", "pull", "--username", USER, "--password-stdin", &r])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    writeln!(child.stdin.take().expect("stdin"), "{PASSWORD}").expect("write password");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "--password-stdin: {}", stderr(&out));

    let env = Env::fresh();
    let cfg = tempfile::tempdir().expect("temp dir");
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{USER}:{PASSWORD}"),
    );
    std::fs::write(
        cfg.path().join("config.json"),
        serde_json::json!({"auths": {reg.addr.clone(): {"auth": auth}}}).to_string(),
    )
    .expect("write config.json");
    let out = env
        .cmd(&["pull", &r])
        .env("DOCKER_CONFIG", cfg.path())
        .output()
        .expect("run");
    assert!(out.status.success(), "docker config: {}", stderr(&out));
    assert!(stderr(&out).contains("config.json"), "{}", stderr(&out));
    assert_eq!(run_in_with_config(&env, &r, cfg.path()), "gzip\n");
}

fn run_in_with_config(env: &Env, r: &str, cfg: &Path) -> String {
    let out = env
        .cmd(&["-q", "all", "--rm", r, "--", "cat", "/etc/stepctr-image"])
        .env("DOCKER_CONFIG", cfg)
        .output()
        .expect("run");
    assert!(out.status.success(), "all: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn bearer_token_auth() {
    let issuer = TokenIssuer::start();
    let reg = Registry::start(&issuer.mode(), &test_images().storage);
    let r = format!("{}/busy:gzip", reg.addr);

    let env = Env::fresh();
    let home = tempfile::tempdir().expect("temp dir");
    let anonymous = env
        .cmd(&["-q", "pull", &r])
        .env("HOME", home.path())
        .env_remove("DOCKER_CONFIG")
        .output()
        .expect("run");
    assert_one_error_line(&anonymous, "denied anonymously");

    let wrong = env.run(&["-q", "pull", "--username", USER, "--password", "nope", &r]);
    assert_one_error_line(&wrong, "refused a token");

    let before = issuer.requests.load(std::sync::atomic::Ordering::SeqCst);
    let out = env.ok(&["pull", "--username", USER, "--password", PASSWORD, &r]);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "[http] GET http://{}/token?service=stepctr-test-registry&scope=repository%3Abusy%3Apull -> 200 OK",
            issuer.addr
        )),
        "the token request is narrated:\n{err}"
    );
    assert!(err.contains("wants a Bearer token"), "{err}");
    assert!(issuer.requests.load(std::sync::atomic::Ordering::SeqCst) > before);
    skopeo_inspect(&env, &r, false);
}

/// The file calls the pull narrates (`openat` of each temporary file, `renameat` into place)
/// are the calls strace sees, in the same order, with the same paths.
fn narrated_file_calls_are_real() {
    let reg = open_registry();
    let env = Env::fresh();
    let dir = tempfile::tempdir().expect("temp dir");
    let (narr, trace) = (dir.path().join("narration"), dir.path().join("trace"));
    let r = format!("{}/busy:gzip", reg.addr);
    let out = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-y",
            "-s",
            "4096",
            "-e",
            "trace=openat,renameat,renameat2,unlinkat",
            "-o",
        ])
        .arg(&trace)
        .arg(common::stepctr_bin())
        .args(["-v", "--trace-file"])
        .arg(&narr)
        .args(["pull", &r])
        .env("STEPCTR_ROOT", &env.root)
        .env("STEPCTR_RUN", &env.run)
        .env("NO_COLOR", "1")
        .output()
        .expect("run strace (install Debian's strace)");
    assert!(out.status.success(), "{}", stderr(&out));
    let narration = std::fs::read_to_string(&narr).expect("narration");
    let traced = std::fs::read_to_string(&trace).expect("trace");
    let quoted = regex::Regex::new(r#""([^"]*)""#).expect("regex");
    let mut from = 0;
    let mut checked = 0;
    let lines: Vec<&str> = traced.lines().collect();
    for line in narration.lines() {
        let Some(name) = ["openat(", "renameat(", "unlinkat("]
            .into_iter()
            .find(|n| line.starts_with(n))
        else {
            continue;
        };
        let strings: Vec<&str> = quoted
            .captures_iter(line)
            .map(|c| c.get(1).map_or("", |m| m.as_str()))
            .collect();
        let found = lines[from..].iter().position(|t| {
            let call = t.split_once(' ').map_or("", |(_, c)| c.trim_start());
            (call.starts_with(name) || (name == "renameat(" && call.starts_with("renameat2(")))
                && strings.iter().all(|s| t.contains(&format!("\"{s}\"")))
        });
        let Some(i) = found else {
            panic!("narrated but not in strace (after line {from}): {line}\n{traced}");
        };
        from += i + 1;
        checked += 1;
    }
    assert!(
        checked >= 6,
        "three blobs, each opened and renamed:\n{narration}"
    );
}

// ---------------------------------------------------------------------------------------------
// Acceptance 6: faults

fn big_ref(addr: &str) -> String {
    format!("{addr}/big:1")
}

fn corrupt_blob_is_refused_and_never_stored() {
    let reg = open_registry();
    let layer = test_images().big_layers[1].clone();
    let proxy = FaultProxy::start(
        &reg.addr,
        vec![Fault::Corrupt {
            digest: layer.clone(),
        }],
    );
    let env = Env::fresh();
    let out = env.run(&["-q", "pull", &big_ref(&proxy.addr)]);
    assert_one_error_line(&out, &format!("not {layer}: refusing it"));
    assert!(
        !has_blob(&env, &layer),
        "the corrupt blob is not in the store"
    );
    assert!(check_store(&env).is_empty(), "no temporary file left");
    assert!(
        !store(&env).join("index.json").exists()
            || !std::fs::read_to_string(store(&env).join("index.json"))
                .unwrap_or_default()
                .contains("big:1"),
        "no reference to a half image"
    );
}

fn truncated_blob_is_resumed_or_refused() {
    let reg = open_registry();
    let layer = test_images().big_layers[1].clone();
    // Once: the rest is fetched with a Range request.
    let proxy = FaultProxy::start(
        &reg.addr,
        vec![Fault::Truncate {
            digest: layer.clone(),
            times: 1,
        }],
    );
    let env = Env::fresh();
    let out = env.ok(&["pull", &big_ref(&proxy.addr)]);
    let reqs = proxy.blob_requests(&layer);
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert!(
        reqs[1].range.as_deref() == Some(&format!("bytes={}-", reqs[0].sent))
            && reqs[1].upstream == 206,
        "resumed with a Range answered 206: {reqs:?}\n{}",
        stderr(&out)
    );
    assert!(check_store(&env).is_empty());
    skopeo_inspect(&env, &big_ref(&proxy.addr), false);

    // Always: a bounded number of tries, then one clear error and nothing stored.
    let proxy = FaultProxy::start(
        &reg.addr,
        vec![Fault::Truncate {
            digest: layer.clone(),
            times: 1000,
        }],
    );
    let env = Env::fresh();
    let out = env.run(&["-q", "pull", &big_ref(&proxy.addr)]);
    assert_one_error_line(&out, "cut short");
    assert!(!has_blob(&env, &layer));
    assert!(check_store(&env).is_empty());
}

fn server_errors_are_retried_with_backoff() {
    let reg = open_registry();
    let proxy = FaultProxy::start(
        &reg.addr,
        vec![
            Fault::Status {
                path: "/manifests/".into(),
                status: 500,
                times: 2,
            },
            Fault::Status {
                path: "/blobs/".into(),
                status: 503,
                times: 1,
            },
            Fault::Status {
                path: "/blobs/".into(),
                status: 429,
                times: 1,
            },
        ],
    );
    let env = Env::fresh();
    let out = env.ok(&["pull", &format!("{}/busy:gzip", proxy.addr)]);
    let err = stderr(&out);
    assert!(
        err.contains("-> 500 Internal Server Error") && err.contains("trying again"),
        "{err}"
    );
    assert!(err.contains("-> 503 Service Unavailable"), "{err}");
    assert!(err.contains("-> 429 Too Many Requests"), "{err}");
    assert!(check_store(&env).is_empty());

    // A registry that always fails: bounded retries, one line.
    let proxy = FaultProxy::start(
        &reg.addr,
        vec![Fault::Status {
            path: "/v2/".into(),
            status: 502,
            times: 1000,
        }],
    );
    let start = Instant::now();
    let out = env.run(&["-q", "pull", &format!("{}/busy:plain", proxy.addr)]);
    assert_one_error_line(&out, "502 Bad Gateway (gave up after 5 attempts)");
    assert!(start.elapsed() < Duration::from_secs(30));
}

fn connection_cut_mid_layer_resumes_with_range() {
    let reg = open_registry();
    let layer = test_images().big_layers[2].clone();
    let proxy = FaultProxy::start(
        &reg.addr,
        vec![Fault::Cut {
            digest: layer.clone(),
            times: 1,
        }],
    );
    let env = Env::fresh();
    let out = env.ok(&["pull", &big_ref(&proxy.addr)]);
    let err = stderr(&out);
    let reqs = proxy.blob_requests(&layer);
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0].range, None);
    assert!(reqs[0].sent > 0);
    assert_eq!(
        reqs[1].range.as_deref(),
        Some(format!("bytes={}-", reqs[0].sent).as_str()),
        "{err}"
    );
    assert_eq!(reqs[1].upstream, 206);
    assert!(err.contains("206 Partial Content"), "{err}");
    assert!(check_store(&env).is_empty());
    assert_eq!(
        run_in(&env, &big_ref(&proxy.addr), &["wc", "-c", "/data/two"]).trim(),
        format!("{} /data/two", (3 << 20) - 1)
    );
}

fn server_ignoring_ranges_gets_the_blob_again() {
    let reg = open_registry();
    let layer = test_images().big_layers[2].clone();
    let proxy = FaultProxy::start(
        &reg.addr,
        vec![
            Fault::IgnoreRange,
            Fault::Cut {
                digest: layer.clone(),
                times: 1,
            },
        ],
    );
    let env = Env::fresh();
    let out = env.ok(&["pull", &big_ref(&proxy.addr)]);
    let err = stderr(&out);
    let reqs = proxy.blob_requests(&layer);
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[1].upstream, 200, "{reqs:?}");
    assert!(err.contains("starting over"), "{err}");
    assert!(check_store(&env).is_empty());
    assert!(has_blob(&env, &layer));
}

fn redirects_are_followed_and_narrated() {
    let reg = open_registry();
    let layer = test_images().big_layers[1].clone();
    let proxy = FaultProxy::start(
        &reg.addr,
        vec![Fault::Redirect {
            digest: layer.clone(),
        }],
    );
    let env = Env::fresh();
    let out = env.ok(&["pull", &big_ref(&proxy.addr)]);
    let err = stderr(&out);
    let url = format!("http://{}/v2/big/blobs/{layer}", proxy.addr);
    assert!(
        err.contains(&format!("[http] GET {url} -> 307 Temporary Redirect")),
        "{err}"
    );
    assert!(
        err.contains(&format!("[http] GET {url}?redirected=1 -> 200 OK"))
            && err.contains("follow the redirect"),
        "{err}"
    );
    assert!(has_blob(&env, &layer));
    assert!(check_store(&env).is_empty());
}

fn kill_9_mid_pull_then_pull_again() {
    let reg = open_registry();
    let imgs = test_images();
    let stalled = imgs.big_layers[2].clone();
    let proxy = FaultProxy::start(
        &reg.addr,
        vec![Fault::Stall {
            digest: stalled.clone(),
        }],
    );
    let env = Env::fresh();
    let r = big_ref(&proxy.addr);
    let mut child = env
        .cmd(&["-q", "pull", &r])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pull");
    let finished = [imgs.big_layers[0].clone(), imgs.big_layers[1].clone()];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stalled_started = proxy.blob_requests(&stalled).iter().any(|s| s.sent > 0);
        if stalled_started && finished.iter().all(|d| has_blob(&env, d)) {
            break;
        }
        assert!(Instant::now() < deadline, "the pull never got half-way");
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "pull ended early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the stalled layer's first half reach the temporary file.
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();

    let temps = check_store(&env);
    let hex = stalled.trim_start_matches("sha256:");
    assert!(
        temps.iter().any(|t| t.starts_with(&format!(".tmp-{hex}-"))),
        "the killed download left its temporary file: {temps:?}"
    );
    assert!(!has_blob(&env, &stalled), "half a blob never gets its name");

    // Again, without the stall: finished blobs are reused, the temporary file is swept.
    drop(proxy);
    let proxy = FaultProxy::start(&reg.addr, vec![]);
    let r = big_ref(&proxy.addr);
    env.ok(&["-q", "pull", &r]);
    for d in &finished {
        assert!(
            proxy.blob_requests(d).is_empty(),
            "blob {d} was downloaded again"
        );
    }
    assert_eq!(proxy.blob_requests(&stalled).len(), 1);
    assert!(check_store(&env).is_empty(), "temporary files are swept");
    skopeo_inspect(&env, &r, false);
}

// ---------------------------------------------------------------------------------------------
// Acceptance 7: one clear error each

fn bad_requests_fail_with_one_clear_line() {
    let reg = open_registry();
    let env = Env::fresh();
    let a = &reg.addr;
    let cases: Vec<(String, Vec<&str>, String)> = vec![
        ("Alpine".into(), vec![], "must be lower-case".into()),
        ("alpine:-x".into(), vec![], "tag \"-x\" is invalid".into()),
        ("alpine@sha256:abc".into(), vec![], "malformed".into()),
        ("a..b/c".into(), vec![], "invalid image reference".into()),
        (
            format!("{a}/busy:nope"),
            vec![],
            "it has no tag \"nope\" in busy".into(),
        ),
        (
            format!("{a}/nothere:1"),
            vec![],
            "not found on http://".into(),
        ),
        (
            format!("{a}/busy@sha256:{}", "0".repeat(64)),
            vec![],
            "not found".into(),
        ),
        (
            format!("{a}/odd:lz4"),
            vec![],
            "unsupported layer media type \"application/vnd.oci.image.layer.v1.tar+lz4\"".into(),
        ),
        (
            format!("{a}/odd:artifact"),
            vec![],
            "is not a container image".into(),
        ),
        (
            format!("{a}/multi"),
            vec!["--platform", "linux/s390x"],
            format!(
                "has no image for linux/s390x: it has {}, {}; choose one with --platform",
                images::host_platform().name(),
                images::other_platform().name()
            ),
        ),
        (
            format!("{a}/busy:gzip"),
            vec!["--platform", "linux"],
            "invalid platform".into(),
        ),
    ];
    for (r, extra, want) in &cases {
        let mut args = vec!["-q", "pull"];
        args.extend(extra.iter().copied());
        args.push(r);
        let out = env.run(&args);
        assert_one_error_line(&out, want);
    }
    let index = std::fs::read_to_string(store(&env).join("index.json")).unwrap_or_default();
    assert!(!index.contains(a.as_str()), "nothing was stored: {index}");

    // Nobody listening: a bounded number of attempts.
    let port = registry::free_port();
    let out = env.run(&["-q", "pull", &format!("127.0.0.1:{port}/x")]);
    assert_one_error_line(&out, "gave up after 5 attempts");
}

fn main() {
    common::run_tests(
        tests![
            pull_by_tag_is_readable_by_skopeo_and_runs,
            pull_by_digest_stores_exactly_that_manifest,
            multi_arch_index_gives_the_host_platform,
            uncompressed_layers_pull_and_run,
            zstd_layers_pull_and_run,
            docker_schema2_is_stored_as_oci,
            oci_layout_source_pulls_and_runs,
            basic_auth_with_flags_stdin_and_docker_config,
            bearer_token_auth,
            narrated_file_calls_are_real,
            corrupt_blob_is_refused_and_never_stored,
            truncated_blob_is_resumed_or_refused,
            server_errors_are_retried_with_backoff,
            connection_cut_mid_layer_resumes_with_range,
            server_ignoring_ranges_gets_the_blob_again,
            redirects_are_followed_and_narrated,
            kill_9_mid_pull_then_pull_again,
            bad_requests_fail_with_one_clear_line,
        ],
        true,
    );
}
