//! The garbage collector: what Kubernetes' does over `ownerReferences`.
//!
//! - An object whose owners are all gone is deleted (Background); one some of
//!   whose owners are gone loses the references to those.
//! - An owner deleted in the foreground (finalizer `foregroundDeletion`) has
//!   its dependents deleted (in the foreground too, so chains go leaf first)
//!   and loses the finalizer once no dependent with `blockOwnerDeletion`
//!   remains.
//! - An owner deleted with `Orphan` (finalizer `orphan`) has its reference
//!   removed from each dependent, then loses the finalizer.
//!
//! [`plan`] decides from a snapshot of every object's metadata; [`reconcile`]
//! does one action. The snapshot is assembled from one watch per resource and
//! may lag or be partial (watches start one by one), so "this owner is gone"
//! is checked with the server before anything is deleted.

use std::collections::{HashMap, HashSet};

use bosun_api::Resource;
use bosun_api::resource::{self, RESOURCES};
use bosun_client::{Client, DeleteParams, Error};
use serde_json::Value;

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";

/// Which object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjRef {
    pub res: &'static Resource,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
}

/// One entry of `metadata.ownerReferences`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    /// `blockOwnerDeletion`: a foreground deletion of the owner waits for it.
    pub block: bool,
}

/// What the collector reads of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub obj: ObjRef,
    pub owners: Vec<OwnerRef>,
    pub finalizers: Vec<String>,
    /// It has a deletionTimestamp.
    pub deleting: bool,
}

impl Node {
    pub fn of(res: &'static Resource, v: &Value) -> Option<Node> {
        let m = &v["metadata"];
        let s = |f: &Value| f.as_str().map(str::to_owned);
        let owners = m["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| {
                Some(OwnerRef {
                    api_version: s(&o["apiVersion"])?,
                    kind: s(&o["kind"])?,
                    name: s(&o["name"])?,
                    uid: s(&o["uid"])?,
                    block: o["blockOwnerDeletion"] == true,
                })
            })
            .collect();
        Some(Node {
            obj: ObjRef {
                res,
                namespace: s(&m["namespace"]).filter(|n| !n.is_empty()),
                name: s(&m["name"])?,
                uid: s(&m["uid"])?,
            },
            owners,
            finalizers: m["finalizers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(s)
                .collect(),
            deleting: !m["deletionTimestamp"].is_null(),
        })
    }

    fn has(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }
}

/// One step of collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Delete `obj` with `policy`, if every owner in `gone` is really gone.
    Delete {
        obj: ObjRef,
        policy: &'static str,
        gone: Vec<OwnerRef>,
    },
    /// Remove the owner references with these uids from `obj`, if every
    /// owner in `gone` is really gone.
    RemoveOwners {
        obj: ObjRef,
        uids: Vec<String>,
        gone: Vec<OwnerRef>,
    },
    /// The work `finalizer` stood for is done.
    RemoveFinalizer {
        obj: ObjRef,
        finalizer: &'static str,
    },
}

/// What to do, given every object the collector knows of.
pub fn plan(nodes: &[Node]) -> Vec<Action> {
    let present: HashSet<&str> = nodes.iter().map(|n| n.obj.uid.as_str()).collect();
    let mut dependents: HashMap<&str, Vec<&Node>> = HashMap::new();
    for n in nodes {
        for o in &n.owners {
            dependents.entry(o.uid.as_str()).or_default().push(n);
        }
    }
    let mut actions = Vec::new();
    for n in nodes {
        let deps = dependents
            .get(n.obj.uid.as_str())
            .map_or(&[][..], Vec::as_slice);
        if n.deleting && n.has(ORPHAN) {
            // Orphaning comes first: the dependents must survive the owner.
            if deps.is_empty() {
                actions.push(Action::RemoveFinalizer {
                    obj: n.obj.clone(),
                    finalizer: ORPHAN,
                });
            }
            for d in deps {
                actions.push(Action::RemoveOwners {
                    obj: d.obj.clone(),
                    uids: vec![n.obj.uid.clone()],
                    gone: Vec::new(),
                });
            }
        } else if n.deleting && n.has(FOREGROUND) {
            for d in deps.iter().filter(|d| !d.deleting) {
                actions.push(Action::Delete {
                    obj: d.obj.clone(),
                    policy: "Foreground",
                    gone: Vec::new(),
                });
            }
            let blocked = deps
                .iter()
                .any(|d| d.owners.iter().any(|o| o.uid == n.obj.uid && o.block));
            if !blocked {
                actions.push(Action::RemoveFinalizer {
                    obj: n.obj.clone(),
                    finalizer: FOREGROUND,
                });
            }
        }
        if n.deleting || n.owners.is_empty() {
            continue;
        }
        let gone: Vec<OwnerRef> = n
            .owners
            .iter()
            .filter(|o| !present.contains(o.uid.as_str()))
            .cloned()
            .collect();
        if gone.is_empty() {
            continue;
        }
        if gone.len() == n.owners.len() {
            actions.push(Action::Delete {
                obj: n.obj.clone(),
                policy: "Background",
                gone,
            });
        } else {
            actions.push(Action::RemoveOwners {
                obj: n.obj.clone(),
                uids: gone.iter().map(|o| o.uid.clone()).collect(),
                gone,
            });
        }
    }
    actions
}

