//! nftables rules for outbound NAT and published ports, all in one table of our
//! own (`ip <name>`, `ip bosun` in production), driven through the `nftables`
//! crate, which runs Debian's `nft` with JSON. We only ever add to, list and
//! delete our own table: the crate cannot parse every rule other software
//! writes, and other tables are not ours to touch.

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::Ipv4Addr;

use nftables::batch::Batch;
use nftables::expr::{
    CT, Expression, Fib, FibFlag, FibResult, NamedExpression, Payload, PayloadField, Prefix,
};
use nftables::helper::{self, NftablesError};
use nftables::schema::{Chain, NfCmd, NfListObject, NfObject, Nftables, Rule, Table};
use nftables::stmt::{Match, NAT, Operator, Statement};
use nftables::types::{NfChainType, NfFamily, NfHook};

use crate::subnet::Subnet;

/// Errors of the firewall; each says what we were doing.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// A table name nft would not accept.
    #[error("invalid nftables table name {name:?}: use 1-32 ASCII letters, digits and '_'")]
    InvalidTable {
        /// The refused name.
        name: String,
    },
    /// Running `nft` failed, or it refused the change.
    #[error("nftables: cannot {op}: {source}")]
    Nft {
        /// What we tried.
        op: String,
        /// The crate's error (it carries nft's stderr).
        #[source]
        source: NftablesError,
    },
    /// The host port of a mapping is already bound by some process; checked
    /// before anything is created, so the container fails cleanly.
    #[error("host port {port}/{protocol} is already in use")]
    PortInUse {
        /// The port.
        port: u16,
        /// "tcp" or "udp".
        protocol: &'static str,
    },
    /// `nft --echo` did not return the handle of a rule we added.
    #[error("nftables: no handle returned for {op}")]
    NoHandle {
        /// What we added.
        op: String,
    },
}

impl FirewallError {
    /// The class of this failure.
    pub fn kind(&self) -> bosun_oci::ErrorKind {
        match self {
            Self::InvalidTable { .. } => bosun_oci::ErrorKind::Invalid,
            Self::PortInUse { .. } => bosun_oci::ErrorKind::Conflict,
            Self::Nft { .. } | Self::NoHandle { .. } => bosun_oci::ErrorKind::Internal,
        }
    }
}

/// The transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// `-p host_port:container_port/proto` for a container at `container`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortMapping {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The port on the host's own addresses.
    pub host_port: u16,
    /// The container's address.
    pub container: Ipv4Addr,
    /// The port inside the container.
    pub container_port: u16,
}

impl PortMapping {
    /// Fail with `PortInUse` if a process on the host already holds the host
    /// port on any address: DNAT would silently steal its traffic otherwise.
    /// (A bind on the wildcard address fails if any address has the port.)
    pub fn check_host_port_free(&self) -> Result<(), FirewallError> {
        let addr = std::net::SocketAddr::from((Ipv4Addr::UNSPECIFIED, self.host_port));
        let bound = match self.protocol {
            Protocol::Tcp => std::net::TcpListener::bind(addr).map(drop),
            Protocol::Udp => std::net::UdpSocket::bind(addr).map(drop),
        };
        bound.map_err(|_| FirewallError::PortInUse {
            port: self.host_port,
            protocol: self.protocol.as_str(),
        })
    }
}

/// One rule of ours: its chain and the handle nft gave it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleHandle {
    /// The chain in our table.
    pub chain: &'static str,
    /// nft's handle, unique within the table.
    pub handle: u32,
}

const PREROUTING: &str = "prerouting";
const OUTPUT: &str = "output";
const POSTROUTING: &str = "postrouting";

/// Our nftables table.
#[derive(Debug, Clone)]
pub struct Firewall {
    table: String,
}

impl Firewall {
    /// The table bosun uses in production.
    pub const DEFAULT_TABLE: &'static str = "bosun";

