//! The etcd v3 backend, over etcd's JSON gateway (`POST /v3/kv/...`, `/v3/watch`)
//! with the workspace's HTTP client: no gRPC stack, no protoc.
//!
//! Mapping: `get`/`range` are linearizable `Range`s (with `revision` for a past
//! one); every write is a `Txn` whose compares are `MOD EQUAL` (a missing key has
//! mod revision 0) and whose puts and deletes ask for `prev_kv`, from which the
//! new version's create revision and version follow; `compact` is `Compaction`
//! with `physical`; a watch is one `/v3/watch` stream (see [`watch`]).
//!
//! Endpoints are tried in turn, starting from the last one that answered. A request
//! moves on to the next endpoint when it could not connect, or, for reads, on any
//! transport error or an "unavailable" answer (no leader, leader changed). A write
//! whose connection broke after it was sent fails with `Unavailable` instead: it
//! may have been applied, and only the caller can tell whether to retry.

mod watch;
mod wire;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::Url;
use serde::Serialize;
use serde::de::DeserializeOwned;

use self::wire::{
    CompactionRequest, CompactionResponse, CompareMod, DeleteRangeRequest, ErrorBody, PutRequest,
    RangeRequest, RangeResponse, RequestOp, TxnRequest, TxnResponse, b64,
};
use crate::error::Error;
use crate::types::{
    Key, KeyRange, KeyValue, Limit, Op, OpResult, RangeResult, Revision, Txn, TxnResult,
};

pub(crate) use self::watch::EtcdWatch;

/// etcd answers within its own request timeout (5 s plus an election); past
/// this, the member is taken for hung.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// gRPC codes etcd answers with, and its messages for revision errors.
const GRPC_OUT_OF_RANGE: i32 = 11;
const GRPC_UNAVAILABLE: i32 = 14;
const MSG_COMPACTED: &str = "required revision has been compacted";
const MSG_FUTURE: &str = "required revision is a future revision";

/// The client URLs of an etcd cluster, parsed from `http://a:2379,http://b:2379`.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoints(Vec<Url>);

impl Endpoints {
    /// Endpoints from URLs (`http://host:port`, or https with the system's roots).
    pub fn new<S: AsRef<str>>(urls: impl IntoIterator<Item = S>) -> Result<Endpoints, Error> {
        let mut out = Vec::new();
        for u in urls {
            let u = u.as_ref().trim();
            let invalid = |reason: &str| Error::InvalidEndpoint {
                input: u.to_owned(),
                reason: reason.to_owned(),
            };
            let url = Url::parse(u).map_err(|e| invalid(&e.to_string()))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(invalid("the scheme must be http or https"));
            }
            if url.host_str().is_none() {
                return Err(invalid("no host"));
            }
            if !matches!(url.path(), "" | "/") || url.query().is_some() {
                return Err(invalid("an endpoint has no path or query"));
            }
            out.push(url);
        }
        if out.is_empty() {
            return Err(Error::InvalidEndpoint {
                input: String::new(),
                reason: "no endpoint given".into(),
            });
        }
        Ok(Endpoints(out))
    }
}

impl FromStr for Endpoints {
    type Err = Error;
    fn from_str(s: &str) -> Result<Endpoints, Error> {
        Endpoints::new(s.split(',').filter(|p| !p.trim().is_empty()))
    }
}

impl fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(Url::as_str))
            .finish()
    }
}

/// Whether a failed request may be sent again to another endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads: always.
    Idempotent,
    /// Writes: only when it never left this process.
    IfNotSent,
}

#[derive(Debug, Clone)]
pub(crate) struct Etcd {
    http: reqwest::Client,
    endpoints: Arc<[Url]>,
    /// The endpoint that answered last: where the next request starts.
    preferred: Arc<AtomicUsize>,
}

