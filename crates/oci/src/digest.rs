use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ErrorKind;

/// A digest algorithm registered by the OCI image spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The name used in the `algorithm:hex` form.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the lower-case hex encoding of a digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a valid digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest {0:?} is not of the form algorithm:hex")]
    NoAlgorithm(String),
    #[error("digest {digest:?} uses unsupported algorithm {algorithm:?} (want sha256 or sha512)")]
    UnknownAlgorithm { digest: String, algorithm: String },
    #[error("digest {digest:?} has {got} hex characters, {algorithm} needs {want}")]
    BadLength {
        digest: String,
        algorithm: Algorithm,
        got: usize,
        want: usize,
    },
    #[error("digest {0:?} must be lower-case hex after the colon")]
    BadHex(String),
}

impl DigestError {
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Invalid
    }
}

/// A content digest, `sha256:<64 hex>` or `sha512:<128 hex>`, always lower-case.
///
/// Only the canonical form is accepted, so two equal contents always have equal
/// `Digest` values and the string can name a file without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest {
    algorithm: Algorithm,
    // The whole `algorithm:hex` string, kept so `as_str` needs no allocation.
    text: String,
}

impl Digest {
    /// The digest of a sha256 hash value (the hashing itself lives with the IO).
    pub fn from_sha256(hash: [u8; 32]) -> Self {
        Self {
            algorithm: Algorithm::Sha256,
            text: format!("sha256:{}", hex::encode(hash)),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lower-case hex part, after the colon.
    pub fn hex(&self) -> &str {
        &self.text[self.algorithm.as_str().len() + 1..]
    }

    /// The `algorithm:hex` form.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, DigestError> {
        let Some((name, hex)) = s.split_once(':') else {
            return Err(DigestError::NoAlgorithm(s.to_owned()));
        };
        let algorithm = match name {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => {
                return Err(DigestError::UnknownAlgorithm {
                    digest: s.to_owned(),
                    algorithm: name.to_owned(),
                });
            }
        };
        if hex.len() != algorithm.hex_len() {
            return Err(DigestError::BadLength {
                digest: s.to_owned(),
                algorithm,
                got: hex.len(),
                want: algorithm.hex_len(),
            });
        }
        // Upper-case hex is refused rather than folded: registries compare digests
        // as strings, so a folded value would name different content upstream.
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(DigestError::BadHex(s.to_owned()));
        }
        Ok(Self {
            algorithm,
            text: s.to_owned(),
        })
    }
}

impl TryFrom<String> for Digest {
    type Error = DigestError;
    fn try_from(s: String) -> Result<Self, DigestError> {
        s.parse()
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.text
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints_sha256_and_sha512() {
        let d: Digest = EMPTY_SHA256.parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.hex().len(), 64);
        assert_eq!(d.to_string(), EMPTY_SHA256);
        let long = format!("sha512:{}", "ab".repeat(64));
        let d: Digest = long.parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha512);
        assert_eq!(d.as_str(), long);
    }

    #[test]
    fn from_sha256_encodes_lower_hex() {
        let mut hash = [0u8; 32];
        hash[0] = 0xAB;
        hash[31] = 0x01;
        let d = Digest::from_sha256(hash);
        assert_eq!(d.hex(), format!("ab{}01", "00".repeat(30)));
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn rejects_malformed_digests() {
        let upper = EMPTY_SHA256.to_uppercase().replace("SHA256", "sha256");
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "not of the form"),
            ("e3b0c442".into(), "not of the form"),
            (
                "md5:d41d8cd98f00b204e9800998ecf8427e".into(),
                "unsupported algorithm \"md5\"",
            ),
            ("sha256:abc".into(), "has 3 hex characters, sha256 needs 64"),
            (format!("sha512:{}", "a".repeat(64)), "sha512 needs 128"),
            (upper, "lower-case hex"),
            (format!("sha256:{}", "g".repeat(64)), "lower-case hex"),
            (
                format!("SHA256:{}", "a".repeat(64)),
                "unsupported algorithm",
            ),
            (format!("sha256:{} ", "a".repeat(64)), "65 hex characters"),
        ];
        for (input, want) in &cases {
            let err = input.parse::<Digest>().unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(want), "{input:?}: {msg}");
            assert!(
                msg.contains(&format!("{input:?}")),
                "message names the input: {msg}"
            );
            assert_eq!(err.kind(), ErrorKind::Invalid);
        }
    }

    #[test]
    fn serde_uses_the_string_form() {
        let d: Digest = EMPTY_SHA256.parse().unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{EMPTY_SHA256}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        let err = serde_json::from_str::<Digest>("\"sha256:00\"").unwrap_err();
        assert!(err.to_string().contains("needs 64"), "{err}");
    }
}
