//! Container networking on this host, through `bosun_net`: the default
//! `bridge` network (bridge `bosun0`, 10.88.0.0/16, outbound NAT), a veth and
//! an address per container, and published ports as nftables DNAT rules that
//! carry the container's id, so a crash never strands one (they are found
//! again by owner at the next start).

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

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

/// The networks of one engine.
#[derive(Debug)]
pub(crate) struct Networks {
    config: NetworkConfig,
    bridge: IfName,
    ipam: Ipam,
    firewall: Firewall,
}

impl Networks {
    /// Set the default network up (idempotent: a restarted engine finds it).
    pub(crate) fn open(state_dir: &Path, config: NetworkConfig) -> Result<Self> {
        let bridge = IfName::new(&config.bridge)
            .map_err(|e| EngineError::Invalid(format!("bridge name: {e}")))?;
        let ipam = Ipam::open(&state_dir.join("ipam"), config.subnet)
            .map_err(|e| EngineError::internal("open the address allocator", e))?;
        let firewall = Firewall::new(&config.nft_table)
            .map_err(|e| EngineError::Invalid(format!("nftables table: {e}")))?;
        bosun_net::ensure_bridge(&bridge, config.subnet)
            .map_err(|e| EngineError::internal("set up the bridge", e))?;
        firewall
            .ensure()
            .map_err(|e| EngineError::internal("set up nftables", e))?;
        // The outbound NAT rules carry no owner; add them once.
        let rules = firewall
            .rules()
            .map_err(|e| EngineError::internal("list nftables rules", e))?;
        if !rules
            .iter()
            .any(|(r, owner)| owner.is_none() && r.chain == "postrouting")
        {
            firewall
                .masquerade(config.subnet)
                .map_err(|e| EngineError::internal("set up outbound NAT", e))?;
        }
        // Published ports from outside the host need forwarding.
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1");
        Ok(Self {
            config,
            bridge,
            ipam,
            firewall,
        })
    }

    pub(crate) fn subnet(&self) -> Subnet {
        self.config.subnet
    }

    pub(crate) fn bridge_name(&self) -> &str {
        &self.config.bridge
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

    /// Give the container whose init is `pid` an address on the default
    /// bridge and publish its ports. Blocking (netlink, nft). On failure
    /// nothing is left.
    pub(crate) fn connect(
        &self,
        id: &str,
        pid: i32,
        ports: &[PortRequest],
        taken: &[Published],
    ) -> Result<(Endpoint, Vec<Published>)> {
        let ip = self
            .ipam
            .allocate(id)
            .map_err(|e| EngineError::internal("allocate an address", e))?;
        let host_veth = veth_name(id);
        let attach = Attachment {
            bridge: self.bridge.clone(),
            host_veth: host_veth.clone(),
            netns: PathBuf::from(format!("/proc/{pid}/ns/net")),
            address: ip,
            subnet: self.config.subnet,
        };
        let result = bosun_net::attach(&attach)
            .map_err(|e| EngineError::internal("connect the container", e))
            .and_then(|()| self.publish(id, ip, ports, taken));
        match result {
            Ok(published) => Ok((
                Endpoint {
                    network: DEFAULT_NETWORK.into(),
                    network_id: network_id(DEFAULT_NETWORK),
                    ip: ip.to_string(),
                    prefix: self.config.subnet.prefix(),
                    gateway: self.config.subnet.gateway().to_string(),
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

    /// Remove everything the container got: rules, address, veth (gone with
    /// its netns already, unless the container is still alive). Idempotent,
    /// so it also serves crash reconciliation.
    pub(crate) fn disconnect(&self, id: &str) {
        let _ = self.firewall.remove_owner(id);
        let _ = bosun_net::detach(&veth_name(id));
        let _ = self.ipam.release_owner(id);
    }

    /// Owners holding addresses or rules: what reconciliation compares with
    /// the containers that still run.
    pub(crate) fn owners(&self) -> Vec<String> {
        let mut owners: Vec<String> = self
            .ipam
            .leases()
            .map(|l| l.iter().map(|(_, o)| o.to_owned()).collect())
            .unwrap_or_default();
        if let Ok(rules) = self.firewall.rules() {
            owners.extend(rules.into_iter().filter_map(|(_, o)| o));
        }
        owners.sort();
        owners.dedup();
        owners
    }
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
