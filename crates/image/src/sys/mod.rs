//! The only place in this crate where `unsafe` is allowed: the system calls of
//! idmapped mounts, which neither `nix` nor the standard library wrap. Each
//! function wraps one call (or a small fixed sequence) in a safe signature.
#![allow(
    unsafe_code,
    reason = "thin wrappers over system calls, each with a SAFETY line"
)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

// From <linux/mount.h>; spelled here so that an older `libc` still builds.
const OPEN_TREE_CLONE: libc::c_uint = 1;
const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` (MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// A user namespace with the given `uid_map`/`gid_map` contents (the
/// kernel's format: `inside outside count` lines), held by the returned fd
/// only. A throwaway child is cloned straight into a new user namespace,
/// its maps are written, its namespace opened, and the child killed and
/// reaped; no process outlives the call.
pub(crate) fn user_namespace(uid_map: &str, gid_map: &str) -> io::Result<OwnedFd> {
    // SAFETY: raw clone without CLONE_VM is a fork: the child gets a copy of
    // this (possibly multi-threaded) process and only calls pause(2) until it
    // is killed, which is async-signal-safe; it touches no lock, no heap.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        loop {
            // SAFETY: pause(2) has no preconditions.
            unsafe { libc::pause() };
        }
    }
    let pid = pid as libc::pid_t;
    let opened = (|| {
        std::fs::write(format!("/proc/{pid}/uid_map"), uid_map)?;
        std::fs::write(format!("/proc/{pid}/gid_map"), gid_map)?;
        std::fs::File::open(format!("/proc/{pid}/ns/user")).map(OwnedFd::from)
    })();
    // SAFETY: `pid` is our own child, not yet reaped, so the pid cannot have
    // been reused; kill and waitpid take plain integers.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    opened
}

/// A detached copy of the mount tree at `path` (`open_tree(OPEN_TREE_CLONE)`),
/// whose ids are mapped through the user namespace `userns`
/// (`mount_setattr(MOUNT_ATTR_IDMAP)`). Nothing is attached anywhere yet;
/// dropping the fd discards it.
pub(crate) fn idmapped_tree(path: &Path, userns: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call;
    // the flags ask for a new fd and the kernel allocates nothing else we own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: `attr` lives across the call and its size is passed with it; the
    // empty path with AT_EMPTY_PATH names the tree fd itself.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(tree)
}

/// Attaches the detached mount `tree` at the directory `target`.
pub(crate) fn attach(tree: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
    let c = cpath(target)?;
    // SAFETY: both paths are valid NUL-terminated strings for the call; the
    // empty source path with MOVE_MOUNT_F_EMPTY_PATH names `tree` itself.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
