//! From text to logical lines: parser directives, comments, blank lines,
//! continuations, and the heredoc bodies that follow an instruction.

use super::ParseError;

/// An instruction's text with its continuation lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Logical {
    /// 1-based line where it starts.
    pub(super) line: usize,
    /// Trimmed; never empty.
    pub(super) text: String,
}

/// Reads a Containerfile's physical lines into logical ones.
#[derive(Debug)]
pub(super) struct Lines<'a> {
    /// Without their `\n` (or `\r\n`).
    lines: Vec<&'a str>,
    /// Index of the next physical line to read.
    next: usize,
    escape: char,
    syntax: Option<String>,
    /// Directives are only looked for until the first line that is not one.
    directives_done: bool,
    seen_directives: Vec<String>,
}

impl<'a> Lines<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let text = text.strip_suffix('\n').unwrap_or(text);
        let lines = if text.is_empty() {
            Vec::new()
        } else {
            text.split('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l))
                .collect()
        };
        Lines {
            lines,
            next: 0,
            escape: '\\',
            syntax: None,
            directives_done: false,
            seen_directives: Vec::new(),
        }
    }

    pub(super) fn escape(&self) -> char {
        self.escape
    }

    pub(super) fn syntax(&self) -> Option<&str> {
        self.syntax.as_deref()
    }

    /// The number of physical lines read so far (the last one's number).
    pub(super) fn lines_read(&self) -> usize {
        self.next
    }

    fn physical(&mut self) -> Option<(usize, &'a str)> {
        let line = self.lines.get(self.next).copied()?;
        self.next += 1;
        Some((self.next, line))
    }

    /// The next logical line, or `None` at the end of the file.
    pub(super) fn next_logical(&mut self) -> Result<Option<Logical>, ParseError> {
        loop {
            let Some((number, raw)) = self.physical() else {
                return Ok(None);
            };
            let line = raw.trim_start();
            if !self.directives_done {
                match directive(line) {
                    Some((name, value)) if KNOWN_DIRECTIVES.contains(&name.as_str()) => {
                        self.apply_directive(number, name, value)?;
                        continue;
                    }
                    // An unknown directive is a comment, and ends the
                    // directives like any other comment, blank line or
                    // instruction.
                    _ => self.directives_done = true,
                }
            }
            if is_blank_or_comment(line) {
                continue;
            }
            let (first, mut ended) = trim_continuation(line, self.escape);
            let mut text = first.to_owned();
            while !ended {
                let Some((_, raw)) = self.physical() else {
                    break;
                };
                // Docker skips comment lines and blank lines inside a
                // continued instruction.
                if is_blank_or_comment(raw.trim_start()) {
                    continue;
                }
                let (part, e) = trim_continuation(raw, self.escape);
                text.push_str(part);
                ended = e;
            }
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            return Ok(Some(Logical {
                line: number,
                text: text.to_owned(),
            }));
        }
    }

    /// Reads a heredoc's body: the physical lines up to the one equal to
    /// `name` (after stripping leading tabs when `chomp`). The body keeps the
    /// lines as written, each with a `\n`. `line` is the instruction's.
    pub(super) fn read_heredoc(
        &mut self,
        line: usize,
        name: &str,
        chomp: bool,
    ) -> Result<String, ParseError> {
        let mut body = String::new();
        while let Some((_, raw)) = self.physical() {
            let candidate = if chomp {
                raw.trim_start_matches('\t')
            } else {
                raw
            };
            if candidate == name {
                return Ok(body);
            }
            body.push_str(raw);
            body.push('\n');
        }
        Err(ParseError::UnterminatedHeredoc {
            line,
            name: name.to_owned(),
        })
    }

    fn apply_directive(
        &mut self,
        line: usize,
        name: String,
        value: &str,
    ) -> Result<(), ParseError> {
        if self.seen_directives.contains(&name) {
            return Err(ParseError::Directive {
                line,
                directive: name,
                reason: "may only be given once".to_owned(),
            });
        }
        match name.as_str() {
            "escape" => {
                self.escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(ParseError::Directive {
                            line,
                            directive: name,
                            reason: format!(
                                "invalid escape character {value:?}: it must be \\ or `"
                            ),
                        });
                    }
                }
            }
            "syntax" => self.syntax = Some(value.to_owned()),
            // `check` configures BuildKit's linter, which bosun has not.
            _ => {}
        }
        self.seen_directives.push(name);
        Ok(())
    }
}

