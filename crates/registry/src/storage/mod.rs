//! Where the registry keeps things, all under one directory:
//!
//! ```text
//! DIR/blobs/sha256/<hex>                       every blob and manifest, once (ContentStore)
//! DIR/repositories/<name>/_blobs/<alg>-<hex>   the repository has this blob (empty file)
//! DIR/repositories/<name>/_manifests/<alg>-<hex>
//!                                              the repository has this manifest; holds its media type
//! DIR/repositories/<name>/_tags/<tag>          holds the digest the tag points at
//! DIR/repositories/<name>/_referrers/<subject alg-hex>/<alg-hex>
//!                                              the descriptor the referrers API lists
//! DIR/uploads/<id>/{repo,data}                 an upload in progress: its repository, its bytes
//! DIR/lock                                     shared-locked by servers, exclusively by gc
//! ```
//!
//! Blobs are shared by all repositories; a repository sees only those it links
//! to, so a name grants access only to what was pushed (or mounted) under it.
//! Every metadata file is written by temp file + fsync + rename
//! ([`fsutil::write_atomic`]), and a link is written only after its blob is
//! durable, so a crash leaves links to complete blobs, at worst a blob without
//! a link (garbage collection removes it).

mod error;
pub(crate) mod fsutil;
mod gc;
mod uploads;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use bosun_image::ContentStore;
use bosun_image::manifest::{Manifest, descriptor_digest};
use bosun_oci::Digest;
use oci_spec::image::Descriptor;
use serde::{Deserialize, Serialize};

pub use error::StorageError;
pub use gc::GcReport;

use crate::name::{Reference, RepoName, Tag};
use fsutil::{list_names, read_if_exists, remove_if_exists, write_atomic};

type Result<T, E = StorageError> = std::result::Result<T, E>;

/// The registry's directory; see the module documentation for its layout.
#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
    content: ContentStore,
}

/// Held by a running server; [`Storage::gc`] refuses to run while one exists.
#[derive(Debug)]
pub struct ServerLock {
    _file: File,
}

/// A manifest as stored: its bytes exactly as pushed.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// What a manifest push did.
#[derive(Debug, Clone)]
pub struct PutManifest {
    pub digest: Digest,
    /// The manifest's `subject`, which the server echoes in `OCI-Subject`.
    pub subject: Option<Digest>,
}

