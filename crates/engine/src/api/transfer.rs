//! `POST /images/create` (pull) and `POST /images/{name}/push`, with the
//! JSON-lines progress the docker CLI draws its bars from.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bosun_oci::{Digest, ImageRef};
use bosun_registry::{
    Client, ClientError, ClientOptions, Credentials, Outcome, Platform, Progress,
};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Body, Call, stream};
use crate::engine::Engine;
use crate::error::EngineError;

/// Progress as Docker's JSON lines: one per event, per blob.
struct Lines {
    tx: mpsc::UnboundedSender<Value>,
    verb: (&'static str, &'static str),
    sizes: Mutex<HashMap<String, (u64, u64)>>,
}

fn short(d: &Digest) -> String {
    d.hex().chars().take(12).collect()
}

impl Progress for Lines {
    fn start(&self, digest: &Digest, size: u64) {
        self.sizes
            .lock()
            .expect("sizes")
            .insert(digest.to_string(), (0, size));
        let _ = self
            .tx
            .send(json!({"status": self.verb.0, "progressDetail": {}, "id": short(digest)}));
    }

    fn advance(&self, digest: &Digest, bytes: u64) {
        let (current, total) = {
            let mut sizes = self.sizes.lock().expect("sizes");
            let e = sizes.entry(digest.to_string()).or_insert((0, 0));
            e.0 += bytes;
            *e
        };
        let _ = self.tx.send(json!({
            "status": self.verb.1,
            "progressDetail": {"current": current, "total": total},
            "id": short(digest),
        }));
    }

    fn finish(&self, digest: &Digest, outcome: &Outcome) {
        let status = match (outcome, self.verb.0) {
            (Outcome::Transferred, "Pulling fs layer") => "Pull complete".to_owned(),
            (Outcome::Transferred, _) => "Pushed".to_owned(),
            (Outcome::Present, "Pulling fs layer") => "Already exists".to_owned(),
            (Outcome::Present, _) => "Layer already exists".to_owned(),
            (Outcome::Mounted(from), _) => format!("Mounted from {from}"),
        };
        let _ = self
            .tx
            .send(json!({"status": status, "progressDetail": {}, "id": short(digest)}));
    }

    fn retry(&self, digest: &Digest, attempt: u32, error: &ClientError) {
        let _ = self.tx.send(json!({
            "status": format!("Retrying in a moment (attempt {attempt}): {error}"),
            "progressDetail": {}, "id": short(digest),
        }));
    }
}

/// `X-Registry-Auth`: base64 (URL-safe or standard) JSON with username and password.
fn credentials(req: &Request<Incoming>) -> Option<Credentials> {
    let raw = req.headers().get("X-Registry-Auth")?.to_str().ok()?;
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(raw.trim_end_matches('='))
        .or_else(|_| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw.trim_end_matches('='))
        })
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(raw))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    let username = v["username"].as_str().filter(|u| !u.is_empty())?.to_owned();
    let password = v["password"].as_str().unwrap_or_default().to_owned();
    Some(Credentials { username, password })
}

/// A registry client with the request's credentials.
fn client_for(req: &Request<Incoming>) -> Result<Client, EngineError> {
    Client::new(ClientOptions {
        credentials: credentials(req),
        ..Default::default()
    })
    .map_err(|e| EngineError::internal("start an HTTP client", e))
}

fn error_line(message: &str) -> Value {
    json!({"errorDetail": {"message": message}, "error": message})
}

/// `docker pull`: `fromImage` (and `tag`) from its registry into the store.
pub(super) fn pull(
    engine: &Arc<Engine>,
    call: &Call,
    req: &Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    if call.param("fromSrc").is_some() {
        return Err(EngineError::Invalid(
            "importing a root file system through the API is not supported; use `bosun image import`".into(),
        ));
    }
    let from = call
        .param("fromImage")
        .filter(|f| !f.is_empty())
        .ok_or_else(|| EngineError::Invalid("fromImage is required".into()))?;
    let name = match call.param("tag").filter(|t| !t.is_empty()) {
        Some(t) if t.starts_with("sha256:") => format!("{from}@{t}"),
        Some(t) => format!("{from}:{t}"),
        None => from.to_owned(),
    };
    let reference: ImageRef = name
        .parse()
        .map_err(|e| EngineError::Invalid(format!("invalid reference format: {name}: {e}")))?;
    let platform = match call.param("platform").filter(|p| !p.is_empty()) {
        Some(p) => p
            .parse::<Platform>()
            .map_err(|e| EngineError::Invalid(format!("platform {p:?}: {e}")))?,
        None => Platform::default(),
    };
    let client = client_for(req)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let engine = engine.clone();
    let tag = reference.tag().unwrap_or("latest").to_owned();
    tokio::spawn(async move {
        let _ = tx
            .send(json!({"status": format!("Pulling from {}", reference.repository()), "id": tag}));
        let lines = Arc::new(Lines {
            tx: tx.clone(),
            verb: ("Pulling fs layer", "Downloading"),
            sizes: Mutex::new(HashMap::new()),
        });
        let store = engine.image_store().clone();
        match client.pull(&store, &reference, &platform, lines).await {
            Ok(digest) => {
                let _ = tx.send(json!({"status": format!("Digest: {digest}")}));
                let _ = tx
                    .send(json!({"status": format!("Status: Downloaded newer image for {name}")}));
                engine.emit("image", "pull", &name, &[("name", &name)]);
            }
            Err(e) => {
                let _ = tx.send(error_line(&e.to_string()));
            }
        }
    });
    Ok(stream::json_lines(rx))
}

/// `docker push`: an image of the store to the registry its name points at.
pub(super) fn push(
    engine: &Arc<Engine>,
    name: &str,
    call: &Call,
    req: &Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let full = match call.param("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{name}:{t}"),
        None => name.to_owned(),
    };
    let dest: ImageRef = full
        .parse()
        .map_err(|e| EngineError::Invalid(format!("invalid reference format: {full}: {e}")))?;
    engine.image_store().resolve(&full).map_err(|_| {
        EngineError::NotFound(format!(
            "An image does not exist locally with the tag: {name}"
        ))
    })?;
    let client = client_for(req)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let engine = engine.clone();
    tokio::spawn(async move {
        let _ =
            tx.send(json!({"status": format!("The push refers to repository [{}]", dest.name())}));
        let lines = Arc::new(Lines {
            tx: tx.clone(),
            verb: ("Preparing", "Pushing"),
            sizes: Mutex::new(HashMap::new()),
        });
        let store = engine.image_store().clone();
        match client.push(&store, &full, &dest, lines).await {
            Ok(digest) => {
                let size = store.content().size(&digest).unwrap_or(0);
                let tag = dest.tag().unwrap_or("latest").to_owned();
                let _ = tx.send(json!({"status": format!("{tag}: digest: {digest} size: {size}")}));
                let _ = tx.send(json!({"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest.to_string(), "Size": size}}));
                engine.emit("image", "push", &full, &[("name", &full)]);
            }
            Err(e) => {
                let _ = tx.send(error_line(&e.to_string()));
            }
        }
    });
    Ok(stream::json_lines(rx))
}
