//! The resource table: every kind the API server serves, with what discovery
//! tells kubectl about it (plural, short names, scope, categories, verbs,
//! subresources) and what list requests may filter on.

/// One served resource (a kind at a group/version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// `""` for the core group (`/api/v1`).
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    /// `all` makes `kubectl get all` list it.
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// What discovery announces (and the server allows).
    pub verbs: &'static [&'static str],
    /// Field selector labels beyond `metadata.name` and `metadata.namespace`,
    /// as JSON paths into the object.
    pub fields: &'static [&'static str],
}

/// A subresource the server serves, with its own verbs and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `<resource>/status`: reads and writes only `.status`.
    Status,
    /// `<resource>/scale`: `autoscaling/v1 Scale` over `.spec.replicas`.
    Scale,
    /// `pods/binding`: assigns a pod to a node (what a scheduler posts).
    Binding,
    /// `pods/eviction`: a delete that disruption budgets may refuse.
    Eviction,
    /// `serviceaccounts/token`: a TokenRequest, answered with a signed token.
    Token,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Eviction => "eviction",
            Subresource::Token => "token",
        }
    }

    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Subresource::Status | Subresource::Scale => &["get", "patch", "update"],
            Subresource::Binding | Subresource::Eviction | Subresource::Token => &["create"],
        }
    }

    pub fn parse(s: &str) -> Option<Subresource> {
        match s {
            "status" => Some(Subresource::Status),
            "scale" => Some(Subresource::Scale),
            "binding" => Some(Subresource::Binding),
            "eviction" => Some(Subresource::Eviction),
            "token" => Some(Subresource::Token),
            _ => None,
        }
    }
}

/// The verbs every resource of the table serves.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl Resource {
    /// `v1` or `apps/v1`: the object's `apiVersion`.
    pub fn api_version(&self) -> String {
        group_version(self.group, self.version)
    }

    /// `PodList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// `pods` or `deployments.apps`: how Kubernetes names a resource in messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// Whether `label` may appear in a field selector on this resource.
    pub fn supports_field(&self, label: &str) -> bool {
        matches!(label, "metadata.name")
            || (label == "metadata.namespace" && self.namespaced)
            || self.fields.contains(&label)
    }
}

/// `v1` for the core group, else `group/version`.
pub fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

const STATUS: &[Subresource] = &[Subresource::Status];
const STATUS_SCALE: &[Subresource] = &[Subresource::Status, Subresource::Scale];
const POD_SUBRESOURCES: &[Subresource] = &[
    Subresource::Status,
    Subresource::Binding,
    Subresource::Eviction,
];
const ALL: &[&str] = &["all"];

const fn core(
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
    namespaced: bool,
) -> Resource {
    Resource {
        group: "",
        version: "v1",
        kind,
        plural,
        singular,
        short_names,
        namespaced,
        categories: &[],
        subresources: &[],
        verbs: VERBS,
        fields: &[],
    }
}

const fn in_group(group: &'static str, version: &'static str, r: Resource) -> Resource {
    Resource {
        group,
        version,
        ..r
    }
}

