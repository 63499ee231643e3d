//! Variable expansion with Docker's builder rules (BuildKit's `shell.Lex`).
//!
//! The builder, not a shell, expands `$VAR` in the instructions that take
//! words (ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR ARG);
//! RUN, CMD and ENTRYPOINT are left to the shell in the container. The parser
//! keeps those words raw because their values depend on the ENV and ARG state
//! reached at each point of a stage, which only the executor knows.
//!
//! Supported: `$NAME`, `${NAME}`, `${NAME:-word}`, `${NAME-word}`,
//! `${NAME:+word}`, `${NAME+word}`, `${NAME:?message}`, `${NAME?message}`,
//! single and double quotes (removed; single quotes stop expansion), and the
//! escape character (`\`, or `` ` `` after `# escape=``) which makes the next
//! character literal. An unset variable expands to the empty string.

#[cfg(test)]
mod tests;

use bosun_oci::ErrorKind;

/// Why a word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("unexpected end of text looking for the matching {quote} quote")]
    UnterminatedQuote { quote: &'static str },
    #[error("missing '}}' in \"${{{name}\"")]
    MissingBrace { name: String },
    #[error("bad substitution: \"${{{text}\": a variable name must follow \"${{\"")]
    BadSubstitution { text: String },
    #[error("unsupported modifier {modifier:?} in \"${{{name}{modifier}...}}\"")]
    UnsupportedModifier { name: String, modifier: String },
    #[error("{name}: {message}")]
    Required { name: String, message: String },
}

impl ExpandError {
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Invalid
    }
}

/// How a variable is looked up: `Some(value)` when set (possibly empty).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Expands one word, as Docker does for WORKDIR, USER, ENV values, COPY
/// paths...: quotes are removed, whitespace is kept (no word splitting).
pub fn expand(word: &str, lookup: Lookup<'_>, escape: char) -> Result<String, ExpandError> {
    let mut out = Out::new(false);
    Lexer::new(word, lookup, escape, Mode::Word).run(&mut out)?;
    Ok(out.cur)
}

/// Expands and splits into words at unquoted whitespace, including whitespace
/// that comes from an unquoted variable's value (Docker does this for EXPOSE:
/// `EXPOSE $PORTS` with `PORTS="80 443"` exposes two ports). A quoted empty
/// string is an empty word; an unquoted empty expansion is no word.
pub fn expand_words(
    text: &str,
    lookup: Lookup<'_>,
    escape: char,
) -> Result<Vec<String>, ExpandError> {
    let mut out = Out::new(true);
    Lexer::new(text, lookup, escape, Mode::Word).run(&mut out)?;
    out.finish();
    Ok(out.words)
}

/// Expands the body of a heredoc whose delimiter was not quoted (COPY/ADD
/// `<<EOF`): `$NAME` and `${...}` are expanded, quotes are ordinary text, and
/// the escape character only escapes `$` and itself, as in a shell heredoc.
pub fn expand_heredoc(body: &str, lookup: Lookup<'_>, escape: char) -> Result<String, ExpandError> {
    let mut out = Out::new(false);
    Lexer::new(body, lookup, escape, Mode::Heredoc).run(&mut out)?;
    Ok(out.cur)
}

/// Where the lexer reads: a word (quotes are syntax) or a heredoc body
/// (quotes are text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Word,
    Heredoc,
}

/// Collects the output, splitting words only in `split` mode.
#[derive(Debug)]
struct Out {
    split: bool,
    words: Vec<String>,
    cur: String,
    /// A word has begun, even if still empty (`""` is a word).
    started: bool,
}

impl Out {
    fn new(split: bool) -> Self {
        Out {
            split,
            words: Vec::new(),
            cur: String::new(),
            started: false,
        }
    }

    /// A character that belongs to the word whatever it is (quoted or escaped).
    fn raw(&mut self, c: char) {
        self.cur.push(c);
        self.started = true;
    }

    fn raw_str(&mut self, s: &str) {
        self.cur.push_str(s);
        self.started = true;
    }

    /// An unquoted character: whitespace ends the word when splitting.
    fn plain(&mut self, c: char) {
        if self.split && c.is_whitespace() {
            self.finish();
        } else {
            self.raw(c);
        }
    }

    /// An unquoted variable's value, split like plain text.
    fn expanded(&mut self, s: &str) {
        if self.split {
            s.chars().for_each(|c| self.plain(c));
        } else {
            self.cur.push_str(s);
        }
    }

    fn finish(&mut self) {
        if self.started {
            self.words.push(std::mem::take(&mut self.cur));
            self.started = false;
        }
    }
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    lookup: Lookup<'a>,
    escape: char,
    mode: Mode,
}

