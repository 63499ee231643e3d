//! Label selectors (`app=web,tier!=db,env in (a,b),!canary`) and field selectors
//! (`metadata.name=web,status.phase!=Running`), parsed once and then matched.

use std::collections::BTreeMap;

use bosun_oci::ErrorKind;

/// A selector that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement {input:?}: {reason}")]
pub struct SelectorError {
    pub input: String,
    pub reason: &'static str,
}

impl SelectorError {
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Invalid
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; the empty one matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    pub fn parse(input: &str) -> Result<LabelSelector, SelectorError> {
        let err = |reason| SelectorError {
            input: input.to_owned(),
            reason,
        };
        let mut requirements = Vec::new();
        for part in split_top_level(input) {
            let part = part.trim();
            if part.is_empty() {
                if input.trim().is_empty() {
                    continue;
                }
                return Err(err("empty requirement"));
            }
            requirements.push(parse_requirement(part).map_err(err)?);
        }
        Ok(LabelSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Eq(k, v) => labels.get(k) == Some(v),
            // `!=` also matches objects without the label, as in Kubernetes.
            Requirement::NotEq(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
        })
    }
}

/// Splits at commas outside parentheses (`a in (x,y),b` is two requirements).
fn split_top_level(input: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&input[start..]);
    parts
}

fn parse_requirement(part: &str) -> Result<Requirement, &'static str> {
    let key_ok = |k: &str| {
        if crate::name::qualified_name(k).is_ok() {
            Ok(k.to_owned())
        } else {
            Err("invalid label key")
        }
    };
    let value_ok = |v: &str| {
        let v = v.trim();
        if crate::name::label_value(v).is_ok() {
            Ok(v.to_owned())
        } else {
            Err("invalid label value")
        }
    };
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::NotExists(key_ok(key.trim())?));
    }
    for (op, neg) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((k, v)) = part.split_once(op) {
            let (k, v) = (key_ok(k.trim())?, value_ok(v)?);
            return Ok(if neg {
                Requirement::NotEq(k, v)
            } else {
                Requirement::Eq(k, v)
            });
        }
    }
    if let Some(open) = part.find('(') {
        let close = part
            .strip_suffix(')')
            .ok_or("a set must end with ')'")?
            .len();
        let head: Vec<&str> = part[..open].split_whitespace().collect();
        let values = part[open + 1..close]
            .split(',')
            .map(value_ok)
            .collect::<Result<Vec<_>, _>>()?;
        return match head.as_slice() {
            [k, "in"] => Ok(Requirement::In(key_ok(k)?, values)),
            [k, "notin"] => Ok(Requirement::NotIn(key_ok(k)?, values)),
            _ => Err("expected 'in' or 'notin' before a set"),
        };
    }
    if part.contains(char::is_whitespace) {
        return Err("unexpected whitespace");
    }
    Ok(Requirement::Exists(key_ok(part)?))
}

/// A parsed field selector: `field=value`, `field==value`, `field!=value`, ANDed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

