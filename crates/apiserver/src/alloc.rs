//! Service addresses: cluster IPs from 10.43.0.0/16 and node ports from
//! 30000-32767. Each address taken is a key of its own, written in the same
//! transaction as the service that holds it (see `objects::commit`), so two
//! services never get one address, and a deleted service gives its addresses
//! back in the transaction that deletes it.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use bosun_api::{Cause, Resource, Status};
use bosun_store::{Key, KeyRange, Store};
use serde_json::{Value, json};

use crate::objects::{ApiResult, store_error};

const IP_PREFIX: &str = "/registry/ranges/serviceips/";
const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";
/// The first address of the range, kept for the `kubernetes` service.
pub(crate) const API_SERVICE_IP: &str = "10.43.0.1";
const FIRST_NODE_PORT: u16 = 30000;
const LAST_NODE_PORT: u16 = 32767;

/// The offset of a service IP in 10.43.0.0/16 (network and broadcast excluded).
fn ip_offset(ip: &str) -> Option<u32> {
    let ip: Ipv4Addr = ip.parse().ok()?;
    let [a, b, c, d] = ip.octets();
    let offset = u32::from(c) * 256 + u32::from(d);
    ((a, b) == (10, 43) && (1..=65534).contains(&offset)).then_some(offset)
}

fn ip_of(offset: u32) -> String {
    format!("10.43.{}.{}", offset / 256, offset % 256)
}

fn ip_key(ip: &str) -> Key {
    Key::try_from(format!("{IP_PREFIX}{ip}")).expect("not empty")
}

fn port_key(port: i64) -> Key {
    Key::try_from(format!("{PORT_PREFIX}{port}")).expect("not empty")
}

fn needs_node_ports(obj: &Value) -> bool {
    matches!(
        obj["spec"]["type"].as_str(),
        Some("NodePort" | "LoadBalancer")
    )
}

/// The allocation keys an object holds: a service's cluster IP and node ports.
pub(crate) fn held(obj: &Value) -> BTreeSet<Key> {
    let mut keys = BTreeSet::new();
    if obj["kind"] != "Service" {
        return keys;
    }
    if let Some(ip) = obj["spec"]["clusterIP"]
        .as_str()
        .filter(|ip| ip_offset(ip).is_some())
    {
        keys.insert(ip_key(ip));
    }
    for p in obj["spec"]["ports"].as_array().into_iter().flatten() {
        if let Some(n) = p["nodePort"].as_i64() {
            keys.insert(port_key(n));
        }
    }
    keys
}

/// Where an allocation key points into a service, for the message of a 422.
pub(crate) fn describe(key: &Key) -> (&'static str, String) {
    let k = String::from_utf8_lossy(key.as_bytes()).into_owned();
    match k.strip_prefix(IP_PREFIX) {
        Some(ip) => ("spec.clusterIP", ip.to_owned()),
        None => (
            "spec.ports.nodePort",
            k.strip_prefix(PORT_PREFIX).unwrap_or(&k).to_owned(),
        ),
    }
}

/// The offsets (or ports) taken under `prefix`, read once when something must be picked.
async fn taken(store: &Store, prefix: &str, res: &Resource) -> ApiResult<BTreeSet<String>> {
    let got = store
        .range(&KeyRange::prefix(prefix), None, None)
        .await
        .map_err(|e| store_error(e, res, ""))?;
    Ok(got
        .kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key.as_bytes()[prefix.len()..]).into_owned())
        .collect())
}

fn random_u32() -> ApiResult<u32> {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).map_err(|e| Status::internal(e.to_string()))?;
    Ok(u32::from_le_bytes(b))
}

/// The first free value of `[first, last]` from a random place on, wrapping around.
fn pick(first: u32, last: u32, start: u32, free: impl Fn(u32) -> bool) -> Option<u32> {
    let size = last - first + 1;
    (0..size)
        .map(|i| first + (start + i) % size)
        .find(|v| free(*v))
}

