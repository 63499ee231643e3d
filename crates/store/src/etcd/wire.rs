//! etcd v3's JSON gateway shapes (grpc-gateway over `etcdserverpb`), as etcd 3.4
//! sends and accepts them: bytes are base64, 64-bit integers are strings, and
//! fields at their default (false, 0, empty) are left out.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};

use crate::types::{Key, KeyValue, Revision};

pub(super) fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// The "every key from here on" end of a range, as etcd spells it.
pub(super) const RANGE_END_ALL: &str = "AA=="; // "\0"

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// proto3 JSON writes 64-bit integers as strings.
mod int64 {
    use serde::Serializer;

    pub(super) fn serialize<S: Serializer>(n: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(n)
    }
}

/// Accepts a 64-bit integer as a string (what etcd sends) or a number.
fn de_int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        S(String),
        N(i64),
    }
    match Int::deserialize(d)? {
        Int::N(n) => Ok(n),
        Int::S(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

fn de_b64<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
    let s = String::deserialize(d)?;
    STANDARD
        .decode(s.as_bytes())
        .map(Bytes::from)
        .map_err(serde::de::Error::custom)
}

#[derive(Debug, Serialize)]
pub(super) struct RangeRequest {
    pub(super) key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) range_end: Option<String>,
    #[serde(with = "int64", skip_serializing_if = "is_zero")]
    pub(super) limit: i64,
    #[serde(with = "int64", skip_serializing_if = "is_zero")]
    pub(super) revision: i64,
    #[serde(skip_serializing_if = "is_false")]
    pub(super) count_only: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct PutRequest {
    pub(super) key: String,
    pub(super) value: String,
    pub(super) prev_kv: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct DeleteRangeRequest {
    pub(super) key: String,
    pub(super) prev_kv: bool,
}

/// A `RequestOp`: a oneof, which JSON spells as an object with one field.
#[derive(Debug, Serialize)]
pub(super) enum RequestOp {
    #[serde(rename = "request_range")]
    Range(RangeRequest),
    #[serde(rename = "request_put")]
    Put(PutRequest),
    #[serde(rename = "request_delete_range")]
    Delete(DeleteRangeRequest),
}

#[derive(Debug, Serialize)]
pub(super) struct CompareMod {
    pub(super) key: String,
    /// Always "MOD": the only comparison the store makes.
    pub(super) target: &'static str,
    /// Always "EQUAL".
    pub(super) result: &'static str,
    /// Kept even when 0: a missing key compares as mod revision 0.
    #[serde(with = "int64")]
    pub(super) mod_revision: i64,
}

#[derive(Debug, Serialize)]
pub(super) struct TxnRequest {
    pub(super) compare: Vec<CompareMod>,
    pub(super) success: Vec<RequestOp>,
    pub(super) failure: Vec<RequestOp>,
}

#[derive(Debug, Serialize)]
pub(super) struct CompactionRequest {
    #[serde(with = "int64")]
    pub(super) revision: i64,
    /// Wait until the old versions are gone, so later reads see a settled store.
    pub(super) physical: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct WatchCreateRequest {
    pub(super) key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) range_end: Option<String>,
    #[serde(with = "int64")]
    pub(super) start_revision: i64,
    pub(super) progress_notify: bool,
    pub(super) prev_kv: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct WatchRequest {
    pub(super) create_request: WatchCreateRequest,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Header {
    #[serde(default, deserialize_with = "de_int64")]
    pub(super) revision: i64,
}

#[derive(Debug, Deserialize)]
pub(super) struct Kv {
    #[serde(deserialize_with = "de_b64")]
    pub(super) key: Bytes,
    #[serde(default, deserialize_with = "de_b64")]
    pub(super) value: Bytes,
    #[serde(default, deserialize_with = "de_int64")]
    pub(super) create_revision: i64,
    #[serde(default, deserialize_with = "de_int64")]
    pub(super) mod_revision: i64,
    #[serde(default, deserialize_with = "de_int64")]
    pub(super) version: i64,
}

impl Kv {
    pub(super) fn into_kv(self) -> KeyValue {
        KeyValue {
            key: Key::from_stored(self.key),
            value: self.value,
            create_revision: Revision::from_backend(self.create_revision),
            mod_revision: Revision::from_backend(self.mod_revision),
            version: self.version,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RangeResponse {
    #[serde(default)]
    pub(super) header: Header,
    #[serde(default)]
    pub(super) kvs: Vec<Kv>,
    #[serde(default)]
    pub(super) more: bool,
}

#[derive(Debug, Deserialize)]
pub(super) struct PutResponse {
    #[serde(default)]
    pub(super) prev_kv: Option<Kv>,
}

#[derive(Debug, Deserialize)]
pub(super) struct DeleteRangeResponse {
    #[serde(default)]
    pub(super) prev_kvs: Vec<Kv>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ResponseOp {
    pub(super) response_range: Option<RangeResponse>,
    pub(super) response_put: Option<PutResponse>,
    pub(super) response_delete_range: Option<DeleteRangeResponse>,
}

#[derive(Debug, Deserialize)]
pub(super) struct TxnResponse {
    #[serde(default)]
    pub(super) header: Header,
    #[serde(default)]
    pub(super) succeeded: bool,
    #[serde(default)]
    pub(super) responses: Vec<ResponseOp>,
}

#[derive(Debug, Deserialize)]
pub(super) struct CompactionResponse {}

/// The body of an error status: `{"error", "message", "code"}` (a gRPC status).
#[derive(Debug, Deserialize)]
pub(super) struct ErrorBody {
    #[serde(default)]
    pub(super) message: String,
    #[serde(default)]
    pub(super) code: i32,
}

/// One line of the watch stream: a response, or an error that ends the stream.
#[derive(Debug, Deserialize)]
pub(super) struct WatchLine {
    pub(super) result: Option<WatchResponse>,
    pub(super) error: Option<StreamError>,
}

#[derive(Debug, Deserialize)]
pub(super) struct StreamError {
    #[serde(default)]
    pub(super) grpc_code: i32,
    #[serde(default)]
    pub(super) message: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct WatchResponse {
    #[serde(default)]
    pub(super) header: Header,
    #[serde(default)]
    pub(super) created: bool,
    #[serde(default)]
    pub(super) canceled: bool,
    #[serde(default, deserialize_with = "de_int64")]
    pub(super) compact_revision: i64,
    #[serde(default)]
    pub(super) cancel_reason: String,
    #[serde(default)]
    pub(super) events: Vec<Event>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Event {
    /// "PUT" is the default, so left out; "DELETE" otherwise.
    #[serde(default, rename = "type")]
    pub(super) kind: String,
    pub(super) kv: Kv,
    pub(super) prev_kv: Option<Kv>,
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as etcd 3.4.23 sent them on this machine.
    #[test]
    fn parses_what_etcd_sends() {
        let put: WatchLine = serde_json::from_str(r#"{"result":{"header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"7","raft_term":"2"},"events":[{"kv":{"key":"L2EvMg==","create_revision":"6","mod_revision":"7","version":"2","value":"eA=="},"prev_kv":{"key":"L2EvMg==","create_revision":"6","mod_revision":"6","version":"1"}}]}}"#).unwrap();
        let r = put.result.unwrap();
        assert_eq!(r.header.revision, 7);
        let ev = &r.events[0];
        assert_eq!(ev.kind, "");
        assert_eq!(ev.kv.key.as_ref(), b"/a/2");
        assert_eq!(ev.kv.value.as_ref(), b"x");
        assert_eq!(ev.prev_kv.as_ref().unwrap().value.as_ref(), b"");
        let canceled: WatchLine = serde_json::from_str(r#"{"result":{"header":{"cluster_id":"1","member_id":"2","raft_term":"2"},"canceled":true,"compact_revision":"3"}}"#).unwrap();
        let r = canceled.result.unwrap();
        assert!(r.canceled);
        assert_eq!(r.compact_revision, 3);
        let txn: TxnResponse = serde_json::from_str(r#"{"header":{"revision":"4"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"4"}}}]}"#).unwrap();
        assert!(
            txn.succeeded
                && txn.responses[0]
                    .response_put
                    .as_ref()
                    .unwrap()
                    .prev_kv
                    .is_none()
        );
    }

    #[test]
    fn writes_what_etcd_reads() {
        let op = RequestOp::Put(PutRequest {
            key: b64(b"/a"),
            value: b64(b"v"),
            prev_kv: true,
        });
        assert_eq!(
            serde_json::to_string(&op).unwrap(),
            r#"{"request_put":{"key":"L2E=","value":"dg==","prev_kv":true}}"#
        );
        let cmp = CompareMod {
            key: b64(b"/a"),
            target: "MOD",
            result: "EQUAL",
            mod_revision: 0,
        };
        assert!(
            serde_json::to_string(&cmp)
                .unwrap()
                .contains(r#""mod_revision":"0""#)
        );
    }
}
