//! Loading layers exactly and safely (issue 3, acceptance 3, 4 and 5).
//!
//! - Exactly: the flattened root filesystem (`stepctr load --flatten`) of each test image is
//!   identical to what `umoci unpack` makes of it, compared by a tree walk (names, types,
//!   modes, owners, link targets, contents, device numbers, xattrs, mtimes of non-directories,
//!   link counts); and overlayfs stacking the layers `stepctr load` unpacked shows the same
//!   tree as the flattened one.
//! - Safely: a corpus of hostile layers, each unpacked (stacked and flattened) next to a
//!   sentinel tree it tries to reach. Nothing outside the root may be created, changed or
//!   deleted (every file's type, mode, owner, size, contents, xattrs, link count, mtime and
//!   ctime are compared before and after), and each is either refused with an error naming
//!   the entry, or confined inside the root.
//!
//! Everything runs in the private mount namespace the harness enters (the overlay mounts
//! never reach the host). The process umask is 0 for the whole binary: the unpacker sets
//! the umask to 0 while it works, and tests run in parallel threads.

mod common;
#[path = "common/images.rs"]
mod images;

use common::{unique, Env};
use images::{Compression, Entry, ImageBuilder, Layer, Layout};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Cursor;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use stepctr::image::unpack::{self, LayerBlob, Mode, Owners, Unpacker};
use stepctr::kernel::linux::Linux;
use stepctr::kernel::{Child, ChildBody, Errno, KResult, Kernel, Ret, Sys};
use tar::EntryType as T;

fn main() {
    // SAFETY: single-threaded here; umask cannot fail.
    unsafe { libc::umask(0) };
    common::enter_private_mount_ns();
    let args = common::test_args();
    let skip = !common::is_root();
    let mut trials: Vec<libtest_mimic::Trial> = Vec::new();
    let named: Vec<(&str, fn())> = tests![
        flatten_matches_umoci_for_every_entry_type,
        flatten_of_zstd_layers_matches_umoci_of_gzip,
        flatten_of_extras_matches_umoci,
        flatten_of_busybox_matches_umoci,
        stacked_overlay_matches_flatten,
        stacked_overlay_matches_flatten_for_extras,
        corrupt_layer_is_refused_and_nothing_published,
        unsupported_media_type_is_refused,
        whiteouts_take_overlayfs_form_when_stacked,
        unprivileged_stacked_makes_no_chown_no_device_and_user_xattrs,
        unprivileged_flatten_skips_devices_and_keeps_modes,
        unprivileged_stacked_overlay_with_userxattr_matches_flatten,
    ];
    for (name, f) in named {
        trials.push(
            libtest_mimic::Trial::test(name, move || {
                f();
                Ok(())
            })
            .with_ignored_flag(skip),
        );
    }
    for case in hostile_cases() {
        for mode in [Mode::Flatten, Mode::Stacked] {
            for owners in [Owners::Image, Owners::Mine] {
                let suffix = match owners {
                    Owners::Image => "",
                    Owners::Mine => "::unprivileged",
                };
                let name = format!("hostile::{}::{}{suffix}", case.name, mode_name(mode));
                trials.push(
                    libtest_mimic::Trial::test(name, move || {
                        run_hostile(&case, mode, owners);
                        Ok(())
                    })
                    .with_ignored_flag(skip),
                );
            }
        }
    }
    trials.push(libtest_mimic::Trial::test(
        "hostile::corpus_is_big_enough",
        || {
            assert!(hostile_cases().len() >= 14);
            Ok(())
        },
    ));
    common::run_trials(&args, trials)
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Flatten => "flatten",
        Mode::Stacked => "stacked",
    }
}

// ---------------------------------------------------------------------------------------------
// Tree walks

/// What a tree walk records of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Regular files: sha256 of the contents.
    content: Option<String>,
    /// Symlinks: the target.
    target: Option<String>,
    /// Devices: (major, minor).
    rdev: Option<(u32, u32)>,
    xattrs: BTreeMap<String, String>,
    /// Non-directories: (seconds, nanoseconds).
    mtime: Option<(i64, i64)>,
    /// Non-directories, when asked for.
    nlink: Option<u64>,
    /// Only for the sentinel snapshots: the change time and, for directories, the mtime.
    ctime: Option<(i64, i64)>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Walk {
    nlink: bool,
    /// Record ctimes and directory mtimes too (sentinel snapshots).
    strict: bool,
}

fn xattrs(path: &Path) -> BTreeMap<String, String> {
    let c = CString::new(path.as_os_str().as_bytes()).expect("path");
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 65536];
    // SAFETY: buffers are ours and sized as passed.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return out;
    }
    names.truncate(n as usize);
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cn = CString::new(name).expect("xattr name");
        let mut val = vec![0u8; 65536];
        // SAFETY: as above.
        let m =
            unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
        if m < 0 {
            continue;
        }
        val.truncate(m as usize);
        out.insert(
            String::from_utf8_lossy(name).into_owned(),
            format!("{val:?}"),
        );
    }
    out
}

fn node(path: &Path, w: Walk) -> Node {
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else if ft.is_fifo() {
        "fifo"
    } else {
        "socket"
    };
    let content = ft.is_file().then(|| {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        hex::encode(Sha256::digest(&data))
    });
    let target = ft.is_symlink().then(|| {
        std::fs::read_link(path)
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let rdev = (ft.is_char_device() || ft.is_block_device())
        .then(|| (libc::major(m.rdev()), libc::minor(m.rdev())));
    Node {
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        content,
        target,
        rdev,
        xattrs: xattrs(path),
        mtime: (!ft.is_dir() || w.strict).then(|| (m.mtime(), m.mtime_nsec())),
        nlink: (!ft.is_dir() && w.nlink).then(|| m.nlink()),
        ctime: w.strict.then(|| (m.ctime(), m.ctime_nsec())),
    }
}

/// Every file under `root` (root itself as ""), by path relative to it; `skip` names paths
/// not to walk into.
fn tree(root: &Path, w: Walk, skip: &[PathBuf]) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        if skip.contains(&p) {
            continue;
        }
        let rel = p
            .strip_prefix(root)
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_default();
        let n = node(&p, w);
        if n.kind == "dir" {
            for e in std::fs::read_dir(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())) {
                stack.push(e.expect("dir entry").path());
            }
        }
        out.insert(rel, n);
    }
    out
}

