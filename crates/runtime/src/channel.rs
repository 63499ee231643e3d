//! The sync channel between the runtime and the processes it forks.
//!
//! A `SOCK_SEQPACKET` socketpair keeps message boundaries, and its close-on-exec
//! flag turns "the child exec'd" into end-of-file on the runtime's side.

use std::os::fd::OwnedFd;

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use crate::error::{Context, Result};

/// One step of the launch protocol (runtime = P, intermediate = C1, container = C2).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Msg {
    /// C1 → P: I unshared a user namespace, write my id maps.
    MapIds,
    /// P → C1: maps written.
    MapsDone,
    /// C1 → P: the container process has this pid (in P's pid namespace).
    Child(i32),
    /// C2 → P: mounts are done, run prestart/createRuntime hooks now.
    RunHooks,
    /// P → C2: hooks done; the container's pid as P sees it (for hook state).
    HooksDone(i32),
    /// C2 → P: everything is set up; waiting for `start`.
    Ready,
    /// Any child → P: setup failed; the message names what.
    Error(String),
}

#[derive(Debug)]
pub(crate) struct Channel(OwnedFd);

impl Channel {
    /// The descriptor's number, to keep it open among those a child closes.
    pub(crate) fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.0)
    }

    pub(crate) fn pair() -> Result<(Channel, Channel)> {
        let (a, b) = socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .ctx(|| "socketpair".into())?;
        Ok((Channel(a), Channel(b)))
    }

    pub(crate) fn send(&self, msg: &Msg) -> Result<()> {
        let bytes = serde_json::to_vec(msg).unwrap_or_default();
        socket::send(
            std::os::fd::AsRawFd::as_raw_fd(&self.0),
            &bytes,
            MsgFlags::MSG_NOSIGNAL,
        )
        .ctx(|| "send on sync socket".into())?;
        Ok(())
    }

    /// The next message, or `None` at end-of-file (the peer exited or exec'd).
    pub(crate) fn recv(&self) -> Result<Option<Msg>> {
        // Messages are a few hundred bytes; an error message is the longest.
        let mut buf = [0u8; 8192];
        loop {
            match socket::recv(
                std::os::fd::AsRawFd::as_raw_fd(&self.0),
                &mut buf,
                MsgFlags::empty(),
            ) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    return serde_json::from_slice(&buf[..n]).map(Some).map_err(|e| {
                        crate::Error::Init(format!("bad message on sync socket: {e}"))
                    });
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).ctx(|| "receive on sync socket".into()),
            }
        }
    }
}
