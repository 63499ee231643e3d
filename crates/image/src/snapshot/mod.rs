//! Overlayfs snapshots: one read-only snapshot per layer chain, writable
//! "active" snapshots on top of them, and the diff of an upper directory back
//! into a layer.
//!
//! A committed snapshot holds one layer's diff in overlayfs's format
//! (whiteouts as 0/0 character devices, opaque directories by xattr), so an
//! image mounts as a stack of its layers' snapshots and images that share a
//! base share its snapshots. Snapshots are named by OCI chain id, which
//! names a layer together with everything below it.
//!
//! Several processes may use one data directory at once; `layout.rs` says
//! how. What is not done: the snapshot trees
//! are not fsynced (neither containerd nor Docker do), so they survive a
//! crash of the process, not a power loss.
//!
//! How many layers one mount can stack: mount(2) takes one page of options,
//! where each lower costs its path plus a separator, about 32 bytes with the
//! default data directory (`/var/lib/bosun/snapshots/<n>/fs`), which makes
//! about 120 layers (Docker allows 125); more is
//! [`SnapshotError::TooManyLayers`], reported when the active snapshot is
//! created. A shorter `--data-dir` fits more, up to overlayfs's 500.

mod diff;
mod error;
mod idmap;
mod layout;
mod mount;
mod remap;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fs::{self, DirBuilder};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use bosun_oci::Digest;

pub use diff::{DiffStats, diff, diff_unmapped};
pub use error::SnapshotError;
pub use idmap::{IdMap, IdRange, LayerMapping};

use crate::images::ImageLayer;
use crate::layer::OVERLAY_OPAQUE;
use crate::{ImageStore, Whiteouts, sha256_of};
use layout::{FS, Layout, UPPER, WORK};

/// The snapshots of one data directory (`<data-dir>/snapshots`). Cheap to
/// open; several instances, in one process or many, may use it at once.
#[derive(Debug, Clone)]
pub struct Snapshotter {
    layout: Layout,
}

/// A stack of committed snapshots: what an image's layers, or a build's
/// steps so far, mount as. `Layers::default()` is the empty stack (`FROM
/// scratch`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layers {
    chain_ids: Vec<Digest>,
    lowers: Vec<PathBuf>,
}

impl Layers {
    /// The chain id of every layer, bottom first (the order of an image
    /// config's diff_ids).
    pub fn chain_ids(&self) -> &[Digest] {
        &self.chain_ids
    }

    /// The chain id of the topmost layer, which names the whole stack.
    pub fn top(&self) -> Option<&Digest> {
        self.chain_ids.last()
    }

    /// The snapshot directories an overlay mount stacks, topmost first.
    /// Stops at a layer whose root is opaque (it replaced everything
    /// below), since overlayfs ignores opacity on a layer's root.
    pub fn lowers(&self) -> &[PathBuf] {
        &self.lowers
    }

    pub fn is_empty(&self) -> bool {
        self.chain_ids.is_empty()
    }
}

/// A writable snapshot: an upper and a work directory over a parent stack,
/// under `snapshots/active/<key>`. It stays on disk until committed or
/// removed; [`Snapshotter::active`] reopens it, in this process or another.
#[derive(Debug)]
pub struct Active {
    key: String,
    upper: PathBuf,
    parent: Layers,
    options: String,
    /// What the overlay stacks (the parent's lowers, or `empty/`), and its
    /// work dir: an idmapped mount spells its own options from them.
    lowers: Vec<PathBuf>,
    work: PathBuf,
    layout: Layout,
}

/// What [`Snapshotter::gc`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcStats {
    /// Chain ids whose snapshots were removed.
    pub removed: Vec<Digest>,
    /// Snapshot directories no chain named (a crash while one was published).
    pub orphans: usize,
    /// Temp directories of processes that died mid-work.
    pub temp_dirs: usize,
}

/// What [`prune`] removed.
#[derive(Debug, Clone, Default)]
pub struct Pruned {
    /// Blobs no tag reaches.
    pub blobs: Vec<Digest>,
    pub snapshots: GcStats,
}

