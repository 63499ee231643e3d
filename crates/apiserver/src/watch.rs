//! `?watch=1`: a chunked stream of `{"type": ..., "object": ...}` lines from
//! the store's watch, filtered by the request's selectors.
//!
//! Without a resourceVersion (or with "0") the stream starts with an `ADDED`
//! per existing object, then follows from the revision they were read at.
//! With one, it replays every change after it; a compacted revision gets 410
//! (before the stream starts) or an `ERROR` event carrying the 410 Status (if
//! compaction overtakes a running watch), so informers relist.

use std::sync::Arc;
use std::time::Duration;

use bosun_api::{Reason, Status};
use std::collections::HashMap;
use std::sync::Mutex;

use bosun_store::{Key, KeyRange, Revision, WatchEvent};
use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{HeaderMap, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::State;
use crate::http::{Body, JSON, Query, Resp, TABLE};
use crate::metrics::{Metrics, OpenWatch};
use crate::objects::{self, ApiResult, Filter, Output, decode, set_rv, store_error};
use crate::route::Target;
use crate::table;

/// A watch without `timeoutSeconds` ends after this (Kubernetes picks 30-60 min);
/// clients re-open from their last resourceVersion.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
/// Events in flight per watch before the sender waits for the client.
const BUFFER: usize = 64;
/// Watches open at once; more get 429 (each holds a task and a store watch).
const MAX_WATCHES: i64 = 10_000;

pub(crate) async fn watch(
    state: Arc<State>,
    t: Target,
    q: &Query,
    headers: &HeaderMap,
) -> ApiResult<Resp> {
    let filter = Filter::from_query(t.res, q)?;
    let out = Output::from_request(headers, q)?;
    let open = state.metrics.open_watch(MAX_WATCHES).ok_or_else(|| {
        Status::new(
            Reason::TooManyRequests,
            format!("too many watches are open (the limit is {MAX_WATCHES}); retry later"),
        )
    })?;
    let bookmarks = q.flag("allowWatchBookmarks");
    let send_initial = q.flag("sendInitialEvents");
    let timeout = match q.non_empty("timeoutSeconds") {
        None => DEFAULT_TIMEOUT,
        Some(s) => s
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| Status::bad_request(format!("timeoutSeconds: invalid value {s:?}")))?,
    };
    let rv = match q.non_empty("resourceVersion") {
        None | Some("0") => None,
        Some(s) => Some(
            s.parse::<Revision>()
                .map_err(|e| Status::bad_request(format!("resourceVersion: {e}")))?,
        ),
    };
    let (initial, after) = match rv {
        Some(rv) if !send_initial => (Vec::new(), rv),
        _ => {
            let listed = objects::read_list(&state, &t, &filter).await?;
            (listed.items, listed.revision)
        }
    };
    let range = KeyRange::prefix(objects::prefix(t.res, t.namespace.as_deref()));
    let store_watch = state
        .store
        .watch(&range, after)
        .await
        .map_err(|e| store_error(e, t.res, ""))?;
    let ct = if out.table { TABLE } else { JSON };
    let (tx, rx) = mpsc::channel(BUFFER);
    let stream = Stream {
        t,
        filter,
        out,
        tx,
        metrics: state.metrics.clone(),
        lines: state.event_lines.clone(),
        _open: open,
    };
    let interval = state.bookmark_interval;
    tokio::spawn(stream.run(
        store_watch,
        initial,
        after,
        Options {
            bookmarks,
            send_initial,
            timeout,
            interval,
        },
    ));
    let mut resp = Response::new(Body::Stream(rx));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    Ok(resp)
}

/// One event line: `{"type": ..., "object": ...}` and a newline.
fn line(ty: &str, object: Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": ty, "object": object}))
        .expect("a Value always serializes");
    line.push(b'\n');
    line.into()
}

/// Event lines recently made, by revision, key and type, shared by watches.
#[derive(Debug, Default)]
pub(crate) struct EventLines {
    lines: Mutex<HashMap<(Revision, Key, &'static str), Bytes>>,
}

/// Lines kept before the cache starts over (a watch that comes later makes its own).
const LINES_KEPT: usize = 4096;

impl EventLines {
    fn get_or(
        &self,
        rev: Revision,
        key: &Key,
        ty: &'static str,
        make: impl FnOnce() -> Option<Bytes>,
    ) -> Option<Bytes> {
        let id = (rev, key.clone(), ty);
        if let Some(line) = self.lines.lock().expect("event lines").get(&id) {
            return Some(line.clone());
        }
        // Made outside the lock: two watches may both make it; either copy is right.
        let line = make()?;
        let mut lines = self.lines.lock().expect("event lines");
        if lines.len() >= LINES_KEPT {
            lines.clear();
        }
        lines.insert(id, line.clone());
        Some(line)
    }
}

struct Options {
    bookmarks: bool,
    send_initial: bool,
    timeout: Duration,
    interval: Duration,
}

struct Stream {
    t: Target,
    filter: Filter,
    out: Output,
    tx: mpsc::Sender<Bytes>,
    metrics: Arc<Metrics>,
    lines: Arc<EventLines>,
    /// Counts this watch as open for as long as its task runs.
    _open: OpenWatch,
}

impl Stream {
    /// Sends one event; `false` once the client is gone.
    async fn send(&self, ty: &str, object: Value) -> bool {
        let object = if self.out.table && matches!(ty, "ADDED" | "MODIFIED" | "DELETED") {
            let meta = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
            table::table(
                self.t.res,
                std::slice::from_ref(&object),
                meta,
                objects::now(),
                self.out.include,
            )
        } else {
            object
        };
        self.send_line(line(ty, object)).await
    }

