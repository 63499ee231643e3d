//! `bosun image …` end to end through the real binary, ending where images are
//! meant to end: an imported busybox rootfs, unpacked and run by the runtime.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{Bundle, Rt, bosun, require_root, unique_id};

struct Images {
    data: tempfile::TempDir,
}

impl Images {
    fn new() -> Self {
        Self {
            data: tempfile::Builder::new()
                .prefix("bosun-images-")
                .tempdir()
                .unwrap(),
        }
    }

    fn exec(&self, args: &[&str]) -> Output {
        Command::new(bosun())
            .arg("image")
            .args(args)
            // After the positionals, to prove flags may go anywhere.
            .arg("--data-dir")
            .arg(self.data.path())
            .stdin(Stdio::null())
            .output()
            .expect("spawn bosun")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        assert!(
            out.status.success(),
            "bosun image {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A busybox rootfs as a plain tarball made by tar(1).
fn busybox_tarball(dir: &Path) -> std::path::PathBuf {
    let rootfs = dir.join("rootfs");
    bosun_testkit::busybox_rootfs(&rootfs).unwrap();
    let tarball = dir.join("busybox.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    tarball
}

#[test]
fn usage_errors_exit_2() {
    let images = Images::new();
    for args in [
        &[][..],
        &["bogus"][..],
        &["tag", "one"][..],
        &["ls", "--nope"][..],
    ] {
        let out = images.exec(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
    }
    let out = images.exec(&["inspect", "nothere"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("nothere"), "{err}");
}

#[test]
fn garbage_import_fails_cleanly() {
    let images = Images::new();
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, b"definitely not a tar archive").unwrap();
    let out = images.exec(&["import", junk.to_str().unwrap(), "junk"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a tar"));
    assert_eq!(images.ok(&["ls", "-q"]), "");
}

#[test]
fn import_ls_tag_rm_unpack_and_run() {
    let images = Images::new();
    let work = tempfile::tempdir().unwrap();
    let tarball = busybox_tarball(work.path());

    let digest = images.ok(&["import", tarball.to_str().unwrap(), "busybox-test:1"]);
    assert!(digest.trim().starts_with("sha256:"), "{digest}");

    let ls = images.ok(&["ls"]);
    assert!(ls.starts_with("REPOSITORY"), "{ls}");
    let row = ls.lines().nth(1).unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[0], "docker.io/library/busybox-test", "{ls}");
    assert_eq!(cols[1], "1");
    assert_eq!(cols[2].len(), 12);
    let id = cols[2].to_owned();

    images.ok(&["tag", "busybox-test:1", "localhost:5000/bb:latest"]);
    let quiet = images.ok(&["ls", "--quiet"]);
    assert_eq!(quiet, format!("{id}\n{id}\n"));
    let json = images.ok(&["ls", "--format", "json"]);
    assert_eq!(json.lines().count(), 2);
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["ID"], id.as_str());

    let inspect: serde_json::Value =
        serde_json::from_str(&images.ok(&["inspect", &id[..8]])).unwrap();
    assert_eq!(inspect[0]["RepoTags"].as_array().unwrap().len(), 2);
    assert_eq!(inspect[0]["RootFS"]["type"], "layers");
    assert!(inspect[0]["Id"].as_str().unwrap().contains(&id));

    // Removing one tag keeps the image; the other still unpacks.
    let rm = images.ok(&["rm", "busybox-test:1"]);
    assert!(
        rm.contains("Untagged: docker.io/library/busybox-test:1"),
        "{rm}"
    );
    assert!(!rm.contains("Deleted"), "{rm}");

    require_root();
    let mut bundle = Bundle::busybox();
    let bundle_rootfs = bundle.rootfs();
    std::fs::remove_dir_all(&bundle_rootfs).unwrap();
    images.ok(&[
        "unpack",
        "localhost:5000/bb",
        bundle_rootfs.to_str().unwrap(),
    ]);
    let busybox = bundle_rootfs.join("bin/busybox");
    let mode = std::fs::metadata(&busybox).unwrap().permissions().mode();
    assert!(mode & 0o111 != 0, "bin/busybox mode {mode:o}");

    // The point of it all: the runtime runs what the image store unpacked.
    bundle.args(&["echo", "from-image"]);
    let rt = Rt::new();
    let (code, out, err) = rt.run(&bundle, &unique_id("img"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "from-image\n");

    let rm = images.ok(&["rm", "localhost:5000/bb"]);
    assert_eq!(
        rm.lines().filter(|l| l.starts_with("Deleted")).count(),
        3,
        "{rm}"
    );
    assert_eq!(images.ok(&["ls", "-q"]), "");
}

/// `save` then `load` into another store keeps the manifest digest; the saved
/// layout is read by the peers: skopeo (by its tag, as `oci:DIR:TAG`) and umoci.
#[test]
fn save_load_round_trip_and_peers_read_the_layout() {
    let work = tempfile::tempdir().unwrap();
    let tarball = busybox_tarball(work.path());
    let src = Images::new();
    let digest = src.ok(&["import", tarball.to_str().unwrap(), "example.com/bb:v1"]);
    let digest = digest.trim();

    let archive = work.path().join("bb.tar");
    src.ok(&["save", "-o", archive.to_str().unwrap(), "example.com/bb:v1"]);
    let dst = Images::new();
    let out = dst.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: example.com/bb:v1");
    let inspect: serde_json::Value =
        serde_json::from_str(&dst.ok(&["inspect", "example.com/bb:v1"])).unwrap();
    assert_eq!(
        inspect[0]["RepoDigests"][0],
        format!("example.com/bb@{digest}")
    );

    let layout = work.path().join("layout");
    src.ok(&[
        "save",
        "--format",
        "oci-dir",
        "-o",
        layout.to_str().unwrap(),
        "example.com/bb:v1",
    ]);
    let skopeo = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:v1", layout.display()))
        .output()
        .expect("skopeo must be installed (scripts/install-deps.sh)");
    assert!(
        skopeo.status.success(),
        "{}",
        String::from_utf8_lossy(&skopeo.stderr)
    );
    assert_eq!(
        bosun_image_digest(&skopeo.stdout),
        digest,
        "skopeo reads the same manifest bytes"
    );
    let umoci = Command::new("umoci")
        .args(["ls", "--layout"])
        .arg(&layout)
        .output()
        .expect("umoci must be installed (scripts/install-deps.sh)");
    assert!(
        umoci.status.success(),
        "{}",
        String::from_utf8_lossy(&umoci.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&umoci.stdout).trim(), "v1");

    // A directory written by skopeo loads back (its index names only the tag).
    let copied = work.path().join("copied");
    let status = Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("oci:{}:v2", copied.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let third = Images::new();
    let out = third.exec(&["load", "-i", copied.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give a name"));
    let out = third.ok(&[
        "load",
        "-i",
        copied.to_str().unwrap(),
        "--name",
        "localhost/copied",
    ]);
    assert_eq!(out.trim(), "Loaded image: localhost/copied:v2");

    src.ok(&["rm", "example.com/bb:v1"]);
    assert_eq!(src.ok(&["prune"]), "");
}

/// The digest of `bytes`, by coreutils, so the test needs no hashing crate.
fn bosun_image_digest(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    format!("sha256:{}", &String::from_utf8(out.stdout).unwrap()[..64])
}