/// The differences between two trees, one line each ("" when none).
fn differences(
    a_name: &str,
    a: &BTreeMap<String, Node>,
    b_name: &str,
    b: &BTreeMap<String, Node>,
) -> String {
    let mut lines = Vec::new();
    for (p, na) in a {
        match b.get(p) {
            None => lines.push(format!("/{p}: only in {a_name} ({na:?})")),
            Some(nb) if nb != na => lines.push(format!(
                "/{p}: differs\n    {a_name}: {na:?}\n    {b_name}: {nb:?}"
            )),
            _ => {}
        }
    }
    for (p, nb) in b {
        if !a.contains_key(p) {
            lines.push(format!("/{p}: only in {b_name} ({nb:?})"));
        }
    }
    let n = lines.len();
    lines.truncate(40);
    if n > 40 {
        lines.push(format!("... {} more", n - 40));
    }
    lines.join("\n")
}

fn assert_same_tree(
    a_name: &str,
    a: &BTreeMap<String, Node>,
    b_name: &str,
    b: &BTreeMap<String, Node>,
) {
    let d = differences(a_name, a, b_name, b);
    assert!(d.is_empty(), "{a_name} and {b_name} differ:\n{d}");
    assert!(a.len() > 3, "suspiciously small trees: {a:?}");
}

// ---------------------------------------------------------------------------------------------
// stepctr and umoci

/// A stepctr environment with its own store, and a scratch directory.
struct Fixture {
    env: Env,
    work: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            env: Env::fresh(),
            work: tempfile::Builder::new()
                .prefix("stepctr-unpack-test-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// `stepctr pull oci:LAYOUT:TAG`; returns the name it is stored under.
    fn pull(&self, layout: &Path, tag: &str) -> String {
        self.env.ok(&["-q", "pull", &images::oci_ref(layout, tag)]);
        let base = layout
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        format!("localhost/{base}:{tag}")
    }

    /// `stepctr load NAME REF [--flatten]`; returns the container's layer directories.
    fn load(&self, name: &str, reference: &str, flatten: bool) -> Vec<PathBuf> {
        let mut args = vec!["-q", "load", name, reference];
        if flatten {
            args.push("--flatten");
        }
        self.env.ok(&args);
        let state = self.env.state(name);
        state["layers"]
            .as_array()
            .expect("layers in state.json")
            .iter()
            .map(|l| PathBuf::from(l.as_str().expect("layer path")))
            .collect()
    }

    /// The flattened tree of the image at `layout:tag`, by stepctr.
    fn flatten(&self, layout: &Path, tag: &str) -> PathBuf {
        let reference = self.pull(layout, tag);
        let name = unique("unpack-flat");
        let layers = self.load(&name, &reference, true);
        assert_eq!(
            layers.len(),
            1,
            "a flattened image is one directory: {layers:?}"
        );
        self.env.ok(&["-q", "rm", &name]);
        layers[0].clone()
    }

    /// `umoci unpack --image LAYOUT:TAG BUNDLE`; returns the bundle's rootfs.
    fn umoci(&self, layout: &Path, tag: &str) -> PathBuf {
        let bundle = self.path(&format!("bundle-{tag}"));
        let out = Command::new("sh")
            .arg("-c")
            // umoci makes missing parent directories with the usual umask, as a user has it.
            .arg("umask 022; exec umoci unpack --image \"$1\" \"$2\"")
            .arg("sh")
            .arg(format!("{}:{tag}", layout.display()))
            .arg(&bundle)
            .output()
            .expect("run umoci (apt-get install umoci)");
        assert!(
            out.status.success(),
            "umoci unpack failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        bundle.join("rootfs")
    }
}

fn compare_with_umoci(f: &Fixture, layout: &Path, tag: &str, umoci_tag: &str) {
    let ours = f.flatten(layout, tag);
    let theirs = f.umoci(layout, umoci_tag);
    let w = Walk {
        nlink: true,
        strict: false,
    };
    assert_same_tree(
        "stepctr --flatten",
        &tree(&ours, w, &[]),
        "umoci unpack",
        &tree(&theirs, w, &[]),
    );
}

fn flatten_matches_umoci_for_every_entry_type() {
    let f = Fixture::new();
    let layout = f.path("layout");
    let tag = images::everything_image(&layout);
    compare_with_umoci(&f, &layout, &tag, &tag);
}

fn flatten_of_zstd_layers_matches_umoci_of_gzip() {
    // umoci 0.4.7 does not read zstd layers: the same layers in gzip are its reference.
    let f = Fixture::new();
    let layout = f.path("layout");
    let gz = images::everything_image(&layout);
    let zst = images::everything_zstd_image(&layout);
    compare_with_umoci(&f, &layout, &zst, &gz);
}

fn flatten_of_busybox_matches_umoci() {
    let f = Fixture::new();
    let layout = f.path("busybox");
    Layout::create(&layout).add_image(&ImageBuilder::busybox(Compression::Gzip), "latest");
    compare_with_umoci(&f, &layout, "latest", "latest");
}

// ---------------------------------------------------------------------------------------------
// The extras image: what the everything image does not cover

/// Layer A of the extras image: trusted.* xattrs, nanosecond mtimes, a file whose
/// directories the tar does not list, hardlink chains, symlink chains, a root entry,
/// duplicate entries.
fn extras_a() -> Vec<u8> {
    let entries = vec![
        Entry::dir("./").mode(0o755).mtime(1_234_567_890),
        Entry::dir("x")
            .xattr("trusted.stepctr.a", b"1")
            .xattr("user.stepctr.d", b"dir"),
        Entry::file("x/frac", b"nanoseconds\n"),
        Entry::file("x/owned", b"owned\n")
            .mode(0o640)
            .owner(1001, 1002)
            .xattr("trusted.stepctr.f", b"tf")
            .xattr("user.stepctr.f", b"uf"),
        Entry::file("deep/no/parents/file", b"no directory entries above me\n"),
        Entry::dir("h"),
        Entry::file("h/one", b"one inode, three names\n").mode(0o751),
        Entry::hardlink("h/two", "h/one"),
        Entry::hardlink("h/three", "h/two"),
        Entry::symlink("s1", "s2"),
        Entry::symlink("s2", "x/frac"),
        Entry::char_dev("tty0", 4, 0).mode(0o620).owner(0, 5),
        Entry::fifo("pipe").mode(0o2644),
        Entry::dir("merge")
            .mode(0o700)
            .xattr("user.stepctr.old", b"1"),
        Entry::dir("wh2"),
        Entry::dir("wh2/sub"),
        Entry::file("wh2/sub/f", b"whited out with its directory\n"),
        Entry::file("wh2/keep", b"kept\n"),
        Entry::dir("gone-then-back"),
        Entry::file("gone-then-back/old", b"old\n"),
        Entry::dir("reverse"),
        Entry::file("reverse/old", b"old\n"),
        Entry::file("dup", b"first\n").mode(0o600),
        Entry::file("dup", b"second\n").mode(0o644),
        Entry::dir("setgid-parent").mode(0o2775).owner(0, 42),
        Entry::file(
            "setgid-parent/child",
            b"group from the tar, not the parent\n",
        ),
        Entry::dir("setgid-parent/subdir").mode(0o755),
        // overlayfs's own xattr names, as image content: stacked layers store them escaped.
        Entry::dir("ovl").xattr("trusted.overlay.stepctr", b"image content"),
        Entry::file("ovl/f", b"f\n").xattr("trusted.overlay.opaque", b"y"),
    ];
    images::tar_with_pax(
        &entries,
        &[
            (2, "mtime", b"1600000000.123456789"),
            (3, "mtime", b"1500000000.5"),
        ],
    )
}

/// Layer B: merges, replacements, whiteouts of both kinds, whiteout-and-recreate in one
/// layer (both orders).
fn extras_b() -> Vec<u8> {
    let entries = vec![
        Entry::dir("x").mode(0o750).owner(7, 7),
        Entry::symlink("x/frac", "owned"),
        Entry::dir("merge")
            .mode(0o755)
            .xattr("user.stepctr.new", b"2"),
        Entry::dir("wh2"),
        Entry::whiteout("wh2/sub"),
        Entry::file("wh2/new", b"new\n"),
        Entry::whiteout("s1"),
        Entry::dir("h"),
        Entry::whiteout("h/one"),
        Entry::dir("deep"),
        Entry::opaque("deep"),
        Entry::file("deep/again", b"the only thing left in deep\n"),
        Entry::whiteout("gone-then-back"),
        Entry::dir("gone-then-back"),
        Entry::file("gone-then-back/new", b"new\n"),
        Entry::dir("reverse"),
        Entry::file("reverse/new", b"new\n"),
        Entry::whiteout("reverse"),
        Entry::file("dup", b"third\n").mode(0o4755).owner(3, 3),
    ];
    images::tar_with_pax(&entries, &[])
}

fn extras_image(layout: &Path, compression_b: Compression, tag: &str) {
    let img = ImageBuilder::busybox(Compression::Gzip)
        .layer(Layer::new(extras_a(), Compression::Gzip), "extras A")
        .layer(Layer::new(extras_b(), compression_b), "extras B");
    Layout::create(layout).add_image(&img, tag);
}

fn flatten_of_extras_matches_umoci() {
    let f = Fixture::new();
    let layout = f.path("extras");
    extras_image(&layout, Compression::None, "extras");
    compare_with_umoci(&f, &layout, "extras", "extras");
}

// ---------------------------------------------------------------------------------------------
// Acceptance 4: overlayfs over the stacked layers shows the flattened tree

/// Mount overlayfs with `layers` (bottom first) at a new directory in `work`; returns it.
fn overlay(work: &Path, layers: &[PathBuf]) -> PathBuf {
    overlay_with(work, layers, "")
}

/// [`overlay`] with more mount options (`userxattr`).
fn overlay_with(work: &Path, layers: &[PathBuf], extra: &str) -> PathBuf {
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let (upper, wdir, target) = (work.join("upper"), work.join("work"), work.join("merged"));
    for d in [&upper, &wdir, &target] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let mut opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        wdir.display()
    );
    if !extra.is_empty() {
        opts = format!("{extra},{opts}");
    }
    let c = |s: &str| CString::new(s).expect("cstring");
    let (src, tgt, fs, data) = (
        c("overlay"),
        c(&target.display().to_string()),
        c("overlay"),
        c(&opts),
    );
    // SAFETY: valid C strings; the test runs in its own mount namespace.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fs.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    assert_eq!(
        rc,
        0,
        "mount overlay {opts}: {}",
        std::io::Error::last_os_error()
    );
    target
}

