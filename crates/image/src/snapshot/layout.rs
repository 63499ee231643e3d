//! The snapshot directory on disk, and the few operations that change it.
//!
//! ```text
//! snapshots/
//!   lock               flock: shared to make a temp dir, exclusive to change the rest
//!   <n>/fs             a committed snapshot: one layer's diff, in overlay format
//!   chains/<hex>       symlink to ../<n>: the snapshot of chain id sha256:<hex>
//!   active/<key>/      a writable snapshot: upper/, work/, parent (its chain ids)
//!   tmp/<pid>-<k>/     work in progress, flocked by its maker while it lives
//!   empty/             the lower of a mount with no layers (overlayfs needs one)
//!   idmap/<pid>-<k>/   idmapped lowers, attached only while an overlay mounts
//!   remap/<map>/<n>    snapshot <n>'s fs with owners shifted into a user
//!                      namespace's mapping, where idmapped mounts are missing
//! ```
//!
//! Readers take no lock: a chain link is made only once its snapshot is
//! complete, and garbage collection removes the link before the snapshot.
//! Every temp dir is created, and checked for a live maker, under the lock,
//! so a sweep never deletes one that is being filled.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bosun_oci::Digest;

use crate::snapshot::SnapshotError;

pub(crate) const FS: &str = "fs";
pub(crate) const UPPER: &str = "upper";
pub(crate) const WORK: &str = "work";
const PARENT: &str = "parent";
const LOCK: &str = "lock";
const CHAINS: &str = "chains";
const ACTIVE: &str = "active";
const TMP: &str = "tmp";
const EMPTY: &str = "empty";
const IDMAP: &str = "idmap";
const REMAP: &str = "remap";

#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: PathBuf,
}

/// The store-wide lock, held until dropped (or the process dies).
#[derive(Debug)]
pub(crate) struct Locked {
    _file: File,
}

/// What publishing a snapshot found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Published {
    New(u64),
    /// Someone else published the same chain first; the source is untouched.
    Existed(u64),
}

