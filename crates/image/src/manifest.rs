//! Manifests as they arrive from registries, layouts and archives: OCI image
//! manifests and indexes, and Docker's schema 2 manifests and manifest lists.
//!
//! The Docker formats have the same JSON shape as their OCI counterparts and
//! differ only in media types, so both parse into `oci_spec`'s types; what this
//! module adds is telling them apart, refusing what we cannot use (schema 1,
//! oversized documents) with a clear reason, and picking one platform from an
//! index.

use bosun_oci::{Digest, ErrorKind};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (its multi-platform index).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Every manifest media type we accept, for `Accept` headers.
pub const ACCEPTED_MANIFEST_TYPES: [&str; 4] = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// Registries commonly refuse manifests above 4 MiB; so do we, before parsing.
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

/// The platform bosun runs images for.
pub const HOST_OS: &str = "linux";
pub const HOST_ARCH: &str = "amd64";

/// A parsed manifest-like document.
#[derive(Debug, Clone)]
pub enum Manifest {
    /// One image: a config and layers.
    Image(Box<ImageManifest>),
    /// Several manifests, usually one per platform.
    Index(Box<ImageIndex>),
}

/// Why a document is not a usable manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is {size} bytes; the limit is {MAX_MANIFEST_SIZE}")]
    TooLarge { size: usize },
    #[error(
        "Docker schema 1 manifests ({0}) are not supported; re-push the image with a current client"
    )]
    SchemaOne(String),
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("manifest is not valid: {0}")]
    Invalid(String),
    #[error("no manifest for {os}/{arch} in the index (it has: {available})")]
    NoMatchingPlatform {
        os: String,
        arch: String,
        available: String,
    },
}

impl ManifestError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ManifestError::NoMatchingPlatform { .. } => ErrorKind::NotFound,
            _ => ErrorKind::Invalid,
        }
    }
}

impl Manifest {
    /// Parses `bytes`. `declared` is the media type the transport claimed
    /// (a `Content-Type` header, a descriptor); the document's own
    /// `mediaType` field wins when both are present and it is set, and when
    /// neither says, the presence of `manifests` means an index.
    pub fn parse(bytes: &[u8], declared: Option<&str>) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(ManifestError::TooLarge { size: bytes.len() });
        }
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Invalid(e.to_string()))?;
        let Some(object) = value.as_object() else {
            return Err(ManifestError::Invalid("not a JSON object".into()));
        };
        if object.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
            return Err(ManifestError::SchemaOne(
                declared.unwrap_or("schemaVersion 1").to_owned(),
            ));
        }
        let own = object.get("mediaType").and_then(|v| v.as_str());
        let media_type = own.or(declared.filter(|d| !d.is_empty() && *d != "application/json"));
        let is_index = match media_type {
            Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => true,
            Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
            Some(t) if t.starts_with("application/vnd.docker.distribution.manifest.v1") => {
                return Err(ManifestError::SchemaOne(t.to_owned()));
            }
            Some(other) => return Err(ManifestError::UnsupportedMediaType(other.to_owned())),
            None => object.contains_key("manifests"),
        };
        let invalid = |e: oci_spec::OciSpecError| ManifestError::Invalid(e.to_string());
        if is_index {
            let index = ImageIndex::from_reader(bytes).map_err(invalid)?;
            Ok(Manifest::Index(Box::new(index)))
        } else {
            let manifest = ImageManifest::from_reader(bytes).map_err(invalid)?;
            Ok(Manifest::Image(Box::new(manifest)))
        }
    }

    /// Every descriptor this document points at: config and layers, or the
    /// index's manifests.
    pub fn references(&self) -> Vec<&Descriptor> {
        match self {
            Manifest::Image(m) => std::iter::once(m.config()).chain(m.layers()).collect(),
            Manifest::Index(i) => i.manifests().iter().collect(),
        }
    }
}

/// The digest of a descriptor, as our own type.
pub fn descriptor_digest(d: &Descriptor) -> Result<Digest, ManifestError> {
    d.digest()
        .to_string()
        .parse()
        .map_err(|e| ManifestError::Invalid(format!("digest {}: {e}", d.digest())))
}

