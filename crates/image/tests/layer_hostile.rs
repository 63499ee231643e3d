//! Hostile layers: every escape attempt is refused with an error naming the
//! entry, and nothing appears, changes or gets linked beside the root.

mod common;

use std::fs;

use bosun_image::{Compression, LayerError, apply_layer};
use bosun_oci::ErrorKind;
use common::{Layer, Sandbox};

/// Applies `layer` and returns its error, after checking containment.
fn refused(sandbox: &Sandbox, layer: Vec<u8>) -> LayerError {
    let result = apply_layer(&sandbox.root, &layer[..], Compression::None);
    sandbox.assert_contained();
    let err = result.expect_err("the hostile layer was accepted");
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    err
}

#[test]
fn parent_dir_names_are_refused() {
    for name in [
        "../escape",
        "/abs/../../escape",
        "a/../../escape",
        "./../escape",
        "a/..",
    ] {
        let sandbox = Sandbox::new();
        let err = refused(&sandbox, Layer::new().file(name, b"pwned").finish());
        assert!(matches!(err, LayerError::ParentDir { .. }), "{name}: {err}");
        assert!(
            err.to_string().contains(&format!("{name:?}")),
            "names the entry: {err}"
        );
    }
}

#[test]
fn parent_dir_in_long_and_pax_names_is_refused() {
    let deep = format!("{}/../../../../../../escape", "d/".repeat(60));
    let sandbox = Sandbox::new();
    let err = refused(
        &sandbox,
        Layer::new().long_name_file(&deep, b"pwned").finish(),
    );
    assert!(matches!(err, LayerError::ParentDir { .. }), "{err}");

    let sandbox = Sandbox::new();
    let err = refused(
        &sandbox,
        Layer::new()
            .pax_name_file("../pax-escape", b"pwned")
            .finish(),
    );
    assert!(matches!(err, LayerError::ParentDir { .. }), "{err}");
    assert!(err.to_string().contains("../pax-escape"), "{err}");
}

#[test]
fn absolute_names_land_inside_the_root() {
    let sandbox = Sandbox::new();
    let outside = sandbox.outside().join("abs-escape");
    let layer = Layer::new()
        .file(outside.to_str().unwrap(), b"contained")
        .finish();
    apply_layer(&sandbox.root, &layer[..], Compression::None).unwrap();
    sandbox.assert_contained();
    let inside = sandbox.root.join(outside.strip_prefix("/").unwrap());
    assert_eq!(fs::read(inside).unwrap(), b"contained");
}

#[test]
fn writing_through_a_symlink_to_root_is_refused() {
    let sandbox = Sandbox::new();
    let layer = Layer::new()
        .symlink("evil", "/")
        .file("evil/etc/passwd", b"pwned")
        .finish();
    let err = refused(&sandbox, layer);
    assert!(
        matches!(&err, LayerError::ThroughSymlink { entry, symlink } if entry == "evil/etc/passwd" && symlink == "evil"),
        "{err}"
    );
}

#[test]
fn writing_through_a_symlink_to_outside_is_refused() {
    let sandbox = Sandbox::new();
    let target = sandbox.outside().to_str().unwrap().to_owned();
    for layer in [
        Layer::new()
            .symlink("evil", &target)
            .file("evil/escaped", b"pwned"),
        Layer::new().symlink("evil", &target).dir("evil/escaped"),
        Layer::new()
            .symlink("evil", &target)
            .symlink("evil/escaped", "/"),
        Layer::new()
            .dir("a")
            .symlink("a/evil", &target)
            .file("a/evil/b/escaped", b"x"),
        Layer::new()
            .file("f", b"x")
            .symlink("evil", &target)
            .hardlink("evil/escaped", "f"),
    ] {
        let err = refused(&sandbox, layer.finish());
        assert!(matches!(err, LayerError::ThroughSymlink { .. }), "{err}");
    }
}

#[test]
fn relative_symlink_up_is_refused() {
    let sandbox = Sandbox::new();
    let err = refused(
        &sandbox,
        Layer::new()
            .symlink("up", "..")
            .file("up/x", b"pwned")
            .finish(),
    );
    assert!(matches!(err, LayerError::ThroughSymlink { .. }), "{err}");
    let err = refused(
        &sandbox,
        Layer::new()
            .dir("d")
            .symlink("d/up", "../..")
            .file("d/up/x", b"pwned")
            .finish(),
    );
    assert!(matches!(err, LayerError::ThroughSymlink { .. }), "{err}");
}

