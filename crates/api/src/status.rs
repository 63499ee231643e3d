//! `metav1.Status`: the body of every error the API server answers, in the
//! words Kubernetes uses, so kubectl and client libraries recognise the reason.

use serde_json::{Value, json};

use crate::resource::Resource;

/// Why a request failed, with the HTTP code that goes with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    AlreadyExists,
    Conflict,
    /// 410: the resourceVersion asked for is compacted away.
    Expired,
    Invalid,
    RequestEntityTooLarge,
    MethodNotAllowed,
    NotAcceptable,
    UnsupportedMediaType,
    TooManyRequests,
    InternalError,
    ServiceUnavailable,
    Timeout,
}

impl Reason {
    pub fn code(self) -> u16 {
        match self {
            Reason::BadRequest => 400,
            Reason::Unauthorized => 401,
            Reason::Forbidden => 403,
            Reason::NotFound => 404,
            Reason::MethodNotAllowed => 405,
            Reason::NotAcceptable => 406,
            Reason::AlreadyExists | Reason::Conflict => 409,
            Reason::Expired => 410,
            Reason::RequestEntityTooLarge => 413,
            Reason::UnsupportedMediaType => 415,
            Reason::TooManyRequests => 429,
            Reason::Invalid => 422,
            Reason::InternalError => 500,
            Reason::ServiceUnavailable => 503,
            Reason::Timeout => 504,
        }
    }

    /// The `reason` string of the Status.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadRequest => "BadRequest",
            Reason::Unauthorized => "Unauthorized",
            Reason::Forbidden => "Forbidden",
            Reason::NotFound => "NotFound",
            Reason::AlreadyExists => "AlreadyExists",
            Reason::Conflict => "Conflict",
            Reason::Expired => "Expired",
            Reason::Invalid => "Invalid",
            Reason::RequestEntityTooLarge => "RequestEntityTooLarge",
            Reason::MethodNotAllowed => "MethodNotAllowed",
            Reason::NotAcceptable => "NotAcceptable",
            Reason::UnsupportedMediaType => "UnsupportedMediaType",
            Reason::TooManyRequests => "TooManyRequests",
            Reason::InternalError => "InternalError",
            Reason::ServiceUnavailable => "ServiceUnavailable",
            Reason::Timeout => "Timeout",
        }
    }
}

/// One field at fault in an `Invalid` Status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, ...
    pub reason: &'static str,
    /// `metadata.name`.
    pub field: String,
    /// What is wrong, without the field name.
    pub message: String,
}

impl Cause {
    pub fn invalid(field: impl Into<String>, value: &str, why: impl AsRef<str>) -> Cause {
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {value:?}: {}", why.as_ref()),
        }
    }

    pub fn required(field: impl Into<String>) -> Cause {
        Cause {
            reason: "FieldValueRequired",
            field: field.into(),
            message: "Required value".to_owned(),
        }
    }

    /// A field whose value may not change after creation.
    pub fn immutable(field: impl Into<String>) -> Cause {
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: "field is immutable".to_owned(),
        }
    }
}

/// A failure Status, built by the constructors below. Small (the details are
/// boxed): it is the error of every handler's `Result`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub reason: Reason,
    pub message: String,
    details: Option<Box<Details>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Details {
    name: Option<String>,
    group: Option<String>,
    kind: Option<String>,
    causes: Vec<Cause>,
}

