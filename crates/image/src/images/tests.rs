use std::sync::Arc;

use std::os::unix::fs::MetadataExt;

use super::*;

/// Owned by the caller, so unpacking needs no root.
fn header(kind: tar::EntryType, size: u64) -> tar::Header {
    let me = fs::metadata("/proc/self").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(0o755);
    h.set_uid(me.uid().into());
    h.set_gid(me.gid().into());
    h.set_mtime(1_700_000_000);
    h.set_size(size);
    h
}

fn rootfs_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = header(tar::EntryType::Directory, 0);
    b.append_data(&mut dir, "bin/", &[][..]).unwrap();
    for (name, body) in files {
        let mut h = header(tar::EntryType::Regular, body.len() as u64);
        b.append_data(&mut h, name, *body).unwrap();
    }
    b.into_inner().unwrap()
}

fn name(s: &str) -> ImageRef {
    s.parse().unwrap()
}

fn store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    (dir, store)
}

fn blob_count(store: &ImageStore) -> usize {
    store.content.list().unwrap().len()
}

#[test]
fn import_then_list() {
    let (_dir, store) = store();
    let tar = rootfs_tar(&[("bin/hello", b"hi\n")]);
    let digest = store.import(&tar[..], None, &name("hello")).unwrap();
    let list = store.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name.to_string(), "docker.io/library/hello:latest");
    assert_eq!(list[0].digest, digest);
    assert!(list[0].size > 0);
    assert!(list[0].created.is_some());

    let details = store.inspect("hello").unwrap();
    assert_eq!(details.id, list[0].id);
    assert_eq!(
        details.config.rootfs().diff_ids(),
        &vec![crate::sha256_of(&tar).to_string()]
    );
    assert_eq!(store.resolve(&details.id.hex()[..12]).unwrap(), digest);
    assert_eq!(store.resolve(digest.as_str()).unwrap(), digest);
    assert!(matches!(
        store.resolve("nothere"),
        Err(ImageError::NotFound(_))
    ));
}

