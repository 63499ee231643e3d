use super::*;

fn digest(s: &str) -> Digest {
    s.parse().unwrap()
}

#[test]
fn chain_ids_follow_the_oci_definition() {
    // diff_ids: sha256 of "a", "b" and "c". The chain ids were computed
    // outside bosun: `printf '%s' "<chain1> <diff2>" | sha256sum`, and so on.
    let diff_ids = [
        digest("sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"),
        digest("sha256:3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d"),
        digest("sha256:2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6"),
    ];
    let chains = chain_ids(&diff_ids);
    assert_eq!(
        chains,
        [
            diff_ids[0].clone(),
            digest("sha256:51c0c8ace48498d6f5fee6b0592cc06f2da0f3cbe09c5a34a97dce85c3889676"),
            digest("sha256:2fce7f8ce91bcf0a1428b36e1024639fdbd9469eea762dba98aa749631885106"),
        ]
    );
    assert!(chain_ids(&[]).is_empty());
    // A prefix of a stack has the prefix of its chain ids.
    assert_eq!(chain_ids(&diff_ids[..2]), chains[..2]);
}

#[test]
fn keys_are_checked() {
    for good in ["a", "build-1.step_2", &"k".repeat(128)] {
        check_key(good).unwrap();
    }
    for bad in [
        "",
        ".",
        "..",
        ".hidden",
        "a/b",
        "a:b",
        "a,b",
        "a b",
        &"k".repeat(129),
    ] {
        let err = check_key(bad).unwrap_err();
        assert!(
            matches!(err, SnapshotError::BadKey { .. }),
            "{bad:?}: {err}"
        );
        assert_eq!(err.kind(), bosun_oci::ErrorKind::Invalid);
    }
}

#[test]
fn data_dirs_that_mount_options_cannot_carry_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a:b", "a,b", "a\\b"] {
        let err = Snapshotter::open(&dir.path().join(name)).unwrap_err();
        assert!(
            matches!(err, SnapshotError::BadPath { .. }),
            "{name}: {err}"
        );
    }
    Snapshotter::open(&dir.path().join("fine dir")).unwrap();
}
