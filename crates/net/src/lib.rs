//! Container networking: IPAM (`Ipam`, file-backed and safe across processes),
//! the bridge and veth plumbing into a container's network namespace (`link`).

mod ipam;
mod subnet;

pub use ipam::{Ipam, IpamError, Leases};
pub use subnet::{DEFAULT_SUBNET, ParseSubnetError, Subnet};
