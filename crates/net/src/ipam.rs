//! IPAM: which container holds which address of a subnet, kept in a small JSON
//! file so that a daemon restart (or crash) never hands out an address twice.
//!
//! Every operation takes an exclusive `flock` on a lock file beside the state,
//! reads the state, changes it and writes it back atomically (temp file, fsync,
//! rename, fsync of the directory). The lock is on a separate file because the
//! rename replaces the state file's inode, and a lock on the old inode would not
//! exclude a process that opened the new one.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::subnet::Subnet;

/// Errors of the address allocator.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// Every assignable address of the subnet is taken.
    #[error("no free address left in {subnet}")]
    Exhausted {
        /// The full subnet.
        subnet: Subnet,
    },
    /// The address to reserve is outside the subnet or is its network, gateway
    /// or broadcast address.
    #[error("{ip} is not an assignable address of {subnet}")]
    NotAssignable {
        /// The refused address.
        ip: Ipv4Addr,
        /// The subnet it was checked against.
        subnet: Subnet,
    },
    /// The address to reserve is already held.
    #[error("{ip} is already allocated to {owner:?}")]
    InUse {
        /// The address.
        ip: Ipv4Addr,
        /// Who holds it.
        owner: String,
    },
    /// The state file exists but cannot be understood; we refuse to guess
    /// (guessing could hand out an address twice).
    #[error("IPAM state {path} is corrupt: {reason}")]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading, writing or locking the state failed.
    #[error("IPAM state {path}: cannot {op}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What we tried to do.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl IpamError {
    /// The class of this failure.
    pub fn kind(&self) -> bosun_oci::ErrorKind {
        use bosun_oci::ErrorKind;
        match self {
            Self::Exhausted { .. } => ErrorKind::Unavailable,
            Self::NotAssignable { .. } => ErrorKind::Invalid,
            Self::InUse { .. } => ErrorKind::Conflict,
            Self::Corrupt { .. } | Self::Io { .. } => ErrorKind::Internal,
        }
    }
}

/// The allocations of one subnet: pure data, no IO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leases {
    subnet: Subnet,
    /// Address → owner (a container id, or whatever the caller uses).
    leases: BTreeMap<Ipv4Addr, String>,
    /// The address handed out last. The next search starts after it, so a
    /// released address is not reused at once (a stale peer's ARP cache or
    /// conntrack entry would otherwise reach the new container).
    last: Option<Ipv4Addr>,
}

impl Leases {
    /// No allocations yet.
    pub fn new(subnet: Subnet) -> Self {
        Self {
            subnet,
            leases: BTreeMap::new(),
            last: None,
        }
    }

    /// The subnet these leases are in.
    pub fn subnet(&self) -> Subnet {
        self.subnet
    }

    /// Give the next free address to `owner`.
    pub fn allocate(&mut self, owner: &str) -> Result<Ipv4Addr, IpamError> {
        // Walk the assignable range once, starting after `last` and wrapping,
        // by arithmetic: a /16 has 65534 candidates and this runs per container.
        let first = u32::from(self.subnet.network()) + 2;
        let count = u32::from(self.subnet.broadcast()) - first;
        let start = match self.last {
            Some(l) if self.subnet.is_assignable(l) => u32::from(l) - first + 1,
            _ => 0,
        };
        let ip = (0..count)
            .map(|k| Ipv4Addr::from(first + (start + k) % count))
            .find(|ip| !self.leases.contains_key(ip))
            .ok_or(IpamError::Exhausted {
                subnet: self.subnet,
            })?;
        self.leases.insert(ip, owner.to_owned());
        self.last = Some(ip);
        Ok(ip)
    }

    /// Give a chosen address to `owner` (Docker's `--ip`).
    pub fn reserve(&mut self, ip: Ipv4Addr, owner: &str) -> Result<(), IpamError> {
        if !self.subnet.is_assignable(ip) {
            return Err(IpamError::NotAssignable {
                ip,
                subnet: self.subnet,
            });
        }
        if let Some(held) = self.leases.get(&ip) {
            return Err(IpamError::InUse {
                ip,
                owner: held.clone(),
            });
        }
        self.leases.insert(ip, owner.to_owned());
        Ok(())
    }

    /// Free `ip`; returns whether it was held (freeing twice is not an error,
    /// so teardown after a crash can simply repeat).
    pub fn release(&mut self, ip: Ipv4Addr) -> bool {
        self.leases.remove(&ip).is_some()
    }

    /// Free every address held by `owner`; returns them.
    pub fn release_owner(&mut self, owner: &str) -> Vec<Ipv4Addr> {
        let ips: Vec<_> = self
            .leases
            .iter()
            .filter(|(_, o)| o.as_str() == owner)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in &ips {
            self.leases.remove(ip);
        }
        ips
    }