impl FieldSelector {
    pub fn parse(input: &str) -> Result<FieldSelector, SelectorError> {
        let err = |reason| SelectorError {
            input: input.to_owned(),
            reason,
        };
        let mut terms = Vec::new();
        for part in split_unescaped(input, ',') {
            if part.trim().is_empty() {
                if input.trim().is_empty() {
                    continue;
                }
                return Err(err("empty requirement"));
            }
            let (field, equal, value) = if let Some((f, v)) = split_op(&part, "!=") {
                (f, false, v)
            } else if let Some((f, v)) = split_op(&part, "==") {
                (f, true, v)
            } else if let Some((f, v)) = split_op(&part, "=") {
                (f, true, v)
            } else {
                return Err(err("expected '=', '==' or '!='"));
            };
            if field.trim().is_empty() {
                return Err(err("empty field name"));
            }
            terms.push((field.trim().to_owned(), equal, unescape(&value)));
        }
        Ok(FieldSelector { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The field names the selector uses, for checking them against the resource.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.terms.iter().map(|(f, _, _)| f.as_str())
    }

    /// Whether every term holds; `value_of` gives an object's value of a field
    /// (empty when absent, as Kubernetes compares it).
    pub fn matches(&self, value_of: impl Fn(&str) -> String) -> bool {
        self.terms
            .iter()
            .all(|(field, equal, want)| (value_of(field) == *want) == *equal)
    }

    /// The value a term requires with `=`, for narrowing a read (`metadata.name`).
    pub fn required(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|(f, equal, _)| f == field && *equal)
            .map(|(_, _, v)| v.as_str())
    }
}

/// Splits at `sep` not preceded by a backslash; escapes are kept for [`unescape`].
fn split_unescaped(input: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = input.chars();
    while let Some(c) = chars.next() {
        let cur = parts.last_mut().expect("never empty");
        match c {
            '\\' => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c == sep => parts.push(String::new()),
            c => cur.push(c),
        }
    }
    parts
}

/// Splits at the first unescaped `op`.
fn split_op(part: &str, op: &str) -> Option<(String, String)> {
    let mut i = 0;
    let b = part.as_bytes();
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        // On bytes: an escape may skip into a multi-byte character, and the
        // (ASCII) operator can only start on a character boundary.
        if b[i..].starts_with(op.as_bytes()) {
            // `!=` must not be read as `=` preceded by a field ending in '!'.
            if op == "=" && i > 0 && b[i - 1] == b'!' {
                return None;
            }
            return Some((part[..i].to_owned(), part[i + op.len()..].to_owned()));
        }
        i += 1;
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn label_selectors() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let yes = [
            "",
            "app=web",
            "app==web",
            "app",
            "!db",
            "tier!=back",
            "missing!=x",
            "app in (web, api)",
            "tier notin (back)",
            "missing notin (x)",
            "app=web,tier in (front),!canary",
        ];
        for s in yes {
            assert!(LabelSelector::parse(s).unwrap().matches(&l), "{s}");
        }
        let no = [
            "app=api",
            "db",
            "!app",
            "app!=web",
            "app in (api)",
            "missing in (x)",
            "app notin (web)",
            "app=web,db",
        ];
        for s in no {
            assert!(!LabelSelector::parse(s).unwrap().matches(&l), "{s}");
        }
        for bad in [
            "app=",
            "a b",
            "app in (x",
            "app within (x)",
            "=x",
            "app=web,",
            "-a",
        ] {
            if bad == "app=" {
                // An empty value is a valid label value.
                assert!(LabelSelector::parse(bad).is_ok());
                continue;
            }
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_escape_before_a_multibyte_character_does_not_panic() {
        // Found by fuzz/k8s_object: `\` then a 3-byte character made the
        // operator search slice inside it.
        let f = FieldSelector::parse("metadata.nam\\\u{fffd}pe=x").unwrap();
        assert_eq!(f.fields().count(), 1);
        assert!(FieldSelector::parse("a\\\u{e9}").is_err());
        assert!(LabelSelector::parse("a\\\u{e9}=b").is_err());
    }

    #[test]
    fn field_selectors() {
        let f = FieldSelector::parse("metadata.name=web,status.phase!=Running").unwrap();
        assert_eq!(
            f.fields().collect::<Vec<_>>(),
            ["metadata.name", "status.phase"]
        );
        assert_eq!(f.required("metadata.name"), Some("web"));
        let obj = |phase: &'static str| {
            move |field: &str| match field {
                "metadata.name" => "web".to_owned(),
                "status.phase" => phase.to_owned(),
                _ => String::new(),
            }
        };
        assert!(f.matches(obj("Pending")));
        assert!(!f.matches(obj("Running")));
        let esc = FieldSelector::parse(r"a=x\,y,b==z").unwrap();
        assert!(esc.matches(|f| if f == "a" { "x,y" } else { "z" }.to_owned()));
        assert!(FieldSelector::parse("").unwrap().matches(|_| String::new()));
        assert!(FieldSelector::parse("novalue").is_err());
        assert!(FieldSelector::parse("=x").is_err());
    }
}