fn umount(target: &Path) {
    let t = CString::new(target.as_os_str().as_bytes()).expect("cstring");
    // SAFETY: plain umount2 of our own mount.
    unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
}

fn compare_stacked_with_flat(f: &Fixture, layout: &Path, tag: &str) {
    let reference = f.pull(layout, tag);
    let flat = f.flatten(layout, tag);
    let name = unique("unpack-stacked");
    let layers = f.load(&name, &reference, false);
    assert!(layers.len() > 1, "stacked layers: {layers:?}");
    let merged = overlay(f.work.path(), &layers);
    let w = Walk::default();
    let stacked = tree(&merged, w, &[]);
    umount(&merged);
    f.env.ok(&["-q", "rm", &name]);
    let mut flat_tree = tree(&flat, w, &[]);
    // The root of a mount shows the upper directory's attributes (the test's own).
    flat_tree.remove("");
    let mut stacked = stacked;
    stacked.remove("");
    assert_same_tree(
        "overlayfs over the stacked layers",
        &stacked,
        "stepctr --flatten",
        &flat_tree,
    );
}

fn stacked_overlay_matches_flatten() {
    let f = Fixture::new();
    let layout = f.path("layout");
    let tag = images::everything_zstd_image(&layout);
    compare_stacked_with_flat(&f, &layout, &tag);
}

fn stacked_overlay_matches_flatten_for_extras() {
    let f = Fixture::new();
    let layout = f.path("extras");
    extras_image(&layout, Compression::Zstd, "extras-zstd");
    compare_stacked_with_flat(&f, &layout, "extras-zstd");
}