/// Fills in a service's cluster IP and node ports: kept from `old`, checked
/// when given, picked among free ones when missing. Other kinds are left alone.
pub(crate) async fn assign(
    store: &Store,
    res: &Resource,
    name: &str,
    obj: &mut Value,
    old: Option<&Value>,
) -> ApiResult<()> {
    if res.kind != "Service" {
        return Ok(());
    }
    let invalid = |field: &str, value: &str, why: &str| {
        Status::invalid(res, name, vec![Cause::invalid(field, value, why)])
    };
    let ty = obj["spec"]["type"]
        .as_str()
        .unwrap_or("ClusterIP")
        .to_owned();
    let old_ip = old
        .and_then(|o| o["spec"]["clusterIP"].as_str())
        .filter(|ip| !ip.is_empty())
        .map(str::to_owned);
    let given = obj["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let ip = match (given.as_str(), old_ip) {
        _ if ty == "ExternalName" => None,
        ("", Some(old)) => Some(old),
        (ip, Some(old)) if ip != old => {
            return Err(Status::invalid(
                res,
                name,
                vec![Cause::immutable("spec.clusterIP")],
            ));
        }
        ("None", _) => Some("None".to_owned()),
        ("", None) => {
            let used = taken(store, IP_PREFIX, res).await?;
            // Offset 1 is the `kubernetes` service's; never handed out.
            let offset =
                pick(2, 65534, random_u32()?, |o| !used.contains(&ip_of(o))).ok_or_else(|| {
                    Status::internal("failed to allocate a service IP: range is full")
                })?;
            Some(ip_of(offset))
        }
        (ip, _) => {
            if ip_offset(ip).is_none() {
                return Err(invalid(
                    "spec.clusterIP",
                    ip,
                    "must be \"None\" or an address in the service range 10.43.0.0/16",
                ));
            }
            Some(ip.to_owned())
        }
    };
    if let Some(ip) = ip {
        obj["spec"]["clusterIP"] = json!(ip);
        obj["spec"]["clusterIPs"] = json!([ip]);
    }
    let old_ports: Vec<Value> = old
        .and_then(|o| o["spec"]["ports"].as_array().cloned())
        .unwrap_or_default();
    let wants_node_ports = needs_node_ports(obj);
    let mut used: Option<BTreeSet<String>> = None;
    let mut chosen = BTreeSet::new();
    let Some(ports) = obj["spec"]["ports"].as_array_mut() else {
        return Ok(());
    };
    for (i, p) in ports.iter_mut().enumerate() {
        let field = format!("spec.ports[{i}].nodePort");
        match p.get("nodePort").and_then(Value::as_i64) {
            Some(n) if !wants_node_ports => {
                return Err(invalid(
                    &field,
                    &n.to_string(),
                    &format!("may not be used when `type` is {ty:?}"),
                ));
            }
            Some(n) => {
                if !(i64::from(FIRST_NODE_PORT)..=i64::from(LAST_NODE_PORT)).contains(&n) {
                    return Err(invalid(
                        &field,
                        &n.to_string(),
                        "provided port is not in the valid range 30000-32767",
                    ));
                }
                if !chosen.insert(n) {
                    return Err(invalid(&field, &n.to_string(), "duplicate node port"));
                }
            }
            None if wants_node_ports => {
                let kept = old_ports
                    .iter()
                    .find(|o| o["port"] == p["port"] && o["protocol"] == p["protocol"])
                    .and_then(|o| o["nodePort"].as_i64())
                    .filter(|n| !chosen.contains(n));
                let n = match kept {
                    Some(n) => n,
                    None => {
                        if used.is_none() {
                            used = Some(taken(store, PORT_PREFIX, res).await?);
                        }
                        let used = used.as_ref().expect("read above");
                        let free = |v: u32| {
                            !used.contains(&v.to_string()) && !chosen.contains(&i64::from(v))
                        };
                        let start = random_u32()?;
                        pick(
                            u32::from(FIRST_NODE_PORT),
                            u32::from(LAST_NODE_PORT),
                            start,
                            free,
                        )
                        .map(i64::from)
                        .ok_or_else(|| {
                            Status::internal("failed to allocate a node port: range is full")
                        })?
                    }
                };
                chosen.insert(n);
                p["nodePort"] = json!(n);
            }
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_keys() {
        assert_eq!(ip_offset("10.43.0.1"), Some(1));
        assert_eq!(ip_offset("10.43.1.2"), Some(258));
        for bad in ["10.43.0.0", "10.43.255.255", "10.44.0.1", "nope", "None"] {
            assert_eq!(ip_offset(bad), None, "{bad}");
        }
        assert_eq!(ip_of(258), "10.43.1.2");
        let svc = json!({"kind": "Service", "spec": {"clusterIP": "10.43.0.9",
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 81}]}});
        let keys: Vec<(&str, String)> = held(&svc).iter().map(describe).collect();
        assert_eq!(
            keys,
            [
                ("spec.clusterIP", "10.43.0.9".to_owned()),
                ("spec.ports.nodePort", "30080".to_owned())
            ]
        );
        assert!(held(&json!({"kind": "ConfigMap"})).is_empty());
        assert_eq!(pick(2, 5, 7, |v| v != 3 && v != 4), Some(5));
        assert_eq!(pick(2, 5, 2, |v| v == 2), Some(2));
        assert_eq!(pick(2, 5, 0, |_| false), None);
    }
}
