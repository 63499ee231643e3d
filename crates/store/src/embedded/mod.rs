//! The embedded backend: one redb file in the data directory, written by one
//! thread (see [`writer`]), read from tokio's blocking pool, watched through a
//! broadcast of committed revisions backed by the on-disk log (see [`watch`]).

mod records;
mod watch;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use redb::{Database, ReadTransaction, ReadableDatabase as _};
use tokio::sync::{broadcast, mpsc, oneshot};

use self::records::{
    CURRENT, HISTORY, LOG, META, ReadError, ReadResult, get_at, get_current, meta, range_at,
    range_current, raw, rev,
};
use self::writer::{Job, Writer, check_readable};
use crate::error::Error;
use crate::types::{KeyRange, KeyValue, Limit, RangeResult, Revision, Txn, TxnResult};

pub(crate) use self::watch::EmbeddedWatch;

/// The database file inside the data directory.
const FILE: &str = "store.redb";

/// Writes waiting for the writer; a full queue makes writers wait (backpressure).
const QUEUE: usize = 4096;

#[derive(Debug, Clone)]
pub(crate) struct Embedded {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Arc<Database>,
    path: Arc<str>,
    /// `None` only while dropping: closing it stops the writer.
    jobs: Option<mpsc::Sender<Job>>,
    events: broadcast::Sender<Arc<writer::Committed>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Stop the writer and wait for it, so that the file is closed (and its
        // lock released) when the last handle is gone, unless a watch still reads.
        self.jobs = None;
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

fn read_error(path: &str, e: ReadError) -> Error {
    match e {
        ReadError::Storage(e) => Error::Storage {
            path: path.to_owned(),
            source: Arc::new(e),
        },
        ReadError::Store(e) => e,
    }
}

impl Embedded {
    pub(crate) async fn open(dir: &Path) -> Result<Embedded, Error> {
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || Embedded::open_blocking(&dir))
            .await
            .map_err(|_| Error::Closed)?
    }

    fn open_blocking(dir: &Path) -> Result<Embedded, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            what: "creating the data directory",
            source,
        })?;
        let file = dir.join(FILE);
        let path: Arc<str> = file.display().to_string().into();
        let storage = |e: redb::Error| Error::Storage {
            path: path.to_string(),
            source: Arc::new(e),
        };
        let db = Database::create(&file).map_err(|e| storage(e.into()))?;
        // Create the tables, so that readers never meet a missing one.
        let wtx = db.begin_write().map_err(|e| storage(e.into()))?;
        {
            wtx.open_table(META).map_err(|e| storage(e.into()))?;
            wtx.open_table(CURRENT).map_err(|e| storage(e.into()))?;
            wtx.open_table(LOG).map_err(|e| storage(e.into()))?;
            wtx.open_table(HISTORY).map_err(|e| storage(e.into()))?;
        }
        wtx.commit().map_err(|e| storage(e.into()))?;

        let db = Arc::new(db);
        let (jobs, jobs_rx) = mpsc::channel(QUEUE);
        let (events, _) = broadcast::channel(watch::BROADCAST_CAPACITY);
        let writer = Writer {
            db: Arc::clone(&db),
            path: path.to_string(),
            jobs: jobs_rx,
            events: events.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run())
            .map_err(|source| Error::Io {
                what: "starting the writer thread",
                source,
            })?;
        Ok(Embedded {
            inner: Arc::new(Inner {
                db,
                path,
                jobs: Some(jobs),
                events,
                writer: Mutex::new(Some(handle)),
            }),
        })
    }

    /// Runs a read transaction on the blocking pool: redb reads are file IO.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> ReadResult<T> + Send + 'static,
    ) -> Result<T, Error> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let rtx = inner
                .db
                .begin_read()
                .map_err(|e| ReadError::Storage(e.into()))?;
            f(&rtx)
        })
        .await
        .map_err(|_| Error::Closed)?
        .map_err(|e| read_error(&self.inner.path, e))
    }

    async fn submit<T>(&self, job: impl FnOnce(writer::Reply<T>) -> Job) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        let jobs = self.inner.jobs.as_ref().ok_or(Error::Closed)?;
        jobs.send(job(reply)).await.map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    pub(crate) async fn current_revision(&self) -> Result<Revision, Error> {
        let (current, _) = self.read(|rtx| Ok(meta(&rtx.open_table(META)?)?)).await?;
        Ok(rev(current))
    }

    pub(crate) async fn range(
        &self,
        range: &KeyRange,
        at: Option<Revision>,
        limit: Limit,
    ) -> Result<RangeResult, Error> {
        let range = range.clone();
        let at = at.map(raw).filter(|&r| r != 0);
        let limit = limit.map_or(usize::MAX, |l| l.get());
        self.read(move |rtx| {
            let (current, compacted) = meta(&rtx.open_table(META)?)?;
            let (kvs, more, at) = match at {
                Some(at) if at != current => {
                    check_readable(at, current, compacted)?;
                    let history = rtx.open_table(HISTORY)?;
                    let log = rtx.open_table(LOG)?;
                    let (kvs, more) = range_at(&history, &log, &range, at, limit)?;
                    (kvs, more, at)
                }
                _ => {
                    let (kvs, more) = range_current(&rtx.open_table(CURRENT)?, &range, limit)?;
                    (kvs, more, current)
                }
            };
            Ok(RangeResult {
                kvs,
                more,
                revision: rev(at),
            })
        })
        .await
    }

    pub(crate) async fn get(
        &self,
        key: &crate::types::Key,
        at: Option<Revision>,
    ) -> Result<Option<KeyValue>, Error> {
        let key = key.clone();
        let at = at.map(raw).filter(|&r| r != 0);
        self.read(move |rtx| {
            let (current, compacted) = meta(&rtx.open_table(META)?)?;
            match at {
                Some(at) if at != current => {
                    check_readable(at, current, compacted)?;
                    let history = rtx.open_table(HISTORY)?;
                    let log = rtx.open_table(LOG)?;
                    get_at(&history, &log, &key, at)
                }
                _ => {
                    Ok(get_current(&rtx.open_table(CURRENT)?, &key)?
                        .map(|c| c.into_kv(key.clone())))
                }
            }
        })
        .await
    }

    pub(crate) async fn txn(&self, txn: Txn) -> Result<TxnResult, Error> {
        self.submit(|reply| Job::Txn { txn, reply }).await
    }

    pub(crate) async fn compact(&self, revision: Revision) -> Result<(), Error> {
        self.submit(|reply| Job::Compact { revision, reply }).await
    }

    pub(crate) async fn watch(
        &self,
        range: &KeyRange,
        after: Revision,
    ) -> Result<EmbeddedWatch, Error> {
        EmbeddedWatch::start(self, range.clone(), raw(after)).await
    }
}
