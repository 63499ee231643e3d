//! bosun's Kubernetes-compatible API server: what the real kubectl drives.
//!
//! HTTP/1.1 over TLS (rustls on ring) on hyper; a CA, the admin token and
//! `admin.kubeconfig` are made in the data directory on first start, and a
//! serving certificate signed by that CA at every start. Every request but the
//! health checks and `/version` needs credentials: a client certificate from
//! that CA, a bearer token (admin, token file) or a service-account token
//! (`sa`). Objects live in
//! the [`bosun_store::Store`] (embedded redb by default) as JSON; see
//! `objects` for the verbs and `watch` for streams. Errors are always
//! `metav1.Status` bodies with Kubernetes' codes and reasons.

mod alloc;
mod audit;
mod auth;
mod discovery;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod kinds;
mod metrics;
mod namespaces;
mod objects;
mod openapi;
mod patch;
mod pki;
mod protobuf;
mod route;
mod sa;
mod ssa;
mod table;
mod watch;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bosun_api::resource;
use bosun_api::{ErrorKind, Reason, Status};
use bosun_store::Store;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::http::{Query, Resp, ok, status_response};
use crate::route::Route;

/// Request bodies above this get 413 (Kubernetes' limit is 3 MiB as well).
const MAX_BODY: usize = 3 << 20;
/// Requests other than watches that take longer get 504.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// A client gets this long for its TLS handshake, and then for each
/// request's headers (from the connection's start or the previous response):
/// a slow or idle client (slowloris) is cut off instead of holding a task and
/// a descriptor forever. kube-apiserver's read-header timeout is 32 s.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// [`Config::max_connections`] unless told otherwise: well below the 20000
/// descriptors a root process gets here, with room for the store's files.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// [`Config::default_unreachable_toleration_seconds`] (and not-ready) unless told otherwise (kube-apiserver
/// has 300; bosun evicts after a minute).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 60;
/// Namespaces that exist from the first start on.
const BUILTIN_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// How to run a server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Keeps the store, the CA, the admin token and `admin.kubeconfig`.
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// How often a watch that allows bookmarks gets one.
    pub bookmark_interval: Duration,
    /// `http://host:port,...`: keep objects in this etcd v3 cluster instead of
    /// the embedded store (several API servers can share one).
    pub etcd_endpoints: Option<String>,
    /// More bearer tokens, in kube-apiserver's `--token-auth-file` format
    /// (`token,user,uid[,"group1,group2"]`); their users go through RBAC, or
    /// the node authorizer for `system:node:<name>` in `system:nodes`.
    pub token_auth_file: Option<PathBuf>,
    /// History older than this is compacted away (watches and lists from
    /// before it get 410 Gone), as kube-apiserver does every 5 minutes.
    pub compaction_interval: Duration,
    /// Connections served at once. At the limit the server stops accepting,
    /// so a flood of idle connections waits in the kernel's backlog instead of
    /// taking a descriptor and a task each (slow ones are cut off by the
    /// header timeout, which frees their places).
    pub max_connections: usize,
    /// The `tolerationSeconds` of the `node.kubernetes.io/not-ready` and
    /// `unreachable` NoExecute tolerations every new pod gets unless it has
    /// its own (kube-apiserver's DefaultTolerationSeconds admission): how long
    /// a pod outlives its node's failure.
    pub default_not_ready_toleration_seconds: i64,
    pub default_unreachable_toleration_seconds: i64,
}

impl Config {
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Config {
        Config {
            data_dir,
            listen,
            bookmark_interval: Duration::from_secs(60),
            etcd_endpoints: None,
            token_auth_file: None,
            compaction_interval: Duration::from_secs(300),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            default_not_ready_toleration_seconds: DEFAULT_TOLERATION_SECONDS,
            default_unreachable_toleration_seconds: DEFAULT_TOLERATION_SECONDS,
        }
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("credentials: {what}: {reason}")]
    Pki { what: &'static str, reason: String },
    #[error("store: {0}")]
    Store(#[from] bosun_store::Error),
    #[error("creating namespace {name}: {message}")]
    Bootstrap { name: String, message: String },
}

impl ServerError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ServerError::Bind { source, .. } if source.kind() == io::ErrorKind::AddrInUse => {
                ErrorKind::Conflict
            }
            ServerError::Bind { .. } => ErrorKind::Unavailable,
            ServerError::Io { .. } | ServerError::Pki { .. } | ServerError::Bootstrap { .. } => {
                ErrorKind::Internal
            }
            ServerError::Store(e) => e.kind(),
        }
    }
}