#[test]
fn import_gzip_gives_same_diff_id() {
    let (_dir, store) = store();
    let tar = rootfs_tar(&[("bin/a", b"a")]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    store.import(&gz[..], None, &name("gz:1")).unwrap();
    let details = store.inspect("gz:1").unwrap();
    assert_eq!(
        details.config.rootfs().diff_ids()[0],
        crate::sha256_of(&tar).to_string()
    );
}

#[test]
fn tag_and_remove_keep_shared_blobs() {
    let (_dir, store) = store();
    let tar = rootfs_tar(&[("bin/x", b"x")]);
    let digest = store.import(&tar[..], None, &name("one")).unwrap();
    assert_eq!(store.tag("one", &name("two:v2")).unwrap(), digest);
    let blobs = blob_count(&store);
    assert_eq!(blobs, 3);

    let removed = store.remove("one").unwrap();
    assert_eq!(removed.deleted, Vec::<Digest>::new());
    assert_eq!(blob_count(&store), 3);
    assert_eq!(store.list().unwrap().len(), 1);
    assert!(matches!(store.remove("one"), Err(ImageError::NotFound(_))));

    let removed = store.remove("two:v2").unwrap();
    assert_eq!(removed.deleted.len(), 3);
    assert_eq!(blob_count(&store), 0);
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn remove_keeps_layers_of_other_images() {
    let (_dir, store) = store();
    let tar = rootfs_tar(&[("bin/x", b"x")]);
    store.import(&tar[..], None, &name("a")).unwrap();
    // Same layer, new config (another timestamp at worst): layer is shared.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    store.import(&tar[..], None, &name("b")).unwrap();
    assert_eq!(blob_count(&store), 5);
    let removed = store.remove("a").unwrap();
    assert_eq!(removed.deleted.len(), 2, "manifest and config only");
    store
        .unpack("b", &tempfile::tempdir().unwrap().path().join("r"))
        .unwrap();
}

#[test]
fn unpack_round_trip() {
    let (_dir, store) = store();
    let tar = rootfs_tar(&[("bin/hello", b"hi\n"), ("etc-file", b"conf")]);
    store.import(&tar[..], None, &name("rt")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("rootfs");
    store.unpack("rt", &dest).unwrap();
    assert_eq!(fs::read(dest.join("bin/hello")).unwrap(), b"hi\n");
    assert_eq!(fs::read(dest.join("etc-file")).unwrap(), b"conf");
}

#[test]
fn corrupt_layer_blob_is_a_digest_error() {
    let (dir, store) = store();
    let tar = rootfs_tar(&[("bin/hello", b"hi\n")]);
    store.import(&tar[..], None, &name("c")).unwrap();
    let details = store.inspect("c").unwrap();
    let layer = descriptor_digest(details.manifest.layers()[0].digest()).unwrap();
    let path = dir.path().join("content/blobs/sha256").join(layer.hex());
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&path, &bytes).unwrap();

    let err = store
        .unpack("c", &tempfile::tempdir().unwrap().path().join("r"))
        .unwrap_err();
    assert!(
        matches!(err, ImageError::Store(StoreError::Corrupt { .. })),
        "{err}"
    );
    assert!(err.to_string().contains(layer.as_str()), "{err}");
}

#[test]
fn diff_id_mismatch_is_detected() {
    let (_dir, store) = store();
    let tar = rootfs_tar(&[("bin/hello", b"hi\n")]);
    store.import(&tar[..], None, &name("d")).unwrap();
    let details = store.inspect("d").unwrap();

    // Same layer, a config claiming another diff_id, a manifest over both.
    let wrong = crate::sha256_of(b"not the layer");
    let mut config: serde_json::Value = serde_json::to_value(&details.config).unwrap();
    config["rootfs"]["diff_ids"] = serde_json::json!([wrong.to_string()]);
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = store.content.put(&config_bytes).unwrap();
    let mut manifest: serde_json::Value = serde_json::to_value(&details.manifest).unwrap();
    manifest["config"]["digest"] = serde_json::json!(config_digest.to_string());
    manifest["config"]["size"] = serde_json::json!(config_bytes.len());
    let manifest_digest = store
        .content
        .put(&serde_json::to_vec(&manifest).unwrap())
        .unwrap();
    let mut refs = store.read_refs().unwrap();
    refs.insert(name("bad").to_string(), manifest_digest);
    store.write_refs(&refs).unwrap();

    let err = store
        .unpack("bad", &tempfile::tempdir().unwrap().path().join("r"))
        .unwrap_err();
    let ImageError::DiffIdMismatch {
        expected, actual, ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(*expected, wrong);
    assert_eq!(*actual, crate::sha256_of(&tar));
    assert!(err.to_string().contains(wrong.as_str()), "{err}");
}

#[test]
fn concurrent_tags_all_land() {
    let (dir, store) = store();
    let tar = rootfs_tar(&[("bin/x", b"x")]);
    store.import(&tar[..], None, &name("base")).unwrap();
    let root = Arc::new(dir.path().to_owned());
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let root = Arc::clone(&root);
            std::thread::spawn(move || {
                let store = ImageStore::open(&root).unwrap();
                for j in 0..10 {
                    store.tag("base", &name(&format!("t{i}:{j}"))).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(store.list().unwrap().len(), 1 + 8 * 10);
}

#[test]
fn garbage_is_refused_and_leaves_nothing() {
    let (dir, store) = store();
    for input in [
        &b"this is not a tarball, just some words"[..],
        &[0x1f, 0x8b, 0x08, 0x00, 1, 2, 3][..],
        &[7u8; 4096][..],
        &[][..],
    ] {
        let err = store.import(input, None, &name("junk")).unwrap_err();
        assert_eq!(err.kind(), bosun_oci::ErrorKind::Invalid, "{err}");
    }
    assert_eq!(blob_count(&store), 0);
    assert!(store.list().unwrap().is_empty());
    let leftovers: Vec<_> = fs::read_dir(dir.path().join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "lock" && n != "ingest.lock")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let temps: Vec<_> = fs::read_dir(dir.path().join("content/blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
}

#[test]
fn digest_names_cannot_be_tags() {
    let (_dir, store) = store();
    let tar = rootfs_tar(&[("bin/x", b"x")]);
    let d = crate::sha256_of(b"x");
    let err = store
        .import(&tar[..], None, &name(&format!("x@{d}")))
        .unwrap_err();
    assert_eq!(err.kind(), bosun_oci::ErrorKind::Conflict);
}

#[test]
fn import_stores_hostile_entries_but_unpack_refuses_them() {
    let (dir, store) = store();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(tar::EntryType::Regular, 4);
    // `set_path` refuses `..`; a hostile tarball is written by hand.
    let entry = b"../escape";
    h.as_old_mut().name[..entry.len()].copy_from_slice(entry);
    h.set_cksum();
    b.append(&h, &b"evil"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    store.import(&tar[..], None, &name("evil")).unwrap();

    let dest = dir.path().join("out/rootfs");
    let err = store.unpack("evil", &dest).unwrap_err();
    assert!(err.to_string().contains("escape"), "{err}");
    assert!(!dir.path().join("out/escape").exists());
}

#[test]
fn tag_refuses_an_image_with_a_missing_blob() {
    let (_dir, store) = store();
    let tar = rootfs_tar(&[("bin/hello", b"hi\n")]);
    store.import(&tar[..], None, &name("partial")).unwrap();
    let details = store.inspect("partial").unwrap();
    // What a sweep interrupted by a crash could leave: the manifest without its layer.
    let layer = descriptor_digest(details.manifest.layers()[0].digest()).unwrap();
    store.content().delete(&layer).unwrap();
    let err = store.tag("partial", &name("copy")).unwrap_err();
    assert!(matches!(err, ImageError::NotFound(_)), "{err}");
    assert!(err.to_string().contains(layer.as_str()), "{err}");
    assert!(store.resolve("copy").is_err());
}

mod archives {
    use super::*;
    use crate::images::archive::{NAME_ANNOTATION, REF_ANNOTATION};
    use crate::{LoadSource, SaveDest};
    use oci_spec::image::MediaType;

    fn loaded(store: &ImageStore, source: LoadSource<'_>) -> Result<Vec<String>, ImageError> {
        store
            .load(source, None)
            .map(|v| v.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn save_and_load_round_trip_as_directory_and_tar() {
        let (_d1, src) = store();
        let tar = rootfs_tar(&[("bin/hello", b"hi\n")]);
        let digest = src.import(&tar[..], None, &name("hello:1")).unwrap();

        let out = tempfile::tempdir().unwrap();
        let layout = out.path().join("layout");
        src.save(&["hello:1"], SaveDest::Dir(&layout)).unwrap();
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
        let ann = &index["manifests"][0]["annotations"];
        assert_eq!(ann[NAME_ANNOTATION], "docker.io/library/hello:1");
        assert_eq!(ann[REF_ANNOTATION], "1");
        assert_eq!(index["manifests"][0]["digest"], digest.as_str());

        let (_d2, dst) = store();
        assert_eq!(
            loaded(&dst, LoadSource::Dir(&layout)).unwrap(),
            ["docker.io/library/hello:1"]
        );
        assert_eq!(dst.resolve("hello:1").unwrap(), digest);

        let mut bytes = Vec::new();
        src.save(&["hello:1"], SaveDest::Stream(&mut bytes))
            .unwrap();
        let (_d3, dst) = store();
        assert_eq!(
            loaded(&dst, LoadSource::Stream(&mut &bytes[..])).unwrap(),
            ["docker.io/library/hello:1"]
        );
        let root = tempfile::tempdir().unwrap();
        dst.unpack("hello:1", root.path()).unwrap();
        assert_eq!(fs::read(root.path().join("bin/hello")).unwrap(), b"hi\n");

        // Saving into a non-empty directory refuses rather than mixing layouts.
        let err = src.save(&["hello:1"], SaveDest::Dir(&layout)).unwrap_err();
        assert_eq!(err.kind(), bosun_oci::ErrorKind::Conflict, "{err}");
    }

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, body) in files {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(body.len() as u64);
            h.set_entry_type(tar::EntryType::Regular);
            // `append_data` refuses `..`; write the name by hand for hostile cases.
            h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, *body).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn loads_a_docker_save_archive() {
        let layer = rootfs_tar(&[("bin/tool", b"from docker\n")]);
        let diff_id = crate::sha256_of(&layer);
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["/bin/tool"]}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
        );
        let manifest = r#"[{"Config":"abc.json","RepoTags":["example.com/team/tool:v2"],"Layers":["l1/layer.tar"]}]"#;
        let archive = tar_of(&[
            ("abc.json", config.as_bytes()),
            ("l1/layer.tar", &layer),
            ("manifest.json", manifest.as_bytes()),
        ]);
        let (_d, store) = store();
        assert_eq!(
            loaded(&store, LoadSource::Stream(&mut &archive[..])).unwrap(),
            ["example.com/team/tool:v2"]
        );
        let root = tempfile::tempdir().unwrap();
        store
            .unpack("example.com/team/tool:v2", root.path())
            .unwrap();
        assert_eq!(
            fs::read(root.path().join("bin/tool")).unwrap(),
            b"from docker\n"
        );
        let details = store.inspect("example.com/team/tool:v2").unwrap();
        assert_eq!(
            details.manifest.layers()[0].media_type(),
            &MediaType::ImageLayer
        );
    }

    #[test]
    fn hostile_or_broken_archives_are_refused_with_a_reason() {
        let (_d, store) = store();
        let some = crate::sha256_of(b"some");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (tar_of(&[("../escape", b"x")]), "leaves the archive"),
            (
                tar_of(&[(&format!("blobs/sha256/{}", some.hex()), b"other")]),
                "content hashes to",
            ),
            (tar_of(&[("oci-layout", b"{}")]), "neither an OCI layout"),
            (
                tar_of(&[(
                    "index.json",
                    format!(
                        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","size":4,"digest":"{some}"}}]}}"#,
                        crate::manifest::OCI_MANIFEST
                    )
                    .as_bytes(),
                )]),
                "not in the archive",
            ),
            (
                tar_of(&[("manifest.json", br#"[{"Config":"c.json","Layers":[]}]"#)]),
                "not in the archive",
            ),
        ];
        for (archive, want) in cases {
            let err = loaded(&store, LoadSource::Stream(&mut &archive[..])).unwrap_err();
            assert!(err.to_string().contains(want), "{err} (wanted {want:?})");
            assert_eq!(err.kind(), bosun_oci::ErrorKind::Invalid, "{err}");
        }
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn a_bare_tag_needs_a_name() {
        let (_d1, src) = store();
        let tar = rootfs_tar(&[("bin/x", b"x")]);
        src.import(&tar[..], None, &name("x:7")).unwrap();
        let out = tempfile::tempdir().unwrap();
        let layout = out.path().join("l");
        src.save(&["x:7"], SaveDest::Dir(&layout)).unwrap();
        // Keep only the OCI ref name, as skopeo and umoci write it.
        let index = fs::read_to_string(layout.join("index.json")).unwrap();
        let index = index.replace(NAME_ANNOTATION, "unrelated");
        fs::write(layout.join("index.json"), index).unwrap();
        let (_d2, dst) = store();
        let err = dst.load(LoadSource::Dir(&layout), None).unwrap_err();
        assert!(err.to_string().contains("only by the tag \"7\""), "{err}");
        let got = dst
            .load(LoadSource::Dir(&layout), Some(&name("localhost/mine")))
            .unwrap();
        assert_eq!(got[0].to_string(), "localhost/mine:7");
    }
}