impl Layout {
    /// Creates the directories under `root` and returns the layout. The path
    /// is made canonical, so that every process spells the mount options
    /// (and finds them in mountinfo) the same way.
    pub(crate) fn open(root: &Path) -> Result<Self, SnapshotError> {
        for dir in [CHAINS, ACTIVE, TMP, EMPTY, IDMAP, REMAP] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(|e| SnapshotError::io("create", &path, e))?;
        }
        let root = fs::canonicalize(root).map_err(|e| SnapshotError::io("resolve", root, e))?;
        let Some(text) = root.to_str() else {
            return Err(SnapshotError::BadPath {
                path: root,
                reason: "not UTF-8, which overlay mount options must be",
            });
        };
        // Separators of the overlay mount options.
        if text.contains([':', ',', '\\']) {
            return Err(SnapshotError::BadPath {
                path: root,
                reason: "it contains ':', ',' or '\\', which overlay mount options cannot carry",
            });
        }
        Ok(Self { root })
    }

    pub(crate) fn empty(&self) -> PathBuf {
        self.root.join(EMPTY)
    }

    pub(crate) fn idmap_dir(&self) -> PathBuf {
        self.root.join(IDMAP)
    }

    /// The copy of snapshot `n` for the mapping `key` (see `remap.rs`).
    pub(crate) fn remap_dir(&self, key: &str, n: u64) -> PathBuf {
        self.root.join(REMAP).join(key).join(n.to_string())
    }

    /// Every remapped copy, as (its path, the snapshot number it copies).
    pub(crate) fn remapped(&self) -> Result<Vec<(PathBuf, u64)>, SnapshotError> {
        let dir = self.root.join(REMAP);
        let mut out = Vec::new();
        for key in list(&dir)? {
            let key_dir = dir.join(key);
            for name in list(&key_dir)? {
                if let Ok(n) = name.parse() {
                    out.push((key_dir.join(name), n));
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn snapshot_dir(&self, n: u64) -> PathBuf {
        self.root.join(n.to_string())
    }

    pub(crate) fn active_dir(&self, key: &str) -> PathBuf {
        self.root.join(ACTIVE).join(key)
    }

    fn chain_link(&self, chain: &Digest) -> PathBuf {
        self.root.join(CHAINS).join(chain.hex())
    }

    pub(crate) fn lock_shared(&self) -> Result<Locked, SnapshotError> {
        let file = self.lock_file()?;
        file.lock_shared()
            .map_err(|e| SnapshotError::io("lock", self.root.join(LOCK), e))?;
        Ok(Locked { _file: file })
    }

    pub(crate) fn lock_exclusive(&self) -> Result<Locked, SnapshotError> {
        let file = self.lock_file()?;
        file.lock()
            .map_err(|e| SnapshotError::io("lock", self.root.join(LOCK), e))?;
        Ok(Locked { _file: file })
    }

    fn lock_file(&self) -> Result<File, SnapshotError> {
        let path = self.root.join(LOCK);
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| SnapshotError::io("open", &path, e))
    }

    /// The snapshot number of `chain`, if it has one.
    pub(crate) fn lookup(&self, chain: &Digest) -> Result<Option<u64>, SnapshotError> {
        let link = self.chain_link(chain);
        match fs::read_link(&link) {
            Ok(target) => parse_link(&link, &target).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SnapshotError::io("read", &link, e)),
        }
    }

    /// Every chain link with its snapshot number.
    pub(crate) fn chains(&self) -> Result<Vec<(Digest, u64)>, SnapshotError> {
        let dir = self.root.join(CHAINS);
        let mut out = Vec::new();
        for name in list(&dir)? {
            let link = dir.join(&name);
            let chain: Digest = format!("sha256:{name}")
                .parse()
                .map_err(|e| corrupt(&link, format!("not a chain id: {e}")))?;
            let target = fs::read_link(&link).map_err(|e| SnapshotError::io("read", &link, e))?;
            out.push((chain, parse_link(&link, &target)?));
        }
        Ok(out)
    }

    pub(crate) fn remove_chain(&self, _lock: &Locked, chain: &Digest) -> Result<(), SnapshotError> {
        let link = self.chain_link(chain);
        fs::remove_file(&link).map_err(|e| SnapshotError::io("remove", &link, e))
    }

    /// The numbers of the snapshot directories, whether a chain names them or not.
    pub(crate) fn numbers(&self) -> Result<Vec<u64>, SnapshotError> {
        Ok(list(&self.root)?
            .iter()
            .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
            .filter_map(|name| name.parse().ok())
            .collect())
    }

    /// Moves the directory `fs_src` into place as the snapshot of `chain`,
    /// unless that chain already has one. The chain link comes last, so no
    /// reader sees a snapshot before it is whole; a crash in between leaves
    /// a numbered directory no chain names, which [`Self::numbers`] shows to
    /// garbage collection.
    pub(crate) fn publish(
        &self,
        _lock: &Locked,
        fs_src: &Path,
        chain: &Digest,
    ) -> Result<Published, SnapshotError> {
        if let Some(n) = self.lookup(chain)? {
            return Ok(Published::Existed(n));
        }
        let n = self.numbers()?.into_iter().max().unwrap_or(0) + 1;
        let dir = self.snapshot_dir(n);
        fs::create_dir(&dir).map_err(|e| SnapshotError::io("create", &dir, e))?;
        let fs_dst = dir.join(FS);
        if let Err(e) = fs::rename(fs_src, &fs_dst) {
            let _ = fs::remove_dir(&dir);
            return Err(SnapshotError::io("move into place", fs_src, e));
        }
        let link = self.chain_link(chain);
        let linked = symlink(format!("../{n}"), &link)
            .and_then(|()| File::open(self.root.join(CHAINS))?.sync_all());
        if let Err(e) = linked {
            // Give the caller its directory back, as it was.
            let _ = fs::remove_file(&link);
            let _ = fs::rename(&fs_dst, fs_src);
            let _ = fs::remove_dir(&dir);
            return Err(SnapshotError::io("create", &link, e));
        }
        Ok(Published::New(n))
    }

    /// A new temp dir, locked by this process until dropped.
    pub(crate) fn temp_dir(&self) -> Result<TempDir, SnapshotError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let _lock = self.lock_shared()?;
        loop {
            let name = format!(
                "{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let path = self.root.join(TMP).join(name);
            match fs::create_dir(&path) {
                Ok(()) => return TempDir::claim(path),
                // Left by a dead process that had our pid.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(SnapshotError::io("create", &path, e)),
            }
        }
    }

    /// Moves `dir` (a snapshot or an active one) out of its name into a temp
    /// dir of this process, to be deleted without holding the lock.
    pub(crate) fn retire(&self, _lock: &Locked, dir: &Path) -> Result<TempDir, SnapshotError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let name = format!(
                "{}-retired-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let path = self.root.join(TMP).join(name);
            match fs::rename(dir, &path) {
                Ok(()) => return TempDir::claim(path),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::AlreadyExists | io::ErrorKind::DirectoryNotEmpty
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(SnapshotError::io("move away", dir, e)),
            }
        }
    }

    /// Temp dirs whose maker is gone (a crash, a kill), now locked by us.
    pub(crate) fn claim_stale(&self, _lock: &Locked) -> Result<Vec<TempDir>, SnapshotError> {
        let dir = self.root.join(TMP);
        let mut out = Vec::new();
        for name in list(&dir)? {
            let path = dir.join(name);
            let file = File::open(&path).map_err(|e| SnapshotError::io("open", &path, e))?;
            match file.try_lock() {
                Ok(()) => out.push(TempDir {
                    path,
                    _lock: file,
                    armed: true,
                }),
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(e)) => {
                    return Err(SnapshotError::io("lock", &path, e));
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn active_keys(&self) -> Result<Vec<String>, SnapshotError> {
        list(&self.root.join(ACTIVE))
    }

    /// Writes the chain ids an active snapshot stacks on into `dir`.
    pub(crate) fn write_parent(&self, dir: &Path, chains: &[Digest]) -> Result<(), SnapshotError> {
        let path = dir.join(PARENT);
        let mut text = String::new();
        for chain in chains {
            text.push_str(chain.as_str());
            text.push('\n');
        }
        File::create(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| SnapshotError::io("write", &path, e))
    }

    /// The chain ids the active snapshot `key` stacks on, bottom first.
    pub(crate) fn read_parent(&self, key: &str) -> Result<Vec<Digest>, SnapshotError> {
        let path = self.active_dir(key).join(PARENT);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SnapshotError::ActiveNotFound(key.to_owned()));
            }
            Err(e) => return Err(SnapshotError::io("open", &path, e)),
        };
        let mut chains = Vec::new();
        for line in BufReader::new(file).lines() {
            let line = line.map_err(|e| SnapshotError::io("read", &path, e))?;
            let chain = line
                .parse()
                .map_err(|e| corrupt(&path, format!("line {line:?}: {e}")))?;
            chains.push(chain);
        }
        Ok(chains)
    }
}

