//! Request paths to routes. A repository name has any number of `/`
//! components, so a path is read from its end: the last one to three
//! segments say which endpoint it is, the rest is the name.

use bosun_oci::Digest;

use super::error::{ApiError, Code};
use crate::name::{Reference, RepoName, UploadId, parse_digest};

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/v2/`
    Ping,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(RepoName),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(RepoName, Reference),
    /// `/v2/<name>/blobs/<digest>`
    Blob(RepoName, Digest),
    /// `/v2/<name>/blobs/uploads/`
    Uploads(RepoName),
    /// `/v2/<name>/blobs/uploads/<id>`; `None` for an id this server never
    /// issues (answered as an unknown upload, not a bad request).
    Upload(RepoName, Option<UploadId>),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(RepoName, Digest),
}

impl Route {
    /// Parses a request path as sent. Segments are split before they are
    /// percent-decoded, so an escaped `/` stays inside its segment (and makes
    /// it an invalid name, tag or digest). `Ok(None)` when the path is not one
    /// of the API's.
    pub(crate) fn parse(path: &str) -> Result<Option<Route>, ApiError> {
        let Some(rest) = path.strip_prefix("/v2") else {
            return Ok(None);
        };
        if rest.is_empty() || rest == "/" {
            return Ok(Some(Route::Ping));
        }
        let Some(rest) = rest.strip_prefix('/') else {
            return Ok(None);
        };
        if rest == "_catalog" {
            return Ok(Some(Route::Catalog));
        }
        let decoded: Vec<String> = rest
            .split('/')
            .map(|seg| {
                percent_decode(seg)
                    .ok_or_else(|| ApiError::new(Code::NameInvalid, "malformed escape in the path"))
            })
            .collect::<Result<_, _>>()?;
        let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
        let n = segments.len();
        let name = |k: usize| -> Result<RepoName, ApiError> {
            if n <= k {
                return Err(ApiError::new(
                    Code::NameInvalid,
                    "repository name is missing",
                ));
            }
            Ok(segments[..n - k].join("/").parse()?)
        };
        let tail = |k: usize| -> &[&str] { &segments[n.saturating_sub(k)..] };
        let route = match (tail(3), tail(2)) {
            ([.., "blobs", "uploads", ""], _) => Route::Uploads(name(3)?),
            ([.., "blobs", "uploads", id], _) if n > 3 => {
                Route::Upload(name(3)?, UploadId::parse(id))
            }
            (_, ["blobs", "uploads"]) => Route::Uploads(name(2)?),
            (_, ["tags", "list"]) => Route::Tags(name(2)?),
            (_, ["manifests", reference]) => Route::Manifest(name(2)?, reference.parse()?),
            (_, ["blobs", digest]) => Route::Blob(name(2)?, parse_digest(digest)?),
            (_, ["referrers", digest]) => Route::Referrers(name(2)?, parse_digest(digest)?),
            _ => return Ok(None),
        };
        Ok(Some(route))
    }
}

/// Decodes `%XX` escapes; `None` for a malformed escape or non-UTF-8 result.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') && !s.contains('+') {
        return Some(s.to_owned());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The query parameters of a request, decoded, in order. `+` is taken
/// literally: no value this API receives (digests, names, media types) is
/// form-encoded text, and `+` occurs in media types.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(query) = query else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

/// The first value of parameter `key`.
pub(crate) fn query_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn route(p: &str) -> Route {
        Route::parse(p).unwrap().unwrap()
    }

    fn name(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    #[test]
    fn routes_read_from_the_end_of_the_path() {
        assert_eq!(route("/v2/"), Route::Ping);
        assert_eq!(route("/v2"), Route::Ping);
        assert_eq!(route("/v2/_catalog"), Route::Catalog);
        assert_eq!(route("/v2/a/b/tags/list"), Route::Tags(name("a/b")));
        assert_eq!(
            route("/v2/a/manifests/v1"),
            Route::Manifest(name("a"), "v1".parse().unwrap())
        );
        assert_eq!(
            route(&format!("/v2/a/blobs/{D}")),
            Route::Blob(name("a"), D.parse().unwrap())
        );
        // A repository may have a component called "blobs".
        assert_eq!(
            route(&format!("/v2/x/blobs/blobs/{D}")),
            Route::Blob(name("x/blobs"), D.parse().unwrap())
        );
        assert_eq!(route("/v2/a/b/blobs/uploads/"), Route::Uploads(name("a/b")));
        assert_eq!(route("/v2/a/blobs/uploads"), Route::Uploads(name("a")));
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            route(&format!("/v2/a/blobs/uploads/{id}")),
            Route::Upload(name("a"), UploadId::parse(id))
        );
        assert_eq!(
            route("/v2/a/blobs/uploads/nope"),
            Route::Upload(name("a"), None)
        );
        assert_eq!(
            route(&format!("/v2/a/referrers/{D}")),
            Route::Referrers(name("a"), D.parse().unwrap())
        );
    }

    #[test]
    fn bad_paths_are_refused_or_unknown() {
        assert!(Route::parse("/v1/x").unwrap().is_none());
        assert!(Route::parse("/v2/a/unknown/thing").unwrap().is_none());
        let e = Route::parse("/v2/A/tags/list").unwrap_err();
        assert_eq!(e.errors[0].0, Code::NameInvalid);
        let e = Route::parse("/v2/a/blobs/sha256:zz").unwrap_err();
        assert_eq!(e.errors[0].0, Code::DigestInvalid);
        let e = Route::parse("/v2/a/manifests/-bad").unwrap_err();
        assert_eq!(e.errors[0].0, Code::ManifestInvalid);
        let e = Route::parse("/v2/tags/list").unwrap_err();
        assert_eq!(e.errors[0].0, Code::NameInvalid);
    }

    #[test]
    fn queries_are_decoded() {
        let q = query_pairs(Some(
            "digest=sha256%3Aab&from=a%2Fb&artifactType=application/x+y&n",
        ));
        assert_eq!(query_get(&q, "digest"), Some("sha256:ab"));
        assert_eq!(query_get(&q, "from"), Some("a/b"));
        assert_eq!(query_get(&q, "artifactType"), Some("application/x+y"));
        assert_eq!(query_get(&q, "n"), Some(""));
        assert_eq!(percent_decode("%zz"), None);
    }
}
