//! Listings: tags (`/v2/<name>/tags/list`), repositories (`/v2/_catalog`),
//! both with `n`/`last` pagination and a `Link` to the next page, and the
//! referrers API (`/v2/<name>/referrers/<digest>`).

use std::sync::Arc;

use bosun_image::manifest::OCI_INDEX;
use bosun_oci::Digest;
use hyper::StatusCode;
use serde_json::json;

use super::error::{ApiError, Code};
use super::route::query_get;
use super::{Resp, State, blocking, response};
use crate::body::Body;
use crate::name::RepoName;
use crate::storage::StorageError;

pub(super) async fn tags(
    state: &Arc<State>,
    repo: RepoName,
    query: &[(String, String)],
) -> Result<Resp, ApiError> {
    let r = repo.clone();
    let all = blocking(state, move |s| s.tags(&r)).await?;
    let page = paginate(all, query)?;
    let body = json!({ "name": repo.as_str(), "tags": page.items });
    let link = page
        .next
        .map(|(n, last)| format!("</v2/{repo}/tags/list?n={n}&last={last}>; rel=\"next\""));
    Ok(json_response(&body, link))
}

pub(super) async fn catalog(
    state: &Arc<State>,
    query: &[(String, String)],
) -> Result<Resp, ApiError> {
    let all = blocking(state, |s| s.repositories()).await?;
    let page = paginate(all, query)?;
    let body = json!({ "repositories": page.items });
    let link = page
        .next
        .map(|(n, last)| format!("</v2/_catalog?n={n}&last={last}>; rel=\"next\""));
    Ok(json_response(&body, link))
}

/// Always 200 with an index (empty when nothing refers to `subject`, or the
/// repository does not exist): the spec forbids a 404 from a registry that
/// supports the API, since clients take 404 to mean it does not.
pub(super) async fn referrers(
    state: &Arc<State>,
    repo: RepoName,
    subject: Digest,
    query: &[(String, String)],
) -> Result<Resp, ApiError> {
    let artifact_type = query_get(query, "artifactType").map(str::to_owned);
    let filter = artifact_type.clone();
    let listed = blocking(state, move |s| {
        match s.referrers(&repo, &subject, filter.as_deref()) {
            Err(StorageError::NameUnknown(_)) => Ok(Vec::new()),
            other => other,
        }
    })
    .await?;
    let body = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": listed,
    });
    let bytes = serde_json::to_vec(&body).expect("an index serialises");
    let mut b = response(StatusCode::OK)
        .header("Content-Type", OCI_INDEX)
        .header("Content-Length", bytes.len());
    if artifact_type.is_some() {
        b = b.header("OCI-Filters-Applied", "artifactType");
    }
    Ok(b.body(Body::full(bytes)).expect("valid response"))
}

struct Page {
    items: Vec<String>,
    /// `(n, last)` for the next page's link, when there is one.
    next: Option<(usize, String)>,
}

/// The spec's pagination over a sorted list: entries after `last`, at most
/// `n` of them; `n=0` is an empty page without a link.
fn paginate(all: Vec<String>, query: &[(String, String)]) -> Result<Page, ApiError> {
    let n = match query_get(query, "n") {
        None | Some("") => None,
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            ApiError::new(
                Code::Unsupported,
                format!("n must be a non-negative number, not {v:?}"),
            )
            .status(StatusCode::BAD_REQUEST)
        })?),
    };
    let last = query_get(query, "last").filter(|l| !l.is_empty());
    let mut rest: Vec<String> = all
        .into_iter()
        .filter(|t| last.is_none_or(|l| t.as_str() > l))
        .collect();
    let Some(n) = n else {
        return Ok(Page {
            items: rest,
            next: None,
        });
    };
    let more = rest.len() > n;
    rest.truncate(n);
    let next = match rest.last() {
        Some(last) if more => Some((n, last.clone())),
        _ => None,
    };
    Ok(Page { items: rest, next })
}

fn json_response(body: &serde_json::Value, link: Option<String>) -> Resp {
    let bytes = serde_json::to_vec(body).expect("a listing serialises");
    let mut b = response(StatusCode::OK)
        .header("Content-Type", "application/json")
        .header("Content-Length", bytes.len());
    if let Some(link) = link {
        b = b.header("Link", link);
    }
    b.body(Body::full(bytes)).expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn list() -> Vec<String> {
        ["a", "b", "c", "d"].map(String::from).to_vec()
    }

    #[test]
    fn pagination_follows_the_spec() {
        let p = paginate(list(), &q(&[])).unwrap();
        assert_eq!((p.items.len(), p.next), (4, None));
        let p = paginate(list(), &q(&[("n", "2")])).unwrap();
        assert_eq!(p.items, ["a", "b"]);
        assert_eq!(p.next, Some((2, "b".to_owned())));
        let p = paginate(list(), &q(&[("n", "2"), ("last", "b")])).unwrap();
        assert_eq!(p.items, ["c", "d"]);
        assert_eq!(p.next, None);
        let p = paginate(list(), &q(&[("last", "c")])).unwrap();
        assert_eq!(p.items, ["d"]);
        let p = paginate(list(), &q(&[("n", "0")])).unwrap();
        assert!(p.items.is_empty() && p.next.is_none());
        assert!(paginate(list(), &q(&[("n", "-1")])).is_err());
    }
}
