//! `/containers/…` and `/exec/…`.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::stream::{self, Follow, From, encode_entry};
use super::{Body, Call, json_response, no_content, ok_json, read_json, status_only};
use crate::engine::{Container, Engine, WaitCondition};
use crate::error::EngineError;
use crate::exec::ExecRequest;
use crate::logs::{Filter, mux_frame};
use crate::model::{CreateRequest, Record, Status};
use crate::shim::frame;
use crate::time::{now_unix, parse_filter_time, unix_of};

pub(super) async fn dispatch(
    engine: &Arc<Engine>,
    call: Call,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let seg: Vec<&str> = call.segments.iter().map(String::as_str).collect();
    match (call.method.clone(), &seg[1..]) {
        (Method::GET, ["json"]) => list(engine, &call),
        (Method::POST, ["create"]) => {
            let body: CreateRequest = read_json(req).await?;
            let id = engine
                .create(call.param("name").filter(|n| !n.is_empty()), body)
                .await?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"Id": id, "Warnings": []}),
            ))
        }
        (Method::POST, ["prune"]) => prune(engine, &call).await,
        (Method::GET, [id, "json"]) => Ok(ok_json(&inspect(&engine.find(id)?.record()))),
        (Method::POST, [id, "start"]) => match engine.start(id).await? {
            true => Ok(no_content()),
            false => Ok(status_only(StatusCode::NOT_MODIFIED)),
        },
        (Method::POST, [id, "stop"]) => {
            let t = call.int("t")?.or(call.int("timeout")?);
            match engine.stop(id, t, call.param("signal")).await? {
                true => Ok(no_content()),
                false => Ok(status_only(StatusCode::NOT_MODIFIED)),
            }
        }
        (Method::POST, [id, "restart"]) => {
            let t = call.int("t")?.or(call.int("timeout")?);
            engine.restart(id, t).await?;
            Ok(no_content())
        }
        (Method::POST, [id, "kill"]) => {
            engine.kill(id, call.param("signal").unwrap_or("")).await?;
            Ok(no_content())
        }
        (Method::POST, [id, "pause"]) => {
            engine.pause(id).await?;
            Ok(no_content())
        }
        (Method::POST, [id, "unpause"]) => {
            engine.unpause(id).await?;
            Ok(no_content())
        }
        (Method::POST, [id, "rename"]) => {
            let name = call
                .param("name")
                .ok_or_else(|| EngineError::Invalid("rename needs a name".into()))?;
            engine.rename(id, name)?;
            Ok(no_content())
        }
        (Method::POST, [id, "wait"]) => wait(engine, id, &call),
        (Method::DELETE, [id]) => {
            engine
                .remove(id, call.flag("force"), call.flag("v"))
                .await?;
            Ok(no_content())
        }
        (Method::POST, [id, "attach"]) => attach(engine, id, &call, req),
        (Method::POST, [id, "resize"]) => {
            let c = engine.find(id)?;
            let (h, w) = size(&call)?;
            c.control(&frame::resize(h, w)).await;
            Ok(status_only(StatusCode::OK))
        }
        (Method::GET, [id, "logs"]) => logs(engine, id, &call),
        (Method::POST, [id, "update"]) => {
            let body: Update = read_json(req).await?;
            let policy = body.restart_policy.filter(|p| !p.name.is_empty());
            engine.update_container(id, &body.host, policy)?;
            Ok(ok_json(&json!({"Warnings": []})))
        }
        (Method::GET | Method::HEAD, [id, "archive"]) => {
            let path = call
                .param("path")
                .ok_or_else(|| EngineError::Invalid("archive needs a path".into()))?
                .to_owned();
            let c = engine.find(id)?;
            let stat = {
                let _frozen = engine.freeze_for_copy(&c)?;
                let located = engine.locate(&c, &path)?;
                crate::archive::stat_json(&located.host, &path)?
            };
            let header = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                stat.to_string(),
            );
            let mut resp = if call.method == Method::HEAD {
                status_only(StatusCode::OK)
            } else {
                let (mut w, resp) = stream::blocking("application/x-tar");
                let engine = engine.clone();
                let id = id.to_string();
                tokio::task::spawn_blocking(move || {
                    if engine.archive_out(&id, &path, &mut w).is_err() {
                        w.fail();
                    }
                });
                resp
            };
            if let Ok(v) = hyper::header::HeaderValue::from_str(&header) {
                resp.headers_mut().insert("X-Docker-Container-Path-Stat", v);
            }
            Ok(resp)
        }
        (Method::PUT, [id, "archive"]) => {
            let path = call
                .param("path")
                .ok_or_else(|| EngineError::Invalid("archive needs a path".into()))?
                .to_owned();
            engine.find(id)?;
            let tmp = engine
                .data_dir()
                .join("build-contexts")
                .join(format!("cp-{}.tar", crate::engine::random_id()));
            super::spool_body(req, &tmp, None).await?;
            let engine2 = engine.clone();
            let id = id.to_string();
            let tmp2 = tmp.clone();
            let done = tokio::task::spawn_blocking(move || engine2.archive_in(&id, &path, &tmp2))
                .await
                .map_err(|e| EngineError::internal("archive", e));
            let _ = std::fs::remove_file(&tmp);
            done??;
            Ok(status_only(StatusCode::OK))
        }
        (Method::GET, [id, "export"]) => {
            engine.find(id)?;
            let (mut w, resp) = stream::blocking("application/x-tar");
            let engine = engine.clone();
            let id = id.to_string();
            tokio::task::spawn_blocking(move || {
                if engine.export(&id, &mut w).is_err() {
                    w.fail();
                }
            });
            Ok(resp)
        }
        (Method::GET, [id, "top"]) => top(engine, id),
        (Method::GET, [id, "stats"]) => stats(engine, id, &call),
        (Method::POST, [id, "exec"]) => {
            let body: ExecRequest = read_json(req).await?;
            let exec_id = engine.exec_create(id, body)?;
            Ok(json_response(StatusCode::CREATED, &json!({"Id": exec_id})))
        }
        _ => Err(call.not_found()),
    }
}

