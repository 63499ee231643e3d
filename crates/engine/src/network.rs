//! Container networking on this host, through `bosun_net`: the default
//! `bridge` network (bridge `bosun0`, 10.88.0.0/16, outbound NAT), a veth and
//! an address per container, and published ports as nftables DNAT rules that
//! carry the container's id, so a crash never strands one (they are found
//! again by owner at the next start).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use bosun_net::{Attachment, Firewall, IfName, Ipam, PortMapping, Protocol, Subnet};

use crate::error::{EngineError, Result};
use crate::model::{Endpoint, PortBinding, Published};

/// The default network's name, as Docker calls it.
pub(crate) const DEFAULT_NETWORK: &str = "bridge";

/// How the engine's networks are set up.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// The default bridge (`bosun0`).
    pub bridge: String,
    /// Its subnet (10.88.0.0/16).
    pub subnet: Subnet,
    /// Our nftables table (`bosun`).
    pub nft_table: String,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            bridge: "bosun0".into(),
            subnet: bosun_net::DEFAULT_SUBNET,
            nft_table: Firewall::DEFAULT_TABLE.into(),
        }
    }
}

/// A port publication asked for at create: `-p [ip:]host:container[/proto]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortRequest {
    pub container_port: u16,
    pub protocol: Protocol,
    pub host_ip: String,
    /// 0: any free port.
    pub host_port: u16,
}

/// `PortBindings` as Docker sends them (`{"80/tcp":[{"HostIp":"","HostPort":"8080"}]}`).
pub(crate) fn parse_port_bindings(
    bindings: &std::collections::BTreeMap<String, Option<Vec<PortBinding>>>,
) -> Result<Vec<PortRequest>> {
    let mut out = Vec::new();
    for (key, list) in bindings {
        let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
        let container_port: u16 =
            port.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                EngineError::Invalid(format!("invalid port {key:?} in PortBindings"))
            })?;
        let protocol = match proto {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => {
                return Err(EngineError::Invalid(format!(
                    "unsupported protocol {other:?} in PortBindings (tcp or udp)"
                )));
            }
        };
        for b in list.iter().flatten() {
            let host_port = match b.host_port.as_str() {
                "" => 0,
                p => p.parse().map_err(|_| {
                    EngineError::Invalid(format!("invalid host port {p:?} for {key}"))
                })?,
            };
            match b.host_ip.as_str() {
                "" | "0.0.0.0" => {}
                ip if ip.parse::<Ipv4Addr>().is_ok() => {}
                ip => {
                    return Err(EngineError::Invalid(format!(
                        "invalid host IP {ip:?} for {key} (IPv4 only)"
                    )));
                }
            }
            out.push(PortRequest {
                container_port,
                protocol,
                host_ip: b.host_ip.clone(),
                host_port,
            });
        }
    }
    Ok(out)
}

/// One bridge network: the default `bridge` or a user-defined one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct NetworkInfo {
    pub name: String,
    pub id: String,
    pub bridge: String,
    pub subnet: String,
    pub created: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl NetworkInfo {
    pub(crate) fn subnet(&self) -> Subnet {
        self.subnet.parse().expect("subnets are checked when saved")
    }

    /// User-defined networks resolve container names (embedded DNS).
    pub(crate) fn has_dns(&self) -> bool {
        self.name != DEFAULT_NETWORK
    }
}

/// The networks of one engine.
#[derive(Debug)]
pub(crate) struct Networks {
    state_dir: PathBuf,
    firewall: Firewall,
    nets: Mutex<BTreeMap<String, NetworkInfo>>,
}

/// The owner tag of a network's own rules (its outbound NAT).
fn net_owner(id: &str) -> String {
    format!("net-{}", &id[..12])
}

impl Networks {
    /// Set the networks up (idempotent: a restarted engine finds them).
    pub(crate) fn open(state_dir: &Path, config: NetworkConfig) -> Result<Self> {
        let firewall = Firewall::new(&config.nft_table)
            .map_err(|e| EngineError::Invalid(format!("nftables table: {e}")))?;
        firewall
            .ensure()
            .map_err(|e| EngineError::internal("set up nftables", e))?;
        std::fs::create_dir_all(state_dir)
            .map_err(|e| EngineError::internal(state_dir.display(), e))?;
        let mut nets: BTreeMap<String, NetworkInfo> =
            match std::fs::read(state_dir.join("networks.json")) {
                Ok(t) => serde_json::from_slice(&t)
                    .map_err(|e| EngineError::internal("networks.json", e))?,
                Err(_) => BTreeMap::new(),
            };
        nets.insert(
            DEFAULT_NETWORK.into(),
            NetworkInfo {
                name: DEFAULT_NETWORK.into(),
                id: network_id(DEFAULT_NETWORK),
                bridge: config.bridge.clone(),
                subnet: config.subnet.to_string(),
                created: crate::time::ZERO.into(),
                labels: BTreeMap::new(),
            },
        );
        let me = Self {
            state_dir: state_dir.to_owned(),
            firewall,
            nets: Mutex::new(nets.clone()),
        };
        let rules = me
            .firewall
            .rules()
            .map_err(|e| EngineError::internal("list nftables rules", e))?;
        for net in nets.values() {
            me.bring_up(net, &rules)?;
        }
        // Published ports from outside the host need forwarding.
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1");
        Ok(me)
    }