/// `image prune`: deletes the blobs no tag reaches, then the snapshots no
/// tagged image (nor any active snapshot) uses, and what crashed writers left.
/// Waits for pulls, loads and builds in progress, and keeps new ones out
/// while it runs.
pub fn prune(images: &ImageStore, snapshots: &Snapshotter) -> Result<Pruned, SnapshotError> {
    let image_err = |manifest: &Digest| {
        let manifest = manifest.clone();
        move |source| SnapshotError::Image {
            manifest,
            source: Box::new(source),
        }
    };
    let store_err = |e| SnapshotError::Images(Box::new(e));
    let _exclusive = images.exclusive_ingest().map_err(store_err)?;
    let blobs = images.gc_locked().map_err(store_err)?;
    let mut live = BTreeSet::new();
    for (_, manifest) in images.tags().map_err(store_err)? {
        let layers = images.layers(&manifest).map_err(image_err(&manifest))?;
        let diff_ids: Vec<Digest> = layers.into_iter().map(|l| l.diff_id).collect();
        live.extend(chain_ids(&diff_ids));
    }
    let snapshots = snapshots.gc(&live)?;
    Ok(Pruned { blobs, snapshots })
}

/// The OCI chain ids of a stack of layers given by their diff_ids, bottom
/// first: the first is its diff_id, each next one is
/// `sha256(<previous chain id> + " " + <diff_id>)`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = next_chain(out.last(), diff_id);
        out.push(next);
    }
    out
}

fn next_chain(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(parent) => sha256_of(format!("{parent} {diff_id}").as_bytes()),
    }
}