/// The body of `POST /containers/{id}/update`.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct Update {
    #[serde(flatten)]
    host: crate::model::HostConfig,
    restart_policy: Option<crate::model::RestartPolicy>,
}

fn size(call: &Call) -> Result<(u16, u16), EngineError> {
    let h = call.int("h")?.unwrap_or(0);
    let w = call.int("w")?.unwrap_or(0);
    let ok = |v: i64| {
        u16::try_from(v).map_err(|_| EngineError::Invalid(format!("invalid terminal size {v}")))
    };
    Ok((ok(h)?, ok(w)?))
}

/// Docker's `Status` column: `Up 5 seconds`, `Exited (0) 2 minutes ago`.
fn human_duration(secs: i64) -> String {
    match secs {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".into(),
        s if s < 48 * 3600 => format!("{} hours", s / 3600),
        s => format!("{} days", s / 86400),
    }
}

fn status_text(rec: &Record) -> String {
    let since = |t: &str| human_duration(now_unix() - unix_of(t).unwrap_or(now_unix()));
    match rec.state.status {
        Status::Created => "Created".into(),
        Status::Running => {
            let health = match rec.state.health.as_ref().map(|h| h.status.as_str()) {
                Some("starting") => " (health: starting)",
                Some("healthy") => " (healthy)",
                Some("unhealthy") => " (unhealthy)",
                _ => "",
            };
            format!("Up {}{health}", since(&rec.state.started_at))
        }
        Status::Paused => format!("Up {} (Paused)", since(&rec.state.started_at)),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            rec.state.exit_code,
            since(&rec.state.finished_at)
        ),
        Status::Removing => "Removal In Progress".into(),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            rec.state.exit_code,
            since(&rec.state.finished_at)
        ),
        Status::Dead => "Dead".into(),
    }
}

fn ports_json(rec: &Record) -> (Value, Value) {
    // `ps` form and `inspect` form.
    let list: Vec<Value> = rec
        .ports
        .iter()
        .map(|p| {
            json!({"IP": p.host_ip, "PrivatePort": p.container_port,
                   "PublicPort": p.host_port, "Type": p.protocol})
        })
        .collect();
    let mut map = serde_json::Map::new();
    for key in rec.config.exposed_ports.keys() {
        map.insert(key.clone(), Value::Null);
    }
    for p in &rec.ports {
        let key = format!("{}/{}", p.container_port, p.protocol);
        let entry = map.entry(key).or_insert(Value::Null);
        if !entry.is_array() {
            *entry = json!([]);
        }
        if let Some(a) = entry.as_array_mut() {
            a.push(json!({"HostIp": p.host_ip, "HostPort": p.host_port.to_string()}));
        }
    }
    (Value::Array(list), Value::Object(map))
}

