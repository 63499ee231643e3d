//! Uploads in progress. Each is a directory `uploads/<id>` holding the
//! repository it belongs to and the bytes received so far, so an upload
//! survives a dropped connection and a restart of the server: its state is
//! the length of its data file. Completing it hashes that file and renames it
//! into the content store ([`ContentStore::adopt_file`]), so a blob is
//! written to disk once.
//!
//! [`ContentStore::adopt_file`]: bosun_image::ContentStore::adopt_file

use std::fs::{self, File, OpenOptions};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bosun_oci::Digest;

use super::fsutil::{self, sync_dir, temp_name};
use super::{Result, Storage, StorageError};
use crate::name::{RepoName, UploadId};

impl Storage {
    fn upload_dir(&self, id: &UploadId) -> PathBuf {
        self.root.join("uploads").join(id.as_str())
    }

    /// Starts an upload to `repo`. The directory is assembled under a temp
    /// name and renamed, so an upload either exists whole or not at all.
    pub fn start_upload(&self, repo: &RepoName) -> Result<UploadId> {
        let id = UploadId::random();
        let uploads = self.root.join("uploads");
        let temp = uploads.join(temp_name());
        let result = (|| {
            fs::create_dir(&temp)?;
            fs::write(temp.join("repo"), repo.as_str())?;
            File::create(temp.join("data"))?;
            fs::rename(&temp, uploads.join(id.as_str()))?;
            sync_dir(&uploads)
        })();
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&temp);
            return Err(StorageError::io("create upload in", &uploads, e));
        }
        Ok(id)
    }

    /// The data file of an upload of `repo`, for appending, and how many
    /// bytes it holds.
    pub fn open_upload(&self, repo: &RepoName, id: &UploadId) -> Result<(File, u64)> {
        let data = self.check_upload(repo, id)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&data)
            .map_err(|e| self.upload_io_error(repo, id, "open", &data, e))?;
        let len = file
            .metadata()
            .map_err(|e| StorageError::io("stat", &data, e))?
            .len();
        Ok((file, len))
    }

    /// How many bytes an upload of `repo` has received.
    pub fn upload_len(&self, repo: &RepoName, id: &UploadId) -> Result<u64> {
        let data = self.check_upload(repo, id)?;
        fs::metadata(&data)
            .map(|m| m.len())
            .map_err(|e| self.upload_io_error(repo, id, "stat", &data, e))
    }

    /// Verifies the upload against `expected`, moves its bytes into the
    /// content store and links the blob into `repo`. On a digest mismatch the
    /// upload is discarded (nothing is stored) and the error says both digests.
    pub fn finish_upload(
        &self,
        repo: &RepoName,
        id: &UploadId,
        expected: &Digest,
    ) -> Result<(Digest, u64)> {
        let data = self.check_upload(repo, id)?;
        match self.content.adopt_file(&data, Some(expected)) {
            Ok((digest, size)) => {
                self.link_blob(repo, &digest)?;
                self.remove_upload_dir(id)?;
                Ok((digest, size))
            }
            Err(e) => {
                let e = StorageError::from(e);
                if matches!(e, StorageError::DigestInvalid { .. }) {
                    self.remove_upload_dir(id)?;
                }
                Err(e)
            }
        }
    }

    /// Discards an upload.
    pub fn cancel_upload(&self, repo: &RepoName, id: &UploadId) -> Result<()> {
        self.check_upload(repo, id)?;
        self.remove_upload_dir(id)
    }

    /// Removes uploads nobody has touched for `max_age`; returns how many.
    pub fn remove_stale_uploads(&self, max_age: Duration) -> Result<usize> {
        let uploads = self.root.join("uploads");
        let mut removed = 0;
        let entries = fs::read_dir(&uploads).map_err(|e| StorageError::io("list", &uploads, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io("list", &uploads, e))?;
            let path = entry.path();
            // The data file's mtime moves with every chunk; the directory's does not.
            let touched = fs::metadata(path.join("data"))
                .or_else(|_| entry.metadata())
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            if touched.elapsed().unwrap_or_default() >= max_age && fs::remove_dir_all(&path).is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn check_upload(&self, repo: &RepoName, id: &UploadId) -> Result<PathBuf> {
        let dir = self.upload_dir(id);
        let owner = fsutil::read_if_exists(&dir.join("repo"))
            .map_err(|e| StorageError::io("read", dir.join("repo"), e))?;
        // An upload is reachable only through the repository it was started in.
        match owner {
            Some(owner) if owner == repo.as_str().as_bytes() => Ok(dir.join("data")),
            _ => Err(StorageError::UploadUnknown {
                repo: repo.clone(),
                id: id.clone(),
            }),
        }
    }

    fn upload_io_error(
        &self,
        repo: &RepoName,
        id: &UploadId,
        op: &'static str,
        path: &std::path::Path,
        e: std::io::Error,
    ) -> StorageError {
        // Finished or cancelled by a concurrent request since the check.
        if e.kind() == std::io::ErrorKind::NotFound {
            StorageError::UploadUnknown {
                repo: repo.clone(),
                id: id.clone(),
            }
        } else {
            StorageError::io(op, path, e)
        }
    }

    fn remove_upload_dir(&self, id: &UploadId) -> Result<()> {
        let dir = self.upload_dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io("remove", &dir, e)),
        }
    }
}
