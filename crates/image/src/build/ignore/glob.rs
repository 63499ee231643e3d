//! Glob patterns as `.dockerignore` uses them (moby/patternmatcher): Go's
//! `filepath.Match` syntax — `*` and `?` do not match `/`, `[a-z]` and
//! `[^a-z]` classes, `\` escapes — plus `**`, which matches any number of
//! directories (`**/` may match none).

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Lit(char),
    /// `*`: any run of characters but `/`.
    Star,
    /// `?`: one character but `/`.
    One,
    /// `[...]`: one character in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `**` (or `**/`) followed by more pattern: nothing, or anything that
    /// ends with a `/`.
    AnyDirs,
    /// `**` at the end: anything.
    AnyRest,
}

/// A compiled pattern; matches whole paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Glob {
    tokens: Vec<Token>,
}

impl Glob {
    /// Compiles `pattern`; the error says what is malformed.
    pub(super) fn compile(pattern: &str) -> Result<Glob, &'static str> {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            let token = match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    if chars.peek() == Some(&'/') {
                        chars.next();
                    }
                    if chars.peek().is_none() {
                        Token::AnyRest
                    } else {
                        Token::AnyDirs
                    }
                }
                '*' => Token::Star,
                '?' => Token::One,
                '\\' => Token::Lit(chars.next().ok_or("a pattern cannot end with \\")?),
                '[' => class(&mut chars)?,
                _ => Token::Lit(c),
            };
            tokens.push(token);
        }
        Ok(Glob { tokens })
    }

    pub(super) fn matches(&self, path: &str) -> bool {
        let s: Vec<char> = path.chars().collect();
        let n = s.len();
        // reach[i]: the tokens so far can match exactly s[..i].
        let mut reach = vec![false; n + 1];
        reach[0] = true;
        for token in &self.tokens {
            let mut next = vec![false; n + 1];
            for i in (0..=n).filter(|&i| reach[i]) {
                // Tokens that consume one character cannot start at the end.
                if i == n && matches!(token, Token::Lit(_) | Token::One | Token::Class { .. }) {
                    continue;
                }
                match token {
                    Token::Lit(c) => next[i + 1] = s.get(i) == Some(c),
                    Token::One => next[i + 1] = s.get(i).is_some_and(|&c| c != '/'),
                    Token::Class { negated, ranges } => {
                        next[i + 1] = s.get(i).is_some_and(|&c| {
                            let inside = ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
                            inside != *negated
                        });
                    }
                    Token::Star => {
                        next[i] = true;
                        for j in i..n {
                            if s[j] == '/' {
                                break;
                            }
                            next[j + 1] = true;
                        }
                    }
                    Token::AnyDirs => {
                        next[i] = true;
                        for j in i..n {
                            if s[j] == '/' {
                                next[j + 1] = true;
                            }
                        }
                    }
                    Token::AnyRest => next[i..].iter_mut().for_each(|r| *r = true),
                }
            }
            reach = next;
            if !reach.contains(&true) {
                return false;
            }
        }
        reach[n]
    }
}

/// After `[`: the class up to its `]`, with Go's rules (non-empty; `-` and
/// `]` must be escaped to be members).
fn class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<Token, &'static str> {
    const BAD: &str = "malformed character class (unterminated '[' or misplaced '-' or ']')";
    let negated = chars.peek() == Some(&'^');
    if negated {
        chars.next();
    }
    let mut ranges = Vec::new();
    let member = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        let c = match chars.next() {
            None | Some('-' | ']') => return Err(BAD),
            Some('\\') => chars.next().ok_or(BAD)?,
            Some(c) => c,
        };
        // A class must be closed, so something must follow a member.
        chars.peek().ok_or(BAD)?;
        Ok(c)
    };
    loop {
        if !ranges.is_empty() && chars.peek() == Some(&']') {
            chars.next();
            return Ok(Token::Class { negated, ranges });
        }
        let lo = member(chars)?;
        let hi = if chars.peek() == Some(&'-') {
            chars.next();
            member(chars)?
        } else {
            lo
        };
        ranges.push((lo, hi));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> bool {
        Glob::compile(pattern).unwrap().matches(path)
    }

    #[test]
    fn literals_and_wildcards() {
        assert!(m("a/b", "a/b"));
        assert!(!m("a/b", "a/bc"));
        assert!(m("*.go", "main.go"));
        assert!(m("*.go", ".go"));
        assert!(!m("*.go", "cmd/main.go"));
        assert!(m("a/*/c", "a/b/c"));
        assert!(!m("a/*/c", "a/b/x/c"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "a/c"));
        assert!(!m("a?c", "ac"));
        assert!(m("*", "anything"));
        assert!(!m("*", "a/b"));
    }

    #[test]
    fn classes() {
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[a-c]x", "dx"));
        assert!(m("[^a-c]x", "dx"));
        assert!(!m("[^a-c]x", "ax"));
        assert!(m("[abc]", "c"));
        assert!(m("[\\]]", "]"));
        assert!(m("[\\-]", "-"));
        assert!(m("v[0-9][0-9]", "v42"));
    }

    #[test]
    fn escapes() {
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "a"));
        assert!(m("a\\?", "a?"));
        assert!(m("\\[x]", "[x]"));
    }

    #[test]
    fn double_star() {
        assert!(m("**/foo", "foo"));
        assert!(m("**/foo", "a/b/foo"));
        assert!(!m("**/foo", "a/bfoo"));
        assert!(m("foo/**", "foo/a/b"));
        assert!(m("foo/**", "foo/"));
        assert!(!m("foo/**", "bar/a"));
        assert!(m("a/**/b", "a/b"));
        assert!(m("a/**/b", "a/x/y/b"));
        assert!(!m("a/**/b", "a/xb"));
        assert!(m("**", "x/y/z"));
        assert!(m("**/*.md", "docs/a/README.md"));
        assert!(m("**/*.md", "README.md"));
        assert!(!m("**/*.md", "docs/README.mdx"));
        // `**` not followed by `/` still ends at a directory boundary.
        assert!(m("**foo", "a/foo"));
        assert!(!m("**foo", "afoo"));
    }

    #[test]
    fn bad_patterns() {
        for p in ["[", "[a", "[]", "[a-", "[a-]", "[-a]", "a\\", "[\\"] {
            assert!(Glob::compile(p).is_err(), "{p}");
        }
        for p in ["]", "a]", "[a]", "[^a]", "[a-b]"] {
            assert!(Glob::compile(p).is_ok(), "{p}");
        }
    }
}
