use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// A tar name made relative to the extraction root: a leading `/` and `./`,
/// `.` and empty components are dropped. `None` when any component is `..`:
/// even an inner one that stays inside is refused, since no layer writer emits
/// them and resolving them would need the very symlink checks we avoid.
pub(crate) fn normalize(raw: &[u8]) -> Option<PathBuf> {
    let mut rel = PathBuf::new();
    for component in Path::new(OsStr::from_bytes(raw)).components() {
        match component {
            Component::Normal(name) => rel.push(name),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(rel)
}

/// What is at a path, without following a symlink there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    Missing,
    Dir,
    Symlink,
    Other,
}

pub(crate) fn lookup(path: &Path) -> io::Result<Found> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Ok(Found::Symlink),
        Ok(m) if m.is_dir() => Ok(Found::Dir),
        Ok(_) => Ok(Found::Other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Found::Missing),
        Err(e) => Err(e),
    }
}

/// Removes whatever is at `path` (a whole tree for a directory) without
/// following symlinks; a missing path is fine.
pub(crate) fn remove_any(path: &Path) -> io::Result<()> {
    // `remove_dir_all` does not follow symlinks inside the tree it removes.
    let result = match lookup(path)? {
        Found::Missing => return Ok(()),
        Found::Dir => fs::remove_dir_all(path),
        Found::Symlink | Found::Other => fs::remove_file(path),
    };
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

pub(crate) fn display(rel: &Path) -> String {
    rel.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_names() {
        let cases: &[(&str, Option<&str>)] = &[
            ("a/b", Some("a/b")),
            ("./a/b/", Some("a/b")),
            ("/abs/file", Some("abs/file")),
            ("//a//b", Some("a/b")),
            ("a/./b", Some("a/b")),
            ("./", Some("")),
            ("/", Some("")),
            ("", Some("")),
            ("../escape", None),
            ("/abs/../../escape", None),
            ("a/../../escape", None),
            ("a/../b", None),
            ("a/..", None),
            ("..", None),
            ("./..", None),
            ("...", Some("...")),
            ("..a/b..", Some("..a/b..")),
        ];
        for &(raw, want) in cases {
            let got = normalize(raw.as_bytes());
            assert_eq!(got.as_deref(), want.map(Path::new), "{raw:?}");
        }
    }
}
