//! Container networking: IPAM (`Ipam`, file-backed and safe across processes),
//! the bridge and veth plumbing into a container's network namespace (`link`),
//! and nftables NAT and port publishing in a table of our own (`Firewall`).

mod firewall;
mod ipam;
mod link;
mod subnet;

pub use firewall::{Firewall, FirewallError, PortMapping, Protocol, RuleHandle};
pub use ipam::{Ipam, IpamError, Leases};
pub use link::{
    Attachment, CONTAINER_IFNAME, IfName, LinkError, attach, delete_bridge, detach, ensure_bridge,
};
pub use subnet::{DEFAULT_SUBNET, ParseSubnetError, Subnet};