/// Every served resource, grouped by group/version in discovery order.
pub static RESOURCES: &[Resource] = &[
    Resource {
        subresources: STATUS,
        fields: &["status.phase"],
        ..core("Namespace", "namespaces", "namespace", &["ns"], false)
    },
    Resource {
        categories: ALL,
        subresources: POD_SUBRESOURCES,
        fields: &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ..core("Pod", "pods", "pod", &["po"], true)
    },
    Resource {
        subresources: STATUS,
        fields: &["spec.unschedulable"],
        ..core("Node", "nodes", "node", &["no"], false)
    },
    Resource {
        categories: ALL,
        subresources: STATUS,
        fields: &["spec.clusterIP", "spec.type"],
        ..core("Service", "services", "service", &["svc"], true)
    },
    core("Endpoints", "endpoints", "endpoints", &["ep"], true),
    core("ConfigMap", "configmaps", "configmap", &["cm"], true),
    Resource {
        fields: &["type"],
        ..core("Secret", "secrets", "secret", &[], true)
    },
    Resource {
        fields: &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ..core("Event", "events", "event", &["ev"], true)
    },
    Resource {
        subresources: &[Subresource::Token],
        ..core(
            "ServiceAccount",
            "serviceaccounts",
            "serviceaccount",
            &["sa"],
            true,
        )
    },
    in_group(
        "apps",
        "v1",
        Resource {
            categories: ALL,
            subresources: STATUS_SCALE,
            ..core("Deployment", "deployments", "deployment", &["deploy"], true)
        },
    ),
    in_group(
        "apps",
        "v1",
        Resource {
            categories: ALL,
            subresources: STATUS_SCALE,
            ..core("ReplicaSet", "replicasets", "replicaset", &["rs"], true)
        },
    ),
    in_group(
        "apps",
        "v1",
        Resource {
            categories: ALL,
            subresources: STATUS,
            ..core("DaemonSet", "daemonsets", "daemonset", &["ds"], true)
        },
    ),
    in_group(
        "apps",
        "v1",
        Resource {
            categories: ALL,
            subresources: STATUS_SCALE,
            ..core("StatefulSet", "statefulsets", "statefulset", &["sts"], true)
        },
    ),
    in_group(
        "batch",
        "v1",
        Resource {
            categories: ALL,
            subresources: STATUS,
            fields: &["status.successful"],
            ..core("Job", "jobs", "job", &[], true)
        },
    ),
    in_group(
        "discovery.k8s.io",
        "v1",
        core(
            "EndpointSlice",
            "endpointslices",
            "endpointslice",
            &[],
            true,
        ),
    ),
    in_group(
        "coordination.k8s.io",
        "v1",
        core("Lease", "leases", "lease", &[], true),
    ),
    in_group(
        "rbac.authorization.k8s.io",
        "v1",
        Resource {
            fields: &[],
            ..core("Role", "roles", "role", &[], true)
        },
    ),
    in_group(
        "rbac.authorization.k8s.io",
        "v1",
        core("RoleBinding", "rolebindings", "rolebinding", &[], true),
    ),
    in_group(
        "rbac.authorization.k8s.io",
        "v1",
        core("ClusterRole", "clusterroles", "clusterrole", &[], false),
    ),
    in_group(
        "rbac.authorization.k8s.io",
        "v1",
        core(
            "ClusterRoleBinding",
            "clusterrolebindings",
            "clusterrolebinding",
            &[],
            false,
        ),
    ),
    in_group(
        "authorization.k8s.io",
        "v1",
        Resource {
            verbs: &["create"],
            ..core(
                "SelfSubjectAccessReview",
                "selfsubjectaccessreviews",
                "selfsubjectaccessreview",
                &[],
                false,
            )
        },
    ),
    in_group(
        "autoscaling",
        "v2",
        Resource {
            categories: ALL,
            subresources: STATUS,
            ..core(
                "HorizontalPodAutoscaler",
                "horizontalpodautoscalers",
                "horizontalpodautoscaler",
                &["hpa"],
                true,
            )
        },
    ),
];

/// The resource served at `group/version` under `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource for an object's `apiVersion` and `kind`.
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// The served API groups (not the core group), each with its versions, in table order.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

/// The resources of one group/version (empty if it is not served).
pub fn in_group_version(group: &str, version: &str) -> Vec<&'static Resource> {
    RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for (i, r) in RESOURCES.iter().enumerate() {
            assert_eq!(r.plural, r.plural.to_lowercase(), "{}", r.kind);
            assert!(
                RESOURCES[..i]
                    .iter()
                    .all(|o| (o.group, o.version, o.plural) != (r.group, r.version, r.plural)),
                "{} twice",
                r.plural
            );
            for s in r.short_names {
                let clashes = RESOURCES
                    .iter()
                    .filter(|o| o.short_names.contains(s) || o.plural == *s)
                    .count();
                assert_eq!(clashes, 1, "short name {s}");
            }
        }
    }

    #[test]
    fn lookups() {
        let d = find("apps", "v1", "deployments").unwrap();
        assert_eq!(d.api_version(), "apps/v1");
        assert_eq!(d.qualified_plural(), "deployments.apps");
        assert!(d.has(Subresource::Scale));
        assert_eq!(find("", "v1", "pods").unwrap().api_version(), "v1");
        assert_eq!(find_kind("v1", "ConfigMap").unwrap().plural, "configmaps");
        assert!(find("apps", "v2", "deployments").is_none());
        let groups = groups();
        assert_eq!(groups[0], ("apps", vec!["v1"]));
        assert!(groups.iter().any(|(g, _)| *g == "autoscaling"));
        let pods = find("", "v1", "pods").unwrap();
        assert!(pods.supports_field("spec.nodeName"));
        assert!(pods.supports_field("metadata.namespace"));
        assert!(!pods.supports_field("spec.bogus"));
        assert!(
            !find("", "v1", "nodes")
                .unwrap()
                .supports_field("metadata.namespace")
        );
    }
}
