//! bosun's client of the Kubernetes API, for the cluster components (the
//! controllers now; the scheduler and agents next): every component talks to
//! the API server through this crate only, so each can run in `bosun server`
//! or as its own process.
//!
//! [`Client`] speaks HTTPS (rustls, trusting only the cluster's CA) with a
//! bearer token or a client certificate, and does the verbs on objects kept
//! as JSON: [`get`](Client::get), [`list`](Client::list),
//! [`create`](Client::create), [`update`](Client::update) (a compare-and-swap
//! on the object's resourceVersion), [`patch`](Client::patch),
//! [`delete`](Client::delete). Resources are named by the `api` crate's table.
//! [`Watcher`] lists, then watches from the list's resourceVersion, resumes a
//! stream that ends from the last version it saw, and lists again when that
//! version is too old (410).

pub mod events;
mod kubeconfig;
pub mod leader;
mod watcher;

use bosun_api::{ErrorKind, Resource, Subresource};
use serde_json::Value;

pub use watcher::{Cache, Event, Watcher, reflect};

/// Where the API server is and how to authenticate to it.
#[derive(Clone)]
pub struct Config {
    /// `https://host:port`.
    pub server: String,
    /// The CA that signed the server's certificate (PEM); the only one trusted.
    pub ca_pem: String,
    pub auth: Auth,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// A client's credentials.
#[derive(Clone)]
pub enum Auth {
    Token(String),
    /// A client certificate and its key, PEM.
    Certificate {
        cert_pem: String,
        key_pem: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::Token(_) => "Token(..)",
            Auth::Certificate { .. } => "Certificate(..)",
        })
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("client configuration: {0}")]
    Config(String),
    #[error("cannot reach the API server: {0}")]
    Transport(#[from] reqwest::Error),
    /// The server's answer: a `metav1.Status` with its code.
    #[error("{message} ({code} {reason})")]
    Status {
        code: u16,
        reason: String,
        message: String,
    },
    #[error("the API server's answer is not what was expected: {0}")]
    Decode(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) | Error::Decode(_) => ErrorKind::Internal,
            Error::Transport(_) => ErrorKind::Unavailable,
            Error::Status { code, .. } => match code {
                404 | 410 => ErrorKind::NotFound,
                409 => ErrorKind::Conflict,
                400 | 422 => ErrorKind::Invalid,
                401 | 403 => ErrorKind::Forbidden,
                429 | 500.. => ErrorKind::Unavailable,
                _ => ErrorKind::Internal,
            },
        }
    }

    /// The HTTP status of a server's refusal.
    pub fn code(&self) -> Option<u16> {
        match self {
            Error::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    fn from_status(code: u16, body: &[u8]) -> Error {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        Error::Status {
            code,
            reason: v["reason"].as_str().unwrap_or_default().to_owned(),
            message: v["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned()),
        }
    }
}

/// How a patch body is to be read.
#[derive(Debug, Clone)]
pub enum Patch {
    /// RFC 7386 JSON merge patch.
    Merge(Value),
    /// RFC 6902 JSON patch (a list of operations).
    Json(Value),
}

/// What a delete asks for.
#[derive(Debug, Clone, Default)]
pub struct DeleteParams {
    /// `Background`, `Foreground` or `Orphan`; `None`: the server's default.
    pub propagation_policy: Option<&'static str>,
    /// Delete only the object with this uid (409 if the name now has another).
    pub uid: Option<String>,
}

/// Which objects a list or watch selects, in the API's selector syntax
/// (`app=web,tier!=db`; `spec.nodeName=`); empty selects all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub labels: String,
    pub fields: String,
}

impl Selector {
    pub fn fields(fields: impl Into<String>) -> Selector {
        Selector {
            labels: String::new(),
            fields: fields.into(),
        }
    }

    pub fn labels(labels: impl Into<String>) -> Selector {
        Selector {
            labels: labels.into(),
            fields: String::new(),
        }
    }

    fn query(&self) -> Vec<(&'static str, &str)> {
        let mut q = Vec::new();
        if !self.labels.is_empty() {
            q.push(("labelSelector", self.labels.as_str()));
        }
        if !self.fields.is_empty() {
            q.push(("fieldSelector", self.fields.as_str()));
        }
        q
    }
}

/// One page of a list: the objects, and the resourceVersion to watch from.
#[derive(Debug, Clone)]
pub struct List {
    pub items: Vec<Value>,
    pub resource_version: String,
}

/// A client of one API server; clones share connections.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    server: String,
}