/// Picks the manifest for `os`/`arch` from an index. Entries without a
/// platform are skipped (they are attestations and the like), except in an
/// index of one, which is taken as the image.
pub fn select_platform<'a>(
    index: &'a ImageIndex,
    os: &str,
    arch: &str,
) -> Result<&'a Descriptor, ManifestError> {
    let manifests = index.manifests();
    let found = manifests.iter().find(|d| {
        d.platform()
            .as_ref()
            .is_some_and(|p| p.os().to_string() == os && p.architecture().to_string() == arch)
    });
    if let Some(d) = found {
        return Ok(d);
    }
    if let [only] = manifests.as_slice()
        && only.platform().is_none()
    {
        return Ok(only);
    }
    let available: Vec<String> = manifests
        .iter()
        .filter_map(|d| d.platform().as_ref())
        .map(|p| format!("{}/{}", p.os(), p.architecture()))
        .collect();
    Err(ManifestError::NoMatchingPlatform {
        os: os.to_owned(),
        arch: arch.to_owned(),
        available: if available.is_empty() {
            "no platforms".to_owned()
        } else {
            available.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST_A: &str =
        "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const DIGEST_B: &str =
        "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn docker_manifest() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",
            "config":{{"mediaType":"{DOCKER_CONFIG}","size":10,"digest":"{DIGEST_A}"}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":20,"digest":"{DIGEST_B}"}}]}}"#
        )
    }

    fn index(entries: &[(&str, &str, &str)]) -> String {
        let manifests: Vec<String> = entries
            .iter()
            .map(|(os, arch, digest)| {
                format!(
                    r#"{{"mediaType":"{OCI_MANIFEST}","size":1,"digest":"{digest}","platform":{{"os":"{os}","architecture":"{arch}"}}}}"#
                )
            })
            .collect();
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
            manifests.join(",")
        )
    }

    #[test]
    fn docker_schema2_parses_as_an_image_with_its_references() {
        let m = Manifest::parse(docker_manifest().as_bytes(), None).unwrap();
        let Manifest::Image(image) = &m else {
            panic!("expected an image manifest, got {m:?}")
        };
        assert_eq!(image.layers().len(), 1);
        let refs: Vec<String> = m
            .references()
            .iter()
            .map(|d| descriptor_digest(d).unwrap().to_string())
            .collect();
        assert_eq!(refs, [DIGEST_A, DIGEST_B]);
    }

    #[test]
    fn index_is_recognised_by_media_type_or_shape() {
        let text = index(&[("linux", "amd64", DIGEST_A)]);
        assert!(matches!(
            Manifest::parse(text.as_bytes(), None).unwrap(),
            Manifest::Index(_)
        ));
        let bare = text.replace(&format!(r#""mediaType":"{OCI_INDEX}","#), "");
        assert!(matches!(
            Manifest::parse(bare.as_bytes(), Some("application/json")).unwrap(),
            Manifest::Index(_)
        ));
        assert!(matches!(
            Manifest::parse(bare.as_bytes(), Some(DOCKER_MANIFEST_LIST)).unwrap(),
            Manifest::Index(_)
        ));
    }

    #[test]
    fn selects_linux_amd64_and_names_what_exists_otherwise() {
        let text = index(&[("linux", "arm64", DIGEST_A), ("linux", "amd64", DIGEST_B)]);
        let Manifest::Index(i) = Manifest::parse(text.as_bytes(), None).unwrap() else {
            panic!("not an index")
        };
        let d = select_platform(&i, "linux", "amd64").unwrap();
        assert_eq!(descriptor_digest(d).unwrap().as_str(), DIGEST_B);
        let err = select_platform(&i, "linux", "s390x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no manifest for linux/s390x in the index (it has: linux/arm64, linux/amd64)"
        );
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn refuses_schema1_oversize_garbage_and_unknown_types() {
        let s1 = r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert!(matches!(
            Manifest::parse(s1.as_bytes(), None),
            Err(ManifestError::SchemaOne(_))
        ));
        let big = vec![b' '; MAX_MANIFEST_SIZE + 1];
        assert!(matches!(
            Manifest::parse(&big, None),
            Err(ManifestError::TooLarge { .. })
        ));
        assert!(matches!(
            Manifest::parse(b"[1,2]", None),
            Err(ManifestError::Invalid(_))
        ));
        let other = docker_manifest().replace(DOCKER_MANIFEST, "text/plain");
        let err = Manifest::parse(other.as_bytes(), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unsupported manifest media type "text/plain""#
        );
    }
}
