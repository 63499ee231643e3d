//! The single writer of the embedded store: one OS thread owns every write
//! transaction, so revisions are handed out in commit order without locks.
//!
//! Group commit: the thread takes every write waiting in its queue (up to
//! [`MAX_BATCH`]) into one redb transaction, gives each its own revision, commits
//! once (one fsync for the lot), publishes the committed revisions to the watchers,
//! and only then answers the callers. A caller therefore learns its revision only
//! once it is durable, and a watcher never sees a revision that could still be lost.

use std::sync::Arc;

use redb::{Database, ReadableTable as _, Table, WriteTransaction};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::records::{
    CURRENT, Current, HISTORY, LOG, Logged, META, META_COMPACTED, META_REVISION, ReadError,
    get_current, meta, raw, rev,
};
use crate::error::Error;
use crate::types::{Op, OpResult, Revision, Txn, TxnResult, WatchEvent};

/// Most writes in one commit: bounds the latency a batch adds to its first write.
const MAX_BATCH: usize = 512;

/// One committed revision, as broadcast to the watchers.
#[derive(Debug)]
pub(super) struct Committed {
    pub(super) revision: u64,
    pub(super) events: Vec<WatchEvent>,
}

pub(super) type Reply<T> = oneshot::Sender<Result<T, Error>>;

#[derive(Debug)]
pub(super) enum Job {
    Txn {
        txn: Txn,
        reply: Reply<TxnResult>,
    },
    Compact {
        revision: Revision,
        reply: Reply<()>,
    },
}

pub(super) struct Writer {
    pub(super) db: Arc<Database>,
    pub(super) path: String,
    pub(super) jobs: mpsc::Receiver<Job>,
    pub(super) events: broadcast::Sender<Arc<Committed>>,
}

