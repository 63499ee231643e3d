//! Watches on etcd: one `POST /v3/watch` per watch, whose response is a stream of
//! newline-separated JSON `WatchResponse`s.
//!
//! - The request body carries only the create request: etcd 3.4's gateway (Go's
//!   HTTP/1 server) does not answer until the request body has ended, so nothing
//!   can be sent on the stream later.
//! - Progress therefore comes from etcd's periodic progress notifications
//!   (`progress_notify`, every `--experimental-watch-progress-notify-interval`,
//!   10 minutes unless set): they go through the watcher's own event channel and
//!   only to synced watchers, so they are ordered with the events. (etcd 3.4's
//!   on-demand `progress_request` is not ordered with events before 3.4.24, etcd
//!   issue #15220.) [`EtcdWatch::request_progress`] delivers the next one.
//! - A broken stream (member gone) is resumed on the next endpoint from the
//!   revision after the last one delivered, so events are neither lost nor repeated.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::time::Duration;

use reqwest::Url;

use super::wire::{self, WatchCreateRequest, WatchLine, WatchRequest, WatchResponse, b64};
use super::{Etcd, GRPC_UNAVAILABLE, REQUEST_TIMEOUT, decode, range_end};
use crate::error::Error;
use crate::types::{Key, KeyRange, Revision, WatchEvent};

/// How long a watch tries to reach some endpoint before giving up.
const RECONNECT_FOR: Duration = Duration::from_secs(15);
/// Streams in a row that end before carrying anything: then the watch gives up.
const MAX_FLAPS: u32 = 10;

#[derive(Debug)]
pub(crate) struct EtcdWatch {
    etcd: Etcd,
    range: KeyRange,
    conn: Option<Conn>,
    /// Every event up to this revision has been queued.
    delivered: i64,
    queue: VecDeque<WatchEvent>,
    progress: Progress,
    /// Streams that ended in a row without carrying anything.
    flaps: u32,
    failed: bool,
}

