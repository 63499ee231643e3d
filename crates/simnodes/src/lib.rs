//! Simulated nodes, like KWOK: one process registers thousands of Nodes,
//! keeps their Leases fresh as kubelets do, and moves the pods bound to them
//! to Running (addresses from each node's pod CIDR, every condition True)
//! without running anything. This is how the control plane is tested and
//! benchmarked at scale on a small machine.
//!
//! The pure parts are their own modules: `cidr` (pod CIDRs and address
//! pools), `status` (the objects written), `schedule` (when each node
//! heart-beats) and `quantity`. [`SimNodes`] does the IO over `client`.

mod cidr;
mod quantity;
mod schedule;
mod sim;
mod status;

use bosun_api::ErrorKind;

pub use cidr::Ipv4Net;
pub use sim::SimNodes;
pub use status::Capacity;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Options {
    /// Nodes are `PREFIX-0` … `PREFIX-(count-1)`.
    pub prefix: String,
    pub count: u32,
    pub capacity: Capacity,
    /// The range pod CIDRs come from; `None`: [`Options::default_pod_cidr`].
    pub pod_cidr: Option<Ipv4Net>,
    /// Each node's pod CIDR is a block of this prefix length.
    pub node_cidr_mask: u8,
}

/// Up to this many nodes, the default range is k3s's 10.42.0.0/16.
const SMALL: u32 = 256;

impl Options {
    pub fn new(count: u32) -> Options {
        Options {
            prefix: "sim".into(),
            count,
            capacity: Capacity {
                cpu: "8".into(),
                memory: "32Gi".into(),
                pods: 110,
                ephemeral_storage: "100Gi".into(),
            },
            pod_cidr: None,
            node_cidr_mask: 24,
        }
    }

    /// k3s's 10.42.0.0/16 holds 256 nodes' /24s; more nodes get their /24s
    /// from 10.128.0.0/9 (32,768 of them), clear of the service range
    /// 10.43.0.0/16.
    pub fn default_pod_cidr(&self) -> Ipv4Net {
        let s = if self.count <= SMALL {
            "10.42.0.0/16"
        } else {
            "10.128.0.0/9"
        };
        s.parse().expect("a valid CIDR")
    }

    pub fn pod_cidr(&self) -> Ipv4Net {
        self.pod_cidr.unwrap_or_else(|| self.default_pod_cidr())
    }

    pub fn node_name(&self, index: u32) -> String {
        format!("{}-{index}", self.prefix)
    }

    /// Whether these options can be simulated; the error names the flag.
    pub fn check(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Options(m));
        if self.count == 0 {
            return bad("--count must be at least 1".into());
        }
        let last = self.node_name(self.count - 1);
        if let Err(e) = bosun_api::name::dns1123_subdomain(&last)
            .and_then(|()| bosun_api::name::label_value(&last))
        {
            return bad(format!(
                "--prefix {:?}: node name {last:?}: {e}",
                self.prefix
            ));
        }
        for (flag, q) in [
            ("--cpu", &self.capacity.cpu),
            ("--memory", &self.capacity.memory),
            ("--ephemeral-storage", &self.capacity.ephemeral_storage),
        ] {
            if let Err(e) = quantity::check(q) {
                return bad(format!("{flag}: {e}"));
            }
        }
        if self.capacity.pods == 0 {
            return bad("--pods must be at least 1".into());
        }
        let range = self.pod_cidr();
        let mask = self.node_cidr_mask;
        if mask < range.prefix() || mask > 30 {
            return bad(format!(
                "--node-cidr-mask {mask}: want a length from {} (the --pod-cidr's) to 30",
                range.prefix()
            ));
        }
        let per_node = 1u64 << (32 - u32::from(mask));
        if per_node - 2 < u64::from(self.capacity.pods) {
            return bad(format!(
                "--pods {}: a /{mask} pod CIDR has only {} pod addresses (lower \
                 --node-cidr-mask)",
                self.capacity.pods,
                per_node - 2
            ));
        }
        if range.blocks(mask) < u64::from(self.count) {
            return bad(format!(
                "--count {}: --pod-cidr {range} holds only {} /{mask} node CIDRs (pass a \
                 wider --pod-cidr or a longer --node-cidr-mask)",
                self.count,
                range.blocks(mask)
            ));
        }
        Ok(())
    }
}

/// Why simulating failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Options(String),
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: bosun_client::Error,
    },
    /// Other nodes hold so much of the range that ours do not fit.
    #[error("{0}")]
    Exhausted(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Options(_) => ErrorKind::Invalid,
            Error::Api { source, .. } => source.kind(),
            Error::Exhausted(_) => ErrorKind::Conflict,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_naming_the_flag() {
        assert!(Options::new(5).check().is_ok());
        assert!(Options::new(5000).check().is_ok());
        let e = |o: Options| o.check().unwrap_err().to_string();
        assert!(e(Options::new(0)).contains("--count must be at least 1"));
        let mut o = Options::new(3);
        o.capacity.memory = "32GB".into();
        assert!(e(o).starts_with("--memory: \"32GB\" is not a quantity"));
        let mut o = Options::new(3);
        o.prefix = "Bad_Prefix".into();
        assert!(e(o).starts_with("--prefix \"Bad_Prefix\""));
        let mut o = Options::new(300);
        o.pod_cidr = Some("10.42.0.0/16".parse().unwrap());
        assert!(e(o).contains("holds only 256 /24 node CIDRs"));
        let mut o = Options::new(3);
        o.capacity.pods = 300;
        assert!(e(o).contains("only 254 pod addresses"));
        let mut o = Options::new(3);
        o.node_cidr_mask = 8;
        assert!(e(o).contains("--node-cidr-mask 8"));
    }

    #[test]
    fn the_default_range_grows_with_the_count() {
        assert_eq!(Options::new(256).pod_cidr().to_string(), "10.42.0.0/16");
        assert_eq!(Options::new(257).pod_cidr().to_string(), "10.128.0.0/9");
        let mut o = Options::new(20_000);
        assert!(o.check().is_ok());
        o.count = 40_000;
        assert!(o.check().is_err());
    }
}
