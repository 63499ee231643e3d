use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid container id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("container id is empty")]
    Empty,
    #[error("container id {0:?} is longer than 1024 bytes")]
    TooLong(String),
    #[error("container id {0:?} must not be \".\" or \"..\"")]
    Dots(String),
    #[error("container id {id:?} contains {ch:?}: only letters, digits and _ + - . are allowed")]
    BadChar { id: String, ch: char },
}

/// A container id as runc accepts it: `[A-Za-z0-9_+.-]+`, not `.` or `..`.
///
/// Ids name directories under the runtime's state root, so this check is what
/// keeps `../x` or `a/b` from escaping it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContainerId(String);

impl ContainerId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ContainerId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.len() > 1024 {
            return Err(IdError::TooLong(s.to_owned()));
        }
        if s == "." || s == ".." {
            return Err(IdError::Dots(s.to_owned()));
        }
        if let Some(ch) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.')))
        {
            return Err(IdError::BadChar {
                id: s.to_owned(),
                ch,
            });
        }
        Ok(Self(s.to_owned()))
    }
}

impl TryFrom<String> for ContainerId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<ContainerId> for String {
    fn from(id: ContainerId) -> String {
        id.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_runc_ids() {
        for ok in ["a", "web-1", "x_y.z+1", "0123456789abcdef"] {
            assert_eq!(ok.parse::<ContainerId>().unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_escapes_and_junk() {
        assert_eq!("".parse::<ContainerId>(), Err(IdError::Empty));
        assert!(matches!("..".parse::<ContainerId>(), Err(IdError::Dots(_))));
        assert!(matches!(
            "a/b".parse::<ContainerId>(),
            Err(IdError::BadChar { ch: '/', .. })
        ));
        assert!(matches!(
            "../x".parse::<ContainerId>(),
            Err(IdError::BadChar { .. })
        ));
        assert!(matches!(
            "a b".parse::<ContainerId>(),
            Err(IdError::BadChar { ch: ' ', .. })
        ));
        assert!(matches!(
            "x".repeat(2000).parse::<ContainerId>(),
            Err(IdError::TooLong(_))
        ));
    }
}
