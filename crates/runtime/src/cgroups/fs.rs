//! Reading and writing cgroup files.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::CgroupError;

/// How often `rmdir` is retried on EBUSY; with the pause below, about a second.
const RMDIR_ATTEMPTS: u32 = 100;
const RMDIR_PAUSE: Duration = Duration::from_millis(10);

/// Writes `value` in one write(2), as the kernel parses each write on its own.
/// Never creates the file: a missing file means a missing controller or feature.
pub(super) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::OpenOptions::new()
        .write(true)
        // What runc does; cgroup files ignore it, fake trees in tests need it.
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| CgroupError::Write {
            path: path.to_path_buf(),
            value: value.to_owned(),
            source,
        })
}

/// Writes a resource setting; a missing file becomes an error that names the
/// setting, or `Gone` when the whole cgroup is missing.
pub(super) fn set(dir: &Path, file: &str, value: &str, field: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    match write(&path, value) {
        Err(CgroupError::Write { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            Err(missing(dir, &path, field))
        }
        other => other,
    }
}

pub(super) fn missing(dir: &Path, path: &Path, field: &str) -> CgroupError {
    if dir.is_dir() {
        CgroupError::unsupported(
            field,
            format!(
                "{} does not exist (the kernel lacks it or the controller is not enabled)",
                path.display()
            ),
        )
    } else {
        CgroupError::Gone(dir.to_path_buf())
    }
}

pub(super) fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// `None` when the file does not exist.
pub(super) fn read_opt(path: &Path) -> Result<Option<String>, CgroupError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Adds the pids in `dir`/cgroup.procs and in every cgroup below it.
pub(super) fn collect_procs(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    let procs = dir.join("cgroup.procs");
    let Some(text) = read_opt(&procs)? else {
        return Ok(());
    };
    for word in text.split_whitespace() {
        let pid = word.parse().map_err(|_| CgroupError::Parse {
            path: procs.clone(),
            content: word.to_owned(),
        })?;
        out.push(pid);
    }
    for child in subdirs(dir)? {
        collect_procs(&child, out)?;
    }
    Ok(())
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CgroupError::Read {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| CgroupError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// Removes a cgroup and the cgroups below it, deepest first. Control files need
/// no removing: rmdir of a cgroup takes them along. ENOENT counts as done.
pub(super) fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    for child in subdirs(dir)? {
        remove_tree(&child)?;
    }
    let mut attempt = 0;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            // Processes that were just killed leave the cgroup a moment later.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < RMDIR_ATTEMPTS => {
                attempt += 1;
                std::thread::sleep(RMDIR_PAUSE);
            }
            Err(source) => {
                return Err(CgroupError::Rmdir {
                    path: dir.to_path_buf(),
                    source,
                });
            }
        }
    }
}

/// rmdir that leaves a cgroup which still has cgroups below it (EBUSY) or, in a
/// fake tree, entries (ENOTEMPTY) in place.
pub(super) fn remove_if_unused(dir: &Path) -> Result<(), CgroupError> {
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || matches!(e.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY)) =>
        {
            Ok(())
        }
        Err(source) => Err(CgroupError::Rmdir {
            path: dir.to_path_buf(),
            source,
        }),
    }
}