    /// A handle on table `ip <table>` (nothing is changed yet).
    pub fn new(table: &str) -> Result<Self, FirewallError> {
        let ok = !table.is_empty()
            && table.len() <= 32
            && table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && table.as_bytes()[0].is_ascii_alphabetic();
        if !ok {
            return Err(FirewallError::InvalidTable {
                name: table.to_owned(),
            });
        }
        Ok(Self {
            table: table.to_owned(),
        })
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Create the table and its NAT chains if missing (nft's `add` leaves
    /// existing ones and their rules alone, so this is idempotent).
    pub fn ensure(&self) -> Result<(), FirewallError> {
        let mut batch = Batch::new();
        batch.add(NfListObject::Table(Table {
            family: NfFamily::IP,
            name: self.table.clone().into(),
            handle: None,
        }));
        for (name, hook, prio) in [
            (PREROUTING, NfHook::Prerouting, -100),
            (OUTPUT, NfHook::Output, -100),
            (POSTROUTING, NfHook::Postrouting, 100),
        ] {
            batch.add(NfListObject::Chain(Chain {
                family: NfFamily::IP,
                table: self.table.clone().into(),
                name: name.into(),
                _type: Some(NfChainType::NAT),
                hook: Some(hook),
                prio: Some(prio),
                ..Chain::default()
            }));
        }
        helper::apply_ruleset(&batch.to_nftables()).map_err(|source| FirewallError::Nft {
            op: format!("create table ip {}", self.table),
            source,
        })
    }

    /// Outbound NAT for `subnet`: masquerade what leaves it for anywhere outside
    /// it, and hairpin traffic (a container reaching a published port that maps
    /// to a container on the same bridge: without masquerading, the reply would
    /// go straight back over the bridge from an address the client never
    /// called), and connections from the host's loopback to a published port.
    /// Returns the handles of the three rules, which carry `owner` (a network)
    /// when given, so `remove_owner` removes them with it.
    pub fn masquerade(
        &self,
        subnet: Subnet,
        owner: Option<&str>,
    ) -> Result<Vec<RuleHandle>, FirewallError> {
        let outbound = vec![
            matches(payload("ip", "saddr"), prefix(subnet), Operator::EQ),
            matches(payload("ip", "daddr"), prefix(subnet), Operator::NEQ),
            Statement::Masquerade(None),
        ];
        let hairpin = vec![
            matches(payload("ip", "saddr"), prefix(subnet), Operator::EQ),
            matches(payload("ip", "daddr"), prefix(subnet), Operator::EQ),
            matches(
                Expression::Named(NamedExpression::CT(CT {
                    key: "status".into(),
                    family: None,
                    dir: None,
                })),
                Expression::String("dnat".into()),
                Operator::IN,
            ),
            Statement::Masquerade(None),
        ];
        // The host's own loopback: `curl 127.0.0.1:PORT` is DNATed in the
        // output chain, and a source of 127.0.0.1 must become the gateway's
        // address for the container to answer (the bridge also needs
        // route_localnet, which `ensure_bridge` sets).
        let loopback = vec![
            matches(
                payload("ip", "saddr"),
                Expression::Named(NamedExpression::Prefix(Prefix {
                    addr: Box::new(Expression::String("127.0.0.0".into())),
                    len: 8,
                })),
                Operator::EQ,
            ),
            matches(payload("ip", "daddr"), prefix(subnet), Operator::EQ),
            Statement::Masquerade(None),
        ];
        self.add_rules(
            &[
                (POSTROUTING, outbound),
                (POSTROUTING, hairpin),
                (POSTROUTING, loopback),
            ],
            owner,
            &format!("masquerade {subnet}"),
        )
    }

    /// DNAT `host_port` on the host's own addresses to the container, both for
    /// traffic arriving from outside (prerouting) and from the host itself
    /// (output). Returns the handles of both rules.
    /// Both rules carry `owner` (e.g. the container id) as their comment, so
    /// `remove_owner` can find them again after a daemon crash.
    pub fn publish(&self, m: &PortMapping, owner: &str) -> Result<Vec<RuleHandle>, FirewallError> {
        let rule = || {
            vec![
                // Only traffic to this host: without it, a container's own
                // outbound connections to that port elsewhere would be caught.
                matches(
                    Expression::Named(NamedExpression::Fib(Fib {
                        result: FibResult::Type,
                        flags: HashSet::from([FibFlag::Daddr]),
                    })),
                    Expression::String("local".into()),
                    Operator::EQ,
                ),
                matches(
                    payload(m.protocol.as_str(), "dport"),
                    Expression::Number(m.host_port.into()),
                    Operator::EQ,
                ),
                Statement::DNAT(Some(NAT {
                    addr: Some(Expression::String(m.container.to_string().into())),
                    family: None,
                    port: Some(Expression::Number(m.container_port.into())),
                    flags: None,
                })),
            ]
        };
        let op = format!(
            "publish {}/{} to {}:{}",
            m.host_port,
            m.protocol.as_str(),
            m.container,
            m.container_port
        );
        self.add_rules(&[(PREROUTING, rule()), (OUTPUT, rule())], Some(owner), &op)
    }

    /// Delete one of our rules.
    pub fn remove(&self, rule: &RuleHandle) -> Result<(), FirewallError> {
        let mut batch = Batch::new();
        batch.delete(NfListObject::Rule(Rule {
            family: NfFamily::IP,
            table: self.table.clone().into(),
            chain: rule.chain.into(),
            handle: Some(rule.handle),
            ..Rule::default()
        }));
        helper::apply_ruleset(&batch.to_nftables()).map_err(|source| FirewallError::Nft {
            op: format!(
                "delete rule {} from chain {} of table ip {}",
                rule.handle, rule.chain, self.table
            ),
            source,
        })
    }

    /// Every rule in our table with its owner (the comment `publish` set).
    /// Only our table is listed: the crate cannot parse every rule others write.
    pub fn rules(&self) -> Result<Vec<(RuleHandle, Option<String>)>, FirewallError> {
        let listed = helper::get_current_ruleset_with_args(
            helper::DEFAULT_NFT,
            ["list", "table", "ip", self.table.as_str()],
        )
        .map_err(|source| FirewallError::Nft {
            op: format!("list table ip {}", self.table),
            source,
        })?;
        Ok(listed
            .objects
            .iter()
            .filter_map(|o| match o {
                NfObject::ListObject(NfListObject::Rule(r)) => {
                    let chain = [PREROUTING, OUTPUT, POSTROUTING]
                        .into_iter()
                        .find(|c| *c == r.chain)?;
                    let handle = r.handle?;
                    Some((
                        RuleHandle { chain, handle },
                        r.comment.as_ref().map(|c| c.to_string()),
                    ))
                }
                _ => None,
            })
            .collect())
    }

    /// Delete every rule `owner` was given (container removal, and
    /// reconciliation after a crash); returns how many there were.
    pub fn remove_owner(&self, owner: &str) -> Result<usize, FirewallError> {
        let mine: Vec<_> = self
            .rules()?
            .into_iter()
            .filter(|(_, o)| o.as_deref() == Some(owner))
            .collect();
        for (rule, _) in &mine {
            self.remove(rule)?;
        }
        Ok(mine.len())
    }

    /// Delete the whole table with its rules (`nft destroy` semantics: a
    /// missing table is fine, so teardown may repeat).
    pub fn delete_table(&self) -> Result<(), FirewallError> {
        // Adding first makes the delete succeed when the table is missing, in
        // one atomic batch, with nft versions that lack `destroy`.
        let table = || {
            NfListObject::Table(Table {
                family: NfFamily::IP,
                name: self.table.clone().into(),
                handle: None,
            })
        };
        let mut batch = Batch::new();
        batch.add(table());
        batch.delete(table());
        helper::apply_ruleset(&batch.to_nftables()).map_err(|source| FirewallError::Nft {
            op: format!("delete table ip {}", self.table),
            source,
        })
    }

    /// Add rules in one nft transaction (all or none) and return their handles.
    fn add_rules(
        &self,
        rules: &[(&'static str, Vec<Statement<'static>>)],
        owner: Option<&str>,
        op: &str,
    ) -> Result<Vec<RuleHandle>, FirewallError> {
        let mut batch = Batch::new();
        for (chain, expr) in rules {
            batch.add(NfListObject::Rule(Rule {
                family: NfFamily::IP,
                table: self.table.clone().into(),
                chain: (*chain).into(),
                expr: Cow::Owned(expr.clone()),
                comment: owner.map(|o| Cow::Owned(o.to_owned())),
                ..Rule::default()
            }));
        }
        let echoed = helper::apply_and_return_ruleset(&batch.to_nftables()).map_err(|source| {
            FirewallError::Nft {
                op: op.to_owned(),
                source,
            }
        })?;
        let handles = echoed_rule_handles(&echoed);
        if handles.len() != rules.len() {
            return Err(FirewallError::NoHandle { op: op.to_owned() });
        }
        Ok(rules
            .iter()
            .zip(handles)
            .map(|((chain, _), handle)| RuleHandle { chain, handle })
            .collect())
    }
}

/// The handles of the rules `nft --echo` reports, in the order they were added.
fn echoed_rule_handles(out: &Nftables<'_>) -> Vec<u32> {
    out.objects
        .iter()
        .filter_map(|o| match o {
            NfObject::CmdObject(NfCmd::Add(NfListObject::Rule(r)))
            | NfObject::ListObject(NfListObject::Rule(r)) => r.handle,
            _ => None,
        })
        .collect()
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

fn prefix(subnet: Subnet) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(Expression::String(subnet.network().to_string().into())),
        len: subnet.prefix().into(),
    }))
}

