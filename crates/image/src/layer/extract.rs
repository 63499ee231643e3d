use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, makedev, mknod, utimensat};
use nix::sys::time::TimeSpec;
use tar::EntryType;

use crate::layer::meta::{Meta, set_owner_and_mode, times, xattrs};
use crate::layer::path::{Found, display, lookup, normalize, remove_any};
use crate::layer::whiteout::{WHITEOUT_PREFIX, set_opaque};
use crate::layer::{ApplyStats, LayerError, Whiteouts};

const COPY_BUFFER: usize = 128 * 1024;

/// Where a device node or fifo is made before it is moved to its path. No
/// layer entry can have this name: every `.wh.` name is a whiteout, and
/// `.wh..wh.` ones are never created.
const MKNOD_TEMP: &str = ".wh..wh..bosun-mknod";

/// Applies the entries of one layer to a directory, in order.
///
/// Safety rests on three rules, checked for every entry: names are made
/// relative and may not contain `..`; every parent directory is looked at with
/// `lstat` and a symlink there is refused, so nothing is ever written through a
/// symlink (the final component, if it is a symlink, is replaced, not
/// followed); hard-link targets obey the same rules. This assumes nothing else
/// changes the tree while the layer is applied, which holds for a snapshot
/// being prepared.
#[derive(Debug)]
pub(crate) struct Applier<'a> {
    root: &'a Path,
    pub(crate) whiteouts: Whiteouts,
    /// Paths (relative) this layer created or wrote, including parents it had
    /// to make. An opaque whiteout keeps these and removes everything else.
    pub(crate) written: HashSet<PathBuf>,
    /// Overlay whiteouts (0/0 character devices) this layer made. A
    /// directory this layer later puts at such a path replaces the lower one,
    /// so it is made opaque.
    pub(crate) whited: HashSet<PathBuf>,
    /// Directory times are set last: creating entries inside a directory
    /// changes its mtime.
    dir_times: Vec<(PathBuf, SystemTime)>,
    pub(crate) stats: ApplyStats,
    buf: Vec<u8>,
}

impl<'a> Applier<'a> {
    pub(crate) fn new(root: &'a Path, whiteouts: Whiteouts) -> Self {
        Self {
            root,
            whiteouts,
            written: HashSet::new(),
            whited: HashSet::new(),
            dir_times: Vec::new(),
            stats: ApplyStats::default(),
            buf: vec![0u8; COPY_BUFFER],
        }
    }

