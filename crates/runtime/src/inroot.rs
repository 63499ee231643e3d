//! Paths inside the container's root, resolved by the kernel (`openat2` with
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`): symlinks and `..` are followed as if
//! the root were `/`, and magic links (`/proc/self/root`, `/proc/self/fd/N`) are
//! refused, so no path from the bundle or the image leads out of the root. The
//! result is a descriptor, and mounts go onto `/proc/self/fd/N` of it: a path
//! component swapped for a symlink after the lookup redirects nothing.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2, readlinkat};
use nix::sys::stat::{Mode, mkdirat};

use crate::error::{Context, Error, Result};

/// Symlinks followed while creating directories, as the kernel's own limit.
const MAX_LINKS: usize = 40;

/// The root every path is resolved in.
#[derive(Debug)]
pub(crate) struct Root {
    fd: OwnedFd,
    shown: PathBuf,
}

/// `/proc/self/fd/N`: the path mount(2) follows to exactly the object `fd` is.
pub(crate) fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn how(flags: OFlag) -> OpenHow {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    // openat2 refuses a mode without O_CREAT.
    if flags.contains(OFlag::O_CREAT) {
        how.mode(Mode::from_bits_truncate(0o644))
    } else {
        how
    }
}

fn part(c: Component<'_>) -> Option<OsString> {
    match c {
        Component::Normal(n) => Some(n.to_owned()),
        Component::ParentDir => Some("..".into()),
        _ => None,
    }
}

impl Root {
    /// The root at `path` (a host path, trusted).
    pub(crate) fn new(path: &Path) -> Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("open root {}", path.display()))?;
        Ok(Root {
            fd,
            shown: path.to_owned(),
        })
    }

    fn shown(&self, path: &Path) -> String {
        let rel = path.strip_prefix("/").unwrap_or(path);
        self.shown.join(rel).display().to_string()
    }

    /// Open `path` inside the root with `flags` (`O_PATH` for a place to mount on).
    pub(crate) fn open(&self, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
        let path = if path.as_os_str().is_empty() {
            Path::new("/")
        } else {
            path
        };
        openat2(self.fd.as_fd(), path, how(flags))
    }

    /// Whether `path` is reached without following any symlink (a missing
    /// path counts: nothing is followed to make it).
    pub(crate) fn without_symlinks(&self, path: &Path) -> bool {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS);
        !matches!(openat2(self.fd.as_fd(), path, how), Err(Errno::ELOOP))
    }

    /// `open` with an error naming the path.
    pub(crate) fn open_ctx(&self, path: &Path, flags: OFlag) -> Result<OwnedFd> {
        self.open(path, flags)
            .ctx(|| format!("open {} inside the root", self.shown(path)))
    }

    /// Create `path` and its missing parents as directories inside the root;
    /// returns an `O_PATH` descriptor of it. A dangling symlink on the way is
    /// created as what it points at, resolved inside the root.
    pub(crate) fn mkdir_all(&self, path: &Path) -> Result<OwnedFd> {
        let dir = OFlag::O_PATH | OFlag::O_DIRECTORY;
        let mut pending: Vec<OsString> = path.components().rev().filter_map(part).collect();
        let mut done = PathBuf::from("/");
        let mut links = 0;
        while let Some(name) = pending.pop() {
            let next = done.join(&name);
            match self.open(&next, dir) {
                Ok(_) => {
                    done = next;
                    continue;
                }
                Err(Errno::ENOENT) => {}
                Err(e) => {
                    return Err(e).ctx(|| format!("open {} inside the root", self.shown(&next)));
                }
            }
            let parent = self.open_ctx(&done, dir)?;
            match mkdirat(
                parent.as_fd(),
                name.as_os_str(),
                Mode::from_bits_truncate(0o755),
            ) {
                Ok(()) => done = next,
                Err(Errno::EEXIST) => {
                    let target = readlinkat(parent.as_fd(), name.as_os_str())
                        .ctx(|| format!("mkdir {}", self.shown(&next)))?;
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(Errno::ELOOP).ctx(|| format!("mkdir {}", self.shown(path)));
                    }
                    let target = PathBuf::from(target);
                    if target.is_absolute() {
                        done = PathBuf::from("/");
                    }
                    pending.extend(target.components().rev().filter_map(part));
                }
                Err(e) => return Err(e).ctx(|| format!("mkdir {}", self.shown(&next))),
            }
        }
        self.open_ctx(&done, dir)
    }

    /// The directory that holds `path` (created if missing) and the last name.
    pub(crate) fn parent_of(&self, path: &Path) -> Result<(OwnedFd, OsString)> {
        let name = path.file_name().ok_or_else(|| {
            Error::invalid("path", format!("{} has no file name", path.display()))
        })?;
        let parent = self.mkdir_all(path.parent().unwrap_or(Path::new("/")))?;
        Ok((parent, name.to_owned()))
    }

    /// An `O_PATH` descriptor of `path`, created as an empty file if nothing is
    /// there (a mount point for a file bind mount).
    pub(crate) fn make_file(&self, path: &Path) -> Result<OwnedFd> {
        match self.open(path, OFlag::O_PATH) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e).ctx(|| format!("open {} inside the root", self.shown(path))),
        }
        let _ = self.parent_of(path)?;
        drop(
            self.open(path, OFlag::O_CREAT | OFlag::O_WRONLY)
                .ctx(|| format!("create {}", self.shown(path)))?,
        );
        self.open_ctx(path, OFlag::O_PATH)
    }

    /// For messages: where `path` sits on the host.
    pub(crate) fn display(&self, path: &Path) -> String {
        self.shown(path)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A root and, beside it, the host directory its links point at.
    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), "host").unwrap();
        (dir, root, outside)
    }

    #[test]
    fn links_resolve_inside_the_root() {
        let (_dir, root, outside) = setup();
        symlink(&outside, root.join("abs")).unwrap();
        symlink(
            format!("{}{}", "../".repeat(16), outside.display()),
            root.join("up"),
        )
        .unwrap();
        let r = Root::new(&root).unwrap();
        // Guard absent: the kernel's ordinary lookup follows both links out.
        assert_eq!(
            std::fs::read_to_string(root.join("abs/secret")).unwrap(),
            "host"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("up/secret")).unwrap(),
            "host"
        );
        for link in ["abs/secret", "up/secret", "../../outside/secret"] {
            assert_eq!(
                r.open(Path::new(link), OFlag::O_RDONLY).unwrap_err(),
                Errno::ENOENT,
                "{link}"
            );
        }
        // Made where the link points as if the root were `/`.
        r.mkdir_all(Path::new("/abs/made")).unwrap();
        r.make_file(Path::new("/up/file")).unwrap();
        let inside = root.join(outside.strip_prefix("/").unwrap());
        assert!(inside.join("made").is_dir());
        assert!(inside.join("file").is_file());
        let names: Vec<_> = std::fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret"]);
    }

    #[test]
    fn a_dangling_link_is_created_inside() {
        let (_dir, root, outside) = setup();
        symlink(outside.join("newdir"), root.join("etc/dangling")).unwrap();
        let r = Root::new(&root).unwrap();
        r.mkdir_all(Path::new("/etc/dangling/sub")).unwrap();
        assert!(!outside.join("newdir").exists());
        assert!(
            root.join(outside.strip_prefix("/").unwrap())
                .join("newdir/sub")
                .is_dir()
        );
    }

    #[test]
    fn a_swapped_component_does_not_redirect_a_mount() {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "this test mounts a tmpfs: run it as root"
        );
        let (_dir, root, outside) = setup();
        let r = Root::new(&root).unwrap();
        let target = r.mkdir_all(Path::new("/mnt")).unwrap();
        // The race: after the lookup, the directory is swapped for a link out.
        std::fs::rename(root.join("mnt"), root.join("mnt.old")).unwrap();
        symlink(&outside, root.join("mnt")).unwrap();
        // Guard absent: a mount by path would now land on the host directory.
        assert_eq!(
            std::fs::canonicalize(root.join("mnt")).unwrap(),
            std::fs::canonicalize(&outside).unwrap()
        );
        nix::mount::mount(
            Some("tmpfs"),
            &fd_path(&target),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        let landed = std::fs::read_dir(root.join("mnt.old")).unwrap().count();
        let host_names = std::fs::read_dir(&outside).unwrap().count();
        nix::mount::umount2(&root.join("mnt.old"), nix::mount::MntFlags::MNT_DETACH).unwrap();
        // A fresh tmpfs is empty and covers the directory that was looked up.
        assert_eq!(landed, 0);
        assert_eq!(host_names, 1, "the host directory was mounted over");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(outside.to_str().unwrap()));
    }
}
