//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), which
//! kubectl's typed commands send (`create namespace|configmap|secret|
//! serviceaccount|service|deployment|job`, `auth can-i`) and which it does not
//! retry as JSON. The body is `k8s\0` and a `runtime.Unknown` whose `raw` is the
//! object; it is decoded into the JSON every other request carries, through a
//! table of the messages those commands use (field numbers as in Kubernetes'
//! `generated.proto`). A field the table does not know is refused, never
//! dropped; scalars at their zero value are left out, as Go's `omitempty` does,
//! except in fields that are pointers in Go, where presence matters.

use base64::Engine;
use bosun_api::time::format_time;
use serde_json::{Map, Value};

pub(crate) const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

#[derive(Debug, Clone, Copy)]
enum Ty {
    Str,
    Bool,
    Int,
    /// `metav1.Time`: `{seconds, nanos}`.
    Time,
    /// `intstr.IntOrString`: `{type, intVal, strVal}`.
    IntOrStr,
    Msg(&'static Message),
    MapStr,
    MapBytes,
    /// Values are `resource.Quantity`: `{string}`.
    MapQuantity,
}

#[derive(Debug)]
struct Field {
    num: u64,
    name: &'static str,
    ty: Ty,
    repeated: bool,
    /// A pointer in Go: present even at its zero value.
    keep_zero: bool,
}

#[derive(Debug)]
struct Message {
    name: &'static str,
    fields: &'static [Field],
}

const fn f(num: u64, name: &'static str, ty: Ty) -> Field {
    Field {
        num,
        name,
        ty,
        repeated: false,
        keep_zero: false,
    }
}

const fn rep(num: u64, name: &'static str, ty: Ty) -> Field {
    Field {
        repeated: true,
        ..f(num, name, ty)
    }
}

const fn ptr(num: u64, name: &'static str, ty: Ty) -> Field {
    Field {
        keep_zero: true,
        ..f(num, name, ty)
    }
}

use Ty::{Bool, Int, IntOrStr, MapBytes, MapQuantity, MapStr, Msg, Str, Time};

static OWNER_REFERENCE: Message = Message {
    name: "OwnerReference",
    fields: &[
        f(1, "kind", Str),
        f(3, "name", Str),
        f(4, "uid", Str),
        f(5, "apiVersion", Str),
        ptr(6, "controller", Bool),
        ptr(7, "blockOwnerDeletion", Bool),
    ],
};

static OBJECT_META: Message = Message {
    name: "ObjectMeta",
    fields: &[
        f(1, "name", Str),
        f(2, "generateName", Str),
        f(3, "namespace", Str),
        f(4, "selfLink", Str),
        f(5, "uid", Str),
        f(6, "resourceVersion", Str),
        f(7, "generation", Int),
        f(8, "creationTimestamp", Time),
        f(9, "deletionTimestamp", Time),
        ptr(10, "deletionGracePeriodSeconds", Int),
        f(11, "labels", MapStr),
        f(12, "annotations", MapStr),
        rep(13, "ownerReferences", Msg(&OWNER_REFERENCE)),
        rep(14, "finalizers", Str),
    ],
};

static OBJECT_REFERENCE: Message = Message {
    name: "ObjectReference",
    fields: &[
        f(1, "kind", Str),
        f(2, "namespace", Str),
        f(3, "name", Str),
        f(4, "uid", Str),
        f(5, "apiVersion", Str),
        f(6, "resourceVersion", Str),
        f(7, "fieldPath", Str),
    ],
};

static LOCAL_OBJECT_REFERENCE: Message = Message {
    name: "LocalObjectReference",
    fields: &[f(1, "name", Str)],
};

static NAMESPACE_SPEC: Message = Message {
    name: "NamespaceSpec",
    fields: &[rep(1, "finalizers", Str)],
};

static NAMESPACE_STATUS: Message = Message {
    name: "NamespaceStatus",
    fields: &[f(1, "phase", Str)],
};

static NAMESPACE: Message = Message {
    name: "Namespace",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "spec", Msg(&NAMESPACE_SPEC)),
        f(3, "status", Msg(&NAMESPACE_STATUS)),
    ],
};

static CONFIG_MAP: Message = Message {
    name: "ConfigMap",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "data", MapStr),
        f(3, "binaryData", MapBytes),
        ptr(4, "immutable", Bool),
    ],
};

static SECRET: Message = Message {
    name: "Secret",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "data", MapBytes),
        f(3, "type", Str),
        f(4, "stringData", MapStr),
        ptr(5, "immutable", Bool),
    ],
};

