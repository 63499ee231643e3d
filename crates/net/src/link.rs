//! The bridge and the veth pairs that connect containers to it, over rtnetlink.
//!
//! rtnetlink is async; this module is not. Each batch of requests runs on a
//! dedicated OS thread with its own single-threaded tokio runtime, so callers
//! may be plain threads or tokio tasks alike (`block_on` inside a runtime would
//! panic), and so that work inside a container's netns can `setns` the thread
//! first: the namespace is per thread, and a thread that switched never returns
//! to a pool where other work would run in the wrong namespace. The netlink
//! socket is opened after `setns`, so it talks to the container's namespace.

use std::fmt;
use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use futures_util::TryStreamExt;
use nix::sched::{CloneFlags, setns};
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::subnet::Subnet;

/// The name of the container's end of a veth pair, as Docker names it.
pub const CONTAINER_IFNAME: &str = "eth0";

/// A network interface name the kernel accepts: 1 to 15 bytes, no '/', no
/// whitespace, not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfName(String);

impl IfName {
    /// Check `name` against the kernel's rules (`dev_valid_name`).
    pub fn new(name: &str) -> Result<Self, LinkError> {
        let reason = if name.is_empty() {
            Some("empty")
        } else if name.len() > 15 {
            Some("longer than 15 bytes")
        } else if name == "." || name == ".." {
            Some("'.' and '..' are reserved")
        } else if name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
        {
            Some("contains '/', ':' or whitespace")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(LinkError::InvalidName {
                name: name.to_owned(),
                reason,
            }),
            None => Ok(Self(name.to_owned())),
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Errors of the link plumbing; each names the interface or netns involved.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// An interface name the kernel would refuse.
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidName {
        /// The refused name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// The interface we were asked to create already exists; we never take
    /// over an interface we did not create.
    #[error("interface {name} already exists")]
    Exists {
        /// Its name.
        name: IfName,
    },
    /// The bridge name is taken by an interface of another kind.
    #[error("interface {name} exists and is not a bridge")]
    NotABridge {
        /// Its name.
        name: IfName,
    },
    /// The interface to delete is not of the kind we create under that name
    /// (a bridge, a veth), so it is not ours.
    #[error("interface {name} is not a {expected}; not deleting it")]
    WrongKind {
        /// Its name.
        name: IfName,
        /// The kind we expected.
        expected: String,
    },
    /// An interface we need is missing.
    #[error("interface {name} does not exist")]
    Missing {
        /// Its name.
        name: IfName,
    },
    /// The network namespace file cannot be opened or entered.
    #[error("network namespace {path}: cannot {op}: {source}")]
    Netns {
        /// The namespace file (e.g. `/proc/<pid>/ns/net`).
        path: PathBuf,
        /// What we tried.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A kernel setting of our interface could not be written.
    #[error("cannot write {path}: {source}")]
    Sysctl {
        /// The /proc/sys file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A netlink request failed.
    #[error("cannot {op}: {source}")]
    Netlink {
        /// What we tried, naming the interface (and netns).
        op: String,
        /// The kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },
    /// The worker thread or its runtime could not be started.
    #[error("cannot start the netlink worker: {0}")]
    Worker(#[source] std::io::Error),
}

impl LinkError {
    /// The class of this failure.
    pub fn kind(&self) -> bosun_oci::ErrorKind {
        use bosun_oci::ErrorKind;
        match self {
            Self::InvalidName { .. } => ErrorKind::Invalid,
            Self::Exists { .. } | Self::NotABridge { .. } | Self::WrongKind { .. } => {
                ErrorKind::Conflict
            }
            Self::Missing { .. } => ErrorKind::NotFound,
            Self::Netns { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            Self::Netns { .. } | Self::Netlink { .. } | Self::Sysctl { .. } | Self::Worker(_) => {
                ErrorKind::Internal
            }
        }
    }
}

fn nl(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> LinkError {
    let op = op.into();
    move |source| LinkError::Netlink { op, source }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

/// Run `work` on a fresh OS thread with its own current-thread runtime and
/// netlink connection, inside the netns at `netns` when given.
fn on_worker<T, F, Fut>(netns: Option<&Path>, work: F) -> Result<T, LinkError>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T, LinkError>>,
{
    std::thread::scope(|s| {
        let thread = std::thread::Builder::new()
            .name("bosun-netlink".into())
            .spawn_scoped(s, move || {
                if let Some(path) = netns {
                    enter_netns(path)?;
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                    .map_err(LinkError::Worker)?;
                rt.block_on(async move {
                    let (conn, handle, _) =
                        rtnetlink::new_connection().map_err(LinkError::Worker)?;
                    let driver = tokio::spawn(conn);
                    let out = work(handle).await;
                    driver.abort();
                    out
                })
            })
            .map_err(LinkError::Worker)?;
        thread
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

fn enter_netns(path: &Path) -> Result<(), LinkError> {
    let err = |op| {
        move |source| LinkError::Netns {
            path: path.to_owned(),
            op,
            source,
        }
    };
    let file = File::open(path).map_err(err("open"))?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| err("enter")(e.into()))
}

async fn index_of(h: &Handle, name: &str) -> Result<Option<u32>, LinkError> {
    Ok(get_link(h, name).await?.map(|m| m.header.index))
}

async fn get_link(h: &Handle, name: &str) -> Result<Option<LinkMessage>, LinkError> {
    let mut links = h.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(Some(msg)),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(libc_enodev()) => Ok(None),
        Err(e) => Err(nl(format!("look up interface {name}"))(e)),
    }
}

fn is_bridge(msg: &LinkMessage) -> bool {
    has_kind(msg, &InfoKind::Bridge)
}

fn has_kind(msg: &LinkMessage, kind: &InfoKind) -> bool {
    msg.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, LinkInfo::Kind(k) if k == kind)),
        _ => false,
    })
}

const fn libc_enodev() -> i32 {
    nix::errno::Errno::ENODEV as i32
}

const fn libc_eexist() -> i32 {
    nix::errno::Errno::EEXIST as i32
}

async fn set_up(h: &Handle, index: u32, what: &str) -> Result<(), LinkError> {
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl(format!("bring {what} up")))
}

/// Make sure bridge `name` exists, holds the subnet's gateway address and is
/// up. Calling it again is harmless. A bridge this call created is removed
/// again if a later step fails.
pub fn ensure_bridge(name: &IfName, subnet: Subnet) -> Result<(), LinkError> {
    on_worker(None, |h| async move {
        let (index, created) = match get_link(&h, name.as_str()).await? {
            // Never put our address on an interface that is not a bridge.
            Some(m) if !is_bridge(&m) => {
                return Err(LinkError::NotABridge { name: name.clone() });
            }
            Some(m) => (m.header.index, false),
            None => {
                let created = match h
                    .link()
                    .add(LinkBridge::new(name.as_str()).build())
                    .execute()
                    .await
                {
                    Ok(()) => true,
                    // Another process created it since we looked: use theirs.
                    Err(e) if errno(&e) == Some(libc_eexist()) => false,
                    Err(e) => return Err(nl(format!("create bridge {name}"))(e)),
                };
                let m = get_link(&h, name.as_str())
                    .await?
                    .ok_or_else(|| LinkError::Missing { name: name.clone() })?;
                if !is_bridge(&m) {
                    return Err(LinkError::NotABridge { name: name.clone() });
                }
                (m.header.index, created)
            }
        };
        let rest = async {
            let gw = subnet.gateway();
            match h
                .address()
                .add(index, IpAddr::V4(gw), subnet.prefix())
                .execute()
                .await
            {
                Err(e) if errno(&e) == Some(libc_eexist()) => {}
                r => r.map_err(nl(format!(
                    "add address {gw}/{} to bridge {name}",
                    subnet.prefix()
                )))?,
            }
            // Lets the host's own 127.0.0.1 reach published ports: DNAT from
            // loopback to a container is dropped as martian without it. Only
            // our bridge's setting changes.
            let sysctl = PathBuf::from(format!("/proc/sys/net/ipv4/conf/{name}/route_localnet"));
            std::fs::write(&sysctl, "1").map_err(|source| LinkError::Sysctl {
                path: sysctl.clone(),
                source,
            })?;
            set_up(&h, index, &format!("bridge {name}")).await
        };
        let result = rest.await;
        if result.is_err() && created {
            // Best effort: the first error is the one worth reporting.
            let _ = h.link().del(index).execute().await;
        }
        result
    })
}

/// Delete bridge `name`; returns whether it existed.
pub fn delete_bridge(name: &IfName) -> Result<bool, LinkError> {
    on_worker(None, |h| async move {
        delete_link(&h, name, &InfoKind::Bridge).await
    })
}

/// Delete interface `name` if it is of `kind`; one of another kind is not
/// ours and is refused (`WrongKind`), never deleted.
async fn delete_link(h: &Handle, name: &IfName, kind: &InfoKind) -> Result<bool, LinkError> {
    let Some(msg) = get_link(h, name.as_str()).await? else {
        return Ok(false);
    };
    if !has_kind(&msg, kind) {
        return Err(LinkError::WrongKind {
            name: name.clone(),
            expected: kind.to_string(),
        });
    }
    let index = msg.header.index;
    match h.link().del(index).execute().await {
        Ok(()) => Ok(true),
        // Gone in between (e.g. the container's netns died and took the pair).
        Err(e) if errno(&e) == Some(libc_enodev()) => Ok(false),
        Err(e) => Err(nl(format!("delete interface {name}"))(e)),
    }
}

/// What a container's interface gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The bridge the host end joins (it must exist: see `ensure_bridge`).
    pub bridge: IfName,
    /// The host end's name (unique per container; ours to create).
    pub host_veth: IfName,
    /// The container's network namespace file.
    pub netns: PathBuf,
    /// The container's address; the subnet gives the prefix and the gateway.
    pub address: Ipv4Addr,
    /// The bridge's subnet.
    pub subnet: Subnet,
}

/// Connect a container: a veth pair whose host end joins the bridge and whose
/// other end becomes `eth0` in the container's netns with the address, `lo`
/// and `eth0` up, and a default route via the gateway. On failure nothing is
/// left: deleting the host end also removes its peer, wherever it is by then.
pub fn attach(a: &Attachment) -> Result<(), LinkError> {
    // Open the netns before creating anything, so a bad path costs nothing.
    let ns = File::open(&a.netns).map_err(|source| LinkError::Netns {
        path: a.netns.clone(),
        op: "open",
        source,
    })?;
    let peer = &temp_peer_name();
    let host = &a.host_veth;
    on_worker(None, |h| async move {
        let bridge = index_of(&h, a.bridge.as_str())
            .await?
            .ok_or_else(|| LinkError::Missing {
                name: a.bridge.clone(),
            })?;
        if index_of(&h, host.as_str()).await?.is_some() {
            return Err(LinkError::Exists { name: host.clone() });
        }
        h.link()
            .add(LinkVeth::new(host.as_str(), peer.as_str()).build())
            .execute()
            .await
            .map_err(nl(format!("create veth pair {host}/{peer}")))?;
        let host_side = async {
            let hi = index_of(&h, host.as_str())
                .await?
                .ok_or_else(|| LinkError::Missing { name: host.clone() })?;
            let pi = index_of(&h, peer.as_str())
                .await?
                .ok_or_else(|| LinkError::Missing { name: peer.clone() })?;
            h.link()
                .set(
                    LinkUnspec::new_with_index(hi)
                        .controller(bridge)
                        .up()
                        .build(),
                )
                .execute()
                .await
                .map_err(nl(format!("attach {host} to bridge {}", a.bridge)))?;
            h.link()
                .set(
                    LinkUnspec::new_with_index(pi)
                        .setns_by_fd(ns.as_raw_fd())
                        .build(),
                )
                .execute()
                .await
                .map_err(nl(format!("move {peer} into netns {}", a.netns.display())))
        };
        if let Err(e) = host_side.await {
            let _ = delete_link(&h, host, &InfoKind::Veth).await;
            return Err(e);
        }
        Ok(())
    })?;
    let inside = on_worker(Some(&a.netns), |h| async move {
        configure_inside(&h, a, peer).await
    });
    if let Err(e) = inside {
        let _ = on_worker(None, |h| async move {
            delete_link(&h, host, &InfoKind::Veth).await
        });
        return Err(e);
    }
    Ok(())
}

async fn configure_inside(h: &Handle, a: &Attachment, peer: &IfName) -> Result<(), LinkError> {
    let ns = a.netns.display();
    let missing = |name: &str| LinkError::Missing {
        name: IfName(name.to_owned()),
    };
    let pi = index_of(h, peer.as_str())
        .await?
        .ok_or_else(|| missing(peer.as_str()))?;
    h.link()
        .set(
            LinkUnspec::new_with_index(pi)
                .name(CONTAINER_IFNAME)
                .build(),
        )
        .execute()
        .await
        .map_err(nl(format!(
            "rename {peer} to {CONTAINER_IFNAME} in netns {ns}"
        )))?;
    h.address()
        .add(pi, IpAddr::V4(a.address), a.subnet.prefix())
        .execute()
        .await
        .map_err(nl(format!(
            "add address {}/{} to {CONTAINER_IFNAME} in netns {ns}",
            a.address,
            a.subnet.prefix()
        )))?;
    let lo = index_of(h, "lo").await?.ok_or_else(|| missing("lo"))?;
    set_up(h, lo, &format!("lo in netns {ns}")).await?;
    set_up(h, pi, &format!("{CONTAINER_IFNAME} in netns {ns}")).await?;
    let gw = a.subnet.gateway();
    h.route()
        .add(
            RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gw)
                .output_interface(pi)
                .build(),
        )
        .execute()
        .await
        .map_err(nl(format!("add default route via {gw} in netns {ns}")))
}

/// Disconnect a container: delete its host veth (the kernel removes the peer
/// with it). Returns whether it existed, so teardown may be repeated.
pub fn detach(host_veth: &IfName) -> Result<bool, LinkError> {
    on_worker(None, |h| async move {
        delete_link(&h, host_veth, &InfoKind::Veth).await
    })
}

/// A name for the container end while it is still in the host's namespace,
/// before it becomes `eth0`; unique per process and call.
fn temp_peer_name() -> IfName {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    // "bp" + 8 hex + up to 5 hex = at most 15 bytes.
    IfName(format!("bp{:08x}{:x}", std::process::id(), n & 0xfffff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_the_kernel() {
        assert!(IfName::new("bosun0").is_ok());
        assert!(IfName::new("abcdefghijklmno").is_ok());
        for bad in ["", "abcdefghijklmnop", ".", "..", "a/b", "a b", "a:b"] {
            let e = IfName::new(bad).unwrap_err();
            assert_eq!(e.kind(), bosun_oci::ErrorKind::Invalid);
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn temp_peer_names_are_valid_and_distinct() {
        let a = temp_peer_name();
        let b = temp_peer_name();
        assert_ne!(a, b);
        assert!(IfName::new(a.as_str()).is_ok());
    }
}
