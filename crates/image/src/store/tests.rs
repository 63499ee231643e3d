use std::io::{Cursor, Read};
use std::sync::Arc;

use bosun_oci::ErrorKind;

use super::*;
use crate::sha256_of;

fn store() -> (tempfile::TempDir, ContentStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::new(dir.path()).unwrap();
    (dir, store)
}

/// Names in the blob directory, temp files included.
fn files(store: &ContentStore) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(&store.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn put_get_round_trip_in_oci_layout() {
    let (root, store) = store();
    let digest = store.put(b"hello").unwrap();
    assert_eq!(digest, sha256_of(b"hello"));
    assert!(
        root.path()
            .join("blobs/sha256")
            .join(digest.hex())
            .is_file()
    );
    assert_eq!(store.get(&digest).unwrap(), b"hello");
    assert!(store.exists(&digest).unwrap());
    assert_eq!(store.size(&digest).unwrap(), 5);
    let mut streamed = Vec::new();
    store
        .open(&digest)
        .unwrap()
        .read_to_end(&mut streamed)
        .unwrap();
    assert_eq!(streamed, b"hello");
    // Storing the same content again is harmless.
    assert_eq!(store.put(b"hello").unwrap(), digest);
    assert_eq!(store.list().unwrap(), vec![digest.clone()]);
    store.delete(&digest).unwrap();
    assert!(!store.exists(&digest).unwrap());
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn missing_blob_is_not_found() {
    let (_root, store) = store();
    let digest = sha256_of(b"absent");
    for err in [
        store.get(&digest).unwrap_err(),
        store.open(&digest).unwrap_err(),
        store.size(&digest).unwrap_err(),
        store.delete(&digest).unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert_eq!(err.to_string(), format!("blob {digest} not found"));
    }
}

#[test]
fn mismatch_is_rejected_and_leaves_nothing() {
    let (_root, store) = store();
    let expected = sha256_of(b"the real thing");
    let err = store
        .ingest(&b"an impostor"[..], Some(&expected))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    let msg = err.to_string();
    assert!(msg.contains(expected.as_str()), "{msg}");
    assert!(msg.contains(sha256_of(b"an impostor").as_str()), "{msg}");
    assert!(files(&store).is_empty(), "left behind: {:?}", files(&store));
    assert!(!store.exists(&expected).unwrap());
}

#[test]
fn ingest_with_the_right_digest_is_accepted() {
    let (_root, store) = store();
    let expected = sha256_of(b"layer");
    let got = store.ingest(&b"layer"[..], Some(&expected)).unwrap();
    assert_eq!(got, (expected, 5));
}

#[test]
fn a_failing_source_leaves_no_temp_file() {
    struct Broken(usize);
    impl Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "peer went away",
                ));
            }
            self.0 -= 1;
            buf[0] = b'x';
            Ok(1)
        }
    }
    let (_root, store) = store();
    let err = store.ingest(Broken(3), None).unwrap_err();
    assert!(matches!(err, StoreError::Source(_)), "{err}");
    assert!(err.to_string().contains("peer went away"), "{err}");
    assert!(files(&store).is_empty(), "left behind: {:?}", files(&store));
}

#[test]
fn corruption_on_disk_is_detected_on_read() {
    let (root, store) = store();
    let digest = store.put(b"precious bytes").unwrap();
    let path = root.path().join("blobs/sha256").join(digest.hex());
    fs::write(&path, b"precious bytez").unwrap();

    let err = store.get(&digest).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("blob {digest} is corrupt")), "{msg}");
    assert!(msg.contains(sha256_of(b"precious bytez").as_str()), "{msg}");

    let mut out = Vec::new();
    let err = store
        .open(&digest)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("is corrupt"), "{err}");

    // A truncated blob is caught too.
    fs::write(&path, b"precious").unwrap();
    assert!(matches!(
        store.get(&digest),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn ingest_streams_ten_mib() {
    // A reader that produces 10 MiB without holding it in memory.
    struct Pattern {
        left: usize,
        next: u8,
    }
    impl Read for Pattern {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.left).min(7919);
            for b in &mut buf[..n] {
                *b = self.next;
                self.next = self.next.wrapping_mul(31).wrapping_add(7);
            }
            self.left -= n;
            Ok(n)
        }
    }
    const SIZE: usize = 10 * 1024 * 1024;
    let mut reference = Pattern {
        left: SIZE,
        next: 1,
    };
    let mut hasher = Hasher::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = reference.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let expected = hasher.finish();

    let (_root, store) = store();
    let (digest, size) = store
        .ingest(
            Pattern {
                left: SIZE,
                next: 1,
            },
            Some(&expected),
        )
        .unwrap();
    assert_eq!((digest.clone(), size), (expected, SIZE as u64));
    assert_eq!(store.size(&digest).unwrap(), SIZE as u64);
    let copied = io::copy(&mut store.open(&digest).unwrap(), &mut io::sink()).unwrap();
    assert_eq!(copied, SIZE as u64);
}

#[test]
fn concurrent_writers_of_one_blob_agree() {
    let (_root, store) = store();
    let store = Arc::new(store);
    let content: Arc<Vec<u8>> = Arc::new((0..200_000u32).map(|i| (i % 251) as u8).collect());
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            let content = Arc::clone(&content);
            std::thread::spawn(move || store.ingest(Cursor::new(&content[..]), None).unwrap())
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let digest = sha256_of(&content);
    assert!(results.iter().all(|(d, n)| *d == digest && *n == 200_000));
    assert_eq!(store.get(&digest).unwrap(), *content);
    assert_eq!(files(&store), vec![digest.hex().to_owned()]);
}

#[test]
fn list_skips_temp_and_foreign_files() {
    let (_root, store) = store();
    let a = store.put(b"a").unwrap();
    let b = store.put(b"b").unwrap();
    fs::write(store.dir.join(".tmp-1-1"), b"half a blob").unwrap();
    fs::write(store.dir.join("README"), b"not a blob").unwrap();
    fs::write(store.dir.join("ABCD"), b"not a digest").unwrap();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(store.list().unwrap(), want);
}

#[test]
fn sha512_digests_are_refused_clearly() {
    let (_root, store) = store();
    let digest: Digest = format!("sha512:{}", "a".repeat(128)).parse().unwrap();
    let err = store.get(&digest).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.to_string().contains("sha256 blobs only"), "{err}");
    assert!(store.ingest(&b"x"[..], Some(&digest)).is_err());
}
