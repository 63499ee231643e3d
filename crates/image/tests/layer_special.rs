//! Device nodes and fifos, and applying a layer as an overlayfs layer
//! (`Whiteouts::Overlay`). Root tests: mknod of devices and `trusted.*`
//! extended attributes need it.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use bosun_image::{ApplyStats, Compression, LayerError, Whiteouts, apply_layer, apply_layer_with};
use bosun_testkit::require_root;
use common::{Layer, MTIME, Sandbox};
use tar::EntryType;

const OPAQUE: &str = "trusted.overlay.opaque";

/// A device entry: a header of `kind` with its numbers, no content.
fn device(layer: Layer, kind: EntryType, name: &str, major: u32, minor: u32) -> Layer {
    layer.file_with(name, b"", |h| {
        h.set_entry_type(kind);
        h.set_mode(0o620);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
    })
}

fn devices_layer() -> Vec<u8> {
    let layer = Layer::owned_by(0, 5).dir("dev");
    let layer = device(layer, EntryType::Char, "dev/null", 1, 3);
    let layer = device(layer, EntryType::Block, "dev/loop7", 7, 7);
    layer.special(EntryType::Fifo, "dev/initctl").finish()
}

fn overlay(sandbox: &Sandbox, layer: &[u8]) -> ApplyStats {
    let stats =
        apply_layer_with(&sandbox.root, layer, Compression::None, Whiteouts::Overlay).unwrap();
    sandbox.assert_contained();
    stats
}

