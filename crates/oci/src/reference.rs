//! Image references, `[registry[:port]/]repository[:tag][@digest]`, parsed and
//! normalised as Docker does (`busybox` → `docker.io/library/busybox:latest`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Digest, DigestError, ErrorKind};

/// The registry a reference without one points at.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag a reference with neither tag nor digest gets.
pub const DEFAULT_TAG: &str = "latest";
/// Docker's limit on `registry/repository`.
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;
/// The old name of Docker Hub, still found in scripts and configs.
const LEGACY_REGISTRY: &str = "index.docker.io";

/// Why a string is not a valid image reference. Every message names the reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("image reference is empty")]
    Empty,
    #[error("image reference {0:?} looks like an image id, not a name")]
    ImageId(String),
    #[error("image reference {reference:?}: invalid registry {registry:?}")]
    BadRegistry { reference: String, registry: String },
    #[error("image reference {0:?}: repository has an empty path component")]
    EmptyComponent(String),
    #[error("image reference {reference:?}: repository {component:?} must be lower-case")]
    UpperCase {
        reference: String,
        component: String,
    },
    #[error(
        "image reference {reference:?}: invalid repository component {component:?} \
         (want lower-case letters and digits, separated by '.', '_', '__' or dashes)"
    )]
    BadComponent {
        reference: String,
        component: String,
    },
    #[error("image reference {reference:?}: name {name:?} is longer than 255 characters")]
    TooLong { reference: String, name: String },
    #[error(
        "image reference {reference:?}: invalid tag {tag:?} \
         (want [A-Za-z0-9_][A-Za-z0-9_.-]*, at most 128 characters)"
    )]
    BadTag { reference: String, tag: String },
    #[error("image reference {reference:?}: {source}")]
    BadDigest {
        reference: String,
        source: DigestError,
    },
}

impl ReferenceError {
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Invalid
    }
}

/// A normalised image reference: registry and repository always present, a tag
/// (`latest` when the input had neither tag nor digest), and maybe a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ImageRef {
    /// The registry host, with its port if any (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag; `None` only when the reference pins a digest and names no tag.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, the name tags are stored under.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        // Docker refuses a bare 64-hex string: it would be ambiguous with an image id.
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ReferenceError::ImageId(s.to_owned()));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                let digest = d.parse().map_err(|source| ReferenceError::BadDigest {
                    reference: s.to_owned(),
                    source,
                })?;
                (rest, Some(digest))
            }
            None => (s, None),
        };
        // A tag follows the last '/': a ':' before it belongs to the registry's port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(ReferenceError::BadTag {
                reference: s.to_owned(),
                tag: tag.to_owned(),
            });
        }
        let (registry, remote) = split_registry(name);
        if let Some(registry) = registry
            && !valid_registry(registry)
        {
            return Err(ReferenceError::BadRegistry {
                reference: s.to_owned(),
                registry: registry.to_owned(),
            });
        }
        for component in remote.split('/') {
            check_component(s, component)?;
        }
        let registry = match registry {
            None | Some(LEGACY_REGISTRY) => DEFAULT_REGISTRY,
            Some(r) => r,
        };
        // Official images live under `library/` on Docker Hub only.
        let repository = if registry == DEFAULT_REGISTRY && !remote.contains('/') {
            format!("library/{remote}")
        } else {
            remote.to_owned()
        };
        // Counted on the normalised name, as Docker does: a name that fits only
        // without `docker.io/library/` would print as one that does not parse.
        if registry.len() + 1 + repository.len() > NAME_MAX {
            return Err(ReferenceError::TooLong {
                reference: s.to_owned(),
                name: format!("{registry}/{repository}"),
            });
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Self {
            registry: registry.to_owned(),
            repository,
            tag,
            digest,
        })
    }
}

/// Splits off the registry: the first component is one only if it looks like a
/// host (has a '.' or a ':' port, or is `localhost`), otherwise `a/b` would be
/// ambiguous between a Hub user and a host.
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

/// `host[:port]`, the host being dot-separated labels of letters, digits and
/// inner dashes, or a bracketed IPv6 address.
fn valid_registry(registry: &str) -> bool {
    let (host, port) = if registry.starts_with('[') {
        match registry.find(']') {
            Some(i) => (&registry[..=i], &registry[i + 1..]),
            None => return false,
        }
    } else {
        match registry.find(':') {
            Some(i) => (&registry[..i], &registry[i..]),
            None => (registry, ""),
        }
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok && (valid_ipv6(host) || valid_hostname(host))
}

fn valid_ipv6(host: &str) -> bool {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .is_some_and(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_hexdigit() || b == b':'))
}

fn valid_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// One repository path component: `[a-z0-9]+` runs joined by one `.`, one `_`,
/// `__`, or any number of `-`.
fn check_component(reference: &str, component: &str) -> Result<(), ReferenceError> {
    if component.is_empty() {
        return Err(ReferenceError::EmptyComponent(reference.to_owned()));
    }
    if component.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReferenceError::UpperCase {
            reference: reference.to_owned(),
            component: component.to_owned(),
        });
    }
    let bad = || ReferenceError::BadComponent {
        reference: reference.to_owned(),
        component: component.to_owned(),
    };
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        if i == bytes.len() {
            return Ok(());
        }
        let sep_start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[sep_start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(bad());
        }
    }
}

/// `[\w][\w.-]{0,127}` where `\w` is `[A-Za-z0-9_]`.
fn valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= TAG_MAX
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-')
}

impl TryFrom<String> for ImageRef {
    type Error = ReferenceError;
    fn try_from(s: String) -> Result<Self, ReferenceError> {
        s.parse()
    }
}

impl From<ImageRef> for String {
    fn from(r: ImageRef) -> String {
        r.to_string()
    }
}

impl fmt::Display for ImageRef {
    /// The fully qualified form, which parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