static SERVICE_ACCOUNT: Message = Message {
    name: "ServiceAccount",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        rep(2, "secrets", Msg(&OBJECT_REFERENCE)),
        rep(3, "imagePullSecrets", Msg(&LOCAL_OBJECT_REFERENCE)),
        ptr(4, "automountServiceAccountToken", Bool),
    ],
};

static SERVICE_PORT: Message = Message {
    name: "ServicePort",
    fields: &[
        f(1, "name", Str),
        f(2, "protocol", Str),
        f(3, "port", Int),
        f(4, "targetPort", IntOrStr),
        f(5, "nodePort", Int),
        ptr(6, "appProtocol", Str),
    ],
};

static SERVICE_SPEC: Message = Message {
    name: "ServiceSpec",
    fields: &[
        rep(1, "ports", Msg(&SERVICE_PORT)),
        f(2, "selector", MapStr),
        f(3, "clusterIP", Str),
        f(4, "type", Str),
        rep(5, "externalIPs", Str),
        f(7, "sessionAffinity", Str),
        f(8, "loadBalancerIP", Str),
        rep(9, "loadBalancerSourceRanges", Str),
        f(10, "externalName", Str),
        f(11, "externalTrafficPolicy", Str),
        f(12, "healthCheckNodePort", Int),
        f(13, "publishNotReadyAddresses", Bool),
        ptr(17, "ipFamilyPolicy", Str),
        rep(18, "clusterIPs", Str),
        rep(19, "ipFamilies", Str),
        ptr(20, "allocateLoadBalancerNodePorts", Bool),
        ptr(21, "loadBalancerClass", Str),
        ptr(22, "internalTrafficPolicy", Str),
        ptr(23, "trafficDistribution", Str),
    ],
};

static LOAD_BALANCER_STATUS: Message = Message {
    name: "LoadBalancerStatus",
    fields: &[],
};

static SERVICE_STATUS: Message = Message {
    name: "ServiceStatus",
    fields: &[f(1, "loadBalancer", Msg(&LOAD_BALANCER_STATUS))],
};

static SERVICE: Message = Message {
    name: "Service",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "spec", Msg(&SERVICE_SPEC)),
        f(3, "status", Msg(&SERVICE_STATUS)),
    ],
};

static REQUIREMENT: Message = Message {
    name: "LabelSelectorRequirement",
    fields: &[
        f(1, "key", Str),
        f(2, "operator", Str),
        rep(3, "values", Str),
    ],
};

static LABEL_SELECTOR: Message = Message {
    name: "LabelSelector",
    fields: &[
        f(1, "matchLabels", MapStr),
        rep(2, "matchExpressions", Msg(&REQUIREMENT)),
    ],
};

static CONTAINER_PORT: Message = Message {
    name: "ContainerPort",
    fields: &[
        f(1, "name", Str),
        f(2, "hostPort", Int),
        f(3, "containerPort", Int),
        f(4, "protocol", Str),
        f(5, "hostIP", Str),
    ],
};

static ENV_VAR: Message = Message {
    name: "EnvVar",
    fields: &[f(1, "name", Str), f(2, "value", Str)],
};

static RESOURCES: Message = Message {
    name: "ResourceRequirements",
    fields: &[f(1, "limits", MapQuantity), f(2, "requests", MapQuantity)],
};

static VOLUME_MOUNT: Message = Message {
    name: "VolumeMount",
    fields: &[
        f(1, "name", Str),
        f(2, "readOnly", Bool),
        f(3, "mountPath", Str),
        f(4, "subPath", Str),
        ptr(5, "mountPropagation", Str),
        f(6, "subPathExpr", Str),
    ],
};

static CONTAINER: Message = Message {
    name: "Container",
    fields: &[
        f(1, "name", Str),
        f(2, "image", Str),
        rep(3, "command", Str),
        rep(4, "args", Str),
        f(5, "workingDir", Str),
        rep(6, "ports", Msg(&CONTAINER_PORT)),
        rep(7, "env", Msg(&ENV_VAR)),
        f(8, "resources", Msg(&RESOURCES)),
        rep(9, "volumeMounts", Msg(&VOLUME_MOUNT)),
        f(13, "terminationMessagePath", Str),
        f(14, "imagePullPolicy", Str),
        f(16, "stdin", Bool),
        f(17, "stdinOnce", Bool),
        f(18, "tty", Bool),
        f(20, "terminationMessagePolicy", Str),
        ptr(24, "restartPolicy", Str),
    ],
};

