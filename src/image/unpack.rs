//! Unpacking image layers: every path resolved inside the layer root, never by joining strings.
//!
//! A layer is a tar (plain, gzip or zstd). Unpacking it is a run of `*at` system calls relative
//! to directory fds, all through the [`Kernel`] seam, so `-v` shows every one of them:
//!
//! 1. The destination is opened once (`openat(..., O_DIRECTORY|O_NOFOLLOW)`): the *root fd*.
//! 2. For each entry, its parent directory is opened with
//!    `openat2(root, "a/b", O_PATH|O_DIRECTORY, RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS)`. The
//!    kernel resolves `a/b` as if the root fd were `/`: `..` stops at the root and an absolute
//!    symlink such as `lib -> /usr/lib` (Debian images have many) lands on the layer's own
//!    `usr/lib`. Parents are cached by path (and forgotten whenever something is removed).
//! 3. The last component is made relative to the parent fd and never followed: `mkdirat`,
//!    `openat(O_CREAT|O_EXCL|O_NOFOLLOW)` + `write`, `symlinkat`, `linkat` (flags 0: a symlink
//!    is linked, not followed), `mknodat`. Then `fchown`/`fchownat(AT_SYMLINK_NOFOLLOW)` (root only),
//!    `fchmod`/`fchmodat` (after the chown, which clears setuid bits), xattrs from PAX
//!    `SCHILY.xattr.*` records (`fsetxattr` on the open file, else `lsetxattr` on
//!    `/proc/self/fd/PARENT/NAME`, which follows the parent fd and never the name), and
//!    `utimensat(AT_SYMLINK_NOFOLLOW)`. Directories get their mtimes at the end of the layer,
//!    once their contents stop changing them. The umask is 0 while unpacking, so modes are
//!    exactly the image's.
//! 4. Something already in the way is replaced as tar and umoci do: a directory over a
//!    directory merges (its metadata and xattrs become the new entry's), anything else is
//!    removed first (recursively, fd-relative, never following symlinks) and made again.
//!
//! Whiteouts (`.wh.NAME`, `.wh..wh..opq`, OCI image spec):
//! - [`Mode::Stacked`] (one directory per layer, for overlayfs): `.wh.NAME` becomes a character
//!   device 0/0 named NAME, and `.wh..wh..opq` the xattr `trusted.overlay.opaque="y"` on its
//!   directory: overlayfs's own form. Image xattrs named `trusted.overlay.*` are stored escaped
//!   (`trusted.overlay.overlay.*`), so overlayfs shows them as they were and never acts on them.
//! - [`Mode::Flatten`] (all layers in one directory): `.wh.NAME` deletes NAME, and
//!   `.wh..wh..opq` deletes what the layers below left in the directory. A whiteout only hides
//!   what *lower* layers made: what the same layer made stays, as in the spec and umoci.
//!
//! Who unpacks ([`Owners`]): root ([`Owners::Image`]) gives every entry the image's owner and
//! makes device nodes. An unprivileged user ([`Owners::Mine`], rootless; chosen by
//! [`Owners::detect`] from the euid) cannot: every entry stays theirs, which is root inside a
//! container whose user namespace maps only their uid; the overlay is mounted there with
//! `userxattr`, so overlayfs's xattrs take their `user.overlay.*` names (`user.overlay.opaque`).
//! The rows marked *unprivileged* below say what changes; the load stage adds up the counts
//! ([`Counts::kept_owner`], [`Counts::skipped_devices`], [`Counts::skipped_xattrs`]) in one note.
//!
//! Entries that try to leave the root, case by case:
//!
//! | entry                                             | what happens                          |
//! |---------------------------------------------------|---------------------------------------|
//! | a `..` component (`../x`, `a/../../x`)            | refused, naming the entry             |
//! | an absolute name (`/etc/x`)                       | confined: relative to the layer root, as tar and umoci read it (umoci writes the root as `/`) |
//! | a path through a symlink (`lnk/x`, `lnk -> /etc`) | confined: RESOLVE_IN_ROOT             |
//! | a symlink whose target leaves (`-> ../../..`)     | made as is (a symlink is only text); anything written through it later is confined |
//! | a hardlink target with `..`                       | refused, naming the entry             |
//! | an absolute hardlink target (`/etc/passwd`)       | confined: the file of that name in the layer root, or refused when there is none |
//! | a hardlink target through a symlink               | confined: the target is resolved in the root, its last component never followed |
//! | a whiteout of `..` or `.` (`.wh...`, `.wh..`), or `.wh.` alone | refused, naming the entry |
//! | an entry named `.` that is not a directory (a symlink named `.`) | refused |
//! | a directory over a symlink                        | the symlink is replaced by a directory (tar's default): nothing is followed |
//! | a file over a symlink                             | the symlink is replaced: never written through |
//! | a parent that is a dangling symlink               | refused (`lnk/x` with `lnk -> /missing`): tar does the same |
//! | device nodes                                      | made inside the root (the container sees them; the host does not) |
//! | names longer than the kernel allows               | refused by the kernel (ENAMETOOLONG), naming the entry |
//! | aufs metadata (`.wh..wh..plnk`, ...)              | skipped, as docker does               |
//! | xattrs `security.selinux`, `system.nfs4_acl`      | skipped (host-specific), as umoci does |
//! | xattr `trusted.overlay.opaque` in the image       | skipped, as umoci does: opaque directories are `.wh..wh..opq` |
//! | other `trusted.overlay.*` xattrs in the image     | stacked: escaped (`trusted.overlay.overlay.*`), so overlayfs shows them and never acts on them; flatten: kept as they are (a flattened tree is one layer) |
//! | *unprivileged*: an owner (uid or gid) other than root | no `fchown`/`fchownat` at all: the entry keeps the user's uid and gid (root inside); counted |
//! | *unprivileged*: setuid/setgid bits                | kept (`fchmod` by the owner is allowed; again after the data, as a write without CAP_FSETID clears them) |
//! | *unprivileged*: device nodes (char, block)        | skipped, counted (mknod needs CAP_MKNOD); flatten: what lower layers had there is deleted. Fifos and whiteouts (char 0/0, allowed since Linux 5.8) are made |
//! | *unprivileged*: `.wh..wh..opq`                    | the xattr `user.overlay.opaque="y"` (what overlayfs reads with `userxattr`) |
//! | *unprivileged*: xattrs `trusted.*`, `security.*`  | skipped, counted (only CAP_SYS_ADMIN or the LSM may set them); `trusted.overlay.opaque` silently, as above |
//! | *unprivileged*: xattr `user.overlay.opaque` in the image | skipped, as `trusted.overlay.opaque` is for root |
//! | *unprivileged*: other `user.overlay.*` xattrs     | stacked: escaped (`user.overlay.overlay.*`); flatten: kept as they are |
//! | *unprivileged*: a directory its owner cannot write (`0555`) | `u+rwx` while entries go in (no CAP_DAC_OVERRIDE), its exact mode at the end of the layer (flatten: of the last layer) |
//!
//! The uncompressed stream is decompressed and hashed in a helper thread while the main thread
//! makes the calls (like `tar -xz`, which runs gzip beside it); the layer is refused at the end
//! if it does not hash to its diff_id. The caller unpacks into a temporary directory and only
//! renames it into place once everything succeeded.

