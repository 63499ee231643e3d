//! Name rules of Kubernetes objects and labels (RFC 1123 / RFC 1035 names,
//! qualified names, label values). Each check returns what is wrong, in words a
//! `422 Invalid` cause can carry.

/// Which rule an object's name follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain: most kinds (`web-0`, `kube-root-ca.crt`).
    Subdomain,
    /// RFC 1123 label: namespaces.
    Label,
    /// RFC 1035 label (starts with a letter): services, whose names become DNS labels.
    Rfc1035,
}

impl NameRule {
    /// The rule for objects of `kind`.
    pub fn for_kind(kind: &str) -> NameRule {
        match kind {
            "Namespace" => NameRule::Label,
            "Service" => NameRule::Rfc1035,
            _ => NameRule::Subdomain,
        }
    }

    pub fn check(self, name: &str) -> Result<(), String> {
        match self {
            NameRule::Subdomain => dns1123_subdomain(name),
            NameRule::Label => dns1123_label(name),
            NameRule::Rfc1035 => dns1035_label(name),
        }
    }
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// One label of lower-case alphanumerics and '-', alphanumeric at both ends.
fn label_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_lower_alnum(b[0])
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
}

pub fn dns1123_label(name: &str) -> Result<(), String> {
    if name.len() > 63 {
        return Err("must be no more than 63 characters".to_owned());
    }
    if !label_ok(name) {
        return Err(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric \
                    characters or '-', and must start and end with an alphanumeric character"
                .to_owned(),
        );
    }
    Ok(())
}

pub fn dns1123_subdomain(name: &str) -> Result<(), String> {
    if name.len() > 253 {
        return Err("must be no more than 253 characters".to_owned());
    }
    if !name.split('.').all(label_ok) {
        return Err(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
             characters, '-' or '.', and must start and end with an alphanumeric character"
                .to_owned(),
        );
    }
    Ok(())
}

pub fn dns1035_label(name: &str) -> Result<(), String> {
    if name.len() > 63 {
        return Err("must be no more than 63 characters".to_owned());
    }
    if !label_ok(name) || !name.as_bytes()[0].is_ascii_lowercase() {
        return Err(
            "a DNS-1035 label must consist of lower case alphanumeric characters \
                    or '-', start with an alphabetic character, and end with an \
                    alphanumeric character"
                .to_owned(),
        );
    }
    Ok(())
}

/// Alphanumerics at both ends, `-`, `_` and `.` inside, at most 63 characters.
fn qualified_part_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A label or annotation key: `[prefix/]name`, the prefix an RFC 1123 subdomain.
pub fn qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            return Err("prefix part must be non-empty".to_owned());
        }
        dns1123_subdomain(p).map_err(|e| format!("prefix part {e}"))?;
    }
    if !qualified_part_ok(name) {
        return Err(
            "name part must consist of alphanumeric characters, '-', '_' or '.', \
                    must start and end with an alphanumeric character, and be at most \
                    63 characters"
                .to_owned(),
        );
    }
    Ok(())
}

/// A label value: empty, or like the name part of a qualified name.
pub fn label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || qualified_part_ok(value) {
        return Ok(());
    }
    Err(
        "a valid label must be an empty string or consist of alphanumeric characters, \
         '-', '_' or '.', and must start and end with an alphanumeric character, at most \
         63 characters"
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains() {
        for ok in ["a", "web-0", "kube-root-ca.crt", "1abc", &"a".repeat(253)] {
            assert!(dns1123_subdomain(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Web", "-a", "a-", "a..b", "a_b", ".a", &"a".repeat(254)] {
            assert!(dns1123_subdomain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels() {
        assert!(dns1123_label("default").is_ok());
        assert!(dns1123_label("a.b").is_err());
        assert!(dns1123_label(&"a".repeat(64)).is_err());
        assert!(dns1035_label("web").is_ok());
        assert!(dns1035_label("1web").is_err());
        assert_eq!(NameRule::for_kind("Service"), NameRule::Rfc1035);
        assert!(NameRule::for_kind("Pod").check("Bad").is_err());
    }

    #[test]
    fn label_keys_and_values() {
        for ok in ["app", "app.kubernetes.io/name", "a_b.c-d", "A"] {
            assert!(qualified_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "a/", "Bad.Prefix/a", "-a", "a b", &"a".repeat(64)] {
            assert!(qualified_name(bad).is_err(), "{bad}");
        }
        for ok in ["", "web", "v1.2_3-x"] {
            assert!(label_value(ok).is_ok(), "{ok}");
        }
        for bad in ["-x", "x-", "a b", "a/b", &"a".repeat(64)] {
            assert!(label_value(bad).is_err(), "{bad}");
        }
    }
}