fn networks_json(rec: &Record) -> Value {
    let mut nets = serde_json::Map::new();
    for e in &rec.endpoints {
        nets.insert(
            e.network.clone(),
            json!({
                "IPAMConfig": null, "Links": null, "Aliases": e.aliases,
                "NetworkID": e.network_id, "EndpointID": format!("{}-{}", e.network_id.get(..12).unwrap_or(""), rec.short_id()),
                "Gateway": e.gateway, "IPAddress": e.ip, "IPPrefixLen": e.prefix,
                "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                "MacAddress": e.mac, "DNSNames": [rec.name.clone(), rec.short_id().to_owned()],
            }),
        );
    }
    if rec.endpoints.is_empty() {
        let mode = rec.network_mode().to_owned();
        nets.insert(
            mode.clone(),
            json!({"NetworkID": crate::network::network_id(&mode), "IPAddress": "", "Gateway": "",
                   "IPPrefixLen": 0, "MacAddress": "", "Aliases": null}),
        );
    }
    Value::Object(nets)
}

fn mounts_json(rec: &Record) -> Value {
    Value::Array(
        rec.mounts
            .iter()
            .map(|m| {
                json!({
                    "Type": m.kind, "Name": m.name, "Source": m.source,
                    "Destination": m.destination, "Driver": if m.kind == "volume" { "local" } else { "" },
                    "Mode": if m.rw { "" } else { "ro" }, "RW": m.rw, "Propagation": "",
                })
            })
            .collect(),
    )
}

/// The stored HostConfig plus what bosun fixes: logs are json-file.
fn host_config_json(rec: &Record) -> Value {
    let mut v = serde_json::to_value(&rec.host_config).unwrap_or(Value::Null);
    v["LogConfig"] = json!({"Type": "json-file", "Config": {}});
    v
}

/// `GET /containers/{id}/json`.
pub(super) fn inspect(rec: &Record) -> Value {
    let s = &rec.state;
    let (_, ports) = ports_json(rec);
    let first = rec.endpoints.first();
    let health = s
        .health
        .as_ref()
        .map(|h| json!({"Status": h.status, "FailingStreak": h.failing_streak, "Log": h.log}));
    json!({
        "Id": rec.id,
        "Created": rec.created,
        "Path": rec.path,
        "Args": rec.args,
        "State": {
            "Status": s.status.as_str(),
            "Running": s.status.is_live(),
            "Paused": s.status == Status::Paused,
            "Restarting": s.status == Status::Restarting,
            "OOMKilled": s.oom_killed,
            "Dead": s.status == Status::Dead,
            "Pid": s.pid,
            "ExitCode": s.exit_code,
            "Error": s.error,
            "StartedAt": s.started_at,
            "FinishedAt": s.finished_at,
            "Health": health,
        },
        "Image": rec.image_id,
        "ResolvConfPath": "",
        "HostnamePath": "",
        "HostsPath": "",
        "LogPath": "",
        "Name": format!("/{}", rec.name),
        "RestartCount": rec.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": null,
        "HostConfig": host_config_json(rec),
        "GraphDriver": {"Name": "overlay", "Data": null},
        "Mounts": mounts_json(rec),
        "Config": rec.config,
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": "",
            "SandboxKey": if s.pid > 0 { format!("/proc/{}/ns/net", s.pid) } else { String::new() },
            "Ports": ports,
            "HairpinMode": false,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "SecondaryIPAddresses": null,
            "SecondaryIPv6Addresses": null,
            "EndpointID": "",
            "Gateway": first.map_or("", |e| e.gateway.as_str()),
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "IPAddress": first.map_or("", |e| e.ip.as_str()),
            "IPPrefixLen": first.map_or(0, |e| e.prefix),
            "IPv6Gateway": "",
            "MacAddress": first.map_or("", |e| e.mac.as_str()),
            "Networks": networks_json(rec),
        },
    })
}

