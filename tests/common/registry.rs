//! A real registry on loopback for the pull tests: Debian's `docker-registry` (distribution
//! v2) started with a temporary config on a free 127.0.0.1 port, in three modes (open,
//! htpasswd basic auth, Bearer tokens from a small token issuer run here), plus a
//! fault-injecting HTTP proxy to put between stepctr and the registry.
//!
//! Include it next to `mod common;` and the image builder:
//!
//! ```text
//! #[path = "common/images.rs"]
//! mod images;
//! #[path = "common/registry.rs"]
//! mod registry;
//! ```
//!
//! Every process and thread started here stops when its handle drops; nothing listens on
//! anything but 127.0.0.1.

#![allow(dead_code)]

use super::images::{self, Compression, Entry, ImageBuilder, Layer, Layout};
use base64::Engine as _;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const USER: &str = "learner";
pub const PASSWORD: &str = "s3cret-pw";
const SERVICE: &str = "stepctr-test-registry";
const ISSUER: &str = "stepctr-test-issuer";

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client (one request per connection), enough to push and to probe.

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Where the body starts, the status, the headers.
type Head = (usize, u16, Vec<(String, String)>);

fn split_head(raw: &[u8]) -> Option<Head> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Some((end + 4, status, headers))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..eol])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
    out
}

