//! The OCI distribution API (spec v1.1) over [`Storage`], on hyper: HTTP/1.1,
//! optionally TLS (rustls) and basic authentication (htpasswd, bcrypt).
//!
//! Every storage call is synchronous file-system work and runs on tokio's
//! blocking pool; blob bodies stream through [`crate::body`] in 1 MiB chunks,
//! so memory per transfer stays bounded whatever the blob size.

mod auth;
mod blobs;
mod error;
mod listing;
mod manifests;
mod route;
mod tls;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bosun_oci::ErrorKind;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::body::Body;
use crate::name::UploadId;
use crate::storage::{ServerLock, Storage, StorageError};
use auth::{Check, Htpasswd};
use error::{ApiError, Code};
use route::{Route, query_pairs};

type Resp = Response<Body>;

/// A client gets this long for its TLS handshake, and then for each request's
/// headers (from the connection's start or the previous response): a slow or
/// idle client (slowloris) is cut off instead of holding a task and a
/// descriptor forever. Bodies have no such limit: a blob may take hours.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How to run a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// An htpasswd file of bcrypt entries; without it, anyone may pull and push.
    pub htpasswd: Option<PathBuf>,
    /// PEM certificate chain and private key; without them, plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Connections served at once ([`DEFAULT_MAX_CONNECTIONS`] is a good
    /// value). At the limit the server stops accepting, so a flood of idle
    /// connections waits in the kernel's backlog instead of taking a
    /// descriptor and a task each; the header timeout frees their places.
    pub max_connections: usize,
}

/// Well below the 20000 descriptors a root process gets here, with room for
/// blob files.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("TLS {path}: {reason}")]
    Tls { path: PathBuf, reason: String },
    #[error("htpasswd file {path}: {reason}")]
    Htpasswd { path: PathBuf, reason: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ServerError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ServerError::Bind { source, .. } if source.kind() == io::ErrorKind::AddrInUse => {
                ErrorKind::Conflict
            }
            ServerError::Bind { .. } => ErrorKind::Unavailable,
            ServerError::Tls { .. } | ServerError::Htpasswd { .. } => ErrorKind::Invalid,
            ServerError::Storage(e) => e.kind(),
        }
    }
}

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<State>,
    connections: Arc<tokio::sync::Semaphore>,
    _lock: ServerLock,
}

#[derive(Debug)]
struct State {
    storage: Arc<Storage>,
    auth: Option<Htpasswd>,
    /// One lock per upload in progress, so two requests never append to the
    /// same upload at once (the offset check and the write must not interleave).
    uploads: Mutex<HashMap<UploadId, Arc<tokio::sync::Mutex<()>>>>,
}

impl State {
    fn upload_lock(&self, id: &UploadId) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.uploads.lock().expect("upload locks");
        if map.len() > 1024 {
            // Forget locks nobody holds or waits for (finished or abandoned uploads).
            map.retain(|_, l| Arc::strong_count(l) > 1);
        }
        map.entry(id.clone()).or_default().clone()
    }

    fn forget_upload(&self, id: &UploadId) {
        self.uploads.lock().expect("upload locks").remove(id);
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the storage, loads auth and TLS material, and binds the address.
    pub async fn bind(config: ServerConfig) -> Result<Self, ServerError> {
        let storage = Storage::open(&config.data_dir)?;
        let lock = storage.lock_shared()?;
        let auth = config.htpasswd.as_deref().map(Htpasswd::load).transpose()?;
        let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
        let listener =
            TcpListener::bind(config.addr)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.addr,
                    source,
                })?;
        Ok(Self {
            listener,
            tls,
            state: Arc::new(State {
                storage: Arc::new(storage),
                auth,
                uploads: Mutex::new(HashMap::new()),
            }),
            connections: Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1))),
            _lock: lock,
        })
    }

    /// The address actually bound (port 0 picks a free one).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes. Connections in flight are not
    /// waited for: the data they carry is either complete on disk or an
    /// upload a client can resume.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            // A place is taken before accepting: at the limit the loop waits.
            let permit = tokio::select! {
                _ = &mut shutdown => return,
                permit = self.connections.clone().acquire_owned() => {
                    permit.expect("the connection semaphore is never closed")
                }
            };
            let (stream, _peer) = tokio::select! {
                _ = &mut shutdown => return,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        eprintln!("bosun registry: accept: {e}");
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
                // A connection that fails (a client gone, a bad handshake)
                // concerns only that client.
                match tls {
                    Some(acceptor) => {
                        // A handshake that never ends is cut off like headers that never end.
                        let handshake =
                            tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream));
                        if let Ok(Ok(stream)) = handshake.await {
                            serve_connection(state, stream).await;
                        }
                    }
                    None => serve_connection(state, stream).await,
                }
            });
        }
    }
}

/// Serves one connection until it ends.
async fn serve_connection(
    state: Arc<State>,
    io: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
) {
    let service = service_fn(move |req| handle(state.clone(), req));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        // The large buffer is for bodies; headers past 64 KiB are 431.
        .max_header_size(64 << 10)
        .max_buf_size(4 << 20);
    let _ = http.serve_connection(TokioIo::new(io), service).await;
}

/// The server without a listener, for the fuzz targets in `fuzz/`: it serves
/// connections it is handed (an in-memory pipe) exactly as [`Server::run`]
/// serves accepted ones.
#[doc(hidden)]
#[derive(Debug)]
pub struct Handler {
    state: Arc<State>,
}