fn summary(rec: &Record) -> Value {
    let (ports, _) = ports_json(rec);
    let command = std::iter::once(rec.path.as_str())
        .chain(rec.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    json!({
        "Id": rec.id,
        "Names": [format!("/{}", rec.name)],
        "Image": rec.image,
        "ImageID": rec.image_id,
        "Command": command,
        "Created": unix_of(&rec.created).unwrap_or(0),
        "Ports": ports,
        "Labels": rec.config.labels,
        "State": rec.state.status.as_str(),
        "Status": status_text(rec),
        "HostConfig": {"NetworkMode": rec.network_mode()},
        "NetworkSettings": {"Networks": networks_json(rec)},
        "Mounts": mounts_json(rec),
    })
}

/// Whether a container passes `ps` filters: values of one key OR, keys AND.
fn passes(
    engine: &Engine,
    rec: &Record,
    filters: &[(String, String)],
) -> Result<bool, EngineError> {
    let mut by_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in filters {
        by_key.entry(k).or_default().push(v);
    }
    for (key, values) in by_key {
        let ok = match key {
            "status" => values.iter().any(|v| *v == rec.state.status.as_str()),
            "id" => values.iter().any(|v| rec.id.starts_with(v)),
            "name" => values
                .iter()
                .any(|v| rec.name.contains(v.trim_start_matches('/'))),
            "label" => values.iter().all(|v| match v.split_once('=') {
                Some((k, val)) => rec.config.labels.get(k).is_some_and(|x| x == val),
                None => rec.config.labels.contains_key(*v),
            }),
            "ancestor" => values.iter().any(|v| {
                rec.image == *v
                    || rec
                        .image_id
                        .trim_start_matches("sha256:")
                        .starts_with(v.trim_start_matches("sha256:"))
                    || engine
                        .image_store()
                        .resolve(v)
                        .is_ok_and(|d| d.to_string() == rec.manifest)
            }),
            "exited" => values.iter().any(|v| {
                rec.state.status == Status::Exited && v.parse() == Ok(rec.state.exit_code)
            }),
            "network" => values.iter().any(|v| rec.network_mode() == *v),
            other => {
                return Err(EngineError::Invalid(format!("invalid filter '{other}'")));
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn list(engine: &Engine, call: &Call) -> Result<Response<Body>, EngineError> {
    let all = call.flag("all");
    let filters = call.filters()?;
    let limit = call.int("limit")?.filter(|l| *l > 0);
    let mut recs: Vec<Record> = engine.all().iter().map(|c| c.record()).collect();
    recs.sort_by(|a, b| b.created.cmp(&a.created));
    let mut out = Vec::new();
    for rec in &recs {
        let shown = all
            || limit.is_some()
            || rec.state.status.is_live()
            || rec.state.status == Status::Restarting;
        if shown && passes(engine, rec, &filters)? {
            out.push(summary(rec));
        }
    }
    if let Some(l) = limit {
        out.truncate(l as usize);
    }
    Ok(ok_json(&Value::Array(out)))
}

async fn prune(engine: &Arc<Engine>, call: &Call) -> Result<Response<Body>, EngineError> {
    let filters = call.filters()?;
    let mut deleted = Vec::new();
    for c in engine.all() {
        let rec = c.record();
        let label_ok = filters
            .iter()
            .filter(|(k, _)| k == "label")
            .all(|(_, v)| passes(engine, &rec, &[("label".into(), v.clone())]).unwrap_or(false));
        let stopped = matches!(
            rec.state.status,
            Status::Exited | Status::Created | Status::Dead
        );
        if stopped && label_ok && engine.remove(&rec.id, false, false).await.is_ok() {
            deleted.push(rec.id);
        }
    }
    Ok(ok_json(
        &json!({"ContainersDeleted": deleted, "SpaceReclaimed": 0}),
    ))
}

/// `wait`: the headers go out at once (the docker CLI waits for them before
/// it starts the container); the body when the condition holds.
fn wait(engine: &Arc<Engine>, id: &str, call: &Call) -> Result<Response<Body>, EngineError> {
    let condition = match call.param("condition").unwrap_or("not-running") {
        "" | "not-running" => WaitCondition::NotRunning,
        "next-exit" => WaitCondition::NextExit,
        "removed" => WaitCondition::Removed,
        other => {
            return Err(EngineError::Invalid(format!(
                "invalid condition {other:?}: not-running, next-exit or removed"
            )));
        }
    };
    let waiter = engine.waiter(id, condition)?;
    let (tx, mut resp) = stream::channel("application/json");
    tokio::spawn(async move {
        let code = waiter.wait().await;
        let body = json!({"StatusCode": code, "Error": null}).to_string();
        let _ = tx.send(Bytes::from(body)).await;
    });
    *resp.status_mut() = StatusCode::OK;
    Ok(resp)
}

fn logs(engine: &Arc<Engine>, id: &str, call: &Call) -> Result<Response<Body>, EngineError> {
    let c = engine.find(id)?;
    let rec = c.record();
    let mut filter = Filter {
        stdout: call.flag("stdout"),
        stderr: call.flag("stderr"),
        since: None,
        until: None,
        tail: None,
    };
    if !filter.stdout && !filter.stderr {
        return Err(EngineError::Invalid(
            "Bad parameters: you must choose at least one stream".into(),
        ));
    }
    for (name, slot) in [("since", &mut filter.since), ("until", &mut filter.until)] {
        if let Some(v) = call.param(name).filter(|v| !v.is_empty() && *v != "0") {
            *slot =
                Some(parse_filter_time(v).ok_or_else(|| {
                    EngineError::Invalid(format!("invalid value for {name}: {v:?}"))
                })?);
        }
    }
    filter.tail = match call.param("tail") {
        None | Some("" | "all") => None,
        Some(n) => Some(
            n.parse()
                .map_err(|_| EngineError::Invalid(format!("invalid value for tail: {n:?}")))?,
        ),
    };
    let tty = rec.config.tty;
    let timestamps = call.flag("timestamps");
    let (tx, resp) = stream::channel(if tty {
        stream::RAW_STREAM
    } else {
        stream::MUX_STREAM
    });
    let follow = Follow {
        container: c,
        filter,
        from: From::Start,
        follow: call.flag("follow"),
    };
    tokio::spawn(follow.run(move |e| {
        let tx = tx.clone();
        Box::pin(async move {
            tx.send(Bytes::from(encode_entry(&e, tty, timestamps)))
                .await
                .is_ok()
        })
    }));
    Ok(resp)
}

/// `attach`: output as it comes, stdin to the container's shim.
fn attach(
    engine: &Arc<Engine>,
    id: &str,
    call: &Call,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let c = engine.find(id)?;
    let rec = c.record();
    if matches!(
        rec.state.status,
        Status::Exited | Status::Dead | Status::Removing
    ) && !call.flag("logs")
    {
        return Err(EngineError::Conflict(
            "You cannot attach to a stopped container, start it first".into(),
        ));
    }
    let tty = rec.config.tty;
    let want_stdin = call.flag("stdin") && rec.config.open_stdin;
    let stdin_once = rec.config.stdin_once;
    let filter = Filter {
        stdout: call.flag("stdout"),
        stderr: call.flag("stderr"),
        ..Default::default()
    };
    let follow = Follow {
        container: c.clone(),
        filter,
        from: if call.flag("logs") {
            From::Start
        } else {
            From::End
        },
        follow: call.flag("stream"),
    };
    Ok(stream::hijack(req, tty, move |io| async move {
        let (mut rd, mut wr) = tokio::io::split(io);
        let input = want_stdin.then(|| {
            let c = c.clone();
            tokio::spawn(async move {
                // `docker run -i` attaches before it starts the container:
                // input waits for the shim.
                let mut rx = c.subscribe();
                let exits = rx.borrow().exits;
                let started = rx
                    .wait_for(|ch| ch.status.is_live() || ch.exits > exits || ch.removed)
                    .await
                    .is_ok_and(|ch| ch.status.is_live());
                if !started {
                    return;
                }
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => {
                            // The client half-closed: stdin ends with
                            // StdinOnce, and always without a terminal (a pipe's
                            // EOF is the end; Docker keeps a non-StdinOnce stdin
                            // open, which leaves `start -ai` of a piped program
                            // waiting forever).
                            if stdin_once || !tty {
                                c.control(&frame::encode(frame::CLOSE_STDIN, &[])).await;
                            }
                            break;
                        }
                        Ok(n) => {
                            if !c.control(&frame::encode(frame::STDIN, &buf[..n])).await {
                                break;
                            }
                        }
                    }
                }
            })
        });
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        let writer = tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    return;
                }
            }
            let _ = wr.shutdown().await;
        });
        follow
            .run(move |e| {
                let tx = tx.clone();
                Box::pin(async move {
                    tx.send(Bytes::from(encode_entry(&e, tty, false)))
                        .await
                        .is_ok()
                })
            })
            .await;
        let _ = writer.await;
        if let Some(input) = input {
            input.abort();
        }
    }))
}

