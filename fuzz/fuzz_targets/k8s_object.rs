//! Kubernetes object decoding: `PATH\n` then the body of a create request,
//! as JSON or (first byte odd) as kubectl's protobuf. What decodes has gone
//! through the server's defaults and validation and must still have
//! readable metadata.
#![no_main]

use libfuzzer_sys::fuzz_target;

const JSON: &str = "application/json";
const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let content_type = if first & 1 == 1 { PROTOBUF } else { JSON };
    let (path, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&b"/api/v1/namespaces/default/configmaps"[..], rest),
    };
    let Ok(path) = std::str::from_utf8(path) else {
        return;
    };
    if let Ok(obj) = bosun_apiserver::fuzzing::decode_object(path, content_type, body) {
        bosun_apiserver::fuzzing::object_meta(&obj).expect("a valid object has readable metadata");
        let text = serde_json::to_vec(&obj).expect("encode");
        let _: serde_json::Value = serde_json::from_slice(&text).expect("the object re-decodes");
    }
});