impl Writer {
    /// Runs until every sender of jobs is gone.
    pub(super) fn run(mut self) {
        let mut pending = None;
        loop {
            let job = match pending.take() {
                Some(job) => job,
                None => match self.jobs.blocking_recv() {
                    Some(job) => job,
                    None => return,
                },
            };
            match job {
                Job::Compact { revision, reply } => {
                    let _ = reply.send(self.compact(revision));
                }
                Job::Txn { txn, reply } => {
                    let mut batch = vec![(txn, reply)];
                    while batch.len() < MAX_BATCH {
                        match self.jobs.try_recv() {
                            Ok(Job::Txn { txn, reply }) => batch.push((txn, reply)),
                            Ok(compact) => {
                                // Compaction runs in its own transaction, after this batch.
                                pending = Some(compact);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.commit_batch(batch);
                }
            }
        }
    }

    fn storage(&self, e: redb::Error) -> Error {
        Error::Storage {
            path: self.path.clone(),
            source: Arc::new(e),
        }
    }

    fn read_error(&self, e: ReadError) -> Error {
        match e {
            ReadError::Storage(e) => self.storage(e),
            ReadError::Store(e) => e,
        }
    }

    fn commit_batch(&self, batch: Vec<(Txn, Reply<TxnResult>)>) {
        match self.apply_batch(batch.iter().map(|(txn, _)| txn)) {
            Ok((results, committed)) => {
                // No receiver (no watch open) is not an error: nothing to tell.
                for c in committed {
                    let _ = self.events.send(Arc::new(c));
                }
                for ((_, reply), result) in batch.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(e) => {
                // Nothing of the batch is durable: every write in it failed.
                for (_, reply) in batch {
                    let _ = reply.send(Err(duplicate(&e)));
                }
            }
        }
    }

    #[allow(clippy::type_complexity, reason = "a private helper's pair of outputs")]
    fn apply_batch<'a>(
        &self,
        txns: impl Iterator<Item = &'a Txn>,
    ) -> Result<(Vec<TxnResult>, Vec<Committed>), Error> {
        let wtx = self.db.begin_write().map_err(|e| self.storage(e.into()))?;
        let mut results = Vec::new();
        let mut committed = Vec::new();
        {
            let mut tables = Tables::open(&wtx).map_err(|e| self.storage(e))?;
            let (mut revision, _) = meta(&tables.meta).map_err(|e| self.storage(e))?;
            for txn in txns {
                let (result, events) = tables
                    .apply(txn, revision)
                    .map_err(|e| self.read_error(e))?;
                if !events.is_empty() {
                    revision += 1;
                    committed.push(Committed { revision, events });
                }
                results.push(result);
            }
            tables
                .meta
                .insert(META_REVISION, revision)
                .map_err(|e| self.storage(e.into()))?;
        }
        // Durability::Immediate, redb's default: durable when commit returns.
        wtx.commit().map_err(|e| self.storage(e.into()))?;
        Ok((results, committed))
    }

    /// Drops every version that no read at or after `revision` and no watch from
    /// `revision` on can reach: for each write in (previous compact revision,
    /// `revision`], the version it replaced, and the write itself if it is a delete.
    fn compact(&self, revision: Revision) -> Result<(), Error> {
        let target = raw(revision);
        let wtx = self.db.begin_write().map_err(|e| self.storage(e.into()))?;
        {
            let mut t = Tables::open(&wtx).map_err(|e| self.storage(e))?;
            let (current, compacted) = meta(&t.meta).map_err(|e| self.storage(e))?;
            if target > current {
                return Err(Error::FutureRevision {
                    requested: revision,
                    current: rev(current),
                });
            }
            if target <= compacted {
                return Err(Error::Compacted {
                    requested: revision,
                    compacted: rev(compacted),
                });
            }
            t.compact(compacted, target)
                .map_err(|e| self.read_error(e))?;
            t.meta
                .insert(META_COMPACTED, target)
                .map_err(|e| self.storage(e.into()))?;
        }
        wtx.commit().map_err(|e| self.storage(e.into()))
    }
}

/// Rebuilds the errors a failed batch can end with, one per caller.
fn duplicate(e: &Error) -> Error {
    match e {
        Error::Storage { path, source } => Error::Storage {
            path: path.clone(),
            source: Arc::clone(source),
        },
        Error::Corrupt { what } => Error::Corrupt { what },
        // The batch paths produce nothing else; say so rather than guess.
        _ => Error::Corrupt { what: "batch" },
    }
}

/// The four tables, open in one write transaction.
struct Tables<'txn> {
    meta: Table<'txn, &'static str, u64>,
    current: Table<'txn, &'static [u8], &'static [u8]>,
    log: Table<'txn, (u64, u32), &'static [u8]>,
    history: Table<'txn, (&'static [u8], u64), u32>,
}

impl<'txn> Tables<'txn> {
    fn open(wtx: &'txn WriteTransaction) -> Result<Tables<'txn>, redb::Error> {
        Ok(Tables {
            meta: wtx.open_table(META)?,
            current: wtx.open_table(CURRENT)?,
            log: wtx.open_table(LOG)?,
            history: wtx.open_table(HISTORY)?,
        })
    }

    /// One transaction at store revision `revision`; its writes, if any, are
    /// revision + 1. Returns its result and the events it made.
    fn apply(
        &mut self,
        txn: &Txn,
        revision: u64,
    ) -> Result<(TxnResult, Vec<WatchEvent>), ReadError> {
        let mut succeeded = true;
        for cmp in &txn.compares {
            let actual = get_current(&self.current, &cmp.key)?.map_or(0, |c| c.mod_rev);
            if actual != raw(cmp.mod_revision) {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        let new_rev = revision + 1;
        let mut results = Vec::with_capacity(ops.len());
        let mut events = Vec::new();
        let mut sub: u32 = 0;
        for op in ops {
            match op {
                Op::Get(key) => {
                    let kv = get_current(&self.current, key)?.map(|c| c.into_kv(key.clone()));
                    results.push(OpResult::Get(kv));
                }
                Op::Put(key, value) => {
                    let prev = get_current(&self.current, key)?;
                    let (create_rev, version) = match &prev {
                        Some(p) => (p.create_rev, p.version + 1),
                        None => (new_rev, 1),
                    };
                    let now = Current {
                        create_rev,
                        mod_rev: new_rev,
                        version,
                        sub,
                        value: value.clone(),
                    };
                    let logged = Logged {
                        delete: false,
                        key: key.bytes().clone(),
                        create_rev,
                        version,
                        prev: prev.as_ref().map(Current::pointer),
                        value: value.clone(),
                    };
                    self.current.insert(key.as_bytes(), &now.encode()[..])?;
                    self.log.insert((new_rev, sub), &logged.encode()[..])?;
                    self.history.insert((key.as_bytes(), new_rev), sub)?;
                    let kv = now.into_kv(key.clone());
                    events.push(WatchEvent::Put {
                        kv: kv.clone(),
                        prev: prev.map(|p| p.into_kv(key.clone())),
                    });
                    results.push(OpResult::Put(kv));
                    sub += 1;
                }
                Op::Delete(key) => {
                    let Some(prev) = get_current(&self.current, key)? else {
                        results.push(OpResult::Delete(None));
                        continue;
                    };
                    let logged = Logged {
                        delete: true,
                        key: key.bytes().clone(),
                        create_rev: 0,
                        version: 0,
                        prev: Some(prev.pointer()),
                        value: bytes::Bytes::new(),
                    };
                    self.current.remove(key.as_bytes())?;
                    self.log.insert((new_rev, sub), &logged.encode()[..])?;
                    self.history.insert((key.as_bytes(), new_rev), sub)?;
                    let prev = prev.into_kv(key.clone());
                    events.push(WatchEvent::Delete {
                        key: key.clone(),
                        revision: rev(new_rev),
                        prev: Some(prev.clone()),
                    });
                    results.push(OpResult::Delete(Some(prev)));
                    sub += 1;
                }
            }
        }
        let revision = if events.is_empty() { revision } else { new_rev };
        Ok((
            TxnResult {
                succeeded,
                revision: rev(revision),
                results,
            },
            events,
        ))
    }

    /// See [`Writer::compact`]. Every version has one successor at most, so each
    /// dropped version is reached once, from the write that replaced it.
    fn compact(&mut self, from: u64, to: u64) -> Result<(), ReadError> {
        let mut writes = Vec::new();
        for entry in self.log.range((from + 1, 0u32)..=(to, u32::MAX))? {
            let (k, v) = entry?;
            let rec = Logged::decode(v.value())?;
            writes.push((k.value(), rec.key, rec.delete, rec.prev));
        }
        for ((mod_rev, sub), key, delete, prev) in writes {
            if let Some(prev @ (prev_rev, _)) = prev {
                self.log.remove(prev)?;
                self.history.remove((&key[..], prev_rev))?;
            }
            if delete {
                self.log.remove((mod_rev, sub))?;
                self.history.remove((&key[..], mod_rev))?;
            }
        }
        Ok(())
    }
}

/// Whether a revision's history is still readable (not compacted).
pub(super) fn check_readable(requested: u64, current: u64, compacted: u64) -> Result<(), Error> {
    if requested > current {
        return Err(Error::FutureRevision {
            requested: rev(requested),
            current: rev(current),
        });
    }
    if requested < compacted {
        return Err(Error::Compacted {
            requested: rev(requested),
            compacted: rev(compacted),
        });
    }
    Ok(())
}
