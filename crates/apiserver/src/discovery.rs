//! Legacy discovery documents (what kubectl reads to map `get po` to a URL) and
//! `/version`, all from the resource table.

use bosun_api::resource::{self, RESOURCES, group_version};
use serde_json::{Value, json};

/// The Kubernetes minor version announced: kubectl's dispatcher picks the
/// kubectl build that matches it, so it must be one that is installed (1.27-1.33).
const MINOR: &str = "33";

pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": MINOR,
        "gitVersion": format!("v1.{MINOR}.0-bosun.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}

pub(crate) fn core_versions(server: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}],
    })
}

fn group(name: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": group_version(name, v), "version": v}))
        .collect();
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": name,
        "versions": versions,
        "preferredVersion": versions[0],
    })
}

pub(crate) fn groups() -> Value {
    let groups: Vec<Value> = resource::groups()
        .iter()
        .map(|(name, versions)| {
            let mut g = group(name, versions);
            let obj = g.as_object_mut().expect("a group is an object");
            obj.remove("kind");
            obj.remove("apiVersion");
            g
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub(crate) fn one_group(name: &str) -> Value {
    let versions = resource::groups()
        .into_iter()
        .find(|(g, _)| *g == name)
        .map(|(_, v)| v)
        .unwrap_or_default();
    group(name, &versions)
}

pub(crate) fn resources(g: &str, v: &str) -> Value {
    let mut list = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.group == g && r.version == v) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        list.push(entry);
        for sub in r.subresources {
            let (kind, group, version) = match sub {
                bosun_api::Subresource::Status => (r.kind, r.group, r.version),
                bosun_api::Subresource::Scale => ("Scale", "autoscaling", "v1"),
                bosun_api::Subresource::Binding => ("Binding", "", "v1"),
                bosun_api::Subresource::Eviction => ("Eviction", "policy", "v1"),
                bosun_api::Subresource::Token => ("TokenRequest", "authentication.k8s.io", "v1"),
            };
            list.push(json!({
                "name": format!("{}/{}", r.plural, sub.name()),
                "singularName": "",
                "namespaced": r.namespaced,
                "group": group,
                "version": version,
                "kind": kind,
                "verbs": sub.verbs(),
            }));
        }
    }
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version(g, v),
        "resources": list,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents() {
        let core = resources("", "v1");
        let pods = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods")
            .unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        let apps = resources("apps", "v1");
        assert_eq!(apps["groupVersion"], "apps/v1");
        assert!(
            apps["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "deployments/scale" && r["kind"] == "Scale")
        );
        let groups = groups();
        assert_eq!(
            groups["groups"][0]["preferredVersion"]["groupVersion"],
            "apps/v1"
        );
        assert_eq!(one_group("batch")["versions"][0]["version"], "v1");
    }
}