/// The resources the collector watches: every one that can be listed.
pub fn watched() -> impl Iterator<Item = &'static Resource> {
    RESOURCES
        .iter()
        .filter(|r| r.verbs.contains(&"watch") && r.verbs.contains(&"delete"))
}

/// Whether the server no longer has `owner` (a dependent in `namespace`
/// names it): 404, or the name now has another uid. An owner of a kind the
/// server does not serve counts as present: nothing is deleted on a guess.
async fn really_gone(
    client: &Client,
    namespace: Option<&str>,
    owner: &OwnerRef,
) -> Result<bool, Error> {
    let Some(res) = resource::find_kind(&owner.api_version, &owner.kind) else {
        return Ok(false);
    };
    let ns = if res.namespaced { namespace } else { None };
    match client.get(res, ns, &owner.name).await {
        Ok(v) => Ok(v["metadata"]["uid"] != owner.uid.as_str()),
        Err(e) if e.code() == Some(404) => Ok(true),
        Err(e) => Err(e),
    }
}

/// What the server said of owners during one round of actions, so that the
/// many dependents of one owner cost one read.
#[derive(Debug, Default)]
pub struct Checked(HashMap<(Option<String>, String), bool>);

async fn all_gone(
    client: &Client,
    obj: &ObjRef,
    gone: &[OwnerRef],
    checked: &mut Checked,
) -> Result<bool, Error> {
    for o in gone {
        let key = (obj.namespace.clone(), o.uid.clone());
        let is_gone = match checked.0.get(&key) {
            Some(g) => *g,
            None => {
                let g = really_gone(client, obj.namespace.as_deref(), o).await?;
                checked.0.insert(key, g);
                g
            }
        };
        if !is_gone {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Does one action. An object changed or gone meanwhile is not an error:
/// the next plan sees the new state. `checked` is shared by the actions of
/// one plan.
pub async fn reconcile(
    client: &Client,
    action: &Action,
    checked: &mut Checked,
) -> Result<(), Error> {
    let done = match action {
        Action::Delete { obj, policy, gone } => {
            if !all_gone(client, obj, gone, checked).await? {
                return Ok(());
            }
            let params = DeleteParams {
                propagation_policy: Some(policy),
                uid: Some(obj.uid.clone()),
            };
            client
                .delete(obj.res, obj.namespace.as_deref(), &obj.name, &params)
                .await
                .map(drop)
        }
        Action::RemoveOwners { obj, uids, gone } => {
            if !all_gone(client, obj, gone, checked).await? {
                return Ok(());
            }
            edit(client, obj, |m| {
                let Some(list) = m.get_mut("ownerReferences").and_then(Value::as_array_mut) else {
                    return false;
                };
                let before = list.len();
                list.retain(|o| !uids.iter().any(|u| o["uid"] == u.as_str()));
                let changed = list.len() != before;
                if list.is_empty() {
                    m.remove("ownerReferences");
                }
                changed
            })
            .await
        }
        Action::RemoveFinalizer { obj, finalizer } => {
            edit(client, obj, |m| {
                let Some(list) = m.get_mut("finalizers").and_then(Value::as_array_mut) else {
                    return false;
                };
                let before = list.len();
                list.retain(|f| f != finalizer);
                list.len() != before
            })
            .await
        }
    };
    match done {
        Err(e) if matches!(e.code(), Some(404 | 409)) => Ok(()),
        other => other,
    }
}

/// Reads `obj`, changes its metadata with `change` (which says whether it
/// changed anything) and writes it back at the version read.
async fn edit(
    client: &Client,
    obj: &ObjRef,
    change: impl FnOnce(&mut serde_json::Map<String, Value>) -> bool,
) -> Result<(), Error> {
    let ns = obj.namespace.as_deref();
    let mut cur = client.get(obj.res, ns, &obj.name).await?;
    if cur["metadata"]["uid"] != obj.uid.as_str() {
        return Ok(());
    }
    let Some(meta) = cur["metadata"].as_object_mut() else {
        return Ok(());
    };
    if change(meta) {
        client.update(obj.res, ns, &cur).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
