use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A temporary file next to the blobs, removed on drop unless it was renamed
/// into place. Living in the same directory makes the final rename atomic.
#[derive(Debug)]
pub(crate) struct TempBlob {
    path: PathBuf,
    file: File,
    persisted: bool,
}

/// Temp names start with this, so `list` can skip them and a sweep can find
/// what a crashed writer left behind.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TempBlob {
    pub(crate) fn create(dir: &Path) -> io::Result<Self> {
        let pid = std::process::id();
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("{TEMP_PREFIX}{pid}-{n}"));
            // `create_new` never reuses a name: a stale file left by a crashed
            // process with the same pid is skipped, not clobbered.
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    return Ok(Self {
                        path,
                        file,
                        persisted: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) fn file(&mut self) -> &mut File {
        &mut self.file
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes the content to disk and renames it to `dest`, replacing any file
    /// there (a concurrent writer of the same digest wrote the same bytes).
    pub(crate) fn persist(mut self, dest: &Path) -> io::Result<()> {
        self.file.sync_all()?;
        std::fs::rename(&self.path, dest)?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if !self.persisted {
            // Best effort: a leftover temp file is never visible as a blob.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