/// `/api/v1` or `/apis/<group>/<version>`, then the namespace if any, then
/// the plural.
pub fn collection_path(res: &Resource, namespace: Option<&str>) -> String {
    let base = if res.group.is_empty() {
        format!("/api/{}", res.version)
    } else {
        format!("/apis/{}/{}", res.group, res.version)
    };
    match namespace.filter(|_| res.namespaced) {
        Some(ns) => format!("{base}/namespaces/{ns}/{}", res.plural),
        None => format!("{base}/{}", res.plural),
    }
}

fn object_path(res: &Resource, namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", collection_path(res, namespace))
}

fn subresource_path(
    res: &Resource,
    namespace: Option<&str>,
    name: &str,
    sub: Subresource,
) -> String {
    format!("{}/{}", object_path(res, namespace, name), sub.name())
}

impl Client {
    pub fn new(config: &Config) -> Result<Client, Error> {
        let ca = reqwest::Certificate::from_pem(config.ca_pem.as_bytes())
            .map_err(|e| Error::Config(format!("the CA certificate: {e}")))?;
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .http1_only()
            .pool_idle_timeout(std::time::Duration::from_secs(60));
        match &config.auth {
            Auth::Token(token) => {
                let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| Error::Config("the token is not a header value".into()))?;
                value.set_sensitive(true);
                let mut headers = reqwest::header::HeaderMap::new();
                headers.insert(reqwest::header::AUTHORIZATION, value);
                builder = builder.default_headers(headers);
            }
            Auth::Certificate { cert_pem, key_pem } => {
                let pem = format!("{cert_pem}\n{key_pem}");
                let id = reqwest::Identity::from_pem(pem.as_bytes())
                    .map_err(|e| Error::Config(format!("the client certificate: {e}")))?;
                builder = builder.identity(id);
            }
        }
        Ok(Client {
            http: builder.build()?,
            server: config.server.trim_end_matches('/').to_owned(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, Error> {
        let resp = req.header("Accept", "application/json").send().await?;
        let code = resp.status().as_u16();
        let body = resp.bytes().await?;
        if !(200..300).contains(&code) {
            return Err(Error::from_status(code, &body));
        }
        serde_json::from_slice(&body).map_err(|e| Error::Decode(e.to_string()))
    }

    pub async fn get(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, Error> {
        self.send(self.http.get(self.url(&object_path(res, namespace, name))))
            .await
    }

    /// Every object of `res` (in `namespace`, or in all), read in pages of
    /// 500 at one resourceVersion.
    pub async fn list(&self, res: &Resource, namespace: Option<&str>) -> Result<List, Error> {
        self.list_selected(res, namespace, &Selector::default())
            .await
    }

    /// The objects of `res` that `selector` selects, read like [`list`](Client::list).
    pub async fn list_selected(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Result<List, Error> {
        let url = self.url(&collection_path(res, namespace));
        let mut items = Vec::new();
        let mut cont = String::new();
        loop {
            let mut query = selector.query();
            query.push(("limit", "500"));
            if !cont.is_empty() {
                query.push(("continue", &cont));
            }
            let page = self.send(self.http.get(&url).query(&query)).await?;
            let rv = page["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            match page["items"].as_array() {
                Some(list) => items.extend(list.iter().cloned()),
                None if page["items"].is_null() => {}
                None => return Err(Error::Decode("a list without items".into())),
            }
            cont = page["metadata"]["continue"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if cont.is_empty() {
                return Ok(List {
                    items,
                    resource_version: rv,
                });
            }
        }
    }

    pub async fn create(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        obj: &Value,
    ) -> Result<Value, Error> {
        let url = self.url(&collection_path(res, namespace));
        self.send(self.http.post(url).json_body(obj)).await
    }

    /// Replaces the object; with `metadata.resourceVersion` set, only if it is
    /// still that version (409 otherwise).
    pub async fn update(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        obj: &Value,
    ) -> Result<Value, Error> {
        self.put(res, namespace, None, obj).await
    }

    /// PUT of `obj` to its own path, or to its subresource `sub`.
    async fn put(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        sub: Option<Subresource>,
        obj: &Value,
    ) -> Result<Value, Error> {
        let name = obj["metadata"]["name"]
            .as_str()
            .ok_or_else(|| Error::Config("update of an object without a name".into()))?;
        let path = match sub {
            Some(sub) => subresource_path(res, namespace, name, sub),
            None => object_path(res, namespace, name),
        };
        self.send(self.http.put(self.url(&path)).json_body(obj))
            .await
    }

    pub async fn patch(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        name: &str,
        patch: &Patch,
    ) -> Result<Value, Error> {
        self.patch_path(object_path(res, namespace, name), patch)
            .await
    }

    /// Replaces the object's `.status` only (the `/status` subresource);
    /// checked against `metadata.resourceVersion` like [`update`](Client::update).
    pub async fn update_status(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        obj: &Value,
    ) -> Result<Value, Error> {
        self.put(res, namespace, Some(Subresource::Status), obj)
            .await
    }

    /// Patches the object's `.status` only.
    pub async fn patch_status(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        name: &str,
        patch: &Patch,
    ) -> Result<Value, Error> {
        self.patch_path(
            subresource_path(res, namespace, name, Subresource::Status),
            patch,
        )
        .await
    }

    /// Posts to a create-only subresource: a pod's `binding` or `eviction`, a
    /// service account's `token`.
    pub async fn create_subresource(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        name: &str,
        sub: Subresource,
        body: &Value,
    ) -> Result<Value, Error> {
        let url = self.url(&subresource_path(res, namespace, name, sub));
        self.send(self.http.post(url).json_body(body)).await
    }

    async fn patch_path(&self, path: String, patch: &Patch) -> Result<Value, Error> {
        let (ct, body) = match patch {
            Patch::Merge(v) => ("application/merge-patch+json", v),
            Patch::Json(v) => ("application/json-patch+json", v),
        };
        let url = self.url(&path);
        let req = self
            .http
            .patch(url)
            .header("Content-Type", ct)
            .body(body.to_string());
        self.send(req).await
    }

    /// Deletes an object: the answer is the object as the server last had it
    /// (with a deletionTimestamp if finalizers hold it).
    pub async fn delete(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        name: &str,
        params: &DeleteParams,
    ) -> Result<Value, Error> {
        let mut opts = serde_json::json!({"kind": "DeleteOptions", "apiVersion": "v1"});
        if let Some(p) = params.propagation_policy {
            opts["propagationPolicy"] = p.into();
        }
        if let Some(uid) = &params.uid {
            opts["preconditions"] = serde_json::json!({"uid": uid});
        }
        let url = self.url(&object_path(res, namespace, name));
        self.send(self.http.delete(url).json_body(&opts)).await
    }

    /// Opens a watch from `resource_version` (bookmarks asked for); the
    /// response streams one event a line.
    async fn open_watch(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        selector: &Selector,
        resource_version: &str,
    ) -> Result<reqwest::Response, Error> {
        let url = self.url(&collection_path(res, namespace));
        let resp = self
            .http
            .get(url)
            .query(&selector.query())
            .query(&[
                ("watch", "true"),
                ("allowWatchBookmarks", "true"),
                ("resourceVersion", resource_version),
                ("timeoutSeconds", "300"),
            ])
            .header("Accept", "application/json")
            .send()
            .await?;
        let code = resp.status().as_u16();
        if code != 200 {
            let body = resp.bytes().await?;
            return Err(Error::from_status(code, &body));
        }
        Ok(resp)
    }
}

/// A JSON request body.
trait JsonBody {
    fn json_body(self, v: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, v: &Value) -> Self {
        self.header("Content-Type", "application/json")
            .body(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bosun_api::resource::find;

    #[test]
    fn paths() {
        let cm = find("", "v1", "configmaps").unwrap();
        assert_eq!(
            object_path(cm, Some("a"), "x"),
            "/api/v1/namespaces/a/configmaps/x"
        );
        assert_eq!(collection_path(cm, None), "/api/v1/configmaps");
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(
            subresource_path(pods, Some("a"), "p", Subresource::Binding),
            "/api/v1/namespaces/a/pods/p/binding"
        );
        let deps = find("apps", "v1", "deployments").unwrap();
        assert_eq!(
            collection_path(deps, Some("b")),
            "/apis/apps/v1/namespaces/b/deployments"
        );
        let nodes = find("", "v1", "nodes").unwrap();
        assert_eq!(
            object_path(nodes, Some("ignored"), "n1"),
            "/api/v1/nodes/n1"
        );
    }

    #[test]
    fn errors_keep_the_servers_status() {
        let e = Error::from_status(
            409,
            br#"{"kind":"Status","reason":"Conflict","message":"the object has been modified"}"#,
        );
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert_eq!(e.code(), Some(409));
        assert_eq!(e.to_string(), "the object has been modified (409 Conflict)");
        assert_eq!(Error::from_status(410, b"gone").kind(), ErrorKind::NotFound);
    }
}