use crate::kernel::{Errno, KResult, Kernel};
use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

/// How whiteouts are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Each layer in its own directory, whiteouts in overlayfs's form.
    Stacked,
    /// Every layer applied into one directory, whiteouts applied.
    Flatten,
}

/// Whose files an unpacked layer holds: who may own them, make devices, set `trusted.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owners {
    /// Root unpacks: the image's owners (`fchown`), device nodes, and overlayfs's own
    /// `trusted.overlay.*` xattrs, for an overlay mounted by root.
    Image,
    /// An unprivileged user unpacks (rootless): no `fchown` (the user cannot give files away:
    /// every file stays theirs, which is root inside a container that maps only their uid), no
    /// device nodes (mknod needs CAP_MKNOD; whiteouts, char 0/0, are allowed since Linux 5.8),
    /// no `trusted.*`/`security.*` xattrs, and overlayfs's xattrs in the `user.overlay.*`
    /// form that an overlay mounted with `userxattr` (inside a user namespace) reads.
    Mine,
}

impl Owners {
    /// [`Owners::Image`] for root (euid 0), [`Owners::Mine`] for anyone else.
    pub fn detect() -> Owners {
        if crate::kernel::host::is_root() {
            Owners::Image
        } else {
            Owners::Mine
        }
    }
}

/// What a layer held, for the narration.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub files: usize,
    pub dirs: usize,
    pub symlinks: usize,
    pub hardlinks: usize,
    /// Device nodes and fifos.
    pub other: usize,
    pub whiteouts: usize,
    /// [`Owners::Mine`]: entries the image gives an owner other than root (0:0), which keep
    /// the user's uid and gid instead (not counted in [`Counts::total`]).
    pub kept_owner: usize,
    /// [`Owners::Mine`]: device nodes not made (not counted in [`Counts::total`]).
    pub skipped_devices: usize,
    /// [`Owners::Mine`]: `trusted.*` and `security.*` xattrs not set.
    pub skipped_xattrs: usize,
}

impl Counts {
    pub fn total(&self) -> usize {
        self.files + self.dirs + self.symlinks + self.hardlinks + self.other + self.whiteouts
    }

    pub fn add(&mut self, o: &Counts) {
        self.files += o.files;
        self.dirs += o.dirs;
        self.symlinks += o.symlinks;
        self.hardlinks += o.hardlinks;
        self.other += o.other;
        self.whiteouts += o.whiteouts;
        self.kept_owner += o.kept_owner;
        self.skipped_devices += o.skipped_devices;
        self.skipped_xattrs += o.skipped_xattrs;
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} entries: {} files, {} directories, {} symlinks, {} hardlinks, {} devices/fifos, {} whiteouts",
            self.total(),
            self.files,
            self.dirs,
            self.symlinks,
            self.hardlinks,
            self.other,
            self.whiteouts
        )
    }
}

/// A layer blob in the store.
#[derive(Debug, Clone, Copy)]
pub struct LayerBlob<'a> {
    pub path: &'a Path,
    pub media_type: &'a str,
    /// sha256 of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: &'a str,
}

/// Unpack one layer into the existing empty directory `dest`, whiteouts in overlayfs's form.
/// `label` names the layer in the narration (`unpack layer 1 (sha256:...)`).
pub fn unpack_layer(
    k: &dyn Kernel,
    blob: &LayerBlob<'_>,
    dest: &Path,
    label: &str,
    owners: Owners,
) -> Result<Counts> {
    let mut u = Unpacker::open(k, dest, Mode::Stacked, owners)?;
    let counts = u.apply_blob(blob, label)?;
    u.close()?;
    Ok(counts)
}

/// Apply `layers` (bottom first) one after the other into the existing empty directory `dest`:
/// the image's root filesystem as one tree. `label(i)` names layer `i` (0-based).
pub fn flatten(
    k: &dyn Kernel,
    layers: &[LayerBlob<'_>],
    dest: &Path,
    label: &dyn Fn(usize) -> String,
    owners: Owners,
) -> Result<Counts> {
    let mut u = Unpacker::open(k, dest, Mode::Flatten, owners)?;
    let mut total = Counts::default();
    for (i, blob) in layers.iter().enumerate() {
        let c = u.apply_blob(blob, &label(i))?;
        total.add(&c);
    }
    u.close()?;
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// Decompression, in a helper thread

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Plain,
    Gzip,
    Zstd,
}

fn codec(media_type: &str) -> Result<Codec> {
    let m = media_type;
    if m.ends_with("+gzip") || m.ends_with(".tar.gzip") {
        Ok(Codec::Gzip)
    } else if m.ends_with("+zstd") || m.ends_with(".tar.zstd") {
        Ok(Codec::Zstd)
    } else if m.ends_with(".tar") || m.ends_with(".tar+uncompressed") {
        Ok(Codec::Plain)
    } else {
        bail!("layer media type {media_type} is not supported (tar, tar+gzip and tar+zstd are)")
    }
}

/// How much decompressed data travels at once from the helper thread.
const CHUNK: usize = 256 * 1024;

/// The uncompressed layer, read from a helper thread that decompresses and hashes it.
struct Decoded {
    rx: Option<Receiver<io::Result<Vec<u8>>>>,
    back: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    worker: Option<std::thread::JoinHandle<io::Result<String>>>,
}

impl Decoded {
    fn start(path: &Path, codec: Codec) -> Result<Decoded> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("open layer blob {}", path.display()))?;
        let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(4);
        let (back, back_rx) = sync_channel::<Vec<u8>>(8);
        let worker = std::thread::Builder::new()
            .name("layer-decoder".into())
            .spawn(move || -> io::Result<String> {
                let mut reader: Box<dyn Read> = match codec {
                    Codec::Plain => Box::new(BufReader::with_capacity(CHUNK, file)),
                    Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
                        BufReader::with_capacity(CHUNK, file),
                    )),
                    Codec::Zstd => Box::new(zstd::stream::read::Decoder::new(file)?),
                };
                let mut hasher = Sha256::new();
                loop {
                    let mut buf = back_rx.try_recv().unwrap_or_default();
                    buf.resize(CHUNK, 0);
                    let mut n = 0;
                    while n < CHUNK {
                        match reader.read(&mut buf[n..]) {
                            Ok(0) => break,
                            Ok(m) => n += m,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => {
                                let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                                return Err(e);
                            }
                        }
                    }
                    if n == 0 {
                        break;
                    }
                    buf.truncate(n);
                    hasher.update(&buf);
                    if tx.send(Ok(buf)).is_err() {
                        // The reader stopped (an error on its side): nothing more to do.
                        return Err(io::Error::other("unpacking stopped"));
                    }
                }
                Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
            })
            .context("start the layer decompression thread")?;
        Ok(Decoded {
            rx: Some(rx),
            back,
            cur: Vec::new(),
            pos: 0,
            worker: Some(worker),
        })
    }

    /// Read to the end (the tar stops at its end-of-archive blocks; the digest covers
    /// everything) and return the sha256 of the whole uncompressed stream.
    fn finish(mut self) -> Result<String> {
        io::copy(&mut self, &mut io::sink()).context("read the layer")?;
        self.rx = None;
        let worker = self
            .worker
            .take()
            .ok_or_else(|| anyhow!("layer read twice"))?;
        worker
            .join()
            .map_err(|_| anyhow!("the layer decompression thread failed"))?
            .context("decompress the layer")
    }
}

