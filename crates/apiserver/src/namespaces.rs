//! Deleting a namespace: it turns `Terminating` (no new objects in it), its
//! objects are deleted, and once none is left (finalizers may hold some) the
//! namespace itself goes. The sweep runs in the background, is retried until
//! the namespace is empty, and resumes after a restart.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bosun_api::resource::{self, RESOURCES};
use bosun_api::{ObjectMeta, Reason};

use crate::objects::{self, ApiResult, DeleteOptions, Filter, commit, key, read_list};
use crate::route::Target;
use crate::{ServerError, State};

/// How long a sweep that found objects held by finalizers waits before the next.
const RETRY: Duration = Duration::from_secs(2);

fn namespaces() -> &'static bosun_api::Resource {
    resource::find("", "v1", "namespaces").expect("in the table")
}

/// Sweeps `name` until it is gone.
pub(crate) async fn finish(state: Arc<State>, name: String) {
    loop {
        match sweep(&state, &name).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(s) => eprintln!("bosun server: deleting namespace {name}: {s}"),
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Deletes what is left in a terminating namespace; `true` once the namespace is gone.
async fn sweep(state: &State, name: &str) -> ApiResult<bool> {
    let ns = namespaces();
    let Some(kv) = state
        .store
        .get(&key(ns, None, name), None)
        .await
        .map_err(|e| objects::store_error(e, ns, name))?
    else {
        return Ok(true);
    };
    let mut left = 0;
    for res in RESOURCES.iter().filter(|r| r.namespaced) {
        let t = Target {
            res,
            namespace: Some(name.to_owned()),
            name: None,
            sub: None,
        };
        let listed = read_list(state, &t, &Filter::default()).await?;
        for obj in listed.items {
            let meta =
                ObjectMeta::of(&obj).map_err(|e| bosun_api::Status::internal(e.to_string()))?;
            match objects::delete(state, &t, &meta.name, &DeleteOptions::default(), false).await {
                Ok(_) => {}
                Err(s) if s.reason == Reason::NotFound => {}
                Err(s) => return Err(s),
            }
        }
        left += read_list(state, &t, &Filter::default()).await?.items.len();
    }
    if left > 0 {
        return Ok(false);
    }
    let none = BTreeSet::new();
    match commit(
        state,
        ns,
        name,
        &kv.key,
        kv.mod_revision,
        None,
        &none,
        &none,
    )
    .await
    {
        Ok(_) => Ok(true),
        // Changed meanwhile (a label, a status): sweep again.
        Err(s) if s.reason == Reason::Conflict => Ok(false),
        Err(s) if s.reason == Reason::NotFound => Ok(true),
        Err(s) => Err(s),
    }
}

/// Restarts the sweep of every namespace that was terminating when the server stopped.
pub(crate) async fn resume(state: &Arc<State>) -> Result<(), ServerError> {
    let t = Target {
        res: namespaces(),
        namespace: None,
        name: None,
        sub: None,
    };
    let listed = read_list(state, &t, &Filter::default())
        .await
        .map_err(|s| ServerError::Bootstrap {
            name: "(terminating namespaces)".to_owned(),
            message: s.message,
        })?;
    for obj in listed.items {
        if obj["metadata"]["deletionTimestamp"].is_string()
            && let Some(name) = obj["metadata"]["name"].as_str()
        {
            tokio::spawn(finish(state.clone(), name.to_owned()));
        }
    }
    Ok(())
}
