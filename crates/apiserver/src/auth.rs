//! Who is asking, and may they: bearer tokens (the admin token, plus a static
//! token file in kube-apiserver's CSV format), then authorization: the
//! `system:masters` group may do anything, nodes (`system:node:<name>` in
//! `system:nodes`) go through the node authorizer, everyone else through RBAC
//! (`rbac.authorization.k8s.io/v1` Roles, ClusterRoles and their bindings,
//! read from the store on each request).

use std::path::Path;

use bosun_api::resource::{self, Resource};
use bosun_api::{Reason, Status};
use serde_json::Value;

use crate::objects::{ApiResult, Filter, decode, key, read_list, store_error};
use crate::route::Target;
use crate::{ServerError, State};

pub(crate) const MASTERS: &str = "system:masters";
const NODES: &str = "system:nodes";
const AUTHENTICATED: &str = "system:authenticated";

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub(crate) name: String,
    pub(crate) groups: Vec<String>,
}

impl User {
    pub(crate) fn admin() -> User {
        User {
            name: "admin".to_owned(),
            groups: vec![MASTERS.to_owned(), AUTHENTICATED.to_owned()],
        }
    }

    pub(crate) fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == MASTERS)
    }
}

/// The user a verified client certificate names: CN is the user, each O a
/// group (as Kubernetes reads them).
pub(crate) fn certificate_user(der: &[u8]) -> Option<User> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?;
    if name.is_empty() {
        return None;
    }
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_owned)
        .collect();
    groups.push(AUTHENTICATED.to_owned());
    Some(User {
        name: name.to_owned(),
        groups,
    })
}

/// Tokens and their users.
#[derive(Debug, Default)]
pub(crate) struct Tokens(Vec<(String, User)>);

/// Compares in time independent of where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Tokens {
    pub(crate) fn new(admin: &str) -> Tokens {
        Tokens(vec![(admin.to_owned(), User::admin())])
    }

    /// Adds the lines of a kube-apiserver token file: `token,user,uid[,"group1,group2"]`.
    pub(crate) fn load_file(&mut self, path: &Path) -> Result<(), ServerError> {
        let bad = |line: usize, why: &str| ServerError::Pki {
            what: "token file",
            reason: format!("{}:{line}: {why}", path.display()),
        };
        let text = std::fs::read_to_string(path).map_err(|source| ServerError::Io {
            path: path.to_owned(),
            source,
        })?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (head, groups) = match line.split_once(",\"") {
                Some((h, g)) => (
                    h,
                    g.strip_suffix('"')
                        .ok_or_else(|| bad(i + 1, "unterminated groups"))?,
                ),
                None => (line, ""),
            };
            let fields: Vec<&str> = head.split(',').collect();
            let [token, name, _uid, rest @ ..] = fields.as_slice() else {
                return Err(bad(i + 1, "want token,user,uid[,\"groups\"]"));
            };
            if token.is_empty() || name.is_empty() {
                return Err(bad(i + 1, "empty token or user"));
            }
            let mut groups: Vec<String> = groups
                .split(',')
                .chain(rest.iter().copied())
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect();
            groups.push(AUTHENTICATED.to_owned());
            self.0.push((
                (*token).to_owned(),
                User {
                    name: (*name).to_owned(),
                    groups,
                },
            ));
        }
        Ok(())
    }

    /// A token for the components running in this process (controllers):
    /// random, never written down, allowed everything.
    pub(crate) fn add_component(&mut self, name: &str) -> Result<String, ServerError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| ServerError::Pki {
            what: "component token",
            reason: e.to_string(),
        })?;
        let token = crate::pki::hex(&bytes);
        self.0.push((
            token.clone(),
            User {
                name: name.to_owned(),
                groups: vec![MASTERS.to_owned(), AUTHENTICATED.to_owned()],
            },
        ));
        Ok(token)
    }

    pub(crate) fn user(&self, token: &str) -> Option<&User> {
        // Every entry is compared, so the time says nothing about which one matched.
        let mut found = None;
        for (t, u) in &self.0 {
            if same_secret(t.as_bytes(), token.as_bytes()) && found.is_none() {
                found = Some(u);
            }
        }
        found
    }
}

