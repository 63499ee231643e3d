//! A watch that never misses a change: list, then watch from the list's
//! resourceVersion; a stream that ends (the server's timeout, a dropped
//! connection) is reopened from the last version seen (bookmarks advance it
//! too); a version too old to resume from (410 Gone, on the request or as an
//! ERROR event) means listing again, and the caller gets the whole set anew.

use bosun_api::Resource;
use serde_json::Value;

use crate::{Client, Error, Selector};

/// A change to the watched set.
#[derive(Debug, Clone)]
pub enum Event {
    /// The whole set, after a (re)list: anything not in it is gone.
    Restarted(Vec<Value>),
    /// An object was added or changed.
    Applied(Value),
    /// An object was deleted (its last state).
    Deleted(Value),
}

/// Watches one resource, in one namespace or all.
#[derive(Debug)]
pub struct Watcher {
    client: Client,
    res: &'static Resource,
    namespace: Option<String>,
    selector: Selector,
    /// Where to resume; `None`: list first.
    resource_version: Option<String>,
    stream: Option<reqwest::Response>,
    buf: Vec<u8>,
}

impl Watcher {
    pub fn new(client: Client, res: &'static Resource, namespace: Option<&str>) -> Watcher {
        Watcher {
            client,
            res,
            namespace: namespace.map(str::to_owned),
            selector: Selector::default(),
            resource_version: None,
            stream: None,
            buf: Vec::new(),
        }
    }

    /// Watches only what `selector` selects: an object that stops matching
    /// is reported as deleted, as the server does.
    pub fn selecting(mut self, selector: Selector) -> Watcher {
        self.selector = selector;
        self
    }

    /// The next change. An error leaves the watcher able to go on: the
    /// caller backs off and calls again, and the watch resumes where it was.
    pub async fn next(&mut self) -> Result<Event, Error> {
        loop {
            let Some(rv) = self.resource_version.clone() else {
                self.stream = None;
                self.buf.clear();
                let list = self
                    .client
                    .list_selected(self.res, self.namespace.as_deref(), &self.selector)
                    .await?;
                self.resource_version = Some(list.resource_version);
                return Ok(Event::Restarted(list.items));
            };
            if let Some(at) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=at).collect();
                if let Some(event) = self.event(&line)? {
                    return Ok(event);
                }
                continue;
            }
            let Some(stream) = self.stream.as_mut() else {
                match self
                    .client
                    .open_watch(self.res, self.namespace.as_deref(), &self.selector, &rv)
                    .await
                {
                    Ok(resp) => self.stream = Some(resp),
                    Err(e) if e.code() == Some(410) => self.resource_version = None,
                    Err(e) => return Err(e),
                }
                continue;
            };
            match stream.chunk().await {
                Ok(Some(bytes)) => self.buf.extend_from_slice(&bytes),
                // The server ended the stream: resume from the last version.
                Ok(None) => {
                    self.stream = None;
                    self.buf.clear();
                }
                Err(e) => {
                    self.stream = None;
                    self.buf.clear();
                    return Err(e.into());
                }
            }
        }
    }

    /// One line of the stream: an event for the caller, or `None` for one
    /// that only moves the resume point (a bookmark) or forces a relist.
    fn event(&mut self, line: &[u8]) -> Result<Option<Event>, Error> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let v: Value = serde_json::from_slice(line)
            .map_err(|e| Error::Decode(format!("a watch event: {e}")))?;
        let obj = v["object"].clone();
        if v["type"] == "ERROR" {
            if obj["code"] == 410 {
                self.resource_version = None;
                return Ok(None);
            }
            return Err(Error::Status {
                code: obj["code"].as_u64().unwrap_or(500) as u16,
                reason: obj["reason"].as_str().unwrap_or_default().to_owned(),
                message: obj["message"].as_str().unwrap_or_default().to_owned(),
            });
        }
        if let Some(rv) = obj["metadata"]["resourceVersion"].as_str() {
            self.resource_version = Some(rv.to_owned());
        }
        Ok(match v["type"].as_str() {
            Some("ADDED" | "MODIFIED") => Some(Event::Applied(obj)),
            Some("DELETED") => Some(Event::Deleted(obj)),
            _ => None,
        })
    }
}

/// What a [`reflect`] task keeps: the watched objects by uid, each mapped to
/// what its controller reads of it. Clones share the map.
#[derive(Debug)]
pub struct Cache<T> {
    objects: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, T>>>,
    changed: std::sync::Arc<tokio::sync::Notify>,
    synced: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<T> Clone for Cache<T> {
    fn clone(&self) -> Self {
        Cache {
            objects: self.objects.clone(),
            changed: self.changed.clone(),
            synced: self.synced.clone(),
        }
    }
}

impl<T: Clone> Cache<T> {
    /// An empty cache that wakes `changed` on every change (several caches
    /// may share one, so a controller wakes on a change to any of them).
    pub fn new(changed: std::sync::Arc<tokio::sync::Notify>) -> Cache<T> {
        Cache {
            objects: Default::default(),
            changed,
            synced: Default::default(),
        }
    }

    /// Whether the first list has arrived: before it, an empty cache says
    /// nothing about the cluster (a controller that acted on it would, say,
    /// empty every Service's endpoints at start).
    pub fn synced(&self) -> bool {
        self.synced.load(std::sync::atomic::Ordering::Acquire)
    }

    /// A copy of what is cached now.
    pub fn snapshot(&self) -> Vec<T> {
        let map = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        map.values().cloned().collect()
    }

    fn apply(&self, event: Event, map: &impl Fn(&Value) -> Option<T>) {
        let uid = |v: &Value| v["metadata"]["uid"].as_str().map(str::to_owned);
        {
            let mut objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
            match event {
                Event::Restarted(items) => {
                    objects.clear();
                    for v in &items {
                        if let (Some(u), Some(t)) = (uid(v), map(v)) {
                            objects.insert(u, t);
                        }
                    }
                    self.synced
                        .store(true, std::sync::atomic::Ordering::Release);
                }
                Event::Applied(v) => {
                    if let (Some(u), Some(t)) = (uid(&v), map(&v)) {
                        objects.insert(u, t);
                    }
                }
                Event::Deleted(v) => {
                    if let Some(u) = uid(&v) {
                        objects.remove(&u);
                    }
                }
            }
        }
        self.changed.notify_one();
    }
}

/// Keeps `cache` equal to what `watcher` watches, forever (errors are
/// retried after a pause; the watcher resumes or relists).
pub async fn reflect<T: Clone>(
    mut watcher: Watcher,
    cache: Cache<T>,
    map: impl Fn(&Value) -> Option<T>,
) {
    loop {
        match watcher.next().await {
            Ok(event) => cache.apply(event, &map),
            Err(_) => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
        }
    }
}
