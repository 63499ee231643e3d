//! `Subnet`: an IPv4 network parsed at the edge, so the rest of the crate never
//! handles a prefix that does not fit or an address with host bits set.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network such as `10.88.0.0/16`. The first host address is the gateway
/// (the bridge's address); the network and broadcast addresses are never hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    network: u32,
    prefix: u8,
}

/// The engine's default bridge network (DESIGN.md: 10.88.0.0/16, as podman's).
pub const DEFAULT_SUBNET: Subnet = Subnet {
    network: u32::from_be_bytes([10, 88, 0, 0]),
    prefix: 16,
};

/// Why a subnet string was refused; `input` is the text as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid subnet {input:?}: {reason}")]
pub struct ParseSubnetError {
    /// The text that failed to parse.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl ParseSubnetError {
    /// Always `Invalid`: the same text fails again.
    pub fn kind(&self) -> bosun_oci::ErrorKind {
        bosun_oci::ErrorKind::Invalid
    }
}

impl Subnet {
    /// The smallest prefix length we accept. /30 leaves two hosts: the gateway and
    /// one container; anything longer leaves no container address at all.
    const MAX_PREFIX: u8 = 30;
    /// Wider than /8 would be a state file of millions of candidates; nobody means it.
    const MIN_PREFIX: u8 = 8;

    /// A subnet from its network address and prefix length.
    pub fn new(network: Ipv4Addr, prefix: u8) -> Result<Self, ParseSubnetError> {
        Self::checked(network, prefix, || format!("{network}/{prefix}"))
    }

    fn checked(
        network: Ipv4Addr,
        prefix: u8,
        input: impl FnOnce() -> String,
    ) -> Result<Self, ParseSubnetError> {
        let fail = |reason| ParseSubnetError {
            input: input(),
            reason,
        };
        if !(Self::MIN_PREFIX..=Self::MAX_PREFIX).contains(&prefix) {
            return Err(fail("prefix length must be between 8 and 30"));
        }
        let net = u32::from(network);
        if net & !mask(prefix) != 0 {
            return Err(fail("host bits are set (give the network address)"));
        }
        Ok(Self {
            network: net,
            prefix,
        })
    }

    /// The network address (all host bits zero).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The broadcast address (all host bits one).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network | !mask(self.prefix))
    }

    /// The gateway: the first host address, given to the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1)
    }

    /// Whether `ip` lies inside this network (including network/broadcast).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.network
    }

    /// Whether `ip` may be handed to a container: inside, and not the network,
    /// gateway or broadcast address.
    pub fn is_assignable(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && ip != self.network() && ip != self.gateway() && ip != self.broadcast()
    }

    /// Addresses a container may get, in order.
    #[cfg(test)]
    pub(crate) fn assignable(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        let first = self.network + 2;
        let last = u32::from(self.broadcast()) - 1;
        (first..=last).map(Ipv4Addr::from)
    }
}

fn mask(prefix: u8) -> u32 {
    // prefix is 8..=30 once checked; the shift is total for 0..32 anyway.
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Subnet {
    type Err = ParseSubnetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason| ParseSubnetError {
            input: s.to_owned(),
            reason,
        };
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| fail("expected ADDRESS/PREFIX"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| fail("not an IPv4 address before '/'"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| fail("prefix length is not a number"))?;
        Self::checked(addr, prefix, || s.to_owned())
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

impl serde::Serialize for Subnet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Subnet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_subnet_addresses() {
        let s = DEFAULT_SUBNET;
        assert_eq!(s.to_string(), "10.88.0.0/16");
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 88, 0, 1));
        assert_eq!(s.broadcast(), Ipv4Addr::new(10, 88, 255, 255));
        assert_eq!("10.88.0.0/16".parse::<Subnet>().unwrap(), s);
    }

    #[test]
    fn assignable_excludes_network_gateway_broadcast() {
        let s: Subnet = "192.168.7.0/29".parse().unwrap();
        let all: Vec<_> = s.assignable().collect();
        assert_eq!(all.first(), Some(&Ipv4Addr::new(192, 168, 7, 2)));
        assert_eq!(all.last(), Some(&Ipv4Addr::new(192, 168, 7, 6)));
        assert_eq!(all.len(), 5);
        assert!(!s.is_assignable(s.network()));
        assert!(!s.is_assignable(s.gateway()));
        assert!(!s.is_assignable(s.broadcast()));
        assert!(!s.is_assignable(Ipv4Addr::new(192, 168, 8, 2)));
        assert!(s.is_assignable(Ipv4Addr::new(192, 168, 7, 3)));
    }

    #[test]
    fn parse_errors_name_the_input() {
        for bad in [
            "10.88.0.0",
            "10.88.0.0/x",
            "10.88.0/16",
            "10.88.0.1/16",
            "10.88.0.0/31",
            "10.0.0.0/7",
        ] {
            let e = bad.parse::<Subnet>().unwrap_err();
            assert_eq!(e.input, bad);
            assert!(e.to_string().contains(bad), "{e}");
            assert_eq!(e.kind(), bosun_oci::ErrorKind::Invalid);
        }
    }
}