impl Snapshotter {
    /// Opens (creating if needed) the snapshots of `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, SnapshotError> {
        Ok(Self {
            layout: Layout::open(&data_dir.join("snapshots"))?,
        })
    }

    /// Makes sure every layer of the image `manifest` has its snapshot,
    /// extracting the missing ones from the content store (each checked
    /// against its diff_id), and returns the stack.
    ///
    /// Each layer is extracted into a temp directory and moved into place
    /// whole; when another process publishes the same chain first, ours is
    /// thrown away. A failing layer leaves no trace of itself (layers below
    /// it that succeeded stay, complete and shareable).
    pub fn prepare(&self, images: &ImageStore, manifest: &Digest) -> Result<Layers, SnapshotError> {
        let layers = images
            .layers(manifest)
            .map_err(|source| SnapshotError::Image {
                manifest: manifest.clone(),
                source: Box::new(source),
            })?;
        self.prepare_layers(images, &layers)
    }

    /// [`Self::prepare`] for a stack of layers that is not (yet) an image:
    /// a build's steps so far.
    pub(crate) fn prepare_layers(
        &self,
        images: &ImageStore,
        layers: &[ImageLayer],
    ) -> Result<Layers, SnapshotError> {
        let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let chains = chain_ids(&diff_ids);
        for (layer, chain) in layers.iter().zip(&chains) {
            if self.layout.lookup(chain)?.is_some() {
                continue;
            }
            let temp = self.layout.temp_dir()?;
            let fs_dir = temp.path().join(FS);
            make_dir(&fs_dir)?;
            images
                .apply_verified(layer, &fs_dir, Whiteouts::Overlay)
                .map_err(|source| SnapshotError::Layer {
                    chain: chain.clone(),
                    layer: layer.blob.clone(),
                    source: Box::new(source),
                })?;
            let lock = self.layout.lock_exclusive()?;
            // When it already existed (someone was quicker), ours goes with `temp`.
            self.layout.publish(&lock, &fs_dir, chain)?;
            drop(lock);
            temp.remove()?;
        }
        self.layers(&chains)
    }

    /// The stack of existing snapshots with these chain ids (bottom first),
    /// or [`SnapshotError::ChainNotFound`] for the first one missing. A
    /// build cache can ask this whether a step's result is still here.
    pub fn layers(&self, chain_ids: &[Digest]) -> Result<Layers, SnapshotError> {
        let mut dirs = Vec::with_capacity(chain_ids.len());
        for chain in chain_ids {
            let n = self
                .layout
                .lookup(chain)?
                .ok_or_else(|| SnapshotError::ChainNotFound(chain.clone()))?;
            dirs.push(self.layout.snapshot_dir(n).join(FS));
        }
        let mut lowers = Vec::with_capacity(dirs.len());
        for dir in dirs.into_iter().rev() {
            let opaque = xattr::get(&dir, OVERLAY_OPAQUE)
                .map_err(|e| SnapshotError::io("read xattr of", &dir, e))?;
            lowers.push(dir);
            if opaque.as_deref() == Some(b"y") {
                break;
            }
        }
        Ok(Layers {
            chain_ids: chain_ids.to_vec(),
            lowers,
        })
    }

    /// Creates the writable snapshot `key` over `parent`. Its parent's
    /// snapshots are kept by [`Self::gc`] for as long as it exists.
    pub fn create_active(&self, key: &str, parent: &Layers) -> Result<Active, SnapshotError> {
        check_key(key)?;
        let temp = self.layout.temp_dir()?;
        make_dir(&temp.path().join(UPPER))?;
        make_dir(&temp.path().join(WORK))?;
        self.layout.write_parent(temp.path(), &parent.chain_ids)?;
        let dest = self.layout.active_dir(key);
        let _lock = self.layout.lock_exclusive()?;
        if fs::symlink_metadata(&dest).is_ok() {
            return Err(SnapshotError::ActiveExists(key.to_owned()));
        }
        // Under the lock, so no sweep removes a parent between this check
        // and the active's record of it.
        let active = self.open_active(key, &parent.chain_ids)?;
        temp.persist(&dest)?;
        Ok(active)
    }

    /// Reopens the writable snapshot `key`.
    pub fn active(&self, key: &str) -> Result<Active, SnapshotError> {
        check_key(key)?;
        let chains = self.layout.read_parent(key)?;
        self.open_active(key, &chains)
    }

    fn open_active(&self, key: &str, chains: &[Digest]) -> Result<Active, SnapshotError> {
        let parent = self.layers(chains)?;
        let dir = self.layout.active_dir(key);
        let upper = dir.join(UPPER);
        let empty = [self.layout.empty()];
        let lowers = match parent.lowers.is_empty() {
            // overlayfs needs a lower; an empty one stands for no layers.
            true => &empty[..],
            false => &parent.lowers[..],
        };
        let work = dir.join(WORK);
        let options = mount::options(lowers, &upper, &work)?;
        let lowers = lowers.to_vec();
        Ok(Active {
            key: key.to_owned(),
            upper,
            parent,
            options,
            lowers,
            work,
            layout: self.layout.clone(),
        })
    }

    /// Deletes the writable snapshot `key`, refusing while it is mounted.
    pub fn remove_active(&self, key: &str) -> Result<(), SnapshotError> {
        check_key(key)?;
        let dir = self.layout.active_dir(key);
        if fs::symlink_metadata(&dir).is_err() {
            return Err(SnapshotError::ActiveNotFound(key.to_owned()));
        }
        refuse_mounted(key, &dir.join(UPPER))?;
        let lock = self.layout.lock_exclusive()?;
        let retired = self.layout.retire(&lock, &dir).map_err(|e| match e {
            SnapshotError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                SnapshotError::ActiveNotFound(key.to_owned())
            }
            e => e,
        })?;
        drop(lock);
        retired.remove()
    }

    /// Makes the upper of `active` (unmounted) the committed snapshot of the
    /// chain `parent + diff_id`, by renaming it: it is already in overlay
    /// format. `diff_id` must be the digest of what [`diff`] wrote for this
    /// upper; it is not recomputed. If another process committed the same
    /// chain first, this upper is discarded. Either way the active snapshot
    /// is gone afterwards; on error it stays, for [`Self::active`] or
    /// [`Self::remove_active`].
    pub fn commit(&self, active: Active, diff_id: &Digest) -> Result<Layers, SnapshotError> {
        refuse_mounted(&active.key, &active.upper)?;
        let chain = next_chain(active.parent.top(), diff_id);
        let dir = self.layout.active_dir(&active.key);
        let lock = self.layout.lock_exclusive()?;
        if fs::symlink_metadata(&active.upper).is_err() {
            return Err(SnapshotError::ActiveNotFound(active.key));
        }
        // `Existed`: another build made the same layer; ours is discarded
        // with the rest of the active directory.
        self.layout.publish(&lock, &active.upper, &chain)?;
        let retired = self.layout.retire(&lock, &dir)?;
        drop(lock);
        retired.remove()?;
        let mut chains = active.parent.chain_ids;
        chains.push(chain);
        self.layers(&chains)
    }

    /// Removes every committed snapshot whose chain id is not in `live` and
    /// that no active snapshot stacks on, and the leftovers of crashed
    /// processes (temp directories, snapshots never linked to a chain).
    /// `live` is the caller's: the chain ids of the images to keep.
    pub fn gc(&self, live: &BTreeSet<Digest>) -> Result<GcStats, SnapshotError> {
        let mut stats = GcStats::default();
        let lock = self.layout.lock_exclusive()?;
        // Before retiring anything below, which also goes through `tmp/`.
        let mut doomed = self.layout.claim_stale(&lock)?;
        stats.temp_dirs = doomed.len();
        let mut keep = live.clone();
        for key in self.layout.active_keys()? {
            keep.extend(self.layout.read_parent(&key)?);
        }
        let mut named = BTreeSet::new();
        let mut unlinked = BTreeSet::new();
        for (chain, n) in self.layout.chains()? {
            if keep.contains(&chain) {
                named.insert(n);
            } else {
                // The link first: from here on no reader finds the snapshot.
                self.layout.remove_chain(&lock, &chain)?;
                unlinked.insert(n);
                stats.removed.push(chain);
            }
        }
        for n in self.layout.numbers()? {
            if named.contains(&n) {
                continue;
            }
            if !unlinked.contains(&n) {
                stats.orphans += 1;
            }
            doomed.push(self.layout.retire(&lock, &self.layout.snapshot_dir(n))?);
        }
        // Copies for user namespaces go with their snapshot.
        for (copy, n) in self.layout.remapped()? {
            if !named.contains(&n) {
                doomed.push(self.layout.retire(&lock, &copy)?);
            }
        }
        drop(lock);
        for dir in doomed {
            dir.remove()?;
        }
        Ok(stats)
    }
}

