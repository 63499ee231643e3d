//! Layer tarballs built in memory, hostile ones included, and a sandbox that
//! proves nothing was written beside the extraction root.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "a helper module shared by test files, each using a different part"
)]

use std::fs::{self, File, FileTimes};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use flate2::write::GzEncoder;
use tar::{EntryType, Header};

pub const MTIME: u64 = 1_600_000_000;
const PARENT_MTIME: u64 = 1_000_000_000;
const SENTINEL: &[u8] = b"must stay untouched";

/// A layer under construction. Names are written into the header raw, so the
/// `tar` crate's own checks (which refuse `..`) do not get in the way.
pub struct Layer {
    builder: tar::Builder<Vec<u8>>,
    uid: u64,
    gid: u64,
}

impl Layer {
    /// Entries owned by the test process, so that non-root runs can chown them.
    pub fn new() -> Self {
        let probe = tempfile::tempfile().unwrap().metadata().unwrap();
        Self::owned_by(probe.uid().into(), probe.gid().into())
    }

    pub fn owned_by(uid: u64, gid: u64) -> Self {
        Self {
            builder: tar::Builder::new(Vec::new()),
            uid,
            gid,
        }
    }

    fn header(&self, kind: EntryType, name: &[u8], size: u64, mode: u32) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(self.uid);
        h.set_gid(self.gid);
        h.set_mtime(MTIME);
        let slot = &mut h.as_old_mut().name;
        assert!(
            name.len() < slot.len(),
            "use long_name for {} bytes",
            name.len()
        );
        slot.fill(0);
        slot[..name.len()].copy_from_slice(name);
        h
    }

    fn push(mut self, mut h: Header, data: &[u8]) -> Self {
        h.set_cksum();
        self.builder.append(&h, data).unwrap();
        self
    }

    pub fn file(self, name: &str, content: &[u8]) -> Self {
        self.file_mode(name, content, 0o644)
    }

    pub fn file_mode(self, name: &str, content: &[u8], mode: u32) -> Self {
        let h = self.header(
            EntryType::Regular,
            name.as_bytes(),
            content.len() as u64,
            mode,
        );
        self.push(h, content)
    }

    /// A regular file whose header `edit` changes after the usual fields are set.
    pub fn file_with(self, name: &str, content: &[u8], edit: impl FnOnce(&mut Header)) -> Self {
        let mut h = self.header(
            EntryType::Regular,
            name.as_bytes(),
            content.len() as u64,
            0o644,
        );
        edit(&mut h);
        self.push(h, content)
    }

    pub fn dir(self, name: &str) -> Self {
        self.dir_mode(name, 0o755)
    }

    pub fn dir_mode(self, name: &str, mode: u32) -> Self {
        let h = self.header(EntryType::Directory, name.as_bytes(), 0, mode);
        self.push(h, b"")
    }

    pub fn symlink(self, name: &str, target: &str) -> Self {
        let mut h = self.header(EntryType::Symlink, name.as_bytes(), 0, 0o777);
        h.set_link_name_literal(target).unwrap();
        self.push(h, b"")
    }

    pub fn hardlink(self, name: &str, target: &str) -> Self {
        let mut h = self.header(EntryType::Link, name.as_bytes(), 0, 0o644);
        h.set_link_name_literal(target).unwrap();
        self.push(h, b"")
    }

    pub fn special(self, kind: EntryType, name: &str) -> Self {
        let h = self.header(kind, name.as_bytes(), 0, 0o644);
        self.push(h, b"")
    }

    /// A regular file whose name travels in a GNU long-name record.
    pub fn long_name_file(self, name: &str, content: &[u8]) -> Self {
        let mut data = name.as_bytes().to_vec();
        data.push(0);
        let long = self.header(
            EntryType::GNULongName,
            b"././@LongLink",
            data.len() as u64,
            0o644,
        );
        self.push(long, &data).file("placeholder", content)
    }

    /// A regular file whose name travels in a PAX `path` record.
    pub fn pax_name_file(self, name: &str, content: &[u8]) -> Self {
        self.pax(&[("path", name.as_bytes())])
            .file("placeholder", content)
    }

    /// PAX records for the entry that follows.
    pub fn pax(self, records: &[(&str, &[u8])]) -> Self {
        let data: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        let pax = self.header(EntryType::XHeader, b"PaxHeader", data.len() as u64, 0o644);
        self.push(pax, &data)
    }

    pub fn finish(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }

    pub fn gzip(self) -> Vec<u8> {
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&self.finish()).unwrap();
        gz.finish().unwrap()
    }
}

/// `"<len> key=value\n"`, where len counts the whole record, itself included.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body_len = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body_len + 1;
    while len.to_string().len() + body_len != len {
        len += 1;
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

/// A temp directory holding the extraction root next to a sentinel file,
/// with a known mtime on the directory itself.
pub struct Sandbox {
    parent: tempfile::TempDir,
    pub root: PathBuf,
}

impl Sandbox {
    pub fn new() -> Self {
        let parent = tempfile::tempdir().unwrap();
        let root = parent.path().join("root");
        fs::create_dir(&root).unwrap();
        fs::write(parent.path().join("sentinel"), SENTINEL).unwrap();
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(PARENT_MTIME);
        File::open(parent.path())
            .unwrap()
            .set_times(FileTimes::new().set_modified(when))
            .unwrap();
        Self { parent, root }
    }

    /// The directory beside the root, as an absolute path (a symlink target
    /// that a naive extractor would write into).
    pub fn outside(&self) -> &Path {
        self.parent.path()
    }

    /// Fails unless the parent still holds exactly `root` and an unchanged
    /// sentinel, and its mtime is as set.
    pub fn assert_contained(&self) {
        let mut names: Vec<String> = fs::read_dir(self.parent.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["root", "sentinel"],
            "something was written outside the root"
        );
        let sentinel = self.parent.path().join("sentinel");
        assert_eq!(
            fs::read(&sentinel).unwrap(),
            SENTINEL,
            "sentinel was modified"
        );
        let meta = fs::symlink_metadata(&sentinel).unwrap();
        assert!(
            meta.is_file() && meta.nlink() == 1,
            "sentinel was linked: {meta:?}"
        );
        let mtime = fs::metadata(self.parent.path()).unwrap().mtime();
        assert_eq!(mtime, PARENT_MTIME as i64, "the parent's mtime was changed");
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}
