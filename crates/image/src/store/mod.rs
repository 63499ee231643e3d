//! The content store: blobs addressed by their sha256 digest, one file each
//! under `<root>/blobs/sha256/<hex>` (the OCI image layout's shape).
//!
//! Crash safety: content is written to a temp file in the same directory,
//! fsync'd, checked against its digest, and only then renamed into place, and
//! the directory is fsync'd after the rename. A crash leaves either no blob or
//! a complete one under a digest name, at worst plus a `.tmp-*` file, which is
//! never listed or served. Several processes may write at once: two writers of
//! the same digest write the same bytes, and rename replaces atomically.

mod error;
mod temp;
mod verify;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bosun_oci::{Algorithm, Digest};

pub use error::StoreError;
pub use verify::VerifyingReader;

use crate::hash::Hasher;
use temp::{TEMP_PREFIX, TempBlob};

const COPY_BUFFER: usize = 64 * 1024;
/// Adopted files are large uploads, read once from the page cache.
const ADOPT_BUFFER: usize = 1024 * 1024;

/// A directory of blobs, each stored under its sha256 digest.
#[derive(Debug, Clone)]
pub struct ContentStore {
    // `<root>/blobs/sha256`
    dir: PathBuf,
}

impl ContentStore {
    /// Opens the store under `root`, creating `<root>/blobs/sha256` if needed.
    pub fn new(root: &Path) -> Result<Self, StoreError> {
        let dir = root.join("blobs").join(Algorithm::Sha256.as_str());
        fs::create_dir_all(&dir).map_err(|e| StoreError::io("create", &dir, e))?;
        Ok(Self { dir })
    }

    /// Stores `bytes` and returns their digest.
    pub fn put(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        self.ingest(bytes, None).map(|(digest, _)| digest)
    }