impl EtcdWatch {
    pub(super) async fn start(
        etcd: Etcd,
        range: KeyRange,
        after: Revision,
    ) -> Result<EtcdWatch, Error> {
        // etcd reports a compacted start revision only asynchronously, by
        // cancelling the watch after creating it. A read at `after` tells at once,
        // and refuses exactly what the embedded store refuses.
        if after != Revision::ZERO {
            let probe = Key::new(&b"\0"[..])?;
            match etcd
                .range(&KeyRange::single(&probe), Some(after), NonZeroUsize::new(1))
                .await
            {
                Ok(_) | Err(Error::FutureRevision { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut w = EtcdWatch {
            etcd,
            range,
            conn: None,
            delivered: after.get(),
            queue: VecDeque::new(),
            progress: Progress::None,
            flaps: 0,
            failed: false,
        };
        w.conn = Some(w.connect().await?);
        Ok(w)
    }

    pub(crate) fn request_progress(&mut self) {
        if self.progress == Progress::None {
            self.progress = Progress::Requested;
        }
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
            if self.progress == Progress::Requested {
                // A notification already on its way may predate the request:
                // only one at or past the store's revision now answers it. (If
                // etcd cannot say, what this watch has seen is the floor.)
                let floor = match self.etcd.current_revision().await {
                    Ok(r) => r.get(),
                    Err(_) => self.delivered,
                };
                self.progress = Progress::AtLeast(floor);
                continue;
            }
            let Some(conn) = self.conn.as_mut() else {
                if self.flaps > 0 {
                    tokio::time::sleep(Duration::from_millis(50) * self.flaps).await;
                }
                self.conn = Some(self.connect().await?);
                continue;
            };
            match conn.next_line().await {
                Ok(Some(line)) => self.handle(line)?,
                Ok(None) | Err(_) => self.lost("the stream ended")?,
            }
        }
    }

    /// Drops the stream; the next turn reconnects from `delivered + 1`.
    fn lost(&mut self, reason: &str) -> Result<(), Error> {
        let endpoint = self.conn.take().map(|c| c.endpoint).unwrap_or_default();
        self.flaps += 1;
        if self.flaps > MAX_FLAPS {
            return Err(Error::WatchLost {
                endpoint,
                reason: reason.to_owned(),
            });
        }
        Ok(())
    }

    fn handle(&mut self, line: WatchLine) -> Result<(), Error> {
        if let Some(err) = line.error {
            if err.grpc_code == GRPC_UNAVAILABLE {
                return self.lost(&err.message);
            }
            let endpoint = self.conn.take().map(|c| c.endpoint).unwrap_or_default();
            return Err(Error::Etcd {
                endpoint,
                code: err.grpc_code,
                message: err.message,
            });
        }
        let Some(r) = line.result else {
            return Ok(());
        };
        if r.canceled {
            return Err(self.canceled(r));
        }
        if r.created {
            return Ok(());
        }
        self.flaps = 0;
        if r.events.is_empty() {
            // A progress notification: everything up to its revision was sent.
            let revision = r.header.revision;
            self.delivered = self.delivered.max(revision);
            if let Progress::AtLeast(floor) = self.progress
                && revision >= floor
            {
                self.progress = Progress::None;
                self.queue.push_back(WatchEvent::Progress {
                    revision: Revision::from_backend(revision),
                });
            }
            return Ok(());
        }
        let floor = self.delivered;
        for ev in r.events {
            let revision = ev.kv.mod_revision;
            // Already delivered before a reconnect: never twice.
            if revision <= floor {
                continue;
            }
            self.delivered = self.delivered.max(revision);
            self.queue.push_back(event(ev));
        }
        Ok(())
    }

    fn canceled(&mut self, r: WatchResponse) -> Error {
        let endpoint = self.conn.take().map(|c| c.endpoint).unwrap_or_default();
        if r.compact_revision > 0 {
            return Error::Compacted {
                requested: Revision::from_backend(self.delivered),
                compacted: Revision::from_backend(r.compact_revision),
            };
        }
        Error::WatchLost {
            endpoint,
            reason: format!("etcd cancelled the watch: {}", r.cancel_reason),
        }
    }

    /// Opens a stream on the first endpoint that takes it, retrying for a while
    /// when none does.
    async fn connect(&mut self) -> Result<Conn, Error> {
        let deadline = tokio::time::Instant::now() + RECONNECT_FOR;
        let mut backoff = Duration::from_millis(50);
        loop {
            let mut last = None;
            for i in self.etcd.order() {
                match open(&self.etcd, i, &self.range, self.delivered + 1).await {
                    Ok((conn, first)) if first.created && !first.canceled => {
                        self.etcd
                            .preferred
                            .store(i, std::sync::atomic::Ordering::Relaxed);
                        return Ok(conn);
                    }
                    Ok((conn, first)) => {
                        self.conn = Some(conn);
                        return Err(self.canceled(first));
                    }
                    Err(e) => last = Some(e),
                }
            }
            if tokio::time::Instant::now() + backoff > deadline {
                return Err(last.unwrap_or(Error::Closed));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}

/// Where a requested progress notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    None,
    /// Asked for; the floor is not known yet.
    Requested,
    /// Answered by the first notification at or past this revision.
    AtLeast(i64),
}

fn event(ev: wire::Event) -> WatchEvent {
    let prev = ev.prev_kv.map(wire::Kv::into_kv);
    if ev.kind == "DELETE" {
        WatchEvent::Delete {
            revision: Revision::from_backend(ev.kv.mod_revision),
            key: Key::from_stored(ev.kv.key),
            prev,
        }
    } else {
        WatchEvent::Put {
            kv: ev.kv.into_kv(),
            prev,
        }
    }
}

/// One watch stream.
#[derive(Debug)]
struct Conn {
    endpoint: String,
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Conn {
    /// The next line of the stream; `None` when it ends. Cancel-safe: the buffer
    /// changes only after an await has completed.
    async fn next_line(&mut self) -> Result<Option<WatchLine>, Error> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(&line)
                    .map(Some)
                    .map_err(|e| Error::Protocol {
                        endpoint: self.endpoint.clone(),
                        reason: format!("watch stream: {e}"),
                    });
            }
            match self.resp.chunk().await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk),
                Ok(None) => return Ok(None),
                Err(source) => {
                    return Err(Error::Http {
                        endpoint: self.endpoint.clone(),
                        source,
                    });
                }
            }
        }
    }
}

/// Opens a watch stream on endpoint `i` from `start` and reads its first answer.
async fn open(
    etcd: &Etcd,
    i: usize,
    range: &KeyRange,
    start: i64,
) -> Result<(Conn, WatchResponse), Error> {
    let url: Url = etcd.url(i, "/v3/watch");
    let endpoint = url.to_string();
    let req = WatchRequest {
        create_request: WatchCreateRequest {
            key: b64(range.start()),
            range_end: Some(range_end(range)),
            start_revision: start,
            progress_notify: true,
            prev_kv: true,
        },
    };
    let body = serde_json::to_vec(&req).map_err(|e| Error::Protocol {
        endpoint: endpoint.clone(),
        reason: e.to_string(),
    })?;
    let send = etcd
        .http
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send();
    let timed_out = || Error::WatchLost {
        endpoint: endpoint.clone(),
        reason: "no answer to the watch request".into(),
    };
    let resp = tokio::time::timeout(REQUEST_TIMEOUT, send)
        .await
        .map_err(|_| timed_out())?
        .map_err(|source| Error::Http {
            endpoint: endpoint.clone(),
            source,
        })?;
    if !resp.status().is_success() {
        return Err(decode::<wire::CompactionResponse>(&url, resp)
            .await
            .err()
            .unwrap_or_else(timed_out));
    }
    let mut conn = Conn {
        endpoint: endpoint.clone(),
        resp,
        buf: Vec::new(),
    };
    let first = tokio::time::timeout(REQUEST_TIMEOUT, conn.next_line())
        .await
        .map_err(|_| timed_out())??;
    match first {
        Some(WatchLine {
            result: Some(r), ..
        }) => Ok((conn, r)),
        Some(WatchLine {
            error: Some(err), ..
        }) => Err(Error::Etcd {
            endpoint,
            code: err.grpc_code,
            message: err.message,
        }),
        _ => Err(Error::WatchLost {
            endpoint,
            reason: "the stream ended before the watch was created".into(),
        }),
    }
}