    fn bring_up(
        &self,
        net: &NetworkInfo,
        rules: &[(bosun_net::RuleHandle, Option<String>)],
    ) -> Result<()> {
        let bridge = IfName::new(&net.bridge)
            .map_err(|e| EngineError::Invalid(format!("bridge name: {e}")))?;
        bosun_net::ensure_bridge(&bridge, net.subnet())
            .map_err(|e| EngineError::internal(format!("set up bridge {}", net.bridge), e))?;
        let owner = net_owner(&net.id);
        if !rules
            .iter()
            .any(|(_, o)| o.as_deref() == Some(owner.as_str()))
        {
            self.firewall
                .masquerade(net.subnet(), Some(&owner))
                .map_err(|e| EngineError::internal("set up outbound NAT", e))?;
        }
        Ok(())
    }

    fn ipam(&self, net: &NetworkInfo) -> Result<Ipam> {
        Ipam::open(&self.state_dir.join("ipam"), net.subnet())
            .map_err(|e| EngineError::internal("open the address allocator", e))
    }

    fn save(&self, nets: &BTreeMap<String, NetworkInfo>) -> Result<()> {
        let user: BTreeMap<&String, &NetworkInfo> =
            nets.iter().filter(|(k, _)| *k != DEFAULT_NETWORK).collect();
        let text =
            serde_json::to_vec_pretty(&user).map_err(|e| EngineError::internal("networks", e))?;
        crate::fsutil::write_atomic(&self.state_dir.join("networks.json"), &text)
            .map_err(|e| EngineError::internal("save networks.json", e))
    }

    /// Every bridge network, the default first.
    pub(crate) fn list(&self) -> Vec<NetworkInfo> {
        let nets = self.nets.lock().expect("networks lock");
        let mut out: Vec<NetworkInfo> = nets.values().cloned().collect();
        out.sort_by_key(|n| (n.name != DEFAULT_NETWORK, n.name.clone()));
        out
    }

