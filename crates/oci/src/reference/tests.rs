use super::*;

const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn parse(s: &str) -> ImageRef {
    s.parse()
        .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

#[test]
fn normalises_like_docker() {
    let d = format!("sha256:{HEX}");
    // (input, registry, repository, tag)
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        ("busybox", "docker.io", "library/busybox", Some("latest")),
        ("busybox:1.36", "docker.io", "library/busybox", Some("1.36")),
        ("user/app", "docker.io", "user/app", Some("latest")),
        (
            "docker.io/busybox",
            "docker.io",
            "library/busybox",
            Some("latest"),
        ),
        (
            "index.docker.io/busybox",
            "docker.io",
            "library/busybox",
            Some("latest"),
        ),
        (
            "docker.io/library/busybox:musl",
            "docker.io",
            "library/busybox",
            Some("musl"),
        ),
        (
            "quay.io/coreos/etcd:v3.5",
            "quay.io",
            "coreos/etcd",
            Some("v3.5"),
        ),
        ("ghcr.io/a/b/c/d:tag", "ghcr.io", "a/b/c/d", Some("tag")),
        ("localhost/app", "localhost", "app", Some("latest")),
        (
            "localhost:5000/app",
            "localhost:5000",
            "app",
            Some("latest"),
        ),
        ("localhost:5000/a/b:t", "localhost:5000", "a/b", Some("t")),
        ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", Some("latest")),
        ("[::1]:5000/x:y", "[::1]:5000", "x", Some("y")),
        ("[fe80::1]/x", "[fe80::1]", "x", Some("latest")),
        (
            "my-registry.example.com/x",
            "my-registry.example.com",
            "x",
            Some("latest"),
        ),
        (
            "Registry.Example.com/x",
            "Registry.Example.com",
            "x",
            Some("latest"),
        ),
        (
            "x/a.b-c__d---e/f_g",
            "docker.io",
            "x/a.b-c__d---e/f_g",
            Some("latest"),
        ),
        (
            "localhost:5000",
            "docker.io",
            "library/localhost",
            Some("5000"),
        ),
        ("x:Tag_1.2-3", "docker.io", "library/x", Some("Tag_1.2-3")),
        ("x:_", "docker.io", "library/x", Some("_")),
    ];
    for &(input, registry, repository, tag) in cases {
        let r = parse(input);
        assert_eq!(r.registry(), registry, "{input}");
        assert_eq!(r.repository(), repository, "{input}");
        assert_eq!(r.tag(), tag, "{input}");
        assert_eq!(r.digest(), None, "{input}");
    }

    let r = parse(&format!("busybox@{d}"));
    assert_eq!(r.name(), "docker.io/library/busybox");
    assert_eq!(r.tag(), None, "a digest without a tag gets no default tag");
    assert_eq!(r.digest().map(Digest::as_str), Some(d.as_str()));

    let r = parse(&format!("localhost:5000/a/b:t@{d}"));
    assert_eq!(r.registry(), "localhost:5000");
    assert_eq!(r.repository(), "a/b");
    assert_eq!(r.tag(), Some("t"));
    assert_eq!(r.digest().map(Digest::as_str), Some(d.as_str()));
}

#[test]
fn display_is_fully_qualified_and_round_trips() {
    let d = format!("sha256:{HEX}");
    let cases = [
        ("busybox", "docker.io/library/busybox:latest".to_owned()),
        ("localhost:5000/a/b:t", "localhost:5000/a/b:t".to_owned()),
        (&format!("x@{d}"), format!("docker.io/library/x@{d}")),
        (&format!("q.io/x:1@{d}"), format!("q.io/x:1@{d}")),
    ];
    for (input, want) in cases {
        let r = parse(input);
        assert_eq!(r.to_string(), want);
        assert_eq!(parse(&want), r, "{want} parses back to the same value");
    }
}

#[test]
fn serde_uses_the_string_form() {
    let r = parse("busybox:1");
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(json, "\"docker.io/library/busybox:1\"");
    assert_eq!(serde_json::from_str::<ImageRef>(&json).unwrap(), r);
    assert!(serde_json::from_str::<ImageRef>("\"Busybox\"").is_err());
}