/// A directory under `tmp/` locked by this process: deleted when dropped, so
/// an error on the way leaves nothing; a crash leaves it for the next sweep.
#[derive(Debug)]
pub(crate) struct TempDir {
    path: PathBuf,
    _lock: File,
    /// Whether dropping it deletes the directory.
    armed: bool,
}

impl TempDir {
    fn claim(path: PathBuf) -> Result<Self, SnapshotError> {
        let file = File::open(&path).map_err(|e| SnapshotError::io("open", &path, e))?;
        // Only a sweep under the store lock contends, and we hold that lock.
        file.lock()
            .map_err(|e| SnapshotError::io("lock", &path, e))?;
        Ok(Self {
            path,
            _lock: file,
            armed: true,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes it now, reporting failure.
    pub(crate) fn remove(mut self) -> Result<(), SnapshotError> {
        self.armed = false;
        remove_tree(&self.path).map_err(|(path, e)| SnapshotError::io("remove", path, e))
    }

    /// Renames it to `dest` (it is no longer a temp dir).
    /// Dropping it afterwards releases the lock (closes the file), which a
    /// later [`Layout::retire`] of `dest` needs.
    pub(crate) fn persist(mut self, dest: &Path) -> Result<(), SnapshotError> {
        fs::rename(&self.path, dest).map_err(|e| SnapshotError::io("move into place", dest, e))?;
        self.armed = false;
        Ok(())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.armed {
            let _ = remove_tree(&self.path);
        }
    }
}

fn remove_tree(path: &Path) -> Result<(), (PathBuf, io::Error)> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err((path.to_owned(), e)),
        _ => Ok(()),
    }
}

fn parse_link(link: &Path, target: &Path) -> Result<u64, SnapshotError> {
    target
        .to_str()
        .and_then(|t| t.strip_prefix("../"))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| corrupt(link, format!("points at {target:?}, not a snapshot")))
}

fn corrupt(path: &Path, reason: String) -> SnapshotError {
    SnapshotError::Corrupt {
        path: path.to_owned(),
        reason,
    }
}

/// The names in `dir`, sorted. Names that are not UTF-8 were not made by
/// the snapshotter and are skipped.
fn list(dir: &Path) -> Result<Vec<String>, SnapshotError> {
    let entries = fs::read_dir(dir).map_err(|e| SnapshotError::io("list", dir, e))?;
    let mut names = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(|e| SnapshotError::io("list", dir, e))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.insert(name);
        }
    }
    Ok(names.into_iter().collect())
}