static TOLERATION: Message = Message {
    name: "Toleration",
    fields: &[
        f(1, "key", Str),
        f(2, "operator", Str),
        f(3, "value", Str),
        f(4, "effect", Str),
        ptr(5, "tolerationSeconds", Int),
    ],
};

static POD_SPEC: Message = Message {
    name: "PodSpec",
    fields: &[
        rep(2, "containers", Msg(&CONTAINER)),
        f(3, "restartPolicy", Str),
        ptr(4, "terminationGracePeriodSeconds", Int),
        ptr(5, "activeDeadlineSeconds", Int),
        f(6, "dnsPolicy", Str),
        f(7, "nodeSelector", MapStr),
        f(8, "serviceAccountName", Str),
        f(9, "serviceAccount", Str),
        f(10, "nodeName", Str),
        f(11, "hostNetwork", Bool),
        f(12, "hostPID", Bool),
        f(13, "hostIPC", Bool),
        rep(15, "imagePullSecrets", Msg(&LOCAL_OBJECT_REFERENCE)),
        f(16, "hostname", Str),
        f(17, "subdomain", Str),
        f(19, "schedulerName", Str),
        rep(20, "initContainers", Msg(&CONTAINER)),
        ptr(21, "automountServiceAccountToken", Bool),
        rep(22, "tolerations", Msg(&TOLERATION)),
        f(24, "priorityClassName", Str),
        ptr(25, "priority", Int),
        ptr(27, "shareProcessNamespace", Bool),
        ptr(29, "runtimeClassName", Str),
        ptr(30, "enableServiceLinks", Bool),
        ptr(31, "preemptionPolicy", Str),
        ptr(35, "setHostnameAsFQDN", Bool),
        ptr(37, "hostUsers", Bool),
    ],
};

static POD_TEMPLATE_SPEC: Message = Message {
    name: "PodTemplateSpec",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "spec", Msg(&POD_SPEC)),
    ],
};

static ROLLING_UPDATE: Message = Message {
    name: "RollingUpdateDeployment",
    fields: &[f(1, "maxUnavailable", IntOrStr), f(2, "maxSurge", IntOrStr)],
};

static DEPLOYMENT_STRATEGY: Message = Message {
    name: "DeploymentStrategy",
    fields: &[
        f(1, "type", Str),
        f(2, "rollingUpdate", Msg(&ROLLING_UPDATE)),
    ],
};

static DEPLOYMENT_SPEC: Message = Message {
    name: "DeploymentSpec",
    fields: &[
        ptr(1, "replicas", Int),
        f(2, "selector", Msg(&LABEL_SELECTOR)),
        f(3, "template", Msg(&POD_TEMPLATE_SPEC)),
        f(4, "strategy", Msg(&DEPLOYMENT_STRATEGY)),
        f(5, "minReadySeconds", Int),
        ptr(6, "revisionHistoryLimit", Int),
        f(7, "paused", Bool),
        ptr(9, "progressDeadlineSeconds", Int),
    ],
};

/// What a client may send as a workload's status on create: counters, all zero.
static COUNTERS: Message = Message {
    name: "Status",
    fields: &[
        f(1, "observedGeneration", Int),
        f(2, "replicas", Int),
        f(3, "updatedReplicas", Int),
        f(4, "availableReplicas", Int),
        f(5, "unavailableReplicas", Int),
        f(7, "readyReplicas", Int),
    ],
};

static DEPLOYMENT: Message = Message {
    name: "Deployment",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "spec", Msg(&DEPLOYMENT_SPEC)),
        f(3, "status", Msg(&COUNTERS)),
    ],
};

static JOB_SPEC: Message = Message {
    name: "JobSpec",
    fields: &[
        ptr(1, "parallelism", Int),
        ptr(2, "completions", Int),
        ptr(3, "activeDeadlineSeconds", Int),
        f(4, "selector", Msg(&LABEL_SELECTOR)),
        ptr(5, "manualSelector", Bool),
        f(6, "template", Msg(&POD_TEMPLATE_SPEC)),
        ptr(7, "backoffLimit", Int),
        ptr(8, "ttlSecondsAfterFinished", Int),
        ptr(9, "completionMode", Str),
        ptr(10, "suspend", Bool),
    ],
};

static JOB_STATUS: Message = Message {
    name: "JobStatus",
    fields: &[
        f(4, "active", Int),
        f(5, "succeeded", Int),
        f(6, "failed", Int),
        f(7, "completedIndexes", Str),
    ],
};