/// What every request handler shares.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) store: Store,
    tokens: auth::Tokens,
    client_certs: pki::ClientCerts,
    signer: sa::Signer,
    address: String,
    pub(crate) bookmark_interval: Duration,
    /// Not-ready and unreachable, for [`Config::default_unreachable_toleration_seconds`].
    pub(crate) default_toleration_seconds: (i64, i64),
    pub(crate) metrics: Arc<metrics::Metrics>,
    pub(crate) event_lines: Arc<watch::EventLines>,
    audit: audit::Audit,
}

/// How a cluster component in the same process (the controllers) reaches
/// the server: its URL, the CA to trust, and a bearer token made for it.
#[derive(Clone)]
pub struct ComponentCredentials {
    pub server: String,
    pub ca_pem: String,
    pub token: String,
}

impl std::fmt::Debug for ComponentCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentCredentials")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    component: ComponentCredentials,
    listener: TcpListener,
    tls: TlsAcceptor,
    state: Arc<State>,
    kubeconfig: PathBuf,
    compaction_interval: Duration,
    connections: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("kubeconfig", &self.kubeconfig)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the store, makes the credentials on first start, creates the
    /// built-in namespaces, binds, and writes the admin kubeconfig for the
    /// address bound.
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| ServerError::Io {
            path: dir.clone(),
            source,
        })?;
        let now = objects::now();
        let creds = pki::load_or_create(dir, now)?;
        let store = match &config.etcd_endpoints {
            Some(urls) => Store::etcd(urls.parse()?)?,
            None => Store::open_embedded(dir).await?,
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
        let tls = creds.acceptor(addr, now)?;
        let mut tokens = auth::Tokens::new(&creds.token);
        if let Some(path) = &config.token_auth_file {
            tokens.load_file(path)?;
        }
        let component = ComponentCredentials {
            server: pki::server_url(addr),
            ca_pem: creds.ca_pem.clone(),
            token: tokens.add_component("system:bosun-controllers")?,
        };
        let state = Arc::new(State {
            store,
            tokens,
            client_certs: creds.client_certs()?,
            signer: sa::Signer::load_or_create(dir)?,
            address: addr.to_string(),
            bookmark_interval: config.bookmark_interval,
            default_toleration_seconds: (
                config.default_not_ready_toleration_seconds,
                config.default_unreachable_toleration_seconds,
            ),
            metrics: Arc::default(),
            event_lines: Arc::default(),
            audit: audit::Audit::open(&dir.join("audit.log"))?,
        });
        bootstrap(&state, addr.port()).await?;
        namespaces::resume(&state).await?;
        let kubeconfig = creds.write_kubeconfig(dir, addr)?;
        Ok(Server {
            component,
            listener,
            tls,
            state,
            kubeconfig,
            compaction_interval: config.compaction_interval,
            connections: Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1))),
        })
    }

    /// The address actually bound (port 0 picks a free one).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// What the controllers in this process connect with.
    pub fn component_credentials(&self) -> ComponentCredentials {
        self.component.clone()
    }

    /// `DIR/admin.kubeconfig`, written for this address.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The store the server keeps its objects in (clones share it): for
    /// components running in the same process, and for tests that compact.
    pub fn store(&self) -> Store {
        self.state.store.clone()
    }

    /// Serves until `shutdown` completes. Writes are transactions in the
    /// store, so connections cut short leave nothing half written.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let compactor = tokio::spawn(compact(self.state.store.clone(), self.compaction_interval));
        let _stop_compactor = AbortOnDrop(compactor);
        loop {
            // A place is taken before accepting: at the limit the loop waits.
            let permit = tokio::select! {
                () = &mut shutdown => return,
                permit = self.connections.clone().acquire_owned() => {
                    permit.expect("the connection semaphore is never closed")
                }
            };
            let (stream, _peer) = tokio::select! {
                () = &mut shutdown => return,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        eprintln!("bosun server: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let state = self.state.clone();
            let tls = self.tls.clone();
            tokio::spawn(async move {
                let _place = permit;
                // A failed handshake or a client gone concerns only that client;
                // one that never finishes its handshake is cut off like one that
                // never finishes its headers.
                let Ok(Ok(stream)) =
                    tokio::time::timeout(HEADER_READ_TIMEOUT, tls.accept(stream)).await
                else {
                    return;
                };
                // A client certificate the CA signed names the user of every
                // request on this connection.
                let cert_user = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| state.client_certs.verified(chain))
                    .and_then(|leaf| auth::certificate_user(leaf));
                let service = service_fn(move |req| handle(state.clone(), req, cert_user.clone()));
                let mut http = http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT);
                let _ = http.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    }
}

/// Issues a client certificate from the CA in `data_dir` (CN = `user`, O =
/// each of `groups`) and writes `out/client.crt`, `out/client.key` and
/// `out/kubeconfig` for the server of `data_dir/admin.kubeconfig`. Returns the
/// kubeconfig's path.
pub fn write_client_credentials(
    data_dir: &Path,
    user: &str,
    groups: &[String],
    out: &Path,
) -> Result<PathBuf, ServerError> {
    pki::write_client_credentials(data_dir, user, groups, out, objects::now())
}

/// Aborts a task when the server stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Every `interval`, compacts at the revision the previous tick saw: history
/// is kept for at least one interval, so watches that fall less far behind
/// resume, and the store does not grow without bound.
async fn compact(store: Store, interval: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut previous = None;
    loop {
        ticks.tick().await;
        if let Some(rev) = previous {
            match store.compact(rev).await {
                // Already compacted there (by another API server on the same etcd).
                Ok(()) | Err(bosun_store::Error::Compacted { .. }) => {}
                Err(e) => eprintln!("bosun server: compaction at {rev}: {e}"),
            }
        }
        previous = store.current_revision().await.ok();
    }
}

/// The built-in namespaces, and the `kubernetes` service in `default` on the
/// first address of the service range (what in-cluster clients dial).
async fn bootstrap(state: &State, port: u16) -> Result<(), ServerError> {
    let namespaces = resource::find("", "v1", "namespaces").expect("in the table");
    for name in BUILTIN_NAMESPACES {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match objects::create(state, namespaces, None, obj, false).await {
            Ok(_) => {}
            Err(s) if s.reason == Reason::AlreadyExists => {}
            Err(s) => {
                return Err(ServerError::Bootstrap {
                    name: (*name).to_owned(),
                    message: s.message,
                });
            }
        }
    }
    for (res, obj) in auth::bootstrap_objects() {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match objects::create(state, res, None, obj, false).await {
            Ok(_) => {}
            Err(s) if s.reason == Reason::AlreadyExists => {}
            Err(s) => {
                return Err(ServerError::Bootstrap {
                    name,
                    message: s.message,
                });
            }
        }
    }
    let services = resource::find("", "v1", "services").expect("in the table");
    let kubernetes = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": alloc::API_SERVICE_IP,
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
    });
    match objects::create(state, services, Some("default"), kubernetes, false).await {
        Ok(_) => Ok(()),
        Err(s) if s.reason == Reason::AlreadyExists => Ok(()),
        Err(s) => Err(ServerError::Bootstrap {
            name: "the kubernetes service".to_owned(),
            message: s.message,
        }),
    }
}

