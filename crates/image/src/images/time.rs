//! The store only ever writes "now", to seconds.

use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{}Z",
        bosun_oci::UtcTime::from_unix(secs as i64).date_time()
    )
}
