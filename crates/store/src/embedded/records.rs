//! The tables of the embedded store, how their records are encoded, and the reads
//! every other part (writer, range reads, watch replay) shares.
//!
//! ```text
//! meta     &str          -> u64    "revision" (current), "compacted" (compact revision)
//! current  key           -> Current  the live version of every existing key
//! log      (rev, sub)    -> Logged   every write since the last compaction, in revision
//!                                    order (sub = position in its transaction), plus the
//!                                    latest version <= the compact revision of live keys
//! history  (key, rev)    -> sub      the same versions, by key: reads at a revision
//! ```
//! `current` makes reads at the current revision one ordered scan; `log` is both the
//! MVCC store (etcd's revision-keyed bucket) and the watch history; `history` is
//! etcd's key index, kept on disk instead of rebuilt in memory at start.

use bytes::Bytes;
use redb::{ReadableTable, TableDefinition};

use crate::error::Error;
use crate::types::{Key, KeyRange, KeyValue, Revision, WatchEvent};

pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(super) const CURRENT: TableDefinition<&[u8], &[u8]> = TableDefinition::new("current");
pub(super) const LOG: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("log");
pub(super) const HISTORY: TableDefinition<(&[u8], u64), u32> = TableDefinition::new("history");

pub(super) const META_REVISION: &str = "revision";
pub(super) const META_COMPACTED: &str = "compacted";

/// Where one version lives in `log`.
pub(super) type Pointer = (u64, u32);

/// The live version of a key, in `current`.
#[derive(Debug, Clone)]
pub(super) struct Current {
    pub(super) create_rev: u64,
    pub(super) mod_rev: u64,
    pub(super) version: u64,
    /// Position in its transaction: with `mod_rev`, the version's `log` key.
    pub(super) sub: u32,
    pub(super) value: Bytes,
}

const CURRENT_HEADER: usize = 8 + 8 + 8 + 4;

impl Current {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CURRENT_HEADER + self.value.len());
        out.extend_from_slice(&self.create_rev.to_be_bytes());
        out.extend_from_slice(&self.mod_rev.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.sub.to_be_bytes());
        out.extend_from_slice(&self.value);
        out
    }

    pub(super) fn decode(b: &[u8]) -> Result<Current, Error> {
        let mut r = Reader::new(b, "current");
        Ok(Current {
            create_rev: r.u64()?,
            mod_rev: r.u64()?,
            version: r.u64()?,
            sub: r.u32()?,
            value: Bytes::copy_from_slice(r.rest()),
        })
    }

    pub(super) fn pointer(&self) -> Pointer {
        (self.mod_rev, self.sub)
    }

    pub(super) fn into_kv(self, key: Key) -> KeyValue {
        KeyValue {
            key,
            value: self.value,
            create_revision: rev(self.create_rev),
            mod_revision: rev(self.mod_rev),
            version: i64::try_from(self.version).unwrap_or(i64::MAX),
        }
    }
}

/// One write in `log`. A delete is a tombstone: no value, no create revision.
#[derive(Debug, Clone)]
pub(super) struct Logged {
    pub(super) delete: bool,
    pub(super) key: Bytes,
    pub(super) create_rev: u64,
    pub(super) version: u64,
    /// The version this one replaced (a put's) or removed (a delete's); `None` for a
    /// creation. Watch replay reads the previous value through it, and compaction
    /// drops the version it points at.
    pub(super) prev: Option<Pointer>,
    pub(super) value: Bytes,
}

