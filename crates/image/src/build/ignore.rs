//! `.dockerignore`: which files of the build context are left out.
//!
//! Docker's semantics (moby/patternmatcher): one pattern a line; lines
//! starting with `#` are comments; patterns are trimmed, cleaned like Go's
//! `filepath.Clean` and made relative (a leading `/` is dropped); `!` makes an
//! exception. The last pattern that matches a path decides, and a pattern
//! matches a path if it matches the path or any of its parent directories, so
//! excluding a directory excludes everything below it unless a later
//! exception re-includes part of it.
//!
//! Docker always sends the Containerfile and `.dockerignore` to the builder
//! whatever the rules say; that is the context walker's business.

mod glob;

#[cfg(test)]
mod tests;

use bosun_oci::ErrorKind;

use glob::Glob;

/// A `.dockerignore` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    #[error(".dockerignore line {line}: bad pattern {pattern:?}: {reason}")]
    BadPattern {
        line: usize,
        pattern: String,
        reason: &'static str,
    },
    #[error(".dockerignore line {line}: \"!\" needs a pattern after it")]
    BareExclamation { line: usize },
}

impl IgnoreError {
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Invalid
    }
}

/// The parsed rules of a `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    /// `!pattern`: re-includes what it matches.
    exception: bool,
    glob: Glob,
    /// The pattern split at `/`, to tell whether it could match below a
    /// directory.
    components: Vec<Component>,
}

#[derive(Debug, Clone)]
enum Component {
    Glob(Glob),
    /// A component holding `**`, which may span any number of directories.
    Deep,
}

impl IgnoreRules {
    /// Parses the text of a `.dockerignore`.
    pub fn parse(text: &str) -> Result<Self, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut rules = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            // Only a `#` in the first column starts a comment, as in Docker.
            if raw.starts_with('#') {
                continue;
            }
            let mut pattern = raw.trim();
            if pattern.is_empty() {
                continue;
            }
            let exception = pattern.starts_with('!');
            if exception {
                pattern = pattern[1..].trim();
                if pattern.is_empty() {
                    return Err(IgnoreError::BareExclamation { line });
                }
            }
            let cleaned = clean(pattern);
            let cleaned = match cleaned.strip_prefix('/') {
                Some(rest) if !rest.is_empty() => rest.to_owned(),
                _ => cleaned,
            };
            let bad = |reason| IgnoreError::BadPattern {
                line,
                pattern: raw.trim().to_owned(),
                reason,
            };
            let glob = Glob::compile(&cleaned).map_err(bad)?;
            let components = cleaned
                .split('/')
                .map(|c| {
                    if c.contains("**") {
                        Ok(Component::Deep)
                    } else {
                        Glob::compile(c).map(Component::Glob)
                    }
                })
                .collect::<Result<_, _>>()
                .map_err(bad)?;
            rules.push(Rule {
                exception,
                glob,
                components,
            });
        }
        Ok(IgnoreRules { rules })
    }

    /// Whether there are no rules (nothing is excluded).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether some rule is an `!` exception.
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| r.exception)
    }

    /// Whether `rel_path` (relative to the context root, `/`-separated) is
    /// left out of the context: the last rule matching it or one of its
    /// parent directories decides. The root itself is never excluded.
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        let path = relative(rel_path);
        if path == "." {
            return false;
        }
        let parents: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
        let mut excluded = false;
        for rule in &self.rules {
            // Only a rule that can change the answer is worth matching.
            if rule.exception != excluded {
                continue;
            }
            if rule.glob.matches(&path) || parents.iter().any(|p| rule.glob.matches(p)) {
                excluded = !rule.exception;
            }
        }
        excluded
    }

    /// Whether anything below directory `dir` may be in the context. False
    /// means the walker can skip the whole directory: it is excluded and no
    /// exception could re-include a path below it. The answer errs towards
    /// true (e.g. for exceptions with `**`).
    pub fn may_contain_included(&self, dir: &str) -> bool {
        if !self.is_excluded(dir) {
            return true;
        }
        let path = relative(dir);
        let parts: Vec<&str> = path.split('/').collect();
        self.rules
            .iter()
            .filter(|r| r.exception)
            .any(|r| r.could_match_below(&parts))
    }
}

impl Rule {
    /// Whether the pattern could match some path strictly below the
    /// directory whose components are `dir`.
    fn could_match_below(&self, dir: &[&str]) -> bool {
        for (i, part) in dir.iter().enumerate() {
            match self.components.get(i) {
                None => return false,
                Some(Component::Deep) => return true,
                Some(Component::Glob(g)) if !g.matches(part) => return false,
                Some(Component::Glob(_)) => {}
            }
        }
        self.components.len() > dir.len()
    }
}

/// A context path made relative and clean (`./a//b/` → `a/b`).
fn relative(path: &str) -> String {
    let cleaned = clean(path);
    match cleaned.strip_prefix('/') {
        Some("") => ".".to_owned(),
        Some(rest) => rest.to_owned(),
        None => cleaned,
    }
}

/// Go's `filepath.Clean` for `/` paths: no empty or `.` components, `..`
/// resolved lexically, no trailing `/`; `.` when nothing is left.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                // `..` above the root is the root.
                _ if rooted => {}
                _ => parts.push(".."),
            },
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}
