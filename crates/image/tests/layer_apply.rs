//! Layer application: content, metadata, links, whiteouts, compression.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use bosun_image::{ApplyStats, Compression, ContentStore, LayerError, apply_layer};
use common::{Layer, MTIME, Sandbox};
use tar::EntryType;

fn apply(sandbox: &Sandbox, layer: &[u8]) -> ApplyStats {
    let stats = apply_layer(&sandbox.root, layer, Compression::None).unwrap();
    sandbox.assert_contained();
    stats
}

fn mode(sandbox: &Sandbox, rel: &str) -> u32 {
    fs::symlink_metadata(sandbox.path(rel))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn exists(sandbox: &Sandbox, rel: &str) -> bool {
    fs::symlink_metadata(sandbox.path(rel)).is_ok()
}

#[test]
fn extracts_files_dirs_and_links_with_metadata() {
    let sandbox = Sandbox::new();
    let layer = Layer::new()
        .dir("./")
        .dir_mode("etc", 0o750)
        .file_mode("etc/hosts", b"127.0.0.1 localhost\n", 0o600)
        .file_mode("bin/tool", b"#!/bin/sh\n", 0o4755)
        .dir_mode("tmp", 0o1777)
        .symlink("etc/localtime", "/usr/share/zoneinfo/UTC")
        .hardlink("bin/tool2", "/bin/tool")
        .special(EntryType::Fifo, "run/fifo")
        .finish();
    let stats = apply(&sandbox, &layer);
    assert_eq!(stats.entries, 8);
    assert_eq!(
        (stats.files, stats.dirs, stats.symlinks, stats.hardlinks),
        (2, 2, 1, 1)
    );
    // Anyone may make a fifo; devices are in layer_special.rs.
    assert_eq!((stats.fifos, stats.skipped), (1, 0));
    assert_eq!(stats.bytes, 30);

    assert_eq!(
        fs::read(sandbox.path("etc/hosts")).unwrap(),
        b"127.0.0.1 localhost\n"
    );
    assert_eq!(mode(&sandbox, "etc"), 0o750);
    assert_eq!(mode(&sandbox, "etc/hosts"), 0o600);
    assert_eq!(mode(&sandbox, "bin/tool"), 0o4755, "setuid survives");
    assert_eq!(mode(&sandbox, "tmp"), 0o1777, "sticky bit survives");
    // `bin` was not in the layer: made with the usual default.
    assert!(fs::symlink_metadata(sandbox.path("bin")).unwrap().is_dir());
    assert_eq!(
        fs::read_link(sandbox.path("etc/localtime"))
            .unwrap()
            .to_str(),
        Some("/usr/share/zoneinfo/UTC"),
        "symlink targets are kept verbatim"
    );
    let tool = fs::metadata(sandbox.path("bin/tool")).unwrap();
    let tool2 = fs::metadata(sandbox.path("bin/tool2")).unwrap();
    assert_eq!(tool.ino(), tool2.ino(), "a hard link shares the inode");
    assert_eq!(tool.nlink(), 2);
    let fifo = fs::symlink_metadata(sandbox.path("run/fifo")).unwrap();
    assert!(fifo.file_type().is_fifo(), "{fifo:?}");

    for rel in ["etc", "etc/hosts", "bin/tool", "tmp"] {
        let mtime = fs::symlink_metadata(sandbox.path(rel)).unwrap().mtime();
        assert_eq!(mtime, MTIME as i64, "{rel} keeps its mtime");
    }
}

#[test]
fn gzip_layers_are_detected_and_applied() {
    let sandbox = Sandbox::new();
    let gz = Layer::new().dir("a").file("a/b", b"compressed").gzip();
    let mut reader = BufReader::new(&gz[..]);
    let compression = Compression::detect(reader.fill_buf().unwrap()).unwrap();
    assert_eq!(compression, Compression::Gzip);
    let stats = apply_layer(&sandbox.root, reader, compression).unwrap();
    sandbox.assert_contained();
    assert_eq!(stats.files, 1);
    assert_eq!(fs::read(sandbox.path("a/b")).unwrap(), b"compressed");
}

#[test]
fn whiteout_removes_lower_files_and_dirs() {
    let sandbox = Sandbox::new();
    let lower = Layer::new()
        .file("a/keep", b"k")
        .file("a/gone", b"g")
        .file("a/sub/deep", b"d")
        .file("b", b"b")
        .finish();
    apply(&sandbox, &lower);
    let upper = Layer::new()
        .file("a/.wh.gone", b"")
        .file("a/.wh.sub", b"")
        .file(".wh.b", b"")
        .file("a/.wh.never-existed", b"")
        .file("missing/.wh.x", b"")
        .finish();
    let stats = apply(&sandbox, &upper);
    assert_eq!(stats.whiteouts, 5);
    assert!(exists(&sandbox, "a/keep"));
    for gone in ["a/gone", "a/sub", "b", "missing"] {
        assert!(!exists(&sandbox, gone), "{gone} should be gone");
    }
    for marker in ["a/.wh.gone", "a/.wh.sub", ".wh.b"] {
        assert!(!exists(&sandbox, marker), "{marker} is not created");
    }
}

#[test]
fn opaque_dir_hides_lower_contents_but_keeps_this_layers() {
    let sandbox = Sandbox::new();
    let lower = Layer::new()
        .file("d/old", b"o")
        .file("d/olddir/x", b"x")
        .file("d/shared/lower", b"l")
        .file("other/stays", b"s")
        .finish();
    apply(&sandbox, &lower);
    // The marker comes after some of this layer's entries, as tar order allows.
    let upper = Layer::new()
        .dir("d")
        .file("d/new", b"n")
        .file("d/shared/upper", b"u")
        .file("d/.wh..wh..opq", b"")
        .file("d/later", b"l")
        .finish();
    apply(&sandbox, &upper);
    for kept in ["d/new", "d/shared/upper", "d/later", "other/stays"] {
        assert!(exists(&sandbox, kept), "{kept} should stay");
    }
    for gone in ["d/old", "d/olddir", "d/shared/lower", "d/.wh..wh..opq"] {
        assert!(!exists(&sandbox, gone), "{gone} should be gone");
    }
}

#[test]
fn later_entries_replace_earlier_ones() {
    let sandbox = Sandbox::new();
    let lower = Layer::new()
        .file("x", b"file")
        .file("y/z", b"in a dir")
        .dir_mode("keep", 0o700)
        .file("keep/child", b"c")
        .symlink("l", "/somewhere")
        .finish();
    apply(&sandbox, &lower);
    let upper = Layer::new()
        .dir("x")
        .file("y", b"now a file")
        .dir_mode("keep", 0o755)
        .file("l", b"no longer a link")
        .finish();
    apply(&sandbox, &upper);
    assert!(fs::symlink_metadata(sandbox.path("x")).unwrap().is_dir());
    assert_eq!(fs::read(sandbox.path("y")).unwrap(), b"now a file");
    assert_eq!(
        mode(&sandbox, "keep"),
        0o755,
        "a dir over a dir takes the new mode"
    );
    assert!(exists(&sandbox, "keep/child"), "and keeps its contents");
    assert!(fs::symlink_metadata(sandbox.path("l")).unwrap().is_file());
}

#[test]
fn a_file_below_a_file_is_an_error() {
    let sandbox = Sandbox::new();
    let layer = Layer::new().file("f", b"x").file("f/g", b"y").finish();
    let err = apply_layer(&sandbox.root, &layer[..], Compression::None).unwrap_err();
    assert!(matches!(err, LayerError::NotADirectory { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "layer entry \"f/g\": parent \"f\" is not a directory"
    );
}

#[test]
fn a_missing_root_is_not_found() {
    let sandbox = Sandbox::new();
    let missing = sandbox.path("nope");
    let err = apply_layer(&missing, std::io::empty(), Compression::None).unwrap_err();
    assert_eq!(err.kind(), bosun_oci::ErrorKind::NotFound, "{err}");
}

#[test]
fn a_layer_from_the_store_is_verified_to_its_end() {
    let store_dir = tempfile::tempdir().unwrap();
    let store = ContentStore::new(store_dir.path()).unwrap();
    let layer = Layer::new().file("a", b"x").finish();
    let digest = store.put(&layer).unwrap();

    let sandbox = Sandbox::new();
    apply_layer(
        &sandbox.root,
        store.open(&digest).unwrap(),
        Compression::None,
    )
    .unwrap();

    // Corrupt the blob after the end-of-archive marker: the tar parser never
    // looks there, so only the digest check can notice.
    let blob = store_dir.path().join("blobs/sha256").join(digest.hex());
    let mut bytes = fs::read(&blob).unwrap();
    bytes.extend_from_slice(&[0u8; 512]);
    fs::write(&blob, bytes).unwrap();
    let sandbox = Sandbox::new();
    let err = apply_layer(
        &sandbox.root,
        store.open(&digest).unwrap(),
        Compression::None,
    )
    .unwrap_err();
    assert!(
        matches!(&err, LayerError::Read(e) if e.to_string().contains("is corrupt")),
        "{err}"
    );
}

/// Ownership needs root: CI runs as root, and this fails loudly elsewhere.
#[test]
fn root_preserves_ownership_and_setuid() {
    let probe = tempfile::tempfile().unwrap().metadata().unwrap();
    assert_eq!(probe.uid(), 0, "this test needs root (CI runs as root)");

    let sandbox = Sandbox::new();
    let layer = Layer::owned_by(1234, 5678)
        .dir("home")
        .file_mode("home/suid", b"x", 0o6755)
        .symlink("home/link", "suid")
        .finish();
    apply(&sandbox, &layer);
    for rel in ["home", "home/suid", "home/link"] {
        let meta = fs::symlink_metadata(sandbox.path(rel)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1234, 5678), "{rel}");
    }
    assert_eq!(
        mode(&sandbox, "home/suid"),
        0o6755,
        "chown must not clear setuid/setgid"
    );
}

#[test]
fn extended_attributes_are_applied() {
    let sandbox = Sandbox::new();
    let layer = Layer::new()
        .pax(&[("SCHILY.xattr.user.comment", b"a dir")])
        .dir("d")
        .pax(&[
            ("SCHILY.xattr.user.comment", b"hello"),
            ("SCHILY.xattr.user.binary", &[0, 1, 2, 255]),
            ("mtime", b"1600000000.5"),
        ])
        .file("d/f", b"content")
        .finish();
    let stats = apply(&sandbox, &layer);
    assert_eq!(stats.xattrs, 3);
    let get = |rel: &str, name: &str| xattr::get(sandbox.path(rel), name).unwrap();
    assert_eq!(get("d", "user.comment").as_deref(), Some(&b"a dir"[..]));
    assert_eq!(get("d/f", "user.comment").as_deref(), Some(&b"hello"[..]));
    assert_eq!(
        get("d/f", "user.binary").as_deref(),
        Some(&[0u8, 1, 2, 255][..])
    );
}

/// `security.capability` needs root to set, and chown drops it: so it must be
/// set after the owner.
#[test]
fn root_file_capabilities_survive_chown() {
    let probe = tempfile::tempfile().unwrap().metadata().unwrap();
    assert_eq!(probe.uid(), 0, "this test needs root (CI runs as root)");

    // vfs_cap_data revision 2, effective, permitted = CAP_NET_RAW (bit 13).
    let cap: [u8; 20] = [
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let sandbox = Sandbox::new();
    let layer = Layer::owned_by(1234, 5678)
        .pax(&[("SCHILY.xattr.security.capability", &cap)])
        .file_mode("ping", b"\x7fELF", 0o755)
        .finish();
    apply(&sandbox, &layer);
    let got = xattr::get(sandbox.path("ping"), "security.capability").unwrap();
    assert_eq!(got.as_deref(), Some(&cap[..]));
    assert_eq!(fs::metadata(sandbox.path("ping")).unwrap().uid(), 1234);
}
