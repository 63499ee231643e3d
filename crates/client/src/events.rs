//! Events: what a component did or could not do to an object, as
//! `kubectl describe` and `kubectl get events` show them. A repeat of the same
//! event (same object, reason and message) bumps the first one's `count` and
//! `lastTimestamp` instead of making another object, as Kubernetes' recorder
//! does, so a pod that stays unschedulable does not flood the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bosun_api::resource;
use serde_json::{Value, json};

use crate::{Client, Error, Patch};

/// Whether an event reports something normal or something a user should look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// How many distinct events a recorder remembers for counting repeats; past
/// it, the memory starts over (a repeat then makes a new event, which is
/// still correct, only less compact).
const REMEMBERED: usize = 4096;

/// Records events as one component; clones share the memory of repeats.
#[derive(Debug, Clone)]
pub struct Recorder {
    client: Client,
    component: String,
    seen: Arc<Mutex<HashMap<Key, Seen>>>,
}

/// An event's identity for counting repeats: object uid, reason, message.
type Key = (String, String, String);

#[derive(Debug, Clone)]
struct Seen {
    namespace: String,
    name: String,
    count: u64,
}

fn now() -> (i64, u128) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.as_nanos())
}

impl Recorder {
    pub fn new(client: Client, component: impl Into<String>) -> Recorder {
        Recorder {
            client,
            component: component.into(),
            seen: Default::default(),
        }
    }

    /// Records that `reason`/`message` happened to `object` (a whole object
    /// as the API returns it). Cluster-scoped objects' events go to `default`.
    pub async fn record(
        &self,
        object: &Value,
        kind: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), Error> {
        let events = resource::find("", "v1", "events").expect("events are in the table");
        let meta = &object["metadata"];
        let uid = meta["uid"].as_str().unwrap_or_default().to_owned();
        let key = (uid.clone(), reason.to_owned(), message.to_owned());
        let (secs, nanos) = now();
        let stamp = bosun_api::time::format_time(secs);
        let repeat = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        if let Some(seen) = repeat {
            let count = seen.count + 1;
            let patch = Patch::Merge(json!({"count": count, "lastTimestamp": stamp}));
            match self
                .client
                .patch(events, Some(&seen.namespace), &seen.name, &patch)
                .await
            {
                Ok(_) => {
                    if let Some(s) = self
                        .seen
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_mut(&key)
                    {
                        s.count = count;
                    }
                    return Ok(());
                }
                // Expired or deleted: record it anew.
                Err(e) if e.code() == Some(404) => {}
                Err(e) => return Err(e),
            }
        }
        let namespace = meta["namespace"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
            .to_owned();
        let name = format!("{}.{:x}", meta["name"].as_str().unwrap_or("object"), nanos);
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {
                "apiVersion": object["apiVersion"],
                "kind": object["kind"],
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": uid,
                "resourceVersion": meta["resourceVersion"],
            },
            "reason": reason,
            "message": message,
            "type": kind.as_str(),
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        });
        self.client.create(events, Some(&namespace), &event).await?;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= REMEMBERED {
            seen.clear();
        }
        seen.insert(
            key,
            Seen {
                namespace,
                name,
                count: 1,
            },
        );
        Ok(())
    }
}