/// One request to `addr`; `path` may be a full `http://host/...` URL (as Location headers are).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Answer> {
    let path = match path.strip_prefix("http://") {
        Some(rest) => &rest[rest.find('/').unwrap_or(rest.len())..],
        None => path,
    };
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let (start, status, headers) = split_head(&raw)
        .ok_or_else(|| std::io::Error::other(format!("no HTTP answer from {addr}")))?;
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(&raw[start..])
    } else {
        raw[start..].to_vec()
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

// ---------------------------------------------------------------------------------------------
// The registry

/// How the registry lets clients in.
#[derive(Debug, Clone)]
pub enum Mode {
    Open,
    /// htpasswd (bcrypt) with [`USER`] / [`PASSWORD`].
    Basic,
    /// Bearer tokens from the issuer at `realm`, signed by the key of `cert`.
    Token {
        realm: String,
        cert: PathBuf,
    },
}

/// A running `docker-registry serve`, killed on drop.
pub struct Registry {
    /// `127.0.0.1:PORT`
    pub addr: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Serve `storage` (a registry's filesystem root) in `mode` on a free port.
    pub fn start(mode: &Mode, storage: &Path) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("stepctr-registry-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let auth = match mode {
            Mode::Open => String::new(),
            Mode::Basic => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", USER, PASSWORD])
                    .output()
                    .expect("run htpasswd (install Debian's apache2-utils)");
                assert!(out.status.success(), "htpasswd failed");
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, &out.stdout).expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: stepctr-test\n    path: {}\n",
                    path.display()
                )
            }
            Mode::Token { realm, cert } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                cert.display()
            ),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: {addr}\n{auth}",
            storage.display()
        );
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).expect("write registry config");
        let log = std::fs::File::create(dir.path().join("log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry (install Debian's docker-registry)");
        let mut r = Registry { addr, child, dir };
        r.wait_ready();
        r
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(a) = http(&self.addr, "GET", "/v2/", &[], b"") {
                if a.status == 200 || a.status == 401 {
                    return;
                }
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("docker-registry exited ({st}): {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "docker-registry did not answer on {}: {}",
            self.addr,
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// The digest the registry serves for `repo:reference`.
    pub fn digest(&self, repo: &str, reference: &str) -> String {
        let a = http(
            &self.addr,
            "HEAD",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", ACCEPT_ALL)],
            b"",
        )
        .expect("HEAD manifest");
        assert_eq!(a.status, 200, "HEAD {repo}:{reference}");
        a.header("Docker-Content-Digest")
            .expect("Docker-Content-Digest")
            .to_string()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ACCEPT_ALL: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Push one blob with the monolithic upload (POST, then PUT with the digest).
pub fn push_blob(addr: &str, repo: &str, bytes: &[u8]) -> String {
    let digest = images::sha256(bytes);
    let a = http(
        addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        &[],
        b"",
    )
    .expect("POST upload");
    assert_eq!(
        a.status,
        202,
        "start upload: {}",
        String::from_utf8_lossy(&a.body)
    );
    let loc = a.header("Location").expect("upload Location").to_string();
    let sep = if loc.contains('?') { '&' } else { '?' };
    let a = http(
        addr,
        "PUT",
        &format!("{loc}{sep}digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        bytes,
    )
    .expect("PUT blob");
    assert_eq!(
        a.status,
        201,
        "upload: {}",
        String::from_utf8_lossy(&a.body)
    );
    digest
}

/// Push the image tagged `tag` in the OCI layout `layout` to `repo:repo_tag`, blob by blob,
/// byte for byte.
pub fn push_layout_image(addr: &str, layout: &Path, tag: &str, repo: &str, repo_tag: &str) {
    let read = |digest: &str| {
        std::fs::read(
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .expect("read layout blob")
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json"))
            .expect("index.json is JSON");
    let desc = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|d| d["annotations"][images::REF_NAME] == tag)
        .expect("tag in layout")
        .clone();
    let digest = desc["digest"].as_str().expect("digest");
    let manifest = read(digest);
    let m: serde_json::Value = serde_json::from_slice(&manifest).expect("manifest JSON");
    push_blob(
        addr,
        repo,
        &read(m["config"]["digest"].as_str().expect("config")),
    );
    for l in m["layers"].as_array().expect("layers") {
        push_blob(addr, repo, &read(l["digest"].as_str().expect("layer")));
    }
    push_manifest(
        addr,
        repo,
        repo_tag,
        desc["mediaType"].as_str().expect("mediaType"),
        &manifest,
    );
}

/// Push a manifest (its blobs must be there) under `tag`.
pub fn push_manifest(addr: &str, repo: &str, tag: &str, media_type: &str, manifest: &[u8]) {
    let a = http(
        addr,
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", media_type)],
        manifest,
    )
    .expect("PUT manifest");
    assert_eq!(
        a.status,
        201,
        "push manifest: {}",
        String::from_utf8_lossy(&a.body)
    );
}

// ---------------------------------------------------------------------------------------------
// The test images, pushed once per test binary into a registry storage directory that every
// registry started by the tests serves.

pub struct TestImages {
    /// The registry's filesystem storage root.
    pub storage: PathBuf,
    /// The OCI layout the images were built in (also a source for `oci:` pulls).
    pub layout: PathBuf,
    /// Manifest digests as the registry serves them, by `repo:tag`.
    pub digests: HashMap<String, String>,
    /// Blob digests of the `big` image's layers, bottom first.
    pub big_layers: Vec<String>,
}

/// Removed when the test binary exits (`run_tests` ends with `exit`, which runs atexit
/// handlers but no destructors).
static CLEANUP: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn remove_temp_dirs() {
    if let Ok(dirs) = CLEANUP.lock() {
        for d in dirs.iter() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn temp_dir_until_exit(prefix: &str) -> PathBuf {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(remove_temp_dirs) };
    });
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir")
        .keep();
    CLEANUP.lock().expect("cleanup list").push(dir.clone());
    dir
}

fn skopeo_push(layout: &Path, tag: &str, dest: &str, extra: &[&str]) {
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .args(extra)
        .arg(images::oci_ref(layout, tag))
        .arg(format!("docker://{dest}"))
        .output()
        .expect("run skopeo (install Debian's skopeo)");
    assert!(
        out.status.success(),
        "skopeo copy {tag} -> {dest}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `big` image: busybox and two layers of 3 MiB of incompressible bytes each, for the
/// fault tests (a transfer can be cut in the middle of a layer).
pub fn big_builder() -> ImageBuilder {
    let noise = images::noise(3 << 20);
    ImageBuilder::busybox(Compression::Gzip)
        .layer(
            Layer::from_entries(
                &[Entry::dir("data"), Entry::file("data/one", &noise)],
                Compression::Gzip,
            ),
            "noise one",
        )
        .layer(
            Layer::from_entries(
                &[Entry::dir("data"), Entry::file("data/two", &noise[1..])],
                Compression::Gzip,
            ),
            "noise two",
        )
}

/// Build and push every test image (once per test binary).
pub fn test_images() -> &'static TestImages {
    static IMAGES: OnceLock<TestImages> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let root = temp_dir_until_exit("stepctr-registry-images-");
        let storage = root.join("storage");
        let layout = root.join("layout");
        for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
            images::simple_image(&layout, compression_tag(c), c);
        }
        let multi_tag = images::multi_arch(&layout);
        let big = Layout::create(&layout).add_image(&big_builder(), "big");

        let reg = Registry::start(&Mode::Open, &storage);
        let a = reg.addr.clone();
        for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
            // Pushed as they are: skopeo would swap an uncompressed layer for a gzipped one it
            // knows from its blob-info cache.
            let t = compression_tag(c);
            push_layout_image(&a, &layout, t, "busy", t);
        }
        skopeo_push(
            &layout,
            "gzip",
            &format!("{a}/busy:v2s2"),
            &["--format", "v2s2"],
        );
        skopeo_push(
            &layout,
            &multi_tag,
            &format!("{a}/multi:latest"),
            &["--all"],
        );
        skopeo_push(&layout, "big", &format!("{a}/big:1"), &[]);
        push_odd_images(&a);

        let mut digests = HashMap::new();
        for (repo, tag) in [
            ("busy", "gzip"),
            ("busy", "zstd"),
            ("busy", "plain"),
            ("busy", "v2s2"),
            ("multi", "latest"),
            ("big", "1"),
        ] {
            digests.insert(format!("{repo}:{tag}"), reg.digest(repo, tag));
        }
        drop(reg);
        TestImages {
            storage,
            layout,
            digests,
            big_layers: big.layers.iter().map(|l| l.digest.clone()).collect(),
        }
    })
}

pub fn compression_tag(c: Compression) -> &'static str {
    match c {
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
        Compression::None => "plain",
    }
}

/// Images no tool would push: a layer type stepctr cannot unpack (`odd:lz4`), and an OCI
/// artifact whose config is not an image config (`odd:artifact`).
fn push_odd_images(addr: &str) {
    let layer = b"not really lz4".to_vec();
    let img = ImageBuilder::busybox(Compression::Gzip).build();
    let config_digest = push_blob(addr, "odd", &img.config);
    let layer_digest = push_blob(addr, "odd", &layer);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": images::MEDIA_MANIFEST,
        "config": {"mediaType": images::MEDIA_CONFIG, "digest": config_digest, "size": img.config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+lz4", "digest": layer_digest, "size": layer.len()}],
    });
    push_manifest(
        addr,
        "odd",
        "lz4",
        images::MEDIA_MANIFEST,
        &serde_json::to_vec(&manifest).expect("json"),
    );
    let cfg = br#"{"chart":"demo"}"#;
    let cfg_digest = push_blob(addr, "odd", cfg);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": images::MEDIA_MANIFEST,
        "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": cfg_digest, "size": cfg.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer.len()}],
    });
    push_manifest(
        addr,
        "odd",
        "artifact",
        images::MEDIA_MANIFEST,
        &serde_json::to_vec(&manifest).expect("json"),
    );
}

