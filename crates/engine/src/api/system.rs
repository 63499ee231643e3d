//! `/_ping`, `/version`, `/info`, `/events`, `/system/df`, and the image,
//! volume and network endpoints.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::stream;
use super::{
    API_VERSION, Body, Call, MIN_API_VERSION, full, json_response, no_content, ok_json, read_json,
};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::model::Status;
use crate::network::network_id;
use crate::time::{now_unix, parse_filter_time, unix_of};

pub(super) fn ping(method: &Method) -> Response<Body> {
    let body = if method == Method::HEAD { "" } else { "OK" };
    let mut r = Response::new(full(body));
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert("Pragma", HeaderValue::from_static("no-cache"));
    // The legacy builder (`POST /build`): the CLI has no buildx here.
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    r
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

pub(super) fn version() -> Response<Body> {
    let v = env!("CARGO_PKG_VERSION");
    ok_json(&json!({
        "Platform": {"Name": "bosun"},
        "Components": [{"Name": "Engine", "Version": v, "Details": {
            "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": "amd64",
        }}],
        "Version": v,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": "amd64",
        "KernelVersion": kernel_version(),
        "BuildTime": "",
    }))
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

pub(super) fn info(engine: &Engine) -> Response<Body> {
    let recs: Vec<_> = engine.all().iter().map(|c| c.record()).collect();
    let count = |s: Status| recs.iter().filter(|r| r.state.status == s).count();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let images = engine.image_store().list().map(|l| l.len()).unwrap_or(0);
    ok_json(&json!({
        "ID": network_id(&hostname),
        "Containers": recs.len(),
        "ContainersRunning": count(Status::Running),
        "ContainersPaused": count(Status::Paused),
        "ContainersStopped": count(Status::Exited) + count(Status::Created),
        "Images": images,
        "Driver": "overlay",
        "DriverStatus": [["Backing Filesystem", "overlayfs snapshots"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "none"], "Log": ["json-file"]},
        "MemoryLimit": true,
        "SwapLimit": false,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": true,
        "CPUSet": true,
        "PidsLimit": true,
        "IPv4Forwarding": true,
        "Debug": false,
        "NFd": std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0),
        "NGoroutines": 0,
        "SystemTime": crate::time::now_rfc3339_nano(),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": "1",
        "NEventsListener": 0,
        "KernelVersion": kernel_version(),
        "OperatingSystem": "bosun engine",
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": "x86_64",
        "IndexServerAddress": "",
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8"]},
        "NCPU": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "MemTotal": mem_total(),
        "DockerRootDir": engine.data_dir(),
        "Name": hostname,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Runtimes": {"bosun": {"path": engine.exe()}},
        "DefaultRuntime": "bosun",
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "",
        "SecurityOptions": match engine.remapped_root() {
            Some(_) => vec!["name=cgroupns", "name=userns"],
            None => vec!["name=cgroupns"],
        },
        "Warnings": [],
    }))
}

/// `/events`: past events are not kept; `since` in the past starts now,
/// `until` ends the stream.
pub(super) fn events(engine: &Engine, call: &Call) -> Result<Response<Body>, EngineError> {
    let filters = call.filters()?;
    let until = match call.param("until").filter(|v| !v.is_empty()) {
        Some(v) => Some(
            parse_filter_time(v)
                .and_then(|t| unix_of(&t))
                .ok_or_else(|| EngineError::Invalid(format!("invalid value for until: {v:?}")))?,
        ),
        None => None,
    };
    let mut rx = engine.events();
    let (tx, resp) = stream::channel("application/json");
    tokio::spawn(async move {
        loop {
            let next = match until {
                Some(u) => {
                    let left = (u - now_unix()).max(0) as u64;
                    match tokio::time::timeout(std::time::Duration::from_secs(left), rx.recv())
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => return,
                    }
                }
                None => rx.recv().await,
            };
            let ev = match next {
                Ok(ev) => ev,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            let wanted = filters
                .iter()
                .fold(BTreeMap::<&str, bool>::new(), |mut m, (k, v)| {
                    let hit = match k.as_str() {
                        "type" => ev.kind == v,
                        "event" => {
                            ev.action == *v || ev.action.split(':').next() == Some(v.as_str())
                        }
                        "container" => {
                            ev.kind == "container"
                                && (ev.id.starts_with(v.as_str())
                                    || ev.attributes.get("name").is_some_and(|n| n == v))
                        }
                        "image" => ev.attributes.get("image").is_some_and(|i| i == v),
                        "label" => match v.split_once('=') {
                            Some((k, val)) => ev.attributes.get(k).is_some_and(|x| x == val),
                            None => ev.attributes.contains_key(v.as_str()),
                        },
                        _ => true,
                    };
                    *m.entry(k.as_str()).or_default() |= hit;
                    m
                });
            if wanted.values().any(|hit| !hit) {
                continue;
            }
            let secs = ev.time_nano / 1_000_000_000;
            let line = json!({
                "Type": ev.kind, "Action": ev.action, "status": ev.action, "id": ev.id,
                "from": ev.attributes.get("image"),
                "Actor": {"ID": ev.id, "Attributes": ev.attributes},
                "scope": "local", "time": secs, "timeNano": ev.time_nano,
            });
            if tx.send(Bytes::from(format!("{line}\n"))).await.is_err() {
                return;
            }
        }
    });
    Ok(resp)
}

pub(super) fn df(engine: &Engine) -> Result<Response<Body>, EngineError> {
    let images: Vec<Value> = engine
        .image_store()
        .list()?
        .into_iter()
        .map(|i| json!({"Id": i.id.to_string(), "RepoTags": [i.name.to_string()], "Size": i.size, "SharedSize": -1, "Containers": -1, "Created": i.created.as_deref().and_then(unix_of).unwrap_or(0)}))
        .collect();
    let containers: Vec<Value> = engine
        .all()
        .iter()
        .map(|c| {
            let r = c.record();
            json!({"Id": r.id, "Names": [format!("/{}", r.name)], "Image": r.image, "State": r.state.status.as_str(), "SizeRw": 0})
        })
        .collect();
    let volumes: Vec<Value> = engine
        .volumes
        .list()
        .into_iter()
        .map(|v| volume_json(engine, &v, true))
        .collect();
    Ok(ok_json(&json!({
        "LayersSize": 0, "Images": images, "Containers": containers, "Volumes": volumes, "BuildCache": [],
    })))
}

fn volume_json(engine: &Engine, v: &crate::volumes::Volume, usage: bool) -> Value {
    let mut out = json!({
        "Name": v.name, "Driver": "local", "Mountpoint": engine.volumes.data_path(&v.name),
        "CreatedAt": v.created_at, "Labels": v.labels, "Scope": "local", "Options": null,
    });
    if usage {
        let refs = engine
            .all()
            .iter()
            .filter(|c| {
                c.record()
                    .mounts
                    .iter()
                    .any(|m| m.name.as_deref() == Some(v.name.as_str()))
            })
            .count();
        out["UsageData"] = json!({"Size": engine.volumes.size(&v.name), "RefCount": refs});
    }
    out
}

fn volume_in_use(engine: &Engine, name: &str) -> Option<String> {
    engine.all().iter().find_map(|c| {
        let r = c.record();
        r.mounts
            .iter()
            .any(|m| m.name.as_deref() == Some(name))
            .then(|| r.id.clone())
    })
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct VolumeCreate {
    name: Option<String>,
    driver: Option<String>,
    labels: Option<BTreeMap<String, String>>,
}

pub(super) async fn volumes(
    engine: &Arc<Engine>,
    call: Call,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let seg: Vec<&str> = call.segments.iter().map(String::as_str).collect();
    match (call.method.clone(), &seg[1..]) {
        (Method::GET, []) => {
            let filters = call.filters()?;
            let list: Vec<Value> = engine
                .volumes
                .list()
                .iter()
                .filter(|v| {
                    filters.iter().all(|(k, val)| match k.as_str() {
                        "name" => v.name.contains(val.as_str()),
                        "dangling" => {
                            let dangling = volume_in_use(engine, &v.name).is_none();
                            dangling == matches!(val.as_str(), "1" | "true")
                        }
                        "label" => match val.split_once('=') {
                            Some((k, x)) => v.labels.get(k).is_some_and(|y| y == x),
                            None => v.labels.contains_key(val.as_str()),
                        },
                        _ => true,
                    })
                })
                .map(|v| volume_json(engine, v, false))
                .collect();
            Ok(ok_json(&json!({"Volumes": list, "Warnings": []})))
        }
        (Method::POST, ["create"]) => {
            let body: VolumeCreate = read_json(req).await?;
            if let Some(d) = body
                .driver
                .as_deref()
                .filter(|d| !d.is_empty() && *d != "local")
            {
                return Err(EngineError::NotFound(format!(
                    "plugin {d:?} not found: only the local driver is available"
                )));
            }
            let name = body
                .name
                .filter(|n| !n.is_empty())
                .unwrap_or_else(crate::engine::random_id);
            let v = engine
                .volumes
                .create(&name, body.labels.unwrap_or_default(), false)?;
            engine.emit("volume", "create", &v.name, &[("driver", "local")]);
            Ok(json_response(
                StatusCode::CREATED,
                &volume_json(engine, &v, false),
            ))
        }
        (Method::POST, ["prune"]) => {
            let all = call
                .filters()?
                .iter()
                .any(|(k, v)| k == "all" && matches!(v.as_str(), "1" | "true"));
            let mut deleted = Vec::new();
            let mut space = 0;
            for v in engine.volumes.list() {
                if (all || v.anonymous) && volume_in_use(engine, &v.name).is_none() {
                    let size = engine.volumes.size(&v.name);
                    if engine.volumes.remove(&v.name).is_ok() {
                        space += size;
                        deleted.push(v.name);
                    }
                }
            }
            Ok(ok_json(
                &json!({"VolumesDeleted": deleted, "SpaceReclaimed": space}),
            ))
        }
        (Method::GET, [name]) => {
            let v = engine.volumes.get(name)?;
            Ok(ok_json(&volume_json(engine, &v, false)))
        }
        (Method::DELETE, [name]) => {
            engine.volumes.get(name)?;
            if let Some(id) = volume_in_use(engine, name) {
                return Err(EngineError::Conflict(format!(
                    "remove {name}: volume is in use - [{id}]"
                )));
            }
            engine.volumes.remove(name)?;
            engine.emit("volume", "destroy", name, &[("driver", "local")]);
            Ok(no_content())
        }
        _ => Err(call.not_found()),
    }
}

pub(super) async fn images(
    engine: &Arc<Engine>,
    call: Call,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let seg: Vec<&str> = call.segments.iter().map(String::as_str).collect();
    let store = engine.image_store();
    match (call.method.clone(), &seg[1..]) {
        (Method::POST, ["create"]) => super::transfer::pull(engine, &call, &req),
        (Method::GET, ["get"]) => {
            let names: Vec<String> = call
                .query
                .iter()
                .filter(|(k, _)| k == "names")
                .map(|(_, v)| v.clone())
                .collect();
            save(engine, names)
        }
        (Method::GET, [name @ .., "get"]) if !name.is_empty() => save(engine, vec![name.join("/")]),
        (Method::POST, ["load"]) => load(engine, req).await,
        (Method::POST, ["prune"]) => {
            let engine2 = engine.clone();
            let pruned = tokio::task::spawn_blocking(move || {
                bosun_image::snapshot::prune(engine2.image_store(), &engine2.snapshotter())
            })
            .await
            .map_err(|e| EngineError::internal("image prune", e))?
            .map_err(EngineError::from)?;
            let deleted: Vec<Value> = pruned
                .blobs
                .iter()
                .map(|d| json!({"Deleted": d.to_string()}))
                .collect();
            Ok(ok_json(
                &json!({"ImagesDeleted": deleted, "SpaceReclaimed": 0}),
            ))
        }
        (Method::POST, [name @ .., "push"]) if !name.is_empty() => {
            super::transfer::push(engine, &name.join("/"), &call, &req)
        }
        (Method::GET, ["json"]) => {
            let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
            for i in store.list()? {
                let id = i.id.to_string();
                let entry = by_id.entry(id.clone()).or_insert_with(|| {
                    json!({
                        "Id": id, "ParentId": "", "RepoTags": [], "RepoDigests": [],
                        "Created": i.created.as_deref().and_then(unix_of).unwrap_or(0),
                        "Size": i.size, "SharedSize": -1, "Labels": {}, "Containers": -1,
                    })
                });
                if let Some(tags) = entry["RepoTags"].as_array_mut() {
                    tags.push(json!(short_ref(&i.name.to_string())));
                }
                if let Some(d) = entry["RepoDigests"].as_array_mut() {
                    d.push(json!(format!("{}@{}", short_ref(&i.name.name()), i.digest)));
                }
            }
            Ok(ok_json(&Value::Array(by_id.into_values().collect())))
        }
        (Method::GET, [name @ .., "json"]) if !name.is_empty() => {
            let name = name.join("/");
            let d = store.inspect(&name).map_err(|e| match e.kind() {
                bosun_oci::ErrorKind::NotFound => {
                    EngineError::NotFound(format!("No such image: {name}"))
                }
                _ => e.into(),
            })?;
            Ok(ok_json(&image_inspect(&d)))
        }
        (Method::GET, [name @ .., "history"]) if !name.is_empty() => {
            let d = store.inspect(&name.join("/"))?;
            let created = d.config.created().as_deref().and_then(unix_of).unwrap_or(0);
            let hist: Vec<Value> = d
                .config
                .history()
                .iter()
                .flatten()
                .rev()
                .map(|h| {
                    json!({"Id": "<missing>", "Created": h.created().as_deref().and_then(unix_of).unwrap_or(created),
                           "CreatedBy": h.created_by().clone().unwrap_or_default(), "Tags": null,
                           "Size": 0, "Comment": h.comment().clone().unwrap_or_default()})
                })
                .collect();
            Ok(ok_json(&Value::Array(hist)))
        }
        (Method::POST, [name @ .., "tag"]) if !name.is_empty() => {
            let repo = call
                .param("repo")
                .ok_or_else(|| EngineError::Invalid("tag needs a repo".into()))?;
            let target = match call.param("tag").filter(|t| !t.is_empty()) {
                Some(t) => format!("{repo}:{t}"),
                None => repo.to_owned(),
            };
            let dst = target
                .parse()
                .map_err(|e| EngineError::Invalid(format!("invalid reference {target:?}: {e}")))?;
            store.tag(&name.join("/"), &dst)?;
            engine.emit("image", "tag", &target, &[("name", &target)]);
            Ok(super::json_response(StatusCode::CREATED, &json!({})))
        }
        (Method::DELETE, name) if !name.is_empty() => {
            let name = name.join("/");
            let digest = store.resolve(&name)?.to_string();
            if !call.flag("force")
                && let Some(c) = engine.all().iter().find(|c| c.record().manifest == digest)
            {
                return Err(EngineError::Conflict(format!(
                    "conflict: unable to remove repository reference \"{name}\" (must force) - \
                     container {} is using its referenced image",
                    &c.id[..12]
                )));
            }
            let removed = store.remove(&name)?;
            let mut out: Vec<Value> = removed
                .untagged
                .iter()
                .map(|r| json!({"Untagged": short_ref(&r.to_string())}))
                .collect();
            out.extend(
                removed
                    .deleted
                    .iter()
                    .map(|d| json!({"Deleted": d.to_string()})),
            );
            engine.emit("image", "delete", &name, &[("name", &name)]);
            Ok(ok_json(&Value::Array(out)))
        }
        _ => Err(call.not_found()),
    }
}

/// `docker save`: the images as one tar (OCI layout plus Docker's manifest.json).
fn save(engine: &Arc<Engine>, names: Vec<String>) -> Result<Response<Body>, EngineError> {
    if names.is_empty() {
        return Err(EngineError::Invalid(
            "save needs at least one image name".into(),
        ));
    }
    for n in &names {
        engine.image_store().resolve(n)?;
    }
    let (mut w, resp) = stream::blocking("application/x-tar");
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let saved = engine
            .image_store()
            .save(&refs, bosun_image::SaveDest::Stream(&mut w));
        if saved.is_err() {
            w.fail();
        }
    });
    Ok(resp)
}