const KNOWN_DIRECTIVES: &[&str] = &["syntax", "escape", "check"];

fn is_blank_or_comment(trimmed_start: &str) -> bool {
    trimmed_start.is_empty() || trimmed_start.starts_with('#')
}

/// `# name = value` (name case-insensitive, returned lowercased).
fn directive(line: &str) -> Option<(String, &str)> {
    let blank = [' ', '\t'];
    let rest = line.strip_prefix('#')?.trim_start_matches(blank);
    let end = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let name = &rest[..end];
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = rest[end..]
        .trim_start_matches(blank)
        .strip_prefix('=')?
        .trim_matches(blank);
    if value.is_empty() {
        return None;
    }
    Some((name.to_ascii_lowercase(), value))
}

/// Strips a trailing escape character (and the blanks after it): returns the
/// text and whether the instruction ends on this line.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    match trimmed.strip_suffix(escape) {
        Some(text) => (text, false),
        None => (line, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logical(text: &str) -> Vec<(usize, String)> {
        let mut lines = Lines::new(text);
        let mut out = Vec::new();
        while let Some(l) = lines.next_logical().unwrap() {
            out.push((l.line, l.text));
        }
        out
    }

    #[test]
    fn directive_syntax() {
        assert_eq!(directive("# escape=`"), Some(("escape".to_owned(), "`")));
        assert_eq!(
            directive("#ESCAPE = \\ "),
            Some(("escape".to_owned(), "\\"))
        );
        assert_eq!(
            directive("#\tsyntax=docker/dockerfile:1"),
            Some(("syntax".to_owned(), "docker/dockerfile:1"))
        );
        assert_eq!(directive("# escape="), None);
        assert_eq!(directive("# a comment"), None);
        assert_eq!(directive("# 1x=y"), None);
        assert_eq!(directive("escape=`"), None);
    }

    #[test]
    fn continuation_trimming() {
        assert_eq!(trim_continuation("RUN a \\", '\\'), ("RUN a ", false));
        assert_eq!(trim_continuation("RUN a \\  \t", '\\'), ("RUN a ", false));
        assert_eq!(trim_continuation("RUN a", '\\'), ("RUN a", true));
        assert_eq!(trim_continuation("dir c:\\", '`'), ("dir c:\\", true));
        assert_eq!(trim_continuation("dir `", '`'), ("dir ", false));
    }

    #[test]
    fn logical_lines_join_continuations() {
        let text = "FROM a\n\n  # c\nRUN x \\\n  y \\\n# inside\n\n  z\r\nCMD w\n";
        assert_eq!(
            logical(text),
            [
                (1, "FROM a".to_owned()),
                (4, "RUN x   y   z".to_owned()),
                (9, "CMD w".to_owned())
            ]
        );
    }

    #[test]
    fn continuation_at_end_of_file() {
        assert_eq!(logical("RUN a \\"), [(1, "RUN a".to_owned())]);
    }

    #[test]
    fn heredoc_bodies_are_read_verbatim() {
        let mut lines = Lines::new("RUN <<EOF\n  a \\\n# b\nEOF\nCMD x");
        let first = lines.next_logical().unwrap().unwrap();
        assert_eq!(first.text, "RUN <<EOF");
        assert_eq!(
            lines.read_heredoc(1, "EOF", false).unwrap(),
            "  a \\\n# b\n"
        );
        assert_eq!(lines.next_logical().unwrap().unwrap().line, 5);
    }

    #[test]
    fn chomped_terminator_may_be_indented_with_tabs() {
        let mut lines = Lines::new("\tx\n\t\tEOF\n");
        assert_eq!(lines.read_heredoc(1, "EOF", true).unwrap(), "\tx\n");
        let mut lines = Lines::new("\tx\n\tEOF\n");
        assert!(lines.read_heredoc(1, "EOF", false).is_err());
    }
}