    /// Every held address and its owner, in address order.
    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Addr, &str)> {
        self.leases.iter().map(|(ip, o)| (*ip, o.as_str()))
    }

    /// Check what serde cannot: every lease is assignable in the subnet.
    fn validate(&self) -> Result<(), String> {
        match self
            .leases
            .keys()
            .find(|ip| !self.subnet.is_assignable(**ip))
        {
            Some(ip) => Err(format!("{ip} is not assignable in {}", self.subnet)),
            None => Ok(()),
        }
    }
}

/// A file-backed allocator for one subnet under a state directory. Several
/// handles, threads or processes may use the same directory at once.
#[derive(Debug, Clone)]
pub struct Ipam {
    subnet: Subnet,
    state: PathBuf,
    lock: PathBuf,
}

impl Ipam {
    /// The allocator for `subnet`, keeping its state in `dir` (created if
    /// missing). The file name carries the subnet, so several networks can
    /// share a directory.
    pub fn open(dir: &Path, subnet: Subnet) -> Result<Self, IpamError> {
        fs::create_dir_all(dir).map_err(|source| IpamError::Io {
            path: dir.to_owned(),
            op: "create the directory",
            source,
        })?;
        let stem = format!("ipam-{}-{}", subnet.network(), subnet.prefix());
        let ipam = Self {
            subnet,
            state: dir.join(format!("{stem}.json")),
            lock: dir.join(format!("{stem}.lock")),
        };
        // Read once so a corrupt file is reported when the network is opened,
        // not at the first container start.
        ipam.with_lock(|_| Ok(((), false)))?;
        Ok(ipam)
    }

    /// The subnet this allocator serves.
    pub fn subnet(&self) -> Subnet {
        self.subnet
    }

    /// The state file (for diagnostics).
    pub fn state_path(&self) -> &Path {
        &self.state
    }

    /// Give the next free address to `owner`.
    pub fn allocate(&self, owner: &str) -> Result<Ipv4Addr, IpamError> {
        self.with_lock(|l| Ok((l.allocate(owner)?, true)))
    }

    /// Give a chosen address to `owner`.
    pub fn reserve(&self, ip: Ipv4Addr, owner: &str) -> Result<(), IpamError> {
        self.with_lock(|l| Ok((l.reserve(ip, owner)?, true)))
    }

    /// Free `ip`; returns whether it was held.
    pub fn release(&self, ip: Ipv4Addr) -> Result<bool, IpamError> {
        self.with_lock(|l| {
            let had = l.release(ip);
            Ok((had, had))
        })
    }

    /// Free everything `owner` holds (teardown and crash reconciliation).
    pub fn release_owner(&self, owner: &str) -> Result<Vec<Ipv4Addr>, IpamError> {
        self.with_lock(|l| {
            let ips = l.release_owner(owner);
            let changed = !ips.is_empty();
            Ok((ips, changed))
        })
    }

    /// A snapshot of the current leases.
    pub fn leases(&self) -> Result<Leases, IpamError> {
        self.with_lock(|l| Ok((l.clone(), false)))
    }

    /// Run `f` on the current leases under the lock; write them back when `f`
    /// says it changed them.
    fn with_lock<T>(
        &self,
        f: impl FnOnce(&mut Leases) -> Result<(T, bool), IpamError>,
    ) -> Result<T, IpamError> {
        let io = |path: &Path, op| {
            let path = path.to_owned();
            move |source| IpamError::Io { path, op, source }
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .map_err(io(&self.lock, "open the lock file"))?;
        // Held until this function returns (Flock unlocks on drop).
        let _guard = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| io(&self.lock, "lock")(e.into()))?;
        let mut leases = self.read()?;
        let (out, changed) = f(&mut leases)?;
        if changed {
            self.write(&leases)?;
        }
        Ok(out)
    }