/// What a request does, as RBAC rules name it.
#[derive(Debug, Clone)]
pub(crate) struct Attributes<'a> {
    pub(crate) verb: &'static str,
    pub(crate) res: &'static Resource,
    pub(crate) subresource: Option<&'a str>,
    pub(crate) namespace: Option<&'a str>,
    pub(crate) name: Option<&'a str>,
    /// For a create: the name in the body (RBAC does not look at it; the
    /// node authorizer does).
    pub(crate) created: Option<&'a str>,
}

impl Attributes<'_> {
    fn resource(&self) -> String {
        match self.subresource {
            Some(s) => format!("{}/{s}", self.res.plural),
            None => self.res.plural.to_owned(),
        }
    }

    /// The 403 Kubernetes gives, naming only what was asked.
    pub(crate) fn forbidden(&self, user: &User) -> Status {
        let what = match self.name {
            Some(n) => format!("{} {n:?}", self.res.qualified_plural()),
            None => self.res.qualified_plural(),
        };
        let scope = match self.namespace {
            Some(ns) => format!(" in the namespace {ns:?}"),
            None => " at the cluster scope".to_owned(),
        };
        Status::new(
            Reason::Forbidden,
            format!(
                "{what} is forbidden: User {:?} cannot {} resource {:?} in API group {:?}{scope}",
                user.name,
                self.verb,
                self.resource(),
                self.res.group
            ),
        )
    }
}

fn has(list: &Value, want: &str) -> bool {
    list.as_array()
        .is_some_and(|l| l.iter().any(|v| v == "*" || v == want))
}

