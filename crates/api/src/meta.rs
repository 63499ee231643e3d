//! Object metadata. Objects stay JSON (`serde_json::Value`), so every field a
//! client sends survives; the server types only the metadata it reads.

use std::collections::BTreeMap;

use bosun_oci::ErrorKind;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::name::{self, NameRule};
use crate::status::Cause;

/// An object body that is not a Kubernetes object (wrong JSON shapes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("the object is not a JSON object")]
    NotAnObject,
    #[error("metadata: {0}")]
    Metadata(String),
    #[error("{field}: expected {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
}

impl MetaError {
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Invalid
    }
}

/// `null` reads as the default, as Go's decoder treats it.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The metadata the server reads of an object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub generate_name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub namespace: String,
    #[serde(default, deserialize_with = "nullable")]
    pub uid: String,
    #[serde(default, deserialize_with = "nullable")]
    pub resource_version: String,
    #[serde(default, deserialize_with = "nullable")]
    pub generation: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub creation_timestamp: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub deletion_timestamp: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    pub finalizers: Vec<String>,
}

/// Annotations of one object may not add up to more than this (as in Kubernetes).
const ANNOTATIONS_MAX: usize = 256 * 1024;

impl ObjectMeta {
    /// Reads `obj.metadata` (absent: all defaults).
    pub fn of(obj: &Value) -> Result<ObjectMeta, MetaError> {
        let Value::Object(map) = obj else {
            return Err(MetaError::NotAnObject);
        };
        match map.get("metadata") {
            None | Some(Value::Null) => Ok(ObjectMeta::default()),
            Some(m) => ObjectMeta::deserialize(m).map_err(|e| MetaError::Metadata(e.to_string())),
        }
    }

    /// The causes of a `422 Invalid` in the name, labels and annotations.
    pub fn validate(&self, rule: NameRule) -> Vec<Cause> {
        let mut causes = Vec::new();
        if self.name.is_empty() {
            causes.push(Cause::required("metadata.name"));
        } else if let Err(why) = rule.check(&self.name) {
            causes.push(Cause::invalid("metadata.name", &self.name, why));
        }
        for (k, v) in &self.labels {
            if let Err(why) = name::qualified_name(k) {
                causes.push(Cause::invalid("metadata.labels", k, why));
            }
            if let Err(why) = name::label_value(v) {
                causes.push(Cause::invalid(format!("metadata.labels[{k:?}]"), v, why));
            }
        }
        let mut total = 0;
        for (k, v) in &self.annotations {
            if let Err(why) = name::qualified_name(&k.to_lowercase()) {
                causes.push(Cause::invalid("metadata.annotations", k, why));
            }
            total += k.len() + v.len();
        }
        if total > ANNOTATIONS_MAX {
            causes.push(Cause {
                reason: "FieldValueTooLong",
                field: "metadata.annotations".to_owned(),
                message: format!("Too long: must have at most {ANNOTATIONS_MAX} bytes"),
            });
        }
        causes
    }
}

/// The `metadata` map of an object, made if missing (or not a map).
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let map = obj.as_object_mut().expect("made an object above");
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("made an object above")
}

/// The value at a dotted path (`spec.nodeName`) as a field selector compares it:
/// strings as they are, numbers and booleans printed, anything else empty.
pub fn field_value(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for part in path.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_metadata_with_nulls() {
        let obj = json!({"metadata": {"name": "web", "creationTimestamp": null,
            "labels": {"app": "web"}, "annotations": null, "generation": 3}});
        let m = ObjectMeta::of(&obj).unwrap();
        assert_eq!(m.name, "web");
        assert_eq!(m.creation_timestamp, None);
        assert_eq!(m.labels["app"], "web");
        assert!(m.annotations.is_empty());
        assert_eq!(m.generation, 3);
        assert_eq!(ObjectMeta::of(&json!({})).unwrap(), ObjectMeta::default());
        assert!(ObjectMeta::of(&json!([])).is_err());
        assert!(ObjectMeta::of(&json!({"metadata": {"labels": {"a": 1}}})).is_err());
    }

    #[test]
    fn validation_causes() {
        let m = ObjectMeta::of(&json!({"metadata": {"name": "Bad_Name",
            "labels": {"ok": "fine", "-bad": "x", "k": "bad value"}}}))
        .unwrap();
        let causes = m.validate(NameRule::Subdomain);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            ["metadata.name", "metadata.labels", "metadata.labels[\"k\"]"]
        );
        assert_eq!(
            ObjectMeta::default().validate(NameRule::Subdomain)[0].reason,
            "FieldValueRequired"
        );
    }

    #[test]
    fn field_values_and_meta_mut() {
        let mut obj = json!({"spec": {"nodeName": "n1", "unschedulable": true}});
        assert_eq!(field_value(&obj, "spec.nodeName"), "n1");
        assert_eq!(field_value(&obj, "spec.unschedulable"), "true");
        assert_eq!(field_value(&obj, "status.phase"), "");
        meta_mut(&mut obj).insert("name".into(), "x".into());
        assert_eq!(obj["metadata"]["name"], "x");
    }
}
