//! The audit log: one JSON line per write request (create, update, patch,
//! delete, deletecollection), allowed or not, in `DIR/audit.log`: when, who,
//! what, and the answer's code. Reads are not logged.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde_json::json;

use crate::ServerError;
use crate::auth::{Attributes, User};

#[derive(Debug)]
pub(crate) struct Audit {
    file: Mutex<File>,
}

impl Audit {
    pub(crate) fn open(path: &Path) -> Result<Audit, ServerError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| ServerError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(Audit {
            file: Mutex::new(file),
        })
    }

    /// Logs a request if it writes. A failed log write is reported, not fatal:
    /// the request has already been answered by then.
    pub(crate) fn write(&self, user: &User, a: &Attributes<'_>, code: u16) {
        if !matches!(
            a.verb,
            "create" | "update" | "patch" | "delete" | "deletecollection"
        ) {
            return;
        }
        let mut line = json!({
            "time": bosun_api::time::format_time(crate::objects::now()),
            "user": user.name,
            "groups": user.groups,
            "verb": a.verb,
            "group": a.res.group,
            "resource": a.res.plural,
            "subresource": a.subresource,
            "namespace": a.namespace,
            "name": a.name.or(a.created),
            "code": code,
        })
        .to_string();
        line.push('\n');
        let mut file = self.file.lock().expect("audit log");
        if let Err(e) = file.write_all(line.as_bytes()) {
            eprintln!("bosun server: audit log: {e}");
        }
    }
}