    async fn send_line(&self, line: Bytes) -> bool {
        let sent = self.tx.send(line).await.is_ok();
        if sent {
            self.metrics.watch_event();
        }
        sent
    }

    /// Whether this watch sends events as they are (no selectors, no Tables).
    fn plain(&self) -> bool {
        !self.out.table && self.filter.is_empty()
    }

    fn bookmark(&self, rev: Revision, initial_end: bool) -> Value {
        let mut meta = json!({"resourceVersion": rev.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({"kind": self.t.res.kind, "apiVersion": self.t.res.api_version(), "metadata": meta})
    }

    async fn run(
        self,
        mut watch: bosun_store::Watch,
        initial: Vec<Value>,
        after: Revision,
        opts: Options,
    ) {
        for obj in initial {
            if !self.send("ADDED", obj).await {
                return;
            }
        }
        if opts.send_initial
            && opts.bookmarks
            && !self.send("BOOKMARK", self.bookmark(after, true)).await
        {
            return;
        }
        let deadline = tokio::time::sleep(opts.timeout);
        tokio::pin!(deadline);
        let start = tokio::time::Instant::now() + opts.interval;
        let mut ticks = tokio::time::interval_at(start, opts.interval);
        loop {
            let event = tokio::select! {
                () = self.tx.closed() => return,
                () = &mut deadline => return,
                _ = ticks.tick(), if opts.bookmarks => {
                    watch.request_progress();
                    continue;
                }
                event = watch.recv() => event,
            };
            let keep_going = match event {
                // Without selectors or Tables every watcher of the range sends
                // the same line for an event: the first one to get there makes
                // it, the others reuse it (hundreds of watchers, one encoding).
                Ok(WatchEvent::Put { kv, prev }) if self.plain() => {
                    let ty = if prev.is_some() { "MODIFIED" } else { "ADDED" };
                    let line = self.lines.get_or(kv.mod_revision, &kv.key, ty, || {
                        decode(&kv).ok().map(|o| line(ty, o))
                    });
                    match line {
                        Some(l) => self.send_line(l).await,
                        None => true,
                    }
                }
                Ok(WatchEvent::Delete {
                    key,
                    revision,
                    prev: Some(p),
                }) if self.plain() => {
                    let line = self.lines.get_or(revision, &key, "DELETED", || {
                        decode(&p).ok().map(|mut o| {
                            set_rv(&mut o, revision);
                            line("DELETED", o)
                        })
                    });
                    match line {
                        Some(l) => self.send_line(l).await,
                        None => true,
                    }
                }
                Ok(WatchEvent::Put { kv, prev }) => {
                    let Ok(new) = decode(&kv) else { continue };
                    let old = prev.as_ref().and_then(|p| decode(p).ok());
                    let (now_in, was_in) = (
                        self.filter.matches(&new),
                        old.as_ref().is_some_and(|o| self.filter.matches(o)),
                    );
                    match (now_in, was_in, old.is_some()) {
                        (true, true, _) => self.send("MODIFIED", new).await,
                        (true, false, _) => self.send("ADDED", new).await,
                        // It no longer matches: to this watcher it is gone.
                        (false, true, _) => self.send("DELETED", new).await,
                        (false, false, _) => true,
                    }
                }
                Ok(WatchEvent::Delete { revision, prev, .. }) => match prev {
                    Some(p) => match decode(&p) {
                        Ok(mut obj) if self.filter.matches(&obj) => {
                            set_rv(&mut obj, revision);
                            self.send("DELETED", obj).await
                        }
                        _ => true,
                    },
                    None => true,
                },
                Ok(WatchEvent::Progress { revision }) => {
                    !opts.bookmarks || self.send("BOOKMARK", self.bookmark(revision, false)).await
                }
                Err(e) => {
                    let status = match e {
                        bosun_store::Error::Compacted { .. } => store_error(e, self.t.res, ""),
                        e => Status::new(Reason::InternalError, e.to_string()),
                    };
                    let _ = self.send("ERROR", status.to_json()).await;
                    return;
                }
            };
            if !keep_going {
                return;
            }
        }
    }
}