    /// A network by name, id or unique id prefix.
    pub(crate) fn get(&self, key: &str) -> Result<NetworkInfo> {
        let nets = self.nets.lock().expect("networks lock");
        if let Some(n) = nets.get(key) {
            return Ok(n.clone());
        }
        let found: Vec<&NetworkInfo> = nets
            .values()
            .filter(|n| !key.is_empty() && n.id.starts_with(key))
            .collect();
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            _ => Err(EngineError::NotFound(format!("network {key} not found"))),
        }
    }

    /// `docker network create`: a bridge, a subnet (given or the next free
    /// /24 of 10.90.0.0/16), outbound NAT, and (for its containers) DNS.
    pub(crate) fn create(
        &self,
        name: &str,
        subnet: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<NetworkInfo> {
        if !crate::volumes::valid_name(name) || matches!(name, "host" | "none" | "default") {
            return Err(EngineError::Invalid(format!(
                "invalid network name {name:?}"
            )));
        }
        let mut nets = self.nets.lock().expect("networks lock");
        if nets.contains_key(name) {
            return Err(EngineError::Conflict(format!(
                "network with name {name} already exists"
            )));
        }
        let overlaps = |s: Subnet, nets: &BTreeMap<String, NetworkInfo>| {
            nets.values().any(|n| {
                let o = n.subnet();
                o.contains(s.network()) || s.contains(o.network())
            })
        };
        let subnet: Subnet = match subnet {
            Some(s) => {
                let s: Subnet = s
                    .parse()
                    .map_err(|e| EngineError::Invalid(format!("invalid subnet {s:?}: {e}")))?;
                if overlaps(s, &nets) {
                    return Err(EngineError::Conflict(format!(
                        "invalid pool request: Pool overlaps with other one on this address space ({s})"
                    )));
                }
                s
            }
            None => {
                // Another engine, or anything else on this host, may route a
                // range already: skip those too.
                let routed = host_routes();
                (0..=255u8)
                    .filter_map(|i| Subnet::new(std::net::Ipv4Addr::new(10, 90, i, 0), 24).ok())
                    .find(|s| {
                        !overlaps(*s, &nets)
                            && !routed
                                .iter()
                                .any(|r| r.contains(s.network()) || s.contains(r.network()))
                    })
            }
            .ok_or_else(|| EngineError::Conflict("no free subnet left in 10.90.0.0/16".into()))?,
        };
        let id = network_id(&format!("{name}-{}", crate::time::now_rfc3339_nano()));
        let net = NetworkInfo {
            name: name.to_owned(),
            bridge: format!("bn{}", &id[..12]),
            id,
            subnet: subnet.to_string(),
            created: crate::time::now_rfc3339_nano(),
            labels,
        };
        if let Err(e) = self.bring_up(&net, &[]) {
            self.tear_down(&net);
            return Err(e);
        }
        nets.insert(name.to_owned(), net.clone());
        if let Err(e) = self.save(&nets) {
            nets.remove(name);
            self.tear_down(&net);
            return Err(e);
        }
        Ok(net)
    }

    fn tear_down(&self, net: &NetworkInfo) {
        let _ = self.firewall.remove_owner(&net_owner(&net.id));
        if let Ok(b) = IfName::new(&net.bridge) {
            let _ = bosun_net::delete_bridge(&b);
        }
        if let Ok(ipam) = self.ipam(net) {
            let _ = std::fs::remove_file(ipam.state_path());
        }
    }

    /// `docker network rm` (the caller checks no container uses it).
    pub(crate) fn remove(&self, key: &str) -> Result<NetworkInfo> {
        let net = self.get(key)?;
        if net.name == DEFAULT_NETWORK {
            return Err(EngineError::Conflict(format!(
                "{} is a pre-defined network and cannot be removed",
                net.name
            )));
        }
        let mut nets = self.nets.lock().expect("networks lock");
        nets.remove(&net.name);
        self.save(&nets)?;
        drop(nets);
        self.tear_down(&net);
        Ok(net)
    }

    /// Fail before anything is created if a host port is taken, by a process
    /// on this host or by another container (`taken`).
    pub(crate) fn check_ports(&self, ports: &[PortRequest], taken: &[Published]) -> Result<()> {
        for p in ports.iter().filter(|p| p.host_port != 0) {
            let proto = proto_name(p.protocol);
            if taken
                .iter()
                .any(|t| t.host_port == p.host_port && t.protocol == proto)
            {
                return Err(EngineError::Conflict(format!(
                    "Bind for 0.0.0.0:{} failed: port is already allocated",
                    p.host_port
                )));
            }
            let free = PortMapping {
                protocol: p.protocol,
                host_port: p.host_port,
                container: Ipv4Addr::UNSPECIFIED,
                container_port: p.container_port,
            }
            .check_host_port_free();
            if free.is_err() {
                return Err(EngineError::Conflict(format!(
                    "Bind for 0.0.0.0:{}/{proto} failed: port is already in use on the host",
                    p.host_port
                )));
            }
        }
        Ok(())
    }

    /// Give the container whose init is `pid` an address on `network` and
    /// publish its ports. Blocking (netlink, nft). On failure nothing is left.
    pub(crate) fn connect(
        &self,
        network: &str,
        id: &str,
        pid: i32,
        ports: &[PortRequest],
        taken: &[Published],
    ) -> Result<(Endpoint, Vec<Published>)> {
        let net = self.get(network)?;
        let ipam = self.ipam(&net)?;
        let ip = ipam
            .allocate(id)
            .map_err(|e| EngineError::internal("allocate an address", e))?;
        let host_veth = veth_name(id);
        let attach = Attachment {
            bridge: IfName::new(&net.bridge)
                .map_err(|e| EngineError::Invalid(format!("bridge name: {e}")))?,
            host_veth: host_veth.clone(),
            netns: PathBuf::from(format!("/proc/{pid}/ns/net")),
            address: ip,
            subnet: net.subnet(),
        };
        let result = bosun_net::attach(&attach)
            .map_err(|e| EngineError::internal("connect the container", e))
            .and_then(|()| self.publish(id, ip, ports, taken));
        match result {
            Ok(published) => Ok((
                Endpoint {
                    network: net.name.clone(),
                    network_id: net.id.clone(),
                    ip: ip.to_string(),
                    prefix: net.subnet().prefix(),
                    gateway: net.subnet().gateway().to_string(),
                    mac: String::new(),
                    host_veth: host_veth.as_str().to_owned(),
                    aliases: Vec::new(),
                },
                published,
            )),
            Err(e) => {
                self.disconnect(id);
                Err(e)
            }
        }
    }

    fn publish(
        &self,
        id: &str,
        ip: Ipv4Addr,
        ports: &[PortRequest],
        taken: &[Published],
    ) -> Result<Vec<Published>> {
        let mut out: Vec<Published> = Vec::new();
        for p in ports {
            let host_port = match p.host_port {
                0 => free_port(p.protocol, taken, &out)?,
                n => n,
            };
            let mapping = PortMapping {
                protocol: p.protocol,
                host_port,
                container: ip,
                container_port: p.container_port,
            };
            self.firewall
                .publish(&mapping, id)
                .map_err(|e| EngineError::internal("publish a port", e))?;
            out.push(Published {
                container_port: p.container_port,
                protocol: proto_name(p.protocol).into(),
                host_ip: match p.host_ip.as_str() {
                    "" => "0.0.0.0".into(),
                    ip => ip.into(),
                },
                host_port,
            });
        }
        Ok(out)
    }

    /// Remove everything the container got: rules, addresses, veth (gone with
    /// its netns already, unless the container is still alive). Idempotent,
    /// so it also serves crash reconciliation.
    pub(crate) fn disconnect(&self, id: &str) {
        let _ = self.firewall.remove_owner(id);
        let _ = bosun_net::detach(&veth_name(id));
        for net in self.list() {
            if let Ok(ipam) = self.ipam(&net) {
                let _ = ipam.release_owner(id);
            }
        }
    }

    /// Containers holding addresses or rules: what reconciliation compares
    /// with the containers that still run.
    pub(crate) fn owners(&self) -> Vec<String> {
        let mut owners: Vec<String> = Vec::new();
        for net in self.list() {
            if let Ok(leases) = self
                .ipam(&net)
                .and_then(|i| i.leases().map_err(|e| EngineError::internal("leases", e)))
            {
                owners.extend(leases.iter().map(|(_, o)| o.to_owned()));
            }
        }
        if let Ok(rules) = self.firewall.rules() {
            owners.extend(rules.into_iter().filter_map(|(_, o)| o));
        }
        owners.retain(|o| !o.starts_with("net-"));
        owners.sort();
        owners.dedup();
        owners
    }
}