fn top(engine: &Engine, id: &str) -> Result<Response<Body>, EngineError> {
    let pids = engine.pids(id)?;
    let mut rows = Vec::new();
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split_whitespace().next().unwrap_or("").to_owned())
                .unwrap_or_default()
        };
        let uid = field("Uid:");
        let ppid = field("PPid:");
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                b.split(|c| *c == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        rows.push(json!([
            uid,
            pid.to_string(),
            ppid,
            "0",
            "-",
            "?",
            "00:00:00",
            cmd
        ]));
    }
    Ok(ok_json(&json!({
        "Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
        "Processes": rows,
    })))
}

fn stats_once(engine: &Engine, c: &Container) -> Value {
    let rec = c.record();
    let raw = if rec.state.status.is_live() {
        engine.stats(&c.id).unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    let mem = &raw["memory"];
    let cpu = &raw["cpu"];
    let usage = cpu["usage"]["total"].as_u64().unwrap_or(0);
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    json!({
        "read": crate::time::now_rfc3339_nano(),
        "preread": crate::time::ZERO,
        "id": rec.id,
        "name": format!("/{}", rec.name),
        "pids_stats": {"current": raw["pids"]["current"].as_u64().unwrap_or(0)},
        "cpu_stats": {
            "cpu_usage": {"total_usage": usage, "usage_in_kernelmode": cpu["usage"]["kernel"], "usage_in_usermode": cpu["usage"]["user"]},
            "system_cpu_usage": system_cpu_ns(),
            "online_cpus": online,
        },
        "precpu_stats": {"cpu_usage": {"total_usage": 0}, "system_cpu_usage": 0, "online_cpus": online},
        "memory_stats": {
            "usage": mem["usage"]["usage"].as_u64().unwrap_or(0),
            "limit": mem["usage"]["limit"].as_u64().unwrap_or(0),
            "max_usage": mem["usage"]["max"].as_u64().unwrap_or(0),
            "stats": mem["stats"],
        },
        "networks": {},
        "blkio_stats": {},
        "raw": raw,
    })
}

/// Host CPU time in nanoseconds, from /proc/stat (Docker's `system_cpu_usage`).
fn system_cpu_ns() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = text
        .lines()
        .next()
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    // USER_HZ is 100 on Linux.
    ticks * 10_000_000
}