impl Handler {
    /// Opens (or makes) the storage in `data_dir`; no authentication, no TLS.
    pub fn open(data_dir: &std::path::Path) -> Result<Self, ServerError> {
        Ok(Self {
            state: Arc::new(State {
                storage: Arc::new(Storage::open(data_dir)?),
                auth: None,
                uploads: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Serves one connection until the client closes it.
    pub async fn serve(
        &self,
        io: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    ) {
        serve_connection(self.state.clone(), io).await;
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = match dispatch(&state, req).await {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_server_error() {
                let message = e.errors.first().map(|x| x.1.as_str()).unwrap_or("");
                eprintln!("bosun registry: {method} {path}: {message}");
            }
            error_response(e)
        }
    };
    Ok(response)
}

fn error_response(e: ApiError) -> Resp {
    let body = e.body();
    let mut b = response(e.status)
        .header("Content-Type", "application/json")
        .header("Content-Length", body.len());
    for (name, value) in &e.headers {
        b = b.header(*name, value);
    }
    b.body(Body::full(body)).expect("valid error response")
}

/// A response builder with the headers every response carries.
fn response(status: StatusCode) -> hyper::http::response::Builder {
    Response::builder()
        .status(status)
        .header("Docker-Distribution-API-Version", "registry/2.0")
}

async fn dispatch(state: &Arc<State>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    if let Some(auth) = &state.auth {
        authorize(state, auth, &req).await?;
    }
    let path = req.uri().path();
    let route = Route::parse(path)?.ok_or_else(|| {
        ApiError::new(Code::Unsupported, format!("no such endpoint: {path}"))
            .status(StatusCode::NOT_FOUND)
    })?;
    let query = query_pairs(req.uri().query());
    let method = req.method().clone();
    let head = method == Method::HEAD;
    match (method, route) {
        (Method::GET | Method::HEAD, Route::Ping) => Ok(response(StatusCode::OK)
            .header("Content-Type", "application/json")
            .body(Body::full(&b"{}"[..]))
            .expect("valid response")),
        (Method::GET | Method::HEAD, Route::Blob(repo, digest)) => {
            blobs::get(state, repo, digest, head, &req).await
        }
        (Method::DELETE, Route::Blob(repo, digest)) => blobs::delete(state, repo, digest).await,
        (Method::POST, Route::Uploads(repo)) => blobs::start_upload(state, repo, &query, req).await,
        (method, Route::Upload(repo, id)) => {
            let id = id.ok_or_else(|| {
                ApiError::new(Code::BlobUploadUnknown, "no such upload in progress")
            })?;
            match method {
                Method::GET => blobs::upload_status(state, repo, id).await,
                Method::PATCH => blobs::patch_upload(state, repo, id, req).await,
                Method::PUT => blobs::finish_upload(state, repo, id, &query, req).await,
                Method::DELETE => blobs::cancel_upload(state, repo, id).await,
                other => Err(unsupported(&other)),
            }
        }
        (Method::GET | Method::HEAD, Route::Manifest(repo, reference)) => {
            manifests::get(state, repo, reference, head).await
        }
        (Method::PUT, Route::Manifest(repo, reference)) => {
            manifests::put(state, repo, reference, req).await
        }
        (Method::DELETE, Route::Manifest(repo, reference)) => {
            manifests::delete(state, repo, reference).await
        }
        (Method::GET, Route::Tags(repo)) => listing::tags(state, repo, &query).await,
        (Method::GET, Route::Catalog) => listing::catalog(state, &query).await,
        (Method::GET, Route::Referrers(repo, digest)) => {
            listing::referrers(state, repo, digest, &query).await
        }
        (other, _) => Err(unsupported(&other)),
    }
}

fn unsupported(method: &Method) -> ApiError {
    ApiError::new(
        Code::Unsupported,
        format!("{method} is not supported on this endpoint"),
    )
}

/// Admits a request whose basic credentials match the htpasswd file.
async fn authorize(
    state: &Arc<State>,
    auth: &Htpasswd,
    req: &Request<Incoming>,
) -> Result<(), ApiError> {
    let header = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let allowed = match auth.check(header) {
        Check::Allowed => true,
        Check::Denied => false,
        Check::Verify { user, password } => {
            let state = state.clone();
            tokio::task::spawn_blocking(move || {
                state
                    .auth
                    .as_ref()
                    .is_some_and(|a| a.verify(&user, &password))
            })
            .await
            .unwrap_or(false)
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(
            ApiError::new(Code::Unauthorized, "authentication required").header(
                "WWW-Authenticate",
                format!("Basic realm=\"{}\"", auth::REALM),
            ),
        )
    }
}

/// Runs synchronous storage work on the blocking pool.
async fn blocking<T: Send + 'static>(
    state: &Arc<State>,
    f: impl FnOnce(&Storage) -> Result<T, StorageError> + Send + 'static,
) -> Result<T, ApiError> {
    let storage = state.storage.clone();
    tokio::task::spawn_blocking(move || f(&storage))
        .await
        .map_err(|e| ApiError::internal(format!("storage task failed: {e}")))?
        .map_err(ApiError::from)
}

/// The value of a header, if it is text.
fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}