fn matches(
    left: Expression<'static>,
    right: Expression<'static>,
    op: Operator,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_port_is_reported_in_use() {
        let held = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let m = PortMapping {
            protocol: Protocol::Tcp,
            host_port: port,
            container: Ipv4Addr::new(10, 88, 0, 2),
            container_port: 80,
        };
        let e = m.check_host_port_free().unwrap_err();
        assert_eq!(e.kind(), bosun_oci::ErrorKind::Conflict);
        assert_eq!(
            e.to_string(),
            format!("host port {port}/tcp is already in use")
        );
        drop(held);
        m.check_host_port_free().unwrap();

        let held = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let udp = PortMapping {
            protocol: Protocol::Udp,
            host_port: held.local_addr().unwrap().port(),
            ..m
        };
        assert!(udp.check_host_port_free().is_err());
    }

    #[test]
    fn table_names_are_checked() {
        assert!(Firewall::new("bosun").is_ok());
        assert!(Firewall::new("bosun_t1").is_ok());
        for bad in ["", "1abc", "a b", "a-b", "a;flush ruleset", &"a".repeat(33)] {
            let e = Firewall::new(bad).unwrap_err();
            assert_eq!(e.kind(), bosun_oci::ErrorKind::Invalid);
        }
    }

    #[test]
    fn masquerade_rule_json_is_what_nft_expects() {
        let net = prefix("10.88.0.0/16".parse().unwrap());
        let stmt = matches(payload("ip", "saddr"), net, Operator::EQ);
        let json = serde_json::to_value(&stmt).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"match": {
                "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                "right": {"prefix": {"addr": "10.88.0.0", "len": 16}},
                "op": "=="
            }})
        );
    }
}
