//! Splitting an instruction's text the ways Docker does, keeping the raw
//! words (quotes and escapes included) for expansion at build time.

/// The instruction word and the rest (trimmed).
pub(super) fn split_command(text: &str) -> (&str, &str) {
    let text = text.trim();
    match text.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim_start()),
        None => (text, ""),
    }
}

/// Splits at unquoted, unescaped whitespace; quotes and escape characters
/// stay in the words (BuildKit's `parseWords`, used for ENV, LABEL, ARG and
/// to find heredocs). An escape character ending the text is dropped.
pub(super) fn raw_words(text: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A quoted empty string ("") is still a word.
    let mut started = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            None if c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
                continue;
            }
            None if c == '\'' || c == '"' => quote = Some(c),
            Some(q) if c == q => quote = None,
            _ => {}
        }
        started = true;
        // The escape character keeps the next character with it, except
        // inside single quotes, where nothing is escaped.
        if c == escape && quote != Some('\'') {
            if let Some(n) = chars.next() {
                word.push(c);
                word.push(n);
            }
            continue;
        }
        word.push(c);
    }
    if started {
        words.push(word);
    }
    words
}

/// Splits off the leading `--flag[=value]` words (BuildKit's
/// `extractBuilderFlags`): returns the flags without their `--`, with quotes
/// removed and `\` escapes applied, and the rest of the text. A bare `--`
/// ends the flags.
pub(super) fn extract_flags(text: &str) -> (Vec<String>, &str) {
    let mut flags = Vec::new();
    let mut rest = text.trim_start();
    while rest.starts_with("--") {
        let (word, after) = flag_word(rest);
        rest = after.trim_start();
        if word == "--" {
            break;
        }
        flags.push(word["--".len()..].to_owned());
    }
    (flags, rest)
}

/// The first word of `text`, unquoted, and what follows it.
fn flag_word(text: &str) -> (String, &str) {
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut iter = text.char_indices();
    while let Some((i, c)) = iter.next() {
        match quote {
            None if c.is_whitespace() => return (word, &text[i..]),
            None if c == '\'' || c == '"' => quote = Some(c),
            Some(q) if c == q => quote = None,
            _ if c == '\\' => {
                if let Some((_, n)) = iter.next() {
                    word.push(n);
                }
            }
            _ => word.push(c),
        }
    }
    (word, "")
}

/// What a `[...]` argument is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Json {
    /// A JSON array of strings: the exec form.
    Strings(Vec<String>),
    /// A JSON array holding something else than strings: an error.
    NotStrings,
    /// Not a JSON array: Docker takes the text as the shell form.
    Text,
}

pub(super) fn json_array(text: &str) -> Json {
    let text = text.trim();
    if !text.starts_with('[') {
        return Json::Text;
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Some(s),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .map_or(Json::NotStrings, Json::Strings),
        _ => Json::Text,
    }
}

/// A `<<NAME` word: the heredoc it opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Marker {
    pub(super) name: String,
    pub(super) chomp: bool,
    pub(super) expand: bool,
}

/// Whether a raw word opens a heredoc: `[n]<<[-]NAME`, where NAME may be
/// (partly) quoted and holds no `<`.
pub(super) fn heredoc_marker(word: &str, escape: char) -> Option<Marker> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let (name, quoted) = unquote(rest, escape)?;
    if name.is_empty() {
        return None;
    }
    Some(Marker {
        name,
        chomp,
        expand: !quoted,
    })
}

