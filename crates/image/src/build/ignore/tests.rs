use super::*;

fn rules(text: &str) -> IgnoreRules {
    IgnoreRules::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn clean_is_go_filepath_clean() {
    assert_eq!(clean("a//b/./c/"), "a/b/c");
    assert_eq!(clean("a/../b"), "b");
    assert_eq!(clean("../a"), "../a");
    assert_eq!(clean("a/../.."), "..");
    assert_eq!(clean("/../a"), "/a");
    assert_eq!(clean(""), ".");
    assert_eq!(clean("./"), ".");
    assert_eq!(clean("/"), "/");
    assert_eq!(relative("/a/b/"), "a/b");
    assert_eq!(relative("./x"), "x");
    assert_eq!(relative("/"), ".");
}

#[test]
fn empty_rules_exclude_nothing() {
    let r = rules("");
    assert!(r.is_empty());
    assert!(!r.is_excluded("a"));
    assert!(r.may_contain_included("a"));
    let r = rules("# only a comment\n\n   \n");
    assert!(r.is_empty());
}

#[test]
fn comments_only_in_the_first_column() {
    let r = rules("#secret\n #notcomment\n");
    assert!(!r.is_excluded("secret"));
    assert!(!r.is_excluded("#secret"));
    // The second line is a pattern, trimmed.
    assert!(r.is_excluded("#notcomment"));
}

#[test]
fn simple_patterns_and_whitespace() {
    let r = rules("  *.log  \r\nbuild/\n/tmp\n./out//x\n");
    assert!(r.is_excluded("a.log"));
    assert!(!r.is_excluded("dir/a.log"));
    assert!(r.is_excluded("build"));
    assert!(r.is_excluded("build/x/y.o"));
    assert!(r.is_excluded("tmp"));
    assert!(r.is_excluded("/tmp/f"));
    assert!(r.is_excluded("out/x"));
    assert!(!r.is_excluded("out"));
    assert!(!r.is_excluded("src/main.rs"));
    assert!(!r.is_excluded("."));
    assert!(!r.is_excluded(""));
}

#[test]
fn parent_directory_match_excludes_children() {
    let r = rules("node_modules\ndocs/*\n");
    assert!(r.is_excluded("node_modules"));
    assert!(r.is_excluded("node_modules/a/b/c.js"));
    assert!(!r.is_excluded("web/node_modules"));
    assert!(r.is_excluded("docs/a"));
    assert!(r.is_excluded("docs/a/b.md"));
    assert!(!r.is_excluded("docs"));
}

#[test]
fn double_star_patterns() {
    let r = rules("**/*.tmp\n**/cache\nvendor/**\n");
    assert!(r.is_excluded("x.tmp"));
    assert!(r.is_excluded("a/b/x.tmp"));
    assert!(r.is_excluded("cache"));
    assert!(r.is_excluded("a/cache/z"));
    assert!(r.is_excluded("vendor/x/y"));
    assert!(!r.is_excluded("a/vendor/x"));
    assert!(!r.is_excluded("a/b/x.txt"));
}

#[test]
fn last_matching_rule_wins() {
    let r = rules("*.md\n!README.md\n");
    assert!(r.is_excluded("CHANGES.md"));
    assert!(!r.is_excluded("README.md"));
    assert!(r.has_exceptions());

    let r = rules("!README.md\n*.md\n");
    assert!(r.is_excluded("README.md"));
}

#[test]
fn exception_reincludes_under_excluded_directory() {
    let r = rules("docs\n!docs/keep.md\n");
    assert!(r.is_excluded("docs/other.md"));
    assert!(!r.is_excluded("docs/keep.md"));
    // The directory itself stays excluded; the walker must still enter it.
    assert!(r.is_excluded("docs"));
    assert!(r.may_contain_included("docs"));

    // A re-included directory brings its children back.
    let r = rules("*\n!src\n");
    assert!(r.is_excluded("Makefile"));
    assert!(!r.is_excluded("src"));
    assert!(!r.is_excluded("src/a/b.rs"));
}

#[test]
fn deeper_exclusion_after_exception() {
    let r = rules("a\n!a/b\na/b/c\n");
    assert!(r.is_excluded("a/x"));
    assert!(!r.is_excluded("a/b/y"));
    assert!(r.is_excluded("a/b/c"));
    assert!(r.is_excluded("a/b/c/d"));
}

#[test]
fn walker_can_skip_fully_excluded_directories() {
    let r = rules("target\nnode_modules\n!node_modules/keep/*.js\n!**/important\n");
    assert!(r.may_contain_included("src"));
    // `**/important` could be anywhere, so nothing excluded is skippable.
    assert!(r.may_contain_included("target"));

    let r = rules("target\nnode_modules\n!node_modules/keep/*.js\n");
    assert!(!r.may_contain_included("target"));
    assert!(!r.may_contain_included("target/debug"));
    assert!(r.may_contain_included("node_modules"));
    assert!(r.may_contain_included("node_modules/keep"));
    assert!(!r.may_contain_included("node_modules/other"));
    // Below the exception's depth nothing can match.
    assert!(!r.may_contain_included("node_modules/keep/sub"));
}

#[test]
fn exception_with_wildcard_directory() {
    let r = rules("pkg\n!pkg/*/README\n");
    assert!(r.may_contain_included("pkg/a"));
    assert!(!r.is_excluded("pkg/a/README"));
    assert!(r.is_excluded("pkg/a/main.go"));
    assert!(!r.may_contain_included("pkg/a/b"));
}

#[test]
fn classes_question_marks_and_escapes() {
    let r = rules("log[0-9].txt\nf?o\n\\*star\n");
    assert!(r.is_excluded("log5.txt"));
    assert!(!r.is_excluded("logx.txt"));
    assert!(r.is_excluded("fxo"));
    assert!(!r.is_excluded("f/o"));
    assert!(r.is_excluded("*star"));
    assert!(!r.is_excluded("xstar"));
}

#[test]
fn bad_patterns_name_their_line() {
    let err = IgnoreRules::parse("ok\n# c\n  [abc\n").unwrap_err();
    assert_eq!(
        err,
        IgnoreError::BadPattern {
            line: 3,
            pattern: "[abc".to_owned(),
            reason: "malformed character class (unterminated '[' or misplaced '-' or ']')",
        }
    );
    assert_eq!(
        err.to_string(),
        ".dockerignore line 3: bad pattern \"[abc\": malformed character class (unterminated '[' or misplaced '-' or ']')"
    );
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert_eq!(
        IgnoreRules::parse("a\n ! \n").unwrap_err(),
        IgnoreError::BareExclamation { line: 2 }
    );
    assert_eq!(
        IgnoreRules::parse("x\\").unwrap_err().to_string(),
        ".dockerignore line 1: bad pattern \"x\\\\\": a pattern cannot end with \\"
    );
}