static JOB: Message = Message {
    name: "Job",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "spec", Msg(&JOB_SPEC)),
        f(3, "status", Msg(&JOB_STATUS)),
    ],
};

static RESOURCE_ATTRIBUTES: Message = Message {
    name: "ResourceAttributes",
    fields: &[
        f(1, "namespace", Str),
        f(2, "verb", Str),
        f(3, "group", Str),
        f(4, "version", Str),
        f(5, "resource", Str),
        f(6, "subresource", Str),
        f(7, "name", Str),
    ],
};

static NON_RESOURCE_ATTRIBUTES: Message = Message {
    name: "NonResourceAttributes",
    fields: &[f(1, "path", Str), f(2, "verb", Str)],
};

static SSAR_SPEC: Message = Message {
    name: "SelfSubjectAccessReviewSpec",
    fields: &[
        f(1, "resourceAttributes", Msg(&RESOURCE_ATTRIBUTES)),
        f(2, "nonResourceAttributes", Msg(&NON_RESOURCE_ATTRIBUTES)),
    ],
};

static SSAR_STATUS: Message = Message {
    name: "SubjectAccessReviewStatus",
    fields: &[
        f(1, "allowed", Bool),
        f(2, "reason", Str),
        f(3, "evaluationError", Str),
        f(4, "denied", Bool),
    ],
};

static SSAR: Message = Message {
    name: "SelfSubjectAccessReview",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "spec", Msg(&SSAR_SPEC)),
        f(3, "status", Msg(&SSAR_STATUS)),
    ],
};

static BOUND_OBJECT_REFERENCE: Message = Message {
    name: "BoundObjectReference",
    fields: &[
        f(1, "kind", Str),
        f(2, "apiVersion", Str),
        f(3, "name", Str),
        f(4, "uid", Str),
    ],
};

static TOKEN_REQUEST_SPEC: Message = Message {
    name: "TokenRequestSpec",
    fields: &[
        rep(1, "audiences", Str),
        f(3, "boundObjectRef", Msg(&BOUND_OBJECT_REFERENCE)),
        ptr(4, "expirationSeconds", Int),
    ],
};

static TOKEN_REQUEST_STATUS: Message = Message {
    name: "TokenRequestStatus",
    fields: &[f(1, "token", Str), f(2, "expirationTimestamp", Time)],
};

static TOKEN_REQUEST: Message = Message {
    name: "TokenRequest",
    fields: &[
        f(1, "metadata", Msg(&OBJECT_META)),
        f(2, "spec", Msg(&TOKEN_REQUEST_SPEC)),
        f(3, "status", Msg(&TOKEN_REQUEST_STATUS)),
    ],
};

/// The message of an object kind, by `apiVersion` and `kind`.
fn message_of(api_version: &str, kind: &str) -> Option<&'static Message> {
    Some(match (api_version, kind) {
        ("v1", "Namespace") => &NAMESPACE,
        ("v1", "ConfigMap") => &CONFIG_MAP,
        ("v1", "Secret") => &SECRET,
        ("v1", "ServiceAccount") => &SERVICE_ACCOUNT,
        ("v1", "Service") => &SERVICE,
        ("apps/v1", "Deployment") => &DEPLOYMENT,
        ("batch/v1", "Job") => &JOB,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => &SSAR,
        ("authentication.k8s.io/v1", "TokenRequest") => &TOKEN_REQUEST,
        _ => return None,
    })
}

/// A protobuf reader over one message's bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".to_owned())
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or("truncated field")?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    /// The next field: its number, and its value (varint or bytes).
    fn field(&mut self) -> Result<(u64, Wire<'a>), String> {
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            2 => Wire::Bytes(self.bytes()?),
            other => return Err(format!("unsupported wire type {other}")),
        };
        Ok((key >> 3, value))
    }
}

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn utf8(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "a string is not UTF-8".to_owned())
}

/// A map entry: key (1) and value (2).
fn entry(b: &[u8]) -> Result<(String, &[u8]), String> {
    let mut r = Reader::new(b);
    let (mut key, mut value) = (String::new(), &b[..0]);
    while !r.done() {
        match r.field()? {
            (1, Wire::Bytes(k)) => key = utf8(k)?,
            (2, Wire::Bytes(v)) => value = v,
            _ => return Err("malformed map entry".to_owned()),
        }
    }
    Ok((key, value))
}