impl Read for Decoded {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            let Some(rx) = &self.rx else { return Ok(0) };
            match rx.recv() {
                Ok(Ok(chunk)) => {
                    let old = std::mem::replace(&mut self.cur, chunk);
                    let _ = self.back.try_send(old);
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for Decoded {
    fn drop(&mut self) {
        // Hang up first, so a worker blocked on a full channel stops, then wait for it: no
        // thread outlives the load (stepctr forks later, and must be single-threaded then).
        self.rx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Entry names

/// An entry's name, split into components (`.` and empty ones dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Name {
    comps: Vec<Vec<u8>>,
    /// The name ends in `.` (`.`, `./`, `a/.`): it names a directory, never anything else.
    dot_last: bool,
}

fn parse_name(raw: &[u8]) -> Result<Name> {
    if raw.is_empty() {
        bail!("an empty name");
    }
    // A leading `/` is dropped, as tar and umoci do (umoci itself writes the layer root as
    // `/`): the name is resolved inside the layer root like any other.
    let mut comps = Vec::new();
    let mut dot_last = false;
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" => {}
            b"." => dot_last = true,
            b".." => bail!("a `..` component would leave the layer root: refusing it"),
            _ => {
                dot_last = false;
                comps.push(c.to_vec());
            }
        }
    }
    Ok(Name { comps, dot_last })
}

fn key(comps: &[Vec<u8>]) -> Vec<u8> {
    comps.join(&b'/')
}

fn child_key(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        name.to_vec()
    } else {
        let mut k = Vec::with_capacity(parent.len() + 1 + name.len());
        k.extend_from_slice(parent);
        k.push(b'/');
        k.extend_from_slice(name);
        k
    }
}

fn os(b: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(b))
}

fn show(b: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(b))
}

/// `/proc/self/fd/FD/NAME`: NAME in the directory open at FD, for the calls that only take a
/// path (lsetxattr). The kernel follows the fd, then looks NAME up without following it.
fn proc_path(fd: i32, name: &[u8]) -> PathBuf {
    let mut p = format!("/proc/self/fd/{fd}/").into_bytes();
    p.extend_from_slice(name);
    PathBuf::from(OsStr::from_bytes(&p))
}

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";
const AUFS_META: &[u8] = b".wh..wh.";
/// overlayfs's opaque-directory marker, as root's overlay reads it ...
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// ... and as an overlay mounted with `userxattr` (in a user namespace) reads it.
const USER_OPAQUE_XATTR: &str = "user.overlay.opaque";

// ---------------------------------------------------------------------------------------------
// Entry metadata

type Time = (i64, i64);

#[derive(Debug, Clone)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    atime: Time,
    mtime: Time,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// A PAX time: `1700000000` or `1700000000.123456789`.
fn pax_time(v: &[u8]) -> Option<Time> {
    let s = std::str::from_utf8(v).ok()?;
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    let sec: i64 = sec.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let nsec: i64 = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    // Negative times with a fraction count down from the second.
    if sec < 0 && nsec > 0 {
        Some((sec - 1, 1_000_000_000 - nsec))
    } else {
        Some((sec, nsec))
    }
}

fn id(v: u64, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| anyhow!("{what} {v} is too large"))
}

fn read_meta<R: Read>(e: &mut tar::Entry<'_, R>) -> Result<Meta> {
    let h = e.header();
    let mode = h.mode().context("read the mode")? & 0o7777;
    let mut uid = h.uid().context("read the owner")?;
    let mut gid = h.gid().context("read the group")?;
    let mut mtime = (h.mtime().context("read the mtime")? as i64, 0);
    let mut atime = None;
    let mut xattrs = Vec::new();
    if let Some(exts) = e.pax_extensions().context("read the PAX header")? {
        for ext in exts {
            let ext = ext.context("read the PAX header")?;
            let Ok(k) = ext.key() else { continue };
            let v = ext.value_bytes();
            match k {
                "mtime" => mtime = pax_time(v).ok_or_else(|| anyhow!("bad PAX mtime"))?,
                "atime" => atime = pax_time(v),
                "uid" => uid = String::from_utf8_lossy(v).parse().context("bad PAX uid")?,
                "gid" => gid = String::from_utf8_lossy(v).parse().context("bad PAX gid")?,
                _ => {
                    if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
                        xattrs.push((name.to_string(), v.to_vec()));
                    }
                }
            }
        }
    }
    Ok(Meta {
        mode,
        uid: id(uid, "uid")?,
        gid: id(gid, "gid")?,
        atime: atime.unwrap_or(mtime),
        mtime,
        xattrs,
    })
}

fn is_dir(mode: u32) -> bool {
    mode & libc::S_IFMT == libc::S_IFDIR
}

// ---------------------------------------------------------------------------------------------
// The unpacker

/// Parents are opened as paths only, resolved inside the root.
const PARENT_FLAGS: i32 = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
const RESOLVE: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
/// A directory opened to be read (getdents64), never through a symlink.
const LIST_FLAGS: i32 = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
/// How many parent directory fds stay open.
const MAX_PARENTS: usize = 256;
/// How much file data one write carries.
const WRITE_CHUNK: usize = 1024 * 1024;

enum Placed {
    New(i32),
    Merged,
}

/// Unpacks tars into one directory, layer after layer. Open it, [`Unpacker::apply`] layers,
/// [`Unpacker::close`] it (dropping it closes too).
pub struct Unpacker<'k> {
    k: &'k dyn Kernel,
    mode: Mode,
    owners: Owners,
    root: i32,
    old_umask: Option<u32>,
    /// Directory path (as the tar names it) -> O_PATH fd.
    parents: HashMap<Vec<u8>, i32>,
    /// Parent fds to close before the next entry (a removal made them untrustworthy).
    stale: Vec<i32>,
    /// Flatten mode: what earlier entries made (path -> is a directory). Only a hint that
    /// something may be in the way, to look before leaping; never trusted for safety.
    known: BTreeMap<Vec<u8>, bool>,
    /// This layer's paths and their ancestors: what a whiteout of this layer must keep.
    upper: HashSet<Vec<u8>>,
    /// Stacked mode: paths this layer whites out.
    whited: HashSet<Vec<u8>>,
    /// This layer's directories and their times, set at the end of the layer.
    dir_times: BTreeMap<Vec<u8>, (Time, Time)>,
    /// [`Owners::Mine`]: directories the image makes unwritable for their owner (`0555`), kept
    /// `u+rwx` while entries go in (the user has no CAP_DAC_OVERRIDE), with their exact modes,
    /// set at the end of the layer (stacked) or of the last layer (flatten).
    dir_modes: BTreeMap<Vec<u8>, u32>,
    buf: Arc<Vec<u8>>,
    counts: Counts,
}

