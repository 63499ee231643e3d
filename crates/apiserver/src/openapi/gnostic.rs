//! The OpenAPI v2 document as the protobuf kubectl asks for
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`): gnostic's
//! `openapi.v2.Document` message, written from the JSON document. Only the
//! parts this server's documents have are encoded (info, paths with their
//! operations, parameters and responses, definitions); field numbers are those
//! of gnostic's `OpenAPIv2.proto`. Vendor extensions (`x-kubernetes-…`) travel
//! as `NamedAny` whose `Any.yaml` holds the value as JSON, which is YAML too:
//! that is how kubectl reads them.

use serde_json::{Map, Value};

/// Encodes a Swagger 2.0 document (as `openapi::v2` makes it).
pub(crate) fn encode(doc: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    string(&mut out, 1, &doc["swagger"]);
    if let Some(info) = doc.get("info") {
        let mut m = Vec::new();
        string(&mut m, 1, &info["title"]);
        string(&mut m, 2, &info["version"]);
        message(&mut out, 2, &m);
    }
    if let Some(Value::Object(paths)) = doc.get("paths") {
        let mut m = Vec::new();
        for (name, item) in paths {
            let mut named = Vec::new();
            str_field(&mut named, 1, name);
            message(&mut named, 2, &path_item(item));
            message(&mut m, 2, &named);
        }
        message(&mut out, 8, &m);
    }
    if let Some(Value::Object(defs)) = doc.get("definitions") {
        let mut m = Vec::new();
        for (name, s) in defs {
            message(&mut m, 1, &named_schema(name, s));
        }
        message(&mut out, 9, &m);
    }
    out
}

fn path_item(item: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    for (num, verb) in [
        (2, "get"),
        (3, "put"),
        (4, "post"),
        (5, "delete"),
        (8, "patch"),
    ] {
        if let Some(op) = item.get(verb) {
            message(&mut out, num, &operation(op));
        }
    }
    out
}

fn operation(op: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    strings(&mut out, 1, &op["tags"]);
    string(&mut out, 3, &op["description"]);
    string(&mut out, 5, &op["operationId"]);
    strings(&mut out, 6, &op["produces"]);
    strings(&mut out, 7, &op["consumes"]);
    for p in op["parameters"].as_array().into_iter().flatten() {
        // ParametersItem.parameter → Parameter.{body_parameter | non_body_parameter}
        let mut param = Vec::new();
        if p["in"] == "body" {
            let mut body = Vec::new();
            string(&mut body, 1, &p["description"]);
            string(&mut body, 2, &p["name"]);
            string(&mut body, 3, &p["in"]);
            boolean(&mut body, 4, &p["required"]);
            if let Some(s) = p.get("schema") {
                message(&mut body, 5, &schema(s));
            }
            message(&mut param, 1, &body);
        } else {
            // QueryParameterSubSchema (3) and PathParameterSubSchema (4)
            // share their first fields; `type` is 6 in one and 5 in the other.
            let (which, ty) = if p["in"] == "path" { (4, 5) } else { (3, 6) };
            let mut sub = Vec::new();
            boolean(&mut sub, 1, &p["required"]);
            string(&mut sub, 2, &p["in"]);
            string(&mut sub, 3, &p["description"]);
            string(&mut sub, 4, &p["name"]);
            string(&mut sub, ty, &p["type"]);
            if which == 3 {
                boolean(&mut sub, 20, &p["uniqueItems"]);
            }
            let mut non_body = Vec::new();
            message(&mut non_body, which, &sub);
            message(&mut param, 2, &non_body);
        }
        let mut item = Vec::new();
        message(&mut item, 1, &param);
        message(&mut out, 8, &item);
    }
    if let Some(Value::Object(codes)) = op.get("responses") {
        let mut responses = Vec::new();
        for (code, r) in codes {
            let mut response = Vec::new();
            string(&mut response, 1, &r["description"]);
            if let Some(s) = r.get("schema") {
                let mut item = Vec::new();
                message(&mut item, 1, &schema(s));
                message(&mut response, 2, &item);
            }
            let mut value = Vec::new();
            message(&mut value, 1, &response);
            let mut named = Vec::new();
            str_field(&mut named, 1, code);
            message(&mut named, 2, &value);
            message(&mut responses, 1, &named);
        }
        message(&mut out, 9, &responses);
    }
    if let Value::Object(m) = op {
        extensions(&mut out, 13, m);
    }
    out
}

fn named_schema(name: &str, s: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    str_field(&mut out, 1, name);
    message(&mut out, 2, &schema(s));
    out
}

fn schema(s: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let Value::Object(m) = s else {
        return out;
    };
    string(&mut out, 1, &s["$ref"]);
    string(&mut out, 2, &s["format"]);
    string(&mut out, 3, &s["title"]);
    string(&mut out, 4, &s["description"]);
    if let Some(d) = m.get("default") {
        message(&mut out, 5, &any(d));
    }
    strings(&mut out, 19, &s["required"]);
    match m.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut item = Vec::new();
            boolean(&mut item, 2, &Value::Bool(*b));
            // `false` is proto3's zero value: the oneof must still be present.
            if !b {
                varint_field(&mut item, 2, 0);
            }
            message(&mut out, 21, &item);
        }
        Some(a) => {
            let mut item = Vec::new();
            message(&mut item, 1, &schema(a));
            message(&mut out, 21, &item);
        }
        None => {}
    }
    match &s["type"] {
        Value::String(t) => {
            let mut item = Vec::new();
            str_field(&mut item, 1, t);
            message(&mut out, 22, &item);
        }
        Value::Array(_) => {
            let mut item = Vec::new();
            strings(&mut item, 1, &s["type"]);
            message(&mut out, 22, &item);
        }
        _ => {}
    }
    if let Some(items) = m.get("items") {
        let mut item = Vec::new();
        message(&mut item, 1, &schema(items));
        message(&mut out, 23, &item);
    }
    for a in s["allOf"].as_array().into_iter().flatten() {
        message(&mut out, 24, &schema(a));
    }
    if let Some(Value::Object(props)) = m.get("properties") {
        let mut p = Vec::new();
        for (name, ps) in props {
            message(&mut p, 1, &named_schema(name, ps));
        }
        message(&mut out, 25, &p);
    }
    boolean(&mut out, 27, &s["readOnly"]);
    extensions(&mut out, 31, m);
    out
}

/// Every `x-` key of `m` as a `NamedAny`.
fn extensions(out: &mut Vec<u8>, num: u64, m: &Map<String, Value>) {
    for (k, v) in m.iter().filter(|(k, _)| k.starts_with("x-")) {
        let mut named = Vec::new();
        str_field(&mut named, 1, k);
        message(&mut named, 2, &any(v));
        message(out, num, &named);
    }
}

/// gnostic's `Any` carrying a value as YAML (here JSON, a subset of YAML).
fn any(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    str_field(&mut out, 2, &v.to_string());
    out
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_field(out: &mut Vec<u8>, num: u64, v: u64) {
    varint(out, num << 3);
    varint(out, v);
}

fn message(out: &mut Vec<u8>, num: u64, body: &[u8]) {
    varint(out, (num << 3) | 2);
    varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

fn str_field(out: &mut Vec<u8>, num: u64, s: &str) {
    message(out, num, s.as_bytes());
}

/// A string field, left out when absent or empty (proto3's zero value).
fn string(out: &mut Vec<u8>, num: u64, v: &Value) {
    if let Some(s) = v.as_str().filter(|s| !s.is_empty()) {
        str_field(out, num, s);
    }
}

fn strings(out: &mut Vec<u8>, num: u64, v: &Value) {
    for s in v.as_array().into_iter().flatten().filter_map(Value::as_str) {
        str_field(out, num, s);
    }
}

fn boolean(out: &mut Vec<u8>, num: u64, v: &Value) {
    if v.as_bool() == Some(true) {
        varint_field(out, num, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_numbered_as_gnostic_has_them() {
        let doc = json!({"swagger": "2.0",
            "definitions": {"A": {"type": "object", "x-k": ["v"],
                                  "properties": {"b": {"$ref": "#/definitions/B"}}}}});
        let pb = encode(&doc);
        // swagger (1) = "2.0"
        assert_eq!(&pb[..5], b"\x0a\x032.0");
        // definitions (9) { additional_properties (1) { name (1) = "A", value (2) {...} } }
        assert_eq!(pb[5], 9 << 3 | 2);
        let def = schema(&doc["definitions"]["A"]);
        // type (22) = TypeItem { value (1) = "object" }
        assert_eq!(&def[..11], b"\xb2\x01\x08\x0a\x06object");
        let ext = b"\x0a\x03x-k\x12\x07\x12\x05[\"v\"]";
        assert!(def.windows(ext.len()).any(|w| w == ext), "{def:?}");
        let r = b"\x0a\x0f#/definitions/B";
        assert!(def.windows(r.len()).any(|w| w == r));
    }
}
