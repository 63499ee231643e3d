//! The values the store speaks in: keys, key ranges, revisions, stored versions,
//! transactions and watch events. Parsed once, at the edge; the backends trust them.

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;

use bytes::Bytes;

use crate::error::Error;

/// A revision of the whole store. Every successful write transaction that changes
/// something bumps it by one; an empty store is at revision 1 (as in etcd), so 0
/// never names a state and means "none" where a revision is optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision(i64);

impl Revision {
    /// "No revision": the mod revision of a key that does not exist.
    pub const ZERO: Revision = Revision(0);

    /// A revision from its number; negative numbers are refused.
    pub fn new(n: i64) -> Result<Revision, Error> {
        if n < 0 {
            return Err(Error::InvalidRevision {
                input: n.to_string(),
                reason: "negative",
            });
        }
        Ok(Revision(n))
    }

    /// The number.
    pub fn get(self) -> i64 {
        self.0
    }

    /// Crate-internal constructor for numbers that come from the backends, which
    /// only ever hand out non-negative revisions.
    pub(crate) fn from_backend(n: i64) -> Revision {
        Revision(n.max(0))
    }

    pub(crate) fn next(self) -> Revision {
        Revision(self.0 + 1)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Parses a decimal revision (a Kubernetes `resourceVersion`): digits only, no sign.
impl FromStr for Revision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Revision, Error> {
        let invalid = |reason| Error::InvalidRevision {
            input: s.to_owned(),
            reason,
        };
        if s.is_empty() {
            return Err(invalid("empty"));
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("not a decimal number"));
        }
        s.parse::<i64>()
            .map(Revision)
            .map_err(|_| invalid("too large"))
    }
}

/// A key: a non-empty byte string (the API server uses
/// `/registry/<group>/<resource>/<namespace>/<name>`). Cheap to clone.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(Bytes);

impl Key {
    /// A key from bytes; the empty key is refused (etcd refuses it too).
    pub fn new(bytes: impl Into<Bytes>) -> Result<Key, Error> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(Error::InvalidKey { reason: "empty" });
        }
        Ok(Key(bytes))
    }

    /// The bytes of the key.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// For keys the backends read back from their own storage, which only ever
    /// holds keys that went through [`Key::new`].
    pub(crate) fn from_stored(bytes: Bytes) -> Key {
        Key(bytes)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(\"{}\")", self.0.escape_ascii())
    }
}

/// Printable bytes as they are, others escaped (`\xff`), so messages stay one line.
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.escape_ascii().fmt(f)
    }
}

impl TryFrom<&str> for Key {
    type Error = Error;
    fn try_from(s: &str) -> Result<Key, Error> {
        Key::new(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl TryFrom<String> for Key {
    type Error = Error;
    fn try_from(s: String) -> Result<Key, Error> {
        Key::new(s)
    }
}

/// A half-open range of keys `[start, end)`, the unit of `range` and `watch`.
/// Mirrors etcd's `key`/`range_end` pair so both backends read it the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    start: Bytes,
    /// `None`: every key from `start` on.
    end: Option<Bytes>,
}

impl KeyRange {
    /// Every key that starts with `prefix`; the empty prefix is every key.
    pub fn prefix(prefix: impl AsRef<[u8]>) -> KeyRange {
        let prefix = prefix.as_ref();
        if prefix.is_empty() {
            // "\0" is the smallest non-empty key, and etcd wants a non-empty start.
            return KeyRange {
                start: Bytes::from_static(b"\0"),
                end: None,
            };
        }
        KeyRange {
            start: Bytes::copy_from_slice(prefix),
            end: prefix_end(prefix),
        }
    }

    /// Exactly one key.
    pub fn single(key: &Key) -> KeyRange {
        let mut end = key.as_bytes().to_vec();
        end.push(0);
        KeyRange {
            start: key.bytes().clone(),
            end: Some(end.into()),
        }
    }

    /// Keys from `start` (included) to `end` (excluded); `None` means no upper bound.
    pub fn between(start: &Key, end: Option<&Key>) -> KeyRange {
        KeyRange {
            start: start.bytes().clone(),
            end: end.map(|k| k.bytes().clone()),
        }
    }

    /// The rest of this range after `last`, the last key of a page: what a list's
    /// `continue` token stands for (read it at the first page's revision).
    pub fn continue_after(&self, last: &Key) -> KeyRange {
        let mut start = last.as_bytes().to_vec();
        start.push(0);
        KeyRange {
            start: start.into(),
            end: self.end.clone(),
        }
    }

    /// Whether `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= &self.start[..] && self.end.as_ref().is_none_or(|end| key < &end[..])
    }

    pub(crate) fn start(&self) -> &Bytes {
        &self.start
    }

    pub(crate) fn end(&self) -> Option<&Bytes> {
        self.end.as_ref()
    }
}

/// The smallest key greater than every key with this prefix, or `None` when the
/// prefix is all `0xff` (no such key: the range is unbounded).
fn prefix_end(prefix: &[u8]) -> Option<Bytes> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end.into());
        }
    }
    None
}

/// One version of a key, as etcd's `mvccpb.KeyValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Key,
    pub value: Bytes,
    /// The revision of the write that created the key (since its last delete).
    pub create_revision: Revision,
    /// The revision of the last write to the key: its `resourceVersion`.
    pub mod_revision: Revision,
    /// Writes since creation: 1 after the create.
    pub version: i64,
}