// ---------------------------------------------------------------------------------------------
// The token issuer

/// A token server: `GET /token?service=...&scope=repository:NAME:pull` answers a JWT signed
/// with ES256 by a key whose self-signed certificate the registry trusts. Requests with the
/// right basic credentials get the actions they ask for; anonymous ones get a token granting
/// nothing; wrong credentials get 401.
pub struct TokenIssuer {
    pub addr: String,
    pub cert: PathBuf,
    pub requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TokenIssuer {
    pub fn start() -> TokenIssuer {
        let dir = tempfile::Builder::new()
            .prefix("stepctr-token-")
            .tempdir()
            .expect("temp dir");
        let key = rcgen::KeyPair::generate().expect("generate key");
        let params = rcgen::CertificateParams::new(vec!["stepctr-test-issuer".to_string()])
            .expect("cert params");
        let cert = params.self_signed(&key).expect("self-sign");
        let cert_path = dir.path().join("issuer.pem");
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        let kid = libtrust_key_id(&rcgen::PublicKeyData::subject_public_key_info(&key));
        let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &ring::rand::SystemRandom::new(),
        )
        .expect("load signing key");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token issuer");
        let addr = listener.local_addr().expect("addr").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let (stop2, req2) = (stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                req2.fetch_add(1, Ordering::SeqCst);
                let _ = serve_token(&mut conn, &signer, &kid);
            }
        });
        TokenIssuer {
            addr,
            cert: cert_path,
            requests,
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }

    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn mode(&self) -> Mode {
        Mode::Token {
            realm: self.realm(),
            cert: self.cert.clone(),
        }
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// libtrust's key ID, which distribution uses to find a token's signing key (`kid`): the
/// sha256 of the DER public key, cut to 240 bits, base32, in 12 groups of 4.
fn libtrust_key_id(spki_der: &[u8]) -> String {
    use sha2::Digest as _;
    let sum = sha2::Sha256::digest(spki_der);
    let b32 = base32(&sum[..30]);
    b32.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in data {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            out.push(ALPHABET[((buf >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match h.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn read_head(conn: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 1 << 16 {
            break;
        }
    }
    Ok(head)
}

fn serve_token(
    conn: &mut TcpStream,
    signer: &ring::signature::EcdsaKeyPair,
    kid: &str,
) -> std::io::Result<()> {
    let head = read_head(conn)?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let target = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let auth = text.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case("authorization")
            .then(|| v.trim().to_string())
    });
    let user = match auth.as_deref().and_then(|a| a.strip_prefix("Basic ")) {
        None => None,
        Some(b64) => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default();
            let raw = String::from_utf8_lossy(&raw).into_owned();
            if raw != format!("{USER}:{PASSWORD}") {
                let body = br#"{"details":"wrong user name or password"}"#;
                let resp = format!(
                    "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                conn.write_all(resp.as_bytes())?;
                conn.write_all(body)?;
                return Ok(());
            }
            Some(USER.to_string())
        }
    };
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut access = Vec::new();
    for pair in query.split('&') {
        let Some((k, v)) = pair.split_once('=') else {
            continue;
        };
        if k != "scope" {
            continue;
        }
        for scope in percent_decode(v).split(' ') {
            let mut parts = scope.splitn(3, ':');
            let (Some(kind), Some(name), Some(actions)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let granted: Vec<&str> = if user.is_some() {
                actions.split(',').collect()
            } else {
                Vec::new()
            };
            access.push(serde_json::json!({"type": kind, "name": name, "actions": granted}));
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "kid": kid});
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": user.clone().unwrap_or_default(),
        "aud": SERVICE,
        "exp": now + 600,
        "nbf": now - 60,
        "iat": now,
        "jti": format!("{now}-{}", std::process::id()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    let sig = signer
        .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
        .map_err(|_| std::io::Error::other("sign"))?;
    let token = format!("{signing_input}.{}", b64.encode(sig.as_ref()));
    let body =
        serde_json::json!({"token": token, "access_token": token, "expires_in": 600}).to_string();
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(resp.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// The fault-injecting proxy

/// What the proxy does wrong, and how many times.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Flip one byte in every answer for the blob `digest`.
    Corrupt { digest: String },
    /// Answer the blob (or the range asked for) with half its body and a Content-Length to
    /// match, `times` times.
    Truncate { digest: String, times: usize },
    /// Announce the whole blob, send half, then close the connection, `times` times.
    Cut { digest: String, times: usize },
    /// Answer `status` without asking the registry, to the first `times` requests whose path
    /// contains `path`.
    Status {
        path: String,
        status: u16,
        times: usize,
    },
    /// Send half the blob, then hang until the proxy is dropped.
    Stall { digest: String },
    /// Drop the Range header from every request (a server that does not do ranges).
    IgnoreRange,
    /// Answer requests for the blob with `307 Temporary Redirect` to the same path with
    /// `?redirected=1` (as registries send clients to their blob storage).
    Redirect { digest: String },
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    /// The status the registry answered (before any fault).
    pub upstream: u16,
    /// Bytes of body sent to the client.
    pub sent: usize,
}

struct ProxyState {
    faults: Vec<Fault>,
    seen: Vec<Seen>,
}

/// An HTTP proxy in front of a registry: forwards each request (one per connection) and
/// misbehaves as told.
pub struct FaultProxy {
    pub addr: String,
    state: Arc<Mutex<ProxyState>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    pub fn start(upstream: &str, faults: Vec<Fault>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("addr").to_string();
        let state = Arc::new(Mutex::new(ProxyState {
            faults,
            seen: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp, up) = (state.clone(), stop.clone(), upstream.to_string());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (st, sp, up) = (st.clone(), sp.clone(), up.clone());
                std::thread::spawn(move || {
                    let _ = proxy_one(conn, &up, &st, &sp);
                });
            }
        });
        FaultProxy {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().expect("proxy state").seen.clone()
    }

    /// Requests for the blob `digest`.
    pub fn blob_requests(&self, digest: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.path.ends_with(&format!("/blobs/{digest}")))
            .collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn proxy_one(
    mut client: TcpStream,
    upstream: &str,
    state: &Mutex<ProxyState>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let head = read_head(&mut client)?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("").to_string();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers: Vec<(String, String)> = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let range = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("range"))
        .map(|(_, v)| v.clone());

    // Faults decided before the registry is asked.
    let mut fault = None;
    {
        let mut st = state.lock().expect("proxy state");
        for f in st.faults.iter_mut() {
            match f {
                Fault::Status {
                    path: p,
                    status,
                    times,
                } if *times > 0 && path.contains(p.as_str()) => {
                    *times -= 1;
                    fault = Some(Fault::Status {
                        path: p.clone(),
                        status: *status,
                        times: 0,
                    });
                    break;
                }
                Fault::IgnoreRange => {
                    headers.retain(|(n, _)| !n.eq_ignore_ascii_case("range"));
                }
                Fault::Redirect { digest } if path.ends_with(&format!("/blobs/{digest}")) => {
                    fault = Some(f.clone());
                    break;
                }
                _ => {}
            }
        }
        if let Some(Fault::Status { status, .. }) = &fault {
            st.seen.push(Seen {
                method: method.clone(),
                path: path.clone(),
                range: range.clone(),
                upstream: *status,
                sent: 0,
            });
        }
    }
    if let Some(Fault::Redirect { .. }) = fault {
        state.lock().expect("proxy state").seen.push(Seen {
            method: method.clone(),
            path: path.clone(),
            range: range.clone(),
            upstream: 307,
            sent: 0,
        });
        let resp = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {path}?redirected=1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        client.write_all(resp.as_bytes())?;
        return client.shutdown(Shutdown::Both);
    }
    if let Some(Fault::Status { status, .. }) = fault {
        let resp =
            format!("HTTP/1.1 {status} Injected\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        client.write_all(resp.as_bytes())?;
        return client.shutdown(Shutdown::Both);
    }

    let mut up = TcpStream::connect(upstream)?;
    let mut req = format!("{request_line}\r\n");
    for (n, v) in &headers {
        if !n.eq_ignore_ascii_case("connection") {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    req.push_str("Connection: close\r\n\r\n");
    up.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    up.read_to_end(&mut raw)?;
    let Some((start, status, _)) = split_head(&raw) else {
        return client.shutdown(Shutdown::Both);
    };
    let body = raw[start..].to_vec();

    // Faults on the answer.
    let mut act = None;
    {
        let mut st = state.lock().expect("proxy state");
        if status == 200 || status == 206 {
            for f in st.faults.iter_mut() {
                let hit = |d: &str| path.ends_with(&format!("/blobs/{d}"));
                match f {
                    Fault::Corrupt { digest } if hit(digest) => act = Some(f.clone()),
                    Fault::Stall { digest } if hit(digest) && status == 200 => {
                        act = Some(f.clone())
                    }
                    Fault::Truncate { digest, times } if hit(digest) && *times > 0 => {
                        *times -= 1;
                        act = Some(f.clone());
                    }
                    Fault::Cut { digest, times } if hit(digest) && status == 200 && *times > 0 => {
                        *times -= 1;
                        act = Some(f.clone());
                    }
                    _ => {}
                }
                if act.is_some() {
                    break;
                }
            }
        }
        let sent = match &act {
            Some(Fault::Truncate { .. } | Fault::Cut { .. } | Fault::Stall { .. }) => {
                body.len() / 2
            }
            _ => body.len(),
        };
        st.seen.push(Seen {
            method: method.clone(),
            path: path.clone(),
            range: range.clone(),
            upstream: status,
            sent,
        });
    }
    let head_with_length = |len: usize| {
        let mut h = raw[..start - 2].to_vec();
        let text = String::from_utf8_lossy(&h).into_owned();
        let mut out = String::new();
        for (i, line) in text.split("\r\n").enumerate() {
            if line.is_empty() {
                continue;
            }
            if i > 0 && line.to_ascii_lowercase().starts_with("content-length:") {
                out.push_str(&format!("Content-Length: {len}\r\n"));
            } else {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
        out.push_str("\r\n");
        h.clear();
        h.extend_from_slice(out.as_bytes());
        h
    };
    match act {
        None => client.write_all(&raw)?,
        Some(Fault::Corrupt { .. }) => {
            let mut raw = raw.clone();
            let mid = start + body.len() / 2;
            if mid < raw.len() {
                raw[mid] ^= 0xff;
            }
            client.write_all(&raw)?;
        }
        Some(Fault::Truncate { .. }) => {
            let half = body.len() / 2;
            client.write_all(&head_with_length(half))?;
            client.write_all(&body[..half])?;
        }
        Some(Fault::Cut { .. }) => {
            client.write_all(&raw[..start + body.len() / 2])?;
        }
        Some(Fault::Stall { .. }) => {
            client.write_all(&raw[..start + body.len() / 2])?;
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Some(_) => client.write_all(&raw)?,
    }
    client.flush()?;
    client.shutdown(Shutdown::Both)
}