/// `docker load`: a `docker save` archive or an OCI layout tar in the body.
async fn load(engine: &Arc<Engine>, req: Request<Incoming>) -> Result<Response<Body>, EngineError> {
    let path = engine
        .data_dir()
        .join("build-contexts")
        .join(format!("load-{}.tar", crate::engine::random_id()));
    super::spool_body(req, &path, None).await?;
    let engine2 = engine.clone();
    let path2 = path.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&path2)?;
        engine2
            .image_store()
            .load(bosun_image::LoadSource::Stream(&mut f), None)
            .map_err(|e| std::io::Error::other(e.to_string()))
    })
    .await
    .map_err(|e| EngineError::internal("load", e))?;
    let _ = std::fs::remove_file(&path);
    let names =
        loaded.map_err(|e| EngineError::Invalid(format!("cannot load the archive: {e}")))?;
    let mut out = String::new();
    for n in &names {
        engine.emit("image", "load", &n.to_string(), &[("name", &n.to_string())]);
        // Quiet only drops progress (the docker CLI asks for it when its
        // output is not a terminal); the names are always reported.
        let line = json!({"stream": format!("Loaded image: {}\n", short_ref(&n.to_string()))});
        out.push_str(&format!("{line}\r\n"));
    }
    let mut r = Response::new(full(out));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