fn stats(engine: &Arc<Engine>, id: &str, call: &Call) -> Result<Response<Body>, EngineError> {
    let c = engine.find(id)?;
    let stream_it = call
        .param("stream")
        .is_none_or(|v| matches!(v, "1" | "true" | "True"));
    if !stream_it || call.flag("one-shot") {
        return Ok(ok_json(&stats_once(engine, &c)));
    }
    let (tx, resp) = stream::channel("application/json");
    let engine = engine.clone();
    tokio::spawn(async move {
        let mut prev: Option<Value> = None;
        loop {
            let mut now = stats_once(&engine, &c);
            if let Some(p) = prev.take() {
                now["precpu_stats"] = p["cpu_stats"].clone();
                now["preread"] = p["read"].clone();
            }
            let line = format!("{now}\n");
            if tx.send(Bytes::from(line)).await.is_err() {
                return;
            }
            if !c.record().state.status.is_live() {
                return;
            }
            prev = Some(now);
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
    Ok(resp)
}

pub(super) async fn dispatch_exec(
    engine: &Arc<Engine>,
    call: Call,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let seg: Vec<&str> = call.segments.iter().map(String::as_str).collect();
    match (call.method.clone(), &seg[1..]) {
        (Method::GET, [id, "json"]) => Ok(ok_json(&engine.exec(id)?.inspect())),
        (Method::POST, [id, "resize"]) => {
            let exec = engine.exec(id)?;
            let (h, w) = size(&call)?;
            if let Some(stdin) = exec.control.lock().await.as_mut() {
                let _ = stdin.write_all(&frame::resize(h, w)).await;
            }
            Ok(status_only(StatusCode::OK))
        }
        (Method::POST, [id, "start"]) => exec_start(engine, id, req).await,
        _ => Err(call.not_found()),
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ExecStart {
    detach: bool,
}

async fn exec_start(
    engine: &Arc<Engine>,
    id: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let exec = engine.exec(id)?;
    let (parts, body) = req.into_parts();
    let start: ExecStart = {
        let bytes = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, 1 << 20))
            .await
            .map(|c| c.to_bytes())
            .map_err(|e| EngineError::Invalid(format!("cannot read the request body: {e}")))?;
        match bytes.iter().all(u8::is_ascii_whitespace) {
            true => ExecStart::default(),
            false => serde_json::from_slice(&bytes)
                .map_err(|e| EngineError::Invalid(format!("invalid JSON body: {e}")))?,
        }
    };
    let mut running = engine.exec_spawn(&exec)?;
    let tty = exec.request.tty;
    let stdin = running.child.stdin.take();
    let mut stdout = running.child.stdout.take().expect("piped");
    let mut stderr = running.child.stderr.take().expect("piped");
    *exec.control.lock().await = stdin;
    let engine = engine.clone();
    let finish = {
        let exec = exec.clone();
        move |mut child: tokio::process::Child, status_file: std::path::PathBuf| async move {
            let status = child.wait().await;
            let code = status.ok().and_then(|s| s.code()).unwrap_or(255);
            *exec.control.lock().await = None;
            engine.exec_finish(&exec, code, &status_file)
        }
    };
    if start.detach {
        tokio::spawn(async move {
            // Nobody reads; drain so the process never blocks on a full pipe.
            let (mut out_sink, mut err_sink) = (tokio::io::sink(), tokio::io::sink());
            let _ = tokio::join!(
                tokio::io::copy(&mut stdout, &mut out_sink),
                tokio::io::copy(&mut stderr, &mut err_sink)
            );
            finish(running.child, running.status_file).await;
        });
        return Ok(status_only(StatusCode::OK));
    }
    let req = Request::from_parts(parts, ());
    let wants_stdin = exec.request.attach_stdin;
    Ok(stream::hijack(req, tty, move |io| async move {
        let (mut rd, mut wr) = tokio::io::split(io);
        let input = wants_stdin.then(|| {
            let exec = exec.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = rd.read(&mut buf).await.unwrap_or(0);
                    let mut guard = exec.control.lock().await;
                    let Some(stdin) = guard.as_mut() else { break };
                    let msg = match n {
                        0 => frame::encode(frame::CLOSE_STDIN, &[]),
                        n => frame::encode(frame::STDIN, &buf[..n]),
                    };
                    if stdin.write_all(&msg).await.is_err() || n == 0 {
                        break;
                    }
                }
            })
        });
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(u8, Bytes)>(64);
        let pump = |mut r: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                    kind: u8,
                    tx: tokio::sync::mpsc::Sender<(u8, Bytes)>| async move {
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n @ 1..) = r.read(&mut buf).await {
                if tx
                    .send((kind, Bytes::copy_from_slice(&buf[..n])))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        };
        let out_task = tokio::spawn(pump(Box::new(stdout), 1, tx.clone()));
        let err_task = tokio::spawn(pump(Box::new(stderr), 2, tx));
        let writer = tokio::spawn(async move {
            while let Some((kind, b)) = rx.recv().await {
                let bytes = if tty { b.to_vec() } else { mux_frame(kind, &b) };
                if wr.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            wr
        });
        let _ = out_task.await;
        let _ = err_task.await;
        let error = finish(running.child, running.status_file).await;
        if let Ok(mut wr) = writer.await {
            if let Some(msg) = error {
                let text = format!("OCI runtime exec failed: {msg}\r\n");
                let bytes = if tty {
                    text.into_bytes()
                } else {
                    mux_frame(2, text.as_bytes())
                };
                let _ = wr.write_all(&bytes).await;
            }
            let _ = wr.shutdown().await;
        }
        if let Some(input) = input {
            input.abort();
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }
}
