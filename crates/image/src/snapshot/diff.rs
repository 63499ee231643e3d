//! An overlay upper directory written back as an OCI layer tar.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use crate::snapshot::{IdMap, SnapshotError};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// overlayfs's own attributes, which describe a mount rather than a file.
/// `apply_layer` refuses both kinds in a layer, so they are never written.
const OVERLAY_XATTRS: &[&str] = &["trusted.overlay.", "user.overlay."];
const OPAQUE: &str = "trusted.overlay.opaque";
/// overlayfs features whose uppers are not plain files: a renamed directory
/// that points at its lower origin, and a file whose data is still below.
/// Mounts made here turn both off; an upper that has them came from elsewhere.
const REFUSED: &[(&str, &str)] = &[
    (
        "trusted.overlay.redirect",
        "it is a directory renamed with overlayfs redirect_dir; mount with redirect_dir=off",
    ),
    (
        "trusted.overlay.metacopy",
        "its data is still in a lower layer (overlayfs metacopy); mount with metacopy=off",
    ),
];

/// What [`diff`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiffStats {
    /// Tar entries written, markers included.
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub devices: u64,
    pub fifos: u64,
    /// `.wh.NAME` entries, from overlayfs's 0/0 character devices.
    pub whiteouts: u64,
    /// `.wh..wh..opq` entries, from directories overlayfs made opaque.
    pub opaques: u64,
    pub xattrs: u64,
    /// Sockets, which a layer cannot hold.
    pub skipped: u64,
    /// Bytes of regular-file content.
    pub bytes: u64,
}

/// Writes the overlay upper directory `upper` as an uncompressed OCI layer
/// tar to `out`: overlayfs whiteouts (0/0 character devices) become
/// `.wh.NAME` entries, opaque directories are followed by `.wh..wh..opq`,
/// and every file, directory, symlink, device and fifo keeps its owner, mode,
/// mtime and extended attributes (overlayfs's own `trusted.overlay.*`
/// excepted). A file seen twice by inode becomes a hard link. Names are
/// visited in byte order, so the same tree always gives the same bytes.
///
/// The upper must not be mounted while it is read. Refused: directories
/// renamed by overlayfs's redirect_dir, metacopy files, and names starting
/// with `.wh.`, which a layer would read as whiteouts.
pub fn diff(upper: &Path, out: impl Write) -> Result<DiffStats, SnapshotError> {
    diff_with(upper, out, None)
}

/// [`diff`] of the upper of a container that ran in a user namespace
/// ([`super::Active::mount_idmapped`]): its files are stored under host ids,
/// and the layer gets the container's, through `map` (ids outside it
/// become 65534, the kernel's overflow id, as the container saw them).
pub fn diff_unmapped(
    upper: &Path,
    out: impl Write,
    map: &IdMap,
) -> Result<DiffStats, SnapshotError> {
    diff_with(upper, out, Some(map))
}

fn diff_with(
    upper: &Path,
    out: impl Write,
    ids: Option<&IdMap>,
) -> Result<DiffStats, SnapshotError> {
    let meta = fs::symlink_metadata(upper).map_err(|e| SnapshotError::io("inspect", upper, e))?;
    if !meta.is_dir() {
        return Err(SnapshotError::io(
            "read",
            upper,
            io::ErrorKind::NotADirectory.into(),
        ));
    }
    let mut walk = Walk {
        root: upper,
        builder: tar::Builder::new(out),
        links: HashMap::new(),
        stats: DiffStats::default(),
        ids,
    };
    walk.dir(upper, Path::new(""))?;
    let mut out = walk.builder.into_inner().map_err(SnapshotError::Write)?;
    out.flush().map_err(SnapshotError::Write)?;
    Ok(walk.stats)
}

/// PAX records (`SCHILY.xattr.NAME`, value), sorted.
type Xattrs = Vec<(String, Vec<u8>)>;