fn whiteouts_take_overlayfs_form_when_stacked() {
    let work = tempfile::tempdir().expect("tmp");
    let root = work.path().join("layer");
    std::fs::create_dir(&root).expect("mkdir");
    let mut u = Unpacker::open(&Linux, &root, Mode::Stacked, Owners::Image).expect("open");
    u.apply(Cursor::new(extras_b())).expect("apply");
    u.close().expect("close");
    let wh = std::fs::symlink_metadata(root.join("wh2/sub")).expect("whiteout");
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "{wh:?}");
    assert_eq!(
        xattrs(&root.join("deep"))
            .get("trusted.overlay.opaque")
            .map(String::as_str),
        Some("[121]")
    );
    // Whited out and made again in the same layer (both orders): opaque directories.
    for d in ["gone-then-back", "reverse"] {
        assert!(root.join(d).is_dir(), "{d}");
        assert!(
            xattrs(&root.join(d)).contains_key("trusted.overlay.opaque"),
            "{d} is opaque"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Unpacking as an unprivileged user would (Owners::Mine), forced while root

/// The real kernel, with every call it makes kept in order (as the narration would show it).
#[derive(Default)]
struct Spy {
    calls: std::cell::RefCell<Vec<Sys>>,
}

impl Kernel for Spy {
    fn sys(&self, call: &Sys, why: &str) -> Result<Ret, Errno> {
        self.calls.borrow_mut().push(call.clone());
        Linux.sys(call, why)
    }
    fn spawn(&self, why: &str, body: &mut ChildBody<'_>) -> KResult<Child> {
        Linux.spawn(why, body)
    }
    fn spawn_into(&self, fd: i32, why: &str, body: &mut ChildBody<'_>) -> KResult<Child> {
        Linux.spawn_into(fd, why, body)
    }
    fn child_error(&self, child: &Child) -> Option<String> {
        Linux.child_error(child)
    }
    fn getpid(&self) -> i32 {
        Linux.getpid()
    }
}

impl Spy {
    fn texts(&self) -> Vec<String> {
        self.calls
            .borrow()
            .iter()
            .map(|c| {
                stepctr::kernel::render::call(c, stepctr::kernel::render::Detail::Full, &|_| None)
            })
            .collect()
    }
}

/// One layer with everything an unprivileged user cannot do as root does.
fn unprivileged_layer() -> Vec<u8> {
    images::tar(&[
        Entry::dir("./").mode(0o755),
        Entry::dir("ro").mode(0o555).owner(1000, 1000),
        Entry::file("ro/f", b"inside a read-only directory\n").mode(0o444),
        Entry::dir("ro/sub").mode(0o500),
        Entry::file("ro/sub/g", b"deeper\n"),
        Entry::file("suid", b"setuid root\n").mode(0o4755),
        Entry::file("sgid", b"setgid\n").mode(0o2755).owner(0, 42),
        Entry::char_dev("tty0", 4, 0).mode(0o620).owner(0, 5),
        Entry::block_dev("sda", 8, 0).mode(0o660).owner(0, 6),
        Entry::fifo("pipe").mode(0o644),
        Entry::symlink("lnk", "suid").owner(7, 7),
        Entry::whiteout("gone"),
        Entry::dir("o"),
        Entry::opaque("o"),
        Entry::file("o/kept", b"kept\n"),
        Entry::file("x", b"x\n")
            .xattr("user.overlay.origin", b"image content")
            .xattr("user.overlay.opaque", b"y")
            .xattr("trusted.stepctr", b"t")
            .xattr("trusted.overlay.opaque", b"y")
            .xattr("security.stepctr", b"s")
            .xattr("user.stepctr", b"u"),
    ])
}

fn unprivileged_stacked_makes_no_chown_no_device_and_user_xattrs() {
    let work = tempfile::tempdir().expect("tmp");
    let root = work.path().join("layer");
    std::fs::create_dir(&root).expect("mkdir");
    let spy = Spy::default();
    let mut u = Unpacker::open(&spy, &root, Mode::Stacked, Owners::Mine).expect("open");
    let counts = u.apply(Cursor::new(unprivileged_layer())).expect("apply");
    u.close().expect("close");
    let texts = spy.texts();
    let chowns: Vec<&String> = texts.iter().filter(|t| t.starts_with("fchown")).collect();
    assert!(chowns.is_empty(), "fchown/fchownat narrated: {chowns:?}");
    let mknods: Vec<&String> = texts.iter().filter(|t| t.starts_with("mknodat")).collect();
    assert_eq!(
        mknods.len(),
        2,
        "only the fifo and the whiteout: {mknods:?}"
    );
    assert!(
        mknods
            .iter()
            .all(|t| t.contains("S_IFIFO") || t.contains("makedev(0, 0)")),
        "{mknods:?}"
    );
    // The counts the load note is made of: owners other than 0:0 (ro, sgid, lnk; not the
    // skipped devices), devices, trusted.*/security.* xattrs (trusted.overlay.opaque and
    // user.overlay.opaque are skipped quietly, as overlayfs's own markers).
    assert_eq!(counts.kept_owner, 3, "{counts:?}");
    assert_eq!(counts.skipped_devices, 2, "{counts:?}");
    assert_eq!(counts.skipped_xattrs, 2, "{counts:?}");
    assert_eq!(counts.other, 1, "the fifo: {counts:?}");

    let meta = |p: &str| std::fs::symlink_metadata(root.join(p)).expect(p);
    assert!(!root.join("tty0").exists() && !root.join("sda").exists());
    assert!(meta("pipe").file_type().is_fifo());
    let wh = meta("gone");
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "{wh:?}");
    let o = xattrs(&root.join("o"));
    assert_eq!(
        o.get("user.overlay.opaque").map(String::as_str),
        Some("[121]")
    );
    assert!(!o.contains_key("trusted.overlay.opaque"), "{o:?}");
    let x = xattrs(&root.join("x"));
    let names: Vec<&str> = x.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["user.overlay.overlay.origin", "user.stepctr"],
        "escaped user.overlay.*, no trusted/security, no opaque marker on a file"
    );
    // Every entry is the unpacker's own (root's here: the user's when rootless).
    // SAFETY: geteuid and getegid cannot fail.
    let me = unsafe { (libc::geteuid(), libc::getegid()) };
    for p in ["ro", "ro/f", "sgid", "lnk", "pipe", "x"] {
        assert_eq!((meta(p).uid(), meta(p).gid()), me, "{p}");
    }
    // Modes exactly the image's: setuid/setgid kept, read-only directories read-only again.
    assert_eq!(meta("suid").mode() & 0o7777, 0o4755);
    assert_eq!(meta("sgid").mode() & 0o7777, 0o2755);
    assert_eq!(meta("ro").mode() & 0o7777, 0o555);
    assert_eq!(meta("ro/sub").mode() & 0o7777, 0o500);
    assert_eq!(read(&root.join("ro/sub/g")), "deeper\n");
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("fchmodat(") && t.contains("\"ro\", 0755")),
        "ro kept writable while its entries go in: {texts:#?}"
    );
    // Root's way, for contrast: the owners are given.
    let root2 = work.path().join("root-way");
    std::fs::create_dir(&root2).expect("mkdir");
    let spy = Spy::default();
    let mut u = Unpacker::open(&spy, &root2, Mode::Stacked, Owners::Image).expect("open");
    let counts = u.apply(Cursor::new(unprivileged_layer())).expect("apply");
    u.close().expect("close");
    assert_eq!(
        (
            counts.kept_owner,
            counts.skipped_devices,
            counts.skipped_xattrs
        ),
        (0, 0, 0)
    );
    assert!(spy
        .texts()
        .iter()
        .any(|t| t.starts_with("fchownat(") && t.contains("1000, 1000")));
    assert!(xattrs(&root2.join("o")).contains_key("trusted.overlay.opaque"));
}