impl Logged {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 8 + 8 + 8 + 4 + 4 + self.key.len() + self.value.len());
        out.push(u8::from(self.delete));
        out.extend_from_slice(&self.create_rev.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        let (prev_rev, prev_sub) = self.prev.unwrap_or((0, 0));
        out.extend_from_slice(&prev_rev.to_be_bytes());
        out.extend_from_slice(&prev_sub.to_be_bytes());
        let key_len = u32::try_from(self.key.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&key_len.to_be_bytes());
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.value);
        out
    }

    pub(super) fn decode(b: &[u8]) -> Result<Logged, Error> {
        let mut r = Reader::new(b, "log");
        let delete = match r.take(1)?[0] {
            0 => false,
            1 => true,
            _ => return Err(r.corrupt()),
        };
        let create_rev = r.u64()?;
        let version = r.u64()?;
        let prev_rev = r.u64()?;
        let prev_sub = r.u32()?;
        let key_len = r.u32()? as usize;
        let key = Bytes::copy_from_slice(r.take(key_len)?);
        Ok(Logged {
            delete,
            key,
            create_rev,
            version,
            prev: (prev_rev != 0).then_some((prev_rev, prev_sub)),
            value: Bytes::copy_from_slice(r.rest()),
        })
    }

    /// Only the key, without copying the value: replay filters on it first.
    pub(super) fn decode_key(b: &[u8]) -> Result<&[u8], Error> {
        let mut r = Reader::new(b, "log");
        r.take(1 + 8 + 8 + 8 + 4)?;
        let key_len = r.u32()? as usize;
        r.take(key_len)
    }

    /// The version this record wrote, as a key-value (a put's; `None` for a delete).
    fn kv(&self, mod_rev: u64) -> Option<KeyValue> {
        (!self.delete).then(|| KeyValue {
            key: Key::from_stored(self.key.clone()),
            value: self.value.clone(),
            create_revision: rev(self.create_rev),
            mod_revision: rev(mod_rev),
            version: i64::try_from(self.version).unwrap_or(i64::MAX),
        })
    }
}

/// A bounds-checked cursor over a record.
struct Reader<'a> {
    b: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { b, what }
    }

    fn corrupt(&self) -> Error {
        Error::Corrupt { what: self.what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.b.len() < n {
            return Err(self.corrupt());
        }
        let (head, tail) = self.b.split_at(n);
        self.b = tail;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, Error> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes(
            b.try_into().map_err(|_| self.corrupt())?,
        ))
    }

    fn u32(&mut self) -> Result<u32, Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes(
            b.try_into().map_err(|_| self.corrupt())?,
        ))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.b)
    }
}

