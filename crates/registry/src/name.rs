//! The typed values of the distribution API, parsed where a request comes in:
//! repository names, tags, manifest references and upload ids.

use std::fmt;
use std::str::FromStr;

use bosun_oci::{Digest, DigestError, ErrorKind};

/// The distribution spec's limit on a repository name (Docker's, which
/// counts the registry host too; a server sees no host, so it is generous).
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// Why a name, tag or reference from a request is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "invalid repository name {0:?} (want lower-case components [a-z0-9] separated by \
         '.', '_', '__' or dashes, joined by '/')"
    )]
    Repository(String),
    #[error("repository name {0:?} is longer than {NAME_MAX} characters")]
    TooLong(String),
    #[error("invalid tag {0:?} (want [A-Za-z0-9_][A-Za-z0-9_.-]*, at most {TAG_MAX} characters)")]
    Tag(String),
    #[error("invalid digest {text:?}: {source}")]
    Digest { text: String, source: DigestError },
}

impl NameError {
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Invalid
    }
}

/// A repository name as the spec's grammar allows it:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
///
/// No component can start with `.` or `_`, so a name maps to a directory path
/// that never escapes its parent and never collides with the store's own
/// `_`-prefixed entries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RepoName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, NameError> {
        if s.len() > NAME_MAX {
            return Err(NameError::TooLong(s.to_owned()));
        }
        if s.split('/').all(valid_component) {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::Repository(s.to_owned()))
        }
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One path component: alphanumeric runs joined by `.`, `_`, `__` or `-+`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let ok = match &b[start..i] {
            b"." | b"_" | b"__" => true,
            sep => sep.iter().all(|&x| x == b'-'),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`. Never starts with `.` or `-`,
/// so it is a safe file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, NameError> {
        let b = s.as_bytes();
        let word = |x: &u8| x.is_ascii_alphanumeric() || *x == b'_';
        let ok = !b.is_empty()
            && b.len() <= TAG_MAX
            && word(&b[0])
            && b[1..].iter().all(|x| word(x) || *x == b'.' || *x == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::Tag(s.to_owned()))
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What `/manifests/<reference>` names: a tag, or a digest (which has a `:`,
/// never allowed in a tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl FromStr for Reference {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, NameError> {
        if s.contains(':') {
            parse_digest(s).map(Reference::Digest)
        } else {
            s.parse().map(Reference::Tag)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

/// Parses a digest from a URL or a header, naming it in the error.
pub(crate) fn parse_digest(s: &str) -> Result<Digest, NameError> {
    s.parse().map_err(|source| NameError::Digest {
        text: s.to_owned(),
        source,
    })
}

/// The id of an upload session: 32 lower-case hex digits of randomness, so an
/// id cannot be guessed and is a safe file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UploadId(String);

impl UploadId {
    pub(crate) fn random() -> Self {
        let mut bytes = [0u8; 16];
        // The kernel's generator cannot fail on Linux once booted; if it ever
        // did, a time-based fallback keeps ids unique (though guessable).
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            bytes = nanos.to_le_bytes();
            bytes[15] ^= std::process::id() as u8;
        }
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses an id from a URL; `None` for anything this server never issued.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| Self(s.to_owned()))
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_follow_the_spec_grammar() {
        for ok in [
            "a",
            "library/busybox",
            "a.b/c_d/e__f/g-h/i---j",
            "0/1/2",
            "registry.example/team/app",
        ] {
            assert!(ok.parse::<RepoName>().is_ok(), "{ok} should be valid");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "a..b", "a___b", "a_-b", "-a", "a-", "_a", ".a", "a/../b",
            "a/./b", "a b", "a:b", "ä",
        ] {
            assert!(
                bad.parse::<RepoName>().is_err(),
                "{bad:?} should be invalid"
            );
        }
        assert!(matches!(
            "a".repeat(256).parse::<RepoName>(),
            Err(NameError::TooLong(_))
        ));
    }

    #[test]
    fn tags_follow_the_spec_grammar() {
        for ok in ["latest", "v1.2.3", "_x", "A-b_c.d", &"a".repeat(128)] {
            assert!(ok.parse::<Tag>().is_ok(), "{ok} should be valid");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "a b", &"a".repeat(129), ".."] {
            assert!(bad.parse::<Tag>().is_err(), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn references_are_tags_or_digests() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert!(matches!(d.parse::<Reference>(), Ok(Reference::Digest(_))));
        assert!(matches!("v1".parse::<Reference>(), Ok(Reference::Tag(_))));
        assert!(matches!(
            "sha256:xyz".parse::<Reference>(),
            Err(NameError::Digest { .. })
        ));
    }

    #[test]
    fn upload_ids_are_random_hex() {
        let a = UploadId::random();
        let b = UploadId::random();
        assert_ne!(a, b);
        assert_eq!(UploadId::parse(a.as_str()), Some(a));
        assert_eq!(UploadId::parse("../../etc/passwd"), None);
        assert_eq!(UploadId::parse(&"A".repeat(32)), None);
    }
}