impl Etcd {
    pub(crate) fn new(endpoints: Endpoints) -> Result<Etcd, Error> {
        let first = endpoints.0[0].to_string();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .build()
            .map_err(|source| Error::Http {
                endpoint: first,
                source,
            })?;
        Ok(Etcd {
            http,
            endpoints: endpoints.0.into(),
            preferred: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Endpoint indexes in the order to try them.
    fn order(&self) -> impl Iterator<Item = usize> + use<> {
        let n = self.endpoints.len();
        let start = self.preferred.load(Ordering::Relaxed) % n;
        (0..n).map(move |i| (start + i) % n)
    }

    fn url(&self, i: usize, path: &str) -> Url {
        let mut url = self.endpoints[i].clone();
        url.set_path(path);
        url
    }

    async fn call<T: DeserializeOwned>(
        &self,
        path: &str,
        req: &impl Serialize,
        retry: Retry,
    ) -> Result<T, Error> {
        let body = serde_json::to_vec(req).map_err(|e| Error::Protocol {
            endpoint: path.to_owned(),
            reason: e.to_string(),
        })?;
        let mut last = None;
        for i in self.order() {
            let url = self.url(i, path);
            let sent = self
                .http
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .timeout(REQUEST_TIMEOUT)
                .send()
                .await;
            let resp = match sent {
                Ok(resp) => resp,
                Err(e) => {
                    let may_retry = e.is_connect() || retry == Retry::Idempotent;
                    let err = Error::Http {
                        endpoint: url.to_string(),
                        source: e,
                    };
                    if !may_retry {
                        return Err(err);
                    }
                    last = Some(err);
                    continue;
                }
            };
            match decode(&url, resp).await {
                // A member without a leader cannot serve; another one may.
                Err(
                    e @ Error::Etcd {
                        code: GRPC_UNAVAILABLE,
                        ..
                    },
                ) if retry == Retry::Idempotent => {
                    last = Some(e);
                }
                res => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return res;
                }
            }
        }
        Err(last.unwrap_or(Error::Closed))
    }

    pub(crate) async fn current_revision(&self) -> Result<Revision, Error> {
        // A count of one key that never exists: only the header matters.
        let req = RangeRequest {
            key: b64(b"\0"),
            range_end: None,
            limit: 0,
            revision: 0,
            count_only: true,
        };
        let resp: RangeResponse = self.call("/v3/kv/range", &req, Retry::Idempotent).await?;
        Ok(Revision::from_backend(resp.header.revision))
    }

    pub(crate) async fn get(
        &self,
        key: &Key,
        at: Option<Revision>,
    ) -> Result<Option<KeyValue>, Error> {
        let res = self.range(&KeyRange::single(key), at, None).await?;
        Ok(res.kvs.into_iter().next())
    }

    pub(crate) async fn range(
        &self,
        range: &KeyRange,
        at: Option<Revision>,
        limit: Limit,
    ) -> Result<RangeResult, Error> {
        let at = at.unwrap_or_default();
        let req = RangeRequest {
            key: b64(range.start()),
            range_end: Some(range_end(range)),
            limit: limit.map_or(0, |l| i64::try_from(l.get()).unwrap_or(i64::MAX)),
            revision: at.get(),
            count_only: false,
        };
        let resp: RangeResponse = match self.call("/v3/kv/range", &req, Retry::Idempotent).await {
            Ok(resp) => resp,
            Err(e) => return Err(self.revision_error(e, at).await),
        };
        Ok(RangeResult {
            kvs: resp.kvs.into_iter().map(wire::Kv::into_kv).collect(),
            more: resp.more,
            revision: if at == Revision::ZERO {
                Revision::from_backend(resp.header.revision)
            } else {
                at
            },
        })
    }

    pub(crate) async fn txn(&self, txn: Txn) -> Result<TxnResult, Error> {
        let req = TxnRequest {
            compare: txn
                .compares
                .iter()
                .map(|c| CompareMod {
                    key: b64(c.key.as_bytes()),
                    target: "MOD",
                    result: "EQUAL",
                    mod_revision: c.mod_revision.get(),
                })
                .collect(),
            success: txn.success.iter().map(request_op).collect(),
            failure: txn.failure.iter().map(request_op).collect(),
        };
        let resp: TxnResponse = self.call("/v3/kv/txn", &req, Retry::IfNotSent).await?;
        let revision = Revision::from_backend(resp.header.revision);
        let ops = if resp.succeeded {
            &txn.success
        } else {
            &txn.failure
        };
        if ops.len() != resp.responses.len() {
            return Err(self.protocol("a txn answered a different number of operations"));
        }
        let mut results = Vec::with_capacity(ops.len());
        for (op, r) in ops.iter().zip(resp.responses) {
            let result = match (op, r) {
                (
                    Op::Get(_),
                    wire::ResponseOp {
                        response_range: Some(r),
                        ..
                    },
                ) => OpResult::Get(r.kvs.into_iter().next().map(wire::Kv::into_kv)),
                (
                    Op::Put(key, value),
                    wire::ResponseOp {
                        response_put: Some(r),
                        ..
                    },
                ) => {
                    // etcd answers a put with the previous version only; the new
                    // one follows from it and the transaction's revision.
                    let prev = r.prev_kv.map(wire::Kv::into_kv);
                    OpResult::Put(KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
                        mod_revision: revision,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                    })
                }
                (
                    Op::Delete(_),
                    wire::ResponseOp {
                        response_delete_range: Some(r),
                        ..
                    },
                ) => OpResult::Delete(r.prev_kvs.into_iter().next().map(wire::Kv::into_kv)),
                _ => return Err(self.protocol("a txn answered an operation of another type")),
            };
            results.push(result);
        }
        Ok(TxnResult {
            succeeded: resp.succeeded,
            revision,
            results,
        })
    }

    pub(crate) async fn compact(&self, revision: Revision) -> Result<(), Error> {
        let req = CompactionRequest {
            revision: revision.get(),
            physical: true,
        };
        // Compacting twice is harmless: retrying is safe.
        match self
            .call::<CompactionResponse>("/v3/kv/compaction", &req, Retry::Idempotent)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => Err(self.revision_error(e, revision).await),
        }
    }