fn unprivileged_flatten_skips_devices_and_keeps_modes() {
    let work = tempfile::tempdir().expect("tmp");
    let root = work.path().join("flat");
    std::fs::create_dir(&root).expect("mkdir");
    let lower = images::tar(&[
        Entry::file("dev0", b"a file a device replaces\n"),
        Entry::dir("ro").mode(0o555),
        Entry::file("ro/a", b"a\n"),
        Entry::dir("o"),
        Entry::file("o/old", b"old\n"),
        Entry::dir("rd").mode(0o500),
        Entry::file("rd/f", b"f\n"),
    ]);
    let upper = images::tar(&[
        Entry::char_dev("dev0", 1, 3),
        // A later layer still writes into the read-only directory of the one below.
        Entry::file("ro/b", b"b\n").owner(5, 5),
        Entry::opaque("o"),
        Entry::file("o/new", b"new\n"),
        Entry::file("y", b"y\n").xattr("user.overlay.origin", b"kept as is when flat"),
        // A read-only directory whited out and replaced by a file: the file keeps its mode.
        Entry::whiteout("rd"),
        Entry::file("rd", b"a file now\n").mode(0o640),
    ]);
    let spy = Spy::default();
    let mut u = Unpacker::open(&spy, &root, Mode::Flatten, Owners::Mine).expect("open");
    let mut total = unpack::Counts::default();
    for t in [&lower, &upper] {
        total.add(&u.apply(Cursor::new(t)).expect("apply"));
    }
    u.close().expect("close");
    assert!(!spy.texts().iter().any(|t| t.starts_with("fchown")));
    assert_eq!(
        (total.kept_owner, total.skipped_devices),
        (1, 1),
        "{total:?}"
    );
    assert!(
        !root.join("dev0").exists(),
        "the device replaced the file below it"
    );
    assert_eq!(read(&root.join("ro/b")), "b\n");
    let ro = std::fs::symlink_metadata(root.join("ro")).expect("ro");
    assert_eq!(ro.mode() & 0o7777, 0o555);
    assert!(!root.join("o/old").exists() && root.join("o/new").exists());
    assert!(
        xattrs(&root.join("o")).is_empty(),
        "flattened: no opaque marker"
    );
    assert!(xattrs(&root.join("y")).contains_key("user.overlay.origin"));
    let rd = std::fs::symlink_metadata(root.join("rd")).expect("rd");
    assert!(rd.is_file() && rd.mode() & 0o7777 == 0o640, "{rd:?}");
}

/// The overlay an unprivileged user mounts in their user namespace (`userxattr`) over the
/// layers unpacked their way shows what their flattened tree holds.
fn unprivileged_stacked_overlay_with_userxattr_matches_flatten() {
    let work = tempfile::tempdir().expect("tmp");
    let tars = [extras_a(), extras_b()];
    let flat = work.path().join("flat");
    std::fs::create_dir(&flat).expect("mkdir");
    let mut u = Unpacker::open(&Linux, &flat, Mode::Flatten, Owners::Mine).expect("open");
    for t in &tars {
        u.apply(Cursor::new(t)).expect("apply flat");
    }
    u.close().expect("close");
    let mut layers = Vec::new();
    for (i, t) in tars.iter().enumerate() {
        let r = work.path().join(format!("layer{i}"));
        std::fs::create_dir(&r).expect("mkdir");
        let mut u = Unpacker::open(&Linux, &r, Mode::Stacked, Owners::Mine).expect("open");
        u.apply(Cursor::new(t)).expect("apply stacked");
        u.close().expect("close");
        layers.push(r);
    }
    // No trusted.overlay.* anywhere: an overlay in a user namespace could not read them.
    for r in &layers {
        for (path, n) in tree(r, Walk::default(), &[]) {
            assert!(
                !n.xattrs.keys().any(|k| k.starts_with("trusted.")),
                "{path}: {:?}",
                n.xattrs
            );
        }
    }
    let merged = overlay_with(work.path(), &layers, "userxattr");
    let w = Walk::default();
    let mut stacked = tree(&merged, w, &[]);
    umount(&merged);
    let mut flat_tree = tree(&flat, w, &[]);
    stacked.remove("");
    flat_tree.remove("");
    assert_same_tree(
        "overlayfs (userxattr) over the unprivileged stacked layers",
        &stacked,
        "the unprivileged flattened tree",
        &flat_tree,
    );
}

// ---------------------------------------------------------------------------------------------
// Corrupt and unsupported layers

fn corrupt_layer_is_refused_and_nothing_published() {
    let f = Fixture::new();
    let work = f.path("corrupt");
    std::fs::create_dir_all(&work).expect("mkdir");
    let blob = work.join("blob");
    let tar = images::tar(&[Entry::file("a", b"a\n")]);
    std::fs::write(&blob, &tar).expect("write");
    let dest = work.join("dest");
    std::fs::create_dir(&dest).expect("mkdir");
    let wrong = format!("sha256:{}", "0".repeat(64));
    let err = unpack::unpack_layer(
        &Linux,
        &LayerBlob {
            path: &blob,
            media_type: "application/vnd.oci.image.layer.v1.tar",
            diff_id: &wrong,
        },
        &dest,
        "test",
        Owners::Image,
    )
    .expect_err("a layer with the wrong diff_id was accepted");
    assert!(format!("{err:#}").contains("corrupt"), "{err:#}");

    // Through the CLI: a layout whose config names the wrong diff_id.
    let layout = f.path("layout");
    let mut layer = Layer::from_entries(&[Entry::file("etc/x", b"x\n")], Compression::Gzip);
    layer.diff_id = wrong.clone();
    Layout::create(&layout).add_image(
        &ImageBuilder::busybox(Compression::Gzip).layer(layer, "bad"),
        "bad",
    );
    let reference = f.pull(&layout, "bad");
    let name = unique("unpack-corrupt");
    let out = f.env.run(&["-q", "load", &name, &reference]);
    assert!(!out.status.success(), "load of a corrupt layer succeeded");
    let err = common::stderr(&out);
    assert!(err.contains("corrupt"), "{err}");
    let layers = f.env.root.join("layers");
    let hex = wrong.trim_start_matches("sha256:");
    assert!(
        !layers.join(hex).exists(),
        "the corrupt layer was published"
    );
    f.env.ok(&["-q", "rm", &name]);
    let left: Vec<_> = std::fs::read_dir(&layers)
        .expect("layers")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(
        left.is_empty(),
        "temporary layer directories left: {left:?}"
    );
}

fn unsupported_media_type_is_refused() {
    let work = tempfile::tempdir().expect("tmp");
    let blob = work.path().join("blob");
    std::fs::write(&blob, b"BZh9").expect("write");
    let err = unpack::unpack_layer(
        &Linux,
        &LayerBlob {
            path: &blob,
            media_type: "application/vnd.oci.image.layer.v1.tar+bzip2",
            diff_id: "sha256:00",
        },
        work.path(),
        "test",
        Owners::Image,
    )
    .expect_err("bzip2 accepted");
    assert!(format!("{err:#}").contains("not supported"), "{err:#}");
}

// ---------------------------------------------------------------------------------------------
// Acceptance 5: hostile layers