pub(super) fn rev(n: u64) -> Revision {
    Revision::from_backend(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Revisions are never negative, so the conversion to the tables' `u64` is lossless.
pub(super) fn raw(r: Revision) -> u64 {
    u64::try_from(r.get()).unwrap_or(0)
}

/// `(current revision, compact revision)`.
pub(super) fn meta(t: &impl ReadableTable<&'static str, u64>) -> Result<(u64, u64), redb::Error> {
    let get = |name| -> Result<Option<u64>, redb::Error> { Ok(t.get(name)?.map(|v| v.value())) };
    // An empty store is at revision 1, as etcd's.
    Ok((
        get(META_REVISION)?.unwrap_or(1),
        get(META_COMPACTED)?.unwrap_or(0),
    ))
}

/// Storage errors and record errors, apart until the caller names the path.
#[derive(Debug)]
pub(super) enum ReadError {
    Storage(redb::Error),
    Store(Error),
}

impl<E: Into<redb::Error>> From<E> for ReadError {
    fn from(e: E) -> ReadError {
        ReadError::Storage(e.into())
    }
}

impl From<Error> for ReadError {
    fn from(e: Error) -> ReadError {
        ReadError::Store(e)
    }
}

pub(super) type ReadResult<T> = Result<T, ReadError>;

/// The live version of `key`.
pub(super) fn get_current(
    current: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &Key,
) -> ReadResult<Option<Current>> {
    match current.get(key.as_bytes())? {
        Some(v) => Ok(Some(Current::decode(v.value())?)),
        None => Ok(None),
    }
}

/// The version of `key` at revision `at` (a past one, not compacted).
pub(super) fn get_at(
    history: &impl ReadableTable<(&'static [u8], u64), u32>,
    log: &impl ReadableTable<(u64, u32), &'static [u8]>,
    key: &Key,
    at: u64,
) -> ReadResult<Option<KeyValue>> {
    let k = key.as_bytes();
    let last = history
        .range((k, 0u64)..=(k, at))?
        .next_back()
        .transpose()?;
    let Some((entry, sub)) = last else {
        return Ok(None);
    };
    let (_, mod_rev) = entry.value();
    version_at(log, (mod_rev, sub.value()))
}

/// The version stored at `ptr`, or `None` for a tombstone.
pub(super) fn version_at(
    log: &impl ReadableTable<(u64, u32), &'static [u8]>,
    ptr: Pointer,
) -> ReadResult<Option<KeyValue>> {
    let Some(v) = log.get(ptr)? else {
        // Every pointer the store follows names a kept version; a missing one
        // means the tables disagree.
        return Err(Error::Corrupt { what: "history" }.into());
    };
    Ok(Logged::decode(v.value())?.kv(ptr.0))
}

/// Live keys of `range` at the current revision: one scan of `current`.
pub(super) fn range_current(
    current: &impl ReadableTable<&'static [u8], &'static [u8]>,
    range: &KeyRange,
    limit: usize,
) -> ReadResult<(Vec<KeyValue>, bool)> {
    let start: &[u8] = range.start();
    let iter = match range.end() {
        Some(end) => current.range::<&[u8]>(start..&end[..])?,
        None => current.range::<&[u8]>(start..)?,
    };
    let mut kvs = Vec::new();
    for entry in iter {
        let (k, v) = entry?;
        if kvs.len() == limit {
            return Ok((kvs, true));
        }
        let key = Key::from_stored(Bytes::copy_from_slice(k.value()));
        kvs.push(Current::decode(v.value())?.into_kv(key));
    }
    Ok((kvs, false))
}

/// Live keys of `range` at a past revision: walks the key index, taking for each
/// key its last version at or before `at`.
pub(super) fn range_at(
    history: &impl ReadableTable<(&'static [u8], u64), u32>,
    log: &impl ReadableTable<(u64, u32), &'static [u8]>,
    range: &KeyRange,
    at: u64,
    limit: usize,
) -> ReadResult<(Vec<KeyValue>, bool)> {
    let start: &[u8] = range.start();
    let iter = match range.end() {
        Some(end) => history.range((start, 0u64)..(&end[..], 0u64))?,
        None => history.range((start, 0u64)..)?,
    };
    let mut kvs = Vec::new();
    // The key being looked at and its last version at or before `at`.
    let mut key: Option<Bytes> = None;
    let mut best: Option<Pointer> = None;
    for entry in iter {
        let (k, sub) = entry?;
        let (k, mod_rev) = k.value();
        if key.as_deref() != Some(k) {
            if let Some(kv) = take_best(log, &mut best)? {
                if kvs.len() == limit {
                    return Ok((kvs, true));
                }
                kvs.push(kv);
            }
            key = Some(Bytes::copy_from_slice(k));
        }
        if mod_rev <= at {
            best = Some((mod_rev, sub.value()));
        }
    }
    if let Some(kv) = take_best(log, &mut best)? {
        if kvs.len() == limit {
            return Ok((kvs, true));
        }
        kvs.push(kv);
    }
    Ok((kvs, false))
}

fn take_best(
    log: &impl ReadableTable<(u64, u32), &'static [u8]>,
    best: &mut Option<Pointer>,
) -> ReadResult<Option<KeyValue>> {
    match best.take() {
        Some(ptr) => version_at(log, ptr),
        None => Ok(None),
    }
}

/// The watch event a `log` record stands for, with its previous version.
pub(super) fn event_of(
    log: &impl ReadableTable<(u64, u32), &'static [u8]>,
    mod_rev: u64,
    rec: Logged,
) -> ReadResult<WatchEvent> {
    let prev = match rec.prev {
        Some(ptr) => version_at(log, ptr)?,
        None => None,
    };
    Ok(match rec.kv(mod_rev) {
        Some(kv) => WatchEvent::Put { kv, prev },
        None => WatchEvent::Delete {
            key: Key::from_stored(rec.key),
            revision: rev(mod_rev),
            prev,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let c = Current {
            create_rev: 3,
            mod_rev: 9,
            version: 4,
            sub: 2,
            value: Bytes::from_static(b"v"),
        };
        let d = Current::decode(&c.encode()).unwrap();
        assert_eq!((d.create_rev, d.mod_rev, d.version, d.sub), (3, 9, 4, 2));
        assert_eq!(d.value.as_ref(), b"v");

        let l = Logged {
            delete: false,
            key: Bytes::from_static(b"/k"),
            create_rev: 3,
            version: 4,
            prev: Some((8, 1)),
            value: Bytes::from_static(b"value"),
        };
        let enc = l.encode();
        assert_eq!(Logged::decode_key(&enc).unwrap(), b"/k");
        let d = Logged::decode(&enc).unwrap();
        assert_eq!(d.prev, Some((8, 1)));
        assert_eq!(d.value.as_ref(), b"value");
        assert!(Logged::decode(&enc[..10]).is_err());
        assert!(Current::decode(&[1, 2]).is_err());
    }
}
