use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "A" => Some("alpha".to_owned()),
        "EMPTY" => Some(String::new()),
        "SPACED" => Some("one  two".to_owned()),
        "HOME" => Some("/root".to_owned()),
        "1" => Some("first".to_owned()),
        _ => None,
    }
}

fn ex(word: &str) -> Result<String, ExpandError> {
    expand(word, &env, '\\')
}

fn ok(word: &str) -> String {
    ex(word).unwrap_or_else(|e| panic!("{word:?}: {e}"))
}

#[test]
fn plain_words_are_unchanged() {
    assert_eq!(ok("hello"), "hello");
    assert_eq!(ok(""), "");
    assert_eq!(ok("a b  c"), "a b  c");
}

#[test]
fn simple_and_braced_variables() {
    assert_eq!(ok("$A"), "alpha");
    assert_eq!(ok("${A}"), "alpha");
    assert_eq!(ok("x$A/y"), "xalpha/y");
    assert_eq!(ok("${A}_x"), "alpha_x");
    // `$A_x` is the variable `A_x`, which is unset.
    assert_eq!(ok("$A_x"), "");
    assert_eq!(ok("$UNSET"), "");
    assert_eq!(ok("$HOME/bin"), "/root/bin");
}

#[test]
fn a_dollar_without_name_is_literal() {
    assert_eq!(ok("$"), "$");
    assert_eq!(ok("a$ b"), "a$ b");
    assert_eq!(ok("$/x"), "$/x");
    assert_eq!(ok("100$"), "100$");
}

#[test]
fn positional_and_special_parameters_are_names() {
    assert_eq!(ok("$1x"), "firstx");
    assert_eq!(ok("$12"), "");
    assert_eq!(ok("a$$b"), "ab");
}

#[test]
fn default_and_alternative_values() {
    assert_eq!(ok("${UNSET:-dflt}"), "dflt");
    assert_eq!(ok("${EMPTY:-dflt}"), "dflt");
    assert_eq!(ok("${A:-dflt}"), "alpha");
    assert_eq!(ok("${UNSET-dflt}"), "dflt");
    assert_eq!(ok("${EMPTY-dflt}"), "");
    assert_eq!(ok("${A:+alt}"), "alt");
    assert_eq!(ok("${EMPTY:+alt}"), "");
    assert_eq!(ok("${EMPTY+alt}"), "alt");
    assert_eq!(ok("${UNSET+alt}"), "");
    assert_eq!(ok("${UNSET:-}"), "");
}

#[test]
fn default_words_are_expanded_and_unquoted() {
    assert_eq!(ok("${UNSET:-$A}"), "alpha");
    assert_eq!(ok("${UNSET:-${HOME}/x}"), "/root/x");
    assert_eq!(ok("${UNSET:-\"a b\"}"), "a b");
    assert_eq!(ok("${UNSET:-'$A'}"), "$A");
    assert_eq!(ok("${UNSET:-a\\}b}"), "a}b");
}

#[test]
fn required_variables() {
    assert_eq!(ok("${A:?no}"), "alpha");
    assert_eq!(
        ex("${UNSET:?must be set}"),
        Err(ExpandError::Required {
            name: "UNSET".to_owned(),
            message: "must be set".to_owned()
        })
    );
    assert_eq!(
        ex("${EMPTY:?}").unwrap_err().to_string(),
        "EMPTY: is not allowed to be unset"
    );
    assert_eq!(ok("${EMPTY?}"), "");
}

#[test]
fn substitution_errors() {
    assert_eq!(
        ex("${A"),
        Err(ExpandError::MissingBrace {
            name: "A".to_owned()
        })
    );
    assert_eq!(
        ex("${A:-x"),
        Err(ExpandError::MissingBrace {
            name: "A".to_owned()
        })
    );
    assert_eq!(
        ex("${}"),
        Err(ExpandError::BadSubstitution {
            text: "}".to_owned()
        })
    );
    assert_eq!(
        ex("${A#x}"),
        Err(ExpandError::UnsupportedModifier {
            name: "A".to_owned(),
            modifier: "#".to_owned()
        })
    );
    assert_eq!(
        ex("${A:x}").unwrap_err().to_string(),
        "unsupported modifier \":x\" in \"${A:x...}\""
    );
}