#[derive(Clone, Copy)]
enum Expect {
    /// Refused with an error naming this entry (`{base}` is the sentinel directory).
    Refused(&'static str),
    /// Unpacked, and this holds of the roots (one per layer when stacked, one when flat).
    /// Given who unpacked (an unprivileged user keeps every owner, makes no devices).
    Confined(fn(&[PathBuf], Mode, Owners)),
    /// Refused or confined: either is fine, as long as nothing outside changed.
    Either,
}

#[derive(Clone, Copy)]
struct Hostile {
    name: &'static str,
    /// The layers, bottom first, given the sentinel directory (for absolute paths into it).
    layers: fn(&Path) -> Vec<Vec<u8>>,
    expect: Expect,
}

fn one(entries: Vec<Entry>) -> Vec<Vec<u8>> {
    vec![images::tar(&entries)]
}

fn abs(base: &Path, rest: &str) -> String {
    format!("{}/{rest}", base.display())
}

/// A tar whose ustar name is harmless but whose PAX `path` record is not.
fn pax_path(real: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("path", real.as_bytes())])
        .expect("pax");
    let mut h = tar::Header::new_ustar();
    h.as_old_mut().name[..8].copy_from_slice(b"innocent");
    h.set_entry_type(T::Regular);
    h.set_mode(0o644);
    h.set_size(6);
    h.set_cksum();
    b.append(&h, &b"pwned\n"[..]).expect("append");
    b.into_inner().expect("tar")
}

