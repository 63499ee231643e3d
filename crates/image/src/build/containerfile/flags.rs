//! The `--name=value` flags of an instruction (BuildKit's `BFlags`).

use super::ParseError;

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `--name=value`, at most once, value not empty.
    Str,
    /// `--name`, `--name=true` or `--name=false`, at most once.
    Bool,
    /// `--name=value`, any number of times.
    Multi,
}

/// The flags given to one instruction, checked against what it accepts.
#[derive(Debug)]
pub(super) struct Flags {
    values: Vec<(&'static str, String)>,
}

impl Flags {
    /// Checks `given` (flags without their `--`) against `accepted`.
    pub(super) fn parse(
        given: &[String],
        accepted: &[(&'static str, Kind)],
        instruction: &'static str,
        line: usize,
    ) -> Result<Flags, ParseError> {
        let mut values: Vec<(&'static str, String)> = Vec::new();
        for flag in given {
            let (name, value) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (flag.as_str(), None),
            };
            let bad = |reason: &str| ParseError::BadFlag {
                line,
                instruction,
                flag: name.to_owned(),
                reason: reason.to_owned(),
            };
            let Some(&(name, kind)) = accepted.iter().find(|(n, _)| *n == name) else {
                return Err(ParseError::UnknownFlag {
                    line,
                    instruction,
                    flag: name.to_owned(),
                });
            };
            if kind != Kind::Multi && values.iter().any(|(n, _)| *n == name) {
                return Err(bad("given more than once"));
            }
            let value = match (kind, value) {
                (Kind::Bool, None) => "true".to_owned(),
                (Kind::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                    "true" => "true".to_owned(),
                    "false" => "false".to_owned(),
                    _ => return Err(bad(&format!("expected true or false, not {v:?}"))),
                },
                (_, None | Some("")) => return Err(bad(&format!("needs a value (--{name}=...)"))),
                (_, Some(v)) => v.to_owned(),
            };
            values.push((name, value));
        }
        Ok(Flags { values })
    }

    pub(super) fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub(super) fn string(&self, name: &str) -> Option<String> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    }

    pub(super) fn bool(&self, name: &str) -> bool {
        self.string(name).is_some_and(|v| v == "true")
    }

    pub(super) fn all(&self, name: &str) -> Vec<String> {
        self.values
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCEPTED: &[(&str, Kind)] = &[
        ("from", Kind::Str),
        ("link", Kind::Bool),
        ("mount", Kind::Multi),
    ];

    fn parse(given: &[&str]) -> Result<Flags, ParseError> {
        let given: Vec<String> = given.iter().map(|s| s.to_string()).collect();
        Flags::parse(&given, ACCEPTED, "COPY", 7)
    }

    #[test]
    fn values() {
        let f = parse(&["from=a", "link", "mount=x", "mount=y"]).unwrap();
        assert_eq!(f.string("from").as_deref(), Some("a"));
        assert!(f.bool("link"));
        assert_eq!(f.all("mount"), ["x", "y"]);
        assert!(!parse(&["link=FALSE"]).unwrap().bool("link"));
        assert!(parse(&["link=true"]).unwrap().bool("link"));
        assert!(parse(&[]).unwrap().is_empty());
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse(&["chown=1"]).unwrap_err().to_string(),
            "line 7: COPY: unknown flag --chown"
        );
        assert_eq!(
            parse(&["from=a", "from=b"]).unwrap_err().to_string(),
            "line 7: COPY: flag --from: given more than once"
        );
        assert_eq!(
            parse(&["from"]).unwrap_err().to_string(),
            "line 7: COPY: flag --from: needs a value (--from=...)"
        );
        assert_eq!(
            parse(&["from="]).unwrap_err().to_string(),
            "line 7: COPY: flag --from: needs a value (--from=...)"
        );
        assert_eq!(
            parse(&["link=yes"]).unwrap_err().to_string(),
            "line 7: COPY: flag --link: expected true or false, not \"yes\""
        );
    }
}