#[test]
fn quotes_are_removed_and_single_quotes_stop_expansion() {
    assert_eq!(ok("'$A'"), "$A");
    assert_eq!(ok("\"$A\""), "alpha");
    assert_eq!(ok("\"a  b\""), "a  b");
    assert_eq!(ok("x'y'\"z\""), "xyz");
    assert_eq!(ok("'it''s'"), "its");
    assert_eq!(ok("\"it's\""), "it's");
    assert_eq!(ok("'say \"hi\"'"), "say \"hi\"");
}

#[test]
fn unterminated_quotes_are_errors() {
    assert_eq!(
        ex("'abc"),
        Err(ExpandError::UnterminatedQuote { quote: "single" })
    );
    assert_eq!(
        ex("a\"bc"),
        Err(ExpandError::UnterminatedQuote { quote: "double" })
    );
}

#[test]
fn escapes() {
    assert_eq!(ok("\\$A"), "$A");
    assert_eq!(ok("\\\\"), "\\");
    assert_eq!(ok("a\\ b"), "a b");
    assert_eq!(ok("\\'x"), "'x");
    // A trailing escape is dropped, like Docker does.
    assert_eq!(ok("abc\\"), "abc");
    // In double quotes only ", $ and the escape character are escapable.
    assert_eq!(ok("\"\\$A\""), "$A");
    assert_eq!(ok("\"\\\"\""), "\"");
    assert_eq!(ok("\"\\n\""), "\\n");
    assert_eq!(ok("\"a\\\\b\""), "a\\b");
    // Single quotes escape nothing.
    assert_eq!(ok("'\\$A'"), "\\$A");
}

#[test]
fn backtick_escape_character() {
    let bt = |w: &str| expand(w, &env, '`').unwrap();
    assert_eq!(bt("`$A"), "$A");
    assert_eq!(bt("c:\\windows"), "c:\\windows");
    assert_eq!(bt("$A\\x"), "alpha\\x");
    assert_eq!(bt("\"`\"\""), "\"");
}

#[test]
fn word_splitting() {
    let words = |t: &str| expand_words(t, &env, '\\').unwrap();
    assert_eq!(words("80 443/tcp"), ["80", "443/tcp"]);
    assert_eq!(words("  a\t b  "), ["a", "b"]);
    assert_eq!(words("$SPACED"), ["one", "two"]);
    assert_eq!(words("\"$SPACED\""), ["one  two"]);
    assert_eq!(words("x$SPACED"), ["xone", "two"]);
    assert_eq!(words("a \"\" b"), ["a", "", "b"]);
    assert_eq!(words("$UNSET"), Vec::<String>::new());
    assert_eq!(words("a\\ b c"), ["a b", "c"]);
    assert_eq!(words("${UNSET:-p q}"), ["p", "q"]);
    assert_eq!(words("\"${UNSET:-p q}\""), ["p q"]);
    assert_eq!(words(""), Vec::<String>::new());
}

#[test]
fn heredoc_bodies() {
    let h = |t: &str| expand_heredoc(t, &env, '\\').unwrap();
    assert_eq!(h("home=$HOME\n"), "home=/root\n");
    assert_eq!(h("echo \"$A\" '$A'\n"), "echo \"alpha\" 'alpha'\n");
    assert_eq!(h("cost \\$5 \\\\ \\n\n"), "cost $5 \\ \\n\n");
    assert_eq!(h("${UNSET:-d}"), "d");
}

#[test]
fn error_kind_is_invalid() {
    assert_eq!(ex("'x").unwrap_err().kind(), ErrorKind::Invalid);
}