#[test]
fn a_symlink_from_a_lower_layer_is_not_followed_either() {
    let sandbox = Sandbox::new();
    let target = sandbox.outside().to_str().unwrap().to_owned();
    let lower = Layer::new().symlink("lib", &target).finish();
    apply_layer(&sandbox.root, &lower[..], Compression::None).unwrap();
    let err = refused(
        &sandbox,
        Layer::new().file("lib/escaped", b"pwned").finish(),
    );
    assert!(matches!(err, LayerError::ThroughSymlink { .. }), "{err}");
}

#[test]
fn an_entry_named_like_a_symlink_replaces_it() {
    let sandbox = Sandbox::new();
    let sentinel = sandbox.outside().join("sentinel");
    let layer = Layer::new()
        .symlink("evil", sentinel.to_str().unwrap())
        .file("evil", b"replaced")
        .symlink("evil2", sandbox.outside().to_str().unwrap())
        .dir("evil2")
        .file("evil2/inside", b"inside")
        .finish();
    apply_layer(&sandbox.root, &layer[..], Compression::None).unwrap();
    sandbox.assert_contained();
    let meta = fs::symlink_metadata(sandbox.path("evil")).unwrap();
    assert!(meta.is_file());
    assert_eq!(fs::read(sandbox.path("evil")).unwrap(), b"replaced");
    assert!(
        fs::symlink_metadata(sandbox.path("evil2"))
            .unwrap()
            .is_dir()
    );
    assert_eq!(fs::read(sandbox.path("evil2/inside")).unwrap(), b"inside");
}

#[test]
fn hard_links_out_of_the_root_are_refused() {
    let sandbox = Sandbox::new();
    let err = refused(
        &sandbox,
        Layer::new().hardlink("passwd", "../../etc/passwd").finish(),
    );
    assert!(matches!(err, LayerError::LinkParentDir { .. }), "{err}");
    assert!(err.to_string().contains("../../etc/passwd"), "{err}");

    let err = refused(&sandbox, Layer::new().hardlink("s", "../sentinel").finish());
    assert!(matches!(err, LayerError::LinkParentDir { .. }), "{err}");
}

#[test]
fn hard_links_through_a_symlinked_parent_are_refused() {
    let sandbox = Sandbox::new();
    let outside = sandbox.outside().to_str().unwrap().to_owned();
    let layer = Layer::new()
        .symlink("out", &outside)
        .hardlink("stolen", "out/sentinel")
        .finish();
    let err = refused(&sandbox, layer);
    assert!(
        matches!(&err, LayerError::LinkThroughSymlink { target, symlink, .. } if target == "out/sentinel" && symlink == "out"),
        "{err}"
    );
}

#[test]
fn absolute_hard_link_targets_stay_inside() {
    let sandbox = Sandbox::new();
    let sentinel = sandbox.outside().join("sentinel");
    // The target exists outside but not inside: it must not be found.
    let err = refused(
        &sandbox,
        Layer::new()
            .hardlink("h", sentinel.to_str().unwrap())
            .finish(),
    );
    assert!(
        matches!(&err, LayerError::BadLinkTarget { reason, .. } if *reason == "does not exist"),
        "{err}"
    );
}

#[test]
fn a_hard_link_to_a_symlink_links_the_symlink_itself() {
    let sandbox = Sandbox::new();
    let sentinel = sandbox.outside().join("sentinel");
    let layer = Layer::new()
        .symlink("s", sentinel.to_str().unwrap())
        .hardlink("h", "s")
        .finish();
    apply_layer(&sandbox.root, &layer[..], Compression::None).unwrap();
    sandbox.assert_contained();
    let h = fs::symlink_metadata(sandbox.path("h")).unwrap();
    assert!(h.file_type().is_symlink());
}