/// `docker.io/library/busybox:latest` → `busybox:latest`, as Docker shows it.
pub(super) fn short_ref(full: &str) -> String {
    full.strip_prefix("docker.io/library/")
        .or_else(|| full.strip_prefix("docker.io/"))
        .unwrap_or(full)
        .to_owned()
}

fn image_inspect(d: &bosun_image::ImageDetails) -> Value {
    let c = d.config.config().clone().unwrap_or_default();
    let exposed: BTreeMap<String, Value> = c
        .exposed_ports()
        .iter()
        .flatten()
        .map(|p| (p.clone(), json!({})))
        .collect();
    let volumes: BTreeMap<String, Value> = c
        .volumes()
        .iter()
        .flatten()
        .map(|p| (p.clone(), json!({})))
        .collect();
    json!({
        "Id": d.id.to_string(),
        "RepoTags": d.tags.iter().map(|t| short_ref(&t.to_string())).collect::<Vec<_>>(),
        "RepoDigests": d.tags.iter().map(|t| format!("{}@{}", short_ref(&t.name()), d.digest)).collect::<Vec<_>>(),
        "Parent": "",
        "Comment": "",
        "Created": d.config.created(),
        "DockerVersion": "",
        "Author": d.config.author(),
        "Config": {
            "Hostname": "", "Domainname": "", "User": c.user().clone().unwrap_or_default(),
            "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
            "ExposedPorts": if exposed.is_empty() { Value::Null } else { json!(exposed) },
            "Tty": false, "OpenStdin": false, "StdinOnce": false,
            "Env": c.env(), "Cmd": c.cmd(), "Image": "", "Volumes": if volumes.is_empty() { Value::Null } else { json!(volumes) },
            "WorkingDir": c.working_dir().clone().unwrap_or_default(), "Entrypoint": c.entrypoint(),
            "OnBuild": null, "Labels": c.labels(), "StopSignal": c.stop_signal(),
        },
        "Architecture": d.config.architecture().to_string(),
        "Os": d.config.os().to_string(),
        "Size": d.size,
        "GraphDriver": {"Name": "overlay", "Data": null},
        "RootFS": {"Type": "layers", "Layers": d.config.rootfs().diff_ids()},
        "Metadata": {"LastTagTime": crate::time::ZERO},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_refs() {
        assert_eq!(
            short_ref("docker.io/library/busybox:latest"),
            "busybox:latest"
        );
        assert_eq!(short_ref("docker.io/me/app:1"), "me/app:1");
        assert_eq!(short_ref("localhost:5000/x:y"), "localhost:5000/x:y");
    }
}
