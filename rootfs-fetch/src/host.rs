//! Reading the host: finding programs, reading ELF headers, and copying a program together with
//! its ELF interpreter and every shared library it needs (DT_NEEDED, recursively).
//!
//! Host paths are kept as they are: a symlink on the host (`/bin -> usr/bin`,
//! `/usr/bin/sh -> dash`, `libc.so.6 -> libc-2.31.so`) becomes the same symlink in the image,
//! and its target is copied too, so the image resolves paths exactly as the host does.

use std::collections::{BTreeSet, VecDeque};
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use goblin::elf::Elf;

use crate::tree::{Entry, Tree};
use crate::Error;

/// Where programs are looked up: the image's own PATH, so the host file chosen for `ls` is the one
/// the container's shell would find first at the same path.
pub(crate) const SEARCH_PATH: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// Top-level directories that usr-merged hosts make symlinks into /usr.
pub(crate) const MERGED_DIRS: &[&str] = &["bin", "sbin", "lib", "lib64"];

const MAX_SYMLINKS: u32 = 40;

fn io_err(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |err| Error::Io { step, path, err }
}

/// The first executable regular file called `name` along [`SEARCH_PATH`], as found (not resolved).
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_executable(&p).then_some(p);
    }
    SEARCH_PATH
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// What matters about an ELF file here.
pub(crate) struct ElfInfo {
    pub interpreter: Option<String>,
    pub needed: Vec<String>,
    pub search_dirs: Vec<String>,
    pub machine: u16,
    pub is_64: bool,
}

/// Parses `path` if it is an ELF file; `Ok(None)` when it is not one.
pub(crate) fn read_elf(path: &Path) -> Result<Option<ElfInfo>, Error> {
    let bytes = fs::read(path).map_err(io_err("reading", path))?;
    parse_elf(path, &bytes)
}

fn parse_elf(path: &Path, bytes: &[u8]) -> Result<Option<ElfInfo>, Error> {
    if !bytes.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    let elf = Elf::parse(bytes).map_err(|e| Error::Elf {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    let mut search_dirs: Vec<String> = elf.rpaths.iter().map(|s| s.to_string()).collect();
    search_dirs.extend(elf.runpaths.iter().map(|s| s.to_string()));
    Ok(Some(ElfInfo {
        interpreter: elf.interpreter.map(str::to_string),
        needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
        search_dirs,
        machine: elf.header.e_machine,
        is_64: elf.is_64,
    }))
}

/// Reads only the ELF header: (machine, is_64), or None if `path` is not ELF.
fn elf_kind(path: &Path) -> Option<(u16, bool)> {
    use std::io::Read;
    let mut buf = [0u8; 64];
    let mut f = fs::File::open(path).ok()?;
    let n = f.read(&mut buf).ok()?;
    let header = Elf::parse_header(&buf[..n]).ok()?;
    Some((
        header.e_machine,
        header.e_ident[goblin::elf::header::EI_CLASS] == goblin::elf::header::ELFCLASS64,
    ))
}

/// True if `path` is an ELF file without a PT_INTERP program header (statically linked;
/// static-pie counts as static).
pub(crate) fn is_static_elf(path: &Path) -> Result<bool, Error> {
    match read_elf(path)? {
        Some(info) => Ok(info.interpreter.is_none()),
        None => Err(Error::Elf {
            path: path.to_path_buf(),
            msg: "not an elf file".to_string(),
        }),
    }
}

/// Library directories searched for DT_NEEDED names, in order; only those present on the host.
pub(crate) fn library_dirs(multiarch: Option<&str>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(triple) = multiarch {
        dirs.push(format!("/lib/{triple}"));
        dirs.push(format!("/usr/lib/{triple}"));
    }
    for d in ["/lib64", "/usr/lib64", "/lib", "/usr/lib"] {
        dirs.push(d.to_string());
    }
    let mut seen = BTreeSet::new();
    dirs.into_iter()
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        // /lib and /usr/lib are the same directory on usr-merged hosts: search it once.
        .filter(|d| seen.insert(fs::canonicalize(d).unwrap_or_else(|_| d.clone())))
        .collect()
}

/// Copies the host path `path` into `tree` the way the kernel would walk it: each symlink met on
/// the way is recorded as a symlink and followed, each directory is recorded as a directory, and
/// the final regular file is recorded as a file. Returns the fully resolved host path.
pub(crate) fn add_host_path(tree: &mut Tree, path: &Path) -> Result<PathBuf, Error> {
    if !path.is_absolute() {
        return Err(Error::Conflict {
            path: path.to_path_buf(),
            msg: "host paths copied into the image must be absolute".to_string(),
        });
    }
    let mut pending: VecDeque<OsString> = VecDeque::new();
    push_components(&mut pending, path, false);
    let mut resolved = PathBuf::from("/");
    let mut links = 0;
    while let Some(comp) = pending.pop_front() {
        if comp == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&comp);
        let rel = candidate
            .strip_prefix("/")
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| candidate.clone());
        let meta = fs::symlink_metadata(&candidate).map_err(io_err("inspecting", &candidate))?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(Error::SymlinkLoop(path.to_path_buf()));
            }
            let target =
                fs::read_link(&candidate).map_err(io_err("reading symlink", &candidate))?;
            tree.insert(
                &rel,
                Entry::Symlink {
                    target: target.clone(),
                },
            )?;
            if target.is_absolute() {
                resolved = PathBuf::from("/");
            }
            push_components(&mut pending, &target, true);
        } else if ft.is_dir() {
            tree.insert(&rel, Entry::Dir { mode: 0o755 })?;
            resolved = candidate;
        } else if ft.is_file() {
            if !pending.is_empty() {
                return Err(Error::Io {
                    step: "resolving",
                    path: path.to_path_buf(),
                    err: std::io::Error::from(std::io::ErrorKind::NotADirectory),
                });
            }
            // setuid/setgid bits are dropped: nothing in this image needs them.
            let mode = meta.permissions().mode() & 0o777;
            tree.insert(
                &rel,
                Entry::File {
                    src: candidate.clone(),
                    mode,
                },
            )?;
            resolved = candidate;
        } else {
            return Err(Error::Conflict {
                path: candidate,
                msg: "only directories, regular files and symlinks can be copied".to_string(),
            });
        }
    }
    Ok(resolved)
}