struct Walk<'a, W: Write> {
    root: &'a Path,
    builder: tar::Builder<W>,
    /// The first name of every inode with more than one link.
    links: HashMap<(u64, u64), PathBuf>,
    stats: DiffStats,
    /// Host ids to container ids, for a remapped container's upper.
    ids: Option<&'a IdMap>,
}

impl<W: Write> Walk<'_, W> {
    /// Writes the children of the directory `abs` (relative name `rel`).
    fn dir(&mut self, abs: &Path, rel: &Path) -> Result<(), SnapshotError> {
        let entries = fs::read_dir(abs).map_err(|e| SnapshotError::io("list", abs, e))?;
        let mut names = Vec::new();
        for entry in entries {
            names.push(
                entry
                    .map_err(|e| SnapshotError::io("list", abs, e))?
                    .file_name(),
            );
        }
        // `OsString` orders by bytes on Unix.
        names.sort();
        for name in names {
            self.entry(&abs.join(&name), &rel.join(&name), &name)?;
        }
        Ok(())
    }

    fn entry(&mut self, abs: &Path, rel: &Path, name: &OsStr) -> Result<(), SnapshotError> {
        if name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return Err(SnapshotError::Unsupported {
                path: abs.to_owned(),
                reason: "a layer would read the name as a whiteout",
            });
        }
        let meta = fs::symlink_metadata(abs).map_err(|e| SnapshotError::io("inspect", abs, e))?;
        let kind = meta.file_type();
        if kind.is_char_device() && meta.rdev() == 0 {
            let mut marker = OsString::from(WHITEOUT_PREFIX);
            marker.push(name);
            self.marker(&rel.with_file_name(marker))?;
            self.stats.whiteouts += 1;
            return Ok(());
        }
        if kind.is_socket() {
            self.stats.skipped += 1;
            return Ok(());
        }
        let (xattrs, opaque) = self.xattrs(abs)?;
        if !kind.is_dir()
            && meta.nlink() > 1
            && let Some(first) = self.links.get(&(meta.dev(), meta.ino()))
        {
            let first = first.clone();
            let mut header = header(EntryType::Link, &meta, 0, self.ids);
            self.builder
                .append_link(&mut header, rel, &first)
                .map_err(SnapshotError::Write)?;
            self.stats.entries += 1;
            self.stats.hardlinks += 1;
            return Ok(());
        }
        self.pax(&xattrs)?;
        if kind.is_dir() {
            let mut header = header(EntryType::Directory, &meta, 0, self.ids);
            self.append(&mut header, rel, io::empty())?;
            self.stats.dirs += 1;
            if opaque {
                self.marker(&rel.join(OPAQUE_MARKER))?;
                self.stats.opaques += 1;
            }
            return self.dir(abs, rel);
        }
        if kind.is_symlink() {
            let target = fs::read_link(abs).map_err(|e| SnapshotError::io("read", abs, e))?;
            let mut header = header(EntryType::Symlink, &meta, 0, self.ids);
            self.builder
                .append_link(&mut header, rel, &target)
                .map_err(SnapshotError::Write)?;
            self.stats.entries += 1;
            self.stats.symlinks += 1;
        } else if kind.is_file() {
            let file = File::open(abs).map_err(|e| SnapshotError::io("open", abs, e))?;
            let mut header = header(EntryType::Regular, &meta, meta.len(), self.ids);
            let content = Exact {
                inner: io::Read::take(file, meta.len()),
                left: meta.len(),
            };
            self.append(&mut header, rel, content)?;
            self.stats.files += 1;
            self.stats.bytes += meta.len();
        } else if kind.is_char_device() || kind.is_block_device() {
            let entry_type = match kind.is_char_device() {
                true => EntryType::Char,
                false => EntryType::Block,
            };
            let mut header = header(entry_type, &meta, 0, self.ids);
            let (major, minor) = (
                nix::sys::stat::major(meta.rdev()),
                nix::sys::stat::minor(meta.rdev()),
            );
            let too_big = |_| SnapshotError::Unsupported {
                path: abs.to_owned(),
                reason: "its device number does not fit in a tar header",
            };
            header
                .set_device_major(u32::try_from(major).map_err(too_big)?)
                .map_err(SnapshotError::Write)?;
            header
                .set_device_minor(u32::try_from(minor).map_err(too_big)?)
                .map_err(SnapshotError::Write)?;
            self.append(&mut header, rel, io::empty())?;
            self.stats.devices += 1;
        } else if kind.is_fifo() {
            let mut header = header(EntryType::Fifo, &meta, 0, self.ids);
            self.append(&mut header, rel, io::empty())?;
            self.stats.fifos += 1;
        }
        if meta.nlink() > 1 {
            self.links.insert((meta.dev(), meta.ino()), rel.to_owned());
        }
        Ok(())
    }

    /// The extended attributes to write, sorted by name, and whether
    /// overlayfs marked the entry opaque.
    fn xattrs(&mut self, abs: &Path) -> Result<(Xattrs, bool), SnapshotError> {
        let names = xattr::list(abs).map_err(|e| SnapshotError::io("list xattrs of", abs, e))?;
        let mut out = Vec::new();
        let mut opaque = false;
        for name in names {
            let Some(key) = name.to_str() else {
                return Err(SnapshotError::Unsupported {
                    path: abs.to_owned(),
                    reason: "it has an extended attribute whose name is not UTF-8",
                });
            };
            if let Some((_, reason)) = REFUSED.iter().find(|(refused, _)| key == *refused) {
                return Err(SnapshotError::Unsupported {
                    path: abs.to_owned(),
                    reason,
                });
            }
            let value = xattr::get(abs, &name)
                .map_err(|e| SnapshotError::io("read xattr of", abs.join(&name), e))?;
            if key == OPAQUE {
                opaque = value.as_deref() == Some(b"y");
                continue;
            }
            // The rest of overlayfs's own (origin, impure, …).
            if OVERLAY_XATTRS.iter().any(|prefix| key.starts_with(prefix)) {
                continue;
            }
            if let Some(value) = value {
                out.push((format!("SCHILY.xattr.{key}"), value));
            }
        }
        out.sort();
        Ok((out, opaque))
    }

    fn pax(&mut self, xattrs: &Xattrs) -> Result<(), SnapshotError> {
        if xattrs.is_empty() {
            return Ok(());
        }
        self.builder
            .append_pax_extensions(xattrs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(SnapshotError::Write)?;
        self.stats.xattrs += xattrs.len() as u64;
        Ok(())
    }

    /// A whiteout marker: an empty regular file owned by root, with the
    /// epoch as its time, so that markers never differ between builds.
    fn marker(&mut self, rel: &Path) -> Result<(), SnapshotError> {
        let mut header = Header::new_gnu();
        header.set_entry_type(EntryType::Regular);
        header.set_mode(0o600);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(0);
        self.append(&mut header, rel, io::empty())
    }

    fn append(
        &mut self,
        header: &mut Header,
        rel: &Path,
        data: impl io::Read,
    ) -> Result<(), SnapshotError> {
        self.builder
            .append_data(header, rel, data)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => SnapshotError::Unsupported {
                    path: self.root.join(rel),
                    reason: "it shrank while it was read; is the upper still mounted?",
                },
                _ => SnapshotError::Write(e),
            })?;
        self.stats.entries += 1;
        Ok(())
    }
}

/// A GNU header (long names and links become GNU records) with the entry's
/// owner, mode and mtime.
fn header(kind: EntryType, meta: &Metadata, size: u64, ids: Option<&IdMap>) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(meta.mode() & 0o7777);
    let (uid, gid) = match ids {
        Some(map) => map.to_container(meta.uid(), meta.gid()),
        None => (meta.uid(), meta.gid()),
    };
    header.set_uid(uid.into());
    header.set_gid(gid.into());
    header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    header.set_size(size);
    header
}

/// Exactly `left` bytes, or an error: the tar header already promised the
/// size, and the `tar` crate pads whatever it gets without checking.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: io::Read> io::Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n as u64;
        Ok(n)
    }
}