/// The destinations of this host's routes (`/proc/net/route`), except the
/// default route.
fn host_routes() -> Vec<Subnet> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Little-endian hex: destination in column 1, mask in column 7.
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            let prefix = mask.count_ones() as u8;
            // The kernel prints the address in memory order: 10.89.0.0 is 0000590A.
            let network = Ipv4Addr::from(dest.to_le_bytes());
            (prefix > 0).then(|| Subnet::new(network, prefix).ok())?
        })
        .collect()
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// A free host port from the ephemeral range, for `-p CONTAINER_PORT`.
fn free_port(protocol: Protocol, taken: &[Published], ours: &[Published]) -> Result<u16> {
    for _ in 0..64 {
        let port = match protocol {
            Protocol::Tcp => TcpListener::bind("0.0.0.0:0").and_then(|l| l.local_addr()),
            Protocol::Udp => UdpSocket::bind("0.0.0.0:0").and_then(|s| s.local_addr()),
        }
        .map_err(|e| EngineError::internal("find a free port", e))?
        .port();
        let used = taken.iter().chain(ours).any(|t| t.host_port == port);
        if !used {
            return Ok(port);
        }
    }
    Err(EngineError::Internal("no free host port found".into()))
}

/// The host end's name: `vb` + the id's first 12 characters (under IFNAMSIZ).
fn veth_name(id: &str) -> IfName {
    IfName::new(&format!("vb{}", &id[..12.min(id.len())])).expect("a valid interface name")
}

/// A stable id for a network name (Docker shows 64 hex digits).
pub(crate) fn network_id(name: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(
        format!("bosun-network:{name}").as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn host_routes_parse() {
        // This machine has at least one non-default route (its own network).
        for r in host_routes() {
            assert!(r.prefix() > 0 && r.prefix() <= 32);
        }
        assert_eq!(
            Ipv4Addr::from(0x0000_590Au32.to_le_bytes()),
            Ipv4Addr::new(10, 89, 0, 0)
        );
    }

    #[test]
    fn port_bindings_parse() {
        let mut b = BTreeMap::new();
        b.insert(
            "80/tcp".to_string(),
            Some(vec![PortBinding {
                host_ip: "127.0.0.1".into(),
                host_port: "8080".into(),
            }]),
        );
        b.insert(
            "53/udp".to_string(),
            Some(vec![PortBinding {
                host_ip: String::new(),
                host_port: String::new(),
            }]),
        );
        let got = parse_port_bindings(&b).expect("parses");
        assert_eq!(got.len(), 2);
        assert!(got.contains(&PortRequest {
            container_port: 80,
            protocol: Protocol::Tcp,
            host_ip: "127.0.0.1".into(),
            host_port: 8080
        }));
        let mut bad = BTreeMap::new();
        bad.insert("80/sctp".to_string(), None);
        assert!(parse_port_bindings(&bad).is_err());
        let mut bad = BTreeMap::new();
        bad.insert(
            "80/tcp".to_string(),
            Some(vec![PortBinding {
                host_ip: String::new(),
                host_port: "x".into(),
            }]),
        );
        assert!(parse_port_bindings(&bad).is_err());
    }
}