    fn read(&self) -> Result<Leases, IpamError> {
        let bytes = match fs::read(&self.state) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Leases::new(self.subnet)),
            Err(source) => {
                return Err(IpamError::Io {
                    path: self.state.clone(),
                    op: "read",
                    source,
                });
            }
        };
        let corrupt = |reason: String| IpamError::Corrupt {
            path: self.state.clone(),
            reason,
        };
        let leases: Leases = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if leases.subnet != self.subnet {
            return Err(corrupt(format!(
                "it is for subnet {}, not {}",
                leases.subnet, self.subnet
            )));
        }
        leases.validate().map_err(corrupt)?;
        Ok(leases)
    }

    fn write(&self, leases: &Leases) -> Result<(), IpamError> {
        let io = |path: &Path, op| {
            let path = path.to_owned();
            move |source| IpamError::Io { path, op, source }
        };
        let dir = self.state.parent().unwrap_or(Path::new("."));
        // One temp name is enough: writers are serialised by the lock.
        let tmp = self.state.with_extension("json.tmp");
        let json = serde_json::to_vec_pretty(leases).expect("leases always serialise");
        let mut f = File::create(&tmp).map_err(io(&tmp, "create"))?;
        f.write_all(&json).map_err(io(&tmp, "write"))?;
        f.sync_all().map_err(io(&tmp, "fsync"))?;
        drop(f);
        fs::rename(&tmp, &self.state).map_err(io(&self.state, "rename into place"))?;
        // The rename is durable only once the directory entry is.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir, "fsync the directory"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn small() -> Subnet {
        // 5 assignable: .2 ..= .6
        "10.1.2.0/29".parse().unwrap()
    }

    #[test]
    fn allocates_until_exhausted_then_clear_error() {
        let mut l = Leases::new(small());
        let got: Vec<_> = (0..5)
            .map(|i| l.allocate(&format!("c{i}")).unwrap())
            .collect();
        assert_eq!(got[0], Ipv4Addr::new(10, 1, 2, 2));
        assert_eq!(got[4], Ipv4Addr::new(10, 1, 2, 6));
        let e = l.allocate("c5").unwrap_err();
        assert!(matches!(e, IpamError::Exhausted { .. }));
        assert_eq!(e.to_string(), "no free address left in 10.1.2.0/29");
        assert_eq!(e.kind(), bosun_oci::ErrorKind::Unavailable);
    }

    #[test]
    fn released_address_is_reused_but_not_at_once() {
        let mut l = Leases::new(small());
        let a = l.allocate("a").unwrap();
        assert!(l.release(a));
        assert!(!l.release(a), "second release reports nothing was held");
        // Round-robin: the next one is new while others are free.
        let b = l.allocate("b").unwrap();
        assert_ne!(a, b);
        for i in 0..3 {
            l.allocate(&format!("x{i}")).unwrap();
        }
        // Now only `a` is free: it comes back.
        assert_eq!(l.allocate("c").unwrap(), a);
    }

    #[test]
    fn reserve_and_release_owner() {
        let mut l = Leases::new(small());
        let ip = Ipv4Addr::new(10, 1, 2, 4);
        l.reserve(ip, "a").unwrap();
        assert!(matches!(l.reserve(ip, "b"), Err(IpamError::InUse { .. })));
        let gw = small().gateway();
        assert!(matches!(
            l.reserve(gw, "b"),
            Err(IpamError::NotAssignable { .. })
        ));
        let other = l.allocate("a").unwrap();
        l.allocate("b").unwrap();
        let mut freed = l.release_owner("a");
        freed.sort();
        let mut want = vec![ip, other];
        want.sort();
        assert_eq!(freed, want);
        assert_eq!(l.iter().count(), 1);
    }

    #[test]
    fn file_state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let a = Ipam::open(dir.path(), small()).unwrap();
        let ip = a.allocate("c1").unwrap();
        let b = Ipam::open(dir.path(), small()).unwrap();
        assert_ne!(b.allocate("c2").unwrap(), ip);
        assert_eq!(b.leases().unwrap().iter().count(), 2);
        assert!(b.release(ip).unwrap());
        assert_eq!(a.leases().unwrap().iter().count(), 1);
    }

    #[test]
    fn corrupt_state_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(dir.path(), small()).unwrap();
        fs::write(ipam.state_path(), b"{not json").unwrap();
        let e = ipam.allocate("c").unwrap_err();
        assert!(matches!(e, IpamError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("corrupt"), "{e}");
        assert!(Ipam::open(dir.path(), small()).is_err());

        // Well-formed JSON with an address outside the subnet is corrupt too.
        fs::write(
            ipam.state_path(),
            br#"{"subnet":"10.1.2.0/29","leases":{"10.9.9.9":"x"},"last":null}"#,
        )
        .unwrap();
        let e = ipam.allocate("c").unwrap_err();
        assert!(e.to_string().contains("10.9.9.9"), "{e}");
    }

    #[test]
    fn threads_with_separate_handles_never_share_an_address() {
        let dir = tempfile::tempdir().unwrap();
        let subnet: Subnet = "10.3.0.0/24".parse().unwrap();
        let per = 20;
        let handles: Vec<_> = (0..6)
            .map(|t| {
                let path = dir.path().to_owned();
                std::thread::spawn(move || {
                    // A fresh `open` per thread: separate file descriptions,
                    // as two processes would have.
                    let ipam = Ipam::open(&path, subnet).unwrap();
                    (0..per)
                        .map(|i| ipam.allocate(&format!("t{t}-{i}")).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let all: Vec<_> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let unique: HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len(), "duplicate address handed out");
        let ipam = Ipam::open(dir.path(), subnet).unwrap();
        assert_eq!(ipam.leases().unwrap().iter().count(), all.len());
    }
}
