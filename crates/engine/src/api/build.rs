//! `POST /build`: Docker's legacy builder endpoint. The tar context is
//! unpacked into a directory of its own, the bosun builder runs on it, and
//! its output goes back as `{"stream": …}` lines, then `{"aux":{"ID":…}}`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use bosun_image::build::BuildOptions;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Body, Call, stream};
use crate::engine::{Engine, random_id};
use crate::error::EngineError;

/// The largest context accepted (the tar as sent).
const MAX_CONTEXT: u64 = 8 << 30;

/// Removes the unpacked context however the build ends.
struct ContextDir(PathBuf);

impl Drop for ContextDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Builder output as `{"stream": …}` lines.
struct StreamWriter(mpsc::UnboundedSender<Value>);

impl Write for StreamWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.send(json!({"stream": String::from_utf8_lossy(buf)}));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn options(call: &Call, context: PathBuf) -> Result<BuildOptions, EngineError> {
    let mut tags = Vec::new();
    for (k, v) in &call.query {
        if k == "t" && !v.is_empty() {
            tags.push(
                v.parse()
                    .map_err(|e| EngineError::Invalid(format!("invalid tag {v:?}: {e}")))?,
            );
        }
    }
    let build_args: BTreeMap<String, String> = match call.param("buildargs") {
        Some(raw) if !raw.is_empty() => {
            let map: BTreeMap<String, Option<String>> = serde_json::from_str(raw)
                .map_err(|e| EngineError::Invalid(format!("invalid buildargs: {e}")))?;
            map.into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect()
        }
        _ => BTreeMap::new(),
    };
    if let Some(p) = call
        .param("platform")
        .filter(|p| !p.is_empty() && *p != "linux/amd64")
    {
        return Err(EngineError::Invalid(format!(
            "platform {p:?}: only linux/amd64 is built here"
        )));
    }
    let containerfile = call
        .param("dockerfile")
        .filter(|d| !d.is_empty())
        .map(|d| {
            let rel = PathBuf::from(d);
            if rel.is_absolute()
                || rel
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
            {
                Err(EngineError::Invalid(format!(
                    "dockerfile {d:?} must be a path inside the context"
                )))
            } else {
                Ok(context.join(rel))
            }
        })
        .transpose()?;
    Ok(BuildOptions {
        context,
        containerfile,
        tags,
        build_args,
        target: call
            .param("target")
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
        no_cache: call.flag("nocache"),
    })
}

pub(super) async fn build(
    engine: &Arc<Engine>,
    call: Call,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let root = engine.data_dir().join("build-contexts");
    std::fs::create_dir_all(&root).map_err(|e| EngineError::internal("build contexts", e))?;
    let dir = ContextDir(root.join(random_id()));
    let context = dir.0.join("context");
    std::fs::create_dir_all(&context).map_err(|e| EngineError::internal("build context", e))?;
    let opts = options(&call, context.clone())?;

    // The context arrives as a tar body; it goes to a file first, so a slow
    // client never holds a blocking thread.
    let tarball = dir.0.join("context.tar");
    super::spool_body(req, &tarball, Some((MAX_CONTEXT, "the build context"))).await?;
    let unpack_to = context.clone();
    let tar_path = tarball.clone();
    tokio::task::spawn_blocking(move || -> Result<(), EngineError> {
        let f = std::fs::File::open(&tar_path).map_err(|e| EngineError::internal("context", e))?;
        let mut magic = [0u8; 2];
        let compressed =
            std::io::Read::read(&mut &f, &mut magic).is_ok_and(|n| n == 2) && magic == [0x1f, 0x8b];
        if compressed {
            return Err(EngineError::Invalid(
                "compressed build contexts are not supported: send a plain tar".into(),
            ));
        }
        let f = std::fs::File::open(&tar_path).map_err(|e| EngineError::internal("context", e))?;
        // tar refuses entries that would land outside the directory.
        tar::Archive::new(f).unpack(&unpack_to).map_err(|e| {
            EngineError::Invalid(format!("the build context is not a valid tar: {e}"))
        })?;
        let _ = std::fs::remove_file(&tar_path);
        Ok(())
    })
    .await
    .map_err(|e| EngineError::internal("unpack the context", e))??;

    let (tx, rx) = mpsc::unbounded_channel::<Value>();
    let quiet = call.flag("q");
    let engine2 = engine.clone();
    let tags: Vec<String> = opts
        .tags
        .iter()
        .map(|t| super::system::short_ref(&t.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let _dir = dir;
        let runner = crate::build::ChildRuntime::new(engine2.exe().to_path_buf());
        let mut out = StreamWriter(tx.clone());
        let mut sink = std::io::sink();
        let writer: &mut dyn Write = if quiet { &mut sink } else { &mut out };
        let snapshots = engine2.snapshotter();
        match bosun_image::build::build(engine2.image_store(), &snapshots, &runner, &opts, writer) {
            Ok(built) => {
                let id = built.id.to_string();
                let _ = tx.send(json!({"aux": {"ID": id}}));
                if !quiet {
                    let short: String = built.id.hex().chars().take(12).collect();
                    let _ = tx.send(json!({"stream": format!("Successfully built {short}\n")}));
                    for t in &tags {
                        let _ = tx.send(json!({"stream": format!("Successfully tagged {t}\n")}));
                    }
                }
                for t in &tags {
                    engine2.emit("image", "tag", t, &[("name", t)]);
                }
            }
            Err(e) => {
                let message = e.to_string();
                let _ = tx.send(json!({"errorDetail": {"message": message}, "error": message}));
            }
        }
    });
    Ok(stream::json_lines(rx))
}