/// A tar with a GNU long name (`././@LongLink`) that climbs out.
fn gnu_longname(real: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut data = real.as_bytes().to_vec();
    data.push(0);
    let mut l = tar::Header::new_gnu();
    l.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    l.set_entry_type(T::GNULongName);
    l.set_mode(0o644);
    l.set_size(data.len() as u64);
    l.set_cksum();
    b.append(&l, data.as_slice()).expect("longlink");
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..8].copy_from_slice(b"innocent");
    h.set_entry_type(T::Regular);
    h.set_mode(0o644);
    h.set_size(6);
    h.set_cksum();
    b.append(&h, &b"pwned\n"[..]).expect("append");
    b.into_inner().expect("tar")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn hostile_cases() -> Vec<Hostile> {
    vec![
        Hostile {
            name: "parent_traversal",
            layers: |_| one(vec![Entry::file("../outside/passwd", b"pwned\n")]),
            expect: Expect::Refused("../outside/passwd"),
        },
        Hostile {
            name: "deep_traversal",
            layers: |_| {
                one(vec![
                    Entry::dir("a"),
                    Entry::dir("a/b"),
                    Entry::file("a/b/../../../outside/passwd", b"pwned\n"),
                ])
            },
            expect: Expect::Refused("a/b/../../../outside/passwd"),
        },
        Hostile {
            name: "traversal_in_a_directory_name",
            layers: |_| one(vec![Entry::dir("../outside/newdir")]),
            expect: Expect::Refused("../outside/newdir/"),
        },
        Hostile {
            // Read as tar and umoci read it: relative to the root.
            name: "absolute_path",
            layers: |b| {
                one(vec![
                    Entry::file(&abs(b, "outside/passwd"), b"confined\n"),
                    Entry::dir(&abs(b, "outside/newdir")),
                ])
            },
            expect: Expect::Confined(|roots, _, _| {
                let base = roots[0].parent().expect("base");
                let inside = roots[0].join(base.strip_prefix("/").expect("absolute"));
                assert_eq!(read(&inside.join("outside/passwd")), "confined\n");
                assert!(inside.join("outside/newdir").is_dir());
            }),
        },
        Hostile {
            name: "pax_path_traversal",
            layers: |_| vec![pax_path("../outside/passwd")],
            expect: Expect::Refused("../outside/passwd"),
        },
        Hostile {
            name: "gnu_longname_traversal",
            layers: |_| vec![gnu_longname(&format!("../outside/{}", "x".repeat(120)))],
            expect: Expect::Refused("../outside/xxxx"),
        },
        Hostile {
            name: "relative_symlink_escape_then_write_through_it",
            layers: |_| {
                one(vec![
                    Entry::symlink("esc", "../../../../outside"),
                    Entry::file("esc/passwd", b"pwned\n"),
                ])
            },
            expect: Expect::Either,
        },
        Hostile {
            name: "absolute_symlink_escape_then_write_through_it",
            layers: |b| {
                one(vec![
                    Entry::symlink("esc", &abs(b, "outside")),
                    Entry::file("esc/passwd", b"pwned\n"),
                    Entry::file("esc/dir/new", b"pwned\n"),
                ])
            },
            expect: Expect::Either,
        },
        Hostile {
            name: "absolute_symlinks_resolve_inside_the_root",
            // What Debian images do (lib -> /usr/lib), plus a symlink climbing above the root.
            layers: |_| {
                one(vec![
                    Entry::dir("usr"),
                    Entry::dir("usr/lib"),
                    Entry::dir("outside"),
                    Entry::symlink("lib", "/usr/lib"),
                    Entry::file("lib/libc.so", b"confined\n"),
                    Entry::symlink("up", "../../../../../.."),
                    Entry::file("up/outside/passwd", b"confined\n"),
                    Entry::symlink("esc", "../outside"),
                    Entry::file("esc/written-through", b"confined\n"),
                ])
            },
            expect: Expect::Confined(|roots, _, _| {
                let r = &roots[0];
                assert_eq!(read(&r.join("usr/lib/libc.so")), "confined\n");
                assert_eq!(read(&r.join("outside/passwd")), "confined\n");
                assert_eq!(read(&r.join("outside/written-through")), "confined\n");
            }),
        },
        Hostile {
            name: "hardlink_traversal",
            layers: |_| one(vec![Entry::hardlink("hl", "../outside/passwd")]),
            expect: Expect::Refused("hl"),
        },
        Hostile {
            name: "hardlink_absolute",
            layers: |b| one(vec![Entry::hardlink("hl", &abs(b, "outside/passwd"))]),
            expect: Expect::Refused("hl"),
        },
        Hostile {
            name: "hardlink_through_absolute_symlink",
            layers: |b| {
                one(vec![
                    Entry::symlink("lnk", &abs(b, "outside")),
                    Entry::hardlink("hl", "lnk/passwd"),
                ])
            },
            expect: Expect::Refused("hl"),
        },
        Hostile {
            name: "hardlink_through_relative_symlink",
            layers: |_| {
                one(vec![
                    Entry::symlink("lnk", "../outside"),
                    Entry::hardlink("hl", "lnk/passwd"),
                ])
            },
            expect: Expect::Refused("hl"),
        },
        Hostile {
            name: "hardlink_to_a_directory",
            layers: |_| one(vec![Entry::dir("d"), Entry::hardlink("hl", "d")]),
            expect: Expect::Refused("hl"),
        },
        Hostile {
            name: "whiteout_of_dotdot",
            layers: |_| one(vec![Entry::dir("a"), Entry::file("a/.wh...", b"")]),
            expect: Expect::Refused("a/.wh..."),
        },
        Hostile {
            name: "whiteout_of_dot",
            layers: |_| one(vec![Entry::file(".wh..", b"")]),
            expect: Expect::Refused(".wh.."),
        },
        Hostile {
            name: "whiteout_alone",
            layers: |_| one(vec![Entry::file(".wh.", b"")]),
            expect: Expect::Refused(".wh."),
        },
        Hostile {
            name: "whiteout_with_traversal",
            layers: |_| one(vec![Entry::file("../.wh.outside", b"")]),
            expect: Expect::Refused("../.wh.outside"),
        },
        Hostile {
            name: "symlink_named_dot",
            layers: |b| one(vec![Entry::symlink(".", &abs(b, "outside"))]),
            expect: Expect::Refused("."),
        },
        Hostile {
            name: "symlink_named_dot_in_a_directory",
            layers: |b| {
                one(vec![
                    Entry::dir("a"),
                    Entry::symlink("a/.", &abs(b, "outside")),
                    Entry::file("a/passwd", b"pwned\n"),
                ])
            },
            expect: Expect::Refused("a/."),
        },
        Hostile {
            name: "root_turned_into_a_symlink",
            layers: |b| one(vec![Entry::raw("./", T::Symlink).link(abs(b, "outside"))]),
            expect: Expect::Refused("./"),
        },
        Hostile {
            name: "root_turned_into_a_symlink_absolute",
            layers: |b| one(vec![Entry::raw("/", T::Symlink).link(abs(b, "outside"))]),
            expect: Expect::Refused("/"),
        },
        Hostile {
            name: "directory_over_a_symlink",
            layers: |b| {
                one(vec![
                    Entry::symlink("d", &abs(b, "outside")),
                    Entry::dir("d").mode(0o777).owner(4242, 4242),
                    Entry::file("d/passwd", b"confined\n").mode(0o4777),
                ])
            },
            expect: Expect::Confined(|roots, _, owners| {
                let d = roots[0].join("d");
                let m = std::fs::symlink_metadata(&d).expect("d");
                assert!(m.is_dir(), "d became a real directory");
                assert_eq!((m.mode() & 0o7777, m.uid()), (0o777, uid_for(owners, 4242)));
                assert_eq!(read(&d.join("passwd")), "confined\n");
            }),
        },
        Hostile {
            name: "file_over_a_symlink",
            layers: |_| {
                one(vec![
                    Entry::symlink("f", "../outside/passwd"),
                    Entry::file("f", b"confined\n")
                        .mode(0o666)
                        .owner(4242, 4242)
                        .xattr("user.evil", b"1"),
                ])
            },
            expect: Expect::Confined(|roots, _, _| {
                let f = roots[0].join("f");
                assert!(std::fs::symlink_metadata(&f).expect("f").is_file());
                assert_eq!(read(&f), "confined\n");
            }),
        },
        Hostile {
            name: "metadata_of_a_symlink_pointing_outside",
            layers: |b| {
                one(vec![Entry::symlink("s", &abs(b, "outside/passwd"))
                    .owner(4242, 4242)
                    .mtime(5)
                    .xattr("trusted.evil", b"1")])
            },
            expect: Expect::Confined(|roots, _, owners| {
                let m = std::fs::symlink_metadata(roots[0].join("s")).expect("s");
                assert!(m.file_type().is_symlink());
                assert_eq!((m.uid(), m.mtime()), (uid_for(owners, 4242), 5));
            }),
        },
        Hostile {
            name: "whiteouts_through_a_symlink",
            layers: |b| {
                vec![
                    images::tar(&[Entry::symlink("lnk", &abs(b, "outside"))]),
                    images::tar(&[
                        Entry::file("lnk/.wh.passwd", b""),
                        Entry::file("lnk/.wh.dir", b""),
                        Entry::file("lnk/.wh..wh..opq", b""),
                    ]),
                ]
            },
            expect: Expect::Either,
        },
        Hostile {
            name: "opaque_directory_through_a_relative_symlink",
            layers: |_| {
                vec![
                    images::tar(&[
                        Entry::symlink("lnk", "../../outside"),
                        Entry::dir("outside"),
                        Entry::file("outside/inner", b"mine\n"),
                    ]),
                    images::tar(&[Entry::file("lnk/.wh..wh..opq", b"")]),
                ]
            },
            expect: Expect::Confined(|roots, mode, _| {
                if mode == Mode::Flatten {
                    // The opaque whiteout went through the symlink: inside the root.
                    assert!(!roots[0].join("outside/inner").exists());
                }
            }),
        },
        Hostile {
            name: "whiteout_of_a_symlink_to_outside",
            layers: |b| {
                vec![
                    images::tar(&[Entry::symlink("lnk", &abs(b, "outside"))]),
                    images::tar(&[Entry::file(".wh.lnk", b"")]),
                ]
            },
            expect: Expect::Confined(|roots, mode, _| {
                if mode == Mode::Flatten {
                    assert!(std::fs::symlink_metadata(roots[0].join("lnk")).is_err());
                }
            }),
        },
        Hostile {
            name: "device_nodes",
            layers: |_| {
                one(vec![
                    Entry::dir("dev"),
                    Entry::char_dev("dev/mem", 1, 1),
                    Entry::block_dev("dev/sda", 8, 0).mode(0o666),
                ])
            },
            expect: Expect::Confined(|roots, _, owners| {
                let sda = roots[0].join("dev/sda");
                if owners == Owners::Mine {
                    // mknod needs CAP_MKNOD: the devices are skipped.
                    assert!(std::fs::symlink_metadata(&sda).is_err());
                    assert!(std::fs::symlink_metadata(roots[0].join("dev/mem")).is_err());
                    return;
                }
                let m = std::fs::symlink_metadata(&sda).expect("sda");
                assert!(m.file_type().is_block_device());
                assert_eq!(m.rdev(), libc::makedev(8, 0));
            }),
        },
        Hostile {
            name: "name_too_long",
            layers: |_| one(vec![Entry::file(&"n".repeat(300), b"x")]),
            expect: Expect::Refused("nnnnnnnnnn"),
        },
        Hostile {
            name: "path_too_long",
            layers: |_| {
                let p = format!("{}f", "d123456789/".repeat(380));
                one(vec![Entry::file(&p, b"x")])
            },
            expect: Expect::Refused("d123456789/d123456789/"),
        },
        Hostile {
            name: "duplicate_entries",
            layers: |_| {
                one(vec![
                    Entry::file("f", b"one\n"),
                    Entry::file("f", b"two\n"),
                    Entry::dir("d").mode(0o700),
                    Entry::dir("d").mode(0o755),
                    Entry::symlink("s", "../outside/passwd"),
                    Entry::file("s", b"a file now\n"),
                    Entry::file("d2", b"a file first\n"),
                    Entry::dir("d2"),
                ])
            },
            expect: Expect::Confined(|roots, _, _| {
                let r = &roots[0];
                assert_eq!(read(&r.join("f")), "two\n");
                assert_eq!(
                    std::fs::metadata(r.join("d")).expect("d").mode() & 0o7777,
                    0o755
                );
                assert_eq!(read(&r.join("s")), "a file now\n");
                assert!(r.join("d2").is_dir());
            }),
        },
        Hostile {
            name: "symlink_loop",
            layers: |_| {
                one(vec![
                    Entry::symlink("a", "b"),
                    Entry::symlink("b", "a"),
                    Entry::file("a/x", b"x"),
                ])
            },
            expect: Expect::Refused("a/x"),
        },
        Hostile {
            name: "parent_is_a_file",
            layers: |_| one(vec![Entry::file("f", b"f"), Entry::file("f/x", b"x")]),
            expect: Expect::Refused("f/x"),
        },
        Hostile {
            name: "overlayfs_xattrs_smuggled_in",
            layers: |_| {
                one(vec![Entry::dir("d")
                    .xattr("trusted.overlay.opaque", b"y")
                    .xattr("trusted.overlay.redirect", b"/../../outside")])
            },
            expect: Expect::Confined(|roots, mode, owners| {
                let x = xattrs(&roots[0].join("d"));
                if owners == Owners::Mine {
                    // trusted.* cannot be set unprivileged: nothing of them is left.
                    assert!(x.is_empty(), "{x:?}");
                } else if mode == Mode::Stacked {
                    // Escaped: overlayfs shows them as they were and never acts on them.
                    assert!(!x.contains_key("trusted.overlay.opaque"), "{x:?}");
                    assert!(!x.contains_key("trusted.overlay.redirect"), "{x:?}");
                    assert!(x.contains_key("trusted.overlay.overlay.redirect"), "{x:?}");
                }
            }),
        },
        Hostile {
            name: "user_overlay_xattrs_smuggled_in",
            layers: |_| {
                one(vec![Entry::dir("d")
                    .xattr("user.overlay.opaque", b"y")
                    .xattr("user.overlay.redirect", b"/../../outside")])
            },
            expect: Expect::Confined(|roots, mode, owners| {
                let x = xattrs(&roots[0].join("d"));
                if owners == Owners::Mine && mode == Mode::Stacked {
                    // What an overlay with `userxattr` reads: escaped, never acted on.
                    assert!(!x.contains_key("user.overlay.opaque"), "{x:?}");
                    assert!(!x.contains_key("user.overlay.redirect"), "{x:?}");
                    assert!(x.contains_key("user.overlay.overlay.redirect"), "{x:?}");
                }
            }),
        },
    ]
}