/// The string of a `resource.Quantity`.
fn quantity(b: &[u8]) -> Result<String, String> {
    let mut r = Reader::new(b);
    let mut s = String::new();
    while !r.done() {
        match r.field()? {
            (1, Wire::Bytes(v)) => s = utf8(v)?,
            _ => return Err("malformed Quantity".to_owned()),
        }
    }
    Ok(s)
}

/// Seconds of the year 1 (Go's zero `time.Time`), and before.
const ZERO_TIME: i64 = -62_135_596_800;

fn decode_value(ty: Ty, wire: Wire<'_>, field: &str) -> Result<Option<Value>, String> {
    let wrong = || format!("{field}: unexpected wire type");
    Ok(Some(match (ty, wire) {
        (Str, Wire::Bytes(b)) => Value::String(utf8(b)?),
        (Bool, Wire::Varint(v)) => Value::Bool(v != 0),
        // int32 and int64 alike: negative numbers are sign-extended to 64 bits.
        (Int, Wire::Varint(v)) => Value::from(v as i64),
        // Go writes its zero time as an empty message: JSON's null, left out.
        (Time, Wire::Bytes([])) => return Ok(None),
        (Time, Wire::Bytes(b)) => {
            let mut r = Reader::new(b);
            let mut seconds = 0i64;
            while !r.done() {
                match r.field()? {
                    (1, Wire::Varint(s)) => seconds = s as i64,
                    (2, Wire::Varint(_)) => {}
                    _ => return Err(format!("{field}: malformed Time")),
                }
            }
            if seconds <= ZERO_TIME {
                return Ok(None);
            }
            Value::String(format_time(seconds))
        }
        (IntOrStr, Wire::Bytes(b)) => {
            let mut r = Reader::new(b);
            let (mut is_str, mut int, mut s) = (false, 0i64, String::new());
            while !r.done() {
                match r.field()? {
                    (1, Wire::Varint(t)) => is_str = t == 1,
                    (2, Wire::Varint(v)) => int = v as i64,
                    (3, Wire::Bytes(v)) => s = utf8(v)?,
                    _ => return Err(format!("{field}: malformed IntOrString")),
                }
            }
            if is_str {
                Value::String(s)
            } else {
                Value::from(int)
            }
        }
        (Msg(m), Wire::Bytes(b)) => Value::Object(decode_message(m, b)?),
        _ => return Err(wrong()),
    }))
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_i64() == Some(0),
        _ => false,
    }
}

fn decode_message(m: &Message, buf: &[u8]) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    let mut r = Reader::new(buf);
    while !r.done() {
        let (num, wire) = r.field()?;
        let Some(f) = m.fields.iter().find(|f| f.num == num) else {
            return Err(format!(
                "{}: field {num} is not supported in protobuf bodies yet (send JSON)",
                m.name
            ));
        };
        let path = format!("{}.{}", m.name, f.name);
        match f.ty {
            MapStr | MapBytes | MapQuantity => {
                let Wire::Bytes(b) = wire else {
                    return Err(format!("{path}: unexpected wire type"));
                };
                let (k, v) = entry(b)?;
                let v = match f.ty {
                    MapStr => Value::String(utf8(v)?),
                    MapBytes => Value::String(base64::engine::general_purpose::STANDARD.encode(v)),
                    _ => Value::String(quantity(v)?),
                };
                let map = out
                    .entry(f.name)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = map {
                    map.insert(k, v);
                }
            }
            _ => {
                let Some(v) = decode_value(f.ty, wire, &path)? else {
                    continue;
                };
                if f.repeated {
                    let list = out.entry(f.name).or_insert_with(|| Value::Array(vec![]));
                    if let Value::Array(list) = list {
                        list.push(v);
                    }
                } else if f.keep_zero || !is_zero(&v) {
                    out.insert(f.name.to_owned(), v);
                }
            }
        }
    }
    Ok(out)
}

/// Why a protobuf body was not decoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ProtoError {
    /// Not valid protobuf (400).
    Malformed(String),
    /// Valid, but a kind or field the table does not have (415).
    Unsupported(String),
}

/// Decodes a protobuf request body into the object's JSON.
pub(crate) fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    decode_inner(body).map_err(|e| {
        if e.contains("not supported") {
            ProtoError::Unsupported(e)
        } else {
            ProtoError::Malformed(e)
        }
    })
}