fn rule_allows(rule: &Value, a: &Attributes<'_>) -> bool {
    let names = rule["resourceNames"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    has(&rule["verbs"], a.verb)
        && has(&rule["apiGroups"], a.res.group)
        && has(&rule["resources"], &a.resource())
        && (names.is_empty() || a.name.is_some_and(|n| names.iter().any(|x| x == n)))
}

fn subject_matches(subject: &Value, user: &User) -> bool {
    let name = subject["name"].as_str().unwrap_or_default();
    match subject["kind"].as_str() {
        Some("User") => name == user.name,
        Some("Group") => user.groups.iter().any(|g| g == name),
        Some("ServiceAccount") => {
            let ns = subject["namespace"].as_str().unwrap_or_default();
            user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn rbac(kind: &str) -> &'static Resource {
    resource::find("rbac.authorization.k8s.io", "v1", kind).expect("in the table")
}

async fn list(
    state: &State,
    res: &'static Resource,
    namespace: Option<&str>,
) -> ApiResult<Vec<Value>> {
    let t = Target {
        res,
        namespace: namespace.map(str::to_owned),
        name: None,
        sub: None,
    };
    Ok(read_list(state, &t, &Filter::default()).await?.items)
}

async fn role_rules(
    state: &State,
    role_ref: &Value,
    namespace: Option<&str>,
) -> ApiResult<Vec<Value>> {
    let name = role_ref["name"].as_str().unwrap_or_default();
    let (res, ns) = match role_ref["kind"].as_str() {
        Some("ClusterRole") => (rbac("clusterroles"), None),
        Some("Role") => (rbac("roles"), namespace),
        _ => return Ok(Vec::new()),
    };
    if name.is_empty() {
        return Ok(Vec::new());
    }
    let kv = state
        .store
        .get(&key(res, ns, name), None)
        .await
        .map_err(|e| store_error(e, res, name))?;
    Ok(match kv {
        Some(kv) => decode(&kv)?["rules"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        None => Vec::new(),
    })
}

/// Whether RBAC lets `user` do `a`.
async fn rbac_allows(state: &State, user: &User, a: &Attributes<'_>) -> ApiResult<bool> {
    let mut bindings: Vec<(Value, Option<&str>)> = list(state, rbac("clusterrolebindings"), None)
        .await?
        .into_iter()
        .map(|b| (b, None))
        .collect();
    if let Some(ns) = a.namespace {
        bindings.extend(
            list(state, rbac("rolebindings"), Some(ns))
                .await?
                .into_iter()
                .map(|b| (b, Some(ns))),
        );
    }
    for (binding, ns) in bindings {
        let subjects = binding["subjects"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        if !subjects.iter().any(|s| subject_matches(s, user)) {
            continue;
        }
        let rules = role_rules(state, &binding["roleRef"], ns).await?;
        if rules.iter().any(|r| rule_allows(r, a)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The node authorizer: a node may read what it needs to run pods, write its
/// own Node, Lease and the status of pods bound to it, and post events;
/// nothing else (in particular, no secrets).
async fn node_allows(state: &State, node: &str, a: &Attributes<'_>) -> ApiResult<bool> {
    let read = matches!(a.verb, "get" | "list" | "watch");
    let write = matches!(a.verb, "create" | "update" | "patch");
    Ok(match (a.res.group, a.res.plural, a.subresource) {
        ("", "nodes", None | Some("status")) => {
            read || ((write || a.verb == "delete") && a.name.or(a.created) == Some(node))
        }
        ("", "pods", None) => read,
        ("", "pods", Some("status")) if write => match a.name {
            Some(name) => {
                let pods = a.res;
                let kv = state
                    .store
                    .get(&key(pods, a.namespace, name), None)
                    .await
                    .map_err(|e| store_error(e, pods, name))?;
                match kv {
                    Some(kv) => decode(&kv)?["spec"]["nodeName"] == node,
                    None => false,
                }
            }
            None => false,
        },
        ("", "services" | "endpoints", None) | ("discovery.k8s.io", "endpointslices", None) => read,
        ("", "events", None) => write,
        ("coordination.k8s.io", "leases", None) => {
            a.namespace == Some("kube-node-lease")
                && (read || (write && a.name.or(a.created) == Some(node)))
        }
        _ => false,
    })
}

/// Whether `user` may do `a`.
pub(crate) async fn allowed(state: &State, user: &User, a: &Attributes<'_>) -> ApiResult<bool> {
    if user.is_master() {
        return Ok(true);
    }
    if user.groups.iter().any(|g| g == NODES)
        && let Some(node) = user.name.strip_prefix("system:node:")
    {
        return node_allows(state, node, a).await;
    }
    rbac_allows(state, user, a).await
}

/// A SelfSubjectAccessReview: whether the asking user may do what it names.
pub(crate) async fn review(
    state: &State,
    user: &User,
    headers: &hyper::HeaderMap,
    body: &[u8],
) -> ApiResult<crate::http::Resp> {
    let ssar = resource::find("authorization.k8s.io", "v1", "selfsubjectaccessreviews")
        .expect("in the table");
    let mut review = crate::objects::parse_body(ssar, headers, body)?;
    let ra = &review["spec"]["resourceAttributes"];
    let allowed = if ra.is_object() {
        let group = ra["group"].as_str().unwrap_or_default();
        let plural = ra["resource"].as_str().unwrap_or_default();
        let version = ra["version"].as_str().filter(|v| !v.is_empty());
        let res = resource::RESOURCES.iter().find(|r| {
            r.group == group && r.plural == plural && version.is_none_or(|v| v == r.version)
        });
        match res {
            Some(res) => {
                let verb = match ra["verb"].as_str().unwrap_or_default() {
                    "get" => "get",
                    "list" => "list",
                    "watch" => "watch",
                    "create" => "create",
                    "update" => "update",
                    "patch" => "patch",
                    "delete" => "delete",
                    "deletecollection" => "deletecollection",
                    _ => "*",
                };
                let a = Attributes {
                    verb,
                    res,
                    subresource: ra["subresource"].as_str().filter(|s| !s.is_empty()),
                    namespace: ra["namespace"].as_str().filter(|s| !s.is_empty()),
                    name: ra["name"].as_str().filter(|s| !s.is_empty()),
                    created: None,
                };
                verb != "*" && allowed(state, user, &a).await?
            }
            // A resource this server does not serve: only masters may "do" it.
            None => user.is_master(),
        }
    } else {
        // Non-resource URLs: discovery and health are open to every user.
        user.is_master()
            || review["spec"]["nonResourceAttributes"]["verb"] == "get"
                && !review["spec"]["nonResourceAttributes"]["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("/metrics"))
    };
    review["status"] = serde_json::json!({"allowed": allowed});
    if let Some(m) = review["metadata"].as_object_mut() {
        m.remove("managedFields");
        m.insert("creationTimestamp".into(), Value::Null);
    }
    Ok(crate::http::json_response(201, crate::http::JSON, &review))
}

/// The ClusterRoles made at first start (and cluster-admin's binding to
/// `system:masters`): `view` reads everything but secrets and RBAC, `edit`
/// also writes them and reads secrets, `cluster-admin` may do anything.
pub(crate) fn bootstrap_objects() -> Vec<(&'static Resource, Value)> {
    let mut readable: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    let mut editable = readable.clone();
    for r in resource::RESOURCES {
        if r.group == "rbac.authorization.k8s.io" || r.group == "authorization.k8s.io" {
            continue;
        }
        let mut names = vec![r.plural.to_owned()];
        names.extend(
            r.subresources
                .iter()
                .map(|s| format!("{}/{}", r.plural, s.name())),
        );
        editable.entry(r.group).or_default().extend(names.clone());
        if r.plural != "secrets" {
            readable.entry(r.group).or_default().extend(names);
        }
    }
    let rules = |by_group: &std::collections::BTreeMap<&str, Vec<String>>, verbs: &[&str]| {
        by_group
            .iter()
            .map(|(g, res)| serde_json::json!({"apiGroups": [g], "resources": res, "verbs": verbs}))
            .collect::<Vec<_>>()
    };
    let role = |name: &str, rules: Vec<Value>| {
        serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name}, "rules": rules})
    };
    let all = [
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ];
    vec![
        (
            rbac("clusterroles"),
            role(
                "cluster-admin",
                vec![serde_json::json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]})],
            ),
        ),
        (
            rbac("clusterroles"),
            role("view", rules(&readable, &["get", "list", "watch"])),
        ),
        (rbac("clusterroles"), role("edit", rules(&editable, &all))),
        (
            rbac("clusterrolebindings"),
            serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding", "metadata": {"name": "cluster-admin"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": "cluster-admin"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                              "name": MASTERS}]}),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.csv");
        std::fs::write(
            &path,
            "# comment\nt1,viewer,u1\nt2,system:node:n1,u2,\"system:nodes\"\nt3,dev,u3,\"a,b\"\n",
        )
        .unwrap();
        let mut t = Tokens::new("admin-token");
        t.load_file(&path).unwrap();
        assert!(t.user("admin-token").unwrap().is_master());
        assert_eq!(t.user("t1").unwrap().name, "viewer");
        assert_eq!(t.user("t2").unwrap().groups[0], "system:nodes");
        assert_eq!(t.user("t3").unwrap().groups[..2], ["a", "b"]);
        assert!(t.user("t4").is_none());
        std::fs::write(&path, "only,two\n").unwrap();
        assert!(Tokens::new("x").load_file(&path).is_err());
    }

    #[test]
    fn rules_and_subjects() {
        let pods = resource::find("", "v1", "pods").unwrap();
        let a = Attributes {
            verb: "get",
            res: pods,
            subresource: None,
            namespace: Some("default"),
            name: Some("web"),
            created: None,
        };
        let rule = |v: Value| rule_allows(&v, &a);
        assert!(rule(
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]})
        ));
        assert!(rule(
            json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})
        ));
        assert!(!rule(
            json!({"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]})
        ));
        assert!(!rule(
            json!({"verbs": ["get"], "apiGroups": ["apps"], "resources": ["pods"]})
        ));
        assert!(!rule(
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"],
                             "resourceNames": ["other"]})
        ));
        let status = Attributes {
            subresource: Some("status"),
            ..a.clone()
        };
        assert!(!rule_allows(
            &json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}),
            &status
        ));
        let u = User {
            name: "system:serviceaccount:ns:sa".into(),
            groups: vec!["devs".into()],
        };
        assert!(subject_matches(
            &json!({"kind": "Group", "name": "devs"}),
            &u
        ));
        assert!(subject_matches(
            &json!({"kind": "ServiceAccount", "namespace": "ns", "name": "sa"}),
            &u
        ));
        assert!(!subject_matches(
            &json!({"kind": "User", "name": "devs"}),
            &u
        ));
        let msg = a.forbidden(&u).message;
        assert_eq!(
            msg,
            "pods \"web\" is forbidden: User \"system:serviceaccount:ns:sa\" cannot get resource \"pods\" in API group \"\" in the namespace \"default\""
        );
    }
}
