//! Never enter a container from a binary the container could overwrite.
//!
//! A process the runtime forks runs the runtime's own executable until its final
//! `execve`, and `/proc/<pid>/exe` (or a `#!/proc/self/exe` interpreter line in the
//! container's program) hands that file to whoever can reach the process. Once the
//! runtime has exited, a descriptor obtained that way can be reopened for writing,
//! and the next `bosun` started on the host runs the container's code
//! (CVE-2019-5736 against runc). So the commands that enter containers first
//! re-execute themselves from a view of the binary that cannot be written
//! through: a detached read-only bind mount of the file (no copy; what newer runc
//! gets from a private overlayfs), or, where mounts are not permitted, a sealed
//! memfd copy (what runc and crun did first).

use std::ffi::{CString, OsString};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::statvfs::{FsFlags, fstatvfs};
use nix::unistd::execveat;

use crate::error::{Context, Error, Result};

const SELF_EXE: &std::ffi::CStr = c"/proc/self/exe";

/// Whether `file` can be written through by nobody: it lives on a read-only
/// mount, or it is a memfd sealed against writes.
fn unwritable(file: impl AsFd) -> bool {
    let fd = file.as_fd();
    if fstatvfs(fd).is_ok_and(|s| s.flags().contains(FsFlags::ST_RDONLY)) {
        return true;
    }
    fcntl(fd, FcntlArg::F_GET_SEALS)
        .is_ok_and(|s| SealFlag::from_bits_truncate(s).contains(SealFlag::F_SEAL_WRITE))
}

/// Whether this process already runs from an unwritable view of its binary.
fn exe_is_protected() -> bool {
    File::open("/proc/self/exe").is_ok_and(unwritable)
}

/// Make sure this process runs from an unwritable view of its binary: returns at
/// once when it does; otherwise re-executes the binary (same arguments and
/// environment) from such a view and never returns, unless that fails.
/// Call it first thing, before any thread exists or any state changes.
pub fn reexec_protected() -> Result<()> {
    if exe_is_protected() {
        return Ok(());
    }
    let view = match crate::sys::exe::read_only_clone(SELF_EXE) {
        Ok(fd) => fd,
        // No CAP_SYS_ADMIN (or an old kernel): copy the binary instead.
        Err(_) => sealed_copy()?,
    };
    if !unwritable(&view) {
        return Err(Error::Init(
            "the read-only view of the runtime binary is writable".into(),
        ));
    }
    let cstrings = |items: Vec<OsString>| -> Vec<CString> {
        items
            .into_iter()
            .filter_map(|s| CString::new(s.as_bytes()).ok())
            .collect()
    };
    let args = cstrings(std::env::args_os().collect());
    let env = cstrings(
        std::env::vars_os()
            .map(|(k, v)| {
                let mut kv = k;
                kv.push("=");
                kv.push(v);
                kv
            })
            .collect(),
    );
    let e = execveat(
        view.as_fd(),
        c"",
        &args,
        &env,
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )
    .unwrap_err();
    Err(e).ctx(|| "re-execute the runtime from a read-only view of its binary".into())
}

/// A memfd holding a copy of this binary, sealed against any change.
fn sealed_copy() -> Result<OwnedFd> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let fd = memfd_create(
        c"bosun",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .ctx(|| "memfd_create for a copy of the runtime binary".into())?;
    let mut copy = File::from(fd);
    let mut exe = File::open("/proc/self/exe").ctx(|| "open /proc/self/exe".into())?;
    std::io::copy(&mut exe, &mut copy).ctx(|| "copy the runtime binary into a memfd".into())?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(copy.as_fd(), FcntlArg::F_ADD_SEALS(seals)).ctx(|| "seal the runtime's copy".into())?;
    Ok(OwnedFd::from(copy))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    use super::*;

    /// The fallback for runtimes without mount privileges: the memfd copy
    /// is the binary, byte for byte, and no route writes to it — not the
    /// descriptor itself, not a reopen through `/proc/self/fd` (what an
    /// attacker holding `/proc/<pid>/exe` would do).
    #[test]
    fn the_memfd_copy_is_the_binary_and_cannot_be_written() {
        let copy = sealed_copy().unwrap();
        assert!(unwritable(&copy));
        let mut ours = Vec::new();
        File::open("/proc/self/exe")
            .unwrap()
            .read_to_end(&mut ours)
            .unwrap();
        let path = format!("/proc/self/fd/{}", copy.as_raw_fd());
        let mut theirs = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut theirs).unwrap();
        assert!(ours == theirs, "the copy differs from the binary");
        let mut file = File::from(copy);
        assert!(file.write_all(b"x").is_err(), "a write through the fd");
        // The reopen itself may succeed; the seal refuses its writes.
        if let Ok(mut reopened) = std::fs::OpenOptions::new().write(true).open(&path) {
            assert!(reopened.write_all(b"x").is_err(), "a write through {path}");
        }
        assert!(file.set_len(1).is_err(), "a truncate");
        // Without the seals the same checks would pass the write: the test
        // would notice a fallback that forgot them.
        let plain =
            nix::sys::memfd::memfd_create(c"plain", nix::sys::memfd::MFdFlags::empty()).unwrap();
        assert!(!unwritable(&plain));
        assert!(File::from(plain).write_all(b"x").is_ok());
    }
}