impl<'k> Unpacker<'k> {
    /// Open `dest` (an existing directory) as the root everything is unpacked into.
    pub fn open(
        k: &'k dyn Kernel,
        dest: &Path,
        mode: Mode,
        owners: Owners,
    ) -> Result<Unpacker<'k>> {
        let old = k.umask(0, "files get exactly the modes the image gives them")?;
        let root = match k.openat(
            dest,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0,
            "the layer root: every path in the layer is resolved inside it",
        ) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = k.umask(old, "");
                return Err(e.into());
            }
        };
        Ok(Unpacker {
            k,
            mode,
            owners,
            root,
            old_umask: Some(old),
            parents: HashMap::new(),
            stale: Vec::new(),
            known: BTreeMap::new(),
            upper: HashSet::new(),
            whited: HashSet::new(),
            dir_times: BTreeMap::new(),
            dir_modes: BTreeMap::new(),
            buf: Arc::new(Vec::new()),
            counts: Counts::default(),
        })
    }

    /// Decompress `blob`, apply it, and check that it hashes to its diff_id. The calls are
    /// narrated as one bulk run named `label`.
    pub fn apply_blob(&mut self, blob: &LayerBlob<'_>, label: &str) -> Result<Counts> {
        let codec = codec(blob.media_type)?;
        let mut stream = Decoded::start(blob.path, codec)?;
        self.k.bulk_begin(label);
        let res = self.apply(&mut stream);
        self.k.bulk_end();
        let counts = res?;
        let got = stream.finish()?;
        if got != blob.diff_id {
            bail!(
                "layer {} unpacks to {got}, but the image says {}: the layer is corrupt",
                blob.path.display(),
                blob.diff_id
            );
        }
        Ok(counts)
    }

    /// Apply one uncompressed layer tar.
    pub fn apply(&mut self, tar: impl Read) -> Result<Counts> {
        self.counts = Counts::default();
        self.upper.clear();
        self.whited.clear();
        self.dir_times.clear();
        let mut archive = tar::Archive::new(tar);
        let entries = archive.entries().context("read the layer's tar")?;
        for entry in entries {
            self.reap_stale();
            let mut entry = entry.context("read the layer's tar")?;
            let raw = entry.path_bytes().into_owned();
            self.entry(&mut entry, &raw)
                .map_err(|e| anyhow!("layer entry {}: {e:#}", show(&raw)))?;
        }
        self.reap_stale();
        self.set_dir_times()?;
        if self.mode == Mode::Stacked {
            self.restore_dir_modes()?;
        }
        Ok(self.counts)
    }

    /// Give directories kept writable their exact modes (flatten mode), close every fd and
    /// put the umask back.
    pub fn close(mut self) -> Result<()> {
        let res = self.restore_dir_modes();
        self.shutdown();
        res
    }

    fn shutdown(&mut self) {
        self.invalidate();
        self.reap_stale();
        if self.root >= 0 {
            let _ = self.k.close(self.root);
            self.root = -1;
        }
        if let Some(old) = self.old_umask.take() {
            let _ = self.k.umask(old, "back to the usual umask");
        }
    }

    // ---- parents ----

    fn reap_stale(&mut self) {
        for fd in self.stale.drain(..) {
            let _ = self.k.close(fd);
        }
    }

    /// Something was removed: cached parents may now lead nowhere, or somewhere else.
    fn invalidate(&mut self) {
        self.stale.extend(self.parents.drain().map(|(_, fd)| fd));
    }

    fn remember(&mut self, key: Vec<u8>, fd: i32) {
        if self.parents.len() >= MAX_PARENTS {
            self.invalidate();
        }
        self.parents.insert(key, fd);
    }

    fn resolve(&self, key: &[u8]) -> KResult<i32> {
        let mut tries = 0;
        loop {
            let r = self.k.openat2(
                self.root,
                os(key),
                PARENT_FLAGS,
                0,
                RESOLVE,
                "the entry's directory, resolved inside the layer root",
            );
            match r {
                // RESOLVE_IN_ROOT asks to retry when a rename raced with the lookup.
                Err(e) if e.errno == Errno::EAGAIN && tries < 8 => tries += 1,
                r => return r,
            }
        }
    }

    /// An fd of directory `comps` (resolved inside the root), making missing directories when
    /// `create`; `None` when it does not exist and `create` is false.
    fn dir_fd(&mut self, comps: &[Vec<u8>], create: bool) -> Result<Option<i32>> {
        if comps.is_empty() {
            return Ok(Some(self.root));
        }
        let k = key(comps);
        if let Some(&fd) = self.parents.get(&k) {
            return Ok(Some(fd));
        }
        match self.resolve(&k) {
            Ok(fd) => {
                self.remember(k, fd);
                Ok(Some(fd))
            }
            Err(e) if e.errno == Errno::ENOENT && create => self.make_dirs(comps).map(Some),
            // Looking, not making: a directory that is not there (or is not a directory).
            Err(e) if !create && matches!(e.errno, Errno::ENOENT | Errno::ENOTDIR) => Ok(None),
            Err(e) if e.errno == Errno::ENOTDIR => {
                bail!("{} is not a directory ({e})", show(&k))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `mkdir -p` inside the root, for entries whose directories the tar does not list.
    fn make_dirs(&mut self, comps: &[Vec<u8>]) -> Result<i32> {
        let mut parent = self.root;
        // Once one directory had to be made, the ones below it cannot exist yet.
        let mut making = false;
        for i in 1..=comps.len() {
            let k = key(&comps[..i]);
            if let Some(&fd) = self.parents.get(&k) {
                parent = fd;
                continue;
            }
            let found = if making {
                Err(crate::kernel::SysError {
                    call: String::new(),
                    errno: Errno::ENOENT,
                })
            } else {
                self.resolve(&k)
            };
            let fd = match found {
                Ok(fd) => fd,
                Err(e) if e.errno == Errno::ENOENT => {
                    making = true;
                    let name = os(&comps[i - 1]);
                    match self.k.mkdirat_in(
                        parent,
                        name,
                        0o755,
                        "a directory the layer uses without listing it",
                    ) {
                        Ok(()) => {}
                        Err(e) if e.errno == Errno::EEXIST => bail!(
                            "{} exists but leads to no directory (a dangling symlink?)",
                            show(&k)
                        ),
                        Err(e) => return Err(e.into()),
                    }
                    self.made(&k, true);
                    self.k.openat_in(
                        parent,
                        name,
                        PARENT_FLAGS | libc::O_NOFOLLOW,
                        0,
                        "the new directory",
                    )?
                }
                Err(e) => return Err(e.into()),
            };
            self.remember(k, fd);
            parent = fd;
        }
        Ok(parent)
    }

    // ---- bookkeeping ----

    /// `key` was made by this layer.
    fn made(&mut self, key: &[u8], dir: bool) {
        if !dir {
            self.dir_times.remove(key);
        }
        if self.mode != Mode::Flatten {
            return;
        }
        self.known.insert(key.to_vec(), dir);
        let mut k = key;
        loop {
            if !self.upper.insert(k.to_vec()) {
                break;
            }
            match k.iter().rposition(|&b| b == b'/') {
                Some(i) => k = &k[..i],
                None => break,
            }
        }
    }

    /// `key` and everything below it are gone.
    fn forget(&mut self, key: &[u8]) {
        self.invalidate();
        if !self.dir_modes.is_empty() {
            // Whatever comes there next is not the directory whose mode waits to be set.
            self.dir_modes.retain(|k, _| {
                !(k.starts_with(key) && matches!(k.get(key.len()), None | Some(b'/')))
            });
        }
        if self.mode == Mode::Flatten {
            self.known.remove(key);
            let mut lo = key.to_vec();
            lo.push(b'/');
            let mut hi = key.to_vec();
            hi.push(b'/' + 1);
            let below: Vec<Vec<u8>> = self.known.range(lo..hi).map(|(k, _)| k.clone()).collect();
            for k in below {
                self.known.remove(&k);
            }
        }
    }

    /// Make entry `name` in `pfd` with `make` (which returns an fd or 0). Whatever is in the
    /// way is removed first, unless both are directories: then they merge.
    fn place(
        &mut self,
        pfd: i32,
        key: &[u8],
        name: &Path,
        dir: bool,
        make: &mut dyn FnMut(&dyn Kernel) -> KResult<i32>,
    ) -> Result<Placed> {
        let maybe_there = self.known.contains_key(key);
        if !maybe_there {
            match make(self.k) {
                Ok(v) => return Ok(Placed::New(v)),
                Err(e) if e.errno == Errno::EEXIST => {}
                Err(e) => return Err(e.into()),
            }
        }
        match self.k.newfstatat(
            pfd,
            name,
            libc::AT_SYMLINK_NOFOLLOW,
            "something is already there: what?",
        ) {
            Ok(m) if dir && is_dir(m) => return Ok(Placed::Merged),
            Ok(m) => {
                self.forget(key);
                if is_dir(m) {
                    remove_dir(self.k, pfd, name)?;
                } else {
                    self.k
                        .unlinkat_in(pfd, name, 0, "replaced by the layer's entry")?;
                }
            }
            Err(e) if e.errno == Errno::ENOENT => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Placed::New(make(self.k)?))
    }

    /// The parent fd, last component and key of entry `name`, making missing parents.
    fn slot<'n>(&mut self, name: &'n Name) -> Result<(i32, &'n [u8], Vec<u8>)> {
        let (last, parent) = name
            .comps
            .split_last()
            .ok_or_else(|| anyhow!("an entry without a name"))?;
        let pfd = self
            .dir_fd(parent, true)?
            .ok_or_else(|| anyhow!("its directory cannot be made"))?;
        Ok((pfd, last.as_slice(), key(&name.comps)))
    }

    /// The opaque-directory marker the overlay of these layers reads.
    fn opaque_xattr(&self) -> &'static str {
        match self.owners {
            Owners::Image => OPAQUE_XATTR,
            Owners::Mine => USER_OPAQUE_XATTR,
        }
    }

    /// The name an image xattr is stored under, or `None` when it is not set (counting the
    /// ones an unprivileged user may not set).
    fn xattr_name(&mut self, name: &str) -> Option<String> {
        // Host-specific (as umoci skips them), and overlayfs's whiteout bookkeeping, which an
        // image says with `.wh..wh..opq` (umoci skips it too).
        if name == "security.selinux" || name == "system.nfs4_acl" || name == OPAQUE_XATTR {
            return None;
        }
        let ns = match self.owners {
            Owners::Image => "trusted",
            Owners::Mine => {
                if name == USER_OPAQUE_XATTR {
                    return None;
                }
                if name.starts_with("trusted.") || name.starts_with("security.") {
                    // Only CAP_SYS_ADMIN (trusted) or the LSM (security) may set them.
                    self.counts.skipped_xattrs += 1;
                    return None;
                }
                "user"
            }
        };
        match name
            .strip_prefix(ns)
            .and_then(|r| r.strip_prefix(".overlay."))
        {
            Some(rest) if self.mode == Mode::Stacked => {
                Some(format!("{ns}.overlay.overlay.{rest}"))
            }
            _ => Some(name.to_string()),
        }
    }

    /// The entry's owner: `fchown`, or, for [`Owners::Mine`], nothing (the entry stays ours)
    /// and a count of the owners that are not root inside.
    fn chown(&mut self, fd: i32, name: Option<&[u8]>, meta: &Meta, why: &str) -> Result<()> {
        if self.owners == Owners::Mine {
            if meta.uid != 0 || meta.gid != 0 {
                self.counts.kept_owner += 1;
            }
            return Ok(());
        }
        match name {
            None => self.k.fchown(fd, meta.uid, meta.gid, why)?,
            Some(n) => self.k.fchownat(
                fd,
                os(n),
                meta.uid,
                meta.gid,
                libc::AT_SYMLINK_NOFOLLOW,
                why,
            )?,
        }
        Ok(())
    }

    /// [`Owners::Mine`]: the exact modes of directories kept writable, deepest first (their
    /// parents stay searchable until then).
    fn restore_dir_modes(&mut self) -> Result<()> {
        let modes = std::mem::take(&mut self.dir_modes);
        for (key, mode) in modes.into_iter().rev() {
            if key.is_empty() {
                self.k
                    .fchmod(self.root, mode, "the layer root's exact mode, at last")?;
                continue;
            }
            let comps: Vec<Vec<u8>> = key.split(|&b| b == b'/').map(<[u8]>::to_vec).collect();
            let Some((last, parent)) = comps.split_last() else {
                continue;
            };
            let Some(pfd) = self.dir_fd(parent, false)? else {
                continue;
            };
            match self.k.fchmodat(
                pfd,
                os(last),
                mode,
                "the directory's exact mode, now that nothing more goes in",
            ) {
                Err(e) if e.errno == Errno::ENOENT => {}
                r => r?,
            }
        }
        self.reap_stale();
        Ok(())
    }

    /// The mode to give a directory now: for [`Owners::Mine`], one its owner can write and
    /// search, remembering the exact one for later.
    fn dir_mode_now(&mut self, key: &[u8], mode: u32) -> u32 {
        if self.owners == Owners::Mine && mode & 0o700 != 0o700 {
            self.dir_modes.insert(key.to_vec(), mode);
            mode | 0o700
        } else {
            self.dir_modes.remove(key);
            mode
        }
    }

    /// Set the entry's xattrs on `path` (a /proc/self/fd path); with `replace`, remove the
    /// ones it had before (a directory merged with an older one).
    fn xattrs_at(&mut self, path: &Path, meta: &Meta, replace: bool) -> Result<()> {
        let mut wanted: Vec<(String, &[u8])> = Vec::new();
        for (n, v) in &meta.xattrs {
            if let Some(n) = self.xattr_name(n) {
                wanted.push((n, v.as_slice()));
            }
        }
        if replace {
            let opaque = self.opaque_xattr();
            for old in self.k.llistxattr(path, "the xattrs it had")? {
                let keep = wanted.iter().any(|(n, _)| *n == old)
                    || old.starts_with("security.")
                    || (self.mode == Mode::Stacked && old == opaque);
                if !keep {
                    self.k.lremovexattr(path, &old, "not in the new entry")?;
                }
            }
        }
        for (n, v) in wanted {
            self.k.lsetxattr(path, &n, v, "an xattr from the layer")?;
        }
        Ok(())
    }

    // ---- entries ----

    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>, raw: &[u8]) -> Result<()> {
        use tar::EntryType as T;
        let kind = e.header().entry_type();
        if matches!(
            kind,
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink
        ) {
            return Ok(());
        }
        let name = parse_name(raw)?;
        if let Some(last) = name.comps.last() {
            if last.starts_with(WHITEOUT) {
                return self.whiteout(&name);
            }
        }
        if name.comps.is_empty() && kind != T::Directory {
            bail!(
                "a {} as the layer root: only a directory can be the root, refusing it",
                kind_name(kind)
            );
        }
        if name.dot_last && kind != T::Directory {
            bail!(
                "a {} named `.`: only a directory can be named `.`, refusing it",
                kind_name(kind)
            );
        }
        let meta = read_meta(e)?;
        if name.comps.is_empty() {
            return self.root_entry(&meta);
        }
        match kind {
            T::Regular | T::Continuous | T::GNUSparse => self.file(e, &name, &meta),
            T::Directory => self.dir(&name, &meta),
            T::Symlink => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| anyhow!("a symlink without a target"))?
                    .into_owned();
                self.symlink(&name, &target, &meta)
            }
            T::Link => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| anyhow!("a hardlink without a target"))?
                    .into_owned();
                self.hardlink(&name, &target)
            }
            T::Char | T::Block | T::Fifo => {
                let h = e.header();
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                let ty = match kind {
                    T::Char => libc::S_IFCHR,
                    T::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                self.node(&name, ty, major, minor, &meta)
            }
            other => bail!("unsupported tar entry type {:?}", other.as_byte() as char),
        }
    }

    fn root_entry(&mut self, meta: &Meta) -> Result<()> {
        let k = self.k;
        self.chown(self.root, None, meta, "the layer root's owner")?;
        let mode = self.dir_mode_now(b"", meta.mode);
        k.fchmod(self.root, mode, "the layer root's mode")?;
        self.xattrs_at(&proc_path(self.root, b"."), meta, true)?;
        self.dir_times.insert(Vec::new(), (meta.atime, meta.mtime));
        self.counts.dirs += 1;
        Ok(())
    }

    fn file<R: Read>(&mut self, e: &mut tar::Entry<'_, R>, name: &Name, meta: &Meta) -> Result<()> {
        let (pfd, base, key) = self.slot(name)?;
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let mode = meta.mode;
        let placed = self.place(pfd, &key, os(base), false, &mut |k| {
            k.openat_in(
                pfd,
                os(base),
                flags,
                mode,
                "a regular file, never through a symlink",
            )
        })?;
        let Placed::New(fd) = placed else {
            bail!("a file merged with a directory");
        };
        let res = self.fill(fd, e, meta);
        let _ = self.k.close(fd);
        res?;
        self.made(&key, false);
        self.counts.files += 1;
        Ok(())
    }

    fn fill<R: Read>(&mut self, fd: i32, e: &mut tar::Entry<'_, R>, meta: &Meta) -> Result<()> {
        let k = self.k;
        loop {
            let buf = Arc::make_mut(&mut self.buf);
            if buf.len() < WRITE_CHUNK {
                buf.resize(WRITE_CHUNK, 0);
            }
            let mut n = 0;
            while n < WRITE_CHUNK {
                match e.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(m) => n += m,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => return Err(err).context("read the file's data from the layer"),
                }
            }
            if n == 0 {
                break;
            }
            let mut at = 0;
            while at < n {
                let w = k.write_data(fd, &self.buf, at, n - at, "the file's contents")?;
                if w == 0 {
                    bail!("write wrote nothing");
                }
                at += w;
            }
            if n < WRITE_CHUNK {
                break;
            }
        }
        self.chown(fd, None, meta, "the file's owner")?;
        if meta.mode & 0o6000 != 0 {
            let why = match self.owners {
                Owners::Image => "again: changing the owner cleared setuid/setgid",
                Owners::Mine => "again: writing without CAP_FSETID cleared setuid/setgid",
            };
            k.fchmod(fd, meta.mode, why)?;
        }
        for (n, v) in &meta.xattrs {
            if let Some(n) = self.xattr_name(n) {
                k.fsetxattr(fd, &n, v, "an xattr from the layer")?;
            }
        }
        k.utimensat(fd, None, meta.atime, meta.mtime, 0, "the file's times")?;
        Ok(())
    }

    fn dir(&mut self, name: &Name, meta: &Meta) -> Result<()> {
        let (pfd, base, key) = self.slot(name)?;
        let mode = meta.mode;
        let placed = self.place(pfd, &key, os(base), true, &mut |k| {
            k.mkdirat_in(pfd, os(base), mode, "a directory").map(|_| 0)
        })?;
        let k = self.k;
        self.chown(pfd, Some(base), meta, "the directory's owner")?;
        // Always: mkdir ignores setuid/setgid and inherits setgid from its parent.
        let now = self.dir_mode_now(&key, mode);
        let why = if now == mode {
            "the directory's exact mode"
        } else {
            "writable by its owner for now: without CAP_DAC_OVERRIDE nothing could go in"
        };
        k.fchmodat(pfd, os(base), now, why)?;
        let merged = matches!(placed, Placed::Merged);
        self.xattrs_at(&proc_path(pfd, base), meta, merged)?;
        if self.mode == Mode::Stacked && !merged && self.whited.contains(&key) {
            // This layer whited the name out, then made a directory there: nothing of the
            // layers below may show through it.
            k.lsetxattr(
                &proc_path(pfd, base),
                self.opaque_xattr(),
                b"y",
                "opaque: it replaces a whited-out name",
            )?;
        }
        self.made(&key, true);
        self.dir_times.insert(key, (meta.atime, meta.mtime));
        self.counts.dirs += 1;
        Ok(())
    }

    fn symlink(&mut self, name: &Name, target: &[u8], meta: &Meta) -> Result<()> {
        let (pfd, base, key) = self.slot(name)?;
        self.place(pfd, &key, os(base), false, &mut |k| {
            k.symlinkat_in(
                os(target),
                pfd,
                os(base),
                "a symlink (its target is only text)",
            )
            .map(|_| 0)
        })?;
        let k = self.k;
        self.chown(pfd, Some(base), meta, "the symlink's owner")?;
        self.xattrs_at(&proc_path(pfd, base), meta, false)?;
        k.utimensat(
            pfd,
            Some(os(base)),
            meta.atime,
            meta.mtime,
            libc::AT_SYMLINK_NOFOLLOW,
            "the symlink's times",
        )?;
        self.made(&key, false);
        self.counts.symlinks += 1;
        Ok(())
    }

    fn hardlink(&mut self, name: &Name, target: &[u8]) -> Result<()> {
        let t = parse_name(target).with_context(|| format!("hardlink target {}", show(target)))?;
        if t.comps.is_empty() || t.dot_last {
            bail!(
                "a hardlink to {}: only files can be hardlinked",
                show(target)
            );
        }
        if t.comps == name.comps {
            // A hardlink to itself: the file is already there.
            self.counts.hardlinks += 1;
            return Ok(());
        }
        let (tlast, tparent) = t
            .comps
            .split_last()
            .ok_or_else(|| anyhow!("empty target"))?;
        let Some(tpfd) = self.dir_fd(tparent, false)? else {
            bail!("hardlink target {} does not exist", show(target));
        };
        let (pfd, base, key) = self.slot(name)?;
        let res = self.place(pfd, &key, os(base), false, &mut |k| {
            k.linkat(
                tpfd,
                os(tlast),
                pfd,
                os(base),
                0,
                "a hardlink: the target is never followed",
            )
            .map(|_| 0)
        });
        match res {
            Err(e)
                if e.downcast_ref::<crate::kernel::SysError>()
                    .is_some_and(|s| s.errno == Errno::ENOENT) =>
            {
                bail!(
                    "hardlink target {} does not exist in this layer ({e})",
                    show(target)
                )
            }
            r => r?,
        };
        self.made(&key, false);
        self.counts.hardlinks += 1;
        Ok(())
    }

    fn node(&mut self, name: &Name, ty: u32, major: u32, minor: u32, meta: &Meta) -> Result<()> {
        let device = ty == libc::S_IFBLK || (ty == libc::S_IFCHR && (major, minor) != (0, 0));
        if self.owners == Owners::Mine && device {
            // mknod of a device needs CAP_MKNOD in the host's user namespace (docker and podman
            // rootless skip them too; the container's /dev is a tmpfs anyway). Flattened, the
            // entry still replaces what the layers below had there.
            self.counts.skipped_devices += 1;
            if self.mode == Mode::Flatten {
                let (last, parent) = name
                    .comps
                    .split_last()
                    .ok_or_else(|| anyhow!("an entry without a name"))?;
                if let Some(pfd) = self.dir_fd(parent, false)? {
                    self.delete(pfd, &key(&name.comps), last)?;
                }
            }
            return Ok(());
        }
        let (pfd, base, key) = self.slot(name)?;
        let mode = ty | meta.mode;
        self.place(pfd, &key, os(base), false, &mut |k| {
            k.mknodat_in(pfd, os(base), mode, major, minor, "a device node or fifo")
                .map(|_| 0)
        })?;
        let k = self.k;
        self.chown(pfd, Some(base), meta, "its owner")?;
        if meta.mode & 0o6000 != 0 && self.owners == Owners::Image {
            k.fchmodat(
                pfd,
                os(base),
                meta.mode,
                "again: changing the owner cleared setuid/setgid",
            )?;
        }
        self.xattrs_at(&proc_path(pfd, base), meta, false)?;
        k.utimensat(
            pfd,
            Some(os(base)),
            meta.atime,
            meta.mtime,
            libc::AT_SYMLINK_NOFOLLOW,
            "its times",
        )?;
        self.made(&key, false);
        self.counts.other += 1;
        Ok(())
    }

    // ---- whiteouts ----

    fn whiteout(&mut self, name: &Name) -> Result<()> {
        let (last, dir) = name
            .comps
            .split_last()
            .ok_or_else(|| anyhow!("an empty whiteout"))?;
        if last.as_slice() == OPAQUE {
            self.counts.whiteouts += 1;
            return self.opaque(dir);
        }
        if last.starts_with(AUFS_META) {
            // aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not part of the image.
            return Ok(());
        }
        let target = &last[WHITEOUT.len()..];
        if target.is_empty() || target == b"." || target == b".." {
            bail!(
                "a whiteout of {}: it names no entry of a lower layer, refusing it",
                show(target)
            );
        }
        self.counts.whiteouts += 1;
        let tkey = child_key(&key(dir), target);
        match self.mode {
            Mode::Stacked => {
                let pfd = self
                    .dir_fd(dir, true)?
                    .ok_or_else(|| anyhow!("its directory cannot be made"))?;
                self.whited.insert(tkey.clone());
                let k = self.k;
                match k.mknodat_in(
                    pfd,
                    os(target),
                    libc::S_IFCHR,
                    0,
                    0,
                    "a whiteout: overlayfs hides this name of the layers below",
                ) {
                    Ok(()) => self.made(&tkey, false),
                    Err(e) if e.errno == Errno::EEXIST => {
                        // This layer made the name itself: a whiteout only hides the layers
                        // below. A directory of this layer becomes opaque, so nothing of the
                        // layers below shows through it either (what flatten mode keeps).
                        let m = k.newfstatat(
                            pfd,
                            os(target),
                            libc::AT_SYMLINK_NOFOLLOW,
                            "what this layer made there",
                        )?;
                        if is_dir(m) {
                            k.lsetxattr(
                                &proc_path(pfd, target),
                                self.opaque_xattr(),
                                b"y",
                                "opaque: whited out below",
                            )?;
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Mode::Flatten => {
                let Some(pfd) = self.dir_fd(dir, false)? else {
                    return Ok(());
                };
                if self.upper.contains(&tkey) {
                    // Made by this layer: keep it, but empty a directory of what the layers
                    // below put in it.
                    let k = self.k;
                    let m = k.newfstatat(
                        pfd,
                        os(target),
                        libc::AT_SYMLINK_NOFOLLOW,
                        "what this layer made there",
                    )?;
                    if is_dir(m) {
                        let dfd = k.openat_in(
                            pfd,
                            os(target),
                            LIST_FLAGS,
                            0,
                            "to empty it of the layers below",
                        )?;
                        let res = self.prune(dfd, &tkey);
                        let _ = k.close(dfd);
                        res?;
                    }
                } else {
                    self.delete(pfd, &tkey, target)?;
                }
            }
        }
        Ok(())
    }

    /// Flatten mode: delete `name` in `pfd` (a whole tree for a directory) if it is there.
    fn delete(&mut self, pfd: i32, key: &[u8], name: &[u8]) -> Result<()> {
        let k = self.k;
        let dir = match self.known.get(key) {
            Some(d) => *d,
            None => match k.newfstatat(pfd, os(name), libc::AT_SYMLINK_NOFOLLOW, "is it there?") {
                Ok(m) => is_dir(m),
                Err(e) if e.errno == Errno::ENOENT => return Ok(()),
                Err(e) => return Err(e.into()),
            },
        };
        self.forget(key);
        let res = if dir {
            remove_dir(k, pfd, os(name))
        } else {
            k.unlinkat_in(pfd, os(name), 0, "whited out")
        };
        match res {
            Err(e) if e.errno == Errno::ENOENT => Ok(()),
            // The hint was wrong about its type: look.
            Err(e) if matches!(e.errno, Errno::EISDIR | Errno::ENOTDIR) => {
                remove_any(k, pfd, os(name)).map_err(Into::into)
            }
            r => r.map_err(Into::into),
        }
    }

    fn opaque(&mut self, dir: &[Vec<u8>]) -> Result<()> {
        let k = self.k;
        match self.mode {
            Mode::Stacked => {
                let fd = self
                    .dir_fd(dir, true)?
                    .ok_or_else(|| anyhow!("its directory cannot be made"))?;
                k.lsetxattr(
                    &proc_path(fd, b"."),
                    self.opaque_xattr(),
                    b"y",
                    "an opaque directory: overlayfs shows nothing of the layers below in it",
                )?;
            }
            Mode::Flatten => {
                let Some(fd) = self.dir_fd(dir, false)? else {
                    return Ok(());
                };
                let dfd = k.openat_in(
                    fd,
                    os(b"."),
                    LIST_FLAGS & !libc::O_NOFOLLOW,
                    0,
                    "an opaque directory: empty it of the layers below",
                )?;
                let res = self.prune(dfd, &key(dir));
                let _ = k.close(dfd);
                res?;
            }
        }
        Ok(())
    }

    /// Flatten mode: delete what the layers below left in the directory open at `dfd`
    /// (`dkey`), keeping what this layer made (and pruning its directories the same way).
    fn prune(&mut self, dfd: i32, dkey: &[u8]) -> Result<()> {
        let k = self.k;
        for e in k.read_dir_fd(dfd, "what is in it")? {
            if e.name == b"." || e.name == b".." {
                continue;
            }
            let ckey = child_key(dkey, &e.name);
            if self.upper.contains(&ckey) {
                let dir = match e.kind {
                    libc::DT_DIR => true,
                    libc::DT_UNKNOWN => {
                        is_dir(k.newfstatat(dfd, os(&e.name), libc::AT_SYMLINK_NOFOLLOW, "")?)
                    }
                    _ => false,
                };
                if dir {
                    let cfd = k.openat_in(dfd, os(&e.name), LIST_FLAGS, 0, "")?;
                    let res = self.prune(cfd, &ckey);
                    let _ = k.close(cfd);
                    res?;
                }
            } else {
                self.forget(&ckey);
                match e.kind {
                    libc::DT_DIR => remove_dir(k, dfd, os(&e.name))?,
                    libc::DT_UNKNOWN => remove_any(k, dfd, os(&e.name))?,
                    _ => k.unlinkat_in(dfd, os(&e.name), 0, "from a layer below")?,
                }
            }
        }
        Ok(())
    }

    fn set_dir_times(&mut self) -> Result<()> {
        let times = std::mem::take(&mut self.dir_times);
        for (key, (atime, mtime)) in times {
            if key.is_empty() {
                self.k
                    .utimensat(self.root, None, atime, mtime, 0, "the layer root's times")?;
                continue;
            }
            let comps: Vec<Vec<u8>> = key.split(|&b| b == b'/').map(<[u8]>::to_vec).collect();
            let Some((last, parent)) = comps.split_last() else {
                continue;
            };
            let Some(pfd) = self.dir_fd(parent, false)? else {
                continue;
            };
            match self.k.utimensat(
                pfd,
                Some(os(last)),
                atime,
                mtime,
                libc::AT_SYMLINK_NOFOLLOW,
                "the directory's times, now that its contents are in place",
            ) {
                Err(e) if e.errno == Errno::ENOENT => {}
                r => r?,
            }
        }
        self.reap_stale();
        Ok(())
    }
}

impl Drop for Unpacker<'_> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn kind_name(kind: tar::EntryType) -> &'static str {
    use tar::EntryType as T;
    match kind {
        T::Regular | T::Continuous => "regular file",
        T::Directory => "directory",
        T::Symlink => "symlink",
        T::Link => "hardlink",
        T::Char => "character device",
        T::Block => "block device",
        T::Fifo => "fifo",
        _ => "entry",
    }
}

/// Remove the directory `name` in `pfd` and everything in it, never following a symlink.
fn remove_dir(k: &dyn Kernel, pfd: i32, name: &Path) -> KResult<()> {
    let fd = k.openat_in(pfd, name, LIST_FLAGS, 0, "to remove what is in it")?;
    let res = (|| {
        for e in k.read_dir_fd(fd, "what is in it")? {
            if e.name == b"." || e.name == b".." {
                continue;
            }
            let n = os(&e.name);
            match e.kind {
                libc::DT_DIR => remove_dir(k, fd, n)?,
                libc::DT_UNKNOWN => remove_any(k, fd, n)?,
                _ => k.unlinkat_in(fd, n, 0, "")?,
            }
        }
        Ok(())
    })();
    let _ = k.close(fd);
    res?;
    k.unlinkat_in(pfd, name, libc::AT_REMOVEDIR, "removed with its contents")
}

/// Remove `name` in `pfd`, whatever it is; nothing there is fine.
fn remove_any(k: &dyn Kernel, pfd: i32, name: &Path) -> KResult<()> {
    match k.newfstatat(pfd, name, libc::AT_SYMLINK_NOFOLLOW, "what is it?") {
        Ok(m) if is_dir(m) => remove_dir(k, pfd, name),
        Ok(_) => k.unlinkat_in(pfd, name, 0, ""),
        Err(e) if e.errno == Errno::ENOENT => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(raw: &str) -> Result<(Vec<String>, bool)> {
        parse_name(raw.as_bytes()).map(|n| {
            (
                n.comps
                    .iter()
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect(),
                n.dot_last,
            )
        })
    }

    #[test]
    fn names_are_split_and_checked() {
        assert_eq!(
            names("./a//b/").unwrap(),
            (vec!["a".into(), "b".into()], false)
        );
        assert_eq!(names("./").unwrap(), (vec![], true));
        assert_eq!(names("a/.").unwrap(), (vec!["a".into()], true));
        assert!(names("../x").is_err());
        assert!(names("a/../../x").is_err());
        assert!(names("a/../b").is_err());
        assert_eq!(
            names("/etc/passwd").unwrap(),
            (vec!["etc".into(), "passwd".into()], false)
        );
        assert_eq!(names("/").unwrap(), (vec![], false));
        assert!(names("").is_err());
    }

    #[test]
    fn pax_times_keep_nanoseconds() {
        assert_eq!(pax_time(b"1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(
            pax_time(b"1700000000.5"),
            Some((1_700_000_000, 500_000_000))
        );
        assert_eq!(
            pax_time(b"1700000000.123456789123"),
            Some((1_700_000_000, 123_456_789))
        );
        assert_eq!(pax_time(b"-1.5"), Some((-2, 500_000_000)));
        assert_eq!(pax_time(b"x"), None);
    }

    #[test]
    fn media_types_pick_the_decompressor() {
        assert_eq!(
            codec("application/vnd.oci.image.layer.v1.tar+gzip").unwrap(),
            Codec::Gzip
        );
        assert_eq!(
            codec("application/vnd.oci.image.layer.v1.tar+zstd").unwrap(),
            Codec::Zstd
        );
        assert_eq!(
            codec("application/vnd.oci.image.layer.v1.tar").unwrap(),
            Codec::Plain
        );
        assert_eq!(
            codec("application/vnd.docker.image.rootfs.diff.tar.gzip").unwrap(),
            Codec::Gzip
        );
        assert!(codec("application/vnd.oci.image.layer.v1.tar+bzip2").is_err());
    }

    #[test]
    fn keys_and_proc_paths() {
        assert_eq!(child_key(b"", b"a"), b"a");
        assert_eq!(child_key(b"a/b", b"c"), b"a/b/c");
        assert_eq!(proc_path(7, b"x y"), PathBuf::from("/proc/self/fd/7/x y"));
    }
}
