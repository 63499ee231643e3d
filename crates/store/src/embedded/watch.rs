//! Watches of the embedded store.
//!
//! Every committed revision is broadcast once (a `tokio::sync::broadcast` ring of
//! [`BROADCAST_CAPACITY`] revisions) and every watch filters it on its own. A send
//! never waits, so a slow watcher cannot hold up the writer; it falls behind the
//! ring instead, and then reads what it missed from the `log` table. One rule does
//! all of it: a watch knows the next revision it owes (`next`); a broadcast
//! revision below it was already delivered (skipped), above it means a gap, which
//! is filled from `log` before going on. History replay at the start is the same
//! gap: the watch subscribes first, then reads the current revision, and owes
//! everything from its start revision up to there from `log`.
//!
//! Work happens in [`Watch::recv`](super::super::Watch::recv) itself, in the
//! caller's task: no task per watcher, and the state changes only after each await
//! completes, so `recv` is cancel-safe (it can sit in a `select!`).

use std::collections::VecDeque;
use std::sync::Arc;

use redb::{Database, ReadableDatabase as _};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

use super::records::{LOG, Logged, META, event_of, meta, rev};
use super::writer::Committed;
use super::{Embedded, read_error};
use crate::error::Error;
use crate::types::{KeyRange, WatchEvent};

/// Revisions the broadcast ring holds for watchers that are behind.
pub(super) const BROADCAST_CAPACITY: usize = 4096;

/// Most `log` records one catch-up read takes (whole revisions, so maybe a few
/// more): bounds the memory and the time of one blocking read.
const CATCH_UP_RECORDS: usize = 1024;

#[derive(Debug)]
pub(crate) struct EmbeddedWatch {
    db: Arc<Database>,
    path: Arc<str>,
    range: KeyRange,
    rx: broadcast::Receiver<Arc<Committed>>,
    /// The next revision this watch owes its caller.
    next: u64,
    /// Revisions up to here are read from `log` before listening again.
    catch_up_to: u64,
    /// The newest revision known to be committed.
    seen: u64,
    queue: VecDeque<WatchEvent>,
    progress_requested: bool,
    failed: bool,
}

impl EmbeddedWatch {
    pub(super) async fn start(
        store: &Embedded,
        range: KeyRange,
        after: u64,
    ) -> Result<EmbeddedWatch, Error> {
        // Subscribe before reading the revision: whatever commits after the read
        // is then sure to be broadcast to this receiver.
        let rx = store.inner.events.subscribe();
        let (current, compacted) = store.read(|rtx| Ok(meta(&rtx.open_table(META)?)?)).await?;
        if after < compacted {
            return Err(Error::Compacted {
                requested: rev(after),
                compacted: rev(compacted),
            });
        }
        Ok(EmbeddedWatch {
            db: Arc::clone(&store.inner.db),
            path: Arc::clone(&store.inner.path),
            range,
            rx,
            next: after + 1,
            catch_up_to: current,
            seen: current,
            queue: VecDeque::new(),
            progress_requested: false,
            failed: false,
        })
    }

    pub(crate) fn request_progress(&mut self) {
        self.progress_requested = true;
    }

    pub(crate) async fn recv(&mut self) -> Result<WatchEvent, Error> {
        if self.failed {
            return Err(Error::Closed);
        }
        let result = self.next_event().await;
        self.failed = result.is_err();
        result
    }

    async fn next_event(&mut self) -> Result<WatchEvent, Error> {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Ok(ev);
            }
            if self.next <= self.catch_up_to {
                self.catch_up().await?;
                continue;
            }
            if self.progress_requested {
                // Take in what is already broadcast, then report: every revision
                // below `next` has been delivered.
                match self.rx.try_recv() {
                    Ok(c) => self.accept(&c),
                    Err(TryRecvError::Lagged(_)) => {}
                    Err(TryRecvError::Empty) => {
                        self.progress_requested = false;
                        // A watch started in the future has not reached `next - 1`.
                        let revision = rev((self.next - 1).min(self.seen));
                        return Ok(WatchEvent::Progress { revision });
                    }
                    Err(TryRecvError::Closed) => return Err(Error::Closed),
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(c) => self.accept(&c),
                // The ring overwrote revisions this watch had not read: the next
                // one it gets shows the gap, which `log` fills.
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return Err(Error::Closed),
            }
        }
    }

    fn accept(&mut self, c: &Committed) {
        self.seen = self.seen.max(c.revision);
        if c.revision < self.next {
            return;
        }
        if c.revision > self.next {
            // A gap: `c` is committed, so `log` has everything up to it.
            self.catch_up_to = self.catch_up_to.max(c.revision);
            return;
        }
        let range = &self.range;
        self.queue.extend(
            c.events
                .iter()
                .filter(|ev| range.contains(event_key(ev)))
                .cloned(),
        );
        self.next += 1;
    }

    /// Reads owed revisions from `log`, a bounded chunk at a time.
    async fn catch_up(&mut self) -> Result<(), Error> {
        let db = Arc::clone(&self.db);
        let range = self.range.clone();
        let (from, to) = (self.next, self.catch_up_to);
        let read = tokio::task::spawn_blocking(move || read_log(&db, &range, from, to))
            .await
            .map_err(|_| Error::Closed)?;
        let (events, next) = read.map_err(|e| read_error(&self.path, e))?;
        // Only now, after the await: a cancelled `recv` leaves the state as it was.
        self.queue.extend(events);
        self.next = next;
        Ok(())
    }
}

fn event_key(ev: &WatchEvent) -> &[u8] {
    match ev {
        WatchEvent::Put { kv, .. } => kv.key.as_bytes(),
        WatchEvent::Delete { key, .. } => key.as_bytes(),
        WatchEvent::Progress { .. } => &[],
    }
}

/// The events of `range` in revisions `from..=to` (or up to where a chunk ends,
/// at a revision boundary), and the next revision to read.
fn read_log(
    db: &Database,
    range: &KeyRange,
    from: u64,
    to: u64,
) -> Result<(Vec<WatchEvent>, u64), super::records::ReadError> {
    let rtx = db.begin_read()?;
    let (_, compacted) = meta(&rtx.open_table(META)?)?;
    if from - 1 < compacted {
        return Err(Error::Compacted {
            requested: rev(from - 1),
            compacted: rev(compacted),
        }
        .into());
    }
    let log = rtx.open_table(LOG)?;
    let mut events = Vec::new();
    for (records, entry) in log.range((from, 0u32)..=(to, u32::MAX))?.enumerate() {
        let (k, v) = entry?;
        let (mod_rev, sub) = k.value();
        if records >= CATCH_UP_RECORDS && sub == 0 {
            // A new revision starts here: stop before it.
            return Ok((events, mod_rev));
        }
        if !range.contains(Logged::decode_key(v.value())?) {
            continue;
        }
        let rec = Logged::decode(v.value())?;
        events.push(event_of(&log, mod_rev, rec)?);
    }
    Ok((events, to + 1))
}