    pub(crate) async fn watch(
        &self,
        range: &KeyRange,
        after: Revision,
    ) -> Result<EtcdWatch, Error> {
        EtcdWatch::start(self.clone(), range.clone(), after).await
    }

    /// Turns etcd's "compacted" and "future revision" answers into the store's
    /// errors, asking etcd for the numbers its messages leave out.
    async fn revision_error(&self, e: Error, requested: Revision) -> Error {
        let Error::Etcd { code, message, .. } = &e else {
            return e;
        };
        if *code != GRPC_OUT_OF_RANGE {
            return e;
        }
        if message.contains(MSG_COMPACTED) {
            let compacted = self.compact_revision(requested).await;
            return Error::Compacted {
                requested,
                compacted,
            };
        }
        if message.contains(MSG_FUTURE) {
            return match self.current_revision().await {
                Ok(current) => Error::FutureRevision { requested, current },
                Err(e) => e,
            };
        }
        e
    }

    /// The compact revision, which etcd's "compacted" errors leave out: the
    /// oldest revision still readable, found by bisection between `requested`
    /// and the current revision (always readable). Only on the error path.
    /// Falls back to `requested + 1`, the least it can be, if etcd stops answering.
    async fn compact_revision(&self, requested: Revision) -> Revision {
        let fallback = requested.next();
        let Ok(current) = self.current_revision().await else {
            return fallback;
        };
        let (mut lo, mut hi) = (requested.get(), current.get());
        match self.readable(lo).await {
            Some(true) => return requested,
            Some(false) => {}
            None => return fallback,
        }
        // Invariant: `lo` is compacted, `hi` is readable.
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            match self.readable(mid).await {
                Some(true) => hi = mid,
                Some(false) => lo = mid,
                None => return fallback,
            }
        }
        Revision::from_backend(hi)
    }

    /// Whether a read at `revision` is served (`None`: etcd did not say).
    async fn readable(&self, revision: i64) -> Option<bool> {
        let req = RangeRequest {
            key: b64(b"\0"),
            range_end: None,
            limit: 1,
            revision,
            count_only: true,
        };
        match self
            .call::<RangeResponse>("/v3/kv/range", &req, Retry::Idempotent)
            .await
        {
            Ok(_) => Some(true),
            Err(Error::Etcd { message, .. }) if message.contains(MSG_COMPACTED) => Some(false),
            Err(_) => None,
        }
    }

    fn protocol(&self, reason: &str) -> Error {
        let i = self.preferred.load(Ordering::Relaxed) % self.endpoints.len();
        Error::Protocol {
            endpoint: self.endpoints[i].to_string(),
            reason: reason.to_owned(),
        }
    }
}

/// etcd's `range_end` for a range: its end, or "\0" (every key from the start).
fn range_end(range: &KeyRange) -> String {
    range
        .end()
        .map_or_else(|| wire::RANGE_END_ALL.to_owned(), |e| b64(e))
}

fn request_op(op: &Op) -> RequestOp {
    match op {
        Op::Get(key) => RequestOp::Range(RangeRequest {
            key: b64(key.as_bytes()),
            range_end: None,
            limit: 0,
            revision: 0,
            count_only: false,
        }),
        Op::Put(key, value) => RequestOp::Put(PutRequest {
            key: b64(key.as_bytes()),
            value: b64(value),
            prev_kv: true,
        }),
        Op::Delete(key) => RequestOp::Delete(DeleteRangeRequest {
            key: b64(key.as_bytes()),
            prev_kv: true,
        }),
    }
}

/// Reads a unary answer: the message on 200, the gRPC status otherwise.
async fn decode<T: DeserializeOwned>(url: &Url, resp: reqwest::Response) -> Result<T, Error> {
    let endpoint = || url.to_string();
    let status = resp.status();
    let body = resp.bytes().await.map_err(|source| Error::Http {
        endpoint: endpoint(),
        source,
    })?;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| Error::Protocol {
            endpoint: endpoint(),
            reason: e.to_string(),
        });
    }
    match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(err) => Err(Error::Etcd {
            endpoint: endpoint(),
            code: err.code,
            message: err.message,
        }),
        Err(_) => Err(Error::Protocol {
            endpoint: endpoint(),
            reason: format!("status {status}: {}", String::from_utf8_lossy(&body)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let e: Endpoints = "http://127.0.0.1:2379, http://127.0.0.1:2380/"
            .parse()
            .unwrap();
        assert_eq!(e.0.len(), 2);
        for bad in [
            "",
            "127.0.0.1:2379",
            "ftp://x",
            "http://x/v3",
            "http://x?a=1",
        ] {
            assert!(bad.parse::<Endpoints>().is_err(), "{bad:?}");
        }
    }
}
