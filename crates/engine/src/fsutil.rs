//! Files the engine must never leave half-written.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Write `bytes` to `path` all or nothing: a temp file beside it, then a
/// rename. A crash of the process at any moment leaves the old or the new
/// content. There is no fsync: like containerd's and Docker's metadata, the
/// records survive a crash of the daemon, not a power loss, and every
/// container start would otherwise pay for several disk flushes.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per process and call: threads may write records side by side.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{seq}.tmp", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates the missing directories of the container path `rel` below
/// `root`, giving those it makes to `owner` (a remapped container's root,
/// for whom unmapped host root would read as nobody). `..` components are
/// skipped rather than followed up, and each step is resolved inside `root`:
/// a symlink in the image (`/app` → `/srv/host-dir`) names the root's own
/// `/srv/host-dir`, never the host's.
pub(crate) fn create_dirs_owned(
    root: &Path,
    rel: &str,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    let mut inside = std::path::PathBuf::from("/");
    for part in Path::new(rel).components() {
        let std::path::Component::Normal(name) = part else {
            continue;
        };
        inside.push(name);
        let path = bosun_image::build::resolve_in_root(root, &inside)?;
        // A dangling link may point where parents are missing too.
        let made = fs::create_dir(&path).or_else(|e| match (e.kind(), path.parent()) {
            (io::ErrorKind::NotFound, Some(parent)) => {
                fs::create_dir_all(parent)?;
                fs::create_dir(&path)
            }
            _ => Err(e),
        });
        match made {
            Ok(()) => {
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_dirs_are_made_inside_the_root_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let host = dir.path().join("host");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&host).unwrap();
        std::os::unix::fs::symlink(&host, root.join("app")).unwrap();
        std::os::unix::fs::symlink("../../../../../../..", root.join("up")).unwrap();
        create_dirs_owned(&root, "/app/sub", None).unwrap();
        create_dirs_owned(&root, "/up/escaped", None).unwrap();
        assert_eq!(fs::read_dir(&host).unwrap().count(), 0, "made on the host");
        assert!(!dir.path().join("escaped").exists());
        assert!(
            root.join(host.strip_prefix("/").unwrap())
                .join("sub")
                .is_dir()
        );
        assert!(root.join("escaped").is_dir());
        // Guard absent: the host's own lookup follows the image's link out.
        fs::create_dir(root.join("app/plain")).unwrap();
        assert!(host.join("plain").is_dir());
    }
}