#[test]
fn whiteouts_through_symlinks_are_refused() {
    let sandbox = Sandbox::new();
    let outside = sandbox.outside().to_str().unwrap().to_owned();
    for layer in [
        Layer::new()
            .symlink("out", &outside)
            .file("out/.wh.sentinel", b""),
        Layer::new()
            .symlink("out", &outside)
            .file("out/.wh..wh..opq", b""),
    ] {
        let err = refused(&sandbox, layer.finish());
        assert!(matches!(err, LayerError::ThroughSymlink { .. }), "{err}");
    }
}

#[test]
fn whiteouts_of_dot_names_are_refused() {
    let sandbox = Sandbox::new();
    fs::create_dir(sandbox.path("d")).unwrap();
    fs::write(sandbox.path("d/keep"), b"x").unwrap();
    for name in [".wh.", "d/.wh..", "d/.wh..."] {
        let err = refused(&sandbox, Layer::new().file(name, b"").finish());
        assert!(
            matches!(err, LayerError::BadWhiteout { .. }),
            "{name}: {err}"
        );
    }
    assert!(sandbox.path("d/keep").exists());
}

#[test]
fn directory_times_are_not_set_through_a_later_symlink() {
    let sandbox = Sandbox::new();
    let outside = sandbox.outside().to_str().unwrap().to_owned();
    // `d` gets a deferred mtime, then becomes a symlink to the sandbox parent,
    // whose mtime `assert_contained` checks.
    let layer = Layer::new().dir("d").symlink("d", &outside).finish();
    apply_layer(&sandbox.root, &layer[..], Compression::None).unwrap();
    sandbox.assert_contained();
}

#[test]
fn a_file_cannot_replace_the_root() {
    let sandbox = Sandbox::new();
    let err = refused(&sandbox, Layer::new().file("/", b"x").finish());
    assert!(matches!(err, LayerError::RootEntry { .. }), "{err}");
}

#[test]
fn unknown_entry_types_are_refused() {
    let sandbox = Sandbox::new();
    let layer = Layer::new()
        .special(tar::EntryType::new(b'V'), "label")
        .finish();
    let err = refused(&sandbox, layer);
    assert!(
        matches!(err, LayerError::UnsupportedType { kind: 'V', .. }),
        "{err}"
    );
}

#[test]
fn garbage_and_truncated_layers_are_errors() {
    let sandbox = Sandbox::new();
    let err = refused(&sandbox, vec![0x42; 1024]);
    assert!(matches!(err, LayerError::Read(_)), "{err}");

    let mut layer = Layer::new().file("big", &[7u8; 10_000]).finish();
    layer.truncate(3000);
    let err = refused(&sandbox, layer);
    assert!(matches!(err, LayerError::Read(_)), "{err}");

    let mut gz = Layer::new().file("a", b"x").gzip();
    let n = gz.len();
    gz[n - 6] ^= 0xff; // break the crc
    let result = apply_layer(&sandbox.root, &gz[..], Compression::Gzip);
    sandbox.assert_contained();
    assert!(matches!(result, Err(LayerError::Read(_))), "{result:?}");
}

#[test]
fn overlay_xattrs_are_refused() {
    let sandbox = Sandbox::new();
    for key in [
        "trusted.overlay.redirect",
        "trusted.overlay.opaque",
        "user.overlay.metacopy",
    ] {
        let record = format!("SCHILY.xattr.{key}");
        let layer = Layer::new()
            .pax(&[(&record, b"/elsewhere")])
            .dir("d")
            .finish();
        let err = refused(&sandbox, layer);
        assert!(matches!(err, LayerError::ForbiddenXattr { .. }), "{err}");
        assert!(err.to_string().contains(key), "{err}");
    }
}

#[test]
fn absurd_header_values_are_errors_not_panics() {
    let sandbox = Sandbox::new();
    let layer = Layer::new()
        .file_with("f", b"x", |h| h.set_mtime(u64::MAX))
        .finish();
    let err = refused(&sandbox, layer);
    assert!(
        matches!(err, LayerError::BadHeader { field: "mtime", .. }),
        "{err}"
    );

    let layer = Layer::owned_by(u64::from(u32::MAX) + 1, 0)
        .file("f", b"x")
        .finish();
    let err = refused(&sandbox, layer);
    assert!(
        matches!(err, LayerError::BadHeader { field: "uid", .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("4294967296 is out of range"),
        "{err}"
    );
}