impl Active {
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The upper directory: what the container changed, in overlay format,
    /// for [`diff`].
    pub fn upper(&self) -> &Path {
        &self.upper
    }

    /// The stack this snapshot was created over.
    pub fn parent(&self) -> &Layers {
        &self.parent
    }

    /// Mounts the snapshot at the directory `target` (overlayfs, with
    /// redirect_dir, metacopy and index off, so the upper stays a plain
    /// diff). Refused while it is mounted elsewhere: two overlays sharing an
    /// upper corrupt it.
    pub fn mount(&self, target: &Path) -> Result<(), SnapshotError> {
        refuse_mounted(&self.key, &self.upper)?;
        mount::mount_overlay(&self.options, target)
    }

    /// Mounts the snapshot at `target` for a container in a user namespace
    /// with the mapping `map`, so that the container sees its image as
    /// root-owned and what it writes is stored under its host ids (the upper
    /// is made owned by the mapped root). The lowers are idmapped mounts (no
    /// layer is copied or changed) or, where the kernel cannot idmap them
    /// or `map` says so, copies of the layers with shifted owners, made once
    /// per mapping (see [`LayerMapping`]). Same refusal as [`Self::mount`].
    pub fn mount_idmapped(&self, target: &Path, map: &IdMap) -> Result<(), SnapshotError> {
        refuse_mounted(&self.key, &self.upper)?;
        if map.uses_idmapped_mounts() {
            let idmapped = idmap::mount_overlay(
                &self.lowers,
                &self.upper,
                &self.work,
                target,
                map,
                &self.layout.idmap_dir(),
            );
            match idmapped {
                Err(e) if map.may_fall_back() && idmap::is_unsupported(&e) => map.fall_back(),
                done => return done,
            }
        }
        let lowers = remap::lowers(&self.layout, &self.lowers, map)?;
        idmap::chown_upper(&self.upper, map)?;
        let options = mount::options(&lowers, &self.upper, &self.work)?;
        mount::mount_overlay(&options, target)
    }

    /// Unmounts the snapshot from `target`, refusing when `target` is not
    /// where it is mounted.
    pub fn unmount(&self, target: &Path) -> Result<(), SnapshotError> {
        let points = mount::mounts_of(&self.upper)?;
        let mounted_here = mount::is_mount_point(&points, target)
            .map_err(|e| SnapshotError::io("resolve", target, e))?;
        if !mounted_here {
            return Err(SnapshotError::NotMounted {
                key: self.key.clone(),
                target: target.to_owned(),
            });
        }
        mount::unmount(target)
    }
}

fn refuse_mounted(key: &str, upper: &Path) -> Result<(), SnapshotError> {
    match mount::mounts_of(upper)?.into_iter().next() {
        Some(target) => Err(SnapshotError::Mounted {
            key: key.to_owned(),
            target,
        }),
        None => Ok(()),
    }
}

/// Keys name directories and travel in mount options: letters, digits and
/// `_.-`, not starting with a dot, at most 128 bytes.
fn check_key(key: &str) -> Result<(), SnapshotError> {
    let bad = |reason| {
        Err(SnapshotError::BadKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() || key.len() > 128 {
        return bad("it must be 1 to 128 characters long");
    }
    if key.starts_with('.') {
        return bad("it may not start with a dot");
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return bad("only letters, digits, '_', '.' and '-' are allowed");
    }
    Ok(())
}

fn make_dir(path: &Path) -> Result<(), SnapshotError> {
    DirBuilder::new()
        .mode(0o755)
        .create(path)
        .map_err(|e| SnapshotError::io("create", path, e))
}
