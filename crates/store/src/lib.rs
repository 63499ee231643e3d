//! bosun's consistent store: what the API server keeps cluster objects in.
//!
//! etcd v3's model, reduced to what an API server needs: byte keys and values; a
//! global [`Revision`] bumped by every write transaction; per key its create and
//! mod revision and version; reads of the current state or of a past revision, with
//! paging; compare-and-swap on a key's mod revision; [`Watch`]es that deliver every
//! change after a revision, in order, none lost and none twice, replaying history
//! first; and compaction, after which older revisions answer [`Error::Compacted`].
//!
//! Two backends, one behaviour (the conformance suite in `tests/` runs every check
//! on both): the embedded store, a redb file in the data directory (the default),
//! and a real etcd v3 cluster over its JSON gateway, for several API servers.

mod embedded;
mod error;
mod etcd;
mod types;

use std::path::Path;

use bytes::Bytes;

pub use crate::error::Error;
pub use crate::etcd::Endpoints;
pub use crate::types::{
    Compare, Deleted, Key, KeyRange, KeyValue, Limit, Op, OpResult, RangeResult, Revision, Txn,
    TxnResult, WatchEvent,
};

/// A handle on the store; clones share it.
///
/// A struct over a private enum of the two backends rather than a public trait:
/// the set of backends is closed (both live here), `async fn`s in a trait are not
/// object-safe, and a concrete type lets the API server hold one `Store` without
/// generics or boxing every future. The backends' sameness is what the conformance
/// suite checks, not what a trait would promise.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Embedded(embedded::Embedded),
    Etcd(etcd::Etcd),
}

impl Store {
    /// Opens (or creates) the embedded store in `dir`. One process at a time: a
    /// second open of the same directory fails with an `Unavailable` error.
    pub async fn open_embedded(dir: &Path) -> Result<Store, Error> {
        Ok(Store {
            backend: Backend::Embedded(embedded::Embedded::open(dir).await?),
        })
    }

    /// A store on an etcd v3 cluster (3.4 or later). Requests go to the first
    /// endpoint that accepts a connection. Nothing is sent until the first call.
    pub fn etcd(endpoints: Endpoints) -> Result<Store, Error> {
        Ok(Store {
            backend: Backend::Etcd(etcd::Etcd::new(endpoints)?),
        })
    }

    /// The store's current revision.
    pub async fn current_revision(&self) -> Result<Revision, Error> {
        match &self.backend {
            Backend::Embedded(b) => b.current_revision().await,
            Backend::Etcd(b) => b.current_revision().await,
        }
    }

    /// The key's version at revision `at` (`None`, or `Some(Revision::ZERO)`: the
    /// current one); `Ok(None)` if it did not exist then.
    pub async fn get(&self, key: &Key, at: Option<Revision>) -> Result<Option<KeyValue>, Error> {
        match &self.backend {
            Backend::Embedded(b) => b.get(key, at).await,
            Backend::Etcd(b) => b.get(key, at).await,
        }
    }

    /// The keys of `range` at revision `at` (as for [`Store::get`]), in key order, at
    /// most `limit`. For the next page, read
    /// [`range.continue_after(last key)`](KeyRange::continue_after) at the
    /// returned [`RangeResult::revision`].
    pub async fn range(
        &self,
        range: &KeyRange,
        at: Option<Revision>,
        limit: Limit,
    ) -> Result<RangeResult, Error> {
        match &self.backend {
            Backend::Embedded(b) => b.range(range, at, limit).await,
            Backend::Etcd(b) => b.range(range, at, limit).await,
        }
    }

    /// Runs a transaction (see [`Txn`]).
    pub async fn txn(&self, txn: Txn) -> Result<TxnResult, Error> {
        txn.validate()?;
        match &self.backend {
            Backend::Embedded(b) => b.txn(txn).await,
            Backend::Etcd(b) => b.txn(txn).await,
        }
    }

    /// Creates `key`; [`Error::AlreadyExists`] if it exists.
    pub async fn create(&self, key: &Key, value: Bytes) -> Result<KeyValue, Error> {
        let txn = Txn {
            compares: vec![Compare {
                key: key.clone(),
                mod_revision: Revision::ZERO,
            }],
            success: vec![Op::Put(key.clone(), value)],
            failure: vec![Op::Get(key.clone())],
        };
        let mut res = self.txn(txn).await?;
        match (res.succeeded, res.results.pop()) {
            (true, Some(OpResult::Put(kv))) => Ok(kv),
            (false, Some(OpResult::Get(Some(kv)))) => Err(Error::AlreadyExists {
                key: key.clone(),
                mod_revision: kv.mod_revision,
            }),
            // Deleted between the compare and the read: only etcd's failure
            // branch could see that, and it runs atomically; report what we know.
            _ => Err(Error::AlreadyExists {
                key: key.clone(),
                mod_revision: Revision::ZERO,
            }),
        }
    }

