//! Layer extraction: any tar (plain, gzip or zstd) is applied into a fresh
//! root inside a scratch directory, both ways whiteouts can be applied, and
//! afterwards nothing outside the root may have changed: the scratch
//! directory holds exactly the root and a sentinel file whose content,
//! mode, owner and link count are as before.
#![no_main]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bosun_image::{Compression, Whiteouts, apply_layer_with};
use libfuzzer_sys::fuzz_target;

const SENTINEL: &[u8] = b"outside the root\n";

struct Scratch {
    _dir: tempfile::TempDir,
    base: PathBuf,
}

fn scratch() -> &'static Scratch {
    static S: OnceLock<Scratch> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().to_owned();
        fs::write(base.join("sentinel"), SENTINEL).expect("sentinel");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(base.join("sentinel"), fs::Permissions::from_mode(0o644))
            .expect("sentinel mode");
        Scratch { _dir: dir, base }
    })
}

fn check_outside(base: &Path) {
    let mut names: Vec<String> = fs::read_dir(base)
        .expect("list scratch")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["root", "sentinel"],
        "something was written beside the root"
    );
    let sentinel = base.join("sentinel");
    let meta = fs::symlink_metadata(&sentinel).expect("sentinel");
    assert!(meta.file_type().is_file(), "the sentinel was replaced");
    assert_eq!(
        meta.nlink(),
        1,
        "the sentinel was hard-linked into the root"
    );
    assert_eq!(meta.mode() & 0o7777, 0o644, "the sentinel's mode changed");
    assert_eq!(fs::read(&sentinel).expect("read sentinel"), SENTINEL);
}

fuzz_target!(|data: &[u8]| {
    let s = scratch();
    let root = s.base.join("root");
    let Ok(compression) = Compression::detect(data) else {
        return;
    };
    for whiteouts in [Whiteouts::Delete, Whiteouts::Overlay] {
        fs::create_dir(&root).expect("root");
        let _ = apply_layer_with(&root, data, compression, whiteouts);
        check_outside(&s.base);
        // The root may hold read-only directories: make them writable first.
        make_removable(&root);
        fs::remove_dir_all(&root).expect("remove root");
    }
});

fn make_removable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            make_removable(&e.path());
        }
    }
}
