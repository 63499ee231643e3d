//! URL paths to what they name: discovery documents, health checks, or a
//! resource (collection or object, maybe a subresource) of the table.

use bosun_api::resource::{self, Resource, Subresource};

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    Version,
    Metrics,
    /// `/openapi/v2`: everything in one Swagger 2.0 document.
    OpenApiV2,
    /// `/openapi/v3`: where the documents are.
    OpenApiIndex,
    /// `/openapi/v3/api/v1`, `/openapi/v3/apis/<group>/<version>`.
    OpenApi {
        group: &'a str,
        version: &'a str,
    },
    Health,
    /// `/api`: the core group's versions.
    CoreVersions,
    /// `/apis`: every other group.
    Groups,
    /// `/apis/<group>`.
    Group(&'a str),
    /// `/api/v1`, `/apis/<group>/<version>`: the resources of a group version.
    Resources {
        group: &'a str,
        version: &'a str,
    },
    Objects(Target),
}

/// A collection (no name) or an object of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) res: &'static Resource,
    /// The namespace of the URL; `None` for cluster-scoped resources and for
    /// lists across every namespace.
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) sub: Option<Subresource>,
}

/// Why a path names nothing: unknown (404), or a subresource that does not exist.
pub(crate) fn parse(path: &str) -> Option<Route<'_>> {
    let path = path.strip_suffix('/').unwrap_or(path);
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    match segs.as_slice() {
        ["version"] => Some(Route::Version),
        ["metrics"] => Some(Route::Metrics),
        ["openapi", "v2"] => Some(Route::OpenApiV2),
        ["openapi", "v3"] => Some(Route::OpenApiIndex),
        ["openapi", "v3", "api", v] => Some(Route::OpenApi {
            group: "",
            version: v,
        }),
        ["openapi", "v3", "apis", g, v] => Some(Route::OpenApi {
            group: g,
            version: v,
        }),
        ["healthz" | "livez" | "readyz", ..] => Some(Route::Health),
        ["api"] => Some(Route::CoreVersions),
        ["apis"] => Some(Route::Groups),
        ["apis", g] if resource::groups().iter().any(|(n, _)| n == g) => Some(Route::Group(g)),
        ["api", "v1"] => Some(Route::Resources {
            group: "",
            version: "v1",
        }),
        ["apis", g, v] if !resource::in_group_version(g, v).is_empty() => Some(Route::Resources {
            group: g,
            version: v,
        }),
        ["api", "v1", rest @ ..] => objects("", "v1", rest),
        ["apis", g, v, rest @ ..] => objects(g, v, rest),
        _ => None,
    }
}

fn objects<'a>(group: &str, version: &str, rest: &[&str]) -> Option<Route<'a>> {
    let named = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    // `namespaces/<ns>/<plural>...` when <plural> is a namespaced resource;
    // otherwise `namespaces/<name>` is the Namespace object itself.
    if let ["namespaces", ns, plural, tail @ ..] = rest
        && let Some(res) = resource::find(group, version, plural).filter(|r| r.namespaced)
    {
        return target(res, named(ns), tail);
    }
    let [plural, tail @ ..] = rest else {
        return None;
    };
    let res = resource::find(group, version, plural)?;
    if res.namespaced && !tail.is_empty() {
        // A namespaced object is addressed only through its namespace.
        return None;
    }
    target(res, None, tail)
}

fn target<'a>(
    res: &'static Resource,
    namespace: Option<String>,
    tail: &[&str],
) -> Option<Route<'a>> {
    if res.namespaced && namespace.is_none() && !tail.is_empty() {
        return None;
    }
    let (name, sub) = match tail {
        [] => (None, None),
        [name] if !name.is_empty() => (Some((*name).to_owned()), None),
        [name, sub] if !name.is_empty() => {
            let sub = Subresource::parse(sub).filter(|s| res.has(*s))?;
            (Some((*name).to_owned()), Some(sub))
        }
        _ => return None,
    };
    Some(Route::Objects(Target {
        res,
        namespace,
        name,
        sub,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Target {
        match parse(path) {
            Some(Route::Objects(t)) => t,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn paths() {
        assert_eq!(parse("/api"), Some(Route::CoreVersions));
        assert_eq!(parse("/apis/"), Some(Route::Groups));
        assert_eq!(parse("/apis/apps"), Some(Route::Group("apps")));
        assert_eq!(parse("/readyz/ping"), Some(Route::Health));
        assert_eq!(
            parse("/apis/apps/v1"),
            Some(Route::Resources {
                group: "apps",
                version: "v1"
            })
        );
        let t = target("/api/v1/namespaces/default/pods/web/status");
        assert_eq!(
            (t.res.plural, t.namespace.as_deref(), t.name.as_deref()),
            ("pods", Some("default"), Some("web"))
        );
        assert_eq!(t.sub, Some(Subresource::Status));
        let t = target("/api/v1/namespaces/kube-system");
        assert_eq!(
            (t.res.plural, t.namespace, t.name.as_deref()),
            ("namespaces", None, Some("kube-system"))
        );
        let t = target("/api/v1/pods");
        assert_eq!((t.namespace, t.name), (None, None));
        let t = target("/apis/apps/v1/namespaces/a/deployments/web/scale");
        assert_eq!(t.sub, Some(Subresource::Scale));
        for none in [
            "/",
            "/apis/nope",
            "/apis/apps/v9",
            "/api/v1/pods/web",
            "/api/v1/bogus",
            "/api/v1/namespaces/a/pods/web/log",
            "/api/v1/namespaces/a/configmaps/x/status",
            "/api/v1/namespaces/a/pods/web/status/more",
        ] {
            assert_eq!(parse(none), None, "{none}");
        }
    }
}