    pub(crate) fn entry<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
    ) -> Result<(), LayerError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            // Archive-wide comments; `tar` folds per-entry extensions and GNU
            // long names into the entry that follows them.
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let rel = normalize(&raw).ok_or_else(|| LayerError::ParentDir {
            entry: name.clone(),
        })?;
        self.stats.entries += 1;
        let Some(base) = rel.file_name() else {
            // `./` itself: the root's metadata belongs to the snapshot, not the layer.
            return match kind {
                EntryType::Directory => Ok(()),
                _ => Err(LayerError::RootEntry { entry: name }),
            };
        };
        if let Some(hidden) = base.as_bytes().strip_prefix(WHITEOUT_PREFIX) {
            return self.whiteout(&name, &rel, hidden);
        }
        match kind {
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::GNUSparse
            | EntryType::Directory
            | EntryType::Symlink
            | EntryType::Link
            | EntryType::Char
            | EntryType::Block
            | EntryType::Fifo => {}
            other => {
                return Err(LayerError::UnsupportedType {
                    entry: name,
                    kind: char::from(other.as_byte()),
                });
            }
        }
        let meta = Meta::from_header(&name, entry.header())?;
        let xattrs = xattrs(&name, &mut entry)?;
        let path = self.parents(&name, &rel, true)?.join(base);
        match kind {
            EntryType::Directory => self.dir(&name, &rel, &path, &meta)?,
            EntryType::Symlink => self.symlink(&name, &path, &entry, &meta)?,
            // A hard link shares its target's inode, attributes included.
            EntryType::Link => return self.hard_link(&name, &rel, &path, &entry),
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                if !self.special(&name, &path, entry.header(), &meta)? {
                    return Ok(());
                }
            }
            _ => self.file(&name, &path, &mut entry, &meta)?,
        }
        // After chown, which drops `security.capability`.
        for (key, value) in &xattrs {
            xattr::set(&path, key, value)
                .map_err(|e| io_error(&name, "set extended attribute", &path.join(key), e))?;
            self.stats.xattrs += 1;
        }
        self.written.insert(rel);
        Ok(())
    }

    /// Walks the parent directories of `rel` from the root and returns the
    /// last one. A symlink anywhere on the way is refused. With `create` (the
    /// entry is written), missing directories are made and all of them are
    /// recorded as written by this layer; without, a missing one is an error.
    pub(crate) fn parents(
        &mut self,
        entry: &str,
        rel: &Path,
        create: bool,
    ) -> Result<PathBuf, LayerError> {
        let mut abs = self.root.to_path_buf();
        let mut so_far = PathBuf::new();
        let Some(parent) = rel.parent() else {
            return Ok(abs);
        };
        for component in parent.components() {
            abs.push(component);
            so_far.push(component);
            match lookup(&abs).map_err(|e| io_error(entry, "inspect", &abs, e))? {
                // A directory this layer's entries go through is part of the
                // layer, even when a lower layer made it.
                Found::Dir if create => {
                    if !self.written.contains(&so_far) {
                        self.written.insert(so_far.clone());
                    }
                }
                Found::Dir => {}
                Found::Symlink => {
                    return Err(LayerError::ThroughSymlink {
                        entry: entry.to_owned(),
                        symlink: display(&so_far),
                    });
                }
                // This layer whited the name out and now puts entries below it:
                // a new directory, hiding the lower one.
                Found::Other if create && self.whited.remove(&so_far) => {
                    remove_any(&abs).map_err(|e| io_error(entry, "replace", &abs, e))?;
                    DirBuilder::new()
                        .mode(0o755)
                        .create(&abs)
                        .map_err(|e| io_error(entry, "create directory", &abs, e))?;
                    set_opaque(entry, &abs)?;
                    self.written.insert(so_far.clone());
                }
                Found::Other => {
                    return Err(LayerError::NotADirectory {
                        entry: entry.to_owned(),
                        parent: display(&so_far),
                    });
                }
                Found::Missing if create => {
                    DirBuilder::new()
                        .mode(0o755)
                        .create(&abs)
                        .map_err(|e| io_error(entry, "create directory", &abs, e))?;
                    self.written.insert(so_far.clone());
                }
                Found::Missing => {
                    return Err(LayerError::MissingParent {
                        entry: entry.to_owned(),
                        parent: display(&so_far),
                    });
                }
            }
        }
        Ok(abs)
    }

    fn dir(&mut self, entry: &str, rel: &Path, path: &Path, meta: &Meta) -> Result<(), LayerError> {
        match lookup(path).map_err(|e| io_error(entry, "inspect", path, e))? {
            // A directory over a directory keeps its contents and takes the new metadata.
            Found::Dir => {}
            found => {
                if found != Found::Missing {
                    remove_any(path).map_err(|e| io_error(entry, "replace", path, e))?;
                }
                DirBuilder::new()
                    .mode(0o700)
                    .create(path)
                    .map_err(|e| io_error(entry, "create directory", path, e))?;
            }
        }
        if self.whited.remove(rel) {
            set_opaque(entry, path)?;
        }
        let dir = File::open(path).map_err(|e| io_error(entry, "open", path, e))?;
        set_owner_and_mode(entry, path, &dir, meta)?;
        self.dir_times.push((rel.to_owned(), meta.mtime));
        self.stats.dirs += 1;
        Ok(())
    }

    fn file(
        &mut self,
        entry: &str,
        path: &Path,
        content: &mut impl Read,
        meta: &Meta,
    ) -> Result<(), LayerError> {
        remove_any(path).map_err(|e| io_error(entry, "replace", path, e))?;
        // `create_new` (O_EXCL) also refuses to open through a symlink.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| io_error(entry, "create", path, e))?;
        loop {
            let n = match content.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LayerError::Read(e)),
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| io_error(entry, "write", path, e))?;
            self.stats.bytes += n as u64;
        }
        set_owner_and_mode(entry, path, &file, meta)?;
        file.set_times(times(meta.mtime))
            .map_err(|e| io_error(entry, "set times of", path, e))?;
        self.stats.files += 1;
        Ok(())
    }

    /// Creates a character or block device or a fifo. Returns false, having
    /// touched nothing at `path`, when the kernel refuses to make device
    /// nodes for this process (rootless, or no `CAP_MKNOD`).
    fn special(
        &mut self,
        entry: &str,
        path: &Path,
        header: &tar::Header,
        meta: &Meta,
    ) -> Result<bool, LayerError> {
        let kind = header.entry_type();
        let (sflag, dev) = match kind {
            EntryType::Fifo => (SFlag::S_IFIFO, 0),
            _ => {
                let number = |field: &'static str, value: io::Result<Option<u32>>| {
                    let bad = |source| LayerError::BadHeader {
                        entry: entry.to_owned(),
                        field,
                        source,
                    };
                    value
                        .map_err(bad)?
                        .ok_or_else(|| bad(io::Error::other("missing in this tar format")))
                };
                let major = number("device major", header.device_major())?;
                let minor = number("device minor", header.device_minor())?;
                let sflag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    _ => SFlag::S_IFBLK,
                };
                (sflag, makedev(major.into(), minor.into()))
            }
        };
        // Made beside the path first, so that a refusal leaves a lower
        // layer's entry there untouched.
        let temp = path.with_file_name(MKNOD_TEMP);
        remove_any(&temp).map_err(|e| io_error(entry, "replace", &temp, e))?;
        match mknod(&temp, sflag, Mode::from_bits_truncate(0o600), dev) {
            Ok(()) => {}
            Err(Errno::EPERM) => {
                self.stats.skipped += 1;
                return Ok(false);
            }
            Err(e) => return Err(io_error(entry, "create device", &temp, e.into())),
        }
        let placed = (|| {
            // Path-based, never opening the node: opening a fifo blocks, and
            // opening a device has side effects.
            lchown(&temp, Some(meta.uid), Some(meta.gid))
                .map_err(|e| io_error(entry, "chown", path, e))?;
            fs::set_permissions(&temp, fs::Permissions::from_mode(meta.mode))
                .map_err(|e| io_error(entry, "chmod", path, e))?;
            let mtime = timespec(meta.mtime);
            utimensat(
                AT_FDCWD,
                &temp,
                &mtime,
                &mtime,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(|e| io_error(entry, "set times of", path, e.into()))?;
            remove_any(path).map_err(|e| io_error(entry, "replace", path, e))?;
            fs::rename(&temp, path).map_err(|e| io_error(entry, "create", path, e))
        })();
        if placed.is_err() {
            let _ = fs::remove_file(&temp);
        }
        placed?;
        match kind {
            EntryType::Fifo => self.stats.fifos += 1,
            _ => self.stats.devices += 1,
        }
        Ok(true)
    }

    fn symlink<R: Read>(
        &mut self,
        entry: &str,
        path: &Path,
        tar_entry: &tar::Entry<'_, R>,
        meta: &Meta,
    ) -> Result<(), LayerError> {
        let target = link_target(entry, tar_entry)?;
        remove_any(path).map_err(|e| io_error(entry, "replace", path, e))?;
        // Verbatim, absolute or not: it is resolved inside the container later.
        symlink(OsStr::from_bytes(&target), path)
            .map_err(|e| io_error(entry, "create symlink", path, e))?;
        lchown(path, Some(meta.uid), Some(meta.gid))
            .map_err(|e| io_error(entry, "chown", path, e))?;
        self.stats.symlinks += 1;
        Ok(())
    }

    fn hard_link<R: Read>(
        &mut self,
        entry: &str,
        rel: &Path,
        path: &Path,
        tar_entry: &tar::Entry<'_, R>,
    ) -> Result<(), LayerError> {
        let raw = link_target(entry, tar_entry)?;
        let target = String::from_utf8_lossy(&raw).into_owned();
        let bad = |reason| LayerError::BadLinkTarget {
            entry: entry.to_owned(),
            target: target.clone(),
            reason,
        };
        let target_rel = normalize(&raw).ok_or_else(|| LayerError::LinkParentDir {
            entry: entry.to_owned(),
            target: target.clone(),
        })?;
        let Some(base) = target_rel.file_name() else {
            return Err(bad("is the root"));
        };
        let parent = match self.parents(entry, &target_rel, false) {
            Ok(parent) => parent,
            Err(LayerError::ThroughSymlink { symlink, .. }) => {
                return Err(LayerError::LinkThroughSymlink {
                    entry: entry.to_owned(),
                    target,
                    symlink,
                });
            }
            Err(LayerError::MissingParent { .. } | LayerError::NotADirectory { .. }) => {
                return Err(bad("does not exist"));
            }
            Err(e) => return Err(e),
        };
        let source = parent.join(base);
        match lookup(&source).map_err(|e| io_error(entry, "inspect", &source, e))? {
            Found::Missing => return Err(bad("does not exist")),
            Found::Dir => return Err(bad("is a directory")),
            // Linking a symlink links the symlink itself: `hard_link` uses
            // linkat(2) without AT_SYMLINK_FOLLOW.
            Found::Symlink | Found::Other => {}
        }
        if source != path {
            remove_any(path).map_err(|e| io_error(entry, "replace", path, e))?;
            fs::hard_link(&source, path).map_err(|e| io_error(entry, "link", path, e))?;
            self.stats.hardlinks += 1;
        }
        self.written.insert(rel.to_owned());
        Ok(())
    }

    /// Sets directory times, deepest last-listed first, and returns the stats.
    pub(crate) fn finish(mut self) -> Result<ApplyStats, LayerError> {
        let dir_times = std::mem::take(&mut self.dir_times);
        for (rel, mtime) in dir_times.iter().rev() {
            // A later entry may have replaced the directory, or a parent, with a
            // symlink; never follow one to set times outside the root.
            if !self.is_plain_dir(rel) {
                continue;
            }
            let path = self.root.join(rel);
            let entry = display(rel);
            File::open(&path)
                .and_then(|dir| dir.set_times(times(*mtime)))
                .map_err(|e| io_error(&entry, "set times of", &path, e))?;
        }
        Ok(self.stats)
    }

    /// Whether `rel` and all its parents are real directories.
    fn is_plain_dir(&self, rel: &Path) -> bool {
        let mut abs = self.root.to_path_buf();
        rel.components().all(|c| {
            abs.push(c);
            matches!(lookup(&abs), Ok(Found::Dir))
        })
    }
}

fn link_target<R: Read>(entry: &str, tar_entry: &tar::Entry<'_, R>) -> Result<Vec<u8>, LayerError> {
    match tar_entry.link_name_bytes() {
        Some(target) if !target.is_empty() => Ok(target.into_owned()),
        _ => Err(LayerError::EmptyLinkTarget {
            entry: entry.to_owned(),
        }),
    }
}

fn timespec(time: SystemTime) -> TimeSpec {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    TimeSpec::from_duration(since)
}

pub(crate) fn io_error(
    entry: &str,
    op: &'static str,
    path: &Path,
    source: io::Error,
) -> LayerError {
    LayerError::Io {
        entry: entry.to_owned(),
        op,
        path: path.to_owned(),
        source,
    }
}