    /// Replaces `key`'s value if its mod revision is still `expected`: the
    /// compare-and-swap of an update. [`Error::Conflict`] names the actual mod
    /// revision; [`Error::NotFound`] if the key is gone.
    pub async fn update(
        &self,
        key: &Key,
        value: Bytes,
        expected: Revision,
    ) -> Result<KeyValue, Error> {
        let txn = Txn {
            compares: vec![Compare {
                key: key.clone(),
                mod_revision: expected,
            }],
            success: vec![Op::Put(key.clone(), value)],
            failure: vec![Op::Get(key.clone())],
        };
        let mut res = self.txn(txn).await?;
        match (res.succeeded, res.results.pop()) {
            (true, Some(OpResult::Put(kv))) => Ok(kv),
            (false, Some(OpResult::Get(Some(kv)))) => Err(Error::Conflict {
                key: key.clone(),
                expected,
                actual: kv.mod_revision,
            }),
            _ => Err(Error::NotFound { key: key.clone() }),
        }
    }

    /// Deletes `key`, if `expected` is given only while its mod revision is that.
    pub async fn delete(&self, key: &Key, expected: Option<Revision>) -> Result<Deleted, Error> {
        let txn = Txn {
            compares: expected
                .map(|mod_revision| Compare {
                    key: key.clone(),
                    mod_revision,
                })
                .into_iter()
                .collect(),
            success: vec![Op::Delete(key.clone())],
            failure: vec![Op::Get(key.clone())],
        };
        let mut res = self.txn(txn).await?;
        match (res.succeeded, res.results.pop()) {
            (true, Some(OpResult::Delete(Some(prev)))) => Ok(Deleted {
                prev,
                revision: res.revision,
            }),
            (false, Some(OpResult::Get(Some(kv)))) => Err(Error::Conflict {
                key: key.clone(),
                expected: expected.unwrap_or_default(),
                actual: kv.mod_revision,
            }),
            _ => Err(Error::NotFound { key: key.clone() }),
        }
    }

    /// Watches `range` from just after revision `after`: every change with a
    /// higher revision, history first (fails with [`Error::Compacted`] if it is
    /// gone), then live.
    pub async fn watch(&self, range: &KeyRange, after: Revision) -> Result<Watch, Error> {
        let inner = match &self.backend {
            Backend::Embedded(b) => WatchInner::Embedded(b.watch(range, after).await?),
            Backend::Etcd(b) => WatchInner::Etcd(b.watch(range, after).await?),
        };
        Ok(Watch { inner })
    }

    /// Forgets the history before `revision`: reads at older revisions and watches
    /// from before it then fail with [`Error::Compacted`]. Compacting at or below
    /// the last compaction is [`Error::Compacted`] too.
    pub async fn compact(&self, revision: Revision) -> Result<(), Error> {
        match &self.backend {
            Backend::Embedded(b) => b.compact(revision).await,
            Backend::Etcd(b) => b.compact(revision).await,
        }
    }
}

/// A stream of changes of a key range, from [`Store::watch`].
#[derive(Debug)]
pub struct Watch {
    inner: WatchInner,
}

#[derive(Debug)]
enum WatchInner {
    Embedded(embedded::EmbeddedWatch),
    Etcd(etcd::EtcdWatch),
}

impl Watch {
    /// The next event. Cancel-safe (usable in `select!`). An error ends the watch
    /// ([`Error::Compacted`] if it fell behind a compaction; later calls return
    /// [`Error::Closed`]).
    pub async fn recv(&mut self) -> Result<WatchEvent, Error> {
        match &mut self.inner {
            WatchInner::Embedded(w) => w.recv().await,
            WatchInner::Etcd(w) => w.recv().await,
        }
    }

    /// Asks for a [`WatchEvent::Progress`]: the watch delivers what it has and then
    /// the revision up to which it is complete, even when nothing in its range
    /// changes (what the API server turns into bookmarks).
    pub fn request_progress(&mut self) {
        match &mut self.inner {
            WatchInner::Embedded(w) => w.request_progress(),
            WatchInner::Etcd(w) => w.request_progress(),
        }
    }
}