/// The answer to a range read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeResult {
    /// Live keys in key order, at most `limit` of them.
    pub kvs: Vec<KeyValue>,
    /// Whether keys beyond the last one returned exist in the range.
    pub more: bool,
    /// The revision the read was served at: the one asked for, or the current one.
    /// Read the next page at this revision.
    pub revision: Revision,
}

/// A page size for range reads.
pub type Limit = Option<NonZeroUsize>;

/// The answer to a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// The version that was deleted.
    pub prev: KeyValue,
    /// The revision of the delete.
    pub revision: Revision,
}

/// A condition of a transaction: the key's mod revision equals `mod_revision`
/// ([`Revision::ZERO`]: the key does not exist). The one comparison an API server
/// needs for optimistic concurrency; etcd's other targets are left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    pub key: Key,
    pub mod_revision: Revision,
}

/// An operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Read the key (at the transaction's revision).
    Get(Key),
    /// Write the key.
    Put(Key, Bytes),
    /// Delete the key if it exists.
    Delete(Key),
}

impl Op {
    pub(crate) fn key(&self) -> &Key {
        match self {
            Op::Get(k) | Op::Put(k, _) | Op::Delete(k) => k,
        }
    }
}

/// A transaction: if every compare holds, `success` runs, otherwise `failure`.
/// All the writes of the branch that runs share one new revision. A key may be
/// written at most once per branch (etcd refuses more).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

impl Txn {
    /// Checks what both backends refuse, so that they refuse it alike.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        for ops in [&self.success, &self.failure] {
            let mut written: Vec<&Key> = ops
                .iter()
                .filter(|op| !matches!(op, Op::Get(_)))
                .map(Op::key)
                .collect();
            written.sort();
            if let Some(w) = written.windows(2).find(|w| w[0] == w[1]) {
                return Err(Error::DuplicateKeyInTxn { key: w[0].clone() });
            }
        }
        Ok(())
    }
}

/// The outcome of one operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// The key as read, if it exists.
    Get(Option<KeyValue>),
    /// The version just written.
    Put(KeyValue),
    /// The version deleted, if the key existed.
    Delete(Option<KeyValue>),
}

/// The outcome of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResult {
    /// Whether the compares held (so `success` ran).
    pub succeeded: bool,
    /// The store's revision after the transaction: its own if it wrote something.
    pub revision: Revision,
    /// One result per operation of the branch that ran, in order.
    pub results: Vec<OpResult>,
}

/// What a watch delivers, in revision order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or updated; `prev` is the version it replaced.
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// A key was deleted at `revision`; `prev` is the version deleted (etcd may
    /// omit it if that version was compacted away meanwhile).
    Delete {
        key: Key,
        revision: Revision,
        prev: Option<KeyValue>,
    },
    /// Every event of the watched range up to `revision` has been delivered: a
    /// bookmark, sent after [`Watch::request_progress`](crate::Watch::request_progress).
    Progress { revision: Revision },
}

impl WatchEvent {
    /// The revision the event happened at (or the progress revision).
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put { kv, .. } => kv.mod_revision,
            WatchEvent::Delete { revision, .. } | WatchEvent::Progress { revision } => *revision,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Key::try_from(s).unwrap()
    }

    #[test]
    fn prefix_ranges() {
        let r = KeyRange::prefix("/a/");
        assert!(r.contains(b"/a/"));
        assert!(r.contains(b"/a/x"));
        assert!(!r.contains(b"/a"));
        assert!(!r.contains(b"/b"));
        assert_eq!(r.end().unwrap().as_ref(), b"/a0");
        let all = KeyRange::prefix("");
        assert!(all.contains(b"\0") && all.contains(b"\xff\xff"));
        let ff = KeyRange::prefix(b"a\xff\xff");
        assert_eq!(ff.end().unwrap().as_ref(), b"b");
        assert_eq!(KeyRange::prefix(b"\xff").end(), None);
    }

    #[test]
    fn single_and_continue() {
        let r = KeyRange::single(&key("/a"));
        assert!(r.contains(b"/a"));
        assert!(!r.contains(b"/a\0"));
        let p = KeyRange::prefix("/p/");
        let rest = p.continue_after(&key("/p/b"));
        assert!(!rest.contains(b"/p/b"));
        assert!(rest.contains(b"/p/b\0"));
        assert!(rest.contains(b"/p/c"));
        assert!(!rest.contains(b"/q"));
    }

    #[test]
    fn revisions_parse_strictly() {
        assert_eq!("42".parse::<Revision>().unwrap().get(), 42);
        for bad in ["", "-1", "+1", "1.0", " 1", "99999999999999999999"] {
            assert!(bad.parse::<Revision>().is_err(), "{bad:?}");
        }
        assert!(Revision::new(-1).is_err());
    }

    #[test]
    fn keys() {
        assert!(Key::new(Bytes::new()).is_err());
        assert_eq!(key("/a\n").to_string(), "/a\\n");
    }

    #[test]
    fn duplicate_writes_are_refused() {
        let t = Txn {
            compares: vec![],
            success: vec![Op::Put(key("/a"), Bytes::new()), Op::Delete(key("/a"))],
            failure: vec![],
        };
        assert!(matches!(t.validate(), Err(Error::DuplicateKeyInTxn { .. })));
        let reads = Txn {
            success: vec![Op::Get(key("/a")), Op::Put(key("/a"), Bytes::new())],
            ..Txn::default()
        };
        reads.validate().unwrap();
    }
}
