//! An entry's metadata: what its tar header and PAX records say, and applying
//! it to what was created.

use std::ffi::{OsStr, OsString};
use std::fs::{File, FileTimes, Permissions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, fchown};
use std::path::Path;
use std::time::{Duration, SystemTime};

use tar::Header;

use crate::layer::LayerError;
use crate::layer::extract::io_error;

const XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";
const OVERLAY_XATTRS: &[&[u8]] = &[b"trusted.overlay.", b"user.overlay."];

/// What the header says about an entry's metadata.
#[derive(Debug)]
pub(crate) struct Meta {
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mtime: SystemTime,
}

impl Meta {
    pub(crate) fn from_header(entry: &str, header: &Header) -> Result<Self, LayerError> {
        let bad = |field: &'static str| {
            move |source: io::Error| LayerError::BadHeader {
                entry: entry.to_owned(),
                field,
                source,
            }
        };
        let out_of_range = |value: u64| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{value} is out of range"),
            )
        };
        let mode = header.mode().map_err(bad("mode"))? & 0o7777;
        let uid = header.uid().map_err(bad("uid"))?;
        let uid = u32::try_from(uid).map_err(|_| bad("uid")(out_of_range(uid)))?;
        let gid = header.gid().map_err(bad("gid"))?;
        let gid = u32::try_from(gid).map_err(|_| bad("gid")(out_of_range(gid)))?;
        let secs = header.mtime().map_err(bad("mtime"))?;
        let mtime = SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_secs(secs))
            .ok_or_else(|| bad("mtime")(out_of_range(secs)))?;
        Ok(Self {
            mode,
            uid,
            gid,
            mtime,
        })
    }
}

/// Ownership first: chown clears the setuid and setgid bits that the mode may set.
pub(crate) fn set_owner_and_mode(
    entry: &str,
    path: &Path,
    file: &File,
    meta: &Meta,
) -> Result<(), LayerError> {
    fchown(file, Some(meta.uid), Some(meta.gid)).map_err(|e| io_error(entry, "chown", path, e))?;
    file.set_permissions(Permissions::from_mode(meta.mode))
        .map_err(|e| io_error(entry, "chmod", path, e))
}

/// Extended attributes from PAX `SCHILY.xattr.<name>` records, the form GNU
/// tar, Docker and containerd write.
///
/// Overlayfs's own attributes are refused: in a lower layer they would steer
/// the overlay (redirects, metacopy, opacity) instead of describing a file.
pub(crate) fn xattrs<R: Read>(
    name: &str,
    entry: &mut tar::Entry<'_, R>,
) -> Result<Vec<(OsString, Vec<u8>)>, LayerError> {
    let Some(extensions) = entry.pax_extensions().map_err(LayerError::Read)? else {
        return Ok(Vec::new());
    };
    let mut xattrs = Vec::new();
    for extension in extensions {
        let extension = extension.map_err(LayerError::Read)?;
        let Some(key) = extension.key_bytes().strip_prefix(XATTR_PREFIX) else {
            continue;
        };
        if OVERLAY_XATTRS.iter().any(|prefix| key.starts_with(prefix)) {
            return Err(LayerError::ForbiddenXattr {
                entry: name.to_owned(),
                xattr: String::from_utf8_lossy(key).into_owned(),
            });
        }
        xattrs.push((
            OsStr::from_bytes(key).to_owned(),
            extension.value_bytes().to_vec(),
        ));
    }
    Ok(xattrs)
}

pub(crate) fn times(mtime: SystemTime) -> FileTimes {
    FileTimes::new().set_accessed(mtime).set_modified(mtime)
}