/// Who asks: the client certificate's user, else the bearer token's (a
/// static token, or a service account's signed token).
async fn authenticated(
    state: &State,
    req: &Request<Incoming>,
    cert_user: Option<auth::User>,
) -> Option<auth::User> {
    if cert_user.is_some() {
        return cert_user;
    }
    let token = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))?
        .trim();
    if let Some(user) = state.tokens.user(token) {
        return Some(user.clone());
    }
    sa::user(state, token, objects::now()).await
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
    cert_user: Option<auth::User>,
) -> Result<Resp, Infallible> {
    let started = std::time::Instant::now();
    let (verb, resource) = classify(&req);
    let resp = match serve(state.clone(), req, cert_user).await {
        Ok(resp) => resp,
        Err(status) => status_response(&status),
    };
    state
        .metrics
        .request(verb, resource, resp.status().as_u16(), started.elapsed());
    Ok(resp)
}

/// The Kubernetes verb of a request on objects (what RBAC rules name).
fn verb_of(method: &Method, t: &route::Target, q: &Query) -> &'static str {
    let collection = t.name.is_none();
    match *method {
        Method::GET if collection && q.flag("watch") => "watch",
        Method::GET if collection => "list",
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if collection => "deletecollection",
        Method::DELETE => "delete",
        _ => "unknown",
    }
}

