//! Terminals: the container's pty is created inside the container (so it belongs
//! to the container's devpts) and its master is handed to whoever listens on the
//! console socket, with SCM_RIGHTS, as runc does.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::{OFlag, open};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use nix::sys::stat::Mode;

use crate::error::{Context, Error, Result};

/// Connect to the console socket given by `--console-socket`.
pub(crate) fn connect(path: &Path) -> Result<OwnedFd> {
    let stream = UnixStream::connect(path)
        .ctx(|| format!("connect to console socket {}", path.display()))?;
    Ok(OwnedFd::from(stream))
}

/// Open a pty in this (container) process, send its master over `socket`, and make
/// the slave our controlling terminal and stdio. Returns the slave's path.
pub(crate) fn setup(socket: &OwnedFd, size: Option<(u16, u16)>) -> Result<String> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .ctx(|| "open /dev/ptmx (is devpts mounted at /dev/pts?)".into())?;
    grantpt(&master).ctx(|| "grantpt".into())?;
    unlockpt(&master).ctx(|| "unlockpt".into())?;
    let name = ptsname_r(&master).ctx(|| "ptsname".into())?;
    let slave = open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("open {name}"))?;
    if let Some((rows, cols)) = size {
        crate::sys::set_winsize(slave.as_fd(), rows, cols).ctx(|| "set console size".into())?;
    }
    send_fd(socket, master.as_fd(), name.as_bytes())?;
    drop(master);
    crate::sys::set_controlling_terminal(slave.as_fd())
        .ctx(|| "set controlling terminal".into())?;
    for fd in 0..=2 {
        crate::sys::dup_onto(slave.as_fd(), fd).ctx(|| format!("dup terminal to fd {fd}"))?;
    }
    Ok(name)
}

pub(crate) fn send_fd(
    socket: &OwnedFd,
    fd: std::os::fd::BorrowedFd<'_>,
    payload: &[u8],
) -> Result<()> {
    let fds = [fd.as_raw_fd()];
    let iov = [IoSlice::new(payload)];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .ctx(|| "send terminal over console socket".into())?;
    Ok(())
}

/// Receive one descriptor sent with SCM_RIGHTS (the runtime's own end of a console
/// socket, used by `run` when it proxies the terminal itself).
pub(crate) fn recv_fd(socket: &OwnedFd) -> Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ctx(|| "receive terminal".into())?;
    for c in msg.cmsgs().map_err(|e| Error::Sys {
        context: "read control message".into(),
        source: e,
    })? {
        if let ControlMessageOwned::ScmRights(fds) = c
            && let Some(fd) = fds.first()
        {
            return Ok(crate::sys::own_fd(*fd));
        }
    }
    Err(Error::Init("container sent no terminal".into()))
}