/// Removes quotes and escapes; says whether there were any (a shell does not
/// expand a heredoc whose delimiter is quoted in any part). `None` for an
/// unterminated quote.
fn unquote(word: &str, escape: char) -> Option<(String, bool)> {
    let mut out = String::new();
    let mut quoted = false;
    let mut quote: Option<char> = None;
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some('"') if c == escape => {
                out.push(chars.next()?);
            }
            Some(_) => out.push(c),
            None if c == '\'' || c == '"' => {
                quoted = true;
                quote = Some(c);
            }
            None if c == escape => {
                quoted = true;
                out.push(chars.next()?);
            }
            None => out.push(c),
        }
    }
    quote.is_none().then_some((out, quoted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_word() {
        assert_eq!(split_command("  RUN  echo hi  "), ("RUN", "echo hi"));
        assert_eq!(split_command("CMD"), ("CMD", ""));
        assert_eq!(split_command("env\tA=b"), ("env", "A=b"));
    }

    #[test]
    fn raw_words_keep_quotes_and_escapes() {
        assert_eq!(
            raw_words("a=1 b=\"x y\"", '\\'),
            strings(&["a=1", "b=\"x y\""])
        );
        assert_eq!(raw_words("  a\\ b   c ", '\\'), strings(&["a\\ b", "c"]));
        assert_eq!(raw_words("'a \\' b", '\\'), strings(&["'a \\'", "b"]));
        assert_eq!(
            raw_words("\"a \\\" b\" c", '\\'),
            strings(&["\"a \\\" b\"", "c"])
        );
        assert_eq!(raw_words("x \"\"", '\\'), strings(&["x", "\"\""]));
        assert_eq!(raw_words("a`  b", '`'), strings(&["a` ", "b"]));
        assert_eq!(raw_words("end\\", '\\'), strings(&["end"]));
        assert!(raw_words("   ", '\\').is_empty());
    }

    #[test]
    fn flags_are_split_off() {
        assert_eq!(
            extract_flags("--from=build --chown=\"a b\" src dst"),
            (strings(&["from=build", "chown=a b"]), "src dst")
        );
        assert_eq!(extract_flags("--link"), (strings(&["link"]), ""));
        assert_eq!(
            extract_flags("-- --not-a-flag x"),
            (vec![], "--not-a-flag x")
        );
        assert_eq!(extract_flags("echo --x"), (vec![], "echo --x"));
        assert_eq!(extract_flags("--a=\\\"q"), (strings(&["a=\"q"]), ""));
    }

    #[test]
    fn json_arrays() {
        assert_eq!(
            json_array(r#"["a", "b c"]"#),
            Json::Strings(strings(&["a", "b c"]))
        );
        assert_eq!(json_array("[]"), Json::Strings(vec![]));
        assert_eq!(json_array(r#"["a", 1]"#), Json::NotStrings);
        assert_eq!(json_array("[echo hi]"), Json::Text);
        assert_eq!(json_array(r#"["a"] x"#), Json::Text);
        assert_eq!(json_array("echo [x]"), Json::Text);
    }

    #[test]
    fn heredoc_markers() {
        let m = |name: &str, chomp, expand| {
            Some(Marker {
                name: name.to_owned(),
                chomp,
                expand,
            })
        };
        assert_eq!(heredoc_marker("<<EOF", '\\'), m("EOF", false, true));
        assert_eq!(heredoc_marker("<<-EOF", '\\'), m("EOF", true, true));
        assert_eq!(heredoc_marker("<<\"EOF\"", '\\'), m("EOF", false, false));
        assert_eq!(heredoc_marker("<<-'E O'", '\\'), m("E O", true, false));
        assert_eq!(heredoc_marker("<<\\EOF", '\\'), m("EOF", false, false));
        assert_eq!(heredoc_marker("3<<EOF", '\\'), m("EOF", false, true));
        assert_eq!(heredoc_marker("<<", '\\'), None);
        assert_eq!(heredoc_marker("<<-", '\\'), None);
        assert_eq!(heredoc_marker("<<<EOF", '\\'), None);
        assert_eq!(heredoc_marker("a<<EOF", '\\'), None);
        assert_eq!(heredoc_marker("<<\"EOF", '\\'), None);
        assert_eq!(heredoc_marker("<<\"\"", '\\'), None);
    }
}