/// One entry of the referrers API's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Referrer {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Storage {
    /// Opens (creating if needed) the registry directory `root`.
    pub fn open(root: &Path) -> Result<Self> {
        let content = ContentStore::new(root)?;
        for dir in [root.join("repositories"), root.join("uploads")] {
            fs::create_dir_all(&dir).map_err(|e| StorageError::io("create", &dir, e))?;
        }
        Ok(Self {
            root: root.to_owned(),
            content,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    /// Announces a running server: [`Storage::gc`] fails while any is held.
    /// Several servers may share a directory.
    pub fn lock_shared(&self) -> Result<ServerLock> {
        let (file, path) = self.lock_file()?;
        file.lock_shared()
            .map_err(|e| StorageError::io("lock", &path, e))?;
        Ok(ServerLock { _file: file })
    }

    fn lock_file(&self) -> Result<(File, PathBuf)> {
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StorageError::io("open", &path, e))?;
        Ok((file, path))
    }

    fn repo_dir(&self, repo: &RepoName) -> PathBuf {
        // Safe as a path: the grammar allows no empty, `.` or `..` component.
        self.root.join("repositories").join(repo.as_str())
    }

    fn blob_link(&self, repo: &RepoName, digest: &Digest) -> PathBuf {
        self.repo_dir(repo).join("_blobs").join(link_name(digest))
    }

    fn manifest_link(&self, repo: &RepoName, digest: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_manifests")
            .join(link_name(digest))
    }

    fn tag_path(&self, repo: &RepoName, tag: &Tag) -> PathBuf {
        self.repo_dir(repo).join("_tags").join(tag.as_str())
    }

    fn referrers_dir(&self, repo: &RepoName, subject: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_referrers")
            .join(link_name(subject))
    }

    /// Whether `repo` exists (something was ever pushed to it).
    pub fn has_repository(&self, repo: &RepoName) -> bool {
        self.repo_dir(repo).is_dir()
    }

    // ---- blobs ----

    /// The size of a blob `repo` has (a manifest counts: it is a blob too).
    pub fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        let linked =
            self.blob_link(repo, digest).exists() || self.manifest_link(repo, digest).exists();
        if !linked {
            return Err(self.blob_unknown(repo, digest));
        }
        match self.content.size(digest) {
            Ok(size) => Ok(size),
            // A link whose blob is gone (an interrupted gc): unknown, not an error.
            Err(bosun_image::StoreError::NotFound(_)) => Err(self.blob_unknown(repo, digest)),
            Err(e) => Err(e.into()),
        }
    }

    fn blob_unknown(&self, repo: &RepoName, digest: &Digest) -> StorageError {
        StorageError::BlobUnknown {
            repo: repo.clone(),
            digest: digest.clone(),
        }
    }

    /// Makes a stored blob visible in `repo`.
    pub fn link_blob(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        let path = self.blob_link(repo, digest);
        if path.exists() {
            return Ok(());
        }
        write_atomic(&path, b"").map_err(|e| StorageError::io("write", &path, e))
    }

    /// Removes a blob from `repo` (the bytes stay until gc).
    pub fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        let path = self.blob_link(repo, digest);
        if remove_if_exists(&path).map_err(|e| StorageError::io("remove", &path, e))? {
            Ok(())
        } else {
            Err(self.blob_unknown(repo, digest))
        }
    }

    /// Links a blob of `from` into `repo` without moving any bytes; `false`
    /// when `from` does not have it.
    pub fn mount_blob(&self, repo: &RepoName, from: &RepoName, digest: &Digest) -> Result<bool> {
        match self.blob_size(from, digest) {
            Ok(_) => {
                self.link_blob(repo, digest)?;
                Ok(true)
            }
            Err(StorageError::BlobUnknown { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    // ---- manifests ----

    /// Stores a pushed manifest byte for byte, after checking that it parses,
    /// that a digest reference matches it, and that everything it references
    /// is in `repo`; then links it, records it as a referrer of its subject,
    /// and points the tag (if the reference is one) at it.
    pub fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        bytes: &[u8],
        content_type: Option<&str>,
    ) -> Result<PutManifest> {
        let manifest = Manifest::parse(bytes, content_type)?;
        let media_type = stored_media_type(&manifest, content_type)?;
        let digest = bosun_image::sha256_of(bytes);
        if let Reference::Digest(expected) = reference
            && *expected != digest
        {
            return Err(StorageError::DigestInvalid {
                expected: expected.clone(),
                actual: digest,
            });
        }
        self.check_references(repo, &manifest)?;
        let stored = self.content.put(bytes)?;
        debug_assert_eq!(stored, digest);
        let link = self.manifest_link(repo, &digest);
        write_atomic(&link, media_type.as_bytes())
            .map_err(|e| StorageError::io("write", &link, e))?;
        let subject = match subject_of(&manifest) {
            Some(subject) => {
                let subject = descriptor_digest(subject)?;
                let entry = referrer_entry(&manifest, &media_type, &digest, bytes.len());
                let path = self.referrers_dir(repo, &subject).join(link_name(&digest));
                let json = serde_json::to_vec(&entry).expect("a referrer serialises");
                write_atomic(&path, &json).map_err(|e| StorageError::io("write", &path, e))?;
                Some(subject)
            }
            None => None,
        };
        if let Reference::Tag(tag) = reference {
            let path = self.tag_path(repo, tag);
            write_atomic(&path, digest.as_str().as_bytes())
                .map_err(|e| StorageError::io("write", &path, e))?;
        }
        Ok(PutManifest { digest, subject })
    }

    /// Everything an image manifest references must be a blob of `repo`, of
    /// the size the descriptor says; an index's entries must be manifests of
    /// `repo`. A layer the image spec lets live elsewhere (non-distributable,
    /// with `urls`) is exempt. The subject is not checked: the spec lets a
    /// referrer arrive before what it refers to.
    fn check_references(&self, repo: &RepoName, manifest: &Manifest) -> Result<()> {
        let mut missing = Vec::new();
        for d in manifest.references() {
            let digest = descriptor_digest(d)?;
            let size = match manifest {
                Manifest::Image(_) if is_foreign(d) => continue,
                Manifest::Image(_) => self.blob_size(repo, &digest),
                Manifest::Index(_) => self.manifest_size(repo, &digest),
            };
            match size {
                Ok(size) if size == d.size() => {}
                Ok(size) => {
                    return Err(StorageError::ManifestInvalid(format!(
                        "descriptor of {digest} says {} bytes, the blob has {size}",
                        d.size()
                    )));
                }
                Err(StorageError::BlobUnknown { .. } | StorageError::ManifestUnknown { .. }) => {
                    missing.push(digest)
                }
                Err(e) => return Err(e),
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(StorageError::ManifestBlobUnknown {
                repo: repo.clone(),
                missing,
            })
        }
    }

    fn manifest_size(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        if !self.manifest_link(repo, digest).exists() {
            return Err(self.manifest_unknown(repo, digest.as_str()));
        }
        self.content.size(digest).map_err(|e| match e {
            bosun_image::StoreError::NotFound(_) => self.manifest_unknown(repo, digest.as_str()),
            e => e.into(),
        })
    }

    fn manifest_unknown(&self, repo: &RepoName, reference: &str) -> StorageError {
        StorageError::ManifestUnknown {
            repo: repo.clone(),
            reference: reference.to_owned(),
        }
    }

    /// The digest a reference resolves to in `repo`.
    pub fn resolve(&self, repo: &RepoName, reference: &Reference) -> Result<Digest> {
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(tag) => {
                let path = self.tag_path(repo, tag);
                let bytes = read_if_exists(&path)
                    .map_err(|e| StorageError::io("read", &path, e))?
                    .ok_or_else(|| self.manifest_unknown(repo, tag.as_str()))?;
                let text = String::from_utf8_lossy(&bytes);
                text.trim().parse().map_err(|_| {
                    StorageError::io(
                        "parse",
                        &path,
                        io::Error::new(io::ErrorKind::InvalidData, "not a digest"),
                    )
                })?
            }
        };
        Ok(digest)
    }

    /// A manifest of `repo`, verified against its digest as it is read.
    pub fn manifest(&self, repo: &RepoName, reference: &Reference) -> Result<StoredManifest> {
        let digest = self.resolve(repo, reference)?;
        let link = self.manifest_link(repo, &digest);
        let media_type = read_if_exists(&link)
            .map_err(|e| StorageError::io("read", &link, e))?
            .ok_or_else(|| self.manifest_unknown(repo, &reference.to_string()))?;
        let bytes = match self.content.get(&digest) {
            Ok(b) => b,
            Err(bosun_image::StoreError::NotFound(_)) => {
                return Err(self.manifest_unknown(repo, &reference.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(StoredManifest {
            digest,
            media_type: String::from_utf8_lossy(&media_type).into_owned(),
            bytes,
        })
    }

    /// Deletes a manifest from `repo` (with the tags that point at it and its
    /// referrer entry), or only a tag.
    pub fn delete_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<()> {
        let digest = match reference {
            Reference::Tag(tag) => {
                let path = self.tag_path(repo, tag);
                return if remove_if_exists(&path)
                    .map_err(|e| StorageError::io("remove", &path, e))?
                {
                    Ok(())
                } else {
                    Err(self.manifest_unknown(repo, tag.as_str()))
                };
            }
            Reference::Digest(d) => d,
        };
        let stored = self.manifest(repo, reference)?;
        // Tags first: a crash half way leaves a manifest without tags, never
        // a tag without its manifest.
        for tag in self.tags(repo)? {
            let Ok(tag) = tag.parse::<Tag>() else {
                continue;
            };
            if self
                .resolve(repo, &Reference::Tag(tag.clone()))
                .ok()
                .as_ref()
                == Some(digest)
            {
                let path = self.tag_path(repo, &tag);
                remove_if_exists(&path).map_err(|e| StorageError::io("remove", &path, e))?;
            }
        }
        if let Ok(manifest) = Manifest::parse(&stored.bytes, Some(&stored.media_type))
            && let Some(subject) = subject_of(&manifest)
            && let Ok(subject) = descriptor_digest(subject)
        {
            let path = self.referrers_dir(repo, &subject).join(link_name(digest));
            remove_if_exists(&path).map_err(|e| StorageError::io("remove", &path, e))?;
        }
        let link = self.manifest_link(repo, digest);
        remove_if_exists(&link).map_err(|e| StorageError::io("remove", &link, e))?;
        Ok(())
    }

    // ---- listings ----

    /// The tags of `repo`, sorted.
    pub fn tags(&self, repo: &RepoName) -> Result<Vec<String>> {
        if !self.has_repository(repo) {
            return Err(StorageError::NameUnknown(repo.clone()));
        }
        let dir = self.repo_dir(repo).join("_tags");
        list_names(&dir).map_err(|e| StorageError::io("list", &dir, e))
    }

    /// Every repository that has a manifest, sorted.
    pub fn repositories(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let top = self.root.join("repositories");
        walk_repositories(&top, "", &mut out).map_err(|e| StorageError::io("list", &top, e))?;
        out.sort();
        Ok(out)
    }

    /// The manifests of `repo` whose subject is `subject`, optionally only
    /// those of one artifact type, sorted by digest.
    pub fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let dir = self.referrers_dir(repo, subject);
        let mut out = Vec::new();
        for name in list_names(&dir).map_err(|e| StorageError::io("list", &dir, e))? {
            let path = dir.join(&name);
            let Some(bytes) =
                read_if_exists(&path).map_err(|e| StorageError::io("read", &path, e))?
            else {
                continue;
            };
            let entry: Referrer = serde_json::from_slice(&bytes).map_err(|e| {
                StorageError::io(
                    "parse",
                    &path,
                    io::Error::new(io::ErrorKind::InvalidData, e),
                )
            })?;
            if artifact_type.is_none_or(|t| entry.artifact_type.as_deref() == Some(t)) {
                out.push(entry);
            }
        }
        Ok(out)
    }

    /// The manifests `repo` links to, for gc.
    fn manifest_digests(&self, repo_dir: &Path) -> io::Result<Vec<Digest>> {
        Ok(list_names(&repo_dir.join("_manifests"))?
            .iter()
            .filter_map(|n| parse_link_name(n))
            .collect())
    }
}

/// `sha256:abc…` → `sha256-abc…`: a file name (digests have no `/`).
fn link_name(digest: &Digest) -> String {
    format!("{}-{}", digest.algorithm().as_str(), digest.hex())
}

fn parse_link_name(name: &str) -> Option<Digest> {
    let (alg, hex) = name.split_once('-')?;
    format!("{alg}:{hex}").parse().ok()
}

/// Repositories are the directories that have a `_manifests` directory;
/// names cannot start with `_` or `.`, so those entries are never descended.
fn walk_repositories(dir: &Path, prefix: &str, out: &mut Vec<String>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.starts_with(['_', '.']) || !entry.file_type()?.is_dir() {
            continue;
        }
        let full = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let path = entry.path();
        if path.join("_manifests").is_dir() {
            out.push(full.clone());
        }
        walk_repositories(&path, &full, out)?;
    }
    Ok(())
}

/// The media type a manifest is served with: what the client declared when
/// it is a manifest type, else what the document says, else its shape. A
/// declared type that contradicts the document's own is refused.
fn stored_media_type(manifest: &Manifest, declared: Option<&str>) -> Result<String> {
    let own = match manifest {
        Manifest::Image(m) => m.media_type().as_ref().map(|t| t.to_string()),
        Manifest::Index(i) => i.media_type().as_ref().map(|t| t.to_string()),
    };
    let declared = declared
        .map(|d| d.split(';').next().unwrap_or(d).trim())
        .filter(|d| bosun_image::manifest::ACCEPTED_MANIFEST_TYPES.contains(d));
    match (declared, own) {
        (Some(d), Some(o)) if d != o => Err(StorageError::ManifestInvalid(format!(
            "Content-Type {d} does not match the manifest's mediaType {o}"
        ))),
        (Some(d), _) => Ok(d.to_owned()),
        (None, Some(o)) => Ok(o),
        (None, None) => Ok(match manifest {
            Manifest::Image(_) => bosun_image::manifest::OCI_MANIFEST.to_owned(),
            Manifest::Index(_) => bosun_image::manifest::OCI_INDEX.to_owned(),
        }),
    }
}

fn subject_of(manifest: &Manifest) -> Option<&Descriptor> {
    match manifest {
        Manifest::Image(m) => m.subject().as_ref(),
        Manifest::Index(i) => i.subject().as_ref(),
    }
}

/// The spec's rule: a manifest's `artifactType`, else its config's media
/// type; an index's `artifactType` or none.
fn referrer_entry(manifest: &Manifest, media_type: &str, digest: &Digest, size: usize) -> Referrer {
    let (artifact_type, annotations) = match manifest {
        Manifest::Image(m) => (
            m.artifact_type()
                .as_ref()
                .map(|t| t.to_string())
                .or_else(|| Some(m.config().media_type().to_string())),
            m.annotations().clone(),
        ),
        Manifest::Index(i) => (
            i.artifact_type().as_ref().map(|t| t.to_string()),
            i.annotations().clone(),
        ),
    };
    Referrer {
        media_type: media_type.to_owned(),
        digest: digest.to_string(),
        size: size as u64,
        artifact_type,
        annotations: annotations.filter(|a| !a.is_empty()).map(|a| {
            a.into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect()
        }),
    }
}

/// Layers the image spec allows to be fetched from elsewhere (`urls`), which
/// a registry need not hold.
fn is_foreign(d: &Descriptor) -> bool {
    let t = d.media_type().to_string();
    d.urls().as_ref().is_some_and(|u| !u.is_empty())
        && (t.contains("nondistributable") || t.contains(".foreign."))
}

#[cfg(test)]
mod tests;
