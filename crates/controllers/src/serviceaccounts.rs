//! Every active namespace has a `default` ServiceAccount (what pods run as
//! when they name none), as Kubernetes' service-account controller ensures.

use std::collections::HashSet;

use bosun_api::Resource;
use bosun_api::resource;
use bosun_client::{Client, Error};
use serde_json::json;

pub const DEFAULT: &str = "default";

/// A namespace, as this controller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    /// Being deleted: nothing is created in it any more.
    pub terminating: bool,
}

/// The namespaces that lack their `default` account; `accounts` holds the
/// namespaces that have one.
pub fn plan(namespaces: &[Namespace], accounts: &HashSet<String>) -> Vec<String> {
    let mut missing: Vec<String> = namespaces
        .iter()
        .filter(|n| !n.terminating && !accounts.contains(&n.name))
        .map(|n| n.name.clone())
        .collect();
    missing.sort();
    missing
}

pub fn accounts() -> &'static Resource {
    resource::find("", "v1", "serviceaccounts").expect("in the table")
}

/// Creates the `default` account in `namespace` (already there is fine).
pub async fn reconcile(client: &Client, namespace: &str) -> Result<(), Error> {
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": DEFAULT, "namespace": namespace}});
    match client.create(accounts(), Some(namespace), &sa).await {
        Err(e) if matches!(e.code(), Some(409 | 403 | 404)) => Ok(()),
        other => other.map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_active_namespaces_without_one() {
        let ns = |name: &str, terminating| Namespace {
            name: name.into(),
            terminating,
        };
        let have: HashSet<String> = ["a".to_owned()].into();
        assert_eq!(
            plan(&[ns("b", false), ns("a", false), ns("c", true)], &have),
            ["b"]
        );
        assert!(plan(&[], &have).is_empty());
    }
}