fn decode_inner(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("a protobuf body must start with the k8s\\0 envelope")?;
    let mut r = Reader::new(rest);
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &rest[..0]);
    while !r.done() {
        match r.field()? {
            (1, Wire::Bytes(tm)) => {
                let mut t = Reader::new(tm);
                while !t.done() {
                    match t.field()? {
                        (1, Wire::Bytes(v)) => api_version = utf8(v)?,
                        (2, Wire::Bytes(v)) => kind = utf8(v)?,
                        _ => return Err("malformed TypeMeta".to_owned()),
                    }
                }
            }
            (2, Wire::Bytes(b)) => raw = b,
            (3, Wire::Bytes([])) => {}
            (3, Wire::Bytes(_)) => {
                return Err("compressed protobuf bodies are not supported".to_owned());
            }
            (4, Wire::Bytes(_)) => {}
            _ => return Err("malformed runtime.Unknown envelope".to_owned()),
        }
    }
    let Some(message) = message_of(&api_version, &kind) else {
        return Err(format!(
            "protobuf bodies of {kind} ({api_version}) are not supported yet (send JSON)"
        ));
    };
    let mut obj = decode_message(message, raw)?;
    obj.insert("apiVersion".to_owned(), Value::String(api_version));
    obj.insert("kind".to_owned(), Value::String(kind));
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn bytes_field(num: u64, b: &[u8], out: &mut Vec<u8>) {
        varint(num << 3 | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }

    fn varint_field(num: u64, v: u64, out: &mut Vec<u8>) {
        varint(num << 3, out);
        varint(v, out);
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut tm = vec![];
        bytes_field(1, api_version.as_bytes(), &mut tm);
        bytes_field(2, kind.as_bytes(), &mut tm);
        let mut unknown = vec![];
        bytes_field(1, &tm, &mut unknown);
        bytes_field(2, raw, &mut unknown);
        bytes_field(3, b"", &mut unknown);
        bytes_field(4, b"", &mut unknown);
        [MAGIC, &unknown].concat()
    }

    #[test]
    fn a_configmap() {
        let mut meta = vec![];
        bytes_field(1, b"web", &mut meta);
        bytes_field(2, b"", &mut meta);
        bytes_field(8, b"", &mut meta);
        let mut label = vec![];
        bytes_field(1, b"app", &mut label);
        bytes_field(2, b"web", &mut label);
        bytes_field(11, &label, &mut meta);
        let mut cm = vec![];
        bytes_field(1, &meta, &mut cm);
        let mut data = vec![];
        bytes_field(1, b"k", &mut data);
        bytes_field(2, b"v", &mut data);
        bytes_field(2, &data, &mut cm);
        let mut bin = vec![];
        bytes_field(1, b"b", &mut bin);
        bytes_field(2, &[0xff, 0], &mut bin);
        bytes_field(3, &bin, &mut cm);
        varint_field(4, 0, &mut cm);
        let obj = decode(&envelope("v1", "ConfigMap", &cm)).unwrap();
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "web", "labels": {"app": "web"}},
                   "data": {"k": "v"}, "binaryData": {"b": "/wA="}, "immutable": false})
        );
    }

    #[test]
    fn refusals() {
        let mut cm = vec![];
        bytes_field(99, b"x", &mut cm);
        let unsupported = |b: &[u8]| matches!(decode(b), Err(ProtoError::Unsupported(_)));
        let malformed = |b: &[u8]| matches!(decode(b), Err(ProtoError::Malformed(_)));
        let Err(ProtoError::Unsupported(err)) = decode(&envelope("v1", "ConfigMap", &cm)) else {
            panic!("an unknown field is refused");
        };
        assert!(err.contains("field 99"), "{err}");
        assert!(unsupported(&envelope("v1", "Pod", b"")));
        assert!(malformed(b"{\"json\": true}"));
        assert!(malformed(&[MAGIC, &[0x0a, 0x05]].concat()), "truncated");
        assert!(malformed(&[MAGIC, &[0xff; 11]].concat()), "endless varint");
    }

    #[test]
    fn int_or_string_and_negative_ints() {
        let mut port = vec![];
        varint_field(3, 80, &mut port);
        let mut target = vec![];
        varint_field(1, 1, &mut target);
        bytes_field(3, b"http", &mut target);
        bytes_field(4, &target, &mut port);
        varint_field(5, -1i64 as u64, &mut port);
        let v = decode_message(&SERVICE_PORT, &port).unwrap();
        assert_eq!(
            Value::Object(v),
            json!({"port": 80, "targetPort": "http", "nodePort": -1})
        );
    }
}
