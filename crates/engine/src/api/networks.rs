//! `/networks/…`: the default `bridge`, `host` and `none`, and user-defined
//! bridge networks with embedded DNS.

use std::collections::BTreeMap;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Body, Call, json_response, ok_json, read_json, status_only};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::network::{DEFAULT_NETWORK, NetworkInfo, network_id};

/// `host` and `none`: always there, nothing to set up.
const SPECIAL: [&str; 2] = ["host", "none"];

fn special_json(name: &str) -> Value {
    json!({
        "Name": name, "Id": network_id(name), "Created": crate::time::ZERO, "Scope": "local",
        "Driver": if name == "host" { "host" } else { "null" }, "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null, "Config": []},
        "Internal": false, "Attachable": false, "Ingress": false, "ConfigFrom": {"Network": ""},
        "ConfigOnly": false, "Containers": {}, "Options": {}, "Labels": {},
    })
}

fn network_json(engine: &Engine, net: &NetworkInfo) -> Value {
    let mut containers = serde_json::Map::new();
    for c in engine.all() {
        let r = c.record();
        for e in r.endpoints.iter().filter(|e| e.network == net.name) {
            containers.insert(
                r.id.clone(),
                json!({"Name": r.name, "EndpointID": "", "MacAddress": e.mac,
                       "IPv4Address": format!("{}/{}", e.ip, e.prefix), "IPv6Address": ""}),
            );
        }
    }
    let subnet = net.subnet();
    json!({
        "Name": net.name, "Id": net.id, "Created": net.created, "Scope": "local",
        "Driver": "bridge", "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null,
                 "Config": [{"Subnet": subnet.to_string(), "Gateway": subnet.gateway().to_string()}]},
        "Internal": false, "Attachable": false, "Ingress": false, "ConfigFrom": {"Network": ""},
        "ConfigOnly": false, "Containers": containers,
        "Options": {"com.docker.network.bridge.name": net.bridge},
        "Labels": net.labels,
    })
}

/// A network as the API shows it, by name, id or id prefix.
fn lookup(engine: &Engine, key: &str) -> Result<Value, EngineError> {
    if let Some(s) = SPECIAL
        .iter()
        .find(|n| **n == key || network_id(n).starts_with(key))
    {
        return Ok(special_json(s));
    }
    Ok(network_json(engine, &engine.networks().get(key)?))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct CreateNetwork {
    name: String,
    driver: Option<String>,
    #[serde(rename = "IPAM")]
    ipam: Option<Ipam>,
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Ipam {
    config: Option<Vec<IpamConfig>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct IpamConfig {
    subnet: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct Connect {
    container: String,
    endpoint_config: Option<EndpointConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct EndpointConfig {
    aliases: Option<Vec<String>>,
}

/// Containers (any state) whose network this is.
fn users(engine: &Engine, name: &str) -> Vec<(String, bool)> {
    engine
        .all()
        .iter()
        .map(|c| c.record())
        .filter(|r| r.network_mode() == name)
        .map(|r| (r.id.clone(), r.state.status.is_live()))
        .collect()
}

pub(super) async fn dispatch(
    engine: &Arc<Engine>,
    call: Call,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let seg: Vec<&str> = call.segments.iter().map(String::as_str).collect();
    match (call.method.clone(), &seg[1..]) {
        (Method::GET, []) => {
            let filters = call.filters()?;
            let mut all: Vec<Value> = engine
                .networks()
                .list()
                .iter()
                .map(|n| network_json(engine, n))
                .collect();
            all.extend(SPECIAL.iter().map(|n| special_json(n)));
            all.retain(|n| {
                filters.iter().all(|(k, v)| match k.as_str() {
                    "name" => n["Name"].as_str().is_some_and(|x| x.contains(v.as_str())),
                    "id" => n["Id"].as_str().is_some_and(|x| x.starts_with(v.as_str())),
                    "driver" => n["Driver"] == *v,
                    "label" => match v.split_once('=') {
                        Some((k, x)) => n["Labels"][k] == *x,
                        None => !n["Labels"][v.as_str()].is_null(),
                    },
                    _ => true,
                })
            });
            Ok(ok_json(&Value::Array(all)))
        }
        (Method::POST, ["create"]) => {
            let body: CreateNetwork = read_json(req).await?;
            if let Some(d) = body
                .driver
                .as_deref()
                .filter(|d| !d.is_empty() && *d != "bridge")
            {
                return Err(EngineError::NotFound(format!(
                    "plugin {d:?} not found: only the bridge driver is available"
                )));
            }
            let subnet = body
                .ipam
                .and_then(|i| i.config)
                .and_then(|c| c.into_iter().find_map(|c| c.subnet));
            let (name, labels) = (body.name, body.labels.unwrap_or_default());
            let engine2 = engine.clone();
            let net = tokio::task::spawn_blocking(move || {
                engine2.networks().create(&name, subnet.as_deref(), labels)
            })
            .await
            .map_err(|e| EngineError::internal("network create", e))??;
            engine.start_dns(&net);
            engine.emit(
                "network",
                "create",
                &net.id,
                &[("name", &net.name), ("type", "bridge")],
            );
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"Id": net.id, "Warning": ""}),
            ))
        }
        (Method::POST, ["prune"]) => {
            let mut deleted = Vec::new();
            for net in engine.networks().list() {
                if net.name != DEFAULT_NETWORK && users(engine, &net.name).is_empty() {
                    engine.stop_dns(&net.name);
                    let engine2 = engine.clone();
                    let name = net.name.clone();
                    let removed =
                        tokio::task::spawn_blocking(move || engine2.networks().remove(&name))
                            .await
                            .map_err(|e| EngineError::internal("network prune", e))?;
                    if removed.is_ok() {
                        deleted.push(net.name);
                    }
                }
            }
            Ok(ok_json(&json!({"NetworksDeleted": deleted})))
        }
        (Method::GET, [key]) => Ok(ok_json(&lookup(engine, key)?)),
        (Method::DELETE, [key]) => {
            if let Some(s) = SPECIAL.iter().find(|n| *n == key) {
                return Err(EngineError::Conflict(format!(
                    "{s} is a pre-defined network and cannot be removed"
                )));
            }
            let net = engine.networks().get(key)?;
            let users = users(engine, &net.name);
            if let Some((id, _)) = users.iter().find(|(_, live)| *live) {
                return Err(EngineError::Conflict(format!(
                    "error while removing network: network {} id {} has active endpoints ({id})",
                    net.name, net.id
                )));
            }
            engine.stop_dns(&net.name);
            let engine2 = engine.clone();
            let name = net.name.clone();
            tokio::task::spawn_blocking(move || engine2.networks().remove(&name))
                .await
                .map_err(|e| EngineError::internal("network rm", e))??;
            engine.emit(
                "network",
                "destroy",
                &net.id,
                &[("name", &net.name), ("type", "bridge")],
            );
            Ok(status_only(StatusCode::NO_CONTENT))
        }
        (Method::POST, [key, action @ ("connect" | "disconnect")]) => {
            let body: Connect = read_json(req).await?;
            let name = match SPECIAL.iter().find(|n| *n == key) {
                Some(s) => s.to_string(),
                None => engine.networks().get(key)?.name,
            };
            let aliases = body
                .endpoint_config
                .and_then(|e| e.aliases)
                .unwrap_or_default();
            engine.set_network(&body.container, &name, aliases, *action == "connect")?;
            Ok(status_only(StatusCode::OK))
        }
        _ => Err(call.not_found()),
    }
}
