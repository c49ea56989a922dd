//! The layer's file tree, held in memory until it is written out as a tar stream.
//!
//! Paths are relative ("bin/busybox"). A `BTreeMap<PathBuf, _>` orders them component by
//! component, so every directory comes right before its own entries and the archive is the
//! same on every run.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::Error;

/// One entry of the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Dir {
        mode: u32,
    },
    /// A regular file copied from the host at `src`.
    File {
        src: PathBuf,
        mode: u32,
    },
    /// A regular file with contents made here (etc/passwd, ...).
    Data {
        bytes: Vec<u8>,
        mode: u32,
    },
    Symlink {
        target: PathBuf,
    },
}

impl Entry {
    fn kind(&self) -> &'static str {
        match self {
            Entry::Dir { .. } => "directory",
            Entry::File { .. } | Entry::Data { .. } => "regular file",
            Entry::Symlink { .. } => "symlink",
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Tree {
    entries: BTreeMap<PathBuf, Entry>,
}

impl Tree {
    #[cfg(test)]
    pub(crate) fn get(&self, rel: &Path) -> Option<&Entry> {
        self.entries.get(rel)
    }

    pub(crate) fn contains(&self, rel: &Path) -> bool {
        self.entries.contains_key(rel)
    }

    #[cfg(test)]
    pub(crate) fn paths(&self) -> impl Iterator<Item = &Path> {
        self.entries.keys().map(PathBuf::as_path)
    }

    /// Adds `entry` at `rel`, creating missing parent directories (mode 0755).
    /// Adding the same entry twice is fine; a directory keeps the mode it was first given;
    /// anything else at an occupied path is a conflict.
    pub(crate) fn insert(&mut self, rel: &Path, entry: Entry) -> Result<(), Error> {
        check_relative(rel)?;
        if let Some(parent) = rel.parent() {
            self.ensure_dirs(parent)?;
        }
        match self.entries.get(rel) {
            None => {
                self.entries.insert(rel.to_path_buf(), entry);
                Ok(())
            }
            Some(existing) if *existing == entry => Ok(()),
            Some(Entry::Dir { .. }) if matches!(entry, Entry::Dir { .. }) => Ok(()),
            Some(existing) => Err(Error::Conflict {
                path: rel.to_path_buf(),
                msg: format!(
                    "already a {}, cannot also be a {}",
                    existing.kind(),
                    entry.kind()
                ),
            }),
        }
    }

    /// Adds `entry` unless something is already at `rel`.
    pub(crate) fn insert_if_absent(&mut self, rel: &Path, entry: Entry) -> Result<(), Error> {
        if self.contains(rel) {
            return Ok(());
        }
        self.insert(rel, entry)
    }

    fn ensure_dirs(&mut self, rel: &Path) -> Result<(), Error> {
        let mut cur = PathBuf::new();
        for comp in rel.components() {
            cur.push(comp);
            match self.entries.get(&cur) {
                None => {
                    self.entries.insert(cur.clone(), Entry::Dir { mode: 0o755 });
                }
                Some(Entry::Dir { .. }) => {}
                Some(other) => {
                    return Err(Error::Conflict {
                        path: cur,
                        msg: format!("is a {} but must be a directory", other.kind()),
                    })
                }
            }
        }
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Writes the tree as an uncompressed tar stream: uid/gid 0, mtime 0, in sorted order.
    pub(crate) fn write_tar<W: Write>(&self, out: W) -> Result<W, Error> {
        let tar_err = |path: &Path| {
            let path = path.to_path_buf();
            move |err: io::Error| Error::Io {
                step: "writing layer entry",
                path,
                err,
            }
        };
        let mut builder = tar::Builder::new(out);
        for (rel, entry) in &self.entries {
            let mut header = base_header();
            match entry {
                Entry::Dir { mode } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_size(0);
                    let mut name = OsString::from(rel.as_os_str());
                    name.push("/");
                    builder
                        .append_data(&mut header, PathBuf::from(name), io::empty())
                        .map_err(tar_err(rel))?;
                }
                Entry::File { src, mode } => {
                    // Read it whole so the size in the header is the size written.
                    let bytes = std::fs::read(src).map_err(|err| Error::Io {
                        step: "reading",
                        path: src.clone(),
                        err,
                    })?;
                    append_bytes(&mut builder, &mut header, rel, &bytes, *mode)
                        .map_err(tar_err(rel))?;
                }
                Entry::Data { bytes, mode } => {
                    append_bytes(&mut builder, &mut header, rel, bytes, *mode)
                        .map_err(tar_err(rel))?;
                }
                Entry::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    builder
                        .append_link(&mut header, rel, target)
                        .map_err(tar_err(rel))?;
                }
            }
        }
        builder.into_inner().map_err(|err| Error::Io {
            step: "finishing layer tar stream",
            path: PathBuf::from("-"),
            err,
        })
    }
}

fn append_bytes<W: Write>(
    builder: &mut tar::Builder<W>,
    header: &mut tar::Header,
    rel: &Path,
    bytes: &[u8],
    mode: u32,
) -> io::Result<()> {
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(mode);
    header.set_size(bytes.len() as u64);
    builder.append_data(header, rel, bytes)
}

fn base_header() -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    // These cannot fail for short ASCII names in a GNU header.
    let _ = header.set_username("root");
    let _ = header.set_groupname("root");
    header
}

fn check_relative(rel: &Path) -> Result<(), Error> {
    let ok = !rel.as_os_str().is_empty()
        && rel
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(Error::Conflict {
            path: rel.to_path_buf(),
            msg: "layer paths must be relative and plain (no \"..\", \".\" or leading \"/\")"
                .to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_come_first_and_conflicts_are_caught() {
        let mut t = Tree::default();
        t.insert(
            Path::new("usr/bin/env"),
            Entry::Symlink {
                target: "/bin/busybox".into(),
            },
        )
        .unwrap();
        t.insert(Path::new("tmp"), Entry::Dir { mode: 0o1777 })
            .unwrap();
        t.insert(Path::new("tmp"), Entry::Dir { mode: 0o755 })
            .unwrap();
        assert_eq!(t.get(Path::new("tmp")), Some(&Entry::Dir { mode: 0o1777 }));
        let paths: Vec<_> = t.paths().map(|p| p.to_path_buf()).collect();
        assert_eq!(
            paths,
            vec![
                PathBuf::from("tmp"),
                PathBuf::from("usr"),
                PathBuf::from("usr/bin"),
                PathBuf::from("usr/bin/env")
            ]
        );
        assert!(t
            .insert(Path::new("usr/bin/env/x"), Entry::Dir { mode: 0o755 })
            .is_err());
        assert!(t
            .insert(Path::new("../x"), Entry::Dir { mode: 0o755 })
            .is_err());
        assert!(t
            .insert(Path::new("/x"), Entry::Dir { mode: 0o755 })
            .is_err());
    }
}