/// The verb and resource a request counts under in `/metrics`.
fn classify(req: &Request<Incoming>) -> (&'static str, &'static str) {
    let Some(Route::Objects(target)) = route::parse(req.uri().path()) else {
        return ("GET", "");
    };
    let collection = target.name.is_none();
    let verb = match *req.method() {
        Method::GET if collection && Query::parse(req.uri().query()).flag("watch") => "WATCH",
        Method::GET if collection => "LIST",
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE if collection => "DELETECOLLECTION",
        Method::DELETE => "DELETE",
        _ => "OTHER",
    };
    (verb, target.res.plural)
}

async fn serve(
    state: Arc<State>,
    req: Request<Incoming>,
    cert_user: Option<auth::User>,
) -> Result<Resp, Status> {
    let path = req.uri().path().to_owned();
    let route = route::parse(&path);
    let user = authenticated(&state, &req, cert_user).await;
    let Some(user) = user.or_else(|| {
        // Health checks and the version are public, as in Kubernetes.
        matches!(route, Some(Route::Health | Route::Version)).then(auth::User::admin)
    }) else {
        return Err(Status::unauthorized());
    };
    let q = Query::parse(req.uri().query());
    let method = req.method().clone();
    let Some(route) = route else {
        return Err(Status::no_route());
    };
    let target = match route {
        Route::Objects(t) => t,
        _ if method != Method::GET && method != Method::HEAD => {
            return Err(Status::new(
                Reason::MethodNotAllowed,
                format!(
                    "the server does not allow this method on the requested resource: {method}"
                ),
            ));
        }
        Route::Health => return Ok(http::text(200, "ok")),
        Route::Version => return Ok(ok(&discovery::version())),
        Route::OpenApiV2 => return Ok(openapi::serve_v2(req.headers())),
        Route::OpenApiIndex => return Ok(ok(&openapi::index())),
        Route::OpenApi { group, version } => {
            return openapi::serve_v3(group, version, &q, req.headers())
                .ok_or_else(Status::no_route);
        }
        Route::Metrics if !user.is_master() => {
            return Err(Status::new(
                Reason::Forbidden,
                format!(
                    "forbidden: User {:?} cannot get path \"/metrics\"",
                    user.name
                ),
            ));
        }
        Route::Metrics => {
            let mut resp = http::text_owned(200, state.metrics.render());
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            return Ok(resp);
        }
        Route::CoreVersions => return Ok(ok(&discovery::core_versions(&state.address))),
        Route::Groups => return Ok(ok(&discovery::groups())),
        Route::Group(g) => return Ok(ok(&discovery::one_group(g))),
        Route::Resources { group, version } => {
            return Ok(ok(&discovery::resources(group, version)));
        }
    };
    let verb = verb_of(&method, &target, &q);
    let headers = req.headers().clone();
    let body = if verb == "watch" {
        Bytes::new()
    } else {
        read_body(req).await?
    };
    let created = (verb == "create")
        .then(|| serde_json::from_slice::<serde_json::Value>(&body).ok())
        .flatten()
        .and_then(|b| b["metadata"]["name"].as_str().map(str::to_owned));
    let attrs = auth::Attributes {
        verb,
        res: target.res,
        subresource: target.sub.map(|s| s.name()),
        namespace: target.namespace.as_deref(),
        name: target.name.as_deref(),
        created: created.as_deref(),
    };
    // Asking "may I?" is always allowed; everything else needs a rule.
    if target.res.kind != "SelfSubjectAccessReview" && !auth::allowed(&state, &user, &attrs).await?
    {
        let denied = attrs.forbidden(&user);
        state.audit.write(&user, &attrs, denied.code());
        return Err(denied);
    }
    if verb == "watch" {
        return watch::watch(state, target, &q, &headers).await;
    }
    if target.res.kind == "SelfSubjectAccessReview" && method == Method::POST {
        return auth::review(&state, &user, &headers, &body).await;
    }
    let result = match tokio::time::timeout(
        REQUEST_TIMEOUT,
        objects::handle(&state, &method, &target, &q, &headers, &body),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(Status::new(
            Reason::Timeout,
            "the request did not complete within the allowed duration",
        )),
    };
    let code = match &result {
        Ok(resp) => resp.status().as_u16(),
        Err(s) => s.code(),
    };
    state.audit.write(&user, &attrs, code);
    result
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Status> {
    let too_large = || {
        Status::new(
            Reason::RequestEntityTooLarge,
            format!("the request body is larger than the limit of {MAX_BODY} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(Status::bad_request(format!(
            "reading the request body: {e}"
        ))),
    }
}