/// The uid an entry the image gives `uid` gets: its own, or, unpacked unprivileged, ours.
fn uid_for(owners: Owners, uid: u32) -> u32 {
    match owners {
        Owners::Image => uid,
        // SAFETY: geteuid cannot fail.
        Owners::Mine => unsafe { libc::geteuid() },
    }
}

/// The sentinel tree next to the roots: what hostile layers aim at.
fn sentinel(base: &Path) {
    let out = base.join("outside");
    std::fs::create_dir_all(out.join("dir")).expect("mkdir");
    std::fs::write(out.join("passwd"), b"root:x:0:0:sentinel:/root:/bin/sh\n").expect("write");
    std::fs::write(out.join("dir/a"), b"a\n").expect("write");
    std::os::unix::fs::symlink("passwd", out.join("link")).expect("symlink");
    std::fs::create_dir_all(base.join("etc")).expect("mkdir");
    std::fs::write(base.join("etc/passwd"), b"root:x:0:0:sentinel\n").expect("write");
}

fn run_hostile(case: &Hostile, mode: Mode, owners: Owners) {
    let tmp = tempfile::Builder::new()
        .prefix("stepctr-hostile-")
        .tempdir()
        .expect("temp dir");
    let base = tmp.path().to_path_buf();
    sentinel(&base);
    let tars = (case.layers)(&base);
    let n_roots = match mode {
        Mode::Flatten => 1,
        Mode::Stacked => tars.len(),
    };
    let roots: Vec<PathBuf> = (0..n_roots)
        .map(|i| base.join(format!("root{i}")))
        .collect();
    for r in &roots {
        std::fs::create_dir(r).expect("mkdir root");
    }
    let strict = Walk {
        nlink: true,
        strict: true,
    };
    let before = tree(&base, strict, &roots);

    let result: anyhow::Result<()> = (|| {
        match mode {
            Mode::Flatten => {
                let mut u = Unpacker::open(&Linux, &roots[0], mode, owners)?;
                for t in &tars {
                    u.apply(Cursor::new(t))?;
                }
                u.close()?;
            }
            Mode::Stacked => {
                for (t, r) in tars.iter().zip(&roots) {
                    let mut u = Unpacker::open(&Linux, r, mode, owners)?;
                    u.apply(Cursor::new(t))?;
                    u.close()?;
                }
            }
        }
        Ok(())
    })();

    let mut after = tree(&base, strict, &roots);
    // The base directory itself changes when the roots are made; it is not "outside".
    after.remove("");
    let mut before = before;
    before.remove("");
    let d = differences("before", &before, "after", &after);
    assert!(
        d.is_empty(),
        "{}: something outside the root changed:\n{d}",
        case.name
    );

    match (&case.expect, result) {
        (Expect::Refused(entry), Err(e)) => {
            let msg = format!("{e:#}");
            let want = entry.replace("{base}", &base.display().to_string());
            assert!(
                msg.contains(&format!("layer entry \"{want}")),
                "{}: the error does not name the entry {want:?}: {msg}",
                case.name
            );
            assert!(!msg.contains('\n'), "one line: {msg}");
        }
        (Expect::Refused(entry), Ok(())) => {
            panic!("{}: the entry {entry:?} was accepted", case.name)
        }
        (Expect::Confined(check), Ok(())) => check(&roots, mode, owners),
        (Expect::Confined(_), Err(e)) => panic!("{}: refused: {e:#}", case.name),
        (Expect::Either, Err(e)) => {
            let msg = format!("{e:#}");
            assert!(msg.contains("layer entry \""), "{}: {msg}", case.name);
        }
        (Expect::Either, Ok(())) => {}
    }
}
