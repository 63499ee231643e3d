//! Named volumes (Docker's `local` driver): a directory per volume under
//! `<data>/volumes/<name>/_data`, with its metadata beside it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::fsutil::write_atomic;
use crate::time::now_rfc3339_nano;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Volume {
    pub name: String,
    pub created_at: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Made for one container (image `VOLUME`, `-v /path`): `rm -v` removes it.
    #[serde(default)]
    pub anonymous: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Volumes {
    dir: PathBuf,
    /// Who owns new volumes' `_data` (uid, gid): the mapped root under
    /// `--userns-remap`, so that containers can write to them.
    owner: Option<(u32, u32)>,
}

/// Docker's rule for names of containers and volumes.
pub(crate) fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b.len() <= 255
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl Volumes {
    pub(crate) fn open(dir: &Path, owner: Option<(u32, u32)>) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| EngineError::internal(dir.display(), e))?;
        Ok(Self {
            dir: dir.to_owned(),
            owner,
        })
    }

    /// Where the volume's files are.
    pub(crate) fn data_path(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("_data")
    }

    /// Create `name` if missing (Docker's create is idempotent); returns it.
    pub(crate) fn create(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<Volume> {
        if !valid_name(name) {
            return Err(EngineError::Invalid(format!(
                "invalid volume name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        if let Ok(v) = self.get(name) {
            return Ok(v);
        }
        let root = self.dir.join(name);
        fs::create_dir_all(root.join("_data")).map_err(|e| EngineError::internal(name, e))?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(root.join("_data"), Some(uid), Some(gid))
                .map_err(|e| EngineError::internal(name, e))?;
        }
        let v = Volume {
            name: name.to_owned(),
            created_at: now_rfc3339_nano(),
            labels,
            anonymous,
        };
        let text = serde_json::to_vec(&v).map_err(|e| EngineError::internal(name, e))?;
        // The metadata is written last: a volume without it does not exist.
        write_atomic(&root.join("volume.json"), &text)
            .map_err(|e| EngineError::internal(name, e))?;
        Ok(v)
    }

    pub(crate) fn get(&self, name: &str) -> Result<Volume> {
        let missing = || EngineError::NotFound(format!("get {name}: no such volume"));
        if !valid_name(name) {
            return Err(missing());
        }
        let text = fs::read(self.dir.join(name).join("volume.json")).map_err(|_| missing())?;
        serde_json::from_slice(&text).map_err(|e| EngineError::internal(name, e))
    }

    pub(crate) fn list(&self) -> Vec<Volume> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<Volume> = entries
            .flatten()
            .filter_map(|e| self.get(&e.file_name().to_string_lossy()).ok())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Delete the volume and its files (the caller checks it is unused).
    pub(crate) fn remove(&self, name: &str) -> Result<()> {
        self.get(name)?;
        let root = self.dir.join(name);
        // Metadata first: a half-deleted volume is gone, not corrupt.
        fs::remove_file(root.join("volume.json")).map_err(|e| EngineError::internal(name, e))?;
        fs::remove_dir_all(&root).map_err(|e| EngineError::internal(name, e))
    }

    /// Bytes used by a volume (for `system df` and `volume inspect`).
    pub(crate) fn size(&self, name: &str) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(meta) = fs::symlink_metadata(p) else {
                return 0;
            };
            if !meta.is_dir() {
                return meta.len();
            }
            fs::read_dir(p)
                .map(|d| d.flatten().map(|e| walk(&e.path())).sum())
                .unwrap_or(0)
        }
        walk(&self.data_path(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_is_idempotent_and_remove_removes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let v = Volumes::open(dir.path(), None).expect("open");
        let a = v.create("data", BTreeMap::new(), false).expect("create");
        let b = v.create("data", BTreeMap::new(), false).expect("again");
        assert_eq!(a, b);
        assert!(v.data_path("data").is_dir());
        assert_eq!(v.list().len(), 1);
        v.remove("data").expect("remove");
        assert!(v.get("data").is_err());
        assert!(v.create("../x", BTreeMap::new(), false).is_err());
    }
}