fn is_whiteout(sandbox: &Sandbox, rel: &str) -> bool {
    fs::symlink_metadata(sandbox.path(rel))
        .is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

fn is_opaque(sandbox: &Sandbox, rel: &str) -> bool {
    xattr::get(sandbox.path(rel), OPAQUE).unwrap().as_deref() == Some(&b"y"[..])
}

#[test]
fn root_creates_devices_and_fifos_with_their_metadata() {
    require_root();
    let sandbox = Sandbox::new();
    let stats = apply_layer(&sandbox.root, &devices_layer()[..], Compression::None).unwrap();
    sandbox.assert_contained();
    assert_eq!((stats.devices, stats.fifos, stats.skipped), (2, 1, 0));

    let null = fs::symlink_metadata(sandbox.path("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    let looped = fs::symlink_metadata(sandbox.path("dev/loop7")).unwrap();
    assert!(looped.file_type().is_block_device());
    assert_eq!(looped.rdev(), nix::sys::stat::makedev(7, 7));
    let fifo = fs::symlink_metadata(sandbox.path("dev/initctl")).unwrap();
    assert!(fifo.file_type().is_fifo());
    for meta in [&null, &looped] {
        assert_eq!(meta.permissions().mode() & 0o7777, 0o620);
    }
    for meta in [&null, &looped, &fifo] {
        assert_eq!((meta.uid(), meta.gid()), (0, 5));
        assert_eq!(meta.mtime(), MTIME as i64);
    }
    // Nothing is left under the temporary name.
    let names: Vec<_> = fs::read_dir(sandbox.path("dev"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

#[test]
fn a_device_replaces_a_lower_file_and_a_lower_directory() {
    require_root();
    let sandbox = Sandbox::new();
    let lower = Layer::owned_by(0, 0)
        .file("dev/null", b"a regular file")
        .file("dev/loop7/inside", b"x")
        .finish();
    apply_layer(&sandbox.root, &lower[..], Compression::None).unwrap();
    apply_layer(&sandbox.root, &devices_layer()[..], Compression::None).unwrap();
    sandbox.assert_contained();
    let null = fs::symlink_metadata(sandbox.path("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    let looped = fs::symlink_metadata(sandbox.path("dev/loop7")).unwrap();
    assert!(looped.file_type().is_block_device());
}

#[test]
fn without_cap_mknod_devices_are_skipped_and_lower_entries_stay() {
    require_root();
    let sandbox = Sandbox::new();
    let lower = Layer::owned_by(0, 0).file("dev/null", b"lower").finish();
    apply_layer(&sandbox.root, &lower[..], Compression::None).unwrap();

    // Capabilities belong to the thread, and the apply runs on this one.
    caps::drop(None, caps::CapSet::Effective, caps::Capability::CAP_MKNOD).unwrap();
    let result = apply_layer(&sandbox.root, &devices_layer()[..], Compression::None);
    caps::raise(None, caps::CapSet::Effective, caps::Capability::CAP_MKNOD).unwrap();

    let stats = result.unwrap();
    sandbox.assert_contained();
    assert_eq!((stats.devices, stats.fifos, stats.skipped), (0, 1, 2));
    assert_eq!(fs::read(sandbox.path("dev/null")).unwrap(), b"lower");
    assert!(!sandbox.path("dev/loop7").exists());
    assert!(
        fs::symlink_metadata(sandbox.path("dev/initctl"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

#[test]
fn a_device_without_numbers_is_refused() {
    require_root();
    let sandbox = Sandbox::new();
    let layer = Layer::owned_by(0, 0)
        .special(EntryType::Char, "dev/null")
        .finish();
    let err = apply_layer(&sandbox.root, &layer[..], Compression::None).unwrap_err();
    assert!(
        matches!(&err, LayerError::BadHeader { entry, field: "device major", .. } if entry == "dev/null"),
        "{err}"
    );
}

#[test]
fn overlay_mode_turns_whiteouts_into_overlay_markers() {
    require_root();
    let sandbox = Sandbox::new();
    let layer = Layer::owned_by(0, 0)
        .dir("etc")
        .file("etc/.wh.passwd", b"")
        .file("etc/kept", b"k")
        .dir("var")
        .file("var/.wh..wh..opq", b"")
        .file("var/new", b"n")
        // Parent not listed: made, so that the whiteout sits where overlayfs looks.
        .file("usr/lib/.wh.gone", b"")
        .file(".wh..wh..plnk", b"")
        .finish();
    let stats = overlay(&sandbox, &layer);
    assert_eq!(stats.whiteouts, 4);
    assert!(is_whiteout(&sandbox, "etc/passwd"));
    assert!(is_whiteout(&sandbox, "usr/lib/gone"));
    assert!(is_opaque(&sandbox, "var"));
    assert!(!is_opaque(&sandbox, "etc"));
    assert_eq!(fs::read(sandbox.path("var/new")).unwrap(), b"n");
    for marker in [
        "etc/.wh.passwd",
        "var/.wh..wh..opq",
        ".wh..wh..plnk",
        ".wh.passwd",
    ] {
        assert!(!sandbox.path(marker).exists(), "{marker}");
    }
    // Directory times are still those of the layer: markers are made before.
    assert_eq!(
        fs::metadata(sandbox.path("etc")).unwrap().mtime(),
        MTIME as i64
    );
}

#[test]
fn overlay_mode_whiteouts_never_hide_this_layers_entries() {
    require_root();
    let sandbox = Sandbox::new();
    let layer = Layer::owned_by(0, 0)
        // Written, then whited out: the file stays (it already hides a lower one).
        .file("file", b"mine")
        .file(".wh.file", b"")
        // A directory of this layer, then whited out: it must hide the lower
        // one, so it becomes opaque.
        .file("dir/mine", b"m")
        .file(".wh.dir", b"")
        // Whited out, then made again as a directory: opaque too.
        .file(".wh.again", b"")
        .dir("again")
        // Whited out, then written below without the directory's own entry.
        .file(".wh.implicit", b"")
        .file("implicit/x", b"x")
        // Whited out, then replaced by a file: the file hides the lower one.
        .file(".wh.replaced", b"")
        .file("replaced", b"r")
        .finish();
    overlay(&sandbox, &layer);
    assert_eq!(fs::read(sandbox.path("file")).unwrap(), b"mine");
    assert!(is_opaque(&sandbox, "dir"));
    assert_eq!(fs::read(sandbox.path("dir/mine")).unwrap(), b"m");
    assert!(is_opaque(&sandbox, "again"));
    assert!(is_opaque(&sandbox, "implicit"));
    assert_eq!(fs::read(sandbox.path("implicit/x")).unwrap(), b"x");
    assert_eq!(fs::read(sandbox.path("replaced")).unwrap(), b"r");
}

#[test]
fn overlay_mode_needs_an_empty_root_and_keeps_the_safety_rules() {
    require_root();
    let sandbox = Sandbox::new();
    fs::write(sandbox.path("left-over"), b"").unwrap();
    let layer = Layer::owned_by(0, 0).file("a", b"a").finish();
    let err = apply_layer_with(
        &sandbox.root,
        &layer[..],
        Compression::None,
        Whiteouts::Overlay,
    )
    .unwrap_err();
    assert!(matches!(err, LayerError::RootNotEmpty { .. }), "{err}");
    assert_eq!(err.kind(), bosun_oci::ErrorKind::Conflict);
    fs::remove_file(sandbox.path("left-over")).unwrap();

    let outside = sandbox.outside().to_str().unwrap().to_owned();
    let hostile = [
        Layer::owned_by(0, 0).file("../.wh.sentinel", b"").finish(),
        Layer::owned_by(0, 0)
            .symlink("link", &outside)
            .file("link/.wh.sentinel", b"")
            .finish(),
        Layer::owned_by(0, 0)
            .symlink("link", &outside)
            .file("link/.wh..wh..opq", b"")
            .finish(),
        Layer::owned_by(0, 0).file("dir/.wh...", b"").finish(),
    ];
    for layer in hostile {
        for child in fs::read_dir(&sandbox.root).unwrap() {
            let child = child.unwrap().path();
            if child.is_dir() && !child.is_symlink() {
                fs::remove_dir_all(child).unwrap();
            } else {
                fs::remove_file(child).unwrap();
            }
        }
        apply_layer_with(
            &sandbox.root,
            &layer[..],
            Compression::None,
            Whiteouts::Overlay,
        )
        .unwrap_err();
        sandbox.assert_contained();
        assert!(xattr::get(sandbox.outside(), OPAQUE).unwrap().is_none());
    }
}