#[test]
fn rejects_invalid_references() {
    let long_tag = format!("x:{}", "t".repeat(129));
    let long_name = format!("{}/x", "a".repeat(260));
    let cases: Vec<(String, &str)> = vec![
        ("".into(), "image reference is empty"),
        (
            "Library/x".into(),
            "repository \"Library\" must be lower-case",
        ),
        ("Busybox".into(), "must be lower-case"),
        ("docker.io/Library/x".into(), "must be lower-case"),
        ("a//b".into(), "empty path component"),
        ("/a".into(), "empty path component"),
        ("a/".into(), "empty path component"),
        (":tag".into(), "empty path component"),
        ("localhost:5000/".into(), "empty path component"),
        (long_tag.clone(), "invalid tag"),
        ("x:".into(), "invalid tag \"\""),
        ("x:.a".into(), "invalid tag \".a\""),
        ("x:-a".into(), "invalid tag"),
        ("x:a+b".into(), "invalid tag"),
        ("x:a:b".into(), "invalid tag \"a:b\""),
        ("a/b c".into(), "invalid repository component \"b c\""),
        ("-a".into(), "invalid repository component \"-a\""),
        ("a-".into(), "invalid repository component"),
        ("a..b".into(), "invalid repository component"),
        ("a___b".into(), "invalid repository component"),
        ("a.-b".into(), "invalid repository component"),
        ("a/.b".into(), "invalid repository component"),
        ("exa_mple.com/x".into(), "invalid registry \"exa_mple.com\""),
        // A '.' makes the first component a registry, as in Docker.
        ("a.b__c/x".into(), "invalid registry \"a.b__c\""),
        ("-bad.com/x".into(), "invalid registry"),
        ("bad-.com/x".into(), "invalid registry"),
        ("a..com/x".into(), "invalid registry"),
        ("host:port/x".into(), "invalid registry \"host:port\""),
        ("host:/x".into(), "invalid registry"),
        ("[::1/x".into(), "invalid registry"),
        ("[]:5000/x".into(), "invalid registry"),
        ("[::1]x/y".into(), "invalid registry"),
        ("x@sha256:abc".into(), "needs 64"),
        ("x@".into(), "not of the form"),
        (
            "x@md5:d41d8cd98f00b204e9800998ecf8427e".into(),
            "unsupported algorithm",
        ),
        (format!("x@sha256:{HEX}@y"), "hex characters"),
        (HEX.into(), "looks like an image id"),
        (long_name.clone(), "longer than 255"),
    ];
    for (input, want) in &cases {
        let err = input.parse::<ImageRef>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(want), "{input:?}: got {msg:?}, want {want:?}");
        if !input.is_empty() {
            assert!(
                msg.contains(&format!("{input:?}")),
                "names the reference: {msg}"
            );
        }
        assert_eq!(err.kind(), ErrorKind::Invalid);
    }
}

#[test]
fn tag_length_limit_is_128() {
    assert!(format!("x:{}", "t".repeat(128)).parse::<ImageRef>().is_ok());
    assert!(
        format!("x:{}", "t".repeat(129))
            .parse::<ImageRef>()
            .is_err()
    );
}

#[test]
fn name_length_limit_is_255() {
    // Counted after normalisation, as Docker does: "docker.io/" + 241 + "/abc"
    // is 255 characters.
    let ok = format!("{}/abc", "a".repeat(241));
    assert!(ok.parse::<ImageRef>().is_ok());
    let too_long = format!("{}/abcd", "a".repeat(241));
    assert!(too_long.parse::<ImageRef>().is_err());
    let ok = format!("registry.example/{}", "a".repeat(238));
    assert!(ok.parse::<ImageRef>().is_ok());
}

#[test]
fn a_short_name_that_normalises_past_255_is_refused() {
    // Found by fuzz/image_ref: it parsed, and printed as a name that did not.
    let short = format!("us_{}", "b".repeat(240));
    let err = short
        .parse::<ImageRef>()
        .expect_err("docker.io/library/ makes it 261");
    assert!(err.to_string().contains("longer than 255"), "{err}");
    let fits = "b".repeat(255 - "docker.io/library/".len());
    let r: ImageRef = fits.parse().expect("255 after normalisation");
    assert_eq!(r.to_string().parse::<ImageRef>().expect("round trip"), r);
}
