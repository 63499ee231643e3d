//! Two processes allocating from one state directory never get the same address:
//! the `flock` must hold across processes, not just across threads.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::process::Command;

use bosun_net::{Ipam, Subnet};

const DIR_VAR: &str = "BOSUN_NET_IPAM_CHILD_DIR";
const PER_CHILD: usize = 30;

fn subnet() -> Subnet {
    "10.77.0.0/24".parse().unwrap()
}

/// The child's body: only does something when the parent test runs it.
#[test]
fn ipam_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let ipam = Ipam::open(dir.as_ref(), subnet()).unwrap();
    let tag = std::process::id();
    for i in 0..PER_CHILD {
        let ip = ipam.allocate(&format!("p{tag}-{i}")).unwrap();
        println!("ALLOC {ip}");
    }
}

#[test]
fn two_processes_never_share_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&exe)
                .args(["--exact", "ipam_child", "--nocapture", "--test-threads=1"])
                .env(DIR_VAR, dir.path())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut all: Vec<Ipv4Addr> = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "child failed: {:?}", out.status);
        let text = String::from_utf8(out.stdout).unwrap();
        let ips: Vec<Ipv4Addr> = text
            .lines()
            // libtest may print "test ipam_child ... " on the same line as the first.
            .filter_map(|l| l.split_once("ALLOC ").map(|(_, ip)| ip))
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(ips.len(), PER_CHILD, "child output: {text}");
        all.extend(ips);
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "an address was handed out twice");
    let leases = Ipam::open(dir.path(), subnet()).unwrap().leases().unwrap();
    assert_eq!(leases.iter().count(), 2 * PER_CHILD);
}
