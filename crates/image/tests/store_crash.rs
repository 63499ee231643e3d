//! Crash safety of the content store: a writer killed with SIGKILL in the
//! middle of a blob leaves no blob, and the same write later succeeds.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bosun_image::{ContentStore, sha256_of};

const CHILD_ENV: &str = "BOSUN_IMAGE_CRASH_CHILD_DIR";
const HALF: usize = 1 << 20;

/// Streams `HALF` bytes, says so through a marker file, then hangs until killed.
struct HalfThenHang {
    sent: usize,
    marker: PathBuf,
}

impl Read for HalfThenHang {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.sent >= HALF {
            fs::write(&self.marker, b"").unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        let n = buf.len().min(4096);
        buf[..n].fill(b'x');
        self.sent += n;
        Ok(n)
    }
}

/// The writer half of `a_writer_killed_mid_blob_leaves_no_blob`, run in a child
/// process; does nothing when run on its own.
#[test]
#[ignore = "run by a_writer_killed_mid_blob_leaves_no_blob in a child process"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let store = ContentStore::new(&dir.join("store")).unwrap();
    let reader = HalfThenHang {
        sent: 0,
        marker: dir.join("marker"),
    };
    let _ = store.ingest(reader, None);
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_writer_killed_mid_blob_leaves_no_blob() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let marker = dir.path().join("marker");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the writer exited before it was killed: {status}");
        }
        assert!(Instant::now() < deadline, "the writer never got half way");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let store = ContentStore::new(&dir.path().join("store")).unwrap();
    assert!(store.list().unwrap().is_empty(), "a half blob is visible");
    let left = names(&dir.path().join("store/blobs/sha256"));
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].starts_with(".tmp-"),
        "only a temp file remains: {left:?}"
    );

    // The interrupted write, done again, completes and reads back verified.
    let content = vec![b'x'; 2 * HALF];
    let digest = store
        .ingest(&content[..], Some(&sha256_of(&content)))
        .unwrap()
        .0;
    assert_eq!(store.get(&digest).unwrap(), content);
    assert_eq!(store.list().unwrap(), vec![digest]);
}
