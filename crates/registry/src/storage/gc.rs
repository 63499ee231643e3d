//! Garbage collection: mark every blob a linked manifest reaches, then sweep
//! the rest (their repository links first, then the bytes).
//!
//! Safe against a running server by exclusion: servers hold `DIR/lock`
//! shared for their whole life, and gc takes it exclusively without waiting,
//! so it refuses to run while a server is up (a server started during gc
//! waits for it). A server must be excluded, not merely raced: a push checks
//! that its layers exist and only later stores the manifest that makes them
//! live, so a sweep in between would delete layers a manifest then names.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bosun_image::manifest::{Manifest, descriptor_digest};
use bosun_oci::Digest;

use super::fsutil::{TEMP_PREFIX, list_names};
use super::{Result, Storage, StorageError, parse_link_name};

/// What a collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_deleted: Vec<Digest>,
    pub bytes_freed: u64,
    /// Repository links to blobs no manifest uses.
    pub links_removed: usize,
    pub uploads_removed: usize,
    pub temp_files_removed: usize,
}

impl Storage {
    /// Deletes every blob that no manifest of any repository references, and
    /// uploads untouched for `upload_max_age`. Fails with
    /// [`StorageError::Locked`] while a server runs on this directory.
    pub fn gc(&self, upload_max_age: Duration) -> Result<GcReport> {
        let (lock, path) = self.lock_file()?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(StorageError::Locked(path)),
            Err(std::fs::TryLockError::Error(e)) => return Err(StorageError::io("lock", &path, e)),
        }
        let mut report = GcReport::default();
        let top = self.root.join("repositories");
        let mut repos = Vec::new();
        repo_dirs(&top, &mut repos).map_err(|e| StorageError::io("list", &top, e))?;

        let mut live = BTreeSet::new();
        for repo in &repos {
            let manifests = self
                .manifest_digests(repo)
                .map_err(|e| StorageError::io("list", repo, e))?;
            for digest in manifests {
                self.mark(&digest, &mut live)?;
            }
        }

        for repo in &repos {
            let dir = repo.join("_blobs");
            for name in list_names(&dir).map_err(|e| StorageError::io("list", &dir, e))? {
                if parse_link_name(&name).is_some_and(|d| !live.contains(&d)) {
                    let path = dir.join(&name);
                    fs::remove_file(&path).map_err(|e| StorageError::io("remove", &path, e))?;
                    report.links_removed += 1;
                }
            }
            for sub in ["_blobs", "_manifests", "_tags"] {
                report.temp_files_removed += remove_temp_files(&repo.join(sub))
                    .map_err(|e| StorageError::io("clean", repo.join(sub), e))?;
            }
        }

        for digest in self.content.list()? {
            if live.contains(&digest) {
                continue;
            }
            let size = self.content.size(&digest).unwrap_or(0);
            match self.content.delete(&digest) {
                Ok(()) => {
                    report.bytes_freed += size;
                    report.blobs_deleted.push(digest);
                }
                Err(bosun_image::StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // No server runs (we hold the lock): every temp file is a dead writer's.
        report.temp_files_removed += self.content.remove_temp_files(Duration::ZERO)?;
        let uploads = self.root.join("uploads");
        report.temp_files_removed +=
            remove_temp_files(&uploads).map_err(|e| StorageError::io("clean", &uploads, e))?;
        report.uploads_removed = self.remove_stale_uploads(upload_max_age)?;
        Ok(report)
    }

    /// Marks a manifest and what it references; an index's manifests are
    /// followed too. A manifest whose bytes are missing or unreadable marks
    /// only itself: gc must not fail on damage, nor delete around it.
    fn mark(&self, digest: &Digest, live: &mut BTreeSet<Digest>) -> Result<()> {
        if !live.insert(digest.clone()) {
            return Ok(());
        }
        let Ok(bytes) = self.content.get(digest) else {
            return Ok(());
        };
        let Ok(manifest) = Manifest::parse(&bytes, None) else {
            return Ok(());
        };
        for d in manifest.references() {
            let Ok(child) = descriptor_digest(d) else {
                continue;
            };
            match manifest {
                Manifest::Index(_) => self.mark(&child, live)?,
                Manifest::Image(_) => {
                    live.insert(child);
                }
            }
        }
        Ok(())
    }
}

/// Every repository directory (one holding `_blobs` or `_manifests`).
fn repo_dirs(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(['_', '.']) || !entry.file_type()?.is_dir() {
            continue;
        }
        let path = entry.path();
        if path.join("_blobs").is_dir() || path.join("_manifests").is_dir() {
            out.push(path.clone());
        }
        repo_dirs(&path, out)?;
    }
    Ok(())
}

fn remove_temp_files(dir: &Path) -> io::Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
            removed += 1;
        }
    }
    Ok(removed)
}