/// Queues the components of `p`; with `front`, in front of what is already queued.
fn push_components(pending: &mut VecDeque<OsString>, p: &Path, front: bool) {
    let comps: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    if front {
        for c in comps.into_iter().rev() {
            pending.push_front(c);
        }
    } else {
        pending.extend(comps);
    }
}

/// Copies `programs` and everything they need to run (ELF interpreter, DT_NEEDED libraries,
/// recursively; `#!` interpreters of scripts) into `tree`.
pub(crate) fn add_closure(
    tree: &mut Tree,
    programs: &[PathBuf],
    lib_dirs: &[PathBuf],
) -> Result<(), Error> {
    let mut queue: VecDeque<PathBuf> = programs.iter().cloned().collect();
    let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
    while let Some(p) = queue.pop_front() {
        let real = add_host_path(tree, &p)?;
        if !seen.insert(real.clone()) {
            continue;
        }
        let bytes = fs::read(&real).map_err(io_err("reading", &real))?;
        if let Some(info) = parse_elf(&real, &bytes)? {
            if let Some(interp) = &info.interpreter {
                queue.push_back(PathBuf::from(interp));
            }
            for name in &info.needed {
                queue.push_back(find_library(name, &info, &real, lib_dirs)?);
            }
        } else if let Some(interp) = shebang_interpreter(&bytes) {
            queue.push_back(interp);
        }
    }
    Ok(())
}

fn shebang_interpreter(bytes: &[u8]) -> Option<PathBuf> {
    let rest = bytes.strip_prefix(b"#!")?;
    let line = rest.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let interp = line.split_whitespace().next()?;
    interp.starts_with('/').then(|| PathBuf::from(interp))
}

/// Finds the library `name` needed by `needed_by` the way ld.so would without a cache:
/// DT_RPATH/DT_RUNPATH first, then the standard directories; skips files of another ELF class
/// or machine (a 32-bit libc in /lib on a 64-bit host, say).
fn find_library(
    name: &str,
    info: &ElfInfo,
    needed_by: &Path,
    lib_dirs: &[PathBuf],
) -> Result<PathBuf, Error> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let origin = needed_by.parent().unwrap_or(Path::new("/"));
    let origin = origin.to_string_lossy();
    let mut dirs: Vec<PathBuf> = info
        .search_dirs
        .iter()
        .flat_map(|s| s.split(':'))
        .map(|d| PathBuf::from(d.replace("${ORIGIN}", &origin).replace("$ORIGIN", &origin)))
        .filter(|d| d.is_absolute())
        .collect();
    dirs.extend(lib_dirs.iter().cloned());
    for dir in &dirs {
        let candidate = dir.join(name);
        if !candidate.is_file() {
            continue;
        }
        if elf_kind(&candidate) == Some((info.machine, info.is_64)) {
            return Ok(candidate);
        }
    }
    Err(Error::LibraryNotFound {
        name: name.to_string(),
        needed_by: needed_by.to_path_buf(),
        dirs: dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebang() {
        assert_eq!(
            shebang_interpreter(b"#!/bin/sh -e\necho hi\n"),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(shebang_interpreter(b"#!sh\n"), None);
        assert_eq!(shebang_interpreter(b"\x7fELF"), None);
    }

    #[test]
    fn host_path_keeps_symlinks() {
        let mut tree = Tree::default();
        let real = add_host_path(&mut tree, Path::new("/bin/sh")).unwrap();
        assert_eq!(real, fs::canonicalize("/bin/sh").unwrap());
        let rel = real.strip_prefix("/").unwrap();
        assert!(matches!(tree.get(rel), Some(Entry::File { .. })));
        if fs::symlink_metadata("/bin")
            .unwrap()
            .file_type()
            .is_symlink()
        {
            assert!(matches!(
                tree.get(Path::new("bin")),
                Some(Entry::Symlink { .. })
            ));
        }
    }
}