impl Status {
    /// A Status with only a reason and a message.
    pub fn new(reason: Reason, message: impl Into<String>) -> Status {
        Status {
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn about(mut self, r: &Resource, name: &str) -> Status {
        self.details = Some(Box::new(Details {
            name: Some(name.to_owned()).filter(|n| !n.is_empty()),
            group: Some(r.group.to_owned()).filter(|g| !g.is_empty()),
            kind: Some(r.plural.to_owned()),
            causes: Vec::new(),
        }));
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Status {
        Status::new(Reason::BadRequest, message)
    }

    pub fn unauthorized() -> Status {
        Status::new(Reason::Unauthorized, "Unauthorized")
    }

    pub fn not_found(r: &Resource, name: &str) -> Status {
        Status::new(
            Reason::NotFound,
            format!("{} {name:?} not found", r.qualified_plural()),
        )
        .about(r, name)
    }

    /// A URL that names nothing the server serves.
    pub fn no_route() -> Status {
        Status::new(
            Reason::NotFound,
            "the server could not find the requested resource",
        )
    }

    pub fn already_exists(r: &Resource, name: &str) -> Status {
        Status::new(
            Reason::AlreadyExists,
            format!("{} {name:?} already exists", r.qualified_plural()),
        )
        .about(r, name)
    }

    /// A write that lost an optimistic-concurrency race.
    pub fn conflict(r: &Resource, name: &str, why: &str) -> Status {
        Status::new(
            Reason::Conflict,
            format!(
                "Operation cannot be fulfilled on {} {name:?}: {why}",
                r.qualified_plural()
            ),
        )
        .about(r, name)
    }

    /// A conflict with a cause per field (server-side apply's field managers).
    pub fn conflict_with_causes(
        r: &Resource,
        name: &str,
        message: String,
        causes: Vec<Cause>,
    ) -> Status {
        let mut s = Status::new(Reason::Conflict, message).about(r, name);
        if let Some(d) = s.details.as_mut() {
            d.causes = causes;
        }
        s
    }

    /// A request that cannot be carried out as asked (a JSON patch whose
    /// `test` fails, or whose path is missing): 422, with the reason as its
    /// only cause, which is where kubectl looks for it.
    pub fn unprocessable(message: impl Into<String>) -> Status {
        let message = message.into();
        let mut s = Status::new(Reason::Invalid, message.clone());
        s.details = Some(Box::new(Details {
            causes: vec![Cause {
                reason: "UnexpectedServerResponse",
                field: String::new(),
                message,
            }],
            ..Details::default()
        }));
        s
    }

    /// The message Kubernetes gives for a stale resourceVersion.
    pub fn modified(r: &Resource, name: &str) -> Status {
        Status::conflict(
            r,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn invalid(r: &Resource, name: &str, causes: Vec<Cause>) -> Status {
        let summary = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect::<Vec<_>>();
        let summary = match summary.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let mut s = Status::new(
            Reason::Invalid,
            format!("{} {name:?} is invalid: {summary}", r.kind),
        )
        .about(r, name);
        let d = s.details.get_or_insert_default();
        d.kind = Some(r.kind.to_owned());
        d.causes = causes;
        s
    }

    /// The history a list, continue token or watch needs is compacted away.
    pub fn expired(message: impl Into<String>) -> Status {
        Status::new(Reason::Expired, message)
    }

    pub fn internal(message: impl Into<String>) -> Status {
        Status::new(
            Reason::InternalError,
            format!("Internal error occurred: {}", message.into()),
        )
    }

    pub fn code(&self) -> u16 {
        self.reason.code()
    }

    pub fn causes(&self) -> &[Cause] {
        self.details.as_ref().map_or(&[], |d| &d.causes)
    }

    /// The `metav1.Status` JSON.
    pub fn to_json(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason.as_str(),
            "code": self.code(),
        });
        let Some(d) = &self.details else {
            return status;
        };
        let mut details = serde_json::Map::new();
        if let Some(n) = &d.name {
            details.insert("name".into(), n.clone().into());
        }
        if let Some(g) = &d.group {
            details.insert("group".into(), g.clone().into());
        }
        if let Some(k) = &d.kind {
            details.insert("kind".into(), k.clone().into());
        }
        if !d.causes.is_empty() {
            let causes = d
                .causes
                .iter()
                .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                .collect();
            details.insert("causes".into(), Value::Array(causes));
        }
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A `Success` Status, the answer to deletes of collections and the like.
pub fn success(details: Option<(&Resource, &str)>) -> Value {
    let mut v = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
    if let Some((r, name)) = details {
        v["details"] = json!({"name": name, "group": r.group, "kind": r.plural});
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::find;

    #[test]
    fn shapes() {
        let pods = find("", "v1", "pods").unwrap();
        let s = Status::not_found(pods, "web").to_json();
        assert_eq!(s["code"], 404);
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["message"], "pods \"web\" not found");
        assert_eq!(s["details"]["kind"], "pods");
        assert!(s["details"].get("group").is_none());
        let d = find("apps", "v1", "deployments").unwrap();
        let s = Status::modified(d, "web").to_json();
        assert_eq!(s["code"], 409);
        assert!(
            s["message"]
                .as_str()
                .unwrap()
                .contains("deployments.apps \"web\"")
        );
        let s =
            Status::invalid(pods, "X", vec![Cause::invalid("metadata.name", "X", "bad")]).to_json();
        assert_eq!(s["code"], 422);
        assert_eq!(
            s["message"],
            "Pod \"X\" is invalid: metadata.name: Invalid value: \"X\": bad"
        );
        assert_eq!(s["details"]["causes"][0]["field"], "metadata.name");
        assert_eq!(Status::unauthorized().to_json()["code"], 401);
        assert_eq!(Status::expired("too old").to_json()["reason"], "Expired");
    }
}