impl<'a> Lexer<'a> {
    fn new(text: &str, lookup: Lookup<'a>, escape: char, mode: Mode) -> Self {
        Lexer {
            chars: text.chars().collect(),
            pos: 0,
            lookup,
            escape,
            mode,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn run(&mut self, out: &mut Out) -> Result<(), ExpandError> {
        self.until(out, None).map(|_| ())
    }

    /// Reads up to `stop` (unquoted, unescaped) or the end. Returns whether
    /// `stop` was found (and consumed).
    fn until(&mut self, out: &mut Out, stop: Option<char>) -> Result<bool, ExpandError> {
        while let Some(c) = self.next() {
            if Some(c) == stop {
                return Ok(true);
            }
            match c {
                _ if c == self.escape => self.escaped(out),
                '\'' if self.mode == Mode::Word => self.single_quoted(out)?,
                '"' if self.mode == Mode::Word => self.double_quoted(out)?,
                '$' => {
                    let value = self.dollar()?;
                    out.expanded(&value);
                }
                _ => out.plain(c),
            }
        }
        Ok(false)
    }

    /// After an unquoted escape character.
    fn escaped(&mut self, out: &mut Out) {
        match (self.mode, self.peek()) {
            // Docker drops an escape character that ends the word.
            (_, None) => {}
            (Mode::Word, Some(c)) => {
                self.pos += 1;
                out.raw(c);
            }
            (Mode::Heredoc, Some(c)) if c == '$' || c == self.escape => {
                self.pos += 1;
                out.raw(c);
            }
            (Mode::Heredoc, Some(_)) => out.raw(self.escape),
        }
    }

    fn single_quoted(&mut self, out: &mut Out) -> Result<(), ExpandError> {
        out.started = true;
        loop {
            match self.next() {
                None => return Err(ExpandError::UnterminatedQuote { quote: "single" }),
                Some('\'') => return Ok(()),
                Some(c) => out.raw(c),
            }
        }
    }

    fn double_quoted(&mut self, out: &mut Out) -> Result<(), ExpandError> {
        out.started = true;
        loop {
            match self.next() {
                None => return Err(ExpandError::UnterminatedQuote { quote: "double" }),
                Some('"') => return Ok(()),
                Some('$') => {
                    let value = self.dollar()?;
                    out.raw_str(&value);
                }
                Some(c) if c == self.escape => match self.peek() {
                    // Only `"`, `$` and the escape character itself can be
                    // escaped inside double quotes; other escapes stay as is.
                    Some(n) if n == '"' || n == '$' || n == self.escape => {
                        self.pos += 1;
                        out.raw(n);
                    }
                    None => {}
                    Some(_) => out.raw(c),
                },
                Some(c) => out.raw(c),
            }
        }
    }

    /// After a `$`: returns the expansion (a lone `$` stays a `$`).
    fn dollar(&mut self) -> Result<String, ExpandError> {
        if self.peek() == Some('{') {
            self.pos += 1;
            return self.braced();
        }
        let name = self.name();
        if name.is_empty() {
            return Ok("$".to_owned());
        }
        Ok((self.lookup)(&name).unwrap_or_default())
    }

    /// A variable name: a run of digits, one special parameter character, or
    /// letters, digits and `_` (BuildKit's `processName`).
    fn name(&mut self) -> String {
        let mut name = String::new();
        match self.peek() {
            Some(c) if c.is_ascii_digit() => {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.pos += 1;
                }
            }
            Some(c) if "@*#?-$!".contains(c) => {
                name.push(c);
                self.pos += 1;
            }
            _ => {
                while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
                    name.push(c);
                    self.pos += 1;
                }
            }
        }
        name
    }

    /// After `${`.
    fn braced(&mut self) -> Result<String, ExpandError> {
        let name = self.name();
        if name.is_empty() {
            let rest: String = self.chars[self.pos..].iter().collect();
            return Err(ExpandError::BadSubstitution { text: rest });
        }
        let value = (self.lookup)(&name);
        let colon = self.peek() == Some(':');
        if colon {
            self.pos += 1;
        }
        let Some(op) = self.next() else {
            return Err(ExpandError::MissingBrace { name });
        };
        if op == '}' && !colon {
            return Ok(value.unwrap_or_default());
        }
        if !matches!(op, '-' | '+' | '?') {
            let modifier = if colon {
                format!(":{op}")
            } else {
                op.to_string()
            };
            return Err(ExpandError::UnsupportedModifier { name, modifier });
        }
        // The word is expanded in its own (unsplit) buffer; the caller splits
        // the result if it is unquoted.
        let mut word = Out::new(false);
        if !self.until(&mut word, Some('}'))? {
            return Err(ExpandError::MissingBrace { name });
        }
        let word = word.cur;
        // With ':' an empty value counts as unset.
        let set = match &value {
            Some(v) => !(colon && v.is_empty()),
            None => false,
        };
        match op {
            '-' if set => Ok(value.unwrap_or_default()),
            '-' => Ok(word),
            '+' if set => Ok(word),
            '+' => Ok(String::new()),
            _ if set => Ok(value.unwrap_or_default()),
            _ => {
                let message = if word.is_empty() {
                    "is not allowed to be unset".to_owned()
                } else {
                    word
                };
                Err(ExpandError::Required { name, message })
            }
        }
    }
}