    /// Streams `reader` into the store, hashing on the way, and returns the
    /// digest and size. With `expected`, content that hashes differently is
    /// discarded and nothing is stored.
    pub fn ingest(
        &self,
        mut reader: impl Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64), StoreError> {
        if let Some(expected) = expected {
            check_algorithm(expected)?;
        }
        let mut writer = self.writer()?;
        let mut buf = vec![0u8; COPY_BUFFER];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::Source(e)),
            };
            writer
                .write_all(&buf[..n])
                .map_err(|e| StoreError::io("write", writer.temp.path(), e))?;
        }
        writer.commit(expected)
    }

    /// Moves a complete file into the store under its digest without copying
    /// it, for content assembled elsewhere over time (a registry upload that
    /// survives restarts). The file is hashed, checked against `expected`,
    /// fsync'd and renamed into place, so it must be on the store's file
    /// system, and nothing may write to it meanwhile. On a mismatch (or any
    /// error) nothing is stored and the file stays where it was.
    pub fn adopt_file(
        &self,
        path: &Path,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64), StoreError> {
        if let Some(expected) = expected {
            check_algorithm(expected)?;
        }
        let mut file = File::open(path).map_err(|e| StoreError::io("open", path, e))?;
        let mut hasher = Hasher::default();
        let mut buf = vec![0u8; ADOPT_BUFFER];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => hasher.update(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::io("read", path, e)),
            }
        }
        let size = hasher.len();
        let digest = hasher.finish();
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual: digest,
            });
        }
        file.sync_all()
            .map_err(|e| StoreError::io("sync", path, e))?;
        let dest = self.blob_path(&digest);
        // Replaces a blob of the same digest a concurrent writer stored: same bytes.
        fs::rename(path, &dest).map_err(|e| StoreError::io("store", &dest, e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError::io("sync", &self.dir, e))?;
        Ok((digest, size))
    }

    /// A writer for one new blob, for producers that push bytes (a gzip
    /// encoder, an HTTP body). Nothing is visible until [`BlobWriter::commit`];
    /// dropping it uncommitted removes its temp file.
    pub fn writer(&self) -> Result<BlobWriter, StoreError> {
        let temp =
            TempBlob::create(&self.dir).map_err(|e| StoreError::io("create", &self.dir, e))?;
        Ok(BlobWriter {
            temp,
            hasher: Hasher::default(),
            dir: self.dir.clone(),
        })
    }

    /// Removes temp files of writers that died, if older than `min_age`
    /// (pass zero only when no writer can be running). Returns how many.
    pub fn remove_temp_files(&self, min_age: std::time::Duration) -> Result<usize, StoreError> {
        let entries = fs::read_dir(&self.dir).map_err(|e| StoreError::io("list", &self.dir, e))?;
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("list", &self.dir, e))?;
            if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                continue;
            }
            let old_enough = entry
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| t.elapsed().unwrap_or_default() >= min_age)
                .unwrap_or(false);
            if old_enough && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Opens a blob for streaming; the reader fails at its end if the content
    /// on disk no longer matches `digest`.
    pub fn open(&self, digest: &Digest) -> Result<VerifyingReader<File>, StoreError> {
        check_algorithm(digest)?;
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(|e| not_found_or(digest, "open", &path, e))?;
        Ok(VerifyingReader::new(file, digest.clone()))
    }

    /// Reads a whole blob, verified against its digest.
    pub fn get(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        check_algorithm(digest)?;
        let path = self.blob_path(digest);
        let bytes = fs::read(&path).map_err(|e| not_found_or(digest, "read", &path, e))?;
        let actual = crate::sha256_of(&bytes);
        if actual != *digest {
            return Err(StoreError::Corrupt {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    pub fn exists(&self, digest: &Digest) -> Result<bool, StoreError> {
        match self.size(digest) {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The size in bytes of a stored blob.
    pub fn size(&self, digest: &Digest) -> Result<u64, StoreError> {
        check_algorithm(digest)?;
        let path = self.blob_path(digest);
        let meta =
            fs::symlink_metadata(&path).map_err(|e| not_found_or(digest, "stat", &path, e))?;
        Ok(meta.len())
    }

    pub fn delete(&self, digest: &Digest) -> Result<(), StoreError> {
        check_algorithm(digest)?;
        let path = self.blob_path(digest);
        fs::remove_file(&path).map_err(|e| not_found_or(digest, "remove", &path, e))
    }

    /// Every stored blob, sorted. Temp files of writes in progress (or of
    /// crashed writers) and files whose names are not digests are skipped.
    pub fn list(&self) -> Result<Vec<Digest>, StoreError> {
        let entries = fs::read_dir(&self.dir).map_err(|e| StoreError::io("list", &self.dir, e))?;
        let mut digests = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("list", &self.dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TEMP_PREFIX) {
                continue;
            }
            if let Ok(digest) = format!("sha256:{name}").parse::<Digest>() {
                digests.push(digest);
            }
        }
        digests.sort();
        Ok(digests)
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        // Safe as a file name: a parsed digest's hex part is `[0-9a-f]{64}`.
        self.dir.join(digest.hex())
    }
}

/// One blob being written; see [`ContentStore::writer`].
#[derive(Debug)]
pub struct BlobWriter {
    temp: TempBlob,
    hasher: Hasher,
    dir: PathBuf,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes the blob visible under its digest, after checking it against
    /// `expected` (on a mismatch nothing is stored).
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<(Digest, u64), StoreError> {
        if let Some(expected) = expected {
            check_algorithm(expected)?;
        }
        self.temp
            .file()
            .flush()
            .map_err(|e| StoreError::io("write", self.temp.path(), e))?;
        let size = self.hasher.len();
        let digest = self.hasher.finish();
        if let Some(expected) = expected
            && *expected != digest
        {
            // Dropping `temp` removes it.
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual: digest,
            });
        }
        // Safe as a file name: a digest's hex part is `[0-9a-f]{64}`.
        let dest = self.dir.join(digest.hex());
        self.temp
            .persist(&dest)
            .map_err(|e| StoreError::io("store", &dest, e))?;
        // The rename is durable only once the directory entry is on disk.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError::io("sync", &self.dir, e))?;
        Ok((digest, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.temp.file().write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.temp.file().flush()
    }
}

/// The store keeps sha256 blobs only (the only algorithm in use in practice).
fn check_algorithm(digest: &Digest) -> Result<(), StoreError> {
    match digest.algorithm() {
        Algorithm::Sha256 => Ok(()),
        Algorithm::Sha512 => Err(StoreError::Algorithm(digest.clone())),
    }
}

fn not_found_or(digest: &Digest, op: &'static str, path: &Path, e: io::Error) -> StoreError {
    if e.kind() == io::ErrorKind::NotFound {
        StoreError::NotFound(digest.clone())
    } else {
        StoreError::io(op, path, e)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod adopt_tests {
    use super::*;

    #[test]
    fn adopt_file_moves_verified_content_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::new(&dir.path().join("store")).unwrap();
        let upload = dir.path().join("upload");
        fs::write(&upload, b"layer bytes").unwrap();
        let expected = crate::sha256_of(b"layer bytes");
        let (digest, size) = store.adopt_file(&upload, Some(&expected)).unwrap();
        assert_eq!((digest.clone(), size), (expected, 11));
        assert!(!upload.exists(), "the file was moved, not copied");
        assert_eq!(store.get(&digest).unwrap(), b"layer bytes");
    }

    #[test]
    fn adopt_file_with_the_wrong_digest_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::new(&dir.path().join("store")).unwrap();
        let upload = dir.path().join("upload");
        fs::write(&upload, b"tampered").unwrap();
        let claimed = crate::sha256_of(b"original");
        let err = store.adopt_file(&upload, Some(&claimed)).unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
        assert!(upload.exists(), "the caller keeps the file");
        assert!(store.list().unwrap().is_empty());
    }
}
