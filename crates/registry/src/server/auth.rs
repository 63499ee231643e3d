//! HTTP basic authentication against an htpasswd file of bcrypt entries
//! (`htpasswd -B`), as docker-registry's `auth.htpasswd` does.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bosun_oci::Digest;

use super::ServerError;

/// The realm clients are told to authenticate for.
pub(crate) const REALM: &str = "bosun-registry";

#[derive(Debug)]
pub(crate) struct Htpasswd {
    users: HashMap<String, String>,
    /// sha256 of `user:password` pairs that passed bcrypt once: bcrypt is
    /// deliberately slow (tens of ms), and a push sends credentials with
    /// every request.
    verified: Mutex<HashSet<Digest>>,
}

/// What an `Authorization` header proved.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Check {
    Allowed,
    Denied,
    /// Not known from the cache: bcrypt must decide (off the async threads).
    Verify {
        user: String,
        password: String,
    },
}

impl Htpasswd {
    pub(crate) fn load(path: &Path) -> Result<Self, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|e| ServerError::Htpasswd {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Self::parse(&text).map_err(|reason| ServerError::Htpasswd {
            path: path.to_owned(),
            reason,
        })
    }

    fn parse(text: &str) -> Result<Self, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(format!("line {}: want user:hash", i + 1));
            };
            if !["$2a$", "$2b$", "$2y$", "$2x$"]
                .iter()
                .any(|p| hash.starts_with(p))
            {
                return Err(format!(
                    "line {} (user {user:?}): only bcrypt entries are supported (htpasswd -B)",
                    i + 1
                ));
            }
            users.insert(user.to_owned(), hash.to_owned());
        }
        if users.is_empty() {
            return Err("no users".to_owned());
        }
        Ok(Self {
            users,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Looks at an `Authorization` header without running bcrypt.
    pub(crate) fn check(&self, header: Option<&str>) -> Check {
        let Some((user, password)) = header.and_then(parse_basic) else {
            return Check::Denied;
        };
        if !self.users.contains_key(&user) {
            return Check::Denied;
        }
        let key = cache_key(&user, &password);
        if self.verified.lock().expect("auth cache").contains(&key) {
            return Check::Allowed;
        }
        Check::Verify { user, password }
    }

    /// Runs bcrypt (slow: call it on a blocking thread) and remembers success.
    pub(crate) fn verify(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user) else {
            return false;
        };
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok {
            let mut cache = self.verified.lock().expect("auth cache");
            // Bounded: a flood of distinct valid passwords is not a real workload.
            if cache.len() > 1024 {
                cache.clear();
            }
            cache.insert(cache_key(user, password));
        }
        ok
    }
}

fn cache_key(user: &str, password: &str) -> Digest {
    bosun_image::sha256_of(format!("{user}:{password}").as_bytes())
}

/// `Basic base64(user:password)` → `(user, password)`.
pub(crate) fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, value) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(value.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
    }

    #[test]
    fn bcrypt_entries_authenticate_and_are_cached() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let h = Htpasswd::parse(&format!("# users\nalice:{hash}\n")).unwrap();
        assert_eq!(h.check(None), Check::Denied);
        assert_eq!(h.check(Some(&basic("bob", "s3cret"))), Check::Denied);
        let Check::Verify { user, password } = h.check(Some(&basic("alice", "s3cret"))) else {
            panic!("expected a bcrypt check")
        };
        assert!(h.verify(&user, &password));
        assert_eq!(h.check(Some(&basic("alice", "s3cret"))), Check::Allowed);
        let Check::Verify { user, password } = h.check(Some(&basic("alice", "wrong"))) else {
            panic!("a wrong password is not cached")
        };
        assert!(!h.verify(&user, &password));
    }

    #[test]
    fn non_bcrypt_entries_are_refused_with_the_line() {
        let err = Htpasswd::parse("bob:{SHA}abc\n").unwrap_err();
        assert!(err.contains("line 1") && err.contains("bcrypt"), "{err}");
        assert!(Htpasswd::parse("\n# nothing\n").is_err());
    }
}
